"""Synthetic multi-scan acquisitions with known placements: side by side, and stacked in height.

* :func:`write_stitch_sample` — ``n_scans`` laterally offset scans of one textured object
  with sub-pixel true offsets on both axes, motor positions off by up to ±``motor_error_px``,
  and their scan sheet; optionally per-scan detector shapes and exposures;
* :func:`write_zstack` — a tall object measured in ``n_levels`` height steps (one scan
  each, overlapping by ``overlap_rows``, sub-pixel true heights, motor heights off by up to
  ±``motor_error_px``), their sheet, and the same object as one tall scan for reference.

The object of both is :func:`textured_phantom`: the default phantom plus small grains
everywhere inside the container, so that every overlap has features to align on.  Each
scan is a :func:`teravox.synth.scan.write_scan` file with its own flats, darks and noise;
the truth returned (and in each file's ``/truth``) says where each scan really sits.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from teravox.errors import ParamError
from teravox.synth.phantom import Phantom, Shape, default_mu_scale, default_phantom
from teravox.synth.scan import write_scan

FLUX = 20000.0   # flat-field counts at the brightest pixel
N_FLATS = 10


def textured_phantom(n: int, rows: int, seed: int = 0) -> Phantom:
    """The default phantom for an n-pixel field of view and ``rows`` rows, plus small grains
    (1.5–4 px, ± 2–4 × the default attenuation scale) everywhere inside the container."""
    rng = np.random.default_rng([seed, 77])
    k, u, h = default_mu_scale(n), n / 2.0, rows / 2.0
    shapes = list(default_phantom(n, rows).shapes)
    for _ in range(max(8, int(n * n * max(1.0, rows / 16) // 400))):  # ~ as many grains per volume whatever n
        r, phi, a = 0.8 * u * math.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.0)
        shapes.append(Shape((r * math.cos(phi), r * math.sin(phi), rng.uniform(-h, h)),
                            (a, a * rng.uniform(0.6, 1.0), rng.uniform(1.5, 3.0)), rng.uniform(0, np.pi),
                            rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.0) * k))
    return Phantom(shapes)


def raised(ph: Phantom, dz: float) -> Phantom:
    """The phantom as a scan whose row z sees the object's z + ``dz`` sees it."""
    return Phantom([Shape((s.center[0], s.center[1], s.center[2] - dz), s.semi_axes, s.angle, s.mu, s.delta)
                    for s in ph.shapes])


def _write_sheet(directory: Path, rows: list[dict[str, Any]], sheet: str) -> Path:
    if sheet == "csv":
        path = directory / "scans.csv"
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return path
    path = directory / f"scans.{sheet}"
    doc = {"scans": [{k: (v if k == "file" else float(v)) for k, v in r.items()} for r in rows]}
    if sheet == "json":
        path.write_text(json.dumps(doc))
    elif sheet in ("yaml", "yml"):
        import yaml

        path.write_text(yaml.safe_dump(doc))
    else:
        raise ParamError(f"sheet must be csv, json or yaml, got {sheet!r}")
    return path


