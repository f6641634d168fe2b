"""The Nextflow pipeline, executed: ``nextflow run main.nf`` for real.

* ``-profile test`` end to end (SYNTH → PLAN → PREPROCESS × k → COLLECT → RECONSTRUCT × j →
  MERGE → REPORT → CLEANUP): the published volume is bit for bit the one ``teravox run``
  makes from the same scan and parameters, the report is published, the intermediates are
  gone, ``pipeline_info/`` holds what nf-core pipelines publish;
* ``-profile test,slurm`` against the single-node SLURM of ``tests/slurm_cluster.py``: every
  task is a SLURM job with the cores and memory ``conf/base.config`` gives its label;
* ``-resume`` after the run was killed: completed tasks are cached, the volume is identical;
* a stitched run (``--scan_sheet``), a ``.tori`` run, a scan whose name holds spaces, quotes
  and ``;``, and bad input (no scan, missing file, mistyped parameter) answered before any
  task runs;
* ``-profile test,apptainer`` in the CPU image, where Apptainer and the image are there.

Nextflow comes from Maven Central through ``bash .ci/install-nextflow.sh`` (into
``.tools/bin``; ``$TERAVOX_NEXTFLOW`` or ``nextflow`` on PATH also work); without it these
tests skip, saying so.  Every run uses ``--threads 2``: the reconstruction's float32
rounding depends on the number of threads the NUFFT splits a transform over, so equal
threads are what make "bit for bit" a fair demand.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import SlurmCluster, slurm  # noqa: E402, F401

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.nf"
INTERMEDIATE = re.compile(r"(proj|recon)_\d+\.h5|projections\.h5")
#: every run: the same threads as the `teravox run` it is compared with (see the docstring)
COMMON = ("--threads", "2")
#: Nextflow's JVM lives for a minute at most here: the quick JIT alone halves its CPU time
NXF_ENV = {"NXF_OPTS": os.environ.get("NXF_OPTS", "-XX:TieredStopAtLevel=1")}


def nextflow_exe() -> str | None:
    for candidate in (os.environ.get("TERAVOX_NEXTFLOW"), ROOT / ".tools" / "bin" / "nextflow",
                      shutil.which("nextflow")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


NEXTFLOW = nextflow_exe()
pytestmark = [
    pytest.mark.nextflow,
    pytest.mark.skipif(NEXTFLOW is None or shutil.which("java") is None,
                       reason="no Nextflow: `bash .ci/install-nextflow.sh` installs it from Maven "
                              "Central into .tools/bin (needs Java 17 and Maven)"),
]


@dataclass
class Run:
    """One ``nextflow run`` and where it put things."""

    proc: subprocess.CompletedProcess
    launch: Path
    outdir: Path
    work: Path

    @property
    def log(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def trace(self) -> list[dict[str, str]]:
        with open(self.outdir / "pipeline_info" / "execution_trace.txt", newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))

    def published(self, scan: str) -> Path:
        return self.outdir / scan


def nextflow(launch: Path, *args: str, profile: str = "test", env: dict | None = None,
             timeout: float = 900) -> Run:
    """``nextflow run main.nf -profile <profile> <args>`` launched from ``launch``."""
    launch.mkdir(parents=True, exist_ok=True)
    outdir, work = launch / "results", launch / "work"
    cmd = [NEXTFLOW, "run", str(MAIN), "-profile", profile, "-ansi-log", "false",
           "--outdir", str(outdir), "-w", str(work), *COMMON, *args]
    proc = subprocess.run(cmd, cwd=launch, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **NXF_ENV, **(env or {})})
    return Run(proc, launch, outdir, work)


def volume(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["/exchange/data"][...]


def teravox_run(scan: Path, out: Path, *flags: str) -> Path:
    """The volume ``teravox run`` makes of ``scan`` with these flags (one job at a time)."""
    proc = subprocess.run([sys.executable, "-m", "teravox.cli", "run", "--scan", str(scan),
                           "--out", str(out), "--no-progress", *COMMON, *flags],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / f"{scan.stem}_recon.h5"


def assert_succeeded(run: Run) -> None:
    assert run.proc.returncode == 0, run.log[-5000:]


def intermediates_left(work: Path) -> list[Path]:
    return [p for p in work.rglob("*.h5") if not p.is_symlink() and INTERMEDIATE.fullmatch(p.name)]


# ------------------------------------------------------------------------------------------
# -profile test, and the same scan through `teravox run`


@pytest.fixture(scope="module")
def test_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = nextflow(tmp_path_factory.mktemp("nf-test"))
    assert_succeeded(run)
    return run


def synth_scan(run: Run) -> Path:
    """The scan the SYNTH task made (it stays in its work directory)."""
    (task,) = [t for t in run.trace() if t["process"] == "SYNTH"]
    (scan,) = run.work.glob(f"{task['hash']}*/synthetic.h5")
    return scan


def test_test_profile_publishes_volume_report_plan_and_pipeline_info(test_run: Run) -> None:
    scan = test_run.published("synthetic")
    assert sorted(p.name for p in scan.iterdir()) == [
        "plan.json", "synthetic_recon.h5", "synthetic_report.pdf"]
    assert (scan / "synthetic_report.pdf").read_bytes()[:5] == b"%PDF-"
    info = test_run.outdir / "pipeline_info"
    for name in ("teravox_software_versions.yml", "execution_trace.txt", "execution_timeline.html",
                 "execution_report.html", "pipeline_dag.html"):
        assert (info / name).stat().st_size > 0, name
    versions = (info / "teravox_software_versions.yml").read_text()
    for process in ("PLAN", "PREPROCESS", "COLLECT", "RECONSTRUCT", "MERGE", "REPORT", "CLEANUP"):
        assert f'"{process}":\n    teravox: ' in versions, process
    assert re.search(r"Nextflow: \d+\.\d+\.\d+", versions)


def test_test_profile_runs_every_stage_once_per_chunk(test_run: Run) -> None:
    plan = json.loads((test_run.published("synthetic") / "plan.json").read_text())
    counts: dict[str, int] = {}
    for task in test_run.trace():
        assert task["status"] == "COMPLETED", task
        counts[task["process"]] = counts.get(task["process"], 0) + 1
    assert counts == {"SYNTH": 1, "PLAN": 1, "PREPROCESS": len(plan["proj_chunks"]), "COLLECT": 1,
                      "RECONSTRUCT": len(plan["sino_chunks"]), "MERGE": 1, "REPORT": 1, "CLEANUP": 1}
    assert len(plan["proj_chunks"]) == 2 and len(plan["sino_chunks"]) == 2  # conf/test.config


def test_test_profile_removes_the_intermediates(test_run: Run) -> None:
    assert not intermediates_left(test_run.work)
    published = {p.name for p in test_run.outdir.rglob("*") if p.is_file()}
    assert not {n for n in published if INTERMEDIATE.fullmatch(n)}


def test_test_profile_volume_is_teravox_runs(test_run: Run, tmp_path: Path) -> None:
    """Bit for bit: same scan, same parameters (conf/test.config's chunks and memory)."""
    local = teravox_run(synth_scan(test_run), tmp_path / "local", "--proj-chunks", "2",
                        "--sino-chunks", "2", "--memory", "1G")
    ours = volume(test_run.published("synthetic") / "synthetic_recon.h5")
    assert ours.shape == (16, 64, 64)
    np.testing.assert_array_equal(ours, volume(local))


def test_stub_run(tmp_path: Path) -> None:
    """-stub-run: the wiring with every process's stub: block (no stage runs)."""
    run = nextflow(tmp_path, "-stub-run")
    assert_succeeded(run)
    scan = run.published("synthetic")
    assert {p.name for p in scan.iterdir()} == {"plan.json", "stub_recon.h5", "stub_report.pdf"}
    assert (run.outdir / "pipeline_info" / "teravox_software_versions.yml").is_file()


# ------------------------------------------------------------------------------------------
# -resume after a kill


def test_resume_after_kill_reuses_completed_tasks(test_run: Run, tmp_path: Path) -> None:
    """Kill the run once a RECONSTRUCT task has completed; -resume caches what was done and
    gives the same volume as the uninterrupted run."""
    launch = tmp_path / "killed"
    launch.mkdir()
    trace = launch / "results" / "pipeline_info" / "execution_trace.txt"
    args = [NEXTFLOW, "run", str(MAIN), "-profile", "test", "-ansi-log", "false",
            "--outdir", str(launch / "results"), "-w", str(launch / "work"), *COMMON]
    with open(launch / "first.log", "w") as log:
        proc = subprocess.Popen(args, cwd=launch, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **NXF_ENV})
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                done = trace.read_text() if trace.exists() else ""
                if re.search(r"RECONSTRUCT \(synthetic j=\d\)\tCOMPLETED", done):
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "the run ended before it could be killed"
        finally:
            proc.send_signal(signal.SIGTERM)  # what a scheduler sends at a time limit
            proc.wait(timeout=120)
    first = [t for t in csv.DictReader(open(trace), delimiter="\t") if t["status"] == "COMPLETED"]
    completed = {t["name"] for t in first}
    assert "MERGE (synthetic)" not in completed, "killed too late to test anything"

    resumed = nextflow(launch, "-resume")
    assert_succeeded(resumed)
    cached = {t["name"] for t in resumed.trace() if t["status"] == "CACHED"}
    assert completed <= cached, f"completed before the kill but not cached: {completed - cached}"
    assert {"PREPROCESS (synthetic k=0)", "PREPROCESS (synthetic k=1)", "COLLECT (synthetic)"} <= cached
    assert any(name.startswith("RECONSTRUCT") for name in cached)
    np.testing.assert_array_equal(volume(resumed.published("synthetic") / "synthetic_recon.h5"),
                                  volume(test_run.published("synthetic") / "synthetic_recon.h5"))
    assert not intermediates_left(resumed.work)


