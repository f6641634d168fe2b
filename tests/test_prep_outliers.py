"""Zinger removal: TomoPy's rule ``where(I − median ≥ dif, median, I)`` exactly, and its effect."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from teravox.prep import outliers
from teravox.prep.outliers import median_reflect, remove_outliers

RNG = np.random.default_rng(3)


def _reference(proj: np.ndarray, dif: float, size: int) -> tuple[np.ndarray, int]:
    """The defining rule with scipy's full median filter, one projection at a time."""
    out, count = np.empty_like(proj), 0
    for i, img in enumerate(proj):
        med = ndi.median_filter(img, size=size, mode="reflect")
        hit = img - med >= np.float32(dif)
        out[i] = np.where(hit, med, img)
        count += int(hit.sum())
    return out, count


@pytest.mark.parametrize("size", [2, 3, 4, 5, 9])
@pytest.mark.parametrize("dif", [0.02, 0.3])
@pytest.mark.parametrize("path", ["candidates", "full"])
def test_equals_median_filter_rule(size, dif, path, monkeypatch):
    # both ways of computing it (medians at candidate pixels only, or the full filter) must
    # equal the reference bit for bit; force each one
    monkeypatch.setattr(outliers, "_full_median_fraction", lambda s: 1.0 if path == "candidates" else 0.0)
    for proj in (RNG.random((2, 37, 41)).astype(np.float32), _smooth_with_spikes()):
        out, count = remove_outliers(proj, dif, size)
        want, want_count = _reference(proj, dif, size)
        np.testing.assert_array_equal(out, want)
        assert count == want_count


def _smooth_with_spikes() -> np.ndarray:
    rows, cols = np.mgrid[0:40, 0:45]
    img = 0.6 + 0.2 * np.sin(rows / 7) * np.cos(cols / 5) + 0.01 * RNG.standard_normal((40, 45))
    img[RNG.integers(0, 40, 30), RNG.integers(0, 45, 30)] += RNG.uniform(-0.5, 1.0, 30)
    return img.astype(np.float32)[None]


def test_median3_network_equals_scipy():
    for shape in [(1, 1), (2, 3), (5, 7), (64, 33)]:
        img = RNG.random(shape).astype(np.float32)
        np.testing.assert_array_equal(median_reflect(img, 3), ndi.median_filter(img, 3, mode="reflect"))
    ties = RNG.integers(0, 4, size=(30, 30)).astype(np.float32)
    np.testing.assert_array_equal(median_reflect(ties, 3), ndi.median_filter(ties, 3, mode="reflect"))


def test_planted_zinger_removed_ramp_untouched():
    rows, cols = np.mgrid[0:40, 0:50]
    ramp = (0.5 + 0.004 * rows + 0.003 * cols).astype(np.float32)[None].repeat(2, axis=0)
    out, count = remove_outliers(ramp, 0.1, 3)
    assert count == 0
    np.testing.assert_array_equal(out, ramp)

    zinged = ramp.copy()
    zinged[0, 10, 20] += 5.0
    zinged[1, 0, 0] += 0.5  # at a corner, where the mirrored boundary matters
    zinged[1, 30, 30] -= 0.5  # a dark pixel is not a zinger: TomoPy removes bright ones only
    out, count = remove_outliers(zinged, 0.1, 3)
    assert count == 2
    assert out[0, 10, 20] == pytest.approx(ramp[0, 10, 20], abs=0.01)
    assert out[1, 0, 0] == pytest.approx(ramp[1, 0, 0], abs=0.01)
    assert out[1, 30, 30] == zinged[1, 30, 30]
    assert out.dtype == np.float32 and zinged[0, 10, 20] > 5  # the input is not modified


def test_one_projection_and_bad_arguments():
    img = RNG.random((20, 20)).astype(np.float32)
    out, _ = remove_outliers(img, 0.2, 3)
    assert out.shape == img.shape
    with pytest.raises(ValueError, match="size"):
        remove_outliers(img, 0.2, 0)
    with pytest.raises(ValueError, match="finite"):
        remove_outliers(img, np.nan, 3)
