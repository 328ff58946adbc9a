"""Train one classifier configuration on numpy arrays and freeze it into a :class:`TFGraph`.

This is what :class:`~sparkdl_lite.TFClassifier` runs inside each Spark task: it builds the
network (a built-in ``mlp`` / ``cnn`` preset, or the user's own Keras model with its
``layerParams``), fits it with Keras and returns the frozen inference graph (input
``features:0``; outputs ``logits:0`` and ``probability:0``) with its per-epoch history and the
trained model's ``.keras`` archive. Presets and user models share one code path. Core module:
TensorFlow, Keras and numpy only, no pyspark.
"""
from __future__ import annotations

import functools
import math
import numbers
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sparkdl_lite.core import image
from sparkdl_lite.core.graph import TFGraph

__all__ = ["ARCHITECTURES", "OPTIMIZERS", "SCHEDULES", "HYPERPARAMS", "hyperparam_problem", "hyperparam_kwargs",
           "scale_problem", "check_reshape", "first_non_integral", "classes_from_labels", "epoch_batches",
           "check_warm_start", "TrainResult", "build_model", "train", "freeze", "preprocess",
           "resolve_head", "check_input_shape", "preset_work"]

ARCHITECTURES = ("mlp", "cnn")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")

#: The one table of the fixed hyperparameters (a user model's own ``layerParams`` keys are checked
#: against its config instead): kind, default and range. TFClassifier's Params, its checks, the
#: CLI's ``--grid`` parser and :func:`train` read it.
HYPERPARAMS: Dict[str, Dict[str, Any]] = {
    "learningRate": {"kind": "float", "above": 0.0, "default": 1e-3},
    "hiddenLayers": {"kind": "int_list", "min": 1, "default": [128], "preset": True},
    "convFilters": {"kind": "int_list", "min": 1, "default": [32, 64], "preset": True},
    "dropout": {"kind": "float", "min": 0.0, "below": 1.0, "default": 0.0, "preset": True},
    "epochs": {"kind": "int", "min": 1, "default": 5},
    "batchSize": {"kind": "int", "min": 1, "default": 128},
    "architecture": {"kind": "choice", "choices": ARCHITECTURES, "default": "mlp", "preset": True},
    "optimizer": {"kind": "choice", "choices": OPTIMIZERS, "default": "adam"},
    "learningRateSchedule": {"kind": "choice", "choices": SCHEDULES, "default": "constant"},
    "seed": {"kind": "int", "min": 0, "below": 2**32, "default": 0},
}


_CONVERT = {"float": float, "int": int, "int_list": lambda v: [int(d) for d in v], "choice": str}


def hyperparam_kwargs(values: Dict[str, Any]) -> Dict[str, Any]:
    """Hyperparameters by Param name (``learningRate``) as :func:`train`'s keyword arguments (``learning_rate``).

    Derived from ``HYPERPARAMS``: every entry's camelCase name in snake case, its value converted to
    the entry's kind (plain Python, so a task's arguments are JSON values)."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower(): _CONVERT[HYPERPARAMS[name]["kind"]](value)
            for name, value in values.items()}


def hyperparam_problem(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is out of range for hyperparameter ``name`` (a message tail), or None when it is fine."""
    spec = HYPERPARAMS[name]
    kind = spec["kind"]
    bound = {k: f"{spec[k]:g}" for k in ("min", "above", "below") if k in spec}  # 0, not 0.0, in messages
    if kind == "choice":
        return None if value in spec["choices"] else f"must be one of {list(spec['choices'])}; got {value!r}."
    if kind == "int_list":
        return None if all(v >= spec["min"] for v in value) else f"must hold ints >= {bound['min']}; got {value!r}."
    if kind == "float" and not math.isfinite(float(value)):
        return f"must be a finite number; got {value!r}."
    if "min" in spec and value < spec["min"]:
        return f"must be {'an int' if kind == 'int' else 'a number'} >= {bound['min']}; got {value!r}."
    if "above" in spec and not value > spec["above"]:
        return f"must be > {bound['above']}; got {value!r}."
    if "below" in spec and not value < spec["below"]:
        low = bound.get("min", bound.get("above"))
        return f"must be in [{low}, {bound['below']}); got {value!r}." if kind == "float" else f"must be < {spec['below']}; got {value!r}."
    return None


