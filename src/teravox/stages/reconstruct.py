"""``teravox reconstruct --plan plan.json --chunk J``: the sinogram-chunk job (pass 2).

Reads chunk J's detector rows from the virtual ``projections.h5`` in subchunks of
the plan's size, runs the pass-2 chain (:mod:`teravox.recon.pipeline`), converts to
the output dtype with the volume's one mapping, and writes its piece of each of the
plan's formats atomically (:mod:`teravox.io.volume`): ``recon_<J>.h5``, the chunk
files of the OME-Zarr volume in ``recon_<J>.zarr``, the slice files of the TIFF stack
in ``recon_<J>_tiff``.  A subchunk is read straight into its (rows, angles, columns)
array and handed to the backend, which drops it once filtered; with the plan's tiles
the slices reach the HDF5 piece tile by tile.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import provenance, volume
from teravox.post.dtype import DtypeMapping
from teravox.progress import bar
from teravox.recon.backends.base import Handover
from teravox.recon.pipeline import reconstruct_block, steps
from teravox.stages._common import cli_entry
from teravox.stages.collect import geometry, output_path, read_resolved
from teravox.stages.preprocess import digest

# -- memory model (bytes), measured with benchmarks/scale.py -----------------------------------
#: A job's memory before its first subchunk: Python, numpy, scipy, h5py, ducc0, teravox.
JOB_BASE_BYTES = 72 * 2**20
READ_ANGLES = 256  # angles per read of a subchunk (read_sinograms)
#: HDF5 chunk cache of projections.h5 (consecutive subchunks read the same 8-row chunks)
READ_CACHE_BYTES = 64 * 2**20
TILED_HEAP_LIMIT = 4 * 2**20  # tiled jobs: larger arrays are mapped and returned (see _run)
TILE_WRITE_BYTES = 12 * 2**20  # HDF5's buffers for chunks a tile fills in part (measured)


def peak_bytes(params: Params, *, rows: int, n_angles: int, n_cols: int, n_out: int, pad_width: int,
               center: float | None = None, tile: int | None = None, threads: int = 1, deviation: float = 0.0,
               backend: str = "fourier", gpu_pairs: int = 0, subchunks: int = 1, chunk_rows: int = 8) -> int:
    """Peak of a sinogram-chunk job reconstructing ``rows`` slices at a time from
    (n_angles, rows, n_cols) of projections.h5 into n_out² slices (``n_out``, and
    ``n_angles`` before the 360° → 180° conversion halves them, as the plan has them).

    The subchunk as read (float32), one block of angles being read and HDF5's chunk cache;
    then the pass-2 chain's copies (360° → 180°, stripes, sinogram rings: a new array
    beside its input), then the backend (:func:`teravox.recon.backends.fourier.memory`, the
    subchunk handed over), the output conversion of one tile or slice, and whole slices
    when ring removal on slices keeps them, or the OME-Zarr and TIFF pieces do.  Untiled jobs keep freed memory for the next
    of their ``subchunks`` (:func:`_run`): the next subchunk's sinograms then take the
    room the last NUFFT's fine grids left, and the next grids come from new memory.
    ``chunk_rows``: rows per HDF5 chunk of the projection files (what the cache holds)."""
    from teravox.recon.backends import fourier
    from teravox.recon.pipeline import streams

    block = rows * n_angles * n_cols * 4
    read = min(READ_ANGLES, n_angles) * rows * n_cols * (4 + 1)
    cache = min(READ_CACHE_BYTES, n_angles * chunk_rows * n_cols * 4)
    m, width = n_angles, n_cols
    chain = 0
    if params.half_acquisition != "off":
        m, width = n_angles // 2, n_out
        converted = rows * m * width * 4
        chain = block + 2 * (block // 2) + 2 * converted  # the two halves, the result and its mirror
        center = None
    sinos = rows * m * width * 4
    if params.stripe_recon != "off" or params.rings == "sinogram":
        chain = max(chain, 3 * sinos)
    whole = not streams(params)
    side = n_out if (whole or not tile) else min(tile, n_out)
    itemsize = np.dtype(params.dtype).itemsize
    # a tile's conversion and HDF5's buffers for the chunks it fills in part are held with
    # the tile's work; a whole slice is converted once the NUFFT's grids are freed
    convert = (side * side * (itemsize + 4 * (params.dtype != "float32")) + TILE_WRITE_BYTES) if tile else 0
    if backend == "fourier":
        mem = fourier.memory(m, width, n_out, rows, center=center, pad_width=pad_width, tile=tile,
                             eps=params.fourier_eps, threads=threads, deviation=deviation,
                             out_given=not whole, sink=not whole)
        transform = mem.peak(sinos) + (mem.grids if subchunks > 1 and not mem.tiled else 0)
    elif backend == "fourier-gpu":
        from teravox.recon.backends import fourier_gpu

        transform = sinos + fourier_gpu.pinned_bytes(m, width, n_out, gpu_pairs) + (rows * n_out * n_out * 4) * whole
    else:  # TomoPy, TomoCuPy: padded copy, their own buffers and the result (not measured here)
        padded = rows * m * (width + 2 * pad_width) * 4
        transform = sinos + 3 * padded + 2 * rows * n_out * n_out * 4
    rings = 2 * n_out * n_out * 4 * rows if params.rings in ("fft", "wavelet-fft") else 0
    gathered = rows * n_out * n_out * itemsize if set(params.format) - {"hdf5"} else 0  # BlockSink
    return JOB_BASE_BYTES + cache + max(block + read, chain, transform + convert + rings + gathered)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox reconstruct",
        description="Pass 2 for one sinogram chunk: -log, 360°→180°, stripes, padding, reconstruction, "
                    "rings, circular mask and dtype conversion, as the plan says; writes recon_<J>.h5 "
                    "(and/or recon_<J>.zarr, recon_<J>_tiff, after the plan's formats).")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--chunk", required=True, type=int, metavar="J", help="sinogram chunk index (0-based)")
    p.add_argument("--projections", default=None, help="projections.h5 (default: <workdir>/projections.h5)")
    p.add_argument("--outdir", default=None, help="where to write recon_<J>.* (default: the plan's workdir)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def chunk_path(plan: dict, index: int, outdir: str | Path | None = None) -> Path:
    """recon_<index>.h5, the HDF5 piece."""
    return volume.piece_path(plan, "hdf5", index, planmod.workdir(plan, outdir))


def mapping_of(params, resolved: dict) -> DtypeMapping:  # noqa: ANN001
    rng = resolved.get("dtype_range") or [None, None]
    return DtypeMapping(params.dtype, rng[0], rng[1])


def read_sinograms(data: h5py.Dataset, rows: slice, path: Path, angles_per_read: int = READ_ANGLES) -> np.ndarray:
    """Rows of projections.h5's (angles, rows, columns) data as float32 (rows, angles,
    columns), read a block of angles at a time (no transposed copy of the whole), each
    block checked for non-finite values (StageError naming the file and rows)."""
    n_angles, n_cols = data.shape[0], data.shape[2]
    out = np.empty((rows.stop - rows.start, n_angles, n_cols), np.float32)
    for a0 in range(0, n_angles, angles_per_read):
        a1 = min(a0 + angles_per_read, n_angles)
        part = data[a0:a1, rows, :]
        if not np.isfinite(part).all():
            raise StageError(f"{path}: non-finite values in rows {rows.start}..{rows.stop} (a projection "
                             f"chunk file is damaged or was replaced; rerun preprocess and collect)")
        out[:, a0:a1, :] = part.transpose(1, 0, 2)
    return out


class BlockSink:
    """Where one subchunk's slices go, tile by tile (``write(s, rows, cols, values)``, float32
    values): converted to the output dtype, straight into the HDF5 piece; the OME-Zarr and
    TIFF pieces take whole slices, gathered here and written by :meth:`flush`."""

    def __init__(self, writers: dict[str, volume.PieceWriter], z0: int, rows: int, n: int,
                 mapping: DtypeMapping) -> None:
        self.h5 = writers.get("hdf5")
        self.others = [w for fmt, w in writers.items() if fmt != "hdf5"]
        self.z0, self.mapping = z0, mapping
        self.slices = np.empty((rows, n, n), np.dtype(mapping.dtype)) if self.others else None

    def write(self, s: int, rows: slice, cols: slice, values: np.ndarray) -> None:
        out = self.mapping.apply(values)
        if self.h5 is not None:
            self.h5.ds[self.z0 + s, rows, cols] = out
        if self.slices is not None:
            self.slices[s, rows, cols] = out

    def flush(self) -> None:
        for w in self.others:
            w.write(self.z0, self.slices)


def run_chunk(plan: dict, index: int, projections: str | Path | None = None,
              outdir: str | Path | None = None, progress: bool = False) -> list[Path]:
    params = planmod.params_of(plan)
    ch = planmod.chunk(plan, "sino_chunks", index)
    proj_path = Path(projections) if projections else output_path(plan)
    if not proj_path.exists():
        raise StageError(f"{proj_path}: projections file does not exist (run `teravox collect` first)")
    resolved = read_resolved(proj_path)
    geom = geometry(resolved)
    mapping = mapping_of(params, resolved)
    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    step = plan["sino_subchunk_rows"]
    batch_pairs = (plan.get("recon_device") or {}).get("batch_pairs")
    tile = plan.get("recon_tile")
    dtype = np.dtype(params.dtype)
    t0 = time.perf_counter()
    with h5py.File(proj_path, "r", rdcc_nbytes=READ_CACHE_BYTES) as fin, contextlib.ExitStack() as outputs:
        data = fin["/exchange/data"]
        quantity = data.attrs.get("quantity", "transmission")
        writers = {fmt: outputs.enter_context(volume.piece_writer(plan, fmt, index, outdir, dtype, geom.n_out))
                   for fmt in volume.formats(plan)}
        for b0 in bar(range(ch.start, ch.stop, step), desc=f"reconstruct chunk {index}",
                      unit="block", enable=progress):
            b1 = min(b0 + step, ch.stop)
            sink = BlockSink(writers, b0 - ch.start, b1 - b0, geom.n_out, mapping)
            reconstruct_block(Handover(read_sinograms(data, slice(b0, b1), proj_path, READ_ANGLES)), theta,
                              params, geom, quantity, batch_pairs, rows=np.arange(b0, b1), tile=tile,
                              write=sink.write)
            sink.flush()
        prov = provenance.record(stage="reconstruct", params=params.to_dict(), input=str(proj_path),
                                 chunk=ch.to_dict(), shape=[ch.size, geom.n_out, geom.n_out],
                                 data_attrs=mapping.to_attrs(), resolved=resolved,
                                 operations=steps(params, quantity),
                                 seconds=round(time.perf_counter() - t0, 3), plan_digest=digest(plan))
        for w in writers.values():  # data first, then the provenance that marks a piece complete
            w.finish(prov)
    return [volume.piece_path(plan, fmt, index, planmod.workdir(plan, outdir)) for fmt in volume.formats(plan)]


def _run(args: argparse.Namespace) -> int:
    from teravox.resources import reuse_freed_memory

    plan = planmod.load(args.plan)
    # Tiled jobs map every array above 4 MiB afresh: the NUFFT allocates each tile's oversampled
    # grid for one execute, and a heap that kept it grew by a grid per tile (measured).
    reuse_freed_memory(TILED_HEAP_LIMIT if plan.get("recon_tile") else 2**31 - 1)
    out = run_chunk(plan, args.chunk, args.projections, args.outdir, progress=args.progress)
    print(f"wrote {', '.join(map(str, out))}")
    return 0


def chunk_problem(plan: dict, index: int, outdir: str | Path | None = None) -> str | None:
    """Why chunk ``index``'s pieces cannot be used (one missing, incomplete, made for another
    plan), as '<piece> <why>', or None when every format's piece is complete."""
    wd, key = planmod.workdir(plan, outdir), digest(plan)
    for fmt in volume.formats(plan):
        why = volume.piece_problem(plan, fmt, index, key, wd)
        if why:
            return f"{volume.piece_path(plan, fmt, index, wd).name} {why}"
    return None


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())

