import os
import time

import numpy as np
import pytest
import torch

from geolayers.datasets.node2vec_graphs import (
    NODE2VEC_GRAPHS,
    EdgeList,
    Node2VecGraph,
    load_node2vec_graph,
    read_edge_list,
    read_multilabel_tsv,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
REAL = os.path.join(REPO_ROOT, "..", "shared", "data", "node2vec")
has_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "BlogCatalog.edg")),
    reason="node2vec data not found at ../shared/data/node2vec",
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def pairs(edge_index):
    return [tuple(p) for p in edge_index.t().tolist()]


def test_unweighted_undirected(tmp_path):
    # Tabs and spaces, a comment line and a trailing comment, a blank line, a self loop
    # (3, 3), the edge 1-2 listed in both directions, no newline at the end.
    path = write(tmp_path, "g.edg", "# header\n1\t2\n2 1\n\n2\t3  # why\n3\t3\n4 1")
    graph = read_edge_list(path)
    assert isinstance(graph, EdgeList)
    assert graph.num_nodes == 4 and graph.edge_weight is None
    assert graph.edge_index.dtype == torch.int64
    # 0-based, both directions, the self loop once, the duplicate once, sorted.
    assert pairs(graph.edge_index) == [(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 2), (3, 0)]
    # Directed: as listed (the duplicate 1-2 / 2-1 is two different edges there).
    directed = read_edge_list(path, undirected=False)
    assert pairs(directed.edge_index) == [(0, 1), (1, 0), (1, 2), (2, 2), (3, 0)]
    # 0-based ids and an explicit node count (isolated nodes at the end).
    zero = read_edge_list(path, one_based=False, num_nodes=7)
    assert zero.num_nodes == 7 and (1, 2) in pairs(zero.edge_index)
    assert (4, 1) in pairs(zero.edge_index) and (0, 1) not in pairs(zero.edge_index)


def test_weighted(tmp_path):
    path = write(tmp_path, "w.edg", "1 2 0.5\n2 3 2\n3 3 1.25\n3 2 2.0\n")
    graph = read_edge_list(path, dtype=torch.float64)
    assert graph.edge_weight.dtype == torch.float64
    got = dict(zip(pairs(graph.edge_index), graph.edge_weight.tolist(), strict=True))
    assert got == {(0, 1): 0.5, (1, 0): 0.5, (1, 2): 2.0, (2, 1): 2.0, (2, 2): 1.25}
    assert read_edge_list(path).edge_weight.dtype == torch.float32
    # weighted=False ignores the third column; weighted=True demands it.
    assert read_edge_list(path, weighted=False).edge_weight is None
    plain = write(tmp_path, "p.edg", "1 2\n2 3\n")
    with pytest.raises(ValueError, match=r"p\.edg', line 1: expected 'u v w' \(weighted=True\)"):
        read_edge_list(plain, weighted=True)


def test_empty_file(tmp_path):
    path = write(tmp_path, "e.edg", "# nothing\n\n")
    graph = read_edge_list(path)
    assert graph.edge_index.shape == (2, 0) and graph.num_nodes == 0
    assert graph.edge_weight is None
    assert read_edge_list(path, num_nodes=3).num_nodes == 3


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("1 2\n# c\n3 4 5\n", {}, r"line 3 has 3 columns but line 1 has 2"),
        ("1 2\n2 x\n", {}, r"line 2: 'x' is not a number"),
        ("1 2 3 4\n", {}, r"line 1: expected 'u v' or 'u v w', got 4 columns"),
        ("1 2\n2 3.5\n", {}, r"line 2 \('2 3\.5'\): node id must be an integer, got 3\.5"),
        ("1 2\n\n2 3\n3 9\n", {"num_nodes": 3}, r"line 4 .*node id 9 is out of range"),
        ("1 2\n0 1\n", {}, r"line 2 .*node id 0 is below 1 \(1-based ids"),
        ("1 2 1\n2 3 -1\n", {}, r"line 2 .*edge weights must be finite and >= 0, got -1\.0"),
        ("1 2 1\n2 3 nan\n", {}, r"line 2 .*edge weights must be finite"),
        ("1 2 1\n2 3 1\n2 1 2\n", {}, r"\(1, 2\) is given twice .* 1\.0 \(line 1\) and 2\.0 "),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, kwargs, message):
    path = write(tmp_path, "bad.edg", text)
    with pytest.raises(ValueError, match=r"bad\.edg.*" + message):
        read_edge_list(path, **kwargs)


def test_edge_list_bad_arguments(tmp_path):
    path = write(tmp_path, "g.edg", "1 2\n")
    with pytest.raises(FileNotFoundError, match=r"edge list file not found: .*absent\.edg"):
        read_edge_list(str(tmp_path / "absent.edg"))
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        read_edge_list(path, dtype=torch.int64)
    with pytest.raises(ValueError, match="num_nodes must be >= 0"):
        read_edge_list(path, num_nodes=-1)
    with pytest.raises(TypeError, match="weighted must be a bool or None"):
        read_edge_list(path, weighted="yes")
    with pytest.raises(TypeError, match="path must be a str"):
        read_edge_list(3)


