"""Scale: ``teravox run`` on synthetic 2-row scans from 2048 to 24608 columns.

For each width N a synthetic scan of 2 detector rows × N columns at 1.5·N angles (24000
at 24608, the count of the seed's stitched dataset), centre given, run end to end with
``--memory`` (default 8G) and 1- and 2-slice sinogram subchunks.  Printed per width and
subchunk: each stage's peak memory as the plan predicted it beside the job's own VmHWM
(the reference: the model must be within 10 % of it, in both directions), the tile the
plan chose, the reconstruct stage's wall and CPU time per slice with their growth beside
N² log N (the reference curve), and the correlation and least-squares amplitude of the
reconstructed slices against the phantom, both binned to about 2048² (the phantom has
noise: per-pixel figures would fall with N for that reason alone).

    python benchmarks/scale.py                               # 2048 … 24608, 8G, subchunks 1 and 2
    python benchmarks/scale.py --widths 12288 --memory 4G --subchunks 1 2
    python benchmarks/scale.py --widths 2048 4096 --dir /tmp/scale --keep

The 24608 run needs ~7 GiB of disk and about half an hour on 2 cores; run it with
``nice`` on an otherwise quiet machine (the load average is printed at each run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

STAGES = ("preprocess", "collect", "reconstruct", "merge", "report")
SEED_ANGLES = {24608: 24000}  # the seed's stitched dataset: 24000 projections of 24608 columns
BINNED = 2048


def angles_for(width: int) -> int:
    return SEED_ANGLES.get(width, round(1.5 * width))


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def run(scan: Path, out: Path, width: int, memory: str, rows: int) -> dict:
    """``teravox run`` of one scan; the plan, each job's peak and CPU time, stage times."""
    cmd = [sys.executable, "-m", "teravox.cli", "run", "--scan", str(scan), "--out", str(out),
           "--memory", memory, "--center", str((width - 1) / 2), "--sino-subchunk-rows", str(rows),
           "--no-progress"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        line = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {"refused": line, "rc": res.returncode, "wall": wall}
    plan = json.loads((out / "plan.json").read_text())
    stages: dict[str, dict] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in STAGES and len(parts) >= 5:
            stages[parts[0]] = {"seconds": float(parts[3])}
    for stage in STAGES:
        peaks = [int(p.read_text()) for p in sorted((out / "logs").glob(f"{stage}*.peak"))]
        cpus = [float(p.read_text()) for p in sorted((out / "logs").glob(f"{stage}*.cpu"))]
        stages.setdefault(stage, {}).update(peak=max(peaks, default=0), cpu=sum(cpus))
    return {"plan": plan, "stages": stages, "wall": wall, "volume": out / plan["outputs"]["volume"]}


def binned_phantom(scan: Path, z: float, n: int, b: int, m: int) -> np.ndarray:
    """The phantom's slice at height z (pixels) averaged over b × b pixels, on the m × m
    grid of :func:`binned_slice`: the phantom scaled by 1/b across (not along z, where the
    slice's own supersampling must stay within a pixel), supersampled over each pixel."""
    from teravox.synth.phantom import Phantom

    with h5py.File(scan, "r") as f:
        ph = Phantom.from_json(f["/truth/phantom"][()])
    small = Phantom([replace(s, center=(s.center[0] / b, s.center[1] / b, s.center[2]),
                             semi_axes=(s.semi_axes[0] / b, s.semi_axes[1] / b, s.semi_axes[2]))
                     for s in ph.shapes])
    return small.slice(z, m, supersample=min(b, 2))  # mu stays per pixel of the fine grid


def binned_slice(ds: h5py.Dataset, z: int, b: int, m: int) -> np.ndarray:
    """Slice z of a volume averaged over b × b pixels, centred (m·b ≤ n, n − m·b even),
    read a strip of b rows at a time."""
    n = ds.shape[1]
    c0 = (n - m * b) // 2
    out = np.empty((m, m), np.float32)
    for i in range(m):
        strip = np.asarray(ds[z, c0 + i * b: c0 + (i + 1) * b, c0: c0 + m * b], dtype=np.float64)
        out[i] = strip.reshape(b, m, b).mean(axis=(0, 2))
    return out


def accuracy(volume: Path, scan: Path, n: int) -> tuple[float, float]:
    """Mean correlation and least-squares amplitude of the slices against the phantom, both
    binned to about BINNED², inside 90 % of the radius."""
    b = max(1, round(n / BINNED))
    m = n // b
    if (n - m * b) % 2:
        m -= 1
    yy, xx = np.mgrid[:m, :m] - (m - 1) / 2
    inside = np.hypot(xx, yy) < 0.9 * m / 2
    corrs, amps = [], []
    with h5py.File(volume, "r") as f:
        ds = f["/exchange/data"]
        for z in range(ds.shape[0]):
            rec = binned_slice(ds, z, b, m)[inside].astype(np.float64)
            gt = binned_phantom(scan, z - (ds.shape[0] - 1) / 2, n, b, m)[inside].astype(np.float64)
            corrs.append(float(np.corrcoef(rec, gt)[0, 1]))
            amps.append(float(rec @ gt / (gt @ gt)))
    return float(np.mean(corrs)), float(np.mean(amps))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[2048, 4096, 8192, 12288, 24608])
    p.add_argument("--memory", default="8G", help="the budget of every job (default 8G)")
    p.add_argument("--subchunks", type=int, nargs="+", default=[1, 2], help="sinogram subchunk rows")
    p.add_argument("--dir", type=Path, default=None, help="where scans and runs go (default: a temporary dir)")
    p.add_argument("--keep", action="store_true", help="keep scans and outputs")
    args = p.parse_args(argv)
    from teravox.synth.scan import write_scan

    cmd = "python benchmarks/scale.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd}")
    print(f"# {os.cpu_count()} CPUs, load average {load()} at start; budget {args.memory}; model: plan.json, "
          "measured: each job's VmHWM")
    work = args.dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"teravox-scale-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    rows_out = []
    print(f"{'N':>6}{'angles':>7}{'sub':>4}{'tile':>6}  " + "".join(f"{s[:7]:>17}" for s in STAGES)
          + "   (predicted/measured MiB, ratio)")
    for n in args.widths:
        scan = work / f"scan_{n}.h5"
        angles = angles_for(n)
        if not scan.exists():
            t0 = time.perf_counter()
            write_scan(scan, n_cols=n, n_rows=2, n_angles=angles, seed=1, progress=False)
            print(f"# wrote {scan.name}: {angles} × 2 × {n} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for sub in args.subchunks:
            out = work / f"run_{n}_{sub}"
            shutil.rmtree(out, ignore_errors=True)
            before = load()
            r = run(scan, out, n, args.memory, sub)
            if "refused" in r:
                print(f"{n:>6}{angles:>7}{sub:>4}{'':>6}  refused: {r['refused']}", flush=True)
                continue
            plan, st = r["plan"], r["stages"]
            mem = plan["memory"]
            cells = []
            for stage in STAGES:
                est, got = mem.get(f"{stage}_peak_estimate"), st[stage]["peak"]
                cells.append(f"{est / 2**20:6.0f}/{got / 2**20:5.0f} {est / got:4.2f}" if est and got
                             else f"{'—':>6}/{got / 2**20:5.0f}     ")
            corr, amp = accuracy(r["volume"], scan, n)
            rec = st["reconstruct"]
            rows_out.append({"n": n, "angles": angles, "sub": sub, "tile": plan.get("recon_tile"),
                             "s_slice": rec["seconds"] / 2, "cpu_slice": rec["cpu"] / 2, "corr": corr,
                             "amp": amp, "wall": r["wall"], "load": f"{before} → {load()}"})
            print(f"{n:>6}{angles:>7}{sub:>4}{plan.get('recon_tile') or '—':>6}  " + "".join(f"{c:>17}" for c in cells),
                  flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            scan.unlink(missing_ok=True)
    print()
    print(f"{'N':>6}{'sub':>4}{'tile':>6}{'s/slice':>9}{'CPU s':>8}{'t/t0':>7}{'N²logN':>8}{'corr':>8}{'amp':>7}"
          f"{'run s':>8}  load average before → after")
    first = {}
    for r in rows_out:
        t0 = first.setdefault(r["sub"], r)
        model = (r["n"] ** 2 * math.log(r["n"])) / (t0["n"] ** 2 * math.log(t0["n"]))
        print(f"{r['n']:>6}{r['sub']:>4}{r['tile'] or '—':>6}{r['s_slice']:>9.2f}{r['cpu_slice']:>8.2f}"
              f"{r['s_slice'] / t0['s_slice']:>7.1f}{model:>8.1f}{r['corr']:>8.4f}{r['amp']:>7.3f}"
              f"{r['wall']:>8.0f}  {r['load']}")
    print("# s/slice, CPU s: the reconstruct stage's wall and CPU time per slice (its job, I/O included);")
    print("# t/t0 beside N²logN: growth of s/slice from the smallest width, and the reference curve;")
    print(f"# corr, amp: against the phantom, both binned to about {BINNED}² (inside 90 % of the radius).")
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
