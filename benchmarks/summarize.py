"""Turn a folder of benchmark results (``benchmarks/rerun.sh``) into markdown tables, one column per run.

    .venv/bin/python benchmarks/summarize.py out/bench-20261130-2050 > out/bench.md

Reads ``<name>-<run>.json`` (and the demo's ``demo-<run>.log``) and prints, for every benchmark, the
numbers docs/performance.md quotes, with each run side by side and the date and load of each run.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Any, Dict, List


def _runs(folder: str, name: str) -> List[Dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(os.path.join(folder, f"{name}-[0-9]*.json")),
                       key=lambda p: int(re.search(r"-(\d+)\.json$", p).group(1))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def _table(header: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _when(runs: List[Dict[str, Any]]) -> str:
    parts = []
    for i, r in enumerate(runs, 1):
        m = r.get("machine") or {}
        load = m.get("loadavg_start")
        parts.append(f"run {i}: {m.get('date', '?')}" + (f", load {load[0]:.2f}" if load else ""))
    return "; ".join(parts)


def _join(values: List[str]) -> str:
    return " / ".join(values)


def infer(runs: List[Dict[str, Any]]) -> str:
    out = []
    for model in runs[0]["models"]:
        ms = [r["models"][model] for r in runs]
        head = ["path", "images/s (" + " / ".join(f"run {i}" for i in range(1, len(ms) + 1)) + ")", "vs raw TF", "vs predict_batch_udf"]
        rows = []
        for p in ms[0]["paths"]:
            rows.append([p, _join([f"{m['median_images_per_s'][p]:,.0f}" for m in ms]),
                         _join([f"{m['ratios'][p]['vs_raw']:.2f}" for m in ms]),
                         _join([f"{m['ratios'][p]['vs_pbu']:.2f}" if "vs_pbu" in m["ratios"][p] else "-" for m in ms])])
        out.append(f"**{model}**, {ms[0]['rows']} rows, batch {ms[0]['batch_size']} (medians of "
                   f"{runs[0].get('repeats')} interleaved passes)\n\n" + _table(head, rows))
    return "\n\n".join(out)


def tune(runs: List[Dict[str, Any]]) -> str:
    s0 = runs[0]["summary"]
    rows = []
    b = [r["results"]["b"]["wall_s"] for r in runs]
    rows.append(["(b) sequential, 1 thread", _join([f"{v:.1f}" for v in b]), "1.00", "-"])
    for key, label in (("p", "(p) plain processes (bound)"), ("c", "(c) local[2], first fit"), ("c_warm", "(c) local[2], warm"),
                       ("d", "(d) local-cluster[2,1], first fit"), ("d_warm", "(d) local-cluster, warm"),
                       ("e", "(e) Spark Connect, first fit"), ("e_warm", "(e) Spark Connect, warm")):
        if key not in s0:
            continue
        ss = [r["summary"][key] for r in runs]
        rows.append([label, _join([f"{s['wall_s']:.1f}" for s in ss]), _join([f"{s['speedup_vs_b']:.2f}" for s in ss]),
                     _join([f"{s['vs_plain_processes']:.2f}" if s.get("vs_plain_processes") else "-" for s in ss])])
    a = runs[0]["args"]
    return (f"{len(runs[0]['results']['b']['runs'])} configurations, {a['epochs']} epochs on {a['sample']} images\n\n"
            + _table(["variant", "wall s", "speed-up vs (b)", "vs (p)"], rows))


def refit(runs: List[Dict[str, Any]]) -> str:
    rows = [[k, _join([f"{r['median_wall_s'][k]:.1f}" for r in runs])] for k in runs[0]["median_wall_s"]]
    rows.append(["speed-up", _join([f"{r['speedup']:.2f}x" for r in runs])])
    return _table(["lone fit", "median wall s"], rows)


def memory(runs: List[Dict[str, Any]]) -> str:
    rows = []
    for i, res in enumerate(runs[0]["results"]):
        rs = [r["results"][i] for r in runs]
        rows.append([f"{res['rows']:,}", _join([f"{x['images_per_s']:,}" for x in rs]),
                     _join([str(x["peak_python_worker_rss_mb"]) for x in rs]),
                     _join([str(x["peak_driver_rss_mb"]) for x in rs]), _join([str(x["peak_jvm_rss_mb"]) for x in rs])])
    return _table(["rows", "images/s", "peak Python worker RSS MB", "peak driver RSS MB", "peak JVM RSS MB"], rows)


def halving(runs: List[Dict[str, Any]]) -> str:
    rows = []
    for i, r in enumerate(runs, 1):
        g, h, s = r["results"]["grid"], r["results"]["halving"], r["summary"]
        rows.append([f"run {i}", g["best_params"], f"{g['test_accuracy']:.4f}", h["best_params"],
                     f"{h['test_accuracy']:.4f} ({-s['test_accuracy_gap'] * 100:+.2f})",
                     f"{h['epochs']} / {g['epochs']} ({s['epochs_ratio']:.2f}x)",
                     f"{h['search_wall_s']:.1f} / ~{g['search_wall_s']:.1f} ({s['search_wall_ratio']:.2f}x)",
                     f"{h['fit_wall_s']:.1f} / {g['fit_wall_s']:.1f} ({s['wall_ratio']:.2f}x)"])
    return _table(["run", "grid best", "grid test", "halving best", "halving test (points)", "epochs halving / grid",
                   "search wall s, no refit", "fit wall s, with refit"], rows)


def profile(runs: List[Dict[str, Any]]) -> str:
    out = []
    for rows_key in runs[0]["results"]:
        meds = [r["results"][rows_key]["median"] for r in runs]
        body = []
        for stage in meds[0]:
            body.append([stage, _join([f"{m[stage]['images_per_s']:,.0f}" for m in meds]),
                         _join([f"{m[stage]['images_per_s'] / m['raw']['images_per_s']:.2f}" for m in meds]),
                         _join([f"{m[stage]['wall_s']:.2f}" for m in meds]),
                         _join([f"{m[stage]['cpu_jvm_s']:.2f}" for m in meds]),
                         _join([f"{m[stage]['cpu_python_workers_s']:.2f}" for m in meds]),
                         _join([f"{m[stage]['cpu_driver_s']:.2f}" for m in meds])])
        out.append(f"**{int(rows_key):,} rows**\n\n" + _table(
            ["stage", "images/s", "vs raw", "wall s", "CPU s JVM", "CPU s Python workers", "CPU s driver"], body))
    return "\n\n".join(out)


def demo(folder: str) -> str:
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "demo-[0-9]*.log"))):
        text = open(path).read()
        speed = re.search(r"time: total ([^,]+), tuning fit ([^,]+), sequential estimate ([^,]+), speedup ([0-9.]+)x", text)
        acc = re.search(r"test accuracy: default ([0-9.]+) -> tuned ([0-9.]+)", text)
        done = re.search(r"demo done in (\d+)s", text)
        rows.append([os.path.basename(path), done.group(1) + " s" if done else "?",
                     f"{speed.group(4)}x (fit {speed.group(2)})" if speed else "?",
                     f"{acc.group(1)} -> {acc.group(2)}" if acc else "?"])
    return _table(["run", "end to end", "report speed-up", "test accuracy default -> tuned"], rows) if rows else ""


def main(argv: List[str]) -> int:
    folder = argv[0] if argv else "out/bench"
    index = os.path.join(folder, "index.txt")
    if os.path.exists(index):
        print("```\n" + open(index).read().strip() + "\n```\n")
    for name, fn in (("halving", halving), ("halving-cnn", halving), ("profile", profile), ("profile-rg", profile), ("infer", infer),
                     ("tune", tune), ("refit", refit), ("memory", memory)):
        runs = _runs(folder, name)
        if not runs:
            continue
        try:
            body = fn(runs)
        except (KeyError, TypeError, ZeroDivisionError) as exc:  # a run that failed part-way: say so, go on
            body = f"(could not summarise: {type(exc).__name__}: {exc})"
        print(f"### {name}: {runs[0].get('command', name)}\n\n{_when(runs)}\n\n{body}\n")
    text = demo(folder)
    if text:
        print(f"### demo: bash scripts/dev.sh demo\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