_WHO = "training"
SHUFFLE_ROWS = 8192  # rows of the shuffle buffer when streaming staged rows (train's shuffle_rows)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    graph : TFGraph
        The frozen inference graph: input ``features:0`` (float32, raw feature values),
        outputs ``logits:0`` and ``probability:0`` (softmax of the logits).
    history : list of dict
        One dict per epoch run: ``{"epoch": int, "loss": float, "accuracy": float, "seconds": float}``
        (``epoch`` counts from 1; ``loss`` and ``accuracy`` are the training-set means over the epoch).
    seconds : float
        Wall time of the whole :func:`train` call, freezing included.
    diverged : bool
        True when the training loss became NaN or infinite; training stopped there and
        ``graph`` holds the weights reached (its outputs may be NaN).
    phases : dict
        Where ``seconds`` went: ``import`` (TensorFlow and Keras imports, ~0 once loaded),
        ``build`` (model construction and compile), ``fit`` (Keras ``fit``: the epochs and the
        first trace of the training step) and ``freeze`` (exporting the inference graph and archive).
    model : bytes
        The trained Keras model as a ``.keras`` archive (config with its layer params, weights):
        what a warm start (``train(..., warm_start=result.model)``) continues from.
    weights : dict
        Where each layer's starting weights came from, by layer path: ``"given"`` (the user's
        model), ``"fresh"`` (initialised from the seed) or ``"warm"`` (a warm start); empty for
        a preset, which starts fresh.

    .. versionadded:: 0.1.0
    """

    graph: TFGraph
    history: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: bool = False
    phases: Dict[str, float] = field(default_factory=dict)
    model: Optional[bytes] = None
    weights: Dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- validation
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{_WHO}: param {name!r} must be an int; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{_WHO}: param {name!r} must be >= {minimum}; got {value!r}.")
    return int(value)


def _check_int_list(name: str, value: Any, *, allow_empty: bool) -> Tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise TypeError(f"{_WHO}: param {name!r} must be a list of ints; got {value!r} ({type(value).__name__}).")
    items = list(value)
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{_WHO}: param {name!r} must be a list of ints; got {value!r}.")
    if any(v < 1 for v in items):
        raise ValueError(f"{_WHO}: param {name!r} must hold ints >= 1; got {items!r}.")
    if not items and not allow_empty:
        raise ValueError(f"{_WHO}: param {name!r} must not be empty; got {items!r}.")
    return tuple(int(v) for v in items)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{_WHO}: param {name!r} must be a str, one of {list(choices)}; got {value!r} ({type(value).__name__}).")
    if value.lower() not in choices:
        raise ValueError(f"{_WHO}: param {name!r} must be one of {list(choices)}; got {value!r}.")
    return value.lower()


def _check_dropout(dropout: Any) -> float:
    if not _is_real(dropout):
        raise TypeError(f"{_WHO}: param 'dropout' must be a float in [0, 1); got {dropout!r} ({type(dropout).__name__}).")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{_WHO}: param 'dropout' must be in [0, 1); got {dropout!r}.")
    return float(dropout)


def scale_problem(scale: Any) -> Optional[str]:
    """Why ``scale`` is not a usable feature scale (a message tail after the param name), or None."""
    if scale is None or math.isfinite(float(scale)) and float(scale) != 0.0:
        return None
    return f"must be None or a finite non-zero float (e.g. 1/255 for raw images); got {scale!r}."


def _check_scale(scale: Any) -> Optional[float]:
    if scale is None:
        return None
    if not _is_real(scale):
        raise TypeError(f"{_WHO}: param 'scale' must be a float or None; got {scale!r} ({type(scale).__name__}).")
    problem = scale_problem(scale)
    if problem:
        raise ValueError(f"{_WHO}: param 'scale' {problem}")
    return float(scale)


def _target_shape(architecture: str, feature_shape: Tuple[int, ...],
                  input_shape: Optional[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
    """The shape the model reshapes its features to, or None when no Reshape is needed."""
    target = input_shape
    check_reshape(feature_shape, target)
    if architecture != "cnn":
        return target
    shape = target if target is not None else feature_shape
    if len(shape) == 1:
        raise ValueError(f"{_WHO}: architecture 'cnn' needs image-shaped features (height, width, channels) but the "
                         f"features are flat vectors of {shape[0]} values; set inputShape, e.g. [height, width, channels].")
    if len(shape) == 2:
        return (*shape, 1)  # a single-channel image given as (height, width)
    if len(shape) != 3:
        raise ValueError(f"{_WHO}: architecture 'cnn' needs a 3-D (height, width, channels) shape; got {list(shape)}. "
                         "Set inputShape to [height, width, channels].")
    return target



# ----------------------------------------------------------------------------- presets
def build_model(*, architecture: str, num_classes: int, feature_shape: Sequence[int],
                input_shape: Optional[Sequence[int]] = None, hidden_layers: Sequence[int] = (128,),
                conv_filters: Sequence[int] = (32, 64), dropout: float = 0.0):
    """Build a built-in architecture (a preset) as a plain Keras model with a logits output (not compiled).

    Presets go down the same training path as a user's own model: :func:`train` builds one,
    then fits and freezes it exactly as it would a model given with ``model=``.

    Parameters
    ----------
    architecture : {"mlp", "cnn"}
        ``mlp``: Flatten, then one ``Dense(relu)`` per ``hidden_layers`` entry.
        ``cnn``: one ``Conv2D(f, 3, "same", relu)`` + ``MaxPooling2D(2)`` per ``conv_filters``
        entry (pooling is skipped along an axis shorter than 2; ``Dropout(dropout)`` after each
        block when ``dropout > 0``), then Flatten and the ``hidden_layers`` as in ``mlp``.
    num_classes : int
        Number of classes (>= 2): the width of the logits.
    feature_shape : sequence of int
        Shape of one feature row without the batch dimension, e.g. ``(64,)`` or ``(28, 28)``.
    input_shape : sequence of int, optional
        The model's input shape when it differs from ``feature_shape`` (same element count), e.g.
        ``[8, 8, 1]`` for flat 64-value vectors fed to a ``cnn``; :func:`train` reshapes the rows.
    hidden_layers : sequence of int
        Units of the hidden dense layers; may be empty for ``cnn`` only.
    conv_filters : sequence of int
        Filters of the conv blocks (``cnn`` only).
    dropout : float
        Dropout rate in [0, 1) after each hidden dense layer (and each conv block of a ``cnn``);
        0 adds no Dropout layer.

    Returns
    -------
    keras.Model
        A functional model whose input is the (reshaped) feature row and whose one output is the
        layer ``logits`` (no activation).

    Raises
    ------
    ValueError
        For an unknown architecture, bad layer sizes, an ``input_shape`` whose element count
        differs from ``feature_shape``, or a ``cnn`` on flat features without ``input_shape``.
    TypeError
        For arguments of the wrong type.

    Examples
    --------
    >>> m = build_model(architecture="mlp", num_classes=3, feature_shape=(4,), hidden_layers=[8])
    >>> m.output_names, m.input_shape
    (['logits'], (None, 4))

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       One ``logits`` output; scaling and reshaping moved into :func:`train`'s preprocessing.
    """
    spec = _preset_spec(architecture=architecture, num_classes=num_classes, feature_shape=feature_shape,
                        input_shape=input_shape, hidden_layers=hidden_layers, conv_filters=conv_filters,
                        dropout=dropout)
    return _build_preset(**spec)


def _preset_spec(*, architecture, num_classes, feature_shape, input_shape, hidden_layers, conv_filters,
                 dropout) -> Dict[str, Any]:
    """Checked and normalised preset arguments (``model_shape``: the model's input shape)."""
    architecture = _check_choice("architecture", architecture, ARCHITECTURES)
    feature_shape = _check_int_list("featureShape", feature_shape, allow_empty=False)
    if input_shape is not None:
        input_shape = _check_int_list("inputShape", input_shape, allow_empty=False)
    target = _target_shape(architecture, feature_shape, input_shape)
    return dict(architecture=architecture,
                num_classes=_check_int("numClasses", num_classes, 2),
                model_shape=tuple(target) if target is not None else feature_shape,
                hidden_layers=_check_int_list("hiddenLayers", hidden_layers, allow_empty=architecture == "cnn"),
                conv_filters=_check_int_list("convFilters", conv_filters, allow_empty=True),
                dropout=_check_dropout(dropout))


def preset_work(*, architecture: str, num_classes: int, feature_shape: Sequence[int],
                input_shape: Optional[Sequence[int]] = None, hidden_layers: Sequence[int] = (),
                conv_filters: Sequence[int] = (), dropout: float = 0.0) -> int:
    """Multiply-adds per row of a preset's forward pass, counted without TensorFlow.

    A relative measure of a preset's training time per row and epoch (the backward pass costs a
    fixed multiple of it), so that a job can start its longest trainings first. Params are
    checked as :func:`train` checks them (ValueError/TypeError).

    Examples
    --------
    >>> preset_work(architecture="mlp", num_classes=10, feature_shape=[784], hidden_layers=[64])
    50816

    .. versionadded:: 0.2.0
    """
    spec = _preset_spec(architecture=architecture, num_classes=num_classes, feature_shape=feature_shape,
                        input_shape=input_shape, hidden_layers=hidden_layers, conv_filters=conv_filters,
                        dropout=dropout)
    shape = list(spec["model_shape"])
    work = 0
    if spec["architecture"] == "cnn":  # 3x3 'same' convolutions, each followed by 2x2 max-pooling where it fits
        height, width, channels = shape[0], shape[1], shape[2] if len(shape) > 2 else 1
        for filters in spec["conv_filters"]:
            work += height * width * 9 * channels * filters
            channels = filters
            height, width = (height // 2 if height >= 2 else height), (width // 2 if width >= 2 else width)
        flat = height * width * channels
    else:
        flat = math.prod(shape)
    for units in spec["hidden_layers"]:
        work += flat * units
        flat = units
    return int(work + flat * spec["num_classes"])


def _build_preset(*, architecture, num_classes, model_shape, hidden_layers, conv_filters, dropout):
    import keras
    from keras import layers

    inputs = keras.Input(shape=model_shape, name="features", dtype="float32")
    h = inputs
    if architecture == "cnn":
        for i, filters in enumerate(conv_filters):
            h = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i}")(h)
            pool = tuple(2 if d is not None and d >= 2 else 1 for d in h.shape[1:3])
            if pool != (1, 1):
                h = layers.MaxPooling2D(pool, name=f"pool_{i}")(h)
            if dropout > 0:
                h = layers.Dropout(dropout, name=f"conv_dropout_{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    for i, units in enumerate(hidden_layers):
        h = layers.Dense(units, activation="relu", name=f"dense_{i}")(h)
        if dropout > 0:
            h = layers.Dropout(dropout, name=f"dropout_{i}")(h)
    logits = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, logits, name=f"sparkdl_lite_{architecture}")


# ----------------------------------------------------------------------------- heads and losses
def resolve_head(info: Any, num_classes: int) -> Tuple[str, int, Dict[str, Any]]:
    """``(head, num_classes, loss)`` for a model's output, checked against the labels' class count.

    ``head`` is ``"probability"`` or ``"logits"``; a 1-unit output is binary (``num_classes`` 2).
    ``loss`` is the compiled one or, for an uncompiled model, (sparse categorical or binary)
    cross-entropy matching the last activation.
    """
    units = int(info.units)
    if units == 1:
        if num_classes > 2:
            raise ValueError(f"{_WHO}: the model has 1 output unit (binary) but the labels hold {num_classes} classes; "
                             f"give the last layer {num_classes} units.")
        default = {"name": "binary_crossentropy", "from_logits": info.activation != "sigmoid"}
        loss = info.loss or default
        if loss["name"] != "binary_crossentropy":
            raise ValueError(f"{_WHO}: the model has 1 output unit but is compiled with {loss['name']!r}; "
                             f"a 1-unit output needs binary_crossentropy.")
        return info.head, 2, loss
    if units < num_classes:
        raise ValueError(f"{_WHO}: the model has {units} output units but the labels hold {num_classes} classes "
                         f"(0..{num_classes - 1}); give the last layer at least {num_classes} units.")
    loss = info.loss or {"name": "sparse_categorical_crossentropy", "from_logits": info.activation != "softmax"}
    if loss["name"] == "binary_crossentropy":
        raise ValueError(f"{_WHO}: the model has {units} output units but is compiled with 'binary_crossentropy'; "
                         f"use sparse_categorical_crossentropy (or a 1-unit sigmoid output for 2 classes).")
    return info.head, units, loss


def _loss_and_metric(loss: Dict[str, Any]) -> Tuple[Any, Any]:
    import keras

    logits = bool(loss["from_logits"])
    name = loss["name"]
    if name == "binary_crossentropy":
        return (keras.losses.BinaryCrossentropy(from_logits=logits),
                keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if logits else 0.5))
    if name == "categorical_crossentropy":
        return keras.losses.CategoricalCrossentropy(from_logits=logits), keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=logits), keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _targets(loss_name: str, y: np.ndarray, units: int) -> np.ndarray:
    """The labels as the loss takes them: a column of floats (binary), one-hot rows (categorical), or class indices."""
    y = np.asarray(y).astype(np.int64)
    if loss_name == "binary_crossentropy":
        return y.astype(np.float32).reshape(-1, 1)
    if loss_name == "categorical_crossentropy":
        return np.eye(units, dtype=np.float32)[y]
    return y


