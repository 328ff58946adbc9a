"""HalvingSearch: successive halving over LogisticRegression (rows) and TFClassifier (epochs) on real digits."""
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.sql import functions as F
from test_classifier import train_jobs

from sparkdl_lite.classifier import TFClassificationModel, TFClassifier
from sparkdl_lite.core.datasets import load_digits_split
from sparkdl_lite.reports.halving import rung_plot, rung_table
from sparkdl_lite.search import HalvingSearch, HalvingSearchModel


def vector_df(spark, x, y):
    pdf = pd.DataFrame({"id": np.arange(len(x)), "features": list(np.asarray(x, np.float64)),
                        "label": np.asarray(y, np.int64)})
    return spark.createDataFrame(pdf).withColumn("features", array_to_vector("features"))


def predictions(model, df):
    return np.array([r.prediction for r in model.transform(df).orderBy("id").select("prediction").collect()])


@pytest.fixture(scope="module")
def digits(spark):
    x_train, x_test, y_train, y_test = load_digits_split()
    train = vector_df(spark, x_train[:600], y_train[:600]).cache()
    test = vector_df(spark, x_test[:300], y_test[:300]).cache()
    return train, test


@pytest.fixture(scope="module")
def accuracy():
    return MulticlassClassificationEvaluator(metricName="accuracy")


@pytest.fixture(scope="module")
def lr_search(digits, accuracy):
    """5 regParams, factor 3: rung 0 fits all 5 on a third of the training rows, rung 1 the best 2 on all."""
    train, _ = digits
    lr = LogisticRegression(maxIter=6)
    grid = ParamGridBuilder().addGrid(lr.regParam, [1e-3, 0.1, 1.0, 10.0, 100.0]).build()
    search = HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=accuracy, resource="rows", factor=3,
                           minResource=1 / 3, maxResource=1.0, parallelism=2, seed=1, collectSubModels=True)
    return search, search.fit(train)


def by_rung(model, k):
    return [e for e in model.rungs if e["rung"] == k]


def test_rows_mode_halves_logistic_regression_and_picks_a_sensible_best(digits, accuracy, lr_search):
    train, test = digits
    search, model = lr_search
    grid = search.getEstimatorParamMaps()
    lr = search.getEstimator()
    rung0, rung1 = by_rung(model, 0), by_rung(model, 1)
    assert [e["paramMapIndex"] for e in rung0] == list(range(5)) and all(e["resource"] == pytest.approx(1 / 3) for e in rung0)
    assert len(rung1) == 2 and all(e["resource"] == 1.0 for e in rung1)
    assert not by_rung(model, 2)
    assert all(e["error"] is None and e["seconds"] > 0 and 0 < e["metric"] <= 1 for e in model.rungs)
    top2 = sorted(rung0, key=lambda e: (-e["metric"], e["paramMapIndex"]))[:2]
    assert sorted(e["paramMapIndex"] for e in rung1) == sorted(e["paramMapIndex"] for e in top2)
    best = max(rung1, key=lambda e: (e["metric"], -e["paramMapIndex"]))
    assert model.bestIndex == best["paramMapIndex"]
    assert len(model.metrics) == 5
    last = {e["paramMapIndex"]: e["metric"] for e in rung0 + rung1}  # each param map's metric at its last rung
    assert model.metrics == [last[i] for i in range(5)]
    assert grid[model.bestIndex][lr.regParam] <= 0.1  # 10 and 100 over-regularize the 10-class problem
    assert isinstance(model.bestModel, LogisticRegressionModel)
    assert model.bestModel.getRegParam() == grid[model.bestIndex][lr.regParam]
    assert model.searchSeconds > 0 and model.refitSeconds > 0
    assert len(model.subModels) == 5 and all(isinstance(m, LogisticRegressionModel) for m in model.subModels)
    test_acc = accuracy.evaluate(model.transform(test))
    print(f"\nrows halving: metrics={np.round(model.metrics, 4).tolist()} best={model.bestIndex} test accuracy={test_acc:.4f} "
          f"search {model.searchSeconds:.1f}s refit {model.refitSeconds:.1f}s")
    assert test_acc > 0.9


