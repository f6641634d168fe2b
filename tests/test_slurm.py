"""``teravox run --executor slurm`` against a real SLURM (tests/slurm_cluster.py).

The SLURM tests start a single-node SLURM once per session (root and Debian's slurm
packages needed; they skip otherwise) and run the real executor on it: the whole
pipeline compared with the local executor, a failing chunk and the resume after it, a
job SLURM kills for exceeding its memory and the retry with more, and Ctrl-C.
"""

from __future__ import annotations

import _thread
import dataclasses
import re
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import write_dxchange
from slurm_cluster import SlurmCluster, slurm  # noqa: F401

from teravox import graph
from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.errors import ParamError, StageError
from teravox.runner.executor import Job, LocalExecutor
from teravox.runner.pipeline import jobs_for, run_pipeline
from teravox.runner.slurm import SlurmExecutor, _exit_status, mem_option, sbatch_options

MIB = 2**20


def _params(**kw):  # noqa: ANN202
    return from_mapping({"proj_chunks": 2, "sino_chunks": 2, "memory": "1G", **kw})


def _executor(folder: Path, messages: list[str] | None = None) -> SlurmExecutor:
    # Tests poll squeue every 2 s at most (a facility would leave the default 30 s).
    return SlurmExecutor(folder, partition="debug", poll_s=2,
                         log=(messages.append if messages is not None else lambda _m: None))


