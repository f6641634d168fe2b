"""Projection stitching: scan sheet, alignment of offset scans, blending, the stitch-align stage.

The synthetic samples are tiny (64-column scans, 16 rows, 12 angles) with known true
offsets — sub-pixel in both axes — and motor positions off by up to ±8 px each (so
neighbours' relative guesses are off by up to 16 px, beyond the ±10 px window):
:func:`teravox.synth.stitch.write_stitch_sample` writes one with its scan sheet.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from scipy import ndimage

from teravox.config import Params
from teravox.errors import InputError, ParamError, PlanError, TeravoxError
from teravox.stitch import StitchedSource, StitchParams, blend, check_projection_index, plan_section
from teravox.stitch import align as al
from teravox.stitch.sheet import read_meta, read_sheet, rows_from_positions
from teravox.stitch.source import cost_maps, stitched_projection
from teravox.synth.scan import write_multiscan
from teravox.synth.stitch import FLUX, N_FLATS, write_stitch_sample


# -- synthetic multi-scan samples ----------------------------------------------------------
def make_plan(sheet_path: Path, params: Params | None = None, **stitch: Any) -> dict[str, Any]:
    """The stitching part of a plan, as the lead's plan.py will build it (format, params, workdir,
    scans, stitch, selection, theta)."""
    params = params or Params()
    sheet = read_sheet(sheet_path)
    metas = read_meta(sheet.rows, params)
    section = plan_section(sheet, metas, params, stitch or None)
    n = metas[0].shape[0]
    return {"format": 1, "params": params.to_dict(), "workdir": str(Path(sheet_path).parent),
            "selection": {"proj_indices": list(range(n)), "rows": [0, metas[0].shape[1]],
                          "cols": [0, section["stitch"]["width"]]},
            "theta_deg": metas[0].theta_deg.tolist(), **section}


def true_projections(sample: dict[str, Any], width: int) -> np.ndarray:
    """Transmission of the object on the stitched grid (angles, rows, width), noise-free."""
    s = np.arange(width) - sample["center"]
    z = np.arange(sample["n_rows"]) - (sample["n_rows"] - 1) / 2.0
    li = sample["phantom"].line_integrals(np.deg2rad(sample["theta_deg"]), s, z, sample["supersample"], "mu")
    return np.exp(-li).astype(np.float32)


def found_errors(alignment: al.Alignment, sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    got = np.array(alignment.shifts)
    return got[:, 0] - sample["dx"], got[:, 1] - sample["dy"]


@pytest.fixture(scope="module")
def sample4(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return write_stitch_sample(tmp_path_factory.mktemp("s4"), 4, seed=3)


@pytest.fixture(scope="module")
def aligned4(sample4: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """sample4 aligned by the stage: (plan, shifts.json as read back)."""
    from teravox.stages import stitch_align

    plan = make_plan(sample4["sheet"])
    plan_path = sample4["dir"] / "plan.json"
    plan_path.write_text(json.dumps(plan))
    out = sample4["dir"] / "shifts.json"
    assert stitch_align.main(["--plan", str(plan_path), "-o", str(out), "-q"]) == 0
    return plan, json.loads(out.read_text())


# -- the scan sheet --------------------------------------------------------------------------
def _touch_scans(d: Path, names: list[str]) -> None:
    for n in names:
        (d / n).write_bytes(b"")


def test_sheet_formats_agree_and_resolve_paths(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _touch_scans(tmp_path / "data", ["a.h5", "b.h5", "flat.h5"])
    (tmp_path / "s.csv").write_text("file,position_mm,position_px,flat_file,comment\n"
                                    "data/a.h5,1.5,,data/flat.h5,first\n# a comment line\n"
                                    "data/b.h5,,250,,\n")
    (tmp_path / "s.json").write_text(json.dumps([
        {"file": "data/a.h5", "position_mm": 1.5, "flat_file": "data/flat.h5"},
        {"file": "data/b.h5", "position_px": 250}]))
    (tmp_path / "s.yaml").write_text("pixel_size_m: 1.0e-6\nscans:\n"
                                     "  - {file: data/a.h5, position_mm: 1.5, flat_file: data/flat.h5}\n"
                                     "  - {file: data/b.h5, position_px: 250}\n")
    sheets = [read_sheet(tmp_path / f"s.{ext}") for ext in ("csv", "json", "yaml")]
    for sh in sheets:
        assert [r.file for r in sh.rows] == [tmp_path / "data/a.h5", tmp_path / "data/b.h5"]
        assert [(r.position, r.unit) for r in sh.rows] == [(1.5, "mm"), (250.0, "px")]
        assert sh.rows[0].flat_file == tmp_path / "data/flat.h5" and sh.rows[1].flat_file is None
    assert sheets[2].pixel_size_m == 1e-6
    assert sheets[0].rows[0].position_px(0.5e-6) == pytest.approx(3000.0)  # 1.5 mm / 0.5 um
    assert sheets[0].rows[1].position_px(None) == 250.0
    with pytest.raises(PlanError, match="pixel size"):
        sheets[0].rows[0].position_px(None)


@pytest.mark.parametrize("text, match", [
    ("file,position_mm\n", "lists no scans"),
    ("file,position_mm,position_px\na.h5,1,2\n", "one of position_mm and position_px, not both"),
    ("file,height_mm,height_px\na.h5,1,2\n", "one of height_mm and height_px, not both"),
    ("file,position_mm\na.h5,\n", "give its position .* its height"),
    ("file,height_px\na.h5,low\n", "height_px must be a number"),
    ("file,positon_mm\na.h5,1\n", "unknown column.*positon_mm"),
    ("file,position_mm\na.h5,one\n", "position_mm must be a number"),
    ("file,position_mm\na.h5,1\na.h5,2\n", "listed twice"),
])
def test_sheet_errors_name_the_sheet(tmp_path: Path, text: str, match: str) -> None:
    _touch_scans(tmp_path, ["a.h5"])
    (tmp_path / "s.csv").write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        read_sheet(tmp_path / "s.csv")
    assert "s.csv" in str(exc.value)


def test_sheet_missing_scan_file_names_scan_and_row(tmp_path: Path) -> None:
    _touch_scans(tmp_path, ["a.h5"])
    (tmp_path / "s.csv").write_text("file,position_mm\na.h5,0\nmissing.h5,0.04\n")
    with pytest.raises(InputError, match=r"missing\.h5.*scan file of scan missing\.h5 \(row 2 of s\.csv\) "
                                         r"does not exist"):
        read_sheet(tmp_path / "s.csv")
    with pytest.raises(InputError, match="does not exist"):
        read_sheet(tmp_path / "nope.csv")


def test_positions_on_the_command_line(tmp_path: Path) -> None:
    _touch_scans(tmp_path, ["a.h5", "b.h5"])
    rows = rows_from_positions([tmp_path / "a.h5", tmp_path / "b.h5"], "0, 0.04")
    assert [(r.file.name, r.position, r.unit) for r in rows] == [("a.h5", 0.0, "mm"), ("b.h5", 0.04, "mm")]
    with pytest.raises(ParamError, match="2 position.*3 scan"):
        rows_from_positions(["a", "b", "c"], [0, 1], check_files=False)
    with pytest.raises(ParamError, match="numbers"):
        rows_from_positions(["a"], "zero", check_files=False)
    with pytest.raises(InputError, match=r"scan file of scan c\.h5 does not exist"):
        rows_from_positions([tmp_path / "a.h5", tmp_path / "c.h5"], [0, 10], unit="px")


# -- the plan section ------------------------------------------------------------------------
def test_plan_section_orders_scans_and_converts_positions(tmp_path: Path) -> None:
    s = write_stitch_sample(tmp_path, 3, shuffle=True, n_angles=4, supersample=1, seed=5)
    plan = make_plan(s["sheet"])
    names = [e["name"] for e in plan["scans"]]
    assert names == ["scan_00.h5", "scan_01.h5", "scan_02.h5"]            # by position, not sheet order
    assert [e["sheet_row"] for e in plan["scans"]] != [1, 2, 3]          # the sheet was shuffled
    guess = np.array([e["guess_px"] for e in plan["scans"]])
    truth = s["dx"] + s["motor_error_px"] - s["motor_error_px"][0]       # mm → px with the files' 1 um
    np.testing.assert_allclose(guess, truth, atol=1e-3)
    st = plan["stitch"]
    assert st["pixel_size_m"] == pytest.approx(1e-6) and "pixel_size_x" in st["pixel_size_source"]
    assert st["width"] == round(guess[-1] + 64) - 10 and st["rows"] == 16
    assert [e["shape"][1:] for e in plan["scans"]] == [[16, 64]] * 3 and plan["scans"][1]["guess_dy_px"] == 0.0
    assert st["align_projection"] == 0 and st["check_projection"] == 3   # 180°: the last one
    json.dumps(plan)                                                     # JSON-able as it is
    # a motor that counts the other way round: the scan with the largest position is scan 0
    flipped = make_plan(s["sheet"], position_sign=-1, window_px=30)
    assert [e["name"] for e in flipped["scans"]] == names[::-1]
    assert flipped["stitch"]["window_px"] == 30 and flipped["stitch"]["position_sign"] == -1


def test_check_projection_is_the_other_end() -> None:
    assert check_projection_index(np.arange(12) * 15.0, np.arange(12)) == 11      # 180°: the last
    assert check_projection_index(np.arange(12) * 30.0, np.arange(12)) == 6       # 360°: at 180°
    assert check_projection_index(np.arange(12) * 30.0, np.arange(2, 12)) == 8    # from the first kept


def test_scans_with_different_angle_counts_are_refused(tmp_path: Path) -> None:
    s = write_stitch_sample(tmp_path, 3, n_angles=6, n_angles_of={2: 5}, supersample=1, noise=False)
    with pytest.raises(PlanError, match=r"same projections.*scan_00\.h5 \(row 1 of scans\.csv\) has 6 "
                                        r"projections, but scan_02\.h5 \(row 3 of scans\.csv\) has 5"):
        make_plan(s["sheet"])


def test_scans_with_different_angles_are_refused(tmp_path: Path) -> None:
    s = write_stitch_sample(tmp_path, 2, n_angles=6, supersample=1, noise=False)
    with h5py.File(s["files"][1], "r+") as f:
        f["/exchange/theta"][3] += 2.0
    with pytest.raises(PlanError, match=r"same angles.*scan_01\.h5.*at projection 3"):
        make_plan(s["sheet"])


def test_motor_position_without_overlap_is_refused_at_plan_time(tmp_path: Path) -> None:
    s = write_stitch_sample(tmp_path, 3, n_angles=4, supersample=1, noise=False)
    text = s["sheet"].read_text().splitlines()
    text[3] = "scan_02.h5,12.7"  # ~120 px right of its truth: ~160 px from scan_01, whose image is 64 wide
    s["sheet"].write_text("\n".join(text) + "\n")
    with pytest.raises(PlanError, match=r"scan_02\.h5 \(row 3.*neighbour scan_01\.h5.*cannot be aligned"):
        make_plan(s["sheet"])


# -- alignment (pure) ---------------------------------------------------------------------------
def _smooth_field(shape: tuple[int, int], seed: int, corr_px: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), corr_px) * 10 + 1.0


@pytest.mark.parametrize("true_dx, true_dy", [(40.0, 0.0), (37.3, -1.6), (42.5, 2.25)])
def test_align_pair_finds_subpixel_shift(true_dx: float, true_dy: float) -> None:
    """b is the part of a wide smooth image seen from (true_dy, true_dx): found to 0.1 px from a
    motor guess 7 px off, with noise."""
    wide = _smooth_field((40, 140), seed=1)
    rng = np.random.default_rng(2)
    a = wide[8:32, 10:74]
    b = ndimage.shift(wide, (-true_dy, -true_dx), order=3, mode="nearest")[8:32, 10:74]
    a = a + 0.01 * rng.standard_normal(a.shape)
    b = b + 0.01 * rng.standard_normal(b.shape)
    p = al.align_pair(a, b, true_dx + 7.0)
    assert p.determined == (True, True)
    assert abs(p.dx - true_dx) < 0.1 and abs(p.dy - true_dy) < 0.1
    assert p.cost.shape == (21, 21) and p.extended == 0
    assert p.curvature[0] > 0 and p.curvature[1] > 0 and p.cost_min == np.nanmin(p.cost)


def test_align_pair_beyond_the_window_extends_it() -> None:
    wide = _smooth_field((40, 140), seed=3)
    a, b = wide[8:32, 10:74], wide[8:32, 50:114]                 # true shift 40, 0
    p = al.align_pair(a, b, 55.0)                                # motor 15 px off: outside ±10
    assert p.extended >= 1 and abs(p.dx - 40) < 0.05 and abs(p.dy) < 0.05
    dx, _, _, warns = al.reconcile(p, None, ("a", "b"))
    assert dx == p.dx and any("moved or widened" in w for w in warns)


def test_align_pair_without_overlap_names_the_scan() -> None:
    a = b = np.ones((8, 64), np.float32)
    with pytest.raises(PlanError, match=r"scan_03\.h5: its motor position puts it \+90\.0 px from scan_02\.h5.*"
                                        r"no shift within ±10 px"):
        al.align_pair(a, b, 90.0, names=("scan_02.h5", "scan_03.h5"))
    with pytest.raises(TeravoxError, match="scan 2"):
        al.align_scans([a, a, b], [0.0, 40.0, 140.0])


def test_featureless_overlap_keeps_the_motor_position() -> None:
    rng = np.random.default_rng(0)
    a = 0.8 + 0.01 * rng.standard_normal((2, 16, 64))
    b = 0.8 + 0.01 * rng.standard_normal((2, 16, 64))
    res = al.align_scans([a, b], [0.0, 41.7], names=["left.h5", "right.h5"])
    assert res.scans[1].how == "motor" and res.scans[1].dx == pytest.approx(41.7) and res.scans[1].dy == 0.0
    assert res.pairs[0].measurements == []
    assert any("no overlap pins down its column position" in w and "right.h5" in w for w in res.warnings)


def _stacks(shifts: list[float], seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frames of two scans 40 px apart; frame k of the right one sits at ``shifts[k]``."""
    fields = [_smooth_field((40, 160), seed=seed + k) for k in range(len(shifts))]
    a = np.stack([f[8:32, 10:74] for f in fields])
    b = np.stack([ndimage.shift(f, (0, -x), order=3, mode="nearest")[8:32, 10:74]
                  for f, x in zip(fields, shifts, strict=True)])
    return a, b


