"""fitMultiple on a real multi-JVM cluster: local-cluster[2,2,1024] (two executor JVMs, two cores each).

A process holds one SparkContext, and the session fixture's is local[2]; the cluster run therefore
happens in a child Python process (``fault_jobs.py cluster``, shared with test_reliability.py's
executor-loss tests through the ``cluster_jobs`` fixture), whose JSON results these tests compare
with the same fitMultiple run in local mode.
"""
import numpy as np
from fault_jobs import fit_all


def test_fitMultiple_on_two_executor_jvms_matches_local_mode(spark, cluster_jobs):
    cluster = {int(k): v for k, v in cluster_jobs["fit_all"].items()}

    # Tasks ran on both executor JVMs, recorded per model.
    executors = {v["executorId"] for v in cluster.values()}
    print(f"\nlocal-cluster executor ids per param map: {[cluster[i]['executorId'] for i in range(4)]}")
    assert sorted(cluster) == [0, 1, 2, 3]
    assert executors == {"0", "1"}

    # The same param maps in local mode (this process, local[2]) give the same models.
    local = fit_all(spark)
    assert {v["executorId"] for v in local.values()} == {"driver"}
    for i in range(4):
        np.testing.assert_allclose(cluster[i]["probability"], local[i]["probability"], atol=1e-6)
    np.testing.assert_allclose(cluster[0]["transformed"], cluster[0]["probability"], atol=1e-6)
    np.testing.assert_allclose(local[0]["transformed"], local[0]["probability"], atol=1e-6)


def test_a_lone_fit_gets_the_whole_executor(cluster_jobs):
    # Executor JVMs with 2 cores each: fit() (one param map) asks Spark for both cores of one by
    # stage-level scheduling and TF trains with 2 threads; two param maps keep spark.task.cpus = 1 each.
    out = cluster_jobs["lone"]
    assert out["lone"]["taskCpus"] == 2 and out["lone"]["executorId"] in ("0", "1")
    assert [info["taskCpus"] for info in out["pair"]] == [1, 1]
    assert out["lone_accuracy"] > 0.7, out["lone_accuracy"]  # 10 digit classes: a model that learned
    # streaming on a cluster master: one clear error without a location; with one, the executor streams the rows
    assert "no staging location is set and this is not local mode. Set param stagingDir" in out["no_location"]
    assert out["streamed"]["data"] == "stream" and out["streamed"]["executorId"] in ("0", "1")
