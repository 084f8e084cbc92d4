"""The distributed examples run in --smoke mode on one process (plain ``python``) and on two
(``torchrun``), so they never rot; each run has a timeout and stops by itself."""

import json
import os
import subprocess
import sys

import pytest
import torch

from geolayers.distributed import load_sharded_into_single

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)


def run(name, *args, processes=1, timeout=90):
    script = os.path.join(EXAMPLES, f"{name}.py")
    if processes == 1:
        cmd = [sys.executable, script, *args]
    else:
        # torchrun; --standalone: a private rendezvous on a free port (tests run side by side).
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(processes), script, *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_node2vec_example_on_one_process(tmp_path):
    out = tmp_path / "n2v.json"
    proc = run("node2vec_distributed", "--smoke", "--no-progress", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| processes | mode | walks (s) | train (s) | pairs/s |" in proc.stdout
    results = json.loads(out.read_text())
    assert results["processes"] == 1 and results["mode"] == "sharded"
    assert results["auroc"] > 0.9  # four planted communities are easy to tell apart
    assert results["bytes_per_step"] == 0


def test_node2vec_example_under_torchrun_on_two_processes(tmp_path):
    out, prefix = tmp_path / "n2v.json", tmp_path / "ckpt" / "emb"
    proc = run(
        "node2vec_distributed", "--smoke", "--no-progress", "--json", str(out),
        "--checkpoint", str(prefix), processes=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| processes | mode |") == 1  # only rank 0 prints
    results = json.loads(out.read_text())
    assert results["processes"] == 2 and results["auroc"] > 0.9
    assert results["bytes_per_step"] > 0
    table = load_sharded_into_single(prefix)
    assert table.shape == (results["nodes"], 16) and bool(torch.isfinite(table).all())


def test_poincare_example_on_one_and_two_processes_agree(tmp_path):
    # One process with batches of 10, two with 5 each: the same global batches, so the same
    # training (up to rounding) and the same reconstruction scores.
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    proc = run("poincare_distributed", "--smoke", "--no-progress", "--json", str(one))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| epoch | train+eval time (s) | loss | MAP | mean rank |" in proc.stdout
    proc = run(
        "poincare_distributed", "--smoke", "--no-progress", "--json", str(two),
        "--batch-size", "5", "--mode", "replicated", processes=2,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["processes"] == 1 and b["processes"] == 2
    assert 0.5 < a["map"] <= 1
    assert b["map"] == pytest.approx(a["map"], abs=1e-9)
    assert b["mean_rank"] == pytest.approx(a["mean_rank"], abs=1e-9)
    assert b["bytes_per_step"] > 0 == a["bytes_per_step"]
