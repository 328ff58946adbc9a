"""Streamed vs shipped training data (issue #23): epoch time, test accuracy and peak memory as the data grows.

The 60,000 Fashion-MNIST training images (``images_from_numpy``, image structs) are unioned k times
(k in ``--sizes``, default 1, 4, 8), cached and counted, and fitted by the same ``TFClassifier``
(built-in MLP, ``hiddenLayers=[256]``, 2 epochs, batch 128, seed 0) with ``trainingData="ship"``
(rows collected to the driver and shipped to the task, which holds them all) and
``trainingData="stream"`` (rows staged once as Parquet under spark.local.dir, streamed by the task
through a bounded shuffle buffer). Every (path, k, run) runs in its own child process with its own
``local[2]`` SparkSession, so each peak-memory number belongs to one fit alone. Runs interleave:
run 1 of ship-1x, stream-1x, ship-4x, ... then run 2 of the same.

Per fit: the wall time of ``fit``; the epoch time (the MEAN of the epochs' ``seconds`` in
``model.history``; the last epoch's is reported beside it); the accuracy on the 10,000 test images;
the peak RSS of the Python driver (``getrusage``), of the driver JVM (its ``VmHWM`` in /proc: in
local mode it is also the executor, which holds the cached rows) and of the training Python worker
(``trainingInfo["peakRssMb"]``; the largest ``VmHWM`` of this driver's Python workers beside it),
all read after ``fit`` and before the test set is built. A fit that fails (memory,
maxResultSize) is recorded with its error.

Targets (issue #23): streamed epoch throughput >= 0.85x shipped (ratio = shipped epoch s / streamed
epoch s), test accuracy within 0.5 point, streamed driver and worker peak RSS within +15% from 1x to
the largest k, shipped growing with the data.

    .venv/bin/python benchmarks/stream.py --json out/bench-stream/stream.json      # ~30-40 min on 2 cores
    .venv/bin/python benchmarks/stream.py --sample 3000 --sizes 1,2 --runs 1       # quick check
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (loopback settings, sessions, process table)

RESULT = "RESULT "
PATHS = ("ship", "stream")


class Measurement(NamedTuple):
    """What one child process reports about one fit (None where the fit failed)."""

    path: str
    k: int
    run: int
    rows: Optional[int]
    error: Optional[str]
    session_s: Optional[float]
    data_s: Optional[float]
    fit_s: Optional[float]
    epoch_s: Optional[float]  # mean of the epochs
    last_epoch_s: Optional[float]
    test_accuracy: Optional[float]
    driver_py_mb: Optional[float]
    driver_jvm_mb: Optional[float]
    worker_mb: Optional[float]  # trainingInfo["peakRssMb"]
    workers_hwm_mb: Optional[float]  # largest VmHWM of this driver's Python workers
    jvm_xmx: Optional[str]
    training_info: Optional[Dict[str, Any]]
    history: Optional[List[Dict[str, Any]]]


# ----------------------------------------------------------------------------------------- memory
def _status_mb(pid: int, field: str) -> Optional[float]:
    """``field`` (``VmHWM``, ``VmRSS``) of /proc/<pid>/status in MiB; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _memory() -> Dict[str, Any]:
    """Peak RSS of this Python driver, its JVM and its Python workers, in MiB."""
    procs = common.processes()
    mine = common.descendants(os.getpid(), procs)
    jvms = [p for p in mine if os.path.basename(procs[p][1].split(" ", 1)[0]) == "java"]
    workers = [p for p in mine if "pyspark.daemon" in procs[p][1] or "pyspark/daemon.py" in procs[p][1]]
    jvm_hwm = [v for v in (_status_mb(p, "VmHWM") for p in jvms) if v is not None]
    worker_hwm = [v for v in (_status_mb(p, "VmHWM") for p in workers) if v is not None]
    xmx = next((a for p in jvms for a in procs[p][1].split() if a.startswith("-Xmx")), None)
    return {"driver_py_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "driver_jvm_mb": max(jvm_hwm) if jvm_hwm else None,
            "workers_hwm_mb": max(worker_hwm) if worker_hwm else None, "jvm_xmx": xmx}


