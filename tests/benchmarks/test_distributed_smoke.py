"""The distributed benchmark runs end to end in --smoke mode (1 and 2 processes), so the
command behind its table does not rot; the figures come from the full run."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data", "node2vec", "BlogCatalog.edg")


@pytest.mark.skipif(not os.path.exists(DATA), reason="BlogCatalog data not found")
@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)
def test_distributed_smoke(tmp_path):
    out = tmp_path / "distributed.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.distributed", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| workload | tables | processes | steps | throughput |" in proc.stdout
    assert "| workload | fused kernel | synchronous steps, 1 process |" in proc.stdout
    results = json.loads(out.read_text())
    rows = {(r["config"]["task"], r["config"]["mode"], r["config"]["processes"]): r
            for r in results["rows"]}  # fmt: skip
    assert len(rows) == 8
    for (_task, mode, processes), row in rows.items():
        assert row["extra"]["rate"] > 0
        sent = row["extra"]["bytes_per_step"]
        if processes == 1:
            assert sent["total_bytes"] == 0  # one process sends nothing
        else:
            assert sent["total_bytes"] > 0 and sent["ids_bytes"] > 0
            # Sharded tables send rows back from their owners; replicated ones never do.
            assert (sent["rows_bytes"] > 0) == (mode == "sharded")
