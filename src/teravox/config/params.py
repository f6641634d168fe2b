"""The one typed parameter set that drives every entry point.

CLI flags (``--center 1024.5``), parameter files (JSON/YAML, flat keys or keys
grouped by section), ``.tori`` files and Nextflow ``params`` all end up in a
:class:`Params`.  Names carry their unit where there is one (``_m`` metres,
``_kev`` kilo-electronvolts, ``_deg`` degrees, ``_px`` pixels); everything is SI
internally except energy (keV, the unit every beamline uses).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from teravox.errors import ParamError, shown


def _p(default: Any, help: str, section: str, **kw: Any) -> Any:
    """A parameter: default, one-line help and the section it is listed under."""
    meta = {"help": help, "section": section, **kw}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


StripeMethod = Literal["off", "sorting", "filtering", "fitting", "all", "wavelet-fft"]
RingMethod = Literal["off", "fft", "wavelet-fft", "sinogram"]
Backend = Literal["auto", "fourier", "fourier-gpu", "tomopy", "tomocupy"]
FilterName = Literal["ramp", "shepp-logan", "cosine", "hann", "hamming", "parzen"]
OutDtype = Literal["float32", "float16", "uint16", "uint8"]
VolumeFormat = Literal["hdf5", "zarr", "tiff"]


@dataclass
class Params:
    """Every teravox parameter, with its default.  See ``teravox params --help``."""

    # -- input -------------------------------------------------------------------------
    data_path: str | None = _p(
        None, "HDF5 path of the frames: the projections, or every frame with an image key (default: "
              "/exchange/data, else found through the NeXus attributes)", "input")
    image_key_path: str | None = _p(
        None, "HDF5 path of the image keys (0 projection, 1 flat, 2 dark; default: found beside the frames)", "input")
    angles_path: str | None = _p(
        None, "HDF5 path of the rotation angles, one per frame or per projection (default: /exchange/theta, "
              "else found through the NeXus attributes; in angles_file when one is given)", "input")
    angles_file: str | None = _p(
        None, "file holding the rotation angles: text (one per projection) or HDF5 (at angles_path)", "input")
    angles_unit: Literal["deg", "rad"] | None = _p(
        None, "unit of the angles, needed when the file gives none (overrides a units attribute)", "input")
    monitor_path: str | None = _p(
        None, "HDF5 path of the beam monitor (I0) series, one value per frame or per projection", "input")
    flat_file: str | None = _p(None, "file holding the flat fields: HDF5, a multi-page TIFF, or a folder "
                                     "(or glob pattern) of TIFF files (default: the scan)", "input")
    flat_path: str | None = _p(None, "HDF5 path of the flat fields (default: /exchange/data_white, else the "
                                     "frames of image key 1)", "input")
    dark_file: str | None = _p(None, "file holding the dark fields, as flat_file (default: the scan)", "input")
    dark_path: str | None = _p(None, "HDF5 path of the dark fields (default: /exchange/data_dark, else the "
                                     "frames of image key 2)", "input")
    theta_source: Literal["file", "calc"] = _p(
        "file", "angles from the file ('file') or equally spaced over theta_start..theta_end ('calc')", "input")
    theta_start_deg: float | None = _p(None, "first angle in degrees (theta_source=calc, or no angles in the file)", "input")
    theta_end_deg: float | None = _p(None, "last angle in degrees, exclusive (theta_source=calc, or no angles in the file)", "input")
    proj_range: list[int] | None = _p(None, "projections to use as [start, stop, step]; -1 = end", "input")
    row_range: list[int] | None = _p(None, "detector rows to reconstruct as [start, stop]; -1 = end", "input")
    col_range: list[int] | None = _p(None, "detector columns to use as [start, stop]; -1 = end", "input")
    exclude_proj: list[list[int]] = _p([], "projection index ranges (indices in the file) to leave out, as [[from, to], ...] (to exclusive)", "input")
    energy_kev: float | None = _p(None, "beam energy in keV (overrides the file)", "input")
    distance_m: float | None = _p(None, "sample-detector propagation distance in metres (overrides the file)", "input")
    pixel_size_m: float | None = _p(None, "effective pixel size in metres (overrides the file)", "input")

    # -- pass 1: projection corrections -------------------------------------------------
    flat_dark: bool = _p(True, "flat/dark normalisation (I - D) / (F - D)", "prep")
    flat_method: Literal["mean", "median"] = _p("mean", "how flats are combined", "prep")
    dark_method: Literal["mean", "median"] = _p("mean", "how darks are combined", "prep")
    i0: Literal["off", "monitor", "air"] = _p(
        "off", "I0/top-up correction: divide by the beam monitor series, or by an air region's mean", "prep")
    i0_air_cols: list[int] | None = _p(None, "air region for i0=air as [start, stop] columns (default: found at the edges)", "prep")
    outliers: bool = _p(False, "zinger (outlier) removal", "prep")
    outlier_dif: float = _p(0.1, "outlier threshold: replace a pixel that differs from its median by more than this (normalised units)", "prep")
    outlier_size: int = _p(3, "median filter size in pixels for outlier removal", "prep")
    stripe_prep: StripeMethod = _p("off", "stripe removal on the chunk's partial sinograms (chunk-dependent!)", "prep")
    air: bool = _p(False, "air correction: divide each row by the air at both edges", "prep")
    air_cols: int = _p(20, "width in pixels of the air region at each edge for the air correction", "prep")
    paganin: bool = _p(False, "Paganin single-distance phase retrieval", "prep")
    delta_beta: float = _p(1000.0, "delta/beta ratio for Paganin (the .tori 'alpha' is its inverse)", "prep")
    paganin_pad: bool = _p(True, "pad projections before the Paganin filter so nothing wraps around", "prep")

    # -- pass 2: sinograms and reconstruction --------------------------------------------
    minus_log: bool = _p(True, "take -log of the normalised projections (skipped when pass 1 already did)", "recon")
    half_acquisition: Literal["off", "auto", "left", "right"] = _p(
        "off", "360° scan with the axis near one edge: convert to 180° ('auto' finds the side)", "recon")
    pad: Literal["none", "edge", "zero"] = _p("edge", "padding of the detector width before filtering", "recon")
    pad_width_px: int | None = _p(None, "pixels of padding on each side (default: a quarter of the width)", "recon")
    stripe_recon: StripeMethod = _p("off", "stripe removal on full sinograms", "recon")
    stripe_snr: float = _p(3.0, "stripe detection ratio (algotom snr)", "recon")
    stripe_la_size: int = _p(61, "window of the large-stripe filter in pixels", "recon")
    stripe_sm_size: int = _p(21, "window of the small-stripe filter in pixels", "recon")
    center: float | Literal["auto"] | None = _p(
        None, "rotation axis as a raw detector column in pixels (0-based, pixel i centred at i, independent of col_range; with a tilt, at the detector's middle row): a float, 'auto', or None = from the file, else automatic", "recon")
    center_search_px: float | None = _p(None, "half-width in pixels of the automatic centre search around the detector's middle (default: the middle 90 % of the detector)", "recon")
    center_min_confidence: float = _p(0.2, "the run stops when the automatic centre's confidence (0..1) is below this, and suggests a centre sweep", "recon")
    center_sweep: str | None = _p(None, "FROM:TO:STEP: reconstruct one row at these centres (raw detector columns), write the sweep page <scan>_center_sweep.pdf/.png and stop, instead of reconstructing the volume", "recon")
    tilt_deg: float | None = _p(None, "rotation-axis tilt in the detector plane, degrees (positive: the centre moves to larger columns at lower rows); default: estimated with an automatic centre and corrected when significant, 0 with a given centre", "recon")
    backend: Backend = _p("auto", "reconstruction backend", "recon")
    algorithm: str = _p("fbp", "algorithm for tomopy/tomocupy backends (gridrec, fbp, sirt, ...)", "recon")
    filter_name: FilterName = _p("ramp", "reconstruction filter", "recon")
    fourier_eps: float = _p(1e-5, "relative tolerance of the fourier backends' single-precision NUFFT (5e-7 or more)", "recon")
    fourier_upsampfac: float = _p(1.25, "NUFFT upsampling factor of the fourier-gpu backend (1.25 or 2.0; the CPU backend chooses its own for fourier_eps)", "recon")
    threads: int = _p(0, "threads per job (0 = all cores the job was given)", "recon")

    # -- post-processing ------------------------------------------------------------------
    rings: RingMethod = _p("off", "ring removal on reconstructed slices (fft, wavelet-fft) or in the sinogram", "post")
    ring_snr: float = _p(3.0, "ring detection ratio (rings=sinogram)", "post")
    ring_size: int = _p(31, "ring filter window in pixels (rings=sinogram)", "post")
    circ_mask: bool = _p(False, "set everything outside a circle to circ_mask_value", "post")
    circ_mask_ratio: float = _p(1.0, "radius of the circular mask as a fraction of half the slice width", "post")
    circ_mask_value: float = _p(0.0, "value outside the circular mask", "post")
    dtype: OutDtype = _p("float32", "output data type", "post")
    dtype_range: list[float] | None = _p(None, "[min, max] mapped onto the integer range (default: from sample slices)", "post")
    dtype_percentiles: list[float] = _p([0.1, 99.9], "percentiles of sample slices that set the integer range", "post")

    # -- chunking and resources -----------------------------------------------------------
    proj_chunks: int | None = _p(None, "number of projection chunks k (default: from target_job_gb)", "chunks")
    sino_chunks: int | None = _p(None, "number of sinogram chunks j (default: from target_job_gb)", "chunks")
    target_job_gb: float = _p(8.0, "target raw size of one chunk job in GiB, used when k or j is not given", "chunks")
    memory: str = _p("4G", "memory budget per job (e.g. 4G, 512M)", "chunks")
    gpu_memory: str | None = _p(None, "GPU memory per reconstruct job of the fourier-gpu backend (e.g. 80G; default: the device's, when the plan is made where CuPy sees one, else 16G)", "chunks")
    proj_subchunk_rows: int | None = _p(None, "detector rows per pass-1 subchunk (default: from memory)", "chunks")
    sino_subchunk_rows: int | None = _p(None, "sinograms per pass-2 subchunk (default: from memory)", "chunks")

    # -- output ---------------------------------------------------------------------------
    format: list[VolumeFormat] = _p(
        ["hdf5"], "volume formats, one or several (e.g. zarr,tiff): hdf5 (DXchange <scan>_recon.h5), "
        "zarr (OME-Zarr <scan>_recon.zarr, multiscale), tiff (<scan>_recon_tiff/, one file per slice)", "output")
    tiff_layout: Literal["slices", "bigtiff"] = _p(
        "slices", "format tiff: one file per slice ('slices', written by the reconstruct jobs) "
        "or one <scan>_recon.tif BigTIFF ('bigtiff', assembled by merge)", "output")
    merge: Literal["copy", "virtual"] = _p("copy", "HDF5 volume: merge chunks physically ('copy') or as a virtual dataset", "output")
    compression: Literal["none", "gzip", "lzf"] = _p("none", "compression of the merged volume (HDF5; zarr: none or gzip)", "output")
    pyramid: int = _p(0, "number of downsampled levels (2x, 4x, ...) written beside the volume (HDF5, OME-Zarr)", "output")
    report_slow_axis_step: int = _p(0, "sub-sampling of the slow axis in the report (0 = automatic)", "output")
    keep_intermediates: bool = _p(False, "keep chunk files and the virtual projection file", "output")

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Params:
        return from_mapping({**self.to_dict(), **changes})

    def memory_bytes(self) -> int:
        return parse_bytes(self.memory)


SECTIONS = ("input", "prep", "recon", "post", "chunks", "output")
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Params)}
_HINTS = typing.get_type_hints(Params)


#: Largest size parse_bytes accepts (1 EiB): beyond it a "size" is a typo.
MAX_BYTES = 2**60


def parse_bytes(text: str | int, name: str = "memory") -> int:
    """'4G' / '512M' / '1.5GB' / 1024 → bytes (binary units), at least 1 and at most 1 EiB;
    ``name`` for the error."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)i?[bB]?\s*", str(text))
        if not m:
            raise ParamError(f"{name}: expected a size such as 4G or 512M, got {shown(text)}")
        scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
        number = float(m.group(1)) if len(m.group(1)) <= 30 else float("inf")
        value = int(number * scale) if number * scale <= MAX_BYTES else MAX_BYTES + 1
    if not 1 <= value <= MAX_BYTES:
        raise ParamError(f"{name}: {shown(text)} is not a usable size (expected 1 byte to 1 EiB, e.g. 4G or 512M)")
    return value


