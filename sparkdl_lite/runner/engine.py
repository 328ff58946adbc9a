"""The one module that talks to the Spark session: classic or Spark Connect.

Everything the stages need from the engine goes through these functions: shipping bytes to the
executors, session conf, executors and cores, job tags, descriptions and progress, and reading
and writing files. Only this module knows which kind of session it has; no other module of the
package touches ``SparkContext``, py4j or RDDs.

Shipping: on a classic session, :func:`ship` broadcasts the bytes (Spark's own torrent
broadcast, destroyed by :func:`release`). On Spark Connect there is no ``SparkContext``, and a
task closure over 128 MiB fails on gRPC's limit, so the bytes become a session artifact
(``SparkSession.addArtifacts(file=True)``) named by their content hash: the same bytes are
uploaded once per session, and executors read them with ``SparkFiles.get``. Connect artifacts
cannot be removed one by one; the server deletes them all when the session is closed
(``spark.stop()``), so a long session holds each distinct graph or training set once.

Files: every data file of a saved stage is written by Spark itself as a small Parquet dataset of
byte chunks (:func:`write_bytes`), so the server writes it on any file system Spark reaches
(``hdfs://``, ``s3a://``, a remote cluster path from a Connect client). :func:`read_bytes` reads
those, and plain files (the 0.1.0 layout) through Spark's ``binaryFile`` source.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

__all__ = ["is_connect", "active_session", "master", "is_local_mode", "default_parallelism", "cluster_shape",
           "executor_cores", "conf", "Shipped", "ship", "release", "job_tag", "job_description", "set_log_level",
           "TaskCounter", "write_bytes", "read_bytes", "exists", "list_files", "handle_overwrite", "num_partitions",
           "empty_files", "session_for", "task_cpus", "executor_id", "process_age", "check_executors", "thread_map"]

_CHUNK = 8 * 1024 * 1024  # bytes per Parquet row when writing a data file: well under gRPC's message limit


# ============================================================================ session
def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (no SparkContext, no py4j)."""
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    except ImportError:  # the Connect client's dependencies are not installed
        return False
    return isinstance(spark, ConnectSession)


def active_session() -> Any:
    """The active SparkSession of either kind (Spark's readers and writers use it too)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        spark = SparkSession.builder.getOrCreate()
    return spark


def session_for(obj: Any) -> Any:
    """``obj``'s session when it is a DataFrame or a session, else the active one."""
    if obj is None:
        return active_session()
    if hasattr(obj, "sparkSession") and hasattr(obj, "schema"):
        return obj.sparkSession
    return obj


def master(spark: Any) -> str:
    """The master URL, e.g. ``local[2]``, ``local-cluster[2,1,2048]``, ``spark://...``, ``yarn``."""
    if is_connect(spark):
        return str(spark.conf.get("spark.master", "") or "")
    return str(spark.sparkContext.master or "")


def is_local_mode(spark: Any) -> bool:
    """True in local mode (``local``, ``local[N]``), where the driver is the only executor."""
    m = master(spark)
    return m.startswith("local") and not m.startswith("local-cluster")


def conf(spark: Any, key: str, default: Optional[str] = None) -> Optional[str]:
    """A Spark conf value as the session sees it (runtime conf first, then the context's)."""
    try:
        value = spark.conf.get(key, None)
    except Exception:  # noqa: BLE001 - a static conf the runtime conf does not expose
        value = None
    if value is None and not is_connect(spark):
        value = spark.sparkContext.getConf().get(key, None)
    return default if value is None else str(value)


def _local_cores(m: str) -> Optional[int]:
    import re

    if m == "local":
        return 1
    found = re.match(r"local\[(\d+|\*)(?:,\d+)?\]$", m)
    if found:
        return os.cpu_count() or 1 if found.group(1) == "*" else int(found.group(1))
    found = re.match(r"local-cluster\[(\d+),\s*(\d+),\s*\d+\]$", m)
    if found:
        return int(found.group(1)) * int(found.group(2))
    return None


