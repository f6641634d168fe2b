"""``teravox merge --plan plan.json``: the volume in each of the plan's formats.

HDF5: streams z-blocks from the ``recon_<j>.h5`` files into ``/exchange/data`` (chunked,
optionally compressed) — never the whole volume in memory — or, with ``--virtual``,
writes a virtual dataset over the chunk files.  Optional pyramid: mean-downsampled
levels ``/exchange/data_2x``, ``_4x``, … beside the full volume.

OME-Zarr and TIFF: the reconstruct jobs already wrote the voxels; merge links their
pieces' files into ``<scan>_recon.zarr`` / ``<scan>_recon_tiff/`` (no copy), and adds the
pyramid, the metadata and the provenance (:mod:`teravox.io.omezarr`,
:mod:`teravox.io.tiffstack`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import omezarr, pieces, provenance, tiffstack, volume
from teravox.io.atomic import atomic_path
from teravox.io.virtual import concat_virtual
from teravox.progress import bar
from teravox.stages._common import cli_entry
from teravox.stages.reconstruct import chunk_path, chunk_problem

#: Peak of a job besides its block: Python, numpy, h5py and teravox (measured with
#: benchmarks/scale.py as the intercept of peak against block size).
JOB_BASE_BYTES = 62 * 2**20


def straddles(plan: dict, block_rows: int) -> bool:
    """Whether a z-block of ``block_rows`` rows would span two recon chunk files (merge then
    holds the parts beside their concatenation)."""
    return any(c["start"] % block_rows for c in plan["sino_chunks"][1:])


def formats_peak_bytes(params: Params, zarr_chunks: list[int] | None, n: int) -> int:
    """Peak memory of merge's Zarr and TIFF work (linking needs none): the pyramid's tiles
    (:func:`teravox.io.omezarr.pyramid_bytes`), or a BigTIFF's slice being copied."""
    from teravox.io.omezarr import pyramid_bytes

    itemsize = np.dtype(params.dtype).itemsize
    need = 0
    if zarr_chunks and params.pyramid:
        need = pyramid_bytes(tuple(zarr_chunks), itemsize)
    if "tiff" in params.format and params.tiff_layout == "bigtiff":
        need = max(need, 2 * n * n * itemsize)
    return JOB_BASE_BYTES + need


def peak_bytes(n: int, block_rows: int, itemsize: int, pyramid: int = 0, straddles: bool = True) -> int:
    """Peak of the merge job streaming ``block_rows`` z-rows of n × n slices (``itemsize``
    bytes each): the block as read (and, where it straddles two chunk files, its parts
    beside their concatenation), and for a pyramid its float32 copy and first level."""
    block = block_rows * n * n * itemsize
    levels = (block_rows * n * n * 4) * (1 + 1 / 4) if pyramid else 0
    return int(JOB_BASE_BYTES + block * (2 if straddles else 1) + levels)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox merge",
        description="Join the reconstructed chunks into the volume of each of the plan's formats: "
                    "<scan>_recon.h5 (streamed block by block, or a virtual dataset), <scan>_recon.zarr "
                    "(OME-Zarr) and <scan>_recon_tiff/ (TIFF slices), whose voxels the reconstruct jobs "
                    "wrote and which merge links into place; with a multiscale pyramid for viewers.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--chunks-dir", default=None, help="where the recon_<j>.* pieces are (default: workdir)")
    p.add_argument("-o", "--output", default=None, help="HDF5 volume file (default: <outdir>/<scan>_recon.h5)")
    p.add_argument("--outdir", default=None, help="where the volumes go (default: the plan's workdir)")
    p.add_argument("--virtual", action="store_true", help="virtual dataset over the chunk files (no copy)")
    p.add_argument("--timings", default=None, help="JSON file of stage timings to record in the provenance")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def output_path(plan: dict, output: str | Path | None = None) -> Path:
    """The HDF5 volume."""
    return Path(output) if output else planmod.workdir(plan) / plan["outputs"]["volume"]


def _sources(plan: dict, chunks_dir: str | Path | None) -> list[tuple[Path, tuple[int, ...], dict, dict]]:
    """(path, shape, data attributes, provenance) of every recon_<j>.h5 (checked by check_pieces)."""
    out = []
    for c in plan["sino_chunks"]:
        path = chunk_path(plan, c["index"], chunks_dir)
        with h5py.File(path, "r") as f:
            ds = f["/exchange/data"]
            out.append((path, ds.shape, dict(ds.attrs), provenance.read(f)))
    return out


def pyramid_factors(levels: int) -> list[int]:
    return [2**i for i in range(1, levels + 1)]


def check_pieces(plan: dict, chunks_dir: str | Path | None) -> None:
    """StageError naming every piece that is missing, incomplete or made for another plan."""
    problems = [why for c in plan["sino_chunks"] if (why := chunk_problem(plan, c["index"], chunks_dir))]
    if problems:
        raise StageError(f"cannot merge: {'; '.join(problems)} — rerun `teravox reconstruct` for those chunks")


def run(plan: dict, chunks_dir: str | Path | None = None, output: str | Path | None = None,
        virtual: bool | None = None, timings: dict | None = None, progress: bool = False,
        outdir: str | Path | None = None) -> dict[str, Path]:
    """Every format's volume; returns them by format."""
    params = planmod.params_of(plan)
    check_pieces(plan, chunks_dir)
    def facts() -> dict:  # after the copy: naming the backend imports it (~20 MB the copy would carry)
        return dict(params=params.to_dict(), plan=plan, input=plan["scan"]["path"],
                    backend=_backend_name(params.backend), timings=timings or {})

    out = volume.volume_paths(plan, planmod.workdir(plan, outdir))
    if "hdf5" in out:
        out["hdf5"] = Path(output) if output else out["hdf5"]
        _merge_hdf5(plan, chunks_dir, out["hdf5"], virtual, facts, progress)
    for fmt in ("zarr", "tiff"):
        if fmt in out:
            t1 = time.perf_counter()
            how = _merge_pieces(plan, fmt, chunks_dir, out[fmt], facts, progress)
            print(f"{out[fmt].name}: {how} in {time.perf_counter() - t1:.1f} s")
    return out


