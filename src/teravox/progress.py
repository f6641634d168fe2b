"""Progress bars for long work (tqdm), quiet when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, unit: str = "it", enable: bool = True,
        total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar on stderr when ``enable`` and stderr is a terminal."""
    if not enable or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False, dynamic_ncols=True)
