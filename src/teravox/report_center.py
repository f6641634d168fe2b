"""Figures of the rotation centre: the centre-sweep page and the report's centre page.

The sweep page is what a user looks at to pick a centre by eye: a labelled grid of one
row reconstructed at a series of trial centres, cropped where the slice has the most
detail, the search metric at each trial centre, and the automatic choice marked.  The
report's centre page shows the search metric over the detector and the centres of the
sampled rows with the fitted line (the axis tilt).  Arrays and facts in, files out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from scipy.ndimage import gaussian_filter, sobel

from teravox.errors import StageError
from teravox.report import A4_LANDSCAPE, CMAP, CUT_COLOURS, DPI, _display, _limits

#: most trial slices drawn on one sweep page (a longer sweep is thinned, keeping the choice)
MAX_TILES = 35
AUTO_COLOUR = CUT_COLOURS["xy"]


@dataclass
class Sweep:
    """One row reconstructed at trial centres, and what the search says about them."""

    scan_name: str
    row: int                        # detector row (raw) of the slices
    centers: list[float]            # trial centres, px
    slices: list[np.ndarray]        # the reconstructed slices (any sizes; centred on the axis)
    metric: list[float]             # the search metric at each trial centre (NaN: unknown)
    metric_name: str
    choice: float | None            # the centre the run would use, px
    choice_how: str                 # "auto (…, confidence 0.64)", "given", …
    curve: tuple[np.ndarray, np.ndarray] | None = None  # the metric on a fine grid


def crop_box(img: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the ``size`` × ``size`` square with the most edges (gradient
    energy smoothed over the square's scale): where a wrong centre shows first."""
    ny, nx = img.shape
    size = min(size, ny, nx)
    a = np.nan_to_num(np.asarray(img, dtype=np.float64))
    energy = gaussian_filter(np.hypot(sobel(a, 0), sobel(a, 1)), size / 4)
    half = size // 2
    inner = energy[half:ny - (size - half) + 1, half:nx - (size - half) + 1]
    if inner.size == 0:
        return 0, size, 0, size
    iy, ix = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(iy), int(iy) + size, int(ix), int(ix) + size


def _crop_centred(img: np.ndarray, box: tuple[int, int, int, int], ref: tuple[int, int]) -> np.ndarray:
    """``box`` of a slice of reference shape ``ref``, on ``img`` of maybe another size: both
    grids are centred on the rotation axis, so the box keeps its offset from the middle."""
    dy, dx = (img.shape[0] - ref[0]) // 2, (img.shape[1] - ref[1]) // 2
    y0, y1, x0, x1 = box
    y0, y1, x0, x1 = y0 + dy, y1 + dy, x0 + dx, x1 + dx
    if y0 < 0 or x0 < 0 or y1 > img.shape[0] or x1 > img.shape[1]:
        out = np.full((box[1] - box[0], box[3] - box[2]), np.nan, np.float32)
        sy0, sx0 = max(y0, 0), max(x0, 0)
        sy1, sx1 = min(y1, img.shape[0]), min(x1, img.shape[1])
        if sy1 > sy0 and sx1 > sx0:
            out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return out
    return img[y0:y1, x0:x1]


def _tiles(sweep: Sweep) -> list[int]:
    """Indices of the trials drawn: all, or MAX_TILES evenly spread including the nearest
    to the choice."""
    n = len(sweep.centers)
    if n <= MAX_TILES:
        return list(range(n))
    pick = set(np.linspace(0, n - 1, MAX_TILES - 1).round().astype(int).tolist())
    if sweep.choice is not None:
        pick.add(int(np.argmin(np.abs(np.asarray(sweep.centers) - sweep.choice))))
    return sorted(pick)


def write_sweep_page(sweep: Sweep, pdf: str | os.PathLike, png: str | os.PathLike | None = None) -> None:
    """The sweep page as a PDF (and a PNG), each written under a temporary name first."""
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8}):
        fig = Figure(figsize=A4_LANDSCAPE)
        draw_sweep(fig, sweep)
        for path, kind in ((pdf, "pdf"), (png, "png")):
            if path is None:
                continue
            path = Path(path)
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            try:
                if kind == "pdf":
                    with PdfPages(tmp, metadata={"Title": f"centre sweep: {sweep.scan_name}",
                                                 "Creator": "teravox"}) as doc:
                        doc.savefig(fig, dpi=DPI)
                else:
                    fig.savefig(tmp, dpi=110, format="png")
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StageError(f"{path}: cannot write the sweep page ({exc.strerror or exc})") from None