def _mib(text: str) -> float:
    """SLURM's memory notation (1024M, 1G, 512K) in MiB."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?)B?", text.strip())
    assert m, text
    return float(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[m.group(2)]


def _volume(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["/exchange/data"][...]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from teravox.synth.scan import write_scan

    path = tmp_path_factory.mktemp("scan") / "scan.h5"
    write_scan(path, n_angles=90, n_rows=8, n_cols=64, progress=False)
    return path


# -- no SLURM needed ------------------------------------------------------------------------
def test_sbatch_options_and_mem() -> None:
    assert sbatch_options(["--qos=short", "--exclusive", "--constraint gpu"]) == {
        "qos": "short", "exclusive": True, "constraint": "gpu"}
    with pytest.raises(ParamError, match="long form"):
        sbatch_options(["-q short"])
    with pytest.raises(ParamError, match="--memory"):
        sbatch_options(["--mem=8G"])
    assert mem_option(2**30) == "1024M"
    assert mem_option(2**30 + 1) == "1025M"  # rounded up: the job never gets less than asked
    assert _exit_status("35072") == 137  # squeue's wait status of a SIGKILLed srun task
    assert _exit_status("0") == 0 and _exit_status("") == 0


def _script(ex: SlurmExecutor, stage: str, gpus: int) -> str:
    return ex._executor(stage, 2**30, 2, 600, gpus)._make_submission_file_text("true", "u")


def test_gpu_jobs_ask_for_a_gpu_on_the_gpu_partition(tmp_path: Path) -> None:
    import shutil

    pytest.importorskip("submitit")
    if shutil.which("srun") is None:
        pytest.skip("srun is not on PATH (the executor refuses to start without it)")
    ex = SlurmExecutor(tmp_path, partition="cpu", gpu_partition="gpu", log=lambda _m: None)
    gpu, cpu = _script(ex, "reconstruct", 1), _script(ex, "preprocess", 0)
    assert "#SBATCH --gres=gpu:1" in gpu and "#SBATCH --partition=gpu" in gpu
    assert "--gres" not in cpu and "#SBATCH --partition=cpu" in cpu
    # a type named through --sbatch replaces teravox's own request
    typed = SlurmExecutor(tmp_path, partition="all", extra=["--gres=gpu:a100:1"], log=lambda _m: None)
    script = _script(typed, "reconstruct", 1)
    assert script.count("--gres") == 1 and "--gres=gpu:a100:1" in script and "--partition=all" in script
    # the plan of a GPU backend makes reconstruct jobs that need one GPU each
    scan = write_dxchange(tmp_path / "s.h5", n_proj=48, rows=8, cols=32)
    from teravox.io import open_scan

    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping({"backend": "fourier-gpu", "gpu_memory": "8G",
                                                  "sino_chunks": 2}), workdir=tmp_path)
    stages = {st.name: st for st in graph.STAGES}
    recon, _ = jobs_for(stages["reconstruct"], plan, tmp_path / "plan.json", tmp_path, skip=False)
    prep, _ = jobs_for(stages["preprocess"], plan, tmp_path / "plan.json", tmp_path, skip=False)
    assert [j.gpus for j in recon] == [1, 1] and all(j.gpus == 0 for j in prep)


# -- on the local SLURM --------------------------------------------------------------------
@pytest.mark.slurm
def test_pipeline_on_slurm_matches_local(slurm: SlurmCluster, scan: Path, tmp_path: Path) -> None:  # noqa: F811
    local = run_pipeline(scan, tmp_path / "local", _params(), executor=LocalExecutor(2, 1),
                         progress=False, log=lambda _m: None)
    messages: list[str] = []
    out = tmp_path / "slurm"
    summary = run_pipeline(scan, out, _params(), executor=_executor(out / "slurm", messages),
                           progress=False, log=lambda _m: None)

    # Every job of every stage ran as a SLURM job, and reported its peak memory.
    ran = {s.stage: s.results for s in summary.stages}
    assert set(ran) == {s.name for s in graph.order(kinds=())} - {"plan"}
    for stage, results in ran.items():
        assert results and all(r.ok and r.job_id and r.peak_rss > 0 for r in results), stage
    # One stage's chunk jobs went out as one job array of two tasks.
    ids = sorted(r.job_id for r in ran["preprocess"])
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"], ids
    # The sbatch script submitit wrote, and SLURM itself, hold the plan's memory budget.
    budget = summary.plan["memory"]["budget"]
    assert budget == 2**30
    script = (out / "slurm" / "preprocess" / f"{array}_submission.sh").read_text()
    assert f"#SBATCH --mem={budget // MIB}M" in script
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --array=0-1" in script
    assert "#SBATCH --partition=debug" in script and "export TERAVOX_THREADS=1" in script
    shown = slurm.run("scontrol", "show", "job", array)
    mems = re.findall(r"MinMemoryNode=(\S+)", shown)
    assert len(mems) == 2 and all(_mib(m) == budget / MIB for m in mems), shown
    assert re.findall(r"JobState=(\S+)", shown) == ["COMPLETED", "COMPLETED"], shown
    # The SLURM log of each task is where the runner's logs are.
    assert f"SLURM job {array}_1" in (out / "logs" / "preprocess_0001.log").read_text()

    # Same volume, bit for bit, as the local executor's.
    np.testing.assert_array_equal(_volume(summary.volume), _volume(local.volume))


@pytest.mark.slurm
def test_failed_chunk_names_job_and_log_then_resume(slurm: SlurmCluster, scan: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # Chunk 1's job cannot put its finished file in place: it fails with a StageError.
    (out / "proj_0001.h5").mkdir()
    with pytest.raises(StageError) as err:
        run_pipeline(scan, out, _params(), executor=_executor(out / "slurm"), progress=False,
                     log=lambda _m: None)
    msg = str(err.value)
    m = re.search(r"preprocess\[1\] failed \(exit 2, job (\d+_1)\); see (\S+):", msg)
    assert m, msg
    job_id, log = m.group(1), Path(m.group(2))
    assert log == out / "logs" / "preprocess_0001.log"
    assert "proj_0001.h5" in msg and "Is a directory" in msg  # the stage's own message
    text = log.read_text()
    assert f"SLURM job {job_id}" in text and "cannot write the finished file" in text
    assert "FAILED" in slurm.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T")
    assert (out / "proj_0000.h5").is_file()  # the chunk that worked is kept for the resume
    assert not (out / "projections.h5").exists()  # collect never ran

    (out / "proj_0001.h5").rmdir()  # the fix
    summary = run_pipeline(scan, out, _params(), executor=_executor(out / "slurm"), progress=False,
                           log=lambda _m: None)
    pre = summary.stages[0]
    assert (pre.stage, pre.jobs, pre.skipped) == ("preprocess", 1, 1)
    assert [r.job.index for r in pre.results] == [1]
    assert summary.volume.is_file()


@pytest.fixture(scope="module")
def heavy_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, Path]:
    """A real preprocess job that holds ~100 MiB of data above the interpreter for seconds.

    One projection chunk of 180 × 64 × 1024 pixels in a single subchunk (the plan was made
    with a 4G budget), with zinger removal by a 5-pixel median filter, which keeps the
    data in memory for several seconds: long enough for SLURM's 1 s memory poll.
    """
    d = tmp_path_factory.mktemp("heavy")
    raw = write_dxchange(d / "heavy.h5", n_proj=180, rows=64, cols=1024)
    out = d / "out"
    (out / "logs").mkdir(parents=True)
    from teravox.stages.plan import make

    # dif 0 makes every pixel a candidate, so the median filter runs over whole images:
    # seconds at a steady peak rather than a spike SLURM's 1 s poll could miss
    params = from_mapping({"proj_chunks": 1, "sino_chunks": 1, "memory": "4G",
                           "outliers": True, "outlier_size": 5, "outlier_dif": 0.0})
    plan = make(str(raw), params, out)
    planmod.save(plan, out / "plan.json")
    [job], _ = jobs_for(graph.BY_NAME["preprocess"], plan, out / "plan.json", out, skip=False)
    return job, out


@pytest.fixture(scope="module")
def heavy_peak(heavy_job: tuple[Job, Path]) -> int:
    """The heavy job's real peak memory, measured here, so the tests hold whatever
    preprocess costs (bytes)."""
    job, out = heavy_job
    [local] = LocalExecutor(1, 1).run_jobs([dataclasses.replace(job, log=out / "logs" / "local.log")])
    # SLURM polls memory once a second: the job must hold its data longer than that.
    assert local.ok and local.seconds > 2, f"heavy job too short for the 1 s memory poll: {local}"
    (out / "proj_0000.h5").unlink()
    return local.peak_rss


@pytest.mark.slurm
def test_out_of_memory_is_retried_with_more(slurm: SlurmCluster, heavy_job: tuple[Job, Path],  # noqa: F811
                                            heavy_peak: int) -> None:
    job, out = heavy_job
    chunk = out / "proj_0000.h5"
    chunk.unlink(missing_ok=True)
    # Ask for 2/3 of the peak: SLURM must kill the job; the retry (x2) gets 4/3 of it.
    small = dataclasses.replace(job, memory=int(heavy_peak / 1.5), log=out / "logs" / "oom.log")
    messages: list[str] = []
    done: list = []
    results = _executor(out / "slurm", messages).run_jobs([small], on_done=done.append)

    assert [r.ok for r in results] == [True] and done == results  # on_done once, for the final result
    [res] = results
    first, second = res.extra["attempts"]
    assert res.job_id == second != first
    assert res.extra["memory"] == 2 * small.memory
    text = small.log.read_text()
    assert f"SLURM job {first}, --mem={mem_option(small.memory)}" in text
    assert "exceeded memory limit" in text.lower()  # SLURM's own words, not ours
    assert f"SLURM job {second}, --mem={mem_option(2 * small.memory)}" in text
    assert any("ran out of memory" in m and first in m for m in messages), messages
    assert slurm.run("squeue", "-h", "-t", "all", "-j", first, "-o", "%T").strip() in (
        "FAILED", "OUT_OF_MEMORY")
    assert chunk.is_file()
    assert res.peak_rss > small.memory  # what it really needed, as the job measured it


@pytest.mark.slurm
def test_out_of_memory_twice_fails_with_job_and_log(slurm: SlurmCluster,  # noqa: F811
                                                    heavy_job: tuple[Job, Path], heavy_peak: int) -> None:
    job, out = heavy_job
    (out / "proj_0000.h5").unlink(missing_ok=True)
    small = dataclasses.replace(job, memory=int(heavy_peak / 2), log=out / "logs" / "oom2.log")
    ex = SlurmExecutor(out / "slurm", poll_s=2, oom_factor=1.0, log=lambda _m: None)  # no more memory
    [res] = ex.run_jobs([small])
    assert not res.ok and res.returncode == 137 and res.extra["oom"]  # SIGKILLed, twice
    first, second = res.extra["attempts"]
    assert res.job_id == second != first
    assert small.log.read_text().lower().count("exceeded job memory limit") >= 2
    assert not (out / "proj_0000.h5").exists()


@pytest.mark.slurm
def test_ctrl_c_cancels_the_jobs(slurm: SlurmCluster, heavy_job: tuple[Job, Path]) -> None:  # noqa: F811
    job, out = heavy_job
    job = dataclasses.replace(job, log=out / "logs" / "ctrl_c.log")
    (out / "proj_0000.h5").unlink(missing_ok=True)
    seen: dict[str, str] = {}

    before = set(slurm.run("squeue", "-h", "-t", "all", "-o", "%i").split())

    def interrupt_when_submitted() -> None:
        # Ctrl-C as soon as SLURM has our job (not an earlier test's, which may still be
        # finishing): the executor may still be busy submitting.
        deadline = time.time() + 60
        while time.time() < deadline:
            new = set(slurm.run("squeue", "-h", "-t", "all", "-o", "%i").split()) - before
            if new:
                seen["id"] = new.pop()
                break
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_submitted, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        _executor(out / "slurm").run_jobs([job])
    assert "id" in seen
    state = ""
    for _ in range(40):
        state = slurm.run("squeue", "-h", "-t", "all", "-j", seen["id"], "-o", "%T").strip()
        if state == "CANCELLED":
            break
        time.sleep(0.5)
    assert state == "CANCELLED", job.log.read_text() if job.log.exists() else "no log"
    assert not (out / "proj_0000.h5").exists()


def test_slurm_script_usage() -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "local-slurm.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert proc.returncode == 2 and "start|stop|status" in proc.stderr
