"""Tuning report: the table of param maps and metrics, the sensitivity plot, default vs best.

Everything here reads a fitted ``CrossValidatorModel`` / ``TrainValidationSplitModel`` (or plain
lists handed in) and writes plain files: ``results.csv``, ``results.json``, ``sensitivity.png``
and ``report.md``. :class:`SparkProgress` is the driver-side progress line of long Spark runs.
Spark layer, thin: no TensorFlow import; matplotlib is imported only to draw (a bare ``Figure`` rendered
by Agg, never pyplot, so a notebook's backend is left alone).
"""
from __future__ import annotations

import csv
import json
import math
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from sparkdl_lite.core.jsonable import number, plain

__all__ = ["results_table", "write_results", "sensitivity_plot", "write_report", "best_row",
           "sequential_seconds", "training_info", "format_seconds", "RESERVED_FIELDS"]

#: Row keys that are not param names.
RESERVED_FIELDS = ("index", "metric", "mean", "std", "error", "folds", "train_seconds", "executor",
                   "diverged", "best", "rung", "rung_epochs")  # the last two: successive halving's rows only
# Metrics in [0, 1] where larger is better: their "error" is 1 - metric.
_ONE_MINUS = {"accuracy", "f1", "weightedPrecision", "weightedRecall", "weightedTruePositiveRate",
              "weightedFMeasure", "truePositiveRateByLabel", "precisionByLabel", "recallByLabel",
              "fMeasureByLabel", "areaUnderROC", "areaUnderPR"}
_SHORT_NAMES = {"hiddenLayers": "hidden", "convFilters": "conv", "learningRate": "lr", "batchSize": "batch"}


# ============================================================================ table
def training_info(model: Any) -> Dict[str, Any]:
    """``model.trainingInfo`` (or that of the last stage of a ``PipelineModel``); ``{}`` if none."""
    info = getattr(model, "trainingInfo", None)
    if info is None and hasattr(model, "stages"):
        for stage in reversed(list(model.stages)):
            info = getattr(stage, "trainingInfo", None)
            if info is not None:
                break
    return dict(info) if isinstance(info, Mapping) else {}


def _from_tuning_model(model: Any) -> Dict[str, Any]:
    """Param maps, metrics and sub-models of a fitted CrossValidatorModel / TrainValidationSplitModel."""
    out: Dict[str, Any] = {"param_maps": model.getEstimatorParamMaps()}
    if hasattr(model, "avgMetrics"):
        out["metrics"] = list(model.avgMetrics)
        out["std_metrics"] = list(getattr(model, "stdMetrics", None) or []) or None
        subs = getattr(model, "subModels", None)
        out["sub_models"] = subs if subs else None
        out["folds"] = int(model.getOrDefault("numFolds")) if model.hasParam("numFolds") and model.isDefined("numFolds") else None
    else:
        out["folds"] = 1
        out["metrics"] = list(model.validationMetrics)
        out["std_metrics"] = None
        subs = getattr(model, "subModels", None)
        out["sub_models"] = [list(subs)] if subs else None  # one "fold"
    evaluator = model.getEvaluator()
    out["metric_name"] = evaluator.getMetricName() if hasattr(evaluator, "getMetricName") else type(evaluator).__name__
    out["larger_is_better"] = bool(evaluator.isLargerBetter())
    return out


