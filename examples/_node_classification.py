"""What the node-classification examples on the Facebook page-page graph share: the feature
preparation, the seeded split and the training protocol, so that every model they compare
(HamGNN, HGCN, GCN, MLP) sees exactly the same data, split and budget.

``cfg`` is the example's configuration; the fields read here are ``svd_dim``, ``max_nodes``,
``seed``, ``epochs``, ``lr``, ``weight_decay``, ``eval_every`` and ``threads``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data
from torch_geometric.utils import subgraph
from tqdm.auto import tqdm

from geolayers.datasets.musae import load_musae_facebook

SPLIT = (0.6, 0.2, 0.2)

#: ``build(name, in_channels, num_classes) -> nn.Module``.
Builder = Callable[[str, int, int], nn.Module]


def prepare(root: str, cfg: Any) -> tuple[Data, dict[str, Tensor]]:
    """Graph with SVD-reduced features, and the seeded 60/20/20 node split."""
    data = load_musae_facebook(root)
    if cfg.max_nodes is not None and cfg.max_nodes < data.num_nodes:
        # The subgraph induced by the first nodes: a smaller graph of the same kind.
        keep = torch.arange(cfg.max_nodes)
        edge_index, _ = subgraph(
            keep, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes
        )
        data = Data(
            x=data.x.index_select(0, keep),
            edge_index=edge_index,
            y=data.y[keep],
            num_nodes=cfg.max_nodes,
            class_names=data.class_names,
        )
    features = data.x.coalesce() if data.x.is_sparse else data.x
    rank = min(cfg.svd_dim, *features.shape)
    torch.manual_seed(cfg.seed)
    u, s, _ = torch.svd_lowrank(features, q=rank, niter=4)
    x = u * s
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-12)
    data.x = x

    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(data.num_nodes, generator=gen)
    n_train = int(SPLIT[0] * data.num_nodes)
    n_val = int(SPLIT[1] * data.num_nodes)
    split = {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val :],
    }
    return data, split


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, nodes: dict[str, Tensor]) -> dict[str, float]:
    model.eval()
    pred = model(data.x, data.edge_index).argmax(-1)
    return {k: (pred[v] == data.y[v]).float().mean().item() for k, v in nodes.items()}


def train(
    name: str, build: Builder, data: Data, split: dict[str, Tensor], cfg: Any, progress: bool
) -> dict:
    """Train one model; returns its accuracies at the best validation epoch and timings."""
    torch.manual_seed(cfg.seed)
    model = build(name, data.x.size(1), len(data.class_names))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best: dict = {"val": -1.0, "test": 0.0, "train": 0.0, "epoch": 0, "state": None}
    train_nodes = split["train"]
    train_seconds = 0.0
    bar = tqdm(range(1, cfg.epochs + 1), desc=name, disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[train_nodes], data.y[train_nodes])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_seconds += time.perf_counter() - start
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            acc = accuracy(model, data, split)
            if acc["val"] > best["val"]:
                best = {**acc, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{acc['val']:.3f}", refresh=False)
    start = time.perf_counter()
    model.load_state_dict(best.pop("state"))
    best_again = accuracy(model, data, split)
    infer_seconds = time.perf_counter() - start
    if abs(best_again["test"] - best["test"]) > 1e-6:
        raise RuntimeError(f"{name}: restored checkpoint disagrees with the recorded accuracy")
    return {
        **best,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "ms_per_epoch": 1000 * train_seconds / max(cfg.epochs, 1),
        "inference_seconds": infer_seconds,
    }


def run(root: str, cfg: Any, models: Sequence[str], build: Builder, progress: bool = True) -> dict:
    """Prepare the graph once, then train every model of ``models`` (built by ``build``)."""
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    data, split = prepare(root, cfg)
    prep_seconds = time.perf_counter() - start
    results = {name: train(name, build, data, split, cfg, progress) for name in models}
    return {
        "models": results,
        "prepare_seconds": prep_seconds,
        "sizes": {
            "nodes": int(data.num_nodes),
            "directed_edges": int(data.edge_index.size(1)),
            "features": int(data.x.size(1)),
            **{k: int(v.numel()) for k, v in split.items()},
        },
    }
