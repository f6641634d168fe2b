"""``teravox cleanup --plan plan.json``: remove intermediates once the volume and report exist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from teravox import plan as planmod
from teravox.errors import StageError
from teravox.io import volume as volumes
from teravox.io.atomic import remove_stale, remove_tree
from teravox.stages._common import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="teravox cleanup",
        description="Remove the chunk files and pieces and the virtual projection file once the merged "
                    "volume(s) and the report exist, and the temporary files (*.tmp-<pid>) that killed jobs "
                    "left beside them. Refuses while one is missing, so a failed run keeps what resume needs.")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--workdir", default=None, help="directory holding the intermediates (default: the plan's)")
    p.add_argument("--volume", nargs="+", default=None,
                   help="merged volume(s) (default: those of the plan's formats in the workdir)")
    p.add_argument("--report", default=None, help="report (default: <workdir>/<scan>_report.pdf)")
    return p


def intermediates(plan: dict, workdir: str | Path | None = None) -> list[Path]:
    """Chunk files, pieces and the projections file; recon chunks stay if the HDF5 volume is
    virtual over them.  (The Zarr and TIFF volumes hold hard links to their pieces' files:
    removing a piece frees nothing they use.)"""
    wd = planmod.workdir(plan, workdir)
    out = [wd / plan["outputs"]["proj_chunk"].format(index=c["index"]) for c in plan["proj_chunks"]]
    out.append(wd / plan["outputs"]["projections"])
    for fmt in volumes.formats(plan):
        if fmt != "hdf5" or plan["params"].get("merge", "copy") != "virtual":
            out += [volumes.piece_path(plan, fmt, c["index"], wd) for c in plan["sino_chunks"]]
    return out


def run(plan: dict, workdir: str | Path | None = None, volume: list[str | Path] | str | Path | None = None,
        report: str | Path | None = None) -> list[Path]:
    wd = planmod.workdir(plan, workdir)
    if volume is None:
        vols = list(volumes.volume_paths(plan, wd).values())
    else:
        vols = [Path(v) for v in ([volume] if isinstance(volume, (str, Path)) else volume)]
    rep = Path(report) if report else wd / plan["outputs"]["report"]
    missing = [str(p) for p in (*vols, rep) if not p.exists()]
    if missing:
        raise StageError(f"not cleaning up: {', '.join(missing)} missing; intermediates kept for resume")
    # Every job of the run is over once the volume and the report exist: a temporary file
    # beside an output belongs to a job that was killed (locally or on a cluster node).
    files = intermediates(plan, wd)
    removed = []
    for folder in dict.fromkeys([wd, *(p.resolve().parent for p in files)]):
        removed += remove_stale(folder, all_=True)
    if plan["params"].get("keep_intermediates"):
        return removed
    for p in files:
        # Nextflow stages inputs as symlinks: remove the file they point to, then the link
        for target in dict.fromkeys([p.resolve(), p]):
            if target.exists() or target.is_symlink():
                remove_tree(target)
                removed.append(target)
    return removed


def _run(args: argparse.Namespace) -> int:
    plan = planmod.load(args.plan)
    removed = run(plan, args.workdir, args.volume, args.report)
    print(f"removed {len(removed)} intermediate file(s) and folder(s)")
    return 0


main = cli_entry(_run, build_parser)

if __name__ == "__main__":
    sys.exit(main())
