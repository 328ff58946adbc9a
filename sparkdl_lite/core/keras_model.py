"""The user's own Keras model: checks, ``.keras`` archives, ``layerParams`` and weight transfer.

Core module (Keras, TensorFlow and numpy; no pyspark). A model travels and is saved as Keras' own
``.keras`` archive (JSON config + weights), never pickled, and is always loaded in Keras' safe mode,
so loading runs no Python code from the file. Before that, :func:`check_model` walks the config on
the driver and refuses what safe mode or the tasks would fail on later, naming the layer or class.

``layerParams`` is a dict ``{"<layer path>.<config key>": value}``: a layer inside a nested model
is addressed by path (``"base/block_2.filters"``). :func:`build_variant` applies it to the config,
builds the model from the seed and carries over the given weights of every layer whose config and
weight shapes are unchanged and that is not downstream of a changed layer.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

__all__ = ["ModelInfo", "check_model", "to_archive", "from_archive", "apply_layer_params", "build_variant",
           "expand_layer_params", "layer_paths", "output_head", "read_loss", "serialize", "walk", "walk_live", "variant_info", "LOSSES"]

_WHO = "TFClassifier"
_MODEL_CLASSES = ("Functional", "Sequential")
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")
# Config keys that layerParams may not change: they define the graph, not the layer.
_FIXED_KEYS = ("name", "layers", "batch_shape", "batch_input_shape", "build_input_shape", "input_layers", "output_layers")


@dataclass(frozen=True)
class ModelInfo:
    """What the driver learns from a model before any Spark job (JSON-friendly fields).

    Attributes
    ----------
    input_shape : tuple of int
        The model's input shape without the batch dimension.
    units : int
        Width of the model's output (the number of classes, or 1 for a binary sigmoid/logit).
    activation : str
        The last activation: ``"softmax"``, ``"sigmoid"`` or ``"linear"`` (logits).
    loss : dict or None
        The compiled loss ``{"name": ..., "from_logits": bool}``; None for an uncompiled model.
    """

    input_shape: Tuple[int, ...]
    units: int
    activation: str
    loss: Optional[Dict[str, Any]]

    @property
    def head(self) -> str:
        """How the output is read: ``"probability"`` (softmax/sigmoid) or ``"logits"``."""
        if self.loss is not None:
            return "logits" if self.loss["from_logits"] else "probability"
        return "probability" if self.activation in ("softmax", "sigmoid") else "logits"


# ----------------------------------------------------------------------------- archives
def to_archive(model: Any) -> bytes:
    """The model as Keras' ``.keras`` archive bytes (config JSON + weights, no pickle)."""
    with tempfile.TemporaryDirectory(prefix="sparkdl_lite_") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def from_archive(data: bytes, compile: bool = False) -> Any:
    """Load ``.keras`` archive bytes in Keras' safe mode (no Python code from the file).

    Uncompiled by default; ``compile=True`` also restores the optimizer the archive was saved with,
    its state included (Adam's moments, the step count), where the archive holds one.
    """
    import keras

    with tempfile.TemporaryDirectory(prefix="sparkdl_lite_") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
        except TypeError as exc:  # an unknown class: Keras says "Could not locate class 'X'"
            raise TypeError(f"{_WHO}: the Keras model cannot be rebuilt here: {exc} A custom layer must be registered "
                            f"with keras.saving.register_keras_serializable and its module importable on the "
                            f"executors.") from None


# ----------------------------------------------------------------------------- config walks
def _layers_of(config: Mapping[str, Any]) -> List[Dict[str, Any]]:
    return list(config.get("layers") or [])


def _is_model_entry(entry: Mapping[str, Any]) -> bool:
    return entry.get("class_name") in _MODEL_CLASSES or "layers" in (entry.get("config") or {})


def walk(config: Mapping[str, Any], prefix: str = "") -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(path, layer entry)`` of every layer, nested models' layers included (input layers skipped)."""
    for entry in _layers_of(config):
        if entry.get("class_name") == "InputLayer":
            continue
        path = prefix + entry["config"]["name"]
        yield path, entry
        if _is_model_entry(entry):
            yield from walk(entry["config"], path + "/")


def layer_paths(serialized: Mapping[str, Any]) -> List[str]:
    """Paths of all the model's layers, as ``layerParams`` addresses them."""
    return [p for p, _ in walk(serialized["config"])]


def _config_keys(entry: Mapping[str, Any]) -> List[str]:
    return sorted(k for k in (entry.get("config") or {}) if k not in _FIXED_KEYS and k != "dtype")


