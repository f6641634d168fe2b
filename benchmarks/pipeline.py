"""End-to-end ``teravox run`` on generated scans of growing size: time per stage, throughput, memory.

    python benchmarks/pipeline.py [--sizes 0.25 1 4] [--cols 2048] [--angles 1536] [--jobs N]
                                  [--dir DIR] [--keep] [--quick]

Each size is a synthetic uint16 scan (10 flats, 10 darks, noise) of ``--angles`` projections of
``--cols`` columns (default 1536 × 2048, so the angles per width stay those of a real scan at
every size) and as many detector rows (even, for slice pairs) as make ``size`` GiB of raw
projections.  ``python -m teravox.cli run --scan S --out D --no-progress --center C`` runs it
with the default corrections (flat/dark, then −log in pass 2), the default memory budget and
chunking, and the true centre; the scan's pages are evicted from the page cache first.  The
runner's summary table (time and peak RSS per job of every stage) is parsed from its output;
plan.json gives the chunks and the plan's memory estimates; ``os.wait4`` on the run gives its
total CPU time (runner and jobs).

Printed: per size the shape, chunks and executor; time per stage; raw MiB/s and Mvoxel/s;
peak RSS per job against the plan's estimates; CPU used against the cores; the load average
and the CPU time the rest of the machine used during the run (it is shared); and, the point of
the exercise, the cost per voxel of the largest run over the smallest's (target ≤ 1.25: the
cost grows linearly with the data), per stage and in total, with a least-squares fit
``seconds = fixed + per-voxel × voxels``.  The generated data are deleted after each size.
``--quick`` runs two tiny scans (192 angles × 16 and 64 rows × 256 columns) in a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess import evict, fmt_others, load, run_child  # noqa: E402

MIB, GIB = 2**20, 2**30
STAGE_RE = re.compile(r"^(?P<stage>[a-z][a-z-]*)\s+(?P<jobs>\d+)\s+(?P<skipped>\d+)\s+(?P<sec>[\d.]+)\s+(?P<mib>\d+)\s*$")
EXEC_RE = re.compile(r"local executor: (\d+) job\(s\) at a time, (\d+) thread\(s\) each")


def rows_for(gib: float, angles: int, cols: int) -> int:
    """Even number of detector rows giving ~``gib`` GiB of uint16 projections."""
    return max(2, 2 * round(gib * GIB / (angles * cols * 2) / 2))


def parse_run(stdout: str) -> dict:
    stages, total, executor = {}, None, None
    for line in stdout.splitlines():
        m = STAGE_RE.match(line.strip())
        if m:
            stages[m["stage"]] = {"jobs": int(m["jobs"]), "skipped": int(m["skipped"]),
                                  "seconds": float(m["sec"]), "peak_mib": int(m["mib"])}
        elif line.startswith("total"):
            total = float(line.split()[1])
        elif (e := EXEC_RE.search(line)):
            executor = (int(e[1]), int(e[2]))
    return {"stages": stages, "total": total, "executor": executor}


def one_size(label: str, rows: int, args: argparse.Namespace, base: Path) -> dict:
    from teravox.synth.scan import write_scan

    work = Path(tempfile.mkdtemp(prefix=f"run-{label.replace(' ', '')}-", dir=base))
    scan, out = work / "scan.h5", work / "out"
    raw = args.angles * rows * args.cols * 2
    try:
        print(f"[{label}] writing {args.angles} x {rows} x {args.cols} uint16 ({raw / GIB:.2f} GiB) ...",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        truth = write_scan(scan, n_cols=args.cols, n_rows=rows, n_angles=args.angles, progress=False)
        t_synth = time.perf_counter() - t0
        center = float(truth.get("center", (args.cols - 1) / 2))
        cmd = [sys.executable, "-m", "teravox.cli", "run", "--scan", str(scan), "--out", str(out),
               "--no-progress", "--center", repr(center)]
        if args.jobs:
            cmd += ["--jobs", str(args.jobs)]
        cmd += shlex.split(args.extra)
        evict(scan)
        print(f"[{label}] teravox run ...", file=sys.stderr, flush=True)
        log = work / "run.log"
        child = run_child(cmd, log)
        text = log.read_text(errors="replace")
        if child.returncode:
            print(text, file=sys.stderr)
            raise SystemExit(f"teravox run failed on the {label} scan (exit {child.returncode})")
        parsed = parse_run(text)
        plan = json.loads((out / "plan.json").read_text())
        shape = plan["recon_shape"]
        return {"label": label, "rows": rows, "raw": raw, "synth_s": t_synth, "voxels": int(np.prod(shape)),
                "shape": shape, "wall": child.wall, "cpu": child.cpu, "others": child.others,
                "peak_any": child.peak, "load": (child.load_before, child.load_after), "cmd": cmd,
                "k": len(plan["proj_chunks"]), "j": len(plan["sino_chunks"]),
                "prow": plan["proj_subchunk_rows"], "srow": plan["sino_subchunk_rows"],
                "memory": plan["memory"], **parsed}
    finally:
        if args.keep:
            print(f"[{label}] kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 4.0],
                   help="raw scan sizes in GiB (default 0.25 1 4)")
    p.add_argument("--rows", type=int, nargs="+", default=None, help="detector rows per run instead of --sizes")
    p.add_argument("--cols", type=int, default=2048, help="detector columns (default 2048)")
    p.add_argument("--angles", type=int, default=1536, help="projections (default 1536)")
    p.add_argument("--jobs", type=int, default=None, help="passed to teravox run (default: the runner's choice)")
    p.add_argument("--extra", default="", help="more teravox run options, one string (e.g. \"--memory 8G\")")
    p.add_argument("--quick", action="store_true", help="two tiny scans: 192 angles x 256 columns, 16 and 64 rows")
    p.add_argument("--dir", type=Path, default=None, help="where to write scans and outputs (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated scans and outputs")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.quick:
        args.cols, args.angles, args.rows = 256, 192, args.rows or [16, 64]
    rows_list = args.rows or [rows_for(g, args.angles, args.cols) for g in args.sizes]
    labels = [f"{args.angles * r * args.cols * 2 / GIB:.3g} GiB" for r in rows_list]
    base = Path(tempfile.mkdtemp(prefix="teravox-pipeline-bench-", dir=args.dir))
    # scan + float32 projections + reconstructed chunk + merged volume (the largest run, at once)
    biggest = max(rows_list) * args.cols * 2
    need = biggest * args.angles * 1.05 + biggest * args.angles * 2 + 2 * max(rows_list) * args.cols**2 * 4
    if shutil.disk_usage(base).free < need * 1.1:
        print(f"not enough free space in {base}: the largest run needs ~{need / GIB:.0f} GiB", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)
        return 1
    print(f"up to ~{need / GIB:.0f} GiB of disk in {base} during the largest run", file=sys.stderr)
    runs = []
    load_start = load()
    t_all = time.perf_counter()
    try:
        for label, rows in zip(labels, rows_list, strict=True):
            runs.append(one_size(label, rows, args, base))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report(runs, args, argv, load_start, time.perf_counter() - t_all)
    return 0


def report(runs: list[dict], args: argparse.Namespace, argv: list[str], load_start: str, t_all: float) -> None:
    cores = os.cpu_count()
    print(f"\n# teravox run, end to end: {len(runs)} scans of {args.angles} angles x {args.cols} columns, "
          "default corrections (flat/dark, -log), --center given")
    print(f"# python {platform.python_version()}, numpy {np.__version__}, {cores} CPUs, {platform.machine()}; "
          f"load average at start {load_start}, at end {load()}; whole benchmark {t_all / 60:.1f} min")
    print()
    print(f"| {'raw':>8} | {'scan (angles x rows x cols)':>27} | {'volume':>16} | {'k x j':>5} | "
          f"{'subchunk rows p1/p2':>19} | {'executor':>21} |")
    print(f"|{'-' * 10}:|{'-' * 28}:|{'-' * 17}:|{'-' * 6}:|{'-' * 20}:|{'-' * 22}:|")
    for r in runs:
        ex = r["executor"]
        ex_txt = f"{ex[0]} jobs x {ex[1]} thread(s)" if ex else "?"
        vol = "x".join(str(x) for x in r["shape"])
        print(f"| {r['raw'] / GIB:6.3f} G | {args.angles:>9} x {r['rows']:>5} x {args.cols:>5} | {vol:>16} | "
              f"{r['k']:>2}x{r['j']:<2} | {r['prow']:>9} / {r['srow']:<7} | {ex_txt:>21} |")

    stages = [s for s in runs[-1]["stages"]]
    head = "".join(f" | {r['label'] + ' s':>12}" for r in runs)
    print(f"\ntime per stage (runner's table), seconds; cost per voxel of the largest run over the smallest's; "
          f"fit seconds = fixed + per-voxel x voxels over the {len(runs)} runs")
    print(f"| {'stage':<12}{head} | {'largest/smallest per voxel':>26} | {'fixed s':>7} | {'ns / voxel':>10} |")
    print(f"|{'-' * 14}" + "".join(f"|{'-' * 13}:" for _ in runs) + f"|{'-' * 27}:|{'-' * 8}:|{'-' * 11}:|")
    vox = np.array([r["voxels"] for r in runs], dtype=float)

    def row(name: str, secs: list[float]) -> None:
        s = np.array(secs)
        ratio = (s[-1] / vox[-1]) / (s[0] / vox[0]) if s[0] > 0 else float("nan")
        if len(runs) >= 2 and np.ptp(vox) > 0:
            b, a = np.polyfit(vox, s, 1)
            fit = f"{a:7.1f} | {b * 1e9:10.1f}"
        else:
            fit = f"{'':>7} | {'':>10}"
        print(f"| {name:<12}" + "".join(f" | {x:12.1f}" for x in s) + f" | {ratio:26.2f} | {fit} |")

    for st in stages:
        row(st, [r["stages"].get(st, {}).get("seconds", 0.0) for r in runs])
    row("total", [r["total"] for r in runs])
    row("wall outside", [r["wall"] for r in runs])

    print("\nthroughput and machine")
    print(f"| {'raw':>8} | {'total s':>7} | {'raw MiB/s':>9} | {'Mvoxel/s':>8} | {'ns / voxel':>10} | "
          f"{'CPU s':>7} | {'cores busy':>10} | {'others CPU s u/s/st':>19} | load average before -> after |")
    print(f"|{'-' * 10}:|{'-' * 8}:|{'-' * 10}:|{'-' * 9}:|{'-' * 11}:|{'-' * 8}:|{'-' * 11}:|{'-' * 20}:|{'-' * 30}|")
    for r in runs:
        t = r["total"]
        print(f"| {r['raw'] / GIB:6.3f} G | {t:7.1f} | {r['raw'] / MIB / t:9.1f} | {r['voxels'] / t / 1e6:8.2f} | "
              f"{t / r['voxels'] * 1e9:10.1f} | {r['cpu']:7.1f} | {r['cpu'] / r['wall']:10.2f} | "
              f"{fmt_others(r['others']):>19} | {r['load'][0]} -> {r['load'][1]} |")
    ratio = (runs[-1]["total"] / runs[-1]["voxels"]) / (runs[0]["total"] / runs[0]["voxels"])
    print(f"\ncost per voxel, largest run / smallest run: {ratio:.2f} (target <= 1.25: "
          f"{'met' if ratio <= 1.25 else 'NOT met'})")

    print("\npeak RSS per job (MiB; the runner's os.wait4 figure, the largest job of each stage) and the plan's "
          "estimate / budget")
    print(f"| {'stage':<12}" + "".join(f" | {r['label']:>11}" for r in runs) + " |")
    print(f"|{'-' * 14}" + "".join(f"|{'-' * 12}:" for _ in runs) + "|")
    for st in stages:
        print(f"| {st:<12}" + "".join(f" | {r['stages'].get(st, {}).get('peak_mib', 0):11d}" for r in runs) + " |")
    for key, name in (("preprocess_peak_estimate", "plan: prep"), ("reconstruct_peak_estimate", "plan: recon"),
                      ("budget", "budget")):
        print(f"| {name:<12}" + "".join(f" | {r['memory'][key] / MIB:11.0f}" for r in runs) + " |")
    over = [(r["label"], st, r["stages"][st]["peak_mib"], r["memory"][est] / MIB)
            for r in runs for st, est in (("preprocess", "preprocess_peak_estimate"),
                                          ("reconstruct", "reconstruct_peak_estimate"))
            if st in r["stages"] and r["stages"][st]["peak_mib"] > r["memory"][est] / MIB]
    for label, st, got, est in over:
        print(f"NOTE {label}: {st} peaked at {got} MiB, above the plan's estimate of {est:.0f} MiB")
    print("\nreproduce: python benchmarks/pipeline.py " + shlex.join(argv))
    r = runs[-1]
    print("each run:  " + shlex.join(["python", *r["cmd"][1:4], "--scan", "SCAN", "--out", "OUT",
                                      *r["cmd"][8:]]))


if __name__ == "__main__":
    sys.exit(main())
