"""OME-Zarr volumes (OME-NGFF 0.4, Zarr v2 on disk): the format napari, neuroglancer,
Fiji (MoBIE, BigDataViewer) and cloud object stores read.

``<scan>_recon.zarr/`` is a multiscale image: ``0`` the volume (z, y, x), ``1``, ``2``, …
the levels of ``--pyramid`` (each the mean of 2×2×2 cells of the one above), the NGFF
``multiscales`` metadata written by ``ome_zarr`` with the pixel size in micrometres where
it is known, and the run's provenance under the ``teravox`` attribute.

The reconstruct jobs write the level-0 chunks: job *j* writes ``recon_<j>.zarr``, a
(sparse) array of the whole volume's shape holding only its own chunks; the plan cuts
the sinogram chunks on multiples of the chunk height, so no two jobs ever write the same
chunk.  Merge links those chunk files into the store (:mod:`teravox.io.pieces`), builds
the pyramid from them and writes the metadata.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from teravox.io import pieces
from teravox.io.atomic import atomic_dir

#: voxels per chunk the chunk shape aims at (4 Mi: 16 MiB of float32)
CHUNK_VOXELS = 2**22
MAX_CHUNK_ROWS = 64


def chunk_rows(subchunk_rows: int, n_rows: int, n_chunks: int) -> int:
    """Height of a chunk: a power of two ≤ 64 that a job's subchunk and every sinogram
    chunk hold whole (each job then writes whole chunks, and only its own)."""
    fit = min(MAX_CHUNK_ROWS, subchunk_rows, max(1, n_rows // n_chunks))
    return 2 ** int(math.floor(math.log2(max(1, fit))))


def chunk_shape(rows: int, n: int) -> tuple[int, int, int]:
    """(rows, side, side) chunks of about CHUNK_VOXELS voxels for slices of n × n."""
    side = max(256, 2 ** int(math.floor(math.log2(math.sqrt(CHUNK_VOXELS / rows)))))
    return (rows, min(n, side), min(n, side))


def compressor(name: str):  # noqa: ANN201 - a numcodecs codec or None
    """The Zarr codec of the ``compression`` parameter (lzf is refused by the parameters)."""
    if name == "gzip":
        from numcodecs import GZip

        return GZip(level=4)  # h5py's default gzip level
    return None


def _create(path: Path | str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype,
            compression: str):  # noqa: ANN202 - zarr.Array
    """An empty level: nested chunk keys ``z/y/x`` (as NGFF 0.4 asks), every chunk written
    even where it holds only zeros (a piece's files are then exactly its chunks)."""
    import zarr

    return zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype,
                           compressor=compressor(compression), fill_value=0,
                           dimension_separator="/", write_empty_chunks=True)


class PieceWriter:
    """Writes one job's slices into its piece; ``finish`` writes the marker."""

    def __init__(self, directory: Path, array: Any, z0: int) -> None:
        self.directory, self.array, self.z0 = directory, array, z0

    def write(self, z: int, slices: np.ndarray) -> None:
        """Slices at chunk-relative row ``z`` (whole chunks: the plan aligns the blocks)."""
        self.array[self.z0 + z:self.z0 + z + slices.shape[0]] = slices

    def finish(self, prov: dict[str, Any]) -> None:
        pieces.write_marker(self.directory, prov)


@contextlib.contextmanager
def piece_writer(path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int],
                 dtype: np.dtype, compression: str, z0: int) -> Iterator[PieceWriter]:
    """A job's piece ``recon_<j>.zarr``: complete under its name, or absent."""
    with atomic_dir(path) as tmp:
        yield PieceWriter(tmp, _create(tmp, shape, chunks, dtype, compression), z0)


def piece_files(shape: tuple[int, ...], chunks: tuple[int, ...], start: int, stop: int) -> list[str]:
    """The chunk files (nested keys ``iz/iy/ix``) of rows ``start:stop``."""
    nz = range(start // chunks[0], -(-stop // chunks[0]))
    ny, nx = (range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:], strict=True))
    return [f"{iz}/{iy}/{ix}" for iz in nz for iy in ny for ix in nx]


# ---------------------------------------------------------------------------------------
# merge: the store from the pieces


def level_transforms(levels: int, pixel_um: float | None) -> list[list[dict[str, Any]]]:
    """NGFF coordinate transformations of levels 0 … levels: the scale (µm, or pixels when
    the size is unknown) and the translation of a cell's centre, (2**k − 1)/2 pixels."""
    p = pixel_um or 1.0

    def three(x: float) -> list[float]:
        return [float(f"{x:.12g}")] * 3  # no binary noise (1.9500000000000002) in the metadata

    out = [[{"type": "scale", "scale": three(p)}]]
    for k in range(1, levels + 1):
        f = 2**k
        out.append([{"type": "scale", "scale": three(p * f)},
                    {"type": "translation", "translation": three(p * (f - 1) / 2)}])
    return out


