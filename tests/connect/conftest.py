"""The Spark Connect half of the suite: one local Connect server per pytest process.

A Connect server cannot start in a process that holds a classic SparkContext, so this folder runs
in its own pytest process (``scripts/dev.sh test`` runs it after the classic suite). The server
is started by the session fixture itself with ``SparkSession.builder.remote("local[2]")``.
"""
import os
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: shared helpers

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    pytest.importorskip("grpc", reason="the Spark Connect client needs pip install 'sparkdl_lite[connect]'")


@pytest.fixture(scope="session")
def spark():
    """The suite's local Connect server, on an ephemeral port: pyspark binds port 0 and its client asks the
    server for the port when SPARK_TESTING is set (Spark's own tests run side by side so), never the
    fixed 15002 another suite on this machine may hold."""
    from pyspark.sql import SparkSession

    os.environ["SPARK_TESTING"] = "1"
    s = SparkSession.builder.remote("local[2]").getOrCreate()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def photo_patches():
    """220 real RGB 32 x 32 patches cut from scikit-learn's two sample photos (uint8, RGB)."""
    from sklearn.datasets import load_sample_images

    patches = []
    for photo in load_sample_images().images:
        for i in range(0, 427 - 32, 40):
            for j in range(0, 640 - 32, 56):
                patches.append(photo[i:i + 32, j:j + 32])
    return np.stack(patches).astype(np.uint8)
