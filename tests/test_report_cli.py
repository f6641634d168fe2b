"""What a user reads: the report's content and layout, and ``teravox run``'s terminal output
and log (issue 19)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from teravox.report import _TITLE, ReportFacts, _block_lines, _fact_blocks, _place_blocks
from teravox.stages.report import value_histogram
from teravox.synth.scan import write_scan

pypdf = pytest.importorskip("pypdf")

FLAGS = ["--center", "auto", "--stripe-recon", "sorting", "--stripe-sm-size", "5", "--dtype", "uint16",
         "--sino-chunks", "2", "--keep-intermediates", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A 4-row scan with a dead and a hot column, reconstructed to uint16, intermediates kept."""
    d = tmp_path_factory.mktemp("r19")
    scan = d / "few.h5"
    truth = write_scan(scan, n_angles=90, n_rows=4, n_cols=64, stripes=True, seed=5, progress=False)
    with h5py.File(scan, "a") as f:   # an exposure, as beamline files record it
        f["/measurement/instrument/detector/exposure_time"] = 80.0
        f["/measurement/instrument/detector/exposure_time"].attrs["units"] = "ms"
    out = d / "out"
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "run", "--scan", "few.h5", "--out", "out", *FLAGS],
                         capture_output=True, text=True, cwd=d)
    assert res.returncode == 0, res.stderr + res.stdout
    pages = [p.extract_text() for p in pypdf.PdfReader(out / "few_report.pdf").pages]
    return {"dir": d, "scan": scan, "out": out, "truth": truth, "res": res, "pages": pages}


def test_log_records_the_whole_command(run):
    first = (run["out"] / "teravox-run.log").read_text().splitlines()[0]
    command = first.split(" ", 1)[1]   # after the time
    assert command.startswith("teravox run --scan few.h5 --out out " + " ".join(FLAGS)), first
    assert f"# in {run['dir']}" in command


def test_summary_gives_the_centre_and_how_to_reproduce(run):
    out = run["res"].stdout
    centre = re.search(r"rotation centre (\d+\.\d+) px \(auto.*confidence (0\.\d+)\)", out)
    assert centre, out
    assert "to reproduce: teravox run --scan few.h5 --out out --center auto" in out
    assert f"add --center {float(centre.group(1)):.2f}" in out
    assert "plan.json" in out and "teravox 0." in out


def test_first_page_facts(run):
    page1 = run["pages"][0]
    for needle in ("10 flats, 10 darks", "80 ms per frame", "Propagation", "automatic: Vo",
                   "confidence", "Patched pixels", "outliers replaced"):
        assert needle in page1, needle


def test_backend_named_alike_on_every_page(run):
    everything = "\n".join(run["pages"])
    assert "backend = auto" not in everything
    assert "fourier (chosen by auto)" in run["pages"][0] and "backend = fourier (chosen by auto)" in run["pages"][1]


def test_few_rows_are_shown_as_profiles(run):
    assert run["pages"][0].count("as profiles") == 2
    assert "stretched" not in run["pages"][0]