def test_moved_projection_is_rejected_as_an_outlier() -> None:
    """One projection of six sees the right scan 3 px further: its measurement is rejected by
    name and the fit keeps the other five."""
    a, b = _stacks([40.0, 40.0, 40.0, 43.0, 40.0, 40.0])
    res = al.align_scans([a, b], [0, 38.0], names=["l.h5", "r.h5"], projections=[0, 30, 60, 90, 120, 150])
    pair = res.pairs[0]
    assert abs(res.scans[1].dx - 40) < 0.02 and abs(res.scans[1].dy) < 0.02
    assert [m.used[0] for m in pair.measurements] == [True, True, True, False, True, True]
    assert pair.rejected >= 1 and pair.residual_rms[0] < 0.02
    assert abs(pair.measurements[3].residual[0] - 3.0) < 0.1
    assert any(re.search(r"r\.h5 against l\.h5: the dx measured on projection 90 \(\+43\.0\d px\).*rejected", w)
               for w in res.warnings)


def test_all_pairs_are_measured_and_fit_together() -> None:
    """Three scans that all overlap: the pair (0, 2) is measured too (a loop), but not a pair
    whose motors leave too little overlap."""
    wide = _smooth_field((40, 200), seed=9)
    frames = [np.stack([wide[8:32, 10 + x:74 + x]]) for x in (0, 20, 40)]
    guesses = [0.0, 22.0, 38.0]
    assert al.overlapping_pairs([(g, 0.0) for g in guesses], [(24, 64)] * 3) == [(0, 1), (0, 2), (1, 2)]
    assert al.overlapping_pairs([(0, 0), (22, 0), (44, 0)], [(24, 64)] * 3) == [(0, 1), (1, 2)]
    res = al.align_scans(frames, guesses)
    assert [(p.left, p.right) for p in res.pairs] == [(0, 1), (0, 2), (1, 2)]
    np.testing.assert_allclose([s.dx for s in res.scans], [0, 20, 40], atol=0.02)
    np.testing.assert_allclose([s.dy for s in res.scans], 0, atol=0.02)
    assert all(s.sigma[0] < 0.05 for s in res.scans[1:])
    # the σ of each scan comes from the fit: a weak prior alone would leave the motors' 10 px
    assert res.scans[2].how == "images"


