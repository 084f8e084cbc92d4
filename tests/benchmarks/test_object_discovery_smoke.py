"""The object-discovery benchmark runs end to end in --smoke mode (the README table comes from
the full run). In-process: a fresh interpreter would spend longer importing than running; the
models themselves train in worker processes unless ``--workers 1``."""

import json

import torch

from benchmarks import object_discovery
from benchmarks.object_discovery import load_example, train_all


def test_object_discovery_smoke(tmp_path, capsys):
    out, png = tmp_path / "od.json", tmp_path / "od.png"
    threads = torch.get_num_threads()
    try:
        argv = ["--smoke", "--no-progress", "--json", str(out), "--png", str(png)]
        assert object_discovery.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    stdout = capsys.readouterr().out
    assert "| model | FG-ARI in-distribution (%) |" in stdout
    assert "- ISA-TS FG-ARI in distribution >= 85: " in stdout
    results = json.loads(out.read_text())
    assert [r["config"]["model"] for r in results["rows"]] == ["sa", "isa-t", "isa-ts"]
    for row in results["rows"]:
        assert row["seconds"]["step"] > 0
        assert set(row["extra"]["scores"]) >= {"in-distribution", "OOD position + scale"}
    assert results["meta"]["threads"] == 1
    assert results["meta"]["workers"] == 3
    assert png.exists() and (tmp_path / "od_isa-ts_slots.png").exists()


def test_workers_train_the_same_models_as_one_process():
    """Training in worker processes changes where the models train, not what they learn."""
    example = load_example()
    threads = torch.get_num_threads()
    try:
        apart = train_all(example, example.SMOKE, workers=3, progress=False)
        together = train_all(example, example.SMOKE, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    for name in object_discovery.MODELS:
        assert apart[1][name]["scores"] == together[1][name]["scores"]
        for key, value in together[0][name].state_dict().items():
            assert torch.equal(apart[0][name].state_dict()[key], value), (name, key)
