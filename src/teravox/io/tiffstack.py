"""TIFF stacks: what Fiji/ImageJ, Avizo/Amira and Dragonfly open.

``<scan>_recon_tiff/<scan>_recon_00000.tif`` …: one 2-D TIFF per slice (z zero-padded, so
that Fiji's File › Import › Image Sequence, and any name sort, open them in order), each
with ImageJ metadata: the pixel size (resolution, and ``spacing`` for the slice distance)
in µm where it is known.  The reconstruct jobs write the slice files themselves (each job
its own rows, in ``recon_<j>_tiff/``); merge links them into the stack.  With
``tiff_layout=bigtiff`` merge writes one ``<scan>_recon.tif`` instead (a BigTIFF with
OME-XML metadata, which Fiji opens through Bio-Formats) — one copy of the volume, since a
single file cannot be written by several jobs at once.  The provenance goes into the
sidecar ``<scan>_recon_tiff.json`` beside the stack (outside the folder, which Fiji would
otherwise try to open as a slice).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from teravox.io import pieces
from teravox.io.atomic import atomic_dir, atomic_path


def slice_name(name: str, z: int, n_rows: int) -> str:
    """File name of slice ``z``: ``<name>_recon_<z>.tif``, z on at least 5 digits."""
    return f"{name}_recon_{z:0{max(5, len(str(n_rows - 1)))}d}.tif"


def imagej_kwargs(pixel_size_m: float | None) -> dict[str, Any]:
    """tifffile arguments for an ImageJ TIFF calibrated in µm (none when the size is unknown)."""
    if not pixel_size_m:
        return {"imagej": True, "metadata": {"axes": "YX"}}
    um = pixel_size_m * 1e6
    return {"imagej": True, "resolution": (1 / um, 1 / um),
            "metadata": {"axes": "YX", "unit": "um", "spacing": um}}


class PieceWriter:
    """Writes one job's slices as files; ``finish`` writes the marker."""

    def __init__(self, directory: Path, name: str, z0: int, n_rows: int, pixel_size_m: float | None) -> None:
        self.directory, self.name, self.z0, self.n_rows = directory, name, z0, n_rows
        self.kwargs = imagej_kwargs(pixel_size_m)

    def write(self, z: int, slices: np.ndarray) -> None:
        import tifffile

        for i, img in enumerate(slices):
            tifffile.imwrite(self.directory / slice_name(self.name, self.z0 + z + i, self.n_rows), img,
                             **self.kwargs)

    def finish(self, prov: dict[str, Any]) -> None:
        pieces.write_marker(self.directory, prov)


@contextlib.contextmanager
def piece_writer(path: Path, name: str, z0: int, n_rows: int,
                 pixel_size_m: float | None) -> Iterator[PieceWriter]:
    """A job's piece ``recon_<j>_tiff/``: complete under its name, or absent."""
    with atomic_dir(path) as tmp:
        yield PieceWriter(tmp, name, z0, n_rows, pixel_size_m)


def piece_files(name: str, start: int, stop: int, n_rows: int) -> list[str]:
    return [slice_name(name, z, n_rows) for z in range(start, stop)]


def sidecar_path(volume: Path) -> Path:
    """``<scan>_recon_tiff.json`` beside ``<scan>_recon_tiff/`` or ``<scan>_recon.tif``."""
    stem = volume.name.removesuffix(".tif").removesuffix("_tiff")
    return volume.with_name(f"{stem}_tiff.json")


def assemble_slices(out: Path, piece_dirs: list[Path], prov: dict[str, Any]) -> pieces.LinkCount:
    """The stack folder ``out`` from the pieces' slice files (linked), and its sidecar."""
    count = pieces.LinkCount()
    with atomic_dir(out) as tmp:
        for d in piece_dirs:
            for rel in pieces.data_files(d):
                pieces.link_file(d / rel, tmp / rel.name, count)
    write_sidecar(out, prov)
    return count


def assemble_bigtiff(out: Path, piece_dirs: list[Path], shape: tuple[int, int, int], dtype: np.dtype,
                     pixel_size_m: float | None, prov: dict[str, Any], progress: bool = False) -> None:
    """One BigTIFF ``out`` (OME-XML metadata, µm) streamed slice by slice from the pieces."""
    import tifffile

    from teravox.progress import bar

    files = [d / rel for d in piece_dirs for rel in pieces.data_files(d)]
    if len(files) != shape[0]:
        raise ValueError(f"{len(files)} slice files for {shape[0]} slices")
    meta: dict[str, Any] = {"axes": "ZYX"}
    if pixel_size_m:
        um = pixel_size_m * 1e6
        meta.update({f"PhysicalSize{a}": um for a in "XYZ"})
        meta.update({f"PhysicalSize{a}Unit": "µm" for a in "XYZ"})
    slices = (tifffile.imread(f) for f in bar(files, desc="bigtiff", unit="slice", enable=progress))
    with atomic_path(out) as tmp:
        tifffile.imwrite(tmp, slices, shape=shape, dtype=dtype, bigtiff=True, ome=True, metadata=meta)
    write_sidecar(out, prov)


def write_sidecar(volume: Path, prov: dict[str, Any]) -> None:
    with atomic_path(sidecar_path(volume)) as tmp:
        tmp.write_text(json.dumps(prov, indent=1, sort_keys=True))


class TiffVolume:
    """A TIFF stack (folder of slices, or one multi-page file) as a read-only (z, y, x)
    array: indexing reads only the slices it needs."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = Path(path)
        if self.path.is_dir():
            self._files = sorted(self.path.glob("*.tif"))
            if not self._files:
                raise FileNotFoundError(f"{self.path}: no .tif slices")
            first = tifffile.imread(self._files[0])
            self._pages = None
            self.shape = (len(self._files), *first.shape)
        else:
            self._tif = tifffile.TiffFile(self.path)
            self._pages = self._tif.pages
            page = self._pages[0]
            self.shape = (len(self._pages), *page.shape)
            first = page
        self.dtype = np.dtype(first.dtype)

    def _slice(self, z: int) -> np.ndarray:
        import tifffile

        return tifffile.imread(self._files[z]) if self._pages is None else self._pages[z].asarray()

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        zs = range(self.shape[0])[key[0]]
        rest = key[1:]
        if isinstance(zs, int):
            return self._slice(zs)[rest]
        if not len(zs):
            return np.empty((0, *self._slice(0)[rest].shape), self.dtype)
        return np.stack([self._slice(z)[rest] for z in zs])

    def close(self) -> None:
        if self._pages is not None:
            self._tif.close()


def open_volume(path: Path) -> tuple[TiffVolume, dict[str, Any]]:
    """The stack as a :class:`TiffVolume` and the provenance of its sidecar."""
    side = sidecar_path(path)
    prov = json.loads(side.read_text()) if side.exists() else {}
    return TiffVolume(path), prov
