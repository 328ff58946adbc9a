"""The training job: one Spark task per training, launched once for all of them.

What a fit hands down and gets back, in two records:

- :class:`TaskSpec` (driver -> task): the keyword arguments of
  :func:`sparkdl_lite.core.training.train` for one param map, and where its inputs wait (the data
  key of its training rows in the shipped :class:`~sparkdl_lite.runner.task_data.TaskData`, the
  held-out rows it predicts after training, the Keras archives it starts from) plus its estimated
  work, which orders the job's tasks;
- :class:`TaskResult` (task -> driver): the frozen graph, the trained ``.keras`` archive, the
  history and where it ran, or the error. Its fields also give the job's Arrow schema.

:func:`run` ships the data and archives, starts one ``mapInArrow`` job with one partition per
spec (a lone spec asks for a whole executor's cores by stage-level scheduling where the cluster
manager supports it) and returns the results by spec index; :class:`ModelIterator` hands a
caller's models out of it thread-safely, running the job on the first ``next()``.

Spark layer: pyspark and pyarrow here, TensorFlow only inside the task (through ``core``).
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from sparkdl_lite.core import failpoint
from sparkdl_lite.core.image import without_alpha
from sparkdl_lite.runner import engine, task_data
from sparkdl_lite.runner import epochs as epoch_board

__all__ = ["TaskSpec", "TaskResult", "TRAIN_JOB_TAG", "run", "longest_first", "lone_task_profile", "ModelIterator",
           "pack_archives", "estimate_work", "add_archive", "FitTask", "Fitted"]

TRAIN_JOB_TAG = "sparkdl_lite.train"  # Spark job tag of the training jobs (the CLI's progress line counts their tasks)


# ============================================================================ records
@dataclass(frozen=True)
class TaskSpec:
    """One training: ``train`` holds :func:`~sparkdl_lite.core.training.train`'s keyword arguments.

    ``data`` and ``score`` are :class:`~sparkdl_lite.runner.task_data.TaskData` keys (training
    rows; held-out rows predicted after training, or None); ``model`` and ``warm_start`` are
    archive keys (content hashes) of the user's Keras model and of the model this training
    continues; ``work`` is the estimated work (only the order of the estimates matters).
    """

    index: int
    train: Dict[str, Any]
    data: int
    score: Optional[int] = None
    model: Optional[str] = None
    warm_start: Optional[str] = None
    work: float = 0.0

    @property
    def epochs(self) -> int:
        return int(self.train["epochs"])


class TaskResult(NamedTuple):
    """What one training task sends back: the model's parts, or ``error`` (then the parts are None).

    ``info`` is where and how the task trained (``executorId``, ``taskCpus``, ``seconds``,
    ``startup``, ``phases``, ...); ``scores`` the predicted classes of the held-out rows (int32
    bytes) when the spec asked for them, and ``labels`` their labels (int32 bytes) when the task
    streamed those rows (shipped rows' labels stay on the driver).
    """

    index: int
    graph: Optional[bytes]
    inputs: Optional[List[str]]
    outputs: Optional[List[str]]
    history: Optional[List[Dict[str, Any]]]
    info: Dict[str, Any]
    error: Optional[str]
    model: Optional[bytes]
    scores: Optional[bytes]
    labels: Optional[bytes] = None

    def to_arrow(self) -> pa.RecordBatch:
        row = {k: (json.dumps(v) if k in _JSON_FIELDS else v) for k, v in self._asdict().items()}
        return pa.RecordBatch.from_pylist([row], schema=RESULT_ARROW)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Dict[int, TaskResult]:
        """The results of a job's Arrow table, by spec index."""
        out = {}
        for row in table.to_pylist():
            result = cls(**{k: (json.loads(v) if k in _JSON_FIELDS and v is not None else v) for k, v in row.items()})
            out[result.index] = result
        return out


class FitTask(NamedTuple):
    """One training of :func:`sparkdl_lite.classifier.fit_tasks`: its rows and param map; optionally the model it continues
    (a warm start: ``epochs`` more epochs, the history continued) and held-out rows it predicts."""

    dataset: Any  # a DataFrame
    params: Dict[Any, Any]  # a param map
    start: Any = None  # a TFClassificationModel
    validation: Any = None  # a DataFrame


class Fitted(NamedTuple):
    """The outcome of one :class:`FitTask`: the model, or the error (a ``RuntimeError`` naming it).

    ``labels`` and ``predictions`` are the held-out rows' labels and predicted classes (numpy
    arrays) when the task predicted them; a diverged model has ``trainingInfo["diverged"]``."""

    model: Any  # a TFClassificationModel, or None
    error: Optional[BaseException]
    labels: Optional[np.ndarray] = None
    predictions: Optional[np.ndarray] = None


def _arrow_type(hint: Any) -> pa.DataType:
    """A TaskResult field's Arrow type; a field of dicts (or lists of dicts) travels as JSON text."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    plain = {int: pa.int64(), bytes: pa.binary(), str: pa.string(), List[str]: pa.list_(pa.string())}
    return plain.get(hint, pa.string())


_HINTS = typing.get_type_hints(TaskResult)
RESULT_ARROW = pa.schema([(name, _arrow_type(_HINTS[name])) for name in TaskResult._fields])
_JSON_FIELDS = frozenset(name for name in TaskResult._fields
                         if RESULT_ARROW.field(name).type == pa.string() and _HINTS[name] not in (str, Optional[str]))


def _spark_schema() -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(RESULT_ARROW)


@dataclass(frozen=True)
class _JobInputs:
    """What every task of one job reads: the shipped rows and archives, where epochs are reported, fail points."""

    data: Any
    archives: Any
    local_mode: bool
    progress_dir: Optional[str]
    faults: failpoint.Faults = field(default_factory=failpoint.Faults)
    streamed: Dict[int, Tuple[str, Tuple[int, ...]]] = field(default_factory=dict)  # data key -> (uri, feature shape)


# ============================================================================ executor side
def train_task(spec: TaskSpec, job: _JobInputs, slot: int) -> TaskResult:
    """Train ``spec`` as task ``slot`` of its job; a training error comes back in the result, never raised."""
    import socket

    from pyspark import TaskContext

    from sparkdl_lite.core import runtime, training

    start = time.perf_counter()
    ctx = TaskContext.get()
    threads = engine.task_cpus()
    info: Dict[str, Any] = {"executorId": engine.executor_id(job.local_mode), "host": socket.gethostname(),
                            "pid": os.getpid(), "taskCpus": threads, "partitionId": ctx.partitionId() if ctx else None,
                            "attempt": ctx.attemptNumber() if ctx else None}
    job.faults.fail_first_attempt(spec.index, info["attempt"])  # escapes the task: Spark retries it
    startup = {"workerAge": engine.process_age(start)}  # None where /proc is missing; ~0 in a fresh worker
    try:
        t0 = time.perf_counter()
        runtime.configure_threads(threads)  # imports TensorFlow in a fresh worker
        t1 = time.perf_counter()
        rows = _Rows(job)  # shipped arrays (cached per worker: shared by its tasks and a search's rungs) or staged files
        startup.update(tensorflow=t1 - t0, broadcast=time.perf_counter() - t1)
        job.faults.fail_training(spec.index)
        info["data"] = "stream" if spec.data in job.streamed else "ship"
        result = training.train(*rows.arrays(spec.data), rows=rows.staged(spec.data), threads=threads,
                                **spec.train, **_archives(spec, job),
                                on_epoch=lambda done, _: epoch_board.report(job.progress_dir, slot, done))
        info.update(seconds=float(result.seconds), diverged=bool(result.diverged), startup=startup,
                    phases={k: float(v) for k, v in result.phases.items()})
        if result.weights:
            info["weights"] = dict(result.weights)
        scores = labels = None
        if spec.score is not None:  # the held-out rows, predicted here: no separate scoring job
            t2 = time.perf_counter()
            predicted, labels = rows.predict(spec.score, result.graph)
            scores = predicted.tobytes()
            info.update(scoreSeconds=time.perf_counter() - t2, scoredRows=int(len(predicted)))
        graph = result.graph
        info["peakRssMb"] = _peak_rss_mb()
        return TaskResult(spec.index, graph.to_bytes(), list(graph.input_names), list(graph.output_names),
                          result.history, info, None, result.model, scores, labels)
    except Exception as exc:  # noqa: BLE001 - reported per training so the other models survive
        info.update(seconds=time.perf_counter() - start, diverged=False)
        return TaskResult(spec.index, None, None, None, None, info, f"{type(exc).__name__}: {exc}", None, None)


class _Rows:
    """A task's view of its job's rows by data key: shipped arrays or staged Parquet files."""

    def __init__(self, job: _JobInputs) -> None:
        self.job = job
        self.payload = task_data.unpack(job.data) if job.data is not None else {}

    def arrays(self, key: int) -> Tuple[Any, Any]:
        """(x, y) of a shipped key; (None, None) for a staged one."""
        return (None, None) if key in self.job.streamed else (self.payload[f"x{key}"], self.payload[f"y{key}"])

    def staged(self, key: int) -> Any:
        """A :class:`~sparkdl_lite.core.stream.StagedRows` over a staged key's files, else None."""
        if key not in self.job.streamed:
            return None
        from sparkdl_lite.core.stream import StagedRows

        uri, shape = self.job.streamed[key]
        return StagedRows(uri, shape)

    def predict(self, key: int, graph: Any) -> Tuple[np.ndarray, Optional[bytes]]:
        """The classes ``graph`` predicts for a key's rows, and (staged rows only) their labels as int32 bytes."""
        from sparkdl_lite.core import training

        staged = self.staged(key)
        if staged is None:
            return training.predict_classes(graph, self.payload[f"x{key}"]), None
        predicted, labels = [], []
        for x, y in staged.batches(0, seed=0, batch_size=4096, shuffle_rows=0):
            predicted.append(training.predict_classes(graph, without_alpha(x)))
            labels.append(y.astype(np.int32))
        return np.concatenate(predicted), np.concatenate(labels).tobytes()


def _peak_rss_mb() -> Optional[float]:
    """This Python worker's peak resident memory so far, in MiB (None where the platform does not say)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        return None


def _archives(spec: TaskSpec, job: _JobInputs) -> Dict[str, bytes]:
    """The Keras archives ``spec`` starts from, as ``train()``'s ``model`` / ``warm_start`` bytes."""
    wanted = {k: v for k, v in (("model", spec.model), ("warm_start", spec.warm_start)) if v is not None}
    if not wanted:
        return {}
    held = task_data.unpack(job.archives, slot="archives")
    return {k: held[f"a{v}"].tobytes() for k, v in wanted.items()}


def _train_batches(batches: Iterator[pa.RecordBatch], specs: List[TaskSpec], job: _JobInputs) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: partition ``p`` holds the one row ``p`` and trains ``specs[p]``."""
    for batch in batches:
        for p in batch.column(0).to_pylist():
            yield train_task(specs[int(p)], job, int(p)).to_arrow()


# ============================================================================ driver side
def longest_first(specs: Sequence[TaskSpec]) -> List[TaskSpec]:
    """``specs`` by estimated work, the largest first (stable): short trainings fill the slots at the job's end."""
    return sorted(specs, key=lambda s: -s.work)


def estimate_work(data_shape: Sequence[int], train: Dict[str, Any], size: Optional[int] = None) -> float:
    """Estimated work of a training: rows x epochs x multiply-adds per row (0 if unknown).

    A preset counts its multiply-adds (:func:`~sparkdl_lite.core.training.preset_work`); a model
    of your own gives its variant's parameter count as ``size``. Only the order of the estimates
    matters (:func:`longest_first`)."""
    if size is not None:
        per_row = size
    else:
        from sparkdl_lite.core.training import preset_work

        try:
            per_row = preset_work(architecture=train["architecture"], num_classes=train["num_classes"],
                                  feature_shape=list(data_shape[1:]), input_shape=train["input_shape"],
                                  hidden_layers=train["hidden_layers"], conv_filters=train["conv_filters"],
                                  dropout=train["dropout"])
        except (ValueError, TypeError):  # the task reports the bad param; its place in the job is moot
            per_row = 0
    return float(data_shape[0]) * int(train["epochs"]) * per_row


def add_archive(archive: bytes, archives: Dict[str, bytes]) -> str:
    """Put a Keras archive into ``archives`` under its content hash, which a TaskSpec names; return the key."""
    import hashlib

    key = hashlib.sha256(archive).hexdigest()
    archives[key] = archive
    return key


def pack_archives(archives: Mapping[str, bytes]) -> bytes:
    """Keras archives keyed by content hash, as one ``.npz`` (no pickle)."""
    return task_data.pack({f"a{k}": np.frombuffer(v, dtype=np.uint8) for k, v in archives.items()})


def lone_task_profile(spark: Any, n_tasks: int) -> Optional[Any]:
    """A ResourceProfile giving a lone training task the cores of a whole executor, or None.

    A single param map (``fit``, the refit of CrossValidator's best model) would otherwise train
    with ``spark.task.cpus`` threads while the rest of its executor idles. Stage-level scheduling
    asks for the smallest executor's core count for that one task, so TF gets that many threads
    and Spark accounts for them. Only where Spark supports task resource profiles: standalone
    (``local-cluster`` included), YARN and Kubernetes with dynamic allocation off; never in local
    mode, where ``spark.task.cpus`` stays in force, nor where the engine does not report
    executor cores (Spark Connect).
    """
    if n_tasks != 1 or engine.is_local_mode(spark):
        return None
    if (engine.conf(spark, "spark.dynamicAllocation.enabled", "false") or "").strip().lower() == "true":
        return None
    cores = engine.executor_cores(spark)
    cpus = min(cores) if cores else 0
    if cpus <= int(engine.conf(spark, "spark.task.cpus", "1") or 1):
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    return ResourceProfileBuilder().require(TaskResourceRequests().cpus(cpus)).build


def run(spark: Any, specs: Sequence[TaskSpec], data: task_data.TaskData, archives: Mapping[str, bytes], *,
        description: str, keep_data: bool = False) -> Dict[int, TaskResult]:
    """Train every spec in ONE Spark job, task ``p`` training ``specs[p]``; the results by spec index.

    ``data`` is shipped (or its last shipment reused) and ``archives`` shipped for this job only;
    the data is closed afterwards unless ``keep_data`` (a search keeps it for its next rung).
    Raises what Spark raises when the job itself fails (a training error comes back in its result).
    """
    specs = list(specs)
    shipped = data.ship(spark)  # None when every row is staged
    streamed = {k: (v.uri, tuple(v.feature_shape)) for k, v in data.streamed().items()}
    models = engine.ship(spark, pack_archives(archives)) if archives else None
    board = epoch_board.EpochBoard([s.epochs for s in specs])  # the progress line's epochs, by task slot
    try:
        job = _JobInputs(shipped, models, engine.is_local_mode(spark), board.path, failpoint.armed(), streamed)
        body = functools.partial(_train_batches, specs=specs, job=job)
        # One row and one partition per task. mapInArrow (not an RDD map) runs in the same Python
        # workers as the scoring UDFs, so an executor imports TensorFlow once, not twice.
        frame = spark.range(0, len(specs), 1, len(specs)).mapInArrow(
            body, _spark_schema(), profile=lone_task_profile(spark, len(specs)))
        with engine.job_tag(spark, TRAIN_JOB_TAG), engine.job_description(spark, description):
            table = frame.toArrow()
    finally:
        board.close()
        if models is not None:
            engine.release(models)
        if not keep_data:
            data.close()
    return TaskResult.from_arrow(table)


class ModelIterator:
    """Thread-safe ``(index, model)`` iterator over one training job, which runs on the first ``next()``.

    ``run()`` returns the results by index; ``build(result)`` turns one into a model (or raises,
    which reaches the caller of that ``next()`` only).
    """

    def __init__(self, run: Callable[[], Dict[int, TaskResult]], build: Callable[[TaskResult], Any], n: int) -> None:
        self._run = run
        self._build = build
        self._n = n
        self._counter = 0
        self._lock = threading.Lock()
        self._results: Optional[Dict[int, TaskResult]] = None
        self._error: Optional[BaseException] = None

    def __iter__(self) -> ModelIterator:
        return self

    def __next__(self) -> Tuple[int, Any]:
        with self._lock:
            index = self._counter
            if index >= self._n:
                raise StopIteration("No models remaining.")
            self._counter += 1
            if self._results is None and self._error is None:
                try:
                    self._results = self._run()
                except BaseException as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            result = self._results[index]
        return index, self._build(result)

    def next(self) -> Tuple[int, Any]:
        return self.__next__()
