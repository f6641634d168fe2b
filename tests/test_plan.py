"""The chunk plan: exact coverage, overlap, memory budgets, clear errors, read-only input."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import sha256, write_dxchange

from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.errors import PlanError
from teravox.io import open_scan


def make(path, **params):
    with open_scan(path) as s:
        return planmod.make_plan(s, from_mapping(params), workdir="/tmp/w")


@pytest.fixture
def scan(tmp_path):
    return write_dxchange(tmp_path / "s.h5", n_proj=37, rows=23, cols=32)


@pytest.mark.parametrize("k,j", [(1, 1), (3, 4), (7, 23), (37, 5)])
def test_chunks_cover_everything_exactly_once(scan, k, j):
    p = make(scan, proj_chunks=k, sino_chunks=j)
    for key, n, count in (("proj_chunks", 37, k), ("sino_chunks", 23, j)):
        chunks = p[key]
        assert len(chunks) == count
        covered = np.concatenate([np.arange(c["start"], c["stop"]) for c in chunks])
        np.testing.assert_array_equal(covered, np.arange(n))
        assert [c["index"] for c in chunks] == list(range(count))
        sizes = [c["stop"] - c["start"] for c in chunks]
        # sinogram chunks start on even rows (slice pairs), so they may differ by 2
        assert max(sizes) - min(sizes) <= (1 if key == "proj_chunks" else 2)
        if key == "sino_chunks" and 2 * count <= n:
            assert all(c["start"] % 2 == 0 for c in chunks)


def test_selection_ranges_and_exclusions(scan):
    p = make(scan, proj_range=[2, -1, 2], exclude_proj=[[10, 14]], row_range=[3, 20], col_range=[4, 30])
    idx = p["selection"]["proj_indices"]
    assert idx == [i for i in range(2, 37, 2) if not 10 <= i < 14]
    assert len(p["theta_deg"]) == len(idx)
    assert p["selection"]["rows"] == [3, 20] and p["recon_shape"] == [17, 26, 26]
    # no centre given and none in the file: the automatic one, said so (never the middle in silence)
    assert p["center"] == {"value": None, "how": "auto: none given or in the file"}


def test_center_given_in_detector_columns(scan):
    p = make(scan, center=17.5, col_range=[4, 30])
    assert p["center"] == {"value": 13.5, "how": "given"}
    assert make(scan, center="auto")["center"]["value"] is None


def test_overlap_only_where_needed(scan):
    assert make(scan)["overlap_rows"] == 0
    assert make(scan, outliers=True, outlier_size=5)["overlap_rows"] == 2
    from teravox.prep.paganin import kernel_support_px

    phys = dict(energy_kev=30.0, distance_m=0.5, pixel_size_m=1e-6)
    p = make(scan, paganin=True, delta_beta=500.0, **phys)
    want = kernel_support_px(1e-6, 0.5, 30.0, 500.0, tol=planmod.PAGANIN_TOL)
    assert p["overlap_rows"] == want > 0
    assert "Paganin" in p["overlap_why"]
    # stronger retrieval (larger delta/beta) needs more overlap
    assert make(scan, paganin=True, delta_beta=5000.0, **phys)["overlap_rows"] > want


def test_paganin_without_physics_is_a_clear_error(scan):
    with pytest.raises(PlanError, match="Paganin.*energy_kev.*distance_m.*pixel_size_m"):
        make(scan, paganin=True)


def wide_scan_file(path, n_proj: int, rows: int, cols: int):
    """A DXchange file of the given shape whose projections are never written (HDF5 keeps
    unwritten chunks out of the file): the plan reads only metadata."""
    with h5py.File(path, "w") as f:
        f.create_dataset("/exchange/data", shape=(n_proj, rows, cols), dtype=np.uint16,
                         chunks=(1, rows, min(cols, 4096)))
        f["/exchange/data_white"] = np.full((2, rows, cols), 1000, np.uint16)
        f["/exchange/data_dark"] = np.full((2, rows, cols), 100, np.uint16)
        f["/exchange/theta"] = np.linspace(0, 180, n_proj, endpoint=False)
    return path


@pytest.mark.parametrize("memory", ["400M", "600M", "1G", "4G"])
def test_memory_estimate_honoured(tmp_path, memory):
    from teravox.stages.preprocess import peak_bytes

    path = wide_scan_file(tmp_path / "big.h5", n_proj=1200, rows=64, cols=1024)
    p = make(path, memory=memory, proj_chunks=1, sino_chunks=1)
    budget = p["memory"]["budget"]
    assert all(p["memory"][f"{stage}_peak_estimate"] <= budget for stage in ("preprocess", "reconstruct",
                                                                              "merge", "report"))
    # pass-1 blocks are the largest that fit: whole projections, one HDF5 chunk more would not
    params = planmod.params_of(p)
    block = p["proj_subchunk_projections"]
    if block:
        chunk = planmod.hdf5_chunk_angles(1200, 64, 1024)
        assert peak_bytes(params, block + chunk, 64, 1024, 2, 4) > budget
    else:
        assert p["proj_subchunk_rows"] == 64


def test_more_memory_means_bigger_subchunks(tmp_path):
    path = wide_scan_file(tmp_path / "big.h5", n_proj=1200, rows=64, cols=1024)
    small, large = make(path, memory="400M"), make(path, memory="4G")
    assert small["proj_subchunk_projections"] and not large["proj_subchunk_projections"]
    assert small["sino_subchunk_rows"] <= large["sino_subchunk_rows"]


@pytest.mark.parametrize("paganin", [False, True])
def test_pass1_of_a_wide_scan_in_blocks_of_projections(tmp_path, paganin):
    """24608 columns, 24000 angles, 2 rows: the chunk does not fit 6 GiB, blocks of whole
    projections do, with or without Paganin's overlap rows."""
    path = wide_scan_file(tmp_path / "wide.h5", 24000, 2, 24608)
    extra = dict(paganin=True, energy_kev=25, distance_m=0.05, pixel_size_m=1e-6) if paganin else {}
    p = make(path, memory="6G", center=12303.5, **extra)
    assert p["proj_subchunk_projections"] and p["proj_subchunk_rows"] == 2
    assert p["memory"]["preprocess_peak_estimate"] <= p["memory"]["budget"]


