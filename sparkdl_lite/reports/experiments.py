"""Experiments the command line runs, as library code: a tuning run with its default-vs-best
comparison and report, and labeling a folder of images with a saved model.

Spark-stage layer: it drives the stages and Spark ML's tuners through the engine; the CLI only
parses arguments, starts the session and prints. A progress line is passed in as a factory (the CLI
has one), so this module stays below the CLI.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from sparkdl_lite import __version__
from sparkdl_lite.core.jsonable import plain
from sparkdl_lite.core.training import HYPERPARAMS  # the one table of the fixed hyperparameters
from sparkdl_lite.reports import tuning as tn
from sparkdl_lite.runner import engine

__all__ = ["TuneSettings", "TuneData", "numpy_frames", "read_frames", "tune", "label_images", "TUNE_TAG", "LABEL_TAG"]

TUNE_TAG = "sparkdl-lite-tune"
LABEL_TAG = "sparkdl-lite-label"


@dataclass
class TuneSettings:
    """What a tuning run trains: the grid, the network, the validation and the search.

    ``grid_items`` as :func:`sparkdl_lite.cli.parse_grid` gives them (``<layer>.<key>`` names are
    layer params of ``model``); ``folds`` (k folds) or ``fraction`` (one train/validation split).
    ``configs``, when given, are the configurations to try (``{param name: value}`` each, e.g.
    random draws from ``grid_items``' ranges) instead of the product of ``grid_items``, which then
    only describes the search space. ``search`` is ``"grid"`` (CrossValidator /
    TrainValidationSplit, every configuration at ``epochs``) or ``"halving"``
    (:class:`~sparkdl_lite.search.HalvingSearch` with ``factor``, from ``min_epochs`` (None: its
    default) to ``epochs``). ``training_data`` and ``staging_dir`` set the classifier's
    ``trainingData`` (``"auto"``, ``"ship"`` or ``"stream"``) and ``stagingDir``; ``input_shape``
    its ``inputShape`` (flat features reshaped for a ``cnn``).
    """

    grid_items: List[Tuple[str, List[Any]]]
    out_dir: str
    model: Any = None
    model_name: Optional[str] = None
    architecture: str = HYPERPARAMS["architecture"]["default"]
    epochs: int = HYPERPARAMS["epochs"]["default"]
    batch_size: int = HYPERPARAMS["batchSize"]["default"]
    seed: int = HYPERPARAMS["seed"]["default"]
    folds: Optional[int] = None
    fraction: Optional[float] = 0.2
    parallelism: Optional[int] = None
    command: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)
    configs: Optional[List[Dict[str, Any]]] = None
    search: str = "grid"
    factor: float = 3.0
    min_epochs: Optional[int] = None
    training_data: str = "auto"
    staging_dir: Optional[str] = None
    input_shape: Optional[List[int]] = None


# ============================================================================ the rows a tuning run uses
@dataclass(frozen=True)
class TuneData:
    """What a tuning run's rows are, as its log line, ``report.md`` and ``results.json`` name them.

    The rows themselves are the train and test DataFrames :func:`tune` takes. ``name`` titles the
    report and plots; ``source`` says where the rows come from (a data set, a Parquet path or URI,
    a table); ``test`` how the test rows were made; ``features`` what the features column holds
    and ``features_kind`` its kind (``"image"``, ``"vector"`` or ``"array"``).

    .. versionadded:: 0.3.0
    """

    name: str
    source: str
    features_col: str
    label_col: str
    features: str
    features_kind: str  # 'image', 'vector' or 'array'
    test: str
    class_names: Optional[List[str]] = None


def numpy_frames(spark: Any, dataset: Any) -> Tuple[Any, Any, TuneData]:
    """A :class:`~sparkdl_lite.core.datasets.Dataset` as cached train and test DataFrames of image structs.

    Columns ``image`` (``images_from_numpy``, uint8, 1 channel) and ``label``: the classifier
    scales the pixels inside its graph, so the saved model labels image files directly.

    Returns
    -------
    tuple
        ``(train, test, TuneData)``.

    .. versionadded:: 0.3.0
    """
    from sparkdl_lite.images import images_from_numpy

    train = images_from_numpy(spark, dataset.x_train, dataset.y_train).cache()
    test = images_from_numpy(spark, dataset.x_test, dataset.y_test, origin_prefix="test://").cache()
    height, width = dataset.x_train.shape[1:3]
    return train, test, TuneData(name=dataset.name, source=dataset.name, features_col="image", label_col="label",
                                 features=f"{height}x{width} uint8 image structs (column 'image')",
                                 features_kind="image", test="the data set's test split",
                                 class_names=dataset.class_names)


def _source_text(source: str, kind: str) -> str:
    return f"Parquet {source!r}" if kind == "parquet" else f"table {source!r}"


def _read_frame(spark: Any, source: str, kind: str, flag: str) -> Any:
    """``spark.read.parquet(source)`` or ``spark.table(source)``; a missing path or table as one FileNotFoundError."""
    from pyspark.errors import AnalysisException

    try:
        frame = spark.read.parquet(source) if kind == "parquet" else spark.table(source)
        frame.schema  # noqa: B018 - Spark Connect analyses lazily: fail here, not in the first job
    except AnalysisException as exc:
        hint = "" if kind == "parquet" else (" (a value that is no existing path, has no '/' or scheme:// and does not "
                                             "end in .parquet is read as a table name)")
        raise FileNotFoundError(f"{flag} {source!r}: {str(exc).strip().splitlines()[0]}{hint}") from None
    return frame


def _check_columns(schema: Any, where: str, features_col: str, label_col: str) -> str:
    """The features column's kind ('vector', 'array' or 'image'); a missing or unusable column named with the flag."""
    from pyspark.sql import types as T

    from sparkdl_lite.runner.task_data import feature_kind

    for flag, col in (("--features-col", features_col), ("--label-col", label_col)):
        if col not in schema.names:
            raise ValueError(f"{flag} {col!r} is not a column of {where}. Available columns: {schema.names}.")
    kind = feature_kind(schema[features_col].dataType)
    if kind is None:
        raise TypeError(f"--features-col {features_col!r} of {where} must be a Spark ML vector, an array of numbers or "
                        f"an image struct; got {schema[features_col].dataType.simpleString()}.")
    if not isinstance(schema[label_col].dataType, T.NumericType):
        raise TypeError(f"--label-col {label_col!r} of {where} must be numeric (class indices 0..K-1); got "
                        f"{schema[label_col].dataType.simpleString()}. Index other labels with StringIndexer first.")
    return kind


def read_frames(spark: Any, source: str, kind: str, *, features_col: str = "features", label_col: str = "label",
                test_source: Optional[str] = None, test_kind: str = "parquet", test_fraction: float = 0.2,
                sample: Optional[int] = None, seed: int = 0) -> Tuple[Any, Any, TuneData]:
    """Train and test DataFrames of a Parquet path or URI or a table, without collecting a row to the driver.

    Parameters
    ----------
    source, test_source : str
        A Parquet file or directory (a path or a URI: ``file://``, ``hdfs://``, ``s3a://``...) when
        its ``kind`` / ``test_kind`` is ``"parquet"``, a table name (``spark.table``) when ``"table"``.
        Without ``test_source``, ``DataFrame.randomSplit([1 - test_fraction, test_fraction], seed)``
        of ``source`` makes the test rows.
    features_col, label_col : str
        The columns to train on: a Spark ML vector, an array of numbers or an image struct, and a
        numeric label (class indices). Only these two columns are kept.
    sample : int, optional
        Keep ``sample`` training rows and ``sample // 5`` test rows (seeded random rows, not stratified).

    Returns
    -------
    tuple
        ``(train, test, TuneData)``.

    Raises
    ------
    ValueError
        A column that is not in the data (the message lists the available ones), or a bad ``test_fraction``.
    TypeError
        A features column of another type, or a non-numeric label column.
    FileNotFoundError
        A path or table Spark cannot find.

    .. versionadded:: 0.3.0
    """
    from pyspark.sql import functions as F

    where = _source_text(source, kind)
    frame = _read_frame(spark, source, kind, "--data")
    feature_kind = _check_columns(frame.schema, where, features_col, label_col)
    frame = frame.select(features_col, label_col)
    if test_source is not None:
        test = _read_frame(spark, test_source, test_kind, "--test-data")
        _check_columns(test.schema, _source_text(test_source, test_kind), features_col, label_col)
        train, test, how = frame, test.select(features_col, label_col), _source_text(test_source, test_kind)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in (0, 1); got {test_fraction}.")
        train, test = frame.randomSplit([1.0 - test_fraction, test_fraction], seed)
        how = f"{test_fraction:.0%} of the rows by randomSplit, seed {seed}"
    if sample is not None:  # a seeded random order's first rows: Spark keeps the top rows per partition, no collect
        train = train.orderBy(F.rand(seed)).limit(sample)
        test = test.orderBy(F.rand(seed + 1)).limit(max(1, sample // 5))
        how += f"; --sample {sample}: {sample} random training rows, {max(1, sample // 5)} test rows"
    name = (os.path.basename(source.rstrip("/")) or source) if kind == "parquet" else source
    dtype = frame.schema[features_col].dataType.simpleString()
    return train, test, TuneData(name=name, source=where, features_col=features_col, label_col=label_col,
                                 features=f"column {features_col!r} ({dtype})", features_kind=feature_kind, test=how)


class _NoProgress:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def set_best(self, *args: Any) -> None:
        pass

    def set_total(self, *args: Any) -> None:
        pass


def _flat_params(param_map: Any) -> Dict[str, Any]:
    """A param map as plain values, layerParams flattened to ``<layer>.<key>`` entries (as the results table has them)."""
    out: Dict[str, Any] = {}
    for param, value in param_map.items():
        value = plain(value, finite=True)
        out.update(value if isinstance(value, dict) else {getattr(param, "name", str(param)): value})
    return out


def _test_accuracy(model: Any, test_df: Any) -> float:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol=model.getLabelCol(),
                                                  predictionCol=model.getPredictionCol())
    return float(evaluator.evaluate(model.transform(test_df)))


def _layer_default(serialized: Mapping[str, Any], name: str) -> Any:
    """The given model's own value of a layer param ``<layer>.<key>``."""
    from sparkdl_lite.core.keras_model import walk

    path, key = name.rsplit(".", 1)
    entry = dict(walk(serialized["config"])).get(path)
    return None if entry is None else entry["config"].get(key)


def _short_params(params: Dict[str, Any]) -> str:
    return ", ".join(tn.param_label(k, v) for k, v in params.items())


def _halving_outputs(tuned: Any, param_maps: List[Any], plan: Dict[str, Any], rows: List[Dict[str, Any]],
                     out_dir: str, data_name: str) -> Dict[str, Any]:
    """Rows fixed for successive halving, the rung tables and plot, and the epochs the search trained."""
    from sparkdl_lite.reports import halving as sr

    folds = plan["folds"] or 1
    rungs = tuned.rungs
    last = {}
    for e in rungs:  # in rung order: the last entry of a param map is its last rung
        last[e["paramMapIndex"]] = e
    seconds: Dict[int, float] = {}  # training seconds of each configuration, over its rungs and folds
    for e in rungs:
        spent = e.get("train_seconds", e.get("seconds"))
        seconds[e["paramMapIndex"]] = seconds.get(e["paramMapIndex"], 0.0) + float(spent or 0.0)
    for r in rows:
        i = r["index"]
        r["best"] = i == tuned.bestIndex  # the best of the last rung, not the best metric at any rung
        r["folds"] = folds
        r["train_seconds"] = seconds.get(i)
        r["diverged"] = bool(last[i].get("error")) and "diverged" in str(last[i].get("error"))
        r["rung"] = int(last[i]["rung"])
        r["rung_epochs"] = int(last[i]["resource"])
    added = sr.resource_added(rungs)
    epochs_trained = int(sum(added[int(e["rung"])] for e in rungs) * folds)
    labels = {r["index"]: _short_params({k: r[k] for k in tn.param_names(rows)}) for r in rows}
    metric = rows[0].get("metric") or "metric"
    plot = sr.rung_plot(rungs, os.path.join(out_dir, "rungs.png"), tuned.bestIndex, f"validation {metric}",
                        resource_name="epochs", labels=labels,
                        title=f"{data_name}: successive halving, {len(param_maps)} configurations, factor "
                              f"{plan['factor']:g} (best: #{tuned.bestIndex})")
    summary = [{"rung": k, "epochs": int(next(e["resource"] for e in rungs if e["rung"] == k)),
                "configurations": sum(1 for e in rungs if e["rung"] == k),
                "best_metric": max((e["metric"] for e in rungs if e["rung"] == k and not e.get("error")
                                    and math.isfinite(e["metric"])), default=None)}
               for k in sorted({e["rung"] for e in rungs})]
    section = "\n".join([
        "## Rungs (successive halving)", "",
        f"Each rung trains its configurations for more epochs (survivors continue from their weights), keeps the "
        f"best 1/{plan['factor']:g} by validation {metric} and stops at {plan['max']} epochs or one configuration.", "",
        sr.rung_summary(rungs, metric_name=metric, resource_name="epochs", labels=labels),
        f"![validation {metric} vs epochs, every configuration]({os.path.basename(plot)})", "",
        f"### Validation {metric} of each configuration at each rung it reached", "",
        sr.rung_metrics_table(rungs, best_index=tuned.bestIndex, metric_name=metric, resource_name="epochs",
                              labels=labels)])
    return {"plot": plot, "section": section, "summary": summary, "epochs_trained": epochs_trained,
            "grid_epochs": len(param_maps) * int(plan["max"]) * folds,
            "trainings": len(rungs) * folds, "search_seconds": tuned.searchSeconds,
            "rung_seconds": sum(seconds.values())}


def _rung0_rows(rows: List[Dict[str, Any]], rungs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows with each configuration's metric at rung 0, where every one has the same epochs."""
    first = {e["paramMapIndex"]: e for e in rungs if e["rung"] == 0}
    out = []
    for r in rows:
        e = first.get(r["index"])
        mean = None if e is None or e.get("error") or not math.isfinite(e["metric"]) else float(e["metric"])
        out.append({**r, "mean": mean, "std": None, "error": None if mean is None else 1.0 - mean})  # accuracy
    return out


# ============================================================================ tuning run: its steps
@dataclass(frozen=True)
class _Search:
    """A run's tuner over its param maps, and how it validates (as the log line and the report say it)."""

    tuner: Any
    param_maps: List[Any]
    parallelism: int
    folds: int
    how: str
    plan: Optional[Dict[str, Any]] = None  # successive halving's checked schedule; None for a grid search

    def trainings(self) -> int:
        """Trainings the tuner runs (param map x fold, over every rung of successive halving)."""
        if self.plan is None:
            return self.folds * len(self.param_maps)
        from sparkdl_lite.search import planned_trainings

        return planned_trainings(len(self.param_maps), self.plan)


@dataclass(frozen=True)
class _Run:
    """What a tuning run's steps read: its inputs, estimator, search, default configuration and cluster."""

    spark: Any
    data: TuneData
    train_rows: int
    test_rows: int
    settings: TuneSettings
    out_dir: str
    est: Any
    search: _Search
    default_values: Dict[str, Any]  # the default configuration's value of each tuned param
    in_grid: bool  # whether the default configuration is one of the param maps
    master: str
    executors: int
    cores: int


@dataclass(frozen=True)
class _Fitted:
    """The tuner's results, its best model and the test accuracy of the best and of the default configuration."""

    tuned: Any
    rows: List[Dict[str, Any]]
    top: Dict[str, Any]
    best_params: Dict[str, Any]
    best_model: Any
    best_acc: float
    default_acc: float
    tuning_seconds: float
    halved: Dict[str, Any]  # successive halving's rung outputs ({} for a grid search)


def _estimator(settings: TuneSettings, data: TuneData) -> Any:
    """The TFClassifier to tune; fails on a grid name that is not one of its params."""
    from sparkdl_lite import classifier as clf

    layer_items = [(n, v) for n, v in settings.grid_items if "." in n]
    if layer_items and settings.model is None:
        raise ValueError(f"--grid: {layer_items[0][0]!r} is a layer param; it needs --model path/model.keras.")
    _check_network(settings, data)
    network = {"model": settings.model} if settings.model is not None else {"architecture": settings.architecture}
    if settings.input_shape is not None:
        network["inputShape"] = list(settings.input_shape)
    est = clf.TFClassifier(featuresCol=data.features_col, labelCol=data.label_col, epochs=settings.epochs,
                           batchSize=settings.batch_size, seed=settings.seed, trainingData=settings.training_data,
                           stagingDir=settings.staging_dir, **network)
    for name, _ in settings.grid_items:
        if "." not in name and not est.hasParam(name):
            raise ValueError(f"--grid: TFClassifier has no param {name!r}.")
    return est


def _check_network(settings: TuneSettings, data: TuneData) -> None:
    """Refuse a cnn on flat features without an input shape before any Spark job, naming the flags."""
    if settings.model is not None or data.features_kind == "image" or settings.input_shape is not None:
        return
    archs = next((v for n, v in settings.grid_items if n == "architecture"), [settings.architecture])
    if isinstance(archs, list) and "cnn" in archs:
        raise ValueError(f"--architecture cnn needs image-shaped features, but --features-col {data.features_col!r} "
                         f"of {data.source} holds flat {data.features_kind}s; give --input-shape HxWxC (e.g. 8x8x1 "
                         f"for 64 values a row) or use --architecture mlp (the default).")


def _serialized(est: Any) -> Optional[Dict[str, Any]]:
    """The Keras config of the estimator's own model (None for a preset architecture)."""
    model = est.getModel()
    if model is None:
        return None
    from sparkdl_lite.core.keras_model import serialize

    return serialize(model)


def _param_maps(est: Any, settings: TuneSettings, serialized: Optional[Dict[str, Any]]) -> List[Any]:
    """One param map per configuration: the given ones (random draws), else the product of the grid's values.

    An unknown layer or key of a layer param fails here, before any Spark job."""
    from sparkdl_lite.core.keras_model import apply_layer_params, expand_layer_params

    if settings.configs is not None:  # given configurations (random draws): one param map each, grid_items' order
        param_maps = []
        for config in settings.configs:
            pm: Dict[Any, Any] = {est.getParam(n): v for n, v in config.items() if "." not in n}
            layer = {n: v for n, v in config.items() if "." in n}
            if layer:
                apply_layer_params(serialized, layer, "--grid")
                pm[est.layerParams] = layer
            param_maps.append(pm)
    else:
        from pyspark.ml.tuning import ParamGridBuilder

        builder = ParamGridBuilder()
        for name, values in settings.grid_items:
            if "." not in name:
                builder.addGrid(est.getParam(name), values)
        layer_items = {n: v for n, v in settings.grid_items if "." in n}
        if layer_items:
            layer_grid = expand_layer_params(layer_items)
            for lp in layer_grid:
                apply_layer_params(serialized, lp, "--grid")
            builder.addGrid(est.layerParams, layer_grid)
        param_maps = builder.build()
    if not param_maps:
        raise ValueError("--grid: no configurations to try.")
    return param_maps


def _search(est: Any, param_maps: List[Any], settings: TuneSettings) -> _Search:
    """The tuner: HalvingSearch (its schedule checked before any Spark job), CrossValidator or TrainValidationSplit."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, TrainValidationSplit

    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol=est.getLabelCol(),
                                                  predictionCol=est.getPredictionCol())
    parallelism = settings.parallelism or len(param_maps)
    if settings.search not in ("grid", "halving"):
        raise ValueError(f"--search must be 'grid' or 'halving'; got {settings.search!r}.")
    common = {"estimator": est, "estimatorParamMaps": param_maps, "evaluator": evaluator, "parallelism": parallelism,
              "seed": settings.seed}
    fraction, folds = settings.fraction, settings.folds
    if settings.search == "halving":
        from sparkdl_lite.search import HalvingSearch

        split = {"numFolds": folds} if folds is not None else {"trainRatio": 1.0 - fraction}
        tuner: Any = HalvingSearch(factor=settings.factor, minResource=settings.min_epochs, maxResource=settings.epochs,
                                   resource="epochs", **common, **split)
        plan = tuner.plan()  # a bad factor or epoch range fails before any Spark job
        how = (f"successive halving (HalvingSearch, factor {plan['factor']:g}, {plan['min']} to {plan['max']} epochs) on "
               + (f"{folds}-fold cross-validation" if folds is not None
                  else f"a train/validation split, {fraction:.0%} held out"))
        return _Search(tuner, param_maps, parallelism, folds or 1, how, plan)
    if folds is not None:
        tuner = CrossValidator(numFolds=folds, collectSubModels=True, **common)
        return _Search(tuner, param_maps, parallelism, folds, f"{folds}-fold cross-validation (CrossValidator)")
    tuner = TrainValidationSplit(trainRatio=1.0 - fraction, collectSubModels=True, **common)
    return _Search(tuner, param_maps, parallelism, 1,
                   f"train/validation split, {fraction:.0%} held out (TrainValidationSplit)")


def _default_configuration(est: Any, grid_items: List[Tuple[str, Any]],
                           serialized: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The default configuration's value of each tuned param.

    A one-value axis is a fixed setting, so it is set on ``est``: the default configuration gets it too."""
    for n, values in grid_items:
        if isinstance(values, list) and len(values) == 1 and "." not in n:  # a Range (--configs) is no fixed setting
            est.set(est.getParam(n), values[0])
    return {n: (_layer_default(serialized, n) if "." in n else plain(est.getOrDefault(n), finite=True))
            for n, _ in grid_items}


def _start_line(run: _Run) -> str:
    data, search = run.data, run.search
    n = len(search.param_maps)
    return (f"sparkdl-lite tune: {data.name}, {run.train_rows} train / {run.test_rows} test rows, "
            f"{n} param maps x {search.folds} fold(s) = {search.folds * n} models"
            + (f" at the first rung, {search.trainings()} in all rungs" if search.plan is not None else "")
            + f", {search.how}; {run.master}, {run.cores} cores")


def _results(run: _Run, tuned: Any) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """The results table, and successive halving's rung outputs ({} for a grid search)."""
    search = run.search
    if search.plan is None:
        return tn.results_table(tuned), {}
    rows = tn.results_table(param_maps=search.param_maps, metrics=tuned.metrics, metric_name="accuracy",
                            larger_is_better=True)
    return rows, _halving_outputs(tuned, search.param_maps, search.plan, rows, run.out_dir, run.data.name)


def _fit_and_score(run: _Run, train_df: Any, test_df: Any, progress_factory: Optional[Callable[..., Any]]) -> _Fitted:
    """Fit the tuner, train the default configuration unless it won, and score both on the test rows."""
    from sparkdl_lite import classifier as clf

    n_models = run.search.trainings() + 1 + 1  # + refit of the best + the default (unless it is the best)
    train_tag = getattr(clf, "TRAIN_JOB_TAG", None)
    progress = (progress_factory or _NoProgress)(run.spark, total=n_models if train_tag else None,
                                                 unit="models" if train_tag else "tasks", job_tag=train_tag or TUNE_TAG)
    with engine.job_tag(run.spark, TUNE_TAG), progress:
        t_fit = time.perf_counter()
        tuned = run.search.tuner.fit(train_df)
        tuning_seconds = time.perf_counter() - t_fit
        rows, halved = _results(run, tuned)
        top = tn.best_row(rows)
        progress.set_best(top.get("mean"), "val acc")
        best_model = tuned.bestModel
        best_params = {n: top.get(n) for n in tn.param_names(rows)}
        if best_params == run.default_values:
            default_model = best_model  # the default won: do not train it twice
            progress.set_total(n_models - 1 if train_tag else None)
        else:
            default_model = run.est.fit(train_df)
        best_acc = _test_accuracy(best_model, test_df)
        default_acc = best_acc if default_model is best_model else _test_accuracy(default_model, test_df)
    return _Fitted(tuned, rows, top, best_params, best_model, best_acc, default_acc, tuning_seconds, halved)


def _timing(run: _Run, fitted: _Fitted) -> Dict[str, Any]:
    """Wall time of the tuning fit, the sequential estimate and speedup, and the epochs a halving search trained."""
    search, halved = run.search, fitted.halved
    refit_seconds = tn.training_info(fitted.best_model).get("seconds")
    sequential = tn.sequential_seconds(fitted.rows, [refit_seconds])
    tuning_seconds = fitted.tuning_seconds
    timing = {"tuning_seconds": tuning_seconds, "sequential_seconds": sequential,
              "speedup": sequential / tuning_seconds if sequential and tuning_seconds > 0 else None,
              "models": (halved["trainings"] if search.plan is not None else search.folds * len(search.param_maps)) + 1,
              "refit_seconds": refit_seconds}
    if search.plan is not None:
        timing.update({
            "sequential_note": "sum of the per-task train seconds of every rung's trainings (each configuration's "
                               "epochs added at that rung, survivors continuing from their weights) plus the refit's: "
                               "an estimate of running the same halving schedule one model after another, without "
                               "the validation scoring between rungs; not a separate run",
            "search_seconds": halved["search_seconds"], "epochs_trained": halved["epochs_trained"],
            "grid_epochs": halved["grid_epochs"]})
    return timing


def _test_summary(run: _Run, fitted: _Fitted) -> Dict[str, Any]:
    """Default vs best on the test rows, and the relative test error reduction."""
    err_d, err_b = 1.0 - fitted.default_acc, 1.0 - fitted.best_acc
    return {"default": {"params": run.default_values, "test_accuracy": fitted.default_acc, "test_error": err_d,
                        "in_grid": run.in_grid},
            "best": {"params": fitted.best_params, "test_accuracy": fitted.best_acc, "test_error": err_b},
            "relative_error_reduction": (err_d - err_b) / err_d if err_d > 0 else None}


def _data_line(run: _Run, num_classes: int) -> str:
    """The report's data line: where the rows come from, how many, the columns and what the model gets."""
    data = run.data
    if data.features_kind == "image":
        scaling = "0-255 pixel values into the model" if run.settings.model_name else "scaled by 1/255 in the graph"
    else:
        shape = run.settings.input_shape
        scaling = "values as stored" + (f", reshaped to {list(shape)} in the graph" if shape else "")
    return (f"{data.source}: {run.train_rows} training rows, {run.test_rows} test rows, {num_classes} classes; test "
            f"rows: {data.test}; features: {data.features}, {scaling}; label: column {data.label_col!r}")


def _setup(run: _Run, fitted: _Fitted) -> Dict[str, str]:
    """The report's set-up lines: command, data, validation, grid, fixed params, default configuration, Spark."""
    settings, spark, plan = run.settings, run.spark, run.search.plan
    n = len(run.search.param_maps)
    tuned_names = {name for name, _ in settings.grid_items}
    network = ("model", os.path.basename(settings.model_name)) if settings.model_name else ("architecture", settings.architecture)
    fixed = {k: v for k, v in (network, ("inputShape", settings.input_shape), ("epochs", settings.epochs),
                               ("batchSize", settings.batch_size), ("seed", settings.seed),
                               ("trainingData", settings.training_data), ("stagingDir", settings.staging_dir))
             if k not in tuned_names and v is not None}
    setup = {
        "command": f"`{settings.command}`",
        "data": _data_line(run, fitted.best_model.numClasses),
        "validation": run.search.how,
        "grid": (f"{n} random configurations (seed {settings.seed}) drawn from: "
                 if settings.configs is not None else f"{n} param maps: ")
                + "; ".join(f"{name} = {v}" for name, v in settings.grid_items),
        "fixed params": ", ".join(f"{k}={v}" for k, v in fixed.items()) + " (other params: TFClassifier defaults)",
        "default configuration": ", ".join(f"{k}={v}" for k, v in run.default_values.items())
                                 + (" (in the grid)" if run.in_grid else " (not in the grid; trained separately)"),
        "Spark": f"master {run.master}{' (Spark Connect)' if engine.is_connect(spark) else ''}, {run.executors} "
                 f"executor(s), {run.cores} cores, parallelism {run.search.parallelism}, "
                 f"Spark {spark.version}, sparkdl_lite {__version__}",
    }
    if plan is not None:
        setup["search"] = (f"successive halving, factor {plan['factor']:g}: rung k trains the survivors to "
                           f"min({plan['max']}, {plan['min']} x {plan['factor']:g}^k) epochs; the best is refit on all "
                           f"training rows at {plan['max']} epochs")
    return setup


def _sensitivity_plot(run: _Run, fitted: _Fitted) -> str:
    """``sensitivity.png``: every configuration at rung 0 for successive halving, else every param map."""
    path, name, plan = os.path.join(run.out_dir, "sensitivity.png"), run.data.name, run.search.plan
    if plan is not None:
        return tn.sensitivity_plot(_rung0_rows(fitted.rows, fitted.tuned.rungs), path,
                                   title=f"{name}: validation error after {plan['min']} epoch(s), every "
                                         f"configuration (rung 0 of successive halving)")
    return tn.sensitivity_plot(fitted.rows, path,
                               title=f"{name}: validation error vs learning rate ({run.search.how.split(' (')[0]})")


def _write_files(run: _Run, fitted: _Fitted, test: Dict[str, Any], timing: Dict[str, Any], setup: Dict[str, str],
                 plot_path: str) -> Dict[str, Any]:
    """``results.csv``, ``results.json``, ``rungs.csv`` (successive halving) and ``report.md``; the search summary."""
    out_dir, plan, tuned, rows = run.out_dir, run.search.plan, fitted.tuned, fitted.rows
    extra: Dict[str, Any] = {"test": test, "timing": timing, "setup": {k: v.strip("`") for k, v in setup.items()},
                             "data": {**asdict(run.data), "train_rows": run.train_rows, "test_rows": run.test_rows,
                                      "num_classes": fitted.best_model.numClasses}}
    search: Dict[str, Any] = {"kind": run.settings.search}
    if plan is not None:
        search.update({"factor": plan["factor"], "min_epochs": plan["min"], "max_epochs": plan["max"],
                       "best_index": tuned.bestIndex, "rung_summary": fitted.halved["summary"], "rungs": tuned.rungs,
                       "plot": os.path.basename(fitted.halved["plot"])})
        extra["search"] = search
        _write_rungs_csv(os.path.join(out_dir, "rungs.csv"), tuned.rungs, rows)
    tn.write_results(rows, out_dir, extra=extra)
    tn.write_report(os.path.join(out_dir, "report.md"), rows, default=test["default"], best=test["best"],
                    timing=timing, setup=setup, plot=os.path.basename(plot_path),
                    title=f"sparkdl-lite tuning report: {run.data.name}",
                    sections=[fitted.halved["section"]] if plan is not None else ())
    return search


def tune(spark: Any, train: Any, test: Any, data: TuneData, settings: TuneSettings, *,
         progress_factory: Optional[Callable[..., Any]] = None, log: Callable[[str], None] = lambda text: None,
         started: Optional[float] = None) -> Dict[str, Any]:
    """Tune a TFClassifier on the ``train`` DataFrame, score it on ``test``, and write the report.

    Runs Spark ML's CrossValidator or TrainValidationSplit over the grid (one Spark task per
    model), refits the best, trains the default configuration when it is not the best, scores both
    on the test rows, and writes ``best_model/``, ``results.csv``, ``results.json``,
    ``sensitivity.png`` and ``report.md`` into ``settings.out_dir``. The DataFrames go to the
    estimator as they are (``data.features_col``, ``data.label_col``), so the rows reach the
    training tasks by the classifier's own data path (``settings.training_data``): no collect here.
    :func:`numpy_frames` and :func:`read_frames` make them and ``data``.

    Parameters
    ----------
    spark : SparkSession
    train, test : DataFrame
        Training rows (the tuner splits them for validation) and test rows.
    data : TuneData
        What the rows are, for the log line and the report.
    settings : TuneSettings

    Returns
    -------
    dict
        ``best_params``, ``top`` (the best results row), ``test`` (default vs best), ``timing``,
        ``cores``, ``out_dir``.

    .. versionadded:: 0.2.0
    """
    t_start = time.perf_counter() if started is None else started  # the run's wall time counts from here
    out_dir = os.path.abspath(settings.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    est = _estimator(settings, data)
    serialized = _serialized(est)
    search = _search(est, _param_maps(est, settings, serialized), settings)
    default_values = _default_configuration(est, settings.grid_items, serialized)
    executors, cores = engine.cluster_shape(spark)
    with engine.job_tag(spark, TUNE_TAG):
        train_rows, test_rows = train.count(), test.count()  # aggregates on the executors: no row to the driver
    run = _Run(spark, data, train_rows, test_rows, settings, out_dir, est, search, default_values,
               in_grid=any(_flat_params(pm) == default_values for pm in search.param_maps),
               master=engine.master(spark), executors=executors, cores=cores)
    log(_start_line(run))

    fitted = _fit_and_score(run, train, test, progress_factory)
    fitted.best_model.write().overwrite().save(os.path.join(out_dir, "best_model"))
    timing = _timing(run, fitted)
    summary = _test_summary(run, fitted)
    setup = _setup(run, fitted)
    plot_path = _sensitivity_plot(run, fitted)
    timing["total_seconds"] = time.perf_counter() - t_start
    search_summary = _write_files(run, fitted, summary, timing, setup, plot_path)
    return {"best_params": fitted.best_params, "top": fitted.top, "test": summary, "timing": timing, "cores": cores,
            "out_dir": out_dir, "search": search_summary}


def _write_rungs_csv(path: str, rungs: List[Dict[str, Any]], rows: List[Dict[str, Any]]) -> None:
    """``rungs.csv``: one line per configuration per rung (rung, epochs, configuration, its params, metric, seconds, error)."""
    import csv
    import json

    names = tn.param_names(rows)
    params = {r["index"]: r for r in rows}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["rung", "epochs", "index"] + names + ["metric", "seconds", "error"])
        for e in rungs:
            r = params[e["paramMapIndex"]]
            metric = e.get("metric")
            writer.writerow([e["rung"], e["resource"], e["paramMapIndex"]]
                            + [json.dumps(r.get(n)) if isinstance(r.get(n), list) else r.get(n) for n in names]
                            + ["" if metric is None or not math.isfinite(metric) else metric,
                               "" if e.get("seconds") is None else e["seconds"], e.get("error") or ""])


# ============================================================================ labeling
_KINDS = {"TFClassificationModel": "classifier", "PipelineModel": "pipeline", "TFImageTransformer": "image_transformer"}


def _load_model(spark: Any, path: str) -> Tuple[str, Any]:
    """Detect the saved stage's class from its metadata and load it with that class."""
    from pyspark.ml.util import DefaultParamsReader

    try:
        metadata = DefaultParamsReader.loadMetadata(path, spark)
    except Exception as exc:  # noqa: BLE001 - Spark raises Py4J / analysis errors for a missing path
        raise FileNotFoundError(f"--model {path!r} is not a saved Spark ML stage (no readable metadata): "
                         f"{str(exc).splitlines()[0]}") from None
    cls_name = str(metadata.get("class", ""))
    kind = _KINDS.get(cls_name.rsplit(".", 1)[-1])
    if kind == "classifier":
        from sparkdl_lite.classifier import TFClassificationModel

        return kind, TFClassificationModel.load(path)
    if kind == "pipeline":
        from pyspark.ml import PipelineModel

        return kind, PipelineModel.load(path)
    if kind == "image_transformer":
        from sparkdl_lite.transformers import TFImageTransformer

        return kind, TFImageTransformer.load(path)
    raise ValueError(f"--model {path!r} holds a {cls_name!r}; expected a TFClassificationModel, a PipelineModel "
                     f"or a TFImageTransformer.")


def _labeled(kind: str, model: Any, images: Any) -> Any:
    """origin, prediction, probability (array<float>), error: one row per input row."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    origin = F.col("image.origin").alias("origin")
    if kind == "image_transformer":
        # The transformer nulls bad images itself and says why in <outputCol>_error.
        model = model.copy({model.errorMode: "null", model.outputMode: "array"})
        col = model.getOutputCol()
        src = images if model.getInputCol() == "image" else images.withColumn(model.getInputCol(), F.col("image"))
        out = model.transform(src)
        scores = F.col(col)
        pred = F.when(scores.isNotNull(), (F.array_position(scores, F.array_max(scores)) - 1).cast("double"))
        return out.select(origin, pred.alias("prediction"), scores.cast(T.ArrayType(T.FloatType())).alias("probability"),
                          F.col(f"{col}_error").alias("error"))
    # Models that cannot take invalid images: send only the valid ones and union the rest back.
    valid = F.col("image").isNotNull() & (F.col("image.height") > 0) & (F.col("image.width") > 0)
    if kind == "classifier":
        features = model.getFeaturesCol()
        pred_col, prob_col = model.getPredictionCol(), model.getProbabilityCol()
    else:
        stages = [s for s in model.stages if s.hasParam("predictionCol")]
        features = "image"
        pred_col = stages[-1].getOrDefault("predictionCol") if stages else "prediction"
        prob_col = stages[-1].getOrDefault("probabilityCol") if stages and stages[-1].hasParam("probabilityCol") else "probability"
    good = images.filter(valid)
    if features != "image":
        good = good.withColumn(features, F.col("image"))
    scored = model.transform(good)
    if prob_col in scored.columns:
        dt = scored.schema[prob_col].dataType
        prob = vector_to_array(F.col(prob_col), "float32") if not isinstance(dt, T.ArrayType) else F.col(prob_col).cast(T.ArrayType(T.FloatType()))
    else:
        prob = F.lit(None).cast(T.ArrayType(T.FloatType()))
    ok = scored.select(origin, F.col(pred_col).cast("double").alias("prediction"), prob.alias("probability"),
                       F.lit(None).cast("string").alias("error"))
    reason = F.when(F.col("image").isNull(), F.lit("no image (null row)")).otherwise(
        F.lit("invalid image: Spark's image source could not decode the file (height -1, no data: an empty, truncated or unsupported file)"))
    bad = images.filter(~valid | valid.isNull()).select(
        origin, F.lit(None).cast("double").alias("prediction"), F.lit(None).cast(T.ArrayType(T.FloatType())).alias("probability"),
        reason.alias("error"))
    return ok.unionByName(bad)


def label_images(spark: Any, model_path: str, images_path: str, out_path: str, *,
                 class_names: Optional[Sequence[str]] = None, recursive: bool = False,
                 partitions: Optional[int] = None, progress: Optional[Callable[..., Any]] = None) -> Dict[str, Any]:
    """Label every image file under ``images_path`` with a saved model; write parquet to ``out_path``.

    The model is a saved TFClassificationModel, PipelineModel or TFImageTransformer. Every input
    row gives one output row: ``origin, prediction, probability, error`` (plus ``label_name`` with
    ``class_names``); an image that cannot be decoded or scored gets nulls and the reason.

    Returns
    -------
    dict
        ``rows_in``, ``rows_out``, ``errors`` (rows with an error), ``seconds`` (the write).

    .. versionadded:: 0.2.0
    """
    from pyspark.sql import functions as F

    from sparkdl_lite.images import read_images

    kind, model = _load_model(spark, model_path)
    try:
        images = read_images(spark, images_path, recursive=recursive)
    except Exception as exc:  # noqa: BLE001 - an AnalysisException for a missing path
        raise FileNotFoundError(f"--images {images_path!r}: {str(exc).splitlines()[0]}") from None
    rows_in = images.count()
    if partitions:
        images = images.repartition(partitions)
    else:
        # The file source packs ~32 small images per partition; each partition is a task with its own
        # Python/Arrow round trip, so merge them to ~4,096 images a task, but keep every core busy.
        n = engine.num_partitions(images)
        target = max(engine.default_parallelism(spark), -(-rows_in // 4096))
        if n is None or target < n:  # Connect does not tell the partition count: coalesce never grows it
            images = images.coalesce(target)
    out = _labeled(kind, model, images)
    if class_names:
        lookup = F.array(*[F.lit(n) for n in class_names])
        idx = F.col("prediction").cast("int")
        out = out.withColumn("label_name", F.when((idx >= 0) & (idx < len(class_names)), F.get(lookup, idx)))
    with engine.job_tag(spark, LABEL_TAG), \
            (progress or _NoProgress)(spark, unit="tasks", job_tag=LABEL_TAG, show_best=False):
        t0 = time.perf_counter()
        out.write.mode("overwrite").parquet(out_path)
        seconds = time.perf_counter() - t0
    written = spark.read.parquet(out_path)
    return {"rows_in": rows_in, "rows_out": written.count(), "errors": written.filter(F.col("error").isNotNull()).count(),
            "seconds": seconds}
