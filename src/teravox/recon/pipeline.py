"""The pass-2 chain on one block of sinograms: arrays in, slices out.

Order: −log (unless pass 1 already produced line integrals) → 360°→180° for
half-acquisition scans → stripe removal → sinogram-domain ring removal → padding →
reconstruction with the chosen backend → ring removal on slices → circular mask.
The conversion to the output dtype happens in the stage, with the one mapping
that the whole volume shares.  The padding is the backend's to do (the fourier
backends pad row by row, without a padded copy), and slices can leave the backend
tile by tile (``write``) when no slice-domain ring removal needs them whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from teravox import resources
from teravox.config import Params
from teravox.parallel import for_spans


@dataclass(frozen=True)
class Geometry:
    """What every block of a volume shares, resolved once (plan + collect)."""

    center: float           # rotation axis at row center_row, columns of projections.h5 (0-based, pixel i at i)
    n_out: int              # slice size n (n × n)
    pad_width: int          # columns of padding on each side
    side: str | None = None  # half acquisition: side of the axis ("left"/"right"); None for 180°
    tilt_px_per_row: float = 0.0  # a tilted axis: the centre moves by this many columns per row
    center_row: float = 0.0  # the row (of projections.h5) where the axis is at ``center``

    def center_at(self, row: float) -> float:
        """The rotation axis (column) at ``row`` of projections.h5."""
        return self.center + self.tilt_px_per_row * (row - self.center_row)


def steps(params: Params, quantity: str = "transmission") -> list[tuple[str, dict]]:
    """The pass-2 operations ``params`` switches on, with their parameters."""
    out: list[tuple[str, dict]] = []
    if params.minus_log and quantity == "transmission":
        out.append(("-log", {}))
    if params.half_acquisition != "off":
        out.append(("360° → 180° conversion", {"side": params.half_acquisition}))
    if params.stripe_recon != "off":
        out.append(("stripe removal (sinograms)", {"method": params.stripe_recon, "snr": params.stripe_snr,
                                                   "la_size": params.stripe_la_size,
                                                   "sm_size": params.stripe_sm_size}))
    if params.pad != "none":
        out.append(("padding", {"mode": params.pad, "width_px": params.pad_width_px or "auto"}))
    out.append(("reconstruction", {"backend": params.backend, "filter": params.filter_name,
                                   "algorithm": params.algorithm}))
    if params.rings != "off":
        out.append(("ring removal", {"method": params.rings, "snr": params.ring_snr, "size": params.ring_size}))
    if params.circ_mask:
        out.append(("circular mask", {"ratio": params.circ_mask_ratio, "value": params.circ_mask_value}))
    if params.dtype != "float32":
        out.append(("conversion", {"dtype": params.dtype, "range": params.dtype_range}))
    return out


def line_integrals(block: np.ndarray, params: Params, quantity: str, inplace: bool = False,
                   workers: int = 1) -> np.ndarray:
    """(rows, angles, cols) projections data → line integrals (−log where needed;
    ``inplace``: overwriting a float32 ``block``), rows in ``workers`` threads."""
    from teravox.recon.sinogram import minus_log

    block = np.asarray(block, dtype=np.float32)
    if not (params.minus_log and quantity == "transmission"):
        return block
    out = block if inplace else np.empty(block.shape, np.float32)

    def rows(a: int, b: int) -> None:
        if inplace:
            minus_log(block[a:b], inplace=True)
        else:
            out[a:b] = minus_log(block[a:b])

    for_spans(rows, block.shape[0], workers)
    return out


def to_180(sinos: np.ndarray, theta: np.ndarray, center: float, side: str | None
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Half-acquisition 360° sinograms → 180° sinograms, their angles and centre."""
    from teravox.recon.sinogram import convert_360_to_180, half_acquisition_pairs

    out, new_center = convert_360_to_180(sinos, center, side, theta=theta)
    first, _ = half_acquisition_pairs(sinos.shape[1], theta)
    return out, theta[first], new_center


#: ``write(s, rows, cols, values)``: where a slice's pixels [rows, cols] go (float32 values)
Writer = Callable[[int, slice, slice, np.ndarray], None]


class _MaskedWriter:
    """What the backend writes into (``out[s, rows, cols] = tile``): the circular mask,
    tile by tile, then ``write``."""

    def __init__(self, write: Writer, n: int, params: Params):
        self.write, self.n, self.params = write, n, params

    def __setitem__(self, key: tuple[int, slice, slice], values: np.ndarray) -> None:
        s, rows, cols = key
        if self.params.circ_mask:
            from teravox.post.mask import mask_region

            mask_region(values, self.n, rows, cols, self.params.circ_mask_ratio, self.params.circ_mask_value)
        self.write(s, rows, cols, values)


