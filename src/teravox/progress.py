"""Progress: tqdm bars for long work, and the progress a job reports to the run that started it.

A job run by ``teravox run`` has ``$TERAVOX_PROGRESS_FILE``: each :func:`bar` in it writes
``done total what`` there (at most a few times a second), and the run reads the files of
its running jobs to move one bar per stage within a job, with an ETA (:class:`StageBar`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: the file a job writes its progress to (set by the local executor)
PROGRESS_ENV = "TERAVOX_PROGRESS_FILE"
WRITE_EVERY_S = 0.25


def bar(items: Iterable[T], desc: str, unit: str = "it", enable: bool = True,
        total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar on stderr when ``enable`` and stderr is a terminal;
    inside a job of ``teravox run``, report the progress to the run instead."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    path = os.environ.get(PROGRESS_ENV)
    if path and total:
        yield from _reported(items, Path(path), desc, total)
        return
    if not enable or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False, dynamic_ncols=True)


def _reported(items: Iterable[T], path: Path, desc: str, total: int) -> Iterator[T]:
    last = 0.0
    for done, item in enumerate(items):
        now = time.monotonic()
        if now - last >= WRITE_EVERY_S:
            write_progress(path, done, total, desc)
            last = now
        yield item
    write_progress(path, total, total, desc)


def write_progress(path: Path, done: int, total: int, desc: str) -> None:
    """``done total desc`` into ``path``, replaced whole (a reader never sees half a line)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(f"{done} {total} {desc}\n")
        os.replace(tmp, path)
    except OSError:  # progress is a courtesy: never fail a job for it
        pass


def read_progress(path: Path) -> tuple[float, str] | None:
    """(fraction done, what) from a job's progress file; None when it has none yet."""
    try:
        done, total, desc = path.read_text().rstrip("\n").split(" ", 2)
        return min(1.0, int(done) / max(int(total), 1)), desc
    except (OSError, ValueError):
        return None


class StageBar:
    """One bar for a stage's jobs: whole jobs done plus the fractions the running ones
    report, so a stage of a single long job moves too; tqdm gives the rate and the ETA."""

    def __init__(self, desc: str, jobs: int, enable: bool = True) -> None:
        self.desc, self.jobs, self.done = desc, jobs, 0
        self._bar = None
        if enable and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=jobs, desc=desc, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} job(s) "
                                        "[{elapsed}<{remaining}]")

    def job_done(self) -> None:
        self.done += 1
        self.update({})

    def update(self, running: dict[str, tuple[float, str]]) -> None:
        """``running``: job name → (fraction, what it is doing) of the jobs still running."""
        if self._bar is None:
            return
        inner = sum(f for f, _ in running.values())
        self._bar.n = min(self.jobs, self.done + inner)
        what = next((w for _, w in running.values()), "") if self.jobs == 1 else ""
        what = what.removeprefix(self.desc.split()[-1]).strip()   # "reconstruct chunk 0" → "chunk 0"
        self._bar.set_description_str(f"{self.desc} · {what}" if what else self.desc, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
