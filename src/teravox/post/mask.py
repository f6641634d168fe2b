"""Circular mask on reconstructed slices."""

from __future__ import annotations

import numpy as np


def circle_outside(ny: int, nx: int, ratio: float = 1.0) -> np.ndarray:
    """Boolean ``(ny, nx)`` map of the pixels outside the circle of radius ``ratio · min(ny, nx)/2``
    (pixels) about the slice centre ``((ny − 1)/2, (nx − 1)/2)``, the rotation axis."""
    radius = ratio * min(ny, nx) / 2
    y = np.arange(ny) - (ny - 1) / 2
    x = np.arange(nx) - (nx - 1) / 2
    return y[:, None] ** 2 + x[None, :] ** 2 > radius**2


def circular_mask(slices: np.ndarray, ratio: float = 1.0, value: float = 0.0, *,
                  inplace: bool = False) -> np.ndarray:
    """Set every pixel of ``slices`` ``(slices, n, n)`` outside the inscribed circle to ``value``.

    The circle has radius ``ratio · n/2`` pixels about ``((n − 1)/2, (n − 1)/2)``
    (the rotation axis); ratio 1 keeps the disc every angle saw.  A pixel on the
    circle is kept.  ``inplace=True`` writes into ``slices`` (no copy); otherwise a
    new array of the same dtype is returned.
    """
    outside = circle_outside(slices.shape[-2], slices.shape[-1], ratio)
    out = slices if inplace else slices.copy()
    out[..., outside] = value
    return out


def mask_region(values: np.ndarray, n: int, rows: slice, cols: slice, ratio: float = 1.0,
                value: float = 0.0) -> None:
    """:func:`circular_mask` of an n × n slice applied in place to ``values``, the part
    [rows, cols] of that slice (a tile): row by row, without an n × n map."""
    radius, h = ratio * n / 2, (n - 1) / 2
    r0, c0 = rows.start or 0, cols.start or 0
    x = np.arange(c0, c0 + values.shape[1]) - h
    for i, row in enumerate(values):
        dy = r0 + i - h
        row[x * x + dy * dy > radius * radius] = value