def test_sinogram_as_reconstructed_and_integer_histogram(run):
    """The report's sinogram is pass 2's (stripes removed: the dead column is gone from it),
    and the uint16 histogram has the codes' spread, not an empty or single bar."""
    from teravox import plan as planmod
    from teravox.stages.report import gather

    plan = planmod.load(run["out"] / "plan.json")
    data = gather(plan, run["out"] / "projections.h5", run["out"] / "few_recon.h5")
    assert "stripes removed" in data.sinogram_steps and "−log" in data.sinogram_steps
    truth = run["truth"]
    dead = int(np.asarray(truth["stripe_columns"])[np.argmin(truth["stripe_gains"])])
    with h5py.File(run["out"] / "projections.h5") as f:
        before = -np.log(np.clip(f["/exchange/data"][:, data.sinogram_row, :], 1e-6, None))

    def step(sino: np.ndarray) -> float:   # the dead column against its neighbours
        m = sino.mean(axis=0)
        return abs(m[dead] - (m[dead - 2] + m[dead + 2]) / 2)

    assert step(data.corrected_sinogram) < step(before) / 5, (step(data.corrected_sinogram), step(before))
    counts, edges = data.histogram
    assert counts.sum() > 0 and np.count_nonzero(counts) > 20
    assert data.values_are_codes


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_histogram_covers_the_codes(dtype):
    top = np.iinfo(dtype).max
    sample = np.array([0, 1, 1, 2, top // 2, top - 1, top, top], dtype=dtype)
    counts, edges = value_histogram(sample)
    assert counts.sum() == sample.size                 # every value counted, the top code too
    assert edges[0] == 0 and edges[-1] == top + 1
    assert counts[-1] >= 2 and counts[0] >= 1
    assert np.count_nonzero(counts) >= 3


def test_no_section_is_split_across_columns():
    """Blocks go whole into columns; one too long for any column continues under its title."""
    facts = ReportFacts(
        input_file="/data/" + "deep/" * 30 + "scan.h5", shape=(3600, 2160, 2560), n_angles=3600,
        angle_range_deg=(0.0, 180.0), center=1280.3, center_source="given", backend="fourier",
        corrections=[(f"correction {i}", {"alpha": i, "beta": "x" * 40}) for i in range(30)],
        timings={f"stage{i}": 1.0 for i in range(12)},
        files_read=[f"/data/raw/part_{i:03d}.h5: projections" for i in range(8)])
    blocks = [piece for b in _fact_blocks(facts) for piece in _block_lines(b)]
    columns: list[list[str]] = []
    rest = blocks
    per = 22
    while rest:
        cols, rest = _place_blocks(rest, per_column=per, columns=3)
        assert cols, "no progress: a block fits no column"
        columns += cols
        per = 40
    def holds(column: list[str], block: list[str]) -> bool:
        return any(column[i:i + len(block)] == block for i in range(len(column)))

    for block in blocks:   # each whole in one column
        assert any(holds(c, block) for c in columns), block[0]
    titles = [b[0] for b in blocks]
    assert any("(continued)" in t for t in titles) and all(t.startswith(_TITLE) for t in titles)
    software = next(c for c in columns if _TITLE + "Software" in c)
    assert any(line.startswith("matplotlib") for line in software)


def test_interrupted_run_says_rerun_resumes(tmp_path, monkeypatch, capsys):
    import teravox.runner.pipeline as pipeline
    from teravox.stages import run as run_stage

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    rc = run_stage.main(["--scan", str(tmp_path / "s.h5"), "--out", str(tmp_path / "o"), "--jobs", "2"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "rerun the same command to resume" in err and err.count("\n") == 1, err
    log = (tmp_path / "o" / "teravox-run.log").read_text()
    assert "--jobs 2" in log.splitlines()[0] and "rerun the same command" in log


def test_run_help_is_clean():
    from teravox.stages.run import build_parser

    text = build_parser().format_help()
    assert "(default: None)" not in text
    assert ":mod:" not in text and "``" not in text
    options = re.split(r"\n  (?=-)", text)
    doubled = [o for o in options if o.lower().count("default") > 1]
    assert not doubled, doubled[:3]
    assert "(default: mean)" in text   # a default the help does not state itself is still given


def test_exposure_read_with_its_units(tmp_path: Path, capsys):
    from teravox.io import open_scan
    from teravox.stages import info

    scan = tmp_path / "e.h5"
    write_scan(scan, size="tiny", progress=False)
    with h5py.File(scan, "a") as f:
        f["/measurement/instrument/detector/exposure_time"] = 0.25
    with open_scan(scan) as s:
        value = s.metadata["exposure_s"]
    assert value.value == 0.25 and "assumed s" in value.source
    assert info.main([str(scan)]) == 0
    assert re.search(r"exposure +250 ms", capsys.readouterr().out)


def test_a_job_reports_its_progress_to_the_run(tmp_path):
    """A job's bars write its progress; the local executor reads it while the job runs."""
    from teravox.runner.executor import Job, LocalExecutor

    script = ("import time\nfrom teravox.progress import bar\n"
              "for _ in bar(range(6), desc='centre search', enable=False):\n    time.sleep(0.25)\n")

    class Script(Job):
        def argv(self) -> list[str]:
            return [sys.executable, "-c", script]

    ticks: list[dict] = []
    results = LocalExecutor(1).run_jobs([Script("collect", None, [], 1, log=tmp_path / "collect.log")],
                                        on_tick=ticks.append)
    assert results[0].ok
    seen = [p for t in ticks for p in t.values()]
    assert any(0 < f < 1 and what == "centre search" for f, what in seen), seen


def test_stage_bar_moves_within_a_single_job(monkeypatch):
    import io

    from teravox.progress import StageBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    shown = StageBar("reconstruct", 1)
    shown.update({"reconstruct": (0.4, "reconstruct chunk 0")})
    assert "40%" in err.getvalue() and "reconstruct · chunk 0" in err.getvalue()
    assert "remaining" not in err.getvalue() and "<" in err.getvalue()   # tqdm's ETA field
    shown.job_done()
    assert "100%" in err.getvalue()
    shown.close()
