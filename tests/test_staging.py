"""Training data staged once as Parquet and streamed into each task (issue #23): runner/staging.py, task_data's paths."""
import os

import numpy as np
import pytest
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from test_classifier import train_jobs, vector_df

from sparkdl_lite import HalvingSearch, TFClassifier
from sparkdl_lite.core.datasets import load_digits_split
from sparkdl_lite.runner import staging


@pytest.fixture(scope="module")
def digits_frames(spark):
    x_train, x_test, y_train, y_test = load_digits_split(seed=0)
    return vector_df(spark, x_train, y_train).cache(), vector_df(spark, x_test, y_test).cache()


def accuracy(model, df):
    return MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(df))


def staged_dirs(root):
    return sorted(p for p in os.listdir(root) if p.startswith("sparkdl-lite-staged-"))


@pytest.fixture
def count_stagings(monkeypatch):
    """How many DataFrames were staged (the real staging runs; the count is kept beside it)."""
    calls = []
    real = staging.stage

    def counted(*args, **kwargs):
        staged = real(*args, **kwargs)
        calls.append(staged.uri)
        return staged

    monkeypatch.setattr(staging, "stage", counted)
    return calls


def test_a_streamed_fit_trains_as_well_as_a_shipped_one_and_leaves_no_files(spark, digits_frames, tmp_path):
    train, test = digits_frames
    clf = TFClassifier(hiddenLayers=[32], epochs=8, batchSize=64, learningRate=1e-2, scale=1 / 16, seed=2)
    streamed = clf.copy({clf.trainingData: "stream", clf.stagingDir: str(tmp_path)}).fit(train)
    shipped = clf.copy({clf.trainingData: "ship"}).fit(train)
    assert streamed.trainingInfo["data"] == "stream" and shipped.trainingInfo["data"] == "ship"
    a_stream, a_ship = accuracy(streamed, test), accuracy(shipped, test)
    print(f"\ndigits test accuracy: streamed {a_stream:.4f}, shipped {a_ship:.4f}")
    assert a_stream > 0.9 and abs(a_stream - a_ship) < 0.04
    assert staged_dirs(tmp_path) == []  # removed when the fit ended


def test_auto_ships_small_data_and_local_mode_needs_no_location(spark, digits_frames, count_stagings):
    train, _ = digits_frames
    model = TFClassifier(hiddenLayers=[8], epochs=1, scale=1 / 16).fit(train)  # trainingData='auto' by default
    assert model.trainingInfo["data"] == "ship" and count_stagings == []
    model = TFClassifier(hiddenLayers=[8], epochs=1, scale=1 / 16, trainingData="stream").fit(train)  # no stagingDir
    assert model.trainingInfo["data"] == "stream" and len(count_stagings) == 1
    assert not os.path.exists(count_stagings[0])


def test_cross_validator_stages_each_fold_once(spark, digits_frames, tmp_path, count_stagings):
    train, _ = digits_frames
    clf = TFClassifier(hiddenLayers=[16], epochs=3, batchSize=64, scale=1 / 16, trainingData="stream",
                       stagingDir=str(tmp_path))
    grid = ParamGridBuilder().addGrid(clf.learningRate, [3e-3, 1e-2]).addGrid(clf.dropout, [0.0, 0.2]).build()
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=3, seed=1, parallelism=2,
                        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"))
    model = cv.fit(train)
    # one staged copy per fold (4 param maps train on it), and one for CrossValidator's refit on all the rows
    assert len(count_stagings) == 4 and len(set(count_stagings)) == 4
    assert max(model.avgMetrics) > 0.75  # the best configuration learns from the streamed rows
    assert staged_dirs(tmp_path) == []


def test_halving_search_stages_its_folds_once_for_all_rungs(spark, digits_frames, tmp_path, count_stagings):
    train, test = digits_frames
    clf = TFClassifier(hiddenLayers=[16], batchSize=64, scale=1 / 16, trainingData="stream", stagingDir=str(tmp_path))
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 3e-3, 1e-2, 3e-2]).addGrid(clf.dropout, [0.0, 0.2]).build()
    search = HalvingSearch(estimator=clf, estimatorParamMaps=grid, factor=2, minResource=1, maxResource=4, seed=3,
                           evaluator=MulticlassClassificationEvaluator(metricName="accuracy"), collectSubModels=True)
    model = search.fit(train)
    assert len({e["rung"] for e in model.rungs}) == 3  # 8 maps x 1 epoch, 4 x 2, 2 x 4
    # the training rows and the validation rows (accuracy is scored in the tasks), once for the three rungs,
    # and once more for the refit on all the rows
    assert len(count_stagings) == 3
    assert all(sub.trainingInfo["data"] == "stream" and sub.trainingInfo["scoredRows"] > 0 for sub in model.subModels)
    assert accuracy(model, test) > 0.85
    assert staged_dirs(tmp_path) == []


