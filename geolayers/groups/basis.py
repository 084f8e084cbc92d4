r"""The equivariant linear basis: all ``W`` with :math:`\rho_{out}(g) W = W \rho_{in}(g)`.

Following EMLP (`Finzi, Welling, Wilson, ICML 2021 <https://arxiv.org/abs/2104.09459>`_,
eqs. 2 and 6 and Theorem 1), it is enough to impose the constraint on the generators: with :math:`W` flattened
row-major (``W.reshape(-1)``, so :math:`\mathrm{vec}(A W B) = (A \otimes B^\top)\mathrm{vec}(W)`),

.. math::
    C_h &= \rho_{out}(h) \otimes \rho_{in}(h)^{-\top} - I
        && \text{for each discrete generator } h, \\
    C_A &= d\rho_{out}(A) \otimes I - I \otimes d\rho_{in}(A)^\top
        && \text{for each Lie algebra generator } A,

and the basis is an orthonormal basis of the nullspace of the stacked :math:`C`. The solvers:

* **permutation** (exact, any size): when every generator acts on ``W`` by a signed permutation
  of its entries (permutation representations: ``S_n``, regular representations, ``C_4``), the
  invariant ``W`` are constant, up to the signs, on the orbits of the entries; an orbit on which
  some group element flips the sign of an entry carries nothing. The orbits are the connected
  components of a graph on the entries, so this costs ``O(h D_in D_out)`` (``S_10``,
  ``V**2 -> V**2``: milliseconds). :func:`parameter_sharing` returns that form directly.
* **dense** (``D_in D_out <=`` :data:`DENSE_MAX`, or 256 for finite groups of order at most
  1024): SVD of the stacked constraints in float64; a singular value counts as zero when at
  most ``rtol`` times the largest.
* **iterative** (larger), matrix-free: each Kronecker factor acts on one axis of ``W``, so
  memory is ``O(D_in D_out r)``. With :math:`K_g W = \rho_{out}(g) W \rho_{in}(g)^{-1}`:

  - finite groups of order at most 1024: the range of the Reynolds projector
    :math:`\frac{1}{|G|}\sum_g K_g`, whose rank is known in advance (its trace, the character
    inner product), so one application to a random block spans it;
  - orthogonal representations of larger groups: the fixed points of the symmetric average
    :math:`\frac{1}{2m}\sum_i (K_{g_i} + K_{g_i}^\top)` over a few Haar samples and the
    discrete generators, found by subspace iteration; its other eigenvalues are well inside
    ``(-1, 1)``, so a few dozen iterations reach machine precision;
  - otherwise the fixed points of :math:`I - \sum_i C_i^\top C_i / \lambda_{max}` (slow when
    the constraints are badly conditioned; it says so rather than return a wrong basis).

  The result is checked against the generators' constraints.

Maps between direct sums are solved block by block (``3 * V -> V + V**2`` is six small
problems, each cached). Results are cached on the (structurally hashed) pair of representations.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from geolayers._checks import describe
from geolayers.groups import _ops
from geolayers.groups.group import Group
from geolayers.groups.reps import Rep, Scalar, Sum

__all__ = [
    "DEFAULT_RTOL",
    "DENSE_MAX",
    "equivariant_basis",
    "invariant_basis",
    "equivariant_projector",
    "parameter_sharing",
    "Projector",
    "ParameterSharing",
    "clear_basis_cache",
]

#: Relative tolerance: a singular value of the stacked constraints at most ``rtol`` times the
#: largest counts as zero. Generators computed in float64 give ~1e-15 for true zeros, while the
#: smallest true non-zero is rarely below 1e-4 (``2 sin(pi/n)`` for ``C_n``), so 1e-7 leaves a
#: wide margin on both sides; generators typed with ~8 digits still work.
DEFAULT_RTOL = 1e-7

#: Largest ``D_in * D_out`` solved by dense SVD (about 1 s on one core); above, iteratively.
DENSE_MAX = 1024

_METHODS = ("auto", "permutation", "dense", "iterative")


class ParameterSharing(NamedTuple):
    """An equivariant basis of signed permutation representations as parameter sharing.

    ``W.reshape(-1)[k] = sign[k] * theta[index[k]]`` (``index[k] == -1``: the entry is always 0)
    for free parameters ``theta: (num_params,)``.
    """

    index: Tensor
    sign: Tensor
    num_params: int


class _Constraints:
    """The constraint operators on ``vec(W)``, ``W: (D_out, D_in)``, built lazily."""

    def __init__(self, rep_in: Rep, rep_out: Rep) -> None:
        self.rep_in, self.rep_out = rep_in, rep_out
        self.d_in, self.d_out = rep_in.size, rep_out.size
        self.size = self.d_in * self.d_out
        eye_in, eye_out = _ops.Identity(self.d_in), _ops.Identity(self.d_out)
        # K_h = rho_out(h) (x) rho_in(h^{-1})^T maps W to rho_out(h) W rho_in(h)^{-1}.
        self.discrete = [
            _ops.Kron([fwd_out, inv_in.t()])
            for (fwd_out, _), (_, inv_in) in zip(
                rep_out.generator_ops, rep_in.generator_ops, strict=True
            )
        ]
        # L_A maps W to drho_out(A) W - W drho_in(A); a vanishing one imposes nothing.
        lie = [
            _ops.Add([_ops.Kron([a_out, eye_in]), _ops.Scale(-1.0, _ops.Kron([eye_out, a_in.t()]))])
            for a_out, a_in in zip(rep_out.lie_ops, rep_in.lie_ops, strict=True)
        ]
        self.lie = [op for op in lie if not op.is_zero]

    @property
    def empty(self) -> bool:
        return not self.discrete and not self.lie

    def action_ops(self, g: Tensor) -> list[_ops.Op]:
        """``K_g`` for elements ``g: (n, d, d)``: the action ``W -> rho_out(g) W rho_in(g)^{-1}``."""
        outs = self.rep_out.element_ops(g)
        ins = self.rep_in.element_ops(self.rep_in.G.inverse(g))
        return [_ops.Kron([o, i.t()]) for o, i in zip(outs, ins, strict=True)]

    def signed_perms(self) -> list[tuple[Tensor, Tensor]] | None:
        if self.lie:
            return None
        perms = [k.signed_perm() for k in self.discrete]
        return None if any(p is None for p in perms) else perms

    def dense(self) -> Tensor:
        eye = torch.eye(self.size, dtype=torch.float64)
        blocks = [k.dense() - eye for k in self.discrete] + [op.dense() for op in self.lie]
        return torch.cat(blocks)

    def gram_mm(self, x: Tensor) -> Tensor:
        """``sum_i C_i^T C_i x`` for ``x: (N, m)``, matrix-free."""
        out = torch.zeros_like(x)
        for k in self.discrete:
            r = k.mm(x) - x
            out += k.t().mm(r) - r
        for op in self.lie:
            out += op.t().mm(op.mm(x))
        return out


def _check_reps(rep_in: object, rep_out: object) -> None:
    for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
        if not isinstance(rep, Rep):
            raise TypeError(f"{name} must be a Rep, got {describe(rep)}")
    if rep_in.G != rep_out.G:
        raise ValueError(
            f"rep_in and rep_out must be representations of one group, got {rep_in.G!r} and "
            f"{rep_out.G!r}"
        )


def _check_options(method: object, rtol: object) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be a float in (0, 1), got {rtol!r}")


def _orbits(size: int, perms: list[tuple[Tensor, Tensor]]) -> ParameterSharing:
    """Orbits of the entries under signed permutations, as parameter sharing.

    Works on the double cover: node ``k`` stands for "entry k = +c", node ``k + N`` for
    "entry k = -c". The constraint ``w[perm[k]] = sign[k] w[k]`` links ``k`` to ``perm[k]`` (or to
    ``perm[k] + N`` when the sign is -1). An orbit whose two copies end up connected forces
    ``c = -c``: it is dropped. Otherwise the copy holding the orbit's first entry gives the signs.
    """
    n = size
    src, dst = [], []
    for perm, sign in perms:
        p, flip = perm.numpy(), (sign.numpy() < 0).astype(np.int64) * n
        k = np.arange(n)
        src += [k, k + n]
        dst += [p + flip, p + n - flip]
    if src:
        rows, cols = np.concatenate(src), np.concatenate(dst)
        graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(2 * n, 2 * n))
        _, labels = connected_components(graph, directed=False)
    else:
        labels = np.arange(2 * n)
    plus, minus = labels[:n], labels[n:]
    orbit = np.minimum(plus, minus)  # the same for both copies of an orbit
    consistent = plus != minus
    first = np.full(2 * n, n, dtype=np.int64)
    np.minimum.at(first, orbit, np.arange(n))
    positive = plus[first[orbit]]  # label of the copy where the orbit's first entry is +c
    sign = np.where(plus == positive, 1.0, -1.0)
    # Number the kept orbits in order of their first entry, so the basis is deterministic.
    keep_first = np.unique(first[orbit][consistent])
    column = np.full(n, -1, dtype=np.int64)
    column[consistent] = np.searchsorted(keep_first, first[orbit][consistent])
    sign = np.where(consistent, sign, 0.0)
    return ParameterSharing(torch.from_numpy(column), torch.from_numpy(sign), int(keep_first.size))


def _sharing_to_basis(sharing: ParameterSharing, size: int) -> Tensor:
    index, sign, r = sharing
    basis = torch.zeros(size, r, dtype=torch.float64)
    kept = index >= 0
    counts = torch.bincount(index[kept], minlength=r).to(torch.float64)
    rows = kept.nonzero().squeeze(1)
    basis[rows, index[kept]] = sign[kept] / counts.sqrt()[index[kept]]
    return basis


def _lie_gram_dense(rep_in: Rep, rep_out: Rep) -> Tensor | None:
    r"""The Gram matrix ``C^T C`` of the stacked constraints ``(N, N)``, straight from the
    generators' matrices, for a group with a Lie algebra.

    With :math:`A = d\rho_{out}(X)`, :math:`B = d\rho_{in}(X)` and row-major Kronecker products,
    :math:`L = A \otimes I - I \otimes B^\top`, so by the mixed-product rule
    :math:`L^\top L = A^\top A \otimes I + I \otimes B B^\top - A^\top \otimes B^\top - A \otimes B`;
    a discrete generator adds :math:`(K - I)^\top (K - I) = K^\top K - K - K^\top + I` with
    :math:`K = \rho_{out}(h) \otimes \rho_{in}(h^{-1})^\top`. The same matrix as
    ``_Constraints(rep_in, rep_out).dense()`` gives, without its lazy operators or the tall
    product: for the small problems of continuous groups (``V (x) V`` of SO(3) is 81 entries)
    those cost more than the eigensolver.

    Returns ``None`` when the Lie algebra acts trivially on both sides (then the
    signed-permutation route may apply, which needs the operators) or when a representation has
    no dense matrices.
    """
    G = rep_in.G
    lie = G.lie_algebra
    if not lie.any():
        return None
    try:
        a = rep_out._lie_dense
        # A layer from a representation to itself (the common case) needs its matrices once,
        # and a bias (a map from the trivial representation) none.
        if rep_in == rep_out:
            b = a
        elif isinstance(rep_in, Scalar):
            b = torch.zeros(lie.shape[0], 1, 1, dtype=torch.float64)
        else:
            b = rep_in._lie_dense
        if not (a.any() or b.any()):
            return None
        gens = G.discrete_generators
        k_out = rep_out.rho(gens) if gens.shape[0] else None
        k_in = rep_in.rho(G.inverse(gens)) if gens.shape[0] else None
    except NotImplementedError:
        return None
    # numpy from here: a dozen small products, where each torch call's overhead would dominate.
    a, b = a.numpy(), b.numpy()
    if isinstance(rep_in, Scalar) and k_out is None:
        # An invariant vector (a bias): L = A (x) 1, so L^T L = A^T A.
        return torch.from_numpy((a.transpose(0, 2, 1) @ a).sum(0))
    d_out, d_in = a.shape[-1], b.shape[-1]
    n = d_out * d_in

    def kron(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Sum over the batch of ``x_k (x) y_k``, row ``(i, p)``, column ``(j, q)``: one product
        ``(i j, k) @ (k, p q)`` then an axis swap (np.einsum and np.kron are several times
        slower at these sizes)."""
        (_, i, j), (_, p, q) = x.shape, y.shape
        m = x.reshape(x.shape[0], -1).T @ y.reshape(y.shape[0], -1)
        return m.reshape(i, j, p, q).transpose(0, 2, 1, 3).reshape(n, n)

    a_t, b_t = a.transpose(0, 2, 1), b.transpose(0, 2, 1)
    gram = kron((a_t @ a).sum(0)[None], np.eye(d_in)[None])
    gram += kron(np.eye(d_out)[None], (b @ b_t).sum(0)[None])
    gram -= kron(a_t, b_t) + kron(a, b)
    if k_out is not None:
        k_out, k_in = k_out.numpy(), k_in.numpy()
        k_out_t, k_in_t = k_out.transpose(0, 2, 1), k_in.transpose(0, 2, 1)
        k_sum = kron(k_out, k_in_t)
        gram += kron(k_out_t @ k_out, k_in @ k_in_t) - k_sum - k_sum.T
        gram += k_out.shape[0] * np.eye(n)
    return torch.from_numpy(gram)


