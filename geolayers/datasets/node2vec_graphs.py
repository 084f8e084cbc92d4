r"""Readers for the node-classification graphs of node2vec: edge lists and multi-label files.

The graphs of `"node2vec: Scalable Feature Learning for Networks"
<https://arxiv.org/abs/1607.00653>`_ (Grover and Leskovec, KDD 2016, section 4.3), as the
PecanPy benchmark suite distributes them (`"PecanPy: a fast, efficient and parallelized
Python implementation of node2vec" <https://doi.org/10.1093/bioinformatics/btab202>`_, Liu and
Krishnan, Bioinformatics 2021; BSD-3-Clause). A root folder holds, per graph ``NAME``:

* ``NAME.edg``: one edge per line, ``u<TAB>v`` or ``u<TAB>v<TAB>w``, undirected, 1-based ids;
* ``NAME.labels.tsv``: one ``node<TAB>label`` line per (node, label) pair, multi-label.

What the files hold (counted on the PecanPy copies):

============  ======  ==================  =======  ===========================================
graph         nodes   undirected edges    classes  notes
============  ======  ==================  =======  ===========================================
BlogCatalog   10,312  333,983             38       3 nodes have no label
PPI           3,852   38,705 (864 loops)  50       ids run to 3,890: 38 ids appear in neither
                                                   file (the paper's 3,890 nodes count them)
Wikipedia     4,777   92,517 (222 loops)  21       weighted; every edge is listed in both
                                                   directions (184,812 lines), 31 unlabelled
============  ======  ==================  =======  ===========================================

:func:`load_node2vec_graph` numbers the nodes that appear in either file, in increasing order
of their id (PecanPy's reader, which maps the ids it meets, sees the same 3,852 PPI nodes);
``node_ids`` gives the original id of every node.

Parsing is vectorised (``numpy.loadtxt``'s C reader, as int64 when the file has two integer
columns): BlogCatalog's 333,983 lines load in under 0.1 s, Wikipedia's weighted ones in
0.15 s. When a file is malformed, a second, line-by-line pass finds the first offending line,
so that every error names the file and the line number.

Nothing here downloads: pass the folder of a local copy.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from geolayers._checks import describe

#: The graphs :func:`load_node2vec_graph` knows, with their (nodes, classes) in the PecanPy copy.
NODE2VEC_GRAPHS = {"BlogCatalog": (10312, 38), "PPI": (3852, 50), "Wikipedia": (4777, 21)}

# Files with a weight column are parsed as float64 (one C pass for ids and weights alike);
# ids above 2**53 would lose digits there, so they are rejected rather than silently rounded.
_MAX_EXACT_ID = 2**53


class EdgeList(NamedTuple):
    """A graph read by :func:`read_edge_list`.

    Attributes:
        edge_index: ``(2, E)`` int64 0-based ``(source, target)`` pairs, sorted, without
            duplicates; both directions of every undirected edge, self loops once.
        edge_weight: ``(E,)`` weights aligned with ``edge_index``, or ``None`` (unweighted).
        num_nodes: ``N``.
    """

    edge_index: Tensor
    edge_weight: Tensor | None
    num_nodes: int


class MultiLabels(NamedTuple):
    """Node labels read by :func:`read_multilabel_tsv`.

    Attributes:
        labels: ``(N, C)`` bool, ``labels[i, c]`` iff node ``i`` has the label ``label_ids[c]``.
        label_ids: the ``C`` distinct label ids of the file, sorted (column ``c`` is
            ``label_ids[c]``).
    """

    labels: Tensor
    label_ids: list[int]


class Node2VecGraph(NamedTuple):
    """A node2vec classification graph loaded by :func:`load_node2vec_graph`.

    Attributes:
        edge_index: ``(2, E)`` int64, undirected (both directions), sorted, self loops once.
        edge_weight: ``(E,)`` float32 weights (Wikipedia) or ``None`` (BlogCatalog, PPI).
        num_nodes: ``N``, the nodes that appear in the edge or the label file.
        labels: ``(N, C)`` bool multi-label matrix; column ``c`` is the ``c``-th smallest label
            id of the file.
        name: ``"BlogCatalog"``, ``"PPI"`` or ``"Wikipedia"``.
        node_ids: ``(N,)`` int64, the id of node ``i`` in the files (1-based).
    """

    edge_index: Tensor
    edge_weight: Tensor | None
    num_nodes: int
    labels: Tensor
    name: str
    node_ids: Tensor


# --------------------------------------------------------------------- parsing


def _check_path(path: object, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or an os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path!r}")
    return path


def _data_lines(path: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of the lines that hold data: text after a ``#`` is a
    comment, blank lines are skipped (as ``numpy.loadtxt`` reads them)."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split("#", 1)[0].split()
            if fields:
                yield lineno, fields


def _line_of_row(path: str, row: int) -> tuple[int, str]:
    """Line number and text of the ``row``-th (0-based) data line, for an error message."""
    for i, (lineno, fields) in enumerate(_data_lines(path)):
        if i == row:
            return lineno, " ".join(fields)
    raise IndexError(row)  # pragma: no cover - rows come from the same file


def _where(path: str, row: int) -> str:
    lineno, text = _line_of_row(path, row)
    return f"{path!r}, line {lineno} ({text!r})"


def _first_bad_line(path: str, allowed: tuple[int, ...], layout: str) -> str:
    """The message for the first line with a column count outside ``allowed``, a column count
    other than the first line's, or a field that is not a number."""
    first: tuple[int, int] | None = None
    for lineno, fields in _data_lines(path):
        if len(fields) not in allowed:
            n = len(fields)
            return f"{path!r}, line {lineno}: expected {layout}, got {n} column{'s' * (n != 1)}"
        if first is None:
            first = (lineno, len(fields))
        elif len(fields) != first[1]:
            return (
                f"{path!r}, line {lineno} has {len(fields)} columns but line {first[0]} has "
                f"{first[1]}: every line must be {layout}, not a mix"
            )
        for field in fields:
            try:
                float(field)
            except ValueError:
                return f"{path!r}, line {lineno}: {field!r} is not a number (expected {layout})"
    return f"{path!r} could not be parsed as {layout}"  # pragma: no cover - loadtxt agreed


