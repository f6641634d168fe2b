"""The files other facilities write — Diamond-like NeXus with external links, nxtomomill's
NXtomo split over entries or files, TIFF stacks — read into the same scan as the DXchange
file they were made from, hence the same volume; what `teravox info` says about them; and
the refusals when a layout is ambiguous or broken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from teravox import plan as planmod
from teravox.cli import main as teravox
from teravox.config import from_mapping
from teravox.errors import InputError, PlanError
from teravox.io import open_scan, open_scan_for, provenance
from teravox.runner.inprocess import run_plan
from teravox.synth.layouts import write_diamond, write_esrf, write_tiff
from teravox.synth.scan import write_scan


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """The DXchange original: 48 angles from 90° to 270° (exclusive), noise-free."""
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    write_scan(path, n_angles=48, n_rows=8, n_cols=32, theta_start_deg=90.0, noise=False, seed=3, progress=False)
    return path


def run_stages(scan: Path, work: Path, **params) -> np.ndarray:
    """plan → preprocess → collect → reconstruct → merge in this process; the volume."""
    work.mkdir(parents=True, exist_ok=True)
    p = from_mapping({"threads": 1, **params})  # one thread: the same sums in the same order
    with open_scan_for(scan, p) as s:
        plan = planmod.make_plan(s, p, workdir=work)
    with h5py.File(run_plan(plan)["hdf5"]) as f:
        return f["/exchange/data"][()]


@pytest.fixture(scope="module")
def ref_volume(ref, tmp_path_factory) -> np.ndarray:
    return run_stages(ref, tmp_path_factory.mktemp("refvol"), sino_chunks=2)


def diamond(ref: Path, d: Path) -> tuple[Path, dict]:
    return write_diamond(ref, d), {}


def diamond_descending(ref: Path, d: Path) -> tuple[Path, dict]:
    return write_diamond(ref, d, descending=True), {}


def diamond_explicit(ref: Path, d: Path) -> tuple[Path, dict]:
    """Every path given, as HTTomo's loader configuration names them."""
    return write_diamond(ref, d), {"data_path": "/entry/instrument/pco1_hw_hdf/data",
                                   "image_key_path": "/entry/instrument/pco1_hw_hdf/image_key",
                                   "angles_path": "/entry/pco1_hw_hdf/smaract_zrot_value"}


def esrf_entries(ref: Path, d: Path) -> tuple[Path, dict]:
    return write_esrf(ref, d)["scan"], {}


def esrf_files(ref: Path, d: Path) -> tuple[Path, dict]:
    out = write_esrf(ref, d, split="files")
    return out["scan"], {"flat_file": str(out["flats"]), "dark_file": str(out["darks"])}


def tiff_folders(ref: Path, d: Path) -> tuple[Path, dict]:
    out = write_tiff(ref, d)
    return out["proj"], {"flat_file": str(out["flats"]), "dark_file": str(out["darks"]),
                         "angles_file": str(out["angles"]), "angles_unit": "deg"}


def tiff_multipage(ref: Path, d: Path) -> tuple[Path, dict]:
    out = write_tiff(ref, d, multipage=True)
    return out["proj"], {"flat_file": str(out["flats"]), "dark_file": str(out["darks"]),
                         "theta_start_deg": 90.0, "theta_end_deg": 270.0}


def tiff_glob(ref: Path, d: Path) -> tuple[Path, dict]:
    """All frames in one folder, told apart by their names."""
    out = write_tiff(ref, d)
    for role in ("proj", "flats", "darks"):
        for p in out[role].iterdir():
            p.rename(d / p.name)
    return d / "proj_*.tif", {"flat_file": str(d / "flats_*.tif"), "dark_file": str(d / "darks_*.tif"),
                              "angles_file": str(out["angles"]), "angles_unit": "deg"}


