"""Speed and peak memory of one whole pass-1 job, beside the raw read speed of its input.

    python benchmarks/preprocess.py [--angles 256] [--rows 1024] [--cols 2048] [--memory 2G]
                                    [--energy-kev 25] [--distance-m 0.05] [--pixel-size-m 1.3e-6]
                                    [--delta-beta 200] [--warm] [--dir DIR] [--keep]

A synthetic uint16 scan (default 256 angles × 1024 rows × 2048 columns = 1 GiB raw, beam
drift recorded by the monitor, zingers, 10 flats and 10 darks) is planned as one projection
chunk with the common corrections on: flat/dark, I0 from the beam monitor, outliers (3×3,
dif 0.1) and Paganin with physical values (the defaults: 25 keV, 5 cm, 1.3 µm pixels,
δ/β 200, a kernel support of 52 rows).  Then, each in a child process whose peak resident set
size comes from ``/usr/bin/time`` (``os.wait4`` without it) and CPU and wall time from
``os.wait4``:

* the job, ``teravox preprocess --plan plan.json --chunk 0``, with the file evicted from the
  page cache first (``posix_fadvise(DONTNEED)``, so it is read from disk) and, with
  ``--warm``, once more with the file cached; wall time, raw MB/s, peak RSS against the
  budget and the plan's estimate;
* the references, in the same run: ``cat file > /dev/null`` (sequential read, cold and warm)
  and h5py reading exactly the job's blocks (its rows plus overlap, flats and darks, no
  processing; cold and warm), and h5py writing the job's float32 output blocks into the
  same chunk layout (no computing), so that one sees how much of the job is disk and how
  much is Python/compute;
* the time of each correction on one projection (functions of
  ``benchmarks/preprocess_corrections.py``), and that time × projections × the rows the job
  computes (block rows plus overlap) as the expected compute of the job.

The load average and the CPU time other processes used during each measurement are
printed: the machine may be shared.  The generated data are deleted at the end (``--keep``
keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_corrections import synthetic_scan, timed  # noqa: E402

MIB, GIB = 2**20, 2**30


# -- measuring child processes ---------------------------------------------------------
def cpu_times() -> np.ndarray:
    """CPU seconds the whole machine has spent since boot (all cores, /proc/stat) in
    user (+nice), system (+irq, softirq) and steal (taken by the hypervisor for other guests)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except OSError:
        return np.full(3, np.nan)
    f += [0] * (8 - len(f))  # user nice system idle iowait irq softirq steal
    return np.array([f[0] + f[1], f[2] + f[5] + f[6], f[7]], dtype=float) / os.sysconf("SC_CLK_TCK")


def others(t0: np.ndarray, user: float, sys_: float) -> np.ndarray:
    """CPU seconds (user, system, steal) the rest of the machine used since ``t0``, ours taken out."""
    d = cpu_times() - t0
    return np.maximum(0.0, d - np.array([user, sys_, 0.0]))


def fmt_others(o: np.ndarray) -> str:
    return f"{o[0]:.1f}/{o[1]:.1f}/{o[2]:.1f}"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Child:
    returncode: int
    wall: float
    user: float
    sys: float
    peak: int          # bytes
    minflt: int        # minor page faults (first touches of fresh memory)
    others: np.ndarray  # CPU seconds (user, system, steal) the rest of the machine used meanwhile
    load_before: str
    load_after: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


TIMER = shutil.which("time", path="/usr/bin:/bin")


