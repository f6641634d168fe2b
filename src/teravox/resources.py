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


def reuse_freed_memory() -> bool:
    """Ask glibc to serve large arrays from the heap and keep freed memory for the next.

    A chunk job allocates the same block-sized arrays for every subchunk; glibc maps each
    large one afresh and the kernel zeroes its pages on first touch, which took a third of
    a pass-1 job's time (benchmarks/preprocess.py).  With these settings freed blocks are
    reused instead.  A no-op (False) where the C library is not glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, largest = -1, -3, 2**31 - 1  # mallopt takes a C int
    return bool(libc.mallopt(m_mmap_threshold, largest) and libc.mallopt(m_trim_threshold, largest))


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
    """At exit, write :func:`peak_rss` to ``$TERAVOX_PEAK_FILE`` (how executors learn a job's peak)."""
    path = os.environ.get("TERAVOX_PEAK_FILE")
    if path:
        try:
            with open(path, "w") as fh:
                fh.write(str(peak_rss()))
        except OSError:
            pass
