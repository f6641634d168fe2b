r"""Single-distance Paganin phase retrieval (Paganin et al., J. Microsc. 206, 33, 2002).

For a single material with refractive index :math:`n = 1 - \delta + i\beta`, the intensity
``I_z`` measured at a distance ``z`` behind the object (near field, normalised by the flat
field) gives the projected thickness ``t`` by

.. math::

    t = -\frac{1}{\mu}\ln \mathcal{F}^{-1}\left[\frac{\mathcal{F}[I_z]}
        {1 + \pi\lambda z\,(\delta/\beta)\,|\mathbf{u}|^2}\right],
    \qquad \mu = \frac{4\pi\beta}{\lambda},

with :math:`\mathbf{u}` the spatial frequency in **cycles per metre** (in angular frequency
:math:`\mathbf{k} = 2\pi\mathbf{u}` the denominator reads :math:`1 + z\delta|\mathbf{k}|^2/\mu`).

:func:`retrieve_phase` applies the filter and returns the filtered *transmission*
``F⁻¹[F[I_z]·H]`` — not its −log — as TomoPy's ``retrieve_phase`` does (the pipeline's
``quantity = "transmission"``; pass 2 takes the −log).  Its −log divided by μ is the projected
thickness ``t``; reconstructed, the −log gives μ per pixel, as for absorption data.

**TomoPy's conventions** (``tomopy.prep.phase.retrieve_phase(tomo, pixel_size, dist, energy,
alpha, pad)``, the long-standing 1.x implementation): ``pixel_size`` and ``dist`` in cm, ``energy`` in keV, and the
filter ``1 / (λ z w²/(4π) + α)`` normalised to 1 at zero frequency, i.e.
``H = 1 / (1 + λ z w² / (4π α))`` with ``w`` the frequency in **cycles per cm** (its grid
runs from −1/(2·pixel) to +1/(2·pixel)).  Matching the Paganin filter above term by term,
TomoPy's ``alpha`` is *not* β/δ but ``β/δ / (4π²)``: our ``delta_beta = 1 / (4π² alpha)``
(:func:`delta_beta_from_tomopy_alpha`) reproduces TomoPy's filter.  TomoPy also samples its
filter on a grid spaced 1/((N−1)·pixel) (and, for even N, shifted by half a step) instead of
the DFT frequencies ``k/(N·pixel)`` used here, a difference of order 1/N; and it pads to the
next power of two with edge values, where we pad by the kernel's support to a fast FFT size.
(A later revision in TomoPy's repository reads ``alpha`` as δ/β and returns −log/μ, but its
frequency grid spans ±2π/pixel, twice the angular Nyquist: there ``delta_beta = 4·alpha``.)
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from scipy.optimize import brentq
from scipy.special import k1

#: h·c in keV·m (CODATA 2018, 1.239 841 984 µm·eV): λ[m] = HC_KEV_M / E[keV].
HC_KEV_M = 1.239841984e-9

#: Tail fraction left outside the edge padding of :func:`retrieve_phase` (see kernel_support_px).
PAD_TOL = 1e-4


def wavelength_m(energy_kev: float) -> float:
    """X-ray wavelength in metres for a photon energy in keV."""
    if not energy_kev > 0:
        raise ValueError(f"energy must be positive (keV), got {energy_kev}")
    return HC_KEV_M / energy_kev


def delta_beta_from_tomopy_alpha(alpha: float) -> float:
    """The ``delta_beta`` whose filter equals TomoPy's ``retrieve_phase(alpha=...)`` (1/(4π²α))."""
    if not alpha > 0:
        raise ValueError(f"TomoPy alpha must be positive, got {alpha}")
    return 1.0 / (4.0 * math.pi**2 * alpha)


def _coefficient_m2(pixel_size_m: float, distance_m: float, energy_kev: float,
                    delta_beta: float) -> float:
    """a = π λ z δ/β in m²: the filter is 1/(1 + a|u|²) with u in cycles/m."""
    for name, value in (("pixel_size_m", pixel_size_m), ("distance_m", distance_m),
                        ("energy_kev", energy_kev), ("delta_beta", delta_beta)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"Paganin needs a positive {name}, got {value}")
    return math.pi * wavelength_m(energy_kev) * distance_m * delta_beta


def kernel_length_px(pixel_size_m: float, distance_m: float, energy_kev: float,
                     delta_beta: float) -> float:
    """Decay length L of the real-space kernel in pixels: L = √(λ z δ/β / (4π)) / pixel."""
    a = _coefficient_m2(pixel_size_m, distance_m, energy_kev, delta_beta)
    return math.sqrt(a) / (2.0 * math.pi) / pixel_size_m


def paganin_kernel(shape: tuple[int, int], pixel_size_m: float, distance_m: float,
                   energy_kev: float, delta_beta: float) -> np.ndarray:
    r"""The Paganin filter on the ``rfft2`` grid of a (rows, cols) image: (rows, cols//2 + 1) float32.

    ``H(u) = 1 / (1 + π λ z (δ/β) (u_y² + u_x²))`` with ``u_y = fftfreq(rows, d=pixel)``,
    ``u_x = rfftfreq(cols, d=pixel)`` in cycles per metre, λ = h c / E.  H(0) = 1, so the mean
    transmission is preserved.  The array is cached per (shape, parameters) and read-only.
    """
    rows, cols = (int(s) for s in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"kernel shape must be positive, got {shape}")
    _coefficient_m2(pixel_size_m, distance_m, energy_kev, delta_beta)  # validates
    return _kernel(rows, cols, float(pixel_size_m), float(distance_m), float(energy_kev),
                   float(delta_beta))


