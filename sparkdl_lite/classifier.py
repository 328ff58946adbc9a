"""TFClassifier (Estimator) and TFClassificationModel (Model): Keras classifiers as Spark ML stages.

Tuning runs on the executors. :meth:`TFClassifier.fitMultiple` reads as its steps: validate each
param map (:func:`_validate_tasks`), collect and check each distinct DataFrame once
(:mod:`sparkdl_lite.runner.task_data`), turn each param map into a
:class:`~sparkdl_lite.runner.train_job.TaskSpec` (:func:`_spec`), run one Spark job with a task
per spec (:func:`sparkdl_lite.runner.train_job.run`) and build a model from each
:class:`~sparkdl_lite.runner.train_job.TaskResult`. :func:`fit_tasks` is the same path for a
search's rungs (warm starts, held-out rows predicted in the task). ``fit`` is ``fitMultiple``
with one param map, so both give the same model. The model scores
through :class:`~sparkdl_lite.TFTransformer` / :class:`~sparkdl_lite.TFImageTransformer` (the same
per-worker runtime as deployment) and derives ``prediction`` on the JVM.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl_lite.core.jsonable import plain
from sparkdl_lite.core.training import HYPERPARAMS
from sparkdl_lite.params import HasGraph, HasTrainingData, TFClassifierParams, describe
from sparkdl_lite.persistence import GraphStageReader, GraphStageWriter, StageDataReader, StageDataWriter
from sparkdl_lite.runner import engine, task_data, train_job

__all__ = ["TFClassifier", "TFClassificationModel"]

_PRESET_PARAMS = tuple(n for n, spec in HYPERPARAMS.items() if spec.get("preset")) + ("inputShape",)
MODEL_FILE = "model.keras"
INPUT_TENSOR = "features:0"
LOGITS_TENSOR = "logits:0"
PROBABILITY_TENSOR = "probability:0"
TRAIN_JOB_TAG = train_job.TRAIN_JOB_TAG  # Spark job tag of the training jobs
_TMP_LOGITS = "__sparkdl_lite_logits"
_TMP_PROBABILITY = "__sparkdl_lite_probability"
_LABEL_TYPES = (T.FloatType, T.DoubleType, T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.DecimalType)


# ============================================================================ estimator
class TFClassifier(Estimator, TFClassifierParams, HasTrainingData, MLReadable, MLWritable):
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
    indices ``0..K-1``; K is the largest label + 1. ``fit`` and ``fitMultiple`` train each param map
    in its own Spark task, TensorFlow on that task's CPUs; the rows reach the tasks once, shipped
    or staged as Parquet and streamed (``trainingData``). A lone param map asks for a whole
    executor's cores by stage-level scheduling where the cluster manager supports it (not local
    mode). ``CrossValidator`` and ``TrainValidationSplit`` use :meth:`fitMultiple` unchanged.

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
                 channelOrder: str = "RGB", scale: Optional[float] = None, trainingData: str = "auto",
                 stagingDir: Optional[str] = None) -> None:
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
                  channelOrder: str = "RGB", scale: Optional[float] = None, trainingData: str = "auto",
                  stagingDir: Optional[str] = None) -> TFClassifier:
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

    def setTrainingData(self, value: str) -> TFClassifier:
        return self._set(trainingData=value)

    def setStagingDir(self, value: Optional[str]) -> TFClassifier:
        return self._set(stagingDir=value)

    def _validate(self, schema: T.StructType) -> str:
        kind = super()._validate(schema)
        self._check_training_data()
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
        job = _TrainingJob.plan(self, [train_job.FitTask(dataset, pm) for pm in maps], longest=True)
        return train_job.ModelIterator(job.run, job.model, len(maps))

    def _model_variants(self, estimators: Dict[int, TFClassifier], maps: List[Dict[Param, Any]]) -> Dict[str, Tuple[Any, int]]:
        """(ModelInfo, parameter count) of each distinct layerParams, from the variant built on the driver."""
        if self._keras_archive is None:
            return {}
        from sparkdl_lite.core import keras_model

        out: Dict[str, Tuple[Any, int]] = {}
        for i, est in estimators.items():
            key = json.dumps(est.getLayerParams(), sort_keys=True)
            if key not in out:
                out[key] = _named(maps, i, functools.partial(
                    keras_model.variant_info, self.getModel(), est.getLayerParams(), seed=est.getSeed(),
                    fresh=est.getInitialWeights() == "fresh", loss=self._model_info.loss))
        return out


def _scorer(graph: Any, features: str, outputs: Dict[str, str], batch_size: int, *, image: bool,
            error_mode: str = "fail") -> Any:
    """The stage that runs a classifier's graph: TFImageTransformer on image structs (raw pixels as
    trained, one output tensor), TFTransformer on vectors and arrays; outputs as arrays."""
    from sparkdl_lite.transformers import TFImageTransformer, TFTransformer

    if not image:
        return TFTransformer(graph=graph, inputMapping={features: INPUT_TENSOR}, outputMapping=outputs,
                             outputMode="array", batchSize=batch_size)
    ((tensor, col),) = outputs.items()
    channels = graph.tensor(INPUT_TENSOR).shape[-1]
    return TFImageTransformer(graph=graph, inputCol=features, outputCol=col, inputTensor=INPUT_TENSOR, outputTensor=tensor,
                              outputMode="array", channelOrder="L" if channels == 1 else "BGR", resize=False, scale=1.0,
                              batchSize=batch_size, errorMode=error_mode)


# ============================================================================ the training job of a fit
def fit_tasks(estimator: TFClassifier, tasks: Sequence[train_job.FitTask], *, data: Optional[task_data.TaskData] = None,
              longest: bool = False, isolate: bool = False) -> List[train_job.Fitted]:
    """Train several :class:`~sparkdl_lite.runner.train_job.FitTask` of ``estimator`` in ONE Spark job; one :class:`~sparkdl_lite.runner.train_job.Fitted` per task, aligned.

    Each distinct DataFrame is collected and shipped once; ``data`` (a ``TaskData(keep=True)``,
    closed by the caller) carries them from one call to the next, as a search's rungs do.
    ``longest`` starts the largest estimated trainings first; otherwise the tasks start in order.
    Bad params or data raise before the job, unless ``isolate``: then a task whose params fail
    their checks is returned as its error and the others train. A failed training is returned as
    its error.
    """
    tasks = list(tasks)
    if not tasks:
        return []
    job = _TrainingJob.plan(estimator, tasks, data=data, longest=longest, isolate=isolate)
    results = job.run() if job.specs else {}
    return [job.fitted(i, results.get(i)) for i in range(len(tasks))]


class _TrainingJob:
    """The planned training job of a fit: validated estimators, staged data, one TaskSpec per task."""

    def __init__(self, estimator: TFClassifier, tasks: List[train_job.FitTask], estimators: Dict[int, TFClassifier],
                 specs: List[train_job.TaskSpec], data: task_data.TaskData, archives: Dict[str, bytes], *, keep: bool,
                 rejected: Dict[int, BaseException]) -> None:
        self.uid = estimator.uid
        self.tasks, self.estimators, self.rejected = tasks, estimators, rejected
        self.specs = specs
        self.by_index = {s.index: s for s in specs}
        self.data, self.archives, self.keep = data, archives, keep
        self.spark = tasks[0].dataset.sparkSession

    @classmethod
    def plan(cls, estimator: TFClassifier, tasks: List[train_job.FitTask], *, data: Optional[task_data.TaskData] = None,
             longest: bool = False, isolate: bool = False) -> _TrainingJob:
        """Validate every task, collect each distinct DataFrame once and build the specs (before any training)."""
        maps = [t.params for t in tasks]  # _named names a param map in an error
        estimators, kinds, rejected = _validate_tasks(estimator, tasks, maps, isolate)
        variants = estimator._model_variants(estimators, maps)
        spark = tasks[0].dataset.sparkSession
        # One clear error if the executors lack sparkdl_lite or TensorFlow; on a session's first fit it also
        # imports TensorFlow in every Python worker while the driver collects the data below.
        probe = engine.check_executors(spark, background=True)
        held = data if data is not None else task_data.TaskData()
        plan = task_data.DataPlan(estimator.getTrainingData(), estimator.getStagingDir())
        archives: Dict[str, bytes] = {}
        try:
            keys = _stage_data(spark, estimator.uid, {i: tasks[i] for i in estimators}, estimators, kinds, held, plan)
            probe.wait()
            specs = [_named(maps, i, functools.partial(_spec, i, est, kinds[i], tasks[i], keys[i], held, variants, archives,
                                                       maps, longest), rejected if isolate else None)
                     for i, est in estimators.items()]
        except BaseException:
            if data is None:
                held.close()  # nothing will train: staged files go now (a caller's data is the caller's to close)
            raise
        return cls(estimator, tasks, estimators, train_job.longest_first([s for s in specs if s is not None]), held, archives,
                   keep=data is not None, rejected=rejected)

    def run(self) -> Dict[int, train_job.TaskResult]:
        return train_job.run(self.spark, self.specs, self.data, self.archives, keep_data=self.keep,
                             description=f"TFClassifier {self.uid}: train {len(self.specs)} param map(s)")

    def model(self, result: train_job.TaskResult) -> TFClassificationModel:
        """The model of one result; raises a RuntimeError naming the param map if its training failed."""
        i = result.index
        if result.error is not None:
            raise RuntimeError(f"TFClassifier: training failed for param map {i} {describe(self.tasks[i].params)} "
                               f"on executor {result.info.get('executorId')!r}: {result.error}")
        from sparkdl_lite.core.graph import TFGraph

        model = TFClassificationModel()
        model._resetUid(self.uid)  # as Spark's own models: CrossValidator applies estimator param maps to it
        self.estimators[i]._copyValues(model)
        model.setGraph(TFGraph.from_bytes(result.graph, result.inputs, result.outputs))
        model._num_classes = model.numClasses or self.by_index[i].train["num_classes"]  # the graph's logits width
        start = self.tasks[i].start
        model._history = (start.history if start is not None else []) + list(result.history or [])
        model._training_info = result.info
        model._keras_archive = result.model
        return model

    def fitted(self, index: int, result: Optional[train_job.TaskResult]) -> train_job.Fitted:
        """Task ``index``'s outcome: its model (and held-out predictions), or its error."""
        if index in self.rejected:
            return train_job.Fitted(None, self.rejected[index])
        try:
            model = self.model(result)
        except RuntimeError as exc:
            return train_job.Fitted(None, exc)
        score = self.by_index[index].score
        if result.scores is None or score is None:
            return train_job.Fitted(model, None)
        labels = np.frombuffer(result.labels, dtype=np.int32) if result.labels is not None else self.data.labels(score)
        return train_job.Fitted(model, None, labels, np.frombuffer(result.scores, dtype=np.int32))


