"""Tests for sparkdl_lite.core.training: the built-in architectures, training on real digits, determinism,
divergence and parameter validation. No Spark needed."""
import numpy as np
import pytest

from sparkdl_lite.core.datasets import load_digits_split
from sparkdl_lite.core.training import ARCHITECTURES, OPTIMIZERS, TrainResult, build_model, train


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's real 8x8 digits: float32 (N, 64) with values 0..16; 1,347 train / 450 test rows."""
    return load_digits_split(seed=0)


def _predict(result, x):
    return result.graph.load()({"features:0": np.asarray(x, dtype=np.float32)})


def _accuracy(result, x, y):
    return float(np.mean(_predict(result, x)["probability:0"].argmax(axis=1) == y))


def test_constants():
    assert ARCHITECTURES == ("mlp", "cnn")
    assert OPTIMIZERS == ("adam", "sgd", "rmsprop")


def test_default_mlp_learns_digits(digits):
    x_train, x_test, y_train, y_test = digits
    # Default params, raw 0..16 features; the default epochs=5 stops at ~0.91 on 1,347 rows.
    result = train(x_train, y_train, num_classes=10, epochs=30)
    assert isinstance(result, TrainResult) and not result.diverged
    assert _accuracy(result, x_test, y_test) >= 0.95
    assert [h["epoch"] for h in result.history] == list(range(1, 31))
    assert set(result.history[0]) == {"epoch", "loss", "accuracy", "seconds"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["accuracy"] > 0.95
    assert all(h["seconds"] > 0 for h in result.history)
    assert result.seconds >= sum(h["seconds"] for h in result.history)
    assert set(result.phases) == {"import", "build", "fit", "freeze"}
    assert all(v >= 0 for v in result.phases.values()) and result.phases["freeze"] > 0
    assert sum(h["seconds"] for h in result.history) <= result.phases["fit"] <= result.seconds


def test_cnn_with_input_shape_learns_digits(digits):
    x_train, x_test, y_train, y_test = digits
    result = train(x_train, y_train, num_classes=10, architecture="cnn", input_shape=[8, 8, 1])
    assert len(result.history) == 5
    assert _accuracy(result, x_test, y_test) > 0.8
    assert result.graph.tensor("features:0").shape == (None, 64)


_SMALL = dict(num_classes=10, hidden_layers=[32, 16], dropout=0.25, batch_size=64, epochs=2, seed=7)


@pytest.fixture(scope="module")
def small_result(digits):
    """A quick model on 512 rows, with whole-number float labels (what a Spark label column holds)."""
    x_train, _, y_train, _ = digits
    return train(x_train[:512], y_train[:512].astype(np.float64), **_SMALL)


def test_graph_names_and_probabilities(digits, small_result):
    graph = small_result.graph
    assert graph.input_names == ["features:0"]
    assert graph.output_names == ["logits:0", "probability:0"]
    assert graph.tensor("features:0").dtype == "float32"
    assert graph.tensor("features:0").shape == (None, 64)
    assert graph.tensor("probability:0").shape == (None, 10)
    out = _predict(small_result, digits[1][:32])
    logits, probability = out["logits:0"], out["probability:0"]
    assert logits.shape == probability.shape == (32, 10)
    np.testing.assert_allclose(probability.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probability, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_predictions(digits, small_result):
    x_train, x_test, y_train, _ = digits
    again = train(x_train[:512], y_train[:512], **_SMALL)
    p1, p2 = _predict(small_result, x_test)["probability:0"], _predict(again, x_test)["probability:0"]
    assert np.array_equal(p1, p2)
    assert [h["loss"] for h in small_result.history] == [h["loss"] for h in again.history]
    other = train(x_train[:512], y_train[:512], **{**_SMALL, "seed": 8})
    assert not np.array_equal(p1, _predict(other, x_test)["probability:0"])


def test_scale_is_in_the_graph_so_it_takes_raw_images(digits):
    x_train, x_test, y_train, _ = digits
    raw = (x_train[:512] * 15).astype(np.uint8).reshape(-1, 8, 8)  # 0..240 grey images, (H, W) without channel
    kwargs = dict(num_classes=10, architecture="cnn", conv_filters=[4], hidden_layers=[], epochs=1, seed=3)
    scaled = train(raw, y_train[:512], scale=1 / 240, **kwargs)
    assert scaled.graph.tensor("features:0").shape == (None, 8, 8)
    prescaled = train(raw.astype(np.float32) / 240, y_train[:512], **kwargs)
    test_raw = (x_test[:50] * 15).reshape(-1, 8, 8)
    np.testing.assert_allclose(_predict(scaled, test_raw)["probability:0"],
                               _predict(prescaled, test_raw / 240)["probability:0"], atol=1e-4)


def test_build_model_layers_and_pooling():
    mlp = build_model(architecture="mlp", num_classes=3, feature_shape=(6,), hidden_layers=(5, 4), dropout=0.5)
    assert mlp.output_names == ["logits"] and mlp.input_shape == (None, 6)
    assert [layer.name for layer in mlp.layers if "dropout" in layer.name] == ["dropout_0", "dropout_1"]
    assert mlp.get_layer("logits").units == 3
    # Pooling is skipped along an axis shorter than 2 instead of failing.
    cnn = build_model(architecture="cnn", num_classes=2, feature_shape=(8,), input_shape=(1, 8, 1), conv_filters=(2, 3))
    pools = [layer.pool_size for layer in cnn.layers if layer.name.startswith("pool")]
    assert pools == [(1, 2), (1, 2)]
    assert tuple(cnn.get_layer("flatten").output.shape) == (None, 2 * 3)
    assert cnn.get_layer("logits").output.shape[-1] == 2 and cnn.input_shape == (None, 1, 8, 1)
    assert not [layer.name for layer in cnn.layers if "dropout" in layer.name]  # dropout=0: none
    cnn_d = build_model(architecture="cnn", num_classes=2, feature_shape=(8, 8, 1), conv_filters=(2, 3),
                        hidden_layers=(4,), dropout=0.25)
    names = [layer.name for layer in cnn_d.layers]
    assert [n for n in names if "dropout" in n] == ["conv_dropout_0", "conv_dropout_1", "dropout_0"]
    assert names.index("conv_dropout_0") == names.index("pool_0") + 1  # after each conv block


def test_diverging_loss_stops_without_raising(digits):
    x_train, x_test, y_train, _ = digits
    result = train(x_train, y_train, num_classes=10, optimizer="sgd", learning_rate=1e10, epochs=5)
    assert result.diverged
    assert 1 <= len(result.history) < 5
    assert not np.isfinite(result.history[-1]["loss"])
    assert result.graph.output_names == ["logits:0", "probability:0"]


def test_rmsprop_with_threads_runs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    # threads is only honoured before TF starts; here it has, and the setting is skipped quietly.
    result = train(x, y, num_classes=2, hidden_layers=[4], optimizer="RMSprop", epochs=1, threads=1)
    assert len(result.history) == 1 and not result.diverged


def test_cosine_schedule_decays_the_step_size_to_zero_over_the_fit(digits):
    from sparkdl_lite.core.training import _make_optimizer

    opt = _make_optimizer("sgd", 0.1, "cosine", steps=10)
    seen = []
    for step in (0, 5, 10):
        opt.iterations.assign(step)
        seen.append(float(opt.learning_rate))
    assert seen == pytest.approx([0.1, 0.05, 0.0], abs=1e-6)
    opt = _make_optimizer("adam", 0.1, "constant", steps=10)
    opt.iterations.assign(10)
    assert float(opt.learning_rate) == pytest.approx(0.1)
    # In train(): same seed and data, the cosine run ends elsewhere and still learns.
    x_train, x_test, y_train, y_test = digits
    kw = dict(num_classes=10, hidden_layers=[32], epochs=6, batch_size=64, learning_rate=3e-3)
    const = train(x_train, y_train, **kw)
    cosine = train(x_train, y_train, learning_rate_schedule="cosine", **kw)
    assert const.history[0]["loss"] == pytest.approx(cosine.history[0]["loss"], rel=0.05)
    assert cosine.history[-1]["loss"] != const.history[-1]["loss"]
    assert _accuracy(cosine, x_test, y_test) >= 0.85


def test_a_warm_start_continues_the_optimizer_state(digits):
    """Adam over 2 + 2 warm-started epochs ends exactly where 4 epochs in one call end (its moments and step
    count carried); with the cosine schedule the warm start restarts the optimizer (its step count starts at 0)."""
    from sparkdl_lite.core import keras_model

    x_train, _, y_train, _ = digits
    x, y = x_train[:512], y_train[:512]
    kw = dict(num_classes=10, hidden_layers=[16], batch_size=64, learning_rate=3e-3)
    whole = train(x, y, epochs=4, **kw)
    first = train(x, y, epochs=2, **kw)
    rest = train(x, y, epochs=2, warm_start=first.model, initial_epoch=2, **kw)
    assert [h["epoch"] for h in rest.history] == [3, 4]
    assert int(keras_model.from_archive(rest.model, compile=True).optimizer.iterations.numpy()) == 4 * 8
    for a, b in zip(keras_model.from_archive(whole.model).get_weights(), keras_model.from_archive(rest.model).get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    kw["learning_rate_schedule"] = "cosine"
    first = train(x, y, epochs=2, **kw)
    rest = train(x, y, epochs=2, warm_start=first.model, initial_epoch=2, **kw)
    assert int(keras_model.from_archive(rest.model, compile=True).optimizer.iterations.numpy()) == 2 * 8


def test_epoch_batches_give_every_epoch_its_own_order_and_a_seed_repeats_them(digits):
    """The batches train() fits on: every row once per epoch in a shuffled order (the last batch partial),
    each epoch in a different order, the same seed and epochs the same orders (a warm start from epoch 2
    sees what one longer fit saw there), tf.data's autotuning off (its thread made every epoch's end wait)."""
    from sparkdl_lite.core.training import epoch_batches

    x_train, _, y_train, _ = digits
    x, y = x_train[:300].astype(np.float32), np.arange(300)  # y: the row number, to follow the rows
    batches = epoch_batches(x, y, 64, seed=5, epochs=3)
    assert batches.options().autotune.enabled is False
    got = [(bx.numpy(), by.numpy()) for bx, by in batches]
    assert [len(by) for _, by in got] == [64, 64, 64, 64, 44] * 3
    orders = []
    for e in range(3):
        epoch = got[5 * e: 5 * (e + 1)]
        rows = np.concatenate([by for _, by in epoch])
        assert sorted(rows.tolist()) == list(range(300))
        np.testing.assert_array_equal(np.concatenate([bx for bx, _ in epoch]), x[rows])
        assert not np.array_equal(rows, np.arange(300))
        orders.append(rows)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    again = np.concatenate([by.numpy() for _, by in epoch_batches(x, y, 64, seed=5, epochs=3)])
    np.testing.assert_array_equal(again, np.concatenate(orders))
    later = np.concatenate([by.numpy() for _, by in epoch_batches(x, y, 64, seed=5, first_epoch=2, epochs=1)])
    np.testing.assert_array_equal(later, orders[2])
    other = np.concatenate([by.numpy() for _, by in epoch_batches(x, y, 64, seed=6, epochs=1)])
    assert not np.array_equal(other, orders[0])


def test_a_fixed_seed_repeats_a_training_exactly_and_epochs_differ(digits):
    """Two trainings with the same seed end with the same weights; the loss history shows epochs learning on."""
    x_train, _, y_train, _ = digits
    kw = dict(num_classes=10, hidden_layers=[16], epochs=3, batch_size=64, seed=3, threads=1)
    a, b = train(x_train[:400], y_train[:400], **kw), train(x_train[:400], y_train[:400], **kw)
    from sparkdl_lite.core import keras_model

    for wa, wb in zip(keras_model.from_archive(a.model).get_weights(), keras_model.from_archive(b.model).get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = train(x_train[:400], y_train[:400], **{**kw, "seed": 4})
    assert [h["loss"] for h in c.history] != [h["loss"] for h in a.history]


_X = np.zeros((8, 64), np.float32)
_Y = np.arange(8) % 2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(architecture="rnn"), ValueError, r"param 'architecture' must be one of \['mlp', 'cnn'\]; got 'rnn'"),
    (dict(optimizer="adagrad"), ValueError, r"param 'optimizer' must be one of \['adam', 'sgd', 'rmsprop'\]"),
    (dict(learning_rate_schedule="step"), ValueError,
     r"param 'learningRateSchedule' must be one of \['constant', 'cosine'\]; got 'step'"),
    (dict(learning_rate=0.0), ValueError, r"^training: param 'learningRate' must be > 0; got 0\.0\.$"),
    (dict(learning_rate=-1e-3), ValueError, "param 'learningRate' must be > 0"),
    (dict(learning_rate="fast"), TypeError, "param 'learningRate' must be a float"),
    (dict(batch_size=0), ValueError, "param 'batchSize' must be >= 1; got 0"),
    (dict(batch_size=2.5), TypeError, "param 'batchSize' must be an int"),
    (dict(batch_size=True), TypeError, "param 'batchSize' must be an int"),
    (dict(epochs=0), ValueError, "param 'epochs' must be >= 1; got 0"),
    (dict(dropout=1.0), ValueError, r"param 'dropout' must be in \[0, 1\); got 1\.0"),
    (dict(dropout=-0.1), ValueError, "param 'dropout'"),
    (dict(hidden_layers=[]), ValueError, "param 'hiddenLayers' must not be empty"),
    (dict(hidden_layers=[16, 0]), ValueError, "param 'hiddenLayers' must hold ints >= 1"),
    (dict(hidden_layers=16), TypeError, "param 'hiddenLayers' must be a list of ints"),
    (dict(architecture="cnn", input_shape=[8, 8, 1], conv_filters=[0]), ValueError, "param 'convFilters'"),
    (dict(input_shape=[8, 8, 2]), ValueError, r"param 'inputShape' \[8, 8, 2\] holds 128 values.*shape \[64\] \(64 values\)"),
    (dict(architecture="cnn"), ValueError, "flat vectors of 64 values; set inputShape"),
    (dict(architecture="cnn", input_shape=[2, 2, 4, 4]), ValueError, "3-D"),
    (dict(num_classes=1), ValueError, "param 'numClasses' must be >= 2"),
    (dict(scale=0.0), ValueError, "param 'scale'"),
    (dict(seed=-1), ValueError, "param 'seed'"),
    (dict(threads=0), ValueError, "param 'threads'"),
])
def test_invalid_params_are_named(kwargs, error, match):
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(error, match=match):
        train(_X, _Y, **kwargs)


@pytest.mark.parametrize("x, y, error, match", [
    (_X, np.array([0, 1, 2, 0, 1, 0, 1, 0]), ValueError, r"labels must be in 0\.\.1 \(numClasses=2\); got values from 0 to 2"),
    (_X, -_Y, ValueError, r"labels must be in 0\.\.1"),
    (_X, _Y[:5], ValueError, "features have 8 rows but labels have 5"),
    (_X[:0], _Y[:0], ValueError, "no training rows"),
    (_X[0], _Y, ValueError, "at least 2 dimensions"),
    (_X, np.full(8, 0.5), ValueError, "whole numbers"),
    (_X, np.array(["a"] * 8), TypeError, "labels must be numeric"),
    (np.full((8, 64), np.nan, np.float32), _Y, ValueError, "NaN or infinite"),
])
def test_invalid_data_is_explained(x, y, error, match):
    with pytest.raises(error, match=match):
        train(x, y, num_classes=2)