def results_table(model: Any = None, *, param_maps: Optional[Sequence[Mapping[Any, Any]]] = None,
                  metrics: Optional[Sequence[float]] = None, std_metrics: Optional[Sequence[float]] = None,
                  sub_models: Optional[Sequence[Sequence[Any]]] = None,
                  train_seconds: Optional[Sequence[float]] = None, executors: Optional[Sequence[str]] = None,
                  diverged: Optional[Sequence[bool]] = None, metric_name: Optional[str] = None,
                  larger_is_better: Optional[bool] = None) -> List[Dict[str, Any]]:
    """One JSON-friendly dict per param map of a tuning run.

    Parameters
    ----------
    model : CrossValidatorModel or TrainValidationSplitModel, optional
        A fitted tuning model. Its param maps, ``avgMetrics`` / ``validationMetrics``,
        ``stdMetrics``, evaluator and, when fitted with ``collectSubModels=True``, the sub-models'
        ``trainingInfo`` (seconds, executor, divergence) fill the table.
    param_maps, metrics, std_metrics, sub_models, metric_name, larger_is_better
        Given explicitly, they replace what ``model`` holds (``model`` may then be omitted).
        ``sub_models[fold][i]`` is the model of param map ``i`` in that fold.
    train_seconds, executors, diverged : sequence, optional
        Per param map: training seconds (summed over folds), executor id(s), whether the loss
        diverged; they replace what the sub-models report.

    Returns
    -------
    list of dict
        Keys: ``index``, one key per tuned param (its name, e.g. ``learningRate``, with a plain
        value such as ``0.001`` or ``[256]``), ``metric`` (the evaluator's metric name), ``mean``,
        ``std`` (``None`` with one fold), ``error`` (``1 - mean`` for accuracy-like metrics, the
        metric itself for smaller-is-better ones), ``folds``, ``train_seconds``, ``executor``
        (comma-joined ids), ``diverged`` and ``best`` (``True`` on the param map the tuner picked).

    Raises
    ------
    ValueError
        When there are no param maps or the lengths disagree.

    Examples
    --------
    >>> from sparkdl_lite.classifier import TFClassifier
    >>> clf = TFClassifier()
    >>> rows = results_table(param_maps=[{clf.learningRate: 1e-3}, {clf.learningRate: 1e-2}], metrics=[0.75, 0.5],
    ...                      metric_name="accuracy", larger_is_better=True)
    >>> [(r["learningRate"], r["error"], r["best"]) for r in rows]
    [(0.001, 0.25, True), (0.01, 0.5, False)]

    .. versionadded:: 0.1.0
    """
    found: Dict[str, Any] = _from_tuning_model(model) if model is not None else {}
    param_maps = list(param_maps if param_maps is not None else found.get("param_maps") or [])
    metrics = list(metrics if metrics is not None else found.get("metrics") or [])
    std_metrics = std_metrics if std_metrics is not None else found.get("std_metrics")
    sub_models = sub_models if sub_models is not None else found.get("sub_models")
    metric_name = metric_name or found.get("metric_name") or "metric"
    if larger_is_better is None:
        larger_is_better = found.get("larger_is_better", True)
    if not param_maps:
        raise ValueError("results_table: no param maps; pass a fitted CrossValidatorModel / TrainValidationSplitModel or param_maps.")
    if len(metrics) != len(param_maps):
        raise ValueError(f"results_table: {len(metrics)} metrics for {len(param_maps)} param maps; they must match.")
    for name, seq in (("std_metrics", std_metrics), ("train_seconds", train_seconds), ("executors", executors),
                      ("diverged", diverged)):
        if seq is not None and len(seq) != len(param_maps):
            raise ValueError(f"results_table: {name} has {len(seq)} entries for {len(param_maps)} param maps.")
    folds = len(sub_models) if sub_models else (found.get("folds") or (1 if std_metrics is None else None))
    best = best_index(metrics, larger_is_better)
    rows = []
    for i, pm in enumerate(param_maps):
        row: Dict[str, Any] = {"index": i}
        for param, value in pm.items():
            if isinstance(value, Mapping):  # layerParams: one column per "<layer>.<key>"
                row.update({str(k): plain(v, finite=True) for k, v in value.items()})
            else:
                row[getattr(param, "name", str(param))] = plain(value, finite=True)
        infos = [training_info(fold[i]) for fold in (sub_models or []) if fold is not None and fold[i] is not None]
        seconds = [float(x["seconds"]) for x in infos if x.get("seconds") is not None]
        execs = sorted({str(x["executorId"]) for x in infos if x.get("executorId") is not None})
        mean = number(metrics[i])
        std = number(std_metrics[i]) if std_metrics is not None else None
        row.update({
            "metric": metric_name,
            "mean": mean,
            "std": std,
            "error": None if mean is None else (1.0 - mean if metric_name in _ONE_MINUS else
                                                 (mean if not larger_is_better else None)),
            "folds": folds if folds is not None else len(infos) or None,
            "train_seconds": float(train_seconds[i]) if train_seconds is not None else (sum(seconds) if seconds else None),
            "executor": str(executors[i]) if executors is not None else ",".join(execs) or None,
            "diverged": bool(diverged[i]) if diverged is not None else any(bool(x.get("diverged")) for x in infos),
            "best": i == best,
        })
        rows.append(row)
    return rows


