"""TFClassifier / TFClassificationModel: real Spark (local[2]), real TensorFlow, scikit-learn's digits."""
import threading

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from sparkdl_lite.classifier import TFClassificationModel, TFClassifier
from sparkdl_lite.core.datasets import load_digits_split
from sparkdl_lite.images import images_from_numpy


def vector_df(spark, x, y):
    """``id``, ``features`` (a Spark ML vector) and ``label``, built through Arrow (no Python workers)."""
    pdf = pd.DataFrame({"id": np.arange(len(x)), "features": list(np.asarray(x, np.float64)),
                        "label": np.asarray(y, np.int64)})
    return spark.createDataFrame(pdf).withColumn("features", array_to_vector("features"))


def train_jobs(spark):
    """Ids of the Spark jobs TFClassifier tagged as training jobs so far."""
    from sparkdl_lite.classifier import TRAIN_JOB_TAG

    return set(spark.sparkContext._jsc.sc().statusTracker().getJobIdsForTag(TRAIN_JOB_TAG))


def probabilities(model, df):
    rows = model.transform(df).orderBy("id").select("probability").collect()
    return np.array([r.probability.toArray() for r in rows])


def accuracy(model, df):
    out = model.transform(df)
    return MulticlassClassificationEvaluator(metricName="accuracy").evaluate(out)


def job_count(spark):
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup())


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def digits_dfs(spark, digits):
    x_train, x_test, y_train, y_test = digits
    return vector_df(spark, x_train, y_train).cache(), vector_df(spark, x_test, y_test).cache()


@pytest.fixture(scope="module")
def small_df(spark, digits):
    """300 training rows: enough for the mechanics tests, fast to train."""
    x_train, _, y_train, _ = digits
    return vector_df(spark, x_train[:300], y_train[:300]).cache()


# ---------------------------------------------------------------------------------------- quality
def test_mlp_reaches_95_percent_on_digits(spark, digits, digits_dfs):
    # The defaults (epochs=5) reach ~0.91 on digits; 10 epochs of the otherwise default mlp reach ~0.97.
    train_df, test_df = digits_dfs
    model = TFClassifier(epochs=10).fit(train_df)
    assert isinstance(model, TFClassificationModel)
    acc = accuracy(model, test_df)
    assert acc >= 0.95, acc
    assert model.numClasses == 10
    assert [h["epoch"] for h in model.history] == list(range(1, 11))
    assert model.history[-1]["accuracy"] > model.history[0]["accuracy"]
    info = model.trainingInfo
    assert info["executorId"] == "driver" and info["seconds"] > 0 and info["diverged"] is False
    assert info["taskCpus"] == 1
    # Where the task's time went: worker age at task start, TF import, broadcast read, train() phases.
    assert set(info["startup"]) == {"workerAge", "tensorflow", "broadcast"}
    assert all(v >= 0 for v in info["startup"].values())
    assert set(info["phases"]) == {"import", "build", "fit", "freeze"}
    assert sum(info["phases"].values()) <= info["seconds"] + 1e-6

    # Columns and values against NumPy: the frozen graph run directly on the test features.
    out = model.transform(test_df).orderBy("id").collect()
    prob = np.array([r.probability.toArray() for r in out])
    raw = np.array([r.rawPrediction.toArray() for r in out])
    pred = np.array([r.prediction for r in out])
    _, x_test, _, _ = digits
    expected = model.graph.load()({"features:0": x_test})
    np.testing.assert_allclose(prob, expected["probability:0"], atol=1e-6)
    logits = expected["logits:0"]
    np.testing.assert_allclose(raw, logits - logits.mean(axis=1, keepdims=True), atol=1e-4)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pred, prob.argmax(axis=1))


def test_cnn_with_input_shape_on_flat_digits(spark, digits_dfs):
    train_df, test_df = digits_dfs
    model = TFClassifier(architecture="cnn", inputShape=[8, 8, 1], epochs=5).fit(train_df)
    assert model.graph.tensor("features:0").shape == (None, 64)
    acc = accuracy(model, test_df)
    assert acc >= 0.9, acc


def test_image_struct_features_train_a_cnn(spark, digits):
    x_train, x_test, y_train, y_test = digits
    to_uint8 = lambda x: np.clip(x * 16, 0, 255).astype(np.uint8).reshape(-1, 8, 8)  # noqa: E731
    train_df = images_from_numpy(spark, to_uint8(x_train), labels=y_train, column="features")
    test_df = images_from_numpy(spark, to_uint8(x_test[:200]), labels=y_test[:200], column="features")
    model = TFClassifier(architecture="cnn", epochs=5).fit(train_df)
    assert model.graph.tensor("features:0").shape == (None, 8, 8, 1)  # raw uint8 values, Rescaling inside
    out = model.transform(test_df).collect()
    by_origin = {r.features.origin: r for r in out}
    prob = np.array([by_origin[f"memory://{i}"].probability.toArray() for i in range(200)])
    pred = np.array([by_origin[f"memory://{i}"].prediction for i in range(200)])
    expected = model.graph.load()({"features:0": to_uint8(x_test[:200])[..., None].astype(np.float32)})["probability:0"]
    np.testing.assert_allclose(prob, expected, atol=1e-5)
    assert (pred == y_test[:200]).mean() >= 0.8


