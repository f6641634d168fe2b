"""``teravox center-sweep``: one row reconstructed at a series of centres, on one page.

Straight from a raw scan (``teravox center-sweep scan.h5 1010:1030:0.5``, with the same
correction flags as ``teravox run``: the row and its neighbours are corrected here), or
after pass 1 from a run's projections (``--plan plan.json``, what ``teravox run
--center-sweep`` does).  Writes ``<scan>_center_sweep.pdf`` and ``.png``: the trial
slices cropped where the detail is, the search metric per centre and the run's choice
marked, and prints the choice as the flag to pass.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.config.params import parse_sweep
from teravox.errors import ParamError, StageError
from teravox.recon import center as cmod
from teravox.recon.pipeline import Geometry, line_integrals, reconstruct_block
from teravox.report_center import Sweep, write_sweep_page
from teravox.stages._common import add_param_sources, cli_entry, description, resolve_params

_RANGE = re.compile(r"^-?[0-9.]+:-?[0-9.]+:[0-9.]+$")
#: without a range: the choice ± this many pixels, every pixel
DEFAULT_HALF_WIDTH = 10


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox center-sweep",
        usage="teravox center-sweep (SCAN | --plan plan.json) [FROM:TO:STEP] [options]",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  teravox center-sweep scan.h5                      the automatic centre ± 10 px\n"
               "  teravox center-sweep scan.h5 1010:1030:0.5 --paganin --delta-beta 500\n"
               "  teravox center-sweep --plan recon/plan.json 1010:1030:1   after pass 1 of a run\n"
               "  teravox run --scan scan.h5 --out recon/ --center-sweep 1010:1030:1\n"
               "FROM:TO:STEP are raw detector columns in pixels (TO included).  With --plan the "
               "plan's parameters apply and the parameter flags are ignored.")
    p.add_argument("inputs", nargs="*", metavar="SCAN | FROM:TO:STEP",
                   help="the raw scan (not with --plan) and the trial centres (default: the choice ± 10 px)")
    p.add_argument("--plan", default=None, help="plan.json of a run whose pass 1 and collect are done")
    p.add_argument("--projections", default=None, help="projections.h5 (with --plan; default: in the workdir)")
    p.add_argument("--row", type=int, default=None,
                   help="raw detector row to reconstruct (default: the middle of the selected rows)")
    p.add_argument("-o", "--output", default=None,
                   help="page to write, PDF (default: <scan>_center_sweep.pdf in the plan's workdir, "
                        "or here); a PNG beside it")
    add_param_sources(p)
    return p


def page_paths(plan: dict, output: str | Path | None = None) -> tuple[Path, Path]:
    pdf = Path(output) if output else planmod.workdir(plan) / f"{plan['name']}_center_sweep.pdf"
    return pdf, pdf.with_suffix(".png")


def sweep_row(block: np.ndarray, theta: np.ndarray, params: Params, centers: list[float],
              quantity: str, n_cols: int, side: str | None) -> list[np.ndarray]:
    """One row (``block``: (1, angles, columns) of corrected projections) reconstructed at
    each of ``centers`` (columns of ``block``), through the pass-2 chain."""
    from teravox.recon.sinogram import default_pad_width, half_acquisition_width

    out = []
    for c in centers:
        s = side
        n_out = n_cols
        if params.half_acquisition != "off":
            s = side or ("left" if c < (n_cols - 1) / 2 else "right")
            if not 0 < c < n_cols - 1 or (s == "right") != (c > (n_cols - 1) / 2):
                out.append(np.full((8, 8), np.nan, np.float32))  # no such half-acquisition geometry
                continue
            n_out = half_acquisition_width(n_cols, c, s)
        pad = 0 if params.pad == "none" else (params.pad_width_px if params.pad_width_px is not None
                                              else default_pad_width(n_out))
        geom = Geometry(center=float(c), n_out=int(n_out), pad_width=int(pad), side=s)
        out.append(reconstruct_block(block, theta, params, geom, quantity)[0])
    return out


def _row_from_scan(scan_path: str, params: Params, row: int | None) -> tuple[dict, np.ndarray, int]:
    """A plan made in memory, the corrected row (1, angles, columns) and its raw row index:
    the row with the neighbours its corrections need, through the pass-1 chain."""
    from teravox.io import open_scan_for
    from teravox.prep.pipeline import Physics, correct_normalized, read_normalized

    with open_scan_for(scan_path, params) as scan:
        plan = planmod.make_plan(scan, params, workdir=Path.cwd())
        (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
        r = (r0 + r1) // 2 if row is None else row
        if not r0 <= r < r1:
            raise ParamError(f"--row {r}: outside the selected rows {r0}..{r1 - 1}")
        ov = plan["overlap_rows"]
        lo, hi = max(r0, r - ov), min(r1, r + ov + 1)
        idx = np.asarray(plan["selection"]["proj_indices"])
        ref = float(np.mean(scan.i0[idx])) if scan.i0 is not None else None
        block, counts = read_normalized(scan, params, idx, slice(lo, hi), slice(c0, c1), i0_reference=ref)
        block = correct_normalized(block, params, counts, physics=Physics(**plan["physics"]))
    return plan, np.ascontiguousarray(block[:, r - lo:r - lo + 1].transpose(1, 0, 2)), r


def _run(args: argparse.Namespace) -> int:
    scans = [x for x in args.inputs if not _RANGE.match(x)]
    ranges = [x for x in args.inputs if _RANGE.match(x)]
    if len(ranges) > 1 or len(scans) > 1 or (args.plan and scans) or not (args.plan or scans):
        raise ParamError("give one scan file or --plan plan.json, and at most one FROM:TO:STEP")
    if args.plan:
        plan = planmod.load(args.plan)
        params = planmod.params_of(plan)
        block, r, choice, how, quantity = _row_from_plan(plan, args)
    else:
        params = resolve_params(args)
        plan, block, r = _row_from_scan(scans[0], params, args.row)
        choice, how, quantity = None, "", "transmission"
    c0, c1 = plan["selection"]["cols"]
    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    sino = line_integrals(block, params, quantity)[0]  # as collect: no stripe_recon before the search
    mode = cmod.mode_of(theta, params.half_acquisition)
    curve = cmod.row_curve(sino, theta, mode).curve
    if choice is None:  # straight from a scan: the centre the run would take
        if plan["center"]["value"] is not None:
            choice, how = plan["center"]["value"], plan["center"]["how"]
        else:
            found = cmod.find_center(sino[None], theta, half_acquisition=params.half_acquisition,
                                     around=None if params.center_search_px is None
                                     else ((c1 - c0 - 1) / 2, params.center_search_px))
            choice, how = found.center, f"auto: {found.method}, confidence {found.confidence:.2f}"
    text = ranges[0] if ranges else params.center_sweep
    if text:
        centers = parse_sweep(text, "FROM:TO:STEP")
    else:
        mid = round(choice + c0)
        centers = [float(c) for c in range(max(0, mid - DEFAULT_HALF_WIDTH), min(c1 - 1, mid + DEFAULT_HALF_WIDTH) + 1)]
    local = [c - c0 for c in centers]
    side = params.half_acquisition if params.half_acquisition in ("left", "right") else None
    slices = sweep_row(block, theta, params, local, quantity, c1 - c0, side)
    metric = [float(np.interp(c, curve.centers, curve.metric)) for c in local]
    sweep = Sweep(scan_name=plan["name"], row=r, centers=centers, slices=slices, metric=metric,
                  metric_name=cmod.METRIC_NAMES[mode], choice=choice + c0, choice_how=how,
                  curve=(curve.centers + c0, curve.metric))
    pdf, png = page_paths(plan, args.output if args.output else
                          (None if args.plan else Path(f"{plan['name']}_center_sweep.pdf")))
    write_sweep_page(sweep, pdf, png)
    print(f"centre sweep of row {r}: {len(centers)} centres {centers[0]:g} … {centers[-1]:g} px → {pdf} and {png}")
    print(f"choice: {choice + c0:.2f} px ({how}); to use it: --center {choice + c0:.2f}")
    return 0


def _row_from_plan(plan: dict, args: argparse.Namespace) -> tuple[np.ndarray, int, float, str, str]:
    """The row of projections.h5, its raw index, the resolved centre at that row and how it
    was found, and the data's quantity."""
    from teravox.stages.collect import output_path, read_resolved

    proj = Path(args.projections) if args.projections else output_path(plan)
    if not proj.exists():
        raise StageError(f"{proj}: projections file does not exist (run pass 1 and `teravox collect` first)")
    (r0, r1) = plan["selection"]["rows"]
    r = (r0 + r1) // 2 if args.row is None else args.row
    if not r0 <= r < r1:
        raise ParamError(f"--row {r}: outside the selected rows {r0}..{r1 - 1}")
    resolved = read_resolved(proj)
    with h5py.File(proj, "r") as f:
        data = f["/exchange/data"]
        quantity = data.attrs.get("quantity", "transmission")
        block = np.ascontiguousarray(data[:, r - r0:r - r0 + 1, :].transpose(1, 0, 2), dtype=np.float32)
    choice = resolved["center"] + resolved.get("tilt_px_per_row", 0.0) * (r - r0 - resolved.get("center_row", 0.0))
    return block, r, choice, resolved["center_how"], quantity


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
