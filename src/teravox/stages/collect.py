"""``teravox collect --plan plan.json``: join the projection chunks, resolve what needs them.

Writes ``projections.h5``: a DXchange file whose ``/exchange/data`` is an HDF5
virtual dataset over the k ``proj_<k>.h5`` files (no pixel copied), with
``/exchange/theta``, the instrument values and the provenance.  It also resolves,
once for the whole volume, what needs corrected projections: the automatic rotation
centre, the half-acquisition side and output width, and the integer output range.
These land under ``/process/teravox/resolved`` and every sinogram job reads them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from teravox import plan as planmod
from teravox import resources
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import provenance
from teravox.io.atomic import atomic_path
from teravox.io.virtual import concat_virtual
from teravox.prep.pipeline import Patched
from teravox.progress import bar
from teravox.recon.pipeline import Geometry, line_integrals, reconstruct_block
from teravox.stages._common import cli_entry
from teravox.stages.preprocess import chunk_path, digest, pass1_digest

if TYPE_CHECKING:  # the search (and scipy.optimize) is imported only by the jobs that search
    from teravox.recon.center import CenterResult

#: rows spread over the height for the automatic centre and the tilt
CENTER_ROWS = 7
#: reconstructed sample rows that set the integer output range
RANGE_ROWS = 3
#: values kept of each sample slice for the range's percentiles
RANGE_VALUES = 2**22
#: most bytes of raw angles read at once when the search averages consecutive angles
READ_BLOCK_BYTES = 64 * 2**20
#: a collect job's memory before it reads a pixel (interpreter, numpy, h5py, the virtual
#: dataset): VmHWM with the centre given (benchmarks/scale.py, 2048–12288 columns)
COLLECT_BASE_BYTES = 70 * 2**20
#: what a centre search adds beyond its arrays: its imports (scipy.optimize, ~25 MiB more
#: than the base), HDF5 buffers of the strided reads, heap: VmHWM of collect jobs at
#: 256–4096 columns (benchmarks/README.md)
SEARCH_OVERHEAD_BYTES = (25 + 14) * 2**20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox collect",
        description="Join the projection chunk files into projections.h5 (an HDF5 virtual dataset), "
                    "check that every chunk is present and complete, and resolve the automatic centre "
                    "and the integer output range once for the whole volume.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--chunks-dir", default=None, help="where the proj_<k>.h5 files are (default: the plan's workdir)")
    p.add_argument("-o", "--output", default=None, help="projections file (default: <workdir>/projections.h5)")
    p.add_argument("--progress", action="store_true", help="show a progress bar for the centre search")
    return p


def output_path(plan: dict, output: str | Path | None = None) -> Path:
    return Path(output) if output else planmod.workdir(plan) / plan["outputs"]["projections"]


def check_chunk(plan: dict, index: int, path: Path) -> tuple[int, int, int] | str:
    """The chunk file's shape, or why it cannot be used."""
    c = plan["proj_chunks"][index]
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    want = (c["stop"] - c["start"], r1 - r0, c1 - c0)
    return provenance.output_problem(path, "preprocess", pass1_digest(plan), want) or want


def sample_rows(n_rows: int, count: int = RANGE_ROWS) -> list[int]:
    """A few rows spread over the detector for the centre search and the range."""
    if n_rows <= count:
        return list(range(n_rows))
    return sorted({int(round(x)) for x in np.linspace(0, n_rows - 1, count + 2)[1:-1]})


