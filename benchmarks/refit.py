"""A lone fit (one param map, e.g. a tuner's refit of the best model) on a multi-core executor.

``TFClassifier.fit`` asks Spark for all the cores of an executor by stage-level scheduling (a task
resource profile), so TensorFlow trains with that many threads; without it the task would keep
``spark.task.cpus`` (1) while the other cores idle. On ``local-cluster[1,C,M]`` (one executor JVM
with C cores) this times the same fit both ways, interleaved, after a warm-up fit of each kind
(the profiled task runs in its own Python worker pool, so each pool is warm before timing). The
one-core way is the same code with the profile turned off on the driver.

    .venv/bin/python benchmarks/refit.py --json out/refit.json      # ~5 min on 2 cores
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--master", default="local-cluster[1,2,2048]", help="one executor with several cores")
    ap.add_argument("--sample", type=int, default=6000, help="Fashion-MNIST training images (default 6000)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2, help="timed fits of each kind, interleaved (default 2)")
    ap.add_argument("--json", default=None, help="write every number to this JSON file")
    args = ap.parse_args(argv)

    from sparkdl_lite import classifier, images_from_numpy
    from sparkdl_lite.core.datasets import load_fashion_mnist, sample
    from sparkdl_lite.runner import train_job

    info = common.machine()
    spark = common.spark_session(args.master, {"spark.executor.memory": "1536m", "spark.task.cpus": "1",
                                               "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1"}, app="sparkdl-lite-refit")
    app = spark.sparkContext.applicationId
    profile_fn = train_job.lone_task_profile  # switched off for the one-core baseline
    runs: Dict[str, List[Dict[str, float]]] = {"executor": [], "one_core": []}
    try:
        common.wait_for_executors(spark, 1)
        ds = sample(load_fashion_mnist(), args.sample, 10, seed=0)
        df = images_from_numpy(spark, ds.x_train, ds.y_train, num_partitions=2).cache()
        df.count()
        clf = classifier.TFClassifier(featuresCol="image", labelCol="label", architecture="cnn", epochs=args.epochs,
                                      seed=0)
        warm = clf.copy({clf.epochs: 1})

        def fit(kind: str, est: Any) -> Dict[str, float]:
            train_job.lone_task_profile = profile_fn if kind == "executor" else (lambda sc, n: None)
            try:
                t0 = time.perf_counter()
                model = est.fit(df)
                wall = time.perf_counter() - t0
            finally:
                train_job.lone_task_profile = profile_fn
            ti = model.trainingInfo
            return {"wall_s": wall, "train_s": ti["seconds"], "task_cpus": ti["taskCpus"],
                    "accuracy": model.history[-1]["accuracy"]}

        for kind in runs:  # warm both Python worker pools (TF import, first trace) before timing
            print(f"warm-up {kind}: {fit(kind, warm)}", flush=True)
        for r in range(args.repeats):
            for kind in runs:
                runs[kind].append(fit(kind, clf))
                print(f"repeat {r + 1} {kind}: {runs[kind][-1]}", flush=True)
    finally:
        spark.stop()
        common.remove_local_cluster_work(app)
    med = {k: common.median([x["wall_s"] for x in v]) for k, v in runs.items()}
    rows = [[k, str(v[0]["task_cpus"]), " ".join(f"{x['wall_s']:.1f}" for x in v), f"{med[k]:.1f}",
             f"{med['one_core'] / med[k]:.2f}"] for k, v in runs.items()]
    print(common.table(rows, ["lone fit", "task CPUs", "wall s per repeat", "median s", "speed-up vs one core"]))
    payload = {"machine": info, "args": vars(args), "runs": runs, "median_wall_s": med,
               "speedup": med["one_core"] / med["executor"]}
    common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
