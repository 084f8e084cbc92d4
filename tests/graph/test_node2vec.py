import inspect

import pytest
import torch
from torch_geometric.nn import Node2Vec as PyGNode2Vec

from geolayers.graph.csr import CSRGraph
from geolayers.graph.node2vec import Node2Vec

K = 6  # nodes per clique


def two_cliques() -> torch.Tensor:
    """Two directed-both-ways K-cliques, 0..K-1 and K..2K-1, joined by the edge 0 <-> K."""
    a = [(i, j) for i in range(K) for j in range(K) if i != j]
    edges = a + [(i + K, j + K) for i, j in a] + [(0, K), (K, 0)]
    return torch.tensor(edges).t()


def random_graph(n: int = 30, e: int = 120) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, n, (2, e), generator=gen)


def test_constructor_signature_matches_pyg():
    ours = list(inspect.signature(Node2Vec.__init__).parameters.values())
    theirs = list(inspect.signature(PyGNode2Vec.__init__).parameters.values())
    assert [(p.name, p.default, p.kind) for p in ours[: len(theirs)]] == [
        (p.name, p.default, p.kind) for p in theirs
    ]
    extras = {p.name: (p.default, p.kind) for p in ours[len(theirs) :]}
    kw = inspect.Parameter.KEYWORD_ONLY
    assert extras == {"edge_weight": (None, kw), "undirected": (False, kw), "seed": (None, kw)}
    for name in ("forward", "loader", "sample", "pos_sample", "neg_sample", "loss", "test"):
        ours = inspect.signature(getattr(Node2Vec, name)).parameters
        theirs = inspect.signature(getattr(PyGNode2Vec, name)).parameters
        assert [(p.name, p.default) for p in ours.values()] == [
            (p.name, p.default) for p in theirs.values()
        ], name


@pytest.mark.parametrize(
    ("walk_length", "context_size", "walks_per_node", "num_negative_samples"),
    [(5, 2, 1, 1), (8, 3, 2, 3), (4, 4, 3, 1)],
)
def test_shapes_follow_pyg_formulas(
    walk_length, context_size, walks_per_node, num_negative_samples
):
    m = Node2Vec(
        random_graph(),
        7,
        walk_length,
        context_size,
        walks_per_node,
        p=0.5,
        q=2.0,
        num_negative_samples=num_negative_samples,
        num_nodes=32,
        seed=1,
    )
    batch = torch.tensor([0, 3, 5, 31, 9])
    # PyG: num_walks_per_rw = 1 + (walk_length - 1) + 1 - context_size windows per walk.
    windows = 1 + (walk_length - 1) + 1 - context_size
    pos, neg = m.sample(batch)
    assert pos.shape == (batch.numel() * walks_per_node * windows, context_size)
    assert neg.shape == (
        batch.numel() * walks_per_node * num_negative_samples * windows,
        context_size,
    )
    assert pos.dtype == neg.dtype == torch.long
    assert m().shape == (32, 7)
    assert m(batch).shape == (5, 7)
    assert torch.equal(m(batch), m.embedding.weight[batch])
    assert repr(m) == "Node2Vec(32, 7)"
    # Window 0 of every walk starts at its start node; the walks tile the batch (PyG's repeat).
    s = batch.numel() * walks_per_node
    assert torch.equal(pos[:s, 0], batch.repeat(walks_per_node))
    assert torch.equal(neg[:s, 0], batch.repeat(walks_per_node)[:s])
    # Window j + 1 of a walk is window j shifted by one (row j * S + s, as PyG's cat).
    nneg = s * num_negative_samples
    for w, rows in ((pos, s), (neg, nneg)):
        w = w.view(windows, rows, context_size)
        assert torch.equal(w[1:, :, :-1], w[:-1, :, 1:])
    assert bool((neg >= 0).all()) and bool((neg < 32).all())
    # A list batch, as the DataLoader's collate gives, works too.
    assert m.sample(batch.tolist())[0].shape == pos.shape


