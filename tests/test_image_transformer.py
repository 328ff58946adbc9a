"""TFImageTransformer against Keras' own predict on real images (Fashion-MNIST, sample photos, files)."""
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import small_cnn
from PIL import Image
from pyspark.sql import functions as F

from sparkdl_lite import TFGraph, TFImageTransformer, images_from_numpy, read_images


def _outputs(df, col="out"):
    return np.stack([np.asarray(r[col].toArray() if hasattr(r[col], "toArray") else r[col]) for r in df.select(col).collect()])


def _decoded(df):
    """The images exactly as the DataFrame holds them, as RGB numpy (from Spark's BGR bytes)."""
    rows = df.select("image.height", "image.width", "image.nChannels", "image.data").collect()
    arrs = [np.frombuffer(r.data, np.uint8).reshape(r.height, r.width, r.nChannels) for r in rows]
    return [a[..., ::-1] if a.shape[-1] == 3 else a for a in arrs]


@pytest.fixture(scope="module")
def gray_model():
    return small_cnn((28, 28, 1), seed=0)


@pytest.fixture(scope="module")
def rgb_model():
    return small_cnn((32, 32, 3), seed=1)


def test_gray_cnn_on_fashion_mnist_equals_keras_predict(spark, fashion_images, gray_model):
    x, y = fashion_images
    df = images_from_numpy(spark, x[:240], labels=y[:240], num_partitions=3)
    t = TFImageTransformer(graph=TFGraph.from_keras(gray_model), inputCol="image", outputCol="out",
                           channelOrder="L", scale=1 / 255, batchSize=50)
    out = t.transform(df)
    assert out.count() == 240
    got = _outputs(out.orderBy(F.col("image.origin").substr(F.lit(10), F.lit(5)).cast("int")))
    want = gray_model.predict(x[:240, ..., None].astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_rgb_cnn_on_photo_patches_equals_keras_predict(spark, photo_patches, rgb_model, order):
    df = images_from_numpy(spark, photo_patches, channel_order="RGB")
    t = TFImageTransformer(graph=TFGraph.from_keras(rgb_model), inputCol="image", outputCol="out",
                           channelOrder=order, outputMode="array", batchSize=64)
    got = _outputs(t.transform(df))
    fed = photo_patches if order == "RGB" else photo_patches[..., ::-1]
    want = rgb_model.predict(fed.astype(np.float32), verbose=0)
    assert got.shape == (len(photo_patches), 10)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The orders really differ on real photos, so the test can tell them apart.
    assert np.abs(rgb_model.predict(photo_patches[..., ::-1].astype(np.float32), verbose=0) - rgb_model.predict(photo_patches.astype(np.float32), verbose=0)).max() > 1e-4


def test_png_and_jpeg_files_read_by_the_image_source(spark, tmp_path, fashion_images, photo_patches, gray_model, rgb_model):
    x, _ = fashion_images
    gray_dir, rgb_dir = tmp_path / "gray", tmp_path / "rgb"
    gray_dir.mkdir()
    rgb_dir.mkdir()
    for i in range(200):
        Image.fromarray(x[i]).save(gray_dir / f"{i:03d}.png")
        Image.fromarray(photo_patches[i]).save(rgb_dir / f"{i:03d}.{'png' if i % 2 else 'jpg'}", quality=90)
    for folder, model, order, scale in ((gray_dir, gray_model, "L", 1 / 255), (rgb_dir, rgb_model, "RGB", 1.0)):
        df = read_images(spark, str(folder)).orderBy("image.origin")
        t = TFImageTransformer(graph=TFGraph.from_keras(model), inputCol="image", outputCol="out",
                               channelOrder=order, scale=scale)
        got = _outputs(t.transform(df))
        imgs = np.stack(_decoded(df)).astype(np.float32) * scale
        np.testing.assert_allclose(got, model.predict(imgs, verbose=0), atol=1e-5)
        assert len(got) == 200
    # PNG pixels come back exactly; JPEG ones close to what Pillow decodes.
    decoded = _decoded(read_images(spark, str(rgb_dir)).orderBy("image.origin"))
    np.testing.assert_array_equal(decoded[1], photo_patches[1])
    jpeg = np.asarray(Image.open(rgb_dir / "000.jpg").convert("RGB"), dtype=np.float32)
    assert np.abs(decoded[0].astype(np.float32) - jpeg).mean() < 3.0


def test_resize_equals_tf_image_resize(spark, photo_patches, rgb_model):
    from sklearn.datasets import load_sample_images

    photo = load_sample_images().images[1]
    big = np.stack([photo[100:164, 200:248], photo[0:64, 0:48]])  # two real 64 x 48 crops
    df = images_from_numpy(spark, big)
    t = TFImageTransformer(graph=TFGraph.from_keras(rgb_model), inputCol="image", outputCol="out", outputMode="array")
    got = _outputs(t.transform(df))
    want = rgb_model.predict(tf.image.resize(big.astype(np.float32), (32, 32)).numpy(), verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(Exception, match="is 64x48; the graph takes 32x32 and resize=False"):
        t.copy().setResize(False).transform(df).collect()


def test_gray_into_rgb_graph_and_rgba_into_rgb_graph(spark, fashion_images, photo_patches, rgb_model):
    x, _ = fashion_images
    gray = np.stack([np.asarray(Image.fromarray(im).resize((32, 32))) for im in x[:8]])
    t = TFImageTransformer(graph=TFGraph.from_keras(rgb_model), inputCol="image", outputCol="out", outputMode="array")
    got = _outputs(t.transform(images_from_numpy(spark, gray)))
    want = rgb_model.predict(np.repeat(gray[..., None], 3, axis=-1).astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    rgba = np.concatenate([photo_patches[:8], np.full((8, 32, 32, 1), 200, np.uint8)], axis=-1)
    got = _outputs(t.transform(images_from_numpy(spark, rgba)))
    np.testing.assert_allclose(got, rgb_model.predict(photo_patches[:8].astype(np.float32), verbose=0), atol=1e-5)


def test_color_into_gray_graph_uses_luma(spark, photo_patches):
    g = TFGraph.from_function(lambda im: {"y": tf.reduce_mean(im, axis=[1, 2, 3])},
                              [tf.TensorSpec([None, 32, 32, 1], tf.float32, name="im")])
    t = TFImageTransformer(graph=g, inputCol="image", outputCol="out", channelOrder="L", outputMode="array")
    got = _outputs(t.transform(images_from_numpy(spark, photo_patches[:4])))[:, 0]
    want = tf.image.rgb_to_grayscale(photo_patches[:4].astype(np.float32)).numpy().mean(axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_output_mode_image_round_trips_an_image_graph(spark, photo_patches):
    g = TFGraph.from_function(lambda im: {"inv": 255.0 - im}, [tf.TensorSpec([None, 32, 32, 3], tf.float32, name="im")])
    df = images_from_numpy(spark, photo_patches[:5])
    out = TFImageTransformer(graph=g, inputCol="image", outputCol="inv", outputMode="image").transform(df)
    row = out.select("image.origin", "inv").collect()[2]
    assert row.inv.origin == row.origin and (row.inv.height, row.inv.width, row.inv.nChannels, row.inv.mode) == (32, 32, 3, 16)
    bgr = np.frombuffer(row.inv.data, np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(bgr[..., ::-1], 255 - photo_patches[2])


# ---------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def doubling(doubling_graph):
    return TFGraph.from_bytes(doubling_graph)


@pytest.fixture(scope="module")
def tiny_images_df(spark, photo_patches):
    return images_from_numpy(spark, photo_patches[:6, :4, :4])


def test_missing_input_column_is_named(doubling, tiny_images_df):
    t = TFImageTransformer(graph=doubling, inputCol="img", outputCol="out")
    with pytest.raises(ValueError, match="inputCol 'img' is not in the DataFrame"):
        t.transform(tiny_images_df)


def test_wrong_column_type_is_named(spark, doubling):
    df = spark.createDataFrame([([1.0, 2.0],)], ["image"])
    with pytest.raises(TypeError, match="inputCol 'image' must be an image struct.*got array<double>"):
        TFImageTransformer(graph=doubling, inputCol="image", outputCol="out").transform(df)


def test_unknown_tensors_are_named(doubling, tiny_images_df):
    with pytest.raises(ValueError, match="input tensor 'pixels' is not an input of the graph. Available inputs: \\['image:0'\\]"):
        TFImageTransformer(graph=doubling, inputCol="image", outputCol="o", inputTensor="pixels").transform(tiny_images_df)
    with pytest.raises(ValueError, match="output tensor 'scores' is not in the graph"):
        TFImageTransformer(graph=doubling, inputCol="image", outputCol="o", outputTensor="scores").transform(tiny_images_df)


def test_channel_count_the_graph_cannot_take(spark, tiny_images_df):
    g = TFGraph.from_function(lambda im: {"y": im}, [tf.TensorSpec([None, 4, 4, 2], tf.float32, name="im")])
    with pytest.raises(ValueError, match="takes 2 channels but channelOrder 'RGB' gives 3"):
        TFImageTransformer(graph=g, inputCol="image", outputCol="o").transform(tiny_images_df)
    flat = TFGraph.from_function(lambda v: {"y": v}, [tf.TensorSpec([None, 48], tf.float32, name="v")])
    with pytest.raises(ValueError, match=r"must have shape \[batch, height, width, channels\]; got \[None, 48\]"):
        TFImageTransformer(graph=flat, inputCol="image", outputCol="o").transform(tiny_images_df)


def test_bad_param_values_are_refused(doubling, tiny_images_df):
    for kwargs, msg in (({"batchSize": 0}, "'batchSize' must be an int >= 1; got 0"),
                        ({"channelOrder": "RGBA"}, "'channelOrder' must be one of"),
                        ({"outputMode": "tensor"}, "'outputMode' must be"),
                        ({"errorMode": "skip"}, "'errorMode' must be 'fail' or 'null'")):
        with pytest.raises(ValueError, match=msg):
            TFImageTransformer(graph=doubling, inputCol="image", outputCol="o", **kwargs).transform(tiny_images_df)
    with pytest.raises(ValueError, match="no graph set"):
        TFImageTransformer(inputCol="image", outputCol="o").transform(tiny_images_df)


def _with_bad_rows(spark, good_df):
    """The good rows plus a null image and an invalid one (height -1, no data, as the source gives)."""
    from pyspark.sql.types import StructField, StructType

    from sparkdl_lite.images import image_schema

    schema = StructType([StructField("image", image_schema(), True)])
    bad = spark.createDataFrame([(None,), (("file:/bad.png", -1, -1, -1, -1, bytearray()),)], schema)
    return good_df.select("image").unionByName(bad).coalesce(1)


def test_invalid_and_null_rows_fail_naming_the_origin(spark, doubling, tiny_images_df):
    df = _with_bad_rows(spark, tiny_images_df).filter(F.col("image").isNotNull())
    t = TFImageTransformer(graph=doubling, inputCol="image", outputCol="o")
    with pytest.raises(Exception, match="image 'file:/bad.png'.*invalid"):
        t.transform(df).collect()


def test_error_mode_null_keeps_every_row_in_order(spark, doubling, tiny_images_df):
    df = _with_bad_rows(spark, tiny_images_df)
    out = TFImageTransformer(graph=doubling, inputCol="image", outputCol="o", errorMode="null",
                             outputMode="array").transform(df).collect()
    assert len(out) == 8
    assert [r.o is None for r in out] == [False] * 6 + [True, True]
    assert out[6].o_error == "the image is null"
    assert "invalid" in out[7].o_error and out[0].o_error is None
    first = np.frombuffer(out[0].image.data, np.uint8).reshape(4, 4, 3)[..., ::-1]
    np.testing.assert_allclose(np.asarray(out[0].o).reshape(4, 4, 3), 2.0 * first)


def test_empty_dataframe_gives_empty_output(spark, doubling, tiny_images_df):
    out = TFImageTransformer(graph=doubling, inputCol="image", outputCol="o").transform(tiny_images_df.limit(0))
    assert out.count() == 0 and "o" in out.columns


def test_graph_loaded_once_per_worker_per_transform(spark, photo_patches):
    """Many batches, few loads: the runtime caches the parsed graph in each Python worker."""
    from pyspark.sql.functions import pandas_udf

    g = TFGraph.from_function(lambda im: {"y": tf.reduce_sum(im, axis=[1, 2, 3]) + 0.5},
                              [tf.TensorSpec([None, 32, 32, 3], tf.float32, name="im")])
    df = images_from_numpy(spark, np.concatenate([photo_patches] * 2), num_partitions=4)
    t = TFImageTransformer(graph=g, inputCol="image", outputCol="o", batchSize=10, outputMode="array")
    n = 2 * len(photo_patches)
    assert len(t.transform(df).select("o").collect()) == n

    @pandas_udf("string")
    def stats(s):
        import pandas as pd

        from sparkdl_lite.core import runtime

        return pd.Series([json.dumps(runtime.load_stats())] * len(s))

    seen = {}
    for _ in range(3):  # ask several tasks so every worker answers
        for (text,) in spark.range(0, 8, numPartitions=8).select(stats("id")).distinct().collect():
            st = json.loads(text)
            seen[st["pid"]] = st["graphs"]
    mine = [v for graphs in seen.values() for k, v in graphs.items() if k.startswith(g.digest)]
    assert mine, f"no worker reported the graph: {seen}"
    loads = sum(v["loads"] for v in mine)
    batches = sum(v["batches"] for v in mine)
    assert batches >= n // 10  # rows / batchSize
    assert all(v["loads"] == 1 for v in mine)
    assert loads <= len(seen) < batches