def test_two_classes_work_with_binary_evaluator(spark, digits):
    from sklearn.metrics import roc_auc_score

    x_train, x_test, y_train, y_test = digits
    keep_tr, keep_te = np.isin(y_train, [3, 8]), np.isin(y_test, [3, 8])
    train_df = vector_df(spark, x_train[keep_tr], (y_train[keep_tr] == 8).astype(int))
    test_df = vector_df(spark, x_test[keep_te], (y_test[keep_te] == 8).astype(int))
    model = TFClassifier(hiddenLayers=[64], learningRate=1e-2).fit(train_df)
    assert model.numClasses == 2
    out = model.transform(test_df).orderBy("id")
    assert len(out.first().rawPrediction) == 2
    auc = BinaryClassificationEvaluator(metricName="areaUnderROC").evaluate(out)
    rows = out.select("label", "probability").collect()
    expected = roc_auc_score([r.label for r in rows], [r.probability[1] for r in rows])
    assert auc == pytest.approx(expected, abs=1e-3)  # Spark's evaluator down-samples the curve into bins
    assert auc > 0.95


# ---------------------------------------------------------------------------------------- tuning mechanics
def test_fit_and_fitMultiple_give_the_same_predictions(spark, small_df, digits_dfs, digits):
    _, test_df = digits_dfs
    x_test = digits[1]
    clf = TFClassifier(hiddenLayers=[32], epochs=3, seed=3)
    single = clf.fit(small_df)
    maps = [{clf.hiddenLayers: [16]}, {clf.hiddenLayers: [32]}]
    models = dict(clf.fitMultiple(small_df, maps))
    assert sorted(models) == [0, 1]
    assert models[0].getHiddenLayers() == [16] and models[1].getHiddenLayers() == [32]
    np.testing.assert_allclose(probabilities(models[1], test_df), probabilities(single, test_df), atol=1e-6)
    run = lambda m: m.graph.load()({"features:0": x_test})["probability:0"]  # noqa: E731
    assert not np.allclose(run(models[0]), run(single), atol=1e-3)


def test_failing_param_map_does_not_lose_the_others(spark, small_df, monkeypatch):
    monkeypatch.setenv("SPARKDL_LITE_FAILPOINTS", "train=1")
    clf = TFClassifier(hiddenLayers=[16], epochs=1)
    maps = [{clf.learningRate: 1e-3}, {clf.learningRate: 2e-3}, {clf.learningRate: 3e-3}]
    it = clf.fitMultiple(small_df, maps)
    models, errors = {}, {}
    for _ in maps:
        try:
            index, model = next(it)
            models[index] = model
        except RuntimeError as exc:
            errors[len(models) + len(errors)] = str(exc)
    with pytest.raises(StopIteration):
        next(it)
    assert sorted(models) == [0, 2]
    assert list(errors) == [1]
    assert "param map 1 {learningRate: 0.002}" in errors[1] and "injected failure" in errors[1]
    assert all(m.graph.output_names == ["logits:0", "probability:0"] for m in models.values())


def test_fitMultiple_iterator_is_thread_safe_and_trains_in_one_job(spark, small_df):
    from pyspark.ml.functions import vector_to_array

    arrays = small_df.withColumn("features", vector_to_array("features"))  # array<double> features
    clf = TFClassifier(hiddenLayers=[8], epochs=1, trainingData="ship")  # 'auto' would add its size estimate
    maps = [{clf.seed: s} for s in range(4)]
    before = job_count(spark)
    it = clf.fitMultiple(arrays, maps)
    assert job_count(spark) == before + 1  # the Arrow collect; training waits for the first next()
    got, lock = [], threading.Lock()

    def consume():
        for index, model in it:
            with lock:
                got.append((index, model))

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for i, _ in got) == [0, 1, 2, 3]
    assert all(m.getSeed() == i for i, m in got)
    assert job_count(spark) == before + 2  # one training job for all four param maps
    assert len({m.graph.digest for _, m in got}) == 4

    # Array features score too; an output column set to "" is skipped.
    model = dict(got)[0]
    out = model.setProbabilityCol("").setRawPredictionCol("").transform(arrays)
    assert out.columns == ["id", "features", "label", "prediction"]
    rows = out.orderBy("id").collect()
    x = np.array([r.features for r in rows], np.float32)
    expected = model.graph.load()({"features:0": x})["probability:0"].argmax(axis=1)
    np.testing.assert_array_equal([r.prediction for r in rows], expected)
    with pytest.raises(ValueError, match="output column 'label'"):
        model.setPredictionCol("label").transform(arrays)


