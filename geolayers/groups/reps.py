r"""Representations of a :class:`~geolayers.groups.Group`, built by algebra on its defining one.

A representation :math:`\rho: G \to GL(\mathbb{R}^D)` is given by the matrices :meth:`Rep.rho`
of group elements (which are passed as their ``(n, d, d)`` defining matrices) and, for Lie groups,
the matrices :meth:`Rep.drho` of Lie algebra elements :math:`d\rho(A) = \frac{d}{dt}
\rho(e^{tA})|_{t=0}`. The building blocks, as in EMLP (`Finzi et al., ICML 2021
<https://arxiv.org/abs/2104.09459>`_):

===================  ===========================================  ==================================================
representation       :math:`\rho(g)`                              :math:`d\rho(A)`
===================  ===========================================  ==================================================
``Vector(G)``        :math:`g`                                    :math:`A`
``Scalar(G)``        :math:`1`                                    :math:`0`
``rep.T`` (dual)     :math:`\rho(g^{-1})^\top`                    :math:`-d\rho(A)^\top`
``r1 + r2``, ``3*V`` :math:`\rho_1(g) \oplus \rho_2(g)`           :math:`d\rho_1(A) \oplus d\rho_2(A)`
``r1 * r2``, ``V**2`` :math:`\rho_1(g) \otimes \rho_2(g)`         :math:`d\rho_1(A) \otimes I + I \otimes d\rho_2(A)`
``Regular(G)``       left multiplication on the elements          (finite groups only)
===================  ===========================================  ==================================================

Kronecker products are row-major (``torch.kron``): :math:`\rho_1 \otimes \rho_2` acts on a
``(D_1, D_2)`` array :math:`X` as :math:`\rho_1 X \rho_2^\top`, flattened by ``reshape(-1)``.

The operators simplify what they can without changing any matrix: sums and products are flat
(``(V + V) + V == 3 * V``), scalars drop out of tensor products, and the dual of a representation
whose matrices are orthogonal (``V`` of an orthogonal group, ``Regular``) is itself. Equality and
hashing are structural, which is what the basis cache keys on.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import torch
from torch import Tensor as _T  # ``Tensor`` here is the tensor-product representation

from geolayers._checks import describe
from geolayers.groups import _ops
from geolayers.groups.builtin import permutation_matrices
from geolayers.groups.group import Group, _MatrixIndex

__all__ = ["Rep", "Vector", "Scalar", "Dual", "Sum", "TensorProduct", "Tensor", "Regular"]


class Rep:
    """A representation of :attr:`G` of dimension :attr:`size`; subclasses below.

    Build them with ``Vector(G)``, ``Scalar(G)``, ``Regular(G)`` and ``+``, ``*`` (tensor
    product; an int multiplies into a direct sum), ``**`` and ``.T`` (dual).

    Example:
        >>> from geolayers.groups import SO3, Vector
        >>> V = Vector(SO3())
        >>> (V**2 + 2 * V).size
        15
    """

    G: Group
    size: int

    # -- matrices ------------------------------------------------------------------------------

    def rho(self, g: _T) -> _T:
        """Matrices of group elements: ``(n, d, d) -> (n, D, D)`` (or ``(d, d) -> (D, D)``).

        Example:
            >>> from geolayers.groups import Cyclic, Vector
            >>> V = Vector(Cyclic(4))
            >>> (V * V).rho(Cyclic(4).elements()).shape
            torch.Size([4, 4, 4])
        """
        g, batched = self._check_matrices("g", g)
        out = self._rho(g)
        return out if batched else out[0]

    def drho(self, A: _T) -> _T:
        """Matrices of Lie algebra elements: ``(k, d, d) -> (k, D, D)`` (or unbatched).

        Example:
            >>> from geolayers.groups import SO3, Scalar
            >>> Scalar(SO3()).drho(SO3().lie_algebra).abs().sum()
            tensor(0., dtype=torch.float64)
        """
        A, batched = self._check_matrices("A", A)
        out = self._drho(A)
        return out if batched else out[0]

    def _check_matrices(self, name: str, value: object) -> tuple[_T, bool]:
        d = self.G.d
        if not isinstance(value, _T) or not value.is_floating_point():
            raise TypeError(
                f"{name} must be a floating (n, {d}, {d}) tensor, got {describe(value)}"
            )
        if value.dim() not in (2, 3) or value.shape[-2:] != (d, d):
            raise ValueError(
                f"{name} must have shape (n, {d}, {d}) or ({d}, {d}), got {tuple(value.shape)}"
            )
        return (value, True) if value.dim() == 3 else (value[None], False)

    def _rho(self, g: _T) -> _T:
        raise NotImplementedError

    def _drho(self, A: _T) -> _T:
        raise NotImplementedError

    # -- structured images of the generators (for the basis solver) ---------------------------

    def element_ops(self, g: _T) -> list[_ops.Op]:
        """Lazy operators of ``rho(g_i)`` for elements ``g: (n, d, d)`` float64 (for the solver:
        a tensor product stays a Kronecker product of its factors' operators)."""
        raise NotImplementedError

    @cached_property
    def generator_ops(self) -> list[tuple[_ops.Op, _ops.Op]]:
        """For each discrete generator ``h``: lazy operators of ``rho(h)`` and ``rho(h^{-1})``."""
        gens = self.G.discrete_generators
        if gens.shape[0] == 0:
            return []
        fwd, inv = self.element_ops(gens), self.element_ops(self.G.inverse(gens))
        return list(zip(fwd, inv, strict=True))

    @cached_property
    def lie_ops(self) -> list[_ops.Op]:
        """For each Lie algebra generator ``A``: a lazy operator of ``drho(A)``."""
        return self._lie_ops()

    def _lie_ops(self) -> list[_ops.Op]:
        raise NotImplementedError

    @property
    def _orthogonal(self) -> bool:
        """True when every ``rho(g)`` is orthogonal, so the dual is the representation itself."""
        return False

    @cached_property
    def _lie_dense(self) -> _T:
        """``drho`` of the group's Lie algebra, ``(k, D, D)`` float64, once per representation
        (the dense basis route asks for it for the weight and again for the bias)."""
        return self.drho(self.G.lie_algebra)

    @cached_property
    def is_signed_permutation(self) -> bool:
        """True when every discrete generator acts by a signed permutation and ``drho`` vanishes
        on the Lie algebra (so every element acts by a signed permutation).

        Example:
            >>> from geolayers.groups import Cyclic, Vector
            >>> Vector(Cyclic(4)).is_signed_permutation, Vector(Cyclic(4)).is_permutation
            (True, False)
        """
        return all(op.signed_perm() is not None for op, _ in self.generator_ops) and all(
            op.is_zero for op in self.lie_ops
        )

    @cached_property
    def is_permutation(self) -> bool:
        """True when every element acts by a permutation matrix (see
        :attr:`is_signed_permutation`).

        Example:
            >>> from geolayers.groups import Symmetric, Vector
            >>> (Vector(Symmetric(3)) ** 2).is_permutation
            True
        """
        return self.is_signed_permutation and all(
            bool((op.signed_perm()[1] > 0).all()) for op, _ in self.generator_ops
        )

    # -- algebra -------------------------------------------------------------------------------

    def _check_same_group(self, other: Rep) -> None:
        if other.G != self.G:
            raise ValueError(
                f"representations of different groups cannot be combined: {self.G!r} and {other.G!r}"
            )

    def __add__(self, other: Any) -> Rep:
        if isinstance(other, int) and other == 0:  # sum([...]) starts from 0
            return self
        if not isinstance(other, Rep):
            return NotImplemented
        self._check_same_group(other)
        return _sum([self, other])

    def __radd__(self, other: Any) -> Rep:
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def __mul__(self, other: Any) -> Rep:
        if isinstance(other, int) and not isinstance(other, bool):
            if other < 1:
                raise ValueError(f"a representation can be repeated n >= 1 times, got n={other}")
            return _sum([self] * other)
        if not isinstance(other, Rep):
            return NotImplemented
        self._check_same_group(other)
        return _tensor([self, other])

    def __rmul__(self, other: Any) -> Rep:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.__mul__(other)
        return NotImplemented

    def __pow__(self, k: int) -> Rep:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"the exponent of a tensor power must be an int >= 0, got {k!r}")
        return Scalar(self.G) if k == 0 else _tensor([self] * k)

    @property
    def T(self) -> Rep:
        """The dual representation :math:`\\rho(g^{-1})^\\top`."""
        return _dual(self)

    # -- identity and display ------------------------------------------------------------------

    def _key(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Rep) and self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._key())

    def _expr(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self._expr()} of {self.G!r}"


