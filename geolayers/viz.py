r"""Plots people want to look at: 2-D embeddings in the Poincare disk.

matplotlib is imported inside the functions, so ``import geolayers.viz`` works without it; it
is part of geolayers' ``examples`` extra (``pip install geolayers[examples]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["plot_poincare_disk", "poincare_geodesic"]

_INSTALL_HINT = (
    "plot_poincare_disk needs matplotlib: `pip install matplotlib` (it is part of geolayers' "
    "`examples` extra: `pip install geolayers[examples]`)"
)

# Two points whose cross product is below this fraction of R^2 are taken as collinear with the
# origin: the orthogonal circle through them would have a radius above ~R / this, and its arc
# would differ from the segment by less than ~1e-6 R (invisible) while o + r cos(t) lost
# digits to the huge radius.
_COLLINEAR = 1e-6


def _as_array(name: str, value: Any, dtype: type) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a tensor or an array-like of numbers, got {type(value).__name__}"
        ) from err


def _check_c(c: Any) -> float:
    if isinstance(c, torch.Tensor) and c.numel() == 1:
        c = float(c.detach())
    if isinstance(c, bool) or not isinstance(c, (int, float)):
        raise TypeError(f"c must be a positive float, got {type(c).__name__}")
    if not (0 < c < math.inf):
        raise ValueError(f"c must be positive and finite (curvature -c < 0), got {c}")
    return float(c)


def poincare_geodesic(p: Any, q: Any, c: float = 1.0, num: int = 64) -> np.ndarray:
    r"""Points along the geodesic from ``p`` to ``q`` in the Poincare disk of radius
    :math:`R = 1/\sqrt c`, for drawing.

    A geodesic is an arc of the circle through ``p`` and ``q`` orthogonal to the boundary, or
    the segment when ``p``, ``q`` and the origin are collinear. The centre :math:`o` of the
    circle solves :math:`2\langle o, p\rangle = \lVert p\rVert^2 + R^2` and
    :math:`2\langle o, q\rangle = \lVert q\rVert^2 + R^2` (it passes through both points, and
    :math:`\lVert o\rVert^2 = r^2 + R^2` makes it orthogonal to the boundary); the system is
    singular exactly in the collinear case. The arc inside the disk subtends less than
    :math:`\pi` at :math:`o`, so it is the shorter arc between the two points.

    Args:
        p: ``(2,)`` start point, inside the disk.
        q: ``(2,)`` end point, inside the disk.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        num: number of points, ``>= 2``. (default: ``64``)

    Returns:
        ``(num, 2)`` float64 array, from exactly ``p`` to exactly ``q``.

    Example:
        >>> poincare_geodesic([0.0, 0.0], [0.5, 0.0], num=3).tolist()
        [[0.0, 0.0], [0.25, 0.0], [0.5, 0.0]]
    """
    p = _as_array("p", p, np.float64).reshape(-1)
    q = _as_array("q", q, np.float64).reshape(-1)
    if p.shape != (2,) or q.shape != (2,):
        raise ValueError(f"p and q must have shape (2,), got {p.shape} and {q.shape}")
    r2 = 1.0 / _check_c(c)
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an int >= 2, got {num!r}")
    t = np.linspace(0.0, 1.0, num)[:, None]
    cross = p[0] * q[1] - p[1] * q[0]
    if abs(cross) <= _COLLINEAR * r2:
        out = (1 - t) * p + t * q
    else:
        rhs = np.array([p @ p + r2, q @ q + r2]) / 2
        centre = np.linalg.solve(np.stack([p, q]), rhs)
        radius = math.hypot(*(p - centre))
        start = math.atan2(*(p - centre)[::-1])
        sweep = math.atan2(*(q - centre)[::-1]) - start
        sweep = (sweep + math.pi) % (2 * math.pi) - math.pi  # the shorter way round
        angle = start + t[:, 0] * sweep
        out = centre + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    out[0], out[-1] = p, q
    return out


def _edge_pairs(edges: Any, n: int) -> np.ndarray:
    e = _as_array("edges", edges, np.float64)
    if e.ndim != 2 or 2 not in e.shape:
        raise ValueError(f"edges must have shape (2, E) or (E, 2), got {e.shape}")
    pairs = e.T if e.shape[0] == 2 else e  # (2, E) wins when E == 2: PyG's edge_index
    if pairs.size and (np.any(pairs != np.round(pairs)) or pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(
            f"edges must hold integer indices of points in 0..{n - 1}, got values "
            f"{pairs.min():g}..{pairs.max():g}"
        )
    return pairs.astype(np.int64)


def plot_poincare_disk(
    points: Any,
    labels: Any = None,
    edges: Any = None,
    ax: Any = None,
    c: float = 1.0,
    *,
    annotations: Sequence[str] | None = None,
    geodesic_edges: bool = True,
    cmap: str = "tab10",
    color: str | None = None,
    point_size: float = 12.0,
    edge_color: str = "0.4",
    edge_width: float = 0.8,
    legend: bool = True,
    boundary: bool = True,
    title: str | None = None,
) -> Any:
    r"""Draw 2-D points in the Poincare disk of radius :math:`1/\sqrt c`.

    The boundary circle is drawn, the points are scattered (one colour per label, with a
    legend), and the optional edges (a hierarchy, a graph) are drawn as hyperbolic
    geodesics, arcs of circles orthogonal to the boundary (:func:`poincare_geodesic`), or as
    straight segments with ``geodesic_edges=False``. Geodesics are the default because they
    are what the embedding's distances measure: two points near the boundary on either side
    of the origin are joined through the middle, not along the rim. Edges are drawn below the
    points.

    Args:
        points: ``(N, 2)`` tensor or array, inside the disk (:math:`c\lVert x\rVert^2 < 1`).
        labels: ``(N,)`` one label per point (ints or strings), or ``None`` for one colour.
            (default: ``None``)
        edges: ``(2, E)`` (PyG's ``edge_index``; a ``(2, 2)`` array is read this way) or
            ``(E, 2)`` integer indices into ``points``, or ``None``. (default: ``None``)
        ax: a matplotlib ``Axes`` to draw into, or ``None`` for a new figure.
            (default: ``None``)
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        annotations: ``N`` strings written next to the points (``None`` entries and empty
            strings are skipped), or ``None``. (default: ``None``)
        geodesic_edges: draw edges as geodesic arcs; straight segments otherwise.
            (default: ``True``)
        cmap: matplotlib colormap of the labels. (default: ``"tab10"``)
        color: colour of the points when ``labels`` is ``None``, or ``None`` for matplotlib's
            next colour. (default: ``None``)
        point_size: marker area of the scatter. (default: ``12.0``)
        edge_color: colour of the edges. (default: ``"0.4"``)
        edge_width: line width of the edges. (default: ``0.8``)
        legend: add a legend of the labels (when ``labels`` is given). (default: ``True``)
        boundary: draw the boundary circle (``False`` when drawing a second set of points
            into the same ``ax``). (default: ``True``)
        title: axes title, or ``None``. (default: ``None``)

    Returns:
        the matplotlib ``Axes``.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: ``points`` is not ``(N, 2)``, has a point outside the disk, or ``labels``,
            ``edges`` or ``annotations`` do not match it.

    Example:
        >>> ax = plot_poincare_disk(torch.tensor([[0.0, 0.0], [0.5, 0.2]]), edges=[[0], [1]])
    """
    try:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Circle
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err

    pts = _as_array("points", points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    c = _check_c(c)
    radius = 1.0 / math.sqrt(c)
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite, got NaN or inf")
    sq = c * np.sum(pts**2, axis=1) if len(pts) else np.zeros(0)
    if np.any(sq >= 1):
        worst = int(np.argmax(sq))
        raise ValueError(
            f"points must lie inside the Poincare disk (c |x|^2 < 1, radius {radius:.4g}), "
            f"got c |x|^2 = {sq[worst]:.6g} at row {worst}"
        )
    n = len(pts)
    if labels is not None:
        labels = np.asarray(
            labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
        )
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape (N,) = ({n},), got {labels.shape}")
    pairs = _edge_pairs(edges, n) if edges is not None else np.zeros((0, 2), np.int64)
    if annotations is not None and len(annotations) != n:
        raise ValueError(f"annotations must hold N = {n} strings, got {len(annotations)}")

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    if boundary:
        ax.add_patch(Circle((0.0, 0.0), radius, fill=False, color="black", linewidth=1.0))
    for i, j in pairs:
        if geodesic_edges:
            line = poincare_geodesic(pts[i], pts[j], c)
        else:
            line = pts[[i, j]]
        ax.plot(line[:, 0], line[:, 1], color=edge_color, linewidth=edge_width, zorder=1)
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=point_size, color=color, zorder=2)
    else:
        colours = plt.get_cmap(cmap)
        classes = list(dict.fromkeys(labels.tolist()))  # first-seen order, any hashable label
        for k, label in enumerate(sorted(classes) if _sortable(classes) else classes):
            mask = labels == label
            ax.scatter(
                pts[mask, 0],
                pts[mask, 1],
                s=point_size,
                color=colours(k % colours.N),
                label=str(label),
                zorder=2,
            )
        if legend:
            # Outside the disk, on the right: inside it would hide points near the boundary.
            ax.legend(
                loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", markerscale=1.5
            )
    if annotations is not None:
        for (px, py), text in zip(pts, annotations, strict=True):
            if text:
                ax.annotate(
                    str(text), (px, py), textcoords="offset points", xytext=(3, 3), zorder=3
                )
    margin = 1.05 * radius
    ax.set_xlim(-margin, margin)
    ax.set_ylim(-margin, margin)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _sortable(values: list) -> bool:
    try:
        sorted(values)
    except TypeError:
        return False
    return True
