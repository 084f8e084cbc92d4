"""node2vec end to end: geolayers vs PecanPy + gensim Word2Vec, time by stage and quality.

Workload (full run, PecanPy's benchmark settings): d = 128, 10 walks of 80 steps per node,
window 10, 1 epoch, 2 threads, for (p, q) = (1, 1) and (0.25, 0.25), on BlogCatalog, PPI and
Wikipedia (weighted), in one run:

* geolayers: ``load_node2vec_graph`` + ``CSRGraph``, ``random_walks`` (exact rejection
  sampling, no preparation), ``train_skipgram`` (fused SGNS kernel with gensim's defaults:
  5 negatives, subsampling 1e-3, learning rate 0.025 -> 1e-4);
* PecanPy + gensim, as ``pecanpy --mode ...`` runs it: ``read_edg``, preparation (``PreComp``
  alias tables for biased or weighted walks, none for ``FirstOrderUnweighted``),
  ``simulate_walks``, then ``gensim.models.Word2Vec(walks, vector_size=128, window=10,
  min_count=0, sg=1, workers=2, epochs=1)``.

Quality of both embeddings, same protocols and splits: PecanPy's (per class with >= 10
positives, 5-fold stratified CV auROC of L2 logistic regression, mean over classes;
:func:`geolayers.metrics.class_auroc`) and node2vec's (Macro-/Micro-F1 at 50% training, one-vs-rest
L2 logistic regression, top-k prediction, mean of 10 splits; :func:`geolayers.metrics.multilabel_f1`),
the latter with scikit-learn's default C = 1 and, on BlogCatalog, with C chosen in each split by
3-fold cross-validation on its training nodes from ``C_GRID`` after L2-normalising the rows (the
node2vec paper does not give its C; the test nodes never take part in the choice).
On BlogCatalog, geolayers is also trained for ``--more-epochs`` (3) passes over the same walks,
to show what the time it saves buys in quality. Times are single runs (each stage is seconds to a minute long; the two pipelines run back to
back on the same machine). Run: ``python -m benchmarks.node2vec [--data ../shared/data/node2vec]
[--graphs BlogCatalog PPI Wikipedia] [--smoke] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from benchmarks._harness import Row, machine_line, markdown_table, write_json
from geolayers.datasets.node2vec_graphs import load_node2vec_graph
from geolayers.graph import CSRGraph, random_walks, train_skipgram
from geolayers.metrics.node_embedding import class_auroc, multilabel_f1

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "node2vec")
SETTINGS = [(1.0, 1.0), (0.25, 0.25)]


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="folder with NAME.edg, NAME.labels.tsv"
    )
    parser.add_argument("--graphs", nargs="+", default=["BlogCatalog", "PPI", "Wikipedia"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--more-epochs",
        type=int,
        default=3,
        help="also train geolayers for this many epochs on BlogCatalog (0: skip that row)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="PPI, p = q = 1, 1 walk of 10 steps, d = 16, 4 classes"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def ours(name: str, root: str, p: float, q: float, cfg: dict, threads: int, epochs: int = 1):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = load_node2vec_graph(name, root)
    graph = CSRGraph.from_edge_index(data.edge_index, data.num_nodes, data.edge_weight)
    t1 = time.perf_counter()
    walks = random_walks(graph, cfg["steps"], cfg["walks"], p=p, q=q, seed=0, progress=False)
    t2 = time.perf_counter()
    result = train_skipgram(
        walks, graph.num_nodes, cfg["dim"], window=cfg["window"], epochs=epochs, seed=0,
        threads=threads, progress=False,
    )  # fmt: skip
    t3 = time.perf_counter()
    times = {"load": t1 - t0, "prepare": 0.0, "walks": t2 - t1, "train": t3 - t2}
    return result.input, times, data


def pecanpy_gensim(name: str, root: str, p: float, q: float, cfg: dict, threads: int, data):
    import numba
    import pecanpy.pecanpy as pp
    from gensim.models import Word2Vec

    numba.set_num_threads(threads)
    weighted = data.edge_weight is not None
    cls = pp.FirstOrderUnweighted if (p == q == 1.0 and not weighted) else pp.PreComp
    t0 = time.perf_counter()
    g = cls(p=p, q=q, workers=threads, verbose=False, random_state=0)
    g.read_edg(os.path.join(root, f"{name}.edg"), weighted=weighted, directed=False)
    t1 = time.perf_counter()
    g.preprocess_transition_probs()
    g._preprocessed = True
    t2 = time.perf_counter()
    # numba compiles PecanPy's walk loop for each graph object on its first call; a 1-step
    # warm-up compiles it outside the timed walks (reported apart, not in the total).
    g.simulate_walks(1, 1)
    t_jit = time.perf_counter()
    walks = g.simulate_walks(cfg["walks"], cfg["steps"])
    t3 = time.perf_counter()
    w2v = Word2Vec(
        walks, vector_size=cfg["dim"], window=cfg["window"], min_count=0, sg=1,
        workers=threads, epochs=1, seed=0,
    )  # fmt: skip
    t4 = time.perf_counter()
    # PecanPy numbers nodes in order of appearance; put its vectors in our node order.
    emb = np.zeros((data.num_nodes, cfg["dim"]), dtype=np.float32)
    ids = {int(i): k for k, i in enumerate(data.node_ids.tolist())}
    for node in g.nodes:
        emb[ids[int(node)]] = w2v.wv[node]
    times = {"load": t1 - t0, "prepare": t2 - t1, "walks": t3 - t_jit, "train": t4 - t3}
    return torch.from_numpy(emb), times, t_jit - t2


#: Candidates of the logistic regressions' C for the cross-validated F1 column.
C_GRID = (0.1, 1.0, 10.0, 100.0)


def quality(
    emb: torch.Tensor, labels: torch.Tensor, smoke: bool, tuned: bool = False
) -> dict[str, float]:
    """Both protocols; with ``tuned``, also node2vec's F1 with C chosen per split by 3-fold
    cross-validation on the training nodes from :data:`C_GRID`, embedding rows L2-normalised."""
    if smoke:  # the four largest classes only: the protocols' code path in seconds
        labels = labels[:, labels.sum(0).argsort(descending=True)[:4]]
    repeats = 2 if smoke else 10
    auc = class_auroc(emb, labels, seed=0, progress=False)
    f1 = multilabel_f1(emb, labels, train_fraction=0.5, repeats=repeats, seed=0, progress=False)
    out = {"auroc": auc.mean_auroc, "macro_f1": f1.macro_f1, "micro_f1": f1.micro_f1}
    if tuned:
        cv = multilabel_f1(
            emb, labels, train_fraction=0.5, repeats=repeats, seed=0, C=C_GRID, normalize=True,
            progress=False,
        )  # fmt: skip
        out.update(macro_f1_cv=cv.macro_f1, micro_f1_cv=cv.micro_f1, chosen_c=list(cv.chosen_c))
    return out


def _cv_cells(qq: dict) -> list[str]:
    if "macro_f1_cv" not in qq:
        return ["-", "-", "-"]
    chosen = sorted(set(qq["chosen_c"]))
    return [
        f"{qq['macro_f1_cv']:.4f}",
        f"{qq['micro_f1_cv']:.4f}",
        "/".join(f"{c:g}" for c in chosen),
    ]


def main(argv=None) -> int:
    args = parse(argv)
    if args.smoke:
        graphs, cfg = ["PPI"], {"dim": 16, "walks": 1, "steps": 10, "window": 5}
    else:
        graphs, cfg = args.graphs, {"dim": 128, "walks": 10, "steps": 80, "window": 10}
    print(f"# node2vec: d={cfg['dim']}, {cfg['walks']} walks x {cfg['steps']} steps per node, "
          f"window {cfg['window']}, 1 epoch, {args.threads} threads")  # fmt: skip
    print(f"# {machine_line()}")
    rows, table_time, table_quality = [], [], []
    for name in graphs:
        for p, q in SETTINGS[:1] if args.smoke else SETTINGS:
            emb, t_ours, data = ours(name, args.data, p, q, cfg, args.threads)
            emb_ref, t_ref, jit = pecanpy_gensim(name, args.data, p, q, cfg, args.threads, data)
            # The cross-validated F1 (13 fits per split) on BlogCatalog, the target graph.
            tuned = name == "BlogCatalog" or args.smoke
            q_ours = quality(emb, data.labels, args.smoke, tuned)
            q_ref = quality(emb_ref, data.labels, args.smoke, tuned)
            total, total_ref = sum(t_ours.values()), sum(t_ref.values())
            pipelines = [("geolayers", t_ours, q_ours), ("PecanPy + gensim", t_ref, q_ref)]
            if name == "BlogCatalog" and args.more_epochs > 1 and not args.smoke:
                # Same settings, more passes: what the time saved buys in quality.
                emb_more, t_more, _ = ours(
                    name, args.data, p, q, cfg, args.threads, args.more_epochs
                )
                q_more = quality(emb_more, data.labels, args.smoke, tuned)
                pipelines.append((f"geolayers, {args.more_epochs} epochs", t_more, q_more))
            for label, t, qq in pipelines:
                total_t = sum(t.values())
                table_time.append([name, f"{p:g}", f"{q:g}", label]
                                  + [f"{t[k]:.2f}" for k in ("load", "prepare", "walks", "train")]
                                  + [f"{total_t:.2f}", f"{total_t / total_ref:.2f}",
                                     f"{jit:.1f}" if t is t_ref else ""])  # fmt: skip
                table_quality.append([name, f"{p:g}", f"{q:g}", label, f"{qq['auroc']:.4f}",
                                      f"{qq['macro_f1']:.4f}", f"{qq['micro_f1']:.4f}"]
                                     + _cv_cells(qq))  # fmt: skip
            rows.append(Row({"graph": name, "p": p, "q": q},
                            {"geolayers": total, "pecanpy_gensim": total_ref},
                            {"stages": {"geolayers": t_ours, "pecanpy_gensim": t_ref},
                             "quality": {"geolayers": q_ours, "pecanpy_gensim": q_ref}}))  # fmt: skip
            print(f"# {name} p={p:g} q={q:g}: {total:.1f} s vs {total_ref:.1f} s; auROC "
                  f"{q_ours['auroc']:.4f} vs {q_ref['auroc']:.4f}", flush=True)  # fmt: skip
    print()
    print("Time (s) by stage, and total relative to PecanPy + gensim:")
    print(markdown_table(["graph", "p", "q", "pipeline", "load", "prepare", "walks", "train",
                          "total", "total / PecanPy+gensim", "numba JIT (not in total)"],
                         table_time))  # fmt: skip
    print()
    print(
        "Quality: mean auROC (PecanPy protocol), Macro-/Micro-F1 at 50% training (node2vec "
        "protocol) with C = 1, and with C chosen per split by 3-fold CV on the training nodes "
        f"from {C_GRID}, rows L2-normalised (BlogCatalog):"
    )
    header = ["graph", "p", "q", "pipeline", "auROC", "Macro-F1", "Micro-F1", "Macro-F1 (CV C)",
              "Micro-F1 (CV C)", "chosen C"]  # fmt: skip
    print(markdown_table(header, table_quality))
    write_json(args.json, "node2vec", rows, {"config": cfg, "threads": args.threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
