"""Epochs done by running training tasks, for the driver's progress line.

Spark tells the driver when a task ends, not how far a running one has got (a Python task's
accumulators arrive with its result). A model that trains for ten minutes would show
``models 0/4`` all that time. So each training job gets an :class:`EpochBoard`: a fresh directory
on the driver, whose path goes to the tasks; after each epoch a task writes its count there
(:func:`report`) when that directory exists where it runs, which is the case wherever the executors
share the driver's file system: local mode (the embedded default), ``local-cluster`` and a local
Spark Connect server. On a cluster's executors the directory does not exist, the tasks skip the
write and the progress line counts finished models only. No sockets, no new channel: a file per
task, read by the driver's progress thread.

Spark-free and TensorFlow-free: the classifier glue creates boards, the tasks call :func:`report`,
:class:`sparkdl_lite.cli.progress.SparkProgress` reads :func:`progress_since`.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["EpochBoard", "report", "mark", "progress_since"]

_PREFIX = "sparkdl-lite-epochs-"
_LOCK = threading.Lock()
_SEQ = itertools.count(1)
_BOARDS: List["EpochBoard"] = []  # every board of this driver process, in creation order (a few per fit)


class EpochBoard:
    """Where the tasks of one training job write their epochs; read on the driver.

    Parameters
    ----------
    epochs : sequence of int
        Epochs each task (by its index) will run in this job.

    Use it as a context manager: on exit the directory is removed and the job counts as done.
    """

    def __init__(self, epochs: Sequence[int]) -> None:
        self.epochs = [int(e) for e in epochs]
        self.path: Optional[str] = tempfile.mkdtemp(prefix=_PREFIX)
        self.closed = False
        with _LOCK:
            self.seq = next(_SEQ)
            _BOARDS.append(self)
            del _BOARDS[:-64]  # keep the recent ones only

    def __enter__(self) -> EpochBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> Dict[int, int]:
        """``{task index: epochs done}`` of the tasks that have reported so far."""
        if self.closed:
            return dict(enumerate(self.epochs))
        out: Dict[int, int] = {}
        try:
            names = os.listdir(self.path) if self.path else []
        except OSError:
            return out
        for name in names:
            if not name.isdigit():
                continue  # a task's temporary file
            try:
                with open(os.path.join(self.path, name), encoding="ascii") as f:
                    out[int(name)] = min(int(f.read().strip() or 0), self.epochs[int(name)])
            except (OSError, ValueError, IndexError):
                continue  # being replaced, or not ours
        return out

    def close(self) -> None:
        """The job has ended: count every task as done and remove the directory."""
        self.closed = True
        path, self.path = self.path, None
        if path:
            shutil.rmtree(path, ignore_errors=True)


def report(path: Optional[str], index: int, done: int) -> None:
    """Task side: record that task ``index`` has run ``done`` epochs, if ``path`` exists here.

    Never raises: progress must not break training.
    """
    if not path or not os.path.isdir(path):
        return
    try:
        tmp = os.path.join(path, f".{index}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(int(done)))
        os.replace(tmp, os.path.join(path, str(int(index))))  # atomic: the driver never reads half a number
    except OSError:
        pass


def mark() -> int:
    """A position in the sequence of boards: :func:`progress_since` counts the boards created after it."""
    with _LOCK:
        return _BOARDS[-1].seq if _BOARDS else 0


def progress_since(position: int) -> Tuple[int, int, float]:
    """``(epochs done, epochs planned, fraction of unfinished tasks done)`` of the boards after ``position``.

    The third number sums ``done / epochs`` over the tasks of open boards that have not run all
    their epochs: the share of models in flight, for an ETA between finished models.
    """
    with _LOCK:
        boards = [b for b in _BOARDS if b.seq > position]
    done = planned = 0
    partial = 0.0
    for board in boards:
        seen = board.read()
        planned += sum(board.epochs)
        done += sum(seen.values())
        if not board.closed:
            partial += sum(d / board.epochs[i] for i, d in seen.items() if 0 < d < board.epochs[i])
    return done, planned, partial
