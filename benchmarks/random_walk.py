"""Random-walk throughput on BlogCatalog: geolayers vs PecanPy (and torch-cluster if installed).

Workload (full run, the node2vec paper's): BlogCatalog (10,312 nodes, 667,966 directed edges),
10 walks of 80 steps from every node (8.25M steps), at 1 and 2 threads, in one run:

* uniform walks (p = q = 1): ``geolayers.ops.random_walk`` vs PecanPy's ``FirstOrderUnweighted``;
* biased walks, (p, q) in {(0.25, 0.25), (4, 1)}: ours (rejection sampling, no preparation,
  O(E) memory) vs PecanPy's ``PreComp`` (alias tables of every (previous, current) pair, built
  first: its preparation time and memory are reported apart) and ``SparseOTF`` (probabilities
  on the fly; slow, so it walks 1 walk per node and its rate is scaled as steps/s);
* torch-cluster's ``random_walk`` when importable (``pip install --no-build-isolation
  torch-cluster``; a source build). Its biased walks are wrong (it accepts every proposal when
  q <= min(1, p), see DESIGN.md), so they are shown but marked.

PecanPy is timed on its numba walk loop (``_random_walks``, which returns an index matrix like
ours) after a warm-up call that compiles it, not on ``simulate_walks``, whose conversion of
every walk to a list of strings would only slow it down. Every entry is the median of repeats;
the ratio column is steps/s of ours over the baseline's at the same thread count.

Run: ``python -m benchmarks.random_walk [--data ../shared/data/node2vec] [--smoke] [--json P]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from benchmarks._harness import Row, machine_line, markdown_table, median_time, write_json
from geolayers.datasets.node2vec_graphs import load_node2vec_graph
from geolayers.graph import CSRGraph
from geolayers.ops import backend, random_walk

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "node2vec")
BIASED = [(0.25, 0.25), (4.0, 1.0)]


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with BlogCatalog.edg")
    parser.add_argument("--smoke", action="store_true", help="PPI, 1 walk of 10 steps per node")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    return parser.parse_args(argv)


def pecanpy_graph(cls, path: str, p: float, q: float):
    g = cls(p=p, q=q, workers=1, verbose=False, random_state=0)
    g.read_edg(path, weighted=False, directed=False)
    return g


def pecanpy_walker(g, walks_per_node: int, steps: int):
    """The numba walk loop of PecanPy's simulate_walks, without the mapping to strings."""
    from numba_progress import ProgressBar

    n = g.num_nodes
    start = np.concatenate([np.arange(n, dtype=np.uint32)] * walks_per_node)
    np.random.default_rng(0).shuffle(start)  # PecanPy shuffles its start nodes too
    move_forward, has_nbrs = g.get_move_forward(), g.get_has_nbrs()

    def run():
        with ProgressBar(total=start.size, disable=True) as progress:
            return g._random_walks(start.size, steps, 0, start, has_nbrs, move_forward, progress)

    return run, start.size * steps


