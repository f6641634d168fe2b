"""``teravox info SCAN``: what a scan holds, what metadata was found and where, what is missing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from teravox.io import open_scan
from teravox.io.scan import METADATA_PATHS
from teravox.stages._common import cli_entry

LABELS = {"energy_kev": ("energy", "keV", 1.0), "pixel_size_m": ("pixel size", "µm", 1e6),
          "distance_m": ("propagation distance", "mm", 1e3), "center": ("rotation centre", "px", 1.0),
          "rotation_start_deg": ("rotation start", "°", 1.0), "rotation_end_deg": ("rotation end", "°", 1.0)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox info",
        description="Print what a DXchange or NXtomo scan holds: shapes, dtypes, angle range, the "
                    "instrument values found (and the dataset each came from), what is missing, the "
                    "size of the reconstructed volume, and every file the scan reads (external links "
                    "and virtual-dataset sources included). Opens the files read-only.")
    p.add_argument("scan", help="scan file")
    p.add_argument("--flat-file", help="flats from another file")
    p.add_argument("--dark-file", help="darks from another file")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    return p


def describe(path: str, flat_file: str | None = None, dark_file: str | None = None) -> dict:
    with open_scan(path, flat_file=flat_file, dark_file=dark_file) as scan:
        th = scan.theta_deg
        step = float(np.median(np.diff(th))) if th.size > 1 else 0.0
        span = float(th[-1] - th[0] + step) if th.size > 1 else 0.0
        vol = scan.n_rows * scan.n_cols * scan.n_cols * 4
        return {
            "file": str(scan.path), "format": scan.format,
            "projections": {"dataset": scan.data_path, "shape": list(scan.shape), "dtype": str(scan.dtype),
                            "size_bytes": scan.nbytes},
            "flats": scan.n_flats, "flats_after": scan.n_flats_after, "darks": scan.n_darks,
            "angles": {"count": int(th.size), "first_deg": float(th[0]), "last_deg": float(th[-1]),
                       "step_deg": step, "span_deg": span, "source": scan.theta_source},
            "beam_monitor": scan.i0_source,
            "metadata": {k: {"value": v.value, "source": v.source} for k, v in scan.metadata.items()},
            "missing": [k for k in METADATA_PATHS if k not in scan.metadata],
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
    lines = [
        f"{d['file']}  ({d['format']})",
        f"  projections  {p['dataset']}  {' × '.join(map(str, p['shape']))} (angles × rows × columns)"
        f"  {p['dtype']}  {_size(p['size_bytes'])}",
        f"  flats {d['flats']}" + (f" (+{d['flats_after']} after)" if d["flats_after"] else "")
        + f"   darks {d['darks']}",
        f"  angles       {a['count']} from {a['first_deg']:.3f}° to {a['last_deg']:.3f}° "
        f"(step {a['step_deg']:.4f}°, span {a['span_deg']:.1f}°)  ← {a['source']}",
        f"  beam monitor {d['beam_monitor'] or 'none'}",
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
    d = describe(args.scan, args.flat_file, args.dark_file)
    print(json.dumps(d, indent=1) if args.json else render(d))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
