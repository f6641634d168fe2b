"""Shift errors of lateral stitching: the global fit against the chained pairs, on synthetic scans.

    python benchmarks/stitch.py [--samples 20] [--scans 2 4 7] [--ranges 180 360] [--angles 12]
                                [--seed 0] [--dir DIR]

For each layout (2, 4, 7 scans of 64 × 16 px overlapping by 24 px, 180° with the rotation
axis in the middle of the stitched field, 360° with it near the right edge), ``--samples``
random samples (``teravox.synth.stitch.write_stitch_sample``: a textured object, sub-pixel
true offsets on both axes, vertical offsets up to ±1.5 px, every motor off by up to ±8 px,
Poisson noise at 20 000 counts, detector pixels integrating over their area) are planned
from their scan sheet as ``teravox plan --scan-sheet`` does, then aligned twice in the same
run:

* **chained** — the method of earlier versions, kept as the reference: neighbours only,
  the integer search with its paraboloid on the first and the other-end projection, their
  mean per pair, the pairs summed along the chain (``stitch.align.chain``);
* **global** — what ``teravox stitch-align`` does now (``stages.stitch_align.align``):
  every overlapping pair, a sub-pixel fit on up to 16 projections per pair, all positions
  solved at once by weighted least squares with outlier rejection.

Per layout and method: the largest and the RMS error of every scan's (dx, dy) against the
truth over all samples, the share of samples whose every shift is within 0.1 px, the
measurements rejected as outliers, and the median time of the alignment (reading the
frames included; writing the samples is not timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.stages import stitch_align
from teravox.stages.plan import make
from teravox.stitch import align as al
from teravox.stitch.sheet import open_row
from teravox.stitch.source import normalized_strip, plan_row
from teravox.synth.stitch import write_stitch_sample

GOAL_PX = 0.1


def chained(plan: dict) -> list[tuple[float, float]]:
    """The earlier versions' alignment: neighbour searches on the first and other-end
    projections, reconciled per pair, chained."""
    params = planmod.params_of(plan)
    st, entries = plan["stitch"], plan["scans"]
    first, other = int(st["align_projection"]), int(st["check_projection"])
    frames = []
    for e in entries:
        with open_row(plan_row(e), params) as scan:
            frames.append(normalized_strip(scan, params, [first, other]))
    guesses = [float(e["guess_px"]) for e in entries]
    pairs, checks = [], []
    for i in range(1, len(entries)):
        g = guesses[i] - guesses[i - 1]
        pairs.append(al.align_pair(frames[i - 1][0], frames[i][0], g))
        checks.append(al.align_pair(frames[i - 1][1], frames[i][1], g))
    return al.chain(pairs, checks, guesses, [e["name"] for e in entries]).shifts


def run_layout(n_scans: int, theta: float, samples: int, angles: int, seed: int, root: Path) -> dict:
    axis = "middle" if theta == 180 else "edge"
    res: dict[str, dict] = {m: {"err": [], "ok": 0, "t": [], "rejected": 0} for m in ("chained", "global")}
    for k in range(samples):
        d = root / f"{n_scans}x{theta:.0f}_{k:02d}"
        s = write_stitch_sample(d, n_scans, theta_range_deg=theta, axis=axis, n_angles=angles,
                                seed=seed + 1000 * n_scans + 7 * int(theta) + k)
        plan = make(None, Params(), d, sheet=str(s["sheet"]))
        truth = np.stack([s["dx"], s["dy"]], axis=1)
        for method in ("chained", "global"):
            t0 = time.perf_counter()
            if method == "chained":
                shifts = chained(plan)
            else:
                placement = stitch_align.align(plan)
                shifts = placement.shifts
                res[method]["rejected"] += sum(p.rejected for p in placement.pairs)
            res[method]["t"].append(time.perf_counter() - t0)
            err = np.asarray(shifts) - truth
            res[method]["err"].append(err[1:])
            res[method]["ok"] += bool(np.abs(err).max() <= GOAL_PX)
        for f in d.glob("*.h5"):
            f.unlink()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--scans", type=int, nargs="+", default=[2, 4, 7])
    p.add_argument("--ranges", type=float, nargs="+", default=[180.0, 360.0])
    p.add_argument("--angles", type=int, default=12, help="projections per scan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=None, help="where to write the samples (default: a temporary directory)")
    args = p.parse_args(argv)
    print("# python benchmarks/stitch.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; {args.samples} samples per layout, {args.angles} projections per scan")
    print(f"{'layout':<12}{'method':<9}{'max |err| px':>13}{'rms px':>9}{'all ≤ 0.1 px':>14}"
          f"{'rejected':>10}{'time s':>9}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for theta in args.ranges:
            for n in args.scans:
                res = run_layout(n, theta, args.samples, args.angles, args.seed, Path(tmp))
                for method, r in res.items():
                    err = np.concatenate(r["err"])
                    layout, ok = f"{n} × {theta:.0f}°", f"{r['ok']}/{args.samples}"
                    rejected = r["rejected"] if method == "global" else ""
                    print(f"{layout:<12}{method:<9}{np.abs(err).max():>13.3f}{np.sqrt(np.mean(err**2)):>9.3f}"
                          f"{ok:>14}{rejected:>10}{np.median(r['t']):>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
