"""Automatic rotation-centre search.

Centres are column positions in detector pixels, 0-based, pixel *i* centred at
*i* — algotom's convention too (checked against exact synthetic sinograms in
``tests/test_center.py``), so its results are returned unchanged.
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

import numpy as np

from teravox.errors import ParamError, StageError
from teravox.recon.sinogram import half_acquisition_pairs

# Vo's method does not need every angle; more only costs time (the fine search
# runs on the full sinogram).
_MAX_ANGLES_180 = 1800
_MAX_ANGLES_360 = 1000


def _ncore() -> int:
    """Cores this process may use (a cluster job may be given fewer than the node has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _as_stack(sinos: np.ndarray) -> np.ndarray:
    sinos = np.asarray(sinos, dtype=np.float32)
    if sinos.ndim == 2:
        sinos = sinos[None]
    if sinos.ndim != 3 or sinos.shape[0] == 0:
        raise ValueError(f"expected sinograms (rows, angles, columns), got shape {sinos.shape}")
    return sinos


def _first_180(n_angles: int, theta: np.ndarray | None) -> np.ndarray:
    """Indices of the angles in [θ₀, θ₀ + π): all of them without ``theta``."""
    if theta is None:
        return np.arange(n_angles)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (n_angles,):
        raise ValueError(f"theta has {theta.size} angles, the sinograms {n_angles}")
    step = np.median(np.abs(np.diff(theta))) if n_angles > 1 else 0.0
    return np.flatnonzero(theta - theta.min() < np.pi - step / 2)


def find_center_180(
    sinos: np.ndarray, *, theta: np.ndarray | None = None, search_radius: float = 50.0,
    guess: float | None = None,
) -> float:
    """Rotation centre (column, pixels) of 180° sinograms by Vo's method (algotom ``find_center_vo``).

    ``sinos``: ``(rows, angles, columns)`` or one ``(angles, columns)``; the caller
    passes a few rows with structure.  Only angles in [θ₀, θ₀ + 180°) are used (all
    of them without ``theta``, radians), thinned to at most 1800.  The search covers
    ``guess ± search_radius`` (``guess`` defaults to the middle, ``(N − 1)/2``) to a
    quarter pixel; algotom's fine search may end up to 4 px (more for widths over
    1000) outside that window, and warns when the minimum lies on its edge.  Each
    row gives a centre; the median is returned, so one row with too little
    structure cannot pull the result.  Accuracy: within a quarter pixel on exact
    data sampled with at least π/2 · N angles; sparser angles drift (half a pixel
    at 180 angles for N = 160 in the tests).
    """
    from algotom.prep.calculation import find_center_vo  # ~1 s to import: only when searching

    sinos = _as_stack(sinos)
    n = sinos.shape[-1]
    rows = _first_180(sinos.shape[1], theta)
    rows = rows[:: max(1, int(np.ceil(rows.size / _MAX_ANGLES_180)))]
    middle = (n - 1) / 2 if guess is None else float(guess)
    start = max(0.0, middle - search_radius)
    stop = min(n - 1.0, middle + search_radius)
    centres = []
    with np.errstate(all="ignore"):
        for sino in sinos:
            centres.append(float(find_center_vo(sino[rows], start, stop, step=0.25, ncore=_ncore())))
    return _median_or_fail(centres, "180°")


def find_center_360(
    sinos: np.ndarray, *, theta: np.ndarray | None = None, side: Literal["left", "right"] | None = None,
    win_width: int | None = None,
) -> tuple[float, Literal["left", "right"]]:
    """Rotation centre (column, pixels) and side of half-acquisition 360° sinograms.

    Vo et al. 2021 (algotom ``find_center_360``): the first 180° is matched against
    the mirrored second 180° to find their overlap; the centre follows from the
    overlap width.  Built from algotom's ``search_overlap`` and
    ``calculate_curvature`` rather than ``find_center_360`` itself, because that
    (1.7) pairs angles by its own rule, which expects the 360° end point in the data
    and is one step short of 180° otherwise, and, when the side is unknown, passes
    ``norm`` and ``denoise`` swapped, which fails on sinograms with exact-zero air.
    Angles are paired as in :func:`teravox.recon.sinogram.half_acquisition_pairs`.
    ``side``: ``None`` tries both and keeps the sharper correlation minimum.
    ``win_width`` (pixels) is the correlation window, which must be narrower than
    the overlap: default ``clip(N // 10, 16, 100)``.  The median over rows is
    returned with its (majority) side.
    """
    from algotom.prep.calculation import calculate_curvature, search_overlap

    sinos = _as_stack(sinos)
    n = sinos.shape[-1]
    first, opposite = half_acquisition_pairs(sinos.shape[1], theta)
    keep = slice(None, None, max(1, int(np.ceil(first.size / _MAX_ANGLES_360))))
    first, opposite = first[keep], opposite[keep]
    if win_width is None:
        win_width = int(np.clip(n // 10, 16, 100))
    win_width = int(np.clip(win_width, 6, n // 2))  # as algotom's find_overlap
    side_codes = {None: (1, 0), "left": (0,), "right": (1,)}[side]
    found: list[tuple[float, int]] = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of constant windows in air; the metric copes
        for sino in sinos:
            direct, mirrored = sino[first], sino[opposite][:, ::-1]
            best = None
            for code in side_codes:
                metric, offset = search_overlap(
                    direct, mirrored, win_width, code, denoise=True, norm=False,
                    use_overlap=False, ncore=_ncore())
                curvature, pos = calculate_curvature(metric)
                pos = float(pos) + offset
                # overlap width, then the centre: the axis sits in the middle of the overlap
                if code == 1:
                    cor = n - (n - pos + win_width // 2) / 2 - 0.5
                else:
                    cor = (pos + win_width // 2) / 2 - 0.5
                if best is None or curvature > best[0]:
                    best = (curvature, cor, code)
            found.append((best[1], best[2]))
    sides = [s for _, s in found]
    majority = max(set(sides), key=sides.count)
    centre = _median_or_fail([c for c, s in found if s == majority], "360° half-acquisition")
    return centre, ("left" if majority == 0 else "right")


def find_center(
    sinos: np.ndarray, *, theta: np.ndarray | None = None,
    half_acquisition: bool | Literal["off", "auto", "left", "right"] = False,
    search_radius: float = 50.0, guess: float | None = None,
) -> float:
    """Rotation centre in detector columns (0-based, pixel *i* centred at *i*), sub-pixel.

    ``sinos``: a few sinogram rows ``(rows, angles, columns)`` (or one 2-D sinogram)
    after −log.  ``half_acquisition`` False/``"off"``: 180° scan, Vo's method over
    ``guess ± search_radius`` (:func:`find_center_180`).  True/``"auto"``/``"left"``/
    ``"right"``: 360° scan with the axis near an edge (:func:`find_center_360`); the
    side is searched for (``auto``; or taken from ``guess`` when one is given) or
    fixed, and ``search_radius`` does not apply.  ``theta`` in radians.
    """
    mode = {False: "off", True: "auto"}.get(half_acquisition, half_acquisition)  # type: ignore[call-overload]
    if mode == "off":
        return find_center_180(sinos, theta=theta, search_radius=search_radius, guess=guess)
    if mode not in ("auto", "left", "right"):
        raise ParamError(f"half_acquisition: expected off, auto, left or right; got {half_acquisition!r}")
    side = None if mode == "auto" else mode
    if side is None and guess is not None:
        side = "right" if guess > (np.shape(sinos)[-1] - 1) / 2 else "left"
    return find_center_360(sinos, theta=theta, side=side)[0]


def _median_or_fail(centres: list[float], kind: str) -> float:
    finite = [c for c in centres if np.isfinite(c)]
    if not finite:
        raise StageError(
            f"the automatic {kind} centre search failed on all {len(centres)} sinogram(s); "
            "give the centre with --center")
    return float(np.median(finite))
