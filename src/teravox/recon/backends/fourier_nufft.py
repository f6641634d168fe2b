"""The 2-D type-1 NUFFT of the ``fourier`` backend: ducc0's, in single precision.

    f[iy, ix] = Σ_j c_j exp(i (k_y y_j + k_x x_j)),   k = i − n/2,  i = 0 … n − 1

for points (y_j, x_j) in [−π, π)².  ducc0 spreads the c_j onto an oversampled grid,
transforms it and divides by the kernel's transform, choosing the kernel and the
oversampling σ (here at most :func:`sigma_max` of the tolerance) by its own cost model.

Why ducc0 rather than finufft's CPU library (the GPU backend keeps cufinufft): with
finufft's wheels the float32 transform of a 2048² phantom slice pair (4.0 M points) was
off by 8.8e-5 of the range (5.6e-5 of its norm) whatever the tolerance asked (finufft
rescales the coordinates in single precision), where ducc0 is within 1.8e-6 (6.6e-7)
at a tolerance of 1e-5; and ducc0's wheels dispatch to the CPU's vector width
(finufft's spread with 128-bit vectors): 0.25–0.34 s a pair on one thread against
0.40–0.48 s (benchmarks/README.md).
"""

from __future__ import annotations

import functools
import math

import numpy as np

_SIGMA_MIN = 1.19    # ducc0's default lower bound on σ
_SIGMA_STEP = 0.05
_SIGMA_TOP = 2.5     # ducc0's largest σ


@functools.cache
def best_eps() -> float:
    """The smallest tolerance a single-precision 2-D transform reaches (σ ≤ 2.5)."""
    import ducc0

    return float(ducc0.nufft.bestEpsilon(ndim=2, singleprec=True, sigma_min=_SIGMA_MIN, sigma_max=_SIGMA_TOP))


@functools.cache
def sigma_max(eps: float) -> float:
    """The smallest upper bound on σ (steps of 0.05) under which a single-precision kernel
    reaches ``eps``: bounding σ there keeps the grid, and so the memory model, within
    ~7 % of what ducc0 then allocates, whichever kernel its cost model picks."""
    import ducc0

    steps = math.ceil((_SIGMA_TOP - 1.2) / _SIGMA_STEP)
    for i in range(steps + 1):
        top = min(_SIGMA_TOP, 1.2 + i * _SIGMA_STEP)
        if ducc0.nufft.bestEpsilon(ndim=2, singleprec=True, sigma_min=_SIGMA_MIN, sigma_max=top) <= eps:
            return top
    raise ValueError(f"no single-precision NUFFT kernel reaches {eps:g} (best {best_eps():.2g})")


def grid_side(n: int, eps: float) -> int:
    """Upper bound on ducc0's oversampled grid side for n modes at tolerance ``eps``
    (its sizing: twice an FFT-friendly length ≥ σ·n/2, at least 16)."""
    import ducc0

    return max(16, 2 * int(ducc0.fft.good_size(int(n * sigma_max(eps) * 0.5) + 1)))


def grid_bytes(n: int, eps: float) -> int:
    """Bytes of the complex64 grid one execute allocates (bound, :func:`grid_side`)."""
    return grid_side(n, eps) ** 2 * 8


class Type1:
    """A planned 2-D type-1 NUFFT onto (ny, nx) modes (see the module docstring).

    The plan keeps the points' coordinates and their sort (12 bytes a point);
    ``execute`` holds the oversampled grid (complex64, at most :func:`grid_side`²) for
    its duration."""

    def __init__(self, shape: tuple[int, int], y: np.ndarray, x: np.ndarray, eps: float, threads: int):
        import ducc0

        coord = np.stack([np.asarray(y, np.float32), np.asarray(x, np.float32)], axis=1)
        self._plan = ducc0.nufft.plan(nu2u=True, coord=coord, grid_shape=tuple(shape), epsilon=eps,
                                      nthreads=threads, sigma_min=_SIGMA_MIN, sigma_max=sigma_max(eps))

    def execute(self, coef: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` (ny, nx) complex64 ← the transform of ``coef`` (points,) complex64."""
        return self._plan.nu2u(points=coef, forward=False, out=out)