def resolve(plan: dict, params: Params, data: h5py.Dataset, quantity: str, *,
            progress: bool = False) -> dict:
    """Centre (and tilt), half-acquisition side, slice size, padding and integer range.

    Reads pixels only for what is not given: the automatic centre reads a few rows at a
    subset of the angles (:func:`search_center`), the integer range reconstructs a few
    rows one at a time; a given centre with a float output reads nothing.
    """
    from teravox.recon.sinogram import default_pad_width, half_acquisition_width

    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    n_cols = data.shape[2]
    half = params.half_acquisition != "off"
    given_tilt = None if params.tilt_deg is None else math.tan(math.radians(params.tilt_deg))
    center, how = plan["center"]["value"], plan["center"]["how"]
    side = params.half_acquisition if params.half_acquisition in ("left", "right") else None
    found = None
    if center is None:
        found = search_center(plan, params, data, quantity, progress=progress)
        refuse_if_unsure(found, params, n_cols)
        row = found.row
        if given_tilt is not None:  # the tilt is given: the centre is the rows' mean about it
            tilt = given_tilt
            center = float(np.median(np.asarray(found.row_centers)
                                     - tilt * (np.asarray(found.rows) - row)))
        else:
            tilt = found.tilt_px_per_row if found.tilt_significant(data.shape[1]) else 0.0
            center = found.center
        side = side or found.side
        how = (f"{how}; {found.method} on rows {', '.join(map(str, found.rows))}, "
               f"confidence {found.confidence:.2f}")
    else:
        # a given centre is the axis at the detector's middle row (what a tilt turns about)
        row = (plan["scan"]["shape"][1] - 1) / 2 - plan["selection"]["rows"][0]
        tilt = given_tilt or 0.0
    if half:
        side = side or ("left" if center < (n_cols - 1) / 2 else "right")
        n_out = half_acquisition_width(n_cols, center, side)
    else:
        n_out = n_cols
    if params.pad == "none":
        pad = 0
    elif params.pad_width_px is not None:
        pad = params.pad_width_px
    else:
        pad = default_pad_width(n_out)
    geom = Geometry(center=float(center), n_out=int(n_out), pad_width=int(pad), side=side,
                    tilt_px_per_row=float(tilt), center_row=float(row))
    resolved = {"center": geom.center, "center_row": geom.center_row, "center_how": how,
                "tilt_px_per_row": geom.tilt_px_per_row,
                "tilt_how": _tilt_how(found, params, data.shape[1]),
                "center_search": None if found is None else found.to_dict(),
                "side": side, "n_out": geom.n_out, "pad_width": geom.pad_width,
                "dtype_range": params.dtype_range, "range_how": "given"}
    if params.dtype in ("uint8", "uint16") and params.dtype_range is None:
        rows = sample_rows(data.shape[1])
        resolved["dtype_range"] = list(sample_range(data, theta, params, geom, quantity, rows,
                                                    tile=plan.get("recon_tile")))
        resolved["range_how"] = f"percentiles {params.dtype_percentiles} of sample slices {rows}"
    return resolved


def _tilt_how(found: CenterResult | None, params: Params, n_rows: int) -> str:
    if params.tilt_deg is not None:
        return f"given ({params.tilt_deg:g}°)"
    if found is None:
        return "none (centre given; give --tilt-deg for a tilted axis)"
    if not np.isfinite(found.tilt_sigma):
        return f"not estimated (rows {found.rows} span too little of the height)"
    moved = found.tilt_px_per_row * max(n_rows - 1, 1)
    verdict = (f"corrected (the centre is the axis at row {found.row:g})" if found.tilt_significant(n_rows)
               else "not corrected (not significant)")
    return (f"estimated {found.tilt_deg:+.4f}° ± {math.degrees(found.tilt_sigma):.4f}° "
            f"({moved:+.2f} px over the {n_rows} rows), {verdict}")


