"""Groups, representations and the equivariant linear basis (the one place that knows group
theory; see ``DESIGN.md``, "Groups: the extension point").

A group is its generators in a defining representation (:class:`Group`); representations are
built from it with ``+``, ``*``, ``**`` and ``.T`` (:mod:`geolayers.groups.reps`); the linear
maps that commute with two representations are the nullspace of stacked constraints
(:func:`equivariant_basis`).

Example:
    >>> from geolayers.groups import SO3, Vector, equivariant_basis
    >>> V = Vector(SO3())
    >>> equivariant_basis(V * V, V * V).shape
    torch.Size([81, 3])
"""

from geolayers.groups.basis import (
    DEFAULT_RTOL,
    DENSE_MAX,
    ParameterSharing,
    Projector,
    clear_basis_cache,
    equivariant_basis,
    equivariant_projector,
    invariant_basis,
    parameter_sharing,
)
from geolayers.groups.builtin import (
    O2,
    O3,
    SO,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    DirectProduct,
    O,
    Symmetric,
    Trivial,
    permutation_matrices,
    rotation_2d,
)
from geolayers.groups.group import (
    MAX_ORDER,
    Group,
    GroupTooLargeError,
    as_signed_permutation,
    is_permutation_matrix,
    is_signed_permutation_matrix,
)
from geolayers.groups.reps import Dual, Regular, Rep, Scalar, Sum, Tensor, Vector

__all__ = [
    "Group",
    "GroupTooLargeError",
    "MAX_ORDER",
    "as_signed_permutation",
    "is_permutation_matrix",
    "is_signed_permutation_matrix",
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
    "Rep",
    "Vector",
    "Scalar",
    "Dual",
    "Sum",
    "Tensor",
    "Regular",
    "equivariant_basis",
    "equivariant_projector",
    "invariant_basis",
    "parameter_sharing",
    "Projector",
    "ParameterSharing",
    "clear_basis_cache",
    "DEFAULT_RTOL",
    "DENSE_MAX",
]
