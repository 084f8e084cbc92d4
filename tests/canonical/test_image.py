import math
import warnings

import pytest
import torch
from torch import nn

from geolayers.canonical import CanonicalizedModel
from geolayers.canonical.image import (
    ContinuousImageCanonicalizer,
    DiscreteImageCanonicalizer,
    rotate_images,
    transform_images,
)
from geolayers.equivariant.gconv import GroupCNN, multiplication_table, transform_image
from geolayers.groups import O2, SO2, SO3, Cyclic, Dihedral, Vector, rotation_2d
from geolayers.testing import assert_invariant

SIZE = 15
FLIP = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
#: Invariance to the pixel-exact elements: only rounding separates the two sides.
EXACT_TOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def _grid_ops(group):
    """Pixel-exact elements of ``group`` as ``(index, matrix, image op)``, written from first
    principles: ``rot90(x, 1, (-2, -1))`` is the counter-clockwise quarter turn and
    ``x.flip(-2)`` is ``diag(1, -1)``."""
    elems = group.elements()
    ops = []
    for flip in (0, 1):
        for k in range(4):
            m = rotation_2d(k * math.pi / 2) @ (FLIP if flip else torch.eye(2, dtype=torch.float64))
            dist = (elems - m).abs().flatten(1).amax(1)
            if float(dist.min()) < 1e-9:

                def op(x, k=k, flip=flip):
                    return torch.rot90(x.flip(-2) if flip else x, k, dims=(-2, -1))

                ops.append((int(dist.argmin()), m, op))
    return ops


