r"""Built-in groups, written against the same contract as a user's group (generators first).

* finite: :class:`Trivial`, :class:`Cyclic` ``C_n`` and :class:`Dihedral` ``D_n`` (rotations and
  reflections of the plane, 2x2), :class:`Symmetric` ``S_n`` (n x n permutation matrices);
* compact Lie groups: :class:`SO` / :class:`O` of any dimension and the aliases :class:`SO2`,
  :class:`O2`, :class:`SO3`, :class:`O3`, sampled from the Haar measure;
* :class:`DirectProduct` ``G_1 x G_2 x ...`` (also ``G1 * G2``), block diagonal.

Haar sampling of ``SO(n)`` / ``O(n)`` is the QR decomposition of a Gaussian matrix with the
signs of ``R``'s diagonal moved into ``Q`` (`"How to generate random matrices from the classical
compact groups" <https://arxiv.org/abs/math-ph/0609050>`_, Mezzadri, Notices AMS 2007, sec. 5);
without that fix the distribution is not uniform.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from geolayers._checks import check_positive_int
from geolayers.groups.group import MAX_ORDER, Group, GroupTooLargeError, _check_count

__all__ = [
    "Trivial",
    "Cyclic",
    "Dihedral",
    "Symmetric",
    "SO",
    "O",
    "SO2",
    "O2",
    "SO3",
    "O3",
    "DirectProduct",
    "rotation_2d",
    "permutation_matrices",
]


def rotation_2d(theta: Tensor | float) -> Tensor:
    """Counter-clockwise rotations of the plane, ``(...) -> (..., 2, 2)`` float64.

    Example:
        >>> rotation_2d(torch.pi / 2).round()
        tensor([[ 0., -1.],
                [ 1.,  0.]], dtype=torch.float64)
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def permutation_matrices(perms: Tensor) -> Tensor:
    """Permutation matrices ``(..., n, n)`` float64 of permutations ``(..., n)``.

    The matrix ``P`` of ``sigma`` sends ``e_j`` to ``e_{sigma(j)}``: ``P[sigma[j], j] = 1``, so
    ``(P x)[sigma[j]] = x[j]``.

    Example:
        >>> permutation_matrices(torch.tensor([1, 2, 0]))[:, 0]
        tensor([0., 1., 0.], dtype=torch.float64)
    """
    n = perms.shape[-1]
    return torch.nn.functional.one_hot(perms.long(), n).to(torch.float64).transpose(-1, -2)


def _check_limit(limit: int | None, order: int, what: str) -> None:
    limit = MAX_ORDER if limit is None else _check_count("limit", limit)
    if order > limit:
        raise GroupTooLargeError(
            f"{what} has {order} elements, more than limit={limit}; pass a larger limit to "
            f"elements() if you really want them all"
        )


class Trivial(Group):
    """The trivial group ``{I}`` acting on ``R^d``.

    Args:
        d: dimension of the defining representation. (default: ``1``)

    Example:
        >>> Trivial(3).order
        1
    """

    haar = True

    def __init__(self, d: int = 1) -> None:
        self.d = check_positive_int("d", d)
        super().__init__(d)


class Cyclic(Group):
    r"""The cyclic group ``C_n`` of rotations of the plane by multiples of :math:`2\pi/n`.

    Args:
        n: order, ``n >= 1``.

    Example:
        >>> Cyclic(6).order
        6
    """

    haar = True

    def __init__(self, n: int) -> None:
        self.n = check_positive_int("n", n)
        self.discrete_generators = rotation_2d(2 * math.pi / n)[None]
        super().__init__(n)

    @property
    def order(self) -> int:
        return self.n

    def elements(self, limit: int | None = None) -> Tensor:
        """The rotations by :math:`2\\pi k/n`, ``k = 0..n-1``, each computed directly."""
        if self._elements is None:
            _check_limit(limit, self.n, repr(self))
            self._elements = rotation_2d(
                2 * math.pi * torch.arange(self.n, dtype=torch.float64) / self.n
            )
        return self._elements


class Dihedral(Group):
    r"""The dihedral group ``D_n`` (order ``2n``): the ``n`` rotations of :class:`Cyclic` and the
    reflections :math:`R^k F` with :math:`F = \mathrm{diag}(1, -1)`.

    Args:
        n: number of rotations, ``n >= 1``.

    Example:
        >>> Dihedral(4).order
        8
    """

    haar = True

    def __init__(self, n: int) -> None:
        self.n = check_positive_int("n", n)
        flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        self.discrete_generators = torch.stack([rotation_2d(2 * math.pi / n), flip])
        super().__init__(n)

    @property
    def order(self) -> int:
        return 2 * self.n

    def elements(self, limit: int | None = None) -> Tensor:
        """The rotations :math:`R^k`, then the reflections :math:`R^k F`, ``k = 0..n-1``."""
        if self._elements is None:
            _check_limit(limit, 2 * self.n, repr(self))
            rot = rotation_2d(2 * math.pi * torch.arange(self.n, dtype=torch.float64) / self.n)
            self._elements = torch.cat([rot, rot @ self.discrete_generators[1]])
        return self._elements


