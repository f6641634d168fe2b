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
ω ≥ 0 half-lines slice by slice).  A slice without a partner (a one-slice call, the
last of an odd count) is transformed alone on its ω ≥ 0 half-lines and half-circles
(:class:`~teravox.recon.backends.fourier_layout.Layout`, ``half``): half the NUFFT
points of a pair, instead of a pair with a zero slice.

1. Filter the pair's rows (edge- or zero-padded here when the caller asks for padding:
   no padded copy of the sinograms is made) with the filter of
   :mod:`teravox.recon.filters` (DFT of the spatial Ram-Lak kernel × window): the linear
   convolution of each detector row with the ramp kernel, exact at every sample of the
   window of step 2.  When the data's columns lie within the window (the usual case: the
   square's corners reach past the detector), no lag between a data and a window sample
   exceeds L_w, so the filtering runs at period 2·L_w and only the window's samples are
   transformed: four FFTs of L_w (fourier_layout.fold_filter).  Otherwise (a small
   slice of a wide detector) the row is zero-padded to L ≥ columns + L_w (no lag wraps),
   filtered by an FFT pair of L and the window cropped.
2. The window: L_w samples around the rotation axis: pixels within radius R of
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
5. One type-1 NUFFT per pair (:class:`~teravox.recon.backends.fourier_nufft.Type1`:
   ducc0's, single precision, to the tolerance ``eps``), whose points are set once and
   cached with the geometry for the next call.

The pairs of a call are shared out to lanes (:func:`lanes_for`): each lane runs steps 1-5
of one pair at a time in its own threads, so that no core waits on another's share of a
step, and lanes write their slices as they finish them.

**Tiles** (``tile``: the largest tile side in pixels; the plan sets it from the memory
budget).  A whole slice needs its n × n image, its fine grid and ~angles × L_w
coefficients at once: ~43 GiB at 24608² with 24000 angles.  With tiles, step 2 keeps
the whole slice's series C resampled at 1/1.125 pixel (one row per angle; one real row
for a single slice), the sinograms are dropped (when handed over, :class:`base.Handover`),
and each t × t tile is one NUFFT about its own centre: each angle's series is cropped
around the tile's shadow, tapered, transformed and multiplied by factors built per
block of angles (the phase of the tile's offset included), then angularly resampled
for the tile's radius and transformed to t × t; finished tiles go to ``out``.  The
tile sees exactly the whole slice's series on its shadow, so the tiled slice equals
the untiled one to ~1e-6 of its range (fourier_layout explains why the series is
resampled rather than cropped).  The working set is then the resampled series plus
one tile's points, circles and fine grid: :func:`memory` gives it, :func:`tile_for`
the largest tile within a budget.

Amplitude: with unit pixel spacing, the Ram-Lak convolution and Σ w_a = π give the
attenuation coefficient per pixel, as docs/architecture.md asks.

The geometry (:mod:`~teravox.recon.backends.fourier_layout`) is built with numpy; the
per-pair steps are written against an array namespace ``xp`` and an FFT namespace so
that ``fourier_gpu`` runs the same code with CuPy.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from teravox.errors import ParamError
from teravox.recon import filters
from teravox.recon.backends import base
from teravox.recon.backends.fourier_layout import (
    Layout,
    Tile,
    angle_deviation,
    bands_for,
    count_points,
    exact_radius,
    layout_bounds,
    make_layout,
    phase_factors,
    place,
    tile_grid,
    tile_line,
    whole_window,
)
from teravox.recon.backends.fourier_nufft import Type1, grid_bytes

__all__ = ["FourierBackend", "Layout", "Memory", "Ops", "clear_cache", "exact_radius", "layout_bounds",
           "make_layout", "memory", "reconstruct", "resample_low", "spectra_block", "tile_for", "angle_deviation"]

# Projection rows per task of steps 1-3: the working row buffers (complex, padded
# length) stay a few MiB, so they live in cache, and threads share out the blocks.
_ANGLE_BLOCK = 128
# Geometries (points, factors, plans) kept between calls: a stage calls reconstruct
# once per subchunk with the same angles and centre; one layout for pairs, one for a
# single slice.
_CACHE_SIZE = 2
RESAMPLE = True  # switch for tests and measurements: False keeps every polar sample
MIN_TILE = 256  # smaller tiles spend more on their tapered margins than on pixels
CALL_BYTES = 8 * 2**20  # a call's threads, small arrays and plans (measured at 1024²)
PLAN_POINT_BYTES = 12  # a NUFFT plan keeps each point's coordinates and its place in the sort (measured)
PAD_MODES = ("edge", "zero")


# -- the per-pair steps, written for numpy and CuPy alike ------------------------------
class Ops:
    """Array and FFT namespaces: numpy + :class:`DuccFFT` here, CuPy + cupyx.scipy.fft on GPUs."""

    def __init__(self, xp: Any, fft: Any, workers: int | None = None):
        self.xp, self._fft, self.workers = xp, fft, workers

    def _kw(self) -> dict[str, int]:
        return {"workers": self.workers} if self.workers else {}

    def fft(self, a: Any, axis: int = -1, overwrite: bool = False) -> Any:
        return self._fft.fft(a, axis=axis, overwrite_x=overwrite, **self._kw())

    def ifft(self, a: Any, axis: int = -1, overwrite: bool = False) -> Any:
        return self._fft.ifft(a, axis=axis, overwrite_x=overwrite, **self._kw())


class DuccFFT:
    """scipy.fft's ``fft``/``ifft`` on ducc0's c2c, for every FFT of the CPU backend (all
    along rows): its wheels dispatch to the CPU's vector width (one thread: 1.27 against
    pocketfft's 1.79 ms for 128 rows of 2250; 26 against 41 ms for the 905 circles of
    6144 of a 2048² slice pair)."""

    @staticmethod
    def fft(a: np.ndarray, axis: int = -1, overwrite_x: bool = False, workers: int = 1) -> np.ndarray:
        import ducc0

        return ducc0.fft.c2c(a, axes=(axis,), forward=True, out=a if overwrite_x else None, nthreads=workers)

    @staticmethod
    def ifft(a: np.ndarray, axis: int = -1, overwrite_x: bool = False, workers: int = 1) -> np.ndarray:
        import ducc0

        return ducc0.fft.c2c(a, axes=(axis,), forward=False, inorm=2, out=a if overwrite_x else None,
                             nthreads=workers)


class Scratch:
    """Per-thread work buffers of one phase of a call, freed with it."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def get(self, name: str, length: int, dtype: Any = np.complex64) -> np.ndarray:
        """This thread's (angle block, length) buffer called ``name``."""
        key = (threading.get_ident(), name)
        with self._lock:
            buf = self._bufs.get(key)
        if buf is None:
            buf = np.empty((_ANGLE_BLOCK, length), dtype=dtype)
            with self._lock:
                self._bufs[key] = buf
        return buf


def filtered_rows(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
                  zbuf: Any) -> Any:
    """Step 1 for angles [a0, a1): rows of ``pair`` (1 or 2, angles, data columns) as one
    complex row (slice 0 real, slice 1 imaginary), padded as the layout says, convolved
    with the filter kernel; complex64 (a1 − a0, L) in ``zbuf``'s memory."""
    L, w, cols = lay.pad_len, lay.pad_width, pair.shape[2]
    z = zbuf[: a1 - a0, :L]
    z.real[:, w:w + cols] = pair[0, a0:a1]
    if pair.shape[0] > 1:
        z.imag[:, w:w + cols] = pair[1, a0:a1]
    else:
        z.imag[:, w:w + cols] = 0
    if w and lay.pad_mode == "edge":  # as sinogram.pad: the outermost column repeated
        z[:, :w] = z[:, w:w + 1]
        z[:, w + cols: 2 * w + cols] = z[:, w + cols - 1: w + cols]
    else:
        z[:, :w] = 0
        z[:, w + cols: 2 * w + cols] = 0
    z[:, 2 * w + cols:] = 0
    z = ops.fft(z, overwrite=True)
    z *= arrs["filt"]
    return ops.ifft(z, overwrite=True)


def _cropped_spectra(ops: Ops, lay: Layout, z: Any) -> Any:
    """Step 2: the L_w window around the axis of filtered rows ``z``, and its FFT."""
    L, Lw = lay.pad_len, lay.win_len
    start = lay.win_start % L
    if start + Lw <= L:
        w = z[:, start:start + Lw]
    else:  # the window wraps around the period of the padded row
        w = ops.xp.concatenate([z[:, start:], z[:, : Lw - (L - start)]], axis=1)
    return ops.fft(w, overwrite=True)  # fftfreq order: k = 0 … Lw/2−1, −Lw/2 … −1


def _folded_spectra(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
                    zbuf: Any) -> Any:
    """Steps 1-2 with the data within the window (``lay.fold``): the window's spectrum of
    the filtered rows, as fourier_layout.fold_filter writes it, in ``zbuf``'s memory
    (C-contiguous, ≥ 2 × (a1 − a0) × L_w elements)."""
    na, lw, cols = a1 - a0, lay.win_len, pair.shape[2]
    off = lay.pad_width - lay.win_start  # the window sample of data column 0
    both = zbuf.reshape(-1)[: 2 * na * lw].reshape(2, na, lw)
    odd, even = both
    odd[:, :off] = 0
    odd[:, off + cols:] = 0
    odd.real[:, off:off + cols] = pair[0, a0:a1]
    odd.imag[:, off:off + cols] = pair[1, a0:a1] if pair.shape[0] > 1 else 0
    even[...] = odd
    edge = lay.pad_width and lay.pad_mode == "edge"
    ends = odd[:, [off, off + cols - 1]] if edge else None  # the padding repeats these
    odd[:, off:off + cols] *= arrs["fold_in"][off:off + cols]
    odd = ops.fft(odd, overwrite=True)
    odd *= arrs["fold_odd"]
    odd = ops.ifft(odd, overwrite=True)
    odd *= arrs["fold_out"]
    spec = ops.fft(odd, overwrite=True)
    even = ops.fft(even, overwrite=True)
    even *= arrs["fold_even"]
    spec += even
    if ends is not None:  # by broadcasting: a matrix product would start BLAS threads beside the lanes
        spec += ends[:, :1] * arrs["pad_spec"][0]
        spec += ends[:, 1:] * arrs["pad_spec"][1]
    return spec


def window_spectra(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
                   zbuf: Any) -> Any:
    """Steps 1-2 for angles [a0, a1): the FFT of the L_w window around the axis of the
    filtered rows (fftfreq order), complex64 (a1 − a0, L_w); ``zbuf`` is a C-contiguous
    complex64 scratch of at least (a1 − a0, L)."""
    if lay.fold is not None:
        return _folded_spectra(ops, lay, arrs, pair, a0, a1, zbuf)
    return _cropped_spectra(ops, lay, filtered_rows(ops, lay, arrs, pair, a0, a1, zbuf))


def put_spectra(xp: Any, lay: Layout, arrs: dict[str, Any], spec: Any, a0: int, a1: int,
                vec: Any, circle: Any, dc: Any) -> None:
    """Step 3: polar-line spectra ``spec`` (a1 − a0, N; fftfreq order) times their factors,
    into the blocks of ``vec``; 0 < |k| < k_split into the columns of ``circle``
    (k_split − 1, 2·angles) and k = 0 into ``dc`` (angles,).

    With cached factors (the whole slice) each block is multiplied into place; without
    (tiles), ``spec`` must already carry them (:func:`apply_factors`) and is copied."""
    m, N = lay.n_angles, lay.crop_len
    ks, k_lo, k_max = lay.k_split, lay.k_lo, lay.k_max
    off = lay.offsets()
    cached = lay.factors is not None

    def put(src: Any, name: str, dst: Any) -> None:
        if cached:
            xp.multiply(src, arrs[name][a0:a1], out=dst)
        else:
            dst[...] = src

    if not lay.half and k_max >= k_lo:
        left = vec[off["left"]: off["right"]].reshape(m, k_max - k_lo + 1)
        put(spec[:, N - k_max: N - k_lo + 1], "f_left", left[a0:a1])
    if k_max >= ks:
        nr = k_max - ks + 1
        right = vec[off["right"]: off["right"] + m * nr].reshape(m, nr)
        put(spec[:, ks: k_max + 1], "f_right", right[a0:a1])
        if lay.half and not cached:  # the k ≥ 0 half of a real slice counts twice (DC once)
            right[a0:a1, int(ks == 0):] *= 2
    if not ks:
        return
    put(spec[:, 0], "f_dc", dc[a0:a1])
    if ks < 2:
        return
    plus, minus = spec[:, 1:ks], spec[:, N - 1: N - ks: -1]  # k = 1 … and −1 …
    if lay.sorted_rows:  # the usual case: angles in order within one half-turn
        cols = (slice(a0, a1), slice(m + a0, m + a1))
    else:
        cols = (arrs["top"][a0:a1], arrs["bottom"][a0:a1])
    # Circles are rows: the block is multiplied in its own order, then transposed into
    # place (multiplying straight into the transposed view is 4× slower, measured).
    for src, name, at in ((plus, "f_plus", cols[0]), (minus, "f_minus", cols[1])):
        circle[:, at] = (src * arrs[name][a0:a1] if cached else src).T


def spectra_block(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
                  zbuf: Any, vec: Any, circle: Any, dc: Any) -> None:
    """Steps 1-3 of the whole slice for angles [a0, a1) of one slice pair (or one slice
    with a ``half`` layout).

    ``pair`` (2 or 1, angles, data columns) float32 on the namespace's device; ``arrs`` =
    :meth:`Layout.arrays` on that device; ``zbuf`` a complex64 scratch of at least
    (a1 − a0, L).  See :func:`put_spectra` for ``vec``, ``circle`` and ``dc``.
    """
    put_spectra(ops.xp, lay, arrs, window_spectra(ops, lay, arrs, pair, a0, a1, zbuf), a0, a1, vec, circle, dc)


def line_block(ops: Ops, lay: Layout, arrs: dict[str, Any], pair: Any, a0: int, a1: int,
               zbuf: Any, ubuf: Any, line: Any) -> None:
    """Steps 1-2 for tiles, angles [a0, a1): the whole slice's series of each row
    resampled at spacing L_w / L_u (zero-padding its spectrum, the Nyquist bin split),
    into ``line`` (angles, L_u): complex64 for a pair, float32 for one slice."""
    spec = window_spectra(ops, lay, arrs, pair, a0, a1, zbuf)
    Lw, Lu, h = lay.win_len, lay.line_len, lay.win_len // 2
    up = ubuf[: a1 - a0, :Lu]
    up[:, :h] = spec[:, :h]
    up[:, h + 1: Lu - h] = 0
    up[:, Lu - h + 1:] = spec[:, h + 1:]
    up[:, h] = spec[:, h] * 0.5
    up[:, Lu - h] = up[:, h]
    g = ops.ifft(up, overwrite=True)
    scale = np.float32(Lu / Lw)  # ifft divides by L_u, the series by L_w
    if line.dtype.kind == "c":
        ops.xp.multiply(g, scale, out=line[a0:a1])
    else:
        ops.xp.multiply(g.real, scale, out=line[a0:a1])


def _crop(line: np.ndarray, starts: np.ndarray, a0: int, out: np.ndarray) -> None:
    """out[i] = line[a0 + i, starts[i] : starts[i] + N], the series read periodically."""
    length, crop = line.shape[1], out.shape[1]
    for i, start in enumerate(starts.tolist()):
        pos, start = 0, start % length
        while pos < crop:  # a crop longer than the series wraps more than once
            take = min(crop - pos, length - start)
            out[i, pos:pos + take] = line[a0 + i, start:start + take]
            pos, start = pos + take, 0


def apply_factors(lay: Layout, arrs: dict[str, Any], spec: np.ndarray, a0: int, a1: int,
                  phase: np.ndarray, fac: np.ndarray) -> None:
    """spec *= c_ak / FFT[k] of fourier_layout's docstring, for every k of a tile's
    polar lines (fftfreq order), built here per block of angles; ``phase`` (float32) and
    ``fac`` (complex64) are scratch of spec's shape."""
    N = lay.crop_len
    phase_factors(arrs["frac"][a0:a1], np.fft.fftfreq(N, 1 / N), lay.period, phase, fac)
    spec *= fac
    sign = np.where(np.arange(N) % 2 == 0, np.float32(1), np.float32(-1))  # (−1)^k: N is even
    np.multiply(arrs["weights"][a0:a1, None] / np.float32(N), sign, out=phase)
    spec *= phase


def tile_spectra_block(ops: Ops, lay: Layout, arrs: dict[str, Any], line: np.ndarray, a0: int, a1: int,
                       vec: np.ndarray, circle: np.ndarray, dc: np.ndarray, scratch: Scratch) -> None:
    """Step 3 of a tile, angles [a0, a1) (CPU): each series cropped around the tile's
    shadow, tapered, transformed and multiplied by its factors, into the coefficient
    blocks (see :func:`put_spectra`)."""
    na, N = a1 - a0, lay.crop_len
    crop = scratch.get("crop", N)[:na]
    _crop(line, arrs["crop_start"][a0:a1], a0, crop)
    crop *= arrs["taper"]
    spec = ops.fft(crop, overwrite=True)
    fac = scratch.get("fac", N)[:na]
    phase = scratch.get("phase", N, np.float32)[:na]
    apply_factors(lay, arrs, spec, a0, a1, phase, fac)
    put_spectra(np, lay, arrs, spec, a0, a1, vec, circle, dc)


def resample_low(ops: Ops, lay: Layout, circle: Any, dc: Any, vec: Any) -> None:
    """Step 4: low-pass the circles 0 < |k| < k_split to K harmonics and resample them.

    ``circle`` (k_split − 1, 2·angles) is overwritten.  Band (k0, k1, K) becomes
    (k1 − k0) radii × K nodes, radius-major, in ``vec`` (the first K/2 nodes, doubled, for one
    real slice); the DC point gets the sum of ``dc``.
    """
    ks = lay.k_split
    if not ks:
        return
    off = lay.offsets()
    vec[off["dc"]: off["dc"] + 1] = dc.sum(keepdims=True)  # one point carries every angle
    if ks < 2:
        return
    spec = ops.fft(circle, overwrite=True)
    p = 2 * lay.n_angles
    for (k0, k1, nodes), start in zip(lay.bands, off["bands"], strict=True):
        rows = slice(k0 - 1, k1 - 1)
        kept = nodes // 2 if lay.half else nodes
        out = vec[start: start + kept * (k1 - k0)].reshape(k1 - k0, kept)
        if nodes >= p:  # no reduction: back to the circle's own nodes
            res = ops.ifft(spec[rows])
        else:
            keep = nodes // 2 - 1  # harmonics |m| ≤ keep; the Nyquist harmonic is dropped
            low = out if not lay.half else ops.xp.empty((k1 - k0, nodes), out.dtype)
            low[:, : keep + 1] = spec[rows, : keep + 1]
            low[:, keep + 1: nodes - keep] = 0
            low[:, nodes - keep:] = spec[rows, p - keep:]
            # ifft's 1/K is the node weight ratio (2π/K)/(2π/2·angles) times the forward
            # transform's missing 1/(2·angles).
            res = ops.ifft(low, overwrite=True)
        if lay.half:
            ops.xp.multiply(res[:, :kept], 2, out=out)
        elif res is not out:
            out[...] = res


# -- CPU driver ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """One call's geometry, as the backend sees it (virtual padding included)."""

    theta: np.ndarray
    columns: int
    center: float
    n: int
    filter_name: str
    measured: tuple[int, int] | None
    pad: tuple[int, str] | None

    def key(self, *extra: Any) -> tuple:
        return (self.theta.tobytes(), self.columns, self.center, self.n, self.filter_name, RESAMPLE,
                self.measured, self.pad, *extra)

    def layout(self, **kw: Any) -> Layout:
        return make_layout(self.theta, self.columns, self.center, self.n, self.filter_name, RESAMPLE,
                           self.measured, pad=self.pad, **kw)


class _Cached:
    """A layout, its device-free arrays and its NUFFT plans (one per lane), guarded by a lock."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.arrs = layout.arrays()
        self.plans: list[Type1] = []
        self.plan_key: tuple | None = None
        self.lock = threading.Lock()


_cache = base.LruCache(_CACHE_SIZE)


def _cached_layout(geo: Geometry, half: bool) -> _Cached:
    return _cache.get(geo.key(half), lambda: _Cached(geo.layout(half=half)))


def clear_cache() -> None:
    """Forget cached geometries and plans (frees their memory)."""
    _cache.clear()


def _execute_bytes(n: int, eps: float) -> int:
    """What one NUFFT execute (:class:`fourier_nufft.Type1`) allocates for an n × n
    image: ducc0's oversampled grid (its spreading buffers are per thread and small:
    a 2048² execute's peak was 1.3 MiB above its 78.1 MiB grid)."""
    return grid_bytes(n, eps)


def check_nufft_params(eps: float, upsampfac: float) -> None:
    """ParamError for a tolerance or upsampling factor the NUFFT cannot honour."""
    if not (5e-7 <= eps < 1):  # ducc0's single-precision kernels reach 4.5e-7 at best
        raise ParamError(f"fourier_eps must be in [5e-7, 1) for single-precision NUFFTs, got {eps}")
    if not (1.1 <= upsampfac <= 2.5):
        raise ParamError(f"fourier_upsampfac must be between 1.1 and 2.5 (1.25 or 2.0), got {upsampfac}")


def check_common(filter_name: str, eps: float, upsampfac: float, algorithm: str, backend: str) -> None:
    """The parameter checks both Fourier backends share."""
    filters.check_filter(filter_name)
    check_nufft_params(eps, upsampfac)
    if algorithm not in ("fbp", "gridrec"):
        raise ParamError(f"algorithm {algorithm!r} is not offered by the {backend} backend "
                         "(it computes filtered backprojection: fbp)")


def geometry(data_shape: tuple[int, ...], theta: np.ndarray, center: float, n: int, filter_name: str,
             measured: tuple[int, int] | None, pad: tuple[int, str] | None) -> Geometry:
    """The geometry the backend sees for (slices, angles, columns) data padded by ``pad``
    = (width each side, "edge" | "zero"): centre and measured columns move by the width;
    padding measures nothing."""
    width, mode = pad if pad else (0, "edge")
    if width < 0 or mode not in PAD_MODES:
        raise ParamError(f"pad: expected (width ≥ 0, one of {', '.join(PAD_MODES)}), got {pad!r}")
    cols = int(data_shape[2])
    if measured is not None:
        measured = (int(measured[0]) + width, int(measured[1]) + width)
    elif width:
        measured = (width, width + cols)
    return Geometry(theta, cols + 2 * width, center + width, n, filter_name, measured,
                    (int(width), mode) if width else None)


def _new_plan(shape: tuple[int, int], eps: float, threads: int, lay: Layout) -> Type1:
    # the first coordinate indexes the first output axis: y, x gives img[iy, ix]
    return Type1(shape, lay.y, lay.x, eps, threads)


def _plans(entry: _Cached, count: int, eps: float, threads: int) -> list[Type1]:
    """``count`` plans of the entry's layout (one per lane), cached with it."""
    key = (eps, threads)
    if entry.plan_key != key:
        entry.plans = []  # free the old plans' sorted points first
        entry.plan_key = key
    lay = entry.layout
    while len(entry.plans) < count:
        entry.plans.append(_new_plan((lay.n, lay.n), eps, threads, lay))
    return entry.plans[:count]


def _blocks(m: int) -> list[tuple[int, int]]:
    return [(a, min(a + _ANGLE_BLOCK, m)) for a in range(0, m, _ANGLE_BLOCK)]


def _emit(out: Any, s: int, tile: Tile, image: np.ndarray, reach: np.ndarray | None,
          buf: np.ndarray | None = None) -> None:
    """Write one slice's tile (a real or imaginary part of a NUFFT image) to ``out``,
    zero beyond the detector's reach (``reach``: per row the columns within it);
    ``buf``: a float32 scratch of the tile's shape when ``out`` is not an array."""
    region = (s, slice(tile.y0, tile.y1), slice(tile.x0, tile.x1))
    dst = out[region] if isinstance(out, np.ndarray) else (buf if buf is not None else
                                                           np.empty(image.shape, np.float32))
    dst[...] = image
    if reach is not None:
        for row, (lo, hi) in zip(dst, reach.tolist(), strict=True):
            row[:lo] = 0
            row[hi:] = 0
    if not isinstance(out, np.ndarray):
        out[region] = dst


def _circle_buffers(lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    circle = np.empty((max(0, lay.k_split - 1), 2 * lay.n_angles), dtype=np.complex64)
    return circle, np.empty(lay.n_angles if lay.k_split else 0, dtype=np.complex64)


def _whole(data: np.ndarray, geo: Geometry, out: Any, eps: float, workers: int) -> None:
    """Untiled: slice pairs in lanes of cached NUFFT plans; an odd last slice alone."""
    n_slices = data.shape[0]
    paired = n_slices - n_slices % 2
    if paired:
        _whole_run(_cached_layout(geo, False), data[:paired], 0, out, eps, workers)
    if paired < n_slices:
        _whole_run(_cached_layout(geo, True), data[paired:], paired, out, eps, workers)


def lanes_for(groups: int, workers: int) -> int:
    """Slice pairs transformed side by side, each in its own lane of ``workers // lanes``
    threads: a lane's FFTs, spreading and output are sequential, so no core waits on
    another's part of a step (measured at 2048², 8 slices, 2 cores: two one-thread lanes
    take 0.75× the time of one pair at a time on two threads)."""
    return max(1, min(workers, groups))


class _Lane:
    """One lane's buffers: a group's coefficients, circles and image, its NUFFT plan, its
    threads' rows and a float32 slice for outputs that are not arrays."""

    def __init__(self, lay: Layout, plan: Type1, out: Any):
        self.plan = plan
        self.circle, self.dc = _circle_buffers(lay)
        self.coef = np.empty(lay.n_points, dtype=np.complex64)
        self.image = np.empty((lay.n, lay.n), dtype=np.complex64)
        self.emit_buf = None if isinstance(out, np.ndarray) else np.empty((lay.n, lay.n), np.float32)
        self.scratch = Scratch()  # its threads' row buffers, kept for its next groups


def _whole_run(entry: _Cached, data: np.ndarray, s_first: int, out: Any, eps: float, workers: int) -> None:
    """Whole slices of one layout (pairs, or one slice alone), written from slice ``s_first``:
    the groups (pairs or the slice) shared out to :func:`lanes_for` lanes."""
    lay = entry.layout
    per = 1 if lay.half else 2
    lanes = lanes_for(data.shape[0] // per, workers)
    sub = max(1, workers // lanes)
    groups = iter(range(0, data.shape[0], per))
    take = threading.Lock()

    def next_group() -> int | None:
        with take:
            return next(groups, None)

    def run(lane: _Lane) -> None:
        pool = ThreadPoolExecutor(max_workers=sub) if sub > 1 else None
        try:
            while (s0 := next_group()) is not None:
                _transform_group(pool, lane, entry, data[s0: s0 + per], s_first + s0, out, sub)
        finally:
            if pool is not None:
                pool.shutdown()

    with entry.lock:
        states = [_Lane(lay, plan, out) for plan in _plans(entry, lanes, eps, sub)]
        if lanes == 1:
            run(states[0])
        else:
            with ThreadPoolExecutor(max_workers=lanes) as lane_pool:
                list(lane_pool.map(run, states))


def _transform_group(pool: ThreadPoolExecutor | None, lane: _Lane, entry: _Cached, group: np.ndarray, s0: int,
                     out: Any, workers: int) -> None:
    """Steps 1-5 for one group (a pair, or a slice alone), written as slice ``s0`` (and ``s0 + 1``)."""
    lay = entry.layout
    ops, ops_wide, scratch = Ops(np, DuccFFT, workers=1), Ops(np, DuccFFT, workers=workers), lane.scratch

    def task(block: tuple[int, int]) -> None:
        spectra_block(ops, lay, entry.arrs, group, *block, scratch.get("z", lay.pad_len), lane.coef,
                      lane.circle, lane.dc)

    blocks = _blocks(lay.n_angles)
    list(pool.map(task, blocks) if pool is not None else map(task, blocks))
    resample_low(ops_wide, lay, lane.circle, lane.dc, lane.coef)
    lane.plan.execute(lane.coef, lane.image)
    whole = Tile(0, lay.n, 0, lay.n)
    _emit(out, s0, whole, lane.image.real, lay.reach, lane.emit_buf)
    if not lay.half:
        _emit(out, s0 + 1, whole, lane.image.imag, lay.reach, lane.emit_buf)


def _tiled(holder: base.Handover, geo: Geometry, size: int, out: Any, eps: float, workers: int) -> None:
    """Tiles of one shape: per slice pair (or single slice) the resampled series of every
    angle, then per tile a NUFFT of the tile's crops; the sinograms are dropped once the
    last group's series exist."""
    data = holder.take()
    n_slices = data.shape[0]
    t, tiles = tile_grid(geo.n, size)
    groups = [(s, 2) for s in range(0, n_slices - 1, 2)] + ([(n_slices - 1, 1)] if n_slices % 2 else [])
    shapes: dict[bool, Layout] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for gi, (s0, count) in enumerate(groups):
            half = count == 1
            if half not in shapes:
                shapes.clear()  # one shape's points at a time
                shapes[half] = geo.layout(tile=tiles[0], half=half, factors=False)
            lay = shapes[half]
            line = _series(pool, lay, data[s0: s0 + count])
            if gi == len(groups) - 1:
                del data  # the series is all the tiles need: free the sinograms' memory
            _tiles(pool, lay, line, t, tiles, geo.theta, s0, out, eps, workers)


def _series(pool: ThreadPoolExecutor, lay: Layout, pair: np.ndarray) -> np.ndarray:
    """Steps 1-2 for tiles: the resampled series of every angle of one pair or slice."""
    ops, arrs, scratch = Ops(np, DuccFFT, workers=1), lay.arrays(), Scratch()
    line = np.empty((lay.n_angles, lay.line_len), np.float32 if pair.shape[0] == 1 else np.complex64)

    def task(block: tuple[int, int]) -> None:
        line_block(ops, lay, arrs, pair, *block, scratch.get("z", lay.pad_len), scratch.get("up", lay.line_len),
                   line)

    list(pool.map(task, _blocks(lay.n_angles)))
    return line


def _tiles(pool: ThreadPoolExecutor, lay: Layout, line: np.ndarray, t: int, tiles: list[Tile],
           theta: np.ndarray, s0: int, out: Any, eps: float, workers: int) -> None:
    """Steps 3-5 per tile, writing slice ``s0`` (and ``s0 + 1`` for a pair) of ``out``.

    Everything a tile needs is allocated once, before the first NUFFT: the NUFFT allocates
    its fine grid for each execute and frees it after, and with the jobs' malloc settings
    (resources.reuse_freed_memory) an array allocated between two executes could split
    that free block and make the next grid extend the heap."""
    ops, ops_wide, scratch = Ops(np, DuccFFT, workers=1), Ops(np, DuccFFT, workers=workers), Scratch()
    arrs = lay.arrays()
    arrs["crop_start"] = np.empty(lay.n_angles, np.int64)
    arrs["frac"] = np.empty(lay.n_angles, np.float32)
    reach = np.empty((t, 2), np.int64)
    plan = _new_plan((t, t), eps, workers, lay)
    circle, dc = _circle_buffers(lay)
    coef = np.empty(lay.n_points, dtype=np.complex64)
    image = np.empty((t, t), dtype=np.complex64)
    emit_buf = None if isinstance(out, np.ndarray) else np.empty((t, t), np.float32)
    blocks = _blocks(lay.n_angles)

    def task(block: tuple[int, int]) -> None:
        tile_spectra_block(ops, lay, arrs, line, *block, coef, circle, dc, scratch)

    for tile in tiles:
        if tile.nearest(lay.n) > lay.radius:  # wholly beyond the detector's reach
            image[...] = 0
            within = None
        else:
            placed = place(lay, tile, theta)
            arrs["crop_start"][...] = placed.crop_start
            arrs["frac"][...] = placed.frac
            within = None if placed.reach is None else reach
            if within is not None:
                within[...] = placed.reach
            del placed
            list(pool.map(task, blocks))
            resample_low(ops_wide, lay, circle, dc, coef)
            plan.execute(coef, image)
        _emit(out, s0, tile, image.real, within, emit_buf)
        if not lay.half:
            _emit(out, s0 + 1, tile, image.imag, within, emit_buf)


def reconstruct(sinos: np.ndarray | base.Handover, theta: np.ndarray, center: float, *,
                n: int | None = None, filter_name: str = "ramp", threads: int = 0, eps: float = 1e-5,
                upsampfac: float = 1.25, algorithm: str = "fbp", measured: tuple[int, int] | None = None,
                pad: tuple[int, str] | None = None, tile: int | None = None, out: Any = None) -> Any:
    """Filtered backprojection of (slices, angles, columns) line integrals via a NUFFT.

    theta in radians; center = rotation-axis column (0-based, pixel i centred at i);
    returns (slices, n, n) float32 attenuation per pixel on the grid centred on the axis
    (or ``out``, filled).  ``measured`` = [first, stop) columns holding data (the rest
    is padding): pixels beyond the reach of those columns are set to 0 rather than
    computed.  ``pad`` = (width, "edge" | "zero"): pad the columns here, as
    :func:`teravox.recon.sinogram.pad` would (centre and ``measured`` in the unpadded
    columns).  ``tile``: compute the slice in tiles of at most this side (pixels),
    bounding the working set (:func:`memory`); ``sinos`` handed over as a
    :class:`base.Handover` are then dropped once filtered.  ``out``: where to write the
    slices (anything that takes ``out[s, y0:y1, x0:x1] = tile``).  ``eps``: the NUFFT's
    relative tolerance; ``upsampfac`` is checked as the GPU backend's but not used here
    (the NUFFT chooses its oversampling for ``eps``).
    """
    holder = sinos if isinstance(sinos, base.Handover) else base.Handover(sinos)
    data, theta, center, n = base.check_inputs(holder.take(), theta, center, n)
    check_common(filter_name, eps, upsampfac, algorithm, "fourier")
    workers = base.resolve_threads(threads)
    geo = geometry(data.shape, theta, center, n, filter_name, measured, pad)
    n_slices = data.shape[0]
    if out is None:
        out = np.empty((n_slices, n, n), dtype=np.float32)
    if n_slices == 0:
        return out
    if tile is None or tile >= n:
        _whole(data, geo, out, eps, workers)
    else:
        holder = base.Handover(data)
        del data
        _tiled(holder, geo, int(tile), out, eps, workers)
    return out


# -- memory model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """Bytes a call holds besides its input sinograms, by phase.

    ``whole``: the untiled path holds its input, ``geometry`` (cached layouts: points,
    factors, the NUFFT plans' points, mask) and ``work`` (coefficients, circles, fine
    grids, images, per-thread rows) at once.  Tiles: first the input, the ``series`` and
    ``filtering`` buffers; then, the input dropped when handed over, the series,
    ``geometry`` (one tile shape's points, sort and plan) and ``work`` (one tile).
    ``output``: the slices returned when no ``out`` is given."""

    tiled: bool
    geometry: int
    work: int
    series: int = 0
    filtering: int = 0
    output: int = 0
    grids: int = 0  # the NUFFTs' fine grids, one per lane (allocated per execute, freed after)

    def peak(self, input_bytes: int, handed_over: bool = True) -> int:
        """Peak bytes of the call with ``input_bytes`` of sinograms."""
        if not self.tiled:
            return CALL_BYTES + input_bytes + self.geometry + self.work + self.output
        during_tiles = self.series + self.geometry + self.work + (0 if handed_over else input_bytes)
        return CALL_BYTES + self.output + max(input_bytes + self.series + self.filtering, during_tiles)


def memory(n_angles: int, columns: int, n: int, slices: int, *, center: float | None = None,
           measured: tuple[int, int] | None = None, pad_width: int = 0, tile: int | None = None,
           eps: float = 1e-5, threads: int = 1, deviation: float = 0.0,
           out_given: bool = False, sink: bool = False) -> Memory:
    """What one call on (slices, n_angles, columns) sinograms → n × n holds (bytes).

    ``columns``, ``center`` (default: the middle) and ``measured`` are the data's, before
    the ``pad_width`` columns of virtual padding each side; ``deviation``: the angles'
    from equal spacing (:func:`angle_deviation`; inf: no angular resampling); ``sink``:
    ``out`` is given and is not an array (each lane then converts through a float32
    slice).  Mirrors the allocations of
    :func:`reconstruct` (tests/test_backends.py checks it against the measured peak)."""
    m, cols = n_angles, columns + 2 * pad_width
    center = (columns - 1) / 2 if center is None else center
    if measured is None:
        measured = (0, columns)
    measured = (measured[0] + pad_width, measured[1] + pad_width)
    win = whole_window(n, cols, center + pad_width, measured, pad_width)
    per_angle = 8 * 4 * m  # top, bottom, weights, frac
    rows = threads * _ANGLE_BLOCK * 8  # one complex row per angle of a thread's block
    output = 0 if out_given else slices * n * n * 4
    if tile is None or tile >= n:
        k_max = win.win_len // 2
        radius = min(n / math.sqrt(2), win.radius + 1)
        k_split, bands = bands_for(m, win.win_len, k_max - 1, radius, deviation, RESAMPLE)
        geometry = work = grids = 0
        for half in [False] * (slices >= 2) + [True] * (slices % 2):
            points = count_points(m, k_max, k_split, bands, half)
            factors = m * ((0 if half else k_max - max(k_split, 1) + 1) + (k_max - k_split + 1)
                           + 2 * max(0, k_split - 1) + (1 if k_split else 0))
            lanes = 1 if half else lanes_for(slices // 2, threads)
            # the points' coordinates, and each lane's plan
            geometry += points * (8 + PLAN_POINT_BYTES * lanes) + factors * 8 + per_angle
            grids = max(grids, lanes * _execute_bytes(n, eps))
            lane = (points * 8 + n * n * (8 + 4 * sink) + _execute_bytes(n, eps)
                    + 2 * m * max(0, k_split - 1) * 8)
            work = max(work, lanes * lane + rows * (win.pad_len + win.win_len))
        return Memory(False, geometry, work, output=output, grids=grids)
    t, _tiles = tile_grid(n, tile)
    radius = Tile(0, t, 0, t).radius
    crop, line, h = tile_line(radius, win.win_len)
    k_max = crop // 2 - 1
    k_split, bands = bands_for(m, crop * h, k_max, radius + 0.5, deviation, RESAMPLE)
    points = count_points(m, k_max, k_split, bands, slices == 1)
    pairs = slices >= 2
    series = m * line * (8 if pairs else 4)
    filtering = rows * (win.pad_len + line + win.win_len)
    geometry = points * (8 + PLAN_POINT_BYTES) + per_angle + crop * 4 + _execute_bytes(t, eps)
    # one tile: coefficients, circles, image, mask, crop offsets; per thread a block's
    # crops, gather indices, spectra and factors
    work = (points * 8 + 2 * m * max(0, k_split - 1) * 8 + m * 8 + t * t * (8 + 4) + 3 * 8 * m
            + rows * crop * (1 + 1 + 1 + 1))
    return Memory(True, geometry, work, series, filtering, output, _execute_bytes(t, eps))


def tile_for(budget: int, n_angles: int, columns: int, n: int, slices: int, input_bytes: int,
             **kw: Any) -> int | None:
    """The largest tile side (None: the whole slice) whose peak, with ``input_bytes`` of
    sinograms, fits ``budget`` bytes; 0 when not even the smallest tile does."""
    def peak(tile: int | None) -> int:
        return memory(n_angles, columns, n, slices, tile=tile, **kw).peak(input_bytes)

    if peak(None) <= budget:
        return None
    parts = 2
    while True:
        t = math.ceil(n / parts)
        if t < MIN_TILE:
            return 0
        if peak(t) <= budget:
            return t
        parts += 1


class FourierBackend(base.BackendBase):
    """CPU default: NUFFT-based filtered backprojection with ducc0."""

    name = "fourier"
    hardware = "CPU (ducc0)"

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        try:
            import ducc0  # noqa: F401
        except ImportError as exc:
            return f"ducc0 does not import: {exc}"
        return ""

    def reconstruct(self, sinos: np.ndarray, theta: np.ndarray, center: float, **kw: Any) -> np.ndarray:
        return reconstruct(sinos, theta, center, **kw)
