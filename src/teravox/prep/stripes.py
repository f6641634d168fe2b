"""Stripe (ring-artefact) removal in sinograms with algotom's methods (Vo et al. 2018; Münch 2009).

Used twice: in pass 1 on a projection chunk's *partial* sinograms (``stripe_prep``) and in
pass 2 on full sinograms (``stripe_recon``).  Works on transmission or on −log data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from teravox.parallel import for_each

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
    ``"sorting"`` with an odd window and no other option runs :func:`sort_filter`, which
    gives algotom's result to the bit in a fifth of its time.

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

    if method == "sorting" and set(args) == {"size"} and args["size"] % 2 == 1:
        func, args = sort_filter, {"size": args["size"]}  # algotom's result, ~5x faster
    if out is None:
        out = np.empty(sinos.shape, dtype=np.float32)

    def one(i: int) -> None:
        out[i] = func(np.asarray(sinos[i], dtype=np.float32), **args)

    for_each(one, sinos.shape[0], workers)
    return out


def sort_filter(sinogram: np.ndarray, size: int) -> np.ndarray:
    """algotom's ``remove_stripe_based_sorting(sinogram, size)`` (Vo et al. 2018, algorithm 3),
    equal to the bit and about five times faster; (angles, columns) float32 in and out.

    Each column is sorted along the angles, each row of the sorted image median-filtered
    over ``size`` (odd) columns, and the values put back where they came from.  Written here
    because algotom's 2-D ``median_filter`` with a (1, size) window takes 60 % of its time:
    SciPy's 1-D median is ten times faster, so the rows, each reflected by ``size // 2`` at
    both ends (ndimage's "reflect"), are filtered as one 1-D array.  The sort is on float64
    as algotom's is (its index and value pairs are float64), so ties are broken alike; the
    way back is a scatter instead of algotom's second sort.
    """
    from scipy import ndimage as ndi

    if size % 2 != 1:
        raise ValueError(f"sort_filter needs an odd window, got {size}")
    lanes = np.asarray(sinogram, dtype=np.float32).T          # (columns, angles)
    order = np.argsort(lanes.astype(np.float64), axis=1)
    ranked = np.take_along_axis(lanes, order, axis=1).T       # (angles, columns), sorted down
    half = size // 2
    padded = np.pad(ranked, ((0, 0), (half, half)), mode="symmetric")
    smooth = ndi.median_filter(padded.reshape(-1), size, mode="nearest").reshape(padded.shape)
    out = np.empty(lanes.shape, dtype=np.float32)
    np.put_along_axis(out, order, smooth[:, half: half + lanes.shape[0]].T, axis=1)
    return out.T


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
