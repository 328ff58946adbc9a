"""Rung table and rung plot of a :class:`~sparkdl_lite.search.HalvingSearchModel`.

Both read ``model.rungs`` (plain dicts: ``rung``, ``resource``, ``paramMapIndex``, ``metric``,
``seconds``, ``error``), so they work on a loaded model or on rungs read back from JSON. Spark
layer, thin: no TensorFlow or pyspark import; matplotlib is imported only to draw (a bare
``Figure`` rendered by Agg, never pyplot, so a notebook's backend is left alone).
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sparkdl_lite.core.jsonable import number

__all__ = ["rung_table", "rung_summary", "rung_metrics_table", "rung_plot", "resource_added"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    return str(value)


def _resource_text(value: Any) -> str:
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.4g}"
    return str(int(value)) if isinstance(value, (int, float)) else str(value)


def _by_config(rungs: Sequence[Mapping[str, Any]]) -> Dict[int, List[Mapping[str, Any]]]:
    out: Dict[int, List[Mapping[str, Any]]] = {}
    for entry in sorted(rungs, key=lambda e: (e["rung"], e["paramMapIndex"])):
        out.setdefault(int(entry["paramMapIndex"]), []).append(entry)
    return out


def rung_table(rungs: Sequence[Mapping[str, Any]], *, best_index: Optional[int] = None, metric_name: str = "metric",
               labels: Optional[Mapping[int, str]] = None) -> str:
    """A Markdown table of a successive-halving run: one row per param map per rung.

    Parameters
    ----------
    rungs : list of dict
        ``HalvingSearchModel.rungs``.
    best_index : int, optional
        The picked param map (``model.bestIndex``): its last row says ``best``.
    metric_name : str
        The metric column's header, e.g. ``"accuracy"``.
    labels : dict of int to str, optional
        A description per param map index (e.g. ``"lr=0.01, hidden=[64]"``).

    Returns
    -------
    str
        Markdown; the ``outcome`` column says ``promoted`` (it ran in the next rung), ``stopped``
        (it did not), ``failed: <why>`` or ``best``.

    Raises
    ------
    ValueError
        When ``rungs`` is empty.

    Examples
    --------
    >>> rungs = [{"rung": 0, "resource": 1, "paramMapIndex": 0, "metric": 0.8, "seconds": 1.0, "error": None},
    ...          {"rung": 0, "resource": 1, "paramMapIndex": 1, "metric": 0.6, "seconds": 1.0, "error": None},
    ...          {"rung": 1, "resource": 3, "paramMapIndex": 0, "metric": 0.9, "seconds": 2.0, "error": None}]
    >>> print(rung_table(rungs, best_index=0, metric_name="accuracy"))
    | rung | resource | param map | accuracy | seconds | outcome |
    | --- | --- | --- | --- | --- | --- |
    | 0 | 1 | #0 | 0.8000 | 1.0 | promoted |
    | 0 | 1 | #1 | 0.6000 | 1.0 | stopped |
    | 1 | 3 | #0 | 0.9000 | 2.0 | **best** |
    <BLANKLINE>

    .. versionadded:: 0.1.0
    """
    if not rungs:
        raise ValueError("rung_table: no rungs to tabulate.")
    seen = {(int(e["rung"]), int(e["paramMapIndex"])) for e in rungs}
    last = {i: entries[-1]["rung"] for i, entries in _by_config(rungs).items()}
    lines = [f"| rung | resource | param map | {metric_name} | seconds | outcome |",
             "| --- | --- | --- | --- | --- | --- |"]
    for e in sorted(rungs, key=lambda e: (e["rung"], e["paramMapIndex"])):
        i, k = int(e["paramMapIndex"]), int(e["rung"])
        if e.get("error"):
            outcome = "failed: " + str(e["error"]).replace("|", "\\|")[:120]
        elif (k + 1, i) in seen:
            outcome = "promoted"
        elif best_index is not None and i == best_index and k == last[i]:
            outcome = "**best**"
        else:
            outcome = "stopped"
        name = f"#{i}" + (f" {labels[i]}" if labels and i in labels else "")
        lines.append(f"| {k} | {_resource_text(e['resource'])} | {name} | {_fmt(number(e.get('metric')))} | "
                     f"{_fmt(number(e.get('seconds')), 1)} | {outcome} |")
    return "\n".join(lines) + "\n"


def resource_added(rungs: Sequence[Mapping[str, Any]]) -> Dict[int, Any]:
    """Resource each rung adds to a survivor: ``{rung: resource - previous rung's resource}``.

    With ``resource="epochs"`` a survivor continues from its weights, so rung ``k`` trains only
    the epochs it adds; summing this over every rung entry gives the epochs the search trained.

    Examples
    --------
    >>> resource_added([{"rung": 0, "resource": 1}, {"rung": 1, "resource": 3}, {"rung": 2, "resource": 9}])
    {0: 1, 1: 2, 2: 6}
    """
    by_rung = {int(e["rung"]): e["resource"] for e in rungs}
    out: Dict[int, Any] = {}
    previous: Any = 0
    for k in sorted(by_rung):
        out[k] = by_rung[k] - previous
        previous = by_rung[k]
    return out


def rung_summary(rungs: Sequence[Mapping[str, Any]], *, metric_name: str = "metric", resource_name: str = "resource",
                 larger_is_better: bool = True, labels: Optional[Mapping[int, str]] = None) -> str:
    """A Markdown table with one row per rung: its resource, how many param maps ran, failed, and the best.

    Examples
    --------
    >>> rungs = [{"rung": 0, "resource": 1, "paramMapIndex": 0, "metric": 0.8, "error": None},
    ...          {"rung": 0, "resource": 1, "paramMapIndex": 1, "metric": 0.6, "error": None},
    ...          {"rung": 1, "resource": 3, "paramMapIndex": 0, "metric": 0.9, "error": None}]
    >>> print(rung_summary(rungs, metric_name="accuracy", resource_name="epochs"))
    | rung | epochs | configurations | failed | best accuracy | best configuration |
    | --- | --- | --- | --- | --- | --- |
    | 0 | 1 | 2 | 0 | 0.8000 | #0 |
    | 1 | 3 | 1 | 0 | 0.9000 | #0 |
    <BLANKLINE>

    .. versionadded:: 0.2.0
    """
    if not rungs:
        raise ValueError("rung_summary: no rungs to tabulate.")
    lines = [f"| rung | {resource_name} | configurations | failed | best {metric_name} | best configuration |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k in sorted({int(e["rung"]) for e in rungs}):
        entries = [e for e in rungs if int(e["rung"]) == k]
        ok = [e for e in entries if not e.get("error") and number(e.get("metric")) is not None]
        top = (max if larger_is_better else min)(ok, key=lambda e: float(e["metric"])) if ok else None
        name = "–" if top is None else f"#{top['paramMapIndex']}" + (
            f" {labels[int(top['paramMapIndex'])]}" if labels and int(top["paramMapIndex"]) in labels else "")
        lines.append(f"| {k} | {_resource_text(entries[0]['resource'])} | {len(entries)} | {len(entries) - len(ok)} | "
                     f"{_fmt(None if top is None else float(top['metric']))} | {name} |")
    return "\n".join(lines) + "\n"


def rung_metrics_table(rungs: Sequence[Mapping[str, Any]], *, best_index: Optional[int] = None,
                       metric_name: str = "metric", resource_name: str = "resource",
                       labels: Optional[Mapping[int, str]] = None) -> str:
    """A Markdown table with one row per param map: its metric at each rung it reached (``–`` past it).

    Rows are sorted by how far the param map got, then by its metric at its last rung; the
    picked one (``best_index``) says ``best``.

    Examples
    --------
    >>> rungs = [{"rung": 0, "resource": 1, "paramMapIndex": 0, "metric": 0.8, "error": None},
    ...          {"rung": 0, "resource": 1, "paramMapIndex": 1, "metric": 0.6, "error": None},
    ...          {"rung": 1, "resource": 3, "paramMapIndex": 0, "metric": 0.9, "error": None}]
    >>> print(rung_metrics_table(rungs, best_index=0, metric_name="accuracy", resource_name="epochs"))
    | configuration | rung 0: 1 epochs | rung 1: 3 epochs | outcome |
    | --- | --- | --- | --- |
    | #0 | 0.8000 | 0.9000 | **best** |
    | #1 | 0.6000 | – | stopped at rung 0 |
    <BLANKLINE>

    .. versionadded:: 0.2.0
    """
    if not rungs:
        raise ValueError("rung_metrics_table: no rungs to tabulate.")
    resources = {int(e["rung"]): e["resource"] for e in rungs}
    ks = sorted(resources)
    groups = _by_config(rungs)

    def order(i: int) -> Tuple[int, float, int]:
        last = groups[i][-1]
        metric = number(last.get("metric"))
        return (-int(last["rung"]), -(metric if metric is not None and not last.get("error") else -math.inf), i)

    lines = ["| configuration | " + " | ".join(f"rung {k}: {_resource_text(resources[k])} {resource_name}" for k in ks)
             + " | outcome |", "|" + " --- |" * (len(ks) + 2)]
    for i in sorted(groups, key=order):
        at = {int(e["rung"]): e for e in groups[i]}
        cells = []
        for k in ks:
            e = at.get(k)
            cells.append("–" if e is None else ("failed" if e.get("error") else _fmt(number(e.get("metric")))))
        last = groups[i][-1]
        if last.get("error"):
            outcome = "failed: " + str(last["error"]).replace("|", "\\|")[:120]
        elif best_index is not None and i == best_index:
            outcome = "**best**"
        elif int(last["rung"]) == ks[-1]:
            outcome = "last rung"
        else:
            outcome = f"stopped at rung {last['rung']}"
        name = f"#{i}" + (f" {labels[i]}" if labels and i in labels else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {outcome} |")
    return "\n".join(lines) + "\n"


def rung_plot(rungs: Sequence[Mapping[str, Any]], path: str, best_index: Optional[int] = None,
              metric_name: str = "metric", *, resource_name: str = "resource", labels: Optional[Mapping[int, str]] = None,
              title: Optional[str] = None) -> str:
    """Draw each param map's metric against the resource it had, one line per param map.

    The x axis is the resource (logarithmic when it spans 4x or more, ticks at the rungs'
    resources), the y axis the metric. The best param map is a thick line with a star on its
    last rung; failed rungs are red crosses below the lowest metric.

    Parameters
    ----------
    rungs : list of dict
        ``HalvingSearchModel.rungs``.
    path : str
        The PNG to write (folders are created).
    best_index : int, optional
        ``model.bestIndex``.
    metric_name : str
        The y axis label, e.g. ``"validation accuracy"``.
    resource_name : str
        The x axis label, e.g. ``"epochs"`` or ``"fraction of training rows"``.
    labels : dict of int to str, optional
        Legend text per param map index.
    title : str, optional

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        When ``rungs`` is empty.

    Examples
    --------
    >>> rung_plot(model.rungs, "rungs.png", model.bestIndex, "accuracy", resource_name="epochs")  # doctest: +SKIP
    'rungs.png'

    .. versionadded:: 0.1.0
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and global state stay as they are

    if not rungs:
        raise ValueError("rung_plot: no rungs to plot.")
    groups = _by_config(rungs)
    resources = sorted({float(e["resource"]) for e in rungs})
    log_x = len(resources) > 1 and resources[0] > 0 and resources[-1] / resources[0] >= 4
    finite = [v for v in (number(e.get("metric")) for e in rungs if not e.get("error")) if v is not None]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"]
    few = len(groups) <= 10
    failed_xs: List[float] = []
    for n, (i, entries) in enumerate(groups.items()):
        pts = [(float(e["resource"]), number(e.get("metric"))) for e in entries if not e.get("error")]
        pts = [(x, y) for x, y in pts if y is not None]
        failed_xs += [float(e["resource"]) for e in entries if e.get("error") or number(e.get("metric")) is None]
        if not pts:
            continue
        is_best = best_index is not None and i == best_index
        label = f"#{i}" + (f" {labels[i]}" if labels and i in labels else "")
        if is_best:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linewidth=2.8, color="darkorange", zorder=4,
                    label=f"best: {label}")
            ax.plot([pts[-1][0]], [pts[-1][1]], marker="*", markersize=18, color="gold", markeredgecolor="black",
                    linestyle="none", zorder=5)
            ax.annotate(f"{pts[-1][1]:.4f}", pts[-1], textcoords="offset points", xytext=(8, 6), fontsize=9)
        else:
            color = cmap(0.1 + 0.75 * n / max(1, len(groups) - 1))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, linewidth=1.2, alpha=0.75,
                    color=color, label=label if few else None)
    if failed_xs:
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        bottom = lo - 0.08 * ((hi - lo) or 1.0)  # below every metric, so a cross never hides a point
        ax.plot(failed_xs, [bottom] * len(failed_xs), marker="x", markersize=10, markeredgewidth=2.2, color="crimson",
                linestyle="none", zorder=6, label="failed / diverged")
    if log_x:
        ax.set_xscale("log")
    if len(resources) <= 12:
        ax.set_xticks(resources, [_resource_text(int(r) if float(r).is_integer() and r >= 1 else r) for r in resources])
        ax.minorticks_off()
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(resource_name + (" (log scale)" if log_x else ""))
    ax.set_ylabel(metric_name)
    ax.grid(True, alpha=0.45)
    ax.legend(fontsize=8, loc="best", ncol=2 if few and len(groups) > 5 else 1)
    n_rungs = len({e["rung"] for e in rungs})
    ax.set_title(title or f"Successive halving: {len(groups)} param maps, {n_rungs} rungs", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)  # Agg, from the .png suffix
    return path
