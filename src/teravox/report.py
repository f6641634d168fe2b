"""The PDF report of a reconstruction: the page a beamline scientist opens first.

Page 1 is the at-a-glance page: title (scan name, date), the three orthogonal slices
of the volume large with colour bars, the histogram of the volume and the key facts.
Page 2 shows the raw against the corrected projection and sinogram and the full facts:
every correction with its parameters, timings per stage, software versions.  Further
pages appear only when needed: facts that did not fit, and the stitching figures of a
multi-scan acquisition (stitched projection with its seams, alignment cost maps, the
placement solution with every pair's residuals).  A vertical stack gets its own report
(:func:`write_stack_report`): the joined volume cut along z with its seams, and the seams'
offsets, correlations and intensity matches.

Everything is drawn with one grey colour map and robust contrast limits (percentiles),
in physical units when the pixel size is known (µm / mm on axes and scale bars,
attenuation in m⁻¹ or cm⁻¹), else in pixels and 1/pixel.  The science stays elsewhere:
this module takes arrays and facts (:class:`ReportData`) and knows nothing of HDF5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import os
import platform
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from mpl_toolkits.axes_grid1 import make_axes_locatable
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from teravox.errors import StageError

A4_LANDSCAPE = (11.69, 8.27)   # inches
CMAP = "gray"                  # every image of the sample; cost maps use CMAP_COST
CMAP_COST = "viridis"
PERCENTILES = (0.5, 99.5)      # contrast limits of every image
MAX_DISPLAY_PX = 1200          # larger images are block-averaged before drawing (PDF size)
DPI = 200                      # resolution of the images inside the PDF
PNG_DPI = 110                  # resolution of the pages written as PNG
#: colour of each orthogonal slice: its frame and the line that marks it in the other two
CUT_COLOURS = {"xy": "#e8433a", "xz": "#f2b701", "yz": "#2bb3e0"}
#: packages whose versions a report lists
VERSION_PACKAGES = ("teravox", "numpy", "h5py", "ducc0", "algotom", "scipy", "matplotlib")


def software_versions(packages: Sequence[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` and of Python, without importing the packages."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class ReportFacts:
    """What the report states about the run, in the units named."""

    input_file: str
    shape: tuple[int, int, int]                  # raw projections: (angles, rows, columns)
    n_angles: int                                # angles used in the reconstruction
    angle_range_deg: tuple[float, float]         # first and last angle, degrees
    center: float | None                         # rotation axis column, pixels (0-based)
    center_source: str                           # how it was found: "given", "file" or "auto: method, confidence"
    backend: str                                 # reconstruction backend that ran
    corrections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    output_dtype: str = "float32"
    output_range: tuple[float, float] | None = None   # min, max of the written values
    integer_mapping: tuple[float, float] | None = None  # attenuation/pixel [lo, hi] → 0..max int
    timings: dict[str, float] = field(default_factory=dict)  # stage → seconds
    versions: dict[str, str] = field(default_factory=software_versions)
    pixel_size_m: float | None = None           # effective pixel size, metres
    scan_name: str | None = None                 # default: the input file's name without suffix
    date: str | None = None                      # default: now
    volume_shape: tuple[int, int, int] | None = None  # (rows z, y, x)
    output_file: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # further key facts, e.g. energy
    files_read: list[str] = field(default_factory=list)  # every raw file read (links, VDS sources)
    patched: str | None = None                   # patched pixels (flat ≤ dark, NaN/Inf), as text
    warnings: list[str] = field(default_factory=list)  # shown in red at the top of page 1
    tilt: str | None = None                      # the axis tilt: found, given or none, and whether corrected
    center_method: str | None = None             # the automatic search's method (None: not searched)
    center_confidence: float | None = None       # its confidence, 0 … 1
    n_flats: int | None = None                   # flat fields read (before the projections)
    n_flats_after: int = 0                       # flat fields read after the projections
    n_darks: int | None = None                   # dark fields read
    exposure_s: float | None = None              # exposure per frame, seconds (when the file says)
    energy_kev: float | None = None
    distance_m: float | None = None              # propagation (sample to detector) distance, metres


@dataclass
class ReportData:
    """Everything :func:`write_report` draws.  Images are 2-D arrays in their own units."""

    raw_projection: np.ndarray        # (rows, columns), counts
    raw_sinogram: np.ndarray          # (angles, columns), counts
    corrected_projection: np.ndarray  # (rows, columns), see corrected_quantity
    corrected_sinogram: np.ndarray    # (angles, columns): as the backend reconstructs it
    slice_xy: np.ndarray              # volume[z, :, :] at a middle row z: (y, x)
    slice_xz: np.ndarray              # volume[::step, y, :]: (z / step, x)
    slice_yz: np.ndarray              # volume[::step, :, x]: (z / step, y)
    histogram: tuple[np.ndarray, np.ndarray]  # (counts, bin edges) of the volume's values
    facts: ReportFacts
    slow_axis_step: int = 1           # z sub-sampling of slice_xz / slice_yz
    #: (z of slice_xy, y of slice_xz, x of slice_yz) in volume voxels; None = the middles
    slice_positions: tuple[int, int, int] | None = None
    projection_index: int | None = None   # which projection is shown
    sinogram_row: int | None = None       # which detector row the sinograms are
    corrected_quantity: str = "transmission"  # or "line_integral" (after -log)
    sinogram_quantity: str = "line_integral"  # of corrected_sinogram
    sinogram_angles_deg: tuple[float, float] | None = None  # its first, last angle (None: the scan's)
    sinogram_steps: list[str] = field(default_factory=list)  # what made it from the projections
    #: True: slices and histogram hold the output's integer codes (mapped back through
    #: facts.integer_mapping); None: decided from the slices' dtype
    values_are_codes: bool | None = None
    stitched_projection: np.ndarray | None = None  # multi-scan: the stitched projection
    seam_columns: list[float] = field(default_factory=list)  # where scans meet, columns
    alignment_costs: dict[str, np.ndarray] = field(default_factory=dict)  # pair → cost map
    placement: dict[str, Any] | None = None  # multi-scan: shifts.json (scans, pairs with residuals)
    #: the automatic centre search (CenterResult.to_dict, selected-column coordinates) and
    #: the first selected column, for the centre page; None when the centre was given
    center_search: dict | None = None
    center_col_offset: float = 0.0


def orthogonal_slices(volume: Any, step: int = 1,
                      positions: tuple[int, int, int] | None = None) -> tuple[np.ndarray, ...]:
    """(xy, xz, yz) slices of a (z, y, x) array or h5py dataset, z sampled every ``step``.

    Reads only the three planes (strided along z), so it works on a volume on disk.
    """
    nz, ny, nx = volume.shape
    z, y, x = positions or (nz // 2, ny // 2, nx // 2)
    return (np.asarray(volume[z, :, :]), np.asarray(volume[::step, y, :]),
            np.asarray(volume[::step, :, x]))


def write_report(data: ReportData, path: str | os.PathLike, png: str | os.PathLike | None = None) -> None:
    """Write the report PDF to ``path`` atomically (a temporary name, then a rename); with
    ``png``, also each page as ``<png>_p<n>.png`` (to look at without a PDF viewer)."""
    if data.facts.date is None:   # one date on every page, and the caller's facts untouched
        data = dataclasses.replace(data, facts=_dated(data.facts))
    _write_pdf(path, data.facts, _pages(data), f"teravox reconstruction report: {_scan_name(data.facts)}", png)


def _dated(facts: ReportFacts) -> ReportFacts:
    return dataclasses.replace(facts, date=facts.date or _dt.datetime.now().strftime("%Y-%m-%d %H:%M"))


def _write_pdf(path: str | os.PathLike, facts: ReportFacts, pages: list[Any], title: str,
               png: str | os.PathLike | None = None) -> None:
    """Draw ``pages`` (one function of a Figure each) into a PDF at ``path``, atomically;
    with ``png``, also each page as ``<png>_p<n>.png``."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pdf_meta = {"Title": title, "Author": "teravox", "Subject": facts.input_file,
                "Creator": f"teravox {facts.versions.get('teravox', '')}".strip()}
    try:
        # TrueType fonts (not Type 3) so that the text can be searched and copied
        with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8,
                                    "axes.titlesize": 9, "axes.labelsize": 8}):
            with PdfPages(tmp, metadata=pdf_meta) as pdf:
                for number, draw in enumerate(pages, start=1):
                    fig = Figure(figsize=A4_LANDSCAPE)
                    draw(fig)
                    _footer(fig, facts, number, len(pages))
                    pdf.savefig(fig, dpi=DPI)
                    if png is not None:
                        fig.savefig(f"{png}_p{number}.png", dpi=PNG_DPI, format="png")
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise StageError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    except BaseException:
        _discard(tmp)   # a file that exists is complete: never leave a half-written one
        raise


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


