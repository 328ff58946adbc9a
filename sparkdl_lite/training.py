"""Train one classifier configuration on numpy arrays and freeze it into a :class:`TFGraph`.

This is what :class:`~sparkdl_lite.TFClassifier` runs inside each Spark task: it builds the
built-in ``mlp`` or ``cnn`` architecture, fits it with Keras and returns the frozen inference
graph (input ``features:0``; outputs ``logits:0`` and ``probability:0``) with its per-epoch
history. Core module: TensorFlow, Keras and numpy only, no pyspark.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sparkdl_lite.graph import TFGraph

__all__ = ["ARCHITECTURES", "OPTIMIZERS", "TrainResult", "build_model", "train"]

ARCHITECTURES = ("mlp", "cnn")
OPTIMIZERS = ("adam", "sgd", "rmsprop")

_WHO = "training"


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
        first trace of the training step) and ``freeze`` (exporting the inference graph).

    .. versionadded:: 0.1.0
    """

    graph: TFGraph
    history: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    diverged: bool = False
    phases: Dict[str, float] = field(default_factory=dict)


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


def _check_scale(scale: Any) -> Optional[float]:
    if scale is None:
        return None
    if not _is_real(scale):
        raise TypeError(f"{_WHO}: param 'scale' must be a float or None; got {scale!r} ({type(scale).__name__}).")
    if not math.isfinite(float(scale)) or float(scale) == 0.0:
        raise ValueError(f"{_WHO}: param 'scale' must be a finite non-zero float (e.g. 1/255 for raw images); got {scale!r}.")
    return float(scale)


def _target_shape(architecture: str, feature_shape: Tuple[int, ...],
                  input_shape: Optional[Tuple[int, ...]]) -> Optional[Tuple[int, ...]]:
    """The shape the model reshapes its features to, or None when no Reshape is needed."""
    target = input_shape
    if target is not None:
        if math.prod(target) != math.prod(feature_shape):
            raise ValueError(f"{_WHO}: param 'inputShape' {list(target)} holds {math.prod(target)} values but each "
                             f"feature row has shape {list(feature_shape)} ({math.prod(feature_shape)} values); "
                             "their element counts must be equal.")
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


# ----------------------------------------------------------------------------- model
def build_model(*, architecture: str, num_classes: int, feature_shape: Sequence[int],
                input_shape: Optional[Sequence[int]] = None, hidden_layers: Sequence[int] = (128,),
                conv_filters: Sequence[int] = (32, 64), dropout: float = 0.0,
                scale: Optional[float] = None):
    """Build the two-output Keras model of a built-in architecture (not compiled).

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
        Reshape each row to this shape first (same element count as ``feature_shape``), e.g.
        ``[8, 8, 1]`` to feed flat 64-value vectors to a ``cnn``.
    hidden_layers : sequence of int
        Units of the hidden dense layers; may be empty for ``cnn`` only.
    conv_filters : sequence of int
        Filters of the conv blocks (``cnn`` only).
    dropout : float
        Dropout rate in [0, 1) after each hidden dense layer (and each conv block of a ``cnn``);
        0 adds no Dropout layer.
    scale : float, optional
        When given, the first layer is ``Rescaling(scale)``, so the model takes raw values
        (``1/255`` for 0..255 images).

    Returns
    -------
    keras.Model
        A functional model with input ``features`` (float32) and two outputs, from the layers
        ``logits`` and ``probability`` (softmax of the logits), in that order.

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
    >>> m.output_names
    ['logits', 'probability']

    .. versionadded:: 0.1.0
    """
    spec = _model_spec(architecture=architecture, num_classes=num_classes, feature_shape=feature_shape,
                       input_shape=input_shape, hidden_layers=hidden_layers, conv_filters=conv_filters,
                       dropout=dropout, scale=scale)
    return _build(**spec)


def _model_spec(*, architecture, num_classes, feature_shape, input_shape, hidden_layers, conv_filters,
                dropout, scale) -> Dict[str, Any]:
    """Checked and normalised :func:`build_model` arguments (``target``: the Reshape shape or None)."""
    architecture = _check_choice("architecture", architecture, ARCHITECTURES)
    feature_shape = _check_int_list("featureShape", feature_shape, allow_empty=False)
    if input_shape is not None:
        input_shape = _check_int_list("inputShape", input_shape, allow_empty=False)
    return dict(architecture=architecture,
                num_classes=_check_int("numClasses", num_classes, 2),
                feature_shape=feature_shape,
                target=_target_shape(architecture, feature_shape, input_shape),
                hidden_layers=_check_int_list("hiddenLayers", hidden_layers, allow_empty=architecture == "cnn"),
                conv_filters=_check_int_list("convFilters", conv_filters, allow_empty=True),
                dropout=_check_dropout(dropout),
                scale=_check_scale(scale))


def _build(*, architecture, num_classes, feature_shape, target, hidden_layers, conv_filters, dropout, scale):
    import keras
    from keras import layers

    inputs = keras.Input(shape=feature_shape, name="features", dtype="float32")
    h = inputs
    if scale is not None:
        h = layers.Rescaling(scale, name="rescaling")(h)
    if target is not None:
        h = layers.Reshape(target, name="reshape")(h)
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
    probability = layers.Softmax(name="probability")(logits)
    return keras.Model(inputs, [logits, probability], name=f"sparkdl_lite_{architecture}")