def draw_sweep(fig: Figure, sweep: Sweep) -> None:
    """Title, the grid of trial slices (the choice framed), the metric per centre."""
    idx = _tiles(sweep)
    ref = sweep.slices[idx[len(idx) // 2]]
    if sweep.choice is not None:
        ref = sweep.slices[int(np.argmin(np.abs(np.asarray(sweep.centers) - sweep.choice)))]
    size = max(64, min(ref.shape) // 3)
    box = crop_box(_display(ref, 2048) if max(ref.shape) > 2048 else ref, size)
    if max(ref.shape) > 2048:  # the box was found on a reduced image: scale it back
        f = max(ref.shape) / max(_display(ref, 2048).shape)
        box = tuple(int(round(v * f)) for v in box)  # type: ignore[assignment]
    crops = [_display(_crop_centred(sweep.slices[i], box, ref.shape), 400) for i in idx]
    vmin, vmax = _limits(*crops)
    fig.text(0.04, 0.955, f"Centre sweep — {sweep.scan_name}, row {sweep.row}", fontsize=15, weight="bold")
    choice = ("" if sweep.choice is None else
              f"chosen: {sweep.choice:.2f} px ({sweep.choice_how}) — to use it: --center {sweep.choice:.2f}")
    fig.text(0.04, 0.925, f"{len(sweep.centers)} trial centres {sweep.centers[0]:g} … {sweep.centers[-1]:g} px; "
             f"crop {box[3] - box[2]}² px at x {box[2]}–{box[3]}, y {box[0]}–{box[1]} of the slice.  {choice}",
             fontsize=8, color="0.3")
    cols = math.ceil(math.sqrt(len(idx) * 1.6))
    rows = math.ceil(len(idx) / cols)
    gs = fig.add_gridspec(rows, cols, left=0.03, right=0.70, top=0.90, bottom=0.04, wspace=0.06, hspace=0.16)
    nearest = None if sweep.choice is None else int(np.argmin(np.abs(np.asarray(sweep.centers) - sweep.choice)))
    for k, (i, img) in enumerate(zip(idx, crops, strict=True)):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        ax.imshow(img, cmap=CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"{sweep.centers[i]:g}"
        if np.isfinite(sweep.metric[i]):
            label += f"  ({sweep.metric[i]:.3f})"
        ax.set_title(label, fontsize=7, pad=2, color=AUTO_COLOUR if i == nearest else "black")
        if i == nearest:
            for spine in ax.spines.values():
                spine.set_edgecolor(AUTO_COLOUR)
                spine.set_linewidth(2.5)
    ax = fig.add_axes((0.76, 0.50, 0.21, 0.36))
    _metric_plot(ax, sweep)
    fig.text(0.76, 0.40, "How to read this page", weight="bold", fontsize=9)
    help_text = ("Each tile is the same row reconstructed with the\n"
                 "centre above it (px), and the search metric in\n"
                 "brackets (lower is better). At the right centre\n"
                 "edges are sharp; off it, features double or grow\n"
                 "arcs, more the further off. The framed tile is the\n"
                 "centre closest to the choice.")
    fig.text(0.76, 0.385, help_text, fontsize=7.5, va="top", color="0.2", linespacing=1.4)


def _metric_plot(ax: Axes, sweep: Sweep) -> None:
    if sweep.curve is not None:
        c, m = sweep.curve
        keep = (c >= sweep.centers[0] - 0.5) & (c <= sweep.centers[-1] + 0.5)
        ax.plot(c[keep], m[keep], color="0.35", lw=1, label="search metric")
    ax.plot(sweep.centers, sweep.metric, "o", ms=3, color="0.1", label="trial centres")
    if sweep.choice is not None:
        ax.axvline(sweep.choice, color=AUTO_COLOUR, lw=1.2, label=f"choice {sweep.choice:.2f}")
    ax.set_xlabel("centre (px)")
    ax.set_ylabel(sweep.metric_name)
    ax.set_title("Metric per centre", loc="left", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper right")


def draw_center_search(fig: Figure, search: dict, center: float, col_offset: float, tilt_text: str,
                       top: float = 0.86, bottom: float = 0.12) -> None:
    """The report's centre figures: the search metric over the detector with the best and
    the runner-up marked, and each sampled row's centre with the fitted line."""
    gs = fig.add_gridspec(1, 2, left=0.07, right=0.96, top=top, bottom=bottom, wspace=0.25)
    ax = fig.add_subplot(gs[0, 0])
    c = np.asarray(search["curve"]["centers"], dtype=np.float64) + col_offset
    m = np.asarray([np.nan if v is None else v for v in search["curve"]["metric"]], dtype=np.float64)
    ax.plot(c, m, color="0.25", lw=1)
    ax.axvline(center, color=AUTO_COLOUR, lw=1.2, label=f"centre {center:.2f} px")
    if search.get("runner_up") is not None:
        ax.axvline(search["runner_up"] + col_offset, color="0.5", lw=1, ls="--",
                   label=f"runner-up {search['runner_up'] + col_offset:.1f} px")
    ax.set_title(f"{search['method']} — confidence {search['confidence']:.2f}", loc="left", fontsize=9)
    ax.set_xlabel("centre (detector column, px)")
    ax.set_ylabel("metric (relative; lower is better)")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[0, 1])
    rows = np.asarray(search["rows"], dtype=np.float64)
    cents = np.asarray(search["row_centers"], dtype=np.float64) + col_offset
    conf = np.asarray(search["row_confidences"], dtype=np.float64)
    sc = ax.scatter(rows, cents, c=conf, cmap="viridis", vmin=0, vmax=1, s=25, zorder=3)
    fig.colorbar(sc, ax=ax, label="row confidence")
    line_rows = np.linspace(rows.min() - 0.5, rows.max() + 0.5, 2)
    ax.plot(line_rows, search["center"] + col_offset + search["tilt_px_per_row"] * (line_rows - search["row"]),
            color=AUTO_COLOUR, lw=1, label="fitted line")
    lo, hi = float(np.nanmin(cents)), float(np.nanmax(cents))
    mid, half = (lo + hi) / 2, max((hi - lo) / 2 * 1.3, 0.5)  # at least ±0.5 px: no false drama
    ax.set_ylim(mid - half, mid + half)
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.set_xlabel("row of the volume")
    ax.set_ylabel("centre (px)")
    ax.set_title(f"Centre per row — tilt {tilt_text}", loc="left", fontsize=9, wrap=True)
    ax.legend(fontsize=7)
