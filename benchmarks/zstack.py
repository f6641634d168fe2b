"""A vertical stack joined along z against the same object measured as one tall scan.

    python benchmarks/zstack.py [--levels 3] [--rows 32] [--overlap 10] [--cols 96] [--angles 144]
                                [--seed 0] [--dir DIR]

``teravox.synth.stitch.write_zstack`` writes a tall textured object measured in ``--levels``
height steps of ``--rows`` rows (overlapping by ``--overlap`` rows, sub-pixel true heights,
the sheet's heights off by up to ±2 rows), and the whole height as two single tall scans
with independent noise.  ``teravox run --scan-sheet`` reconstructs the levels and joins them
(``teravox z-stitch``); ``teravox run --scan`` reconstructs each tall scan.  Printed, inside
90 % of the field of view's radius, over the rows all share: the correlation and the
least-squares amplitude of the joined volume against the first tall scan's reconstruction —
and, as the reference measured in the same run, of the second tall scan's against it (two
reconstructions that differ only by noise) — and of each against the phantom's voxel-averaged
truth; the levels' found heights against the truth; the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from teravox.config import Params
from teravox.runner.pipeline import run_pipeline
from teravox.synth.stitch import write_zstack


def values(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["/exchange/data"][()].astype(np.float64)


def agreement(a: np.ndarray, b: np.ndarray, rows: int) -> tuple[float, float]:
    """Correlation and amplitude (least squares through 0) of a against b inside 90 % of the radius."""
    n = a.shape[1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = np.hypot(xx, yy) < 0.9 * n / 2
    x, y = a[:rows][:, inside].ravel(), b[:rows][:, inside].ravel()
    return float(np.corrcoef(x, y)[0, 1]), float(x @ y / (y @ y))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--rows", type=int, default=32, help="rows per level")
    p.add_argument("--overlap", type=int, default=10, help="rows shared by neighbouring levels (nominal)")
    p.add_argument("--cols", type=int, default=96)
    p.add_argument("--angles", type=int, default=144)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = p.parse_args(argv)
    print("# python benchmarks/zstack.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        s = write_zstack(d / "scans", args.levels, rows_per_level=args.rows, overlap_rows=args.overlap,
                         n_cols=args.cols, n_angles=args.angles, seed=args.seed, talls=2)
        times = {}
        quiet = {"progress": False, "log": lambda _msg: None}
        t0 = time.perf_counter()
        stack = run_pipeline(None, d / "stack", Params(), sheet=str(s["sheet"]), **quiet)
        times["stack"] = time.perf_counter() - t0
        talls = []
        for k, path in enumerate(s["talls"]):
            t0 = time.perf_counter()
            talls.append(run_pipeline(path, d / f"tall_{k}", Params(), **quiet).volume)
            times[f"tall {k}"] = time.perf_counter() - t0
        joined, ref, other = values(stack.volume), values(talls[0]), values(talls[1])
        with h5py.File(s["talls"][0]) as f:
            truth = f["/truth/volume"][()].astype(np.float64)
        doc = json.loads((d / "stack" / "zstitch.json").read_text())
        rows = min(len(joined), len(ref))
        print(f"{args.levels} levels of {args.rows} rows × {args.cols}² ({args.angles} angles), overlap "
              f"{args.overlap} rows; joined volume {joined.shape}, tall scans {ref.shape}; compared over {rows} rows")
        print(f"{'':34}{'correlation':>12}{'amplitude':>11}")
        for name, a, b in (("joined vs tall scan", joined, ref), ("second tall scan vs tall scan", other, ref),
                           ("joined vs truth", joined, truth), ("tall scan vs truth", ref, truth),
                           ("second tall scan vs truth", other, truth)):
            c, amp = agreement(a, b, rows)
            print(f"{name:<34}{c:>12.4f}{amp:>11.4f}")
        true_z = s["heights_px"]
        for lv, z in zip(doc["levels"], true_z, strict=True):
            print(f"  {lv['name']}: row 0 found at {lv['z']:8.3f}, true {z:8.3f} (error {lv['z'] - z:+.3f}), "
                  f"sheet {lv['height_px'] - doc['levels'][0]['height_px']:8.3f}; gain {lv['gain']:.4f}")
        print("  seams: " + ", ".join(f"correlation {sm['peak']:.3f}" for sm in doc["seams"])
              + (f"; warnings: {doc['warnings']}" if doc["warnings"] else "; no warnings"))
        print("  wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
