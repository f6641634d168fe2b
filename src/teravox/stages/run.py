"""``teravox run``: a raw scan to a reconstructed volume and a PDF report, on this machine.

Runs plan → preprocess × k → collect → reconstruct × j → merge → report → cleanup,
each chunk job in its own process, as many at once as cores and memory allow.
Rerunning the same command resumes: complete chunk outputs made from the same
plan are skipped.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from teravox.errors import ParamError
from teravox.stages._common import (
    add_param_sources,
    cli_entry,
    description,
    output_dir,
    positive_int,
    resolve_params,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox run",
        usage="teravox run (--scan SCAN | --scan-sheet FILE | --tori FILE) --out DIR [options]",
        description=description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  teravox run --scan scan.h5 --out recon/\n"
               "  teravox run --scan scan.h5 --out recon/ --center auto --paganin --delta-beta 500 \\\n"
               "      --energy-kev 35 --distance-m 0.3 --pixel-size-m 0.55e-6 --dtype uint16\n"
               "  teravox run --scan scan.h5 --out recon/ --tori settings.tori --jobs 4 --memory 16G\n"
               "  teravox run --scan scan.h5 --out recon/ --center-sweep 1010:1030:1   (pick the centre by eye)\n"
               "  teravox run --scan scan.h5 --out recon/ --executor slurm --partition all\n")
    p.add_argument("--scan", default=None,
                   help="raw scan, opened read-only: a DXchange or NeXus HDF5 file, or TIFF files (a folder, a glob "
                        "pattern, a multi-page file) (default with --tori: its data_file)")
    p.add_argument("--scan-sheet", default=None, metavar="FILE",
                   help="CSV/JSON/YAML sheet of laterally offset scans to stitch (file, position_mm)")
    p.add_argument("--out", required=True, help="output directory (volume, report, log; intermediates)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="chunk jobs at once (default: as cores and memory allow)")
    p.add_argument("--force", action="store_true", help="redo every chunk, even complete ones")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="run the jobs here (local) or as SLURM job arrays (slurm)")
    p.add_argument("--partition", default=None, help="SLURM partition (executor slurm)")
    p.add_argument("--gpu-partition", default=None,
                   help="SLURM partition of the reconstruct jobs when the backend runs on a GPU "
                        "(default: --partition); they ask for --gres=gpu:1")
    p.add_argument("--account", default=None, help="SLURM account (executor slurm)")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="extra sbatch option, e.g. --sbatch=--qos=short (repeatable; executor slurm)")
    p.add_argument("--cpus-per-job", type=positive_int, default=1, help="CPUs each SLURM job asks for (executor slurm)")
    p.add_argument("--time-per-job", type=positive_int, default=60, metavar="MIN",
                   help="time limit of each SLURM job in minutes (executor slurm)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_param_sources(p)
    return p


def make_executor(args: argparse.Namespace, outdir: Path):  # noqa: ANN201
    if args.executor == "local":
        return None
    from teravox.runner.slurm import SlurmExecutor

    return SlurmExecutor(outdir / "slurm", partition=args.partition, gpu_partition=args.gpu_partition,
                         account=args.account,
                         extra=args.sbatch)


def _run(args: argparse.Namespace) -> int:
    from teravox.runner.pipeline import run_pipeline

    params = resolve_params(args)
    if args.scan is None and args.scan_sheet is None:
        from teravox.config.tori import read_tori, tori_data_file

        # a relative data_file is the .tori's neighbour (as the Nextflow pipeline reads it too)
        data_file = tori_data_file(read_tori(args.tori)) if args.tori else None
        args.scan = str(Path(args.tori).parent / data_file) if data_file else None
        if not args.scan:
            raise ParamError("no scan: give --scan FILE (or a .tori whose file_definitions name a data_file)")
    out = output_dir(args.out)
    logfile = out / "teravox-run.log"
    with open(logfile, "a") as lf:
        def note(msg: str) -> None:
            lf.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            lf.flush()

        def log(msg: str) -> None:
            print(msg, flush=True)
            note(msg)

        def warn(msg: str) -> None:
            print(f"teravox run: warning: {msg}", file=sys.stderr, flush=True)
            note(f"WARNING: {msg}")

        command = command_text(args.command_line)
        log(command)
        try:
            summary = run_pipeline(args.scan, out, params, jobs=args.jobs, force=args.force,
                                   executor=make_executor(args, out), progress=not args.no_progress,
                                   cpus_per_job=args.cpus_per_job, time_per_job_s=args.time_per_job * 60,
                                   sheet=args.scan_sheet, log=log, warn=warn)
        except KeyboardInterrupt:
            msg = (f"interrupted. Complete chunks in {out} are kept: rerun the same command to resume "
                   f"(it is the first line of {logfile})")
            note(msg)
            print(f"teravox run: {msg}", file=sys.stderr, flush=True)
            return 130
        except Exception as exc:
            note(f"error: {' '.join(str(exc).split())}")  # stderr gets it once, from cli_entry
            raise
        log(summary.table())
        if summary.sweep is not None:
            log(f"centre sweep: {summary.sweep} (and .png)")
        else:
            for fmt, path in summary.volumes.items():
                log(f"volume ({fmt}): {path}")
            log(f"report: {summary.report}")
        for line in reproduce(summary, command, params):
            log(line)
    return 0


def command_text(argv: list[str]) -> str:
    """The command as typed (quoted for a shell), and the folder it ran in: its paths are relative to it."""
    return f"teravox run {shlex.join(argv)}    # in {Path.cwd()}"


def reproduce(summary, command: str, params) -> list[str]:  # noqa: ANN001
    """What a user needs to redo this run: the command, the version, the parameters' file, and
    the flag that fixes an automatic centre."""
    from teravox import __version__

    lines = [f"to reproduce: {command}", f"  with teravox {__version__}; every parameter is in "
                                         f"{summary.outdir / 'plan.json'}"]
    if summary.center_px is not None and "auto" in (summary.center or "") and not params.center_sweep:
        lines.append(f"  the same centre without the search: add --center {summary.center_px:.2f}")
    return lines


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
