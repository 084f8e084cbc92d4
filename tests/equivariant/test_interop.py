import math

import pytest
import torch
from torch import nn

from geolayers.equivariant.gconv import GroupConv2d, LiftingConv2d, multiplication_table
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
from geolayers.groups import (
    O3,
    SO2,
    SO3,
    Cyclic,
    Dihedral,
    Scalar,
    Vector,
    equivariant_basis,
)

o3 = pytest.importorskip("e3nn.o3")


@pytest.fixture
def float64_default():
    """e3nn's own matrices are float64-accurate only under a float64 default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# -- e3nn -----------------------------------------------------------------------------------------

IRREPS = "2x0e + 1x0o + 1x1o + 1x1e + 2x2e + 1x3o"


@pytest.mark.parametrize("group", [O3, SO3])
def test_rho_is_e3nn_wigner_d(group, float64_default):
    G = group()
    rep = rep_from_irreps(IRREPS, G)
    assert rep.size == o3.Irreps(IRREPS).dim
    g = G.sample(5, torch.Generator().manual_seed(0))
    assert torch.allclose(rep.rho(g), o3.Irreps(IRREPS).D_from_matrix(g), atol=1e-12)


def test_rho_is_float64_accurate_under_a_float32_default():
    # e3nn builds its generators in the default dtype; the adapter must not inherit float32.
    assert torch.get_default_dtype() == torch.float32
    G = O3()
    rep = rep_from_irreps(IRREPS, G)
    gen = torch.Generator().manual_seed(1)
    g, h = G.sample(4, gen), G.sample(4, gen)
    assert torch.allclose(rep.rho(g @ h), rep.rho(g) @ rep.rho(h), atol=1e-12)
    assert rep.rho(g.float()).dtype == torch.float32


def test_parity_on_o3():
    minus = -torch.eye(3, dtype=torch.float64)
    for irreps, sign in [("1x0e", 1), ("1x0o", -1), ("1x1o", -1), ("1x1e", 1), ("1x2e", 1)]:
        D = rep_from_irreps(irreps, O3()).rho(minus)
        assert torch.allclose(D, sign * torch.eye(D.shape[0], dtype=torch.float64)), irreps


def test_drho_is_the_derivative_of_rho():
    G = SO3()
    rep = rep_from_irreps(IRREPS, G)
    coeffs = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    A, B = torch.einsum("nk,kij->nij", coeffs, G.lie_algebra)
    assert torch.allclose(rep.rho(torch.matrix_exp(0.7 * A)), torch.matrix_exp(0.7 * rep.drho(A)))
    dA, dB = rep.drho(A), rep.drho(B)
    assert torch.allclose(rep.drho(A @ B - B @ A), dA @ dB - dB @ dA, atol=1e-10)


def test_irreps_rep_in_the_basis_solver():
    assert equivariant_basis(rep_from_irreps("1o"), rep_from_irreps("1o")).shape == (9, 1)
    # A pseudovector is not a vector under O(3), but is under SO(3).
    assert equivariant_basis(rep_from_irreps("1o"), rep_from_irreps("1e")).shape == (9, 0)
    assert equivariant_basis(rep_from_irreps("1o", SO3), rep_from_irreps("1e", SO3)).shape == (9, 1)
    # V (x) V = 0e + 1e + 2e: one invariant, one map onto 1e, one onto 2e.
    V = Vector(O3())
    for irreps in ("0e", "1e", "2e"):
        assert equivariant_basis(V * V, rep_from_irreps(irreps)).shape[1] == 1, irreps
    assert str(rep_from_irreps("1x1o")) == "Irreps('1x1o') of O(3)"
    assert rep_from_irreps("1x1o") == IrrepsRep("1o", O3())


def test_irreps_from_rep_and_change_of_basis():
    G = O3()
    rep = 2 * Scalar(G) + Vector(G) + rep_from_irreps("1x1e + 1x2e", G)
    irreps, Q = irreps_from_rep(rep, return_change_of_basis=True)
    assert irreps == o3.Irreps("1x0e + 1x0e + 1x1o + 1x1e + 1x2e")
    assert torch.allclose(Q @ Q.T, torch.eye(rep.size, dtype=torch.float64))
    g = G.sample(4, torch.Generator().manual_seed(3))
    assert torch.allclose(rep_from_irreps(irreps, G).rho(g), Q @ rep.rho(g) @ Q.T, atol=1e-12)
    assert irreps_from_rep(Vector(SO3())) == o3.Irreps("1x1o")
    assert irreps_from_rep(Vector(G).T) == o3.Irreps("1x1o")  # the dual of V is V


def test_irreps_from_rep_rejects_what_it_cannot_name():
    V = Vector(O3())
    with pytest.raises(ValueError, match=r"rep piece 1 .* has no e3nn irreps"):
        irreps_from_rep(Scalar(O3()) + V * V)
    with pytest.raises(ValueError, match="rep.G must be O3"):
        irreps_from_rep(Vector(SO2()))
    with pytest.raises(TypeError, match="rep must be a geolayers Rep"):
        irreps_from_rep("1x1o")
    with pytest.raises(ValueError, match="irreps must be e3nn irreps"):
        rep_from_irreps("1x1q")
    with pytest.raises(ValueError, match="group must be O3"):
        rep_from_irreps("1o", Cyclic(4))


@pytest.mark.parametrize("group", [O3, SO3])
def test_e3nn_linear_passes_assert_equivariant(group, dtype):
    torch.manual_seed(0)
    lin = o3.Linear("2x0e + 3x1o", "1x0e + 2x1o")
    err = e3nn_equivariance_check(lin, "2x0e + 3x1o", "1x0e + 2x1o", group(), dtype=dtype)
    assert err <= (1e-9 if dtype == torch.float64 else 1e-4)


def test_e3nn_check_fails_for_broken_modules():
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="not equivariant"):
        e3nn_equivariance_check(nn.Linear(11, 7), "2x0e + 3x1o", "1x0e + 2x1o")
    # Mislabelled parity: a map of pseudovectors is not equivariant on vectors under O(3), but
    # parity is invisible to SO(3).
    lin = o3.Linear("1x0e + 1x1e", "1x0e + 1x1e")
    with pytest.raises(AssertionError, match="not equivariant"):
        e3nn_equivariance_check(lin, "1x0e + 1x1o", "1x0e + 1x1e", O3())
    assert e3nn_equivariance_check(lin, "1x0e + 1x1o", "1x0e + 1x1e", SO3()) <= 1e-9


# -- escnn ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def escnn():
    """escnn, with its null-space solver off sklearn's randomized_svd: that function rejects the
    np.matrix escnn passes (a TypeError with recent scikit-learn), and escnn falls back to
    scipy's SVD when it is missing, which is what is patched here for these tests only."""
    pytest.importorskip("escnn")
    import escnn.group._numerical as numerical
    import escnn.gspaces
    import escnn.nn

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numerical, "randomized_svd", None)
        yield escnn


