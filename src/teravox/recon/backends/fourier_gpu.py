"""``fourier-gpu``: the ``fourier`` algorithm on an NVIDIA GPU (CuPy + cufinufft).

The geometry (:func:`teravox.recon.backends.fourier.make_layout`: filter, window,
polar points, factors, angular resampling bands) and the per-pair steps
(:func:`~teravox.recon.backends.fourier.spectra_block`,
:func:`~teravox.recon.backends.fourier.resample_low`) are the CPU backend's own code,
run with ``xp = cupy`` and ``cupyx.scipy.fft``; only the driver differs.  The batched
type-1 NUFFT is a cufinufft plan (single precision, n_trans = slice pairs per batch).

Transfers overlap compute: sinograms go host → pinned buffer → device on an upload
stream while the compute stream reconstructs the previous batch, and slices come back
device → pinned buffer on a download stream; two buffers per direction (double
buffering), ordered by CUDA events.

CuPy and cufinufft are imported only when this backend is used.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import numpy as np

from teravox.recon.backends import base, fourier
from teravox.recon.backends.fourier_layout import even_fast_len, reach_mask

# Share of the free device memory that one call's batch buffers may take.
_DEVICE_FRACTION = 0.4
_MAX_PAIRS = 16
_CACHE_SIZE = 2  # the pairs' geometry and a single slice's


def _modules() -> tuple[Any, Any, Any, Any]:
    """cupy, cupyx, cupyx.scipy.fft, cufinufft — or ParamError naming what is missing."""
    try:
        import cufinufft
        import cupy
        import cupyx
        import cupyx.scipy.fft as cufft
    except ImportError as exc:
        raise base.absent_error("fourier-gpu", f"{exc.name or exc} does not import") from None
    return cupy, cupyx, cufft, cufinufft


class _DeviceGeometry:
    """A layout's arrays on the device, its streams and its cufinufft plan."""

    def __init__(self, layout: fourier.Layout, cp: Any):
        self.layout = layout
        self.arrs = {key: cp.asarray(value) for key, value in layout.arrays().items()}
        self.x = cp.asarray(layout.x)
        self.y = cp.asarray(layout.y)
        mask = reach_mask(layout)
        self.mask = None if mask is None else cp.asarray(mask)
        self.compute = cp.cuda.Stream(non_blocking=True)
        self.upload = cp.cuda.Stream(non_blocking=True)
        self.download = cp.cuda.Stream(non_blocking=True)
        self.plan: Any = None
        self.plan_key: tuple | None = None
        self.on_stream = True
        self.lock = threading.Lock()

    def plan_for(self, cufinufft: Any, n_trans: int, eps: float, upsampfac: float) -> Any:
        """The cached cufinufft plan for this batch size, its points set, on ``compute``."""
        key = (n_trans, eps, upsampfac)
        if self.plan_key == key:
            return self.plan
        self.plan = None
        n = self.layout.n

        def make(factor: float, stream: bool) -> Any:
            kw = {"gpu_stream": self.compute.ptr} if stream else {}
            return cufinufft.Plan(1, (n, n), n_trans=n_trans, eps=eps, isign=1,
                                  dtype="complex64", upsampfac=factor, **kw)

        self.on_stream = True
        try:
            plan = make(upsampfac, True)
        except TypeError:
            # A cufinufft without the gpu_stream option runs on the default stream; the
            # driver then synchronises around each execute instead.
            self.on_stream = False
            plan = make(upsampfac, False)
        except RuntimeError:
            # Older cufinufft builds take only upsampfac = 2.0 for every method.
            warnings.warn(f"cufinufft refused upsampfac={upsampfac}; using 2.0", stacklevel=3)
            plan = make(2.0, True)
        # Same axis order as finufft: y, x gives img[iy, ix].
        plan.setpts(self.y, self.x)
        self.plan, self.plan_key = plan, key
        return plan


_cache = base.LruCache(_CACHE_SIZE)


def _geometry(cp: Any, geo: fourier.Geometry, half: bool = False) -> _DeviceGeometry:
    return _cache.get(geo.key(half, cp.cuda.Device().id), lambda: _DeviceGeometry(geo.layout(half=half), cp))


def clear_cache() -> None:
    """Forget device geometries and plans (frees device memory at the next collection)."""
    _cache.clear()


