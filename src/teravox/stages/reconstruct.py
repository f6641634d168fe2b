"""``teravox reconstruct --plan plan.json --chunk J``: the sinogram-chunk job (pass 2).

Reads chunk J's detector rows from the virtual ``projections.h5`` in subchunks of
the plan's size, runs the pass-2 chain (:mod:`teravox.recon.pipeline`), converts to
the output dtype with the volume's one mapping, and writes its piece of each of the
plan's formats atomically (:mod:`teravox.io.volume`): ``recon_<J>.h5``, the chunk
files of the OME-Zarr volume in ``recon_<J>.zarr``, the slice files of the TIFF stack
in ``recon_<J>_tiff``.
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
from teravox.errors import StageError
from teravox.io import provenance, volume
from teravox.post.dtype import DtypeMapping
from teravox.progress import bar
from teravox.recon.pipeline import reconstruct_block, steps
from teravox.stages._common import cli_entry
from teravox.stages.collect import geometry, output_path, read_resolved
from teravox.stages.preprocess import digest


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
    dtype = np.dtype(params.dtype)
    t0 = time.perf_counter()
    with h5py.File(proj_path, "r", rdcc_nbytes=64 * 2**20) as fin, contextlib.ExitStack() as outputs:
        data = fin["/exchange/data"]
        quantity = data.attrs.get("quantity", "transmission")
        writers = [outputs.enter_context(volume.piece_writer(plan, fmt, index, outdir, dtype, geom.n_out))
                   for fmt in volume.formats(plan)]
        for b0 in bar(range(ch.start, ch.stop, step), desc=f"reconstruct chunk {index}",
                      unit="block", enable=progress):
            b1 = min(b0 + step, ch.stop)
            block = np.ascontiguousarray(data[:, b0:b1, :].transpose(1, 0, 2))
            if not np.isfinite(block).all():
                raise StageError(f"{proj_path}: non-finite values in rows {b0}..{b1} (a projection "
                                 f"chunk file is damaged or was replaced; rerun preprocess and collect)")
            slices = mapping.apply(reconstruct_block(block, theta, params, geom, quantity, batch_pairs,
                                                      rows=np.arange(b0, b1)))
            del block
            for w in writers:
                w.write(b0 - ch.start, slices)
        prov = provenance.record(stage="reconstruct", params=params.to_dict(), input=str(proj_path),
                                 chunk=ch.to_dict(), shape=[ch.size, geom.n_out, geom.n_out],
                                 data_attrs=mapping.to_attrs(), resolved=resolved,
                                 operations=steps(params, quantity),
                                 seconds=round(time.perf_counter() - t0, 3), plan_digest=digest(plan))
        for w in writers:  # data first, then the provenance that marks a piece complete
            w.finish(prov)
    return [volume.piece_path(plan, fmt, index, planmod.workdir(plan, outdir)) for fmt in volume.formats(plan)]


def _run(args: argparse.Namespace) -> int:
    from teravox.resources import reuse_freed_memory

    plan = planmod.load(args.plan)
    reuse_freed_memory()
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