#: Up to this size a full eigendecomposition (numpy) beats scipy's subset driver, whose call
#: overhead dominates on tiny matrices.
_SMALL_EIGH = 32


def _solve_dense(cons: _Constraints | Tensor, rtol: float) -> Tensor:
    """Orthonormal nullspace of the constraints, from ``cons.dense()`` or a Gram matrix."""
    # Nullspace from the eigenvectors of the Gram matrix C^T C, (n, n), instead of an SVD of the
    # tall (k n, n) C: several times faster at the sizes solved densely, and as accurate for the
    # basis, since the gap below the smallest non-zero eigenvalue (a squared singular value of
    # a group constraint, order 1) is wide. Eigenvalues are squared singular values, hence the
    # squared threshold.
    # Only the eigenpairs below the threshold are computed (LAPACK's MRRR driver, 4x faster than a
    # full eigh at n = 81). The scale is trace(C^T C) = |C|_F^2 >= the largest eigenvalue, known
    # before the decomposition; it raises the threshold by at most a factor n, far below the gap.
    if isinstance(cons, Tensor):
        gram = cons.numpy()
    else:
        c = cons.dense()
        gram = (c.T @ c).numpy()
    if gram.shape[0] == 0:
        return torch.zeros(0, 0, dtype=torch.float64)
    limit = rtol**2 * float(np.trace(gram))
    if gram.shape[0] <= _SMALL_EIGH:
        values, vectors = np.linalg.eigh(gram)
        return torch.from_numpy(np.ascontiguousarray(vectors[:, values <= limit]))
    # The constraints are finite by construction: skip scipy's scan of the matrix.
    _, v = scipy.linalg.eigh(
        gram, driver="evr", subset_by_value=(-np.inf, limit), check_finite=False
    )
    return torch.from_numpy(np.ascontiguousarray(v))


