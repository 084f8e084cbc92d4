import json

MODELS = ["MLP", "MLP + soft", "hard S5", "hard flip"]


def test_smoke_run_prints_tables_and_writes_json(tmp_path, run_example):
    out_json = tmp_path / "soft.json"
    proc = run_example(
        "soft_equivariance",
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
    header = lines.index("| model | test MSE | permutation error | sign-flip error |")
    rows = lines[header + 2 : header + 6]
    assert [r.split(" | ")[0] for r in rows] == [f"| {m}" for m in MODELS]
    strengths = lines.index(
        "| candidate | symmetry of y | learned strength | R_j (MLP + soft) | R_j (MLP) "
        "| largest strength in |"
    )
    assert lines[strengths + 2].startswith("| S5 | exact |")
    assert lines[strengths + 3].startswith("| flip | approximate |")
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout

    results = json.loads(out_json.read_text())
    assert results["candidates"] == ["S5", "flip"] and results["exact"] == "S5"
    assert results["config"]["steps"] == 30 and results["config"]["seeds"] == 1
    summary = results["summary"]["models"]
    assert set(summary) == set(MODELS)
    for m in summary.values():
        assert m["test_mse"]["mean"] >= 0.0
    # The hard models are exactly invariant to their own group (float32 rounding only).
    assert summary["hard S5"]["perm_error"]["mean"] < 1e-5
    assert summary["hard flip"]["flip_error"]["mean"] < 1e-5
    soft = results["per_seed"][0]["models"]["MLP + soft"]
    assert set(soft["strengths"]) == {"S5", "flip"}
    assert all(v > 0 for v in soft["strengths"].values())


def test_help_lists_the_common_flags(run_example):
    proc = run_example("soft_equivariance", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads", "--seeds"):
        assert flag in proc.stdout


def test_bad_arguments_exit_with_message(run_example):
    proc = run_example("soft_equivariance", "--steps", "-1", "--no-progress", timeout=60)
    assert proc.returncode != 0 and "--steps" in proc.stderr
