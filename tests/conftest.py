"""Shared fixtures: one real local SparkSession (loopback only) and tiny real graphs."""
import os
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def spark_builder(master: str = "local[2]"):
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master)
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.default.parallelism", "2")
            .config("spark.python.worker.reuse", "true")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
            .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2"))


@pytest.fixture(scope="session")
def spark():
    s = spark_builder().getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def doubling_graph() -> bytes:
    """Frozen graph: output = 2 * image, float32, 4x4x3."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.float32, name="image")])
    def double(image):
        return tf.identity(2.0 * image, name="output")

    return double.get_concrete_function().graph.as_graph_def().SerializeToString()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
