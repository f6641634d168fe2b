"""Every stage of one plan in this process, one job after another — for notebooks, tests
and benchmarks: no executor, no logs, no resume (``teravox run`` has those)."""

from __future__ import annotations

from pathlib import Path


def run_plan(plan: dict) -> dict[str, Path]:
    """Pass 1, collect, pass 2 and merge of ``plan`` (in its workdir); the volume by format."""
    from teravox.stages import collect, merge, preprocess, reconstruct

    for c in plan["proj_chunks"]:
        preprocess.run_chunk(plan, c["index"])
    collect.run(plan)
    for c in plan["sino_chunks"]:
        reconstruct.run_chunk(plan, c["index"])
    return merge.run(plan)
