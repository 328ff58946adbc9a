"""Fault-injection jobs run in a subprocess by test_reliability.py (each needs its own SparkContext).

    python tests/fault_jobs.py label-executor-loss OUT.json
    python tests/fault_jobs.py label-worker-crash OUT.json
    python tests/fault_jobs.py train-first-attempt OUT.json
    python tests/fault_jobs.py tune-executor-loss OUT.json

Each prints nothing useful and writes a JSON result the test compares.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import conftest  # noqa: E402  (sets loopback and interpreter variables)
import numpy as np  # noqa: E402


def _session(master, **conf):
    b = conftest.spark_builder(master)
    for k, v in conf.items():
        b = b.config(k, v)
    s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s


def _wait_executors(sc, n, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sc._jsc.sc().getExecutorMemoryStatus().size() >= n + 1:  # + the driver
            return
        time.sleep(0.5)
    raise RuntimeError(f"only {sc._jsc.sc().getExecutorMemoryStatus().size() - 1} of {n} executors registered")


def executor_pids(app_id):
    """PIDs of this application's executor JVMs (ps -ww shows the full command line)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()
            if "CoarseGrainedExecutorBackend" in line and app_id in line]


def _start_killer(sc, stage_ready, delay=0.0, timeout=300):
    """A thread that SIGKILLs one executor JVM of this application once an active stage satisfies
    ``stage_ready(stage_info)`` (after ``delay`` seconds); returns the thread and the list of killed PIDs."""
    killed = []

    def killer():
        tracker = sc.statusTracker()
        deadline = time.time() + timeout
        while time.time() < deadline:
            for job in tracker.getActiveJobsIds():
                info = tracker.getJobInfo(job)
                for sid in info.stageIds if info else []:
                    st = tracker.getStageInfo(sid)
                    if st and stage_ready(st):
                        time.sleep(delay)
                        pids = executor_pids(sc.applicationId)
                        if pids:
                            os.kill(pids[0], signal.SIGKILL)
                            killed.append(pids[0])
                            return
            time.sleep(0.1)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    return th, killed


def _label_job(spark, n_rows=5000, partitions=8):
    from sparkdl_lite import TFGraph, TFImageTransformer, images_from_numpy
    from sparkdl_lite.core.datasets import read_idx

    x = read_idx(os.path.join(conftest.FASHION_DIR, "t10k-images-idx3-ubyte.gz"))[:n_rows]
    model = conftest.small_cnn((28, 28, 1), seed=0)
    df = images_from_numpy(spark, x, labels=list(range(n_rows)), num_partitions=partitions)
    t = TFImageTransformer(graph=TFGraph.from_keras(model), inputCol="image", outputCol="p", channelOrder="L",
                           scale=1 / 255, batchSize=250, outputMode="array")
    return t.transform(df).select("label", "p")


def _collect(df):
    rows = df.collect()
    return {int(r.label): np.asarray(r.p, np.float64) for r in rows}, len(rows)


def _max_diff(a, b):
    """Largest difference between two {label: output} maps (inf when their keys differ)."""
    if a.keys() != b.keys():
        return float("inf")
    return float(max(np.abs(a[k] - b[k]).max() for k in a))


def label_executor_loss(out, spark=None):
    own = spark is None
    if own:
        spark = _session("local-cluster[2,1,1024]", **{"spark.executor.memory": "1000m", "spark.task.maxFailures": "4"})
    sc = spark.sparkContext
    _wait_executors(sc, 2)
    clean, n_clean = _collect(_label_job(spark))
    th, killed = _start_killer(sc, lambda st: st.numCompletedTasks >= 2)
    faulty, n_faulty = _collect(_label_job(spark))
    th.join(timeout=5)
    json.dump({"killed": killed, "n_clean": n_clean, "n_faulty": n_faulty, "max_diff": _max_diff(clean, faulty),
               "executors_after": sc._jsc.sc().getExecutorMemoryStatus().size() - 1}, open(out, "w"))
    if own:
        spark.stop()


def label_worker_crash(out, spark=None):
    from sparkdl_lite.core import failpoint

    marker = failpoint.value("kill_worker")
    own = spark is None
    spark = spark or _session("local[2,3]")
    clean, n_clean = _collect(_label_job(spark, n_rows=600, partitions=4))
    open(marker, "w").close()  # the first Python worker to see it exits with os._exit mid-transform
    faulty, n_faulty = _collect(_label_job(spark, n_rows=600, partitions=4))
    json.dump({"marker_consumed": not os.path.exists(marker), "n_clean": n_clean, "n_faulty": n_faulty,
               "max_diff": _max_diff(clean, faulty)}, open(out, "w"))
    if own:
        spark.stop()


