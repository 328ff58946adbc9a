"""Epoch progress of running training tasks (sparkdl_lite.runner.epochs) and the progress line that shows it.
Real local Spark, real training on scikit-learn's digits."""
import os
import threading

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.functions import array_to_vector

from sparkdl_lite import TFClassifier
from sparkdl_lite.classifier import TRAIN_JOB_TAG
from sparkdl_lite.cli.progress import SparkProgress
from sparkdl_lite.core.datasets import load_digits_split
from sparkdl_lite.runner import epochs


def test_board_counts_what_tasks_report_and_everything_once_closed():
    start = epochs.mark()
    with epochs.EpochBoard([4, 6]) as board:
        assert os.path.isdir(board.path)
        assert epochs.progress_since(start) == (0, 10, 0.0)
        epochs.report(board.path, 0, 2)
        epochs.report(board.path, 1, 6)
        epochs.report(board.path, 1, 99)  # more than planned: capped
        assert board.read() == {0: 2, 1: 6}
        done, planned, running = epochs.progress_since(start)
        assert (done, planned) == (8, 10) and running == pytest.approx(0.5)  # task 1 finished: not "running"
        assert epochs.progress_since(epochs.mark()) == (0, 0, 0.0)  # boards before the mark do not count
        path = board.path
    assert not os.path.exists(path)
    assert epochs.progress_since(start) == (10, 10, 0.0)
    epochs.report(path, 0, 3)  # the directory is gone (or on another machine): a quiet no-op
    epochs.report(None, 0, 3)
    assert not os.path.exists(path)


def test_progress_line_counts_epochs_of_running_tasks(spark):
    x, _, y, _ = load_digits_split()
    pdf = pd.DataFrame({"features": list(np.asarray(x[:600], np.float64)), "label": np.asarray(y[:600], np.int64)})
    df = spark.createDataFrame(pdf).withColumn("features", array_to_vector("features")).cache()
    df.count()
    clf = TFClassifier(hiddenLayers=[32], epochs=12, batchSize=16)
    maps = [{clf.learningRate: 1e-3}, {clf.learningRate: 3e-3}]
    progress = SparkProgress(spark, total=2, unit="models", job_tag=TRAIN_JOB_TAG, enabled=False)
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.wait(0.05):
            progress.poll()
            seen.append((progress.epochs[0], progress.epochs[1], progress.line()))

    with progress:
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        models = dict(clf.fitMultiple(df, maps))
        stop.set()
        thread.join()
    assert len(models) == 2
    assert {planned for _, planned, _ in seen if planned} == {24}
    middle = [line for done, planned, line in seen if 0 < done < planned]
    assert middle, f"no epoch count seen while the tasks ran: {seen[:3]} ... {seen[-3:]}"
    assert any("| ETA " in line and "ETA ?" not in line for line in middle)  # an ETA before any model ended
    assert "models 2/2 | epochs 24/24 |" in progress.line()
