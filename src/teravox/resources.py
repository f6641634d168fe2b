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


def total_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
