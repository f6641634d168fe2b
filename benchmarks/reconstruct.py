"""Speed, accuracy and memory of a reconstruction backend, with skimage's iradon beside it.

For each size N the sinograms are exact line integrals of ``default_phantom(N)`` at
1.5·N angles (detector pixels integrated, supersample 2), axis at (N − 1)/2.  Printed
per N: the first call on 2 slices (it builds the cached geometry and NUFFT plan), the
per-slice wall and CPU time of a call on ``--slices`` slices (best of ``--repeat``
rounds in which the backend, its padded row and gridrec take turns, freed memory kept
between calls as the reconstruct job keeps it), correlation and least-squares
amplitude against the voxel-averaged ground truth inside 90 % of the radius, the peak
resident memory added from before the first call through one untimed call on
``--slices`` slices (sampled every 2 ms: cached geometry and plan, workspace and the
result; glibc's default allocator), divided by the slices of a call, and the growth of the
time from the smallest N against N² log N.  skimage.transform.iradon (linear
interpolation FBP) runs on one slice of odd size N − 1 (its axis convention, columns //
2, equals ours only for odd sizes) up to ``--iradon-max`` as the accuracy and speed
reference.  With ``--backend fourier-gpu`` it also times 2048 slices of 2048².

    python benchmarks/reconstruct.py                                   # fourier, 512…4096
    python benchmarks/reconstruct.py --sizes 1024 2048 --slices 8
    python benchmarks/reconstruct.py --backend fourier-gpu
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import numpy as np
import psutil

from teravox.recon.backends import reconstruct, resolve
from teravox.resources import reuse_freed_memory
from teravox.synth.phantom import default_phantom


class PeakRSS:
    """Peak resident set size above the starting one while the block runs (bytes)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.proc = interval, psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def added(self) -> int:
        return self.peak - self.base


@contextlib.contextmanager
def job_malloc():
    """Freed arrays kept for the next call, as the reconstruct job has them
    (resources.reuse_freed_memory), for the timed calls of every method; glibc's
    thresholds restored and the kept memory returned after, so that the next memory
    figure starts from a clean heap."""
    reuse_freed_memory()
    try:
        yield
    finally:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)


