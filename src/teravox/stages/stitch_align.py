"""``teravox stitch-align --plan plan.json -o shifts.json``: where each offset scan sits.

Reads the plan's scans (``plan["scans"]``, in position order) and stitching settings
(``plan["stitch"]``).  For every pair of scans that overlap it reads, normalised with each
scan's own flats and darks, only the columns of the overlap (plus the search's reach) of a
few projections spread over the scan; the integer search runs on the first and the
other-end projections, the sub-pixel fit on each of them (:mod:`teravox.stitch.align`).
All positions are then solved at once.  Writes shifts.json (every scan's (dx, dy) relative
to scan 0 and its gain, every pair's measurements, residuals and cost map, warnings) and a
figure of the integer searches' cost maps (PNG or PDF).  Holds one pair's strips at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from teravox import __version__
from teravox import plan as planmod
from teravox.errors import PlanError
from teravox.io.atomic import atomic_path
from teravox.stages._common import cli_entry
from teravox.stitch import StitchParams, blend
from teravox.stitch.align import PairFit, Placement, measure_pair, overlapping_pairs, solve
from teravox.stitch.sheet import open_row
from teravox.stitch.source import SHIFTS_FORMAT, normalized_strip, plan_row


def _reach(sp: StitchParams) -> int:
    """Columns read beyond the guessed overlap on each side: the farthest the search may move
    (the window widened and moved ``max_extend`` times) plus the sub-pixel fit's margin."""
    return (sp.window_px // 2) * (sp.max_extend + 2) + 8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox stitch-align",
        description="Find where each of several side-by-side scans sits in the stitched field of view: "
                    "every overlapping pair measured (a ±10 px search around the motor positions on the "
                    "first and last or 180° projections, then a sub-pixel fit on projections spread over "
                    "the scan), and all positions solved at once by weighted least squares, outliers "
                    "rejected. Writes shifts.json, which the projection-chunk jobs read.",
        epilog="example: teravox stitch-align --plan plan.json -o shifts.json")
    p.add_argument("--plan", required=True, help="plan.json of a multi-scan acquisition (teravox plan --scan-sheet)")
    p.add_argument("-o", "--output", default=None,
                   help="shifts file to write (default: shifts.json in the plan's workdir)")
    p.add_argument("--figure", default=None,
                   help="figure of the cost maps, .png or .pdf (default: <output>_costs.png; 'none': no figure)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")
    return p


def settings(plan: dict[str, Any]) -> StitchParams:
    st = plan["stitch"]
    keys = ("window_px", "position_sign", "height_sign", "min_overlap_px", "max_extend", "min_significance",
            "tolerance_px", "align_projections", "prior_px", "max_z")
    return StitchParams(**{k: st[k] for k in keys if k in st})


def align_frames(plan: dict[str, Any], count: int) -> tuple[list[int], list[int]]:
    """The projections measured (``count`` spread evenly over the selected ones, the first
    and the other-end projection among them) and the positions in that list of those two."""
    sel = np.asarray(plan["selection"]["proj_indices"], dtype=np.int64)
    first, other = int(plan["stitch"]["align_projection"]), int(plan["stitch"]["check_projection"])
    pick = sel[np.unique(np.linspace(0, sel.size - 1, min(count, sel.size)).round().astype(int))]
    frames = sorted({int(v) for v in pick} | {first, other})
    return frames, [frames.index(first), frames.index(other)]


def align(plan: dict[str, Any]) -> Placement:
    """Measure every overlapping pair of the plan's scans and solve for all positions."""
    if "scans" not in plan or "stitch" not in plan:
        raise PlanError("the plan has no scans to stitch (make it with `teravox plan --scan-sheet`)")
    params = planmod.params_of(plan)
    entries = plan["scans"]
    sp = settings(plan)
    frames, search = align_frames(plan, sp.align_projections)
    names = [e["name"] for e in entries]
    guesses = [(float(e["guess_px"]), float(e.get("guess_dy_px", 0.0))) for e in entries]
    shapes = [(int(e["shape"][1]), int(e["shape"][2])) for e in entries]
    reach = _reach(sp)
    fits: list[PairFit] = []
    for i, j in overlapping_pairs(guesses, shapes, window_px=sp.window_px):
        gx, gy = guesses[j][0] - guesses[i][0], guesses[j][1] - guesses[i][1]
        # the left scan's columns from where the right one starts, and the right one's up to where
        # the left one ends, each widened by the search's reach
        a_cols = slice(max(0, int(math.floor(gx)) - reach), shapes[i][1])
        b_cols = slice(0, max(1, min(shapes[j][1], int(math.ceil(shapes[i][1] - gx)) + reach)))
        strips = []
        for k, cols in ((i, a_cols), (j, b_cols)):
            with open_row(plan_row(entries[k]), params) as scan:
                if tuple(scan.shape) != tuple(entries[k]["shape"]):
                    raise PlanError(f"{scan.path}: the scan has shape {scan.shape} but the plan was made for "
                                    f"{tuple(entries[k]['shape'])}; make a new plan")
                strips.append(normalized_strip(scan, params, frames, cols))
        fits.append(measure_pair(strips[0], strips[1], i, j, (gx, gy), search_frames=search, projections=frames,
                                 names=(names[i], names[j]), col_offsets=(a_cols.start, b_cols.start),
                                 window_px=sp.window_px, min_overlap_px=sp.min_overlap_px,
                                 max_extend=sp.max_extend, min_significance=sp.min_significance))
        del strips
    return solve(fits, guesses, names, prior_px=sp.prior_px, max_z=sp.max_z)


