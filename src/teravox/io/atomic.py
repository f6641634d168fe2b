"""Complete-or-absent outputs: write under a temporary name, rename when done."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def tmp_name(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f"{p.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A killed process leaves at most ``<name>.tmp-<pid>``, which no stage ever trusts.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError as exc:
            from teravox.errors import StageError

            raise StageError(f"{final}: cannot write the finished file there ({exc.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale(directory: str | os.PathLike, pattern: str = "*.tmp-*") -> list[Path]:
    """Remove temporary files of jobs that died (their pid no longer runs)."""
    removed = []
    for p in Path(directory).glob(pattern):
        pid = p.name.rsplit(".tmp-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
