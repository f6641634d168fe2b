"""Geometry of the ``fourier`` backends: what depends on the angles, the detector and the
output tile but not on the data (numpy, on the host).

A polar line of angle θ_a carries N samples of a filtered projection with period
P pixels; its coefficient at integer frequency k (ω_k = 2πk / P rad/pixel) is

    c_ak = w_a · amp_k / N · (−1)^k · e^{iω_k f_a} · FFT(samples)[k]

where w_a is the angle's quadrature weight, amp_k halves a split Nyquist bin, and
f_a = u_a − x0_a − P/2 is where the tile's centre projects (u_a, in detector columns)
relative to the middle of the line's samples (x0_a: column of sample 0).  The
(−1)^k e^{iω_k f_a} form keeps the phase small, so it is exact in single precision.

Two kinds of polar line:

* **The whole slice** (no tile): the N = L_w samples of the filtered row around the
  rotation axis, at unit spacing (``fourier``'s step 2); the bins ±N/2 carry half the
  Nyquist term each.  The series C(s) of these samples is *the* slice's interpolant.
* **A tile** (pixels [y0, y1) × [x0, x1), a smaller NUFFT about its own centre): C
  resampled at spacing h = 1/:data:`UPSAMPLE` around the tile's shadow, times a taper
  ψ that is 1 on the shadow and falls to 0 before the ends (a box smoothed by a
  Gaussian).  C·ψ has almost no content beyond 1/2 + (UPSAMPLE − 1)/2 cycles/pixel
  (below :data:`TAPER_TOL`), so the N samples at spacing h represent it everywhere,
  and on the shadow C·ψ = C: every pixel of the tile gets the value the whole-slice
  series gives it, to ~1e-7.  (Cropping C at unit spacing instead would change the
  band-limited interpolation between samples at ~1e-4 of the range: the series of a
  cropped window rings from its seam with a 1/distance tail.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.fft as sfft
import scipy.special

from teravox.recon import filters
from teravox.recon.backends import base

# Extra window samples each side: the series of a cropped row rings near the crop's
# periodic seam, and the margin keeps that ringing off the pixels.
_MARGIN_MIN = 8
# Angular resampling: stop where it would keep more than this share of the points, and
# treat angles as equally spaced while that moves no pixel's phase by more than this
# (radians) at the top of the resampled band.
_RESAMPLE_MAX_SHARE = 0.9
_UNIFORM_PHASE_TOL = 1e-3
#: Tiles resample the slice's series at 1/UPSAMPLE pixel: the taper's spectrum must
#: fall below TAPER_TOL within (UPSAMPLE − 1)/2 cycles/pixel of the band edge.
UPSAMPLE = 1.125
TAPER_TOL = 1e-7


def even_fast_len(target: int) -> int:
    """Smallest even 5-smooth length ≥ target (pocketfft runs lengths with factors 7 or
    11 up to 25 % slower, measured at 2178 vs 2160 and 4312 vs 4320)."""
    length = sfft.next_fast_len(max(2, target), real=True)
    while length % 2:
        length = sfft.next_fast_len(length + 1, real=True)
    return length


def margin(n: int) -> int:
    return max(_MARGIN_MIN, n // 64)


def exact_radius(n: int, columns: int, center: float,
                 measured: tuple[int, int] | None = None) -> float:
    """Radius (pixels from the axis) within which the slice is computed exactly.

    The n × n square reaches (n − 1)/√2; the detector reaches no farther from the axis
    than its farthest edge.  Beyond that edge no ray of any angle was measured, so the
    backend computes up to the edge plus a margin and sets what lies farther to 0
    (at n = columns that spares the corners a third of the NUFFT points).
    """
    lo, hi = measured if measured is not None else (0, columns)  # padding measures nothing
    reach = max(center - lo + 0.5, hi - 0.5 - center)
    return min((n - 1) / math.sqrt(2), reach + margin(n))


def pad_len(columns: int, win_start: int, win_len: int) -> int:
    """Length L of the filtering FFT: the circular convolution over L equals the linear
    one (detector samples × the ramp kernel) at every window sample when no lag between
    a window sample and a detector column exceeds L/2: about columns + window (less
    than 2 × columns when the window lies within a padded detector)."""
    lag = max(win_start + win_len - 1, columns - 1 - win_start)
    return even_fast_len(2 * lag + 2)


def window_len(radius: float, n: int) -> int:
    half = math.ceil(radius) + margin(n)
    return even_fast_len(2 * half + 2)


def layout_bounds(n_angles: int, columns: int, n: int) -> tuple[int, int, int]:
    """Upper bounds on (pad_len, win_len, n_points) of any whole-slice :func:`make_layout`
    for these sizes with the centre on the detector (0 ≤ center ≤ columns), for memory
    planning before the centre is known."""
    win = window_len((n - 1) / math.sqrt(2), n)
    pad = max(2 * win, *(pad_len(columns, int(math.floor(c)) - win // 2, win) for c in (0, columns)))
    # left + right blocks hold ≤ win_len + 2 − k_lo − k_split samples per angle; the
    # resampled bands replace 2·angles samples per |k| < k_split by fewer nodes.
    return pad, win, n_angles * (win + 1) + 1


@dataclass(frozen=True)
class Tile:
    """Pixels [y0, y1) × [x0, x1) of the n × n slice, computed as one NUFFT about the
    tile's own centre."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def centre(self, n: int) -> tuple[float, float]:
        """(x, y) of the tile's mode (0, 0) relative to the axis, in pixels."""
        ny, nx = self.shape
        return self.x0 + nx // 2 - (n - 1) / 2, self.y0 + ny // 2 - (n - 1) / 2

    @property
    def radius(self) -> float:
        """Farthest pixel from the tile's mode (0, 0), in pixels."""
        ny, nx = self.shape
        return math.hypot(nx // 2, ny // 2)

    def nearest(self, n: int) -> float:
        """Distance of the tile's nearest pixel from the axis (pixels)."""
        h = (n - 1) / 2
        dx = max(self.x0 - h, 0.0, h - (self.x1 - 1))
        dy = max(self.y0 - h, 0.0, h - (self.y1 - 1))
        return math.hypot(dx, dy)


def tile_grid(n: int, size: int) -> tuple[int, list[Tile]]:
    """(t, tiles): ⌈n / size⌉² tiles of one shape t × t (t ≤ size) covering the n × n
    slice; the last row and column of tiles are moved back to end at n, so they overlap
    their neighbours (one shape: one set of NUFFT points for all of them)."""
    parts = max(1, math.ceil(n / max(1, size)))
    t = math.ceil(n / parts)
    starts = [min(i * t, n - t) for i in range(parts)]
    return t, [Tile(y, y + t, x, x + t) for y in starts for x in starts]


@dataclass
class Layout:
    """What the per-pair steps need besides the data (numpy arrays on the host).

    Frequencies k are integers, ω_k = 2πk / period rad/pixel, |k| ≤ k_max.  The
    coefficient vector of one slice pair holds, in this order: the ``left`` block
    (angles × k in [−k_max, −k_lo]; absent for a single real slice), the ``right`` block
    (angles × k in [k_split, k_max]), then each resampled band (|k| in [k0, k1) × nodes;
    half the nodes for a single slice), then the DC point.  ``k_lo = max(k_split, 1)``;
    with ``k_split = 0`` nothing is resampled and k = 0 sits in ``right``.

    The resampled frequencies 0 < |k| < k_split are first gathered on circles: column j
    of the (k_split − 1, 2·angles) circle array is the direction θ₀ + jπ/angles, so angle
    a puts +k in column ``top[a]`` and −k in column ``bottom[a]`` (swapped for θ in an
    odd half-turn, whose +k points the other way); each circle is a contiguous row, the
    FFTs' fast axis.

    ``half``: one real slice.  Its coefficients at −k are the conjugates of those at +k
    (and a circle's node j + K/2 the conjugate of node j), so only k ≥ 0 and the first
    half of each circle's nodes are transformed, at twice the weight (DC once), and the
    slice is the real part: half the NUFFT points, instead of pairing with a zero slice.
    """

    n_angles: int
    columns: int            # as the backend sees them, virtual padding included
    n: int
    center: float           # axis, in those columns
    pad_len: int            # L, even: length of the filtering FFT
    win_len: int            # L_w, even: the whole slice's window (its series' period)
    win_start: int          # detector column of window sample 0 (may be < 0)
    tile: Tile
    period: float           # P: the polar lines' period in pixels (L_w for the whole slice)
    crop_len: int           # N: samples per polar line, the length of its FFT
    k_max: int              # |k| ≤ k_max
    split: bool             # bins ±N/2 each carry half the Nyquist term (whole slice)
    half: bool              # one real slice (see the class docstring)
    k_split: int            # |k| < k_split is angularly resampled (0: none)
    filt: np.ndarray        # float32 (L,): filter on the FFT bins of the padded row (empty when folded)
    weights: np.ndarray     # float64 (angles,): quadrature weights, radians
    frac: np.ndarray        # float64 (angles,): f_a of the module docstring, pixels
    top: np.ndarray         # int64 (angles,): circle column of +k
    bottom: np.ndarray      # int64 (angles,): circle column of −k
    sorted_rows: bool       # top = arange, bottom = arange + angles (slices suffice)
    radius: float           # pixels beyond this distance from the axis are 0
    pad_width: int = 0      # columns of virtual padding each side (the data has columns − 2·pad_width)
    pad_mode: str = "edge"
    bands: list[tuple[int, int, int]] = field(default_factory=list)  # (k0, k1, nodes)
    x: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    y: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    reach: np.ndarray | None = None  # per tile row the [first, stop) columns within ``radius`` (else 0)
    line_len: int = 0               # tiles: samples of the upsampled series (L_u)
    crop_start: np.ndarray | None = None  # tiles: int64 (angles,) first sample of each crop
    taper: np.ndarray | None = None       # tiles: float32 (N,)
    factors: dict[str, np.ndarray] | None = None  # cached factor blocks (whole slice)
    fold: dict[str, np.ndarray] | None = None     # the folded filtering's arrays (:func:`fold_filter`)

    @property
    def n_points(self) -> int:
        return int(self.x.size)

    @property
    def k_lo(self) -> int:
        return max(self.k_split, 1)

    @property
    def spacing(self) -> float:
        """Pixels between samples of a polar line."""
        return self.period / self.crop_len

    def offsets(self) -> dict[str, Any]:
        """Start of each block in the coefficient vector."""
        return block_offsets(self.n_angles, self.k_max, self.k_split, self.bands, self.half)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays the per-pair steps read (moved to the device by the GPU backend)."""
        out = {"filt": self.filt, "top": self.top, "bottom": self.bottom,
               "weights": self.weights.astype(np.float32), "frac": self.frac.astype(np.float32)}
        if self.factors is not None:
            out.update(self.factors)
        if self.fold is not None:
            out.update(self.fold)
        if self.taper is not None:
            out["taper"] = self.taper
        return out


def block_offsets(m: int, k_max: int, k_split: int, bands: list[tuple[int, int, int]],
                  half: bool) -> dict[str, Any]:
    """Start of each block of a coefficient vector (see :class:`Layout`)."""
    k_lo = max(k_split, 1)
    left = 0 if half else m * max(0, k_max - k_lo + 1)
    right = left + m * max(0, k_max - k_split + 1)
    starts, pos = [], right
    for k0, k1, nodes in bands:
        starts.append(pos)
        pos += (nodes // 2 if half else nodes) * (k1 - k0)
    return {"left": 0, "right": left, "bands": starts, "dc": pos, "end": pos + (k_split > 0)}


def _circle_order(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
    """How far the folded angles are from equal spacing over [0, π) (radians, inf when
    they cannot be), their circle order, their half-turn flips, and θ₀."""
    m = theta.size
    turns = np.floor(theta / np.pi)
    folded = theta - turns * np.pi
    order = np.argsort(folded, kind="stable")
    flip = (turns.astype(np.int64) % 2) == 1
    if m < 8:
        return math.inf, order, flip, 0.0
    expected = folded[order[0]] + np.pi / m * np.arange(m)
    return float(np.max(np.abs(folded[order] - expected))), order, flip, float(folded[order[0]])


def _nodes_needed(k: np.ndarray, period: float, radius: float) -> np.ndarray:
    """Circle nodes K(k) that represent the angular harmonics at |k| of every NUFFT mode
    within ``radius`` (pixels) exactly.

    The exponential of a mode at radius r has harmonics J_m(2π|ω| r); beyond
    m = z = 2π|ω| r_max they fall off like an Airy function, below 1e-6 by
    m ≈ z + 6 z^(1/3); 8 more for safety.  K/2 must exceed that.
    """
    z = 2 * np.pi * np.abs(k) / period * radius
    return 2 * np.ceil(z + 6 * np.cbrt(z) + 8).astype(np.int64) + 2


def plan_bands(n_angles: int, period: float, k_top: int, radius: float
               ) -> tuple[int, list[tuple[int, int, int]]]:
    """k_split and the resampled bands (k0, k1, nodes) for a uniform angle set whose
    modes must be exact within ``radius`` pixels; |k| ≤ k_top may be resampled."""
    circle = 2 * n_angles
    ks = np.arange(1, k_top + 1)
    need = _nodes_needed(ks, period, radius)
    useful = need <= _RESAMPLE_MAX_SHARE * circle
    if ks.size == 0 or not useful[0]:
        return 0, []
    k_split = int(ks[np.argmin(useful)]) if not useful.all() else k_top + 1
    bands: list[tuple[int, int, int]] = []
    k0 = 1
    while k0 < k_split:
        # A band shares one node count; let it grow by ~6 % so that there are few
        # bands (one FFT call each) and little waste.
        nodes = min(even_fast_len(int(need[k0 - 1] * 1.06) + 2), circle)
        k1 = k0
        while k1 < k_split and need[k1 - 1] <= nodes:
            k1 += 1
        bands.append((k0, k1, nodes))
        k0 = k1
    return k_split, bands


def bands_for(n_angles: int, period: float, k_top: int, radius: float, deviation: float,
              resample: bool = True) -> tuple[int, list[tuple[int, int, int]]]:
    """:func:`plan_bands` where the angles allow it: ``deviation`` (radians) from equal
    spacing, inf when they cannot be treated so."""
    if not resample or deviation == math.inf:
        return 0, []
    k_split, bands = plan_bands(n_angles, period, k_top, radius)
    # Resampling treats the angles as exactly equal steps.  A deviation ε (angles read
    # as float32 degrees, encoder jitter) then shifts the phase of a mode at radius r by
    # up to 2π·|ω|·r·ε in the resampled band; above the tolerance the angles are used
    # as they are, with every polar sample.
    if k_split and deviation * 2 * np.pi * (k_split / period) * radius > _UNIFORM_PHASE_TOL:
        return 0, []
    return k_split, bands


def angle_deviation(theta: np.ndarray) -> float:
    """How far angles (radians) are from equal spacing over [0, π), inf when they cannot
    be treated as equally spaced (fewer than 8)."""
    return _circle_order(np.asarray(theta, dtype=np.float64))[0]


def count_points(m: int, k_max: int, k_split: int, bands: list[tuple[int, int, int]], half: bool) -> int:
    """NUFFT points of a coefficient vector (see :class:`Layout`)."""
    return int(block_offsets(m, k_max, k_split, bands, half)["end"])


@dataclass(frozen=True)
class Window:
    """The whole slice's window and filtering lengths for one geometry.

    ``fold``: the data's columns lie within the window, so the filtering runs at period
    2·L_w and only the window's L_w samples are transformed (:func:`fold_filter`);
    otherwise the padded row is filtered at ``pad_len`` and the window cropped from it."""

    radius: float       # exact radius about the axis, pixels
    win_len: int
    win_start: int
    pad_len: int
    fold: bool = False


def whole_window(n: int, columns: int, center: float, measured: tuple[int, int] | None,
                 pad_width: int = 0) -> Window:
    """The window of a geometry whose ``columns`` include ``pad_width`` columns of virtual
    padding each side (the data holds the columns between them)."""
    radius = exact_radius(n, columns, center, measured)
    win = window_len(radius, n)
    start = int(math.floor(center)) - win // 2
    if start <= pad_width and columns - pad_width <= start + win:
        return Window(radius, win, start, 2 * win, True)
    return Window(radius, win, start, pad_len(columns, start, win))


def fold_filter(filter_name: str, win: Window, columns: int, pad: tuple[int, str]) -> dict[str, np.ndarray]:
    """The arrays of the folded filtering (``win.fold``), by name.

    With the data within the window, the filtered row is exact on the window when
    filtered at period P = 2·L_w (no lag between a data and a window sample exceeds L_w).
    Origin at window sample 0, x the data placed in the window: the window's spectrum is

        W[k] = H[2k]/2 · X[k] + FFT(e^{2πij/P}/2 · IFFT(H[2k+1] · FFT(x e^{−2πij/P})))[k]

    with X = FFT(x), H the filter of period P: the even and odd bins of the period-P
    transform, each brought back to the window's L_w samples (decimation in frequency).
    Four FFTs of L_w, where filtering the padded row costs two of ≥ columns + L_w and
    the window one of L_w.  Virtual edge padding adds, per row, its first and last data
    value times the fixed spectrum of a filtered block of ones (``pad_spec``, computed once
    at the long length, as its lags may exceed L_w)."""
    lw = win.win_len
    period = 2 * lw
    full = filters.fft_filter(filter_name, period)
    j = np.arange(lw)
    out = {"fold_even": (full[0::2] / 2).astype(np.float32), "fold_odd": full[1::2].astype(np.float32),
           "fold_in": np.exp(-2j * np.pi * j / period).astype(np.complex64),
           "fold_out": (np.exp(2j * np.pi * j / period) / 2).astype(np.complex64)}
    width, mode = pad
    if width and mode == "edge":
        long = pad_len(columns, win.win_start, lw)
        blocks = np.zeros((2, long))
        blocks[0, :width] = 1
        blocks[1, columns - width: columns] = 1
        rows = sfft.irfft(sfft.rfft(blocks) * filters.rfft_filter(filter_name, long), long)
        out["pad_spec"] = sfft.fft(rows[:, (win.win_start + j) % long]).astype(np.complex64)
    return out


def taper_sigma() -> float:
    """Standard deviation (pixels) of the Gaussian that smooths the tile's box taper: its
    spectrum falls to TAPER_TOL at (UPSAMPLE − 1)/2 cycles/pixel."""
    room = (UPSAMPLE - 1) / 2
    return math.sqrt(math.log(1 / TAPER_TOL) / (2 * math.pi**2)) / room


def _taper_reach() -> float:
    """Distance (pixels) over which the Gaussian-smoothed box goes from 1 − tol to tol."""
    return 2 * taper_sigma() * math.sqrt(2) * float(scipy.special.erfcinv(2 * TAPER_TOL))


def tile_line(radius: float, win_len: int) -> tuple[int, int, float]:
    """(N, L_u, h) of tiles whose pixels lie within ``radius`` of their centre: samples per
    polar line, length of the upsampled series of the whole-slice window, spacing."""
    line = even_fast_len(math.ceil(UPSAMPLE * win_len))
    h = win_len / line
    crop = even_fast_len(math.ceil(2 * (radius + h / 2 + _taper_reach()) / h) + 2)
    return crop, line, h


def _taper(crop: int, h: float, radius: float) -> np.ndarray:
    """ψ on the crop's samples: 1 (to TAPER_TOL) within radius + h/2 of the middle,
    0 (to TAPER_TOL) at the ends."""
    sigma = taper_sigma()
    a = radius + h / 2 + _taper_reach() / 2
    d = (np.arange(crop) - crop // 2) * h
    s = sigma * math.sqrt(2)
    return (0.5 * (scipy.special.erf((d + a) / s) - scipy.special.erf((d - a) / s))).astype(np.float32)


def _angles(theta: np.ndarray) -> dict[str, Any]:
    deviation, order, flip, theta0 = _circle_order(theta)
    m = theta.size
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    top = np.where(flip, rank + m, rank)
    bottom = np.where(flip, rank, rank + m)
    return {"deviation": deviation, "theta0": theta0, "top": top, "bottom": bottom,
            "sorted": bool(np.array_equal(top, np.arange(m)) and not flip.any()),
            "weights": base.angle_weights(theta)}


def phase_factors(frac: np.ndarray, k: np.ndarray, period: float, phase: np.ndarray, out: np.ndarray) -> None:
    """out = e^{iω_k f_a} (complex64, angles × k) for phase offsets ``frac`` (f_a, pixels)
    and integer frequencies ``k`` (ω_k = 2πk / period), through the float32 scratch
    ``phase``: the phases stay within ±2π, so single precision holds them."""
    np.multiply(frac.astype(np.float32)[:, None], (k * (2 * math.pi / period)).astype(np.float32)[None, :], out=phase)
    np.cos(phase, out=out.real)
    np.sin(phase, out=out.imag)


def factor_block(lay: Layout, k: np.ndarray, a0: int, a1: int, double: bool = False) -> np.ndarray:
    """complex64 (a1 − a0, k.size) factors c_ak / FFT[k] of the module docstring for
    angles [a0, a1) and integer frequencies ``k``; ``double``: twice the weight for k ≠ 0
    (the k ≥ 0 half of one real slice)."""
    out = np.empty((a1 - a0, k.size), dtype=np.complex64)
    if k.size == 0:
        return out
    phase_factors(lay.frac[a0:a1], k, lay.period, np.empty(out.shape, np.float32), out)
    amp = np.where(k % 2 == 0, 1.0, -1.0) / lay.crop_len  # (−1)^k: the line's middle at P/2
    if lay.split:
        amp = np.where(np.abs(k) * 2 == lay.crop_len, amp * 0.5, amp)
    if double:
        amp = np.where(k != 0, amp * 2, amp)
    out *= (lay.weights[a0:a1, None] * amp[None, :]).astype(np.float32)
    return out


def factor_ks(lay: Layout) -> dict[str, np.ndarray]:
    """The integer frequencies of each factor block (numpy int64)."""
    ks = lay.k_split
    return {"f_left": np.arange(-lay.k_max, -lay.k_lo + 1) if not lay.half else np.empty(0, np.int64),
            "f_right": np.arange(ks, lay.k_max + 1),
            "f_plus": np.arange(1, ks) if ks else np.empty(0, np.int64),
            "f_minus": -np.arange(1, ks) if ks else np.empty(0, np.int64),
            "f_dc": np.zeros(1 if ks else 0, np.int64)}


def cache_factors(lay: Layout, block: int = 256) -> None:
    """Compute every factor block once, in blocks of angles (no (angles × k) complex128)."""
    out: dict[str, np.ndarray] = {}
    for name, k in factor_ks(lay).items():
        arr = np.empty((lay.n_angles, k.size), np.complex64)
        for a0 in range(0, lay.n_angles, block):
            a1 = min(a0 + block, lay.n_angles)
            arr[a0:a1] = factor_block(lay, k, a0, a1, double=lay.half and name == "f_right")
        if name == "f_dc":  # one factor per angle (none without resampling)
            arr = arr[:, 0] if k.size else np.empty(0, np.complex64)
        out[name] = arr
    lay.factors = out


def _points(lay: Layout, theta: np.ndarray, theta0: float) -> tuple[np.ndarray, np.ndarray]:
    """The NUFFT points (x, y) of the coefficient vector, in its order (float32, rad/pixel)."""
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    ks = factor_ks(lay)
    count = count_points(lay.n_angles, lay.k_max, lay.k_split, lay.bands, lay.half)
    x, y = np.empty(count, np.float32), np.empty(count, np.float32)
    pos = 0

    def put(ax: np.ndarray, ay: np.ndarray) -> None:
        nonlocal pos
        x[pos: pos + ax.size] = ax.ravel()
        y[pos: pos + ay.size] = ay.ravel()
        pos += ax.size

    scale = 2 * np.pi / lay.period
    for name in ("f_left", "f_right"):
        omega = scale * ks[name]
        put(omega[None, :] * cos_t[:, None], omega[None, :] * sin_t[:, None])
    for k0, k1, nodes in lay.bands:
        kept = nodes // 2 if lay.half else nodes
        phi = theta0 + 2 * np.pi * np.arange(kept) / nodes
        omega = scale * np.arange(k0, k1)
        put(omega[:, None] * np.cos(phi)[None, :], omega[:, None] * np.sin(phi)[None, :])
    if lay.k_split:
        put(np.zeros(1), np.zeros(1))
    return x, y


def _reach(lay: Layout) -> np.ndarray | None:
    """int64 (tile rows, 2): per row of the tile, the [first, stop) columns (tile
    coordinates) within the exact radius of the axis; None when the whole tile is."""
    t, n = lay.tile, lay.n
    h = (n - 1) / 2
    corners = [math.hypot(x - h, y - h) for x in (t.x0, t.x1 - 1) for y in (t.y0, t.y1 - 1)]
    if max(corners) <= lay.radius:
        return None
    dy = np.arange(t.y0, t.y1) - h
    half = np.sqrt(np.maximum(lay.radius**2 - dy * dy, 0.0))
    inside = lay.radius**2 - dy * dy >= 0
    lo = np.where(inside, np.ceil(h - half), 0).astype(np.int64) - t.x0
    hi = np.where(inside, np.floor(h + half) + 1, 0).astype(np.int64) - t.x0
    return np.stack([np.clip(lo, 0, t.x1 - t.x0), np.clip(hi, 0, t.x1 - t.x0)], axis=1)


def reach_mask(lay: Layout) -> np.ndarray | None:
    """float32 tile-shaped map of :func:`_reach`: 1 within the exact radius, 0 beyond."""
    if lay.reach is None:
        return None
    cols = np.arange(lay.tile.x1 - lay.tile.x0)
    return ((cols >= lay.reach[:, :1]) & (cols < lay.reach[:, 1:])).astype(np.float32)


def make_layout(theta: np.ndarray, columns: int, center: float, n: int,
                filter_name: str, resample: bool = True,
                measured: tuple[int, int] | None = None, *, tile: Tile | None = None,
                half: bool = False, pad: tuple[int, str] | None = None,
                factors: bool = True) -> Layout:
    """The filter, the window, the polar points and their factors of one geometry.

    ``columns``, ``center`` and ``measured`` (the [first, stop) columns that hold data
    rather than padding) are as the backend sees them, virtual padding ``pad`` = (width
    each side, "edge" | "zero") included.  ``tile``: the tile's layout (None: the whole
    slice); for a tile the per-angle crops are set by :func:`place`.  ``factors``: cache
    the factor blocks (otherwise the steps compute them per block of angles)."""
    m = theta.size
    width, mode = pad if pad else (0, "edge")
    win = whole_window(n, columns, center, measured, width)
    filt = (np.empty(0) if win.fold else filters.fft_filter(filter_name, win.pad_len)).astype(np.float32)
    ang = _angles(theta)
    if tile is None:
        whole = Tile(0, n, 0, n)
        period, crop, k_max, split, line = float(win.win_len), win.win_len, win.win_len // 2, True, 0
        # Integer NUFFT modes sit up to √2/2 px from the pixels of an even grid.
        mode_radius = min(n / math.sqrt(2), win.radius + 1)
    else:
        whole = tile
        crop, line, h = tile_line(tile.radius, win.win_len)
        period, k_max, split = crop * h, crop // 2 - 1, False  # the bin ±N/2 holds < TAPER_TOL
        mode_radius = tile.radius + 0.5
    # the whole slice's split Nyquist bin stays a polar line
    k_split, bands = bands_for(m, period, k_max - split, mode_radius, ang["deviation"], resample)
    lay = Layout(m, columns, n, center, win.pad_len, win.win_len, win.win_start, whole, period, crop,
                 k_max, split, half, k_split, filt, ang["weights"], np.zeros(m), ang["top"], ang["bottom"],
                 ang["sorted"], win.radius, width, mode, bands, line_len=line,
                 fold=fold_filter(filter_name, win, columns, (width, mode)) if win.fold else None)
    lay.x, lay.y = _points(lay, theta, ang["theta0"])
    if tile is None:
        cx = n // 2 - (n - 1) / 2  # an even grid's mode 0 sits half a pixel off the axis
        lay.frac = (center - math.floor(center)) + cx * (np.cos(theta) + np.sin(theta))
        lay.reach = _reach(lay)
        if factors:
            cache_factors(lay)
    else:
        lay.taper = _taper(crop, lay.spacing, tile.radius)
        lay = place(lay, tile, theta)
    return lay


def place(lay: Layout, tile: Tile, theta: np.ndarray) -> Layout:
    """``lay`` (a tile layout of the same shape) moved to ``tile``: the crop of each angle
    around the tile's shadow, its phase offsets and the pixels within reach."""
    cx, cy = tile.centre(lay.n)
    h = lay.spacing
    u = lay.center + cx * np.cos(theta) + cy * np.sin(theta)  # the centre's column per angle
    pos = (u - lay.win_start) / h                            # in samples of the series
    nearest = np.rint(pos)
    out = replace(lay, tile=tile, crop_start=nearest.astype(np.int64) - lay.crop_len // 2,
                  frac=(pos - nearest) * h, factors=None)
    out.reach = _reach(out)
    return out
