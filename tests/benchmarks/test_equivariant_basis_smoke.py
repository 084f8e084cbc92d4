"""The equivariant-basis benchmark runs end to end in --smoke mode (the README figures come from
the full run)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def test_equivariant_basis_smoke(tmp_path):
    stdout, results = run_benchmark("equivariant_basis", tmp_path)
    assert "| layer | geolayers basis (ms) | geolayers EquivariantLinear (ms) |" in stdout
    assert "| layer | route | weights | EquivariantLinear (ms) | nn.Linear (ms) |" in stdout
    assert "not available" in stdout  # S_10: escnn has no symmetric group
    rows = {r["config"]["case"]: r for r in results["rows"]}
    assert set(rows) == {"so3", "d8", "s10", "fb_so3x16", "fb_s10", "fb_d8x16"}
    for case in ("so3", "d8", "s10"):
        row = rows[case]
        assert row["seconds"]["geolayers basis"] > 0
        assert row["seconds"]["geolayers EquivariantLinear"] > 0
        assert row["extra"]["equivariance_error"] < 1e-9
    for case in ("so3", "d8"):  # the same space of maps as escnn's layer, when escnn is here
        params = rows[case]["extra"]["params"]
        assert params.get("escnn", params["geolayers"]) == params["geolayers"]
    assert "escnn" not in rows["s10"]["extra"]["params"]
    assert rows["fb_so3x16"]["extra"]["route"] == "dense basis"
    assert rows["fb_d8x16"]["extra"]["route"] == "sharing"
    assert all(rows[c]["extra"]["ratio"] > 0 for c in ("fb_so3x16", "fb_s10", "fb_d8x16"))