# ----------------------------------------------------------------------------------------- child
def _training_rows(spark: Any, ds: Any, k: int) -> Any:
    """The training images unioned ``k`` times, cached and counted."""
    from sparkdl_lite import images_from_numpy

    base = images_from_numpy(spark, ds.x_train, ds.y_train)
    df = base
    for _ in range(k - 1):
        df = df.union(base)
    df = df.cache()
    df.count()
    return df


def _test_accuracy(spark: Any, ds: Any, model: Any) -> float:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    from sparkdl_lite import images_from_numpy

    test = images_from_numpy(spark, ds.x_test, ds.y_test, origin_prefix="test://")
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy", labelCol="label", predictionCol="prediction")
    return float(evaluator.evaluate(model.transform(test)))


def child(args: argparse.Namespace) -> Measurement:
    """One fit of ``args.child`` ("ship" or "stream") on the data unioned ``args.k`` times, in a fresh session."""
    t0 = time.perf_counter()
    spark = common.spark_session("local[2]", {"spark.driver.memory": args.driver_memory,
                                              "spark.driver.maxResultSize": args.max_result_size})
    from sparkdl_lite import TFClassifier
    from sparkdl_lite.core.datasets import load_fashion_mnist, sample

    out: Dict[str, Any] = {f: None for f in Measurement._fields}
    out.update(path=args.child, k=args.k, run=args.run, session_s=time.perf_counter() - t0)
    try:
        ds = load_fashion_mnist()
        if args.sample:
            ds = sample(ds, args.sample, min(args.sample, len(ds.x_test)), seed=0)
        t1 = time.perf_counter()
        df = _training_rows(spark, ds, args.k)
        out.update(rows=len(ds.x_train) * args.k, data_s=time.perf_counter() - t1)
        clf = TFClassifier(featuresCol="image", labelCol="label", hiddenLayers=[args.hidden], epochs=args.epochs,
                           batchSize=args.batch_size, seed=0, trainingData=args.child)
        t2 = time.perf_counter()
        try:
            model = clf.fit(df)
        except Exception as exc:  # noqa: BLE001 - a failed fit (memory, maxResultSize) is a result too
            out.update(_memory(), error=f"{type(exc).__name__}: {exc}"[:4000])
            return Measurement(**out)
        out["fit_s"] = time.perf_counter() - t2
        out.update(_memory())  # before the test set is built: the peaks of the fit alone
        info, hist = model.trainingInfo, model.history
        secs = [h["seconds"] for h in hist]
        out.update(epoch_s=sum(secs) / len(secs), last_epoch_s=secs[-1], worker_mb=info.get("peakRssMb"),
                   training_info=info, history=hist)
        df.unpersist()
        out["test_accuracy"] = _test_accuracy(spark, ds, model)
    finally:
        spark.stop()
    return Measurement(**out)


