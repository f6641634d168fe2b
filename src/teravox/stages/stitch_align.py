"""``teravox stitch-align --plan plan.json -o shifts.json``: where each offset scan sits.

Reads the plan's scans (``plan["scans"]``, in position order) and stitching settings
(``plan["stitch"]``), normalises the first projection of each scan (and the one at the
other end of the scan, as a check) with the scan's own flats and darks, refines the
motor positions by the neighbour search of :mod:`teravox.stitch.align`, and writes
shifts.json (every scan's (dx, dy) relative to scan 0, the searches' cost maps and
warnings) and a figure of the cost maps (PNG or PDF).  Holds two scans' frames at a time.
"""

from __future__ import annotations

import argparse
import json
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
from teravox.stitch.align import Alignment, align_pair, chain
from teravox.stitch.sheet import open_row
from teravox.stitch.source import SHIFTS_FORMAT, normalized_frame, plan_row


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox stitch-align",
        description="Find where each of several side-by-side scans sits in the stitched field of view: "
                    "motor positions refined by a ±10 px search on the first and last (or 180°) projections. Writes "
                    "shifts.json, which the projection-chunk jobs read.",
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
    keys = ("window_px", "position_sign", "min_overlap_px", "max_extend", "min_significance", "tolerance_px")
    return StitchParams(**{k: st[k] for k in keys if k in st})


def align(plan: dict[str, Any]) -> Alignment:
    """Align the plan's scans, reading two scans' normalised frames at a time."""
    if "scans" not in plan or "stitch" not in plan:
        raise PlanError("the plan has no scans to stitch (make it with `teravox plan --scan-sheet`)")
    params = planmod.params_of(plan)
    st, entries = plan["stitch"], plan["scans"]
    sp = settings(plan)
    first, other = int(st["align_projection"]), int(st["check_projection"])
    names = [e["name"] for e in entries]
    guesses = [float(e["guess_px"]) for e in entries]
    kw = dict(window_px=sp.window_px, min_overlap_px=sp.min_overlap_px, max_extend=sp.max_extend,
              min_significance=sp.min_significance)
    pairs, checks = [], []
    prev: tuple[np.ndarray, np.ndarray | None] | None = None
    for i, entry in enumerate(entries):
        with open_row(plan_row(entry), params) as scan:
            if tuple(scan.shape) != tuple(entry["shape"]):
                raise PlanError(f"{scan.path}: the scan has shape {scan.shape} but the plan was made for "
                                f"{tuple(entry['shape'])}; make a new plan")
            cur = (normalized_frame(scan, params, first),
                   normalized_frame(scan, params, other) if other != first else None)
        if prev is not None:
            g = guesses[i] - guesses[i - 1]
            pair = (names[i - 1], names[i])
            pairs.append(align_pair(prev[0], cur[0], g, names=pair, **kw))
            checks.append(None if cur[1] is None or prev[1] is None
                          else align_pair(prev[1], cur[1], g, names=pair, **kw))
        prev = cur
    return chain(pairs, checks, guesses, names, tolerance_px=sp.tolerance_px)


def shifts_document(plan: dict[str, Any], alignment: Alignment) -> dict[str, Any]:
    """shifts.json: the alignment plus what the blending needs to check it matches the plan."""
    st = plan["stitch"]
    doc = {"format": SHIFTS_FORMAT, "teravox_version": __version__,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "units": "pixels; relative to scan 0",
           "width": st["width"], "rows": st["rows"], "n_cols": st["n_cols"],
           "align_projection": st["align_projection"], "check_projection": st["check_projection"],
           "window_px": st.get("window_px"), **alignment.to_dict()}
    for s, entry in zip(doc["scans"], plan["scans"], strict=True):
        s["path"] = entry["path"]
    dx = [s.dx for s in alignment.scans]
    doc["seam_columns"] = blend.seam_columns(dx, int(st["n_cols"]))
    covered = max(x for x in dx) + int(st["n_cols"])
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

    pairs = doc["pairs"]
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
        ax.set_title(f"{names[p['left']]} | {names[p['right']]}\nfirst projection: dx {p['dx']:+.2f}, "
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
            print(f"  {s['name']}: dx {s['dx']:+9.2f} px, dy {s['dy']:+6.2f} px "
                  f"(motor {s['guess'][0]:+9.2f} px; {s['how']})")
        print(f"wrote {out}" + (f" and {figure}" if figure else ""))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
