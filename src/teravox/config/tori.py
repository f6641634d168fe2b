"""Import of DanMAX Reconstructor ``.tori`` files into teravox parameters.

The Reconstructor GUI (TomoPy based) saves its settings as JSON in four sections.
Each key maps to a teravox parameter, with units converted; a key teravox cannot
honour, or honours only approximately, is reported as ``"section.key: why"`` in the
list returned beside the mapping — never silently dropped.  A feature switched off
in the ``.tori`` (``"phase_retrieval": false``) leaves its sub-keys unmapped.

The Reconstructor stores a feature's arguments in ``<feature>_kwargs`` sub-dicts
(``outlier_removal_kwargs: {dif, size, axis}``); keys written flat in the section
(``outlier_removal: true, dif: 0.2``) are read too.

Mapping (``.tori`` → teravox):

====================================================  ==========================================
``file_definitions``
data_file                                             the scan (not a parameter: :func:`tori_data_file`)
data_path / dark_path / flat_path                     data_path / dark_path / flat_path ('/' prefixed)
dark_file / flat_file ('' or = data_file → the scan)   dark_file / flat_file
slice_proj [start, stop, step], −1 = end              proj_range
slice_ver / slice_hor [start, stop, step]             row_range / col_range (step ≠ 1: unsupported)
theta_source 'exchange' / 'calc'                      theta_source 'file' / 'calc'
theta_start / theta_end (deg, only for 'calc')        theta_start_deg / theta_end_deg
image_key_path, angles_path (or theta_path),          image_key_path, angles_path, angles_file,
  angles_file, angles_unit, monitor_path (or i0_path)   angles_unit, monitor_path: not written by the
                                                        GUI; a hand-edited .tori may name them
``correction_arguments``
normalize_dark, normalize_flat                        flat_dark ((I−D)/(F−D); one alone: approximate)
normalize_i0                                          i0 = "monitor"
normalize_to_unity, flatten_images                    unsupported
crop + crop_ranges [z0, z1, x0, x1]                   row_range / col_range (composed with slice_ver/hor)
outlier_removal + {dif, size}                         outliers, outlier_dif, outlier_size
stripe_removal + stripe_function + {snr, la_size,     stripe_recon (full sinograms) + stripe_snr,
  sm_size, size}                                        stripe_la_size, stripe_sm_size (see STRIPE_METHODS)
phase_retrieval + {pixel_size cm, dist cm, energy     paganin, pixel_size_m, distance_m (cm → m),
  keV, alpha = β/δ, pad}                                energy_kev, delta_beta = 1/(4π²·alpha), paganin_pad
minus_log_before_phase / minus_log_after_phase        minus_log (either); before phase: approximate
``reconstruction_arguments``
recon_kwargs.center (in the loaded, cropped frame)    center in detector columns (+ slice/crop start)
recon_kwargs.algorithm                                algorithm (iterative ones → backend "tomopy")
recon_kwargs.filter_name                              filter_name (see FILTERS)
recon_kwargs.ncore / nchunk                           ignored (the GUI machine's settings)
pad + pad_kwargs {npad, mode}                         pad "edge" / "zero" / "none", pad_width_px
sino_360_to_180 + sino_360_to_180_old_center          half_acquisition "auto", center = old centre
excluded_proj [[from, to], ...]                       exclude_proj (in file projection indices)
``post_recon_process_arguments``
circ_mask + {ratio, val}                              circ_mask, circ_mask_ratio, circ_mask_value
ring_removal + {thresh, theta_min, rwidth}            rings "fft" (approximate; the three: no counterpart)
convert + {min, max, dtype, mode}                     dtype, dtype_range (mode minmax/std: approximate)
downscale + {down_scale_factors}                      pyramid = log2 of the largest factor
====================================================  ==========================================

Centre convention: TomoPy's ``recon(center=c)`` puts the axis at column *c* with
pixel *i* centred at *i* (the same as teravox; only TomoPy's *default* centre is half
a pixel off, tomopy#409), so the value is kept and only shifted by where the
Reconstructor's loaded, cropped image starts on the detector.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from teravox.config.params import Params, from_mapping
from teravox.errors import ParamError, shown

#: the Reconstructor's four sections, in file order
SECTIONS = ("file_definitions", "correction_arguments", "reconstruction_arguments",
            "post_recon_process_arguments")

#: TomoPy stripe function (with or without its ``remove_`` / ``stripe_`` prefixes) → teravox
#: stripe method; None = no teravox equivalent.
STRIPE_METHODS: dict[str, str | None] = {
    "all_stripe": "all", "vo_all": "all",               # Vo's combined method (algotom's "all")
    "large_stripe": "all", "dead_stripe": "all",        # subsets of Vo's combined method
    "stripe_based_interpolation": "all",
    "stripe_based_sorting": "sorting",
    "stripe_based_filtering": "filtering", "sf": "filtering",
    "stripe_based_fitting": "fitting",
    "fw": "wavelet-fft",                                # Münch's wavelet-FFT
    "ti": None,                                          # Titarenko: no teravox equivalent
}
#: methods that only approximate the TomoPy function named (shown in the notes)
_STRIPE_APPROX = {"large_stripe", "dead_stripe", "stripe_based_interpolation", "sf"}

#: TomoPy filter names → teravox filter_name
FILTERS: dict[str, str] = {
    "ramlak": "ramp", "ramp": "ramp", "shepp": "shepp-logan", "shepp-logan": "shepp-logan",
    "cosine": "cosine", "hann": "hann", "hamming": "hamming", "parzen": "parzen",
}

#: TomoPy algorithms that teravox's own fourier backends reproduce (filtered backprojection)
_FBP_ALGORITHMS = {"gridrec", "fbp"}

#: file_definitions keys beyond the GUI's (teravox's explicit paths; see the table above)
_PATH_KEYS = (("image_key_path", "image_key_path"), ("angles_path", "angles_path"), ("theta_path", "angles_path"),
              ("angles_file", "angles_file"), ("angles_unit", "angles_unit"), ("monitor_path", "monitor_path"),
              ("i0_path", "monitor_path"))

#: keys each section may hold; anything else is reported as unknown
_KNOWN: dict[str, set[str]] = {
    "file_definitions": {"data_file", "data_path", "dark_file", "dark_path", "flat_file",
                         "flat_path", "slice_proj", "slice_ver", "slice_hor", "theta_source",
                         "theta_start", "theta_end", *(k for k, _ in _PATH_KEYS)},
    "correction_arguments": {
        "normalize_dark", "normalize_flat", "normalize_i0", "normalize_to_unity",
        "flatten_images", "flatten_images_kwargs", "flatten_size", "crop", "crop_kwargs",
        "crop_ranges", "outlier_removal", "outlier_removal_kwargs", "dif", "size", "axis",
        "stripe_removal", "stripe_function", "stripe_removal_kwargs", "snr", "la_size", "sm_size",
        "dim", "phase_retrieval", "phase_retrieval_kwargs", "pixel_size", "dist", "energy",
        "alpha", "pad", "i0_correction", "minus_log_before_phase", "minus_log_after_phase"},
    "reconstruction_arguments": {"recon_kwargs", "pad", "pad_kwargs", "sino_360_to_180",
                                 "sino_360_to_180_old_center", "excluded_proj"},
    "post_recon_process_arguments": {
        "circ_mask", "circ_mask_kwargs", "ratio", "val", "ring_removal", "ring_removal_kwargs",
        "thresh", "theta_min", "rwidth", "convert", "convert_kwargs", "min", "max", "dtype",
        "mode", "downscale", "downscale_kwargs", "down_scale_factors", "chunks", "crop"},
}

_MISSING = object()


class _Reader:
    """Typed access to the .tori mapping; a wrong type is a ParamError naming file and key."""

    def __init__(self, tori: dict[str, Any], source: str):
        self.tori, self.source = tori, source

    def fail(self, key: str, problem: str) -> ParamError:
        return ParamError(f"{self.source}: {key}: {problem}")

    def section(self, name: str) -> dict[str, Any]:
        value = self.tori.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"expected a section (a JSON object), got {shown(value)}")
        return value

    def raw(self, section: str, key: str, feature: str | None = None) -> tuple[str, Any]:
        """(dotted key, value) of ``key``, looked up in ``<feature>_kwargs`` first."""
        sec = self.section(section)
        if feature is not None:
            sub = sec.get(f"{feature}_kwargs")
            if sub is not None:
                if not isinstance(sub, dict):
                    raise self.fail(f"{section}.{feature}_kwargs", f"expected an object, got {shown(sub)}")
                if key in sub:
                    return f"{section}.{feature}_kwargs.{key}", sub[key]
        return f"{section}.{key}", sec.get(key, _MISSING)

    def get(self, section: str, key: str, kind: str, default: Any = None,
            feature: str | None = None) -> Any:
        """The value of ``key`` checked against ``kind``; missing or null → ``default``."""
        dotted, value = self.raw(section, key, feature)
        if value is _MISSING or value is None:
            return default
        return _typed(self, dotted, value, kind)


def _typed(r: _Reader, key: str, value: Any, kind: str) -> Any:
    """Check one .tori value: bool, int, num, str, range (list of ints), or num|str."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise r.fail(key, f"expected true or false, got {shown(value)}")
    if kind == "int":
        # the GUI's spin boxes give ints, but a hand-edited 3.0 means 3
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise r.fail(key, f"expected an integer, got {shown(value)}")
    if kind == "num":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise r.fail(key, f"expected a number, got {shown(value)}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise r.fail(key, f"expected a string, got {shown(value)}")
    if kind == "ints":
        if not isinstance(value, (list, tuple)):
            raise r.fail(key, f"expected a list of integers, got {shown(value)}")
        return [_typed(r, key, v, "int") for v in value]
    raise AssertionError(kind)


def _h5path(path: str) -> str:
    """The GUI writes 'exchange/data'; teravox paths are absolute inside the file."""
    return path if path.startswith("/") else "/" + path


def _slice3(r: _Reader, key: str) -> tuple[int, int, int]:
    """slice_proj / slice_ver / slice_hor as (start, stop, step), stop −1 = end."""
    value = r.get("file_definitions", key, "ints", [0, -1, 1])
    if len(value) == 2:
        value = [*value, 1]
    if len(value) != 3:
        raise r.fail(f"file_definitions.{key}", f"expected [start, stop, step], got {shown(value)}")
    start, stop, step = value
    if start < 0 or step < 1 or (stop != -1 and stop <= start):
        raise r.fail(f"file_definitions.{key}",
                     f"expected [start, stop, step] with 0 <= start < stop (or stop = -1) and step >= 1, got {shown(value)}")
    return start, stop, step


def _compose(start: int, stop: int, c0: int, c1: int) -> list[int]:
    """A crop [c0, c1) inside the loaded range [start, stop) in file indices (−1 = end)."""
    lo = start + c0
    if c1 == -1:
        return [lo, stop]
    hi = start + c1
    return [lo, hi if stop == -1 else min(hi, stop)]


def _map_files(r: _Reader, out: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """file_definitions; returns the geometry the other sections need (offsets, steps)."""
    sec = "file_definitions"
    data_file = r.get(sec, "data_file", "str", "")
    for kind in ("data", "flat", "dark"):
        path = r.get(sec, f"{kind}_path", "str")
        if path:
            out[f"{kind}_path"] = _h5path(path)
    for key, name in _PATH_KEYS:
        value = r.get(sec, key, "str")
        if value:
            out[name] = _h5path(value) if name.endswith("_path") else value
    for kind in ("flat", "dark"):
        other = r.get(sec, f"{kind}_file", "str", "")
        # the GUI fills these with the scan's own name; teravox's None means "the scan"
        if other and other != data_file:
            out[f"{kind}_file"] = other

    p0, p1, pstep = _slice3(r, "slice_proj")
    if (p0, p1, pstep) != (0, -1, 1):
        out["proj_range"] = [p0, p1, pstep]
    geo = {"proj": (p0, p1, pstep)}
    for key, name in (("slice_ver", "row_range"), ("slice_hor", "col_range")):
        start, stop, step = _slice3(r, key)
        if step != 1:
            notes.append(f"{sec}.{key}: a step of {step} (loading every {step}th detector "
                         f"{'row' if key == 'slice_ver' else 'column'}) is not supported; all are used")
        geo[name] = (start, stop)
        if (start, stop) != (0, -1):
            out[name] = [start, stop]

    source = r.get(sec, "theta_source", "str", "exchange")
    if source in ("exchange", "file"):
        out["theta_source"] = "file"
    elif source == "calc":
        out["theta_source"] = "calc"
        start = r.get(sec, "theta_start", "num")
        end = r.get(sec, "theta_end", "num")
        if start is None or end is None:
            raise r.fail(f"{sec}.theta_start", "theta_source 'calc' needs theta_start and theta_end")
        out["theta_start_deg"], out["theta_end_deg"] = start, end
        notes.append(f"{sec}.theta_end: approximate — the Reconstructor spaces calculated angles "
                     "with the end included (np.linspace), teravox excludes theta_end_deg: for N "
                     "projections the angle step differs by N/(N-1)")
        if (p0, pstep) != (0, 1):
            notes.append(f"{sec}.theta_source: approximate — the Reconstructor spreads calculated "
                         "angles over the loaded projections only (slice_proj), teravox over the file's")
    else:
        raise r.fail(f"{sec}.theta_source", f"expected 'exchange' or 'calc', got {shown(source)}")
    return geo


def _map_corrections(r: _Reader, out: dict[str, Any], notes: list[str], geo: dict[str, Any]) -> None:
    sec = "correction_arguments"
    dark = r.get(sec, "normalize_dark", "bool", False)
    flat = r.get(sec, "normalize_flat", "bool", False)
    out["flat_dark"] = dark or flat
    if dark != flat:
        only = "normalize_dark" if dark else "normalize_flat"
        notes.append(f"{sec}.{only}: approximate — the Reconstructor "
                     f"{'subtracts the dark only (I - D)' if dark else 'divides by the flat only (I / F)'}"
                     "; teravox normalises with both, (I - D) / (F - D)")
    out["i0"] = "monitor" if r.get(sec, "normalize_i0", "bool", False) else "off"

    if r.get(sec, "normalize_to_unity", "bool", False):
        notes.append(f"{sec}.normalize_to_unity: not supported (dividing each projection by its "
                     "mean); nearest teravox correction: i0 = \"air\" or air = true")
    if r.get(sec, "flatten_images", "bool", False):
        size = r.get(sec, "flatten_size", "int", feature="flatten_images")
        notes.append(f"{sec}.flatten_images: not supported (subtracting a {size or '?'} px "
                     "uniform filter from each projection)")
    if r.get(sec, "i0_correction", "bool", False):
        notes.append(f"{sec}.i0_correction: ignored (the Reconstructor does not use it; "
                     "normalize_i0 is the I0 switch)")

    if r.get(sec, "crop", "bool", False):
        ranges = r.get(sec, "crop_ranges", "ints", feature="crop")
        if ranges is None or len(ranges) != 4:
            raise r.fail(f"{sec}.crop_kwargs.crop_ranges", f"expected [z0, z1, x0, x1], got {shown(ranges)}")
        z0, z1, x0, x1 = ranges
        if min(z0, x0) < 0 or (z1 != -1 and z1 <= z0) or (x1 != -1 and x1 <= x0):
            raise r.fail(f"{sec}.crop_kwargs.crop_ranges",
                         f"expected [z0, z1, x0, x1] with z0 < z1 and x0 < x1 (-1 = end), got {shown(ranges)}")
        out["row_range"] = _compose(*geo["row_range"], z0, z1)
        out["col_range"] = _compose(*geo["col_range"], x0, x1)
        geo["crop_x0"] = x0

    if r.get(sec, "outlier_removal", "bool", False):
        out["outliers"] = True
        dif = r.get(sec, "dif", "num", feature="outlier_removal")
        size = r.get(sec, "size", "int", feature="outlier_removal")
        axis = r.get(sec, "axis", "int", 0, feature="outlier_removal")
        if dif is not None:
            out["outlier_dif"] = abs(dif)   # the GUI uses |dif|
        if size is not None:
            out["outlier_size"] = size
        if axis != 0:
            notes.append(f"{sec}.outlier_removal_kwargs.axis: {axis} not supported; "
                         "teravox filters each projection (axis 0)")

    if r.get(sec, "stripe_removal", "bool", False):
        _map_stripes(r, out, notes)

    phase = r.get(sec, "phase_retrieval", "bool", False)
    before = r.get(sec, "minus_log_before_phase", "bool", False)
    after = r.get(sec, "minus_log_after_phase", "bool", False)
    if phase:
        _map_phase(r, out, notes)
        if before:
            notes.append(f"{sec}.minus_log_before_phase: approximate — teravox applies the "
                         "Paganin filter to the transmission and takes -log after it")
    out["minus_log"] = before or after
    if not (before or after):
        notes.append(f"{sec}.minus_log_before_phase/minus_log_after_phase: both false — the "
                     "Reconstructor then reconstructs without -log, so minus_log = false")


def _map_stripes(r: _Reader, out: dict[str, Any], notes: list[str]) -> None:
    sec = "correction_arguments"
    name = r.get(sec, "stripe_function", "str", "all_stripe")
    short = name.lower().removeprefix("tomopy.").removeprefix("prep.stripe.")
    short = short.removeprefix("remove_")
    key = short if short in STRIPE_METHODS else short.removeprefix("stripe_")
    if key not in STRIPE_METHODS:
        notes.append(f"{sec}.stripe_function: {shown(name)} is not a stripe method teravox knows; "
                     "stripe removal is off")
        return
    method = STRIPE_METHODS[key]
    if method is None:
        notes.append(f"{sec}.stripe_function: {shown(name)} (Titarenko) has no teravox equivalent; "
                     "stripe removal is off — try stripe_recon = \"all\" or \"sorting\"")
        return
    # The GUI removes stripes from the whole, uncropped-in-angle stack: full sinograms,
    # which is teravox's pass-2 stripe removal, not the chunk-dependent pass-1 one.
    out["stripe_recon"] = method
    if key in _STRIPE_APPROX:
        notes.append(f"{sec}.stripe_function: approximate — {shown(name)} mapped to teravox's "
                     f"{shown(method)} stripe removal")
    kwargs = r.section(sec).get("stripe_removal_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise r.fail(f"{sec}.stripe_removal_kwargs", f"expected an object, got {shown(kwargs)}")
    for key_, name_, kind in (("snr", "stripe_snr", "num"), ("la_size", "stripe_la_size", "int"),
                              ("sm_size", "stripe_sm_size", "int")):
        value = r.get(sec, key_, kind, feature="stripe_removal")
        if value is not None:
            out[name_] = value
    size = kwargs.get("size")
    if size is not None:
        # remove_large/dead_stripe: the large-stripe window; sorting/filtering: the small one
        size = _typed(r, f"{sec}.stripe_removal_kwargs.size", size, "int")
        out["stripe_la_size" if key in ("large_stripe", "dead_stripe") else "stripe_sm_size"] = size
    dim = r.get(sec, "dim", "int", 1, feature="stripe_removal")
    if dim != 1:
        notes.append(f"{sec}.stripe_removal_kwargs.dim: 2-D median filtering is not supported; "
                     "teravox uses 1-D windows")
    for extra in sorted(set(kwargs) - {"snr", "la_size", "sm_size", "size", "dim"}):
        if kwargs[extra] is not None:
            notes.append(f"{sec}.stripe_removal_kwargs.{extra}: not supported for "
                         f"{shown(method)}; teravox uses its own value")


def _map_phase(r: _Reader, out: dict[str, Any], notes: list[str]) -> None:
    sec = "correction_arguments"
    out["paganin"] = True
    pixel = r.get(sec, "pixel_size", "num", feature="phase_retrieval")
    dist = r.get(sec, "dist", "num", feature="phase_retrieval")
    energy = r.get(sec, "energy", "num", feature="phase_retrieval")
    alpha = r.get(sec, "alpha", "num", feature="phase_retrieval")
    pad = r.get(sec, "pad", "bool", feature="phase_retrieval")
    # the Reconstructor's lengths are in centimetres (TomoPy's retrieve_phase units)
    if pixel is not None:
        if pixel <= 0:
            raise r.fail(f"{sec}.phase_retrieval_kwargs.pixel_size", f"must be positive, got {pixel}")
        out["pixel_size_m"] = pixel * 1e-2
    if dist is not None:
        out["distance_m"] = dist * 1e-2
    if energy is not None:
        out["energy_kev"] = energy
    if alpha is not None:
        if alpha <= 0:
            raise r.fail(f"{sec}.phase_retrieval_kwargs.alpha", f"must be positive (beta/delta), got {alpha}")
        from teravox.prep.paganin import delta_beta_from_tomopy_alpha

        # TomoPy 1.x's filter 1/(1 + λz|u|²/(4πα)) equals Paganin's with δ/β = 1/(4π²α);
        # TomoPy's 2021 rewrite changed alpha's meaning (see prep/paganin.py)
        out["delta_beta"] = delta_beta_from_tomopy_alpha(alpha)
    if pad is not None:
        out["paganin_pad"] = pad


def _map_recon(r: _Reader, out: dict[str, Any], notes: list[str], geo: dict[str, Any]) -> None:
    sec = "reconstruction_arguments"
    kw = r.section(sec).get("recon_kwargs") or {}
    if not isinstance(kw, dict):
        raise r.fail(f"{sec}.recon_kwargs", f"expected an object, got {shown(kw)}")

    def kwarg(key: str, kind: str) -> Any:
        value = kw.get(key)
        return None if value is None else _typed(r, f"{sec}.recon_kwargs.{key}", value, kind)

    # Where the GUI's image starts on the detector: the Reconstructor's centre is a column
    # of the loaded (slice_hor) and cropped image; teravox's is a detector column.
    offset = geo["col_range"][0] + geo.get("crop_x0", 0)
    center = kwarg("center", "num")
    if r.get(sec, "sino_360_to_180", "bool", False):
        out["half_acquisition"] = "auto"
        old = r.get(sec, "sino_360_to_180_old_center", "num")
        # after the GUI's 360→180 conversion recon_kwargs.center is a column of the stitched
        # sinogram; the axis on the detector is the centre before conversion
        if old is None:
            notes.append(f"{sec}.sino_360_to_180_old_center: missing; the centre is found "
                         "automatically")
            center = None
            out["center"] = "auto"
        else:
            center = old
    if center is not None:
        out["center"] = center + offset

    algorithm = kwarg("algorithm", "str")
    if algorithm:
        out["algorithm"] = algorithm
        if algorithm.lower() not in _FBP_ALGORITHMS:
            # only TomoPy reconstructs with its iterative algorithms
            out["backend"] = "tomopy"
    filt = kwarg("filter_name", "str")
    if filt is not None:
        if filt.lower() in FILTERS:
            out["filter_name"] = FILTERS[filt.lower()]
        else:
            notes.append(f"{sec}.recon_kwargs.filter_name: {shown(filt)} not supported; "
                         f"teravox knows {', '.join(sorted(set(FILTERS)))}; using 'ramp'")
    for key in sorted(set(kw) - {"center", "algorithm", "filter_name", "ncore", "nchunk"}):
        if kw[key] is not None:
            notes.append(f"{sec}.recon_kwargs.{key}: not supported (a TomoPy recon argument "
                         "teravox does not take)")

    pad_on = r.get(sec, "pad", "bool", False)
    if not pad_on:
        out["pad"] = "none"
    else:
        mode = r.get(sec, "mode", "str", "edge", feature="pad")
        npad = r.raw(sec, "npad", "pad")[1]
        if mode in ("edge",):
            out["pad"] = "edge"
        elif mode in ("constant", "zero"):
            out["pad"] = "zero"
        else:
            out["pad"] = "edge"
            notes.append(f"{sec}.pad_kwargs.mode: {shown(mode)} not supported; using 'edge'")
        if npad not in (_MISSING, None, "auto"):
            # the GUI itself always pads a quarter of the width; an explicit npad was hand-written
            out["pad_width_px"] = _typed(r, f"{sec}.pad_kwargs.npad", npad, "int")

    excluded = r.section(sec).get("excluded_proj") or []
    if not isinstance(excluded, list):
        raise r.fail(f"{sec}.excluded_proj", f"expected a list of [from, to] ranges, got {shown(excluded)}")
    p0, _, pstep = geo["proj"]
    ranges = []
    for item in excluded:
        pair = _typed(r, f"{sec}.excluded_proj", item, "ints")
        if len(pair) != 2 or pair[0] < 0 or pair[1] < pair[0]:
            raise r.fail(f"{sec}.excluded_proj", f"expected [from, to] with 0 <= from <= to, got {shown(item)}")
        # GUI indices count loaded projections (slice_proj); teravox's count the file's
        ranges.append([p0 + pair[0] * pstep, p0 + pair[1] * pstep])
    if ranges:
        out["exclude_proj"] = ranges


def _map_post(r: _Reader, out: dict[str, Any], notes: list[str]) -> None:
    sec = "post_recon_process_arguments"
    if r.get(sec, "circ_mask", "bool", False):
        out["circ_mask"] = True
        ratio = r.get(sec, "ratio", "num", feature="circ_mask")
        val = r.get(sec, "val", "num", feature="circ_mask")
        if ratio is not None:
            out["circ_mask_ratio"] = ratio
        if val is not None:
            out["circ_mask_value"] = val

    if r.get(sec, "ring_removal", "bool", False):
        # TomoPy's remove_ring works on reconstructed slices in polar coordinates; so does
        # teravox's "fft" (algotom).  Their parameters do not correspond, and ring_snr /
        # ring_size only steer rings = "sinogram", so none is set here.
        out["rings"] = "fft"
        given = []
        for key in ("rwidth", "thresh", "theta_min"):
            value = r.get(sec, key, "num", feature="ring_removal")
            if value is not None:
                given.append(f"{key} = {value:g}")
        notes.append(
            f"{sec}.ring_removal: approximate — TomoPy's remove_ring (a median filter in polar "
            "coordinates) is replaced by algotom's FFT ring removal (rings = \"fft\")"
            + (f"; {', '.join(given)} ha{'s' if len(given) == 1 else 've'} no counterpart" if given else ""))

    if r.get(sec, "convert", "bool", False):
        dtype = r.get(sec, "dtype", "str", "float16", feature="convert")
        if dtype not in ("float32", "float16", "uint16", "uint8"):
            raise r.fail(f"{sec}.convert_kwargs.dtype",
                         f"expected float32, float16, uint16 or uint8, got {shown(dtype)}")
        out["dtype"] = dtype
        mode = r.get(sec, "mode", "str", "std", feature="convert")
        if mode not in ("std", "minmax", "manual"):
            raise r.fail(f"{sec}.convert_kwargs.mode", f"expected 'std', 'minmax' or 'manual', got {shown(mode)}")
        lo = r.get(sec, "min", "num", feature="convert")
        hi = r.get(sec, "max", "num", feature="convert")
        if dtype.startswith("uint"):
            if lo is not None and hi is not None:
                if lo >= hi:
                    raise r.fail(f"{sec}.convert_kwargs.min", f"min ({lo:g}) must be below max ({hi:g})")
                # replaying a .tori, the GUI itself reuses the stored min/max in every mode
                out["dtype_range"] = [lo, hi]
                if mode != "manual":
                    notes.append(f"{sec}.convert_kwargs.mode: approximate — {shown(mode)} limits were "
                                 "computed by the GUI on one displayed slice; reused as dtype_range")
            else:
                notes.append(f"{sec}.convert_kwargs.mode: approximate — no stored min/max; teravox "
                             "sets the range from percentiles of sample slices (dtype_percentiles)"
                             f" instead of the GUI's {shown(mode)} rule")

    if r.get(sec, "downscale", "bool", False):
        factors = r.get(sec, "down_scale_factors", "ints", [2], feature="downscale")
        if not factors or min(factors) < 2:
            raise r.fail(f"{sec}.downscale_kwargs.down_scale_factors",
                         f"expected factors of at least 2, got {shown(factors)}")
        levels = math.ceil(math.log2(max(factors)))
        out["pyramid"] = levels
        exact = [2 ** (i + 1) for i in range(levels)]
        if sorted(factors) != exact:
            notes.append(f"{sec}.downscale_kwargs.down_scale_factors: approximate — {factors} "
                         f"becomes a pyramid of {levels} level(s) ({', '.join(f'{f}x' for f in exact)})")
        if r.raw(sec, "chunks", "downscale")[1] not in (_MISSING, None):
            notes.append(f"{sec}.downscale_kwargs.chunks: ignored; teravox chooses the HDF5 chunks")

    crop = r.section(sec).get("crop")
    if crop:
        notes.append(f"{sec}.crop: cropping the reconstructed volume is not supported; "
                     "use row_range / col_range to reconstruct less")


def _unknown_keys(r: _Reader, notes: list[str]) -> None:
    for name, value in r.tori.items():
        if name not in _KNOWN:
            notes.append(f"{name}: unknown section, ignored")
            continue
        if not isinstance(value, dict):
            continue
        for key in value:
            if key not in _KNOWN[name]:
                notes.append(f"{name}.{key}: unknown key, ignored")


def tori_to_mapping(tori: dict[str, Any], source: str = ".tori") -> tuple[dict[str, Any], list[str]]:
    """Map a parsed ``.tori`` onto teravox parameter names.

    Returns (flat mapping of teravox parameter → value, notes), each note
    ``"section.key: why"`` for a key teravox does not support or only approximates.
    Raises ParamError (one line, naming ``source`` and the key) on a wrong type.
    """
    if not isinstance(tori, dict):
        raise ParamError(f"{source}: expected a .tori object with sections {', '.join(SECTIONS)}")
    r = _Reader(tori, source)
    out: dict[str, Any] = {}
    notes: list[str] = []
    geo = _map_files(r, out, notes)
    _map_corrections(r, out, notes, geo)
    _map_recon(r, out, notes, geo)
    _map_post(r, out, notes)
    _unknown_keys(r, notes)
    return out, notes


def tori_data_file(tori: dict[str, Any]) -> str | None:
    """The scan the ``.tori`` was made for (``file_definitions.data_file``), or None."""
    value = (tori.get("file_definitions") or {}).get("data_file") if isinstance(tori, dict) else None
    return value if isinstance(value, str) and value else None


def is_tori(mapping: dict[str, Any]) -> bool:
    """True when a parsed JSON object looks like a .tori (has one of its sections)."""
    return isinstance(mapping, dict) and any(s in mapping for s in SECTIONS)


def read_tori(path: str | Path) -> dict[str, Any]:
    """The parsed JSON of a ``.tori`` file; ParamError naming the file if it is not one."""
    from teravox.config.documents import read_document

    path = Path(path)
    try:
        data = read_document(path)
    except OSError as exc:
        raise ParamError(f"{path}: cannot read .tori file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ParamError(f"{path}: not a .tori file: {exc}") from None
    if not is_tori(data):
        raise ParamError(f"{path}: not a .tori file: expected the sections {', '.join(SECTIONS)}")
    return data


def load_tori(path: str | Path) -> tuple[Params, list[str]]:
    """Read a ``.tori`` file into validated Params and the list of unsupported/approximate keys."""
    source = str(path)
    mapping, notes = tori_to_mapping(read_tori(path), source)
    return from_mapping(mapping, source=source), notes
