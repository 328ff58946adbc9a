"""One real transform with an installed sparkdl_lite wheel: a tiny TFTransformer on 4 rows, checked against NumPy.

Run by scripts/check_wheel.sh with the wheel venv's python, from outside the checkout (so the
checkout's sparkdl_lite/ cannot shadow the installed one). Spark is local[1] on loopback only.
"""
import os
import sys

import numpy as np


def main() -> int:
    import sparkdl_lite

    where = os.path.realpath(sparkdl_lite.__file__)
    if not where.startswith(os.path.realpath(sys.prefix) + os.sep):
        print(f"check_wheel: sparkdl_lite was imported from {where}, not from the venv {sys.prefix}.", file=sys.stderr)
        return 1

    import tensorflow as tf
    from pyspark.sql import SparkSession

    from sparkdl_lite import TFGraph, TFTransformer

    w = np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]], np.float32)
    b = np.array([0.1, -0.2], np.float32)
    graph = TFGraph.from_function(lambda x: {"y": tf.matmul(x, w) + b}, [tf.TensorSpec([None, 3], tf.float32, name="x")])
    x = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) / 4.0

    spark = (SparkSession.builder.master("local[1]").appName("sparkdl_lite check_wheel")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.sql.shuffle.partitions", "1")
             .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        spark_version = spark.version
        df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(x)], ["id", "x"])
        stage = TFTransformer(graph=graph, inputMapping={"x": "x"}, outputMapping={"y": "y"},
                              outputMode="array", batchSize=3)  # 4 rows: two graph calls, 3 + 1
        rows = stage.transform(df).orderBy("id").collect()
    finally:
        spark.stop()

    got = np.array([r["y"] for r in rows], np.float32)
    want = x @ w + b
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-6):
        print(f"check_wheel: TFTransformer output differs from NumPy.\ngot:\n{got}\nwant:\n{want}", file=sys.stderr)
        return 1
    print(f"check_wheel: transform OK: sparkdl_lite {sparkdl_lite.__version__} ({where}), TensorFlow {tf.__version__}, "
          f"Spark {spark_version}: {len(rows)} rows match NumPy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
