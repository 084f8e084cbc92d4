"""OrbitCanonicalizer, FrameAveraging, the shared Frame / Canonicalizer / CanonicalizedModel."""

import pytest
import torch
from torch import nn

from geolayers.canonical import (
    CanonicalizedModel,
    Canonicalizer,
    Frame,
    FrameAveraging,
    OrbitCanonicalizer,
    straight_through_argmax,
    transform_output,
)
from geolayers.groups import SO3, Cyclic, Dihedral, Symmetric, Vector
from geolayers.testing import assert_group_equivariant, assert_group_invariant
from tests.groups.user_groups import CubeRotations, quaternion_group, skewed_dihedral

TOL = {torch.float32: 1e-5, torch.float64: 1e-9}
GROUPS = {
    "D4": Dihedral(4),
    "S4": Symmetric(4),
    "Q8": quaternion_group(),
    "cube": CubeRotations(),
    "skewD4": skewed_dihedral(),
}


def _mlp(d_in: int, d_out: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, d_out))


def _canonicalized(group, out_rep=None, d_out=None):
    d = group.d
    canon = OrbitCanonicalizer(group, _mlp(d, 1, seed=1))
    backbone = _mlp(d, d_out if d_out is not None else 3, seed=2)
    return CanonicalizedModel(canon, backbone, out_rep).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_non_invariant_backbone_becomes_invariant(name, dtype):
    group = GROUPS[name]
    model = _canonicalized(group)
    err = assert_group_invariant(model, group, Vector(group), n=12, dtype=dtype, tol=TOL[dtype])
    assert err <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["D4", "Q8", "cube"])
def test_invert_makes_outputs_equivariant(name, dtype):
    group = GROUPS[name]
    V = Vector(group)
    model = _canonicalized(group, out_rep=V, d_out=group.d)
    assert_group_equivariant(model, group, V, V, n=12, dtype=dtype, tol=TOL[dtype])


def test_frame_moves_with_the_input():
    group = CubeRotations()
    canon = OrbitCanonicalizer(group, _mlp(3, 1)).double().eval()
    x = torch.randn(10, 3, dtype=torch.float64)
    g = group.elements()[7]
    _, frame = canon(x)
    _, frame_g = canon(x @ g.T)
    torch.testing.assert_close(frame_g.matrix, g @ frame.matrix, atol=1e-12, rtol=0)
    assert frame.scores.shape == (10, 24) and frame.index.shape == (10,)
    torch.testing.assert_close(frame.matrix, group.elements()[frame.index])


def test_fixed_point_input_gives_identity_frame_and_finite_output():
    group = Dihedral(4)
    model = _canonicalized(group, out_rep=Vector(group), d_out=2)
    x = torch.zeros(3, 2)
    y, frame = model.forward_with_frame(x)
    # Every pose of 0 is 0: all scores tie and the first maximum (the identity) wins.
    assert torch.equal(frame.index, torch.zeros(3, dtype=torch.long))
    assert torch.isfinite(y).all()
    assert model.canonicalizer.identity_fraction(frame) == 1.0


def test_gradients_reach_scorer_and_backbone():
    group = Cyclic(4)
    model = _canonicalized(group).train()
    x = torch.randn(16, 2)
    y, frame = model.forward_with_frame(x)
    loss = y.square().mean() + model.canonicalizer.prior_loss(frame)
    loss.backward()
    for module in (model.canonicalizer.scorer, model.backbone):
        grads = [p.grad for p in module.parameters()]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert any(gr.abs().sum() > 0 for gr in grads)


def test_gumbel_estimator_picks_a_pose_and_is_deterministic_in_eval():
    group = Dihedral(4)
    canon = OrbitCanonicalizer(group, _mlp(2, 1), estimator="gumbel", temperature=0.5)
    x = torch.randn(8, 2)
    xc, frame = canon.train()(x)
    # The training-time choice (with noise) is still one of the poses h^{-1} x.
    expected = (x[:, None, :] @ torch.linalg.inv(frame.matrix).mT).squeeze(1)
    torch.testing.assert_close(xc, expected, atol=1e-6, rtol=0)
    canon.eval()
    assert torch.equal(canon(x)[0], canon(x)[0])


def test_straight_through_argmax_value_and_gradient():
    scores = torch.tensor([[0.1, 2.0, -0.3], [1.0, 1.0, 0.0]], requires_grad=True)
    weights, index = straight_through_argmax(scores, temperature=2.0)
    assert torch.equal(index, torch.tensor([1, 0]))  # ties: first maximum
    assert torch.equal(weights.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    upstream = torch.randn(2, 3)
    (grad,) = torch.autograd.grad((weights * upstream).sum(), scores)
    expected = torch.autograd.grad(
        (torch.softmax(scores / 2.0, dim=1) * upstream).sum(), scores, retain_graph=True
    )[0]
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="estimator"):
        straight_through_argmax(scores, estimator="argmax")
    with pytest.raises(ValueError, match="temperature"):
        straight_through_argmax(scores, temperature=0.0)
    with pytest.raises(ValueError, match="scores"):
        straight_through_argmax(scores[0])


