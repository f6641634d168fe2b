"""The stage graph, defined once.

The local runner executes it and the Nextflow workflow (``main.nf``) wires the same
stages and edges; ``tests/test_nextflow.py`` compares the two.  An edge A → B means
B reads a file that A writes.  A vertical stack runs the stages from plan to cleanup once
per level (each level's plan written by the stack's plan), then ``z-stitch`` once.  A
centre sweep runs ``center-sweep`` after collect in place of reconstruct and what follows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str                 # CLI subcommand and module under teravox.stages
    process: str              # Nextflow process name
    label: str                # Nextflow resource label (conf/base.config)
    needs: tuple[str, ...]    # stages whose outputs this one reads
    fanout: str | None = None  # "proj_chunks" / "sino_chunks": one job per chunk of the plan
    only: str | None = None   # "lateral": scans side by side (stitch-align); "vertical": a stack
    #                           (z-stitch); "sweep": a centre sweep instead of the volume
    outputs: tuple[str, ...] = ()  # what it can write (the plan's formats choose among volumes)

    @property
    def optional(self) -> bool:
        return self.only is not None

    @property
    def command(self) -> str:
        """The bin/ executable Nextflow calls."""
        return f"teravox-{self.name}"


STAGES: tuple[Stage, ...] = (
    Stage("plan", "PLAN", "process_plan", (), outputs=("plan.json",)),
    Stage("stitch-align", "STITCH_ALIGN", "process_plan", ("plan",), only="lateral",
          outputs=("shifts.json",)),
    Stage("preprocess", "PREPROCESS", "process_preprocess", ("plan", "stitch-align"),
          fanout="proj_chunks", outputs=("proj_<k>.h5",)),
    Stage("collect", "COLLECT", "process_collect", ("plan", "preprocess"),
          outputs=("projections.h5",)),
    Stage("reconstruct", "RECONSTRUCT", "process_reconstruct", ("plan", "collect"),
          fanout="sino_chunks", outputs=("recon_<j>.h5", "recon_<j>.zarr", "recon_<j>_tiff")),
    Stage("merge", "MERGE", "process_merge", ("plan", "reconstruct"),
          outputs=("<scan>_recon.h5", "<scan>_recon.zarr", "<scan>_recon_tiff")),
    Stage("report", "REPORT", "process_report", ("plan", "stitch-align", "collect", "merge"),
          outputs=("<scan>_report.pdf",)),
    Stage("cleanup", "CLEANUP", "process_cleanup", ("plan", "merge", "report")),
    Stage("z-stitch", "Z_STITCH", "process_merge", ("plan", "merge"), only="vertical",
          outputs=("<stack>_recon.h5", "<stack>_report.pdf", "zstitch.json")),
    # --center-sweep: in place of reconstruct and what follows it
    Stage("center-sweep", "CENTER_SWEEP", "process_collect", ("plan", "collect"), only="sweep",
          outputs=("<scan>_center_sweep.pdf", "<scan>_center_sweep.png")),
)

BY_NAME = {s.name: s for s in STAGES}


def edges(include_optional: bool = True) -> set[tuple[str, str]]:
    """Producer → consumer pairs between stage names."""
    keep = {s.name for s in STAGES if include_optional or not s.optional}
    return {(n, s.name) for s in STAGES if s.name in keep for n in s.needs if n in keep}


def order(kinds: tuple[str, ...] = ("lateral", "vertical")) -> list[Stage]:
    """Stages in an order where every stage follows what it needs: those that always run and
    the optional ones of ``kinds``."""
    return [s for s in STAGES if s.only is None or s.only in kinds]
