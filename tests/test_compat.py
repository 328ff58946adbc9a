"""Models saved by sparkdl_lite 0.1.0 (tests/fixtures/v0_1_0, made by make_v0_1_0.py) load and predict as before."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.functions import array_to_vector
from pyspark.ml.tuning import CrossValidatorModel

from sparkdl_lite import TFClassificationModel, TFImageTransformer, TFTransformer, images_from_numpy

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "v0_1_0")


@pytest.fixture(scope="module")
def expected():
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        return json.load(f)


def load(cls, name):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was saved by sparkdl_lite 0.1.0.*")
        return cls.load(os.path.join(FIXTURES, name))


def vectors(values):
    return np.array([np.asarray(v.toArray() if hasattr(v, "toArray") else v, dtype=float) for v in values])


def vector_df(spark, name, rows):
    pdf = pd.DataFrame({"id": range(len(rows)), name: [np.asarray(r, float) for r in rows]})
    return spark.createDataFrame(pdf).withColumn(name, array_to_vector(name))


def test_tf_transformer_0_1_0(spark, expected):
    want = expected["tf_transformer"]
    t = load(TFTransformer, "tf_transformer")
    assert t.getInputMapping() == {"v": "v"} and t.getBatchSize() == 4
    out = t.transform(vector_df(spark, "v", want["v"])).orderBy("id").select("out").collect()
    np.testing.assert_allclose(vectors(r.out for r in out), want["out"], rtol=1e-6)


def test_tf_image_transformer_0_1_0(spark, expected):
    want = expected["tf_image_transformer"]
    t = load(TFImageTransformer, "tf_image_transformer")
    assert t.getChannelOrder() == "RGB" and t.getOutputMode() == "array"
    images = images_from_numpy(spark, np.array(want["patches_rgb"], np.uint8), channel_order="RGB")
    out = t.transform(images).orderBy("image.origin").select("image.origin", "scores").collect()
    assert [r.origin for r in out] == want["origins"]
    np.testing.assert_allclose(vectors(r.scores for r in out), want["scores"], rtol=1e-5, atol=1e-6)


def test_tf_classification_model_0_1_0(spark, expected):
    want = expected["tf_classification_model"]
    m = load(TFClassificationModel, "tf_classification_model")
    assert m.numClasses == 10 and len(m.history) == 3
    out = m.transform(vector_df(spark, "features", want["features"])).orderBy("id").collect()
    assert [r.prediction for r in out] == want["prediction"]
    np.testing.assert_allclose(vectors(r.probability for r in out), want["probability"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(vectors(r.rawPrediction for r in out), want["rawPrediction"], rtol=1e-5, atol=1e-5)


def test_cross_validator_model_0_1_0(spark, expected):
    want = expected["cross_validator_model"]
    cvm = load(CrossValidatorModel, "cross_validator_model")
    np.testing.assert_allclose(cvm.avgMetrics, want["avgMetrics"])
    assert isinstance(cvm.bestModel, TFClassificationModel)
    est = cvm.getEstimator()
    assert est.getHiddenLayers() == [16] and est.getEpochs() == 3
    test = vector_df(spark, "features", expected["tf_classification_model"]["features"])
    out = cvm.transform(test).orderBy("id").collect()
    assert [r.prediction for r in out] == want["prediction"]
    np.testing.assert_allclose(vectors(r.probability for r in out), want["probability"], rtol=1e-5, atol=1e-7)
