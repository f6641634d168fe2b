"""Time each pass-1 correction on one projection beside a plain float64 NumPy reference.

    python benchmarks/preprocess_corrections.py [--size 2048] [--repeats 5] [--workers N]
                                                [--skip-stripes]

Each row is the median wall time of ``--repeats`` runs (after one warm-up run) of the teravox
function and of a straightforward float64 reference computed in the same run, and the largest
difference between the two results (relative to the result's largest value), so that the
speed is not bought with a different answer.  Stripe removal runs on one size × size sinogram;
its reference is algotom called directly on float64 data (teravox adds the float32 contract).
The Paganin reference is numpy.fft (float64, one thread) with 2× edge padding, TomoPy's habit;
teravox pads by the kernel support instead, so that row also shows the padding's effect.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy
import scipy.ndimage as ndi

from teravox.prep.air import air_correct
from teravox.prep.flatdark import normalize
from teravox.prep.i0 import find_air_cols, from_air, from_monitor
from teravox.prep.outliers import remove_outliers
from teravox.prep.paganin import retrieve_phase
from teravox.prep.stripes import METHODS, remove_stripes

PHYS = dict(pixel_size_m=1e-6, distance_m=0.1, energy_kev=25.0, delta_beta=1000.0)


def timed(func: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = func()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def synthetic_scan(n: int, rng: np.random.Generator):
    """Raw uint16 counts of one projection (a few absorbing discs, zingers), flat and dark."""
    y, x = np.mgrid[0:n, 0:n] / n
    transmission = np.ones((n, n))
    for cy, cx, r, mu in [(0.5, 0.5, 0.3, 0.5), (0.4, 0.55, 0.08, 1.0), (0.65, 0.4, 0.05, 2.0)]:
        transmission *= np.exp(-mu * ((y - cy) ** 2 + (x - cx) ** 2 < r * r))
    flat = 20000 * (1 + 0.05 * np.sin(6 * x) * np.cos(4 * y))
    dark = np.full((n, n), 100.0)
    counts = dark + transmission * (flat - dark)
    counts = rng.poisson(counts).astype(np.float64)
    idx = rng.integers(0, n, size=(2, n // 8))
    counts[idx[0], idx[1]] += 15000  # zingers
    proj = np.clip(counts, 0, 65535).astype(np.uint16)[None]
    flat_frames = rng.poisson(np.repeat(flat[None], 3, axis=0)).astype(np.uint16)
    return proj, flat_frames.mean(axis=0).astype(np.float32), dark.astype(np.float32)


def sinogram(n: int, rng: np.random.Generator) -> np.ndarray:
    theta = np.linspace(0, np.pi, n, endpoint=False)[:, None]
    s = np.arange(n) - (n - 1) / 2
    line = np.zeros((n, n))
    for _ in range(8):
        r, phi = rng.uniform(0.05, 0.3) * n, rng.uniform(0, 2 * np.pi)
        w, h = rng.uniform(0.05, 0.15) * n, rng.uniform(0.1, 0.4)
        d = s - r * np.cos(phi - theta)
        line += h * np.exp(-d * d / (2 * w * w))
    sino = np.exp(-line) * (1 + 0.01 * rng.standard_normal((n, n)))
    sino[:, n // 3] *= 1.03
    return sino[None].astype(np.float32)


def ref_paganin(img: np.ndarray) -> np.ndarray:
    """numpy.fft float64, padded to twice the size with edge values, full complex FFT."""
    n0, n1 = img.shape
    p0, p1 = n0 // 2, n1 // 2
    padded = np.pad(img.astype(np.float64), ((p0, p0), (p1, p1)), mode="edge")
    lam = 1.239841984e-9 / PHYS["energy_kev"]
    uy = np.fft.fftfreq(padded.shape[0], d=PHYS["pixel_size_m"])
    ux = np.fft.fftfreq(padded.shape[1], d=PHYS["pixel_size_m"])
    h = 1 / (1 + np.pi * lam * PHYS["distance_m"] * PHYS["delta_beta"] * (uy[:, None] ** 2 + ux[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(padded) * h))[p0:p0 + n0, p1:p1 + n1]


def ref_outliers(img: np.ndarray, dif: float, size: int) -> np.ndarray:
    med = ndi.median_filter(img, size=size, mode="reflect")
    return np.where(img - med >= dif, med, img)


def ref_air(img: np.ndarray, width: int) -> np.ndarray:
    cols = img.shape[-1]
    left, right = img[..., :width].mean(-1, keepdims=True), img[..., -width:].mean(-1, keepdims=True)
    c0, c1 = (width - 1) / 2, cols - 1 - (width - 1) / 2
    t = (np.arange(cols) - c0) / (c1 - c0)
    return img / (left + (right - left) * t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="projection rows = columns (default 2048)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (median; default 5)")
    ap.add_argument("--workers", type=int, default=None, help="FFT threads for Paganin (default: all allowed)")
    ap.add_argument("--skip-stripes", action="store_true", help="leave out the (slow) stripe methods")
    args = ap.parse_args(argv)
    n, reps = args.size, args.repeats
    rng = np.random.default_rng(0)
    proj, flat, dark = synthetic_scan(n, rng)
    flat_after = flat * 1.02
    norm = normalize(proj, flat, dark).data
    norm64 = norm.astype(np.float64)
    i0 = np.array([1.03])

    rows: list[tuple[str, float, float, float]] = []

    def compare(name: str, ours: Callable[[], object], ref: Callable[[], object], repeats: int = reps):
        t_ours, r_ours = timed(ours, repeats)
        t_ref, r_ref = timed(ref, repeats)
        a = np.asarray(r_ours[0] if isinstance(r_ours, tuple) else r_ours, dtype=np.float64)
        b = np.asarray(r_ref, dtype=np.float64).reshape(a.shape)
        diff = float(np.abs(a - b).max() / np.abs(b).max())
        rows.append((name, t_ours, t_ref, diff))
        print(f"  done: {name}", file=sys.stderr)

    proj64, flat64, dark64 = proj.astype(np.float64), flat.astype(np.float64), dark.astype(np.float64)
    compare("flat/dark normalize", lambda: normalize(proj, flat, dark),
            lambda: (proj64 - dark64) / (flat64 - dark64))
    compare("flat/dark, flats interpolated", lambda: normalize(proj, flat, dark, flat_after=flat_after,
                                                                indices=np.array([500]), n_total=1001),
            lambda: (proj64 - dark64) / (0.5 * flat64 + 0.5 * flat_after.astype(np.float64) - dark64))
    compare("i0 from monitor", lambda: from_monitor(norm, i0, reference=1.0), lambda: norm64 / 1.03)
    a, b = find_air_cols(norm, 50)
    compare("i0 from air (band found)", lambda: from_air(norm, width=50),
            lambda: norm64 / norm64[..., a:b].mean())
    compare("outliers 3x3 (dif 0.1)", lambda: remove_outliers(norm, 0.1, 3),
            lambda: ref_outliers(norm64[0], 0.1, 3))
    compare("outliers 5x5 (dif 0.1)", lambda: remove_outliers(norm, 0.1, 5),
            lambda: ref_outliers(norm64[0], 0.1, 5))
    compare("outliers 3x3 (dif 0.01: full median)", lambda: remove_outliers(norm, 0.01, 3),
            lambda: ref_outliers(norm64[0], 0.01, 3))
    compare("air correction (20 px)", lambda: air_correct(norm, 20), lambda: ref_air(norm64, 20))
    compare("Paganin", lambda: retrieve_phase(norm, workers=args.workers, **PHYS),
            lambda: ref_paganin(norm64[0]))
    if not args.skip_stripes:
        from algotom.prep import removal

        sino = sinogram(n, rng)
        sino64 = sino[0].astype(np.float64)
        kw = {"sorting": {"size": 21}, "filtering": {"size": 21}, "fitting": {},
              "all": {"snr": 3.0, "la_size": 61, "sm_size": 21}, "wavelet-fft": {}}
        for method, fname in METHODS.items():
            compare(f"stripes {method} (sinogram)",
                    lambda m=method: remove_stripes(sino, m),
                    lambda f=fname, m=method: getattr(removal, f)(sino64, **kw[m]),
                    repeats=max(1, min(reps, 3)))

    print(f"\nteravox pass-1 corrections on one {n}x{n} projection (float32; the reference is float64 "
          f"NumPy/SciPy), median of {reps} runs")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPUs "
          f"allowed, {platform.machine()}\n")
    print(f"| {'correction':<36} | {'teravox ms':>10} | {'reference ms':>12} | {'speed-up':>8} | {'max rel diff':>12} |")
    print(f"|{'-' * 38}|{'-' * 11}:|{'-' * 13}:|{'-' * 9}:|{'-' * 13}:|")
    for name, t_ours, t_ref, diff in rows:
        print(f"| {name:<36} | {t_ours * 1e3:10.1f} | {t_ref * 1e3:12.1f} | {t_ref / t_ours:7.1f}x | {diff:12.1e} |")
    print("\nreproduce: python benchmarks/preprocess_corrections.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
