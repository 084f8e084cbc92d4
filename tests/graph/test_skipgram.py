import pytest
import torch

from geolayers.graph import Node2Vec, train_skipgram
from geolayers.graph.musae import MUSAE, features_to_csr


def two_communities(n=20, seed=0):
    """Two dense random communities of n nodes joined by one edge, as an undirected edge_index."""
    g = torch.Generator().manual_seed(seed)
    edges = []
    for base in (0, n):
        src = torch.randint(0, n, (6 * n,), generator=g) + base
        dst = torch.randint(0, n, (6 * n,), generator=g) + base
        edges.append(torch.stack([src, dst]))
    edges.append(torch.tensor([[0], [n]]))
    ei = torch.cat(edges, 1)
    ei = ei[:, ei[0] != ei[1]]
    return torch.cat([ei, ei.flip(0)], 1)


def separation(z: torch.Tensor, n: int) -> float:
    z = torch.nn.functional.normalize(z.double(), dim=1)
    sim = z @ z.T
    within = (sim[:n, :n].sum() + sim[n:, n:].sum() - 2 * n) / (2 * n * (n - 1))
    across = sim[:n, n:].mean()
    return float(within - across)


def test_node2vec_fit_separates_communities():
    ei = two_communities()
    model = Node2Vec(ei, 16, 20, 6, walks_per_node=10, p=0.5, q=2.0, seed=0)
    before = model.embedding.weight.detach().clone()
    # Tiny corpus: subsampling at 1e-3 would drop most tokens, so it is off.
    result = model.fit(epochs=3, threads=1, sample=0.0, compute_loss=True, progress=False)
    assert result.pairs > 0 and len(result.losses) == 3
    assert result.losses[-1] < result.losses[0]
    assert not torch.equal(before, model.embedding.weight)
    assert separation(model.embedding.weight.detach(), 20) > 0.5


def test_train_skipgram_is_deterministic_on_one_thread_and_takes_float64():
    g = torch.Generator().manual_seed(1)
    walks = torch.randint(0, 30, (40, 12), generator=g)
    a = train_skipgram(walks, 30, 8, window=3, threads=1, seed=4, progress=False)
    b = train_skipgram(walks, 30, 8, window=3, threads=1, seed=4, progress=False)
    assert torch.equal(a.input, b.input) and torch.equal(a.output, b.output)
    c = train_skipgram(walks, 30, 8, window=3, seed=4, dtype=torch.float64, progress=False)
    assert c.input.dtype == torch.float64
    torch.testing.assert_close(c.input.float(), a.input, rtol=1e-4, atol=1e-5)


def test_train_skipgram_errors():
    walks = torch.tensor([[0, 1, 2]])
    with pytest.raises(IndexError, match=r"\[-1, 2\)"):
        train_skipgram(walks, 2, 4, progress=False)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        train_skipgram(walks, 3, 0, progress=False)
    with pytest.raises(ValueError, match="dtype must be"):
        train_skipgram(walks, 3, 4, dtype=torch.float16, progress=False)
    with pytest.raises(ValueError, match="no token"):
        train_skipgram(torch.full((2, 3), -1), 3, 4, progress=False)


def test_features_to_csr_dense_and_sparse_agree():
    x = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    dense = features_to_csr(x, 3)
    sparse = features_to_csr(x.to_sparse(), 3)
    assert dense[0].tolist() == [0, 2, 2, 4] and dense[1].tolist() == [1, 2, 0, 2]
    assert all(torch.equal(a, b) for a, b in zip(dense[:2], sparse[:2], strict=True))
    with pytest.raises(ValueError, match="num_nodes = 4 rows"):
        features_to_csr(x, 4)


@pytest.mark.parametrize("pooled", [False, True])
def test_musae_and_ae_learn_from_features(pooled):
    # Features are shared within a community: the embeddings must separate the communities
    # better than at initialisation.
    n = 20
    ei = two_communities(n, seed=2)
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(2 * n, 10)
    x[:n, :5] = (torch.rand(n, 5, generator=g) < 0.6).float()
    x[n:, 5:] = (torch.rand(n, 5, generator=g) < 0.6).float()
    model = MUSAE(ei, x, dim=8, order=2, walks_per_node=5, walk_length=20, pooled=pooled)
    z = model.fit(epochs=3, threads=1, progress=False).embedding
    assert z.shape == (2 * n, 8 if pooled else 16)
    assert separation(z, n) > 0.5
    with pytest.raises(ValueError, match="walk_length must exceed order"):
        MUSAE(ei, x, order=5, walk_length=5)
