"""Shared Param mixins and type converters for the sparkdl_lite stages."""
from __future__ import annotations

from typing import Any, Dict, List

from pyspark.ml.param import Param, Params, TypeConverters

__all__ = ["HasBatchSize", "HasOutputMode", "HasGraph", "to_str_dict", "to_int_list", "to_layer_params",
           "to_optional_float", "check"]


def to_str_dict(value: Any) -> Dict[str, str]:
    """TypeConverter: a mapping of str -> str (column/tensor names)."""
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise TypeError(f"Could not convert {value!r} to a dict of str to str.")


def to_int_list(value: Any) -> List[int]:
    """TypeConverter: an int, or a list/tuple of ints (also ``"64,128"``) -> list of int."""
    if isinstance(value, bool):
        raise TypeError(f"Could not convert {value!r} to a list of int.")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        try:
            return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise TypeError(f"Could not convert {value!r} to a list of int.") from None
    if TypeConverters._can_convert_to_list(value):
        items = TypeConverters.toList(value)
        if all(TypeConverters._is_integer(v) and not isinstance(v, bool) for v in items):
            return [int(v) for v in items]
    raise TypeError(f"Could not convert {value!r} to a list of int.")


def to_optional_int_list(value: Any) -> Any:
    return None if value is None else to_int_list(value)


def to_optional_float(value: Any) -> Any:
    """TypeConverter: None or a float."""
    return None if value is None else TypeConverters.toFloat(value)


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v) for k, v in value.items())
    return False


def to_layer_params(value: Any) -> Dict[str, Any]:
    """TypeConverter: a dict of ``"<layer>.<key>"`` strings to JSON-friendly values (tuples become lists)."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _json_value(value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(f"Could not convert {value!r} to a dict of '<layer>.<config key>' strings to JSON values "
                    f"(str, int, float, bool, None or lists of them).")


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``: the range checks of ``_validate``."""
    if not ok:
        raise ValueError(message)


class HasBatchSize(Params):
    """Mixin for param batchSize."""

    batchSize: Param[int] = Param(
        Params._dummy(), "batchSize",
        "Rows per graph call (>= 1). Larger is faster until executor memory runs out.",
        typeConverter=TypeConverters.toInt)  # type only; the range is checked in _validate()

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(batchSize=64)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)


class HasOutputMode(Params):
    """Mixin for param outputMode."""

    outputMode: Param[str] = Param(
        Params._dummy(), "outputMode",
        "How each output is stored: 'vector' (Spark ML DenseVector) or 'array' (array<float>).",
        typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(outputMode="vector")

    def getOutputMode(self) -> str:
        return self.getOrDefault(self.outputMode)


class HasGraph:
    """Holds the stage's ``TFGraph`` as model data (not a Param): it survives ``copy()``."""

    _graph: Any = None

    @property
    def graph(self) -> Any:
        """The stage's :class:`~sparkdl_lite.TFGraph` (``None`` until set)."""
        return self._graph

    def setGraph(self, graph: Any) -> Any:
        from sparkdl_lite.core.graph import TFGraph

        if graph is not None and not isinstance(graph, TFGraph):
            if isinstance(graph, (bytes, bytearray)):
                graph = TFGraph.from_bytes(bytes(graph))
            else:
                raise TypeError(f"{type(self).__name__}: graph must be a TFGraph or GraphDef bytes; got {type(graph).__name__}.")
        self._graph = graph
        return self

    def getGraph(self) -> Any:
        return self._graph

    def _require_graph(self) -> Any:
        if self._graph is None:
            raise ValueError(f"{type(self).__name__}: no graph set. Pass graph=TFGraph.from_keras(model) (or setGraph).")
        return self._graph
