"""The volume formats (``format`` parameter): where each is written, the pieces the
reconstruct jobs write, and one reader for any of them.

==========  ==============================  ==================================  ===================
format      a reconstruct job writes        merge makes                         people open it in
==========  ==============================  ==================================  ===================
hdf5        ``recon_<j>.h5``                ``<scan>_recon.h5`` (a copy, or      h5py, DXchange tools,
                                            virtual), pyramid ``data_<f>x``      Fiji (HDF5 plugin)
zarr        ``recon_<j>.zarr`` (its chunks  ``<scan>_recon.zarr``: chunks       napari, neuroglancer,
            of level 0)                     linked, pyramid, OME-NGFF metadata  Fiji (MoBIE/BDV)
tiff        ``recon_<j>_tiff/`` (its        ``<scan>_recon_tiff/`` (linked) or  Fiji Image Sequence,
            slice files)                    ``<scan>_recon.tif`` (BigTIFF)      Avizo, Dragonfly
==========  ==============================  ==================================  ===================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from teravox.io import omezarr, pieces, provenance, tiffstack
from teravox.io.atomic import atomic_path

FORMATS = ("hdf5", "zarr", "tiff")
PIECE_KEYS = {"hdf5": "recon_chunk", "zarr": "recon_chunk_zarr", "tiff": "recon_chunk_tiff"}
VOLUME_KEYS = {"hdf5": "volume", "zarr": "volume_zarr", "tiff": "volume_tiff"}


class PieceWriter(Protocol):
    def write(self, z: int, slices: np.ndarray) -> None: ...

    def finish(self, prov: dict[str, Any]) -> None: ...


def output_names(name: str, tiff_layout: str) -> dict[str, str]:
    """The plan's ``outputs`` entries of the volume formats."""
    return {"recon_chunk": "recon_{index:04d}.h5", "recon_chunk_zarr": "recon_{index:04d}.zarr",
            "recon_chunk_tiff": "recon_{index:04d}_tiff", "volume": f"{name}_recon.h5",
            "volume_zarr": f"{name}_recon.zarr",
            "volume_tiff": f"{name}_recon.tif" if tiff_layout == "bigtiff" else f"{name}_recon_tiff"}


def formats(plan: dict) -> list[str]:
    """The plan's volume formats, in the order of :data:`FORMATS`."""
    asked = plan["params"].get("format", ["hdf5"])
    return [f for f in FORMATS if f in asked]


def _dir(plan: dict, outdir: str | Path | None) -> Path:
    return Path(outdir) if outdir is not None else Path(plan["workdir"])


def piece_path(plan: dict, fmt: str, index: int, outdir: str | Path | None = None) -> Path:
    return _dir(plan, outdir) / plan["outputs"][PIECE_KEYS[fmt]].format(index=index)


def volume_path(plan: dict, fmt: str, outdir: str | Path | None = None) -> Path:
    return _dir(plan, outdir) / plan["outputs"][VOLUME_KEYS[fmt]]


def volume_paths(plan: dict, outdir: str | Path | None = None) -> dict[str, Path]:
    """The volume of each of the plan's formats."""
    return {f: volume_path(plan, f, outdir) for f in formats(plan)}


# ---------------------------------------------------------------------------------------
# the reconstruct jobs' pieces


class H5PieceWriter:
    def __init__(self, f: h5py.File, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        n = shape[1]
        self.f = f
        self.ds = f.create_dataset("/exchange/data", shape=shape, dtype=dtype,
                                   chunks=(1, min(n, 1024), min(shape[2], 1024)))

    def write(self, z: int, slices: np.ndarray) -> None:
        self.ds[z:z + slices.shape[0]] = slices

    def finish(self, prov: dict[str, Any]) -> None:
        for key, value in prov.get("data_attrs", {}).items():
            self.ds.attrs[key] = value
        provenance.attach(self.f, {k: v for k, v in prov.items() if k != "data_attrs"})


def zarr_chunks(plan: dict, n: int) -> tuple[int, int, int]:
    """The plan's OME-Zarr chunks for slices of n × n (n: the size collect resolved)."""
    cz, cy, cx = plan["zarr_chunks"]
    return cz, min(cy, n), min(cx, n)


@contextlib.contextmanager
def piece_writer(plan: dict, fmt: str, index: int, outdir: str | Path | None,
                 dtype: np.dtype, n: int) -> Iterator[PieceWriter]:
    """Where job ``index`` writes its slices of n × n in format ``fmt``: complete or absent,
    a ``finish(provenance)`` call making it complete."""
    c = plan["sino_chunks"][index]
    rows = plan["recon_shape"][0]
    path = piece_path(plan, fmt, index, outdir)
    if fmt == "hdf5":
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            yield H5PieceWriter(f, (c["stop"] - c["start"], n, n), dtype)
    elif fmt == "zarr":
        with omezarr.piece_writer(path, (rows, n, n), zarr_chunks(plan, n), dtype,
                                  plan["params"]["compression"], c["start"]) as w:
            yield w
    else:
        with tiffstack.piece_writer(path, plan["name"], c["start"], rows,
                                    plan["physics"].get("pixel_size_m")) as w:
            yield w


def piece_files(plan: dict, fmt: str, index: int, n: int) -> list[str]:
    """The data files a complete piece of slices of n × n holds."""
    c, rows = plan["sino_chunks"][index], plan["recon_shape"][0]
    if fmt == "zarr":
        return omezarr.piece_files((rows, n, n), zarr_chunks(plan, n), c["start"], c["stop"])
    return tiffstack.piece_files(plan["name"], c["start"], c["stop"], rows)


def piece_problem(plan: dict, fmt: str, index: int, plan_digest: str,
                  outdir: str | Path | None = None) -> str | None:
    """Why job ``index``'s piece of format ``fmt`` cannot be used, or None."""
    c = plan["sino_chunks"][index]
    path = piece_path(plan, fmt, index, outdir)
    if fmt == "hdf5":
        return provenance.output_problem(path, "reconstruct", plan_digest, (c["stop"] - c["start"], None, None))
    why = pieces.piece_problem(path, plan_digest, c, c["stop"] - c["start"])
    if why:
        return why
    n = int(pieces.read_marker(path)["shape"][1])
    return pieces.missing_files(path, piece_files(plan, fmt, index, n))


# ---------------------------------------------------------------------------------------
# reading any format


def format_of(path: str | Path) -> str | None:
    """The format of a volume by its name, or None (a sidecar, anything else)."""
    p = Path(path)
    if p.suffix == ".zarr":
        return "zarr"
    if p.suffix in (".tif", ".tiff") or p.name.endswith("_tiff"):
        return "tiff"
    if p.suffix in (".h5", ".hdf5", ".hdf", ".nxs"):
        return "hdf5"
    return None


@contextlib.contextmanager
def open_volume(path: str | Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A volume of any format as a read-only (z, y, x) array (indexing reads only what it
    needs) and its provenance."""
    fmt = format_of(path)
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            yield f["/exchange/data"], provenance.read(f)
    elif fmt == "zarr":
        yield omezarr.open_volume(Path(path))
    else:
        vol, prov = tiffstack.open_volume(Path(path))
        try:
            yield vol, prov
        finally:
            vol.close()
