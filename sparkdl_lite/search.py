"""HalvingSearch (Estimator) and HalvingSearchModel (Model): successive halving on Spark ML's tuning API.

Successive halving trains every param map on a small budget, keeps the best ``1 / factor`` of them
by the evaluator, and trains the survivors on ``factor`` times the budget, until one param map is
left or the budget reaches ``maxResource``; then the best param map is refit on all the rows. The
budget (``resource``) is either

- ``"rows"``: a growing random sample of the training rows (nested: a rung's sample holds the
  previous rung's), for any Spark ML estimator; or
- ``"epochs"``: epochs of a :class:`~sparkdl_lite.TFClassifier`: a survivor continues from the
  weights it reached, so a model that reaches the last rung has trained ``maxResource`` epochs
  in all, not the sum of every rung's budget.

One rung engine serves both (:class:`_Rungs`): the resource only changes a trial's inputs. A
``TFClassifier`` trains a whole rung (every survivor and fold) in one Spark job through
:func:`sparkdl_lite.classifier.fit_tasks`; any other estimator fits each trial on a thread pool of
``parallelism`` threads, as Spark's own tuners do.

Spark layer, thin: no TensorFlow import, no SparkContext.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from contextlib import ExitStack
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model, Transformer
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasCollectSubModels, HasParallelism
from pyspark.ml.tuning import _ValidatorParams, _ValidatorSharedReadWrite
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MetaAlgorithmReadWrite,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
    _cache_spark_dataset,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl_lite import __version__
from sparkdl_lite.classifier import TFClassifier, fit_tasks
from sparkdl_lite.core.jsonable import number, plain
from sparkdl_lite.params import check, describe
from sparkdl_lite.reports.tuning import training_info
from sparkdl_lite.runner import engine, task_data
from sparkdl_lite.runner.train_job import FitTask, Fitted

__all__ = ["HalvingSearch", "HalvingSearchModel", "RESOURCES"]

#: Values of param ``resource``.
RESOURCES = ("epochs", "rows")
_SAMPLE_SALT = 0x5DEECE66D  # the row-sample column's seed is the split's seed XOR this (stays a 64-bit long)


# ============================================================================ params
def _to_optional_int(value: Any) -> Optional[int]:
    return None if value is None else TypeConverters.toInt(value)


def _to_optional_string(value: Any) -> Optional[str]:
    return None if value is None else TypeConverters.toString(value)


def _to_resource(value: Any) -> Any:
    """TypeConverter: None, an int (epochs) or a float (a fraction of the rows); ints stay ints."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"Could not convert {value!r} to a number.")
    if TypeConverters._is_integer(value):
        return int(value)
    return TypeConverters.toFloat(value)


