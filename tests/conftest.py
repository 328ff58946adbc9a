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


FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def fashion_images():
    """300 real Fashion-MNIST test images (uint8, 300 x 28 x 28) and their labels."""
    from sparkdl_lite.core.datasets import read_idx

    if not os.path.isdir(FASHION_DIR):
        pytest.skip("Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
    x = read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))[:300]
    y = read_idx(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz"))[:300]
    return x, y


@pytest.fixture(scope="session")
def photo_patches():
    """220 real RGB 32 x 32 patches cut from scikit-learn's two sample photos (uint8, RGB)."""
    from sklearn.datasets import load_sample_images

    patches = []
    for photo in load_sample_images().images:  # 427 x 640 x 3 each
        for i in range(0, 427 - 32, 40):
            for j in range(0, 640 - 32, 56):
                patches.append(photo[i:i + 32, j:j + 32])
    return np.stack(patches).astype(np.uint8)


def small_cnn(input_shape, seed=0, classes=10):
    """A real Keras CNN with random weights (fixed seed): conv, pool, conv, dense, softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])


def run_job(mode, tmp_path, env=None, timeout=600, args=()):
    """Run ``tests/fault_jobs.py MODE OUT [ARGS]`` in a child process (a SparkContext of its own); its JSON result."""
    import json
    import subprocess

    out = tmp_path / f"{mode}.json"
    env = {**{k: v for k, v in os.environ.items() if k != "SPARKDL_LITE_FAILPOINTS"}, **(env or {})}
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "fault_jobs.py"), mode, str(out), *args],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=str(tmp_path))
    if proc.returncode != 0 or not out.exists():
        raise AssertionError(f"{mode} failed (rc={proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def cluster_jobs(tmp_path_factory):
    """One local-cluster[2,2,1024] run for test_cluster.py and test_reliability.py (fault_jobs.py cluster)."""
    return run_job("cluster", tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def local_jobs(tmp_path_factory):
    """One local[2,3] child with spark.driver.maxResultSize=1m (fault_jobs.py local-faults) for test_staging.py
    (TrainValidationSplit on data 4x that limit) and test_reliability.py (a failed first attempt, a worker crash)."""
    tmp = tmp_path_factory.mktemp("local_jobs")
    return run_job("local-faults", tmp, env={"SPARKDL_LITE_FAILPOINTS": f"kill_worker={tmp / 'kill-one-worker'}"},
                   args=(str(tmp / "stage"),))


# The Spark Connect half runs in its own pytest process (a Connect server cannot start beside a
# classic SparkContext): `SPARKDL_LITE_CONNECT_SUITE=1 pytest tests/connect`, as scripts/dev.sh does.
collect_ignore = [] if os.environ.get("SPARKDL_LITE_CONNECT_SUITE") else ["connect"]
