"""Where a NeXus file keeps its frames, image keys, angles and beam monitor.

Followed, in this order of trust: the file's and the entry's ``default`` attributes, an
NXdata group's ``signal``, ``axes`` and ``<axis>_indices`` attributes, the ``NX_class`` of
groups (NXentry, NXdata, NXinstrument/NXdetector, NXsample, NXmonitor), and the names
NXtomo gives (``image_key``, ``image_key_control``, ``rotation_angle``).  Each finding
says why it was chosen.  Two candidates of the same trust that differ are refused with
both named and the parameter that picks one: a guess could reconstruct the wrong data.

Facilities' layouts this covers: Diamond (frames behind an external link in an NXdata
group whose ``axes`` name the rotation motor's recorded values; keys in the
NXdetector), ESRF/nxtomomill (``image_key_control`` beside ``image_key``, one acquisition
split over several NXtomo entries), and the textbook NXtomo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from teravox.errors import InputError
from teravox.io import hdf5
from teravox.io import units as U

#: image_key values (NXtomo); image_key_control adds -1 for alignment frames
PROJECTION, FLAT, DARK, INVALID, ALIGNMENT = 0, 1, 2, 3, -1
KEY_NAMES = {PROJECTION: "projection", FLAT: "flat", DARK: "dark", INVALID: "invalid", ALIGNMENT: "alignment"}


@dataclass(frozen=True)
class Found:
    """A dataset the reader uses and why it was chosen."""

    path: str
    why: str


@dataclass
class Keys:
    """The image key of a frame stack."""

    path: str
    why: str
    values: np.ndarray


@dataclass
class Entry:
    """One NXentry's frame stack, with its image key."""

    name: str           # "/entry"
    frames: Found
    nxdata: str | None  # the NXdata group that names the frames (for its axes)
    keys: Keys | None = None
    start_time: str | None = None

    @property
    def has_projections(self) -> bool:
        return self.keys is None or bool(np.any(self.keys.values == PROJECTION))


@dataclass
class Layout:
    """Where an HDF5 file keeps a scan: the projections' entry and the other entries of the
    same acquisition that hold only flats and darks (``before``/``after`` it)."""

    entry: Entry
    is_nexus: bool
    before: list[Entry] = field(default_factory=list)
    after: list[Entry] = field(default_factory=list)


# -- attributes and groups ------------------------------------------------------------------------
def nx_class(obj: Any) -> str:
    return (hdf5.attr_text(obj, "NX_class") or "") if obj is not None else ""


def _child(f: h5py.File, group: str, name: str, what: str) -> Any:
    """The object ``group/name``; a broken external link is an error naming it."""
    return hdf5.get(f, f"{group.rstrip('/')}/{name}", what)


def _groups(f: h5py.File, group: str, cls: str) -> list[str]:
    """Paths of the child groups of ``group`` whose NX_class is ``cls``."""
    g = f.get(group)
    out = []
    if not isinstance(g, h5py.Group):
        return out
    for name in g:
        try:
            obj = g.get(name)
        except hdf5.HDF5_ERRORS:
            continue  # a broken link to a group: nothing of ours behind it, or found by name
        if isinstance(obj, h5py.Group) and nx_class(obj) == cls:
            out.append(f"{group.rstrip('/')}/{name}")
    return out


def entries(f: h5py.File) -> list[str]:
    """The NXentry groups (or groups with a ``definition``) at the top of the file."""
    out = []
    for name in f:
        try:
            obj = f.get(name)
        except hdf5.HDF5_ERRORS:
            continue
        if isinstance(obj, h5py.Group) and (nx_class(obj) == "NXentry" or "definition" in obj):
            out.append(f"/{name}")
    return out


def is_nexus(f: h5py.File) -> bool:
    return bool(entries(f))