def _gram_scale(cons: _Constraints, gen: torch.Generator) -> float:
    """Largest eigenvalue of ``sum_i C_i^T C_i``, by power iteration on a block (a lower bound
    within a few percent)."""
    x = torch.randn(cons.size, 4, generator=gen, dtype=torch.float64)
    top = 0.0
    for _ in range(30):
        x, _ = torch.linalg.qr(x)
        y = cons.gram_mm(x)
        top = max(top, float(torch.linalg.eigvalsh(x.T @ y).max()))
        x = y
    return top


def _fixed_space(
    apply,
    n: int,
    *,
    accept: float,
    gen: torch.Generator,
    block: int = 16,
    maxiter: int = 3000,
) -> Tensor:
    """Orthonormal basis of the eigenvalue-1 eigenspace of a symmetric operator ``apply`` whose
    spectrum lies in ``[-1, 1]``, by subspace iteration with Rayleigh-Ritz and deflation.

    A block of random vectors is multiplied by the operator until the components outside the
    eigenvalue-1 space have shrunk by 1e-6 / sqrt(n) (the rate is the largest other
    |eigenvalue|, estimated from the block's Ritz values) and the kept Ritz vectors have
    residuals below 1e-12. Ritz values within ``accept`` of 1 are kept. While a whole block is
    kept there may be more: the next, larger one runs in the complement.
    """
    found = torch.zeros(n, 0, dtype=torch.float64)
    while found.shape[1] < n:
        size = min(block, n - found.shape[1])
        x = torch.randn(n, size, generator=gen, dtype=torch.float64)
        for step in range(1, maxiter + 1):
            x = x - found @ (found.T @ x)
            x, _ = torch.linalg.qr(x)
            y = apply(x)
            theta, rot = torch.linalg.eigh(x.T @ y)
            x, y = x @ rot, y @ rot
            keep = theta >= 1 - accept
            residual = (y - x * theta).norm(dim=0)
            rest = theta[~keep].abs()
            rate = min(float(rest.max()) if rest.numel() else 0.05, 0.999)
            # Enough iterations that any eigenvalue-1 direction missing from the random start
            # (weight ~1/sqrt(n) against 1) now dominates its Ritz value, with a margin for the
            # Ritz estimate of the rate being a lower bound; the kept vectors' accuracy is set by
            # their residuals.
            needed = 1.25 * math.log(1e-6 / math.sqrt(n)) / math.log(max(rate, 1e-16)) + 2
            converged = bool((residual[keep] <= 1e-12).all())
            # A block whose every Ritz pair has converged spans an invariant subspace (e.g. all
            # of a small space): its Ritz values are exact and iterating more changes nothing.
            if converged and (step >= needed or bool((residual <= 1e-12).all())):
                break
            x = y
        else:
            raise RuntimeError(
                f"the iterative equivariant-basis solver did not converge in {maxiter} iterations "
                f"for a constraint of size {n} (spectral gap 1 - {rate:.4f}); try method='dense'"
            )
        if bool(keep.any()):
            found = torch.linalg.qr(torch.cat([found, x[:, keep]], dim=1))[0]
        if not bool(keep.all()):
            break
        block = max(2 * block, found.shape[1])
    return found


