import json

MODELS = ["PointNet", "PointNet + rotation aug.", "canonicalized PointNet"]
HEADER = "| model | accuracy upright | accuracy rotated | s / epoch | parameters |"


def test_smoke_run_prints_table_and_writes_json(tmp_path, run_example):
    out_json = tmp_path / "pointcloud.json"
    proc = run_example(
        "pointcloud_canonical",
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
    header = lines.index(HEADER)
    rows = lines[header + 2 : header + 5]
    assert [r.split(" | ")[0] for r in rows] == [f"| {m}" for m in MODELS]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        upright, rotated, seconds = (float(c) for c in cells[:3])
        assert 0.0 <= upright <= 100.0 and 0.0 <= rotated <= 100.0 and seconds >= 0.0
        assert int(cells[3].replace(",", "")) > 0
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout

    results = json.loads(out_json.read_text())
    assert set(results["models"]) == set(MODELS)
    assert len(results["classes"]) == 7
    assert results["config"]["epochs"] == 2
    assert results["data"] == {"train_shapes": 42, "test_shapes": 21, "num_points": 64}
    for model in results["models"].values():
        assert 0.0 <= model["accuracy_upright"] <= 1.0
        assert 0.0 <= model["accuracy_rotated"] <= 1.0
        assert model["parameters"] > 0 and model["seconds_per_epoch"] >= 0.0
    canon = results["models"]["canonicalized PointNet"]
    # Exactly invariant by construction: rotating the test shapes changes the logits only by
    # float32 rounding, and no prediction.
    assert canon["max_logit_change"] < 1e-3 and canon["prediction_changes"] == 0
    assert canon["accuracy_rotated"] == canon["accuracy_upright"]
    assert canon["parameters"] > results["models"]["PointNet"]["parameters"]


def test_help_lists_the_common_flags(run_example):
    proc = run_example("pointcloud_canonical", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads", "--epochs"):
        assert flag in proc.stdout


def test_bad_arguments_exit_with_message(run_example):
    proc = run_example("pointcloud_canonical", "--epochs", "-1", "--no-progress", timeout=60)
    assert proc.returncode != 0 and "--epochs" in proc.stderr