def _text(f: h5py.File, path: str) -> str | None:
    obj = f.get(path)
    if not isinstance(obj, h5py.Dataset):
        return None
    v = obj[()]
    v = v.ravel()[0] if isinstance(v, np.ndarray) and v.size else v
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _axes(group: h5py.Group) -> list[str]:
    """Names of an NXdata group's axes along the first dimension (``axes`` attribute position 0,
    and every ``<name>_indices`` equal to 0)."""
    names = []
    raw = group.attrs.get("axes")
    if raw is not None:
        items = [raw] if isinstance(raw, (str, bytes)) else list(np.ravel(raw))
        items = [i.decode() if isinstance(i, bytes) else str(i) for i in items]
        if len(items) == 1:
            items = re.split(r"[,:]", items[0])
        if items and items[0].strip() not in ("", "."):
            names.append(items[0].strip())
    for key, value in group.attrs.items():
        if key.endswith("_indices") and np.ravel(value).tolist() == [0]:
            name = key[: -len("_indices")]
            if name not in names:
                names.append(name)
    return names


def _same(a: h5py.Dataset, b: h5py.Dataset) -> bool:
    return a == b  # one object, reached by two (hard or external) links


# -- frames ---------------------------------------------------------------------------------------
def _signal(f: h5py.File, group: str) -> tuple[str, h5py.Dataset] | None:
    """(path, dataset) of an NXdata group's signal (``signal`` attribute, or NeXus' older
    ``signal=1`` on the dataset, or ``data``) when it is a 3-D stack; a broken external link
    is an error."""
    g = f[group]
    name = hdf5.attr_text(g, "signal")
    if name is None:
        name = next((n for n in g if _signal_flag(g, n)), "data" if "data" in g else None)
    if name is None:
        return None
    obj = _child(f, group, name, "frames")
    return (f"{group}/{name}", obj) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None


def _signal_flag(g: h5py.Group, name: str) -> bool:
    try:
        obj = g.get(name)
    except hdf5.HDF5_ERRORS:
        return False
    return isinstance(obj, h5py.Dataset) and str(hdf5.attr_text(obj, "signal")) == "1"


def _unique(cands: list[tuple[Found, str | None, h5py.Dataset]], what: str, f: h5py.File
            ) -> tuple[Found, str | None] | None:
    """The one stack among ``cands`` (links to one dataset count once); several: refused."""
    distinct: list[tuple[Found, str | None, h5py.Dataset]] = []
    for c in cands:
        if not any(_same(c[2], d[2]) for d in distinct):
            distinct.append(c)
    if len(distinct) > 1:
        raise _ambiguous(f.filename, what, [c[0] for c in distinct], "--data-path")
    return (distinct[0][0], distinct[0][1]) if distinct else None


def _entry_frames(f: h5py.File, entry: str) -> tuple[Found, str | None] | None:
    """An entry's frame stack and its NXdata group, by trust: the signal of the entry's
    default NXdata; of any NXdata; an NXdetector's data."""
    nxdata = _groups(f, entry, "NXdata")
    if not nxdata and isinstance(f.get(f"{entry}/data"), h5py.Group):
        nxdata = [f"{entry}/data"]  # written without NX_class
    default = hdf5.attr_text(f[entry], "default")
    default = f"{entry}/{default.strip('/')}" if default else None
    if default in nxdata:
        got = _signal(f, default)
        if got is not None:
            return Found(got[0], f"signal of the NXdata group {default} (the entry's default)"), default
    signals = []
    for group in nxdata:
        got = _signal(f, group)
        if got is not None:
            signals.append((Found(got[0], f"signal of the NXdata group {group}"), group, got[1]))
    got = _unique(signals, "frame stacks", f)
    if got is not None:
        return got
    dets = []
    for inst in _groups(f, entry, "NXinstrument") or [f"{entry}/instrument"]:
        for det in _groups(f, inst, "NXdetector") or ([f"{inst}/detector"] if f.get(f"{inst}/detector") else []):
            obj = _child(f, det, "data", "frames")
            if isinstance(obj, h5py.Dataset) and obj.ndim == 3:
                dets.append((Found(f"{det}/data", f"data of the NXdetector {det}"), None, obj))
    return _unique(dets, "frame stacks", f)


def _ambiguous(file: str, what: str, found: list[Found], flag: str) -> InputError:
    listed = "; ".join(f"{c.path} ({c.why})" for c in found)
    return InputError(file, None, f"{len(found)} {what} are equally plausible: {listed}; give {flag} "
                                  "to pick one")


def _enclosing_entry(f: h5py.File, path: str) -> str | None:
    top = "/" + path.strip("/").split("/")[0]
    return top if top in entries(f) else None


