r"""Procedural multi-object scenes with ground-truth instance masks, for object discovery.

Scenes in the spirit of Tetrominoes (`Greff et al. 2019 <https://arxiv.org/abs/1903.00450>`_,
35 x 35 images of three pieces) with continuous poses: every object is a tetromino (``"I"``,
``"O"``, ``"T"``, ``"S"``, ``"Z"``, ``"J"``, ``"L"``) or a sprite (``"square"``, ``"ellipse"``,
``"triangle"``, ``"heart"``), with a random colour, position, scale and rotation, drawn in
order so that later objects occlude earlier ones, on a background colour. Every pose range can
be restricted, so that a model can be trained on some poses and tested on others (e.g.
objects only in the left half for training, only in the right half for testing).

Nothing is stored or downloaded: scenes are rendered in vectorised torch from a seed, about
a thousand 35 x 35 scenes per second on one CPU thread, so they can be generated on the fly.

Coordinates are those of :func:`geolayers.slots.position_grid`: ``(x, y)`` in ``[-1, 1]``, ``x``
along columns, ``y`` along rows (downwards), pixel centres. A shape of scale ``s`` has area
about ``s^2`` in these units (``s^2 (W / 2)^2`` pixels); rotations turn ``x`` towards ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from geolayers._checks import check_positive_int

#: Block centres of the seven tetrominoes on a unit lattice (before centring).
_TETROMINO_CELLS = {
    "I": ((0, 0), (1, 0), (2, 0), (3, 0)),
    "O": ((0, 0), (1, 0), (0, 1), (1, 1)),
    "T": ((0, 0), (1, 0), (2, 0), (1, 1)),
    "S": ((1, 0), (2, 0), (0, 1), (1, 1)),
    "Z": ((0, 0), (1, 0), (1, 1), (2, 1)),
    "J": ((0, 0), (0, 1), (1, 1), (2, 1)),
    "L": ((2, 0), (0, 1), (1, 1), (2, 1)),
}
#: Shapes this module draws: the tetrominoes, then the sprites.
TETROMINOES = tuple(_TETROMINO_CELLS)
SPRITES = ("square", "ellipse", "triangle", "heart")
SHAPES = TETROMINOES + SPRITES

# Every shape is scaled to area 1 in its own units: tetromino blocks have side 1/2; the ellipse
# has semi-axes 0.8 and 1/(0.8 pi); the equilateral triangle has side sqrt(4 / sqrt 3); the
# heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3 has area 3.660 (centroid at y = 0.2935) and is
# shrunk by _HEART = 1 / sqrt(3.660).
_BLOCK = 0.5
_ELLIPSE_A = 0.8
_ELLIPSE_B = 1.0 / (math.pi * _ELLIPSE_A)
_TRIANGLE_R = math.sqrt(4.0 / math.sqrt(3.0)) / math.sqrt(3.0)  # circumradius
_HEART = 0.5227
_HEART_CENTROID = 0.2935


_TETROMINOES_LIKE = {
    "size": 35,
    "num_objects": 3,
    "shapes": TETROMINOES,
    "rotation_range": (0.0, 0.0),
    "quarter_turns": True,
    "min_visible": 0.9,
}
_LEFT = ((-0.65, 0.0), (-0.65, 0.65))
_RIGHT = ((0.0, 0.65), (-0.65, 0.65))
_SCALES = (0.3, 0.38)
_LARGER = (0.42, 0.48)

#: Keyword arguments of :func:`make_multi_object_scenes` for the pose splits of the object
#: discovery experiment (``examples/object_discovery.py``, ``benchmarks/object_discovery.py``):
#: Tetrominoes-like scenes, 35 x 35 with three tetrominoes in their 19 orientations, mostly
#: unoccluded. ``"train"`` puts the object centres in the left half (``x`` in [-0.65, 0]) at
#: scales 0.30-0.38; ``"ood-position"`` moves them to the right half, ``"ood-scale"`` makes
#: them 1.1-1.6x larger (scales 0.42-0.48), ``"ood"`` does both.
POSE_SPLITS: dict[str, dict] = {
    "train": {**_TETROMINOES_LIKE, "position_range": _LEFT, "scale_range": _SCALES},
    "ood-position": {**_TETROMINOES_LIKE, "position_range": _RIGHT, "scale_range": _SCALES},
    "ood-scale": {**_TETROMINOES_LIKE, "position_range": _LEFT, "scale_range": _LARGER},
    "ood": {**_TETROMINOES_LIKE, "position_range": _RIGHT, "scale_range": _LARGER},
}


class MultiObjectScenes(NamedTuple):
    """A batch of rendered scenes and what they were drawn from.

    Attributes:
        images: ``(N, 3, H, W)`` RGB in ``[0, 1]``.
        masks: ``(N, H, W)`` long instance labels: 0 background, ``i`` the visible pixels of
            object ``i`` (1-based, in drawing order).
        shapes: ``(N, O)`` long indices into :data:`SHAPES`, ``-1`` for absent objects.
        positions: ``(N, O, 2)`` centres (centroids) ``(x, y)``.
        scales: ``(N, O)`` scales (square root of the area before clipping).
        angles: ``(N, O)`` rotations in radians.
        colors: ``(N, O, 3)`` RGB colours.
    """

    images: Tensor
    masks: Tensor
    shapes: Tensor
    positions: Tensor
    scales: Tensor
    angles: Tensor
    colors: Tensor

    def __len__(self) -> int:  # type: ignore[override]
        return self.images.shape[0]


def _range(name: str, value: object, lo: float = -math.inf, hi: float = math.inf) -> tuple:
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from err
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got ({a}, {b})")
    return a, b


def _tetromino_tables() -> tuple[Tensor, Tensor]:
    """Occupancy ``(7, 4, 4)`` (row, column) of every tetromino on its block lattice, and the
    mean block index ``(7, 2)`` (the centroid, which sits at the object's position)."""
    cells = torch.tensor([_TETROMINO_CELLS[s] for s in TETROMINOES])
    table = torch.zeros(len(TETROMINOES), 4, 4, dtype=torch.bool)
    for k in range(len(TETROMINOES)):
        table[k, cells[k, :, 1], cells[k, :, 0]] = True
    return table, cells.double().mean(dim=1)


_TABLE, _CENTROID = _tetromino_tables()


def _sprite(kind: str, x: Tensor, y: Tensor) -> Tensor:
    """Membership of the points ``(x, y)`` (object units) in a sprite of area 1."""
    if kind == "square":
        return (x.abs() <= 0.5) & (y.abs() <= 0.5)
    if kind == "ellipse":
        return (x / _ELLIPSE_A).square() + (y / _ELLIPSE_B).square() <= 1
    if kind == "triangle":
        # Equilateral, apex up on screen (towards -y), centroid at the origin: three half-planes.
        r = _TRIANGLE_R
        return (y <= r / 2) & (math.sqrt(3) * x - y <= r) & (-math.sqrt(3) * x - y <= r)
    # Heart, upright on screen (image y points down), centroid at the origin.
    hx, hy = x / _HEART, -y / _HEART + _HEART_CENTROID
    return (hx.square() + hy.square() - 1).pow(3) - hx.square() * hy.pow(3) <= 0


def _inside(shape: Tensor, q: Tensor) -> Tensor:
    """Whether the points ``q: (M, P, 2)`` (object units) lie inside shape ``shape: (M,)``."""
    inside = torch.zeros(q.shape[:-1], dtype=torch.bool, device=q.device)
    tetro = ((shape >= 0) & (shape < len(TETROMINOES))).nonzero().squeeze(1)
    if tetro.numel():
        kind = shape[tetro]
        # Block b covers |q / BLOCK + centroid - cell_b| <= 1/2: the lattice cell of a point is
        # floor(q / BLOCK + centroid + 1/2), looked up in the shape's occupancy table.
        centroid = _CENTROID.to(q)[kind][:, None]
        cell = torch.floor(q[tetro] / _BLOCK + centroid + 0.5).long()
        valid = ((cell >= 0) & (cell < 4)).all(dim=-1)
        cell = cell.clamp(0, 3)
        table = _TABLE.to(q.device)
        inside[tetro] = valid & table[kind[:, None], cell[..., 1], cell[..., 0]]
    for i, name in enumerate(SPRITES):
        rows = (shape == len(TETROMINOES) + i).nonzero().squeeze(1)
        if rows.numel():
            inside[rows] = _sprite(name, q[rows, :, 0], q[rows, :, 1])
    return inside


def render_scenes(
    shapes: Tensor,
    positions: Tensor,
    scales: Tensor,
    angles: Tensor,
    colors: Tensor,
    *,
    size: int | Sequence[int] = 35,
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[Tensor, Tensor]:
    """Draw scenes from object parameters (those of :class:`MultiObjectScenes`).

    A pixel belongs to an object when its centre, mapped into the object's frame
    (:math:`R(-\\theta)(p - c) / s`), lies inside the shape; objects are drawn in order, later
    ones on top.

    Args:
        shapes: ``(N, O)`` long indices into :data:`SHAPES`, ``-1`` for no object.
        positions: ``(N, O, 2)``.
        scales: ``(N, O)``.
        angles: ``(N, O)`` radians.
        colors: ``(N, O, 3)``.
        size: ``H = W`` or ``(H, W)``. (default: ``35``)
        background: RGB of the background. (default: black)

    Returns:
        ``images: (N, 3, H, W)`` (dtype of ``positions``) and ``masks: (N, H, W)`` long.

    Example:
        >>> images, masks = render_scenes(torch.tensor([[7]]), torch.zeros(1, 1, 2),
        ...     torch.tensor([[0.5]]), torch.zeros(1, 1), torch.ones(1, 1, 3), size=8)
        >>> int((masks == 1).sum())  # a square of side 0.5 = 2 pixels
        4
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    inside = _rasterize(shapes, positions, scales, angles, height, width)
    return _compose(inside, colors, background, positions.dtype)


def _rasterize(
    shapes: Tensor, positions: Tensor, scales: Tensor, angles: Tensor, height: int, width: int
) -> Tensor:
    """``(N, O, H, W)`` bool: which pixel centres each object covers, drawn alone."""
    n, o = shapes.shape
    ys = (torch.arange(height, dtype=positions.dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=positions.dtype) * 2 + 1) / width - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pixels = torch.stack([xx, yy], dim=-1).reshape(1, -1, 2).to(positions.device)
    offsets = pixels - positions.reshape(n * o, 1, 2)
    c, s = torch.cos(angles).reshape(-1, 1), torch.sin(angles).reshape(-1, 1)
    # Inverse rotation R(-theta) of the offsets, then the inverse scaling.
    q = torch.stack(
        [c * offsets[..., 0] + s * offsets[..., 1], -s * offsets[..., 0] + c * offsets[..., 1]],
        dim=-1,
    ) / scales.reshape(-1, 1, 1).clamp_min(torch.finfo(positions.dtype).tiny)
    return _inside(shapes.reshape(-1), q).view(n, o, height, width)


def _compose(
    inside: Tensor, colors: Tensor, background: Sequence[float], dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Images and instance masks from the objects' coverage, later objects on top."""
    n, o, height, width = inside.shape
    masks = torch.zeros(n, height, width, dtype=torch.long, device=inside.device)
    for i in range(o):
        masks = torch.where(inside[:, i], i + 1, masks)
    bg = torch.as_tensor(background, dtype=dtype, device=inside.device)
    palette = torch.cat([bg.expand(n, 1, 3), colors.to(dtype)], dim=1)  # (N, O + 1, 3)
    images = torch.gather(palette, 1, masks.view(n, -1, 1).expand(-1, -1, 3))
    return images.view(n, height, width, 3).permute(0, 3, 1, 2).contiguous(), masks


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """``(..., 3)`` RGB from hue, saturation and value in ``[0, 1]``."""
    k = (torch.stack([5.0 + 0 * h, 3.0 + 0 * h, 1.0 + 0 * h], -1) + 6 * h[..., None]) % 6
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def make_multi_object_scenes(
    num_images: int,
    *,
    seed: int = 0,
    size: int | Sequence[int] = 35,
    num_objects: int | Sequence[int] = 3,
    shapes: Sequence[str] = SHAPES,
    position_range: Sequence[Sequence[float]] = ((-0.7, 0.7), (-0.7, 0.7)),
    scale_range: Sequence[float] = (0.3, 0.4),
    rotation_range: Sequence[float] = (-180.0, 180.0),
    quarter_turns: bool = False,
    saturation_range: Sequence[float] = (0.7, 1.0),
    value_range: Sequence[float] = (0.8, 1.0),
    background: Sequence[float] = (0.0, 0.0, 0.0),
    min_visible: float = 0.5,
    max_tries: int = 100,
    dtype: torch.dtype = torch.float32,
) -> MultiObjectScenes:
    r"""Random multi-object scenes with instance masks, deterministic in ``seed``.

    Every object draws its shape uniformly from ``shapes``, its centre uniformly from
    ``position_range``, its scale from ``scale_range``, its angle from ``rotation_range``
    (plus a random multiple of 90 degrees with ``quarter_turns``, which gives the 19 fixed
    tetrominoes of Tetrominoes), and a colour of random hue. Scenes in which some object
    keeps less than ``min_visible`` of its in-image pixels (occluded by later objects), or has
    none, are drawn again.

    Args:
        num_images: ``N``.
        seed: the seed; equal arguments give identical scenes. (default: ``0``)
        size: ``H = W`` or ``(H, W)``. (default: ``35``)
        num_objects: objects per scene, or a range ``(low, high)`` drawn per scene.
            (default: ``3``)
        shapes: names from :data:`SHAPES`. (default: all)
        position_range: ``((x_low, x_high), (y_low, y_high))`` of the centres.
            (default: ``((-0.7, 0.7), (-0.7, 0.7))``)
        scale_range: ``(low, high)``, uniform. (default: ``(0.3, 0.4)``, tetromino blocks of
            about 3 pixels at 35 x 35)
        rotation_range: ``(low, high)`` in degrees, uniform. (default: ``(-180, 180)``)
        quarter_turns: add a uniform multiple of 90 degrees. (default: ``False``)
        saturation_range: HSV saturation of the colours. (default: ``(0.7, 1.0)``)
        value_range: HSV value of the colours. (default: ``(0.8, 1.0)``)
        background: background RGB. (default: black)
        min_visible: least fraction of its in-image pixels every object keeps, in
            ``[0, 1]``. (default: ``0.5``)
        max_tries: redraws before giving up. (default: ``100``)
        dtype: dtype of images, positions, scales, angles and colours.
            (default: ``torch.float32``)

    Returns:
        :class:`MultiObjectScenes`.

    Raises:
        RuntimeError: if some scene still fails ``min_visible`` after ``max_tries`` draws
            (the objects are too large or the position range too small for their number).

    Example:
        >>> scenes = make_multi_object_scenes(4, seed=0, shapes=TETROMINOES)
        >>> scenes.images.shape, scenes.masks.shape, int(scenes.masks.max())
        (torch.Size([4, 3, 35, 35]), torch.Size([4, 35, 35]), 3)
    """
    num_images = check_positive_int("num_images", num_images)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    check_positive_int("size", height)
    check_positive_int("size", width)
    if isinstance(num_objects, int):
        lo_obj = hi_obj = check_positive_int("num_objects", num_objects)
    else:
        lo_obj, hi_obj = (int(v) for v in _range("num_objects", num_objects, 0))
        check_positive_int("num_objects", hi_obj)
    shapes = list(shapes) if not isinstance(shapes, str) else [shapes]
    unknown = [s for s in shapes if s not in SHAPES]
    if not shapes or unknown:
        raise ValueError(f"shapes must be a non-empty list of names from {SHAPES}, got {shapes}")
    if len(position_range) != 2:
        raise ValueError(
            f"position_range must be ((x_low, x_high), (y_low, y_high)), got {position_range!r}"
        )
    x_range = _range("position_range[0]", position_range[0])
    y_range = _range("position_range[1]", position_range[1])
    s_range = _range("scale_range", scale_range, 0.0)
    if s_range[0] <= 0:
        raise ValueError(f"scale_range must be positive, got {s_range}")
    r_range = _range("rotation_range", rotation_range)
    sat_range = _range("saturation_range", saturation_range, 0.0, 1.0)
    val_range = _range("value_range", value_range, 0.0, 1.0)
    if len(background) != 3:
        raise ValueError(f"background must be an RGB triple, got {background!r}")
    if not (0.0 <= min_visible <= 1.0):
        raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
    max_tries = check_positive_int("max_tries", max_tries)

    gen = torch.Generator().manual_seed(seed)
    shape_ids = torch.tensor([SHAPES.index(s) for s in shapes])
    f64 = torch.float64

    def uniform(shape: tuple[int, ...], bounds: tuple[float, float]) -> Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(shape, generator=gen, dtype=f64)

    def draw(n: int) -> tuple[Tensor, ...]:
        o = hi_obj
        count = torch.randint(lo_obj, hi_obj + 1, (n, 1), generator=gen)
        kind = shape_ids[torch.randint(0, len(shape_ids), (n, o), generator=gen)]
        kind = torch.where(torch.arange(o) < count, kind, -1)
        pos = torch.stack([uniform((n, o), x_range), uniform((n, o), y_range)], dim=-1)
        scale = uniform((n, o), s_range)
        angle = uniform((n, o), r_range)
        if quarter_turns:
            angle = angle + 90.0 * torch.randint(0, 4, (n, o), generator=gen)
        angle = angle * (math.pi / 180)
        colour = _hsv_to_rgb(
            uniform((n, o), (0.0, 1.0)), uniform((n, o), sat_range), uniform((n, o), val_range)
        )
        return kind, pos, scale, angle, colour

    params = list(draw(num_images))
    images = torch.empty(num_images, 3, height, width, dtype=f64)
    masks = torch.empty(num_images, height, width, dtype=torch.long)
    todo = torch.arange(num_images)
    for _ in range(max_tries):
        sub = [p[todo] for p in params]
        inside = _rasterize(*sub[:4], height, width)
        images[todo], masks[todo] = _compose(inside, sub[4], background, f64)
        full = inside.flatten(2).sum(-1)  # (n, O) in-image pixels of each object alone
        labels = torch.arange(1, params[0].shape[1] + 1)
        visible = (masks[todo][:, None] == labels[:, None, None]).flatten(2).sum(-1)
        present = sub[0] >= 0
        ok = ((visible >= min_visible * full) & (full > 0)) | ~present
        bad = ~ok.all(dim=1)
        if not bool(bad.any()):
            break
        redraw = draw(int(bad.sum()))
        for p, r in zip(params, redraw, strict=True):
            p[todo[bad]] = r
        todo = todo[bad]
    else:
        raise RuntimeError(
            f"{len(todo)} scenes still have an object with less than min_visible={min_visible} "
            f"of its pixels after max_tries={max_tries} draws: lower num_objects or "
            "scale_range, widen position_range, or lower min_visible"
        )
    kind, pos, scale, angle, colour = params
    return MultiObjectScenes(
        images.to(dtype),
        masks,
        kind,
        pos.to(dtype),
        scale.to(dtype),
        angle.to(dtype),
        colour.to(dtype),
    )


__all__ = [
    "POSE_SPLITS",
    "SHAPES",
    "SPRITES",
    "TETROMINOES",
    "MultiObjectScenes",
    "make_multi_object_scenes",
    "render_scenes",
]
