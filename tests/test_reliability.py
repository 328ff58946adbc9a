"""Faults mid-job: a lost executor JVM and a crashing Python worker; Spark reruns, nothing is lost or doubled."""
import os

import pytest

NEEDS_FASHION = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Fashion-MNIST not installed")


@NEEDS_FASHION
def test_python_worker_crash_mid_transform_is_retried(local_jobs):
    """conftest.local_jobs, local[2,3]: a Python worker exits mid-transform; compared with a clean run."""
    res = local_jobs["label"]
    assert res["marker_consumed"], "no worker crashed: the fault was not injected"
    assert res["n_clean"] == res["n_faulty"] == 600
    assert res["max_diff"] < 1e-5


@NEEDS_FASHION
def test_training_task_failing_its_first_attempt_is_retried(local_jobs):
    """conftest.local_jobs, local[2,3] (3 attempts per task): a training task dies on its first attempt."""
    res = local_jobs["train"]
    assert res["models"] == 2
    assert res["max_diff"] < 1e-6  # the retried model equals the clean run's


@NEEDS_FASHION
def test_executor_loss_during_labeling(cluster_jobs):
    """local-cluster[2,2,1024]: one executor JVM SIGKILLed while 5,000 images are labeled."""
    res = cluster_jobs["label"]
    assert len(res["killed"]) == 1, "no executor was killed"
    assert res["n_clean"] == res["n_faulty"] == 5000
    assert res["max_diff"] < 1e-5
    print(f"\nlabeling: {res['failed_tasks']} task(s) counted failed with the executor")


@NEEDS_FASHION
def test_executor_loss_during_tuning(cluster_jobs):
    """local-cluster[2,2,1024]: one executor JVM SIGKILLed while fitMultiple trains 4 models on both."""
    res = cluster_jobs["tune"]
    assert len(res["killed"]) == 1, "no executor was killed"
    assert res["models"] == 4
    assert res["max_diff"] < 1e-6  # fixed seeds: the same models as without the kill
    assert res["clean_executors"] == ["0", "1"]  # the clean run used both executor JVMs
    print(f"\ntuning: {res['failed_tasks']} task(s) counted failed with the executor")


def test_diverging_configuration_is_scored_not_fatal(spark, tmp_path):
    """A learning rate so high the loss goes NaN: CrossValidator still finishes; the report marks it."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.linalg import Vectors
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkdl_lite.classifier import TFClassifier
    from sparkdl_lite.core.datasets import load_digits_split
    from sparkdl_lite.reports import tuning as report

    x_train, _, y_train, _ = load_digits_split(seed=0)
    df = spark.createDataFrame([(Vectors.dense(v), float(t)) for v, t in zip(x_train[:600], y_train[:600])],
                               ["features", "label"])
    clf = TFClassifier(hiddenLayers=[32], optimizer="sgd", epochs=2, seed=0)
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-2, 1e12]).build()
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=2, parallelism=2, collectSubModels=True,
                        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"), seed=0)
    model = cv.fit(df)
    assert model.avgMetrics[1] < model.avgMetrics[0]  # scored, and scored worst
    assert model.bestModel.getLearningRate() == 1e-2
    assert all(m.trainingInfo["diverged"] for m in (fold[1] for fold in model.subModels))
    rows = report.results_table(model)
    assert [r["diverged"] for r in rows] == [False, True]
    md = tmp_path / "report.md"
    report.write_report(str(md), rows)
    assert "diverged" in md.read_text()
