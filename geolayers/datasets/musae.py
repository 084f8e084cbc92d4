"""Readers for the MUSAE attributed social graphs: Facebook page-page and Twitch users.

From `"Multi-scale Attributed Node Embedding" <https://arxiv.org/abs/1909.13021>`_ (Rozemberczki,
Allen and Sarkar, Journal of Complex Networks 2021), data from the MUSAE repository
(GPL-3.0). A root folder holds, per graph ``NAME``:

* ``NAME_edges.csv``: a header line, then one ``u,v`` pair of node ids per line (undirected);
* ``NAME_target.csv``: a header line, then one row per node, with the node id and the target;
* ``NAME_features.json``: ``{"node id": [feature id, ...], ...}``, the ids of the node's
  binary features.

``NAME`` is ``facebook`` for the page-page graph (22,470 pages, 171,002 edge lines of which 179
are self loops, ``page_type`` in 4 classes) and the country code for Twitch (``ENGB``: 7,126
users, 35,324 edges, binary target ``mature``, node id in the ``new_id`` column). The file
names of the original repository (``musae_facebook_edges.csv``, ``musae_ENGB_edges.csv``, ...)
are accepted as well.

Nothing here downloads: pass the folder of a local copy.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import remove_self_loops, to_undirected

#: Page categories of the Facebook graph, in the order of their class index.
FACEBOOK_CLASSES = ("company", "government", "politician", "tvshow")
#: Country codes of the Twitch graphs of MUSAE.
TWITCH_COUNTRIES = ("DE", "ENGB", "ES", "FR", "PTBR", "RU")
#: Class names of the Twitch target ``mature`` (0 = ``False``, 1 = ``True``).
TWITCH_CLASSES = ("not mature", "mature")


def _find(root: str, name: str, suffix: str) -> str:
    """Path of ``NAME_suffix`` (or the repository's ``musae_NAME_suffix``) under ``root``."""
    candidates = [
        os.path.join(root, f"{name}_{suffix}"),
        os.path.join(root, f"musae_{name}_{suffix}"),
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"MUSAE file not found: expected {candidates[0]!r} (or {os.path.basename(candidates[1])!r} "
        f"in the same folder). Pass root= the folder holding the MUSAE {name} files "
        "(e.g. ../shared/data/musae from the project root)"
    )


def _check_root(root: str | os.PathLike[str]) -> str:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or an os.PathLike, got {type(root).__name__}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"MUSAE root folder not found: {root!r}")
    return root


def _read_table(path: str) -> tuple[list[str], list[list[str]]]:
    # The csv module, not a split on commas: Facebook page names contain quoted commas.
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if not rows:
        raise ValueError(f"{path!r} is empty; expected a header line and one row per node")
    return rows[0], rows[1:]


def _column(header: list[str], name: str, path: str) -> int:
    if name not in header:
        raise ValueError(f"{path!r} has no column {name!r}; its header is {header}")
    return header.index(name)


def _read_edges(path: str, num_nodes: int) -> Tensor:
    try:
        pairs = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path!r} must hold integer 'u,v' rows after a header: {err}") from err
    if pairs.size == 0:
        pairs = np.zeros((0, 2), dtype=np.int64)
    if pairs.shape[1] != 2:
        raise ValueError(f"{path!r} must hold two node ids per row, got {pairs.shape[1]} columns")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_nodes):
        raise ValueError(
            f"{path!r}: node ids must lie in 0..{num_nodes - 1} (the target file's nodes), got "
            f"{pairs.min()}..{pairs.max()}"
        )
    edge_index = torch.from_numpy(np.ascontiguousarray(pairs.T))
    edge_index, _ = remove_self_loops(edge_index)
    # to_undirected adds the reverse of every pair and coalesces, which also drops duplicates.
    return to_undirected(edge_index, num_nodes=num_nodes)


