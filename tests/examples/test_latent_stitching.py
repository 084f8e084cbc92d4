import json

import pytest


def test_smoke_run_prints_table_and_writes_json(tmp_path, capsys, load_example):
    out_json = tmp_path / "stitching.json"
    example = load_example("latent_stitching")
    assert (
        example.main(["--smoke", "--no-progress", "--threads", "1", "--json", str(out_json)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| latents"))
    assert lines[header + 1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert [r.split(" | ")[0] for r in lines[header + 2 : header + 4]] == [
        "| relative",
        "| absolute",
    ]
    assert any(line.startswith("command:") for line in lines)
    assert any("torch threads 1" in line for line in lines)
    assert any(line.startswith("wall time") for line in lines)

    results = json.loads(out_json.read_text())
    assert set(results["accuracy"]) == {"relative", "absolute"}
    for acc in results["accuracy"].values():
        assert set(acc) == {"A+A", "B+B", "A+B", "B+A"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert set(results["cross_similarity"]) == {"relative", "absolute"}
    assert set(results["models"]) == {"relative A", "relative B", "absolute A", "absolute B"}
    assert results["models"]["relative A"]["seed"] != results["models"]["relative B"]["seed"]
    assert results["split"] == {"train_images": 256, "test_images": 1000, "anchors": 32}
    assert results["config"]["epochs"] == 1 and results["wall_seconds"] > 0


def test_bad_arguments_exit(load_example):
    with pytest.raises(SystemExit):
        load_example("latent_stitching").main(["--smoke", "--anchors", "0"])


def test_help(run_example):
    proc = run_example("latent_stitching", "--help", timeout=60)
    assert proc.returncode == 0
    for flag in ("--smoke", "--no-progress", "--seed", "--epochs", "--json", "--threads"):
        assert flag in proc.stdout
