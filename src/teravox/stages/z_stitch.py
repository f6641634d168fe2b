"""``teravox z-stitch --plan plan.json``: the levels of a vertical stack joined into one volume.

Reads the stack's plan (``teravox plan --scan-sheet`` of a sheet with heights) and each
level's merged volume, places every level below the one above it by the correlation of the
reconstructed slices near their seam (:func:`teravox.stitch.zstack.find_seam`, around the
heights' guess), matches their values, and writes ``<name>_recon.h5`` block by block — each
tall row from the levels that cover it, blended by distance from their top and bottom edges
— with ``zstitch.json`` (offsets, correlations, gains, warnings) and ``<name>_report.pdf``
(the stack and its seams).  Reads at most a block of rows (in strips of y rows when whole
slices would not fit the memory budget) and the slices near one seam at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from teravox import __version__
from teravox import plan as planmod
from teravox.errors import PlanError, StageError
from teravox.io import provenance
from teravox.io.atomic import atomic_path
from teravox.post.dtype import DtypeMapping
from teravox.progress import bar
from teravox.stages._common import cli_entry
from teravox.stitch import zstack

GAIN_WARN = 0.05          # a level whose values are matched by more than this is named
STRIP_PX = 1024           # y rows of a slice read at a time for the seam search


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox z-stitch",
        description="Join the reconstructed levels of a vertical stack (a scan sheet with heights) into one "
                    "volume: each level placed below the one above by the correlation of their slices near the "
                    "seam, values matched, blended by distance from the volumes' edges.",
        epilog="example: teravox z-stitch --plan plan.json  (after each level's plan.json has run)")
    p.add_argument("--plan", required=True, help="plan.json of the stack (teravox plan --scan-sheet with heights)")
    p.add_argument("--volumes", nargs="+", default=None, metavar="FILE",
                   help="the levels' merged volumes, in any order (default: <workdir>/<level>/<level>_recon.h5)")
    p.add_argument("-o", "--output", default=None, help="volume to write (default: <workdir>/<name>_recon.h5)")
    p.add_argument("--report", default=None, help="PDF to write (default: beside the volume, <name>_report.pdf; "
                                                   "'none': no report)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def check_plan(plan: dict[str, Any]) -> None:
    if plan.get("kind") != "zstack":
        raise PlanError("the plan is not a vertical stack (make it with `teravox plan --scan-sheet` from a sheet "
                        "whose scans have height_mm or height_px in several steps)")


def volume_paths(plan: dict[str, Any], volumes: list[str] | None = None) -> list[Path]:
    """Each level's volume: by its file name among ``volumes``, else in the level plan's workdir."""
    if volumes is None:
        return [Path(lp["workdir"]) / lv["volume"] for lv, lp in zip(plan["levels"], plan["level_plans"], strict=True)]
    by_name = {Path(v).name: Path(v) for v in volumes}
    missing = [lv["volume"] for lv in plan["levels"] if lv["volume"] not in by_name]
    if missing:
        raise StageError(f"--volumes lacks {', '.join(missing)} (got {', '.join(sorted(by_name))})")
    return [by_name[lv["volume"]] for lv in plan["levels"]]


class _Level:
    """One level's volume, read as values (integer codes mapped back) and cut to the stack's size."""

    def __init__(self, path: Path, want_rows: int) -> None:
        if not path.exists():
            raise StageError(f"{path}: level volume does not exist (run the level's stages first)")
        self.path = path
        self.f = h5py.File(path, "r")
        ds = self.f.get("/exchange/data")
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
            self.f.close()
            raise StageError(f"{path}: no volume at /exchange/data")
        if ds.shape[0] != want_rows:
            self.f.close()
            raise StageError(f"{path}: the volume has {ds.shape[0]} rows but the plan expects {want_rows}; "
                             f"was it made from another plan?")
        self.ds = ds
        self.mapping = DtypeMapping.from_attrs(ds.attrs) if "dtype" in ds.attrs else DtypeMapping("float32")
        self.n = int(ds.shape[2])

    def rows(self, start: int, stop: int, n: int, ys: slice | None = None) -> np.ndarray:
        """Rows start..stop, y rows ``ys`` of the n × n grid, as float32 values cut about the axis."""
        ys = slice(0, n) if ys is None else ys
        sy, sx, odd = zstack.crop_window(self.n, n, ys)
        block = self.mapping.to_values(self.ds[start:stop, sy, sx])
        return zstack.halve(block) if odd else block

    def binned(self, start: int, stop: int, n: int, binning: int) -> np.ndarray:
        """Rows start..stop binned in-plane, read a strip of y rows at a time."""
        m = n // binning
        out = np.empty((stop - start, m, m), dtype=np.float32)
        strip = max(binning, STRIP_PX // binning * binning)
        for y0 in range(0, m * binning, strip):
            y1 = min(m * binning, y0 + strip)
            out[:, y0 // binning:y1 // binning] = zstack.bin_slices(self.rows(start, stop, n, slice(y0, y1)), binning)
        return out

    def close(self) -> None:
        self.f.close()


def find_seams(plan: dict[str, Any], levels: list[_Level], n: int) -> tuple[list[zstack.Seam], list[str]]:
    """Each neighbouring pair's seam from the slices near it (binned), and warnings."""
    half = int(plan["zstitch"]["window_px"]) // 2
    binning = zstack.bin_factor(n)
    seams, warns = [], []
    names = [lv["name"] for lv in plan["levels"]]
    for k, guess in enumerate(plan["zstitch"]["guess_dz"]):
        up, lo = levels[k], levels[k + 1]
        r_u, r_l = up.ds.shape[0], lo.ds.shape[0]
        tail = max(0, int(math.floor(guess)) - half - 1)
        head = min(r_l, int(math.ceil(r_u - guess)) + half + 1)
        if head < zstack.MIN_ROWS or tail >= r_u:
            raise StageError(f"{names[k + 1]} is {guess:.1f} rows below {names[k]}, which has {r_u} rows: "
                             f"they do not overlap")
        seam = zstack.find_seam(up.binned(tail, r_u, n, binning), tail, lo.binned(0, head, n, binning), guess,
                                window=2 * half, upper=k, lower=k + 1)
        pair = f"{names[k + 1]} below {names[k]}"
        if not seam.determined:
            warns.append(f"{pair}: no correlation peak (best {seam.peak:.2f} < {zstack.MIN_PEAK}) within ±{half} "
                         f"rows of the heights' guess {guess:+.2f}: the guess is kept; check the heights")
        elif abs(seam.dz - guess) > half - 1:
            warns.append(f"{pair}: found {seam.dz:+.2f} rows, at the edge of the ±{half}-row search around the "
                         f"heights' guess {guess:+.2f}: check the heights")
        if seam.determined and abs(seam.gain - 1) > GAIN_WARN:
            warns.append(f"{pair}: its values are {100 * (1 / seam.gain - 1):+.1f} % off the upper level's in the "
                         f"overlap and were multiplied by {seam.gain:.4f}: the levels' reconstructions differ in scale")
        seams.append(seam)
    return seams, warns


