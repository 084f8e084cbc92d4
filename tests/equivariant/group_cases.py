"""Groups and representations the equivariant-layer tests run over: every built-in family, a
direct product (finite and mixed), and the user-defined groups of tests/groups/user_groups.py."""

from geolayers.groups import (
    O2,
    O3,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    Regular,
    Symmetric,
    Vector,
)
from tests.groups.user_groups import CubeRotations, quaternion_group

GROUPS = {
    "C4": lambda: Cyclic(4),
    "D4": lambda: Dihedral(4),
    "S4": lambda: Symmetric(4),
    "SO2": SO2,
    "O2": O2,
    "SO3": SO3,
    "O3": O3,
    "C3xSO2": lambda: Cyclic(3) * SO2(),
    "C2xS3": lambda: Cyclic(2) * Symmetric(3),
    "Q8": quaternion_group,
    "Cube": CubeRotations,
}

REPS = {
    "V": lambda G: Vector(G),
    "V+V": lambda G: Vector(G) + Vector(G),
    "VxV": lambda G: Vector(G) * Vector(G),
    "regular": lambda G: Regular(G),
}


def cases():
    """``(group name, rep name)`` pairs: every rep of every group (regular for finite ones)."""
    return [
        (g, r) for g, make in GROUPS.items() for r in REPS if r != "regular" or make().is_finite
    ]
