r"""Procedural 3-D shape point clouds: points sampled uniformly on the surfaces of simple solids.

Seven classes (:data:`SHAPE_CLASSES`): ``"box"``, ``"cylinder"``, ``"cone"``, ``"torus"``,
``"ellipsoid"``, ``"pyramid"`` and ``"capsule"``, each with random proportions, for
classification under rotations (e.g. ``examples/pointcloud_canonical.py``). Nothing is stored or
downloaded: clouds are sampled in vectorised torch from a seed.

Every shape is drawn *upright*: axis-aligned, its axis of revolution (cylinder, cone, torus,
capsule) or apex (cone, pyramid) along ``+z``, and centred on the centroid of its surface, so
the mean of the sampled points is close to the origin and rotations about the origin move the
shape in place. Points are uniform with respect to surface area (faces and caps are chosen in
proportion to their areas; curved patches use exact inverse transforms or rejection sampling).

The proportions are random so that no class is told apart by its size: each shape is first
drawn with independent aspect ratios, then rescaled so that the root-mean-square distance of
its points from the origin is uniform in ``[0.5, 0.8]``, whatever the class. Elongated or flat
boxes, ellipsoids, cylinders and capsules overlap in their spread along every axis, so that
classifying needs the shape of the surface, not only its extent; upright, the axis-aligned
orientation makes the task easy, rotated it is not.

The shape of class ``k`` is fully described by its three ``dims`` (:func:`sample_surface`):

============  ==========================================================================
class         ``dims``
============  ==========================================================================
box           half-extents ``(a, b, c)`` along ``x, y, z``
cylinder      ``(r, h, 0)``: radius, half-height
cone          ``(r, H, 0)``: base radius, height (apex towards ``+z``)
torus         ``(R, r, 0)``: major radius (centre of the tube), minor radius, ``r < R``
ellipsoid     semi-axes ``(a, b, c)`` along ``x, y, z``
pyramid       ``(a, b, H)``: half-widths of the rectangular base, height (apex towards ``+z``)
capsule       ``(r, h, 0)``: radius, half-length of the cylindrical part
============  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from geolayers._checks import check_positive_int

__all__ = ["SHAPE_CLASSES", "ShapeClouds", "make_shapes", "sample_surface", "shape_centroid_z"]

#: The class names, in label order.
SHAPE_CLASSES = ("box", "cylinder", "cone", "torus", "ellipsoid", "pyramid", "capsule")

#: Range of the root-mean-square distance of a cloud's points from the origin (its centroid),
#: to which every shape is rescaled (see the module docstring).
_RMS = (0.5, 0.8)

# Ranges of the raw proportions, before rescaling; columns are the three dims. The lower ends
# keep every shape at least ~1/3 as thick as it is long, so that thin slabs and needles (whose
# class is ambiguous from 256 points) stay rare; the torus tube stays under 0.6 R so that the
# surface does not intersect itself.
_RAW_DIMS: dict[str, tuple[tuple[float, float], ...]] = {
    "box": ((0.3, 1.0), (0.3, 1.0), (0.3, 1.0)),
    "cylinder": ((0.3, 1.0), (0.3, 1.0), (0.0, 0.0)),
    "cone": ((0.3, 1.0), (0.6, 2.0), (0.0, 0.0)),
    "torus": ((1.0, 1.0), (0.2, 0.6), (0.0, 0.0)),  # second column is r / R
    "ellipsoid": ((0.3, 1.0), (0.3, 1.0), (0.3, 1.0)),
    "pyramid": ((0.3, 1.0), (0.3, 1.0), (0.6, 2.0)),
    "capsule": ((0.3, 0.8), (0.2, 1.0), (0.0, 0.0)),
}


class ShapeClouds(NamedTuple):
    """Sampled shape clouds and what they were drawn from.

    Attributes:
        points: ``(M, N, 3)`` points on the surfaces, upright and centred.
        labels: ``(M,)`` long indices into :attr:`class_names`.
        dims: ``(M, 3)`` the proportions of every shape (module docstring), float64, before
            noise; ``sample_surface(class_names[labels[i]], dims[i:i+1], N)`` samples the same
            surface again.
        class_names: the names of the classes, in label order.
    """

    points: Tensor
    labels: Tensor
    dims: Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:  # type: ignore[override]
        return self.points.shape[0]


# -- sampling primitives ---------------------------------------------------------------------


def _uniform(shape: tuple[int, ...], gen: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float64)


def _disk(radius: Tensor, z: Tensor, b: int, n: int, gen: torch.Generator | None) -> Tensor:
    """Uniform points ``(B, N, 3)`` on horizontal disks of ``radius: (B, 1)`` at height ``z``.

    ``rho = R sqrt(u)`` makes the density uniform in area (the ring at ``rho`` has length
    proportional to ``rho``).
    """
    rho = radius * _uniform((b, n), gen).sqrt()
    phi = 2 * math.pi * _uniform((b, n), gen)
    return torch.stack([rho * phi.cos(), rho * phi.sin(), z.expand(b, n)], dim=-1)


def _unit_vectors(b: int, n: int, gen: torch.Generator | None) -> Tensor:
    """Uniform directions ``(B, N, 3)`` on the unit sphere (normalised Gaussians)."""
    v = torch.randn(b, n, 3, generator=gen, dtype=torch.float64)
    # A Gaussian vector of norm < 1e-12 has probability ~1e-36; the clamp only guards the divide.
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _triangle(p0: Tensor, p1: Tensor, p2: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    """Uniform points ``(B, N, 3)`` on triangles with corners ``(B, 3)``.

    A uniform point of the unit square folded onto its lower-left half is uniform on the
    triangle ``u + v <= 1``, which an affine map sends onto any triangle.
    """
    b = p0.shape[0]
    u, v = _uniform((b, n, 1), gen), _uniform((b, n, 1), gen)
    fold = u + v > 1
    u, v = torch.where(fold, 1 - u, u), torch.where(fold, 1 - v, v)
    return p0[:, None] + u * (p1 - p0)[:, None] + v * (p2 - p0)[:, None]


def _pick_parts(parts: list[Tensor], areas: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    """Mix ``parts`` (each ``(B, N, 3)``, uniform on one piece of the surface) by area.

    Each point independently picks its piece with probability proportional to ``areas: (B,
    P)``; all pieces are sampled for every point and the chosen one kept, which costs a few
    times more arithmetic than sampling each piece only where needed but stays vectorised and
    consumes the generator in an order that does not depend on the outcome.
    """
    which = torch.multinomial(areas, n, replacement=True, generator=gen)  # (B, N)
    stacked = torch.stack(parts, dim=2)  # (B, N, P, 3)
    return stacked.gather(2, which[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)


def _rejection(
    propose: Callable[[int], tuple[Tensor, Tensor]], b: int, n: int, gen: torch.Generator | None
) -> Tensor:
    """``n`` accepted points per cloud from ``propose(k) -> (candidates (B, k, 3), p (B, k))``
    with acceptance probabilities ``p`` in ``[0, 1]``.

    Accepted candidates are kept in proposal order; rounds repeat until every cloud is full.
    """
    out = torch.empty(b, n, 3, dtype=torch.float64)
    count = torch.zeros(b, dtype=torch.long)
    while bool((count < n).any()):
        cand, p = propose(2 * n)
        accept = _uniform(p.shape, gen) < p
        # Slot of each accepted candidate in its cloud: after the ones already filled.
        slot = accept.long().cumsum(dim=1) - 1 + count[:, None]
        keep = accept & (slot < n)
        rows = torch.arange(b)[:, None].expand_as(keep)
        out[rows[keep], slot[keep]] = cand[keep]
        count = (count + accept.sum(dim=1)).clamp_max(n)
    return out


# -- the shapes --------------------------------------------------------------------------------


def _box(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    a = d[:, :3]
    # Six faces: face 2k + s lies at x_k = (2s - 1) a_k; its area is 4 times the product of
    # the other two half-extents.
    cube = (2 * _uniform((b, n, 3), gen) - 1) * a[:, None]
    parts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            face = cube.clone()
            face[..., axis] = sign * a[:, axis : axis + 1]
            parts.append(face)
    others = torch.stack([a[:, 1] * a[:, 2], a[:, 0] * a[:, 2], a[:, 0] * a[:, 1]], dim=1)
    return _pick_parts(parts, 4 * others.repeat_interleave(2, dim=1), n, gen)


def _cylinder(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    r, h = d[:, 0:1], d[:, 1:2]
    phi = 2 * math.pi * _uniform((b, n), gen)
    z = h * (2 * _uniform((b, n), gen) - 1)
    side = torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)
    top, bottom = _disk(r, h, b, n, gen), _disk(r, -h, b, n, gen)
    cap = math.pi * r.square()
    areas = torch.cat([2 * math.pi * r * 2 * h, cap, cap], dim=1)
    return _pick_parts([side, top, bottom], areas, n, gen)


def _cone_areas(r: Tensor, height: Tensor) -> tuple[Tensor, Tensor]:
    """Lateral area ``pi r s`` (slant ``s``) and base area ``pi r^2``."""
    return math.pi * r * torch.sqrt(r.square() + height.square()), math.pi * r.square()


def _cone(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    r, height = d[:, 0:1], d[:, 1:2]
    # On the lateral surface the circle at fraction t of the way from the apex has length
    # proportional to t, so t = sqrt(u) is uniform in area.
    t = _uniform((b, n), gen).sqrt()
    phi = 2 * math.pi * _uniform((b, n), gen)
    side = torch.stack([t * r * phi.cos(), t * r * phi.sin(), height * (1 - t)], dim=-1)
    base = _disk(r, torch.zeros_like(r), b, n, gen)
    lateral, base_area = _cone_areas(r, height)
    points = _pick_parts([side, base], torch.cat([lateral, base_area], dim=1), n, gen)
    points[..., 2] -= shape_centroid_z("cone", d)[:, None]
    return points


def _pyramid_areas(a: Tensor, b_: Tensor, height: Tensor) -> Tensor:
    """Areas ``(B, 5)``: the faces at ``y = -b, +b``, at ``x = -a, +a``, and the base."""
    front = a * torch.sqrt(height.square() + b_.square())  # base edge 2a, slant height
    side = b_ * torch.sqrt(height.square() + a.square())
    return torch.cat([front, front, side, side, 4 * a * b_], dim=1)


def _pyramid(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    a, b_, height = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    zero = torch.zeros_like(a)
    apex = torch.cat([zero, zero, height], dim=1)

    def corner(sx: float, sy: float) -> Tensor:
        return torch.cat([sx * a, sy * b_, zero], dim=1)

    faces = [
        _triangle(corner(-1, -1), corner(1, -1), apex, n, gen),
        _triangle(corner(-1, 1), corner(1, 1), apex, n, gen),
        _triangle(corner(-1, -1), corner(-1, 1), apex, n, gen),
        _triangle(corner(1, -1), corner(1, 1), apex, n, gen),
    ]
    u = 2 * _uniform((b, n, 2), gen) - 1
    base = torch.cat(
        [u[..., :1] * a[:, None], u[..., 1:] * b_[:, None], zero.expand(b, n)[..., None]], -1
    )
    points = _pick_parts([*faces, base], _pyramid_areas(a, b_, height), n, gen)
    points[..., 2] -= shape_centroid_z("pyramid", d)[:, None]
    return points


def _torus(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    big, small = d[:, 0:1], d[:, 1:2]

    def propose(k: int) -> tuple[Tensor, Tensor]:
        # (phi, theta) uniform, accepted with the area element (R + r cos theta) / (R + r).
        phi = 2 * math.pi * _uniform((b, k), gen)
        theta = 2 * math.pi * _uniform((b, k), gen)
        ring = big + small * theta.cos()
        cand = torch.stack([ring * phi.cos(), ring * phi.sin(), small * theta.sin()], dim=-1)
        return cand, ring / (big + small)

    return _rejection(propose, b, n, gen)


def _ellipsoid(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    axes = d[:, None, :3]
    # The map u -> axes * u from the unit sphere stretches the area element at u by
    # |(b c u_x, a c u_y, a b u_z)|; accepting with that over its maximum (the product of the
    # two largest semi-axes) makes the accepted points uniform in area on the ellipsoid.
    cross = torch.stack(
        [axes[..., 1] * axes[..., 2], axes[..., 0] * axes[..., 2], axes[..., 0] * axes[..., 1]], -1
    )
    top = cross.amax(dim=-1)

    def propose(k: int) -> tuple[Tensor, Tensor]:
        u = _unit_vectors(b, k, gen)
        return axes * u, (cross * u).norm(dim=-1) / top

    return _rejection(propose, b, n, gen)


def _capsule(d: Tensor, n: int, gen: torch.Generator | None) -> Tensor:
    b = d.shape[0]
    r, h = d[:, 0:1], d[:, 1:2]
    phi = 2 * math.pi * _uniform((b, n), gen)
    z = h * (2 * _uniform((b, n), gen) - 1)
    side = torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)
    # Hemispheres: uniform directions folded onto the upper (lower) half, radius r, moved to
    # the ends of the cylinder.
    u = _unit_vectors(b, n, gen)
    shift = torch.cat([torch.zeros(b, 2, dtype=d.dtype), h], dim=1)[:, None]
    folded = torch.cat([u[..., :2], u[..., 2:].abs()], dim=-1) * r[:, None]
    top = folded + shift
    bottom = folded * torch.tensor([1.0, 1.0, -1.0], dtype=d.dtype) - shift
    half_sphere = 2 * math.pi * r.square()
    areas = torch.cat([2 * math.pi * r * 2 * h, half_sphere, half_sphere], dim=1)
    return _pick_parts([side, top, bottom], areas, n, gen)


_SAMPLERS: dict[str, Callable[[Tensor, int, torch.Generator | None], Tensor]] = {
    "box": _box,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
    "ellipsoid": _ellipsoid,
    "pyramid": _pyramid,
    "capsule": _capsule,
}


def _check_shape_name(name: str, value: object) -> str:
    if value not in _SAMPLERS:
        raise ValueError(f"{name} must be one of {SHAPE_CLASSES}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_dims(shape: str, dims: object) -> Tensor:
    if not isinstance(dims, Tensor) or dims.dim() != 2 or dims.shape[1] != 3:
        got = f"shape {tuple(dims.shape)}" if isinstance(dims, Tensor) else type(dims).__name__
        raise ValueError(f"dims must be a tensor of shape (B, 3), got {got}")
    if not dims.is_floating_point():
        raise TypeError(f"dims must be a floating-point tensor, got dtype {dims.dtype}")
    d = dims.detach().to(torch.float64)
    # The third column is unused (and may be 0) for the round shapes described by two numbers.
    used = 3 if shape in ("box", "ellipsoid", "pyramid") else 2
    if not bool(torch.isfinite(d).all()) or not bool((d[:, :used] > 0).all()):
        raise ValueError(f"dims[:, :{used}] of a {shape} must be finite and > 0")
    if shape == "torus" and not bool((d[:, 1] < d[:, 0]).all()):
        raise ValueError(
            "dims of a torus must have minor radius dims[:, 1] < major radius dims[:, 0]"
        )
    return d


def shape_centroid_z(shape: str, dims: Tensor) -> Tensor:
    """Height ``(B,)`` of the surface centroid above the base of a cone or pyramid (``0`` for
    the other, centrally symmetric, shapes); :func:`sample_surface` subtracts it.

    The lateral surface of a cone or pyramid has its centroid at a third of the height (every
    triangle, and the cone as a limit of thin triangles, has its centroid a third of the way
    up from its base edge); the base at height 0. The surface centroid is their area-weighted
    mean.

    Example:
        >>> shape_centroid_z("cone", torch.tensor([[1.0, 3.0, 0.0]])).round(decimals=4)
        tensor([0.7597], dtype=torch.float64)
    """
    shape = _check_shape_name("shape", shape)
    d = _check_dims(shape, dims)
    if shape == "cone":
        lateral, base = _cone_areas(d[:, 0:1], d[:, 1:2])
    elif shape == "pyramid":
        areas = _pyramid_areas(d[:, 0:1], d[:, 1:2], d[:, 2:3])
        lateral, base = areas[:, :4].sum(dim=1, keepdim=True), areas[:, 4:]
    else:
        return torch.zeros(d.shape[0], dtype=torch.float64)
    height = d[:, 1:2] if shape == "cone" else d[:, 2:3]
    return (lateral * height / 3 / (lateral + base)).squeeze(1)


def sample_surface(
    shape: str,
    dims: Tensor,
    num_points: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Points uniform in area on the surfaces of given shapes, upright and centred.

    Args:
        shape: one of :data:`SHAPE_CLASSES`.
        dims: ``(B, 3)`` proportions of each shape (the table in the module docstring); positive
            where used, unused columns are ignored.
        num_points: points per shape ``N >= 1``.
        generator: random generator. (default: ``None``, the global one)
        dtype: floating dtype of the result (sampling is in float64). (default: ``float32``)

    Returns:
        ``(B, N, 3)`` points.

    Example:
        >>> sample_surface("box", torch.tensor([[1.0, 2.0, 3.0]]), 1000).abs().amax(dim=1)
        tensor([[1., 2., 3.]])
    """
    shape = _check_shape_name("shape", shape)
    d = _check_dims(shape, dims)
    num_points = check_positive_int("num_points", num_points)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if d.shape[0] == 0:
        return torch.empty(0, num_points, 3, dtype=dtype)
    return _SAMPLERS[shape](d, num_points, generator).to(dtype)


