"""Distributed training: throughput on 1 and 2 processes, and the bytes exchanged per step.

Workloads (every process loads the data; one torch thread per process):

* node2vec on BlogCatalog (:func:`geolayers.datasets.load_node2vec_graph`): each process draws
  its share of ``--walks`` walks of ``--walk-length`` steps per node
  (:func:`geolayers.distributed.distributed_random_walks`), then synchronous skip-gram
  (:func:`geolayers.distributed.train_skipgram_distributed`: d = 128, window 10, 5 negatives,
  subsampling 1e-3, ``--walks-per-step`` walks per process per step) for ``--sgns-steps``
  steps;
* Poincare embeddings of the WordNet mammal closure (:func:`geolayers.datasets.load_wordnet_mammals`,
  1,180 nodes, 6,540 relations; a generated tree if WordNet is missing) with
  :func:`geolayers.distributed.fit_hierarchy_distributed`: d = 5, 50 negatives, 10 items per
  process per step, ``--poincare-epochs`` epochs (the first one burn-in);

each with ``sharded`` and ``replicated`` tables, on 1 and 2 processes (``--processes``),
started by :func:`geolayers.distributed.spawn` (gloo on loopback). Throughput is counted over
all processes (pairs or relations trained per second of the slowest process's training time);
bytes are what the processes send to each other per step (row ids, fetched rows, update rows,
per-peer counts; see :class:`geolayers.distributed.CommStats`), summed over processes.
Baselines, measured in the same run: the same code on 1 process, and the single-process fused
kernels (:func:`geolayers.graph.train_skipgram` on the same walks, 1 thread;
:func:`geolayers.hyperbolic.fit_hierarchy`, 1 thread), which do per-item SGD in C++.

Run: ``python -m benchmarks.distributed [--smoke] [--json PATH] [--processes 1 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from benchmarks._harness import Row, machine_line, markdown_table, write_json

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "node2vec")
MODES = ("sharded", "replicated")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with BlogCatalog.edg")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--walks", type=int, default=10, help="walks per node")
    parser.add_argument("--walk-length", type=int, default=80, help="steps per walk")
    parser.add_argument("--walks-per-step", type=int, default=16, help="walks per process")
    parser.add_argument("--sgns-steps", type=int, default=150, help="skip-gram steps timed")
    parser.add_argument("--poincare-epochs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, well under a minute")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def _reduce(values: list[float], op) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=op)
    return t.tolist()


def _stats_sum(stats) -> dict[str, float]:
    import torch.distributed as dist

    keys = ("ids_bytes", "rows_bytes", "updates_bytes", "meta_bytes", "total_bytes")
    d = stats.as_dict()
    return dict(zip(keys, _reduce([float(d[k]) for k in keys], dist.ReduceOp.SUM), strict=True))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()  # start timed sections together, not after the slowest import


def worker(cfg: dict) -> dict | None:
    """What every process runs; rank 0 returns the measurements."""
    import torch.distributed as dist

    import geolayers.distributed as D
    from geolayers.datasets import load_node2vec_graph
    from geolayers.graph import CSRGraph

    rank, world = D.get_rank(), D.get_world_size()
    out: dict = {"world": world, "node2vec": {}, "poincare": {}}
    data = load_node2vec_graph("BlogCatalog", cfg["data"])
    graph = CSRGraph.from_edge_index(data.edge_index, data.num_nodes, data.edge_weight)
    _barrier()
    start = time.perf_counter()
    shard = D.distributed_random_walks(graph, cfg["walk_length"], cfg["walks"], seed=0)
    (walk_s,) = _reduce([time.perf_counter() - start], dist.ReduceOp.MAX)
    out["walk_seconds"] = walk_s
    out["walks"] = shard.total
    for mode in MODES:
        _barrier()
        res = D.train_skipgram_distributed(
            shard, graph.num_nodes, cfg["dim"], window=10, negatives=5,
            walks_per_step=cfg["walks_per_step"], max_steps=cfg["sgns_steps"], mode=mode,
            seed=0, progress=False,
        )  # fmt: skip
        (seconds,) = _reduce([res.seconds], dist.ReduceOp.MAX)
        out["node2vec"][mode] = {
            "seconds": seconds, "pairs": res.pairs, "steps": res.steps,
            "bytes": _stats_sum(res.stats), "walks_trained": res.steps * cfg["walks_per_step"] * world,
        }  # fmt: skip

    edges, num_nodes, hierarchy = _hierarchy()
    for mode in MODES:
        _barrier()
        fit = D.fit_hierarchy_distributed(
            edges, num_nodes, 5, negatives=50, batch_size=10, epochs=cfg["poincare_epochs"],
            burn_in=1, lr=1.0, mode=mode, progress=False,
        )  # fmt: skip
        (seconds,) = _reduce([fit.history[-1]["seconds"]], dist.ReduceOp.MAX)
        out["poincare"][mode] = {
            "seconds": seconds, "relations": edges.shape[0] * cfg["poincare_epochs"],
            "steps": sum(h["steps"] for h in fit.history), "bytes": _stats_sum(fit.table.stats),
            "loss": fit.history[-1]["loss"],
        }  # fmt: skip
    out["hierarchy"] = hierarchy
    if world == 1:
        out["baselines"] = _baselines(cfg, graph, shard, edges, num_nodes)
    return out if rank == 0 else None


def _hierarchy():
    from geolayers.datasets import hierarchy_from_edges, load_wordnet_mammals

    try:
        h = load_wordnet_mammals()
        name = "WordNet mammals"
    except FileNotFoundError:
        pairs = [(f"n{i}", f"n{(i - 1) // 3}") for i in range(1, 1093)]
        h = hierarchy_from_edges(pairs)
        name = "generated tree (WordNet missing)"
    return h.edges, h.num_nodes, name


def _baselines(cfg, graph, shard, edges, num_nodes) -> dict:
    """The single-process fused kernels on the same work (1 thread)."""
    from geolayers.graph import train_skipgram
    from geolayers.hyperbolic import fit_hierarchy

    walks = shard.walks[: cfg["sgns_steps"] * cfg["walks_per_step"]]
    res = train_skipgram(
        walks, graph.num_nodes, cfg["dim"], window=10, seed=0, threads=1, progress=False
    )
    start = time.perf_counter()
    fit_hierarchy(
        edges, num_nodes, 5, negatives=50, batch_size=10, epochs=cfg["poincare_epochs"],
        burn_in=1, lr=1.0, threads=1, progress=False,
    )  # fmt: skip
    poincare_s = time.perf_counter() - start
    return {
        "node2vec": {"seconds": res.seconds, "pairs": res.pairs},
        "poincare": {"seconds": poincare_s, "relations": edges.shape[0] * cfg["poincare_epochs"]},
    }


def main(argv=None) -> int:
    import geolayers.distributed as D

    args = parse(argv)
    cfg = {
        "data": os.path.abspath(args.data), "dim": 128, "walks": args.walks,
        "walk_length": args.walk_length, "walks_per_step": args.walks_per_step,
        "sgns_steps": args.sgns_steps, "poincare_epochs": args.poincare_epochs,
    }  # fmt: skip
    if args.smoke:
        cfg.update(dim=16, walks=1, walk_length=10, walks_per_step=8, sgns_steps=10,
                   poincare_epochs=1)  # fmt: skip
    print(
        f"# distributed: node2vec BlogCatalog d={cfg['dim']}, {cfg['walks']} walks x "
        f"{cfg['walk_length']} steps per node, {cfg['walks_per_step']} walks per process per "
        f"step, {cfg['sgns_steps']} steps; Poincare d=5, 50 negatives, 10 items per process "
        f"per step, {cfg['poincare_epochs']} epochs; 1 torch thread per process"
    )
    print(f"# {machine_line()}; {os.cpu_count()} CPUs")
    runs = {}
    for world in args.processes:
        start = time.perf_counter()
        (first, *_) = D.spawn(worker, world, (cfg,), timeout_s=900, collective_timeout_s=300)
        runs[world] = first.value
        print(f"# {world} process(es): {time.perf_counter() - start:.1f} s", flush=True)

    base_world = min(runs)
    rows, table = [], []
    for task, unit, count in (
        ("node2vec", "pairs/s", "pairs"),
        ("poincare", "relations/s", "relations"),
    ):
        for mode in MODES:
            ref = runs[base_world][task][mode]
            ref_rate = ref[count] / ref["seconds"]
            for world, r in sorted(runs.items()):
                m = r[task][mode]
                rate = m[count] / m["seconds"]
                b = {k: v / max(m["steps"], 1) for k, v in m["bytes"].items()}
                table.append([
                    "BlogCatalog node2vec" if task == "node2vec" else r["hierarchy"] + " Poincare",
                    mode, world, m["steps"], f"{rate:,.0f} {unit}",
                    f"{rate / ref_rate:.2f}", f"{b['ids_bytes'] / 1e3:.1f}",
                    f"{b['rows_bytes'] / 1e3:.1f}", f"{b['updates_bytes'] / 1e3:.1f}",
                    f"{b['total_bytes'] / 1e3:.1f}",
                ])  # fmt: skip
                rows.append(Row({"task": task, "mode": mode, "processes": world},
                                {"train": m["seconds"]},
                                {"rate": rate, "unit": unit, "steps": m["steps"],
                                 "bytes_per_step": b}))  # fmt: skip
    print()
    print("Throughput (all processes) and bytes sent per step (summed over processes, kB):")
    print(markdown_table(
        ["workload", "tables", "processes", "steps", "throughput", f"vs {base_world} process",
         "ids kB/step", "rows kB/step", "updates kB/step", "total kB/step"], table))  # fmt: skip
    if 1 in runs and "baselines" in runs[1]:
        base = runs[1]["baselines"]
        n2v = base["node2vec"]["pairs"] / base["node2vec"]["seconds"]
        poi = base["poincare"]["relations"] / base["poincare"]["seconds"]
        ours_n2v = (
            runs[1]["node2vec"]["sharded"]["pairs"] / runs[1]["node2vec"]["sharded"]["seconds"]
        )
        ours_poi = (runs[1]["poincare"]["sharded"]["relations"]
                    / runs[1]["poincare"]["sharded"]["seconds"])  # fmt: skip
        print()
        print("Single-process fused kernels (per-item SGD in C++, 1 thread), same work:")
        print(markdown_table(
            ["workload", "fused kernel", "synchronous steps, 1 process", "synchronous / fused"],
            [["BlogCatalog node2vec", f"{n2v:,.0f} pairs/s", f"{ours_n2v:,.0f} pairs/s",
              f"{ours_n2v / n2v:.2f}"],
             [runs[1]["hierarchy"] + " Poincare", f"{poi:,.0f} relations/s",
              f"{ours_poi:,.0f} relations/s", f"{ours_poi / poi:.2f}"]]))  # fmt: skip
    walk_rows = [[w, r["walks"], f"{r['walk_seconds']:.2f}",
                  f"{r['walks'] * cfg['walk_length'] / r['walk_seconds'] / 1e6:.2f}"]
                 for w, r in sorted(runs.items())]  # fmt: skip
    print()
    print("Distributed walks (BlogCatalog, p = q = 1; slowest process):")
    print(markdown_table(["processes", "walks", "seconds", "M steps/s"], walk_rows))
    write_json(args.json, "distributed", rows, {"config": cfg, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