def test_chained_reference_keeps_the_first_projection_on_disagreement() -> None:
    """The pair-by-pair chain of earlier versions (benchmarks/stitch.py's reference)."""
    wide = _smooth_field((40, 140), seed=4)
    other = _smooth_field((40, 140), seed=5)
    first = (wide[8:32, 10:74], wide[8:32, 50:114])              # shift 40
    moved = (other[8:32, 10:74], other[8:32, 53:117])            # shift 43: the sample moved
    p, c = al.align_pair(*first, 38.0), al.align_pair(*moved, 38.0)
    res = al.chain([p], [c], [0.0, 38.0], ["a", "b"])
    assert abs(res.scans[1].dx - 40) < 0.05
    assert any(re.search(r"disagree on dx by 3\.0\d px", w) for w in res.warnings)


# -- alignment of synthetic multi-scan data -------------------------------------------------------
@pytest.mark.parametrize("n_scans", [2, 4, 7])
@pytest.mark.parametrize("theta_range, axis", [(180.0, "middle"), (360.0, "edge")])
def test_found_shifts_match_the_truth(tmp_path: Path, n_scans: int, theta_range: float, axis: str) -> None:
    from teravox.stages import stitch_align

    s = write_stitch_sample(tmp_path, n_scans, theta_range_deg=theta_range, axis=axis, seed=n_scans)
    relative = np.abs(np.diff(s["motor_error_px"]))
    plan = make_plan(s["sheet"])
    res = stitch_align.align(plan)
    ex, ey = found_errors(res, s)
    print(f"{n_scans} scans {theta_range:.0f}°: motor errors {np.round(s['motor_error_px'], 1)}, "
          f"|dx − truth| max {np.abs(ex).max():.3f}, |dy − truth| max {np.abs(ey).max():.3f} px")
    assert np.abs(ex).max() <= 0.1 and np.abs(ey).max() <= 0.1
    assert all(sc.how == "images" for sc in res.scans[1:])
    assert all(abs(sc.gain - 1) < 0.01 for sc in res.scans)
    # the reported uncertainty is honest: the errors are within 4 σ
    sig = np.array([sc.sigma for sc in res.scans[1:]])
    assert np.all(np.abs(np.stack([ex, ey], 1)[1:]) < 4 * sig + 0.02)
    # the motors alone would have been off by up to the relative motor errors
    motor = np.array([sc.guess[0] for sc in res.scans]) - s["dx"]
    assert np.abs(motor).max() > 1.0 or relative.max() < 1.0


