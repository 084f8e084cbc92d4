import json


def test_smoke_run_prints_table_and_writes_json(tmp_path, run_example):
    out_json = tmp_path / "nw.json"
    proc = run_example(
        "nw_domain_shift",
        "--smoke",
        "--no-progress",
        "--threads",
        "1",
        "--json",
        str(out_json),
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
