"""The GPU backends: ``fourier-gpu`` against ``fourier``, and the ``tomocupy`` adapter.

Tests marked ``gpu`` need CuPy, a CUDA device and cufinufft (or TomoCuPy) and are
skipped with the reason otherwise.  The first test runs the GPU driver (batches,
double buffering, odd slice counts, the shared per-pair code) everywhere, on numpy
stand-ins for CuPy and cufinufft, so its logic is checked without a device.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.fft

from teravox.recon.backends import base, fourier, fourier_gpu, reconstruct
from teravox.synth.phantom import default_phantom


def _case(n: int, slices: int, offset: float = 0.0):
    theta = np.arange(3 * n // 2) * np.pi / (3 * n // 2)
    center = (n - 1) / 2 + offset
    ph = default_phantom(n)
    z = np.linspace(-0.2 * n, 0.2 * n, slices)
    sinos = ph.line_integrals(theta, np.arange(n) - center, z, supersample=2).transpose(1, 0, 2)
    return sinos.astype(np.float32), theta, center


# -- the driver on numpy stand-ins --------------------------------------------------------------
class _DeviceArray(np.ndarray):
    """numpy array with CuPy's host-transfer methods."""

    def set(self, arr, stream=None):  # noqa: A003 - CuPy's name
        self[...] = arr

    def get(self, stream=None, out=None):
        if out is None:
            return np.array(self)
        out[...] = self
        return out


class _Event:
    def synchronize(self) -> None:
        pass


class _Stream:
    ptr = 0

    def __init__(self, non_blocking: bool = False):
        self.waited: list[_Event] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def record(self) -> _Event:
        return _Event()

    def wait_event(self, event: _Event) -> None:
        assert isinstance(event, _Event)
        self.waited.append(event)

    def synchronize(self) -> None:
        pass


def _fake_modules(monkeypatch):
    import finufft

    def dev(a):
        return np.asarray(a).view(_DeviceArray)

    cp = types.SimpleNamespace(
        asarray=lambda a: dev(np.array(a)),
        empty=lambda shape, dtype: dev(np.empty(shape, dtype)),
        float32=np.float32, complex64=np.complex64,
        multiply=np.multiply, concatenate=np.concatenate, zeros=np.zeros,
        cuda=types.SimpleNamespace(
            Stream=_Stream,
            Device=lambda: types.SimpleNamespace(id=0, mem_info=(8 * 2**30, 16 * 2**30))),
    )
    cupyx = types.SimpleNamespace(empty_pinned=lambda shape, dtype: np.empty(shape, dtype))

    class Plan:
        def __init__(self, kind, modes, n_trans, eps, isign, dtype, upsampfac, gpu_stream):
            self._plan = finufft.Plan(kind, modes, n_trans=n_trans, eps=eps, isign=isign,
                                      dtype=dtype, upsampfac=upsampfac, nthreads=1)

        def setpts(self, x, y):
            self._x, self._y = np.asarray(x), np.asarray(y)
            self._plan.setpts(self._x, self._y)

        def execute(self, data, out):
            self._plan.execute(np.asarray(data), out=np.asarray(out))
            return out

    cufinufft = types.SimpleNamespace(Plan=Plan)
    monkeypatch.setattr(fourier_gpu, "_modules", lambda: (cp, cupyx, scipy.fft, cufinufft))
    fourier_gpu.clear_cache()


@pytest.mark.parametrize("slices,max_pairs", [(5, 1), (8, 3), (1, 16)])
def test_gpu_driver_on_numpy_stand_ins(monkeypatch, slices: int, max_pairs: int):
    _fake_modules(monkeypatch)
    monkeypatch.setattr(fourier_gpu, "_MAX_PAIRS", max_pairs)  # force several batches
    sinos, theta, center = _case(128, slices, offset=2.5)
    cpu = fourier.reconstruct(sinos, theta, center, threads=1)
    gpu = fourier_gpu.reconstruct(sinos, theta, center)
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    # Same code, same pairs, single-threaded spreading on both sides: identical.
    assert np.array_equal(gpu, cpu)
    fourier_gpu.clear_cache()


# -- on a real device ----------------------------------------------------------------------------
def _gpu_ready() -> str:
    return base.backend_class("fourier-gpu").why_absent()


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("n,slices", [(512, 6), (2048, 2)])
def test_fourier_gpu_matches_cpu(n: int, slices: int):
    why = _gpu_ready()
    if why:
        pytest.skip(f"fourier-gpu unavailable: {why}")
    sinos, theta, center = _case(n, slices, offset=3.5)
    cpu = fourier.reconstruct(sinos, theta, center)
    dev = reconstruct(sinos, theta, center, backend="fourier-gpu")
    rng = float(cpu.max() - cpu.min())
    assert np.abs(dev - cpu).max() <= 1e-4 * rng


@gpu
def test_tomocupy_agrees_with_fourier():
    why = base.backend_class("tomocupy").why_absent()
    if why:
        pytest.skip(f"tomocupy unavailable: {why}")
    sinos, theta, center = _case(256, 2, offset=3.0)
    ours = fourier.reconstruct(sinos, theta, center)
    theirs = reconstruct(sinos, theta, center, backend="tomocupy")
    yy, xx = np.mgrid[:256, :256] - 127.5
    fov = np.hypot(xx, yy) < 0.45 * 256
    a, b = theirs[:, fov].ravel().astype(np.float64), ours[:, fov].ravel().astype(np.float64)
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    assert abs(a @ b / (b @ b) - 1) <= 0.05