# ---------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    ({"learningRate": 0.0}, "TFClassifier: param 'learningRate' must be > 0; got 0.0."),
    ({"learningRate": -1.0}, "param 'learningRate' must be > 0; got -1.0"),
    ({"hiddenLayers": []}, "param 'hiddenLayers' must not be empty for architecture 'mlp'"),
    ({"architecture": "rnn"}, "param 'architecture' must be one of ['mlp', 'cnn']; got 'rnn'"),
    ({"dropout": 1.0}, "param 'dropout' must be in [0, 1); got 1.0"),
    ({"epochs": 0}, "param 'epochs' must be an int >= 1; got 0"),
    ({"batchSize": 0}, "param 'batchSize' must be an int >= 1; got 0"),
    ({"optimizer": "lbfgs"}, "param 'optimizer' must be one of"),
    ({"architecture": "cnn"}, "architecture 'cnn' needs image-shaped features"),
    ({"featuresCol": "nope"}, "featuresCol 'nope' is not in the DataFrame"),
    ({"labelCol": "nope"}, "labelCol 'nope' is not in the DataFrame"),
])
def test_bad_params_raise_before_any_spark_job(spark, small_df, kwargs, message):
    before = job_count(spark)
    with pytest.raises(ValueError) as info:
        TFClassifier(**kwargs).fit(small_df)
    assert message in str(info.value)
    assert job_count(spark) == before


def test_bad_param_map_in_fitMultiple_is_named(spark, small_df):
    clf = TFClassifier()
    before = job_count(spark)
    with pytest.raises(ValueError, match=r"param 'learningRate' must be > 0; got 0.0. \(param map 1: \{learningRate: 0.0\}\)"):
        clf.fitMultiple(small_df, [{clf.learningRate: 1e-3}, {clf.learningRate: 0.0}])
    assert job_count(spark) == before


@pytest.mark.parametrize("rows, schema, error, message", [
    ([([1.0, 2.0], 0.0), ([3.0, 4.0], 1.5)], "features array<double>, label double", ValueError,
     "labelCol 'label' must hold integral class indices 0..K-1; got 1.5"),
    ([([1.0, 2.0], 0), ([3.0, 4.0], -1)], "features array<double>, label long", ValueError,
     "labelCol 'label' must hold class indices >= 0; got -1."),
    ([([1.0, 2.0], 0), ([3.0, 4.0, 5.0], 1)], "features array<double>, label long", ValueError,
     "featuresCol 'features' has rows of different lengths (2 values in row 0, 3 in row 1)"),
    ([], "features array<double>, label long", ValueError, "the DataFrame is empty"),
    ([([1.0, 2.0], 0), ([3.0, 4.0], 0)], "features array<double>, label long", ValueError, "at least 2 classes"),
    ([([1.0, 2.0], "a"), ([3.0, 4.0], "b")], "features array<double>, label string", TypeError,
     "labelCol 'label' must be numeric"),
    ([("x", 0)], "features string, label long", TypeError, "featuresCol 'features' must be a Spark ML vector"),
])
def test_bad_data_raise_before_training(spark, rows, schema, error, message):
    df = spark.createDataFrame(rows, schema)
    before = train_jobs(spark)
    with pytest.raises(error) as info:
        TFClassifier(hiddenLayers=[4], epochs=1).fit(df)
    assert message in str(info.value)
    assert not train_jobs(spark) - before  # found before any training job (by the collect at the latest)


def test_input_shape_must_match_the_features(spark, small_df):
    with pytest.raises(ValueError, match=r"param 'inputShape' \[8, 8, 2\] holds 128 values but each row"):
        TFClassifier(architecture="cnn", inputShape=[8, 8, 2]).fit(small_df)


# ---------------------------------------------------------------------------------------- persistence
def test_model_and_estimator_save_load_round_trip(spark, small_df, tmp_path):
    clf = TFClassifier(hiddenLayers=[8], epochs=2, learningRate=3e-3, predictionCol="pred")
    model = clf.fit(small_df)
    assert model.uid == clf.uid and model.getPredictionCol() == "pred"
    path = str(tmp_path / "model")
    model.save(path)
    loaded = TFClassificationModel.load(path)
    assert loaded.uid == model.uid
    assert loaded.extractParamMap() == model.extractParamMap()
    assert loaded.graph == model.graph
    assert loaded.numClasses == 10 and loaded.history == model.history
    assert loaded.trainingInfo == model.trainingInfo
    x = np.array([r.features.toArray() for r in small_df.orderBy("id").collect()], np.float32)
    expected = model.graph.load()({"features:0": x})["probability:0"]
    np.testing.assert_allclose(probabilities(loaded, small_df), expected, atol=1e-6)

    copied = model.copy({model.probabilityCol: "p"})
    assert copied.graph == model.graph and copied.numClasses == 10 and copied.getProbabilityCol() == "p"

    clf.save(str(tmp_path / "clf"))
    clf2 = TFClassifier.load(str(tmp_path / "clf"))
    assert clf2.uid == clf.uid and clf2.extractParamMap() == clf.extractParamMap()
    assert clf2.getInputShape() is None and clf2.getHiddenLayers() == [8]


