"""Test kit for symmetry properties and compiled ops, public so users can test their own
modules: :func:`assert_equivariant`, :func:`assert_invariant`, :func:`check_op_against_reference`,
and for groups acting through representations :func:`equivariance_error`,
:func:`assert_group_equivariant`, :func:`assert_group_invariant`.

The symmetry checks follow e3nn's ``assert_equivariant``: draw a random transformation, apply it
to the input and to the output, and compare in float64 against a per-dtype tolerance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geolayers._checks import describe

#: Default absolute and relative tolerance per dtype of the comparison.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    return value


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _max_error(
    got: Any, expected: Any, atol: float, rtol: float, path: str = "output"
) -> tuple[float, str]:
    """Largest violation ``|got - expected| - rtol |expected|`` over matching tensors (and where)."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor) or got.shape != expected.shape:
            raise AssertionError(
                f"{path}: shape {tuple(expected.shape)} expected, got "
                f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}"
            )
        if expected.numel() == 0:
            return 0.0, path
        if not expected.is_floating_point():
            return (0.0 if torch.equal(got, expected) else float("inf")), path
        got, expected = got.detach(), expected.detach()
        diff = (got - expected).abs() - rtol * expected.abs()
        nan_mismatch = got.isnan() != expected.isnan()
        if bool(nan_mismatch.any()):
            return float("inf"), path
        diff = torch.where(expected.isnan(), torch.zeros_like(diff), diff)
        return float(diff.max()), path
    if isinstance(expected, (tuple, list)):
        worst = (-float("inf"), path)
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            worst = max(worst, _max_error(g, e, atol, rtol, f"{path}[{i}]"), key=lambda t: t[0])
        return worst
    return (0.0 if got == expected else float("inf")), path


