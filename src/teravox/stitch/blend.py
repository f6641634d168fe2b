"""Blend normalised projections of offset scans into one wide projection (pure functions).

Coordinates: the stitched projection ("canvas") is scan 0's frame — canvas row r and
column u are scan 0's row r and column u — cut to ``width`` columns; it has scan 0's rows.
Scans may differ in detector shape: each has its own (rows, columns).  Scan i, shifted by
(dx, dy) pixels, has its pixel (row y, column x) at canvas (y + dy, x + dx), so canvas
(r, u) reads scan i at (r − dy, u − dx), by bilinear interpolation (nearest value beyond
the image's last pixel).

Weights grow linearly with the distance from each image's left/right edge (a pixel
outside the image has weight 0, the edge pixel 1, the next 2, ...), so across an
overlap one scan fades out as its neighbour fades in; they are normalised to sum to 1
wherever any scan covers a pixel.  Rows outside a scan (vertical shifts) get weight 0;
a pixel no scan reaches (a row above a shifted scan, a column past the last scan) takes
the nearest scan's nearest value.

Every pixel is computed from its own neighbourhood only, so a block of rows gives the
same numbers as the whole projection: that is what lets the projection-chunk job
stitch one subchunk of rows at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def column_weights(dx: float, n_cols: int, width: int) -> np.ndarray:
    """Linear-ramp weight (width,) of a scan of ``n_cols`` columns shifted by ``dx`` px:
    distance in pixels from the nearest pixel outside the image, 0 outside it."""
    x = np.arange(width, dtype=np.float64) - float(dx)
    return np.clip(np.minimum(x + 1.0, n_cols - x), 0.0, None).astype(np.float32)


def row_weights(dy: float, n_rows: int, rows: slice) -> np.ndarray:
    """Row coverage (len(rows),) of a scan shifted by ``dy`` px: 1 inside its rows, ramping to
    0 one row beyond them (no vertical blending: scans are side by side)."""
    y = np.arange(rows.start, rows.stop, dtype=np.float64) - float(dy)
    return np.clip(np.minimum(y + 1.0, n_rows - y), 0.0, 1.0).astype(np.float32)


def _rows(rows: slice, n_rows: int) -> slice:
    start, stop, step = rows.indices(n_rows)
    if step != 1 or stop <= start:
        raise ValueError(f"rows must be a non-empty contiguous slice, got {rows}")
    return slice(start, stop)


def shapes_of(shapes: tuple[int, int] | Sequence[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """Per-scan (rows, columns): one shape shared by all ``k`` scans, or one each."""
    if len(shapes) == 2 and all(isinstance(v, (int, np.integer)) for v in shapes):
        return [(int(shapes[0]), int(shapes[1]))] * k  # type: ignore[arg-type]
    out = [(int(r), int(c)) for r, c in shapes]  # type: ignore[misc]
    if len(out) != k:
        raise ValueError(f"{len(out)} detector shapes for {k} scans")
    return out


def weights(shifts: Sequence[tuple[float, float]], shapes: tuple[int, int] | Sequence[tuple[int, int]],
            width: int, rows: slice = slice(None)) -> np.ndarray:
    """Blending weights (scans, rows, width) float32 of canvas ``rows``, summing to 1 over the
    scans at every pixel.

    ``shifts`` are the scans' (dx, dy) relative to scan 0 (pixels); ``shapes`` their detector
    shapes (rows, columns), one for all or one each.  Canvas rows are scan 0's rows.
    """
    k = len(shifts)
    shp = shapes_of(shapes, k)
    rows = _rows(rows, shp[0][0])
    wc = np.stack([column_weights(dx, c, width) for (dx, _), (_, c) in zip(shifts, shp, strict=True)])  # (k, W)
    # Columns no scan reaches (past the last scan when the motors overestimated the
    # width): the scan whose columns are nearest supplies its edge value.
    free = ~np.any(wc > 0, axis=0)
    if free.any():
        u = np.flatnonzero(free).astype(np.float64)
        dist = np.stack([np.maximum(dx - u, u - (dx + c - 1)) for (dx, _), (_, c) in zip(shifts, shp, strict=True)])
        wc[np.argmin(dist, axis=0), np.flatnonzero(free)] = 1.0
    wr = np.stack([row_weights(dy, r, rows) for (_, dy), (r, _) in zip(shifts, shp, strict=True)])  # (k, R)
    w = wr[:, :, None] * wc[:, None, :]
    total = np.zeros(w.shape[1:], dtype=np.float32)
    for i in range(k):  # in a fixed order, so any block of rows sums exactly as the whole
        total += w[i]
    lost = total == 0  # rows outside every scan covering these columns: use the columns' weights
    if lost.any():
        w[:, lost] = np.broadcast_to(wc[:, None, :], w.shape)[:, lost]
        total[lost] = 0
        for i in range(k):
            total[lost] += w[i][lost]
    w /= total[None]
    return w


def source_rows(dy: float, n_rows: int, rows: slice) -> slice:
    """The scan's own rows that canvas ``rows`` need (interpolation included), clipped to the image."""
    lo = math.floor(rows.start - dy)
    hi = math.floor(rows.stop - 1 - dy) + 1
    lo, hi = min(max(lo, 0), n_rows - 1), min(max(hi, 0), n_rows - 1)
    return slice(lo, hi + 1)


