"""Where each offset scan sits: refine the motor positions from the images (pure functions).

Neighbouring scans (in position order) are compared on their flat/dark-normalised
first projections.  Starting from the motor guess, every integer shift (dx, dy) of a
window (default 20 × 20 px, i.e. ±10 px on both axes) is scored by the mean squared
difference over the two images' overlap; the best one is refined to sub-pixel by a
paraboloid through the 3 × 3 costs around the minimum: a parabola through the minimum and
its two neighbours on each axis, plus the cross term from the corners.  Shifts are in
pixels: the right scan's pixel (row r, column c) sits at (r + dy, c + dx) of the left
scan's frame; chained, they give every scan's shift relative to scan 0.

Two safeguards against the images misleading the search:

* a minimum on the window's edge is not a minimum: the window is moved there and the
  search repeated; a window whose minimum does not stand out is widened along the
  columns (``max_extend`` times in all at most), with a warning;
* an axis along which the overlap has no features (the cost does not rise
  significantly 2 px either side of the minimum, ``min_significance``) is not trusted:
  the other end of the scan (last or 180° projection) is used if it has features there,
  else the motor guess, with a warning.

The other end of the scan is always searched too, as a check: a disagreement of more
than ``tolerance_px`` (1 px) is reported as a warning (and the first projection's value
kept); when they agree, the shift is their mean, which halves the variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from teravox.errors import PlanError

WINDOW_PX = 20            # search window side: shifts guess ± WINDOW_PX // 2 on both axes
MIN_OVERLAP_PX = 4        # fewest overlapping columns for a shift to be scored
MAX_EXTEND = 2            # times the window may be moved (minimum on its edge) or widened
MIN_SIGNIFICANCE = 5.0    # noise units the cost must rise by 2 px either side of the minimum
TOLERANCE_PX = 1.0        # first vs other end of the scan: warn beyond this disagreement


@dataclass
class PairResult:
    """The search for the right scan's shift relative to its left neighbour (pixels)."""

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


@dataclass
class ScanShift:
    """One scan's place in the stitched field of view, relative to scan 0 (pixels)."""

    index: int
    name: str
    guess: tuple[float, float]           # (dx, dy) from the motors
    dx: float
    dy: float
    how: str                             # "reference", "both ends", "first projection", "other end", "motor"
    cost_min: float | None = None        # of the search against the left neighbour
    curvature: tuple[float, float] | None = None
    check: dict[str, Any] | None = None  # the other end of the scan: dx, dy, disagreement

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "guess": [float(g) for g in self.guess],
                "dx": float(self.dx), "dy": float(self.dy), "how": self.how,
                "cost_min": _num(self.cost_min),
                "curvature": None if self.curvature is None else [_num(c) for c in self.curvature],
                "check": self.check}


@dataclass
class Alignment:
    """Every scan's shift, the searches between neighbours, and what to warn about."""

    scans: list[ScanShift]
    pairs: list[PairResult]                          # (i-1, i) on the first projections
    check_pairs: list[PairResult | None] = field(default_factory=list)  # the same on the other end
    warnings: list[str] = field(default_factory=list)

    @property
    def shifts(self) -> list[tuple[float, float]]:
        """(dx, dy) of every scan relative to scan 0."""
        return [(s.dx, s.dy) for s in self.scans]

    def to_dict(self) -> dict[str, Any]:
        return {"scans": [s.to_dict() for s in self.scans],
                "pairs": [dict(left=i, right=i + 1, **p.to_dict()) for i, p in enumerate(self.pairs)],
                "check_pairs": [None if p is None else dict(left=i, right=i + 1, **p.to_dict())
                                for i, p in enumerate(self.check_pairs)],
                "warnings": list(self.warnings)}