def _loadtxt(path: str, dtype: type) -> np.ndarray:
    with warnings.catch_warnings():
        # An empty file is a graph without edges, not a reason to warn.
        warnings.filterwarnings("ignore", message=".*input contained no data")
        # numpy < 2.x reads "3.5" into an int64 column as 3, with only a DeprecationWarning:
        # make it an error, so that the float reader takes over and names the line.
        warnings.filterwarnings("error", message=".*[Pp]arsing an integer via a float")
        return np.loadtxt(path, dtype=dtype, comments="#", ndmin=2, encoding="utf-8")


def _read_table(path: str, allowed: tuple[int, ...], layout: str) -> np.ndarray:
    """The data lines of ``path`` as an int64 or float64 ``(rows, cols)`` array, ``cols`` in
    ``allowed`` and the same on every line; ``(0, 0)`` for a file without data."""
    first = next(_data_lines(path), (0, []))[1]
    table = None
    if len(first) == 2:
        # Two integer columns parse five times faster as int64 than as float64; anything
        # else (a float id, a third column further down) falls back to the float reader.
        try:
            table = _loadtxt(path, np.int64)
        except (ValueError, DeprecationWarning):
            table = None
    if table is None:
        try:
            table = _loadtxt(path, np.float64)
        except ValueError:
            raise ValueError(_first_bad_line(path, allowed, layout)) from None
    if table.size == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if table.shape[1] not in allowed:
        raise ValueError(_first_bad_line(path, allowed, layout))
    return table


def _integers(path: str, column: np.ndarray, what: str) -> np.ndarray:
    """A float64 column as int64, or a ValueError naming the first line that is no integer."""
    bad = ~np.isfinite(column) | (column != np.floor(column)) | (np.abs(column) >= _MAX_EXACT_ID)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{_where(path, row)}: {what} must be an integer, got {column[row].item()!r}"
        )
    return column.astype(np.int64)


