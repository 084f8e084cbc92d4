"""What the tests of the Facebook node-classification examples share: data locations and the
check of the JSON results every such example writes."""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "datasets", "fixtures", "musae")
REAL = os.path.join(ROOT, "..", "shared", "data", "musae")


def check_results(path, models, nodes=None):
    """The results at ``path`` list exactly ``models``, with valid accuracies and a split that
    covers every node once; returns them."""
    results = json.loads(path.read_text())
    assert set(results["models"]) == set(models)
    for r in results["models"].values():
        for key in ("train", "val", "test"):
            assert 0.0 <= r[key] <= 1.0
        assert r["parameters"] > 0 and r["train_seconds"] >= 0 and r["epoch"] >= 1
    sizes = results["sizes"]
    assert sizes["train"] + sizes["val"] + sizes["test"] == sizes["nodes"]
    if nodes is not None:
        assert sizes["nodes"] == nodes
    assert results["config"]["seed"] == 0 and "command" in results
    return results