# ----------------------------------------------------------------------------------------- parent
def run_child(path: str, k: int, run: int, args: argparse.Namespace) -> Dict[str, Any]:
    """One child process; a crash (killed, no result) is returned as its error."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", path, "--k", str(k), "--run", str(run),
           "--sample", str(args.sample), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--hidden", str(args.hidden), "--driver-memory", args.driver_memory,
           "--max-result-size", args.max_result_size]
    print(f"== run {run}: {path} {k}x  ({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.2f})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: List[str] = []
    t = common.pump_stderr(proc, err)
    try:
        out_text, _ = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out_text, _ = proc.communicate()
        out_text += f"\n(killed after --timeout {args.timeout} s)"
    t.join(timeout=5)
    lines = [ln for ln in out_text.splitlines() if ln.startswith(RESULT)]
    if lines:
        res = json.loads(lines[-1][len(RESULT):])
    else:
        res = {f: None for f in Measurement._fields}
        res.update(path=path, k=k, run=run, error=f"child exited with code {proc.returncode} and no result: "
                   f"{out_text[-1500:]}\n{''.join(err[-40:])}"[-4000:])
    res.update(process_s=time.perf_counter() - t0, returncode=proc.returncode)
    print("   " + _one_line(res), flush=True)
    return res


def _one_line(r: Dict[str, Any]) -> str:
    if r.get("error"):
        return f"{r['path']} {r['k']}x run {r['run']}: ERROR {r['error'].splitlines()[0][:300]}"
    return (f"{r['path']} {r['k']}x run {r['run']}: fit {r['fit_s']:.1f} s, epoch {r['epoch_s']:.2f} s (last "
            f"{r['last_epoch_s']:.2f} s), test acc {r['test_accuracy']:.4f}, driver py {r['driver_py_mb']:.0f} MiB, "
            f"JVM {r['driver_jvm_mb']:.0f} MiB, worker {r['worker_mb']:.0f} MiB (hwm {r['workers_hwm_mb']:.0f}), "
            f"process {r['process_s']:.0f} s")


# ----------------------------------------------------------------------------------------- report
def _get(results: List[Dict[str, Any]], path: str, k: int, run: int) -> Optional[Dict[str, Any]]:
    return next((r for r in results if r["path"] == path and r["k"] == k and r["run"] == run), None)


def _cell(values: List[Optional[float]], fmt: str) -> str:
    return " / ".join("ERR" if v is None else format(v, fmt) for v in values)


def _per_run(results: List[Dict[str, Any]], runs: int, path: str, k: int, field: str) -> List[Optional[float]]:
    vals = []
    for run in range(1, runs + 1):
        r = _get(results, path, k, run)
        vals.append(None if r is None or r.get("error") else r.get(field))
    return vals


def _ratio(a: List[Optional[float]], b: List[Optional[float]]) -> List[Optional[float]]:
    return [x / y if x is not None and y else None for x, y in zip(a, b)]


def summarize(results: List[Dict[str, Any]], sizes: List[int], runs: int) -> Dict[str, Any]:
    """Per k and run: the epoch-time ratio shipped / streamed, the accuracy gap; growth from the smallest k."""
    s: Dict[str, Any] = {"per_size": {}, "growth_pct": {}}
    for k in sizes:
        v = {f"{p}_{f}": _per_run(results, runs, p, k, f) for p in PATHS
             for f in ("epoch_s", "last_epoch_s", "fit_s", "test_accuracy", "driver_py_mb", "driver_jvm_mb", "worker_mb")}
        v["ratio_epoch"] = _ratio(v["ship_epoch_s"], v["stream_epoch_s"])
        v["ratio_last_epoch"] = _ratio(v["ship_last_epoch_s"], v["stream_last_epoch_s"])
        v["acc_diff_points"] = [None if a is None or b is None else 100 * (b - a)
                                for a, b in zip(v["ship_test_accuracy"], v["stream_test_accuracy"])]
        s["per_size"][k] = v
    lo = s["per_size"][sizes[0]]
    for k in sizes[1:]:
        hi = s["per_size"][k]
        for key in [f"{p}_{f}" for p in PATHS for f in ("driver_py_mb", "driver_jvm_mb", "worker_mb")]:
            s["growth_pct"].setdefault(key, {})[k] = [None if a is None or b is None else 100 * (b / a - 1)
                                                      for a, b in zip(lo[key], hi[key])]
    return s


def report(summ: Dict[str, Any], sizes: List[int], base_rows: int) -> str:
    per = summ["per_size"]
    rows1, rows2 = [], []
    for k in sizes:
        v = per[k]
        rows1.append([f"{k}x ({k * base_rows:,})", _cell(v["ship_epoch_s"], ".2f"), _cell(v["stream_epoch_s"], ".2f"),
                      _cell(v["ratio_epoch"], ".2f"), _cell(v["ratio_last_epoch"], ".2f"),
                      _cell(v["ship_fit_s"], ".1f"), _cell(v["stream_fit_s"], ".1f"),
                      _cell(v["ship_test_accuracy"], ".4f"), _cell(v["stream_test_accuracy"], ".4f"),
                      _cell(v["acc_diff_points"], "+.2f")])
        rows2.append([f"{k}x ({k * base_rows:,})"] + [_cell(v[f"{p}_{f}"], ".0f") for f in
                                                     ("driver_py_mb", "driver_jvm_mb", "worker_mb") for p in PATHS])
    out = ["Epoch time (mean of the epochs) and test accuracy; each cell run 1 / run 2; ratio = shipped epoch s / "
           "streamed epoch s (streamed throughput as a share of shipped; target >= 0.85)",
           common.table(rows1, ["rows", "epoch s ship", "epoch s stream", "ratio (mean epoch)", "ratio (last epoch)",
                                "fit wall s ship", "fit wall s stream", "test acc ship", "test acc stream",
                                "stream - ship, points"]),
           "", "Peak RSS, MiB (run 1 / run 2): Python driver (getrusage), driver JVM (VmHWM; in local mode also the "
           "executor holding the cached rows), training Python worker (trainingInfo['peakRssMb'])",
           common.table(rows2, ["rows", "driver py ship", "driver py stream", "driver JVM ship", "driver JVM stream",
                                "worker ship", "worker stream"]), ""]
    for key, label in (("stream_worker_mb", "streamed worker"), ("stream_driver_py_mb", "streamed Python driver"),
                       ("stream_driver_jvm_mb", "streamed driver JVM"), ("ship_worker_mb", "shipped worker"),
                       ("ship_driver_py_mb", "shipped Python driver"), ("ship_driver_jvm_mb", "shipped driver JVM")):
        g = summ["growth_pct"].get(key, {})
        if g:
            out.append(f"{label} peak RSS growth from {sizes[0]}x: "
                       + ", ".join(f"{k}x {_cell(vals, '+.1f')} %" for k, vals in g.items()))
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--sizes", default="1,4,8", help="times the training set is unioned (default 1,4,8)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--sample", type=int, default=0, help="training images before the union (default 0: all 60,000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256, help="units of the MLP's one hidden layer (default 256)")
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--max-result-size", default="4g")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child process")
    ap.add_argument("--json", default=None, help="write every number to this JSON file")
    ap.add_argument("--child", choices=PATHS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        m = child(args)
        print(RESULT + json.dumps(m._asdict(), default=str), flush=True)
        return m._asdict()

    sizes = [int(v) for v in args.sizes.split(",")]
    info = common.machine()
    t_all = time.perf_counter()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    payload = {"machine": info, "args": {k: v for k, v in vars(args).items() if k not in ("child", "k", "run")},
               "command": " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
               "epoch_time": "mean of the epochs' seconds in model.history (last epoch beside it)",
               "complete": False, "results": []}
    for run in range(1, args.runs + 1):
        for k in sizes:
            for path in PATHS:
                payload["results"].append(run_child(path, k, run, args))
                if args.json:  # what is measured so far survives a parent that is stopped
                    with open(args.json, "w") as f:
                        json.dump(payload, f, indent=2, default=str)
    summ = summarize(payload["results"], sizes, args.runs)
    info["loadavg_end"] = os.getloadavg()
    info["date_end"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    payload.update(complete=True, summary=summ, wall_s=time.perf_counter() - t_all)
    print(report(summ, sizes, args.sample or 60000))
    print(f"total {payload['wall_s']:.0f} s; {info['date']} -> {info['date_end']}; load average at start "
          f"{info.get('loadavg_start')}, end {info['loadavg_end']}")
    common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