def serialize(model: Any) -> Dict[str, Any]:
    """The model's Keras config (``serialize_keras_object``), as :func:`apply_layer_params` and :func:`walk` read it."""
    import keras

    return keras.saving.serialize_keras_object(model)


# ----------------------------------------------------------------------------- checks
def check_model(model: Any, who: str = _WHO) -> ModelInfo:
    """Refuse a model the tasks could not rebuild or train; return what the driver needs.

    Refused, naming the layer or class: subclassed models (only Sequential and functional models
    have a config to rebuild from), several inputs or outputs, an input shape with unknown
    dimensions, ``Lambda`` layers (Python bytecode; safe mode refuses them), custom classes that
    are not registered with ``keras.saving.register_keras_serializable``, and compiled losses other
    than (sparse) categorical or binary cross-entropy.

    Raises
    ------
    TypeError
        Not a Keras model, a subclassed model, or an unregistered custom class.
    ValueError
        Lambda layers, several inputs/outputs, unknown input dims, an unsupported loss.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"{who}: model must be a Keras 3 keras.Model (Sequential or functional); got {type(model).__name__}.")
    cls = type(model)
    if cls.__name__ not in _MODEL_CLASSES or not cls.__module__.startswith("keras"):
        raise TypeError(f"{who}: model is a subclassed Keras model ({cls.__module__}.{cls.__qualname__}); only "
                        f"Sequential and functional models can be rebuilt from their config in each Spark task. "
                        f"Build it with keras.Sequential([...]) or keras.Model(inputs, outputs).")
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        inputs, outputs = [], []
    if not inputs:
        raise ValueError(f"{who}: model {model.name!r} has no known input; start it with keras.Input(shape=...) "
                         f"so its input shape is known.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{who}: model {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
                         f"TFClassifier trains models with exactly one input and one output.")
    shape = tuple(inputs[0].shape[1:])
    if not shape or any(d is None for d in shape):
        raise ValueError(f"{who}: model {model.name!r} has input shape {list(shape)} with unknown dimensions; "
                         f"give keras.Input a full shape, e.g. (28, 28, 1).")
    for path, layer in walk_live(model):
        _check_class(layer, path, who)
    serialized = serialize(model)
    for path, entry in walk(serialized["config"]):
        if entry.get("class_name") == "Lambda":
            raise ValueError(f"{who}: layer {path!r} is a Lambda layer; its Python code cannot be saved safely. "
                             f"Replace it with a built-in layer or a custom layer class registered with "
                             f"keras.saving.register_keras_serializable.")
    units, activation = output_head(model)
    return ModelInfo(input_shape=tuple(int(d) for d in shape), units=units, activation=activation,
                     loss=read_loss(model, who))


def walk_live(model: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """``(path, layer)`` of every layer of a built model, nested models' layers included."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk_live(layer, path + "/")


def _check_class(obj: Any, path: str, who: str) -> None:
    import keras

    cls = type(obj)
    if cls.__module__.startswith("keras."):
        return
    if isinstance(obj, keras.Model) and cls.__name__ not in _MODEL_CLASSES:
        raise TypeError(f"{who}: layer {path!r} is a subclassed Keras model ({cls.__module__}.{cls.__qualname__}); "
                        f"nested models must be Sequential or functional.")
    name = keras.saving.get_registered_name(cls)
    if keras.saving.get_registered_object(name) is not cls:
        raise TypeError(f"{who}: layer {path!r} is an instance of the custom class {cls.__module__}.{cls.__qualname__}, "
                        f"which is not registered; decorate it with @keras.saving.register_keras_serializable() "
                        f"and make its module importable on the executors.")


def output_head(model: Any) -> Tuple[int, str]:
    """``(units, last activation)`` of a one-output model; activation is softmax, sigmoid or linear."""
    out = model.outputs[0]
    units = int(out.shape[-1]) if out.shape and out.shape[-1] is not None else 0
    layer = _producer(out)
    activation = "linear"
    while layer is not None:
        cfg = layer.get_config()
        cls = type(layer).__name__
        if cls == "Softmax":
            activation = "softmax"
        elif "activation" in cfg and isinstance(cfg["activation"], str):
            activation = cfg["activation"]
        elif hasattr(layer, "layers") and layer.outputs:  # a nested model as the last layer
            return units, output_head(layer)[1]
        break
    return units, activation if activation in ("softmax", "sigmoid") else "linear"