def best_index(metrics: Sequence[float], larger_is_better: bool = True) -> int:
    """The index a Spark tuner picks: ``np.argmax`` (or ``argmin``) of the metrics, first on ties."""
    import numpy as np

    values = np.asarray([np.nan if m is None else m for m in metrics], dtype=float)
    return int(np.argmax(values) if larger_is_better else np.argmin(values))


def best_row(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The row flagged ``best`` (the first row when none is)."""
    for row in rows:
        if row.get("best"):
            return dict(row)
    return dict(rows[0])


def param_names(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """The tuned param names of a results table, in first-seen order."""
    names: List[str] = []
    for row in rows:
        for key in row:
            if key not in RESERVED_FIELDS and key not in names:
                names.append(key)
    return names


def sequential_seconds(rows: Sequence[Mapping[str, Any]], extra: Iterable[Optional[float]] = ()) -> Optional[float]:
    """Sum of per-model train seconds (plus ``extra``, e.g. the refit): the one-after-another estimate."""
    values = [r.get("train_seconds") for r in rows] + list(extra)
    known = [float(v) for v in values if v is not None]
    return sum(known) if known else None


# ============================================================================ files
def _json_default(value: Any) -> Any:
    return plain(value, finite=True)


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return "" if value is None else value


def write_results(rows: Sequence[Mapping[str, Any]], out_dir: str, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    """Write ``results.csv`` and ``results.json`` into ``out_dir`` (created if needed).

    ``results.json`` holds ``{"metric", "best_index", "best", "rows", **extra}``; in
    ``results.csv`` list values are JSON (``[256, 128]``) and missing values are empty. A
    reserved column that no row has (``rung``, ``rung_epochs`` outside successive halving) is left out.

    Returns
    -------
    dict
        ``{"csv": path, "json": path}``.

    .. versionadded:: 0.1.0
    """
    if not rows:
        raise ValueError("write_results: no rows to write.")
    os.makedirs(out_dir, exist_ok=True)
    names = param_names(rows)
    fields = ["index"] + names + [f for f in RESERVED_FIELDS if f != "index" and any(f in r for r in rows)]
    csv_path = os.path.join(out_dir, "results.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in fields})
    best = best_row(rows)
    doc = {"metric": best.get("metric"), "params": names, "best_index": best["index"], "best": best,
           "rows": [dict(r) for r in rows]}
    doc.update(dict(extra or {}))
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, allow_nan=False, default=_json_default)
        f.write("\n")
    return {"csv": csv_path, "json": json_path}


# ============================================================================ plot
def param_label(name: str, value: Any) -> str:
    """``learningRate``, ``0.001`` -> ``"lr=0.001"``: a param value as plot legends and rung tables show it."""
    short = _SHORT_NAMES.get(name, name)
    if isinstance(value, list):
        return f"{short}=[{', '.join(str(v) for v in value)}]"
    if isinstance(value, float):
        return f"{short}={value:g}"
    return f"{short}={value}"


def _sort_key(value: Any) -> Any:
    if isinstance(value, list):
        return (0, len(value), value)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def _dodge(x: Any, shift: float, log_x: bool) -> Any:
    if not shift or not isinstance(x, (int, float)):
        return x
    return x * 10 ** shift if log_x else x + shift


def sensitivity_plot(rows: Sequence[Mapping[str, Any]], path: str, metric_name: Optional[str] = None, *,
                     x_param: Optional[str] = None, title: Optional[str] = None) -> str:
    """Draw the error of each param map against the learning rate, one line per layer width.

    The x axis is ``learningRate`` on a log scale (or ``x_param``, logarithmic when its values
    span 10x or more), the y axis each row's ``error`` (``mean`` for metrics without one) with
    ``std`` as error bars. Lines group the param maps by the other tuned params (``hidden=[256]``);
    when ``architecture`` was tuned, each architecture gets its own panel. The picked param map is starred and diverged
    ones are crossed.

    Parameters
    ----------
    rows : list of dict
        :func:`results_table` rows.
    path : str
        The PNG to write.
    metric_name : str, optional
        The y axis label, e.g. ``"validation error"`` (default: derived from the rows' metric).
    x_param : str, optional
        The param on the x axis (default ``learningRate``, else the first numeric tuned param).
    title : str, optional

    Returns
    -------
    str
        ``path``.

    .. versionadded:: 0.1.0
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and global state stay as they are

    if not rows:
        raise ValueError("sensitivity_plot: no rows to plot.")
    layout = _plot_layout(rows, metric_name, x_param)
    fig = Figure(figsize=(6.4 * len(layout.panels) + 0.8, 4.8))
    axes = fig.subplots(1, len(layout.panels), sharey=True, squeeze=False)
    colors = _line_colors(rows, layout.line_keys, matplotlib.colormaps["viridis"])
    for ax, panel in zip(axes[0], layout.panels, strict=True):
        _draw_panel(ax, [r for r in rows if layout.panel_key is None or r.get(layout.panel_key) == panel], layout, colors)
        _style_panel(ax, panel, layout, rows[0].get("folds"))
    axes[0][0].set_ylabel(layout.ylabel)
    if any(r.get("diverged") for r in rows):
        axes[0][-1].plot([], [], marker="x", markeredgewidth=2.5, color="crimson", linestyle="none", label="diverged")
        axes[0][-1].legend(fontsize=9, loc="best")
    if title is None:
        title = _default_title(rows, layout)
    fig.suptitle("\n".join(textwrap.wrap(title, width=int(78 * len(layout.panels) ** 0.8))), fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)  # Agg, from the .png suffix
    return path


@dataclass(frozen=True)
class _PlotLayout:
    """Where a sensitivity plot puts the rows: the y values, the x param, the panels and the lines of each panel."""

    ykey: str
    ylabel: str
    x_param: Optional[str]
    panel_key: Optional[str]
    panels: List[Any]
    line_keys: List[str]
    xs: List[Any]  # every row's x value
    log_x: bool
    has_std: bool


def _plot_layout(rows: Sequence[Mapping[str, Any]], metric_name: Optional[str], x_param: Optional[str]) -> _PlotLayout:
    names = param_names(rows)
    use_error = all(r.get("error") is not None or r.get("mean") is None for r in rows)
    metric = rows[0].get("metric") or "metric"
    ylabel = metric_name or (f"validation error (1 - {metric})" if use_error and metric in _ONE_MINUS else f"validation {metric}")
    if x_param is None:
        numeric = [n for n in names if all(isinstance(r.get(n), (int, float)) and not isinstance(r.get(n), bool)
                                           for r in rows)]
        x_param = "learningRate" if "learningRate" in names else (numeric[0] if numeric else None)
    if x_param is not None and x_param not in names:
        raise ValueError(f"sensitivity_plot: x_param {x_param!r} is not a tuned param; tuned params: {names}.")
    panel_key = "architecture" if "architecture" in names and len({str(r.get("architecture")) for r in rows}) > 1 else None
    panels = sorted({r.get(panel_key) for r in rows}, key=_sort_key) if panel_key else [None]
    line_keys = [n for n in names if n not in (x_param, panel_key)
                 and len({json.dumps(r.get(n), default=str) for r in rows}) > 1]
    xs = [r.get(x_param) for r in rows] if x_param else list(range(len(rows)))
    positive = [x for x in xs if isinstance(x, (int, float)) and x > 0]
    # Learning rates are always drawn on a log axis (their grids are geometric); other params when they span 10x.
    log_x = bool(positive) and len(positive) == len(xs) and len(set(positive)) > 1 and (
        x_param == "learningRate" or max(positive) / min(positive) >= 10)
    return _PlotLayout(ykey="error" if use_error else "mean", ylabel=ylabel, x_param=x_param, panel_key=panel_key,
                       panels=panels, line_keys=line_keys, xs=xs, log_x=log_x, has_std=any(r.get("std") for r in rows))


def _line_key(row: Mapping[str, Any], line_keys: Sequence[str]) -> tuple:
    return tuple(json.dumps(row.get(k), default=str) for k in line_keys)


def _by_line_values(key: tuple) -> List[Any]:
    return [_sort_key(json.loads(v)) for v in key]


def _line_colors(rows: Sequence[Mapping[str, Any]], line_keys: Sequence[str], cmap: Any) -> Dict[tuple, Any]:
    """One color per line, the same line in every panel."""
    groups = sorted({_line_key(r, line_keys) for r in rows}, key=_by_line_values)
    return {g: cmap(0.1 + 0.75 * i / max(1, len(groups) - 1)) for i, g in enumerate(groups)}


def _draw_panel(ax: Any, sub: Sequence[Mapping[str, Any]], layout: _PlotLayout, colors: Dict[tuple, Any]) -> None:
    """The lines of one panel, their error bars and the diverged / best markers."""
    x_param = layout.x_param
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for r in sub:
        groups.setdefault(_line_key(r, layout.line_keys), []).append(r)
    ordered = sorted(groups, key=_by_line_values)
    for j, gkey in enumerate(ordered):
        members = sorted(groups[gkey], key=lambda r: (r.get(x_param) if x_param else r["index"]))
        # Nudge each line sideways a little so error bars at the same x do not hide each other.
        shift = (j - (len(ordered) - 1) / 2) * (0.025 if layout.has_std else 0.0)
        pts = [(_dodge(r.get(x_param) if x_param else r["index"], shift, layout.log_x), r.get(layout.ykey),
                r.get("std") or 0.0, r) for r in members]
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        label = ", ".join(param_label(k, json.loads(v)) for k, v in zip(layout.line_keys, gkey, strict=True)) or "all param maps"
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                    markersize=5, linewidth=1.8, capsize=3, color=colors[gkey], label=label)
        for x, y, _, r in pts:
            if r.get("diverged"):
                ax.plot([x], [y], marker="x", markersize=12, markeredgewidth=2.5, color="crimson", linestyle="none",
                        zorder=6)
            if r.get("best"):
                ax.plot([x], [y], marker="*", markersize=17, color="gold", markeredgecolor="black",
                        linestyle="none", zorder=5)
                ax.annotate(f"best {y:.4f}", (x, y), textcoords="offset points", xytext=(0, -13), ha="center",
                            va="top", fontsize=9, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8})