def freeze(net: Any, *, feature_shape: Sequence[int], model_shape: Sequence[int], head: str,
           scale: Optional[float] = None, reverse_channels: bool = False) -> TFGraph:
    """Freeze ``net`` behind the features preprocessing, with ``logits:0`` and ``probability:0`` outputs.

    The graph takes raw feature rows (``features:0``, float32, ``feature_shape``), reverses the
    channel axis when asked, multiplies by ``scale``, reshapes to ``model_shape`` and runs the
    model in inference mode: the same preprocessing :func:`train` applies to the training rows.
    A ``"probability"`` head gives ``probability`` as the model outputs it and ``logits`` as its
    log; a ``"logits"`` head the reverse (softmax). A 1-unit output becomes two classes:
    ``probability = [1 - p, p]`` and ``logits = [0, logit(p)]``.
    """
    import tensorflow as tf

    feature_shape = tuple(int(d) for d in feature_shape)
    model_shape = tuple(int(d) for d in model_shape)

    def fn(features):
        h = features
        if reverse_channels:
            h = tf.reverse(h, axis=[-1])
        if scale is not None:
            h = h * tf.constant(scale, tf.float32)
        if model_shape != feature_shape:
            h = tf.reshape(h, (-1, *model_shape))
        out = tf.cast(net(h, training=False), tf.float32)
        if out.shape[-1] == 1:
            if head == "probability":
                p = tf.clip_by_value(out, 1e-7, 1.0 - 1e-7)
                z = tf.math.log(p) - tf.math.log1p(-p)
                prob = tf.concat([1.0 - out, out], axis=-1)
            else:
                z = out
                p = tf.sigmoid(z)
                prob = tf.concat([1.0 - p, p], axis=-1)
            return {"logits": tf.concat([tf.zeros_like(z), z], axis=-1), "probability": prob}
        if head == "probability":
            return {"logits": tf.math.log(tf.maximum(out, 1e-30)), "probability": out}
        return {"logits": out, "probability": tf.nn.softmax(out, axis=-1)}

    return TFGraph.from_function(fn, [tf.TensorSpec([None, *feature_shape], tf.float32, name="features")])


