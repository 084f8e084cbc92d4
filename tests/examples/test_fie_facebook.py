import os

import pytest
import torch

from tests.examples.node_classification import FIXTURE, REAL, check_results

MODELS = {"FIE", "GAT"}


@pytest.fixture
def example(load_example):
    # main() sets the torch thread count; give the test process its own back afterwards.
    threads = torch.get_num_threads()
    yield load_example("fie_facebook")
    torch.set_num_threads(threads)


def check_fie_results(path, nodes):
    results = check_results(path, MODELS, nodes=nodes)
    for r in results["models"].values():
        # One label per node: micro-F1 is the accuracy.
        assert r["test_micro_f1"] == pytest.approx(r["test"], abs=1e-6)
    fie, gat = results["models"]["FIE"]["parameters"], results["models"]["GAT"]["parameters"]
    assert abs(fie - gat) <= 0.25 * fie  # "a GAT of similar size"
    return results


def test_smoke_on_fixture_graph(example, tmp_path, capsys):
    out = tmp_path / "fie.json"
    argv = ["--smoke", "--no-progress", "--threads", "1", "--root", FIXTURE, "--json", str(out)]
    assert example.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| model | parameters | test accuracy (%) | test micro-F1 (%)" in stdout
    rows = [line for line in stdout.splitlines() if line.startswith(("| FIE", "| GAT"))]
    assert len(rows) == 2
    assert "torch threads 1" in stdout and "wall time" in stdout
    check_fie_results(out, nodes=8)


@pytest.mark.skipif(not os.path.isdir(REAL), reason="shared MUSAE data not present")
def test_smoke_on_real_graph(example, tmp_path):
    out = tmp_path / "fie.json"
    argv = ["--smoke", "--no-progress", "--threads", "1", "--no-kmeans-init", "--json", str(out)]
    assert example.main(argv) == 0
    results = check_fie_results(out, nodes=example.SMOKE.max_nodes)
    assert results["config"]["epochs"] == example.SMOKE.epochs
    assert results["config"]["kmeans_init"] is False


def test_kmeans_initialisation_sets_unit_means(example):
    cfg = example.SMOKE
    model = example.FIENet(6, cfg, 4)
    x, edge_index = torch.randn(12, 6), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    model.init_means(x, edge_index, seed=0)
    for fie in model.fie:
        torch.testing.assert_close(fie.means.norm(dim=-1), torch.ones(1, cfg.mixtures))
    assert model(x, edge_index).shape == (12, 4)


def test_help_lists_the_options(run_example):
    proc = run_example("fie_facebook", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--smoke", "--seed", "--json", "--no-progress", "--root", "--mixtures"):
        assert option in proc.stdout


def test_bad_arguments_and_missing_data_are_clear_errors(example, tmp_path):
    with pytest.raises(SystemExit, match="error"):
        example.main(["--smoke", "--no-progress", "--root", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="--mixtures must be >= 1"):
        example.main(["--smoke", "--no-progress", "--mixtures", "0"])
    with pytest.raises(SystemExit, match="--layers must be >= 1"):
        example.main(["--smoke", "--no-progress", "--layers", "0"])
