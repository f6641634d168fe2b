"""Automatic rotation centre over the whole detector, sub-pixel, with a confidence.

Centres are column positions in detector pixels, 0-based, pixel *i* centred at *i*
(``docs/architecture.md``).  Two metrics, each evaluated for *every* centre on a
half-pixel grid at the cost of a few FFTs of the sinogram, then refined to a
fraction of a pixel by evaluating the same Fourier sums between grid points:

* **180° scans — Vo's double wedge** (Vo, Atwood & Drakopoulos 2014, algotom's
  ``find_center_vo``).  The sinogram over [θ₀, θ₀ + π) followed by its mirror about a
  trial centre is a 360° sinogram; only at the right centre is it free of a jump at
  θ₀ + π, and its 2-D spectrum then holds no energy outside the double wedge
  ``|m| ≤ 2π R |ν|`` (m cycles per turn, ν cycles per pixel, R the object's radius).
  algotom shifts the mirrored sinogram by interpolation and takes one 2-D FFT per trial
  centre.  Here the energy outside the wedge is a quadratic form whose centre-dependent
  part is a single sum over ν, ``2 Re Σ G(ν) e^{−2πiν·2c}``, so one FFT along the
  columns, one along the angles and one inverse FFT give the metric at every centre,
  and nothing smooths or interpolates the data.  algotom is 0.1–0.35 px high on exact
  sinograms (``tests/test_center.py``), for two reasons measured one at a time: its
  fine search smooths the 180° sinogram with a Gaussian that *reflects* at θ₀ and
  θ₀ + π, which distorts exactly the junction the metric tests (+0.2 px on every
  sinogram); and its wedge radius, a quarter of the width, lets objects larger than that
  leak outside the wedge (±0.2 px, pixels with the squared metric).  Here R is half the
  width: an object that a 180° scan sees whole fits in it.
* **360° scans — mirror pairs.**  The view at θ + π is the view at θ mirrored about the
  centre.  Full 360° scans maximise the correlation of each view with the mirrored
  opposite one (what does not overlap must be air); half-acquisition scans, whose object
  is wider than the detector, minimise the normalised misfit over the overlap only.

Each row gives a metric curve; the curves of a few rows spread over the height are
averaged to find the global minimum, each row is then refined in that minimum's basin,
and a straight line through the row centres gives the axis tilt.  The confidence is the
depth of the best minimum against the runner-up outside its basin (1: no other minimum,
0: two equally good ones).  Each sample sinogram first loses its single-pixel spikes
(zingers weigh heavily in a squared metric) and the offsets of columns that stand out
from their neighbours at every angle (a dead or miscalibrated column is a false symmetry).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import median_filter
from scipy.optimize import minimize_scalar

from teravox.errors import ParamError, StageError

Mode = Literal["180", "360", "half"]
HalfMode = Literal["off", "auto", "left", "right"]

#: angles over 180° (or angle pairs over 360°) used per sinogram: Vo's metric needs no more
MAX_ANGLES = 1000
#: the plausible range of a centre: the middle 90 % of the detector
SEARCH_FRACTION = 0.9
#: fewest overlapping columns a half-acquisition centre may leave
MIN_OVERLAP_PX = 8
#: stripe suppression: columns of the median a stripe is compared with, and angles it looks at
STRIPE_WINDOW_PX = 7
STRIPE_ANGLES = 256
#: what each mode's metric measures (lower is better), for plots
METRIC_NAMES = {"180": "energy outside the double wedge (rel.)", "360": "1 − mirror correlation",
                "half": "misfit over the overlap"}
#: values (complex64) of one block of the angular transform in Vo's metric
BLOCK_VALUES = 2**21
#: a tilt is applied when the centre moves by at least this over the rows, and is significant
TILT_MIN_PX = 0.5


@dataclass(frozen=True)
class Curve:
    """A centre metric sampled on a half-pixel grid; lower is better, NaN = not defined."""

    centers: np.ndarray  # px
    metric: np.ndarray   # dimensionless (fraction of energy, or of misfit)


@dataclass(frozen=True)
class RowCurve:
    """The metric of one sinogram row, and what refines it between grid points:
    ``refiner(anchor)`` is a smooth metric of the centre near the grid centre ``anchor``."""

    curve: Curve
    refiner: Callable[[float], Callable[[float], float]] = field(repr=False)
    #: full 360° scans: the misfit over the overlap alone (what half acquisition minimises)
    overlap: Curve | None = None


@dataclass
class CenterResult:
    """The automatic centre of a scan: a line through the centres of a few rows.

    ``center`` is the centre at ``row`` (the middle of the sampled rows' span, in the
    rows' own coordinates); ``tilt_px_per_row`` is the fitted slope d(centre)/d(row) and
    ``tilt_sigma`` its standard error (NaN when too few rows were usable).
    """

    center: float
    row: float
    confidence: float
    method: str
    side: str | None
    tilt_px_per_row: float
    tilt_sigma: float
    rows: list[int]
    row_centers: list[float]
    row_confidences: list[float]
    runner_up: float | None  # centre of the next-best minimum (px), None if there is none
    curve: Curve
    problem: str | None = None  # why the result cannot be trusted whatever its confidence

    def center_at(self, row: float) -> float:
        return self.center + self.tilt_px_per_row * (row - self.row)

    @property
    def tilt_deg(self) -> float:
        return math.degrees(math.atan(self.tilt_px_per_row))

    def tilt_significant(self, n_rows: int) -> bool:
        """Worth correcting: the fitted centre moves ≥ TILT_MIN_PX over ``n_rows`` rows and the
        slope is at least three standard errors from zero."""
        if not np.isfinite(self.tilt_sigma):
            return False
        return (abs(self.tilt_px_per_row) * max(n_rows - 1, 1) >= TILT_MIN_PX
                and abs(self.tilt_px_per_row) >= 3 * self.tilt_sigma)

    def to_dict(self) -> dict:
        """JSON-able summary (the curve thinned to at most 2000 points)."""
        step = max(1, math.ceil(self.curve.centers.size / 2000))
        return {
            "center": self.center, "row": self.row, "confidence": self.confidence,
            "method": self.method, "side": self.side,
            "tilt_px_per_row": self.tilt_px_per_row,
            "tilt_sigma": None if not np.isfinite(self.tilt_sigma) else self.tilt_sigma,
            "rows": list(self.rows), "row_centers": list(self.row_centers),
            "row_confidences": list(self.row_confidences), "runner_up": self.runner_up,
            "problem": self.problem,
            "curve": {"centers": self.curve.centers[::step].tolist(),
                      "metric": [None if not np.isfinite(v) else float(v) for v in self.curve.metric[::step]]},
        }


# -- which angles ------------------------------------------------------------------------


def mode_of(theta: np.ndarray, half_acquisition: HalfMode = "off") -> Mode:
    """``half`` for half acquisition, ``360`` when the angles span a full turn, else ``180``."""
    if half_acquisition != "off":
        return "half"
    theta = np.sort(np.asarray(theta, dtype=np.float64))
    step = np.median(np.diff(theta)) if theta.size > 1 else 0.0
    return "360" if theta[-1] - theta[0] >= 2 * np.pi - 3 * step else "180"


def angle_subset(theta: np.ndarray, mode: Mode, max_angles: int = MAX_ANGLES) -> np.ndarray:
    """Sorted indices of the angles the search reads: for ``180`` about ``max_angles``
    equally spaced over [θ₀, θ₀ + π) (the nearest measured angle to each), for ``360`` and
    ``half`` up to ``max_angles`` angles θ with the measured angles around θ + π.  ``theta``
    in radians."""
    theta = np.asarray(theta, dtype=np.float64)
    if mode == "180":
        return np.unique(_uniform_180(theta, max_angles))
    first, lower, upper, _ = _pairs(theta)
    keep = slice(None, None, max(1, math.ceil(first.size / max_angles)))
    return np.unique(np.concatenate([first[keep], lower[keep], upper[keep]]))


def angle_bins(theta: np.ndarray, mode: Mode, max_angles: int = MAX_ANGLES) -> tuple[np.ndarray, int]:
    """(first angle of each bin, bin size): for ``180`` on equally spaced angles, bins of
    the subset's stride — consecutive angles averaged, which keeps the subset's memory and
    divides the noise's variance by the stride (an equally spaced, mirror-consistent
    sinogram still); otherwise the subset itself, bins of one."""
    idx = angle_subset(theta, mode, max_angles)
    step = np.diff(idx)
    if mode != "180" or idx.size < 2 or not (step == step[0]).all() or step[0] < 2:
        return idx, 1
    k = int(step[0])
    span = np.asarray(theta, dtype=np.float64)[idx[0]:idx[-1] + k]
    d = np.diff(span)
    if span.size != idx.size * k or not np.allclose(d, d[0], rtol=1e-3, atol=0):
        return idx, 1
    return idx, k


def bin_angles(values: np.ndarray, k: int) -> np.ndarray:
    """Means of ``k`` consecutive rows (angles) of ``values``, float32."""
    if k == 1:
        return np.asarray(values, dtype=np.float32)
    n = values.shape[0] // k
    return np.asarray(values[:n * k], dtype=np.float32).reshape(n, k, *values.shape[1:]).mean(axis=1)


def _pairs(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first, lower, upper, t): the angles of the first half turn, and for each the two
    measured angles around θ + π with the weight ``t`` of ``upper`` that interpolates
    linearly between them (an odd number of angles over 360° has no exact opposites)."""
    order = np.argsort(theta)
    ts = theta[order]
    step = float(np.median(np.diff(ts))) if ts.size > 1 else 0.0
    if ts[-1] - ts[0] < 2 * np.pi - 3 * step:
        raise ParamError(f"a 360° centre search needs angles spanning 360°, these span "
                         f"{np.degrees(ts[-1] - ts[0]):.1f}°")
    first = order[ts < ts[0] + np.pi - step / 2]
    target = theta[first] + np.pi
    pos = np.clip(np.searchsorted(ts, target), 1, ts.size - 1)
    t = np.clip((target - ts[pos - 1]) / np.maximum(ts[pos] - ts[pos - 1], 1e-12), 0.0, 1.0)
    return first, order[pos - 1], order[pos], t