def _ids(path: str, column: np.ndarray, one_based: bool, num_nodes: int | None, what: str):
    """0-based int64 ids from an int64 or float64 column, with the first bad row named."""
    if column.dtype != np.int64:
        column = _integers(path, column, what)
    ids = column - (1 if one_based else 0)
    low = 1 if one_based else 0
    if ids.size and ids.min() < 0:
        row = int(np.argmin(ids))
        raise ValueError(
            f"{_where(path, row)}: {what} {ids[row] + low} is below {low} "
            f"({'1-based' if one_based else '0-based'} ids; pass one_based=... to change)"
        )
    if num_nodes is not None and ids.size and ids.max() >= num_nodes:
        row = int(np.argmax(ids))
        raise ValueError(
            f"{_where(path, row)}: {what} {ids[row] + low} is out of range for num_nodes="
            f"{num_nodes} (ids must lie in {low}..{num_nodes - 1 + low})"
        )
    return ids


def _check_one_based(one_based: object) -> None:
    if not isinstance(one_based, bool):
        raise TypeError(f"one_based must be a bool, got {type(one_based).__name__}")


def _check_num_nodes(num_nodes: object) -> int | None:
    if num_nodes is None:
        return None
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f"num_nodes must be an int or None, got {type(num_nodes).__name__}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
    return num_nodes


# --------------------------------------------------------------------- edge lists


