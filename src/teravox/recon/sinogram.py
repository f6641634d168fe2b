"""Sinogram operations before reconstruction: −log, 360°→180° conversion, padding.

Sinograms are ``(rows, angles, columns)`` float32; the rotation centre is a column
position, 0-based, pixel *i* centred at *i* (see ``docs/architecture.md``).
Stripe removal lives in :mod:`teravox.prep.stripes`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.fft

from teravox.errors import ParamError

HalfSide = Literal["left", "right"]


def minus_log(x: np.ndarray, eps: float = 1e-6, *, inplace: bool = False) -> np.ndarray:
    """Line integrals ``−ln(x)`` of normalised transmissions ``x`` (dimensionless), float32.

    ``x`` is clipped to ``[eps, 1/eps]`` first, so zero or negative transmissions
    (noise, dead pixels) and infinite ones (a zero flat) give finite values
    (±ln(1/eps) ≈ ±13.8 for the default); a NaN is treated like ``eps`` (opaque).
    With ``inplace=True`` and a float32 ``x`` the result overwrites ``x`` (no copy).
    """
    out = x if (inplace and x.dtype == np.float32) else np.empty(x.shape, np.float32)
    # fmax/fmin, not clip: they return the number when the other operand is NaN
    np.fmax(x, np.float32(eps), out=out)
    np.fmin(out, np.float32(1.0 / eps), out=out)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out


def half_acquisition_pairs(n_angles: int, theta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(first, opposite)`` pairing each angle of the first 180° with the angle 180° later.

    Without ``theta`` the angles are taken as equally spaced over 360° (2m angles over
    [0°, 360°), or 2m+1 with the 360° end point), so angle *i* pairs with *i + m*,
    m = n_angles // 2.  With ``theta`` (radians) the first half is every angle below
    θ₀ + π and each is paired with the angle nearest to it + π, which also copes
    with excluded projections.
    """
    if theta is None:
        m = n_angles // 2
        first = np.arange(m)
        return first, first + m
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (n_angles,):
        raise ValueError(f"theta has {theta.size} angles, the sinograms {n_angles}")
    order = np.argsort(theta)
    ts = theta[order]
    step = np.median(np.diff(ts)) if n_angles > 1 else 0.0
    if ts[-1] - ts[0] < 2 * np.pi - 3 * step:
        raise ParamError(
            f"half acquisition needs angles spanning 360°, these span "
            f"{np.degrees(ts[-1] - ts[0]):.1f}°")
    first = order[ts < ts[0] + np.pi - step / 2]
    target = theta[first] + np.pi
    pos = np.clip(np.searchsorted(ts, target), 1, n_angles - 1)
    nearer_left = (target - ts[pos - 1]) < (ts[pos] - target)
    opposite = order[np.where(nearer_left, pos - 1, pos)]
    return first, opposite


