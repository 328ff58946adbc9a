"""Per-Python-worker runtime: graph cache, TF thread settings and batched execution.

A Spark Python worker is a long-lived process that runs many tasks one after another; this module
keeps the loaded graphs of that process so a graph is parsed once per worker, not once per batch.
No pyspark import here: the Spark layer hands in bytes, names and thread counts.
"""
from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import numpy as np

from sparkdl_lite.core.tfimport import import_tensorflow

__all__ = ["configure_threads", "load_callable", "get_or_load", "load_stats", "prefetch"]

_LOCK = threading.Lock()
_CACHE: "OrderedDict[str, Any]" = OrderedDict()
_MAX_CACHED = 4  # graphs kept per worker; older ones are dropped so memory stays bounded
_STATS: Dict[str, Dict[str, int]] = {}  # key -> {"loads": n, "batches": n}; read by tests
_THREADS: Optional[int] = None

T = TypeVar("T")
U = TypeVar("U")


def configure_threads(n: Optional[int]) -> Optional[int]:
    """Give TensorFlow ``n`` intra-op threads in this process (one task = its share of cores).

    TF accepts the setting only before its runtime starts; later calls keep the first value.
    Returns the thread count in force (``None`` when TF chose). Tasks call it first: it imports
    TensorFlow without its start-up lines (:func:`sparkdl_lite.core.tfimport.import_tensorflow`).
    """
    global _THREADS
    tf = import_tensorflow(task=True)
    if n is None or n < 1:
        return _THREADS

    with _LOCK:
        if _THREADS is None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(n))
                tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(n))))
                _THREADS = int(n)
            except RuntimeError:  # TF already initialised in this process: keep its setting
                _THREADS = tf.config.threading.get_intra_op_parallelism_threads() or None
    return _THREADS


def _parse(data: bytes):
    tf = import_tensorflow()

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(data)
    return graph_def


def load_callable(data: bytes, input_names: Sequence[str], output_names: Sequence[str],
                  preprocess: Optional[Callable[..., Any]] = None) -> Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]:
    """Import a GraphDef once and return ``run(feeds) -> {output: ndarray}``.

    ``preprocess`` (optional) is a TF function ``(*input tensors) -> tuple of graph inputs`` that is
    fused in front of the graph in one ``tf.function``, so casts, channel swaps and resizing run as
    TF ops on the whole batch. That function is traced once per input dtype and per shape after the
    batch dimension (``None``): one concrete function per graph and image size, whatever the batch
    sizes, and no ``tf.function`` retracing (nor its warning) when a worker loads many graphs.
    """
    tf = import_tensorflow()

    graph_def = _parse(data)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    pruned = wrapped.prune([g.get_tensor_by_name(n) for n in input_names],
                           [g.get_tensor_by_name(n) for n in output_names])
    traced: Dict[Tuple[Any, ...], Callable[..., Any]] = {}
    trace_lock = threading.Lock()

    def fused(args: Sequence[Any]) -> Callable[..., Any]:
        if preprocess is None:
            return pruned  # already a concrete function
        key = tuple((a.dtype, tuple(a.shape[1:])) for a in args)
        with trace_lock:
            fn = traced.get(key)
            if fn is None:
                signature = [tf.TensorSpec([None, *a.shape[1:]], a.dtype) for a in args]
                fn = traced[key] = tf.function(lambda *xs: pruned(*preprocess(*xs)), input_signature=signature,
                                               autograph=False).get_concrete_function()  # plain TF ops: no AutoGraph
        return fn

    in_dtypes = [g.get_tensor_by_name(n).dtype for n in input_names]
    in_keys = list(input_names)
    out_keys = list(output_names)

    def run(feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        args = []
        for name, dtype in zip(in_keys, in_dtypes):
            value = feeds[name]
            args.append(tf.convert_to_tensor(value) if preprocess is not None else tf.convert_to_tensor(value, dtype=dtype))
        result = fused(args)(*args)
        if not isinstance(result, (list, tuple)):
            result = [result]
        return {name: r.numpy() for name, r in zip(out_keys, result)}

    return run


def get_or_load(key: str, loader: Callable[[], Callable]) -> Callable:
    """The cached callable for ``key`` in this process, built with ``loader()`` on a miss."""
    with _LOCK:
        run = _CACHE.get(key)
        if run is not None:
            _CACHE.move_to_end(key)
            return run
    run = loader()
    with _LOCK:
        _CACHE[key] = run
        _STATS.setdefault(key, {"loads": 0, "batches": 0})["loads"] += 1
        while len(_CACHE) > _MAX_CACHED:
            _CACHE.popitem(last=False)
    return run


def count_batch(key: str) -> None:
    with _LOCK:
        _STATS.setdefault(key, {"loads": 0, "batches": 0})["batches"] += 1


def load_stats() -> Dict[str, Any]:
    """``{"pid": ..., "graphs": {key: {"loads": n, "batches": n}}}`` for this process (tests read it)."""
    with _LOCK:
        return {"pid": os.getpid(), "graphs": {k: dict(v) for k, v in _STATS.items()}}


_END = object()


def prefetch(items: Iterable[T], fn: Callable[[T], U], depth: int = 1) -> Iterator[U]:
    """Yield ``fn(item)`` for each item, preparing the next ``depth`` items on a helper thread.

    Batch preparation (Arrow -> numpy) then overlaps with TF compute, which releases the GIL.
    Exceptions from ``fn`` are re-raised in the consumer, in order.
    """
    q: "queue.Queue[Tuple[bool, Any]]" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, fn(item)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            q.put((False, exc))
            return
        q.put((True, _END))

    t = threading.Thread(target=work, name="sparkdl-lite-prefetch", daemon=True)
    t.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is _END:
                return
            yield value
    finally:
        stop.set()
        while t.is_alive():  # drain so the producer can finish
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.05)
