import math

import mpmath
import pytest
import torch

import geolayers.ops as ops
import geolayers.ops.poincare as OP
from geolayers.ops import (
    poincare_gather_dist,
    poincare_gather_dist_reference,
    poincare_pairwise_dist,
    poincare_pairwise_dist_reference,
)
from geolayers.testing import check_op_against_reference
from tests.hyperbolic.precision import EDGE, TOL, ball_points, mp_norm, mp_vec, rel_err

requires_kernel = pytest.mark.skipif(
    ops.backend("cpu")["poincare_pairwise_dist"] != "compiled",
    reason="compiled CPU kernel not built",
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def mp_dist(a, b, c):
    # 50-digit arcosh form of the distance, independent of the stable form under test.
    cm = mpmath.mpf(c)
    diff = mp_norm([u - v for u, v in zip(a, b, strict=True)]) ** 2
    den = (1 - cm * mp_norm(a) ** 2) * (1 - cm * mp_norm(b) ** 2)
    return mpmath.acosh(1 + 2 * cm * diff / den) / mpmath.sqrt(cm)


def pair_inputs(device, dtype, c=0.7):
    """Shapes and points that exercise the kernel's edges: empty sides, one column, sizes that
    are not multiples of the column block or the lane count, coincident points, the origin and
    points next to the boundary."""
    g = torch.Generator().manual_seed(3)
    yield torch.zeros(0, 3, dtype=dtype), torch.randn(4, 3, dtype=dtype) * 0.2
    yield torch.randn(3, 2, dtype=dtype) * 0.2, torch.zeros(0, 2, dtype=dtype)
    yield torch.randn(5, 1, generator=g, dtype=dtype) * 0.5, torch.randn(3, 1, dtype=dtype) * 0.5
    x = ball_points(23, 6, dtype, c, 1).to(dtype)
    y = ball_points(301, 6, dtype, c, 2).to(dtype)
    y[7] = x[3]
    y[8] = 0
    x[0] = 0
    yield x, y
    yield ball_points(9, 40, dtype, c, 4).to(dtype), ball_points(17, 40, dtype, c, 5).to(dtype)


@requires_kernel
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c", [1.0, 0.7])
def test_pairwise_kernel_matches_reference(device, dtype, tol, c):
    for x, y in pair_inputs(device, dtype, c):
        cc = torch.tensor(c, dtype=dtype, device=device)
        check_op_against_reference(
            "poincare_pairwise_dist", (x.to(device), y.to(device), cc), atol=tol
        )


@requires_kernel
@pytest.mark.parametrize("device", DEVICES)
def test_gather_kernel_matches_reference(device, dtype, tol):
    g = torch.Generator().manual_seed(5)
    x = ball_points(31, 5, dtype, 0.7, 6).to(dtype)
    y = ball_points(50, 5, dtype, 0.7, 7).to(dtype)
    index = torch.randint(0, 50, (31, 9), generator=g)
    index[:, 0] = 4  # one row of y gathered by every row: the scatter must add, not overwrite
    y[4] = x[2]
    x[1] = 0
    cc = torch.tensor(0.7, dtype=dtype)
    check_op_against_reference("poincare_gather_dist", (x, y, index, cc), atol=tol)
    empty = torch.zeros(31, 0, dtype=torch.long)
    assert poincare_gather_dist(x, y, empty).shape == (31, 0)


@requires_kernel
def test_gradcheck_float64_with_learnable_curvature():
    # Well inside the ball: finite differences next to the boundary are ill-conditioned.
    x = ball_points(6, 3, torch.float64, 0.5, 8, edge=False).requires_grad_()
    y = ball_points(5, 3, torch.float64, 0.5, 9, edge=False)
    y[1] = x[0].detach()  # coincident pair: subgradient 0, still a smooth function elsewhere
    y.requires_grad_()
    c = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(poincare_pairwise_dist, (x, y, c))
    index = torch.tensor([[0, 2, 4], [1, 1, 3], [4, 0, 0], [2, 3, 1], [0, 0, 0], [3, 4, 2]])
    assert torch.autograd.gradcheck(poincare_gather_dist, (x, y, index, c))


@requires_kernel
def test_curvature_gradient_matches_reference():
    x = ball_points(7, 4, torch.float64, 1.3, 10)
    y = ball_points(8, 4, torch.float64, 1.3, 11)
    grads = []
    for fn in (poincare_pairwise_dist, poincare_pairwise_dist_reference):
        c = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        (fn(x, y, c).square().sum()).backward()
        grads.append(c.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=0)


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_pairwise_matches_mpmath_near_the_boundary(dtype, c):
    # Nearby points next to the boundary: the matrix-product form loses the chord here.
    x = ball_points(8, 5, dtype, c, 12).to(dtype)
    y = torch.cat([x[4:] * (1 - 10 * torch.finfo(dtype).eps), ball_points(4, 5, dtype, c, 13)])
    y = y.to(dtype)
    out = poincare_pairwise_dist(x, y, c)
    ref = [mp_dist(mp_vec(a), mp_vec(b), c) for a in x for b in y]
    assert rel_err(out.flatten().tolist(), ref) < TOL[dtype]
    assert (x.double().norm(dim=1) * math.sqrt(c) > 1 - 2 * EDGE[dtype]).sum() == 4


def test_matrix_product_form_fails_the_same_precision_test():
    # The baseline of benchmarks/hyperbolic_ops.py, shown to fail what the op passes.
    from benchmarks.hyperbolic_ops import matmul_pairwise_dist

    x = ball_points(8, 5, torch.float32, 1.0, 12).float()
    y = x[4:] * (1 - 10 * torch.finfo(torch.float32).eps)
    ref = [mp_dist(mp_vec(a), mp_vec(b), 1.0) for a in x[4:] for b in y]
    assert rel_err(matmul_pairwise_dist(x[4:], y).flatten().tolist(), ref) > 1e-2
    assert rel_err(poincare_pairwise_dist(x[4:], y).flatten().tolist(), ref) < 1e-4


@requires_kernel
def test_values_and_gradients_finite_at_origin_and_coincident_points(dtype):
    x = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    y = torch.zeros(3, 3, dtype=dtype, requires_grad=True)
    c = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    d = poincare_pairwise_dist(x, y, c)
    assert torch.equal(d, torch.zeros(2, 3, dtype=dtype))
    d.sum().backward()
    for t in (x, y, c):
        assert torch.isfinite(t.grad).all()


@requires_kernel
def test_opcheck():
    x = ball_points(5, 3, torch.float64, 1.0, 14)
    y = ball_points(4, 3, torch.float64, 1.0, 15)
    c = torch.tensor(1.0, dtype=torch.float64)
    index = torch.tensor([[0, 1], [3, 3], [2, 0], [1, 1], [0, 3]])
    for requires_grad in (False, True):
        xs, ys = x.clone().requires_grad_(requires_grad), y.clone().requires_grad_(requires_grad)
        torch.library.opcheck(torch.ops.geolayers.poincare_pairwise_dist.default, (xs, ys, c))
        torch.library.opcheck(torch.ops.geolayers.poincare_gather_dist.default, (xs, ys, index, c))


@requires_kernel
def test_torch_compile_fullgraph():
    x = ball_points(6, 3, torch.float32, 1.0, 16).float().requires_grad_()
    y = ball_points(7, 3, torch.float32, 1.0, 17).float()
    c = torch.tensor(1.0)

    def f(x):
        return torch.ops.geolayers.poincare_pairwise_dist(x, y, c).exp().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    (grad,) = torch.autograd.grad(compiled(x), x)
    (expect,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(grad, expect)


@requires_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_result_close_for_any_thread_count(threads):
    x = ball_points(40, 8, torch.float64, 1.0, 18).requires_grad_()
    y = ball_points(300, 8, torch.float64, 1.0, 19).requires_grad_()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        d = poincare_pairwise_dist(x, y)
        gx, gy = torch.autograd.grad(d.sum(), (x, y))
    finally:
        torch.set_num_threads(before)
    ref = poincare_pairwise_dist_reference(x, y, torch.tensor(1.0, dtype=torch.float64))
    rx, ry = torch.autograd.grad(ref.sum(), (x, y))
    # Gradients reach 1e7 next to the boundary: the tolerance is relative to the largest.
    torch.testing.assert_close(d, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx, rx, rtol=1e-9, atol=1e-9 * float(rx.abs().max()))
    torch.testing.assert_close(gy, ry, rtol=1e-9, atol=1e-9 * float(ry.abs().max()))


def test_reference_blocks_agree_with_one_block(monkeypatch):
    x = ball_points(40, 3, torch.float64, 1.0, 4)
    y = ball_points(30, 3, torch.float64, 1.0, 5)
    c = torch.tensor(1.0, dtype=torch.float64)
    full = poincare_pairwise_dist_reference(x, y, c)
    monkeypatch.setattr(OP, "_CHUNK_ELEMENTS", 200)  # blocks of 2 rows
    xr = x.clone().requires_grad_()
    blocked = poincare_pairwise_dist_reference(xr, y, c)
    torch.testing.assert_close(blocked, full, rtol=0, atol=0)
    blocked.sum().backward()
    xr2 = x.clone().requires_grad_()
    full2 = poincare_pairwise_dist_reference(xr2, y, c)
    full2.sum().backward()
    torch.testing.assert_close(xr.grad, xr2.grad)


def test_reference_is_used_when_forced(monkeypatch):
    monkeypatch.setenv("GEOLAYERS_FORCE_REFERENCE", "1")
    assert ops.backend()["poincare_pairwise_dist"] == "reference"
    x = ball_points(3, 2, torch.float64, 1.0, 20)
    c = torch.tensor(1.0, dtype=torch.float64)
    assert torch.equal(poincare_pairwise_dist(x, x), poincare_pairwise_dist_reference(x, x, c))
    index = torch.tensor([[0], [2], [1]])
    assert torch.equal(
        poincare_gather_dist(x, x, index), poincare_gather_dist_reference(x, x, index, c)
    )


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((torch.zeros(3), torch.zeros(2, 3)), ValueError, r"x must have shape \(N, D\)"),
        ((torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "same last dimension"),
        ((torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)), TypeError, "share a dtype"),
        ((torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)), TypeError, "x must be a float"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), 0.0), ValueError, "c must be positive"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor(-1.0)), ValueError, "c must be pos"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), "1"), TypeError, "c must be a positive float"),
    ],
)
def test_bad_pairwise_input_messages(args, error, message):
    with pytest.raises(error, match=message):
        poincare_pairwise_dist(*args)