def preprocess(x: np.ndarray, *, model_shape: Sequence[int], scale: Optional[float] = None,
               reverse_channels: bool = False, channels: Optional[int] = None) -> np.ndarray:
    """The training rows as the model sees them: float32, channels reversed, scaled, reshaped (as :func:`freeze`).

    ``channels`` (streamed images) keeps the first three of four channels, as a collect drops alpha."""
    x = np.asarray(x)
    if channels == 4:
        x = image.without_alpha(x)
    if reverse_channels:
        x = x[..., ::-1]
    x = x.astype(np.float32)  # a copy: the caller's (broadcast) array is never written
    if scale is not None:
        x *= np.float32(scale)
    return x.reshape((len(x), *tuple(model_shape)))


def check_reshape(feature_shape: Sequence[int], input_shape: Optional[Sequence[int]], what: str = "feature row",
                  who: str = _WHO) -> None:
    """Raise a ValueError naming both unless param ``inputShape`` (if set) holds as many values as each feature row."""
    if input_shape is None or math.prod(input_shape) == math.prod(feature_shape):
        return
    raise ValueError(f"{who}: param 'inputShape' {list(input_shape)} holds {math.prod(input_shape)} values but each "
                     f"{what} has shape {list(feature_shape)} ({math.prod(feature_shape)} values); their counts must be "
                     f"equal.")


def check_warm_start(graph_shape: Optional[Sequence[Any]], model_classes: int, feature_shape: Sequence[int],
                     num_classes: int, who: str = "TFClassifier") -> None:
    """Raise a ValueError unless a warm-start model (its graph input's shape, its classes) fits the data."""
    if graph_shape is not None and tuple(graph_shape[1:]) != tuple(feature_shape):
        raise ValueError(f"{who}: the warm-start model takes feature rows of shape {list(graph_shape[1:])} but "
                         f"the data's rows have shape {list(feature_shape)}.")
    if model_classes < num_classes:
        raise ValueError(f"{who}: the warm-start model has {model_classes} classes but the labels hold {num_classes}.")