def write_stitch_sample(directory: str | Path, n_scans: int, *, overlap_px: int = 24, n_cols: int = 64,
                        n_rows: int = 16, n_angles: int = 12, theta_range_deg: float = 180.0,
                        axis: str = "middle", motor_error_px: float = 8.0, dy_px: float = 1.5,
                        subpixel: bool = True, supersample: int = 4, noise: bool = True, seed: int = 0,
                        pixel_size_m: float = 1e-6, sheet: str = "csv", shuffle: bool = False,
                        n_angles_of: dict[int, int] | None = None, shape_of: dict[int, tuple[int, int]] | None = None,
                        exposure_of: dict[int, float] | None = None, heights: bool = False,
                        progress: bool = False) -> dict[str, Any]:
    """Write ``n_scans`` offset scans of one textured object (scan_00.h5 ...) and their sheet.

    Scan i has (rows, cols) = ``shape_of[i]`` (default ``n_rows`` × ``n_cols``).  True shifts
    relative to scan 0: dx_i = dx_{i−1} + cols_{i−1} − ``overlap_px`` + U(±0.5) and dy_i =
    U(±``dy_px``) (integers with ``subpixel=False``).  Motor positions (mm, in the sheet) are
    dx_i + U(±``motor_error_px``) pixels plus an arbitrary origin; with ``heights`` the sheet
    also gives height_px = dy_i + U(±1).  ``axis``: the rotation axis in the middle of the
    stitched field, or ``"edge"`` (near its right edge, for 360° scans: the object then reaches
    nearly to the far edge).  ``supersample`` integrates over each pixel's area, as a detector
    does; ``exposure_of[i]`` scales scan i's projections (not its flats); ``n_angles_of`` gives
    some scans another number of projections.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4242])
    shapes = [(shape_of or {}).get(i, (n_rows, n_cols)) for i in range(n_scans)]
    dx = np.zeros(n_scans)
    for i in range(1, n_scans):
        dx[i] = dx[i - 1] + shapes[i - 1][1] - overlap_px + (rng.uniform(-0.5, 0.5) if subpixel else 0.0)
    dy = np.array([rng.uniform(-dy_px, dy_px) if i else 0.0 for i in range(n_scans)])
    if not subpixel:
        dy = np.round(dy)
    err = rng.uniform(-motor_error_px, motor_error_px, n_scans)
    h_err = rng.uniform(-1.0, 1.0, n_scans)
    wide = int(math.ceil(max(x + c for x, (_, c) in zip(dx, shapes, strict=True))))
    center = (wide - 1) / 2.0 if axis == "middle" else wide - 1 - overlap_px / 2.0
    if axis == "edge":  # the object fills the doubled field of view, so the far scans see it too
        n_object = int(2 * max(center, wide - 1 - center) * 0.97 / 0.83)
    elif axis == "middle":  # the default phantom's margin of air at both edges
        n_object = int(2 * min(center, wide - 1 - center) + 1)
    else:
        raise ParamError(f"axis must be 'middle' or 'edge', got {axis!r}")
    rows0 = shapes[0][0]
    phantom = textured_phantom(n_object, rows0, seed)
    files = []
    for i in range(n_scans):
        path = directory / f"scan_{i:02d}.h5"
        r_i, c_i = shapes[i]
        # scan i's row r is scan 0's row r + dy_i; write_scan puts row r at z = r − (rows − 1)/2
        write_scan(path, n_cols=c_i, n_rows=r_i, n_angles=(n_angles_of or {}).get(i, n_angles),
                   center=center - dx[i], phantom=raised(phantom, dy[i] + (r_i - rows0) / 2.0),
                   theta_range_deg=theta_range_deg, pixel_size_m=pixel_size_m, supersample=supersample,
                   noise=noise, flux=FLUX, n_flats=N_FLATS, seed=1000 * seed + i, progress=progress,
                   exposure=(exposure_of or {}).get(i, 1.0))
        files.append(path)
    pos_mm = 12.5 + (dx + err) * pixel_size_m * 1e3
    order = list(np.random.default_rng(seed).permutation(n_scans)) if shuffle else list(range(n_scans))
    rows = []
    for i in order:
        row = {"file": files[i].name, "position_mm": f"{pos_mm[i]:.7f}"}
        if heights:
            row["height_px"] = f"{dy[i] + h_err[i]:.3f}"
        rows.append(row)
    sheet_path = _write_sheet(directory, rows, sheet)
    return {"dir": directory, "files": files, "sheet": sheet_path, "dx": dx, "dy": dy, "motor_error_px": err,
            "wide": wide, "center": center, "phantom": phantom, "n_rows": n_rows, "n_cols": n_cols,
            "shapes": shapes, "supersample": supersample,
            "theta_deg": theta_range_deg * np.arange(n_angles) / n_angles}


def write_zstack(directory: str | Path, n_levels: int, *, rows_per_level: int = 24, overlap_rows: int = 8,
                 n_cols: int = 64, n_angles: int = 90, motor_error_px: float = 2.0, subpixel: bool = True,
                 supersample: int = 2, noise: bool = True, seed: int = 0, pixel_size_m: float = 1e-6,
                 exposure_of: dict[int, float] | None = None, talls: int = 1,
                 progress: bool = False) -> dict[str, Any]:
    """Write a tall object measured in ``n_levels`` height steps (level_00.h5 ...), their sheet
    (scans.csv: file, height_mm) and the whole height as ``talls`` single scans with independent
    noise (tall.h5, tall_1.h5, ...: the reference, and how much two of them differ by noise).

    Level k's row 0 sits at row h_k of the tall field of view: h_k = k·(``rows_per_level`` −
    ``overlap_rows``) + U(±0.5) (h_0 = 0; integers with ``subpixel=False``); the sheet's
    heights are off by U(±``motor_error_px``) rows.  The tall scan has ceil(h_last +
    rows_per_level) rows; its row r is the tall field's row r.  ``exposure_of[k]`` scales level
    k's projections (not its flats).
    """
    if n_levels < 1 or not 0 < overlap_rows < rows_per_level:
        raise ParamError(f"need n_levels ≥ 1 and 0 < overlap_rows < rows_per_level, got {n_levels}, "
                         f"{overlap_rows}, {rows_per_level}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4343])
    step = rows_per_level - overlap_rows
    h = np.array([k * step + (rng.uniform(-0.5, 0.5) if subpixel and k else 0.0) for k in range(n_levels)])
    err = rng.uniform(-motor_error_px, motor_error_px, n_levels)
    total = int(math.ceil(h[-1] + rows_per_level))
    phantom = textured_phantom(n_cols, total, seed)
    common = dict(n_cols=n_cols, n_angles=n_angles, pixel_size_m=pixel_size_m, supersample=supersample,
                  noise=noise, flux=FLUX, n_flats=N_FLATS, progress=progress)
    files = []
    for k in range(n_levels):
        path = directory / f"level_{k:02d}.h5"
        # level row r is tall row r + h_k, at the object's z = r + h_k − (total − 1)/2
        write_scan(path, n_rows=rows_per_level, seed=1000 * seed + k,
                   phantom=raised(phantom, h[k] - (total - 1) / 2.0 + (rows_per_level - 1) / 2.0),
                   exposure=(exposure_of or {}).get(k, 1.0), **common)
        files.append(path)
    tall_paths = []
    for t in range(talls):
        tall_paths.append(directory / ("tall.h5" if t == 0 else f"tall_{t}.h5"))
        write_scan(tall_paths[-1], n_rows=total, seed=1000 * seed + 999 - t, phantom=phantom, **common)
    rows = [{"file": f.name, "height_mm": f"{(h[k] + err[k]) * pixel_size_m * 1e3:.7f}"} for k, f in enumerate(files)]
    sheet_path = _write_sheet(directory, rows, "csv")
    return {"dir": directory, "files": files, "sheet": sheet_path, "talls": tall_paths, "heights_px": h,
            "motor_error_px": err, "total_rows": total, "rows_per_level": rows_per_level, "phantom": phantom,
            "n_cols": n_cols}