def downsample_level(array: Any, out: Any, cell: int, shape0: tuple[int, ...],
                     progress: bool = False) -> None:
    """``out`` (a Zarr array of ceil(n/2) per axis) = mean of 2×2×2 cells of ``array``, whose
    voxels each stand for ``cell`` voxels of level 0 (of ``shape0``) along every axis; one
    output chunk at a time, so 8 source chunks are in memory (:func:`pyramid_bytes`).

    Cells are weighted by the level-0 voxels they stand for (fewer at the volume's end), so
    that each level is the mean over its 2**k-wide cells of level 0 even where a size is
    not a multiple of 2**k, as :func:`teravox.post.pyramid.downsample_mean` computes it.
    """
    from teravox.progress import bar

    cz, cy, cx = out.chunks
    tiles = [(z, y, x) for z in range(0, out.shape[0], cz) for y in range(0, out.shape[1], cy)
             for x in range(0, out.shape[2], cx)]
    for z, y, x in bar(tiles, desc=f"pyramid {cell * 2}x", unit="chunk", enable=progress):
        block = array[2 * z:2 * (z + cz), 2 * y:2 * (y + cy), 2 * x:2 * (x + cx)]
        small = _weighted_half(block, (2 * z, 2 * y, 2 * x), cell, shape0)
        out[z:z + small.shape[0], y:y + small.shape[1], x:x + small.shape[2]] = small


def _weighted_half(block: np.ndarray, lo: tuple[int, ...], cell: int, shape0: tuple[int, ...]) -> np.ndarray:
    """Mean of 2×2×2 cells of ``block`` (at ``lo`` in its level), each voxel weighted by the
    level-0 voxels it stands for; sums in float64, the result in ``block``'s dtype."""
    full = all(n % 2 == 0 and (a + n) * cell <= n0 for a, n, n0 in zip(lo, block.shape, shape0, strict=True))
    if full:  # every voxel a whole cell: a plain mean, 3× faster than the weighted sums below
        z, y, x = (n // 2 for n in block.shape)
        out = block.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5), dtype=np.float64)
        return _to_dtype(out, block.dtype)
    out = block.astype(np.float64)
    for axis in range(3):
        idx = lo[axis] + np.arange(block.shape[axis])
        w = np.minimum(cell, shape0[axis] - idx * cell).astype(np.float64)
        starts = np.arange(0, block.shape[axis], 2)
        shape = [1] * 3
        shape[axis] = w.size
        out = np.add.reduceat(out * w.reshape(shape), starts, axis=axis)
        shape[axis] = starts.size
        out /= np.add.reduceat(w, starts).reshape(shape)
    return _to_dtype(out, block.dtype)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def pyramid_bytes(chunks: tuple[int, int, int], itemsize: int) -> int:
    """Peak memory of :func:`downsample_level`: 8 source chunks, their float64 copy and
    the intermediate products of the axis-by-axis reduction."""
    voxels = 8 * math.prod(chunks)
    return voxels * (itemsize + 8 + 8)


def assemble(out: Path, piece_dirs: list[Path], shape: tuple[int, int, int], chunks: tuple[int, int, int],
             dtype: np.dtype, compression: str, levels: int, pixel_size_m: float | None, name: str,
             array_attrs: dict[str, Any], prov: dict[str, Any], progress: bool = False) -> pieces.LinkCount:
    """``out`` (``<scan>_recon.zarr``) from the jobs' pieces: level 0 linked, the pyramid
    computed, the OME-NGFF metadata and the provenance written; complete or absent."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    from teravox.post.pyramid import level_shapes

    count = pieces.LinkCount()
    with atomic_dir(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        level0 = _create(tmp / "0", shape, chunks, dtype, compression)
        for d in piece_dirs:
            for rel in pieces.data_files(d, skip=(".zarray", ".zattrs")):
                pieces.link_file(d / rel, tmp / "0" / rel, count)
        level0.attrs.update(array_attrs)
        previous = level0
        for k, lshape in enumerate(level_shapes(shape, levels), start=1):
            level = _create(tmp / str(k), lshape, tuple(min(c, n) for c, n in zip(chunks, lshape, strict=True)),
                            dtype, compression)
            downsample_level(previous, level, 2 ** (k - 1), shape, progress)
            previous = level
        pixel_um = pixel_size_m * 1e6 if pixel_size_m else None
        axes = [{"name": a, "type": "space", **({"unit": "micrometer"} if pixel_um else {})} for a in "zyx"]
        datasets = [{"path": str(k), "coordinateTransformations": t}
                    for k, t in enumerate(level_transforms(levels, pixel_um))]
        write_multiscales_metadata(root, datasets, fmt=FormatV04(), axes=axes, name=name,
                                   type="mean", metadata={"method": "teravox.io.omezarr.downsample_level",
                                                          "description": "mean of 2x2x2 cells"})
        root.attrs["teravox"] = prov
    return count


def open_volume(path: Path) -> tuple[Any, dict[str, Any]]:
    """Level 0 of an OME-Zarr volume written by :func:`assemble`, and its provenance."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    return root["0"], dict(root.attrs.get("teravox", {}))
