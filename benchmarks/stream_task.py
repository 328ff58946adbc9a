"""The streamed data path inside one training task, without Spark: epoch time, arrays vs staged Parquet.

What ``benchmarks/stream.py`` measures through ``TFClassifier.fit``, narrowed to the task's own work:
``core.training.train`` on the 60,000 Fashion-MNIST training images held as arrays (what a shipped
task holds) and on the same images staged as Parquet (binary pixels, row groups of
``runner.staging.ROW_GROUP_BYTES``, as the stream path writes them) and streamed through
``core.stream.dataset``. Same network (MLP, ``hiddenLayers=[256]``), batch 128, seed 0, one thread
(a task's ``spark.task.cpus``). Each fit runs in its own process; the two paths alternate
(arrays, staged, arrays, staged, ...), so every ratio is taken side by side.

    .venv/bin/python benchmarks/stream_task.py --runs 2 --json out/bench-stream-task/run.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (environment, data, tables)

RESULT = "RESULT "


def stage(directory: str) -> str:
    """The training images as one Parquet file in the staged layout; its path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkdl_lite.core.datasets import load_fashion_mnist
    from sparkdl_lite.runner.staging import ROW_GROUP_BYTES

    ds = load_fashion_mnist()
    x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.uint8)
    table = pa.table({"features": pa.array([row.tobytes() for row in x], pa.binary()),
                      "label": pa.array(ds.y_train.astype(np.float64))})
    path = os.path.join(directory, "part-0.parquet")
    pq.write_table(table, path, row_group_size=max(1, ROW_GROUP_BYTES // x.shape[1]))
    return directory


def child(path: str, staged: str, epochs: int) -> Dict[str, Any]:
    """One fit on ``path`` ("arrays" or "staged"): per-epoch seconds, training accuracy, wall."""
    import numpy as np

    from sparkdl_lite.core import training
    from sparkdl_lite.core.datasets import load_fashion_mnist
    from sparkdl_lite.core.stream import StagedRows

    kw = dict(num_classes=10, architecture="mlp", hidden_layers=[256], epochs=epochs, batch_size=128, seed=0,
              threads=1, scale=1 / 255.0)
    t0 = time.perf_counter()
    if path == "arrays":
        ds = load_fashion_mnist()
        result = training.train(ds.x_train.reshape(-1, 28, 28, 1).astype(np.uint8), ds.y_train.astype(np.float64), **kw)
    else:
        result = training.train(None, None, rows=StagedRows(staged, (28, 28, 1)), **kw)
    return {"path": path, "epoch_s": [h["seconds"] for h in result.history],
            "accuracy": result.history[-1].get("accuracy"), "wall_s": time.perf_counter() - t0}


def run_child(path: str, staged: str, epochs: int) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", path, "--staged", staged, "--epochs", str(epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(RESULT)]
    if not lines:
        raise RuntimeError(f"{path} fit failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", choices=("arrays", "staged"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--staged", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = child(args.child, args.staged, args.epochs)
        print(RESULT + json.dumps(res), flush=True)
        return res

    info = common.machine()
    results: List[Dict[str, Any]] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparkdl-lite-stream-task-") as d:
        staged = stage(d)
        for run in range(1, args.runs + 1):
            pair = {p: run_child(p, staged, args.epochs) for p in ("arrays", "staged")}
            a, s = (sum(pair[p]["epoch_s"]) / len(pair[p]["epoch_s"]) for p in ("arrays", "staged"))
            last = pair["arrays"]["epoch_s"][-1] / pair["staged"]["epoch_s"][-1]
            rows.append([run, f"{a:.2f}", f"{s:.2f}", f"{a / s:.2f}", f"{last:.2f}",
                         f"{pair['arrays']['accuracy']:.4f}", f"{pair['staged']['accuracy']:.4f}"])
            results.append({"run": run, **pair, "ratio_mean_epoch": a / s, "ratio_last_epoch": last})
            print(f"run {run}: arrays {a:.2f} s/epoch, staged {s:.2f} s/epoch, ratio {a / s:.2f} (last epoch "
                  f"{last:.2f})", flush=True)
    print(common.table(rows, ["run", "epoch s arrays", "epoch s staged", "ratio (mean)", "ratio (last epoch)",
                              "train acc arrays", "train acc staged"]))
    payload = {"machine": info, "args": vars(args), "results": results}
    common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