def test_bad_rows_found_while_staging_leave_no_files(spark, tmp_path):
    rows = [([0.0, 1.0], 0.0), ([1.0, 0.0], 1.5), ([1.0, 1.0], 1.0)]
    df = spark.createDataFrame(rows, "features array<double>, label double")
    clf = TFClassifier(hiddenLayers=[4], epochs=1, trainingData="stream", stagingDir=str(tmp_path))
    with pytest.raises(ValueError, match="labelCol 'label' must hold integral class indices 0..K-1; got 1.5"):
        clf.fit(df)
    ragged = spark.createDataFrame([([0.0, 1.0], 0.0), ([1.0], 1.0)], "features array<double>, label double")
    with pytest.raises(ValueError, match=r"featuresCol 'features' has rows of different lengths \(1 to 2 values\)"):
        clf.fit(ragged)
    nulls = spark.createDataFrame([([0.0, 1.0], 0.0), ([1.0, 0.0], None)], "features array<double>, label double")
    with pytest.raises(ValueError, match="labelCol 'label' has 1 null"):
        clf.fit(nulls)
    assert staged_dirs(tmp_path) == []


def test_a_failed_training_leaves_no_files(spark, digits_frames, tmp_path, monkeypatch):
    train, _ = digits_frames
    monkeypatch.setenv("SPARKDL_LITE_FAILPOINTS", "train=0")
    clf = TFClassifier(hiddenLayers=[8], epochs=1, scale=1 / 16, trainingData="stream", stagingDir=str(tmp_path))
    with pytest.raises(RuntimeError, match="injected failure"):
        clf.fit(train)
    assert staged_dirs(tmp_path) == []


def test_a_location_the_executors_cannot_read_fails_before_any_training(spark, digits_frames, tmp_path, monkeypatch):
    train, _ = digits_frames
    monkeypatch.setenv("SPARKDL_LITE_FAILPOINTS", "staged_unreadable=1")
    clf = TFClassifier(hiddenLayers=[8], epochs=1, trainingData="stream", stagingDir=str(tmp_path))
    before = train_jobs(spark)
    with pytest.raises(ValueError, match=r"the executors cannot read the training rows staged at .* Set param stagingDir"):
        clf.fit(train)
    assert not train_jobs(spark) - before  # no training job started (old ids may age out of the tracker)
    assert staged_dirs(tmp_path) == []


def test_bad_training_data_param_is_named(spark, digits_frames):
    train, _ = digits_frames
    with pytest.raises(ValueError, match=r"param 'trainingData' must be one of \['auto', 'ship', 'stream'\]; got 'disk'"):
        TFClassifier(trainingData="disk").fit(train)


def test_data_larger_than_max_result_size_trains_through_train_validation_split(local_jobs):
    """In a SparkContext of its own (spark.driver.maxResultSize=1m; conftest.local_jobs, stream_jobs.tvs):
    TrainValidationSplit on 4x that much data."""
    res = local_jobs["tvs"]
    assert res["data_bytes"] > 3 * res["limit_bytes"]
    assert res["validation_metrics"] and min(res["validation_metrics"]) > 0.8
    assert res["test_accuracy"] > 0.9
    assert res["data_paths"] == ["stream"]
    assert "too large to collect to the driver" in res["ship_error"] and "trainingData='stream'" in res["ship_error"]
    assert "maxResultSize" in res["ship_error"]
    assert res["left_over"] == []


def test_byte_sizes_of_max_result_size():
    assert staging.parse_size("1g") == 1 << 30 and staging.parse_size("64m") == 64 << 20
    assert staging.parse_size("512k") == 512 << 10 and staging.parse_size("0") is None
    assert np.isclose(staging.parse_size("1.5g"), 1.5 * (1 << 30))
