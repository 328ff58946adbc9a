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

from sparkdl_lite.runner import engine

__all__ = ["TaskData", "Frame", "pack", "unpack", "collect", "feature_kind", "num_classes"]

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


class TaskData:
    """Training and validation arrays keyed by (DataFrame, features, label), shipped to the executors once.

    ``keep=True`` (a search) keeps the arrays and the shipment between calls until :meth:`close`;
    ``keep=False`` (one fit) drops the driver's copy as soon as it is packed.
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

    def add(self, dataset: Any, features: str, label: str, x: np.ndarray, y: np.ndarray) -> int:
        """Hold ``dataset``'s collected (features, label) arrays; returns their data key."""
        ident = (id(dataset), features, label)
        if ident in self._keys:
            raise ValueError(f"TaskData: this DataFrame's ({features!r}, {label!r}) is held already (key {self._keys[ident]}).")
        key = len(self._keys)
        self._keys[ident] = key
        self._frames.append(dataset)
        self._arrays[key] = (x, y)
        self._labels[key] = y
        return key

    def key(self, dataset: Any, features: str, label: str) -> int:
        """The data key of ``dataset``'s (features, label), added before (KeyError if not)."""
        return self._keys[(id(dataset), features, label)]

    def has(self, dataset: Any, features: str, label: str) -> bool:
        """Whether ``dataset``'s (features, label) is collected already."""
        return (id(dataset), features, label) in self._keys

    def collect(self, spark: Any, frames: Sequence[Frame], description: str) -> None:
        """Collect every frame not held yet, in concurrent jobs where there are several (``{what}`` in ``description``)."""
        wanted: Dict[Tuple[int, str, str], Frame] = {}
        for f in frames:
            if not self.has(f.dataset, f.features, f.label):
                wanted.setdefault((id(f.dataset), f.features, f.label), f)
        items = list(wanted.values())

        def one(f: Frame) -> Tuple[np.ndarray, np.ndarray]:
            with engine.job_description(spark, description.format(what=f.what)):
                return collect(f.dataset, f.features, f.label, f.kind)

        for f, (x, y) in zip(items, engine.thread_map(spark, one, items, threads=4)):
            self.add(f.dataset, f.features, f.label, x, y)

    def count_classes(self, key: int, dataset: Any, label: str) -> int:
        """The number of classes of a key's training rows (labels checked once): :func:`num_classes`."""
        if key not in self.classes:
            self.classes[key] = num_classes(dataset, label, self.labels(key))
        return self.classes[key]

    def shape(self, key: int) -> Tuple[int, ...]:
        """``x.shape`` of a key's features, while the driver holds them (before :meth:`ship` drops a one-call copy)."""
        return tuple(self._arrays[key][0].shape)

    def labels(self, key: int) -> np.ndarray:
        """A key's labels (kept on the driver: validation rows are scored here)."""
        return self._labels[key]

    def ship(self, spark: Any) -> Any:
        """The shipment holding every key so far: the last one if it already does, else a new one."""
        wanted = frozenset(self._keys.values())
        if self._shipped is not None and wanted <= self._shipped_keys:
            return self._shipped
        arrays: Dict[str, np.ndarray] = {}
        for key, (x, y) in self._arrays.items():
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
        """Release the shipment and drop every array."""
        self.release()
        self._arrays.clear()
        self._keys.clear()
        self._frames.clear()

    def __enter__(self) -> TaskData:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    x = values.reshape(n, hh, ww, cc).copy()
    return x[..., :3] if cc == 4 else x  # alpha is dropped, as TFImageTransformer does when scoring


def num_classes(dataset: Any, label: str, y: np.ndarray) -> int:
    """K = max label + 1 (or the label's nominal attribute count, when larger); labels checked first."""
    name = _WHO
    integral = np.isfinite(y) & (y == np.round(y))
    if not integral.all():
        bad = float(y[~integral][0])
        raise ValueError(f"{name}: labelCol {label!r} must hold integral class indices 0..K-1; got {bad!r}. "
                         f"Use StringIndexer to turn other labels into indices.")
    if (y < 0).any():
        raise ValueError(f"{name}: labelCol {label!r} must hold class indices >= 0; got {int(y[y < 0][0])!r}.")
    k = int(y.max()) + 1
    attr = dataset.schema[label].metadata.get("ml_attr", {}) if dataset.schema[label].metadata else {}
    if attr.get("type") == "nominal":
        k = max(k, len(attr.get("vals") or []), int(attr.get("num_vals") or 0))
    if k < 2:
        raise ValueError(f"{name}: labelCol {label!r} holds only class 0; a classifier needs at least 2 classes.")
    return k




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
