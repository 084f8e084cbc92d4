import pytest
import torch

from geolayers.hyperbolic import PoincareEmbedding, fit_hierarchy
from geolayers.metrics.reconstruction import reconstruction
from tests.ops.test_poincare_embedding import requires_kernel, small_tree


def test_embedding_module_shapes_and_manifolds():
    geoopt = pytest.importorskip("geoopt")
    emb = PoincareEmbedding(7, 3, generator=torch.Generator().manual_seed(0))
    assert isinstance(emb.weight, geoopt.ManifoldParameter)
    assert emb.weight.shape == (7, 3) and emb.weight.dtype == torch.float64
    assert emb.weight.abs().max() <= 1e-3
    assert emb(torch.tensor([[0, 1], [2, 3]])).shape == (2, 2, 3)
    lor = PoincareEmbedding(7, 3, manifold="lorentz", dtype=torch.float32)
    assert lor.weight.shape == (7, 4)
    assert torch.allclose(
        -(lor.weight[:, 0] ** 2) + (lor.weight[:, 1:] ** 2).sum(1), -torch.ones(7), atol=1e-5
    )
    assert lor.poincare().shape == (7, 3) and "lorentz" in repr(lor)
    d = lor.distance(torch.tensor([0]), torch.tensor([1]))
    assert d.shape == (1,) and bool(d >= 0)


@requires_kernel
def test_fit_learns_the_tree_and_resume_equals_an_uninterrupted_run(tmp_path):
    edges = small_tree()
    kwargs = dict(
        dim=3, negatives=10, epochs=100, lr=1.0, burn_in=5, threads=1, seed=3, progress=False
    )
    full = fit_hierarchy(edges, 40, **kwargs)
    scores = reconstruction(full.model.poincare(), edges, progress=False)
    assert scores.map > 0.9, scores
    assert full.history[-1]["loss"] < 0.5 * full.history[0]["loss"]
    assert (full.model.weight.detach().norm(dim=1) < 1).all()
    # Stop after 25 epochs (checkpoint every 5), then resume to 100.
    ckpt = tmp_path / "ckpt.pt"
    part = fit_hierarchy(edges, 40, **{**kwargs, "epochs": 25}, checkpoint=ckpt, checkpoint_every=5)
    assert len(part.history) == 25
    resumed = fit_hierarchy(edges, 40, **kwargs, checkpoint=ckpt, resume=True)
    assert len(resumed.history) == 100
    assert torch.equal(resumed.model.weight.detach(), full.model.weight.detach())


def test_negatives_avoid_the_anchors_partners_only_as_the_reference_code():
    from geolayers.hyperbolic.embedding import hierarchy_pairs

    # Closure of 0 <- 1 <- 2 (pairs are (descendant, ancestor)) plus a leaf 3 under 0.
    edges = torch.tensor([[1, 0], [2, 1], [2, 0], [3, 0]])
    data = hierarchy_pairs(edges, None, symmetric=False, dampening=1.0)
    avoid = {u: data.adj_idx[data.adj_ptr[u] : data.adj_ptr[u + 1]].tolist() for u in range(4)}
    # Node 1 avoids its ancestor 0 only: its descendant 2 may be its negative.
    assert avoid == {0: [], 1: [0], 2: [0, 1], 3: [0]}
    both = hierarchy_pairs(edges, None, symmetric=True, dampening=1.0)
    assert both.adj_idx[both.adj_ptr[1] : both.adj_ptr[2]].tolist() == [0, 2]
    # Burn-in weights: 1 + times a node is the partner (ancestor) of a pair.
    weights = torch.diff(data.burn_cdf, prepend=torch.zeros(1))
    assert weights.tolist() == [4.0, 2.0, 1.0, 1.0]


@requires_kernel
def test_fused_and_reference_backends_train_alike():
    edges = small_tree()
    kwargs = dict(
        dim=2, negatives=5, epochs=3, lr=0.5, burn_in=1, threads=1, seed=0, progress=False
    )
    a = fit_hierarchy(edges, 40, **kwargs)
    b = fit_hierarchy(edges, 40, backend="reference", **kwargs)
    torch.testing.assert_close(a.model.weight.detach(), b.model.weight.detach(), rtol=0, atol=1e-10)


@requires_kernel
def test_lorentz_training_and_callback():
    edges = small_tree()
    calls = []

    def callback(model, epoch):
        calls.append(epoch)
        return {"map": reconstruction(model.poincare(), edges, progress=False).map}

    fit = fit_hierarchy(
        edges,
        40,
        dim=2,
        manifold="lorentz",
        negatives=5,
        epochs=4,
        burn_in=1,
        lr=0.5,
        callback=callback,
        eval_every=2,
        progress=False,
    )
    assert calls == [1, 3] and "map" in fit.history[1] and "map" not in fit.history[0]
    assert torch.isfinite(fit.model.weight).all()


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((torch.tensor([[1.0, 0.0]]),), {}, TypeError, "edges must be an int64 tensor"),
        ((torch.tensor([[1, 0, 2]]),), {}, ValueError, r"edges must have shape \(E, 2\)"),
        ((torch.tensor([[1, 0]]), 1), {}, ValueError, "num_nodes is 1"),
        ((torch.tensor([[1, 0]]),), {"backend": "gpu"}, ValueError, "backend must be"),
        ((torch.tensor([[1, 0]]),), {"burn_in": 500}, ValueError, "burn_in must lie"),
        ((torch.tensor([[1, 0]]),), {"manifold": "klein"}, ValueError, "manifold must be one"),
        ((torch.tensor([[1, 0]]),), {"negatives": 0}, ValueError, "negatives"),
    ],
)
def test_fit_bad_input_messages(args, kwargs, error, message):
    options = {"progress": False, "epochs": 2, "burn_in": 1, **kwargs}
    with pytest.raises(error, match=message):
        fit_hierarchy(*args, **options)