def assert_equivariant(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | Callable[[torch.Generator], Sequence[Any]],
    sample_transform: Callable[[torch.Generator, Sequence[Any]], Any],
    transform_in: Callable[[Any, Sequence[Any]], Sequence[Any]],
    transform_out: Callable[[Any, Any], Any],
    *,
    trials: int = 8,
    dtype: torch.dtype = torch.float64,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    r"""Assert :math:`f(g \cdot x) = g \cdot f(x)` for random transformations ``g``.

    Args:
        fn: the function or module; a module is evaluated on a deep copy cast to ``dtype``.
        inputs: positional arguments of ``fn``, or a function ``generator -> arguments`` that
            draws fresh inputs for every trial. Floating tensors are cast to ``dtype``.
        sample_transform: ``(generator, inputs) -> g``, one random transformation for these inputs.
        transform_in: ``(g, inputs) -> transformed inputs``.
        transform_out: ``(g, output) -> transformed output``.
        trials: transformations tried. (default: ``8``)
        dtype: evaluation dtype. (default: ``torch.float64``)
        atol: absolute tolerance. (default: :data:`TOLERANCE` of ``dtype``)
        rtol: relative tolerance. (default: :data:`TOLERANCE` of ``dtype``)
        generator: random source. (default: seeded with 0)

    Returns:
        The largest error seen, ``max |f(g x) - g f(x)| - rtol |g f(x)|``.

    Raises:
        AssertionError: naming the trial, the output and the error, when a trial fails.

    Example:
        >>> perm = lambda gen, inp: torch.randperm(inp[0].shape[0], generator=gen)
        >>> assert_equivariant(torch.sin, (torch.randn(5),), perm,
        ...                    lambda p, inp: (inp[0][p],), lambda p, out: out[p])  # doctest: +SKIP
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    atol = TOLERANCE[dtype] if atol is None else atol
    rtol = TOLERANCE[dtype] if rtol is None else rtol
    if isinstance(fn, nn.Module):
        fn = copy.deepcopy(fn).to(dtype)
    worst = 0.0
    for trial in range(trials):
        args = tuple(_cast(tuple(inputs(gen) if callable(inputs) else inputs), dtype))
        g = sample_transform(gen, args)
        expected = transform_out(g, fn(*args))
        got = fn(*_as_tuple(tuple(transform_in(g, args))))
        err, where = _max_error(got, expected, atol, rtol)
        if err > atol:
            raise AssertionError(
                f"not equivariant: trial {trial}, {where}: error {err:.3e} > atol {atol:.1e} "
                f"(rtol {rtol:.1e}, dtype {dtype})"
            )
        worst = max(worst, err)
    return worst


def assert_invariant(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | Callable[[torch.Generator], Sequence[Any]],
    sample_transform: Callable[[torch.Generator, Sequence[Any]], Any],
    transform_in: Callable[[Any, Sequence[Any]], Sequence[Any]],
    **kwargs: Any,
) -> float:
    r"""Assert :math:`f(g \cdot x) = f(x)` for random ``g``; arguments as :func:`assert_equivariant`.

    Example:
        >>> perm = lambda gen, inp: torch.randperm(inp[0].shape[0], generator=gen)
        >>> assert_invariant(torch.sum, (torch.randn(5),), perm, lambda p, inp: (inp[0][p],))  # doctest: +SKIP
    """
    return assert_equivariant(
        fn, inputs, sample_transform, transform_in, lambda g, out: out, **kwargs
    )


def check_op_against_reference(
    op_name: str,
    inputs: Sequence[Any],
    *,
    grad: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Compare a compiled op with its pure-PyTorch reference, values and gradients.

    Runs ``geolayers.ops.OPS[op_name]`` on ``inputs`` through the compiled kernel and through
    the reference, then (``grad=True``) backpropagates the same random upstream gradient through
    both and compares the gradients of every floating-point input tensor.

    Args:
        op_name: a key of :data:`geolayers.ops.OPS`, e.g. ``"segment_reduce_csr"``.
        inputs: positional arguments of the op.
        grad: also compare gradients. (default: ``True``)
        atol: absolute tolerance. (default: :data:`TOLERANCE` of the first floating input)
        rtol: relative tolerance. (default: same as ``atol``)
        generator: random source of the upstream gradient. (default: seeded with 0)

    Returns:
        The largest violation ``|got - expected| - rtol |expected|`` seen over values and
        gradients: at most ``atol`` when the check passes, negative when every difference is
        inside the relative tolerance alone.

    Raises:
        RuntimeError: if the op has no compiled kernel for the inputs' device (comparing the
            reference with itself would prove nothing).
        AssertionError: when values or gradients differ.

    Example:
        >>> inputs = (torch.randn(5, 2), torch.tensor([0, 2, 5]))
        >>> check_op_against_reference("segment_reduce_csr", inputs) <= TOLERANCE[torch.float32]
        True
    """
    from geolayers import ops

    if op_name not in ops.OPS:
        raise ValueError(f"op_name must be one of {sorted(ops.OPS)}, got {op_name!r}")
    public, reference = ops.OPS[op_name]
    tensors = [x for x in inputs if isinstance(x, Tensor)]
    floats = [x for x in tensors if x.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    if ops.backend(device)[op_name] != "compiled":
        raise RuntimeError(
            f"{op_name} has no compiled kernel running on {device}; nothing to compare"
        )
    dtype = floats[0].dtype if floats else torch.float64
    atol = TOLERANCE[dtype] if atol is None else atol
    rtol = atol if rtol is None else rtol
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def run(fn):
        args = [
            x.detach().clone().requires_grad_(grad)
            if isinstance(x, Tensor) and x.is_floating_point()
            else x
            for x in inputs
        ]
        return fn(*args), args

    got, got_args = run(public)
    expected, ref_args = run(reference)
    err, where = _max_error(got, expected, atol, rtol)
    if err > atol:
        raise AssertionError(
            f"{op_name}: compiled and reference differ: {where} error {err:.3e} > {atol:.1e}"
        )
    worst = err
    if grad:
        outs, refs = _as_tuple(got), _as_tuple(expected)
        upstream = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device) for o in refs]
        diff_args = [i for i, a in enumerate(ref_args) if isinstance(a, Tensor) and a.requires_grad]
        g_got = torch.autograd.grad(
            outs, [got_args[i] for i in diff_args], upstream, allow_unused=True
        )
        g_ref = torch.autograd.grad(
            refs, [ref_args[i] for i in diff_args], upstream, allow_unused=True
        )
        for i, a, b in zip(diff_args, g_got, g_ref, strict=True):
            a = torch.zeros_like(got_args[i]) if a is None else a
            b = torch.zeros_like(ref_args[i]) if b is None else b
            err, _ = _max_error(a, b, atol, rtol, f"grad of input {i}")
            if err > atol:
                raise AssertionError(
                    f"{op_name}: gradients of input {i} differ: error {err:.3e} > {atol:.1e}"
                )
            worst = max(worst, err)
    return worst


