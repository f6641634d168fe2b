"""Lazy, read-only readers for DXchange and NeXus NXtomo scans.

A :class:`Scan` never loads a whole stack: projections, flats and darks are read
by h5py slicing, a block of projections and detector rows at a time.  Instrument
values are looked up at the DXchange paths and the DanMAX variants, with their
``units`` attributes honoured and converted to metres / keV / degrees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teravox.errors import InputError
from teravox.io import units as U
from teravox.io import validate

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
#: What h5py raises when an HDF5 file's own structure (not our reading of it) is damaged.
_HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)

I0_PATHS = ["/measurement/instrument/beam_monitor/data", "/instrument/beam_monitor/data",
            "/measurement/instrument/beam_monitor/current"]


@dataclass
class Value:
    """An instrument value in teravox's unit and where it was found."""

    value: float
    source: str


@dataclass(frozen=True)
class DataFile:
    """A file a scan reads, the dataset in it, and how it is reached from the scan file."""

    role: str           # "projections", "flats", "angles", ...
    file: str           # absolute path
    dataset: str
    via: str = ""       # "" (the scan file, or a file given as a parameter), "external link",
    #                     or "virtual source of <dataset>"


@dataclass
class Scan:
    """An open scan.  Use as a context manager, or call :meth:`close`."""

    path: Path
    format: str                       # "dxchange" or "nxtomo"
    n_proj: int
    n_rows: int
    n_cols: int
    dtype: np.dtype
    theta_deg: np.ndarray             # (n_proj,) degrees
    theta_source: str                 # where the angles came from
    metadata: dict[str, Value] = field(default_factory=dict)
    i0: np.ndarray | None = None      # beam monitor per projection
    i0_source: str | None = None
    n_flats: int = 0
    n_flats_after: int = 0
    n_darks: int = 0
    data_path: str = "/exchange/data"
    _files: list[h5py.File] = field(default_factory=list, repr=False)
    _data: Any = field(default=None, repr=False)
    _flats: Any = field(default=None, repr=False)
    _flats_after: Any = field(default=None, repr=False)
    _darks: Any = field(default=None, repr=False)
    _fields_cache: tuple[tuple, tuple] | None = field(default=None, repr=False)
    _used: list[tuple[str, h5py.Dataset]] = field(default_factory=list, repr=False)  # role, dataset
    _theta_read: tuple[str, str | None] | None = field(default=None, repr=False)  # file angles: dataset, units
    # NXtomo keeps all frames in one stack: these map our indices to frame indices
    _proj_frames: np.ndarray | None = field(default=None, repr=False)
    _flat_frames: np.ndarray | None = field(default=None, repr=False)
    _flat_after_frames: np.ndarray | None = field(default=None, repr=False)
    _dark_frames: np.ndarray | None = field(default=None, repr=False)

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        for f in self._files:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing twice or a dead handle is harmless
                pass
        self._files.clear()

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
        return self._read(self._data, self._proj_frames, index, rows, cols, "projections", out)

    def read_flats(self, rows: slice = slice(None), cols: slice = slice(None), after: bool = False) -> np.ndarray:
        """All flat fields (before the scan, or after it) for the given rows and columns."""
        if after:
            if not self.n_flats_after:
                raise InputError(self.path, None, "no flats after the scan")
            return self._read(self._flats_after, self._flat_after_frames, slice(None), rows, cols, "flats")
        if not self.n_flats:
            raise InputError(self.path, None, "no flat fields found")
        return self._read(self._flats, self._flat_frames, slice(None), rows, cols, "flats")

    def read_darks(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        if not self.n_darks:
            raise InputError(self.path, None, "no dark fields found")
        return self._read(self._darks, self._dark_frames, slice(None), rows, cols, "darks")

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

    def _read(self, ds: Any, frames: np.ndarray | None, index: slice | np.ndarray,
              rows: slice, cols: slice, what: str, out: np.ndarray | None = None) -> np.ndarray:
        try:
            if frames is None:
                if isinstance(index, slice):
                    if out is None:
                        return ds[index, rows, cols]
                    index = np.arange(*index.indices(ds.shape[0]))
                return _read_frames(ds, np.asarray(index), rows, cols, out)
            sel = frames[index]
            return _read_frames(ds, sel, rows, cols, out)
        except (OSError, KeyError, RuntimeError) as exc:
            raise InputError(self.path, getattr(ds, "name", None), f"cannot read {what} ({exc})") from None

    # -- what the scan reads ----------------------------------------------------------------
    def datasets(self) -> list[tuple[str, h5py.Dataset]]:
        """(role, dataset) of every dataset this scan reads, each once."""
        out: dict[tuple[str, str], tuple[str, h5py.Dataset]] = {}
        for role, ds in self._used:
            key = (ds.file.filename, ds.name)
            out[key] = (f"{out[key][0]}, {role}", ds) if key in out and role not in out[key][0] else (role, ds)
        return list(out.values())

    def data_files(self) -> list[DataFile]:
        """Every file the scan reads: its datasets' files, the targets of external links and
        the sources of virtual datasets, wherever they are."""
        out: list[DataFile] = []
        scan_file = str(self.path.resolve())
        given = {scan_file, *(str(Path(f.filename).resolve()) for f in self._files)}
        for role, ds in self.datasets():
            file = str(Path(ds.file.filename).resolve())
            out.append(DataFile(role, file, ds.name, "" if file in given else "external link"))
            for src in validate.virtual_sources(ds):
                where = str(src.path) if src.path else f"{src.written} (missing)"
                out.append(DataFile(role, where, src.dataset, f"virtual source of {ds.name}"))
        return out


def _read_frames(ds: Any, idx: np.ndarray, rows: slice, cols: slice,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Read frames ``idx`` (any order) as runs of consecutive frames (h5py is fast on slices,
    slow on lists), each straight into its place in ``out`` (allocated when None; ascending
    indices that form one run come back as h5py reads them)."""
    if idx.size == 0:
        return out if out is not None else np.empty((0,) + ds[0:1, rows, cols].shape[1:], ds.dtype)
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [idx.size]])
    if out is None:
        if len(starts) == 1:
            return ds[int(idx[0]):int(idx[-1]) + 1, rows, cols]
        out = np.empty((idx.size,) + ds[0:1, rows, cols].shape[1:], ds.dtype)
    for a, b in zip(starts, stops, strict=True):
        ds.read_direct(out, np.s_[int(idx[a]):int(idx[b - 1]) + 1, rows, cols], np.s_[a:b])
    return out


# ---------------------------------------------------------------------------------------
def _open_h5(path: str | os.PathLike, role: str = "scan") -> h5py.File:
    p = Path(path)
    if not p.exists():
        raise InputError(p, None, f"{role} file does not exist")
    if p.is_dir():
        raise InputError(p, None, f"{role} path is a directory, expected an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise InputError(p, None, f"cannot read {role} file ({exc.strerror or exc})") from None
    if not is_hdf5:
        raise InputError(p, None, f"not an HDF5 file (expected a DXchange or NXtomo {role})")
    try:
        return h5py.File(p, "r")  # read-only: raw data is never modified
    except OSError as exc:
        raise InputError(p, None, f"cannot open {role} file ({exc})") from None


def _get(f: h5py.File, path: str, what: str) -> Any:
    """``f.get(path)``; an external link on the way that cannot be followed is an error naming it
    (h5py's ``get`` would say None, as for a path that is not there)."""
    error = None
    try:
        obj = f.get(path)
    except _HDF5_ERRORS as exc:
        obj, error = None, exc
    if obj is not None:
        return obj
    broken = _broken_link(f, path)
    if broken is not None:
        sub, link = broken
        target = Path(link.filename)
        target = target if target.is_absolute() else Path(f.filename).parent / target
        problem = "the file is missing" if not target.exists() else "cannot be opened"
        raise InputError(f.filename, sub, f"external link to {link.filename} [{link.path}]: {problem}; "
                                          f"expected the {what} there")
    if error is not None:
        raise InputError(f.filename, path, f"cannot be read ({' '.join(str(error).split())}); "
                                           f"expected the {what} here")
    return None


def _broken_link(f: h5py.File, path: str) -> tuple[str, h5py.ExternalLink] | None:
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/" + "/".join(parts[:i])
        try:
            link = f.get(sub, getlink=True)
        except _HDF5_ERRORS:
            return None
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            try:
                f[sub]
            except _HDF5_ERRORS:
                return sub, link
    return None


def _dataset(f: h5py.File, path: str, what: str, ndim: int | None = 3) -> h5py.Dataset:
    obj = _get(f, path, what)
    if obj is None:
        raise InputError(f.filename, path, f"missing: expected the {what} here")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f.filename, path, f"is a group, expected the {what} as a dataset")
    if ndim == 3:
        validate.check_frames(obj, what)
        return obj
    if ndim is not None and obj.ndim != ndim:
        raise InputError(f.filename, path, f"has shape {obj.shape}, expected a {ndim}-D stack of {what}")
    if obj.size == 0:
        raise InputError(f.filename, path, f"is empty (shape {obj.shape}), expected {what}")
    return obj


def _unit(ds: h5py.Dataset) -> str | None:
    unit = ds.attrs.get("units", ds.attrs.get("unit"))
    if isinstance(unit, np.ndarray):
        unit = unit.ravel()[0] if unit.size else None
    if isinstance(unit, bytes):
        unit = unit.decode(errors="replace")
    return None if unit is None else str(unit)


def _scalar(f: h5py.File, path: str) -> tuple[float, str | None, h5py.Dataset] | None:
    obj = f.get(path)
    if not isinstance(obj, h5py.Dataset) or obj.size == 0:
        return None
    try:
        raw = obj[()]
        value = float(np.ravel(raw)[0]) if np.ndim(raw) else float(raw)
    except (TypeError, ValueError):
        return None
    return value, _unit(obj), obj


def read_metadata(files: list[h5py.File], used: list[tuple[str, h5py.Dataset]] | None = None
                  ) -> dict[str, Value]:
    """Instrument values found in ``files`` (first file first), in metres / keV / degrees;
    the datasets read are appended to ``used`` as ("metadata", dataset)."""
    found: dict[str, Value] = {}
    for name, candidates in METADATA_PATHS.items():
        for f in files:
            for path, kind, default_unit in candidates:
                got = _scalar(f, path)
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


def _read_i0(f: h5py.File, n: int) -> tuple[np.ndarray | None, str | None, h5py.Dataset | None]:
    for path in I0_PATHS:
        obj = f.get(path)
        if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.size >= n and obj.dtype.kind in "iuf":
            return np.asarray(obj[:n], dtype=np.float64), path, obj
    return None, None, None


def open_scan(path: str | os.PathLike, *, data_path: str = "/exchange/data",
              flat_file: str | None = None, flat_path: str = "/exchange/data_white",
              dark_file: str | None = None, dark_path: str = "/exchange/data_dark",
              theta_source: str = "file", theta_start_deg: float | None = None,
              theta_end_deg: float | None = None) -> Scan:
    """Open a DXchange or NXtomo scan lazily and read-only; validate its shapes, dtypes and angles."""
    f = _open_h5(path)
    scan = None
    try:
        if data_path == "/exchange/data" and "exchange/data" not in f and _is_nxtomo(f):
            scan = _open_nxtomo(f)
        else:
            scan = _open_dxchange(f, data_path, flat_file, flat_path, dark_file, dark_path)
        scan.metadata.update(read_metadata(scan._files, scan._used))
        _resolve_theta(scan, f, theta_source, theta_start_deg, theta_end_deg)
        if scan.format == "dxchange":
            scan.i0, scan.i0_source, i0_ds = _read_i0(f, scan.n_proj)
            if i0_ds is not None:
                scan._used.append(("beam monitor", i0_ds))
        return scan
    except _HDF5_ERRORS as exc:
        _close(scan, f)
        raise InputError(path, None, f"cannot read the file's HDF5 structure ({' '.join(str(exc).split())}): "
                                     "damaged, or not completely written") from None
    except BaseException:
        _close(scan, f)
        raise


def _close(scan: Scan | None, f: h5py.File) -> None:
    if scan is not None:
        scan.close()
    f.close()


def _open_dxchange(f: h5py.File, data_path: str, flat_file: str | None, flat_path: str,
                   dark_file: str | None, dark_path: str) -> Scan:
    data = _dataset(f, data_path, "projections (angles, rows, columns)")
    n_proj, n_rows, n_cols = data.shape
    scan = Scan(path=Path(f.filename), format="dxchange", n_proj=n_proj, n_rows=n_rows,
                n_cols=n_cols, dtype=data.dtype, theta_deg=np.empty(0), theta_source="",
                data_path=data_path, _files=[f], _data=data, _used=[("projections", data)])
    for role, side_file, side_path in (("flats", flat_file, flat_path), ("darks", dark_file, dark_path)):
        sf = f
        if side_file:
            sf = _open_h5(side_file, role)
            scan._files.append(sf)
        if _get(sf, side_path, role) is None:
            if side_file:
                raise InputError(sf.filename, side_path, f"missing: expected the {role} here")
            continue
        ds = _dataset(sf, side_path, role)
        if ds.shape[1:] != (n_rows, n_cols):
            raise InputError(sf.filename, side_path,
                             f"{role} have frames of {ds.shape[1]} × {ds.shape[2]} (rows × columns), "
                             f"but the projections in {f.filename} [{data_path}] are {n_rows} × {n_cols}")
        scan._used.append((role, ds))
        if role == "flats":
            scan._flats, scan.n_flats = ds, ds.shape[0]
            post = sf.get(side_path + "_post")
            if isinstance(post, h5py.Dataset) and post.ndim == 3 and post.shape[1:] == (n_rows, n_cols):
                validate.check_frames(post, "flats after the scan")
                scan._flats_after, scan.n_flats_after = post, post.shape[0]
                scan._used.append(("flats after the scan", post))
        else:
            scan._darks, scan.n_darks = ds, ds.shape[0]
    return scan


def _is_nxtomo(f: h5py.File) -> bool:
    return _nx_entry(f) is not None


def _nx_entry(f: h5py.File) -> str | None:
    for name, obj in f.items():
        if isinstance(obj, h5py.Group):
            d = obj.get("definition")
            if isinstance(d, h5py.Dataset):
                v = d[()]
                v = v.decode() if isinstance(v, bytes) else str(v)
                if v.strip() == "NXtomo":
                    return name
            if "data" in obj and isinstance(obj.get("data"), h5py.Group) and "image_key" in obj["data"]:
                return name
    return None


def _open_nxtomo(f: h5py.File) -> Scan:
    entry = _nx_entry(f)
    assert entry is not None
    base = f"/{entry}"
    grp = f[base]
    # Diamond writes /entry/data/{data,image_key,rotation_angle}; ESRF the same under instrument/detector
    candidates = [f"{base}/data", f"{base}/instrument/detector"]
    where = next((c for c in candidates if c in f and "image_key" in f[c] and "data" in f[c]), None)
    if where is None:
        raise InputError(f.filename, f"{base}/data", "NXtomo entry without data and image_key")
    frames = _dataset(f, f"{where}/data", "frames (frames, rows, columns)")
    key_ds = _dataset(f, f"{where}/image_key", "image_key", ndim=1)
    if key_ds.dtype.kind not in "iu":
        raise InputError(f.filename, key_ds.name, f"holds {validate.describe_dtype(key_ds.dtype)}; expected "
                                                  "integers (0 projection, 1 flat, 2 dark)")
    key = np.asarray(key_ds[()]).astype(int)
    if key.shape[0] != frames.shape[0]:
        raise InputError(f.filename, f"{where}/image_key",
                         f"has {key.shape[0]} entries for {frames.shape[0]} frames")
    proj = np.flatnonzero(key == 0)
    if proj.size == 0:
        raise InputError(f.filename, f"{where}/image_key", "no projection frames (image_key 0)")
    flats = np.flatnonzero(key == 1)
    darks = np.flatnonzero(key == 2)
    before, after = flats[flats < proj[0]], flats[flats > proj[-1]]
    if before.size == 0:  # flats only after: use them as the flats
        before, after = after, np.empty(0, int)
    _, n_rows, n_cols = frames.shape
    scan = Scan(path=Path(f.filename), format="nxtomo", n_proj=proj.size, n_rows=n_rows,
                n_cols=n_cols, dtype=frames.dtype, theta_deg=np.empty(0), theta_source="",
                data_path=f"{where}/data", _files=[f], _data=frames, _flats=frames,
                _flats_after=frames, _darks=frames, _proj_frames=proj, _flat_frames=before,
                _flat_after_frames=after, _dark_frames=darks, n_flats=before.size,
                n_flats_after=after.size, n_darks=darks.size,
                _used=[("frames (projections, flats, darks)", frames), ("image_key", key_ds)])
    angle_path = next((p for p in (f"{where}/rotation_angle", f"{base}/sample/rotation_angle")
                       if p in f), None)
    if angle_path is not None:
        ds = _dataset(f, angle_path, "rotation angles", ndim=None)
        unit = _unit(ds)
        angles = validate.angles_to_degrees(ds[()], unit, f.filename, angle_path, default_unit="degree")
        if angles.shape[0] != frames.shape[0]:
            raise InputError(f.filename, angle_path,
                             f"has {angles.shape[0]} angles for {frames.shape[0]} frames")
        scan.theta_deg = angles[proj]
        scan.theta_source = f"{angle_path} [{unit or 'no units attribute: assumed degree'}]"
        scan._theta_read = (angle_path, unit)
        scan._used.append(("angles", ds))
    monitor = grp.get("control/data")
    if (isinstance(monitor, h5py.Dataset) and monitor.ndim == 1 and monitor.shape[0] == frames.shape[0]
            and monitor.dtype.kind in "iuf"):
        scan.i0, scan.i0_source = np.asarray(monitor[()], float)[proj], monitor.name
        scan._used.append(("beam monitor", monitor))
    return scan


def _resolve_theta(scan: Scan, f: h5py.File, source: str, start: float | None, end: float | None) -> None:
    _read_theta(scan, f, source, start, end)
    if scan._theta_read is None:  # equally spaced from start and end, which are in degrees
        validate.check_angles(scan.theta_deg, scan.path, scan.theta_source, "deg",
                              "the start and end are in degrees")
    else:
        dataset, unit = scan._theta_read
        validate.check_angles(scan.theta_deg, scan.path, dataset, unit,
                              f"the units attribute says {unit!r}" if unit else "no units attribute says otherwise")


def _read_theta(scan: Scan, f: h5py.File, source: str, start: float | None, end: float | None) -> None:
    n = scan.n_proj
    if source == "calc" or (scan.theta_source == "" and "exchange/theta" not in f):
        scan._theta_read = None  # the file's angles, if any, are not used
        scan._used = [(role, ds) for role, ds in scan._used if role != "angles"]
        md = scan.metadata
        if start is None and "rotation_start_deg" in md:
            start = md["rotation_start_deg"].value
        if end is None and "rotation_end_deg" in md:
            end = md["rotation_end_deg"].value
        how = "parameters"
        if start is None:
            start, how = 0.0, "default"
        if end is None:
            end, how = start + 180.0, "default"
        elif "rotation_end_deg" in md and source != "calc":
            how = ", ".join(md[k].source.split(" ")[0] for k in ("rotation_start_deg", "rotation_end_deg") if k in md)
        # end is exclusive: the last projection is one step short of it, as in tomopy.angles
        scan.theta_deg = start + (end - start) * np.arange(n) / n
        scan.theta_source = (f"equally spaced over {start:g}..{end:g}° ({how})")
        return
    if scan.theta_source:  # NXtomo set it
        return
    ds = _dataset(f, "/exchange/theta", "angles in degrees", ndim=None)
    unit = _unit(ds)
    theta = validate.angles_to_degrees(ds[()], unit, f.filename, "/exchange/theta")
    if theta.shape[0] != n:
        raise InputError(f.filename, "/exchange/theta",
                         f"has {theta.shape[0]} angles but {scan.data_path} has {n} projections")
    scan.theta_deg = theta
    scan.theta_source = "/exchange/theta" + (f" [{unit}]" if unit else " [no units attribute: assumed degrees]")
    scan._theta_read = ("/exchange/theta", unit)
    scan._used.append(("angles", ds))
