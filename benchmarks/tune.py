"""Tuning speed-up: K configurations trained one after another vs. one Spark task each.

K configurations of the built-in ``cnn`` (TFClassifier's defaults: conv 32, 64; a learning-rate x
hidden-layer grid) on a Fashion-MNIST sample, each sized to train for >= 20 s on one core, are trained

(a) one after another in one process, TF on all cores (``training.train(threads=cores)``);
(b) one after another in one process, TF on one thread (a separate process: TF fixes its thread
    pools when it starts);
(c) by ``TFClassifier.fitMultiple`` on ``local[2]`` (one task per configuration, 1 core each);
(d) by ``TFClassifier.fitMultiple`` on ``local-cluster[2,1,2048]`` (two executor JVMs of one core),
    timed after both executors have registered;
(e) by ``TFClassifier.fitMultiple`` on a Spark Connect session (``remote("local[2]")``: a local
    Connect server, its own local[2] driver); wall time only (no status tracker on Connect);
(p) without Spark, in as many plain processes as there are task slots, each training its share of
    the configurations with TF on one thread, started together after TF and the data are loaded:
    what this machine gives two concurrent trainings, i.e. the bound for (c) and (d);

(c), (d) and (e) are then timed a second time in the same session (``warm``): the Python workers have
TensorFlow loaded, as for CrossValidator's later folds or a second tuning run. ``CrossValidator``
(3 folds, ``parallelism=K``) runs the same grid on ``local[2]``. Reported: wall times; speed-up of
(c), (d) over (a) and (b); parallel efficiency (speed-up over (b) / task slots); per-task overhead =
task wall time (Spark's task duration) - training time (``trainingInfo``), as a share of the task
time, split (from ``trainingInfo["startup"]`` and ``["phases"]``) into Python worker start,
TensorFlow import, broadcast read, model build, fit set-up, graph freeze and transfer (the rest:
result to the driver, task launch), for cold (first task of a worker) and warm tasks; for
CrossValidator the share of core-time idle, and of wall time with no training job running.
Every variant runs in its own child process (same data, same configurations).

    .venv/bin/python benchmarks/tune.py                       # ~16 min on 2 cores
    .venv/bin/python benchmarks/tune.py --epochs 2 --sample 2000 --skip cv   # quick check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402

RESULT = "RESULT "
VARIANTS = ("a", "b", "p", "c", "d", "e", "warm", "cv")


# ----------------------------------------------------------------------------------------- shared set-up
def grid_maps(clf: Any, args: argparse.Namespace) -> List[Dict[Any, Any]]:
    from pyspark.ml.tuning import ParamGridBuilder

    lrs = [float(v) for v in args.learning_rates.split(",")]
    hidden = [[int(v)] for v in args.hidden.split(",")]
    return ParamGridBuilder().addGrid(clf.learningRate, lrs).addGrid(clf.hiddenLayers, hidden).build()


def make_classifier(args: argparse.Namespace):
    from sparkdl_lite.classifier import TFClassifier

    return TFClassifier(featuresCol="image", labelCol="label", architecture="cnn", epochs=args.epochs,
                        batchSize=args.batch_size, seed=0)


def load_data(args: argparse.Namespace):
    from sparkdl_lite.core.datasets import load_fashion_mnist, sample

    ds = sample(load_fashion_mnist(), args.sample, 10, seed=0)
    return ds.x_train, ds.y_train


def configs(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The training kwargs of every param map, exactly as fitMultiple hands them to ``training.train``."""
    clf = make_classifier(args)
    return [clf.copy(pm)._train_kwargs() for pm in grid_maps(clf, args)]  # noqa: SLF001 - same kwargs as the tasks


