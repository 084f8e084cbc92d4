import pytest
import torch

import geolayers.ops as ops
from geolayers.ops import segment_reduce_csr, segment_reduce_csr_reference
from geolayers.testing import check_op_against_reference

REDUCES = ["sum", "mean", "max", "min"]
requires_kernel = pytest.mark.skipif(
    ops.backend("cpu")["segment_reduce_csr"] != "compiled", reason="compiled CPU kernel not built"
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_ptr(num_rows, num_segments, gen, device="cpu"):
    cuts = torch.randint(0, num_rows + 1, (num_segments - 1,), generator=gen).sort().values
    return torch.cat([torch.tensor([0]), cuts, torch.tensor([num_rows])]).to(device)


def sample_inputs(device, dtype):
    gen = torch.Generator().manual_seed(1)
    yield torch.randn(0, 3, dtype=dtype, device=device), torch.tensor([0], device=device)
    yield torch.randn(0, 3, dtype=dtype, device=device), torch.tensor([0, 0, 0], device=device)
    yield torch.randn(1, 4, dtype=dtype, device=device), torch.tensor([0, 1], device=device)
    yield (
        torch.randn(7, 2, 3, dtype=dtype, device=device),
        torch.tensor([0, 0, 1, 1, 7], device=device),
    )
    for rows, segs in [(50, 9), (300, 40), (1000, 3)]:
        src = torch.randn(rows, 5, generator=gen, dtype=dtype).to(device)
        yield src, random_ptr(rows, segs, gen, device)


@requires_kernel
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", REDUCES)
def test_kernel_matches_reference(device, reduce, dtype, tol):
    for src, ptr in sample_inputs(device, dtype):
        check_op_against_reference("segment_reduce_csr", (src, ptr, reduce), atol=tol)


@requires_kernel
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", REDUCES)
def test_gradcheck_float64(device, reduce):
    for src, ptr in sample_inputs(device, torch.float64):
        src = src[:200].detach().requires_grad_()
        ptr = ptr.clamp_max(src.shape[0])
        fn = lambda s, ptr=ptr: segment_reduce_csr(s, ptr, reduce)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (src,))
        assert torch.autograd.gradgradcheck(fn, (src,))


@requires_kernel
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", REDUCES)
def test_opcheck(device, reduce):
    for src, ptr in sample_inputs(device, torch.float64):
        flat = src.flatten(1)
        for requires_grad in (False, True):
            torch.library.opcheck(
                torch.ops.geolayers.segment_reduce_csr.default,
                (flat.detach().requires_grad_(requires_grad), ptr, reduce),
            )


