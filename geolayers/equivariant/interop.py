r"""Adapters between geolayers groups and `e3nn <https://e3nn.org>`_ / `escnn
<https://github.com/QUVA-Lab/escnn>`_, so that one test kit (:mod:`geolayers.testing`) checks
modules of all three libraries.

* **e3nn** (`Geiger & Smidt 2022 <https://arxiv.org/abs/2207.09453>`_):
  :func:`rep_from_irreps` turns ``o3.Irreps`` into a geolayers :class:`~geolayers.groups.Rep` of
  ``O(3)`` / ``SO(3)`` with :math:`\rho(g) = ` ``irreps.D_from_matrix(g)`` (e3nn's real Wigner
  matrices, times :math:`p^{k}` for parity ``p`` and :math:`k = 1` on improper ``g``), and
  :func:`irreps_from_rep` goes back from sums of ``Scalar`` / ``Vector`` / such pieces.
* **escnn** (`Weiler & Cesa 2019 <https://arxiv.org/abs/1911.08251>`_, `Cesa et al. 2022
  <https://openreview.net/forum?id=WE4qe9xlnQw>`_): :func:`group_from_gspace` turns
  ``rot2dOnR2(N)`` / ``flipRot2dOnR2(N)`` into a :class:`GSpaceGroup` whose elements are escnn's
  base-space matrices in escnn's order, acting on images with trivial and regular fibers exactly
  as ``GeometricTensor.transform`` does.
* :func:`e3nn_equivariance_check` and :func:`escnn_equivariance_check` run
  :func:`geolayers.testing.assert_equivariant` on modules of either library.

Conventions checked against the libraries (and in the tests):

* e3nn >= 0.6 orders the ``l = 1`` basis as ``(x, y, z)``, older versions as ``(y, z, x)``: no
  order is assumed; :func:`irreps_from_rep` solves for the change of basis.
* e3nn builds its Wigner generators in torch's *default* dtype, so float64 matrices come out
  float32-accurate (errors ~1e-6) unless the default is float64 while they are built; this
  module switches it for those calls.
* escnn's base space uses ``(X, Y)`` with the image's last axis ``X`` and the second last the
  *inverted* ``Y``; its rotations are counter-clockwise in ``(X, Y)``, so the generator of
  ``rot2dOnR2(4)`` acts on images as ``torch.rot90(x, 1, dims=(-2, -1))``. Its regular
  representation permutes fibers by left multiplication on ``fibergroup.elements``:
  :math:`\rho(g) e_h = e_{gh}`, as :class:`~geolayers.groups.Regular`.
* ``flipRot2dOnR2(N)`` reflects about the axis at angle ``pi/2`` by default (``x -> -x``, the
  last image axis reversed); element ``(f, k)`` of escnn is the matrix :math:`R^k F^f`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from geolayers._checks import check_positive_int, describe
from geolayers.equivariant.gconv import (
    _find,
    inverse_index,
    multiplication_table,
    on_pixel_grid,
    transform_image,
)
from geolayers.groups import (
    O3,
    SO3,
    Group,
    Rep,
    Scalar,
    Sum,
    Vector,
    _ops,  # the solver's operator trees, which a Rep subclass provides
    equivariant_basis,
)
from geolayers.testing import TOLERANCE, assert_equivariant

if TYPE_CHECKING:  # optional heavy imports, loaded on first use
    from e3nn import o3

__all__ = [
    "IrrepsRep",
    "rep_from_irreps",
    "irreps_from_rep",
    "GSpaceGroup",
    "group_from_gspace",
    "transform_geometric_tensor",
    "e3nn_equivariance_check",
    "escnn_equivariance_check",
]


# -- e3nn -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default dtype (e3nn's generators follow it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _check_o3_group(group: object, name: str) -> Group:
    if isinstance(group, type) and issubclass(group, Group):
        group = group()
    if not isinstance(group, Group) or group not in (O3(), SO3()):
        raise ValueError(f"{name} must be O3() or SO3(), got {group!r}")
    return group


def _as_irreps(irreps: Any, name: str = "irreps") -> o3.Irreps:
    from e3nn import o3

    try:
        out = o3.Irreps(irreps)
    except (ValueError, TypeError, AssertionError) as err:
        raise ValueError(
            f"{name} must be e3nn irreps such as '2x0e + 1x1o', got {irreps!r}"
        ) from err
    if out.dim == 0:
        raise ValueError(f"{name} must have dimension >= 1, got {irreps!r}")
    return out


# so(3) basis of geolayers' SO(3)/O(3) Lie algebra, named by the axis of rotation:
# d/dt matrix_x(t) at 0 is E_zy - E_yz, and so on; [L_x, L_y] = L_z.
def _so3_coordinates(A: Tensor) -> Tensor:
    """``(k, 3)`` coordinates of antisymmetric ``A: (k, 3, 3)`` on ``(L_x, L_y, L_z)``."""
    return torch.stack([A[:, 2, 1], A[:, 0, 2], A[:, 1, 0]], -1)


class IrrepsRep(Rep):
    r"""A representation of ``O(3)`` or ``SO(3)`` given by e3nn irreps:
    :math:`\rho(g) =` ``irreps.D_from_matrix(g)``.

    :meth:`drho` sends the rotation generators :math:`L_x, L_y` to e3nn's
    ``so3_generators(l)[0], [1]`` (``wigner_D`` is :math:`e^{\alpha Y} e^{\beta X} e^{\gamma Y}`
    for ``matrix_y(alpha) @ matrix_x(beta) @ matrix_y(gamma)``) and :math:`L_z = [L_x, L_y]` to
    their commutator, block by block. Build it with :func:`rep_from_irreps`.

    Args:
        irreps: e3nn irreps (``o3.Irreps`` or its string).
        G: ``O3()`` or ``SO3()``.

    Example:
        >>> IrrepsRep("2x0e + 1x1o", SO3()).size
        5
    """

    def __init__(self, irreps: Any, G: Group) -> None:
        self.irreps = _as_irreps(irreps)
        self.G = _check_o3_group(G, "G")
        self.size = self.irreps.dim

    def _rho(self, g: Tensor) -> Tensor:
        with _default_dtype(torch.float64):
            out = self.irreps.D_from_matrix(g.detach().to(torch.float64))
        return out.to(dtype=g.dtype, device=g.device)

    def _drho(self, A: Tensor) -> Tensor:
        from e3nn import o3

        coords = _so3_coordinates(A.detach().to(torch.float64))
        blocks = []
        for mul, ir in self.irreps:
            with _default_dtype(torch.float64):
                X, Y = o3.so3_generators(ir.l)[:2]
            gens = torch.stack([X, Y, X @ Y - Y @ X]).to(torch.float64)
            block = torch.einsum("ki,iab->kab", coords, gens)
            blocks.extend([block] * mul)
        out = torch.zeros(A.shape[0], self.size, self.size, dtype=torch.float64)
        offset = 0
        for block in blocks:
            d = block.shape[-1]
            out[:, offset : offset + d, offset : offset + d] = block
            offset += d
        return out.to(dtype=A.dtype, device=A.device)

    def element_ops(self, g: Tensor) -> list[_ops.Op]:
        return [_ops.Dense(m) for m in self._rho(g.to(torch.float64))]

    def _lie_ops(self) -> list[_ops.Op]:
        if self.G.lie_algebra.shape[0] == 0:
            return []
        return [_ops.Dense(m) for m in self._drho(self.G.lie_algebra)]

    @property
    def _orthogonal(self) -> bool:
        return True  # e3nn's real Wigner matrices are orthogonal

    def _key(self) -> tuple:
        return ("Irreps", str(self.irreps), self.G)

    def _expr(self) -> str:
        return f"Irreps('{self.irreps}')"


def rep_from_irreps(irreps: Any, group: Group | type[Group] | None = None) -> IrrepsRep:
    r"""The geolayers representation of e3nn irreps: :math:`\rho(g) =`
    ``o3.Irreps(irreps).D_from_matrix(g)`` for ``g`` in ``O(3)`` (parity included: ``1o`` is
    the vector, ``1e`` the pseudovector, ``0o`` the pseudoscalar) or ``SO(3)`` (parity unseen).

    It works everywhere a geolayers ``Rep`` does: sums, tensor products,
    :func:`~geolayers.groups.equivariant_basis`, equivariance tests.

    Args:
        irreps: e3nn irreps or their string, e.g. ``"2x0e + 3x1o"``.
        group: ``O3()`` or ``SO3()`` (instance or class). (default: ``O3()``)

    Returns:
        An :class:`IrrepsRep` of size ``irreps.dim``.

    Raises:
        ValueError: for an unparsable or empty ``irreps``, or another group.

    Example:
        >>> rep_from_irreps("1x0e + 1x1o").rho(-torch.eye(3, dtype=torch.float64)).diagonal()
        tensor([ 1., -1., -1., -1.], dtype=torch.float64)
    """
    return IrrepsRep(irreps, _check_o3_group(O3() if group is None else group, "group"))


def _vector_change_of_basis(G: Group) -> Tensor:
    """``P: (3, 3)`` orthogonal with ``D_1o(g) = P g P^T``: the one equivariant map ``V -> 1o``,
    solved by the library instead of assuming e3nn's (version dependent) axis order."""
    basis = equivariant_basis(Vector(G), IrrepsRep("1o", G))
    if basis.shape[1] != 1:
        raise RuntimeError(f"expected one map V -> 1o, found {basis.shape[1]}")
    P = basis[:, 0].reshape(3, 3) * math.sqrt(3.0)
    # The solver leaves ~1e-17 noise on what is, in every e3nn version, a signed permutation.
    P = torch.where((P - P.round()).abs() < 1e-9, P.round(), P)
    return P if float(torch.linalg.det(P)) > 0 else -P


