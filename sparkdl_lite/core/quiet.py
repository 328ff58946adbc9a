"""Quiet by default: TensorFlow's start-up and C++ log lines, and the command line's Spark and Python logs.

What is hidden, and where (``SPARKDL_LITE_VERBOSE=1``, the command line's ``--verbose``, turns all of
it off):

- Wherever sparkdl_lite imports TensorFlow first (:func:`import_tensorflow`; driver and Python
  workers): the lines TF's C++ libraries print *during* the import, before their logging is set up
  and whatever ``TF_CPP_MIN_LOG_LEVEL`` says (``oneDNN custom operations are on``, ``All log
  messages before absl::InitializeLog() is called``, ``cpu_feature_guard``). File descriptor 2 goes
  to a temporary file for the import only; every other line is written back. oneDNN stays on.
- In Spark tasks (``task=True``): ``TF_CPP_MIN_LOG_LEVEL=3`` where the executor's environment does
  not set it, so TF's C++ logging is off in the Python workers (e.g. tf.data's ``NodeDef mentions
  attribute use_unbounded_threadpool``); a failing op still reaches the driver as an exception.
- The ``sparkdl-lite`` command only (:func:`cli`, :func:`spark_conf`): Spark's driver logs at
  ERROR from the start (a log4j2 file shipped here, so no ``Using Spark's default log4j profile``
  lines), ``TF_CPP_MIN_LOG_LEVEL=3`` and Python warnings ignored in the driver and the workers, the
  ``tensorflow`` and ``absl`` Python loggers at ERROR. A library user's own logging is not touched.

No pyspark here: the command line turns :func:`spark_conf` into its session's conf.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from types import ModuleType
from typing import Dict, Iterator

__all__ = ["VERBOSE_ENV", "LOG4J2_QUIET", "verbose", "filtered_stderr", "import_tensorflow", "cli", "spark_conf"]

#: ``1`` shows every log line (the command line's ``--verbose`` sets it, also for the executors).
VERBOSE_ENV = "SPARKDL_LITE_VERBOSE"
#: The Spark driver's log4j2 configuration when not verbose: ERROR and above, on stderr.
LOG4J2_QUIET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2-quiet.properties")

# What TF 2.x prints while it is imported, before its own log levels apply.
_IMPORT_NOISE = re.compile(rb"All log messages before absl::InitializeLog\(\) is called"
                           rb"|\] oneDNN custom operations are on"
                           rb"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
                           rb"|^To enable the following instructions: .* rebuild TensorFlow")
_REDIRECT = threading.Lock()  # fd 2 belongs to the whole process: one redirection at a time


def verbose() -> bool:
    """Whether ``SPARKDL_LITE_VERBOSE`` asks for every log line."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def filtered_stderr(noise: "re.Pattern[bytes]" = _IMPORT_NOISE) -> Iterator[None]:
    """Send file descriptor 2 (C++ code writes there) to a temporary file; write back the lines that
    do not match ``noise`` afterwards, all of them if the block raised."""
    if not _REDIRECT.acquire(blocking=False):  # another thread is filtering: do not nest
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (a daemon, an odd embedding)
        _REDIRECT.release()
        yield
        return
    failed = True
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
                failed = False
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                tmp.seek(0)
                lines = tmp.read().splitlines(keepends=True)
                kept = lines if failed else [line for line in lines if not noise.search(line)]
                if kept:
                    os.write(2, b"".join(kept))
    finally:
        os.close(saved)
        _REDIRECT.release()


def import_tensorflow(*, task: bool = False) -> ModuleType:
    """``import tensorflow`` without the lines TF prints while it loads; ``task=True`` in a Spark task
    also switches TF's C++ logging off in that worker unless its environment sets
    ``TF_CPP_MIN_LOG_LEVEL``. Raises what the import raises."""
    if "tensorflow" in sys.modules or verbose():
        import tensorflow
        return tensorflow
    if task:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read by TF once, at its first log line
    with filtered_stderr():
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def cli(verbose_flag: bool) -> Iterator[None]:
    """The ``sparkdl-lite`` command's process, quiet unless ``verbose_flag``; restored on exit (so
    ``main()`` called in-process leaves no trace)."""
    keys = (VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", "SPARK_SUBMIT_OPTS")
    saved_env = {k: os.environ.get(k) for k in keys}
    loggers = [logging.getLogger(n) for n in ("tensorflow", "absl")]
    saved_levels = [lg.level for lg in loggers]
    os.environ[VERBOSE_ENV] = "1" if verbose_flag else "0"
    with warnings.catch_warnings():
        if not verbose_flag:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            os.environ.setdefault("PYTHONWARNINGS", "ignore")  # Python workers a local JVM starts inherit it
            # The launcher passes SPARK_SUBMIT_OPTS to the driver JVM before the user's
            # spark.driver.extraJavaOptions, so a log4j2 file of the user's own still wins.
            if os.path.isfile(LOG4J2_QUIET):
                opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
                os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} -Dlog4j2.configurationFile=file:{LOG4J2_QUIET}".strip()
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, saved_levels):
                lg.setLevel(level)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def spark_conf() -> Dict[str, str]:
    """Spark conf for the command line's own session: the executors' Python workers as quiet (or as
    verbose) as the driver."""
    loud = verbose()
    conf = {f"spark.executorEnv.{VERBOSE_ENV}": "1" if loud else "0",
            "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0" if loud else "3")}
    if os.environ.get("PYTHONWARNINGS"):
        conf["spark.executorEnv.PYTHONWARNINGS"] = os.environ["PYTHONWARNINGS"]
    return conf
