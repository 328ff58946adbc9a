"""The engine on a classic session: shipping, files through Spark, and the executors' packages check."""
import numpy as np
import pytest

from sparkdl_lite.runner import engine


def test_ship_and_read_back(spark):
    data = np.random.default_rng(0).bytes(3000)
    shipped = engine.ship(spark, data)
    assert shipped.read() == data and len(shipped.key) == 64
    import pyarrow as pa

    def f(batches):
        for b in batches:
            yield pa.RecordBatch.from_pylist([{"n": len(shipped.read())}] * b.num_rows)

    assert [r.n for r in spark.range(2).mapInArrow(f, "n long").collect()] == [3000, 3000]
    engine.release(shipped)


def test_bytes_through_spark_files(spark, tmp_path):
    big = np.random.default_rng(1).bytes(engine._CHUNK * 2 + 17)  # three chunks, out of order on disk is fine
    engine.write_bytes(spark, str(tmp_path / "blob"), big)
    assert engine.read_bytes(spark, str(tmp_path / "blob")) == big
    engine.write_bytes(spark, str(tmp_path / "blob"), b"")  # overwrite, and an empty file
    assert engine.read_bytes(spark, str(tmp_path / "blob")) == b""
    (tmp_path / "plain.pb").write_bytes(b"\x00\x01\x02")
    assert engine.read_bytes(spark, str(tmp_path / "plain.pb"), blob=False) == b"\x00\x01\x02"
    with pytest.raises(ValueError, match="cannot read"):
        engine.read_bytes(spark, str(tmp_path / "nothing"))
    assert engine.exists(spark, str(tmp_path / "blob")) and not engine.exists(spark, str(tmp_path / "nothing"))


def test_session_facts(spark):
    assert not engine.is_connect(spark) and engine.master(spark) == "local[2]" and engine.is_local_mode(spark)
    assert engine.default_parallelism(spark) == 2 and engine.cluster_shape(spark) == (1, 2)
    assert engine.conf(spark, "spark.sql.shuffle.partitions") == "4"


CASES = {"executor_missing=tensorflow": "TensorFlow is not installed in the executors' Python",
         "executor_missing=sparkdl_lite": "sparkdl_lite is not installed in the executors' Python",
         "executor_version=0.0.9": "has sparkdl_lite 0.0.9 but this driver has"}


@pytest.mark.parametrize("point", list(CASES))
def test_executors_without_our_packages_give_one_clear_error(spark, point):
    """The executors' Python lacks a package (or has another version): one clear error, no task traceback.

    The fail point reaches the executors through ``SparkContext.environment``: the Python workers of
    a UDF made after it is set start with it (Spark keeps a worker pool per environment), so this
    runs in the suite's session instead of a SparkContext of its own per case."""
    import tensorflow as tf

    from sparkdl_lite import TFGraph, TFTransformer

    g = TFGraph.from_function(lambda v: {"y": v * 2.0}, [tf.TensorSpec([None, 2], tf.float32, name="v")])
    df = spark.createDataFrame([([1.0, 2.0],)], "v array<float>")
    env = spark.sparkContext.environment
    before = env.get("SPARKDL_LITE_FAILPOINTS")
    engine._checked.clear()
    env["SPARKDL_LITE_FAILPOINTS"] = point
    try:
        with pytest.raises(RuntimeError) as info:
            TFTransformer(graph=g, inputMapping={"v": "v"}, outputMapping={"y": "y"}).transform(df).collect()
    finally:
        if before is None:
            env.pop("SPARKDL_LITE_FAILPOINTS", None)
        else:
            env["SPARKDL_LITE_FAILPOINTS"] = before
        engine._checked.clear()
    assert CASES[point] in str(info.value) and "Traceback" not in str(info.value)
