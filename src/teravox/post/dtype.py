"""Conversion of reconstructed values to the output data type.

Integer outputs map a value range ``[vmin, vmax]`` linearly onto ``[0, qmax]``
(qmax = 65535 or 255).  The range is fixed once for the whole volume — from the
``dtype_range`` parameter or from percentiles of a few sample slices taken before
the chunk jobs — so every chunk uses the same mapping and the chunks join without
steps.  The mapping is stored with the volume (:meth:`DtypeMapping.to_attrs`) so
values can be recovered: ``value = vmin + (vmax − vmin) · q / qmax``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from teravox.errors import ParamError, StageError

QMAX = {"uint16": 65535, "uint8": 255}
FLOATS = ("float32", "float16")
_F16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class DtypeMapping:
    """How reconstructed float32 values become the output ``dtype``.

    ``vmin``/``vmax``: the values (reconstruction units) mapped onto 0 and qmax;
    required for ``uint16``/``uint8``, unused (``None``) for ``float32``/``float16``.
    """

    dtype: str
    vmin: float | None = None
    vmax: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in FLOATS and self.dtype not in QMAX:
            raise ParamError(f"dtype: expected one of float32, float16, uint16, uint8; got {self.dtype!r}")
        if self.dtype in QMAX:
            if self.vmin is None or self.vmax is None:
                raise ParamError(f"dtype {self.dtype} needs a value range [min, max] (dtype_range)")
            if not (np.isfinite(self.vmin) and np.isfinite(self.vmax) and self.vmin < self.vmax):
                raise ParamError(f"dtype_range must be finite with min < max, got [{self.vmin}, {self.vmax}]")

    @property
    def qmax(self) -> int | None:
        """Largest integer of the output type, None for floats."""
        return QMAX.get(self.dtype)

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` (float values) in the output dtype.

        Floats are cast (float16 clipped to its finite range ±65504 first, so no
        inf appears).  Integers: ``round((x − vmin)/(vmax − vmin) · qmax)`` clipped to
        ``[0, qmax]``; NaN becomes 0.
        """
        if self.dtype == "float32":
            return np.asarray(arr, dtype=np.float32)
        if self.dtype == "float16":
            return np.clip(arr, -_F16_MAX, _F16_MAX).astype(np.float16)
        assert self.vmin is not None and self.vmax is not None and self.qmax is not None
        scale = np.float32(self.qmax / (self.vmax - self.vmin))
        q = np.subtract(arr, np.float32(self.vmin), dtype=np.float32)
        q *= scale
        np.nan_to_num(q, copy=False, nan=0.0)
        np.clip(q, 0, self.qmax, out=q)
        np.rint(q, out=q)
        return q.astype(self.dtype)

    def to_values(self, q: np.ndarray) -> np.ndarray:
        """Back from stored numbers to float32 values (exact for floats, to ± half a step for integers)."""
        if self.dtype in FLOATS:
            return np.asarray(q, dtype=np.float32)
        assert self.vmin is not None and self.vmax is not None and self.qmax is not None
        step = (self.vmax - self.vmin) / self.qmax
        return (np.asarray(q, dtype=np.float32) * np.float32(step) + np.float32(self.vmin)).astype(np.float32)

    def to_attrs(self) -> dict[str, Any]:
        """HDF5-storable attributes describing the mapping (no None values)."""
        attrs: dict[str, Any] = {"dtype": self.dtype}
        if self.dtype in QMAX:
            attrs.update(vmin=float(self.vmin), vmax=float(self.vmax), qmax=int(self.qmax),
                         mapping="value = vmin + (vmax - vmin) * q / qmax")
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> DtypeMapping:
        """Inverse of :meth:`to_attrs` (h5py attribute values, bytes or numpy scalars, accepted)."""
        dtype = attrs["dtype"]
        if isinstance(dtype, bytes):
            dtype = dtype.decode()
        vmin, vmax = attrs.get("vmin"), attrs.get("vmax")
        return cls(str(dtype), None if vmin is None else float(vmin), None if vmax is None else float(vmax))


def range_from_samples(samples: np.ndarray, percentiles: Sequence[float] = (0.1, 99.9)) -> tuple[float, float]:
    """Value range ``(low, high)`` for an integer output: the given percentiles of ``samples``.

    ``samples``: values from a few slices of the volume (any shape); non-finite
    values are ignored.  Mask the area outside the field of view first if it is
    not to count.  A constant sample gets a range of ±0.5 around its value so the
    mapping stays defined.
    """
    if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise ParamError(f"dtype_percentiles must be [low, high] within 0..100, got {list(percentiles)}")
    values = np.asarray(samples).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise StageError("no finite values in the sample slices to set the output range; give dtype_range")
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        low, high = low - 0.5, high + 0.5
    return low, high
