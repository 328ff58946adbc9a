"""The rows training tasks read: collected once per DataFrame, checked, shipped once, loaded once per worker.

The data side of a fit. :func:`collect` turns a DataFrame's features and label column into numpy
arrays in one Arrow collect (vectors, arrays or image structs; nulls, ragged rows, mixed image
sizes and non-finite values refused, naming the column and row), :func:`num_classes` checks the
labels and counts the classes. A :class:`TaskData` lives on the driver for one ``fit`` /
``fitMultiple`` call, or for a whole :class:`~sparkdl_lite.HalvingSearch` (every rung trains on the
same folds): each distinct (DataFrame, features column, label column) is collected once, the
arrays go to the executors as one ``.npz`` (numpy's own format, no pickle) through
:func:`sparkdl_lite.runner.engine.ship`, and a later call that needs no new DataFrame reuses what
was shipped, so its tasks start without a collect and the Python workers keep the arrays they
already loaded. Keras archives (warm starts, the user's model) change from call to call and
travel in their own, smaller shipment (:mod:`sparkdl_lite.runner.train_job`).
"""
from __future__ import annotations

import io
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from sparkdl_lite.core.image import shape_without_alpha, without_alpha
from sparkdl_lite.runner import engine, staging

__all__ = ["TaskData", "DataPlan", "DATA_PATHS", "Frame", "pack", "unpack", "collect", "feature_kind", "num_classes"]

_WHO = "TFClassifier"  # the stage whose data this is, in error messages


def pack(arrays: Dict[str, np.ndarray]) -> bytes:
    """Named arrays as one ``.npz`` (loaded with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_LOADED: Dict[str, Tuple[str, Dict[str, np.ndarray]]] = {}  # slot -> (content key, arrays), per Python worker


def unpack(shipped: Any, slot: str = "data") -> Dict[str, np.ndarray]:
    """The arrays of ``shipped``, loaded once per Python worker and kept in ``slot`` until other bytes replace them."""
    held = _LOADED.get(slot)
    if held is not None and held[0] == shipped.key:
        return held[1]
    _LOADED.pop(slot, None)  # free the old arrays before loading the new ones
    with np.load(io.BytesIO(shipped.read()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    _LOADED[slot] = (shipped.key, arrays)
    return arrays


class Frame(NamedTuple):
    """A DataFrame's features and label columns to collect; ``kind`` from :func:`feature_kind`, ``what`` for the job's description."""

    dataset: Any
    features: str
    label: str
    kind: str
    what: str


#: Values of TFClassifier's param trainingData.
DATA_PATHS = ("auto", "ship", "stream")
#: 'auto' streams a DataFrame whose training columns are estimated above this fraction of
#: spark.driver.maxResultSize (or above 1 GiB when that is unlimited).
AUTO_STREAM_FRACTION = 0.5
_UNLIMITED_THRESHOLD = 1 << 30


class DataPlan(NamedTuple):
    """How a fit's rows reach its tasks: ``path`` (one of :data:`DATA_PATHS`) and the staging location param."""

    path: str = "ship"
    staging_dir: Optional[str] = None


