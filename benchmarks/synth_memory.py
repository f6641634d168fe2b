"""Peak memory and speed of ``teravox synth`` writing a large scan (default ~2 GiB).

The scan is written by a child process, measured with ``/usr/bin/time -v`` when it
exists (``apt-get install -y time``) and with ``getrusage(RUSAGE_CHILDREN)``
otherwise; both report the child's peak resident set size.  Goal: < 1 GiB for a
2 GiB scan.  Usage::

    python benchmarks/synth_memory.py                      # 2 GiB: 1024 angles × 1024 × 1024 uint16
    python benchmarks/synth_memory.py --gib 0.25 --effects # smaller, with drift/zingers/stripes
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MIB = 1024.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=2.0, help="scan size in GiB of uint16 projections (default 2)")
    p.add_argument("--cols", type=int, default=1024, help="detector columns (default 1024)")
    p.add_argument("--rows", type=int, default=1024, help="detector rows (default 1024)")
    p.add_argument("--effects", action="store_true", help="also --drift --zingers --stripes")
    p.add_argument("--dir", type=Path, default=None, help="where to write the temporary scan (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the scan file and print its path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    angles = max(2, round(args.gib * 2**30 / (args.rows * args.cols * 2)))
    workdir = Path(tempfile.mkdtemp(prefix="teravox-synth-bench-", dir=args.dir))
    out = workdir / "bench.h5"
    need = angles * args.rows * args.cols * 2 * 1.05
    if shutil.disk_usage(workdir).free < need:
        print(f"not enough free space in {workdir} for {need / 2**30:.1f} GiB", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "teravox.stages.synth", str(out), "--cols", str(args.cols),
           "--rows", str(args.rows), "--angles", str(angles), "--no-progress", "-q"]
    if args.effects:
        cmd += ["--drift", "--zingers", "--stripes"]
    timer = shutil.which("time", path="/usr/bin:/bin")
    try:
        t0 = time.perf_counter()
        if timer:
            proc = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True)
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
            peak_kib = int(match.group(1)) if match else -1
            how = "/usr/bin/time -v"
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB on Linux
            how = "getrusage(RUSAGE_CHILDREN)"
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return proc.returncode
        size = out.stat().st_size
        peak_mib = peak_kib / 1024
        print(f"scan      {angles} angles x {args.rows} rows x {args.cols} columns uint16, "
              f"file {size / 2**30:.2f} GiB")
        print(f"peak RSS  {peak_mib:.0f} MiB ({how}); goal < {GOAL_MIB:.0f} MiB: "
              f"{'met' if 0 < peak_mib < GOAL_MIB else 'NOT met'}")
        print(f"wall      {wall:.1f} s, {size / 1e6 / wall:.1f} MB/s")
        print(f"cpus      {os.cpu_count()} visible")
        print("reproduce " + shlex.join(([timer, "-v"] if timer else []) + cmd))
    finally:
        if args.keep:
            print(f"kept      {out}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