# ------------------------------------------------------------------------------------------
# through SLURM

#: The test cluster answers at once: poll it every second, not every 30 s (conf/slurm.config).
FAST_POLLING = """
executor {
    pollInterval      = '1 sec'
    queueStatInterval = '1 sec'
    submitRateLimit   = '50/1s'
}
"""


def test_slurm_profile(slurm: SlurmCluster, test_run: Run, tmp_path: Path) -> None:  # noqa: F811
    """-profile test,slurm: each task a SLURM job asking for what conf/base.config gives its
    label (capped by the test profile's resourceLimits); the volume is the local run's."""
    config = tmp_path / "fast-polling.config"
    config.write_text(FAST_POLLING)
    run = nextflow(tmp_path / "launch", "-c", str(config), profile="test,slurm",
                   env={"SLURM_CONF": str(slurm.conf)})
    assert_succeeded(run)
    # conf/base.config → conf/test.config's caps (2 cpus, 4 GB); --memory 1G → 1.25 GB
    expected = {"SYNTH": (1, 2048), "PLAN": (1, 2048), "PREPROCESS": (2, 1280), "COLLECT": (1, 2048),
                "RECONSTRUCT": (2, 1280), "MERGE": (2, 1280), "REPORT": (2, 1280), "CLEANUP": (1, 1024)}
    tasks = run.trace()
    assert len(tasks) == 10
    for task in tasks:
        job = task["native_id"]
        assert job.isdigit(), task
        info = slurm.run("scontrol", "show", "job", job)
        cpus = int(re.search(r"NumCPUs=(\d+)", info).group(1))
        mem = re.search(r"MinMemoryNode=(\d+)([MG])", info)
        mem_mib = int(mem.group(1)) * (1024 if mem.group(2) == "G" else 1)
        assert re.search(r"JobState=COMPLETED", info), info
        assert (cpus, mem_mib) == expected[task["process"]], (task["name"], job, cpus, mem_mib)
    np.testing.assert_array_equal(volume(run.published("synthetic") / "synthetic_recon.h5"),
                                  volume(test_run.published("synthetic") / "synthetic_recon.h5"))


