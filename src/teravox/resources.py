"""How many threads and how much memory a job was given."""

from __future__ import annotations

import os


def cpus_available() -> int:
    """Cores this process may use (its affinity mask, or SLURM's allocation)."""
    for var in ("TERAVOX_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def threads(requested: int = 0) -> int:
    """``requested`` if positive, else every core the job was given."""
    return requested if requested > 0 else cpus_available()


def gpu_devices() -> list[str]:
    """CUDA devices this process may hand to GPU jobs: ``CUDA_VISIBLE_DEVICES`` when set
    (up to its first invalid entry, as CUDA reads it), else those CuPy counts."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        out = []
        for item in (x.strip() for x in env.split(",")):
            if not item or item.startswith("-"):
                break
            out.append(item)
        return out
    try:
        import cupy

        return [str(i) for i in range(cupy.cuda.runtime.getDeviceCount())]
    except Exception:  # noqa: BLE001 - no CuPy, no driver: no devices
        return []


def reuse_freed_memory(largest: int = 2**31 - 1) -> bool:
    """Ask glibc to serve arrays up to ``largest`` bytes from the heap and keep freed memory
    for the next; larger ones are mapped and returned when freed.

    A chunk job allocates the same block-sized arrays for every subchunk; glibc maps each
    large one afresh and the kernel zeroes its pages on first touch, which took a third of
    a pass-1 job's time (benchmarks/preprocess.py).  With the default (every size, up to
    C's int) freed blocks are reused instead.  A fixed threshold also stops glibc from
    raising its own after each large free, which let a tiled reconstruction's per-tile
    NUFFT grids come from the heap and grow it by one grid per tile.  Worker threads share
    the one heap (one arena): in heaps of their own, what each thread freed served only
    that thread (pass-1 stripe removal's threads kept ~200 MiB that way).  A no-op (False)
    where the C library is not glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    largest = int(min(max(largest, 0), 2**31 - 1))  # mallopt takes a C int
    return bool(libc.mallopt(m_mmap_threshold, largest) and libc.mallopt(m_trim_threshold, 2**31 - 1)
                and libc.mallopt(m_arena_max, 1))


def total_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    Read from ``VmHWM`` (the high-water mark of this process's own address space): Linux's
    ``ru_maxrss`` keeps the parent's high-water mark across fork and exec, so a job started
    by a large process (a test runner) would report the parent's memory as its own.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def write_peak_file() -> None:
    """At exit, write :func:`peak_rss` to ``$TERAVOX_PEAK_FILE`` (how executors learn a job's
    peak), and the job's CPU seconds (user + system) beside it, with the suffix ``.cpu``."""
    import resource
    from pathlib import Path

    path = os.environ.get("TERAVOX_PEAK_FILE")
    if path:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        try:
            Path(path).write_text(str(peak_rss()))
            Path(path).with_suffix(".cpu").write_text(f"{usage.ru_utime + usage.ru_stime:.3f}")
        except OSError:
            pass
