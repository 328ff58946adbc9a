"""The engine on a classic session: shipping, files through Spark, and the executors' packages check."""
import os
import subprocess
import sys

import numpy as np
import pytest

from sparkdl_lite.runner import engine

HERE = os.path.dirname(os.path.abspath(__file__))


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


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from conftest import spark_builder
import tensorflow as tf
from sparkdl_lite import TFGraph, TFTransformer
from sparkdl_lite.runner import engine
g = TFGraph.from_function(lambda v: {{"y": v * 2.0}}, [tf.TensorSpec([None, 2], tf.float32, name="v")])
for point in {points!r}:
    engine._checked.clear()
    # the executors' environment (a running JVM keeps the one it started with)
    spark = spark_builder("local[1]").config("spark.executorEnv.SPARKDL_LITE_FAILPOINTS", point).getOrCreate()
    df = spark.createDataFrame([([1.0, 2.0],)], "v array<float>")
    try:
        TFTransformer(graph=g, inputMapping={{"v": "v"}}, outputMapping={{"y": "y"}}).transform(df).collect()
        print("NO ERROR", point)
    except RuntimeError as exc:
        print("ERROR", point, exc)
    spark.stop()
"""

CASES = {"executor_missing=tensorflow": "TensorFlow is not installed in the executors' Python",
         "executor_missing=sparkdl_lite": "sparkdl_lite is not installed in the executors' Python",
         "executor_version=0.0.9": "has sparkdl_lite 0.0.9 but this driver has"}


def test_executors_without_our_packages_give_one_clear_error():
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    code = _CHILD.format(tests=HERE, points=list(CASES))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=400)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(("ERROR", "NO ERROR"))]
    assert len(lines) == len(CASES), proc.stderr[-3000:]
    for line, (point, message) in zip(lines, CASES.items()):
        assert line.startswith(f"ERROR {point} ") and message in line, line
        assert "Traceback" not in line
