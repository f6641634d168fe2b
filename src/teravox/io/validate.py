"""Checks of what a scan holds, shared by every reader: frame stacks, angles, flat and
dark fields, virtual-dataset sources.

Each check raises :class:`~teravox.errors.InputError` naming the file, the dataset and
what was expected, so a reader (DXchange, NXtomo, and whatever comes next) calls them
instead of repeating them.  A value that could still give a volume, but not the right
one (angles in radians labelled degrees, flats no brighter than darks), is refused here
rather than reconstructed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from teravox.errors import InputError
from teravox.io import units as U

#: Above this fraction of a frame's pixels that flat/dark normalisation has to patch
#: (flat ≤ dark, or NaN/Inf), a run warns loudly in its summary and its report.
PATCHED_WARN_FRACTION = 1e-3
#: Above this fraction nothing sensible remains to reconstruct: the scan is refused.
PATCHED_REFUSE_FRACTION = 0.5
#: A rotation that spans less than this many degrees, read as degrees, is almost surely
#: radians with a wrong (or no) unit: 2π rad read as degrees, with a little slack.
RADIAN_SPAN_DEG = 2 * np.pi * 1.02

_KINDS = {"i": "integers", "u": "unsigned integers", "f": "floating point", "b": "booleans",
          "c": "complex numbers", "S": "byte strings", "U": "strings", "O": "strings or objects",
          "V": "compound or opaque records", "M": "dates", "m": "time spans"}


def describe_dtype(dtype: np.dtype) -> str:
    """'complex numbers (complex64)' — what a user sees in an error message."""
    if h5py.check_string_dtype(dtype) is not None:
        return f"strings ({dtype})"
    return f"{_KINDS.get(dtype.kind, 'values')} ({dtype})"


def location(ds: object) -> tuple[str, str]:
    """(file, dataset) that name a stack of frames in messages: an HDF5 dataset's file and path,
    or a TIFF stack's folder (or file) and which files."""
    if isinstance(ds, h5py.Dataset):
        return ds.file.filename, ds.name
    return ds.location  # type: ignore[attr-defined]


def check_frames(ds: object, what: str) -> None:
    """A stack of frames (frames, rows, columns) of real numbers, readable in full (an HDF5
    dataset, or anything sliced like one, such as a TIFF stack).

    Refuses booleans, complex numbers, strings and compound records, and a virtual dataset
    with a source HDF5 would silently read as its fill value."""
    file, name = location(ds)
    shape, dtype = ds.shape, ds.dtype  # type: ignore[attr-defined]
    if len(shape) != 3:
        raise InputError(file, name, f"has shape {shape}, expected a 3-D stack of {what}")
    if 0 in shape:
        raise InputError(file, name, f"is empty (shape {shape}), expected {what}")
    if dtype.kind not in "iuf":
        raise InputError(file, name,
                         f"holds {describe_dtype(dtype)}; expected {what} as integer or floating-point counts")
    if isinstance(ds, h5py.Dataset):
        check_virtual_sources(ds, what)


# -- virtual datasets -------------------------------------------------------------------------
@dataclass(frozen=True)
class VirtualSource:
    """One source of a virtual dataset: the file as written in it, where HDF5 finds it (None:
    nowhere) and the dataset inside."""

    written: str
    path: Path | None
    dataset: str


def virtual_sources(ds: h5py.Dataset) -> list[VirtualSource]:
    """The distinct sources of a virtual dataset, resolved as HDF5 resolves them: '.' is the
    same file; an absolute path that exists; else the name (its base name, for an absolute
    path that does not exist) under $HDF5_VDS_PREFIX, beside the virtual dataset's file,
    then under the working directory."""
    if not ds.is_virtual:
        return []
    here = Path(ds.file.filename).resolve()
    seen: dict[tuple[str, str], VirtualSource] = {}
    for vs in ds.virtual_sources():
        key = (vs.file_name, vs.dset_name)
        if key not in seen:
            seen[key] = VirtualSource(vs.file_name, _resolve_source(vs.file_name, here), vs.dset_name)
    return list(seen.values())


def _resolve_source(name: str, vds_file: Path) -> Path | None:
    if name == ".":
        return vds_file
    p = Path(name)
    if p.is_absolute() and p.is_file():
        return p
    rel = Path(p.name) if p.is_absolute() else p
    prefixes = [s.replace("${ORIGIN}", str(vds_file.parent))
                for s in os.environ.get("HDF5_VDS_PREFIX", "").split(os.pathsep) if s]
    for base in [*map(Path, prefixes), vds_file.parent, Path.cwd()]:
        if (base / rel).is_file():
            return (base / rel).resolve()
    return None


def check_virtual_sources(ds: h5py.Dataset, what: str) -> None:
    """Every source of a virtual dataset exists and holds its dataset (HDF5 reads a missing
    one as the fill value, i.e. zeros, without a word)."""
    for src in virtual_sources(ds):
        if src.path is None:
            raise InputError(ds.file.filename, ds.name,
                             f"virtual dataset of {what}: its source file {src.written} is missing "
                             f"(looked beside {Path(ds.file.filename).name} and in the working directory); "
                             "HDF5 would read zeros there")
        try:
            with h5py.File(src.path, "r") as f:
                obj = f.get(src.dataset)
                ok = isinstance(obj, h5py.Dataset)
        except OSError as exc:
            raise InputError(src.path, None, f"source of the virtual dataset {ds.name} in {ds.file.filename} "
                                             f"cannot be opened ({exc})") from None
        if not ok:
            raise InputError(src.path, src.dataset, f"missing: the virtual dataset {ds.name} in "
                                                    f"{ds.file.filename} reads its {what} from here")


