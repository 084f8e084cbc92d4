import json

import pytest
import torch


def test_smoke_run_prints_table_writes_json_and_picture(tmp_path, run_example):
    out_json, out_png = tmp_path / "od.json", tmp_path / "od.png"
    proc = run_example(
        "object_discovery",
        "--model",
        "isa-tsr",
        "--smoke",
        "--no-progress",
        "--threads",
        "1",
        "--json",
        str(out_json),
        "--png",
        str(out_png),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model | FG-ARI"))
    row = lines[header + 2].strip("|").split("|")
    assert row[0].strip() == "ISA-TSR"
    assert all(-100.0 <= float(c) <= 100.0 for c in row[1:5])  # ARI is in [-1, 1]
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout
    results = json.loads(out_json.read_text())
    (result,) = results["results"]
    assert set(result["scores"]) == {
        "in-distribution",
        "OOD position",
        "OOD scale",
        "OOD position + scale",
    }
    assert results["config"]["steps"] == 4 and results["config"]["model"] == "isa-tsr"
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_run_of_slot_attention_in_process(load_example, tmp_path, capsys):
    example = load_example("object_discovery")
    out_json = tmp_path / "sa.json"
    assert example.main(["--model", "sa", "--smoke", "--no-progress", "--json", str(out_json)]) == 0
    assert "| SA |" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["results"][0]["model"] == "sa"


def test_help_lists_the_flags(load_example, capsys):
    example = load_example("object_discovery")
    with pytest.raises(SystemExit) as exit_info:
        example.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads", "--model", "--png"):
        assert flag in out


def test_bad_arguments_exit_with_message(load_example, capsys):
    example = load_example("object_discovery")
    with pytest.raises(SystemExit, match="--steps"):
        example.main(["--steps", "0", "--no-progress"])
    with pytest.raises(SystemExit):
        example.parse_args(["--model", "isa-x"])
    assert "--model" in capsys.readouterr().err


def test_slot_init_flag_reaches_the_model(load_example):
    example = load_example("object_discovery")
    learned = example.build_model(example.config_from_args(example.parse_args(["--model", "sa"])))
    sampled = example.build_model(
        example.config_from_args(example.parse_args(["--model", "sa", "--slot-init", "sampled"]))
    )
    # Learned initial features: one row per slot; sampled: a Gaussian shared by the slots.
    assert learned.slot_attention.slot_init.mu.shape[-2] == 4
    assert sampled.slot_attention.slot_init.mu.shape[-2] == 1


def test_augment_flag_reaches_the_training(load_example):
    example = load_example("object_discovery")
    cfg = example.config_from_args(example.parse_args(["--smoke", "--no-progress"]))
    assert cfg.augment  # the default
    plain = example.config_from_args(
        example.parse_args(["--smoke", "--no-augment", "--no-progress"])
    )
    assert not plain.augment
    threads = torch.get_num_threads()
    try:
        augmented = example.train_and_evaluate(cfg, progress=False)[0].state_dict()
        as_is = example.train_and_evaluate(plain, progress=False)[0].state_dict()
    finally:
        torch.set_num_threads(threads)
    # Same seed and settings otherwise: the augmentation (which also draws from the batch
    # generator) changes what the model learns.
    assert any(not torch.equal(augmented[k], as_is[k]) for k in as_is)


def test_eval_iters_flag_sets_the_test_rounds(load_example):
    example = load_example("object_discovery")
    cfg = example.config_from_args(example.parse_args(["--smoke", "--eval-iters", "7"]))
    assert (cfg.iters, cfg.eval_iters) == (3, 7)
    with pytest.raises(SystemExit, match="--eval-iters"):
        example.config_from_args(example.parse_args(["--eval-iters", "0"]))
