"""PointCloudCanonicalizer: SO(3) / O(3) / E(3) invariance of any backbone, equivariant outputs,
masks, degenerate clouds, the Gram-Schmidt frame, errors."""

import pytest
import torch
from torch import nn

from geolayers.canonical import CanonicalizedModel, Frame
from geolayers.canonical.pointcloud import (
    PointCloudCanonicalizer,
    orthonormal_frame,
    restore_points,
)
from geolayers.groups import O3, SO3, Symmetric, Vector
from geolayers.testing import assert_equivariant, assert_invariant

TOL = {torch.float32: 1e-5, torch.float64: 1e-9}
DTYPES = [torch.float32, torch.float64]
B, N = 4, 12
GROUPS = {"SO3": SO3(), "O3": O3()}


def _clouds(gen, dtype=torch.float64, b=B, n=N):
    """Well-conditioned clouds: skewed (a clear mean |p| p) and anisotropic (distinct
    covariance eigenvalues), so that the predicted vectors are far from degenerate."""
    z = torch.randn(b, n, 3, generator=gen, dtype=dtype)
    z = z + 0.3 * (z.square() - 1)
    return (z * torch.tensor([1.0, 0.7, 0.4], dtype=dtype),)


class FlatBackbone(nn.Module):
    """Not invariant at all: an MLP of the flattened cloud ``(B, N, 3) -> (B, C)``, or per-point
    vectors ``(B, N, 3)`` with ``per_point``."""

    def __init__(self, c: int = 3, per_point: bool = False, seed: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.per_point = per_point
        out = N * 3 if per_point else c
        self.mlp = nn.Sequential(nn.Linear(N * 3, 32), nn.Tanh(), nn.Linear(32, out))

    def forward(self, x):
        y = self.mlp(x.flatten(1))
        return y.reshape(x.shape) if self.per_point else y


def _canon(group, seed=1, **kwargs):
    torch.manual_seed(seed)
    return PointCloudCanonicalizer(group, **kwargs)


def _sampler(group, translate=False):
    def sample(gen, inputs):
        x = inputs[0]
        g = group.sample(x.shape[0], gen)
        t = torch.randn(x.shape[0], 1, 3, generator=gen, dtype=torch.float64)
        return g, t if translate else torch.zeros_like(t)

    return sample


def _act(gt, inputs):
    # The transformation is applied in float64 and rounded once, so that the check measures the
    # model's rounding, not the input's.
    (g, t), (x, *rest) = gt, inputs
    return ((x.double() @ g.mT + t).to(x.dtype), *rest)


def _rotate_out(gt, y):
    g = gt[0]
    flat = y.double().reshape(y.shape[0], -1, 3)
    return (flat @ g.mT).reshape(y.shape).to(y.dtype)


def _move_out(gt, y):
    g, t = gt
    return (y.double() @ g.mT + t).to(y.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_flat_backbone_becomes_invariant(name, dtype):
    group = GROUPS[name]
    model = CanonicalizedModel(_canon(group), FlatBackbone())
    assert_invariant(
        model, _clouds, _sampler(group), _act, dtype=dtype, atol=TOL[dtype], rtol=TOL[dtype]
    )
    # The backbone alone is not invariant: the check can fail.
    with pytest.raises(AssertionError):
        assert_invariant(model.backbone, _clouds, _sampler(group), _act, dtype=dtype, trials=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("learned_offset", [False, True])
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_translation_gives_euclidean_invariance(name, learned_offset, dtype):
    group = GROUPS[name]
    canon = _canon(group, translation=True, learned_offset=learned_offset)
    model = CanonicalizedModel(canon, FlatBackbone())
    sample = _sampler(group, translate=True)
    assert_invariant(model, _clouds, sample, _act, dtype=dtype, atol=TOL[dtype], rtol=TOL[dtype])
    # Positions predicted in the canonical frame move with the cloud.
    positions = CanonicalizedModel(canon, FlatBackbone(per_point=True), restore_points)
    # Positions carry the frame's own rounding times their size: the package's default float32
    # tolerance (1e-4), not the 1e-5 the invariant outputs meet.
    assert_equivariant(positions, _clouds, sample, _act, _move_out, dtype=dtype)


def test_o3_handles_reflections_and_so3_does_not():
    gen = torch.Generator().manual_seed(5)
    (x,) = _clouds(gen)
    reflect = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    o3 = _canon(O3()).double()
    xc, frame = o3(x)
    xc_r, frame_r = o3(x @ reflect)
    torch.testing.assert_close(xc_r, xc, atol=1e-10, rtol=0)
    torch.testing.assert_close(frame_r.matrix, reflect @ frame.matrix, atol=1e-10, rtol=0)
    dets = torch.linalg.det(frame.matrix)
    torch.testing.assert_close(torch.linalg.det(frame_r.matrix), -dets)
    # SO(3) frames are rotations: a mirrored cloud is a different canonical cloud.
    so3 = _canon(SO3()).double()
    assert torch.allclose(torch.linalg.det(so3(x @ reflect)[1].matrix), torch.ones(B).double())
    assert not torch.allclose(so3(x @ reflect)[0], so3(x)[0], atol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_vector_outputs_are_equivariant_through_invert(name, dtype):
    group = GROUPS[name]
    V = Vector(group)
    canon = _canon(group)
    pooled = CanonicalizedModel(canon, FlatBackbone(c=3), out_rep=V)
    per_point = CanonicalizedModel(canon, FlatBackbone(per_point=True), out_rep=V)
    for model in (pooled, per_point):
        assert_equivariant(
            model, _clouds, _sampler(group), _act, _rotate_out, dtype=dtype, atol=TOL[dtype]
        )


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_frame_is_orthogonal_and_turns_with_the_input(name):
    group = GROUPS[name]
    canon = _canon(group, translation=True).double()
    (x,) = _clouds(torch.Generator().manual_seed(2))
    xc, frame = canon(x)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(frame.matrix.mT @ frame.matrix, eye.expand(B, 3, 3))
    torch.testing.assert_close(xc, (x - frame.translation[:, None]) @ frame.matrix)
    torch.testing.assert_close(frame.translation, x.mean(dim=1))
    g = group.sample(B, torch.Generator().manual_seed(3))
    _, frame_g = canon(x @ g.mT + 1.5)
    torch.testing.assert_close(frame_g.matrix, g @ frame.matrix, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        frame_g.translation, (g @ frame.translation[..., None])[..., 0] + 1.5
    )
    if name == "SO3":
        torch.testing.assert_close(torch.linalg.det(frame.matrix), torch.ones(B).double())


def _masked_clouds(gen, dtype=torch.float64):
    (x,) = _clouds(gen, dtype)
    mask = torch.rand(B, N, generator=gen) < 0.75
    mask[:, :4] = True
    return x, mask


class Masked(nn.Module):
    def __init__(self, canon, backbone):
        super().__init__()
        self.canon, self.backbone = canon, backbone

    def forward(self, x, mask):
        return self.backbone(self.canon(x, mask=mask)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_points_are_ignored(dtype):
    canon = _canon(SO3(), translation=True)
    model = Masked(canon, FlatBackbone())
    sample = _sampler(SO3(), translate=True)
    assert_invariant(
        model, _masked_clouds, sample, _act, dtype=dtype, atol=TOL[dtype], rtol=TOL[dtype]
    )
    # Whatever the padding holds, even NaN, changes nothing and gives finite gradients.
    x, mask = _masked_clouds(torch.Generator().manual_seed(4), dtype)
    canon, model = canon.to(dtype), model.to(dtype)
    garbage = torch.where(mask[..., None], x, torch.nan).requires_grad_(True)
    xc, frame = canon(garbage, mask=mask)
    torch.testing.assert_close(xc, canon(x, mask=mask)[0], atol=0, rtol=0)
    assert (xc[~mask] == 0).all()
    model(garbage, mask).sum().backward()
    assert torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~mask] == 0).all()


def _degenerate_clouds(dtype):
    # Unevenly spaced: a segment symmetric about its midpoint would be fixed by a half-turn,
    # and then no equivariant vector exists at all.
    spacing = torch.linspace(0, 1.5, N, dtype=dtype).square()
    line = spacing[:, None] * torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    plane = torch.randn(N, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    plane[:, 2] = 0
    return torch.stack(
        [
            torch.zeros(N, 3, dtype=dtype),  # everything at the origin
            torch.tensor([0.3, -1.0, 2.0], dtype=dtype).expand(N, 3),  # one point, repeated
            line + 0.7,  # collinear, off the origin
            plane,  # planar: fixed by a reflection
        ]
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("translation", [False, True])
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_degenerate_clouds_give_valid_frames_and_finite_gradients(name, translation, dtype):
    group = GROUPS[name]
    canon = _canon(group, translation=translation).to(dtype)
    model = CanonicalizedModel(canon, FlatBackbone().to(dtype))
    x = _degenerate_clouds(dtype).requires_grad_(True)
    y, frame = model.forward_with_frame(x)
    loss = y.square().sum() + canon.prior_loss(frame)
    loss.backward()
    eye = torch.eye(3, dtype=dtype)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(
        frame.matrix.mT @ frame.matrix, eye.expand(4, 3, 3), atol=atol, rtol=0
    )
    dets = torch.linalg.det(frame.matrix.detach())
    if name == "SO3":
        torch.testing.assert_close(dets, torch.ones(4, dtype=dtype), atol=atol, rtol=0)
    else:
        torch.testing.assert_close(dets.abs(), torch.ones(4, dtype=dtype), atol=atol, rtol=0)
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    if translation:
        # A single repeated point canonicalizes to the origin.
        assert frame.translation is not None
        torch.testing.assert_close(
            model.canonicalizer(x[1:2])[0], torch.zeros(1, N, 3, dtype=dtype), atol=atol, rtol=0
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_collinear_cloud_is_still_invariant(dtype):
    """No frame is equivariant on a line, but the canonical line is: its coordinates along the
    arbitrary axes are 0."""
    canon = _canon(SO3(), translation=True).to(dtype)
    x = _degenerate_clouds(torch.float64)[2:3]
    g = SO3().sample(3, torch.Generator().manual_seed(0))
    xc = canon(x.to(dtype))[0]
    xc_g = canon((x @ g.mT + 0.25).to(dtype))[0]
    # float32 rounds the rotated line off its line by ~1e-7 of its length, and the frame's
    # first axis follows: a looser float32 tolerance than for well-conditioned clouds.
    atol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(xc_g, xc.expand(3, N, 3), atol=atol, rtol=0)


def test_orthonormal_frame_fallbacks_and_equivariance():
    eye = torch.eye(3, dtype=torch.float64)
    zero = torch.zeros(1, 3, 3, dtype=torch.float64, requires_grad=True)
    frame = orthonormal_frame(zero, special=False)
    torch.testing.assert_close(frame[0], eye)
    frame.sum().backward()
    assert torch.isfinite(zero.grad).all()
    parallel = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, -5.0]]], dtype=torch.float64)
    frame = orthonormal_frame(parallel)[0]
    torch.testing.assert_close(frame.T @ frame, eye)
    torch.testing.assert_close(frame[:, 0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.det(frame) > 0
    # Equivariant for rotations (special) and for all of O(3) with three vectors.
    v = torch.randn(6, 3, 3, dtype=torch.float64)
    g = O3().sample(6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        orthonormal_frame(v @ g.mT, special=False), g @ orthonormal_frame(v, special=False)
    )
    r = SO3().sample(6, torch.Generator().manual_seed(2))
    torch.testing.assert_close(orthonormal_frame(v @ r.mT), r @ orthonormal_frame(v))
    with pytest.raises(ValueError, match="at least 3"):
        orthonormal_frame(v[:, :2], special=False)
    with pytest.raises(ValueError, match="vectors"):
        orthonormal_frame(v[..., :2])


def test_restore_points_and_prior():
    frame = Frame(matrix=SO3().sample(2).float(), translation=torch.randn(2, 3))
    y = torch.randn(2, 5, 3)
    expected = torch.einsum("bij,bnj->bni", frame.matrix, y) + frame.translation[:, None]
    torch.testing.assert_close(restore_points(frame, y), expected)
    with pytest.raises(ValueError, match="y must"):
        restore_points(frame, torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="frame"):
        restore_points(Frame(matrix=None, permutation=torch.zeros(2, 3)), y)
    canon = _canon(SO3())
    (x,) = _clouds(torch.Generator().manual_seed(0), torch.float32)
    _, frame = canon(x)
    prior = canon.prior_loss(frame)
    prior.backward()
    assert prior >= 0 and all(torch.isfinite(p.grad).all() for p in canon.parameters())
    assert 0 <= float(canon.identity_fraction(frame)) <= 1


def test_bad_arguments():
    with pytest.raises(TypeError, match="group"):
        PointCloudCanonicalizer("SO3")
    with pytest.raises(ValueError, match="group"):
        PointCloudCanonicalizer(Symmetric(3))
    with pytest.raises(ValueError, match="hidden_channels"):
        PointCloudCanonicalizer(SO3(), hidden_channels=0)
    with pytest.raises(TypeError, match="num_layers"):
        PointCloudCanonicalizer(SO3(), num_layers=2.5)
    with pytest.raises(TypeError, match="translation"):
        PointCloudCanonicalizer(SO3(), translation=1)
    with pytest.raises(ValueError, match="learned_offset"):
        PointCloudCanonicalizer(SO3(), learned_offset=True)
    canon = PointCloudCanonicalizer(O3())
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        canon(torch.randn(4, 5, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        canon(torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating"):
        canon(torch.ones(2, 5, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="x must"):
        canon([[0.0, 0.0, 0.0]])
    with pytest.raises(TypeError, match="mask"):
        canon(torch.randn(2, 5, 3), mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="mask"):
        canon(torch.randn(2, 5, 3), mask=torch.ones(2, 4, dtype=torch.bool))


def test_empty_and_single_point_clouds():
    canon = _canon(O3(), translation=True, learned_offset=True)
    x = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, 2] = True
    xc, frame = canon(x, mask=mask)
    (xc.sum() + canon.prior_loss(frame)).backward()
    assert (xc == 0).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(frame.translation[1], x[1, 2].detach())
    torch.testing.assert_close(frame.matrix, torch.eye(3).expand(2, 3, 3))


def test_so3_frames_centrally_symmetric_clouds():
    """Vector neurons are odd, so a cloud equal to its mirror -X has no equivariant vector made
    of them; the SO(3) network's cross products are even and still give a frame."""
    (z,) = _clouds(torch.Generator().manual_seed(6), b=B, n=N // 2)
    x = torch.cat([z, -z], dim=1)
    canon = _canon(SO3(), translation=True).double()
    g = SO3().sample(B, torch.Generator().manual_seed(7))
    torch.testing.assert_close(canon(x @ g.mT)[0], canon(x)[0], atol=1e-9, rtol=1e-9)