def _blocks(stack: zstack.Stack, levels: list[_Level], n: int, rows: int,
            tile: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first tall row, first y row, joined block) for blocks of ``rows`` tall rows × ``tile`` y rows."""
    for u0 in range(0, stack.n_rows, rows):
        u1 = min(stack.n_rows, u0 + rows)
        for y0 in range(0, n, tile):
            ys = slice(y0, min(n, y0 + tile))
            reads = []
            for k, lv in enumerate(levels):
                src = stack.source_rows(k, u0, u1)
                reads.append(None if src is None else (src.start, lv.rows(src.start, src.stop, n, ys)))
            yield u0, y0, zstack.blend_rows(stack, u0, u1, reads)


def write_volume(path: Path, blocks: Iterator[tuple[int, int, np.ndarray]], shape: tuple[int, int, int],
                 mapping: DtypeMapping, params: Any, attrs: dict[str, Any], prov: dict[str, Any],
                 progress: bool = False) -> Path:
    """The one writer of the stack's volume: /exchange/data (chunked, compressed as the
    parameters say, the integer mapping in its attributes), the pyramid levels beside it, and
    the provenance; written to a temporary name and renamed when complete."""
    from teravox.post.pyramid import downsample_mean, level_factors, level_shapes

    factors = level_factors(params.pyramid)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("/exchange/data", shape=shape, dtype=np.dtype(mapping.dtype),
                              chunks=(1, min(shape[1], 1024), min(shape[2], 1024)),
                              compression=None if params.compression == "none" else params.compression)
        for key, value in {**mapping.to_attrs(), **attrs}.items():
            ds.attrs[key] = value
        pyr = [f.create_dataset(f"/exchange/data_{fac}x", shape=shp, dtype=np.float32, chunks=True)
               for fac, shp in zip(factors, level_shapes(shape, params.pyramid), strict=True)]
        for u0, y0, block in bar(blocks, desc="z-stitch", unit="block", enable=progress):
            ds[u0:u0 + block.shape[0], y0:y0 + block.shape[1]] = mapping.apply(block)
            for fac, lds in zip(factors, pyr, strict=True):
                small = downsample_mean(block, fac)
                lds[u0 // fac:u0 // fac + small.shape[0], y0 // fac:y0 // fac + small.shape[1]] = small
        provenance.write(f, stage="z-stitch", params=params.to_dict(), **prov)
    return path


def block_shape(plan: dict[str, Any], n: int, factor: int) -> tuple[int, int]:
    """Tall rows and y rows per block: a quarter of the budget for the block, its sources and
    their values (~6 float32 copies), both multiples of the pyramid's largest factor; whole
    slices while ``factor`` of them fit, else strips of y rows (a 24 000² slice is 2.3 GB)."""
    voxels = max(1, int(plan["memory"]["budget"] // 4 // (6 * 4)))
    if voxels >= factor * n * n:
        return max(factor, voxels // (n * n) // factor * factor), n
    return factor, min(n, max(factor, voxels // (factor * n) // factor * factor))


def output_mapping(params: Any, stack: zstack.Stack, levels: list[_Level]) -> DtypeMapping:
    """The output's integer mapping: the levels' ranges, matched to level 0's values, together."""
    if params.dtype not in ("uint8", "uint16"):
        return DtypeMapping(params.dtype)
    lo, hi = math.inf, -math.inf
    for k, lv in enumerate(levels):
        if lv.mapping.vmin is None:
            raise StageError(f"{lv.path}: a float volume cannot be joined into a {params.dtype} stack without a "
                             f"range; give dtype_range")
        ends = [stack.gain[k] * v for v in (lv.mapping.vmin, lv.mapping.vmax)]
        lo, hi = min(lo, *ends), max(hi, *ends)
    if params.dtype_range is not None:
        lo, hi = params.dtype_range
    return DtypeMapping(params.dtype, lo, hi)