def test_synth_write_multiscan_is_aligned(tmp_path: Path) -> None:
    """The shared generator (integer offsets, default phantom, ±8 px motors)."""
    from teravox.stages import stitch_align

    r = write_multiscan(tmp_path, 3, 24, n_cols=64, n_rows=16, n_angles=8, seed=2, progress=False)
    res = stitch_align.align(make_plan(Path(r["csv"])))
    found = np.array(res.shifts)
    np.testing.assert_allclose(found[:, 0], r["offsets_px"], atol=0.25)
    np.testing.assert_allclose(found[:, 1], 0.0, atol=0.25)


def test_stage_writes_shifts_and_figure(aligned4: tuple[dict, dict], sample4: dict[str, Any]) -> None:
    plan, shifts = aligned4
    assert (sample4["dir"] / "shifts_costs.png").stat().st_size > 1000
    assert shifts["format"] == 2 and shifts["width"] == plan["stitch"]["width"]
    assert [s["path"] for s in shifts["scans"]] == [e["path"] for e in plan["scans"]]
    s1 = shifts["scans"][1]
    assert set(s1) >= {"guess", "dx", "dy", "sigma", "gain", "how", "shape"}
    assert shifts["projections"] == list(range(12))                  # 12 angles: all of them measured
    assert len(shifts["pairs"]) == 3 and np.array(shifts["pairs"][0]["search"]["cost"]).shape[1] >= 21
    for p in shifts["pairs"]:
        assert p["n_measurements"] == 12 and all(m["used"] == [True, True] for m in p["measurements"])
        assert max(p["residual_rms"]) < 0.2
    found = np.array([[s["dx"], s["dy"]] for s in shifts["scans"]])
    assert np.abs(found[:, 0] - sample4["dx"]).max() < 0.25
    maps = cost_maps(shifts)
    assert list(maps) == ["scan_00.h5 | scan_01.h5", "scan_01.h5 | scan_02.h5", "scan_02.h5 | scan_03.h5"]
    assert all(np.isfinite(np.nanmin(m)) for m in maps.values())


