import json

import pytest
import torch

from tests.examples.node_classification import FIXTURE


@pytest.fixture
def example(load_example):
    threads = torch.get_num_threads()
    yield load_example("musae_facebook")
    torch.set_num_threads(threads)


def test_smoke_on_fixture_graph(example, tmp_path, capsys):
    out = tmp_path / "musae.json"
    argv = ["--smoke", "--no-progress", "--root", FIXTURE, "--json", str(out)]
    assert example.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| embedding | width | micro-F1 (%) | macro-F1 (%) | embedding time (s) |" in stdout
    results = json.loads(out.read_text())
    assert set(results["methods"]) == {"node2vec", "MUSAE", "AE"}
    for r in results["methods"].values():
        assert 0.0 <= r["micro_f1"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert r["width"] == example.SMOKE.order * example.SMOKE.dim
    assert results["nodes"] == 8


def test_rejects_bad_flags(example):
    with pytest.raises(SystemExit):
        example.main(["--order", "0"])
