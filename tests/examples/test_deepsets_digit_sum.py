import json


def test_smoke_run_prints_table_and_writes_json(tmp_path, run_example):
    out_json = tmp_path / "digit_sum.json"
    proc = run_example(
        "deepsets_digit_sum",
        "--smoke",
        "--no-progress",
        "--threads",
        "1",
        "--json",
        str(out_json),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines.index(
        "| set size | DeepSets MAE | GRU MAE | DeepSets MAE / size | GRU MAE / size |"
    )
    rows = lines[header + 2 : header + 6]
    assert [r.split(" | ")[0] for r in rows] == ["| 5", "| 10", "| 50 *", "| 100 *"]
    for row in rows:
        maes = [float(c) for c in row.strip("|").split("|")[1:]]
        assert all(m >= 0.0 for m in maes)
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout

    results = json.loads(out_json.read_text())
    assert set(results["models"]) == {"DeepSets", "GRU"}
    for model in results["models"].values():
        assert set(model["mae"]) == {"5", "10", "50", "100"}
        assert model["parameters"] > 0
    assert results["split"] == {"train_images": 4000, "test_images": 1000}
    assert results["config"]["steps"] == 30


def test_bad_arguments_exit_with_message(run_example):
    proc = run_example("deepsets_digit_sum", "--steps", "-1", "--no-progress", timeout=60)
    assert proc.returncode != 0 and "--steps" in proc.stderr
