"""Projection stitching: several laterally offset scans into one wide field of view.

* :mod:`~teravox.stitch.sheet` — the scan sheet (CSV/JSON/YAML or ``--positions``) and
  the checks that the scans can be stitched;
* :mod:`~teravox.stitch.align` — refine the motor positions from the images (pure);
* :mod:`~teravox.stitch.blend` — place and blend normalised projections (pure);
* :mod:`~teravox.stitch.source` — :class:`StitchedSource`, the stitched projections a
  projection-chunk job reads, a block of rows at a time;
* :func:`plan_section` — the plan's ``scans`` and ``stitch`` sections.

Shifts are in detector pixels, relative to scan 0 (the leftmost): scan i's pixel (row y,
column x) sits at (y + dy, x + dx) of the stitched projection, whose row r and column u
are scan 0's row r and column u.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from teravox.errors import ParamError, PlanError
from teravox.stitch.align import (
    MAX_EXTEND,
    MIN_OVERLAP_PX,
    MIN_SIGNIFICANCE,
    TOLERANCE_PX,
    WINDOW_PX,
)
from teravox.stitch.blend import weights
from teravox.stitch.sheet import ScanMeta, Sheet, SheetRow, check_meta, resolve_pixel_size
from teravox.stitch.source import StitchedSource

__all__ = ["StitchParams", "StitchedSource", "plan_section", "check_projection_index", "weights"]


@dataclass(frozen=True)
class StitchParams:
    """Settings of the alignment and of the stitched width (pixels)."""

    window_px: int = WINDOW_PX            # search window side: ± window_px // 2 around the motor guess
    position_sign: int = 1                # -1: a larger motor position moves the image to the left
    margin_px: int | None = None          # columns cut at the right end (default: window_px // 2)
    width: int | None = None              # stitched width, overriding the motor-based one
    min_overlap_px: int = MIN_OVERLAP_PX
    max_extend: int = MAX_EXTEND
    min_significance: float = MIN_SIGNIFICANCE
    tolerance_px: float = TOLERANCE_PX

    @classmethod
    def from_params(cls, params: Any, overrides: dict[str, Any] | None = None) -> StitchParams:
        """From ``params.stitch_<name>`` where Params has such fields, then ``overrides``."""
        values = {f.name: getattr(params, f"stitch_{f.name}") for f in dataclasses.fields(cls)
                  if getattr(params, f"stitch_{f.name}", None) is not None}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ParamError(f"unknown stitching setting(s) {', '.join(unknown)}")
        sp = cls(**values)
        if sp.window_px < 2:
            raise ParamError(f"stitch window_px must be at least 2 pixels, got {sp.window_px}")
        if sp.position_sign not in (1, -1):
            raise ParamError(f"stitch position_sign must be 1 or -1, got {sp.position_sign}")
        return sp


def check_projection_index(theta_deg: np.ndarray, indices: np.ndarray) -> int:
    """The projection at the other end of the scan from ``indices[0]``: the one nearest 180°
    further on (a 360° scan), which is the last one of a 180° scan."""
    indices = np.asarray(indices)
    theta = np.asarray(theta_deg, dtype=np.float64)[indices]
    return int(indices[int(np.argmin(np.abs(theta - (theta[0] + 180.0))))])


def plan_section(sheet_rows: Sheet | Sequence[SheetRow], scans_meta: Sequence[Any], params: Any,
                 stitch: StitchParams | dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan's multi-scan sections from the sheet and the scans' metadata (no pixel read).

    ``scans_meta`` are :class:`ScanMeta` (or open :class:`teravox.io.scan.Scan`) in the
    sheet's order; ``params`` the run's Params (``pixel_size_m``, ``proj_range``; any
    ``stitch_*`` fields).  Returns ``{"scans": [...], "stitch": {...}}`` with the scans
    in stitching order (left to right); PlanError naming the scans when they differ in
    detector shape or angles, or when neighbours cannot overlap within the search window.
    """
    from teravox.plan import projection_indices

    sheet = sheet_rows if isinstance(sheet_rows, Sheet) else None
    rows = list(sheet.rows if sheet is not None else sheet_rows)
    metas = [m if isinstance(m, ScanMeta) else ScanMeta.from_scan(m) for m in scans_meta]
    sp = stitch if isinstance(stitch, StitchParams) else StitchParams.from_params(params, stitch)
    check_meta(rows, metas)
    pixel, pixel_how = resolve_pixel_size(rows, metas, getattr(params, "pixel_size_m", None),
                                          None if sheet is None else sheet.pixel_size_m)
    pos = np.array([r.position_px(pixel) for r in rows], dtype=np.float64)
    order = np.argsort(sp.position_sign * pos, kind="stable")
    guess = sp.position_sign * (pos[order] - pos[order[0]])
    n_proj, n_rows, n_cols = metas[0].shape
    half = sp.window_px // 2
    for a, b in zip(order[:-1], order[1:], strict=True):
        step = abs(pos[b] - pos[a])
        if step < 1.0:
            raise PlanError(f"{rows[a].label} and {rows[b].label} are at the same position "
                            f"({pos[a]:.1f} and {pos[b]:.1f} px): is a scan listed twice?")
        if n_cols - step + half < sp.min_overlap_px:
            raise PlanError(
                f"{rows[b].label} is {step:.1f} px from its neighbour {rows[a].label}, but the scans are "
                f"{n_cols} px wide: even {half} px closer they would share fewer than {sp.min_overlap_px} "
                f"columns, so they cannot be aligned or stitched; check the positions, their unit "
                f"(mm or px) and the pixel size ({pixel_how}: {pixel} m)")
    guessed_width = int(round(guess[-1] + n_cols))
    margin = half if sp.margin_px is None else int(sp.margin_px)
    width = int(sp.width) if sp.width is not None else max(n_cols, guessed_width - margin)
    proj_idx = projection_indices(params, n_proj)
    scans = []
    for k, i in enumerate(order):
        r, m = rows[i], metas[i]
        scans.append({
            "path": str(m.path.resolve()), "name": r.file.name, "sheet_row": r.line,
            "position": r.position, "position_unit": r.unit, "position_px": float(pos[i]),
            "guess_px": float(guess[k]),
            "flat_file": None if r.flat_file is None else str(r.flat_file),
            "dark_file": None if r.dark_file is None else str(r.dark_file),
            "shape": list(m.shape), "dtype": m.dtype, "format": m.format,
            "n_flats": m.n_flats, "n_flats_after": m.n_flats_after, "n_darks": m.n_darks,
            "has_i0": m.has_i0,
        })
    return {
        "scans": scans,
        "stitch": {
            "n_scans": len(scans), "width": width, "guessed_width": guessed_width, "margin_px": margin,
            "rows": n_rows, "n_cols": n_cols,
            "pixel_size_m": pixel, "pixel_size_source": pixel_how,
            "sheet": None if sheet is None or sheet.path is None else str(sheet.path),
            "align_projection": int(proj_idx[0]),
            "check_projection": check_projection_index(metas[0].theta_deg, proj_idx),
            "interpolation": "linear",
            "blend": "linear ramps from each image's edge, normalised to 1",
            **{k: v for k, v in dataclasses.asdict(sp).items() if k not in ("margin_px", "width")},
            "guessed_overlap_px": [float(n_cols - (guess[k] - guess[k - 1])) for k in range(1, len(scans))],
        },
    }
