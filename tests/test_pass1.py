"""Pass 1 as stages: the projection-chunk job, collect, chunk invariance, atomicity, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import write_dxchange

from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.errors import PlanError, StageError
from teravox.io import open_scan
from teravox.stages import collect, preprocess
from teravox.synth.scan import write_scan

PHYS = {"energy_kev": 25.0, "distance_m": 0.2, "pixel_size_m": 1e-6}


@pytest.fixture(scope="module")
def drift_scan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "s.h5"
    write_scan(path, n_angles=24, n_rows=20, n_cols=48, drift=True, zingers=True, noise=True,
               seed=3, progress=False)
    return path


def run_pass1(scan: Path, workdir: Path, plan_edits: dict | None = None, **params) -> tuple[dict, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping(params), workdir=workdir)
    plan.update(plan_edits or {})
    planmod.save(plan, workdir / "plan.json")
    for c in plan["proj_chunks"]:
        preprocess.run_chunk(plan, c["index"])
    return plan, collect.run(plan)


CHUNK_FREE = dict(i0="monitor", outliers=True, outlier_dif=0.05, air=True, air_cols=4,
                  paganin=True, delta_beta=50.0, **PHYS)


def test_chunk_invariance(drift_scan, tmp_path):
    """k=1 with one subchunk equals k=3 with subchunks of a few rows, to 1e-5 relative."""
    _, one = run_pass1(drift_scan, tmp_path / "one", proj_chunks=1, **CHUNK_FREE)
    plan3, three = run_pass1(drift_scan, tmp_path / "three", proj_chunks=3, proj_subchunk_rows=3,
                             **CHUNK_FREE)
    assert plan3["overlap_rows"] > 1  # Paganin's support and the median need neighbours
    with h5py.File(one) as a, h5py.File(three) as b:
        x, y = a["/exchange/data"][()], b["/exchange/data"][()]
    assert np.isfinite(x).all() and x.shape == y.shape
    assert np.max(np.abs(x - y)) <= 1e-5 * np.max(np.abs(x))
    # the corrections did something: not just the flat/dark normalisation
    _, plain = run_pass1(drift_scan, tmp_path / "plain", proj_chunks=1)
    with h5py.File(plain) as p:
        assert np.max(np.abs(p["/exchange/data"][()] - x)) > 0.01


def test_virtual_dataset_is_the_concatenation(drift_scan, tmp_path):
    plan, proj = run_pass1(drift_scan, tmp_path / "w", proj_chunks=3)
    parts = []
    for c in plan["proj_chunks"]:
        with h5py.File(preprocess.chunk_path(plan, c["index"])) as f:
            parts.append(f["/exchange/data"][()])
            assert f["/exchange/data"].dtype == np.float32
    want = np.concatenate(parts)
    with h5py.File(proj) as f:
        ds = f["/exchange/data"]
        assert ds.is_virtual and len({s.file_name for s in ds.virtual_sources()}) == 3
        np.testing.assert_array_equal(ds[()], want)
        np.testing.assert_allclose(f["/exchange/theta"][()], plan["theta_deg"])
    # from another working directory, through a relative path to the file
    other = tmp_path / "elsewhere"
    other.mkdir()
    code = ("import h5py, numpy as np, sys; f = h5py.File(sys.argv[1]); "
            "np.save(sys.argv[2], f['/exchange/data'][()])")
    rel = os.path.relpath(proj, other)
    subprocess.run([sys.executable, "-c", code, rel, "out.npy"], cwd=other, check=True)
    np.testing.assert_array_equal(np.load(other / "out.npy"), want)


def test_collect_leaves_the_chunk_files_untouched(drift_scan, tmp_path):
    """collect reads the chunks (automatic centre) through its virtual dataset: read-only,
    so no byte and no mtime of a chunk changes (Nextflow's -resume hashes size and mtime)."""
    plan, _ = run_pass1(drift_scan, tmp_path / "w", proj_chunks=2, center="auto")
    paths = [preprocess.chunk_path(plan, c["index"]) for c in plan["proj_chunks"]]
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths]
    time.sleep(0.01)
    collect.run(plan)
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths] == before


def test_collect_names_missing_and_foreign_chunks(drift_scan, tmp_path):
    plan, _ = run_pass1(drift_scan, tmp_path / "w", proj_chunks=3)
    preprocess.chunk_path(plan, 1).unlink()
    with pytest.raises(StageError, match=r"proj_0001\.h5 missing"):
        collect.run(plan)
    # a chunk file made with other parameters is not trusted
    other = {**plan, "params": {**plan["params"], "outliers": True}}
    preprocess.run_chunk(other, 1)
    with pytest.raises(StageError, match=r"proj_0001\.h5 was made for another plan"):
        collect.run(plan)


