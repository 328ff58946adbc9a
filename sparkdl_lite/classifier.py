"""TFClassifier (Estimator) and TFClassificationModel (Model): Keras classifiers as Spark ML stages.

Tuning runs on the executors: :meth:`TFClassifier.fitMultiple` collects the features and labels
once (Arrow), broadcasts them once, and trains one param map per Spark task with
:func:`sparkdl_lite.core.training.train`; each task sends back the frozen graph bytes and history.
``fit`` is ``fitMultiple`` with one param map, so both give the same model. The model scores
through :class:`~sparkdl_lite.TFTransformer` / :class:`~sparkdl_lite.TFImageTransformer` (the same
per-worker runtime as deployment) and derives ``prediction`` on the JVM.
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol, HasSeed
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl_lite.runner import engine, task_data
from sparkdl_lite.runner import epochs as epoch_board
from sparkdl_lite.core import failpoint
from sparkdl_lite.params import (
    HasBatchSize,
    HasGraph,
    check,
    to_int_list,
    to_layer_params,
    to_optional_float,
    to_optional_int_list,
)
from sparkdl_lite.persistence import GraphStageReader, GraphStageWriter, StageDataReader, StageDataWriter

__all__ = ["TFClassifier", "TFClassificationModel"]

from sparkdl_lite.core.training import HYPERPARAMS, hyperparam_problem  # noqa: E402

INITIAL_WEIGHTS = ("model", "fresh")
CHANNEL_ORDERS = ("RGB", "BGR")
_PRESET_PARAMS = tuple(n for n, spec in HYPERPARAMS.items() if spec.get("preset")) + ("inputShape",)
MODEL_FILE = "model.keras"
INPUT_TENSOR = "features:0"
LOGITS_TENSOR = "logits:0"
PROBABILITY_TENSOR = "probability:0"

TRAIN_JOB_TAG = "sparkdl_lite.train"  # Spark job tag of the training jobs
# Test-only fault injection (not public API): comma-separated param-map indexes whose training
# raises inside its Spark task. Read on the driver; the failure travels in the task closure.
_TMP_LOGITS = "__sparkdl_lite_logits"
_TMP_PROBABILITY = "__sparkdl_lite_probability"
_NUMERIC = (T.FloatType, T.DoubleType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)
_LABEL_TYPES = _NUMERIC + (T.DecimalType,)


def _feature_kind(dt: T.DataType) -> Optional[str]:
    """'vector', 'array', 'image' or None for a column type the stages cannot take."""
    from sparkdl_lite.images import is_image_struct

    if isinstance(dt, VectorUDT):
        return "vector"
    if isinstance(dt, T.ArrayType) and isinstance(dt.elementType, _NUMERIC):
        return "array"
    if is_image_struct(dt):
        return "image"
    return None


# ============================================================================ params
class _TFClassifierParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol,
                          HasRawPredictionCol, HasBatchSize, HasSeed):
    """Params shared by :class:`TFClassifier` and :class:`TFClassificationModel`."""

    architecture: Param[str] = Param(
        Params._dummy(), "architecture",
        "Built-in network: 'mlp' (dense layers) or 'cnn' (conv+pool blocks, then dense layers).",
        typeConverter=TypeConverters.toString)
    hiddenLayers: Param[List[int]] = Param(
        Params._dummy(), "hiddenLayers",
        "Units of each hidden dense layer, e.g. [128] or [256, 128] (non-empty for 'mlp').",
        typeConverter=to_int_list)
    convFilters: Param[List[int]] = Param(
        Params._dummy(), "convFilters",
        "Filters of each 3x3 conv + 2x2 max-pool block of a 'cnn', e.g. [32, 64].",
        typeConverter=to_int_list)
    dropout: Param[float] = Param(
        Params._dummy(), "dropout",
        "Dropout rate after each hidden dense layer and each conv block, in [0, 1); 0 adds no dropout.",
        typeConverter=TypeConverters.toFloat)
    learningRate: Param[float] = Param(
        Params._dummy(), "learningRate",
        "Optimizer step size (> 0).",
        typeConverter=TypeConverters.toFloat)
    optimizer: Param[str] = Param(
        Params._dummy(), "optimizer",
        "Keras optimizer: 'adam', 'sgd' or 'rmsprop'.",
        typeConverter=TypeConverters.toString)
    learningRateSchedule: Param[str] = Param(
        Params._dummy(), "learningRateSchedule",
        "How the step size moves during a fit: 'constant' (learningRate throughout) or 'cosine' (from "
        "learningRate down to 0 along a half cosine over the fit's steps; a warm start decays anew).",
        typeConverter=TypeConverters.toString)
    epochs: Param[int] = Param(
        Params._dummy(), "epochs",
        "Passes over the training data (>= 1).",
        typeConverter=TypeConverters.toInt)
    inputShape: Param[Optional[List[int]]] = Param(
        Params._dummy(), "inputShape",
        "Shape each flat feature row is reshaped to inside the network, e.g. [8, 8, 1] for a 'cnn' "
        "on 64-value vectors; None keeps the features' own shape.",
        typeConverter=to_optional_int_list)
    layerParams: Param[Dict[str, Any]] = Param(
        Params._dummy(), "layerParams",
        "Changes to the config of the model's layers, {'<layer path>.<config key>': value}, e.g. "
        "{'hidden.units': 256, 'drop.rate': 0.3} or {'base/block_2.filters': 64}; applied before each task builds "
        "its copy of the model. Only with a model (setModel).",
        typeConverter=to_layer_params)
    initialWeights: Param[str] = Param(
        Params._dummy(), "initialWeights",
        "Where a model's trainable layers start: 'model' (the given weights, where the layer's config and weight "
        "shapes are unchanged and no changed layer feeds it) or 'fresh' (initialised from the seed). Frozen "
        "layers always keep the given weights.",
        typeConverter=TypeConverters.toString)
    channelOrder: Param[str] = Param(
        Params._dummy(), "channelOrder",
        "Channel order in which image features reach the network: 'RGB' or 'BGR' (the image source's own order). "
        "Ignored for vector and array features.",
        typeConverter=TypeConverters.toString)
    scale: Param[Optional[float]] = Param(
        Params._dummy(), "scale",
        "Multiply the features by this before the network (in training and in the frozen graph). None: 1/255 "
        "for image features of a built-in architecture, no scaling otherwise (a model of your own gets pixel "
        "values 0-255, e.g. for its own Rescaling layer).",
        typeConverter=to_optional_float)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(featuresCol="features", labelCol="label", predictionCol="prediction",
                         probabilityCol="probability", rawPredictionCol="rawPrediction",
                         **{n: spec["default"] for n, spec in HYPERPARAMS.items()}, inputShape=None, layerParams={}, initialWeights="model", channelOrder="RGB",
                         scale=None)

    def getLayerParams(self) -> Dict[str, Any]:
        return dict(self.getOrDefault(self.layerParams))

    def getInitialWeights(self) -> str:
        return self.getOrDefault(self.initialWeights)

    def getChannelOrder(self) -> str:
        return self.getOrDefault(self.channelOrder)

    def getScale(self) -> Optional[float]:
        return self.getOrDefault(self.scale)

    def getArchitecture(self) -> str:
        return self.getOrDefault(self.architecture)

    def getHiddenLayers(self) -> List[int]:
        return self.getOrDefault(self.hiddenLayers)

    def getConvFilters(self) -> List[int]:
        return self.getOrDefault(self.convFilters)

    def getDropout(self) -> float:
        return self.getOrDefault(self.dropout)

    def getLearningRate(self) -> float:
        return self.getOrDefault(self.learningRate)

    def getOptimizer(self) -> str:
        return self.getOrDefault(self.optimizer)

    def getEpochs(self) -> int:
        return self.getOrDefault(self.epochs)

    def getLearningRateSchedule(self) -> str:
        return self.getOrDefault(self.learningRateSchedule)

    def getInputShape(self) -> Optional[List[int]]:
        return self.getOrDefault(self.inputShape)

    def _validate(self, schema: T.StructType) -> str:
        """Range checks of every param and the features column; returns its kind."""
        name = type(self).__name__
        for param in HYPERPARAMS:  # the one table of the fixed hyperparameters (core.training)
            problem = hyperparam_problem(param, self.getOrDefault(param))
            if problem:
                raise ValueError(f"{name}: param {param!r} {problem}")
        arch = self.getArchitecture()
        hidden = self.getHiddenLayers()
        check(arch != "mlp" or len(hidden) > 0,
              f"{name}: param 'hiddenLayers' must not be empty for architecture 'mlp'; got {hidden!r}. Use e.g. [128].")
        filters = self.getConvFilters()
        check(arch != "cnn" or len(filters) > 0,
              f"{name}: param 'convFilters' must not be empty for architecture 'cnn'; got {filters!r}. Use e.g. [32, 64].")
        shape = self.getInputShape()
        check(shape is None or (len(shape) > 0 and all(d >= 1 for d in shape)),
              f"{name}: param 'inputShape' must be None or a non-empty list of ints >= 1; got {shape!r}.")
        init = self.getInitialWeights()
        check(init in INITIAL_WEIGHTS, f"{name}: param 'initialWeights' must be one of {list(INITIAL_WEIGHTS)}; got {init!r}.")
        order = self.getChannelOrder()
        check(order in CHANNEL_ORDERS, f"{name}: param 'channelOrder' must be one of {list(CHANNEL_ORDERS)}; got {order!r}.")
        scale = self.getScale()
        check(scale is None or (math.isfinite(scale) and scale != 0.0),
              f"{name}: param 'scale' must be None or a finite non-zero float (e.g. 1/255); got {scale!r}.")
        col = self.getFeaturesCol()
        if col not in schema.names:
            raise ValueError(f"{name}: featuresCol {col!r} is not in the DataFrame. Available columns: {schema.names}.")
        kind = _feature_kind(schema[col].dataType)
        if kind is None:
            raise TypeError(f"{name}: featuresCol {col!r} must be a Spark ML vector, an array of numbers or an image "
                            f"struct; got {schema[col].dataType.simpleString()}.")
        if arch == "cnn" and kind != "image":
            check(shape is not None and len(shape) in (2, 3),
                  f"{name}: architecture 'cnn' needs image-shaped features but featuresCol {col!r} holds flat "
                  f"{kind}s and param 'inputShape' is {shape!r}; set inputShape=[height, width, channels], e.g. [8, 8, 1].")
        return kind

    def _train_kwargs(self) -> Dict[str, Any]:
        """This param map as keyword arguments of :func:`sparkdl_lite.core.training.train`."""
        shape = self.getInputShape()
        return {"architecture": self.getArchitecture(), "hidden_layers": list(self.getHiddenLayers()),
                "conv_filters": list(self.getConvFilters()), "dropout": float(self.getDropout()),
                "learning_rate": float(self.getLearningRate()), "optimizer": self.getOptimizer(),
                "learning_rate_schedule": self.getLearningRateSchedule(), "batch_size": int(self.getBatchSize()), "epochs": int(self.getEpochs()),
                "input_shape": None if shape is None else list(shape), "seed": int(self.getSeed())}

    def _work(self, data_shape: Sequence[int], cfg: Dict[str, Any], sizes: Dict[str, int]) -> float:
        """Estimated work of training this param map: rows x epochs x multiply-adds per row (0 if unknown).

        A preset counts its multiply-adds (:func:`~sparkdl_lite.core.training.preset_work`); a model
        of your own its variant's parameter count (``sizes``, keyed by layerParams as
        ``_model_variants`` fills it). Only the order of the estimates matters."""
        if getattr(self, "_keras_archive", None) is not None:
            per_row = sizes.get(json.dumps(self.getLayerParams(), sort_keys=True), 0)
        else:
            from sparkdl_lite.core.training import preset_work

            try:
                per_row = preset_work(architecture=cfg["architecture"], num_classes=cfg["num_classes"],
                                      feature_shape=list(data_shape[1:]), input_shape=cfg["input_shape"],
                                      hidden_layers=cfg["hidden_layers"], conv_filters=cfg["conv_filters"],
                                      dropout=cfg["dropout"])
            except (ValueError, TypeError):  # the task reports the bad param; its place in the job is moot
                per_row = 0
        return float(data_shape[0]) * int(cfg["epochs"]) * per_row


# ============================================================================ driver-side data
def _combine(col: Any) -> Any:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _first_null(arr: Any) -> Optional[int]:
    if not arr.null_count:
        return None
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def _collect(dataset: DataFrame, features: str, label: str, kind: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features (float32 ``(N, D)`` or uint8 ``(N, H, W, C)``) and float64 labels, in one Arrow collect."""
    name = "TFClassifier"
    f = F.col(features)
    if kind == "vector":
        cols = [vector_to_array(f, "float32").alias("f")]
    elif kind == "array":
        cols = [f.cast(T.ArrayType(T.FloatType())).alias("f")]
    else:
        cols = [f.getField(k).alias(k) for k in ("height", "width", "nChannels", "data")]
    table = dataset.select(*cols, F.col(label).cast(T.DoubleType()).alias("y")).toArrow()
    n = table.num_rows
    if n == 0:
        raise ValueError(f"{name}: the DataFrame is empty; it needs at least one row per class in labelCol {label!r}.")
    y_arr = _combine(table.column("y"))
    bad = _first_null(y_arr)
    if bad is not None:
        raise ValueError(f"{name}: labelCol {label!r} has a null at row {bad}; every row needs a class index. "
                         f"Filter or fill nulls first.")
    y = y_arr.to_numpy(zero_copy_only=False).astype(np.float64)
    if kind == "image":
        return _collect_images(table, features), y
    arr = _combine(table.column("f"))
    bad = _first_null(arr)
    if bad is not None:
        raise ValueError(f"{name}: featuresCol {features!r} has a null at row {bad}. Filter or fill nulls first.")
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if not (lengths == width).all():
        row = int(np.flatnonzero(lengths != width)[0])
        raise ValueError(f"{name}: featuresCol {features!r} has rows of different lengths ({width} values in row 0, "
                         f"{int(lengths[row])} in row {row}); every row needs the same number of features.")
    if width == 0:
        raise ValueError(f"{name}: featuresCol {features!r} has rows with no values.")
    x = arr.values.slice(int(offsets[0]), n * width).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    x = x.reshape(n, width)
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} has NaN or infinite values (first in row {row}); "
                         f"clean or impute them first.")
    return x, y


