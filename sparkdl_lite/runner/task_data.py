"""The arrays training tasks read: collected once per DataFrame, shipped once, loaded once per worker.

A :class:`TaskData` lives on the driver for one ``fit`` / ``fitMultiple`` call, or for a whole
:class:`~sparkdl_lite.HalvingSearch` (every rung trains on the same folds): each distinct
(DataFrame, features column, label column) is collected once, the arrays go to the executors
as one ``.npz`` (numpy's own format, no pickle) through :func:`sparkdl_lite.runner.engine.ship`, and
a later call that needs no new DataFrame reuses what was shipped, so its tasks start without
a collect and the Python workers keep the arrays they already loaded. Keras archives (warm
starts, the user's model) change from call to call and travel in their own, smaller shipment.
"""
from __future__ import annotations

import io
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sparkdl_lite.runner import engine

__all__ = ["TaskData", "pack", "unpack"]


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