# -- pages ------------------------------------------------------------------------------


_PAGE2_LINES = 22       # lines per facts column under the images of page 2
_TEXT_PAGE_LINES = 40   # lines per column of a facts-only page


def _pages(data: ReportData) -> list[Any]:
    """One drawing function per page; the facts decide how many pages there are."""
    blocks = [piece for b in _fact_blocks(data.facts) for piece in _block_lines(b)]
    pages: list[Any] = [lambda fig: _page_overview(fig, data)]
    first, rest = _place_blocks(blocks, per_column=_PAGE2_LINES, columns=3)
    pages.append(lambda fig: _page_corrections(fig, data, first))
    while rest:   # blocks that did not fit on page 2 continue, whole, on pages of their own
        more, rest = _place_blocks(rest, per_column=_TEXT_PAGE_LINES, columns=3)
        pages.append(lambda fig, more=more: _page_text(fig, data.facts, more))
    if data.center_search:
        pages.append(lambda fig: _page_center(fig, data))
    if data.stitched_projection is not None or data.alignment_costs:
        pages.append(lambda fig: _page_stitching(fig, data))
    if data.placement:
        pages.append(lambda fig: _page_placement(fig, data.facts, data.placement))
    return pages


def _page_center(fig: Figure, data: ReportData) -> None:
    from teravox.report_center import draw_center_search

    facts = data.facts
    _header(fig, facts, "Rotation centre: the automatic search")
    assert data.center_search is not None and facts.center is not None
    draw_center_search(fig, data.center_search, facts.center, data.center_col_offset, facts.tilt or "none")


#: a volume of this many rows or fewer gets each row as a line profile in place of the XZ /
#: YZ images (a 2-row image at any aspect is a barcode)
MAX_PROFILES = 8
#: a volume flatter than this (rows / width) gets XZ and YZ stacked right of XY
FLAT_RATIO = 0.5


def _page_overview(fig: Figure, data: ReportData) -> None:
    facts = data.facts
    _header(fig, facts, "Reconstruction at a glance")
    for i, warning in enumerate(facts.warnings[:2]):
        fig.text(0.05, 0.902 - 0.016 * i, _shorten(f"WARNING: {warning}", 160), fontsize=8, weight="bold",
                 color=CUT_COLOURS["xy"], va="baseline")
    xy, xz, yz, edges, vunit = _volume_values(data)   # display-sized, in display units
    vmin, vmax = _limits(xy, xz, yz)
    step = max(1, int(data.slow_axis_step))
    shapes = {"xy": np.shape(data.slice_xy), "xz": np.shape(data.slice_xz),
              "yz": np.shape(data.slice_yz)}
    nz = facts.volume_shape[0] if facts.volume_shape else shapes["xz"][0] * step
    ny, nx = shapes["xy"]
    z0, y0, x0 = data.slice_positions or (nz // 2, ny // 2, nx // 2)
    lunit, lscale = _length_unit(facts.pixel_size_m, max(nx, ny, nz))

    if nz < FLAT_RATIO * max(nx, ny):
        # a flat volume: XY large on the left, XZ and YZ stacked on the right, no blank band
        gs = fig.add_gridspec(2, 1, left=0.55, right=0.95, top=0.87, bottom=0.53, hspace=0.6)
        axes = [fig.add_axes((0.05, 0.40, 0.40, 0.47)), fig.add_subplot(gs[0]), fig.add_subplot(gs[1])]
        hist_box, table_box = (0.06, 0.07, 0.36, 0.25), (0.52, 0.04, 0.46, 0.41)
    else:
        # XY, the slice people look at first, gets the larger share of the width
        widths = [1.35 * nx, nx, ny]
        gs = fig.add_gridspec(1, 3, left=0.05, right=0.96, top=0.87, bottom=0.44, wspace=0.36,
                              width_ratios=[max(w, 1) for w in widths])
        axes = [fig.add_subplot(gs[0, i]) for i in range(3)]
        hist_box, table_box = (0.06, 0.075, 0.36, 0.29), (0.48, 0.04, 0.49, 0.34)
    panels = (
        ("xy", xy, f"XY — row z = {z0}", ("x", "y"), (1, 1), [("h", y0, "xz"), ("v", x0, "yz")]),
        ("xz", xz, f"XZ — y = {y0}", ("x", "z"), (1, step), [("h", z0, "xy"), ("v", x0, "yz")]),
        ("yz", yz, f"YZ — x = {x0}", ("y", "z"), (1, step), [("h", z0, "xy"), ("v", y0, "xz")]),
    )
    for ax, (key, img, title, (xl, yl), (sx, sy), cuts) in zip(axes, panels, strict=True):
        extent = _extent(shapes[key], lscale, sx, sy)
        for spine in ax.spines.values():
            spine.set_edgecolor(CUT_COLOURS[key])
            spine.set_linewidth(2.0)
        if key != "xy" and nz <= MAX_PROFILES:
            _profiles(ax, img, extent, title, f"{xl} ({lunit})", vunit, (vmin, vmax), step,
                      (cuts[1][1] * lscale, CUT_COLOURS[cuts[1][2]]))
            continue
        aspect = _aspect(extent)
        im = ax.imshow(img, cmap=CMAP, vmin=vmin, vmax=vmax, extent=extent,
                       interpolation="nearest", aspect=aspect)
        ax.set_anchor("N")   # the panels share their top edge
        ax.set_title(title + (f"  (z every {step})" if sy > 1 and step > 1 else "")
                     + ("  (stretched)" if aspect == "auto" else ""))
        _integer_ticks(ax, lunit)
        ax.set_xlabel(f"{xl} ({lunit})")
        ax.set_ylabel(f"{yl} ({lunit})")
        for orient, pos, other in cuts:
            where = pos * lscale
            if orient == "h":
                ax.axhline(where, color=CUT_COLOURS[other], lw=0.7, alpha=0.8)
            else:
                ax.axvline(where, color=CUT_COLOURS[other], lw=0.7, alpha=0.8)
        if aspect == "equal":   # a scale bar on a stretched image would lie
            _scale_bar(ax, extent, lunit)
        _colorbar(fig, ax, im, vunit)

    hist_ax = fig.add_axes(hist_box)
    _histogram(hist_ax, data.histogram[0], edges, vunit, (vmin, vmax), data, facts)
    table_ax = fig.add_axes(table_box)
    _kv_table(table_ax, _key_facts(facts), title="Key facts")


def _profiles(ax: Axes, img: np.ndarray, extent: Sequence[float], title: str, xlabel: str, vunit: str,
              shown: tuple[float, float], step: int, cut: tuple[float, str]) -> None:
    """Each row of a cut through a volume of few rows as a line: values along the cut."""
    rows = np.arange(img.shape[0])
    edges = np.linspace(extent[0], extent[1], img.shape[1] + 1)
    x = (edges[:-1] + edges[1:]) / 2
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, rows.size))
    for r, colour in zip(rows, colours, strict=True):
        ax.plot(x, img[r], lw=0.8, color=colour, label=f"z = {r * step}")
    ax.axvline(cut[0], color=cut[1], lw=0.7, alpha=0.8)
    lo, hi = shown
    ax.set_ylim(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo))
    ax.set_xlim(extent[0], extent[1])
    ax.set_title(f"{title}: {img.shape[0]} row{'s' if img.shape[0] > 1 else ''}, as profiles")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(vunit)
    ax.legend(fontsize=6, loc="upper right", ncol=min(4, rows.size), framealpha=0.7)