def irreps_from_rep(rep: Rep, *, return_change_of_basis: bool = False) -> Any:
    r"""e3nn irreps of a representation of ``O(3)`` / ``SO(3)`` built from ``Scalar`` (``0e``),
    ``Vector`` (``1o``) and :func:`rep_from_irreps` pieces (their own irreps), summed.

    geolayers' ``Vector`` uses the ``(x, y, z)`` basis; e3nn's ``1o`` may order it differently,
    so the two agree up to the returned change of basis ``Q`` (orthogonal, ``(D, D)``):

    .. math:: \texttt{irreps.D\_from\_matrix}(g) = Q\, \rho(g)\, Q^\top

    Args:
        rep: a representation of ``O3()`` or ``SO3()``.
        return_change_of_basis: also return ``Q``. (default: ``False``)

    Returns:
        ``o3.Irreps`` (summands in order, not simplified), or ``(irreps, Q)``.

    Raises:
        ValueError: if ``rep`` is of another group, or has a piece (tensor product, dual of a
            non-orthogonal piece, regular representation...) that is not one of the above.

    Example:
        >>> from geolayers.groups import O3, Scalar, Vector
        >>> str(irreps_from_rep(2 * Scalar(O3()) + Vector(O3())))
        '1x0e+1x0e+1x1o'
    """
    from e3nn import o3

    if not isinstance(rep, Rep):
        raise TypeError(f"rep must be a geolayers Rep, got {type(rep).__name__}")
    G = _check_o3_group(rep.G, "rep.G")
    parts = rep.parts if isinstance(rep, Sum) else (rep,)
    names: list[str] = []
    blocks: list[Tensor] = []
    for i, part in enumerate(parts):
        if isinstance(part, Scalar):
            names.append("1x0e")
            blocks.append(torch.ones(1, 1, dtype=torch.float64))
        elif isinstance(part, Vector):
            names.append("1x1o")
            blocks.append(_vector_change_of_basis(G))
        elif isinstance(part, IrrepsRep):
            names.extend(f"{mul}x{ir}" for mul, ir in part.irreps)
            blocks.append(torch.eye(part.size, dtype=torch.float64))
        else:
            raise ValueError(
                f"rep piece {i} ({part!r}) has no e3nn irreps here: irreps_from_rep takes sums of "
                f"Scalar, Vector and rep_from_irreps(...) pieces; decompose tensor products with "
                f"e3nn first (e.g. o3.ReducedTensorProducts) and pass rep_from_irreps of the result"
            )
    irreps = o3.Irreps("+".join(names))
    if not return_change_of_basis:
        return irreps
    return irreps, torch.block_diag(*blocks)


