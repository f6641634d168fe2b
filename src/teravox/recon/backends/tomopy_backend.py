"""``tomopy``: adapter to TomoPy's ``recon`` (gridrec, fbp, sirt, ...), when installed.

Conversions from teravox's conventions (docs/architecture.md) to TomoPy's:

* **Layout.** TomoPy takes projections (angles, slices, columns) by default; we pass
  ``sinogram_order=True`` so it reads our (slices, angles, columns) without a copy.
* **Centre.** TomoPy's algorithms disagree by half a pixel.  ``gridrec`` shifts the
  padded row by ``center`` with data sample j at j (its filter phase
  e^{−2πi k·center/pd}), which is our convention (pixel i centred at i, so its default
  ``N/2`` is half a pixel off, TomoPy issue #409).  The ray-driven methods (``fbp``,
  ``art``, ``sirt``, ``mlem``, ...; ``preprocessing``/``calc_coords`` in
  libtomo/recon/utils.c) put detector pixel d at offset d − center + 0.5.  So we pass
  ``center`` to gridrec and ``center + 0.5`` to the others.
* **Orientation.** TomoPy's projector puts a pixel of the first image axis X and second
  axis Y on the detector at −X sin θ + Y cos θ (utils.c, ``calc_coords``); ours is
  x cos θ + y sin θ with y along rows.  Hence Y = x and X = −y: our slice is TomoPy's
  flipped along its first image axis (``rec[:, ::-1, :]``).
* **Filters.** ramp → ``ramlak``, shepp-logan → ``shepp``; cosine, hann, hamming and
  parzen keep their names.
* **Size.** ``num_gridx = num_gridy = n``.  **Amplitude**: TomoPy returns attenuation
  per detector pixel, as we do.

TomoPy cannot be installed on the development machines, so the conversions above come
from reading its source; ``tests/test_backends.py::test_tomopy_agrees_with_fourier``
checks them wherever TomoPy is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teravox.errors import ParamError
from teravox.recon import filters
from teravox.recon.backends import base

FILTER_NAMES = {"ramp": "ramlak", "shepp-logan": "shepp", "cosine": "cosine", "hann": "hann",
                "hamming": "hamming", "parzen": "parzen"}
# TomoPy algorithms that use gridrec's centre convention; every other one is ray-driven.
_GRIDREC_LIKE = ("gridrec",)
# teravox's default algorithm name means TomoPy's own filtered backprojection.
_ALGORITHMS = {"fbp": "fbp"}


def tomopy_center(center: float, algorithm: str) -> float:
    """Our centre (pixel i centred at i) in the convention of TomoPy's ``algorithm``."""
    return float(center) if algorithm in _GRIDREC_LIKE else float(center) + 0.5


def reconstruct(sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
                filter_name: str = "ramp", threads: int = 0, eps: float = 1e-6,
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
    kwargs: dict[str, Any] = {"num_gridx": n, "num_gridy": n}
    if algo in ("gridrec", "fbp"):
        kwargs["filter_name"] = FILTER_NAMES[filter_name]
    try:
        rec = tomopy.recon(np.ascontiguousarray(sinos), theta.astype(np.float32),
                           center=tomopy_center(center, algo), sinogram_order=True,
                           algorithm=algo, ncore=base.resolve_threads(threads), **kwargs)
    except (ValueError, KeyError) as exc:
        raise ParamError(f"tomopy backend: TomoPy rejected algorithm {algo!r} ({exc})") from None
    return np.ascontiguousarray(rec[:, ::-1, :], dtype=np.float32)


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
