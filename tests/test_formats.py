"""Volume formats: OME-Zarr and TIFF stacks written by the reconstruct jobs, linked by merge.

Round trips against the HDF5 volume of the same run, the OME-NGFF metadata validated by
an independent model of the specification (pydantic-ome-ngff) and read back by
``ome_zarr``'s reader (what napari-ome-zarr calls), ImageJ metadata, the completeness
markers of the pieces, and a reconstruct job killed with SIGKILL mid-way then resumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from teravox import plan as planmod
from teravox.config import from_mapping
from teravox.errors import ParamError
from teravox.io import open_scan, volume
from teravox.io.atomic import remove_stale
from teravox.post.pyramid import level_shapes
from teravox.report import orthogonal_slices
from teravox.runner.inprocess import run_plan
from teravox.runner.pipeline import run_pipeline
from teravox.stages import collect, merge, preprocess, reconstruct
from teravox.synth.scan import write_scan

PIXEL_M = 2e-6
ALL = {"format": ["hdf5", "zarr", "tiff"], "pyramid": 2, "sino_chunks": 3, "center": 20.3}


def stages(scan: Path, work: Path, **params) -> tuple[dict, dict[str, Path]]:
    """Plan, preprocess, collect, every reconstruct job and merge, in this process."""
    work.mkdir(parents=True, exist_ok=True)
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping(params), workdir=work)
    planmod.save(plan, work / "plan.json")
    return plan, run_plan(plan)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    # 22 rows and 41 columns: sizes that are no multiple of the pyramid's 4x cells
    path = tmp_path_factory.mktemp("fmt") / "scan.h5"
    write_scan(path, n_angles=64, n_rows=22, n_cols=41, center=20.3, pixel_size_m=PIXEL_M, seed=3,
               progress=False)
    return path


@pytest.fixture(scope="module")
def run_all(scan, tmp_path_factory) -> tuple[dict, dict[str, Path]]:
    return stages(scan, tmp_path_factory.mktemp("all"), **ALL)


def hdf5_volume(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["/exchange/data"][()]


def test_zarr_and_tiff_hold_the_hdf5_volume(run_all):
    plan, out = run_all
    ref = hdf5_volume(out["hdf5"])
    assert ref.shape == (22, 41, 41) and np.ptp(ref) > 0
    store = zarr.open_group(str(out["zarr"]), mode="r")
    np.testing.assert_array_equal(store["0"][:], ref)
    names = sorted(p.name for p in out["tiff"].iterdir())
    assert names == [f"scan_recon_{z:05d}.tif" for z in range(22)]  # name order = z order
    np.testing.assert_array_equal(np.stack([tifffile.imread(out["tiff"] / n) for n in names]), ref)
    # the report's reader gives the same planes from every format
    planes = [orthogonal_slices(ref, 3)]
    for fmt in ("zarr", "tiff"):
        with volume.open_volume(out[fmt]) as (vol, prov):
            planes.append(orthogonal_slices(vol, 3))
            assert prov["stage"] == "merge" and fmt in prov["parameters"]["format"]
    for got in planes[1:]:
        for a, b in zip(planes[0], got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_no_second_copy_the_store_holds_the_jobs_files(run_all):
    plan, out = run_all
    piece = volume.piece_path(plan, "zarr", 1, plan["workdir"])
    rel = sorted(p for p in piece.rglob("*") if p.is_file() and p.name[0].isdigit())[0].relative_to(piece)
    a, b = os.stat(piece / rel), os.stat(out["zarr"] / "0" / rel)
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev) and b.st_nlink == 2
    first = out["tiff"] / sorted(os.listdir(out["tiff"]))[0]
    assert os.stat(first).st_nlink == 2


def test_ome_ngff_metadata(run_all):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from pydantic_ome_ngff.v04.multiscale import MultiscaleGroup

    plan, out = run_all
    group = zarr.open_group(str(out["zarr"]), mode="r")
    MultiscaleGroup.from_zarr(group)  # raises on anything the NGFF 0.4 models reject
    ms = group.attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["unit"] for a in ms["axes"]] == ["micrometer"] * 3
    # read back as napari-ome-zarr does: one image node, its levels, level 0's scale
    nodes = list(Reader(parse_url(str(out["zarr"])))())
    assert len(nodes) == 1
    shapes = [tuple(level.shape) for level in nodes[0].data]
    assert shapes == [(22, 41, 41)] + level_shapes((22, 41, 41), 2) == [(22, 41, 41), (11, 21, 21), (6, 11, 11)]
    transforms = nodes[0].metadata["coordinateTransformations"]
    assert transforms[0] == [{"type": "scale", "scale": [2.0, 2.0, 2.0]}]  # µm
    assert transforms[2] == [{"type": "scale", "scale": [8.0] * 3}, {"type": "translation", "translation": [3.0] * 3}]
    # each level is the mean over level-0 cells, partial cells at the ends included: as the HDF5 pyramid
    with h5py.File(out["hdf5"]) as f:
        for k, name in ((1, "data_2x"), (2, "data_4x")):
            np.testing.assert_allclose(group[str(k)][:], f[f"/exchange/{name}"][()], rtol=1e-5,
                                       atol=1e-6 * float(np.ptp(f["/exchange/data"][()])))
    prov = group.attrs["teravox"]
    assert {"zarr", "ome-zarr", "numpy"} <= set(prov["versions"]) and prov["plan"]["name"] == "scan"
    assert prov["parameters"]["pyramid"] == 2


def test_tiff_metadata_for_imagej(run_all):
    plan, out = run_all
    with tifffile.TiffFile(next(out["tiff"].iterdir())) as tif:
        meta = tif.imagej_metadata
        assert meta["unit"] == "um" and meta["spacing"] == pytest.approx(2.0)
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(0.5)  # pixels per µm
    side = json.loads((out["tiff"].parent / "scan_recon_tiff.json").read_text())
    assert side["stage"] == "merge" and "tifffile" in side["versions"]
    assert side["data_attrs"]["dtype"] == "float32" and side["plan"]["sino_chunks"] == plan["sino_chunks"]


def test_bigtiff_and_uint16(scan, tmp_path):
    plan, out = stages(scan, tmp_path, format=["hdf5", "tiff"], tiff_layout="bigtiff", dtype="uint16",
                       center=20.3)
    assert out["tiff"].name == "scan_recon.tif"
    with tifffile.TiffFile(out["tiff"]) as tif:
        assert tif.is_bigtiff and tif.is_ome
        np.testing.assert_array_equal(tif.asarray(), hdf5_volume(out["hdf5"]))
        assert 'PhysicalSizeX="2.0"' in tif.ome_metadata and "µm" in tif.ome_metadata
    assert (tmp_path / "scan_recon_tiff.json").is_file()


def test_zarr_plan_aligns_chunks_with_the_jobs(run_all):
    plan, _ = run_all
    rows = plan["zarr_chunks"][0]
    assert rows >= 2 and plan["sino_subchunk_rows"] % rows == 0
    assert all(c["start"] % rows == 0 for c in plan["sino_chunks"])
    sizes = [c["stop"] - c["start"] for c in plan["sino_chunks"]]
    assert len(sizes) == 3 and min(sizes) > 0 and sum(sizes) == 22


def test_a_piece_is_trusted_only_when_complete_and_for_this_plan(run_all, tmp_path):
    import shutil

    plan, _ = run_all
    wd = Path(plan["workdir"])
    work = tmp_path / "copy"
    shutil.copytree(wd, work, symlinks=True)
    plan = {**plan, "workdir": str(work)}
    assert reconstruct.chunk_problem(plan, 1) is None
    zpiece = volume.piece_path(plan, "zarr", 1)
    marker = json.loads((zpiece / "teravox.json").read_text())
    (zpiece / "teravox.json").write_text(json.dumps({**marker, "plan_digest": "0" * 16}))
    assert "another plan" in reconstruct.chunk_problem(plan, 1)
    (zpiece / "teravox.json").unlink()  # data without its marker: a job killed before the end
    assert "recon_0001.zarr incomplete (no teravox.json" in reconstruct.chunk_problem(plan, 1)
    (zpiece / "teravox.json").write_text(json.dumps(marker))
    next(p for p in zpiece.rglob("*") if p.is_file() and p.name[0].isdigit()).unlink()
    assert "file(s) missing" in reconstruct.chunk_problem(plan, 1)
    tpiece = volume.piece_path(plan, "tiff", 2)
    next(tpiece.glob("*.tif")).unlink()
    assert "recon_0002_tiff incomplete" in reconstruct.chunk_problem(plan, 2)
    with pytest.raises(Exception, match=r"cannot merge: recon_0001.zarr incomplete .*recon_0002_tiff"):
        merge.run(plan)
    stale = work / "recon_0000.zarr.tmp-999999999"  # a dead job's directory
    stale.mkdir()
    assert stale in remove_stale(work) and not stale.exists()


KILL_AFTER_TWO_BLOCKS = """
import os, signal, sys
from teravox.io import omezarr
real, blocks = omezarr.PieceWriter.write, []
def write(self, z, slices):
    real(self, z, slices)
    blocks.append(z)
    if len(blocks) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or scancel would: no cleanup
