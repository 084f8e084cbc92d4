"""The object-discovery benchmark runs end to end in --smoke mode (the README table comes from
the full run). In-process: a fresh interpreter would spend longer importing than running."""

import json

import torch

from benchmarks import object_discovery


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
    assert png.exists() and (tmp_path / "od_isa-ts_slots.png").exists()
