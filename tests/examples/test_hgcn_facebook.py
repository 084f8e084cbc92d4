import os

import pytest
import torch

from tests.examples.node_classification import FIXTURE, REAL, check_results

MODELS = {"HGCN", "HGCN-mean", "GCN"}


@pytest.fixture
def example(load_example):
    # main() sets the torch thread count; give the test process its own back afterwards.
    threads = torch.get_num_threads()
    yield load_example("hgcn_facebook")
    torch.set_num_threads(threads)


def test_smoke_on_fixture_graph(example, tmp_path, capsys):
    out = tmp_path / "hgcn.json"
    argv = ["--smoke", "--no-progress", "--threads", "1", "--root", FIXTURE, "--json", str(out)]
    assert example.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| model | parameters | test accuracy (%)" in stdout
    rows = [line for line in stdout.splitlines() if line.startswith(("| HGCN", "| GCN"))]
    assert len(rows) == 3
    assert "torch threads 1" in stdout and "wall time" in stdout
    check_results(out, MODELS, nodes=8)


@pytest.mark.skipif(not os.path.isdir(REAL), reason="shared MUSAE data not present")
def test_smoke_on_real_graph(example, tmp_path):
    out = tmp_path / "hgcn.json"
    assert example.main(["--smoke", "--no-progress", "--threads", "1", "--json", str(out)]) == 0
    results = check_results(out, MODELS, nodes=example.SMOKE.max_nodes)
    assert results["config"]["epochs"] == example.SMOKE.epochs
    assert results["config"]["curvature"] == 1.0


def test_help_lists_the_options(run_example):
    proc = run_example("hgcn_facebook", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--smoke", "--seed", "--json", "--no-progress", "--root", "--curvature"):
        assert option in proc.stdout


def test_bad_arguments_and_missing_data_are_clear_errors(example, tmp_path):
    with pytest.raises(SystemExit, match="error"):
        example.main(["--smoke", "--no-progress", "--root", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="--curvature must be > 0"):
        example.main(["--smoke", "--no-progress", "--curvature", "0"])