def locate(f: h5py.File, data_path: str | None, image_key_path: str | None, *, lender: bool = False) -> Layout:
    """The projections' entry of ``f`` (its frames, image key and NXdata group) and the entries
    that lend it flats and darks.  ``data_path``/``image_key_path`` given: used as they are.
    ``lender``: ``f`` holds only flats or darks for another file's projections (its one entry)."""
    if data_path is not None or isinstance(f.get("/exchange/data"), h5py.Dataset):
        path = data_path or "/exchange/data"
        why = "given (--data-path)" if data_path else "DXchange /exchange/data"
        hdf5.dataset(f, path, "frames (frames, rows, columns)")
        name = _enclosing_entry(f, path) if data_path else None
        parent = path.rsplit("/", 1)[0] or "/"
        nxdata = parent if nx_class(f.get(parent)) == "NXdata" else None
        entry = Entry(name or parent, Found(path, why), nxdata)
        if data_path is not None or image_key_path is not None:
            entry.keys = image_key(f, entry, image_key_path, search=data_path is not None)
        layout = Layout(entry, is_nexus=name is not None)
        if name is not None and not lender:
            _lenders(f, layout)
        return layout
    names = entries(f)
    if not names:
        raise InputError(f.filename, None, "no frame stack found: neither DXchange (/exchange/data) nor "
                                           "NeXus (no NXentry group); give --data-path")
    found: list[Entry] = []
    for name in names:
        got = _entry_frames(f, name)
        if got is None:
            continue
        e = Entry(name, got[0], got[1], start_time=_text(f, f"{name}/start_time"))
        e.keys = image_key(f, e, None, search=True)
        found.append(e)
    if not found:
        raise InputError(f.filename, None, f"no frame stack found in {', '.join(names)} (looked for an NXdata "
                                           "group's 3-D signal and an NXdetector's data); give --data-path")
    default = hdf5.attr_text(f, "default")
    chosen = [e for e in found if default and e.name == f"/{default.strip('/')}"]
    if chosen:
        chosen[0].frames = Found(chosen[0].frames.path, chosen[0].frames.why + ", in the file's default entry")
    else:
        chosen = [e for e in found if e.has_projections or lender]
    if not chosen:
        raise InputError(f.filename, None, f"no projections (image_key 0) in {', '.join(e.frames.path for e in found)}; "
                                           "expected one entry with projection frames")
    if len(chosen) > 1:
        raise _ambiguous(f.filename, "entries with frames" if lender else "entries with projections",
                         [Found(e.frames.path, e.frames.why) for e in chosen], "--data-path")
    if image_key_path is not None:
        chosen[0].keys = image_key(f, chosen[0], image_key_path, search=False)
    layout = Layout(chosen[0], is_nexus=True)
    if not lender:
        _lenders(f, layout, found)
    return layout


def _lenders(f: h5py.File, layout: Layout, found: list[Entry] | None = None) -> None:
    """Other entries of the file whose frames are only flats and darks (an acquisition split
    over entries, as nxtomomill writes it), before or after the projections' entry."""
    if found is None:
        found = []
        for name in entries(f):
            if name == layout.entry.name:
                continue
            try:
                got = _entry_frames(f, name)
            except InputError:
                continue
            if got is not None:
                e = Entry(name, got[0], got[1], start_time=_text(f, f"{name}/start_time"))
                e.keys = image_key(f, e, None, search=True)
                found.append(e)
        found.append(layout.entry)
    layout.entry.start_time = layout.entry.start_time or _text(f, f"{layout.entry.name}/start_time")
    if all(e.start_time for e in found):
        found = sorted(found, key=lambda e: str(e.start_time))
    else:
        found = sorted(found, key=lambda e: e.name)
    at = next(i for i, e in enumerate(found) if e is layout.entry or e.name == layout.entry.name)
    for i, e in enumerate(found):
        if i != at and e.keys is not None and not e.has_projections:
            (layout.before if i < at else layout.after).append(e)