def _uniform_180(theta: np.ndarray, max_angles: int) -> np.ndarray:
    """Indices of the measured angles nearest to a uniform grid over [θ₀, θ₀ + π), in grid order.

    The grid has the measured spacing times the smallest stride that brings the count
    under ``max_angles`` and divides the angles of a half turn, so that equally spaced
    scans are sampled exactly; otherwise the nearest angle stands in for each grid angle.
    """
    order = np.argsort(theta)
    ts = theta[order]
    step = float(np.median(np.diff(ts))) if ts.size > 1 else np.pi
    n180 = int(np.sum(ts - ts[0] < np.pi - step / 2))
    stride = max(1, math.ceil(n180 / max_angles))
    for s in range(stride, 2 * stride + 1):
        if n180 % s == 0:
            stride = s
            break
    count = max(2, round(n180 / stride))
    grid = ts[0] + np.arange(count) * (np.pi / count)
    pos = np.clip(np.searchsorted(ts, grid), 1, ts.size - 1)
    nearer_left = (grid - ts[pos - 1]) < (ts[pos] - grid)
    return order[np.where(nearer_left, pos - 1, pos)]


# -- one row -------------------------------------------------------------------------------


def suppress_stripes(sino: np.ndarray, window: int = STRIPE_WINDOW_PX) -> np.ndarray:
    """``sino`` (angles, columns) without the offsets of single columns that hold at every angle.

    A dead, hot or miscalibrated column adds the same value at every angle; left in, it
    mirrors onto itself only at its own column and makes a false minimum there.  Its
    offset is the median over the angles of how far the column stands out from the median
    of its ``window`` neighbours: an object's edge passes a column at some angles only, so
    its median is 0 (a mean would keep part of it, and pull the centre of a small object by
    half a pixel).  Stripes up to ``window // 2`` columns wide.
    """
    sample = sino[:: max(1, math.ceil(sino.shape[0] / STRIPE_ANGLES))]  # a stripe is at every angle
    offset = np.median(sample - median_filter(sample, size=(1, window), mode="mirror"), axis=0)
    return (sino - offset.astype(np.float32)).astype(np.float32, copy=False)


