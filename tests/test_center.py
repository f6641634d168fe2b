"""The automatic rotation centre against the truth of synthetic scans, on many geometries.

Exact sinograms (the phantom's line integrals) must give the centre within 0.1 px
wherever the axis is in the middle 90 % of the detector, for 180° and 360° scans and for
half acquisition; scans with photon noise, zingers and dead or miscalibrated columns,
through pass 1 and collect, within 0.25 px; a tilted axis is found and corrected.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from teravox.config import Params
from teravox.errors import ParamError, StageError
from teravox.recon import center as cmod
from teravox.synth.phantom import default_phantom

N = 256


def exact(n_cols: int, center: float, theta: np.ndarray, *, half: bool = False, rows=(0.0,)) -> np.ndarray:
    """Line integrals (rows, angles, columns) of the default phantom sized to stay in the
    field of view (the nearest edge for 180°/360°, the farthest for half acquisition)."""
    last = n_cols - 1
    reach = max(center, last - center) if half else min(center, last - center)
    ph = default_phantom(max(8, int(2 * reach + 1)), 16)
    out = ph.line_integrals(theta, np.arange(n_cols) - center, np.asarray(rows, float))
    return np.ascontiguousarray(out.transpose(1, 0, 2)).astype(np.float32)


# axis positions across the middle 90 % of the detector, at odd sub-pixel offsets
POSITIONS = [0.06, 0.2, 0.37, 0.5, 0.63, 0.81, 0.94]


@pytest.mark.parametrize("where", POSITIONS)
def test_180_exact_anywhere(where):
    truth = where * (N - 1) + 0.137
    theta = np.linspace(0, np.pi, 400, endpoint=False)
    found = cmod.find_center(exact(N, truth, theta), theta)
    assert abs(found.center - truth) <= 0.1, (truth, found.center)
    assert found.confidence >= 0.3 and found.problem is None


@pytest.mark.parametrize("where", POSITIONS[::2])
def test_360_exact_anywhere(where):
    truth = where * (N - 1) - 0.311
    theta = np.linspace(0, 2 * np.pi, 801, endpoint=False)  # odd: no angle has an exact opposite
    found = cmod.find_center(exact(N, truth, theta), theta)
    assert found.method.startswith("mirror-pair correlation")
    assert abs(found.center - truth) <= 0.1 and found.confidence >= 0.3


@pytest.mark.parametrize("side", ["left", "right"])
def test_half_acquisition_exact(side):
    reach = 0.9 * (N - 1) + 0.27  # overlap about 10 % of the width, like the synth default
    truth = reach if side == "right" else N - 1 - reach
    theta = np.linspace(0, 2 * np.pi, 800, endpoint=False)
    sino = exact(N, truth, theta, half=True)
    found = cmod.find_center(sino, theta, half_acquisition="auto")
    assert found.side == side and abs(found.center - truth) <= 0.1
    fixed = cmod.find_center(sino, theta, half_acquisition=side)
    assert abs(fixed.center - truth) <= 0.1
    # the same data taken for a full 360° scan: refused, with the hint
    wrong = cmod.find_center(sino, theta)
    assert wrong.problem is not None and "--half-acquisition auto" in wrong.problem


def test_algotom_is_biased_where_this_is_not():
    """The bias of algotom's find_center_vo on exact sinograms, and none here, same data."""
    from algotom.prep.calculation import find_center_vo

    theta = np.linspace(0, np.pi, 400, endpoint=False)
    errors_algotom, errors_here = [], []
    for truth in (118.29, 132.98, 140.03):
        sino = exact(N, truth, theta)
        errors_algotom.append(find_center_vo(sino[0], ncore=1) - truth)
        errors_here.append(cmod.find_center(sino, theta).center - truth)
    assert min(errors_algotom) > 0.15          # always high (its smoothing reflects at the junction)
    assert max(map(abs, errors_here)) <= 0.05