# -- angles -------------------------------------------------------------------------------------
def angles_to_degrees(values: np.ndarray, unit: str | None, file: object, dataset: str,
                      default_unit: str = "deg") -> np.ndarray:
    """Angles as stored (``values``, in ``unit``; None: ``default_unit``) → float64 degrees.

    Refuses strings and other non-numbers, NaN/Inf and units teravox does not know."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise InputError(file, dataset, f"angles are stored as {describe_dtype(values.dtype)}; "
                                        "expected numbers (degrees, or the unit the 'units' attribute names)")
    if values.ndim != 1:
        raise InputError(file, dataset, f"has shape {values.shape}, expected one angle per frame (1-D)")
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(file, dataset, f"{bad} of {values.size} angles are NaN or infinite")
    try:
        scale = U.factor(unit, "angle", default_unit)
    except ValueError as exc:
        raise InputError(file, dataset, str(exc)) from None
    return values.astype(np.float64) * scale


def check_angles(theta_deg: np.ndarray, file: object, where: str, unit: str | None, why_unit: str) -> None:
    """Angles (degrees) a parallel-beam reconstruction can use; ``file`` and ``where`` name
    their source, ``unit`` the unit they were read in (None: assumed degrees), ``why_unit`` why.

    Refuses all-identical angles and a rotation too small to be anything but radians read
    as degrees.  Unsorted angles are fine: the plan orders the projections by angle."""
    n = theta_deg.size
    if n < 2:
        return
    span = float(np.ptp(theta_deg))
    if span == 0:
        raise InputError(file, where, f"all {n} angles are {theta_deg[0]:g}°: expected angles spread "
                                      "over the rotation (give --theta-source calc with --theta-start-deg "
                                      "and --theta-end-deg if the file's angles are wrong)")
    if span < RADIAN_SPAN_DEG and U.factor(unit, "angle", "deg") == 1.0:
        raise InputError(file, where, f"the {n} angles span only {span:.4g}° ({theta_deg.min():.4g}…"
                                      f"{theta_deg.max():.4g}), read as degrees because {why_unit}; "
                                      "they look like radians: set the dataset's units attribute to 'rad', "
                                      "or give --theta-source calc with --theta-start-deg/--theta-end-deg")


# -- flat and dark fields ----------------------------------------------------------------------
def unusable_fraction(flat: np.ndarray, dark: np.ndarray, eps: float = 1e-6) -> tuple[float, float]:
    """Fractions of pixels flat/dark normalisation cannot use: (flat ≤ dark, NaN/Inf in either)."""
    flat = np.asarray(flat, np.float32)
    dark = np.asarray(dark, np.float32)
    nonfinite = ~(np.isfinite(flat) & np.isfinite(dark))
    with np.errstate(invalid="ignore"):
        le = ~nonfinite & ((flat - dark) <= eps)
    n = max(flat.size, 1)
    return float(np.count_nonzero(le)) / n, float(np.count_nonzero(nonfinite)) / n


def check_fields(flat: np.ndarray, dark: np.ndarray, file: object, where: str) -> None:
    """Combined flat and dark images (or a sample of their rows) that can normalise a scan:
    refused when more than half the pixels have flat ≤ dark or a NaN/Inf."""
    le, nonfinite = unusable_fraction(flat, dark)
    if le + nonfinite > PATCHED_REFUSE_FRACTION:
        what = []
        if nonfinite:
            what.append(f"{nonfinite:.0%} are NaN or infinite in the flats or darks")
        if le:
            what.append(f"{le:.0%} have flat ≤ dark" + (" (the flats equal the darks)"
                                                         if np.array_equal(flat, dark) else ""))
        raise InputError(file, where, f"flat/dark normalisation is impossible: of the {np.size(flat)} "
                                      f"pixels checked, {' and '.join(what)}; expected flats brighter "
                                      "than darks (check --flat-path/--dark-path, or --flat-dark false "
                                      "for data already normalised)")


def angle_span(theta_deg: np.ndarray) -> float:
    """Degrees the projections cover: the angles' range plus one median step (the last
    projection stands for a step, as the first does), whatever their order."""
    th = np.sort(np.asarray(theta_deg, np.float64))
    if th.size < 2:
        return 0.0
    return float(th[-1] - th[0] + np.median(np.diff(th)))


def angle_coverage_note(theta_deg: np.ndarray, half_acquisition: str) -> str | None:
    """What a user should know about the angles' range, or None for a plain 180° scan: a
    full turn without half acquisition asked for (it may be one), a range short of 180°, a
    scan over more than a turn."""
    span = angle_span(theta_deg)
    step = span / max(theta_deg.size, 1)
    lo, hi = float(np.min(theta_deg)), float(np.max(theta_deg))
    what = f"the {theta_deg.size} angles cover {span:.1f}° ({lo:g}…{hi:g}°)"
    if span < 180 - 1.5 * step:
        return f"{what}, less than 180°: the missing directions show as streaks (limited-angle data)"
    if half_acquisition == "off" and abs(span - 360) <= 1.5 * step:
        return (f"{what}, a full turn: if the rotation axis sits near one edge of the detector (half "
                "acquisition, an object wider than the field of view), give --half-acquisition auto")
    if span > 360 + 1.5 * step:
        return f"{what}, more than a turn: every direction is used, each weighted by its neighbours' spacing"
    return None