class _HalvingSearchParams(_ValidatorParams, HasParallelism, HasCollectSubModels):
    """Params shared by :class:`HalvingSearch` and :class:`HalvingSearchModel`."""

    trainRatio: Param[float] = Param(
        Params._dummy(), "trainRatio",
        "Fraction of the rows that train, in (0, 1); the rest validate. Used unless numFolds is set.",
        typeConverter=TypeConverters.toFloat)
    numFolds: Param[Optional[int]] = Param(
        Params._dummy(), "numFolds",
        "k-fold cross-validation with k = numFolds (>= 2) instead of one train/validation split; "
        "None (the default) uses trainRatio.",
        typeConverter=_to_optional_int)
    factor: Param[float] = Param(
        Params._dummy(), "factor",
        "Each rung keeps the best ceil(n / factor) param maps and gives them factor times the resource (> 1).",
        typeConverter=TypeConverters.toFloat)
    minResource: Param[Any] = Param(
        Params._dummy(), "minResource",
        "Resource of the first rung: epochs (an int >= 1) or a fraction of the training rows in (0, 1]. "
        "None: the smallest that lets the last rung run at maxResource.",
        typeConverter=_to_resource)
    maxResource: Param[Any] = Param(
        Params._dummy(), "maxResource",
        "Largest resource, of the last rung and of the refit: epochs (an int >= 1) or a fraction of the "
        "training rows in (0, 1]. None: the estimator's epochs, or 1.0 for rows.",
        typeConverter=_to_resource)
    resource: Param[Optional[str]] = Param(
        Params._dummy(), "resource",
        "What a rung grows: 'epochs' (TFClassifier only; survivors continue training) or 'rows' (any "
        "estimator; a growing random sample of the training rows). None: 'epochs' for a TFClassifier, "
        "'rows' otherwise.",
        typeConverter=_to_optional_string)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(trainRatio=0.75, numFolds=None, factor=3.0, minResource=None, maxResource=None,
                         resource=None, parallelism=1, collectSubModels=False)

    def getTrainRatio(self) -> float:
        return self.getOrDefault(self.trainRatio)

    def getNumFolds(self) -> Optional[int]:
        return self.getOrDefault(self.numFolds)

    def getFactor(self) -> float:
        return self.getOrDefault(self.factor)

    def getMinResource(self) -> Any:
        return self.getOrDefault(self.minResource)

    def getMaxResource(self) -> Any:
        return self.getOrDefault(self.maxResource)

    def getResource(self) -> Optional[str]:
        return self.getOrDefault(self.resource)

    def _validate(self, schema: Optional[T.StructType] = None) -> Dict[str, Any]:
        """Check every param; return the resolved plan: kind, min/max resource, factor, folds."""
        name = type(self).__name__
        est, maps = self._check_tuning_params(name)
        folds = self.getNumFolds()
        ratio = self.getTrainRatio()
        if folds is not None and self.isSet(self.trainRatio):
            raise ValueError(f"{name}: set either param 'trainRatio' (one train/validation split) or param 'numFolds' "
                             f"(k-fold), not both; got trainRatio={ratio!r} and numFolds={folds!r}.")
        if folds is not None:
            check(folds >= 2, f"{name}: param 'numFolds' must be None or an int >= 2; got {folds!r}.")
        else:
            check(0.0 < ratio < 1.0, f"{name}: param 'trainRatio' must be in (0, 1); got {ratio!r}.")
        factor = self.getFactor()
        check(math.isfinite(factor) and factor > 1.0, f"{name}: param 'factor' must be a number > 1; got {factor!r}.")
        par = self.getParallelism()
        check(par >= 1, f"{name}: param 'parallelism' must be an int >= 1; got {par!r}.")
        kind, lo, hi = self._resource_range(name, est, maps)
        if lo is None:
            lo = _default_min_resource(len(maps), factor, hi, kind == "epochs")
        check(lo <= hi, f"{name}: param 'minResource' ({lo!r}) must not exceed param 'maxResource' ({hi!r}).")
        return {"kind": kind, "min": lo, "max": hi, "factor": float(factor), "folds": folds, "ratio": ratio}

    def plan(self) -> Dict[str, Any]:
        """The schedule these params give, checked before any Spark job: ``kind`` (the resource),
        ``min`` and ``max`` (resource of the first and last rung), ``factor``, ``folds``, ``ratio``."""
        return self._validate()

    def _check_tuning_params(self, name: str) -> Tuple[Estimator, List[Dict[Param, Any]]]:
        """The estimator and param maps, checked: set, of the right types, the maps non-empty."""
        for p in (self.estimator, self.evaluator, self.estimatorParamMaps):
            if not self.isDefined(p):
                raise ValueError(f"{name}: param {p.name!r} is not set; pass {p.name}=... to the constructor "
                                 f"or call set{p.name[0].upper()}{p.name[1:]}().")
        est = self.getEstimator()
        if not isinstance(est, Estimator):
            raise TypeError(f"{name}: param 'estimator' must be a Spark ML Estimator; got {type(est).__name__}.")
        evaluator = self.getEvaluator()
        if not isinstance(evaluator, Evaluator):
            raise TypeError(f"{name}: param 'evaluator' must be a Spark ML Evaluator; got {type(evaluator).__name__}.")
        maps = self.getEstimatorParamMaps()
        if not isinstance(maps, (list, tuple)) or not all(isinstance(pm, dict) for pm in maps):
            raise TypeError(f"{name}: param 'estimatorParamMaps' must be a list of param maps (dicts of Param to "
                            f"value), as ParamGridBuilder().build() returns; got {type(maps).__name__}.")
        check(len(maps) > 0, f"{name}: param 'estimatorParamMaps' is empty; it needs at least one param map.")
        for i, pm in enumerate(maps):
            bad = [k for k in pm if not isinstance(k, Param)]
            if bad:
                raise TypeError(f"{name}: param map {i} of param 'estimatorParamMaps' has a key that is not a Param: "
                                f"{bad[0]!r}. Build the maps with ParamGridBuilder.")
        return est, list(maps)

    def _resource_range(self, name: str, est: Estimator, maps: List[Dict[Param, Any]]) -> Tuple[str, Any, Any]:
        """(resource kind, minResource or None, maxResource), checked for that kind."""
        resource = self.getResource()
        is_tf = isinstance(est, TFClassifier)
        if resource is not None and resource not in RESOURCES:
            raise ValueError(f"{name}: param 'resource' must be one of {list(RESOURCES)} or None; got {resource!r}.")
        kind = resource or ("epochs" if is_tf else "rows")
        lo, hi = self.getMinResource(), self.getMaxResource()
        if kind == "rows":
            hi = 1.0 if hi is None else hi
            for pname, value in (("minResource", lo), ("maxResource", hi)):
                if value is not None and not (0.0 < float(value) <= 1.0):
                    raise ValueError(f"{name}: param {pname!r} must be a fraction of the training rows in (0, 1] with "
                                     f"resource='rows'; got {value!r}.")
            return kind, None if lo is None else float(lo), float(hi)
        if not is_tf:
            raise ValueError(f"{name}: param 'resource' is 'epochs', which needs a TFClassifier estimator; got "
                             f"{type(est).__name__}. Use resource='rows' (a growing sample of the training rows) "
                             f"for other estimators.")
        for i, pm in enumerate(maps):
            for p in pm:
                if p.name == "epochs":
                    raise ValueError(f"{name}: param map {i} sets {p.name!r} to {pm[p]!r}, but epochs are the "
                                     f"resource that HalvingSearch allocates (resource='epochs'); remove 'epochs' "
                                     f"from the param maps and set minResource / maxResource instead.")
        hi = int(est.getEpochs()) if hi is None else hi
        for pname, value in (("minResource", lo), ("maxResource", hi)):
            if value is not None and not (math.isfinite(value) and value == int(value) and value >= 1):
                raise ValueError(f"{name}: param {pname!r} must be an int >= 1 (epochs) with resource='epochs'; "
                                 f"got {value!r}.")
        return kind, None if lo is None else int(lo), int(hi)


def _default_min_resource(n: int, factor: float, max_resource: Any, integer: bool) -> Any:
    """The smallest first-rung resource whose schedule still runs its last rung at ``max_resource``."""
    rungs, alive = 1, n
    while alive > 1:
        alive = max(1, math.ceil(alive / factor))
        if alive > 1:
            rungs += 1
    value = max_resource / factor ** (rungs - 1)
    return max(1, math.ceil(value - 1e-9)) if integer else value


def _rung_resource(k: int, plan: Dict[str, Any], previous: Any) -> Any:
    """Resource of rung ``k``: min(maxResource, minResource * factor**k), epochs rounded and growing."""
    lo, hi, factor = plan["min"], plan["max"], plan["factor"]
    value = lo * factor ** k
    if plan["kind"] == "epochs":
        value = int(round(value))
        if previous is not None:
            value = max(previous + 1, value)
        return min(hi, value)
    return hi if value >= hi * (1 - 1e-9) else value