def _producer(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    return getattr(history, "operation", None) if history is not None else None


def read_loss(model: Any, who: str = _WHO) -> Optional[Dict[str, Any]]:
    """The compiled loss as ``{"name", "from_logits"}``, or None for an uncompiled model."""
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        return None
    loss = model.loss
    from_logits = False
    if isinstance(loss, str):
        name = loss
    elif hasattr(loss, "get_config"):
        cfg = loss.get_config()
        name = cfg.get("name") or type(loss).__name__
        fn = getattr(loss, "fn", None)
        if getattr(fn, "__name__", None) in LOSSES:
            name = fn.__name__
        from_logits = bool(cfg.get("from_logits", False))
    else:
        name = getattr(loss, "__name__", repr(loss))
    if name not in LOSSES:
        raise ValueError(f"{who}: the model is compiled with loss {name!r}; TFClassifier trains with "
                         f"{', '.join(LOSSES)} (as compiled, logits or not). Compile with one of them or pass the "
                         f"model uncompiled (sparse categorical cross-entropy is used).")
    return {"name": name, "from_logits": from_logits}


# ----------------------------------------------------------------------------- layerParams
def _split_key(key: Any, who: str) -> Tuple[str, str]:
    if not isinstance(key, str) or "." not in key.strip(".") :
        raise ValueError(f"{who}: param 'layerParams' keys must look like '<layer>.<config key>' "
                         f"(e.g. 'hidden.units'); got {key!r}.")
    path, attr = key.rsplit(".", 1)
    return path, attr


def apply_layer_params(serialized: Mapping[str, Any], layer_params: Mapping[str, Any],
                       who: str = _WHO) -> Tuple[Dict[str, Any], Set[str]]:
    """A copy of the serialized model with ``layerParams`` applied, and the paths of the layers it changed.

    Raises ``ValueError`` naming the unknown layer (listing the model's layers) or the unknown key
    (listing that layer's config keys).
    """
    out = copy.deepcopy(dict(serialized))
    out.pop("compile_config", None)
    entries = dict(walk(out["config"]))
    changed: Set[str] = set()
    for key, value in (layer_params or {}).items():
        path, attr = _split_key(key, who)
        entry = entries.get(path)
        if entry is None:
            raise ValueError(f"{who}: param 'layerParams' key {key!r} names no layer of the model: there is no layer "
                             f"{path!r}. Layers: {list(entries)}.")
        keys = _config_keys(entry)
        if attr not in keys:
            raise ValueError(f"{who}: param 'layerParams' key {key!r}: layer {path!r} ({entry.get('class_name')}) has "
                             f"no config key {attr!r}. Its keys: {keys}.")
        if entry["config"][attr] != value:
            entry["config"][attr] = value
            changed.add(path)
    if changed:
        for _, entry in walk(out["config"]):
            entry.pop("build_config", None)  # shapes below a changed layer may differ; rebuilt from the graph
    return out, changed


def expand_layer_params(ranges: Mapping[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    """Every combination of the given values, as the list of dicts a ``layerParams`` grid takes.

    Examples
    --------
    >>> expand_layer_params({"hidden.units": [64, 256], "drop.rate": [0.2, 0.5]})
    [{'hidden.units': 64, 'drop.rate': 0.2}, {'hidden.units': 64, 'drop.rate': 0.5}, {'hidden.units': 256, 'drop.rate': 0.2}, {'hidden.units': 256, 'drop.rate': 0.5}]

    .. versionadded:: 0.2.0
    """
    import itertools

    keys = list(ranges)
    for k in keys:
        vals = ranges[k]
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or not vals:
            raise ValueError(f"expand_layer_params: {k!r} must map to a non-empty list of values; got {vals!r}.")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(ranges[k]) for k in keys))]


