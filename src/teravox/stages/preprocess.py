"""``teravox preprocess --plan plan.json --chunk K``: the projection-chunk job (pass 1).

Reads chunk K's projections block by block (the plan's subchunk rows plus overlap
rows above and below, full width), applies the pass-1 chain
(:mod:`teravox.prep.pipeline`) and writes the rows without their overlap into
``proj_<K>.h5`` (float32), atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import open_scan_for, provenance
from teravox.io.atomic import atomic_path
from teravox.io.provenance import plan_digest as digest
from teravox.prep.pipeline import (
    Buffers,
    Counts,
    Physics,
    correct_normalized,
    read_normalized,
    steps,
)
from teravox.progress import bar
from teravox.stages._common import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox preprocess",
        description="Pass 1 for one projection chunk: flat/dark, I0, outliers, stripes, air correction "
                    "and Paganin, as the plan says; writes proj_<K>.h5.")
    p.add_argument("--plan", required=True, help="plan.json written by `teravox plan`")
    p.add_argument("--chunk", required=True, type=int, metavar="K", help="projection chunk index (0-based)")
    p.add_argument("--outdir", default=None, help="where to write proj_<K>.h5 (default: the plan's workdir)")
    p.add_argument("--shifts", default=None, help="shifts.json of stitch-align (multi-scan only)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def chunk_path(plan: dict, index: int, outdir: str | Path | None = None) -> Path:
    return planmod.workdir(plan, outdir) / plan["outputs"]["proj_chunk"].format(index=index)


# -- memory model (bytes), measured with benchmarks/scale.py -----------------------------------
#: Peak of a job besides its block arrays: Python, numpy, scipy, h5py, teravox and HDF5's
#: buffers (the intercept of the measured peak against the block's pixels, 0.5 to 67
#: Mpixel blocks: 116-122 MiB; a job on a tiny scan peaks at 96 MiB).
JOB_BASE_BYTES = 120 * 2**20
STRIPE_ALLOWANCE_PER_PX = 20


def peak_bytes(params: Params, n_proj: int, rows: int, cols: int, raw_itemsize: int,
               n_flat_frames: int) -> int:
    """Peak of a projection-chunk job whose blocks hold ``n_proj`` projections × ``rows``
    detector rows (overlap included) × ``cols`` columns.

    The job's two block arrays (:class:`teravox.prep.pipeline.Buffers`): the raw frames
    (``raw_itemsize`` per pixel) and the float32 block that every correction works in,
    a projection at a time.  Flats and darks: their frames as read and the float64 mean of
    one field; one projection's work buffers (Paganin's padded spectrum, the outlier
    medians).  Pass-1 stripe removal (row blocks, sinogram by sinogram in threads) is an
    allowance, not a model: algotom's per-sinogram arrays, freed in the worker threads'
    own heaps, and the copy of the kept rows for writing came to 15-16 bytes per pixel more
    (measured with tests/test_pass1.py's scan); 20 are counted."""
    px = n_proj * rows * cols
    per_px = raw_itemsize + 4 + STRIPE_ALLOWANCE_PER_PX * (params.stripe_prep != "off")
    fields = rows * cols * (n_flat_frames * raw_itemsize + 8 + 3 * 4) if params.flat_dark else 0
    one = rows * cols * (4 * 8 if params.paganin else 4 * 4 if params.outliers else 2)
    return JOB_BASE_BYTES + px * per_px + fields + one


def hdf5_chunks(n_proj: int, n_rows: int, n_cols: int, block: int | None = None) -> tuple[int, int, int]:
    """~4 MiB HDF5 chunks spanning a few rows and many angles, so both the pass-1 writes
    (all angles of a row block, or whole chunks of a ``block`` of projections) and the
    pass-2 reads (all angles of a few rows) touch few chunks."""
    return (planmod.hdf5_chunk_angles(n_proj, n_rows, n_cols, block), max(1, min(n_rows, 8)), min(n_cols, 4096))


def run_chunk(plan: dict, index: int, outdir: str | Path | None = None, progress: bool = False,
              shifts: str | Path | None = None) -> Path:
    """Pass 1 of projection chunk ``index``: one scan, or (a multi-scan plan) several
    scans normalised, placed at their shifts and blended; then the rest of the chain."""
    params = planmod.params_of(plan)
    sel = plan["selection"]
    ch = planmod.chunk(plan, "proj_chunks", index)
    all_idx = np.asarray(sel["proj_indices"], dtype=np.int64)
    idx = all_idx[ch.start:ch.stop]
    c0, c1 = sel["cols"]
    if "scans" in plan:
        from teravox.stitch.source import StitchedSource

        shifts_path = Path(shifts) if shifts else planmod.workdir(plan) / "shifts.json"
        if not shifts_path.exists():
            raise StageError(f"{shifts_path}: shifts file does not exist (run `teravox stitch-align` first)")
        with StitchedSource(plan, shifts_path, params) as src:
            def read(projs: slice, rows: slice, keep: slice) -> tuple[np.ndarray, Counts]:
                block, counts = src.read_normalized(idx[projs], rows)  # counts include overlap rows
                return block[:, :, c0:c1], counts

            return _write_chunk(plan, index, outdir, progress, read, air_level=None,
                                input=[s["path"] for s in plan["scans"]], shifts=str(shifts_path.resolve()))
    with open_scan_for(plan["scan"]["path"], params) as scan:
        planmod.check_scan_matches(plan, scan)
        # what every chunk must share, so that the chunking changes nothing
        i0_reference = float(np.mean(scan.i0[all_idx])) if scan.i0 is not None else None
        air_level = _air_levels(scan, params, plan, idx) if params.i0 == "air" else None
        # the largest block's arrays, allocated once: every block reads and works in them
        buffers = Buffers.for_blocks(*block_shape(plan, ch.size), scan.dtype)

        def read(projs: slice, rows: slice, keep: slice) -> tuple[np.ndarray, Counts]:
            return read_normalized(scan, params, idx[projs], rows, slice(c0, c1), i0_reference=i0_reference,
                                   count_rows=keep, buffers=buffers)

        return _write_chunk(plan, index, outdir, progress, read, air_level=air_level,
                            input=plan["scan"]["path"], proj_indices=[int(idx[0]), int(idx[-1])])


def block_shape(plan: dict, n_proj: int) -> tuple[int, int, int]:
    """(projections, rows with overlap, columns) of the largest block of a chunk of
    ``n_proj`` projections."""
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    n_rows = r1 - r0
    pblock = plan.get("proj_subchunk_projections")
    if pblock:
        return min(pblock, n_proj), n_rows, c1 - c0
    return n_proj, min(n_rows, plan["proj_subchunk_rows"] + 2 * plan["overlap_rows"]), c1 - c0


def _write_chunk(plan: dict, index: int, outdir: str | Path | None, progress: bool,
                 read: Callable[[slice, slice, slice], tuple[np.ndarray, Counts]], air_level: np.ndarray | None,
                 **provenance_extra: object) -> Path:
    """The block loop every projection-chunk job shares: ``read(projections, rows, keep)``
    gives the normalised (I0-corrected) block, projections of the chunk × detector rows plus
    overlap, with patched pixels counted in the rows ``keep`` of the block; the rest of the
    chain runs on it and the rows without their overlap go into
    ``proj_<index>.h5``, atomically.  Blocks are the plan's: all projections of the chunk
    × a band of rows plus overlap, or (``proj_subchunk_projections``) a few projections
    at full height, which need no overlap."""
    params = planmod.params_of(plan)
    ch = planmod.chunk(plan, "proj_chunks", index)
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    n_proj, n_rows, n_cols = ch.size, r1 - r0, c1 - c0
    overlap, block = plan["overlap_rows"], plan["proj_subchunk_rows"]
    pblock = plan.get("proj_subchunk_projections")
    if pblock:
        blocks = [(slice(p0, min(p0 + pblock, n_proj)), 0, n_rows, 0, n_rows) for p0 in range(0, n_proj, pblock)]
    else:
        blocks = [(slice(0, n_proj), b0, min(b0 + block, n_rows), max(0, b0 - overlap),
                   min(n_rows, b0 + block + overlap)) for b0 in range(0, n_rows, block)]
    physics = Physics(**plan["physics"])
    out = chunk_path(plan, index, outdir)
    t0 = time.perf_counter()
    counts = Counts()
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("/exchange/data", shape=(n_proj, n_rows, n_cols), dtype=np.float32,
                              chunks=hdf5_chunks(n_proj, n_rows, n_cols, pblock))
        ds.attrs["quantity"] = "transmission"
        f.create_dataset("/exchange/theta", data=np.asarray(plan["theta_deg"])[ch.start:ch.stop])
        for projs, b0, b1, lo, hi in bar(blocks, desc=f"preprocess chunk {index}", unit="block",
                                         enable=progress):
            keep = slice(b0 - lo, b1 - lo)
            normalized, c = read(projs, slice(r0 + lo, r0 + hi), keep)
            _refuse_mostly_patched(c, normalized[:, keep].size, index, ch.start + projs.start,
                                   ch.start + projs.stop, r0 + b0, r0 + b1, provenance_extra)
            try:
                corrected = correct_normalized(normalized, params, c, physics=physics, inplace=True,
                                               air_level=None if air_level is None else air_level[projs])
            except ValueError as exc:  # a science function refused its input
                raise StageError(f"projection chunk {index}, projections {ch.start + projs.start}.."
                                 f"{ch.start + projs.stop}, rows {r0 + lo}..{r0 + hi}: {exc}") from None
            del normalized
            counts.add(c)
            kept = corrected[:, b0 - lo:b0 - lo + (b1 - b0), :]
            if not all(np.isfinite(img).all() for img in kept):  # a sentinel; the chain guards every step
                raise StageError(f"{out}: non-finite values after pass 1 in chunk {index}, projections "
                                 f"{ch.start + projs.start}..{ch.start + projs.stop}")
            ds[projs, b0:b1, :] = kept
            del corrected, kept
        provenance.write(f, stage="preprocess", params=params.to_dict(), chunk=ch.to_dict(),
                         corrections=steps(params), guarded={
                             "flat_le_dark_pixels": counts.flat_le_dark,
                             "nonfinite_pixels": counts.nonfinite,
                             "outlier_pixels": counts.outliers},
                         seconds=round(time.perf_counter() - t0, 3), plan_digest=pass1_digest(plan),
                         **provenance_extra)
    return out


def _refuse_mostly_patched(c: Counts, pixels: int, index: int, p0: int, p1: int, row0: int, row1: int,
                           where: dict) -> None:
    """StageError when flat/dark normalisation had to patch most of a block: no volume from it
    could be right (the plan checks a sample of the flats and darks; this sees every pixel)."""
    from teravox.io.validate import PATCHED_REFUSE_FRACTION

    bad = c.flat_le_dark + c.nonfinite
    if pixels and bad > PATCHED_REFUSE_FRACTION * pixels:
        raise StageError(f"{where.get('input')}: projection chunk {index}, projections {p0}..{p1}, rows "
                         f"{row0}..{row1}: {bad / pixels:.0%} of the pixels could not be normalised "
                         f"(flat ≤ dark {c.flat_le_dark}, NaN/Inf {c.nonfinite}); expected flats brighter "
                         "than darks and finite counts")


def _air_levels(scan, params, plan: dict, idx: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Each projection's air mean over the full (selected) height, from a narrow band read.

    Without ``i0_air_cols`` the band is chosen on the scan's first selected projection, so
    every chunk uses the same columns.
    """
    from teravox.prep import i0 as i0mod

    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    rows = slice(r0, r1)

    def normalized(indices: np.ndarray, cols: slice) -> np.ndarray:
        return read_normalized(scan, params, indices, rows, cols)[0]

    if params.i0_air_cols is not None:
        a, b = params.i0_air_cols
        band = (a, c1 - c0 if b == -1 else b)
    else:
        first = np.asarray(plan["selection"]["proj_indices"][:1])
        band = i0mod.find_air_cols(normalized(first, slice(c0, c1)), width=min(50, (c1 - c0) // 2))
    return i0mod.air_level(normalized(idx, slice(c0 + band[0], c0 + band[1])), (0, band[1] - band[0]))


#: what a projection-chunk file depends on besides the input and pass-1 parameters
PASS1_KEYS = ("format", "teravox_version", "scan", "inputs", "selection", "theta_deg", "angles_reordered",
              "physics", "proj_chunks", "overlap_rows", "scans", "stitch")


def pass1_digest(plan: dict) -> str:
    """Identifies what a projection-chunk file holds: the plan's digest restricted to the
    scan and its identity, the selection, the chunks and the input and pass-1 parameters —
    not pass 2's, so that a new centre, backend or output reuses pass 1."""
    from teravox.config import FIELDS

    key = {k: plan[k] for k in PASS1_KEYS if k in plan}
    key["params"] = {k: v for k, v in plan["params"].items()
                     if k in FIELDS and FIELDS[k].metadata["section"] in ("input", "prep")}
    return digest(key)


def _run(args: argparse.Namespace) -> int:
    from teravox.resources import reuse_freed_memory

    plan = planmod.load(args.plan)
    reuse_freed_memory()
    out = run_chunk(plan, args.chunk, args.outdir, progress=args.progress, shifts=args.shifts)
    with h5py.File(out, "r") as f:
        g = provenance.read(f)
    guarded = g.get("guarded", {})
    print(f"wrote {out} ({g.get('seconds', 0):.1f} s; guarded flat≤dark {guarded.get('flat_le_dark_pixels', 0)}, "
          f"non-finite {guarded.get('nonfinite_pixels', 0)}, outliers {guarded.get('outlier_pixels', 0)} pixels)")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
