"""Jobs that need a SparkContext of their own, run in a subprocess by the tests (one process holds one).

    python tests/fault_jobs.py local-faults OUT.json STAGING_DIR   # local[2,3], maxResultSize 1m: test_staging's
                                                        # TrainValidationSplit on 4x that much data (stream_jobs.tvs),
                                                        # then a failed first attempt and a worker crash
    python tests/fault_jobs.py cluster OUT.json         # local-cluster[2,2,1024]: test_cluster's fits, then
                                                        # an executor JVM killed mid-tuning and mid-labeling

One local-cluster serves test_cluster.py and test_reliability.py (a session fixture in conftest.py):
its start-up and the executors' TensorFlow imports are paid once. Each mode writes a JSON result the
tests check.
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
    killed: list = []

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
                            stage[0] = sid
                            return
            time.sleep(0.1)

    stage = [None]
    th = threading.Thread(target=killer, daemon=True)
    th.start()
    return th, killed, stage


def _failed_tasks(sc, stage):
    """Tasks of the killed stage that failed (0 when the kill came after they had all finished)."""
    info = sc.statusTracker().getStageInfo(stage[0]) if stage[0] is not None else None
    return info.numFailedTasks if info else 0


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


def local_faults(out, stage_dir):
    """test_staging's maxResultSize job, then both local[2,3] faults, in one SparkContext (one Spark and
    TensorFlow start-up for the suite instead of two). The tvs job runs first, before any fault point is armed."""
    import stream_jobs

    spark = _session("local[2,3]", **{"spark.driver.maxResultSize": "1m"})
    stream_jobs.tvs(out + ".tvs", stage_dir, spark=spark)
    train_first_attempt(out + ".train", spark)
    label_worker_crash(out + ".label", spark)
    json.dump({part: json.load(open(f"{out}.{part}")) for part in ("tvs", "train", "label")}, open(out, "w"))
    spark.stop()


# ----------------------------------------------------------------------------- local-cluster
def cluster_frames(spark):
    """400 training and 100 test rows of the real digits set, as vector DataFrames with an id."""
    import pandas as pd
    from pyspark.ml.functions import array_to_vector

    from sparkdl_lite.core.datasets import load_digits_split

    x_train, x_test, y_train, y_test = load_digits_split()

    def make(x, y):
        return spark.createDataFrame(pd.DataFrame({
            "id": np.arange(len(x)), "features": list(x.astype(np.float64)), "label": y.astype(np.int64)
        })).withColumn("features", array_to_vector("features"))

    return make(x_train[:400], y_train[:400]), make(x_test[:100], y_test[:100])


def fit_all(spark):
    """fitMultiple over 4 maps; {index: executor id, the graph's probabilities on the test rows (and for
    index 0 what transform gives on the executors)}."""
    from sparkdl_lite.classifier import TFClassifier

    train_df, test_df = cluster_frames(spark)
    clf = TFClassifier(epochs=2, seed=11)
    maps = [{clf.hiddenLayers: h, clf.learningRate: lr} for h in ([8], [16]) for lr in (1e-3, 1e-2)]
    x_test = np.array([r.features.toArray() for r in test_df.orderBy("id").collect()], np.float32)
    out = {}
    for index, model in clf.fitMultiple(train_df, maps):
        probability = model.graph.load()({"features:0": x_test})["probability:0"]
        out[index] = {"executorId": model.trainingInfo["executorId"], "probability": probability.tolist()}
        if index == 0:  # scoring on the executors gives what the graph gives on the driver
            rows = model.transform(test_df).orderBy("id").select("probability").collect()
            out[index]["transformed"] = [r.probability.toArray().tolist() for r in rows]
    return out


def fit_lone_and_pair(spark):
    """A lone fit (asks for a whole executor), two maps side by side, and a streamed fit on a cluster master."""
    import tempfile

    from sparkdl_lite.classifier import TFClassifier

    train_df, test_df = cluster_frames(spark)
    clf = TFClassifier(epochs=2, seed=11)
    lone = clf.fit(train_df, {clf.epochs: 20, clf.learningRate: 1e-2})
    pair = [m for _, m in clf.fitMultiple(train_df, [{clf.learningRate: lr} for lr in (1e-3, 1e-2)])]
    acc = lone.transform(test_df).where("prediction = label").count() / test_df.count()
    try:  # a cluster master: streaming needs a location every executor can read
        clf.copy({clf.trainingData: "stream"}).fit(train_df)
        no_location = ""
    except ValueError as exc:
        no_location = str(exc)
    stage = tempfile.mkdtemp()  # the executor JVMs of local-cluster share this machine's disk: a file:// location
    streamed = clf.copy({clf.trainingData: "stream", clf.stagingDir: "file://" + stage}).fit(train_df)
    return {"lone": lone.trainingInfo, "pair": [m.trainingInfo for m in pair], "lone_accuracy": acc,
            "no_location": no_location, "streamed": streamed.trainingInfo}


def _max_prob_diff(a, b):
    if sorted(a) != sorted(b):
        return float("inf")
    return float(max(np.abs(np.asarray(a[i]["probability"]) - np.asarray(b[i]["probability"])).max() for i in a))


def cluster(out):
    """local-cluster[2,2,1024] (two executor JVMs, two cores each): test_cluster's fits, then one executor
    JVM SIGKILLed during a fitMultiple (compared with the clean fit_all) and during labeling."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import common  # the benchmarks' helpers: the same local-cluster clean-up

    jvm = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # short-lived test JVMs: C1 and serial GC save CPU here
    spark = _session("local-cluster[2,2,1024]", **{
        "spark.executor.memory": "1000m", "spark.task.maxFailures": "4",
        "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
        "spark.driver.extraJavaOptions": jvm, "spark.executor.extraJavaOptions": jvm})
    sc = spark.sparkContext
    app = sc.applicationId
    try:
        _wait_executors(sc, 2)
        result = {"fit_all": fit_all(spark), "lone": fit_lone_and_pair(spark)}
        clean = result["fit_all"]
        th, killed, stage = _start_killer(sc, lambda st: st.numTasks == 4 and st.numActiveTasks >= 1, delay=0.5)
        faulty = fit_all(spark)
        th.join(timeout=5)
        result["tune"] = {"killed": killed, "models": len(faulty), "max_diff": _max_prob_diff(clean, faulty),
                          "failed_tasks": _failed_tasks(sc, stage),
                          "clean_executors": sorted({v["executorId"] for v in clean.values()})}
        _wait_executors(sc, 2)  # the worker starts a new executor for the lost one
        clean_labels, n_clean = _collect(_label_job(spark))
        th, killed, stage = _start_killer(sc, lambda st: st.numCompletedTasks >= 2)
        faulty_labels, n_faulty = _collect(_label_job(spark))
        th.join(timeout=5)
        result["label"] = {"killed": killed, "n_clean": n_clean, "n_faulty": n_faulty,
                           "max_diff": _max_diff(clean_labels, faulty_labels), "failed_tasks": _failed_tasks(sc, stage)}
        json.dump(result, open(out, "w"))
    finally:
        spark.stop()
        common.remove_local_cluster_work(app)  # what the local-cluster workers wrote under $SPARK_HOME/work


if __name__ == "__main__":
    mode, out_path = sys.argv[1], sys.argv[2]
    {"label-worker-crash": label_worker_crash, "train-first-attempt": train_first_attempt,
     "local-faults": local_faults, "cluster": cluster}[mode](out_path, *sys.argv[3:])
