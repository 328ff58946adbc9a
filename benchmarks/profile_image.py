"""Where the small CNN's TFImageTransformer-from-parquet time goes, against raw TF, on the same cores.

The same Fashion-MNIST images (as Spark image structs in parquet, as in ``infer.py``) go through
stages that each add one piece of the path, every pass a full Spark job over all rows:

raw     the frozen graph in this process on float32 batches, TF given every task slot's thread
scan    ``sum(length(image.data))`` over the parquet: the JVM's parquet read alone
arrow   an Arrow UDF that decodes the image structs (``core.image.decode_batch``) and returns a
        10-float array per row without TF: scan + JVM -> Python -> JVM Arrow transfer
image   ``TFImageTransformer`` with the small CNN: arrow + the graph

For each pass it reads the CPU seconds of the JVM (Spark's scan and Arrow serialisation), of the
Python workers (decode, TF) and of this driver process from ``/proc``, so the profile says where the
cores went, not only how long the pass took. Two row counts separate a fixed per-job cost (task
launch, graph load) from a per-row cost. Stages are interleaved and repeated; medians are shown.

    .venv/bin/python benchmarks/profile_image.py --rows 20000,200000 --repeats 3 --json out/profile_image.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

STAGES = ("raw", "scan", "arrow", "image")
TICK = os.sysconf("SC_CLK_TCK")


def _tree() -> Dict[str, float]:
    """CPU seconds (user + system) of this process and its descendants, by kind."""
    procs = common.processes()
    me = os.getpid()
    out = {"jvm": 0.0, "python_workers": 0.0, "driver": 0.0}
    for pid in [me] + common.descendants(me, procs):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        cmd = procs.get(pid, (0, ""))[1]
        kind = "driver" if pid == me else "jvm" if "java" in cmd.split(" ")[0] else "python_workers"
        out[kind] += own
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="20000,200000", help="row counts, comma-separated (default 20000,200000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--arrow-batch", type=int, default=2048)
    ap.add_argument("--row-group", type=int, default=256, help="parquet rows per row group (default 256, as infer.py)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    sizes = [int(v) for v in args.rows.split(",")]
    spark = common.spark_session(args.master)
    slots = common.task_slots(spark)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.functions import arrow_udf

    from sparkdl_lite import TFGraph, TFImageTransformer
    from sparkdl_lite.core import runtime

    runtime.configure_threads(slots)
    graph = TFGraph.from_keras(common.small_cnn())
    raw_run = graph.load()
    in_t, out_t = graph.input_names[0], graph.output_names[0]
    scorer = TFImageTransformer(graph=graph, inputCol="image", outputCol="out", outputMode="array", channelOrder="L",
                                scale=1 / 255.0, batchSize=args.batch_size)

    @arrow_udf(T.ArrayType(T.FloatType()))
    def no_tf(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        from sparkdl_lite.core import image as img

        for arr in batches:
            batch = img.decode_batch(arr)
            n = batch.size
            values = pa.array(np.zeros(n * 10, np.float32))
            yield pa.ListArray.from_arrays(pa.array(np.arange(0, n * 10 + 1, 10, dtype=np.int32)), values)

    results: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sparkdl-profile-") as work:
        for rows in sizes:
            gray = common.fashion_test_images(rows)
            floats = gray[..., None].astype(np.float32) / 255.0
            path = os.path.join(work, f"images-{rows}")
            common.write_image_parquet(path, gray[..., None], files=2 * slots, row_group=args.row_group)

            def run(stage: str, rows: int = rows, floats: np.ndarray = floats, path: str = path) -> None:
                if stage == "raw":
                    for i in range(0, rows, args.batch_size):
                        raw_run({in_t: floats[i:i + args.batch_size]})[out_t]
                    return
                df = spark.read.parquet(path)
                if stage == "scan":
                    total = df.select(F.sum(F.length("image.data"))).collect()[0][0]
                    assert total == rows * 784, total
                    return
                out = df.select(no_tf("image").alias("out")) if stage == "arrow" else scorer.transform(df).select("out")
                n = out.select(F.sum(F.size("out"))).collect()[0][0]
                assert n == rows * 10, (stage, n)

            for stage in STAGES:  # warm: workers up, graph loaded
                run(stage)
            per: Dict[str, List[Dict[str, float]]] = {s: [] for s in STAGES}
            for r in range(args.repeats):
                order = list(STAGES[r % len(STAGES):] + STAGES[:r % len(STAGES)])
                for stage in order:
                    before, t0 = _tree(), time.perf_counter()
                    run(stage)
                    wall, after = time.perf_counter() - t0, _tree()
                    per[stage].append({"wall_s": wall, **{f"cpu_{k}_s": after[k] - before[k] for k in after}})
            summary = {s: {k: float(np.median([p[k] for p in v])) for k in v[0]} for s, v in per.items()}
            for s in STAGES:
                summary[s]["images_per_s"] = rows / summary[s]["wall_s"]
            results[str(rows)] = {"passes": per, "median": summary}
            print(f"\n{rows} rows, {args.row_group} rows per parquet row group ({args.repeats} passes each, medians):")
            head = ["stage", "wall s", "img/s", "vs raw", "CPU s JVM", "CPU s Python workers", "CPU s driver"]
            body = [[s, f"{m['wall_s']:.2f}", f"{m['images_per_s']:.0f}",
                     f"{m['images_per_s'] / summary['raw']['images_per_s']:.2f}",
                     f"{m['cpu_jvm_s']:.2f}", f"{m['cpu_python_workers_s']:.2f}", f"{m['cpu_driver_s']:.2f}"]
                    for s, m in summary.items()]
            print(common.table(body, head), flush=True)
    spark.stop()
    payload = {"machine": common.machine(), "args": vars(args), "task_slots": slots,
               "command": "benchmarks/profile_image.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "results": results, "wall_s": time.perf_counter() - started}
    common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
