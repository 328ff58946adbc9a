"""Training rows staged once as Parquet, where every executor reads them: the streaming data path.

A DataFrame too large for the driver (or for ``spark.driver.maxResultSize``) cannot be collected
and shipped to the tasks. Instead its features and label columns are written once with Spark's
own DataFrame writer (classic and Spark Connect alike) to a staging location every executor can
read, checked by one Spark aggregate over the staged files (nulls, label range, feature shape,
classes: no rows reach the driver), and each training task streams them
(:mod:`sparkdl_lite.core.stream`). The staged layout: ``features`` (``array<float>``, or the
image's raw ``binary`` pixels with ``height``, ``width``, ``nChannels``) and ``label``
(``double``).

Where: the param ``stagingDir`` (or the Spark conf ``spark.sparkdl_lite.stagingDir``), a URI every
executor can read (``file://`` on a shared disk, ``hdfs://``, ``s3://`` / ``s3a://``, ``gs://``); in
local mode nothing needs setting (a temporary directory under ``spark.local.dir``). Staged
directories are removed when the fit ends, fails or is interrupted (:meth:`Staged.remove`).

Spark layer: pyspark's DataFrame API and pyarrow.fs; no SparkContext, no TensorFlow.
"""
from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from typing import Any, Dict, NamedTuple, Optional, Set, Tuple

__all__ = ["Staged", "STAGING_CONF", "staging_root", "stage", "estimate_bytes", "ship_limit", "remove", "check_readable", "parse_size"]

STAGING_CONF = "spark.sparkdl_lite.stagingDir"  # the location when param stagingDir is not set
_WHO = "TFClassifier"
_PREFIX = "sparkdl-lite-staged-"
ROW_GROUP_BYTES = 16 << 20  # Parquet row groups of the staged files: what a streaming task reads at a time


class Staged(NamedTuple):
    """One staged DataFrame: where its Parquet files are, how many rows, each row's feature shape, its classes."""

    uri: str
    rows: int
    feature_shape: Tuple[int, ...]
    kind: str  # "flat" (array<float>) or "image" (binary pixels)
    classes: int


def staging_root(spark: Any, location: Optional[str]) -> Optional[str]:
    """The directory staged copies go under: ``location``, the Spark conf, a local temporary
    directory in local mode, else None (a cluster with nothing set)."""
    from sparkdl_lite.runner import engine

    location = location or engine.conf(spark, STAGING_CONF)
    if location:
        return location.rstrip("/")
    if not engine.is_local_mode(spark):
        return None
    local = (engine.conf(spark, "spark.local.dir") or tempfile.gettempdir()).split(",")[0]
    os.makedirs(local, exist_ok=True)
    return local


def ship_limit(spark: Any) -> Optional[int]:
    """The most bytes the driver may collect: ``spark.driver.maxResultSize`` (None when unlimited, 0)."""
    from sparkdl_lite.runner import engine

    return parse_size(engine.conf(spark, "spark.driver.maxResultSize", "1g") or "1g")


def parse_size(text: str) -> Optional[int]:
    """Bytes of a Spark size string (``"1g"``, ``"64m"``, ``"512k"``, ``"100"``); None for 0 (unlimited)."""
    text = text.strip().lower()
    unit = 1
    for suffix, scale in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40), ("k", 1 << 10),
                          ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1)):
        if text.endswith(suffix):
            unit, text = scale, text[: -len(suffix)]
            break
    value = int(float(text) * unit)
    return None if value <= 0 else value


