"""A whole volume from ``projections.h5`` to the merged file: pass 2 and merge, per backend and format.

    python benchmarks/volume.py                                        # 512³ on fourier, a few minutes
    python benchmarks/volume.py --n 1024 --rows 1024 --formats hdf5 zarr tiff   # the formats, HDF5 the reference
    python benchmarks/volume.py --n 2048 --rows 2048 --angles 3072 --backends fourier fourier-gpu \\
        --dtype uint16 --memory 32G --dir /scratch/bench                # the issue's 2048³ case

The projections are transmissions ``exp(−p)`` of exact line integrals of
``default_phantom(n)`` at ``--distinct`` detector rows, repeated along the rows up to
``--rows`` by an HDF5 virtual dataset: a 2048³ scan's 48 GiB of float32 projections would
not fit beside the volume on a 64 GiB disk, and pass 2 costs the same whatever the rows
hold.  Reads therefore come from the page cache (the distinct rows are a few hundred MiB),
which leaves the reconstruction, the post-processing, the dtype conversion and the writes
to be measured.  The plan is the usual one (``teravox plan`` on that scan, no flat/dark,
centre given), ``projections.h5`` is written by the collect stage's own
``write_projections``, and the reconstruct and merge jobs run through ``teravox run``'s
local executor (one process per sinogram chunk; one job per GPU for a GPU backend).

Printed per backend and volume format (``--formats``, each a run of its own with that one
format): the chunks, subchunks and GPU batches of the plan; seconds for the reconstruct
stage and for merge; slices per second; each job's peak RSS against the plan's estimate;
correlation of a middle slice with the phantom; and the largest difference from the first
run's volume over its range.  The first backend with the first format is the reference
(HDF5 by default: today's merge, which copies every voxel once more; for OME-Zarr and TIFF
the reconstruct jobs write the final files and merge links them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from teravox import graph
from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.io import open_scan
from teravox.io.virtual import concat_virtual
from teravox.io.volume import open_volume, volume_path
from teravox.resources import cpus_available
from teravox.runner.executor import LocalExecutor
from teravox.runner.pipeline import jobs_for, parallel_jobs
from teravox.stages.collect import write_projections
from teravox.synth.phantom import default_phantom

MIB, GIB = 2**20, 2**30


def write_tiled_scan(folder: Path, n: int, rows: int, angles: int, distinct: int) -> tuple[Path, np.ndarray]:
    """A DXchange scan of (angles, rows, n) float32 transmissions, ``distinct`` rows
    repeated; returns its path and the z (pixels from the middle) of the distinct rows."""
    theta = np.arange(angles) * 180.0 / angles
    z = (np.arange(distinct) - (distinct - 1) / 2) * (0.6 * n / max(distinct, 1))
    ph = default_phantom(n)
    src = folder / "distinct_rows.h5"
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("/data", shape=(angles, distinct, n), dtype=np.float32)
        for i, zi in enumerate(z):  # one row at a time: (angles, n) line integrals
            p = ph.line_integrals(np.deg2rad(theta), np.arange(n) - (n - 1) / 2, np.array([zi]),
                                  supersample=2)
            ds[:, i, :] = np.exp(-p.reshape(angles, n))
    scan = folder / "scan.h5"
    reps = -(-rows // distinct)
    with h5py.File(scan, "w") as f:
        tiled = concat_virtual(f, "/tiled", [(src, "/data", (angles, distinct, n))] * reps, axis=1)
        layout = h5py.VirtualLayout(shape=(angles, rows, n), dtype=np.float32)
        layout[...] = h5py.VirtualSource(tiled)[:, :rows, :]
        f.create_virtual_dataset("/exchange/data", layout)
        f["/exchange/theta"] = theta
    return scan, z


def run_backend(scan: Path, workdir: Path, backend: str, fmt: str, args: argparse.Namespace) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    with open_scan(scan) as s:
        n = s.shape[2]
        params = from_mapping({"flat_dark": False, "backend": backend, "center": (n - 1) / 2,
                               "memory": args.memory, "dtype": args.dtype, "sino_chunks": args.sino_chunks,
                               "gpu_memory": args.gpu_memory, "format": [fmt], "pyramid": args.pyramid})
        plan = planmod.make_plan(s, params, workdir=workdir)
    plan_path = workdir / "plan.json"
    planmod.save(plan, plan_path)
    shape = plan["recon_shape"]
    write_projections(plan, params, [(scan, "/exchange/data", (len(plan["theta_deg"]), shape[0], n))],
                      workdir / plan["outputs"]["projections"])
    (workdir / "logs").mkdir(exist_ok=True)
    (workdir / "timings.json").write_text("{}")
    executor = LocalExecutor(parallel_jobs(plan["memory"]["budget"], args.jobs), cpus=cpus_available())
    out: dict = {"plan": plan, "seconds": {}, "peaks": {}}
    for name in ("reconstruct", "merge"):
        stage = next(st for st in graph.STAGES if st.name == name)
        jobs, _ = jobs_for(stage, plan, plan_path, workdir, skip=False)
        t0 = time.perf_counter()
        results = executor.run_jobs(jobs)
        out["seconds"][name] = time.perf_counter() - t0
        bad = [r for r in results if not r.ok]
        if bad or len(results) < len(jobs):
            log = bad[0].job.log if bad else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise SystemExit(f"{name} failed with {backend}, {fmt}: {tail}")
        out["peaks"][name] = max(r.peak_rss for r in results)
    out["volume"] = volume_path(plan, fmt, workdir)
    return out


def middle_slice(volume: Path) -> np.ndarray:
    with open_volume(volume) as (ds, _prov):
        return np.asarray(ds[ds.shape[0] // 2]).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="detector columns = slice size (default 512)")
    p.add_argument("--rows", type=int, default=512, help="slices (default 512)")
    p.add_argument("--angles", type=int, default=None, help="projections over 180° (default 1.5·n)")
    p.add_argument("--distinct", type=int, default=8, help="distinct detector rows, repeated (default 8)")
    p.add_argument("--backends", nargs="+", default=["fourier"],
                   help="backends, the first the reference (default fourier)")
    p.add_argument("--formats", nargs="+", default=["hdf5"], choices=["hdf5", "zarr", "tiff"],
                   help="volume formats, one run each, the first the reference (default hdf5)")
    p.add_argument("--pyramid", type=int, default=0, help="pyramid levels (HDF5, OME-Zarr; default 0)")
    p.add_argument("--dtype", default="float32", choices=["float32", "uint16", "uint8"])
    p.add_argument("--memory", default="4G", help="memory budget per job (default 4G)")
    p.add_argument("--gpu-memory", default=None, help="GPU memory per job (default: the device's)")
    p.add_argument("--sino-chunks", type=int, default=None, help="sinogram chunks (default: the plan's)")
    p.add_argument("--jobs", type=int, default=None, help="jobs at once (default: as cores and memory allow)")
    p.add_argument("--dir", default=None, help="working folder (default: a temporary one, deleted)")
    args = p.parse_args(argv)
    angles = args.angles or 3 * args.n // 2
    cmd = "python benchmarks/volume.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd}")
    print(f"# {os.cpu_count()} CPUs here, {cpus_available()} usable; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="teravox-volume-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        scan, z = write_tiled_scan(root, args.n, args.rows, angles, args.distinct)
        print(f"# projections: {angles} × {args.rows} × {args.n} float32 ({angles * args.rows * args.n * 4 / GIB:.1f} "
              f"GiB as read), {args.distinct} distinct rows, written in {time.perf_counter() - t0:.1f} s")
        truth = default_phantom(args.n).slice(float(z[(args.rows // 2) % args.distinct]), args.n, supersample=2)
        yy, xx = np.mgrid[: args.n, : args.n] - (args.n - 1) / 2
        inside = np.hypot(xx, yy) < 0.9 * args.n / 2
        print(f"{'backend':<13}{'format':<7}{'chunks':>7}{'sub':>5}{'pairs':>6}{'recon s':>9}{'merge s':>9}{'total s':>9}"
              f"{'slices/s':>10}{'peak MiB':>10}{'est MiB':>9}{'merge MiB':>10}{'est':>6}{'corr':>8}"
              f"{'max|Δ|/range':>14}")
        ref = None
        for backend, fmt in ((b, f) for b in args.backends for f in args.formats):
            r = run_backend(scan, root / f"{backend}-{fmt}", backend, fmt, args)
            plan, sec = r["plan"], r["seconds"]
            rec = middle_slice(r["volume"])
            corr = float(np.corrcoef(rec[inside], truth[inside])[0, 1])
            diff = "reference"
            if ref is None:
                ref = rec
            else:
                diff = f"{np.max(np.abs(rec - ref)) / (ref.max() - ref.min()):.1e}"
            dev = plan.get("recon_device") or {}
            total = sec["reconstruct"] + sec["merge"]
            merge_est = "-" if fmt == "hdf5" else f"{plan['memory']['merge_zarr_tiff_peak_estimate'] / MIB:.0f}"
            print(f"{backend:<13}{fmt:<7}{len(plan['sino_chunks']):>7}{plan['sino_subchunk_rows']:>5}"
                  f"{dev.get('batch_pairs') or '-':>6}{sec['reconstruct']:>9.1f}{sec['merge']:>9.1f}{total:>9.1f}"
                  f"{args.rows / sec['reconstruct']:>10.1f}{r['peaks']['reconstruct'] / MIB:>10.0f}"
                  f"{plan['memory']['reconstruct_peak_estimate'] / MIB:>9.0f}{r['peaks']['merge'] / MIB:>10.0f}"
                  f"{merge_est:>6}{corr:>8.4f}{diff:>14}", flush=True)
            shutil.rmtree(root / f"{backend}-{fmt}")  # keep the disk free for the next
        print("# recon s: the reconstruct stage (every sinogram-chunk job, reading projections.h5 and writing "
              "its piece: recon_<j>.h5, or the OME-Zarr chunks / TIFF slices); merge s: making the volume "
              "(HDF5: a copy; OME-Zarr, TIFF: links, pyramid, metadata); slices/s over the reconstruct stage.")
        print("# peak / est MiB: a reconstruct job's peak RSS and the plan's estimate; merge MiB / est: merge's "
              "peak and, for OME-Zarr/TIFF, the plan's merge_zarr_tiff_peak_estimate.")
        print("# corr: middle slice against the phantom inside 90 % of the radius; max|Δ|/range: middle "
              "slice against the first run's.")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
