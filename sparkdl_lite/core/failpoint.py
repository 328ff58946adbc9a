"""Test-only fail points: named places where a test makes the library fail on purpose.

Not public API. A test switches points on through the environment variable
``SPARKDL_LITE_FAILPOINTS``, a ``;``-separated list of ``name=value`` items, because Spark tasks
run in other processes:

- ``train=1,3``: the training of param maps 1 and 3 raises inside its Spark task (read on the
  driver when the job starts, carried to its tasks as a :class:`Faults` snapshot);
- ``train_first_attempt=0``: the first attempt of param map 0's task dies, so Spark retries it;
- ``staged_unreadable=1``: the executors' check of staged training rows finds them unreadable;
- ``kill_worker=/path/marker``: the first Python worker to claim (delete) that marker file exits
  hard, as a crashing worker would (read on the executor once per partition: set it before the
  session starts its workers);
- ``executor_missing=tensorflow`` / ``executor_version=0.0.9``: the executor probe
  (``engine.check_executors``) finds that module missing, or that sparkdl_lite version.

No pyspark import; reading the environment is all a point costs when it is off.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Set

__all__ = ["ENV", "value", "kill_worker", "Faults", "armed"]

ENV = "SPARKDL_LITE_FAILPOINTS"


def value(name: str) -> Optional[str]:
    """The value of fail point ``name``, or None when it is off."""
    return armed().points.get(name)


def kill_worker(marker: Optional[str]) -> None:
    """Exit this process hard if it is the first to claim ``marker`` (a file path)."""
    if marker and os.path.exists(marker):
        try:
            os.remove(marker)
        except FileNotFoundError:
            return
        os._exit(17)


class Faults:
    """The fail points switched on when a job was built: read on the driver, carried to its tasks.

    A Spark task runs in another process, which may not see the driver's environment; the job
    takes this snapshot along, and its tasks ask it whether to fail.
    """

    def __init__(self, points: Optional[Dict[str, str]] = None) -> None:
        self.points = dict(points or {})

    def indexes(self, name: str) -> Set[int]:
        raw = self.points.get(name) or ""
        return {int(v) for v in raw.replace(" ", "").split(",") if v.lstrip("-").isdigit()}

    def fail_training(self, index: int) -> None:
        """Point ``train``: the training of task ``index`` raises (reported per task, the job goes on)."""
        if index in self.indexes("train"):
            raise RuntimeError(f"injected failure for param map {index} ({ENV})")

    def fail_first_attempt(self, index: int, attempt: Optional[int]) -> None:
        """Point ``train_first_attempt``: the first attempt of task ``index`` dies, so Spark retries it."""
        if attempt == 0 and index in self.indexes("train_first_attempt"):
            raise RuntimeError(f"injected failure of the first attempt of param map {index}")

    def fail_reading(self, uri: str) -> None:
        """Point ``staged_unreadable=1``: executors cannot read staged training rows (as on a driver-only disk)."""
        if self.points.get("staged_unreadable"):
            raise OSError(f"injected: {uri} is not readable here ({ENV})")


def armed() -> Faults:
    """The fail points switched on now, as a snapshot a job carries to its tasks."""
    raw = os.environ.get(ENV) or ""
    points = {}
    for item in raw.split(";"):
        key, _, val = item.partition("=")
        if key.strip():
            points[key.strip()] = val.strip()
    return Faults(points)