# ----------------------------------------------------------------------------- weights
def _inbound(entry: Mapping[str, Any]) -> Set[str]:
    """Names of the layers feeding a functional layer entry (from its ``keras_history``)."""
    found: Set[str] = set()

    def scan(obj: Any) -> None:
        if isinstance(obj, dict):
            hist = obj.get("keras_history") if isinstance(obj.get("keras_history"), (list, tuple)) else None
            if hist:
                found.add(hist[0])
            for v in obj.values():
                scan(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                scan(v)

    scan(entry.get("inbound_nodes") or [])
    return found


def _fresh_paths(config: Mapping[str, Any], changed: Set[str], prefix: str = "", dirty_in: bool = False) -> Tuple[Set[str], bool]:
    """Leaf paths that start afresh: changed layers and everything downstream of one."""
    fresh: Set[str] = set()
    dirty: Dict[str, bool] = {}
    previous_dirty = dirty_in
    functional = any("inbound_nodes" in e for e in _layers_of(config))
    any_dirty = False
    for entry in _layers_of(config):
        name = entry["config"]["name"]
        if entry.get("class_name") == "InputLayer":
            dirty[name] = dirty_in
            continue
        path = prefix + name
        upstream = any(dirty.get(n, False) for n in _inbound(entry)) or dirty_in if functional else previous_dirty
        if _is_model_entry(entry):
            inner, inner_dirty = _fresh_paths(entry["config"], changed, path + "/", upstream)
            fresh |= inner
            out_dirty = inner_dirty or path in changed
            if path in changed:
                fresh |= {p for p, _ in walk(entry["config"], path + "/")}
        else:
            out_dirty = upstream or path in changed
            if out_dirty:
                fresh.add(path)
        dirty[name] = out_dirty
        previous_dirty = out_dirty
        any_dirty = any_dirty or out_dirty
    return fresh, any_dirty


def _frozen(model: Any, prefix: str = "", parent_frozen: bool = False) -> Dict[str, bool]:
    import keras

    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        frozen = parent_frozen or not layer.trainable
        out[path] = frozen
        if isinstance(layer, keras.Model):
            out.update(_frozen(layer, path + "/", frozen))
    return out


def _shapes(layer: Any) -> List[Tuple[int, ...]]:
    return [tuple(w.shape) for w in layer.weights]


def build_variant(given: Any, layer_params: Optional[Mapping[str, Any]] = None, *, seed: int = 0,
                  fresh: bool = False, who: str = _WHO) -> Tuple[Any, Dict[str, str]]:
    """Build ``given`` with ``layerParams`` applied, from ``seed``, carrying over the weights it may keep.

    A layer keeps the given weights when its config and weight shapes are unchanged and no changed
    layer feeds it (directly or through others); otherwise it starts afresh from the seed. Frozen
    layers (``trainable=False``, or inside a frozen nested model) always keep the given weights,
    and one whose weight shapes would change is an error. ``fresh=True`` starts every trainable
    layer afresh.

    Returns
    -------
    (keras.Model, dict)
        The new model and, per layer path with weights, ``"given"`` or ``"fresh"``.

    Raises
    ------
    ValueError
        Unknown layer or key in ``layer_params``; a frozen layer whose weight shapes change; a
        config Keras cannot build (the message names ``layerParams``).
    """
    import keras

    serialized, changed = apply_layer_params(serialize(given), layer_params or {}, who)
    fresh_paths, _ = _fresh_paths(serialized["config"], changed)  # before Keras consumes the config
    keras.utils.set_random_seed(int(seed))
    try:
        model = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad config value
        raise ValueError(f"{who}: the model cannot be built with layerParams {dict(layer_params or {})!r}: "
                         f"{type(exc).__name__}: {exc}") from None
    old = dict(walk_live(given))
    frozen = _frozen(model)
    plan: Dict[str, str] = {}
    for path, layer in walk_live(model):
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        source = old.get(path)
        same_shapes = source is not None and _shapes(source) == _shapes(layer)
        if frozen.get(path):
            if not same_shapes:
                raise ValueError(f"{who}: layer {path!r} is frozen (trainable=False) but layerParams "
                                 f"{dict(layer_params or {})!r} change its weight shapes from "
                                 f"{[list(s) for s in _shapes(source)] if source is not None else None} to "
                                 f"{[list(s) for s in _shapes(layer)]}; unfreeze it or leave its shape alone.")
            keep = True
        else:
            keep = same_shapes and not fresh and path not in fresh_paths
        if keep:
            layer.set_weights(source.get_weights())
        plan[path] = "given" if keep else "fresh"
    return model, plan


def variant_info(given: Any, layer_params: Optional[Mapping[str, Any]], *, seed: int, fresh: bool,
                 loss: Optional[Dict[str, Any]]) -> Tuple[ModelInfo, int]:
    """(ModelInfo, parameter count) of the variant :func:`build_variant` makes (built on the driver,
    so a bad layer key or a frozen layer whose shape would change fails before any job)."""
    net, _ = build_variant(given, layer_params, seed=seed, fresh=fresh)
    units, activation = output_head(net)
    info = ModelInfo(input_shape=tuple(int(d) for d in net.inputs[0].shape[1:]), units=units, activation=activation,
                     loss=loss)
    return info, int(net.count_params())


def weights_equal(a: Any, b: Any) -> bool:
    """True when two models hold bit-identical weights (same order)."""
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


def describe(serialized: Mapping[str, Any]) -> str:
    """One line per layer path with its class: for messages and reports."""
    return json.dumps({p: e.get("class_name") for p, e in walk(serialized["config"])})