def planned_trainings(n: int, plan: Dict[str, Any]) -> int:
    """Trainings (param map x fold) the schedule of ``plan`` runs for ``n`` param maps when none fails.

    The same stop rules as :meth:`HalvingSearch._fit`: a rung at ``maxResource`` is the last, and so
    is one that leaves a single survivor.
    """
    folds = plan["folds"] or 1
    total, alive, k, previous = 0, n, 0, None
    while True:
        resource = _rung_resource(k, plan, previous)
        total += alive * folds
        if resource >= plan["max"]:
            return total
        alive = max(1, math.ceil(alive / plan["factor"]))
        if alive == 1:
            return total
        k, previous = k + 1, resource


# ============================================================================ helpers
def _converted(param_map: Dict[Param, Any]) -> Dict[Param, Any]:
    """A param map with each value through its Param's typeConverter (numpy scalars of random samples become ints)."""
    out = {}
    for p, v in param_map.items():
        try:
            out[p] = v if v is None else p.typeConverter(v)
        except (TypeError, ValueError):
            out[p] = v  # the estimator's own fit reports it, as a failing param map
    return out


def _error_text(exc: BaseException) -> str:
    """One line of an exception (py4j's Java errors carry a stack trace after it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _rank_key(metric: float, index: int, larger_is_better: bool) -> Tuple[float, int]:
    return (-metric if larger_is_better else metric, index)


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _map_like(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every leaf of a list / list of lists (sub-models of one or k folds)."""
    if isinstance(value, list):
        return [_map_like(v, fn) for v in value]
    return fn(value)