def _collect_images(table: Any, features: str) -> np.ndarray:
    name = "TFClassifier"
    n = table.num_rows
    data = _combine(table.column("data"))
    hwc = []
    for k in ("height", "width", "nChannels"):
        a = _combine(table.column(k))
        bad = _first_null(a)
        if bad is None:
            bad = _first_null(data)
        if bad is not None:
            raise ValueError(f"{name}: featuresCol {features!r} has a null image at row {bad}. Filter it out first.")
        hwc.append(a.to_numpy(zero_copy_only=False).astype(np.int64))
    h, w, c = hwc
    sizes = np.stack([h, w, c], axis=1)
    if (sizes <= 0).any():
        row = int(np.flatnonzero((sizes <= 0).any(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} has an invalid image at row {row} (height {int(h[row])}, "
                         f"width {int(w[row])}); drop invalid images first (read_images(..., drop_invalid=True)).")
    if not (sizes == sizes[0]).all():
        row = int(np.flatnonzero((sizes != sizes[0]).any(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} holds images of different sizes ({tuple(sizes[0])} in row 0, "
                         f"{tuple(sizes[row])} in row {row} as height, width, channels); resize them to one size first.")
    hh, ww, cc = (int(v) for v in sizes[0])
    if cc not in (1, 3, 4):
        raise ValueError(f"{name}: featuresCol {features!r} holds images with nChannels={cc}; expected 1, 3 or 4.")
    wide = pa.types.is_large_binary(data.type)
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int64 if wide else np.int32)[data.offset:data.offset + n + 1]
    lengths = np.diff(offsets)
    if not (lengths == hh * ww * cc).all():
        row = int(np.flatnonzero(lengths != hh * ww * cc)[0])
        raise ValueError(f"{name}: featuresCol {features!r} has an image at row {row} with {int(lengths[row])} data bytes; "
                         f"height*width*nChannels = {hh * ww * cc}.")
    values = np.frombuffer(data.buffers()[2], dtype=np.uint8)[int(offsets[0]):int(offsets[-1])]
    x = values.reshape(n, hh, ww, cc).copy()
    return x[..., :3] if cc == 4 else x  # alpha is dropped, as TFImageTransformer does when scoring


def _num_classes(dataset: DataFrame, label: str, y: np.ndarray) -> int:
    """K = max label + 1 (or the label's nominal attribute count, when larger); labels checked first."""
    name = "TFClassifier"
    integral = np.isfinite(y) & (y == np.round(y))
    if not integral.all():
        bad = float(y[~integral][0])
        raise ValueError(f"{name}: labelCol {label!r} must hold integral class indices 0..K-1; got {bad!r}. "
                         f"Use StringIndexer to turn other labels into indices.")
    if (y < 0).any():
        raise ValueError(f"{name}: labelCol {label!r} must hold class indices >= 0; got {int(y[y < 0][0])!r}.")
    k = int(y.max()) + 1
    attr = dataset.schema[label].metadata.get("ml_attr", {}) if dataset.schema[label].metadata else {}
    if attr.get("type") == "nominal":
        k = max(k, len(attr.get("vals") or []), int(attr.get("num_vals") or 0))
    if k < 2:
        raise ValueError(f"{name}: labelCol {label!r} holds only class 0; a classifier needs at least 2 classes.")
    return k


def _describe(param_map: Dict[Param, Any]) -> str:
    return "{" + ", ".join(f"{p.name}: {v!r}" for p, v in param_map.items()) + "}"


def _lone_task_profile(spark: Any, n_tasks: int) -> Optional[Any]:
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


# ============================================================================ executor side
def _train_task(index: int, *, shipped: Any, configs: List[Dict[str, Any]], local_mode: bool,
                progress_dir: Optional[str] = None, archives: Any = None) -> Tuple[Any, ...]:
    """Train task ``index`` inside a Spark task; errors come back as text, never raised."""
    import socket

    from pyspark import TaskContext

    from sparkdl_lite.core import runtime, training

    start = time.perf_counter()
    ctx = TaskContext.get()
    threads = engine.task_cpus()
    info = {"executorId": engine.executor_id(local_mode), "host": socket.gethostname(), "pid": os.getpid(),
            "taskCpus": threads, "partitionId": ctx.partitionId() if ctx else None,
            "attempt": ctx.attemptNumber() if ctx else None}
    cfg = configs[index]
    if cfg.get("_fail_first_attempt") and ctx is not None and ctx.attemptNumber() == 0:  # test-only fail point
        raise RuntimeError(f"injected failure of the first attempt of param map {index}")  # escapes: Spark retries
    startup = {"workerAge": engine.process_age(start)}  # None where /proc is missing; ~0 in a fresh worker
    try:
        t0 = time.perf_counter()
        runtime.configure_threads(threads)  # imports TensorFlow in a fresh worker
        t1 = time.perf_counter()
        payload = task_data.unpack(shipped)  # cached per worker: shared by its tasks (and a search's rungs)
        t2 = time.perf_counter()
        startup.update(tensorflow=t1 - t0, broadcast=t2 - t1)
        if cfg.get("_fail"):
            raise RuntimeError(cfg["_fail"])  # test-only fail point
        x, y = payload[f"x{cfg['data']}"], payload[f"y{cfg['data']}"]
        kwargs = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("data", "score")}
        for key in ("model", "warm_start"):
            if kwargs.get(key) is not None:
                kwargs[key] = task_data.unpack(archives, slot="archives")[f"a{kwargs[key]}"].tobytes()
        result = training.train(x, y, threads=threads, **kwargs,
                                on_epoch=lambda done, _: epoch_board.report(progress_dir, index, done))
        graph = result.graph
        info.update(seconds=float(result.seconds), diverged=bool(result.diverged), startup=startup,
                    phases={k: float(v) for k, v in result.phases.items()})
        if result.weights:
            info["weights"] = dict(result.weights)
        scores = None
        if cfg.get("score") is not None:  # the validation rows, predicted here: no separate scoring job
            t3 = time.perf_counter()
            scores = training.predict_classes(graph, payload[f"x{cfg['score']}"]).tobytes()
            info["scoreSeconds"] = time.perf_counter() - t3
        return (index, graph.to_bytes(), list(graph.input_names), list(graph.output_names),
                result.history, info, None, result.model, scores)
    except Exception as exc:  # noqa: BLE001 - reported per param map so the other models survive
        info.update(seconds=time.perf_counter() - start, diverged=False)
        return (index, None, None, None, None, info, f"{type(exc).__name__}: {exc}", None, None)


_RESULT_SCHEMA = ("index long, graph binary, inputs array<string>, outputs array<string>, history string, "
                  "info string, error string, model binary, scores binary")
_RESULT_ARROW = pa.schema([("index", pa.int64()), ("graph", pa.binary()), ("inputs", pa.list_(pa.string())),
                           ("outputs", pa.list_(pa.string())), ("history", pa.string()), ("info", pa.string()),
                           ("error", pa.string()), ("model", pa.binary()), ("scores", pa.binary())])


def _train_batches(batches: Iterator[Any], order: List[int], **kwargs: Any) -> Iterator[Any]:
    """mapInArrow body: train the task of each row (partition ``p`` holds row ``p``: task ``order[p]``); one Arrow row of results each."""
    for batch in batches:
        for row_index in batch.column(0).to_pylist():
            index = order[int(row_index)]
            _, graph, inputs, outputs, history, info, error, model, scores = _train_task(index, **kwargs)
            row = {"index": int(index), "graph": graph, "inputs": inputs, "outputs": outputs,
                   "history": json.dumps(history), "info": json.dumps(info), "error": error, "model": model,
                   "scores": scores}
            yield pa.RecordBatch.from_pylist([row], schema=_RESULT_ARROW)


class _ModelIterator:
    """Thread-safe ``(index, model)`` iterator; the training job runs once, on the first ``next()``."""

    def __init__(self, run: Any, build: Any, n: int) -> None:
        self._run = run
        self._build = build
        self._n = n
        self._counter = 0
        self._lock = threading.Lock()
        self._results: Optional[Dict[int, Tuple[Any, ...]]] = None
        self._error: Optional[BaseException] = None

    def __iter__(self) -> _ModelIterator:
        return self

    def __next__(self) -> Tuple[int, TFClassificationModel]:
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

    def next(self) -> Tuple[int, TFClassificationModel]:
        return self.__next__()


# ============================================================================ estimator
class TFClassifier(Estimator, _TFClassifierParams, MLReadable, MLWritable):
    """Train a TensorFlow (Keras) classifier on a DataFrame, one param map per Spark task.

    The network is either a built-in preset (``architecture`` ``mlp`` or ``cnn``, sized by
    ``hiddenLayers``, ``convFilters``, ``dropout``) or the user's own Keras model (``model=``, a
    Sequential or functional model with one input and one output, compiled or not), tuned through
    ``layerParams``. Both go through one training path: the model is built in each task (with
    the layer params applied and the given weights carried over where its layers are unchanged),
    fitted with the optimizer from the params and frozen behind the same feature preprocessing.

    Features are a Spark ML vector, an ``array<float|double>`` or an image struct (uint8 pixels
    in ``channelOrder``; a preset scales them by 1/255, a model of your own gets 0-255 unless
    ``scale`` says otherwise), reshaped to the model's input. Labels are integral class
    indices ``0..K-1``; K is the largest label + 1. ``fit`` and ``fitMultiple`` collect the data
    once through Arrow, broadcast it once and train each param map in its own Spark task on an
    executor, with TensorFlow using that task's CPUs (``spark.task.cpus``). A lone param map
    (``fit``, the refit of a tuner's best model) asks for a whole executor's cores instead, by
    stage-level scheduling, where the cluster manager supports it (standalone, YARN, Kubernetes
    with dynamic allocation off; not local mode). ``CrossValidator`` and ``TrainValidationSplit``
    use :meth:`fitMultiple` unchanged.

    Parameters
    ----------
    featuresCol, labelCol : str, default "features", "label"
    predictionCol, probabilityCol, rawPredictionCol : str
        Output columns of the model; ``""`` skips one.
    architecture : {"mlp", "cnn"}, default "mlp"
    hiddenLayers : list of int, default [128]
    convFilters : list of int, default [32, 64]
        One 3x3 conv + 2x2 max-pool block per entry (``cnn``).
    dropout : float, default 0.0
    learningRate : float, default 1e-3
    optimizer : {"adam", "sgd", "rmsprop"}, default "adam"
    learningRateSchedule : {"constant", "cosine"}, default "constant"
        ``"cosine"`` decays the step size to 0 over each fit's steps (often worth a fraction of a
        point of accuracy for the same epochs).
    batchSize : int, default 128
        Rows per gradient step, and per graph call when scoring.
    epochs : int, default 5
    inputShape : list of int, optional
        Reshape flat features inside the network, e.g. ``[8, 8, 1]`` for a ``cnn``.
    seed : int, default 0
        Same seed, params, data and task CPUs give the same model.
    model : keras.Model, optional
        Your own Keras 3 model: stage data, not a Param (it travels with ``copy()`` and is saved
        as Keras' ``.keras`` archive, loaded in safe mode). Refused at once, naming the layer or
        class: subclassed models, ``Lambda`` layers, unregistered custom layers, several inputs
        or outputs, unknown input dims, losses other than (sparse) categorical / binary
        cross-entropy. Not together with ``architecture``, ``hiddenLayers``, ``convFilters``,
        ``dropout`` or ``inputShape``.
    layerParams : dict, default {}
        ``{"<layer path>.<config key>": value}`` applied to the model's config in each task,
        e.g. ``{"hidden.units": 256, "drop.rate": 0.3}``; nested layers by path
        (``"base/block_2.filters"``). Tunable: ``addGrid(clf.layerParams, [{...}, {...}])``,
        see :func:`sparkdl_lite.expand_layer_params`.
    initialWeights : {"model", "fresh"}, default "model"
        Trainable layers start from the given weights where unchanged, or all from the seed.
        Frozen layers (``trainable=False``) keep the given weights exactly.
    channelOrder : {"RGB", "BGR"}, default "RGB"
        Channel order of image features as the network sees them.
    scale : float, optional
        Multiply features by this first (default: 1/255 for images with a preset, else none).

    Raises
    ------
    ValueError
        Out-of-range params, an empty DataFrame, non-integral or negative labels, features of
        different lengths or sizes, an unknown layer or config key in ``layerParams``, feature
        rows that do not fit the model's input, too few output units: all before the training
        job starts.
    TypeError
        A features or label column of an unsupported type; an unusable Keras model.

    Examples
    --------
    >>> from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    >>> from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    >>> clf = TFClassifier(hiddenLayers=[64], epochs=10)
    >>> model = clf.fit(train_df)  # doctest: +SKIP
    >>> model.transform(test_df).select("prediction", "probability").show(3)  # doctest: +SKIP
    >>> grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 1e-2]).build()
    >>> len(grid), grid[1][clf.learningRate]
    (2, 0.01)
    >>> evaluator = MulticlassClassificationEvaluator(metricName="accuracy")  # doctest: +SKIP
    >>> cv = CrossValidator(estimator=clf, estimatorParamMaps=grid, numFolds=3, evaluator=evaluator)  # doctest: +SKIP
    >>> cv.fit(train_df).avgMetrics  # doctest: +SKIP

    Your own model, tuned over a layer's units and the learning rate:

    >>> import keras
    >>> inputs = keras.Input((64,))
    >>> hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    >>> net = keras.Model(inputs, keras.layers.Dense(10, name="out")(hidden))
    >>> clf = TFClassifier(model=net, epochs=5)
    >>> grid = (ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 3e-3])
    ...         .addGrid(clf.layerParams, [{"hidden.units": 32}, {"hidden.units": 128}]).build())
    >>> len(grid)
    4

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``model``, ``layerParams``, ``initialWeights``, ``channelOrder`` and ``scale``.
    """

    _keras_archive: Optional[bytes] = None
    _keras_obj: Any = None
    _model_info: Any = None
    _model_config: Optional[Dict[str, Any]] = None

    @keyword_only
    def __init__(self, *, featuresCol: str = "features", labelCol: str = "label", predictionCol: str = "prediction",
                 probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                 architecture: str = "mlp", hiddenLayers: Sequence[int] = (128,),
                 convFilters: Sequence[int] = (32, 64), dropout: float = 0.0, learningRate: float = 1e-3,
                 optimizer: str = "adam", learningRateSchedule: str = "constant", batchSize: int = 128,
                 epochs: int = 5,
                 inputShape: Optional[List[int]] = None, seed: int = 0, model: Any = None,
                 layerParams: Optional[Dict[str, Any]] = None, initialWeights: str = "model",
                 channelOrder: str = "RGB", scale: Optional[float] = None) -> None:
        super().__init__()
        kwargs = dict(self._input_kwargs)
        if "model" in kwargs:
            self.setModel(kwargs.pop("model"))
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, featuresCol: str = "features", labelCol: str = "label", predictionCol: str = "prediction",
                  probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                  architecture: str = "mlp", hiddenLayers: Sequence[int] = (128,),
                  convFilters: Sequence[int] = (32, 64), dropout: float = 0.0, learningRate: float = 1e-3,
                  optimizer: str = "adam", learningRateSchedule: str = "constant", batchSize: int = 128,
                  epochs: int = 5,
                  inputShape: Optional[List[int]] = None, seed: int = 0, model: Any = None,
                  layerParams: Optional[Dict[str, Any]] = None, initialWeights: str = "model",
                  channelOrder: str = "RGB", scale: Optional[float] = None) -> TFClassifier:
        """Set any of the constructor's params (keyword only)."""
        kwargs = dict(self._input_kwargs)
        if "model" in kwargs:
            self.setModel(kwargs.pop("model"))
        return self._set(**kwargs)

    # ------------------------------------------------------------------ the user's model
    def setModel(self, model: Any) -> TFClassifier:
        """Train this Keras model (or ``.keras`` archive bytes) instead of a preset; None goes back to the presets.

        The model is checked at once (see the class docstring) and kept as its ``.keras`` archive:
        later changes to the object do not reach the stage.
        """
        if model is None:
            self._keras_archive = self._keras_obj = self._model_info = self._model_config = None
            return self
        from sparkdl_lite.core import keras_model

        if isinstance(model, (bytes, bytearray)):
            archive = bytes(model)
            model = keras_model.from_archive(archive)
        else:
            archive = None
        info = keras_model.check_model(model)
        self._keras_archive = archive if archive is not None else keras_model.to_archive(model)
        self._keras_obj = model
        self._model_info = info
        self._model_config = keras_model.serialize(model)
        return self

    def getModel(self) -> Any:
        """The Keras model given with :meth:`setModel` (None for a preset)."""
        if self._keras_archive is None:
            return None
        if self._keras_obj is None:
            from sparkdl_lite.core import keras_model

            self._keras_obj = keras_model.from_archive(self._keras_archive)
        return self._keras_obj

    def setLayerParams(self, value: Dict[str, Any]) -> TFClassifier:
        return self._set(layerParams=value)

    def setInitialWeights(self, value: str) -> TFClassifier:
        return self._set(initialWeights=value)

    def setChannelOrder(self, value: str) -> TFClassifier:
        return self._set(channelOrder=value)

    def setScale(self, value: Optional[float]) -> TFClassifier:
        return self._set(scale=value)

    def _resolved_scale(self, kind: str) -> Optional[float]:
        scale = self.getScale()
        if scale is not None:
            return float(scale)
        return 1.0 / 255.0 if kind == "image" and self._keras_archive is None else None

    def _load_files(self, files: Dict[str, bytes]) -> None:
        if MODEL_FILE in files:
            self.setModel(files[MODEL_FILE])  # archive bytes: loaded in safe mode and checked, as given

    def write(self) -> StageDataWriter:
        """Params as Spark ML JSON metadata; a model as ``data/model.keras`` (Keras' archive, no pickle)."""
        return StageDataWriter(self, files={MODEL_FILE: self._keras_archive})

    @classmethod
    def read(cls) -> StageDataReader:
        return StageDataReader(cls)

    def setFeaturesCol(self, value: str) -> TFClassifier:
        return self._set(featuresCol=value)

    def setLabelCol(self, value: str) -> TFClassifier:
        return self._set(labelCol=value)

    def setPredictionCol(self, value: str) -> TFClassifier:
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> TFClassifier:
        return self._set(probabilityCol=value)

    def setRawPredictionCol(self, value: str) -> TFClassifier:
        return self._set(rawPredictionCol=value)

    def setArchitecture(self, value: str) -> TFClassifier:
        return self._set(architecture=value)

    def setHiddenLayers(self, value: List[int]) -> TFClassifier:
        return self._set(hiddenLayers=value)

    def setConvFilters(self, value: List[int]) -> TFClassifier:
        return self._set(convFilters=value)

    def setDropout(self, value: float) -> TFClassifier:
        return self._set(dropout=value)

    def setLearningRate(self, value: float) -> TFClassifier:
        return self._set(learningRate=value)

    def setLearningRateSchedule(self, value: str) -> TFClassifier:
        """'constant' or 'cosine' (see the class docstring)."""
        return self._set(learningRateSchedule=value)

    def setOptimizer(self, value: str) -> TFClassifier:
        return self._set(optimizer=value)

    def setBatchSize(self, value: int) -> TFClassifier:
        return self._set(batchSize=value)

    def setEpochs(self, value: int) -> TFClassifier:
        return self._set(epochs=value)

    def setInputShape(self, value: Optional[List[int]]) -> TFClassifier:
        return self._set(inputShape=value)

    def setSeed(self, value: int) -> TFClassifier:
        return self._set(seed=value)

    def _validate(self, schema: T.StructType) -> str:
        kind = super()._validate(schema)
        if self._keras_archive is not None:
            both = [p for p in _PRESET_PARAMS if self.isSet(self.getParam(p))]
            if both:
                raise ValueError(f"TFClassifier: param {both[0]!r} sizes the built-in architectures, but a model of your "
                                 f"own is set (setModel); tune the model through layerParams instead "
                                 f"(e.g. {{'<layer>.units': 64}}).")
            from sparkdl_lite.core import keras_model

            keras_model.apply_layer_params(self._model_config, self.getLayerParams())
        elif self.getLayerParams():
            raise ValueError(f"TFClassifier: param 'layerParams' {self.getLayerParams()!r} needs a model of your own "
                             f"(setModel); the built-in architectures are sized by hiddenLayers, convFilters and dropout.")
        label = self.getLabelCol()
        if label not in schema.names:
            raise ValueError(f"TFClassifier: labelCol {label!r} is not in the DataFrame. Available columns: {schema.names}.")
        if not isinstance(schema[label].dataType, _LABEL_TYPES):
            raise TypeError(f"TFClassifier: labelCol {label!r} must be numeric (class indices 0..K-1); got "
                            f"{schema[label].dataType.simpleString()}. Use StringIndexer to index other labels.")
        return kind

    def _fit(self, dataset: DataFrame) -> TFClassificationModel:
        return next(iter(self.fitMultiple(dataset, [{}])))[1]

    def fitMultiple(self, dataset: DataFrame, paramMaps: Sequence[Dict[Param, Any]]) -> Iterator[Tuple[int, TFClassificationModel]]:
        """Train one model per param map, each in its own Spark task.

        Every param map is validated (with a model: its ``layerParams`` applied and the variant
        built on the driver) and the data is collected, checked and broadcast before the training
        job, which starts on the first ``next()`` and runs once for all param maps. The tasks start
        largest first (estimated work: rows x epochs x the network's multiply-adds per row, or its
        parameter count for a model of your own), so the short trainings fill the task slots at
        the job's end rather than a long one starting last.

        Parameters
        ----------
        dataset : pyspark.sql.DataFrame
            Training data with ``featuresCol`` and ``labelCol``.
        paramMaps : sequence of dict
            Param maps of this estimator (``ParamGridBuilder().build()``).

        Returns
        -------
        iterator of (int, TFClassificationModel)
            Thread safe. A param map whose training raised raises ``RuntimeError`` naming it
            when its turn comes; the other models are still returned.

        Raises
        ------
        ValueError, TypeError
            Bad params (the message names the param map) or bad data.

        Examples
        --------
        >>> grid = ParamGridBuilder().addGrid(clf.epochs, [5, 10]).build()  # doctest: +SKIP
        >>> models = dict(clf.fitMultiple(train_df, grid))  # doctest: +SKIP

        .. versionadded:: 0.1.0
        """
        maps = [dict(pm) for pm in paramMaps]
        if not maps:
            return iter(())
        run, build = self._prepare([(dataset, pm, None) for pm in maps], longest_first=True)
        return _ModelIterator(run, build, len(maps))

    def _fit_tasks(self, tasks: Sequence[Tuple[DataFrame, Dict[Param, Any], Optional[TFClassificationModel]]],
                   validation: Optional[Sequence[Optional[DataFrame]]] = None,
                   shared: Optional[task_data.TaskData] = None, longest_first: bool = False) -> List[Any]:
        """Train several (dataset, param map, start model) tasks in ONE Spark job.

        Each distinct DataFrame is collected and shipped once. With a start model (one this
        estimator returned before), the task continues that model's weights for the param map's
        ``epochs`` more epochs (a warm start; with the constant learning rate the optimizer's state
        continues too) and the returned model's
        ``history`` continues the epoch count. The halving search runs each rung this way.

        ``validation`` (aligned with ``tasks``, None entries allowed) names a DataFrame of held-out
        rows per task, with the same features and label columns: the task predicts them right
        after training, and the returned model carries ``_validation`` = ``{"label": labels,
        "prediction": class indices}`` (numpy arrays), as its ``prediction`` column would give, so a
        caller can score accuracy without a separate scoring job.

        ``shared`` (a :class:`sparkdl_lite.runner.task_data.TaskData` made with ``keep=True``) carries the
        collected and shipped arrays from one call to the next: a DataFrame already in it is not
        collected or shipped again, and the workers keep the arrays they loaded. The caller
        closes it.

        ``longest_first`` starts the tasks in order of their estimated work (rows x epochs x the
        network's multiply-adds per row, or its parameter count for a model of your own), the
        largest first, so that short tasks fill the slots at the end of the job; otherwise the
        tasks start in the given order.

        Returns
        -------
        list
            Aligned with ``tasks``: a :class:`TFClassificationModel`, or the exception (a
            ``RuntimeError`` naming the task) for a task whose training failed. A diverged model
            is returned with ``trainingInfo["diverged"]`` True.
        """
        tasks = list(tasks)
        if not tasks:
            return []
        run, build = self._prepare(tasks, validation, shared, longest_first)
        results = run()
        out: List[Any] = []
        for i in range(len(tasks)):
            try:
                out.append(build(results[i]))
            except RuntimeError as exc:
                out.append(exc)
        return out

    def _prepare(self, tasks: Sequence[Tuple[DataFrame, Dict[Param, Any], Optional[TFClassificationModel]]],
                 validation: Optional[Sequence[Optional[DataFrame]]] = None,
                 shared: Optional[task_data.TaskData] = None, longest_first: bool = False) -> Tuple[Any, Any]:
        """Validate every task, collect each distinct dataset once and check the models; return (run, build)."""
        n = len(tasks)
        if validation is not None and len(validation) != n:
            raise ValueError(f"TFClassifier: {len(validation)} validation DataFrames for {n} tasks; give one (or None) "
                             f"per task.")
        maps = [dict(pm) for _, pm, _ in tasks]
        where = (lambda i: "") if n == 1 else (lambda i: f" (param map {i}: {_describe(maps[i])})")
        estimators: List[TFClassifier] = []
        kinds = []
        for i, (dataset, pm, start) in enumerate(tasks):
            est = self.copy(pm)
            try:
                kinds.append(est._validate(dataset.schema))
                if start is not None and start._keras_archive is None:
                    raise ValueError("TFClassifier: a warm start needs a model trained by this version of TFClassifier "
                                     "(it keeps the Keras model); this start model has none.")
            except (ValueError, TypeError) as exc:
                if n == 1:
                    raise
                raise type(exc)(f"{exc}{where(i)}") from None
            estimators.append(est)
        sizes: Dict[str, int] = {}
        variants = self._model_variants(estimators, where, sizes)
        spark = tasks[0][0].sparkSession
        # One clear error if the executors lack sparkdl_lite or TensorFlow; on a session's first fit it also
        # imports TensorFlow in every Python worker while the driver collects the data below.
        check = engine.check_executors(spark, background=True)
        data = shared if shared is not None else task_data.TaskData()
        data_key: List[int] = []
        score_key: List[Optional[int]] = []

        def collect(frame: DataFrame, features: str, label: str, kind: str, what: str) -> Tuple[np.ndarray, np.ndarray]:
            with engine.job_description(spark, f"TFClassifier {self.uid}: collect {what} for {n} task(s)"):
                return _collect(frame, features, label, kind)

        # Every DataFrame not collected yet (training rows, validation rows) is collected first, in concurrent
        # jobs where there are several; the loop after it finds them all in `data`.
        wanted: Dict[Tuple[int, str, str], Tuple[DataFrame, str, str, str, str]] = {}
        for i, ((dataset, _, _), est) in enumerate(zip(tasks, estimators)):
            features, label = est.getFeaturesCol(), est.getLabelCol()
            held = validation[i] if validation is not None else None
            if held is not None and (held.schema[features].dataType != dataset.schema[features].dataType
                                     or label not in held.schema.names):
                raise ValueError(f"TFClassifier: the validation DataFrame of task {i} must have the training rows' "
                                 f"featuresCol {features!r} (same type) and labelCol {label!r}.")
            for frame, what in ((dataset, "features"), (held, "validation rows")):
                if frame is not None and not data.has(frame, features, label):
                    wanted.setdefault((id(frame), features, label), (frame, features, label, kinds[i], what))
        items = list(wanted.values())
        arrays = engine.thread_map(spark, lambda item: collect(*item), items, threads=4)
        for (frame, features, label, _, _), (x, y) in zip(items, arrays):
            data.add(frame, features, label, x, y)
        for i, ((dataset, _, _), est) in enumerate(zip(tasks, estimators)):
            features, label = est.getFeaturesCol(), est.getLabelCol()
            key = data.key(dataset, features, label)
            if key not in data.classes:  # training rows (a validation-only key has none yet)
                data.classes[key] = _num_classes(dataset, label, data.labels(key))
            data_key.append(key)
            held = validation[i] if validation is not None else None
            score_key.append(data.key(held, features, label) if held is not None else None)
        check.wait()
        from sparkdl_lite.core.keras_model import ModelInfo

        archives: Dict[str, bytes] = {}
        configs = []
        work: List[float] = []  # estimated work per task (longest_first)
        fail = failpoint.indexes("train")  # test-only fail points, read on the driver
        fail_first = failpoint.indexes("train_first_attempt")
        for i, est in enumerate(estimators):
            shape = data.shape(data_key[i])  # (rows, *feature shape)
            cfg = est._train_kwargs()
            cfg.update(data=data_key[i], score=score_key[i], num_classes=data.classes[data_key[i]],
                       scale=est._resolved_scale(kinds[i]),
                       reverse_channels=kinds[i] == "image" and est.getChannelOrder() == "RGB" and shape[-1] == 3)
            start = tasks[i][2]
            try:
                if start is not None:
                    archives[_digest(start._keras_archive)] = start._keras_archive
                    cfg.update(warm_start=_digest(start._keras_archive), initial_epoch=len(start.history),
                               loss=est._model_info.loss if est._keras_archive is not None else None)
                    _check_start(start, shape[1:], cfg["num_classes"])
                elif est._keras_archive is not None:
                    key = _digest(est._keras_archive)
                    archives[key] = est._keras_archive
                    info: ModelInfo = variants[json.dumps(est.getLayerParams(), sort_keys=True)]
                    from sparkdl_lite.core import training

                    training.check_input_shape(shape[1:], info.input_shape, est.getFeaturesCol())
                    training.resolve_head(info, cfg["num_classes"])
                    cfg.update(model=key, layer_params=est.getLayerParams(), loss=info.loss,
                               fresh_weights=est.getInitialWeights() == "fresh")
                else:
                    given = est.getInputShape()
                    if given is not None and math.prod(given) != math.prod(shape[1:]):
                        raise ValueError(f"TFClassifier: param 'inputShape' {given!r} holds {math.prod(given)} values but "
                                         f"each row of featuresCol {est.getFeaturesCol()!r} has {math.prod(shape[1:])}; "
                                         f"their counts must be equal.")
            except (ValueError, TypeError) as exc:
                if n == 1:
                    raise
                raise type(exc)(f"{exc}{where(i)}") from None
            work.append(est._work(shape, cfg, sizes) if longest_first else 0)
            if i in fail:
                cfg["_fail"] = f"injected failure for param map {i} ({failpoint.ENV})"
            if i in fail_first:
                cfg["_fail_first_attempt"] = True
            configs.append(cfg)
        local_mode = engine.is_local_mode(spark)
        uid = self.uid
        order = sorted(range(n), key=lambda i: -work[i])  # partition p trains task order[p]; stable
        packed = [task_data.pack({f"a{k}": np.frombuffer(v, dtype=np.uint8) for k, v in archives.items()})
                  if archives else None]  # Keras archives: their own shipment, made anew each call
        archives.clear()

        def run() -> Dict[int, Tuple[Any, ...]]:
            shipped = data.ship(spark)
            extra = packed.pop()
            models = engine.ship(spark, extra) if extra is not None else None
            board = epoch_board.EpochBoard([c["epochs"] for c in configs])  # the progress line's epochs
            try:
                task = functools.partial(_train_batches, shipped=shipped, configs=configs, local_mode=local_mode,
                                         progress_dir=board.path, archives=models, order=order)
                # One row and one partition per task. mapInArrow (not an RDD map) runs in the same
                # Python workers as the scoring UDFs, so an executor imports TensorFlow once, not twice.
                profile = _lone_task_profile(spark, n)
                jobs = spark.range(0, n, 1, n).mapInArrow(task, _RESULT_SCHEMA, profile=profile)
                with engine.job_tag(spark, TRAIN_JOB_TAG), \
                        engine.job_description(spark, f"TFClassifier {uid}: train {n} param map(s)"):
                    table = jobs.toArrow()  # the CLI's progress line counts the tagged job's tasks as models
            finally:
                board.close()
                if models is not None:
                    engine.release(models)
                if shared is None:
                    data.close()
            return {r["index"]: (r["index"], r["graph"], r["inputs"], r["outputs"], json.loads(r["history"]),
                                 json.loads(r["info"]), r["error"], r["model"], r["scores"]) for r in table.to_pylist()}

        def build(result: Tuple[Any, ...]) -> TFClassificationModel:
            index, graph_bytes, inputs, outputs, history, info, error, archive, scores = result
            if error is not None:
                raise RuntimeError(f"TFClassifier: training failed for param map {index} {_describe(maps[index])} "
                                   f"on executor {info.get('executorId')!r}: {error}")
            from sparkdl_lite.core.graph import TFGraph

            model = TFClassificationModel()
            model._resetUid(uid)  # as Spark's own models: CrossValidator applies estimator param maps to it
            estimators[index]._copyValues(model)
            model.setGraph(TFGraph.from_bytes(graph_bytes, inputs, outputs))
            model._num_classes = _graph_classes(model) or configs[index]["num_classes"]
            start = tasks[index][2]
            model._history = (start.history if start is not None else []) + history
            model._training_info = info
            model._keras_archive = archive
            if scores is not None:
                label = data.labels(score_key[index])
                model._validation = {"label": label, "prediction": np.frombuffer(scores, dtype=np.int32)}
            return model

        return run, build

    def _model_variants(self, estimators: Sequence[TFClassifier], where: Any,
                        sizes: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
        """The ModelInfo of each distinct layerParams, from the variant built on the driver (before any job).

        ``sizes`` (if given) receives each variant's parameter count, keyed alike."""
        if self._keras_archive is None:
            return {}
        from sparkdl_lite.core import keras_model

        out: Dict[str, Any] = {}
        given = None
        for i, est in enumerate(estimators):
            key = json.dumps(est.getLayerParams(), sort_keys=True)
            if key in out:
                continue
            given = given if given is not None else self.getModel()
            try:
                net, _ = keras_model.build_variant(given, est.getLayerParams(), seed=est.getSeed(),
                                                   fresh=est.getInitialWeights() == "fresh")
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"{exc}{where(i)}") from None
            units, activation = keras_model.output_head(net)
            out[key] = keras_model.ModelInfo(input_shape=tuple(int(d) for d in net.inputs[0].shape[1:]), units=units,
                                             activation=activation, loss=self._model_info.loss)
            if sizes is not None:
                sizes[key] = int(net.count_params())
        return out


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _graph_classes(model: TFClassificationModel) -> int:
    shape = model.graph.tensor(LOGITS_TENSOR).shape
    return int(shape[-1]) if shape and shape[-1] else 0


def _check_start(start: TFClassificationModel, feature_shape: Sequence[int], num_classes: int) -> None:
    graph_shape = start.graph.tensor(INPUT_TENSOR).shape
    if graph_shape is not None and tuple(graph_shape[1:]) != tuple(feature_shape):
        raise ValueError(f"TFClassifier: the warm-start model takes feature rows of shape {list(graph_shape[1:])} but "
                         f"the data's rows have shape {list(feature_shape)}.")
    if start.numClasses < num_classes:
        raise ValueError(f"TFClassifier: the warm-start model has {start.numClasses} classes but the labels hold "
                         f"{num_classes}.")


# ============================================================================ model
class TFClassificationModel(Model, _TFClassifierParams, HasGraph, MLReadable, MLWritable):
    """A classifier trained by :class:`TFClassifier`: a frozen graph scored on executors.

    ``transform`` adds ``rawPredictionCol`` (the logits shifted to mean 0 per row: same softmax,
    and for 2 classes element 1 ranks rows like the probability of class 1, as
    ``BinaryClassificationEvaluator`` expects), ``probabilityCol`` (softmax, a vector) and
    ``predictionCol`` (the most probable class, a double). An output column set to ``""`` is
    skipped. Scoring runs the graph through the same Arrow UDF runtime as
    :class:`~sparkdl_lite.TFTransformer` (vector / array features) and
    :class:`~sparkdl_lite.TFImageTransformer` (image structs, raw BGR pixels, no resizing).

    Parameters
    ----------
    graph : TFGraph
        Input ``features:0``, outputs ``logits:0`` and ``probability:0``.
    numClasses : int, optional
        Default: the width of the graph's logits.

    Attributes
    ----------
    graph : TFGraph
    numClasses : int
    history : list of dict
        Per epoch: ``epoch``, ``loss``, ``accuracy``, ``seconds``.
    kerasModel : keras.Model
        The trained Keras model (None for models saved by 0.1.0).
    trainingInfo : dict
        Where and how training ran: ``executorId``, ``host``, ``pid``, ``taskCpus``, ``seconds``,
        ``diverged``; ``weights`` (per layer path: ``given``, ``fresh`` or ``warm``); ``startup`` (seconds before training: ``workerAge`` of the Python worker when
        the task began, ``tensorflow`` import, ``broadcast`` read) and ``phases`` (``import``,
        ``build``, ``fit``, ``freeze``: where ``seconds`` went).

    Examples
    --------
    >>> model = TFClassifier(epochs=10).fit(train_df)  # doctest: +SKIP
    >>> model.numClasses, model.trainingInfo["executorId"]  # doctest: +SKIP
    (10, 'driver')
    >>> model.write().overwrite().save("/tmp/digits-model")  # doctest: +SKIP
    >>> TFClassificationModel.load("/tmp/digits-model").transform(test_df)  # doctest: +SKIP

    .. versionadded:: 0.1.0
    """

    _num_classes: Optional[int] = None
    _history: Optional[List[Dict[str, Any]]] = None
    _training_info: Optional[Dict[str, Any]] = None
    _keras_archive: Optional[bytes] = None
    _validation: Optional[Dict[str, np.ndarray]] = None  # held-out labels and predictions from the training task

    @keyword_only
    def __init__(self, *, graph: Any = None, numClasses: Optional[int] = None, featuresCol: str = "features",
                 predictionCol: str = "prediction", probabilityCol: str = "probability",
                 rawPredictionCol: str = "rawPrediction", batchSize: int = 128) -> None:
        super().__init__()
        kwargs = dict(self._input_kwargs)
        self.setGraph(kwargs.pop("graph", None))
        num_classes = kwargs.pop("numClasses", None)
        self._num_classes = None if num_classes is None else int(num_classes)
        self._history = []
        self._training_info = {}
        self._set(**kwargs)

    @property
    def numClasses(self) -> int:
        """Number of classes K (the width of ``probability``)."""
        if self._num_classes is None and self._graph is not None:
            shape = self._graph.tensor(LOGITS_TENSOR).shape
            return int(shape[-1]) if shape and shape[-1] else 0
        return int(self._num_classes or 0)

    @property
    def history(self) -> List[Dict[str, Any]]:
        """Per-epoch training history: ``{"epoch", "loss", "accuracy", "seconds"}``."""
        return list(self._history or [])

    @property
    def kerasModel(self) -> Any:
        """The trained Keras model (loaded in safe mode from its ``.keras`` archive); None for a 0.1.0 model."""
        if self._keras_archive is None:
            return None
        from sparkdl_lite.core import keras_model

        return keras_model.from_archive(self._keras_archive)

    @property
    def trainingInfo(self) -> Dict[str, Any]:
        """Where and how long the model trained: ``executorId``, ``host``, ``seconds``, ``diverged``..."""
        return dict(self._training_info or {})

    def setFeaturesCol(self, value: str) -> TFClassificationModel:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> TFClassificationModel:
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> TFClassificationModel:
        return self._set(probabilityCol=value)

    def setRawPredictionCol(self, value: str) -> TFClassificationModel:
        return self._set(rawPredictionCol=value)

    def setBatchSize(self, value: int) -> TFClassificationModel:
        return self._set(batchSize=value)

    def _validate(self, schema: T.StructType) -> str:
        kind = super()._validate(schema)
        name = "TFClassificationModel"
        graph = self._require_graph()
        if INPUT_TENSOR not in graph.input_names:
            raise ValueError(f"{name}: the graph has no input {INPUT_TENSOR!r}; inputs: {graph.input_names}.")
        for t in (LOGITS_TENSOR, PROBABILITY_TENSOR):
            graph.check_output(t, name)
        for p in (self.predictionCol, self.probabilityCol, self.rawPredictionCol):
            col = self.getOrDefault(p)
            if col and col in schema.names:
                raise ValueError(f"{name}: output column {col!r} (param {p.name!r}) already exists in the DataFrame; "
                                 f"choose another name or set it to '' to skip it.")
        shape = graph.tensor(INPUT_TENSOR).shape
        if kind == "image" and (shape is None or len(shape) != 4):
            raise ValueError(f"{name}: featuresCol {self.getFeaturesCol()!r} holds images but the graph input "
                             f"{INPUT_TENSOR!r} has shape {None if shape is None else list(shape)}, not [batch, height, width, channels].")
        return kind

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from sparkdl_lite.transformers import TFImageTransformer, TFTransformer

        kind = self._validate(dataset.schema)
        graph = self._require_graph()
        features = self.getFeaturesCol()
        if kind == "image":
            channels = graph.tensor(INPUT_TENSOR).shape[-1]
            scorer = TFImageTransformer(graph=graph, inputCol=features, outputCol=_TMP_LOGITS, inputTensor=INPUT_TENSOR,
                                        outputTensor=LOGITS_TENSOR, outputMode="array",
                                        channelOrder="L" if channels == 1 else "BGR", resize=False, scale=1.0,
                                        batchSize=self.getBatchSize())
            out = scorer.transform(dataset)
            logits = F.col(_TMP_LOGITS)
            top = F.array_max(logits)
            exp = F.transform(logits, lambda v: F.exp(v - top))
            total = F.aggregate(exp, F.lit(0.0), lambda acc, v: acc + v)
            out = out.withColumn(_TMP_PROBABILITY, F.transform(exp, lambda v: v / total))
        else:
            scorer = TFTransformer(graph=graph, inputMapping={features: INPUT_TENSOR},
                                   outputMapping={LOGITS_TENSOR: _TMP_LOGITS, PROBABILITY_TENSOR: _TMP_PROBABILITY},
                                   outputMode="array", batchSize=self.getBatchSize())
            out = scorer.transform(dataset)
        logits = F.col(_TMP_LOGITS)
        probability = F.col(_TMP_PROBABILITY)
        if self.getRawPredictionCol():
            mean = F.aggregate(logits, F.lit(0.0), lambda acc, v: acc + v) / F.size(logits)
            out = out.withColumn(self.getRawPredictionCol(), array_to_vector(F.transform(logits, lambda v: v - mean)))
        if self.getProbabilityCol():
            out = out.withColumn(self.getProbabilityCol(), array_to_vector(probability))
        if self.getPredictionCol():
            index = F.array_position(probability, F.array_max(probability)) - F.lit(1)
            out = out.withColumn(self.getPredictionCol(), index.cast(T.DoubleType()))
        return out.drop(_TMP_LOGITS, _TMP_PROBABILITY)

    def registerUDF(self, spark: Any, name: str) -> Any:
        """Register the model as the SQL function ``name(features)``: its class probabilities, ``array<float>``.

        ``features`` is an image struct (``SELECT classify(image) FROM photos``, raw pixels as the
        model was trained on) or, for a model trained on vectors or arrays, an ``array<float>``.
        Works on classic and Spark Connect sessions.

        Examples
        --------
        >>> model.registerUDF(spark, "classify")  # doctest: +SKIP
        >>> spark.sql("SELECT image.origin, array_position(p, array_max(p)) - 1 AS label "
        ...           "FROM (SELECT image, classify(image) AS p FROM photos)")  # doctest: +SKIP

        .. versionadded:: 0.2.0
        """
        from sparkdl_lite.transformers import TFImageTransformer

        graph = self._require_graph()
        shape = graph.tensor(INPUT_TENSOR).shape
        if shape is not None and len(shape) == 4:
            scorer = TFImageTransformer(graph=graph, inputCol="image", outputCol="p", inputTensor=INPUT_TENSOR,
                                        outputTensor=PROBABILITY_TENSOR, outputMode="array",
                                        channelOrder="L" if shape[-1] == 1 else "BGR", resize=False, scale=1.0,
                                        batchSize=self.getBatchSize(), errorMode="null")
            return scorer.registerUDF(spark, name)
        from sparkdl_lite.transformers import TFTransformer

        scorer = TFTransformer(graph=graph, inputMapping={"features": INPUT_TENSOR},
                               outputMapping={PROBABILITY_TENSOR: "p"}, batchSize=self.getBatchSize())
        return scorer.registerUDF(spark, name)

    # ------------------------------------------------------------------ persistence
    def write(self) -> GraphStageWriter:
        """Params and metadata as JSON, the graph as protobuf (``data/graph.pb``), the Keras model as ``data/model.keras``."""
        return GraphStageWriter(self, extra={"numClasses": self.numClasses, "history": _json_safe(self.history),
                                             "trainingInfo": _json_safe(self.trainingInfo)},
                                files={MODEL_FILE: self._keras_archive})

    @classmethod
    def read(cls) -> GraphStageReader:
        return GraphStageReader(cls)

    def _load_extra(self, metadata: Dict[str, Any]) -> None:
        num_classes = metadata.get("numClasses")
        self._num_classes = None if num_classes is None else int(num_classes)
        self._history = list(metadata.get("history") or [])
        self._training_info = dict(metadata.get("trainingInfo") or {})

    def _load_files(self, files: Dict[str, bytes]) -> None:
        self._keras_archive = files.get(MODEL_FILE)


def _json_safe(value: Any) -> Any:
    """NaN / infinity (a diverged loss) as None, so the metadata stays strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
