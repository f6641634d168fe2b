"""The pass-1 chain: every correction in its documented order, on one block of rows.

Order (each step switchable): flat/dark normalisation → I0 / top-up → outliers →
stripes (on the block's partial sinograms) → air correction → Paganin.  Pure: arrays
in, arrays out — except :func:`read_normalized`, which reads the block from an open scan
(its twin for several scans is :class:`teravox.stitch.source.StitchedSource`); the
projection-chunk stage owns the files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from teravox import resources
from teravox.config import Params
from teravox.parallel import for_spans


@dataclass
class Physics:
    """Instrument values resolved by the plan (metres, keV)."""

    energy_kev: float | None = None
    distance_m: float | None = None
    pixel_size_m: float | None = None


@dataclass
class Counts:
    """Guarded or replaced pixels, summed over blocks and reported in the output's provenance."""

    flat_le_dark: int = 0
    nonfinite: int = 0
    outliers: int = 0
    steps: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.flat_le_dark += other.flat_le_dark
        self.nonfinite += other.nonfinite
        self.outliers += other.outliers
        if not self.steps:
            self.steps = list(other.steps)


@dataclass
class Patched:
    """Pixels flat/dark normalisation had to patch (set to transmission 1) over a whole run:
    flat ≤ dark, and NaN/Inf; outliers replaced by their median are counted beside them.
    Counts are of projection pixels (a bad detector pixel counts once per projection)."""

    flat_le_dark: int = 0
    nonfinite: int = 0
    outliers: int = 0
    projections: int = 0
    frame_pixels: int = 0     # rows × columns of a frame

    @property
    def fraction(self) -> float:
        """Patched pixels as a fraction of a frame, on average over the projections."""
        return (self.flat_le_dark + self.nonfinite) / max(1, self.projections * self.frame_pixels)

    @property
    def loud(self) -> bool:
        from teravox.io.validate import PATCHED_WARN_FRACTION

        return self.fraction > PATCHED_WARN_FRACTION

    def text(self) -> str:
        return (f"flat ≤ dark {self.flat_le_dark}, NaN/Inf {self.nonfinite} "
                f"({self.fraction:.3%} of a frame); outliers replaced {self.outliers}")

    def warning(self) -> str | None:
        """The loud warning when more than 0.1 % of a frame had to be patched, else None."""
        if not self.loud:
            return None
        return (f"{self.fraction:.2%} of each frame was patched on average (flat ≤ dark "
                f"{self.flat_le_dark}, NaN/Inf {self.nonfinite}): no data there; check the flats, darks "
                "and dead pixels")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Patched | None:
        return None if not d else cls(**{k: int(d.get(k, 0)) for k in cls.__dataclass_fields__})


def steps(params: Params) -> list[tuple[str, dict]]:
    """The corrections ``params`` switches on, in order, each with the parameters it uses."""
    out: list[tuple[str, dict]] = []
    if params.flat_dark:
        out.append(("flat/dark normalisation", {"flats": params.flat_method, "darks": params.dark_method}))
    if params.i0 != "off":
        out.append(("I0 correction", {"source": params.i0, "air_cols": params.i0_air_cols}))
    if params.outliers:
        out.append(("outlier removal", {"dif": params.outlier_dif, "size": params.outlier_size}))
    if params.stripe_prep != "off":
        out.append(("stripe removal (pass 1, per chunk)", {"method": params.stripe_prep, "snr": params.stripe_snr,
                                                          "la_size": params.stripe_la_size,
                                                          "sm_size": params.stripe_sm_size}))
    if params.air:
        out.append(("air correction", {"edge_cols": params.air_cols}))
    if params.paganin:
        out.append(("Paganin phase retrieval", {"delta_beta": params.delta_beta, "pad": params.paganin_pad}))
    return out


def normalize_block(raw: np.ndarray, params: Params, *, flat: np.ndarray | None, dark: np.ndarray | None,
                    flat_after: np.ndarray | None = None, indices: np.ndarray | None = None,
                    n_total: int | None = None, count_rows: slice = slice(None),
                    out: np.ndarray | None = None) -> tuple[np.ndarray, Counts]:
    """Flat/dark normalisation of ``raw`` (angles, rows, cols) → float32, with guard counts.

    ``flat``/``dark``/``flat_after`` are combined (rows, cols) fields for the same rows;
    ``indices`` are the projections' indices in the whole scan (for interpolating
    flats taken before and after the scan); patched pixels are counted in the rows
    ``count_rows`` of the block only.
    ``out``: a float32 array of raw's shape to write into.
    """
    from teravox.prep import flatdark

    counts = Counts(steps=[name for name, _ in steps(params)])
    if params.flat_dark:
        raw = np.asarray(raw)
        if out is None:
            out = np.empty(raw.shape, np.float32)
        if indices is None:  # the whole scan
            indices, n_total = np.arange(raw.shape[0]), raw.shape[0]
        found: list[tuple[int, int]] = []

        def span(a: int, b: int) -> None:  # projections a..b in one of the job's threads
            res = flatdark.normalize(raw[a:b], flat, dark, flat_after=flat_after, indices=indices[a:b],
                                     n_total=n_total, count_rows=count_rows, out=out[a:b])
            found.append((res.n_guarded, res.n_nonfinite))

        for_spans(span, raw.shape[0], resources.threads(params.threads))
        counts.flat_le_dark += sum(g for g, _ in found)
        counts.nonfinite += sum(f for _, f in found)
        return out, counts
    if out is None:
        out = np.array(raw, dtype=np.float32)
    else:
        out[...] = raw
    for img in out:  # a projection at a time: no block-sized map
        bad = ~np.isfinite(img)
        if bad.any():
            counts.nonfinite += int(bad[count_rows].sum())
            img[bad] = np.float32(1.0)
    return out, counts


