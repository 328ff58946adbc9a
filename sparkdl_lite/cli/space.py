"""Search spaces of ``sparkdl-lite tune``: value ranges (``learningRate=1e-4:1e-2:log``) and random
configurations drawn from them (``--configs N``).

pyspark has no ``ParamRandomBuilder``, so the CLI draws its random configurations here, as plain
``{param name: value}`` dicts; :func:`sparkdl_lite.reports.experiments.tune` turns them into Spark ML param
maps. CLI layer: plain Python (``random``, seeded), no pyspark, no TensorFlow.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["Range", "parse_range", "sample_configs", "grid_size"]

_SCALES = ("lin", "linear", "log")


@dataclass(frozen=True)
class Range:
    """A range of one param: ``low`` to ``high`` (both included), drawn uniformly (``log=False``) or
    log-uniformly (``log=True``); ``integer`` ranges draw ints, ``one_layer`` ranges draw a one-layer
    list (``hiddenLayers=32:512`` gives ``[n]``)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False
    one_layer: bool = False

    def __str__(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if self.integer else f"{v:g}"
        return f"{num(self.low)}:{num(self.high)}" + (":log" if self.log else "")

    def draw(self, rng: random.Random) -> Any:
        """One value: an int, a float rounded to 4 significant digits, or a one-layer list."""
        if self.integer:
            if self.log:  # floor of a log-uniform draw on [low, high + 1): every int gets its share of the log scale
                value = int(math.floor(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))))
            else:
                value = rng.randint(int(self.low), int(self.high))
            value = min(int(self.high), max(int(self.low), value))
            return [value] if self.one_layer else value
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high))) if self.log else rng.uniform(self.low, self.high)
        return min(self.high, max(self.low, float(f"{value:.4g}")))  # readable in the report; still inside the range


def _number(name: str, text: str, integer: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--grid: {name} range end {text!r} is not a number; write a range as low:high or "
                         f"low:high:log, e.g. {name}={'32:512:log' if integer else '1e-4:1e-2:log'}.") from None
    if not math.isfinite(value):
        raise ValueError(f"--grid: {name} range end {text!r} is not a finite number.")
    if integer and not value.is_integer():
        raise ValueError(f"--grid: {name} range end {text!r} is not a whole number ({name} takes ints); "
                         f"e.g. {name}=32:512:log.")
    return value


def parse_range(name: str, text: str, kind: str) -> Range:
    """Parse ``"1e-4:1e-2:log"`` (or ``"a:b"``, ``"a:b:lin"``) for a param of ``kind``.

    ``kind`` is a ``HYPERPARAMS`` kind (``float``, ``int``, ``int_list``) or ``layer`` (a layer
    param: ints when both ends are written as ints, else floats). Choices have no ranges.

    Raises
    ------
    ValueError
        Malformed text, ``low >= high``, a log range that does not start above 0, a kind without
        ranges; the message names the param and shows a valid range.

    Examples
    --------
    >>> parse_range("learningRate", "1e-4:1e-2:log", "float")
    Range(low=0.0001, high=0.01, log=True, integer=False, one_layer=False)
    >>> str(parse_range("hidden.units", "32:512:log", "layer"))
    '32:512:log'
    """
    parts = [p.strip() for p in text.split(":")]
    if kind in ("choice",):
        raise ValueError(f"--grid: {name} takes one of a list of choices, not a range ({text!r}); list the values, "
                         f"e.g. {name}=a,b.")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"--grid: {name} range {text!r} is not low:high or low:high:log; e.g. "
                         f"{name}={'32:512:log' if kind in ('int', 'int_list') else '1e-4:1e-2:log'}.")
    scale = parts[2].lower() if len(parts) == 3 else "lin"
    if scale not in _SCALES:
        raise ValueError(f"--grid: {name} range {text!r} has scale {parts[2]!r}; the scale is 'log' or 'lin' "
                         f"(the default), e.g. {name}={parts[0]}:{parts[1]}:log.")
    integer = kind in ("int", "int_list") or (kind == "layer" and not any(c in p.lower() for p in parts[:2]
                                                                          for c in ".en"))
    low, high = _number(name, parts[0], integer), _number(name, parts[1], integer)
    if not low < high:
        raise ValueError(f"--grid: {name} range {text!r} must have low < high; got low {parts[0]} and high {parts[1]}.")
    log = scale == "log"
    if log and low <= 0:
        raise ValueError(f"--grid: {name} range {text!r} is on a log scale, so low must be > 0; got {parts[0]}.")
    return Range(low, high, log=log, integer=integer, one_layer=kind == "int_list")


Space = Sequence[Tuple[str, Union[List[Any], Range]]]


def grid_size(items: Space) -> float:
    """The number of configurations of a space of value lists (``inf`` when a param is a range)."""
    if any(isinstance(v, Range) for _, v in items):
        return math.inf
    return float(math.prod(len(v) for _, v in items))


def sample_configs(items: Space, n: int, seed: int = 0, *, max_tries: Optional[int] = None) -> List[Dict[str, Any]]:
    """``n`` distinct random configurations, ``{param name: value}`` each, drawn with ``random.Random(seed)``.

    A list param takes one of its values (uniformly), a :class:`Range` param one draw from its
    range. Without any range the configurations are ``n`` distinct points of the grid (all of
    them, in grid order, when ``n`` is at least the grid's size).

    Raises
    ------
    ValueError
        ``n < 1``, or fewer than ``n`` distinct configurations could be drawn (a narrow int range).

    Examples
    --------
    >>> configs = sample_configs([("learningRate", parse_range("learningRate", "1e-4:1e-2:log", "float")),
    ...                           ("hiddenLayers", [[64], [256]])], 3, seed=0)
    >>> len(configs), sorted(configs[0])
    (3, ['hiddenLayers', 'learningRate'])
    """
    if n < 1:
        raise ValueError(f"--configs must be >= 1; got {n}.")
    rng = random.Random(seed)
    names = [name for name, _ in items]
    size = grid_size(items)
    if size <= n:  # the whole grid: nothing to draw
        return [dict(zip(names, combo)) for combo in itertools.product(*(list(v) for _, v in items))]
    if not any(isinstance(v, Range) for _, v in items):
        picks = sorted(rng.sample(range(int(size)), n))  # distinct grid points, in grid order
        grid = list(itertools.product(*(list(v) for _, v in items)))
        return [dict(zip(names, grid[i])) for i in picks]
    out: List[Dict[str, Any]] = []
    seen = set()
    tries = max_tries if max_tries is not None else 100 * n
    while len(out) < n and tries > 0:
        tries -= 1
        config = {name: (values.draw(rng) if isinstance(values, Range) else values[rng.randrange(len(values))])
                  for name, values in items}
        key = repr(sorted(config.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(config)
    if len(out) < n:
        raise ValueError(f"--configs {n}: only {len(out)} distinct configurations could be drawn from "
                         f"{' '.join(f'{k}={v}' for k, v in items)}; widen a range or ask for fewer.")
    return out
