"""Executors: how the chunk jobs of one stage are run (local processes, or SLURM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class Job:
    """One stage job: ``teravox <stage> <args>`` with its resources."""

    stage: str
    index: int | None
    args: list[str]
    memory: int            # bytes the plan asks for
    cpus: int = 1
    time_s: int = 3600
    log: Path | None = None
    gpus: int = 0          # GPUs the job needs (reconstruct with a GPU backend)

    @property
    def name(self) -> str:
        return self.stage if self.index is None else f"{self.stage}[{self.index}]"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "teravox.cli", self.stage, *self.args]


@dataclass
class JobResult:
    job: Job
    returncode: int
    seconds: float
    peak_rss: int = 0          # bytes, as the kernel accounted it for this job alone
    job_id: str | None = None  # the scheduler's id where there is one
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


TICK_S = 0.3  # how often running jobs' progress is read


class Executor(Protocol):
    name: str

    def run_jobs(self, jobs: list[Job], on_done=None) -> list[JobResult]:  # noqa: ANN001
        """Run ``jobs`` (independent of each other); call ``on_done(result)`` as each ends.
        Returns every result; stops launching new jobs after the first failure."""


class LocalExecutor:
    """Each job in its own process (so its memory budget holds), ``parallel`` at a time.

    A job that needs a GPU runs only while a device of ``gpus`` (CUDA ids; default: the
    devices this machine shows) is free, and sees that device alone."""

    name = "local"

    def __init__(self, parallel: int = 1, threads_per_job: int | None = None, cpus: int | None = None,
                 gpus: list[str] | None = None):
        self.parallel = max(1, parallel)
        self.threads_per_job = threads_per_job
        self.cpus = cpus  # with it, a stage of fewer jobs than `parallel` gives each more threads
        self._gpus = gpus

    def gpu_slots(self) -> list[str]:
        """Devices for GPU jobs; with none found, one slot that sets no device (the job then
        reports why its backend cannot run)."""
        if self._gpus is None:
            from teravox.resources import gpu_devices

            self._gpus = gpu_devices()
        return list(self._gpus) or [""]

    def run_jobs(self, jobs: list[Job], on_done=None, on_tick=None) -> list[JobResult]:  # noqa: ANN001
        """As :meth:`Executor.run_jobs`; with ``on_tick``, call it a few times a second with
        the running jobs' own progress ({job name: (fraction done, what)})."""
        from teravox.progress import PROGRESS_ENV, read_progress

        pending = list(jobs)
        free_gpus = self.gpu_slots() if any(j.gpus for j in jobs) else []
        parallel = self.parallel
        if jobs and all(j.gpus for j in jobs):
            parallel = min(parallel, len(free_gpus))
        threads = self.threads_per_job
        if self.cpus:
            threads = max(1, self.cpus // max(1, min(parallel, len(jobs))))
        running: dict[int, tuple[Job, subprocess.Popen, float, object, str | None]] = {}
        results: list[JobResult] = []
        failed = False
        try:
            while pending or running:
                while pending and not failed and len(running) < parallel:
                    ready = next((j for j in pending if not j.gpus or free_gpus), None)
                    if ready is None:
                        break  # every pending job waits for a GPU
                    pending.remove(ready)
                    job = ready
                    env = dict(os.environ)
                    device = free_gpus.pop(0) if job.gpus else None
                    if device:
                        env["CUDA_VISIBLE_DEVICES"] = device
                    if threads:
                        env["TERAVOX_THREADS"] = str(threads)
                        env.setdefault("OMP_NUM_THREADS", str(threads))
                    peak_file = job.log.with_suffix(".peak") if job.log else None
                    if peak_file is not None:
                        peak_file.unlink(missing_ok=True)
                        env["TERAVOX_PEAK_FILE"] = str(peak_file)
                    if on_tick is not None and job.log is not None:
                        job.log.with_suffix(".progress").unlink(missing_ok=True)
                        env[PROGRESS_ENV] = str(job.log.with_suffix(".progress"))
                    log = open(job.log, "ab") if job.log else subprocess.DEVNULL  # noqa: SIM115
                    proc = subprocess.Popen(job.argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
                    running[proc.pid] = (job, proc, time.perf_counter(), log, device)
                if not running:
                    break
                pid, status, rusage = os.wait4(-1, 0 if on_tick is None else os.WNOHANG)
                if pid == 0:   # none ended yet: show how far the running ones are
                    on_tick({j.name: p for j, *_ in running.values()
                             if j.log is not None and (p := read_progress(j.log.with_suffix(".progress")))})
                    time.sleep(TICK_S)
                    continue
                if pid not in running:
                    continue
                job, proc, t0, log, device = running.pop(pid)
                if device is not None:
                    free_gpus.append(device)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if log is not subprocess.DEVNULL:
                    log.close()
                res = JobResult(job, proc.returncode, time.perf_counter() - t0, _peak(job, rusage))
                results.append(res)
                if on_done:
                    on_done(res)
                if not res.ok:
                    failed = True
        except BaseException:
            for _, proc, _, _, _ in running.values():
                proc.send_signal(signal.SIGTERM)
            for _, proc, _, _, _ in running.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise
        return results


def _peak(job: Job, rusage: os.struct_rusage) -> int:
    """The job's own peak RSS (it writes it at exit); the kernel's figure as a fallback,
    which also counts the high-water mark this process had when it started the job."""
    if job.log is not None:
        try:
            return int(job.log.with_suffix(".peak").read_text())
        except (OSError, ValueError):
            pass
    return rusage.ru_maxrss * 1024  # KiB on Linux