def test_tilt_fitted_over_rows():
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    rows = np.arange(0, 49, 8)
    slope = 0.05  # px per row: 2.4 px over the rows
    sinos = np.concatenate([exact(N, 121.4 + slope * (r - 24), theta, rows=[float(r - 24)]) for r in rows])
    found = cmod.find_center(sinos, theta, rows=list(rows))
    assert found.tilt_px_per_row == pytest.approx(slope, abs=0.005)
    assert abs(found.center_at(24) - 121.4) <= 0.1 and found.tilt_significant(49)
    assert abs(found.tilt_deg - math.degrees(math.atan(slope))) < 0.3


def test_noise_has_no_confidence_and_is_refused():
    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, 300, endpoint=False)
    found = cmod.find_center(rng.normal(size=(3, 300, 128)).astype(np.float32), theta)
    assert found.confidence < 0.1
    from teravox.stages.collect import refuse_if_unsure

    with pytest.raises(StageError, match="center-sweep"):
        refuse_if_unsure(found, Params(), 128)
    refuse_if_unsure(found, Params(center_sweep="50:70:1"), 128)  # a sweep settles it: no refusal


def test_confidence_counts_separate_valleys_only():
    x = np.linspace(-1, 1, 401)
    one = 1 - np.exp(-(x / 0.05) ** 2) + 0.2 * x          # one valley on a slope: no runner-up
    assert cmod.confidence(one)[0] == pytest.approx(1.0) and cmod.confidence(one)[1] is None
    two = 1 - np.exp(-((x + 0.5) / 0.05) ** 2) - 0.9 * np.exp(-((x - 0.5) / 0.05) ** 2)
    conf, runner = cmod.confidence(two)
    assert conf == pytest.approx(0.1, abs=0.02) and abs(x[runner] - 0.5) < 0.01


def test_angle_subset_equally_spaced_and_paired():
    theta = np.deg2rad(np.arange(2400) * 180 / 2400)
    idx = cmod.angle_subset(theta, "180", max_angles=1000)
    assert idx.size == 800 and (np.diff(idx) == 3).all()  # the stride that divides the half turn
    theta = np.deg2rad(np.arange(1001) * 360 / 1001)
    idx = cmod.angle_subset(theta, "half", max_angles=100)
    assert idx.size <= 300 and cmod.mode_of(theta) == "360"


def test_bad_half_acquisition_value():
    with pytest.raises(ParamError):
        cmod.find_center(np.zeros((1, 10, 50), np.float32), np.linspace(0, np.pi, 10),
                         half_acquisition="middle")  # type: ignore[arg-type]


# -- through pass 1 and collect, on scans with detector defects ----------------------------


def collect_scan(tmp_path, name: str, params: dict, **scan) -> tuple[dict, dict]:
    """Synthetic scan → plan → preprocess → collect; the truth and the resolved section."""
    from teravox import plan as planmod
    from teravox.config import from_mapping
    from teravox.io import open_scan_for
    from teravox.stages import collect, preprocess
    from teravox.synth.scan import write_scan

    path = tmp_path / f"{name}.h5"
    truth = write_scan(path, progress=False, **scan)
    p = from_mapping({"center": "auto", **params})
    with open_scan_for(str(path), p) as s:
        plan = planmod.make_plan(s, p, workdir=tmp_path / name)
    (tmp_path / name).mkdir()
    for c in plan["proj_chunks"]:
        preprocess.run_chunk(plan, c["index"])
    return truth, collect.read_resolved(collect.run(plan))


