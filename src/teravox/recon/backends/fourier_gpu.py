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
from collections import OrderedDict
from typing import Any

import numpy as np

from teravox.recon.backends import base, fourier

# Share of the free device memory that one call's batch buffers may take.
_DEVICE_FRACTION = 0.4
_MAX_PAIRS = 16
_CACHE_SIZE = 1


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
        self.mask = None if layout.mask is None else cp.asarray(layout.mask)
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


_cache: OrderedDict[tuple, _DeviceGeometry] = OrderedDict()
_cache_lock = threading.Lock()


def _geometry(cp: Any, theta: np.ndarray, columns: int, center: float, n: int,
              filter_name: str) -> _DeviceGeometry:
    key = (theta.tobytes(), columns, center, n, filter_name, fourier.RESAMPLE, cp.cuda.Device().id)
    with _cache_lock:
        geo = _cache.get(key)
        if geo is not None:
            _cache.move_to_end(key)
            return geo
    layout = fourier.make_layout(theta, columns, center, n, filter_name, fourier.RESAMPLE)
    geo = _DeviceGeometry(layout, cp)
    with _cache_lock:
        _cache[key] = geo
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return geo


def clear_cache() -> None:
    """Forget device geometries and plans (frees device memory at the next collection)."""
    with _cache_lock:
        _cache.clear()


def _pairs_per_batch(cp: Any, lay: fourier.Layout, n_pairs: int, upsampfac: float) -> int:
    """Slice pairs per NUFFT execute that fit in a share of the free device memory."""
    n, m, cols = lay.n, lay.n_angles, lay.columns
    fine = (math.ceil(max(upsampfac, 2.0) * n) + 16) ** 2 * 8  # the plan may fall back to 2.0
    per_pair = (lay.n_points * 8 + fine + n * n * 8     # coefficients, fine grid, image
                + 2 * (2 * m * cols * 4 + 2 * n * n * 4))  # double-buffered input and output
    free, _total = cp.cuda.Device().mem_info
    fixed = m * lay.pad_len * 8 + 2 * m * max(lay.k_split, 1) * 8 * 2
    budget = max(per_pair, int(_DEVICE_FRACTION * free) - fixed)
    cap = int(max(1, min(n_pairs, _MAX_PAIRS, budget // per_pair)))
    # Balance the batches so that the last one carries little zero padding.
    batches = -(-n_pairs // cap)
    return -(-n_pairs // batches)


def reconstruct(sinos: np.ndarray, theta: np.ndarray, center: float, *, n: int | None = None,
                filter_name: str = "ramp", threads: int = 0, eps: float = 1e-6,
                upsampfac: float = 1.25, algorithm: str = "fbp") -> np.ndarray:
    """Filtered backprojection via a NUFFT on the GPU; same contract as ``fourier``.

    theta in radians; center = rotation-axis column; returns (slices, n, n) float32
    attenuation per pixel.  ``threads`` is unused (the host side only copies).
    """
    sinos, theta, center, n = base.check_inputs(sinos, theta, center, n)
    fourier.check_common(filter_name, eps, upsampfac, algorithm, "fourier-gpu")
    cp, cupyx, cufft, cufinufft = _modules()
    n_slices = sinos.shape[0]
    result = np.empty((n_slices, n, n), dtype=np.float32)
    if n_slices == 0:
        return result
    geo = _geometry(cp, theta, sinos.shape[2], center, n, filter_name)
    lay = geo.layout
    m, cols = lay.n_angles, lay.columns
    n_pairs = (n_slices + 1) // 2
    with geo.lock:
        batch = _pairs_per_batch(cp, lay, n_pairs, upsampfac)
        plan = geo.plan_for(cufinufft, batch, eps, upsampfac)
        ops = fourier.Ops(cp, cufft)
        batches = [(p0, min(batch, n_pairs - p0)) for p0 in range(0, n_pairs, batch)]
        host_in = [cupyx.empty_pinned((2 * batch, m, cols), np.float32) for _ in range(2)]
        host_out = [cupyx.empty_pinned((2 * batch, n, n), np.float32) for _ in range(2)]
        with geo.compute:
            dev_in = [cp.empty((2 * batch, m, cols), cp.float32) for _ in range(2)]
            dev_out = [cp.empty((2 * batch, n, n), cp.float32) for _ in range(2)]
            zbuf = cp.empty((m, lay.pad_len), cp.complex64)
            circle = cp.empty((2 * m, max(0, lay.k_split - 1)), cp.complex64)
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
            host_in[slot][s1 - s0:] = 0  # an odd last slice pairs with zeros
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
            result[s0:s1] = host_out[slot][: s1 - s0]

        upload(0)
        for i in range(len(batches)):
            compute(i)                 # queued on the GPU; the host goes on at once
            if i + 1 < len(batches):
                upload(i + 1)          # host copy + upload overlap batch i's compute
            if i >= 1:
                collect(i - 1)
        collect(len(batches) - 1)
    return result


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


__all__ = ["FourierGpuBackend", "clear_cache", "reconstruct"]
