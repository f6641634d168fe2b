"""Small JSON/YAML documents people write by hand (parameter files, scan sheets), read with limits.

YAML aliases make a short file stand for an enormous structure ("billion laughs": nine
levels of nine aliases are 9⁹ values); anything that walks it, even an error message
quoting it, then takes gigabytes.  Documents are read only up to :data:`MAX_BYTES`, and
refused when their values, counted with every alias expanded, exceed :data:`MAX_VALUES`
or refer to themselves.  The count itself never expands anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_BYTES = 1 << 20        # a parameter file or scan sheet is a few kilobytes
MAX_VALUES = 100_000       # values once YAML aliases are expanded


def read_document(path: str | Path) -> Any:
    """The parsed JSON (or, for .yaml/.yml, YAML) document in ``path``.

    Raises OSError when it cannot be read and ValueError, with a one-line reason, when it
    is too large, not valid, or expands to too many values."""
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // 1024} KiB; expected a small hand-written parameter file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ValueError(f"not valid {'YAML' if yaml_file else 'JSON'} ({' '.join(str(exc).split())[:300]})") from None
    expanded_size(data)
    return data


def expanded_size(data: Any, limit: int = MAX_VALUES) -> int:
    """Number of values in ``data`` with shared sub-structures counted at every use (what a
    walk over it would visit), computed once per distinct container.  ValueError beyond
    ``limit`` or for a structure that contains itself."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (list, dict)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ValueError("a YAML alias refers to a value that contains it (a recursive structure)")
        open_.add(key)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise ValueError(f"expands to more than {limit} values (YAML aliases?); "
                                 "expected a short list of parameters")
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        return size(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None
