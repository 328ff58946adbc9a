"""TFClassifier(model=...) on real Spark: the user's own Keras model tuned, trained, frozen, saved."""
import keras
import numpy as np
import pytest
from conftest import small_cnn  # noqa: F401 - shared fixtures module
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.tuning import CrossValidator, CrossValidatorModel, ParamGridBuilder
from test_classifier import accuracy, job_count, vector_df
from test_keras_model import two_branch

from sparkdl_lite import TFClassificationModel, TFClassifier, expand_layer_params, images_from_numpy
from sparkdl_lite.core.datasets import load_digits_split


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def dfs(spark, digits):
    x_train, x_test, y_train, y_test = digits
    return vector_df(spark, x_train[:600], y_train[:600]).cache(), vector_df(spark, x_test, y_test).cache()


def test_cv_over_learning_rate_and_layer_params_beats_the_given_configuration(spark, dfs, tmp_path):
    train_df, test_df = dfs
    # The given configuration is a narrow hidden branch; the grid holds it (lr 1e-3, hidden.units 8, drop.rate 0.2).
    clf = TFClassifier(model=two_branch(hidden=8), epochs=6, batchSize=32)
    layer_grid = expand_layer_params({"hidden.units": [8, 64], "drop.rate": [0.2]})
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).addGrid(clf.layerParams, layer_grid).build()
    given_map = next(i for i, pm in enumerate(grid) if pm[clf.learningRate] == 1e-3 and pm[clf.layerParams]["hidden.units"] == 8)
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, parallelism=4, seed=1)
    cvm = cv.fit(train_df)
    given = clf.copy(grid[given_map]).fit(train_df)
    best_acc, given_acc = accuracy(cvm.bestModel, test_df), accuracy(given, test_df)
    assert best_acc >= given_acc, (cvm.avgMetrics, best_acc, given_acc)
    assert best_acc > 0.8
    assert cvm.bestModel.kerasModel.get_layer("hidden").units == grid[int(np.argmax(cvm.avgMetrics))][clf.layerParams]["hidden.units"]
    # the CV model saves, loads and predicts the same
    cvm.save(str(tmp_path / "cv"))
    again = CrossValidatorModel.load(str(tmp_path / "cv"))
    assert again.getEstimatorParamMaps()[given_map][again.getEstimator().layerParams] == {"hidden.units": 8, "drop.rate": 0.2}
    assert again.getEstimator().getModel().get_layer("hidden").units == 8
    p1 = np.array([r.probability.toArray() for r in cvm.transform(test_df).orderBy("id").collect()])
    p2 = np.array([r.probability.toArray() for r in again.transform(test_df).orderBy("id").collect()])
    np.testing.assert_array_equal(p1, p2)
    assert (tmp_path / "cv" / "bestModel" / "data" / "model.keras").exists()
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_spark_task_and_plain_keras_end_with_the_same_weights(spark, dfs, digits):
    x_train, _, y_train, _ = digits
    given = two_branch(seed=4)
    model = TFClassifier(model=given, epochs=2, batchSize=50, learningRate=3e-3, seed=11).fit(dfs[0])
    assert model.trainingInfo["taskCpus"] == 1 and set(model.trainingInfo["weights"].values()) == {"given"}
    # plain Keras, in this process, on the same batches (each epoch its own order, from the seed) with the same seed
    from sparkdl_lite.core.training import epoch_batches

    keras.utils.set_random_seed(11)
    ref = keras.Model.from_config(given.get_config())
    ref.set_weights(given.get_weights())
    keras.utils.set_random_seed(11)
    ref.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy())
    batches = epoch_batches(x_train[:600].astype("float32"), y_train[:600].astype("int64"), 50, seed=11, epochs=2)
    ref.fit(batches, epochs=2, steps_per_epoch=12, shuffle=False, verbose=0)
    trained = model.kerasModel
    for a, b in zip(trained.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # transform equals Keras predict on the same rows
    x = x_train[:40].astype("float32")
    df = vector_df(spark, x, y_train[:40])
    prob = np.array([r.probability.toArray() for r in model.transform(df).orderBy("id").collect()])
    np.testing.assert_allclose(prob, trained.predict(x, verbose=0), atol=1e-5)


def test_frozen_layers_keep_weights_and_a_fully_frozen_model_predicts_as_given(spark, dfs, digits):
    given = two_branch(frozen_base=True)
    model = TFClassifier(model=given, epochs=1, batchSize=64, layerParams={"hidden.units": 12}).fit(dfs[0])
    base_new, base_old = model.kerasModel.get_layer("base"), given.get_layer("base")
    for a, b in zip(base_new.get_weights(), base_old.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.trainingInfo["weights"]["hidden"] == "fresh" and model.trainingInfo["weights"]["base/block_1"] == "given"
    frozen = two_branch(seed=2)
    frozen.trainable = False
    fm = TFClassifier(model=frozen, epochs=1, learningRate=0.5).fit(dfs[0])
    for a, b in zip(fm.kerasModel.get_weights(), frozen.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = digits[0][:30].astype("float32")
    prob = np.array([r.probability.toArray() for r in fm.transform(vector_df(spark, x, digits[2][:30])).orderBy("id").collect()])
    np.testing.assert_allclose(prob, frozen.predict(x, verbose=0), atol=1e-6)


def test_rgb_images_reach_a_binary_sigmoid_model_unscaled(spark, photo_patches, tmp_path):
    # Which of scikit-learn's two sample photos a 32x32 patch comes from: 1-unit sigmoid, compiled loss kept.
    n = len(photo_patches)
    labels = (np.arange(n) >= n // 2).astype(np.int64)
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255.0, name="rescale"),
                            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                            keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(1, activation="sigmoid", name="p")])
    net.compile(loss=keras.losses.BinaryCrossentropy())
    images = images_from_numpy(spark, photo_patches, channel_order="RGB")
    from pyspark.sql import functions as F

    labelled = images.withColumn("label", (F.regexp_extract("image.origin", r"(\d+)$", 1).cast("int") >= n // 2).cast("double"))
    clf = TFClassifier(model=net, featuresCol="image", epochs=3, batchSize=16, learningRate=1e-2)
    model = clf.fit(labelled)
    assert model.numClasses == 2
    out = model.transform(labelled).collect()
    order = np.array([int(r.image.origin.rsplit("/", 1)[-1]) for r in out])  # memory://<row>
    assert sorted(order) == list(range(n))
    prob = np.array([r.probability.toArray() for r in out])
    raw = np.array([r.rawPrediction.toArray() for r in out])
    pred = np.array([r.prediction for r in out])
    np.testing.assert_array_equal(pred, prob.argmax(1))
    np.testing.assert_array_equal(pred, raw.argmax(1))
    p = model.kerasModel.predict(photo_patches[order].astype("float32"), verbose=0)[:, 0]  # RGB 0-255: its own Rescaling
    np.testing.assert_allclose(prob[:, 1], p, atol=1e-5)
    assert (pred == labels[order]).mean() > 0.6
    clf.save(str(tmp_path / "clf"))
    loaded = TFClassifier.load(str(tmp_path / "clf"))
    assert loaded.getFeaturesCol() == "image" and loaded.getModel().get_layer("conv").filters == 4
    model.save(str(tmp_path / "m"))
    np.testing.assert_array_equal(TFClassificationModel.load(str(tmp_path / "m")).kerasModel.get_weights()[0],
                                  model.kerasModel.get_weights()[0])


def test_refused_on_the_driver_without_a_training_job(spark, dfs):
    from sparkdl_lite.runner import engine

    train_df = dfs[0]
    net = two_branch()
    engine.check_executors(spark)  # the session's one-time executors' check is not what this test counts
    before = job_count(spark)
    with pytest.raises(ValueError, match=r"no layer 'nope'\. Layers: \['base'"):
        TFClassifier(model=net, layerParams={"nope.units": 3}).fit(train_df)
    with pytest.raises(ValueError, match="param 'hiddenLayers' sizes the built-in architectures"):
        TFClassifier(model=net, hiddenLayers=[32]).fit(train_df)
    with pytest.raises(ValueError, match="param 'layerParams' .* needs a model of your own"):
        TFClassifier(layerParams={"hidden.units": 3}).fit(train_df)
    with pytest.raises(ValueError, match="is a Lambda layer"):
        TFClassifier(model=keras.Sequential([keras.Input((64,)), keras.layers.Lambda(lambda t: t, name="lam")]))
    assert job_count(spark) == before  # not even the data collect ran
    # shapes need the data: the collect runs, the training job does not
    train_df.select("features", "label").toArrow()
    collect_jobs = job_count(spark) - before
    image_net = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match=r"has shape \[64\] \(64 values\) but the model's input has shape \[28, 28, 1\] \(784 values\)"):
        TFClassifier(model=image_net, trainingData="ship").fit(train_df)  # 'auto' would add its size estimate
    five = keras.Sequential([keras.Input((64,)), keras.layers.Dense(5, name="out")])
    with pytest.raises(ValueError, match="the model has 5 output units but the labels hold 10 classes"):
        TFClassifier(model=five, trainingData="ship").fit(train_df)
    assert job_count(spark) - before == 3 * collect_jobs


def test_warm_start_continues_epochs_in_one_job(spark, dfs):
    train_df, test_df = dfs
    from sparkdl_lite.classifier import fit_tasks
    from sparkdl_lite.runner.train_job import FitTask

    clf = TFClassifier(hiddenLayers=[32], batchSize=64)
    first = [f.model for f in fit_tasks(clf, [FitTask(train_df, {clf.epochs: 1}),
                                              FitTask(train_df, {clf.epochs: 1, clf.learningRate: 1e-2})])]
    assert all(isinstance(m, TFClassificationModel) and len(m.history) == 1 for m in first)
    more = [f.model for f in fit_tasks(clf, [FitTask(train_df, {clf.epochs: 2}, first[0])])]
    assert [h["epoch"] for h in more[0].history] == [1, 2, 3]
    assert set(more[0].trainingInfo["weights"].values()) == {"warm"}
    assert more[0].history[1]["loss"] < first[0].history[0]["loss"]
    assert accuracy(more[0], test_df) > accuracy(first[0], test_df)
    bad = [f.model for f in fit_tasks(clf, [FitTask(train_df, {clf.epochs: 1, clf.learningRate: 1e9, clf.optimizer: "sgd"})])]
    assert isinstance(bad[0], TFClassificationModel) and bad[0].trainingInfo["diverged"]
    assert more[0].kerasModel.get_layer("dense_0").units == 32
