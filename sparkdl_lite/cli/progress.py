"""The command line's progress line: completed Spark tasks (models) of the tagged jobs, epochs, best metric, ETA.

Fed by :class:`sparkdl_lite.runner.engine.TaskCounter`, so it works on classic sessions (Spark's status
tracker) and on Spark Connect (its progress handler), and by the epoch boards of the training jobs
(:mod:`sparkdl_lite.runner.epochs`) where the executors share the driver's file system.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional, TextIO

from sparkdl_lite.reports.tuning import format_seconds

__all__ = ["SparkProgress"]


class SparkProgress:
    """A driver-side progress line fed by the engine's task counts (status tracker or Connect progress).

    A background thread polls :class:`sparkdl_lite.runner.engine.TaskCounter` and prints
    ``<label> done/total | epochs done/planned | best ... | elapsed ... | ETA ...`` to ``stream``
    (stderr): one line
    rewritten with ``\\r`` on a terminal, plain lines at most every ``interval`` seconds otherwise.
    What is counted are completed Spark tasks of the jobs with tag ``job_tag``
    (``engine.job_tag``), else of job group ``job_group``, else of every job seen while running. With
    ``total`` and one task per model (as ``TFClassifier.fitMultiple`` runs), done/total are models.

    Parameters
    ----------
    spark : SparkSession
        Classic or Spark Connect.
    total : int, optional
        Units expected; gives done/total and an ETA.
    unit : str
        What the count is called (``"models"``, ``"tasks"``).
    job_tag, job_group : str, optional
        Which jobs count. Jobs that already carried the tag or group before :meth:`start` do not.
    stream : file, optional
        Default ``sys.stderr``.
    interval : float, optional
        Seconds between lines when ``stream`` is not a terminal (default 5).
    enabled : bool
        ``False`` prints nothing (the counts still work).
    show_best : bool
        ``False`` leaves out the ``best ...`` part (for work with no metric, such as labeling).

    Examples
    --------
    >>> with SparkProgress(spark, total=12, unit="models") as progress:  # doctest: +SKIP
    ...     model = cv.fit(df)
    ...     progress.set_best(max(model.avgMetrics), "accuracy")

    .. versionadded:: 0.1.0
    """

    def __init__(self, spark: Any, *, total: Optional[int] = None, unit: str = "tasks", job_tag: Optional[str] = None,
                 job_group: Optional[str] = None, stream: Optional[TextIO] = None, interval: Optional[float] = None,
                 enabled: bool = True, label: Optional[str] = None, show_best: bool = True) -> None:
        from sparkdl_lite.runner import engine

        self.show_best = show_best
        self._counter = engine.TaskCounter(spark, tag=job_tag, group=job_group)
        self.total = total
        self.unit = unit
        self.label = label or unit
        self.job_tag = job_tag
        self.job_group = job_group
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = float(interval) if interval is not None else (0.5 if self.tty else 5.0)
        self.enabled = enabled
        self.best: Optional[float] = None
        self.best_name = ""
        self.done = 0
        self.tasks = 0
        self.offset = 0
        self.epochs = (0, 0, 0.0)  # (done, planned, share of the running models done)
        self._epoch_mark = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start = time.perf_counter()
        self._last_print = 0.0
        self._last_line = ""
        self._width = 0

    # ------------------------------------------------------------------ control
    def __enter__(self) -> SparkProgress:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> SparkProgress:
        """Remember the jobs that exist now (they do not count) and start polling."""
        from sparkdl_lite.runner import epochs

        self._counter.start()
        self._epoch_mark = epochs.mark()
        self._start = time.perf_counter()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sparkdl-lite-progress", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and print the final line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.poll()
        self._counter.close()
        self._emit(final=True)

    def set_best(self, value: Optional[float], name: str = "") -> None:
        """Show ``best <name> <value>`` from now on."""
        with self._lock:
            self.best = value
            self.best_name = name

    def set_total(self, total: Optional[int]) -> None:
        with self._lock:
            self.total = total

    def add_done(self, n: int = 1) -> None:
        """Count ``n`` units finished outside Spark tasks (e.g. a model trained on the driver)."""
        with self._lock:
            self.offset += n

    # ------------------------------------------------------------------ polling
    def poll(self) -> tuple:
        """Refresh and return ``(units done, tasks known)``."""
        from sparkdl_lite.runner import epochs

        done, tasks = self._counter.poll()
        progress = epochs.progress_since(self._epoch_mark)
        with self._lock:
            self.done, self.tasks, self.epochs = done, tasks, progress
        return done, tasks

    def line(self, final: bool = False) -> str:
        """The current progress text (``final``: the work has ended, so the ETA is 0s)."""
        with self._lock:
            done = self.done + self.offset
            total, tasks, best, best_name = self.total, self.tasks, self.best, self.best_name
            epochs_done, epochs_planned, running = self.epochs
        elapsed = time.perf_counter() - self._start
        if total:
            done = min(done, total)
            parts = [f"{self.label} {done}/{total}"]
        else:
            parts = [f"{self.label} {done}/{tasks + self.offset}"]
        if epochs_planned:
            parts.append(f"epochs {epochs_done}/{epochs_planned}")
        progress = min(done + running, total) if total else done  # models, counting the running ones' epochs
        if self.show_best:
            parts.append(f"best {best_name + ' ' if best_name else ''}{best:.4f}" if best is not None else "best –")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        if final or (total and done >= total):
            parts.append("ETA 0s")
        elif total and progress > 0:
            parts.append(f"ETA {format_seconds(elapsed / progress * (total - progress))}")
        else:
            parts.append("ETA ?")
        return " | ".join(parts)

    def _emit(self, final: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line(final)
        now = time.perf_counter()
        try:
            if self.tty:
                pad = " " * max(0, self._width - len(text))
                self.stream.write("\r" + text + pad + ("\n" if final else ""))
                self._width = len(text)
                self.stream.flush()
            else:
                core = text.split(" | elapsed")[0]
                if final or (core != self._last_line and now - self._last_print >= self.interval) \
                        or now - self._last_print >= max(30.0, self.interval):
                    self.stream.write(text + "\n")
                    self.stream.flush()
                    self._last_print = now
                    self._last_line = core
        except ValueError:  # the stream was closed under us (e.g. at interpreter exit)
            pass

    def _run(self) -> None:
        self._last_print = time.perf_counter()
        while not self._stop.wait(0.5 if self.tty else 1.0):
            self.poll()
            self._emit()
