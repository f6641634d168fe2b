"""Reconstruction backends behind one interface: sinograms, angles, centre → slices.

>>> from teravox.recon.backends import reconstruct
>>> slices = reconstruct(sinos, theta, center, backend="auto")      # doctest: +SKIP

``sinos`` is (slices, angles, columns) float32 line integrals (−log taken), or a
:class:`~teravox.recon.backends.base.Handover` of them; ``theta`` radians, ``center`` the rotation-axis column
(0-based, pixel i centred at i).  The result is (slices, n, n) float32 on the grid of
docs/architecture.md (``img[iy, ix]`` at x = ix − (n−1)/2, y = iy − (n−1)/2 relative
to the axis), in attenuation per pixel.

Backends: ``fourier`` (CPU default, ducc0), ``fourier-gpu`` (CuPy + cufinufft),
``tomopy`` and ``tomocupy`` (adapters, when those libraries are installed).
``auto`` picks ``fourier-gpu`` when CuPy sees a device and cufinufft imports, else
``fourier``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teravox.errors import ParamError
from teravox.recon.backends import base

__all__ = ["available", "describe", "reconstruct", "resolve"]


def available() -> list[str]:
    """Backends installed here whose hardware is present, in order of preference."""
    return base.installed()


def describe() -> dict[str, str]:
    """Every known backend → its hardware and whether it can run here (for reports)."""
    out = {}
    for name in base.REGISTRY:
        cls = base.backend_class(name)
        out[name] = f"{cls.hardware}: {'available' if base.is_available(name) else 'not available'}"
    return out


def resolve(name: str) -> str:
    """The backend that ``name`` means here: ``auto`` → the fastest available.

    Unknown or absent backends raise ParamError listing the installed ones.
    """
    if name == "auto":
        for candidate in base.AUTO_ORDER:
            if base.is_available(candidate):
                return candidate
        raise ParamError("backend 'auto': no reconstruction backend is available "
                         "(install ducc0 for the CPU backend 'fourier')")
    if name not in base.REGISTRY:
        raise ParamError(f"backend: unknown backend {name!r}; known backends: "
                         f"{', '.join(['auto', *base.REGISTRY])}; installed here: "
                         f"{', '.join(available()) or 'none'}")
    if not base.is_available(name):
        raise base.absent_error(name, base.backend_class(name).why_absent())
    return name


def reconstruct(sinos: np.ndarray | base.Handover, theta: np.ndarray, center: float, *, backend: str = "auto",
                n: int | None = None, filter_name: str = "ramp", threads: int = 0,
                eps: float = 1e-5, upsampfac: float = 1.25, algorithm: str = "fbp",
                measured: tuple[int, int] | None = None, batch_pairs: int | None = None,
                pad: tuple[int, str] | None = None, tile: int | None = None, out: Any = None) -> Any:
    """Reconstruct (slices, angles, columns) line integrals into (slices, n, n) float32.

    theta in radians; center in detector columns (0-based, pixel i centred at i); n the
    output size in pixels (default: columns); values are attenuation per pixel.
    ``eps``/``upsampfac`` tune the NUFFT of the fourier backends; ``algorithm`` is
    passed to tomopy/tomocupy.  ``measured`` = [first, stop) columns that hold data rather
    than padding; the fourier backends then skip pixels no measured ray reaches.
    ``pad`` = (width, "edge" | "zero"): pad the columns by ``width`` each side first (the
    fourier backends do it row by row, without a padded copy; centre and ``measured`` are
    in the unpadded columns).  ``batch_pairs`` caps the slice pairs per NUFFT batch of
    ``fourier-gpu`` (the plan sizes it from GPU memory).  ``tile``: the ``fourier``
    backend computes the slices in tiles of at most this side (bounded memory).
    ``out``: where the slices go (``out[s, rows, cols] = values``); returned.
    """
    name = resolve(backend)
    impl = base.backend_class(name)()
    if name in ("fourier", "fourier-gpu"):
        extra: dict = {"measured": measured, "pad": pad, "out": out}
        if batch_pairs and name == "fourier-gpu":
            extra["batch_pairs"] = batch_pairs
        if tile and name == "fourier":
            extra["tile"] = tile
        return impl.reconstruct(sinos, theta, center, n=n, filter_name=filter_name, threads=threads,
                                eps=eps, upsampfac=upsampfac, algorithm=algorithm, **extra)
    data = sinos.take() if isinstance(sinos, base.Handover) else sinos
    if pad and pad[0]:
        from teravox.recon.sinogram import pad as pad_columns

        data, center = pad_columns(data, pad[0], pad[1]), center + pad[0]
    slices = impl.reconstruct(data, theta, center, n=n, filter_name=filter_name, threads=threads,
                              eps=eps, upsampfac=upsampfac, algorithm=algorithm)
    if out is None:
        return slices
    for s, image in enumerate(slices):
        out[s, :, :] = image
    return out
