"""Provenance under ``/process/teravox/`` of every file teravox writes."""

from __future__ import annotations

import json
import platform
import time
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