# ============================================================================ estimator
class HalvingSearch(Estimator, _HalvingSearchParams, MLReadable, MLWritable):
    """Successive-halving hyperparameter search, shaped like ``TrainValidationSplit``.

    Rung ``k`` trains every surviving param map with resource
    ``r_k = min(maxResource, minResource * factor**k)`` and scores it with ``evaluator`` on the
    validation rows (the mean over folds with ``numFolds``). The best ``ceil(n / factor)`` (at
    least one) survive to the next rung; the search stops when one param map is left or a rung
    ran at ``maxResource``. The best param map of the last rung is refit on all the rows at
    ``maxResource``. A param map whose fit raises, whose training diverges or whose metric is NaN
    or infinite ranks last and is not promoted; the search goes on without it.

    Parameters
    ----------
    estimator : Estimator
        A :class:`~sparkdl_lite.TFClassifier` (``resource="epochs"`` or ``"rows"``) or any Spark ML
        estimator, ``Pipeline`` included (``resource="rows"``).
    estimatorParamMaps : list of dict
        From ``ParamGridBuilder().build()`` or a list of randomly sampled param maps.
    evaluator : Evaluator
        Its ``isLargerBetter()`` decides the ranking.
    trainRatio : float, default 0.75
        One train/validation split: the fraction of rows that trains.
    numFolds : int, optional
        k-fold cross-validation instead of ``trainRatio`` (setting both is an error).
    factor : float, default 3
        Keep ``1 / factor`` per rung and multiply the resource by ``factor`` (> 1).
    minResource, maxResource : int or float, optional
        Epochs (ints >= 1) or fractions of the training rows in (0, 1]. ``maxResource`` defaults
        to the estimator's ``epochs`` or 1.0; ``minResource`` to the smallest value whose
        schedule runs the last rung at ``maxResource``.
    resource : {"epochs", "rows"}, optional
        Default: ``"epochs"`` for a ``TFClassifier``, ``"rows"`` otherwise.
    parallelism : int, default 1
        Threads scoring a rung's param maps concurrently, and fitting them for an estimator other
        than a ``TFClassifier`` (which trains each rung in one Spark job, either resource).
    seed : int, optional
        Seed of the split and of the row samples.
    collectSubModels : bool, default False
        Keep each param map's model from its last rung (``None`` where it failed).

    Raises
    ------
    ValueError
        A bad param value (the message names it), a param map that sets the resource (``epochs``),
        ``resource="epochs"`` with an estimator that is not a ``TFClassifier``.
    RuntimeError
        From ``fit`` when every param map fails at the first rung (the message names them).

    Examples
    --------
    >>> from pyspark.ml.tuning import ParamGridBuilder
    >>> from sparkdl_lite.classifier import TFClassifier
    >>> clf = TFClassifier(hiddenLayers=[32])
    >>> grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-3, 3e-3, 1e-2]).addGrid(clf.dropout, [0.0, 0.2, 0.4]).build()
    >>> search = HalvingSearch(estimator=clf, estimatorParamMaps=grid, factor=3, minResource=1, maxResource=9)
    >>> search.getFactor(), search.getTrainRatio(), search.getNumFolds()
    (3.0, 0.75, None)
    >>> from pyspark.ml.evaluation import MulticlassClassificationEvaluator  # doctest: +SKIP
    >>> search.setEvaluator(MulticlassClassificationEvaluator(metricName="accuracy"))  # doctest: +SKIP
    >>> model = search.fit(train_df)  # rungs: 9 maps x 1 epoch, 3 x 3 epochs, 1 x 9 epochs  # doctest: +SKIP
    >>> model.bestIndex, model.rungs[0]  # doctest: +SKIP
    (4, {'rung': 0, 'resource': 1, 'paramMapIndex': 0, 'metric': 0.91, 'seconds': 2.1, 'error': None})

    .. versionadded:: 0.1.0
    """

    @keyword_only
    def __init__(self, *, estimator: Optional[Estimator] = None, estimatorParamMaps: Optional[List[Dict[Param, Any]]] = None,
                 evaluator: Optional[Evaluator] = None, trainRatio: float = 0.75, numFolds: Optional[int] = None,
                 factor: float = 3.0, minResource: Any = None, maxResource: Any = None, resource: Optional[str] = None,
                 parallelism: int = 1, seed: Optional[int] = None, collectSubModels: bool = False) -> None:
        super().__init__()
        kwargs = dict(self._input_kwargs)
        if kwargs.get("seed", 0) is None:  # None keeps HasSeed's default, as Spark's tuners do
            kwargs.pop("seed")
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, estimator: Optional[Estimator] = None, estimatorParamMaps: Optional[List[Dict[Param, Any]]] = None,
                  evaluator: Optional[Evaluator] = None, trainRatio: float = 0.75, numFolds: Optional[int] = None,
                  factor: float = 3.0, minResource: Any = None, maxResource: Any = None, resource: Optional[str] = None,
                  parallelism: int = 1, seed: Optional[int] = None, collectSubModels: bool = False) -> HalvingSearch:
        """Set any of the constructor's params (keyword only)."""
        kwargs = dict(self._input_kwargs)
        if kwargs.get("seed", 0) is None:
            kwargs.pop("seed")
        return self._set(**kwargs)

    def setEstimator(self, value: Estimator) -> HalvingSearch:
        return self._set(estimator=value)

    def setEstimatorParamMaps(self, value: List[Dict[Param, Any]]) -> HalvingSearch:
        return self._set(estimatorParamMaps=value)

    def setEvaluator(self, value: Evaluator) -> HalvingSearch:
        return self._set(evaluator=value)

    def setTrainRatio(self, value: float) -> HalvingSearch:
        return self._set(trainRatio=value)

    def setNumFolds(self, value: Optional[int]) -> HalvingSearch:
        return self._set(numFolds=value)

    def setFactor(self, value: float) -> HalvingSearch:
        return self._set(factor=value)

    def setMinResource(self, value: Any) -> HalvingSearch:
        return self._set(minResource=value)

    def setMaxResource(self, value: Any) -> HalvingSearch:
        return self._set(maxResource=value)

    def setResource(self, value: Optional[str]) -> HalvingSearch:
        return self._set(resource=value)

    def setParallelism(self, value: int) -> HalvingSearch:
        return self._set(parallelism=value)

    def setSeed(self, value: int) -> HalvingSearch:
        return self._set(seed=value)

    def setCollectSubModels(self, value: bool) -> HalvingSearch:
        return self._set(collectSubModels=value)

    def copy(self, extra: Optional[Dict[Param, Any]] = None) -> HalvingSearch:
        """A copy with the same uid; the estimator and evaluator are copied too (as ``TrainValidationSplit`` does)."""
        extra = dict(extra or {})
        that = Params.copy(self, extra)
        if self.isSet(self.estimator):
            that.setEstimator(self.getEstimator().copy(extra))
        if self.isSet(self.evaluator):
            that.setEvaluator(self.getEvaluator().copy(extra))
        return that

    # ------------------------------------------------------------------ fit
    def _fit(self, dataset: DataFrame) -> HalvingSearchModel:
        plan = self._validate(dataset.schema)
        est, evaluator = self.getEstimator(), self.getEvaluator()
        maps = [_converted(pm) for pm in self.getEstimatorParamMaps()]
        seed = self.getSeed()
        if seed is None:
            seed = random.randrange(2 ** 62)  # noqa: S311 - a data split, not security
        sample_seed = int(seed) ^ _SAMPLE_SALT
        start = time.perf_counter()
        with ExitStack() as stack:
            folds = [_Fold(stack.enter_context(_cache_spark_dataset(train)), stack.enter_context(_cache_spark_dataset(valid)))
                     for train, valid in self._splits(dataset, plan, seed, sample_seed)]
            # The folds' rows are collected and shipped once for every rung (epochs: each rung trains the same rows).
            data = stack.enter_context(task_data.TaskData(keep=True)) if plan["kind"] == "epochs" else None
            rungs, last = _Rungs(self, est, evaluator, maps, folds, plan, data).run()
        search_seconds = time.perf_counter() - start
        best = _best_index(rungs, bool(evaluator.isLargerBetter()))
        metrics = [float("nan")] * len(maps)
        for entry in rungs:  # in rung order: the last entry of a param map is its last rung
            metrics[entry["paramMapIndex"]] = entry["metric"]
        t0 = time.perf_counter()
        best_model = est.fit(*self._refit_inputs(dataset, est, maps[best], plan, sample_seed))
        refit_seconds = time.perf_counter() - t0
        sub_models = None
        if self.getCollectSubModels():
            per_fold = [[(last.get(i) or [None] * len(folds))[f] for i in range(len(maps))] for f in range(len(folds))]
            sub_models = per_fold if plan["folds"] is not None else per_fold[0]
        model = HalvingSearchModel(bestModel=best_model, bestIndex=best, rungs=rungs, metrics=metrics,
                                   searchSeconds=search_seconds, refitSeconds=refit_seconds, subModels=sub_models)
        return self._copyValues(model)

    @staticmethod
    def _refit_inputs(dataset: DataFrame, est: Estimator, best: Dict[Param, Any], plan: Dict[str, Any],
                      sample_seed: int) -> Tuple[DataFrame, Dict[Param, Any]]:
        """The rows and param map of the refit: all the rows (or the maxResource sample) at maxResource."""
        refit_map = dict(best)
        if plan["kind"] == "epochs":
            refit_map[est.getParam("epochs")] = int(plan["max"])
            return dataset, refit_map
        if plan["max"] >= 1.0:
            return dataset, refit_map
        col = f"{_SAMPLE_COL}_refit"
        return dataset.select("*", F.rand(sample_seed).alias(col)).filter(F.col(col) < plan["max"]).drop(col), refit_map

    def _splits(self, dataset: DataFrame, plan: Dict[str, Any], seed: int, sample_seed: int) -> List[Tuple[DataFrame, DataFrame]]:
        """(train, validation) per fold; with resource 'rows' the train side keeps a row-sample column."""
        rand_col = f"{self.uid}_rand"
        cols = [F.rand(seed).alias(rand_col)]
        if plan["kind"] == "rows":
            cols.append(F.rand(sample_seed).alias(_SAMPLE_COL))
        df = dataset.select("*", *cols)
        rand = F.col(rand_col)
        if plan["folds"] is None:
            conditions = [rand >= plan["ratio"]]
        else:
            h = 1.0 / plan["folds"]
            conditions = [(rand >= i * h) & (rand < (i + 1) * h) for i in range(plan["folds"])]
        out = []
        for validation in conditions:
            valid = df.filter(validation).drop(rand_col)
            if plan["kind"] == "rows":
                valid = valid.drop(_SAMPLE_COL)
            out.append((df.filter(~validation).drop(rand_col), valid))
        return out

    # ------------------------------------------------------------------ persistence
    def write(self) -> MLWriter:
        """Params, param maps and rungs as JSON metadata; the estimator and evaluator with their own writers."""
        return _HalvingSearchWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _HalvingSearchReader(cls)