def default_parallelism(spark: Any) -> int:
    """Cores Spark schedules tasks on (``defaultParallelism``; from the master URL on Connect)."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    value = conf(spark, "spark.default.parallelism")
    if value:
        return int(value)
    return _local_cores(master(spark)) or 2


def executor_cores(spark: Any) -> Optional[List[int]]:
    """Cores of each executor (not the driver), or None where the engine does not tell (Connect)."""
    if is_connect(spark):
        m = master(spark)
        if m.startswith("local-cluster"):
            import re

            found = re.match(r"local-cluster\[(\d+),\s*(\d+)", m)
            return [int(found.group(2))] * int(found.group(1)) if found else None
        return None
    sc = spark.sparkContext
    try:
        listed = sc._jsc.sc().statusStore().executorList(True)  # noqa: SLF001 - no Python API for executor cores
        executors = [listed.apply(i) for i in range(listed.size())]
        return [int(e.totalCores()) for e in executors if e.id() != "driver"]
    except Exception:  # noqa: BLE001 - no status store
        return None


def cluster_shape(spark: Any) -> Tuple[int, int]:
    """(executors, cores); in local mode the driver is the one executor."""
    if is_local_mode(spark):
        return 1, default_parallelism(spark)
    cores = executor_cores(spark)
    if cores:
        return len(cores), sum(cores)
    if not is_connect(spark):
        infos = spark.sparkContext.statusTracker().getExecutorInfos()
        return max(1, len(infos) - 1), default_parallelism(spark)
    return 1, default_parallelism(spark)


def set_log_level(spark: Any, level: str) -> None:
    """The JVM's log level (classic); on Connect the server keeps its own."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


# ============================================================================ shipping
class Shipped:
    """Bytes shipped to the executors once; picklable into a task closure.

    ``key`` is the content hash, so a worker-side cache never serves stale bytes. ``read()``
    runs on an executor (or the driver) and returns the bytes.
    """

    def __init__(self, key: str, size: int, broadcast: Any = None, artifact: Optional[str] = None) -> None:
        self.key = key
        self.size = size
        self._broadcast = broadcast
        self._artifact = artifact

    def read(self) -> bytes:
        if self._broadcast is not None:
            return self._broadcast.value
        from pyspark import SparkFiles

        path = SparkFiles.get(self._artifact)
        with open(path, "rb") as f:
            return f.read()

    def __repr__(self) -> str:
        how = "broadcast" if self._broadcast is not None else f"artifact {self._artifact}"
        return f"Shipped({self.key[:12]}, {self.size} bytes, {how})"


_uploaded: set = set()  # (session, content hash) already added as an artifact: names cannot be reused
_upload_lock = threading.Lock()


def ship(spark: Any, data: bytes) -> Shipped:
    """Ship ``data`` to the executors once (broadcast on classic, a content-named artifact on Connect)."""
    key = hashlib.sha256(data).hexdigest()
    if not is_connect(spark):
        return Shipped(key, len(data), broadcast=spark.sparkContext.broadcast(data))
    name = f"sparkdl_lite-{key}.bin"
    uploaded = (id(spark), str(getattr(spark, "session_id", "")), key)
    with _upload_lock:
        if uploaded not in _uploaded:
            with tempfile.TemporaryDirectory(prefix="sparkdl_lite_ship_") as tmp:
                path = os.path.join(tmp, name)
                with open(path, "wb") as f:
                    f.write(data)
                spark.addArtifacts(path, file=True)
            _uploaded.add(uploaded)
    return Shipped(key, len(data), artifact=name)


def release(shipped: Shipped) -> None:
    """Free what :func:`ship` holds: a broadcast is destroyed; an artifact lives until the session closes."""
    if shipped._broadcast is not None:
        shipped._broadcast.destroy()


# ============================================================================ jobs
@contextlib.contextmanager
def job_tag(spark: Any, tag: str) -> Iterator[None]:
    """Tag the jobs started inside the block (``addJobTag`` on classic, ``addTag`` on Connect)."""
    if is_connect(spark):
        spark.addTag(tag)
        try:
            yield
        finally:
            spark.removeTag(tag)
        return
    sc = spark.sparkContext
    sc.addJobTag(tag)
    try:
        yield
    finally:
        sc.removeJobTag(tag)


