"""Inference throughput: raw TensorFlow vs predict_batch_udf vs TFImageTransformer vs TFTransformer.

For each model (a small CNN on 28 x 28 x 1 Fashion-MNIST images, MobileNetV2 with random weights on
224 x 224 x 3 crops of scikit-learn's sample photos) the same images go through, in one process:

raw       the frozen graph called in this process on float32 numpy batches (model-ready input),
          TF given as many threads as Spark has task slots in total: the limit;
pbu       ``pyspark.ml.functions.predict_batch_udf`` fed flat ``array<float>`` model-ready rows,
          as its docs show (``input_tensor_shapes``; ``make_predict_fn`` loads the model from a
          file); its predict function runs the same frozen graph; TF keeps its default threads;
pbu1      the same, with TF given the task's CPUs (1 thread), as our stages do;
image     ``TFImageTransformer`` fed Spark image structs (uint8 bytes, OpenCV order), with the
          cast / channel swap / scaling fused in front of the graph;
tensor    ``TFTransformer`` fed the same ``array<float>`` rows as pbu;

each Spark path reading its input from parquet on every pass (``-parquet``) and from a DataFrame
cached in memory (``-cached``). Each pass runs ``select(sum(size(output)))`` so Spark runs the UDF on
every row and moves every output. Rates are images/s, median of ``--repeats`` interleaved passes.
Each Spark path runs in its own pool of Python workers (a distinct ``sc.environment`` entry), so TF
thread settings and cached models never leak from one path into another; a small untimed pass
right before each timed one makes sure that pool's workers are up and hold the model.

    .venv/bin/python benchmarks/infer.py                      # both models, defaults (~9 min on 2 quiet cores)
    .venv/bin/python benchmarks/infer.py --models small --rows 20000 --repeats 5 --json out/infer.json
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402

MODELS = ("small", "mobilenet")
DEFAULT_ROWS = {"small": 30000, "mobilenet": 480}
DEFAULT_BATCH = {"small": 512, "mobilenet": 64}
# Rows per Arrow batch sent to the Python worker (spark.sql.execution.arrow.maxRecordsPerBatch): a
# few graph batches per Arrow batch amortises the per-batch round trip on the small model; one
# graph batch per Arrow batch keeps a MobileNetV2 batch of floats (64 x 602 KB = 38 MB) bounded.
DEFAULT_ARROW = {"small": 2048, "mobilenet": 64}
KINDS = ("pbu", "pbu1", "image", "tensor")
SOURCE_COL = {"pbu": "x", "pbu1": "x", "image": "image", "tensor": "x"}
POOL_ENV = "SPARKDL_LITE_BENCH_POOL"


def path_names(kinds) -> List[str]:
    return ["raw"] + [f"{k}-parquet" for k in kinds] + [f"{k}-cached" for k in kinds]


def per_model(value: Optional[str], default: Dict[str, int]) -> Dict[str, int]:
    """``"600"`` -> every model 600; ``"small=60000,mobilenet=800"`` -> per model; None -> default."""
    out = dict(default)
    if value is None:
        return out
    if "=" not in value:
        return {m: int(value) for m in out}
    for part in value.split(","):
        k, v = part.split("=", 1)
        if k.strip() not in out:
            raise SystemExit(f"infer.py: unknown model {k.strip()!r} in {value!r}; expected {list(out)}.")
        out[k.strip()] = int(v)
    return out


def total_slots(master: str) -> int:
    """Task slots of a master URL: local[N], local[*], local-cluster[E,C,M]; else the CPU count."""
    m = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if m:
        return (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))
    m = re.fullmatch(r"local-cluster\[(\d+),\s*(\d+),\s*(\d+)\]", master)
    if m:
        return int(m.group(1)) * int(m.group(2))
    return 1 if master == "local" else (os.cpu_count() or 1)


class Case:
    """One model, its frozen graph and its inputs in every form the paths need."""

    def __init__(self, name: str, rows: int, batch: int, workdir: str, files: int) -> None:
        from sparkdl_lite import TFGraph

        self.name = name
        self.batch = batch
        t0 = time.perf_counter()
        if name == "small":
            model = common.small_cnn()
            gray = common.fashion_test_images(rows)  # N x 28 x 28 uint8
            self.images_bgr = gray[..., None]
            self.floats = gray[..., None].astype(np.float32) / 255.0
            self.channel_order, self.scale, self.offset = "L", 1 / 255.0, 0.0
        else:
            model = common.mobilenet_v2()
            rgb = common.photo_crops(rows)  # N x 224 x 224 x 3 uint8 RGB
            self.images_bgr = np.ascontiguousarray(rgb[..., ::-1])  # Spark images are BGR
            self.floats = rgb.astype(np.float32) / 127.5 - 1.0  # MobileNetV2's preprocess_input
            self.channel_order, self.scale, self.offset = "RGB", 1 / 127.5, -1.0
        self.graph = TFGraph.from_keras(model)
        self.in_tensor = self.graph.input_names[0]
        self.out_tensor = self.graph.output_names[0]
        self.in_shape = [int(d) for d in self.floats.shape[1:]]
        self.rows = rows
        self.graph_path = os.path.join(workdir, f"{name}.pb")
        with open(self.graph_path, "wb") as f:
            f.write(self.graph.to_bytes())
        self.float_path = os.path.join(workdir, f"{name}-floats")
        self.image_path = os.path.join(workdir, f"{name}-images")
        self.float_bytes = common.write_float_parquet(self.float_path, self.floats, files=files)
        self.image_bytes = common.write_image_parquet(self.image_path, self.images_bgr, files=files)
        # A small set with the same layout warms up every worker (graph load, TF start) before timing.
        warm = files * min(batch, 32)
        self.warm_float_path = os.path.join(workdir, f"{name}-warm-floats")
        self.warm_image_path = os.path.join(workdir, f"{name}-warm-images")
        common.write_float_parquet(self.warm_float_path, self.floats[:warm], files=files)
        common.write_image_parquet(self.warm_image_path, self.images_bgr[:warm], files=files)
        self.warm_rows = min(warm, rows)
        self.setup_s = time.perf_counter() - t0


def make_pbu(case: Case, task_threads: bool):
    """predict_batch_udf as its docs show: make_predict_fn loads the model from a file on the worker."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    graph_path, in_tensor, out_tensor = case.graph_path, case.in_tensor, case.out_tensor

    def make_predict_fn():
        from pyspark import TaskContext

        from sparkdl_lite import TFGraph
        from sparkdl_lite.core import runtime

        if task_threads:  # what our stages do; the docs leave TF's default (all cores per worker)
            ctx = TaskContext.get()
            runtime.configure_threads(int(ctx.cpus()) if ctx is not None else None)
        with open(graph_path, "rb") as f:
            run = TFGraph.from_bytes(f.read()).load([out_tensor], [in_tensor])

        def predict(inputs: np.ndarray) -> np.ndarray:
            return run({in_tensor: inputs})[out_tensor]

        return predict

    return predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=case.batch,
                             input_tensor_shapes=[case.in_shape])


