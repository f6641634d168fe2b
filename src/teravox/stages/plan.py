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
    p.add_argument("scan", nargs="*", help="scan: DXchange or NeXus HDF5, or TIFF files (several, or --scan-sheet: stitching)")
    p.add_argument("-o", "--output", default="plan.json", help="plan file to write (default: plan.json)")
    p.add_argument("--workdir", default=None,
                   help="directory for chunk files and outputs (default: the plan file's directory)")
    p.add_argument("--scan-sheet", metavar="FILE", help="CSV/JSON/YAML sheet of offset scans to stitch")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_param_sources(p)
    return p


def make(scan_path: str | None, params, workdir: str | Path, sheet: str | None = None) -> dict:  # noqa: ANN001
    """Plan one scan, or (``sheet``) several offset scans: side by side (stitched as projections)
    or in height steps (a vertical stack, :func:`make_zstack`); used here and by ``teravox run``."""
    if sheet is None:
        with open_scan_for(scan_path, params) as scan:
            return planmod.make_plan(scan, params, workdir=workdir)
    from teravox.stitch import StitchParams
    from teravox.stitch.sheet import read_meta, read_sheet, resolve_pixel_size, split_levels

    rows = read_sheet(sheet)
    metas = read_meta(rows.rows, params)
    sp = StitchParams.from_params(params)
    pixel = resolve_pixel_size(rows.rows, metas, params.pixel_size_m, rows.pixel_size_m)
    levels = split_levels(rows.rows, metas, pixel[0], window_px=sp.window_px, position_sign=sp.position_sign,
                          height_sign=sp.height_sign)
    if len(levels) > 1:
        return make_zstack(rows, levels, params, workdir, pixel, sp)
    return _level_plan(rows, levels[0], params, workdir, Path(sheet).stem, pixel)


def _level_plan(sheet, level, params, workdir: str | Path, name: str,  # noqa: ANN001
                pixel: tuple[float | None, str], width: int | None = None) -> dict:
    """The plan of one level: its one scan, or its scans stitched side by side (``width``: the
    stitched width, else the level's own)."""
    from teravox.stitch import plan_section
    from teravox.stitch.sheet import Sheet

    if len(level.rows) == 1:
        row = level.rows[0]
        own = params.replace(flat_file=str(row.flat_file) if row.flat_file else params.flat_file,
                             dark_file=str(row.dark_file) if row.dark_file else params.dark_file)
        with open_scan_for(str(row.file), own) as scan:
            return planmod.make_plan(scan, own, workdir=workdir, scan_name=name)
    section = plan_section(Sheet(level.rows, sheet.path, sheet.pixel_size_m), level.metas, params,
                           None if width is None else {"width": width}, pixel=pixel)
    first = section["scans"][0]
    with open_scan_for(first["path"], params.replace(flat_file=first.get("flat_file"),
                                                      dark_file=first.get("dark_file"))) as scan:
        scan.n_cols = int(section["stitch"]["width"])  # the plan sees the stitched field of view
        plan = planmod.make_plan(scan, params, workdir=workdir, scan_name=name,
                                 extra_inputs=section)
    plan["inputs"] = {"files": [], "datasets": []}  # every scan of the sheet identifies the raw data
    for s in section["scans"]:
        with open_scan_for(s["path"], params.replace(flat_file=s.get("flat_file"),
                                                      dark_file=s.get("dark_file"))) as scan:
            identity = input_identity(scan)
        plan["inputs"]["files"] += identity["files"]
        plan["inputs"]["datasets"] += identity["datasets"]
    return plan


