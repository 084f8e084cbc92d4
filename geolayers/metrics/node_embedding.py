r"""Evaluation protocols of node embeddings: multi-label F1, per-class auROC, link prediction.

Three protocols, each the one of a paper, scored with L2 logistic regressions (scikit-learn's
``LogisticRegression`` with lbfgs, imported on first use; its objective solved in torch for
:func:`multilabel_f1`):

* :func:`multilabel_f1`, the node classification of `"node2vec: Scalable Feature Learning for
  Networks" <https://arxiv.org/abs/1607.00653>`_ (Grover and Leskovec 2016, section 4.3),
  which follows `DeepWalk <https://arxiv.org/abs/1403.6652>`_ (Perozzi et al. 2014, section
  5.1 and its ``scoring.py``): a random ``train_fraction`` of the nodes trains one-vs-rest
  logistic regressions; every test node is predicted with its ``k`` highest-scoring labels,
  ``k`` its true number of labels; Macro- and Micro-F1 averaged over repeated splits.
* :func:`class_auroc`, the protocol of the PecanPy benchmark (`Liu and Krishnan 2021
  <https://doi.org/10.1093/bioinformatics/btab202>`_, Bioinformatics, and its
  ``PecanPy_benchmarks`` repository, ``script/analysis/evaluate.py``): for every class with at
  least 10 positives, an L2 logistic regression under stratified 5-fold cross-validation; the
  out-of-fold decision values of all folds are pooled and scored by one auROC per class; the
  benchmark repeats with the fold seeds 0..9, takes the median per class, and reports the mean
  over classes.
* :func:`split_edges_connected` and :func:`link_prediction_auc`, the link prediction of
  node2vec (section 4.4): half of the edges are removed while the rest stays connected, as
  many non-edges are drawn as negatives, and a logistic regression on a binary operator of the
  two endpoint embeddings (Table 1 of the paper) is trained on the remaining edges against as
  many sampled non-edges and scored by the auROC on the held-out pairs.

The link-prediction split of hierarchies (:func:`geolayers.metrics.link_prediction_split`) is a
different protocol (directed relations of a closure, no connectivity constraint); it shares no
helper with this one beyond the argument checks of :mod:`geolayers._checks`.

:func:`multilabel_f1` fits all classes at once by a batched Newton method in torch (the same
minimiser as ``LogisticRegression``; scikit-learn is not needed there). Runtime, one CPU
thread, BlogCatalog-sized inputs (10,312 nodes x 128 dimensions, 38 classes; a random and a
spectral embedding): one repeat of :func:`class_auroc` (190 fits) 2-5 s,
:func:`split_edges_connected` 0.2 s, :func:`link_prediction_auc` (334k training pairs) 3-5 s. lbfgs converges there in at
most 60 iterations, about ten times faster than liblinear; each fit runs on one core
(``n_jobs`` is left alone).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe

#: Binary operators of node2vec's Table 1, edge features from the two endpoint embeddings.
EDGE_OPERATORS = ("hadamard", "average", "l1", "l2")

# lbfgs iterations before a fit counts as not converged; PecanPy's benchmark uses 1000 too.
_MAX_ITER = 1000


class MultilabelF1(NamedTuple):
    """Scores of :func:`multilabel_f1`: means and (population) standard deviations over the
    repeated splits, and the regularisation ``C`` used in each split (in split order)."""

    macro_f1: float
    micro_f1: float
    macro_std: float
    micro_std: float
    #: The ``C`` of every split: the fixed ``C``, or the one cross-validation chose.
    chosen_c: tuple[float, ...] = ()


class ClassAUROC(NamedTuple):
    """Scores of :func:`class_auroc`.

    Attributes:
        mean_auroc: mean of ``per_class``.
        per_class: ``(K,)`` float64 auROC of every evaluated class (median over repeats).
        classes: ``(K,)`` int64 column indices of ``labels`` of the evaluated classes.
    """

    mean_auroc: float
    per_class: Tensor
    classes: Tensor


class EdgeSplit(NamedTuple):
    """Edges split by :func:`split_edges_connected`.

    Attributes:
        train_edge_index: ``(2, E')`` int64, the kept edges in both directions (self loops
            once), sorted.
        test_pos: ``(2, T)`` int64 removed edges ``(u, v)``, ``u < v``, sorted.
        test_neg: ``(2, T)`` int64 node pairs ``u < v`` that are no edge of the input graph,
            distinct, sorted.
    """

    train_edge_index: Tensor
    test_pos: Tensor
    test_neg: Tensor


# --------------------------------------------------------------------- checks


def _sklearn() -> Any:
    """``sklearn`` with the pieces used here, or an ImportError that says how to get it."""
    try:
        import sklearn.exceptions
        import sklearn.linear_model
        import sklearn.metrics
        import sklearn.model_selection
    except ImportError as err:
        raise ImportError(
            "geolayers.metrics.node_embedding scores embeddings with scikit-learn's "
            "LogisticRegression, which is not installed: pip install scikit-learn"
        ) from err
    return sklearn


def _check_embedding(embedding: object) -> np.ndarray:
    if not isinstance(embedding, Tensor) or embedding.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"embedding must be a float32 or float64 tensor (N, D), got {describe(embedding)}"
        )
    if embedding.dim() != 2 or embedding.shape[0] == 0 or embedding.shape[1] == 0:
        raise ValueError(
            f"embedding must have shape (N, D) with N, D >= 1, got {tuple(embedding.shape)}"
        )
    if not bool(torch.isfinite(embedding).all()):
        raise ValueError("embedding must be finite (it holds NaN or inf)")
    # float64 for the solver, whatever the embedding's dtype: the scores of a float32 and a
    # float64 copy of one embedding then differ only by the rounding of the inputs.
    return embedding.detach().cpu().double().numpy()


def _check_labels(labels: object, num_nodes: int) -> np.ndarray:
    if not isinstance(labels, Tensor) or labels.dtype.is_complex:
        raise TypeError(f"labels must be a bool tensor (N, C), got {describe(labels)}")
    if labels.dim() != 2 or labels.shape[0] != num_nodes or labels.shape[1] == 0:
        raise ValueError(
            f"labels must have shape (N, C) = ({num_nodes}, C >= 1) to match embedding, got "
            f"{tuple(labels.shape)}"
        )
    if labels.dtype != torch.bool:
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels must be bool or hold only 0 and 1")
        labels = labels != 0
    return labels.detach().cpu().numpy()


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


def _check_c(C: object) -> float:
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not (0 < C < math.inf):
        raise ValueError(f"C must be a positive finite float (inverse L2 strength), got {C!r}")
    return float(C)


def _check_c_grid(C: object) -> tuple[float, ...]:
    """``C`` as a sorted tuple of distinct candidates: one for a number, all of a sequence."""
    if isinstance(C, Tensor):
        C = C.tolist()
    elif isinstance(C, np.ndarray):
        C = C.tolist() if C.ndim == 1 else C
    if not isinstance(C, (list, tuple)):
        return (_check_c(C),)
    if len(C) == 0:
        raise ValueError(
            "C must be a positive finite float or a non-empty sequence of them, got an empty "
            "sequence"
        )
    grid = []
    for i, c in enumerate(C):
        if isinstance(c, np.generic):
            c = c.item()
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 < c < math.inf):
            raise ValueError(
                "C must be a positive finite float or a non-empty sequence of them, got "
                f"C[{i}] = {c!r}"
            )
        grid.append(float(c))
    return tuple(sorted(set(grid)))


def _check_index(name: str, index: object, num_nodes: int) -> np.ndarray:
    if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 tensor of shape (2, E), got {describe(index)}")
    if index.dim() != 2 or index.shape[0] != 2:
        raise ValueError(f"{name} must have shape (2, E), got {tuple(index.shape)}")
    index = index.detach().cpu().long().numpy()
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"{name} must hold node indices in [0, {num_nodes}), got the range [{lo}, {hi}]"
            )
    return index


# --------------------------------------------------------------------- fitting


class _Fitter:
    """L2 logistic regressions with one shared setting, counting the fits that hit the
    iteration limit so that one warning (not hundreds) reports them."""

    def __init__(self, C: float) -> None:
        self.model = _sklearn().linear_model.LogisticRegression(
            C=C, solver="lbfgs", max_iter=_MAX_ITER
        )
        self.fits = 0
        self.unconverged = 0

    def scores(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        """Decision values (log-odds) of ``x_test``; a training set with one class only gives
        constant scores (+inf for all-positive, -inf for all-negative)."""
        if y_train.all() or not y_train.any():
            return np.full(x_test.shape[0], math.inf if y_train.all() else -math.inf)
        convergence = _sklearn().exceptions.ConvergenceWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", convergence)
            self.model.fit(x_train, y_train)
        self.fits += 1
        self.unconverged += int(self.model.n_iter_.max() >= _MAX_ITER)
        return self.model.decision_function(x_test)

    def warn(self) -> None:
        if self.unconverged:
            warnings.warn(
                f"{self.unconverged} of {self.fits} logistic regressions stopped at "
                f"{_MAX_ITER} lbfgs iterations before converging; the scores may be low. "
                "Embeddings with very large entries converge slowly: rescale them",
                RuntimeWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------- one-vs-rest solver

# Newton iterations before a class counts as not converged; a fit from zero takes about 10
# on BlogCatalog, a warm-started one fewer.
_NEWTON_MAX_ITER = 100
# A class has converged once its (accepted) Newton step moves no parameter by more than this,
# relative to its largest parameter. Newton converges quadratically, so the error left after
# such a step is of the order of its square: far below the figures any score resolves.
_NEWTON_STEP_RTOL = 1e-8
# Step halvings of one Newton iteration before the line search gives up.
_MAX_HALVINGS = 50
# Classes per Hessian product, bounding its (n, classes, D + 1) temporary to ~64 MB.
_HESSIAN_ELEMENTS = 1 << 23


def _softplus(u: Tensor) -> Tensor:
    """``log(1 + exp(u))`` without overflow and without torch's linear cut-off above 20 (which
    would shift the objective by ~2e-9 per term and with it the optimum)."""
    return u.clamp(min=0) + torch.log1p(torch.exp(-u.abs()))


def _newton_ovr(x1: Tensor, y: Tensor, C: float, init: Tensor | None) -> tuple[Tensor, int]:
    r"""One-vs-rest L2 logistic regressions of all classes at once, by damped Newton.

    Class ``k`` minimises scikit-learn's ``LogisticRegression(C=C)`` objective
    :math:`C \sum_i \log(1 + e^{-s_{ik} x_i \cdot \theta_k}) + \tfrac12 |w_k|^2`, with
    :math:`s_{ik} = \pm 1`, ``x1`` ending with a column of ones and :math:`\theta_k = (w_k,
    b_k)` (the intercept is not penalised). Every class needs a positive and a negative node;
    the objective is then strictly convex with a finite minimiser.

    Args:
        x1: ``(n, D + 1)`` float64 features with a final column of ones.
        y: ``(n, K)`` bool targets.
        C: inverse regularisation strength.
        init: ``(K, D + 1)`` starting point (warm start), or None for zeros.

    Returns:
        ``(K, D + 1)`` float64 ``theta`` and the number of classes that did not converge.
    """
    n, p = x1.shape
    num_classes = y.shape[1]
    target = y.to(x1.dtype)
    sign = 2 * target - 1
    theta = x1.new_zeros(num_classes, p) if init is None else init.clone()
    penalty = x1.new_ones(p)
    penalty[-1] = 0
    chunk = max(1, _HESSIAN_ELEMENTS // (n * p))

    def objective(th: Tensor, cols: Tensor) -> Tensor:
        margins = -sign[:, cols] * (x1 @ th.T)
        return C * _softplus(margins).sum(0) + 0.5 * (th[:, :-1] ** 2).sum(1)

    active = torch.arange(num_classes)
    f = objective(theta, active)
    for _ in range(_NEWTON_MAX_ITER):
        th = theta[active]
        prob = torch.sigmoid(x1 @ th.T)  # (n, a)
        grad = C * (prob - target[:, active]).T @ x1 + th * penalty
        weight = C * prob * (1 - prob)
        # Hessians X^T diag(weight_k) X of a chunk of classes in one GEMM (much faster than a
        # batched product of K thin matrices): (D+1, n) @ (n, chunk * (D+1)).
        hess = torch.empty(active.numel(), p, p, dtype=x1.dtype)
        for s in range(0, active.numel(), chunk):
            w = weight[:, s : s + chunk]
            scaled = (w.unsqueeze(-1) * x1.unsqueeze(1)).reshape(n, -1)
            hess[s : s + chunk] = (x1.T @ scaled).reshape(p, -1, p).transpose(0, 1)
        hess.diagonal(dim1=1, dim2=2).add_(penalty)
        # The intercept's entry C * sum(weight) can underflow to 0 on (nearly) separable data;
        # a tiny ridge keeps the system regular. Only the Newton direction changes, not the
        # minimiser (where the gradient vanishes), so the result stays exact.
        hess[:, -1, -1] += 1e-12 * (1 + C * n)
        # LU rather than Cholesky: MKL's batched potrf of these small matrices was 100x slower
        # than getrf with two threads on a busy machine (0.6 s against 0.016 s for 38 classes).
        step = torch.linalg.solve(hess, grad)
        decrease = (grad * step).sum(1)  # > 0: the Hessian is positive definite

        # Step halving (Armijo). Near the minimum the change of the objective is lost in its
        # rounding (a sum of n terms); the slack accepts such steps instead of halving them
        # away, which would stall the quadratic convergence.
        f_old = f[active]
        slack = 1e-12 * (1 + f_old.abs())
        t = torch.ones(active.numel(), dtype=x1.dtype)
        new = th - step
        f_new = objective(new, active)
        failed = f_new > f_old - 1e-4 * decrease + slack
        for _ in range(_MAX_HALVINGS):
            if not bool(failed.any()):
                break
            t[failed] /= 2
            new[failed] = th[failed] - t[failed, None] * step[failed]
            f_new[failed] = objective(new[failed], active[failed])
            failed &= f_new > f_old - 1e-4 * t * decrease + slack
        # A class whose line search failed is at its minimum up to rounding: keep it there.
        new[failed] = th[failed]
        f_new[failed] = f_old[failed]
        theta[active] = new
        f[active] = f_new
        small = t * step.abs().amax(1) <= _NEWTON_STEP_RTOL * (1 + new.abs().amax(1))
        active = active[~(small | failed)]
        if active.numel() == 0:
            break
    return theta, active.numel()


def _sklearn_ovr(
    x1: Tensor, y: Tensor, C: float, init: Tensor | None, tol: float = 1e-4
) -> tuple[Tensor, int]:
    """:func:`_newton_ovr` by scikit-learn's ``LogisticRegression`` (lbfgs), one class at a
    time (the former solver of :func:`multilabel_f1`, kept as the reference of the tests).
    ``init`` is ignored."""
    sk = _sklearn()
    x = x1[:, :-1].numpy()
    theta = x1.new_zeros(y.shape[1], x1.shape[1])
    unconverged = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sk.exceptions.ConvergenceWarning)
        for k in range(y.shape[1]):
            model = sk.linear_model.LogisticRegression(
                C=C, solver="lbfgs", max_iter=_MAX_ITER, tol=tol
            ).fit(x, y[:, k].numpy())
            theta[k, :-1] = torch.from_numpy(model.coef_[0])
            theta[k, -1] = float(model.intercept_[0])
            unconverged += int(model.n_iter_.max() >= _MAX_ITER)
    return theta, unconverged


#: The solver of :func:`multilabel_f1` (the tests swap in :func:`_sklearn_ovr` to compare).
_ovr_solver = _newton_ovr


class _OvrFit:
    """One-vs-rest fit of all classes on one training set, scoring other nodes.

    A class with no positive (or no negative) training node has no finite minimiser; it
    scores ``-inf`` (``+inf``) everywhere, as :class:`_Fitter` does. Counts the classes that
    did not converge so that one warning reports them.
    """

    def __init__(self) -> None:
        self.fits = 0
        self.unconverged = 0

    def fit(self, x: Tensor, y: Tensor, C: float, init: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(K, D + 1)`` parameters (zero for constant classes) and ``(K,)`` constant scores
        (``+-inf`` for constant classes, NaN for fitted ones)."""
        count = y.sum(0)
        fitted = (count > 0) & (count < y.shape[0])
        x1 = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
        theta = x.new_zeros(y.shape[1], x1.shape[1])
        if bool(fitted.any()):
            start = None if init is None else init[fitted]
            theta[fitted], unconverged = _ovr_solver(x1, y[:, fitted], C, start)
            self.fits += int(fitted.sum())
            self.unconverged += unconverged
        constant = torch.where(count > 0, math.inf, -math.inf).to(x.dtype)
        constant[fitted] = math.nan
        return theta, constant

    @staticmethod
    def scores(x: Tensor, theta: Tensor, constant: Tensor) -> np.ndarray:
        """``(n, K)`` decision values (log-odds) of ``x``."""
        scores = x @ theta[:, :-1].T + theta[:, -1]
        fixed = ~torch.isnan(constant)
        scores[:, fixed] = constant[fixed]
        return scores.numpy()

    def warn(self) -> None:
        if self.unconverged:
            warnings.warn(
                f"{self.unconverged} of {self.fits} logistic regressions stopped at their "
                "iteration limit before converging; the scores may be off. Embeddings with very large entries converge slowly: rescale them",
                RuntimeWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------- node classification


def _top_k_predictions(scores: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``(n, C)`` bool: the ``k[i]`` highest scores of every row ``i`` (ties by column)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :], axis=1)
    return rank < k[:, None]