def test_chunk_counts_from_target_size(tmp_path):
    path = write_dxchange(tmp_path / "big.h5", n_proj=400, rows=64, cols=512)
    raw = 400 * 64 * 512 * 2
    p = make(path, target_job_gb=raw / 4.5 / 2**30)
    assert len(p["proj_chunks"]) == 5


@pytest.mark.parametrize("params,needle", [
    ({"proj_chunks": 38}, "38 chunks for 37 projections"),
    ({"sino_chunks": 24}, "24 chunks for 23 detector rows"),
    ({"memory": "100M"}, "too small"),
    ({"row_range": [20, 10]}, "row_range"),
    ({"exclude_proj": [[0, 37]]}, "projection"),
])
def test_invalid_combinations(scan, params, needle):
    with pytest.raises(PlanError, match=needle):
        make(scan, **params)


def test_memory_too_small_for_one_row(tmp_path):
    path = wide_scan_file(tmp_path / "wide.h5", n_proj=16000, rows=2, cols=8000)
    # pass-1 stripe removal needs every angle of a row; without it blocks of projections fit
    with pytest.raises(PlanError, match=r"too small for one detector row.*give --memory \d"):
        make(path, memory="1.5G", proj_chunks=1, stripe_prep="sorting", center=3999.5)
    assert make(path, memory="1.5G", proj_chunks=1, center=3999.5)["proj_subchunk_projections"]


def test_wide_slices_in_tiles(tmp_path):
    """24608² slices from 24000 angles: whole slices need ~43 GiB; 8 GiB takes one slice at
    a time in tiles, and a budget below one tile is refused naming the smallest that works."""
    path = wide_scan_file(tmp_path / "wide.h5", 24000, 2, 24608)
    p = make(path, memory="8G", center=12303.5)
    assert p["recon_tile"] and p["recon_tile"] < 24608 and p["sino_subchunk_rows"] in (1, 2)
    assert p["memory"]["reconstruct_peak_estimate"] <= p["memory"]["budget"]
    with pytest.raises(PlanError, match=r"too small to reconstruct one slice .*give --memory (\d+\.?\d*)G") as err:
        make(path, memory="3G", center=12303.5)
    need = float(err.value.args[0].rsplit("--memory ", 1)[1].split("G")[0])
    assert 3 < need < 8
    assert make(path, memory=f"{need}G", center=12303.5)["recon_tile"]


def test_no_flats_is_a_clear_error(tmp_path):
    path = write_dxchange(tmp_path / "nf.h5", flats=False)
    with pytest.raises(PlanError, match="nf.h5: no flats"):
        make(path)
    assert make(path, flat_dark=False)["proj_chunks"]


def test_plan_cli_and_raw_file_untouched(scan, tmp_path):
    before = sha256(scan)
    mtime = scan.stat().st_mtime_ns
    out = tmp_path / "plan.json"
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "plan", str(scan), "-o", str(out),
                          "--center", "15.5", "--proj-chunks", "3", "--sino-chunks", "2", "--memory", "1G"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "3 projection chunk(s)" in res.stdout
    plan = json.loads(out.read_text())
    assert plan["params"]["center"] == 15.5 and len(plan["sino_chunks"]) == 2
    assert plan["workdir"] == str(tmp_path)
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "info", str(scan)], capture_output=True)
    assert res.returncode == 0
    assert sha256(scan) == before and scan.stat().st_mtime_ns == mtime


def test_plan_cli_bad_parameter_one_line(scan, tmp_path):
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "plan", str(scan), "--proj-chunks", "99",
                          "-o", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "99 chunks for 37 projections" in res.stderr
    assert not (tmp_path / "p.json").exists()