@pytest.mark.parametrize("geometry", [
    {"center": 17.6, "n_angles": 300},                                        # 180°, axis near the left
    {"center": 171.2, "n_angles": 300},                                       # 180°, near the right
    {"center": 63.3, "n_angles": 600, "theta_range_deg": 360.0},              # full 360°, off the middle
    {"half_acquisition": True, "side": "left", "overlap_px": 24.6, "n_angles": 600},
], ids=["180-left", "180-right", "360", "half-left"])
def test_defective_scans_through_collect(tmp_path, geometry):
    params = {"outliers": True, "stripe_recon": "sorting"}
    if geometry.get("half_acquisition"):
        params["half_acquisition"] = "auto"
    truth, resolved = collect_scan(tmp_path, "s", params, n_cols=192, n_rows=8, noise=True,
                                   zingers=True, stripes=True, seed=3, **geometry)
    assert abs(resolved["center"] - truth["center"]) <= 0.25, (resolved["center"], truth["center"])
    assert resolved["center_search"]["confidence"] >= 0.2
    assert "auto" in resolved["center_how"] and "confidence" in resolved["center_how"]


def test_tilted_scan_corrected_through_collect(tmp_path):
    """A real tilt turns the projections in the detector plane; a centre per row (a shear)
    models it to first order, so the fitted slope comes out somewhat low (0.86° for 1°)."""
    tilt = 1.0  # degrees: the centre moves by 1.2 px over the 70 rows
    truth, resolved = collect_scan(tmp_path, "t", {}, n_cols=160, n_rows=70, n_angles=240,
                                   center=82.3, tilt_deg=tilt, noise=True, seed=1)
    slope = math.tan(math.radians(tilt))
    assert resolved["tilt_px_per_row"] == pytest.approx(slope, rel=0.2)
    mid = (70 - 1) / 2
    at_mid = resolved["center"] + resolved["tilt_px_per_row"] * (mid - resolved["center_row"])
    assert abs(at_mid - truth["center"]) <= 0.25
    assert "corrected" in resolved["tilt_how"]


def test_given_centre_reads_no_pixel(tmp_path, monkeypatch):
    """With the centre given and a float output, collect resolves everything from the plan."""
    from teravox.stages import collect

    def no_reads(*a, **k):
        raise AssertionError("read pixels")

    monkeypatch.setattr(collect, "_read_angles", no_reads)
    monkeypatch.setattr(collect, "sample_range", no_reads)
    path = tmp_path / "g.h5"
    from teravox import plan as planmod
    from teravox.config import from_mapping
    from teravox.io import open_scan_for
    from teravox.stages import preprocess
    from teravox.synth.scan import write_scan

    write_scan(path, n_cols=64, n_rows=4, n_angles=60, seed=2, progress=False)
    p = from_mapping({"center": 31.5, "tilt_deg": 0.5})
    with open_scan_for(str(path), p) as s:
        plan = planmod.make_plan(s, p, workdir=tmp_path / "g")
    (tmp_path / "g").mkdir()
    preprocess.run_chunk(plan, 0)
    resolved = collect.read_resolved(collect.run(plan))
    assert resolved["center"] == 31.5 and resolved["center_row"] == pytest.approx(1.5)
    assert resolved["tilt_px_per_row"] == pytest.approx(math.tan(math.radians(0.5)))


@pytest.mark.slow
def test_collect_peak_memory_as_modelled(tmp_path):
    """The collect job's measured peak (VmHWM) within 10 % of its model, automatic centre."""
    import os
    import subprocess
    import sys

    from teravox import plan as planmod
    from teravox.config import from_mapping
    from teravox.io import open_scan_for
    from teravox.stages import preprocess
    from teravox.synth.scan import write_scan

    write_scan(tmp_path / "s.h5", n_cols=2048, n_rows=8, n_angles=1200, noise=False, progress=False)
    p = from_mapping({"center": "auto"})
    with open_scan_for(str(tmp_path / "s.h5"), p) as s:
        plan = planmod.make_plan(s, p, workdir=tmp_path)
    planmod.save(plan, tmp_path / "plan.json")
    preprocess.run_chunk(plan, 0)
    env = {**os.environ, "TERAVOX_PEAK_FILE": str(tmp_path / "peak")}
    res = subprocess.run([sys.executable, "-m", "teravox.cli", "collect", "--plan", str(tmp_path / "plan.json")],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    measured = int((tmp_path / "peak").read_text())
    assert measured == pytest.approx(plan["memory"]["collect_peak_estimate"], rel=0.10)