@requires_kernel
@pytest.mark.parametrize("reduce", REDUCES)
def test_empty_segments_give_zero_and_zero_grad(reduce):
    src = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    ptr = torch.tensor([0, 0, 4, 4])
    out = segment_reduce_csr(src, ptr, reduce)
    assert torch.equal(out[0], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out[2], torch.zeros(3, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out[[0, 2]].sum(), src)
    assert torch.equal(grad, torch.zeros_like(src))


@requires_kernel
def test_max_gradient_goes_to_first_maximum_and_nan_propagates():
    src = torch.tensor([[1.0, 5.0], [3.0, 5.0], [3.0, 2.0]], requires_grad=True)
    out = segment_reduce_csr(src, torch.tensor([0, 3]), "max")
    assert out.tolist() == [[3.0, 5.0]]
    (grad,) = torch.autograd.grad(out.sum(), src)
    assert grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    nan = float("nan")
    with_nan = torch.tensor([[1.0, nan], [nan, 2.0], [3.0, nan]])
    for reduce in ("max", "min"):
        out, arg = torch.ops.geolayers.segment_reduce_csr(with_nan, torch.tensor([0, 3]), reduce)
        assert out.isnan().all() and arg.tolist() == [[1, 0]]


@requires_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_result_does_not_depend_on_thread_count(threads):
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(5000, 16, generator=gen)
    ptr = random_ptr(5000, 300, gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expect = segment_reduce_csr(src, ptr, "sum")
        torch.set_num_threads(threads)
        assert torch.equal(segment_reduce_csr(src, ptr, "sum"), expect)
    finally:
        torch.set_num_threads(before)


@requires_kernel
def test_torch_compile_fullgraph():
    src = torch.randn(20, 4, requires_grad=True)
    ptr = torch.tensor([0, 5, 5, 20])

    def f(s):
        return torch.ops.geolayers.segment_reduce_csr(s, ptr, "max")[0].sin().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    value = compiled(src)
    (grad,) = torch.autograd.grad(value, src)
    (expect,) = torch.autograd.grad(f(src), src)
    assert torch.allclose(grad, expect)


def test_reference_is_used_when_forced(monkeypatch):
    monkeypatch.setenv("GEOLAYERS_FORCE_REFERENCE", "1")
    assert ops.backend()["segment_reduce_csr"] == "reference"
    src = torch.randn(6, 2, dtype=torch.float64)
    ptr = torch.tensor([0, 2, 6])
    assert torch.equal(
        segment_reduce_csr(src, ptr, "sum"), segment_reduce_csr_reference(src, ptr, "sum")
    )
    with pytest.raises(RuntimeError, match="no compiled kernel"):
        check_op_against_reference("segment_reduce_csr", (src, ptr, "sum"))


@pytest.mark.parametrize(
    "src, ptr, reduce, error, message",
    [
        (
            torch.randn(5, 2),
            torch.tensor([0, 3, 2, 5]),
            "sum",
            ValueError,
            r"ptr must be non-decreasing, but ptr\[1\] = 3 > ptr\[2\] = 2",
        ),
        (
            torch.randn(5, 2),
            torch.tensor([0, 2, 4]),
            "sum",
            ValueError,
            r"ptr\[-1\] must equal the number of rows of src \(5\), got 4",
        ),
        (
            torch.randn(5, 2),
            torch.tensor([1, 2, 5]),
            "sum",
            ValueError,
            r"ptr\[0\] must be 0, got 1",
        ),
        (torch.randn(5, 2), torch.tensor([0.0, 5.0]), "sum", TypeError, r"ptr must be an int64"),
        (
            torch.arange(5),
            torch.tensor([0, 5]),
            "sum",
            TypeError,
            r"src must be a floating-point tensor",
        ),
        (torch.randn(5, 2), torch.tensor([0, 5]), "prod", ValueError, r"reduce must be one of"),
        (torch.randn(5, 2), torch.tensor([[0, 5]]), "sum", ValueError, r"ptr must be 1-D"),
        (
            torch.tensor(1.0),
            torch.tensor([0]),
            "sum",
            ValueError,
            r"src must have at least one dimension",
        ),
    ],
)
def test_bad_input_messages(src, ptr, reduce, error, message):
    with pytest.raises(error, match=message):
        segment_reduce_csr(src, ptr, reduce)


@requires_kernel
def test_direct_op_call_with_bad_ptr_raises_instead_of_crashing():
    src = torch.randn(5, 2)
    for ptr in (
        torch.tensor([0, 9, 5]),
        torch.tensor([0, -3, 5]),
        torch.tensor([0, 4]),
        torch.tensor([2, 5]),
    ):
        with pytest.raises(ValueError, match="segment_reduce_csr: ptr"):
            torch.ops.geolayers.segment_reduce_csr(src, ptr, "sum")
    with pytest.raises(TypeError, match="ptr must be int64"):
        torch.ops.geolayers.segment_reduce_csr(src, torch.tensor([0, 5], dtype=torch.int32), "sum")
    with pytest.raises(ValueError, match="reduce must be one of"):
        torch.ops.geolayers.segment_reduce_csr(src, torch.tensor([0, 5]), "median")
    with pytest.raises(ValueError, match="grad_out must have 2 rows"):
        torch.ops.geolayers.segment_reduce_csr_backward(
            torch.randn(3, 2), torch.tensor([0, 1, 5]), torch.empty(0, dtype=torch.long), 5, "sum"
        )


def test_backend_reports_every_op():
    report = ops.backend("cpu")
    assert set(report) == set(ops.OPS)
    assert set(report.values()) <= {"compiled", "reference"}
