"""sparkdl-lite tune --search halving and --configs: range parsing, random configurations, errors, one real run."""
import csv
import json
import math
import os

import pytest

from sparkdl_lite import cli
from sparkdl_lite.cli.space import Range, parse_range, sample_configs

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION) and not os.environ.get("SPARKDL_LITE_DATA"),
                                   reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def test_parse_grid_ranges_mix_with_value_lists():
    grid = cli.parse_grid("lr=1e-4:1e-2:log hiddenLayers=32:512:log dropout=0:0.5 batchSize=64,128 "
                          "hidden.units=8:64 drop.rate=0.1:0.4:lin")
    assert grid == [("learningRate", Range(1e-4, 1e-2, log=True)),
                    ("hiddenLayers", Range(32, 512, log=True, integer=True, one_layer=True)),
                    ("dropout", Range(0.0, 0.5)), ("batchSize", [64, 128]),
                    ("hidden.units", Range(8, 64, integer=True)), ("drop.rate", Range(0.1, 0.4))]
    assert [str(v) for _, v in grid] == ["0.0001:0.01:log", "32:512:log", "0:0.5", "[64, 128]", "8:64", "0.1:0.4"]


@pytest.mark.parametrize("spec, message", [
    ("learningRate=1e-2:1e-4:log", r"learningRate range '1e-2:1e-4:log' must have low < high"),
    ("learningRate=0:1e-2:log", r"is on a log scale, so low must be > 0; got 0"),
    ("learningRate=1e-4:1e-2:exp", r"has scale 'exp'; the scale is 'log' or 'lin'"),
    ("learningRate=fast:1e-2", r"learningRate range end 'fast' is not a number"),
    ("learningRate=1e-4:", r"learningRate range '1e-4:' is not low:high or low:high:log"),
    ("learningRate=1e-4,1e-3:1e-2", r"mixes a range with other values"),
    ("hiddenLayers=32.5:512", r"hiddenLayers range end '32.5' is not a whole number"),
    ("dropout=0:1", r"dropout range '0:1': its end must be in \[0, 1\); got 1.0"),
    ("architecture=mlp:cnn", r"architecture takes one of a list of choices, not a range"),
])
def test_bad_ranges_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        cli.parse_grid(spec)


def test_sample_configs_is_seeded_distinct_and_inside_the_ranges():
    items = [("learningRate", parse_range("learningRate", "1e-4:1e-2:log", "float")),
             ("hiddenLayers", parse_range("hiddenLayers", "32:512:log", "int_list")),
             ("batchSize", [64, 128]), ("hidden.units", parse_range("hidden.units", "8:12", "layer"))]
    configs = sample_configs(items, 40, seed=7)
    assert configs == sample_configs(items, 40, seed=7) and configs != sample_configs(items, 40, seed=8)
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 40
    for c in configs:
        assert list(c) == ["learningRate", "hiddenLayers", "batchSize", "hidden.units"]
        assert 1e-4 <= c["learningRate"] <= 1e-2 and isinstance(c["learningRate"], float)
        assert isinstance(c["hiddenLayers"], list) and len(c["hiddenLayers"]) == 1 and 32 <= c["hiddenLayers"][0] <= 512
        assert c["batchSize"] in (64, 128) and type(c["hidden.units"]) is int and 8 <= c["hidden.units"] <= 12
    # log-uniform: about half of the draws fall below the geometric middle 1e-3, far more than a uniform draw's 9%
    low = sum(c["learningRate"] < 1e-3 for c in sample_configs(items[:1], 400, seed=1))
    assert 150 < low < 250
    # value lists only: distinct grid points in grid order, or the whole grid when N covers it
    grid = [("learningRate", [1e-3, 1e-2, 1e-1]), ("batchSize", [32, 64])]
    some = sample_configs(grid, 4, seed=0)
    assert len(some) == 4 and len({json.dumps(c) for c in some}) == 4
    assert sample_configs(grid, 10, seed=0) == [{"learningRate": a, "batchSize": b} for a in (1e-3, 1e-2, 1e-1)
                                                for b in (32, 64)]
    with pytest.raises(ValueError, match=r"--configs 5: only 3 distinct configurations could be drawn"):
        sample_configs([("units", parse_range("units", "1:3", "layer"))], 5, seed=0)