def check_input_shape(feature_shape: Sequence[int], model_shape: Sequence[int], col: str = "features") -> None:
    """Raise a ValueError naming both shapes unless each feature row fits the model's input."""
    feature_shape, model_shape = tuple(feature_shape), tuple(model_shape)
    if math.prod(feature_shape) != math.prod(model_shape):
        raise ValueError(f"{_WHO}: each row of {col!r} has shape {list(feature_shape)} ({math.prod(feature_shape)} "
                         f"values) but the model's input has shape {list(model_shape)} ({math.prod(model_shape)} "
                         f"values); give rows of the model's input size or a model that takes them.")


# ----------------------------------------------------------------------------- training
def _set_threads(n: int) -> None:
    """Give TF ``n`` intra-op threads; a no-op once TF's runtime has started (it then refuses)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1 if n == 1 else 2)
    except RuntimeError:
        pass  # TF is initialized in this process; its thread pools are fixed now


def _make_optimizer(name: str, learning_rate: float, schedule: str = "constant", steps: int = 1):
    """The Keras optimizer ``name`` with its default settings but the step size.

    ``schedule="cosine"`` decays the step size from ``learning_rate`` to 0 along a half cosine over
    ``steps`` optimizer steps (Keras' ``CosineDecay``); ``"constant"`` keeps it.
    """
    import keras

    lr: Any = float(learning_rate)
    if schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, int(steps)), alpha=0.0)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr)
    return keras.optimizers.RMSprop(learning_rate=lr)


def _continue_optimizer(opt: Any, old: Any, net: Any) -> bool:
    """Give the fresh optimizer ``opt`` the state of ``old`` (same class) for ``net``'s weights.

    Copies the step count and the slot variables (Adam's moments, RMSprop's averages, SGD's
    momentum) in order, and only when every variable matches in shape; the step size stays the
    new one. Returns whether the state was carried.
    """
    if type(opt) is not type(old) or not getattr(old, "built", False):
        return False
    opt.build(net.trainable_variables)
    skip = {id(getattr(o, "_learning_rate", None)) for o in (opt, old)}  # a learning-rate variable stays the new one
    new_vars = [v for v in opt.variables if id(v) not in skip]
    old_vars = [v for v in old.variables if id(v) not in skip]
    if len(new_vars) != len(old_vars) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(new_vars, old_vars)):
        return False
    for a, b in zip(new_vars, old_vars):
        a.assign(b)
    return True


def first_non_integral(y: np.ndarray) -> Optional[float]:
    """The first label that is not a whole number (NaN and infinity included), or None."""
    if y.dtype.kind != "f":
        return None
    integral = np.isfinite(y) & (y == np.round(y))
    return None if integral.all() else float(y[~integral][0])


def classes_from_labels(bad: Optional[float], low: float, high: float, metadata: Optional[Dict[str, Any]], what: str,
                        who: str = _WHO) -> int:
    """K, the number of classes, of labels whose first non-integral value is ``bad`` (None: all whole)
    and whose range is ``low..high``: ``high + 1``, or the label's nominal attribute count (Spark ML
    column ``metadata``) when larger. Raises the one clear error of each kind of bad label."""
    if bad is not None:
        raise ValueError(f"{who}: {what} must hold integral class indices 0..K-1; got {bad!r}. "
                         f"Use StringIndexer to turn other labels into indices.")
    if low < 0:
        raise ValueError(f"{who}: {what} must hold class indices >= 0; got {int(low)!r}.")
    k = int(high) + 1
    attr = (metadata or {}).get("ml_attr", {})
    if attr.get("type") == "nominal":
        k = max(k, len(attr.get("vals") or []), int(attr.get("num_vals") or 0))
    if k < 2:
        raise ValueError(f"{who}: {what} holds only class 0; a classifier needs at least 2 classes.")
    return k


def _check_data(x: Any, y: Any, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{_WHO}: features must be a numeric array; got dtype {x.dtype}.")
    if x.ndim < 2:
        raise ValueError(f"{_WHO}: features must have shape (rows, ...) with at least 2 dimensions; got shape {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError(f"{_WHO}: there are no training rows (features have shape {x.shape}).")
    if y.ndim != 1:
        raise ValueError(f"{_WHO}: labels must be a 1-D array; got shape {y.shape}.")
    if len(y) != len(x):
        raise ValueError(f"{_WHO}: features have {len(x)} rows but labels have {len(y)}; they must match.")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{_WHO}: labels must be numeric class indices; got dtype {y.dtype}.")
    bad = first_non_integral(y)
    if bad is not None:
        raise ValueError(f"{_WHO}: labels must hold integral class indices (whole numbers) 0..{num_classes - 1}; "
                         f"got {bad!r}.")
    y = y.astype(np.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{_WHO}: labels must be in 0..{num_classes - 1} (numClasses={num_classes}); "
                         f"got values from {low} to {high}.")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise ValueError(f"{_WHO}: features contain NaN or infinite values; clean or impute them first.")
    return x, y


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, first_epoch: int = 0,
                  epochs: int = 1) -> Any:
    """The batches of epochs ``first_epoch .. first_epoch + epochs - 1``, each epoch in its own order.

    Epoch ``e`` takes the rows in the permutation drawn from ``(seed, e)`` (a stateless shuffle),
    so every epoch sees a different order, the same seed repeats the same sequence of orders, and
    a warm start that continues at epoch ``e`` sees what one longer fit would have seen there.
    (Keras ``fit`` on arrays with a global seed repeats the first epoch's order every epoch,
    tensorflow/tensorflow#26179.) One ``tf.data`` dataset over all the epochs: ``fit`` it with
    ``steps_per_epoch=ceil(len(x) / batch_size)``. tf.data's autotuning is off: with it on, dropping
    an iterator waited for the autotuner's thread, 0.1-0.9 s at every epoch's end on a busy 2-core
    machine (measured).
    """
    import tensorflow as tf

    n = len(x)
    xs, ys = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    base = tf.constant(int(seed), dtype=tf.int64)

    def epoch(e: Any) -> Any:
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([base, e]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    options = tf.data.Options()
    options.autotune.enabled = False
    batches = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch)
    return batches.map(lambda i: (tf.gather(xs, i), tf.gather(ys, i))).prefetch(2).with_options(options)


def _streamed_shape(rows: Any) -> Tuple[int, ...]:
    """Each staged row's feature shape as training sees it (checked by the Spark aggregate that staged
    the rows): images lose their alpha channel, as in a collect."""
    return image.shape_without_alpha(rows.feature_shape) if rows.kind == "binary" else tuple(rows.feature_shape)


def _streamed(rows: Any, prep: Callable[[np.ndarray], np.ndarray], loss_name: str, units: int, **kwargs: Any) -> Any:
    """:func:`sparkdl_lite.core.stream.dataset` over staged rows, features preprocessed, labels as the loss takes them."""
    import tensorflow as tf

    from sparkdl_lite.core import stream

    def targets(y: Any) -> Any:
        if loss_name == "binary_crossentropy":
            return tf.reshape(tf.cast(y, tf.float32), [-1, 1])
        if loss_name == "categorical_crossentropy":
            return tf.one_hot(tf.cast(y, tf.int32), units)
        return tf.cast(y, tf.int64)

    return stream.dataset(rows, transform=prep, **kwargs).map(lambda x, y: (x, targets(y)))


def _epoch_callback(history: List[Dict[str, Any]], state: Dict[str, bool],
                    on_epoch: Optional[Callable[[int, int], None]] = None, epochs: int = 0):
    import keras

    class _EpochRecorder(keras.callbacks.Callback):
        """Times each epoch and stops training as soon as the loss is NaN or infinite."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                state["diverged"] = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            loss = float(logs.get("loss", float("nan")))
            if not math.isfinite(loss):
                state["diverged"] = True
                self.model.stop_training = True
            history.append({"epoch": int(epoch) + 1, "loss": loss,
                            "accuracy": float(logs.get("accuracy", float("nan"))),
                            "seconds": time.perf_counter() - self._start})
            if on_epoch is not None:
                try:
                    on_epoch(len(history), epochs)
                except Exception:  # noqa: BLE001 - a progress report must never stop training
                    pass

    return _EpochRecorder()


