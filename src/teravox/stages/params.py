"""``teravox params``: list every parameter, or check a parameter / ``.tori`` file.

``teravox params``                  every parameter by section, with default and help
``teravox params --check FILE``     validate a JSON/YAML parameter file or a Reconstructor
                                    ``.tori`` file; print the resolved parameters (``*`` marks
                                    those that differ from the default) and, for a ``.tori``,
                                    the keys teravox does not support or only approximates
``teravox params --check FILE --json``  the resolved parameters as a JSON parameter file

A bad file is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from teravox.config.params import FIELDS, SECTIONS, Params, from_mapping, load_file
from teravox.config.tori import is_tori, load_tori, read_tori, tori_data_file
from teravox.errors import ParamError
from teravox.stages._common import cli_entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teravox params",
        description="List every teravox parameter, or check a parameter file or a "
                    "DanMAX Reconstructor .tori file.",
        epilog="Parameter files are JSON or YAML, with flat keys or keys grouped by section; "
               ".tori files are recognised by their suffix or their sections.")
    parser.add_argument("--check", metavar="FILE",
                        help="validate FILE (.json, .yaml/.yml or .tori) and print the resolved parameters")
    parser.add_argument("--json", action="store_true",
                        help="with --check: print the resolved parameters as a JSON parameter file")
    parser.add_argument("--section", choices=SECTIONS, help="list only this section")
    return parser


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def list_parameters(section: str | None = None) -> str:
    """Every parameter grouped by section: name, default, then its help indented below."""
    lines: list[str] = []
    for sec in SECTIONS:
        if section and sec != section:
            continue
        lines.append(f"[{sec}]")
        for name, f in FIELDS.items():
            if f.metadata["section"] == sec:
                lines.append(f"  {name} = {_fmt(_default(f))}")
                lines.append(f"      {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def describe(params: Params) -> str:
    """Resolved parameters by section; '*' marks a value that differs from the default."""
    values = params.to_dict()
    width = max(map(len, FIELDS))
    lines: list[str] = []
    for sec in SECTIONS:
        lines.append(f"[{sec}]")
        for name, f in FIELDS.items():
            if f.metadata["section"] == sec:
                mark = "*" if values[name] != _default(f) else " "
                lines.append(f" {mark} {name:<{width}} = {_fmt(values[name])}")
    return "\n".join(lines) + "\n"


def check_file(path: str | Path) -> tuple[Params, list[str], str | None]:
    """(Params, .tori notes, scan named by a .tori) of a parameter or .tori file."""
    path = Path(path)
    if path.suffix.lower() == ".tori":
        params, notes = load_tori(path)
        return params, notes, tori_data_file(read_tori(path))
    mapping = load_file(path)
    if is_tori(mapping):   # a .tori saved under another name
        params, notes = load_tori(path)
        return params, notes, tori_data_file(mapping)
    return from_mapping(mapping, source=str(path)), [], None


def _run(args: argparse.Namespace) -> int:
    try:
        return _body(args)
    except ParamError as exc:
        # parser messages (PyYAML's) span lines; the CLI contract is one line
        raise ParamError(" ".join(str(exc).split())) from None


def _body(args: argparse.Namespace) -> int:
    if args.json and not args.check:
        raise ParamError("--json needs --check FILE")
    if not args.check:
        sys.stdout.write(list_parameters(args.section))
        return 0
    params, notes, scan = check_file(args.check)
    if args.json:
        sys.stdout.write(json.dumps(params.to_dict(), indent=2) + "\n")
        for note in notes:   # stdout stays a valid parameter file; notes go to stderr
            print(f"teravox params: note: {note}", file=sys.stderr)
        return 0
    print(f"{args.check}: valid")
    if scan:
        print(f"scan (file_definitions.data_file): {scan}")
    sys.stdout.write(describe(params))
    if notes:
        print(f"\n.tori keys not supported or only approximated ({len(notes)}):")
        for note in notes:
            print(f"  - {note}")
    return 0


main = cli_entry(_run, build_parser)
