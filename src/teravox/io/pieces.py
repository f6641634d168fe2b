"""Pieces: what one reconstruct job writes of a directory format (Zarr, TIFF stack).

A job writes its slices into ``recon_<j>.zarr/`` or ``recon_<j>_tiff/`` under a
temporary name, then its marker ``teravox.json`` (the job's provenance, with the plan
digest and its chunk range), then renames the directory (:func:`atomic_dir`): a piece
under its final name with a marker for this plan is complete, anything else is redone.
Merge then *links* the pieces' files into the final store (hard links: the bytes the
jobs wrote become the store's, none is copied), so that each job can write in its own
directory — its Nextflow work directory, or the run's output directory.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teravox.io.provenance import record_problem

MARKER = "teravox.json"


def write_marker(directory: Path, prov: dict[str, Any]) -> None:
    """Write the piece's provenance last, after all its data (atomic within the directory)."""
    tmp = directory / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(prov, sort_keys=True))
    os.replace(tmp, directory / MARKER)


def read_marker(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def piece_problem(directory: Path, plan_digest: str, chunk: dict[str, int], n_slices: int) -> str | None:
    """Why a piece cannot be trusted (missing, no marker, another plan or chunk), or None
    when its marker says it is complete for this plan (see also :func:`missing_files`)."""
    if not directory.is_dir():
        return "missing"
    prov = read_marker(directory)
    if not prov:
        return "incomplete (no teravox.json marker)"
    problem = record_problem(prov, "reconstruct", plan_digest, tuple(prov.get("shape", ())),
                             (n_slices, None, None))
    if problem:
        return problem
    if prov.get("chunk") != chunk:
        return f"holds rows {prov.get('chunk')}, the plan's chunk is {chunk}"
    return None


def missing_files(directory: Path, files: Iterable[str]) -> str | None:
    """Why a piece whose marker is right still cannot be used (a data file gone), or None."""
    absent = [name for name in files if not (directory / name).is_file()]
    if absent:
        return f"incomplete ({len(absent)} file(s) missing, e.g. {absent[0]})"
    return None


@dataclass
class LinkCount:
    """How merge put the pieces' files into the store."""

    linked: int = 0
    copied: int = 0
    why_copied: str = ""

    def __str__(self) -> str:
        text = f"{self.linked} file(s) linked"
        if self.copied:
            text += f", {self.copied} copied ({self.why_copied})"
        return text


def link_file(src: Path, dst: Path, count: LinkCount) -> None:
    """Hard-link ``src`` (a symlink is followed: Nextflow stages inputs as links) to ``dst``;
    copy it where the filesystem cannot link (another device, no hard links)."""
    src = src.resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        count.linked += 1
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copyfile(src, dst)
        count.copied += 1
        count.why_copied = count.why_copied or f"no hard link possible: {exc.strerror}"


def data_files(directory: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    """The piece's data files (relative paths), without the marker and ``skip`` names."""
    root = directory.resolve()
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name != MARKER and name not in skip and not name.startswith(f".{MARKER}"):
                out.append(Path(dirpath, name).relative_to(root))
    return sorted(out)