@pytest.mark.parametrize(("p", "q"), [(1.0, 1.0), (0.25, 4.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_windows_follow_real_edges(p, q, weighted):
    ei = random_graph()
    w = torch.rand(ei.shape[1], generator=torch.Generator().manual_seed(1)) if weighted else None
    m = Node2Vec(ei, 4, 10, 4, 3, p, q, edge_weight=w, undirected=True, seed=2)
    pos = m.pos_sample(torch.arange(m.num_nodes))
    g = m.graph
    edges = set((g.row() * m.num_nodes + g.col).tolist())
    a, b = pos[:, :-1].reshape(-1), pos[:, 1:].reshape(-1)
    is_edge = torch.tensor([k in edges for k in (a * m.num_nodes + b).tolist()])
    # A walk only stays put at a node without out-edges (or along a self-loop, an edge).
    stuck = (a == b) & (g.degree()[a] == 0)
    assert bool((is_edge | stuck).all())
    assert bool(is_edge.any())


def test_undirected_and_directed_graphs():
    ei = torch.tensor([[0, 1], [1, 2]])
    directed = Node2Vec(ei, 4, 3, 2)
    undirected = Node2Vec(ei, 4, 3, 2, undirected=True)
    assert directed.col.tolist() == [1, 2] and directed.rowptr.tolist() == [0, 1, 2, 2]
    expected = CSRGraph.from_edge_index(ei, undirected=True)
    assert torch.equal(undirected.rowptr, expected.rowptr)
    assert torch.equal(undirected.col, expected.col)
    assert undirected.graph.weight is None
    assert directed.num_nodes == 3 and Node2Vec(ei, 4, 3, 2, num_nodes=5).num_nodes == 5


def test_dead_ends_and_isolated_nodes_repeat_the_last_node():
    # 0 -> 1 -> 2 directed; 2 is a sink; 3 is isolated.
    m = Node2Vec(torch.tensor([[0, 1], [1, 2]]), 4, 5, 2, num_nodes=4, seed=0)
    walks = m.walks(torch.tensor([0, 2, 3]))
    assert walks.tolist() == [[0, 1, 2, 2, 2], [2, 2, 2, 2, 2], [3, 3, 3, 3, 3]]
    pos = m.pos_sample(torch.tensor([3]))
    assert pos.shape == (4, 2) and bool((pos == 3).all())  # every window kept: PyG's shape
    loss = m.loss(*m.sample(torch.tensor([3])))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(m.embedding.weight.grad).all()
    # A node whose only out-edge weighs 0 is a dead end too.
    w = Node2Vec(torch.tensor([[0], [1]]), 4, 3, 2, edge_weight=torch.tensor([0.0]), seed=0)
    assert w.walks(torch.tensor([0])).tolist() == [[0, 0, 0]]


def test_seeded_sampling_is_deterministic():
    ei = random_graph()

    def draws(seed):
        m = Node2Vec(ei, 4, 6, 3, 2, 0.5, 2.0, 2, seed=seed)
        return [m.sample(torch.arange(10)) for _ in range(3)]

    a, b = draws(7), draws(7)
    for (pa, na), (pb, nb) in zip(a, b, strict=True):
        assert torch.equal(pa, pb) and torch.equal(na, nb)
    assert not torch.equal(a[0][0], a[1][0])  # the counter moves on between calls
    assert not torch.equal(a[0][1], a[1][1])
    assert not torch.equal(a[0][0], draws(8)[0][0])
    # The seeded sequence ignores the global generator.
    torch.manual_seed(123)
    c = draws(7)
    assert torch.equal(c[2][0], a[2][0])


def test_unseeded_sampling_uses_the_global_generator():
    m = Node2Vec(random_graph(), 4, 6, 3, 2, 0.5, 2.0)
    start = torch.arange(10)
    first, second = m.sample(start), m.sample(start)
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])
    torch.manual_seed(5)
    x = m.sample(start)
    torch.manual_seed(5)
    y = m.sample(start)
    assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


def test_loss_matches_pyg_formula():
    m = Node2Vec(random_graph(), 5, 6, 3, seed=0)
    pos, neg = m.sample(torch.arange(8))
    z = m.embedding.weight

    def dots(rw):
        return (z[rw[:, :1]] * z[rw[:, 1:]]).sum(-1).reshape(-1)

    expected = (
        -torch.log(torch.sigmoid(dots(pos)) + 1e-15).mean()
        - torch.log(1 - torch.sigmoid(dots(neg)) + 1e-15).mean()
    )
    torch.testing.assert_close(m.loss(pos, neg), expected)


@pytest.mark.parametrize("sparse", [False, True])
def test_training_separates_two_cliques(sparse):
    torch.manual_seed(0)
    m = Node2Vec(two_cliques(), 16, 10, 4, 4, 0.5, 2.0, 2, sparse=sparse, seed=0)
    opt_cls = torch.optim.SparseAdam if sparse else torch.optim.Adam
    opt = opt_cls(list(m.parameters()), lr=0.05)
    losses = []
    for _ in range(30):
        for pos, neg in m.loader(batch_size=2 * K, shuffle=True):
            opt.zero_grad()
            loss = m.loss(pos, neg)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    z = torch.nn.functional.normalize(m().detach(), dim=1)
    sim = z @ z.t()
    y = torch.arange(2 * K) // K
    same = (y[:, None] == y[None]) & ~torch.eye(2 * K, dtype=torch.bool)
    assert sim[same].mean() > sim[y[:, None] != y[None]].mean() + 0.2
    train = torch.tensor([0, 1, 2, K, K + 1, K + 2])
    test = torch.tensor([3, 4, 5, K + 3, K + 4, K + 5])
    acc = m.test(m(train), y[train], m(test), y[test], max_iter=200)
    assert isinstance(acc, float) and acc >= 5 / 6


def test_test_accuracy_is_a_fraction():
    gen = torch.Generator().manual_seed(0)
    m = Node2Vec(random_graph(), 4, 3, 2)
    z, y = torch.randn(40, 4, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    acc = m.test(z[:30], y[:30], z[30:], y[30:], "newton-cg", max_iter=50)
    assert 0.0 <= acc <= 1.0


def test_loader_covers_every_node():
    m = Node2Vec(two_cliques(), 4, 5, 3, walks_per_node=2, seed=0)
    starts = []
    for pos, neg in m.loader(batch_size=5, shuffle=True):
        rows = pos.shape[0] // m.num_windows  # walks in this batch: 2 per node
        assert neg.shape == pos.shape
        starts += pos[: rows // 2, 0].tolist()  # window 0 of the first walk of each node
    assert sorted(starts) == list(range(2 * K))


def test_bad_arguments():
    ei = two_cliques()
    with pytest.raises(TypeError, match="edge_index must be an int64"):
        Node2Vec(ei.float(), 4, 5, 2)
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, E\)"):
        Node2Vec(ei[0], 4, 5, 2)
    with pytest.raises(IndexError, match="edge_index values"):
        Node2Vec(ei, 4, 5, 2, num_nodes=5)
    with pytest.raises(ValueError, match="embedding_dim must be >= 1, got 0"):
        Node2Vec(ei, 0, 5, 2)
    with pytest.raises(TypeError, match="embedding_dim must be an int"):
        Node2Vec(ei, 4.0, 5, 2)
    with pytest.raises(ValueError, match="walk_length must be >= context_size = 4, got 3"):
        Node2Vec(ei, 4, 3, 4)
    with pytest.raises(ValueError, match="context_size must be >= 2, got 1"):
        Node2Vec(ei, 4, 3, 1)
    with pytest.raises(ValueError, match="walks_per_node must be >= 1"):
        Node2Vec(ei, 4, 5, 2, walks_per_node=0)
    with pytest.raises(ValueError, match="num_negative_samples must be >= 1"):
        Node2Vec(ei, 4, 5, 2, num_negative_samples=0)
    with pytest.raises(ValueError, match="p must be positive and finite, got 0"):
        Node2Vec(ei, 4, 5, 2, p=0.0)
    with pytest.raises(ValueError, match="q must be positive and finite, got -1"):
        Node2Vec(ei, 4, 5, 2, q=-1.0)
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(E,\)"):
        Node2Vec(ei, 4, 5, 2, edge_weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*63\)"):
        Node2Vec(ei, 4, 5, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be None or an int"):
        Node2Vec(ei, 4, 5, 2, seed=1.5)
