"""Quiet by default (issue #14): the real command prints its own lines only; --verbose brings the logs back."""
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION) and not os.environ.get("SPARKDL_LITE_DATA"),
                                   reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")

# TensorFlow's start-up lines: which ones it prints depends on the CPU (oneDNN's line only where oneDNN is on,
# e.g. with AVX-512; cpu_feature_guard's where TF was built for fewer instructions than the CPU has).
TF_STARTUP = ("oneDNN custom operations are on", "cpu_feature_guard", "absl::InitializeLog()")
# What a default run must not print, from the driver or the Python workers (issue #14, item 1).
NOISE = ("oneDNN custom operations are on", "absl::InitializeLog()", "use_unbounded_threadpool", "NodeDef mentions",
         "cpu_feature_guard", "triggered tf.function retracing", "Using Spark's default log4j profile",
         "Setting default log level", "To adjust logging level", "NativeCodeLoader", " WARN ", "Warning:")


def _env(**extra):
    """A new user's environment: none of the test session's log settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", "SPARKDL_LITE_VERBOSE", "SPARK_SUBMIT_OPTS")}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, **extra)
    return env


def _cli(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "sparkdl_lite.cli", *args], env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout


@pytest.fixture(scope="module")
def quiet_tune(tmp_path_factory):
    out = tmp_path_factory.mktemp("quiet")
    code, text = _cli("tune", "--data", "fashion-mnist", "--sample", "100", "--grid", "learningRate=1e-3",
                      "--epochs", "1", "--batch-size", "64", "--master", "local[2]", "--out", str(out / "tune"))
    return code, text, out


@needs_fashion
def test_tune_prints_only_its_own_lines(quiet_tune):
    code, text, _ = quiet_tune
    assert code == 0, text
    found = [line for line in text.splitlines() if any(n in line for n in NOISE)]
    assert found == [], text
    assert "best: learningRate=0.001" in text and "report:" in text  # its own lines are there
    # the progress line counts epochs: the tuning task's and the refit's, all done at the end
    last = [line for line in text.splitlines() if line.startswith("models ")][-1]
    assert re.match(r"models 2/2 \| epochs 2/2 \| best val acc [0-9.]+ \| elapsed .* \| ETA 0s$", last), last


@needs_fashion
def test_verbose_brings_the_logs_back(quiet_tune):
    from sparkdl_lite import cli

    _, _, out = quiet_tune
    assert cli.main(["images", "--limit", "4", "--out", str(out / "png")]) == 0
    code, text = _cli("label", "--model", str(out / "tune" / "best_model"), "--images", str(out / "png"),
                      "--out", str(out / "labels.parquet"), "--master", "local[1]", "--verbose")
    assert code == 0, text
    assert "rows in = 4, rows out = 4" in text
    assert "Using Spark's default log4j profile" in text  # Spark's start-up lines
    startup = [line for line in text.splitlines() if any(m in line for m in TF_STARTUP)]
    assert len(startup) >= 2, text  # TensorFlow's start-up lines, from the driver's import and a worker's


_IMPORT = "from sparkdl_lite.core.tfimport import import_tensorflow; import_tensorflow(); print('imported')"


def test_the_first_tensorflow_import_leaves_out_its_start_up_lines():
    """(With SPARKDL_LITE_VERBOSE=1 the lines are there: test_verbose_brings_the_logs_back sees them.)"""
    proc = subprocess.run([sys.executable, "-c", _IMPORT], env=_env(SPARKDL_LITE_VERBOSE="0"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr
    assert proc.stderr == ""


def test_filtered_stderr_writes_back_other_lines(capfd):
    from sparkdl_lite.core import quiet

    with quiet.filtered_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"
    with pytest.raises(RuntimeError):
        with quiet.filtered_stderr():
            os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
            raise RuntimeError("boom")
    assert "oneDNN" in capfd.readouterr().err  # a failed block shows everything it printed


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_load_callable_traces_once_per_graph_and_image_size(doubling_graph):
    """Many graphs per worker, batches of every size: no tf.function retracing (nor its warning)."""
    from sparkdl_lite.core import image, runtime

    records = _Records()
    logging.getLogger("tensorflow").addHandler(records)
    try:
        for _ in range(7):  # a worker scoring the models of a tuning run: one load per graph
            pre = image.make_preprocess(src_channels=3, channel_order="BGR", target_hw=None, target_channels=3,
                                        scale=1.0, offset=0.0)
            run = runtime.load_callable(doubling_graph, ["image:0"], ["output:0"], preprocess=pre)
            for n in (1, 5, 2, 8, 3):
                x = np.full((n, 4, 4, 3), 3, np.uint8)
                assert np.array_equal(run({"image:0": x})["output:0"], np.full((n, 4, 4, 3), 6.0, np.float32))
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    assert [m for m in records.messages if "retracing" in m] == []


def test_flags():
    from sparkdl_lite.cli import build_parser

    parser = build_parser()
    for command in (["tune", "--out", "o"], ["label", "--model", "m", "--images", "i", "--out", "o"]):
        args = parser.parse_args(command)
        assert (args.verbose, args.no_progress) == (False, False)
        args = parser.parse_args(command + ["--verbose", "--no-progress"])
        assert (args.verbose, args.no_progress) == (True, True)
        assert parser.parse_args(command + ["--quiet"]).no_progress  # 0.1.0's flag, kept hidden
