"""TFTransformer on vector and array columns: several inputs and outputs, N-d reshape, bad input."""
import numpy as np
import pytest
import tensorflow as tf
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from sparkdl_lite import TFGraph, TFTransformer


@pytest.fixture(scope="module")
def two_in_two_out():
    """a: 4x4x3 image-like tensor, b: 2-vector -> s = sum(a) + b (2), d = 2 * a flattened (48)."""
    def fn(a, b):
        return {"s": tf.reduce_sum(a, axis=[1, 2, 3])[:, None] + b, "d": tf.reshape(2.0 * a, [-1, 48]) * b[:, :1]}

    return TFGraph.from_function(fn, [tf.TensorSpec([None, 4, 4, 3], tf.float32, name="a"),
                                      tf.TensorSpec([None, 2], tf.float32, name="b")])


@pytest.fixture(scope="module")
def vec_df(spark):
    from sklearn.datasets import load_digits

    d = load_digits()  # real 8x8 digits: 64 values; use the first 48 as a 4x4x3 tensor
    rows = [(i, Vectors.dense(d.data[i, :48]), [float(d.target[i]), float(d.data[i, 60])]) for i in range(40)]
    return spark.createDataFrame(rows, ["id", "va", "ab"]).repartition(3)


def test_two_inputs_two_outputs_equal_running_the_graph(vec_df, two_in_two_out):
    t = TFTransformer(graph=two_in_two_out, inputMapping={"va": "a", "ab": "b:0"},
                      outputMapping={"s": "S", "d:0": "D"}, batchSize=7)
    rows = t.transform(vec_df).orderBy("id").collect()
    assert len(rows) == 40
    a = np.stack([r.va.toArray() for r in rows]).astype(np.float32).reshape(-1, 4, 4, 3)
    b = np.array([r.ab for r in rows], np.float32)
    want = two_in_two_out.load()({"a:0": a, "b:0": b})
    np.testing.assert_allclose(np.stack([r.S.toArray() for r in rows]), want["s:0"], rtol=1e-6)
    np.testing.assert_allclose(np.stack([r.D.toArray() for r in rows]), want["d:0"], rtol=1e-6)
    # N-d reshape really is row-major 4x4x3: the first row's d equals 2*a*b0 flattened in C order.
    np.testing.assert_allclose(rows[0].D.toArray(), (2 * a[0] * b[0, 0]).reshape(-1), rtol=1e-6)


def test_array_output_mode_and_double_arrays(spark, two_in_two_out):
    df = spark.createDataFrame([([float(i)] * 48, [1.0, 2.0]) for i in range(5)], "va array<double>, ab array<double>")
    out = TFTransformer(graph=two_in_two_out, inputMapping={"va": "a", "ab": "b"}, outputMapping={"s": "S"},
                        outputMode="array").transform(df)
    assert dict(out.dtypes)["S"] == "array<float>"
    assert [r.S for r in out.collect()] == [[48.0 * i + 1.0, 48.0 * i + 2.0] for i in range(5)]


def test_float64_and_int_graphs(spark):
    g = TFGraph.from_function(lambda x: {"y": x * 3}, [tf.TensorSpec([None, 2], tf.int64, name="x")])
    df = spark.createDataFrame([([1, 2],), ([3, 4],)], "x array<bigint>")
    out = TFTransformer(graph=g, inputMapping={"x": "x"}, outputMapping={"y": "y"}, outputMode="array").transform(df)
    assert [r.y for r in out.collect()] == [[3, 6], [9, 12]]


def test_unknown_inner_dimension_takes_the_row_length(spark):
    g = TFGraph.from_function(lambda x: {"n": tf.reduce_sum(x, axis=1, keepdims=True)}, [tf.TensorSpec([None, None], tf.float32, name="x")])
    df = spark.createDataFrame([([1.0, 2.0, 3.0],), ([4.0, 5.0, 6.0],)], ["x"])
    out = TFTransformer(graph=g, inputMapping={"x": "x"}, outputMapping={"n": "n"}).transform(df)
    assert [r.n[0] for r in out.collect()] == [6.0, 15.0]


def test_missing_column_wrong_type_and_unknown_tensors(vec_df, two_in_two_out):
    def t(inp, outp):
        return TFTransformer(graph=two_in_two_out, inputMapping=inp, outputMapping=outp)

    with pytest.raises(ValueError, match="input column 'nope' is not in the DataFrame"):
        t({"nope": "a", "ab": "b"}, {"s": "S"}).transform(vec_df)
    with pytest.raises(TypeError, match="input column 'id' must be a Spark ML vector or an array of numbers.*got bigint"):
        t({"id": "a", "ab": "b"}, {"s": "S"}).transform(vec_df)
    with pytest.raises(ValueError, match=r"input tensor 'x' is not an input of the graph. Available inputs: \['a:0', 'b:0'\]"):
        t({"va": "x", "ab": "b"}, {"s": "S"}).transform(vec_df)
    with pytest.raises(ValueError, match="output tensor 'q' is not in the graph"):
        t({"va": "a", "ab": "b"}, {"q": "S"}).transform(vec_df)
    with pytest.raises(ValueError, match=r"graph inputs \['b:0'\] have no column"):
        t({"va": "a"}, {"s": "S"}).transform(vec_df)
    with pytest.raises(ValueError, match="output column 'id' already exists"):
        t({"va": "a", "ab": "b"}, {"s": "id"}).transform(vec_df)
    with pytest.raises(TypeError, match="inputMapping"):
        TFTransformer(graph=two_in_two_out, inputMapping={"va": 3})


def test_rows_of_the_wrong_length_name_column_and_tensor(spark, two_in_two_out):
    df = spark.createDataFrame([([1.0] * 47, [1.0, 2.0])], ["va", "ab"])
    t = TFTransformer(graph=two_in_two_out, inputMapping={"va": "a", "ab": "b"}, outputMapping={"s": "S"})
    with pytest.raises(Exception, match=r"column 'va' has rows of 47 values; tensor 'a:0' with shape \[None, 4, 4, 3\] takes 48"):
        t.transform(df).collect()


def test_null_rows_are_an_error_naming_the_column(spark, two_in_two_out):
    df = spark.createDataFrame([([1.0] * 48, [1.0, 2.0]), (None, [1.0, 2.0])], "va array<double>, ab array<double>")
    t = TFTransformer(graph=two_in_two_out, inputMapping={"va": "a", "ab": "b"}, outputMapping={"s": "S"})
    with pytest.raises(Exception, match="column 'va' has a null"):
        t.transform(df).collect()


def test_empty_dataframe_and_row_order(spark, vec_df, two_in_two_out):
    t = TFTransformer(graph=two_in_two_out, inputMapping={"va": "a", "ab": "b"}, outputMapping={"s": "S"})
    assert t.transform(vec_df.limit(0)).count() == 0
    ordered = vec_df.coalesce(1).orderBy("id")
    out = t.transform(ordered).collect()
    assert [r.id for r in out] == list(range(40))  # same rows, same order
    assert F  # functions module is used by other tests in this file's family