def make_zstack(sheet, levels, params, workdir: str | Path, pixel: tuple[float | None, str],  # noqa: ANN001
                sp) -> dict:  # noqa: ANN001
    """A vertical stack: one plan per level (workdir ``<workdir>/<name>_z<k>/``, or ``.`` when the
    workdir is ``.``; side-by-side scans cut to one stitched width), and the stack's plan that
    the z-stitch stage reads (``kind: zstack``).

    PlanError naming the scans when neighbouring levels cannot overlap, when the levels are not
    laid out alike, or when their reconstructions would not share one slice size."""
    from teravox.stitch import plan_section
    from teravox.stitch.sheet import Sheet, check_levels

    check_levels(levels, pixel[0], window_px=sp.window_px, position_sign=sp.position_sign)
    if params.format != ["hdf5"]:  # z-stitch reads and writes HDF5 volumes
        raise PlanError(f"format {','.join(params.format)}: a vertical stack is joined into one HDF5 volume; "
                        "give --format hdf5 (the default)")
    stem = Path(sheet.path).stem
    width = None
    if len(levels[0].rows) > 1:  # one stitched width for all, the narrowest, so no level falls short
        width = min(plan_section(Sheet(lv.rows, sheet.path, sheet.pixel_size_m), lv.metas, params,
                                 pixel=pixel)["stitch"]["width"] for lv in levels)
    plans = []
    for lv in levels:
        name = f"{stem}_z{lv.index:02d}"
        # "." (Nextflow's): every job runs in a directory of its own, which is every level's workdir
        level_dir = Path(workdir) if str(workdir) == "." else Path(workdir) / name
        plans.append(_level_plan(sheet, lv, params, level_dir, name, pixel, width))
    sizes = {p["name"]: p["recon_shape"][1] for p in plans}
    if len(set(sizes.values())) > 1:
        raise PlanError("the levels of the vertical stack would give slices of different sizes ("
                        + ", ".join(f"{k}: {v} px" for k, v in sizes.items())
                        + "): their detectors or column ranges differ; give the same col_range for all")
    rows = [p["recon_shape"][0] for p in plans]
    guess = [b.height_px - a.height_px for a, b in zip(levels[:-1], levels[1:], strict=True)]
    n = plans[0]["recon_shape"][1]
    return {
        "format": planmod.PLAN_FORMAT, "kind": "zstack", "teravox_version": plans[0]["teravox_version"],
        "created": plans[0]["created"], "name": stem, "workdir": str(workdir), "params": params.to_dict(),
        "sheet": str(sheet.path),
        "levels": [{"index": lv.index, "name": p["name"], "plan": f"{p['name']}/plan.json",
                    "volume": p["outputs"]["volume"], "height_px": lv.height_px,
                    "scans": [r.file.name for r in lv.rows], "rows": p["recon_shape"][0]}
                   for lv, p in zip(levels, plans, strict=True)],
        "zstitch": {"guess_dz": guess, "window_px": sp.window_px, "pixel_size_m": pixel[0],
                    "pixel_size_source": pixel[1], "height_sign": sp.height_sign,
                    "blend": "linear ramps from each volume's top and bottom, normalised to 1",
                    "match": "upper ≈ gain · lower (the ratio of the overlap's means)"},
        "recon_shape": [int(round(sum(guess) + rows[-1])), n, n],
        "memory": {"budget": params.memory_bytes()},
        "outputs": {"volume": f"{stem}_recon.h5", "report": f"{stem}_report.pdf", "zstitch": "zstitch.json"},
        "level_plans": plans,
    }


def save(plan: dict, path: str | Path) -> list[Path]:
    """Write ``plan`` to ``path``; a vertical stack's level plans go to ``<its dir>/<level>/plan.json``
    (their workdirs).  Returns the level plan files (none for a plain plan)."""
    path = Path(path)
    levels = []
    if plan.get("kind") == "zstack":
        for lv, lp in zip(plan["levels"], plan["level_plans"], strict=True):
            out = path.parent / lv["plan"]
            out.parent.mkdir(parents=True, exist_ok=True)
            planmod.save(lp, out)
            levels.append(out)
    planmod.save(plan, path)
    return levels


def summary(plan: dict) -> str:
    if plan.get("kind") == "zstack":
        head = [f"plan for a vertical stack of {len(plan['levels'])} levels ({plan['sheet']}) → volume "
                f"≈ {tuple(plan['recon_shape'])}, joined along z by `teravox z-stitch`"]
        for lv, lp in zip(plan["levels"], plan["level_plans"], strict=True):
            head.append(f"level {lv['index']} at height {lv['height_px']:.1f} px ({', '.join(lv['scans'])}):")
            head.append("  " + summary(lp).replace("\n", "\n  "))
        return "\n".join(head)
    m, gib = plan["memory"], 2**30
    c = plan["center"]
    cval = (f"{c['how']}; found after pass 1, by collect" if c["value"] is None
            else f"{c['value']:.2f} px ({c['how']})")
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
        f"  collect: peak ≈ {m['collect_peak_estimate'] / gib:.2f} GiB",
        f"  centre: {cval}",
        *(["  angles: not in increasing order in the file; projections are used ordered by angle"]
          if plan.get("angles_reordered") else []),
        *(f"  note: {n}" for n in plan.get("notes", [])),
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
    levels = save(plan, out)
    if not args.quiet:
        print(summary(plan))
        print(f"wrote {out}" + "".join(f", {p}" for p in levels))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