def _digits_fit(spark, n_maps=4):
    """fitMultiple over ``n_maps`` small param maps on real digits; {index: predictions on the test rows}."""
    from pyspark.ml.linalg import Vectors

    from sparkdl_lite.classifier import TFClassifier
    from sparkdl_lite.core.datasets import load_digits_split

    x_train, x_test, y_train, y_test = load_digits_split(seed=0)
    train = spark.createDataFrame([(Vectors.dense(v), float(t)) for v, t in zip(x_train, y_train)], ["features", "label"])
    test = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in enumerate(x_test[:100])], ["id", "features"])
    clf = TFClassifier(hiddenLayers=[32], epochs=4, seed=3)
    maps = [{clf.learningRate: lr} for lr in (1e-3, 3e-3, 1e-2, 3e-2)][:n_maps]
    preds, executors = {}, {}
    for i, model in clf.fitMultiple(train, maps):
        rows = model.transform(test).orderBy("id").select("probability").collect()
        preds[i] = np.stack([r.probability.toArray() for r in rows])
        executors[i] = model.trainingInfo.get("executorId")
    return preds, executors


def train_first_attempt(out, spark=None):
    own = spark is None
    spark = spark or _session("local[2,3]")
    clean, _ = _digits_fit(spark, n_maps=2)
    before = os.environ.get("SPARKDL_LITE_FAILPOINTS")
    os.environ["SPARKDL_LITE_FAILPOINTS"] = "train_first_attempt=0"  # read on the driver by fitMultiple
    faulty, _ = _digits_fit(spark, n_maps=2)
    if before is None:
        os.environ.pop("SPARKDL_LITE_FAILPOINTS")
    else:
        os.environ["SPARKDL_LITE_FAILPOINTS"] = before
    json.dump({"models": len(faulty), "max_diff": _max_diff(clean, faulty)}, open(out, "w"))
    if own:
        spark.stop()


def tune_executor_loss(out, spark=None):
    own = spark is None
    if own:
        spark = _session("local-cluster[2,1,1024]", **{"spark.executor.memory": "1000m", "spark.task.maxFailures": "4"})
    sc = spark.sparkContext
    _wait_executors(sc, 2)
    clean, clean_exec = _digits_fit(spark)
    th, killed = _start_killer(sc, lambda st: st.numTasks == 4 and st.numActiveTasks >= 1, delay=2.0)
    faulty, faulty_exec = _digits_fit(spark)
    th.join(timeout=5)
    json.dump({"killed": killed, "models": len(faulty), "max_diff": _max_diff(clean, faulty),
               "clean_executors": sorted(set(map(str, clean_exec.values()))),
               "faulty_executors": sorted(set(map(str, faulty_exec.values())))}, open(out, "w"))
    if own:
        spark.stop()


def local_faults(out):
    """Both local[2,3] faults in one SparkContext (saves a Spark and TF start-up in the suite)."""
    spark = _session("local[2,3]")
    train_first_attempt(out + ".train", spark)
    label_worker_crash(out + ".label", spark)
    json.dump({"train": json.load(open(out + ".train")), "label": json.load(open(out + ".label"))}, open(out, "w"))
    spark.stop()


def cluster_faults(out):
    """Both executor-loss faults on one local-cluster[2,1,1024]."""
    spark = _session("local-cluster[2,1,1024]", **{"spark.executor.memory": "1000m", "spark.task.maxFailures": "4"})
    tune_executor_loss(out + ".tune", spark)
    label_executor_loss(out + ".label", spark)
    json.dump({"tune": json.load(open(out + ".tune")), "label": json.load(open(out + ".label"))}, open(out, "w"))
    spark.stop()


if __name__ == "__main__":
    mode, out_path = sys.argv[1], sys.argv[2]
    {"label-executor-loss": label_executor_loss, "label-worker-crash": label_worker_crash,
     "train-first-attempt": train_first_attempt, "tune-executor-loss": tune_executor_loss,
     "local-faults": local_faults, "cluster-faults": cluster_faults}[mode](out_path)
