"""Poincare-disk plot: artists drawn, circle radius, geodesic arcs, bad input (Agg backend)."""

import math
import sys

import numpy as np
import pytest
import torch

from geolayers.hyperbolic import poincare as P
from geolayers.viz import plot_poincare_disk, poincare_geodesic

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def arc_is_geodesic(line, c):
    """The points of ``line`` lie on one hyperbolic geodesic: every interior point is on the
    shortest path, d(p, m) + d(m, q) = d(p, q)."""
    pts = torch.as_tensor(line, dtype=torch.float64)
    p, q = pts[0].expand_as(pts), pts[-1].expand_as(pts)
    total = P.dist(p, pts, c) + P.dist(pts, q, c)
    return float((total - P.dist(pts[:1], pts[-1:], c)).abs().max())


@pytest.mark.parametrize("c", [1.0, 0.25])
def test_geodesic_arc_hits_both_points_and_is_orthogonal_to_the_boundary(c):
    r = 1 / math.sqrt(c)
    p, q = np.array([0.3, 0.5]) * r, np.array([-0.6, 0.1]) * r
    line = poincare_geodesic(p, q, c, num=50)
    assert line.shape == (50, 2)
    np.testing.assert_array_equal(line[0], p)
    np.testing.assert_array_equal(line[-1], q)
    assert arc_is_geodesic(line, c) < 1e-9
    # The points lie on one circle, and that circle meets the boundary at right angles:
    # |o|^2 = rho^2 + R^2 for its centre o and radius rho.
    mid = line[[0, 25, 49]]
    a = 2 * (mid[1:] - mid[0])
    b = (mid[1:] ** 2).sum(1) - (mid[0] ** 2).sum()
    centre = np.linalg.solve(a, b)
    rho2 = ((line - centre) ** 2).sum(1)
    np.testing.assert_allclose(rho2, rho2[0], rtol=1e-9)
    np.testing.assert_allclose((centre**2).sum(), rho2[0] + r**2, rtol=1e-9)


def test_geodesic_through_the_origin_is_a_segment():
    line = poincare_geodesic([0.4, 0.2], [-0.2, -0.1], num=5)
    np.testing.assert_allclose(line[:, 1], line[:, 0] / 2, atol=1e-15)
    np.testing.assert_allclose(poincare_geodesic([0, 0], [0, 0.9], num=3)[1], [0, 0.45])
    # Near the boundary on opposite sides, the arc dips towards the origin, not along the rim.
    line = poincare_geodesic([0.95, 0.05], [-0.95, 0.05], num=101)
    assert float(np.abs(line[50]).max()) < 0.2 and arc_is_geodesic(line, 1.0) < 1e-9


def test_plot_draws_circle_points_edges_and_annotations(ax):
    pts = torch.tensor([[0.0, 0.0], [0.5, 0.1], [-0.3, 0.6], [0.2, -0.7], [0.7, 0.5]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    edges = torch.tensor([[0, 0, 0, 1], [1, 2, 3, 4]])  # (2, E), a tree
    out = plot_poincare_disk(
        pts, labels=labels, edges=edges, ax=ax, annotations=["root", "a", "b", "c", ""]
    )
    assert out is ax
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(circles) == 1 and circles[0].get_radius() == 1.0 and circles[0].center == (0, 0)
    assert len(ax.lines) == 4
    assert len(ax.collections) == 3  # one scatter per label
    assert sum(len(col.get_offsets()) for col in ax.collections) == 5
    assert [t.get_text() for t in ax.texts] == ["root", "a", "b", "c"]  # empty ones skipped
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    # Every edge ends exactly on its two points; the ones from the origin are straight, the
    # one from (0.5, 0.1) to (0.7, 0.5) is a geodesic arc, not the chord.
    for line, (i, j) in zip(ax.lines, edges.T.tolist(), strict=True):
        xy = np.stack([line.get_xdata(), line.get_ydata()], 1)
        np.testing.assert_allclose(xy[0], pts[i].double(), atol=1e-7)
        np.testing.assert_allclose(xy[-1], pts[j].double(), atol=1e-7)
        assert arc_is_geodesic(xy, 1.0) < 1e-6
    arc = np.stack([ax.lines[3].get_xdata(), ax.lines[3].get_ydata()], 1)
    chord = np.linspace(0, 1, len(arc))[:, None] * (arc[-1] - arc[0]) + arc[0]
    assert np.abs(arc - chord).max() > 1e-3


def test_plot_options_curvature_straight_edges_and_new_figure():
    pts = np.array([[0.5, 0.5], [-1.0, 0.5], [0.2, -1.5]])  # inside the disk of radius 2
    ax = plot_poincare_disk(
        pts, edges=[[0, 1], [1, 2]], c=0.25, geodesic_edges=False, title="c = 0.25"
    )
    try:
        assert ax.patches[0].get_radius() == pytest.approx(2.0)
        assert len(ax.lines) == 2 and all(len(line.get_xdata()) == 2 for line in ax.lines)
        assert len(ax.collections) == 1 and ax.get_legend() is None
        assert ax.get_title() == "c = 0.25"
        assert ax.get_xlim() == pytest.approx((-2.1, 2.1))
        # A second set drawn into the same axes: no second circle, the colour asked for.
        plot_poincare_disk(pts[:1], ax=ax, c=0.25, boundary=False, color="black")
        assert len(ax.patches) == 1 and len(ax.collections) == 2
        np.testing.assert_allclose(ax.collections[1].get_facecolor()[0], [0, 0, 0, 1])
    finally:
        plt.close(ax.figure)


def test_plot_bad_inputs_raise_with_a_message(ax):
    pts = torch.tensor([[0.0, 0.0], [0.5, 0.1]])
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\), got \(2, 3\)"):
        plot_poincare_disk(torch.zeros(2, 3), ax=ax)
    with pytest.raises(ValueError, match=r"points must lie inside the Poincare disk.*row 1"):
        plot_poincare_disk(torch.tensor([[0.0, 0.0], [0.8, 0.6]]), ax=ax)
    with pytest.raises(ValueError, match="radius 0.5"):
        plot_poincare_disk(pts, ax=ax, c=4.0)
    with pytest.raises(ValueError, match="c must be positive"):
        plot_poincare_disk(pts, ax=ax, c=0.0)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(2,\)"):
        plot_poincare_disk(pts, labels=[0, 1, 2], ax=ax)
    with pytest.raises(ValueError, match=r"edges must have shape \(2, E\) or \(E, 2\)"):
        plot_poincare_disk(pts, edges=[[0, 1, 1]], ax=ax)
    with pytest.raises(ValueError, match=r"edges must hold integer indices of points in 0..1"):
        plot_poincare_disk(pts, edges=[[0], [2]], ax=ax)
    with pytest.raises(ValueError, match="annotations must hold N = 2 strings"):
        plot_poincare_disk(pts, annotations=["a"], ax=ax)
    with pytest.raises(TypeError, match="points must be a tensor or an array-like"):
        plot_poincare_disk("points", ax=ax)


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import raises ImportError
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_poincare_disk(torch.zeros(1, 2))
