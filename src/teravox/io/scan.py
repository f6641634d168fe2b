"""Lazy, read-only scan readers: DXchange, NeXus (NXtomo and the variants facilities write)
and TIFF stacks, behind one typed object, :class:`Scan`.

A :class:`Scan` never loads a whole stack: projections, flats and darks are read a block
of projections and detector rows at a time, from HDF5 datasets (h5py slicing) or TIFF
files (:mod:`teravox.io.tiff`).  Where each piece sits is given (:class:`InputSpec`:
``--data-path``, ``--image-key-path``, ``--angles-path`` …) or found (DXchange paths, or
the NeXus attributes, :mod:`teravox.io.nexus`), and the scan records what it chose and
why (:attr:`Scan.choices`).  Instrument values are looked up at the DXchange, DanMAX and
NeXus paths, with their ``units`` attributes honoured and converted to metres / keV /
degrees.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teravox.errors import InputError
from teravox.io import hdf5, nexus, tiff, validate
from teravox.io import units as U

#: where each instrument value may live, first match wins: (path, kind, unit when no attribute)
METADATA_PATHS: dict[str, list[tuple[str, str | None, str | None]]] = {
    "energy_kev": [
        ("/measurement/instrument/monochromator/energy", "energy", "keV"),
        ("/measurement/instrument/source/energy", "energy", "keV"),
        ("/instrument/monochromator/energy", "energy", "keV"),
    ],
    "pixel_size_m": [
        ("/measurement/instrument/detector/pixel_size_x", "length", "um"),
        ("/measurement/instrument/detection_system/objective/resolution", "length", "um"),
        ("/measurement/instrument/detector/actual_pixel_size_x", "length", "um"),
        ("/instrument/detector/actual_pixel_size_x", "length", "um"),
    ],
    "distance_m": [
        ("/measurement/instrument/detector/distance", "length", "mm"),
        ("/measurement/instrument/detector/propagation_distance", "length", "mm"),
        ("/measurement/instrument/sample/setup/propagation_distance", "length", "mm"),
        ("/instrument/detector/propagation_distance", "length", "mm"),
    ],
    "exposure_s": [
        ("/measurement/instrument/detector/exposure_time", "time", "s"),
        ("/instrument/detector/exposure_time", "time", "s"),
    ],
    "center": [
        ("/measurement/instrument/rotation_center", None, None),
        ("/process/acquisition/setup/rotation_center", None, None),
    ],
    "rotation_start_deg": [
        ("/process/acquisition/setup/rotation_start_angle", "angle", "deg"),
    ],
    "rotation_end_deg": [
        ("/process/acquisition/setup/rotation_end_angle", "angle", "deg"),
    ],
}
I0_PATHS = ["/measurement/instrument/beam_monitor/data", "/instrument/beam_monitor/data",
            "/measurement/instrument/beam_monitor/current"]
DXCHANGE_FIELDS = {"flats": "/exchange/data_white", "darks": "/exchange/data_dark"}


@dataclass(frozen=True)
class InputSpec:
    """Where a scan's pieces are, as far as the user says (None: the default or found)."""

    data_path: str | None = None
    image_key_path: str | None = None
    angles_path: str | None = None
    angles_file: str | None = None
    angles_unit: str | None = None
    monitor_path: str | None = None
    flat_file: str | None = None
    flat_path: str | None = None
    dark_file: str | None = None
    dark_path: str | None = None
    theta_source: str = "file"
    theta_start_deg: float | None = None
    theta_end_deg: float | None = None

    @classmethod
    def from_params(cls, params: Any, **changes: Any) -> InputSpec:
        """The input parameters of a :class:`teravox.config.Params`, with ``changes``."""
        names = [f.name for f in dataclasses.fields(cls)]
        return dataclasses.replace(cls(**{n: getattr(params, n) for n in names}), **changes)


@dataclass(frozen=True)
class Value:
    """An instrument value in teravox's unit and where it was found."""

    value: float
    source: str


@dataclass(frozen=True)
class Choice:
    """Where a piece of the scan was taken from and why (``teravox info`` lists them)."""

    role: str        # "frames", "image keys", "angles", "flats", ...
    where: str       # dataset, file or folder
    why: str


@dataclass(frozen=True)
class DataFile:
    """A file a scan reads, the dataset in it, and how it is reached from the scan file."""

    role: str           # "projections", "flats", "angles", ...
    file: str           # absolute path (a folder or pattern for TIFF stacks)
    dataset: str
    via: str = ""       # "" (the scan file, or a file given as a parameter), "external link",
    #                     or "virtual source of <dataset>"


