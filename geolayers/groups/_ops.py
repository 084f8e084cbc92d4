"""Lazy linear operators for the equivariant-basis solver (private).

A representation of a tensor product ``V**4`` of ``S_10`` has matrices of size ``10^4 x 10^4``
(800 MB each in float64) although it is only a Kronecker product of four ``10 x 10``
permutations. The solver therefore never forms ``rho(h)`` of a compound representation: every
representation describes the image of each generator as a tree of these operators (dense
leaves, block diagonals for sums, Kronecker products for tensor products), which can

* multiply a block of vectors, ``op.mm(X)`` for ``X: (D, m)``, in ``O(D m sum_i D_i)`` time and
  ``O(D m)`` memory (the matrix-free Krylov solver);
* say whether it is a signed permutation, ``op.signed_perm()``, by index arithmetic on its
  factors instead of scanning a ``D x D`` matrix (the orbit solver);
* be made dense, ``op.dense()`` (the SVD solver, for small sizes only).

Row-major convention throughout: the Kronecker product ``A (x) B`` acts on ``X.reshape(Da, Db)``
as ``A X B^T``, which is what ``torch.kron`` computes.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import Tensor

__all__ = ["Op", "Dense", "Identity", "Zero", "Perm", "BlockDiag", "Kron", "Add", "Scale"]

#: Entries within this distance of 0 or +-1 count as exact when a dense matrix is recognised
#: as a signed permutation (cos(pi/2) is 6e-17 in float64, not 0).
PERM_ATOL = 1e-9

#: Adjacent Kronecker factors are merged into one dense factor up to this size (see Kron.mm).
MERGE_SIZE = 64


def signed_permutation(matrix: Tensor, atol: float = PERM_ATOL) -> tuple[Tensor, Tensor] | None:
    """``(perm, sign)`` with ``matrix[perm[j], j] == sign[j]`` and all other entries 0, or None.

    Args:
        matrix: ``(D, D)``.
        atol: tolerance on the entries. (default: ``1e-9``)

    Returns:
        ``perm: (D,) long`` and ``sign: (D,) float64`` with entries +-1, so that
        ``matrix @ e_j = sign[j] e_{perm[j]}``; ``None`` if ``matrix`` is not a signed permutation.
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        return None
    size = matrix.shape[0]
    if size == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    mag = matrix.abs()
    perm = mag.argmax(dim=0)
    top = matrix.gather(0, perm[None]).squeeze(0)
    # One entry +-1 per column, the rest 0, and no row hit twice.
    if not bool(((top.abs() - 1).abs() <= atol).all()):
        return None
    if float((mag.sum(dim=0) - top.abs()).max()) > atol * size:
        return None
    if torch.unique(perm).numel() != size:
        return None
    return perm, torch.sign(top).to(torch.float64)


def _apply_axis(op: Op, x: Tensor, axis: int) -> Tensor:
    """Apply ``op`` to axis ``axis`` of ``x`` (the other axes are batch)."""
    moved = x.movedim(axis, 0)
    shape = moved.shape
    out = op.mm(moved.reshape(shape[0], -1)).reshape(shape)
    return out.movedim(0, axis)