def _gspaces(escnn):
    gs = escnn.gspaces
    return {
        "C4": gs.rot2dOnR2(4),
        "D4": gs.flipRot2dOnR2(4),
        "D4_axis0": gs.flipRot2dOnR2(4, axis=0.0),
        "C8": gs.rot2dOnR2(8),
        "D8": gs.flipRot2dOnR2(8),
    }


def test_gspace_group_elements_and_regular_fibers(escnn):
    spaces = _gspaces(escnn)
    C4 = group_from_gspace(spaces["C4"])
    assert isinstance(C4, GSpaceGroup) and C4.order == 4 and C4.is_finite
    # escnn's rotations are counter-clockwise in (X, Y), in the order of geolayers' Cyclic.
    assert torch.allclose(C4.elements(), Cyclic(4).elements(), atol=1e-12)
    D4 = group_from_gspace(spaces["D4"])
    # Same set as Dihedral(4), another order: escnn's (f, k) is R^k F with F = diag(-1, 1).
    ours, theirs = Dihedral(4).elements(), D4.elements()
    assert (ours[:, None] - theirs[None]).abs().flatten(2).amax(-1).min(1).values.max() < 1e-12
    assert torch.allclose(D4.elements()[4], torch.diag(torch.tensor([-1.0, 1.0])).double())
    for name, space in spaces.items():
        G = group_from_gspace(space)
        table = multiplication_table(G)
        for u, e in enumerate(space.fibergroup.elements):
            # Regular fibers: escnn's rho(g) e_h = e_{g h} is row u of the table.
            perm = torch.as_tensor(space.regular_repr(e)).argmax(0)
            assert torch.equal(perm, table[u]), (name, u)
            assert G.index(e) == u and G.to_escnn(G.elements()[u]) == e
            assert torch.equal(G.from_escnn(e), G.elements()[u])


