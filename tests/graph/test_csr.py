import pytest
import torch

from geolayers.graph import CSRGraph, random_walks


def test_from_edge_index_sorts_merges_and_symmetrises():
    ei = torch.tensor([[2, 0, 0, 2], [0, 2, 1, 0]])
    w = torch.tensor([1.0, 5.0, 2.0, 3.0])
    g = CSRGraph.from_edge_index(ei, 4, w)
    assert g.rowptr.tolist() == [0, 2, 2, 3, 3]
    assert g.col.tolist() == [1, 2, 0]
    assert g.weight.tolist() == [2.0, 5.0, 4.0]  # the two 2 -> 0 edges merged
    u = CSRGraph.from_edge_index(ei, 4, w, undirected=True)
    # 0 -> 1 gains its reverse; 0 <-> 2 was given both ways and keeps each direction's weight.
    assert u.edge_index().tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
    assert u.weight.tolist() == [2.0, 5.0, 2.0, 4.0]
    assert u.degree().tolist() == [2, 1, 1, 0]
    assert u.num_edges == 4


def test_from_edge_index_errors():
    with pytest.raises(TypeError, match="edge_index must be an int64"):
        CSRGraph.from_edge_index(torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match=r"shape \(2, E\)"):
        CSRGraph.from_edge_index(torch.tensor([0, 1]))
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        CSRGraph.from_edge_index(torch.tensor([[0], [2]]), 2)
    with pytest.raises(ValueError, match="edge_weight must be finite and non-negative"):
        CSRGraph.from_edge_index(torch.tensor([[0], [1]]), 2, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(E,\)"):
        CSRGraph.from_edge_index(torch.tensor([[0], [1]]), 2, torch.tensor([1.0, 2.0]))


def test_random_walks_layout_and_chunking():
    gen = torch.Generator().manual_seed(0)
    g = CSRGraph.from_edge_index(torch.randint(0, 50, (2, 300), generator=gen), 50, undirected=True)
    walks = random_walks(g, 10, 3, p=0.5, q=2.0, seed=4, progress=False)
    assert walks.shape == (150, 11)
    assert torch.equal(walks[:, 0], torch.arange(50).repeat(3))
    chunked = random_walks(g, 10, 3, p=0.5, q=2.0, seed=4, chunk_size=7, progress=False)
    assert torch.equal(walks, chunked)
    with pytest.raises(ValueError, match="walks_per_node must be >= 1"):
        random_walks(g, 10, 0)