def _backbone(size=SIZE, out=3):
    """A small CNN with no symmetry at all (the flatten sees the pose)."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * size * size, out)
    )


def _zero_biases(module):
    for m in module.modules():
        if isinstance(getattr(m, "bias", None), torch.Tensor):
            nn.init.zeros_(m.bias)
    return module


def _blobs(batch, size=SIZE, *, gen=None, dtype=torch.float64, scale=1.0):
    """Smooth images inside the inscribed disk: an elongated Gaussian at a random orientation
    and a small round one beside it (no rotation or reflection symmetry); ``scale`` stretches
    all lengths."""
    c = (size - 1) / 2
    y, x = torch.meshgrid(
        (c - torch.arange(size, dtype=dtype)) / scale,
        (torch.arange(size, dtype=dtype) - c) / scale,
        indexing="ij",
    )
    phi = (torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64) * 2 * math.pi).to(dtype)
    u = x * phi.cos() + y * phi.sin()
    w = -x * phi.sin() + y * phi.cos()
    img = torch.exp(-((u - 1.5) ** 2) / (2 * 2.2**2) - w**2 / (2 * 1.1**2))
    img = img + 0.6 * torch.exp(-((u + 1.0) ** 2 + (w - 2.0) ** 2) / (2 * 1.0**2))
    return img[:, None]


class ProbeScores(nn.Module):
    r"""A well-conditioned equivariant scorer for the approximate tests:
    :math:`f_h(x) = \sum_p x(p)\, \phi(h^{-1} p)` with a smooth, chiral probe :math:`\phi` (a
    Gaussian at ``2.5 e_1`` and a weaker one at ``(0, 2)``). Exactly equivariant for the grid
    elements, and up to the sampling of the image for the others."""

    def __init__(self, group, size=SIZE):
        super().__init__()
        c = (size - 1) / 2
        y, x = torch.meshgrid(
            c - torch.arange(size, dtype=torch.float64),
            torch.arange(size, dtype=torch.float64) - c,
            indexing="ij",
        )
        p = torch.stack([x, y], -1).reshape(-1, 2)
        q = torch.einsum("gji,pj->gpi", group.elements(), p)  # h^{-1} p = h^T p
        probe = torch.exp(-((q - torch.tensor([2.5, 0.0], dtype=torch.float64)) ** 2).sum(-1) / 4)
        probe = probe + 0.3 * torch.exp(
            -((q - torch.tensor([0.0, 2.0], dtype=torch.float64)) ** 2).sum(-1) / 4
        )
        self.register_buffer("probe", probe.reshape(-1, size, size))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * torch.einsum("bchw,ghw->bg", x, self.probe.to(x.dtype))


def _discrete(group, **kwargs):
    return DiscreteImageCanonicalizer(
        group, 1, hidden_channels=3, out_channels=3, kernel_size=3, **kwargs
    )


def _continuous(group, **kwargs):
    kwargs.setdefault("hidden_channels", 3)
    return ContinuousImageCanonicalizer(group, 1, kernel_size=5, **kwargs)


def _angle(m):
    return torch.atan2(m[..., 1, 0], m[..., 0, 0])


# -- transform_images ---------------------------------------------------------------------------


def test_transform_images_exact_for_grid_elements_and_matches_transform_image(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, 7, 7, generator=gen, dtype=dtype)
    ops = _grid_ops(Dihedral(4))
    pick = torch.randint(len(ops), (8,), generator=gen).tolist()
    g = torch.stack([ops[i][1] for i in pick]).to(dtype)
    out = transform_images(g, x)
    for b, i in enumerate(pick):
        assert torch.equal(out[b], ops[i][2](x[b]))
    # Any other matrix: bilinear resampling, the same as transform_image.
    for theta in (math.pi / 4, 0.3, -2.0):
        for m in (rotation_2d(theta), rotation_2d(theta) @ FLIP):
            got = transform_images(m.expand(8, 2, 2).to(dtype), x)
            assert torch.allclose(got, transform_image(m, x), atol=EXACT_TOL[dtype])
    rect = torch.randn(3, 1, 5, 8, generator=gen, dtype=dtype)
    m = rotation_2d(0.7)
    assert torch.allclose(
        transform_images(m.expand(3, 2, 2).to(dtype), rect), transform_image(m, rect), atol=1e-5
    )


def test_rotate_images_quarter_turns_and_composition():
    x = torch.randn(4, 1, 9, 9)
    assert torch.equal(rotate_images(x, torch.full((4,), math.pi / 2)), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(rotate_images(x, math.pi), torch.rot90(x, 2, (-2, -1)))
    # Two rotations compose to their sum, up to interpolation, on a smooth centred image.
    blob = _blobs(4, 17)
    a, b = torch.rand(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    twice = rotate_images(rotate_images(blob, a), b)
    once = rotate_images(blob, a + b)
    # (a wrong sense of rotation would give errors of the size of the image)
    assert (twice - once).abs().max() < 0.15 * blob.abs().max()


def test_transform_images_gradient_reaches_the_matrix():
    x = _blobs(2)
    for theta in (0.4, 0.0, math.pi / 2):  # off the grid, then exact (straight-through) path
        angle = torch.full((2,), theta, dtype=torch.float64, requires_grad=True)
        out = rotate_images(x, angle)
        (grad,) = torch.autograd.grad((out * x).sum(), angle)
        assert torch.isfinite(grad).all() and (grad.abs() > 0).all()


def test_transform_images_bad_arguments():
    x = torch.randn(2, 1, 5, 5)
    eye = torch.eye(2).expand(2, 2, 2)
    with pytest.raises(ValueError, match="x must"):
        transform_images(eye, torch.randn(1, 5, 5))
    with pytest.raises(TypeError, match="x must"):
        transform_images(eye, torch.ones(2, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="g must"):
        transform_images(torch.eye(2), x)
    with pytest.raises(ValueError, match="g must be orthogonal"):
        transform_images(2 * eye, x)
    with pytest.raises(ValueError, match="mode must"):
        transform_images(eye, x, mode="area")
    with pytest.raises(ValueError, match="angles must"):
        rotate_images(x, torch.zeros(3))


# -- invariance to the pixel-exact elements -------------------------------------------------------


CANONICALIZERS = {
    "C4": lambda: _discrete(Cyclic(4)),
    "D4": lambda: _discrete(Dihedral(4)),
    "C8": lambda: _discrete(Cyclic(8)),
    "D2-gumbel": lambda: _discrete(Dihedral(2), estimator="gumbel"),
    "SO2": lambda: _continuous(SO2()),
    "O2": lambda: _continuous(O2()),
}
GRID_GROUP = {
    "C4": Cyclic(4),
    "D4": Dihedral(4),
    "C8": Cyclic(8),
    "D2-gumbel": Dihedral(2),
    "SO2": Cyclic(4),
    "O2": Dihedral(4),
}


@pytest.mark.parametrize("name", list(CANONICALIZERS))
def test_model_invariant_to_grid_elements(name, dtype):
    torch.manual_seed(0)
    canon = CANONICALIZERS[name]()
    if name in ("SO2", "O2") and dtype == torch.float32:
        # The continuous frame is as precise as the orientation signal of the features allows
        # (see the class notes); biases only add an isotropic offset to them.
        _zero_biases(canon.network)
    model = CanonicalizedModel(canon, _backbone()).eval()
    ops = _grid_ops(GRID_GROUP[name])
    assert_invariant(
        model,
        lambda gen: (_blobs(4, gen=gen) + 0.2 * torch.randn(4, 1, SIZE, SIZE, generator=gen),),
        lambda gen, inputs: ops[int(torch.randint(len(ops), (1,), generator=gen))],
        lambda op, inputs: (op[2](inputs[0]),),
        trials=6,
        dtype=dtype,
        atol=EXACT_TOL[dtype],
        rtol=EXACT_TOL[dtype],
    )


@pytest.mark.parametrize("name", ["C4", "D4", "C8", "O2"])
def test_frame_is_equivariant_on_the_grid(name):
    torch.manual_seed(1)
    canon = CANONICALIZERS[name]().double()
    x = torch.randn(6, 1, SIZE, SIZE, dtype=torch.float64)
    _, frame = canon(x)
    if frame.index is not None:
        table = multiplication_table(canon.group)
    for index, m, op in _grid_ops(GRID_GROUP[name]):
        _, moved = canon(op(x))
        assert torch.allclose(moved.matrix, m @ frame.matrix, atol=1e-9)
        if frame.index is not None:
            # h(g x) = g h(x): GroupCNN's scores need no re-indexing.
            assert torch.equal(moved.index, table[index][frame.index])


# -- approximate equivariance for rotations off the grid -------------------------------------------


def test_c8_frame_follows_45_degree_rotations():
    group = Cyclic(8)
    canon = DiscreteImageCanonicalizer(group, 1, network=ProbeScores(group, 17)).double()
    x = _blobs(16, 17, gen=torch.Generator().manual_seed(2))
    scores = canon.scores(x).sort(dim=1, descending=True).values
    clear = (scores[:, 0] - scores[:, 1]) > 0.05 * scores[:, 0].abs()  # no near-tie
    assert clear.sum() >= 8
    r = group.elements()[1]
    _, frame = canon(x)
    _, moved = canon(transform_image(r, x))
    table = multiplication_table(group)
    assert torch.equal(moved.index[clear], table[1][frame.index[clear]])


def test_continuous_frame_and_vector_outputs_follow_any_rotation():
    """Rotations off the grid are equivariant up to interpolation. Measured with the probe
    network on 17 x 17 blobs over 5 seeds: frame angle error < 0.7 degrees (tolerance 3), vector
    outputs of a smooth backbone off by < 6.5 % of the largest output (tolerance 10 %), the
    difference between interpolating the image once and twice."""
    gen = torch.Generator().manual_seed(3)
    canon = ContinuousImageCanonicalizer(SO2(), 1, network=ProbeScores(Cyclic(8), 17)).double()
    x = _blobs(16, 17, gen=gen)
    theta = torch.rand(16, generator=gen, dtype=torch.float64) * 2 * math.pi
    _, frame = canon(x)
    _, moved = canon(rotate_images(x, theta))
    diff = _angle(moved.matrix) - _angle(frame.matrix) - theta
    err = torch.atan2(diff.sin(), diff.cos()).abs().detach()
    assert float(err.max()) < math.radians(3)

    torch.manual_seed(3)
    head = nn.Sequential(nn.AvgPool2d(3, 2), nn.Flatten(), nn.Linear(64, 2)).double()
    model = CanonicalizedModel(canon, head, out_rep=Vector(SO2()))
    with torch.no_grad():
        y = model(x)
        got = model(rotate_images(x, theta))
    expected = (rotation_2d(theta) @ y[..., None])[..., 0]
    assert float((got - expected).norm(dim=1).max()) < 0.1 * float(y.norm(dim=1).max())


# -- degenerate inputs, gradients, prior ------------------------------------------------------------


@pytest.mark.parametrize("name", list(CANONICALIZERS))
def test_constant_images_give_valid_frames_and_finite_gradients(name, dtype):
    torch.manual_seed(0)
    canon = CANONICALIZERS[name]().to(dtype)
    model = CanonicalizedModel(canon, _backbone().to(dtype))
    x = torch.cat([torch.zeros(1, 1, SIZE, SIZE), torch.full((2, 1, SIZE, SIZE), 0.7)]).to(dtype)
    x[2] = -3.0
    y, frame = model.forward_with_frame(x)
    m = frame.matrix.to(torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    assert frame.matrix.dtype == dtype and m.shape == (3, 2, 2)
    assert torch.allclose(m @ m.mT, eye.expand(3, 2, 2), atol=1e-5)
    assert torch.allclose(torch.linalg.det(m).abs(), torch.ones(3, dtype=torch.float64), atol=1e-5)
    if name == "SO2":
        assert (torch.linalg.det(m) > 0).all()
    if frame.index is not None:
        assert torch.allclose(m, canon.group.elements()[frame.index], atol=1e-6)
    assert torch.isfinite(y).all()
    y.sum().backward()
    for p in canon.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["C4", "D4", "C8", "D2-gumbel", "SO2", "O2"])
def test_gradients_reach_the_canonicalizer_and_prior_works(name):
    torch.manual_seed(0)
    canon = CANONICALIZERS[name]().train()
    model = CanonicalizedModel(canon, _backbone())
    x = _blobs(4, dtype=torch.float32) + 0.1 * torch.randn(4, 1, SIZE, SIZE)
    y, frame = model.forward_with_frame(x)
    prior = canon.prior_loss(frame)
    assert prior.shape == () and torch.isfinite(prior) and prior >= 0
    (y.square().sum() + prior).backward()
    grads = [p.grad for p in canon.network.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    frac = canon.identity_fraction(frame)
    assert 0.0 <= float(frac) <= 1.0
    if frame.index is not None:
        assert frame.scores.shape == (4, canon.group.order)
        assert float(frac) == float((frame.index == 0).float().mean())
    else:
        assert frame.scores is None


def test_prior_on_identity_frames():
    canon = _continuous(SO2())
    frame = canon(_blobs(3, dtype=torch.float32))[1]
    identity = type(frame)(matrix=torch.eye(2).expand(3, 2, 2))
    assert float(canon.prior_loss(identity)) == 0.0
    assert float(canon.identity_fraction(identity)) == 1.0


def test_eval_mode_gives_the_same_canonical_images_as_training():
    torch.manual_seed(0)
    canon = _discrete(Dihedral(4))
    x = torch.randn(5, 1, SIZE, SIZE)
    train_out, train_frame = canon.train()(x)
    with torch.no_grad():
        eval_out, eval_frame = canon.eval()(x)
    assert torch.equal(train_frame.index, eval_frame.index)
    assert torch.equal(train_out, eval_out)


# -- argument checks ------------------------------------------------------------------------------


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="group"):
        DiscreteImageCanonicalizer("C4", 1)
    with pytest.raises(ValueError, match="group"):
        DiscreteImageCanonicalizer(SO2(), 1)
    with pytest.raises(ValueError, match="group"):
        ContinuousImageCanonicalizer(Cyclic(4), 1)
    with pytest.raises(ValueError, match="group"):
        ContinuousImageCanonicalizer(SO3(), 1)
    with pytest.raises(TypeError, match="group"):
        ContinuousImageCanonicalizer(None, 1)
    with pytest.raises(ValueError, match="approx_order"):
        ContinuousImageCanonicalizer(SO2(), 1, approx_order=2)
    with pytest.raises(TypeError, match="in_channels"):
        DiscreteImageCanonicalizer(Cyclic(4), 1.0)
    with pytest.raises(ValueError, match="estimator"):
        DiscreteImageCanonicalizer(Cyclic(4), 1, estimator="argmax")
    with pytest.raises(ValueError, match="temperature"):
        DiscreteImageCanonicalizer(Cyclic(4), 1, temperature=0.0)
    with pytest.raises(TypeError, match="network"):
        DiscreteImageCanonicalizer(Cyclic(4), 1, network=lambda x: x)
    with pytest.raises(ValueError, match="network"):
        DiscreteImageCanonicalizer(Cyclic(4), 1, network=GroupCNN(1, Cyclic(2), hidden_channels=2))
    with pytest.raises(ValueError, match="network"):
        ContinuousImageCanonicalizer(SO2(), 1, network=GroupCNN(1, Dihedral(8), hidden_channels=2))

    canon = _discrete(Cyclic(4))
    with pytest.raises(ValueError, match="x must"):
        canon(torch.randn(1, SIZE, SIZE))
    with pytest.raises(ValueError, match="x must"):
        canon(torch.randn(2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="square"):
        canon(torch.randn(2, 1, 9, 11))
    _discrete(Dihedral(2))(torch.randn(2, 1, 9, 11))  # no quarter turn: any shape works
    with pytest.raises(ValueError, match="square"):
        _continuous(SO2())(torch.randn(2, 1, 9, 11))
    with pytest.raises(ValueError, match="network must return"):
        DiscreteImageCanonicalizer(Cyclic(4), 1, network=nn.Flatten())(torch.randn(2, 1, 5, 5))


def test_dead_scorer_warns_while_training():
    class Dead(nn.Module):
        def forward(self, x):
            return x.new_zeros(x.shape[0], 4)

    canon = DiscreteImageCanonicalizer(Cyclic(4), 1, network=Dead()).train()
    with pytest.warns(RuntimeWarning, match="tied"):
        canon(torch.rand(3, 1, 9, 9))
    canon.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        canon(torch.rand(3, 1, 9, 9))
