"""Flat/dark normalisation against its defining formula, flat interpolation, guards."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.prep.flatdark import FILL, combine, normalize

RNG = np.random.default_rng(7)


def test_combine_mean_and_median():
    frames = RNG.integers(100, 4000, size=(5, 6, 7)).astype(np.uint16)
    mean, median = combine(frames, "mean"), combine(frames, "median")
    assert mean.dtype == median.dtype == np.float32 and mean.shape == (6, 7)
    np.testing.assert_allclose(mean, frames.astype(np.float64).mean(axis=0), rtol=1e-7)
    np.testing.assert_array_equal(median, np.median(frames.astype(np.float64), axis=0))
    np.testing.assert_array_equal(combine(frames[0]), frames[0].astype(np.float32))
    with pytest.raises(ValueError, match="mean"):
        combine(frames, "mode")  # type: ignore[arg-type]


def test_normalize_is_the_formula():
    proj = RNG.integers(200, 3000, size=(4, 8, 9)).astype(np.uint16)
    dark = RNG.uniform(90, 110, size=(8, 9)).astype(np.float32)
    flat = RNG.uniform(3000, 3500, size=(8, 9)).astype(np.float32)
    res = normalize(proj, flat, dark)
    want = (proj.astype(np.float64) - dark) / (flat.astype(np.float64) - dark)
    assert res.data.dtype == np.float32 and res.data.shape == proj.shape
    np.testing.assert_allclose(res.data, want, rtol=2e-6)
    assert (res.n_guarded, res.n_nonfinite) == (0, 0)
    # one (rows, cols) projection gives one back
    np.testing.assert_array_equal(normalize(proj[1], flat, dark).data, res.data[1])


def test_flat_interpolated_linearly_by_scan_index():
    dark = np.full((3, 4), 100.0, np.float32)
    f_before = np.full((3, 4), 1100.0, np.float32)
    f_after = np.full((3, 4), 2100.0, np.float32)
    n_total, idx = 11, np.array([0, 4, 10])
    transmission = np.array([0.5, 0.25, 0.8])
    # raw counts made with the flat each projection really saw: F_i = F + (i / 10)(F_after − F)
    flats = f_before + (idx / (n_total - 1))[:, None, None] * (f_after - f_before)
    proj = dark + transmission[:, None, None] * (flats - dark)
    res = normalize(proj, f_before, dark, flat_after=f_after, indices=idx, n_total=n_total)
    np.testing.assert_allclose(res.data, np.broadcast_to(transmission[:, None, None], proj.shape), rtol=1e-6)
    # without the after-flat the last projection would be wrong by the flat drift (factor 2)
    assert normalize(proj, f_before, dark).data[2, 0, 0] == pytest.approx(1.6, rel=1e-6)
    # a whole scan may leave indices out
    whole = normalize(proj[[0]], f_before, dark, flat_after=f_after)
    np.testing.assert_allclose(whole.data, 0.5, rtol=1e-6)


def test_guards_count_and_fill_instead_of_nan():
    proj = np.full((3, 4, 5), 500.0, np.float32)
    dark = np.full((4, 5), 100.0, np.float32)
    flat = np.full((4, 5), 900.0, np.float32)
    flat[0, 0] = 100.0  # F == D
    flat[1, 2] = 50.0  # F < D
    proj[2, 3, 3] = np.nan  # a NaN in the data
    proj[0, 3, 4] = np.inf
    res = normalize(proj, flat, dark)
    assert np.isfinite(res.data).all()
    assert res.n_guarded == 2 * 3  # two detector pixels in each of three projections
    assert res.n_nonfinite == 2
    assert res.data[1, 0, 0] == res.data[1, 1, 2] == res.data[2, 3, 3] == res.data[0, 3, 4] == FILL
    assert res.data[0, 1, 1] == pytest.approx(0.5)
    # the guard also works with interpolated flats: only where the interpolated F − D ≤ 0
    after = flat.copy()
    after[0, 0] = 900.0
    res = normalize(proj, flat, dark, flat_after=after, indices=np.array([0, 1, 2]), n_total=3)
    assert res.n_guarded == 3 + 1  # (1, 2) everywhere; (0, 0) only at index 0 where F − D = 0
    assert np.isfinite(res.data).all()


def test_shape_and_index_errors():
    proj = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="flat has shape"):
        normalize(proj, np.ones((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dark has shape"):
        normalize(proj, np.ones((3, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="n_total"):
        normalize(proj, np.ones((3, 4)), np.zeros((3, 4)), flat_after=np.ones((3, 4)), indices=[0, 1])
    with pytest.raises(ValueError, match="lie in"):
        normalize(proj, np.ones((3, 4)), np.zeros((3, 4)), flat_after=np.ones((3, 4)),
                  indices=[0, 5], n_total=5)
    with pytest.raises(ValueError, match="one per projection"):
        normalize(proj, np.ones((3, 4)), np.zeros((3, 4)), flat_after=np.ones((3, 4)),
                  indices=[0], n_total=5)