@lru_cache(maxsize=8)
def _kernel(rows: int, cols: int, px: float, z: float, e: float, db: float) -> np.ndarray:
    a = _coefficient_m2(px, z, e, db)
    uy2 = np.fft.fftfreq(rows, d=px) ** 2
    ux2 = np.fft.rfftfreq(cols, d=px) ** 2
    h = (1.0 / (1.0 + a * (uy2[:, None] + ux2[None, :]))).astype(np.float32)
    h.flags.writeable = False
    return h


@lru_cache(maxsize=64)
def _tail_x(tol: float) -> float:
    """x with x·K₁(x) = tol: the radius, in units of L, outside which a fraction tol lies."""
    return brentq(lambda x: x * k1(x) - tol, 1e-12, 800.0, xtol=1e-10)


def kernel_support_px(pixel_size_m: float, distance_m: float, energy_kev: float,
                      delta_beta: float, tol: float = 1e-3) -> int:
    r"""Radius R in pixels outside which the real-space kernel holds less than ``tol`` of its total.

    The inverse 2-D Fourier transform of ``1/(1 + a|u|²)`` (u in cycles) is
    :math:`h(r) = \frac{1}{2\pi L^2} K_0(r/L)` with :math:`L = \sqrt{a}/(2\pi)`, which integrates
    to 1; the part outside radius R is :math:`\int_R^\infty h\,2\pi r\,dr = x K_1(x)` with
    ``x = R/L`` (from :math:`(xK_1)' = -xK_0`).  So ``R = ceil(x_tol · L)`` where
    ``x_tol K₁(x_tol) = tol``: 8.23 L for 1e-3, 10.65 L for 1e-4, 13.05 L for 1e-5.

    Used as the overlap rows between subchunks: with R rows of true data on each side, the
    rows kept differ from a whole-image result by at most the half-plane tail
    ``½ e^{−R/L} < tol`` times the data's variation beyond R.  This is the continuous kernel;
    the DFT filter also rings weakly at the Nyquist frequency, negligible once L is a few
    pixels (for L ≲ 2 px that ringing, not this tail, dominates beyond R).
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    length = kernel_length_px(pixel_size_m, distance_m, energy_kev, delta_beta)
    return max(1, math.ceil(_tail_x(float(tol)) * length))


def retrieve_phase(proj: np.ndarray, *, pixel_size_m: float, distance_m: float, energy_kev: float,
                   delta_beta: float, pad: bool = True, workers: int | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Apply the Paganin filter to each (rows, cols) projection of (angles, rows, cols); float32.

    Input: flat-field normalised transmission.  Output: the filtered transmission (not −log'd;
    see the module docstring), same shape.  ``pad=True`` extends each projection on all sides
    by ``kernel_support_px(tol=PAD_TOL)`` pixels in edge mode (repeating the border rows and
    columns, as TomoPy), rounded up to a fast FFT size, so no wrap-around reaches the image;
    ``pad=False`` filters the image as periodic.  ``workers``: FFT threads (default: the CPUs
    this process may use).  Non-finite input is refused: the FFT would spread it everywhere.
    ``out``: where to write a stack (may be ``proj`` itself: each projection is copied into
    the padded buffer before its result is written).
    """
    proj = np.asarray(proj)
    if proj.ndim not in (2, 3):
        raise ValueError(f"projections must be (angles, rows, cols), got shape {proj.shape}")
    stack = proj[None] if proj.ndim == 2 else proj
    n, rows, cols = stack.shape
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    if pad:
        r = kernel_support_px(pixel_size_m, distance_m, energy_kev, delta_beta, tol=PAD_TOL)
        ny = sfft.next_fast_len(rows + 2 * r, real=True)
        nx = sfft.next_fast_len(cols + 2 * r, real=True)
        top, left = r, r
    else:
        ny, nx, top, left = rows, cols, 0, 0
    kernel = paganin_kernel((ny, nx), pixel_size_m, distance_m, energy_kev, delta_beta)

    out = np.empty(stack.shape, dtype=np.float32) if (out is None or proj.ndim == 2) else out
    rowbuf = np.empty((rows, nx), dtype=np.float32)  # the image's rows, padded in columns
    spec = np.empty((ny, nx // 2 + 1), dtype=np.complex64)
    for i in range(n):
        img = stack[i]
        if not np.isfinite(img).all():
            raise ValueError(f"projection {i} holds non-finite values; Paganin would spread them "
                             "over the whole image (normalise with the guards first)")
        rowbuf[:, left:left + cols] = img
        rowbuf[:, :left] = img[:, :1]  # edge mode: repeat the border columns ...
        rowbuf[:, left + cols:] = img[:, -1:]
        # ... and the border rows.  Padded rows are copies of the first/last row, so their
        # row transforms are too: transform the image's rows only and repeat the two borders.
        r = sfft.rfft(rowbuf, axis=1, workers=workers)
        spec[top:top + rows] = r
        spec[:top] = r[0]
        spec[top + rows:] = r[-1]
        f = sfft.fft(spec, axis=0, workers=workers, overwrite_x=True)
        f *= kernel
        f = sfft.ifft(f, axis=0, workers=workers, overwrite_x=True)
        # only the image's rows are transformed back
        out[i] = sfft.irfft(f[top:top + rows], n=nx, axis=1, workers=workers)[:, left:left + cols]
    return out[0] if proj.ndim == 2 else out