def shifts_document(plan: dict[str, Any], placement: Placement) -> dict[str, Any]:
    """shifts.json: the placement plus what the blending needs to check it matches the plan."""
    st = plan["stitch"]
    frames, _ = align_frames(plan, settings(plan).align_projections)
    doc = {"format": SHIFTS_FORMAT, "teravox_version": __version__,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "units": "pixels; relative to scan 0",
           "width": st["width"], "rows": st["rows"],
           "align_projection": st["align_projection"], "check_projection": st["check_projection"],
           "projections": frames, "window_px": st.get("window_px"), **placement.to_dict()}
    for s, entry in zip(doc["scans"], plan["scans"], strict=True):
        s["path"] = entry["path"]
        s["shape"] = entry["shape"]
    dx = [s.dx for s in placement.scans]
    cols = [int(e["shape"][2]) for e in plan["scans"]]
    doc["seam_columns"] = blend.seam_columns(dx, cols)
    covered = max(x + c for x, c in zip(dx, cols, strict=True))
    if covered < int(st["width"]) - 0.5:
        doc["warnings"].append(
            f"the scans reach column {covered:.1f} but the plan's stitched width is {st['width']}: the last "
            f"{int(st['width']) - int(covered)} column(s) repeat the last scan's edge; plan with a larger "
            f"stitch margin_px")
    return doc


def write_figure(doc: dict[str, Any], path: Path) -> None:
    """The cost maps of the neighbour searches, motor guess (×) and best shift (+) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [dict(p["search"], left=p["left"], right=p["right"]) for p in doc["pairs"]]
    n = max(1, len(pairs))
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.0 * nrows), squeeze=False)
    names = [s["name"] for s in doc["scans"]]
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    for ax, p in zip(axes.ravel(), pairs, strict=False):
        cost = np.array([[np.nan if v is None else v for v in row] for row in p["cost"]], dtype=np.float64)
        x0, y0 = p["cost_origin"]
        ny, nx = cost.shape
        im = ax.imshow(cost, cmap="viridis", origin="upper", interpolation="nearest",
                       extent=(x0 - 0.5, x0 + nx - 0.5, y0 + ny - 0.5, y0 - 0.5))
        ax.plot(p["guess"][0], p["guess"][1], "x", color="w", ms=8, mew=2, label="motor")
        ax.plot(p["dx"], p["dy"], "+", color="r", ms=10, mew=2, label="found")
        ax.set_title(f"{names[p['left']]} | {names[p['right']]}\ninteger search: dx {p['dx']:+.2f}, "
                     f"dy {p['dy']:+.2f} px", fontsize=8)
        ax.set_xlabel("dx (px)", fontsize=8)
        ax.set_ylabel("dy (px)", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    axes.ravel()[0].legend(fontsize=6, loc="lower right")
    fig.suptitle("Stitching: mean squared difference over the overlap", fontsize=10)
    fig.tight_layout()
    fmt = path.suffix.lower().lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    plt.close(fig)


def run(plan: dict[str, Any], output: str | Path, figure: str | Path | None) -> dict[str, Any]:
    """Align, write shifts.json (and the figure); return the shifts document."""
    doc = shifts_document(plan, align(plan))
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    if figure is not None:
        write_figure(doc, Path(figure))
    return doc


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    out = Path(args.output) if args.output else planmod.workdir(plan) / "shifts.json"
    if args.figure is None:
        figure: Path | None = out.with_name(out.stem + "_costs.png")
    else:
        figure = None if args.figure.lower() == "none" else Path(args.figure)
    doc = run(plan, out, figure)
    for w in doc["warnings"]:
        print(f"teravox stitch-align: warning: {w}", file=sys.stderr)
    if not args.quiet:
        for s in doc["scans"]:
            sx, sy = (v or 0.0 for v in s["sigma"])
            print(f"  {s['name']}: dx {s['dx']:+9.3f} ± {sx:.3f} px, dy {s['dy']:+7.3f} ± {sy:.3f} px, "
                  f"gain {s['gain']:.4f} (motor {s['guess'][0]:+9.2f}, {s['guess'][1]:+.2f} px; {s['how']})")
        for p in doc["pairs"]:
            rx, ry = (math.nan if v is None else v for v in p["residual_rms"])
            used = sum(all(m["used"]) for m in p["measurements"])
            print(f"  {doc['scans'][p['left']]['name']} | {doc['scans'][p['right']]['name']}: "
                  f"{used}/{p['n_measurements']} projections, residual rms dx {rx:.3f}, dy {ry:.3f} px")
        print(f"wrote {out}" + (f" and {figure}" if figure else ""))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
