"""Provenance under ``/process/teravox/`` of every file teravox writes."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teravox import __version__
from teravox.io.tiff import is_glob
from teravox.io.tiff import stat as tiff_stat
from teravox.io.validate import location


def versions() -> dict[str, str]:
    """Versions of teravox and the libraries that shape its results."""
    import importlib.metadata as md

    out = {"teravox": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "h5py", "ducc0", "cufinufft", "algotom", "scikit-image", "zarr", "ome-zarr",
                 "tifffile"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def record(*, stage: str, params: dict[str, Any] | None = None, plan: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    """Version, stage, time, parameters, plan and extra facts: what every output carries, as
    HDF5 attributes (:func:`write`), Zarr attributes or a JSON file beside a TIFF stack."""
    out: dict[str, Any] = {"version": __version__, "stage": stage,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    if params is not None:
        out["parameters"] = params
    if plan is not None:
        out["plan"] = plan
    return {**out, **extra}


def write(f: h5py.File, *, stage: str, params: dict[str, Any] | None = None,
          plan: dict[str, Any] | None = None, **extra: Any) -> h5py.Group:
    """Write :func:`record` under ``/process/teravox``."""
    return attach(f, record(stage=stage, params=params, plan=plan, **extra))


def attach(f: h5py.File, rec: dict[str, Any]) -> h5py.Group:
    """A :func:`record` as attributes of ``/process/teravox`` (JSON strings for structured values)."""
    g = f.require_group("/process/teravox")
    for key, value in rec.items():
        g.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value, sort_keys=True)
    return g


def read(f: h5py.File) -> dict[str, Any]:
    """The provenance attributes of ``f`` with JSON values decoded."""
    g = f.get("/process/teravox")
    if g is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in g.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


# -- what a chunk file was made from ------------------------------------------------------------
#: Plan entries that do not change what a chunk holds.
_NOT_IN_DIGEST = ("created", "workdir")
#: Frames sampled per dataset for its checksum (one row each, rows spread over the frame).
SAMPLED_FRAMES = 16
#: Datasets up to this size are checksummed whole.
WHOLE_BYTES = 1 << 20


def plan_digest(plan: dict[str, Any]) -> str:
    """Identifies the work a chunk file was made for: everything in the plan (scan, selection,
    angles, physics, parameters, chunks, centre, version, and the raw data's identity in
    ``inputs``) except when and where it was planned."""
    key = {k: v for k, v in plan.items() if k not in _NOT_IN_DIGEST}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sample_checksum(ds: h5py.Dataset) -> str:
    """SHA-256 of a dataset's shape, dtype and content: all of it up to 1 MiB, else one row of
    each of :data:`SAMPLED_FRAMES` frames spread over the stack (rows spread over the frame)."""
    h = hashlib.sha256(f"{ds.shape} {ds.dtype.str}".encode())
    if ds.size * ds.dtype.itemsize <= WHOLE_BYTES or ds.ndim < 2:
        parts = [ds[()]]
    else:
        frames = np.unique(np.linspace(0, ds.shape[0] - 1, SAMPLED_FRAMES).round().astype(int))
        rows = np.linspace(0, ds.shape[1] - 1, frames.size).round().astype(int)
        parts = [ds[int(i), int(r)] for i, r in zip(frames, rows, strict=True)]
    for part in parts:
        arr = np.asarray(part)
        h.update(np.ascontiguousarray(arr).tobytes() if arr.dtype.kind in "biufc" else repr(part).encode())
    return h.hexdigest()[:16]


def file_stat(path: str | os.PathLike) -> dict[str, Any]:
    """Size and modification time of a file (None for a file that is not there); for a folder
    or glob pattern of TIFF files, their number, total size and newest modification time."""
    if is_glob(path) or Path(path).is_dir():
        return tiff_stat(path)
    try:
        st = os.stat(path)
    except OSError:
        return {"size": None, "mtime_ns": None}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def input_identity(scan: Any) -> dict[str, Any]:
    """The raw data a scan reads, identified: every file (external-link targets and virtual
    sources included) with its size, modification time and what is read from it, and every
    dataset with a checksum of sampled blocks.  A plan carries it, so chunks made from other
    data are never reused, and the report names the files."""
    files: dict[str, dict[str, Any]] = {}
    for df in scan.data_files():
        entry = files.setdefault(df.file, {"path": df.file, **file_stat(df.file), "read_for": []})
        what = df.role + (f" ({df.via})" if df.via else "")
        if what not in entry["read_for"]:
            entry["read_for"].append(what)
    datasets = []
    for role, ds in scan.datasets():
        file, name = location(ds)
        file = file if is_glob(file) else str(Path(file).resolve())
        try:
            checksum = sample_checksum(ds)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            from teravox.errors import InputError

            raise InputError(file, name, f"cannot read the {role} ({' '.join(str(exc).split())}): "
                                         "damaged, or not completely written") from None
        datasets.append({"role": role, "file": file, "dataset": name, "sha256": checksum})
    return {"files": list(files.values()), "datasets": datasets}


def changed_inputs(identity: dict[str, Any]) -> list[str]:
    """Files of a plan's ``inputs`` whose size or modification time (and, for TIFF folders, the
    number of files) differ now (cheap: no read)."""
    changed = []
    for f in identity.get("files", []):
        now = file_stat(f["path"])
        if now != {k: f.get(k) for k in now}:
            changed.append(f["path"])
    return changed


def output_problem(path: str | os.PathLike, stage: str, plan_digest: str,
                   shape: tuple[int | None, ...]) -> str | None:
    """Why a file a stage job wrote cannot be trusted, or None when it is complete, was made
    for this plan (``plan_digest``) and has ``/exchange/data`` of ``shape`` (None: any size)."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            ds = f.get("/exchange/data")
            prov = read(f)
            if not isinstance(ds, h5py.Dataset) or prov.get("stage") != stage:
                return "incomplete (no /exchange/data or no provenance)"
            return record_problem(prov, stage, plan_digest, tuple(ds.shape), shape)
    except OSError as exc:
        return f"unreadable ({exc})"


def record_problem(prov: dict[str, Any], stage: str, plan_digest: str, got: tuple[int, ...],
                   shape: tuple[int | None, ...]) -> str | None:
    """Why an output whose provenance is ``prov`` and whose data has shape ``got`` cannot be
    trusted for this plan (see :func:`output_problem`), or None."""
    if prov.get("stage") != stage:
        return "incomplete (no provenance of the stage that writes it)"
    if len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got, strict=True)):
        want = tuple("any" if w is None else w for w in shape)
        return f"has shape {got}, the plan expects {want}"
    if prov.get("plan_digest") != plan_digest:
        return "was made for another plan or other parameters"
    return None
