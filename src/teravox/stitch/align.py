"""Where each offset scan sits: refine the motor positions from the images (pure functions).

Every pair of scans that overlap (by the motor positions, within the search window) is
measured, and all positions are then solved for at once:

1. **Integer search** (:func:`align_pair`), on the flat/dark-normalised first projection and
   the one at the other end of the scan (last, or 180°) together: every integer shift
   (dx, dy) of a window (default 20 × 20 px, i.e. ±10 px on both axes) around the motor
   guess is scored by the mean squared difference over the overlap, and the best one
   refined by a paraboloid through the 3 × 3 costs around it.  A minimum on the window's
   edge moves the window, one that does not stand out widens it (``max_extend`` times in
   all); an axis along which the cost does not rise significantly 2 px either side of the
   minimum (``min_significance``) has no features to align on and is left to the motors.
2. **Sub-pixel refinement** (:func:`refine`), on each of several projections spread over
   the scan: Gauss–Newton on the shift and a gain (b × gain ≈ a: an exposure or flat-field
   difference), both images smoothed by a 0.8 px Gaussian and the right one interpolated by
   cubic splines (scipy.ndimage).  The paraboloid on the integer grid is biased by up to
   ~0.1 px; this converges to the least-squares shift, with a standard error from the
   residual and the image gradients.
   Each projection gives one measurement of the pair.
3. **Global fit** (:func:`solve`): weighted least squares for every scan's (dx, dy) relative
   to scan 0 from all measurements (weight 1/σ²) and the motor positions (a weak prior,
   σ = ``prior_px``, which decides an axis no image pins down); the measurement whose
   residual is largest in units of its σ is rejected while that exceeds ``max_z``, and the
   fit repeated.  Per pair, the residuals of its measurements are reported; the scans'
   gains are solved in the same way (logarithms, scan 0 at 1).

Shifts are in pixels: the right scan's pixel (row r, column c) sits at (r + dy, c + dx) of
the left scan's frame.  The pair-by-pair chaining of earlier versions (:func:`chain`) is
kept as the reference ``benchmarks/stitch.py`` compares against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from teravox.errors import PlanError

WINDOW_PX = 20            # search window side: shifts guess ± WINDOW_PX // 2 on both axes
MIN_OVERLAP_PX = 4        # fewest overlapping columns for a shift to be scored
MAX_EXTEND = 2            # times the window may be moved (minimum on its edge) or widened
MIN_SIGNIFICANCE = 5.0    # noise units the cost must rise by 2 px either side of the minimum
TOLERANCE_PX = 1.0        # chained reference: first vs other end, warn beyond this disagreement
ALIGN_PROJECTIONS = 16    # projections measured per pair for the sub-pixel shift
PRIOR_PX = 10.0           # standard deviation of a motor position (the prior of the fit)
MAX_Z = 6.0               # reject a measurement whose residual exceeds this many σ
FLOOR_PX = 0.02           # added (in quadrature) to each σ: interpolation and model error
GAIN_WARN = 0.02          # a scan whose gain differs more than this from scan 0's is named
PAIR_OVERLAP_PX = 16      # non-neighbours are measured when they overlap by this much (motors, less half a window)


@dataclass
class PairResult:
    """The integer search for the right scan's shift relative to the left one (pixels)."""

    guess: tuple[float, float]           # (dx, dy) from the motors
    dx: float                            # found (sub-pixel) shift, columns
    dy: float                            # found (sub-pixel) shift, rows
    cost: np.ndarray                     # (ny, nx) mean squared difference, NaN: too little overlap
    origin: tuple[int, int]              # integer (dx, dy) of cost[0, 0]
    cost_min: float                      # cost at the best integer shift
    curvature: tuple[float, float]       # second difference of the cost at the minimum, (x, y), per px²
    significance: tuple[float, float]    # noise units the cost rises by 2 px off, weaker side, (x, y)
    determined: tuple[bool, bool]        # (x, y): did the images pin this axis down?
    extended: int = 0                    # times the window was moved or widened
    overlap_px: tuple[int, int] = (0, 0)  # (columns, rows) overlapping at the best shift

    def to_dict(self) -> dict[str, Any]:
        return {"guess": [float(g) for g in self.guess], "dx": float(self.dx), "dy": float(self.dy),
                "cost_min": _num(self.cost_min), "curvature": [_num(c) for c in self.curvature],
                "significance": [_num(s) for s in self.significance],
                "determined": [bool(d) for d in self.determined], "extended": int(self.extended),
                "overlap_px": [int(v) for v in self.overlap_px],
                "cost_origin": [int(v) for v in self.origin],
                "cost": [[_num(v) for v in row] for row in np.asarray(self.cost, dtype=np.float64)]}


def _num(v: float | None) -> float | None:
    """JSON-able number: NaN/inf become None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# -- the integer search ---------------------------------------------------------------------
def _stack(a: np.ndarray) -> np.ndarray:
    """A projection (rows, cols) or a stack of them as a float32 stack (frames, rows, cols)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D projection or a stack of them, got shape {a.shape}")
    return a[None] if a.ndim == 2 else a


def _overlap(na: int, nb: int, s: int) -> tuple[int, int]:
    """[start, stop) in A of where B, shifted by s, overlaps A (1-D)."""
    return max(0, s), min(na, s + nb)


