"""fitMultiple on a real multi-JVM cluster: local-cluster[2,1,1024] (two executor JVMs, one core each).

A process holds one SparkContext, and the session fixture's is local[2]; the cluster run therefore
happens in a child Python process, which prints its results as JSON for this test to compare with
the same fitMultiple run in local mode.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

SETUP = textwrap.dedent("""
    import numpy as np
    import pandas as pd
    from pyspark.ml.functions import array_to_vector

    from sparkdl_lite.classifier import TFClassifier
    from sparkdl_lite.core.datasets import load_digits_split


    def frames(spark):
        x_train, x_test, y_train, y_test = load_digits_split()
        make = lambda x, y: spark.createDataFrame(pd.DataFrame({
            "id": np.arange(len(x)), "features": list(x.astype(np.float64)), "label": y.astype(np.int64)
        })).withColumn("features", array_to_vector("features"))
        return make(x_train[:400], y_train[:400]), make(x_test[:100], y_test[:100])


    def fit_all(spark):
        train_df, test_df = frames(spark)
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
        train_df, test_df = frames(spark)
        clf = TFClassifier(epochs=2, seed=11)
        lone = clf.fit(train_df, {clf.epochs: 20, clf.learningRate: 1e-2})
        pair = [m for _, m in clf.fitMultiple(train_df, [{clf.learningRate: lr} for lr in (1e-3, 1e-2)])]
        acc = lone.transform(test_df).where("prediction = label").count() / test_df.count()
        try:  # a cluster master: streaming needs a location every executor can read
            clf.copy({clf.trainingData: "stream"}).fit(train_df)
            no_location = ""
        except ValueError as exc:
            no_location = str(exc)
        import tempfile  # the executor JVMs of local-cluster share this machine's disk: a file:// location
        streamed = clf.copy({clf.trainingData: "stream", clf.stagingDir: "file://" + tempfile.mkdtemp()}).fit(train_df)
        return {"lone": lone.trainingInfo, "pair": [m.trainingInfo for m in pair], "lone_accuracy": acc,
                "no_location": no_location, "streamed": streamed.trainingInfo}
""")

CHILD = textwrap.dedent("""
    import json, os, shutil, sys, time
    sys.path.insert(0, {tests!r})
    from conftest import spark_builder
    from pyspark.find_spark_home import _find_spark_home
    from sparkdl_lite_cluster_setup import {func}

    spark = (spark_builder("{master}")
             .config("spark.executor.memory", "1024m")
             .config("spark.executorEnv.SPARK_LOCAL_IP", "127.0.0.1")
             # Short-lived test JVMs: the C1 JIT and serial GC save CPU on a 2-core machine.
             .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
             .config("spark.executor.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    sc = spark.sparkContext
    deadline = time.time() + 180
    while sc._jsc.sc().getExecutorMemoryStatus().size() < {executors} + 1:  # the driver and the executors
        if time.time() > deadline:
            raise SystemExit("the executors did not register within 180 s")
        time.sleep(0.5)
    app = sc.applicationId
    try:
        result = {func}(spark)
    finally:
        spark.stop()
        # local-cluster workers write under $SPARK_HOME/work/<app id>; remove what this run wrote.
        work = os.path.join(_find_spark_home(), "work")
        shutil.rmtree(os.path.join(work, app), ignore_errors=True)
        try:
            os.rmdir(work)
        except OSError:
            pass
    print("RESULT " + json.dumps(result))
""")


def run_child(tmp_path, master: str, executors: int, func: str) -> dict:
    """Run ``func(spark)`` of SETUP on ``master`` in a child process; its JSON result."""
    (tmp_path / "sparkdl_lite_cluster_setup.py").write_text(SETUP)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=TESTS_DIR, master=master, executors=executors, func=func))
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1", PYTHONPATH=os.pathsep.join(
                   [str(tmp_path), os.path.dirname(TESTS_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("SPARKDL_LITE_FAILPOINTS", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=540,
                          cwd=str(tmp_path))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_fitMultiple_on_two_executor_jvms_matches_local_mode(spark, tmp_path):
    cluster = {int(k): v for k, v in run_child(tmp_path, "local-cluster[2,1,1024]", 2, "fit_all").items()}

    # Tasks ran on both executor JVMs, recorded per model.
    executors = {v["executorId"] for v in cluster.values()}
    print(f"\nlocal-cluster executor ids per param map: {[cluster[i]['executorId'] for i in range(4)]}")
    assert sorted(cluster) == [0, 1, 2, 3]
    assert executors == {"0", "1"}

    # The same param maps in local mode (this process, local[2]) give the same models.
    sys.path.insert(0, str(tmp_path))
    try:
        from sparkdl_lite_cluster_setup import fit_all
    finally:
        sys.path.remove(str(tmp_path))
    local = fit_all(spark)
    assert {v["executorId"] for v in local.values()} == {"driver"}
    for i in range(4):
        np.testing.assert_allclose(cluster[i]["probability"], local[i]["probability"], atol=1e-6)
    np.testing.assert_allclose(cluster[0]["transformed"], cluster[0]["probability"], atol=1e-6)
    np.testing.assert_allclose(local[0]["transformed"], local[0]["probability"], atol=1e-6)


def test_a_lone_fit_gets_the_whole_executor(tmp_path):
    # One executor JVM with 2 cores: fit() (one param map) asks Spark for both cores by stage-level
    # scheduling and TF trains with 2 threads; two param maps keep spark.task.cpus = 1 each.
    out = run_child(tmp_path, "local-cluster[1,2,1024]", 1, "fit_lone_and_pair")
    assert out["lone"]["taskCpus"] == 2 and out["lone"]["executorId"] == "0"
    assert [info["taskCpus"] for info in out["pair"]] == [1, 1]
    assert out["lone_accuracy"] > 0.7, out["lone_accuracy"]  # 10 digit classes: a model that learned
    # streaming on a cluster master: one clear error without a location; with one, the executor streams the rows
    assert "no staging location is set and this is not local mode. Set param stagingDir" in out["no_location"]
    assert out["streamed"]["data"] == "stream" and out["streamed"]["executorId"] == "0"