#: Largest integer parameter (chunk counts, sizes in pixels): beyond it a value is a typo.
MAX_INT = 2**40
#: Longest string parameter (paths, names).
MAX_STR = 4096
#: Float parameters that may be NaN on purpose (the value outside the circular mask).
NAN_ALLOWED = frozenset({"circ_mask_value"})


#: most trial centres one sweep reconstructs
MAX_SWEEP = 201


def parse_sweep(text: str, name: str = "center_sweep") -> list[float]:
    """'FROM:TO:STEP' (pixels, TO included when on the grid) → the trial centres."""
    parts = str(text).split(":")
    try:
        start, stop, step = (float(x) for x in parts)
    except ValueError:
        raise ParamError(f"{name}: expected FROM:TO:STEP in pixels, e.g. 1010:1030:0.5; got {text!r}") from None
    if not (step > 0 and stop > start):
        raise ParamError(f"{name}: expected FROM < TO and STEP > 0, got {text!r}")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_SWEEP:
        raise ParamError(f"{name}: {text!r} asks for {count} centres; at most {MAX_SWEEP} (use a larger step)")
    return [round(start + i * step, 6) for i in range(count)]


def _check(name: str, hint: Any, value: Any) -> Any:
    """Coerce ``value`` to the annotated type or raise ParamError naming ``name``."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check(name, opt, value)
            except ParamError as exc:
                errors.append(str(exc))
        raise ParamError(f"{name}: {shown(value)} is not a valid value ({'; or '.join(errors)})")
    if origin is Literal:
        choices = get_args(hint)
        if value in choices:
            return value
        raise ParamError(f"{name}: expected one of {', '.join(map(str, choices))}; got {shown(value)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{name}: expected a list, got {shown(value)}")
        (inner,) = get_args(hint)
        return [_check(name, inner, v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ParamError(f"{name}: expected true or false, got {shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise ParamError(f"{name}: {shown(value)} is out of range (at most {MAX_INT} in size)")
            return value
        raise ParamError(f"{name}: expected an integer, got {shown(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number) and not (name in NAN_ALLOWED and math.isnan(number)):
                raise ParamError(f"{name}: expected a finite number, got {shown(value)}")
            return number
        raise ParamError(f"{name}: expected a number, got {shown(value)}")
    if hint is str:
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise ParamError(f"{name}: a string of {len(value)} characters is too long (at most {MAX_STR})")
            return value
        raise ParamError(f"{name}: expected a string, got {shown(value)}")
    raise TypeError(f"unsupported annotation {hint!r} for {name}")


def _flatten(mapping: dict[str, Any]) -> dict[str, Any]:
    """Accept ``{"recon": {"center": 3}}`` as well as ``{"center": 3}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key.replace("-", "_")] = value
    return flat