# ----------------------------------------------------------------------------- training
def _set_threads(n: int) -> None:
    """Give TF ``n`` intra-op threads; a no-op once TF's runtime has started (it then refuses)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1 if n == 1 else 2)
    except RuntimeError:
        pass  # TF is initialized in this process; its thread pools are fixed now


def _make_optimizer(name: str, learning_rate: float):
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


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
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
            raise ValueError(f"{_WHO}: labels must be whole numbers 0..{num_classes - 1}; got {bad!r}.")
    y = y.astype(np.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{_WHO}: labels must be in 0..{num_classes - 1} (numClasses={num_classes}); "
                         f"got values from {low} to {high}.")
    x = x.astype(np.float32, copy=False)  # the scale, if any, is a layer of the model
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{_WHO}: features contain NaN or infinite values; clean or impute them first.")
    return x, y


def _epoch_callback(history: List[Dict[str, Any]], state: Dict[str, bool]):
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

    return _EpochRecorder()


def train(x: np.ndarray, y: np.ndarray, *, num_classes: int, architecture: str = "mlp",
          hidden_layers: Sequence[int] = (128,), conv_filters: Sequence[int] = (32, 64),
          dropout: float = 0.0, learning_rate: float = 1e-3, optimizer: str = "adam",
          batch_size: int = 128, epochs: int = 5, input_shape: Optional[Sequence[int]] = None,
          seed: int = 0, scale: Optional[float] = None, threads: Optional[int] = None,
          fail_on: Optional[str] = None) -> TrainResult:
    """Train one classifier configuration and return its frozen inference graph.

    The loss is sparse categorical cross-entropy on the logits; Keras' ``fit`` shuffles every
    epoch. Randomness is seeded with ``seed`` and TF ops are made deterministic, so the same
    inputs, seed and thread count give bit-identical weights within one process.

    Parameters
    ----------
    x : numpy.ndarray
        Features, shape ``(N, D)`` (flat floats) or ``(N, H, W[, C])`` (e.g. uint8 images).
        Cast to float32; the frozen graph takes the same raw values.
    y : numpy.ndarray
        Class indices ``0..num_classes - 1``, shape ``(N,)``; whole-number floats are accepted.
    num_classes : int
        Number of classes (>= 2).
    architecture, hidden_layers, conv_filters, dropout, input_shape, scale
        As in :func:`build_model`.
    learning_rate : float
        Optimizer step size (> 0).
    optimizer : {"adam", "sgd", "rmsprop"}
        Keras optimizer, with its default settings apart from ``learning_rate``.
    batch_size : int
        Rows per gradient step (>= 1).
    epochs : int
        Passes over the data (>= 1).
    seed : int
        Seed for weight initialisation, dropout and shuffling.
    threads : int, optional
        TF intra-op threads for this process; only honoured before TF's runtime starts.
    fail_on : str, optional
        Test hook: when a non-empty string, raise ``RuntimeError(fail_on)`` before training.

    Returns
    -------
    TrainResult
        The frozen graph (input ``features:0``, outputs ``logits:0`` and ``probability:0``),
        the per-epoch history, the wall time and whether the loss diverged.

    Raises
    ------
    ValueError
        For out-of-range params (the message names the param, e.g. ``'learningRate'``) or
        inconsistent data (empty, length mismatch, labels outside ``0..num_classes - 1``).
    TypeError
        For params or data of the wrong type.
    RuntimeError
        When ``fail_on`` is set.

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

    .. versionadded:: 0.1.0
    """
    start = time.perf_counter()
    architecture = _check_choice("architecture", architecture, ARCHITECTURES)
    optimizer = _check_choice("optimizer", optimizer, OPTIMIZERS)
    num_classes = _check_int("numClasses", num_classes, 2)
    if not _is_real(learning_rate):
        raise TypeError(f"{_WHO}: param 'learningRate' must be a float; got {learning_rate!r} ({type(learning_rate).__name__}).")
    if not (float(learning_rate) > 0 and math.isfinite(float(learning_rate))):
        raise ValueError(f"{_WHO}: param 'learningRate' must be > 0; got {learning_rate!r}.")
    batch_size = _check_int("batchSize", batch_size, 1)
    epochs = _check_int("epochs", epochs, 1)
    seed = _check_int("seed", seed, 0)
    if seed >= 2**32:
        raise ValueError(f"{_WHO}: param 'seed' must be < 2**32; got {seed!r}.")
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    x, y = _check_data(x, y, num_classes)
    spec = _model_spec(architecture=architecture, num_classes=num_classes, feature_shape=x.shape[1:],
                       input_shape=input_shape, hidden_layers=hidden_layers, conv_filters=conv_filters,
                       dropout=dropout, scale=scale)
    if fail_on:
        raise RuntimeError(str(fail_on))

    t_import = time.perf_counter()
    import keras
    import tensorflow as tf

    t_build = time.perf_counter()
    if threads is not None:
        _set_threads(threads)
    keras.backend.clear_session()  # a Python worker may train many models: drop the old graphs' state
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    model = _build(**spec)
    logits = model.get_layer("logits").output
    trainer = keras.Model(model.inputs, logits, name="trainer")  # shares the layers, so the weights
    trainer.compile(optimizer=_make_optimizer(optimizer, float(learning_rate)),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    history: List[Dict[str, Any]] = []
    state = {"diverged": False}
    t_fit = time.perf_counter()
    trainer.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True,
                callbacks=[_epoch_callback(history, state)])
    t_freeze = time.perf_counter()
    graph = TFGraph.from_keras(model)
    end = time.perf_counter()
    phases = {"import": t_build - t_import, "build": t_fit - t_build, "fit": t_freeze - t_fit, "freeze": end - t_freeze}
    return TrainResult(graph=graph, history=history, seconds=end - start, diverged=state["diverged"], phases=phases)