def _solve_reynolds(cons: _Constraints, elements: Tensor, gen: torch.Generator) -> Tensor:
    r"""Range of the Reynolds operator :math:`P = \frac{1}{|G|}\sum_g K_g`, the projector onto
    the invariant ``W`` of a finite group (orthogonal or not). Its rank is its trace, the
    character inner product :math:`\frac{1}{|G|}\sum_g \chi_{out}(g)\chi_{in}(g^{-1})`, so
    one application to ``r + 8`` random vectors spans it; a second one cleans up rounding."""
    ops = cons.action_ops(elements)
    trace = sum(op.trace() for op in ops) / len(ops)
    rank = round(trace)
    if abs(trace - rank) > 1e-6:
        raise RuntimeError(
            f"the average character {trace:.6f} of the elements is not an integer: they do not "
            f"form a group (check elements())"
        )
    n = cons.size
    if rank == 0:
        return torch.zeros(n, 0, dtype=torch.float64)

    def reynolds(x: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        for op in ops:
            out += op.mm(x)
        return out / len(ops)

    x = reynolds(torch.randn(n, min(n, rank + 8), generator=gen, dtype=torch.float64))
    q = torch.linalg.svd(x, full_matrices=False)[0][:, :rank]
    return torch.linalg.qr(reynolds(q))[0]


#: Elements averaged per iteration by the iterative solver (plus the discrete generators).
_SAMPLES = 8

#: Finite groups of at most this order are averaged exactly (Reynolds operator).
_REYNOLDS_MAX = 1024


def _solve_iterative(cons: _Constraints, rtol: float, seed: int = 0) -> Tensor:
    n, G = cons.size, cons.rep_in.G
    gen = torch.Generator().manual_seed(seed)
    elements = G._elements_or_none() if G.is_finite else None
    if elements is not None and elements.shape[0] <= _REYNOLDS_MAX:
        basis = _solve_reynolds(cons, elements, gen)
    elif cons.rep_in._orthogonal and cons.rep_out._orthogonal:
        # K_g is orthogonal, so the invariant W are the fixed points of the symmetric average
        # S = mean_g (K_g + K_g^T) / 2 over elements that generate G: eigenvalue 1 exactly there,
        # and for random (Haar) elements the rest of the spectrum is well inside (-1, 1).
        elements = torch.cat([G.sample(_SAMPLES, gen), G.discrete_generators])
        ops = cons.action_ops(elements)
        ops_t = [op.t() for op in ops]

        def average(x: Tensor) -> Tensor:
            out = torch.zeros_like(x)
            for op, op_t in zip(ops, ops_t, strict=True):
                out += op.mm(x) + op_t.mm(x)
            return out / (2 * len(ops))

        basis = _fixed_space(average, n, accept=1e-8, gen=gen)
    else:
        # Non-orthogonal representations of infinite groups: the nullspace of the Gram operator
        # M is the fixed space of I - M / lambda_max (slow when sigma_min / sigma_max is small).
        top = 1.05 * _gram_scale(cons, gen)
        if top == 0.0:
            return torch.eye(n, dtype=torch.float64)

        def damp(x: Tensor) -> Tensor:
            return x - cons.gram_mm(x) / top

        basis = _fixed_space(damp, n, accept=rtol**2, gen=gen)
    # Whatever the route, the result must satisfy the generators' constraints.
    if basis.shape[1]:
        scale = max(1.0, _gram_scale(cons, gen))
        err = float(torch.einsum("ij,ij->j", basis, cons.gram_mm(basis)).clamp_min(0).max())
        if math.sqrt(err) > max(10 * rtol, 1e-8) * math.sqrt(scale):
            raise RuntimeError(
                f"the iterative equivariant-basis solver returned vectors that violate the "
                f"constraints by {math.sqrt(err):.2e}; try method='dense'"
            )
    return basis


def _blocks(rep: Rep) -> tuple[Rep, ...]:
    return rep.parts if isinstance(rep, Sum) else (rep,)


def _solve_blocks(rep_in: Rep, rep_out: Rep, method: str, rtol: float) -> Tensor:
    """Maps between direct sums are block matrices of maps between the summands, solved (and
    cached) pair by pair: ``3 * V -> 3 * V`` is one small problem, not a 9x larger one."""
    size_in = rep_in.size
    columns = []
    offset_out = 0
    for r_out in _blocks(rep_out):
        offset_in = 0
        for r_in in _blocks(rep_in):
            q = _basis(r_in, r_out, method, rtol)[0]
            if q.shape[1]:
                rows = (offset_out + torch.arange(r_out.size))[:, None] * size_in + (
                    offset_in + torch.arange(r_in.size)
                )[None, :]
                block = torch.zeros(rep_out.size * size_in, q.shape[1], dtype=torch.float64)
                block[rows.reshape(-1)] = q
                columns.append(block)
            offset_in += r_in.size
        offset_out += r_out.size
    if not columns:
        return torch.zeros(rep_out.size * size_in, 0, dtype=torch.float64)
    return torch.cat(columns, dim=1)


@lru_cache(maxsize=256)
def _basis(rep_in: Rep, rep_out: Rep, method: str, rtol: float) -> tuple[Tensor, str]:
    size = rep_in.size * rep_out.size
    if (
        method in ("auto", "dense")
        and not (method == "auto" and (isinstance(rep_in, Sum) or isinstance(rep_out, Sum)))
        and (method == "dense" or size <= _dense_limit(rep_in.G))
    ):
        gram = _lie_gram_dense(rep_in, rep_out)
        if gram is not None:
            return _solve_dense(gram, rtol), "dense"
    cons = _Constraints(rep_in, rep_out)
    if cons.empty:
        return torch.eye(cons.size, dtype=torch.float64), "none"
    perms = cons.signed_perms() if method in ("auto", "permutation") else None
    if method == "permutation" and perms is None:
        raise ValueError(
            "method='permutation' needs rep_in and rep_out whose generators act by signed "
            "permutations (and a vanishing Lie algebra action); use method='auto'"
        )
    if perms is not None:
        return _sharing_to_basis(_orbits(cons.size, perms), cons.size), "permutation"
    if isinstance(rep_in, Sum) or isinstance(rep_out, Sum):
        return _solve_blocks(rep_in, rep_out, method, rtol), "blocks"
    if method == "dense" or (method == "auto" and cons.size <= _dense_limit(rep_in.G)):
        return _solve_dense(cons, rtol), "dense"
    return _solve_iterative(cons, rtol), "iterative"


def _dense_limit(G: Group) -> int:
    """Largest size solved densely in ``auto`` mode: smaller for finite groups small enough to
    average exactly, whose Reynolds operator beats an SVD already at a few hundred entries."""
    if G.is_finite:
        elements = G._elements_or_none()
        if elements is not None and elements.shape[0] <= _REYNOLDS_MAX:
            return min(DENSE_MAX, 256)
    return DENSE_MAX


def equivariant_basis(
    rep_in: Rep, rep_out: Rep, *, method: str = "auto", rtol: float = DEFAULT_RTOL
) -> Tensor:
    r"""Orthonormal basis of the linear maps ``W: (D_out, D_in)`` with
    :math:`\rho_{out}(g) W = W \rho_{in}(g)` for all ``g``.

    Column ``j`` reshaped with ``.reshape(D_out, D_in)`` is an equivariant ``W``; any
    equivariant ``W`` is ``(Q @ theta).reshape(D_out, D_in)`` for one ``theta: (r,)``.

    Args:
        rep_in: representation of the input, size ``D_in``.
        rep_out: representation of the output (same group), size ``D_out``.
        method: ``"auto"`` (signed permutations: orbits; sums: block by block; small: SVD;
            else iterative, see the module notes), or force ``"permutation"``, ``"dense"``
            or ``"iterative"``. (default: ``"auto"``)
        rtol: relative singular-value tolerance (see :data:`DEFAULT_RTOL`).
            (default: ``1e-7``)

    Returns:
        ``Q: (D_out * D_in, r)`` float64 with orthonormal columns (a copy of the cached one).

    Raises:
        RuntimeError: when the iterative solver does not converge.

    Example:
        >>> from geolayers.groups import Symmetric, Vector
        >>> V = Vector(Symmetric(5))
        >>> equivariant_basis(V, V).shape  # a I + b 11^T
        torch.Size([25, 2])
    """
    _check_reps(rep_in, rep_out)
    _check_options(method, rtol)
    return _basis(rep_in, rep_out, method, float(rtol))[0].clone()


def invariant_basis(rep: Rep, *, method: str = "auto", rtol: float = DEFAULT_RTOL) -> Tensor:
    r"""Orthonormal basis ``(D, r)`` of the invariant vectors, :math:`\rho(g) v = v`.

    The same as ``equivariant_basis(Scalar(G), rep)``; arguments as :func:`equivariant_basis`.

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> invariant_basis(Vector(SO3()) ** 2).shape  # the identity matrix
        torch.Size([9, 1])
    """
    if not isinstance(rep, Rep):
        raise TypeError(f"rep must be a Rep, got {describe(rep)}")
    return equivariant_basis(Scalar(rep.G), rep, method=method, rtol=rtol)


def parameter_sharing(rep_in: Rep, rep_out: Rep) -> ParameterSharing | None:
    """The equivariant maps of signed permutation representations as parameter sharing, or None.

    For representations whose generators act by signed permutations (see
    :attr:`Rep.is_signed_permutation`), an equivariant ``W`` ties its entries along orbits:
    ``W.reshape(-1)[k] = sign[k] * theta[index[k]]``. This is the sparse form of
    :func:`equivariant_basis` (whose columns are these orbit indicators, normalised), and lets a
    layer gather ``W`` from ``theta`` in ``O(D_in D_out)``.

    Returns:
        :class:`ParameterSharing` ``(index: (D_out D_in,) long, sign: (D_out D_in,) float64,
        num_params)``, or ``None`` when some generator does not act by a signed permutation.

    Example:
        >>> from geolayers.groups import Symmetric, Vector
        >>> V = Vector(Symmetric(3))
        >>> parameter_sharing(V, V).index.reshape(3, 3)
        tensor([[0, 1, 1],
                [1, 0, 1],
                [1, 1, 0]])
    """
    _check_reps(rep_in, rep_out)
    sharing = _sharing(rep_in, rep_out)
    if sharing is None:
        return None
    # Copies: the cached tensors must not be changed through the caller's.
    return ParameterSharing(sharing.index.clone(), sharing.sign.clone(), sharing.num_params)


@lru_cache(maxsize=128)
def _sharing(rep_in: Rep, rep_out: Rep) -> ParameterSharing | None:
    cons = _Constraints(rep_in, rep_out)
    perms = cons.signed_perms()
    return None if perms is None else _orbits(cons.size, perms)


class Projector:
    r"""Orthogonal projection :math:`P = Q Q^\top` onto the equivariant maps, matrix-free.

    ``proj(W)`` maps any ``W: (..., D_out, D_in)`` to the nearest equivariant map (Frobenius
    norm), in ``O(D_in D_out r)`` per matrix; :meth:`matrix` forms ``P`` densely.

    Attributes:
        basis: ``Q: (D_out * D_in, r)``.
        shape: ``(D_out, D_in)``.
    """

    def __init__(self, basis: Tensor, shape: tuple[int, int]) -> None:
        self.basis, self.shape = basis, shape

    def __call__(self, W: Tensor) -> Tensor:
        if not isinstance(W, Tensor) or tuple(W.shape[-2:]) != self.shape:
            raise ValueError(
                f"W must have shape (..., {self.shape[0]}, {self.shape[1]}), got {describe(W)}"
            )
        q = self.basis.to(W)
        flat = W.reshape(*W.shape[:-2], -1)
        return ((flat @ q) @ q.T).reshape(W.shape)

    def matrix(self) -> Tensor:
        """``P: (D_out D_in, D_out D_in)``."""
        return self.basis @ self.basis.T

    def __repr__(self) -> str:
        return f"Projector(shape={self.shape}, rank={self.basis.shape[1]})"


def equivariant_projector(
    rep_in: Rep, rep_out: Rep, *, method: str = "auto", rtol: float = DEFAULT_RTOL
) -> Projector:
    """The projector onto the equivariant maps ``rep_in -> rep_out`` (see :class:`Projector`);
    arguments as :func:`equivariant_basis`.

    Example:
        >>> from geolayers.groups import SO2, Vector
        >>> V = Vector(SO2())
        >>> W = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
        >>> equivariant_projector(V, V)(W).round(decimals=6)  # the nearest a I + b J
        tensor([[ 1.,  1.],
                [-1.,  1.]], dtype=torch.float64)
    """
    basis = equivariant_basis(rep_in, rep_out, method=method, rtol=rtol)
    return Projector(basis, (rep_out.size, rep_in.size))


def clear_basis_cache() -> None:
    """Forget every cached basis (for timing, or to free memory)."""
    _basis.cache_clear()
    _sharing.cache_clear()


def _solver_used(
    rep_in: Rep, rep_out: Rep, method: str = "auto", rtol: float = DEFAULT_RTOL
) -> str:
    """Which solver built the (cached) basis: for tests and benchmarks."""
    return _basis(rep_in, rep_out, method, float(rtol))[1]
