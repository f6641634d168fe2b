"""Vertical stacks: height levels from the sheet, the seams between reconstructed levels, the
z-stitch stage, and ``teravox run`` of a stack against the same object as one tall scan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from teravox.config import Params
from teravox.errors import PlanError
from teravox.post.dtype import DtypeMapping
from teravox.stages.plan import make, save
from teravox.stitch import zstack
from teravox.stitch.sheet import read_meta, read_sheet, split_levels
from teravox.synth.scan import write_scan
from teravox.synth.stitch import write_zstack


def teravox(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "teravox.cli", *map(str, args)], capture_output=True, text=True)


def _tall_field(rows: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.standard_normal((rows, n, n)), 1.5) * 5 + 1).astype(np.float32)


def _cut(tall: np.ndarray, z: float, rows: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    level = ndimage.shift(tall, (-z, 0, 0), order=3, mode="nearest")[:rows]
    return level + noise * rng.standard_normal(level.shape).astype(np.float32)


# -- the science ------------------------------------------------------------------------------
def test_cubic_taps_interpolate_and_sum_to_one() -> None:
    x = np.arange(30.0)
    f = np.sin(x / 3)
    pos = np.array([3.3, 7.75, 10.0, 28.6])
    got = sum(f[i] * w for i, w in zstack.cubic_taps(pos, 30))
    np.testing.assert_allclose(got[:3], np.sin(pos[:3] / 3), atol=2e-3)
    np.testing.assert_allclose(sum(w for _, w in zstack.cubic_taps(pos, 30)), 1.0, atol=1e-6)
    assert got[2] == pytest.approx(f[10])                      # whole rows are copied exactly


def test_crop_keeps_the_rotation_axis() -> None:
    n = 9
    c = (n - 1) / 2
    y, x = np.mgrid[:n, :n]
    vol = (x - c + 2 * (y - c))[None].astype(np.float32)      # linear in x and y, 0 on the axis
    for m in (7, 6):                                           # an even and an odd difference
        out = zstack.crop_to(vol, m)
        cm = (m - 1) / 2
        yy, xx = np.mgrid[:m, :m]
        np.testing.assert_allclose(out[0], xx - cm + 2 * (yy - cm), atol=1e-6)


def test_seams_and_blend_recover_a_cut_volume() -> None:
    """A tall field cut into three noisy levels at fractional heights, the middle one 5 % too
    bright: offsets to 0.1 row, the gain undone, the joined volume as close to the field as
    the noise allows."""
    rng = np.random.default_rng(1)
    tall = _tall_field(90, 48, seed=1)
    z_true, rows, noise = [0.0, 24.35, 47.8], 32, 0.05
    levels = [_cut(tall, z, rows, noise, rng) for z in z_true]
    levels[1] *= 1.05
    seams = []
    for k in range(2):
        guess = z_true[k + 1] - z_true[k] + rng.uniform(-2, 2)
        tail = int(guess) - 12
        seams.append(zstack.find_seam(levels[k][tail:], tail, levels[k + 1][:20], guess, upper=k, lower=k + 1))
    for k, sm in enumerate(seams):
        assert sm.determined and sm.peak > 0.9
        assert abs(sm.dz - (z_true[k + 1] - z_true[k])) < 0.1
    assert seams[0].gain * 1.05 == pytest.approx(1, abs=0.005) and seams[1].gain / 1.05 == pytest.approx(1, abs=0.005)
    stack = zstack.Stack.chain(seams, [rows] * 3)
    assert stack.n_rows == int(np.floor(stack.z[2] + rows - 1)) + 1
    out = zstack.blend_rows(stack, 0, 75, [(0, lv) for lv in levels])
    err = float(np.sqrt(np.mean((out - tall[:75]) ** 2)))
    assert err < noise            # the overlaps average two levels: below one level's noise
    # block by block gives the same rows
    part = zstack.blend_rows(stack, 20, 30, [None if (src := stack.source_rows(k, 20, 30)) is None
                                             else (src.start, lv[src]) for k, lv in enumerate(levels)])
    np.testing.assert_allclose(part, out[20:30], atol=1e-5)


def test_no_correlation_keeps_the_heights() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((12, 32, 32)), rng.standard_normal((12, 32, 32))
    sm = zstack.find_seam(a, 0, b, 6.0)
    assert not sm.determined and sm.dz == 6.0


# -- the sheet -----------------------------------------------------------------------------------
def _scans(d: Path, n: int, rows: int = 16) -> list[Path]:
    out = []
    for i in range(n):
        out.append(d / f"s{i}.h5")
        write_scan(out[-1], n_cols=32, n_rows=rows, n_angles=4, noise=False, seed=i, progress=False)
    return out


def test_sheet_heights_make_levels(tmp_path: Path) -> None:
    _scans(tmp_path, 4)
    (tmp_path / "sheet.csv").write_text("file,position_px,height_px\ns0.h5,0,0\ns1.h5,24,2\ns2.h5,0,12\n"
                                        "s3.h5,25,13\n")
    sheet = read_sheet(tmp_path / "sheet.csv")
    levels = split_levels(sheet.rows, read_meta(sheet.rows, Params()), None)
    assert [[r.file.name for r in lv.rows] for lv in levels] == [["s0.h5", "s1.h5"], ["s2.h5", "s3.h5"]]
    assert [lv.height_px for lv in levels] == [0.0, 12.0]
    plan = make(None, Params(), tmp_path / "out", sheet=str(tmp_path / "sheet.csv"))
    assert plan["kind"] == "zstack" and plan["zstitch"]["guess_dz"] == [12.0]
    lp = plan["level_plans"]
    assert [p["name"] for p in lp] == ["sheet_z00", "sheet_z01"] and all("scans" in p for p in lp)
    assert lp[0]["stitch"]["width"] == lp[1]["stitch"]["width"]   # one stitched width for all levels
    assert [e["guess_dy_px"] for e in lp[0]["scans"]] == [0.0, 2.0]
    files = save(plan, tmp_path / "out" / "plan.json")
    assert [f.relative_to(tmp_path / "out").as_posix() for f in files] == ["sheet_z00/plan.json", "sheet_z01/plan.json"]
    assert json.loads(files[1].read_text())["workdir"] == str(tmp_path / "out" / "sheet_z01")


def test_synth_writes_a_stack_that_plans_as_levels(tmp_path: Path) -> None:
    from teravox.stages import synth

    assert synth.main([str(tmp_path / "st"), "--heights", "3", "--rows", "12", "--overlap", "4", "--angles", "4",
                       "--cols", "32", "-q"]) == 0
    sheet = read_sheet(tmp_path / "st" / "scans.csv")
    levels = split_levels(sheet.rows, read_meta(sheet.rows, Params()), 1e-6)
    assert [len(lv.rows) for lv in levels] == [1, 1, 1] and (tmp_path / "st" / "tall.h5").is_file()
    with h5py.File(tmp_path / "st" / "tall.h5") as f:
        assert f["/exchange/data"].shape[1] >= 2 * 8 + 12 - 1     # three steps of 12 rows, 4 shared


@pytest.mark.parametrize("text, match", [
    # the second level starts 30 rows below the first, whose scans are 16 rows high
    ("file,height_px\ns0.h5,0\ns1.h5,30\n",
     r"s1\.h5 \(row 2 of sheet\.csv\) \(height 30\.0 px\) is 30\.0 rows below s0\.h5 \(row 1 of sheet\.csv\).*"
     r"cannot be joined"),
    # two scans side by side on top, one below
    ("file,position_px,height_px\ns0.h5,0,0\ns1.h5,24,0\ns2.h5,0,12\n",
     r"same scans side by side.*level 0 \(s0\.h5, s1\.h5.*has 2 scan\(s\) but level 1 \(s2\.h5.*has 1"),
    # the lower level's second scan sits 14 px further right than the upper level's
    ("file,position_px,height_px\ns0.h5,0,0\ns1.h5,24,0\ns2.h5,0,12\ns3.h5,38,12\n",
     r"laid out differently: s3\.h5 \(row 4 of sheet\.csv\) sits \+38\.0 px.*s1\.h5 \(row 2 of sheet\.csv\).*\+24\.0 px"),
])
def test_inconsistent_stack_is_refused_naming_the_scans(tmp_path: Path, text: str, match: str) -> None:
    _scans(tmp_path, 4)
    (tmp_path / "sheet.csv").write_text(text)
    with pytest.raises(PlanError, match=match):
        make(None, Params(), tmp_path / "out", sheet=str(tmp_path / "sheet.csv"))
    res = teravox("plan", "--scan-sheet", tmp_path / "sheet.csv", "-o", tmp_path / "plan.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "s1.h5" in res.stderr


def test_lateral_scans_that_do_not_overlap_are_refused(tmp_path: Path) -> None:
    _scans(tmp_path, 2)
    (tmp_path / "sheet.csv").write_text("file,position_px\ns0.h5,0\ns1.h5,60\n")
    res = teravox("plan", "--scan-sheet", tmp_path / "sheet.csv", "-o", tmp_path / "plan.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "s1.h5 (row 2 of sheet.csv) is 60.0 px from its neighbour s0.h5 (row 1 of sheet.csv)" in res.stderr


# -- the stage on synthetic level volumes ----------------------------------------------------------
def test_z_stitch_stage_joins_levels(tmp_path: Path) -> None:
    """Levels written straight from a tall field (no reconstruction), the middle one as uint16
    codes of its own range: placed to 0.1 row, decoded, joined, reported."""
    from teravox.stages import z_stitch

    s = write_zstack(tmp_path / "scans", 3, rows_per_level=24, overlap_rows=8, n_cols=32, n_angles=4,
                     noise=False, talls=0, seed=4)
    plan = make(None, Params().replace(pyramid=1), tmp_path / "out", sheet=str(s["sheet"]))
    save(plan, tmp_path / "out" / "plan.json")
    tall = _tall_field(s["total_rows"] + 4, 32, seed=4)
    rng = np.random.default_rng(4)
    for k, (lv, z) in enumerate(zip(plan["levels"], s["heights_px"], strict=True)):
        vol = _cut(tall, z, 24, 0.02, rng)
        path = tmp_path / "out" / lv["name"] / lv["volume"]
        with h5py.File(path, "w") as f:
            if k == 1:
                m = DtypeMapping("uint16", float(vol.min()), float(vol.max()))
                ds = f.create_dataset("/exchange/data", data=m.apply(vol))
                for key, v in m.to_attrs().items():
                    ds.attrs[key] = v
            else:
                f["/exchange/data"] = vol
    doc = z_stitch.run(plan)
    z = [lv["z"] for lv in doc["levels"]]
    np.testing.assert_allclose(z, s["heights_px"], atol=0.1)
    assert doc["warnings"] == [] and all(abs(lv["gain"] - 1) < 0.01 for lv in doc["levels"])
    with h5py.File(doc["volume"]) as f:
        out = f["/exchange/data"][()]
        assert f["/exchange/data_2x"].shape[0] == -(-out.shape[0] // 2)
        assert json.loads(f["/process/teravox"].attrs["zstitch"])["seams"][0]["upper"] == 0
    assert out.shape == (int(np.floor(z[2] + 23)) + 1, 32, 32) and out.dtype == np.float32
    assert float(np.sqrt(np.mean((out - tall[:len(out)]) ** 2))) < 0.02
    assert json.loads((tmp_path / "out" / "zstitch.json").read_text())["shape"] == list(out.shape)
    # a budget too small for two whole slices: blocks of 16 y rows, the same volume
    assert z_stitch.block_shape(dict(plan, memory={"budget": 98304}), 32, 2) == (2, 16)
    tiled = z_stitch.run(dict(plan, memory={"budget": 98304}), output=tmp_path / "tiled.h5", report=None)
    with h5py.File(tiled["volume"]) as f:
        np.testing.assert_array_equal(f["/exchange/data"][()], out)
    from pypdf import PdfReader

    text = " ".join(p.extract_text() for p in PdfReader(doc["report"]).pages)
    assert "Vertical stack of 3 levels" in text and "scans_z01" in text and "found dz" in text


def test_z_stitch_refuses_a_plan_that_is_not_a_stack(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(json.dumps({"format": 1, "params": Params().to_dict()}))
    res = teravox("z-stitch", "--plan", tmp_path / "plan.json")
    assert res.returncode == 2 and "not a vertical stack" in res.stderr and "Traceback" not in res.stderr


# -- end to end --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_stack_equals_the_tall_scan(tmp_path: Path) -> None:
    """`teravox run --scan-sheet` of a 3-level stack against `teravox run --scan` of the same
    object as one tall scan: as close to the truth, and to each other as noise allows."""
    s = write_zstack(tmp_path / "scans", 3, rows_per_level=20, overlap_rows=8, n_cols=48, n_angles=72,
                     seed=5, talls=1)
    for args, out in ((("--scan-sheet", s["sheet"]), "stack"), (("--scan", s["talls"][0]), "tall")):
        res = teravox("run", *args, "--out", tmp_path / out, "--no-progress")
        assert res.returncode == 0, res.stderr + res.stdout
    with h5py.File(tmp_path / "stack" / "scans_recon.h5") as f:
        joined = f["/exchange/data"][()].astype(np.float64)
    with h5py.File(tmp_path / "tall" / "tall_recon.h5") as f:
        tall = f["/exchange/data"][()].astype(np.float64)
    with h5py.File(s["talls"][0]) as f:
        truth = f["/truth/volume"][()].astype(np.float64)
    rows = min(len(joined), len(tall))
    n = joined.shape[1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = np.hypot(xx, yy) < 0.9 * n / 2

    def agree(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        x, y = a[:rows][:, inside].ravel(), b[:rows][:, inside].ravel()
        return float(np.corrcoef(x, y)[0, 1]), float(x @ y / (y @ y))

    (cj, aj), (ct, at), (c_jt, _) = agree(joined, truth), agree(tall, truth), agree(joined, tall)
    assert cj >= ct - 0.005 and abs(aj - at) < 0.015, (cj, ct, aj, at)
    assert c_jt > 0.95
    doc = json.loads((tmp_path / "stack" / "zstitch.json").read_text())
    np.testing.assert_allclose([lv["z"] for lv in doc["levels"]], s["heights_px"], atol=0.2)
    assert (tmp_path / "stack" / "scans_report.pdf").stat().st_size > 10_000
    assert not list((tmp_path / "stack").glob("*/scans_z0*_recon.h5"))   # the levels' volumes live on in the stack's
