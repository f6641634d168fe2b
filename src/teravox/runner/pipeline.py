"""``teravox run``: the stage graph of :mod:`teravox.graph`, executed by one executor.

The plan is made in-process; every other stage runs as jobs (one per chunk for the
fan-out stages) through the executor, exactly the commands the Nextflow pipeline
calls.  A chunk whose complete output exists and was made from the same plan is
skipped, so rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from teravox import graph
from teravox.config import Params
from teravox.errors import StageError
from teravox.io.atomic import free_bytes, no_space_error, remove_stale, remove_tree
from teravox.prep.pipeline import Patched
from teravox.runner.executor import Executor, Job, JobResult, LocalExecutor
from teravox.runner.lock import output_lock

#: A failed job with less than this free in the output folder failed for lack of space.
LOW_SPACE_BYTES = 16 * 2**20


@dataclass
class StageTiming:
    stage: str
    jobs: int = 0
    skipped: int = 0
    seconds: float = 0.0
    peak_rss: int = 0
    results: list[JobResult] = field(default_factory=list)


@dataclass
class RunSummary:
    plan: dict
    outdir: Path
    volumes: dict[str, Path]
    report: Path
    stages: list[StageTiming]
    seconds: float
    raw_bytes: int
    voxels: int
    patched: Patched | None = None
    sweep: Path | None = None  # the centre-sweep page, when the run stopped there
    center: str | None = None  # the rotation centre as found or given, with how (raw detector columns)
    center_px: float | None = None  # the centre in raw detector columns (the value --center takes)

    @property
    def volume(self) -> Path:
        """The first of the volumes, in the order hdf5, zarr, tiff."""
        return next(iter(self.volumes.values()))

    def table(self) -> str:
        mib = 2**20
        w = max(13, *(len(s.stage) + 1 for s in self.stages))
        lines = [f"{'stage':<{w}}{'jobs':>6}{'skipped':>9}{'time s':>9}{'peak MiB/job':>14}"]
        for s in self.stages:
            lines.append(f"{s.stage:<{w}}{s.jobs:>6}{s.skipped:>9}{s.seconds:>9.1f}{s.peak_rss / mib:>14.0f}")
        mbps = self.raw_bytes / mib / max(self.seconds, 1e-9)
        lines.append(f"{'total':<{w}}{'':>6}{'':>9}{self.seconds:>9.1f}")
        lines.append(f"raw data {self.raw_bytes / mib:.1f} MiB at {mbps:.1f} MiB/s; "
                     f"{self.voxels / max(self.seconds, 1e-9) / 1e6:.2f} Mvoxel/s")
        if self.patched is not None:
            lines.append(f"patched pixels: {self.patched.text()}"
                         + ("  ← WARNING, see above" if self.patched.loud else ""))
        if self.center is not None:
            lines.append(f"rotation {self.center}")
        return "\n".join(lines)


def _proj_ok(plan: dict, index: int, outdir: Path) -> bool:
    from teravox.stages.collect import check_chunk
    from teravox.stages.preprocess import chunk_path

    return not isinstance(check_chunk(plan, index, chunk_path(plan, index, outdir)), str)


def _recon_ok(plan: dict, index: int, outdir: Path) -> bool:
    from teravox.stages.reconstruct import chunk_problem

    return chunk_problem(plan, index, outdir) is None


def jobs_for(stage: graph.Stage, plan: dict, plan_path: Path, outdir: Path, skip: bool,
             cpus: int = 1, time_s: int = 3600) -> tuple[list[Job], int]:
    """The jobs of ``stage`` still to do, and how many were skipped as already complete."""
    budget = plan["memory"]["budget"]
    logs = outdir / "logs"
    p = str(plan_path)
    if stage.fanout:
        ok = _proj_ok if stage.name == "preprocess" else _recon_ok
        gpus = 1 if stage.name == "reconstruct" and plan.get("recon_device") else 0
        jobs, skipped = [], 0
        for c in plan[stage.fanout]:
            i = c["index"]
            if skip and ok(plan, i, outdir):
                skipped += 1
                continue
            jobs.append(Job(stage.name, i, ["--plan", p, "--chunk", str(i)], budget, cpus, time_s,
                            log=logs / f"{stage.name}_{i:04d}.log", gpus=gpus))
        return jobs, skipped
    args = {
        "collect": ["--plan", p],
        "merge": ["--plan", p, "--timings", str(outdir / "timings.json")],
        "report": ["--plan", p, "--timings", str(outdir / "timings.json")],
        "cleanup": ["--plan", p],
        "stitch-align": ["--plan", p],
        "z-stitch": ["--plan", p],
    }[stage.name]
    return [Job(stage.name, None, args, budget, cpus, time_s, log=logs / f"{stage.name}.log")], 0


def parallel_jobs(budget: int, requested: int | None) -> int:
    """Jobs at once: as many as requested, else as cores allow, and as memory allows."""
    from teravox.resources import cpus_available, total_memory

    by_memory = max(1, int(total_memory() * 0.8 // max(budget, 1)))
    return max(1, min(requested or cpus_available(), by_memory))


def _warn(msg: str) -> None:
    print(f"teravox run: warning: {msg}", file=sys.stderr, flush=True)


def run_pipeline(scan: str | Path | None, outdir: str | Path, params: Params, *, jobs: int | None = None,
                 force: bool = False, executor: Executor | None = None, progress: bool = True,
                 cpus_per_job: int = 1, time_per_job_s: int = 3600, sheet: str | None = None,
                 log: Callable[[str], None] = print, warn: Callable[[str], None] = _warn) -> RunSummary:
    """Plan, [stitch-align], preprocess × k, collect, reconstruct × j, merge, report, cleanup,
    holding the output folder's lock.

    ``sheet`` (a scan sheet) instead of ``scan`` stitches several offset scans: side by side,
    or in height steps (a vertical stack: each level runs the graph in ``<outdir>/<level>/``,
    then z-stitch joins their volumes)."""
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    with output_lock(outdir) as held:
        try:
            return _run_locked(scan, outdir, params, jobs=jobs, force=force, executor=executor,
                               progress=progress, cpus_per_job=cpus_per_job, time_per_job_s=time_per_job_s,
                               sheet=sheet, log=log, warn=warn, held=held)
        finally:
            (outdir / "timings.json").unlink(missing_ok=True)  # the report's input, never a result


def _run_locked(scan: str | Path | None, outdir: Path, params: Params, *, jobs: int | None, force: bool,
                executor: Executor | None, progress: bool, cpus_per_job: int, time_per_job_s: int,
                sheet: str | None, log: Callable[[str], None], warn: Callable[[str], None],
                held: bool = True) -> RunSummary:
    from teravox.io.volume import volume_paths
    from teravox.stages.plan import make, save, summary

    t_start = time.perf_counter()
    (outdir / "logs").mkdir(exist_ok=True)
    plan = make(None if scan is None else str(scan), params, outdir, sheet=sheet)
    plan_path = outdir / "plan.json"
    level_paths = save(plan, plan_path)
    log(summary(plan))
    plans = list(zip(plan["level_plans"], level_paths, strict=True)) if level_paths else [(plan, plan_path)]
    # the angles' range, frames left out: worth a look before the volume
    for note in dict.fromkeys(n for p_, _ in plans for n in p_.get("notes", [])):
        warn(note)
    # Holding the folder's lock, every temporary file here is left by a run that is over (a
    # killed job, local or on SLURM), whatever its process id means on this machine; without
    # a lock (a filesystem without locks) only those of dead local processes are known to be.
    stale = [f for _, path in plans for f in remove_stale(path.parent, all_=held)]
    if stale:
        log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    if force:
        for p_, path in plans:
            for name in ("proj_*.h5", "recon_[0-9]*", p_["outputs"]["projections"]):
                for f in path.parent.glob(name):
                    remove_tree(f)
    if executor is None:
        from teravox.resources import cpus_available

        n = parallel_jobs(plan["memory"]["budget"], jobs)
        executor = LocalExecutor(n, cpus=cpus_available())
        log(f"local executor: up to {n} job(s) at a time, {cpus_available()} core(s) shared among them")
        if plans[0][0].get("recon_device"):
            slots = [g for g in executor.gpu_slots() if g]
            log(f"reconstruct on {plans[0][0]['recon_device']['backend']}: one job per GPU "
                f"({', '.join(slots) if slots else 'no GPU found here: the jobs will say why'})")
    stages: list[StageTiming] = []
    patched = None
    centers: list[tuple[str, float]] = []
    for k, (p_, path) in enumerate(plans):
        if level_paths:
            log(f"level {k} of {len(plans)}: {p_['name']} in {path.parent}")
        kinds = ("lateral",) if "scans" in p_ else ()
        done, found, center = _run_stages(p_, path, graph.order(kinds), executor, params, progress, cpus_per_job,
                                          time_per_job_s, log, warn, prefix=f"z{k:02d} " if level_paths else "")
        stages += done
        patched = _add(patched, found)
        if center is not None:
            centers.append(((f"{p_['name']}: " if level_paths else "") + center[0], center[1]))
    center_text = "; ".join(c for c, _ in centers) or None
    center_px = centers[0][1] if len(centers) == 1 else None
    if params.center_sweep:  # the pages, no volume: the run stops after them
        from teravox.stages.center_sweep import page_paths

        return RunSummary(plan, outdir, {}, outdir / plan["outputs"]["report"], stages,
                          time.perf_counter() - t_start, raw_bytes=0, voxels=0, patched=patched,
                          sweep=page_paths(plans[0][0])[0], center=center_text, center_px=center_px)
    if level_paths:
        stages += _run_stages(plan, plan_path, [graph.BY_NAME["z-stitch"]], executor, params, progress,
                              cpus_per_job, time_per_job_s, log, warn)[0]
        if not params.keep_intermediates:  # the levels' volumes now live on in the stack's
            for p_, path in plans:
                (path.parent / p_["outputs"]["volume"]).unlink(missing_ok=True)
    # what the alignments warned about, where the run's summary is read
    docs = [path.parent / "shifts.json" for p_, path in plans if "scans" in p_]
    docs += [outdir / plan["outputs"]["zstitch"]] if level_paths else []
    for doc in (d for d in docs if d.exists()):
        for w in json.loads(doc.read_text()).get("warnings", []):
            warn(f"{doc.parent.name}/{doc.name}: {w}")
    shape = plan["recon_shape"]
    raw = sum(len(p_["theta_deg"]) * (p_["selection"]["rows"][1] - p_["selection"]["rows"][0])
              * (p_["selection"]["cols"][1] - p_["selection"]["cols"][0]) * _itemsize(p_["scan"]["dtype"])
              for p_, _ in plans)
    volumes = {"hdf5": outdir / plan["outputs"]["volume"]} if level_paths else volume_paths(plan, outdir)
    return RunSummary(plan, outdir, volumes, outdir / plan["outputs"]["report"],
                      stages, time.perf_counter() - t_start, raw_bytes=int(raw),
                      voxels=int(shape[0] * shape[1] * shape[2]), patched=patched,
                      center=center_text, center_px=center_px)


def _add(a: Patched | None, b: Patched | None) -> Patched | None:
    """The patched-pixel counts of two levels together."""
    if a is None or b is None:
        return a or b
    return Patched(**{k: getattr(a, k) + getattr(b, k) for k in ("flat_le_dark", "nonfinite", "outliers",
                                                                 "projections")}, frame_pixels=a.frame_pixels)


def _run_stages(plan: dict, plan_path: Path, stages_: list[graph.Stage], executor: Executor, params: Params,
                progress: bool, cpus_per_job: int, time_per_job_s: int, log: Callable[[str], None],
                warn: Callable[[str], None], prefix: str = ""
                ) -> tuple[list[StageTiming], Patched | None, tuple[str, float] | None]:
    """Run ``stages_`` of one plan (its workdir: the plan file's directory), skipping complete
    chunks; the stage timings, the patched-pixel counts collect found, and the rotation centre
    (text, and value in raw detector columns) when collect ran."""
    from teravox.progress import StageBar

    outdir = plan_path.parent
    (outdir / "logs").mkdir(exist_ok=True)
    timings: dict[str, float] = {}
    stages: list[StageTiming] = []
    patched = None
    center = None
    for stage in stages_:
        if stage.name == "plan":
            continue
        if stage.name == "reconstruct" and params.center_sweep:
            _center_sweep(plan, plan_path, outdir, executor, stages, timings, cpus_per_job, time_per_job_s, log)
            break
        if stage.name == "collect" and plan["center"]["value"] is None:
            log(f"{prefix}collect: joining the projection chunks and finding the rotation centre (automatic)")
        if stage.name == "cleanup" and params.keep_intermediates:
            log("cleanup skipped (keep_intermediates): chunk files and projections.h5 kept")
            continue
        todo, skipped = jobs_for(stage, plan, plan_path, outdir, skip=True, cpus=cpus_per_job,
                                 time_s=time_per_job_s)
        st = StageTiming(prefix + stage.name, len(todo), skipped)
        t0 = time.perf_counter()
        (outdir / "timings.json").write_text(json.dumps(timings))
        if todo:
            shown = StageBar(prefix + stage.name, len(todo), enable=progress)
            # a local job reports its progress within (blocks, rows of the centre search)
            within = {"on_tick": shown.update} if isinstance(executor, LocalExecutor) else {}
            try:
                results = executor.run_jobs(todo, on_done=lambda _r, b=shown: b.job_done(), **within)
            finally:
                shown.close()
            st.results = results
            failed = [r for r in results if not r.ok]
            if failed or len(results) < len(todo):
                _raise_failure(failed[0] if failed else None, outdir)
            st.peak_rss = max((r.peak_rss for r in results), default=0)
        else:
            log(f"{prefix}{stage.name}: all {skipped} chunk(s) already complete, skipped")
        if stage.name == "collect":
            from teravox.stages.collect import output_path, read_patched

            patched = read_patched(output_path(plan))
            if patched is not None and patched.warning():
                warn(prefix + patched.warning())
        st.seconds = time.perf_counter() - t0
        timings[stage.name] = round(st.seconds, 3)
        stages.append(st)
        if stage.name == "collect":
            from teravox.stages.collect import describe, output_path, read_resolved

            resolved = read_resolved(output_path(plan))
            c0 = plan["selection"]["cols"][0]
            raw = {**resolved, "center": resolved["center"] + c0}  # the columns --center takes
            center = (describe(raw), raw["center"])
            log(f"{prefix}collect: {center[0]}")
    (outdir / "timings.json").unlink(missing_ok=True)
    return stages, patched, center


def _raise_failure(r: JobResult | None, outdir: Path) -> None:
    """The one-line error of a failed stage: the job, its exit status and log, and why."""
    where = (f"{r.job.name} failed (exit {r.returncode}" + (f", job {r.job_id}" if r.job_id else "")
             + f"); see {r.job.log}") if r else "interrupted"
    free = free_bytes(outdir)
    if free is not None and free < LOW_SPACE_BYTES:  # the job's own message may not have fitted in its log
        raise no_space_error(outdir, where)
    tail = _tail(r.job.log) if r and r.job.log else ""
    raise StageError(f"{where}{': ' + tail if tail else ''}. Intermediates in {outdir} are kept: "
                     f"rerun the same command to resume")


def _center_sweep(plan: dict, plan_path: Path, outdir: Path, executor: Executor, stages: list[StageTiming],
                  timings: dict[str, float], cpus: int, time_s: int, log) -> Path:  # noqa: ANN001
    """The centre-sweep job in place of pass 2: the page, then the run stops."""
    from teravox.stages.center_sweep import page_paths

    job = Job("center-sweep", None, ["--plan", str(plan_path)], plan["memory"]["budget"], cpus, time_s,
              log=outdir / "logs" / "center-sweep.log")
    t0 = time.perf_counter()
    results = executor.run_jobs([job])
    result = results[0] if results else None
    if result is None or not result.ok:
        _raise_failure(result, outdir)
    st = StageTiming("center-sweep", 1, 0, time.perf_counter() - t0, result.peak_rss, [result])
    stages.append(st)
    timings["center-sweep"] = round(st.seconds, 3)
    pdf, _ = page_paths(plan)
    for line in Path(job.log).read_text().splitlines()[-2:]:
        log(line)
    log("centre sweep done: no volume reconstructed. Rerun without --center-sweep, with --center "
        "<value> (pass 1 is kept and reused)")
    return pdf


def _itemsize(dtype: str) -> int:
    import numpy as np

    return np.dtype(dtype).itemsize


def _tail(path: Path | None, lines: int = 3) -> str:
    """The job log's last error line(s), for the one-line message."""
    if path is None or not Path(path).exists():
        return ""
    text = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    errs = [ln for ln in text if "error" in ln.lower()]
    return " / ".join((errs or text)[-lines:])[:500]
