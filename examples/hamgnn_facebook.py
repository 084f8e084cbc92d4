"""Node classification on the Facebook page-page graph: HamGNN vs a 2-layer GCN.

The node-classification experiment of `"Node Embedding from Neural Hamiltonian Orbits in Graph
Neural Networks" <https://arxiv.org/abs/2305.18965>`_ (Kang et al., ICML 2023), run on the MUSAE
Facebook page-page graph (:func:`geolayers.datasets.musae.load_musae_facebook`: 22,470 pages,
170,823 undirected edges without self loops, 4 page types: company, government, politician,
tvshow).

* Input features: the 4,714-wide multi-hot page features, reduced once to ``--svd-dim``
  (128) columns by a truncated SVD (``torch.svd_lowrank``, seeded, over all nodes: no labels
  are used), then standardised per column.
* Split: a random 60/20/20 train/validation/test split of the nodes drawn from ``--seed``.
* Models, all with hidden width ``--hidden`` (64) and the same training budget (full-batch
  Adam, ``--epochs`` epochs, same learning rate, weight decay and dropout; the reported test
  accuracy is that of the epoch with the best validation accuracy, checked every
  ``--eval-every`` epochs):

  - ``HamGNN``: linear encoder -> :class:`~geolayers.graph.hamiltonian.HamiltonianNodeEmbedding`
    (separable Hamiltonian, leapfrog, time ``--time``, ``--steps`` steps) -> linear classifier;
  - ``GCN``: two :class:`torch_geometric.nn.GCNConv` layers with a ReLU between them;
  - ``MLP``: the same encoder and classifier with a ReLU and no graph, as a reference for what
    the features alone give.

Run (3 to 5 minutes on 1 CPU thread, the default, depending on the load; ``--smoke`` takes
seconds)::

    python examples/hamgnn_facebook.py
    python examples/hamgnn_facebook.py --smoke --no-progress
    python examples/hamgnn_facebook.py --root path/to/musae --steps 4 --json hamgnn.json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv

from geolayers.graph.hamiltonian import HamiltonianNodeEmbedding

import _node_classification as node_classification
from _common import example_parser

MODELS = ("HamGNN", "GCN", "MLP")


@dataclass
class Config:
    epochs: int = 200
    hidden: int = 64
    svd_dim: int = 128
    steps: int = 3
    time: float = 1.0
    hamiltonian: str = "separable"
    lr: float = 0.01
    weight_decay: float = 5e-4
    dropout: float = 0.5
    eval_every: int = 5
    max_nodes: int | None = None
    seed: int = 0
    # Sparse products over 22k nodes gain little from a second thread, and on a shared
    # machine two threads waiting on each other ran 3x slower than one (measured here).
    threads: int = 1


SMOKE = Config(epochs=6, hidden=16, svd_dim=16, steps=2, eval_every=2, max_nodes=1500)


class HamGNN(nn.Module):
    """Linear encoder -> Hamiltonian flow -> linear classifier."""

    def __init__(self, in_channels: int, cfg: Config, num_classes: int) -> None:
        super().__init__()
        self.dropout = cfg.dropout
        self.encoder = nn.Linear(in_channels, cfg.hidden)
        self.flow = HamiltonianNodeEmbedding(
            cfg.hidden, cfg.hamiltonian, time=cfg.time, steps=cfg.steps, cached=True
        )
        self.classifier = nn.Linear(cfg.hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        q = self.flow(self.encoder(x), edge_index)
        return self.classifier(F.dropout(q, self.dropout, self.training))


class GCN(nn.Module):
    """Two GCN layers (Kipf and Welling 2017) with a ReLU between them."""

    def __init__(self, in_channels: int, cfg: Config, num_classes: int) -> None:
        super().__init__()
        self.dropout = cfg.dropout
        self.conv1 = GCNConv(in_channels, cfg.hidden, cached=True)
        self.conv2 = GCNConv(cfg.hidden, num_classes, cached=True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = F.relu(self.conv1(x, edge_index))
        return self.conv2(F.dropout(h, self.dropout, self.training), edge_index)


class MLP(nn.Module):
    """The HamGNN encoder and classifier with a ReLU instead of the flow: no graph."""

    def __init__(self, in_channels: int, cfg: Config, num_classes: int) -> None:
        super().__init__()
        self.dropout = cfg.dropout
        self.encoder = nn.Linear(in_channels, cfg.hidden)
        self.classifier = nn.Linear(cfg.hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = F.relu(self.encoder(x))
        return self.classifier(F.dropout(h, self.dropout, self.training))


def run(root: str, cfg: Config, progress: bool = True) -> dict:
    classes = {"HamGNN": HamGNN, "GCN": GCN, "MLP": MLP}
    return node_classification.run(
        root, cfg, MODELS, lambda name, d_in, n_cls: classes[name](d_in, cfg, n_cls), progress
    )


def markdown_table(results: dict, cfg: Config) -> str:
    names = {
        "HamGNN": f"HamGNN ({cfg.hamiltonian}, T={cfg.time:g}, {cfg.steps} steps)",
        "GCN": "GCN (2 layers)",
        "MLP": "MLP (no graph)",
    }
    return node_classification.results_table(results, names)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    p = example_parser(
        "Facebook page-page node classification: HamGNN (Kang et al. 2023) vs GCN.",
        seed=d.seed,
        threads=d.threads,
        seed_help="seed of the split, SVD and initial weights",
    )
    node_classification.add_shared_flags(p, d, SMOKE, "dropout on inputs and hidden features")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"leapfrog steps of the Hamiltonian flow (default: {d.steps})",
    )
    p.add_argument("--time", type=float, default=d.time, help="integration time T of the flow")
    p.add_argument(
        "--hamiltonian",
        choices=["separable", "mlp"],
        default=d.hamiltonian,
        help="form of the learned Hamiltonian",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = replace(
        base,
        **node_classification.shared_config(args, base),
        steps=base.steps if args.steps is None else args.steps,
        time=args.time,
        hamiltonian=args.hamiltonian,
    )
    node_classification.check_shared_config(cfg)
    if cfg.steps < 1:
        raise SystemExit("--steps must be >= 1")
    if not cfg.time > 0:
        raise SystemExit("--time must be > 0")
    return node_classification.run_and_report(
        args, cfg, argv, run, lambda results: markdown_table(results, cfg)
    )


if __name__ == "__main__":
    sys.exit(main())
