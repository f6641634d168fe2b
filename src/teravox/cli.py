"""``teravox``: one command with a subcommand per job.

Each subcommand lives in ``teravox.stages.<name>`` and exposes ``build_parser()`` and
``main(argv) -> int``; this module only dispatches, so ``teravox preprocess ...`` and
the Nextflow shim ``bin/teravox-preprocess ...`` run exactly the same code.
"""

from __future__ import annotations

import importlib
import os
import sys

from teravox import __version__

#: subcommand → (module under teravox.stages, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "generate a synthetic scan and reconstruct it (start here)"),
    "run": ("run", "the whole reconstruction of a scan on this machine (or SLURM)"),
    "info": ("info", "what a scan file holds: shapes, angles, metadata, volume size"),
    "synth": ("synth", "write a synthetic DXchange scan with a known ground truth"),
    "plan": ("plan", "plan the chunk jobs of a reconstruction (writes plan.json)"),
    "stitch-align": ("stitch_align", "find the offsets of several side-by-side scans"),
    "preprocess": ("preprocess", "pass 1: correct one projection chunk (proj_<k>.h5)"),
    "collect": ("collect", "join the projection chunks into a virtual projections.h5"),
    "center-sweep": ("center_sweep", "one row at a series of rotation centres, on one page to choose by eye"),
    "reconstruct": ("reconstruct", "pass 2: reconstruct one sinogram chunk (recon_<j>.h5)"),
    "merge": ("merge", "join the reconstructed chunks into <scan>_recon.h5"),
    "z-stitch": ("z_stitch", "join the levels of a vertical stack into one volume"),
    "report": ("report", "write the PDF report of a reconstruction"),
    "cleanup": ("cleanup", "remove intermediates once the volume and report exist"),
    "params": ("params", "list every parameter, or check a parameter / .tori file"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"teravox {__version__} — chunked reconstruction of parallel-beam X-ray tomography",
        "",
        "usage: teravox COMMAND [options]      (teravox COMMAND --help for its options)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Quick start:  teravox demo --out teravox-demo"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"teravox {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"teravox: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"teravox.stages.{COMMANDS[name][0]}")
    try:
        return module.main(rest)
    finally:
        from teravox.resources import write_peak_file

        write_peak_file()


def _run_and_exit(argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and end the process with its status.  After a write that failed for
    lack of space, skip the interpreter's and HDF5's shutdown: HDF5 crashes there (segmentation
    fault) on the file whose write failed, after the one-line error has been printed."""
    from teravox.io.atomic import write_failed

    try:
        status = main(argv)
    except BaseException:
        if write_failed():  # e.g. the error line itself could not be written to a full disk
            os._exit(2)
        raise
    if write_failed():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
        os._exit(status)
    sys.exit(status)


def entry() -> None:
    """Entry of the ``teravox`` command."""
    _run_and_exit()


def stage_main(name: str) -> None:
    """Entry of the ``bin/teravox-<stage>`` shims."""
    _run_and_exit([name, *sys.argv[1:]])


if __name__ == "__main__":
    entry()