def _keys_weights(f: float) -> tuple[float, float, float, float]:
    """Weights of samples i−1, i, i+1, i+2 for the value at i + f (Keys cubic, a = −0.5)."""

    def w(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return 1.5 * d**3 - 2.5 * d**2 + 1
        if d < 2:
            return -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2
        return 0.0

    return w(1 + f), w(f), w(1 - f), w(2 - f)


def _convert_right(top: np.ndarray, bottom: np.ndarray, center: float) -> np.ndarray:
    """180° sinograms from a 360° pair with the axis right of the middle (centre kept)."""
    n = top.shape[-1]
    width = int(np.floor(2 * center + 1e-6)) + 1  # columns J = 0 .. ⌊2c⌋, s = J − c ∈ [−c, c]
    cols = np.arange(width)
    # the opposite view seen from angle θ: p(s, θ) = p(−s, θ + π), i.e. column 2c − J of `bottom`
    base = int(np.floor(2 * center + 1e-6))
    frac = 2 * center - base
    if frac < 1e-6:
        frac = 0.0
    idx = base - cols  # integer part of 2c − J
    if frac == 0.0:
        mirrored = np.take(bottom, np.clip(idx, 0, n - 1), axis=-1)
    else:
        # cubic rather than linear interpolation: linear blurs half a pixel of the opposite view
        mirrored = np.zeros(top.shape[:-1] + (width,), np.float32)
        for k, wk in zip((-1, 0, 1, 2), _keys_weights(frac), strict=True):
            mirrored += np.float32(wk) * np.take(bottom, np.clip(idx + k, 0, n - 1), axis=-1)
    # linear blend over the overlap [2c − n + 1, n − 1]: weight of the direct view 1 → 0
    overlap = 2.0 * (n - 1 - center)
    w_top = np.clip((n - 1 - cols) / overlap, 0.0, 1.0).astype(np.float32)
    out = mirrored
    out *= 1.0 - w_top
    out[..., :n] += w_top[:n] * top
    return out


def convert_360_to_180(
    sinos: np.ndarray, center: float, side: HalfSide | Literal["auto"] | None = None, *,
    theta: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Half-acquisition 360° sinograms → 180° sinograms about twice as wide, and the new centre.

    ``sinos``: ``(rows, angles, columns)``, angles over 360°, rotation axis at column
    ``center`` near the ``side`` edge (``None`` or ``"auto"``: the side of the middle
    the centre is on; a given side must agree with the centre).  Each output angle θ of the first 180° joins the direct view with the
    mirrored view from θ + 180°, blended linearly across their overlap; the opposite
    view is interpolated (cubic) when 2·centre is not an integer.  Output columns span
    ``s ∈ [−d, d]`` with d the axis' distance to the far edge: width ⌊2d⌋ + 1.
    Returns ``(sinos_180, new_center)`` (same centre convention, new columns); the
    output has the first half's angles, ``theta[first]`` of
    :func:`half_acquisition_pairs` (``theta[:out.shape[1]]`` for equally spaced angles).
    """
    if sinos.ndim != 3:
        raise ValueError(f"expected sinograms (rows, angles, columns), got shape {sinos.shape}")
    n = sinos.shape[-1]
    middle = (n - 1) / 2
    center = float(center)
    if side in (None, "auto"):
        side = "right" if center > middle else "left"
    if side not in ("left", "right"):
        raise ParamError(f"half_acquisition: side must be 'left' or 'right', got {side!r}")
    if not 0 < center < n - 1 or center == middle or (side == "right") != (center > middle):
        raise ParamError(
            f"half_acquisition={side!r} needs the rotation centre between the middle "
            f"({middle}) and the {side} edge of the {n} columns, got {center}")
    first, opposite = half_acquisition_pairs(sinos.shape[1], theta)
    top = np.asarray(sinos[:, first], dtype=np.float32)
    bottom = np.asarray(sinos[:, opposite], dtype=np.float32)
    if side == "right":
        return _convert_right(top, bottom, center), center
    # left: mirror the columns (p(−s, θ)), convert as 'right', mirror back
    c_flip = n - 1 - center
    out = _convert_right(top[..., ::-1], bottom[..., ::-1], c_flip)[..., ::-1]
    return np.ascontiguousarray(out), out.shape[-1] - 1 - c_flip


def half_acquisition_width(n_cols: int, center: float, side: HalfSide) -> int:
    """Columns of the 180° sinograms :func:`convert_360_to_180` makes from ``n_cols`` columns
    with the axis at ``center`` near the ``side`` edge: ⌊2d⌋ + 1, d the axis' distance to
    the far edge."""
    reach = float(center) if side == "right" else n_cols - 1 - float(center)
    return int(np.floor(2 * reach + 1e-6)) + 1


def shift_columns(sinos: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each sinogram of ``(rows, angles, columns)`` moved by ``shifts[row]`` columns (sub-pixel,
    cubic spline, edge values beyond the detector): a rotation axis at column c of that row
    ends up at c + shift.  How a tilted axis gets one centre for every row."""
    from scipy.ndimage import shift as nd_shift

    out = np.empty(sinos.shape, np.float32)
    for i, d in enumerate(np.asarray(shifts, dtype=np.float64)):
        if abs(d) < 1e-6:
            out[i] = sinos[i]
        else:
            nd_shift(np.asarray(sinos[i], dtype=np.float32), (0.0, d), output=out[i], order=3, mode="nearest")
    return out


def default_pad_width(n_cols: int) -> int:
    """Default padding on each side, in pixels: about a quarter of ``n_cols``.

    Rounded up so the padded width ``n_cols + 2·width`` has only the prime factors
    2, 3, 5 (and 7, 11), the sizes FFTs are fast for (``scipy.fft.next_fast_len``).
    """
    target = n_cols + 2 * int(np.ceil(n_cols / 4))
    total = scipy.fft.next_fast_len(target)
    while (total - n_cols) % 2:  # the same width on both sides
        total = scipy.fft.next_fast_len(total + 1)
    return (total - n_cols) // 2


def pad(sinos: np.ndarray, width: int, mode: Literal["edge", "zero", "none"] = "edge") -> np.ndarray:
    """Pad the columns (last axis) of ``sinos`` by ``width`` pixels on both sides.

    ``edge`` repeats the outermost column (a truncated object does not jump to zero,
    which would ring in the filtered projections), ``zero`` pads with 0, ``none``
    returns ``sinos`` unchanged.  The caller shifts the centre by ``width`` (not for
    ``none``).
    """
    if width < 0:
        raise ValueError(f"pad width must be >= 0, got {width}")
    if mode == "none" or width == 0:
        return sinos
    if mode not in ("edge", "zero"):
        raise ParamError(f"pad: expected one of none, edge, zero; got {mode!r}")
    widths = [(0, 0)] * (sinos.ndim - 1) + [(width, width)]
    if mode == "edge":
        return np.pad(sinos, widths, mode="edge")
    return np.pad(sinos, widths, mode="constant")