# ============================================================================ the rungs
_SAMPLE_COL = "__sparkdl_lite_sample"  # the row-sample column of resource 'rows' (dropped before any fit)


class _Fold(NamedTuple):
    train: DataFrame
    valid: DataFrame


class _Trial(NamedTuple):
    """One training of a rung: param map ``index`` on fold ``fold`` with the rung's resource applied."""

    index: int
    fold: int
    params: Dict[Param, Any]
    train: DataFrame
    valid: DataFrame
    start: Optional[Model] = None


class _Outcome(NamedTuple):
    """A trial's model (None where it failed), metric (or the exception), seconds and training seconds."""

    model: Optional[Model]
    metric: Any
    seconds: float
    train_seconds: Optional[float]


class _RungResult(NamedTuple):
    """One param map at one rung, over its folds: mean metric, seconds, error (or None), models, training seconds."""

    metric: float
    seconds: float
    error: Optional[str]
    models: List[Optional[Model]]
    train_seconds: Optional[float]


class _Rungs:
    """The rungs of one search: each trains and scores its survivors, then keeps the best ``1 / factor``.

    One evaluation path for both resources: the resource only changes a trial's inputs (a row
    sample of the fold, or more epochs continuing the model of the rung before)."""

    def __init__(self, search: HalvingSearch, est: Estimator, evaluator: Evaluator, maps: List[Dict[Param, Any]],
                 folds: List[_Fold], plan: Dict[str, Any], data: Optional[task_data.TaskData]) -> None:
        self.est, self.evaluator, self.maps, self.folds, self.plan, self.data = est, evaluator, maps, folds, plan, data
        self.spark = folds[0].train.sparkSession
        self.threads = search.getParallelism()
        self.collect = bool(search.getCollectSubModels())
        self.state: Dict[Tuple[int, int], Model] = {}  # (param map, fold) -> model a survivor continues from
        self.pace: Dict[int, float] = {}  # param map -> training seconds per epoch at its last rung (all folds)

    def run(self) -> Tuple[List[Dict[str, Any]], Dict[int, List[Optional[Model]]]]:
        """Every rung's entries, and each param map's models at its last rung (with collectSubModels)."""
        plan, larger = self.plan, bool(self.evaluator.isLargerBetter())
        rungs: List[Dict[str, Any]] = []
        last: Dict[int, List[Optional[Model]]] = {}
        alive, k, previous = list(range(len(self.maps))), 0, None
        while True:
            resource = _rung_resource(k, plan, previous)
            results = self.evaluate(alive, resource, previous)
            for i in alive:
                rungs.append(_entry(k, resource, i, results[i]))
                if self.collect:
                    last[i] = results[i].models
            ok = [i for i in alive if results[i].error is None]
            if k == 0 and not ok:
                detail = "; ".join(f"param map {i} {describe(self.maps[i])}: {results[i].error}" for i in alive)
                raise RuntimeError(f"HalvingSearch: every param map failed at rung 0 (resource {resource!r} "
                                   f"{plan['kind']}): {detail}")
            if resource >= plan["max"] or not ok:
                return rungs, last
            keep = max(1, math.ceil(len(alive) / plan["factor"]))
            alive = sorted(ok, key=lambda i: _rank_key(results[i].metric, i, larger))[:keep]
            self.state = {key: m for key, m in self.state.items() if key[0] in alive}
            if len(alive) == 1:
                return rungs, last
            k, previous = k + 1, resource

    def evaluate(self, alive: List[int], resource: Any, previous: Any) -> Dict[int, _RungResult]:
        """Train and score every survivor on every fold at ``resource``; one result per param map."""
        trials = self.trials(alive, resource, previous)
        outcomes = self.score(trials, self.train(trials))
        added = resource - (previous or 0)
        results = {}
        for i in alive:
            mine = [(t, o) for t, o in zip(trials, outcomes) if t.index == i]
            results[i] = _combine([o for _, o in mine])
            if self.plan["kind"] == "epochs":
                self.state.update({(i, t.fold): o.model for t, o in mine if o.model is not None})
                if results[i].train_seconds:
                    self.pace[i] = results[i].train_seconds / added
        return results

    def trials(self, alive: List[int], resource: Any, previous: Any) -> List[_Trial]:
        """The rung's trainings. Epochs: ``resource - previous`` more epochs from the rung before's model,
        slowest first (seconds per epoch at that rung), so the longest trainings start first and the
        short ones fill the slots behind them; rows: a ``resource`` fraction of each fold's rows."""
        out = []
        if self.plan["kind"] == "epochs":
            epochs = self.est.getParam("epochs")
            for i in sorted(alive, key=lambda i: -self.pace.get(i, 0.0)):  # stable: rung 0 keeps the given order
                pm = {**self.maps[i], epochs: int(resource - (previous or 0))}
                out += [_Trial(i, f, pm, fold.train, fold.valid, self.state.get((i, f))) for f, fold in enumerate(self.folds)]
            return out
        for f, fold in enumerate(self.folds):
            sample = fold.train if resource >= 1.0 else fold.train.filter(F.col(_SAMPLE_COL) < resource)
            sample = sample.drop(_SAMPLE_COL)  # one DataFrame per fold: collected once for all param maps
            out += [_Trial(i, f, self.maps[i], sample, fold.valid) for i in alive]
        return out

    def train(self, trials: List[_Trial]) -> List[Tuple[Any, float, Optional[float]]]:
        """(Fitted or exception, wall seconds, training seconds) per trial.

        A TFClassifier trains every trial in one Spark job (the tasks predict their validation rows
        when the evaluator is plain accuracy); any other estimator fits each trial on
        ``parallelism`` threads."""
        if isinstance(self.est, TFClassifier):
            return self._train_tf(trials)

        def fit(t: _Trial) -> Tuple[Any, float, Optional[float]]:
            t0 = time.perf_counter()
            try:
                model: Any = self.est.fit(t.train, t.params)
            except Exception as exc:  # noqa: BLE001 - a failing param map ranks last; the search goes on
                return exc, time.perf_counter() - t0, None
            seconds = training_info(model).get("seconds")
            return Fitted(model, None), time.perf_counter() - t0, None if seconds is None else float(seconds)

        return engine.thread_map(self.spark, fit, trials, self.threads)

    def _train_tf(self, trials: List[_Trial]) -> List[Tuple[Any, float, Optional[float]]]:
        in_task = _scores_in_task(self.evaluator, self.est)
        tasks = [FitTask(t.train, t.params, t.start, t.valid if in_task else None) for t in trials]
        t0 = time.perf_counter()
        try:
            fitted: List[Any] = fit_tasks(self.est, tasks, data=self.data, longest=not self.pace, isolate=True)
        except Exception as exc:  # noqa: BLE001 - the whole job failed: every trial of this rung did
            fitted = [exc] * len(trials)
        share = (time.perf_counter() - t0) / max(1, len(trials))
        out = []
        for f in fitted:
            if isinstance(f, Fitted) and f.model is not None:
                seconds = training_info(f.model).get("seconds")
                out.append((f, share, share if seconds is None else float(seconds)))
            else:
                rejected = isinstance(f, Fitted) and isinstance(f.error, (ValueError, TypeError))
                out.append((f.error if isinstance(f, Fitted) else f, 0.0 if rejected else share,
                            0.0 if rejected else share))
        return out

    def score(self, trials: List[_Trial], trained: List[Tuple[Any, float, Optional[float]]]) -> List[_Outcome]:
        """Each trial's metric: counted from the task's predictions, else the evaluator on a transform."""
        def one(t: int) -> _Outcome:
            fitted, wall, fit_seconds = trained[t]
            spent = fit_seconds if fit_seconds is not None else wall
            if not isinstance(fitted, Fitted):
                return _Outcome(None, fitted, spent, fit_seconds)
            if fitted.predictions is not None:  # predicted in the training task: accuracy needs no Spark job
                labels = fitted.labels
                metric: Any = float(np.mean(fitted.predictions == labels)) if len(labels) else float("nan")
                extra = float(training_info(fitted.model).get("scoreSeconds") or 0.0)
                return _Outcome(fitted.model, metric, spent + extra, fit_seconds)
            t1 = time.perf_counter()
            try:
                metric = self.evaluator.evaluate(fitted.model.transform(trials[t].valid, self.maps[trials[t].index]))
            except Exception as exc:  # noqa: BLE001
                metric = exc
            return _Outcome(fitted.model, metric, spent + time.perf_counter() - t1, fit_seconds)

        return engine.thread_map(self.spark, one, list(range(len(trials))), self.threads)


