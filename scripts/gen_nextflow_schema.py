#!/usr/bin/env python3
"""Generate the Nextflow parameters of teravox from ``teravox.config.params.FIELDS``.

Writes two things so that they never drift from the Python parameter set:

* ``nextflow_schema.json`` — the nf-core style parameter schema (JSON Schema draft
  2020-12): the pipeline's own options (input, output, containers) and one group per
  teravox parameter section;
* the ``params { ... }`` block of ``nextflow.config``, between the lines
  ``// BEGIN GENERATED PARAMS`` and ``// END GENERATED PARAMS``.

Usage::

    python scripts/gen_nextflow_schema.py           # rewrite both files
    python scripts/gen_nextflow_schema.py --check   # exit 1 when either is out of date

``tests/test_nextflow.py`` runs the check.  Run this script after adding, removing or
changing a parameter in ``src/teravox/config/params.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "nextflow_schema.json"
CONFIG = ROOT / "nextflow.config"
BEGIN = "// BEGIN GENERATED PARAMS"
END = "// END GENERATED PARAMS"

sys.path.insert(0, str(ROOT / "src"))  # works from a source tree that is not installed

from teravox import __version__  # noqa: E402
from teravox.config.params import FIELDS, SECTIONS, Params  # noqa: E402

#: Parameters of the pipeline itself (not of teravox): name -> schema property.
#: "groovy" gives the default as written in nextflow.config where it is not a plain literal.
PIPELINE_GROUPS: dict[str, dict[str, Any]] = {
    "input_output_options": {
        "title": "Input/output options",
        "description": "The scan to reconstruct and where the results go.",
        "fa_icon": "fas fa-terminal",
        "properties": {
            "scan": {
                "type": "string",
                "format": "path",
                "description": "The scan to reconstruct: a DXchange or NeXus (NXtomo) HDF5 file, "
                               "a multi-page TIFF, or a folder of TIFF projections.",
                "help_text": "Give `--scan`, `--scan_sheet` or (for a try-out) `--synth`. The "
                             "outputs are named after the file: `<scan>_recon.h5`, "
                             "`<scan>_report.pdf`.",
                "fa_icon": "fas fa-file",
            },
            "scan_sheet": {
                "type": "string",
                "format": "file-path",
                "description": "A scan sheet (CSV/JSON/YAML) of the offset scans of one multi-scan "
                               "acquisition, stitched (passed to `teravox plan --scan-sheet`).",
                "help_text": "The files it names must be readable from the compute nodes "
                             "(absolute paths on a shared filesystem that the container binds). "
                             "The outputs are named after the sheet.",
                "fa_icon": "fas fa-file-csv",
            },
            "params_file": {
                "type": "string",
                "format": "file-path",
                "pattern": "^\\S+\\.(json|ya?ml)$",
                "description": "A teravox parameter file (JSON or YAML, flat or grouped by "
                               "section), passed to `teravox plan --params`.",
                "help_text": "Parameters given on the Nextflow command line override the file's "
                             "when they differ from the defaults. Not to be confused with "
                             "Nextflow's own `-params-file`, which takes flat Nextflow params.",
                "fa_icon": "fas fa-sliders-h",
            },
            "tori": {
                "type": "string",
                "format": "file-path",
                "pattern": "^\\S+\\.tori$",
                "description": "Settings saved by DanMAX's Reconstructor GUI (`.tori`), passed "
                               "to `teravox plan --tori`.",
                "fa_icon": "fas fa-file-import",
            },
            "outdir": {
                "type": "string",
                "format": "directory-path",
                "default": "results",
                "description": "Where the volume, the report, the plan and the pipeline "
                               "information are published (one folder per scan).",
                "fa_icon": "fas fa-folder-open",
            },
            "publish_dir_mode": {
                "type": "string",
                "default": "copy",
                "enum": ["symlink", "rellink", "link", "copy", "copyNoFollow", "move"],
                "description": "How outputs are published to `--outdir` ('link' makes hard "
                               "links: instant for terabyte volumes when outdir and the work "
                               "directory share a filesystem).",
                "fa_icon": "fas fa-copy",
            },
            "synth": {
                "type": "boolean",
                "default": False,
                "description": "Reconstruct a small synthetic scan made by `teravox synth` "
                               "instead of `--scan` (the `test` profile sets it).",
                "fa_icon": "fas fa-flask",
            },
        },
    },
    "container_options": {
        "title": "Container options",
        "description": "Apptainer images (used by the `apptainer` profile; see "
                       "containers/README.md).",
        "fa_icon": "fab fa-docker",
        "properties": {
            "container_cpu": {
                "type": "string",
                "default": "${projectDir}/containers/teravox-cpu-" + __version__ + ".sif",
                "groovy": '"${projectDir}/containers/teravox-cpu-' + __version__ + '.sif"',
                "description": "Apptainer image of every process (a .sif path or an "
                               "oras:// / docker:// URI), built from containers/cpu.def.",
                "fa_icon": "fas fa-box",
            },
            "container_cuda": {
                "type": "string",
                "default": "${projectDir}/containers/teravox-cuda-" + __version__ + ".sif",
                "groovy": '"${projectDir}/containers/teravox-cuda-' + __version__ + '.sif"',
                "description": "Apptainer image of the GPU processes (`gpu` profile), built "
                               "from containers/cuda.def.",
                "fa_icon": "fas fa-box",
            },
        },
    },
}

SECTION_TITLES = {
    "input": ("Scan input", "Where the data sit in the files, angles, ranges, instrument values "
                            "(teravox reads them from the file where present).", "fas fa-file-import"),
    "prep": ("Pass 1: projection corrections", "Flat/dark, I0, outliers, stripes, air, "
             "Paganin phase retrieval (run on each projection chunk).", "fas fa-magic"),
    "recon": ("Pass 2: sinograms and reconstruction", "-log, half acquisition, padding, "
              "stripes, rotation centre, backend (run on each sinogram chunk).", "fas fa-cube"),
    "post": ("Post-processing", "Rings, circular mask, output data type.", "fas fa-paint-brush"),
    "chunks": ("Chunking and resources", "How the scan is cut into jobs and the memory budget of "
               "one job (`memory` also sizes the SLURM jobs).", "fas fa-th"),
    "output": ("Output", "Merging, compression, pyramid, report, intermediates.", "fas fa-save"),
}

HINTS = typing.get_type_hints(Params)


# ------------------------------------------------------------------------------------------
# types


def _unwrap(hint: Any) -> tuple[list[Any], bool]:
    """The non-None alternatives of a hint, and whether None is allowed."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = list(get_args(hint))
        optional = type(None) in args
        return [a for a in args if a is not type(None)], optional
    return [hint], False