class Symmetric(Group):
    """The symmetric group ``S_n`` as ``n x n`` permutation matrices.

    Generated by the transposition ``(0 1)`` and the cycle ``(0 1 ... n-1)``; :meth:`sample`
    draws uniform permutations directly, so ``S_n`` is usable far beyond the ``n!`` that
    :meth:`elements` can list.

    Args:
        n: number of permuted points, ``n >= 1``.

    Example:
        >>> Symmetric(4).order
        24
    """

    haar = True

    def __init__(self, n: int) -> None:
        self.n = check_positive_int("n", n)
        self.d = n
        gens = []
        if n >= 2:
            swap = torch.arange(n)
            swap[[0, 1]] = swap[[1, 0]]
            gens.append(swap)
        if n >= 3:
            gens.append((torch.arange(n) + 1) % n)
        self.discrete_generators = permutation_matrices(torch.stack(gens)) if gens else None
        super().__init__(n)

    @property
    def order(self) -> int:
        return math.factorial(self.n)

    def elements(self, limit: int | None = None) -> Tensor:
        """All ``n!`` permutation matrices, in lexicographic order of the permutations."""
        if self._elements is None:
            _check_limit(limit, math.factorial(self.n), repr(self))
            perms = torch.tensor(list(itertools.permutations(range(self.n))), dtype=torch.long)
            self._elements = permutation_matrices(perms)
        return self._elements

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` uniform random permutation matrices ``(n, d, d)``."""
        n = _check_count("n", n)
        keys = torch.rand(n, self.n, generator=generator, dtype=torch.float64)
        return permutation_matrices(torch.argsort(keys, dim=-1))


def _so_algebra(n: int) -> Tensor:
    """The basis ``E_ji - E_ij`` (``i < j``) of antisymmetric ``n x n`` matrices."""
    pairs = list(itertools.combinations(range(n), 2))
    out = torch.zeros(len(pairs), n, n, dtype=torch.float64)
    for k, (i, j) in enumerate(pairs):
        out[k, j, i], out[k, i, j] = 1.0, -1.0
    return out


def _haar_orthogonal(n: int, d: int, special: bool, generator: torch.Generator | None) -> Tensor:
    z = torch.randn(n, d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    # Mezzadri's fix: Q diag(sign(diag R)) is Haar on O(d); plain Q from LAPACK is not.
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    q = q * torch.where(sign == 0, 1.0, sign)[:, None, :]
    if special:
        # Right-multiplying by diag(-1, 1, ...) maps the det -1 half onto SO(d), preserving Haar.
        det = torch.sign(torch.linalg.det(q))
        q = torch.cat([q[..., :1] * det[:, None, None], q[..., 1:]], dim=-1)
    return q


class SO(Group):
    r"""The rotation group ``SO(n)``: Lie algebra :math:`E_{ji} - E_{ij}`, Haar sampling by QR.

    Args:
        n: dimension, ``n >= 2``.

    Example:
        >>> SO(3).lie_algebra.shape
        torch.Size([3, 3, 3])
    """

    haar = True

    def __init__(self, n: int) -> None:
        n = check_positive_int("n", n)
        if n < 2:
            raise ValueError(f"n must be >= 2 for SO(n), got {n}")
        self.n = n
        self.lie_algebra = _so_algebra(n)
        super().__init__(n)

    def _family(self) -> type:
        return SO

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` Haar-random rotations ``(n, d, d)`` (QR of a Gaussian matrix with sign fix)."""
        return _haar_orthogonal(_check_count("n", n), self.n, True, generator)


class O(Group):  # noqa: E742 -- the standard name of the group, as in EMLP
    r"""The orthogonal group ``O(n)``: the Lie algebra of ``SO(n)`` and the reflection
    :math:`\mathrm{diag}(-1, 1, \dots, 1)`; Haar sampling by QR.

    Args:
        n: dimension, ``n >= 1``.

    Example:
        >>> O(3).discrete_generators[0].diagonal()
        tensor([-1.,  1.,  1.], dtype=torch.float64)
    """

    haar = True

    def __init__(self, n: int) -> None:
        self.n = check_positive_int("n", n)
        self.d = self.n
        reflection = torch.eye(self.n, dtype=torch.float64)
        reflection[0, 0] = -1.0
        self.discrete_generators = reflection[None]
        self.lie_algebra = _so_algebra(self.n) if self.n >= 2 else None
        super().__init__(self.n)

    def _family(self) -> type:
        return O

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` Haar-random orthogonal matrices ``(n, d, d)``; det is +1 or -1 with prob. 1/2."""
        return _haar_orthogonal(_check_count("n", n), self.n, False, generator)