class TaskData:
    """Training and validation rows keyed by (DataFrame, features, label): shipped arrays or staged Parquet.

    A DataFrame on the ship path is collected and its arrays shipped to the executors once; one on
    the stream path is staged once as Parquet (:mod:`sparkdl_lite.runner.staging`) and every task
    streams it. ``keep=True`` (a search) keeps both between calls until :meth:`close`;
    ``keep=False`` (one fit) drops the driver's arrays as soon as they are packed. :meth:`close`
    removes the staged files.
    """

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self._keys: Dict[Tuple[int, str, str], int] = {}
        self._frames: List[Any] = []  # the DataFrames behind the keys: their ids stay unique while held
        self._arrays: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self._labels: Dict[int, np.ndarray] = {}
        self.classes: Dict[int, int] = {}
        self._shipped: Optional[Any] = None
        self._shipped_keys: frozenset = frozenset()
        self._staged: Dict[int, Any] = {}  # key -> staging.Staged

    def add(self, dataset: Any, features: str, label: str, x: np.ndarray, y: np.ndarray) -> int:
        """Hold ``dataset``'s collected (features, label) arrays; returns their data key."""
        ident = (id(dataset), features, label)
        if ident in self._keys:
            raise ValueError(f"TaskData: this DataFrame's ({features!r}, {label!r}) is held already (key {self._keys[ident]}).")
        key = self._add_key(dataset, features, label)
        self._arrays[key] = (x, y)
        self._labels[key] = y
        return key

    def key(self, dataset: Any, features: str, label: str) -> int:
        """The data key of ``dataset``'s (features, label), added before (KeyError if not)."""
        return self._keys[(id(dataset), features, label)]

    def has(self, dataset: Any, features: str, label: str) -> bool:
        """Whether ``dataset``'s (features, label) is collected already."""
        return (id(dataset), features, label) in self._keys

    def collect(self, spark: Any, frames: Sequence[Frame], description: str, plan: DataPlan = DataPlan()) -> None:
        """Hold every frame not held yet, in concurrent jobs where there are several (``{what}`` in
        ``description``): collected (ship path) or staged (stream path), as ``plan`` picks per frame."""
        wanted: Dict[Tuple[int, str, str], Frame] = {}
        for f in frames:
            if not self.has(f.dataset, f.features, f.label):
                wanted.setdefault((id(f.dataset), f.features, f.label), f)
        items = list(wanted.values())
        root = staging.staging_root(spark, plan.staging_dir) if plan.path != "ship" else None

        def one(f: Frame) -> Any:
            try:
                with engine.job_description(spark, description.format(what=f.what)):
                    if _streams(spark, f, plan, root):
                        return staging.stage(spark, f.dataset, f.features, f.label, f.kind, root)
                    return _collect_or_explain(f, plan)
            except BaseException as exc:  # noqa: BLE001 - raised below, once every frame's job has ended
                return exc

        got = engine.thread_map(spark, one, items, threads=4)
        for f, held in zip(items, got):  # what the others staged is held (and removed by close()) when one fails
            if isinstance(held, staging.Staged):
                self._staged[self._add_key(f.dataset, f.features, f.label)] = held
            elif not isinstance(held, BaseException):
                self.add(f.dataset, f.features, f.label, *held)
        failed = [held for held in got if isinstance(held, BaseException)]
        if failed:
            raise failed[0]

    def _add_key(self, dataset: Any, features: str, label: str) -> int:
        key = len(self._keys)
        self._keys[(id(dataset), features, label)] = key
        self._frames.append(dataset)
        return key

    def streamed(self) -> Dict[int, Any]:
        """The staged keys: key -> :class:`~sparkdl_lite.runner.staging.Staged` (what a task needs to stream them)."""
        return dict(self._staged)

    def count_classes(self, key: int, dataset: Any, label: str) -> int:
        """The number of classes of a key's training rows (labels checked once): :func:`num_classes`."""
        if key not in self.classes:  # staged rows were counted by the staging aggregate
            self.classes[key] = self._staged[key].classes if key in self._staged else num_classes(dataset, label, self.labels(key))
        return self.classes[key]

    def shape(self, key: int) -> Tuple[int, ...]:
        """``(rows, *feature shape)`` of a key as the tasks read it (images without their alpha channel)."""
        if key in self._staged:
            staged = self._staged[key]
            return (staged.rows, *shape_without_alpha(staged.feature_shape))
        return tuple(self._arrays[key][0].shape)

    def labels(self, key: int) -> Optional[np.ndarray]:
        """A key's labels (kept on the driver: validation rows are scored here); None for staged rows."""
        return self._labels.get(key)

    def ship(self, spark: Any) -> Any:
        """The shipment holding every key so far: the last one if it already does, else a new one."""
        wanted = frozenset(self._keys.values()) - frozenset(self._staged)
        if not wanted:
            return None  # every row is staged: nothing to ship
        if self._shipped is not None and wanted <= self._shipped_keys:
            return self._shipped
        arrays: Dict[str, np.ndarray] = {}
        for key, (x, y) in self._arrays.items():
            if key in wanted:
                arrays[f"x{key}"], arrays[f"y{key}"] = x, y
        data = pack(arrays)
        del arrays
        if not self.keep:
            self._arrays.clear()  # the driver's copy: the executors read the shipment
        self.release()
        self._shipped = engine.ship(spark, data)
        self._shipped_keys = wanted
        return self._shipped

    def release(self) -> None:
        """Free the shipment (a broadcast is destroyed); the next :meth:`ship` makes a new one."""
        if self._shipped is not None:
            engine.release(self._shipped)
        self._shipped, self._shipped_keys = None, frozenset()

    def close(self) -> None:
        """Release the shipment, drop every array and remove the staged files."""
        self.release()
        for staged in self._staged.values():
            staging.remove(staged.uri)
        self._staged.clear()
        self._arrays.clear()
        self._keys.clear()
        self._frames.clear()

    def __enter__(self) -> TaskData:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _streams(spark: Any, f: Frame, plan: DataPlan, root: Optional[str]) -> bool:
    """Whether frame ``f`` takes the stream path: chosen, or 'auto' and estimated too large to ship."""
    if plan.path == "ship":
        return False
    if plan.path == "auto":
        _, size = staging.estimate_bytes(f.dataset, f.features, f.kind)
        limit = staging.ship_limit(spark)
        if size <= (_UNLIMITED_THRESHOLD if limit is None else limit * AUTO_STREAM_FRACTION):
            return False
    if root is None:
        raise ValueError(f"{_WHO}: the rows of featuresCol {f.features!r} are to be staged as Parquet for the training "
                         f"tasks to stream (param trainingData={plan.path!r}), but no staging location is set and "
                         f"this is not local mode. Set param stagingDir (or the Spark conf {staging.STAGING_CONF}) to "
                         f"a URI every executor can read: hdfs://..., s3a://..., gs://... or file:// on a shared disk.")
    return True