def _cost_and_error(a: np.ndarray, b: np.ndarray, xs: Sequence[int], ys: Sequence[int],
                    min_cols: int, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared difference over the overlap for every shift, and its standard error."""
    (ra, ca), (rb, cb) = a.shape[-2:], b.shape[-2:]
    cost = np.full((len(ys), len(xs)), np.nan)
    err = np.full((len(ys), len(xs)), np.nan)
    for iy, y in enumerate(ys):
        y = int(y)
        r0, r1 = _overlap(ra, rb, y)
        if r1 - r0 < min_rows:
            continue
        a_rows, b_rows = a[..., r0:r1, :], b[..., r0 - y:r1 - y, :]
        for ix, x in enumerate(xs):
            x = int(x)
            c0, c1 = _overlap(ca, cb, x)
            if c1 - c0 < min_cols:
                continue
            sq = np.square(a_rows[..., c0:c1] - b_rows[..., c0 - x:c1 - x], dtype=np.float64)
            cost[iy, ix] = float(sq.mean())
            err[iy, ix] = float(sq.std()) / math.sqrt(sq.size)
    return cost, err


def cost_map(a: np.ndarray, b: np.ndarray, xs: Sequence[int], ys: Sequence[int], *,
             min_cols: int = MIN_OVERLAP_PX, min_rows: int = 1) -> np.ndarray:
    """Mean squared difference of ``a`` and ``b`` (2-D, or stacks of the same projections of
    both scans, same units) over their overlap when b's
    pixel (r, c) sits at a's (r + y, c + x), for every y in ``ys`` (rows of the result) and x in
    ``xs`` (columns); NaN where fewer than ``min_cols`` columns or ``min_rows`` rows overlap."""
    return _cost_and_error(_stack(a), _stack(b), xs, ys, min_cols, min_rows)[0]


def _best(cost: np.ndarray, err: np.ndarray) -> tuple[int, int]:
    """The integer minimum: the lowest cost plus two standard errors (so that a few columns of
    chance agreement at the window's far end cannot beat a well-measured overlap), then
    downhill on the cost itself to its local minimum (which the sub-pixel fit needs)."""
    iy, ix = np.unravel_index(int(np.nanargmin(cost + 2.0 * err)), cost.shape)
    while True:
        j0, j1, i0, i1 = max(iy - 1, 0), min(iy + 2, cost.shape[0]), max(ix - 1, 0), min(ix + 2, cost.shape[1])
        patch = cost[j0:j1, i0:i1]
        jy, jx = np.unravel_index(int(np.nanargmin(patch)), patch.shape)
        if (j0 + jy, i0 + jx) == (iy, ix) or not patch[jy, jx] < cost[iy, ix]:
            return int(iy), int(ix)
        iy, ix = j0 + int(jy), i0 + int(jx)


def _parabola(cm: float, c0: float, cp: float) -> tuple[float, float]:
    """Vertex offset (clipped to ±0.5 px) and second difference of a parabola through 3 points."""
    curv = cm - 2.0 * c0 + cp
    if not (math.isfinite(curv) and curv > 0):
        return 0.0, curv if math.isfinite(curv) else math.nan
    return float(np.clip((cm - cp) / (2.0 * curv), -0.5, 0.5)), curv


def _paraboloid(c3: np.ndarray) -> tuple[float, float] | None:
    """Vertex (dx, dy) of the quadratic surface through a 3 × 3 patch of the cost around its
    minimum — axis terms from the central row and column (the parabolas), the cross term from
    the corners — or None when the patch is incomplete or the surface has no minimum there.

    The cross term matters: when the valley of the cost runs diagonally (a fractional shift
    on both axes), the axis parabolas through the integer minimum are pulled off it.  The
    axis terms are not least-squares over the patch: a steep, V-shaped profile along one
    axis would then leak into the other.
    """
    if c3.shape != (3, 3) or not np.all(np.isfinite(c3)):
        return None
    c = c3.astype(np.float64)
    gx, gy = (c[1, 2] - c[1, 0]) / 2.0, (c[2, 1] - c[0, 1]) / 2.0
    hxx, hyy = c[1, 2] - 2.0 * c[1, 1] + c[1, 0], c[2, 1] - 2.0 * c[1, 1] + c[0, 1]
    hxy = (c[2, 2] - c[2, 0] - c[0, 2] + c[0, 0]) / 4.0
    det = hxx * hyy - hxy * hxy
    if not (hxx > 0 and det > 0):
        return None
    vx = (-gx * hyy + gy * hxy) / det
    vy = (-gy * hxx + gx * hxy) / det
    if abs(vx) > 1 or abs(vy) > 1:  # the vertex is beyond the patch: trust the axis parabolas
        return None
    return float(np.clip(vx, -0.5, 0.5)), float(np.clip(vy, -0.5, 0.5))


def _rise_t(a: np.ndarray, b: np.ndarray, x: int, y: int, axis: int, min_cols: int, min_rows: int) -> float:
    """How significantly the cost rises from shift (x, y) to the shifts 2 px away along ``axis``
    (0: x, 1: y), in units of the rise that pixel noise alone would give; the weaker side counts.
    Two pixels, not one: a true shift half-way between two integers makes the cost at the
    nearer neighbour equal to the minimum's; the shifts 2 px away are ≥ 1.5 px off.

    Both costs are taken on the region the two shifts share.  With white noise of variance
    σ² in each image, the residual at the best shift has variance 2σ² and the per-pixel
    rise (moved² − base²) has variance 12σ⁴; so the noise on the mean rise over N pixels is
    √3·var(base)/√N.  Differences other than noise only inflate var(base): conservative.
    """
    (ra, ca), (rb, cb) = a.shape[-2:], b.shape[-2:]
    ts = []
    for step in (-2, 2):
        x2, y2 = (x + step, y) if axis == 0 else (x, y + step)
        r0 = max(_overlap(ra, rb, y)[0], _overlap(ra, rb, y2)[0])
        r1 = min(_overlap(ra, rb, y)[1], _overlap(ra, rb, y2)[1])
        c0 = max(_overlap(ca, cb, x)[0], _overlap(ca, cb, x2)[0])
        c1 = min(_overlap(ca, cb, x)[1], _overlap(ca, cb, x2)[1])
        if r1 - r0 < min_rows or c1 - c0 < min_cols:
            return math.nan
        base = (a[..., r0:r1, c0:c1] - b[..., r0 - y:r1 - y, c0 - x:c1 - x]).astype(np.float64)
        moved = (a[..., r0:r1, c0:c1] - b[..., r0 - y2:r1 - y2, c0 - x2:c1 - x2]).astype(np.float64)
        rise = float(np.mean(np.square(moved)) - np.mean(np.square(base)))
        noise = math.sqrt(3.0) * float(np.var(base)) / math.sqrt(base.size)
        if noise > 0:
            ts.append(rise / noise)
        else:  # identical images: any rise at all is certain
            ts.append(math.inf if rise > 0 else 0.0)
    return min(ts)


@dataclass
class _Window:
    """One integer search: the shifts tried, their costs and standard errors, the best one."""

    xs: np.ndarray
    ys: np.ndarray
    cost: np.ndarray
    err: np.ndarray
    iy: int
    ix: int

    @property
    def best(self) -> tuple[int, int]:
        return int(self.xs[self.ix]), int(self.ys[self.iy])

    @property
    def on_edge(self) -> bool:
        return self.ix in (0, self.xs.size - 1) or self.iy in (0, self.ys.size - 1)


def _search(a: np.ndarray, b: np.ndarray, cx: int, cy: int, hx: int, hy: int, min_cols: int,
            min_rows: int) -> _Window | None:
    xs, ys = np.arange(cx - hx, cx + hx + 1), np.arange(cy - hy, cy + hy + 1)
    cost, err = _cost_and_error(a, b, xs, ys, min_cols, min_rows)
    if np.all(np.isnan(cost)):
        return None
    iy, ix = _best(cost, err)
    return _Window(xs, ys, cost, err, iy, ix)


def align_pair(a: np.ndarray, b: np.ndarray, guess_dx: float, guess_dy: float = 0.0, *,
               window_px: int = WINDOW_PX, min_overlap_px: int = MIN_OVERLAP_PX,
               max_extend: int = MAX_EXTEND, min_significance: float = MIN_SIGNIFICANCE,
               names: tuple[str, str] = ("left scan", "right scan")) -> PairResult:
    """Find where ``b`` (rows, cols) sits in ``a``'s frame near the motor guess (pixels).

    ``a`` and ``b`` may also be stacks (frames, rows, cols) of the same projections of both
    scans: their costs are then averaged over the frames.

    The integer search covers ``guess ± window_px // 2`` on both axes.  Up to
    ``max_extend`` times, a minimum on the window's edge moves the window there, and a
    window whose minimum does not stand out along the columns is widened along them (the
    motors of two neighbours may each be off by a window's half-width).  The best shift is
    refined by a paraboloid through the 3 × 3 costs around it (parabolas per axis as
    fallback).  An axis whose cost does not rise by ``min_significance`` noise units 2 px
    either side of the minimum is marked undetermined.  PlanError naming the scans when no
    shift of the window leaves ``min_overlap_px`` columns (and half the rows) in common.
    """
    a, b = _stack(a), _stack(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"expected the same projections of both scans, got shapes {a.shape} and {b.shape}")
    half = max(1, int(window_px) // 2)
    min_rows = max(1, math.ceil(0.5 * min(a.shape[1], b.shape[1])))
    gx, gy = int(round(guess_dx)), int(round(guess_dy))
    win = _search(a, b, gx, gy, half, half, min_overlap_px, min_rows)
    if win is None:
        raise PlanError(
            f"{names[1]}: its motor position puts it {guess_dx:+.1f} px from {names[0]}, and no shift "
            f"within ±{half} px of that leaves {min_overlap_px} columns of overlap between their "
            f"{a.shape[2]}- and {b.shape[2]}-column images; check the position (and its unit, mm or px) and the pixel size")
    extended, hx = 0, half
    while extended < max_extend:
        if win.on_edge:  # a minimum on the edge is not a minimum: look beyond it
            nxt = _search(a, b, *win.best, hx, half, min_overlap_px, min_rows)
        elif not _rise_t(a, b, *win.best, 0, min_overlap_px, min_rows) >= min_significance:  # NaN too
            hx = half * (extended + 2)  # nothing stands out: widen along the columns
            nxt = _search(a, b, gx, gy, hx, half, min_overlap_px, min_rows)
        else:
            break
        if nxt is None:
            break
        win, extended = nxt, extended + 1
    cost, iy, ix = win.cost, win.iy, win.ix
    bx, by = win.best

    def at(j: int, i: int) -> float:
        return float(cost[j, i]) if 0 <= j < cost.shape[0] and 0 <= i < cost.shape[1] else math.nan

    fx, curv_x = _parabola(at(iy, ix - 1), at(iy, ix), at(iy, ix + 1))
    fy, curv_y = _parabola(at(iy - 1, ix), at(iy, ix), at(iy + 1, ix))
    t_x = _rise_t(a, b, bx, by, 0, min_overlap_px, min_rows)
    t_y = _rise_t(a, b, bx, by, 1, min_overlap_px, min_rows)
    det_x = bool(math.isfinite(curv_x) and curv_x > 0 and t_x >= min_significance)
    det_y = bool(math.isfinite(curv_y) and curv_y > 0 and t_y >= min_significance)
    if det_x and det_y and 1 <= iy < cost.shape[0] - 1 and 1 <= ix < cost.shape[1] - 1:
        vertex = _paraboloid(cost[iy - 1:iy + 2, ix - 1:ix + 2])
        if vertex is not None:
            fx, fy = vertex
    c0, c1 = _overlap(a.shape[2], b.shape[2], bx)
    r0, r1 = _overlap(a.shape[1], b.shape[1], by)
    return PairResult(guess=(float(guess_dx), float(guess_dy)), dx=bx + fx, dy=by + fy, cost=cost,
                      origin=(int(win.xs[0]), int(win.ys[0])), cost_min=float(cost[iy, ix]),
                      curvature=(curv_x, curv_y), significance=(t_x, t_y), determined=(det_x, det_y),
                      extended=extended, overlap_px=(c1 - c0, r1 - r0))


# -- sub-pixel refinement -------------------------------------------------------------------
REFINE_MARGIN = 2     # overlap pixels left out at each edge, so every sample lies inside b
REFINE_STEP_PX = 1.5  # a refined shift this far from the integer search's is not trusted
SEARCH_SIGMA_PX = 0.25  # σ of the integer search's paraboloid, when no projection can be refined
_H = 0.01             # finite-difference step of the spline derivative, px
SMOOTH_PX = 0.8       # Gaussian smoothing (σ, px) of both images before the sub-pixel fit


@dataclass
class Refined:
    """Least-squares sub-pixel shift of one pair on one projection (pixels)."""

    dx: float
    dy: float
    gain: float                     # b × gain ≈ a over the overlap
    sigma: tuple[float, float]      # standard errors of (dx, dy); inf for an axis held fixed
    rms: float                      # residual RMS after the fit, image units


def refine(a: np.ndarray, b: np.ndarray, start: tuple[float, float], *,
           fix: tuple[bool, bool] = (False, False), iterations: int = 15) -> Refined | None:
    """The (dx, dy, gain) minimising Σ (a − gain · b(r − dy, c − dx))² over the overlap, from
    ``start`` = (dx, dy); ``fix`` holds an axis at its start (one the images do not determine).
    None when the overlap is too small or the fit leaves the neighbourhood of ``start`` (more
    than 1.5 px): the integer search is then all there is.

    Both images are first smoothed by a Gaussian of ``SMOOTH_PX``: interpolating ``b`` averages
    its noise by an amount that depends on the fractional shift, which pulls an unsmoothed fit
    towards half-pixel shifts (by up to 0.1 px on noisy data); after smoothing that effect is
    small.  The standard errors allow for the noise correlation the smoothing makes.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    (ra, ca), (rb, cb) = a.shape, b.shape
    ix, iy = int(round(start[0])), int(round(start[1]))
    m = REFINE_MARGIN
    r0, r1 = max(0, iy) + m, min(ra, iy + rb) - m
    c0, c1 = max(0, ix) + m, min(ca, ix + cb) - m
    if r1 - r0 < 1 or c1 - c0 < 2 or (r1 - r0) * (c1 - c0) < 8:
        return None
    pad = m + 4  # beyond the samples' reach: the smoothing's edge stays outside them
    ar0, ar1, ac0, ac1 = max(0, r0 - pad), min(ra, r1 + pad), max(0, c0 - pad), min(ca, c1 + pad)
    target = ndimage.gaussian_filter(a[ar0:ar1, ac0:ac1], SMOOTH_PX, mode="nearest")
    target = target[r0 - ar0:r1 - ar0, c0 - ac0:c1 - ac0].ravel()
    br0, br1 = max(0, r0 - iy - pad), min(rb, r1 - iy + pad)
    bc0, bc1 = max(0, c0 - ix - pad), min(cb, c1 - ix + pad)
    coef = ndimage.spline_filter(ndimage.gaussian_filter(b[br0:br1, bc0:bc1], SMOOTH_PX, mode="nearest"),
                                 order=3)
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    rr -= br0
    cc -= bc0

    def sample(dx: float, dy: float) -> np.ndarray:
        return ndimage.map_coordinates(coef, [rr - dy, cc - dx], order=3, prefilter=False).ravel()

    free = [i for i in (0, 1) if not fix[i]]
    s = np.array(start, dtype=np.float64)
    base = sample(*s)
    gain = float(target.mean() / base.mean()) if base.mean() != 0 else 1.0

    def jacobian(vals: np.ndarray) -> np.ndarray:
        cols = []
        for i in free:  # d b(r − dy, c − dx) / d(dx, dy)
            e = np.zeros(2)
            e[i] = _H
            cols.append(gain * (sample(*(s + e)) - sample(*(s - e))) / (2 * _H))
        return np.stack([*cols, vals], axis=1)

    for _ in range(iterations):
        jac = jacobian(base)
        step, *_ = np.linalg.lstsq(jac, target - gain * base, rcond=None)
        s[free] += step[:-1]
        gain += float(step[-1])
        if np.any(np.abs(s - np.asarray(start)) > REFINE_STEP_PX) or not gain > 0:
            return None
        base = sample(*s)
        if np.all(np.abs(step[:-1]) < 1e-4):
            break
    resid = target - gain * base
    jac = jacobian(base)
    # the smoothed noise is correlated over ~4π·SMOOTH_PX² pixels: that many fewer independent ones
    var = float(resid @ resid) / max(1, resid.size - jac.shape[1]) * max(1.0, 4 * math.pi * SMOOTH_PX**2)
    try:
        cov = var * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        return None
    sigma = [math.inf, math.inf]
    for k, i in enumerate(free):
        sigma[i] = math.sqrt(max(cov[k, k], 0.0))
    return Refined(float(s[0]), float(s[1]), float(gain), (sigma[0], sigma[1]), math.sqrt(float(np.mean(resid**2))))


# -- the measurements of a pair ------------------------------------------------------------------
@dataclass
class Measurement:
    """One pair on one projection: the right scan's (dx, dy) in the left one's frame (pixels)."""

    projection: int                      # projection index (or frame of the stack)
    dx: float
    dy: float
    sigma: tuple[float, float]           # standard errors; inf: this axis was not measured
    gain: float
    rms: float
    used: list[bool] = field(default_factory=lambda: [True, True])  # per axis, after outlier rejection
    residual: list[float] = field(default_factory=lambda: [math.nan, math.nan])  # measured − fit

    def to_dict(self) -> dict[str, Any]:
        return {"projection": int(self.projection), "dx": float(self.dx), "dy": float(self.dy),
                "sigma": [_num(v) for v in self.sigma], "gain": float(self.gain), "rms": _num(self.rms),
                "used": [bool(u) for u in self.used], "residual": [_num(v) for v in self.residual]}


@dataclass
class PairFit:
    """Everything measured between two scans, and (after :func:`solve`) how it fits."""

    left: int
    right: int
    search: PairResult                   # the integer search (first and other-end projections)
    measurements: list[Measurement]
    fit: tuple[float, float] = (math.nan, math.nan)          # solved right − left, (dx, dy)
    residual_rms: tuple[float, float] = (math.nan, math.nan)  # of the used measurements, (x, y)
    rejected: int = 0                    # measurement axes rejected as outliers

    def to_dict(self) -> dict[str, Any]:
        return {"left": self.left, "right": self.right, "search": self.search.to_dict(),
                "fit": [_num(v) for v in self.fit], "residual_rms": [_num(v) for v in self.residual_rms],
                "rejected": int(self.rejected), "n_measurements": len(self.measurements),
                "measurements": [m.to_dict() for m in self.measurements]}


def measure_pair(a: np.ndarray, b: np.ndarray, left: int, right: int, guess: tuple[float, float], *,
                 search_frames: Sequence[int] = (0,), projections: Sequence[int] | None = None,
                 names: tuple[str, str] = ("left scan", "right scan"), col_offsets: tuple[int, int] = (0, 0),
                 window_px: int = WINDOW_PX, min_overlap_px: int = MIN_OVERLAP_PX,
                 max_extend: int = MAX_EXTEND, min_significance: float = MIN_SIGNIFICANCE) -> PairFit:
    """Measure scan ``right`` (stack ``b``) against scan ``left`` (stack ``a``): stacks
    (frames, rows, cols) of the same projections of both, which may be strips starting at
    columns ``col_offsets`` of the two scans; ``guess`` and the results are in whole-scan
    columns.  The integer search runs on ``search_frames`` together; each frame is then refined
    on its own (one measurement each), from its own search when it is not near the pair's shift
    (the sample moved?); when no frame can be refined, the search's value counts with σ =
    ``SEARCH_SIGMA_PX``.  ``projections`` label the frames (default 0, 1, ...)."""
    a, b = _stack(a), _stack(b)
    labels = list(range(a.shape[0])) if projections is None else [int(p) for p in projections]
    frames = list(dict.fromkeys(int(k) for k in search_frames))
    off = col_offsets[0] - col_offsets[1]  # whole-scan dx = strip dx + off
    search = align_pair(a[frames], b[frames], guess[0] - off, guess[1], window_px=window_px,
                        min_overlap_px=min_overlap_px, max_extend=max_extend,
                        min_significance=min_significance, names=names)
    search.guess = (float(guess[0]), float(guess[1]))
    search.dx += off
    search.origin = (search.origin[0] + off, search.origin[1])
    fix = (not search.determined[0], not search.determined[1])
    ms = []
    if not all(fix):
        start = (search.dx - off if not fix[0] else guess[0] - off, search.dy if not fix[1] else guess[1])
        for k in range(a.shape[0]):
            r = refine(a[k], b[k], start, fix=fix)
            if r is None and k not in frames:  # not near the pair's shift: a search of its own
                try:
                    own = align_pair(a[k], b[k], guess[0] - off, guess[1], window_px=window_px,
                                     min_overlap_px=min_overlap_px, max_extend=max_extend,
                                     min_significance=min_significance, names=names)
                except PlanError:
                    own = None
                if own is not None and own.determined == search.determined:
                    r = refine(a[k], b[k], (own.dx, own.dy), fix=fix)
            if r is not None:
                ms.append(Measurement(labels[k], r.dx + off, r.dy, r.sigma, r.gain, r.rms))
        if not ms:
            sig = tuple(math.inf if f else SEARCH_SIGMA_PX for f in fix)
            ms.append(Measurement(labels[frames[0]], search.dx, search.dy, sig, 1.0, math.nan))  # type: ignore[arg-type]
    return PairFit(left, right, search, ms)


def overlapping_pairs(guesses: Sequence[tuple[float, float]], shapes: Sequence[tuple[int, int]], *,
                      window_px: int = WINDOW_PX, min_overlap_px: int = PAIR_OVERLAP_PX) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, to measure: scans in position order, with (dx, dy) guesses and
    (rows, cols) shapes.  Neighbours always; others where the motors say they share at least
    ``min_overlap_px`` columns even half a window further apart, and half their rows."""
    half = window_px // 2
    out = []
    for i in range(len(guesses)):
        for j in range(i + 1, len(guesses)):
            (xi, yi), (xj, yj) = guesses[i], guesses[j]
            (ri, ci), (rj, cj) = shapes[i], shapes[j]
            cols = min(xi + ci, xj + cj) - max(xi, xj) - half
            rows = min(yi + ri, yj + rj) - max(yi, yj) - half
            if j == i + 1 or (cols >= min_overlap_px and rows >= 0.5 * min(ri, rj)):
                out.append((i, j))
    return out


# -- the global fit ----------------------------------------------------------------------------
@dataclass
class ScanPlace:
    """One scan's place in the stitched field of view, relative to scan 0 (pixels)."""

    index: int
    name: str
    guess: tuple[float, float]           # (dx, dy) from the motors
    dx: float
    dy: float
    sigma: tuple[float, float]           # standard errors of the fit
    gain: float                          # the scan's normalised values are multiplied by this
    how: str                             # "reference", "images", "motor", or per axis

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "guess": [float(g) for g in self.guess],
                "dx": float(self.dx), "dy": float(self.dy), "sigma": [_num(v) for v in self.sigma],
                "gain": float(self.gain), "how": self.how}


@dataclass
class Placement:
    """The solved positions, the pairs behind them, and what to warn about."""

    scans: list[ScanPlace]
    pairs: list[PairFit]
    warnings: list[str] = field(default_factory=list)
    method: str = "global weighted least squares"

    @property
    def shifts(self) -> list[tuple[float, float]]:
        """(dx, dy) of every scan relative to scan 0."""
        return [(s.dx, s.dy) for s in self.scans]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "scans": [s.to_dict() for s in self.scans],
                "pairs": [p.to_dict() for p in self.pairs], "warnings": list(self.warnings)}


def _connected(n: int, links: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which scans the links join to scan 0."""
    seen, todo = {0}, [0]
    adj: dict[int, set[int]] = {}
    for i, j in links:
        adj.setdefault(i, set()).add(j)
        adj.setdefault(j, set()).add(i)
    while todo:
        for k in adj.get(todo.pop(), ()):
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return np.array([i in seen for i in range(n)])


def _lsq(n: int, rows: Sequence[tuple[int, int, float, float]], prior: np.ndarray,
         prior_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions p (p[0] = 0) and their standard errors minimising Σ ((p_j − p_i − d)/σ)² over
    ``rows`` (i, j, d, σ) plus Σ ((p_k − prior_k)/prior_sigma)²."""
    m = n - 1
    normal = np.eye(m) / prior_sigma**2
    rhs = (prior[1:] - prior[0]) / prior_sigma**2
    for i, j, d, s in rows:
        w = 1.0 / s**2
        v = np.zeros(n)
        v[j], v[i] = 1.0, -1.0
        v = v[1:]
        normal += w * np.outer(v, v)
        rhs += w * d * v
    cov = np.linalg.inv(normal)
    return np.concatenate([[0.0], cov @ rhs]), np.concatenate([[0.0], np.sqrt(np.diag(cov))])


def solve(pairs: Sequence[PairFit], guesses: Sequence[tuple[float, float]], names: Sequence[str], *,
          prior_px: float = PRIOR_PX, max_z: float = MAX_Z, floor_px: float = FLOOR_PX) -> Placement:
    """Every scan's (dx, dy) relative to scan 0 from all pairs' measurements at once.

    Per axis: weighted least squares (weights 1/(σ² + floor²)) with the motor guesses as a
    prior of standard deviation ``prior_px``; while the worst residual exceeds ``max_z`` of
    its σ, that measurement is rejected and the fit repeated.  Gains: least squares of the
    logarithms, scan 0 at 1.  Fills each pair's fit, residuals and rejections in place.
    """
    n = len(guesses)
    prior = np.asarray(guesses, dtype=np.float64).reshape(n, 2)
    pos, sig = np.zeros((n, 2)), np.zeros((n, 2))
    warns: list[str] = []
    hows = []
    for axis, word in ((0, "dx"), (1, "dy")):
        active = [(p, m) for p in pairs for m in p.measurements if math.isfinite(m.sigma[axis])]
        while True:
            rows = [(p.left, p.right, (m.dx, m.dy)[axis], math.hypot(m.sigma[axis], floor_px)) for p, m in active]
            x, s = _lsq(n, rows, prior[:, axis], prior_px)
            z = [((m.dx, m.dy)[axis] - (x[p.right] - x[p.left])) / r[3] for (p, m), r in zip(active, rows, strict=True)]
            worst = int(np.argmax(np.abs(z))) if z else -1
            if worst < 0 or abs(z[worst]) <= max_z:
                break
            p, m = active.pop(worst)
            m.used[axis] = False
            p.rejected += 1
            warns.append(f"{names[p.right]} against {names[p.left]}: the {word} measured on projection "
                         f"{m.projection} ({(m.dx, m.dy)[axis]:+.2f} px) is {abs(z[worst]):.0f} σ from the fit "
                         f"and was rejected (did the sample move, or an artefact cross the overlap?)")
        pos[:, axis], sig[:, axis] = x, s
        for p in pairs:
            for m in p.measurements:
                if not math.isfinite(m.sigma[axis]):
                    m.used[axis] = False
                m.residual[axis] = (m.dx, m.dy)[axis] - (x[p.right] - x[p.left])
        hows.append(_connected(n, [(p.left, p.right) for p, _ in active]))
    # gains: log s_right − log s_left = log gain_m over the measurements kept on some axis
    rows = [(p.left, p.right, math.log(m.gain), 1.0) for p in pairs for m in p.measurements
            if any(m.used) and m.gain > 0]
    log_gain, _ = _lsq(n, rows, np.zeros(n), 1e3)
    gains = np.exp(log_gain)
    for p in pairs:
        p.fit = (float(pos[p.right, 0] - pos[p.left, 0]), float(pos[p.right, 1] - pos[p.left, 1]))
        p.residual_rms = tuple(  # type: ignore[assignment]
            math.sqrt(float(np.mean([m.residual[a] ** 2 for m in p.measurements if m.used[a]])))
            if any(m.used[a] for m in p.measurements) else math.nan for a in (0, 1))
        if p.search.extended:
            warns.append(f"{names[p.right]} against {names[p.left]}: the ±{(p.search.cost.shape[0] - 1) // 2} px "
                         f"window around the motor guess ({p.search.guess[0]:+.1f} px) held no clear minimum; it "
                         f"was moved or widened {p.search.extended} time(s) to find {p.search.dx:+.2f} px: check "
                         f"the motor positions")
    scans = [ScanPlace(0, names[0], (0.0, 0.0), 0.0, 0.0, (0.0, 0.0), 1.0, "reference")]
    for i in range(1, n):
        by_axis = ["images" if hows[a][i] else "motor" for a in (0, 1)]
        how = by_axis[0] if by_axis[0] == by_axis[1] else f"{by_axis[0]} (x), {by_axis[1]} (y)"
        for a, word in ((0, "column"), (1, "row")):
            if not hows[a][i]:
                warns.append(f"{names[i]}: no overlap pins down its {word} position (no features, or all "
                             f"measurements rejected); the motor {'position' if a == 0 else 'guess'} "
                             f"{pos[i, a]:+.2f} px is kept")
        scans.append(ScanPlace(i, names[i], (float(prior[i, 0] - prior[0, 0]), float(prior[i, 1] - prior[0, 1])),
                               float(pos[i, 0]), float(pos[i, 1]), (float(sig[i, 0]), float(sig[i, 1])),
                               float(gains[i]), how))
        if abs(gains[i] - 1) > GAIN_WARN:
            warns.append(f"{names[i]}: its normalised values are {100 * (1 / gains[i] - 1):+.1f} % off scan "
                         f"{names[0]}'s in the overlaps (exposure or flats differ); multiplied by "
                         f"{gains[i]:.4f}")
    return Placement(scans, list(pairs), warns)


def align_scans(frames: Sequence[np.ndarray], guesses: Sequence[tuple[float, float] | float], *,
                names: Sequence[str] | None = None, search_frames: Sequence[int] = (0, -1),
                projections: Sequence[int] | None = None, window_px: int = WINDOW_PX,
                min_overlap_px: int = MIN_OVERLAP_PX, max_extend: int = MAX_EXTEND,
                min_significance: float = MIN_SIGNIFICANCE, prior_px: float = PRIOR_PX,
                max_z: float = MAX_Z) -> Placement:
    """Align scans given in position order by stacks of their normalised projections (frames,
    rows, cols; the same projections of every scan, or one 2-D projection each).

    ``guesses`` are the motor positions in pixels, (dx, dy) or dx alone, any origin;
    ``search_frames`` the frames of the integer search (default the first and the last).
    """
    n = len(frames)
    if n < 2 or len(guesses) != n:
        raise ValueError(f"need ≥ 2 scans with one guess each; got {n} stacks, {len(guesses)} guesses")
    stacks = [_stack(f) for f in frames]
    g = np.array([(v, 0.0) if np.isscalar(v) else tuple(v) for v in guesses], dtype=np.float64)
    g -= g[0]
    names = list(names) if names is not None else [f"scan {i}" for i in range(n)]
    k = stacks[0].shape[0]
    search = [f % k for f in search_frames]
    pairs = [measure_pair(stacks[i], stacks[j], i, j, (g[j, 0] - g[i, 0], g[j, 1] - g[i, 1]),
                          search_frames=search, projections=projections, names=(names[i], names[j]),
                          window_px=window_px, min_overlap_px=min_overlap_px, max_extend=max_extend,
                          min_significance=min_significance)
             for i, j in overlapping_pairs([tuple(v) for v in g], [s.shape[1:] for s in stacks],
                                           window_px=window_px)]
    return solve(pairs, [tuple(v) for v in g], names, prior_px=prior_px, max_z=max_z)


# -- the pair-by-pair chain of earlier versions (the benchmark's reference) ------------------------
@dataclass
class ScanShift:
    """One scan's place from the chain of neighbour searches, relative to scan 0 (pixels)."""

    index: int
    name: str
    guess: tuple[float, float]
    dx: float
    dy: float
    how: str                             # "reference", "both ends", "first projection", "other end", "motor"
    check: dict[str, Any] | None = None  # the other end of the scan: dx, dy, disagreement


@dataclass
class Alignment:
    """Every scan's shift from chained neighbour searches, and what to warn about."""

    scans: list[ScanShift]
    warnings: list[str] = field(default_factory=list)

    @property
    def shifts(self) -> list[tuple[float, float]]:
        return [(s.dx, s.dy) for s in self.scans]


def reconcile(first: PairResult, check: PairResult | None, names: tuple[str, str], *,
              tolerance_px: float = TOLERANCE_PX) -> tuple[float, float, str, list[str]]:
    """The pair's (dx, dy), with a word on how, and the warnings.

    Per axis: the mean of both ends of the scan when both have features there and agree
    within ``tolerance_px`` (two independent measurements halve the variance); the first
    projection when they disagree (with a warning: did the sample move?); the end that has
    features when only one has; the motor guess (with a warning) when neither has.
    """
    warns: list[str] = []
    pair = f"{names[1]} against {names[0]}"
    if first.extended:
        warns.append(f"{pair}: the ±{(first.cost.shape[0] - 1) // 2} px window around the motor guess "
                     f"({first.guess[0]:+.1f} px) held no clear minimum; it was moved or widened "
                     f"{first.extended} time(s) to find {first.dx:+.2f} px: check the motor positions")
    out, hows = [], []
    for axis, word in ((0, "column"), (1, "row")):
        f_val = (first.dx, first.dy)[axis]
        c_ok = check is not None and check.determined[axis]
        c_val = (check.dx, check.dy)[axis] if check is not None else math.nan
        if first.determined[axis] and c_ok:
            if abs(f_val - c_val) <= tolerance_px:
                out.append(0.5 * (f_val + c_val))
                hows.append("both ends")
                continue
            warns.append(f"{pair}: the first and last/180° projections disagree on {'dx' if axis == 0 else 'dy'} "
                         f"by {abs(f_val - c_val):.2f} px ({f_val:+.2f} vs {c_val:+.2f}): the sample or a stage "
                         f"moved during the scan? The first projection's value is used")
        if first.determined[axis]:
            out.append(f_val)
            hows.append("first projection")
        elif c_ok:
            out.append(c_val)
            hows.append("other end")
            warns.append(f"{pair}: the first projections' overlap has no features along the {word}s; "
                         f"the shift {out[-1]:+.2f} px comes from the other end of the scan")
        else:
            out.append(first.guess[axis])
            hows.append("motor")
            warns.append(f"{pair}: the overlap has no features along the {word}s (cost flat, t = "
                         f"{first.significance[axis]:.1f}); the motor {'position' if axis == 0 else 'guess'} "
                         f"{out[-1]:+.2f} px is kept")
    how = hows[0] if hows[0] == hows[1] else f"{hows[0]} (x), {hows[1]} (y)"
    return out[0], out[1], how, warns


def chain(pairs: Sequence[PairResult], checks: Sequence[PairResult | None], guesses: Sequence[float],
          names: Sequence[str], *, tolerance_px: float = TOLERANCE_PX) -> Alignment:
    """Every scan's shift relative to scan 0 from the neighbour searches (pixels)."""
    scans = [ScanShift(0, names[0], (0.0, 0.0), 0.0, 0.0, "reference")]
    warns: list[str] = []
    x = y = 0.0
    for i, (p, c) in enumerate(zip(pairs, checks, strict=True), start=1):
        dx, dy, how, w = reconcile(p, c, (names[i - 1], names[i]), tolerance_px=tolerance_px)
        warns += w
        x, y = x + dx, y + dy
        check = None
        if c is not None:
            check = {"dx": float(c.dx), "dy": float(c.dy), "determined": [bool(v) for v in c.determined],
                     "disagreement_px": [_num(abs(p.dx - c.dx)), _num(abs(p.dy - c.dy))]}
        scans.append(ScanShift(i, names[i], (float(guesses[i] - guesses[0]), 0.0), x, y, how, check=check))
    return Alignment(scans=scans, warnings=warns)
