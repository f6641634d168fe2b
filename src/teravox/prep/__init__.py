"""Pass-1 corrections of projections (angles, rows, cols), float32: pure array functions.

In pipeline order: :mod:`~teravox.prep.flatdark` (flat/dark normalisation),
:mod:`~teravox.prep.i0` (beam intensity), :mod:`~teravox.prep.outliers` (zingers),
:mod:`~teravox.prep.stripes` (stripes in the chunk's partial sinograms, also used in pass 2),
:mod:`~teravox.prep.air` (air at both edges) and :mod:`~teravox.prep.paganin` (phase retrieval).
The submodules are imported on first use (algotom alone takes a second to import).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "combine": "flatdark", "normalize": "flatdark", "Normalized": "flatdark",
    "from_monitor": "i0", "from_air": "i0", "air_level": "i0", "find_air_cols": "i0",
    "remove_outliers": "outliers",
    "remove_stripes": "stripes",
    "air_correct": "air",
    "retrieve_phase": "paganin", "paganin_kernel": "paganin", "kernel_support_px": "paganin",
    "delta_beta_from_tomopy_alpha": "paganin",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
