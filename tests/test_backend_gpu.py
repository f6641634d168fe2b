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


def _fake_modules(monkeypatch, free: int = 8 * 2**30) -> list[int]:
    """Stand-ins for CuPy and cufinufft; returns the list of device allocations (bytes)
    that the driver makes through them, cufinufft's fine grids and point sort included."""
    from teravox.recon.backends import fourier_nufft

    allocated: list[int] = []

    def dev(a):
        allocated.append(a.nbytes)
        return np.asarray(a).view(_DeviceArray)

    cp = types.SimpleNamespace(
        asarray=lambda a: dev(np.array(a)),
        empty=lambda shape, dtype: dev(np.empty(shape, dtype)),
        float32=np.float32, complex64=np.complex64,
        multiply=np.multiply, concatenate=np.concatenate, zeros=np.zeros,
        cuda=types.SimpleNamespace(
            Stream=_Stream,
            Device=lambda: types.SimpleNamespace(id=0, mem_info=(free, 2 * free))),
    )
    cupyx = types.SimpleNamespace(empty_pinned=lambda shape, dtype: np.empty(shape, dtype))

    class Plan:
        """cufinufft's type-1 plan, as the CPU backend's NUFFT with one thread (so that
        both backends' slices can be compared bit for bit)."""

        def __init__(self, kind, modes, n_trans, eps, isign, dtype, upsampfac, gpu_stream):
            assert kind == 1 and isign == 1 and dtype == "complex64"
            self._args = (tuple(modes), eps, upsampfac)
            # cufinufft's fine grids: n_trans complex64 grids of about σn + kernel width a side
            side = [int(np.ceil(upsampfac * m)) + 16 for m in modes]
            allocated.append(n_trans * side[0] * side[1] * 8)

        def setpts(self, x, y):
            self._x, self._y = np.asarray(x), np.asarray(y)
            allocated.append(self._x.size * 8)  # its sort: two int32 indices per point
            modes, eps, upsampfac = self._args
            self._plan = fourier_nufft.Type1(modes, self._x, self._y, eps, 1)

        def execute(self, data, out):
            for c, image in zip(np.asarray(data), np.asarray(out), strict=True):
                self._plan.execute(c, image)
            return out

    cufinufft = types.SimpleNamespace(Plan=Plan)
    # cuFFT as the CPU backend's FFTs (ducc0's), so that the slices can be compared bit for bit
    monkeypatch.setattr(fourier_gpu, "_modules", lambda: (cp, cupyx, fourier.DuccFFT, cufinufft))
    fourier_gpu.clear_cache()
    return allocated


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


# -- the device-memory model the plan uses -----------------------------------------------------
@pytest.mark.parametrize("n,columns", [(64, 64), (96, 150), (128, 192)])
def test_layout_bounds_hold_for_any_centre(n: int, columns: int):
    m = 3 * n // 2
    theta = np.arange(m) * np.pi / m
    pad_b, win_b, pts_b = fourier.layout_bounds(m, columns, n)
    rng = np.random.default_rng(n)
    sizes = []
    for center in [0.0, columns / 2, float(columns), *rng.uniform(0, columns, 5)]:
        for measured in (None, (columns // 4, 3 * columns // 4)):
            for resample in (True, False):
                lay = fourier.make_layout(theta, columns, center, n, "ramp", resample, measured)
                assert lay.pad_len <= pad_b and lay.win_len <= win_b and lay.n_points <= pts_b
                sizes.append(lay.n_points)
    assert max(sizes) >= 0.75 * pts_b  # a bound, not a guess far above


@pytest.mark.parametrize("n,slices,max_pairs", [(96, 6, 16), (128, 8, 2)])
def test_device_model_covers_what_the_driver_allocates(monkeypatch, n: int, slices: int,
                                                       max_pairs: int):
    allocated = _fake_modules(monkeypatch)
    monkeypatch.setattr(fourier_gpu, "_MAX_PAIRS", max_pairs)
    sinos, theta, center = _case(n, slices, offset=-3.0)
    fourier_gpu.reconstruct(sinos, theta, center, upsampfac=2.0)
    pairs = min(max_pairs, (slices + 1) // 2)
    model = fourier_gpu.device_bytes(theta.size, n, n, pairs, 2.0)
    used = sum(allocated)
    # every device buffer is in the model, which adds cuFFT/temporary workspace on top
    assert used <= model <= 2.0 * used
    fourier_gpu.clear_cache()


def test_batch_pairs_follow_gpu_memory():
    m, cols, n = 3072, 3072, 2048
    one = fourier_gpu.device_bytes(m, cols, n, 1)
    assert fourier_gpu.batch_pairs_for(one - 1, m, cols, n) == 0
    assert fourier_gpu.batch_pairs_for(one, m, cols, n) == 1
    per = fourier_gpu.device_bytes(m, cols, n, 2) - one
    assert fourier_gpu.batch_pairs_for(one + 3 * per, m, cols, n) == 4
    assert fourier_gpu.batch_pairs_for(2**40, m, cols, n) == fourier_gpu._MAX_PAIRS


def test_plan_batch_limit_reaches_the_driver(monkeypatch):
    _fake_modules(monkeypatch)
    seen = []
    real = fourier_gpu._pairs_per_batch

    def spy(cp, lay, n_pairs, upsampfac, limit=None):
        seen.append(real(cp, lay, n_pairs, upsampfac, limit))
        return seen[-1]

    monkeypatch.setattr(fourier_gpu, "_pairs_per_batch", spy)
    monkeypatch.setattr(base.backend_class("fourier-gpu"), "why_absent", classmethod(lambda cls: ""))
    sinos, theta, center = _case(64, 7)
    out = reconstruct(sinos, theta, center, backend="fourier-gpu", batch_pairs=3)
    seen.clear()
    reconstruct(sinos[:5], theta, center, backend="fourier-gpu", batch_pairs=1)
    assert seen == [1]  # 2 pairs in batches of 1
    seen.clear()
    out = reconstruct(sinos, theta, center, backend="fourier-gpu", batch_pairs=3)
    assert seen == [3]  # 3 pairs in one batch of ≤ 3; the 7th slice alone, on half-lines
    cpu = fourier.reconstruct(sinos, theta, center, threads=1)
    assert np.array_equal(out, cpu)
    fourier_gpu.clear_cache()