@contextlib.contextmanager
def job_description(spark: Any, text: str) -> Iterator[None]:
    """Describe the jobs started inside the block in Spark's UI (classic; Connect has no such property)."""
    if is_connect(spark):
        yield
        return
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setLocalProperty("spark.job.description", previous)


def thread_map(spark: Any, fn: Callable[[Any], Any], items: List[Any], threads: int) -> List[Any]:
    """``fn`` over ``items`` on up to ``threads`` threads, results in the order of ``items``.

    The threads inherit the calling thread's job tags and local properties (pyspark's
    ``inheritable_thread_target``, classic and Connect), so the jobs they start are tagged and
    described as the caller's are. One item, or one thread, runs in the calling thread.
    """
    items = list(items)
    if len(items) <= 1 or threads <= 1:
        return [fn(item) for item in items]
    from multiprocessing.pool import ThreadPool

    from pyspark import inheritable_thread_target

    with ThreadPool(min(threads, len(items))) as pool:
        return pool.map(inheritable_thread_target(spark)(fn), items)


class TaskCounter:
    """Completed and known task counts of the jobs tagged ``tag`` (else the job group, else all active jobs).

    Classic sessions poll Spark's status tracker; jobs that existed at :meth:`start` do not count.
    Spark Connect has no status tracker: a progress handler (``registerProgressHandler``) collects
    the stages of every operation run while the counter is open (the handler is not told their tags).
    """

    def __init__(self, spark: Any, tag: Optional[str] = None, group: Optional[str] = None) -> None:
        self.spark = spark
        self.tag = tag
        self.group = group
        self._connect = is_connect(spark)
        self._ignore: set = set()
        self._seen: set = set()
        self._finished: Dict[int, Tuple[int, int]] = {}
        self._ops: Dict[str, Tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._handler: Optional[Callable[..., None]] = None

    def start(self) -> TaskCounter:
        if self._connect:
            if self._handler is None:
                def handler(stages: Any, inflight_tasks: int, operation_id: str, done: bool) -> None:
                    total = sum(int(getattr(st, "num_tasks", 0)) for st in stages)
                    finished = sum(int(getattr(st, "num_completed_tasks", 0)) for st in stages)
                    if done:  # the last report may come before the last task's; a done operation ran them all
                        finished = total
                    with self._lock:
                        self._ops[operation_id] = (finished, total)

                self._handler = handler
                self.spark.registerProgressHandler(handler)
        else:
            self._ignore = set(self._job_ids())
        return self

    def close(self) -> None:
        if self._handler is not None:
            try:
                self.spark.removeProgressHandler(self._handler)
            except Exception:  # noqa: BLE001 - the session may be closing
                pass
            self._handler = None

    def _job_ids(self) -> List[int]:
        sc = self.spark.sparkContext
        try:
            if self.tag is not None:
                # PySpark's StatusTracker has no getJobIdsForTag; Scala's SparkStatusTracker (3.5+) has.
                return [int(j) for j in sc._jsc.sc().statusTracker().getJobIdsForTag(self.tag)]  # noqa: SLF001
            tracker = sc.statusTracker()
            if self.group is not None:
                return list(tracker.getJobIdsForGroup(self.group))
            return list(tracker.getActiveJobsIds())
        except Exception:  # noqa: BLE001 - best effort; a gone context reads as no jobs
            return []

    def poll(self) -> Tuple[int, int]:
        """``(tasks completed, tasks known)``."""
        if self._connect:
            with self._lock:
                vals = list(self._ops.values())
            return sum(v[0] for v in vals), sum(v[1] for v in vals)
        tracker = self.spark.sparkContext.statusTracker()
        self._seen.update(j for j in self._job_ids() if j not in self._ignore)
        done = tasks = 0
        for job_id in sorted(self._seen):
            try:
                info = tracker.getJobInfo(job_id)
            except Exception:  # noqa: BLE001
                info = None
            if info is None:
                continue
            for stage_id in list(info.stageIds):
                stage_id = int(stage_id)
                cached = self._finished.get(stage_id)
                if cached is None:
                    try:
                        stage = tracker.getStageInfo(stage_id)
                    except Exception:  # noqa: BLE001
                        stage = None
                    if stage is None:
                        continue
                    cached = (stage.numCompletedTasks, stage.numTasks)
                    if stage.numTasks and stage.numCompletedTasks >= stage.numTasks:
                        self._finished[stage_id] = cached
                done += cached[0]
                tasks += cached[1]
        return done, tasks


# ============================================================================ files
def _blob_schema() -> Any:
    from pyspark.sql.types import BinaryType, IntegerType, StructField, StructType

    return StructType([StructField("part", IntegerType(), False), StructField("bytes", BinaryType(), False)])


def write_bytes(spark: Any, path: str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` at ``path`` through Spark: a Parquet dataset of ordered byte chunks (server side on Connect).

    One small write per chunk: a 200 MB graph never sits whole in one query plan (the driver JVM's
    heap on classic, one gRPC message on Connect).
    """
    offsets = range(0, max(len(data), 1), _CHUNK)
    for i, o in enumerate(offsets):
        df = spark.createDataFrame([(i, bytes(data[o:o + _CHUNK]))], _blob_schema())
        mode = ("overwrite" if overwrite else "errorifexists") if i == 0 else "append"
        df.coalesce(1).write.mode(mode).parquet(path)


def read_bytes(spark: Any, path: str, *, blob: bool = True) -> bytes:
    """Read what :func:`write_bytes` wrote (``blob``), or one plain file through ``binaryFile``, as bytes."""
    try:
        if blob:  # chunk by chunk: a 200 MB file never passes through one result (driver heap, gRPC)
            df = spark.read.schema(_blob_schema()).parquet(path)
            parts = sorted(r.part for r in df.select("part").collect())
            if not parts or parts != list(range(len(parts))):
                raise ValueError(f"the chunks found are {parts[:10]}, not 0..n-1")
            chunks = []
            for i in parts:
                rows = df.where(df.part == i).select("bytes").collect()
                chunks.append(bytes(rows[0].bytes))
            return b"".join(chunks)
        rows = spark.read.format("binaryFile").load(path).select("content").collect()
    except Exception as exc:  # noqa: BLE001 - Spark wraps a missing path in engine-specific errors
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read {path!r}: {text[:300]}") from None
    if len(rows) != 1:
        raise ValueError(f"cannot read {path!r}: expected one file, found {len(rows)}.")
    return bytes(rows[0].content)


def _listing(spark: Any, path: str, recursive: bool = True) -> List[Tuple[str, int]]:
    """(uri, length) of the files under ``path``, as Spark's file sources list them (hidden names skipped)."""
    reader = spark.read.format("binaryFile")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    try:
        rows = reader.load(path).select("path", "length").collect()
    except Exception:  # noqa: BLE001 - a missing path
        return []
    return [(r.path, int(r.length)) for r in rows]


def exists(spark: Any, path: str) -> bool:
    """True when ``path`` holds at least one file Spark can list (a file, or a directory with files)."""
    if not is_connect(spark):
        fs, p = _hadoop(spark, path)
        return bool(fs.exists(p))
    return bool(_listing(spark, path))


def list_files(spark: Any, path: str) -> List[str]:
    """URIs of every file under ``path`` (recursive), hidden names included on classic."""
    if not is_connect(spark):
        fs, p = _hadoop(spark, path)
        if not fs.exists(p):
            return []
        it = fs.listFiles(p, True)
        names = []
        while it.hasNext():
            names.append(str(it.next().getPath().toString()))
        return names
    return [uri for uri, _ in _listing(spark, path)]


def _hadoop(spark: Any, path: str) -> Tuple[Any, Any]:
    sc = spark.sparkContext
    p = sc._jvm.org.apache.hadoop.fs.Path(path)  # noqa: SLF001 - the Hadoop FileSystem API has no Python binding
    return p.getFileSystem(sc._jsc.hadoopConfiguration()), p  # noqa: SLF001


def handle_overwrite(spark: Any, path: str) -> None:
    """Delete ``path`` before a ``.write().overwrite().save(path)`` (server side on Connect)."""
    if is_connect(spark):
        from pyspark.ml.util import ML_CONNECT_HELPER_ID
        from pyspark.ml.wrapper import JavaWrapper

        JavaWrapper(java_obj=ML_CONNECT_HELPER_ID)._call_java("handleOverwrite", path, True)
        return
    fs, p = _hadoop(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


def num_partitions(df: Any) -> Optional[int]:
    """A DataFrame's partition count (classic), or None where the engine does not expose it (Connect)."""
    if is_connect(df.sparkSession):
        return None
    return int(df.rdd.getNumPartitions())


def empty_files(spark: Any, path: str, *, recursive: bool = False) -> List[str]:
    """URIs of the 0-byte files that ``path`` (a file, directory or glob) names, as Spark lists them.

    Directories are listed one level deep (all levels with ``recursive``); names starting with
    ``.`` or ``_`` are skipped, as Spark's file sources skip them. Classic sessions only: listing
    0-byte files needs the Hadoop file system API through the JVM, and Spark's file sources (the
    only listing a Connect client has) skip them, so on Connect this returns ``[]`` and 0-byte
    files are not in ``read_images``' DataFrame (documented difference).
    """
    if is_connect(spark):
        return []
    sc = spark.sparkContext
    jvm = sc._jvm  # noqa: SLF001
    found: List[str] = []

    def visible(status: Any) -> bool:
        name = status.getPath().getName()
        return not (name.startswith(".") or name.startswith("_"))

    def visit(fs: Any, status: Any, depth: int) -> None:
        if not visible(status) and depth > 0:
            return
        if status.isDirectory():
            if depth == 0 or recursive:
                for child in fs.listStatus(status.getPath()):
                    visit(fs, child, depth + 1)
        elif status.getLen() == 0:
            found.append(status.getPath().toString())

    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(sc._jsc.hadoopConfiguration())  # noqa: SLF001
    for status in fs.globStatus(hpath) or []:
        visit(fs, status, 0)
    return sorted(found)


# ============================================================================ inside a task
def task_cpus() -> Optional[int]:
    """The CPUs Spark gave the running task (``spark.task.cpus``, or a resource profile's); None off a task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return None
    try:
        return int(ctx.cpus())
    except Exception:  # noqa: BLE001 - older contexts have no cpus()
        return None


def executor_id(local_mode: bool) -> str:
    """Spark's id of the executor running this Python worker ('driver' in local mode)."""
    import re
    import socket

    if local_mode:
        return "driver"
    env = os.environ
    if env.get("SPARK_EXECUTOR_ID"):  # Kubernetes
        return env["SPARK_EXECUTOR_ID"]
    for key in ("SPARK_LOG_URL_STDERR", "SPARK_LOG_URL_STDOUT"):  # standalone, local-cluster
        m = re.search(r"[?&]executorId=([^&]+)", env.get(key, ""))
        if m:
            return m.group(1)
    if env.get("CONTAINER_ID"):  # YARN
        return env["CONTAINER_ID"]
    return f"{socket.gethostname()}:{os.getppid()}"  # the worker daemon: one per executor


def process_age(now: float) -> Optional[float]:
    """Seconds this process had lived at ``time.perf_counter()`` value ``now`` (Linux ``/proc``; else None)."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started - (time.perf_counter() - now))



# ============================================================================ executors' Python
_PROBE_SOURCE = '''
def probe(batches):
    import os
    import sys

    import pyarrow as pa

    blocked, version = "", None  # test-only fail points: modules missing, another version, on the executor
    for item in os.environ.get("SPARKDL_LITE_FAILPOINTS", "").split(";"):
        key, _, value = item.partition("=")
        if key.strip() == "executor_missing":
            blocked = value.strip()
        elif key.strip() == "executor_version":
            version = value.strip()
    for name in filter(None, blocked.split(",")):
        sys.modules[name] = None
    found = {"python": sys.version.split()[0], "executable": sys.executable, "sparkdl_lite": None,
             "sparkdl_lite_error": None, "tensorflow": None, "tensorflow_error": None}
    def import_tensorflow():
        try:  # without TF's start-up lines in every worker, as sparkdl_lite's tasks import it
            from sparkdl_lite.core.quiet import import_tensorflow as quietly
        except ImportError:  # no (or another) sparkdl_lite here: reported below
            return __import__("tensorflow")
        return quietly(task=True)

    for name in ("sparkdl_lite", "tensorflow"):
        if name == "tensorflow" and found["sparkdl_lite"] != DRIVER_VERSION:
            break  # the driver reports sparkdl_lite first: no TF import (5-15 s) for an error it will not show
        try:
            module = import_tensorflow() if name == "tensorflow" else __import__(name)
            found[name] = str(getattr(module, "__version__", "?"))
        except Exception as exc:
            found[name] = None
            found[name + "_error"] = type(exc).__name__ + ": " + str(exc)
        if name == "sparkdl_lite" and version and found[name]:
            found[name] = version
    for batch in batches:
        yield pa.RecordBatch.from_pylist([{k: (None if v is None else str(v)) for k, v in found.items()}
                                          for _ in range(batch.num_rows)])
'''
_checked: Dict[Tuple[int, str], bool] = {}


def _probe_function(version: str) -> Callable[..., Any]:
    """The probe, defined outside any importable module so it is pickled by value: it runs even
    where the executors cannot import sparkdl_lite. ``version``: the driver's sparkdl_lite."""
    namespace: Dict[str, Any] = {"__name__": "sparkdl_lite_executor_probe", "DRIVER_VERSION": version}
    exec(compile(_PROBE_SOURCE, "<sparkdl_lite executor probe>", "exec"), namespace)  # noqa: S102 - our own constant source
    return namespace["probe"]


class _Check:
    """A running executors' check: :meth:`wait` raises its clear error, if any."""

    def __init__(self, run: Callable[[], None], background: bool) -> None:
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        if background:
            self._thread = threading.Thread(target=self._call, args=(run,), name="sparkdl-lite-check", daemon=True)
            self._thread.start()
        else:
            run()  # raises here

    def _call(self, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait() in the caller's thread
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error


def check_executors(spark: Any, *, background: bool = False) -> _Check:
    """Fail with one clear error when the executors' Python lacks sparkdl_lite or TensorFlow, or has another version.

    Runs one tiny job the first time a session trains or scores (cached per session), one task per
    task slot, each importing TensorFlow: without it a missing package surfaces as a deep
    unpickling traceback from inside a task. With ``background=True`` the job runs in a thread
    while the caller goes on (the classifier collects its data meanwhile), so the Python workers'
    TensorFlow import, ~5-9 s on a fresh worker, overlaps the driver's work instead of delaying
    the first training task; call ``.wait()`` before the job that needs the workers.
    """
    from sparkdl_lite import __version__

    key = (id(spark), str(getattr(spark, "session_id", "")))
    if _checked.get(key):
        return _Check(lambda: None, background=False)
    slots = max(1, default_parallelism(spark))

    def run() -> None:
        schema = ("python string, executable string, sparkdl_lite string, sparkdl_lite_error string, "
                  "tensorflow string, tensorflow_error string")
        with job_description(spark, "sparkdl_lite: check the executors' Python packages (and import TensorFlow there)"):
            rows = spark.range(0, slots, 1, slots).mapInArrow(_probe_function(__version__), schema).collect()
        for row in rows:
            _raise_for(row, __version__)
        _checked[key] = True

    return _Check(run, background=background)


def _raise_for(row: Any, version: str) -> None:
    where = f"the executors' Python ({row.executable}, Python {row.python})"
    if row.sparkdl_lite is None:
        raise RuntimeError(f"sparkdl_lite is not installed in {where}: {row.sparkdl_lite_error}. Install the same "
                           f"version as the driver on every executor (pip install 'sparkdl_lite[cpu]=={version}'), "
                           f"or point spark.pyspark.python / PYSPARK_PYTHON at a Python that has it.")
    if row.sparkdl_lite != version:  # checked before TensorFlow: the probe does not import TF then
        raise RuntimeError(f"{where} has sparkdl_lite {row.sparkdl_lite} but this driver has {version}; install "
                           f"the same version everywhere (models and task code change between versions).")
    if row.tensorflow is None:
        raise RuntimeError(f"TensorFlow is not installed in {where}: {row.tensorflow_error}. Install it on every "
                           f"executor: pip install 'sparkdl_lite[cpu]' (or [gpu]).")