def test_stage_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from teravox.stages import stitch_align

    assert stitch_align.main(["--plan", str(tmp_path / "nope.json")]) == 2
    plan = {"format": 1, "params": Params().to_dict(), "workdir": str(tmp_path)}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert stitch_align.main(["--plan", str(tmp_path / "plan.json")]) == 2
    err = capsys.readouterr().err
    assert "teravox stitch-align: error:" in err and "no scans to stitch" in err and "Traceback" not in err
    # a scan that disappeared after planning
    s = write_stitch_sample(tmp_path / "gone", 2, n_angles=4, supersample=1, noise=False)
    (tmp_path / "plan2.json").write_text(json.dumps(make_plan(s["sheet"])))
    s["files"][1].unlink()
    assert stitch_align.main(["--plan", str(tmp_path / "plan2.json"), "--figure", "none"]) == 2
    err = capsys.readouterr().err
    assert "scan_01.h5: scan file does not exist" in err and "Traceback" not in err


# -- blending --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_weights_sum_to_one_where_nonzero(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_cols, n_rows = 64, 12
    dx = np.concatenate([[0.0], np.cumsum(rng.uniform(30, 50, 3))])
    shifts = [(x, (rng.uniform(-2, 2) if i else 0.0)) for i, x in enumerate(dx)]
    width = int(dx[-1] + n_cols + rng.integers(-5, 5))          # a little short of, or past, the scans
    w = blend.weights(shifts, (n_rows, n_cols), width)
    assert w.shape == (4, n_rows, width) and w.dtype == np.float32 and (w >= 0).all()
    total = w.sum(axis=0)
    np.testing.assert_allclose(total, 1.0, atol=2e-6)          # every pixel is covered, exactly once
    # across an overlap on a row both scans cover, the weights are linear ramps
    r = n_rows // 2
    u = np.arange(int(math.ceil(dx[1])) + 1, int(dx[0] + n_cols) - 1)
    np.testing.assert_allclose(np.diff(w[1, r, u]), 1.0 / (dx[0] + n_cols + 1 - dx[1]), atol=1e-5)
    # a subchunk of rows has the same weights as the whole
    np.testing.assert_array_equal(blend.weights(shifts, (n_rows, n_cols), width, slice(3, 7)), w[:, 3:7])


