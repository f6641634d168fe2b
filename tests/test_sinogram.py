"""Sinogram operations: −log, 360°→180° conversion, padding."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.errors import ParamError
from teravox.recon.sinogram import (
    convert_360_to_180,
    default_pad_width,
    half_acquisition_pairs,
    minus_log,
    pad,
)

# (x0, y0, a, b, phi, mu): ellipses in pixels about the rotation axis, attenuation per pixel
ELLIPSES = [
    (0.0, 0.0, 200.0, 165.0, 0.3, 0.010),  # spans most of the field
    (30.0, -20.0, 20.0, 20.0, 0.0, 0.020),
    (150.0, 20.0, 15.0, 15.0, 0.0, 0.040),  # far off-axis: seen only in one half of the 360°
    (-120.0, -60.0, 25.0, 12.0, 0.2, 0.030),
]
# (x0, y0, sigma, amplitude): smooth blobs, for interpolated (sub-pixel) conversions
BLOBS = [(0.0, 0.0, 70.0, 0.01), (60.0, -40.0, 12.0, 0.05), (-130.0, 50.0, 9.0, 0.04), (170.0, 0.0, 6.0, 0.05)]


def ellipse_sino(theta: np.ndarray, n_cols: int, center: float, objs=ELLIPSES) -> np.ndarray:
    """Exact line integrals p(s, θ), s = column − centre (architecture.md geometry)."""
    s = np.arange(n_cols) - center
    th = theta[:, None]
    out = np.zeros((theta.size, n_cols))
    for x0, y0, a, b, phi, mu in objs:
        a2 = (a * np.cos(th - phi)) ** 2 + (b * np.sin(th - phi)) ** 2
        sp = s - (x0 * np.cos(th) + y0 * np.sin(th))
        out += mu * 2 * a * b * np.sqrt(np.clip(a2 - sp**2, 0, None)) / a2
    return out.astype(np.float32)


def blob_sino(theta: np.ndarray, n_cols: int, center: float, objs=BLOBS) -> np.ndarray:
    """Exact line integrals of 2-D Gaussians A·exp(−r²/2σ²): A·√(2π)·σ·exp(−s'²/2σ²)."""
    s = np.arange(n_cols) - center
    th = theta[:, None]
    out = np.zeros((theta.size, n_cols))
    for x0, y0, sig, amp in objs:
        sp = s - (x0 * np.cos(th) + y0 * np.sin(th))
        out += amp * np.sqrt(2 * np.pi) * sig * np.exp(-(sp**2) / (2 * sig**2))
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- −log


def test_minus_log_values_and_clipping():
    x = np.array([1.0, 0.5, np.e**-2, 0.0, -0.3, np.nan, np.inf], np.float32)
    y = minus_log(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:3], [0.0, np.log(2), 2.0], rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[3:6], -np.log(1e-6), rtol=1e-6)  # clipped at eps
    assert y[6] == pytest.approx(np.log(1e-6), rel=1e-6)  # and at 1/eps


def test_minus_log_inplace_and_copy():
    x = np.full((2, 3, 4), 0.25, np.float32)
    y = minus_log(x)
    assert not np.shares_memory(x, y) and x[0, 0, 0] == 0.25
    z = minus_log(x, inplace=True)
    assert np.shares_memory(x, z)
    np.testing.assert_allclose(x, np.log(4.0), rtol=1e-6)
    # a float64 input cannot hold the float32 result in place: a new array
    x64 = np.full(3, 0.5)
    assert minus_log(x64, inplace=True).dtype == np.float32 and x64[0] == 0.5


# ---------------------------------------------------------------------------- padding


def test_pad_modes():
    sinos = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) + 1
    e = pad(sinos, 4, "edge")
    assert e.shape == (2, 3, 13) and e.dtype == np.float32
    np.testing.assert_array_equal(e[..., 4:9], sinos)
    np.testing.assert_array_equal(e[..., :4], np.repeat(sinos[..., :1], 4, axis=-1))
    np.testing.assert_array_equal(e[..., 9:], np.repeat(sinos[..., -1:], 4, axis=-1))
    z = pad(sinos, 3, "zero")
    assert z.shape == (2, 3, 11) and not z[..., :3].any() and not z[..., 8:].any()
    np.testing.assert_array_equal(z[..., 3:8], sinos)
    assert pad(sinos, 4, "none") is sinos
    with pytest.raises(ParamError):
        pad(sinos, 2, "reflect")  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 7, 100, 1000, 2048, 2559, 24001])
def test_default_pad_width_is_a_quarter_and_fft_friendly(n):
    w = default_pad_width(n)
    total = n + 2 * w
    assert n / 4 <= w <= n / 4 + max(8, n / 8)
    m = total
    for p in (2, 3, 5, 7, 11):
        while m % p == 0:
            m //= p
    assert m == 1, f"padded width {total} has a large prime factor"


# ---------------------------------------------------------------------------- 360 → 180