def spark_paths(case: Case) -> Dict[str, Callable[[Any], Any]]:
    """path -> fn(input DataFrame) -> DataFrame with an ``out`` array column."""
    from pyspark.sql import functions as F

    from sparkdl_lite import TFImageTransformer, TFTransformer

    pbu, pbu1 = make_pbu(case, False), make_pbu(case, True)
    image = TFImageTransformer(graph=case.graph, inputCol="image", outputCol="out", outputMode="array",
                               channelOrder=case.channel_order, scale=case.scale, offset=case.offset,
                               batchSize=case.batch)
    tensor = TFTransformer(graph=case.graph, inputMapping={"x": case.in_tensor}, outputMapping={case.out_tensor: "out"},
                           outputMode="array", batchSize=case.batch)
    return {"pbu": lambda df: df.select(pbu(F.col("x")).alias("out")),
            "pbu1": lambda df: df.select(pbu1(F.col("x")).alias("out")),
            "image": lambda df: image.transform(df).select("out"),
            "tensor": lambda df: tensor.transform(df).select("out")}


def consume(df: Any) -> int:
    """Run the UDF on every row and bring back one number (a bare count() could prune the column)."""
    from pyspark.sql import functions as F

    return int(df.select(F.sum(F.size("out"))).collect()[0][0] or 0)


def checksum(df: Any) -> float:
    from pyspark.sql import functions as F

    return float(df.select(F.sum(F.col("out")[3])).collect()[0][0])