# ------------------------------------------------------------------------------------------
# other inputs: a scan sheet, a .tori, a scan with an awkward name


def test_scan_sheet_run(tmp_path: Path) -> None:
    data = tmp_path / "scans"
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(data), "--scans", "2",
                    "--overlap", "24", "--no-progress"], check=True, capture_output=True)
    run = nextflow(tmp_path / "launch", "--synth", "false", "--scan_sheet", str(data / "scans.csv"))
    assert_succeeded(run)
    names = {t["process"] for t in run.trace()}
    assert "STITCH_ALIGN" in names and "SYNTH" not in names
    out = run.published("scans")
    assert {p.name for p in out.iterdir()} == {"plan.json", "shifts.json", "scans_recon.h5",
                                               "scans_report.pdf"}
    shifts = json.loads((out / "shifts.json").read_text())
    assert len(shifts["scans"]) == 2
    vol = volume(out / "scans_recon.h5")
    assert vol.shape[1] > 64 and np.isfinite(vol).all() and vol.std() > 0  # the stitched width


def test_center_sweep_run(tmp_path: Path) -> None:
    """--center_sweep: CENTER_SWEEP after COLLECT draws the trial slices and nothing after
    COLLECT reconstructs a volume, as `teravox run --center-sweep` does."""
    scan = tmp_path / "sweep.h5"
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(scan), "--cols", "64", "--rows", "8",
                    "--angles", "60", "--center", "32.5", "--no-progress"], check=True, capture_output=True)
    run = nextflow(tmp_path / "launch", "--synth", "false", "--scan", str(scan), "--center_sweep", "30:35:0.5")
    assert_succeeded(run)
    tasks = [t["process"] for t in run.trace()]
    assert tasks.count("CENTER_SWEEP") == 1 and "COLLECT" in tasks
    assert not {"RECONSTRUCT", "MERGE", "REPORT", "CLEANUP"} & set(tasks), tasks
    out = run.published("sweep")
    assert {p.name for p in out.iterdir()} == {"plan.json", "sweep_center_sweep.pdf", "sweep_center_sweep.png"}
    assert (out / "sweep_center_sweep.pdf").read_bytes()[:5] == b"%PDF-"
    (task,) = [t for t in run.trace() if t["process"] == "CENTER_SWEEP"]
    (log,) = run.work.glob(f"{task['hash']}*/.command.out")
    said = log.read_text()
    assert "11 centres 30 … 35 px" in said, said
    choice = float(re.search(r"--center (\S+)", said).group(1))
    assert abs(choice - 32.5) < 0.25, said  # the automatic choice marked on the page