# -- image keys -------------------------------------------------------------------------------------
def image_key(f: h5py.File, entry: Entry, given: str | None, *, search: bool) -> Keys | None:
    """The image key of ``entry``'s frames: ``given``, else (``search``) ``image_key_control``
    or ``image_key`` beside the frames, in the NXdata group, an NXdetector or the entry."""
    n = _n_frames(f, entry)
    if given is not None:
        ds = hdf5.dataset(f, given, "image keys (0 projection, 1 flat, 2 dark)", ndim=1)
        return Keys(given, "given (--image-key-path)", _key_values(ds, n))
    if not search:
        return None
    groups = [entry.nxdata, entry.frames.path.rsplit("/", 1)[0]]
    for inst in _groups(f, entry.name, "NXinstrument") or [f"{entry.name}/instrument"]:
        groups += _groups(f, inst, "NXdetector") or [f"{inst}/detector"]
    groups.append(entry.name)
    found: list[tuple[str, str, np.ndarray]] = []
    for group in dict.fromkeys(g for g in groups if g):
        for name in ("image_key_control", "image_key"):
            obj = _child(f, group, name, "image keys")
            if isinstance(obj, h5py.Dataset) and not any(obj == f.get(p) for p, _, _ in found):
                found.append((f"{group}/{name}", name, _key_values(obj, n)))
    if not found:
        return None
    controls = [c for c in found if c[1] == "image_key_control"] or found
    distinct = _distinct(controls)
    if len(distinct) > 1:
        raise _ambiguous(f.filename, "image keys", [Found(p, "differs from the others") for p, _, _ in distinct],
                         "--image-key-path")
    path, name, values = distinct[0]
    why = f"{name} beside the frames" if path.rsplit("/", 1)[0] in (entry.nxdata, entry.frames.path.rsplit("/", 1)[0]) \
        else f"{name} of {path.rsplit('/', 1)[0]}"
    plain = [c for c in found if c[1] == "image_key" and not np.array_equal(c[2], values)]
    if name == "image_key_control" and plain:
        n_align = int(np.count_nonzero(values == ALIGNMENT))
        why += f" (preferred to {plain[0][0]}, which counts {n_align} alignment frame(s) as projections)"
    return Keys(path, why, values)


def _n_frames(f: h5py.File, entry: Entry) -> int:
    return int(hdf5.get(f, entry.frames.path, "frames").shape[0])


def _key_values(ds: h5py.Dataset, n: int) -> np.ndarray:
    from teravox.io.validate import describe_dtype

    if ds.ndim != 1:
        raise InputError(ds.file.filename, ds.name, f"has shape {ds.shape}, expected one image key per frame (1-D)")
    if ds.dtype.kind not in "iu":
        raise InputError(ds.file.filename, ds.name, f"holds {describe_dtype(ds.dtype)}; expected integers "
                                                    "(0 projection, 1 flat, 2 dark)")
    if ds.shape[0] != n:
        raise InputError(ds.file.filename, ds.name, f"has {ds.shape[0]} image keys for {n} frames; expected "
                                                    "one per frame")
    values = np.asarray(ds[()]).astype(int)
    unknown = sorted(set(np.unique(values).tolist()) - set(KEY_NAMES))
    if unknown:
        raise InputError(ds.file.filename, ds.name, f"holds image keys {unknown}; expected 0 projection, "
                                                    "1 flat, 2 dark, 3 invalid, -1 alignment")
    return values


def _distinct(cands: list[tuple[str, str, np.ndarray]]) -> list[tuple[str, str, np.ndarray]]:
    out: list[tuple[str, str, np.ndarray]] = []
    for c in cands:
        if not any(np.array_equal(c[2], o[2]) for o in out):
            out.append(c)
    return out