class Vector(Rep):
    """The defining representation ``V``: ``rho(g) = g``.

    Args:
        G: the group.

    Example:
        >>> from geolayers.groups import SO3
        >>> Vector(SO3())
        V of SO(3)
    """

    def __init__(self, G: Group) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"G must be a Group, got {type(G).__name__}")
        self.G, self.size = G, G.d

    def _rho(self, g: _T) -> _T:
        return g

    def _drho(self, A: _T) -> _T:
        return A

    def element_ops(self, g: _T) -> list[_ops.Op]:
        return [_ops.Dense(x) for x in g]

    def _lie_ops(self) -> list[_ops.Op]:
        return [_ops.Dense(a) for a in self.G.lie_algebra]

    @property
    def _orthogonal(self) -> bool:
        return self.G.is_orthogonal

    def _key(self) -> tuple:
        return ("V", self.G)

    def _expr(self) -> str:
        return "V"


class Scalar(Rep):
    """The trivial representation: ``rho(g) = 1``, ``drho(A) = 0``.

    Args:
        G: the group.

    Example:
        >>> from geolayers.groups import SO3
        >>> Scalar(SO3()).size
        1
    """

    def __init__(self, G: Group) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"G must be a Group, got {type(G).__name__}")
        self.G, self.size = G, 1

    def _rho(self, g: _T) -> _T:
        return torch.ones(g.shape[0], 1, 1, dtype=g.dtype, device=g.device)

    def _drho(self, A: _T) -> _T:
        return torch.zeros(A.shape[0], 1, 1, dtype=A.dtype, device=A.device)

    def element_ops(self, g: _T) -> list[_ops.Op]:
        return [_ops.Identity(1) for _ in g]

    def _lie_ops(self) -> list[_ops.Op]:
        return [_ops.Zero(1) for _ in self.G.lie_algebra]

    @property
    def _orthogonal(self) -> bool:
        return True

    def _key(self) -> tuple:
        return ("Scalar", self.G)

    def _expr(self) -> str:
        return "Scalar"


