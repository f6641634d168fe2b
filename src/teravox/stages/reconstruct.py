"""``teravox reconstruct --plan plan.json --chunk J``: the sinogram-chunk job (pass 2).

Reads chunk J's detector rows from the virtual ``projections.h5`` in subchunks of
the plan's size, runs the pass-2 chain (:mod:`teravox.recon.pipeline`), converts to
the output dtype with the volume's one mapping, and writes ``recon_<J>.h5``
atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.errors import StageError
from teravox.io import provenance
from teravox.io.atomic import atomic_path
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
                    "rings, circular mask and dtype conversion, as the plan says; writes recon_<J>.h5.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--chunk", required=True, type=int, metavar="J", help="sinogram chunk index (0-based)")
    p.add_argument("--projections", default=None, help="projections.h5 (default: <workdir>/projections.h5)")
    p.add_argument("--outdir", default=None, help="where to write recon_<J>.h5 (default: the plan's workdir)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def chunk_path(plan: dict, index: int, outdir: str | Path | None = None) -> Path:
    return planmod.workdir(plan, outdir) / plan["outputs"]["recon_chunk"].format(index=index)


def mapping_of(params, resolved: dict) -> DtypeMapping:  # noqa: ANN001
    rng = resolved.get("dtype_range") or [None, None]
    return DtypeMapping(params.dtype, rng[0], rng[1])


def run_chunk(plan: dict, index: int, projections: str | Path | None = None,
              outdir: str | Path | None = None, progress: bool = False) -> Path:
    params = planmod.params_of(plan)
    ch = planmod.chunk(plan, "sino_chunks", index)
    proj_path = Path(projections) if projections else output_path(plan)
    if not proj_path.exists():
        raise StageError(f"{proj_path}: projections file does not exist (run `teravox collect` first)")
    resolved = read_resolved(proj_path)
    geom = geometry(resolved)
    mapping = mapping_of(params, resolved)
    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    out = chunk_path(plan, index, outdir)
    step = plan["sino_subchunk_rows"]
    batch_pairs = (plan.get("recon_device") or {}).get("batch_pairs")
    t0 = time.perf_counter()
    with h5py.File(proj_path, "r", rdcc_nbytes=64 * 2**20) as fin:
        data = fin["/exchange/data"]
        quantity = data.attrs.get("quantity", "transmission")
        n = geom.n_out
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            ds = f.create_dataset("/exchange/data", shape=(ch.size, n, n), dtype=np.dtype(params.dtype),
                                  chunks=(1, min(n, 1024), min(n, 1024)))
            for b0 in bar(range(ch.start, ch.stop, step), desc=f"reconstruct chunk {index}",
                          unit="block", enable=progress):
                b1 = min(b0 + step, ch.stop)
                block = np.ascontiguousarray(data[:, b0:b1, :].transpose(1, 0, 2))
                if not np.isfinite(block).all():
                    raise StageError(f"{proj_path}: non-finite values in rows {b0}..{b1} (a projection "
                                     f"chunk file is damaged or was replaced; rerun preprocess and collect)")
                slices = reconstruct_block(block, theta, params, geom, quantity, batch_pairs)
                del block
                ds[b0 - ch.start:b1 - ch.start] = mapping.apply(slices)
            for key, value in mapping.to_attrs().items():
                ds.attrs[key] = value
            provenance.write(f, stage="reconstruct", params=params.to_dict(), input=str(proj_path),
                             chunk=ch.to_dict(), resolved=resolved, operations=steps(params, quantity),
                             seconds=round(time.perf_counter() - t0, 3), plan_digest=digest(plan))
    return out


def _run(args: argparse.Namespace) -> int:
    from teravox.resources import reuse_freed_memory

    plan = planmod.load(args.plan)
    reuse_freed_memory()
    out = run_chunk(plan, args.chunk, args.projections, args.outdir, progress=args.progress)
    print(f"wrote {out}")
    return 0


def chunk_problem(plan: dict, index: int, outdir: str | Path | None = None) -> str | None:
    """Why recon_<index>.h5 cannot be used (missing, incomplete, another plan), or None."""
    c = plan["sino_chunks"][index]
    return provenance.output_problem(chunk_path(plan, index, outdir), "reconstruct", digest(plan),
                                     (c["stop"] - c["start"], None, None))


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())

