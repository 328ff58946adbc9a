"""Faults mid-job: a lost executor JVM and a crashing Python worker; Spark reruns, nothing is lost or doubled."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


def _run(mode, tmp_path, env=None, timeout=600):
    out = tmp_path / f"{mode}.json"
    proc = subprocess.run([sys.executable, os.path.join(HERE, "fault_jobs.py"), mode, str(out)],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise AssertionError(f"{mode} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Fashion-MNIST not installed")
def test_python_worker_crash_mid_transform_is_retried(tmp_path):
    marker = tmp_path / "kill-one-worker"
    res = _run("label-worker-crash", tmp_path, env={"SPARKDL_LITE_TEST_KILL_WORKER": str(marker)})
    assert res["marker_consumed"], "no worker crashed: the fault was not injected"
    assert res["n_clean"] == res["n_faulty"] == 600
    assert res["max_diff"] < 1e-5


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Fashion-MNIST not installed")
def test_executor_loss_during_labeling(tmp_path):
    res = _run("label-executor-loss", tmp_path)
    assert len(res["killed"]) == 1, "no executor was killed"
    assert res["n_clean"] == res["n_faulty"] == 5000
    assert res["max_diff"] < 1e-5


def test_training_task_failing_its_first_attempt_is_retried(tmp_path):
    res = _run("train-first-attempt", tmp_path)
    assert res["models"] == 2
    assert res["max_diff"] < 1e-6  # the retried model equals the clean run's


def test_executor_loss_during_tuning(tmp_path):
    res = _run("tune-executor-loss", tmp_path)
    assert len(res["killed"]) == 1, "no executor was killed"
    assert res["models"] == 4
    assert res["max_diff"] < 1e-6  # fixed seeds: the same models as without the kill
    assert len(res["clean_executors"]) == 2  # the clean run used both executor JVMs