def _fine_grid_bytes(n: int, upsampfac: float) -> int:
    """cufinufft's complex64 fine grid for n × n modes: sides the smallest even 2,3,5-smooth
    length ≥ σ·n (finufft's sizing)."""
    side = even_fast_len(max(2 * math.ceil(upsampfac * n / 2), 16))
    return side * side * 8


def _device_terms(n_angles: int, columns: int, n: int, pad_len: int, win_len: int,
                  n_points: int, upsampfac: float) -> tuple[int, int, int]:
    """Device bytes as (geometry, workspace, per slice pair of a batch).

    geometry: the layout's factors, filter, points (and cufinufft's sort of them) and
    mask; workspace: the filtering row buffer with cuFFT's out-of-place result, the
    window spectrum and its wrap-around copy, the circles, DC; per pair: coefficients,
    fine grid, complex image, and the double-buffered float32 input and output."""
    m = n_angles
    geometry = m * (win_len + 2) * 8 + 2 * m * 8 + pad_len * 4 + n_points * (8 + 8) + n * n * 4
    workspace = 2 * m * pad_len * 8 + 2 * m * win_len * 8 + m * win_len * 8 + m * 8
    # the plan may fall back to upsampfac 2.0 (plan_for)
    per_pair = (n_points * 8 + _fine_grid_bytes(n, max(upsampfac, 2.0)) + n * n * 8
                + 2 * (2 * m * columns * 4 + 2 * n * n * 4))
    return geometry, workspace, per_pair


def device_bytes(n_angles: int, columns: int, n: int, pairs: int, upsampfac: float = 1.25) -> int:
    """Bound on the device memory of one ``fourier-gpu`` call that reconstructs
    ``pairs`` slice pairs per NUFFT batch: (angles, columns) sinograms → n × n slices,
    for any centre on the detector.  Used by the plan before the centre is known."""
    pad_len, win_len, n_points = fourier.layout_bounds(n_angles, columns, n)
    geometry, workspace, per_pair = _device_terms(n_angles, columns, n, pad_len, win_len,
                                                  n_points, upsampfac)
    return geometry + workspace + pairs * per_pair


def pinned_bytes(n_angles: int, columns: int, n: int, pairs: int) -> int:
    """Host memory of the page-locked double buffers for ``pairs`` pairs per batch."""
    return 2 * (2 * pairs * n_angles * columns + 2 * pairs * n * n) * 4