class Op:
    """A linear map of ``R^size``, applied to blocks ``X: (size, m)`` with :meth:`mm`."""

    size: int

    def mm(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def t(self) -> Op:
        raise NotImplementedError

    def trace(self) -> float:
        return float(self.dense().trace())

    def dense(self) -> Tensor:
        return self.mm(torch.eye(self.size, dtype=torch.float64))

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        return None

    @property
    def is_zero(self) -> bool:
        return False

    @property
    def is_identity(self) -> bool:
        return False


class Dense(Op):
    """An explicit ``(D, D)`` matrix."""

    def __init__(self, matrix: Tensor) -> None:
        self.matrix = matrix.to(torch.float64).contiguous()
        self.size = matrix.shape[0]

    def mm(self, x: Tensor) -> Tensor:
        return self.matrix @ x

    def t(self) -> Op:
        return Dense(self.matrix.T.contiguous())

    def trace(self) -> float:
        return float(self.matrix.trace())

    def dense(self) -> Tensor:
        return self.matrix

    @cached_property
    def _perm(self) -> tuple[Tensor, Tensor] | None:
        return signed_permutation(self.matrix)

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        return self._perm

    @cached_property
    def is_zero(self) -> bool:
        return not bool(self.matrix.any())


class Identity(Op):
    def __init__(self, size: int) -> None:
        self.size = size

    def mm(self, x: Tensor) -> Tensor:
        return x

    def t(self) -> Op:
        return self

    def trace(self) -> float:
        return float(self.size)

    def signed_perm(self) -> tuple[Tensor, Tensor]:
        return torch.arange(self.size), torch.ones(self.size, dtype=torch.float64)

    @property
    def is_zero(self) -> bool:
        return self.size == 0

    @property
    def is_identity(self) -> bool:
        return True


class Zero(Op):
    def __init__(self, size: int) -> None:
        self.size = size

    def mm(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def t(self) -> Op:
        return self

    def trace(self) -> float:
        return 0.0

    @property
    def is_zero(self) -> bool:
        return True


class Perm(Op):
    """The signed permutation ``e_j -> sign[j] e_{perm[j]}``, applied by indexing."""

    def __init__(self, perm: Tensor, sign: Tensor | None = None) -> None:
        self.perm = perm.to(torch.long)
        self.sign = torch.ones(perm.numel(), dtype=torch.float64) if sign is None else sign
        self.size = perm.numel()

    def mm(self, x: Tensor) -> Tensor:
        out = torch.empty_like(x)
        out[self.perm] = x * self.sign.to(x.dtype)[:, None]
        return out

    def t(self) -> Op:
        # P e_j = s_j e_{p_j}  =>  P^T e_{p_j} = s_j e_j.
        inverse = torch.empty_like(self.perm)
        inverse[self.perm] = torch.arange(self.size)
        sign = torch.empty_like(self.sign)
        sign[self.perm] = self.sign
        return Perm(inverse, sign)

    def trace(self) -> float:
        fixed = self.perm == torch.arange(self.size)
        return float(self.sign[fixed].sum())

    def signed_perm(self) -> tuple[Tensor, Tensor]:
        return self.perm, self.sign


class BlockDiag(Op):
    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.size = sum(op.size for op in ops)

    def mm(self, x: Tensor) -> Tensor:
        parts = torch.split(x, [op.size for op in self.ops], dim=0)
        return torch.cat([op.mm(p) for op, p in zip(self.ops, parts, strict=True)], dim=0)

    def t(self) -> Op:
        return BlockDiag([op.t() for op in self.ops])

    def trace(self) -> float:
        return sum(op.trace() for op in self.ops)

    def dense(self) -> Tensor:
        return torch.block_diag(*[op.dense() for op in self.ops])

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        perms, signs, offset = [], [], 0
        for op in self.ops:
            found = op.signed_perm()
            if found is None:
                return None
            perms.append(found[0] + offset)
            signs.append(found[1])
            offset += op.size
        return torch.cat(perms), torch.cat(signs)

    @property
    def is_zero(self) -> bool:
        return all(op.is_zero for op in self.ops)

    @property
    def is_identity(self) -> bool:
        return all(op.is_identity for op in self.ops)


class Kron(Op):
    """``ops[0] (x) ops[1] (x) ...`` (row-major), applied one factor at a time."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.size = math.prod(op.size for op in ops)

    @cached_property
    def _mm_factors(self) -> list[Op]:
        """The factors, nested products flattened and runs of small ones merged into one dense
        factor: applying a 64 x 64 matrix costs less than the reshapes of three 4 x 4 ones."""
        flat: list[Op] = []
        for op in self.ops:
            flat.extend(op._mm_factors if isinstance(op, Kron) else [op])
        out: list[Op] = []
        for op in flat:
            prev = out[-1] if out else None
            if (
                prev is not None
                and not op.is_identity
                and not prev.is_identity
                and prev.size * op.size <= MERGE_SIZE
            ):
                out[-1] = Dense(torch.kron(prev.dense(), op.dense()))
            else:
                out.append(op)
        return out

    def mm(self, x: Tensor) -> Tensor:
        m = x.shape[1]
        factors = self._mm_factors
        y = x.reshape(*[op.size for op in factors], m)
        for axis, op in enumerate(factors):
            if not op.is_identity:
                y = _apply_axis(op, y, axis)
        return y.reshape(self.size, m)

    def t(self) -> Op:
        return Kron([op.t() for op in self.ops])

    def trace(self) -> float:
        return math.prod(op.trace() for op in self.ops)

    def dense(self) -> Tensor:
        out = torch.ones(1, 1, dtype=torch.float64)
        for op in self.ops:
            out = torch.kron(out, op.dense())
        return out

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        # (A (x) B) e_{i Db + j} = (A e_i) (x) (B e_j) = s_i t_j e_{p_i Db + q_j}.
        perm = torch.zeros(1, dtype=torch.long)
        sign = torch.ones(1, dtype=torch.float64)
        for op in self.ops:
            found = op.signed_perm()
            if found is None:
                return None
            p, s = found
            perm = (perm[:, None] * op.size + p[None, :]).reshape(-1)
            sign = (sign[:, None] * s[None, :]).reshape(-1)
        return perm, sign

    @property
    def is_zero(self) -> bool:
        return any(op.is_zero for op in self.ops)

    @property
    def is_identity(self) -> bool:
        return all(op.is_identity for op in self.ops)


class Add(Op):
    def __init__(self, ops: list[Op]) -> None:
        self.ops = [op for op in ops if not op.is_zero] or ops[:1]
        self.size = ops[0].size

    def mm(self, x: Tensor) -> Tensor:
        out = self.ops[0].mm(x)
        for op in self.ops[1:]:
            out = out + op.mm(x)
        return out

    def t(self) -> Op:
        return Add([op.t() for op in self.ops])

    def trace(self) -> float:
        return sum(op.trace() for op in self.ops)

    def dense(self) -> Tensor:
        return sum(op.dense() for op in self.ops[1:]) + self.ops[0].dense()

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        return self.ops[0].signed_perm() if len(self.ops) == 1 else None

    @property
    def is_zero(self) -> bool:
        # Conservative: only a sum of zero operators is known to vanish.
        return all(op.is_zero for op in self.ops)


class Scale(Op):
    def __init__(self, scale: float, op: Op) -> None:
        self.scale, self.op, self.size = float(scale), op, op.size

    def mm(self, x: Tensor) -> Tensor:
        return self.scale * self.op.mm(x)

    def t(self) -> Op:
        return Scale(self.scale, self.op.t())

    def trace(self) -> float:
        return self.scale * self.op.trace()

    def dense(self) -> Tensor:
        return self.scale * self.op.dense()

    def signed_perm(self) -> tuple[Tensor, Tensor] | None:
        found = self.op.signed_perm() if abs(self.scale) == 1 else None
        return None if found is None else (found[0], found[1] * self.scale)

    @property
    def is_zero(self) -> bool:
        return self.scale == 0 or self.op.is_zero