def from_mapping(mapping: dict[str, Any], source: str = "parameters") -> Params:
    """Build Params from a (possibly sectioned) mapping; unknown keys and wrong types are errors."""
    flat = _flatten(mapping)
    unknown = sorted(set(flat) - set(FIELDS))
    if unknown:
        raise ParamError(f"{source}: unknown parameter(s) {', '.join(unknown)}")
    values = {}
    for name, value in flat.items():
        try:
            values[name] = _check(name, _HINTS[name], value)
        except ParamError as exc:
            raise ParamError(f"{source}: {exc}") from None
    params = Params(**values)
    validate(params, source)
    return params


#: Lower bounds of numeric parameters: at least 1, at least 0, or strictly positive.
AT_LEAST_ONE = ("proj_chunks", "sino_chunks", "proj_subchunk_rows", "sino_subchunk_rows", "outlier_size",
                "air_cols", "stripe_la_size", "stripe_sm_size", "ring_size")
AT_LEAST_ZERO = ("pad_width_px", "threads", "pyramid", "report_slow_axis_step", "outlier_dif")
POSITIVE = ("delta_beta", "target_job_gb", "energy_kev", "distance_m", "pixel_size_m",
            "stripe_snr", "ring_snr", "center_search_px", "fourier_eps")


def validate(p: Params, source: str = "parameters") -> None:
    """Ranges and cross-field checks that a type annotation cannot express (finite numbers
    are already checked)."""
    parse_bytes(p.memory)
    if p.gpu_memory is not None:
        parse_bytes(p.gpu_memory, "gpu_memory")
    for names, ok, what in ((AT_LEAST_ONE, lambda v: v >= 1, "at least 1"),
                            (AT_LEAST_ZERO, lambda v: v >= 0, "at least 0"),
                            (POSITIVE, lambda v: v > 0, "positive")):
        for name in names:
            value = getattr(p, name)
            if value is not None and not ok(value):
                raise ParamError(f"{source}: {name} must be {what}, got {value}")
    if not 5e-7 <= p.fourier_eps < 1:
        # the NUFFTs run in single precision: ducc0's kernels reach 4.5e-7 at best
        raise ParamError(f"{source}: fourier_eps is a relative tolerance in [5e-7, 1) (e.g. 1e-5), "
                         f"got {p.fourier_eps}")
    if p.dtype_range is not None and (len(p.dtype_range) != 2 or p.dtype_range[0] >= p.dtype_range[1]):
        raise ParamError(f"{source}: dtype_range must be [min, max] with min < max, got {shown(p.dtype_range)}")
    lo_hi = p.dtype_percentiles
    if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1] <= 100:
        raise ParamError(f"{source}: dtype_percentiles must be [low, high] with 0 <= low < high <= 100, "
                         f"got {shown(lo_hi)}")
    if not 0 < p.circ_mask_ratio <= 1.5:
        raise ParamError(f"{source}: circ_mask_ratio must be in (0, 1.5], got {p.circ_mask_ratio}")
    if p.fourier_upsampfac not in (1.25, 2.0):
        raise ParamError(f"{source}: fourier_upsampfac must be 1.25 or 2.0, got {p.fourier_upsampfac}")
    if not 0 <= p.center_min_confidence <= 1:
        raise ParamError(f"{source}: center_min_confidence must be in [0, 1], got {p.center_min_confidence}")
    _validate_output(p, source)


