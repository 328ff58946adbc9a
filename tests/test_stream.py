"""Streaming staged Parquet into a training task (core/stream.py), on scikit-learn's real digits.

No Spark here: the tests write the staged layout themselves with pyarrow (several part files,
several row groups each, Spark's side files beside them), as Spark's DataFrame writer would.
"""
import os
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits

from sparkdl_lite.core import stream
from sparkdl_lite.core.stream import StagedRows

# three part files of uneven sizes, each written with its own row-group size
PARTS = [(0, 600, 100), (600, 1200, 150), (1200, 1797, 64)]
LARGEST = 150
SEED = 11


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.float64)


def _features(x, kind):
    if kind == "float":
        return pa.array(list(x), pa.list_(pa.float32()))
    return pa.array([row.astype(np.uint8).tobytes() for row in x], pa.binary())


def _stage(directory, x, y, kind, parts=PARTS):
    """Write the rows as Spark stages them: part files, row groups, and side files to be skipped."""
    os.makedirs(directory, exist_ok=True)
    for i, (lo, hi, group) in enumerate(parts):
        table = pa.table({"features": _features(x[lo:hi], kind), "label": pa.array(y[lo:hi], pa.float64())})
        pq.write_table(table, os.path.join(directory, f"part-{i:05d}-c000.snappy.parquet"), row_group_size=group)
    empty = pa.table({"features": _features(x[:0], kind), "label": pa.array([], pa.float64())})
    pq.write_table(empty, os.path.join(directory, f"part-{len(parts):05d}-c000.snappy.parquet"))  # an empty partition
    open(os.path.join(directory, "_SUCCESS"), "w").close()
    with open(os.path.join(directory, ".part-00000-c000.snappy.parquet.crc"), "wb") as f:
        f.write(b"not parquet")
    os.makedirs(os.path.join(directory, "_temporary", "0"))
    with open(os.path.join(directory, "_temporary", "0", "part-00009.parquet"), "wb") as f:
        f.write(b"a task's leftover, not parquet")
    return str(directory)


@pytest.fixture(scope="module")
def staged_dirs(tmp_path_factory, digits):
    x, y = digits
    root = tmp_path_factory.mktemp("staged")
    return {"float": _stage(root / "float", x, y, "float"), "binary": _stage(root / "binary", x, y, "binary")}


SHAPES = {"float": (64,), "binary": (8, 8, 1)}


def _open(staged_dirs, kind):
    return StagedRows(staged_dirs[kind], feature_shape=SHAPES[kind])


def _epoch(staged, epoch, seed=SEED, batch_size=64, shuffle_rows=300):
    batches = list(staged.batches(epoch, seed=seed, batch_size=batch_size, shuffle_rows=shuffle_rows))
    return batches, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _source_index(digits):
    """Source row index by feature bytes (the 1797 digits rows are all distinct)."""
    x, _ = digits
    index = {row.tobytes(): i for i, row in enumerate(x)}
    assert len(index) == len(x)
    return lambda xs: np.array([index[r.astype(np.float32).reshape(-1).tobytes()] for r in xs])


def test_footers_give_rows_and_pieces_without_reading_data(staged_dirs):
    staged = _open(staged_dirs, "float")
    assert staged.rows == 1797
    assert staged.kind == "float" and staged.dtype == np.float32
    assert [os.path.basename(f) for f in staged.files] == [f"part-{i:05d}-c000.snappy.parquet" for i in range(4)]
    assert len(staged.pieces) == 6 + 4 + 10  # the empty file contributes no piece
    assert sum(p.rows for p in staged.pieces) == 1797
    assert staged.largest_row_group == LARGEST
    assert staged.steps(64) == 29 and staged.max_rows_held == 0
    assert _open(staged_dirs, "binary").kind == "binary"


@pytest.mark.parametrize("kind", ["float", "binary"])
def test_every_row_exactly_once_per_epoch(staged_dirs, digits, kind):
    x_src, y_src = digits
    staged = _open(staged_dirs, kind)
    source = _source_index(digits)
    for epoch in (0, 1):
        batches, x, y = _epoch(staged, epoch)
        assert [len(b[1]) for b in batches] == [64] * 28 + [1797 - 28 * 64]
        assert x.dtype == staged.dtype and x.shape == (1797, *SHAPES[kind]) and y.dtype == np.float64
        idx = source(x)
        assert np.array_equal(np.sort(idx), np.arange(1797))  # every source row once
        np.testing.assert_array_equal(x.reshape(1797, 64).astype(np.float32), x_src[idx])
        np.testing.assert_array_equal(y, y_src[idx])  # each label still beside its features