def _style_panel(ax: Any, panel: Any, layout: _PlotLayout, folds: Optional[int]) -> None:
    """The x scale and ticks, labels, grid, title and legend of one panel."""
    if layout.log_x:
        ax.set_xscale("log")
        ticks = sorted({float(x) for x in layout.xs})
        if len(ticks) <= 12:  # label the grid values themselves: 1e-4, 3e-4, 1e-3...
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
    ax.margins(x=0.08, y=0.15)
    ax.set_xlabel((layout.x_param or "param map") + (" (log scale)" if layout.log_x else ""))
    ax.grid(True, which="major", alpha=0.45)
    if layout.panel_key:
        ax.set_title(f"{layout.panel_key} = {panel}")
    ax.legend(fontsize=9, title_fontsize=8, loc="best",
              title=f"bars: ±1 std over {folds} folds" if layout.has_std and folds else None)


def _default_title(rows: Sequence[Mapping[str, Any]], layout: _PlotLayout) -> str:
    folds = rows[0].get("folds")
    how = f"{folds}-fold cross-validation" if folds and folds > 1 else "train/validation split"
    x_name = {"learningRate": "learning rate"}.get(layout.x_param or "", layout.x_param or "param map")
    return f"{layout.ylabel.split(' (')[0].capitalize()} vs {x_name} ({how}, {len(rows)} param maps)"


