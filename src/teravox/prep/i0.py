"""I0 / top-up correction: take out the beam's intensity changes from projection to projection.

Two sources of the beam intensity: a beam monitor value per projection (``from_monitor``), or
the projections' own air region (``from_air``).  Both divide each projection by one number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def from_monitor(proj: np.ndarray, i0: np.ndarray, *, reference: float | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Divide projection ``i`` of (angles, rows, cols) by ``i0[i] / reference`` (float32 out).

    ``reference`` defaults to the mean of ``i0``, so the series' overall level is preserved and
    only the variations are removed.  A chunk sees only its own part of the monitor series: pass
    the mean over the whole scan as ``reference`` so that every chunk is scaled alike.
    The monitor's unit does not matter (only ratios enter).  ``out``: where to write (may be
    ``proj`` itself, when it is float32).
    """
    proj = np.asarray(proj)
    if proj.ndim != 3:
        raise ValueError(f"projections must be (angles, rows, cols), got shape {proj.shape}")
    i0 = np.asarray(i0, dtype=np.float64).ravel()
    if i0.size != proj.shape[0]:
        raise ValueError(f"beam monitor has {i0.size} values for {proj.shape[0]} projections")
    if not np.all(np.isfinite(i0)) or np.any(i0 <= 0):
        bad = np.flatnonzero(~np.isfinite(i0) | (i0 <= 0))
        raise ValueError(f"beam monitor values must be positive and finite; projections {bad[:5].tolist()}"
                         f"{' ...' if bad.size > 5 else ''} are not")
    ref = float(np.mean(i0)) if reference is None else float(reference)
    if not np.isfinite(ref) or ref <= 0:
        raise ValueError(f"reference monitor value must be positive, got {reference}")
    scale = (ref / i0).astype(np.float32)
    return np.multiply(proj, scale[:, None, None], dtype=np.float32, out=out)


def find_air_cols(proj: np.ndarray, width: int = 50) -> tuple[int, int]:
    """The [start, stop) columns of the edge band that is air: the left or right ``width`` columns.

    Air is bright (transmission ≈ 1) and flat; a band the sample enters is darker and varies.
    Each band is scored per projection by ``mean − 2·std`` over its pixels, and the band whose
    *worst* projection scores higher wins (air must be air in every projection).
    """
    proj = _as_stack(proj)
    cols = proj.shape[2]
    if not 0 < width <= cols // 2:
        raise ValueError(f"air band width {width} must be between 1 and half the {cols} columns")
    bands = ((0, width), (cols - width, cols))
    scores = []
    for a, b in bands:
        band = proj[:, :, a:b].astype(np.float64).reshape(proj.shape[0], -1)
        scores.append(np.min(band.mean(axis=1) - 2.0 * band.std(axis=1)))
    return bands[int(np.argmax(scores))]


def air_level(proj: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """Mean of each projection over the air columns ``[start, stop)`` and all its rows: (angles,) float64."""
    proj = _as_stack(proj)
    start, stop = _check_cols(cols, proj.shape[2])
    return proj[:, :, start:stop].mean(axis=(1, 2), dtype=np.float64)


def from_air(proj: np.ndarray, cols: Sequence[int] | None = None, width: int = 50,
             *, level: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Divide each projection by the mean of its air region, so that the air is 1 (float32 out).

    ``cols`` = [start, stop) columns of the air; None finds the band at the edges with
    :func:`find_air_cols` (``width`` columns).  ``level`` (one value per projection) overrides
    the mean: a job that sees only a block of rows should pass the level measured over the full
    projection height (:func:`air_level`), or each block would be scaled differently.
    A (rows, cols) input is one projection and gives a (rows, cols) output.  ``out``: where to
    write a stack (may be ``proj`` itself, when it is float32).
    """
    single = np.ndim(proj) == 2
    proj = _as_stack(proj)
    if level is None:
        if cols is None:
            cols = find_air_cols(proj, width)
        level = air_level(proj, cols)
    level = np.asarray(level, dtype=np.float64).ravel()
    if level.size != proj.shape[0]:
        raise ValueError(f"air level has {level.size} values for {proj.shape[0]} projections")
    if not np.all(np.isfinite(level)) or np.any(level <= 0):
        raise ValueError("the air region's mean is not positive in every projection "
                         "(is the region air? are the data normalised?)")
    scale = (1.0 / level).astype(np.float32)
    out = np.multiply(proj, scale[:, None, None], dtype=np.float32, out=None if single else out)
    return out[0] if single else out


def _as_stack(proj: np.ndarray) -> np.ndarray:
    proj = np.asarray(proj)
    if proj.ndim == 2:
        return proj[None]
    if proj.ndim != 3:
        raise ValueError(f"projections must be (angles, rows, cols), got shape {proj.shape}")
    return proj


def _check_cols(cols: Sequence[int], n: int) -> tuple[int, int]:
    if len(cols) != 2:
        raise ValueError(f"air columns must be [start, stop], got {cols!r}")
    start, stop = int(cols[0]), int(cols[1])
    if stop < 0:  # -1 = to the end, as everywhere in the parameters
        stop = n + 1 + stop
    if not 0 <= start < stop <= n:
        raise ValueError(f"air columns [{cols[0]}, {cols[1]}] do not fit in {n} columns")
    return start, stop