def _named(maps: List[Dict[Param, Any]], i: int, fn: Callable[[], Any],
           rejected: Optional[Dict[int, BaseException]] = None) -> Any:
    """``fn()``, its ValueError / TypeError naming param map ``i`` (unless it is the only one); with
    ``rejected`` the error is kept there under ``i`` and None returned."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        if rejected is not None:
            rejected[i] = exc
            return None
        if len(maps) == 1:
            raise
        raise type(exc)(f"{exc} (param map {i}: {describe(maps[i])})") from None


def _validate_tasks(estimator: TFClassifier, tasks: List[train_job.FitTask], maps: List[Dict[Param, Any]], isolate: bool
                    ) -> Tuple[Dict[int, TFClassifier], Dict[int, str], Dict[int, BaseException]]:
    """Each task's estimator copy and features kind, its params, columns and start model checked.

    With ``isolate`` a task that fails its checks is left out and returned among the rejected."""
    estimators: Dict[int, TFClassifier] = {}
    kinds: Dict[int, str] = {}
    rejected: Dict[int, BaseException] = {}
    for i, task in enumerate(tasks):
        est = estimator.copy(task.params)
        kind = _named(maps, i, functools.partial(_validate_task, est, task, i), rejected if isolate else None)
        if kind is not None:
            estimators[i], kinds[i] = est, kind
    return estimators, kinds, rejected


def _validate_task(est: TFClassifier, task: train_job.FitTask, i: int) -> str:
    kind = est._validate(task.dataset.schema)
    if task.start is not None and task.start._keras_archive is None:
        raise ValueError("TFClassifier: a warm start needs a model trained by this version of TFClassifier "
                         "(it keeps the Keras model); this start model has none.")
    features, label = est.getFeaturesCol(), est.getLabelCol()
    held = task.validation
    if held is not None and (features not in held.schema.names or label not in held.schema.names
                             or held.schema[features].dataType != task.dataset.schema[features].dataType):
        raise ValueError(f"TFClassifier: the validation DataFrame of task {i} must have the training rows' "
                         f"featuresCol {features!r} (same type) and labelCol {label!r}.")
    return kind


def _stage_data(spark: Any, uid: str, tasks: Dict[int, train_job.FitTask], estimators: Dict[int, TFClassifier],
                kinds: Dict[int, str], data: task_data.TaskData, plan: task_data.DataPlan
                ) -> Dict[int, Tuple[int, Optional[int]]]:
    """Collect every DataFrame ``data`` lacks (concurrently); each task's (training key, held-out key)."""
    frames = []
    for i, task in tasks.items():
        features, label = estimators[i].getFeaturesCol(), estimators[i].getLabelCol()
        frames.append(task_data.Frame(task.dataset, features, label, kinds[i], "features"))
        if task.validation is not None:
            frames.append(task_data.Frame(task.validation, features, label, kinds[i], "validation rows"))
    data.collect(spark, frames, f"TFClassifier {uid}: collect or stage {{what}} for {len(tasks)} task(s)", plan)
    keys = {}
    for i, task in tasks.items():
        features, label = estimators[i].getFeaturesCol(), estimators[i].getLabelCol()
        key = data.key(task.dataset, features, label)
        data.count_classes(key, task.dataset, label)
        keys[i] = (key, None if task.validation is None else data.key(task.validation, features, label))
    return keys


