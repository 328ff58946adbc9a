"""Memory at scale: TFImageTransformer over 100k and 1M rows generated on the executors.

Rows are made on the executors (``spark.range`` joined with 1,000 real Fashion-MNIST images by
``id % 1000``, as image structs), scored by a small CNN and written to Spark's ``noop`` sink, so
nothing is collected to the driver. A driver thread samples the RSS of every Python worker
process (``pyspark.daemon`` children) and of the driver every 0.2 s; the peak worker RSS should not
grow with the row count, and the driver's should not move.

    .venv/bin/python benchmarks/memory.py --rows 100000,1000000 --json out/memory.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (loopback settings, sessions, data)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _own_processes() -> tuple:
    """(Python worker PIDs, driver JVM PIDs) started by this driver; other jobs' workers are ignored."""
    procs = common.processes()
    mine = common.descendants(os.getpid(), procs)
    workers = [p for p in mine if "pyspark.daemon" in procs[p][1] or "pyspark/daemon.py" in procs[p][1]]
    jvms = [p for p in mine if "java" in procs[p][1].split(" ", 1)[0]]
    return workers, jvms


class Sampler:
    """Peak RSS of this driver's Python workers (largest single process), of the Python driver and
    of the driver JVM (in local mode that JVM also runs the executor)."""

    def __init__(self) -> None:
        self.peak_worker = 0.0
        self.peak_driver = 0.0
        self.peak_jvm = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            workers, jvms = _own_processes()
            for pid in workers:
                self.peak_worker = max(self.peak_worker, _rss_mb(pid))
            for pid in jvms:
                self.peak_jvm = max(self.peak_jvm, _rss_mb(pid))
            self.peak_driver = max(self.peak_driver, _rss_mb(me))
            time.sleep(0.2)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--partitions", type=int, default=0, help="0: 2 per 10k rows, at least 4")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from pyspark.sql import functions as F

    from sparkdl_lite import TFGraph, TFImageTransformer, images_from_numpy

    spark = common.spark_session(args.master, {"spark.sql.execution.arrow.maxRecordsPerBatch": "2048"})
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Conv2D(64, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    graph = TFGraph.from_keras(model)
    base = images_from_numpy(spark, common.fashion_test_images(1000)).withColumn("k", F.monotonically_increasing_id())
    base = F.broadcast(base.select("k", "image").cache())
    t = TFImageTransformer(graph=graph, inputCol="image", outputCol="p", channelOrder="L", scale=1 / 255,
                           batchSize=args.batch_size)
    # Warm-up: start the Python workers and import TF before anything is timed.
    t.transform(spark.range(0, 4000, numPartitions=4).withColumn("k", F.col("id") % 1000).join(base, "k")) \
        .write.format("noop").mode("overwrite").save()
    results = []
    for n in [int(v) for v in args.rows.split(",")]:
        parts = args.partitions or max(4, n // 5000)
        rows = spark.range(0, n, numPartitions=parts).withColumn("k", F.col("id") % 1000).join(base, "k")
        out = t.transform(rows)
        with Sampler() as s:
            t0 = time.perf_counter()
            out.write.format("noop").mode("overwrite").save()
            wall = time.perf_counter() - t0
        results.append({"rows": n, "partitions": parts, "seconds": round(wall, 1), "images_per_s": round(n / wall),
                        "peak_python_worker_rss_mb": round(s.peak_worker), "peak_driver_rss_mb": round(s.peak_driver),
                        "peak_jvm_rss_mb": round(s.peak_jvm)})
        print(json.dumps(results[-1]), flush=True)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"rows x{b['rows'] / a['rows']:.0f}: peak worker RSS x{b['peak_python_worker_rss_mb'] / max(a['peak_python_worker_rss_mb'], 1):.2f}, "
              f"driver RSS x{b['peak_driver_rss_mb'] / max(a['peak_driver_rss_mb'], 1):.2f}, "
              f"JVM RSS x{b['peak_jvm_rss_mb'] / max(a['peak_jvm_rss_mb'], 1):.2f}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        json.dump({"results": results, "machine": common.machine(), "args": vars(args),
                   "command": "benchmarks/memory.py " + " ".join(argv if argv is not None else sys.argv[1:])},
                  open(args.json, "w"), indent=2)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