def test_prior_loss_and_identity_fraction():
    canon = OrbitCanonicalizer(Cyclic(4), _mlp(2, 1))
    scores = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    frame = Frame(matrix=Cyclic(4).elements()[[0, 1]], index=torch.tensor([0, 1]), scores=scores)
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([0, 0]))
    torch.testing.assert_close(canon.prior_loss(frame), expected)
    assert canon.identity_fraction(frame) == 0.5
    # Continuous frames: ||R - I||_F^2, and a tolerance on the distance to the identity.
    rot = SO3().sample(4, torch.Generator().manual_seed(0))
    rot[0] = torch.eye(3, dtype=torch.float64)
    continuous = Frame(matrix=rot)
    expected = (rot - torch.eye(3, dtype=torch.float64)).square().sum(dim=(1, 2)).mean()
    torch.testing.assert_close(canon.prior_loss(continuous), expected)
    assert canon.identity_fraction(continuous) == 0.25
    perm = Frame(matrix=None, permutation=torch.tensor([[0, 1, 2], [1, 0, 2]]))
    assert canon.identity_fraction(perm) == 0.5 and perm.batch_size == 2


def test_frame_indexing_and_detach():
    m = torch.eye(2).expand(4, 2, 2).clone().requires_grad_(True)
    frame = Frame(matrix=m * 1.0, index=torch.arange(4))
    part = frame[1:3]
    assert part.matrix.shape == (2, 2, 2) and torch.equal(part.index, torch.tensor([1, 2]))
    assert not frame.detach().matrix.requires_grad
    with pytest.raises(ValueError, match="matrix or a permutation"):
        _ = Frame(matrix=None).batch_size


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frame_averaging_is_exact(dtype):
    group = CubeRotations()
    V = Vector(group)
    invariant = FrameAveraging(_mlp(3, 4), group)
    assert_group_invariant(invariant, group, V, n=12, dtype=dtype, tol=TOL[dtype])
    equivariant = FrameAveraging(_mlp(3, 3), group, out_rep=V)
    assert_group_equivariant(equivariant, group, V, V, n=12, dtype=dtype, tol=TOL[dtype])


def test_frame_averaging_matches_the_explicit_average():
    group = Dihedral(3)
    backbone = _mlp(2, 2).double()
    fa = FrameAveraging(
        backbone, group, out_rep=lambda frame, y: (frame.matrix @ y[..., None])[..., 0]
    )
    x = torch.randn(5, 2, dtype=torch.float64)
    expected = sum(backbone(x @ g) @ g.T for g in group.elements()) / 6  # g^{-1} = g^T
    torch.testing.assert_close(fa(x), expected, atol=1e-12, rtol=0)


def test_transform_output_with_a_function_and_a_rep():
    frame = Frame(matrix=Cyclic(4).elements()[[1, 2]].float())
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    got = transform_output(y, frame, Vector(Cyclic(4)))
    torch.testing.assert_close(got, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]), atol=1e-7, rtol=0)
    assert transform_output(y, frame, lambda f, out: out + 1).sum() == 6.0
    with pytest.raises(ValueError, match=r"y must have shape \(B, \.\.\., 2\)"):
        transform_output(torch.zeros(2, 3), frame, Vector(Cyclic(4)))
    with pytest.raises(ValueError, match="permutation frame"):
        transform_output(y, Frame(matrix=None, permutation=torch.zeros(2, 2)), Vector(Cyclic(4)))
    with pytest.raises(TypeError, match="out_rep"):
        transform_output(y, frame, "vector")


def test_bad_arguments():
    with pytest.raises(ValueError, match="finite"):
        OrbitCanonicalizer(SO3(), _mlp(3, 1))
    with pytest.raises(TypeError, match="group"):
        OrbitCanonicalizer("C4", _mlp(2, 1))
    with pytest.raises(TypeError, match="scorer"):
        OrbitCanonicalizer(Cyclic(4), lambda x: x)
    with pytest.raises(TypeError, match="act"):
        OrbitCanonicalizer(Cyclic(4), _mlp(2, 1), act="rotate")
    with pytest.raises(ValueError, match="estimator"):
        OrbitCanonicalizer(Cyclic(4), _mlp(2, 1), estimator="soft")
    with pytest.raises(ValueError, match="one score per input"):
        OrbitCanonicalizer(Cyclic(4), _mlp(2, 3))(torch.randn(5, 2))
    with pytest.raises(TypeError, match="canonicalizer"):
        CanonicalizedModel(nn.Identity(), nn.Identity())
    with pytest.raises(TypeError, match="backbone"):
        CanonicalizedModel(OrbitCanonicalizer(Cyclic(4), _mlp(2, 1)), lambda x: x)
    with pytest.raises(ValueError, match="finite"):
        FrameAveraging(nn.Identity(), SO3())
    with pytest.raises(ValueError, match="out_rep must be a Rep of"):
        FrameAveraging(nn.Identity(), Cyclic(4), out_rep=Vector(Cyclic(3)))
    with pytest.raises(NotImplementedError):
        Canonicalizer().canonicalize(torch.zeros(1))
