import functools
import math
import os
import warnings

import numpy as np
import pytest
import torch

from geolayers.metrics import node_embedding
from geolayers.metrics.node_embedding import (
    EDGE_OPERATORS,
    ClassAUROC,
    EdgeSplit,
    MultilabelF1,
    class_auroc,
    link_prediction_auc,
    multilabel_f1,
    split_edges_connected,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
REAL = os.path.join(REPO_ROOT, "..", "shared", "data", "node2vec")
has_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "BlogCatalog.edg")),
    reason="node2vec data not found at ../shared/data/node2vec",
)


def multilabel_data(n=300, num_classes=5, seed=0):
    """Labels with 1 to 3 classes per node (a few nodes without any)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.rand(n, num_classes, generator=g) < 0.3
    labels[torch.arange(n), torch.randint(num_classes, (n,), generator=g)] = True
    labels[:10] = False
    return labels


def encoding(labels, noise=0.1, seed=0):
    """An embedding that encodes the labels: column c is +2 for members of class c."""
    g = torch.Generator().manual_seed(seed)
    x = labels.double() * 4 - 2
    return x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------- multilabel_f1


def test_f1_perfect_and_random():
    labels = multilabel_data()
    good = multilabel_f1(encoding(labels), labels, repeats=3, progress=False)
    assert isinstance(good, MultilabelF1)
    assert good.macro_f1 > 0.99 and good.micro_f1 > 0.99 and good.micro_std < 0.01
    noise = torch.randn(labels.shape[0], 8, generator=torch.Generator().manual_seed(1))
    bad = multilabel_f1(noise, labels, repeats=3, progress=False)
    assert bad.micro_f1 < 0.6 and bad.macro_f1 < 0.6
    assert bad.micro_std > 0


def test_f1_matches_sklearn_reference():
    """One repeat against scikit-learn's own classifiers and f1_score on the same split."""
    labels = multilabel_data(n=200, seed=3)
    emb = torch.randn(200, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    emb[:, :5] += labels.double()  # informative but imperfect
    got = multilabel_f1(emb, labels, repeats=1, seed=7, train_fraction=0.6, progress=False)

    keep = labels.any(1).numpy()
    x, y = emb.numpy()[keep], labels.numpy()[keep]
    perm = np.random.default_rng(7).permutation(len(y))
    n_train = round(0.6 * len(y))
    train, test = perm[:n_train], perm[n_train:]
    scores = np.stack(
        [
            LogisticRegression(max_iter=1000)
            .fit(x[train], y[train, c])
            .predict_proba(x[test])[:, 1]
            for c in range(y.shape[1])
        ],
        axis=1,
    )
    pred = np.zeros_like(y[test])
    for i, k in enumerate(y[test].sum(1)):
        pred[i, np.argsort(-scores[i])[:k]] = True
    assert got.micro_f1 == pytest.approx(f1_score(y[test], pred, average="micro"), abs=1e-12)
    assert got.macro_f1 == pytest.approx(f1_score(y[test], pred, average="macro"), abs=1e-12)
    assert got.macro_std == 0.0


def test_f1_dtypes_and_unlabelled_nodes():
    labels = multilabel_data(n=150)
    emb = encoding(labels, noise=1.5)
    a = multilabel_f1(emb, labels, repeats=2, progress=False)
    b = multilabel_f1(emb.float(), labels, repeats=2, progress=False)
    assert a.macro_f1 == pytest.approx(b.macro_f1, abs=1e-3)
    assert a.micro_f1 == pytest.approx(b.micro_f1, abs=1e-3)
    # Unlabelled nodes are left out: appending some (with any embedding) changes nothing.
    more = multilabel_f1(
        torch.cat([emb, 50 * torch.randn(20, 5, dtype=torch.float64)]),
        torch.cat([labels, torch.zeros(20, 5, dtype=torch.bool)]),
        repeats=2,
        progress=False,
    )
    assert more == a
    # 0/1 integers work as labels.
    assert multilabel_f1(emb, labels.long(), repeats=2, progress=False) == a


def test_f1_class_missing_from_training():
    # Class 3 has a single node and class 4 every node: many splits train without a
    # positive (or a negative) of them; nothing may crash.
    labels = multilabel_data(n=60, num_classes=5)
    labels[:, 3] = False
    labels[20, 3] = True
    labels[:, 4] = True
    emb = encoding(labels)
    for seed in range(4):
        score = multilabel_f1(emb, labels, repeats=3, seed=seed, progress=False)
        assert 0 < score.macro_f1 <= 1 and 0 < score.micro_f1 <= 1


def test_f1_bad_inputs():
    labels = multilabel_data(n=40)
    emb = encoding(labels)
    with pytest.raises(TypeError, match="embedding must be a float32 or float64 tensor"):
        multilabel_f1(emb.long(), labels)
    with pytest.raises(TypeError, match="embedding must be"):
        multilabel_f1(emb.numpy(), labels)
    with pytest.raises(ValueError, match="embedding must have shape"):
        multilabel_f1(emb[0], labels)
    with pytest.raises(ValueError, match="embedding must be finite"):
        multilabel_f1(emb * math.inf, labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(N, C\) = \(40, C >= 1\)"):
        multilabel_f1(emb, labels[:30])
    with pytest.raises(ValueError, match="labels must be bool or hold only 0 and 1"):
        multilabel_f1(emb, labels.long() * 2)
    with pytest.raises(ValueError, match=r"train_fraction must be a float in \(0, 1\)"):
        multilabel_f1(emb, labels, train_fraction=1.0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        multilabel_f1(emb, labels, repeats=0)
    with pytest.raises(ValueError, match="C must be a positive finite float"):
        multilabel_f1(emb, labels, C=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        multilabel_f1(emb, labels, seed=1.5)
    with pytest.raises(ValueError, match="at least 2 nodes a label"):
        multilabel_f1(emb, torch.zeros_like(labels))


# --------------------------------------------------------------------- multilabel_f1: solver, C


def sklearn_decisions(x, y, C, x_eval):
    """Decision values of scikit-learn's lbfgs fits (one per column of y), run to a tight
    tolerance."""
    out = []
    for k in range(y.shape[1]):
        model = LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(x, y[:, k])
        out.append(model.decision_function(x_eval))
    return np.stack(out, 1)


def newton_decisions(x, y, C, x_eval, init=None):
    x1 = torch.cat([torch.from_numpy(x), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    theta, unconverged = node_embedding._newton_ovr(x1, torch.from_numpy(y), C, init)
    assert unconverged == 0
    return x_eval @ theta[:, :-1].numpy().T + theta[:, -1].numpy(), theta


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_newton_solver_matches_sklearn_random(C):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * np.array([1, 2, 0.5, 1, 3, 1])
    w = rng.normal(size=(6, 4))
    # Noisy linear labels with different base rates (intercepts far from 0).
    y = x @ w + rng.normal(size=(300, 4)) * 2 > np.array([0, 1, -1, 3])
    x_eval = rng.normal(size=(50, 6))
    got, theta = newton_decisions(x, y, C, x_eval)
    ref = sklearn_decisions(x, y, C, x_eval)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    # A warm start (any start) reaches the same minimiser.
    again, _ = newton_decisions(x, y, C, x_eval, init=theta * 3 + 1)
    np.testing.assert_allclose(again, got, rtol=0, atol=1e-9 * np.abs(ref).max())


def test_newton_solver_matches_sklearn_near_separable():
    # An embedding that encodes the labels with little noise: nearly separable classes,
    # large weights, probabilities close to 0 and 1 (where float rounding matters most).
    labels = multilabel_data(n=200, num_classes=5, seed=1)
    keep = labels.any(1)
    x = encoding(labels, noise=0.3, seed=2)[keep].numpy()
    y = labels[keep].numpy()
    for C in (1.0, 10.0):
        got, _ = newton_decisions(x, y, C, x)
        ref = sklearn_decisions(x, y, C, x)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_newton_solver_warns_when_not_converged(monkeypatch):
    monkeypatch.setattr(node_embedding, "_NEWTON_MAX_ITER", 1)
    labels = multilabel_data(n=80)
    with pytest.warns(RuntimeWarning, match="stopped at their iteration limit"):
        multilabel_f1(encoding(labels, noise=1.0), labels, repeats=1, progress=False)


def sklearn_solver(monkeypatch):
    """Make multilabel_f1 fit with scikit-learn (tight tolerance) instead of Newton."""
    tight = functools.partial(node_embedding._sklearn_ovr, tol=1e-10)
    monkeypatch.setattr(node_embedding, "_ovr_solver", tight)


def test_f1_newton_equals_sklearn_path(monkeypatch):
    labels = multilabel_data(n=150, num_classes=5, seed=5)
    labels[:, 3] = False
    labels[40:43, 3] = True  # rare: some training sets (and folds) lack it
    emb = encoding(labels, noise=1.5, seed=6)
    kwargs = dict(repeats=3, seed=2, progress=False)
    fixed = multilabel_f1(emb, labels, C=0.5, **kwargs)
    grid = multilabel_f1(emb, labels, C=(0.01, 0.1, 1.0), **kwargs)
    sklearn_solver(monkeypatch)
    fixed_ref = multilabel_f1(emb, labels, C=0.5, **kwargs)
    grid_ref = multilabel_f1(emb, labels, C=(0.01, 0.1, 1.0), **kwargs)
    for got, ref in ((fixed, fixed_ref), (grid, grid_ref)):
        np.testing.assert_allclose(got[:4], ref[:4], rtol=0, atol=1e-4)
        assert got.chosen_c == ref.chosen_c
    assert fixed.chosen_c == (0.5, 0.5, 0.5)


def test_f1_c_grid_choice():
    labels = multilabel_data(n=200, num_classes=4, seed=7)
    emb = encoding(labels, noise=1.0, seed=8)
    # A tiny C leaves only the intercepts (the frequent classes win every top-k): the grid
    # picks the larger C, and then scores exactly as that C alone.
    picked = multilabel_f1(emb, labels, C=[1.0, 1e-4], repeats=3, progress=False)
    assert picked.chosen_c == (1.0, 1.0, 1.0)
    alone = multilabel_f1(emb, labels, C=1.0, repeats=3, progress=False)
    np.testing.assert_allclose(picked[:4], alone[:4], rtol=0, atol=1e-12)
    # One candidate is no choice; duplicates and order do not matter.
    assert multilabel_f1(emb, labels, C=(1.0,), repeats=3, progress=False) == alone
    assert multilabel_f1(emb, labels, C=(1e-4, 1.0, 1.0), repeats=3, progress=False) == picked
    assert multilabel_f1(emb, labels, C=np.array([1e-4, 1.0]), repeats=3, progress=False) == (
        picked
    )
    # Separable labels: every candidate gives Macro-F1 1 in cross-validation, and the tie
    # goes to the smallest C.
    clean = encoding(labels, noise=0.05)
    tie = multilabel_f1(clean, labels, C=(0.5, 5.0, 50.0), repeats=2, progress=False)
    assert tie.chosen_c == (0.5, 0.5) and tie.macro_f1 == 1.0


def test_f1_c_choice_ignores_test_nodes():
    labels = multilabel_data(n=120, num_classes=4, seed=9)
    emb = encoding(labels, noise=1.2, seed=10)
    grid = (0.001, 0.01, 0.1, 1.0, 10.0)
    kwargs = dict(repeats=1, seed=3, train_fraction=0.5, progress=False)
    base = multilabel_f1(emb, labels, C=grid, **kwargs)
    # The split of seed 3 (the unlabelled nodes are left out first, as multilabel_f1 does).
    nodes = np.flatnonzero(labels.any(1).numpy())
    test = nodes[np.random.default_rng(3).permutation(nodes.size)[round(0.5 * nodes.size) :]]
    # Scramble the test nodes' labels (each keeps at least one): the choice stays.
    scrambled = labels.clone()
    scrambled[test] = torch.roll(labels[test], 1, dims=1)
    assert multilabel_f1(emb, scrambled, C=grid, **kwargs).chosen_c == base.chosen_c
    # But the scores change (the test nodes are scored).
    assert multilabel_f1(emb, scrambled, C=grid, **kwargs)[:2] != base[:2]


def test_f1_normalize():
    labels = multilabel_data(n=150, seed=12)
    emb = encoding(labels, noise=2.5, seed=13)
    emb[20] = 0  # a zero row stays zero
    unit = emb / emb.norm(dim=1, keepdim=True).clamp(min=1e-300)
    kwargs = dict(repeats=2, progress=False)
    a = multilabel_f1(emb, labels, normalize=True, **kwargs)
    np.testing.assert_allclose(a[:4], multilabel_f1(unit, labels, **kwargs)[:4], atol=1e-12)
    # Invariant to the scale of the rows.
    scale = torch.rand(150, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = multilabel_f1(emb * (0.1 + 10 * scale), labels, normalize=True, **kwargs)
    np.testing.assert_allclose(a[:4], b[:4], atol=1e-12)
    assert multilabel_f1(emb, labels, **kwargs)[:4] != a[:4]


def test_f1_result_fields():
    labels = multilabel_data(n=60)
    result = multilabel_f1(encoding(labels), labels, repeats=2, C=2, progress=False)
    assert result._fields == ("macro_f1", "micro_f1", "macro_std", "micro_std", "chosen_c")
    assert result.chosen_c == (2.0, 2.0) and isinstance(result.chosen_c[0], float)
    macro, micro, macro_std, micro_std, chosen = result  # unpacks as five
    # Built from the four old fields, as existing callers may.
    assert MultilabelF1(1.0, 1.0, 0.0, 0.0).chosen_c == ()


def test_f1_c_grid_bad_inputs():
    labels = multilabel_data(n=40)
    emb = encoding(labels)
    with pytest.raises(ValueError, match="C must be a positive finite float or a non-empty"):
        multilabel_f1(emb, labels, C=())
    with pytest.raises(ValueError, match=r"C must be .* got C\[1\] = -1\.0"):
        multilabel_f1(emb, labels, C=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"got C\[0\] = True"):
        multilabel_f1(emb, labels, C=[True])
    with pytest.raises(ValueError, match=r"got C\[0\] = inf"):
        multilabel_f1(emb, labels, C=[math.inf])
    with pytest.raises(ValueError, match="C must be a positive finite float"):
        multilabel_f1(emb, labels, C="1.0")
    with pytest.raises(ValueError, match="cv_folds must be >= 2"):
        multilabel_f1(emb, labels, C=(1.0, 2.0), cv_folds=1)
    with pytest.raises(TypeError, match="cv_folds must be an int"):
        multilabel_f1(emb, labels, cv_folds=3.0)
    with pytest.raises(ValueError, match="cv_folds must not exceed the 15 training nodes"):
        multilabel_f1(emb, labels, C=(1.0, 2.0), cv_folds=16)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        multilabel_f1(emb, labels, normalize=1)


# --------------------------------------------------------------------- class_auroc


def pecanpy_reference(x, y, folds, seed):
    """PecanPy's evaluate.py written out: pooled out-of-fold decision values per class."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = LogisticRegression(max_iter=1000)
    result = []
    for c in range(y.shape[1]):
        pooled = np.empty(len(y))
        for train, test in splitter.split(y[:, c], y[:, c]):
            pooled[test] = model.fit(x[train], y[train, c]).decision_function(x[test])
        result.append(roc_auc_score(y[:, c], pooled))
    return np.array(result)


def test_auroc_perfect_random_and_reference():
    labels = multilabel_data(n=400, num_classes=4)
    good = class_auroc(encoding(labels), labels, progress=False)
    assert isinstance(good, ClassAUROC)
    assert good.mean_auroc > 0.999 and good.classes.tolist() == [0, 1, 2, 3]
    noise = torch.randn(400, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bad = class_auroc(noise, labels, progress=False)
    assert abs(bad.mean_auroc - 0.5) < 0.08

    emb = noise.clone()
    emb[:, :4] += labels.double()
    got = class_auroc(emb, labels, seed=3, progress=False)
    keep = labels.any(1).numpy()
    expected = pecanpy_reference(emb.numpy()[keep], labels.numpy()[keep], 5, 3)
    assert got.per_class.dtype == torch.float64
    np.testing.assert_allclose(got.per_class.numpy(), expected, atol=1e-12)
    assert got.mean_auroc == pytest.approx(expected.mean(), abs=1e-12)
    # float32 gives the same figures up to rounding.
    assert class_auroc(emb.float(), labels, seed=3, progress=False).mean_auroc == pytest.approx(
        got.mean_auroc, abs=1e-3
    )
    # Repeats: the median per class over the fold seeds seed, seed + 1, ...
    three = class_auroc(emb, labels, seed=3, repeats=3, progress=False)
    runs = [pecanpy_reference(emb.numpy()[keep], labels.numpy()[keep], 5, s) for s in (3, 4, 5)]
    np.testing.assert_allclose(three.per_class.numpy(), np.median(runs, axis=0), atol=1e-12)


def test_auroc_class_selection():
    labels = multilabel_data(n=200, num_classes=4)
    labels[:, 1] = False
    labels[10:19, 1] = True  # 9 positives: below min_positives=10
    labels[:, 3] = False
    labels[100, 3] = True  # one positive
    emb = encoding(labels, noise=1.0)
    result = class_auroc(emb, labels, progress=False)
    assert result.classes.tolist() == [0, 2]
    assert class_auroc(emb, labels, min_positives=9, progress=False).classes.tolist() == [0, 1, 2]
    # min_positives=1 keeps class 3 although most training parts have no positive of it.
    assert class_auroc(emb, labels, min_positives=1, progress=False).classes.tolist() == [
        0,
        1,
        2,
        3,
    ]
    # The nodes are those with a kept label: a node whose only label is class 1 is left out,
    # so adding unlabelled nodes changes nothing.
    more = class_auroc(
        torch.cat([emb, torch.randn(30, 4, dtype=torch.float64)]),
        torch.cat([labels, torch.zeros(30, 4, dtype=torch.bool)]),
        progress=False,
    )
    assert torch.equal(more.per_class, result.per_class)
    # A class on every evaluated node has no negative: no auROC.
    everyone = labels.clone()
    everyone[:, 0] = True
    assert 0 not in class_auroc(emb, everyone, progress=False).classes.tolist()
    nothing = class_auroc(emb, labels, min_positives=1000, progress=False)
    assert math.isnan(nothing.mean_auroc) and nothing.classes.numel() == 0


def test_auroc_bad_inputs():
    labels = multilabel_data(n=40)
    emb = encoding(labels)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        class_auroc(emb, labels, folds=1)
    with pytest.raises(TypeError, match="folds must be an int"):
        class_auroc(emb, labels, folds=2.0)
    with pytest.raises(ValueError, match="min_positives must be >= 1"):
        class_auroc(emb, labels, min_positives=0)
    with pytest.raises(ValueError, match="folds must not exceed the 30 nodes"):
        class_auroc(emb, labels, folds=31, min_positives=1)
    with pytest.raises(TypeError, match="labels must be a bool tensor"):
        class_auroc(emb, labels.numpy())


# --------------------------------------------------------------------- split_edges_connected


def components(edge_index, num_nodes):
    """Component label of every node, by union-find."""
    parent = list(range(num_nodes))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for u, v in edge_index.t().tolist():
        parent[find(u)] = find(v)
    return [find(a) for a in range(num_nodes)]


def same_partition(a, b):
    return len(set(a)) == len(set(b)) == len(set(zip(a, b, strict=True)))


def undirected(pairs):
    pairs = torch.as_tensor(pairs).t()
    return torch.cat([pairs, pairs.flip(0)], 1)


def random_graph(seed=0):
    """Two dense random blocks, a path, isolated nodes and a self loop: 4+ components."""
    rng = np.random.default_rng(seed)
    pairs = set()
    for lo, hi, m in ((0, 40, 200), (40, 70, 90)):
        while len([p for p in pairs if lo <= p[0] < hi]) < m:
            u, v = sorted(rng.integers(lo, hi, 2).tolist())
            if u != v:
                pairs.add((u, v))
    pairs |= {(70 + i, 71 + i) for i in range(5)}  # a path: all of it is forest
    ei = undirected(sorted(pairs))
    return torch.cat([ei, torch.tensor([[3], [3]])], 1), 80, len(pairs)


def test_split_keeps_components():
    ei, n, m = random_graph()
    split = split_edges_connected(ei, n, test_fraction=0.5, seed=1)
    assert isinstance(split, EdgeSplit)
    t = split.test_pos.shape[1]
    assert t == round(0.5 * m) and split.test_neg.shape == (2, t)
    assert same_partition(components(split.train_edge_index, n), components(ei, n))
    # Train + test positives = the input; disjoint; the self loop stays in training.
    train = set(map(tuple, split.train_edge_index.t().tolist()))
    pos = set(map(tuple, split.test_pos.t().tolist()))
    original = set(map(tuple, ei.t().tolist()))
    assert (3, 3) in train
    assert all(u < v for u, v in pos) and not pos & train
    assert train | pos | {(v, u) for u, v in pos} == original
    assert all((v, u) in train for u, v in train)
    # Negatives: distinct pairs u < v that are no edge of the input.
    neg = split.test_neg.t().tolist()
    assert len(set(map(tuple, neg))) == t
    assert all(u < v and (u, v) not in original for u, v in neg)
    # Seeded.
    again = split_edges_connected(ei, n, test_fraction=0.5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(split, again, strict=True))
    other = split_edges_connected(ei, n, test_fraction=0.5, seed=2)
    assert not torch.equal(split.test_pos, other.test_pos)


def test_split_warns_when_too_few_removable():
    # A tree has no edge to spare; a cycle of 6 has one.
    tree = undirected([(0, 1), (1, 2), (1, 3), (3, 4)])
    with pytest.warns(RuntimeWarning, match=r"asks for 2 of the 4 edges, but only 0 can go"):
        split = split_edges_connected(tree, 5)
    assert split.test_pos.shape == (2, 0) and split.test_neg.shape == (2, 0)
    assert set(map(tuple, split.train_edge_index.t().tolist())) == set(
        map(tuple, tree.t().tolist())
    )
    cycle = undirected([(i, (i + 1) % 6) for i in range(6)])
    with pytest.warns(RuntimeWarning, match="only 1 can go"):
        split = split_edges_connected(cycle, 6, test_fraction=0.5)
    assert split.test_pos.shape == (2, 1)
    assert len(set(components(split.train_edge_index, 6))) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_edges_connected(cycle, 6, test_fraction=0.1)  # round(0.6) = 1 edge: no warning


def test_split_bad_inputs():
    ei, n, _ = random_graph()
    with pytest.raises(ValueError, match=r"both directions of every edge.*\(0, 5\) lacks \(5, 0\)"):
        split_edges_connected(torch.tensor([[0, 1, 0], [5, 0, 1]]), 6)
    with pytest.raises(ValueError, match=r"edge_index must hold node indices in \[0, 10\)"):
        split_edges_connected(ei, 10)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        split_edges_connected(ei.t(), n)
    with pytest.raises(TypeError, match="edge_index must be an int64 tensor"):
        split_edges_connected(ei.float(), n)
    with pytest.raises(ValueError, match=r"test_fraction must be a float in \(0, 1\)"):
        split_edges_connected(ei, n, test_fraction=0)
    # The complete graph K5 has removable edges but no non-adjacent pair for the negatives.
    k5 = undirected([(i, j) for i in range(5) for j in range(i + 1, 5)])
    with pytest.raises(ValueError, match="only 0 non-adjacent node pairs"):
        split_edges_connected(k5, 5)


@has_real
def test_split_real_blogcatalog():
    """The components of BlogCatalog (one, plus isolated nodes if any) survive the split."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from geolayers.datasets.node2vec_graphs import load_node2vec_graph

    graph = load_node2vec_graph("BlogCatalog", REAL)
    split = split_edges_connected(graph.edge_index, graph.num_nodes)

    def count(ei):
        ei = ei.numpy()
        a = coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(graph.num_nodes,) * 2)
        return connected_components(a, directed=False)

    (k0, lab0), (k1, lab1) = count(graph.edge_index), count(split.train_edge_index)
    assert k0 == k1 and same_partition(lab0.tolist(), lab1.tolist())
    non_loops = int((graph.edge_index[0] != graph.edge_index[1]).sum()) // 2
    assert split.test_pos.shape[1] == round(0.5 * non_loops) == split.test_neg.shape[1]


# --------------------------------------------------------------------- link_prediction_auc


def planted_partition(seed=0, n=120, groups=4):
    """Edges only inside groups; an embedding that one-hot encodes the group."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % groups
    u, v = np.triu_indices(n, k=1)
    same = group[u] == group[v]
    # Dense groups: same-group non-edges (negatives the embedding cannot tell from edges)
    # stay a few percent of the negatives.
    keep = same & (rng.random(u.size) < 0.9)
    ei = undirected(np.stack([u[keep], v[keep]], 1).tolist())
    emb = torch.nn.functional.one_hot(torch.as_tensor(group), groups).double() * 2
    return ei, n, emb


def test_link_prediction_good_and_random():
    ei, n, emb = planted_partition()
    split = split_edges_connected(ei, n, seed=0)
    for operator in ("hadamard", "l1", "l2"):
        auc = link_prediction_auc(emb, *split, operator=operator)
        assert auc > 0.95, operator
    # The average of two one-hot vectors cannot separate same-group pairs linearly.
    assert 0 <= link_prediction_auc(emb, *split, operator="average") <= 1
    noise = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))
    aucs = [link_prediction_auc(noise, *split, operator=op) for op in EDGE_OPERATORS]
    assert all(abs(a - 0.5) < 0.1 for a in aucs), aucs
    # float32 and float64 agree.
    blurred = emb + 0.5 * noise[:, :4].double()
    a64 = link_prediction_auc(blurred, *split)
    assert 0.6 < a64 < 0.99
    assert link_prediction_auc(blurred.float(), *split) == pytest.approx(a64, abs=1e-3)


def test_link_prediction_bad_inputs():
    ei, n, emb = planted_partition(n=40)
    split = split_edges_connected(ei, n)
    with pytest.raises(ValueError, match=r"operator must be one of \['hadamard'.*got 'dot'"):
        link_prediction_auc(emb, *split, operator="dot")
    with pytest.raises(ValueError, match=r"test_pos must hold node indices in \[0, 40\)"):
        link_prediction_auc(emb, split.train_edge_index, split.test_pos + 40, split.test_neg)
    with pytest.raises(ValueError, match="test_neg must hold at least one pair"):
        link_prediction_auc(emb, split.train_edge_index, split.test_pos, split.test_neg[:, :0])
    with pytest.raises(ValueError, match="train_edge_index must hold at least one edge"):
        link_prediction_auc(emb, torch.tensor([[1], [1]]), split.test_pos, split.test_neg)
    with pytest.raises(TypeError, match="embedding must be a float32 or float64"):
        link_prediction_auc(emb.long(), *split)
