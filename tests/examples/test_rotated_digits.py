import json

MODELS = {
    "cnn": "(a) CNN",
    "cnn_augmented": "(a') CNN + augmentation",
    "c4_canonical": "(b) CNN + C4 canonicalizer",
    "c8_canonical": "(c) CNN + C8 canonicalizer",
    "so2_canonical": "(d) CNN + SO(2) canonicalizer",
    "c8_gcnn": "(e) C8 G-CNN",
    "c8_frame_averaging": "(f) CNN + C8 frame averaging",
}
TEST_SETS = {"upright", "quarter", "continuous"}


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_smoke_run_prints_tables_and_writes_json(tmp_path, run_example):
    out_json = tmp_path / "rotated_digits.json"
    proc = run_example(
        "rotated_digits",
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
        "| model | trained on | parameters | s / epoch | upright acc | 90° multiples acc "
        "| any angle acc | drop 90° | drop any angle |"
    )
    rows = [_cells(r) for r in lines[header + 2 : header + 2 + len(MODELS)]]
    assert [r[0] for r in rows] == list(MODELS.values())
    for r in rows:
        assert len(r) == 9
        assert int(r[2]) > 0 and float(r[3]) >= 0.0
        assert all(0.0 <= float(c) <= 100.0 for c in r[4:7])
    assert lines[header + 2 + len(MODELS)] == ""

    adapt = lines.index(
        "| adaptation | prior weight | identity fraction (upright) | upright acc "
        "| 90° multiples acc | any angle acc | s / epoch |"
    )
    rows = [_cells(r) for r in lines[adapt + 2 : adapt + 4]]
    assert [float(r[1]) for r in rows] == [0.0, 1.0]
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout

    results = json.loads(out_json.read_text())
    assert set(results["models"]) == set(MODELS)
    for key, model in results["models"].items():
        assert model["label"] == MODELS[key]
        assert set(model["accuracy"]) == TEST_SETS
        assert model["parameters"] > 0 and len(model["epoch_seconds"]) == 1
    # Canonicalized models also report how often the frame of an upright digit is the identity.
    for key in ("c4_canonical", "c8_canonical", "so2_canonical"):
        assert 0.0 <= results["models"][key]["identity_fraction_upright"] <= 1.0
    assert set(results["adaptation"]) == {"no_prior", "prior"}
    assert results["adaptation"]["no_prior"]["prior_weight"] == 0.0
    assert results["split"] == {"train_images": 4000, "test_images": 1000}
    assert results["used"] == {"train_images": 16, "test_images": 16}
    assert results["config"]["epochs"] == 1 and results["config"]["adapt_epochs"] == 1


def test_c4_canonicalized_model_is_exactly_invariant_to_quarter_turns(load_example):
    # The property the 90-degree column rests on, checked on untrained weights.
    import torch

    module = load_example("rotated_digits")
    model = module.make_models(0)["c4_canonical"].eval()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    turned = module.rotate_quarter(x, torch.tensor([0, 1, 2, 3, 1, 2]))
    with torch.no_grad():
        torch.testing.assert_close(model(turned), model(x), atol=1e-4, rtol=1e-4)


def test_help_lists_the_common_flags(run_example):
    proc = run_example("rotated_digits", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads", "--epochs"):
        assert flag in proc.stdout


def test_bad_arguments_exit_with_message(run_example):
    proc = run_example("rotated_digits", "--epochs", "-1", "--no-progress", timeout=60)
    assert proc.returncode != 0 and "--epochs" in proc.stderr
