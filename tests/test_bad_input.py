"""The bad-input matrix of docs/errors.md that the other test files do not already cover: image files."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sparkdl_lite import TFGraph, TFImageTransformer, TFTransformer, images_from_numpy, read_images
from sparkdl_lite.images import empty_files


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory, photo_patches):
    d = tmp_path_factory.mktemp("bad_images")
    Image.fromarray(photo_patches[0]).save(d / "ok.png")
    good = (d / "ok.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_bytes(b"this is not an image")
    Image.fromarray(photo_patches[1]).save(d / "photo.webp", lossless=True)
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(d / "gray16.png")
    return d


@pytest.fixture(scope="module")
def mean_graph():
    return TFGraph.from_function(lambda im: {"m": tf.reduce_mean(im, axis=[1, 2])},
                                 [tf.TensorSpec([None, 32, 32, 3], tf.float32, name="im")])


def _by_name(rows, col="image"):
    return {r[col].origin.rsplit("/", 1)[-1]: r for r in rows}


def test_spark_decoder_matrix(spark, bad_dir, mean_graph):
    df = read_images(spark, str(bad_dir))
    rows = _by_name(df.collect())
    assert rows["empty.png"].image.height == -1 and len(rows["empty.png"].image.data) == 0  # added by read_images
    assert rows["truncated.png"].image.height == -1 and rows["text.jpg"].image.height == -1
    assert rows["photo.webp"].image.height == -1  # no WebP reader in the JVM's ImageIO
    g16 = np.frombuffer(rows["gray16.png"].image.data, np.uint8)
    want_low = (np.arange(32 * 32, dtype=np.uint32) * 60 & 0xFF).astype(np.uint8)
    np.testing.assert_array_equal(g16, want_low)  # the documented low-byte behaviour
    out = TFImageTransformer(graph=mean_graph, inputCol="image", outputCol="m", errorMode="null").transform(df).collect()
    out = _by_name(out)
    assert len(out) == 6
    assert out["ok.png"].m is not None and out["ok.png"].m_error is None
    assert out["gray16.png"].m is not None  # gray -> RGB by repeating the plane
    for name in ("truncated.png", "text.jpg", "photo.webp", "empty.png"):
        assert out[name].m is None and "invalid" in out[name].m_error


def test_pillow_decoder_matrix(spark, bad_dir, photo_patches):
    rows = _by_name(read_images(spark, str(bad_dir), decoder="pillow").collect())
    assert set(rows) == {"ok.png", "truncated.png", "text.jpg", "photo.webp", "gray16.png", "empty.png"}
    assert rows["empty.png"].image.height == -1 and rows["empty.png"].image_error == "empty file (0 bytes)"
    assert "truncated" in rows["truncated.png"].image_error
    assert "cannot identify" in rows["text.jpg"].image_error
    webp = np.frombuffer(rows["photo.webp"].image.data, np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(webp[..., ::-1], photo_patches[1])
    g16 = np.frombuffer(rows["gray16.png"].image.data, np.uint8)
    np.testing.assert_array_equal(g16, ((np.arange(32 * 32) * 60) >> 8).astype(np.uint8))
    ok = np.frombuffer(rows["ok.png"].image.data, np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(ok[..., ::-1], photo_patches[0])
    with pytest.raises(ValueError, match="decoder must be 'spark' or 'pillow'"):
        read_images(spark, str(bad_dir), decoder="opencv")


def test_empty_files_listing(spark, bad_dir, tmp_path, caplog):
    assert [u.rsplit("/", 1)[-1] for u in empty_files(spark, str(bad_dir))] == ["empty.png"]
    assert [u.rsplit("/", 1)[-1] for u in empty_files(spark, str(bad_dir / "*.png"))] == ["empty.png"]
    nested = tmp_path / "top"
    (nested / "sub").mkdir(parents=True)
    (nested / "sub" / "deep.png").write_bytes(b"")
    (nested / ".hidden.png").write_bytes(b"")
    (nested / "top.png").write_bytes(b"")
    assert [u.rsplit("/", 1)[-1] for u in empty_files(spark, str(nested))] == ["top.png"]
    assert [u.rsplit("/", 1)[-1] for u in empty_files(spark, str(nested), recursive=True)] == ["deep.png", "top.png"]
    with caplog.at_level("WARNING", logger="sparkdl_lite"):
        n_kept = read_images(spark, str(bad_dir)).count()
        n_dropped = read_images(spark, str(bad_dir), drop_invalid=True).count()
        n_skipped = read_images(spark, str(bad_dir), keep_empty=False).count()
    assert (n_kept, n_skipped, n_dropped) == (6, 5, 2)  # drop_invalid keeps ok.png and gray16.png
    assert "0-byte file(s)" in caplog.text and "empty.png" in caplog.text


def test_mixed_sizes(spark, photo_patches, mean_graph):
    small = images_from_numpy(spark, photo_patches[:3, :16, :16], origin_prefix="small/")
    big = images_from_numpy(spark, photo_patches[3:5], origin_prefix="big/")
    df = small.unionByName(big).coalesce(1)
    t = TFImageTransformer(graph=mean_graph, inputCol="image", outputCol="m", outputMode="array")
    rows = t.transform(df).collect()
    want_small = tf.image.resize(photo_patches[:3, :16, :16].astype(np.float32), (32, 32)).numpy().mean(axis=(1, 2))
    np.testing.assert_allclose([r.m for r in rows[:3]], want_small, rtol=1e-5)
    np.testing.assert_allclose([r.m for r in rows[3:]], photo_patches[3:5].astype(np.float32).mean(axis=(1, 2)), rtol=1e-5)
    nulls = t.copy().setResize(False).setErrorMode("null").transform(df).collect()
    assert [r.m is None for r in nulls] == [True, True, True, False, False]
    assert nulls[0].m_error == "the image is 16x16; the graph takes 32x32 and resize=False"
    with pytest.raises(Exception, match="image 'small/0'.*is 16x16; the graph takes 32x32"):
        t.copy().setResize(False).transform(df).collect()


def test_nan_and_inf_features_reach_the_graph_unchanged(spark):
    g = TFGraph.from_function(lambda x: {"y": x * 2.0}, [tf.TensorSpec([None, 3], tf.float32, name="x")])
    df = spark.createDataFrame([([float("nan"), float("inf"), 1.0],)], ["x"])
    row = TFTransformer(graph=g, inputMapping={"x": "x"}, outputMapping={"y": "y"}, outputMode="array").transform(df).head()
    assert np.isnan(row.y[0]) and np.isposinf(row.y[1]) and row.y[2] == 2.0


def test_nan_features_into_classifier_fit_are_refused(spark):
    from pyspark.ml.linalg import Vectors

    from sparkdl_lite import TFClassifier

    df = spark.createDataFrame([(Vectors.dense([1.0, float("nan")]), 0.0), (Vectors.dense([0.0, 1.0]), 1.0)],
                               ["features", "label"])
    with pytest.raises(ValueError, match="featuresCol 'features' has NaN or infinite values"):
        TFClassifier(epochs=1).fit(df)