def run(plan: dict[str, Any], volumes: list[str] | None = None, output: str | Path | None = None,
        report: str | Path | None = "default", progress: bool = False) -> dict[str, Any]:
    """Join the levels; write the volume, zstitch.json and (unless ``report`` is None) the report."""
    check_plan(plan)
    params = planmod.params_of(plan)
    out = Path(output) if output else planmod.workdir(plan) / plan["outputs"]["volume"]
    paths = volume_paths(plan, volumes)
    t0 = time.perf_counter()
    levels: list[_Level] = []
    try:
        for lv, p in zip(plan["levels"], paths, strict=True):
            levels.append(_Level(p, int(lv["rows"])))
        n = min(lv.n for lv in levels)
        seams, warns = find_seams(plan, levels, n)
        stack = zstack.Stack.chain(seams, [lv.ds.shape[0] for lv in levels])
        if any(lv.n != n for lv in levels):
            warns.append(f"the levels' slices differ in size ({', '.join(str(lv.n) for lv in levels)} px): "
                         f"all cut to {n} × {n} about the rotation axis")
        mapping = output_mapping(params, stack, levels)
        shape = (stack.n_rows, n, n)
        doc = {"format": 1, "teravox_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "units": "rows of the tall volume; level 0's row 0 is row 0", "volume": str(out),
               "shape": list(shape), "levels": [{"name": lv["name"], "volume": str(p), "z": z, "rows": r,
                                                "gain": g, "height_px": lv["height_px"]}
                                               for lv, p, z, r, g in zip(plan["levels"], paths, stack.z,
                                                                         stack.rows, stack.gain, strict=True)],
               "seams": [s.to_dict() for s in seams], "seam_rows": stack.seam_rows(), "warnings": warns}
        factor = max([1, *[2**k for k in range(1, params.pyramid + 1)]])
        write_volume(out, _blocks(stack, levels, n, *block_shape(plan, n, factor)), shape, mapping, params,
                     {"quantity": "attenuation per pixel"},
                     {"plan": {k: v for k, v in plan.items() if k != "level_plans"},
                      "input": [str(p) for p in paths], "zstitch": doc,
                      "seconds": round(time.perf_counter() - t0, 3)}, progress)
        with atomic_path(out.with_name(plan["outputs"]["zstitch"])) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))
        if report is not None:
            from teravox.stages.report import zstack_report

            doc["report"] = str(zstack_report(plan, doc, out, None if report == "default" else Path(report)))
    finally:
        for lv in levels:
            lv.close()
    return doc


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    report = None if (args.report or "").lower() == "none" else (args.report or "default")
    doc = run(plan, args.volumes, args.output, report, args.progress)
    for w in doc["warnings"]:
        print(f"teravox z-stitch: warning: {w}", file=sys.stderr)
    for lv in doc["levels"]:
        print(f"  {lv['name']}: row 0 at {lv['z']:+8.2f} (heights: {lv['height_px'] - doc['levels'][0]['height_px']:+8.2f}), "
              f"values × {lv['gain']:.4f}")
    for s in doc["seams"]:
        print(f"  seam {s['upper']}|{s['lower']}: dz {s['dz']:+.2f} rows (guess {s['guess']:+.2f}), "
              f"correlation {s['peak'] or float('nan'):.3f}, residual {s['residual'] or float('nan'):.3g}")
    print(f"wrote {doc['volume']}" + (f" and {doc['report']}" if doc.get("report") else ""))
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