def remove_spikes(sino: np.ndarray, spread: float = 6.0) -> np.ndarray:
    """``sino`` (angles, columns) with single-pixel spikes (zingers) replaced by the mean of
    their four neighbours: a pixel above (or below) all four by more than ``spread`` robust
    standard deviations of the pixel-to-neighbours differences, and by more than 2 % of
    the data's range.  An edge is never above all its neighbours, so the object stays;
    a squared misfit would otherwise count each zinger at every centre whose overlap holds
    it (half a pixel to a pixel at 8192 columns)."""
    x = np.asarray(sino, dtype=np.float32)
    pad = np.pad(x, 1, mode="edge")
    nbs = (pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:])
    mean = nbs[0] + nbs[1]
    mean += nbs[2]
    mean += nbs[3]
    mean *= np.float32(0.25)
    step = max(1, math.ceil(x.size / 2**20))
    dev = (x - mean).ravel()[::step]
    sigma = 1.4826 * float(np.median(np.abs(dev - np.median(dev))))
    lo, hi = np.percentile(x.ravel()[::step], [0.1, 99.9])
    limit = np.float32(max(spread * sigma, 0.02 * (hi - lo), 1e-12))
    edge = np.maximum(nbs[0], nbs[1])
    for nb in nbs[2:]:
        np.maximum(edge, nb, out=edge)
    spikes = x - edge > limit
    edge = np.minimum(nbs[0], nbs[1], out=edge)
    for nb in nbs[2:]:
        np.minimum(edge, nb, out=edge)
    spikes |= edge - x > limit
    del edge, pad
    if not spikes.any():
        return x
    out = x.copy()
    out[spikes] = mean[spikes]
    return out


