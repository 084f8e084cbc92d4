r"""Node classification on the Facebook page-page graph: HGCN vs a 2-layer GCN.

The node-classification setting of `"Hyperbolic Graph Convolutional Neural Networks"
<https://arxiv.org/abs/1910.12933>`_ (Chami et al., NeurIPS 2019), run on the MUSAE Facebook
page-page graph (:func:`geolayers.datasets.musae.load_musae_facebook`: 22,470 pages, 170,823
undirected edges without self loops, 4 page types: company, government, politician, tvshow).

* Input features, split and training protocol: those of ``examples/hamgnn_facebook.py``. The
  4,714-wide multi-hot page features are reduced once to ``--svd-dim`` (128) columns by a
  truncated SVD (``torch.svd_lowrank``, seeded, over all nodes: no labels are used), then
  standardised per column; a random 60/20/20 train/validation/test split of the nodes is drawn
  from ``--seed``; every model is trained full-batch with Adam for ``--epochs`` epochs with the
  same learning rate, weight decay and dropout, and the reported test accuracy is that of the
  epoch with the best validation accuracy, checked every ``--eval-every`` epochs.
* Models, all with hidden width ``--hidden`` (64):

  - ``HGCN``: :class:`~geolayers.hyperbolic.ToPoincare` (the features scaled by
    :math:`1/\sqrt{d}`, then :math:`\exp_0` onto the ball of curvature ``--curvature``) ->
    two :class:`~geolayers.hyperbolic.hgcn.HGCNConv` layers (Mobius linear map, attention in
    the tangent space at the origin, ReLU across curvatures; dropout on their weights) ->
    :math:`\log_0` -> linear classifier, the decoder of the paper for node classification;
  - ``HGCN, mean aggregation``: the same without attention (``use_attention=False``);
  - ``GCN``: two :class:`torch_geometric.nn.GCNConv` layers with a ReLU between them.

Run (about 3.5 minutes on 1 CPU thread, the default; ``--smoke`` takes seconds)::

    python examples/hgcn_facebook.py
    python examples/hgcn_facebook.py --smoke --no-progress
    python examples/hgcn_facebook.py --root path/to/musae --curvature 0.5 --json hgcn.json
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace

from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv

from geolayers.hyperbolic import ToPoincare
from geolayers.hyperbolic import poincare as P
from geolayers.hyperbolic.hgcn import HGCNConv

import _node_classification as node_classification
from _common import example_parser

MODELS = ("HGCN", "HGCN-mean", "GCN")


@dataclass
class Config:
    epochs: int = 200
    hidden: int = 64
    svd_dim: int = 128
    curvature: float = 1.0
    lr: float = 0.01
    weight_decay: float = 5e-4
    dropout: float = 0.5
    eval_every: int = 5
    max_nodes: int | None = None
    seed: int = 0
    # One thread, as examples/hamgnn_facebook.py: scatter-heavy message passing over 22k nodes
    # gains little from a second thread on a shared machine.
    threads: int = 1


SMOKE = Config(epochs=6, hidden=16, svd_dim=16, eval_every=2, max_nodes=1500)


class HGCN(nn.Module):
    """Lift to the ball -> two HGCN layers -> logmap0 -> linear classifier."""

    def __init__(
        self, in_channels: int, cfg: Config, num_classes: int, use_attention: bool = True
    ) -> None:
        super().__init__()
        self.dropout = cfg.dropout
        self.c = cfg.curvature
        # Standardised features have norm about sqrt(d); 1/sqrt(d) brings them to norm 1,
        # where exp0 neither saturates at the boundary nor collapses to the origin (MERU's
        # initial scale). No clipping is then needed.
        self.scale = 1 / math.sqrt(in_channels)
        self.lift = ToPoincare(c=self.c, clip_r=None)
        kwargs = dict(
            c_in=self.c, c_out=self.c, dropout=cfg.dropout, use_attention=use_attention, cached=True
        )
        self.conv1 = HGCNConv(in_channels, cfg.hidden, **kwargs)
        self.conv2 = HGCNConv(cfg.hidden, cfg.hidden, **kwargs)
        self.classifier = nn.Linear(cfg.hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.dropout(x, self.dropout, self.training)
        h = self.conv1(self.lift(self.scale * x), edge_index)
        h = self.conv2(h, edge_index)
        return self.classifier(P.logmap0(h, self.c))


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


def build(name: str, in_channels: int, cfg: Config, num_classes: int) -> nn.Module:
    if name == "GCN":
        return GCN(in_channels, cfg, num_classes)
    return HGCN(in_channels, cfg, num_classes, use_attention=name == "HGCN")


def run(root: str, cfg: Config, progress: bool = True) -> dict:
    return node_classification.run(
        root, cfg, MODELS, lambda name, d_in, n_cls: build(name, d_in, cfg, n_cls), progress
    )


def markdown_table(results: dict, cfg: Config) -> str:
    names = {
        "HGCN": f"HGCN (2 layers, attention, c={cfg.curvature:g})",
        "HGCN-mean": f"HGCN (2 layers, mean aggregation, c={cfg.curvature:g})",
        "GCN": "GCN (2 layers)",
    }
    return node_classification.results_table(results, names)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    p = example_parser(
        "Facebook page-page node classification: HGCN (Chami et al. 2019) vs GCN.",
        seed=d.seed,
        threads=d.threads,
        seed_help="seed of the split, SVD and initial weights",
    )
    node_classification.add_shared_flags(
        p, d, SMOKE, "dropout on the input features, and on the GCN hidden features / HGCN weights"
    )
    p.add_argument(
        "--curvature",
        type=float,
        default=d.curvature,
        help="curvature magnitude c > 0 of the HGCN balls (curvature -c)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else Config()
    cfg = replace(base, **node_classification.shared_config(args, base), curvature=args.curvature)
    node_classification.check_shared_config(cfg)
    if not 0 < cfg.curvature < math.inf:
        raise SystemExit("--curvature must be > 0 and finite")
    return node_classification.run_and_report(
        args, cfg, argv, run, lambda results: markdown_table(results, cfg)
    )


if __name__ == "__main__":
    sys.exit(main())
