"""Rotation-centre search on exact synthetic sinograms with a known centre."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.errors import ParamError
from teravox.recon.center import find_center, find_center_180, find_center_360


def disc_sino(theta: np.ndarray, n_cols: int, center: float, discs) -> np.ndarray:
    """Exact line integrals of discs (x0, y0, r, mu): 2·mu·√(r² − s'²), s = column − centre."""
    s = np.arange(n_cols) - center
    out = np.zeros((theta.size, n_cols))
    for x0, y0, r, mu in discs:
        sp = s - (x0 * np.cos(theta[:, None]) + y0 * np.sin(theta[:, None]))
        out += mu * 2 * np.sqrt(np.clip(r**2 - sp**2, 0, None))
    return out.astype(np.float32)


def noisy(sino: np.ndarray, seed: int, level: float = 0.005) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (sino + rng.normal(0, level * sino.max(), sino.shape)).astype(np.float32)


# off-centre objects, in pixels about the rotation axis
DISCS_A = [(20.0, -10.0, 40.0, 0.01), (-30.0, 25.0, 12.0, 0.03), (45.0, 30.0, 8.0, 0.05)]
DISCS_B = [(-15.0, -20.0, 35.0, 0.02), (30.0, 10.0, 10.0, 0.04)]


def test_180_off_centre():
    # enough angles for the width (≥ π/2·n): with fewer, Vo's method drifts by up to
    # half a pixel on this phantom (0.5 px at 180 angles, 0.2 px at 360)
    n = 160
    truth = n / 2 + 7.3
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    sinos = np.stack([noisy(disc_sino(theta, n, truth, d), i) for i, d in enumerate((DISCS_A, DISCS_B))])
    found = find_center(sinos, theta=theta)
    assert abs(found - truth) < 0.5
    # the 2-D form and the explicit 180° entry point agree
    assert find_center_180(sinos[0], search_radius=20) == pytest.approx(
        find_center(sinos[:1], search_radius=20), abs=1e-9)


def test_180_search_window_is_honoured():
    """A window that excludes the truth cannot return it: the search really is bounded."""
    n = 160
    truth = n / 2 + 7.3
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sino = noisy(disc_sino(theta, n, truth, DISCS_A), 0)
    with pytest.warns(UserWarning, match="out of the searching range"):  # algotom says so
        found = find_center(sino, search_radius=4.0, guess=n / 2 - 10)
    # algotom's fine search may step its radius (4 px) past the coarse window
    assert found <= n / 2 - 10 + 4.0 + 4.0


def test_180_uses_only_the_first_half_of_a_full_360_scan():
    n = 160
    truth = n / 2 - 5.6
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    sino = noisy(disc_sino(theta, n, truth, DISCS_A), 1)
    assert abs(find_center(sino, theta=theta, search_radius=20) - truth) < 0.5


@pytest.mark.parametrize("side", ["right", "left"])
def test_360_half_acquisition(side):
    """Axis near one edge; the object spans the whole field (radius ≈ the axis' reach)."""
    n = 200
    reach = 175.4  # distance from the axis to the far edge: the axis 24.6 px from the near edge
    truth = reach if side == "right" else n - 1 - reach
    discs = [(0.0, 0.0, 165.0, 0.005), (60.0, -40.0, 25.0, 0.02), (-110.0, 30.0, 18.0, 0.03),
             (20.0, 120.0, 10.0, 0.04), (-40.0, -60.0, 30.0, 0.01)]
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    sinos = np.stack([noisy(disc_sino(theta, n, truth, discs), seed) for seed in (2, 3)])
    centre, found_side = find_center_360(sinos)
    assert found_side == side
    assert abs(centre - truth) < 0.5
    # the dispatcher: auto, the side given, and the side taken from a guess
    assert find_center(sinos, half_acquisition=True) == pytest.approx(centre)
    assert abs(find_center(sinos, half_acquisition=side) - truth) < 0.5
    assert abs(find_center(sinos, half_acquisition="auto", guess=truth + 3) - truth) < 0.5


def test_360_without_noise_and_with_theta():
    """Exact-zero air (noise-free synthetic data) and angles given with the 360° end point."""
    n = 200
    truth = 170.0
    discs = [(0.0, 0.0, 150.0, 0.005), (60.0, -40.0, 25.0, 0.02), (-100.0, 30.0, 18.0, 0.03)]
    theta = np.linspace(0, 2 * np.pi, 721)
    sino = disc_sino(theta, n, truth, discs)
    centre, side = find_center_360(sino, theta=theta)
    assert side == "right" and abs(centre - truth) < 0.5


def test_bad_half_acquisition_value():
    with pytest.raises(ParamError):
        find_center(np.zeros((1, 10, 50), np.float32), half_acquisition="middle")  # type: ignore[arg-type]