def row_curve(sino: np.ndarray, theta: np.ndarray, mode: Mode, threads: int = 1) -> RowCurve:
    """The metric of one sinogram ``(angles, columns)`` (line integrals) for every centre on
    the half-pixel grid 0, 0.5, …, N − 1; ``theta`` in radians, the sinogram's angles."""
    theta = np.asarray(theta, dtype=np.float64)
    if mode == "180":
        idx, k = angle_bins(theta, "180")
        sino = bin_angles(sino[idx[0]:idx[-1] + k], k) if k > 1 else np.asarray(sino, np.float32)[idx]
        return _vo_curve(suppress_stripes(remove_spikes(sino)), threads)
    sino = suppress_stripes(remove_spikes(sino))
    first, lower, upper, t = _pairs(np.asarray(theta, dtype=np.float64))
    t = t.astype(np.float32)[:, None]
    opposite = sino[lower] * (1 - t) + sino[upper] * t
    return _pair_curve(sino[first], opposite, overlap_only=(mode == "half"), threads=threads)


def _weights(n_freq: int, length: int) -> np.ndarray:
    """Weights of the rfft bins 0..length/2 that make a sum over them a sum over all frequencies."""
    w = np.full(n_freq, 2.0)
    w[0] = 1.0
    if length % 2 == 0:
        w[-1] = 1.0
    return w


def _fourier_sum(coef: np.ndarray, length: int, n: np.ndarray) -> np.ndarray:
    """Re Σ_{all k} coef(k) e^{−2πikn/L} at positions ``n`` (any real numbers), from the
    rfft-side coefficients (``coef(−k) = conj(coef(k))``)."""
    k = np.arange(coef.size)
    w = _weights(coef.size, length)
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    return np.real(np.exp(-2j * np.pi * np.outer(n, k) / length) @ (w * coef))


def _vo_curve(sino: np.ndarray, threads: int) -> RowCurve:
    """Vo's metric (energy outside the double wedge, as a fraction of the energy that does not
    depend on the centre) at every centre, for angles equally spaced over [θ₀, θ₀ + π)."""
    m_angles, n = sino.shape
    block = _block_freqs(m_angles)
    length = sfft.next_fast_len(2 * n, real=True)  # zero padding: the mirror never wraps onto the data
    spec = sfft.rfft(sino, n=length, axis=1, workers=threads)  # (M, K) complex64
    n_freq = spec.shape[1]
    m = np.rint(sfft.fftfreq(2 * m_angles, 1.0 / (2 * m_angles))).astype(np.int64)
    neg = (-np.arange(2 * m_angles)) % (2 * m_angles)
    sign = np.where(m % 2 == 0, 1.0, -1.0).astype(np.float32)[:, None]
    radius = n / 2.0
    drop_m = min(20, int(0.05 * 2 * m_angles))  # Vo's: the few lowest angular frequencies carry no jump
    g = np.zeros(n_freq, np.complex128)
    e0 = 0.0
    w = _weights(n_freq, length)
    for k0 in range(0, n_freq, block):
        k = np.arange(k0, min(k0 + block, n_freq))
        a = sfft.fft(spec[:, k0:k[-1] + 1], n=2 * m_angles, axis=0, workers=threads)  # (2M, kb)
        limit = np.maximum(2 * np.pi * radius * k / length, drop_m)
        outside = (np.abs(m)[:, None] > limit[None, :]) & (k * n / length > 1)[None, :]
        # Ω is symmetric in m: Σ_Ω |A(−m)|² = Σ_Ω |A(m)|²
        power = np.abs(a)
        power *= power
        e0 += 2.0 * float(np.sum(w[k] * np.sum(power, axis=0, where=outside)))
        del power
        pair = a[neg]
        pair *= a
        del a
        np.conjugate(pair, out=pair)
        pair *= sign
        g[k] = np.sum(pair, axis=0, where=outside)
        del pair, outside
    if not e0 > 0:
        return _flat_curve(n)
    # cross(n) = 2 Re Σ G(k) e^{−2πik·n/L} at n = 2c: one inverse FFT gives the whole grid
    full = sfft.irfft(g, n=length) * length
    grid = np.arange(2 * n - 1)
    metric = 1.0 + 2.0 * full[(-grid) % length] / e0

    def refine(c: float) -> float:
        return float(1.0 + 2.0 * _fourier_sum(g, length, np.array([2 * c]))[0] / e0)

    return RowCurve(Curve(grid / 2.0, metric), lambda anchor: refine)


