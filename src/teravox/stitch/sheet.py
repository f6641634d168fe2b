"""The scan sheet: which offset scans make one field of view, and where each one sits.

A sheet is a CSV, JSON or YAML file with one row per scan::

    file,position_mm,height_mm,flat_file,dark_file
    scan_00.h5,0.000,0.0,,
    scan_01.h5,0.040,0.0,,

Columns: ``file`` (required); at most one of ``position_mm`` / ``position_px`` (the stage
motor's lateral position of the scan's column 0) and at most one of ``height_mm`` /
``height_px`` (its vertical position: where the scan's row 0 sits in the tall field of view,
rows counting downwards, so raising the sample by one row adds one) — a row gives a
position, a height or both (a missing one is 0); optional ``flat_file`` and ``dark_file``
(flats/darks in a separate file), and free ``name``/``comment`` columns.

Scans whose heights lie within half a search window (10 rows by default) of each other form
one *level* (:func:`split_levels`): side by side, stitched as projections; several levels are
a vertical stack, reconstructed level by level and joined along z.
Relative paths are resolved against the sheet's directory.  JSON/YAML hold a list of
such rows, or a mapping ``{"scans": [...], "pixel_size_m": ...}``.  Repeated scans on
the command line with ``--positions`` make the same rows (:func:`rows_from_positions`).

Only metadata is read here (:func:`read_meta`); :func:`check_meta` makes sure the scans
can be stitched (same detector, same angles).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from teravox.errors import InputError, ParamError, PlanError

COLUMNS = ("file", "position_mm", "position_px", "height_mm", "height_px", "flat_file", "dark_file")
FREE_COLUMNS = ("name", "comment")
#: angles of two scans agree when they differ by less than this fraction of the angular step
ANGLE_TOLERANCE_STEPS = 0.05
#: pixel sizes of two scans agree within this relative difference
PIXEL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SheetRow:
    """One scan of a multi-scan acquisition, as the sheet (or ``--positions``) gives it."""

    file: Path                       # absolute path of the scan
    position: float                  # motor position of the scan's column 0
    unit: Literal["mm", "px"]        # unit of ``position``
    flat_file: Path | None = None
    dark_file: Path | None = None
    line: int | None = None          # row number in the sheet (1 = first data row), for messages
    sheet: Path | None = None
    height: float = 0.0              # vertical position of the scan's row 0 (rows count downwards)
    height_unit: Literal["mm", "px"] = "px"

    @property
    def label(self) -> str:
        """How messages name this scan: its file name, and the sheet row when there is one."""
        where = f" (row {self.line} of {self.sheet.name})" if self.sheet is not None and self.line else ""
        return f"{self.file.name}{where}"

    def position_px(self, pixel_size_m: float | None) -> float:
        """The motor position in detector pixels (mm converted with ``pixel_size_m``, metres)."""
        if self.unit == "px":
            return float(self.position)
        if pixel_size_m is None or not pixel_size_m > 0:
            raise PlanError(f"{self.label}: position_mm needs the pixel size to convert to pixels; "
                            f"none in the file's metadata: give --pixel-size-m (or position_px in the sheet)")
        return float(self.position) * 1e-3 / float(pixel_size_m)

    def height_px(self, pixel_size_m: float | None) -> float:
        """The height in detector rows (mm converted with ``pixel_size_m``, metres)."""
        if self.height_unit == "px":
            return float(self.height)
        if pixel_size_m is None or not pixel_size_m > 0:
            raise PlanError(f"{self.label}: height_mm needs the pixel size to convert to rows; "
                            f"none in the file's metadata: give --pixel-size-m (or height_px in the sheet)")
        return float(self.height) * 1e-3 / float(pixel_size_m)


@dataclass(frozen=True)
class Sheet:
    """A read scan sheet: its rows in the sheet's order, and the pixel size if it gives one."""

    rows: list[SheetRow]
    path: Path | None = None
    pixel_size_m: float | None = None


