"""``fourier``: filtered backprojection evaluated through a type-1 non-uniform FFT (CPU).

Backprojection of the filtered projections q_a is, by the Fourier slice theorem, the
adjoint of sampling the image's 2-D Fourier transform on polar lines:

    f(x, y) = Σ_a w_a q_a(x cos θ_a + y sin θ_a)
            = Σ_a Σ_k c_ak exp(2πi ω_k (x cos θ_a + y sin θ_a)),     ω_k = k / L_w,

where q_a is written as a trigonometric series of period L_w with coefficients
c_ak = w_a Q_a[k] e^{2πi k (centre − c0)/L_w} / L_w.  The double sum is one 2-D type-1
NUFFT from the polar points (2πω_k cos θ_a, 2πω_k sin θ_a) to the n × n image.  The
series interpolates q band-limitedly, where plain FBP interpolates linearly.

Per pair of slices (one complex row q₁ + i q₂ carries two real slices: the real and
imaginary parts of one NUFFT are the two images; this is how the Hermitian symmetry of
real data halves the work, and it halves the fine-grid FFTs compared with transforming
ω ≥ 0 half-lines slice by slice):

1. FFT of the pair's rows zero-padded to L ≥ 2 × columns, times the filter of
   :mod:`teravox.recon.filters` (DFT of the spatial Ram-Lak kernel × window), inverse
   FFT: the linear convolution of each detector row with the ramp kernel, exact at
   every sample of the window of step 2 (L grows when the window reaches past the
   detector, so that no lag wraps).
2. Crop a window of L_w samples around the rotation axis: pixels within radius R of
   the axis see only |s| ≤ R, so the NUFFT needs L_w ≈ 2R, not L, samples per line.
   R is the square's corner, (n − 1)/√2, or — when the detector's farthest edge is
   nearer — that edge plus a margin: no ray of any angle was measured beyond it, so
   the corners past it are set to 0 rather than extrapolated from zero padding (at
   n = columns this saves a third of the NUFFT points; with the usual padding of the
   detector the whole square is within reach and computed).
3. FFT the window and multiply by a cached factor: angle weight, the phase ramp that
   puts the rotation axis at the origin, the half-pixel shift of an even grid, 1/L_w.
   The Nyquist bin is split in halves at ±1/2 cycle/pixel so the series of a real row
   stays real.
4. Angular resampling of the low frequencies (equally spaced angles only): on a circle
   |ω| = const the polar samples are far denser than the image can resolve there.  The
   pixels' exponentials exp(2πiω r cos(θ − φ)) carry angular harmonics only up to
   B = 2π|ω|·R (plus a Bessel tail), so low-passing the coefficients along the
   circle to |m| < K/2 (K ≥ 2(B + guard)) changes no pixel, and the low-passed sum is
   then exact on K equally spaced nodes.  An FFT along each circle and an inverse FFT
   of length K replace 2·angles points by K; a third fewer NUFFT points at 1.5·n
   angles, exact to the Bessel tail (guard chosen for ~1e-6), and no data are dropped
   (the low-pass averages all angles, so noise is not amplified).
5. One batched finufft type-1 plan (single precision, n_trans = slice pairs of a batch)
   whose points are set once and cached with the geometry for the next call.

Amplitude: with unit pixel spacing, the Ram-Lak convolution and Σ w_a = π give the
attenuation coefficient per pixel, as docs/architecture.md asks.

The geometry (:class:`Layout`) is built with numpy; the per-pair steps are written
against an array namespace ``xp`` and an FFT namespace so that ``fourier_gpu`` runs the
same code with CuPy.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft

from teravox.errors import ParamError
from teravox.recon import filters
from teravox.recon.backends import base

# Extra window samples each side: the series of a cropped row rings near the crop's
# periodic seam, and the margin keeps that ringing off the pixels.
_MARGIN_MIN = 8
# Projection rows per task of steps 1-3: the working row buffers (complex, padded
# length) stay a few MiB, so they live in cache, and threads share out the blocks.
_ANGLE_BLOCK = 128
# Byte cap on one batch's NUFFT buffers (coefficients + finufft fine grid + output).
_BATCH_BYTES = 512 * 2**20
_MAX_PAIRS = 2  # measured: 4 pairs per execute save ~1 % more time than 2, at 2× the buffers
# Geometries (points, factors, plans) kept between calls: a stage calls reconstruct
# once per subchunk with the same angles and centre.
_CACHE_SIZE = 1
# Angular resampling: stop where it would keep more than this share of the points, and
# treat angles as equally spaced while that moves no pixel's phase by more than this
# (radians) at the top of the resampled band.
_RESAMPLE_MAX_SHARE = 0.9
RESAMPLE = True  # switch for tests and measurements: False keeps every polar sample
_UNIFORM_PHASE_TOL = 1e-3


def _even_fast_len(target: int) -> int:
    """Smallest even 5-smooth length ≥ target (pocketfft runs lengths with factors 7 or
    11 up to 25 % slower, measured at 2178 vs 2160 and 4312 vs 4320)."""
    length = sfft.next_fast_len(max(2, target), real=True)
    while length % 2:
        length = sfft.next_fast_len(length + 1, real=True)
    return length


def _margin(n: int) -> int:
    return max(_MARGIN_MIN, n // 64)


def exact_radius(n: int, columns: int, center: float,
                 measured: tuple[int, int] | None = None) -> float:
    """Radius (pixels from the axis) within which the slice is computed exactly.

    The n × n square reaches (n − 1)/√2; the detector reaches no farther from the axis
    than its farthest edge.  Beyond that edge no ray of any angle was measured, so the
    backend computes up to the edge plus a margin and sets what lies farther to 0
    (at n = columns that spares the corners a third of the NUFFT points).
    """
    lo, hi = measured if measured is not None else (0, columns)  # padding measures nothing
    reach = max(center - lo + 0.5, hi - 0.5 - center)
    return min((n - 1) / math.sqrt(2), reach + _margin(n))


def _pad_len(columns: int, win_start: int, win_len: int) -> int:
    """Length L of the filtering FFT: the circular convolution over L equals the linear
    one (detector samples × the ramp kernel) at every window sample when no lag between
    a window sample and a detector column exceeds L/2 — at least 2 × columns, more
    when the window reaches past the detector."""
    lag = max(columns - 1, win_start + win_len - 1, columns - 1 - win_start)
    return _even_fast_len(2 * lag + 2)


def _window_len(radius: float, n: int) -> int:
    half = math.ceil(radius) + _margin(n)
    return _even_fast_len(2 * half + 2)


def layout_bounds(n_angles: int, columns: int, n: int) -> tuple[int, int, int]:
    """Upper bounds on (pad_len, win_len, n_points) of any :func:`make_layout` for these
    sizes with the centre on the detector (0 ≤ center ≤ columns), for memory planning
    before the centre is known."""
    win_len = _window_len((n - 1) / math.sqrt(2), n)
    pad_len = max(_pad_len(columns, int(math.floor(c)) - win_len // 2, win_len) for c in (0, columns))
    # left + right blocks hold ≤ win_len + 2 − k_lo − k_split samples per angle; the
    # resampled bands replace 2·angles samples per |k| < k_split by fewer nodes.
    return pad_len, win_len, n_angles * (win_len + 1) + 1


@dataclass
class Layout:
    """What depends on the geometry but not on the data (numpy arrays on the host).

    Frequencies k are integers, ω = k / win_len cycles/pixel.  The coefficient vector of
    one slice pair holds, in this order: the ``left`` block (angles × k in
    [−L_w/2, −k_lo]), the ``right`` block (angles × k in [k_split, L_w/2]), then each
    resampled band (nodes × |k| in [k0, k1)), then the DC point.  ``k_lo = max(k_split,
    1)``; with ``k_split = 0`` nothing is resampled and k = 0 sits in ``right``.

    The resampled frequencies 0 < |k| < k_split are first gathered on circles: row j of
    the (2·angles, k_split − 1) circle array is the direction θ₀ + jπ/angles, so angle a
    puts +k in row ``top[a]`` and −k in row ``bottom[a]`` (swapped for θ in an odd
    half-turn, whose +k points the other way).
    """

    n_angles: int
    columns: int
    n: int
    center: float
    pad_len: int            # L, even: length of the filtering FFT
    win_len: int            # L_w, even: samples per polar line
    win_start: int          # detector column of window sample 0 (may be < 0)
    k_split: int            # |k| < k_split is angularly resampled (0: none)
    filt: np.ndarray        # float32 (L,): filter on the FFT bins of the padded row
    f_left: np.ndarray      # complex64 (angles, L_w/2 − k_lo + 1)
    f_right: np.ndarray     # complex64 (angles, L_w/2 − k_split + 1)
    f_plus: np.ndarray      # complex64 (angles, k_split − 1): k = 1 … k_split − 1
    f_minus: np.ndarray     # complex64 (angles, k_split − 1): k = −1 … −(k_split − 1)
    f_dc: np.ndarray        # complex64 (angles,): k = 0 (when k_split > 0)
    top: np.ndarray         # int64 (angles,): circle row of +k
    bottom: np.ndarray      # int64 (angles,): circle row of −k
    sorted_rows: bool       # top = arange, bottom = arange + angles (slices suffice)
    bands: list[tuple[int, int, int]] = field(default_factory=list)  # (k0, k1, nodes)
    x: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    y: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    mask: np.ndarray | None = None  # float32 (n, n): 1 within the exact radius, else 0

    @property
    def n_points(self) -> int:
        return int(self.x.size)

    @property
    def k_lo(self) -> int:
        return max(self.k_split, 1)

    def offsets(self) -> dict[str, Any]:
        """Start of each block in the coefficient vector."""
        m = self.n_angles
        left = m * self.f_left.shape[1]
        right = left + m * self.f_right.shape[1]
        bands, pos = [], right
        for k0, k1, nodes in self.bands:
            bands.append(pos)
            pos += nodes * (k1 - k0)
        return {"left": 0, "right": left, "bands": bands, "dc": pos, "end": pos + (self.k_split > 0)}

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays the per-pair steps read (moved to the device by the GPU backend)."""
        return {"filt": self.filt, "f_left": self.f_left, "f_right": self.f_right,
                "f_plus": self.f_plus, "f_minus": self.f_minus, "f_dc": self.f_dc,
                "top": self.top, "bottom": self.bottom}


