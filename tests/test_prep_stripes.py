"""Stripe removal: every method takes a planted stripe out of a synthetic sinogram."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.prep.stripes import METHODS, remove_stripes, sort_filter

STRIPE_COLS = [150, 151, 250]


def _sinograms(n_rows: int = 2, n_ang: int = 361, n_col: int = 384):
    """Transmission sinograms of off-centre Gaussian blobs (nothing is constant along the angles,
    so no true feature looks like a stripe) with 0.5 % noise; then stripes are planted: a
    2-pixel +5 % gain error at columns 150-151 and a 1-pixel −5 % one at column 250.  The blobs
    are broad (40-90 px) next to the stripes, as real features are on a wide detector."""
    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, n_ang, endpoint=False)[:, None]
    s = np.arange(n_col) - (n_col - 1) / 2
    line = np.zeros((n_ang, n_col))
    for _ in range(5):
        r, phi = rng.uniform(20, 100), rng.uniform(0, 2 * np.pi)
        width, height = rng.uniform(40, 90), rng.uniform(0.05, 0.25)
        d = s - r * np.cos(phi - theta)  # the blob's trace x0 cos θ + y0 sin θ
        line += height * np.exp(-d * d / (2 * width * width))
    clean = np.exp(-line) * (1 + 0.005 * rng.standard_normal((n_rows, n_ang, n_col)))
    clean = clean.astype(np.float32)
    striped = clean.copy()
    striped[:, :, 150:152] *= 1.05
    striped[:, :, 250] *= 0.95
    return clean, striped


def _stripe_amplitude(sinos: np.ndarray, clean: np.ndarray) -> float:
    """What makes a ring: the error averaged over the angles, at the stripe columns."""
    return float(np.abs((sinos - clean).mean(axis=1)[:, STRIPE_COLS]).max())


@pytest.fixture(scope="module")
def sinos():
    return _sinograms()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_reduces_a_planted_stripe(sinos, method):
    clean, striped = sinos
    out = remove_stripes(striped, method, snr=3.0, la_size=61, sm_size=21)
    assert out.dtype == np.float32 and out.shape == striped.shape
    before, after = _stripe_amplitude(striped, clean), _stripe_amplitude(out, clean)
    assert before / after > 5, f"{method}: stripe {before:.4f} -> {after:.4f}"
    # and the rest of the sinogram is left about as it was (the noise is 0.5 %)
    assert float(np.abs(out - clean).mean()) < 0.003


def test_off_returns_the_input_and_threads_agree(sinos):
    _, striped = sinos
    np.testing.assert_array_equal(remove_stripes(striped, "off"), striped)
    one = remove_stripes(striped, "sorting", sm_size=11)
    np.testing.assert_array_equal(remove_stripes(striped, "sorting", sm_size=11, workers=2), one)


@pytest.mark.parametrize("size", [21, 5, 1])
def test_sort_filter_is_algotoms_to_the_bit(sinos, size):
    from algotom.prep.removal import remove_stripe_based_sorting

    _, striped = sinos
    quantised = np.round(striped[0] * 200) / 200  # many ties within each column
    for sino in (striped[0], quantised, striped[0, :40, :9]):
        np.testing.assert_array_equal(sort_filter(sino, size), remove_stripe_based_sorting(sino, size))
    with pytest.raises(ValueError, match="odd"):
        sort_filter(striped[0], 20)


def test_sorting_equals_tomopys(sinos):
    tomopy = pytest.importorskip("tomopy", reason="TomoPy is not installed")
    _, striped = sinos
    ours = remove_stripes(striped, "sorting", sm_size=21, workers=2)
    theirs = tomopy.remove_stripe_based_sorting(striped.transpose(1, 0, 2).copy(), size=21, ncore=1)
    np.testing.assert_array_equal(ours, theirs.transpose(1, 0, 2))


def test_bad_arguments():
    sino = np.ones((1, 20, 30), np.float32)
    with pytest.raises(ValueError, match="unknown stripe method"):
        remove_stripes(sino, "fourier")
    with pytest.raises(ValueError, match="no parameter"):
        remove_stripes(sino, "sorting", sigma=3)
    with pytest.raises(ValueError, match="rows, angles, cols"):
        remove_stripes(sino[0], "sorting")
    # algotom's own keywords pass through
    out = remove_stripes(np.random.default_rng(1).random((1, 64, 64)).astype(np.float32),
                         "filtering", sigma=2, dim=2)
    assert out.shape == (1, 64, 64)