def main(argv=None) -> int:
    args = parse(argv)
    name = "PPI" if args.smoke else "BlogCatalog"
    walks_per_node, steps = (1, 10) if args.smoke else (10, 80)
    repeats = args.repeats or (1 if args.smoke else 5)
    threads_list = (1,) if args.smoke else (1, 2)
    path = os.path.join(args.data, f"{name}.edg")

    t0 = time.perf_counter()
    data = load_node2vec_graph(name, args.data)
    graph = CSRGraph.from_edge_index(data.edge_index, data.num_nodes)
    load_s = time.perf_counter() - t0
    n = graph.num_nodes
    start = torch.arange(n).repeat(walks_per_node)
    total_steps = start.numel() * steps
    csr_mb = (graph.rowptr.nbytes + graph.col.nbytes) / 2**20
    print(
        f"# Random walks on {name}: {n:,} nodes, {graph.num_edges:,} directed edges, "
        f"{walks_per_node} walks x {steps} steps per node ({total_steps / 1e6:.2f}M steps)"
    )
    print(f"# {machine_line()}; geolayers random_walk backend: {backend()['random_walk']}")
    print(f"# ours: load + CSR {load_s:.2f} s, graph memory {csr_mb:.1f} MB, no preparation step")

    try:
        import numba
        import pecanpy.pecanpy as pp
    except ImportError:  # pragma: no cover - bench extra missing
        pp = None
        print("# PecanPy not installed (pip install pecanpy): its rows are skipped")
    try:
        import torch_cluster  # noqa: F401

        cluster = torch.ops.torch_cluster.random_walk
    except (ImportError, AttributeError):
        cluster = None
        print("# torch-cluster not installed (a source build): its rows are skipped")

    rows: list[Row] = []
    table = []
    prep = {}
    for p, q in [(1.0, 1.0), *BIASED]:
        baselines = {}
        if pp is not None:
            if p == q == 1.0:
                baselines["PecanPy FirstOrderUnweighted"] = (
                    pecanpy_graph(pp.FirstOrderUnweighted, path, p, q),
                    walks_per_node,
                )
            else:
                g = pecanpy_graph(pp.PreComp, path, p, q)
                numba.set_num_threads(max(threads_list))
                t = time.perf_counter()
                g.preprocess_transition_probs()
                g._preprocessed = True
                prep[(p, q)] = (
                    time.perf_counter() - t,
                    (g.alias_j.nbytes + g.alias_q.nbytes) / 2**20,
                )
                baselines["PecanPy PreComp"] = (g, walks_per_node)
                # SparseOTF computes every transition on the fly: one walk per node is enough.
                baselines["PecanPy SparseOTF"] = (pecanpy_graph(pp.SparseOTF, path, p, q), 1)
        for threads in threads_list:
            torch.set_num_threads(threads)

            def ours(p=p, q=q):
                return random_walk(graph.rowptr, graph.col, start, steps, p=p, q=q, seed=1)

            rate = total_steps / median_time(ours, repeats)
            row = Row({"p": p, "q": q, "threads": threads}, {"geolayers": total_steps / rate})
            table.append(
                [f"{p:g}", f"{q:g}", threads, "geolayers", f"{rate / 1e6:.1f}", "1.00", ""]
            )
            entries = []
            if pp is not None:
                numba.set_num_threads(threads)
                for label, (g, wpn) in baselines.items():
                    run, steps_done = pecanpy_walker(g, wpn, steps)
                    reps = 1 if "SparseOTF" in label else repeats
                    entries.append((label, steps_done / median_time(run, reps), ""))
            if cluster is not None:

                def tc(p=p, q=q):
                    return cluster(graph.rowptr, graph.col, start, steps, p, q)

                note = "" if p == q == 1.0 else "WRONG distribution"
                entries.append(("torch-cluster", total_steps / median_time(tc, repeats), note))
            for label, other, note in entries:
                row.extra[label] = other
                table.append([f"{p:g}", f"{q:g}", threads, label, f"{other / 1e6:.2f}",
                              f"{rate / other:.2f}", note])  # fmt: skip
            rows.append(row)
    print()
    print(markdown_table(
        ["p", "q", "threads", "implementation", "M steps/s", "ours / this", "note"], table
    ))  # fmt: skip
    if prep:
        print()
        print(markdown_table(
            ["p", "q", "PecanPy PreComp preparation (s)", "its alias tables (MB)",
             "ours: preparation", "ours: graph (MB)"],
            [[f"{p:g}", f"{q:g}", f"{s:.1f}", f"{mb:,.0f}", "none", f"{csr_mb:.1f}"]
             for (p, q), (s, mb) in prep.items()],
        ))  # fmt: skip
    write_json(
        args.json,
        "random_walk",
        rows,
        {"graph": name, "steps": total_steps, "prep": {f"{k}": v for k, v in prep.items()}},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