def test_epochs_differ_and_a_seed_repeats_its_sequence_of_orders(staged_dirs, digits):
    source = _source_index(digits)

    def orders(seed):
        staged = _open(staged_dirs, "float")  # a fresh reader: nothing carried between runs
        return [source(_epoch(staged, e, seed=seed)[1]) for e in range(3)]

    run = orders(SEED)
    assert not np.array_equal(run[0], run[1]) and not np.array_equal(run[1], run[2])
    again = orders(SEED)
    assert all(np.array_equal(a, b) for a, b in zip(run, again))
    other = orders(SEED + 1)
    assert not any(np.array_equal(a, b) for a, b in zip(run, other))


@pytest.mark.parametrize("shuffle_rows", [0, 300, 1000])
def test_rows_held_stay_within_the_buffer_and_one_row_group(staged_dirs, shuffle_rows):
    staged = _open(staged_dirs, "binary")
    _, x, _ = _epoch(staged, 0, shuffle_rows=shuffle_rows)
    assert len(x) == 1797
    assert staged.max_rows_held <= max(shuffle_rows, 64 - 1) + LARGEST
    if shuffle_rows:
        assert staged.max_rows_held > LARGEST  # the buffer did fill: rows were mixed across row groups
        assert staged.max_rows_held <= shuffle_rows + LARGEST


def test_shuffle_buffer_mixes_row_groups(staged_dirs, digits):
    staged = _open(staged_dirs, "float")
    source = _source_index(digits)
    starts = np.array([lo for lo, hi, group in PARTS for lo in range(lo, hi, group)])
    first = source(_epoch(staged, 0, shuffle_rows=600)[0][0][0])  # the first batch's rows
    groups = np.searchsorted(starts, first, side="right")
    assert len(set(groups)) > 2


def test_file_uri_relative_and_plain_paths_read_the_same(staged_dirs, monkeypatch):
    plain = staged_dirs["float"]
    expected = _epoch(StagedRows(plain, feature_shape=(64,)), 0)[1]
    monkeypatch.chdir(os.path.dirname(plain))
    for where in ("file://" + plain, "file:" + plain, os.path.basename(plain)):
        staged = StagedRows(where, feature_shape=(64,))
        assert staged.rows == 1797, where
        np.testing.assert_array_equal(_epoch(staged, 0)[1], expected)


def test_hadoop_s3_schemes_map_to_pyarrows_s3():
    assert stream.arrow_uri("s3a://bucket/x") == "s3://bucket/x"
    assert stream.arrow_uri("s3n://bucket/x/part-0.parquet") == "s3://bucket/x/part-0.parquet"
    assert stream.arrow_uri("S3A://bucket/x?region=eu-west-1") == "s3://bucket/x?region=eu-west-1"
    for kept in ("s3://bucket/x", "gs://bucket/x", "hdfs://namenode:8020/staged", "file:///tmp/staged"):
        assert stream.arrow_uri(kept) == kept
    assert stream.arrow_uri("relative/dir") == os.path.abspath("relative/dir")


def test_a_missing_directory_is_named(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(repr(missing)) + ".* does not exist"):
        StagedRows(missing, feature_shape=(64,))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        StagedRows("file://" + missing, feature_shape=(64,))


def test_a_directory_without_parquet_is_named(tmp_path):
    open(tmp_path / "_SUCCESS", "w").close()
    with pytest.raises(ValueError, match=re.escape(repr(str(tmp_path))) + " holds no Parquet file"):
        StagedRows(str(tmp_path), feature_shape=(64,))


def test_an_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="cannot open a file system for 'nosuch://bucket/x'"):
        stream.filesystem("nosuch://bucket/x")


@pytest.mark.parametrize("kind,unit", [("float", "values"), ("binary", "bytes")])
def test_a_wrong_length_row_is_named_with_its_file(tmp_path, digits, kind, unit):
    x, y = digits
    rows = [x[i] for i in range(40)]
    rows[25] = rows[25][:63]  # one short row in the second row group
    features = (pa.array([list(r) for r in rows], pa.list_(pa.float32())) if kind == "float"
                else pa.array([r.astype(np.uint8).tobytes() for r in rows], pa.binary()))
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"features": features, "label": pa.array(y[:40])}), path, row_group_size=20)
    staged = StagedRows(str(tmp_path), feature_shape=SHAPES[kind])  # opening reads footers only
    assert staged.rows == 40
    expected = f"row 5 of row group 1 in {str(path)!r} has 63 {unit} in column 'features'; expected 64"
    with pytest.raises(ValueError, match=re.escape(expected)):
        list(staged.batches(0, seed=0, batch_size=8, shuffle_rows=0))


def test_a_wrong_feature_shape_is_named(staged_dirs):
    staged = StagedRows(staged_dirs["binary"], feature_shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"has 64 bytes .*expected 784 \(feature_shape \[28, 28, 1\]\)"):
        next(staged.batches(0, seed=0, batch_size=8, shuffle_rows=0))


