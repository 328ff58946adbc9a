"""The one JSON sanitiser: param values, metrics, histories and reports as plain, strict JSON values.

No pyspark, no TensorFlow.
"""
from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["plain", "number"]


def plain(value: Any, *, finite: bool = False) -> Any:
    """``value`` as plain Python for JSON: numpy scalars as Python numbers, tuples as lists, dicts and
    lists element by element; with ``finite`` NaN and infinity (a diverged loss) become None, so
    ``json.dumps(..., allow_nan=False)`` accepts the result."""
    if isinstance(value, dict):
        return {k: plain(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, finite=finite) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return value
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def number(value: Any) -> Optional[float]:
    """A metric or seconds value for strict JSON: a float, or None for None, NaN and infinity."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