def _validate_output(p: Params, source: str) -> None:
    """Formats and the output options each of them can honour."""
    if not p.format or len(set(p.format)) != len(p.format):
        raise ParamError(f"{source}: format must list hdf5, zarr and/or tiff, each once; got {p.format}")
    if "zarr" in p.format and p.compression == "lzf":
        raise ParamError(f"{source}: compression lzf exists only in HDF5; with format zarr use none or gzip")
    if "tiff" in p.format and p.dtype == "float16":
        raise ParamError(f"{source}: format tiff: ImageJ/Fiji cannot read float16; use dtype float32, uint16 or uint8")


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML parameter file into a mapping (not yet validated)."""
    from teravox.config.documents import read_document

    path = Path(path)
    try:
        data = read_document(path)
    except OSError as exc:
        raise ParamError(f"{path}: cannot read parameter file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ParamError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of parameter names to values")
    return data


def load(path: str | Path) -> Params:
    """Params from a JSON/YAML file."""
    return from_mapping(load_file(path), source=str(path))


def parse_cli_value(name: str, text: str) -> Any:
    """Turn a CLI string into the JSON-ish value the annotation expects."""
    hint = _HINTS[name]
    literal_choices = [c for a in (get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else (hint,))
                       if get_origin(a) is Literal for c in get_args(a)]
    if text in literal_choices:  # e.g. --pad none is the choice "none", not None
        return text
    if text.lower() in ("none", "null"):
        return None
    args = get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if bool in args:
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
    if any(get_origin(a) is list for a in args):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return [json.loads(x) if re.fullmatch(r"-?[0-9.eE+-]+", x) else x for x in text.split(",")]
    if int in args or float in args:
        try:
            return int(text) if re.fullmatch(r"-?\d+", text) and int in args else float(text)
        except ValueError:
            pass
    return text


def _help_text(text: str, default: Any) -> str:
    """A flag's help with its default, unless the text already says it or there is none."""
    if default is None or "default" in text.lower():
        return text
    if isinstance(default, bool):
        default = "on" if default else "off"
    return f"{text} (default: {default})"


