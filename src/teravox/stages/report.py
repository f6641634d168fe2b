"""``teravox report --plan plan.json``: the PDF a beamline scientist opens first.

Gathers a raw projection and sinogram (from the scan), the corrected projection and the
sinogram as pass 2 reconstructs it (from ``projections.h5``), three orthogonal slices and a histogram (from the merged
volume) and the run's facts, and hands them to :func:`teravox.report.write_report`.
Reads only what it shows: strided planes, never a whole stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np

from teravox import plan as planmod
from teravox.config import Params
from teravox.errors import StageError
from teravox.io import open_scan_for
from teravox.io.volume import open_volume, volume_paths
from teravox.report import (
    ReportData,
    ReportFacts,
    StackData,
    orthogonal_slices,
    write_report,
    write_stack_report,
)
from teravox.stages._common import cli_entry

MAX_SINOGRAM_ANGLES = 720   # the report's sinograms are sub-sampled in angle beyond this
HISTOGRAM_SLICES = 16
HISTOGRAM_VALUES = 4_000_000  # at most this many voxels, spread over the sampled slices
#: Peak of a job on a tiny volume: Python, numpy, h5py, matplotlib and the PDF drawn.
JOB_BASE_BYTES = 240 * 2**20


class Plane:
    """The middle z-plane of a volume (any format), read only where indexed (the volume, and
    its ``provenance``, stay open until :meth:`close`): the report draws it block-averaged,
    strip by strip (:func:`teravox.report._display`), so a 24608² plane is never read whole."""

    def __init__(self, path: str | Path):
        self._open = contextlib.ExitStack()
        self.volume, self.provenance = self._open.enter_context(open_volume(path))
        self.z = self.volume.shape[0] // 2
        self.shape = tuple(self.volume.shape[1:])
        self.dtype = self.volume.dtype

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return np.asarray(self.volume[(self.z, *key)])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self.volume[self.z], dtype=dtype)  # the whole plane: small ones only

    def close(self) -> None:
        self._open.close()


def histogram_sample(volume: h5py.Dataset, count: int = HISTOGRAM_SLICES,
                     values: int = HISTOGRAM_VALUES) -> np.ndarray:
    """Voxels of up to ``count`` z-planes spread over the volume, each read on a regular
    grid so that about ``values`` are kept in all (every voxel of a small volume)."""
    nz, ny, nx = volume.shape
    zs = np.unique(np.linspace(0, nz - 1, min(nz, count)).round().astype(int))
    step = max(1, math.ceil(math.sqrt(zs.size * ny * nx / values)))
    return np.concatenate([np.asarray(volume[int(z), ::step, ::step]).ravel() for z in zs])


def sinogram_copies(params: Params) -> int:
    """float32 copies of the shown sinogram that pass 2's steps hold at once: the line
    integrals; stripe or sinogram ring removal's sorted copy and result beside them;
    360°→180° one more."""
    filtered = params.stripe_recon != "off" or params.rings == "sinogram"
    return 1 + 2 * filtered + (params.half_acquisition != "off")


def peak_bytes(params: Params, n_rows: int, n_cols: int, raw_itemsize: int,
               volume_shape: tuple[int, int, int], itemsize: int, n_angles: int) -> int:
    """Peak of the report job: a raw and a corrected projection and sinogram (the corrected
    one through pass 2's sinogram steps, :func:`sinogram_copies`), the slow-axis planes, one
    strip of the XY plane per block-average and the histogram sample; the figures are
    drawn from display-sized images (in the base)."""
    from teravox.report import MAX_DISPLAY_PX

    nz, ny, nx = volume_shape
    step = max(1, math.ceil(nz / 512))
    sino = min(n_angles, MAX_SINOGRAM_ANGLES) * n_cols
    images = n_rows * n_cols * (raw_itemsize + 4) + sino * (raw_itemsize + 4 * sinogram_copies(params))
    planes = math.ceil(nz / step) * (ny + nx) * itemsize
    strip = math.ceil(ny / MAX_DISPLAY_PX) * nx * (itemsize + 4)
    sample = min(HISTOGRAM_VALUES, nz * ny * nx) * (itemsize + 8)
    return int(JOB_BASE_BYTES + images + planes + strip + sample)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox report",
        description="Write the PDF report: raw and corrected projection and sinogram, three "
                    "orthogonal slices, a histogram and the facts of the run.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--projections", default=None, help="projections.h5 (default: in the workdir)")
    p.add_argument("--volume", nargs="+", default=None,
                   help="the volume: <scan>_recon.h5, <scan>_recon.zarr or <scan>_recon_tiff (several: the "
                        "first of them in that order is read; default: the plan's in the workdir)")
    p.add_argument("-o", "--output", default=None, help="PDF to write (default: <workdir>/<scan>_report.pdf)")
    p.add_argument("--timings", default=None, help="JSON file of stage timings")
    p.add_argument("--shifts", default=None,
                   help="shifts.json of stitch-align (multi-scan; default: <workdir>/shifts.json)")
    p.add_argument("--png", default=None, metavar="PREFIX",
                   help="also write each page as PREFIX_p<n>.png (to look at without a PDF viewer)")
    return p


def output_path(plan: dict, output: str | Path | None = None) -> Path:
    return Path(output) if output else planmod.workdir(plan) / plan["outputs"]["report"]


def _angle_step(n: int) -> int:
    return max(1, math.ceil(n / MAX_SINOGRAM_ANGLES))


def gather(plan: dict, projections: Path, volume: Path, timings: dict | None = None,
           shifts: Path | None = None) -> ReportData:
    from teravox.prep.pipeline import steps as prep_steps
    from teravox.recon.pipeline import steps as recon_steps
    from teravox.stages.collect import read_patched, read_resolved

    params = planmod.params_of(plan)
    sel = plan["selection"]
    idx = np.asarray(sel["proj_indices"])
    (r0, r1), (c0, c1) = sel["rows"], sel["cols"]
    mid_p, mid_r = idx.size // 2, (r1 - r0) // 2
    astep = _angle_step(idx.size)
    with open_scan_for(plan["scan"]["path"], params) as scan:
        raw_projection = scan.read_projections(idx[mid_p:mid_p + 1], slice(r0, r1), slice(c0, c1))[0]
        raw_sinogram = scan.read_projections(idx[::astep], slice(r0 + mid_r, r0 + mid_r + 1), slice(c0, c1))[:, 0]
    for path, what in ((projections, "projections file"), (volume, "volume")):
        if not Path(path).exists():
            raise StageError(f"{path}: {what} does not exist (run collect and merge first)")
    resolved = read_resolved(projections)
    patched = read_patched(projections)
    with h5py.File(projections, "r") as f:
        data = f["/exchange/data"]
        quantity = data.attrs.get("quantity", "transmission")
        corrected_projection = data[mid_p]
        row_block = data[::astep, mid_r, :][None]   # the angles shown, as the raw sinogram's
    sino, sino_theta, sino_steps = _reconstructed_sinogram(plan, params, resolved, row_block, quantity, mid_r,
                                                           astep)
    xy = Plane(volume)  # open until the report is written (run closes it)
    try:
        vol, prov = xy.volume, xy.provenance
        nz = vol.shape[0]
        step = params.report_slow_axis_step or max(1, math.ceil(nz / 512))
        y0, x0 = vol.shape[1] // 2, vol.shape[2] // 2
        xz, yz = np.asarray(vol[::step, y0, :]), np.asarray(vol[::step, :, x0])
        sample = histogram_sample(vol)
        vshape = tuple(int(n) for n in vol.shape)
    except BaseException:
        xy.close()
        raise
    is_int = np.issubdtype(sample.dtype, np.integer)
    hist = value_histogram(sample)
    theta = np.asarray(plan["theta_deg"])
    phys = plan["physics"]
    meta = plan["scan"].get("metadata", {})
    rng = resolved.get("dtype_range")
    backend = _backend_text(str(prov.get("backend", params.backend)), params.backend)
    search = resolved.get("center_search")
    distance = phys.get("distance_m")
    if distance is None and "distance_m" in meta:
        distance = meta["distance_m"]["value"]
    extra = {}
    extra["chunks"] = f"{len(plan['proj_chunks'])} projection, {len(plan['sino_chunks'])} sinogram"
    if resolved.get("side"):
        extra["half acquisition"] = f"axis at the {resolved['side']} edge"
    facts = ReportFacts(
        input_file=plan["scan"]["path"],
        shape=tuple(plan["scan"]["shape"]),
        n_angles=int(theta.size),
        angle_range_deg=(float(theta[0]), float(theta[-1])),
        center=resolved["center"] + c0,
        center_source=resolved["center_how"],
        center_method=search.get("method") if search else None,
        center_confidence=search.get("confidence") if search else None,
        tilt=resolved.get("tilt_how"),
        backend=backend,
        corrections=[(name, {**p, "backend": backend} if name == "reconstruction" else p)
                     for name, p in prep_steps(params) + recon_steps(params, quantity)],
        n_flats=plan["scan"].get("n_flats"), n_flats_after=plan["scan"].get("n_flats_after") or 0,
        n_darks=plan["scan"].get("n_darks"),
        exposure_s=meta["exposure_s"]["value"] if "exposure_s" in meta else None,
        energy_kev=phys.get("energy_kev"), distance_m=distance,
        output_dtype=params.dtype,
        output_range=(float(sample.min()), float(sample.max())),
        integer_mapping=tuple(rng) if (rng and params.dtype in ("uint8", "uint16")) else None,
        timings=timings or prov.get("timings") or {},
        pixel_size_m=phys.get("pixel_size_m"),
        scan_name=plan["name"],
        volume_shape=vshape,
        output_file=str(volume),
        extra=extra,
        files_read=_files_read(plan),
        patched=patched.text() if patched else None,
        warnings=[w for w in [patched.warning() if patched else None] if w],
    )
    stitched = {}
    shifts = Path(shifts) if shifts else planmod.workdir(plan) / "shifts.json"
    if "scans" in plan and shifts.exists():
        from teravox.stitch.source import cost_maps, load_shifts, stitched_projection

        doc = load_shifts(shifts)
        img, seams = stitched_projection(plan, doc, params)
        stitched = {"stitched_projection": img, "seam_columns": list(seams), "alignment_costs": cost_maps(doc),
                    "placement": doc}
        extra["scans"] = ", ".join(Path(s_["path"]).name for s_ in plan["scans"])
    return ReportData(**stitched, raw_projection=raw_projection, raw_sinogram=raw_sinogram,
                      corrected_projection=corrected_projection, corrected_sinogram=sino,
                      sinogram_quantity="line_integral" if params.minus_log or quantity == "line_integral"
                      else "transmission", sinogram_angles_deg=(float(sino_theta[0]), float(sino_theta[-1])),
                      sinogram_steps=sino_steps,
                      slice_xy=xy, slice_xz=xz, slice_yz=yz, histogram=hist, facts=facts,
                      slow_axis_step=step, projection_index=int(idx[mid_p]), sinogram_row=r0 + mid_r,
                      corrected_quantity=quantity, values_are_codes=is_int,
                      center_search=resolved.get("center_search"), center_col_offset=float(c0))


def value_histogram(sample: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the volume's values: integer codes one bin per code (or per run of
    codes beyond ``bins``), floats between robust percentiles.  Bounds are Python numbers: the
    dtype's own arithmetic wraps (uint16 65535 + 1 is 0)."""
    if np.issubdtype(sample.dtype, np.integer):
        lo, hi = int(sample.min()), int(sample.max()) + 1
        return np.histogram(sample, bins=min(bins, hi - lo), range=(lo, hi))
    lo, hi = (float(v) for v in np.percentile(sample, [0.05, 99.95]))
    return np.histogram(sample, bins=bins, range=(lo, hi if hi > lo else lo + 1))


def _backend_text(ran: str, asked: str) -> str:
    """The backend that ran, and that it was chosen automatically when it was."""
    return f"{ran} (chosen by auto)" if asked == "auto" and ran != "auto" else ran


def _reconstructed_sinogram(plan: dict, params, resolved: dict, block: np.ndarray, quantity: str,  # noqa: ANN001
                            row: int, astep: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One row of projections.h5 at every ``astep``-th angle (``block``: (1, angles, cols)) as
    pass 2 reconstructs it: (angles, cols), its angles in degrees, and the steps that made it.
    Stripes are constant along the angle, so their removal shows on the thinned sinogram too."""
    from teravox.recon.pipeline import reconstructed_sinograms
    from teravox.recon.pipeline import steps as recon_steps
    from teravox.stages.collect import geometry

    theta = np.deg2rad(np.asarray(plan["theta_deg"], dtype=np.float64))[::astep]
    sinos, theta, _ = reconstructed_sinograms(block, theta, params, geometry(resolved), quantity,
                                              rows=np.array([row]))
    short = {"-log": "−log", "360° → 180° conversion": "360°→180°", "stripe removal (sinograms)": "stripes removed"}
    done = [short[name] for name, _ in recon_steps(params, quantity) if name in short]
    if params.rings == "sinogram":
        done.append("rings removed")
    return sinos[0], np.rad2deg(theta), done


def _files_read(plan: dict) -> list[str]:
    """One line per raw file the plan's scan(s) read, with what is read from it."""
    return [f"{f['path']}: {', '.join(f.get('read_for', []))}" for f in plan.get("inputs", {}).get("files", [])]


def pick_volume(plan: dict, volume: list[str | Path] | str | Path | None) -> Path:
    """The volume the report reads: the one given, or the first of several (HDF5, then
    OME-Zarr, then TIFF), or the plan's own."""
    from teravox.io.volume import FORMATS, format_of

    if volume is None:
        return next(iter(volume_paths(plan).values()))
    given = [Path(v) for v in ([volume] if isinstance(volume, (str, Path)) else volume)]
    vols = [p for p in given if format_of(p)]  # not the TIFF stack's sidecar
    if not vols:
        raise StageError(f"--volume {' '.join(map(str, given))}: none is a volume (.h5, .zarr, _tiff, .tif)")
    return min(vols, key=lambda p: FORMATS.index(format_of(p)))


def run(plan: dict, projections: str | Path | None = None, volume: list[str | Path] | str | Path | None = None,
        output: str | Path | None = None, timings: dict | None = None,
        shifts: str | Path | None = None, png: str | Path | None = None) -> Path:
    from teravox.stages.collect import output_path as projections_path

    proj = Path(projections) if projections else projections_path(plan)
    vol = pick_volume(plan, volume)
    data = gather(plan, proj, vol, timings, Path(shifts) if shifts else None)
    out = output_path(plan, output)
    try:
        write_report(data, out, png)
    finally:
        if isinstance(data.slice_xy, Plane):
            data.slice_xy.close()
    return out


def zstack_report(plan: dict, doc: dict, volume: str | Path, output: Path | None = None) -> Path:
    """The report of a vertical stack (``plan``: the stack's, ``doc``: zstitch.json) from its
    joined ``volume``: cuts along z with the seams, and the seams' figures."""
    from teravox.post.dtype import DtypeMapping

    params = planmod.params_of(plan)
    level0 = plan["level_plans"][0]
    out = output or Path(volume).with_name(plan["outputs"]["report"])
    with h5py.File(volume, "r") as f:
        vol = f["/exchange/data"]
        nz, ny, nx = vol.shape
        step = params.report_slow_axis_step or max(1, math.ceil(nz / 1024))
        seam_z = int(round(doc["seam_rows"][0])) if doc["seam_rows"] else nz // 2
        xy, xz, yz = orthogonal_slices(vol, step, (seam_z, ny // 2, nx // 2))
        mapping = DtypeMapping.from_attrs(vol.attrs)
    theta = np.asarray(level0["theta_deg"])
    facts = ReportFacts(
        input_file=plan["sheet"], shape=tuple(level0["scan"]["shape"]), n_angles=int(theta.size),
        angle_range_deg=(float(theta[0]), float(theta[-1])), center=None, center_source="each level's own",
        backend=params.backend, output_dtype=params.dtype,
        integer_mapping=(mapping.vmin, mapping.vmax) if mapping.qmax else None,
        pixel_size_m=level0["physics"].get("pixel_size_m"), scan_name=plan["name"], volume_shape=(nz, ny, nx),
        output_file=str(volume))
    write_stack_report(StackData(facts=facts, slice_xz=xz, slice_yz=yz, slice_xy=xy, slice_z=seam_z,
                                 seam_rows=doc["seam_rows"], levels=doc["levels"], seams=doc["seams"],
                                 warnings=doc["warnings"], slow_axis_step=step,
                                 values_are_codes=mapping.qmax is not None), out)
    return out


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    timings = json.loads(Path(args.timings).read_text()) if args.timings and Path(args.timings).exists() else None
    out = run(plan, args.projections, args.volume, args.output, timings, args.shifts, args.png)
    print(f"wrote {out}")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