def _combine(outcomes: List[_Outcome]) -> _RungResult:
    """One param map's result over its folds: the mean metric, or NaN and the error where a fold failed."""
    metrics, errors = [], []
    for o in outcomes:
        if isinstance(o.metric, BaseException):
            errors.append(_error_text(o.metric))
            continue
        value = float(o.metric)
        metrics.append(value)
        if not math.isfinite(value):
            errors.append(f"metric is {value!r}")
        elif training_info(o.model).get("diverged"):
            errors.append("the training loss diverged")
    mean = sum(metrics) / len(metrics) if metrics and len(metrics) == len(outcomes) else float("nan")
    train = [o.train_seconds for o in outcomes]
    return _RungResult(metric=mean, seconds=sum(o.seconds for o in outcomes), error="; ".join(dict.fromkeys(errors)) or None,
                       models=[o.model for o in outcomes], train_seconds=None if None in train else sum(train))


def _entry(rung: int, resource: Any, index: int, result: _RungResult) -> Dict[str, Any]:
    """A param map's record of one rung, as ``HalvingSearchModel.rungs`` holds it."""
    entry = {"rung": rung, "resource": resource, "paramMapIndex": index, "metric": result.metric,
             "seconds": result.seconds, "error": result.error}
    if result.train_seconds is not None:  # the training part of seconds, from the tasks' trainingInfo
        entry["train_seconds"] = result.train_seconds
    return entry


