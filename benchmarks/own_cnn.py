"""Write the user-written Fashion-MNIST CNN (batch norm, dropout, a random flip, named layers) as a .keras file.

Two blocks of two 3x3 convolutions (32, 32 | filters, filters), each with batch norm and ReLU, then a dense
hidden layer: a small VGG-style network.

    .venv/bin/python benchmarks/own_cnn.py out/own_cnn.keras

It stands for "a model of the user's own": the CLI tunes it with
``sparkdl-lite tune --model out/own_cnn.keras --grid "learningRate=... hidden.units=... conv2.filters=..."``
(see docs/user-guide.md, "Tune your own model"). It takes 0-255 pixels and scales them itself.
"""
import sys


def build(hidden: int = 128, filters: int = 64, seed: int = 0):
    import keras
    from keras import layers

    def conv_bn(h, n, name):
        h = layers.Conv2D(n, 3, padding="same", use_bias=False, name=name)(h)
        h = layers.BatchNormalization(name=f"{name}_bn")(h)
        return layers.Activation("relu", name=f"{name}_relu")(h)

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="pixels")
    h = layers.RandomFlip("horizontal", seed=seed, name="flip")(inputs)  # augmentation: active in fit only
    h = layers.Rescaling(1 / 255.0, name="rescale")(h)
    h = conv_bn(h, 32, "conv1")
    h = conv_bn(h, 32, "conv1b")
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Dropout(0.2, name="drop1")(h)
    h = conv_bn(h, filters, "conv2")
    h = conv_bn(h, filters, "conv2b")
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Dropout(0.25, name="drop2")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    h = layers.Dropout(0.4, name="drop")(h)
    outputs = layers.Dense(10, name="out")(h)  # logits
    return keras.Model(inputs, outputs, name="fashion_cnn")


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "out/own_cnn.keras"
    import os

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    build().save(path)
    print(path)