def search_center(plan: dict, params: Params, data: h5py.Dataset, quantity: str, *,
                  progress: bool = False) -> CenterResult:
    """The automatic centre: each of a few rows read at a subset of the angles, its metric
    curve computed, the curves combined (:mod:`teravox.recon.center`).  One row at a time,
    so memory stays at one angle-thinned sinogram whatever the detector's height."""
    from teravox.recon import center as cmod

    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    n_rows, n_cols = data.shape[1], data.shape[2]
    mode = cmod.mode_of(theta, params.half_acquisition)
    idx, k = cmod.angle_bins(theta, mode)
    angles = cmod.bin_angles(theta[idx[0]:idx[-1] + k], k) if k > 1 else theta[idx]
    rows = sample_rows(n_rows, CENTER_ROWS)
    threads = resources.threads(params.threads)
    curves = []
    # not through stripe_recon: its filters reshape small objects and move their centre
    # (a pixel for algotom's sorting on a 30-px object); the search removes stripes itself
    for r in bar(rows, desc="centre search", unit="row", enable=progress):
        sino = _read_angles(data, idx, k, r, params, quantity)
        curves.append(cmod.row_curve(sino, angles, mode, threads))
    side = params.half_acquisition if params.half_acquisition in ("left", "right") else None
    around = None if params.center_search_px is None else ((n_cols - 1) / 2, params.center_search_px)
    return cmod.combine(curves, rows, mode, cmod.search_window(n_cols, mode, side, around))