def _page_corrections(fig: Figure, data: ReportData, columns: list[list[str]]) -> None:
    facts = data.facts
    _header(fig, facts, "Raw and corrected data, full facts")
    lunit, lscale = _length_unit(facts.pixel_size_m, max(np.shape(data.raw_projection)))
    a0, a1 = facts.angle_range_deg
    gs = fig.add_gridspec(2, 2, left=0.06, right=0.93, top=0.875, bottom=0.50, hspace=0.55,
                          wspace=0.30)
    corrected_label = _quantity_label(data.corrected_quantity)
    pidx = "" if data.projection_index is None else f" #{data.projection_index}"
    row = "" if data.sinogram_row is None else f" of row {data.sinogram_row}"
    panels = (
        (data.raw_projection, f"Raw projection{pidx}", "counts", False),
        (data.corrected_projection, f"Corrected projection{pidx}", corrected_label, False),
        (data.raw_sinogram, f"Raw sinogram{row}", "counts", True),
        (data.corrected_sinogram, f"Sinogram{row} as reconstructed", _quantity_label(data.sinogram_quantity),
         True),
    )
    for i, (img, title, unit, is_sino) in enumerate(panels):
        ax = fig.add_subplot(gs[i // 2, i % 2])
        shape = np.shape(img)
        if len(shape) != 2 or 0 in shape:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            ax.set_title(title)
            continue
        shown = _display(img)
        vmin, vmax = _limits(shown)
        if is_sino:
            # rows are angles: the vertical axis is in degrees, from the first to the last
            n = shape[0]
            s0, s1 = (a0, a1) if i == 2 or data.sinogram_angles_deg is None else data.sinogram_angles_deg
            da = (s1 - s0) / max(n - 1, 1)
            extent = (-0.5 * lscale, (shape[1] - 0.5) * lscale, s1 + da / 2, s0 - da / 2)
            aspect: Any = "auto"
            ylabel = "angle (°)"
        else:
            extent = _extent(shape, lscale)
            aspect = _aspect(extent)
            ylabel = f"row ({lunit})"
        im = ax.imshow(shown, cmap=CMAP, vmin=vmin, vmax=vmax, extent=extent,
                       aspect=aspect, interpolation="nearest")
        ax.set_title(title + (f" ({', '.join(data.sinogram_steps)})" if i == 3 and data.sinogram_steps else ""))
        ax.set_xlabel(f"column ({lunit})")
        ax.set_ylabel(ylabel)
        _integer_ticks(ax, lunit, y=not is_sino)
        if i % 2 == 0 and facts.center is not None and 0 <= facts.center < shape[1]:
            # raw data are in detector columns, the frame of the rotation centre
            ax.axvline(facts.center * lscale, color=CUT_COLOURS["xy"], lw=0.7, ls="--", alpha=0.9,
                       label=f"rotation axis ({facts.center:.2f} px)")
            ax.legend(loc="upper right", fontsize=6, framealpha=0.7)
        if not is_sino and data.sinogram_row is not None and 0 <= data.sinogram_row < shape[0]:
            ax.axhline(data.sinogram_row * lscale, color=CUT_COLOURS["xz"], lw=0.7, alpha=0.8)
        _colorbar(fig, ax, im, unit)
    _text_columns(fig, columns, top=0.43, bottom=0.04, per_column=_PAGE2_LINES)


def _page_text(fig: Figure, facts: ReportFacts, columns: list[list[str]]) -> None:
    _header(fig, facts, "Full facts (continued)")
    _text_columns(fig, columns, top=0.86, bottom=0.05, per_column=_TEXT_PAGE_LINES)


def _page_stitching(fig: Figure, data: ReportData) -> None:
    facts = data.facts
    _header(fig, facts, "Stitching of the scans")
    costs = list(data.alignment_costs.items())
    top_bottom = 0.50 if costs else 0.08
    if data.stitched_projection is not None:
        shape = np.shape(data.stitched_projection)
        shown = _display(data.stitched_projection)
        lunit, lscale = _length_unit(facts.pixel_size_m, max(shape))
        ax = fig.add_axes((0.06, top_bottom + 0.04, 0.86, 0.84 - top_bottom - 0.04))
        extent = _extent(shape, lscale)
        vmin, vmax = _limits(shown)
        im = ax.imshow(shown, cmap=CMAP, vmin=vmin, vmax=vmax, extent=extent,
                       aspect=_aspect(extent), interpolation="nearest")
        for seam in data.seam_columns:
            ax.axvline(seam * lscale, color=CUT_COLOURS["xz"], lw=0.8, ls="--")
        n = len(data.seam_columns)
        ax.set_title(f"Stitched projection — {n} seam{'' if n == 1 else 's'} between scans, dashed")
        ax.set_xlabel(f"column ({lunit})")
        ax.set_ylabel(f"row ({lunit})")
        _colorbar(fig, ax, im, _quantity_label(data.corrected_quantity))
    if costs:
        shown = costs[:6]
        gs = fig.add_gridspec(1, len(shown), left=0.06, right=0.95, top=0.42, bottom=0.08,
                              wspace=0.45)
        for i, (name, cost) in enumerate(shown):
            ax = fig.add_subplot(gs[0, i])
            _cost_map(fig, ax, name, np.asarray(cost, dtype=np.float64))
        if len(costs) > len(shown):
            fig.text(0.95, 0.03, f"… and {len(costs) - len(shown)} more alignment cost maps",
                     ha="right", fontsize=7, color="0.35")


def _page_placement(fig: Figure, facts: ReportFacts, doc: dict[str, Any]) -> None:
    """The lateral placement: every scan's solved position, every pair's measurements against
    the fit (residuals per projection, rejected ones crossed), and the pairs' summary."""
    _header(fig, facts, f"Placement of the scans ({doc.get('method', 'global fit')})")
    scans, pairs = doc["scans"], doc["pairs"]
    names = [sc["name"] for sc in scans]

    def num(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    rows = [[sc["name"], f"{sc['guess'][0]:+.2f}", f"{sc['guess'][1]:+.2f}",
             f"{sc['dx']:+.3f} ± {num((sc.get('sigma') or [None])[0], '.3f')}",
             f"{sc['dy']:+.3f} ± {num((sc.get('sigma') or [None, None])[1], '.3f')}",
             f"{sc.get('gain', 1.0):.4f}", sc["how"]] for sc in scans]
    _table(fig.add_axes((0.05, 0.52, 0.50, 0.36)), ["scan", "motor dx", "motor dy", "dx (px)", "dy (px)",
                                                    "gain", "from"], rows, "Solved positions (relative to the first scan)")
    prow = []
    for pr in pairs:
        ms = pr["measurements"]
        used = sum(all(m["used"]) for m in ms)
        prow.append([f"{names[pr['left']]} | {names[pr['right']]}", f"{pr['search']['overlap_px'][0]}",
                     f"{used}/{len(ms)}", num(pr["residual_rms"][0], ".3f"), num(pr["residual_rms"][1], ".3f"),
                     str(pr.get("rejected", 0))])
    _table(fig.add_axes((0.05, 0.08, 0.50, 0.36)), ["pair", "overlap px", "projections", "rms dx", "rms dy",
                                                    "rejected"], prow, "Pairs: measurements against the fit (px)")
    for i, (axis, word) in enumerate(((0, "dx"), (1, "dy"))):
        ax = fig.add_axes((0.63, 0.53 - 0.45 * i, 0.34, 0.33))
        for k, pr in enumerate(pairs):
            colour = f"C{k % 10}"
            ok = [m for m in pr["measurements"] if m["used"][axis] and m["residual"][axis] is not None]
            bad = [m for m in pr["measurements"] if not m["used"][axis] and m["residual"][axis] is not None
                   and m["sigma"][axis] is not None]
            ax.plot([m["projection"] for m in ok], [m["residual"][axis] for m in ok], "o", ms=3, color=colour,
                    label=f"{names[pr['left']]} | {names[pr['right']]}")
            ax.plot([m["projection"] for m in bad], [m["residual"][axis] for m in bad], "x", ms=6, color=colour)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_title(f"{word}: measured − fit, per projection (× rejected)")
        ax.set_xlabel("projection")
        ax.set_ylabel("residual (px)")
        if i == 0 and pairs:
            ax.legend(fontsize=6, loc="upper right", ncol=2, framealpha=0.7)


def _table(ax: Axes, header: list[str], rows: list[list[str]], title: str) -> None:
    """A table of text with a bold header and alternate shading, in axes coordinates."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.text(0, 1.0, title, fontsize=10, weight="bold", va="bottom", transform=ax.transAxes)
    shown = rows[:24]
    if len(rows) > len(shown):
        shown.append([f"… {len(rows) - len(shown)} more"] + [""] * (len(header) - 1))
    h = min(0.09, 0.98 / (len(shown) + 1))
    size = min(8.0, h * ax.get_position().height * A4_LANDSCAPE[1] * 72 * 0.72)
    widths = [max(len(str(c)) for c in col) + 2 for col in zip(header, *shown, strict=True)]
    xs = np.concatenate([[0.0], np.cumsum(widths)[:-1]]) / max(sum(widths), 1)
    for r, row in enumerate([header, *shown]):
        y = 0.98 - (r + 0.5) * h
        if r % 2 == 1:
            ax.add_patch(Rectangle((0, y - h / 2), 1, h, color="0.93", lw=0))
        for x, cell in zip(xs, row, strict=True):
            ax.text(x + 0.005, y, str(cell), fontsize=size, va="center", weight="bold" if r == 0 else "normal",
                    family="DejaVu Sans Mono" if r else None)


# -- the report of a vertical stack ------------------------------------------------------


@dataclass
class StackData:
    """What :func:`write_stack_report` draws: the joined volume's cuts and the seams."""

    facts: ReportFacts                # scan_name: the stack; input_file: the sheet; volume_shape
    slice_xz: np.ndarray              # volume[::step, y, :]: (z / step, x)
    slice_yz: np.ndarray              # volume[::step, :, x]: (z / step, y)
    slice_xy: np.ndarray              # volume[z, :, :] at the first seam
    slice_z: int                      # the row of slice_xy
    seam_rows: list[float]            # tall rows where neighbouring levels weigh equally
    levels: list[dict[str, Any]]      # name, z, rows, gain, height_px (zstitch.json)
    seams: list[dict[str, Any]]       # upper, lower, guess, dz, tried, corr, peak, gain, residual
    warnings: list[str] = field(default_factory=list)
    slow_axis_step: int = 1
    values_are_codes: bool = False


def write_stack_report(data: StackData, path: str | os.PathLike) -> None:
    """Write the vertical stack's report PDF to ``path`` atomically."""
    data = dataclasses.replace(data, facts=_dated(data.facts))
    pages = [lambda fig: _page_stack(fig, data), lambda fig: _page_seams(fig, data)]
    _write_pdf(path, data.facts, pages, f"teravox vertical stack report: {_scan_name(data.facts)}")


def _stack_values(data: StackData) -> tuple[list[np.ndarray], str]:
    images = [_display(s).astype(np.float64) for s in (data.slice_xz, data.slice_yz, data.slice_xy)]
    facts = data.facts
    if data.values_are_codes and facts.integer_mapping is not None:
        lo, hi = facts.integer_mapping
        top = float(np.iinfo(np.dtype(facts.output_dtype)).max)
        images = [lo + im * (hi - lo) / top for im in images]
    if facts.pixel_size_m:
        return [im / facts.pixel_size_m for im in images], "attenuation µ (m⁻¹)"
    return images, "attenuation (1/pixel)"


def _page_stack(fig: Figure, data: StackData) -> None:
    facts = data.facts
    _header(fig, facts, f"Vertical stack of {len(data.levels)} levels")
    (xz, yz, xy), unit = _stack_values(data)
    vmin, vmax = _limits(xz, yz, xy)
    nz = facts.volume_shape[0] if facts.volume_shape else np.shape(data.slice_xz)[0] * data.slow_axis_step
    step = max(1, data.slow_axis_step)
    lunit, lscale = _length_unit(facts.pixel_size_m, nz)
    for i, (img, shape, title, xl) in enumerate(((xz, np.shape(data.slice_xz), "XZ through the middle", "x"),
                                                 (yz, np.shape(data.slice_yz), "YZ through the middle", "y"))):
        ax = fig.add_axes((0.05 + 0.24 * i, 0.08, 0.20, 0.80))
        extent = _extent(shape, lscale, 1, step)
        im = ax.imshow(img, cmap=CMAP, vmin=vmin, vmax=vmax, extent=extent, aspect="equal",
                       interpolation="nearest")
        for k, lv in enumerate(data.levels):   # each level's rows, as a bar at the side
            ax.plot([extent[1] * (1.02 + 0.03 * (k % 2))] * 2,
                    [lv["z"] * lscale, (lv["z"] + lv["rows"] - 1) * lscale], color=f"C{k % 10}", lw=3,
                    clip_on=False, solid_capstyle="butt")
        for r in data.seam_rows:
            ax.axhline(r * lscale, color=CUT_COLOURS["xz"], lw=0.8, ls="--")
        ax.set_title(title + (f"  (z every {step})" if step > 1 else ""))
        ax.set_xlabel(f"{xl} ({lunit})")
        ax.set_ylabel(f"z ({lunit})")
        if i == 1:
            _colorbar(fig, ax, im, unit)
    ax = fig.add_axes((0.55, 0.50, 0.20, 0.36))
    im = ax.imshow(xy, cmap=CMAP, vmin=vmin, vmax=vmax, extent=_extent(np.shape(data.slice_xy), lscale),
                   interpolation="nearest")
    ax.set_title(f"XY at row z = {data.slice_z} (a seam)")
    ax.set_xlabel(f"x ({lunit})")
    ax.set_ylabel(f"y ({lunit})")
    rows = [[lv["name"], f"{lv['height_px'] - data.levels[0]['height_px']:+.2f}", f"{lv['z']:+.2f}",
             str(lv["rows"]), f"{lv['gain']:.4f}"] for lv in data.levels]
    _table(fig.add_axes((0.55, 0.08, 0.42, 0.32)), ["level", "heights", "found", "rows", "× gain"],
           rows, "Levels: row 0 in the tall volume (rows), gain to level 0's values")


def _page_seams(fig: Figure, data: StackData) -> None:
    _header(fig, data.facts, "Vertical stitching: the seams")
    names = [lv["name"] for lv in data.levels]
    seams = data.seams[:4]
    gs = fig.add_gridspec(1, max(1, len(seams)), left=0.06, right=0.96, top=0.86, bottom=0.56, wspace=0.35)
    for i, sm in enumerate(seams):
        ax = fig.add_subplot(gs[0, i])
        corr = np.array([np.nan if v is None else v for v in sm["corr"]], dtype=np.float64)
        ax.plot(sm["tried"], corr, "o-", ms=3, color="0.2", lw=1)
        ax.axvline(sm["guess"], color="0.5", ls=":", lw=1, label=f"heights {sm['guess']:+.2f}")
        ax.axvline(sm["dz"], color=CUT_COLOURS["xy"], lw=1, label=f"found {sm['dz']:+.2f}")
        ax.set_title(f"{names[sm['upper']]} | {names[sm['lower']]}", fontsize=8)
        ax.set_xlabel("lower level's row 0 in the upper's rows")
        ax.set_ylabel("correlation of the overlapping slices")
        ax.legend(fontsize=6, loc="lower center")
    rows = [[f"{names[sm['upper']]} | {names[sm['lower']]}", f"{sm['guess']:+.2f}", f"{sm['dz']:+.3f}",
             f"{sm['dz'] - sm['guess']:+.2f}", f"{sm['overlap_rows']:.1f}",
             "—" if sm["peak"] is None else f"{sm['peak']:.3f}", f"{sm['gain']:.4f}",
             "—" if sm["residual"] is None else f"{sm['residual']:.3g}"] for sm in data.seams]
    _table(fig.add_axes((0.05, 0.22, 0.92, 0.26)),
           ["seam", "heights", "found dz", "Δ", "overlap", "corr", "gain", "residual"], rows,
           "Seams: upper ≈ gain · lower over the overlap (rows; residual RMS in the volume's units)")
    warn = ["⚠ " + w for w in data.warnings] or ["No warnings."]
    lines = [ln for w in warn for ln in _wrap(w, 170)]
    for i, line in enumerate(lines[:8]):
        fig.text(0.05, 0.17 - i * 0.018, line, fontsize=7, color="#a33" if data.warnings else "0.3", va="top")


# -- pieces -----------------------------------------------------------------------------


def _scan_name(facts: ReportFacts) -> str:
    return facts.scan_name or Path(facts.input_file).stem or "scan"


def _header(fig: Figure, facts: ReportFacts, subtitle: str) -> None:
    fig.text(0.05, 0.955, _scan_name(facts), fontsize=17, weight="bold", va="baseline")
    fig.text(0.97, 0.955, facts.date or "", fontsize=11, ha="right", va="baseline", color="0.25")
    fig.text(0.05, 0.925, f"{subtitle}  ·  {_shorten(facts.input_file, 150)}", fontsize=8,
             color="0.35", va="baseline")


def _footer(fig: Figure, facts: ReportFacts, number: int, total: int) -> None:
    version = facts.versions.get("teravox", "")
    fig.text(0.05, 0.015, f"teravox {version}".strip(), fontsize=6.5, color="0.5")
    fig.text(0.97, 0.015, f"page {number} of {total}", fontsize=6.5, color="0.5", ha="right")


def _volume_values(data: ReportData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Slices and histogram edges in display units, and the name of the unit.

    Integer outputs are mapped back to attenuation per pixel through the integer
    mapping; attenuation per pixel becomes m⁻¹ or cm⁻¹ when the pixel size is known.
    """
    facts = data.facts
    raw = (data.slice_xy, data.slice_xz, data.slice_yz)
    edges = np.asarray(data.histogram[1], dtype=np.float64)
    codes = data.values_are_codes
    if codes is None:
        codes = all(np.asarray(s[:1, :1]).dtype.kind in "ui" for s in raw)
    # averaging commutes with the linear conversions below, so convert the small images
    slices = [_display(s).astype(np.float64) for s in raw]
    if codes:
        if facts.integer_mapping is None:
            return (*slices, edges, f"grey value ({facts.output_dtype})")  # type: ignore[return-value]
        lo, hi = facts.integer_mapping
        top = float(np.iinfo(np.dtype(facts.output_dtype)).max) if np.dtype(
            facts.output_dtype).kind in "ui" else 1.0
        slices = [lo + s * (hi - lo) / top for s in slices]
        edges = lo + edges * (hi - lo) / top
    if not facts.pixel_size_m:
        return (*slices, edges, "attenuation (1/pixel)")  # type: ignore[return-value]
    per_m = [s / facts.pixel_size_m for s in slices]
    finite = np.concatenate([s[np.isfinite(s)].ravel() for s in per_m] or [np.zeros(1)])
    big = float(np.percentile(np.abs(finite), 99)) if finite.size else 0.0
    # cm⁻¹ for dense samples (beamline habit), m⁻¹ keeps weak contrasts readable
    if big >= 100.0:
        return (*[s / 100.0 for s in per_m], edges / facts.pixel_size_m / 100.0,  # type: ignore[return-value]
                "attenuation µ (cm⁻¹)")
    return (*per_m, edges / facts.pixel_size_m, "attenuation µ (m⁻¹)")  # type: ignore[return-value]


def _limits(*images: np.ndarray) -> tuple[float, float]:
    """Robust shared contrast limits: the PERCENTILES of the finite values."""
    finite = [np.asarray(i, dtype=np.float64) for i in images]
    values = np.concatenate([v[np.isfinite(v)].ravel() for v in finite]) if finite else np.zeros(0)
    if values.size == 0:
        return 0.0, 1.0
    if values.size > 2_000_000:   # percentiles of a subsample are as good and much faster
        values = values[:: values.size // 1_000_000]
    lo, hi = (float(v) for v in np.percentile(values, PERCENTILES))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _display(img: Any, max_px: int = MAX_DISPLAY_PX) -> np.ndarray:
    """Block-average a 2-D image down to at most ``max_px`` per side, as float32.

    Works strip by strip, so a 24 000² slice (or an h5py dataset) is never copied whole;
    NaNs are ignored in the averages.
    """
    shape = np.shape(img)
    if len(shape) != 2:
        raise ValueError(f"expected a 2-D image, got shape {shape}")
    fy = max(1, math.ceil(shape[0] / max_px))
    fx = max(1, math.ceil(shape[1] / max_px))
    if fy == 1 and fx == 1:
        return np.asarray(img, dtype=np.float32)
    ny, nx = shape[0] // fy, shape[1] // fx
    out = np.empty((ny, nx), dtype=np.float32)
    for i in range(ny):
        strip = np.asarray(img[i * fy:(i + 1) * fy, : nx * fx], dtype=np.float32)
        blocks = strip.reshape(fy, nx, fx)
        if np.isnan(blocks).any():
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN blocks stay NaN
                out[i] = np.nanmean(blocks, axis=(0, 2))
        else:
            out[i] = blocks.mean(axis=(0, 2))
    return out


def _length_unit(pixel_size_m: float | None, n_pixels: int) -> tuple[str, float]:
    """(unit name, length of one pixel in it): µm below 2 mm of field, mm above, px if unknown."""
    if not pixel_size_m:
        return "px", 1.0
    if n_pixels * pixel_size_m >= 2e-3:
        return "mm", pixel_size_m * 1e3
    return "µm", pixel_size_m * 1e6


def _extent(shape: tuple[int, ...], scale: float, sx: float = 1, sy: float = 1) -> tuple[float, ...]:
    """imshow extent with pixel i centred at i·scale (rows sampled every ``sy`` pixels)."""
    ny, nx = shape[:2]
    return (-0.5 * sx * scale, (nx - 0.5) * sx * scale, (ny - 0.5) * sy * scale, -0.5 * sy * scale)


def _aspect(extent: Sequence[float]) -> str:
    """Equal aspect unless the image is a thin strip, which would become invisible."""
    w, h = abs(extent[1] - extent[0]), abs(extent[2] - extent[3])
    return "equal" if 1 / 6 <= w / max(h, 1e-12) <= 6 else "auto"


def _nice(length: float) -> float:
    """The largest of 1, 2, 5 × 10^k not above ``length``."""
    if length <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(length))
    return max(m * exp for m in (1, 2, 5) if m * exp <= length)


def _integer_ticks(ax: Axes, unit: str, y: bool = True) -> None:
    """Pixel axes get whole-pixel ticks (a 2-row projection must not show row 0.5)."""
    if unit == "px":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if y:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _quantity_label(quantity: str) -> str:
    return "line integral −ln(I/I₀)" if quantity == "line_integral" else "transmission I/I₀"


def _colorbar(fig: Figure, ax: Axes, im: Any, label: str) -> None:
    """A colour bar as tall as the image actually drawn in ``ax``."""
    divider = make_axes_locatable(ax)
    divider.set_anchor(ax.get_anchor())   # the divider places the axes now: keep its anchor
    cax = divider.append_axes("right", size="4%", pad=0.06)
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(label)
    # values per pixel are ~1e-4: a ×10ⁿ offset keeps tick labels short
    cb.formatter = ScalarFormatter(useMathText=True)
    cb.formatter.set_powerlimits((-2, 5))
    cb.update_ticks()


def _scale_bar(ax: Axes, extent: Sequence[float], unit: str) -> None:
    width, height = abs(extent[1] - extent[0]), abs(extent[2] - extent[3])
    length = _nice(width / 5)
    if unit == "µm" and length >= 1000:
        label = f"{length / 1000:g} mm"
    else:
        label = f"{length:g} {unit}"
    bar = AnchoredSizeBar(ax.transData, length, label, "lower right", pad=0.3, color="white",
                          frameon=False, size_vertical=height / 120, label_top=True,
                          fontproperties={"size": 7, "weight": "bold"})
    ax.add_artist(bar)


def _histogram(ax: Axes, counts: np.ndarray, edges: np.ndarray, unit: str,
               shown: tuple[float, float], data: ReportData, facts: ReportFacts) -> None:
    counts = np.asarray(counts, dtype=np.float64)
    ax.set_title("Histogram of the volume", loc="left")
    if counts.size == 0 or edges.size != counts.size + 1:
        ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
        return
    ax.stairs(counts, edges, fill=True, color="0.35")
    if counts.max() > 0:
        ax.set_yscale("log")
        ax.set_ylim(0.8, counts.max() * 2)
    ax.axvline(shown[0], color="0.1", lw=0.8, ls=":")
    ax.axvline(shown[1], color="0.1", lw=0.8, ls=":", label=f"grey range of the slices ({PERCENTILES[0]:g}–{PERCENTILES[1]:g} %)")
    if facts.integer_mapping is not None and np.dtype(facts.output_dtype).kind in "ui":
        lo, hi = facts.integer_mapping
        if facts.pixel_size_m and "cm" in unit:
            lo, hi = lo / facts.pixel_size_m / 100, hi / facts.pixel_size_m / 100
        elif facts.pixel_size_m and "m⁻¹" in unit:
            lo, hi = lo / facts.pixel_size_m, hi / facts.pixel_size_m
        ax.axvspan(lo, hi, color=CUT_COLOURS["yz"], alpha=0.15, lw=0,
                   label=f"mapped onto {facts.output_dtype}")
    ax.set_xlabel(unit)
    fmt = ScalarFormatter(useMathText=True)
    fmt.set_powerlimits((-2, 3))
    ax.xaxis.set_major_formatter(fmt)
    ax.set_ylabel("voxels")
    ax.legend(loc="upper right", fontsize=6, framealpha=0.8)


def _cost_map(fig: Figure, ax: Axes, name: str, cost: np.ndarray) -> None:
    """An alignment cost over the shift search window, its minimum marked."""
    ax.set_title(name, fontsize=8)
    if cost.ndim == 1:
        shifts = np.arange(cost.size) - cost.size // 2
        ax.plot(shifts, cost, color="0.2", lw=1)
        best = int(np.nanargmin(cost))
        ax.plot(shifts[best], cost[best], "o", color=CUT_COLOURS["xy"])
        ax.set_xlabel(f"shift (px), best {shifts[best]:+d}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("cost")
        return
    ny, nx = cost.shape
    extent = (-(nx // 2) - 0.5, nx - nx // 2 - 0.5, ny - ny // 2 - 0.5, -(ny // 2) - 0.5)
    im = ax.imshow(cost, cmap=CMAP_COST, extent=extent, interpolation="nearest")
    by, bx = np.unravel_index(int(np.nanargmin(cost)), cost.shape)
    ax.plot(bx - nx // 2, by - ny // 2, "+", color=CUT_COLOURS["xy"], ms=10, mew=2)
    ax.set_xlabel(f"Δ column (px), best {bx - nx // 2:+d}")
    ax.set_ylabel(f"Δ row (px), best {by - ny // 2:+d}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _colorbar(fig, ax, im, "cost")


# -- facts as text ----------------------------------------------------------------------


def _fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    return str(value)


def _fmt_length(metres: float) -> str:
    if metres >= 1e-3:
        return f"{metres * 1e3:.4g} mm"
    if metres >= 1e-7:   # sub-micron pixels are still quoted in µm at beamlines
        return f"{metres * 1e6:.4g} µm"
    return f"{metres * 1e9:.4g} nm"


def _output_text(facts: ReportFacts) -> str:
    """Output dtype, its value range and, for integers, what the codes stand for."""
    kind = np.dtype(facts.output_dtype).kind
    top = int(np.iinfo(np.dtype(facts.output_dtype)).max) if kind in "ui" else None
    text = facts.output_dtype
    if facts.output_range is not None:
        lo, hi = facts.output_range
        if top is None:
            text += f", µ {lo:.4g} … {hi:.4g} /px" + _per_length(facts, lo, hi)
        else:
            text += f", values {lo:g} … {hi:g}"
    if facts.integer_mapping is not None and top is not None:
        lo, hi = facts.integer_mapping
        text += f"; 0 … {top} ↔ µ {lo:.4g} … {hi:.4g} /px" + _per_length(facts, lo, hi)
    return text


def _per_length(facts: ReportFacts, lo: float, hi: float) -> str:
    """' (a … b cm⁻¹)' for attenuation per pixel when the pixel size is known."""
    if not facts.pixel_size_m:
        return ""
    return f" ({lo / facts.pixel_size_m / 100:.3g} … {hi / facts.pixel_size_m / 100:.3g} cm⁻¹)"


def center_text(facts: ReportFacts, digits: int = 2) -> str:
    """The rotation centre with how it was found: the method and confidence of a search."""
    if facts.center is None:
        return "not set"
    if facts.center_method:
        conf = "" if facts.center_confidence is None else f", confidence {facts.center_confidence:.2f}"
        return f"{facts.center:.{digits}f} px — automatic: {facts.center_method}{conf}"
    return f"{facts.center:.{digits}f} px ({facts.center_source})"


def _frames_text(facts: ReportFacts) -> str | None:
    if facts.n_flats is None and facts.n_darks is None:
        return None
    after = f" + {facts.n_flats_after} after" if facts.n_flats_after else ""
    return f"{facts.n_flats or 0} flats{after}, {facts.n_darks or 0} darks"


def _distance_text(facts: ReportFacts) -> str:
    return "not known" if facts.distance_m is None else f"{facts.distance_m * 1e3:g} mm"


def _key_facts(facts: ReportFacts) -> list[tuple[str, str]]:
    shape = " × ".join(map(str, facts.shape))
    a0, a1 = facts.angle_range_deg
    rows = [
        ("Input", Path(facts.input_file).name or facts.input_file),
        ("Projections", f"{shape}  (angles × rows × columns)"),
        ("Angles", f"{facts.n_angles} over {a0:g}° … {a1:g}°"),
    ]
    if (frames := _frames_text(facts)) is not None:
        rows.append(("Flats, darks", frames))
    if facts.exposure_s is not None:
        rows.append(("Exposure", f"{facts.exposure_s * 1e3:g} ms per frame"))
    rows += [
        ("Rotation centre", center_text(facts)),
        ("Axis tilt", facts.tilt or "not estimated"),
        ("Pixel size", _fmt_length(facts.pixel_size_m) if facts.pixel_size_m else "unknown (axes in pixels)"),
    ]
    if facts.energy_kev:
        rows.append(("Energy", f"{facts.energy_kev:g} keV"))
    rows.append(("Propagation", _distance_text(facts)))
    if facts.volume_shape:
        rows.append(("Volume", " × ".join(map(str, facts.volume_shape)) + "  (z × y × x)"))
    rows += [
        ("Backend", facts.backend),
        ("Output", _output_text(facts)),
        ("Corrections", ", ".join(name for name, _ in facts.corrections) or "none"),
    ]
    if facts.patched:
        rows.append(("Patched pixels", facts.patched))
    if facts.timings:
        rows.append(("Total time", _fmt_seconds(sum(facts.timings.values()))))
    rows += [(k[:1].upper() + k[1:], v) for k, v in facts.extra.items()]
    return rows


def _fact_blocks(facts: ReportFacts) -> list[list[str]]:
    """The full facts as titled blocks of lines (the first line of a block is its title)."""
    run = ["Run", f"input        {facts.input_file}"]
    if facts.output_file:
        run.append(f"output       {facts.output_file}")
    run += [f"projections  {' × '.join(map(str, facts.shape))} (angles × rows × columns)",
            f"angles       {facts.n_angles}, {facts.angle_range_deg[0]:g}° … {facts.angle_range_deg[1]:g}°",
            "centre       " + ("not set" if facts.center is None
                               else f"{facts.center:.3f} px ({facts.center_source})")]
    if (frames := _frames_text(facts)) is not None:
        run.append(f"flats, darks {frames}")
    if facts.exposure_s is not None:
        run.append(f"exposure     {facts.exposure_s * 1e3:g} ms per frame")
    run += [f"axis tilt    {facts.tilt or 'not estimated'}",
            f"pixel size   {_fmt_length(facts.pixel_size_m) if facts.pixel_size_m else 'unknown'}"]
    if facts.energy_kev:
        run.append(f"energy       {facts.energy_kev:g} keV")
    run += [f"propagation  {_distance_text(facts)}",
            f"backend      {facts.backend}",
            f"values       {_output_text(facts)}"]
    run += [f"{k:<12} {v}" for k, v in facts.extra.items()]
    corrections = ["Corrections and their parameters"]
    for name, params in facts.corrections:
        corrections.append(f"• {name}")
        if params:
            corrections.append("    " + ", ".join(f"{k} = {_fmt_value(v)}" for k, v in params.items()))
    if not facts.corrections:
        corrections.append("none")
    timings = ["Timings"]
    timings += [f"{stage:<14} {_fmt_seconds(sec):>12}" for stage, sec in facts.timings.items()]
    if facts.timings:
        timings.append(f"{'total':<14} {_fmt_seconds(sum(facts.timings.values())):>12}")
    else:
        timings.append("not recorded")
    versions = ["Software"] + [f"{k:<12} {v}" for k, v in facts.versions.items()]
    blocks = [run, corrections, timings, versions]
    if facts.files_read:
        blocks.insert(1, ["Files read (raw data)", *facts.files_read])
    return blocks


def _wrap(line: str, width: int, hang: int = 4) -> list[str]:
    """Wrap a text line (continuations indented by ``hang``); paths break after '/'."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + hang)
    out = textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                        break_long_words=False)
    result: list[str] = []
    for piece in out:
        while len(piece) > width:   # an unbreakable token: a path
            cut = piece.rfind("/", 0, width)
            cut = width if cut <= len(indent) else cut + 1
            result.append(piece[:cut])
            piece = indent + piece[cut:]
        result.append(piece)
    return result


_COLUMN_CHARS = 52   # characters per line of a facts column (monospace, 7 pt, with a gutter)
_TITLE = "\x00"      # marks a title line among a column's lines


def _block_lines(block: list[str]) -> list[list[str]]:
    """A titled block as the lines it takes in a column (title marked, lines wrapped, an item
    with its indented lines together).  A block longer than a facts page's column comes back
    in pieces cut between items, each under the title with '(continued)'."""
    items: list[list[str]] = []
    for line in block[1:]:
        wrapped = _wrap(line, _COLUMN_CHARS)
        if items and line.startswith(" "):
            items[-1] += wrapped
        else:
            items.append(wrapped)
    pieces = [[_TITLE + block[0]]]
    for item in items:
        if len(pieces[-1]) > 1 and len(pieces[-1]) + len(item) > _TEXT_PAGE_LINES:
            pieces.append([f"{_TITLE}{block[0]} (continued)"])
        pieces[-1] += item[:_TEXT_PAGE_LINES - 1]
    return pieces


def _place_blocks(blocks: list[list[str]], per_column: int,
                  columns: int) -> tuple[list[list[str]], list[list[str]]]:
    """Put each block, whole, into the first of ``columns`` columns of ``per_column`` lines
    where it fits (a blank line between blocks); return (columns, blocks that fitted nowhere).
    A block is never split: a section cut across columns reads as two."""
    cols: list[list[str]] = [[] for _ in range(columns)]
    left: list[list[str]] = []
    for block in blocks:
        col = next((c for c in cols if len(c) + (1 if c else 0) + len(block) <= per_column), None)
        if col is None:
            left.append(block)
            continue
        col += ([""] if col else []) + block
    return [c for c in cols if c], left


def _text_columns(fig: Figure, columns: list[list[str]], top: float, bottom: float,
                  per_column: int) -> None:
    """Draw columns of monospace lines; title lines bold with a rule under them."""
    left, right = 0.05, 0.97
    width = (right - left) / 3
    line_h = min(0.0205, (top - bottom) / per_column)   # the same spacing in every column
    size = min(7.0, line_h * A4_LANDSCAPE[1] * 72 * 0.68)  # points, from the figure fraction
    for c, lines in enumerate(columns):
        x = left + c * width
        for i, line in enumerate(lines):
            y = top - i * line_h
            if line.startswith(_TITLE):
                fig.text(x, y, line[1:], fontsize=size + 1, weight="bold", va="top")
                fig.add_artist(_rule(fig, x, y - line_h * 0.95, width * 0.9))
            else:
                fig.text(x, y, line, fontsize=size, family="DejaVu Sans Mono", va="top")


def _rule(fig: Figure, x: float, y: float, w: float) -> Rectangle:
    return Rectangle((x, y), w, 0.0008, transform=fig.transFigure, color="0.6", lw=0)


def _kv_table(ax: Axes, rows: list[tuple[str, str]], title: str) -> None:
    """Two-column key/value table with alternate shading, drawn in axes coordinates."""
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.text(0, 1.0, title, fontsize=10, weight="bold", va="bottom", transform=ax.transAxes)
    wrapped = [(k, _wrap(v, 68, hang=0)) for k, v in rows]
    n = sum(len(v) for _, v in wrapped)
    h = min(0.095, 0.98 / max(n, 1))
    size = min(8.0, h * ax.get_position().height * A4_LANDSCAPE[1] * 72 * 0.75)
    y = 0.98
    for i, (key, lines) in enumerate(wrapped):
        block = h * len(lines)
        if i % 2 == 0:
            ax.add_patch(Rectangle((0, y - block), 1, block, color="0.93", lw=0))
        ax.text(0.01, y - h / 2, key, fontsize=size, weight="bold", va="center")
        for j, line in enumerate(lines):
            ax.text(0.22, y - h / 2 - j * h, line, fontsize=size, va="center")
        y -= block


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2):]
