"""Provenance under ``/process/teravox/`` of every file teravox writes."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import h5py

from teravox import __version__


def versions() -> dict[str, str]:
    """Versions of teravox and the libraries that shape its results."""
    import importlib.metadata as md

    out = {"teravox": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "h5py", "finufft", "algotom", "scikit-image"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write(f: h5py.File, *, stage: str, params: dict[str, Any] | None = None,
          plan: dict[str, Any] | None = None, **extra: Any) -> h5py.Group:
    """Write version, stage, time, parameters, plan and extra facts as JSON strings/attributes."""
    g = f.require_group("/process/teravox")
    g.attrs["version"] = __version__
    g.attrs["stage"] = stage
    g.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    g.attrs["versions"] = json.dumps(versions())
    if params is not None:
        g.attrs["parameters"] = json.dumps(params, sort_keys=True)
    if plan is not None:
        g.attrs["plan"] = json.dumps(plan, sort_keys=True)
    for key, value in extra.items():
        g.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
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
            if len(ds.shape) != len(shape) or any(
                    w is not None and w != g for w, g in zip(shape, ds.shape, strict=True)):
                want = tuple("any" if w is None else w for w in shape)
                return f"has shape {ds.shape}, the plan expects {want}"
            if prov.get("plan_digest") != plan_digest:
                return "was made for another plan or other parameters"
    except OSError as exc:
        return f"unreadable ({exc})"
    return None
