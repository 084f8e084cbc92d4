import math

import pytest
import torch

from geolayers.datasets.shapes import (
    SHAPE_CLASSES,
    make_shapes,
    sample_surface,
    shape_centroid_z,
)

# float64 sampling: points lie on their surface up to rounding.
ATOL = 1e-9


def surface_residual(shape: str, dims: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Distance-like residual ``(B, N)`` of points ``(B, N, 3)`` from the claimed surface,
    written from the shape's definition independently of the sampler: 0 on the surface."""
    d = dims.to(torch.float64)[:, None, :]
    p = p.to(torch.float64)
    x, y, z = p.unbind(-1)
    rho = torch.sqrt(x.square() + y.square())
    if shape in ("cone", "pyramid"):
        z = z + shape_centroid_z(shape, dims)[:, None]  # back to base at z = 0
    if shape == "box":
        # On the surface: inside the box and on at least one face.
        return ((p.abs() / d).amax(dim=-1) - 1).abs()
    if shape == "ellipsoid":
        return ((p / d).square().sum(dim=-1) - 1).abs()
    if shape == "torus":
        big, small = d[..., 0], d[..., 1]
        return ((rho - big).square() + z.square()).sqrt().sub(small).abs()
    if shape == "cylinder":
        r, h = d[..., 0], d[..., 1]
        inside = torch.maximum(rho - r, z.abs() - h).clamp_min(0)
        on_face = torch.minimum((rho - r).abs(), (z.abs() - h).abs())
        return inside + on_face
    if shape == "capsule":
        r, h = d[..., 0], d[..., 1]
        # Distance to the axis segment |z| <= h equals r everywhere on a capsule.
        axial = (z.abs() - h).clamp_min(0)
        return ((rho.square() + axial.square()).sqrt() - r).abs()
    if shape == "cone":
        r, height = d[..., 0], d[..., 1]
        base = z.abs() + (rho - r).clamp_min(0)
        side = (rho - r * (1 - z / height)).abs() + (-z).clamp_min(0) + (z - height).clamp_min(0)
        return torch.minimum(base, side)
    if shape == "pyramid":
        a, b, height = d[..., 0], d[..., 1], d[..., 2]
        square = torch.maximum(x.abs() / a, y.abs() / b)
        base = z.abs() + (square - 1).clamp_min(0)
        side = (square - (1 - z / height)).abs() + (-z).clamp_min(0) + (z - height).clamp_min(0)
        return torch.minimum(base, side)
    raise AssertionError(shape)


def test_shapes_labels_and_dtype():
    data = make_shapes(3, 50, seed=0)
    m = 3 * len(SHAPE_CLASSES)
    assert data.points.shape == (m, 50, 3) and data.points.dtype == torch.float32
    assert data.labels.shape == (m,) and data.labels.dtype == torch.long
    assert data.dims.shape == (m, 3) and data.dims.dtype == torch.float64
    assert data.class_names == SHAPE_CLASSES and len(data) == m
    assert data.labels.tolist() == [k for k in range(len(SHAPE_CLASSES)) for _ in range(3)]
    assert bool(torch.isfinite(data.points).all())
    assert make_shapes(1, 8, dtype=torch.float64).points.dtype == torch.float64


def test_deterministic_by_seed():
    a, b, c = make_shapes(4, 32, seed=3), make_shapes(4, 32, seed=3), make_shapes(4, 32, seed=4)
    assert torch.equal(a.points, b.points) and torch.equal(a.dims, b.dims)
    assert not torch.equal(a.points, c.points)
    noisy = make_shapes(4, 32, seed=3, noise=0.01)
    assert torch.equal(noisy.points, make_shapes(4, 32, seed=3, noise=0.01).points)


def test_class_subset_and_order():
    data = make_shapes(2, 16, classes=("torus", "box"))
    assert data.class_names == ("torus", "box") and data.labels.tolist() == [0, 0, 1, 1]
    assert float(surface_residual("torus", data.dims[:2], data.points[:2]).max()) < 1e-5


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_points_lie_on_their_surface(name):
    data = make_shapes(6, 200, seed=1, dtype=torch.float64)
    k = data.class_names.index(name)
    rows = data.labels == k
    residual = surface_residual(name, data.dims[rows], data.points[rows])
    assert float(residual.max()) < ATOL
    # The check has teeth: the points are off the surface of a 10% larger shape.
    larger = surface_residual(name, 1.1 * data.dims[rows], data.points[rows])
    assert float(larger.max()) > 1e-2


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_clouds_are_centred_and_scaled(name):
    data = make_shapes(64, 256, seed=2, dtype=torch.float64, classes=(name,))
    # Centred on the surface centroid: the mean of 256 points is within a few standard errors.
    assert float(data.points.mean(dim=1).mean(dim=0).abs().max()) < 0.02
    rms = data.points.square().sum(dim=-1).mean(dim=1).sqrt()
    assert 0.5 - 1e-9 <= float(rms.min()) and float(rms.max()) <= 0.8 + 1e-9


def test_uniform_in_area():
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    # Box: the fraction of points on the x faces equals their share of the area, 2bc / (ab +
    # bc + ca) / 2 = 6 / 11 for half-extents (1, 2, 3).
    box = sample_surface("box", torch.tensor([[1.0, 2.0, 3.0]]), n, generator=gen)[0]
    on_x = (box[:, 0].abs() == 1.0).double().mean()
    assert abs(float(on_x) - 6 / 11) < 0.01
    # Torus: area-weighted mean of cos(theta) over the tube is r / (2 R).
    big, small = 1.0, 0.5
    t = sample_surface("torus", torch.tensor([[big, small, 0.0]]), n, generator=gen)[0]
    t = t.double()
    cos_theta = (torch.sqrt(t[:, 0] ** 2 + t[:, 1] ** 2) - big) / small
    assert abs(float(cos_theta.mean()) - small / (2 * big)) < 0.01
    # Ellipsoid of revolution (a, a, c): the area below height z is linear in z only for a
    # sphere; compare the top-cap share |z| > c/2 with its closed form for a prolate spheroid.
    a, c = 1.0, 2.0
    e = sample_surface("ellipsoid", torch.tensor([[a, a, c]]), n, generator=gen)[0].double()
    ecc = math.sqrt(1 - a * a / (c * c))

    def spheroid_area(z0: float) -> float:
        # Area of the prolate spheroid between heights -z0 and z0 (surface of revolution).
        u = ecc * z0 / c
        return 2 * math.pi * a * c / ecc * (u * math.sqrt(1 - u * u) + math.asin(u))

    caps = 1 - spheroid_area(c / 2) / spheroid_area(c)
    assert abs(float((e[:, 2].abs() > c / 2).double().mean()) - caps) < 0.01
    # Cone: the base gets its share pi r^2 / (pi r^2 + pi r s).
    r, height = 1.0, 2.0
    cone = sample_surface("cone", torch.tensor([[r, height, 0.0]]), n, generator=gen)[0]
    base_z = -shape_centroid_z("cone", torch.tensor([[r, height, 0.0]])).float()
    on_base = (cone[:, 2] - base_z).abs() < 1e-6
    assert abs(float(on_base.double().mean()) - r / (r + math.hypot(r, height))) < 0.01


def test_sample_surface_matches_make_shapes_dims():
    data = make_shapes(2, 64, seed=5)
    for k, name in enumerate(data.class_names):
        rows = data.labels == k
        again = sample_surface(name, data.dims[rows], 64, dtype=torch.float64)
        assert again.shape == (2, 64, 3)
        assert float(surface_residual(name, data.dims[rows], again).max()) < ATOL
    assert sample_surface("box", torch.ones(0, 3), 5).shape == (0, 5, 3)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="num_per_class"):
        make_shapes(0)
    with pytest.raises(TypeError, match="num_points"):
        make_shapes(2, 3.5)
    with pytest.raises(TypeError, match="seed"):
        make_shapes(2, seed=True)
    with pytest.raises(TypeError, match="dtype"):
        make_shapes(2, dtype=torch.long)
    with pytest.raises(ValueError, match="noise"):
        make_shapes(2, noise=-0.1)
    with pytest.raises(ValueError, match="noise"):
        make_shapes(2, noise=math.nan)
    with pytest.raises(ValueError, match="classes"):
        make_shapes(2, classes=("box", "sphere"))
    with pytest.raises(ValueError, match="classes"):
        make_shapes(2, classes=("box", "box"))
    with pytest.raises(TypeError, match="classes"):
        make_shapes(2, classes="box")
    with pytest.raises(ValueError, match="shape"):
        sample_surface("sphere", torch.ones(1, 3), 4)
    with pytest.raises(ValueError, match="dims"):
        sample_surface("box", torch.ones(3), 4)
    with pytest.raises(ValueError, match="dims"):
        sample_surface("box", torch.tensor([[1.0, -1.0, 1.0]]), 4)
    with pytest.raises(ValueError, match="dims"):
        sample_surface("torus", torch.tensor([[1.0, 1.5, 0.0]]), 4)
    with pytest.raises(TypeError, match="dims"):
        sample_surface("box", torch.ones(1, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="num_points"):
        sample_surface("box", torch.ones(1, 3), 0)
