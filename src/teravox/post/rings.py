"""Ring-artefact removal.

Two places, following the ``rings`` parameter:

- ``fft`` / ``wavelet-fft``: on reconstructed slices, :func:`remove_rings`.  A ring
  about the rotation axis is a stripe in polar coordinates; algotom's stripe
  filters ``remove_stripe_based_fft`` (Raven 1998) / ``remove_stripe_based_wavelet_fft``
  (Münch et al. 2009) find it there — the filters algotom's
  ``remove_ring_based_fft`` / ``remove_ring_based_wavelet_fft`` use.
- ``sinogram``: before reconstruction, in the sinogram domain where a ring is a
  stripe: :func:`remove_rings_sinogram`, algotom's ``remove_all_stripe`` through
  :func:`teravox.prep.stripes.remove_stripes` (method ``"all"``).  :func:`remove_rings`
  leaves slices alone for this option.

Why not ``remove_ring_based_*`` themselves: they map the whole slice to polar
coordinates and back with linear interpolation on an n × n polar grid (with a
radius scale off by n/(n − 1)), which blurs and shifts every detail of the slice —
on a test slice of small discs it changed pixels by up to the discs' full
contrast — and they zero the corners.  Here only the correction (what the filter
removes in polar coordinates, i.e. the ring) goes back to the Cartesian grid and is
subtracted, with cubic interpolation and the exact radius scale, so a slice without
rings is changed little.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

from teravox.errors import ParamError
from teravox.parallel import for_each

RingMethod = Literal["off", "fft", "wavelet-fft", "sinogram"]

_R_STEP = 0.5  # polar radial step in pixels: a 1-pixel ring spans 2 polar samples
_THETA_PAD = 2  # rows wrapped around the angle axis for the cubic back-mapping


@lru_cache(maxsize=4)
def _polar_grids(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampling coordinates: polar samples in the slice, slice pixels in the (padded) polar image,
    and the mask of the pixels inside the field of view (radius ≤ n/2)."""
    c = (n - 1) / 2
    n_r = int(np.ceil((c + 2) / _R_STEP)) + 1
    n_t = 2 * ((n + 1) // 2)  # as many angles as algotom's polar grid, even
    r = np.arange(n_r) * _R_STEP
    t = np.arange(n_t) * (2 * np.pi / n_t)
    rr, tt = np.meshgrid(r, t)
    to_polar = np.array([c + rr * np.sin(tt), c + rr * np.cos(tt)], np.float32)  # (iy, ix)
    y, x = np.mgrid[:n, :n] - c
    t_idx = np.mod(np.arctan2(y, x), 2 * np.pi) / (2 * np.pi / n_t) + _THETA_PAD
    to_cart = np.array([t_idx, np.hypot(x, y) / _R_STEP], np.float32)
    inside = np.hypot(x, y) <= n / 2
    return to_polar, to_cart, inside


@lru_cache(maxsize=4)
def _butterworth(height: int, width: int, u: float, n: int, v: int) -> np.ndarray:
    """algotom's ``make_2d_butterworth_window(width, height, u, v, n)``, ifftshifted (DC first)."""
    from algotom.util.utility import make_2d_butterworth_window

    return np.fft.ifftshift(make_2d_butterworth_window(width, height, u, v, n)).astype(np.float32)


def fft_stripe_filter(image: np.ndarray, u: float = 20, n: int = 8, v: int = 1) -> np.ndarray:
    """algotom's ``remove_stripe_based_fft(image, u, n, v, sort=False)`` (Raven 1998) in
    single precision, with its window kept between calls: the same padding (the angle axis
    by its mean, the other by its edge), window and modulus, to float32 rounding, in a
    third of the time.  (angles, columns) float32 in and out.
    """
    import scipy.fft

    pad = min(150, int(0.1 * min(image.shape)))
    padded = np.pad(image, ((pad, pad), (0, 0)), mode="mean")
    padded = np.pad(padded, ((0, 0), (pad, pad)), mode="edge")
    freq = scipy.fft.fft2(padded.astype(np.float32), workers=1)
    freq *= _butterworth(padded.shape[0], padded.shape[1], u, n, v)
    out = scipy.fft.ifft2(freq, overwrite_x=True, workers=1)
    return np.abs(out[pad: pad + image.shape[0], pad: pad + image.shape[1]])


def _ring_estimate(img: np.ndarray, filt: Any, kw: dict[str, Any]) -> np.ndarray:
    """The rings of one slice, on the slice grid: polar image minus its stripe-filtered self."""
    to_polar, to_cart, inside = _polar_grids(img.shape[-1])
    polar = ndi.map_coordinates(img, to_polar, order=3, mode="nearest")
    # algotom's fft filter returns |result|: lift the polar image above zero so negative
    # attenuation (noise, FBP undershoot) is not folded; the filters are linear
    polar -= np.float32(np.nanmin(polar) - 1.0)
    correction = polar - np.asarray(filt(polar, **kw), dtype=np.float32)
    correction = np.concatenate(
        [correction[-_THETA_PAD:], correction, correction[: _THETA_PAD + 1]])  # angle wraps
    rings = ndi.map_coordinates(correction, to_cart, order=3, mode="nearest")
    rings[~inside] = 0.0
    return rings


def remove_rings(
    slices: np.ndarray, method: RingMethod = "fft", *, snr: float = 3.0, size: int = 31,
    inplace: bool = False, workers: int = 1, **kw: Any,
) -> np.ndarray:
    """Remove rings about the slice centre from reconstructed slices ``(slices, n, n)``; float32, input units.

    ``method``: ``fft`` (algotom ``remove_stripe_based_fft`` in polar coordinates;
    ``kw``: ``u`` cut-off frequency, ``n`` filter order, ``v`` rows, ``sort``) or
    ``wavelet-fft`` (``remove_stripe_based_wavelet_fft``; ``kw``: ``level``,
    ``damping`` — algotom's ``size`` —, ``wavelet_name``, ``window_name``, ``sort``);
    algotom's defaults otherwise.  ``off`` and ``sinogram`` return ``slices``
    unchanged (``sinogram`` is done before reconstruction by
    :func:`remove_rings_sinogram`).  ``snr`` and ``size`` (pixels) are that sinogram
    method's detection ratio and window; the slice methods do not use them.
    Pixels outside the inscribed circle (radius n/2) are not changed.  With
    ``inplace=True`` a float32 ``slices`` is overwritten.  ``workers`` slices are done at
    once, in threads (the interpolations and FFTs release the GIL).  ``fft`` without
    ``sort`` runs :func:`fft_stripe_filter`, algotom's filter in single precision.
    """
    del snr, size  # the slice methods have no detection ratio or window; see the docstring
    if method in ("off", "sinogram"):
        return slices
    from algotom.prep import removal  # ~1 s to import: only when used

    if method == "fft":
        filt = removal.remove_stripe_based_fft
        allowed = {"u", "n", "v", "sort"}
    elif method == "wavelet-fft":
        filt = removal.remove_stripe_based_wavelet_fft
        allowed = {"level", "damping", "wavelet_name", "window_name", "sort"}
    else:
        raise ParamError(f"rings: expected one of off, fft, wavelet-fft, sinogram; got {method!r}")
    unknown = set(kw) - allowed
    if unknown:
        raise TypeError(f"remove_rings({method!r}) got unexpected options {sorted(unknown)}")
    if "damping" in kw:
        kw["size"] = kw.pop("damping")
    if filt is removal.remove_stripe_based_fft and not kw.pop("sort", False):
        filt = fft_stripe_filter
    if slices.ndim != 3 or slices.shape[1] != slices.shape[2]:
        raise ValueError(f"expected square slices (slices, n, n), got shape {slices.shape}")

    out = slices if (inplace and slices.dtype == np.float32) else np.empty(slices.shape, np.float32)

    def one(i: int) -> None:
        img = np.asarray(slices[i], dtype=np.float32)
        out[i] = img - _ring_estimate(img, filt, kw)

    for_each(one, len(slices), workers)
    return out


def remove_rings_sinogram(sinos: np.ndarray, snr: float = 3.0, size: int = 31, **kw: Any) -> np.ndarray:
    """The ``rings="sinogram"`` option: stripes removed from sinograms ``(rows, angles, columns)``.

    Rings come from stripes in the sinograms, so this removes them before
    reconstruction with :func:`teravox.prep.stripes.remove_stripes` method ``"all"``
    (algotom ``remove_all_stripe``): ``snr`` detection ratio, ``size`` the window in
    pixels of the small-to-medium stripe filter; ``kw`` goes to ``remove_stripes``.
    """
    from teravox.prep.stripes import remove_stripes  # another module's; imported when used

    return remove_stripes(sinos, "all", snr=snr, sm_size=size, **kw)