def test_bad_arguments_are_refused_at_the_call(staged_dirs):
    staged = _open(staged_dirs, "float")
    with pytest.raises(ValueError, match="'batch_size' must be an int >= 1; got 0"):
        staged.batches(0, seed=0, batch_size=0, shuffle_rows=0)
    with pytest.raises(TypeError, match="'shuffle_rows' must be an int"):
        staged.batches(0, seed=0, batch_size=8, shuffle_rows=1.5)
    with pytest.raises(TypeError, match="'feature_shape'"):
        StagedRows(staged_dirs["float"], feature_shape="64")


def test_dataset_epoch_k_is_batches_k(staged_dirs):
    staged = _open(staged_dirs, "float")
    scale = np.float32(1 / 16)
    ds = stream.dataset(staged, seed=SEED, batch_size=128, shuffle_rows=300, epochs=2, first_epoch=1,
                        transform=lambda x: (x * scale).reshape(len(x), 8, 8, 1))
    assert ds.element_spec[0].shape.as_list() == [None, 8, 8, 1]
    got = list(ds.as_numpy_iterator())
    steps = staged.steps(128)
    assert len(got) == 2 * steps
    for k, epoch in enumerate((1, 2)):
        expected = list(staged.batches(epoch, seed=SEED, batch_size=128, shuffle_rows=300))
        for (gx, gy), (ex, ey) in zip(got[k * steps:(k + 1) * steps], expected):
            np.testing.assert_array_equal(gx, (ex * scale).reshape(len(ex), 8, 8, 1))
            np.testing.assert_array_equal(gy, ey)


def test_keras_fit_reads_one_stream_epoch_per_keras_epoch(staged_dirs):
    import keras

    staged = _open(staged_dirs, "binary")
    seen = []

    def scale(x):
        seen.append(x.copy())
        return x.astype(np.float32) / np.float32(16)

    ds = stream.dataset(staged, seed=SEED, batch_size=256, shuffle_rows=300, epochs=2, transform=scale)
    seen.clear()  # drop the signature probe
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(ds, epochs=2, steps_per_epoch=staged.steps(256), verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert len(history.history["loss"]) == 2
    expected = [x for k in (0, 1) for x, _ in staged.batches(k, seed=SEED, batch_size=256, shuffle_rows=300)]
    assert len(expected) == 2 * staged.steps(256)
    # the transform sees whole chunks (a few per epoch), together exactly the two epochs' batches in order:
    # nothing read past the last epoch
    assert len(seen) < len(expected)
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate(expected))


def test_chunks_cut_into_batches_are_the_batches(staged_dirs):
    staged = _open(staged_dirs, "binary")
    chunks = list(staged.chunks(1, seed=SEED, batch_size=64, shuffle_rows=300))
    assert len(chunks) <= len(staged.pieces) + 1
    assert all(len(y) % 64 == 0 for _, y in chunks[:-1])  # whole batches but the last chunk
    cut = [x[lo:lo + 64] for x, _ in chunks for lo in range(0, len(x), 64)]
    want = [x for x, _ in staged.batches(1, seed=SEED, batch_size=64, shuffle_rows=300)]
    assert len(cut) == len(want)
    for a, b in zip(cut, want):
        np.testing.assert_array_equal(a, b)


def test_an_error_in_the_reader_thread_reaches_the_training_loop(staged_dirs):
    import tensorflow as tf

    staged = _open(staged_dirs, "binary")
    calls = []

    def fails_on_the_second_chunk(x):
        calls.append(len(x))
        if len(calls) == 3:  # the probe, chunk 1, then chunk 2
            raise ValueError("chunk two is bad")
        return x.astype(np.float32)

    ds = stream.dataset(staged, seed=SEED, batch_size=64, shuffle_rows=300, epochs=1, transform=fails_on_the_second_chunk)
    with pytest.raises(tf.errors.InvalidArgumentError, match="chunk two is bad"):
        for _ in ds:
            pass


def test_a_dataset_dropped_early_stops_its_reader_thread(staged_dirs):
    import gc
    import threading
    import time

    staged = _open(staged_dirs, "binary")
    ds = stream.dataset(staged, seed=SEED, batch_size=16, shuffle_rows=300, epochs=50)
    it = iter(ds)
    next(it)
    assert any(t.name == "sparkdl-lite-prefetch" for t in threading.enumerate())
    del it, ds
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name == "sparkdl-lite-prefetch" for t in threading.enumerate()):
        time.sleep(0.1)
    assert not any(t.name == "sparkdl-lite-prefetch" for t in threading.enumerate())