def test_vertical_stack_run(tmp_path: Path) -> None:
    """A scan sheet with three height steps: the levels run as acquisitions of their own, and
    Z_STITCH joins their volumes into the stack's, as `teravox run` does."""
    data = tmp_path / "stack"
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(data), "--heights", "3", "--rows", "16",
                    "--overlap", "6", "--angles", "30", "--cols", "48", "--no-progress"],
                   check=True, capture_output=True)
    run = nextflow(tmp_path / "launch", "--synth", "false", "--scan_sheet", str(data / "scans.csv"))
    assert_succeeded(run)
    tasks = [t["process"] for t in run.trace()]
    assert tasks.count("MERGE") == 3 and tasks.count("Z_STITCH") == 1 and "STITCH_ALIGN" not in tasks
    out = run.published("scans")
    assert {p.name for p in out.iterdir()} == {"plan.json", "scans_recon.h5", "scans_report.pdf", "zstitch.json"}
    doc = json.loads((out / "zstitch.json").read_text())
    assert [lv["name"] for lv in doc["levels"]] == ["scans_z00", "scans_z01", "scans_z02"] and not doc["warnings"]
    vol = volume(out / "scans_recon.h5")
    assert vol.shape[0] > 16 * 2 and np.isfinite(vol).all() and vol.std() > 0   # taller than two levels