def source_cols(dx: float, n_cols: int, cols: slice) -> slice:
    """The scan's own columns that canvas ``cols`` need (interpolation included), clipped."""
    return source_rows(dx, n_cols, cols)


def active_cols(w_scan: np.ndarray) -> slice | None:
    """[first, last + 1) of the canvas columns where a scan's weights (rows, W) are non-zero."""
    cols = np.flatnonzero(np.any(w_scan > 0, axis=0))
    return None if cols.size == 0 else slice(int(cols[0]), int(cols[-1]) + 1)


def taps(pos: np.ndarray, n: int, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (into a block starting at ``first``) and weight of the upper tap for linear
    interpolation at ``pos``, clamped to the image's 0..n-1."""
    p0 = np.floor(pos)
    t = (pos - p0).astype(np.float32)
    i0 = np.clip(p0, 0, n - 1).astype(np.intp) - first
    i1 = np.clip(p0 + 1, 0, n - 1).astype(np.intp) - first
    return i0, i1, t


def sample(block: np.ndarray, origin: tuple[int, int], shift: tuple[float, float], n_rows: int,
           n_cols: int, rows: slice, cols: slice) -> np.ndarray:
    """One scan's values at canvas ``rows`` × ``cols``: (angles, rows, cols) float32.

    ``block`` (angles, r, c) holds the scan's rows origin[0]… and columns origin[1]… (at
    least :func:`source_rows` / :func:`source_cols` of them); ``shift`` is its (dx, dy).
    """
    dx, dy = shift
    block = np.asarray(block, dtype=np.float32)
    i0, i1, ty = taps(np.arange(rows.start, rows.stop, dtype=np.float64) - dy, n_rows, origin[0])
    j0, j1, tx = taps(np.arange(cols.start, cols.stop, dtype=np.float64) - dx, n_cols, origin[1])
    if min(i0.min(), i1.min(), j0.min(), j1.min()) < 0 or max(i0.max(), i1.max()) >= block.shape[1] \
            or max(j0.max(), j1.max()) >= block.shape[2]:
        raise ValueError(f"block of shape {block.shape} at {origin} does not hold the rows/columns "
                         f"needed for canvas rows {rows.start}..{rows.stop}, columns {cols.start}..{cols.stop}")
    # Columns first, only those needed; an integer shift gives t = 0 and copies exactly.
    cx = block[:, :, j0] * (1 - tx) + block[:, :, j1] * tx
    return cx[:, i0, :] * (1 - ty)[None, :, None] + cx[:, i1, :] * ty[None, :, None]


def accumulate(out: np.ndarray, block: np.ndarray, origin: tuple[int, int], shift: tuple[float, float],
               n_rows: int, n_cols: int, rows: slice, w_scan: np.ndarray) -> None:
    """Add one scan's weighted contribution to ``out`` (angles, rows, width) in place."""
    cols = active_cols(w_scan)
    if cols is None:
        return
    vals = sample(block, origin, shift, n_rows, n_cols, rows, cols)
    vals *= w_scan[None, :, cols]
    out[:, :, cols] += vals


def stitch(blocks: Sequence[np.ndarray], shifts: Sequence[tuple[float, float]], width: int,
           rows: slice = slice(None), origins: Sequence[tuple[int, int]] | None = None,
           shapes: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """The stitched projections (angles, rows, width) float32 of normalised scans.

    ``blocks[i]`` (angles, r, c) holds scan i's rows and columns from ``origins[i]`` (default:
    whole images); ``shapes`` are the scans' full (rows, columns) (default: the blocks').
    """
    if origins is None:
        origins = [(0, 0)] * len(blocks)
    shp = shapes_of(shapes if shapes is not None else [b.shape[1:] for b in blocks], len(blocks))
    rows = _rows(rows, shp[0][0])
    w = weights(shifts, shp, width, rows)
    out = np.zeros((blocks[0].shape[0], rows.stop - rows.start, width), dtype=np.float32)
    for i, block in enumerate(blocks):
        accumulate(out, block, origins[i], shifts[i], *shp[i], rows, w[i])
    return out


def _cols_each(n_cols: int | Sequence[int], k: int) -> list[int]:
    return [int(n_cols)] * k if np.isscalar(n_cols) else [int(c) for c in n_cols]  # type: ignore[union-attr]


def seam_columns(dx: Sequence[float], n_cols: int | Sequence[int]) -> list[float]:
    """Canvas column (pixels) where each pair of neighbours weighs equally: the middle of
    their overlap.  ``n_cols``: the scans' widths, one for all or one each."""
    cols = _cols_each(n_cols, len(dx))
    return [(dx[i - 1] + dx[i] + cols[i - 1] - 1) / 2.0 for i in range(1, len(dx))]


def overlap_columns(dx: Sequence[float], n_cols: int | Sequence[int], width: int) -> np.ndarray:
    """Boolean (width,): canvas columns that two or more scans cover."""
    wc = np.stack([column_weights(x, c, width) for x, c in zip(dx, _cols_each(n_cols, len(dx)), strict=True)])
    return np.count_nonzero(wc > 0, axis=0) >= 2
