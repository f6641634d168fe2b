"""Stripe (ring-artefact) removal in sinograms with algotom's methods (Vo et al. 2018; Münch 2009).

Used twice: in pass 1 on a projection chunk's *partial* sinograms (``stripe_prep``) and in
pass 2 on full sinograms (``stripe_recon``).  Works on transmission or on −log data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: teravox method name → function in ``algotom.prep.removal`` (one 2-D sinogram, angles on axis 0).
#: algotom is imported on first use: it takes about a second to import.
METHODS: dict[str, str] = {
    "sorting": "remove_stripe_based_sorting",
    "filtering": "remove_stripe_based_filtering",
    "fitting": "remove_stripe_based_fitting",
    "all": "remove_all_stripe",
    "wavelet-fft": "remove_stripe_based_wavelet_fft",
}


def remove_stripes(sinos: np.ndarray, method: str, *, snr: float = 3.0, la_size: int = 61,
                   sm_size: int = 21, workers: int = 1, out: np.ndarray | None = None,
                   **kw: object) -> np.ndarray:
    """Remove stripes from (rows, angles, cols) sinograms; float32 out, same shape.

    ``method`` (parameters ``stripe_prep`` / ``stripe_recon``) and the algotom function used:

    - ``"off"``: the input, as float32.
    - ``"sorting"``: ``remove_stripe_based_sorting(size=sm_size)`` — small/partial stripes.
    - ``"filtering"``: ``remove_stripe_based_filtering(size=sm_size)`` (``sigma=3`` via kw).
    - ``"fitting"``: ``remove_stripe_based_fitting`` (``order=2, sigma=10`` via kw) — low-frequency
      stripes; it divides by a fitted sinogram, so values must stay away from 0.
    - ``"all"``: ``remove_all_stripe(snr, la_size, sm_size)`` — dead, large and small stripes.
    - ``"wavelet-fft"``: ``remove_stripe_based_wavelet_fft`` (Münch et al. 2009; ``level=5,
      size=1, wavelet_name="db9"`` via kw).

    ``snr``, ``la_size`` (pixels) and ``sm_size`` (pixels) are the ``stripe_snr``,
    ``stripe_la_size`` and ``stripe_sm_size`` parameters; other algotom keyword arguments of the
    chosen function pass through ``kw``.  ``workers`` > 1 processes sinograms in threads.
    ``out``: a float32 array (or view) of the sinograms' shape to write into; it may be
    ``sinos`` itself, each sinogram being read before it is written.

    In pass 1 a chunk sees only its own angles, so the stripe estimate — and the result —
    depends on how the projections were chunked; pass 2 sees every angle.
    """
    sinos = np.asarray(sinos)
    if sinos.ndim != 3:
        raise ValueError(f"sinograms must be (rows, angles, cols), got shape {sinos.shape}")
    if method == "off":
        return sinos.astype(np.float32, copy=True)
    if method not in METHODS:
        raise ValueError(f"unknown stripe method {method!r}; expected off, {', '.join(METHODS)}")
    from algotom.prep import removal

    func = getattr(removal, METHODS[method])
    args = _arguments(method, func, snr=snr, la_size=la_size, sm_size=sm_size, kw=kw)

    if out is None:
        out = np.empty(sinos.shape, dtype=np.float32)

    def one(i: int) -> None:
        out[i] = func(np.asarray(sinos[i], dtype=np.float32), **args)

    if workers > 1 and sinos.shape[0] > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(sinos.shape[0])))
    else:
        for i in range(sinos.shape[0]):
            one(i)
    return out


def _arguments(method: str, func: Callable[..., np.ndarray], *, snr: float, la_size: int,
               sm_size: int, kw: dict) -> dict:
    """Keyword arguments for the algotom call; unknown names are refused here because algotom
    would read them as smoothing-filter options and fail obscurely."""
    allowed = set(inspect.signature(func).parameters) - {"sinogram", "options"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValueError(f"stripe method {method!r} has no parameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(sorted(allowed))}")
    defaults = {
        "sorting": {"size": sm_size},
        "filtering": {"size": sm_size},
        "fitting": {},
        "all": {"snr": snr, "la_size": la_size, "sm_size": sm_size},
        "wavelet-fft": {},
    }[method]
    return {**defaults, **kw}
