import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "nw_domain_shift.py")


def test_smoke_run_prints_table_and_writes_json(tmp_path):
    out_json = tmp_path / "nw.json"
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--smoke",
            "--no-progress",
            "--threads",
            "1",
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.startswith("| head, support in training")
    )
    assert lines[header + 1] == "|---|---|---:|---:|---:|---:|"
    rows = lines[header + 2 : header + 8]
    assert [r.split(" | ")[0] for r in rows] == [
        "| linear",
        "| NW, any env",
        "| NW, any env",
        "| NW, same env",
        "| NW, same env",
        "| linear, grey images",
    ]
    for row in rows:
        cells = row.strip("|").split("|")[2:]
        for cell in cells:
            mean = float(cell.split("±")[0])
            assert 0.0 <= mean <= 100.0
    assert "command:" in proc.stdout and "torch threads 1" in proc.stdout
    assert "wall time" in proc.stdout
    results = json.loads(out_json.read_text())
    assert set(results["accuracy"]) == {
        "linear | full",
        "NW, any env | full",
        "NW, any env | cluster",
        "NW, same env | full",
        "NW, same env | cluster",
        "linear, grey images | full",
    }
    for acc in results["accuracy"].values():
        assert len(acc["mean"]) == 4 and all(0.0 <= a <= 1.0 for a in acc["mean"])


def test_help():
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0
    assert "--smoke" in proc.stdout and "--no-progress" in proc.stdout and "--seed" in proc.stdout
