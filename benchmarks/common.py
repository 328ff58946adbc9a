"""Shared helpers of the benchmark scripts: environment, SparkSession, data, models, timing.

The benchmarks run loopback-only (no network), like the tests: the SparkSession settings here are
``tests/conftest.py``'s ``spark_builder`` plus memory and Arrow settings the benchmarks need.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------------------- Spark
def spark_session(master: str = "local[2]", conf: Optional[Dict[str, str]] = None, app: str = "sparkdl-lite-bench"):
    """A loopback-only SparkSession (the tests' settings) with ``conf`` added; quiet logs."""
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(master).appName(app)
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.sql.shuffle.partitions", "4")
         .config("spark.python.worker.reuse", "true")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
         .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "3"))
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def wait_for_executors(spark: Any, n: int, timeout: float = 180.0) -> float:
    """Block until ``n`` executors (not counting the driver) have registered; returns the seconds waited."""
    sc = spark.sparkContext
    t0 = time.perf_counter()
    while True:
        have = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # noqa: SLF001 - the driver counts as one
        if have >= n:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"only {have} of {n} executors registered after {timeout:.0f} s")
        time.sleep(0.25)


def task_slots(spark: Any) -> int:
    return int(spark.sparkContext.defaultParallelism)


# ----------------------------------------------------------------------------------------- data
def fashion_test_images(n: int) -> np.ndarray:
    """``n`` Fashion-MNIST test images (uint8, N x 28 x 28), the 10 000 repeated when n is larger."""
    from sparkdl_lite.core.datasets import read_idx

    x = read_idx(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz"))
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n]) if reps > 1 else np.ascontiguousarray(x[:n])


def photo_crops(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` random ``size`` x ``size`` RGB crops of scikit-learn's two sample photos (uint8, N x size x size x 3)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # 427 x 640 x 3 each, shipped with scikit-learn
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        p = photos[i % len(photos)]
        y = int(rng.integers(0, p.shape[0] - size + 1))
        x = int(rng.integers(0, p.shape[1] - size + 1))
        crop = p[y:y + size, x:x + size]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop  # mirrored half the time
    return out


def _split(n: int, parts: int) -> List[range]:
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def write_float_parquet(path: str, x: np.ndarray, *, files: int, column: str = "x", row_group: int = 256) -> int:
    """Write ``x`` (N x ...) as ``files`` parquet files with one flat ``array<float>`` column; returns bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    width = flat.shape[1]
    total = 0
    for i, rows in enumerate(_split(len(flat), files)):
        part = flat[rows.start:rows.stop]
        offsets = pa.array(np.arange(0, (len(part) + 1) * width, width, dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, pa.array(part.reshape(-1), type=pa.float32()))
        f = os.path.join(path, f"part-{i:05d}.parquet")
        pq.write_table(pa.table({column: col}), f, row_group_size=row_group)
        total += os.path.getsize(f)
    return total


def write_image_parquet(path: str, images_bgr: np.ndarray, *, files: int, column: str = "image",
                        row_group: int = 256) -> int:
    """Write uint8 images (N x H x W x C, already in Spark's OpenCV order) as Spark image structs; returns bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkdl_lite.core.image import MODE_BY_CHANNELS

    os.makedirs(path, exist_ok=True)
    arr = images_bgr if images_bgr.ndim == 4 else images_bgr[..., None]
    n, h, w, c = arr.shape
    per = h * w * c
    total = 0
    for i, rows in enumerate(_split(n, files)):
        part = np.ascontiguousarray(arr[rows.start:rows.stop]).reshape(-1)
        m = len(rows)
        offsets = pa.array(np.arange(0, (m + 1) * per, per, dtype=np.int32))
        data = pa.BinaryArray.from_buffers(pa.binary(), m, [None, offsets.buffers()[1], pa.py_buffer(part)])
        struct = pa.StructArray.from_arrays(
            [pa.array([f"bench://{j}" for j in rows], pa.string()), pa.array(np.full(m, h, np.int32)),
             pa.array(np.full(m, w, np.int32)), pa.array(np.full(m, c, np.int32)),
             pa.array(np.full(m, MODE_BY_CHANNELS[c], np.int32)), data],
            names=["origin", "height", "width", "nChannels", "mode", "data"])
        f = os.path.join(path, f"part-{i:05d}.parquet")
        pq.write_table(pa.table({column: struct}), f, row_group_size=row_group)
        total += os.path.getsize(f)
    return total


# ----------------------------------------------------------------------------------------- processes
def processes() -> Dict[int, Tuple[int, str]]:
    """{pid: (parent pid, command line)} of every process, from /proc."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        procs[int(d)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    return procs


def descendants(root: int, procs: Dict[int, Tuple[int, str]]) -> List[int]:
    """PIDs below ``root`` in the process table ``procs`` (:func:`processes`)."""
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _) in procs.items():  # one pass over the process table, then a tree walk
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


# ----------------------------------------------------------------------------------------- models
def small_cnn(seed: int = 0):
    """The small CNN of the benchmarks: 2 x (conv 3x3 + max-pool), dense 128, softmax 10; 28 x 28 x 1."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax", name="probs"),
    ])


def mobilenet_v2(seed: int = 0):
    """MobileNetV2, 224 x 224 x 3, random weights (``weights=None``: nothing is downloaded)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


# ----------------------------------------------------------------------------------------- timing and reports
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def now() -> float:
    return time.perf_counter()


def machine() -> Dict[str, Any]:
    """What the numbers were measured on."""
    info: Dict[str, Any] = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                            "python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    versions = {}
    for mod in ("pyspark", "tensorflow", "keras", "pyarrow", "numpy", "pandas"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - report what is there
            versions[mod] = None
    info["versions"] = versions
    try:
        info["java"] = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.splitlines()[0]
    except Exception:  # noqa: BLE001
        info["java"] = None
    return info


#: TensorFlow's start-up lines a child process prints on stderr that the benchmarks do not pass on.
TF_NOISE = ("use_unbounded_threadpool", "WARNING: All log messages before absl", "cpu_feature_guard",
            "To enable the following instructions", "rebuild TensorFlow with the appropriate")


def pump_stderr(proc: Any, keep: List[str], noise: Sequence[str] = TF_NOISE) -> Any:
    """A started daemon thread that keeps every stderr line of ``proc`` in ``keep`` and passes on the
    lines without ``noise``; join it after ``communicate()``."""
    import threading

    def pump() -> None:
        try:
            for line in proc.stderr:
                keep.append(line)
                if not any(n in line for n in noise):
                    sys.stderr.write(line)
        except ValueError:  # communicate() closed the pipe at the child's exit: nothing more to pass on
            pass

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def write_json(path: Optional[str], payload: Dict[str, Any]) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    print(f"wrote {path}", flush=True)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A GitHub-markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |"] + [line(r) for r in rows])


def remove_local_cluster_work(app_id: str) -> None:
    """Delete what a local-cluster run wrote under ``$SPARK_HOME/work/<app id>`` (and ``work/`` if empty)."""
    import shutil

    from pyspark.find_spark_home import _find_spark_home

    work = os.path.join(_find_spark_home(), "work")
    shutil.rmtree(os.path.join(work, app_id), ignore_errors=True)
    try:
        os.rmdir(work)
    except OSError:
        pass
