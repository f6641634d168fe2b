"""End to end: ``teravox run`` against the same chain as a plain TomoPy script, same scan, same cores.

    python benchmarks/end_to_end.py [--rows 256 1024] [--cols 1024] [--angles 1536]
                                    [--repeat 1] [--dir DIR] [--scan-dir DIR] [--keep]

For each ``--rows``: a synthetic phase-contrast scan with zingers and stripes
(``teravox synth --cols C --rows R --angles A --phase --distance 0.1 --zingers --stripes``,
made once and kept in ``--scan-dir``), then, ``--repeat`` times and alternating which goes
first, so that the load of this shared machine hits both alike:

- ``teravox run`` with flat/dark, outliers, Paganin, −log, stripe removal by sorting, the
  automatic centre, the ``fourier`` backend, ring removal (``fft``), the circular mask and
  uint16 — every stage's jobs get all the cores;
- ``benchmarks/tomopy_chain.py``, the same chain in TomoPy (normalize → remove_outlier →
  retrieve_phase → minus_log → remove_stripe_based_sorting → find_center_vo → gridrec →
  remove_ring → circ_mask → uint16) with ``ncore`` = the cores here, in blocks of 256 rows
  with 32 overlap rows (for Paganin) when the scan has more — when TomoPy imports.

Printed per run: wall and CPU time (``wait4`` of the whole process tree), busy cores (CPU /
wall), the largest process's peak RSS, time per stage (teravox's summary table; the
script's own clock per TomoPy call), the centre found, and the correlation of five slices of
each volume with the phantom (voxel-averaged, inside 90 % of the radius; TomoPy's slices
flipped and moved by half a pixel onto the phantom's grid, ``recon/backends/tomopy_backend.py``);
then the ratio of the TomoPy script's wall time to teravox's — the figure to quote — and
teravox's CPU per voxel.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pipeline import parse_run  # noqa: E402
from preprocess import load, run_child  # noqa: E402

from teravox.io import provenance  # noqa: E402

ENERGY_KEV, DISTANCE_M, PIXEL_M = 20.0, 0.1, 1e-6  # teravox synth's defaults, and --distance 0.1
TOMOPY_BLOCK_ROWS = 256


def tomopy_here() -> bool:
    return subprocess.run([sys.executable, "-c", "import tomopy"], capture_output=True).returncode == 0


def make_scan(path: Path, rows: int, cols: int, angles: int) -> list[str]:
    cmd = [sys.executable, "-m", "teravox.cli", "synth", str(path), "--cols", str(cols), "--rows", str(rows),
           "--angles", str(angles), "--phase", "--energy", str(ENERGY_KEV), "--distance", str(DISTANCE_M),
           "--pixel-size", str(PIXEL_M), "--zingers", "--stripes", "--no-progress"]
    if not path.exists():
        print(f"# writing {path} ...", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    return cmd


def teravox_cmd(scan: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "teravox.cli", "run", "--scan", str(scan), "--out", str(out), "--no-progress",
            "--outliers", "true", "--paganin", "true", "--stripe-recon", "sorting", "--center", "auto",
            "--backend", "fourier", "--rings", "fft", "--circ-mask", "true", "--dtype", "uint16"]


def tomopy_cmd(scan: Path, out: Path, rows: int) -> list[str]:
    cmd = [sys.executable, str(HERE / "tomopy_chain.py"), str(scan), str(out), "--ncore", str(os.cpu_count()),
           "--energy", str(ENERGY_KEV), "--distance", str(DISTANCE_M), "--pixel-size", str(PIXEL_M)]
    return cmd + (["--chunk-rows", str(TOMOPY_BLOCK_ROWS)] if rows > TOMOPY_BLOCK_ROWS else [])


def correlations(volume: np.ndarray, scan: Path, tomopy: bool) -> float:
    """Mean correlation of five slices with the phantom inside 90 % of the radius."""
    from scipy import ndimage as ndi

    from teravox.synth.phantom import Phantom

    with h5py.File(scan, "r") as f:
        phantom = Phantom.from_json(f["/truth/phantom"][()])
    n_rows, n = volume.shape[0], volume.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = np.hypot(xx, yy) < 0.9 * n / 2
    out = []
    for row in np.linspace(0, n_rows - 1, 7).astype(int)[1:-1]:
        img = volume[row].astype(np.float64)
        if tomopy:  # its grid: flipped rows, pixel centres half a pixel from ours
            img = ndi.shift(img[::-1], (-0.5, -0.5), order=3, mode="nearest")
        truth = phantom.slice(row - (n_rows - 1) / 2, n, supersample=2)
        out.append(np.corrcoef(img[inside], truth[inside])[0, 1])
    return float(np.mean(out))


def run_teravox(scan: Path, work: Path) -> dict:
    out = work / "teravox"
    shutil.rmtree(out, ignore_errors=True)
    cmd = teravox_cmd(scan, out)
    child = run_child(cmd, work / "teravox.log")
    text = (work / "teravox.log").read_text(errors="replace")
    if child.returncode:
        raise SystemExit(f"teravox run failed (exit {child.returncode}):\n{text[-3000:]}")
    stages = {k: v["seconds"] for k, v in parse_run(text)["stages"].items()}
    plan = json.loads((out / "plan.json").read_text())
    with h5py.File(next(out.glob("*_recon.h5")), "r") as f:
        vol, center = f["/exchange/data"][()], provenance.read(f)["center"]
    return {"cmd": cmd, "child": child, "stages": stages, "voxels": int(np.prod(plan["recon_shape"])),
            "corr": correlations(vol, scan, tomopy=False), "center": f"{center:.2f}"}


def run_tomopy(scan: Path, work: Path, rows: int) -> dict:
    out = work / "tomopy.h5"
    cmd = tomopy_cmd(scan, out, rows)
    child = run_child(cmd, work / "tomopy.log")
    text = (work / "tomopy.log").read_text(errors="replace")
    if child.returncode:
        raise SystemExit(f"the TomoPy script failed (exit {child.returncode}):\n{text[-3000:]}")
    report = json.loads(text.strip().splitlines()[-1])
    with h5py.File(out, "r") as f:
        vol = f["/exchange/data"][()]
    out.unlink()
    return {"cmd": cmd, "child": child, "stages": report["seconds"], "voxels": vol.size,
            "corr": correlations(vol, scan, tomopy=True), "center": f"{report['center']:.2f}"}


def show(name: str, r: dict) -> None:
    c = r["child"]
    cpu = c.user + c.sys
    print(f"{name:<8}{c.wall:>8.1f}{cpu:>8.1f}{cpu / c.wall:>6.2f}{c.peak / 2**30:>9.2f}"
          f"{1e9 * cpu / r['voxels']:>9.0f}{r['corr']:>8.4f}{r['center']:>9}   load {c.load_before} → {c.load_after}")
    print("        " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[256])
    p.add_argument("--cols", type=int, default=1024)
    p.add_argument("--angles", type=int, default=1536)
    p.add_argument("--repeat", type=int, default=1, help="interleaved pairs per scan (default 1)")
    p.add_argument("--dir", type=Path, default=None, help="outputs (default: a temporary folder)")
    p.add_argument("--scan-dir", type=Path, default=None, help="where the scans are made and kept "
                   "(default: --dir)")
    p.add_argument("--keep", action="store_true", help="keep the outputs")
    args = p.parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="e2e-", dir=args.dir))
    scans = args.scan_dir or work
    scans.mkdir(parents=True, exist_ok=True)
    with_tomopy = tomopy_here()
    print(f"# python benchmarks/end_to_end.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# {os.cpu_count()} CPUs, load {load()}; TomoPy {'importable' if with_tomopy else 'absent: teravox only'}")
    try:
        for rows in args.rows:
            scan = scans / f"scan_{args.angles}x{rows}x{args.cols}.h5"
            synth = make_scan(scan, rows, args.cols, args.angles)
            print(f"\n## {args.angles} angles × {rows} rows × {args.cols} columns: {shlex.join(synth[2:])}")
            print(f"# teravox: {shlex.join(teravox_cmd(scan, work / 'teravox')[2:])}")
            if with_tomopy:
                print(f"# TomoPy:  {shlex.join(tomopy_cmd(scan, work / 'tomopy.h5', rows)[1:])}")
            print(f"{'':<8}{'wall s':>8}{'CPU s':>8}{'cores':>6}{'peak GiB':>9}{'CPU ns/vx':>9}{'corr':>8}{'centre':>9}")
            walls: dict[str, list[float]] = {"teravox": [], "tomopy": []}
            for k in range(args.repeat):
                order = ["teravox", "tomopy"] if k % 2 == 0 else ["tomopy", "teravox"]
                for name in order:
                    if name == "tomopy" and not with_tomopy:
                        continue
                    r = run_teravox(scan, work) if name == "teravox" else run_tomopy(scan, work, rows)
                    walls[name].append(r["child"].wall)
                    show(name, r)
            if walls["tomopy"]:
                ratios = [t / v for t, v in zip(walls["tomopy"], walls["teravox"], strict=True)]
                print(f"# wall time, TomoPy script / teravox run: {', '.join(f'{x:.2f}' for x in ratios)}"
                      f" (median {np.median(ratios):.2f})")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
