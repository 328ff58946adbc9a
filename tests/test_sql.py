"""A stage registered as a SQL function: SELECT classify(image) FROM photos (also run on Connect: tests/connect)."""
import keras
import numpy as np
import pandas as pd
import pytest

from sparkdl_lite import TFClassifier, TFGraph, TFImageTransformer, images_from_numpy


def check_image_sql(spark, photo_patches):
    keras.utils.set_random_seed(1)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(3, 3), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Softmax()])
    scorer = TFImageTransformer(graph=TFGraph.from_keras(net), inputCol="image", outputCol="scores",
                                channelOrder="RGB", scale=1 / 255.0, outputMode="array")
    images_from_numpy(spark, photo_patches[:12]).createOrReplaceTempView("photos")
    scorer.registerUDF(spark, "score")
    rows = spark.sql("SELECT image.origin AS origin, score(image) AS p FROM photos").collect()
    assert len(rows) == 12
    got = {r.origin: r.p for r in rows}
    want = net.predict(photo_patches[:12].astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(np.array([got[f"memory://{i}"] for i in range(12)]), want, atol=1e-5)
    with pytest.raises(ValueError, match="must be a SQL identifier"):
        scorer.registerUDF(spark, "drop table")


def check_classifier_sql(spark):
    from sklearn.datasets import load_digits

    d = load_digits()
    pdf = pd.DataFrame({"id": np.arange(300), "f": list(d.data[:300].astype(np.float32)), "label": d.target[:300].astype(float)})
    df = spark.createDataFrame(pdf)
    model = TFClassifier(featuresCol="f", hiddenLayers=[16], epochs=2).fit(df)
    model.registerUDF(spark, "classify")
    df.createOrReplaceTempView("digits")
    sql = spark.sql("SELECT id, classify(f) AS p FROM digits ORDER BY id").collect()
    want = np.array([r.probability.toArray() for r in model.transform(df).orderBy("id").collect()])
    np.testing.assert_allclose(np.array([r.p for r in sql]), want, atol=1e-6)


def test_image_transformer_as_sql_function(spark, photo_patches):
    check_image_sql(spark, photo_patches)


def test_classification_model_as_sql_function(spark):
    check_classifier_sql(spark)