# -- angles and the beam monitor --------------------------------------------------------------------
def angles(f: h5py.File, entry: Entry, lengths: tuple[int, ...]) -> Found | None:
    """The rotation angles of ``entry``'s frames: the NXdata group's axis along the frames
    (``axes``/``<name>_indices``), else ``rotation_angle`` of the NXsample, NXdata group or
    beside the frames.  ``lengths``: the sizes an angle series may have (frames, projections)."""
    tiers: list[list[tuple[Found, h5py.Dataset]]] = [[], []]
    if entry.nxdata is not None:
        group = f[entry.nxdata]
        for name in _axes(group):
            if name.startswith("image_key"):
                continue
            obj = _child(f, entry.nxdata, name, "rotation angles")
            if _series(obj, lengths) and _angle_unit_ok(obj):
                tiers[0].append((Found(f"{entry.nxdata}/{name}", f"axis along the frames of the NXdata group "
                                                                 f"{entry.nxdata}"), obj))
    places = [(s, f"of the NXsample {s}") for s in _groups(f, entry.name, "NXsample") or [f"{entry.name}/sample"]]
    places += [(entry.nxdata, f"of the NXdata group {entry.nxdata}"),
               (entry.frames.path.rsplit("/", 1)[0], "beside the frames")]
    seen: set[str] = set()
    for group, where in places:
        if group is None or group in seen:
            continue
        seen.add(group)
        obj = _child(f, group, "rotation_angle", "rotation angles")
        if _series(obj, lengths):
            tiers[1].append((Found(f"{group}/rotation_angle", f"rotation_angle {where}"), obj))
    return _pick(f, tiers, "angle series", "--angles-path")


def monitor(f: h5py.File, entry: Entry, lengths: tuple[int, ...]) -> tuple[Found | None, str | None]:
    """The beam monitor's series (NXmonitor ``data`` in the entry or its instrument), and a
    note when several differ (then none is used: ``--monitor-path`` picks one)."""
    groups = _groups(f, entry.name, "NXmonitor")
    for inst in _groups(f, entry.name, "NXinstrument"):
        groups += _groups(f, inst, "NXmonitor")
    cands = []
    for g in groups:
        obj = _child(f, g, "data", "beam monitor")
        if _series(obj, lengths):
            cands.append((Found(f"{g}/data", f"data of the NXmonitor {g}"), obj))
    try:
        return _pick(f, [cands], "beam monitors", "--monitor-path"), None
    except InputError as exc:
        return None, exc.problem


def _series(obj: Any, lengths: tuple[int, ...]) -> bool:
    return (isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.shape[0] in lengths
            and obj.dtype.kind in "iuf")


def _angle_unit_ok(ds: h5py.Dataset) -> bool:
    unit = hdf5.unit(ds)
    if unit is None:
        return True
    try:
        U.factor(unit, "angle", "deg")
    except ValueError:
        return False  # an axis in seconds or millimetres is not the rotation
    return True


def _pick(f: h5py.File, tiers: list[list[tuple[Found, h5py.Dataset]]], what: str, flag: str) -> Found | None:
    for tier in tiers:
        distinct: list[tuple[Found, h5py.Dataset, Any]] = []
        for found, ds in tier:  # one dataset reached by several links, or copies of it, count once
            content = (hdf5.unit(ds), np.asarray(ds[()]))
            if not any(ds == o[1] or (o[2][0] == content[0] and np.array_equal(o[2][1], content[1], equal_nan=True))
                       for o in distinct):
                distinct.append((found, ds, content))
        if len(distinct) > 1:
            raise _ambiguous(f.filename, what, [d[0] for d in distinct], flag)
        if distinct:
            return distinct[0][0]
    return None


def metadata_paths(f: h5py.File, entry: str) -> dict[str, list[tuple[str, str, str]]]:
    """Where an entry keeps instrument values, as (path, kind, unit when no attribute): the
    NXbeam's incident energy or an NXmonochromator's energy (keV), an NXdetector's
    ``x_pixel_size``, ``distance`` (sample to detector; NeXus lengths are in metres) and
    ``count_time`` (the exposure, seconds)."""
    insts = _groups(f, entry, "NXinstrument") or [f"{entry}/instrument"]

    def inside(cls: str, default: str) -> list[str]:
        return [g for i in insts for g in _groups(f, i, cls)] or [f"{insts[0]}/{default}"]

    beams = _groups(f, entry, "NXbeam") + [g for i in insts for g in _groups(f, i, "NXbeam")] or [f"{entry}/beam"]
    dets = inside("NXdetector", "detector")
    return {"energy_kev": [(f"{b}/incident_energy", "energy", "keV") for b in beams]
            + [(f"{m}/energy", "energy", "keV") for m in inside("NXmonochromator", "monochromator")],
            "pixel_size_m": [(f"{d}/x_pixel_size", "length", "m") for d in dets],
            "distance_m": [(f"{d}/distance", "length", "m") for d in dets],
            "exposure_s": [(f"{d}/count_time", "time", "s") for d in dets]}