def test_killed_job_leaves_no_file_and_rerun_is_identical(tmp_path):
    scan = tmp_path / "big.h5"
    write_scan(scan, n_angles=400, n_rows=64, n_cols=256, noise=False, seed=1, progress=False)
    work = tmp_path / "w"
    work.mkdir()
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping({"proj_chunks": 1, "proj_subchunk_rows": 2,
                                                   "outliers": True}), workdir=work)
    planmod.save(plan, work / "plan.json")
    out = preprocess.chunk_path(plan, 0)
    proc = subprocess.Popen([sys.executable, "-m", "teravox.cli", "preprocess", "--plan",
                             str(work / "plan.json"), "--chunk", "0"])
    deadline = time.time() + 60
    while not list(work.glob("proj_0000.h5.tmp-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well into the writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed job must not leave a file that looks complete"
    assert isinstance(collect.check_chunk(plan, 0, out), str)
    preprocess.run_chunk(plan, 0)
    assert not list(work.glob("*.tmp-*")) or True  # the dead job's temp file may stay; it is never trusted
    with h5py.File(out) as f:
        rerun = f["/exchange/data"][()]
    ref = preprocess.chunk_path(plan, 0, tmp_path)
    preprocess.run_chunk(plan, 0, tmp_path)
    with h5py.File(ref) as f:
        np.testing.assert_array_equal(rerun, f["/exchange/data"][()])


def test_guards_are_counted_never_nan(tmp_path):
    path = write_dxchange(tmp_path / "bad.h5", n_proj=6, rows=4, cols=10, dtype=np.float32)
    with h5py.File(path, "a") as f:
        flats = f["/exchange/data_white"][()]
        flats[:, 0, :3] = 100  # flat == dark on 3 pixels
        del f["/exchange/data_white"]
        f["/exchange/data_white"] = flats
        data = f["/exchange/data"][()]
        data[2, 1, 5] = np.nan
        del f["/exchange/data"]
        f["/exchange/data"] = data
    plan, proj = run_pass1(path, tmp_path / "w", center=4.5)  # random data: no centre to find
    with h5py.File(preprocess.chunk_path(plan, 0)) as f:
        guarded = __import__("teravox.io.provenance", fromlist=["read"]).read(f)["guarded"]
        assert np.isfinite(f["/exchange/data"][()]).all()
    assert guarded["flat_le_dark_pixels"] == 3 * 6
    assert guarded["nonfinite_pixels"] >= 1


def test_plan_scan_mismatch_and_chunk_range(tmp_path):
    a = write_dxchange(tmp_path / "a.h5", n_proj=8)
    with open_scan(a) as s:
        plan = planmod.make_plan(s, from_mapping({"proj_chunks": 2}), workdir=tmp_path)
    write_dxchange(a, n_proj=9)  # the file changed since planning
    with pytest.raises(PlanError, match="the plan was made for"):
        preprocess.run_chunk(plan, 0)
    planmod.save(plan, tmp_path / "plan.json")
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "preprocess", "--plan", str(tmp_path / "plan.json"),
                          "--chunk", "5"], capture_output=True, text=True)
    assert res.returncode == 2 and "chunk 5 is out of range" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("stripe_prep", ["off", "sorting"])
def test_preprocess_peak_memory_under_budget(tmp_path, stripe_prep):
    """A 128 MiB chunk with a 400 MiB budget: the job's peak RSS stays under the budget and
    within 10 % of the plan's figure, in blocks of whole projections, and (pass-1 stripe
    removal needs every angle) of rows."""
    scan = tmp_path / "m.h5"
    write_scan(scan, n_angles=512, n_rows=128, n_cols=1024, noise=False, seed=2, progress=False)
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping({"proj_chunks": 1, "memory": "400M", "outliers": True,
                                                  "stripe_prep": stripe_prep}), workdir=tmp_path)
    # the budget forces several subchunks
    if stripe_prep == "off":
        assert plan["proj_subchunk_projections"] < 512 and plan["proj_subchunk_rows"] == 128
    else:
        assert plan["proj_subchunk_projections"] is None and plan["proj_subchunk_rows"] < 128
    planmod.save(plan, tmp_path / "plan.json")
    code = ("import sys; from teravox.cli import main; from teravox.resources import peak_rss; "
            "rc = main(sys.argv[1:]); print(peak_rss()); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code, "preprocess", "--plan", str(tmp_path / "plan.json"),
                          "--chunk", "0"], capture_output=True, text=True, check=True)
    peak = int(res.stdout.strip().splitlines()[-1])
    assert peak < plan["memory"]["budget"], (peak, plan["memory"])
    if stripe_prep == "off":  # the model (stripe removal's is an allowance)
        assert abs(plan["memory"]["preprocess_peak_estimate"] / peak - 1) <= 0.10, (peak, plan["memory"])


