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
import os
import sys
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv

from geolayers.graph.hamiltonian import HamiltonianNodeEmbedding

import _node_classification as node_classification
from _common import example_parser, finish, timed_run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ROOT = os.path.join(REPO_ROOT, "..", "shared", "data", "musae")
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
    lines = [
        "| model | parameters | test accuracy (%) | val accuracy (%) | best epoch "
        "| train time (s) | ms / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "HamGNN": f"HamGNN ({cfg.hamiltonian}, T={cfg.time:g}, {cfg.steps} steps)",
        "GCN": "GCN (2 layers)",
        "MLP": "MLP (no graph)",
    }
    for name, r in results["models"].items():
        lines.append(
            f"| {names[name]} | {r['parameters']:,} | {100 * r['test']:.2f} | "
            f"{100 * r['val']:.2f} | {r['epoch']} | {r['train_seconds']:.1f} | "
            f"{r['ms_per_epoch']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    p = example_parser(
        "Facebook page-page node classification: HamGNN (Kang et al. 2023) vs GCN.",
        seed=d.seed,
        threads=d.threads,
        seed_help="seed of the split, SVD and initial weights",
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help="folder with the MUSAE facebook_* files")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per model (default: {d.epochs}; smoke: {SMOKE.epochs})",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help=f"hidden width of every model (default: {d.hidden})",
    )
    p.add_argument(
        "--svd-dim",
        type=int,
        default=None,
        help=f"input width after the truncated SVD (default: {d.svd_dim})",
    )
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
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay")
    p.add_argument(
        "--dropout", type=float, default=d.dropout, help="dropout on inputs and hidden features"
    )
    p.add_argument(
        "--max-nodes",
        type=int,
        default=None,
        help="keep the subgraph induced by the first N nodes (default: all; smoke: 1500)",
    )
    return p.parse_args(argv)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = replace(
        base,
        epochs=base.epochs if args.epochs is None else args.epochs,
        hidden=base.hidden if args.hidden is None else args.hidden,
        svd_dim=base.svd_dim if args.svd_dim is None else args.svd_dim,
        steps=base.steps if args.steps is None else args.steps,
        max_nodes=base.max_nodes if args.max_nodes is None else args.max_nodes,
        time=args.time,
        hamiltonian=args.hamiltonian,
        lr=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        seed=args.seed,
        threads=args.threads,
    )
    if min(cfg.epochs, cfg.hidden, cfg.svd_dim, cfg.steps, cfg.threads) < 1:
        raise SystemExit("--epochs, --hidden, --svd-dim, --steps and --threads must be >= 1")
    if cfg.max_nodes is not None and cfg.max_nodes < 5:
        raise SystemExit(f"--max-nodes must be >= 5 (a 60/20/20 split), got {cfg.max_nodes}")
    if not cfg.time > 0 or not 0 <= cfg.dropout < 1:
        raise SystemExit("--time must be > 0 and --dropout in [0, 1)")

    def experiment() -> dict:
        try:
            results = run(args.root, cfg, progress=args.progress)
        except FileNotFoundError as err:
            raise SystemExit(f"error: {err}") from err
        results["root"] = os.path.abspath(args.root)
        return results

    results, wall = timed_run(experiment, cfg, argv)

    sizes = results["sizes"]
    print(
        f"seed {cfg.seed}, torch threads {torch.get_num_threads()}, {cfg.epochs} full-batch "
        f"epochs per model, Adam lr {cfg.lr}, weight decay {cfg.weight_decay}, dropout "
        f"{cfg.dropout}, hidden {cfg.hidden}"
    )
    print(
        f"data: MUSAE Facebook page-page ({results['root']}), {sizes['nodes']} nodes, "
        f"{sizes['directed_edges'] // 2} undirected edges, 4 classes; features: truncated SVD "
        f"to {sizes['features']} columns; split {sizes['train']}/{sizes['val']}/"
        f"{sizes['test']} train/val/test nodes"
    )
    print()
    print(markdown_table(results, cfg))
    print()
    print(
        "Accuracy at the epoch with the best validation accuracy (checked every "
        f"{cfg.eval_every} epochs); train time excludes evaluation. Data preparation "
        f"(reading, SVD): {results['prepare_seconds']:.1f} s."
    )
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
