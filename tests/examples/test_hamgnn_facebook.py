import os

import pytest
import torch

from tests.examples.node_classification import FIXTURE, REAL, check_results

MODELS = {"HamGNN", "GCN", "MLP"}


@pytest.fixture
def example(load_example):
    # main() sets the torch thread count; give the test process its own back afterwards.
    threads = torch.get_num_threads()
    yield load_example("hamgnn_facebook")
    torch.set_num_threads(threads)


def test_smoke_on_fixture_graph(example, tmp_path, capsys):
    out = tmp_path / "hamgnn.json"
    argv = ["--smoke", "--no-progress", "--threads", "1", "--root", FIXTURE, "--json", str(out)]
    assert example.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| model | parameters | test accuracy (%)" in stdout
    rows = [line for line in stdout.splitlines() if line.startswith(("| HamGNN", "| GCN", "| MLP"))]
    assert len(rows) == 3
    check_results(out, MODELS, nodes=8)


@pytest.mark.skipif(not os.path.isdir(REAL), reason="shared MUSAE data not present")
def test_smoke_on_real_graph(example, tmp_path):
    out = tmp_path / "hamgnn.json"
    assert example.main(["--smoke", "--no-progress", "--threads", "1", "--json", str(out)]) == 0
    results = check_results(out, MODELS, nodes=example.SMOKE.max_nodes)
    assert results["config"]["epochs"] == example.SMOKE.epochs


def test_help_lists_the_options(example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--smoke", "--seed", "--json", "--no-progress", "--root"):
        assert option in text


def test_missing_data_is_a_clear_error(example, tmp_path):
    with pytest.raises(SystemExit, match="error"):
        example.main(["--smoke", "--no-progress", "--root", str(tmp_path / "nowhere")])
