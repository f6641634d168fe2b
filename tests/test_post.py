"""Post-processing: rings, circular mask, output dtype, pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from teravox.errors import ParamError
from teravox.post.dtype import DtypeMapping, range_from_samples
from teravox.post.mask import circular_mask
from teravox.post.pyramid import downsample_mean, level_shapes
from teravox.post.rings import fft_stripe_filter, remove_rings

# ---------------------------------------------------------------------------- rings

N = 256  # algotom's filter cut-offs are in frequency bins: weaker on small slices
_y, _x = np.mgrid[:N, :N] - (N - 1) / 2
R = np.hypot(_x, _y)
INSIDE = R < 0.9 * N / 2


def smooth_slice() -> np.ndarray:
    """A smooth, ring-free slice (attenuation per pixel)."""
    img = 0.02 + 0.006 * np.exp(-((_x - 15) ** 2 + (_y + 8) ** 2) / (2 * 30.0**2))
    img += 0.004 * np.cos(_x / 25) * np.sin(_y / 20)
    return img.astype(np.float32)


def ring(radius: float, amplitude: float) -> np.ndarray:
    """A ring as FBP makes one from a stripe: sharp, with negative side lobes (zero mean)."""
    d = R - radius
    return (amplitude * (1 - d**2) * np.exp(-(d**2) / 2)).astype(np.float32)


@pytest.mark.parametrize("shape", [(256, 260), (255, 131)])
def test_fft_stripe_filter_is_algotoms(shape):
    from algotom.prep.removal import remove_stripe_based_fft

    rng = np.random.default_rng(2)
    polar = (2 + 0.1 * rng.standard_normal(shape) + np.linspace(0, 1, shape[1])).astype(np.float32)
    polar[:, shape[1] // 3] += 0.3  # a stripe
    for kw in ({}, {"u": 10, "n": 4, "v": 2}):
        ref = remove_stripe_based_fft(polar, **kw)
        assert np.abs(fft_stripe_filter(polar, **kw) - ref).max() <= 2e-6 * np.abs(ref).max()


def test_rings_threads_agree():
    slices = np.stack([smooth_slice() + ring(40, 0.002), smooth_slice() + ring(70, -0.003),
                       smooth_slice()])
    one = remove_rings(slices, "fft")
    np.testing.assert_array_equal(remove_rings(slices, "fft", workers=2), one)


@pytest.mark.parametrize("method, factor", [("fft", 4.0), ("wavelet-fft", 8.0)])
def test_planted_rings_are_removed(method, factor):
    base = smooth_slice()
    rings = ring(40.0, 0.004) + ring(71.0, -0.003)
    near = (np.abs(R - 40) < 4) | (np.abs(R - 71) < 4)
    out = remove_rings((base + rings)[None], method)[0]
    before = np.sqrt(np.mean(rings[near] ** 2))
    after = np.sqrt(np.mean((out - base)[near] ** 2))
    assert after < before / factor


@pytest.mark.parametrize("method", ["fft", "wavelet-fft"])
def test_ring_free_slice_is_changed_little(method):
    base = smooth_slice()
    out = remove_rings(base[None], method)[0]
    change = np.sqrt(np.mean((out - base)[INSIDE] ** 2))
    assert change < 0.005 * (base.max() - base.min())
    outside = R > N / 2 + 1
    np.testing.assert_array_equal(out[outside], base[outside])  # not zeroed: that is the mask's job


def test_rings_negative_values_survive():
    """algotom's fft method returns |result|; negative attenuation must not flip sign."""
    base = smooth_slice()
    img = (base + ring(40.0, 0.004))[None]
    shifted = remove_rings(img - 0.05, "fft")  # the slice is mostly negative
    assert shifted[0][INSIDE].max() < 0
    np.testing.assert_allclose(shifted + 0.05, remove_rings(img, "fft"), atol=1e-5)


def test_rings_off_sinogram_inplace_and_options():
    stack = np.stack([smooth_slice(), smooth_slice() + ring(50.0, 0.004)])
    assert remove_rings(stack, "off") is stack
    assert remove_rings(stack, "sinogram") is stack  # done before reconstruction instead
    copy = stack.copy()
    out = remove_rings(copy, "wavelet-fft", inplace=True, level=3, damping=2)
    assert out is copy and not np.array_equal(copy, stack)
    # slices are independent
    np.testing.assert_array_equal(out[1], remove_rings(stack[1:], "wavelet-fft", level=3, damping=2)[0])
    with pytest.raises(ParamError):
        remove_rings(stack, "median")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        remove_rings(stack, "fft", level=3)