def test_sample_places_integer_shifts_exactly() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (3, 10, 64)).astype(np.float32)
    b = rng.uniform(0.5, 1.0, (3, 10, 64)).astype(np.float32)
    out = blend.stitch([a, b], [(0.0, 0.0), (40.0, 2.0)], width=104)
    np.testing.assert_array_equal(out[:, :, :40], a[:, :, :40])
    np.testing.assert_array_equal(out[:, 2:, 64:], b[:, :8, 24:])   # rows 0..1 are not b's: a's rows
    # half-way through the overlap the two weigh equally
    assert blend.seam_columns([0.0, 40.0], 64) == [51.5]


def test_subchunk_equals_full_image(aligned4: tuple[dict, dict]) -> None:
    plan, shifts = aligned4
    params = Params()
    with StitchedSource(plan, shifts, params) as src:
        idx = np.arange(12)
        full, counts = src.read_normalized(idx, slice(0, src.n_rows))
        assert full.shape == (12, 16, plan["stitch"]["width"]) and full.dtype == np.float32
        assert counts.flat_le_dark == 0 and counts.steps == ["flat/dark normalisation"]
        for rows in (slice(0, 5), slice(5, 11), slice(11, 16), slice(7, 8)):
            part, _ = src.read_normalized(idx, rows)
            np.testing.assert_array_equal(part, full[:, rows])
        some = np.array([1, 2, 7])
        part, _ = src.read_normalized(some, slice(4, 9))
        np.testing.assert_array_equal(part, full[some, 4:9])
        np.testing.assert_allclose(src.weights(slice(0, 16)).sum(0), 1.0, atol=2e-6)