def run_child(cmd: list[str], log: Path, env: dict | None = None) -> Child:
    """Run ``cmd`` (output to ``log``); wall time, and CPU time and peak RSS from ``wait4``.

    Linux carries a parent's memory high-water mark into a child it forks and execs, so a
    child of this (large) process could report this process's peak as its own.  With
    ``/usr/bin/time`` (a small C program) between them the child starts from time's
    footprint, and time reports the child's own peak and page faults.
    """
    la0, busy0 = load(), cpu_times()
    stats = log.with_name(log.name + ".time") if TIMER and log != Path(os.devnull) else None
    argv = [TIMER, "-f", "%M %R", "-o", str(stats), *cmd] if stats else cmd
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak, minflt = ru.ru_maxrss * 1024, ru.ru_minflt
    if stats:
        try:
            kib, flt = stats.read_text().split()[-2:]
            peak, minflt = int(kib) * 1024, int(flt)
        except (OSError, ValueError):
            pass
        stats.unlink(missing_ok=True)
    return Child(proc.returncode, wall, ru.ru_utime, ru.ru_stime, peak, minflt,
                 others(busy0, ru.ru_utime, ru.ru_stime), la0, load())


class InProcess:
    """Wall and CPU time of a block run in this process, with the others' CPU meanwhile."""

    def __enter__(self) -> InProcess:
        self.la0, self.busy0 = load(), cpu_times()
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        user, sys_ = ru.ru_utime - self.ru0.ru_utime, ru.ru_stime - self.ru0.ru_stime
        self.cpu = user + sys_
        self.others = others(self.busy0, user, sys_)
        self.la1 = load()


def evict(*paths: Path) -> None:
    """Write back and drop the files' pages from the page cache, so the next read is from disk."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_mib(path: Path) -> float | None:
    """How much of ``path`` is in the page cache (util-linux fincore), or None."""
    exe = shutil.which("fincore")
    if not exe:
        return None
    out = subprocess.run([exe, "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True)
    try:
        return int(out.stdout.split()[0]) / MIB
    except (IndexError, ValueError):
        return None


# -- the job's blocks -------------------------------------------------------------------
def job_blocks(plan: dict, index: int = 0) -> dict:
    """What chunk ``index`` of the plan reads: blocks (projections p0:p1 of the chunk, kept
    rows b0:b1, rows read lo:hi with overlap), columns."""
    ch = plan["proj_chunks"][index]
    idx = np.asarray(plan["selection"]["proj_indices"][ch["start"]:ch["stop"]], dtype=np.int64)
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    n_rows, block, overlap = r1 - r0, plan["proj_subchunk_rows"], plan["overlap_rows"]
    n, pblock = idx.size, plan.get("proj_subchunk_projections")
    if pblock:  # whole projections at full height
        blocks = [(p0, min(p0 + pblock, n), 0, n_rows, 0, n_rows) for p0 in range(0, n, pblock)]
    else:
        blocks = [(0, n, b0, min(b0 + block, n_rows), max(0, b0 - overlap), min(n_rows, b0 + block + overlap))
                  for b0 in range(0, n_rows, block)]
    return {"idx": idx, "r0": r0, "c0": c0, "c1": c1, "n_rows": n_rows, "blocks": blocks, "pblock": pblock,
            "rows_read": sum((hi - lo) * (p1 - p0) for p0, p1, _, _, lo, hi in blocks) / n}


def h5_read_blocks(scan: Path, plan: dict, jb: dict) -> int:
    """Read what the job reads (projections of each block with overlap; flats and darks for
    each new band of rows, as the job's reader keeps the last); bytes read."""
    prm = plan["params"]
    nbytes = 0
    cols = slice(jb["c0"], jb["c1"])
    last = None
    with h5py.File(scan, "r") as f:
        data, flats, darks = f[plan["scan"]["data_path"]], f[prm["flat_path"]], f[prm["dark_path"]]
        for p0, p1, _, _, lo, hi in jb["blocks"]:
            rows = slice(jb["r0"] + lo, jb["r0"] + hi)
            idx = jb["idx"][p0:p1]
            runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)
            parts = [data[int(r[0]):int(r[-1]) + 1, rows, cols] for r in runs]
            if (lo, hi) != last:
                parts += [flats[:, rows, cols], darks[:, rows, cols]]
                last = (lo, hi)
            nbytes += sum(p.nbytes for p in parts)
            del parts
    return nbytes


