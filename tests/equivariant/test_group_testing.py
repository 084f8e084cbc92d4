"""The group-equivariance checks of geolayers.testing: they pass equivariant modules and fail
broken ones, with messages that say where."""

import re

import pytest
import torch
from torch import nn

from geolayers.equivariant import EquivariantLinear
from geolayers.groups import O3, SO3, Dihedral, Regular, Scalar, Symmetric, Vector
from geolayers.testing import (
    TOLERANCE,
    assert_group_equivariant,
    assert_group_invariant,
    equivariance_error,
)
from tests.groups.user_groups import CubeRotations


def test_equivariant_module_passes(dtype):
    V = Vector(SO3())
    layer = EquivariantLinear(V * V, V)
    err = assert_group_equivariant(layer, SO3(), V * V, V, dtype=dtype)
    assert 0 <= err <= TOLERANCE[dtype]


@pytest.mark.parametrize(
    ("G", "make"),
    [
        (SO3(), lambda V: (V, V)),
        (Dihedral(4), lambda V: (Regular(V.G), Regular(V.G))),
        (CubeRotations(), lambda V: (V * V, V * V)),
        (Symmetric(5), lambda V: (V, V)),
    ],
)
def test_a_plain_linear_layer_fails(G, make):
    torch.manual_seed(0)
    rep_in, rep_out = make(Vector(G))
    broken = nn.Linear(rep_in.size, rep_out.size)
    with pytest.raises(AssertionError, match=re.escape(f"Linear is not equivariant under {G!r}:")):
        assert_group_equivariant(broken, G, rep_in, rep_out)
    assert equivariance_error(broken, G, rep_in, rep_out) > 1e-2


def test_the_failing_element_is_named():
    G = Dihedral(4)
    V = Vector(G)

    def flip_blind(x):  # commutes with rotations (generator 0), not with the flip (generator 1)
        J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=x.dtype)
        return x @ (torch.eye(2, dtype=x.dtype) + J).T

    with pytest.raises(AssertionError, match=r"relative error .* at discrete generator 1"):
        assert_group_equivariant(flip_blind, G, V, V, n=0)
    with pytest.raises(AssertionError, match="at random element"):
        assert_group_equivariant(lambda x: x**3, SO3(), Vector(SO3()), Vector(SO3()))


def test_invariance():
    V = Vector(O3())
    assert assert_group_invariant(lambda x: x.norm(dim=-1), O3(), V) < 1e-12
    with pytest.raises(AssertionError, match="is not invariant under O"):
        assert_group_invariant(lambda x: x.sum(-1, keepdim=True), O3(), V)


def test_float32_tolerance():
    V = Vector(SO3())
    layer = EquivariantLinear(V * V, V * V)
    err32 = equivariance_error(layer, SO3(), V * V, V * V, dtype=torch.float32)
    err64 = equivariance_error(layer, SO3(), V * V, V * V)
    assert err64 < 1e-13 < err32 < 1e-5
    with pytest.raises(AssertionError, match="> tol 1.0e-09"):
        assert_group_equivariant(layer, SO3(), V * V, V * V, dtype=torch.float32, tol=1e-9)


def test_bad_arguments_are_named():
    V = Vector(SO3())
    layer = EquivariantLinear(V, V)
    with pytest.raises(TypeError, match="group must be a Group"):
        equivariance_error(layer, "SO3", V, V)
    with pytest.raises(ValueError, match=r"rep_out must be a representation of SO\(3\)"):
        equivariance_error(layer, SO3(), V, Vector(O3()))
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        equivariance_error(layer, SO3(), V, V, n=-1)
    with pytest.raises(ValueError, match="n must be >= 1 for SO"):
        equivariance_error(layer, SO3(), V, V, n=0)  # no discrete generators: nothing to test
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        equivariance_error(layer, SO3(), V, V, batch=0)
    with pytest.raises(ValueError, match=r"module output must have shape \(B, 1\)"):
        equivariance_error(layer, SO3(), V, Scalar(SO3()))
