"""What every stage CLI shares: the error wrapper and the plan/params arguments."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from teravox.errors import TeravoxError


def cli_entry(func: Callable[[argparse.Namespace], int | None],
              parser_factory: Callable[[], argparse.ArgumentParser]) -> Callable[..., int]:
    """Wrap a stage's body: parse argv, turn TeravoxError into one line and exit status 2."""

    @functools.wraps(func)
    def main(argv: list[str] | None = None) -> int:
        parser = parser_factory()
        args = parser.parse_args(argv)
        try:
            return int(func(args) or 0)
        except TeravoxError as exc:
            message = " ".join(str(exc).split())  # one line, whatever a library put in it
            print(f"teravox {parser.prog.split()[-1]}: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("teravox: interrupted", file=sys.stderr)
            return 130

    return main


def add_param_sources(parser: argparse.ArgumentParser) -> None:
    """--params FILE / --tori FILE plus one flag per pipeline parameter."""
    from teravox.config import add_arguments

    src = parser.add_argument_group("parameter sources (later ones win: file < flags)")
    src.add_argument("--params", metavar="FILE", help="JSON or YAML parameter file")
    src.add_argument("--tori", metavar="FILE", help="DanMAX Reconstructor .tori settings file")
    add_arguments(parser)


def resolve_params(args: argparse.Namespace, quiet: bool = False):  # noqa: ANN201 - Params
    """Params from defaults < --params/--tori file < command-line flags."""
    from teravox.config import from_args, load_file

    base: dict = {}
    if getattr(args, "params", None):
        base = load_file(args.params)
        from teravox.config import from_mapping

        from_mapping(base, source=args.params)  # name the file in any error
    if getattr(args, "tori", None):
        from teravox.config.tori import load_tori

        tori_params, unsupported = load_tori(args.tori)
        if unsupported and not quiet:
            print(f"teravox: {args.tori}: not supported, ignored: {', '.join(unsupported)}", file=sys.stderr)
        base = {**tori_params.to_dict(), **base}
    return from_args(args, base)