def _check_hyper(learning_rate, batch_size, epochs, seed, threads, initial_epoch):
    if not _is_real(learning_rate):
        raise TypeError(f"{_WHO}: param 'learningRate' must be a float; got {learning_rate!r} ({type(learning_rate).__name__}).")
    if not (float(learning_rate) > 0 and math.isfinite(float(learning_rate))):
        raise ValueError(f"{_WHO}: param 'learningRate' must be > 0; got {learning_rate!r}.")
    _check_int("batchSize", batch_size, 1)
    _check_int("epochs", epochs, 1)
    _check_int("initialEpoch", initial_epoch, 0)
    _check_int("seed", seed, 0)
    if seed >= 2**32:
        raise ValueError(f"{_WHO}: param 'seed' must be < 2**32; got {seed!r}.")
    if threads is not None:
        _check_int("threads", threads, 1)


def _network(preset: Optional[Dict[str, Any]], model: Any, warm_start: Optional[bytes], layer_params: Any, seed: int,
             fresh: bool, loss: Optional[Dict[str, Any]], *, keep_state: bool) -> Tuple[Any, Dict[str, str], Any, Any]:
    """(network, weight plan, a warm start's optimizer to continue or None, loss) of one training."""
    from sparkdl_lite.core import keras_model

    if warm_start is not None:
        net = keras_model.from_archive(warm_start, compile=keep_state)
        carried = getattr(net, "optimizer", None) if keep_state else None
        return net, {path: "warm" for path, layer in keras_model.walk_live(net) if layer.weights}, carried, loss
    if preset is not None:
        return _build_preset(**preset), {}, None, loss
    given = keras_model.from_archive(model) if isinstance(model, (bytes, bytearray)) else model
    if loss is None and not isinstance(model, (bytes, bytearray)):
        loss = keras_model.read_loss(given)
    net, plan = keras_model.build_variant(given, layer_params, seed=seed, fresh=fresh)
    return net, plan, None, loss