class Dual(Rep):
    r"""The dual (contragredient) representation :math:`\rho^*(g) = \rho(g^{-1})^\top`,
    :math:`d\rho^*(A) = -d\rho(A)^\top`; ``rep.T`` builds it (and simplifies).

    Args:
        rep: the representation.

    Example:
        >>> from geolayers.groups import Group
        >>> G = Group.from_generators(discrete=[[[2.0, 0.0], [0.0, 0.5]]], lie=None, name="Scale")
        >>> Dual(Vector(G)).rho(G.discrete_generators[0]).diagonal()
        tensor([0.5000, 2.0000], dtype=torch.float64)
    """

    def __init__(self, rep: Rep) -> None:
        if not isinstance(rep, Rep):
            raise TypeError(f"rep must be a Rep, got {type(rep).__name__}")
        self.rep, self.G, self.size = rep, rep.G, rep.size

    def _rho(self, g: _T) -> _T:
        return self.rep._rho(self.G.inverse(g)).mT

    def _drho(self, A: _T) -> _T:
        return -self.rep._drho(A).mT

    def element_ops(self, g: _T) -> list[_ops.Op]:
        return [op.t() for op in self.rep.element_ops(self.G.inverse(g))]

    def _lie_ops(self) -> list[_ops.Op]:
        return [_ops.Scale(-1.0, op.t()) for op in self.rep.lie_ops]

    @property
    def _orthogonal(self) -> bool:
        return self.rep._orthogonal

    def _key(self) -> tuple:
        return ("Dual", self.rep._key())

    def _expr(self) -> str:
        inner = self.rep._expr()
        return f"{inner}.T" if isinstance(self.rep, (Vector, Regular)) else f"({inner}).T"