def permutation_within_sets(ptr: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random row permutation ``(M,)`` that shuffles rows only inside each CSR segment.

    ``x[perm]`` reorders the elements of every set of a ragged batch ``x: (M, D)`` with offsets
    ``ptr: (B + 1,)``; set ``b`` keeps rows ``ptr[b]:ptr[b + 1]``.

    Example:
        >>> permutation_within_sets(torch.tensor([0, 1, 3]), torch.Generator().manual_seed(0))
        tensor([0, 2, 1])
    """
    num_rows = int(ptr[-1])
    sizes = (ptr[1:] - ptr[:-1]).cpu()
    set_id = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    # Sorting (set id, random key) pairs keeps sets contiguous and shuffles inside each.
    keys = torch.rand(num_rows, generator=generator, dtype=torch.float64)
    order = torch.argsort(set_id.to(torch.float64) * 2 + keys, stable=True)
    return order.to(ptr.device)


# -- equivariance under a group acting through representations ---------------------------------


def _check_group_args(group: Any, rep_in: Any, rep_out: Any, n: Any, batch: Any) -> None:
    from geolayers.groups import Group, Rep

    if not isinstance(group, Group):
        raise TypeError(f"group must be a Group, got {type(group).__name__}")
    for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
        if rep is None and name == "rep_out":
            continue
        if not isinstance(rep, Rep):
            raise TypeError(f"{name} must be a Rep, got {type(rep).__name__}")
        if rep.G != group:
            raise ValueError(f"{name} must be a representation of {group!r}, got one of {rep.G!r}")
    for name, value, least in (("n", n, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if n == 0 and group.discrete_generators.shape[0] == 0:
        raise ValueError(
            f"n must be >= 1 for {group!r}: it has no discrete generators, so n=0 tests nothing"
        )


def _group_errors(
    module: Callable[[Tensor], Tensor],
    group: Any,
    rep_in: Any,
    rep_out: Any,
    n: int,
    dtype: torch.dtype,
    batch: int,
    generator: torch.Generator | None,
) -> Tensor:
    """Relative error of ``module`` for each tested element: the discrete generators, then ``n``
    samples (Haar for the built-in groups, uniform elements or random words for finite ones)."""
    _check_group_args(group, rep_in, rep_out, n, batch)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if isinstance(module, nn.Module):
        module = copy.deepcopy(module).to(dtype)
        tensors = [*module.parameters(), *module.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
    else:
        device = torch.device("cpu")
    g = torch.cat([group.discrete_generators, group.sample(n, gen)])
    m = g.shape[0]
    x = torch.randn(batch, rep_in.size, generator=gen, dtype=torch.float64)
    rho_in = rep_in.rho(g)
    # The transformed inputs are formed in float64, then rounded once to dtype: the test then
    # measures the module's rounding, not that of the transformation.
    gx = (x[None] @ rho_in.mT).to(device=device, dtype=dtype)
    x = x.to(device=device, dtype=dtype)
    with torch.no_grad():
        y = module(x)
        got = module(gx.reshape(m * batch, rep_in.size))
    if not isinstance(y, Tensor) or y.dim() < 1 or y.shape[0] != batch:
        raise ValueError(
            f"module must map inputs (B, {rep_in.size}) to outputs (B, ...), got {describe(y)}"
        )
    if rep_out is not None and tuple(y.shape) != (batch, rep_out.size):
        raise ValueError(
            f"module output must have shape (B, {rep_out.size}) for rep_out {rep_out!r}, got "
            f"{tuple(y.shape)}"
        )
    got = got.reshape(m, *y.shape).to(torch.float64)
    y = y.to(torch.float64)
    if rep_out is None:
        expected = y.expand(m, *y.shape)
    else:
        expected = y[None] @ rep_out.rho(g).to(y.device).mT
    diff = (got - expected).flatten(1).norm(dim=1)
    scale = torch.maximum(expected.flatten(1).norm(dim=1), got.flatten(1).norm(dim=1))
    return torch.where(diff == 0, torch.zeros_like(diff), diff / scale)


def equivariance_error(
    module: Callable[[Tensor], Tensor],
    group: Any,
    rep_in: Any,
    rep_out: Any,
    n: int = 8,
    dtype: torch.dtype = torch.float64,
    *,
    batch: int = 4,
    generator: torch.Generator | None = None,
) -> float:
    r"""Largest relative equivariance error of ``module`` under ``group``:

    .. math::
        \max_g \frac{\lVert f(\rho_{in}(g) X) - \rho_{out}(g) f(X) \rVert}
        {\max(\lVert \rho_{out}(g) f(X) \rVert, \lVert f(\rho_{in}(g) X) \rVert)}

    over the discrete generators of ``group`` (every one) and ``n`` random elements from
    ``group.sample`` (Haar for the built-in groups; uniform elements, or random words of the
    generators when too large to enumerate, for finite ones), on a batch ``X`` of Gaussian
    inputs. The representations are applied in float64 and the result rounded once to ``dtype``,
    so what is measured is the module's own error.

    Args:
        module: maps ``(B, rep_in.size)`` to ``(B, rep_out.size)``; a module is evaluated on a
            deep copy cast to ``dtype``.
        group: the group (a :class:`~geolayers.groups.Group`).
        rep_in: representation of the input.
        rep_out: representation of the output.
        n: random elements besides the generators; 0 tests the generators only (enough for a
            finite group). (default: ``8``)
        dtype: evaluation dtype. (default: ``torch.float64``)
        batch: inputs per element. (default: ``4``)
        generator: random source. (default: seeded with 0)

    Returns:
        The relative error, a float (0 for an exactly equivariant module).

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> V = Vector(SO3())
        >>> equivariance_error(lambda x: 2 * x, SO3(), V, V) < 1e-12
        True
    """
    errors = _group_errors(module, group, rep_in, rep_out, n, dtype, batch, generator)
    return float(errors.max()) if errors.numel() else 0.0


def _assert_group(
    what: str,
    module: Any,
    group: Any,
    rep_in: Any,
    rep_out: Any,
    n: int,
    dtype: torch.dtype,
    tol: float | None,
    batch: int,
    generator: torch.Generator | None,
) -> float:
    tol = TOLERANCE[dtype] if tol is None else tol
    errors = _group_errors(module, group, rep_in, rep_out, n, dtype, batch, generator)
    if not errors.numel():
        return 0.0
    worst = int(errors.argmax())
    err = float(errors[worst])
    if not err <= tol:  # also catches NaN
        gens = group.discrete_generators.shape[0]
        which = f"discrete generator {worst}" if worst < gens else f"random element {worst - gens}"
        name = type(module).__name__ if isinstance(module, nn.Module) else "function"
        raise AssertionError(
            f"{name} is not {what} under {group!r}: relative error {err:.3e} > tol {tol:.1e} "
            f"(dtype {dtype}) at {which}"
        )
    return err


def assert_group_equivariant(
    module: Callable[[Tensor], Tensor],
    group: Any,
    rep_in: Any,
    rep_out: Any,
    *,
    n: int = 8,
    dtype: torch.dtype = torch.float64,
    tol: float | None = None,
    batch: int = 4,
    generator: torch.Generator | None = None,
) -> float:
    r"""Assert :math:`f(\rho_{in}(g) x) = \rho_{out}(g) f(x)` for the generators and ``n`` random
    elements of ``group``; arguments as :func:`equivariance_error`.

    Args:
        tol: largest relative error accepted. (default: :data:`TOLERANCE` of ``dtype``)

    Returns:
        The relative error.

    Raises:
        AssertionError: naming the group, the error, the tolerance and the element that fails.

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> V = Vector(SO3())
        >>> assert_group_equivariant(nn.Linear(3, 3), SO3(), V, V)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        AssertionError: Linear is not equivariant under SO(3): relative error ...
    """
    return _assert_group(
        "equivariant", module, group, rep_in, rep_out, n, dtype, tol, batch, generator
    )


def assert_group_invariant(
    module: Callable[[Tensor], Tensor],
    group: Any,
    rep_in: Any,
    *,
    n: int = 8,
    dtype: torch.dtype = torch.float64,
    tol: float | None = None,
    batch: int = 4,
    generator: torch.Generator | None = None,
) -> float:
    r"""Assert :math:`f(\rho_{in}(g) x) = f(x)` (any output shape ``(B, ...)``) for the
    generators and ``n`` random elements of ``group``; arguments as
    :func:`assert_group_equivariant`.

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> norm = lambda x: x.norm(dim=-1, keepdim=True)
        >>> assert_group_invariant(norm, SO3(), Vector(SO3())) <= 1e-9
        True
    """
    return _assert_group("invariant", module, group, rep_in, None, n, dtype, tol, batch, generator)