def test_random_samples_with_a_failing_map_and_two_folds(digits, accuracy):
    """Randomly drawn param maps (numpy scalars, as a random sampler draws them) work like a grid; one that
    fails at fit ranks last, is not promoted and is not fatal."""
    train, _ = digits
    lr = LogisticRegression()
    rng = np.random.default_rng(3)
    maps = [{lr.regParam: 10 ** rng.uniform(-3, -1), lr.maxIter: -1},
            {lr.regParam: 10 ** rng.uniform(-3, -1), lr.maxIter: rng.integers(4, 8)},
            {lr.regParam: 10 ** rng.uniform(0.5, 1.5), lr.maxIter: rng.integers(4, 8)}]
    assert isinstance(maps[1][lr.maxIter], np.integer)
    search = HalvingSearch(estimator=lr, estimatorParamMaps=maps, evaluator=accuracy, factor=3, minResource=0.5,
                           numFolds=2, parallelism=2, seed=2, collectSubModels=True)
    model = search.fit(train)
    assert [(e["rung"], e["resource"], e["paramMapIndex"]) for e in model.rungs] == [(0, 0.5, 0), (0, 0.5, 1), (0, 0.5, 2)]
    failed = model.rungs[0]
    assert math.isnan(failed["metric"]) and "maxIter" in failed["error"] and math.isnan(model.metrics[0])
    assert [e["error"] is None for e in model.rungs] == [False, True, True]
    assert model.bestIndex == 1  # a small regParam beats a large one; the failed map 0 ranks last, not first
    assert model.bestModel.getMaxIter() == int(maps[1][lr.maxIter])
    assert len(model.subModels) == 2 and [m is None for m in model.subModels[1]] == [True, False, False]
    assert "failed: IllegalArgumentException" in rung_table(model.rungs, best_index=model.bestIndex)


def test_every_param_map_failing_at_rung_0_raises_naming_them(digits, accuracy):
    train, _ = digits
    lr = LogisticRegression(maxIter=5)
    search = HalvingSearch(estimator=lr, estimatorParamMaps=[{lr.maxIter: -1}, {lr.regParam: -1.0}], evaluator=accuracy)
    with pytest.raises(RuntimeError, match=r"every param map failed at rung 0.*param map 0 \{maxIter: -1\}.*"
                                           r"param map 1 \{regParam: -1\.0\}"):
        search.fit(train)


@pytest.mark.parametrize("make, message", [
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, numFolds=3, trainRatio=0.8),
     "set either param 'trainRatio' .* or param 'numFolds' .*, not both; got trainRatio=0.8 and numFolds=3"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, factor=1),
     "param 'factor' must be a number > 1; got 1.0"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, numFolds=1),
     "param 'numFolds' must be None or an int >= 2; got 1"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, resource="epochs"),
     "param 'resource' is 'epochs', which needs a TFClassifier estimator; got LogisticRegression"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, minResource=1.5),
     "param 'minResource' must be a fraction of the training rows in \\(0, 1\\] with resource='rows'; got 1.5"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=ev, minResource=0.8, maxResource=0.5),
     "param 'minResource' \\(0.8\\) must not exceed param 'maxResource' \\(0.5\\)"),
    (lambda lr, grid, ev: HalvingSearch(estimator=lr, estimatorParamMaps=[], evaluator=ev),
     "param 'estimatorParamMaps' is empty"),
])
def test_bad_params_are_named_before_any_job(spark, digits, accuracy, make, message):
    train, _ = digits
    lr = LogisticRegression()
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 0.1]).build()
    with pytest.raises(ValueError, match=message):
        make(lr, grid, accuracy).fit(train)


def test_a_param_map_that_sets_the_resource_is_an_error(digits, accuracy):
    train, _ = digits
    clf = TFClassifier()
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).addGrid(clf.epochs, [2, 4]).build()
    search = HalvingSearch(estimator=clf, estimatorParamMaps=grid, evaluator=accuracy, minResource=1, maxResource=4)
    with pytest.raises(ValueError, match="param map 0 sets 'epochs' to 2, but epochs are the resource"):
        search.fit(train)
    with pytest.raises(ValueError, match="param 'maxResource' must be an int >= 1 \\(epochs\\) with resource='epochs'; got 2.5"):
        HalvingSearch(estimator=clf, estimatorParamMaps=[{clf.learningRate: 1e-2}], evaluator=accuracy, maxResource=2.5).fit(train)