def _circle_order(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
    """How far the folded angles are from equal spacing over [0, π) (radians, inf when
    they cannot be), their circle order, their half-turn flips, and θ₀."""
    m = theta.size
    turns = np.floor(theta / np.pi)
    folded = theta - turns * np.pi
    order = np.argsort(folded, kind="stable")
    flip = (turns.astype(np.int64) % 2) == 1
    if m < 8:
        return math.inf, order, flip, 0.0
    expected = folded[order[0]] + np.pi / m * np.arange(m)
    return float(np.max(np.abs(folded[order] - expected))), order, flip, float(folded[order[0]])


def _nodes_needed(k: np.ndarray, win_len: int, radius: float) -> np.ndarray:
    """Circle nodes K(k) that represent the angular harmonics at |k| of every NUFFT mode
    within ``radius`` (pixels) exactly.

    The exponential of a mode at radius r has harmonics J_m(2π|ω| r); beyond
    m = z = 2π|ω| r_max they fall off like an Airy function, below 1e-6 by
    m ≈ z + 6 z^(1/3); 8 more for safety.  K/2 must exceed that.
    """
    z = 2 * np.pi * np.abs(k) / win_len * radius
    return 2 * np.ceil(z + 6 * np.cbrt(z) + 8).astype(np.int64) + 2


def _plan_bands(n_angles: int, win_len: int, radius: float) -> tuple[int, list[tuple[int, int, int]]]:
    """k_split and the resampled bands (k0, k1, nodes) for a uniform angle set whose
    modes must be exact within ``radius`` pixels."""
    circle = 2 * n_angles
    ks = np.arange(1, win_len // 2)
    need = _nodes_needed(ks, win_len, radius)
    useful = need <= _RESAMPLE_MAX_SHARE * circle
    if ks.size == 0 or not useful[0]:
        return 0, []
    k_split = int(ks[np.argmin(useful)]) if not useful.all() else win_len // 2
    bands: list[tuple[int, int, int]] = []
    k0 = 1
    while k0 < k_split:
        # A band shares one node count; let it grow by ~6 % so that there are few
        # bands (one FFT call each) and little waste.
        nodes = min(_even_fast_len(int(need[k0 - 1] * 1.06) + 2), circle)
        k1 = k0
        while k1 < k_split and need[k1 - 1] <= nodes:
            k1 += 1
        bands.append((k0, k1, nodes))
        k0 = k1
    return k_split, bands


def make_layout(theta: np.ndarray, columns: int, center: float, n: int,
                filter_name: str, resample: bool = True,
                measured: tuple[int, int] | None = None) -> Layout:
    """Precompute the filter, the window, the polar points and their factors.

    ``measured``: the [first, stop) columns that hold data rather than padding."""
    m = theta.size
    radius = exact_radius(n, columns, center, measured)
    win_len = _window_len(radius, n)
    win_start = int(math.floor(center)) - win_len // 2
    pad_len = _pad_len(columns, win_start, win_len)
    half_spec = filters.rfft_filter(filter_name, pad_len)
    kk = np.arange(pad_len)
    filt = half_spec[np.minimum(kk, pad_len - kk)].astype(np.float32)  # even, full length

    deviation, order, flip, theta0 = _circle_order(theta)
    # Integer NUFFT modes sit up to √2/2 px from the pixels of an even grid.
    mode_radius = min(n / math.sqrt(2), radius + 1)
    k_split, bands = (_plan_bands(m, win_len, mode_radius) if (resample and deviation < math.inf)
                      else (0, []))
    # Resampling treats the angles as exactly equal steps.  A deviation ε (angles read
    # as float32 degrees, encoder jitter) then shifts the phase of a mode at radius r by
    # up to 2π·|ω|·r·ε in the resampled band; above the tolerance the angles are used
    # as they are, with every polar sample.
    if k_split and deviation * 2 * np.pi * (k_split / win_len) * mode_radius > _UNIFORM_PHASE_TOL:
        k_split, bands = 0, []
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    top = np.where(flip, rank + m, rank)
    bottom = np.where(flip, rank, rank + m)

    weights = base.angle_weights(theta)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    # Pixel ix sits at ix − (n−1)/2 = (mode ix − n//2) + delta; finufft's modes are
    # integers, so an even grid needs a half-pixel phase on every point.
    delta = n // 2 - (n - 1) / 2

    def factor(k: np.ndarray) -> np.ndarray:
        omega = 2 * np.pi * k / win_len
        amp = np.where(np.abs(k) == win_len // 2, 0.5, 1.0)  # split Nyquist bin
        phase = omega * (center - win_start)                  # axis at s = 0
        shift = delta * omega[None, :] * (cos_t + sin_t)[:, None]
        return ((weights[:, None] * (amp / win_len)[None, :])
                * np.exp(1j * (phase[None, :] + shift))).astype(np.complex64)

    k_lo = max(k_split, 1)
    k_left = np.arange(-win_len // 2, -k_lo + 1)
    k_right = np.arange(k_split, win_len // 2 + 1)
    k_plus = np.arange(1, k_split) if k_split else np.empty(0, np.int64)
    xs, ys = [], []
    for k in (k_left, k_right):
        omega = 2 * np.pi * k / win_len
        xs.append((omega[None, :] * cos_t[:, None]).astype(np.float32).ravel())
        ys.append((omega[None, :] * sin_t[:, None]).astype(np.float32).ravel())
    for k0, k1, nodes in bands:
        phi = theta0 + 2 * np.pi * np.arange(nodes) / nodes
        omega = 2 * np.pi * np.arange(k0, k1) / win_len
        xs.append((np.cos(phi)[:, None] * omega[None, :]).astype(np.float32).ravel())
        ys.append((np.sin(phi)[:, None] * omega[None, :]).astype(np.float32).ravel())
    if k_split:
        xs.append(np.zeros(1, np.float32))
        ys.append(np.zeros(1, np.float32))
    mask = None
    if radius < (n - 1) / math.sqrt(2):  # the corners lie beyond the detector's reach
        yy, xx = np.ogrid[:n, :n]
        half = (n - 1) / 2
        mask = (np.hypot(xx - half, yy - half) <= radius).astype(np.float32)
    return Layout(m, columns, n, center, pad_len, win_len, win_start, k_split, filt,
                  factor(k_left), factor(k_right), factor(k_plus), factor(-k_plus),
                  factor(np.zeros(1))[:, 0] if k_split else np.empty(0, np.complex64),
                  top, bottom, bool(np.array_equal(top, np.arange(m)) and not flip.any()),
                  bands, np.concatenate(xs), np.concatenate(ys), mask)


# -- the per-pair steps, written for numpy and CuPy alike ------------------------------
class Ops:
    """Array and FFT namespaces: numpy + scipy.fft here, CuPy + cupyx.scipy.fft on GPUs."""

    def __init__(self, xp: Any, fft: Any, workers: int | None = None):
        self.xp, self._fft, self.workers = xp, fft, workers

    def _kw(self) -> dict[str, int]:
        return {"workers": self.workers} if self.workers else {}

    def fft(self, a: Any, axis: int = -1, overwrite: bool = False) -> Any:
        return self._fft.fft(a, axis=axis, overwrite_x=overwrite, **self._kw())

    def ifft(self, a: Any, axis: int = -1, overwrite: bool = False) -> Any:
        return self._fft.ifft(a, axis=axis, overwrite_x=overwrite, **self._kw())


def spectra_block(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
                  zbuf: Any, vec: Any, circle: Any, dc: Any) -> None:
    """Steps 1-3 for angles [a0, a1) of one slice pair.

    ``pair`` (2, angles, columns) float32 on the namespace's device (the second slice may
    be zeros); ``arrs`` = :meth:`Layout.arrays` on that device; ``zbuf`` a complex64
    scratch of at least (a1 − a0, L).  Coefficients go to the blocks of ``vec``; those
    with 0 < |k| < k_split to the rows of ``circle`` (2·angles, k_split − 1) and those at
    k = 0 to ``dc`` (angles,).
    """
    xp = ops.xp
    L, Lw, cols = lay.pad_len, lay.win_len, lay.columns
    na = a1 - a0
    z = zbuf[:na, :L]
    z.real[:, :cols] = pair[0, a0:a1]
    z.imag[:, :cols] = pair[1, a0:a1]
    z[:, cols:] = 0
    z = ops.fft(z, overwrite=True)
    z *= arrs["filt"]
    z = ops.ifft(z, overwrite=True)
    start = lay.win_start % L
    if start + Lw <= L:
        w = z[:, start:start + Lw]
    else:  # the window wraps around the period of the padded row
        w = xp.concatenate([z[:, start:], z[:, : Lw - (L - start)]], axis=1)
    spec = ops.fft(w, overwrite=True)  # fftfreq order: k = 0 … Lw/2−1, −Lw/2 … −1
    m, h = lay.n_angles, Lw // 2
    k_lo, ks = lay.k_lo, lay.k_split
    off = lay.offsets()
    nl, nr = lay.f_left.shape[1], lay.f_right.shape[1]
    left = vec[off["left"]: off["right"]].reshape(m, nl)
    right = vec[off["right"]: off["right"] + m * nr].reshape(m, nr)
    xp.multiply(spec[:, h: Lw - k_lo + 1], arrs["f_left"][a0:a1], out=left[a0:a1])
    xp.multiply(spec[:, ks:h], arrs["f_right"][a0:a1, : nr - 1], out=right[a0:a1, : nr - 1])
    xp.multiply(spec[:, h], arrs["f_right"][a0:a1, nr - 1], out=right[a0:a1, nr - 1])
    if not ks:
        return
    xp.multiply(spec[:, 0], arrs["f_dc"][a0:a1], out=dc[a0:a1])
    if ks < 2:
        return
    plus, minus = spec[:, 1:ks], spec[:, Lw - 1: Lw - ks: -1]  # k = 1 … and −1 …
    if lay.sorted_rows:  # the usual case: angles in order within one half-turn
        xp.multiply(plus, arrs["f_plus"][a0:a1], out=circle[a0:a1])
        xp.multiply(minus, arrs["f_minus"][a0:a1], out=circle[m + a0: m + a1])
    else:
        circle[arrs["top"][a0:a1]] = plus * arrs["f_plus"][a0:a1]
        circle[arrs["bottom"][a0:a1]] = minus * arrs["f_minus"][a0:a1]


def resample_low(ops: Ops, lay: Layout, circle: Any, dc: Any, vec: Any) -> None:
    """Step 4: low-pass the circles 0 < |k| < k_split to K harmonics and resample them.

    ``circle`` (2·angles, k_split − 1) is overwritten.  Band (k0, k1, K) becomes K nodes
    × (k1 − k0) radii, node-major, in ``vec``; the DC point gets the sum of ``dc``.
    """
    ks = lay.k_split
    if not ks:
        return
    off = lay.offsets()
    vec[off["dc"]: off["dc"] + 1] = dc.sum(keepdims=True)  # one point carries every angle
    if ks < 2:
        return
    spec = ops.fft(circle, axis=0, overwrite=True)
    p = 2 * lay.n_angles
    for (k0, k1, nodes), start in zip(lay.bands, off["bands"], strict=True):
        cols = slice(k0 - 1, k1 - 1)
        out = vec[start: start + nodes * (k1 - k0)].reshape(nodes, k1 - k0)
        if nodes >= p:  # no reduction: back to the circle's own nodes
            out[...] = ops.ifft(spec[:, cols], axis=0)
            continue
        keep = nodes // 2 - 1  # harmonics |m| ≤ keep; the Nyquist harmonic is dropped
        out[: keep + 1] = spec[: keep + 1, cols]
        out[keep + 1: nodes - keep] = 0
        out[nodes - keep:] = spec[p - keep:, cols]
        # ifft's 1/K is the node weight ratio (2π/K)/(2π/2·angles) times the forward
        # transform's missing 1/(2·angles).
        res = ops.ifft(out, axis=0, overwrite=True)
        if res is not out:
            out[...] = res


# -- CPU driver ---------------------------------------------------------------------------
class _Cached:
    """A layout, its device-free arrays and its finufft plan, guarded by a lock."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.arrs = layout.arrays()
        self.plan: Any = None
        self.plan_key: tuple | None = None
        self.lock = threading.Lock()


_cache = base.LruCache(_CACHE_SIZE)


def _cached_layout(theta: np.ndarray, columns: int, center: float, n: int,
                   filter_name: str, measured: tuple[int, int] | None = None) -> _Cached:
    key = (theta.tobytes(), columns, center, n, filter_name, RESAMPLE, measured)
    return _cache.get(key, lambda: _Cached(make_layout(theta, columns, center, n, filter_name, RESAMPLE,
                                                       measured)))


def clear_cache() -> None:
    """Forget cached geometries and plans (frees their memory)."""
    _cache.clear()


def _fine_grid_bytes(n: int, upsampfac: float) -> int:
    return (math.ceil(upsampfac * n) + 16) ** 2 * 8


def pairs_per_batch(n_points: int, n: int, n_pairs: int, upsampfac: float) -> int:
    """Slice pairs per NUFFT execute: within the byte cap, and dividing ``n_pairs`` so
    that no execute transforms padding (batching gains only a few per cent)."""
    per_pair = n_points * 8 + _fine_grid_bytes(n, upsampfac) + n * n * 8
    batch = int(max(1, min(n_pairs, _MAX_PAIRS, _BATCH_BYTES // per_pair)))
    while n_pairs % batch:
        batch -= 1
    return batch


def workspace_bytes(n_angles: int, columns: int, n: int, slices: int,
                    upsampfac: float = 1.25, threads: int = 1) -> int:
    """Rough peak bytes of one call besides its input and output (for memory planning).

    Counts the cached geometry (points, factors, finufft's sort index), one batch of
    coefficients, fine grids and complex images, and the per-thread row buffers.
    """
    win = _window_len((n - 1) / math.sqrt(2), n)
    pad = _pad_len(columns, columns // 2 - win // 2, win)
    points = n_angles * (win + 1)  # upper bound: without angular resampling
    cached = points * (4 + 4 + 8 + 8)
    pairs = pairs_per_batch(points, n, (slices + 1) // 2, upsampfac)
    batch = pairs * (points * 8 + _fine_grid_bytes(n, upsampfac) + n * n * 8)
    low = n_angles * win * 8  # circle scratch of the resampling (≤ 2·angles × win/2)
    rows = max(1, threads) * _ANGLE_BLOCK * (pad + win) * 8
    return int(cached + batch + low + rows)


def check_nufft_params(eps: float, upsampfac: float) -> None:
    """ParamError for a tolerance or upsampling factor the NUFFT cannot honour."""
    if not (1e-7 <= eps < 1):
        raise ParamError(f"fourier_eps must be in [1e-7, 1) for single-precision NUFFTs, got {eps}")
    if not (1.1 <= upsampfac <= 2.5):
        raise ParamError(f"fourier_upsampfac must be between 1.1 and 2.5 (1.25 or 2.0), got {upsampfac}")


def check_common(filter_name: str, eps: float, upsampfac: float, algorithm: str, backend: str) -> None:
    """The parameter checks both Fourier backends share."""
    filters.check_filter(filter_name)
    check_nufft_params(eps, upsampfac)
    if algorithm not in ("fbp", "gridrec"):
        raise ParamError(f"algorithm {algorithm!r} is not offered by the {backend} backend "
                         "(it computes filtered backprojection: fbp)")


def _plan(entry: _Cached, n_trans: int, eps: float, upsampfac: float, threads: int) -> Any:
    import finufft

    key = (n_trans, eps, upsampfac, threads)
    if entry.plan_key != key:
        lay = entry.layout
        entry.plan = None  # free the old plan's sorted points first
        plan = finufft.Plan(1, (lay.n, lay.n), n_trans=n_trans, eps=eps, isign=1,
                            dtype="complex64", nthreads=threads, upsampfac=upsampfac,
                            showwarn=0)
        # finufft's first coordinate indexes the first output axis: y, x gives img[iy, ix].
        plan.setpts(lay.y, lay.x)
        entry.plan, entry.plan_key = plan, key
    return entry.plan


_local = threading.local()


def _row_buffer(rows: int, length: int) -> np.ndarray:
    """A per-thread complex64 scratch of at least (rows, length), reused across calls."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[0] < rows or buf.shape[1] != length:
        buf = np.empty((rows, length), dtype=np.complex64)
        _local.buf = buf
    return buf


def reconstruct(sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
                filter_name: str = "ramp", threads: int = 0, eps: float = 1e-6,
                upsampfac: float = 1.25, algorithm: str = "fbp",
                measured: tuple[int, int] | None = None) -> np.ndarray:
    """Filtered backprojection of (slices, angles, columns) line integrals via a NUFFT.

    theta in radians; center = rotation-axis column (0-based, pixel i centred at i);
    returns (slices, n, n) float32 attenuation per pixel on the grid centred on the axis.
    ``measured`` = [first, stop) columns holding data (the rest is padding): pixels
    beyond the reach of those columns are set to 0 rather than computed.
    """
    sinos, theta, center, n = base.check_inputs(sinos, theta, center, n)
    check_common(filter_name, eps, upsampfac, algorithm, "fourier")
    workers = base.resolve_threads(threads)
    n_slices = sinos.shape[0]
    result = np.empty((n_slices, n, n), dtype=np.float32)
    if n_slices == 0:
        return result
    entry = _cached_layout(theta, sinos.shape[2], center, n, filter_name,
                           None if measured is None else (int(measured[0]), int(measured[1])))
    lay = entry.layout
    n_pairs = (n_slices + 1) // 2
    batch = pairs_per_batch(lay.n_points, n, n_pairs, upsampfac)
    ops = Ops(np, sfft, workers=1)       # threads go to angle blocks, not inside an FFT
    ops_wide = Ops(np, sfft, workers=workers)
    blocks = [(a, min(a + _ANGLE_BLOCK, lay.n_angles)) for a in range(0, lay.n_angles, _ANGLE_BLOCK)]
    circle = np.empty((2 * lay.n_angles, max(0, lay.k_split - 1)), dtype=np.complex64)
    dc = np.empty(lay.n_angles if lay.k_split else 0, dtype=np.complex64)
    with entry.lock, ThreadPoolExecutor(max_workers=workers) as pool:
        plan = _plan(entry, batch, eps, upsampfac, workers)
        coef = np.empty((batch, lay.n_points), dtype=np.complex64)
        image = np.empty((batch, n, n), dtype=np.complex64)
        for p0 in range(0, n_pairs, batch):
            for b in range(batch):
                s0 = 2 * (p0 + b)
                pair = sinos[s0: s0 + 2]
                if pair.shape[0] == 1:
                    pair = np.concatenate([pair, np.zeros_like(pair)])

                def task(block: tuple[int, int], pair: np.ndarray = pair, vec: np.ndarray = coef[b]) -> None:
                    a0, a1 = block
                    spectra_block(ops, lay, entry.arrs, pair, a0, a1,
                                  _row_buffer(_ANGLE_BLOCK, lay.pad_len), vec, circle, dc)

                list(pool.map(task, blocks))
                resample_low(ops_wide, lay, circle, dc, coef[b])
            plan.execute(coef, out=image)
            for b in range(batch):
                s0 = 2 * (p0 + b)
                for part, s in ((image[b].real, s0), (image[b].imag, s0 + 1)):
                    if s >= n_slices:
                        break
                    if lay.mask is None:
                        result[s] = part
                    else:  # zero beyond the detector's reach, in the same pass
                        np.multiply(part, lay.mask, out=result[s])
    return result


class FourierBackend(base.BackendBase):
    """CPU default: NUFFT-based filtered backprojection with finufft."""

    name = "fourier"
    hardware = "CPU (finufft)"

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        try:
            import finufft  # noqa: F401
        except ImportError as exc:
            return f"finufft does not import: {exc}"
        return ""

    def reconstruct(self, sinos: np.ndarray, theta: np.ndarray, center: float, **kw: Any) -> np.ndarray:
        return reconstruct(sinos, theta, center, **kw)