def _read_features(
    path: str, num_nodes: int, num_features: int | None, dense: bool
) -> tuple[Tensor, int]:
    with open(path, encoding="utf-8") as fh:
        table = json.load(fh)
    if not isinstance(table, dict):
        raise ValueError(f"{path!r} must hold a JSON object 'node id -> list of feature ids'")
    rows: list[int] = []
    cols: list[int] = []
    for key, ids in table.items():
        node = int(key)
        if not 0 <= node < num_nodes:
            raise ValueError(f"{path!r}: node id {node} outside 0..{num_nodes - 1}")
        rows.extend([node] * len(ids))
        cols.extend(int(i) for i in ids)
    row = torch.tensor(rows, dtype=torch.long)
    col = torch.tensor(cols, dtype=torch.long)
    largest = int(col.max()) + 1 if col.numel() else 0
    if num_features is None:
        num_features = largest
    elif largest > num_features:
        raise ValueError(
            f"num_features must exceed the largest feature id of {path!r} ({largest - 1}), "
            f"got {num_features}"
        )
    if col.numel() and int(col.min()) < 0:
        raise ValueError(f"{path!r}: feature ids must be >= 0, got {int(col.min())}")
    if dense:
        x = torch.zeros(num_nodes, num_features)
        x[row, col] = 1.0
        return x, num_features
    # A node may list an id twice: keep one entry per (node, id), so that x stays 0/1.
    key = torch.unique(row * num_features + col)
    indices = torch.stack([key // num_features, key % num_features])
    x = torch.sparse_coo_tensor(
        indices, torch.ones(key.numel()), (num_nodes, num_features), check_invariants=True
    )
    x = x.coalesce()
    return x, num_features


def _check_num_features(num_features: int | None) -> None:
    if num_features is not None and (not isinstance(num_features, int) or num_features < 1):
        raise ValueError(f"num_features must be a positive int or None, got {num_features!r}")


def _page_types(values: list[str], path: str) -> list[int]:
    index = {name: i for i, name in enumerate(FACEBOOK_CLASSES)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise ValueError(
            f"{path!r}: page_type must be one of {list(FACEBOOK_CLASSES)}, got {unknown}"
        )
    return [index[v] for v in values]


def _mature_flags(values: list[str], path: str) -> list[int]:
    flags = {"true": 1, "false": 0}
    values = [v.strip().lower() for v in values]
    unknown = sorted(set(values) - set(flags))
    if unknown:
        raise ValueError(f"{path!r}: 'mature' must be True or False, got {unknown}")
    return [flags[v] for v in values]


def _load_graph(
    root: str | os.PathLike[str],
    name: str,
    id_name: str,
    label_name: str,
    encode: Callable[[list[str], str], list[int]],
    class_names: tuple[str, ...],
    dense: bool,
    num_features: int | None,
) -> Data:
    """The three files of graph ``name`` under ``root`` as a :class:`Data`; ``encode`` turns the
    ``label_name`` column into class indices (and rejects unknown values)."""
    root = _check_root(root)
    _check_num_features(num_features)
    target_path = _find(root, name, "target.csv")
    edges_path = _find(root, name, "edges.csv")
    features_path = _find(root, name, "features.json")

    header, rows = _read_table(target_path)
    id_col = _column(header, id_name, target_path)
    label_col = _column(header, label_name, target_path)
    ids = torch.tensor([int(r[id_col]) for r in rows], dtype=torch.long)
    num_nodes = ids.numel()
    if not torch.equal(ids.sort().values, torch.arange(num_nodes)):
        raise ValueError(f"{target_path!r}: the {id_name!r} column must list 0..N-1 once each")
    y = torch.empty(num_nodes, dtype=torch.long)
    y[ids] = torch.tensor(encode([r[label_col] for r in rows], target_path), dtype=torch.long)

    edge_index = _read_edges(edges_path, num_nodes)
    x, _ = _read_features(features_path, num_nodes, num_features, dense)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes, class_names=list(class_names))


def load_musae_facebook(
    root: str | os.PathLike[str], *, dense: bool = False, num_features: int | None = None
) -> Data:
    """Load the MUSAE Facebook page-page graph (22,470 pages, 4 page types). Never downloads.

    Args:
        root: folder with ``facebook_edges.csv``, ``facebook_target.csv`` (columns ``id``,
            ``facebook_id``, ``page_name``, ``page_type``) and ``facebook_features.json``.
        dense: return ``x`` as a dense multi-hot matrix instead of a sparse COO one (the dense
            float32 matrix of the full graph takes 424 MB). (default: ``False``)
        num_features: width ``F`` of ``x``. (default: ``None``, the largest feature id + 1,
            4,714 for the full graph)

    Returns:
        A :class:`torch_geometric.data.Data` with

        * ``x: (N, F)`` float32 multi-hot features, sparse COO (coalesced) unless ``dense``;
        * ``edge_index: (2, E)`` int64, undirected (both directions), without self loops or
          duplicates, sorted (``E = 341,646`` for the full graph);
        * ``y: (N,)`` int64 page type, an index into ``class_names``;
        * ``class_names``: :data:`FACEBOOK_CLASSES`, ``num_nodes = N``.

    Raises:
        FileNotFoundError: ``root`` or one of the three files is missing (the message names it).
        ValueError: a file is not in the expected format, or a node id is out of range.

    Example:
        >>> data = load_musae_facebook("../shared/data/musae")  # doctest: +SKIP
    """
    return _load_graph(
        root, "facebook", "id", "page_type", _page_types, FACEBOOK_CLASSES, dense, num_features
    )


def load_musae_twitch(
    root: str | os.PathLike[str],
    country: str = "ENGB",
    *,
    dense: bool = False,
    num_features: int | None = None,
) -> Data:
    """Load a MUSAE Twitch user graph (target ``mature``: explicit content). Never downloads.

    Args:
        root: folder with ``COUNTRY_edges.csv`` (columns ``from``, ``to``), ``COUNTRY_target.csv``
            (columns ``id``, ``days``, ``mature``, ``views``, ``partner``, ``new_id``; ``new_id``
            is the node id used by the other two files) and ``COUNTRY_features.json``.
        country: one of :data:`TWITCH_COUNTRIES`. (default: ``"ENGB"``)
        dense: return ``x`` dense instead of sparse COO. (default: ``False``)
        num_features: width ``F`` of ``x``. (default: ``None``, the largest feature id + 1)

    Returns:
        A :class:`torch_geometric.data.Data` with ``x: (N, F)`` float32 multi-hot features
        (sparse COO unless ``dense``), ``edge_index: (2, E)`` int64 undirected without self
        loops or duplicates, ``y: (N,)`` int64 (1 = mature), ``class_names`` =
        :data:`TWITCH_CLASSES`, ``num_nodes = N`` (7,126 for ENGB, with ``E = 70,648``).

    Raises:
        FileNotFoundError: ``root`` or one of the three files is missing (the message names it).
        ValueError: ``country`` is unknown, or a file is not in the expected format.

    Example:
        >>> data = load_musae_twitch("../shared/data/musae", "ENGB")  # doctest: +SKIP
    """
    if country not in TWITCH_COUNTRIES:
        raise ValueError(f"country must be one of {list(TWITCH_COUNTRIES)}, got {country!r}")
    return _load_graph(
        root, country, "new_id", "mature", _mature_flags, TWITCH_CLASSES, dense, num_features
    )


__all__ = [
    "FACEBOOK_CLASSES",
    "TWITCH_CLASSES",
    "TWITCH_COUNTRIES",
    "load_musae_facebook",
    "load_musae_twitch",
]