def _merge_pieces(plan: dict, fmt: str, chunks_dir: str | Path | None, out: Path,
                  facts: Callable[[], dict], progress: bool) -> str:
    """The OME-Zarr store or the TIFF stack from the jobs' pieces; says how the files got there."""
    params = planmod.params_of(plan)
    dirs = [volume.piece_path(plan, fmt, c["index"], planmod.workdir(plan, chunks_dir)) for c in plan["sino_chunks"]]
    first = pieces.read_marker(dirs[0])
    resolved, data_attrs = first.get("resolved", {}), first.get("data_attrs", {})
    prov = provenance.record(stage="merge", resolved=resolved, center=resolved.get("center"),
                             data_attrs=data_attrs, chunks=[d.name for d in dirs], **facts())
    n = int(first["shape"][1])  # the slice size collect resolved
    shape, dtype = (plan["recon_shape"][0], n, n), np.dtype(params.dtype)
    pixel = plan["physics"].get("pixel_size_m")
    if fmt == "zarr":
        return str(omezarr.assemble(out, dirs, shape, volume.zarr_chunks(plan, n), dtype, params.compression,
                                    params.pyramid, pixel, plan["name"], data_attrs, prov, progress))
    if params.tiff_layout == "slices":
        return str(tiffstack.assemble_slices(out, dirs, prov))
    tiffstack.assemble_bigtiff(out, dirs, shape, dtype, pixel, prov, progress)
    return f"{shape[0]} slices copied into one BigTIFF"


def _merge_hdf5(plan: dict, chunks_dir: str | Path | None, out: Path, virtual: bool | None,
                facts: Callable[[], dict], progress: bool) -> None:
    params = planmod.params_of(plan)
    virtual = params.merge == "virtual" if virtual is None else virtual
    sources = _sources(plan, chunks_dir)
    shape = (sum(s[1][0] for s in sources),) + tuple(sources[0][1][1:])
    attrs, resolved = sources[0][2], sources[0][3].get("resolved", {})
    with h5py.File(sources[0][0], "r") as f0:
        dtype = f0["/exchange/data"].dtype
    t0 = time.perf_counter()
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        if virtual:
            ds = concat_virtual(f, "/exchange/data", [(p, "/exchange/data", s) for p, s, _, _ in sources],
                                dtype=dtype)
        else:
            ds = f.create_dataset("/exchange/data", shape=shape, dtype=dtype,
                                  chunks=(1, min(shape[1], 1024), min(shape[2], 1024)),
                                  compression=None if params.compression == "none" else params.compression)
        for key, value in attrs.items():
            ds.attrs[key] = value
        _copy_and_pyramid(f, ds, sources, shape, dtype, plan, params.pyramid, not virtual, progress)
        provenance.write(f, stage="merge", resolved=resolved, center=resolved.get("center"),
                         chunks=[str(p) for p, *_ in sources], virtual=int(virtual),
                         seconds=round(time.perf_counter() - t0, 3), **facts())


def _backend_name(name: str) -> str:
    try:
        from teravox.recon.backends import resolve

        return resolve(name)
    except Exception:  # noqa: BLE001 - provenance only; the reconstruct jobs already succeeded
        return name


def _copy_and_pyramid(f: h5py.File, ds: h5py.Dataset, sources: list, shape: tuple[int, ...],
                      dtype: np.dtype, plan: dict, levels: int, copy: bool, progress: bool) -> None:
    """Stream z-blocks through memory once: copy them (unless virtual) and downsample them."""
    from teravox.post.pyramid import downsample_mean, level_shapes

    factors = pyramid_factors(levels)
    step = plan.get("merge_block_rows", 64)
    if factors:
        step = max(factors[-1], step // factors[-1] * factors[-1])
        level_ds = [f.create_dataset(f"/exchange/data_{fac}x", shape=shp, dtype=np.float32,
                                     chunks=True)
                    for fac, shp in zip(factors, level_shapes(shape, levels), strict=True)]
    elif not copy:
        return
    # global z → (source file, local z): blocks may straddle chunk files
    bounds = np.cumsum([0] + [s[1][0] for s in sources])
    files = [h5py.File(p, "r") for p, *_ in sources]
    try:
        for z0 in bar(range(0, shape[0], step), desc="merge", unit="block", enable=progress):
            z1 = min(z0 + step, shape[0])
            parts = []
            for i, fh in enumerate(files):
                a, b = max(z0, bounds[i]), min(z1, bounds[i + 1])
                if a < b:
                    parts.append(fh["/exchange/data"][a - bounds[i]:b - bounds[i]])
            block = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if copy:
                ds[z0:z1] = block
            for fac, lds in zip(factors, level_ds if factors else [], strict=True):
                small = downsample_mean(block.astype(np.float32), fac)
                lz0 = z0 // fac
                lds[lz0:lz0 + small.shape[0]] = small
            del block, parts
    finally:
        for fh in files:
            fh.close()


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    timings = json.loads(Path(args.timings).read_text()) if args.timings else None
    out = run(plan, args.chunks_dir, args.output, True if args.virtual else None, timings, args.progress,
              args.outdir)
    print(f"wrote {', '.join(str(p) for p in out.values())}")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