def add_arguments(parser: Any, sections: tuple[str, ...] = SECTIONS) -> None:
    """Add one ``--flag`` per parameter to an argparse parser, grouped by section."""
    for section in sections:
        group = parser.add_argument_group(f"{section} parameters")
        for name, f in FIELDS.items():
            if f.metadata["section"] != section:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            flag = "--" + name.replace("_", "-")
            hint = _HINTS[name]
            choices = [c for a in (get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else (hint,))
                       if get_origin(a) is Literal for c in get_args(a)]
            others = [a for a in (get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else (hint,))
                      if get_origin(a) is not Literal and a is not type(None)]
            if choices and others:  # e.g. center: a number or 'auto'
                metavar = "NUMBER|" + "|".join(map(str, choices))
            elif choices:
                metavar = "{" + ",".join(map(str, choices)) + "}"
            else:
                metavar = "VALUE"
            extra = {"nargs": "?", "const": "true", "metavar": "BOOL"} if hint is bool else {"metavar": metavar}
            group.add_argument(flag, dest=f"param_{name}", default=None,
                               help=_help_text(f.metadata["help"], default).replace("%", "%%"), **extra)


def from_args(args: Any, base: Params | dict[str, Any] | None = None) -> Params:
    """Params = defaults < parameter file (``base``) < flags given on the command line."""
    mapping = base.to_dict() if isinstance(base, Params) else dict(base or {})
    for name in FIELDS:
        text = getattr(args, f"param_{name}", None)
        if text is not None:
            mapping[name] = parse_cli_value(name, text)
    return from_mapping(mapping, source="command line")
