"""TFGraph: freezing Keras models, functions and SavedModels; names, shapes and bad bytes."""
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_cnn

from sparkdl_lite import TFGraph


def test_from_keras_sequential_is_frozen_and_matches_predict(rng):
    model = small_cnn((28, 28, 1))
    g = TFGraph.from_keras(model)
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(g.to_bytes())
    ops = {n.op for n in gd.node}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "VariableV2", "Variable"}
    assert g.inputs[0].shape == (None, 28, 28, 1) and g.inputs[0].dtype == "float32"
    assert g.outputs[0].shape == (None, 10)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    got = g.load()({g.input_names[0]: x})[g.output_names[0]]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-6)


def test_from_keras_is_inference_mode(rng):
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dropout(0.9)(inp)
    h = keras.layers.BatchNormalization()(h)
    out = keras.layers.Dense(3, name="y")(h)
    model = keras.Model(inp, out)
    x = rng.random((8, 6), dtype=np.float32)
    run = TFGraph.from_keras(model).load()
    a, b = run({"x:0": x})["y:0"], run({"x:0": x})["y:0"]
    np.testing.assert_array_equal(a, b)  # no dropout noise
    np.testing.assert_allclose(a, model(x, training=False).numpy(), atol=1e-6)


def test_functional_two_inputs_two_outputs_keep_layer_names(rng):
    import keras

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    logits = keras.layers.Dense(2, name="logits")(keras.layers.Concatenate()([a, b]))
    probs = keras.layers.Softmax(name="probs")(logits)
    g = TFGraph.from_keras(keras.Model([a, b], [logits, probs]))
    assert g.input_names == ["a:0", "b:0"]
    assert g.output_names == ["logits:0", "probs:0"]
    out = g.load()({"a:0": rng.random((5, 4), dtype=np.float32), "b:0": rng.random((5, 3), dtype=np.float32)})
    np.testing.assert_allclose(out["probs:0"].sum(axis=1), 1.0, atol=1e-6)


def test_from_function_and_bytes_round_trip():
    g = TFGraph.from_function(lambda x: {"y": 2.0 * x + 1.0}, [tf.TensorSpec([None, 3], tf.float32, name="x")])
    assert (g.input_names, g.output_names) == (["x:0"], ["y:0"])
    g2 = TFGraph.from_bytes(g.to_bytes(), g.input_names, g.output_names)
    assert g2 == g and g2.digest == g.digest
    np.testing.assert_array_equal(g2.load()({"x:0": np.ones((2, 3), np.float32)})["y:0"], np.full((2, 3), 3.0))


def test_from_bytes_infers_placeholders_and_outputs(doubling_graph):
    g = TFGraph.from_bytes(doubling_graph)
    assert g.input_names == ["image:0"]
    assert len(g.output_names) == 1
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(g.load()({"image:0": x})[g.output_names[0]], 2 * x)


def test_from_saved_model(tmp_path, rng):
    model = small_cnn((8, 8, 1), classes=3)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    g = TFGraph.from_saved_model(str(tmp_path / "sm"))
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    out = g.load()({g.input_names[0]: x})[g.output_names[0]]
    np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="signature 'nope' is not in"):
        TFGraph.from_saved_model(str(tmp_path / "sm"), signature="nope")


@pytest.mark.parametrize("data", [b"definitely not a graph", b"\x08\x01", b"\xff" * 64])
def test_garbage_bytes_are_refused(data):
    with pytest.raises(ValueError, match="GraphDef|not a frozen TensorFlow graph"):
        TFGraph.from_bytes(data)


def test_truncated_graph_is_refused():
    g = TFGraph.from_keras(small_cnn((8, 8, 1), classes=3))
    with pytest.raises(ValueError):
        TFGraph.from_bytes(g.to_bytes()[: len(g.to_bytes()) // 2])


def test_unknown_tensor_lists_available_names(doubling_graph):
    g = TFGraph.from_bytes(doubling_graph)
    with pytest.raises(ValueError, match=r"input tensor 'nope' is not an input of the graph. Available inputs: \['image:0'\]"):
        g.check_input("nope")
    with pytest.raises(ValueError, match="output tensor 'nope:0' is not in the graph"):
        g.check_output("nope:0")
    with pytest.raises(ValueError, match="is not in the graph"):
        TFGraph.from_bytes(doubling_graph, input_names=["missing"])
    with pytest.raises(TypeError, match="expected bytes"):
        TFGraph.from_bytes("a string")
