"""Join the reconstructed volumes of a vertical stack along z (pure functions).

Level k's volume (rows, n, n) has its row r at row r + z_k of the tall volume (z_0 = 0,
the top level).  Neighbouring levels are placed by their reconstructed slices near the
seam, as projections are placed side by side (:mod:`teravox.stitch.align`):

1. :func:`find_seam` — the Pearson correlation of the overlapping slices (binned in-plane
   to at most ``SEARCH_PX`` pixels, inside the field of view) for every integer offset
   within ± half a window of the heights' guess; the best one is refined to sub-pixel by
   the parabola through it and its neighbours (a reconstructed volume's features span
   several rows, so the correlation's peak is smooth: on synthetic stacks this is within
   0.03 row of the truth, closer than interpolating a noisy volume).  The intensity match is
   a gain, the ratio of the overlap's means (upper ≈ gain · lower): attenuation volumes that
   disagree do so by a scale (a calibration, an energy), and a mean is moved neither by the
   noise nor by where a small overlap's few rows fall, which a fitted offset and slope are
   (by percents on synthetic stacks that agree exactly).
2. :func:`blend_rows` — every tall row from the levels that cover it, sampled at fractional
   rows by cubic convolution (Keys, a = −0.5: linear interpolation would blur a level's thin
   features along z by up to a percent of their amplitude), intensity-matched, and weighted by
   the same distance-from-edge ramps as the lateral blend
   (:func:`teravox.stitch.blend.column_weights`), normalised to 1.  Each block of rows depends on nothing else, so the volume is written
   block by block.

Levels whose slices differ in size (a 360° scan's converted width depends on its centre)
are cut to the smallest, about the rotation axis (:func:`crop_to`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from teravox.stitch import blend

SEARCH_PX = 512        # slices are binned in-plane to at most this size for the search
MIN_ROWS = 2           # fewest overlapping slices an offset is scored on
MIN_PEAK = 0.3         # a correlation peak below this does not place a level
FOV_RATIO = 0.95       # the search and the match use the inner 95 % of the field of view's radius
MATCH_MIN_MEAN = 0.05  # no intensity match where the overlap's mean is below this part of its spread


@dataclass
class Seam:
    """Where the lower level of a pair sits below the upper one, and how their values compare."""

    upper: int
    lower: int
    guess: float                 # dz from the heights: the lower level's row 0 at the upper's row dz
    dz: float                    # found
    tried: np.ndarray            # integer dz scored
    corr: np.ndarray             # their correlations (NaN: too little overlap)
    peak: float                  # correlation at dz
    determined: bool             # False: no clear peak, the heights' guess is kept
    gain: float = 1.0            # upper ≈ gain · lower over the overlap
    residual: float = math.nan   # RMS of upper − gain · lower over the overlap
    overlap_rows: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"upper": self.upper, "lower": self.lower, "guess": float(self.guess), "dz": float(self.dz),
                "tried": [int(v) for v in self.tried], "corr": [num(v) for v in self.corr],
                "peak": num(self.peak), "determined": bool(self.determined), "gain": float(self.gain),
                "residual": num(self.residual),
                "overlap_rows": float(self.overlap_rows)}


def bin_factor(n: int) -> int:
    """In-plane binning that brings an n × n slice to at most ``SEARCH_PX``."""
    return max(1, math.ceil(n / SEARCH_PX))


def bin_slices(slices: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor × factor cells in-plane (a trailing partial cell is dropped), float32."""
    s = np.asarray(slices, dtype=np.float32)
    if factor == 1:
        return s
    k, ny, nx = s.shape
    ny, nx = ny // factor * factor, nx // factor * factor
    return s[:, :ny, :nx].reshape(k, ny // factor, factor, nx // factor, factor).mean(axis=(2, 4))


def crop_window(m: int, n: int, ys: slice) -> tuple[slice, slice, bool]:
    """Where rows ``ys`` of an n × n grid centred on the rotation axis lie in an m × m one (m ≥ n):
    the source (y, x) slices, and whether neighbours must be averaged (an odd m − n puts the
    axis half-way between pixels: linear interpolation along each axis)."""
    if m < n:
        raise ValueError(f"cannot cut {m} × {m} slices to {n} × {n}")
    c, odd = (m - n) // 2, (m - n) % 2
    return slice(ys.start + c, ys.stop + c + odd), slice(c, c + n + odd), bool(odd)


def halve(block: np.ndarray) -> np.ndarray:
    """Neighbours averaged along the last two axes (the odd case of :func:`crop_window`)."""
    s = np.asarray(block, dtype=np.float32)
    s = 0.5 * (s[..., :-1, :] + s[..., 1:, :])
    return 0.5 * (s[..., :, :-1] + s[..., :, 1:])


def crop_to(slices: np.ndarray, n: int) -> np.ndarray:
    """Slices (k, m, m) of a grid centred on the rotation axis cut to (k, n, n) about the same axis."""
    sy, sx, odd = crop_window(slices.shape[-1], n, slice(0, n))
    out = slices[..., sy, sx]
    return halve(out) if odd else out


def fov(n: int) -> np.ndarray:
    """Boolean (n, n): the inner ``FOV_RATIO`` of the reconstruction circle."""
    c = (n - 1) / 2.0
    y, x = np.ogrid[:n, :n]
    return (x - c) ** 2 + (y - c) ** 2 <= (FOV_RATIO * n / 2.0) ** 2


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / den if den > 0 else math.nan


def find_seam(upper_tail: np.ndarray, tail_start: int, lower_head: np.ndarray, guess_dz: float, *,
              window: int = 20, upper: int = 0, lower: int = 1) -> Seam:
    """Where ``lower`` sits below ``upper``: ``upper_tail`` holds the upper volume's rows from
    ``tail_start`` on, ``lower_head`` the lower volume's first rows, both binned (rows, m, m)
    and of one size.  ``guess_dz`` is the heights' guess of the lower's row 0 in the upper's
    rows; integer offsets within ± ``window`` // 2 of it are scored."""
    mask = fov(upper_tail.shape[-1])
    u = upper_tail[:, mask].astype(np.float64)         # (rows, voxels)
    lo = lower_head[:, mask].astype(np.float64)
    n_u, n_l = u.shape[0], lo.shape[0]
    end = tail_start + n_u                             # the upper volume's rows
    half = max(1, window // 2)
    tried = np.arange(int(round(guess_dz)) - half, int(round(guess_dz)) + half + 1)
    corr = np.full(tried.size, np.nan)
    for k, d in enumerate(tried):
        i0, i1 = max(int(d), tail_start), min(end, int(d) + n_l)
        if i1 - i0 >= MIN_ROWS:
            corr[k] = _corr(u[i0 - tail_start:i1 - tail_start], lo[i0 - d:i1 - d])
    if not np.any(np.isfinite(corr)) or not np.nanmax(corr) >= MIN_PEAK:
        return Seam(upper, lower, float(guess_dz), float(guess_dz), tried, corr,
                    float(np.nanmax(corr)) if np.any(np.isfinite(corr)) else math.nan, False)
    best = int(np.nanargmax(corr))
    dz = float(tried[best])
    if 0 < best < tried.size - 1 and np.all(np.isfinite(corr[best - 1:best + 2])):
        cm, c0, cp = corr[best - 1:best + 2]
        curv = cm - 2 * c0 + cp
        if curv < 0:  # the parabola through the peak and its neighbours
            dz += float(np.clip(0.5 * (cm - cp) / curv, -0.5, 0.5))
    # intensity: the ratio of the overlap's means, the lower volume interpolated to the found
    # offset (a mean is not moved by noise, nor by where the few rows of a small overlap fall)
    i0, i1 = max(int(math.ceil(dz)), tail_start), min(end, int(math.floor(dz + n_l - 1)) + 1)
    gain, resid = 1.0, math.nan
    a = u[i0 - tail_start:i1 - tail_start]
    j0, j1, t = blend.taps(np.arange(i0, i1) - dz, n_l, 0)
    b = lo[j0] * (1 - t[:, None]) + lo[j1] * t[:, None]
    peak = _corr(a, b)
    if abs(float(b.mean())) > MATCH_MIN_MEAN * float(b.std()):
        gain = float(a.mean()) / float(b.mean())
        resid = float(np.sqrt(np.mean((a - gain * b) ** 2)))
    overlap = float(min(end, dz + n_l) - max(dz, tail_start))
    return Seam(upper, lower, float(guess_dz), dz, tried, corr, peak, True, gain, resid, overlap)


@dataclass(frozen=True)
class Stack:
    """The levels' places in the tall volume and how their values map onto level 0's."""

    z: tuple[float, ...]         # row of the tall volume where each level's row 0 sits
    rows: tuple[int, ...]        # each level's rows
    gain: tuple[float, ...]      # level value × gain = level 0's scale

    @property
    def n_rows(self) -> int:
        """Rows of the tall volume: down to the last level's last row."""
        return int(math.floor(self.z[-1] + self.rows[-1] - 1)) + 1

    @classmethod
    def chain(cls, seams: Sequence[Seam], rows: Sequence[int]) -> Stack:
        """From the seams between neighbours (top first): offsets add up, gains multiply."""
        z, g = [0.0], [1.0]
        for s in seams:
            z.append(z[-1] + s.dz)
            g.append(g[-1] * s.gain)
        return cls(tuple(z), tuple(int(r) for r in rows), tuple(g))

    def seam_rows(self) -> list[float]:
        """Rows of the tall volume where neighbouring levels weigh equally."""
        return blend.seam_columns(list(self.z), list(self.rows))

    def source_rows(self, level: int, u0: int, u1: int) -> slice | None:
        """The level's rows that tall rows u0..u1 need (the interpolation's four taps), or None."""
        w = self.weights(u0, u1)[level]
        if not np.any(w > 0):
            return None
        lo = math.floor(u0 - self.z[level]) - 1
        hi = math.floor(u1 - 1 - self.z[level]) + 2
        last = self.rows[level] - 1
        return slice(min(max(lo, 0), last), min(max(hi, 0), last) + 1)

    def weights(self, u0: int, u1: int) -> np.ndarray:
        """(levels, u1 − u0) distance-from-edge weights of tall rows u0..u1, summing to 1."""
        w = np.stack([blend.column_weights(z, r, self.n_rows)[u0:u1] for z, r in zip(self.z, self.rows, strict=True)])
        total = w.sum(axis=0)
        return w / np.where(total > 0, total, 1.0)


def cubic_taps(pos: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The four (row indices, weights) of Keys' cubic convolution (a = −0.5) at fractional
    positions ``pos`` of rows 0..n−1, indices clamped to the rows (the edge row repeated)."""
    p0 = np.floor(pos)
    t = (pos - p0).astype(np.float32)
    w = [((-0.5 * t + 1.0) * t - 0.5) * t, (1.5 * t - 2.5) * t * t + 1.0,
         ((-1.5 * t + 2.0) * t + 0.5) * t, (0.5 * t - 0.5) * t * t]
    return [(np.clip(p0 + d, 0, n - 1).astype(np.intp), w[d + 1]) for d in (-1, 0, 1, 2)]


def blend_rows(stack: Stack, u0: int, u1: int, blocks: Sequence[tuple[int, np.ndarray] | None]) -> np.ndarray:
    """Tall rows u0..u1 (u1 − u0, n, n) float32 from each level's ``(first row, block)`` holding
    at least :meth:`Stack.source_rows` (None for a level that does not reach these rows)."""
    w = stack.weights(u0, u1)
    shape = next(b[1].shape[1:] for b in blocks if b is not None)
    out = np.zeros((u1 - u0, *shape), dtype=np.float32)
    for k, item in enumerate(blocks):
        if item is None or not np.any(w[k] > 0):
            continue
        first, block = item
        pos = np.arange(u0, u1, dtype=np.float64) - stack.z[k]
        vals = np.zeros((u1 - u0, *shape), dtype=np.float32)
        for idx, wt in cubic_taps(pos, stack.rows[k]):
            vals += block[idx - first] * wt[:, None, None]
        vals *= np.float32(stack.gain[k])
        out += vals * w[k][:, None, None]
    return out