def _half_acquisition(side: str, n_cols: int, center_right: float, make, n_angles: int = 720):
    """360° sinogram with the axis near ``side``; returns sinos, centre, angles."""
    theta = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    center = center_right if side == "right" else n_cols - 1 - center_right
    return make(theta, n_cols, center)[None], center, theta


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("center_right", [230.0, 230.5])
def test_360_to_180_exact_when_no_interpolation(side, center_right):
    """2·centre an integer: no interpolation, so the result equals the direct 180° sinogram."""
    sinos, center, theta = _half_acquisition(side, 256, center_right, ellipse_sino)
    out, new_center = convert_360_to_180(sinos, center)
    assert out.dtype == np.float32 and out.shape[:2] == (1, 360)
    # full field: s from −d to d, d = the axis' distance to the far edge
    assert out.shape[2] == int(np.floor(2 * center_right)) + 1
    assert new_center == pytest.approx(center_right if side == "right" else out.shape[2] - 1 - center_right)
    ref = ellipse_sino(theta[:360], out.shape[2], new_center)
    assert np.abs(out[0] - ref).max() < 1e-5 * ref.max()


@pytest.mark.parametrize("side", ["right", "left"])
def test_360_to_180_subpixel_centre(side):
    sinos, center, theta = _half_acquisition(side, 256, 210.3, blob_sino)
    out, new_center = convert_360_to_180(sinos, center, side)
    ref = blob_sino(theta[:360], out.shape[2], new_center)
    err = np.abs(out[0] - ref)
    assert err[:, 2:-2].max() < 0.01 * ref.max()
    # the columns the direct view never saw carry real signal (from the opposite view)
    unseen = ref[:, 256:] if side == "right" else ref[:, : out.shape[2] - 256]
    assert unseen.max() > 0.2 * ref.max()


def test_360_to_180_subpixel_sharp_edges_interior():
    """Sharp-edged ellipses with a sub-pixel centre: error < 1 % of the maximum almost everywhere."""
    sinos, center, theta = _half_acquisition("right", 256, 230.4, ellipse_sino)
    out, new_center = convert_360_to_180(sinos, center)
    ref = ellipse_sino(theta[:360], out.shape[2], new_center)
    err = np.abs(out[0] - ref) / ref.max()
    assert np.percentile(err, 99) < 0.01
    assert err.max() < 0.05  # the sqrt edges of the ellipses, interpolated


def test_360_to_180_with_endpoint_and_theta_pairing():
    """2m+1 angles (360° end point included) and excluded projections paired by angle."""
    theta = np.linspace(0, 2 * np.pi, 721)  # 0..360° inclusive, step 0.5°
    sinos = ellipse_sino(theta, 256, 230.0)[None]
    out, c = convert_360_to_180(sinos, 230.0)
    assert out.shape[1] == 360
    ref = ellipse_sino(theta[:360], out.shape[2], c)
    assert np.abs(out[0] - ref).max() < 1e-5 * ref.max()

    # five projections and their partners 180° later excluded: still paired exactly by angle
    keep = np.ones(721, bool)
    keep[100:105] = keep[460:465] = False
    out_t, _ = convert_360_to_180(sinos[:, keep], 230.0, theta=theta[keep])
    first, _ = half_acquisition_pairs(int(keep.sum()), theta[keep])
    ref_t = ellipse_sino(theta[keep][first], out_t.shape[2], c)
    assert np.abs(out_t[0] - ref_t).max() < 1e-5 * ref_t.max()


def test_360_to_180_overscan_needs_theta():
    """A scan from −10° to 360°: index pairing (i, i + n/2) is 5° off, angle pairing exact."""
    theta = np.radians(np.arange(-10.0, 360.0, 0.5))
    sinos = ellipse_sino(theta, 256, 230.0)[None]
    first, opposite = half_acquisition_pairs(theta.size, theta)
    np.testing.assert_allclose(theta[opposite] - theta[first], np.pi, atol=1e-9)
    out, c = convert_360_to_180(sinos, 230.0, theta=theta)
    ref = ellipse_sino(theta[first], out.shape[2], c)
    assert out.shape[1] == 360 and np.abs(out[0] - ref).max() < 1e-5 * ref.max()
    out_i, _ = convert_360_to_180(sinos, 230.0)
    assert np.abs(out_i[0, :360] - ref).max() > 0.05 * ref.max()


def test_360_to_180_several_rows():
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    a, b = ellipse_sino(theta, 128, 100.0), blob_sino(theta, 128, 100.0)
    out, _ = convert_360_to_180(np.stack([a, b]), 100.0)
    out_a, _ = convert_360_to_180(a[None], 100.0)
    out_b, _ = convert_360_to_180(b[None], 100.0)
    np.testing.assert_array_equal(out, np.concatenate([out_a, out_b]))


def test_360_to_180_rejects_a_centre_on_the_wrong_side():
    sinos = np.ones((1, 8, 100), np.float32)
    with pytest.raises(ParamError, match="right"):
        convert_360_to_180(sinos, 30.0, "right")
    with pytest.raises(ParamError):
        convert_360_to_180(sinos, 49.5)  # the middle: not a half acquisition
    with pytest.raises(ParamError):
        convert_360_to_180(sinos, 120.0)  # outside the detector
