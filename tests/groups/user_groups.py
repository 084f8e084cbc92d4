"""User-defined groups shared by the group tests: each is the few lines a user would write."""

import torch

from geolayers.groups import Group


def quaternion_group() -> Group:
    """Q8 acting on the quaternions (1, i, j, k) by left multiplication with i and j."""
    left_i = torch.tensor(
        [[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 1.0, 0.0]]
    )
    left_j = torch.tensor(
        [[0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]]
    )
    return Group.from_generators(discrete=torch.stack([left_i, left_j]), name="Q8")


class CubeRotations(Group):
    """The rotation group of the cube (order 24): a quarter turn about z and the 3-fold turn
    about (1, 1, 1) that cycles the axes."""

    discrete_generators = [
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    ]


def skewed_dihedral() -> Group:
    """D_4 conjugated by a shear: a finite group whose matrices are not orthogonal, so that the
    dual representation differs from the defining one."""
    shear = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    gens = shear @ torch.stack([rot, flip]) @ torch.linalg.inv(shear)
    return Group.from_generators(discrete=gens, name="SkewD4")
