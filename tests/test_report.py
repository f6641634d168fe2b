"""The PDF report: pages, searchable facts, units, optional parts, atomic writing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

pypdf = pytest.importorskip("pypdf")

from teravox.errors import StageError, TeravoxError  # noqa: E402
from teravox.report import (  # noqa: E402
    ReportData,
    ReportFacts,
    _display,
    _limits,
    orthogonal_slices,
    software_versions,
    write_report,
)

MICRO = ("µm", "μm")   # micro sign or Greek mu, whichever the PDF text gives back


def phantom(nz: int = 24, n: int = 40) -> np.ndarray:
    """A (z, y, x) volume: a cylinder of attenuation 0.01/px with a denser ball inside."""
    z, y, x = np.mgrid[:nz, :n, :n].astype(np.float32)
    c = (n - 1) / 2
    vol = np.where((y - c) ** 2 + (x - c) ** 2 < (0.4 * n) ** 2, 0.01, 0.0).astype(np.float32)
    vol[(z - nz / 2) ** 2 + (y - c) ** 2 + (x - c - 4) ** 2 < 36] = 0.03
    return vol


def make_data(pixel_size_m: float | None = None, **fact_changes) -> ReportData:
    vol = phantom()
    nz, n, _ = vol.shape
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    rng = np.random.default_rng(0)
    line = vol.sum(axis=1)                                   # projection at angle 0: (z, x)
    sino = np.stack([np.roll(line[nz // 2], int(5 * np.sin(a))) for a in angles])
    xy, xz, yz = orthogonal_slices(vol, step=2)
    facts = ReportFacts(
        input_file="/data/visitors/danmax/2024/raw/sea_urchin/scan-0042.h5",
        shape=(30, nz, n), n_angles=30, angle_range_deg=(0.0, 174.0),
        center=19.5, center_source="auto", backend="fourier",
        corrections=[("flat/dark normalisation", {"flat_method": "mean"}),
                     ("outlier removal", {"dif": 0.2, "size": 5}),
                     ("Paganin phase retrieval", {"delta_beta": 1000.0, "energy_kev": 35.0})],
        timings={"preprocess": 12.0, "reconstruct": 75.0},
        pixel_size_m=pixel_size_m, volume_shape=vol.shape, date="2024-04-27 14:32",
        output_range=(float(vol.min()), float(vol.max())))
    facts = dataclasses.replace(facts, **fact_changes)
    return ReportData(
        raw_projection=30000 * np.exp(-line) + rng.normal(0, 50, line.shape),
        raw_sinogram=30000 * np.exp(-sino), corrected_projection=np.exp(-line),
        corrected_sinogram=np.exp(-sino), slice_xy=xy, slice_xz=xz, slice_yz=yz,
        histogram=np.histogram(vol, bins=64), facts=facts, slow_axis_step=2,
        projection_index=0, sinogram_row=nz // 2)


def pdf_text(path: Path) -> tuple[int, list[str]]:
    reader = pypdf.PdfReader(str(path))
    return len(reader.pages), [p.extract_text() for p in reader.pages]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, int, list[str]]:
    path = tmp_path_factory.mktemp("report") / "scan-0042_report.pdf"
    path.write_text("an older report")          # replaced, atomically
    write_report(make_data(pixel_size_m=0.65e-6), path)
    return (path, *pdf_text(path))


def test_pdf_exists_with_overview_and_details_pages(report):
    path, n_pages, texts = report
    assert path.read_bytes().startswith(b"%PDF")
    assert n_pages == 2
    assert "scan-0042" in texts[0] and "2024-04-27" in texts[0]     # the title: scan and date
    assert "XY" in texts[0] and "XZ" in texts[0] and "YZ" in texts[0]
    assert "Histogram" in texts[0] and "Key facts" in texts[0]
    assert "Raw projection" in texts[1] and "as reconstructed" in texts[1]


def test_text_names_corrections_centre_backend_input(report):
    _, _, texts = report
    everything = "\n".join(texts)
    for name in ("flat/dark normalisation", "outlier removal", "Paganin phase retrieval"):
        assert name in texts[0] and name in texts[1]
    assert "delta_beta = 1000" in texts[1] and "dif = 0.2" in texts[1]   # with their parameters
    assert "19.50 px" in texts[0] and "(auto)" in texts[0]              # the centre and how found
    assert "fourier" in texts[0]
    assert "scan-0042.h5" in texts[0]
    # page 2 gives the full input path (wrapped after a '/')
    assert "/data/visitors/danmax/2024/raw/sea_urchin/scan-0042.h5" in everything.replace("\n", "").replace(" ", "")
    assert "1 min 27 s" in texts[1]                                     # total of the timings
    for package in ("numpy", "h5py", "python"):
        assert package in texts[1]


def test_pixel_size_gives_physical_units(report):
    _, _, texts = report
    assert any(mu in texts[0] for mu in MICRO)                          # axes and scale bars
    assert re.search(r"attenuation \S+ \((c?m)⁻¹\)", texts[0])          # colour bars per length
    assert "0.65 µm" in texts[0] or "0.65 μm" in texts[0]               # the pixel size itself


def test_minimal_report_in_pixels(tmp_path):
    """No pixel size, stitching, timings, corrections, centre or positions: still a report,
    with pixel units."""
    data = make_data(pixel_size_m=None, corrections=[], timings={}, center=None,
                     volume_shape=None, output_range=None, date=None, scan_name=None)
    data.projection_index = data.sinogram_row = None
    path = tmp_path / "minimal.pdf"
    write_report(data, path)
    n_pages, texts = pdf_text(path)
    assert n_pages == 2
    assert "x (px)" in texts[0] and "1/pixel" in texts[0]
    assert not any(mu in texts[0] for mu in MICRO)
    assert "not set" in texts[0] and "none" in texts[0]
    assert "Stitch" not in "".join(texts)


def test_stitching_page_only_when_present(tmp_path):
    data = make_data(pixel_size_m=1e-6)
    data.stitched_projection = np.hstack([data.corrected_projection] * 2)
    data.seam_columns = [40.0]
    yy, xx = np.mgrid[-5:6, -5:6]
    data.alignment_costs = {"scan 1 - 2": (yy - 1.0) ** 2 + (xx + 2.0) ** 2,
                            "scan 2 - 3": np.abs(np.arange(11) - 7.0)}
    path = tmp_path / "stitched.pdf"
    write_report(data, path)
    n_pages, texts = pdf_text(path)
    assert n_pages == 3
    assert "Stitched projection" in texts[2] and "scan 1 - 2" in texts[2]
    assert "best -2" in texts[2] and "best +1" in texts[2]             # minimum of the cost map


def test_integer_output_is_shown_in_attenuation(tmp_path):
    data = make_data(output_dtype="uint16", integer_mapping=(0.0, 0.04), output_range=(0, 65535))
    to_codes = lambda a: np.clip(a / 0.04 * 65535, 0, 65535).astype(np.uint16)  # noqa: E731
    data.slice_xy, data.slice_xz, data.slice_yz = map(to_codes, (data.slice_xy, data.slice_xz, data.slice_yz))
    data.histogram = np.histogram(data.slice_xy, bins=32, range=(0, 65536))
    path = tmp_path / "codes.pdf"
    write_report(data, path)
    _, texts = pdf_text(path)
    assert "attenuation (1/pixel)" in texts[0]
    assert "uint16" in texts[0] and "0 … 65535" in texts[0]


def test_long_facts_continue_on_another_page(tmp_path):
    many = [(f"correction number {i}", {"alpha": i, "beta": [1, 2, 3], "path": "/a/b/c"}) for i in range(40)]
    path = tmp_path / "long.pdf"
    write_report(make_data(corrections=many), path)
    n_pages, texts = pdf_text(path)
    assert n_pages >= 3
    everything = "\n".join(texts[1:])
    assert all(f"correction number {i}" in everything for i in range(40))
    assert "Software" in everything


def test_non_writable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    target = blocker / "report.pdf"
    with pytest.raises(StageError) as err:
        write_report(make_data(), target)
    assert isinstance(err.value, TeravoxError)
    message = str(err.value)
    assert str(target) in message and "cannot write the report" in message and "\n" not in message


def test_write_is_atomic_and_replaces(report):
    path = report[0]
    assert path.read_bytes().startswith(b"%PDF")                         # the old file replaced
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def test_failure_leaves_nothing(tmp_path):
    data = make_data()
    data.histogram = (np.ones(3), "not edges")                           # breaks while drawing
    path = tmp_path / "r.pdf"
    with pytest.raises(Exception):  # noqa: B017 - any failure; the point is what is left behind
        write_report(data, path)
    assert list(tmp_path.iterdir()) == []


def test_orthogonal_slices_reads_planes():
    vol = np.arange(6 * 4 * 5, dtype=np.float32).reshape(6, 4, 5)
    xy, xz, yz = orthogonal_slices(vol, step=2)
    np.testing.assert_array_equal(xy, vol[3])
    np.testing.assert_array_equal(xz, vol[::2, 2, :])
    np.testing.assert_array_equal(yz, vol[::2, :, 2])


def test_display_block_averages_large_images():
    img = np.ones((3000, 2500), np.float32)
    small = _display(img, max_px=1000)
    assert max(small.shape) <= 1000 and np.allclose(small, 1)


def test_limits_are_robust():
    img = np.zeros((100, 100))
    img[0, 0] = 1e9            # one hot pixel must not set the grey scale
    img[1:, :] = np.linspace(0, 1, 99)[:, None]
    img[5, 5] = np.nan
    lo, hi = _limits(img)
    assert 0 <= lo < hi <= 1
    assert _limits(np.full((3, 3), np.nan)) == (0.0, 1.0)


def test_software_versions():
    versions = software_versions()
    assert {"python", "teravox", "numpy", "h5py", "ducc0", "algotom"} <= set(versions)


def test_first_page_states_centre_method_confidence_tilt(tmp_path):
    """The centre, how it was found, its confidence and the tilt on page 1; the search's
    metric and the per-row fit on a page of their own."""
    search = {"center": 19.5, "row": 12.0, "confidence": 0.82, "method": "Vo's double-wedge metric (180°)",
              "side": None, "tilt_px_per_row": 0.01, "tilt_sigma": 0.002, "rows": [4, 8, 12, 16, 20],
              "row_centers": [19.42, 19.46, 19.5, 19.54, 19.58], "row_confidences": [0.8, 0.9, 0.9, 0.8, 0.7],
              "runner_up": 31.0, "problem": None,
              "curve": {"centers": list(np.arange(2, 38, 0.5)),
                        "metric": list(1 - np.exp(-((np.arange(2, 38, 0.5) - 19.5) / 2) ** 2))}}
    data = make_data(center_source="auto; Vo's double-wedge metric (180°) on rows 4, 8, 12, 16, 20, confidence 0.82",
                     tilt="estimated +0.5730° ± 0.1146° (+0.23 px over the 24 rows), not corrected")
    data = dataclasses.replace(data, center_search=search)
    path = tmp_path / "r.pdf"
    write_report(data, path)
    n_pages, texts = pdf_text(path)
    first = texts[0].replace("\n", " ")
    assert "19.50 px" in first and "Vo's double-wedge metric" in first and "confidence 0.82" in first
    assert "Axis tilt" in first and "+0.5730°" in first and "not corrected" in first
    assert n_pages == 3 and "Rotation centre: the automatic search" in texts[2]
    assert "runner-up 31.0 px" in texts[2] and "Centre per row" in texts[2]