def test_chunk_lookup_errors(scan):
    p = make(scan, proj_chunks=2)
    with pytest.raises(PlanError, match="chunk 2 is out of range.*2 projection chunks"):
        planmod.chunk(p, "proj_chunks", 2)


# -- GPU side of pass 2 ------------------------------------------------------------------------
@pytest.fixture
def wide_scan(tmp_path):
    return write_dxchange(tmp_path / "wide.h5", n_proj=384, rows=40, cols=256)


def _device_args(p):
    return p["recon_angles"], p["recon_shape"][2] + 2 * p["pad_width_px"], p["recon_shape"][1]


def test_cpu_backend_plans_no_device(wide_scan):
    assert make(wide_scan, backend="fourier")["recon_device"] is None


@pytest.mark.parametrize("pairs", [1, 3, 16])
def test_gpu_batches_from_gpu_memory(wide_scan, pairs):
    from teravox.recon.backends.fourier_gpu import device_bytes

    probe = make(wide_scan, backend="fourier-gpu", gpu_memory="80G")
    m, cols, n = _device_args(probe)
    gib = 2**30
    budget = device_bytes(m, cols, n, pairs) if pairs < 16 else 80 * gib
    p = make(wide_scan, backend="fourier-gpu", gpu_memory=str(budget), sino_chunks=1, memory="8G")
    dev = p["recon_device"]
    srow = p["sino_subchunk_rows"]
    assert dev["batch_pairs"] == min(pairs, -(-srow // 2))
    assert dev["gpu_peak_estimate"] <= budget and dev["gpu_memory_source"] == "given (gpu_memory)"
    assert srow % (2 * dev["batch_pairs"]) == 0 or srow == 40  # whole batches per subchunk
    assert p["memory"]["reconstruct_peak_estimate"] <= p["memory"]["budget"]


def test_pinned_buffers_count_against_host_memory(tmp_path):
    path = wide_scan_file(tmp_path / "w.h5", 1536, 40, 1024)
    # one thread: the CPU backend then holds one lane's buffers, fewer than the GPU
    # backend's pinned host buffers of a batch
    cpu = make(path, backend="fourier", memory="400M", sino_chunks=1, threads=1)
    gpu = make(path, backend="fourier-gpu", gpu_memory="80G", memory="400M", sino_chunks=1, threads=1)
    assert gpu["sino_subchunk_rows"] < cpu["sino_subchunk_rows"]
    assert gpu["memory"]["reconstruct_peak_estimate"] <= gpu["memory"]["budget"]


def test_gpu_memory_too_small_is_a_clear_error(wide_scan):
    with pytest.raises(PlanError, match=r"gpu_memory: 0\.0 GiB .*too small for one slice pair.*--backend fourier"):
        make(wide_scan, backend="fourier-gpu", gpu_memory="16M")


def test_gpu_memory_assumed_when_no_device_is_seen(wide_scan):
    from teravox.recon.backends import base

    if base.is_available("fourier-gpu"):
        pytest.skip("a GPU is visible here: the plan reads its memory instead")
    dev = make(wide_scan, backend="fourier-gpu")["recon_device"]
    assert dev["gpu_memory"] == planmod.DEFAULT_GPU_MEMORY and "assumed" in dev["gpu_memory_source"]
    assert make(wide_scan)["recon_device"] is None  # auto → fourier here


def test_gpu_memory_must_be_a_size(wide_scan):
    from teravox.errors import ParamError

    with pytest.raises(ParamError, match="gpu_memory: expected a size"):
        make(wide_scan, backend="fourier-gpu", gpu_memory="lots")


def test_digest_follows_the_raw_data_and_nothing_volatile(tmp_path):
    """Two plans of the same scan and parameters share their digest (chunks are reused); other
    content of the same size and modification time, or other instrument values, change it."""
    import os

    import h5py

    from teravox.io.provenance import plan_digest

    path = write_dxchange(tmp_path / "s.h5", metadata={"/measurement/instrument/monochromator/energy": (20.0, "keV")})
    first, again = make(path), make(path)
    assert first["created"] and plan_digest(first) == plan_digest(again)
    st = path.stat()
    for dataset, change in (("/exchange/data_white", lambda d: d + 1),
                            ("/measurement/instrument/monochromator/energy", lambda d: d * 2)):
        with h5py.File(path, "a") as f:
            f[dataset][...] = change(f[dataset][()])
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
        assert plan_digest(make(path)) != plan_digest(first), dataset
    before = plan_digest(make(path))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: other data until proven otherwise
    assert plan_digest(make(path)) != before


def test_plan_orders_projections_by_angle(tmp_path):
    path = write_dxchange(tmp_path / "s.h5", n_proj=8)
    import h5py

    with h5py.File(path, "a") as f:
        f["/exchange/theta"][...] = [90, 0, 45, 135, 22.5, 67.5, 112.5, 157.5]
    p = make(path, proj_range=[0, 8])
    assert p["selection"]["proj_indices"] == [1, 4, 2, 5, 0, 6, 3, 7]
    assert p["theta_deg"] == sorted(p["theta_deg"]) and p["angles_reordered"]