def test_fine_detail_survives_ring_removal():
    """Small sharp discs without rings: only the ring estimate is subtracted, not a re-sampled slice."""
    rng = np.random.default_rng(3)
    img = np.zeros((N, N), np.float32)
    for _ in range(60):
        cx, cy = rng.uniform(-80, 80, 2)
        img[np.hypot(_x - cx, _y - cy) < rng.uniform(1.5, 5)] += 1.0
    for method in ("fft", "wavelet-fft"):
        change = remove_rings(img[None], method)[0] - img
        assert np.sqrt(np.mean(change[INSIDE] ** 2)) < 0.03  # discs have contrast 1
        assert np.abs(change).max() < 0.3


def test_rings_sinogram_option_uses_stripe_removal():
    stripes = pytest.importorskip("teravox.prep.stripes")
    assert hasattr(stripes, "remove_stripes")
    from teravox.post.rings import remove_rings_sinogram

    theta = np.linspace(0, np.pi, 360, endpoint=False)
    s = np.arange(N) - (N - 1) / 2
    sino = 0.02 * np.sqrt(np.clip(70.0**2 - (s - 30 * np.cos(theta[:, None])) ** 2, 0, None))
    sino += 0.01 * np.sqrt(np.clip(15.0**2 - (s + 40 * np.sin(theta[:, None])) ** 2, 0, None))
    sino = (sino + np.random.default_rng(0).normal(0, 0.002, sino.shape)).astype(np.float32)
    bad = sino.copy()
    bad[:, 140] += 0.05  # a detector pixel off by a constant: a stripe, a ring after FBP
    out = remove_rings_sinogram(bad[None], snr=3.0, size=21)[0]
    assert np.abs(out[:, 140] - sino[:, 140]).mean() < 0.3 * 0.05


# ---------------------------------------------------------------------------- mask