def _block_freqs(m_angles: int) -> int:
    """Column frequencies transformed along the angles at once: 2M × block ≤ 2²¹ values."""
    return max(16, BLOCK_VALUES // (2 * m_angles))


def _pair_curve(direct: np.ndarray, opposite: np.ndarray, *, overlap_only: bool, threads: int
                ) -> RowCurve:
    """Mirror-pair metric for views ``direct`` at θ and ``opposite`` at θ + π (angles, columns).

    ``overlap_only`` (half acquisition): normalised misfit over the overlap,
    ``(Σ d² + Σ p² − 2 Σ d·p) / (Σ d² + Σ p²)`` (with a small floor added to both, so that an
    overlap of air scores 1, not 0); otherwise ``1 − 2 Σ d·p / E`` with E the
    energy of both views, so that what does not overlap counts as misfit.
    """
    direct = np.asarray(direct, dtype=np.float32)
    opposite = np.asarray(opposite, dtype=np.float32)
    n = direct.shape[1]
    length = sfft.next_fast_len(2 * n, real=True)
    coef = np.sum(sfft.rfft(direct, n=length, axis=1, workers=threads)
                  * sfft.rfft(opposite, n=length, axis=1, workers=threads), axis=0).astype(np.complex128)
    # Σ_x d(x) p(n − x): the mirror about c = n/2; zero padding keeps only the overlap
    cross = sfft.irfft(coef, n=length)[: 2 * n - 1]
    ed = np.concatenate([[0.0], np.cumsum(np.sum(direct.astype(np.float64) ** 2, axis=0))])
    ep = np.concatenate([[0.0], np.cumsum(np.sum(opposite.astype(np.float64) ** 2, axis=0))])
    total = ed[-1] + ep[-1]
    if not total > 0:
        return _flat_curve(n)
    grid = np.arange(2 * n - 1)
    x0, x1 = np.maximum(0, grid - n + 1), np.minimum(n - 1, grid)  # overlapping columns x0..x1
    width = x1 - x0 + 1
    e_over = (ed[x1 + 1] - ed[x0]) + (ep[grid - x0 + 1] - ep[grid - x1])

    floor = 1e-3 * total / n  # an all-air overlap is no evidence: its metric is 1
    misfit = (e_over - 2 * cross + floor * width) / (e_over + floor * width)
    misfit[width < MIN_OVERLAP_PX] = np.nan
    if not overlap_only:
        def refine(c: float) -> float:
            return 1.0 - 2.0 * float(_fourier_sum(coef, length, np.array([-2 * c]))[0]) / length / total

        return RowCurve(Curve(grid / 2.0, 1.0 - 2.0 * cross / total), lambda anchor: refine,
                        overlap=Curve(grid / 2.0, misfit))
    metric = misfit

    def refiner(anchor: float) -> Callable[[float], float]:
        """The misfit over the overlap at ``anchor`` (2 px in from its ends), tapered to zero
        at both ends: every term is then a smooth convolution, exact between grid points."""
        from scipy.signal.windows import tukey

        mid = int(round(2 * anchor))
        x0, x1 = max(0, mid - n + 1) + 2, min(n - 1, mid) - 2
        if x1 - x0 + 1 < MIN_OVERLAP_PX:
            return lambda c: float(np.interp(2 * c, grid, metric))
        w = np.zeros(n, np.float32)
        w[x0:x1 + 1] = tukey(x1 - x0 + 1, 0.5)
        cx = np.sum(sfft.rfft(direct * w, n=length, axis=1, workers=threads)
                    * sfft.rfft(opposite, n=length, axis=1, workers=threads), axis=0).astype(np.complex128)
        ce = sfft.rfft(w.astype(np.float64), n=length) * sfft.rfft(
            np.sum(opposite.astype(np.float64) ** 2, axis=0), n=length)
        ed_w = float(np.sum(w * np.sum(direct.astype(np.float64) ** 2, axis=0)))
        fl = floor * float(w.sum())

        def f(c: float) -> float:
            x, ep_w = (_fourier_sum(a, length, np.array([-2 * c]))[0] / length for a in (cx, ce))
            return float((ed_w + ep_w - 2 * x + fl) / (ed_w + ep_w + fl))

        return f

    return RowCurve(Curve(grid / 2.0, metric), refiner)


def _flat_curve(n: int) -> RowCurve:
    """A row with no signal at all: no evidence for any centre."""
    centers = np.arange(2 * n - 1) / 2.0
    return RowCurve(Curve(centers, np.full(centers.size, np.nan)), lambda anchor: lambda c: float("nan"))


# -- from curves to a centre -----------------------------------------------------------------


def search_window(n: int, mode: Mode, side: str | None = None,
                  around: tuple[float, float] | None = None) -> tuple[float, float]:
    """Centres the search considers (px): the middle 90 % of the detector for 180° and 360°
    scans; for half acquisition one side of the middle (``side``) or both; ``around``
    (centre, half-width) narrows it."""
    last = n - 1.0
    if mode == "half":
        lo, hi = MIN_OVERLAP_PX / 2, last - MIN_OVERLAP_PX / 2
        if side == "left":
            hi = last / 2 - 0.5
        elif side == "right":
            lo = last / 2 + 0.5
    else:
        margin = (1 - SEARCH_FRACTION) / 2 * last
        lo, hi = margin, last - margin
    if around is not None:
        lo, hi = max(lo, around[0] - around[1]), min(hi, around[0] + around[1])
    if hi < lo:
        raise ParamError(f"the centre search window is empty ({lo:.1f}..{hi:.1f} px on {n} columns)")
    return lo, hi


def confidence(metric: np.ndarray) -> tuple[float, int | None]:
    """(confidence in [0, 1], index of the runner-up minimum or None) of a curve, lower better.

    The runner-up is the lowest other minimum that is a valley of its own (a prominence of
    at least a fifth of the best one's; shoulders on the way down do not count).  The
    confidence is the contrast of the best against it, ``(f_runner − f_best) / (f_median −
    f_best)`` (1 without a runner-up), times the depth of the best below the median,
    ``(f_median − f_best) / f_median``, counted in full from a tenth (noise in the data
    flattens a curve to a dip of a tenth or so; noise alone gives many shallow, equal
    minima, and both factors are then small).
    """
    f = np.asarray(metric, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(f))
    if finite.size < 3:
        return 0.0, None
    first = int(finite[0])
    g = f[first:finite[-1] + 1]
    g = np.where(np.isfinite(g), g, np.nanmax(g))
    best = int(np.argmin(g))
    base = float(np.median(g))
    depth = base - g[best]
    if not depth > 0 or not base > 0:
        return 0.0, None
    top = float(g.max())  # beyond the ends the curve is as high as it gets: end minima count
    prom = _valley_prominences(np.concatenate([[top], g, [top]]))[1:-1]
    minima = np.flatnonzero(prom > 0)
    others = [i for i in minima.tolist() if i != best and prom[i] >= 0.2 * prom[best]]
    significance = min(1.0, depth / base / 0.1)
    if not others:
        return float(significance), None
    runner = min(others, key=lambda i: g[i])
    contrast = float(np.clip((g[runner] - g[best]) / depth, 0.0, 1.0))
    return contrast * significance, first + runner


def _valley_prominences(g: np.ndarray) -> np.ndarray:
    """Prominence of each local minimum of ``g`` (0 elsewhere): how far it lies below the
    lower of the highest points between it and the nearest lower point on either side
    (or the curve's end).  Two passes of a monotonic stack (scipy.signal has the same for
    peaks, but takes seconds to import)."""
    n = g.size
    is_min = np.zeros(n, bool)
    is_min[1:-1] = (g[1:-1] < g[:-2]) & (g[1:-1] <= g[2:])
    is_min[0] = n > 1 and g[0] <= g[1]
    is_min[-1] = n > 1 and g[-1] < g[-2]

    def reach(values: np.ndarray) -> np.ndarray:
        """Highest value between each point and the nearest strictly lower one before it."""
        out = np.empty(values.size)
        stack: list[tuple[float, float]] = []  # (value, highest value since the previous entry)
        for i, v in enumerate(values.tolist()):
            top = v
            while stack and stack[-1][0] >= v:
                top = max(top, stack.pop()[1])
            out[i] = top
            stack.append((v, top))
        return out

    left, right = reach(g), reach(g[::-1])[::-1]
    prom = np.minimum(left, right) - g
    prom[~is_min] = 0.0
    return prom


def _downhill(metric: np.ndarray, start: int, lo: int, hi: int) -> int:
    """The local minimum reached from ``start`` by stepping downhill within [lo, hi]."""
    i = start
    while True:
        nxt = [j for j in (i - 1, i + 1) if lo <= j <= hi and np.isfinite(metric[j]) and metric[j] < metric[i]]
        if not nxt:
            return i
        i = min(nxt, key=lambda j: metric[j])


def _refine(rc: RowCurve, i: int) -> float:
    """The sub-pixel minimum within half a pixel of grid point ``i``."""
    c = float(rc.curve.centers[i])
    f = rc.refiner(c)
    res = minimize_scalar(f, bounds=(c - 0.5, c + 0.5), method="bounded", options={"xatol": 1e-3})
    return float(res.x) if np.isfinite(res.fun) and res.fun <= f(c) else c


def combine(curves: list[RowCurve], rows: list[int], mode: Mode, window: tuple[float, float],
            ) -> CenterResult:
    """The centre, its confidence and the tilt from the metric curves of ``rows``."""
    centers = curves[0].curve.centers
    inside = (centers >= window[0]) & (centers <= window[1])
    stack = np.array([rc.curve.metric for rc in curves])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: centres no row defines
        # each row on the same footing: its curve relative to its own median
        med = np.nanmedian(np.where(inside, stack, np.nan), axis=1, keepdims=True)
        rel = np.where(med > 0, stack / med, stack)
        mean = np.nanmean(np.where(inside, rel, np.nan), axis=0)
    if not np.isfinite(mean[inside]).any():
        raise StageError("the automatic centre search found no structure in the sample rows "
                         f"{rows} (every metric undefined); give the centre with --center, or run a "
                         "centre sweep (teravox center-sweep) to choose one")
    lo, hi = int(np.flatnonzero(inside)[0]), int(np.flatnonzero(inside)[-1])
    conf, runner = confidence(mean[lo:hi + 1])
    best = lo + int(np.nanargmin(mean[lo:hi + 1]))
    row_c, row_conf = [], []
    for rc in curves:
        i = _downhill(rc.curve.metric, best, lo, hi) if np.isfinite(rc.curve.metric[best]) else best
        row_c.append(_refine(rc, i))
        row_conf.append(confidence(rc.curve.metric[lo:hi + 1])[0])
    center, row_ref, slope, sigma = _fit_line(np.asarray(rows, float), np.asarray(row_c), np.asarray(row_conf))
    side = None
    if mode == "half":
        side = "right" if center > (centers[-1]) / 2 else "left"
    problem = _check_full_turn(curves, best) if mode == "360" else None
    method = {"180": "Vo's double-wedge metric (180°)", "360": "mirror-pair correlation (360°)",
              "half": "mirror-pair overlap (360° half acquisition)"}[mode]
    return CenterResult(center=center, row=row_ref, confidence=conf, method=method, side=side,
                        tilt_px_per_row=slope, tilt_sigma=sigma, rows=list(rows),
                        row_centers=row_c, row_confidences=row_conf,
                        runner_up=None if runner is None else float(centers[lo + runner]),
                        curve=Curve(centers, mean), problem=problem)


def _check_full_turn(curves: list[RowCurve], best: int) -> str | None:
    """A full 360° scan's views at θ and θ + π match, mirrored, best about the centre that
    correlates them best.  When another centre, nearer an edge, makes them match much
    better over its overlap, the object is wider than the detector: half acquisition."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        misfit = np.nanmedian(np.array([rc.overlap.metric for rc in curves if rc.overlap is not None]), axis=0)
    finite = np.where(np.isfinite(misfit), misfit, np.inf)
    alt = int(np.argmin(finite))
    centers = curves[0].curve.centers
    if not np.isfinite(finite[best]) or abs(alt - best) <= 4 or finite[alt] >= 0.5 * finite[best]:
        return None
    return (f"the views at θ and θ + 180° match as mirror images about column {centers[alt]:.1f} "
            f"(misfit {finite[alt]:.3f} over their overlap), much better than about the centre a "
            f"full 360° scan would have ({centers[best]:.1f}, misfit {finite[best]:.3f}): the axis "
            f"looks near an edge; for half acquisition add --half-acquisition auto")


def _fit_line(rows: np.ndarray, centers: np.ndarray, conf: np.ndarray
              ) -> tuple[float, float, float, float]:
    """(centre at the reference row, reference row, slope px/row, slope's standard error).

    Rows whose own curve has little confidence, or whose centre lies more than 1 px from
    the line of the others, are left out; with fewer than three rows over at least 8 rows
    of height, no slope is fitted (0, σ = NaN) and the centre is the median.
    """
    ref = float((rows.min() + rows.max()) / 2)
    good = conf >= 0.1
    if good.sum() == 0:
        good = np.ones_like(good)
    med = float(np.median(centers[good]))
    if good.sum() < 3 or np.ptp(rows[good]) < 8:
        return med, ref, 0.0, float("nan")
    for _ in range(3):
        x, y = rows[good] - ref, centers[good]
        slope, icpt = np.polyfit(x, y, 1)
        resid = centers - (icpt + slope * (rows - ref))
        keep = good & (np.abs(resid) <= 1.0)
        if keep.sum() < 3 or (keep == good).all():
            break
        good = keep
    x, y = rows[good] - ref, centers[good]
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (icpt + slope * x)
    # a row's centre is good to ~0.05 px at best: no slope is more certain than that allows
    s = max(float(np.sqrt(np.sum(resid**2) / max(x.size - 2, 1))), 0.05)
    sigma = s / math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    return float(icpt), ref, float(slope), float(sigma)


def search_bytes(n_angles: int, n_cols: int, mode: Mode, n_rows: int) -> int:
    """Peak memory (bytes, beyond the job's base) of a search over ``n_rows`` rows of
    ``n_angles`` (the subset read) × ``n_cols``.  Rows are searched one at a time: the
    peak is one row's float32 copies and its column spectra (for Vo's metric the larger of
    the column transform and the blocks of the angular one); half acquisition keeps each
    row's views for the sub-pixel step.  Coefficients measured with VmHWM
    (benchmarks/center.py --memory) at 1024–24608 columns."""
    row = n_angles * n_cols * 4
    length = sfft.next_fast_len(2 * n_cols, real=True)
    n_freq = length // 2 + 1
    if mode == "180":
        spectrum = n_angles * n_freq * 8
        block = 2 * n_angles * min(n_freq, _block_freqs(n_angles)) * 8
        return int(max(3 * row + 2.4 * spectrum, 3 * row + spectrum + 2.6 * block))
    spectrum = (n_angles // 2) * n_freq * 8  # of the direct (or the opposite) views
    need = 3 * row + 4.1 * spectrum
    if mode == "half":
        need += n_rows * row
    return int(need)


# -- the entry point for arrays in memory -------------------------------------------------


def find_center(sinos: np.ndarray, theta: np.ndarray, *, half_acquisition: HalfMode = "off",
                rows: list[int] | None = None, around: tuple[float, float] | None = None,
                threads: int = 1) -> CenterResult:
    """Rotation centre (column, px) of sinograms ``(rows, angles, columns)`` of line integrals.

    ``theta``: the sinograms' angles in radians.  ``half_acquisition`` (``off``, ``auto``,
    ``left``, ``right``): a 360° scan with the axis near an edge; ``auto`` finds the side.
    ``rows``: the sinograms' detector rows (for the tilt; default 0, 1, …).  ``around``
    (centre, half-width in px) narrows the search; by default it covers the middle 90 % of
    the detector (for half acquisition, every centre leaving ≥ 8 overlapping columns).
    """
    sinos = np.asarray(sinos, dtype=np.float32)
    if sinos.ndim == 2:
        sinos = sinos[None]
    if sinos.ndim != 3 or 0 in sinos.shape:
        raise ValueError(f"expected sinograms (rows, angles, columns), got shape {sinos.shape}")
    if half_acquisition not in ("off", "auto", "left", "right"):
        raise ParamError(f"half_acquisition: expected off, auto, left or right; got {half_acquisition!r}")
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (sinos.shape[1],):
        raise ValueError(f"theta has {theta.size} angles, the sinograms {sinos.shape[1]}")
    mode = mode_of(theta, half_acquisition)
    side = half_acquisition if half_acquisition in ("left", "right") else None
    window = search_window(sinos.shape[2], mode, side, around)
    rows = list(range(sinos.shape[0])) if rows is None else list(rows)
    curves = [row_curve(s, theta, mode, threads) for s in sinos]
    return combine(curves, rows, mode, window)
