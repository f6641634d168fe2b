"""``tomopy``: adapter to TomoPy's ``recon`` (gridrec, fbp, sirt, ...), when installed.

Conversions from teravox's conventions (docs/architecture.md) to TomoPy's, each checked
against a TomoPy built from its source (``tests/test_backends.py::test_tomopy_agrees_with_fourier``):

* **Layout.** TomoPy takes projections (angles, slices, columns) by default; we pass
  ``sinogram_order=True`` so it reads our (slices, angles, columns) without a copy.
* **Orientation.** TomoPy's projector puts a pixel of the first image axis X and second
  axis Y on the detector at −X sin θ + Y cos θ (libtomo/recon/utils.c, ``calc_coords``);
  ours is x cos θ + y sin θ with y along rows.  Hence Y = x and X = −y: our slice is
  TomoPy's flipped along its first image axis.  gridrec writes its image the same way.
* **Centre.** gridrec shifts the padded row by ``center`` with data sample j at j (its
  filter phase e^{−2πi k·center/pd}), which is our convention.  The ray-driven methods
  (``fbp``, ``art``, ``sirt``, ``mlem``, ...) put detector pixel d at d − center + 0.5
  (``preprocessing`` in utils.c), so they get ``center + 0.5``.  (utils.c moves the rays by
  0.01 px where they would run along the grid lines at 0° and 90°; that 0.01 px stays.)
* **Pixel grid.** The ray-driven methods centre their n × n grid on the axis as we do
  (pixel i at i − (n − 1)/2).  gridrec puts the axis on pixel n/2 of an even grid (its FFT
  origin): its pixels sit at integer offsets from the axis, ours at half-integer ones for
  even n.  For even n each row is shifted by ½(cos θ + sin θ) before gridrec (a Fourier
  shift, exact for band-limited rows), which moves the object by half a pixel along both
  axes; for odd n gridrec reconstructs n + 1 pixels and the first row and column are cut.
* **fbp.** TomoPy's ``fbp`` is a backprojection without filter (its documentation: "Filtering
  is not implemented for fbp").  The adapter filters the rows with teravox's filters
  (:func:`teravox.recon.filters.filter_rows`, the quadrature weights of the angles applied)
  and lets TomoPy's ray-driven projector backproject them.
* **Filters** (gridrec): ramp → ``ramlak``, shepp-logan → ``shepp``; cosine, hann, hamming
  and parzen keep their names.
* **Amplitude.** Attenuation per detector pixel, as ours; ``fbp`` agrees with ``fourier`` to
  0.1 %.  gridrec's own values are larger — 1.08× at the centre of a smooth object, less
  towards the edge, 1.12–1.18× in least squares on the test objects — which is TomoPy's
  gridrec as facilities know it (its gridding correction), left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft

from teravox.errors import ParamError
from teravox.recon import filters
from teravox.recon.backends import base

FILTER_NAMES = {"ramp": "ramlak", "shepp-logan": "shepp", "cosine": "cosine", "hann": "hann",
                "hamming": "hamming", "parzen": "parzen"}
# TomoPy algorithms that use gridrec's centre and grid conventions; every other one is ray-driven.
_GRIDREC_LIKE = ("gridrec",)
# teravox's default algorithm name means filtered backprojection through TomoPy's projector.
_ALGORITHMS = {"fbp": "fbp"}


def tomopy_center(center: float, algorithm: str) -> float:
    """Our centre (pixel i centred at i) in the convention of TomoPy's ``algorithm``."""
    return float(center) if algorithm in _GRIDREC_LIKE else float(center) + 0.5