@pytest.mark.parametrize("n", [8, 9])
def test_circular_mask_geometry(n):
    slices = np.ones((2, n, n), np.float32)
    out = circular_mask(slices, 1.0, value=-1.0)
    assert out is not slices and (slices == 1).all()
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    inside = (yy - c) ** 2 + (xx - c) ** 2 <= (n / 2) ** 2
    np.testing.assert_array_equal(out[0] == 1, inside)
    np.testing.assert_array_equal(out[1][~inside], -1.0)
    np.testing.assert_array_equal(out[:, ::-1, :], out)  # symmetric about the centre
    np.testing.assert_array_equal(out[:, :, ::-1], out)
    assert out[0, 0, 0] == -1 and out[0, n // 2, 0] == 1  # corners out, edge middles in


def test_circular_mask_ratio_and_inplace():
    n = 64
    slices = np.ones((1, n, n), np.float32)
    half = circular_mask(slices, 0.5)
    kept = int(half.sum())
    assert abs(kept - np.pi * (0.5 * n / 2) ** 2) < 0.05 * kept
    out = circular_mask(slices, 0.5, inplace=True)
    assert out is slices and int(slices.sum()) == kept


# ---------------------------------------------------------------------------- dtype


def test_dtype_uint16_mapping_and_inverse():
    m = DtypeMapping("uint16", -1.0, 3.0)
    x = np.array([-5.0, -1.0, 0.0, 1.0, 3.0, 10.0, np.nan], np.float32)
    q = m.apply(x)
    assert q.dtype == np.uint16
    assert list(q) == [0, 0, round(65535 / 4), round(65535 / 2), 65535, 65535, 0]
    back = m.to_values(q[1:5])
    np.testing.assert_allclose(back, x[1:5], atol=4.0 / 65535)


def test_dtype_uint8_and_floats():
    q = DtypeMapping("uint8", 0.0, 1.0).apply(np.linspace(0, 1, 256, dtype=np.float32))
    np.testing.assert_array_equal(q, np.arange(256, dtype=np.uint8))
    x = np.array([1.5, -2.25, 1e6], np.float32)
    np.testing.assert_array_equal(DtypeMapping("float32").apply(x), x)
    h = DtypeMapping("float16").apply(x)
    assert h.dtype == np.float16 and np.isfinite(h).all() and h[0] == 1.5 and h[2] == 65504


def test_dtype_attrs_round_trip():
    for m in (DtypeMapping("uint16", -0.5, 2.0), DtypeMapping("uint8", 0.0, 1.0), DtypeMapping("float32")):
        attrs = m.to_attrs()
        assert all(v is not None for v in attrs.values())
        assert DtypeMapping.from_attrs(attrs) == m
    # as h5py hands attributes back
    m = DtypeMapping.from_attrs({"dtype": b"uint16", "vmin": np.float64(-0.5), "vmax": np.float64(2.0)})
    assert m == DtypeMapping("uint16", -0.5, 2.0)


def test_dtype_errors():
    with pytest.raises(ParamError):
        DtypeMapping("int32")
    with pytest.raises(ParamError):
        DtypeMapping("uint16")  # no range
    with pytest.raises(ParamError):
        DtypeMapping("uint8", 2.0, 1.0)


def test_range_from_samples():
    rng = np.random.default_rng(0)
    samples = rng.uniform(0, 1, 100_000).astype(np.float32)
    samples[:10] = [np.nan, np.inf, -np.inf, 50, -50, 40, -40, 30, -30, 20]  # outliers, non-finite
    low, high = range_from_samples(samples, (0.1, 99.9))
    assert 0 <= low < 0.01 and 0.99 < high <= 1
    assert range_from_samples(np.full(10, 2.0)) == (1.5, 2.5)
    with pytest.raises(ParamError):
        range_from_samples(samples, (50, 10))


def test_one_mapping_for_chunks_with_different_ranges():
    """Two chunks with different data ranges, one volume-wide mapping: equal values, equal codes."""
    rng = np.random.default_rng(1)
    chunk_a = rng.normal(0.0, 1.0, (4, 16, 16)).astype(np.float32)
    chunk_b = rng.normal(2.0, 0.5, (4, 16, 16)).astype(np.float32)
    chunk_a[0, 0, 0] = chunk_b[0, 0, 0] = 1.25  # a value both chunks hold
    samples = np.concatenate([chunk_a[:1], chunk_b[:1]])  # a few sample slices of the volume
    m = DtypeMapping("uint16", *range_from_samples(samples))
    qa, qb = m.apply(chunk_a), m.apply(chunk_b)
    assert qa[0, 0, 0] == qb[0, 0, 0]
    # and each chunk maps back to its own values, within a step (inside the range)
    step = (m.vmax - m.vmin) / 65535
    for chunk, q in ((chunk_a, qa), (chunk_b, qb)):
        ok = (chunk > m.vmin) & (chunk < m.vmax)
        assert np.abs(m.to_values(q)[ok] - chunk[ok]).max() <= step
    # what per-chunk ranges would have done: the same value, different codes
    qa_own = DtypeMapping("uint16", *range_from_samples(chunk_a)).apply(chunk_a)
    qb_own = DtypeMapping("uint16", *range_from_samples(chunk_b)).apply(chunk_b)
    assert qa_own[0, 0, 0] != qb_own[0, 0, 0]


# ---------------------------------------------------------------------------- pyramid


def test_level_shapes():
    assert level_shapes((100, 64, 65), 3) == [(50, 32, 33), (25, 16, 17), (13, 8, 9)]
    assert level_shapes((5, 5, 5), 0) == []


def test_downsample_mean_values_and_partial_cells():
    block = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    d = downsample_mean(block, 2)
    assert d.shape == (3, 2, 2) and d.dtype == np.float32
    assert d[0, 0, 0] == pytest.approx(block[:2, :2, :2].mean())
    assert d[2, 1, 1] == pytest.approx(block[4:, 2:, 2:].mean())  # the partial cell: 1 × 2 × 1
    assert d[1, 0, 1] == pytest.approx(block[2:4, :2, 2:].mean())
    np.testing.assert_array_equal(downsample_mean(block, 1), block)
    # integer volumes stay integer, rounded, without overflow in the sums
    u = np.full((4, 4, 4), 65535, np.uint16)
    u[0, 0, 0] = 65534
    du = downsample_mean(u, 4)
    assert du.dtype == np.uint16 and du.shape == (1, 1, 1) and du[0, 0, 0] == 65535


@pytest.mark.parametrize("shape", [(37, 20, 23), (32, 16, 16)])
def test_downsample_blockwise_equals_whole(shape):
    """The merge stage streams z-blocks whose height is a multiple of the largest factor."""
    rng = np.random.default_rng(2)
    vol = rng.random(shape, dtype=np.float32)
    levels = 3
    largest = 2**levels
    for k, f in enumerate((2, 4, 8)):
        whole = downsample_mean(vol, f)
        parts = [downsample_mean(vol[z:z + 2 * largest], f) for z in range(0, shape[0], 2 * largest)]
        blockwise = np.concatenate(parts)
        assert blockwise.shape == whole.shape == level_shapes(shape, levels)[k]
        np.testing.assert_array_equal(blockwise, whole)