def h5_write_blocks(out: Path, jb: dict) -> int:
    """Write float32 blocks shaped as the job's output into its chunk layout; bytes written."""
    from teravox.stages.preprocess import hdf5_chunks

    n, n_rows, n_cols = jb["idx"].size, jb["n_rows"], jb["c1"] - jb["c0"]
    biggest = max((p1 - p0, b1 - b0) for p0, p1, b0, b1, _, _ in jb["blocks"])
    buf = np.ones(biggest + (n_cols,), dtype=np.float32)
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("/exchange/data", shape=(n, n_rows, n_cols), dtype=np.float32,
                              chunks=hdf5_chunks(n, n_rows, n_cols, jb["pblock"]))
        for p0, p1, b0, b1, _, _ in jb["blocks"]:
            ds[p0:p1, b0:b1, :] = buf[:p1 - p0, :b1 - b0]
    return n * n_rows * n_cols * 4


# -- corrections on one projection --------------------------------------------------------
def corrections(rows: int, cols: int, plan: dict, repeats: int) -> list[tuple[str, float]]:
    """Median seconds of each correction the plan switches on, on one rows × cols projection."""
    from teravox import resources
    from teravox.prep.flatdark import normalize
    from teravox.prep.i0 import from_monitor
    from teravox.prep.outliers import remove_outliers
    from teravox.prep.paganin import retrieve_phase

    prm, ph = plan["params"], plan["physics"]
    proj, flat, dark = synthetic_scan(max(rows, cols), np.random.default_rng(0))
    proj = np.ascontiguousarray(proj[:, :rows, :cols])
    flat, dark = np.ascontiguousarray(flat[:rows, :cols]), np.ascontiguousarray(dark[:rows, :cols])
    norm = normalize(proj, flat, dark).data
    out = []
    if prm["flat_dark"]:
        out.append(("flat/dark normalize", timed(lambda: normalize(proj, flat, dark), repeats)[0]))
    if prm["i0"] == "monitor":
        out.append(("I0 from monitor", timed(lambda: from_monitor(norm, np.array([1.03]), reference=1.0),
                                             repeats)[0]))
    if prm["outliers"]:
        out.append((f"outliers {prm['outlier_size']}x{prm['outlier_size']} (dif {prm['outlier_dif']:g})",
                    timed(lambda: remove_outliers(norm, prm["outlier_dif"], prm["outlier_size"]), repeats)[0]))
    if prm["paganin"]:
        workers = resources.threads(prm.get("threads", 0))
        out.append((f"Paganin ({workers} FFT threads)", timed(lambda: retrieve_phase(
            norm, pixel_size_m=ph["pixel_size_m"], distance_m=ph["distance_m"], energy_kev=ph["energy_kev"],
            delta_beta=prm["delta_beta"], pad=prm["paganin_pad"], workers=workers), repeats)[0]))
    return out