def _scores_in_task(evaluator: Evaluator, est: Any) -> bool:
    """Whether the training tasks can score ``evaluator`` themselves: plain accuracy of ``est``'s prediction.

    ``MulticlassClassificationEvaluator(metricName="accuracy")`` without weights, on the estimator's
    own label and prediction columns, is the fraction of validation rows whose predicted class
    equals the label: the task predicts the rows after training and the driver counts. Any other
    evaluator scores a ``transform`` of the validation rows, one Spark job per model.
    """
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    if type(evaluator) is not MulticlassClassificationEvaluator or evaluator.getMetricName() != "accuracy":
        return False
    if evaluator.isSet(evaluator.weightCol) and evaluator.getWeightCol():
        return False
    return (evaluator.getLabelCol() == est.getLabelCol() and evaluator.getPredictionCol() == est.getPredictionCol()
            and bool(est.getPredictionCol()))


def _best_index(rungs: List[Dict[str, Any]], larger_is_better: bool) -> int:
    """The best param map of the last rung that has a successful one."""
    for rung in sorted({e["rung"] for e in rungs}, reverse=True):
        ok = [e for e in rungs if e["rung"] == rung and e["error"] is None]
        if ok:
            return min(ok, key=lambda e: _rank_key(e["metric"], e["paramMapIndex"], larger_is_better))["paramMapIndex"]
    raise RuntimeError("HalvingSearch: no param map succeeded.")  # rung 0 raised already


