"""The 2-D type-1 NUFFT of the ``fourier`` backend: finufft's spreading, scipy's FFT.

    f[iy, ix] = Σ_j c_j exp(i (k_y y_j + k_x x_j)),   k = i − n/2,  i = 0 … n − 1

for points (y_j, x_j) in [−π, π)², single precision.  finufft spreads the c_j onto its
fine grid (``spreadinterponly``); the inverse FFT of the grid, cropped to the n modes of
each axis, is divided by the kernel's Fourier transform.  finufft would do the same in
one call, but its wheels plan their FFT with FFTW_ESTIMATE: 1.0 s for a 5120² grid
where scipy's pocketfft takes 0.3 s (one thread, measured on this project's 2-core
machine), and the FFT here skips the columns no mode needs.

The kernel's transform is measured, not derived from finufft's kernel formula (which
finufft chooses by tolerance and version): a few copies of one spread point at
sub-cell offsets give the kernel's samples, and their average Fourier sum is its
transform free of the grid's aliases (tests/test_backends.py checks the result against
finufft's own type-1 transform and against direct sums).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft as sfft

# Copies of the spread point used to measure the kernel, at offsets (i + ½)/_COPIES cells:
# averaging them cancels the grid's aliases of the kernel's transform up to |m| < _COPIES.
_COPIES = 8
_GAP = 16  # cells between two copies: more than any kernel width finufft uses (≤ 16)


def fine_len(n: int, upsampfac: float) -> int:
    """finufft's fine-grid side for n modes: the smallest even 2,3,5-smooth ≥ σ·n."""
    target = max(2 * math.ceil(upsampfac * n / 2), 16)
    while True:
        m = target
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return target
        target += 2


def _spreader(shape: tuple[int, int], eps: float, upsampfac: float, threads: int) -> Any:
    import finufft

    return finufft.Plan(1, shape, n_trans=1, eps=eps, isign=1, dtype="complex64", nthreads=threads,
                        upsampfac=upsampfac, spreadinterponly=1, showwarn=0)


def kernel_transform(n: int, nf: int, eps: float, upsampfac: float) -> np.ndarray:
    """The spreading kernel's Fourier transform at modes k = −n/2 … n/2 − 1 of an nf-cell
    axis, up to a constant factor (float64; the kernel is even, so it is real)."""
    width = max(nf, 2 * _COPIES * _GAP)  # room for every copy on a small grid
    plan = _spreader((16, width), eps, upsampfac, 1)
    grid = np.empty((16, width), np.complex64)
    h = 2 * np.pi / width
    offset = (np.arange(_COPIES) + 0.5) / _COPIES
    cells = (np.arange(_COPIES) - _COPIES // 2) * _GAP
    plan.setpts(np.zeros(_COPIES, np.float32), ((cells + offset) * h).astype(np.float32))
    plan.execute(np.ones(_COPIES, np.complex64), out=grid)
    row = grid.real.sum(axis=0, dtype=np.float64)  # the x kernel times the y kernel's sum
    k = np.arange(-(n // 2), n - n // 2)
    total, found = np.zeros(k.size), 0.0
    for cell, off in zip(cells.tolist(), offset.tolist(), strict=True):
        at = np.arange(cell - _GAP // 2, cell + _GAP // 2)  # cells about this copy, x = 0 at width/2
        z = at - (cell + off)                               # distance to the point, in cells
        # the kernel is even about the point: the cosine sum is its transform at k / nf
        total += row[at + width // 2] @ np.cos(2 * np.pi * np.outer(z, k) / nf)
        found += float(row[at + width // 2].sum())
    if not abs(found / row.sum() - 1) < 1e-3:  # the kernels are not where this grid convention puts them
        import finufft

        raise RuntimeError(f"finufft {finufft.__version__}: its spreading grid is not laid out as teravox "
                           "expects (x = 0 at the middle cell); teravox needs finufft >= 2.5")
    return total / _COPIES


class Type1:
    """A planned 2-D type-1 NUFFT onto (ny, nx) modes (see the module docstring).

    ``execute`` holds the fine grid (complex64, σ·ny × σ·nx) for its duration."""

    def __init__(self, shape: tuple[int, int], y: np.ndarray, x: np.ndarray, eps: float, upsampfac: float,
                 threads: int):
        self.shape, self.threads = shape, threads
        self.fine = (fine_len(shape[0], upsampfac), fine_len(shape[1], upsampfac))
        self._plan = _spreader(self.fine, eps, upsampfac, threads)
        self._plan.setpts(y, x)
        # 1 / the kernel's transform per axis, times (−1)^k: grid cell 0 sits at −π, not 0
        kts = [kernel_transform(n, nf, eps, upsampfac) for n, nf in zip(shape, self.fine, strict=True)]
        self._scale = [(np.where(np.arange(n) % 2 == n // 2 % 2, 1.0, -1.0) / kt).astype(np.float32)
                       for n, kt in zip(shape, kts, strict=True)]
        # each measured transform carries the y kernel's sum, which is the transform at
        # k = 0 (to the grid's aliases): the product divides by it once too often
        self._scale[0] *= np.float32(kts[1][shape[1] // 2])

    def grid_bytes(self) -> int:
        return self.fine[0] * self.fine[1] * 8

    def execute(self, coef: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` (ny, nx) complex64 ← the transform of ``coef`` (points,) complex64."""
        ny, nx = self.shape
        fy, fx = self.fine
        grid = np.empty(self.fine, np.complex64)
        self._plan.execute(coef, out=grid)
        kw = {"norm": "forward", "overwrite_x": True, "workers": self.threads}
        sfft.ifft(grid, axis=1, **kw)
        lo, hi = nx // 2, nx - nx // 2            # modes k < 0 and k ≥ 0 of x
        for cols in (slice(fx - lo, fx), slice(0, hi)):
            sfft.ifft(grid[:, cols], axis=0, **kw)
        ylo, yhi = ny // 2, ny - ny // 2
        sy, sx = self._scale
        for (dst_r, src_r) in ((slice(0, ylo), slice(fy - ylo, fy)), (slice(ylo, ny), slice(0, yhi))):
            for (dst_c, src_c) in ((slice(0, lo), slice(fx - lo, fx)), (slice(lo, nx), slice(0, hi))):
                np.multiply(grid[src_r, src_c], sy[dst_r, None], out=out[dst_r, dst_c])
        out *= sx
        return out
