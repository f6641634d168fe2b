"""Read-only HDF5 access shared by the scan readers: opening a file, following a path whose
external links may be broken, typed datasets, ``units`` attributes.  Every problem is an
:class:`~teravox.errors.InputError` naming the file and the dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teravox.errors import InputError
from teravox.io import validate

#: What h5py raises when an HDF5 file's own structure (not our reading of it) is damaged.
HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def open_file(path: str | os.PathLike, role: str = "scan") -> h5py.File:
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
        raise InputError(p, None, f"not an HDF5 file (expected a DXchange or NeXus {role}, or TIFF files)")
    try:
        return h5py.File(p, "r")  # read-only: raw data is never modified
    except OSError as exc:
        raise InputError(p, None, f"cannot open {role} file ({exc})") from None


def get(f: h5py.File | h5py.Group, path: str, what: str) -> Any:
    """``f.get(path)``; an external link on the way that cannot be followed is an error naming it
    (h5py's ``get`` would say None, as for a path that is not there)."""
    if not path.startswith("/"):
        path = f"{f.name.rstrip('/')}/{path}"
    f = f.file
    error = None
    try:
        obj = f.get(path)
    except HDF5_ERRORS as exc:
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
        except HDF5_ERRORS:
            return None
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            try:
                f[sub]
            except HDF5_ERRORS:
                return sub, link
    return None


def dataset(f: h5py.File | h5py.Group, path: str, what: str, ndim: int | None = 3) -> h5py.Dataset:
    """The dataset at ``path``: a readable 3-D stack of real numbers (``ndim=3``), of ``ndim``
    dimensions, or any non-empty dataset (None)."""
    obj = get(f, path, what)
    file = f.file.filename
    if obj is None:
        raise InputError(file, path, f"missing: expected the {what} here")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(file, path, f"is a group, expected the {what} as a dataset")
    if ndim == 3:
        validate.check_frames(obj, what)
        return obj
    if ndim is not None and obj.ndim != ndim:
        raise InputError(file, path, f"has shape {obj.shape}, expected {ndim}-D {what}")
    if obj.size == 0:
        raise InputError(file, path, f"is empty (shape {obj.shape}), expected {what}")
    return obj


def unit(ds: h5py.Dataset) -> str | None:
    """The ``units`` (or ``unit``) attribute as text, None without one."""
    return attr_text(ds, "units") or attr_text(ds, "unit")


def attr_text(obj: h5py.HLObject, name: str) -> str | None:
    """A text attribute (bytes, str, or a one-element array of either) as str; None when absent."""
    value = obj.attrs.get(name)
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return None if value is None else str(value)


def scalar(f: h5py.File | h5py.Group, path: str) -> tuple[float, str | None, h5py.Dataset] | None:
    """(value, unit, dataset) of a number stored at ``path``; None when there is none."""
    try:
        obj = f.get(path)
    except HDF5_ERRORS:
        return None
    if not isinstance(obj, h5py.Dataset) or obj.size == 0:
        return None
    try:
        raw = obj[()]
        value = float(np.ravel(raw)[0]) if np.ndim(raw) else float(raw)
    except (TypeError, ValueError):
        return None
    return value, unit(obj), obj