def _staged_columns(dataset: Any, features: str, label: str, kind: str) -> Any:
    """The DataFrame written: features as array<float> (vectors, arrays) or raw pixels (images), label as double."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    f = F.col(features)
    y = F.col(label).cast(T.DoubleType()).alias("label")
    if kind == "vector":
        return dataset.select(vector_to_array(f, "float32").alias("features"), y)
    if kind == "array":
        return dataset.select(f.cast(T.ArrayType(T.FloatType())).alias("features"), y)
    return dataset.select(f.getField("data").alias("features"), y,
                          *[f.getField(k).alias(k) for k in ("height", "width", "nChannels")])


def estimate_bytes(dataset: Any, features: str, kind: str) -> Tuple[int, int]:
    """(rows, estimated bytes of the training columns) in one small aggregate job (no rows to the driver)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    f = F.col(features)
    if kind == "vector":
        width = F.size(vector_to_array(f)) * 4
    elif kind == "array":
        width = F.size(f) * 4
    else:
        width = F.length(f.getField("data"))
    row = dataset.agg(F.count(F.lit(1)).alias("n"), F.sum(width + 8).alias("b")).first()
    return int(row["n"] or 0), int(row["b"] or 0)


def stage(spark: Any, dataset: Any, features: str, label: str, kind: str, root: str) -> Staged:
    """Write ``dataset``'s training columns under ``root`` and check them with one aggregate; the staged copy.

    Raises the same clear errors as the collected path (empty data, nulls, labels that are not
    class indices, ragged or non-finite features, images of mixed sizes), naming the column; the
    staged files are removed first.
    """
    uri = f"{root}/{_PREFIX}{uuid.uuid4().hex}"
    path = uri if "://" in uri else os.path.abspath(uri)
    staged_df = _staged_columns(dataset, features, label, kind)
    _LIVE.add(path)
    try:
        # small row groups: a task holds its shuffle buffer and one row group (Spark's default is 128 MiB)
        staged_df.write.mode("overwrite").option("parquet.block.size", str(ROW_GROUP_BYTES)).parquet(path)
        facts = _facts(spark.read.parquet(path), kind)
        shape, classes = _check(facts, dataset, features, label, kind)
        check_readable(spark, path, shape)
    except BaseException:
        remove(path)
        raise
    return Staged(uri=path, rows=int(facts["n"]), feature_shape=shape, kind="image" if kind == "image" else "flat",
                  classes=classes)


def check_readable(spark: Any, uri: str, feature_shape: Tuple[int, ...]) -> None:
    """One small job in which the executors open the staged files; one clear error naming ``uri`` if they cannot."""
    from sparkdl_lite.core import failpoint
    from sparkdl_lite.runner import engine

    parts = max(1, engine.default_parallelism(spark))
    faults = failpoint.armed()

    def probe(batches: Any) -> Any:
        import pyarrow as pa

        from sparkdl_lite.core.stream import StagedRows

        for _ in batches:
            try:
                faults.fail_reading(uri)
                StagedRows(uri, feature_shape)
                error = None
            except Exception as exc:  # noqa: BLE001 - reported to the driver as text
                error = f"{type(exc).__name__}: {exc}"[:500]
            yield pa.RecordBatch.from_pylist([{"error": error}], schema=pa.schema([("error", pa.string())]))

    found = [e for e in spark.range(0, parts, 1, parts).mapInArrow(probe, "error string").toArrow().column(0).to_pylist()
             if e is not None]
    if found:
        raise ValueError(f"{_WHO}: the executors cannot read the training rows staged at {uri!r}: {found[0]} Set param "
                         f"stagingDir (or the Spark conf {STAGING_CONF}) to a location every executor can read "
                         f"(hdfs://..., s3a://..., gs://..., file:// on a shared disk).")


