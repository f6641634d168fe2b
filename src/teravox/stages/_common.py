"""What every stage CLI shares: the error wrapper and the plan/params arguments."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from teravox.errors import TeravoxError

#: Longest error message printed: a message quotes values, and a value may be anything.
MAX_MESSAGE = 2000


def error_line(prog: str, message: str) -> str:
    """``teravox <stage>: error: <message>`` on one line, at most :data:`MAX_MESSAGE` long."""
    message = " ".join(str(message).split())  # one line, whatever a library put in it
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE // 2] + " … " + message[-MAX_MESSAGE // 2:]
    return f"teravox {prog}: error: {message}"


class _ArgumentError(Exception):
    """A command line argparse refused."""


def _fail(prog: str, message: str) -> int:
    try:
        print(error_line(prog, message), file=sys.stderr, flush=True)
    except OSError:  # stderr is a log file on the disk that is full: the status still says it
        pass
    return 2


def cli_entry(func: Callable[[argparse.Namespace], int | None],
              parser_factory: Callable[[], argparse.ArgumentParser]) -> Callable[..., int]:
    """Wrap a stage's body: parse argv, turn TeravoxError (and an OSError naming a file, such
    as a full disk or a read-only directory) into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def main(argv: list[str] | None = None) -> int:
        from teravox.io.atomic import is_no_space, no_space_error

        parser = parser_factory()
        prog = parser.prog.split()[-1]

        def arg_error(message: str) -> NoReturn:  # instead of argparse's usage and error lines
            raise _ArgumentError(f"{message} (see teravox {prog} --help)")

        parser.error = arg_error  # type: ignore[method-assign]
        try:
            args = parser.parse_args(argv)
        except _ArgumentError as exc:
            return _fail(prog, str(exc))
        args.command_line = list(sys.argv[1:] if argv is None else argv)  # for logs: rerun it as it was
        try:
            return int(func(args) or 0)
        except TeravoxError as exc:
            return _fail(prog, str(exc))
        except OSError as exc:
            if is_no_space(exc):
                where = Path(exc.filename).parent if exc.filename else Path.cwd()
                return _fail(prog, str(no_space_error(where, f"{exc.filename or 'a file'} could not be written", exc)))
            if exc.filename is None:
                raise
            return _fail(prog, f"{exc.filename}: {exc.strerror or exc}")
        except MemoryError:
            return _fail(prog, "out of memory: this machine (or the job's limit) holds less than the job "
                               "needed; give --memory what a job really has, so that the plan cuts smaller pieces")
        except KeyboardInterrupt:
            print("teravox: interrupted", file=sys.stderr)
            return 130

    return main


def description(doc: str) -> str:
    """A stage's ``--help`` description from its module docstring: the first paragraph after
    its ``teravox x``: title, then the second paragraph, without reStructuredText markup."""
    first, second = doc.split("\n\n")[:2]
    text = first.split(": ", 1)[1] + "\n\n" + second
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)   # :mod:`teravox.graph` → teravox.graph
    text = text.replace("``", "")
    return text[:1].upper() + text[1:]


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """The output folder ``path``, made if needed and checked to be writable; ParamError naming
    ``flag`` when it is a file, cannot be made or cannot be written."""
    from teravox.errors import ParamError
    from teravox.io.atomic import is_no_space, no_space_error

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ParamError(f"{flag} {out}: is a file, expected a directory (or a path where one can be made)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".teravox-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if is_no_space(exc):
            raise no_space_error(out, f"{flag} {out} could not be used", exc) from None
        what = "made" if not out.is_dir() else "written"
        raise ParamError(f"{flag} {out}: cannot be {what} ({exc.strerror or exc}"
                         + (f": {exc.filename}" if exc.filename and str(exc.filename) != str(out) else "")
                         + "); expected a writable directory") from None
    return out


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