class Sum(Rep):
    r"""The direct sum :math:`\rho_1(g) \oplus \rho_2(g) \oplus \dots` (block diagonal); ``r1 +
    r2`` and ``3 * V`` build it.

    Args:
        *reps: the summands, of one group (nested sums are flattened).

    Example:
        >>> from geolayers.groups import SO3
        >>> V = Vector(SO3())
        >>> Sum(V, V) == 2 * V
        True
    """

    def __init__(self, *reps: Rep) -> None:
        parts = _flatten(reps, Sum, "reps")
        self.parts, self.G = tuple(parts), parts[0].G
        self.size = sum(r.size for r in parts)

    def _rho(self, g: _T) -> _T:
        return _block_diag([r._rho(g) for r in self.parts])

    def _drho(self, A: _T) -> _T:
        return _block_diag([r._drho(A) for r in self.parts])

    def element_ops(self, g: _T) -> list[_ops.Op]:
        per_part = [r.element_ops(g) for r in self.parts]
        return [_ops.BlockDiag(list(ops)) for ops in zip(*per_part, strict=True)]

    def _lie_ops(self) -> list[_ops.Op]:
        per_part = [r.lie_ops for r in self.parts]
        return [
            _ops.BlockDiag([p[i] for p in per_part]) for i in range(self.G.lie_algebra.shape[0])
        ]

    @property
    def _orthogonal(self) -> bool:
        return all(r._orthogonal for r in self.parts)

    def _key(self) -> tuple:
        return ("Sum", tuple(r._key() for r in self.parts))

    def _expr(self) -> str:
        out = []
        for rep, count in _runs(self.parts):
            out.append(rep._expr() if count == 1 else f"{count}*{_paren(rep, Sum)}")
        return " + ".join(out)


class TensorProduct(Rep):
    r"""The tensor product :math:`\rho_1(g) \otimes \rho_2(g) \otimes \dots` (row-major
    Kronecker), :math:`d\rho = \sum_i I \otimes \dots \otimes d\rho_i(A) \otimes \dots \otimes
    I`; ``r1 * r2`` and ``V**k`` build it. Also importable as ``Tensor``.

    Args:
        *reps: the factors, of one group (nested products are flattened).

    Example:
        >>> from geolayers.groups import SO3
        >>> V = Vector(SO3())
        >>> TensorProduct(V, V) == V**2
        True
    """

    def __init__(self, *reps: Rep) -> None:
        parts = _flatten(reps, TensorProduct, "reps")
        self.parts, self.G = tuple(parts), parts[0].G
        self.size = math.prod(r.size for r in parts)

    def _rho(self, g: _T) -> _T:
        out = self.parts[0]._rho(g)
        for r in self.parts[1:]:
            m = r._rho(g)
            n, a, b = out.shape[0], out.shape[1], m.shape[1]
            out = torch.einsum("nij,nkl->nikjl", out, m).reshape(n, a * b, a * b)
        return out

    def _drho(self, A: _T) -> _T:
        mats = [r._drho(A) for r in self.parts]
        sizes = [r.size for r in self.parts]
        out = 0
        for i, m in enumerate(mats):
            before, after = math.prod(sizes[:i]), math.prod(sizes[i + 1 :])
            # torch.kron of (n, k, k) with (1, s, s) is the batch of I_before (x) m (x) I_after
            # (it needs contiguous inputs: a dual's matrices are transposed views).
            term = m.contiguous()
            if before > 1:
                term = torch.kron(torch.eye(before, dtype=A.dtype, device=A.device)[None], term)
            if after > 1:
                term = torch.kron(term, torch.eye(after, dtype=A.dtype, device=A.device)[None])
            out = out + term
        return out

    def element_ops(self, g: _T) -> list[_ops.Op]:
        per_part = [r.element_ops(g) for r in self.parts]
        return [_ops.Kron(list(ops)) for ops in zip(*per_part, strict=True)]

    def _lie_ops(self) -> list[_ops.Op]:
        per_part = [r.lie_ops for r in self.parts]
        eyes = [_ops.Identity(r.size) for r in self.parts]
        out = []
        for i in range(self.G.lie_algebra.shape[0]):
            terms = [
                _ops.Kron(eyes[:j] + [per_part[j][i]] + eyes[j + 1 :])
                for j in range(len(self.parts))
            ]
            out.append(_ops.Add(terms))
        return out

    @property
    def _orthogonal(self) -> bool:
        return all(r._orthogonal for r in self.parts)

    def _key(self) -> tuple:
        return ("Tensor", tuple(r._key() for r in self.parts))

    def _expr(self) -> str:
        out = []
        for rep, count in _runs(self.parts):
            base = _paren(rep, (Sum, TensorProduct))
            out.append(base if count == 1 else f"{base}**{count}")
        return " * ".join(out)


#: ``Tensor(V, V)`` reads as in EMLP; the class is :class:`TensorProduct`.
Tensor = TensorProduct