def streams(params: Params) -> bool:
    """Whether slices can leave the backend tile by tile: no slice-domain ring removal."""
    return params.rings not in ("fft", "wavelet-fft")


def reconstructed_sinograms(block: np.ndarray, theta: np.ndarray, params: Params, geom: Geometry,
                            quantity: str = "transmission", rows: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray, float]:
    """(rows, angles, cols) of projections.h5 → the sinograms the backend reconstructs (before
    its padding: −log, tilt, 360°→180°, stripe and sinogram ring removal), their angles
    (radians) and the rotation centre (column).  A float32 ``block`` is overwritten.  Every
    step runs in the job's threads (``params.threads``, else every core it was given)."""
    from teravox.recon import sinogram

    threads = resources.threads(params.threads)
    sinos = line_integrals(block, params, quantity, inplace=True, workers=threads)
    if geom.tilt_px_per_row:
        if rows is None:
            raise ValueError("a tilted axis needs the block's rows")
        shifts = -geom.tilt_px_per_row * (np.asarray(rows, dtype=np.float64) - geom.center_row)
        sinos = sinogram.shift_columns(sinos, shifts)
    center = geom.center
    if params.half_acquisition != "off":
        sinos, theta, center = to_180(sinos, theta, center, geom.side)
    if params.stripe_recon != "off":
        from teravox.prep.stripes import remove_stripes

        sinos = remove_stripes(sinos, params.stripe_recon, snr=params.stripe_snr,
                               la_size=params.stripe_la_size, sm_size=params.stripe_sm_size,
                               workers=threads)
    if params.rings == "sinogram":
        from teravox.post.rings import remove_rings_sinogram

        sinos = remove_rings_sinogram(sinos, snr=params.ring_snr, size=params.ring_size, workers=threads)
    return sinos, theta, center


def reconstruct_block(block: Any, theta: np.ndarray, params: Params, geom: Geometry,
                      quantity: str = "transmission", batch_pairs: int | None = None, *,
                      rows: np.ndarray | None = None, tile: int | None = None,
                      write: Writer | None = None) -> np.ndarray | None:
    """(rows, angles, cols) of projections.h5 → (rows, n, n) float32 slices.

    ``theta`` in radians.  Values: attenuation coefficient per pixel.  ``block`` (float32)
    is overwritten (−log in place); given as a :class:`~teravox.recon.backends.base.Handover`
    the backend frees it once filtered.  ``batch_pairs``: the plan's slice pairs per GPU
    batch (``fourier-gpu`` only); ``tile``: the plan's tile side (``fourier``).  With
    ``write`` the slices go there (tile by tile when :func:`streams`) and None is returned.
    ``rows``: the block's rows of projections.h5, needed when the axis is tilted (each
    sinogram is then moved so that its axis lies at ``geom.center``).  Every step runs in
    the job's threads (``params.threads``, else every core it was given).
    """
    from teravox.recon.backends import reconstruct
    from teravox.recon.backends.base import Handover

    sinos = block.take() if isinstance(block, Handover) else block
    sinos, theta, center = reconstructed_sinograms(sinos, theta, params, geom, quantity, rows)
    threads = resources.threads(params.threads)
    pad = (geom.pad_width, params.pad) if geom.pad_width and params.pad != "none" else None
    sink = _MaskedWriter(write, geom.n_out, params) if write is not None and streams(params) else None
    handed = Handover(sinos)
    del sinos
    slices = reconstruct(handed, theta, center, backend=params.backend, n=geom.n_out,
                         filter_name=params.filter_name, threads=threads,
                         eps=params.fourier_eps, upsampfac=params.fourier_upsampfac,
                         algorithm=params.algorithm, pad=pad, batch_pairs=batch_pairs, tile=tile, out=sink)
    if sink is not None:
        return None
    if params.rings in ("fft", "wavelet-fft"):
        from teravox.post.rings import remove_rings

        slices = remove_rings(slices, params.rings, snr=params.ring_snr, size=params.ring_size, workers=threads)
    if params.circ_mask:
        from teravox.post.mask import circular_mask

        slices = np.asarray(slices, dtype=np.float32)
        for_spans(lambda a, b: circular_mask(slices[a:b], params.circ_mask_ratio, params.circ_mask_value,
                                             inplace=True), slices.shape[0], threads)
    slices = np.asarray(slices, dtype=np.float32)
    if write is None:
        return slices
    for s, image in enumerate(slices):
        write(s, slice(None), slice(None), image)
    return None
