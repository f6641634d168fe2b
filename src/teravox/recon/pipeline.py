"""The pass-2 chain on one block of sinograms: arrays in, slices out.

Order: −log (unless pass 1 already produced line integrals) → 360°→180° for
half-acquisition scans → stripe removal → sinogram-domain ring removal → padding →
reconstruction with the chosen backend → ring removal on slices → circular mask.
The conversion to the output dtype happens in the stage, with the one mapping
that the whole volume shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teravox import resources
from teravox.config import Params


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


def line_integrals(block: np.ndarray, params: Params, quantity: str) -> np.ndarray:
    """(rows, angles, cols) projections data → line integrals (−log where needed)."""
    from teravox.recon.sinogram import minus_log

    block = np.asarray(block, dtype=np.float32)
    if params.minus_log and quantity == "transmission":
        return minus_log(block)
    return block


def to_180(sinos: np.ndarray, theta: np.ndarray, center: float, side: str | None
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Half-acquisition 360° sinograms → 180° sinograms, their angles and centre."""
    from teravox.recon.sinogram import convert_360_to_180, half_acquisition_pairs

    out, new_center = convert_360_to_180(sinos, center, side, theta=theta)
    first, _ = half_acquisition_pairs(sinos.shape[1], theta)
    return out, theta[first], new_center


def reconstruct_block(block: np.ndarray, theta: np.ndarray, params: Params, geom: Geometry,
                      quantity: str = "transmission", batch_pairs: int | None = None,
                      rows: np.ndarray | None = None) -> np.ndarray:
    """(rows, angles, cols) of projections.h5 → (rows, n, n) float32 slices.

    ``theta`` in radians.  Values: attenuation coefficient per pixel.  ``batch_pairs``:
    the plan's slice pairs per GPU batch (``fourier-gpu`` only).  ``rows``: the block's
    rows of projections.h5, needed when the axis is tilted (each sinogram is then moved so
    that its axis lies at ``geom.center``).
    """
    from teravox.recon import sinogram
    from teravox.recon.backends import reconstruct

    sinos = line_integrals(block, params, quantity)
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
                               la_size=params.stripe_la_size, sm_size=params.stripe_sm_size)
    if params.rings == "sinogram":
        from teravox.post.rings import remove_rings_sinogram

        sinos = remove_rings_sinogram(sinos, snr=params.ring_snr, size=params.ring_size)
    measured = None
    if geom.pad_width and params.pad != "none":
        measured = (geom.pad_width, geom.pad_width + sinos.shape[2])
        sinos = sinogram.pad(sinos, geom.pad_width, params.pad)
        center = center + geom.pad_width
    slices = reconstruct(sinos, theta, center, backend=params.backend, n=geom.n_out,
                         filter_name=params.filter_name, threads=resources.threads(params.threads),
                         eps=params.fourier_eps, upsampfac=params.fourier_upsampfac,
                         algorithm=params.algorithm, measured=measured, batch_pairs=batch_pairs)
    del sinos
    if params.rings in ("fft", "wavelet-fft"):
        from teravox.post.rings import remove_rings

        slices = remove_rings(slices, params.rings, snr=params.ring_snr, size=params.ring_size)
    if params.circ_mask:
        from teravox.post.mask import circular_mask

        slices = circular_mask(slices, params.circ_mask_ratio, params.circ_mask_value)
    return np.asarray(slices, dtype=np.float32)