@dataclass
class Buffers:
    """A projection-chunk job's block arrays, allocated once for its largest block: the raw
    frames and the float32 block every correction then works in."""

    raw: np.ndarray
    block: np.ndarray

    @classmethod
    def for_blocks(cls, n_proj: int, rows: int, cols: int, raw_dtype: Any) -> Buffers:
        return cls(np.empty((n_proj, rows, cols), raw_dtype), np.empty((n_proj, rows, cols), np.float32))

    def views(self, n_proj: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """C-contiguous (n_proj, rows, cols) views of both."""
        shape = (n_proj, rows, self.raw.shape[2])
        size = n_proj * rows * self.raw.shape[2]
        return self.raw.reshape(-1)[:size].reshape(shape), self.block.reshape(-1)[:size].reshape(shape)


def read_normalized(scan: Any, params: Params, indices: np.ndarray, rows: slice,
                    cols: slice = slice(None), *, i0_reference: float | None = None,
                    count_rows: slice = slice(None), buffers: Buffers | None = None
                    ) -> tuple[np.ndarray, Counts]:
    """Read projections ``indices`` × rows × cols of an open scan and normalise them (float32).

    The one step of pass 1 that touches a file: flat/dark normalisation with the scan's
    own fields, then (``params.i0 == "monitor"``) division by its beam monitor relative to
    ``i0_reference`` (default: the series' mean).  A single-scan job and the stitched
    reader both start here; the rest is :func:`correct_normalized` with I0 switched off.
    Patched pixels are counted in the rows ``count_rows`` of the block (those a job keeps).
    ``buffers``: read and normalise into these (the result is a view of ``buffers.block``).
    """
    from teravox.errors import InputError

    raw_out = out = None
    if buffers is not None:  # views of the job's block arrays (a last block may be smaller)
        raw_out, out = buffers.views(len(indices), len(range(*rows.indices(scan.n_rows))))
    raw = scan.read_projections(indices, rows, cols, out=raw_out)
    flat = dark = flat_after = None
    if params.flat_dark:
        flat, dark, flat_after = scan.read_fields(rows, cols, flat_method=params.flat_method,
                                                  dark_method=params.dark_method)
    try:
        block, counts = normalize_block(raw, params, flat=flat, dark=dark, flat_after=flat_after,
                                        indices=indices, n_total=scan.n_proj, count_rows=count_rows, out=out)
        if params.i0 == "monitor":
            from teravox.prep.i0 import from_monitor

            if scan.i0 is None:
                raise InputError(scan.path, None, "i0=monitor but this scan has no beam-monitor series")
            ref = float(np.mean(scan.i0)) if i0_reference is None else i0_reference
            block = from_monitor(block, scan.i0[indices], reference=ref, out=block)
    except ValueError as exc:  # a science function refused its input: say which file
        raise InputError(scan.path, scan.data_path, f"rows {rows.start}..{rows.stop}: {exc}") from None
    return block, counts


def correct_normalized(block: np.ndarray, params: Params, counts: Counts, *,
                       air_level: np.ndarray | None = None, physics: Physics | None = None,
                       inplace: bool = False) -> np.ndarray:
    """The rest of the chain after normalisation (I0 from air, outliers, stripes, air, Paganin).

    I0 from the beam monitor comes with the normalisation (:func:`read_normalized`).  A
    job that sees only part of the scan passes ``air_level`` (each projection's air mean
    over its full height), so that chunking changes nothing.  Every correction but
    pass-1 stripe removal works a projection at a time, in ``block`` itself with
    ``inplace`` (a float32 block), else in a copy.
    """
    from teravox.prep import air, outliers, paganin, stripes
    from teravox.prep import i0 as i0mod

    threads = resources.threads(params.threads)
    if not (inplace and block.dtype == np.float32):
        block = np.array(block, dtype=np.float32)
    if params.i0 == "air":
        block = i0mod.from_air(block, cols=params.i0_air_cols, level=air_level, out=block)
    if params.outliers:
        replaced: list[int] = []

        def span(a: int, b: int) -> None:  # projections a..b in one of the job's threads, in place
            replaced.append(outliers.remove_outliers(block[a:b], params.outlier_dif, params.outlier_size,
                                                     inplace=True)[1])

        for_spans(span, block.shape[0], threads)
        counts.outliers += sum(replaced)
    if params.stripe_prep != "off":  # sinogram by sinogram, in place: (rows, angles, cols) views
        sinos = block.transpose(1, 0, 2)
        stripes.remove_stripes(sinos, params.stripe_prep, snr=params.stripe_snr, la_size=params.stripe_la_size,
                               sm_size=params.stripe_sm_size, workers=threads, out=sinos)
    if params.air:
        block = air.air_correct(block, params.air_cols, out=block)
    if params.paganin:
        ph = physics or Physics()
        block = paganin.retrieve_phase(block, pixel_size_m=ph.pixel_size_m, distance_m=ph.distance_m,
                                       energy_kev=ph.energy_kev, delta_beta=params.delta_beta,
                                       pad=params.paganin_pad, workers=threads, out=block)
    return block.astype(np.float32, copy=False)