omezarr.PieceWriter.write = write
from teravox.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_resume_after_a_killed_job_gives_the_same_store(scan, tmp_path):
    # one thread: a multithreaded NUFFT may add in another order (rounding), and "the same" means equal
    params = {"format": ["zarr"], "pyramid": 1, "sino_chunks": 2, "sino_subchunk_rows": 2, "center": 20.3,
              "memory": "1G", "threads": 1}
    _, ref = stages(scan, tmp_path / "ref", **params)
    work = tmp_path / "run"
    work.mkdir()
    with open_scan(scan) as s:
        plan = planmod.make_plan(s, from_mapping(params), workdir=work)
    planmod.save(plan, work / "plan.json")
    for c in plan["proj_chunks"]:
        preprocess.run_chunk(plan, c["index"])
    collect.run(plan)
    reconstruct.run_chunk(plan, 0)
    res = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_BLOCKS, "reconstruct", "--plan",
                          str(work / "plan.json"), "--chunk", "1"], capture_output=True, text=True)
    assert res.returncode == -9, res.stderr
    half = list(work.glob("recon_0001.zarr.tmp-*"))
    assert len(half) == 1 and any(p.is_file() and p.name.isdigit() for p in half[0].rglob("*"))  # data…

    assert not (half[0] / "teravox.json").exists() and not (work / "recon_0001.zarr").exists()  # …no marker

    summary = run_pipeline(scan, work, from_mapping(params), jobs=1, progress=False, log=lambda _m: None)
    recon = next(s for s in summary.stages if s.stage == "reconstruct")
    assert (recon.jobs, recon.skipped) == (1, 1)  # chunk 0 kept, the killed chunk 1 redone
    assert not list(work.glob("*.tmp-*")) and not (work / "recon_0001.zarr").exists()  # cleanup ran
    a, b = zarr.open_group(str(ref["zarr"]), mode="r"), zarr.open_group(str(summary.volumes["zarr"]), mode="r")
    for level in ("0", "1"):
        np.testing.assert_array_equal(a[level][:], b[level][:])
        assert a[level].chunks == b[level].chunks and a[level].dtype == b[level].dtype
    assert a.attrs["multiscales"] == b.attrs["multiscales"]