def test_search_and_model_save_load(digits, lr_search, tmp_path):
    _, test = digits
    search, model = lr_search
    folds = HalvingSearch(estimator=search.getEstimator(), estimatorParamMaps=search.getEstimatorParamMaps(),
                          evaluator=search.getEvaluator(), numFolds=3, factor=2, minResource=0.25, parallelism=2, seed=7)
    folds.save(str(tmp_path / "search"))
    loaded = HalvingSearch.load(str(tmp_path / "search"))
    assert loaded.uid == folds.uid and isinstance(loaded.getEstimator(), LogisticRegression)
    assert loaded.getEstimator().uid == search.getEstimator().uid
    assert loaded.getEvaluator().getMetricName() == "accuracy"
    for name in ("numFolds", "factor", "minResource", "maxResource", "resource", "parallelism", "seed", "collectSubModels"):
        assert loaded.getOrDefault(name) == folds.getOrDefault(name), name
    assert [{p.name: v for p, v in pm.items()} for pm in loaded.getEstimatorParamMaps()] == \
        [{p.name: v for p, v in pm.items()} for pm in search.getEstimatorParamMaps()]
    assert not loaded.isSet(loaded.trainRatio)  # it stayed a default, so numFolds alone is not "both set"
    assert loaded._validate()["folds"] == 3
    assert loaded.copy().uid == loaded.uid

    model.save(str(tmp_path / "model"))
    back = HalvingSearchModel.load(str(tmp_path / "model"))
    assert back.uid == model.uid and back.bestIndex == model.bestIndex
    assert back.metrics == model.metrics and back.rungs == model.rungs
    assert back.searchSeconds == model.searchSeconds and back.refitSeconds == model.refitSeconds
    assert isinstance(back.bestModel, LogisticRegressionModel)
    np.testing.assert_array_equal(predictions(back, test), predictions(model, test))
    assert len(back.subModels) == 5 and all(isinstance(m, LogisticRegressionModel) for m in back.subModels)


def test_inside_a_pipeline_save_load(digits, accuracy, tmp_path):
    train, test = digits
    lr = LogisticRegression(featuresCol="scaled", maxIter=6)
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.01, 1.0]).build()
    search = HalvingSearch(estimator=lr, estimatorParamMaps=grid, evaluator=accuracy, factor=2, minResource=0.5, seed=5)
    pipeline = Pipeline(stages=[StandardScaler(inputCol="features", outputCol="scaled"), search])
    pipeline.save(str(tmp_path / "pipeline"))
    stage = Pipeline.load(str(tmp_path / "pipeline")).getStages()[1]
    assert isinstance(stage, HalvingSearch) and stage.uid == search.uid and stage.getFactor() == 2.0

    fitted = pipeline.fit(train)
    assert isinstance(fitted.stages[1], HalvingSearchModel)
    expected = predictions(fitted, test)
    fitted.save(str(tmp_path / "fitted"))
    loaded = PipelineModel.load(str(tmp_path / "fitted"))
    assert isinstance(loaded.stages[1], HalvingSearchModel) and loaded.stages[1].rungs == fitted.stages[1].rungs
    np.testing.assert_array_equal(predictions(loaded, test), expected)


def test_rung_plot_and_table(lr_search, tmp_path):
    _, model = lr_search
    path = rung_plot(model.rungs, str(tmp_path / "plots" / "rungs.png"), model.bestIndex, "validation accuracy",
                     resource_name="fraction of training rows")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = rung_table(model.rungs, best_index=model.bestIndex, metric_name="accuracy")
    lines = table.strip().splitlines()
    assert lines[0] == "| rung | resource | param map | accuracy | seconds | outcome |" and len(lines) == 2 + 7
    assert sum("**best**" in line for line in lines) == 1 and sum("promoted" in line for line in lines) == 2


