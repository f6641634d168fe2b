"""I0 (beam monitor, air region) and the two-edge air correction against their formulas."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.prep.air import air_correct
from teravox.prep.i0 import air_level, find_air_cols, from_air, from_monitor

RNG = np.random.default_rng(11)


def test_from_monitor_divides_by_normalised_monitor():
    proj = RNG.uniform(0.2, 1.0, size=(5, 3, 4)).astype(np.float32)
    i0 = np.array([100.0, 95.0, 102.0, 98.0, 105.0])
    out = from_monitor(proj, i0)
    want = proj / (i0 / i0.mean())[:, None, None]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)
    # a beam that drops by 5 % is undone, and the series' mean level is kept
    beam = proj[0] * (i0 / i0.mean())[:, None, None]
    np.testing.assert_allclose(from_monitor(beam, i0), np.broadcast_to(proj[0], beam.shape), rtol=1e-6)
    # a chunk scales to the scan's reference, not to its own mean
    np.testing.assert_allclose(from_monitor(proj[:2], i0[:2], reference=i0.mean()), want[:2], rtol=1e-6)


def test_from_monitor_refuses_bad_monitor():
    proj = np.ones((3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="3 projections"):
        from_monitor(proj, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        from_monitor(proj, [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        from_monitor(proj, [1.0, np.nan, 2.0])


def _scan_with_sample_on_the_left(n=4, rows=6, cols=40):
    """Air = 1 × beam level; a sample covers columns 0..14 (transmission 0.4..0.9)."""
    proj = np.ones((n, rows, cols), np.float32)
    proj[:, :, :15] = RNG.uniform(0.4, 0.9, size=(n, rows, 15))
    proj *= (1 + 1e-3 * RNG.standard_normal(proj.shape)).astype(np.float32)
    level = np.array([1.0, 0.9, 1.1, 0.95], np.float32)[:n]
    return proj * level[:, None, None], level


def test_from_air_with_given_columns_and_found_band():
    proj, level = _scan_with_sample_on_the_left()
    out = from_air(proj, cols=[30, 40])
    want = proj / proj[:, :, 30:40].mean(axis=(1, 2), dtype=np.float64)[:, None, None]
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_allclose(out[:, :, 30:].mean(axis=(1, 2)), 1.0, rtol=1e-6)
    # automatic: the right band is air, the left one holds the sample
    assert find_air_cols(proj, width=8) == (32, 40)
    np.testing.assert_allclose(from_air(proj, width=8), proj / air_level(proj, (32, 40))[:, None, None],
                               rtol=1e-6)
    # the band is found on the left when the sample sits on the right
    assert find_air_cols(proj[:, :, ::-1], width=8) == (0, 8)
    # -1 means "to the end", as in the parameters
    np.testing.assert_allclose(from_air(proj, cols=[30, -1]), out, rtol=1e-7)


def test_from_air_level_given_for_a_block_of_rows():
    proj, _ = _scan_with_sample_on_the_left()
    full = air_level(proj, (30, 40))
    # a block of rows scaled with the full-height level equals the same rows of the whole result
    np.testing.assert_allclose(from_air(proj[:, 2:4], level=full), from_air(proj, cols=[30, 40])[:, 2:4],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        from_air(proj, cols=[35, 50])
    with pytest.raises(ValueError, match="not positive"):
        from_air(np.zeros((1, 2, 10), np.float32), cols=[0, 3])


def test_air_correct_cancels_a_linear_drift_across_the_row():
    n, rows, cols, width = 3, 5, 64, 6
    sample = np.ones((n, rows, cols))
    sample[:, :, 20:44] = RNG.uniform(0.3, 0.9, size=(n, rows, 24))  # the object, away from the edges
    x = np.arange(cols)
    # a flat-field drift that varies linearly across the detector, differently per row and angle
    a = RNG.uniform(0.8, 1.2, size=(n, rows, 1))
    b = RNG.uniform(-0.004, 0.004, size=(n, rows, 1))
    proj = (sample * (a + b * x)).astype(np.float32)
    out = air_correct(proj, width)
    assert out.dtype == np.float32 and out.shape == proj.shape
    np.testing.assert_allclose(out, sample, rtol=2e-6)
    np.testing.assert_allclose(air_correct(proj[0], width), out[0], rtol=1e-7)


def test_air_correct_width_must_fit_and_bad_rows_are_left_alone():
    proj = np.ones((1, 2, 10), np.float32)
    with pytest.raises(ValueError, match="10"):
        air_correct(proj, 5)
    proj[0, 1, :3] = 0.0  # no air signal at the left edge of row 1
    out = air_correct(proj * 2, 3)
    np.testing.assert_array_equal(out[0, 1], proj[0, 1] * 2)  # unchanged
    np.testing.assert_allclose(out[0, 0], 1.0)