def e3nn_equivariance_check(
    module: Any,
    irreps_in: Any,
    irreps_out: Any,
    group: Group | type[Group] | None = None,
    *,
    batch: int = 4,
    trials: int = 8,
    dtype: torch.dtype = torch.float64,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    r"""Check :math:`f(x D_{in}(g)^\top) = f(x) D_{out}(g)^\top` for an e3nn-style module on
    Haar-random ``g`` of the geolayers group, through :func:`~geolayers.testing.assert_equivariant`.

    Args:
        module: a module (or function) ``(batch, irreps_in.dim) -> (batch, irreps_out.dim)``; a
            module is evaluated on a copy cast to ``dtype``.
        irreps_in: e3nn irreps of the input.
        irreps_out: e3nn irreps of the output.
        group: ``O3()`` or ``SO3()``. (default: ``O3()``)
        batch: rows of the random inputs. (default: ``4``)
        trials: random elements tried. (default: ``8``)
        dtype: evaluation dtype. (default: ``torch.float64``)
        atol: absolute tolerance. (default: ``geolayers.testing.TOLERANCE[dtype]``)
        rtol: relative tolerance. (default: same as ``atol``'s default)
        generator: random source. (default: seeded with 0)

    Returns:
        The largest error seen.

    Raises:
        AssertionError: when the module is not equivariant (naming the trial and the error).

    Example:
        >>> from e3nn import o3
        >>> e3nn_equivariance_check(o3.Linear("1x1o", "1x1o"), "1x1o", "1x1o") < 1e-9
        True
    """
    group = _check_o3_group(O3() if group is None else group, "group")
    rep_in = rep_from_irreps(irreps_in, group)
    rep_out = rep_from_irreps(irreps_out, group)
    batch = check_positive_int("batch", batch)

    def inputs(gen: torch.Generator) -> tuple[Tensor]:
        return (torch.randn(batch, rep_in.size, generator=gen, dtype=torch.float64),)

    def sample(gen: torch.Generator, args: Any) -> Tensor:
        return group.sample(1, gen)[0]

    def transform_in(g: Tensor, args: Any) -> tuple[Tensor]:
        (x,) = args
        return (x @ rep_in.rho(g).to(x.dtype).T,)

    def transform_out(g: Tensor, out: Tensor) -> Tensor:
        return out @ rep_out.rho(g).to(out.dtype).T

    return assert_equivariant(
        module,
        inputs,
        sample,
        transform_in,
        transform_out,
        trials=trials,
        dtype=dtype,
        atol=atol,
        rtol=rtol,
        generator=generator,
    )


# -- escnn ----------------------------------------------------------------------------------------


def _escnn() -> Any:
    try:
        import escnn.gspaces
        import escnn.nn
    except ImportError as err:  # pragma: no cover - escnn is a dependency of the project
        raise ImportError("the escnn adapters need escnn (see scripts/setup.sh)") from err
    return escnn


class GSpaceGroup(Group):
    r"""The finite fiber group of an escnn 2D gspace as a geolayers group acting on images.

    Elements are escnn's base-space matrices ``gspace.basespace_action(e)`` (``(2, 2)``, in the
    ``(X, Y)`` convention of escnn), listed in the order of ``gspace.fibergroup.elements``, so
    channel ``h`` of a regular field is element ``elements()[h]`` in both libraries.
    :meth:`act` transforms images with trivial or regular fields as
    ``GeometricTensor.transform`` does: exactly for elements that permute pixels (multiples of
    90 degrees, axis and diagonal reflections); other elements are resampled by bilinear
    interpolation (:func:`~geolayers.equivariant.gconv.transform_image`), where escnn
    interpolates with order-2 splines, so those agree with escnn only approximately.

    Args:
        gspace: ``escnn.gspaces.rot2dOnR2(N)``, ``flipRot2dOnR2(N, axis=...)`` or
            ``flip2dOnR2(...)`` with ``N >= 1`` (finite).

    Example:
        >>> from escnn import gspaces
        >>> GSpaceGroup(gspaces.flipRot2dOnR2(4)).order
        8
    """

    haar = True

    def __init__(self, gspace: Any) -> None:
        escnn = _escnn()
        if not isinstance(gspace, escnn.gspaces.GSpace2D):
            raise TypeError(
                f"gspace must be an escnn 2D gspace such as rot2dOnR2(4), got {type(gspace).__name__}"
            )
        if gspace.rotations_order < 1:
            raise ValueError(
                f"gspace must have a finite fiber group (N >= 1), got {gspace.name} (continuous "
                f"rotations)"
            )
        self.gspace = gspace
        self.escnn_elements = list(gspace.fibergroup.elements)
        mats = torch.stack(
            [
                torch.as_tensor(gspace.basespace_action(e), dtype=torch.float64)
                for e in self.escnn_elements
            ]
        )
        self.d = 2
        self.discrete_generators = mats[1:] if mats.shape[0] > 1 else None
        super().__init__(gspace.name)
        self._elements = mats
        self._table = multiplication_table(self)
        self._inverse = inverse_index(self._table)

    @property
    def order(self) -> int:
        return len(self.escnn_elements)

    def elements(self, limit: int | None = None) -> Tensor:
        """The base-space matrices ``(|G|, 2, 2)`` in escnn's element order (identity first)."""
        return self._elements

    def index(self, g: Any) -> int:
        """Position of ``g`` (a ``(2, 2)`` matrix or an escnn ``GroupElement``) in :meth:`elements`."""
        if isinstance(g, Tensor):
            if g.shape != (2, 2):
                raise ValueError(f"g must be a (2, 2) matrix, got {describe(g)}")
            return int(_find(self._elements, g.detach().cpu().to(torch.float64)[None], "g")[0])
        for i, e in enumerate(self.escnn_elements):
            if e == g:
                return i
        raise ValueError(f"g must be an element of {self.gspace.fibergroup}, got {g!r}")

    def to_escnn(self, g: Tensor) -> Any:
        """The escnn ``GroupElement`` of the matrix ``g: (2, 2)``."""
        return self.escnn_elements[self.index(g)]

    def from_escnn(self, element: Any) -> Tensor:
        """The ``(2, 2)`` float64 matrix of an escnn ``GroupElement``."""
        return self._elements[self.index(element)]

    def _fiber_source(self, u: int, fields: Any, channels: int) -> Tensor:
        """``source: (C,)`` with ``out[:, c] = x[:, source[c]]`` for fibers of ``fields``."""
        n = self.order
        regular = self._table[self._inverse[u]]  # out[j] = in[g^{-1} j]
        if isinstance(fields, str):
            if fields == "trivial":
                return torch.arange(channels)
            if fields == "regular":
                if channels % n:
                    raise ValueError(
                        f"x must have a multiple of |G|={n} channels for regular fields, got "
                        f"{channels}"
                    )
                return (torch.arange(0, channels, n)[:, None] + regular[None]).reshape(-1)
            raise ValueError(f"fields must be 'trivial', 'regular' or a FieldType, got {fields!r}")
        escnn = _escnn()
        if not isinstance(fields, escnn.nn.FieldType):
            raise TypeError(
                f"fields must be 'trivial', 'regular' or an escnn FieldType, got "
                f"{type(fields).__name__}"
            )
        if fields.gspace != self.gspace:
            raise ValueError(f"fields must live on {self.gspace.name}, got {fields.gspace.name}")
        if fields.size != channels:
            raise ValueError(f"x must have fields.size={fields.size} channels, got {channels}")
        pieces, offset = [], 0
        for r in fields.representations:
            if r.is_trivial():
                pieces.append(torch.arange(offset, offset + r.size))
            elif r.name == "regular":
                pieces.append(offset + regular)
            else:
                raise ValueError(
                    f"fields may hold trivial and regular representations only, got {r.name!r}"
                )
            offset += r.size
        return torch.cat(pieces)

    def act(self, g: Any, x: Tensor, fields: Any = "trivial") -> Tensor:
        r"""Transform a field over the image, :math:`f'(p) = \rho(g) f(g^{-1} p)`.

        Args:
            g: ``(2, 2)`` element matrix, or an escnn ``GroupElement``.
            x: ``(B, C, H, W)``.
            fields: ``"trivial"`` (every channel a scalar), ``"regular"`` (``C / |G|`` regular
                fields), or an escnn ``FieldType`` of trivial and regular representations.
                (default: ``"trivial"``)

        Returns:
            ``(B, C, H, W)`` (``H``, ``W`` swapped for an odd quarter-turn of a non-square image).
        """
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {describe(x)}")
        u = self.index(g)
        source = self._fiber_source(u, fields, x.shape[1]).to(x.device)
        return transform_image(self._elements[u], x.index_select(1, source))

    def is_exact(self, g: Any) -> bool:
        """True when ``g`` permutes the pixel grid (so :meth:`act` is exact)."""
        return bool(on_pixel_grid(self._elements[self.index(g)][None])[0])


def group_from_gspace(gspace: Any) -> GSpaceGroup:
    """The geolayers group of an escnn gspace (``rot2dOnR2(N)``, ``flipRot2dOnR2(N)``), acting on
    images with trivial and regular fields; see :class:`GSpaceGroup`.

    Example:
        >>> from escnn import gspaces
        >>> group_from_gspace(gspaces.rot2dOnR2(4)).elements()[1].round().abs()
        tensor([[0., 1.],
                [1., 0.]], dtype=torch.float64)
    """
    return GSpaceGroup(gspace)


def transform_geometric_tensor(tensor: Any, g: Any) -> Any:
    """``GeometricTensor.transform(g)`` computed by :meth:`GSpaceGroup.act` (trivial and regular
    fields; exact for pixel-permuting elements), keeping gradients.

    Args:
        tensor: an escnn ``GeometricTensor`` ``(B, C, H, W)`` on a finite 2D gspace.
        g: a ``(2, 2)`` element matrix or an escnn ``GroupElement``.

    Returns:
        A ``GeometricTensor`` of the same type.

    Example:
        >>> from escnn import gspaces, nn as enn
        >>> gs = gspaces.rot2dOnR2(4)
        >>> t = enn.GeometricTensor(torch.randn(1, 4, 5, 5), enn.FieldType(gs, [gs.regular_repr]))
        >>> g = gs.fibergroup.elements[1]
        >>> torch.allclose(transform_geometric_tensor(t, g).tensor, t.transform(g).tensor, atol=1e-6)
        True
    """
    escnn = _escnn()
    if not isinstance(tensor, escnn.nn.GeometricTensor):
        raise TypeError(f"tensor must be an escnn GeometricTensor, got {type(tensor).__name__}")
    group = group_from_gspace(tensor.type.gspace)
    return escnn.nn.GeometricTensor(group.act(g, tensor.tensor, tensor.type), tensor.type)


def escnn_equivariance_check(
    module: Any,
    in_type: Any = None,
    out_type: Any = None,
    *,
    size: int = 9,
    batch: int = 2,
    exact_only: bool = True,
    trials: int = 8,
    dtype: torch.dtype = torch.float64,
    atol: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> float:
    r"""Check :math:`f(g \cdot x) = g \cdot f(x)` for a module on escnn field types, with ``g``
    drawn uniformly from the gspace's group and both sides transformed by
    :meth:`GSpaceGroup.act`, through :func:`~geolayers.testing.assert_equivariant`.

    An escnn ``EquivariantModule`` gets ``GeometricTensor`` inputs (its output's ``.tensor`` is
    compared); any other module gets and returns plain tensors ``(B, C, H, W)`` (to check a torch
    module against escnn field types). The module is copied, cast to ``dtype`` and put in eval
    mode.

    Note:
        escnn samples its filter bases in float32 and keeps those buffers in float32 after
        ``.to(torch.float64)``, so its modules are equivariant only to ~1e-7 even when run in
        float64. For an escnn ``EquivariantModule`` the default tolerance is therefore
        ``TOLERANCE[torch.float32]`` (1e-4) whatever ``dtype``; other modules get
        ``TOLERANCE[dtype]``.

    Args:
        module: the module.
        in_type: input ``FieldType``. (default: ``module.in_type``)
        out_type: output ``FieldType``. (default: ``module.out_type``)
        size: side of the random square inputs. (default: ``9``)
        batch: batch size of the random inputs. (default: ``2``)
        exact_only: draw only the elements that permute pixels (for ``N = 8`` the 90-degree
            subgroup): others need interpolation, which neither escnn nor this check does
            exactly. (default: ``True``)
        trials: random elements tried. (default: ``8``)
        dtype: evaluation dtype (escnn modules run in float64 after ``.to``). (default:
            ``torch.float64``)
        atol: absolute tolerance. (default: see the note)
        rtol: relative tolerance. (default: see the note)
        generator: random source. (default: seeded with 0)

    Returns:
        The largest error seen.

    Raises:
        AssertionError: when the module is not equivariant.

    Example:
        >>> from escnn import gspaces, nn as enn
        >>> gs = gspaces.rot2dOnR2(4)
        >>> t_in, t_out = enn.FieldType(gs, [gs.trivial_repr]), enn.FieldType(gs, [gs.regular_repr])
        >>> escnn_equivariance_check(enn.R2Conv(t_in, t_out, 3, padding=1)) < 1e-4
        True
    """
    escnn = _escnn()
    in_type = getattr(module, "in_type", None) if in_type is None else in_type
    out_type = getattr(module, "out_type", None) if out_type is None else out_type
    for name, t in (("in_type", in_type), ("out_type", out_type)):
        if not isinstance(t, escnn.nn.FieldType):
            raise TypeError(
                f"{name} must be an escnn FieldType (or the module must have one), got "
                f"{type(t).__name__}"
            )
    if in_type.gspace != out_type.gspace:
        raise ValueError(
            f"in_type and out_type must share a gspace, got {in_type.gspace.name} and "
            f"{out_type.gspace.name}"
        )
    size = check_positive_int("size", size)
    batch = check_positive_int("batch", batch)
    group = group_from_gspace(in_type.gspace)
    elems = group.elements()
    candidates = [i for i in range(group.order) if not exact_only or group.is_exact(elems[i])]
    model = copy.deepcopy(module).to(dtype)
    # eval() after the cast: escnn modules freeze their expanded filters when leaving training.
    model.eval()
    geometric = isinstance(model, escnn.nn.EquivariantModule)
    if geometric:
        # float32-accurate filter bases (see the note): a float64 tolerance would always fail.
        floor = TOLERANCE[torch.float32]
        atol = max(floor, TOLERANCE[dtype]) if atol is None else atol
        rtol = max(floor, TOLERANCE[dtype]) if rtol is None else rtol

    def fn(x: Tensor) -> Tensor:
        out = model(escnn.nn.GeometricTensor(x, in_type) if geometric else x)
        return out.tensor if isinstance(out, escnn.nn.GeometricTensor) else out

    def inputs(gen: torch.Generator) -> tuple[Tensor]:
        shape = (batch, in_type.size, size, size)
        return (torch.randn(shape, generator=gen, dtype=torch.float64),)

    def sample(gen: torch.Generator, args: Any) -> Tensor:
        pick = candidates[int(torch.randint(len(candidates), (1,), generator=gen))]
        return elems[pick]

    return assert_equivariant(
        fn,
        inputs,
        sample,
        lambda g, args: (group.act(g, args[0], in_type),),
        lambda g, out: group.act(g, out, out_type),
        trials=trials,
        dtype=dtype,
        atol=atol,
        rtol=rtol,
        generator=generator,
    )
