"""HDF5 virtual datasets that join chunk files without copying a pixel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np


def concat_virtual(f: h5py.File, name: str, sources: Sequence[tuple[str | os.PathLike, str, tuple[int, ...]]],
                   dtype: np.dtype | str = np.float32, axis: int = 0) -> h5py.Dataset:
    """Create ``name`` in ``f`` as the concatenation along ``axis`` of ``sources``.

    Each source is (file, dataset path, shape).  Files are referenced by their real
    absolute path, so the virtual dataset reads the same from any working directory
    (and through Nextflow's symlinked inputs) as long as the files stay where they are.
    """
    shapes = [tuple(s) for _, _, s in sources]
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if len(rest) != 1:
        raise ValueError(f"sources differ outside axis {axis}: {sorted(rest)}")
    total = sum(s[axis] for s in shapes)
    shape = list(shapes[0])
    shape[axis] = total
    layout = h5py.VirtualLayout(shape=tuple(shape), dtype=dtype)
    offset = 0
    for (path, dset, shp) in sources:
        src = h5py.VirtualSource(os.path.realpath(Path(path)), dset, shape=shp)
        index = [slice(None)] * len(shape)
        index[axis] = slice(offset, offset + shp[axis])
        layout[tuple(index)] = src
        offset += shp[axis]
    return f.create_virtual_dataset(name, layout, fillvalue=np.nan)


def virtual_sources(ds: h5py.Dataset) -> list[str]:
    """The files a virtual dataset reads from."""
    return sorted({vs.file_name for vs in ds.virtual_sources()}) if ds.is_virtual else []
