"""Multiscale pyramid: mean-downsampled copies of the volume for viewers.

Level k (k = 1 … levels) is the volume averaged over cells of 2**k voxels along
every axis.  A trailing partial cell (a size not divisible by the factor) is
averaged over the voxels it has, so level sizes are ``ceil(n / 2**k)`` and no
voxel is dropped.  Each level is computed from the full-resolution data.
"""

from __future__ import annotations

import numpy as np


def level_factors(levels: int) -> list[int]:
    """Downsampling factors of the levels: 2, 4, … 2**levels."""
    return [2**k for k in range(1, levels + 1)]


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """Shapes of pyramid levels 1 … ``levels`` of a volume of ``shape``: ceil(n / 2**k) per axis."""
    return [tuple(-(-n // f) for n in shape) for f in level_factors(levels)]


def downsample_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor``-wide cells along every axis of a ``(z, y, x)`` block.

    Output shape ``ceil(n / factor)`` per axis; a trailing partial cell is the mean
    of the voxels it has.  Sums run in float64; the result has the block's dtype
    (rounded for integer types).  Streaming: z-blocks whose height is a multiple of
    ``factor`` (the last one may be shorter) give, concatenated, exactly the
    whole-volume result, since no cell straddles two blocks.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return block.copy()
    out = np.asarray(block)
    for axis in range(out.ndim):
        n = out.shape[axis]
        starts = np.arange(0, n, factor)
        counts = np.minimum(factor, n - starts)
        out = np.add.reduceat(out, starts, axis=axis, dtype=np.float64)
        shape = [1] * out.ndim
        shape[axis] = starts.size
        out /= counts.reshape(shape)
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(block.dtype)
    return out.astype(block.dtype)
