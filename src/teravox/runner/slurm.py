"""SLURM executor for ``teravox run --executor slurm``: each stage's jobs as one job array.

The jobs of one :meth:`SlurmExecutor.run_jobs` call (one stage's chunk jobs) go out as a
single SLURM job array through `submitit <https://github.com/facebookincubator/submitit>`_,
with ``--mem`` = the plan's memory budget, ``--cpus-per-task``, ``--time``, the partition,
the account and any extra sbatch options.  Each array task runs :func:`run_stage`, i.e.
``teravox <stage> <args>`` in the SLURM job, exactly the command the local executor and
Nextflow run.

State comes from ``squeue`` (which works whether or not the cluster keeps accounting;
``sacct``, which submitit itself polls, does not) and from the result file submitit writes
when the function returns.  A task that SLURM killed for exceeding its memory is
resubmitted once with twice the memory; any other failure stops the stage: the tasks not
yet started are cancelled, the running ones are waited for, and the failed
:class:`~teravox.runner.executor.JobResult` carries the SLURM job id and the log.  Each
task's SLURM log is appended to ``Job.log`` (``<out>/logs/<stage>_<k>.log``) when it ends,
so the logs sit where the local executor puts them.  Ctrl-C cancels the stage's jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from teravox.errors import ParamError, StageError
from teravox.runner.executor import Job, JobResult

#: squeue states after which a job will not run again.
TERMINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "SPECIAL_EXIT", "TIMEOUT", "REVOKED",
    "GONE",  # ours: squeue no longer knows the job (purged after MinJobAge)
})  # not PREEMPTED: a preempted job is usually requeued and runs again

#: What SLURM writes in a job's log when it killed the job for its memory: the polling
#: enforcement (JobAcctGatherParams=OverMemoryKill) and the cgroup OOM killer.
OOM_MARKERS = ("exceeded job memory limit", "exceeded memory limit", "oom-kill", "oom_kill",
               "out_of_memory", "out-of-memory", "memoryerror")

#: sbatch options that the executor sets from each Job, so --sbatch may not override them.
_RESERVED = {"mem", "mem-per-cpu", "mem-per-gpu", "cpus-per-task", "array", "output", "error",
             "ntasks", "ntasks-per-node", "nodes"}


class StageJobFailed(RuntimeError):
    """Raised inside the SLURM job when the stage exits non-zero, so SLURM marks it FAILED."""


class _LastLine:
    """A stderr wrapper that passes everything through and remembers the last line."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.last = line.strip()
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_stage(stage: str, args: list[str], threads: int) -> dict[str, float]:
    """The SLURM job's body: ``teravox <stage> <args>``; raises if the stage fails.

    Returns the stage's wall time and the process's peak resident memory (bytes).
    """
    from teravox.cli import main
    from teravox.resources import peak_rss

    # The sbatch script already exported these before Python (and numpy) started; set
    # them again for callers that run this function another way.
    os.environ["TERAVOX_THREADS"] = str(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # submitit ignores SIGTERM (it waits for USR2 to checkpoint); a stage has nothing to
    # checkpoint, so scancel and the time limit should stop it now, as they would stop
    # ``teravox <stage>`` run by hand, unwinding so that temporary files are removed.
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.perf_counter()
    err = _LastLine(sys.stderr)
    sys.stderr = err
    try:
        status = main([stage, *args])
    finally:
        sys.stderr = err.stream
    if status:
        # The stage's own one-line error is the useful part of the message.
        raise StageJobFailed(f"teravox {stage} exited with status {status}"
                             + (f": {err.last}" if err.last else ""))
    return {"seconds": time.perf_counter() - t0,
            "peak_rss": float(peak_rss())}


def sbatch_options(extra: Sequence[str]) -> dict[str, str | bool]:
    """``["--qos=short", "--exclusive", "--constraint gpu"]`` → submitit's additional parameters."""
    out: dict[str, str | bool] = {}
    for opt in extra:
        opt = opt.strip()
        if not opt.startswith("--"):
            raise ParamError(f"sbatch option {opt!r}: give the long form, e.g. --qos=short")
        key, sep, value = opt[2:].partition("=")
        if not sep and " " in key:
            key, value = key.split(None, 1)
            sep = " "
        key = key.strip()
        if key in _RESERVED:
            raise ParamError(f"sbatch option --{key}: teravox sets it from the plan "
                             "(use --memory for the memory budget)")
        out[key] = value.strip() if sep else True
    return out


def mem_option(nbytes: int) -> str:
    """``--mem`` value in MiB (SLURM's unit), rounded up so the job gets at least ``nbytes``."""
    return f"{max(1, math.ceil(nbytes / 2**20))}M"


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as exc:
        raise ParamError("executor slurm needs submitit: pip install 'teravox[slurm]'") from exc
    return submitit


def _make_watcher(delay_s: float) -> Any:
    """A submitit InfoWatcher that asks ``squeue`` instead of ``sacct``."""
    core = _submitit().core.core

    class SqueueWatcher(core.InfoWatcher):
        """Job states from one ``squeue`` call for every job of the run.

        squeue knows running jobs and, for MinJobAge seconds (300 by default), finished
        ones with their final state; that is all a poller needs, and it works on clusters
        without accounting.  A job squeue no longer knows gets the state ``GONE``.
        """

        def _make_command(self) -> list[str] | None:
            ids = sorted({j.split("_")[0] for j in self._registered - self._finished})
            if not ids:
                return None
            # JobArrayID shows 123_4 for array tasks; -r lists every task on its own line.
            return ["squeue", "--noheader", "--array", "--states=all", "--jobs", ",".join(ids),
                    "--Format=JobArrayID:48,State:24,exit_code:12,Reason:200"]

        def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
            if isinstance(string, bytes):
                string = string.decode(errors="replace")
            info: dict[str, dict[str, str]] = {}
            for line in string.splitlines():
                parts = line.split(None, 3)
                if len(parts) >= 2:
                    info[parts[0]] = {"State": parts[1],
                                      "ExitCode": parts[2] if len(parts) > 2 else "",
                                      "Reason": parts[3].strip() if len(parts) > 3 else ""}
            return info

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
            except subprocess.TimeoutExpired:
                proc = subprocess.CompletedProcess(command, 1, "", "squeue timed out")
            if proc.returncode == 0:
                listed = self.read_info(proc.stdout)
            elif "invalid job id" in proc.stderr.lower():
                listed = {}  # none of the ids is known any more
            else:
                listed = None  # squeue did not answer (controller busy?): keep what we know
            if listed is not None:
                self._info_dict.update(listed)
                # A job squeue no longer lists has left the controller: it will not run again.
                for job_id in self._registered - self._finished:
                    if job_id not in listed and _state(self._info_dict.get(job_id)) not in TERMINAL_STATES:
                        self._info_dict[job_id] = {"State": "GONE", "ExitCode": "", "Reason": ""}
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def get_state(self, job_id: str, mode: str = "standard") -> str:
            return _state(self.get_info(job_id, mode=mode))

        def is_done(self, job_id: str, mode: str = "standard") -> bool:
            return self.get_state(job_id, mode=mode) in TERMINAL_STATES

    return SqueueWatcher(delay_s=delay_s)


@dataclasses.dataclass
class _Task:
    """One Job in flight: its submitit job and how it got there."""

    job: Job
    sjob: Any                 # submitit.SlurmJob
    memory: int               # bytes asked for this attempt
    attempt: int              # 0, or 1 for the memory retry
    submitted: float
    history: list[str] = dataclasses.field(default_factory=list)  # earlier attempts' job ids
    error_seen: float | None = None  # when the error result appeared (we wait for the log)


class SlurmExecutor:
    """Runs each call's jobs as one SLURM job array (see the module docstring).

    ``folder`` holds submitit's files (sbatch scripts, pickles, SLURM logs); it must be on
    a filesystem the compute nodes share, as the output directory is.
    """

    name = "slurm"

    def __init__(self, folder: str | os.PathLike[str], *, partition: str | None = None,
                 gpu_partition: str | None = None,
                 account: str | None = None, extra: Sequence[str] = (), oom_factor: float = 2.0,
                 poll_s: float = 30.0, python: str | None = None,
                 log: Callable[[str], None] | None = None):
        self.folder = Path(folder).resolve()
        self.partition = partition
        self.gpu_partition = gpu_partition  # for jobs that need a GPU (default: partition)
        self.account = account
        self.extra = sbatch_options(extra)
        self.oom_factor = oom_factor
        self.poll_s = poll_s          # longest pause between two squeue calls
        self.python = python          # how the job starts Python (default: this interpreter)
        self.log = log or (lambda msg: print(f"teravox: slurm: {msg}", file=sys.stderr, flush=True))
        submitit = _submitit()
        if submitit.SlurmExecutor.affinity() < 0:
            raise ParamError("executor slurm: srun is not on PATH; run on a SLURM login node")
        self._watcher = _make_watcher(poll_s)
        self._cancelled_pending: set[str] = set()  # arrays whose pending tasks we cancelled

    # -- submission ---------------------------------------------------------------------
    def _executor(self, stage: str, memory: int, cpus: int, time_s: int, gpus: int = 0) -> Any:
        submitit = _submitit()
        ex = submitit.SlurmExecutor(folder=self.folder / stage, python=self.python)
        params: dict[str, Any] = dict(
            job_name=f"teravox-{stage}", mem=mem_option(memory), cpus_per_task=max(1, cpus),
            time=max(1, math.ceil(time_s / 60)), stderr_to_stdout=True,
            # Threads for numpy/finufft must be set before Python starts in the job.
            setup=[f"export TERAVOX_THREADS={max(1, cpus)}",
                   f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{max(1, cpus)}}}"],
            wckey=None,  # submitit's default --wckey=submitit fails where wckeys are enforced
        )
        if gpus and not any(k in self.extra for k in ("gres", "gpus", "gpus-per-node")):
            params["gres"] = f"gpu:{gpus}"  # as conf/gpu.config asks Nextflow's; --sbatch may name a type
        partition = (self.gpu_partition or self.partition) if gpus else self.partition
        if partition:
            params["partition"] = partition
        if self.account:
            params["account"] = self.account
        if self.extra:
            params["additional_parameters"] = dict(self.extra)
        ex.update_parameters(**params)
        return ex

    def _submit(self, jobs: list[Job], memory: int, attempt: int) -> list[_Task]:
        """One job array (a single job if there is one) for ``jobs``, all with ``memory``."""
        first = jobs[0]
        ex = self._executor(first.stage, memory, first.cpus, max(j.time_s for j in jobs), first.gpus)
        try:
            sjobs = ex.map_array(run_stage, [j.stage for j in jobs], [list(j.args) for j in jobs],
                                 [max(1, j.cpus) for j in jobs])
        except Exception as exc:  # submitit's FailedJobError carries sbatch's stderr
            raise StageError(f"sbatch refused the {first.stage} job(s): "
                             f"{str(exc).strip() or type(exc).__name__}") from exc
        now = time.time()
        tasks = []
        for job, sj in zip(jobs, sjobs, strict=True):
            sj.watcher = self._watcher  # squeue, not sacct (see _make_watcher)
            self._watcher.register_job(sj.job_id)
            tasks.append(_Task(job, sj, memory, attempt, now))
        ids = sjobs[0].job_id.split("_")[0]
        self.log(f"{first.stage}: {len(jobs)} job(s) submitted as SLURM job {ids} "
                 f"(--mem={mem_option(memory)}, --cpus-per-task={max(1, first.cpus)}"
                 + (f", --gres=gpu:{first.gpus}" if first.gpus else "") + ")")
        return tasks

    # -- the run ------------------------------------------------------------------------
    def run_jobs(self, jobs: list[Job], on_done: Callable[[JobResult], Any] | None = None
                 ) -> list[JobResult]:
        """Submit ``jobs`` as one array per (memory, cpus, gpus), wait, retry OOM once, report."""
        if not jobs:
            return []
        groups: dict[tuple[int, int, int], list[Job]] = {}
        for j in jobs:
            groups.setdefault((j.memory, j.cpus, j.gpus), []).append(j)
        self._cancelled_pending = set()
        running: list[_Task] = []
        results: list[JobResult] = []
        failed = False
        try:
            for (memory, _, _), group in groups.items():
                with _sigint_deferred():
                    running += self._submit(group, memory, 0)
            while running:
                time.sleep(1.0)  # one listing per folder a second; squeue is rate-limited
                written = _listing({t.sjob.paths.folder for t in running})
                for task in list(running):
                    paths = task.sjob.paths
                    if (paths.result_pickle.name not in written.get(paths.folder, ())
                            and not self._watcher.is_done(task.sjob.job_id)):
                        continue
                    res = self._outcome(task)
                    if res is None:  # error result written, log not complete yet
                        continue
                    running.remove(task)
                    if res.extra.get("not_started"):
                        continue
                    if not res.ok and res.extra.get("oom") and task.attempt == 0 and not failed:
                        with _sigint_deferred():
                            running += self._retry(task, res)
                        continue
                    results.append(res)
                    if on_done:
                        on_done(res)
                    if not res.ok and not failed:
                        failed = True
                        self._cancel(running, pending_only=True)
        except BaseException:
            # Ctrl-C (or any error here): nothing of this run may keep running on the cluster.
            with _sigint_deferred():
                self._cancel(running, pending_only=False)
            raise
        return results

    def _retry(self, task: _Task, res: JobResult) -> list[_Task]:
        memory = math.ceil(task.memory * self.oom_factor)
        self.log(f"{task.job.name}: SLURM job {task.sjob.job_id} ran out of memory "
                 f"(--mem={mem_option(task.memory)}); retrying once with --mem={mem_option(memory)}")
        [new] = self._submit([task.job], memory, 1)
        new.history = [*task.history, task.sjob.job_id]
        return [new]

    def _cancel(self, tasks: list[_Task], pending_only: bool) -> None:
        """scancel this run's array(s); only their pending tasks after a failure."""
        ids = sorted({t.sjob.job_id.split("_")[0] for t in tasks})
        if not ids:
            return
        cmd = ["scancel", *(["--state=PENDING"] if pending_only else []), *ids]
        subprocess.run(cmd, capture_output=True, check=False)
        if pending_only:
            self._cancelled_pending.update(ids)
            self.log(f"a job failed: pending jobs of SLURM job(s) {', '.join(ids)} cancelled, "
                     "waiting for the running ones")
        else:
            self.log(f"cancelled SLURM job(s) {', '.join(ids)}")
            for t in tasks:
                self._copy_log(t, note="cancelled")

    def _outcome(self, task: _Task) -> JobResult | None:
        """The JobResult of a finished task, or None while its log may still grow."""
        from submitit.core import utils as sutils

        sj = task.sjob
        paths = sj.paths
        state_info = self._watcher.get_info(sj.job_id, mode="cache")
        state = _state(state_info)
        extra: dict[str, Any] = {"slurm_job_id": sj.job_id, "slurm_log": str(paths.stdout),
                                 "memory": task.memory, "attempts": [*task.history, sj.job_id]}
        elapsed = time.time() - task.submitted
        if paths.result_pickle.exists():
            kind, value = sutils.pickle_load(paths.result_pickle)
            if kind == "success":
                self._copy_log(task)
                # Only the log and the sbatch script are worth keeping of a job that worked.
                paths.result_pickle.unlink(missing_ok=True)
                paths.submitted_pickle.unlink(missing_ok=True)
                return JobResult(task.job, 0, float(value.get("seconds", elapsed)),
                                 int(value.get("peak_rss", 0)), sj.job_id, extra)
            # An error result is written before SLURM's own lines reach the log: wait for
            # the job to end (or 30 s) so the log we copy is complete.
            if state not in TERMINAL_STATES:
                task.error_seen = task.error_seen or time.time()
                if time.time() - task.error_seen < 30:
                    self._watcher.update_if_long_enough("standard")
                    return None
            extra["slurm_state"] = state
            trace = str(value)
            m = re.search(r"exited with status (\d+)", trace)
            code = int(m.group(1)) if m else 1
            extra["error"] = trace.strip().splitlines()[-1] if trace.strip() else ""
        else:
            if state == "CANCELLED" and sj.job_id.split("_")[0] in self._cancelled_pending:
                extra["not_started"] = True  # we cancelled it while pending, after a failure
                return JobResult(task.job, 1, 0.0, 0, sj.job_id, extra)
            # Killed before Python could write a result: SLURM's state and log say why.
            extra["slurm_state"] = state
            code = _exit_status(state_info.get("ExitCode", "")) or 1
            extra["error"] = f"SLURM state {state}" + (
                f" ({state_info['Reason']})" if state_info.get("Reason") not in (None, "", "None") else "")
            trace = ""
        text = self._copy_log(task)
        extra["oom"] = state == "OUT_OF_MEMORY" or any(
            m in (text + trace).lower() for m in OOM_MARKERS)
        return JobResult(task.job, code, elapsed, 0, sj.job_id, extra)

    def _copy_log(self, task: _Task, note: str = "") -> str:
        """Append the task's SLURM log to Job.log (where the runner and users look)."""
        src = task.sjob.paths.stdout
        text = src.read_text(errors="replace") if src.exists() else ""
        if task.job.log is not None:
            dst = Path(task.job.log)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(dst, "a") as f:
                f.write(f"==> SLURM job {task.sjob.job_id}, --mem={mem_option(task.memory)}"
                        f"{', ' + note if note else ''}: {src} <==\n{text}")
                if text and not text.endswith("\n"):
                    f.write("\n")
        return text


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while jobs are being submitted or cancelled, then raise it.

    A KeyboardInterrupt between sbatch's answer and our noting the job id would leave
    jobs on the cluster that nobody cancels.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def _listing(folders: set[Path]) -> dict[Path, set[str]]:
    """File names in each folder (one directory read instead of a stat per job)."""
    out: dict[Path, set[str]] = {}
    for folder in folders:
        try:
            # As submitit does: touching the folder makes NFS clients drop a stale listing.
            folder.chmod(folder.stat().st_mode)
        except OSError:
            pass
        try:
            out[folder] = {e.name for e in os.scandir(folder)}
        except OSError:
            out[folder] = set()
    return out


def _state(info: dict[str, str] | None) -> str:
    """The state word of a squeue record ("CANCELLED by 0" → "CANCELLED")."""
    words = ((info or {}).get("State") or "UNKNOWN").split()
    return words[0].upper() if words else "UNKNOWN"


def _exit_status(raw: str) -> int:
    """squeue's exit_code (a wait status) → the shell's exit status (128+signal if killed)."""
    try:
        status = int(raw)
    except ValueError:
        return 0
    try:
        code = os.waitstatus_to_exitcode(status)
    except ValueError:
        return 0
    return 128 - code if code < 0 else code

