"""Threads for the per-row and per-slice steps of a chunk job.

NumPy's element-wise operations, its sorts, SciPy's FFTs and ndimage's interpolations and
h5py's reads and writes release the GIL, so a job spreads such steps over the threads it
was given (:func:`teravox.resources.threads`) instead of leaving all but one core idle.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def spans(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` contiguous ``(start, stop)`` spans of near-equal size."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def for_spans(func: Callable[[int, int], object], n: int, workers: int) -> None:
    """``func(start, stop)`` over :func:`spans` of ``range(n)``, in ``workers`` threads."""
    parts = spans(n, workers)
    if len(parts) <= 1:
        for a, b in parts:
            func(a, b)
        return
    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(lambda ab: func(*ab), parts))


def for_each(func: Callable[[int], object], n: int, workers: int) -> None:
    """``func(i)`` for every i in ``range(n)``, in up to ``workers`` threads, one item at a
    time each (items of uneven cost balance themselves)."""
    if workers <= 1 or n <= 1:
        for i in range(n):
            func(i)
        return
    with ThreadPoolExecutor(min(workers, n)) as pool:
        list(pool.map(func, range(n)))