def test_output_parameters_are_checked():
    assert from_mapping({"format": ["zarr", "tiff"]}).format == ["zarr", "tiff"]
    for bad, why in (({"format": []}, "format must list"), ({"format": ["zarr", "zarr"]}, "each once"),
                     ({"format": ["png"]}, "expected one of hdf5, zarr, tiff"),
                     ({"format": ["zarr"], "compression": "lzf"}, "lzf exists only in HDF5"),
                     ({"format": ["tiff"], "dtype": "float16"}, "cannot read float16")):
        with pytest.raises(ParamError, match=why):
            from_mapping(bad)


def test_format_on_the_command_line():
    from teravox.config.params import parse_cli_value

    assert parse_cli_value("format", "zarr,tiff") == ["zarr", "tiff"]
    assert parse_cli_value("format", '["hdf5"]') == ["hdf5"]


def test_napari_opens_the_store_as_a_multiscale_image(run_all):
    """napari's own reader plugin and layer model, without a viewer (not installed in CI:
    napari-ome-zarr needs napari; the reader test above checks what it reads)."""
    pytest.importorskip("napari", reason="napari is not installed (optional: pip install napari napari-ome-zarr)")
    reader = pytest.importorskip("napari_ome_zarr._reader", reason="napari-ome-zarr is not installed")
    from napari.layers import Image

    _, out = run_all
    (data, meta, kind), = reader.napari_get_reader(str(out["zarr"]))(str(out["zarr"]))
    layer = Image(data, multiscale=True, scale=meta["scale"])
    assert kind == "image" and layer.multiscale and len(layer.data) == 3
    assert layer.level_shapes.tolist() == [[22, 41, 41], [11, 21, 21], [6, 11, 11]]
    assert list(layer.scale) == [2.0, 2.0, 2.0]