def test_subchunk_reads_only_its_rows(aligned4: tuple[dict, dict]) -> None:
    """Memory stays bounded: each scan is read only over the block's rows, plus those its
    vertical shift and the interpolation need, and only over the columns it contributes."""
    plan, shifts = aligned4
    reads: list[tuple[int, slice, slice]] = []
    with StitchedSource(plan, shifts, Params()) as src:
        for i, scan in enumerate(src._scans):
            def spy(index, rows, cols, out=None, _orig=scan.read_projections, _i=i):  # noqa: ANN001, ANN202
                reads.append((_i, rows, cols))
                return _orig(index, rows, cols, out)
            scan.read_projections = spy
        src.read_normalized(np.arange(12), slice(6, 10))
    assert sorted(i for i, _, _ in reads) == [0, 1, 2, 3]
    for i, rows, cols in reads:
        dy = src.shifts[i][1]
        assert rows == blend.source_rows(dy, 16, slice(6, 10))
        assert rows.stop - rows.start <= 4 + 2 and rows.start >= math.floor(6 - dy) - 1
        assert cols.stop - cols.start <= 64


def _noise_level(sample: dict[str, Any], truth: np.ndarray) -> float:
    """RMS noise of one normalised scan at these transmissions: Poisson counts of the
    projection and of the averaged flats, at the mean flat-field level."""
    from teravox.synth.scan import flat_profile

    level = FLUX * float(flat_profile(sample["n_rows"], sample["n_cols"]).mean())
    return float(np.sqrt(np.mean(truth / level + truth**2 / (N_FLATS * level))))


@pytest.mark.parametrize("subpixel", [False, True])
def test_stitched_projection_matches_truth_without_seams(tmp_path: Path, subpixel: bool) -> None:
    from teravox.stages import stitch_align

    s = write_stitch_sample(tmp_path, 4, subpixel=subpixel, seed=11)
    plan = make_plan(s["sheet"])
    res = stitch_align.align(plan)
    shifts = {"scans": [dict(sc.to_dict(), path=e["path"]) for sc, e in zip(res.scans, plan["scans"],
                                                                             strict=True)]}
    width = plan["stitch"]["width"]
    with StitchedSource(plan, shifts, Params()) as src:
        img, _ = src.read_normalized(np.arange(12), slice(0, 16))
        dxs, dys = [x for x, _ in src.shifts], [y for _, y in src.shifts]
    truth = true_projections(s, width)
    # compare on the rows every scan covers (a vertically shifted scan lacks a row or two)
    r0, r1 = int(math.ceil(max(dys))), 16 + int(math.floor(min(dys)))
    err = (img - truth)[:, r0:r1]
    sigma = _noise_level(s, truth[:, r0:r1])
    over = blend.overlap_columns(dxs, 64, width)
    seams = np.zeros(width, bool)
    for c in blend.seam_columns(dxs, 64):
        seams[max(0, int(c) - 2):int(c) + 3] = True
    rms = {k: float(np.sqrt(np.mean(err[:, :, m] ** 2))) for k, m in
           (("overlap", over), ("single", ~over), ("seams", seams), ("all", np.ones(width, bool)))}
    print(f"subpixel={subpixel}: noise {sigma:.4f}; rms error " + ", ".join(f"{k} {v:.4f}" for k, v in rms.items())
          + f"; mean error at seams {err[:, :, seams].mean():+.5f}")
    assert rms["all"] < sigma                                       # below the noise of one scan
    assert rms["overlap"] < sigma                                   # two scans averaged: below one's noise
    assert rms["seams"] < 1.05 * rms["single"]                      # no seam: not worse than single-scan columns
    assert abs(float(err[:, :, seams].mean())) < 0.1 * sigma        # and no step in level


def test_report_helpers(aligned4: tuple[dict, dict], sample4: dict[str, Any]) -> None:
    plan, shifts = aligned4
    img, seams = stitched_projection(plan, shifts, Params())
    assert img.shape == (16, plan["stitch"]["width"]) and img.dtype == np.float32
    assert len(seams) == 3 and all(0 < c < img.shape[1] for c in seams)
    truth = true_projections(sample4, img.shape[1])[0]
    assert float(np.median(np.abs(img - truth))) < 0.02


def test_shifts_of_other_scans_are_refused(aligned4: tuple[dict, dict]) -> None:
    plan, shifts = aligned4
    other = dict(shifts, scans=shifts["scans"][::-1])
    with pytest.raises(PlanError, match="run `teravox stitch-align` again"):
        StitchedSource(plan, other, Params())


