"""TIFF stacks as scan input: a folder of one-frame files, a glob pattern, or one multi-page file.

A :class:`TiffStack` behaves like the HDF5 datasets the scan readers slice
(``stack[frames, rows, cols]``, ``shape``, ``dtype``) and reads lazily: where a file
keeps its pixels uncompressed and contiguous, a memory map reads only the rows asked
for; otherwise the page is decoded by ``tifffile`` and cut.  Frames are ordered by
name in natural order (``p_2`` before ``p_10``).  A numbering gap, a frame of another
shape or type, and an unreadable file are refused with the file's name.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from teravox.errors import InputError

SUFFIXES = (".tif", ".tiff")
_GLOB_CHARS = set("*?[")


def is_glob(source: str | os.PathLike) -> bool:
    """A glob pattern: wildcards, and no file or folder of that very name."""
    return bool(_GLOB_CHARS & set(str(source))) and not Path(source).exists()


def is_tiff_source(source: str | os.PathLike) -> bool:
    """A folder, a glob pattern, or a file named *.tif/*.tiff (an HDF5 file is anything else)."""
    p = Path(source)
    return p.is_dir() or is_glob(source) or p.suffix.lower() in SUFFIXES


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_files(source: str | os.PathLike) -> list[Path]:
    """The TIFF files of a folder (*.tif, *.tiff) or matching a glob pattern, in natural order;
    [source] for one file."""
    if is_glob(source):
        files = [Path(p) for p in glob.glob(str(source))]
    elif Path(source).is_dir():
        files = [p for p in Path(source).iterdir() if p.suffix.lower() in SUFFIXES]
    else:
        return [Path(source)]
    return sorted((p for p in files if p.is_file()), key=_natural)


def stat(source: str | os.PathLike) -> dict[str, Any]:
    """Identity of a folder or pattern of TIFF files without reading them: how many, their
    total size and the newest modification time (None when none is there)."""
    files = list_files(source)
    sizes, times = [], []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        sizes.append(st.st_size)
        times.append(st.st_mtime_ns)
    if not sizes:
        return {"size": None, "mtime_ns": None}
    return {"size": sum(sizes), "mtime_ns": max(times), "files": len(sizes)}


def _check_numbering(files: list[Path], source: str, role: str) -> None:
    """Files numbered with a constant step: a gap is a missing frame (its angle would be
    given to the next one)."""
    numbers = []
    for p in files:
        m = re.search(r"(\d+)(?!.*\d)", p.stem)
        if m is None:
            return  # not numbered: the order is the names' order
        numbers.append(int(m.group(1)))
    if len(numbers) < 3:
        return
    steps = np.diff(numbers)
    step = int(np.median(steps))
    bad = np.flatnonzero(steps != step)
    if step > 0 and bad.size:
        i = int(bad[0])
        problem = (f"{files[i].name} and {files[i + 1].name} have the same number"
                   if steps[i] == 0 else
                   f"the numbers jump from {numbers[i]} ({files[i].name}) to {numbers[i + 1]} "
                   f"({files[i + 1].name}), elsewhere by {step}: a frame is missing")
        raise InputError(source, None, f"{role}: {problem}; expected one file per frame, numbered "
                                       "without gaps (a folder that holds other frames too: give a glob "
                                       "pattern such as 'folder/proj_*.tif')")


class TiffStack:
    """Frames (frames, rows, columns) stored as TIFF, sliced like an h5py dataset.

    ``source`` is a folder (every *.tif/*.tiff in it), a glob pattern, or one (multi-page)
    TIFF file; ``role`` names the frames in messages ("projections", "flats", ...)."""

    def __init__(self, source: str | os.PathLike, role: str):

        self.role = role
        self.source = str(source) if is_glob(source) else str(Path(source).resolve())
        p = Path(source)
        if not is_glob(source) and not p.exists():
            raise InputError(source, None, f"{role}: no such folder or TIFF file")
        self.files = list_files(source)
        if not self.files:
            raise InputError(source, None, f"{role}: no TIFF files here (expected *.tif or *.tiff)")
        self._tif: Any = None      # the open multi-page file
        self._raw_layout: dict[Path, tuple[int, np.dtype]] = {}  # uncompressed files: data offset, dtype
        self._stack: Any = None    # its memory map, when contiguous
        first = self._open(self.files[0])
        try:
            shape, dtype, _ = self._frame_layout(first, self.files[0])
            pages = len(first.pages)
        finally:
            first.close()
        self.multipage = len(self.files) == 1 and pages > 1
        if self.multipage:
            self._tif = self._open(self.files[0])
            series = self._tif.series[0]
            if len(series.shape) != 3 or tuple(series.shape[1:]) != shape:
                self.close()
                raise InputError(self.files[0], None, f"{role}: a multi-page TIFF of shape {series.shape}; "
                                                      "expected pages of one size (frames, rows, columns)")
            n = series.shape[0]
            if series.dataoffset is not None:
                order = self._tif.byteorder
                self._stack = np.memmap(self.files[0], dtype=np.dtype(dtype).newbyteorder(order), mode="r",
                                        offset=series.dataoffset, shape=(n, *shape))
        else:
            n = len(self.files)
            _check_numbering(self.files, self.source, role)
            self._check_sizes(shape, dtype)
        self.shape: tuple[int, int, int] = (n, *shape)
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self.size = int(np.prod(self.shape))
        self.is_virtual = False

    # -- what messages and the provenance call it -------------------------------------------
    @property
    def name(self) -> str:
        if self.multipage:
            return f"{self.shape[0]} pages"
        if len(self.files) == 1:
            return self.files[0].name
        return f"{len(self.files)} files {self.files[0].name} … {self.files[-1].name}"

    @property
    def location(self) -> tuple[str, str]:
        """(file or folder, what in it) for messages."""
        return self.source, self.name

    # -- reading -----------------------------------------------------------------------------
    def _open(self, path: Path) -> Any:
        import tifffile

        try:
            return tifffile.TiffFile(path)
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise InputError(path, None, f"cannot read this TIFF file ({' '.join(str(exc).split())}); "
                                         f"expected a frame of the {self.role}") from None

    def _frame_layout(self, tif: Any, path: Path) -> tuple[tuple[int, int], np.dtype, Any]:
        page = tif.pages[0]
        if len(page.shape) != 2:
            raise InputError(path, None, f"holds an image of shape {page.shape}; expected grey-level "
                                         f"frames (rows, columns) of the {self.role}")
        dtype = np.dtype(page.dtype)
        if dtype.kind not in "iuf":
            raise InputError(path, None, f"holds {dtype} pixels; expected the {self.role} as integer or "
                                         "floating-point counts")
        return tuple(page.shape), dtype, page

    def _check_sizes(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        """Frames of another shape or type, or cut short: every file whose size differs from
        the first's is opened (same-size files of one detector hold the same layout)."""
        sizes = [os.stat(p).st_size for p in self.files]
        for p, size in zip(self.files, sizes, strict=True):
            if size != sizes[0]:
                self._same_layout(p, shape, dtype)[0].close()

    def _same_layout(self, path: Path, shape: tuple[int, int], dtype: np.dtype) -> tuple[Any, Any]:
        """The open file and its first page, refused unless it holds a frame of ``shape`` and ``dtype``."""
        tif = self._open(path)
        try:
            got_shape, got_dtype, page = self._frame_layout(tif, path)
        except BaseException:
            tif.close()
            raise
        if (got_shape, got_dtype) != (shape, dtype):
            tif.close()
            raise InputError(path, None, f"a frame of {got_shape[0]} × {got_shape[1]} {got_dtype}, but "
                                         f"{self.files[0].name} is {shape[0]} × {shape[1]} {dtype}; "
                                         f"expected every frame of the {self.role} alike")
        return tif, page

    def _read_file(self, path: Path, rows: slice, cols: slice) -> np.ndarray:
        """Rows × cols of one file's frame.  Where the pixels are stored uncompressed and
        contiguous, the first read remembers where (offset, byte order) and later reads take
        only the rows asked for, without parsing the file again: a pass-1 job reads each file
        once per block of rows."""
        raw = self._raw_layout.get(path)
        if raw is None:
            tif, page = self._same_layout(path, self.shape[1:], self.dtype)
            try:
                if not page.is_memmappable:
                    return page.asarray()[rows, cols].astype(self.dtype, copy=False)
                raw = self._raw_layout[path] = (page.dataoffsets[0], self.dtype.newbyteorder(tif.byteorder))
            except (OSError, ValueError, EOFError) as exc:
                raise InputError(path, None, f"cannot read its pixels ({' '.join(str(exc).split())}): "
                                             "damaged, or not completely written") from None
            finally:
                tif.close()
        offset, dtype = raw
        r0, r1, step = rows.indices(self.shape[1])
        n_cols = self.shape[2]
        count = max(0, r1 - r0) * n_cols
        try:
            flat = np.fromfile(path, dtype=dtype, count=count, offset=offset + r0 * n_cols * dtype.itemsize)
        except OSError as exc:
            raise InputError(path, None, f"cannot read its pixels ({exc.strerror or exc})") from None
        if flat.size != count:
            raise InputError(path, None, f"ends after {flat.size} of the {count} values asked for: cut short, "
                                         "or not completely written")
        return flat.reshape(-1, n_cols)[::step, cols].astype(self.dtype, copy=False)

    def _read_page(self, i: int, rows: slice, cols: slice) -> np.ndarray:
        if self._stack is not None:
            return np.array(self._stack[i, rows, cols], dtype=self.dtype)
        try:
            return self._tif.pages[i].asarray()[rows, cols].astype(self.dtype, copy=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(self.files[0], None, f"page {i}: cannot read its pixels "
                                                  f"({' '.join(str(exc).split())})") from None

    def __getitem__(self, key: Any) -> np.ndarray:
        """``stack[frames, rows, cols]`` with ints or slices (``stack[()]``: everything)."""
        key = key if isinstance(key, tuple) else (key,)
        key = tuple(slice(None) if k is Ellipsis else k for k in key) + (slice(None),) * (3 - len(key))
        frames, rows, cols = key
        squeeze = [isinstance(k, (int, np.integer)) for k in (frames, rows, cols)]
        idx = range(self.shape[0])[frames] if isinstance(frames, slice) else [int(frames)]
        rows = slice(int(rows), int(rows) + 1) if squeeze[1] else rows
        cols = slice(int(cols), int(cols) + 1) if squeeze[2] else cols
        if self.multipage and self._stack is not None:
            out = np.array(self._stack[idx.start:idx.stop:idx.step, rows, cols] if isinstance(idx, range)
                           else self._stack[idx, rows, cols], dtype=self.dtype)
        else:
            read = self._read_page if self.multipage else (lambda i, r, c: self._read_file(self.files[i], r, c))
            parts = [read(i, rows, cols) for i in idx]
            out = np.stack(parts) if parts else np.empty((0, *np.empty(self.shape[1:])[rows, cols].shape),
                                                          self.dtype)
        index = tuple(0 if s else slice(None) for s in squeeze)
        return out[index]

    def close(self) -> None:
        self._stack = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None