class SO2(SO):
    """``SO(2)``, sampled by a uniform angle; equal to ``SO(2)``.

    Example:
        >>> SO2() == SO(2)
        True
    """

    def __init__(self) -> None:
        super().__init__(2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` rotations by uniform angles in ``[0, 2 pi)``."""
        n = _check_count("n", n)
        return rotation_2d(2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64))


class O2(O):
    """``O(2)``: a uniform rotation, times ``diag(1, -1)`` with probability 1/2; equal to ``O(2)``.

    Example:
        >>> O2().order
        inf
    """

    def __init__(self) -> None:
        super().__init__(2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` Haar-random elements of ``O(2)``."""
        n = _check_count("n", n)
        rot = rotation_2d(2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64))
        flip = torch.randint(2, (n,), generator=generator).to(torch.float64) * -2 + 1
        return rot * torch.stack([torch.ones_like(flip), flip], -1)[:, None, :]


class SO3(SO):
    """``SO(3)``; equal to ``SO(3)``.

    Example:
        >>> torch.linalg.det(SO3().sample(2)).round()
        tensor([1., 1.], dtype=torch.float64)
    """

    def __init__(self) -> None:
        super().__init__(3)


class O3(O):
    """``O(3)``; equal to ``O(3)``.

    Example:
        >>> O3() == O(3)
        True
    """

    def __init__(self) -> None:
        super().__init__(3)


def _block_diag_batch(blocks: list[Tensor]) -> Tensor:
    """Block-diagonal ``(n, sum d_i, sum d_i)`` of a list of ``(n, d_i, d_i)``."""
    n = blocks[0].shape[0]
    size = sum(b.shape[-1] for b in blocks)
    out = torch.zeros(n, size, size, dtype=blocks[0].dtype)
    offset = 0
    for b in blocks:
        d = b.shape[-1]
        out[:, offset : offset + d, offset : offset + d] = b
        offset += d
    return out


class DirectProduct(Group):
    r"""The direct product :math:`G_1 \times G_2 \times \dots` acting block-diagonally on
    :math:`\mathbb{R}^{d_1 + d_2 + \dots}`. ``G1 * G2`` builds it too.

    Generators are those of each factor padded with the identity (discrete) or zeros (Lie
    algebra); samples and elements are block-diagonal products of the factors' own, so the
    product is Haar when every factor samples Haar.

    Args:
        *groups: the factors (nested products are flattened).

    Example:
        >>> (Cyclic(3) * Symmetric(3)).order
        18
    """

    def __init__(self, *groups: Group) -> None:
        if not groups:
            raise ValueError("DirectProduct needs at least one group, got none")
        flat: list[Group] = []
        for g in groups:
            if not isinstance(g, Group):
                raise TypeError(f"groups must be Group instances, got {type(g).__name__}")
            flat.extend(g.factors if isinstance(g, DirectProduct) else [g])
        self.factors = tuple(flat)
        sizes = [g.d for g in flat]
        self.d = sum(sizes)
        disc, lie, offset = [], [], 0
        for g in flat:
            for h in g.discrete_generators:
                m = torch.eye(self.d, dtype=torch.float64)
                m[offset : offset + g.d, offset : offset + g.d] = h
                disc.append(m)
            for a in g.lie_algebra:
                m = torch.zeros(self.d, self.d, dtype=torch.float64)
                m[offset : offset + g.d, offset : offset + g.d] = a
                lie.append(m)
            offset += g.d
        self.discrete_generators = torch.stack(disc) if disc else None
        self.lie_algebra = torch.stack(lie) if lie else None
        super().__init__(*flat)

    @property
    def haar_sampling(self) -> bool:
        """Haar when every factor samples Haar (samples are products of independent ones)."""
        return all(g.haar_sampling for g in self.factors)

    def __repr__(self) -> str:
        return " x ".join(
            f"({g!r})" if isinstance(g, DirectProduct) else repr(g) for g in self.factors
        )

    @property
    def order(self) -> int | float:
        return math.prod(g.order for g in self.factors)

    def elements(self, limit: int | None = None) -> Tensor:
        """All products, the first factor varying slowest (identity first)."""
        if not self.is_finite:
            raise ValueError(f"{self!r} is not finite (it has a Lie algebra): it has no elements()")
        if self._elements is None:
            _check_limit(limit, self.order, repr(self))
            elems = [g.elements(limit) for g in self.factors]
            grids = torch.meshgrid(*[torch.arange(e.shape[0]) for e in elems], indexing="ij")
            self._elements = _block_diag_batch(
                [e[i.reshape(-1)] for e, i in zip(elems, grids, strict=True)]
            )
        return self._elements

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Block-diagonal products of samples of each factor ``(n, d, d)``."""
        n = _check_count("n", n)
        return _block_diag_batch([g.sample(n, generator) for g in self.factors])