def batch_pairs_for(budget: int, n_angles: int, columns: int, n: int,
                    upsampfac: float = 1.25) -> int:
    """Most slice pairs per batch (≤ the useful maximum) within ``budget`` device bytes;
    0 when not even one pair fits."""
    base_ = device_bytes(n_angles, columns, n, 0, upsampfac)
    per_pair = device_bytes(n_angles, columns, n, 1, upsampfac) - base_
    return int(max(0, min(_MAX_PAIRS, (budget - base_) // per_pair)))


def _pairs_per_batch(cp: Any, lay: fourier.Layout, n_pairs: int, upsampfac: float,
                     limit: int | None = None) -> int:
    """Slice pairs per NUFFT execute: at most ``limit`` (the plan's, from the GPU memory
    it was given) or the useful maximum, and within a share of the device's free memory
    now (other processes may share the device)."""
    _geometry_, workspace, per_pair = _device_terms(lay.n_angles, lay.columns, lay.n, lay.pad_len,
                                                    lay.win_len, lay.n_points, upsampfac)
    free, _total = cp.cuda.Device().mem_info  # the geometry is already on the device
    budget = max(per_pair, int(_DEVICE_FRACTION * free) - workspace)
    cap = int(max(1, min(n_pairs, limit or _MAX_PAIRS, budget // per_pair)))
    # Balance the batches so that the last one carries little zero padding.
    batches = -(-n_pairs // cap)
    return -(-n_pairs // batches)


def reconstruct(sinos: np.ndarray | base.Handover, theta: np.ndarray, center: float, *,
                n: int | None = None, filter_name: str = "ramp", threads: int = 0, eps: float = 1e-5,
                upsampfac: float = 1.25, algorithm: str = "fbp",
                measured: tuple[int, int] | None = None, pad: tuple[int, str] | None = None,
                batch_pairs: int | None = None, out: Any = None) -> Any:
    """Filtered backprojection via a NUFFT on the GPU; same contract as ``fourier``.

    theta in radians; center = rotation-axis column; returns (slices, n, n) float32
    attenuation per pixel (or ``out``, filled).  ``threads`` is unused (the host side
    only copies).  ``measured``: [first, stop) columns holding data rather than padding
    (pixels no measured ray reaches are skipped and set to 0, as on the CPU); ``pad``:
    padding done on the device, as the CPU backend does it; ``batch_pairs``: most slice
    pairs per NUFFT batch (the plan's, from GPU memory).  An odd last slice is
    transformed alone on half-lines, as on the CPU.
    """
    if isinstance(sinos, base.Handover):
        sinos = sinos.take()
    sinos, theta, center, n = base.check_inputs(sinos, theta, center, n)
    fourier.check_common(filter_name, eps, upsampfac, algorithm, "fourier-gpu")
    cp, cupyx, cufft, cufinufft = _modules()
    n_slices = sinos.shape[0]
    result = np.empty((n_slices, n, n), dtype=np.float32) if out is None else out
    if n_slices == 0:
        return result
    where = fourier.geometry(sinos.shape, theta, center, n, filter_name, measured, pad)
    if n_slices % 2:
        _single(cp, cufft, cufinufft, _geometry(cp, where, half=True), sinos[n_slices - 1:], result,
                n_slices - 1, eps, upsampfac)
    if n_slices >= 2:
        _pairs(cp, cupyx, cufft, cufinufft, _geometry(cp, where), sinos[: n_slices - n_slices % 2], result,
               eps, upsampfac, batch_pairs)
    return result


def _single(cp: Any, cufft: Any, cufinufft: Any, geo: _DeviceGeometry, sino: np.ndarray, result: Any,
            s: int, eps: float, upsampfac: float) -> None:
    """One slice alone, on its half-lines (the ``half`` layout), synchronously."""
    lay = geo.layout
    m = lay.n_angles
    with geo.lock:
        plan = geo.plan_for(cufinufft, 1, eps, upsampfac)
        ops = fourier.Ops(cp, cufft)
        with geo.compute:
            dev = cp.asarray(np.ascontiguousarray(sino, dtype=np.float32))
            zbuf = cp.empty((m, lay.pad_len), cp.complex64)
            circle = cp.empty((max(0, lay.k_split - 1), 2 * m), cp.complex64)
            dc = cp.empty(m if lay.k_split else 0, cp.complex64)
            coef = cp.empty((1, lay.n_points), cp.complex64)
            image = cp.empty((1, lay.n, lay.n), cp.complex64)
            fourier.spectra_block(ops, lay, geo.arrs, dev, 0, m, zbuf, coef[0], circle, dc)
            fourier.resample_low(ops, lay, circle, dc, coef[0])
            if not geo.on_stream:
                geo.compute.synchronize()
            plan.execute(coef, out=image)
            part = image[0].real
            if geo.mask is not None:
                part = part * geo.mask
            host = part.get()
        geo.compute.synchronize()
        result[s, :, :] = host


def _pairs(cp: Any, cupyx: Any, cufft: Any, cufinufft: Any, geo: _DeviceGeometry, sinos: np.ndarray,
           result: Any, eps: float, upsampfac: float, batch_pairs: int | None) -> None:
    """Slice pairs in batches, transfers overlapping compute (double buffering)."""
    n_slices, n = sinos.shape[0], geo.layout.n
    lay = geo.layout
    m, cols = lay.n_angles, sinos.shape[2]
    n_pairs = n_slices // 2
    with geo.lock:
        batch = _pairs_per_batch(cp, lay, n_pairs, upsampfac, batch_pairs)
        plan = geo.plan_for(cufinufft, batch, eps, upsampfac)
        ops = fourier.Ops(cp, cufft)
        batches = [(p0, min(batch, n_pairs - p0)) for p0 in range(0, n_pairs, batch)]
        host_in = [cupyx.empty_pinned((2 * batch, m, cols), np.float32) for _ in range(2)]
        host_out = [cupyx.empty_pinned((2 * batch, n, n), np.float32) for _ in range(2)]
        with geo.compute:
            dev_in = [cp.empty((2 * batch, m, cols), cp.float32) for _ in range(2)]
            dev_out = [cp.empty((2 * batch, n, n), cp.float32) for _ in range(2)]
            zbuf = cp.empty((m, lay.pad_len), cp.complex64)
            circle = cp.empty((max(0, lay.k_split - 1), 2 * m), cp.complex64)
            dc = cp.empty(m if lay.k_split else 0, cp.complex64)
            coef = cp.empty((batch, lay.n_points), cp.complex64)
            image = cp.empty((batch, n, n), cp.complex64)
        geo.compute.synchronize()
        uploaded: list[Any] = [None, None]
        computed: list[Any] = [None, None]
        downloaded: list[Any] = [None, None]

        def span(i: int) -> tuple[int, int]:
            p0, used = batches[i]
            return 2 * p0, min(2 * (p0 + used), n_slices)

        def upload(i: int) -> None:
            slot = i % 2
            s0, s1 = span(i)
            if uploaded[slot] is not None:
                uploaded[slot].synchronize()  # the pinned buffer's last copy has left
            host_in[slot][: s1 - s0] = sinos[s0:s1]
            host_in[slot][s1 - s0:] = 0  # a short last batch
            if computed[slot] is not None:
                geo.upload.wait_event(computed[slot])  # batch i−2 no longer reads dev_in
            dev_in[slot].set(host_in[slot], stream=geo.upload)
            uploaded[slot] = geo.upload.record()

        def compute(i: int) -> None:
            slot = i % 2
            used = batches[i][1]
            with geo.compute:
                geo.compute.wait_event(uploaded[slot])
                if downloaded[slot] is not None:
                    geo.compute.wait_event(downloaded[slot])  # dev_out[slot] copied out
                for b in range(batch):
                    if b >= used:
                        coef[b] = 0
                        continue
                    pair = dev_in[slot][2 * b: 2 * b + 2]
                    fourier.spectra_block(ops, lay, geo.arrs, pair, 0, m, zbuf, coef[b], circle, dc)
                    fourier.resample_low(ops, lay, circle, dc, coef[b])
                if not geo.on_stream:
                    geo.compute.synchronize()  # the plan runs on the default stream
                plan.execute(coef, out=image)
                if not geo.on_stream:
                    cp.cuda.Device().synchronize()
                dev_out[slot][0: 2 * used: 2] = image[:used].real
                dev_out[slot][1: 2 * used: 2] = image[:used].imag
                if geo.mask is not None:  # zero beyond the detector's reach, as on the CPU
                    dev_out[slot][: 2 * used] *= geo.mask
                computed[slot] = geo.compute.record()
            geo.download.wait_event(computed[slot])
            dev_out[slot].get(stream=geo.download, out=host_out[slot])
            downloaded[slot] = geo.download.record()

        def collect(i: int) -> None:
            slot = i % 2
            s0, s1 = span(i)
            downloaded[slot].synchronize()
            for s in range(s0, s1):  # ``result`` may be a writer that takes one slice at a time
                result[s, :, :] = host_out[slot][s - s0]

        upload(0)
        for i in range(len(batches)):
            compute(i)                 # queued on the GPU; the host goes on at once
            if i + 1 < len(batches):
                upload(i + 1)          # host copy + upload overlap batch i's compute
            if i >= 1:
                collect(i - 1)
        collect(len(batches) - 1)


class FourierGpuBackend(base.BackendBase):
    """GPU: NUFFT-based filtered backprojection with CuPy and cufinufft."""

    name = "fourier-gpu"
    hardware = "NVIDIA GPU (CuPy + cufinufft)"

    @classmethod
    def why_absent(cls) -> str:
        """Empty when usable, else the reason (for the error that lists the backends)."""
        try:
            import cupy
        except ImportError:
            return "CuPy is not installed"
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy sees no CUDA device"
        except Exception as exc:  # noqa: BLE001 - no driver, no device: all mean "absent"
            return f"CuPy sees no CUDA device ({exc})"
        try:
            import cufinufft  # noqa: F401
        except ImportError:
            return "cufinufft is not installed"
        return ""

    def reconstruct(self, sinos: np.ndarray, theta: np.ndarray, center: float, **kw: Any) -> np.ndarray:
        if not self.is_available():
            raise base.absent_error(self.name, self.why_absent())
        return reconstruct(sinos, theta, center, **kw)


__all__ = ["FourierGpuBackend", "batch_pairs_for", "clear_cache", "device_bytes", "pinned_bytes",
           "reconstruct"]
