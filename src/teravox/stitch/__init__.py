"""Projection stitching: several laterally offset scans into one wide field of view.

* :mod:`~teravox.stitch.sheet` — the scan sheet (CSV/JSON/YAML or ``--positions``), its
  height levels, and the checks that the scans can be stitched;
* :mod:`~teravox.stitch.align` — every overlapping pair measured, all positions solved at
  once (pure);
* :mod:`~teravox.stitch.blend` — place and blend normalised projections (pure);
* :mod:`~teravox.stitch.zstack` — join reconstructed volumes of a vertical stack (pure);
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
    ALIGN_PROJECTIONS,
    MAX_EXTEND,
    MAX_Z,
    MIN_OVERLAP_PX,
    MIN_SIGNIFICANCE,
    PRIOR_PX,
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
    height_sign: int = 1                  # -1: a larger height moves the image up
    margin_px: int | None = None          # columns cut at the right end (default: window_px // 2)
    width: int | None = None              # stitched width, overriding the motor-based one
    min_overlap_px: int = MIN_OVERLAP_PX
    max_extend: int = MAX_EXTEND
    min_significance: float = MIN_SIGNIFICANCE
    tolerance_px: float = TOLERANCE_PX
    align_projections: int = ALIGN_PROJECTIONS  # projections per pair for the sub-pixel fit
    prior_px: float = PRIOR_PX            # standard deviation of a motor position
    max_z: float = MAX_Z                  # reject a measurement beyond this many σ from the fit

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
        for name in ("position_sign", "height_sign"):
            if getattr(sp, name) not in (1, -1):
                raise ParamError(f"stitch {name} must be 1 or -1, got {getattr(sp, name)}")
        if sp.align_projections < 1 or not sp.prior_px > 0 or not sp.max_z > 0:
            raise ParamError(f"stitch align_projections must be ≥ 1, prior_px and max_z > 0; got "
                             f"{sp.align_projections}, {sp.prior_px}, {sp.max_z}")
        return sp


def check_projection_index(theta_deg: np.ndarray, indices: np.ndarray) -> int:
    """The projection at the other end of the scan from ``indices[0]``: the one nearest 180°
    further on (a 360° scan), which is the last one of a 180° scan."""
    indices = np.asarray(indices)
    theta = np.asarray(theta_deg, dtype=np.float64)[indices]
    return int(indices[int(np.argmin(np.abs(theta - (theta[0] + 180.0))))])


def plan_section(sheet_rows: Sheet | Sequence[SheetRow], scans_meta: Sequence[Any], params: Any,
                 stitch: StitchParams | dict[str, Any] | None = None,
                 pixel: tuple[float | None, str] | None = None) -> dict[str, Any]:
    """The plan's multi-scan sections from the sheet and the scans' metadata (no pixel read).

    ``scans_meta`` are :class:`ScanMeta` (or open :class:`teravox.io.scan.Scan`) in the
    sheet's order; ``params`` the run's Params (``pixel_size_m``, ``proj_range``; any
    ``stitch_*`` fields); ``pixel`` the pixel size and its source when the caller resolved it.
    Returns ``{"scans": [...], "stitch": {...}}`` with the scans in stitching order (left to
    right) and their (dx, dy) guesses from the positions and heights; PlanError naming the
    scans when their angles differ, or when neighbours cannot overlap within the search window.
    """
    from teravox.plan import projection_indices

    sheet = sheet_rows if isinstance(sheet_rows, Sheet) else None
    rows = list(sheet.rows if sheet is not None else sheet_rows)
    metas = [m if isinstance(m, ScanMeta) else ScanMeta.from_scan(m) for m in scans_meta]
    sp = stitch if isinstance(stitch, StitchParams) else StitchParams.from_params(params, stitch)
    check_meta(rows, metas)
    pixel_m, pixel_how = pixel or resolve_pixel_size(rows, metas, getattr(params, "pixel_size_m", None),
                                                     None if sheet is None else sheet.pixel_size_m)
    pos = np.array([r.position_px(pixel_m) if r.position else 0.0 for r in rows], dtype=np.float64)
    hgt = np.array([r.height_px(pixel_m) if r.height else 0.0 for r in rows], dtype=np.float64)
    order = np.argsort(sp.position_sign * pos, kind="stable")
    guess = sp.position_sign * (pos[order] - pos[order[0]])
    guess_dy = sp.height_sign * (hgt[order] - hgt[order[0]])
    shapes = [metas[i].shape[1:] for i in order]
    half = sp.window_px // 2
    for k, (a, b) in enumerate(zip(order[:-1], order[1:], strict=True)):
        step = abs(pos[b] - pos[a])
        if step < 1.0:
            raise PlanError(f"{rows[a].label} and {rows[b].label} are at the same position "
                            f"({pos[a]:.1f} and {pos[b]:.1f} px): is a scan listed twice?")
        n_cols = shapes[k][1]
        if n_cols - step + half < sp.min_overlap_px:
            raise PlanError(
                f"{rows[b].label} is {step:.1f} px from its neighbour {rows[a].label}, but {rows[a].file.name} is "
                f"{n_cols} px wide: even {half} px closer they would share fewer than {sp.min_overlap_px} "
                f"columns, so they cannot be aligned or stitched; check the positions, their unit "
                f"(mm or px) and the pixel size ({pixel_how}: {pixel_m} m)")
    n_proj, n_rows, _ = metas[order[0]].shape
    guessed_width = int(round(max(g + c for g, (_, c) in zip(guess, shapes, strict=True))))
    margin = half if sp.margin_px is None else int(sp.margin_px)
    width = int(sp.width) if sp.width is not None else max(shapes[0][1], guessed_width - margin)
    proj_idx = projection_indices(params, n_proj)
    scans = []
    for k, i in enumerate(order):
        r, m = rows[i], metas[i]
        scans.append({
            "path": str(m.path.resolve()), "name": r.file.name, "sheet_row": r.line,
            "position": r.position, "position_unit": r.unit, "position_px": float(pos[i]),
            "height": r.height, "height_unit": r.height_unit, "height_px": float(hgt[i]),
            "guess_px": float(guess[k]), "guess_dy_px": float(guess_dy[k]),
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
            "rows": n_rows,
            "pixel_size_m": pixel_m, "pixel_size_source": pixel_how,
            "sheet": None if sheet is None or sheet.path is None else str(sheet.path),
            "align_projection": int(proj_idx[0]),
            "check_projection": check_projection_index(metas[order[0]].theta_deg, proj_idx),
            "interpolation": "linear",
            "blend": "linear ramps from each image's edge, normalised to 1",
            **{k: v for k, v in dataclasses.asdict(sp).items() if k not in ("margin_px", "width")},
            "guessed_overlap_px": [float(shapes[k - 1][1] - (guess[k] - guess[k - 1])) for k in range(1, len(scans))],
        },
    }
