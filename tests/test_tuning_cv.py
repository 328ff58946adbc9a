"""TFClassifier inside Spark's own tuning tools: CrossValidator, TrainValidationSplit, Pipeline, save/load."""
import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import array_to_vector
from pyspark.ml.tuning import (
    CrossValidator,
    CrossValidatorModel,
    ParamGridBuilder,
    TrainValidationSplit,
)

from sparkdl_lite.classifier import TFClassificationModel, TFClassifier
from sparkdl_lite.core.datasets import load_digits_split


def vector_df(spark, x, y, column="features"):
    pdf = pd.DataFrame({"id": np.arange(len(x)), column: list(np.asarray(x, np.float64)),
                        "label": np.asarray(y, np.int64)})
    return spark.createDataFrame(pdf).withColumn(column, array_to_vector(column))


def predictions(model, df):
    return np.array([(r.prediction, *r.probability.toArray())
                     for r in model.transform(df).orderBy("id").select("prediction", "probability").collect()])


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def accuracy():
    return MulticlassClassificationEvaluator(metricName="accuracy")


def test_cross_validator_3x2_grid_picks_a_model_at_least_as_good_as_the_default(spark, digits, accuracy):
    x_train, x_test, y_train, y_test = digits
    train_df = vector_df(spark, x_train, y_train).cache()
    test_df = vector_df(spark, x_test, y_test).cache()
    clf = TFClassifier()
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 3e-3, 1e-2]).addGrid(clf.hiddenLayers, [[64], [128]]).build()
    cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, evaluator=accuracy, numFolds=2, parallelism=4, seed=7)
    cv_model = cv.fit(train_df)
    assert len(cv_model.avgMetrics) == 6
    best = cv_model.bestModel
    assert isinstance(best, TFClassificationModel)
    best_index = int(np.argmax(cv_model.avgMetrics))
    assert best.getLearningRate() == grid[best_index][clf.learningRate]
    assert best.getHiddenLayers() == grid[best_index][clf.hiddenLayers]
    default_acc = accuracy.evaluate(TFClassifier().fit(train_df).transform(test_df))
    best_acc = accuracy.evaluate(cv_model.transform(test_df))
    best_map = {p.name: v for p, v in grid[best_index].items()}
    print(f"\ndigits CV avgMetrics={np.round(cv_model.avgMetrics, 4).tolist()} best={best_map} "
          f"best test accuracy={best_acc:.4f} default test accuracy={default_acc:.4f}")
    assert best_acc >= default_acc


@pytest.fixture(scope="module")
def small(spark, digits):
    x_train, _, y_train, _ = digits
    return vector_df(spark, x_train[:300], y_train[:300], column="raw").cache()


def test_parallelism_1_and_4_give_the_same_avg_metrics(spark, small, accuracy):
    clf = TFClassifier(featuresCol="raw", epochs=2, learningRate=1e-2)
    grid = ParamGridBuilder().addGrid(clf.hiddenLayers, [[16], [32]]).build()
    metrics = []
    for parallelism in (1, 4):
        cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, evaluator=accuracy, numFolds=2,
                            parallelism=parallelism, seed=3, collectSubModels=parallelism == 4)
        model = cv.fit(small)
        metrics.append(model.avgMetrics)
    assert metrics[0] == metrics[1]
    assert len(model.subModels) == 2 and all(len(fold) == 2 for fold in model.subModels)
    assert model.subModels[0][1].getHiddenLayers() == [32]


def test_train_validation_split_over_a_pipeline(spark, small, accuracy):
    clf = TFClassifier(epochs=2, learningRate=1e-2)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["raw"], outputCol="features"), clf])
    grid = ParamGridBuilder().addGrid(clf.dropout, [0.0, 0.2]).build()
    tvs = TrainValidationSplit(estimator=pipeline, estimatorParamMaps=grid, evaluator=accuracy, trainRatio=0.75, seed=1)
    model = tvs.fit(small)
    assert len(model.validationMetrics) == 2
    assert isinstance(model.bestModel, PipelineModel)
    assert isinstance(model.bestModel.stages[-1], TFClassificationModel)
    assert model.transform(small).select("prediction").count() == 300


def test_cross_validator_model_and_pipeline_model_save_load(spark, small, accuracy, tmp_path):
    clf = TFClassifier(epochs=1, learningRate=1e-2)
    pipeline = Pipeline(stages=[StandardScaler(inputCol="raw", outputCol="features"), clf])
    grid = ParamGridBuilder().addGrid(clf.hiddenLayers, [[8], [16, 8]]).build()
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, evaluator=accuracy, numFolds=2, seed=5)
    cv_model = cv.fit(small)
    expected = predictions(cv_model, small)

    cv_model.save(str(tmp_path / "cv"))
    loaded = CrossValidatorModel.load(str(tmp_path / "cv"))
    assert loaded.avgMetrics == cv_model.avgMetrics
    stage = loaded.bestModel.stages[-1]
    assert isinstance(stage, TFClassificationModel) and stage.numClasses == 10
    assert stage.trainingInfo == cv_model.bestModel.stages[-1].trainingInfo
    np.testing.assert_allclose(predictions(loaded, small), expected, atol=1e-6)
    loaded_clf = loaded.getEstimator().getStages()[-1]
    assert isinstance(loaded_clf, TFClassifier) and loaded_clf.uid == clf.uid
    assert [m[loaded_clf.hiddenLayers] for m in loaded.getEstimatorParamMaps()] == [[8], [16, 8]]

    cv_model.bestModel.save(str(tmp_path / "pipeline"))
    pipeline_model = PipelineModel.load(str(tmp_path / "pipeline"))
    np.testing.assert_allclose(predictions(pipeline_model, small), expected, atol=1e-6)
