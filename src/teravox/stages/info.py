"""``teravox info SCAN``: what a scan holds, what metadata was found and where, what is missing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap

import numpy as np

from teravox.config import Params, from_mapping
from teravox.io import open_scan_for
from teravox.io.scan import METADATA_PATHS
from teravox.io.validate import angle_coverage_note, angle_span
from teravox.stages._common import cli_entry

LABELS = {"energy_kev": ("energy", "keV", 1.0), "pixel_size_m": ("pixel size", "µm", 1e6),
          "distance_m": ("propagation distance", "mm", 1e3), "center": ("rotation centre", "px", 1.0),
          "rotation_start_deg": ("rotation start", "°", 1.0), "rotation_end_deg": ("rotation end", "°", 1.0),
          "exposure_s": ("exposure", "ms", 1e3)}
#: found when the file has them, never asked for: the run does not need them
INFORMATIVE = ("exposure_s",)


def build_parser() -> argparse.ArgumentParser:
    from teravox.config import add_arguments

    p = argparse.ArgumentParser(
        prog="teravox info",
        description=textwrap.fill("Print what a scan holds — a DXchange or NeXus HDF5 file, or TIFF files (a folder, "
                    "a glob pattern, a multi-page file): shapes, dtypes, angle range, which datasets "
                    "were chosen for the frames, image keys, angles, flats, darks and beam monitor, and "
                    "why; the instrument values found (and the dataset each came from), what is "
                    "missing, the size of the reconstructed volume, and every file the scan reads "
                    "(external links, virtual-dataset sources and TIFF folders included). Opens the files "
                    "read-only. Takes the input parameters of `teravox run` (--data-path, --angles-path, ...).",
                                  width=90),
        epilog="examples:\n"
               "  teravox info scan.h5\n"
               "  teravox info scan.nxs --data-path /entry/pco1_hw_hdf/data --angles-unit deg\n"
               "  teravox info proj/ --flat-file flats/ --dark-file darks/ --angles-file angles.txt --angles-unit deg\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", help="scan: an HDF5 file, a folder or glob pattern of TIFF files, or a multi-page TIFF")
    p.add_argument("--params", metavar="FILE", help="JSON or YAML parameter file (its input parameters are used)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    add_arguments(p, ("input",))
    return p


def describe(path: str, params: Params | None = None) -> dict:
    """What ``teravox info`` prints, as a JSON-able dict."""
    params = params or from_mapping({})
    with open_scan_for(path, params) as scan:
        th = scan.theta_deg
        step = float(np.median(np.diff(np.sort(th)))) if th.size > 1 else 0.0
        vol = scan.n_rows * scan.n_cols * scan.n_cols * 4
        notes = list(scan.notes)
        coverage = angle_coverage_note(th, params.half_acquisition)
        if coverage:
            notes.append(coverage)
        return {
            "file": str(scan.path), "format": scan.format,
            "projections": {"dataset": scan.data_path, "shape": list(scan.shape), "dtype": str(scan.dtype),
                            "size_bytes": scan.nbytes},
            "flats": scan.n_flats, "flats_after": scan.n_flats_after, "darks": scan.n_darks,
            "angles": {"count": int(th.size), "first_deg": float(th[0]), "last_deg": float(th[-1]),
                       "min_deg": float(th.min()), "max_deg": float(th.max()),
                       "step_deg": step, "span_deg": angle_span(th), "source": scan.theta_source},
            "beam_monitor": scan.i0_source,
            "chosen": [dataclasses.asdict(c) for c in scan.choices],
            "notes": notes,
            "metadata": {k: {"value": v.value, "source": v.source} for k, v in scan.metadata.items()},
            "missing": [k for k in METADATA_PATHS if k not in scan.metadata and k not in INFORMATIVE],
            "volume_float32_bytes": vol,
            "files_read": [dataclasses.asdict(df) for df in scan.data_files()],
        }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def render(d: dict) -> str:
    p, a = d["projections"], d["angles"]
    order = "" if a["first_deg"] <= a["last_deg"] else ", descending"
    lines = [
        f"{d['file']}  ({d['format']})",
        f"  projections  {p['dataset']}  {' × '.join(map(str, p['shape']))} (angles × rows × columns)"
        f"  {p['dtype']}  {_size(p['size_bytes'])}",
        f"  flats {d['flats']}" + (f" (+{d['flats_after']} after)" if d["flats_after"] else "")
        + f"   darks {d['darks']}",
        f"  angles       {a['count']} from {a['first_deg']:.3f}° to {a['last_deg']:.3f}° "
        f"(step {a['step_deg']:.4f}°, span {a['span_deg']:.1f}°{order})  ← {a['source']}",
        f"  beam monitor {d['beam_monitor'] or 'none'}",
        "  chosen:",
        *(f"    {c['role']:<13} {c['where']}  ← {c['why']}" for c in d["chosen"]),
        *(f"  note: {n}" for n in d["notes"]),
        "  instrument values found:",
    ]
    for key, v in d["metadata"].items():
        label, unit, scale = LABELS[key]
        lines.append(f"    {label:<22} {v['value'] * scale:.6g} {unit}   ← {v['source']}")
    if not d["metadata"]:
        lines.append("    (none)")
    if d["missing"]:
        lines.append("  missing (give as parameters if needed): "
                     + ", ".join(LABELS[k][0] for k in d["missing"]))
    rows, cols = p["shape"][1], p["shape"][2]
    lines.append(f"  reconstructed volume  {rows} × {cols} × {cols} float32 = {_size(d['volume_float32_bytes'])}")
    lines.append("  files read:")
    lines += [f"    {file}: {', '.join(what)}" for file, what in files_read(d["files_read"]).items()]
    return "\n".join(lines)


def files_read(entries: list[dict]) -> dict[str, list[str]]:
    """What the scan reads from each file: roles, with how the file is reached when not directly."""
    out: dict[str, list[str]] = {}
    for df in entries:
        what = df["role"] + (f" ({df['via']})" if df["via"] else "")
        if what not in out.setdefault(df["file"], []):
            out[df["file"]].append(what)
    return out


def _run(args: argparse.Namespace) -> int:
    from teravox.config import from_args, load_file

    d = describe(args.scan, from_args(args, load_file(args.params) if args.params else None))
    print(json.dumps(d, indent=1) if args.json else render(d))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
