"""The chunk plan: which job does what, with how much memory.

Made from metadata and parameters (no projection pixel is read; a sample of the flat and
dark rows is, to refuse fields that cannot normalise anything, and sampled blocks of every
dataset are checksummed to identify the raw data).  Every later stage reads its work from
the plan and re-derives nothing.  Coordinates:

* projection chunks are ranges of positions in the *selected* projection list
  (``proj_range`` and ``exclude_proj`` applied, ordered by angle), ``[start, stop)``;
* sinogram chunks are ranges of *selected* detector rows (``row_range`` applied),
  i.e. rows of ``projections.h5``;
* the centre is in selected-column coordinates (``col_range`` start subtracted),
  0-based, pixel *i* centred at *i*.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from teravox import __version__
from teravox.config import Params, from_mapping
from teravox.errors import PlanError
from teravox.io.scan import Scan
from teravox.io.volume import output_names

PLAN_FORMAT = 1
GIB = 2**30

# Each pass owns its memory model next to its code (stages/preprocess.py, stages/reconstruct.py
# with recon/backends/fourier.py, stages/merge.py, stages/report.py); the plan composes them.
MIN_JOB_BYTES = 320 * 2**20  # the report job's fixed cost (matplotlib, the PDF) with some room
# Jobs are planned to this share of the budget: the memory models hold to ±6 % of the
# measured peaks (benchmarks/scale.py), so a job does not pass its budget.
PLAN_SHARE = 0.95
MERGE_MAX_ROWS = 128         # z-rows per merge block: more reads no faster
PAGANIN_TOL = 1e-4
# GPU memory assumed for fourier-gpu when the plan is made where no device is seen and
# gpu_memory is not given: the smallest data-centre card in use at beamlines (V100 16 GB).
DEFAULT_GPU_MEMORY = 16 * GIB
GPU_BACKENDS = ("fourier-gpu", "tomocupy")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "start": self.start, "stop": self.stop}


def split(n: int, k: int) -> list[Chunk]:
    """``k`` contiguous ranges covering ``range(n)`` exactly once, sizes differing by ≤ 1."""
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [Chunk(i, int(a), int(b)) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def split_even(n: int, k: int, align: int = 2) -> list[Chunk]:
    """Like :func:`split`, with every boundary on an even row (a multiple of ``align``, even).

    The fourier backend reconstructs two real slices as one complex transform; with
    chunks and subchunks aligned to pairs, each slice has the same partner whatever the
    chunking, so the volume does not depend on it (to float32 rounding).  A Zarr volume
    aligns them on its chunk height, so that no two jobs write the same chunk.
    """
    if k * 2 > n:
        return split(n, k)
    edges = (np.linspace(0, n, k + 1) / align).round().astype(int) * align
    edges[-1] = n
    return [Chunk(i, int(a), int(b)) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


def _resolve_range(rng: list[int] | None, n: int, name: str) -> tuple[int, int, int]:
    if rng is None:
        return 0, n, 1
    if len(rng) not in (2, 3):
        raise PlanError(f"{name}: expected [start, stop] or [start, stop, step], got {rng}")
    start, stop = rng[0], rng[1]
    step = rng[2] if len(rng) == 3 else 1
    stop = n if stop == -1 else stop
    if not (0 <= start < stop <= n) or step < 1:
        raise PlanError(f"{name}: {rng} does not select anything in 0..{n} (step ≥ 1, -1 = end)")
    return start, stop, step


def projection_indices(params: Params, n_proj: int, theta_deg: np.ndarray | None = None) -> np.ndarray:
    """Indices into the scan's projections that the reconstruction uses, ordered by angle when
    ``theta_deg`` (the scan's angles) is given: every later step (stripe removal, the centre
    search, 360°→180°) expects neighbouring sinogram rows to be neighbouring angles."""
    start, stop, step = _resolve_range(params.proj_range, n_proj, "proj_range")
    keep = np.zeros(n_proj, bool)
    keep[start:stop:step] = True
    for pair in params.exclude_proj:
        if len(pair) != 2 or pair[0] >= pair[1]:
            raise PlanError(f"exclude_proj: expected [from, to) pairs with from < to, got {pair}")
        keep[max(pair[0], 0):min(pair[1], n_proj)] = False
    idx = np.flatnonzero(keep)
    if idx.size < 2:
        raise PlanError(f"only {idx.size} projection(s) left after proj_range and exclude_proj")
    if theta_deg is not None:
        idx = idx[np.argsort(theta_deg[idx], kind="stable")]
        if theta_deg[idx[-1]] == theta_deg[idx[0]]:
            raise PlanError(f"the {idx.size} projections selected by proj_range and exclude_proj all have "
                            f"the angle {theta_deg[idx[0]]:g}°")
    return idx


def overlap_rows(params: Params, energy_kev: float | None, distance_m: float | None,
                 pixel_size_m: float | None) -> tuple[int, str]:
    """Rows a pass-1 subchunk needs beyond its own on each side, and why."""
    need, why = 0, []
    if params.outliers:
        need = max(need, params.outlier_size // 2)
        why.append(f"outlier median {params.outlier_size}×{params.outlier_size}: {params.outlier_size // 2}")
    if params.paganin:
        from teravox.prep.paganin import kernel_support_px

        missing = [n for n, v in (("energy_kev", energy_kev), ("distance_m", distance_m),
                                  ("pixel_size_m", pixel_size_m)) if v is None]
        if missing:
            raise PlanError(f"Paganin phase retrieval needs {', '.join(missing)}: not in the file, "
                            f"give them as parameters (e.g. --energy-kev 35 --distance-m 0.3 --pixel-size-m 0.55e-6)")
        # tail below 1e-4 of the kernel's sum: chunk seams then stay under 1e-5 of the data range
        r = kernel_support_px(pixel_size_m, distance_m, energy_kev, params.delta_beta, tol=PAGANIN_TOL)
        need = max(need, r)
        why.append(f"Paganin kernel support {r} px (tail below {PAGANIN_TOL:g} of the kernel's sum)")
    return need, "; ".join(why) or "no neighbour-dependent correction"


def hdf5_chunk_angles(n_proj: int, n_rows: int, n_cols: int, block: int | None = None) -> int:
    """Angles per HDF5 chunk of a projection-chunk file (~4 MiB over up to 8 rows): at
    most ``block`` (projections per subchunk) where one is given, which the plan makes a
    multiple of it, so that each subchunk writes whole chunks."""
    cap = max(1, min(n_proj, (4 * 2**20) // (4 * min(n_rows, 8) * min(n_cols, 4096))))
    return min(cap, block) if block else cap


def projection_block(n_proj: int, n_rows: int, n_cols: int, n_chunk_angles: int,
                     fits: Callable[[int], bool]) -> int:
    """Most projections at full height that a pass-1 subchunk can hold (``fits(count)``;
    0: not even one), cut to whole HDF5 chunks of the output (``n_chunk_angles`` each)."""
    fit = 0
    lo, hi = 1, n_proj
    while lo <= hi:  # the peak grows with the projections: bisect
        mid = (lo + hi) // 2
        if fits(mid):
            fit, lo = mid, mid + 1
        else:
            hi = mid - 1
    return fit - fit % n_chunk_angles if fit > n_chunk_angles else fit


def _gib(nbytes: float) -> str:
    """A budget that holds ``nbytes`` (planned to PLAN_SHARE of it), as --memory takes it
    (rounded up to 0.1 GiB)."""
    return f"{math.ceil(nbytes / PLAN_SHARE / GIB * 10) / 10:g}G"


def recon_backend(params: Params) -> str:
    """The backend pass 2 is planned for: ``backend``, with ``auto`` → ``fourier-gpu``
    where CuPy sees a device while planning (the jobs resolve ``auto`` again where they run)."""
    if params.backend != "auto":
        return params.backend
    from teravox.recon.backends import base

    return "fourier-gpu" if base.is_available("fourier-gpu") else "fourier"


def gpu_memory(params: Params) -> tuple[int, str]:
    """Device bytes one GPU reconstruct job may use, and where the figure comes from."""
    from teravox.config import parse_bytes

    if params.gpu_memory is not None:
        return parse_bytes(params.gpu_memory, "gpu_memory"), "given (gpu_memory)"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return int(cupy.cuda.Device(0).mem_info[1]), "device 0's total, as CuPy saw it while planning"
    except Exception:  # noqa: BLE001, S110 - no CuPy, no driver, no device: fall through to the default
        pass
    return DEFAULT_GPU_MEMORY, (f"assumed {DEFAULT_GPU_MEMORY // GIB} GiB: no device seen while planning "
                                "(give --gpu-memory for the reconstruct nodes' cards)")


def device_plan(params: Params, n_angles: int, columns: int, n: int) -> dict[str, Any] | None:
    """GPU side of pass 2 (None for CPU backends): the most slice pairs per NUFFT batch
    that the GPU memory holds, for ``n_angles`` × ``columns`` sinograms (padded, as the
    backend sees them) → n × n slices; :func:`make_plan` fits them to the subchunks.
    PlanError when not even one pair fits."""
    backend = recon_backend(params)
    if backend not in GPU_BACKENDS:
        return None
    budget, source = gpu_memory(params)
    out: dict[str, Any] = {"backend": backend, "gpu_memory": budget, "gpu_memory_source": source}
    if backend == "tomocupy":
        out["note"] = "TomoCuPy sizes its own GPU chunks"
        return out
    from teravox.recon.backends import fourier_gpu

    pairs = fourier_gpu.batch_pairs_for(budget, n_angles, columns, n, params.fourier_upsampfac)
    if pairs == 0:
        need = fourier_gpu.device_bytes(n_angles, columns, n, 1, params.fourier_upsampfac)
        raise PlanError(f"gpu_memory: {budget / GIB:.1f} GiB ({source}) is too small for one slice pair "
                        f"of fourier-gpu ({n_angles} angles × {columns} padded columns → {n}² needs "
                        f"~{need / GIB:.1f} GiB); give the card's memory with --gpu-memory, or use "
                        f"--backend fourier")
    out["batch_pairs"] = pairs
    return out


def make_plan(scan: Scan, params: Params, *, workdir: str | os.PathLike = ".",
              scan_name: str | None = None, extra_inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan as a JSON-able dict.  Raises PlanError for combinations that cannot work."""
    given = params.memory_bytes()
    budget = int(given * PLAN_SHARE)
    if given < MIN_JOB_BYTES:
        raise PlanError(f"memory: {params.memory} is too small for any job "
                        f"(at least {MIN_JOB_BYTES // 2**20} MiB)")
    proj_idx = projection_indices(params, scan.n_proj, scan.theta_deg)
    r0, r1, rstep = _resolve_range(params.row_range, scan.n_rows, "row_range")
    c0, c1, cstep = _resolve_range(params.col_range, scan.n_cols, "col_range")
    if rstep != 1 or cstep != 1:
        raise PlanError("row_range and col_range take [start, stop] without a step")
    n_p, n_r, n_c = proj_idx.size, r1 - r0, c1 - c0
    theta = scan.theta_deg[proj_idx]

    md = scan.metadata
    energy = params.energy_kev if params.energy_kev is not None else md.get("energy_kev") and md["energy_kev"].value
    distance = params.distance_m if params.distance_m is not None else md.get("distance_m") and md["distance_m"].value
    pixel = params.pixel_size_m if params.pixel_size_m is not None else md.get("pixel_size_m") and md["pixel_size_m"].value
    if params.paganin:  # given values are checked with the parameters; these come from the file
        for name in ("energy_kev", "distance_m", "pixel_size_m"):
            if getattr(params, name) is None and name in md and not md[name].value > 0:
                raise PlanError(f"{scan.path} [{md[name].source}]: {name} is {md[name].value:g}; Paganin "
                                f"phase retrieval needs a positive value (give --{name.replace('_', '-')})")
    overlap, overlap_why = overlap_rows(params, energy or None, distance or None, pixel or None)

    if params.flat_dark and (scan.n_flats == 0 or scan.n_darks == 0):
        which = [w for w, n in (("flats", scan.n_flats), ("darks", scan.n_darks)) if n == 0]
        looked = "; ".join(f"{w}: {scan.field_sources.get(w, 'none')}" for w in which)
        raise PlanError(f"{scan.path}: no {' or '.join(which)} found ({looked}); give --flat-file/--dark-file "
                        f"(or --flat-path/--dark-path), or --flat-dark false for data that are already normalised")
    if params.flat_dark:
        check_fields_sample(scan, params, slice(r0, r1), slice(c0, c1))
    if params.i0 == "air" and params.i0_air_cols is not None:
        _, _, step = _resolve_range(params.i0_air_cols, n_c, "i0_air_cols")
        if step != 1:
            raise PlanError(f"i0_air_cols: expected [start, stop] columns, got {params.i0_air_cols}")
    if params.i0 == "monitor" and scan.i0 is None:
        why = next((n for n in scan.notes if n.startswith("beam monitor")), None)
        raise PlanError(f"{scan.path}: i0=monitor but no beam-monitor series was found ("
                        + (why or "looked at /measurement/instrument/beam_monitor/data, /instrument/beam_monitor/data "
                                  "and the NeXus entry's NXmonitor groups") + "); give --monitor-path")

    # -- centre -----------------------------------------------------------------------
    check_center_params(params)
    if isinstance(params.center, float):
        center, how = params.center - c0, "given"
    elif params.center == "auto":
        center, how = None, "auto"
    elif "center" in md:
        center, how = md["center"].value - c0, f"file ({md['center'].source})"
    else:  # never the middle of the detector in silence
        center, how = None, "auto: none given or in the file"
    if center is not None and not 0 <= center <= n_c - 1:
        crop = f" (col_range {c0}..{c1}; the centre is a raw detector column)" if (c0, c1) != (0, scan.n_cols) else ""
        raise PlanError(f"center: {center + c0:g} px ({how}) is outside the detector's columns "
                        f"{c0}..{c1 - 1}{crop}; expected the rotation axis on the detector "
                        "(give --center in raw detector columns, or --center auto)")
    half = params.half_acquisition != "off"
    from teravox.io.validate import angle_coverage_note, angle_span

    span = angle_span(theta)
    if half and span < 360 - 1.5 * span / n_p:
        raise PlanError(f"half_acquisition: {params.half_acquisition} needs angles over a full turn (360°); the "
                        f"{n_p} selected projections cover {span:.1f}° ({theta.min():g}…{theta.max():g}°, "
                        f"from {scan.theta_source})")
    notes = list(scan.notes)
    coverage = angle_coverage_note(theta, params.half_acquisition)
    if coverage:
        notes.append(coverage)
    n_out = 2 * n_c if half else n_c  # the 360→180 conversion roughly doubles the width

    # -- chunk counts -----------------------------------------------------------------
    raw_bytes = n_p * n_r * n_c * scan.dtype.itemsize
    target = params.target_job_gb * GIB
    k = params.proj_chunks or max(1, math.ceil(raw_bytes / target))
    j = params.sino_chunks or max(1, math.ceil(n_p * n_r * n_c * 4 / target))
    if k > n_p:
        raise PlanError(f"proj_chunks: {k} chunks for {n_p} projections; at most one chunk per projection")
    if j > n_r:
        raise PlanError(f"sino_chunks: {j} chunks for {n_r} detector rows; at most one chunk per row")
    proj_chunks, sino_chunks = split(n_p, k), split_even(n_r, j)

    # -- subchunks from the memory budget ---------------------------------------------
    from teravox.stages import preprocess as prep_stage

    biggest_p = max(c.size for c in proj_chunks)
    n_flat_frames = scan.n_flats + scan.n_flats_after + scan.n_darks
    rows_max = max(c.size for c in sino_chunks)

    def prep_bytes(n_proj: int, rows: int, overlap_: int) -> int:
        return prep_stage.peak_bytes(params, n_proj, min(rows + 2 * overlap_, n_r), n_c, scan.dtype.itemsize,
                                     n_flat_frames)

    prow, pproj = 0, None
    if params.proj_subchunk_rows:
        prow = min(params.proj_subchunk_rows, n_r)
    elif prep_bytes(biggest_p, n_r, 0) <= budget:
        prow = n_r  # the whole chunk in one block
    elif params.stripe_prep == "off":
        # Only pass-1 stripe removal needs every angle of a row: otherwise blocks of whole
        # projections at full height, which need no overlap rows and write whole HDF5 chunks.
        cap = hdf5_chunk_angles(biggest_p, n_r, n_c)
        pproj = projection_block(biggest_p, n_r, n_c, cap, lambda k: prep_bytes(k, n_r, 0) <= budget) or None
        prow = n_r if pproj else 0
        if not pproj:
            raise PlanError(f"memory: {params.memory} is too small for one projection of the detector "
                            f"({n_r} rows × {n_c} columns needs {_gib(prep_bytes(1, n_r, 0))}); "
                            f"give --memory {_gib(prep_bytes(1, n_r, 0))} or more")
    else:
        for cand in range(n_r, 0, -1):  # largest band of rows (all angles of the chunk) that fits
            if prep_bytes(biggest_p, cand, overlap) <= budget:
                prow = cand
                break
        if prow == 0:
            need = prep_bytes(biggest_p, 1, overlap)
            raise PlanError(f"memory: {params.memory} is too small for one detector row of a projection "
                            f"chunk with pass-1 stripe removal ({biggest_p} projections × {n_c} columns needs "
                            f"{_gib(need)}); give --memory {_gib(need)} or more, or more --proj-chunks")
    prep_peak = prep_bytes(pproj, n_r, 0) if pproj else prep_bytes(biggest_p, prow, overlap)

    from teravox.recon.sinogram import default_pad_width

    width_in = n_out if half else n_c
    pad = 0 if params.pad == "none" else (params.pad_width_px if params.pad_width_px is not None
                                         else default_pad_width(width_in))
    cols_padded = width_in + 2 * pad
    n_angles_recon = n_p // 2 if half else n_p
    device = device_plan(params, n_angles_recon, cols_padded, n_out)
    pairs = (device or {}).get("batch_pairs") or 0

    from teravox import resources
    from teravox.recon.backends import fourier
    from teravox.stages import merge as merge_stage
    from teravox.stages import reconstruct as recon_stage
    from teravox.stages import report as report_stage

    backend = recon_backend(params)
    deviation = fourier.angle_deviation(np.radians(theta[:n_angles_recon] if half else theta))
    threads = resources.threads(params.threads)

    def recon_bytes(rows: int, tile: int | None = None) -> int:
        pairs_ = min(pairs, -(-rows // 2)) if pairs else 0
        return recon_stage.peak_bytes(params, rows=rows, n_angles=n_p, n_cols=n_c, n_out=n_out, pad_width=pad,
                                      center=center, tile=tile, threads=threads, deviation=deviation,
                                      backend=backend, gpu_pairs=pairs_, subchunks=-(-rows_max // rows),
                                      chunk_rows=min(n_r, 8))

    def largest_tile(rows: int) -> int:
        """The largest tile side that fits (0: none)."""
        for parts in range(2, n_out // fourier.MIN_TILE + 1):
            t = math.ceil(n_out / parts)
            if recon_bytes(rows, t) <= budget:
                return t
        return 0

    srow, tile = 0, None
    if params.sino_subchunk_rows:
        srow = min(params.sino_subchunk_rows, rows_max)
        # whole slice pairs (see split_even); one slice at a time is transformed alone
        srow = srow + (srow % 2 and 1 < srow < rows_max)
        if backend == "fourier" and recon_bytes(srow) > budget:
            tile = largest_tile(srow) or None
    else:
        for cand in range(rows_max, 0, -1):
            if recon_bytes(cand) <= budget and (cand % 2 == 0 or cand in (1, rows_max)):
                srow = cand
                break
        if srow == 0 and backend == "fourier":
            # whole slices do not fit: tiles, for a pair or a single slice (the larger tile wins)
            options = [(largest_tile(rows), rows) for rows in sorted({min(2, rows_max), 1}, reverse=True)]
            best = max(options)
            if best[0]:
                tile, srow = best
    if srow == 0 or recon_bytes(srow, tile) > budget:
        rows = srow if params.sino_subchunk_rows else 1
        tiles = [math.ceil(n_out / parts) for parts in range(2, n_out // fourier.MIN_TILE + 1)]
        need = min([recon_bytes(rows)] + ([recon_bytes(rows, t) for t in tiles] if backend == "fourier" else []))
        what = "one slice" if rows == 1 else f"{rows} slices at a time (sino_subchunk_rows)"
        raise PlanError(f"memory: {params.memory} is too small to reconstruct {what} ({n_angles_recon} angles × "
                        f"{n_c} columns → {n_out}² needs at least {_gib(need)} with the {backend} backend); "
                        f"give --memory {_gib(need)} or more")
    if pairs and srow > 2 * pairs and srow < rows_max:
        srow -= srow % (2 * pairs)  # whole GPU batches: none runs part-empty
    zarr_chunks = None
    if "zarr" in params.format:  # each job writes whole chunks of the OME-Zarr volume, and only its own
        from teravox.io.omezarr import chunk_rows, chunk_shape

        rows = chunk_rows(srow, n_r, j)
        zarr_chunks = list(chunk_shape(rows, n_out))
        sino_chunks = split_even(n_r, j, max(2, rows))
        srow -= srow % rows
    if pairs:  # a subchunk smaller than a batch makes the batch smaller
        from teravox.recon.backends import fourier_gpu

        device["batch_pairs"] = min(pairs, -(-srow // 2))
        device["gpu_peak_estimate"] = fourier_gpu.device_bytes(n_angles_recon, cols_padded, n_out,
                                                               device["batch_pairs"], params.fourier_upsampfac)
    recon_peak = recon_bytes(srow, tile)
    most = max_pyramid_levels(n_out)
    if params.pyramid > most:
        raise PlanError(f"pyramid: {params.pyramid} levels, but {n_out} × {n_out} slices allow at most {most} "
                        f"(each level halves them; level {most} is {-(-n_out // 2**most)} pixel(s) wide)")
    from teravox.stages import collect

    collect_peak = collect.peak_bytes(params, np.deg2rad(theta), n_r, n_c, center is None,
                                      n_out=n_out, pad_width=pad, tile=tile, threads=threads)
    out_itemsize = np.dtype(params.dtype).itemsize
    chunks = {"sino_chunks": [c.to_dict() for c in sino_chunks]}

    def merge_bytes(rows: int) -> int:
        return merge_stage.peak_bytes(n_out, rows, out_itemsize, params.pyramid, merge_stage.straddles(chunks, rows))

    merge_rows = next((r for r in range(min(n_r, MERGE_MAX_ROWS), 0, -1) if merge_bytes(r) <= budget), 0)
    if merge_rows == 0:
        raise PlanError(f"memory: {params.memory} is too small to merge one {n_out}² slice "
                        f"(needs {_gib(merge_bytes(1))}); give --memory {_gib(merge_bytes(1))} or more")
    merge_peak = merge_bytes(merge_rows)
    report_peak = report_stage.peak_bytes(params, n_r, n_c, scan.dtype.itemsize, (n_r, n_out, n_out), out_itemsize, n_p)

    name = scan_name or _scan_name(Path(scan.path))
    plan: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "teravox_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "name": name,
        "workdir": str(workdir),
        "scan": {
            "path": str(Path(scan.path).resolve()),
            "format": scan.format,
            "shape": list(scan.shape),
            "dtype": str(scan.dtype),
            "data_path": scan.data_path,
            "theta_source": scan.theta_source,
            "n_flats": scan.n_flats, "n_flats_after": scan.n_flats_after, "n_darks": scan.n_darks,
            "i0_source": scan.i0_source,
            "metadata": {k2: {"value": v.value, "source": v.source} for k2, v in md.items()},
        },
        "params": params.to_dict(),
        "selection": {
            "proj_indices": proj_idx.tolist(),
            "rows": [r0, r1],
            "cols": [c0, c1],
        },
        "theta_deg": theta.tolist(),
        "physics": {"energy_kev": energy or None, "distance_m": distance or None,
                    "pixel_size_m": pixel or None},
        "center": {"value": center, "how": how},
        "angles_reordered": bool(np.any(np.diff(proj_idx) < 0)),
        "notes": notes,
        "overlap_rows": overlap,
        "overlap_why": overlap_why,
        "proj_chunks": [c.to_dict() for c in proj_chunks],
        "sino_chunks": [c.to_dict() for c in sino_chunks],
        "proj_subchunk_rows": prow,
        "proj_subchunk_projections": pproj,
        "sino_subchunk_rows": srow,
        "merge_block_rows": merge_rows,
        "recon_tile": tile,
        "pad_width_px": pad,
        "recon_shape": [n_r, n_out, n_out],
        "zarr_chunks": zarr_chunks,
        "recon_angles": n_angles_recon,
        "recon_device": device,
        "memory": {
            "budget": given,
            "planned_to": budget,
            "preprocess_peak_estimate": prep_peak,
            "reconstruct_peak_estimate": recon_peak,
            "merge_peak_estimate": merge_peak,
            "merge_zarr_tiff_peak_estimate": merge_stage.formats_peak_bytes(params, zarr_chunks, n_out),
            "collect_peak_estimate": collect_peak,
            "report_peak_estimate": report_peak,
        },
        "outputs": {
            "projections": "projections.h5",
            "proj_chunk": "proj_{index:04d}.h5",
            **output_names(name, params.tiff_layout),
            "report": f"{name}_report.pdf",
        },
    }
    if extra_inputs:
        plan.update(extra_inputs)
    from teravox.io.provenance import input_identity

    plan["inputs"] = input_identity(scan)
    return plan


def _scan_name(path: Path) -> str:
    """What outputs are named after: the file's stem, a TIFF folder's name, or a glob pattern's
    stem without its wildcards (else its folder's name)."""
    import re

    stem = re.sub(r"[*?\[\]]", "", path.stem).strip("_-. ")
    return stem or path.parent.name or "scan"


def max_pyramid_levels(n: int) -> int:
    """Most pyramid levels for n × n slices: halving until a level is one pixel wide."""
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def check_fields_sample(scan: Scan, params: Params, rows: slice, cols: slice, samples: int = 16) -> None:
    """Refuse flats and darks that cannot normalise the scan (flats equal to the darks, darks
    of Inf, ...), from ``samples`` rows spread over the selected ones (all frames, all columns)."""
    from teravox.io.validate import check_fields

    step = max(1, (rows.stop - rows.start) // samples)
    flat, dark, _ = scan.read_fields(slice(rows.start, rows.stop, step), cols,
                                     flat_method=params.flat_method, dark_method=params.dark_method)
    check_fields(flat, dark, scan.path, f"{scan.field_sources.get('flats')} and {scan.field_sources.get('darks')}")


def check_center_params(params: Params) -> None:
    """The centre sweep's FROM:TO:STEP and a tilt a detector can have, before any job runs."""
    from teravox.config.params import parse_sweep

    if params.center_sweep is not None:
        parse_sweep(params.center_sweep, "center_sweep")
    if params.tilt_deg is not None and not -10 <= params.tilt_deg <= 10:
        raise PlanError(f"tilt_deg: {params.tilt_deg}° is not a tilt a rotation axis has (within ±10°)")


# ---------------------------------------------------------------------------------------
def save(plan: dict[str, Any], path: str | os.PathLike) -> None:
    from teravox.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plan, indent=1))


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a plan written by :func:`save`; PlanError if it is missing or not a plan."""
    p = Path(path)
    try:
        plan = json.loads(p.read_text())
    except FileNotFoundError:
        raise PlanError(f"{p}: plan file does not exist (run `teravox plan` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"{p}: not a readable plan ({exc})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PlanError(f"{p}: not a teravox plan (format {PLAN_FORMAT} expected)")
    return plan


def params_of(plan: dict[str, Any]) -> Params:
    return from_mapping(plan["params"], source="plan")


def workdir(plan: dict[str, Any], override: str | os.PathLike | None = None) -> Path:
    return Path(override) if override is not None else Path(plan["workdir"])


def chunk(plan: dict[str, Any], kind: str, index: int) -> Chunk:
    """The plan's chunk ``index`` of ``kind`` ('proj_chunks' or 'sino_chunks'), or PlanError."""
    chunks = plan[kind]
    if not 0 <= index < len(chunks):
        raise PlanError(f"chunk {index} is out of range: the plan has {len(chunks)} "
                        f"{'projection' if kind == 'proj_chunks' else 'sinogram'} chunks (0..{len(chunks) - 1})")
    c = chunks[index]
    return Chunk(c["index"], c["start"], c["stop"])


def check_scan_matches(plan: dict[str, Any], scan: Scan) -> None:
    """The scan a job opens must be the one the plan was made for: same shape, and no file of
    it changed (size, modification time) since."""
    from teravox.io.provenance import changed_inputs

    want = tuple(plan["scan"]["shape"])
    if tuple(scan.shape) != want:
        raise PlanError(f"{scan.path}: the scan has shape {scan.shape} but the plan was made for {want} "
                        f"({plan['scan']['path']}); make a new plan")
    changed = changed_inputs(plan.get("inputs", {}))
    if changed:
        raise PlanError(f"{changed[0]}: changed since the plan was made (size or modification time"
                        f"{f'; and {len(changed) - 1} more file(s)' if len(changed) > 1 else ''}); "
                        "make a new plan")