def _f1_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Macro- and Micro-F1 of ``(n, C)`` bool predictions (see :func:`multilabel_f1`)."""
    tp = (pred & true).sum(0)
    fp = (pred & ~true).sum(0)
    fn = (~pred & true).sum(0)
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    macro = float(np.mean(2 * tp[present] / denominator[present])) if present.any() else math.nan
    micro = 2 * tp.sum() / max(int(denominator.sum()), 1)
    return macro, float(micro)


def _choose_c(
    x: Tensor,
    y: Tensor,
    grid: tuple[float, ...],
    folds: int,
    solver: _OvrFit,
    warm: dict[float, Tensor],
) -> float:
    """The ``C`` of ``grid`` (ascending) with the best Macro-F1 of top-k predictions pooled
    over a ``folds``-fold cross-validation on ``(x, y)``; ties go to the smaller ``C``.

    The rows of ``(x, y)`` are in random order (a random split's training nodes), so
    contiguous parts of them are random folds; no further randomness is drawn, which keeps
    the splits themselves independent of the grid.
    """
    n = y.shape[0]
    parts = np.array_split(np.arange(n), folds)
    pooled = {c: np.empty(tuple(y.shape)) for c in grid}
    for held in parts:
        inner = np.setdiff1d(np.arange(n), held, assume_unique=True)
        previous = None
        for c in grid:  # ascending: each fit starts from the last one at C or below
            theta, constant = solver.fit(x[inner], y[inner], c, warm.get(c, previous))
            warm[c] = previous = theta
            pooled[c][held] = solver.scores(x[held], theta, constant)
    true = y.numpy()
    k = true.sum(1)
    macro = [_f1_scores(_top_k_predictions(pooled[c], k), true)[0] for c in grid]
    return grid[int(np.argmax(macro))]  # the first maximum: the smallest C


def multilabel_f1(
    embedding: Tensor,
    labels: Tensor,
    *,
    train_fraction: float = 0.5,
    repeats: int = 10,
    seed: int = 0,
    C: float | Sequence[float] = 1.0,
    cv_folds: int = 3,
    normalize: bool = False,
    progress: bool = True,
) -> MultilabelF1:
    r"""Macro-/Micro-F1 of multi-label node classification, as node2vec and DeepWalk.

    Per repeat, a uniformly random ``train_fraction`` of the labelled nodes trains one L2
    logistic regression per class (one-vs-rest); each test node ``i`` is predicted with the
    :math:`k_i` classes of highest decision value, :math:`k_i` its true number of labels
    (DeepWalk's ``TopKRanker``; node2vec evaluates the same way). With per-class counts
    :math:`TP_c, FP_c, FN_c` over the test nodes,

    .. math::
        F1_c = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}, \qquad
        \text{Macro-F1} = \operatorname{mean}_c F1_c, \qquad
        \text{Micro-F1} = \frac{2 \sum_c TP_c}{\sum_c (2\,TP_c + FP_c + FN_c)}.

    The logistic regression of class :math:`c` minimises scikit-learn's
    ``LogisticRegression(C=C)`` objective :math:`C \sum_i \log(1 + e^{-s_{ic}(x_i \cdot w_c +
    b_c)}) + \tfrac12 |w_c|^2` (:math:`s_{ic} = \pm 1`; the intercept is not penalised). All
    classes are solved at once by a batched damped Newton method in float64 on the CPU,
    converged until the last step is below ``1e-8`` of the parameters: the decision values
    are those of scikit-learn's lbfgs run to a tight tolerance (scikit-learn's default
    ``tol=1e-4`` stops earlier, a few percent off on BlogCatalog). On BlogCatalog (two
    threads, a node2vec embedding) a split takes 1-5 s (later splits start from the previous
    solution), a little faster than 38 scikit-learn fits at ``tol=1e-4`` (4 s) and ~7 times
    faster than at ``tol=1e-8`` (25 s). A ``C`` grid costs ``len(C) * cv_folds + 1`` fits per
    split (36-47 s for four candidates).

    Nodes without any label are left out (they have nothing to predict, and would only
    train every class as a negative). A class that has no test node and is never predicted
    (:math:`F1_c = 0/0`) is left out of the macro mean, where scikit-learn's ``f1_score``
    would count it as 0. A class absent from a training split gets the score ``-inf`` (it is
    only predicted for a node with more labels than there are other classes); a class on
    every training node gets ``+inf``.

    **Choosing C.** node2vec does not state the classifier's regularisation. With a
    sequence of candidates as ``C``, each split chooses its own: the split's training nodes
    (in their random order) are cut into ``cv_folds`` contiguous folds; for each candidate,
    every fold is scored by a fit on the other folds, and the out-of-fold top-k predictions
    of all training nodes are pooled into one Macro-F1 (pooling keeps rare classes, which a
    single fold may lack, in the score). The candidate with the best Macro-F1 (ties: the
    smaller ``C``) is refitted on all training nodes and scored on the test nodes, which
    take no part in the choice. A single candidate (or a number) is used as is.

    Args:
        embedding: ``(N, D)`` float32 or float64 node embeddings.
        labels: ``(N, L)`` bool multi-label matrix (0/1 integers are accepted).
        train_fraction: share of the labelled nodes used for training, in ``(0, 1)``.
            (default: ``0.5``, node2vec's figure)
        repeats: random splits to average over. (default: ``10``)
        seed: seed of the splits (a ``numpy`` generator); the splits do not depend on
            ``C``, ``cv_folds`` or ``normalize``. (default: ``0``)
        C: inverse L2 regularisation strength (``> 0``), or a non-empty sequence of
            candidates chosen per split by cross-validation, e.g. ``(0.1, 1.0, 10.0,
            100.0)``. (default: ``1.0``, scikit-learn's)
        cv_folds: folds of that cross-validation, an int ``>= 2`` and at most the number of
            training nodes; unused for a single ``C``. (default: ``3``)
        normalize: scale every embedding row to unit L2 norm first (zero rows stay zero), a
            common preprocessing in node-embedding evaluations: the classifier then sees
            directions only, and one ``C`` suits embeddings of any scale. (default:
            ``False``, as node2vec)
        progress: tqdm bar over the splits. (default: ``True``)

    Returns:
        :class:`MultilabelF1` ``(macro_f1, micro_f1, macro_std, micro_std, chosen_c)``: the
        mean and population standard deviation over the repeats, and the ``C`` of each
        split (``repeats`` floats).

    Raises:
        TypeError / ValueError: an argument of the wrong type, shape or range (the message
            names it), or fewer than two labelled nodes.
        ImportError: scikit-learn is not installed (needed only by the other protocols).

    Example:
        >>> y = torch.arange(40).remainder(2).unsqueeze(1) == torch.tensor([[0, 1]])
        >>> multilabel_f1(y.double() * 4 - 2, y, repeats=2, progress=False).micro_f1
        1.0
        >>> multilabel_f1(
        ...     y.double() * 4 - 2, y, repeats=2, C=(0.1, 1.0), progress=False
        ... ).chosen_c
        (0.1, 0.1)
    """
    x = _check_embedding(embedding)
    y = _check_labels(labels, x.shape[0])
    train_fraction = _check_fraction("train_fraction", train_fraction)
    repeats = check_positive_int("repeats", repeats)
    seed = _check_seed(seed)
    grid = _check_c_grid(C)
    cv_folds = check_positive_int("cv_folds", cv_folds)
    if cv_folds < 2:
        raise ValueError(f"cv_folds must be >= 2, got {cv_folds}")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    labelled = y.any(1)
    x, y = x[labelled], y[labelled]
    n, num_classes = y.shape
    if n < 2:
        raise ValueError(f"labels must give at least 2 nodes a label, got {n}")
    n_train = min(max(round(train_fraction * n), 1), n - 1)
    if len(grid) > 1 and cv_folds > n_train:
        raise ValueError(
            f"cv_folds must not exceed the {n_train} training nodes of a split, got {cv_folds}"
        )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if normalize:
        norm = xt.norm(dim=1, keepdim=True)
        xt = xt / torch.where(norm > 0, norm, 1)

    solver = _OvrFit()
    # Last parameters fitted at each C: the start of the next fit at that C. Splits share
    # most of their nodes' distribution, so this saves Newton iterations; the minimiser
    # (hence every score) does not depend on the start.
    warm: dict[float, Tensor] = {}
    rng = np.random.default_rng(seed)
    macro, micro, chosen = [], [], []
    for _ in tqdm(range(repeats), disable=not progress, unit="split", desc="F1"):
        perm = rng.permutation(n)
        train, test = perm[:n_train], perm[n_train:]
        c = grid[0]
        if len(grid) > 1:
            c = _choose_c(xt[train], yt[train], grid, cv_folds, solver, warm)
        theta, constant = solver.fit(xt[train], yt[train], c, warm.get(c))
        warm[c] = theta
        true = y[test]
        scores = solver.scores(xt[test], theta, constant)
        ma, mi = _f1_scores(_top_k_predictions(scores, true.sum(1)), true)
        macro.append(ma)
        micro.append(mi)
        chosen.append(c)
    solver.warn()
    return MultilabelF1(
        float(np.mean(macro)),
        float(np.mean(micro)),
        float(np.std(macro)),
        float(np.std(micro)),
        tuple(chosen),
    )


def class_auroc(
    embedding: Tensor,
    labels: Tensor,
    *,
    folds: int = 5,
    min_positives: int = 10,
    seed: int = 0,
    C: float = 1.0,
    repeats: int = 1,
    progress: bool = True,
) -> ClassAUROC:
    r"""Mean per-class auROC under stratified cross-validation, the PecanPy benchmark protocol.

    As ``evaluate.py`` of the PecanPy benchmark (Liu and Krishnan 2021): the classes with at
    least ``min_positives`` positive nodes are kept; the nodes are those with at least one of
    the kept labels (unlabelled nodes are left out, as there). For every kept class, an L2
    logistic regression is fitted on each training part of a shuffled stratified ``folds``-fold
    split of those nodes (``StratifiedKFold(random_state=seed + r)`` for repeat ``r``), its
    decision values on the held-out part are pooled over the folds, and the class's auROC is
    computed once on the pooled values (not averaged over folds). Each class keeps the median
    over the repeats, and the score is the mean over classes. The benchmark's published
    figures are ``repeats=10, seed=0`` (fold seeds 0..9); one repeat is the default here
    because it is ten times cheaper (on BlogCatalog with a spectral embedding, the mean of
    single repeats with seeds 0..4 stayed within 0.001 of the 10-repeat figure, 0.758).

    A kept class that every evaluated node has (no negative) has no auROC and is left out of
    ``classes``. A training part with a single class scores its held-out nodes with a
    constant.

    Args:
        embedding: ``(N, D)`` float32 or float64 node embeddings.
        labels: ``(N, C)`` bool multi-label matrix (0/1 integers are accepted).
        folds: cross-validation folds, ``>= 2``. (default: ``5``)
        min_positives: fewest positives of an evaluated class. (default: ``10``)
        seed: fold seed of the first repeat. (default: ``0``)
        C: inverse L2 regularisation strength. (default: ``1.0``, as the benchmark)
        repeats: cross-validations with fold seeds ``seed, seed + 1, ...``; the median per
            class is kept. (default: ``1``; the benchmark uses 10)
        progress: tqdm bar over the classes. (default: ``True``)

    Returns:
        :class:`ClassAUROC` ``(mean_auroc, per_class (K,) float64, classes (K,) int64)``;
        ``mean_auroc`` is ``nan`` when no class qualifies.

    Raises:
        TypeError / ValueError: an argument of the wrong type, shape or range (the message
            names it), or fewer evaluated nodes than folds.
        ImportError: scikit-learn is not installed.

    Example:
        >>> y = torch.arange(40).remainder(2).unsqueeze(1) == torch.tensor([[0, 1]])
        >>> class_auroc(y.double(), y, progress=False).mean_auroc
        1.0
    """
    x = _check_embedding(embedding)
    y = _check_labels(labels, x.shape[0])
    folds = check_positive_int("folds", folds)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    min_positives = check_positive_int("min_positives", min_positives)
    seed = _check_seed(seed)
    C = _check_c(C)
    repeats = check_positive_int("repeats", repeats)

    kept = np.flatnonzero(y.sum(0) >= min_positives)
    nodes = y[:, kept].any(1)
    x, y = x[nodes], y[nodes][:, kept]
    if kept.size and x.shape[0] < folds:
        raise ValueError(
            f"folds must not exceed the {x.shape[0]} nodes with a label of an evaluated class, "
            f"got {folds}"
        )
    has_negative = ~y.all(0)
    kept, y = kept[has_negative], y[:, has_negative]
    if kept.size == 0:
        return ClassAUROC(
            math.nan, torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
        )

    sk = _sklearn()
    fitter = _Fitter(C)
    aurocs = np.empty((kept.size, repeats))
    with (
        warnings.catch_warnings(),
        tqdm(total=kept.size * repeats, disable=not progress, unit="class", desc="auROC") as bar,
    ):
        # StratifiedKFold warns when a class has fewer members than folds; such a class is
        # still scored (its training parts keep some positives or score constants).
        warnings.filterwarnings("ignore", message=".*least populated class")
        for r in range(repeats):
            splitter = sk.model_selection.StratifiedKFold(
                n_splits=folds, shuffle=True, random_state=seed + r
            )
            for j in range(kept.size):
                target = y[:, j]
                pooled = np.empty(target.size)
                for train, test in splitter.split(x, target):
                    pooled[test] = fitter.scores(x[train], target[train], x[test])
                # A part trained on one class scores +-inf (certainly in or out); roc_auc_score
                # wants finite values, and the largest floats rank the same.
                pooled = np.nan_to_num(
                    pooled, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max
                )
                aurocs[j, r] = sk.metrics.roc_auc_score(target, pooled)
                bar.update()
    fitter.warn()
    per_class = np.median(aurocs, axis=1)
    return ClassAUROC(
        float(per_class.mean()),
        torch.from_numpy(per_class),
        torch.from_numpy(kept.astype(np.int64)),
    )


# --------------------------------------------------------------------- link prediction


def _pair_keys(a: np.ndarray, b: np.ndarray, num_nodes: int) -> np.ndarray:
    """Keys ``min * N + max`` of unordered pairs."""
    return np.minimum(a, b) * num_nodes + np.maximum(a, b)


def _sample_non_edges(
    forbidden: np.ndarray, num_nodes: int, count: int, rng: np.random.Generator, name: str
) -> np.ndarray:
    """``count`` distinct keys of unordered pairs ``u < v`` whose key is not in the sorted
    array ``forbidden`` (which holds only keys of pairs ``u < v``), uniformly at random."""
    total = num_nodes * (num_nodes - 1) // 2
    available = total - forbidden.size
    if count > available:
        raise ValueError(
            f"{name}: {count} negative pairs are needed but the graph has only {available} "
            "non-adjacent node pairs"
        )
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if total <= 1 << 22:
        # Small graphs (or dense ones): list every pair and choose among the non-edges.
        u, v = np.triu_indices(num_nodes, k=1)
        keys = u.astype(np.int64) * num_nodes + v
        keys = keys[~np.isin(keys, forbidden, assume_unique=True)]
        return rng.choice(keys, size=count, replace=False)
    # Large graphs: rejection sampling, batches sized by the acceptance rate.
    accept = available / total
    found = np.zeros(0, dtype=np.int64)
    while found.size < count:
        draw = int(1.2 * (count - found.size) / accept) + 64
        u = rng.integers(0, num_nodes, size=draw)
        v = rng.integers(0, num_nodes, size=draw)
        keys = _pair_keys(u, v, num_nodes)[u != v]
        if forbidden.size:
            pos = np.minimum(np.searchsorted(forbidden, keys), forbidden.size - 1)
            keys = keys[forbidden[pos] != keys]
        # Keep the first occurrence of every key, in the order drawn, so that the sample
        # stays uniform over the distinct non-edges.
        keys = np.concatenate([found, keys])
        _, first = np.unique(keys, return_index=True)
        found = keys[np.sort(first)]
    return found[:count]


def _check_undirected(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys of the undirected non-loop edges, and the self-loop nodes; a
    ValueError names an edge without its reverse."""
    src, dst = edge_index
    forward = np.unique(src[src < dst] * num_nodes + dst[src < dst])
    backward = np.unique(dst[src > dst] * num_nodes + src[src > dst])
    if forward.size != backward.size or not np.array_equal(forward, backward):
        lonely = np.setxor1d(forward, backward)[0]
        a, b = int(lonely // num_nodes), int(lonely % num_nodes)
        u, v = (a, b) if lonely in forward else (b, a)
        direction = f"({u}, {v}) lacks ({v}, {u})"
        raise ValueError(
            "edge_index must hold both directions of every edge (an undirected graph, as "
            f"torch_geometric.utils.to_undirected gives): {direction}"
        )
    return forward, np.unique(src[src == dst])


def split_edges_connected(
    edge_index: Tensor, num_nodes: int, *, test_fraction: float = 0.5, seed: int = 0
) -> EdgeSplit:
    """Hold out edges for link prediction while keeping the graph's connected components.

    node2vec's protocol (section 4.4): "the residual network obtained after the edge removals
    is connected". Here, more generally, the connected components of the kept graph are those
    of the input: a random spanning forest (the minimum spanning forest under distinct random
    weights, i.e. Kruskal's algorithm over a random order of the edges) is always kept, and
    ``round(test_fraction * M)`` of the other ``M``-edge graph's undirected edges are drawn
    uniformly as test positives. When fewer edges lie outside the forest, all of them are
    removed and a RuntimeWarning gives both counts. As many distinct node pairs ``u < v``
    that are no edge of the input graph (and no self loop) are drawn uniformly as test
    negatives. Self loops never count as edges to remove; they stay in the training graph.

    Args:
        edge_index: ``(2, E)`` int64 undirected graph: both directions of every edge.
        num_nodes: ``N``.
        test_fraction: share of the undirected (non-loop) edges to remove, in ``(0, 1)``.
            (default: ``0.5``, node2vec's figure)
        seed: seed of the forest, the removals and the negatives. (default: ``0``)

    Returns:
        :class:`EdgeSplit` ``(train_edge_index (2, E'), test_pos (2, T), test_neg (2, T))``.

    Raises:
        TypeError / ValueError: an argument of the wrong type, shape or range (the message
            names it), an edge without its reverse, or fewer non-edges than ``T``.

    Example:
        >>> ring = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 0], [1, 0, 2, 1, 3, 2, 0, 3]])
        >>> split_edges_connected(ring, 4, test_fraction=0.25).test_pos.shape
        torch.Size([2, 1])
    """
    num_nodes = check_positive_int("num_nodes", num_nodes)
    index = _check_index("edge_index", edge_index, num_nodes)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    seed = _check_seed(seed)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    keys, loops = _check_undirected(index, num_nodes)
    m = keys.size
    rng = np.random.default_rng(seed)
    # Distinct weights 1..M in random order: the minimum spanning forest is then the forest
    # Kruskal's algorithm builds from a uniformly random edge order, and the weight of a
    # forest edge names the edge (scipy may store it in either orientation).
    weight = rng.permutation(m) + 1
    a, b = keys // num_nodes, keys % num_nodes
    forest = minimum_spanning_tree(coo_matrix((weight, (a, b)), shape=(num_nodes, num_nodes)))
    in_forest = np.zeros(m, dtype=bool)
    edge_of_weight = np.empty(m, dtype=np.int64)
    edge_of_weight[weight - 1] = np.arange(m)
    in_forest[edge_of_weight[forest.data.astype(np.int64) - 1]] = True

    removable = np.flatnonzero(~in_forest)
    wanted = round(test_fraction * m)
    if wanted > removable.size:
        warnings.warn(
            f"test_fraction={test_fraction} asks for {wanted} of the {m} edges, but only "
            f"{removable.size} can go without splitting a connected component (the other "
            f"{m - removable.size} form a spanning forest); removing {removable.size}",
            RuntimeWarning,
            stacklevel=2,
        )
        wanted = removable.size
    test = np.zeros(m, dtype=bool)
    test[rng.choice(removable, size=wanted, replace=False)] = True

    neg = np.sort(_sample_non_edges(keys, num_nodes, wanted, rng, "split_edges_connected"))
    kept = keys[~test]
    src = np.concatenate([kept // num_nodes, kept % num_nodes, loops])
    dst = np.concatenate([kept % num_nodes, kept // num_nodes, loops])
    order = np.argsort(src * num_nodes + dst, kind="stable")
    train = np.stack([src[order], dst[order]])
    pos = keys[test]  # sorted, as keys are

    def pairs(k: np.ndarray) -> Tensor:
        return torch.from_numpy(np.stack([k // num_nodes, k % num_nodes]).astype(np.int64))

    return EdgeSplit(torch.from_numpy(train.astype(np.int64)), pairs(pos), pairs(neg))


def _edge_features(x: np.ndarray, u: np.ndarray, v: np.ndarray, operator: str) -> np.ndarray:
    """node2vec's Table 1: ``(E, D)`` features of the pairs ``(u, v)``."""
    a, b = x[u], x[v]
    if operator == "hadamard":
        return a * b
    if operator == "average":
        return (a + b) / 2
    if operator == "l1":
        return np.abs(a - b)
    return (a - b) ** 2


def link_prediction_auc(
    embedding: Tensor,
    train_edge_index: Tensor,
    test_pos: Tensor,
    test_neg: Tensor,
    *,
    operator: str = "hadamard",
    seed: int = 0,
    C: float = 1.0,
) -> float:
    r"""auROC of link prediction from node embeddings, as node2vec (section 4.4).

    An edge ``(u, v)`` is the feature vector :math:`f(u) \circ f(v)` of the binary operator
    ``operator`` of node2vec's Table 1, applied to each dimension ``i``:

    * ``"hadamard"``: :math:`f_i(u)\, f_i(v)`;
    * ``"average"``: :math:`(f_i(u) + f_i(v)) / 2`;
    * ``"l1"`` (Weighted-L1): :math:`|f_i(u) - f_i(v)|`;
    * ``"l2"`` (Weighted-L2): :math:`|f_i(u) - f_i(v)|^2`.

    An L2 logistic regression is trained on the undirected training edges (self loops left
    out) against as many distinct node pairs drawn uniformly among the non-edges of the
    original graph (no training edge, no ``test_pos`` pair, no ``test_neg`` pair, no self
    loop), then scores ``test_pos`` against ``test_neg`` by auROC. The operators are
    symmetric, so the orientation of a pair does not matter.

    Args:
        embedding: ``(N, D)`` float32 or float64 node embeddings.
        train_edge_index: ``(2, E)`` int64 training graph (one or both directions).
        test_pos: ``(2, T)`` int64 held-out edges.
        test_neg: ``(2, T')`` int64 held-out non-edges.
        operator: one of :data:`EDGE_OPERATORS`. (default: ``"hadamard"``)
        seed: seed of the training negatives. (default: ``0``)
        C: inverse L2 regularisation strength. (default: ``1.0``)

    Returns:
        The auROC, a float in ``[0, 1]`` (0.5 is chance).

    Raises:
        TypeError / ValueError: an argument of the wrong type, shape or range (the message
            names it), no training edge, an empty ``test_pos``/``test_neg``, or fewer
            non-edges than training edges.
        ImportError: scikit-learn is not installed.

    Example:
        >>> emb = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4) * 3
        >>> ei = torch.tensor([[0, 1, 2, 4, 5, 6], [1, 2, 3, 5, 6, 7]])
        >>> link_prediction_auc(emb, ei, torch.tensor([[0], [3]]), torch.tensor([[0], [7]]))
        1.0
    """
    x = _check_embedding(embedding)
    num_nodes = x.shape[0]
    train = _check_index("train_edge_index", train_edge_index, num_nodes)
    pos = _check_index("test_pos", test_pos, num_nodes)
    neg = _check_index("test_neg", test_neg, num_nodes)
    if operator not in EDGE_OPERATORS:
        raise ValueError(f"operator must be one of {list(EDGE_OPERATORS)}, got {operator!r}")
    seed = _check_seed(seed)
    C = _check_c(C)
    for name, pairs in (("test_pos", pos), ("test_neg", neg)):
        if pairs.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one pair, got shape (2, 0)")
    not_loop = train[0] != train[1]
    train_keys = np.unique(_pair_keys(train[0][not_loop], train[1][not_loop], num_nodes))
    if train_keys.size == 0:
        raise ValueError("train_edge_index must hold at least one edge that is not a self loop")

    forbidden = np.unique(
        np.concatenate(
            [
                train_keys,
                _pair_keys(pos[0], pos[1], num_nodes),
                _pair_keys(neg[0][neg[0] != neg[1]], neg[1][neg[0] != neg[1]], num_nodes),
            ]
        )
    )
    rng = np.random.default_rng(seed)
    neg_keys = _sample_non_edges(
        forbidden, num_nodes, train_keys.size, rng, "train_edge_index (training negatives)"
    )
    keys = np.concatenate([train_keys, neg_keys])
    features = _edge_features(x, keys // num_nodes, keys % num_nodes, operator)
    target = np.arange(keys.size) < train_keys.size

    fitter = _Fitter(C)
    test_x = np.concatenate(
        [_edge_features(x, pos[0], pos[1], operator), _edge_features(x, neg[0], neg[1], operator)]
    )
    scores = fitter.scores(features, target, test_x)
    fitter.warn()
    test_y = np.arange(test_x.shape[0]) < pos.shape[1]
    return float(_sklearn().metrics.roc_auc_score(test_y, scores))


__all__ = [
    "EDGE_OPERATORS",
    "ClassAUROC",
    "EdgeSplit",
    "MultilabelF1",
    "class_auroc",
    "link_prediction_auc",
    "multilabel_f1",
    "split_edges_connected",
]