def test_tori_run_with_an_awkward_scan_name(tmp_path: Path) -> None:
    """A .tori that names its scan (relative to the .tori), the scan's name full of shell
    syntax: the run works, the outputs carry the name, and nothing the name says runs."""
    data = tmp_path / "beam time"
    name = "a;touch PWNED;'q\" b"
    scan = data / f"{name}.h5"
    data.mkdir()
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(scan), "--no-progress"],
                   check=True, capture_output=True)
    tori = data / "settings.tori"
    tori.write_text(json.dumps({
        "file_definitions": {"data_file": scan.name, "data_path": "exchange/data"},
        "reconstruction_arguments": {"recon_kwargs": {"center": 31.5}}}))
    run = nextflow(tmp_path / "launch", "--synth", "false", "--tori", str(tori),
                   "--format", "hdf5,zarr,tiff")
    assert_succeeded(run)
    out = run.published(name)
    assert {p.name for p in out.iterdir()} == {
        "plan.json", f"{name}_recon.h5", f"{name}_report.pdf", f"{name}_recon.zarr",
        f"{name}_recon_tiff", f"{name}_recon_tiff.json"}
    # every format holds the same volume, assembled by MERGE from the RECONSTRUCT jobs' pieces
    from teravox.io.volume import open_volume

    hdf5 = volume(out / f"{name}_recon.h5")
    for store in (f"{name}_recon.zarr", f"{name}_recon_tiff"):
        with open_volume(out / store) as (data, _):
            np.testing.assert_array_equal(data[:], hdf5)
    assert not list(tmp_path.rglob("PWNED")), "a scan's name ran as a command"
    plan = json.loads((out / "plan.json").read_text())
    assert plan["center"]["value"] == 31.5
    local = subprocess.run([sys.executable, "-m", "teravox.cli", "run", "--tori", str(tori),
                            "--out", str(tmp_path / "local"), "--no-progress", *COMMON],
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    np.testing.assert_array_equal(volume(out / f"{name}_recon.h5"),
                                  volume(tmp_path / "local" / f"{name}_recon.h5"))


def test_tiff_folders_run(tmp_path: Path) -> None:
    """Projections, flats and darks as folders of TIFF frames, angles from a text file: staged
    as folders, the same volume as `teravox run` on them."""
    from teravox.synth.layouts import write_tiff

    scan = tmp_path / "ref.h5"
    subprocess.run([sys.executable, "-m", "teravox.cli", "synth", str(scan), "--no-progress"],
                   check=True, capture_output=True)
    tif = write_tiff(scan, tmp_path / "tif")
    flags = ["--center", "31.5", "--angles-unit", "deg"]
    run = nextflow(tmp_path / "launch", "--synth", "false", "--scan", str(tif["proj"]),
                   "--flat_file", str(tif["flats"]), "--dark_file", str(tif["darks"]),
                   "--angles_file", str(tif["angles"]), "--center", "31.5", "--angles_unit", "deg")
    assert_succeeded(run)
    out = run.published("proj")
    local = subprocess.run([sys.executable, "-m", "teravox.cli", "run", "--scan", str(tif["proj"]),
                            "--flat-file", str(tif["flats"]), "--dark-file", str(tif["darks"]),
                            "--angles-file", str(tif["angles"]), *flags, "--out", str(tmp_path / "local"),
                            "--no-progress", *COMMON], capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    np.testing.assert_array_equal(volume(out / "proj_recon.h5"), volume(tmp_path / "local" / "proj_recon.h5"))


# ------------------------------------------------------------------------------------------
# bad input: one clear line from the workflow, and no task started

BAD = {
    "no-scan": ((), "give --scan FILE"),
    "missing-scan": (("--scan", "/nonexistent/scan.h5"), "--scan /nonexistent/scan.h5: no such file"),
    "sheet-is-a-folder": (("--scan_sheet", "{tmp}"), "--scan_sheet {tmp}: is a folder, expected a file"),
    "scan-and-sheet": (("--scan", "{tmp}/x.h5", "--scan_sheet", "{tmp}/s.csv"),
                       "either --scan or --scan_sheet"),
    "mistyped-parameter": (("--scan", "{tmp}/x.h5", "--centre", "12"),
                           "unknown parameter(s) --centre (did you mean --center?)"),
    "dashes": (("--scan", "{tmp}/x.h5", "--proj-chunks", "3"), "write parameters with underscores: --proj_chunks"),
    "scan-named-like-the-pipelines-files": (("--scan", "{tmp}/projections.h5"),
                                            "cannot be named projections.h5"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_stops_before_any_task(case: str, tmp_path: Path) -> None:
    args, message = BAD[case]
    for name in ("x.h5", "projections.h5"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "s.csv").write_text("file,position_px\nx.h5,0\n")
    run = nextflow(tmp_path / "launch", "--synth", "false",
                   *(a.format(tmp=tmp_path) for a in args), profile="standard")
    assert run.proc.returncode != 0
    lines = [ln for ln in run.log.splitlines() if ln.startswith("teravox: ")]
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], run.log[-3000:]
    assert not (tmp_path / "launch" / "work").exists() or not any((tmp_path / "launch" / "work").iterdir())


def test_bad_parameter_value_is_the_stage_message(tmp_path: Path) -> None:
    """A value only teravox can judge: PLAN fails with teravox's one line, nothing after it runs."""
    run = nextflow(tmp_path / "launch", "--memory", "lots")
    assert run.proc.returncode != 0
    assert re.search(r"teravox plan: error: memory: .*lots", run.log), run.log[-3000:]
    ran = {t["process"] for t in run.trace()}
    assert ran <= {"SYNTH", "PLAN"}, ran


# ------------------------------------------------------------------------------------------
# in the CPU image


def apptainer_image() -> Path | None:
    from teravox import __version__

    image = Path(os.environ.get("TERAVOX_CPU_IMAGE", ROOT / "containers" / f"teravox-cpu-{__version__}.sif"))
    return image if shutil.which("apptainer") and image.is_file() else None


@pytest.mark.skipif(apptainer_image() is None,
                    reason="no Apptainer or no CPU image: `bash .ci/install-apptainer.sh` builds "
                           "Apptainer, `containers/build.sh cpu` the image")
@pytest.mark.apptainer
def test_apptainer_profile(test_run: Run, tmp_path: Path) -> None:
    image = apptainer_image()
    run = nextflow(tmp_path / "launch", "--container_cpu", str(image), profile="test,apptainer")
    assert_succeeded(run)
    for task in (tmp_path / "launch" / "work").glob("*/*/.command.run"):
        assert "apptainer exec" in task.read_text() or "singularity exec" in task.read_text(), task
    versions = (run.outdir / "pipeline_info" / "teravox_software_versions.yml").read_text()
    assert "python: 3." in versions
    ours = volume(run.published("synthetic") / "synthetic_recon.h5")
    reference = volume(test_run.published("synthetic") / "synthetic_recon.h5")
    # the image pins its own NumPy/SciPy/ducc0 builds: equal to float32 rounding
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * float(np.ptp(reference)))
