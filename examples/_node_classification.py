"""What the node-classification examples on the Facebook page-page graph share: the feature
preparation, the seeded split and the training protocol, so that every model they compare
(HamGNN, HGCN, GCN, MLP) sees exactly the same data, split and budget.

``cfg`` is the example's configuration; the fields read here are ``svd_dim``, ``max_nodes``,
``seed``, ``epochs``, ``lr``, ``weight_decay``, ``eval_every`` and ``threads``.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data
from torch_geometric.utils import subgraph
from tqdm.auto import tqdm

from geolayers.datasets.musae import load_musae_facebook

from _common import finish, timed_run

SPLIT = (0.6, 0.2, 0.2)
DEFAULT_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "musae"
)

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


# --- the command line and the report every such example shares ------------------------------


def add_shared_flags(
    p: argparse.ArgumentParser, defaults: Any, smoke: Any, dropout_help: str
) -> None:
    """The data and training flags of every Facebook example; the sizes default to ``None``
    so that ``--smoke`` can pick its own (see :func:`shared_config`)."""
    p.add_argument("--root", default=DEFAULT_ROOT, help="folder with the MUSAE facebook_* files")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs per model (default: {defaults.epochs}; smoke: {smoke.epochs})",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help=f"hidden width of every model (default: {defaults.hidden})",
    )
    p.add_argument(
        "--svd-dim",
        type=int,
        default=None,
        help=f"input width after the truncated SVD (default: {defaults.svd_dim})",
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    p.add_argument(
        "--weight-decay", type=float, default=defaults.weight_decay, help="Adam weight decay"
    )
    p.add_argument("--dropout", type=float, default=defaults.dropout, help=dropout_help)
    p.add_argument(
        "--max-nodes",
        type=int,
        default=None,
        help=f"keep the subgraph induced by the first N nodes (default: all; smoke: "
        f"{smoke.max_nodes})",
    )


def shared_config(args: argparse.Namespace, base: Any) -> dict[str, Any]:
    """The fields of the configuration that :func:`add_shared_flags` sets, for
    ``dataclasses.replace(base, **shared_config(args, base), ...)``."""

    def size(name: str) -> Any:
        value = getattr(args, name)
        return getattr(base, name) if value is None else value

    return {
        "epochs": size("epochs"),
        "hidden": size("hidden"),
        "svd_dim": size("svd_dim"),
        "max_nodes": size("max_nodes"),
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "dropout": args.dropout,
        "seed": args.seed,
        "threads": args.threads,
    }


def check_shared_config(cfg: Any) -> None:
    """Exit with a message when a shared flag is out of range."""
    if min(cfg.epochs, cfg.hidden, cfg.svd_dim, cfg.threads) < 1:
        raise SystemExit("--epochs, --hidden, --svd-dim and --threads must be >= 1")
    if cfg.max_nodes is not None and cfg.max_nodes < 5:
        raise SystemExit(f"--max-nodes must be >= 5 (a 60/20/20 split), got {cfg.max_nodes}")
    if not 0 <= cfg.dropout < 1:
        raise SystemExit("--dropout must be in [0, 1)")


def results_table(results: dict, names: Mapping[str, str]) -> str:
    """The Markdown table of the models' results, one row per model, labelled by ``names``."""
    lines = [
        "| model | parameters | test accuracy (%) | val accuracy (%) | best epoch "
        "| train time (s) | ms / epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["models"].items():
        lines.append(
            f"| {names[name]} | {r['parameters']:,} | {100 * r['test']:.2f} | "
            f"{100 * r['val']:.2f} | {r['epoch']} | {r['train_seconds']:.1f} | "
            f"{r['ms_per_epoch']:.0f} |"
        )
    return "\n".join(lines)


def run_and_report(
    args: argparse.Namespace,
    cfg: Any,
    argv: list[str] | None,
    run_models: Callable[[str, Any, bool], dict],
    table: Callable[[dict], str],
) -> int:
    """Run the experiment, print the set-up, the table and the protocol line; returns 0."""

    def experiment() -> dict:
        try:
            results = run_models(args.root, cfg, args.progress)
        except FileNotFoundError as err:
            raise SystemExit(f"error: {err}") from err
        results["root"] = os.path.abspath(args.root)
        return results

    results, _ = timed_run(experiment, cfg, argv)
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
    print(table(results))
    print()
    print(
        "Accuracy at the epoch with the best validation accuracy (checked every "
        f"{cfg.eval_every} epochs); train time excludes evaluation. Data preparation "
        f"(reading, SVD): {results['prepare_seconds']:.1f} s."
    )
    return finish(results, args.json)
