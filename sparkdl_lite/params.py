"""Shared Param mixins and type converters for the sparkdl_lite stages, and the Params of TFClassifier and its model."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol, HasSeed
from pyspark.sql import types as T

from sparkdl_lite.core.jsonable import plain
from sparkdl_lite.core.training import HYPERPARAMS, hyperparam_kwargs, hyperparam_problem, scale_problem
from sparkdl_lite.runner import task_data

__all__ = ["HasBatchSize", "HasOutputMode", "HasGraph", "to_str_dict", "to_int_list", "to_layer_params",
           "to_optional_float", "check", "describe", "TFClassifierParams", "HasTrainingData",
           "INITIAL_WEIGHTS", "CHANNEL_ORDERS"]

INITIAL_WEIGHTS = ("model", "fresh")  # values of TFClassifier's param initialWeights
CHANNEL_ORDERS = ("RGB", "BGR")  # values of TFClassifier's param channelOrder


def to_str_dict(value: Any) -> Dict[str, str]:
    """TypeConverter: a mapping of str -> str (column/tensor names)."""
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise TypeError(f"Could not convert {value!r} to a dict of str to str.")


def to_int_list(value: Any) -> List[int]:
    """TypeConverter: an int, or a list/tuple of ints (also ``"64,128"``) -> list of int."""
    if isinstance(value, bool):
        raise TypeError(f"Could not convert {value!r} to a list of int.")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        try:
            return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise TypeError(f"Could not convert {value!r} to a list of int.") from None
    if TypeConverters._can_convert_to_list(value):
        items = TypeConverters.toList(value)
        if all(TypeConverters._is_integer(v) and not isinstance(v, bool) for v in items):
            return [int(v) for v in items]
    raise TypeError(f"Could not convert {value!r} to a list of int.")


def to_optional_int_list(value: Any) -> Any:
    return None if value is None else to_int_list(value)


def to_optional_float(value: Any) -> Any:
    """TypeConverter: None or a float."""
    return None if value is None else TypeConverters.toFloat(value)


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v) for k, v in value.items())
    return False


def to_layer_params(value: Any) -> Dict[str, Any]:
    """TypeConverter: a dict of ``"<layer>.<key>"`` strings to JSON-friendly values (tuples become lists)."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _json_value(value):
        return {k: plain(v) for k, v in value.items()}
    raise TypeError(f"Could not convert {value!r} to a dict of '<layer>.<config key>' strings to JSON values "
                    f"(str, int, float, bool, None or lists of them).")


def check(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``: the range checks of ``_validate``."""
    if not ok:
        raise ValueError(message)


def describe(param_map: Dict[Param, Any]) -> str:
    """A param map for an error message: ``{learningRate: 0.01, epochs: 3}``."""
    return "{" + ", ".join(f"{p.name}: {v!r}" for p, v in param_map.items()) + "}"


def _to_optional_string(value: Any) -> Optional[str]:
    return None if value is None else TypeConverters.toString(value)


class HasTrainingData(Params):
    """Mixin for params trainingData and stagingDir: how a fit's rows reach its training tasks."""

    trainingData: Param[str] = Param(
        Params._dummy(), "trainingData",
        "How the training tasks get the rows: 'ship' (collected to the driver and shipped once; every task "
        "holds them in memory: fastest for small data), 'stream' (staged once as Parquet at stagingDir; every "
        "task streams them with bounded memory: data larger than the driver) or 'auto' (stream when the training "
        "columns are estimated above half of spark.driver.maxResultSize, else ship).",
        typeConverter=TypeConverters.toString)
    stagingDir: Param[Optional[str]] = Param(
        Params._dummy(), "stagingDir",
        "Where 'stream' stages the rows: a URI every executor can read (hdfs://..., s3a://..., gs://..., file:// "
        "on a shared disk). None: the Spark conf spark.sparkdl_lite.stagingDir, else (local mode) a temporary "
        "directory under spark.local.dir. Staged files are removed when the fit ends.",
        typeConverter=_to_optional_string)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(trainingData="auto", stagingDir=None)

    def getTrainingData(self) -> str:
        return self.getOrDefault(self.trainingData)

    def getStagingDir(self) -> Optional[str]:
        return self.getOrDefault(self.stagingDir)

    def _check_training_data(self) -> None:
        path = self.getTrainingData()
        check(path in task_data.DATA_PATHS, f"{type(self).__name__}: param 'trainingData' must be one of "
                                            f"{list(task_data.DATA_PATHS)}; got {path!r}.")


class HasBatchSize(Params):
    """Mixin for param batchSize."""

    batchSize: Param[int] = Param(
        Params._dummy(), "batchSize",
        "Rows per graph call (>= 1). Larger is faster until executor memory runs out.",
        typeConverter=TypeConverters.toInt)  # type only; the range is checked in _validate()

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(batchSize=64)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)


class HasOutputMode(Params):
    """Mixin for param outputMode."""

    outputMode: Param[str] = Param(
        Params._dummy(), "outputMode",
        "How each output is stored: 'vector' (Spark ML DenseVector) or 'array' (array<float>).",
        typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(outputMode="vector")

    def getOutputMode(self) -> str:
        return self.getOrDefault(self.outputMode)


class HasGraph:
    """Holds the stage's ``TFGraph`` as model data (not a Param): it survives ``copy()``."""

    _graph: Any = None

    @property
    def graph(self) -> Any:
        """The stage's :class:`~sparkdl_lite.TFGraph` (``None`` until set)."""
        return self._graph

    def setGraph(self, graph: Any) -> Any:
        from sparkdl_lite.core.graph import TFGraph

        if graph is not None and not isinstance(graph, TFGraph):
            if isinstance(graph, (bytes, bytearray)):
                graph = TFGraph.from_bytes(bytes(graph))
            else:
                raise TypeError(f"{type(self).__name__}: graph must be a TFGraph or GraphDef bytes; got {type(graph).__name__}.")
        self._graph = graph
        return self

    def getGraph(self) -> Any:
        return self._graph

    def _require_graph(self) -> Any:
        if self._graph is None:
            raise ValueError(f"{type(self).__name__}: no graph set. Pass graph=TFGraph.from_keras(model) (or setGraph).")
        return self._graph


class TFClassifierParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol,
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
        problem = scale_problem(self.getScale())
        if problem:
            raise ValueError(f"{name}: param 'scale' {problem}")
        col = self.getFeaturesCol()
        if col not in schema.names:
            raise ValueError(f"{name}: featuresCol {col!r} is not in the DataFrame. Available columns: {schema.names}.")
        kind = task_data.feature_kind(schema[col].dataType)
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
        kwargs = hyperparam_kwargs({name: self.getOrDefault(name) for name in HYPERPARAMS})  # the one table
        kwargs["input_shape"] = None if shape is None else list(shape)
        return kwargs
