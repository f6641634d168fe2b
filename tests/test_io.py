"""Readers: DXchange, DanMAX variants, NXtomo, lazy slicing, units, and bad input."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import write_dxchange

from teravox.errors import InputError
from teravox.io import open_scan


def test_dxchange_shapes_and_lazy_reads(tiny_scan):
    with h5py.File(tiny_scan, "r") as f:
        data = f["/exchange/data"][()]
    with open_scan(tiny_scan) as s:
        assert s.shape == data.shape and s.dtype == np.uint16
        assert s.n_flats == 3 and s.n_darks == 2
        np.testing.assert_allclose(s.theta_deg, np.linspace(0, 180, 12, endpoint=False))
        np.testing.assert_array_equal(s.read_projections(slice(2, 5), slice(1, 3)), data[2:5, 1:3])
        idx = np.array([0, 1, 2, 7, 9])  # runs of contiguous indices
        np.testing.assert_array_equal(s.read_projections(idx, slice(0, 2), slice(3, 9)), data[idx, 0:2, 3:9])
        assert s.read_flats(slice(0, 2)).shape == (3, 2, 20)


def test_tooth_real_data(tooth):
    with open_scan(tooth) as s:
        assert s.shape == (181, 2, 640) and s.dtype == np.float32
        assert s.n_flats == 10 and s.n_darks == 10
        assert s.theta_deg[0] == pytest.approx(0.0) and 178 < s.theta_deg[-1] <= 180


@pytest.mark.parametrize("unit,expect", [("um", 0.65e-6), ("mm", 0.65e-3), (None, 0.65e-6), ("nm", 0.65e-9)])
def test_metadata_units_honoured(tmp_path, unit, expect):
    path = write_dxchange(tmp_path / "m.h5", metadata={
        "/measurement/instrument/detector/pixel_size_x": (0.65, unit),
        "/measurement/instrument/monochromator/energy": (25000.0, "eV"),
        "/measurement/instrument/detector/distance": (30.0, "cm")})
    with open_scan(path) as s:
        md = s.metadata
        assert md["pixel_size_m"].value == pytest.approx(expect)
        assert md["energy_kev"].value == pytest.approx(25.0)
        assert md["distance_m"].value == pytest.approx(0.3)
        assert "pixel_size_x" in md["pixel_size_m"].source
        if unit is None:
            assert "assumed um" in md["pixel_size_m"].source


def test_unknown_unit_is_an_error_naming_the_dataset(tmp_path):
    path = write_dxchange(tmp_path / "u.h5", metadata={"/measurement/instrument/monochromator/energy": (25, "furlong")})
    with pytest.raises(InputError, match=r"monochromator/energy.*unknown energy unit 'furlong'"):
        open_scan(path)


def test_danmax_variant_paths_and_angles(tmp_path):
    path = write_dxchange(tmp_path / "d.h5", n_proj=10, theta=False, metadata={
        "/instrument/monochromator/energy": (35.0, "keV"),
        "/instrument/detector/actual_pixel_size_x": (0.55, "um"),
        "/instrument/detector/propagation_distance": (100.0, "mm"),
        "/process/acquisition/setup/rotation_start_angle": (-90.0, "deg"),
        "/process/acquisition/setup/rotation_end_angle": (270.0, "deg")})
    with h5py.File(path, "a") as f:
        f["/instrument/beam_monitor/data"] = np.linspace(1, 2, 10)
    with open_scan(path) as s:
        assert s.metadata["energy_kev"].value == 35.0
        assert s.metadata["pixel_size_m"].value == pytest.approx(0.55e-6)
        assert s.metadata["distance_m"].value == pytest.approx(0.1)
        np.testing.assert_allclose(s.theta_deg, -90 + 36 * np.arange(10))
        assert "rotation" in s.theta_source
        np.testing.assert_allclose(s.i0, np.linspace(1, 2, 10))


def test_no_theta_defaults_to_180(tmp_path):
    path = write_dxchange(tmp_path / "t.h5", n_proj=4, theta=False)
    with open_scan(path) as s:
        np.testing.assert_allclose(s.theta_deg, [0, 45, 90, 135])
        assert "default" in s.theta_source


def test_flats_from_separate_file(tmp_path):
    scan = write_dxchange(tmp_path / "s.h5", flats=False, darks=False)
    side = tmp_path / "flats.h5"
    with h5py.File(side, "w") as f:
        f["/flats"] = np.full((4, 6, 20), 900, np.uint16)
        f["/darks"] = np.full((2, 6, 20), 90, np.uint16)
    with open_scan(scan, flat_file=str(side), flat_path="/flats", dark_file=str(side), dark_path="/darks") as s:
        assert s.n_flats == 4 and s.read_flats().mean() == 900 and s.read_darks().mean() == 90


def write_nxtomo(path, n_proj=8, rows=4, cols=10):
    keys = np.array([2, 2, 1, 1] + [0] * n_proj + [1])
    frames = np.zeros((keys.size, rows, cols), np.uint16)
    frames[keys == 2] = 10
    frames[keys == 1] = 1000
    frames[keys == 0] = 500 + np.arange(n_proj)[:, None, None]
    angles = np.where(keys == 0, 0.0, 0.0)
    angles[keys == 0] = np.linspace(0, 180, n_proj, endpoint=False)
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        d = e.create_group("data")
        d.attrs["NX_class"] = "NXdata"
        d["data"] = frames
        d["image_key"] = keys
        d["rotation_angle"] = angles
        d["rotation_angle"].attrs["units"] = "degree"
    return path


def test_nxtomo_reader(tmp_path):
    path = write_nxtomo(tmp_path / "nx.h5")
    with open_scan(path) as s:
        assert s.format == "nxtomo" and s.shape == (8, 4, 10)
        assert (s.n_flats, s.n_flats_after, s.n_darks) == (2, 1, 2)
        np.testing.assert_array_equal(s.read_projections(slice(2, 4))[:, 0, 0], [502, 503])
        np.testing.assert_array_equal(s.read_projections(np.array([0, 5]))[:, 0, 0], [500, 505])
        assert s.read_flats().mean() == 1000 and s.read_darks().mean() == 10
        np.testing.assert_allclose(s.theta_deg, np.linspace(0, 180, 8, endpoint=False))


def _info(*args):
    return subprocess.run([sys.executable, "-m", "teravox.cli", "info", *map(str, args)],
                          capture_output=True, text=True)


def _assert_one_line_error(res, *needles):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_missing_file(tmp_path):
    _assert_one_line_error(_info(tmp_path / "nope.h5"), "nope.h5", "does not exist")


def test_bad_input_not_hdf5(tmp_path):
    p = tmp_path / "scan.h5"
    p.write_text("hello")
    _assert_one_line_error(_info(p), "scan.h5", "not an HDF5 file")


def test_bad_input_missing_data(tmp_path):
    p = tmp_path / "nodata.h5"
    with h5py.File(p, "w") as f:
        f["/exchange/theta"] = np.arange(3.0)
    _assert_one_line_error(_info(p), "nodata.h5", "/exchange/data", "missing")


def test_bad_input_flat_width(tmp_path):
    p = write_dxchange(tmp_path / "w.h5")
    with h5py.File(p, "a") as f:
        del f["/exchange/data_white"]
        f["/exchange/data_white"] = np.ones((2, 6, 19), np.uint16)
    _assert_one_line_error(_info(p), "w.h5", "/exchange/data_white", "6 × 19", "6 × 20")


def test_bad_input_theta_length(tmp_path):
    p = write_dxchange(tmp_path / "th.h5")
    with h5py.File(p, "a") as f:
        del f["/exchange/theta"]
        f["/exchange/theta"] = np.arange(11.0)
    _assert_one_line_error(_info(p), "th.h5", "/exchange/theta", "11 angles", "12 projections")


def test_bad_input_empty_dataset(tmp_path):
    p = tmp_path / "empty.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("/exchange/data", shape=(0, 4, 4), dtype=np.uint16)
    _assert_one_line_error(_info(p), "empty.h5", "/exchange/data", "empty")


def test_info_text_and_json(tiny_scan):
    res = _info(tiny_scan)
    assert res.returncode == 0, res.stderr
    assert "12 × 6 × 20" in res.stdout and "reconstructed volume" in res.stdout and "missing" in res.stdout
    res = _info(tiny_scan, "--json")
    import json

    d = json.loads(res.stdout)
    assert d["projections"]["shape"] == [12, 6, 20] and d["angles"]["count"] == 12


def test_info_and_plan_name_every_file_a_scan_reads(tmp_path):
    """Projections as a virtual dataset over two files in a subfolder, flats through an external
    link to '../': followed wherever they point, and each named by `teravox info` and the plan."""
    from teravox import plan as planmod
    from teravox.config import from_mapping

    src = write_dxchange(tmp_path / "src.h5")
    with h5py.File(src) as f:
        data, white, dark, theta = (f[p][()] for p in ("/exchange/data", "/exchange/data_white",
                                                       "/exchange/data_dark", "/exchange/theta"))
    raw = tmp_path / "raw"
    (raw / "frames").mkdir(parents=True)
    layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
    for i in range(2):
        with h5py.File(raw / "frames" / f"part{i}.h5", "w") as g:
            g["frames"] = data[i * 6:(i + 1) * 6]
        layout[i * 6:(i + 1) * 6] = h5py.VirtualSource(f"frames/part{i}.h5", "frames", shape=(6, 6, 20))
    with h5py.File(tmp_path / "flats.h5", "w") as g:
        g["white"] = white
    master = raw / "master.h5"
    with h5py.File(master, "w") as f:
        f.create_virtual_dataset("/exchange/data", layout, fillvalue=0)
        f["/exchange/data_white"] = h5py.ExternalLink("../flats.h5", "/white")
        f["/exchange/data_dark"] = dark
        f["/exchange/theta"] = theta
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "info", str(master)], capture_output=True,
                         text=True, cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    listed = res.stdout.split("files read:\n", 1)[1]
    assert f"{master}: projections, darks, angles" in listed
    for i in range(2):
        assert f"{raw / 'frames' / f'part{i}.h5'}: projections (virtual source of /exchange/data)" in listed
    assert f"{tmp_path / 'flats.h5'}: flats (external link)" in listed
    with open_scan(master) as s:
        np.testing.assert_array_equal(s.read_projections(slice(None)), data)
        plan = planmod.make_plan(s, from_mapping({}), workdir=tmp_path)
    files = {f["path"] for f in plan["inputs"]["files"]}
    assert files == {str(master), str(tmp_path / "flats.h5"), *(str(raw / "frames" / f"part{i}.h5") for i in range(2))}


def test_projections_read_in_any_order(tiny_scan):
    with open_scan(tiny_scan) as s:
        whole = s.read_projections(slice(None))
        for idx in ([5, 6, 7, 1, 2, 11, 0], [11, 10, 9], [3]):
            np.testing.assert_array_equal(s.read_projections(np.asarray(idx), slice(1, 4)), whole[idx, 1:4])
