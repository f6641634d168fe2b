"""Reconstruction filters for filtered backprojection, shared by every Fourier backend.

The ramp is **not** sampled as ``|ω|``: a sampled ``|ω|`` is the DFT of a kernel that
has been periodised over the padded length, whose sum (the DC gain) is exactly zero,
and that leaves a negative offset in the reconstruction that grows with the object's
mass.  Instead the ramp is the DFT of the spatial Ram-Lak kernel sampled at integer
lags and truncated to the padded length (h[0] = 1/4, h[odd k] = −1/(πk)², h[even] = 0),
so that a circular convolution over a buffer padded to ≥ 2× the detector width equals
the linear convolution of the detector samples with the band-limited ramp.  The
apodisation windows are then applied on top of it.

Frequencies are in cycles per pixel; ``u = |ω| / 0.5`` is the frequency as a fraction
of the detector's Nyquist frequency.
"""

from __future__ import annotations

import numpy as np

from teravox.errors import ParamError

FILTERS: tuple[str, ...] = ("ramp", "shepp-logan", "cosine", "hann", "hamming", "parzen")


def window(name: str, u: np.ndarray) -> np.ndarray:
    """Apodisation window at ``u = |ω|/ω_Nyquist`` in [0, 1] (float64, 1 at u = 0)."""
    u = np.abs(np.asarray(u, dtype=np.float64))
    if name == "ramp":
        return np.ones_like(u)
    if name == "shepp-logan":
        return np.sinc(u / 2)  # sin(πu/2) / (πu/2)
    if name == "cosine":
        return np.cos(np.pi * u / 2)
    if name == "hann":
        return 0.5 + 0.5 * np.cos(np.pi * u)
    if name == "hamming":
        return 0.54 + 0.46 * np.cos(np.pi * u)
    if name == "parzen":
        return np.where(u <= 0.5, 1 - 6 * u**2 + 6 * u**3, 2 * (1 - u) ** 3)
    raise ParamError(f"filter_name: expected one of {', '.join(FILTERS)}; got {name!r}")


def ramlak_kernel(length: int) -> np.ndarray:
    """Spatial Ram-Lak kernel on the circular lags of a buffer of ``length`` samples.

    Entry j holds the lag j (j ≤ length/2) or j − length; units 1/pixel², so that
    ``p ⊛ h`` with unit sample spacing is the ramp-filtered projection.
    """
    lag = np.arange(length, dtype=np.float64)
    lag = np.where(lag > length // 2, lag - length, lag)
    h = np.zeros(length, dtype=np.float64)
    h[0] = 0.25
    odd = (lag.astype(np.int64) % 2) != 0
    h[odd] = -1.0 / (np.pi * lag[odd]) ** 2
    return h


def rfft_filter(name: str, length: int) -> np.ndarray:
    """Real filter for the ``rfft`` (``length // 2 + 1`` bins) of a row padded to ``length``.

    The Ram-Lak kernel is even, so its DFT is real.  Bin k is at ω = k/length cycles/pixel.
    Returned as float64; callers cast to their working precision.
    """
    if length < 2:
        raise ParamError(f"filter length must be at least 2 samples, got {length}")
    spectrum = np.fft.rfft(ramlak_kernel(length)).real
    u = np.arange(spectrum.size, dtype=np.float64) * 2.0 / length
    return spectrum * window(name, u)


def fft_filter(name: str, length: int) -> np.ndarray:
    """The same filter on all ``length`` bins of the complex ``fft`` (even in k), float64."""
    half = rfft_filter(name, length)
    k = np.arange(length)
    return half[np.minimum(k, length - k)]


def check_filter(name: str) -> str:
    """Return ``name`` if it is a known filter, else raise ParamError listing them."""
    if name not in FILTERS:
        raise ParamError(f"filter_name: expected one of {', '.join(FILTERS)}; got {name!r}")
    return name


def filter_rows(sinos: np.ndarray, name: str, weights: np.ndarray | None = None, *,
                workers: int = 1) -> np.ndarray:
    """Filtered projections: each row of ``sinos`` (…, angles, columns) convolved with the
    ramp of :func:`rfft_filter` (``name``'s window on it), float32, same shape.

    Rows are zero-padded to at least twice their length, so the circular convolution is the
    linear one.  ``weights`` (one per angle) multiply the filtered rows, e.g. the quadrature
    weights of :func:`teravox.recon.backends.base.angle_weights`.
    """
    import scipy.fft

    check_filter(name)
    columns = sinos.shape[-1]
    length = scipy.fft.next_fast_len(2 * columns, real=True)
    spectrum = rfft_filter(name, length).astype(np.float32)
    if weights is not None:
        spectrum = spectrum * np.asarray(weights, np.float32)[:, None]
    freq = scipy.fft.rfft(np.asarray(sinos, np.float32), n=length, axis=-1, workers=workers)
    freq *= spectrum
    return scipy.fft.irfft(freq, n=length, axis=-1, workers=workers)[..., :columns].astype(np.float32)