def test_monitor_i0_is_applied_per_scan(aligned4: tuple[dict, dict]) -> None:
    plan, shifts = aligned4
    params = Params().replace(i0="monitor")
    with StitchedSource(plan, shifts, params) as src:
        assert src.i0_applied
        img, _ = src.read_normalized(np.arange(3), slice(0, 4))
    with StitchedSource(plan, shifts, Params()) as src:
        ref, _ = src.read_normalized(np.arange(3), slice(0, 4))
    # the synthetic beam is constant (no drift), so dividing by it changes nothing
    np.testing.assert_allclose(img, ref, rtol=1e-6)


def test_stitch_params_validation() -> None:
    assert StitchParams.from_params(Params()).window_px == 20
    with pytest.raises(ParamError, match="position_sign"):
        StitchParams.from_params(Params(), {"position_sign": 2})
    with pytest.raises(ParamError, match="unknown stitching"):
        StitchParams.from_params(Params(), {"windw_px": 2})


# -- detector shapes, exposures and heights that differ ----------------------------------------
def _stitched(plan: dict[str, Any], placement: al.Placement, gains: bool = True) -> np.ndarray:
    shifts = {"scans": [dict(sc.to_dict(), path=e["path"], gain=sc.gain if gains else 1.0)
                        for sc, e in zip(placement.scans, plan["scans"], strict=True)]}
    with StitchedSource(plan, shifts, Params()) as src:
        return src.read_normalized(np.arange(len(plan["theta_deg"])), slice(0, src.n_rows))[0]


def test_scans_of_different_detector_shapes(tmp_path: Path) -> None:
    """The middle scan has a larger detector (20 × 80 px): it is aligned and blended with its own shape."""
    from teravox.stages import stitch_align

    s = write_stitch_sample(tmp_path, 3, shape_of={1: (20, 80)}, seed=21)
    plan = make_plan(s["sheet"])
    assert [e["shape"][1:] for e in plan["scans"]] == [[16, 64], [20, 80], [16, 64]]
    res = stitch_align.align(plan)
    ex, ey = found_errors(res, s)
    assert np.abs(ex).max() < 0.1 and np.abs(ey).max() < 0.1
    img = _stitched(plan, res)
    truth = true_projections(s, plan["stitch"]["width"])
    r0, r1 = int(math.ceil(max(s["dy"]))), 16 + int(math.floor(min(s["dy"])))
    assert float(np.sqrt(np.mean((img - truth)[:, r0:r1] ** 2))) < _noise_level(s, truth[:, r0:r1])


def test_exposure_difference_is_matched(tmp_path: Path) -> None:
    """Scan 1's projections had 6 % more exposure than its flats: its gain is found and the
    stitched projection has no step at its seams (without the gain it would)."""
    from teravox.stages import stitch_align

    s = write_stitch_sample(tmp_path, 3, exposure_of={1: 1.06}, seed=22)
    plan = make_plan(s["sheet"])
    res = stitch_align.align(plan)
    gains = [sc.gain for sc in res.scans]
    assert abs(gains[1] * 1.06 - 1) < 0.003 and abs(gains[2] - 1) < 0.003
    assert any("scan_01.h5" in w and "+6.0 %" in w for w in res.warnings)
    truth = true_projections(s, plan["stitch"]["width"])
    r0, r1 = int(math.ceil(max(s["dy"]))), 16 + int(math.floor(min(s["dy"])))
    seams = np.zeros(truth.shape[2], bool)
    for c in blend.seam_columns([sc.dx for sc in res.scans], 64):
        seams[int(c) - 3:int(c) + 4] = True
    step = {g: float(np.mean((_stitched(plan, res, gains=g) - truth)[:, r0:r1][:, :, seams])) for g in (True, False)}
    assert abs(step[True]) < 0.002 < abs(step[False])


def test_heights_guide_the_vertical_search(tmp_path: Path) -> None:
    """Vertical offsets up to ±9 rows with the sheet's heights (off by up to 1 row): the
    guesses come from the heights and the 2-D search finds dy to 0.1 px."""
    from teravox.stages import stitch_align

    s = write_stitch_sample(tmp_path, 3, n_rows=40, dy_px=9.0, heights=True, seed=23)
    plan = make_plan(s["sheet"])
    guess_dy = np.array([e["guess_dy_px"] for e in plan["scans"]])
    assert np.abs(guess_dy - s["dy"]).max() < 2.0 and np.abs(s["dy"]).max() > 3
    res = stitch_align.align(plan)
    ex, ey = found_errors(res, s)
    assert np.abs(ex).max() < 0.1 and np.abs(ey).max() < 0.1
