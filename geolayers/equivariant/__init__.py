"""Layers built from groups (see ``DESIGN.md``, "Groups: the extension point").

:class:`EquivariantLinear` learns coefficients in the equivariant basis of two representations;
:func:`pointwise`, :class:`GatedNonlinearity` and :class:`NormNonlinearity` are the
non-linearities that stay equivariant (point-wise only where the representation allows it);
:class:`QuadraticInvariants` supplies invariant scalars that are not linear in the features;
:class:`EquivariantMLP` chains them. :class:`LiftingConv2d` and :class:`GroupConv2d` are group
convolutions on images for finite rotation/reflection groups (:class:`GroupCNN` is a small
backbone); ``interop`` adapts e3nn irreps and escnn gspaces to geolayers groups;
:class:`SoftEquivarianceRegularizer` pulls ordinary layers towards equivariance under candidate
groups and learns which symmetry holds; :class:`FlowEquivariantRNN` is equivariant to
translation flows of sequences.

Example:
    >>> from geolayers.groups import SO3, Vector
    >>> from geolayers.equivariant import EquivariantMLP
    >>> V = Vector(SO3())
    >>> EquivariantMLP(V, V * V, hidden=2)(torch.randn(4, 3)).shape
    torch.Size([4, 9])
"""

from geolayers.equivariant.flow import FlowEquivariantRNN, translation_flow
from geolayers.equivariant.gconv import (
    GroupCNN,
    GroupConv2d,
    GroupPool,
    LiftingConv2d,
    group_max_pool,
    inverse_index,
    multiplication_table,
    on_pixel_grid,
    planar_group_elements,
    transform_group_image,
    transform_image,
)
from geolayers.equivariant.interop import (
    GSpaceGroup,
    IrrepsRep,
    e3nn_equivariance_check,
    escnn_equivariance_check,
    group_from_gspace,
    irreps_from_rep,
    rep_from_irreps,
    transform_geometric_tensor,
)
from geolayers.equivariant.linear import EquivariantLinear
from geolayers.equivariant.mlp import (
    REGULAR_MAX,
    EquivariantMLP,
    WithInvariants,
    default_hidden_rep,
)
from geolayers.equivariant.nonlinear import (
    ACTIVATIONS,
    GatedNonlinearity,
    NormNonlinearity,
    PointwiseNonlinearity,
    QuadraticInvariants,
    activation_kind,
    pointwise,
)
from geolayers.equivariant.soft import SoftEquivarianceRegularizer, soft_equivariance_penalty

__all__ = [
    "EquivariantLinear",
    "EquivariantMLP",
    "default_hidden_rep",
    "REGULAR_MAX",
    "pointwise",
    "activation_kind",
    "ACTIVATIONS",
    "PointwiseNonlinearity",
    "GatedNonlinearity",
    "NormNonlinearity",
    "QuadraticInvariants",
    "WithInvariants",
    "FlowEquivariantRNN",
    "translation_flow",
    "GroupCNN",
    "GroupConv2d",
    "GroupPool",
    "LiftingConv2d",
    "group_max_pool",
    "multiplication_table",
    "inverse_index",
    "on_pixel_grid",
    "planar_group_elements",
    "transform_group_image",
    "transform_image",
    "GSpaceGroup",
    "IrrepsRep",
    "e3nn_equivariance_check",
    "escnn_equivariance_check",
    "group_from_gspace",
    "irreps_from_rep",
    "rep_from_irreps",
    "transform_geometric_tensor",
    "SoftEquivarianceRegularizer",
    "soft_equivariance_penalty",
]