def _coalesce(
    path: str,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray | None,
    row: np.ndarray,
    num_nodes: int,
    one_based: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sort the directed edges by (source, target) and keep one of each; ``row`` is the data
    row every edge came from, to name the lines of duplicates whose weights disagree."""
    key = src * num_nodes + dst
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    if weight is not None:
        weight = weight[order]
        # Index of the first copy of every edge, repeated over its copies.
        head = np.maximum.accumulate(np.where(first, np.arange(key.size), 0))
        clash = weight != weight[head]
        if clash.any():
            i = int(np.argmax(clash))
            low = 1 if one_based else 0
            a, b = (
                _line_of_row(path, int(row[order[head[i]]]))[0],
                _line_of_row(path, int(row[order[i]]))[0],
            )
            raise ValueError(
                f"{path!r}: the edge ({src[order[i]] + low}, {dst[order[i]] + low}) is given "
                f"twice with different weights, {weight[head[i]].item()!r} (line {a}) and "
                f"{weight[i].item()!r} (line {b}); a repeated edge (for an undirected graph: in "
                "either direction) must carry one weight"
            )
        weight = weight[first]
    key = key[first]
    return key // num_nodes, key % num_nodes, weight


def read_edge_list(
    path: str | os.PathLike[str],
    *,
    num_nodes: int | None = None,
    one_based: bool = True,
    undirected: bool = True,
    weighted: bool | None = None,
    dtype: torch.dtype = torch.float32,
) -> EdgeList:
    """Read a graph from a text file of ``u v`` or ``u v w`` lines (tab or space separated).

    Text after a ``#`` is a comment and blank lines are skipped. With ``undirected``, every
    line ``u v`` gives the two directed edges ``(u, v)`` and ``(v, u)`` (a self loop ``(u, u)``
    once), as PyTorch Geometric stores undirected graphs. An edge listed more than once (in
    either direction, for undirected graphs) is kept once, and its weights must agree.

    Args:
        path: the file.
        num_nodes: ``N``; ids must lie in ``1..N`` (``0..N-1`` when not ``one_based``).
            (default: ``None``: the largest id, + 1 when 0-based)
        one_based: the ids start at 1 (node ``i`` of the result is id ``i + 1``).
            (default: ``True``, as the node2vec files)
        undirected: return both directions of every edge. (default: ``True``)
        weighted: ``None``: weighted iff the lines have three columns; ``True``: require
            three columns; ``False``: ignore a third column. (default: ``None``)
        dtype: dtype of ``edge_weight``, ``torch.float32`` or ``torch.float64``.
            (default: ``torch.float32``)

    Returns:
        :class:`EdgeList` ``(edge_index (2, E) int64, edge_weight (E,) or None, num_nodes)``,
        sorted by (source, target).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a malformed line (not two or three numbers, columns that change from line
            to line, an id that is not an integer), an id out of range, a negative or
            non-finite weight, or an edge repeated with different weights; the message gives
            the file and the line number.

    Example:
        >>> read_edge_list("../shared/data/node2vec/PPI.edg").num_nodes  # doctest: +SKIP
        3890
    """
    path = _check_path(path, "edge list")
    num_nodes = _check_num_nodes(num_nodes)
    _check_one_based(one_based)
    if not isinstance(undirected, bool):
        raise TypeError(f"undirected must be a bool, got {type(undirected).__name__}")
    if weighted is not None and not isinstance(weighted, bool):
        raise TypeError(f"weighted must be a bool or None, got {type(weighted).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")

    allowed = (3,) if weighted else (2, 3)
    layout = "'u v w' (weighted=True)" if weighted else "'u v' or 'u v w'"
    table = _read_table(path, allowed, layout)
    has_weight = table.shape[1] == 3 and weighted is not False
    if table.size:
        src = _ids(path, table[:, 0], one_based, num_nodes, "node id")
        dst = _ids(path, table[:, 1], one_based, num_nodes, "node id")
    else:
        src = dst = np.zeros(0, dtype=np.int64)
    weight = None
    if has_weight:
        weight = table[:, 2]
        bad = ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{_where(path, row)}: edge weights must be finite and >= 0, got {weight[row].item()!r}"
            )
    if num_nodes is None:
        num_nodes = int(max(src.max(), dst.max())) + 1 if src.size else 0

    row = np.arange(src.size)
    if undirected:
        # The reverse of every edge but self loops, which would otherwise appear twice.
        loop = src == dst
        src, dst = np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]])
        row = np.concatenate([row, row[~loop]])
        if weight is not None:
            weight = np.concatenate([weight, weight[~loop]])
    if src.size:
        src, dst, weight = _coalesce(path, src, dst, weight, row, num_nodes, one_based)
    edge_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64, copy=False))
    edge_weight = None if weight is None else torch.from_numpy(weight).to(dtype)
    if weighted and edge_weight is None:
        edge_weight = torch.zeros(0, dtype=dtype)  # a weighted file without a single edge
    return EdgeList(edge_index.reshape(2, -1), edge_weight, num_nodes)


# --------------------------------------------------------------------- labels


def _read_label_pairs(path: str, one_based: bool, num_nodes: int | None):
    """``(nodes, label values)`` int64 arrays of the ``node label`` lines of ``path``."""
    table = _read_table(path, (2,), "'node<TAB>label'")
    if table.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    nodes = _ids(path, table[:, 0], one_based, num_nodes, "node id")
    values = table[:, 1]
    if values.dtype != np.int64:
        values = _integers(path, values, "the label")
    return nodes, values


def _label_matrix(nodes: np.ndarray, values: np.ndarray, num_nodes: int) -> MultiLabels:
    label_ids, column = np.unique(values, return_inverse=True)
    labels = torch.zeros(num_nodes, label_ids.size, dtype=torch.bool)
    labels[torch.from_numpy(nodes), torch.from_numpy(column.reshape(-1))] = True
    return MultiLabels(labels, label_ids.tolist())


def read_multilabel_tsv(
    path: str | os.PathLike[str], num_nodes: int, *, one_based: bool = True
) -> MultiLabels:
    """Read multi-label node classes from ``node<TAB>label`` lines, one per (node, label).

    Labels are integers (any base); the sorted distinct ones become the columns ``0..C-1``.
    A (node, label) pair listed twice counts once; nodes without a line have no label. Text
    after a ``#`` is a comment and blank lines are skipped.

    Args:
        path: the file.
        num_nodes: ``N``, the rows of the matrix; node ids must lie in ``1..N`` (``0..N-1``
            when not ``one_based``).
        one_based: the node ids start at 1. (default: ``True``, as the node2vec files)

    Returns:
        :class:`MultiLabels` ``(labels (N, C) bool, label_ids)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not two integers, or a node id is out of range (the message
            gives the file and the line number).

    Example:
        >>> read_multilabel_tsv("../shared/data/node2vec/PPI.labels.tsv", 3890)  # doctest: +SKIP
    """
    path = _check_path(path, "label")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise TypeError(f"num_nodes must be an int, got {describe(num_nodes)}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
    _check_one_based(one_based)
    nodes, values = _read_label_pairs(path, one_based, num_nodes)
    return _label_matrix(nodes, values, num_nodes)


# --------------------------------------------------------------------- the node2vec graphs


def load_node2vec_graph(name: str, root: str | os.PathLike[str]) -> Node2VecGraph:
    """Load BlogCatalog, PPI or Wikipedia, the classification graphs of node2vec.

    Reads ``root/NAME.edg`` (undirected, 1-based, weighted iff it has a third column) and
    ``root/NAME.labels.tsv``; the nodes are the ids that appear in either file, numbered in
    increasing id order (module docstring: PPI's ids run to 3,890 but 3,852 of them appear).
    Never downloads.

    Args:
        name: ``"BlogCatalog"`` (10,312 nodes, 38 classes), ``"PPI"`` (3,852 nodes, 50
            classes) or ``"Wikipedia"`` (4,777 nodes, 21 classes, weighted).
        root: folder holding the two files (``../shared/data/node2vec`` from the project root).

    Returns:
        :class:`Node2VecGraph` ``(edge_index (2, E), edge_weight (E,) float32 or None,
        num_nodes, labels (N, C) bool, name, node_ids (N,))``.

    Raises:
        ValueError: ``name`` is not one of the three graphs, or a file is malformed.
        FileNotFoundError: ``root`` or one of the files is missing (the message names it).

    Example:
        >>> load_node2vec_graph("PPI", "../shared/data/node2vec").num_nodes  # doctest: +SKIP
        3852
    """
    if name not in NODE2VEC_GRAPHS:
        raise ValueError(f"name must be one of {list(NODE2VEC_GRAPHS)}, got {name!r}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or an os.PathLike, got {type(root).__name__}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"node2vec data folder not found: {root!r}; pass root= the folder holding "
            f"{name}.edg and {name}.labels.tsv (e.g. ../shared/data/node2vec from the project root)"
        )
    edge_path = os.path.join(root, f"{name}.edg")
    label_path = os.path.join(root, f"{name}.labels.tsv")
    for path, what in (
        (edge_path, "the edge list, one 'u<TAB>v[<TAB>w]' line per edge, 1-based ids"),
        (label_path, "the labels, one 'node<TAB>label' line per (node, label) pair"),
    ):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"node2vec {name} file not found: {path!r}; expected {what} (the PecanPy "
                "benchmark copy)"
            )

    graph = read_edge_list(edge_path)
    nodes, values = _read_label_pairs(label_path, True, None)
    size = max(graph.num_nodes, int(nodes.max()) + 1 if nodes.size else 0)
    present = np.zeros(size, dtype=bool)
    present[graph.edge_index.numpy().ravel()] = True
    present[nodes] = True
    node_ids = np.flatnonzero(present)
    new_index = np.cumsum(present) - 1  # old 0-based id -> new index, for present ids
    edge_index = torch.from_numpy(new_index[graph.edge_index.numpy()])
    labels = _label_matrix(new_index[nodes], values, node_ids.size).labels
    return Node2VecGraph(
        edge_index,
        graph.edge_weight,
        int(node_ids.size),
        labels,
        name,
        torch.from_numpy(node_ids + 1),
    )


__all__ = [
    "EdgeList",
    "MultiLabels",
    "NODE2VEC_GRAPHS",
    "Node2VecGraph",
    "load_node2vec_graph",
    "read_edge_list",
    "read_multilabel_tsv",
]
