"""Nextflow's overhead: the same scan through ``nextflow run main.nf`` and ``teravox run``.

    python benchmarks/nextflow.py [--runs 3] [--rows 16] [--cols 64] [--angles 90]
                                  [--nextflow PATH] [--dir DIR]

One synthetic scan (``teravox synth``, by default the test profile's 90 angles × 16 rows ×
64 columns) goes through the pipeline ``--runs`` times each way, alternately (Nextflow,
then teravox run, then Nextflow …), with the same chunks (2 projection, 2 sinogram),
memory (1G) and threads (2), each run in a fresh output and work directory.  Printed:
wall and CPU time of every run, their medians, the ratio Nextflow / teravox run, and for
Nextflow the sum of its tasks' own run times (the trace's ``realtime``) beside its wall
time — what is left is Nextflow's start-up, polling and staging.  The volumes of both
ways are compared bit for bit.  Nextflow: ``--nextflow``, else ``.tools/bin/nextflow``
(``bash .ci/install-nextflow.sh``), else ``nextflow`` on PATH.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--threads", "2"]


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one command (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout[-3000:]}")
    return time.perf_counter() - t0


def children_cpu() -> float:
    """CPU seconds of this process's finished children (and theirs)."""
    r = os.times()
    return r.children_user + r.children_system


def realtime_s(text: str) -> float:
    """A trace duration ('1.2s', '850ms', '1m 3s') in seconds."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)\s*(ms|s|m|h)", text):
        total += float(value) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--angles", type=int, default=90)
    ap.add_argument("--nextflow", default=None)
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one, removed)")
    args = ap.parse_args()
    nf = args.nextflow or next((str(p) for p in (ROOT / ".tools/bin/nextflow",) if p.is_file()),
                               shutil.which("nextflow"))
    if not nf:
        sys.exit("no nextflow: bash .ci/install-nextflow.sh")
    base = Path(args.dir or tempfile.mkdtemp(prefix="teravox-nf-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    scan = base / "scan.h5"
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(scan), "--rows", str(args.rows),
                    "--cols", str(args.cols), "--angles", str(args.angles), "--no-progress"],
                   check=True, capture_output=True)
    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(f"# {platform.node()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start;"
          f" scan {args.angles} × {args.rows} × {args.cols}")
    chunks = ["--memory", "1G", *COMMON]
    rows: dict[str, list[tuple[float, float]]] = {"nextflow": [], "teravox run": []}
    task_sums, volumes = [], {}
    for i in range(args.runs):
        out = base / f"nf{i}"
        cmd = [nf, "run", str(ROOT / "main.nf"), "-ansi-log", "false", "--scan", str(scan),
               "--outdir", str(out / "results"), "-w", str(out / "work"),
               "--proj_chunks", "2", "--sino_chunks", "2", *chunks]
        out.mkdir()
        c0 = children_cpu()
        wall = timed(cmd, out)
        rows["nextflow"].append((wall, children_cpu() - c0))
        with open(out / "results/pipeline_info/execution_trace.txt", newline="") as fh:
            task_sums.append(sum(realtime_s(t["realtime"]) for t in csv.DictReader(fh, delimiter="\t")))
        volumes["nextflow"] = out / "results/scan/scan_recon.h5"
        local = base / f"local{i}"
        cmd = [sys.executable, "-m", "teravox.cli", "run", "--scan", str(scan), "--out", str(local),
               "--no-progress", "--jobs", "1", "--proj-chunks", "2", "--sino-chunks", "2", *chunks]
        c0 = children_cpu()
        wall = timed(cmd, base)
        rows["teravox run"].append((wall, children_cpu() - c0))
        volumes["teravox run"] = local / "scan_recon.h5"
        print(f"run {i + 1}: nextflow {rows['nextflow'][-1][0]:.1f} s wall "
              f"(tasks {task_sums[-1]:.1f} s), teravox run {rows['teravox run'][-1][0]:.1f} s wall")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
    print(f"{'how':<12} {'wall s (median)':>16} {'CPU s (median)':>15}")
    for k, (w, c) in med.items():
        print(f"{k:<12} {w:>16.1f} {c:>15.1f}")
    print(f"nextflow / teravox run, wall: {med['nextflow'][0] / med['teravox run'][0]:.2f}×; "
          f"nextflow's tasks ran {statistics.median(task_sums):.1f} s of its {med['nextflow'][0]:.1f} s")
    with h5py.File(volumes["nextflow"]) as a, h5py.File(volumes["teravox run"]) as b:
        same = np.array_equal(a["/exchange/data"][()], b["/exchange/data"][()])
    print(f"volumes identical bit for bit: {same}")
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