# ============================================================================ model
class HalvingSearchModel(Model, _HalvingSearchParams, MLReadable, MLWritable):
    """The result of :class:`HalvingSearch`: the refit best model plus every rung's record.

    ``transform`` is ``bestModel.transform``.

    Parameters
    ----------
    bestModel : Model
        The best param map refit on all the rows at ``maxResource``.
    bestIndex : int
        Its index in ``estimatorParamMaps``.
    rungs : list of dict
        One per param map per rung, in rung order: ``rung``, ``resource`` (epochs, or the fraction
        of the training rows), ``paramMapIndex``, ``metric`` (NaN where it failed), ``seconds``
        (fit and evaluation, summed over folds), ``error`` (``None``, or why the param map ranks
        last) and, with ``resource="epochs"``, ``train_seconds`` (the training part of ``seconds``:
        the rung's added epochs, from the tasks' ``trainingInfo``).
    metrics : list of float
        Each param map's metric at its last rung, aligned with ``estimatorParamMaps``.
    searchSeconds : float
        Wall time of the rungs (splitting, training and scoring), without the refit.
    refitSeconds : float
        Wall time of the refit of the best param map.
    subModels : list, optional
        With ``collectSubModels``: each param map's model from its last rung (``None`` where it
        failed); a list per fold with ``numFolds``.

    Examples
    --------
    >>> model = search.fit(train_df)  # doctest: +SKIP
    >>> model.bestIndex, model.metrics[model.bestIndex], model.searchSeconds  # doctest: +SKIP
    >>> model.write().overwrite().save("/tmp/halving")  # doctest: +SKIP
    >>> HalvingSearchModel.load("/tmp/halving").transform(test_df)  # doctest: +SKIP

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, bestModel: Optional[Model] = None, bestIndex: int = 0,
                 rungs: Optional[List[Dict[str, Any]]] = None, metrics: Optional[List[float]] = None,
                 searchSeconds: Optional[float] = None, refitSeconds: Optional[float] = None,
                 subModels: Optional[List[Any]] = None) -> None:
        super().__init__()
        self.bestModel = bestModel
        self.bestIndex = int(bestIndex)
        self.rungs = [dict(r) for r in (rungs or [])]
        self.metrics = [float(m) for m in (metrics or [])]
        self.searchSeconds = searchSeconds
        self.refitSeconds = refitSeconds
        self.subModels = subModels

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if self.bestModel is None:
            raise ValueError("HalvingSearchModel: no bestModel; fit a HalvingSearch or load a saved model.")
        return self.bestModel.transform(dataset)

    def copy(self, extra: Optional[Dict[Param, Any]] = None) -> HalvingSearchModel:
        """A copy with the same uid; ``bestModel`` is copied with ``extra``, the sub-models without."""
        extra = dict(extra or {})
        that = HalvingSearchModel(
            bestModel=None if self.bestModel is None else self.bestModel.copy(extra), bestIndex=self.bestIndex,
            rungs=self.rungs, metrics=self.metrics, searchSeconds=self.searchSeconds, refitSeconds=self.refitSeconds,
            subModels=None if self.subModels is None else _map_like(self.subModels, lambda m: None if m is None else m.copy()))
        that._resetUid(self.uid)
        return self._copyValues(that, extra=extra)

    def write(self) -> MLWriter:
        """Metadata JSON (params, param maps, rungs, metrics), the estimator, evaluator and bestModel with their own writers.

        ``.option("persistSubModels", "true")`` also writes the sub-models (the default when they were collected).
        """
        return _HalvingSearchModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _HalvingSearchModelReader(cls)


# ============================================================================ persistence
def _save_search(path: str, instance: Any, spark: Any, extra: Optional[Dict[str, Any]] = None) -> None:
    """Metadata (set params stay set, defaults stay defaults), param maps, estimator and evaluator.

    Like ``pyspark.ml.tuning._ValidatorSharedReadWrite.saveImpl``, whose reader loads it, but it
    keeps ``trainRatio`` a default when it was one (so ``numFolds`` stays usable after a load) and
    writes the param maps the way Spark's JVM writer does.
    """
    _ValidatorSharedReadWrite.validateParams(instance)
    name = type(instance).__name__
    json_maps = []
    not_json = 0
    for i, param_map in enumerate(instance.getEstimatorParamMaps()):
        entries = []
        for p, v in param_map.items():
            entry: Dict[str, Any] = {"parent": p.parent, "name": p.name}
            if (isinstance(v, Estimator) and not MetaAlgorithmReadWrite.isMetaEstimator(v)) \
                    or isinstance(v, (Transformer, Evaluator)):
                relative = f"epm_{p.name}{not_json}"
                not_json += 1
                v.write().session(spark).save(os.path.join(path, relative))
                entry.update(value=json.dumps(relative), isJson=json.dumps(False))
            else:
                try:
                    entry.update(value=json.dumps(plain(v), allow_nan=False), isJson=json.dumps(True))
                except (TypeError, ValueError):
                    raise ValueError(f"{name}: cannot save param map {i}: param {p.name!r} has the value {v!r}, "
                                     f"which is not JSON.") from None
            entries.append(entry)
        json_maps.append(entries)
    skip = ("estimator", "evaluator", "estimatorParamMaps")
    params = {p.name: plain(v) for p, v in instance._paramMap.items() if p.name not in skip}
    params["estimatorParamMaps"] = json_maps
    meta = {"sparkdlLiteVersion": __version__, **(extra or {})}
    DefaultParamsWriter.saveMetadata(instance, path, spark, extraMetadata=meta, paramMap=params)
    instance.getEvaluator().write().session(spark).save(os.path.join(path, "evaluator"))
    instance.getEstimator().write().session(spark).save(os.path.join(path, "estimator"))


def _load_search(reader: MLReader, path: str) -> Tuple[Dict[str, Any], Estimator, Evaluator, List[Dict[Param, Any]]]:
    cls = reader.cls
    expected = f"{cls.__module__}.{cls.__name__}"
    try:
        metadata = DefaultParamsReader.loadMetadata(path, reader.sparkSession, expected)
    except Exception as exc:  # Spark raises a bare Exception or TypeError on a class mismatch
        raise ValueError(f"{cls.__name__}.load: {path!r} is not a saved {expected}: {exc}") from None
    if metadata.get("sparkdlLiteVersion") != __version__:
        warnings.warn(f"{cls.__name__}.load: {path!r} was saved by sparkdl_lite {metadata.get('sparkdlLiteVersion')}; "
                      f"this is {__version__}.", UserWarning, stacklevel=3)
    return _ValidatorSharedReadWrite.load(path, reader.sparkSession, metadata)


def _restore(instance: Any, metadata: Dict[str, Any], estimator: Estimator, evaluator: Evaluator,
             maps: List[Dict[Param, Any]]) -> Any:
    instance._resetUid(metadata["uid"])
    DefaultParamsReader.getAndSetParams(instance, metadata, skipParams=["estimatorParamMaps"])
    instance._set(estimator=estimator, evaluator=evaluator, estimatorParamMaps=maps)
    return instance


class _HalvingSearchWriter(MLWriter):
    def __init__(self, instance: HalvingSearch) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        _save_search(path, self.instance, self.sparkSession)


class _HalvingSearchReader(MLReader):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> HalvingSearch:
        metadata, estimator, evaluator, maps = _load_search(self, path)
        return _restore(self.cls(), metadata, estimator, evaluator, maps)


class _HalvingSearchModelWriter(MLWriter):
    def __init__(self, instance: HalvingSearchModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        inst = self.instance
        if inst.bestModel is None:
            raise ValueError("HalvingSearchModel: no bestModel to save; fit a HalvingSearch first.")
        persist = _ValidatorSharedReadWrite.getValidatorModelWriterPersistSubModelsParam(self)
        if persist and inst.subModels is None:
            raise ValueError("HalvingSearchModel: option persistSubModels is true but the model holds no sub-models; "
                             "fit with collectSubModels=True.")
        sub_paths = None
        if persist:
            def where(fold: Optional[int], i: int, model: Any) -> Optional[str]:
                if model is None:
                    return None
                relative = f"subModels/{i}" if fold is None else f"subModels/fold{fold}/{i}"
                model.write().session(self.sparkSession).save(os.path.join(path, relative))
                return relative

            subs = inst.subModels
            if subs and isinstance(subs[0], list):
                sub_paths = [[where(f, i, m) for i, m in enumerate(fold)] for f, fold in enumerate(subs)]
            else:
                sub_paths = [where(None, i, m) for i, m in enumerate(subs)]
        rungs = [{k: (number(v) if k in ("metric", "seconds", "train_seconds") else plain(v)) for k, v in r.items()}
                 for r in inst.rungs]
        extra = {"bestIndex": inst.bestIndex, "rungs": rungs, "metrics": [number(m) for m in inst.metrics],
                 "searchSeconds": number(inst.searchSeconds), "refitSeconds": number(inst.refitSeconds),
                 "persistSubModels": bool(persist), "subModelPaths": sub_paths}
        _save_search(path, inst, self.sparkSession, extra)
        inst.bestModel.write().session(self.sparkSession).save(os.path.join(path, "bestModel"))


class _HalvingSearchModelReader(MLReader):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> HalvingSearchModel:
        metadata, estimator, evaluator, maps = _load_search(self, path)
        spark = self.sparkSession
        best = DefaultParamsReader.loadParamsInstance(os.path.join(path, "bestModel"), spark)
        subs = None
        if metadata.get("persistSubModels") and metadata.get("subModelPaths") is not None:
            subs = _map_like(metadata["subModelPaths"],
                             lambda rel: None if rel is None else DefaultParamsReader.loadParamsInstance(os.path.join(path, rel), spark))
        rungs = [{**r, "metric": _nan(r.get("metric")), "seconds": r.get("seconds")} for r in metadata.get("rungs") or []]
        model = self.cls(bestModel=best, bestIndex=int(metadata.get("bestIndex") or 0), rungs=rungs,
                         metrics=[_nan(m) for m in metadata.get("metrics") or []],
                         searchSeconds=metadata.get("searchSeconds"), refitSeconds=metadata.get("refitSeconds"),
                         subModels=subs)
        return _restore(model, metadata, estimator, evaluator, maps)