# ============================================================================ report
def format_seconds(seconds: Optional[float]) -> str:
    """``75.2`` -> ``"1m15s"``; ``None`` -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "(the defaults)"


def write_report(path: str, rows: Sequence[Mapping[str, Any]], *, default: Optional[Mapping[str, Any]] = None,
                 best: Optional[Mapping[str, Any]] = None, timing: Optional[Mapping[str, Any]] = None,
                 setup: Optional[Mapping[str, Any]] = None, plot: Optional[str] = "sensitivity.png",
                 title: str = "sparkdl-lite tuning report", sections: Sequence[str] = ()) -> str:
    """Write ``report.md``: default vs best on the test set, timing and speedup, the full table.

    Parameters
    ----------
    path : str
        The Markdown file to write.
    rows : list of dict
        :func:`results_table` rows.
    default, best : dict, optional
        ``{"params": {...}, "test_accuracy": float}`` of the default configuration and of the
        tuned best refit on the whole training set. The report derives test error and the relative
        error reduction ``(err_default - err_best) / err_default``.
    timing : dict, optional
        ``tuning_seconds`` (wall time of the parallel tuning fit), ``sequential_seconds`` (sum of
        per-model train seconds: an estimate of training one after another), ``speedup``,
        ``total_seconds``, ``models``; optional ``sequential_note`` (what the sequential estimate
        sums, replacing the grid's wording), ``epochs_trained`` and ``grid_epochs`` (epochs the
        search trained, and those of the full grid at the same epochs).
    setup : dict, optional
        Free ``{label: value}`` lines for the set-up section (data, rows, master, executors, cores,
        command...).
    plot : str, optional
        File name of the sensitivity plot to embed (relative to the report).
    sections : list of str, optional
        Markdown blocks put before the table of all param maps (e.g. the rungs of a successive
        halving search).

    Returns
    -------
    str
        ``path``.

    .. versionadded:: 0.1.0
    """
    if not rows:
        raise ValueError("write_report: no rows.")
    names = param_names(rows)
    lines = [f"# {title}", ""]
    if setup:
        lines += ["## Set-up", ""]
        lines += [f"- **{k}**: {v}" for k, v in setup.items()]
        lines.append("")
    lines += _result_lines(rows, names, default, best)
    if timing:
        lines += _time_lines(timing)
    if plot:
        lines += ["", "## Sensitivity", "", f"![validation error vs learning rate]({plot})"]
    for block in sections:
        lines += ["", block.rstrip("\n")]
    lines += _table_lines(rows, names)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def _result_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str], default: Optional[Mapping[str, Any]],
                  best: Optional[Mapping[str, Any]]) -> List[str]:
    """The report's result: the best validation metric, then default vs best on the test set."""
    top = best_row(rows)
    metric = top.get("metric") or "metric"
    folds = top.get("folds")
    lines = ["## Result", ""]
    std = f" ± {top['std']:.4f}" if top.get("std") is not None else ""
    how = f"mean over {folds} folds" if folds and folds > 1 else "validation split"
    lines.append(f"- **Best validation {metric}** ({how}): **{_fmt(top.get('mean'))}**{std} "
                 f"(param map #{top['index']}: {_params_text({n: top.get(n) for n in names})})")
    if default is None and best is None:
        return lines
    lines += ["", "| configuration | params | test accuracy | test error |", "| --- | --- | --- | --- |"]
    errs = {}
    for label, entry in (("default", default), ("tuned best", best)):
        if entry is None:
            continue
        acc = entry.get("test_accuracy")
        errs[label] = None if acc is None else 1.0 - float(acc)
        lines.append(f"| {label} | {_params_text(entry.get('params') or {})} | {_fmt(acc)} | {_fmt(errs[label])} |")
    e0, e1 = errs.get("default"), errs.get("tuned best")
    if e0 is not None and e1 is not None:
        if e0 > 0:
            lines += ["", f"- **Relative test error reduction**: (err_default - err_best) / err_default = "
                      f"({e0:.4f} - {e1:.4f}) / {e0:.4f} = **{(e0 - e1) / e0:.1%}**"]
        else:
            lines += ["", "- **Relative test error reduction**: undefined (the default makes no test errors)"]
    return lines