def run_case(spark: Any, case: Case, repeats: int, arrow_batch: int, slots: int, kinds: List[str]) -> Dict[str, Any]:
    from pyspark import StorageLevel

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch))
    from sparkdl_lite.runner import engine

    connect = engine.is_connect(spark)
    raw_run = case.graph.load()
    all_fns = spark_paths(case)
    fns = {k: all_fns[k] for k in kinds}
    paths = path_names(kinds)

    def reader(kind: str, warm: bool = False):
        path = {"x": case.warm_float_path if warm else case.float_path,
                "image": case.warm_image_path if warm else case.image_path}[kind]
        return spark.read.parquet(path)

    def spark_pass(kind: str, df: Any, fn: Callable[[Any], Any] = consume) -> Any:
        if connect:  # no SparkContext: the paths share one pool of Python workers
            return fn(fns[kind](df))
        sc = spark.sparkContext
        sc.environment[POOL_ENV] = kind  # this path's own Python worker pool
        try:
            return fn(fns[kind](df))
        finally:
            sc.environment.pop(POOL_ENV, None)

    def raw_pass(x: np.ndarray) -> np.ndarray:
        outs = [raw_run({case.in_tensor: x[i:i + case.batch]})[case.out_tensor] for i in range(0, len(x), case.batch)]
        return np.concatenate(outs)

    # Warm-up and a correctness check: every path must give raw TF's outputs on the same rows.
    want = float(raw_pass(case.floats[:case.warm_rows])[:, 3].astype(np.float64).sum())
    check, start_s = {}, {}
    for kind in fns:
        t0 = time.perf_counter()
        got = spark_pass(kind, reader(SOURCE_COL[kind], warm=True), checksum)
        t1 = time.perf_counter()
        spark_pass(kind, reader(SOURCE_COL[kind], warm=True), checksum)
        # first pass on fresh workers (Python start, TF import, model load) minus the same pass warm
        start_s[kind] = {"cold_pass_s": t1 - t0, "warm_pass_s": time.perf_counter() - t1}
        check[kind] = got
        if not np.isclose(got, want, rtol=1e-3, atol=1e-3 * case.warm_rows):
            raise SystemExit(f"infer.py: {case.name}/{kind} disagrees with raw TF on the warm-up rows: "
                             f"sum of output[3] = {got} vs {want}")
    print(f"  [{case.name}] warm-up ok: sum(out[:,3]) raw={want:.4f} " +
          " ".join(f"{k}={v:.4f}" for k, v in check.items()), flush=True)

    cached = {}
    for kind in sorted({SOURCE_COL[k] for k in kinds}):
        df = reader(kind).persist(StorageLevel.MEMORY_ONLY)
        t0 = time.perf_counter()
        n = df.count()
        cached[kind] = df
        print(f"  [{case.name}] cached {kind}: {n} rows, {engine.num_partitions(df)} partitions, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    parts = {kind: engine.num_partitions(reader(kind)) for kind in cached}

    def timed(path: str) -> float:
        if path == "raw":
            t0 = time.perf_counter()
            raw_pass(case.floats)
            return case.rows / (time.perf_counter() - t0)
        kind, source = path.split("-")
        # Untimed: starts this pool's workers again if Spark stopped them (idle > 1 min) and loads the model.
        spark_pass(kind, reader(SOURCE_COL[kind], warm=True))
        t0 = time.perf_counter()
        df = cached[SOURCE_COL[kind]] if source == "cached" else reader(SOURCE_COL[kind])
        n = spark_pass(kind, df)
        dt = time.perf_counter() - t0
        width = n // case.rows
        if n != case.rows * width or width < 1:
            raise SystemExit(f"infer.py: {path} returned {n} output values for {case.rows} rows")
        return case.rows / dt

    rates: Dict[str, List[float]] = {p: [] for p in paths}
    for r in range(repeats):
        order = paths[r % len(paths):] + paths[:r % len(paths)]  # rotate so no path always runs first
        for path in order:
            rates[path].append(timed(path))
        print(f"  [{case.name}] repeat {r + 1}/{repeats}: " +
              " ".join(f"{p}={rates[p][-1]:.0f}" for p in paths), flush=True)
    for df in cached.values():
        df.unpersist()
    med = {p: common.median(v) for p, v in rates.items()}
    ratios = {}
    for p in paths:
        ratios[p] = {"vs_raw": med[p] / med["raw"]}
        if p != "raw" and "pbu" in kinds:
            ratios[p]["vs_pbu"] = med[p] / med["pbu-" + p.split("-")[1]]
        if p != "raw" and "pbu1" in kinds:
            ratios[p]["vs_pbu1"] = med[p] / med["pbu1-" + p.split("-")[1]]
    return {"rows": case.rows, "batch_size": case.batch, "arrow_max_records_per_batch": arrow_batch,
            "raw_tf_threads": slots, "partitions": parts, "parquet_bytes": {"floats": case.float_bytes,
            "images": case.image_bytes}, "setup_s": round(case.setup_s, 1), "paths": paths, "images_per_s": rates,
            "median_images_per_s": med, "ratios": ratios, "warmup_checksums": {"raw": want, **check},
            "worker_start": start_s, "warm_rows": case.warm_rows}


def report(results: Dict[str, Any]) -> str:
    lines = []
    for name, res in results["models"].items():
        lines.append(f"\n{name}: {res['rows']} images, batch {res['batch_size']}, "
                     f"arrow.maxRecordsPerBatch {res['arrow_max_records_per_batch']}, raw TF threads {res['raw_tf_threads']}")
        rows = []
        for p in res["paths"]:
            r = res["ratios"][p]
            rows.append([p, f"{res['median_images_per_s'][p]:.1f}",
                         " ".join(f"{v:.0f}" for v in res["images_per_s"][p]),
                         f"{r['vs_raw']:.2f}", f"{r['vs_pbu']:.2f}" if "vs_pbu" in r else "-",
                         f"{r['vs_pbu1']:.2f}" if "vs_pbu1" in r else "-"])
        lines.append(common.table(rows, ["path", "images/s (median)", "each repeat", "vs raw TF",
                                         "vs pbu (same source)", "vs pbu1 (same source)"]))
        if res.get("worker_start"):
            lines.append(f"pass over {res['warm_rows']} rows on fresh Python workers (start, TF import, model load) vs warm: " +
                         ", ".join(f"{k} {v['cold_pass_s']:.1f} s vs {v['warm_pass_s']:.1f} s" for k, v in res["worker_start"].items()))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--rows", help=f"images per pass: N for every model, or small=N,mobilenet=M (default {DEFAULT_ROWS})")
    ap.add_argument("--batch-size", help=f"rows per graph call, same forms (default {DEFAULT_BATCH})")
    ap.add_argument("--arrow-batch", help=f"spark.sql.execution.arrow.maxRecordsPerBatch, same forms (default {DEFAULT_ARROW})")
    ap.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    ap.add_argument("--remote", default=None, help="run on Spark Connect instead: e.g. local[2] (a local Connect server) "
                                                   "or sc://host:port; the paths then share one Python worker pool")
    ap.add_argument("--models", default="small,mobilenet", help="comma-separated subset of small,mobilenet")
    ap.add_argument("--paths", default=",".join(KINDS), help=f"Spark paths to run, a subset of {','.join(KINDS)} (raw always runs)")
    ap.add_argument("--pipelined", action="store_true", help="set spark.python.udf.pipelined.enabled=true (Spark >= 4.1)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved passes per path; the median is reported (default 3)")
    ap.add_argument("--files", type=int, default=None, help="parquet files per data set (default: 2 x task slots)")
    ap.add_argument("--driver-memory", default="6g", help="spark.driver.memory (holds the cached DataFrames in local mode)")
    ap.add_argument("--workdir", default=None, help="where the parquet files go (default: a temporary directory, removed)")
    ap.add_argument("--json", default=None, help="write every number to this JSON file")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"infer.py: unknown model {m!r}; expected some of {list(MODELS)}.")
    kinds = [k.strip() for k in args.paths.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            raise SystemExit(f"infer.py: unknown path {k!r}; expected some of {list(KINDS)}.")
    rows, batch, arrow = per_model(args.rows, DEFAULT_ROWS), per_model(args.batch_size, DEFAULT_BATCH), per_model(args.arrow_batch, DEFAULT_ARROW)
    slots = total_slots(args.master)
    files = args.files or 2 * slots

    import tensorflow as tf

    # Raw TF gets the cores all Spark tasks get together; must happen before TF starts.
    tf.config.threading.set_intra_op_parallelism_threads(slots)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, slots))

    info = common.machine()
    conf = {"spark.driver.memory": args.driver_memory, "spark.executor.memory": "2g",
            "spark.sql.files.maxPartitionBytes": str(2**30)}
    if args.pipelined:
        conf["spark.python.udf.pipelined.enabled"] = "true"
    if args.remote:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.remote(args.remote).getOrCreate()
        spark.conf.set("spark.sql.files.maxPartitionBytes", str(2**30))
    else:
        spark = common.spark_session(args.master, conf)
    workdir = args.workdir or tempfile.mkdtemp(prefix="sparkdl-lite-infer-")
    results: Dict[str, Any] = {"machine": info, "master": f"remote {args.remote}" if args.remote else args.master, "task_slots": slots, "repeats": args.repeats,
                               "pipelined": bool(args.pipelined),
                               "command": " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
                               "models": {}}
    t_all = time.perf_counter()
    try:
        for name in models:
            print(f"== {name}: preparing {rows[name]} images", flush=True)
            case = Case(name, rows[name], batch[name], workdir, files)
            results["models"][name] = run_case(spark, case, args.repeats, arrow[name], slots, kinds)
            results["models"][name]["loadavg_end"] = os.getloadavg()
            del case
    finally:
        spark.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - t_all, 1)
    results["machine"]["loadavg_end"] = os.getloadavg()
    print(report(results))
    print(f"\ntotal {results['wall_s']} s; load average at start {info.get('loadavg_start')}, end {results['machine']['loadavg_end']}")
    common.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