def test_multilabel_tsv(tmp_path):
    # Labels 3, 5, 7 (not contiguous) become columns 0, 1, 2; node 2 has none; a duplicate.
    path = write(tmp_path, "l.tsv", "1\t7\n1\t3\n3\t5\n4\t7\n1\t3\n")
    labels, label_ids = read_multilabel_tsv(path, 5)
    assert label_ids == [3, 5, 7]
    assert labels.dtype == torch.bool and labels.shape == (5, 3)
    expected = [[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert labels.int().tolist() == expected
    zero = read_multilabel_tsv(path, 5, one_based=False)
    assert zero.labels[4, 2] and not zero.labels[0].any()
    with pytest.raises(ValueError, match=r"l\.tsv', line 4 .*node id 4 is out of range"):
        read_multilabel_tsv(path, 3)
    bad = write(tmp_path, "b.tsv", "1\t2\n2\t2.5\n")
    with pytest.raises(ValueError, match=r"b\.tsv', line 2 .*the label must be an integer"):
        read_multilabel_tsv(bad, 3)
    three = write(tmp_path, "t.tsv", "1\t2\t3\n")
    with pytest.raises(ValueError, match=r"line 1: expected 'node<TAB>label', got 3 columns"):
        read_multilabel_tsv(three, 3)
    with pytest.raises(TypeError, match="num_nodes must be an int"):
        read_multilabel_tsv(path, None)


def write_graph(tmp_path, name, edges, labels):
    write(tmp_path, f"{name}.edg", edges)
    write(tmp_path, f"{name}.labels.tsv", labels)
    return str(tmp_path)


def test_load_renumbers_ids_that_appear(tmp_path):
    # Ids 1, 2, 5, 6 appear (3 and 4 do not, like PPI's 38 unused ids); 6 only has a label.
    root = write_graph(tmp_path, "PPI", "1\t2\n2\t5\n5\t5\n", "1\t10\n5\t20\n6\t10\n")
    graph = load_node2vec_graph("PPI", root)
    assert isinstance(graph, Node2VecGraph) and graph.name == "PPI"
    assert graph.num_nodes == 4 and graph.node_ids.tolist() == [1, 2, 5, 6]
    assert pairs(graph.edge_index) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 2)]
    assert graph.edge_weight is None
    assert graph.labels.int().tolist() == [[1, 0], [0, 0], [0, 1], [1, 0]]


def test_load_weighted(tmp_path):
    root = write_graph(tmp_path, "Wikipedia", "1\t2\t0.5\n2\t1\t0.5\n", "2\t1\n")
    graph = load_node2vec_graph("Wikipedia", root)
    assert graph.edge_weight.tolist() == [0.5, 0.5] and graph.edge_index.shape == (2, 2)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"name must be one of \['BlogCatalog', 'PPI'"):
        load_node2vec_graph("Cora", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="node2vec data folder not found"):
        load_node2vec_graph("PPI", str(tmp_path / "absent"))
    write(tmp_path, "PPI.edg", "1\t2\n")
    with pytest.raises(FileNotFoundError, match=r"PPI\.labels\.tsv'; expected the labels"):
        load_node2vec_graph("PPI", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"BlogCatalog\.edg'; expected the edge list"):
        load_node2vec_graph("BlogCatalog", str(tmp_path))


@has_real
@pytest.mark.parametrize(
    "name, directed_edges, loops, weighted",
    [
        ("BlogCatalog", 667_966, 0, False),
        ("PPI", 76_546, 864, False),
        ("Wikipedia", 184_812, 222, True),
    ],
)
def test_real_counts(name, directed_edges, loops, weighted):
    start = time.perf_counter()
    graph = load_node2vec_graph(name, REAL)
    elapsed = time.perf_counter() - start
    num_nodes, num_classes = NODE2VEC_GRAPHS[name]
    assert (graph.num_nodes, graph.labels.shape[1]) == (num_nodes, num_classes)
    assert {"BlogCatalog": 10_312, "PPI": 3_852, "Wikipedia": 4_777}[name] == num_nodes
    assert {"BlogCatalog": 38, "PPI": 50, "Wikipedia": 21}[name] == num_classes
    assert graph.labels.shape == (num_nodes, num_classes)
    assert graph.edge_index.shape == (2, directed_edges)
    assert int((graph.edge_index[0] == graph.edge_index[1]).sum()) == loops
    assert (graph.edge_weight is not None) == weighted
    # Undirected: the reverse of every edge is there.
    ei = graph.edge_index.numpy()
    keys = np.sort(ei[0] * num_nodes + ei[1])
    assert np.array_equal(keys, np.sort(ei[1] * num_nodes + ei[0]))
    # Every class has members, every node lies in an edge or has a label.
    assert bool(graph.labels.any(0).all())
    in_edge = torch.zeros(num_nodes, dtype=torch.bool)
    in_edge[graph.edge_index[0]] = True
    assert bool((in_edge | graph.labels.any(1)).all())
    # Generous bound against a quadratic parser (it takes about 0.1 s here).
    assert elapsed < 5.0
