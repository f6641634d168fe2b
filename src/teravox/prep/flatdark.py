"""Flat/dark normalisation: raw counts → transmission ``(I − D) / (F − D)``.

Pure functions on arrays; the stage reads the frames and turns a ``ValueError`` into an
:class:`~teravox.errors.InputError` that names the file.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

#: Value written where the normalisation is undefined: transmission 1.0 (air), whose −log is 0,
#: so a guarded pixel neither blows up nor shifts the reconstruction.
FILL = 1.0


class Normalized(NamedTuple):
    """Result of :func:`normalize`: the transmission and what had to be guarded."""

    data: np.ndarray
    """(angles, rows, cols) float32 transmission."""
    n_guarded: int
    """Output values where the flat did not exceed the dark (F − D ≤ eps); set to :data:`FILL`."""
    n_nonfinite: int
    """Other output values that came out NaN/±inf (NaN or inf in I, F or D); set to :data:`FILL`."""


def combine(frames: np.ndarray, method: Literal["mean", "median"] = "mean") -> np.ndarray:
    """Combine flat or dark frames (n, rows, cols) into one (rows, cols) float32 image.

    ``mean`` is accumulated in float64 (raw uint16 sums of many frames lose bits in float32);
    ``median`` resists a frame hit by a zinger.  A 2-D input is one frame and is returned as is.
    NaNs propagate; :func:`normalize` counts and replaces them.
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        return frames.astype(np.float32, copy=False)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames shaped (n, rows, cols) with n ≥ 1, got shape {frames.shape}")
    if method == "mean":
        return np.mean(frames, axis=0, dtype=np.float64).astype(np.float32)
    if method == "median":
        return np.median(frames, axis=0).astype(np.float32)
    raise ValueError(f"unknown combine method {method!r}; expected 'mean' or 'median'")


def normalize(
    proj: np.ndarray,
    flat: np.ndarray,
    dark: np.ndarray,
    *,
    flat_after: np.ndarray | None = None,
    indices: np.ndarray | None = None,
    n_total: int | None = None,
    eps: float = 1e-6,
    count_rows: slice = slice(None),
    out: np.ndarray | None = None,
) -> Normalized:
    """Flat/dark normalise projections: ``T = (I − D) / (F − D)``, float32 (dimensionless).

    ``proj`` is (angles, rows, cols) (or one (rows, cols) projection) in any numeric dtype;
    ``flat`` and ``dark`` are combined (rows, cols) images (see :func:`combine`).

    With ``flat_after`` (flats taken after the scan) the flat of projection ``i`` is interpolated
    linearly by index, ``F_i = (1 − w) F + w F_after`` with ``w = indices[i] / (n_total − 1)``,
    where ``indices`` are the projections' indices in the whole scan and ``n_total`` its number
    of projections.  Without ``indices`` the call must hold the whole scan (``indices = 0..n−1``).

    Guards, never NaN/inf out: where ``F − D ≤ eps`` the value is :data:`FILL` (counted in
    ``n_guarded``); any other non-finite result (NaN/inf in the input) is :data:`FILL` too
    (counted in ``n_nonfinite``).  Counts are of output values (projection × pixel) in the rows
    ``count_rows`` (a block read with overlap rows counts only the rows it keeps).
    ``out``: a float32 array of the projections' shape to write the result into.
    """
    proj = np.asarray(proj)
    single = proj.ndim == 2
    if single:
        proj = proj[None]
    if proj.ndim != 3:
        raise ValueError(f"projections must be (angles, rows, cols), got shape {proj.shape}")
    n, shape = proj.shape[0], proj.shape[1:]
    for name, img in (("flat", flat), ("dark", dark), ("flat_after", flat_after)):
        if img is not None and np.shape(img) != shape:
            raise ValueError(f"{name} has shape {np.shape(img)}, projections have (rows, cols) = {shape}")

    d = np.asarray(dark, dtype=np.float32)
    den = np.asarray(flat, dtype=np.float32) - d
    if out is None:
        out = np.empty(proj.shape, dtype=np.float32)
    elif single:
        out = out[None]
    np.subtract(proj, d, out=out, dtype=np.float32)

    n_guarded = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if flat_after is None:
            bad = den <= eps
            out /= den
            if bad.any():
                out[:, bad] = FILL
                n_guarded = int(bad[count_rows].sum()) * n
        else:
            w = _interp_weights(n, indices, n_total)
            slope = (np.asarray(flat_after, dtype=np.float32) - d) - den  # F_after − F
            den_i = np.empty_like(den)
            for i in range(n):
                # the interpolated flat minus the dark: (1 − w)(F − D) + w(F_after − D)
                np.multiply(slope, np.float32(w[i]), out=den_i)
                den_i += den
                out[i] /= den_i
                bad = den_i <= eps
                if bad.any():
                    out[i][bad] = FILL
                    n_guarded += int(bad[count_rows].sum())

    n_nonfinite = 0
    for img in out:  # a projection at a time: no block-sized map
        nonfinite = ~np.isfinite(img)
        if nonfinite.any():
            n_nonfinite += int(nonfinite[count_rows].sum())
            img[nonfinite] = FILL
    return Normalized(out[0] if single else out, n_guarded, n_nonfinite)


def _interp_weights(n: int, indices: np.ndarray | None, n_total: int | None) -> np.ndarray:
    """Weight of the after-flat for each projection: its scan index over (n_total − 1)."""
    if indices is None:
        if n_total is not None and n_total != n:
            raise ValueError(f"n_total={n_total} given without indices for {n} projections")
        indices, n_total = np.arange(n), n
    indices = np.asarray(indices)
    if n_total is None:
        raise ValueError("indices given without n_total (the number of projections in the scan)")
    if indices.shape != (n,):
        raise ValueError(f"indices has shape {indices.shape}, expected ({n},) — one per projection")
    if n and (indices.min() < 0 or indices.max() >= n_total):
        raise ValueError(f"indices must lie in 0..{n_total - 1}, got {indices.min()}..{indices.max()}")
    if n_total <= 1:
        return np.zeros(n)
    return indices / (n_total - 1.0)