@pytest.mark.parametrize("argv, message", [
    (["--grid", "lr=1e-4:1e-2:log"], r"--grid: learningRate=0.0001:0.01:log is a range; a range needs --configs N"),
    (["--search", "halving", "--factor", "1.5"], r"--factor must be >= 2 .*got 1.5"),
    (["--search", "halving", "--epochs", "3", "--min-epochs", "4"],
     r"--min-epochs \(4\) must not exceed --epochs \(3\)"),
    (["--search", "halving", "--grid", "lr=1e-3,1e-2 epochs=1,3"],
     r"--search halving allocates the epochs itself .*remove epochs from --grid"),
    (["--factor", "2"], r"--factor applies to --search halving"),
    (["--grid", "lr=1e-3", "--configs", "0"], r"--configs must be >= 1; got 0"),
])
def test_search_flags_fail_before_spark_starts(tmp_path, capsys, argv, message):
    assert cli.main(["tune", *argv, "--out", str(tmp_path)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not os.listdir(tmp_path)  # nothing written: the check ran before the data and Spark


def test_help_says_configs_is_not_sample(capsys):
    assert cli.main(["tune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--configs N try N random configurations (seeded by --seed)" in text
    assert "(Not --sample: that samples data rows.)" in text and "--search {grid,halving}" in text


@needs_fashion
def test_tune_halving_with_random_configs_writes_rungs(spark, tmp_path):
    out = tmp_path / "halving"
    code = cli.main(["tune", "--data", "fashion-mnist", "--sample", "300", "--search", "halving",
                     "--grid", "learningRate=1e-3:3e-2:log learningRateSchedule=cosine hiddenLayers=8,16", "--configs", "5",
                     "--epochs", "3", "--min-epochs", "1", "--batch-size", "64", "--seed", "1", "--out", str(out)])
    assert code == 0
    for name in ("results.csv", "results.json", "rungs.csv", "rungs.png", "sensitivity.png", "report.md",
                 "best_model/metadata"):
        assert os.path.exists(out / name), name
    assert os.path.getsize(out / "rungs.png") > 20_000
    doc = json.loads((out / "results.json").read_text())
    search = doc["search"]
    assert search["kind"] == "halving" and search["factor"] == 3 and search["min_epochs"] == 1
    # 5 configurations at 1 epoch, then the best ceil(5 / 3) = 2 at 3 epochs (the maximum: the last rung)
    assert [(r["rung"], r["epochs"], r["configurations"]) for r in search["rung_summary"]] == [(0, 1, 5), (1, 3, 2)]
    rungs = search["rungs"]
    rung0 = sorted((e for e in rungs if e["rung"] == 0), key=lambda e: (-e["metric"], e["paramMapIndex"]))
    assert sorted(e["paramMapIndex"] for e in rungs if e["rung"] == 1) == sorted(e["paramMapIndex"] for e in rung0[:2])
    assert search["best_index"] in {e["paramMapIndex"] for e in rungs if e["rung"] == 1}
    rows = doc["rows"]
    assert len(rows) == 5 and len({r["learningRate"] for r in rows}) == 5
    assert all(1e-3 <= r["learningRate"] <= 3e-2 and r["hiddenLayers"] in ([8], [16]) for r in rows)
    assert [r["index"] for r in rows if r["best"]] == [search["best_index"]] == [doc["best_index"]]
    assert sorted(r["rung_epochs"] for r in rows) == [1, 1, 1, 3, 3]
    timing = doc["timing"]
    assert timing["epochs_trained"] == 5 * 1 + 2 * 2 and timing["grid_epochs"] == 5 * 3  # survivors add 2 epochs
    assert timing["models"] == 5 + 2 + 1 and timing["sequential_seconds"] > 0
    with open(out / "rungs.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 7 and {ln["epochs"] for ln in lines} == {"1", "3"}

    report = (out / "report.md").read_text()
    assert "## Rungs (successive halving)" in report and "![validation accuracy vs epochs, every configuration](rungs.png)" in report
    assert "| rung | epochs | configurations | failed | best accuracy | best configuration |" in report
    assert "| 0 | 1 | 5 | 0 |" in report and "| 1 | 3 | 2 | 0 |" in report
    assert "| configuration | rung 0: 1 epochs | rung 1: 3 epochs | outcome |" in report
    assert report.count("stopped at rung 0") == 3
    assert report.count("| **best** |") == 2  # the rung table's outcome and the last column of all param maps
    assert "5 random configurations (seed 1) drawn from: learningRate = 0.001:0.03:log" in report
    # the grid report's sections still hold
    # a one-value entry is a fixed setting: the default configuration gets it too
    assert all(r["learningRateSchedule"] == "cosine" for r in rows)
    assert "| default | learningRate=0.0010, learningRateSchedule=cosine, hiddenLayers=[128] |" in report
    assert "| tuned best |" in report
    assert "**Sequential estimate** (sum of the per-task train seconds of every rung's trainings" in report
    assert "**Epochs trained by the search**" in report and "trains 15: **0.60x**" in report
    best_acc = doc["test"]["best"]["test_accuracy"]
    assert 0.0 <= best_acc <= 1.0 and math.isfinite(doc["best"]["mean"])

    from sparkdl_lite.classifier import TFClassificationModel

    model = TFClassificationModel.load(str(out / "best_model"))
    assert model.getEpochs() == 3 and len(model.history) == 3  # the refit trains the maximum, from scratch
