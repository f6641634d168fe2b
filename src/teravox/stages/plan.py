"""``teravox plan``: write plan.json from a scan's metadata and the parameters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from teravox import plan as planmod
from teravox.errors import PlanError
from teravox.io import open_scan_for
from teravox.io.provenance import input_identity
from teravox.stages._common import add_param_sources, cli_entry, resolve_params


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox plan",
        usage="teravox plan (SCAN | --scan-sheet FILE) [-o plan.json] [options]",
        description="Plan the chunk jobs of a reconstruction from the scan's metadata and the "
                    "parameters (no pixel is read). Writes plan.json, which every later stage reads.",
        epilog="example: teravox plan scan.h5 --center 1024.5 --proj-chunks 8 --sino-chunks 4 "
               "--memory 4G -o plan.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", nargs="*", help="DXchange or NXtomo scan file (several, or --scan-sheet: stitching)")
    p.add_argument("-o", "--output", default="plan.json", help="plan file to write (default: plan.json)")
    p.add_argument("--workdir", default=None,
                   help="directory for chunk files and outputs (default: the plan file's directory)")
    p.add_argument("--scan-sheet", metavar="FILE", help="CSV/JSON/YAML sheet of offset scans to stitch")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_param_sources(p)
    return p


def make(scan_path: str | None, params, workdir: str | Path, sheet: str | None = None) -> dict:  # noqa: ANN001
    """Plan one scan, or (``sheet``) several offset scans to stitch; used here and by ``teravox run``."""
    if sheet is None:
        with open_scan_for(scan_path, params) as scan:
            return planmod.make_plan(scan, params, workdir=workdir)
    from teravox.stitch import plan_section
    from teravox.stitch.sheet import read_meta, read_sheet

    rows = read_sheet(sheet)
    section = plan_section(rows, read_meta(rows.rows, params), params)
    first = section["scans"][0]
    with open_scan_for(first["path"], params.replace(flat_file=first.get("flat_file"),
                                                      dark_file=first.get("dark_file"))) as scan:
        scan.n_cols = int(section["stitch"]["width"])  # the plan sees the stitched field of view
        plan = planmod.make_plan(scan, params, workdir=workdir, scan_name=Path(sheet).stem,
                                 extra_inputs=section)
    plan["inputs"] = {"files": [], "datasets": []}  # every scan of the sheet identifies the raw data
    for s in section["scans"]:
        with open_scan_for(s["path"], params.replace(flat_file=s.get("flat_file"),
                                                      dark_file=s.get("dark_file"))) as scan:
            identity = input_identity(scan)
        plan["inputs"]["files"] += identity["files"]
        plan["inputs"]["datasets"] += identity["datasets"]
    return plan


def summary(plan: dict) -> str:
    m, gib = plan["memory"], 2**30
    c = plan["center"]
    cval = "auto (found after pass 1)" if c["value"] is None else f"{c['value']:.2f} px ({c['how']})"
    if plan.get("proj_subchunk_projections"):
        sub1 = (f"{plan['proj_subchunk_projections']} projections at full height (no overlap rows needed "
                f"for {plan['overlap_why']})")
    else:
        sub1 = f"{plan['proj_subchunk_rows']} rows + {plan['overlap_rows']} overlap ({plan['overlap_why']})"
    dev = plan.get("recon_device")
    gpu = []
    if dev:
        what = (f"{dev['batch_pairs']} slice pair(s) per batch, device peak ≈ {dev['gpu_peak_estimate'] / gib:.2f} GiB"
                if dev.get("batch_pairs") else dev.get("note", ""))
        gpu = [f"  GPU ({dev['backend']}): {what} of {dev['gpu_memory'] / gib:.1f} GiB "
               f"({dev['gpu_memory_source']})"]
    return "\n".join([
        f"plan for {plan['scan']['path']}",
        f"  projections {len(plan['theta_deg'])} × rows {plan['selection']['rows'][1] - plan['selection']['rows'][0]}"
        f" × columns {plan['selection']['cols'][1] - plan['selection']['cols'][0]}  → volume {tuple(plan['recon_shape'])}",
        f"  pass 1: {len(plan['proj_chunks'])} projection chunk(s), subchunks of {sub1},"
        f" peak ≈ {m['preprocess_peak_estimate'] / gib:.2f} GiB",
        f"  pass 2: {len(plan['sino_chunks'])} sinogram chunk(s), subchunks of {plan['sino_subchunk_rows']} slices,"
        f" peak ≈ {m['reconstruct_peak_estimate'] / gib:.2f} GiB (budget {m['budget'] / gib:.2f} GiB)",
        *gpu,
        f"  centre: {cval}",
        *(["  angles: not in increasing order in the file; projections are used ordered by angle"]
          if plan.get("angles_reordered") else []),
    ])


def _run(args: argparse.Namespace) -> int:
    params = resolve_params(args, quiet=args.quiet)
    if not args.scan and not args.scan_sheet:
        raise PlanError("no scan: give a scan file, or --scan-sheet FILE for several offset scans")
    if len(args.scan) > 1:
        raise PlanError("several scans: describe them in a scan sheet (file, position_mm) and give "
                        "--scan-sheet FILE")
    out = Path(args.output)
    workdir = args.workdir if args.workdir is not None else str(out.resolve().parent)
    plan = make(args.scan[0] if args.scan else None, params, workdir, sheet=args.scan_sheet)
    planmod.save(plan, out)
    if not args.quiet:
        print(summary(plan))
        print(f"wrote {out}")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
