"""The backend protocol, the registry of backends and the checks they all share.

A backend is a class with a ``name``, a ``hardware`` line, ``is_available()`` and
``why_absent()`` class methods that import nothing heavy when the library is absent,
and a ``reconstruct`` method with the signature of
:func:`teravox.recon.backends.reconstruct` (less ``backend``).  Backends are
imported lazily by name, so that importing teravox never imports CuPy or TomoPy.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from teravox.errors import ParamError

# name -> (module, class); the order is the preference order of backend="auto"
# among the backends that implement the fourier algorithm (the default choice).
REGISTRY: dict[str, tuple[str, str]] = {
    "fourier-gpu": ("teravox.recon.backends.fourier_gpu", "FourierGpuBackend"),
    "fourier": ("teravox.recon.backends.fourier", "FourierBackend"),
    "tomocupy": ("teravox.recon.backends.tomocupy_backend", "TomocupyBackend"),
    "tomopy": ("teravox.recon.backends.tomopy_backend", "TomopyBackend"),
}
AUTO_ORDER: tuple[str, ...] = ("fourier-gpu", "fourier")


@runtime_checkable
class Backend(Protocol):
    """What every backend provides."""

    name: str
    hardware: str

    @classmethod
    def is_available(cls) -> bool: ...

    @classmethod
    def why_absent(cls) -> str: ...

    def reconstruct(
        self, sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
        filter_name: str = "ramp", threads: int = 0, eps: float = 1e-5, upsampfac: float = 1.25,
        algorithm: str = "fbp",
    ) -> np.ndarray: ...


class BackendBase:
    """Shared by the backend classes: available exactly when nothing is absent."""

    name: str
    hardware: str

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        raise NotImplementedError

    @classmethod
    def is_available(cls) -> bool:
        return not cls.why_absent()


class Handover:
    """Sinograms given to a backend for good: the caller keeps no other reference, and the
    backend drops them as soon as it no longer needs them (the ``fourier`` backends, once
    the series of every angle is computed), so that their memory serves the transform."""

    def __init__(self, sinos: np.ndarray):
        self._sinos: np.ndarray | None = sinos

    def take(self) -> np.ndarray:
        """The sinograms; the holder forgets them."""
        if self._sinos is None:
            raise ValueError("the sinograms were already taken")
        sinos, self._sinos = self._sinos, None
        return sinos


class LruCache:
    """The last ``size`` values by key, thread-safe: the backends' geometries and plans,
    built once for a stage's many calls with the same angles and centre."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        """The value under ``key``, made by ``make()`` (outside the lock) when absent."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def backend_class(name: str) -> type:
    """The backend class registered under ``name`` (imports its module, not its library)."""
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def is_available(name: str) -> bool:
    """Whether backend ``name`` has its library and its hardware here."""
    try:
        return bool(backend_class(name).is_available())
    except Exception:  # noqa: BLE001 - a broken optional install counts as absent
        return False


def installed() -> list[str]:
    """Names of the backends usable here, in registry order."""
    return [name for name in REGISTRY if is_available(name)]


def absent_error(name: str, why: str) -> ParamError:
    """ParamError for a backend that cannot run here, naming those that can."""
    return ParamError(f"backend {name!r} is not available ({why}); installed backends: "
                      f"{', '.join(installed()) or 'none'}")


def resolve_threads(threads: int) -> int:
    """Threads to use: ``threads`` if positive, else the cores this job was given."""
    from teravox.resources import threads as job_threads

    if threads < 0:
        raise ParamError(f"threads must be 0 (all cores) or positive, got {threads}")
    return job_threads(threads)


def check_inputs(sinos: np.ndarray, theta: np.ndarray, center: float,
                 n: int | None) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Validate the common arguments; return float32 sinograms, float64 angles, centre, n.

    Shape mismatches are programming errors between stages (ValueError); a bad size or
    centre is something the user set (ParamError).
    """
    sinos = np.asarray(sinos)
    if sinos.ndim != 3:
        raise ValueError(f"sinograms must be (slices, angles, columns), got shape {sinos.shape}")
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if theta.size != sinos.shape[1]:
        raise ValueError(f"{theta.size} angles for sinograms with {sinos.shape[1]} angles")
    if theta.size == 0 or sinos.shape[2] == 0:
        raise ValueError(f"sinograms have no angles or no columns (shape {sinos.shape})")
    if not np.all(np.isfinite(theta)):
        raise ValueError("angles must be finite")
    center = float(center)
    if not np.isfinite(center):
        raise ParamError(f"center must be a finite column position, got {center}")
    n = sinos.shape[2] if n is None else int(n)
    if n < 1:
        raise ParamError(f"output size n must be at least 1, got {n}")
    return np.asarray(sinos, dtype=np.float32), theta, center, n


def angle_weights(theta: np.ndarray) -> np.ndarray:
    """Quadrature weights (radians, summing to π) of the angles for the backprojection.

    Each angle gets half the gap to its neighbours on the half circle [0, π), since a
    projection at θ + π carries the same line integrals as θ.  Equally spaced angles over
    180° get π/N each, and so do equally spaced angles over 360° (each direction twice);
    a gap (excluded projections) is shared by the two angles beside it.
    """
    m = theta.size
    if m == 1:
        return np.full(1, np.pi)
    folded = np.mod(theta, np.pi)
    order = np.argsort(folded, kind="stable")
    sorted_ = folded[order]
    gaps = np.diff(np.concatenate([sorted_, [sorted_[0] + np.pi]]))  # gap after each
    w_sorted = 0.5 * (gaps + np.roll(gaps, 1))
    weights = np.empty(m)
    weights[order] = w_sorted
    return weights
