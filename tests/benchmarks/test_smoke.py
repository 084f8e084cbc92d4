"""Every benchmark runs end to end in its --smoke mode, so the commands behind the README
tables do not rot; the figures themselves come from the full runs."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE2VEC_DATA = os.path.join(ROOT, "..", "shared", "data", "node2vec")
needs_node2vec_data = pytest.mark.skipif(
    not os.path.isdir(NODE2VEC_DATA),
    reason="the node2vec graphs (../shared/data/node2vec) are missing",
)


def run_benchmark(name, tmp_path):
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def test_segment_reduce_smoke(tmp_path):
    stdout, results = run_benchmark("segment_reduce", tmp_path)
    assert "| reduce | threads |" in stdout
    assert {r["config"]["threads"] for r in results["rows"]} == {1, 2}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory needs /proc")
def test_hyperbolic_ops_smoke(tmp_path):
    stdout, results = run_benchmark("hyperbolic_ops", tmp_path)
    assert "| D | threads | geolayers (ms) | geoopt (ms) | matmul (ms) |" in stdout
    for row in results["rows"]:
        assert set(row["seconds"]) == {"geolayers", "geoopt", "matmul"}
        assert all(v > 0 for v in row["seconds"].values())
        assert all(v is not None and v >= 0 for v in row["extra"]["peak_bytes"].values())
    # The precision table: the fused op passes everywhere; the matrix-product form fails on
    # nearby points near the boundary, in both dtypes.
    precision = results["meta"]["precision"]
    assert all("(pass)" in row[2] for row in precision)
    assert [row[4].endswith("(FAIL)") for row in precision] == [True, False, True, False]


def test_poincare_smoke(tmp_path):
    out = tmp_path / "poincare.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.poincare", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| implementation | threads | relations / s |" in proc.stdout
    results = json.loads(out.read_text())
    names = [row[0] for row in results["throughput"]]
    assert names[:3] == ["geolayers fused", "geolayers fused", "autograd + geoopt"]
    assert results["quality"][0]["hierarchy"] == "tree"


@needs_node2vec_data
def test_random_walk_smoke(tmp_path):
    stdout, results = run_benchmark("random_walk", tmp_path)
    assert "| p | q | threads | implementation | M steps/s | ours / this | note |" in stdout
    assert {(r["config"]["p"], r["config"]["q"]) for r in results["rows"]} == {
        (1.0, 1.0),
        (0.25, 0.25),
        (4.0, 1.0),
    }
    assert all(r["seconds"]["geolayers"] > 0 for r in results["rows"])


@needs_node2vec_data
def test_node2vec_smoke(tmp_path):
    stdout, results = run_benchmark("node2vec", tmp_path)
    assert (
        "| auROC | Macro-F1 | Micro-F1 | Macro-F1 (CV C) | Micro-F1 (CV C) | chosen C |" in stdout
    )
    (row,) = results["rows"]
    for pipeline in ("geolayers", "pecanpy_gensim"):
        assert 0.0 <= row["extra"]["quality"][pipeline]["auroc"] <= 1.0
        assert 0.0 <= row["extra"]["quality"][pipeline]["macro_f1_cv"] <= 1.0
        assert set(row["extra"]["quality"][pipeline]["chosen_c"]) <= {0.1, 1.0, 10.0, 100.0}
        assert row["seconds"][pipeline] > 0


def test_poincare_ranks_smoke(tmp_path):
    stdout, results = run_benchmark("poincare_ranks", tmp_path)
    assert "| query nodes | nodes | relations | mean rank |" in stdout
    rows = {row[0]: row for row in results["rows"]}
    # The smoke hierarchy gives 25 nodes a second parent; the parts partition the relations.
    assert rows["several parents"][1] == "25"
    count = {name: int(row[2].replace(",", "")) for name, row in rows.items()}
    assert count["all nodes"] == count["one chain of ancestors"] + count["several parents"]
    assert sum(int(row[5]) for name, row in rows.items() if name != "all nodes") in (99, 100, 101)


def test_single_chain_nodes_matches_the_definition():
    from benchmarks.poincare import tree_closure
    from benchmarks.poincare_ranks import single_chain_nodes

    n = 40
    edges = torch.cat([tree_closure(n), torch.tensor([[25, 2], [30, 3], [20, 1], [7, 0]])])
    ancestors = [set() for _ in range(n)]
    for u, a in edges.tolist():
        ancestors[u].add(a)
    chain = []
    for u in range(n):
        # Totally ordered: of any two ancestors, one is an ancestor of the other.
        chain.append(
            all(
                a in ancestors[b] or b in ancestors[a]
                for a in ancestors[u]
                for b in ancestors[u]
                if a != b
            )
        )
    assert single_chain_nodes(edges, n).tolist() == chain
    assert not all(chain)