class Regular(Rep):
    r"""The regular representation of a finite group: :math:`\rho(g) e_h = e_{gh}` on the basis
    indexed by :meth:`Group.elements` (so ``size == |G|``).

    Args:
        G: a finite group.
        limit: largest order accepted; ``rho`` matrices are ``|G| x |G|``. (default:
            :data:`~geolayers.groups.MAX_ORDER`)

    Raises:
        ValueError: for a group with a Lie algebra, or (``GroupTooLargeError``) one with more
            than ``limit`` elements.

    Example:
        >>> from geolayers.groups import Dihedral
        >>> Regular(Dihedral(8)).size
        16
    """

    def __init__(self, G: Group, limit: int | None = None) -> None:
        if not isinstance(G, Group):
            raise TypeError(f"G must be a Group, got {type(G).__name__}")
        if not G.is_finite:
            raise ValueError(f"the regular representation needs a finite group, got {G!r}")
        self.G = G
        self.elements = G.elements(limit)
        self.size = self.elements.shape[0]
        self._index = _MatrixIndex(self.elements, 1e-6 * max(1.0, float(self.elements.abs().max())))

    def _perms(self, g: _T) -> _T:
        """``(n, |G|)`` indices of ``g e_k`` for each element ``e_k``."""
        prods = g.to(torch.float64)[:, None] @ self.elements[None]
        idx = self._index.find(prods.reshape(-1, self.G.d, self.G.d)).reshape(g.shape[0], -1)
        if bool((idx < 0).any()):
            bad = int((idx < 0).any(dim=1).nonzero()[0])
            raise ValueError(f"g[{bad}] is not an element of {self.G!r}")
        return idx

    def _rho(self, g: _T) -> _T:
        return permutation_matrices(self._perms(g)).to(g.dtype)

    def _drho(self, A: _T) -> _T:
        return torch.zeros(A.shape[0], self.size, self.size, dtype=A.dtype, device=A.device)

    def element_ops(self, g: _T) -> list[_ops.Op]:
        return [_ops.Perm(perm) for perm in self._perms(g)] if g.shape[0] else []

    def _lie_ops(self) -> list[_ops.Op]:
        return [_ops.Zero(self.size) for _ in self.G.lie_algebra]

    @property
    def _orthogonal(self) -> bool:
        return True

    def _key(self) -> tuple:
        return ("Regular", self.G)

    def _expr(self) -> str:
        return "Regular"


# -- helpers ------------------------------------------------------------------------------------


def _flatten(reps: tuple, kind: type, name: str) -> list[Rep]:
    if len(reps) == 1 and isinstance(reps[0], (list, tuple)):
        reps = tuple(reps[0])
    if not reps:
        raise ValueError(f"{name} must hold at least one representation, got none")
    out: list[Rep] = []
    for r in reps:
        if not isinstance(r, Rep):
            raise TypeError(f"{name} must be Rep instances, got {type(r).__name__}")
        out.extend(r.parts if isinstance(r, kind) else [r])
    for r in out[1:]:
        out[0]._check_same_group(r)
    return out


def _sum(reps: list[Rep]) -> Rep:
    parts = _flatten(tuple(reps), Sum, "reps")
    return parts[0] if len(parts) == 1 else Sum(*parts)


def _tensor(reps: list[Rep]) -> Rep:
    parts = _flatten(tuple(reps), TensorProduct, "reps")
    # Kronecker with the 1x1 identity changes no matrix: scalars drop out.
    kept = [r for r in parts if not isinstance(r, Scalar)]
    if not kept:
        return parts[0]
    return kept[0] if len(kept) == 1 else TensorProduct(*kept)


def _dual(rep: Rep) -> Rep:
    if rep._orthogonal:
        return rep
    if isinstance(rep, Dual):
        return rep.rep
    if isinstance(rep, Sum):
        return _sum([_dual(r) for r in rep.parts])
    if isinstance(rep, TensorProduct):
        return _tensor([_dual(r) for r in rep.parts])
    return Dual(rep)


def _runs(parts: tuple[Rep, ...]) -> list[tuple[Rep, int]]:
    out: list[tuple[Rep, int]] = []
    for r in parts:
        if out and out[-1][0] == r:
            out[-1] = (r, out[-1][1] + 1)
        else:
            out.append((r, 1))
    return out


def _paren(rep: Rep, kinds: type | tuple[type, ...]) -> str:
    return f"({rep._expr()})" if isinstance(rep, kinds) else rep._expr()


def _block_diag(blocks: list[_T]) -> _T:
    n = blocks[0].shape[0]
    size = sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros(n, size, size)
    offset = 0
    for b in blocks:
        d = b.shape[-1]
        out[:, offset : offset + d, offset : offset + d] = b
        offset += d
    return out