def test_param_maps_naming_other_columns_of_one_dataframe_train_on_their_own(spark, small_df):
    from pyspark.ml.functions import vector_to_array

    df = small_df.withColumn("half", F.slice(vector_to_array("features"), 1, 32))
    clf = TFClassifier(hiddenLayers=[8], epochs=1)
    models = dict(clf.fitMultiple(df, [{}, {clf.featuresCol: "half"}]))
    assert models[0].graph.tensor("features:0").shape[1:] == (64,)
    assert models[1].graph.tensor("features:0").shape[1:] == (32,)


def test_shared_task_data_collects_and_ships_once_across_calls(spark, small_df, digits_dfs):
    # What HalvingSearch does from rung to rung: the second call on the same DataFrame runs only its
    # training job (no collect) and reuses the shipment; a new DataFrame ships both anew.
    from sparkdl_lite.classifier import fit_tasks
    from sparkdl_lite.runner.task_data import TaskData
    from sparkdl_lite.runner.train_job import FitTask

    clf = TFClassifier(hiddenLayers=[16], epochs=1, batchSize=64)
    _, held = digits_dfs
    with TaskData(keep=True) as shared:
        first = fit_tasks(clf, [FitTask(small_df, {}, None, held), FitTask(small_df, {clf.learningRate: 1e-2}, None, held)],
                          data=shared)
        shipped = shared.ship(spark)
        before = job_count(spark)
        more = fit_tasks(clf, [FitTask(small_df, {}, first[0].model, held)], data=shared)
        assert job_count(spark) - before == 1  # the training job alone
        assert shared.ship(spark) is shipped
        assert [h["epoch"] for h in more[0].model.history] == [1, 2]
        assert len(more[0].labels) == len(more[0].predictions) == held.count()
        assert more[0].model.trainingInfo["scoredRows"] == held.count()
        other = small_df.limit(200)
        again = fit_tasks(clf, [FitTask(other, {})], data=shared)
        assert shared.ship(spark) is not shipped and isinstance(again[0].model, TFClassificationModel)
    assert not shared.has(small_df, "features", "label")  # closed: the driver's arrays are dropped


def test_longest_first_starts_the_largest_networks_first(small_df):
    # Spark starts a job's tasks in partition order: with longest_first the biggest network (most
    # multiply-adds per row) gets partition 0, so short trainings fill the slots at the job's end.
    from sparkdl_lite.classifier import fit_tasks
    from sparkdl_lite.runner.train_job import FitTask

    clf = TFClassifier(epochs=1, batchSize=64)
    widths = [8, 64, 16]
    given = [f.model for f in fit_tasks(clf, [FitTask(small_df, {clf.hiddenLayers: [w]}) for w in widths])]
    assert [m.trainingInfo["partitionId"] for m in given] == [0, 1, 2]
    models = [f.model for f in fit_tasks(clf, [FitTask(small_df, {clf.hiddenLayers: [w]}) for w in widths], longest=True)]
    assert [m.getHiddenLayers() for m in models] == [[w] for w in widths]  # results stay aligned with the tasks
    assert [m.trainingInfo["partitionId"] for m in models] == [2, 0, 1]
    # fitMultiple (what TrainValidationSplit and CrossValidator call) orders its tasks the same way
    fitted = dict(clf.fitMultiple(small_df, [{clf.hiddenLayers: [w]} for w in widths]))
    assert [fitted[i].getHiddenLayers() for i in range(3)] == [[w] for w in widths]
    assert [fitted[i].trainingInfo["partitionId"] for i in range(3)] == [2, 0, 1]


def test_a_validation_frame_without_the_label_is_named_before_any_collect(spark, small_df):
    from sparkdl_lite.classifier import fit_tasks
    from sparkdl_lite.runner.train_job import FitTask

    clf = TFClassifier(hiddenLayers=[8], epochs=1)
    before = job_count(spark)
    with pytest.raises(ValueError, match=r"the validation DataFrame of task 0 must have .* labelCol 'label'"):
        fit_tasks(clf, [FitTask(small_df, {}, None, small_df.drop("label"))])
    assert job_count(spark) == before  # neither the training rows nor the validation rows were collected
