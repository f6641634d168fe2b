"""Stitched projections read from the scans, a block of rows at a time (the I/O side).

:class:`StitchedSource` stands in for "read one scan and normalise it" in the
projection-chunk job: for the requested projections and canvas rows it reads from
each scan only the rows (and columns) the blend needs, normalises them with that
scan's own flats and darks (:func:`teravox.prep.pipeline.normalize_block`), multiplies
them by the scan's gain from the alignment (exposure differences), and blends them
(:mod:`teravox.stitch.blend`).  The rest of pass 1 then runs on the full-width
result (:func:`teravox.prep.pipeline.correct_normalized`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from teravox.errors import PlanError, StageError
from teravox.prep.pipeline import Counts, read_normalized
from teravox.stitch import blend
from teravox.stitch.sheet import SheetRow, open_row

SHIFTS_FORMAT = 2  # 2: the global fit (per-pair measurements, gains, per-scan shapes)


def load_shifts(path: str | os.PathLike) -> dict[str, Any]:
    """Read shifts.json written by ``teravox stitch-align``; StageError if missing or malformed."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise StageError(f"{p}: shifts file does not exist (run `teravox stitch-align` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StageError(f"{p}: not a readable shifts file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SHIFTS_FORMAT or "scans" not in data:
        raise StageError(f"{p}: not a teravox shifts file (format {SHIFTS_FORMAT} expected)")
    return data


def check_shifts_match(plan: dict[str, Any], shifts: dict[str, Any]) -> None:
    """The shifts must be those of the plan's scans, in the plan's order."""
    want = [s["path"] for s in plan["scans"]]
    got = [s.get("path") for s in shifts["scans"]]
    if want != got:
        raise PlanError(f"shifts.json was found for scans {[Path(g).name for g in got if g]}, but the plan "
                        f"stitches {[Path(w).name for w in want]}; run `teravox stitch-align` again")


def plan_row(entry: dict[str, Any]) -> SheetRow:
    """The sheet row of one entry of plan["scans"] (to open the scan with its flat/dark files)."""
    side = {k: None if entry.get(k) is None else Path(entry[k]) for k in ("flat_file", "dark_file")}
    return SheetRow(file=Path(entry["path"]), position=float(entry["position_px"]), unit="px", **side)


def normalized_strip(scan: Any, params: Any, indices: Sequence[int], cols: slice = slice(None),
                     row_block: int = 256) -> np.ndarray:
    """Flat/dark-normalised projections ``indices`` over columns ``cols``, all rows: (n, rows,
    cols) float32; flats read ``row_block`` rows at a time, so that many flats of a large
    detector never sit in memory at once.  With i0=monitor each scan is put on its monitor's
    scale, so neighbours compare alike."""
    idx = np.asarray(indices, dtype=np.int64)
    c0, c1, _ = cols.indices(scan.n_cols)
    out = np.empty((idx.size, scan.n_rows, c1 - c0), dtype=np.float32)
    for r0 in range(0, scan.n_rows, row_block):
        r1 = min(scan.n_rows, r0 + row_block)
        block, _ = read_normalized(scan, params, idx, slice(r0, r1), slice(c0, c1))
        out[:, r0:r1] = block
    return out


class StitchedSource:
    """The stitched, normalised projections of a multi-scan plan (see the module docstring).

    ``plan`` holds ``scans`` and ``stitch`` (:func:`teravox.stitch.plan_section`);
    ``shifts`` is shifts.json (a dict or its path); ``params`` the plan's Params.  Keep it
    open for the whole job (one file handle per scan) and :meth:`close` it, or use ``with``.
    With ``params.i0 == "monitor"`` each scan is divided by its own beam monitor here
    (:attr:`i0_applied`), as :func:`teravox.prep.pipeline.read_normalized` does for one scan.
    """

    def __init__(self, plan: dict[str, Any], shifts: dict[str, Any] | str | os.PathLike,
                 params: Any) -> None:
        if not isinstance(shifts, dict):
            shifts = load_shifts(shifts)
        if "scans" not in plan or "stitch" not in plan:
            raise PlanError("the plan has no multi-scan section (scans, stitch): not a stitching plan")
        check_shifts_match(plan, shifts)
        st = plan["stitch"]
        self.params = params
        self.width = int(st["width"])
        self.shapes = [(int(e["shape"][1]), int(e["shape"][2])) for e in plan["scans"]]
        self.n_rows = self.shapes[0][0]
        self.shifts: list[tuple[float, float]] = [(float(s["dx"]), float(s["dy"])) for s in shifts["scans"]]
        self.gains = [float(s.get("gain", 1.0)) for s in shifts["scans"]]
        self.names = [Path(s["path"]).name for s in plan["scans"]]
        self.i0_applied = params.i0 == "monitor"
        self._scans: list[Any] = []
        self._i0_ref: list[float | None] = []
        try:
            for entry in plan["scans"]:
                scan = open_row(plan_row(entry), params)
                self._scans.append(scan)
                want = tuple(entry["shape"])
                if tuple(scan.shape) != want:
                    raise PlanError(f"{scan.path}: the scan has shape {scan.shape} but the plan was made "
                                    f"for {want}; make a new plan")
                self._i0_ref.append(None if scan.i0 is None else float(np.mean(scan.i0)))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self._scans:
            s.close()
        self._scans.clear()

    def __enter__(self) -> StitchedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def seam_columns(self) -> list[float]:
        return blend.seam_columns([dx for dx, _ in self.shifts], [c for _, c in self.shapes])

    def weights(self, rows: slice = slice(None)) -> np.ndarray:
        """Blending weights (scans, rows, width) of canvas ``rows`` (see :func:`blend.weights`)."""
        return blend.weights(self.shifts, self.shapes, self.width, rows)

    def read_normalized(self, indices: np.ndarray, rows: slice) -> tuple[np.ndarray, Counts]:
        """Stitched, flat/dark-normalised projections ``indices`` (ascending, the same in every
        scan) over canvas ``rows`` (scan 0's rows): (n, rows, width) float32, and the guard counts."""
        if not self._scans:
            raise StageError("StitchedSource is closed")
        indices = np.asarray(indices, dtype=np.int64)
        rows = blend._rows(rows, self.n_rows)
        w = self.weights(rows)
        out = np.zeros((indices.size, rows.stop - rows.start, self.width), dtype=np.float32)
        counts = Counts()
        for i, scan in enumerate(self._scans):
            cols = blend.active_cols(w[i])
            if cols is None:
                continue
            dx, dy = self.shifts[i]
            n_rows, n_cols = self.shapes[i]
            rsl = blend.source_rows(dy, n_rows, rows)
            csl = blend.source_cols(dx, n_cols, cols)
            block, c = read_normalized(scan, self.params, indices, rsl, csl, i0_reference=self._i0_ref[i])
            counts.add(c)
            if self.gains[i] != 1.0:
                block *= np.float32(self.gains[i])
            blend.accumulate(out, block, (rsl.start, csl.start), (dx, dy), n_rows, n_cols, rows, w[i])
            del block
        return out, counts


def stitched_projection(plan: dict[str, Any], shifts: dict[str, Any] | str | os.PathLike, params: Any,
                        index: int | None = None) -> tuple[np.ndarray, list[float]]:
    """For the report: one stitched, normalised projection (rows, width) and the seam columns.

    ``index`` is a projection index of the scans (default: the plan's first selected one).
    """
    if index is None:
        index = int(plan.get("selection", {}).get("proj_indices", [0])[0])
    with StitchedSource(plan, shifts, params) as src:
        img, _ = src.read_normalized(np.asarray([index]), slice(0, src.n_rows))
        return img[0], src.seam_columns


def cost_maps(shifts: dict[str, Any] | str | os.PathLike) -> dict[str, np.ndarray]:
    """For the report: each measured pair's alignment cost map of the integer search (rows: Δy,
    columns: Δx, centred on the searched window's middle), keyed "left | right"."""
    if not isinstance(shifts, dict):
        shifts = load_shifts(shifts)
    names = [s["name"] for s in shifts["scans"]]
    out = {}
    for p in shifts["pairs"]:
        cost = np.array([[np.nan if v is None else v for v in row] for row in p["search"]["cost"]],
                        dtype=np.float64)
        out[f"{names[p['left']]} | {names[p['right']]}"] = cost
    return out


def stitched_block_bytes(n_proj: int, rows: int, overlap: int, width: int, n_cols: int, n_scans: int,
                         raw_itemsize: int, n_flat_frames: int) -> int:
    """Bytes a stitched subchunk holds beyond its full-width float32 block (n_proj × (rows +
    2·overlap) × width, which the plan counts as the pass-1 block): the blending weights of
    every scan, and one scan at a time — its raw block, the float32 normalisation and the
    interpolated copies (~5 float32 per pixel), its flats and darks.  For the plan's memory
    model; measured peaks belong in benchmarks/."""
    block_rows = rows + 2 * overlap
    scan_px = n_proj * (block_rows + 2) * (n_cols + 2)  # +2: the rows/columns interpolation reads
    weights = n_scans * block_rows * width * 4
    flats = n_flat_frames * (block_rows + 2) * (n_cols + 2) * (raw_itemsize + 4)
    return weights + scan_px * (raw_itemsize + 5 * 4) + flats
