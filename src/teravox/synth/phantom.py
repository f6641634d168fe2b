"""An analytic 3-D phantom whose parallel-beam line integrals are exact.

The phantom is a sum of ellipsoids and cylinders along z, each with a constant
linear attenuation coefficient ``mu`` (1/pixel) and refractive index decrement
``delta`` (dimensionless).  Values *add* where shapes overlap, as in the
Shepp-Logan phantom, so a cavity is a shape with a negative ``mu``.

Geometry (docs/architecture.md): a slice ``f(x, y)`` at height ``z`` projects to

    p(s, θ) = ∫∫ f(x, y) δ(x cos θ + y sin θ − s) dx dy,

with ``s = column − centre`` and ``x, y`` in pixels relative to the rotation
axis.  ``z`` is in pixels relative to the detector's middle row and grows with
the row index: detector row ``r`` of ``R`` rows sits at ``z = r − (R − 1)/2``,
so slice ``volume[i]`` is row ``i`` of every projection.

For an ellipse of semi-axes (a, b) rotated by φ about z and centred (x0, y0):

    r² = a² cos²(θ − φ) + b² sin²(θ − φ),   s' = s − (x0 cos θ + y0 sin θ),
    p  = 2ab·sqrt(r² − s'²)/r²   for |s'| < r,

and an ellipsoid cut at height z is that ellipse with a, b scaled by
``sqrt(1 − ((z − z0)/c)²)``.  No discretised projector is involved anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from teravox.errors import ParamError

_QUANTITIES = ("mu", "delta")

#: Attenuation scale of :func:`default_phantom`: ``mu_scale = _MU_K / n`` makes the
#: longest path through the default phantom about 0.93 (transmission ≈ 0.40) at any n.
_MU_K = 1.05


@dataclass
class Shape:
    """An ellipsoid (finite ``c``) or a cylinder along z (``c = inf``).

    ``center`` (x, y, z) and ``semi_axes`` (a, b, c) are in pixels; ``angle`` is the
    rotation about z in radians; ``mu`` (1/pixel) and ``delta`` (dimensionless) add
    to those of overlapping shapes.
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    angle: float
    mu: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        self.center = tuple(float(v) for v in self.center)  # type: ignore[assignment]
        self.semi_axes = tuple(float(v) for v in self.semi_axes)  # type: ignore[assignment]
        if len(self.center) != 3 or len(self.semi_axes) != 3:
            raise ParamError(f"Shape: center and semi_axes need 3 values, got {self.center}, {self.semi_axes}")
        if not all(v > 0 for v in self.semi_axes):
            raise ParamError(f"Shape: semi-axes must be positive pixels, got {self.semi_axes}")
        self.angle, self.mu, self.delta = float(self.angle), float(self.mu), float(self.delta)

    @property
    def is_cylinder(self) -> bool:
        """True for a cylinder along z (infinite third semi-axis)."""
        return math.isinf(self.semi_axes[2])

    def k2(self, z: np.ndarray) -> np.ndarray:
        """Squared scale of the cross-section at heights ``z`` (pixels); ≤ 0 outside."""
        z = np.asarray(z, dtype=np.float64)
        if self.is_cylinder:
            return np.ones_like(z)
        return 1.0 - ((z - self.center[2]) / self.semi_axes[2]) ** 2

    def half_extent_xy(self) -> tuple[float, float]:
        """Half-widths (pixels) of the widest cross-section's bounding box in x and y."""
        a, b, _ = self.semi_axes
        c, s = math.cos(self.angle), math.sin(self.angle)
        return math.hypot(a * c, b * s), math.hypot(a * s, b * c)


def default_mu_scale(n: int) -> float:
    """``mu_scale`` (1/pixel) that :func:`default_phantom` uses for an n-pixel field of view."""
    return _MU_K / int(n)


def _offsets(supersample: int) -> np.ndarray:
    """Centres of ``supersample`` equal sub-intervals of a unit pixel, relative to its centre."""
    if int(supersample) != supersample or supersample < 1:
        raise ParamError(f"supersample must be a positive integer, got {supersample!r}")
    m = int(supersample)
    return (np.arange(m) + 0.5) / m - 0.5


def _check_quantity(quantity: str) -> None:
    if quantity not in _QUANTITIES:
        raise ParamError(f"quantity must be one of {_QUANTITIES}, got {quantity!r}")