def _num(v: float | None) -> float | None:
    """JSON-able number: NaN/inf become None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# -- the search ---------------------------------------------------------------------------
def _overlap(na: int, nb: int, s: int) -> tuple[int, int]:
    """[start, stop) in A of where B, shifted by s, overlaps A (1-D)."""
    return max(0, s), min(na, s + nb)


def _cost_and_error(a: np.ndarray, b: np.ndarray, xs: Sequence[int], ys: Sequence[int],
                    min_cols: int, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared difference over the overlap for every shift, and its standard error."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    (ra, ca), (rb, cb) = a.shape, b.shape
    cost = np.full((len(ys), len(xs)), np.nan)
    err = np.full((len(ys), len(xs)), np.nan)
    for iy, y in enumerate(ys):
        y = int(y)
        r0, r1 = _overlap(ra, rb, y)
        if r1 - r0 < min_rows:
            continue
        a_rows, b_rows = a[r0:r1], b[r0 - y:r1 - y]
        for ix, x in enumerate(xs):
            x = int(x)
            c0, c1 = _overlap(ca, cb, x)
            if c1 - c0 < min_cols:
                continue
            sq = np.square(a_rows[:, c0:c1] - b_rows[:, c0 - x:c1 - x], dtype=np.float64)
            cost[iy, ix] = float(sq.mean())
            err[iy, ix] = float(sq.std()) / math.sqrt(sq.size)
    return cost, err


def cost_map(a: np.ndarray, b: np.ndarray, xs: Sequence[int], ys: Sequence[int], *,
             min_cols: int = MIN_OVERLAP_PX, min_rows: int = 1) -> np.ndarray:
    """Mean squared difference of ``a`` and ``b`` (2-D, same units) over their overlap when b's
    pixel (r, c) sits at a's (r + y, c + x), for every y in ``ys`` (rows of the result) and x in
    ``xs`` (columns); NaN where fewer than ``min_cols`` columns or ``min_rows`` rows overlap."""
    return _cost_and_error(a, b, xs, ys, min_cols, min_rows)[0]


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
    (ra, ca), (rb, cb) = a.shape, b.shape
    ts = []
    for step in (-2, 2):
        x2, y2 = (x + step, y) if axis == 0 else (x, y + step)
        r0 = max(_overlap(ra, rb, y)[0], _overlap(ra, rb, y2)[0])
        r1 = min(_overlap(ra, rb, y)[1], _overlap(ra, rb, y2)[1])
        c0 = max(_overlap(ca, cb, x)[0], _overlap(ca, cb, x2)[0])
        c1 = min(_overlap(ca, cb, x)[1], _overlap(ca, cb, x2)[1])
        if r1 - r0 < min_rows or c1 - c0 < min_cols:
            return math.nan
        base = (a[r0:r1, c0:c1] - b[r0 - y:r1 - y, c0 - x:c1 - x]).astype(np.float64)
        moved = (a[r0:r1, c0:c1] - b[r0 - y2:r1 - y2, c0 - x2:c1 - x2]).astype(np.float64)
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

    The integer search covers ``guess ± window_px // 2`` on both axes.  Up to
    ``max_extend`` times, a minimum on the window's edge moves the window there, and a
    window whose minimum does not stand out along the columns is widened along them (the
    motors of two neighbours may each be off by a window's half-width).  The best shift is
    refined by a paraboloid through the 3 × 3 costs around it (parabolas per axis as
    fallback).  An axis whose cost does not rise by ``min_significance`` noise units 2 px
    either side of the minimum is marked undetermined.  PlanError naming the scans when no
    shift of the window leaves ``min_overlap_px`` columns (and half the rows) in common.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected two 2-D projections, got shapes {a.shape} and {b.shape}")
    half = max(1, int(window_px) // 2)
    min_rows = max(1, math.ceil(0.5 * min(a.shape[0], b.shape[0])))
    gx, gy = int(round(guess_dx)), int(round(guess_dy))
    win = _search(a, b, gx, gy, half, half, min_overlap_px, min_rows)
    if win is None:
        raise PlanError(
            f"{names[1]}: its motor position puts it {guess_dx:+.1f} px from {names[0]}, and no shift "
            f"within ±{half} px of that leaves {min_overlap_px} columns of overlap between their "
            f"{a.shape[1]}-column images; check the position (and its unit, mm or px) and the pixel size")
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
    c0, c1 = _overlap(a.shape[1], b.shape[1], bx)
    r0, r1 = _overlap(a.shape[0], b.shape[0], by)
    return PairResult(guess=(float(guess_dx), float(guess_dy)), dx=bx + fx, dy=by + fy, cost=cost,
                      origin=(int(win.xs[0]), int(win.ys[0])), cost_min=float(cost[iy, ix]),
                      curvature=(curv_x, curv_y), significance=(t_x, t_y), determined=(det_x, det_y),
                      extended=extended, overlap_px=(c1 - c0, r1 - r0))


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
        scans.append(ScanShift(i, names[i], (float(guesses[i] - guesses[0]), 0.0), x, y, how,
                               cost_min=p.cost_min, curvature=p.curvature, check=check))
    return Alignment(scans=scans, pairs=list(pairs), check_pairs=list(checks), warnings=warns)


def align_scans(first: Sequence[np.ndarray], guesses_px: Sequence[float], *,
                check: Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
                window_px: int = WINDOW_PX, min_overlap_px: int = MIN_OVERLAP_PX,
                max_extend: int = MAX_EXTEND, min_significance: float = MIN_SIGNIFICANCE,
                tolerance_px: float = TOLERANCE_PX) -> Alignment:
    """Align scans given in position order by their normalised first projections (2-D each).

    ``guesses_px`` are the motor positions in pixels (any origin); ``check`` the projections
    at the other end of each scan (last, or 180°).  Returns every scan's (dx, dy) relative to
    scan 0 with the searches behind it.
    """
    n = len(first)
    if n < 2 or len(guesses_px) != n or (check is not None and len(check) != n):
        raise ValueError(f"need ≥ 2 scans with one guess (and check projection) each; got {n} projections, "
                         f"{len(guesses_px)} guesses")
    names = list(names) if names is not None else [f"scan {i}" for i in range(n)]
    kw = dict(window_px=window_px, min_overlap_px=min_overlap_px, max_extend=max_extend,
              min_significance=min_significance)
    pairs, checks = [], []
    for i in range(1, n):
        g = float(guesses_px[i] - guesses_px[i - 1])
        pairs.append(align_pair(first[i - 1], first[i], g, names=(names[i - 1], names[i]), **kw))
        checks.append(None if check is None else
                      align_pair(check[i - 1], check[i], g, names=(names[i - 1], names[i]), **kw))
    return chain(pairs, checks, guesses_px, names, tolerance_px=tolerance_px)