def _facts(staged: Any, kind: str) -> Dict[str, Any]:
    """One aggregate over the staged rows: counts, label range, feature sizes, first bad values."""
    from pyspark.sql import functions as F

    f, y = F.col("features"), F.col("label")
    whole = F.isnan(y) | (y != F.floor(y))
    cols = [F.count(F.lit(1)).alias("n"), F.sum(y.isNull().cast("long")).alias("null_y"),
            F.sum(f.isNull().cast("long")).alias("null_f"), F.min(y).alias("min_y"), F.max(y).alias("max_y"),
            F.first(F.when(whole, y), ignorenulls=True).alias("bad_y")]
    if kind == "image":
        for k in ("height", "width", "nChannels"):
            cols += [F.min(k).alias(f"min_{k}"), F.max(k).alias(f"max_{k}")]
        cols += [F.sum((F.length(f) != F.col("height") * F.col("width") * F.col("nChannels")).cast("long")).alias("bad_len")]
    else:
        size = F.size(f)
        cols += [F.min(size).alias("min_len"), F.max(size).alias("max_len"),
                 F.sum(F.exists(f, lambda v: F.isnan(v) | (F.abs(v) == float("inf"))).cast("long")).alias("non_finite")]
    return staged.agg(*cols).first().asDict()


def _check(facts: Dict[str, Any], dataset: Any, features: str, label: str, kind: str) -> Tuple[Tuple[int, ...], int]:
    """The feature shape and number of classes, or the collected path's clear error."""
    from sparkdl_lite.core.training import classes_from_labels

    name = _WHO
    if not facts["n"]:
        raise ValueError(f"{name}: the DataFrame is empty; it needs at least one row per class in labelCol {label!r}.")
    if facts["null_y"]:
        raise ValueError(f"{name}: labelCol {label!r} has {facts['null_y']} null(s); every row needs a class index. "
                         f"Filter or fill nulls first.")
    if facts["null_f"]:
        raise ValueError(f"{name}: featuresCol {features!r} has {facts['null_f']} null row(s). Filter or fill nulls first.")
    if kind == "image":
        sizes = [(facts[f"min_{k}"], facts[f"max_{k}"]) for k in ("height", "width", "nChannels")]
        if any(lo != hi for lo, hi in sizes):
            raise ValueError(f"{name}: featuresCol {features!r} holds images of different sizes (height, width, "
                             f"channels from {tuple(lo for lo, _ in sizes)} to {tuple(hi for _, hi in sizes)}); resize "
                             f"them to one size first.")
        h, w, c = (int(lo) for lo, _ in sizes)
        if min(h, w, c) <= 0 or c not in (1, 3, 4) or facts["bad_len"]:
            raise ValueError(f"{name}: featuresCol {features!r} holds invalid images (height {h}, width {w}, nChannels "
                             f"{c}, {facts['bad_len']} with a data length other than height*width*nChannels); expected "
                             f"1, 3 or 4 channels; drop invalid images first (read_images(..., drop_invalid=True)).")
        shape: Tuple[int, ...] = (h, w, c)
    else:
        if facts["min_len"] != facts["max_len"]:
            raise ValueError(f"{name}: featuresCol {features!r} has rows of different lengths ({facts['min_len']} to "
                             f"{facts['max_len']} values); every row needs the same number of features.")
        if not facts["max_len"]:
            raise ValueError(f"{name}: featuresCol {features!r} has rows with no values.")
        if facts["non_finite"]:
            raise ValueError(f"{name}: featuresCol {features!r} has NaN or infinite values ({facts['non_finite']} "
                             f"row(s)); clean or impute them first.")
        shape = (int(facts["max_len"]),)
    classes = classes_from_labels(facts["bad_y"], facts["min_y"], facts["max_y"], dataset.schema[label].metadata,
                                  f"labelCol {label!r}", name)
    return shape, classes


_LIVE: Set[str] = set()  # staged directories of this driver not removed yet (swept at exit)


@atexit.register
def _sweep() -> None:
    for uri in list(_LIVE):
        remove(uri)


def remove(uri: str) -> None:
    """Delete a staged directory (never raises: cleanup must not hide the error that caused it)."""
    _LIVE.discard(uri)
    try:
        from sparkdl_lite.core.stream import filesystem

        fs, path = filesystem(uri)
        fs.delete_dir(path)
    except Exception:  # noqa: BLE001 - already gone, or not reachable from the driver
        pass