def _raw_dims(shape: str, count: int, gen: torch.Generator) -> Tensor:
    """Random proportions ``(count, 3)`` from :data:`_RAW_DIMS`, before rescaling."""
    lo = torch.tensor([r[0] for r in _RAW_DIMS[shape]], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in _RAW_DIMS[shape]], dtype=torch.float64)
    d = lo + (hi - lo) * _uniform((count, 3), gen)
    if shape == "torus":
        d[:, 1] = d[:, 0] * d[:, 1]  # tube radius as a fraction of the major radius
    return d


def make_shapes(
    num_per_class: int,
    num_points: int = 256,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    noise: float = 0.0,
    classes: Sequence[str] | None = None,
) -> ShapeClouds:
    """Random upright shapes of every class, ``num_per_class`` each, deterministic in ``seed``.

    Args:
        num_per_class: shapes per class, ``>= 1``.
        num_points: points per shape ``N >= 1``. (default: ``256``)
        seed: the seed; equal arguments give identical clouds. (default: ``0``)
        dtype: floating dtype of :attr:`ShapeClouds.points`. (default: ``float32``)
        noise: standard deviation of isotropic Gaussian noise added to every point, ``>= 0``
            (clouds have root-mean-square radius 0.5 to 0.8). (default: ``0.0``)
        classes: names from :data:`SHAPE_CLASSES` to draw, in label order, without repeats.
            (default: all of them)

    Returns:
        A :class:`ShapeClouds`: ``points (M, N, 3)``, ``labels (M,)``, ``dims (M, 3)`` and the
        class names, with ``M = num_per_class * len(classes)``, grouped by class (label 0
        first); shuffle before batching.

    Example:
        >>> make_shapes(2, 64, seed=0).points.shape
        torch.Size([14, 64, 3])
    """
    num_per_class = check_positive_int("num_per_class", num_per_class)
    num_points = check_positive_int("num_points", num_points)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)):
        raise TypeError(f"noise must be a number, got {type(noise).__name__}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    if classes is None:
        names = SHAPE_CLASSES
    else:
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise TypeError(f"classes must be a sequence of names, got {type(classes).__name__}")
        names = tuple(_check_shape_name("classes", c) for c in classes)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"classes must be non-empty and without repeats, got {classes!r}")

    gen = torch.Generator().manual_seed(seed)
    points, dims = [], []
    for name in names:
        d = _raw_dims(name, num_per_class, gen)
        cloud = _SAMPLERS[name](d, num_points, gen)
        # Scaling a shape scales a uniform sample of its surface: rescaling points and dims
        # together keeps them consistent while fixing the spread of every cloud.
        rms = cloud.square().sum(dim=-1).mean(dim=1).sqrt()
        target = _RMS[0] + (_RMS[1] - _RMS[0]) * _uniform((num_per_class,), gen)
        scale = target / rms
        points.append(cloud * scale[:, None, None])
        dims.append(d * scale[:, None])
    cloud = torch.cat(points)
    if noise > 0:
        cloud = cloud + noise * torch.randn(cloud.shape, generator=gen, dtype=torch.float64)
    labels = torch.arange(len(names)).repeat_interleave(num_per_class)
    return ShapeClouds(cloud.to(dtype), labels, torch.cat(dims), names)
