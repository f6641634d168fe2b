"""Paganin phase retrieval: closed form, TomoPy's formula, physics, support radius, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft as sfft

from teravox.prep.paganin import (
    PAD_TOL,
    delta_beta_from_tomopy_alpha,
    kernel_length_px,
    kernel_support_px,
    paganin_kernel,
    retrieve_phase,
    wavelength_m,
)

# 25 keV, 1 µm pixels, 10 cm, δ/β = 1000: a typical synchrotron micro-CT setting
PHYS = dict(pixel_size_m=1e-6, distance_m=0.1, energy_kev=25.0, delta_beta=1000.0)


def test_wavelength():
    assert wavelength_m(12.398419843320026) == pytest.approx(1e-10, rel=1e-9)  # 1 Å at 12.398 keV


def test_kernel_is_the_closed_form_on_the_rfft2_grid():
    shape = (48, 37)
    h = paganin_kernel(shape, **PHYS)
    assert h.shape == (48, 37 // 2 + 1) and h.dtype == np.float32
    lam = 12.398419843320026e-10 / PHYS["energy_kev"]  # h c = 12.398 keV·Å
    uy = np.arange(48) / (48 * 1e-6)
    uy[uy >= 0.5 / 1e-6] -= 1 / 1e-6  # fftfreq by hand, cycles per metre
    ux = np.arange(37 // 2 + 1) / (37 * 1e-6)
    want = 1 / (1 + math.pi * lam * PHYS["distance_m"] * PHYS["delta_beta"]
                * (uy[:, None] ** 2 + ux[None, :] ** 2))
    np.testing.assert_allclose(h, want, rtol=1e-6)
    assert h[0, 0] == 1.0  # the mean transmission is kept
    assert not h.flags.writeable  # cached: nobody may change it


def test_equals_tomopy_filter_after_unit_conversion():
    """TomoPy 1.x (tomopy/prep/phase.py) builds, in cm and keV,

        wavelength = 2π · 6.58211928e-19 [keV s] · 2.99792458e10 [cm/s] / energy
        H = 1 / (wavelength · dist · w² / (4π) + alpha),   normalised by H.max() = 1/alpha,

    i.e. H = alpha / (alpha + λ z w² / (4π)), with w the frequency in cycles per cm (its grid
    spans ±1/(2 pixel_size)).  With delta_beta = 1 / (4π² alpha) our filter is the same."""
    pi_tomopy = 3.14159265359
    alpha = 2e-3
    energy, dist_cm, pixel_cm = 25.0, 10.0, 1e-4
    wavelength_cm = 2 * pi_tomopy * 6.58211928e-19 * 2.99792458e10 / energy
    shape = (64, 50)
    wy = np.fft.fftfreq(shape[0], d=pixel_cm)
    wx = np.fft.rfftfreq(shape[1], d=pixel_cm)
    w2 = wy[:, None] ** 2 + wx[None, :] ** 2
    h_tomopy = 1 / (wavelength_cm * dist_cm * w2 / (4 * pi_tomopy) + alpha)
    h_tomopy /= h_tomopy.max()
    ours = paganin_kernel(shape, pixel_size_m=pixel_cm / 100, distance_m=dist_cm / 100,
                          energy_kev=energy, delta_beta=delta_beta_from_tomopy_alpha(alpha))
    np.testing.assert_allclose(ours, h_tomopy, rtol=1e-6)
    # reading alpha as β/δ instead would make the k² term 4π² ≈ 39.5 times too strong
    naive = paganin_kernel(shape, pixel_size_m=1e-6, distance_m=0.1, energy_kev=energy,
                           delta_beta=1 / alpha)
    assert naive[5, 5] < 0.5 * ours[5, 5]


def _fresnel_intensity(thickness_m, delta, beta, px, z, energy):
    """Near-field intensity behind a thin object, by exact (paraxial) Fresnel propagation."""
    lam = wavelength_m(energy)
    k = 2 * np.pi / lam
    field = np.exp(-1j * k * delta * thickness_m - k * beta * thickness_m)  # n = 1 − δ + iβ
    u = np.fft.fftfreq(thickness_m.shape[0], d=px)
    u2 = u[:, None] ** 2 + u[None, :] ** 2
    return np.abs(np.fft.ifft2(np.fft.fft2(field) * np.exp(-1j * np.pi * lam * z * u2))) ** 2


def test_retrieves_the_thickness_of_a_weak_phase_object():
    px, z, energy, delta, beta = 1e-6, 0.05, 20.0, 1e-7, 1e-10  # δ/β = 1000, phase-dominated
    n = 256
    y, x = np.indices((n, n)) - n / 2
    thickness = 20e-6 * np.exp(-(x**2 + y**2) / (2 * 6.0**2))  # a 20 µm Gaussian bump
    intensity = _fresnel_intensity(thickness, delta, beta, px, z, energy).astype(np.float32)
    mu = 4 * np.pi * beta / wavelength_m(energy)
    filtered = retrieve_phase(intensity, pixel_size_m=px, distance_m=z, energy_kev=energy,
                              delta_beta=delta / beta)
    assert filtered.dtype == np.float32 and filtered.shape == intensity.shape
    retrieved = -np.log(filtered.astype(np.float64)) / mu
    err = np.abs(retrieved - thickness).max() / thickness.max()
    assert err < 0.05
    # without phase retrieval the edge-enhanced intensity says nothing like the thickness
    assert np.abs(-np.log(intensity) / mu - thickness).max() / thickness.max() > 1


def test_support_radius_against_the_numerical_kernel():
    n = 1024
    for distance, tol in [(0.1, 1e-3), (0.02, 1e-3), (0.1, 1e-4)]:
        phys = {**PHYS, "distance_m": distance}
        length = kernel_length_px(**phys)
        assert length > 4  # the regime where the DFT kernel is the continuous one
        radius = kernel_support_px(**phys, tol=tol)
        assert radius == math.ceil({1e-3: 8.2305, 1e-4: 10.6527}[tol] * length + 1e-9)
        kernel = np.abs(np.fft.fftshift(sfft.irfft2(paganin_kernel((n, n), **phys), s=(n, n))))
        r = np.hypot(*(np.indices((n, n)) - n // 2))
        assert kernel[r > radius].sum() / kernel.sum() <= tol * 1.02  # outside R: below tol
        assert kernel[r > 0.9 * radius].sum() / kernel.sum() > tol  # R is not needlessly large


def test_matches_numpy_float64_with_edge_padding():
    rng = np.random.default_rng(5)
    proj = (0.8 + 0.1 * rng.random((2, 150, 133))).astype(np.float32)
    out = retrieve_phase(proj, **PHYS)
    pad = kernel_support_px(**PHYS, tol=PAD_TOL)
    ny, nx = (sfft.next_fast_len(s + 2 * pad, real=True) for s in proj.shape[1:])
    kernel = paganin_kernel((ny, nx), **PHYS).astype(np.float64)
    for i in range(2):
        padded = np.pad(proj[i].astype(np.float64), ((pad, ny - 150 - pad), (pad, nx - 133 - pad)), "edge")
        want = np.fft.irfft2(np.fft.rfft2(padded) * kernel, s=(ny, nx))[pad:pad + 150, pad:pad + 133]
        np.testing.assert_allclose(out[i], want, rtol=2e-6)
    # pad=False: the image is periodic
    periodic = np.fft.irfft2(np.fft.rfft2(proj[0].astype(np.float64)) * paganin_kernel((150, 133), **PHYS),
                             s=(150, 133))
    np.testing.assert_allclose(retrieve_phase(proj[0], pad=False, **PHYS), periodic, rtol=2e-6)


def test_block_of_rows_with_support_overlap_equals_whole_image():
    rng = np.random.default_rng(9)
    rows, cols = 400, 160
    y, x = np.mgrid[0:rows, 0:cols]
    img = np.ones((rows, cols))
    for _ in range(30):  # absorbing grains, some of them straddling the block edges
        cy, cx, rad = rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(4, 15)
        img -= 0.2 * ((y - cy) ** 2 + (x - cx) ** 2 < rad**2)
    img = np.clip(img, 0.3, 1) * (1 + 0.01 * rng.standard_normal(img.shape))
    img = img.astype(np.float32)
    phys = {**PHYS, "distance_m": 0.02}  # L ≈ 9 px: R = 74 rows (tol 1e-3), 95 (1e-4)
    whole = retrieve_phase(img, **phys)
    length = kernel_length_px(**phys)
    for tol in (1e-3, 1e-4):
        overlap = kernel_support_px(**phys, tol=tol)  # the planner's overlap rows
        # rows kept lie ≥ R from the cut, where the block has edge padding instead of data:
        # they can be off by at most the half-plane tail ½e^(−R/L) times the data's range
        bound = 0.5 * math.exp(-overlap / length) * float(img.max() - img.min())
        for b0, b1 in [(150, 250), (0, 100), (300, 400)]:
            lo, hi = max(0, b0 - overlap), min(rows, b1 + overlap)
            block = retrieve_phase(img[lo:hi], **phys)[b0 - lo:b1 - lo]
            err = float(np.abs(block - whole[b0:b1]).max() / np.abs(whole).max())
            assert err <= bound + 1e-6  # + float32 rounding
            if tol == 1e-4:  # R = 10.65 L: ½e^(−10.65) · range < 1e-5
                assert err < 1e-5


def test_refuses_nonfinite_and_bad_parameters():
    img = np.ones((10, 10), np.float32)
    img[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        retrieve_phase(img, **PHYS)
    with pytest.raises(ValueError, match="distance_m"):
        retrieve_phase(np.ones((4, 4), np.float32), **{**PHYS, "distance_m": 0.0})
    with pytest.raises(ValueError, match="tol"):
        kernel_support_px(**PHYS, tol=1.5)