# ----------------------------------------------------------------------------------------- children
def child_sequential(args: argparse.Namespace) -> Dict[str, Any]:
    """(a) / (b): every configuration in this process, TF with ``args.threads`` threads."""
    t_start = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1 if args.threads == 1 else 2)
    from sparkdl_lite.core import training

    x, y = load_data(args)
    x = x[..., None]  # N x 28 x 28 x 1 uint8, as fitMultiple collects image structs
    t0 = time.perf_counter()
    runs = []
    for i, cfg in enumerate(configs(args)):
        r = training.train(x, y, num_classes=10, scale=1 / 255.0, threads=args.threads, **cfg)
        fit_s = sum(h["seconds"] for h in r.history)
        runs.append({"index": i, "seconds": r.seconds, "fit_seconds": fit_s, "accuracy": r.history[-1]["accuracy"]})
        print(f"  ({args.variant}) config {i}: {r.seconds:.1f} s (epochs {fit_s:.1f} s), train accuracy "
              f"{r.history[-1]['accuracy']:.3f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    return {"variant": args.variant, "threads": args.threads, "wall_s": wall, "startup_s": t0 - t_start, "runs": runs}


def child_plain_shard(args: argparse.Namespace) -> Dict[str, Any]:
    """One process of (p): load TF and the data, say READY, wait for GO, train configs shard, shard+n, ..."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from sparkdl_lite.core import training

    x, y = load_data(args)
    x = x[..., None]
    cfgs = configs(args)
    print("READY", flush=True)
    sys.stdin.readline()  # the parent starts every shard at once
    t0 = time.perf_counter()
    runs = []
    for i in range(args.shard, len(cfgs), args.shards):
        r = training.train(x, y, num_classes=10, scale=1 / 255.0, threads=1, **cfgs[i])
        runs.append({"index": i, "seconds": r.seconds, "fit_seconds": sum(h["seconds"] for h in r.history),
                     "accuracy": r.history[-1]["accuracy"]})
        print(f"  (p) shard {args.shard}: config {i}: {r.seconds:.1f} s", file=sys.stderr, flush=True)
    return {"variant": "p", "shard": args.shard, "wall_s": time.perf_counter() - t0, "runs": runs}


def _stage_tasks(sc: Any, stage_id: int) -> List[Dict[str, Any]]:
    """Task index, executor, duration and launch time of one stage, from Spark's status store."""
    store = sc._jsc.sc().statusStore()  # noqa: SLF001 - PySpark has no API for task durations
    out = []
    it = store.taskList(stage_id, 0, 100000).iterator()
    while it.hasNext():
        t = it.next()
        if t.duration().isEmpty() or t.status() != "SUCCESS":
            continue
        out.append({"index": int(t.index()), "executorId": str(t.executorId()), "duration_s": t.duration().get() / 1000.0,
                    "launch_ms": int(t.launchTime().getTime())})
    return out


def _training_stages(sc: Any, group: str) -> List[Dict[str, Any]]:
    """The stages of TFClassifier's training jobs in job group ``group``, with their tasks."""
    tracker = sc.statusTracker()
    store = sc._jsc.sc().statusStore()  # noqa: SLF001
    stages = []
    for job_id in sorted(tracker.getJobIdsForGroup(group)):
        for sid in tracker.getJobInfo(job_id).stageIds:
            sd = store.lastStageAttempt(sid)
            desc = sd.description().get() if not sd.description().isEmpty() else ""
            if ": train " not in desc:
                continue
            sub = sd.submissionTime().get().getTime() if not sd.submissionTime().isEmpty() else None
            done = sd.completionTime().get().getTime() if not sd.completionTime().isEmpty() else None
            stages.append({"stage": sid, "description": desc, "submitted_ms": sub, "completed_ms": done,
                           "tasks": _stage_tasks(sc, sid)})
    return stages


PARTS = ("worker", "tensorflow", "broadcast", "build", "fit_setup", "freeze", "transfer")


def _parts(info: Dict[str, Any], fit_s: float, task_s: float, cold: bool) -> Dict[str, float]:
    """Split one task's time that is not an epoch into the costs issue #6 names.

    worker: Python worker start and task deserialisation before our code runs (``startup.workerAge``
    for the first task of a worker, ``cold``, at most the task's time outside ``train()``; else 0); tensorflow: its import; broadcast: reading the data;
    build: model construction and compile; fit_setup: Keras ``fit`` time outside the epochs'
    callbacks (data adapter, iterator); freeze: exporting the inference graph;
    transfer: the rest of the task's wall time (graph bytes to Arrow, result to the driver,
    Spark's task launch).
    """
    st, ph = info.get("startup") or {}, info.get("phases") or {}
    # A worker the library started early (its TF import overlapping the driver's collect) is older than
    # the task: only the part of its age inside this task's wall time, outside train(), counts.
    inside = max(0.0, task_s - info["seconds"] - st.get("tensorflow", 0.0) - st.get("broadcast", 0.0))
    parts = {"worker": min(st.get("workerAge") or 0.0, inside) if cold else 0.0, "tensorflow": st.get("tensorflow", 0.0),
             "broadcast": st.get("broadcast", 0.0), "build": ph.get("import", 0.0) + ph.get("build", 0.0),
             "fit_setup": max(0.0, ph.get("fit", fit_s) - fit_s), "freeze": ph.get("freeze", 0.0)}
    parts["transfer"] = max(0.0, task_s - info["seconds"] - parts["worker"] - parts["tensorflow"] - parts["broadcast"])
    return parts


def _overheads(models: List[Any], tasks: List[Dict[str, Any]], seen_pids: set) -> List[Dict[str, Any]]:
    """Per model: task time, training time and their difference; ``cold`` marks the first task of a
    Python worker (it pays the worker start and the TF import; later tasks of that worker do not)."""
    by_index = {t["index"]: t for t in tasks}
    rows = []
    order = sorted(range(len(models)), key=lambda i: (by_index.get(i) or {}).get("launch_ms", 0))
    cold = {}
    for i in order:
        pid = models[i].trainingInfo.get("pid")
        cold[i] = pid not in seen_pids
        seen_pids.add(pid)
    for i, m in enumerate(models):
        info = m.trainingInfo
        task = by_index.get(info.get("partitionId", i))
        fit_s = sum(h.get("seconds", 0.0) for h in m.history)
        row = {"index": i, "executorId": info.get("executorId"), "pid": info.get("pid"), "train_s": info.get("seconds"),
               "fit_s": fit_s, "task_s": task["duration_s"] if task else None, "cold": cold[i]}
        if task:
            row["outside_train_s"] = task["duration_s"] - info["seconds"]  # broadcast, worker, TF import, transfer
            row["inside_not_fit_s"] = info["seconds"] - fit_s  # model build, first trace, freeze
            row["outside_share"] = row["outside_train_s"] / task["duration_s"]
            row["overhead_share"] = (task["duration_s"] - fit_s) / task["duration_s"]
            row["parts"] = _parts(info, fit_s, task["duration_s"], cold[i])
        rows.append(row)
    return rows


def _fit_multiple(clf: Any, df: Any, maps: List[Any]) -> Any:
    """``fitMultiple`` timed from the call: (models by index, wall / driver-prepare / train-job seconds)."""
    t0 = time.perf_counter()
    it = clf.fitMultiple(df, maps)
    t1 = time.perf_counter()
    models: List[Any] = [None] * len(maps)
    for index, model in it:
        models[index] = model
    t2 = time.perf_counter()
    return models, {"wall_s": t2 - t0, "driver_prepare_s": t1 - t0, "train_job_s": t2 - t1}


def child_spark(args: argparse.Namespace) -> Dict[str, Any]:
    """(c) / (d) fitMultiple on ``args.master``; with ``--cv`` also CrossValidator (3 folds)."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator

    from sparkdl_lite import images_from_numpy

    cluster = args.master.startswith("local-cluster")
    conf = {"spark.driver.memory": "2g", "spark.executor.memory": args.executor_memory,
            "spark.task.cpus": "1", "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1"}
    t_start = time.perf_counter()
    spark = common.spark_session(args.master, conf, app=f"sparkdl-lite-tune-{args.variant}")
    sc = spark.sparkContext
    slots = int(args.slots)
    waited = common.wait_for_executors(spark, slots if cluster else 0) if cluster else 0.0
    app = sc.applicationId
    result: Dict[str, Any] = {"variant": args.variant, "master": args.master, "slots": slots,
                              "session_start_s": time.perf_counter() - t_start, "executor_wait_s": waited}
    try:
        x, y = load_data(args)
        df = images_from_numpy(spark, x, y, num_partitions=slots).cache()
        df.count()
        # JVM warm-up only: the training job's Python workers (SQL Arrow workers, a daemon of their
        # own) start inside the timed fit, as on a user's first fit; --warm times a second fit.
        spark.range(0, slots, 1, slots).selectExpr("id").toPandas()
        clf = make_classifier(args)
        maps = grid_maps(clf, args)

        seen: set = set()  # Python worker pids that have trained before: their later tasks are warm

        def timed_fit(group: str) -> Dict[str, Any]:
            sc.setJobGroup(group, "fitMultiple")
            models, times = _fit_multiple(clf, df, maps)
            stages = _training_stages(sc, group)
            return {**times, "runs": _overheads(models, [t for st in stages for t in st["tasks"]], seen), "stages": stages}

        result.update(timed_fit(f"fit-{args.variant}"))
        if args.warm:  # the same fit again in this session: the Python workers have TF loaded now
            result["warm"] = timed_fit(f"fit-{args.variant}-warm")

        if args.cv:
            sc.setJobGroup(f"cv-{args.variant}", "CrossValidator")
            cv = CrossValidator(estimator=clf, estimatorParamMaps=maps, numFolds=args.folds, parallelism=len(maps),
                                evaluator=MulticlassClassificationEvaluator(metricName="accuracy"), seed=0,
                                collectSubModels=True)
            t0 = time.perf_counter()
            cv_model = cv.fit(df)
            cv_wall = time.perf_counter() - t0
            cv_stages = _training_stages(sc, f"cv-{args.variant}")
            sub = [m for fold in cv_model.subModels for m in fold]
            busy = sum(m.trainingInfo["seconds"] for m in sub) + cv_model.bestModel.trainingInfo["seconds"]
            task_busy = sum(t["duration_s"] for s in cv_stages for t in s["tasks"])
            train_windows = sum((s["completed_ms"] - s["submitted_ms"]) / 1000.0 for s in cv_stages
                                if s["submitted_ms"] and s["completed_ms"])
            result["cv"] = {"folds": args.folds, "wall_s": cv_wall, "training_s": busy, "task_s": task_busy,
                            "idle_core_share": 1.0 - busy / (cv_wall * slots),
                            "idle_core_share_tasks": 1.0 - task_busy / (cv_wall * slots),
                            "no_training_job_share": 1.0 - train_windows / cv_wall,
                            "training_jobs": len(cv_stages), "avg_metrics": list(cv_model.avgMetrics),
                            "best_refit_s": cv_model.bestModel.trainingInfo["seconds"]}
    finally:
        spark.stop()
        if cluster:
            common.remove_local_cluster_work(app)
    return result


def child_connect(args: argparse.Namespace) -> Dict[str, Any]:
    """(e) fitMultiple on a Spark Connect session served from ``args.master`` (wall times; no status tracker)."""
    from pyspark.sql import SparkSession

    from sparkdl_lite import images_from_numpy

    t_start = time.perf_counter()
    spark = SparkSession.builder.remote(args.master).getOrCreate()
    result: Dict[str, Any] = {"variant": args.variant, "master": f"remote {args.master}", "slots": int(args.slots),
                              "session_start_s": time.perf_counter() - t_start}
    try:
        x, y = load_data(args)
        df = images_from_numpy(spark, x, y, num_partitions=int(args.slots)).cache()
        df.count()
        spark.range(0, int(args.slots), 1, int(args.slots)).selectExpr("id").toPandas()
        clf = make_classifier(args)
        maps = grid_maps(clf, args)

        def timed_fit() -> Dict[str, Any]:
            models, times = _fit_multiple(clf, df, maps)
            return {**times, "runs": [{"train_s": m.trainingInfo["seconds"], "seconds": m.trainingInfo["seconds"]}
                                      for m in models]}

        result.update(timed_fit())
        if args.warm:
            result["warm"] = timed_fit()
    finally:
        spark.stop()
    return result


# ----------------------------------------------------------------------------------------- parent
def run_child(variant: str, extra: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    cmd = _child_cmd(variant, args) + extra
    print(f"== ({variant}) {' '.join(extra)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: List[str] = []
    t = common.pump_stderr(proc, err_lines)
    try:
        out_text, _ = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"tune.py: child ({variant}) ran past --timeout {args.timeout} s") from None
    t.join(timeout=5)
    lines = [ln for ln in out_text.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"tune.py: child ({variant}) failed with exit code {proc.returncode}:\n{out_text[-3000:]}"
                         f"\n{''.join(err_lines[-60:])}")
    out = json.loads(lines[-1][len(RESULT):])
    out["process_s"] = time.perf_counter() - t0
    return out


def _child_cmd(variant: str, args: argparse.Namespace) -> List[str]:
    return [sys.executable, os.path.abspath(__file__), "--child", variant, "--sample", str(args.sample),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--learning-rates", args.learning_rates,
            "--hidden", args.hidden, "--folds", str(args.folds), "--executor-memory", args.executor_memory]


def run_plain_parallel(args: argparse.Namespace, shards: int) -> Dict[str, Any]:
    """(p): ``shards`` plain processes, started together once each has loaded TF and the data."""
    print(f"== (p) {shards} plain processes, TF on 1 thread each", flush=True)
    procs, errs = [], []
    for i in range(shards):
        cmd = _child_cmd("p", args) + ["--shard", str(i), "--shards", str(shards)]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        errs.append([])
        common.pump_stderr(p, errs[-1])
        procs.append(p)
    for i, p in enumerate(procs):
        line = p.stdout.readline()
        if line.strip() != "READY":
            for q in procs:
                q.kill()
            raise SystemExit(f"tune.py: (p) shard {i} did not start: {line!r}\n{''.join(errs[i][-40:])}")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("GO\n")
        p.stdin.flush()
    shards_out = []
    for i, p in enumerate(procs):
        out_text, _ = p.communicate(timeout=args.timeout)
        lines = [ln for ln in out_text.splitlines() if ln.startswith(RESULT)]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"tune.py: (p) shard {i} failed ({p.returncode}):\n{out_text[-2000:]}\n{''.join(errs[i][-40:])}")
        shards_out.append(json.loads(lines[-1][len(RESULT):]))
    wall = time.perf_counter() - t0
    runs = sorted((r for sh in shards_out for r in sh["runs"]), key=lambda r: r["index"])
    return {"variant": "p", "processes": shards, "wall_s": wall, "runs": runs,
            "shard_wall_s": [sh["wall_s"] for sh in shards_out]}


def _variant(res: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    """The result of variant ``name``; ``c_warm`` / ``d_warm`` are the second fits inside (c) / (d)."""
    if name.endswith("_warm"):
        return (res.get(name[:-len("_warm")]) or {}).get("warm")
    return res.get(name)


def summarize(res: Dict[str, Any], slots: int) -> Dict[str, Any]:
    s: Dict[str, Any] = {}
    a, b = res.get("a"), res.get("b")
    pp = res.get("p")
    for v in ("p", "c", "c_warm", "d", "d_warm", "e", "e_warm"):
        r = _variant(res, v)
        if not r:
            continue
        row = {"wall_s": r["wall_s"]}
        if a:
            row["speedup_vs_a"] = a["wall_s"] / r["wall_s"]
        if b:
            row["speedup_vs_b"] = b["wall_s"] / r["wall_s"]
            row["efficiency"] = row["speedup_vs_b"] / slots
        if pp and v != "p":
            row["vs_plain_processes"] = pp["wall_s"] / r["wall_s"]
        runs = [x for x in r["runs"] if x.get("task_s")] if v != "p" else []
        if runs:
            row["mean_task_s"] = float(np.mean([x["task_s"] for x in runs]))
            row["mean_train_s"] = float(np.mean([x["train_s"] for x in runs]))
            row["outside_share"] = float(np.mean([x["outside_share"] for x in runs]))
            row["outside_s"] = float(np.mean([x["outside_train_s"] for x in runs]))
            row["build_freeze_s"] = float(np.mean([x["inside_not_fit_s"] for x in runs]))
            row["overhead_share"] = float(np.mean([x["overhead_share"] for x in runs]))
            for label, sel in (("cold", [x for x in runs if x["cold"]]), ("warm", [x for x in runs if not x["cold"]])):
                if sel:
                    row[f"{label}_tasks"] = len(sel)
                    row[f"{label}_outside_s"] = float(np.mean([x["outside_train_s"] for x in sel]))
                    row[f"{label}_outside_share"] = float(np.mean([x["outside_share"] for x in sel]))
                    row[f"{label}_parts"] = {k: float(np.mean([x["parts"][k] for x in sel])) for k in PARTS}
                    row[f"{label}_task_s"] = float(np.mean([x["task_s"] for x in sel]))
        s[v] = row
    if b:
        s["b_min_train_s"] = min(r["seconds"] for r in b["runs"])
    return s


def report(res: Dict[str, Any], summ: Dict[str, Any], slots: int) -> str:
    names = {"a": "(a) sequential, TF on all cores", "b": "(b) sequential, TF on 1 thread",
             "p": f"(p) {slots} plain processes, no Spark", "c": "(c) fitMultiple, local[2]",
             "d": "(d) fitMultiple, local-cluster[2,1,2048]", "c_warm": "(c) again, same session (warm workers)",
             "d_warm": "(d) again, same session (warm workers)", "e": "(e) fitMultiple, Spark Connect (local[2])",
             "e_warm": "(e) again, same Connect session (warm workers)"}
    rows = []
    for v in ("a", "b", "p", "c", "c_warm", "d", "d_warm", "e", "e_warm"):
        r = _variant(res, v)
        if not r:
            continue
        sm = summ.get(v, {})
        rows.append([names[v], f"{r['wall_s']:.1f}", f"{sm['speedup_vs_a']:.2f}" if "speedup_vs_a" in sm else "-",
                     f"{sm['speedup_vs_b']:.2f}" if "speedup_vs_b" in sm else "-",
                     f"{sm['efficiency']:.2f}" if "efficiency" in sm else "-",
                     f"{sm['outside_s']:.2f} s ({sm['outside_share']:.1%})" if "outside_s" in sm else "-",
                     f"{sm['cold_outside_s']:.2f} s ({sm['cold_outside_share']:.1%})" if "cold_outside_s" in sm else "-",
                     f"{sm['warm_outside_s']:.2f} s ({sm['warm_outside_share']:.1%})" if "warm_outside_s" in sm else "-",
                     f"{sm['build_freeze_s']:.2f} s" if "build_freeze_s" in sm else "-",
                     f"{sm['vs_plain_processes']:.2f}" if "vs_plain_processes" in sm else "-"])
    out = [common.table(rows, ["variant", "wall s", "speed-up vs (a)", "vs (b)", f"efficiency (/{slots})",
                               "task overhead outside train(), all", "cold worker", "warm worker",
                               "build+freeze in train()", "speed vs (p)"])]
    for v in ("a", "b", "p", "c", "c_warm", "d", "d_warm", "e", "e_warm"):
        r = _variant(res, v)
        if r:
            per = ", ".join(f"{x.get('train_s', x.get('seconds')):.1f}" for x in r["runs"])
            out.append(f"{v}: training seconds per configuration: {per}")
    parts = []
    for v in ("c", "c_warm", "d", "d_warm"):
        for label in ("cold", "warm"):
            sm = summ.get(v, {})
            if f"{label}_parts" in sm:
                pt, task = sm[f"{label}_parts"], sm[f"{label}_task_s"]
                parts.append([f"{v} {label} ({sm[f'{label}_tasks']})", f"{task:.1f}"]
                             + [f"{pt[k]:.2f} ({pt[k] / task:.1%})" for k in PARTS]
                             + [f"{sum(pt.values()):.2f} ({sum(pt.values()) / task:.1%})"])
    if parts:
        out.append("Per-task overhead, mean seconds (share of the task):")
        out.append(common.table(parts, ["tasks", "task s"] + list(PARTS) + ["all overhead"]))
    cv = (res.get("c") or {}).get("cv")
    if cv:
        out.append(f"CrossValidator ({cv['folds']} folds, {cv['training_jobs']} training jobs, local[2]): wall {cv['wall_s']:.1f} s, "
                   f"training {cv['training_s']:.1f} core-s; idle core share {cv['idle_core_share']:.1%} "
                   f"(by task time {cv['idle_core_share_tasks']:.1%}); no training job running {cv['no_training_job_share']:.1%} "
                   f"of the wall time; best-model refit {cv['best_refit_s']:.1f} s on one core")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--sample", type=int, default=6000, help="Fashion-MNIST training images (default 6000)")
    ap.add_argument("--epochs", type=int, default=6, help="epochs per configuration (default 6: ~30 s on one core here)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--learning-rates", default="0.001,0.003", help="grid of learningRate (default 0.001,0.003)")
    ap.add_argument("--hidden", default="64,128", help="grid of hiddenLayers, one dense layer each (default 64,128)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--master", default="local[2]", help="master of (c) and CrossValidator (default local[2])")
    ap.add_argument("--cluster", default="local-cluster[2,1,2048]", help="master of (d) (default local-cluster[2,1,2048])")
    ap.add_argument("--executor-memory", default="1536m", help="spark.executor.memory (<= the local-cluster worker memory)")
    ap.add_argument("--cores", type=int, default=None, help="TF threads for (a) (default: task slots of --master)")
    ap.add_argument("--skip", default="", help=f"comma-separated variants to skip: {','.join(VARIANTS)}")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child process")
    ap.add_argument("--json", default=None, help="write every number to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--slots", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--cv", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--shards", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        args.variant = args.child
        if args.child in ("a", "b"):
            out = child_sequential(args)
        elif args.child == "p":
            out = child_plain_shard(args)
        elif args.child == "e":
            out = child_connect(args)
        else:
            out = child_spark(args)
        print(RESULT + json.dumps(out), flush=True)
        return out

    from infer import total_slots

    slots = total_slots(args.master)
    cluster_slots = total_slots(args.cluster)
    cores = args.cores or slots
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    info = common.machine()
    res: Dict[str, Any] = {}
    t_all = time.perf_counter()
    if "a" not in skip:
        res["a"] = run_child("a", ["--threads", str(cores)], args)
    if "b" not in skip:
        res["b"] = run_child("b", ["--threads", "1"], args)
    if "p" not in skip:
        res["p"] = run_plain_parallel(args, slots)
    warm = [] if "warm" in skip else ["--warm"]
    if "c" not in skip or "cv" not in skip:
        extra = ["--master", args.master, "--slots", str(slots)] + warm + (["--cv"] if "cv" not in skip else [])
        res["c"] = run_child("c", extra, args)
    if "d" not in skip:
        res["d"] = run_child("d", ["--master", args.cluster, "--slots", str(cluster_slots)] + warm, args)
    if "e" not in skip:
        res["e"] = run_child("e", ["--master", args.master, "--slots", str(slots)] + warm, args)
    summ = summarize(res, slots)
    payload = {"machine": info, "args": {k: v for k, v in vars(args).items()
                                         if k not in ("child", "threads", "variant", "cv", "warm", "shard", "shards")},
               "command": " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
               "task_slots": slots, "results": res, "summary": summ, "wall_s": time.perf_counter() - t_all}
    payload["machine"]["loadavg_end"] = os.getloadavg()
    print(report(res, summ, slots))
    if summ.get("b_min_train_s", 99) < 20:
        print(f"note: the shortest training in (b) took {summ['b_min_train_s']:.1f} s (< 20 s); raise --epochs or --sample")
    print(f"total {payload['wall_s']:.0f} s; load average at start {info.get('loadavg_start')}, end {payload['machine']['loadavg_end']}")
    common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
