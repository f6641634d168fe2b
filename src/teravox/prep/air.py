"""Air (background) correction: make the air at both detector edges 1 in every row.

Like TomoPy's ``normalize_bg``: per projection and per row, the air intensity is the mean of
``width`` columns at the left and at the right edge, interpolated linearly across the row
between the two bands' centres (and extrapolated beyond them); the row is divided by it.  A flat
field drift that varies linearly across the detector, and any per-row level change, cancel.
"""

from __future__ import annotations

import numpy as np


def air_correct(proj: np.ndarray, width: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Divide each row of (angles, rows, cols) projections by its edge-interpolated air (float32).

    ``width`` is the air band at each edge in pixels (parameter ``air_cols``).  Rows whose air
    estimate is not positive and finite at both edges are left unchanged (dividing by it would
    make no sense).  A (rows, cols) input is one projection.  ``out``: where to write a stack
    (may be ``proj`` itself: each projection is read before it is written).
    """
    proj = np.asarray(proj)
    if proj.ndim not in (2, 3):
        raise ValueError(f"projections must be (angles, rows, cols), got shape {proj.shape}")
    cols = proj.shape[-1]
    width = int(width)
    if width < 1 or 2 * width >= cols:
        raise ValueError(f"air band width {width} px at each edge needs more than {2 * width} "
                         f"columns; the projections have {cols}")
    stack = proj[None] if proj.ndim == 2 else proj
    out = np.empty(stack.shape, dtype=np.float32) if (out is None or proj.ndim == 2) else out
    # column positions of the band centres; t = 0 at the left centre, 1 at the right centre
    c_left, c_right = (width - 1) / 2.0, cols - 1 - (width - 1) / 2.0
    t = ((np.arange(cols) - c_left) / (c_right - c_left)).astype(np.float32)
    for i, img in enumerate(stack):  # one projection at a time: the air image is a temporary
        left = img[:, :width].mean(axis=-1, dtype=np.float64)
        right = img[:, cols - width:].mean(axis=-1, dtype=np.float64)
        ok = np.isfinite(left) & np.isfinite(right) & (left > 0) & (right > 0)
        left32 = np.where(ok, left, 1.0).astype(np.float32)[:, None]
        right32 = np.where(ok, right, 1.0).astype(np.float32)[:, None]
        air = left32 + (right32 - left32) * t
        # beyond the band centres the line is extrapolated and could cross zero if one edge is
        # far darker than the other; such rows are left alone rather than divided by ~0
        bad = ~(air > 0).all(axis=-1)
        if bad.any():
            air[bad] = 1.0
        np.divide(img, air, out=out[i], dtype=np.float32)
    return out[0] if proj.ndim == 2 else out