def test_projection_blocks_equal_row_blocks(tmp_path):
    """Blocks of whole projections at full height (no overlap; what the plan chooses when
    the chunk does not fit, forced here on a small scan) give the projections that row
    blocks with overlap give."""
    scan = tmp_path / "p.h5"
    write_scan(scan, n_angles=200, n_rows=96, n_cols=384, drift=True, zingers=True, noise=True, seed=4,
               progress=False)
    # 2 cm: a Paganin support of 22 rows, so that row blocks of 8 see only part of the height
    common = dict(proj_chunks=1, **{**CHUNK_FREE, "distance_m": 0.02})
    plan_p, by_proj = run_pass1(scan, tmp_path / "proj", {"proj_subchunk_projections": 64}, **common)
    plan_r, by_rows = run_pass1(scan, tmp_path / "rows", proj_subchunk_rows=8, **common)
    pblock = plan_p["proj_subchunk_projections"]
    assert pblock and pblock < 200 and 8 < plan_p["overlap_rows"] < 40  # several blocks per chunk
    assert plan_r["proj_subchunk_projections"] is None
    with h5py.File(preprocess.chunk_path(plan_p, 0)) as f:
        assert f["/exchange/data"].chunks[0] <= pblock and pblock % f["/exchange/data"].chunks[0] == 0
    with h5py.File(by_proj) as a, h5py.File(by_rows) as b:
        x, y = a["/exchange/data"][()], b["/exchange/data"][()]
    assert np.isfinite(x).all() and x.shape == y.shape
    assert np.max(np.abs(x - y)) <= 1e-5 * np.max(np.abs(x))


def test_patched_pixels_counted_once_with_overlap_rows(tmp_path):
    """A dead pixel (flat = dark) in every projection and one NaN pixel, read in row blocks with
    overlap rows (the outlier median's), counted once each and summed by collect."""
    scan = tmp_path / "p.h5"
    write_scan(scan, n_angles=12, n_rows=10, n_cols=24, noise=False, dtype="float32", progress=False)
    with h5py.File(scan, "a") as f:
        f["/exchange/data_white"][:, 4, 3] = f["/exchange/data_dark"][:, 4, 3]
        f["/exchange/data"][5, 6, 7] = np.nan
    plan, proj = run_pass1(scan, tmp_path / "w", proj_chunks=2, proj_subchunk_rows=3, outliers=True,
                           outlier_size=5)
    assert plan["overlap_rows"] == 2 and plan["proj_subchunk_projections"] is None
    patched = collect.read_patched(proj)
    assert (patched.flat_le_dark, patched.nonfinite) == (12, 1)
    assert patched.projections == 12 and patched.frame_pixels == 240
    assert patched.loud and "0.45% of each frame" in patched.warning()


def test_job_refuses_a_block_it_cannot_normalise(tmp_path):
    """Flats and darks are fine (the plan's check passes) but half the projections hold no
    number: the chunk job refuses instead of writing a volume of patched pixels."""
    scan = tmp_path / "nan.h5"
    write_scan(scan, n_angles=12, n_rows=4, n_cols=16, noise=False, dtype="float32", progress=False)
    with h5py.File(scan, "a") as f:
        f["/exchange/data"][:6] = np.nan
    with pytest.raises(StageError, match=r"nan\.h5: projection chunk 0, projections 0\.\.6, rows 0\.\.4: 100% of "
                                         r"the pixels could not be normalised \(flat ≤ dark 0, NaN/Inf 384\)"):
        run_pass1(scan, tmp_path / "w", proj_chunks=2)
    assert not list((tmp_path / "w").glob("proj_0000.h5*"))


def test_threads_change_nothing(tmp_path):
    """Flat/dark (flats before and after, interpolated by index) and outliers run in spans of
    projections over the job's threads: the projections and the counts are those of one thread."""
    scan = tmp_path / "after.h5"
    write_scan(scan, n_angles=24, n_rows=20, n_cols=48, drift=True, zingers=True, flats_after=True, seed=5,
               progress=False)

    def run(threads: int) -> tuple[np.ndarray, dict]:
        plan, proj = run_pass1(scan, tmp_path / f"t{threads}", threads=threads, proj_chunks=1,
                               stripe_prep="sorting", **CHUNK_FREE)
        with h5py.File(preprocess.chunk_path(plan, 0)) as f:
            prov = __import__("teravox.io.provenance", fromlist=["read"]).read(f)
        with h5py.File(proj) as f:
            return f["/exchange/data"][()], prov["guarded"]

    (one, c1), (two, c2) = run(1), run(2)
    np.testing.assert_array_equal(two, one)
    assert c1 == c2 and c1["outlier_pixels"] > 0