def _collect_or_explain(f: Frame, plan: DataPlan) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`collect`, a result too large for the driver reported with its size, limit and the param to change."""
    try:
        return collect(f.dataset, f.features, f.label, f.kind)
    except Exception as exc:  # noqa: BLE001 - only the maxResultSize failure is translated
        text = str(exc)
        if "maxResultSize" not in text:
            raise
        detail = next((line.strip() for line in text.splitlines() if "maxResultSize" in line), text)[:400]
        raise ValueError(f"{_WHO}: the training rows of featuresCol {f.features!r} are too large to collect to the "
                         f"driver on the ship path (param trainingData={plan.path!r}): {detail} Set "
                         f"trainingData='stream' to stage them as Parquet for the tasks to stream instead (or raise "
                         f"spark.driver.maxResultSize).") from None


# ============================================================================ collect and check
def _combine(col: Any) -> Any:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _first_null(arr: Any) -> Optional[int]:
    if not arr.null_count:
        return None
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def collect(dataset: Any, features: str, label: str, kind: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features (float32 ``(N, D)`` or uint8 ``(N, H, W, C)``) and float64 labels, in one Arrow collect."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    name = _WHO
    f = F.col(features)
    if kind == "vector":
        cols = [vector_to_array(f, "float32").alias("f")]
    elif kind == "array":
        cols = [f.cast(T.ArrayType(T.FloatType())).alias("f")]
    else:
        cols = [f.getField(k).alias(k) for k in ("height", "width", "nChannels", "data")]
    table = dataset.select(*cols, F.col(label).cast(T.DoubleType()).alias("y")).toArrow()
    n = table.num_rows
    if n == 0:
        raise ValueError(f"{name}: the DataFrame is empty; it needs at least one row per class in labelCol {label!r}.")
    y_arr = _combine(table.column("y"))
    bad = _first_null(y_arr)
    if bad is not None:
        raise ValueError(f"{name}: labelCol {label!r} has a null at row {bad}; every row needs a class index. "
                         f"Filter or fill nulls first.")
    y = y_arr.to_numpy(zero_copy_only=False).astype(np.float64)
    if kind == "image":
        return _collect_images(table, features), y
    arr = _combine(table.column("f"))
    bad = _first_null(arr)
    if bad is not None:
        raise ValueError(f"{name}: featuresCol {features!r} has a null at row {bad}. Filter or fill nulls first.")
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if not (lengths == width).all():
        row = int(np.flatnonzero(lengths != width)[0])
        raise ValueError(f"{name}: featuresCol {features!r} has rows of different lengths ({width} values in row 0, "
                         f"{int(lengths[row])} in row {row}); every row needs the same number of features.")
    if width == 0:
        raise ValueError(f"{name}: featuresCol {features!r} has rows with no values.")
    x = arr.values.slice(int(offsets[0]), n * width).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    x = x.reshape(n, width)
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} has NaN or infinite values (first in row {row}); "
                         f"clean or impute them first.")
    return x, y


def _collect_images(table: Any, features: str) -> np.ndarray:
    name = _WHO
    n = table.num_rows
    data = _combine(table.column("data"))
    hwc = []
    for k in ("height", "width", "nChannels"):
        a = _combine(table.column(k))
        bad = _first_null(a)
        if bad is None:
            bad = _first_null(data)
        if bad is not None:
            raise ValueError(f"{name}: featuresCol {features!r} has a null image at row {bad}. Filter it out first.")
        hwc.append(a.to_numpy(zero_copy_only=False).astype(np.int64))
    h, w, c = hwc
    sizes = np.stack([h, w, c], axis=1)
    if (sizes <= 0).any():
        row = int(np.flatnonzero((sizes <= 0).any(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} has an invalid image at row {row} (height {int(h[row])}, "
                         f"width {int(w[row])}); drop invalid images first (read_images(..., drop_invalid=True)).")
    if not (sizes == sizes[0]).all():
        row = int(np.flatnonzero((sizes != sizes[0]).any(axis=1))[0])
        raise ValueError(f"{name}: featuresCol {features!r} holds images of different sizes ({tuple(sizes[0])} in row 0, "
                         f"{tuple(sizes[row])} in row {row} as height, width, channels); resize them to one size first.")
    hh, ww, cc = (int(v) for v in sizes[0])
    if cc not in (1, 3, 4):
        raise ValueError(f"{name}: featuresCol {features!r} holds images with nChannels={cc}; expected 1, 3 or 4.")
    wide = pa.types.is_large_binary(data.type)
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int64 if wide else np.int32)[data.offset:data.offset + n + 1]
    lengths = np.diff(offsets)
    if not (lengths == hh * ww * cc).all():
        row = int(np.flatnonzero(lengths != hh * ww * cc)[0])
        raise ValueError(f"{name}: featuresCol {features!r} has an image at row {row} with {int(lengths[row])} data bytes; "
                         f"height*width*nChannels = {hh * ww * cc}.")
    values = np.frombuffer(data.buffers()[2], dtype=np.uint8)[int(offsets[0]):int(offsets[-1])]
    return without_alpha(values.reshape(n, hh, ww, cc).copy())


def num_classes(dataset: Any, label: str, y: np.ndarray) -> int:
    """K = max label + 1 (or the label's nominal attribute count, when larger); labels checked first."""
    from sparkdl_lite.core.training import classes_from_labels, first_non_integral

    low = y[y < 0][0] if (y < 0).any() else y.min()  # the first negative label, as the message names it
    return classes_from_labels(first_non_integral(y), float(low), float(y.max()), dataset.schema[label].metadata,
                               f"labelCol {label!r}", _WHO)




def feature_kind(dt: Any) -> Optional[str]:
    """'vector', 'array', 'image' or None for a features column type the stages cannot take."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    from sparkdl_lite.images import is_image_struct

    numeric = (T.FloatType, T.DoubleType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)
    if isinstance(dt, VectorUDT):
        return "vector"
    if isinstance(dt, T.ArrayType) and isinstance(dt.elementType, numeric):
        return "array"
    if is_image_struct(dt):
        return "image"
    return None
