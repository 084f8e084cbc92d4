r"""Matrix groups given by generators in a defining representation.

A group is the data of `"A Practical Method for Constructing Equivariant Multilayer Perceptrons
for Arbitrary Matrix Groups" <https://arxiv.org/abs/2104.09459>`_ (Finzi, Welling, Wilson, ICML
2021): matrices of a defining representation on :math:`\mathbb{R}^d`,

* ``discrete_generators``: ``(h, d, d)`` elements :math:`h_1, \dots, h_h` that generate the
  discrete part of the group (for a finite group, the whole group), and/or
* ``lie_algebra``: ``(k, d, d)`` generators :math:`A_1, \dots, A_k` of the Lie algebra, so that
  :math:`\exp(\sum_i t_i A_i)` covers the identity component.

Everything else (representations, the equivariant linear basis, equivariance tests) is derived
from that data, so a user defines a group in a few lines:

.. code-block:: python

    class Z4(Group):  # rotations of the plane by multiples of 90 degrees
        discrete_generators = [[[0.0, -1.0], [1.0, 0.0]]]

    Q8 = Group.from_generators(discrete=[i_matrix, j_matrix], name="Q8")

Subclasses that take arguments set the generators in ``__init__`` and finish with
``super().__init__(*args)``; the arguments name the group in ``repr`` and in the equality used by
the caches (as ``Dihedral(4)``). Everything is float64: the nullspace computations that build on
it count a constraint as satisfied up to a relative 1e-7 (``geolayers.groups.DEFAULT_RTOL``), so
generators should be accurate to well below that (``math.cos``, not ``0.7071``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from geolayers._checks import describe
from geolayers.groups._ops import PERM_ATOL
from geolayers.groups._ops import signed_permutation as _signed_permutation

__all__ = [
    "MAX_ORDER",
    "Group",
    "GroupTooLargeError",
    "as_signed_permutation",
    "is_permutation_matrix",
    "is_signed_permutation_matrix",
]

#: Largest number of elements :meth:`Group.elements` enumerates unless told otherwise.
MAX_ORDER = 10_000

#: Length of the random words that sample groups too large to enumerate (see Group.sample).
_WORD_LENGTH = 64


class GroupTooLargeError(ValueError):
    """The closure of a group's generators passed the element limit."""