def _time_lines(timing: Mapping[str, Any]) -> List[str]:
    """The report's time section: wall times, the sequential estimate and speedup, the epochs a search trained."""
    lines = ["", "## Time", ""]
    if timing.get("total_seconds") is not None:
        lines.append(f"- **Wall time of the whole run** (load, tune, refit, default, test, save): "
                     f"{format_seconds(timing['total_seconds'])}")
    if timing.get("tuning_seconds") is not None:
        lines.append(f"- **Wall time of the parallel tuning fit** ({timing.get('models', '?')} models trained in Spark "
                     f"tasks, plus evaluation and the refit of the best): {format_seconds(timing['tuning_seconds'])}")
    if timing.get("sequential_seconds") is not None:
        note = timing.get("sequential_note") or ("sum of the per-task train seconds of the same models; an estimate "
                                                 "of training them one after another, not a separate run")
        lines.append(f"- **Sequential estimate** ({note}): {format_seconds(timing['sequential_seconds'])}")
    if timing.get("speedup") is not None:
        lines.append(f"- **Speedup** = sequential estimate / parallel wall time = **{timing['speedup']:.2f}x**")
    if timing.get("epochs_trained") is not None:
        grid = timing.get("grid_epochs")
        lines.append(f"- **Epochs trained by the search** (every configuration's epochs at every rung it reached, "
                     f"summed over folds; without the refit): {timing['epochs_trained']}"
                     + (f"; the full grid at the same epochs trains {grid}: **{timing['epochs_trained'] / grid:.2f}x**"
                        if grid else ""))
    return lines


def _table_lines(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> List[str]:
    """The report's table of all param maps."""
    metric = best_row(rows).get("metric") or "metric"
    lines = ["", "## All param maps", ""]
    rung_cols = any("rung_epochs" in r for r in rows)  # successive halving: a metric is at the epochs its config reached
    header = (["#"] + list(names) + [f"mean {metric}"] + (["epochs"] if rung_cols else [])
              + ["std", "error", "train s (all folds)", "executor", "diverged", ""])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    for r in rows:
        cells = [str(r["index"])] + [_fmt(r.get(n)) for n in names] + [_fmt(r.get("mean"))] + (
            [_fmt(r.get("rung_epochs"))] if rung_cols else []) + [_fmt(r.get("std")), _fmt(r.get("error")),
            _fmt(r.get("train_seconds"), 1), _fmt(r.get("executor")), _fmt(r.get("diverged")),
            "**best**" if r.get("best") else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


# ============================================================================ progress