def _spec(i: int, est: TFClassifier, kind: str, task: train_job.FitTask, keys: Tuple[int, Optional[int]],
          data: task_data.TaskData, variants: Dict[str, Tuple[Any, int]], archives: Dict[str, bytes],
          maps: List[Dict[Param, Any]], longest: bool) -> train_job.TaskSpec:
    """Task ``i``'s TaskSpec; the Keras archives it starts from go into ``archives`` (keyed by content hash)."""
    from sparkdl_lite.core import training

    shape = data.shape(keys[0])  # (rows, *feature shape)
    kwargs = est._train_kwargs()
    kwargs.update(num_classes=data.classes[keys[0]], scale=est._resolved_scale(kind),
                  reverse_channels=kind == "image" and est.getChannelOrder() == "RGB" and shape[-1] == 3)
    refs: Dict[str, Any] = {}
    size = 0
    if task.start is not None:
        refs["warm_start"] = train_job.add_archive(task.start._keras_archive, archives)
        kwargs.update(initial_epoch=len(task.start.history),
                      loss=est._model_info.loss if est._keras_archive is not None else None)
        _named(maps, i, functools.partial(training.check_warm_start, task.start.graph.tensor(INPUT_TENSOR).shape,
                                          task.start.numClasses, shape[1:], kwargs["num_classes"]))
    elif est._keras_archive is not None:
        info, size = variants[json.dumps(est.getLayerParams(), sort_keys=True)]

        def fits() -> None:
            training.check_input_shape(shape[1:], info.input_shape, est.getFeaturesCol())
            training.resolve_head(info, kwargs["num_classes"])

        _named(maps, i, fits)
        refs["model"] = train_job.add_archive(est._keras_archive, archives)
        kwargs.update(layer_params=est.getLayerParams(), loss=info.loss, fresh_weights=est.getInitialWeights() == "fresh")
    else:
        _named(maps, i, functools.partial(training.check_reshape, shape[1:], est.getInputShape(),
                                           f"row of featuresCol {est.getFeaturesCol()!r}", "TFClassifier"))
    work = train_job.estimate_work(shape, kwargs, size if est._keras_archive is not None else None) if longest else 0.0
    return train_job.TaskSpec(index=i, train=kwargs, data=keys[0], score=keys[1], work=work, **refs)