def _as_generators(name: str, value: Any, d: int | None) -> Tensor | None:
    """``value`` as a float64 ``(h, d, d)`` tensor; None stays None, a single matrix gets a batch."""
    if value is None:
        return None
    try:
        mats = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a (h, d, d) array of matrices, got {describe(value)}"
        ) from err
    mats = mats.detach().cpu().clone()
    if mats.dim() == 2 and mats.numel() > 0:
        mats = mats[None]
    if mats.numel() == 0 and d is not None:
        return torch.zeros(0, d, d, dtype=torch.float64)
    if mats.dim() != 3 or mats.shape[1] != mats.shape[2]:
        raise ValueError(f"{name} must have shape (h, d, d), got {tuple(mats.shape)}")
    if not bool(torch.isfinite(mats).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return mats


class _MatrixIndex:
    """Finds matrices in a table up to a tolerance, vectorised.

    Rounding entries to a grid to hash them fails for values that fall next to a grid boundary;
    instead every matrix is projected on one fixed random direction, the table is sorted by that
    key, and a query compares against the few table entries whose key lies within the tolerance.
    """

    def __init__(self, table: Tensor, atol: float) -> None:
        flat = table.reshape(table.shape[0], -1).to(torch.float64)
        gen = torch.Generator().manual_seed(12345)
        self.direction = torch.randn(flat.shape[1], generator=gen, dtype=torch.float64)
        self.atol = atol
        # |u . (a - b)| <= |u|_1 max|a - b|: matching matrices have keys this close.
        self.window = atol * float(self.direction.abs().sum())
        keys = flat @ self.direction
        self.keys, self.order = torch.sort(keys)
        self.flat = flat[self.order]

    def find(self, queries: Tensor) -> Tensor:
        """``(q,)`` long: smallest table index of a match of each query ``(q, d, d)``, or -1."""
        flat = queries.reshape(queries.shape[0], self.direction.shape[0]).to(torch.float64)
        size = self.keys.shape[0]
        keys = flat @ self.direction
        lo = torch.searchsorted(self.keys, keys - self.window, side="left")
        hi = torch.searchsorted(self.keys, keys + self.window, side="right")
        found = torch.full((flat.shape[0],), size, dtype=torch.long)
        count = hi - lo
        for offset in range(int(count.max()) if count.numel() else 0):
            todo = (count > offset).nonzero().squeeze(1)
            pos = lo[todo] + offset
            close = (self.flat[pos] - flat[todo]).abs().amax(dim=1) <= self.atol
            hits = todo[close]
            found[hits] = torch.minimum(found[hits], self.order[pos[close]])
        found[found == size] = -1
        return found


def _closure(generators: Tensor, limit: int, what: str) -> Tensor:
    """All products of ``generators`` ``(h, d, d)``, identity first, by breadth-first search."""
    d = generators.shape[-1]
    scale = max(1.0, float(generators.abs().max())) if generators.numel() else 1.0
    atol = 1e-6 * scale
    eye = torch.eye(d, dtype=torch.float64)[None]

    def keys(mats: Tensor) -> list[bytes]:
        grid = torch.round(mats.reshape(mats.shape[0], d * d) / atol).to(torch.int64).numpy()
        return [row.tobytes() for row in grid]

    seen = set(keys(eye))
    levels, count, frontier = [eye], 1, eye
    while frontier.shape[0] > 0:
        cand = (frontier[:, None] @ generators[None]).reshape(-1, d, d)
        new = []
        for i, key in enumerate(keys(cand)):
            if key not in seen:
                seen.add(key)
                new.append(i)
        count += len(new)
        if count > limit:
            raise GroupTooLargeError(
                f"the closure of the generators of {what} has more than limit={limit} elements; "
                f"the group may be infinite or too large to enumerate. Pass a larger limit, or "
                f"override elements()/sample()/order if it is known in closed form"
            )
        frontier = cand[new]
        levels.append(frontier)
    table = torch.cat(levels)
    # Hashing rounded entries can, very rarely, split one element whose entries sit on a grid
    # boundary into two keys: a tolerant pass keeps the first copy of each.
    first = _MatrixIndex(table, atol).find(table)
    return table[first == torch.arange(table.shape[0])]


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class Group:
    r"""A matrix group, defined by generators of a ``d``-dimensional defining representation.

    Set ``discrete_generators`` ``(h, d, d)`` and/or ``lie_algebra`` ``(k, d, d)`` (class
    attributes, or instance attributes before calling ``super().__init__(*args)``), or call
    :meth:`from_generators`. A group with an empty Lie algebra is finite: its elements are the
    closure of the discrete generators (at most ``MAX_ORDER`` unless :meth:`elements` is told more).

    Subclasses may override :meth:`sample` (built-in Lie groups sample Haar), :meth:`elements`,
    :attr:`order` and :meth:`act` (data that is not a plain vector: images, point clouds).

    Args:
        *args: the arguments that define the group, shown by ``repr`` and compared by ``==``.

    Attributes:
        discrete_generators: ``(h, d, d)`` float64, ``h >= 0``.
        lie_algebra: ``(k, d, d)`` float64, ``k >= 0``.
        d: size of the defining representation.

    Example:
        >>> class Z4(Group):
        ...     discrete_generators = [[[0.0, -1.0], [1.0, 0.0]]]
        >>> Z4().order
        4
    """

    discrete_generators: Tensor
    lie_algebra: Tensor
    d: int
    #: Whether :meth:`sample` draws from the Haar (uniform) measure; built-in groups set it.
    haar: bool = False

    def __init__(self, *args: Any) -> None:
        d = getattr(self, "d", None)
        disc = _as_generators("discrete_generators", getattr(self, "discrete_generators", None), d)
        lie = _as_generators("lie_algebra", getattr(self, "lie_algebra", None), d)
        dims = {m.shape[-1] for m in (disc, lie) if m is not None and m.numel() > 0}
        if d is not None:
            dims.add(int(d))
        if len(dims) != 1:
            raise ValueError(
                "discrete_generators and lie_algebra must be (h, d, d) and (k, d, d) with the same "
                f"d (or set d for a group without generators), got dimensions {sorted(dims)}"
            )
        self.d = dims.pop()
        empty = torch.zeros(0, self.d, self.d, dtype=torch.float64)
        self.discrete_generators = disc if disc is not None and disc.numel() else empty
        self.lie_algebra = lie if lie is not None and lie.numel() else empty.clone()
        dets = torch.linalg.det(self.discrete_generators)
        if bool((dets.abs() < 1e-12).any()):
            bad = int((dets.abs() < 1e-12).nonzero()[0])
            raise ValueError(f"discrete_generators[{bad}] is singular, so not a group element")
        self._args = tuple(args)
        if not hasattr(self, "_name"):
            self._name = self._family().__name__
        self._elements: Tensor | None = None
        self._hash: int | None = None
        self._orthogonal: bool | None = None
        self._too_large = False

    @classmethod
    def from_generators(
        cls,
        discrete: Any = None,
        lie: Any = None,
        *,
        name: str = "Group",
        d: int | None = None,
    ) -> Group:
        r"""A group from its generators, without writing a class.

        Args:
            discrete: ``(h, d, d)`` discrete generators. (default: none)
            lie: ``(k, d, d)`` Lie algebra generators. (default: none)
            name: shown by ``repr``, and part of the identity of the group. (default: ``"Group"``)
            d: size of the defining representation; needed only without generators.

        Example:
            >>> Group.from_generators(discrete=-torch.eye(3)[None], name="Z2").order
            2
        """
        group = cls.__new__(cls)
        group._name = str(name)
        if discrete is not None:
            group.discrete_generators = discrete
        if lie is not None:
            group.lie_algebra = lie
        if d is not None:
            group.d = d
        Group.__init__(group)
        return group

    # -- structure ---------------------------------------------------------------------------

    @property
    def is_finite(self) -> bool:
        """True when the Lie algebra is empty (or zero): the group is its discrete generators'
        closure (assumed finite; :meth:`elements` raises if the closure passes its limit)."""
        return not bool(self.lie_algebra.any())

    @property
    def is_orthogonal(self) -> bool:
        """True when the discrete generators are orthogonal and the Lie algebra antisymmetric,
        so every element satisfies :math:`g^{-1} = g^\\top`."""
        if self._orthogonal is None:
            eye = torch.eye(self.d, dtype=torch.float64)
            gens, lie = self.discrete_generators, self.lie_algebra
            ok_disc = bool(torch.allclose(gens @ gens.mT, eye.expand_as(gens), atol=1e-10))
            self._orthogonal = ok_disc and bool(torch.allclose(lie, -lie.mT, atol=1e-10))
        return self._orthogonal

    @property
    def order(self) -> int | float:
        """Number of elements: an int for finite groups, ``math.inf`` otherwise.

        The default counts :meth:`elements` (so it raises :class:`GroupTooLargeError` past
        :data:`MAX_ORDER`); built-in groups know it in closed form (``Symmetric(12).order``)."""
        if not self.is_finite:
            return math.inf
        return int(self.elements().shape[0])

    def elements(self, limit: int | None = None) -> Tensor:
        """All elements ``(|G|, d, d)`` of a finite group, the identity first.

        The default enumerates the closure of :attr:`discrete_generators` breadth first (words of
        increasing length), deduplicating matrices that agree to ``1e-6``; the result is cached.

        Args:
            limit: most elements to enumerate. (default: :data:`MAX_ORDER`)

        Raises:
            ValueError: for a group with a Lie algebra.
            GroupTooLargeError: (a ``ValueError``) when the closure has more than ``limit``
                elements.
        """
        if not self.is_finite:
            raise ValueError(f"{self!r} is not finite (it has a Lie algebra): it has no elements()")
        limit = MAX_ORDER if limit is None else _check_count("limit", limit)
        if self._elements is None:
            self._elements = _closure(self.discrete_generators, limit, repr(self))
        return self._elements

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random elements ``(n, d, d)`` float64.

        The default draws uniformly from :meth:`elements` for a finite group (Haar). A finite group
        too large to enumerate falls back to random words of the generators, and a group with a Lie
        algebra to :math:`\\exp(\\sum_i c_i A_i)` with Gaussian ``c`` times a random word: both
        reach every element but are **not** uniform (Haar), which is fine for equivariance tests and
        wrong for averages. Built-in Lie groups override this with exact Haar sampling.

        Args:
            n: number of elements.
            generator: random source. (default: torch's global one)
        """
        n = _check_count("n", n)
        if self.is_finite:
            elems = self._elements_or_none()
            if elems is None:
                return self._random_words(n, generator)
            return elems[torch.randint(elems.shape[0], (n,), generator=generator)]
        coeffs = torch.randn(n, self.lie_algebra.shape[0], generator=generator, dtype=torch.float64)
        g = torch.matrix_exp(torch.einsum("nk,kij->nij", coeffs, self.lie_algebra))
        if self.discrete_generators.shape[0]:
            g = g @ self._random_words(n, generator)
        return g

    @property
    def haar_sampling(self) -> bool:
        """Whether :meth:`sample` draws from the Haar measure (uniform for finite groups)."""
        if self.haar:
            return True
        if type(self).sample is not Group.sample or not self.is_finite:
            return False
        return self._elements_or_none() is not None

    def _elements_or_none(self) -> Tensor | None:
        """:meth:`elements`, or None when the group is too large (remembered: no second try)."""
        if self._too_large:
            return None
        try:
            return self.elements()
        except GroupTooLargeError:
            self._too_large = True
            return None

    def _random_words(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Products of ``_WORD_LENGTH`` generators, inverses or identities drawn uniformly."""
        gens = self.discrete_generators
        eye = torch.eye(self.d, dtype=torch.float64)
        letters = torch.cat([gens, torch.linalg.inv(gens), eye[None]])
        out = eye.expand(n, self.d, self.d).clone()
        for _ in range(_WORD_LENGTH):
            out = out @ letters[torch.randint(letters.shape[0], (n,), generator=generator)]
        return out

    def act(self, g: Tensor, x: Tensor) -> Tensor:
        """Act with elements on data: the default is ``g @ x`` on the last axis.

        Args:
            g: ``(d, d)``, or ``(B, d, d)`` with one element per batch entry.
            x: ``(..., d)``, or ``(B, ..., d)`` when ``g`` is batched.

        Returns:
            ``x`` transformed, same shape.

        Example:
            >>> from geolayers.groups import Cyclic
            >>> Cyclic(4).act(Cyclic(4).discrete_generators[0], torch.tensor([1.0, 0.0])).round()
            tensor([0., 1.])
        """
        if g.shape[-2:] != (self.d, self.d):
            raise ValueError(f"g must have shape (..., {self.d}, {self.d}), got {tuple(g.shape)}")
        if x.shape[-1] != self.d:
            raise ValueError(
                f"x must have {self.d} features in its last axis, got {tuple(x.shape)}"
            )
        g = g.to(x.dtype)
        if g.dim() == 2:
            return x @ g.T
        if x.shape[0] != g.shape[0]:
            raise ValueError(
                f"x must have the batch size of g ({g.shape[0]}) in its first axis, got "
                f"{tuple(x.shape)}"
            )
        flat = x.reshape(x.shape[0], -1, self.d)
        return (flat @ g.mT).reshape(x.shape)

    def inverse(self, g: Tensor) -> Tensor:
        """``g^{-1}`` for elements ``(..., d, d)`` (a transpose for orthogonal groups)."""
        return g.mT if self.is_orthogonal else torch.linalg.inv(g)

    # -- identity, products, display ---------------------------------------------------------

    def _family(self) -> type:
        """The class whose instances this one may equal (``SO3()`` is ``SO(3)``)."""
        return type(self)

    def _key(self) -> tuple:
        return (
            self._family(),
            self._name,
            self._args,
            self.d,
            self.discrete_generators.numpy().tobytes(),
            self.lie_algebra.numpy().tobytes(),
        )

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return isinstance(other, Group) and self._key() == other._key()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._key())
        return self._hash

    def __repr__(self) -> str:
        if not self._args:
            return self._name
        return f"{self._name}({', '.join(map(repr, self._args))})"

    def __mul__(self, other: Group) -> Group:
        """The direct product ``G x H`` (block-diagonal defining representation)."""
        if not isinstance(other, Group):
            return NotImplemented
        from geolayers.groups.builtin import DirectProduct

        return DirectProduct(self, other)


def as_signed_permutation(matrix: Tensor, atol: float = PERM_ATOL) -> tuple[Tensor, Tensor] | None:
    """Read a signed permutation matrix as ``(perm, sign)``, or None if it is not one.

    ``matrix @ e_j = sign[j] * e_{perm[j]}``, i.e. ``matrix[perm[j], j] == sign[j]``.

    Args:
        matrix: ``(D, D)``.
        atol: tolerance on the entries (0 and +-1). (default: ``1e-9``)

    Returns:
        ``perm: (D,) long`` and ``sign: (D,) float64``, or ``None``.

    Example:
        >>> as_signed_permutation(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
        (tensor([1, 0]), tensor([ 1., -1.], dtype=torch.float64))
    """
    if not isinstance(matrix, Tensor):
        raise TypeError(f"matrix must be a tensor, got {describe(matrix)}")
    return _signed_permutation(matrix.detach().cpu().to(torch.float64), atol)


def is_signed_permutation_matrix(matrices: Tensor, atol: float = PERM_ATOL) -> bool:
    """True if every matrix of ``(..., D, D)`` has one entry +-1 per row and column, others 0.

    Example:
        >>> is_signed_permutation_matrix(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
        True
    """
    mats = _batch(matrices)
    return all(as_signed_permutation(m, atol) is not None for m in mats)


def is_permutation_matrix(matrices: Tensor, atol: float = PERM_ATOL) -> bool:
    """True if every matrix of ``(..., D, D)`` is a permutation matrix (entries 0 and 1).

    Example:
        >>> is_permutation_matrix(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
        False
    """
    for m in _batch(matrices):
        found = as_signed_permutation(m, atol)
        if found is None or bool((found[1] < 0).any()):
            return False
    return True


def _batch(matrices: Tensor) -> Sequence[Tensor]:
    if not isinstance(matrices, Tensor) or matrices.dim() < 2:
        raise TypeError(f"matrices must be a (..., D, D) tensor, got {describe(matrices)}")
    if matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(f"matrices must be square, got shape {tuple(matrices.shape)}")
    return matrices.reshape(-1, *matrices.shape[-2:])
