import json

import pytest
import torch

NAME = "hyperbolic_hierarchy_classifier"


def test_smoke_run_prints_table_writes_json_and_plot(tmp_path, run_example):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "h.json", tmp_path / "disk.png"
    proc = run_example(
        NAME,
        "--smoke",
        "--no-progress",
        "--threads",
        "1",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines.index(
        "| D | head | fine acc. (%) | coarse acc. (%) | mistakes within superclass (%) |"
    )
    rows = lines[header + 2 : header + 4]
    assert [r.split(" | ")[1] for r in rows] == ["Euclidean", "hyperbolic"]
    for row in rows:
        for cell in row.strip("|").split("|")[2:]:
            assert 0.0 <= float(cell.split("±")[0]) <= 100.0
    assert "torch threads 1" in proc.stdout and "wall time" in proc.stdout
    assert "loops {0, 6, 8, 9}, strokes {1, 4, 7}, curves {2, 3, 5}" in proc.stdout
    assert out_png.stat().st_size > 10_000

    results = json.loads(out_json.read_text())
    assert set(results["summary"]) == {"2|Euclidean", "2|hyperbolic"}
    assert results["split"] == {"train_images": 480, "test_images": 120}
    assert results["config"]["epochs"] == 1 and results["config"]["dims"] == [2]
    assert results["chance_within_super"] == pytest.approx(24 / 90)


def test_help_and_bad_arguments(load_example, capsys):
    # In-process: a subprocess per flag would cost seconds of imports each; the script's own
    # start-up is covered by the smoke run.
    ex = load_example(NAME)
    with pytest.raises(SystemExit) as exit_:
        ex.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads", "--plot", "--dims"):
        assert flag in out
    with pytest.raises(SystemExit, match="--epochs"):
        ex.main(["--epochs", "0", "--no-progress"])
    with pytest.raises(SystemExit, match="--plot needs 2 in --dims"):
        ex.main(["--smoke", "--dims", "3", "--plot", "unused.png", "--no-progress"])


def test_hierarchy_scores(load_example):
    ex = load_example(NAME)
    assert sorted(d for group in ex.SUPERCLASSES.values() for d in group) == list(range(10))
    assert ex.COARSE.tolist() == [0, 1, 2, 2, 1, 2, 0, 1, 0, 0]
    labels = torch.tensor([0, 1, 2, 3, 4])
    # 6 for 0 (same superclass: loops), 7 for 1 (strokes), 9 for 2 (a loop, not a curve).
    pred = torch.tensor([6, 7, 9, 3, 4])
    s = ex.scores(pred, labels)
    assert s["fine_acc"] == pytest.approx(0.4) and s["coarse_acc"] == pytest.approx(0.8)
    assert s["within_super"] == pytest.approx(2 / 3) and s["mistakes"] == 3
    # Heads: same feature size in, 10 logits out.
    feats = ex.make_backbone(2)(torch.zeros(3, 1, 28, 28))
    for kind in ex.HEADS:
        assert ex.make_head(kind, 2)(feats).shape == (3, 10)