def train(x: np.ndarray, y: np.ndarray, *, num_classes: int, architecture: str = "mlp",
          hidden_layers: Sequence[int] = (128,), conv_filters: Sequence[int] = (32, 64),
          dropout: float = 0.0, learning_rate: float = 1e-3, optimizer: str = "adam",
          learning_rate_schedule: str = "constant", batch_size: int = 128, epochs: int = 5, input_shape: Optional[Sequence[int]] = None,
          seed: int = 0, scale: Optional[float] = None, threads: Optional[int] = None,
          model: Any = None, layer_params: Optional[Dict[str, Any]] = None, fresh_weights: bool = False,
          loss: Optional[Dict[str, Any]] = None, reverse_channels: bool = False,
          warm_start: Optional[bytes] = None, initial_epoch: int = 0,
          on_epoch: Optional[Callable[[int, int], None]] = None, rows: Any = None,
          shuffle_rows: int = SHUFFLE_ROWS) -> TrainResult:
    """Train one classifier configuration and return its frozen inference graph.

    One code path for a built-in preset and for the user's own Keras model: build the network
    (the preset from ``architecture`` & co., or ``model`` with ``layer_params`` applied and its
    weights carried over, see :func:`sparkdl_lite.core.keras_model.build_variant`, or the model of a
    warm start), compile it with the optimizer from the params and the loss of the model
    (as compiled; else sparse categorical cross-entropy on its logits or probabilities), fit it on
    the preprocessed rows (Keras ``fit``; every epoch in its own order, drawn from ``seed`` and the
    epoch's number, see :func:`epoch_batches`) and freeze it behind the same preprocessing.
    Randomness is seeded with ``seed`` and TF ops are deterministic, so the same inputs, seed and
    thread count give bit-identical weights within one process, and the same weights as plain
    Keras ``fit`` on the same batches. The rows are arrays (``x``, ``y``) or staged Parquet files
    streamed batch by batch (``rows``), whose memory is bounded by ``shuffle_rows``.

    Parameters
    ----------
    x : numpy.ndarray
        Features, shape ``(N, D)`` (flat floats) or ``(N, H, W[, C])`` (e.g. uint8 images).
    y : numpy.ndarray
        Class indices ``0..num_classes - 1``, shape ``(N,)``; whole-number floats are accepted.
    num_classes : int
        Number of classes in the labels (>= 2). A model's output may have more units.
    architecture, hidden_layers, conv_filters, dropout, input_shape
        The preset, as in :func:`build_model` (ignored when ``model`` or ``warm_start`` is given).
    learning_rate : float
        Optimizer step size (> 0).
    optimizer : {"adam", "sgd", "rmsprop"}
        Keras optimizer, with its default settings apart from ``learning_rate``.
    learning_rate_schedule : {"constant", "cosine"}
        ``"cosine"`` decays the step size from ``learning_rate`` to 0 along a half cosine over the
        optimizer steps of this call (Keras' ``CosineDecay``); a warm start's call decays anew
        (a warm restart). ``"constant"`` keeps ``learning_rate`` throughout.
    batch_size : int
        Rows per gradient step (>= 1).
    epochs : int
        Epochs to run in this call (>= 1).
    seed : int
        Seed for fresh weights, dropout and shuffling.
    scale : float, optional
        Multiply the features by this before the model (in training and in the frozen graph).
    threads : int, optional
        TF intra-op threads for this process; only honoured before TF's runtime starts.
    model : keras.Model or bytes, optional
        The user's model, or its ``.keras`` archive bytes (loaded in safe mode).
    layer_params : dict, optional
        ``{"<layer path>.<config key>": value}`` applied to ``model``'s config first.
    fresh_weights : bool
        Start every trainable layer of ``model`` afresh from ``seed`` (frozen layers keep theirs).
    loss : dict, optional
        ``{"name", "from_logits"}``, the compiled loss read on the driver
        (:func:`sparkdl_lite.core.keras_model.read_loss`); None reads it from ``model`` or uses the default.
    reverse_channels : bool
        Reverse the last axis of image features (BGR pixels to an RGB model).
    warm_start : bytes, optional
        ``.keras`` archive of a model this function returned before (:attr:`TrainResult.model`):
        training continues from its weights (its config already holds its layer params). With
        the ``"constant"`` schedule the optimizer continues too: a fresh optimizer of the
        param's kind and step size takes the archive's optimizer state (step count, Adam's
        moments), so a run split into warm-started calls steps as one run would. With
        ``"cosine"`` the optimizer starts afresh (a warm restart of the schedule).
    initial_epoch : int
        Epochs already trained (a warm start): the history numbers epochs from ``initial_epoch + 1``.
    on_epoch : callable, optional
        Called after each epoch with ``(epochs done in this call, epochs of this call)``, e.g. to
        report progress; its exceptions are ignored.
    rows : sparkdl_lite.core.stream.StagedRows, optional
        Stream the training rows from staged Parquet files instead of ``x`` and ``y`` (both None),
        checked where they were staged: row groups in a seeded order per epoch through a shuffle
        buffer of ``shuffle_rows`` rows (:func:`sparkdl_lite.core.stream.dataset`).
    shuffle_rows : int
        Rows the shuffle buffer of ``rows`` holds (its memory, with one row group).

    Returns
    -------
    TrainResult
        The frozen graph (input ``features:0``, outputs ``logits:0`` and ``probability:0``),
        the per-epoch history, the trained model's ``.keras`` archive, the weight plan, the
        wall time and whether the loss diverged.

    Raises
    ------
    ValueError
        For out-of-range params (the message names the param, e.g. ``'learningRate'``),
        inconsistent data, a model whose input or output does not fit the data.
    TypeError
        For params or data of the wrong type.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype(int)
    >>> result = train(x, y, num_classes=2, hidden_layers=[8], epochs=2)
    >>> result.graph.input_names, result.graph.output_names
    (['features:0'], ['logits:0', 'probability:0'])
    >>> [h["epoch"] for h in result.history]
    [1, 2]
    >>> more = train(x, y, num_classes=2, epochs=1, warm_start=result.model, initial_epoch=2)
    >>> [h["epoch"] for h in more.history]
    [3]

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``model``, ``layer_params``, ``fresh_weights``, ``loss``, ``reverse_channels``,
       ``warm_start`` and ``initial_epoch``; presets share the user-model path.
    """
    start = time.perf_counter()
    optimizer = _check_choice("optimizer", optimizer, OPTIMIZERS)
    schedule = _check_choice("learningRateSchedule", learning_rate_schedule, SCHEDULES)
    num_classes = _check_int("numClasses", num_classes, 2)
    _check_hyper(learning_rate, batch_size, epochs, seed, threads, initial_epoch)
    scale = _check_scale(scale)
    if rows is None:
        x, y = _check_data(x, y, num_classes)
    feature_shape = tuple(x.shape[1:]) if rows is None else _streamed_shape(rows)
    preset = None
    if model is None and warm_start is None:
        preset = _preset_spec(architecture=architecture, num_classes=num_classes, feature_shape=feature_shape,
                              input_shape=input_shape, hidden_layers=hidden_layers, conv_filters=conv_filters,
                              dropout=dropout)

    t_import = time.perf_counter()
    import keras
    import tensorflow as tf

    from sparkdl_lite.core import keras_model

    t_build = time.perf_counter()
    if threads is not None:
        _set_threads(threads)
    keras.backend.clear_session()  # a Python worker may train many models: drop the old graphs' state
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    net, plan, carried, loss = _network(preset, model, warm_start, layer_params, seed, fresh_weights, loss,
                                        keep_state=schedule == "constant")  # a cosine schedule restarts each call
    units, activation = keras_model.output_head(net)
    info = keras_model.ModelInfo(input_shape=tuple(net.inputs[0].shape[1:]), units=units, activation=activation,
                                 loss=loss)
    model_shape = info.input_shape
    check_input_shape(feature_shape, model_shape)
    head, width, loss = resolve_head(info, num_classes)
    loss_fn, metric = _loss_and_metric(loss)
    prep = functools.partial(preprocess, model_shape=model_shape, scale=scale, reverse_channels=reverse_channels,
                             channels=rows.feature_shape[-1] if rows is not None and rows.kind == "binary" else None)
    keras.utils.set_random_seed(seed)  # fit draws dropout masks from here, as a plain Keras fit would
    if rows is None:
        per_epoch, batches = math.ceil(len(x) / batch_size), epoch_batches(
            prep(x), _targets(loss["name"], y, width), batch_size, seed=seed, first_epoch=initial_epoch, epochs=epochs)
    else:
        per_epoch, batches = rows.steps(batch_size), _streamed(rows, prep, loss["name"], width, seed=seed, epochs=epochs,
                                                               batch_size=batch_size, shuffle_rows=shuffle_rows,
                                                               first_epoch=initial_epoch)
    steps = epochs * per_epoch  # this fit's optimizer steps: a warm start decays anew
    opt = _make_optimizer(optimizer, float(learning_rate), schedule, steps)
    if carried is not None:
        _continue_optimizer(opt, carried, net)
    net.compile(optimizer=opt, loss=loss_fn, metrics=[metric])
    if not net.optimizer.built:  # its slots made now, the train step is traced once rather than twice (~0.1 s)
        net.optimizer.build(net.trainable_variables)
    history: List[Dict[str, Any]] = []
    state = {"diverged": False}
    t_fit = time.perf_counter()
    # one dataset over every epoch of this call: with steps_per_epoch Keras keeps its iterator across
    # epochs, so Keras epoch k reads the batches of epoch initial_epoch + k (shuffle only warns on a dataset)
    net.fit(batches, epochs=initial_epoch + epochs, initial_epoch=initial_epoch, steps_per_epoch=per_epoch, shuffle=False,
            verbose=0, callbacks=[_epoch_callback(history, state, on_epoch, epochs)])
    del batches
    t_freeze = time.perf_counter()
    graph = freeze(net, feature_shape=feature_shape, model_shape=model_shape, head=head, scale=scale,
                   reverse_channels=reverse_channels)
    archive = keras_model.to_archive(net)
    end = time.perf_counter()
    phases = {"import": t_build - t_import, "build": t_fit - t_build, "fit": t_freeze - t_fit, "freeze": end - t_freeze}
    return TrainResult(graph=graph, history=history, seconds=end - start, diverged=state["diverged"], phases=phases,
                       model=archive, weights=plan)


def predict_classes(graph: TFGraph, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """The class index of each row of ``x`` by a frozen classifier graph from :func:`train`.

    Runs the graph's ``probability:0`` output on the raw features (the layout the model was
    trained on) in batches and takes the first largest probability of each row, as
    ``TFClassificationModel``'s ``prediction`` column does. Used to score a validation set in
    the training task itself, without a separate scoring job.

    Returns
    -------
    numpy.ndarray
        ``int32`` class indices, shape ``(len(x),)``.

    .. versionadded:: 0.2.0
    """
    run = graph.load(["probability:0"], ["features:0"])
    out = np.empty(len(x), dtype=np.int32)
    for lo in range(0, len(x), batch_size):
        probability = run({"features:0": np.asarray(x[lo:lo + batch_size], dtype=np.float32)})["probability:0"]
        out[lo:lo + batch_size] = np.argmax(probability, axis=1)
    return out
