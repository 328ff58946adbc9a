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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from sparkdl_lite import __version__
from sparkdl_lite.core.jsonable import plain
from sparkdl_lite.core.training import HYPERPARAMS  # the one table of the fixed hyperparameters
from sparkdl_lite.reports import tuning as tn
from sparkdl_lite.runner import engine

__all__ = ["TuneSettings", "tune", "label_images", "TUNE_TAG", "LABEL_TAG"]

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
    default) to ``epochs``).
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

    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol="label",
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
    data: Any
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


def _estimator(settings: TuneSettings) -> Any:
    """The TFClassifier to tune; fails on a grid name that is not one of its params."""
    from sparkdl_lite import classifier as clf

    layer_items = [(n, v) for n, v in settings.grid_items if "." in n]
    if layer_items and settings.model is None:
        raise ValueError(f"--grid: {layer_items[0][0]!r} is a layer param; it needs --model path/model.keras.")
    network = {"model": settings.model} if settings.model is not None else {"architecture": settings.architecture}
    est = clf.TFClassifier(featuresCol="image", labelCol="label", epochs=settings.epochs,
                           batchSize=settings.batch_size, seed=settings.seed, **network)
    for name, _ in settings.grid_items:
        if "." not in name and not est.hasParam(name):
            raise ValueError(f"--grid: TFClassifier has no param {name!r}.")
    return est


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

    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol="label", predictionCol="prediction")
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
    return (f"sparkdl-lite tune: {data.name}, {len(data.y_train)} train / {len(data.y_test)} test rows, "
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


def _setup(run: _Run) -> Dict[str, str]:
    """The report's set-up lines: command, data, validation, grid, fixed params, default configuration, Spark."""
    settings, data, spark, plan = run.settings, run.data, run.spark, run.search.plan
    n = len(run.search.param_maps)
    tuned_names = {name for name, _ in settings.grid_items}
    network = ("model", os.path.basename(settings.model_name)) if settings.model_name else ("architecture", settings.architecture)
    fixed = {k: v for k, v in (network, ("epochs", settings.epochs),
                               ("batchSize", settings.batch_size), ("seed", settings.seed)) if k not in tuned_names}
    setup = {
        "command": f"`{settings.command}`",
        "data": f"{data.name}: {len(data.y_train)} training rows, {len(data.y_test)} test rows, "
                f"{data.num_classes} classes; features: 28x28 uint8 image structs, "
                + ("0-255 pixel values into the model" if settings.model_name else "scaled by 1/255 in the graph"),
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
    extra: Dict[str, Any] = {"test": test, "timing": timing, "setup": {k: v.strip("`") for k, v in setup.items()}}
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


def tune(spark: Any, data: Any, settings: TuneSettings, *, progress_factory: Optional[Callable[..., Any]] = None,
         log: Callable[[str], None] = lambda text: None, started: Optional[float] = None) -> Dict[str, Any]:
    """Tune a TFClassifier on ``data`` (a :class:`sparkdl_lite.core.datasets.Dataset`) and write the report.

    Runs Spark ML's CrossValidator or TrainValidationSplit over the grid (one Spark task per
    model), refits the best, trains the default configuration when it is not the best, scores both
    on the test rows, and writes ``best_model/``, ``results.csv``, ``results.json``,
    ``sensitivity.png`` and ``report.md`` into ``settings.out_dir``.

    Returns
    -------
    dict
        ``best_params``, ``top`` (the best results row), ``test`` (default vs best), ``timing``,
        ``cores``, ``out_dir``.

    .. versionadded:: 0.2.0
    """
    t_start = time.perf_counter() if started is None else started  # the run's wall time counts from here
    from sparkdl_lite.images import images_from_numpy

    out_dir = os.path.abspath(settings.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    est = _estimator(settings)
    serialized = _serialized(est)
    search = _search(est, _param_maps(est, settings, serialized), settings)
    train_df = images_from_numpy(spark, data.x_train, data.y_train).cache()
    test_df = images_from_numpy(spark, data.x_test, data.y_test, origin_prefix="test://").cache()
    default_values = _default_configuration(est, settings.grid_items, serialized)
    executors, cores = engine.cluster_shape(spark)
    run = _Run(spark, data, settings, out_dir, est, search, default_values,
               in_grid=any(_flat_params(pm) == default_values for pm in search.param_maps),
               master=engine.master(spark), executors=executors, cores=cores)
    log(_start_line(run))

    fitted = _fit_and_score(run, train_df, test_df, progress_factory)
    fitted.best_model.write().overwrite().save(os.path.join(out_dir, "best_model"))
    timing = _timing(run, fitted)
    test = _test_summary(run, fitted)
    setup = _setup(run)
    plot_path = _sensitivity_plot(run, fitted)
    timing["total_seconds"] = time.perf_counter() - t_start
    search_summary = _write_files(run, fitted, test, timing, setup, plot_path)
    return {"best_params": fitted.best_params, "top": fitted.top, "test": test, "timing": timing, "cores": cores,
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
