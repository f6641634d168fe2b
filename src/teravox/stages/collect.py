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
import sys
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import provenance
from teravox.io.atomic import atomic_path
from teravox.io.virtual import concat_virtual
from teravox.prep.pipeline import Patched
from teravox.recon.pipeline import Geometry, line_integrals, reconstruct_block, to_180
from teravox.stages._common import cli_entry
from teravox.stages.preprocess import chunk_path, digest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox collect",
        description="Join the projection chunk files into projections.h5 (an HDF5 virtual dataset), "
                    "check that every chunk is present and complete, and resolve the automatic centre "
                    "and the integer output range once for the whole volume.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--chunks-dir", default=None, help="where the proj_<k>.h5 files are (default: the plan's workdir)")
    p.add_argument("-o", "--output", default=None, help="projections file (default: <workdir>/projections.h5)")
    return p


def output_path(plan: dict, output: str | Path | None = None) -> Path:
    return Path(output) if output else planmod.workdir(plan) / plan["outputs"]["projections"]


def check_chunk(plan: dict, index: int, path: Path) -> tuple[int, int, int] | str:
    """The chunk file's shape, or why it cannot be used."""
    c = plan["proj_chunks"][index]
    (r0, r1), (c0, c1) = plan["selection"]["rows"], plan["selection"]["cols"]
    want = (c["stop"] - c["start"], r1 - r0, c1 - c0)
    return provenance.output_problem(path, "preprocess", digest(plan), want) or want


def sample_rows(n_rows: int, count: int = 3) -> list[int]:
    """A few rows spread over the detector for the centre search and the range."""
    if n_rows <= count:
        return list(range(n_rows))
    return sorted({int(round(x)) for x in np.linspace(0, n_rows - 1, count + 2)[1:-1]})


def resolve(plan: dict, params: Params, data: h5py.Dataset, quantity: str) -> dict:
    """Centre, half-acquisition side, slice size, padding and integer range for the volume."""
    from teravox.recon.sinogram import default_pad_width

    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))
    n_cols = data.shape[2]
    rows = sample_rows(data.shape[1])
    block = np.ascontiguousarray(data[:, rows, :].transpose(1, 0, 2))
    center, how = plan["center"]["value"], plan["center"]["how"]
    half = params.half_acquisition != "off"
    side = None
    if center is None:
        sinos = line_integrals(block, params, quantity)
        if params.stripe_recon != "off":  # a stripe is a strong false symmetry for Vo's metric
            from teravox.prep.stripes import remove_stripes

            sinos = remove_stripes(sinos, params.stripe_recon, snr=params.stripe_snr,
                                   la_size=params.stripe_la_size, sm_size=params.stripe_sm_size)
        center, side = _find(sinos, theta, half, params)
        how = f"auto (Vo's method on rows {rows})"
    if half:
        if params.half_acquisition in ("left", "right"):
            side = params.half_acquisition
        elif side is None:
            side = "left" if center < (n_cols - 1) / 2 else "right"
        probe, _, _ = to_180(line_integrals(block[:1], params, quantity), theta, center, side)
        n_out = probe.shape[2]
    else:
        n_out = n_cols
    if params.pad == "none":
        pad = 0
    elif params.pad_width_px is not None:
        pad = params.pad_width_px
    else:
        pad = default_pad_width(n_out)
    geom = Geometry(center=float(center), n_out=int(n_out), pad_width=int(pad), side=side)
    resolved = {"center": geom.center, "center_how": how, "side": side, "n_out": geom.n_out,
                "pad_width": geom.pad_width, "dtype_range": params.dtype_range, "range_how": "given"}
    if params.dtype in ("uint8", "uint16") and params.dtype_range is None:
        from teravox.post.dtype import range_from_samples

        slices = reconstruct_block(block, theta, params, geom, quantity)
        lo, hi = range_from_samples(slices, tuple(params.dtype_percentiles))
        resolved["dtype_range"] = [float(lo), float(hi)]
        resolved["range_how"] = (f"percentiles {params.dtype_percentiles} of sample slices {rows}")
    return resolved


def _find(sinos: np.ndarray, theta: np.ndarray, half: bool, params: Params) -> tuple[float, str | None]:
    """Vo's method: 180° scans over middle ± center_search_px; 360° half acquisition with its side."""
    from teravox.recon.center import find_center, find_center_360

    if half:
        side = None if params.half_acquisition == "auto" else params.half_acquisition
        center, side = find_center_360(sinos, theta=theta, side=side)
        return float(center), side
    # Vo's metric has false minima where the views barely overlap: stay within a tenth of the width
    radius = min(params.center_search_px, sinos.shape[-1] / 10)
    return float(find_center(sinos, theta=theta, search_radius=radius)), None


def geometry(resolved: dict) -> Geometry:
    return Geometry(center=resolved["center"], n_out=resolved["n_out"], pad_width=resolved["pad_width"],
                    side=resolved["side"])


def read_resolved(path: str | Path) -> dict:
    """The resolved section of a projections file."""
    with h5py.File(path, "r") as f:
        g = f.get("/process/teravox/resolved")
        if g is None:
            raise StageError(f"{path}: no /process/teravox/resolved (not written by `teravox collect`)")
        return json.loads(g.attrs["json"])


def run(plan: dict, chunks_dir: str | Path | None = None, output: str | Path | None = None) -> Path:
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
    return write_projections(plan, params, sources, output_path(plan, output),
                             patched=patched_pixels(plan, [s[0] for s in sources]))


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
                      out: Path, patched: Patched | None = None) -> Path:
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
            resolved = resolve(plan, params, f["/exchange/data"], "transmission")
        with h5py.File(tmp, "r+") as f:
            f.create_group("/process/teravox/resolved").attrs["json"] = json.dumps(resolved)
            resolved_plan = {**plan, "center": {"value": resolved["center"], "how": resolved["center_how"]}}
            provenance.write(f, stage="collect", params=params.to_dict(), plan=resolved_plan,
                             input=plan["scan"]["path"], chunks=[str(Path(s[0]).resolve()) for s in sources],
                             **({"patched": patched.to_dict()} if patched else {}))
    return out


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    out = run(plan, args.chunks_dir, args.output)
    r = read_resolved(out)
    print(f"wrote {out}: {len(plan['proj_chunks'])} chunk(s) joined; centre {r['center']:.2f} px "
          f"({r['center_how']}); slices {r['n_out']}²")
    patched = read_patched(out)
    if patched is not None:
        print(f"patched pixels: {patched.text()}")
        if patched.warning():
            print(f"teravox collect: warning: {patched.warning()}", file=sys.stderr)
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