def shift_rows(sinos: np.ndarray, delta: np.ndarray, workers: int = 1) -> np.ndarray:
    """Rows resampled at ``s + delta[angle]`` (pixels): ``out[..., a, j] = p(j + delta[a])``.

    A Fourier shift, exact for band-limited rows.  Each row is continued past its end by a
    raised-cosine blend from its last value back to its first, so the periodic row has no
    jump to ring from.  float32 (…, angles, columns) in and out.
    """
    columns = sinos.shape[-1]
    length = scipy.fft.next_fast_len(columns + max(16, columns // 8), real=True)
    buf = np.empty(sinos.shape[:-1] + (length,), np.float32)
    buf[..., :columns] = sinos
    t = np.arange(1, length - columns + 1) / (length - columns + 1)
    blend = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    first, last = buf[..., :1], buf[..., columns - 1: columns]
    buf[..., columns:] = last + (first - last) * blend
    freq = scipy.fft.rfft(buf, axis=-1, workers=workers)
    k = np.arange(freq.shape[-1]) / length
    freq *= np.exp(2j * np.pi * np.asarray(delta, np.float64)[:, None] * k).astype(np.complex64)
    return scipy.fft.irfft(freq, n=length, axis=-1, workers=workers)[..., :columns]


def _gridrec_input(sinos: np.ndarray, theta: np.ndarray, n: int, workers: int) -> tuple[np.ndarray, int]:
    """Rows for gridrec and its grid size: see *Pixel grid* in the module docstring.  Angles
    get their quadrature weight relative to gridrec's π/angles (1 for equal spacing)."""
    weights = base.angle_weights(theta) * theta.size / np.pi
    if not np.allclose(weights, 1.0, atol=1e-6):
        sinos = sinos * weights.astype(np.float32)[:, None]
    if n % 2:
        return sinos, n + 1
    return shift_rows(sinos, 0.5 * (np.cos(theta) + np.sin(theta)), workers), n


def reconstruct(sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
                filter_name: str = "ramp", threads: int = 0, eps: float = 1e-5,
                upsampfac: float = 1.25, algorithm: str = "fbp") -> np.ndarray:
    """TomoPy reconstruction with teravox's conventions (see the module docstring).

    theta radians, center = rotation-axis column (0-based, pixel i centred at i);
    returns (slices, n, n) float32 attenuation per pixel.  eps/upsampfac are unused.
    """
    sinos, theta, center, n = base.check_inputs(sinos, theta, center, n)
    filters.check_filter(filter_name)
    try:
        import tomopy
    except ImportError:
        raise base.absent_error("tomopy", "TomoPy is not installed") from None
    algo = _ALGORITHMS.get(algorithm, algorithm)
    workers = base.resolve_threads(threads)
    grid = n
    kwargs: dict[str, Any] = {}
    if algo in _GRIDREC_LIKE:
        sinos, grid = _gridrec_input(sinos, theta, n, workers)
        kwargs["filter_name"] = FILTER_NAMES[filter_name]
    elif algo == "fbp":
        sinos = filters.filter_rows(sinos, filter_name, base.angle_weights(theta), workers=workers)
    try:
        rec = tomopy.recon(np.ascontiguousarray(sinos, np.float32), theta.astype(np.float32),
                           center=tomopy_center(center, algo), sinogram_order=True,
                           algorithm=algo, ncore=workers, num_gridx=grid, num_gridy=grid, **kwargs)
    except (ValueError, KeyError) as exc:
        raise ParamError(f"tomopy backend: TomoPy rejected algorithm {algo!r} ({exc})") from None
    rec = rec[:, ::-1, :]
    if grid != n:
        rec = rec[:, 1:, 1:]
    return np.ascontiguousarray(rec, dtype=np.float32)


class TomopyBackend(base.BackendBase):
    """Adapter to TomoPy (CPU), used when TomoPy imports."""

    name = "tomopy"
    hardware = "CPU (TomoPy)"

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        try:
            import tomopy  # noqa: F401
        except ImportError:
            return "TomoPy is not installed"
        return ""

    def reconstruct(self, sinos: np.ndarray, theta: np.ndarray, center: float, **kw: Any) -> np.ndarray:
        return reconstruct(sinos, theta, center, **kw)