# -- reading --------------------------------------------------------------------------
def read_sheet(path: str | os.PathLike, *, check_files: bool = True) -> Sheet:
    """Read a CSV/JSON/YAML scan sheet; InputError naming the sheet and row on any problem.

    ``check_files`` also makes sure every scan, flat and dark file exists, so a typo is
    reported before anything is planned.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "scan sheet does not exist" if not p.exists() else "scan sheet is not a file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(p, None, f"cannot read the scan sheet ({exc})") from None
    suffix = p.suffix.lower()
    pixel_size_m: float | None = None
    if suffix == ".csv":
        records = _csv_records(p, text)
    elif suffix in (".json", ".yaml", ".yml"):
        from teravox.config.documents import read_document

        try:
            data = read_document(p)
        except ValueError as exc:  # too large, not valid, or a YAML alias bomb
            raise InputError(p, None, f"scan sheet {exc}") from None
        if isinstance(data, dict):
            unknown = sorted(set(data) - {"scans", "pixel_size_m"})
            if unknown or "scans" not in data:
                raise InputError(p, None, f"expected a list of scans or a mapping with 'scans' "
                                          f"(and optionally 'pixel_size_m'); got keys {sorted(data)}")
            if data.get("pixel_size_m") is not None:
                pixel_size_m = _number(p, None, "pixel_size_m", data["pixel_size_m"])
                if not pixel_size_m > 0:
                    raise InputError(p, None, f"pixel_size_m must be positive, got {pixel_size_m}")
            data = data["scans"]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(p, None, "expected a list of scans, each a mapping with 'file' and "
                                      "'position_mm' or 'position_px'")
        records = [{str(k): v for k, v in r.items()} for r in data]
    else:
        raise InputError(p, None, f"unknown scan sheet format {p.suffix!r}: use .csv, .json, .yaml or .yml")
    if not records:
        raise InputError(p, None, "the scan sheet lists no scans")
    base = p.resolve().parent
    rows = [_row(p, i + 1, rec, base) for i, rec in enumerate(records)]
    _check_unique(rows)
    if check_files:
        check_files_exist(rows)
    return Sheet(rows=rows, path=p.resolve(), pixel_size_m=pixel_size_m)


def _csv_records(p: Path, text: str) -> list[dict[str, Any]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        raise InputError(p, None, "the scan sheet is empty (expected a header: file,position_mm,...)")
    out = []
    for rec in reader:
        if None in rec:  # more cells than header names
            raise InputError(p, None, f"row {reader.line_num - 1} has more cells than the header "
                                      f"({', '.join(reader.fieldnames)})")
        out.append({k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in rec.items()})
    return out


def _number(p: Path, line: int | None, name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        where = f"row {line}: " if line else ""
        raise InputError(p, None, f"{where}{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise InputError(p, None, f"row {line}: {name} must be finite, got {value!r}")
    return x


def _row(p: Path, line: int, rec: dict[str, Any], base: Path) -> SheetRow:
    unknown = sorted(set(rec) - set(COLUMNS) - set(FREE_COLUMNS))
    if unknown:
        raise InputError(p, None, f"row {line}: unknown column(s) {', '.join(unknown)}; "
                                  f"expected {', '.join(COLUMNS)} (and free {', '.join(FREE_COLUMNS)})")

    def given(key: str) -> Any:
        v = rec.get(key)
        return None if v is None or (isinstance(v, str) and v == "") else v

    file = given("file")
    if file is None:
        raise InputError(p, None, f"row {line}: no 'file' (every row names its scan file)")
    mm, px = given("position_mm"), given("position_px")
    hmm, hpx = given("height_mm"), given("height_px")
    if mm is not None and px is not None:
        raise InputError(p, None, f"row {line} ({file}): give one of position_mm and position_px, not both")
    if hmm is not None and hpx is not None:
        raise InputError(p, None, f"row {line} ({file}): give one of height_mm and height_px, not both")
    if mm is None and px is None and hmm is None and hpx is None:
        raise InputError(p, None, f"row {line} ({file}): give its position (position_mm or position_px), "
                                  f"its height (height_mm or height_px), or both")
    unit: Literal["mm", "px"] = "mm" if mm is not None else "px"
    position = 0.0 if mm is None and px is None else _number(p, line, f"position_{unit}", mm if mm is not None else px)
    hunit: Literal["mm", "px"] = "mm" if hmm is not None else "px"
    height = 0.0 if hmm is None and hpx is None else _number(p, line, f"height_{hunit}", hmm if hmm is not None else hpx)

    def resolve(v: Any) -> Path | None:
        return None if v is None else (base / Path(str(v)).expanduser()).resolve()

    return SheetRow(file=resolve(file), position=position, unit=unit,  # type: ignore[arg-type]
                    flat_file=resolve(given("flat_file")), dark_file=resolve(given("dark_file")),
                    line=line, sheet=p.resolve(), height=height, height_unit=hunit)


def _check_unique(rows: Sequence[SheetRow]) -> None:
    seen: dict[Path, SheetRow] = {}
    for r in rows:
        if r.file in seen:
            raise InputError(r.sheet or r.file, None, f"{r.file.name} is listed twice "
                                                      f"({seen[r.file].label} and {r.label})")
        seen[r.file] = r


def check_files_exist(rows: Sequence[SheetRow]) -> None:
    """InputError naming the scan (and sheet row) whose scan, flat or dark file is missing."""
    for r in rows:
        for role, f in (("scan", r.file), ("flat", r.flat_file), ("dark", r.dark_file)):
            if f is not None and not f.is_file():
                what = "does not exist" if not f.exists() else "is not a file"
                raise InputError(f, None, f"{role} file of scan {r.label} {what}")


def parse_positions(text: str | Sequence[float]) -> list[float]:
    """'0, 0.04, 0.08' (or a list) → floats; ParamError on anything else."""
    if isinstance(text, str):
        parts = [t for t in text.replace(";", ",").replace(" ", ",").split(",") if t]
    else:
        parts = list(text)
    try:
        values = [float(t) for t in parts]
    except (TypeError, ValueError):
        raise ParamError(f"--positions: expected numbers separated by commas, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ParamError(f"--positions: expected finite numbers, got {text!r}")
    return values


def rows_from_positions(files: Sequence[str | os.PathLike], positions: str | Sequence[float], *,
                        unit: Literal["mm", "px"] = "mm", flat_file: str | os.PathLike | None = None,
                        dark_file: str | os.PathLike | None = None,
                        check_files: bool = True) -> list[SheetRow]:
    """Sheet rows for scans repeated on the command line with ``--positions`` (mm or px)."""
    if unit not in ("mm", "px"):
        raise ParamError(f"position unit must be 'mm' or 'px', got {unit!r}")
    values = parse_positions(positions)
    if len(values) != len(files):
        raise ParamError(f"--positions gives {len(values)} position(s) for {len(files)} scan(s); "
                         "give one position per scan, in the same order")
    side = {k: None if v is None else Path(v).resolve() for k, v in (("flat", flat_file), ("dark", dark_file))}
    rows = [SheetRow(file=Path(f).resolve(), position=v, unit=unit, flat_file=side["flat"],
                     dark_file=side["dark"]) for f, v in zip(files, values, strict=True)]
    _check_unique(rows)
    if check_files:
        check_files_exist(rows)
    return rows


# -- metadata -------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanMeta:
    """What the plan needs of one scan: shapes, angles, flats/darks, pixel size (no pixel read)."""

    path: Path
    shape: tuple[int, int, int]      # (projections, rows, columns)
    dtype: str
    theta_deg: np.ndarray
    n_flats: int = 0
    n_flats_after: int = 0
    n_darks: int = 0
    pixel_size_m: float | None = None
    pixel_size_source: str | None = None
    has_i0: bool = False
    format: str = "dxchange"
    data_path: str = "/exchange/data"

    @classmethod
    def from_scan(cls, scan: Any) -> ScanMeta:
        """From an open :class:`teravox.io.scan.Scan`."""
        px = scan.metadata.get("pixel_size_m")
        return cls(path=Path(scan.path), shape=tuple(int(v) for v in scan.shape), dtype=str(scan.dtype),
                   theta_deg=np.asarray(scan.theta_deg, dtype=np.float64), n_flats=int(scan.n_flats),
                   n_flats_after=int(scan.n_flats_after), n_darks=int(scan.n_darks),
                   pixel_size_m=None if px is None else float(px.value),
                   pixel_size_source=None if px is None else px.source, has_i0=scan.i0 is not None,
                   format=scan.format, data_path=scan.data_path)


def open_row(row: SheetRow, params: Any) -> Any:
    """Open the scan of ``row`` read-only with the input parameters of ``params`` and the row's
    own flat/dark files (else ``params.flat_file``/``dark_file``)."""
    from teravox.io import open_scan_for

    flat = row.flat_file or params.flat_file
    dark = row.dark_file or params.dark_file
    try:
        return open_scan_for(row.file, params, flat_file=None if flat is None else str(flat),
                             dark_file=None if dark is None else str(dark))
    except InputError as exc:
        if row.sheet is None and row.line is None:
            raise
        raise InputError(exc.file, exc.dataset, f"{exc.problem} (scan {row.label})") from None


def read_meta(rows: Sequence[SheetRow], params: Any) -> list[ScanMeta]:
    """Open each scan only long enough to read its metadata."""
    out = []
    for r in rows:
        with open_row(r, params) as scan:
            out.append(ScanMeta.from_scan(scan))
    return out


def check_meta(rows: Sequence[SheetRow], metas: Sequence[ScanMeta]) -> None:
    """PlanError naming the scans whose projections or angles differ from the first scan's.

    Detector shapes may differ: each scan is placed with its own rows and columns."""
    if len(rows) != len(metas):
        raise PlanError(f"{len(rows)} sheet rows but metadata of {len(metas)} scans")
    if len(rows) < 2:
        raise PlanError(f"stitching needs at least two scans, the sheet lists {len(rows)}")
    ref, ref_row = metas[0], rows[0]
    count_bad = [f"{r.label} has {m.shape[0]}" for r, m in zip(rows, metas, strict=True)
                 if m.shape[0] != ref.shape[0]]
    if count_bad:
        raise PlanError(f"the scans must have the same projections to be stitched: {ref_row.label} has "
                        f"{ref.shape[0]} projections, but " + "; ".join(count_bad))
    theta0 = ref.theta_deg
    step = float(np.median(np.abs(np.diff(theta0)))) if theta0.size > 1 else 1.0
    tol = ANGLE_TOLERANCE_STEPS * (step if step > 0 else 1.0)
    angle_bad = []
    for r, m in zip(rows[1:], metas[1:], strict=True):
        diff = np.abs(m.theta_deg - theta0)
        if diff.size and float(diff.max()) > tol:
            k = int(np.argmax(diff))
            angle_bad.append(f"{r.label} has {m.theta_deg[k]:.4g}° at projection {k} "
                             f"where {ref_row.label} has {theta0[k]:.4g}°")
    if angle_bad:
        raise PlanError(f"the scans must have the same angles to be stitched (tolerance {tol:.3g}°): "
                        + "; ".join(angle_bad))


# -- vertical stacks ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """The scans at one height of a vertical stack (one scan, or several side by side)."""

    index: int                       # 0: the top of the stack
    rows: list[SheetRow]             # in the sheet's order
    metas: list[ScanMeta]
    height_px: float                 # of the reference scan (the first in lateral order): its row 0
    reference: int                   # index into rows of that scan

    @property
    def label(self) -> str:
        names = ", ".join(r.file.name for r in self.rows)
        return f"level {self.index} ({names}; height {self.height_px:.1f} px)"


def split_levels(rows: Sequence[SheetRow], metas: Sequence[ScanMeta], pixel_size_m: float | None, *,
                 window_px: int = 20, position_sign: int = 1, height_sign: int = 1) -> list[Level]:
    """Group the sheet's scans by height, top first: a scan starts a new level when its height is
    more than half a search window (or a quarter of a detector's rows, if less) below the
    previous scan's, in height order.  Scans side by side differ in height only by their
    stages' errors, which the vertical search covers; levels are tens of rows apart."""
    h = np.array([height_sign * r.height_px(pixel_size_m) if r.height else 0.0 for r in rows])
    order = np.argsort(h, kind="stable")
    groups: list[list[int]] = [[int(order[0])]]
    for a, b in zip(order[:-1], order[1:], strict=True):
        if h[b] - h[a] > min(window_px / 2, min(metas[a].shape[1], metas[b].shape[1]) / 4):
            groups.append([])
        groups[-1].append(int(b))
    levels = []
    for k, idx in enumerate(groups):
        idx = sorted(idx)  # the sheet's order within a level
        pos = [position_sign * rows[i].position_px(pixel_size_m) if rows[i].position else 0.0 for i in idx]
        ref = int(np.argmin(pos))
        levels.append(Level(k, [rows[i] for i in idx], [metas[i] for i in idx], float(h[idx[ref]]), ref))
    return levels


def check_levels(levels: Sequence[Level], pixel_size_m: float | None, *, window_px: int,
                 position_sign: int = 1, min_overlap_rows: int = 4) -> None:
    """PlanError naming the scans when a vertical stack cannot be joined: neighbouring levels
    that do not overlap by ``min_overlap_rows`` even half a window closer, or levels whose
    scans are not laid out side by side the same way (their count, or their lateral
    positions relative to the level's first scan beyond half a window)."""
    half = window_px // 2
    for up, down in zip(levels[:-1], levels[1:], strict=True):
        top, low = up.rows[up.reference], down.rows[down.reference]
        n_rows = up.metas[up.reference].shape[1]
        step = down.height_px - up.height_px
        if n_rows - step + half < min_overlap_rows:
            raise PlanError(
                f"{low.label} (height {down.height_px:.1f} px) is {step:.1f} rows below {top.label} (height "
                f"{up.height_px:.1f} px), whose images are {n_rows} rows high: even {half} rows closer they would "
                f"share fewer than {min_overlap_rows} rows, so the levels cannot be joined; check the heights, "
                f"their unit (mm or px) and the pixel size")

    def layout(lv: Level) -> list[tuple[float, SheetRow]]:
        pos = [(position_sign * r.position_px(pixel_size_m) if r.position else 0.0, r) for r in lv.rows]
        ref = pos[lv.reference][0]
        return sorted(((p - ref, r) for p, r in pos), key=lambda t: t[0])

    first = layout(levels[0])
    for lv in levels[1:]:
        other = layout(lv)
        if len(other) != len(first):
            raise PlanError(
                f"the levels of the vertical stack must have the same scans side by side: {levels[0].label} "
                f"has {len(first)} scan(s) but {lv.label} has {len(other)}")
        for (p0, r0), (p1, r1) in zip(first, other, strict=True):
            if abs(p1 - p0) > half:
                raise PlanError(
                    f"the levels of the vertical stack are laid out differently: {r1.label} sits {p1:+.1f} px "
                    f"from its level's first scan, but {r0.label}, its counterpart in level 0, sits {p0:+.1f} px "
                    f"from its own (more than ±{half} px apart); check the positions")


def resolve_pixel_size(rows: Sequence[SheetRow], metas: Sequence[ScanMeta], given: float | None,
                       sheet_value: float | None = None) -> tuple[float | None, str]:
    """Pixel size in metres and where it came from: the parameter, the sheet, or the files
    (which must agree with each other)."""
    if given is not None:
        return float(given), "parameter pixel_size_m"
    if sheet_value is not None:
        return float(sheet_value), "scan sheet"
    found = [(r, m) for r, m in zip(rows, metas, strict=True) if m.pixel_size_m]
    if not found:
        return None, "not found"
    r0, m0 = found[0]
    for r, m in found[1:]:
        if abs(m.pixel_size_m - m0.pixel_size_m) > PIXEL_TOLERANCE * m0.pixel_size_m:
            raise PlanError(f"the scans' pixel sizes differ: {r0.label} has {m0.pixel_size_m:.6g} m "
                            f"({m0.pixel_size_source}), {r.label} has {m.pixel_size_m:.6g} m; give "
                            f"--pixel-size-m to choose one")
    return float(m0.pixel_size_m), f"{r0.file.name}: {m0.pixel_size_source}"
