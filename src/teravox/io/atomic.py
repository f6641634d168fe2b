"""Complete-or-absent outputs: write under a temporary name, rename when done."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from teravox.errors import StageError

#: What a temporary file is called: ``<name>.tmp-<pid>``.
TMP_PATTERN = "*.tmp-*"

#: errno values of a full disk or an exhausted quota.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: Set once a write failed for lack of space in this process: if it was an HDF5 file, HDF5's
#: own shutdown then crashes (a segmentation fault at exit, seen with HDF5 2.0), so the CLI
#: entry ends such a process itself (:func:`teravox.cli.entry`).
_write_failed = False


class NoSpaceError(StageError):
    """A write failed because the filesystem (or the quota) is full."""


def tmp_name(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f"{p.name}.tmp-{os.getpid()}")


def is_no_space(exc: BaseException) -> bool:
    """True for an error that says the disk or the quota is full; h5py puts the errno only into
    its message ("errno = 28")."""
    if getattr(exc, "errno", None) in _NO_SPACE:
        return True
    text = str(exc)
    return any(f"errno = {e}," in text for e in _NO_SPACE) or "No space left on device" in text


def no_space_error(directory: str | os.PathLike, what: str, exc: BaseException | None = None) -> NoSpaceError:
    """The one-line error for a full disk in ``directory``; ``what`` says what failed."""
    try:
        free = f"{shutil.disk_usage(directory).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    quota = " (or the quota is exceeded)" if getattr(exc, "errno", None) == errno.EDQUOT else ""
    return NoSpaceError(f"no space left on {directory}{quota}, {free}: {what}; "
                        "free some space and rerun the same command to resume")


def free_bytes(directory: str | os.PathLike) -> int | None:
    """Bytes free for this user in ``directory`` (None when it cannot be told)."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


_kept: list = []


def _keep_hdf5_objects() -> None:
    """Hold a reference to every open HDF5 object, so that none of them is ever really closed:
    HDF5 crashes (segmentation fault) when it closes a file whose write failed for lack of
    space, whether at garbage collection or at exit.  The process ends soon after, without
    HDF5's shutdown (:func:`teravox.cli.entry`)."""
    try:
        import h5py

        _kept.extend(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_ALL))
    except Exception:  # noqa: BLE001, S110 - best effort on the way to a clean error
        pass


def write_failed() -> bool:
    """Whether an output of this process failed to write for lack of space."""
    return _write_failed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A killed process leaves at most ``<name>.tmp-<pid>``, which no stage ever trusts; a full
    disk becomes :class:`NoSpaceError` naming the directory, and no file is left behind.
    """
    global _write_failed
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_no_space(exc):
            raise no_space_error(final.parent, f"{final.parent} could not be made", exc) from None
        raise StageError(f"{final.parent}: cannot create the output directory ({exc.strerror})") from None
    tmp = tmp_name(final)
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise StageError(f"{final}: cannot write the finished file there ({exc.strerror})") from None
    except (OSError, RuntimeError) as exc:
        if is_no_space(exc):
            _write_failed = True
            _keep_hdf5_objects()
            raise no_space_error(final.parent, f"{final.name} could not be written", exc) from None
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EROFS:
            raise StageError(f"{final.parent}: cannot write {final.name} there ({exc.strerror})") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory (a Zarr store, a TIFF stack): the block fills
    ``<name>.tmp-<pid>/``, which replaces ``path`` only if the block succeeds.

    A directory cannot be swapped in one step for another: an older ``path`` is removed
    first, so a kill between the two leaves it absent, never half-written.
    """
    final = Path(path)
    tmp = tmp_name(final)
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_tree(tmp)
            tmp.mkdir()
        except OSError as exc:
            raise StageError(f"{final.parent}: cannot write {final.name} there ({exc.strerror})") from None
        yield tmp
        remove_tree(final)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise StageError(f"{final}: cannot put the finished directory there ({exc.strerror})") from None
    except OSError as exc:
        if is_no_space(exc):
            raise no_space_error(final.parent, f"{final.name} could not be written", exc) from None
        raise
    finally:
        remove_tree(tmp)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a file, a link or a directory tree; nothing if absent."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def remove_stale(directory: str | os.PathLike, pattern: str = TMP_PATTERN, *, all_: bool = False) -> list[Path]:
    """Remove temporary files and directories of jobs that died (their pid no longer runs on this
    machine), or with ``all_`` every one (when nothing else can be writing in ``directory``)."""
    removed = []
    for p in Path(directory).glob(pattern):
        pid = p.name.rsplit(".tmp-", 1)[-1]
        if pid.isdigit() and (all_ or not _alive(int(pid))):
            remove_tree(p)
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