class Frames:
    """Frames of one role gathered from stacks (HDF5 datasets or TIFF stacks): each part is a
    stack and the indices of its frames taken, in order (None: all of them)."""

    def __init__(self, parts: list[tuple[Any, np.ndarray | None]]):
        self.whole = len(parts) == 1 and parts[0][1] is None  # one stack, all its frames
        self.parts = [(s, np.arange(s.shape[0]) if idx is None else np.asarray(idx, int)) for s, idx in parts]
        self.n = sum(idx.size for _, idx in self.parts)

    def read(self, index: slice | np.ndarray, rows: slice, cols: slice,
             out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``index`` (a slice, or positions in any order) × rows × cols, stored dtype,
        into ``out`` when given."""
        if self.whole and isinstance(index, slice) and out is None:
            return self.parts[0][0][index, rows, cols]
        pos = np.arange(self.n)[index] if isinstance(index, slice) else np.asarray(index, int)
        if len(self.parts) == 1:
            stack, idx = self.parts[0]
            return _read_frames(stack, idx[pos], rows, cols, out)
        bounds = np.cumsum([0] + [idx.size for _, idx in self.parts])
        part = np.searchsorted(bounds, pos, side="right") - 1
        for p in np.unique(part):
            stack, idx = self.parts[p]
            sel = part == p
            got = _read_frames(stack, idx[pos[sel] - bounds[p]], rows, cols)
            if out is None:
                out = np.empty((pos.size,) + got.shape[1:], got.dtype)
            out[sel] = got
        if out is None:
            stack = self.parts[0][0]
            return np.empty((0,) + stack[0:1, rows, cols].shape[1:], stack.dtype)
        return out


@dataclass
class Scan:
    """An open scan.  Use as a context manager, or call :meth:`close`."""

    path: Path
    format: str                       # "dxchange", "nxtomo" (image keys), "nexus" or "tiff"
    n_proj: int = 0
    n_rows: int = 0
    n_cols: int = 0
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.uint16))
    theta_deg: np.ndarray = field(default_factory=lambda: np.empty(0))
    theta_source: str = ""            # where the angles came from
    metadata: dict[str, Value] = field(default_factory=dict)
    i0: np.ndarray | None = None      # beam monitor per projection
    i0_source: str | None = None
    n_flats: int = 0
    n_flats_after: int = 0
    n_darks: int = 0
    data_path: str = "/exchange/data"
    choices: list[Choice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what a user should know (ignored frames, ...)
    #: where the flats and darks were read, or looked for
    field_sources: dict[str, str] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list, repr=False)
    _proj: Frames | None = field(default=None, repr=False)
    _flats: Frames | None = field(default=None, repr=False)
    _flats_after: Frames | None = field(default=None, repr=False)
    _darks: Frames | None = field(default=None, repr=False)
    _fields_cache: tuple[tuple, tuple] | None = field(default=None, repr=False)
    _used: list[tuple[str, Any]] = field(default_factory=list, repr=False)  # role, stack or dataset
    #: angles read from a file: (file, dataset or None, unit or None, why that unit)
    _theta_read: tuple[str, str | None, str | None, str] | None = field(default=None, repr=False)
    _layout: nexus.Layout | None = field(default=None, repr=False)
    _other_files: list[DataFile] = field(default_factory=list, repr=False)  # read whole, not as datasets

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        for f in reversed(self._closers):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing twice or a dead handle is harmless
                pass
        self._closers.clear()

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_proj, self.n_rows, self.n_cols)

    @property
    def nbytes(self) -> int:
        return self.n_proj * self.n_rows * self.n_cols * self.dtype.itemsize

    def read_projections(self, index: slice | np.ndarray, rows: slice = slice(None),
                         cols: slice = slice(None), out: np.ndarray | None = None) -> np.ndarray:
        """Projections (angles, rows, cols) in their stored dtype; index is a slice or indices in
        any order (the plan orders them by angle).  ``out``: a C-contiguous array of that shape
        and dtype to read into."""
        return self._read(self._proj, index, rows, cols, "projections", out)

    def read_flats(self, rows: slice = slice(None), cols: slice = slice(None), after: bool = False) -> np.ndarray:
        """All flat fields (before the scan, or after it) for the given rows and columns."""
        if after:
            if not self.n_flats_after:
                raise InputError(self.path, None, "no flats after the scan")
            return self._read(self._flats_after, slice(None), rows, cols, "flats")
        if not self.n_flats:
            raise InputError(self.path, None, "no flat fields found")
        return self._read(self._flats, slice(None), rows, cols, "flats")

    def read_darks(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        if not self.n_darks:
            raise InputError(self.path, None, "no dark fields found")
        return self._read(self._darks, slice(None), rows, cols, "darks")

    def read_fields(self, rows: slice = slice(None), cols: slice = slice(None), *,
                    flat_method: str = "mean", dark_method: str = "mean"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Combined (rows, cols) flat, dark and after-scan flat (None without one), float32.

        The last result is kept: a job reading blocks of projections at full height asks for
        the same fields for every block."""
        from teravox.prep.flatdark import combine

        key = (rows.start, rows.stop, rows.step, cols.start, cols.stop, cols.step, flat_method, dark_method)
        if self._fields_cache is not None and self._fields_cache[0] == key:
            return self._fields_cache[1]
        flat = combine(self.read_flats(rows, cols), flat_method)
        dark = combine(self.read_darks(rows, cols), dark_method)
        after = (combine(self.read_flats(rows, cols, after=True), flat_method)
                 if self.n_flats_after else None)
        self._fields_cache = (key, (flat, dark, after))
        return flat, dark, after

    def _read(self, frames: Frames | None, index: slice | np.ndarray, rows: slice, cols: slice,
              what: str, out: np.ndarray | None = None) -> np.ndarray:
        assert frames is not None
        try:
            return frames.read(index, rows, cols, out)
        except (OSError, KeyError, RuntimeError) as exc:
            file, name = validate.location(frames.parts[0][0])
            raise InputError(file, name, f"cannot read {what} ({exc})") from None

    # -- what the scan reads ----------------------------------------------------------------
    def datasets(self) -> list[tuple[str, Any]]:
        """(role, dataset or TIFF stack) of everything this scan reads, each once."""
        out: dict[tuple[str, str], tuple[str, Any]] = {}
        for role, ds in self._used:
            key = validate.location(ds)
            out[key] = (f"{out[key][0]}, {role}", ds) if key in out and role not in out[key][0] else (role, ds)
        return list(out.values())

    def data_files(self) -> list[DataFile]:
        """Every file the scan reads: its datasets' files, the targets of external links, the
        sources of virtual datasets and the TIFF folders, wherever they are."""
        out: list[DataFile] = []
        given = {str(self.path.resolve()), *(str(Path(f.filename).resolve()) for f in self._closers
                                            if isinstance(f, h5py.File))}
        for role, ds in self.datasets():
            if not isinstance(ds, h5py.Dataset):
                file, name = validate.location(ds)
                out.append(DataFile(role, file, name, ""))
                continue
            file = str(Path(ds.file.filename).resolve())
            out.append(DataFile(role, file, ds.name, "" if file in given else "external link"))
            for src in validate.virtual_sources(ds):
                where = str(src.path) if src.path else f"{src.written} (missing)"
                out.append(DataFile(role, where, src.dataset, f"virtual source of {ds.name}"))
        return out + self._other_files


def _read_frames(ds: Any, idx: np.ndarray, rows: slice, cols: slice,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Read frames ``idx`` (any order) as runs of consecutive frames (h5py is fast on slices,
    slow on lists), each straight into its place in ``out`` (allocated when None).  Ascending
    indices that form one run come back as the stack reads them; descending ones (a scan
    recorded from its last angle down) are read as one run, reversed."""
    if idx.size == 0:
        return out if out is not None else np.empty((0,) + ds[0:1, rows, cols].shape[1:], ds.dtype)
    if idx.size > 1 and np.all(np.diff(idx) == -1):
        got = ds[int(idx[-1]):int(idx[0]) + 1, rows, cols][::-1]
        if out is None:
            return got
        out[...] = got
        return out
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [idx.size]])
    if out is None:
        if len(starts) == 1:
            return ds[int(idx[0]):int(idx[-1]) + 1, rows, cols]
        out = np.empty((idx.size,) + ds[0:1, rows, cols].shape[1:], ds.dtype)
    for a, b in zip(starts, stops, strict=True):
        where = np.s_[int(idx[a]):int(idx[b - 1]) + 1, rows, cols]
        if isinstance(ds, h5py.Dataset):
            ds.read_direct(out, where, np.s_[a:b])  # no temporary the size of the run
        else:
            out[a:b] = ds[where]
    return out


# -- opening ---------------------------------------------------------------------------------
def open_scan(path: str | os.PathLike, spec: InputSpec | None = None, **changes: Any) -> Scan:
    """Open a scan lazily and read-only — an HDF5 file (DXchange, NeXus) or TIFF files (a
    folder, a glob pattern, a multi-page file) — and validate its shapes, dtypes and angles.
    ``spec`` (with ``changes``) says where its pieces are where they are not found."""
    spec = dataclasses.replace(spec or InputSpec(), **changes)
    is_tiff = tiff.is_tiff_source(path)
    scan = Scan(path=Path(path), format="tiff" if is_tiff else "dxchange")
    f = None
    try:
        if is_tiff:
            _open_tiff(scan, spec)
        else:
            f = hdf5.open_file(path)
            scan._closers.append(f)
            scan.path = Path(f.filename)
            _open_hdf5(scan, f, spec)
        scan.metadata.update(read_metadata([c for c in scan._closers if isinstance(c, h5py.File)], scan._used,
                                           _nexus_entry(scan)))
        _resolve_theta(scan, f, spec)
        return scan
    except hdf5.HDF5_ERRORS as exc:
        scan.close()
        raise InputError(path, None, f"cannot read the file's HDF5 structure ({' '.join(str(exc).split())}): "
                                     "damaged, or not completely written") from None
    except BaseException:
        scan.close()
        raise


def _set_projections(scan: Scan, stack: Any, where: str, index: np.ndarray | None = None) -> None:
    scan._proj = Frames([(stack, index)])
    scan.n_proj = scan._proj.n
    scan.n_rows, scan.n_cols = int(stack.shape[1]), int(stack.shape[2])
    scan.dtype = np.dtype(stack.dtype)
    scan.data_path = where


# -- TIFF --------------------------------------------------------------------------------------
def _open_tiff(scan: Scan, spec: InputSpec) -> None:
    for flag, value in (("--data-path", spec.data_path), ("--image-key-path", spec.image_key_path),
                        ("--monitor-path", spec.monitor_path)):
        if value is not None:
            raise InputError(scan.path, None, f"{flag} {value}: a path inside an HDF5 scan, but the scan is "
                                              "TIFF files; leave it out")
    stack = tiff.TiffStack(scan.path, "projections")
    scan._closers.append(stack)
    validate.check_frames(stack, "projections")
    _set_projections(scan, stack, stack.name)
    scan._used.append(("projections", stack))
    scan.choices.append(Choice("projections", stack.source, stack.name))
    for role in ("flats", "darks"):
        side = spec.flat_file if role == "flats" else spec.dark_file
        if side is None:
            scan.field_sources[role] = f"none (TIFF stacks: give --{role[:-1]}-file)"
            continue
        _set_fields(scan, role, _side_frames(scan, side, spec, role))


# -- HDF5: DXchange and NeXus -------------------------------------------------------------------------
def _open_hdf5(scan: Scan, f: h5py.File, spec: InputSpec) -> None:
    layout = nexus.locate(f, spec.data_path, spec.image_key_path)
    entry = layout.entry
    frames = hdf5.dataset(f, entry.frames.path, "frames (frames, rows, columns)" if entry.keys
                          else "projections (angles, rows, columns)")
    scan.format = "nxtomo" if entry.keys else ("nexus" if layout.is_nexus else "dxchange")
    scan.choices.append(Choice("frames", entry.frames.path, entry.frames.why))
    scan._layout = layout
    if entry.keys is None:
        _set_projections(scan, frames, entry.frames.path)
        scan._used.append(("projections", frames))
    else:
        keys = entry.keys.values
        scan.choices.append(Choice("image keys", entry.keys.path, entry.keys.why))
        proj = np.flatnonzero(keys == nexus.PROJECTION)
        if proj.size == 0:
            raise InputError(f.filename, entry.keys.path, "no projection frames (image_key 0)")
        _set_projections(scan, frames, entry.frames.path, proj)
        scan._used += [("frames (projections, flats, darks)", frames), ("image_key", f[entry.keys.path])]
        for key in (nexus.ALIGNMENT, nexus.INVALID):
            n = int(np.count_nonzero(keys == key))
            if n:
                scan.notes.append(f"{n} {nexus.KEY_NAMES[key]} frame(s) of {entry.frames.path} ignored "
                                  f"(image key {key} in {entry.keys.path})")
    for role in ("flats", "darks"):
        side_file = spec.flat_file if role == "flats" else spec.dark_file
        side_path = spec.flat_path if role == "flats" else spec.dark_path
        if side_file is not None:
            got = _side_frames(scan, side_file, spec, role)
        elif side_path is not None:
            got = _dxchange_fields(scan, f, side_path, role, given=True)
        elif entry.keys is not None:
            got = _keyed(scan, f, layout, frames, scan._proj.parts[0][1], role)
        else:
            got = _dxchange_fields(scan, f, DXCHANGE_FIELDS[role], role, given=False)
        _set_fields(scan, role, got)
    _resolve_monitor(scan, f, spec, layout, frames.shape[0])


def _keyed(scan: Scan, f: h5py.File, layout: nexus.Layout, frames: h5py.Dataset, proj: np.ndarray,
           role: str) -> tuple[Frames, Frames | None, str, str] | None:
    """Flats (before and after the projections) or darks marked by the image keys: the
    projections' entry's own, else those of the entries that hold only flats and darks."""
    entry = layout.entry
    key = nexus.FLAT if role == "flats" else nexus.DARK
    own = np.flatnonzero(entry.keys.values == key)
    if own.size:
        why = f"image key {key} in {entry.keys.path}"
        if role == "darks":
            return Frames([(frames, own)]), None, entry.frames.path, why
        before, after = own[own < proj[-1]], own[own > proj[-1]]
        if before.size == 0:  # flats only after: they are the flats
            before, after = after, np.empty(0, int)
        middle = int(np.count_nonzero(before > proj[0]))
        if middle:
            scan.notes.append(f"{middle} flat(s) taken between projections are averaged with those taken "
                              "before the scan")
        return Frames([(frames, before)]), Frames([(frames, after)]) if after.size else None, entry.frames.path, why
    lent: dict[str, list[tuple[Any, np.ndarray]]] = {"before": [], "after": []}
    names = []
    for side, lenders in (("before", layout.before), ("after", layout.after)):
        for e in lenders:
            idx = np.flatnonzero(e.keys.values == key)
            if idx.size:
                ds = hdf5.dataset(f, e.frames.path, f"{role} of {e.name}")
                _check_frame_size(scan, ds, f.filename, e.frames.path, role)
                scan._used.append((role, ds))
                lent[side].append((ds, idx))
                names.append(e.frames.path)
    if not names:
        scan.field_sources[role] = f"none: no image key {key} frames ({entry.keys.path}, nor in other entries)"
        return None
    why = f"image key {key}: other entries of the acquisition ({entry.name} has no {role})"
    if role == "darks":
        return Frames(lent["before"] + lent["after"]), None, ", ".join(names), why
    after = Frames(lent["after"]) if lent["before"] and lent["after"] else None
    return Frames(lent["before"] or lent["after"]), after, ", ".join(names), why


def _dxchange_fields(scan: Scan, f: h5py.File, path: str, role: str, given: bool
                     ) -> tuple[Frames, Frames | None, str, str] | None:
    """Flats or darks at ``path`` of ``f`` (with ``<path>_post``: flats after the scan)."""
    if not given and hdf5.get(f, path, role) is None:
        scan.field_sources[role] = f"none at {path}"
        return None
    ds = hdf5.dataset(f, path, role)
    _check_frame_size(scan, ds, f.filename, path, role)
    scan._used.append((role, ds))
    after = None
    if role == "flats":
        post = f.get(path + "_post")
        if isinstance(post, h5py.Dataset) and post.ndim == 3 and post.shape[1:] == (scan.n_rows, scan.n_cols):
            validate.check_frames(post, "flats after the scan")
            after = Frames([(post, None)])
            scan._used.append(("flats after the scan", post))
    where = path if f.filename == str(scan.path) else f"{f.filename} [{path}]"
    flag = f"--{role[:-1]}-path" if f.filename == str(scan.path) else f"--{role[:-1]}-file"
    return Frames([(ds, None)]), after, where, f"given ({flag})" if given else "DXchange"


def _side_frames(scan: Scan, side: str, spec: InputSpec, role: str
                 ) -> tuple[Frames, Frames | None, str, str] | None:
    """Flats or darks from another file or folder: TIFF files, or an HDF5 file (the dataset
    given, else its DXchange path, else its frames of image key 1 or 2)."""
    if tiff.is_tiff_source(side):
        stack = tiff.TiffStack(side, role)
        scan._closers.append(stack)
        validate.check_frames(stack, role)
        _check_frame_size(scan, stack, stack.source, stack.name, role)
        scan._used.append((role, stack))
        return Frames([(stack, None)]), None, stack.source, f"given (--{role[:-1]}-file): {stack.name}"
    sf = hdf5.open_file(side, role)
    scan._closers.append(sf)
    path = spec.flat_path if role == "flats" else spec.dark_path
    if path is not None or hdf5.get(sf, DXCHANGE_FIELDS[role], role) is not None:
        return _dxchange_fields(scan, sf, path or DXCHANGE_FIELDS[role], role, given=True)
    if not nexus.is_nexus(sf):
        raise InputError(sf.filename, DXCHANGE_FIELDS[role], f"missing: expected the {role} here (or give "
                                                             f"--{role[:-1]}-path)")
    layout = nexus.locate(sf, None, None, lender=True)
    key = nexus.FLAT if role == "flats" else nexus.DARK
    ds = hdf5.dataset(sf, layout.entry.frames.path, role)
    _check_frame_size(scan, ds, sf.filename, layout.entry.frames.path, role)
    scan._used.append((role, ds))
    if layout.entry.keys is None:
        return (Frames([(ds, None)]), None, f"{sf.filename} [{layout.entry.frames.path}]",
                f"given (--{role[:-1]}-file): all its frames ({layout.entry.frames.why})")
    idx = np.flatnonzero(layout.entry.keys.values == key)
    if idx.size == 0:
        raise InputError(sf.filename, layout.entry.keys.path, f"no {role} (image key {key}) in this file's "
                                                              f"frames {layout.entry.frames.path}")
    return (Frames([(ds, idx)]), None, f"{sf.filename} [{layout.entry.frames.path}]",
            f"given (--{role[:-1]}-file): image key {key} in {layout.entry.keys.path}")


def _check_frame_size(scan: Scan, ds: Any, file: str, path: str, role: str) -> None:
    if tuple(ds.shape[1:]) != (scan.n_rows, scan.n_cols):
        raise InputError(file, path, f"{role} have frames of {ds.shape[1]} × {ds.shape[2]} (rows × columns), "
                                     f"but the projections in {scan.path} [{scan.data_path}] are "
                                     f"{scan.n_rows} × {scan.n_cols}")


def _set_fields(scan: Scan, role: str, got: tuple[Frames, Frames | None, str, str] | None) -> None:
    if got is None:
        return
    frames, after, where, why = got
    scan.field_sources[role] = where
    scan.choices.append(Choice(role, where, why))
    if role == "darks":
        scan._darks, scan.n_darks = frames, frames.n
        return
    scan._flats, scan.n_flats = frames, frames.n
    if after is not None and after.n:
        scan._flats_after, scan.n_flats_after = after, after.n


# -- instrument values ---------------------------------------------------------------------------
def _nexus_entry(scan: Scan) -> str | None:
    layout = scan._layout
    return layout.entry.name if layout is not None and layout.is_nexus else None


def read_metadata(files: list[h5py.File], used: list[tuple[str, Any]] | None = None,
                  entry: str | None = None) -> dict[str, Value]:
    """Instrument values found in ``files`` (first file first; in the first, also inside the
    NeXus ``entry``), in metres / keV / degrees; the datasets read are appended to ``used``."""
    candidates = {k: list(v) for k, v in METADATA_PATHS.items()}
    if entry is not None and files:
        for name, paths in nexus.metadata_paths(files[0], entry).items():
            candidates[name] += paths
    found: dict[str, Value] = {}
    for name, paths in candidates.items():
        for f in files:
            for path, kind, default_unit in paths:
                got = hdf5.scalar(f, path)
                if got is None:
                    continue
                value, unit, ds = got
                if kind is not None:
                    try:
                        value *= U.factor(unit, kind, default_unit or "")
                    except ValueError as exc:
                        raise InputError(f.filename, path, str(exc)) from None
                where = f"{path}" + (f" [{unit}]" if unit else f" [no units attribute: assumed {default_unit}]" if kind else "")
                found[name] = Value(value, where)
                if used is not None:
                    used.append(("metadata", ds))
                break
            if name in found:
                break
    return found


# -- beam monitor ---------------------------------------------------------------------------------
def _resolve_monitor(scan: Scan, f: h5py.File, spec: InputSpec, layout: nexus.Layout, n_frames: int) -> None:
    proj = scan._proj.parts[0][1]
    lengths = tuple(dict.fromkeys((n_frames, scan.n_proj)))
    if spec.monitor_path is not None:
        ds = hdf5.dataset(f, spec.monitor_path, "beam monitor (one value per frame)", ndim=1)
        found = nexus.Found(spec.monitor_path, "given (--monitor-path)")
    elif not layout.is_nexus:
        ds = next((o for o in map(f.get, I0_PATHS) if isinstance(o, h5py.Dataset) and o.ndim == 1
                   and o.size >= scan.n_proj and o.dtype.kind in "iuf"), None)
        if ds is None:
            return
        found = nexus.Found(ds.name, "DXchange beam monitor")
    else:
        found, note = nexus.monitor(f, layout.entry, lengths)
        if note:
            scan.notes.append(f"beam monitor: {note}")
        if found is None:
            return
        ds = f[found.path]
    if ds.dtype.kind not in "iuf":
        raise InputError(f.filename, found.path, f"holds {validate.describe_dtype(ds.dtype)}; expected the beam "
                                                 "monitor's readings as numbers")
    values = np.asarray(ds[()], np.float64)
    scan.i0 = _per_projection(values, n_frames, proj, scan, f.filename, found.path, "beam monitor readings",
                              allow_longer=not layout.is_nexus and spec.monitor_path is None)
    scan.i0_source = found.path
    scan._used.append(("beam monitor", ds))
    scan.choices.append(Choice("beam monitor", found.path, found.why))


def _per_projection(values: np.ndarray, n_frames: int, proj: np.ndarray, scan: Scan, file: str, where: str,
                    what: str, allow_longer: bool = False) -> np.ndarray:
    """One value per projection from a series with one per frame (flats and darks dropped) or
    one per projection."""
    if values.shape[0] == n_frames and n_frames != scan.n_proj:
        return values[proj]
    if values.shape[0] == scan.n_proj or (allow_longer and values.shape[0] > scan.n_proj):
        return values[:scan.n_proj]
    frames = f"{n_frames} frames ({scan.n_proj} projections)" if n_frames != scan.n_proj else f"{n_frames} projections"
    raise InputError(file, where, f"has {values.shape[0]} {what} for {frames}; expected one per frame or "
                                  "one per projection")


# -- angles ----------------------------------------------------------------------------------------
def _resolve_theta(scan: Scan, f: h5py.File | None, spec: InputSpec) -> None:
    _read_theta(scan, f, spec)
    if scan._theta_read is None:  # equally spaced from start and end, which are in degrees
        validate.check_angles(scan.theta_deg, scan.path, scan.theta_source, "deg",
                              "the start and end are in degrees")
        scan.choices.append(Choice("angles", "computed", scan.theta_source))
    else:
        validate.check_angles(scan.theta_deg, *scan._theta_read)


def _read_theta(scan: Scan, f: h5py.File | None, spec: InputSpec) -> None:
    layout = scan._layout
    n_frames = scan._proj.parts[0][0].shape[0]
    proj = scan._proj.parts[0][1]
    if spec.theta_source == "calc":
        return _calc_theta(scan, spec, "parameters")
    found = None
    if spec.angles_file is not None:
        values, unit, where, file, ds = _angles_file(scan, spec)
        dxchange = ds is not None and ds.name == "/exchange/theta"
    else:
        if spec.angles_path is not None:
            found = nexus.Found(spec.angles_path, "given (--angles-path)")
        elif f is not None and layout is not None and not layout.is_nexus and "exchange/theta" in f:
            found = nexus.Found("/exchange/theta", "DXchange")
        elif f is not None and layout is not None and layout.is_nexus:
            found = nexus.angles(f, layout.entry, tuple(dict.fromkeys((n_frames, scan.n_proj))))
        if found is None:
            if spec.angles_path is None and scan.format == "tiff" and spec.theta_end_deg is None:
                raise InputError(scan.path, None, "TIFF files carry no angles: give --angles-file FILE (one "
                                                  "angle per projection) or --theta-start-deg/--theta-end-deg")
            return _calc_theta(scan, spec, "default")
        if f is None:
            raise InputError(scan.path, None, "--angles-path reads an HDF5 scan; for TIFF files give "
                                              "--angles-file")
        ds = hdf5.dataset(f, found.path, "rotation angles", ndim=None)
        values, unit, where, file = ds[()], hdf5.unit(ds), found.path, f.filename
        dxchange = found.path == "/exchange/theta" and spec.angles_path is None
    attribute = unit
    dataset = None if ds is None else where
    values = np.asarray(values)
    n_values = values.shape[0] if values.ndim else 1
    if values.ndim == 1:  # the angles of flats and darks are not used, nor checked
        values = _per_projection(values, n_frames, proj, scan, file, dataset, "angles")
    unit, how = _angle_unit(values, attribute, spec.angles_unit, dxchange, file, where)
    theta = validate.angles_to_degrees(values, unit, file, dataset, default_unit="deg")
    scan.theta_deg = theta
    scan.theta_source = f"{where} [{how}]"
    why_unit = (f"--angles-unit says {unit!r}" if spec.angles_unit else
                f"the units attribute says {unit!r}" if attribute else "no units attribute says otherwise")
    scan._theta_read = (file, dataset, unit, why_unit)
    if ds is not None:
        scan._used.append(("angles", ds))
    why = found.why if spec.angles_file is None else "given (--angles-file)"
    if n_frames != scan.n_proj and n_values == n_frames:
        why += f"; the {n_frames - scan.n_proj} angles of other frames (flats, darks) are not used"
    scan.choices.append(Choice("angles", where, f"{why}; unit {how}"))


def _angles_file(scan: Scan, spec: InputSpec) -> tuple[np.ndarray, str | None, str, str, h5py.Dataset | None]:
    """(values, unit attribute, where, file, dataset or None) of ``--angles-file``: an HDF5 file
    (at ``--angles-path``, default /exchange/theta) or text, one angle per projection."""
    path = Path(spec.angles_file).absolute()
    if not path.is_file():
        raise InputError(path, None, "angles file does not exist" if not path.exists() else
                         "angles file is not a file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise InputError(path, None, f"cannot read the angles file ({exc.strerror or exc})") from None
    if is_hdf5:
        af = hdf5.open_file(path, "angles")
        scan._closers.append(af)
        where = spec.angles_path or "/exchange/theta"
        ds = hdf5.dataset(af, where, "rotation angles", ndim=None)
        return ds[()], hdf5.unit(ds), where, str(path), ds
    try:
        values = np.loadtxt(path, ndmin=1, comments="#", delimiter=None).ravel()
    except ValueError as exc:
        raise InputError(path, None, f"not a text file of numbers ({exc}); expected one angle per "
                                     "projection, a line each") from None
    scan._other_files.append(DataFile("angles", str(path), "text"))
    return values, None, str(path), str(path), None


def _angle_unit(values: np.ndarray, attribute: str | None, given: str | None, dxchange: bool,
                file: object, where: str) -> tuple[str | None, str]:
    """The unit to read angles in and why: ``--angles-unit``, else the units attribute, else
    degrees for DXchange's /exchange/theta.  Other angles without a unit are refused: NeXus
    requires one, and 90…270 could as well be several turns in radians."""
    if given is not None:
        differs = attribute is not None and U.factor(attribute, "angle", "deg") != U.factor(given, "angle", "deg")
        return given, f"{given}: --angles-unit" + (f", overriding the units attribute {attribute!r}" if differs else "")
    if attribute is not None:
        return attribute, attribute
    if dxchange:
        return None, "no units attribute: degrees, as DXchange defines"
    v = np.asarray(values)
    if v.dtype.kind not in "iuf" or v.size == 0 or not np.all(np.isfinite(v)):
        return None, "no units attribute"  # angles_to_degrees says what is wrong with them
    lo, hi = float(v.min()), float(v.max())
    guess = ("beyond 2π, so not one turn in radians: degrees?" if hi - lo > validate.RADIAN_SPAN_DEG
             else "within 2π: radians?")
    raise InputError(file, None if str(file) == where else where,
                     f"the angles have no unit (no units attribute) and run from {lo:g} to {hi:g} ({guess}); "
                     "give --angles-unit deg or rad")


def _calc_theta(scan: Scan, spec: InputSpec, how: str) -> None:
    """Angles equally spaced from start to end (exclusive), in degrees."""
    scan._theta_read = None
    md = scan.metadata
    start, end = spec.theta_start_deg, spec.theta_end_deg
    if start is None and "rotation_start_deg" in md:
        start = md["rotation_start_deg"].value
    if end is None and "rotation_end_deg" in md:
        end = md["rotation_end_deg"].value
    if spec.theta_start_deg is not None or spec.theta_end_deg is not None:
        how = "parameters"
    if start is None:
        start, how = 0.0, "default"
    if end is None:
        end, how = start + 180.0, "default"
    elif "rotation_end_deg" in md and spec.theta_end_deg is None:
        how = ", ".join(md[k].source.split(" ")[0] for k in ("rotation_start_deg", "rotation_end_deg") if k in md)
    # end is exclusive: the last projection is one step short of it, as in tomopy.angles
    scan.theta_deg = start + (end - start) * np.arange(scan.n_proj) / scan.n_proj
    scan.theta_source = f"equally spaced over {start:g}..{end:g}° ({how})"
