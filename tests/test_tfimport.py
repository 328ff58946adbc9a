"""TensorFlow is an extra: without it the package imports, and the first use of TF says what to install."""
import json
import subprocess
import sys
import textwrap

import pytest

from sparkdl_lite.core.tfimport import import_tensorflow

# Runs in a fresh interpreter where `import tensorflow` fails as if it were not installed.
_WITHOUT_TF = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # what an install without [cpu]/[gpu] looks like to `import tensorflow`
    import sparkdl_lite
    from pyspark.ml.tuning import ParamGridBuilder
    from sparkdl_lite import TFClassifier, TFGraph, cli

    clf = TFClassifier(featuresCol="f", labelCol="y")
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).build()
    errors = []
    for _ in range(2):
        try:
            TFGraph.from_bytes(b"not a graph")
        except ImportError as exc:
            errors.append({"type": type(exc).__name__, "msg": str(exc), "name": exc.name,
                           "chained": exc.__cause__ is not None or not exc.__suppress_context__})
    print(json.dumps({"version": sparkdl_lite.__version__, "grid": len(grid), "errors": errors,
                      "cli_version": cli.main(["--version"])}))
""")


def test_without_tensorflow_import_works_and_first_use_says_what_to_install():
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TF], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["grid"] == 2 and out["cli_version"] == 0
    assert len(out["errors"]) == 2 and out["errors"][0] == out["errors"][1]
    err = out["errors"][0]
    assert err["type"] == "ImportError" and err["name"] == "tensorflow" and not err["chained"]
    assert "TensorFlow >= 2.16" in err["msg"] and "not installed" in err["msg"]
    assert 'pip install "sparkdl_lite[cpu]"' in err["msg"] and 'pip install "sparkdl_lite[gpu]"' in err["msg"]


def test_with_tensorflow_returns_the_module():
    tf = pytest.importorskip("tensorflow")
    assert import_tensorflow() is tf
    assert import_tensorflow() is tf


def test_a_task_side_import_freezes_tensorflows_objects_so_pysparks_per_task_gc_skips_them(spark):
    # PySpark's daemon runs gc.collect() after every task of a reused worker; with TF's ~400k objects
    # tracked that costs ~0.2 s per task. After the task-side import they sit in the permanent generation.
    pytest.importorskip("tensorflow")

    def worker_heap(_):  # nested: shipped by value, the test module is not importable on the workers
        import gc

        from sparkdl_lite.core import runtime

        runtime.configure_threads(1)  # what every training and scoring task does first
        gc.collect()
        return gc.get_freeze_count(), len(gc.get_objects())

    for frozen, tracked in spark.sparkContext.parallelize([0, 1], 2).map(worker_heap).collect():
        assert frozen > 100_000, frozen
        assert tracked < frozen / 5, (frozen, tracked)