def test_epochs_mode_trains_each_rung_in_one_job_and_warm_starts_survivors(spark, digits, accuracy):
    train, test = digits
    # SGD keeps no optimizer state, so a survivor continued for 1 + 1 + 1 epochs is the same model as
    # 3 epochs from scratch: equal accuracy proves the warm starts continue rather than retrain.
    clf = TFClassifier(hiddenLayers=[32], optimizer="sgd", batchSize=16, scale=1 / 16)
    grid = ParamGridBuilder().addGrid(clf.learningRate, [0.02, 0.1, 0.5]).build()
    search = HalvingSearch(estimator=clf, estimatorParamMaps=grid, evaluator=accuracy, factor=1.5, minResource=1,
                           maxResource=3, numFolds=None, trainRatio=0.75, parallelism=2, seed=3, collectSubModels=True)
    before = train_jobs(spark)
    model = search.fit(train)
    assert len(train_jobs(spark) - before) == 4  # one job per rung (3 param maps, then 2, then 2) and the refit
    assert [e["resource"] for e in model.rungs] == [1, 1, 1, 2, 2, 3, 3]
    assert all(e["error"] is None for e in model.rungs)
    survivors = {e["paramMapIndex"] for e in by_rung(model, 2)}
    assert model.bestIndex in survivors
    for i, sub in enumerate(model.subModels):
        assert isinstance(sub, TFClassificationModel)
        assert [h["epoch"] for h in sub.history] == ([1, 2, 3] if i in survivors else [1])  # maxResource, not 1 + 2 + 3
    assert isinstance(model.bestModel, TFClassificationModel) and len(model.bestModel.history) == 3
    # A rung's tasks run slowest first (seconds per epoch at the rung before): partition 0 is the slowest.
    pace = {e["paramMapIndex"]: e["train_seconds"] for e in by_rung(model, 1)}  # 1 epoch per rung here
    slowest_first = sorted(survivors, key=lambda i: -pace[i])
    assert [model.subModels[i].trainingInfo["partitionId"] for i in slowest_first] == list(range(len(survivors)))
    assert model.bestModel.getLearningRate() == grid[model.bestIndex][clf.learningRate]

    warm = model.subModels[model.bestIndex]
    split = train.select("*", F.rand(3).alias("r")).filter(F.col("r") < 0.75).drop("r")  # the search's training rows
    valid = train.select("*", F.rand(3).alias("r")).filter(F.col("r") >= 0.75).drop("r")  # its validation rows
    # Accuracy is scored in the training tasks (no scoring job per model); it must equal the evaluator's
    # accuracy on a transform of the validation rows by the same model.
    for i, sub in enumerate(model.subModels):
        last = [e for e in model.rungs if e["paramMapIndex"] == i][-1]
        assert sub.trainingInfo["scoredRows"] == valid.count()
        assert last["metric"] == pytest.approx(accuracy.evaluate(sub.transform(valid)), abs=1e-12)
    cold = clf.fit(split, {**grid[model.bestIndex], clf.epochs: 3})
    warm_acc, cold_acc = accuracy.evaluate(warm.transform(test)), accuracy.evaluate(cold.transform(test))
    best_acc = accuracy.evaluate(model.transform(test))
    print(f"\nepochs halving: rungs={[(e['rung'], e['paramMapIndex'], round(e['metric'], 3)) for e in model.rungs]} "
          f"warm {warm_acc:.4f} cold {cold_acc:.4f} refit {best_acc:.4f} search {model.searchSeconds:.1f}s")
    assert abs(warm_acc - cold_acc) <= 0.01
    assert best_acc > 0.8


def test_epochs_mode_with_another_metric_scores_by_transform(spark, digits):
    """An evaluator the tasks cannot score themselves (weighted F1) scores a transform of the validation rows."""
    train, _ = digits
    f1 = MulticlassClassificationEvaluator(metricName="f1")
    clf = TFClassifier(hiddenLayers=[16], batchSize=32, scale=1 / 16)
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).build()
    model = HalvingSearch(estimator=clf, estimatorParamMaps=grid, evaluator=f1, factor=2, minResource=1, maxResource=2,
                          trainRatio=0.75, parallelism=2, seed=3, collectSubModels=True).fit(train)
    valid = train.select("*", F.rand(3).alias("r")).filter(F.col("r") >= 0.75).drop("r")
    best = model.subModels[model.bestIndex]
    assert "scoredRows" not in best.trainingInfo  # not predicted in the task
    last = [e for e in model.rungs if e["paramMapIndex"] == model.bestIndex][-1]
    assert last["metric"] == pytest.approx(f1.evaluate(best.transform(valid)), abs=1e-12)