def phantom_data(n: int, slices: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(sinograms, theta, centre, ground truth of slice 0) for an n-pixel field of view."""
    m = 3 * n // 2
    theta = np.arange(m) * np.pi / m
    center = (n - 1) / 2
    ph = default_phantom(n)
    z = np.linspace(0, 0.3 * n, slices)
    sinos = ph.line_integrals(theta, np.arange(n) - center, z, supersample=2).transpose(1, 0, 2)
    return np.ascontiguousarray(sinos, dtype=np.float32), theta, center, ph.slice(0.0, n, supersample=2)


def metrics(rec: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    n = gt.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = np.hypot(xx, yy) < 0.9 * n / 2
    a, b = rec[inside].astype(np.float64), gt[inside].astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), float(a @ b / (b @ b))


@dataclass
class Method:
    """One method at one size: its timed call (returns the slices, or None when they come
    from elsewhere), its first-call and memory figures, and how to score its slice 0."""

    call: Callable[[], Any]
    n: int
    angles: int
    slices: int
    setup: float
    rss: float
    score: Callable[[Any], tuple[float, float]]


def prepare_backend(backend: str, n: int, slices: int, threads: int, pad: int = 0, **nufft: float) -> Method:
    sinos, theta, center, gt = phantom_data(n, slices)
    # as the reconstruct stage pads by default: edge values, a quarter each side, asked of
    # the backend (the fourier backends pad row by row, without a padded copy)
    extra = {"pad": (pad, "edge")} if pad else {}
    gc.collect()
    clear = getattr(import_module(f"teravox.recon.backends.{backend.replace('-', '_')}"), "clear_cache", None)
    if clear:
        clear()  # the memory figure includes building the geometry

    def call(k: int = slices) -> np.ndarray:
        return reconstruct(sinos[:k], theta, center, backend=backend, threads=threads, n=n, **nufft, **extra)

    with PeakRSS() as mem:  # from before the first call: geometry, plan, workspace, result
        t0 = time.perf_counter()
        call(2)  # geometry + plan
        setup = time.perf_counter() - t0
        call()
    return Method(call, n, theta.size, slices, setup, mem.added / slices, lambda rec: metrics(rec[0], gt))


def prepare_gridrec(n: int, slices: int, threads: int) -> Method:
    """TomoPy's gridrec as users call it (``tomopy.recon``, ramlak, ``ncore`` = threads) for the
    time; its accuracy through the ``tomopy`` adapter (teravox's orientation and grid)."""
    import tomopy

    sinos, theta, center, gt = phantom_data(n, slices)

    def call() -> None:
        tomopy.recon(sinos, theta.astype(np.float32), center=center, sinogram_order=True,
                     algorithm="gridrec", filter_name="ramlak", ncore=threads)

    with PeakRSS() as mem:
        call()

    def score(_: Any) -> tuple[float, float]:
        rec = reconstruct(sinos[:1], theta, center, backend="tomopy", algorithm="gridrec", threads=threads, n=n)
        return metrics(rec[0], gt)

    return Method(call, n, theta.size, slices, 0.0, mem.added / slices, score)


def best_of(methods: dict[str, Method], repeat: int) -> dict[str, dict]:
    """Best wall and CPU seconds per slice of each method over ``repeat`` rounds in which
    the methods take turns (so that a drift in the machine's speed reaches them alike),
    freed memory kept between calls as the reconstruct job keeps it; with the scores."""
    best = {name: [math.inf, math.inf, None] for name in methods}
    with job_malloc():
        for _ in range(repeat):
            for name, m in methods.items():
                c0, t0 = time.process_time(), time.perf_counter()
                out = m.call()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                b = best[name]
                b[0], b[1], b[2] = min(b[0], wall), min(b[1], cpu), out
    rows = {}
    for name, m in methods.items():
        wall, cpu, out = best[name]
        corr, amp = m.score(out)
        rows[name] = {"n": m.n, "angles": m.angles, "slices": m.slices, "setup": m.setup,
                      "wall": wall / m.slices, "cpu": cpu / m.slices, "corr": corr, "amp": amp, "rss": m.rss}
    return rows


def time_iradon(n: int) -> dict:
    from skimage.transform import iradon

    n = n - 1 if n % 2 == 0 else n  # skimage's axis is at columns // 2
    sinos, theta, center, gt = phantom_data(n, 1)
    with PeakRSS() as mem:
        c0, t0 = time.process_time(), time.perf_counter()
        # skimage turns the other way: our slice is iradon(sino.T, −θ) (tests/test_backends.py).
        rec = iradon(sinos[0].T, theta=-np.degrees(theta), filter_name="ramp", circle=False,
                     output_size=n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    corr, amp = metrics(rec, gt)
    return {"n": n, "angles": theta.size, "slices": 1, "setup": 0.0, "wall": wall, "cpu": cpu,
            "corr": corr, "amp": amp, "rss": mem.added, "rss_call": mem.added}


def gpu_throughput(slices: int = 2048, n: int = 2048, chunk: int = 128) -> tuple[float, float]:
    """Seconds for ``slices`` slices of n² on fourier-gpu, in calls of ``chunk`` slices."""
    sinos, theta, center, _ = phantom_data(n, 8)
    block = np.ascontiguousarray(np.resize(sinos, (chunk,) + sinos.shape[1:]))
    reconstruct(block[:2], theta, center, backend="fourier-gpu")
    t0 = time.perf_counter()
    done = 0
    while done < slices:
        k = min(chunk, slices - done)
        reconstruct(block[:k], theta, center, backend="fourier-gpu")
        done += k
    total = time.perf_counter() - t0
    return total, slices / total


def _tomopy_imports() -> bool:
    try:
        import tomopy  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="fourier", choices=["fourier", "fourier-gpu", "tomopy", "tomocupy"])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--slices", type=int, default=8, help="slices per timed call (default 8; 4 above N=2048)")
    p.add_argument("--repeat", type=int, default=3, help="rounds per size, the methods taking turns in each; best kept (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iradon-max", type=int, default=1024, help="largest N for skimage's iradon (default 1024)")
    p.add_argument("--padded", type=int, nargs="*", default=[2048],
                   help="sizes also timed with the detector edge-padded by N/4 each side, "
                        "reconstructing N × N, as the reconstruct stage does by default (default 2048)")
    p.add_argument("--eps", type=float, default=1e-5, help="NUFFT tolerance (fourier backends; default 1e-5)")
    p.add_argument("--upsampfac", type=float, default=1.25, help="NUFFT upsampling of fourier-gpu (default 1.25)")
    p.add_argument("--no-gridrec", action="store_true",
                   help="leave out TomoPy's gridrec (timed beside the backend when TomoPy imports)")
    args = p.parse_args(argv)
    backend = resolve(args.backend)
    nufft = {"eps": args.eps, "upsampfac": args.upsampfac} if backend.startswith("fourier") else {}
    gridrec = not args.no_gridrec and _tomopy_imports()
    cmd = "python benchmarks/reconstruct.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd}")
    print(f"# backend {backend}, threads {args.threads}, {os.cpu_count()} CPUs here, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = (f"{'method':<14}{'N':>6}{'angles':>7}{'slices':>7}{'1st call':>9}{'s/slice':>9}{'CPU s':>8}"
              f"{'corr':>8}{'amp':>7}{'MiB/slice':>10}{'t/t0':>7}{'N²logN':>8}")
    print(header)
    rows = []
    for n in sorted(args.sizes):
        slices = args.slices if n <= 2048 else min(args.slices, 4)
        methods = {"backend": prepare_backend(backend, n, slices, args.threads, **nufft)}
        if n in args.padded:
            methods["padded"] = prepare_backend(backend, n, slices, args.threads, pad=n // 4, **nufft)
        if gridrec:
            methods["gridrec"] = prepare_gridrec(n, slices, args.threads)
        timed = best_of(methods, args.repeat)
        r = timed["backend"]
        rows.append(r)
        t0, n0 = rows[0]["wall"], rows[0]["n"]
        model = (n * n * math.log(n)) / (n0 * n0 * math.log(n0))
        print(f"{backend:<14}{n:>6}{r['angles']:>7}{slices:>7}{r['setup']:>9.2f}{r['wall']:>9.3f}"
              f"{r['cpu']:>8.3f}{r['corr']:>8.4f}{r['amp']:>7.3f}{r['rss'] / 2**20:>10.0f}"
              f"{r['wall'] / t0:>7.1f}{model:>8.1f}", flush=True)
        if n in args.padded:
            pr = timed["padded"]
            print(f"{'  padded 1.5×':<14}{n:>6}{pr['angles']:>7}{slices:>7}{pr['setup']:>9.2f}{pr['wall']:>9.3f}"
                  f"{pr['cpu']:>8.3f}{pr['corr']:>8.4f}{pr['amp']:>7.3f}{pr['rss'] / 2**20:>10.0f}", flush=True)
        if gridrec:
            g = timed["gridrec"]
            print(f"{'TomoPy gridrec':<14}{n:>6}{g['angles']:>7}{slices:>7}{'':>9}{g['wall']:>9.3f}"
                  f"{g['cpu']:>8.3f}{g['corr']:>8.4f}{g['amp']:>7.3f}{g['rss'] / 2**20:>10.0f}"
                  f"{'':>7}{'':>8}  fourier/gridrec {r['wall'] / g['wall']:.2f}", flush=True)
        if n <= args.iradon_max:
            s = time_iradon(n)
            print(f"{'skimage iradon':<14}{s['n']:>6}{s['angles']:>7}{1:>7}{'':>9}{s['wall']:>9.3f}"
                  f"{s['cpu']:>8.3f}{s['corr']:>8.4f}{s['amp']:>7.3f}{s['rss'] / 2**20:>10.0f}", flush=True)
    if gridrec:
        print("# TomoPy gridrec: tomopy.recon(algorithm='gridrec', filter_name='ramlak', ncore=threads) for the "
              "time; corr/amp of its slice through the tomopy adapter (teravox's grid); "
              "fourier/gridrec: the time ratio on the same (unpadded) sinograms.")
    print(f"# iradon: one slice, odd N (its axis convention), only up to N = {args.iradon_max} "
          "(it is single-threaded and slow); its time is the reference, not a tuned FBP.")
    print("# t/t0: time per slice over the smallest N's; N²logN: the same ratio of N² log N.")
    print("# padded 1.5×: as the reconstruct stage does by default: the backend edge-pads each row by N/4")
    print("#   each side (the fourier backends without a padded copy); pixels no measured ray reaches are 0.")
    if backend == "fourier-gpu":
        total, rate = gpu_throughput()
        print(f"# fourier-gpu: 2048 slices of 2048² (3072 angles) in {total:.1f} s = {rate:.1f} slices/s "
              "(calls of 128 slices, transfers included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