# ============================================================================ model
class TFClassificationModel(Model, TFClassifierParams, HasGraph, MLReadable, MLWritable):
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
        kind = self._validate(dataset.schema)
        graph, features, batch = self._require_graph(), self.getFeaturesCol(), self.getBatchSize()
        if kind == "image":  # one output per image scorer: the softmax is taken on the JVM
            out = _scorer(graph, features, {LOGITS_TENSOR: _TMP_LOGITS}, batch, image=True).transform(dataset)
            logits = F.col(_TMP_LOGITS)
            top = F.array_max(logits)
            exp = F.transform(logits, lambda v: F.exp(v - top))
            total = F.aggregate(exp, F.lit(0.0), lambda acc, v: acc + v)
            out = out.withColumn(_TMP_PROBABILITY, F.transform(exp, lambda v: v / total))
        else:
            outputs = {LOGITS_TENSOR: _TMP_LOGITS, PROBABILITY_TENSOR: _TMP_PROBABILITY}
            out = _scorer(graph, features, outputs, batch, image=False).transform(dataset)
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
        graph = self._require_graph()
        shape = graph.tensor(INPUT_TENSOR).shape
        image = shape is not None and len(shape) == 4
        scorer = _scorer(graph, "image" if image else "features", {PROBABILITY_TENSOR: "p"}, self.getBatchSize(),
                         image=image, error_mode="null")
        return scorer.registerUDF(spark, name)

    # ------------------------------------------------------------------ persistence
    def write(self) -> GraphStageWriter:
        """Params and metadata as JSON, the graph as protobuf (``data/graph.pb``), the Keras model as ``data/model.keras``."""
        return GraphStageWriter(self, extra={"numClasses": self.numClasses, "history": plain(self.history, finite=True),
                                             "trainingInfo": plain(self.trainingInfo, finite=True)},
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
