"""The user's own Keras model in the core (no Spark): checks, layerParams, weight carry-over, warm starts."""
import keras
import numpy as np
import pytest

from sparkdl_lite import expand_layer_params
from sparkdl_lite.core.keras_model import build_variant, check_model, from_archive, layer_paths, to_archive, weights_equal
from sparkdl_lite.core.training import train


def two_branch(seed=0, hidden=8, frozen_base=False):
    """Functional: a nested Sequential base (frozen or not) feeding two named branches, concatenated, dropout, softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,), name="pixels")
    base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu", name="block_1"),
                             keras.layers.Dense(16, activation="relu", name="block_2")], name="base")
    base.trainable = not frozen_base
    h = base(inputs)
    a = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    b = keras.layers.Dense(8, activation="tanh", name="side")(h)
    c = keras.layers.Concatenate(name="join")([a, b])
    d = keras.layers.Dropout(0.2, name="drop")(c)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(d), name="two_branch")


def test_check_model_reads_shape_head_and_loss():
    info = check_model(two_branch())
    assert info.input_shape == (64,) and info.units == 10 and info.activation == "softmax" and info.head == "probability"
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    m.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    info = check_model(m)
    assert info.loss == {"name": "binary_crossentropy", "from_logits": True} and info.head == "logits"


class _Unregistered(keras.layers.Layer):
    def call(self, x):
        return x


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def _refusals():
    lam = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2, name="double"), keras.layers.Dense(2)])
    custom = keras.Sequential([keras.Input((3,)), _Unregistered(name="mine"), keras.layers.Dense(2)])
    i1, i2 = keras.Input((3,)), keras.Input((3,))
    two_in = keras.Model([i1, i2], keras.layers.Dense(2)(keras.layers.Concatenate()([i1, i2])))
    i = keras.Input((3,))
    two_out = keras.Model(i, [keras.layers.Dense(2)(i), keras.layers.Dense(2)(i)])
    unknown = keras.Sequential([keras.Input((None, 3)), keras.layers.Dense(2)])
    mse = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    mse.compile(loss="mse")
    return [(lam, ValueError, "layer 'double' is a Lambda layer"),
            (custom, TypeError, "layer 'mine' is an instance of the custom class .*_Unregistered, which is not registered"),
            (_Subclassed(), TypeError, "subclassed Keras model .*_Subclassed"),
            (two_in, ValueError, "has 2 inputs and 1 outputs"),
            (two_out, ValueError, "has 1 inputs and 2 outputs"),
            (unknown, ValueError, r"input shape \[None, 3\] with unknown dimensions"),
            (mse, ValueError, "compiled with loss 'mse'"),
            ("model.keras", TypeError, "must be a Keras 3 keras.Model")]


@pytest.mark.parametrize("case", range(8))
def test_refused_models_are_named(case):
    model, error, match = _refusals()[case]
    with pytest.raises(error, match=match):
        check_model(model)


def test_registered_custom_layer_is_accepted_and_round_trips():
    @keras.saving.register_keras_serializable(package="sparkdl_lite_tests")
    class Scale2(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    m = keras.Sequential([keras.Input((3,)), Scale2(name="twice"), keras.layers.Dense(2, name="out")])
    check_model(m)
    again = from_archive(to_archive(m))
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))


def test_layer_params_paths_and_errors():
    m = two_branch()
    assert layer_paths(keras.saving.serialize_keras_object(m)) == [
        "base", "base/block_1", "base/block_2", "hidden", "side", "join", "drop", "out"]
    with pytest.raises(ValueError, match=r"no layer 'nope'\. Layers: \['base', 'base/block_1'"):
        build_variant(m, {"nope.units": 3})
    with pytest.raises(ValueError, match=r"layer 'hidden' \(Dense\) has no config key 'unitz'\. Its keys: \[.*'units'"):
        build_variant(m, {"hidden.unitz": 3})
    with pytest.raises(ValueError, match="keys must look like '<layer>.<config key>'"):
        build_variant(m, {"hidden": 3})
    with pytest.raises(ValueError, match="cannot be built with layerParams"):
        build_variant(m, {"hidden.units": "many"})


def test_weights_carry_over_where_unchanged():
    m = two_branch()
    same, plan = build_variant(m, {}, seed=3)
    assert set(plan.values()) == {"given"} and weights_equal(same, m)
    wide, plan = build_variant(m, {"hidden.units": 12}, seed=3)
    assert plan == {"base/block_1": "given", "base/block_2": "given", "hidden": "fresh", "side": "given", "out": "fresh"}
    assert wide.get_layer("hidden").units == 12
    np.testing.assert_array_equal(wide.get_layer("side").get_weights()[0], m.get_layer("side").get_weights()[0])
    # a dropout rate has no weights but changes what the layers below it see: they start afresh
    _, plan = build_variant(m, {"drop.rate": 0.5}, seed=3)
    assert plan["out"] == "fresh" and plan["hidden"] == "given"
    # a layer inside the nested model, by path: everything downstream of it starts afresh
    _, plan = build_variant(m, {"base/block_1.units": 20}, seed=3)
    assert plan == {"base/block_1": "fresh", "base/block_2": "fresh", "hidden": "fresh", "side": "fresh", "out": "fresh"}
    _, plan = build_variant(m, {}, seed=3, fresh=True)
    assert set(plan.values()) == {"fresh"}
    # fresh layers come from the seed: the same seed gives the same weights
    a, _ = build_variant(m, {"hidden.units": 12}, seed=5)
    b, _ = build_variant(m, {"hidden.units": 12}, seed=5)
    assert weights_equal(a, b)


def test_frozen_layers_keep_weights_and_refuse_new_shapes():
    m = two_branch(frozen_base=True)
    _, plan = build_variant(m, {}, fresh=True)
    assert plan["base/block_1"] == "given" and plan["hidden"] == "fresh"
    with pytest.raises(ValueError, match=r"layer 'base/block_1' is frozen .* change its weight shapes from \[\[64, 16\], \[16\]\] to \[\[64, 20\], \[20\]\]"):
        build_variant(m, {"base/block_1.units": 20})


def test_expand_layer_params():
    grid = expand_layer_params({"hidden.units": [64, 256], "drop.rate": [0.2, 0.5]})
    assert grid == [{"hidden.units": 64, "drop.rate": 0.2}, {"hidden.units": 64, "drop.rate": 0.5},
                    {"hidden.units": 256, "drop.rate": 0.2}, {"hidden.units": 256, "drop.rate": 0.5}]
    with pytest.raises(ValueError, match="'drop.rate' must map to a non-empty list"):
        expand_layer_params({"drop.rate": 0.2})


def test_train_own_model_warm_start_and_frozen_base():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data[:400].astype("float32"), d.target[:400]
    given = two_branch(frozen_base=True)
    first = train(x, y, num_classes=10, model=given, layer_params={"hidden.units": 16}, epochs=2, batch_size=32)
    assert [h["epoch"] for h in first.history] == [1, 2] and first.weights["hidden"] == "fresh"
    trained = from_archive(first.model)
    assert trained.get_layer("hidden").units == 16
    for name in ("block_1", "block_2"):  # frozen: exactly as given
        for w_new, w_old in zip(trained.get_layer("base").get_layer(name).get_weights(),
                                given.get_layer("base").get_layer(name).get_weights()):
            np.testing.assert_array_equal(w_new, w_old)
    more = train(x, y, num_classes=10, warm_start=first.model, initial_epoch=2, epochs=1, batch_size=32)
    assert [h["epoch"] for h in more.history] == [3] and set(more.weights.values()) == {"warm"}
    assert more.history[0]["loss"] < first.history[0]["loss"]  # continued, not restarted
    # the frozen graph gives the Keras model's probabilities on the same rows
    run = more.graph.load()
    out = run({"features:0": x[:20]})
    np.testing.assert_allclose(out["probability:0"], from_archive(more.model).predict(x[:20], verbose=0), atol=1e-5)