def _read_angles(data: h5py.Dataset, idx: np.ndarray, k: int, row: int, params: Params,
                 quantity: str) -> np.ndarray:
    """(len(idx), columns) line integrals of one row: the angles ``idx`` (a strided read when
    equally spaced), or each averaged with the next ``k − 1`` (read in blocks of at most
    READ_BLOCK_BYTES); −log is taken before averaging."""
    if k == 1:
        step = np.diff(idx)
        if idx.size > 1 and (step == step[0]).all():
            raw = data[int(idx[0]):int(idx[-1]) + 1:int(step[0]), row, :]
        else:
            raw = data[idx.tolist(), row, :]
        return line_integrals(np.asarray(raw, dtype=np.float32), params, quantity)
    from teravox.recon import center as cmod

    n_cols = data.shape[2]
    per_block = max(1, READ_BLOCK_BYTES // (k * n_cols * 4))
    out = np.empty((idx.size, n_cols), np.float32)
    for b0 in range(0, idx.size, per_block):
        b1 = min(b0 + per_block, idx.size)
        raw = np.asarray(data[int(idx[b0]):int(idx[b1 - 1]) + k, row, :], dtype=np.float32)
        out[b0:b1] = cmod.bin_angles(line_integrals(raw, params, quantity), k)
    return out


def refuse_if_unsure(found: CenterResult, params: Params, n_cols: int) -> None:
    """StageError when the automatic centre cannot be trusted, unless a sweep is asked for
    (the sweep is how a user settles it)."""
    if params.center_sweep is not None:
        return
    why = found.problem
    if why is None and found.confidence < params.center_min_confidence:
        other = f", another minimum at {found.runner_up:.1f} px is almost as good" if found.runner_up else ""
        why = (f"the automatic centre {found.center:.2f} px has confidence {found.confidence:.2f}, below "
               f"center_min_confidence {params.center_min_confidence:g}{other}")
    if why is None:
        return
    lo = max(0.0, math.floor(found.center) - 20)
    hi = min(n_cols - 1.0, math.floor(found.center) + 20)
    raise StageError(f"{why}. Look at a centre sweep (teravox center-sweep --plan plan.json {lo:g}:{hi:g}:1, "
                     f"or teravox run ... --center-sweep {lo:g}:{hi:g}:1) and give --center")


def sample_range(data: h5py.Dataset, theta: np.ndarray, params: Params, geom: Geometry, quantity: str,
                 rows: list[int], tile: int | None = None) -> tuple[float, float]:
    """The integer output range: percentiles of a few slices reconstructed one at a time, in
    the plan's tiles (``tile``: their side; None: whole slices), each slice sampled on a
    regular grid of at most RANGE_VALUES pixels, each once (the same pixels whatever the
    tiles, which may overlap)."""
    from teravox.post.dtype import range_from_samples

    n = geom.n_out
    step = max(1, math.ceil(n / math.sqrt(RANGE_VALUES)))
    kept: list[np.ndarray] = []
    seen = np.zeros((-(-n // step),) * 2, bool)  # grid pixels kept from this slice (tiles may overlap)

    def keep(_s: int, r: slice, c: slice, values: np.ndarray) -> None:
        # the grid's pixels in this tile: global rows and columns that are multiples of step
        (r0, r1), (c0, c1) = (r.start or 0, r.stop or n), (c.start or 0, c.stop or n)
        gr, gc = np.arange(-(-r0 // step), -(-r1 // step)), np.arange(-(-c0 // step), -(-c1 // step))
        new = ~seen[np.ix_(gr, gc)]
        kept.append(values[np.ix_(gr * step - r0, gc * step - c0)][new])
        seen[np.ix_(gr, gc)] = True

    for r in rows:
        seen[...] = False
        block = np.ascontiguousarray(data[:, r:r + 1, :].transpose(1, 0, 2))
        reconstruct_block(block, theta, params, geom, quantity, rows=np.array([r]), tile=tile, write=keep)
        del block
    return range_from_samples(np.concatenate(kept), tuple(params.dtype_percentiles))


def peak_bytes(params: Params, theta: np.ndarray, n_rows: int, n_cols: int, auto_center: bool, *,
               n_out: int, pad_width: int, tile: int | None = None, threads: int = 1) -> int:
    """Predicted peak memory (bytes) of the collect job: the larger of the centre search
    (one angle-thinned row and its transforms, :func:`teravox.recon.center.search_bytes`)
    and the integer range (one full row and one slice's reconstruction in the plan's
    tiles, :func:`teravox.stages.reconstruct.peak_bytes`)."""
    from teravox.recon import center as cmod
    from teravox.stages import reconstruct as recon_stage

    need = 0
    if auto_center:
        mode = cmod.mode_of(theta, params.half_acquisition)
        idx, k = cmod.angle_bins(theta, mode)
        row = idx.size * n_cols * 4
        reading = row + 2 * min(READ_BLOCK_BYTES, k * row) if k > 1 else 0  # raw block and its −log
        need = SEARCH_OVERHEAD_BYTES + max(reading, cmod.search_bytes(
            idx.size, n_cols, mode, len(sample_rows(n_rows, CENTER_ROWS))))
    if params.dtype in ("uint8", "uint16") and params.dtype_range is None:
        row = theta.size * n_cols * 4
        recon = recon_stage.peak_bytes(params, rows=1, n_angles=theta.size, n_cols=n_cols, n_out=n_out,
                                       pad_width=pad_width, tile=tile, threads=threads, chunk_rows=0)
        need = max(need, row + recon - recon_stage.JOB_BASE_BYTES + RANGE_ROWS * RANGE_VALUES * 4)
    return COLLECT_BASE_BYTES + need


def geometry(resolved: dict) -> Geometry:
    return Geometry(center=resolved["center"], n_out=resolved["n_out"], pad_width=resolved["pad_width"],
                    side=resolved["side"], tilt_px_per_row=resolved.get("tilt_px_per_row", 0.0),
                    center_row=resolved.get("center_row", 0.0))


def read_resolved(path: str | Path) -> dict:
    """The resolved section of a projections file."""
    with h5py.File(path, "r") as f:
        g = f.get("/process/teravox/resolved")
        if g is None:
            raise StageError(f"{path}: no /process/teravox/resolved (not written by `teravox collect`)")
        return json.loads(g.attrs["json"])


def run(plan: dict, chunks_dir: str | Path | None = None, output: str | Path | None = None,
        progress: bool = False) -> Path:
    """Join the chunks and resolve the volume's geometry; a projections file this plan
    already made is kept (the automatic centre is found once, whatever the reruns)."""
    params = planmod.params_of(plan)
    sources, problems = [], []
    for c in plan["proj_chunks"]:
        path = chunk_path(plan, c["index"], chunks_dir)
        got = check_chunk(plan, c["index"], path)
        if isinstance(got, str):
            problems.append(f"{path.name} {got}")
        else:
            sources.append((path, "/exchange/data", got))
    if problems:
        raise StageError(f"cannot collect: {'; '.join(problems)} — rerun `teravox preprocess` for those chunks")
    out = output_path(plan, output)
    if is_complete(plan, out):
        return out
    return write_projections(plan, params, sources, out, patched=patched_pixels(plan, [s[0] for s in sources]),
                             progress=progress)


def is_complete(plan: dict, path: Path) -> bool:
    """``path`` is a projections file made for this plan (data, parameters, chunks)."""
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    shape = (len(plan["theta_deg"]), r1 - r0, c1 - c0)
    return provenance.output_problem(path, "collect", digest(plan), shape) is None


def patched_pixels(plan: dict, chunk_files: list[Path]) -> Patched:
    """The pixels every projection-chunk job patched, summed over the run."""
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    total = Patched(projections=len(plan["theta_deg"]), frame_pixels=(r1 - r0) * (c1 - c0))
    for path in chunk_files:
        with h5py.File(path, "r") as f:
            g = provenance.read(f).get("guarded", {})
        total.flat_le_dark += int(g.get("flat_le_dark_pixels", 0))
        total.nonfinite += int(g.get("nonfinite_pixels", 0))
        total.outliers += int(g.get("outlier_pixels", 0))
    return total


def read_patched(path: str | Path) -> Patched | None:
    """The patched-pixel counts collect wrote into a projections file (None: not recorded)."""
    with h5py.File(path, "r") as f:
        return Patched.from_dict(provenance.read(f).get("patched"))


def write_projections(plan: dict, params: Params, sources: list[tuple[Path, str, tuple[int, ...]]],
                      out: Path, patched: Patched | None = None, progress: bool = False) -> Path:
    """projections.h5: the sources (file, dataset, shape) joined along the projections as
    one virtual dataset, with angles, physics, the resolved centre, size and range, and the
    run's patched-pixel counts."""
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = concat_virtual(f, "/exchange/data", sources)
            ds.attrs["quantity"] = "transmission"
            f.create_dataset("/exchange/theta", data=np.asarray(plan["theta_deg"], dtype=np.float64))
            f["/exchange/theta"].attrs["units"] = "degrees"
            for name, value in plan["physics"].items():
                if value is not None:
                    f.create_dataset(f"/measurement/teravox/{name}", data=value)
        # HDF5 opens a virtual dataset's sources with its own file's access mode: read the
        # chunks through a read-only handle, or they are opened for writing and touched (a
        # new mtime breaks Nextflow's -resume and any size/mtime identity of a chunk).
        with h5py.File(tmp, "r") as f:
            resolved = resolve(plan, params, f["/exchange/data"], "transmission", progress=progress)
        with h5py.File(tmp, "r+") as f:
            f.create_group("/process/teravox/resolved").attrs["json"] = json.dumps(resolved)
            resolved_plan = {**plan, "center": {"value": resolved["center"], "how": resolved["center_how"]}}
            provenance.write(f, stage="collect", params=params.to_dict(), plan=resolved_plan,
                             input=plan["scan"]["path"], chunks=[str(Path(s[0]).resolve()) for s in sources],
                             plan_digest=digest(plan), **({"patched": patched.to_dict()} if patched else {}))
    return out


def describe(resolved: dict) -> str:
    """One line on the resolved centre and tilt, for logs and summaries."""
    text = f"centre {resolved['center']:.2f} px ({resolved['center_how']})"
    if resolved.get("tilt_px_per_row"):
        text += f", tilted axis corrected: {resolved['tilt_px_per_row']:+.5f} px per row"
    elif resolved.get("tilt_how", "").startswith("estimated"):
        text += f"; tilt {resolved['tilt_how']}"
    return text


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    out = output_path(plan, args.output)
    kept = out.exists() and is_complete(plan, out)
    out = run(plan, args.chunks_dir, args.output, progress=args.progress)
    r = read_resolved(out)
    print(f"{'kept' if kept else 'wrote'} {out}: {len(plan['proj_chunks'])} chunk(s) joined; "
          f"{describe(r)}; slices {r['n_out']}²")
    patched = read_patched(out)
    if patched is not None:
        print(f"patched pixels: {patched.text()}")
        if patched.warning():
            print(f"teravox collect: warning: {patched.warning()}", file=sys.stderr)
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
