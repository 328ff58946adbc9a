"""Streaming jobs that need a session with a small spark.driver.maxResultSize (1m), so one of their own.

    SPARK_TESTING=1 python tests/stream_jobs.py connect-tvs OUT.json STAGING_DIR   # tests/connect
    python tests/stream_jobs.py tvs OUT.json STAGING_DIR                           # by hand

The classic suite runs :func:`tvs` inside fault_jobs.py's local[2,3] child (mode ``local-faults``), whose
session has the same limit: one child process instead of two. Writes a JSON result the test checks.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import conftest  # noqa: E402  (sets loopback and interpreter variables)


def tvs(out, stage_dir, connect=False, spark=None):
    """TrainValidationSplit over data 4x spark.driver.maxResultSize (1m): 'auto' streams it; 'ship' says why it cannot.

    ``connect``: through a Spark Connect client of a local server of its own (SPARK_TESTING=1 in the
    environment gives it an ephemeral port, so it runs beside the Connect suite's server)."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit
    from test_classifier import vector_df

    from sparkdl_lite import TFClassifier
    from sparkdl_lite.core.datasets import load_digits_split
    from sparkdl_lite.runner import staging

    os.makedirs(stage_dir, exist_ok=True)
    own = spark is None
    if own and connect:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.remote("local[2]").config("spark.driver.maxResultSize", "1m").getOrCreate()
    elif own:
        spark = conftest.spark_builder("local[2]").config("spark.driver.maxResultSize", "1m").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
    x_train, x_test, y_train, y_test = load_digits_split(seed=0)
    one = vector_df(spark, x_train, y_train)
    # 12 copies of the 1,347 training rows (a cross join keeps the plan shallow; Connect refuses deep unions)
    big = one.crossJoin(spark.range(12).withColumnRenamed("id", "copy")).drop("copy").repartition(4).cache()
    rows, data_bytes = staging.estimate_bytes(big, "features", "vector")
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy")
    clf = TFClassifier(hiddenLayers=[32], epochs=2, batchSize=256, learningRate=3e-3, scale=1 / 16,
                       stagingDir=stage_dir)  # 'auto'
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 3e-3]).build()
    model = TrainValidationSplit(estimator=clf, estimatorParamMaps=grid, evaluator=accuracy, trainRatio=0.8,
                                 seed=1).fit(big)
    test_acc = accuracy.evaluate(model.bestModel.transform(vector_df(spark, x_test, y_test)))
    try:
        clf.copy({clf.trainingData: "ship"}).fit(big)
        ship_error = ""
    except ValueError as exc:
        ship_error = str(exc)
    json.dump({"rows": rows, "data_bytes": data_bytes, "limit_bytes": staging.ship_limit(spark),
               "validation_metrics": list(model.validationMetrics), "test_accuracy": test_acc,
               "data_paths": sorted({model.bestModel.trainingInfo["data"]}), "ship_error": ship_error,
               "left_over": sorted(p for p in os.listdir(stage_dir) if p.startswith("sparkdl-lite-staged-"))},
              open(out, "w"))
    big.unpersist()
    if own:
        spark.stop()


if __name__ == "__main__":
    mode, out_path = sys.argv[1], sys.argv[2]
    {"tvs": tvs, "connect-tvs": lambda out, stage: tvs(out, stage, connect=True)}[mode](out_path, *sys.argv[3:])
