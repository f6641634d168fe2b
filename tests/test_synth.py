"""The analytic phantom, the synthetic scan writer and ``teravox synth``."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from teravox.errors import ParamError
from teravox.stages import synth as synth_stage
from teravox.synth import Phantom, Shape, default_phantom, write_multiscan, write_scan
from teravox.synth import scan as scan_mod


def _normalised(path: Path | str) -> tuple[np.ndarray, h5py.File]:
    """(I − D)/(F − D) of a DXchange scan, float64, and the open file (caller closes)."""
    f = h5py.File(path, "r")
    d = f["exchange/data"][()].astype(np.float64)
    flat = f["exchange/data_white"][()].astype(np.float64).mean(0)
    dark = f["exchange/data_dark"][()].astype(np.float64).mean(0)
    return (d - dark) / (flat - dark), f


def _numerical_projection(img: np.ndarray, theta: np.ndarray, s: np.ndarray,
                          step: float = 1.0) -> np.ndarray:
    """∫ f along the rays x cos θ + y sin θ = s by sampling the image (bilinear)."""
    n = img.shape[0]
    half = (n - 1) / 2
    t = np.arange(-n / 2 - 2, n / 2 + 2, step)
    out = np.empty((theta.size, s.size))
    for i, th in enumerate(theta):
        ss, tt = np.meshgrid(s, t, indexing="ij")
        x = ss * np.cos(th) - tt * np.sin(th)
        y = ss * np.sin(th) + tt * np.cos(th)
        out[i] = map_coordinates(img, [y + half, x + half], order=1, mode="constant").sum(1) * step
    return out


# -- the phantom -------------------------------------------------------------------------
def test_centred_disc_projects_to_chord_length():
    r, mu = 20.0, 0.03
    ph = Phantom([Shape((0, 0, 0), (r, r, math.inf), 0.0, mu)])
    theta = np.linspace(0, np.pi, 7)
    s = np.linspace(-25, 25, 101)
    p = ph.line_integrals(theta, s, np.array([-3.0, 0.0, 5.0]))
    expected = 2 * mu * np.sqrt(np.clip(r**2 - s**2, 0, None))
    assert p.shape == (7, 3, 101) and p.dtype == np.float64
    # atol: at the tangent ray (|s| = r) the square root turns rounding (1e-16) into 1e-8.
    np.testing.assert_allclose(p, np.broadcast_to(expected, p.shape), rtol=0, atol=1e-7)


def test_sphere_cut_and_ellipse_orientation():
    # A sphere cut at height z is a disc of radius sqrt(R² − (z − z0)²).
    ph = Phantom([Shape((0, 0, 4.0), (10, 10, 10), 0.0, 1.0)])
    s = np.array([0.0, 3.0, 7.0])
    p = ph.line_integrals(np.array([0.3]), s, np.array([4.0, 10.0, 15.0]))[0]
    for i, dz in enumerate((0.0, 6.0)):
        rz2 = 100 - dz**2
        np.testing.assert_allclose(p[i], 2 * np.sqrt(np.clip(rz2 - s**2, 0, None)), atol=1e-12)
    assert np.all(p[2] == 0)            # above the sphere
    # An ellipse with a along x: at θ = 0 the rays run along y, so p(0) = 2b and the
    # support is |s| < a; at θ = 90° it is 2a over |s| < b.
    a, b = 12.0, 5.0
    ell = Phantom([Shape((0, 0, 0), (a, b, math.inf), 0.0, 1.0)])
    q = ell.line_integrals(np.array([0.0, np.pi / 2]), np.array([0.0, 4.9, 11.9, 12.1]), np.zeros(1))[:, 0]
    np.testing.assert_allclose(q[0, 0], 2 * b)
    np.testing.assert_allclose(q[1, 0], 2 * a)
    assert q[0, 2] > 0 and q[0, 3] == 0 and q[1, 1] > 0 and q[1, 2] == 0
    # Rotating the ellipse by φ rotates its projections: p_φ(s, θ + φ) = p_0(s, θ).
    phi = 0.7
    rot = Phantom([Shape((0, 0, 0), (a, b, math.inf), phi, 1.0)])
    th = np.linspace(0, np.pi, 5)
    sg = np.linspace(-13, 13, 27)
    np.testing.assert_allclose(rot.line_integrals(th + phi, sg, np.zeros(1)),
                               ell.line_integrals(th, sg, np.zeros(1)), atol=1e-12)
    # An off-centre shape at (x0, y0) moves to s = x0 cos θ + y0 sin θ.
    off = Phantom([Shape((10.0, -6.0, 0), (2, 2, math.inf), 0.0, 1.0)])
    for th in (0.0, 0.5, 2.0, 4.0):
        sc = 10 * math.cos(th) - 6 * math.sin(th)
        np.testing.assert_allclose(off.line_integrals(np.array([th]), np.array([sc]), np.zeros(1)), 4.0)


def test_line_integrals_match_numerical_projection_of_sampled_slice():
    n, fine = 96, 4
    ph = default_phantom(n, rows=32)
    # The same object sampled four times finer (lengths × 4, mu / 4): the numerical
    # line integral of its slice must approach the analytic projection.
    big = Phantom([replace(sh, center=tuple(c * fine for c in sh.center),
                           semi_axes=tuple(c * fine for c in sh.semi_axes), mu=sh.mu / fine)
                   for sh in ph.shapes])
    img = big.slice(0.0, n * fine, supersample=2).astype(np.float64)
    theta = np.linspace(0, np.pi, 8, endpoint=False) + 0.1
    s = np.arange(n) - (n - 1) / 2
    exact = ph.line_integrals(theta, s, np.zeros(1))[:, 0, :]
    num = _numerical_projection(img, theta, s * fine)
    scale = exact.max()
    assert np.sqrt(np.mean((num - exact) ** 2)) < 0.01 * scale
    assert np.abs(num - exact).max() < 0.05 * scale
    # The opposite orientation (θ → −θ) is far off: the convention is really tested.
    flipped = _numerical_projection(img, -theta, s * fine)
    assert np.abs(flipped - exact).max() > 0.3 * scale


def test_supersample_is_the_mean_over_sub_positions():
    ph = default_phantom(64, rows=16)
    th = np.array([0.2, 1.9])
    s = np.arange(64) - 31.5
    z = np.array([-2.0, 0.0, 3.0])
    m = 3
    offs = (np.arange(m) + 0.5) / m - 0.5
    manual = np.zeros((2, 3, 64))
    for dz in offs:
        for ds in offs:
            manual += ph.line_integrals(th, s + ds, z + dz)
    np.testing.assert_allclose(ph.line_integrals(th, s, z, supersample=m), manual / m**2, atol=1e-12)
    # Unsorted coordinates take the general path and give the same numbers.
    perm = np.random.default_rng(1).permutation(64)
    np.testing.assert_allclose(ph.line_integrals(th, s[perm], z, supersample=m), manual[:, :, perm] / m**2,
                               atol=1e-12)
    # A voxel-averaged disc keeps its area.
    disc = Phantom([Shape((0.3, -0.2, 0), (10.0, 10.0, math.inf), 0.0, 1.0)])
    assert disc.slice(0.0, 32, supersample=8).sum() == pytest.approx(math.pi * 100, rel=2e-3)


def test_phantom_json_round_trip_and_delta():
    ph = default_phantom(80, rows=20).with_delta(2.5)
    back = Phantom.from_json(ph.to_json().encode())
    assert back == ph
    assert any(math.isinf(sh.semi_axes[2]) for sh in back.shapes)
    th, s, z = np.array([0.4]), np.arange(80) - 39.5, np.array([1.0])
    np.testing.assert_allclose(back.line_integrals(th, s, z, quantity="delta"),
                               2.5 * ph.line_integrals(th, s, z), rtol=1e-12)
    with pytest.raises(ParamError):
        Phantom.from_json("{}")
    with pytest.raises(ParamError):
        ph.line_integrals(th, s, z, quantity="beta")


@pytest.mark.parametrize("n", [64, 200, 1000])
def test_default_phantom_transmission_and_extent(n):
    ph = default_phantom(n)
    assert ph == default_phantom(n)                        # deterministic
    theta = np.linspace(0, np.pi, 45, endpoint=False)
    s = np.arange(n) - (n - 1) / 2
    p = ph.line_integrals(theta, s, np.array([0.0]))
    assert 0.3 <= np.exp(-p.max()) <= 0.5
    assert p.min() >= -1e-12
    # The container fills 80-85 % of the radius n/2: nothing outside, wall inside.
    radius_px = np.abs(s[p.max(axis=(0, 1)) > 0]).max()
    assert 0.80 * n / 2 <= radius_px <= 0.85 * n / 2
    sl = ph.slice(0.0, n)
    assert sl.dtype == np.float32 and sl.shape == (n, n)
    assert np.unique(np.round(sl / sl.max(), 4)).size >= 5      # several materials


# -- the scan writer -------------------------------------------------------------------------
def test_cli_tiny_writes_expected_datasets(tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    assert synth_stage.main([str(out), "--size", "tiny", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.tmp-*"))
    with h5py.File(out, "r") as f:
        assert f["exchange/data"].shape == (90, 16, 64)
        assert f["exchange/data"].dtype == np.uint16
        assert f["exchange/data"].chunks == (1, 16, 64)
        assert f["exchange/data_white"].shape == (10, 16, 64)
        assert f["exchange/data_dark"].shape == (10, 16, 64)
        np.testing.assert_allclose(f["exchange/theta"][()], np.arange(90) * 2.0)
        assert f["exchange/theta"].attrs["units"] == "degrees"
        m = f["measurement/instrument"]
        assert m["monochromator/energy"].attrs["units"] == "keV"
        assert m["detector/pixel_size_x"].attrs["units"] == "um"
        assert m["detector/pixel_size_x"][()] == pytest.approx(1.0)
        assert m["detector/distance"].attrs["units"] == "mm"
        assert m["beam_monitor/data"].shape == (90,)
        assert "data_white_post" not in f["exchange"]
        t = f["truth"]
        assert t.attrs["center"] == 31.5 and t.attrs["theta_range_deg"] == 180
        assert t["volume"].shape == (16, 64, 64) and t["volume"].dtype == np.float32
        ph = Phantom.from_json(t["phantom"][()])
        np.testing.assert_allclose(t["volume"][8], ph.slice(0.5, 64, supersample=2))
    # Errors are one line and exit status 2.
    assert synth_stage.main([str(tmp_path / "x.h5"), "--phase", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("teravox synth: error:") and err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()


def test_noise_free_scan_follows_the_model_exactly(tmp_path):
    truth = write_scan(tmp_path / "s.h5", size="tiny", noise=False, dtype="float32", drift=True,
                       stripes=True, center=33.25, progress=False)
    norm, f = _normalised(tmp_path / "s.h5")
    with f:
        beam = f["measurement/instrument/beam_monitor/data"][()]
        theta = np.deg2rad(f["exchange/theta"][()])
        ph = Phantom.from_json(f["truth/phantom"][()])
        cols, gains = f["truth/stripe_columns"][()], f["truth/stripe_gains"][()]
    assert beam.std() > 0.003 and np.all(np.abs(beam - 1) < 0.05)
    assert np.any(np.diff(beam) > 0.01)                  # a top-up jump
    assert len(cols) >= 3 and np.any(gains < 0.2) and np.any(gains > 1.3)
    gain = np.ones(64)
    gain[cols] = gains
    p = ph.line_integrals(theta, np.arange(64) - 33.25, np.arange(16) - 7.5)
    expected = np.exp(-p) * beam[:, None, None] * gain[None, None, :]
    np.testing.assert_allclose(norm, expected, rtol=2e-6, atol=1e-7)
    assert truth["center"] == 33.25


def test_noisy_scan_statistics(tmp_path):
    write_scan(tmp_path / "n.h5", size="tiny", flux=10000.0, zingers=True, n_angles=120, progress=False)
    with h5py.File(tmp_path / "n.h5", "r") as f:
        flats = f["exchange/data_white"][()].astype(np.float64)
        darks = f["exchange/data_dark"][()].astype(np.float64)
        data = f["exchange/data"][()].astype(np.float64)
        prof = f["truth/flat_profile"][()]
        zi = f["truth/zingers"][()]
    assert darks.mean() == pytest.approx(100.0, abs=0.2) and darks.std() == pytest.approx(2.0, rel=0.1)
    # Poisson: the flats scatter around 100 + flux·profile with variance = counts
    # (+ read noise² + rounding), so their z-scores are standard normal.
    expected = 1e4 * prof
    zscore = (flats.mean(0) - 100 - expected) / np.sqrt((expected + 4 + 1 / 12) / len(flats))
    assert abs(zscore.mean()) < 0.15 and zscore.std() == pytest.approx(1.0, abs=0.1)
    var = flats.var(0, ddof=1).mean()
    assert var == pytest.approx(expected.mean() + 4 + 1 / 12, rel=0.1)
    assert prof.min() > 0.5 and prof.max() <= 1.0 and prof.std() > 0.02
    assert len(zi) > 5 and len(np.unique(zi[:, 0])) > 3
    hit = data[zi[:, 0], zi[:, 1], zi[:, 2]]
    assert np.all(hit > 100 + 1e4 * prof[zi[:, 1], zi[:, 2]] * 0.3 + 4000)
    # Below 100 counts the photon noise is drawn from a true Poisson law.
    write_scan(tmp_path / "dim.h5", size="tiny", flux=40.0, n_flats=40, progress=False)
    with h5py.File(tmp_path / "dim.h5", "r") as f:
        dim = f["exchange/data_white"][()].astype(np.float64) - 100
    counts = 40 * prof
    assert dim.mean() == pytest.approx(counts.mean(), rel=0.01)
    assert dim.var(0, ddof=1).mean() == pytest.approx(counts.mean() + 4 + 1 / 12, rel=0.05)
    # ... whose skewness (λ/σ³, ~0.15 here) a Gaussian would not have.
    sigma2 = counts + 4 + 1 / 12
    skew = np.mean(((dim - counts) / np.sqrt(sigma2)) ** 3)
    assert skew == pytest.approx(np.mean(counts / sigma2**1.5), abs=0.04) and skew > 0.08


def test_reconstruction_of_tiny_scan_matches_ground_truth(tmp_path):
    iradon = pytest.importorskip("skimage.transform").iradon
    # skimage's radon sums rows of the image rotated by θ, which is our projection at
    # −θ (its y axis points the other way): so iradon(sinogram.T, theta=−θ_deg).
    # skimage puts both the axis and the image centre at index n//2 (32 for 64
    # columns) where we put them at (n − 1)/2; writing the scan with center=32 and
    # comparing with our slice on a 65-pixel grid cropped to 64 makes the grids agree.
    write_scan(tmp_path / "r.h5", size="tiny", center=32.0, noise=False, supersample=4, progress=False)
    norm, f = _normalised(tmp_path / "r.h5")
    with f:
        theta_deg = f["exchange/theta"][()]
        ph = Phantom.from_json(f["truth/phantom"][()])
    n, rows = 64, 16
    yy, xx = np.mgrid[:n, :n] - n // 2
    inside = np.hypot(xx, yy) < n / 2 - 2
    for row in (3, 8):
        sino = -np.log(norm[:, row, :])
        rec = iradon(sino.T, theta=-theta_deg, filter_name="ramp", circle=True, output_size=n,
                     interpolation="cubic")
        truth = ph.slice(row - (rows - 1) / 2, n + 1, supersample=4)[:n, :n]
        assert np.corrcoef(rec[inside], truth[inside])[0, 1] >= 0.99
        assert rec[inside].mean() == pytest.approx(truth[inside].mean(), rel=0.02)
        # The mirrored angle convention reconstructs a different object.
        wrong = iradon(sino.T, theta=theta_deg, filter_name="ramp", circle=True, output_size=n)
        assert np.corrcoef(wrong[inside], truth[inside])[0, 1] < 0.6


def test_same_seed_same_bytes(tmp_path):
    opts = dict(size="tiny", drift=True, zingers=True, stripes=True, progress=False)
    paths = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "scan.h5")
        write_scan(paths[-1], seed=seed, **opts)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert digest[0] == digest[1]
    with h5py.File(paths[0]) as a, h5py.File(paths[2]) as c:
        assert not np.array_equal(a["exchange/data"][()], c["exchange/data"][()])


def test_blocking_does_not_change_the_data(tmp_path, monkeypatch):
    write_scan(tmp_path / "big.h5", size="tiny", noise=False, zingers=True, progress=False)
    monkeypatch.setattr(scan_mod, "_BLOCK_PIXELS", 3 * 64)      # 3 rows per block
    monkeypatch.setattr(scan_mod, "_BATCH_PIXELS", 7 * 3 * 64)  # 7 projections per batch
    write_scan(tmp_path / "small.h5", size="tiny", noise=False, zingers=True, progress=False)
    with h5py.File(tmp_path / "big.h5") as a, h5py.File(tmp_path / "small.h5") as b:
        np.testing.assert_array_equal(a["exchange/data"][()], b["exchange/data"][()])


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(scan_mod, "_transmission", boom)
    with pytest.raises(RuntimeError):
        write_scan(tmp_path / "x.h5", size="tiny", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_flats_after_and_danmax_layout(tmp_path):
    write_scan(tmp_path / "d.h5", size="tiny", layout="danmax", flats_after=True, n_flats=4,
               energy_kev=25.0, pixel_size_m=0.55e-6, distance_m=0.12, theta_start_deg=10.0,
               progress=False)
    with h5py.File(tmp_path / "d.h5") as f:
        assert "theta" not in f["exchange"] and "measurement" not in f
        assert f["exchange/data_white"].shape == f["exchange/data_white_post"].shape == (4, 16, 64)
        assert f["instrument/monochromator/energy"][()] == 25.0
        assert f["instrument/monochromator/energy"].attrs["units"] == "keV"
        assert f["instrument/detector/actual_pixel_size_x"][()] == pytest.approx(0.55)
        assert f["instrument/detector/actual_pixel_size_x"].attrs["units"] == "um"
        assert f["instrument/detector/propagation_distance"][()] == pytest.approx(120.0)
        assert f["instrument/detector/propagation_distance"].attrs["units"] == "mm"
        assert f["instrument/beam_monitor/data"].shape == (90,)
        a = f["process/acquisition/setup"]
        assert (a["rotation_start_angle"][()], a["rotation_end_angle"][()]) == (10.0, 190.0)
        assert a["rotation_start_angle"].attrs["units"] == "deg"
        np.testing.assert_allclose(f["truth/theta_deg"][()], 10 + 2.0 * np.arange(90))


def test_nxtomo_format(tmp_path):
    write_scan(tmp_path / "n.nxs", size="tiny", format="nxtomo", n_flats=5, n_darks=3,
               flats_after=True, noise=False, dtype="float32", progress=False)
    with h5py.File(tmp_path / "n.nxs") as f:
        e = f["entry"]
        assert e.attrs["NX_class"] == "NXentry" and e["definition"][()].decode() == "NXtomo"
        assert e["instrument"].attrs["NX_class"] == "NXinstrument"
        assert e["instrument/detector"].attrs["NX_class"] == "NXdetector"
        assert e["data"].attrs["NX_class"] == "NXdata" and e["sample"].attrs["NX_class"] == "NXsample"
        data, key, angle = e["data/data"], e["data/image_key"][()], e["data/rotation_angle"][()]
        assert data.shape == (3 + 5 + 90 + 5, 16, 64)
        assert data == e["instrument/detector/data"]                # the same object (link)
        assert list(key[:3]) == [2] * 3 and list(key[3:8]) == [1] * 5
        assert np.all(key[8:98] == 0) and np.all(key[98:] == 1)
        np.testing.assert_allclose(angle[8:98], 2.0 * np.arange(90))
        assert e["sample/rotation_angle"].attrs["units"] == "degree"
        assert e["instrument/detector/x_pixel_size"].attrs["units"] == "m"
        assert e["beam/incident_energy"].attrs["units"] == "keV"
        frames = data[()]
        ph = Phantom.from_json(f["truth/phantom"][()])
    norm = (frames[8:98] - frames[:3].mean(0)) / (frames[3:8].mean(0) - frames[:3].mean(0))
    p = ph.line_integrals(np.deg2rad(angle[8:98]), np.arange(64) - 31.5, np.arange(16) - 7.5)
    np.testing.assert_allclose(norm, np.exp(-p), rtol=2e-6, atol=1e-7)


def test_half_acquisition_geometry(tmp_path):
    truth = write_scan(tmp_path / "h.h5", size="tiny", half_acquisition=True, overlap_px=10,
                       noise=False, dtype="float32", progress=False)
    assert truth["theta_range_deg"] == 360 and truth["center"] == 63 - 5
    assert truth["phantom_n"] == 2 * 58 + 1 and truth["volume_n"] == truth["phantom_n"]
    norm, f = _normalised(tmp_path / "h.h5")
    with f:
        assert f["truth/volume"].shape == (16, 117, 117)
    p = -np.log(norm)
    # A ray seen at θ is seen again at θ + 180° mirrored about the axis: column j ↔ 2c − j.
    # Only the overlap columns (j ≥ 2c − 63 = 53) have their mirror on the detector.
    j = np.arange(53, 64)
    np.testing.assert_allclose(p[:45, :, j], p[45:, :, 116 - j], atol=1e-5)
    # The object (radius 0.83 × 58.5 px about column 58) is wider than the detector:
    # it reaches down to column ~9.5, and only the outermost columns see air.
    seen = np.nonzero(p.max(axis=(0, 1)) > 1e-6)[0]
    assert 8 <= seen[0] <= 11 and seen[-1] == 63
    assert p[:, :, 0].max() == pytest.approx(0, abs=1e-6)
    left = write_scan(tmp_path / "l.h5", size="tiny", half_acquisition=True, side="left",
                      overlap_px=10, progress=False)
    assert left["center"] == 5.0
    with pytest.raises(ParamError):
        write_scan(tmp_path / "bad.h5", size="tiny", half_acquisition=True, theta_range_deg=180)


def test_multiscan_offsets_motors_and_overlap(tmp_path):
    res = write_multiscan(tmp_path / "st", 3, 16, size="tiny", noise=False, dtype="float32",
                          pixel_size_m=0.5e-6, seed=11, progress=False)
    assert res["wide_n_cols"] == 3 * 64 - 2 * 16
    assert res["offsets_px"] == [0, 48, 96]
    errors = np.array(res["motor_errors_px"])
    assert np.all(np.abs(errors) <= 8) and errors.std() > 0.5
    with open(tmp_path / "st" / "scans.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == ["scan_00.h5", "scan_01.h5", "scan_02.h5"]
    norms = []
    for i, row in enumerate(rows):
        norm, f = _normalised(tmp_path / "st" / row["file"])
        with f:
            t = f["truth"].attrs
            assert t["offset_px"] == res["offsets_px"][i]
            motor_px = float(row["position_mm"]) / 0.5e-3
            assert abs(motor_px - t["offset_px"]) <= 8
            assert motor_px - t["offset_px"] == pytest.approx(t["motor_error_px"], abs=1e-3)
            stage = f["measurement/instrument/sample_stage/x"]
            assert stage.attrs["units"] == "mm" and stage[()] == pytest.approx(float(row["position_mm"]))
            assert t["center"] == pytest.approx(t["wide_center"] - t["offset_px"])
            assert f["truth/volume"].shape == (16, 160, 160)        # the stitched field of view
        norms.append(norm)
    # Neighbours see the same object in their 16 shared columns (each with its own flats).
    for a, b in zip(norms, norms[1:], strict=False):
        np.testing.assert_allclose(a[:, :, -16:], b[:, :, :16], rtol=1e-5, atol=1e-6)
    # The middle scan's edges are inside the object: the field of view is really wide.
    assert (-np.log(norms[1])).min(axis=(0, 1))[[0, -1]].min() > 0.05


def test_phase_contrast_units_and_sign(tmp_path):
    # With one δ/β for every material, Paganin's filter 1/(1 + πλzδ/β·|f|²) undoes
    # the propagation (to the accuracy of the transport-of-intensity equation).  A
    # wrong unit (pixel vs metre) or sign in the simulation would not survive this.
    ph = Phantom([Shape((5, -3, 0), (60, 40, 50), 0.3, 0.005), Shape((-30, 10, 5), (20, 20, 30), 0, 0.01)])
    common = dict(n_angles=2, n_cols=256, n_rows=128, noise=False, dtype="float32", supersample=2,
                  phantom=ph, flat_profile=False, progress=False)
    write_scan(tmp_path / "a.h5", **common)
    energy, dist, db, px = 20.0, 0.05, 30.0, 1e-6
    truth = write_scan(tmp_path / "p.h5", propagation=True, distance_m=dist, energy_kev=energy,
                       delta_beta=db, pixel_size_m=px, **common)
    assert truth["delta_beta"] == db
    absorb, fa = _normalised(tmp_path / "a.h5")
    phase, fp = _normalised(tmp_path / "p.h5")
    with fa, fp:
        assert fp["measurement/instrument/detector/distance"][()] == pytest.approx(50.0)
        stored = Phantom.from_json(fp["truth/phantom"][()])
    lam = 1.23984198e-9 / energy
    # The stored δ is delta_beta · β with β = mu·λ/(4π·pixel size).
    assert stored.shapes[0].delta == pytest.approx(db * 0.005 * lam / (4 * np.pi * px))
    line = -np.log(absorb[0])
    assert np.abs(-np.log(phase[0]) - line).max() > 0.2 * line.max()   # visible fringes

    def retrieved_error(ratio: float) -> float:
        pad = 128
        img = np.pad(phase[0], pad, mode="edge")
        f2 = np.fft.fftfreq(img.shape[0], d=px)[:, None] ** 2 + np.fft.fftfreq(img.shape[1], d=px)[None, :] ** 2
        ret = np.real(np.fft.ifft2(np.fft.fft2(img) / (1 + np.pi * lam * dist * ratio * f2)))
        ret = ret[pad:-pad, pad:-pad]
        return float(np.sqrt(np.mean((-np.log(np.clip(ret, 1e-6, None)) - line) ** 2)) / line.max())

    assert retrieved_error(db) < 0.01
    assert retrieved_error(db * 3) > 2 * retrieved_error(db)
    assert retrieved_error(db / 3) > 2 * retrieved_error(db)


def test_parameter_errors(tmp_path):
    for bad in (dict(n_cols=4), dict(dtype="int8"), dict(center=80.0), dict(flux=50000.0),
                dict(layout="danmax", format="nxtomo"), dict(size="huge"), dict(theta_range_deg=400)):
        with pytest.raises(ParamError):
            write_scan(tmp_path / "bad.h5", **{"size": "tiny", **bad}, progress=False)
    assert not list(tmp_path.iterdir())