# -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--angles", type=int, default=256, help="projections in the scan (= the chunk; default 256)")
    p.add_argument("--rows", type=int, default=1024, help="detector rows (default 1024)")
    p.add_argument("--cols", type=int, default=2048, help="detector columns (default 2048)")
    p.add_argument("--memory", default="2G", help="memory budget of the job (default 2G)")
    p.add_argument("--energy-kev", type=float, default=25.0, help="Paganin: beam energy, keV (default 25)")
    p.add_argument("--distance-m", type=float, default=0.05, help="Paganin: propagation distance, m (default 0.05)")
    p.add_argument("--pixel-size-m", type=float, default=1.3e-6, help="Paganin: pixel size, m (default 1.3e-6)")
    p.add_argument("--delta-beta", type=float, default=200.0, help="Paganin: δ/β (default 200)")
    p.add_argument("--no-paganin", action="store_true", help="leave Paganin out (flat/dark, I0, outliers only)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per correction (median; default 3)")
    p.add_argument("--warm", action="store_true", help="also run the job with the scan in the page cache")
    p.add_argument("--dir", type=Path, default=None, help="where to write the scan and outputs (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated files and print where they are")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    from teravox.synth.scan import write_scan

    raw_bytes = args.angles * args.rows * args.cols * 2
    work = Path(tempfile.mkdtemp(prefix="teravox-prep-bench-", dir=args.dir))
    need = raw_bytes * (1 + 2 + 2) * 1.05  # scan, job output, write reference
    if shutil.disk_usage(work).free < need:
        print(f"not enough free space in {work} for {need / GIB:.1f} GiB", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    scan, plan_path = work / "scan.h5", work / "plan.json"
    py = sys.executable
    try:
        # -- the scan and the plan ----------------------------------------------------------
        print(f"writing {args.angles} x {args.rows} x {args.cols} uint16 ({raw_bytes / GIB:.2f} GiB) to {scan} ...",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        write_scan(scan, n_cols=args.cols, n_rows=args.rows, n_angles=args.angles, drift=True, zingers=True,
                   energy_kev=args.energy_kev, distance_m=args.distance_m, pixel_size_m=args.pixel_size_m,
                   progress=False)
        t_synth = time.perf_counter() - t0
        plan_cmd = [py, "-m", "teravox.cli", "plan", str(scan), "-o", str(plan_path), "-q",
                    "--memory", args.memory, "--i0", "monitor", "--outliers"]
        if not args.no_paganin:
            plan_cmd += ["--paganin", "--energy-kev", str(args.energy_kev), "--distance-m", str(args.distance_m),
                         "--pixel-size-m", str(args.pixel_size_m), "--delta-beta", str(args.delta_beta)]
        res = subprocess.run(plan_cmd, capture_output=True, text=True)
        if res.returncode:
            print(res.stdout + res.stderr, file=sys.stderr)
            return res.returncode
        plan = json.loads(plan_path.read_text())
        jb = job_blocks(plan, 0)
        chunk_raw = jb["idx"].size * jb["n_rows"] * (jb["c1"] - jb["c0"]) * 2
        budget, estimate = plan["memory"]["budget"], plan["memory"]["preprocess_peak_estimate"]
        job_cmd = [py, "-m", "teravox.cli", "preprocess", "--plan", str(plan_path), "--chunk", "0"]
        out_file = work / plan["outputs"]["proj_chunk"].format(index=0)

        # -- the job: cold, then (optionally) warm --------------------------------------------
        evict(scan)
        cold_res = resident_mib(scan)
        print("running the job (cold) ...", file=sys.stderr, flush=True)
        jobs = [("cold", cold_res, run_child(job_cmd, work / "job_cold.log"))]
        if jobs[0][2].returncode:
            print((work / "job_cold.log").read_text(), file=sys.stderr)
            return jobs[0][2].returncode
        if args.warm:
            out_file.unlink()
            subprocess.run(["cat", str(scan)], stdout=subprocess.DEVNULL, check=True)
            print("running the job (warm) ...", file=sys.stderr, flush=True)
            jobs.append(("warm", resident_mib(scan), run_child(job_cmd, work / "job_warm.log")))
        out_file.unlink(missing_ok=True)

        # -- references ---------------------------------------------------------------------
        print("references ...", file=sys.stderr, flush=True)
        size = scan.stat().st_size
        refs = []  # (name, seconds, bytes, cpu, others, note)
        for state in ("cold", "warm"):
            if state == "cold":
                evict(scan)
            c = run_child(["cat", str(scan)], Path(os.devnull))
            refs.append((f"cat file > /dev/null ({state})", c.wall, size, c.cpu, c.others, "whole file"))
        for state in ("cold", "warm"):
            if state == "cold":
                evict(scan)
            with InProcess() as m:
                nbytes = h5_read_blocks(scan, plan, jb)
            refs.append((f"h5py, the job's blocks ({state})", m.wall, nbytes, m.cpu, m.others,
                         f"{len(jb['blocks'])} blocks, rows+overlap, flats, darks"))
        c = run_child([py, "-c", "import teravox.stages.preprocess, teravox.prep.pipeline, teravox.prep.paganin, "
                              "teravox.prep.outliers, scipy.fft, scipy.ndimage"], Path(os.devnull))
        refs.append(("python start-up + the job's imports", c.wall, 0, c.cpu, c.others, "no data"))
        startup = c.wall
        wref = work / "write_ref.h5"
        with InProcess() as m:
            nbytes = h5_write_blocks(wref, jb)
        refs.append(("h5py write, the job's output (float32)", m.wall, nbytes, m.cpu, m.others,
                     "into the page cache, as the job"))
        wref.unlink()

        # -- corrections per projection -------------------------------------------------------
        print("corrections per projection ...", file=sys.stderr, flush=True)
        corr = corrections(jb["n_rows"], jb["c1"] - jb["c0"], plan, args.repeats)

        # -- report ---------------------------------------------------------------------------
        n_p, n_c = jb["idx"].size, jb["c1"] - jb["c0"]
        amp = jb["rows_read"] / jb["n_rows"]
        print(f"\n# teravox pass-1 job (teravox preprocess, chunk 0 of {len(plan['proj_chunks'])})")
        print(f"# python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__}, "
              f"{os.cpu_count()} CPUs, {platform.machine()}; load average now {load()}")
        print(f"scan       {args.angles} angles x {args.rows} rows x {args.cols} columns uint16, "
              f"{size / GIB:.2f} GiB file; written in {t_synth:.0f} s")
        print(f"chunk      {n_p} projections x {jb['n_rows']} rows x {n_c} columns = {chunk_raw / MIB:.0f} MiB raw "
              f"-> {n_p * jb['n_rows'] * n_c * 4 / MIB:.0f} MiB float32")
        print(f"corrections {', '.join(name for name, _ in _steps(plan))}")
        ph = plan["physics"]
        if plan["params"]["paganin"]:
            print(f"Paganin    {ph['energy_kev']:g} keV, {ph['distance_m']:g} m, pixel {ph['pixel_size_m']:g} m, "
                  f"delta/beta {plan['params']['delta_beta']:g}")
        shape = (f"{jb['pblock']} projections at full height (no overlap)" if jb["pblock"] else
                 f"{plan['proj_subchunk_rows']} rows + {plan['overlap_rows']} overlap each side")
        print(f"plan       blocks of {shape} ({plan['overlap_why']}): {len(jb['blocks'])} blocks, "
              f"{jb['rows_read']:.0f} rows read and computed for {jb['n_rows']} kept ({amp:.2f}x)")
        print()
        print(f"| {'job':<6} | {'page cache before':>17} | {'wall s':>7} | {'raw MB/s':>8} | {'CPU s (user+sys)':>16} | "
              f"{'page faults':>11} | {'peak RSS MiB':>12} | {'/ budget':>8} | {'/ plan estimate':>15} | {'others CPU s u/s/st':>19} | "
              "load avg before -> after |")
        print(f"|{'-' * 8}|{'-' * 18}:|{'-' * 8}:|{'-' * 9}:|{'-' * 17}:|{'-' * 12}:|{'-' * 13}:|{'-' * 9}:|{'-' * 16}:|{'-' * 20}:|{'-' * 25}|")
        for state, resident, c in jobs:
            res_txt = "?" if resident is None else f"{resident:.0f} MiB"
            print(f"| {state:<6} | {res_txt:>17} | {c.wall:7.1f} | {chunk_raw / 1e6 / c.wall:8.1f} | "
                  f"{c.user:7.1f}+{c.sys:<5.1f}    | {c.minflt / 1e6:9.2f} M | {c.peak / MIB:12.0f} | {c.peak / budget:8.2f} | "
                  f"{c.peak / estimate:15.2f} | {fmt_others(c.others):>19} | {c.load_before} -> {c.load_after} |")
        print(f"\nbudget {budget / MIB:.0f} MiB (--memory {args.memory}); plan's estimate {estimate / MIB:.0f} MiB; "
              "peak RSS and minor page faults of the job's process ("
              + ("/usr/bin/time" if TIMER else "os.wait4: at least the peak of this process") + "); "
              "others CPU s: CPU time the rest of the machine used meanwhile, user / system "
              "(other users' work; kernel threads such as the writeback of the output) / steal (the hypervisor)")
        print("\nreferences, same file, same run (MB/s of the bytes each one moves; the job's raw MB/s counts "
              "the chunk once):")
        print(f"| {'reference':<40} | {'wall s':>7} | {'MiB moved':>9} | {'MB/s':>7} | {'CPU s':>6} | "
              f"{'others CPU s u/s/st':>19} | what |")
        print(f"|{'-' * 42}|{'-' * 8}:|{'-' * 10}:|{'-' * 8}:|{'-' * 7}:|{'-' * 20}:|------|")
        for name, sec, nbytes, cpu, oth, note in refs:
            rate = f"{nbytes / 1e6 / sec:7.0f}" if nbytes else f"{'':>7}"
            print(f"| {name:<40} | {sec:7.2f} | {nbytes / MIB:9.0f} | {rate} | {cpu:6.2f} | "
                  f"{fmt_others(oth):>19} | {note} |")
        print(f"\ncorrections on one {jb['n_rows']} x {n_c} projection (float32, median of {args.repeats}; "
              f"functions of benchmarks/preprocess_corrections.py):")
        print(f"| {'correction':<34} | {'ms / projection':>15} | {'x ' + str(n_p) + ' proj. x ' + f'{amp:.2f}' + ' rows, s':>22} |")
        print(f"|{'-' * 36}|{'-' * 16}:|{'-' * 23}:|")
        total = 0.0
        for name, sec in corr:
            total += sec * n_p * amp
            print(f"| {name:<34} | {sec * 1e3:15.1f} | {sec * n_p * amp:22.1f} |")
        print(f"| {'sum (expected compute of the job)':<34} | {sum(s for _, s in corr) * 1e3:15.1f} | {total:22.1f} |")
        cold = jobs[0][2]
        rd = next(r for r in refs if r[0].startswith("h5py, the job's blocks (cold)"))
        wr = refs[-1]
        print(f"\nbreakdown of the cold job's {cold.wall:.1f} s: reading its blocks from disk {rd[1]:.1f} s "
              f"({100 * rd[1] / cold.wall:.0f} %), writing its output {wr[1]:.1f} s ({100 * wr[1] / cold.wall:.0f} %), "
              f"corrections {total:.1f} s ({100 * total / cold.wall:.0f} %), start-up and imports {startup:.1f} s "
              f"({100 * startup / cold.wall:.0f} %); the rest {cold.wall - rd[1] - wr[1] - total - startup:.1f} s "
              "(flats/darks, dtype conversions and copies, guards, the HDF5 output's chunk writes, and the "
              f"kernel's first touch of fresh memory: the job spent {cold.sys:.1f} s in the kernel)")
        print("\nreproduce: python benchmarks/preprocess.py " + shlex.join(argv))
        print("the job alone: " + shlex.join(["teravox", "plan", "SCAN", "-o", "plan.json", *plan_cmd[8:]])
              + " && teravox preprocess --plan plan.json --chunk 0")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _steps(plan: dict) -> list[tuple[str, dict]]:
    from teravox.config import from_mapping
    from teravox.prep.pipeline import steps

    return steps(from_mapping(plan["params"], source="plan"))


if __name__ == "__main__":
    sys.exit(main())