@pytest.mark.parametrize("name", ["C4", "D4", "D4_axis0", "C8", "D8"])
def test_act_matches_escnn_transform(escnn, name):
    space = _gspaces(escnn)[name]
    G = group_from_gspace(space)
    enn = escnn.nn
    ft = enn.FieldType(space, [space.regular_repr, space.trivial_repr, space.regular_repr])
    x = torch.randn(2, ft.size, 7, 6, dtype=torch.float64)
    checked = 0
    for e in space.fibergroup.elements:
        if not G.is_exact(e):
            continue  # escnn interpolates off the grid with splines, geolayers bilinearly
        expected = enn.GeometricTensor(x, ft).transform(e).tensor
        assert torch.allclose(G.act(e, x, ft), expected, atol=1e-12), (name, e)
        assert torch.allclose(
            transform_geometric_tensor(enn.GeometricTensor(x, ft), e).tensor, expected, atol=1e-12
        )
        checked += 1
    assert checked == (4 if name.startswith("C") else 8)
    reg = enn.FieldType(space, [space.regular_repr] * 2)
    y = torch.randn(1, reg.size, 5, 5, dtype=torch.float64)
    g = G.elements()[2]
    assert torch.equal(G.act(g, y, "regular"), G.act(g, y, reg))
    assert torch.equal(
        G.act(g, y), G.act(g, y, enn.FieldType(space, [space.trivial_repr] * reg.size))
    )


def test_escnn_r2conv_passes_assert_equivariant(escnn, dtype):
    enn = escnn.nn
    torch.manual_seed(0)
    c4 = escnn.gspaces.rot2dOnR2(4)
    conv = enn.R2Conv(
        enn.FieldType(c4, [c4.trivial_repr]), enn.FieldType(c4, [c4.regular_repr] * 2), 3, padding=1
    )
    d4 = escnn.gspaces.flipRot2dOnR2(4)
    reg = enn.FieldType(d4, [d4.regular_repr])
    conv2 = enn.SequentialModule(enn.R2Conv(reg, reg, 3, padding=1), enn.ReLU(reg))
    # escnn's filter bases are float32 even in a float64 module: 1e-4 in both dtypes.
    assert escnn_equivariance_check(conv, dtype=dtype, trials=4) <= 1e-4
    assert escnn_equivariance_check(conv2, dtype=dtype, trials=4, size=8) <= 1e-4
    with pytest.raises(AssertionError, match="not equivariant"):
        escnn_equivariance_check(conv, atol=1e-9, rtol=1e-9, trials=8)


def test_escnn_check_fails_for_broken_modules(escnn):
    enn = escnn.nn
    torch.manual_seed(0)
    c4 = escnn.gspaces.rot2dOnR2(4)
    t_in, t_out = enn.FieldType(c4, [c4.trivial_repr]), enn.FieldType(c4, [c4.regular_repr])
    conv = enn.R2Conv(t_in, t_out, 3, padding=1)

    class Ramp(nn.Module):
        """R2Conv, then a weight that grows from left to right: breaks the rotations."""

        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            y = self.conv(enn.GeometricTensor(x, t_in)).tensor
            return y * torch.linspace(0.5, 1.5, y.shape[-1], dtype=y.dtype)

    with pytest.raises(AssertionError, match="not equivariant"):
        escnn_equivariance_check(Ramp(), t_in, t_out)
    # A plain convolution between the same field sizes.
    with pytest.raises(AssertionError, match="not equivariant"):
        escnn_equivariance_check(nn.Conv2d(1, 4, 3, padding=1), t_in, t_out)


@pytest.mark.parametrize("name", ["C4", "D4", "D8"])
def test_geolayers_gconv_is_equivariant_in_escnn_conventions(escnn, name):
    """Our group convolutions over the escnn group, read as escnn regular fields."""
    space = _gspaces(escnn)[name]
    enn = escnn.nn
    G = group_from_gspace(space)
    torch.manual_seed(0)
    net = nn.Sequential(
        LiftingConv2d(1, 2, G, 3), nn.ReLU(), GroupConv2d(2, 2, G, 3), nn.Flatten(1, 2)
    )
    t_in = enn.FieldType(space, [space.trivial_repr])
    t_out = enn.FieldType(space, [space.regular_repr] * 2)
    assert escnn_equivariance_check(net, t_in, t_out, trials=4) <= 1e-9


def test_escnn_bad_inputs(escnn):
    enn = escnn.nn
    with pytest.raises(ValueError, match="finite fiber group"):
        group_from_gspace(escnn.gspaces.rot2dOnR2(-1))
    with pytest.raises(TypeError, match="gspace must be an escnn 2D gspace"):
        group_from_gspace(Cyclic(4))
    space = escnn.gspaces.rot2dOnR2(4)
    G = group_from_gspace(space)
    with pytest.raises(ValueError, match="multiple of"):
        G.act(G.elements()[1], torch.randn(1, 6, 5, 5), "regular")
    with pytest.raises(ValueError, match="trivial and regular representations only"):
        G.act(G.elements()[1], torch.randn(1, 2, 5, 5), enn.FieldType(space, [space.irrep(1)]))
    with pytest.raises(ValueError, match="not an element"):
        G.act(
            torch.tensor([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]]),
            torch.randn(1, 1, 5, 5),
        )
    with pytest.raises(TypeError, match="in_type must be an escnn FieldType"):
        escnn_equivariance_check(nn.Identity())
