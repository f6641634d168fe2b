"""The centre sweep (standalone and through ``teravox run``), the automatic centre in a run:
said so, reused on resume, refused when unsure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from teravox.synth.scan import write_scan

pypdf = pytest.importorskip("pypdf")


def teravox(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "teravox.cli", *map(str, args)], capture_output=True,
                          text=True, **kw)


def pdf_text(path: Path) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages)


def test_sweep_of_the_tooth_from_the_raw_scan(tooth, tmp_path):
    out = tmp_path / "sweep.pdf"
    res = teravox("center-sweep", tooth, "290:300:2", "-o", out)
    assert res.returncode == 0, res.stderr
    assert out.exists() and out.with_suffix(".png").exists()
    # the choice printed as the flag to pass: the tooth's automatic centre
    flag = res.stdout.split("to use it: --center ")[-1].split()[0]
    assert 295.0 < float(flag) < 296.7
    text = pdf_text(out)
    assert "Centre sweep" in text and "Metric per centre" in text
    for c in (290, 292, 294, 296, 298, 300):        # one labelled tile per trial centre
        assert f"{c}  (" in text
    assert f"--center {flag}" in text


def test_sweep_refuses_bad_arguments(tooth, tmp_path):
    res = teravox("center-sweep", tooth, "300:290:1")
    assert res.returncode == 2 and "FROM < TO" in res.stderr and "Traceback" not in res.stderr
    res = teravox("center-sweep", "--plan", tmp_path / "plan.json", tooth)
    assert res.returncode == 2 and "one scan file or --plan" in res.stderr


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s") / "off.h5"
    write_scan(path, n_angles=240, n_rows=8, n_cols=128, center=40.3, seed=4, progress=False)
    return path


@pytest.mark.slow
def test_run_sweep_then_automatic_centre_found_once(scan, tmp_path):
    """run --center-sweep writes the page and stops; the next run (no centre given, none in
    the file) keeps pass 1, takes the automatic centre and says so in its log and report;
    collect run again keeps what it found."""
    out = tmp_path / "o"
    res = teravox("run", "--scan", scan, "--out", out, "--center-sweep", "36:44:1", "--no-progress")
    assert res.returncode == 0, res.stderr
    page = out / "off_center_sweep.pdf"
    assert page.exists() and not (out / "off_recon.h5").exists()
    flag = float(res.stdout.split("to use it: --center ")[-1].split()[0])
    assert abs(flag - 40.3) <= 0.25 and "40  (" in pdf_text(page)
    args = ("run", "--scan", scan, "--out", out, "--keep-intermediates", "--no-progress")
    res = teravox(*args)
    assert res.returncode == 0, res.stderr
    assert "preprocess: all 1 chunk(s) already complete, skipped" in res.stdout  # pass 1 kept
    assert "auto: none given or in the file" in res.stdout and "confidence" in res.stdout
    from teravox.stages.collect import read_resolved

    assert abs(read_resolved(out / "projections.h5")["center"] - 40.3) <= 0.25
    text = pdf_text(out / "off_report.pdf")
    assert "confidence" in text and "Axis tilt" in text and "Rotation centre: the automatic search" in text
    res = teravox("collect", "--plan", out / "plan.json")  # as on resume: not searched again
    assert res.returncode == 0 and res.stdout.startswith("kept"), res.stdout + res.stderr


def test_run_refuses_a_centre_it_cannot_trust(tmp_path):
    """Noise only: no centre is better than another; the run stops and points at the sweep."""
    path = tmp_path / "noise.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = rng.uniform(900, 1100, (180, 4, 96)).astype(np.float32)
        f["/exchange/data_white"] = np.full((2, 4, 96), 1000, np.float32)
        f["/exchange/data_dark"] = np.zeros((2, 4, 96), np.float32)
        f["/exchange/theta"] = np.linspace(0, 180, 180, endpoint=False)
    res = teravox("run", "--scan", path, "--out", tmp_path / "o", "--no-progress")
    assert res.returncode == 2
    assert "confidence" in res.stderr and "center-sweep" in res.stderr and "Traceback" not in res.stderr