LAYOUTS = {f.__name__: f for f in (diamond, diamond_descending, diamond_explicit, esrf_entries, esrf_files,
                                   tiff_folders, tiff_multipage, tiff_glob)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_reconstructs_the_dxchange_volume(layout, ref, ref_volume, tmp_path):
    scan, params = LAYOUTS[layout](ref, tmp_path / "in")
    with open_scan_for(scan, from_mapping(params)) as s, open_scan(ref) as r:
        order, ref_order = np.argsort(s.theta_deg), np.argsort(r.theta_deg)
        np.testing.assert_array_equal(s.theta_deg[order], r.theta_deg[ref_order])
        np.testing.assert_array_equal(s.read_projections(order, slice(2, 5)), r.read_projections(ref_order, slice(2, 5)))
        np.testing.assert_array_equal(s.read_flats(), r.read_flats())
        np.testing.assert_array_equal(s.read_darks(), r.read_darks())
    volume = run_stages(scan, tmp_path / "work", sino_chunks=2, **params)
    np.testing.assert_array_equal(volume, ref_volume)


def info(*args: str | Path, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = teravox(["info", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_info_says_what_was_chosen_and_why(ref, tmp_path, capsys):
    master = write_diamond(ref, tmp_path / "dls")
    rc, out, err = info(master, capsys=capsys)
    assert rc == 0, err
    assert "/entry/pco1_hw_hdf/data  ← signal of the NXdata group /entry/pco1_hw_hdf (the entry's default)" in out
    assert "/entry/instrument/pco1_hw_hdf/image_key  ← image_key of /entry/instrument/pco1_hw_hdf" in out
    assert "/entry/pco1_hw_hdf/smaract_zrot_value  ← axis along the frames of the NXdata group" in out
    assert "the 20 angles of other frames (flats, darks) are not used; unit deg" in out
    assert "from 90.000° to 266.250°" in out and "energy                 20 keV" in out
    files = out.split("files read:\n", 1)[1]
    assert f"{tmp_path / 'dls' / 'pco1-12345.h5'}: frames (projections, flats, darks) (external link)" in files

    scan = write_esrf(ref, tmp_path / "esrf")["scan"]
    rc, out, err = info(scan, capsys=capsys)
    assert rc == 0, err
    assert "image_key_control of /entry0002/instrument/detector (preferred to /entry0002/data/image_key, " \
           "which counts 2 alignment frame(s) as projections)" in out
    assert "note: 2 alignment frame(s) of /entry0002/data/data ignored" in out
    assert "/entry0001/data/data  ← image key 1: other entries of the acquisition (/entry0002 has no flats)" in out
    assert "pixel size             1 µm   ← /entry0002/instrument/detector/x_pixel_size [m]" in out

    out_t = write_tiff(ref, tmp_path / "tif")
    rc, out, err = info(out_t["proj"], "--flat-file", out_t["flats"], "--dark-file", out_t["darks"], "--json",
                        "--theta-start-deg", 90, "--theta-end-deg", 270, capsys=capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["format"] == "tiff" and d["projections"]["shape"] == [48, 8, 32]
    assert {f["file"] for f in d["files_read"]} == {str(out_t[k]) for k in ("proj", "flats", "darks")}


@pytest.mark.slow
def test_teravox_run_on_tiff_folders(ref, ref_volume, tmp_path):
    """The whole pipeline, each job in its own process reading the TIFF files lazily."""
    out = write_tiff(ref, tmp_path / "tif")
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "run", "--scan", out["proj"], "--flat-file",
                          out["flats"], "--dark-file", out["darks"], "--angles-file", out["angles"],
                          "--angles-unit", "deg", "--out", tmp_path / "out", "--sino-chunks", "2", "--threads", "1",
                          "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout
    with h5py.File(tmp_path / "out" / "proj_recon.h5") as f:
        volume = f["/exchange/data"][()]
    np.testing.assert_array_equal(volume, ref_volume)


# -- discovery refuses to guess ------------------------------------------------------------------
def two_nxdata(ref: Path, path: Path) -> Path:
    """Two NXdata groups with frame stacks and no default to say which."""
    master = write_diamond(ref, path.parent)
    with h5py.File(master, "a") as f:
        del f.attrs["default"]
        del f["entry"].attrs["default"]
        g = f["entry"].create_group("pco2_hw_hdf")
        g.attrs["NX_class"], g.attrs["signal"] = "NXdata", "data"
        g["data"] = np.zeros((68, 8, 32), np.uint16)
    return master


def test_equally_plausible_candidates_are_refused_with_the_flag_to_pick(ref, tmp_path):
    master = two_nxdata(ref, tmp_path / "x.nxs")
    with pytest.raises(InputError) as exc:
        open_scan(master)
    msg = str(exc.value)
    assert "2 frame stacks are equally plausible" in msg and "/entry/pco1_hw_hdf/data" in msg
    assert "/entry/pco2_hw_hdf/data" in msg and "give --data-path to pick one" in msg
    with open_scan(master, data_path="/entry/pco1_hw_hdf/data") as s:
        assert s.n_proj == 48

    with h5py.File(master, "a") as f:  # a second, different angle series on the frames' axis
        g = f["/entry/pco1_hw_hdf"]
        g["other_value"] = g["smaract_zrot_value"][()] + 1
        g["other_value"].attrs["units"] = "deg"
        g.attrs["other_value_indices"] = 0
    with pytest.raises(InputError, match=r"2 angle series are equally plausible.*smaract_zrot_value.*"
                                         r"other_value.*give --angles-path"):
        open_scan(master, data_path="/entry/pco1_hw_hdf/data")
    with open_scan(master, data_path="/entry/pco1_hw_hdf/data", angles_path="/entry/pco1_hw_hdf/other_value") as s:
        assert s.theta_deg.min() == 91.0

    scan = write_esrf(ref, tmp_path / "esrf")["scan"]
    with h5py.File(scan, "a") as f:  # two acquisitions in one file
        f.copy(f["entry0002"], "entry0003")
    with pytest.raises(InputError, match=r"2 entries with projections are equally plausible: /entry0002/data/data"
                                         r".*/entry0003/data/data.*--data-path"):
        open_scan(scan)


def test_angles_as_recorded(ref, tmp_path):
    """Any start, direction and span; the range is reported when it suggests something."""
    with open_scan(write_diamond(ref, tmp_path / "d", descending=True)) as s:
        assert s.theta_deg[0] == pytest.approx(266.25) and s.theta_deg[-1] == 90.0
        plan = planmod.make_plan(s, from_mapping({}), workdir=tmp_path)
    assert plan["theta_deg"][0] == 90.0 and plan["angles_reordered"] and plan["notes"] == []

    full = tmp_path / "full.h5"
    write_scan(full, n_angles=48, n_rows=4, n_cols=32, theta_range_deg=360.0, noise=False, progress=False)
    with open_scan(full) as s:
        plan = planmod.make_plan(s, from_mapping({}), workdir=tmp_path)
    assert any("cover 360.0°" in n and "--half-acquisition auto" in n for n in plan["notes"])

    out = write_tiff(ref, tmp_path / "t")
    np.savetxt(out["angles"], np.linspace(-20, 700, 48, endpoint=False))  # two turns, more or less
    params = from_mapping({"angles_file": str(out["angles"]), "angles_unit": "deg",
                           "flat_file": str(out["flats"]), "dark_file": str(out["darks"])})
    with open_scan_for(out["proj"], params) as s:
        assert any("more than a turn" in n for n in planmod.make_plan(s, params, workdir=tmp_path)["notes"])
    half = params.replace(half_acquisition="auto", angles_file=None, theta_start_deg=0.0, theta_end_deg=180.0)
    with open_scan_for(out["proj"], half) as s, pytest.raises(
            PlanError, match=r"half_acquisition: auto needs angles over a full turn \(360°\); the 48 selected "
                             r"projections cover 180.0°"):
        planmod.make_plan(s, half, workdir=tmp_path)


def test_angles_unit_given_when_the_file_has_none(ref, tmp_path):
    master = write_diamond(ref, tmp_path / "d")
    with h5py.File(master, "a") as f:
        motor = f["/entry/pco1_hw_hdf/smaract_zrot_value"]
        values = motor[()]
        del motor.attrs["units"]
    with pytest.raises(InputError, match=r"no unit .* from 90 to 266.25 \(beyond 2π.*give --angles-unit deg or rad"):
        open_scan(master)
    with open_scan(master, angles_unit="deg") as s:
        assert "--angles-unit" in s.theta_source and s.theta_deg.max() == 266.25
    with h5py.File(master, "a") as f:  # radians without a unit
        f["/entry/pco1_hw_hdf/smaract_zrot_value"][...] = np.deg2rad(values)
    with pytest.raises(InputError, match=r"within 2π: radians\?"):
        open_scan(master)
    with open_scan(master, angles_unit="rad") as s:
        np.testing.assert_allclose(s.theta_deg.max(), 266.25)


# -- TIFF stacks ---------------------------------------------------------------------------------
def test_tiff_reads_rows_lazily_in_every_storage(tmp_path):
    """Uncompressed (memory-mapped rows), compressed, big-endian and multi-page files give the
    same rows as the frames written."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60000, (5, 12, 9), dtype=np.uint16)
    from teravox.io.tiff import TiffStack

    for name, kw in (("plain", {}), ("zlib", {"compression": "zlib"}), ("big", {"byteorder": ">"})):
        d = tmp_path / name
        d.mkdir()
        for i, fr in enumerate(frames):
            tifffile.imwrite(d / f"p_{i}.tif", fr, **kw)
        stack = TiffStack(d, "projections")
        assert stack.shape == frames.shape and stack.dtype == np.uint16
        np.testing.assert_array_equal(stack[1:4, 3:7, 2:5], frames[1:4, 3:7, 2:5])
        np.testing.assert_array_equal(stack[2, 5], frames[2, 5])
    for name, kw in (("multi.tif", {}), ("multi_zlib.tif", {"compression": "zlib"})):
        tifffile.imwrite(tmp_path / name, frames, **kw)
        stack = TiffStack(tmp_path / name, "projections")
        np.testing.assert_array_equal(stack[0:5:2, 1:3, :], frames[0:5:2, 1:3, :])
        stack.close()


def test_tiff_files_sort_naturally(tmp_path):
    from teravox.io.tiff import TiffStack

    for i in (1, 2, 10, 11):
        tifffile.imwrite(tmp_path / f"p_{i}.tif", np.full((2, 3), i, np.uint16))
    with pytest.raises(InputError, match=r"numbers jump from 2 \(p_2.tif\) to 10 \(p_10.tif\).*a frame is missing"):
        TiffStack(tmp_path, "projections")
    for i in range(3, 10):
        tifffile.imwrite(tmp_path / f"p_{i}.tif", np.full((2, 3), i, np.uint16))
    np.testing.assert_array_equal(TiffStack(tmp_path, "projections")[:, 0, 0], np.arange(1, 12))


def test_tiff_identity_changes_with_its_files(ref, tmp_path):
    """A TIFF folder is identified by its files: resume never reuses chunks made from other TIFFs."""
    out = write_tiff(ref, tmp_path)
    params = from_mapping({"flat_file": str(out["flats"]), "dark_file": str(out["darks"]),
                           "angles_file": str(out["angles"]), "angles_unit": "deg"})
    with open_scan_for(out["proj"], params) as s:
        plan = planmod.make_plan(s, params, workdir=tmp_path)
    entry = next(f for f in plan["inputs"]["files"] if f["path"] == str(out["proj"]))
    assert entry["files"] == 48 and entry["read_for"] == ["projections"]
    assert str(out["angles"]) in {f["path"] for f in plan["inputs"]["files"]}
    assert provenance.changed_inputs(plan["inputs"]) == []
    frame = out["proj"] / "proj_00047.tif"          # another frame, same size
    tifffile.imwrite(frame, tifffile.imread(frame) // 2)
    assert provenance.changed_inputs(plan["inputs"]) == [str(out["proj"])]
    with open_scan_for(out["proj"], params) as s:
        again = planmod.make_plan(s, params, workdir=tmp_path)
    assert provenance.plan_digest(again) != provenance.plan_digest(plan)


# -- bad input: one line, exit 2, the path named ----------------------------------------------------
def _broken_link(ref: Path, d: Path) -> tuple[Path, list[str]]:
    master = write_diamond(ref, d)
    (d / "pco1-12345.h5").unlink()
    return master, []


def _keys_short(ref: Path, d: Path) -> tuple[Path, list[str]]:
    master = write_diamond(ref, d)
    with h5py.File(master, "a") as f:
        keys = f["/entry/instrument/pco1_hw_hdf/image_key"][()]
        del f["/entry/instrument/pco1_hw_hdf/image_key"]
        f["/entry/instrument/pco1_hw_hdf/image_key"] = keys[:-1]
    return master, []


def _no_unit(ref: Path, d: Path) -> tuple[Path, list[str]]:
    master = write_diamond(ref, d)
    with h5py.File(master, "a") as f:
        del f["/entry/pco1_hw_hdf/smaract_zrot_value"].attrs["units"]
    return master, []


def _tiff_gap(ref: Path, d: Path) -> tuple[Path, list[str]]:
    out = write_tiff(ref, d)
    (out["proj"] / "proj_00020.tif").unlink()
    return out["proj"], ["--angles-file", str(out["angles"]), "--angles-unit", "deg"]


def _tiff_odd_frame(ref: Path, d: Path) -> tuple[Path, list[str]]:
    out = write_tiff(ref, d)
    tifffile.imwrite(out["proj"] / "proj_00007.tif", np.zeros((8, 31), np.uint16))
    return out["proj"], ["--angles-file", str(out["angles"]), "--angles-unit", "deg"]


def _tiff_angles_short(ref: Path, d: Path) -> tuple[Path, list[str]]:
    out = write_tiff(ref, d)
    np.savetxt(out["angles"], np.arange(47.0))
    return out["proj"], ["--angles-file", str(out["angles"]), "--angles-unit", "deg"]


BAD = {
    "data-path-missing": (lambda r, d: (write_diamond(r, d), ["--data-path", "/entry/pco1/data"]),
                          (r"12345.nxs \[/entry/pco1/data\]: missing: expected the frames",)),
    "image-key-path-missing": (lambda r, d: (write_diamond(r, d), ["--image-key-path", "/entry/image_key"]),
                               (r"\[/entry/image_key\]: missing: expected the image keys",)),
    "angles-path-missing": (lambda r, d: (write_diamond(r, d), ["--angles-path", "/entry/sample/rot"]),
                            (r"\[/entry/sample/rot\]: missing: expected the rotation angles",)),
    "monitor-path-missing": (lambda r, d: (write_diamond(r, d), ["--monitor-path", "/entry/mon"]),
                             (r"\[/entry/mon\]: missing: expected the beam monitor",)),
    "flat-folder-missing": (lambda r, d: (write_tiff(r, d)["proj"], ["--flat-file", str(d / "nope"),
                                                                     "--theta-end-deg", "180"]),
                            (r"in/nope: flats file does not exist",)),
    "keys-and-frames-differ": (_keys_short, (r"\[/entry/instrument/pco1_hw_hdf/image_key\]: has 67 image keys for "
                                             r"68 frames",)),
    "angles-no-unit-beyond-2pi": (_no_unit, (r"\[/entry/pco1_hw_hdf/smaract_zrot_value\]: the angles have no unit",
                                             "beyond 2π", "--angles-unit deg or rad")),
    "broken-external-link": (_broken_link, (r"12345.nxs \[/entry/pco1_hw_hdf/data\]: external link to "
                                            r"pco1-12345.h5 \[/entry/data/data\]: the file is missing",)),
    "tiff-missing-frame": (_tiff_gap, ("proj: projections: the numbers jump from 19 .* to 21", "a frame is missing")),
    "tiff-frame-of-another-shape": (_tiff_odd_frame, (r"proj_00007.tif: a frame of 8 × 31 uint16, but "
                                                      r"proj_00000.tif is 8 × 32 uint16",)),
    "tiff-angles-count": (_tiff_angles_short, (r"angles.txt: has 47 angles for 48 projections",)),
    "tiff-without-angles": (lambda r, d: (write_tiff(r, d)["proj"], []),
                            ("TIFF files carry no angles: give --angles-file",)),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_layout_is_one_line_exit_2(name, ref, tmp_path, capsys):
    build, expect = BAD[name]
    scan, args = build(ref, tmp_path / "in")
    capsys.readouterr()
    rc = teravox(["run", "--scan", str(scan), "--out", str(tmp_path / "out"), "--no-progress", *args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("teravox run: error: "), err
    import re

    for pattern in expect:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    assert not list((tmp_path / "out").glob("*.h5"))


def test_explicit_paths_in_parameter_files_and_tori(ref, tmp_path, capsys):
    master = write_diamond(ref, tmp_path / "d")
    given = {"data_path": "/entry/instrument/pco1_hw_hdf/data", "image_key_path": "/entry/instrument/pco1_hw_hdf/image_key",
             "angles_path": "/entry/pco1_hw_hdf/smaract_zrot_value", "angles_unit": "deg"}
    (tmp_path / "p.yaml").write_text("input:\n" + "".join(f"  {k}: {v}\n" for k, v in given.items()))
    rc, out, err = info(master, "--params", tmp_path / "p.yaml", "--json", capsys=capsys)
    assert rc == 0, err
    chosen = {c["role"]: c for c in json.loads(out)["chosen"]}
    assert chosen["frames"]["where"] == given["data_path"] and chosen["frames"]["why"] == "given (--data-path)"
    assert chosen["angles"]["why"].startswith("given (--angles-path)")

    from teravox.config.tori import tori_to_mapping

    mapping, notes = tori_to_mapping({"file_definitions": {
        "data_file": str(master), "data_path": "entry/instrument/pco1_hw_hdf/data",
        "image_key_path": "entry/instrument/pco1_hw_hdf/image_key", "theta_path": "entry/pco1_hw_hdf/smaract_zrot_value",
        "angles_unit": "deg", "i0_path": "entry/ionc1/diode"}})
    assert mapping["image_key_path"] == given["image_key_path"] and mapping["angles_path"] == given["angles_path"]
    assert mapping["monitor_path"] == "/entry/ionc1/diode" and mapping["angles_unit"] == "deg"
    assert not [n for n in notes if "unknown key" in n]
    with open_scan_for(master, from_mapping(mapping)) as s:  # the counter as beam monitor, one per frame
        assert s.i0_source == "/entry/ionc1/diode" and s.i0.shape == (48,)


def test_nexus_flats_and_darks_angles_are_not_checked(ref, tmp_path):
    """Motor readings of flats and darks may be anything (NaN while the sample is out)."""
    master = write_diamond(ref, tmp_path / "d")
    with h5py.File(master, "a") as f:
        f["/entry/pco1_hw_hdf/smaract_zrot_value"][:20] = np.nan
    with open_scan(master) as s:
        assert np.isfinite(s.theta_deg).all() and s.theta_deg.size == 48


def test_split_entries_lend_flats_after_the_scan(ref, tmp_path):
    """Flats in an entry after the projections' are flats after the scan."""
    scan = write_esrf(ref, tmp_path)["scan"]
    with open_scan(ref) as r:
        flats = r.read_flats()
    with h5py.File(scan, "a") as f:
        f.copy(f["entry0001"], "entry0003")
        del f["entry0003/start_time"]
        f["entry0003/start_time"] = "2024-05-01T10:03:00"
        f["entry0003/instrument/detector/data"][...] //= 2
    with open_scan(scan) as s:
        assert (s.n_flats, s.n_flats_after, s.n_darks) == (10, 10, 10)
        np.testing.assert_array_equal(s.read_flats(), flats)
        np.testing.assert_array_equal(s.read_flats(after=True), flats // 2)

