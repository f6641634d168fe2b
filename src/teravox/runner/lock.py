"""One run per output folder: an exclusive lock, and a clear message naming who holds it.

``teravox run`` holds ``<out>/.teravox.lock`` (``flock``) for as long as it runs; the file
says which process holds it.  The kernel drops the lock when that process dies, however it
dies, so a lock is never stale.  Linux's NFS client maps ``flock`` onto NFS byte-range
locks, so two runs on different nodes of a cluster exclude each other too; on a filesystem
without locks (Lustre mounted without ``flock``) the run goes ahead unguarded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from teravox.errors import StageError

LOCK_NAME = ".teravox.lock"


@contextlib.contextmanager
def output_lock(outdir: str | os.PathLike) -> Iterator[bool]:
    """Hold the output folder's lock for the block; StageError naming the holder if another
    run has it.  Yields whether the folder is really held (False where locks do not work)."""
    path = Path(outdir) / LOCK_NAME
    held = True
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StageError(f"{outdir} is in use by another teravox run ({holder}); wait for it to end "
                             "or stop it, or give another --out") from None
        except OSError:  # no locks on this filesystem (Lustre without -o flock): run unguarded
            held = False
            break
        # the holder before us may have removed the file between our open and our lock
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(["teravox", *sys.argv[1:]])[:300]}).encode())
        yield held
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: a run waiting on this inode retries
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not written its name yet"
    return (f"process {info.get('pid')} on {info.get('host')} since {info.get('since')}: "
            f"{info.get('command', '')}")
