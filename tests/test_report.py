"""Tuning report on a real tiny CrossValidator run of TFClassifier over scikit-learn's digits."""
import io
import json
import os
import re
import time

import numpy as np
import pytest

from sparkdl_lite.cli.progress import SparkProgress
from sparkdl_lite.reports import tuning as tn


@pytest.fixture(scope="module")
def cv_run(spark):
    """A 2-fold CrossValidator over 2 param maps (4 models + refit), with sub-models."""
    pytest.importorskip("sklearn")
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.linalg import Vectors
    from pyspark.ml.tuning import CrossValidator

    from sparkdl_lite.classifier import TFClassifier
    from sparkdl_lite.core.datasets import load_digits_split

    x_train, _, y_train, _ = load_digits_split()
    x, y = x_train[:400] / 16.0, y_train[:400]
    df = spark.createDataFrame([(Vectors.dense(row.tolist()), int(label)) for row, label in zip(x, y)],
                               ["features", "label"]).cache()
    est = TFClassifier(hiddenLayers=[16], epochs=1, batchSize=32, seed=0)
    grid = [{est.learningRate: 1e-3, est.hiddenLayers: [8]}, {est.learningRate: 3e-2, est.hiddenLayers: [32]}]
    cv = CrossValidator(estimator=est, estimatorParamMaps=grid, numFolds=2, parallelism=2, collectSubModels=True,
                        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"), seed=1)
    start = time.perf_counter()
    model = cv.fit(df)
    return model, time.perf_counter() - start


def test_results_table_from_cross_validator(cv_run):
    model, _ = cv_run
    rows = tn.results_table(model)
    assert len(rows) == 2
    assert tn.param_names(rows) == ["learningRate", "hiddenLayers"]
    assert [(r["learningRate"], r["hiddenLayers"]) for r in rows] == [(1e-3, [8]), (3e-2, [32])]
    for r, mean, std in zip(rows, model.avgMetrics, model.stdMetrics):
        assert r["metric"] == "accuracy"
        assert r["mean"] == pytest.approx(mean) and r["std"] == pytest.approx(std)
        assert r["error"] == pytest.approx(1 - mean)
        assert r["folds"] == 2
        assert r["train_seconds"] > 0  # two fold models' trainingInfo["seconds"], summed
        assert r["executor"]
        assert r["diverged"] in (False, True)
        json.dumps(r)  # plain values only
    best = [r for r in rows if r["best"]]
    assert len(best) == 1 and best[0]["index"] == int(np.argmax(model.avgMetrics))
    assert best[0]["learningRate"] == model.bestModel.getLearningRate()


def test_explicit_values_override_the_model(cv_run):
    model, _ = cv_run
    rows = tn.results_table(model, train_seconds=[1.0, 2.0], executors=["a", "b"], diverged=[True, False])
    assert [r["train_seconds"] for r in rows] == [1.0, 2.0]
    assert [r["executor"] for r in rows] == ["a", "b"]
    assert [r["diverged"] for r in rows] == [True, False]
    assert tn.sequential_seconds(rows, [0.5]) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="3 entries for 2 param maps"):
        tn.results_table(model, train_seconds=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no param maps"):
        tn.results_table(param_maps=[], metrics=[])


def test_files_plot_and_report_agree(cv_run, tmp_path):
    model, seconds = cv_run
    rows = tn.results_table(model)
    paths = tn.write_results(rows, str(tmp_path), extra={"note": "digits"})
    doc = json.loads(open(paths["json"]).read())
    assert doc["note"] == "digits" and len(doc["rows"]) == 2
    assert doc["best"]["mean"] == max(model.avgMetrics)
    with open(paths["csv"]) as f:
        header = f.readline().strip().split(",")
        assert header[:3] == ["index", "learningRate", "hiddenLayers"] and "train_seconds" in header
        assert len(f.read().strip().splitlines()) == 2

    png = tn.sensitivity_plot(rows, str(tmp_path / "sensitivity.png"))
    assert os.path.getsize(png) > 20_000
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape[0] > 400 and pixels.std() > 10  # drawn, not blank

    seq = tn.sequential_seconds(rows, [tn.training_info(model.bestModel).get("seconds")])
    report = tn.write_report(str(tmp_path / "report.md"), rows,
                             default={"params": {"learningRate": 1e-3, "hiddenLayers": [128]}, "test_accuracy": 0.80},
                             best={"params": {"learningRate": 3e-2, "hiddenLayers": [32]}, "test_accuracy": 0.90},
                             timing={"tuning_seconds": seconds, "sequential_seconds": seq, "speedup": seq / seconds},
                             setup={"data": "digits"})
    text = open(report).read()
    m = re.search(r"Best validation accuracy\*\* \(mean over 2 folds\): \*\*([0-9.]+)\*\*", text)
    assert m and float(m.group(1)) == pytest.approx(doc["best"]["mean"], abs=5e-5)
    assert "= **50.0%**" in text  # (0.2 - 0.1) / 0.2
    assert "Sequential estimate" in text and "Speedup" in text and "![" in text
    assert text.count("**best**") == 1 and len(re.findall(r"^\| \d+ \|", text, re.M)) == 2


def test_plot_panels_per_architecture_and_diverged(tmp_path):
    rows = []
    for i, (arch, lr, width) in enumerate((a, lr, w) for a in ("mlp", "cnn") for lr in (1e-3, 1e-2, 1e-1) for w in (64, 256)):
        rows.append({"index": i, "architecture": arch, "learningRate": lr, "hiddenLayers": [width], "metric": "accuracy",
                     "mean": 0.8 + 0.01 * i, "std": 0.01, "error": 0.2 - 0.01 * i, "folds": 2, "train_seconds": 1.0,
                     "executor": "driver", "diverged": lr == 1e-1 and width == 64, "best": i == 11})
    png = tn.sensitivity_plot(rows, str(tmp_path / "p.png"), metric_name="validation error")
    from PIL import Image

    w, h = Image.open(png).size
    assert w > 1.6 * h  # two panels side by side


def test_spark_progress_counts_tagged_tasks(spark):
    sc = spark.sparkContext
    stream = io.StringIO()
    tag = "test-progress"
    sc.addJobTag(tag)
    try:
        with SparkProgress(spark, total=4, unit="models", job_tag=tag, stream=stream, interval=0.1) as progress:
            sc.parallelize(range(4), 4).map(lambda v: time.sleep(0.3) or v).collect()
            progress.set_best(0.9, "acc")
    finally:
        sc.removeJobTag(tag)
    last = stream.getvalue().strip().splitlines()[-1]
    assert last.startswith("models 4/4 | best acc 0.9000 | elapsed ")
    assert last.endswith("ETA 0s")
    assert "\r" not in stream.getvalue()  # not a terminal: plain lines
    # Labeling has no metric: no "best" part.
    quiet = SparkProgress(spark, total=2, unit="tasks", stream=io.StringIO(), show_best=False)
    assert quiet.line().startswith("tasks 0/2 | elapsed ") and "best" not in quiet.line()


def test_progress_without_a_total_ends_with_eta_0s(spark):
    stream = io.StringIO()
    with SparkProgress(spark, unit="tasks", stream=stream, interval=0.1, show_best=False):
        spark.sparkContext.parallelize(range(3), 3).count()
    last = stream.getvalue().strip().splitlines()[-1]
    assert last.startswith("tasks ") and last.endswith("ETA 0s")  # not "ETA ?" once the work has ended