def _shadow(shape: Shape, theta: np.ndarray, cos_t: np.ndarray, sin_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per angle: the squared half-width of an ellipse's shadow on the detector and the
    column of its centre (pixels), for its cross-section at full width (scaled by k² per height)."""
    a, b, _ = shape.semi_axes
    x0, y0, _ = shape.center
    r2 = (a * np.cos(theta - shape.angle)) ** 2 + (b * np.sin(theta - shape.angle)) ** 2
    return r2, x0 * cos_t + y0 * sin_t


def _index_range(values: np.ndarray, lo: float, hi: float, is_sorted: bool) -> slice:
    """Slice of ``values`` that holds every value in (lo, hi); everything when unsorted."""
    if not is_sorted:
        return slice(0, len(values))
    return slice(int(np.searchsorted(values, lo, "right")), int(np.searchsorted(values, hi, "left")))


@dataclass
class Phantom:
    """A sum of :class:`Shape` objects with exact line integrals."""

    shapes: list[Shape] = field(default_factory=list)

    # -- projections -------------------------------------------------------------------
    def line_integrals(self, theta: np.ndarray, s: np.ndarray, z: np.ndarray,
                       supersample: int = 1, quantity: str = "mu") -> np.ndarray:
        """Exact line integrals, shape (len(theta), len(z), len(s)), float64.

        ``theta`` in radians, ``s`` (detector coordinate, column − centre) and ``z``
        (height) in pixels.  The result is in units of ``quantity`` × pixel
        (attenuation line integral for ``"mu"``, path-integrated δ in pixels for
        ``"delta"``).  ``supersample > 1`` averages over ``supersample²`` positions
        spread over each detector pixel's area (s and z).
        """
        _check_quantity(quantity)
        theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        offs = _offsets(supersample)
        out = np.zeros((theta.size, z.size, s.size), dtype=np.float64)
        if out.size == 0:
            return out
        # Sorted coordinates (the usual case) let each shape touch only the columns
        # and rows it can reach, which is what makes large scans affordable.
        s_sorted = bool(np.all(np.diff(s) > 0))
        z_sorted = bool(np.all(np.diff(z) > 0))
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        for shape in self.shapes:
            value = getattr(shape, quantity)
            if value == 0.0:
                continue
            a, b, _ = shape.semi_axes
            r2, sc = _shadow(shape, theta, cos_t, sin_t)            # (nθ,) each
            weight = (2.0 * a * b * value / r2) / offs.size ** 2    # (nθ,)
            r_max = math.sqrt(float(r2.max()))
            s_lo, s_hi = float((sc - r_max).min()), float((sc + r_max).max())
            # A cylinder is the same at every height: one 2-D profile serves all rows.
            z_offsets = offs[:1] if shape.is_cylinder else offs
            z_repeat = offs.size if shape.is_cylinder else 1
            for dz in z_offsets:
                k2 = shape.k2(z + dz)
                inside = np.nonzero(k2 > 0)[0]
                if inside.size == 0:
                    continue
                zs = slice(int(inside[0]), int(inside[-1]) + 1) if z_sorted else slice(0, z.size)
                k2z = np.clip(k2[zs], 0.0, None)
                for ds in offs:
                    cs = _index_range(s + ds, s_lo, s_hi, s_sorted)
                    if cs.stop <= cs.start:
                        continue
                    sp2 = (s[cs][None, :] + ds - sc[:, None]) ** 2      # (nθ, ncs)
                    if shape.is_cylinder:
                        prof = r2[:, None] - sp2
                        np.maximum(prof, 0.0, out=prof)
                        np.sqrt(prof, out=prof)
                        prof *= (weight * z_repeat)[:, None]
                        out[:, zs, cs] += prof[:, None, :]
                    else:
                        tmp = (k2z[None, :, None] * r2[:, None, None]) - sp2[:, None, :]
                        np.maximum(tmp, 0.0, out=tmp)
                        np.sqrt(tmp, out=tmp)
                        tmp *= weight[:, None, None]
                        out[:, zs, cs] += tmp
        return out

    def line_integrals_at(self, theta: np.ndarray, s: np.ndarray, z: np.ndarray,
                          quantity: str = "mu") -> np.ndarray:
        """Exact line integrals at detector points given one by one: ``s`` and ``z`` of the
        same shape (pixels, e.g. the rows × columns of a detector whose rotation axis is
        tilted), for each angle of ``theta`` (radians): shape ``(len(theta), *s.shape)``."""
        _check_quantity(quantity)
        theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
        s = np.asarray(s, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        if s.shape != z.shape:
            raise ParamError(f"s and z must have the same shape, got {s.shape} and {z.shape}")
        out = np.zeros((theta.size, *s.shape), dtype=np.float64)
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        for shape in self.shapes:
            value = getattr(shape, quantity)
            if value == 0.0:
                continue
            a, b, _ = shape.semi_axes
            r2, sc = _shadow(shape, theta, cos_t, sin_t)
            k2 = np.clip(shape.k2(z), 0.0, None)
            for i in range(theta.size):
                inner = k2 * r2[i] - (s - sc[i]) ** 2
                np.maximum(inner, 0.0, out=inner)
                out[i] += (2.0 * a * b * value / r2[i]) * np.sqrt(inner)
        return out

    # -- ground truth ------------------------------------------------------------------
    def slice(self, z: float, n: int, supersample: int = 1, quantity: str = "mu") -> np.ndarray:
        """Ground-truth slice at height ``z`` (pixels) on the n × n grid, float32.

        ``img[iy, ix]`` is at ``x = ix − (n − 1)/2``, ``y = iy − (n − 1)/2``; values in
        ``quantity`` per pixel.  ``supersample > 1`` averages ``supersample³`` points
        spread over each voxel (x, y and z).
        """
        _check_quantity(quantity)
        n = int(n)
        if n < 1:
            raise ParamError(f"slice size must be positive, got {n}")
        offs = _offsets(supersample)
        img = np.zeros((n, n), dtype=np.float64)
        half = (n - 1) / 2.0
        for shape in self.shapes:
            value = getattr(shape, quantity)
            if value == 0.0:
                continue
            a, b, _ = shape.semi_axes
            x0, y0, _ = shape.center
            hx, hy = shape.half_extent_xy()
            # Bounding box in pixel indices, widened by half a pixel for sub-samples.
            ix0 = max(0, int(math.floor(x0 - hx + half - 0.5)))
            ix1 = min(n, int(math.ceil(x0 + hx + half + 0.5)) + 1)
            iy0 = max(0, int(math.floor(y0 - hy + half - 0.5)))
            iy1 = min(n, int(math.ceil(y0 + hy + half + 0.5)) + 1)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            xs = np.arange(ix0, ix1) - half - x0
            ys = np.arange(iy0, iy1) - half - y0
            ca, sa = math.cos(shape.angle), math.sin(shape.angle)
            z_offsets = offs[:1] if shape.is_cylinder else offs
            z_weight = 1.0 if shape.is_cylinder else 1.0 / offs.size
            acc = np.zeros((iy1 - iy0, ix1 - ix0), dtype=np.float64)
            for dz in z_offsets:
                k2 = float(shape.k2(np.array(z + dz)))
                if k2 <= 0.0:
                    continue
                for dy in offs:
                    yy = (ys + dy)[:, None]
                    for dx in offs:
                        xx = (xs + dx)[None, :]
                        u = (xx * ca + yy * sa) / a
                        v = (yy * ca - xx * sa) / b
                        acc += z_weight * ((u * u + v * v) < k2)
            img[iy0:iy1, ix0:ix1] += value * acc / offs.size ** 2
        return img.astype(np.float32)

    def volume(self, z: np.ndarray, n: int, supersample: int = 1,
               quantity: str = "mu") -> np.ndarray:
        """Ground-truth volume (len(z), n, n), float32: :meth:`slice` at each height (pixels)."""
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        vol = np.empty((z.size, int(n), int(n)), dtype=np.float32)
        for i, zi in enumerate(z):
            vol[i] = self.slice(float(zi), n, supersample, quantity)
        return vol

    # -- helpers -----------------------------------------------------------------------
    def with_delta(self, delta_per_mu: float) -> Phantom:
        """A copy whose shapes have ``delta = delta_per_mu · mu`` (mu in 1/pixel)."""
        return Phantom([replace(sh, delta=delta_per_mu * sh.mu) for sh in self.shapes])

    def scaled_mu(self, factor: float) -> Phantom:
        """A copy with every ``mu`` (and ``delta``) multiplied by ``factor``."""
        return Phantom([replace(sh, mu=sh.mu * factor, delta=sh.delta * factor)
                        for sh in self.shapes])

    # -- serialisation -----------------------------------------------------------------
    def to_json(self) -> str:
        """JSON text of the phantom; an infinite semi-axis (cylinder) is written as null."""
        shapes = []
        for sh in self.shapes:
            d = asdict(sh)
            # JSON has no infinity; null keeps the file readable by any JSON parser.
            d["semi_axes"] = [None if math.isinf(v) else v for v in sh.semi_axes]
            d["center"] = list(sh.center)
            shapes.append(d)
        return json.dumps({"type": "teravox.synth.Phantom", "version": 1, "shapes": shapes})

    @classmethod
    def from_json(cls, text: str | bytes) -> Phantom:
        """Read what :meth:`to_json` wrote (str or bytes, as h5py returns it)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        try:
            doc = json.loads(text)
            shapes = [
                Shape(center=tuple(d["center"]),
                      semi_axes=tuple(math.inf if v is None else v for v in d["semi_axes"]),
                      angle=d["angle"], mu=d["mu"], delta=d.get("delta", 0.0))
                for d in doc["shapes"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ParamError(f"not a teravox phantom JSON: {exc}") from exc
        return cls(shapes)


def default_phantom(n: int, rows: int | None = None, mu_scale: float | None = None) -> Phantom:
    """The standard test object for an n-pixel-wide field of view and ``rows`` rows.

    A thin-walled cylindrical container (radius 0.83·n/2) filled with a light
    material, holding ellipsoids and cylinders of four other materials, from a
    cavity and ~1.5-pixel spheres up to a third of the radius.  ``mu_scale``
    (1/pixel per unit of relative attenuation) defaults to ``1.05/n``, which keeps
    the minimum transmission near 0.4 whatever n.  Deterministic.
    """
    n = int(n)
    if n < 8:
        raise ParamError(f"default_phantom needs n >= 8 pixels, got {n}")
    rows = n if rows is None else int(rows)
    if rows < 1:
        raise ParamError(f"default_phantom needs rows >= 1, got {rows}")
    k = default_mu_scale(n) if mu_scale is None else float(mu_scale)
    u = n / 2.0          # radius of the field of view, pixels
    h = rows / 2.0       # half height, pixels
    inf = math.inf
    # Relative attenuation of the materials (multiplied by k below).
    wall, fill, bone, soft, dense, grain = 1.0, 0.25, 1.6, 0.5, 3.0, 1.2
    r_out = 0.83 * u
    t_wall = max(1.5, 0.035 * u)
    # Ellipsoid half-heights relative to the z extent, but never thinner than 1 px.
    def zc(frac: float) -> float:
        return max(1.0, frac * h)

    # (x, y, z, a, b, c, angle, relative mu): mu is the *change* from what surrounds it.
    spec: list[tuple[float, float, float, float, float, float, float, float]] = [
        (0, 0, 0, r_out, r_out, inf, 0.0, wall),                                  # container
        (0, 0, 0, r_out - t_wall, r_out - t_wall, inf, 0.0, fill - wall),         # its content
        (-0.28 * u, 0.12 * u, 0.0, 0.30 * u, 0.18 * u, zc(0.95), 0.5, bone - fill),
        (0.25 * u, -0.25 * u, 0.05 * h, 0.22 * u, 0.15 * u, zc(0.85), -0.7, soft - fill),
        (0.27 * u, -0.24 * u, 0.05 * h, 0.08 * u, 0.05 * u, zc(0.45), -0.7, -soft),  # cavity
        (0.35 * u, 0.35 * u, 0.0, 0.08 * u, 0.08 * u, inf, 0.0, dense - fill),      # rod
        (-0.05 * u, -0.50 * u, 0.0, 0.16 * u, 0.05 * u, inf, 0.3, grain - fill),    # flat rod
        (-0.55 * u, -0.20 * u, -0.45 * h, 0.10 * u, 0.10 * u, zc(0.3), 0.0, grain - fill),
        (0.05 * u, 0.30 * u, 0.45 * h, 0.09 * u, 0.06 * u, zc(0.3), 1.0, bone - fill),
    ]
    # A line of small spheres (a few pixels at small n) to probe resolution.
    for i, frac in enumerate((0.025, 0.035, 0.05, 0.07)):
        r = max(1.5, frac * u)
        x = (-0.10 + 0.14 * i) * u + 0.05 * u
        spec.append((x, 0.58 * u, 0.0, r, r, min(r, max(1.0, 0.9 * h)), 0.0, dense - fill))
    shapes = [Shape((x, y, z), (a, b, c), ang, mu_rel * k) for x, y, z, a, b, c, ang, mu_rel in spec]
    return Phantom(shapes)