@pytest.mark.parametrize(
    "index, error, message",
    [
        (torch.zeros(3, 2, dtype=torch.long), ValueError, r"index must have shape \(B, K\)"),
        (torch.zeros(2, 2), TypeError, "index must be an int64 tensor"),
        (torch.tensor([[0, 4], [1, 1]]), IndexError, r"must lie in \[0, 4\)"),
        (torch.tensor([[0, -1], [1, 1]]), IndexError, r"got the range \[-1, 1\]"),
    ],
)
def test_bad_gather_input_messages(index, error, message):
    with pytest.raises(error, match=message):
        poincare_gather_dist(torch.zeros(2, 3), torch.zeros(4, 3), index)


@requires_kernel
def test_direct_op_call_with_bad_index_raises_instead_of_crashing():
    x, y = torch.zeros(2, 3), torch.zeros(4, 3)
    with pytest.raises(IndexError, match="index values must lie"):
        torch.ops.geolayers.poincare_gather_dist(
            x, y, torch.tensor([[0, 9], [1, 1]]), torch.ones(())
        )
    with pytest.raises(ValueError, match="same last dimension"):
        torch.ops.geolayers.poincare_pairwise_dist(x, torch.zeros(4, 2), torch.ones(()))
    with pytest.raises(ValueError, match="c must be positive"):
        torch.ops.geolayers.poincare_pairwise_dist(x, y, -torch.ones(()))