def _json_type(hint: Any) -> dict[str, Any]:
    """JSON-schema type keywords for one (non-None) alternative."""
    origin = get_origin(hint)
    if origin is Literal:
        choices = list(get_args(hint))
        kinds = sorted({_json_type(type(c))["type"] for c in choices})
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": choices}
    if origin is list:
        (inner,) = get_args(hint)
        return {"type": "array", "items": _json_type(inner)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    raise TypeError(f"unsupported annotation {hint!r}")


def field_default(name: str) -> Any:
    f = FIELDS[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def teravox_property(name: str) -> dict[str, Any]:
    f = FIELDS[name]
    alternatives, _optional = _unwrap(HINTS[name])
    kinds = [_json_type(a) for a in alternatives]
    prop: dict[str, Any] = {}
    if len(kinds) == 1:
        prop.update(kinds[0])
    else:  # e.g. center: a number or 'auto'
        types_ = []
        enum: list[Any] = []
        for k in kinds:
            t = k["type"]
            types_ += t if isinstance(t, list) else [t]
            enum += k.get("enum", [])
        prop["type"] = sorted(set(types_))
        if enum:
            prop["examples"] = enum
    if prop.get("type") == "array":
        # On the command line a list arrives as text: '[0, -1, 2]' or '0,-1,2'.
        prop["type"] = ["array", "string"]
    if name in ("flat_file", "dark_file"):
        prop["format"] = "path"  # an HDF5 or multi-page TIFF file, or a folder of TIFFs
    elif name.endswith("_file"):
        prop["format"] = "file-path"
    prop["description"] = f.metadata["help"]
    default = field_default(name)
    if default is not None:
        prop["default"] = default
    prop["x-teravox"] = True  # passed to `teravox plan` as --<name> (see main.nf)
    return prop


# ------------------------------------------------------------------------------------------
# schema


def build_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for key, group in PIPELINE_GROUPS.items():
        props = {n: {k: v for k, v in p.items() if k != "groovy"}
                 for n, p in group["properties"].items()}
        defs[key] = {"title": group["title"], "type": "object", "fa_icon": group["fa_icon"],
                     "description": group["description"], "properties": props}
    for section in SECTIONS:
        title, description, icon = SECTION_TITLES[section]
        props = {n: teravox_property(n) for n, f in FIELDS.items()
                 if f.metadata["section"] == section}
        defs[f"teravox_{section}"] = {"title": title, "type": "object", "fa_icon": icon,
                                      "description": description, "properties": props}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://raw.githubusercontent.com/teravox/teravox/main/nextflow_schema.json",
        "title": "teravox pipeline parameters",
        "description": "Chunked reconstruction of synchrotron parallel-beam X-ray tomography "
                       "scans. Generated from teravox.config.params by "
                       "scripts/gen_nextflow_schema.py: do not edit by hand.",
        "type": "object",
        "$defs": defs,
        "allOf": [{"$ref": f"#/$defs/{key}"} for key in defs],
    }


# ------------------------------------------------------------------------------------------
# nextflow.config params block


def groovy_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(groovy_literal(v) for v in value) + "]"
    raise TypeError(f"no Groovy literal for {value!r}")


def build_params_block() -> str:
    width = max(len(n) for n in [*FIELDS, *(p for g in PIPELINE_GROUPS.values()
                                           for p in g["properties"])])
    lines = [BEGIN + " -- scripts/gen_nextflow_schema.py writes this block from",
             "// teravox.config.params.FIELDS; edit params.py and rerun it, not this block.",
             "params {"]
    for group in PIPELINE_GROUPS.values():
        lines.append(f"    // -- {group['title']}")
        for name, prop in group["properties"].items():
            value = prop.get("groovy") or groovy_literal(prop.get("default"))
            lines.append(f"    {name:<{width}} = {value}")
        lines.append("")
    lines.append("    // -- teravox parameters: passed to `teravox plan` when they differ from")
    lines.append("    //    these defaults (see main.nf); `teravox params` describes each one")
    for section in SECTIONS:
        title = SECTION_TITLES[section][0]
        lines.append(f"    // {section}: {title}")
        for name, f in FIELDS.items():
            if f.metadata["section"] == section:
                lines.append(f"    {name:<{width}} = {groovy_literal(field_default(name))}")
    lines.append("}")
    lines.append(END)
    return "\n".join(lines)


def render_config(text: str) -> str:
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < 0 or stop < start:
        raise SystemExit(f"{CONFIG}: markers '{BEGIN}' ... '{END}' not found")
    return text[:start] + build_params_block() + text[stop + len(END):]


def render_schema() -> str:
    return json.dumps(build_schema(), indent=4, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    outputs = {SCHEMA: render_schema(), CONFIG: render_config(CONFIG.read_text())}
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python scripts/gen_nextflow_schema.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(outputs[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
