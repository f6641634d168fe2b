"""Synthetic scans with a known ground truth, written as DXchange (or NXtomo) HDF5.

The detector model, per pixel (row, col) of projection t::

    I = dark_offset + flux · flat(row, col) · beam(t) · gain(col) · T  [+ noise] [+ zingers]

with ``T = exp(−∫mu)`` from the analytic phantom (or ``|ψ|²`` after Fresnel
propagation when ``propagation=True``).  Flats have ``T = 1``, ``beam = 1`` (taken
just after a top-up) and ``gain = 1`` (the column defects appear only during the
scan, so they make stripes in sinograms); darks are ``dark_offset`` plus read noise.

Everything is streamed by blocks of (projections × detector rows), so memory stays
near 100 MiB whatever the scan size (propagation needs whole projections).  Each
block's random numbers come from a generator keyed on (seed, stream, frame, row),
so the same seed gives byte-identical data.

Layouts (``layout``/``format``):

* ``dxchange`` (default): ``/exchange/data`` (angles, rows, cols), ``/exchange/data_white``
  (flats before the scan), ``/exchange/data_white_post`` (flats after it, only with
  ``flats_after=True``), ``/exchange/data_dark``, ``/exchange/theta`` (degrees),
  ``/measurement/instrument/monochromator/energy`` (keV),
  ``/measurement/instrument/detector/pixel_size_x|y`` (um),
  ``/measurement/instrument/detector/distance`` (mm, the propagation distance),
  ``/measurement/instrument/beam_monitor/data`` (I0 per projection, relative to the
  flats' exposure, i.e. the flats were taken at 1.0).
* ``layout="danmax"``: the same ``/exchange`` arrays but no ``/exchange/theta``;
  ``/instrument/monochromator/energy`` (keV), ``/instrument/detector/actual_pixel_size_x``
  (um), ``/instrument/detector/propagation_distance`` (mm), ``/instrument/beam_monitor/data``,
  ``/process/acquisition/setup/rotation_start_angle`` and ``rotation_end_angle`` (deg;
  the end is exclusive: angles are start + k·(end − start)/n_angles).
* ``format="nxtomo"``: NeXus NXtomo as ESRF/Diamond write it: ``/entry`` (NXentry,
  ``definition="NXtomo"``), ``/entry/instrument/detector/data`` (NXdetector) holding
  darks, flats, projections (and post flats) in that order, ``image_key`` (0 projection,
  1 flat, 2 dark), ``/entry/sample/rotation_angle`` (degree), and ``/entry/data``
  (NXdata) linking ``data``, ``image_key`` and ``rotation_angle``.

The truth sits in the same file under ``/truth``: attributes (``center``,
``theta_range_deg``, ``mu_scale``, offsets, ...), ``/truth/phantom`` (the phantom
as JSON), ``/truth/beam``, ``/truth/stripe_columns``/``stripe_gains``,
``/truth/zingers`` (projection, row, column) and, when small,
``/truth/flat_profile`` and ``/truth/volume`` (rows, n, n) on the reconstruction
grid of docs/architecture.md.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.fft
from tqdm import tqdm

from teravox import __version__
from teravox.errors import ParamError, TeravoxError
from teravox.io.atomic import atomic_path
from teravox.synth.phantom import Phantom, default_mu_scale, default_phantom

#: Named sizes: (angles, rows, columns).
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (90, 16, 64),
    "small": (180, 32, 128),
    "medium": (360, 64, 256),
}

#: Keep /truth/volume and /truth/flat_profile only up to this many bytes.
TRUTH_MAX_BYTES = 64 * 2**20

# Streams of the random generator: each effect draws from its own, so turning one
# effect on does not change the random numbers of another.
_S_DARK, _S_FLAT, _S_FLAT_POST, _S_PROJ, _S_ZINGER, _S_STRIPE, _S_BEAM, _S_MOTOR, _S_SCAN = range(1, 10)

_READ_NOISE = 2.0        # counts, standard deviation of the read-out noise (with noise=True)
_GAUSS_MIN_COUNTS = 100  # above this, Poisson noise is drawn as a Gaussian of equal variance
_BLOCK_PIXELS = 2**20    # pixels per row block of one projection (a few MiB in float64)
_BATCH_PIXELS = 2**22    # pixels per (projections × rows) block worked on at once


@dataclass
class _Config:
    """Every resolved setting of one scan file."""

    n_angles: int
    n_rows: int
    n_cols: int
    center: float
    tilt_deg: float
    theta_start_deg: float
    theta_range_deg: float
    half_acquisition: bool
    side: str
    overlap_px: float | None
    phantom: Phantom
    phantom_n: int
    volume_n: int
    mu_scale: float | None
    supersample: int
    dtype: str
    flux: float
    dark_offset: float
    flat_profile: bool
    n_flats: int
    n_darks: int
    flats_after: bool
    noise: bool
    exposure: float
    drift: bool
    zingers: bool
    stripes: bool
    propagation: bool
    energy_kev: float
    distance_m: float
    pixel_size_m: float
    delta_beta: float | None
    layout: str
    format: str
    seed: int
    progress: bool
    extra_truth: dict[str, Any] = field(default_factory=dict)
    extra_datasets: dict[str, tuple[str, Any, str]] = field(default_factory=dict)

    @property
    def theta_deg(self) -> np.ndarray:
        """Projection angles in degrees, start + k·range/n (the end is excluded)."""
        return self.theta_start_deg + self.theta_range_deg * np.arange(self.n_angles) / self.n_angles

    @property
    def s(self) -> np.ndarray:
        """Detector coordinate of each column, pixels (column − centre)."""
        return np.arange(self.n_cols, dtype=np.float64) - self.center

    @property
    def z(self) -> np.ndarray:
        """Height of each detector row, pixels (row − (rows − 1)/2)."""
        return np.arange(self.n_rows, dtype=np.float64) - (self.n_rows - 1) / 2.0

    @property
    def wavelength_m(self) -> float:
        """X-ray wavelength in metres from the energy in keV (hc = 1.23984198 keV·nm)."""
        return 1.23984198e-9 / self.energy_kev


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one (stream, frame, row) key: independent of how work is batched."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


# -- detector and beam models ------------------------------------------------------------
def flat_profile(n_rows: int, n_cols: int, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """The smooth, non-uniform illumination × detector response, rows r0:r1, float64 in (0.5, 1].

    A vertical Gaussian beam profile, a gentle horizontal fall-off with a slow
    ripple (monochromator) and a faint fine texture (scintillator).  Deterministic.
    """
    r1 = n_rows if r1 is None else r1
    rows = np.arange(r0, r1, dtype=np.float64)
    cols = np.arange(n_cols, dtype=np.float64)
    rr = (rows - (n_rows - 1) / 2.0) / max(n_rows / 2.0, 1.0)
    cc = (cols - (n_cols - 1) / 2.0) / max(n_cols / 2.0, 1.0)
    vert = np.exp(-((0.55 * rr) ** 2))
    horiz = 1.0 - 0.12 * cc**2 + 0.03 * np.sin(2 * np.pi * 1.7 * cc + 0.4)
    texture = 0.01 * np.sin(2 * np.pi * rows / 23.1)[:, None] * np.sin(2 * np.pi * cols / 17.3)[None, :]
    return (vert[:, None] * horiz[None, :] + texture) / 1.04


def _beam(cfg: _Config) -> np.ndarray:
    """Relative beam intensity per projection: top-up saw-tooth plus a slow wander (drift only)."""
    t = np.arange(cfg.n_angles, dtype=np.float64)
    if not cfg.drift:
        return np.full_like(t, cfg.exposure)
    rng = _rng(cfg.seed, _S_BEAM)
    period = max(8.0, cfg.n_angles / 4.7)            # projections between top-ups
    phase, wander = rng.uniform(0.0, 1.0), rng.uniform(0.0, 2 * np.pi)
    # The ring current decays ~3 % and is topped up (a jump back); the optics add a
    # slow ±0.5 % wander, which a beam monitor sees too.
    saw = 1.0 - 0.03 * np.mod(t / period + phase, 1.0)
    return cfg.exposure * saw * (1.0 + 0.005 * np.sin(2 * np.pi * t / max(cfg.n_angles, 1) * 1.3 + wander))


def _stripes(cfg: _Config) -> tuple[np.ndarray, np.ndarray]:
    """Defective columns (indices) and their gains during the scan (not in the flats)."""
    if not cfg.stripes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    rng = _rng(cfg.seed, _S_STRIPE)
    n_bad = max(3, cfg.n_cols // 128)
    lo, hi = int(0.1 * cfg.n_cols), max(int(0.9 * cfg.n_cols), int(0.1 * cfg.n_cols) + n_bad)
    cols = np.sort(rng.choice(np.arange(lo, hi), size=n_bad, replace=False)).astype(np.int64)
    # One nearly dead column, one hot one, the rest mild gain errors of 3-10 %.
    gains = 1.0 + rng.choice([-1.0, 1.0], n_bad) * rng.uniform(0.03, 0.10, n_bad)
    order = rng.permutation(n_bad)
    gains[order[0]], gains[order[1]] = 0.05, 1.6
    return cols, gains.astype(np.float32)


def _zingers(cfg: _Config) -> tuple[np.ndarray, np.ndarray]:
    """Zinger hits as (projection, row, column) and their extra counts."""
    idx, amp = [], []
    if cfg.zingers:
        mean_hits = max(0.5, cfg.n_rows * cfg.n_cols * 2e-5)
        for i in range(cfg.n_angles):
            rng = _rng(cfg.seed, _S_ZINGER, i)
            if rng.random() >= 0.25:      # a quarter of the projections are hit
                continue
            k = 1 + int(rng.poisson(mean_hits))
            rows = rng.integers(0, cfg.n_rows, k)
            cols = rng.integers(0, cfg.n_cols, k)
            idx += [(i, int(r), int(c)) for r, c in zip(rows, cols, strict=True)]
            amp += list(cfg.flux * rng.uniform(0.5, 3.0, k))
    return np.asarray(idx, dtype=np.int64).reshape(-1, 3), np.asarray(amp, dtype=np.float64)


def _add_noise(signal: np.ndarray, rng: np.random.Generator, photons: bool = True) -> np.ndarray:
    """Counts with Poisson photon noise around ``signal`` plus Gaussian read noise (float64)."""
    z = rng.standard_normal(signal.shape, dtype=np.float32)
    if not photons:
        return signal + _READ_NOISE * z
    # A Gaussian of variance counts + read² is indistinguishable from Poisson + read
    # noise above ~100 counts and much faster to draw (one draw per pixel); the few
    # darker pixels get true Poisson draws.
    noisy = signal + np.sqrt(signal + _READ_NOISE**2) * z
    low = signal < _GAUSS_MIN_COUNTS
    if low.any():
        noisy[low] = rng.poisson(signal[low]) + _READ_NOISE * z[low]
    return noisy


def _to_dtype(counts: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint16":
        return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    return counts.astype(np.float32)


def _fresnel(wave: np.ndarray, cfg: _Config) -> np.ndarray:
    """Intensity |ψ|² after free-space Fresnel propagation of the exit waves (b, rows, cols)."""
    lam, dist, px = cfg.wavelength_m, cfg.distance_m, cfg.pixel_size_m
    # Pad so that the propagator's spread (a few Fresnel lengths) does not wrap around.
    fresnel_px = math.sqrt(lam * dist) / px
    pad = int(min(max(16, math.ceil(4 * fresnel_px + lam * dist / px**2)), 4 * max(wave.shape[1:])))
    ny = scipy.fft.next_fast_len(wave.shape[1] + 2 * pad)
    nx = scipy.fft.next_fast_len(wave.shape[2] + 2 * pad)
    py0, px0 = (ny - wave.shape[1]) // 2, (nx - wave.shape[2]) // 2
    fy, fx = scipy.fft.fftfreq(ny, d=px), scipy.fft.fftfreq(nx, d=px)   # cycles per metre
    # Paraxial propagator exp(−iπλz|f|²): with ψ = exp(−ikδT) it gives I ≈ 1 + zδ∇²T,
    # the contrast that Paganin's filter undoes.
    kernel = np.exp(-1j * np.pi * lam * dist * fy**2)[:, None] * np.exp(-1j * np.pi * lam * dist * fx**2)[None, :]
    out = np.empty(wave.shape, dtype=np.float64)
    for j in range(wave.shape[0]):
        padded = np.pad(wave[j], ((py0, ny - wave.shape[1] - py0), (px0, nx - wave.shape[2] - px0)), mode="edge")
        prop = scipy.fft.ifft2(scipy.fft.fft2(padded) * kernel)
        crop = prop[py0:py0 + wave.shape[1], px0:px0 + wave.shape[2]]
        out[j] = crop.real**2 + crop.imag**2
    return out


def _line_integrals(cfg: _Config, theta_rad: np.ndarray, r0: int, r1: int, quantity: str) -> np.ndarray:
    """(angles, rows r0:r1, columns) line integrals; with a tilted axis each pixel's
    coordinates across (s) and along (z) the axis, which turns by ``tilt_deg`` in the
    detector plane about (centre, middle row)."""
    z = cfg.z[r0:r1]
    if not cfg.tilt_deg:
        return cfg.phantom.line_integrals(theta_rad, cfg.s, z, cfg.supersample, quantity)
    a = math.radians(cfg.tilt_deg)
    dz, ds = np.meshgrid(z, cfg.s, indexing="ij")
    return cfg.phantom.line_integrals_at(theta_rad, ds * math.cos(a) - dz * math.sin(a),
                                         ds * math.sin(a) + dz * math.cos(a), quantity)


def _transmission(cfg: _Config, theta_rad: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """T for projections ``theta_rad`` and rows r0:r1: exp(−∫mu), or |ψ|² with propagation."""
    mu_int = _line_integrals(cfg, theta_rad, r0, r1, "mu")
    if not cfg.propagation:
        np.negative(mu_int, out=mu_int)
        return np.exp(mu_int, out=mu_int)
    # Phase shift −k∫δ dl with the path in metres (the phantom's lengths are pixels).
    k = 2 * np.pi / cfg.wavelength_m
    delta_int = _line_integrals(cfg, theta_rad, r0, r1, "delta")
    wave = np.exp(-0.5 * mu_int - 1j * k * cfg.pixel_size_m * delta_int)
    return _fresnel(wave, cfg)


# -- the writer ----------------------------------------------------------------------------
class _Frames:
    """Writes frames (darks, flats, projections) into one or more HDF5 datasets."""

    def __init__(self, cfg: _Config) -> None:
        self.cfg = cfg
        self.rows_per_block = cfg.n_rows if cfg.propagation else max(1, min(cfg.n_rows, _BLOCK_PIXELS // cfg.n_cols))
        self.profile_cache: dict[tuple[int, int], np.ndarray] = {}
        self.stripe_cols, self.stripe_gains = _stripes(cfg)
        self.gain = np.ones(cfg.n_cols, dtype=np.float64)
        self.gain[self.stripe_cols] = self.stripe_gains
        self.zinger_idx, self.zinger_amp = _zingers(cfg)
        self.beam = _beam(cfg)

    def row_blocks(self) -> Iterator[tuple[int, int]]:
        for r0 in range(0, self.cfg.n_rows, self.rows_per_block):
            yield r0, min(self.cfg.n_rows, r0 + self.rows_per_block)

    def profile(self, r0: int, r1: int) -> np.ndarray:
        if not self.cfg.flat_profile:
            return np.ones((r1 - r0, self.cfg.n_cols))
        key = (r0, r1)
        if key not in self.profile_cache:
            self.profile_cache = {key: flat_profile(self.cfg.n_rows, self.cfg.n_cols, r0, r1)}
        return self.profile_cache[key]

    def _finish(self, signal: np.ndarray, rng: np.random.Generator | None, photons: bool) -> np.ndarray:
        """Counts = dark offset + (photon-noisy) signal + read noise, in the output dtype."""
        if rng is not None:
            signal = _add_noise(signal, rng, photons)
        signal += self.cfg.dark_offset
        return _to_dtype(signal, self.cfg.dtype)

    def write_dark_flat(self, dset: h5py.Dataset, start: int, count: int, stream: int,
                        flat: bool, bar: tqdm) -> None:
        """Write ``count`` dark (flat=False) or flat frames at dset[start:start + count]."""
        cfg = self.cfg
        for i in range(count):
            for r0, r1 in self.row_blocks():
                rng = _rng(cfg.seed, stream, i, r0) if cfg.noise else None
                if flat:
                    signal = cfg.flux * self.profile(r0, r1)
                else:
                    signal = np.zeros((r1 - r0, cfg.n_cols))
                dset[start + i, r0:r1, :] = self._finish(signal, rng, photons=flat)
            bar.update(1)

    def write_projections(self, dset: h5py.Dataset, start: int, bar: tqdm) -> None:
        """Write every projection at dset[start:start + n_angles]."""
        cfg = self.cfg
        theta = np.deg2rad(cfg.theta_deg)
        for r0, r1 in self.row_blocks():
            batch = 1 if cfg.propagation else max(1, _BATCH_PIXELS // ((r1 - r0) * cfg.n_cols))
            profile = self.profile(r0, r1)
            for a0 in range(0, cfg.n_angles, batch):
                a1 = min(cfg.n_angles, a0 + batch)
                signal = _transmission(cfg, theta[a0:a1], r0, r1)
                signal *= profile[None] * self.gain[None, None, :] * cfg.flux
                signal *= self.beam[a0:a1, None, None]
                out = np.empty(signal.shape, dtype=np.uint16 if cfg.dtype == "uint16" else np.float32)
                for j in range(a1 - a0):
                    rng = _rng(cfg.seed, _S_PROJ, a0 + j, r0) if cfg.noise else None
                    frame = signal[j]
                    if rng is not None:
                        frame = _add_noise(frame, rng)
                    self._add_zingers(frame, a0 + j, r0, r1)   # direct hits: no photon noise
                    frame += cfg.dark_offset
                    out[j] = _to_dtype(frame, cfg.dtype)
                dset[start + a0:start + a1, r0:r1, :] = out
                if r1 == cfg.n_rows:        # count a projection once it is complete
                    bar.update(a1 - a0)

    def _add_zingers(self, frame: np.ndarray, i: int, r0: int, r1: int) -> None:
        if not len(self.zinger_idx):
            return
        zi = self.zinger_idx
        hit = (zi[:, 0] == i) & (zi[:, 1] >= r0) & (zi[:, 1] < r1)
        # np.add.at: two hits on one pixel add up.
        np.add.at(frame, (zi[hit, 1] - r0, zi[hit, 2]), self.zinger_amp[hit])


def _progress_bar(cfg: _Config, total: int, desc: str) -> tqdm:
    """A frame counter on stderr, only for large writes (≥ 64 MiB) to a terminal."""
    nbytes = total * cfg.n_rows * cfg.n_cols * np.dtype(cfg.dtype).itemsize
    return tqdm(total=total, desc=desc, unit="frame", leave=False,
                disable=not cfg.progress or not sys.stderr.isatty() or nbytes < 64 * 2**20)


def _write_units(dset: h5py.Dataset, units: str, description: str | None = None) -> h5py.Dataset:
    dset.attrs["units"] = units
    if description:
        dset.attrs["description"] = description
    return dset


def _write_dxchange(f: h5py.File, cfg: _Config, frames: _Frames, name: str) -> None:
    shape = (cfg.n_rows, cfg.n_cols)
    dt = np.dtype(cfg.dtype)
    chunks = (1, *shape)
    data = f.create_dataset("exchange/data", (cfg.n_angles, *shape), dt, chunks=chunks)
    data.attrs.update({"axes": "theta:y:x", "units": "counts"})
    white = f.create_dataset("exchange/data_white", (cfg.n_flats, *shape), dt, chunks=chunks)
    white.attrs.update({"axes": "theta_white:y:x", "units": "counts",
                        "description": "flat fields taken before the scan"})
    dark = f.create_dataset("exchange/data_dark", (cfg.n_darks, *shape), dt, chunks=chunks)
    dark.attrs.update({"axes": "theta_dark:y:x", "units": "counts"})
    total = cfg.n_darks + cfg.n_flats * (2 if cfg.flats_after else 1) + cfg.n_angles
    with _progress_bar(cfg, total, name) as bar:
        frames.write_dark_flat(dark, 0, cfg.n_darks, _S_DARK, False, bar)
        frames.write_dark_flat(white, 0, cfg.n_flats, _S_FLAT, True, bar)
        frames.write_projections(data, 0, bar)
        if cfg.flats_after:
            post = f.create_dataset("exchange/data_white_post", (cfg.n_flats, *shape), dt, chunks=chunks)
            post.attrs.update({"axes": "theta_white:y:x", "units": "counts",
                               "description": "flat fields taken after the scan"})
            frames.write_dark_flat(post, 0, cfg.n_flats, _S_FLAT_POST, True, bar)

    f["implements"] = "exchange:measurement:process"
    f["exchange/title"] = f"teravox synthetic scan {name}"
    beam = frames.beam
    i0_desc = "beam intensity per projection, relative to the flat fields' exposure (flats at 1.0)"
    if cfg.layout == "dxchange":
        _write_units(f.create_dataset("exchange/theta", data=cfg.theta_deg), "degrees")
        m = "measurement/instrument/"
        _write_units(f.create_dataset(m + "monochromator/energy", data=cfg.energy_kev), "keV")
        _write_units(f.create_dataset(m + "detector/pixel_size_x", data=cfg.pixel_size_m * 1e6), "um")
        _write_units(f.create_dataset(m + "detector/pixel_size_y", data=cfg.pixel_size_m * 1e6), "um")
        _write_units(f.create_dataset(m + "detector/distance", data=cfg.distance_m * 1e3), "mm",
                     "sample-detector propagation distance")
        _write_units(f.create_dataset(m + "beam_monitor/data", data=beam), "relative", i0_desc)
        f["measurement/sample/name"] = "teravox default phantom"
    else:  # danmax
        _write_units(f.create_dataset("instrument/monochromator/energy", data=cfg.energy_kev), "keV")
        _write_units(f.create_dataset("instrument/detector/actual_pixel_size_x",
                                      data=cfg.pixel_size_m * 1e6), "um")
        _write_units(f.create_dataset("instrument/detector/propagation_distance",
                                      data=cfg.distance_m * 1e3), "mm")
        _write_units(f.create_dataset("instrument/beam_monitor/data", data=beam), "relative", i0_desc)
        a = "process/acquisition/setup/"
        _write_units(f.create_dataset(a + "rotation_start_angle", data=cfg.theta_start_deg), "deg")
        _write_units(f.create_dataset(a + "rotation_end_angle",
                                      data=cfg.theta_start_deg + cfg.theta_range_deg), "deg",
                     "exclusive: angle k is start + k·(end − start)/n_projections")


def _nx(group: h5py.Group, nx_class: str) -> h5py.Group:
    group.attrs["NX_class"] = nx_class
    return group


def _write_nxtomo(f: h5py.File, cfg: _Config, frames: _Frames, name: str) -> None:
    n_post = cfg.n_flats if cfg.flats_after else 0
    total = cfg.n_darks + cfg.n_flats + cfg.n_angles + n_post
    f.attrs["default"] = "entry"
    entry = _nx(f.create_group("entry"), "NXentry")
    entry.attrs["default"] = "data"
    entry["definition"] = "NXtomo"
    entry["title"] = f"teravox synthetic scan {name}"
    inst = _nx(entry.create_group("instrument"), "NXinstrument")
    src = _nx(inst.create_group("source"), "NXsource")
    src["name"], src["type"], src["probe"] = "teravox synth", "Synchrotron X-ray Source", "x-ray"
    det = _nx(inst.create_group("detector"), "NXdetector")
    data = det.create_dataset("data", (total, cfg.n_rows, cfg.n_cols), np.dtype(cfg.dtype),
                              chunks=(1, cfg.n_rows, cfg.n_cols))
    data.attrs.update({"interpretation": "image", "units": "counts"})
    keys = np.concatenate([np.full(cfg.n_darks, 2), np.full(cfg.n_flats, 1),
                           np.zeros(cfg.n_angles), np.full(n_post, 1)]).astype(np.int32)
    det["image_key"] = keys
    det["image_key_control"] = keys
    _write_units(det.create_dataset("x_pixel_size", data=cfg.pixel_size_m), "m")
    _write_units(det.create_dataset("y_pixel_size", data=cfg.pixel_size_m), "m")
    _write_units(det.create_dataset("distance", data=cfg.distance_m), "m",
                 "sample-detector propagation distance")
    beam_grp = _nx(entry.create_group("beam"), "NXbeam")
    _write_units(beam_grp.create_dataset("incident_energy", data=cfg.energy_kev), "keV")
    sample = _nx(entry.create_group("sample"), "NXsample")
    sample["name"] = "teravox default phantom"
    # Darks and flats before the scan are taken at the start angle, flats after at the end.
    angles = np.concatenate([np.full(cfg.n_darks + cfg.n_flats, cfg.theta_start_deg), cfg.theta_deg,
                             np.full(n_post, cfg.theta_start_deg + cfg.theta_range_deg)])
    _write_units(sample.create_dataset("rotation_angle", data=angles), "degree")
    control = _nx(entry.create_group("control"), "NXmonitor")
    monitor = np.concatenate([np.ones(cfg.n_darks + cfg.n_flats), frames.beam, np.ones(n_post)])
    _write_units(control.create_dataset("data", data=monitor), "relative",
                 "beam intensity per frame, relative to the flat fields' exposure")
    nxdata = _nx(entry.create_group("data"), "NXdata")
    nxdata.attrs["signal"] = "data"
    nxdata["data"] = data                       # hard links, as NXtomo asks
    nxdata["image_key"] = det["image_key"]
    nxdata["rotation_angle"] = sample["rotation_angle"]
    with _progress_bar(cfg, total, name) as bar:
        frames.write_dark_flat(data, 0, cfg.n_darks, _S_DARK, False, bar)
        frames.write_dark_flat(data, cfg.n_darks, cfg.n_flats, _S_FLAT, True, bar)
        frames.write_projections(data, cfg.n_darks + cfg.n_flats, bar)
        if n_post:
            frames.write_dark_flat(data, total - n_post, n_post, _S_FLAT_POST, True, bar)


def _truth(cfg: _Config, frames: _Frames) -> dict[str, Any]:
    return {
        "center": cfg.center, "tilt_deg": cfg.tilt_deg, "theta_start_deg": cfg.theta_start_deg,
        "theta_range_deg": cfg.theta_range_deg, "n_angles": cfg.n_angles, "n_rows": cfg.n_rows,
        "n_cols": cfg.n_cols, "mu_scale": cfg.mu_scale, "phantom_n": cfg.phantom_n,
        "volume_n": cfg.volume_n, "half_acquisition": cfg.half_acquisition, "side": cfg.side,
        "overlap_px": cfg.overlap_px, "supersample": cfg.supersample, "dtype": cfg.dtype,
        "flux": cfg.flux, "dark_offset": cfg.dark_offset, "read_noise": _READ_NOISE if cfg.noise else 0.0,
        "flat_profile": cfg.flat_profile, "noise": cfg.noise, "exposure": cfg.exposure, "drift": cfg.drift,
        "zingers": cfg.zingers, "stripes": cfg.stripes, "propagation": cfg.propagation,
        "energy_kev": cfg.energy_kev, "distance_m": cfg.distance_m, "pixel_size_m": cfg.pixel_size_m,
        "delta_beta": cfg.delta_beta, "layout": cfg.layout, "format": cfg.format, "seed": cfg.seed,
        "z_convention": "z = row - (n_rows - 1)/2 pixels; x, y relative to the rotation axis",
        **cfg.extra_truth,
        "phantom": cfg.phantom, "theta_deg": cfg.theta_deg, "beam": frames.beam,
        "stripe_columns": frames.stripe_cols, "stripe_gains": frames.stripe_gains,
        "zingers_index": frames.zinger_idx, "zingers_counts": frames.zinger_amp,
    }


def _write_truth(f: h5py.File, cfg: _Config, truth: dict[str, Any]) -> None:
    g = f.create_group("truth")
    g.attrs["description"] = "ground truth of this synthetic scan (teravox synth)"
    for key, value in truth.items():
        # None (e.g. no overlap) is left out rather than written as a placeholder.
        if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
            g.attrs[key] = value
    g["phantom"] = cfg.phantom.to_json()
    g["theta_deg"] = truth["theta_deg"]
    g["beam"] = truth["beam"]
    g["stripe_columns"] = truth["stripe_columns"]
    g["stripe_gains"] = truth["stripe_gains"]
    g["zingers"] = truth["zingers_index"]
    g["zingers"].attrs["columns"] = "projection, row, column"
    g["zinger_counts"] = truth["zingers_counts"]
    if cfg.n_rows * cfg.n_cols * 4 <= TRUTH_MAX_BYTES:
        prof = flat_profile(cfg.n_rows, cfg.n_cols) if cfg.flat_profile else np.ones((cfg.n_rows, cfg.n_cols))
        _write_units(g.create_dataset("flat_profile", data=prof.astype(np.float32)), "relative")
    if cfg.n_rows * cfg.volume_n**2 * 4 <= TRUTH_MAX_BYTES:
        ss = min(4, max(2, cfg.supersample))
        vol = cfg.phantom.volume(cfg.z, cfg.volume_n, supersample=ss)
        dset = _write_units(g.create_dataset("volume", data=vol, chunks=(1, cfg.volume_n, cfg.volume_n)),
                            "1/pixel")
        dset.attrs["supersample"] = ss
        dset.attrs["description"] = ("linear attenuation per pixel, averaged over each voxel; "
                                     "vol[r, iy, ix] at z = r - (rows-1)/2, x = ix - (n-1)/2, y = iy - (n-1)/2")


def _write_file(path: Path, cfg: _Config) -> dict[str, Any]:
    frames = _Frames(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            if cfg.format == "nxtomo":
                _write_nxtomo(f, cfg, frames, path.name)
            else:
                _write_dxchange(f, cfg, frames, path.name)
            for key, (units, value, description) in cfg.extra_datasets.items():
                _write_units(f.create_dataset(key, data=value), units, description)
            truth = _truth(cfg, frames)
            _write_truth(f, cfg, truth)
            prov = f.require_group("process/teravox")
            prov.attrs["version"] = __version__
            prov.attrs["stage"] = "synth"
            prov.attrs["parameters"] = json.dumps(
                {k: v for k, v in truth.items() if isinstance(v, (bool, int, float, str)) or v is None})
    except OSError as exc:
        raise TeravoxError(f"{path}: cannot write the synthetic scan: {exc}") from exc
    truth["path"] = str(path)
    return truth


# -- public API ------------------------------------------------------------------------------
def _resolve_size(size: str | None, n_cols: int | None, n_rows: int | None,
                  n_angles: int | None) -> tuple[int, int, int]:
    if size is None and None in (n_cols, n_rows, n_angles):
        size = "tiny"
    if size is not None and size not in SIZES:
        raise ParamError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    a, r, c = SIZES[size] if size else (0, 0, 0)
    n_angles, n_rows, n_cols = (int(v) if v is not None else d
                                for v, d in ((n_angles, a), (n_rows, r), (n_cols, c)))
    if n_cols < 8 or n_rows < 1 or n_angles < 2:
        raise ParamError(f"scan size must be at least 2 angles × 1 row × 8 columns, got "
                         f"{n_angles} × {n_rows} × {n_cols}")
    return n_angles, n_rows, n_cols


def write_scan(
    path: str | os.PathLike[str], *,
    n_cols: int | None = None, n_rows: int | None = None, n_angles: int | None = None,
    size: str | None = None,
    center: float | None = None, tilt_deg: float = 0.0,
    theta_range_deg: float | None = None, theta_start_deg: float = 0.0,
    half_acquisition: bool = False, side: str = "right", overlap_px: float | None = None,
    phantom: Phantom | None = None, mu_scale: float | None = None, supersample: int = 1,
    dtype: str = "uint16", flux: float = 20000.0, dark_offset: float = 100.0,
    flat_profile: bool = True, n_flats: int = 10, n_darks: int = 10, flats_after: bool = False,
    noise: bool = True, drift: bool = False, zingers: bool = False, stripes: bool = False,
    exposure: float = 1.0, propagation: bool = False, energy_kev: float = 20.0, distance_m: float | None = None,
    pixel_size_m: float = 1e-6, delta_beta: float | None = None,
    layout: str = "dxchange", format: str = "dxchange",
    seed: int = 0, progress: bool = True,
    _extra_truth: dict[str, Any] | None = None,
    _extra_datasets: dict[str, tuple[str, Any, str]] | None = None,
    _volume_n: int | None = None,
) -> dict[str, Any]:
    """Write a synthetic scan to ``path`` and return its truth (see the module docstring).

    Sizes: ``size`` ("tiny" 90×16×64, "small" 180×32×128, "medium" 360×64×256 as
    angles × rows × columns) or ``n_angles``/``n_rows``/``n_cols`` (which override it).
    ``center`` is the rotation axis column (pixels, 0-based; default the middle,
    ``(n_cols − 1)/2``) at the middle row; ``tilt_deg`` turns the axis in the detector
    plane about that point, so that row r has its axis at
    ``center + tan(tilt)·(r − (n_rows − 1)/2)`` (exact per pixel; no ``supersample``).  ``theta_range_deg`` is 180 (360 with half acquisition).
    ``half_acquisition=True`` puts the axis ``overlap_px/2`` from the ``side`` edge of
    a 360° scan and sizes the phantom for the doubled field of view.  ``flux`` is the
    flat-field count (photons/pixel) at the brightest pixel; ``dark_offset`` counts;
    ``exposure`` scales the projections' beam relative to the flats' (a longer exposure or a
    stronger beam than when the flats were taken; part of ``/truth/beam``).
    ``propagation=True`` simulates Fresnel propagation over ``distance_m`` at
    ``energy_kev`` with pixels of ``pixel_size_m``; ``delta_beta`` sets every shape's
    δ = delta_beta·β (default: the phantom's own δ, or 1000 when it has none).
    Same ``seed`` ⇒ byte-identical data.  Raises ParamError on inconsistent options.
    """
    n_angles, n_rows, n_cols = _resolve_size(size, n_cols, n_rows, n_angles)
    if side not in ("left", "right"):
        raise ParamError(f"side must be 'left' or 'right', got {side!r}")
    if dtype not in ("uint16", "float32"):
        raise ParamError(f"dtype must be 'uint16' or 'float32', got {dtype!r}")
    if layout not in ("dxchange", "danmax"):
        raise ParamError(f"layout must be 'dxchange' or 'danmax', got {layout!r}")
    if format not in ("dxchange", "nxtomo"):
        raise ParamError(f"format must be 'dxchange' or 'nxtomo', got {format!r}")
    if format == "nxtomo" and layout != "dxchange":
        raise ParamError("layout='danmax' applies to DXchange files, not to format='nxtomo'")
    if not exposure > 0:
        raise ParamError(f"exposure must be > 0, got {exposure}")
    if not (flux > 0 and dark_offset >= 0):
        raise ParamError(f"flux must be > 0 and dark_offset >= 0 counts, got {flux}, {dark_offset}")
    if dtype == "uint16" and dark_offset + 1.7 * flux > 65535:
        raise ParamError(f"flux {flux:g} + dark offset {dark_offset:g} counts would saturate uint16 "
                         "(keep dark_offset + 1.7·flux <= 65535, or use dtype='float32')")
    if n_flats < 1 or n_darks < 1:
        raise ParamError(f"need at least one flat and one dark, got {n_flats}, {n_darks}")
    if not (energy_kev > 0 and pixel_size_m > 0):
        raise ParamError(f"energy_kev and pixel_size_m must be positive, got {energy_kev}, {pixel_size_m}")
    if theta_range_deg is None:
        theta_range_deg = 360.0 if half_acquisition else 180.0
    if not 0 < theta_range_deg <= 360:
        raise ParamError(f"theta_range_deg must be in (0, 360], got {theta_range_deg}")
    if half_acquisition and theta_range_deg != 360:
        raise ParamError(f"half acquisition needs a 360° scan, got theta_range_deg={theta_range_deg}")

    last = n_cols - 1
    if half_acquisition:
        if overlap_px is None:
            overlap_px = float(max(8, round(0.1 * n_cols)))
        if not 0 <= overlap_px < n_cols:
            raise ParamError(f"overlap_px must be in [0, {n_cols}), got {overlap_px}")
        if center is None:
            center = last - overlap_px / 2.0 if side == "right" else overlap_px / 2.0
    elif center is None:
        center = last / 2.0
    center = float(center)

    if phantom is None:
        if not 0 <= center <= last:
            raise ParamError(f"center {center} is outside the detector's columns 0..{last}; "
                             "give a phantom that fits, or a center on the detector")
        reach = max(center, last - center) if half_acquisition else min(center, last - center)
        # The phantom fills ~83 % of its n/2, so it stays inside the field of view at
        # every angle (the farthest column for half acquisition, the nearest otherwise).
        phantom_n = max(8, int(math.floor(2 * reach + 1)))
        mu_scale = default_mu_scale(phantom_n) if mu_scale is None else float(mu_scale)
        phantom = default_phantom(phantom_n, n_rows, mu_scale)
    else:
        phantom_n = int(math.floor(2 * max(abs(center), abs(last - center)) + 1))
    # The grid a reconstruction of this scan lands on: the detector width, or the
    # doubled field of view after half-acquisition stitching (or the caller's).
    volume_n = _volume_n or (phantom_n if half_acquisition else n_cols)
    if _volume_n:
        phantom_n = _volume_n

    if propagation:
        if distance_m is None or distance_m <= 0:
            raise ParamError("phase contrast (propagation) needs a positive propagation distance in metres "
                             "(distance_m, or --distance)")
    distance_m = 0.0 if distance_m is None else float(distance_m)
    if delta_beta is not None or (propagation and all(sh.delta == 0 for sh in phantom.shapes)):
        delta_beta = 1000.0 if delta_beta is None else float(delta_beta)
        # delta = delta_beta · beta with beta = mu_m·λ/(4π), mu_m = mu_px / pixel size in m.
        lam = 1.23984198e-9 / energy_kev
        phantom = phantom.with_delta(delta_beta * lam / (4 * np.pi * pixel_size_m))

    if tilt_deg and supersample != 1:
        raise ParamError("a tilted axis (tilt_deg) is simulated exactly per pixel, without supersample")
    cfg = _Config(
        n_angles=n_angles, n_rows=n_rows, n_cols=n_cols, center=center, tilt_deg=float(tilt_deg),
        theta_start_deg=float(theta_start_deg), theta_range_deg=float(theta_range_deg),
        half_acquisition=bool(half_acquisition), side=side,
        overlap_px=None if overlap_px is None else float(overlap_px),
        phantom=phantom, phantom_n=phantom_n, volume_n=volume_n, mu_scale=mu_scale,
        supersample=int(supersample), dtype=dtype, flux=float(flux), dark_offset=float(dark_offset),
        flat_profile=bool(flat_profile), n_flats=int(n_flats), n_darks=int(n_darks),
        flats_after=bool(flats_after), noise=bool(noise), exposure=float(exposure), drift=bool(drift),
        zingers=bool(zingers),
        stripes=bool(stripes), propagation=bool(propagation), energy_kev=float(energy_kev),
        distance_m=distance_m, pixel_size_m=float(pixel_size_m), delta_beta=delta_beta,
        layout=layout, format=format, seed=int(seed), progress=bool(progress),
        extra_truth=dict(_extra_truth or {}), extra_datasets=dict(_extra_datasets or {}),
    )
    return _write_file(Path(path), cfg)


def write_multiscan(
    directory: str | os.PathLike[str], n_scans: int, overlap_px: int, *,
    n_cols: int | None = None, n_rows: int | None = None, n_angles: int | None = None,
    size: str | None = None, pixel_size_m: float = 1e-6, motor_error_px: float = 8.0,
    seed: int = 0, **options: Any,
) -> dict[str, Any]:
    """Write ``n_scans`` side-by-side scans (scan_00.h5, ...) of one wide object, and scans.csv.

    Scan i sees columns ``offset_i .. offset_i + n_cols`` of a field of view
    ``n_scans·n_cols − (n_scans − 1)·overlap_px`` pixels wide, ``offset_i = i·(n_cols −
    overlap_px)``; the rotation axis is in the middle of that wide field.  Each file
    has its own flats, darks and noise.  The motor position (mm) is
    ``(offset_i + error_i)·pixel_size``, error_i uniform in ±``motor_error_px``
    pixels (seeded); it is written to ``scans.csv`` (file, position_mm) and
    ``/measurement/instrument/sample_stage/x`` (``/entry/sample/x_translation`` for
    NXtomo), in mm.  The true offset is in each
    file's ``/truth`` (``offset_px``, ``motor_error_px``, ``wide_n_cols``, ``wide_center``).
    Other options are those of :func:`write_scan`.
    """
    n_angles, n_rows, n_cols = _resolve_size(size, n_cols, n_rows, n_angles)
    if n_scans < 1:
        raise ParamError(f"n_scans must be >= 1, got {n_scans}")
    if not 0 <= overlap_px < n_cols:
        raise ParamError(f"overlap_px must be in [0, {n_cols}), got {overlap_px}")
    if options.get("half_acquisition"):
        raise ParamError("multi-scan synthesis does not combine with half acquisition")
    for key in ("center", "phantom", "_extra_truth", "_extra_datasets", "_volume_n"):
        if key in options:
            raise ParamError(f"write_multiscan sets {key!r} itself")
    overlap_px = int(overlap_px)
    step = n_cols - overlap_px
    wide = n_scans * n_cols - (n_scans - 1) * overlap_px
    wide_center = (wide - 1) / 2.0
    mu_scale = options.pop("mu_scale", None)
    mu_scale = default_mu_scale(wide) if mu_scale is None else float(mu_scale)
    phantom = default_phantom(wide, n_rows, mu_scale)
    motor_path = ("entry/sample/x_translation" if options.get("format") == "nxtomo"
                  else "measurement/instrument/sample_stage/x")
    errors = _rng(seed, _S_MOTOR).uniform(-motor_error_px, motor_error_px, n_scans)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files, offsets, positions, truths = [], [], [], []
    for i in range(n_scans):
        offset = i * step
        position_mm = (offset + errors[i]) * pixel_size_m * 1e3
        scan_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _S_SCAN, i]).generate_state(1)[0])
        extra = {"offset_px": offset, "motor_error_px": float(errors[i]),
                 "motor_position_mm": float(position_mm), "scan_index": i, "n_scans": n_scans,
                 "multiscan_overlap_px": overlap_px, "wide_n_cols": wide, "wide_center": wide_center,
                 "multiscan_seed": int(seed)}
        path = directory / f"scan_{i:02d}.h5"
        # The stage motor as the control system logged it, error included.
        motor = {motor_path: ("mm", position_mm,
                              "lateral position of this scan's column 0 in the stitched field of view")}
        truth = write_scan(
            path, n_cols=n_cols, n_rows=n_rows, n_angles=n_angles, center=wide_center - offset,
            phantom=phantom, mu_scale=mu_scale, pixel_size_m=pixel_size_m, seed=scan_seed,
            _extra_truth=extra, _extra_datasets=motor, _volume_n=wide, **options)
        files.append(path)
        offsets.append(offset)
        positions.append(position_mm)
        truths.append(truth)
    csv_path = directory / "scans.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "position_mm"])
        for path, pos in zip(files, positions, strict=True):
            writer.writerow([path.name, f"{pos:.9f}"])
    return {"files": [str(p) for p in files], "csv": str(csv_path), "offsets_px": offsets,
            "motor_positions_mm": positions, "motor_errors_px": errors.tolist(),
            "wide_n_cols": wide, "wide_center": wide_center, "phantom": phantom,
            "pixel_size_m": pixel_size_m, "truths": truths}
