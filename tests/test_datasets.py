"""Tests for sparkdl_lite.core.datasets: the IDX reader/writer, the MNIST-style loaders, digits and sample()."""
import gzip
import os
import shutil

import numpy as np
import pytest

from sparkdl_lite.core import datasets
from sparkdl_lite.core.datasets import (
    Dataset,
    load_dataset,
    load_digits_split,
    load_fashion_mnist,
    load_idx_dir,
    load_mnist,
    read_idx,
    sample,
    write_idx,
)

ARRAYS = {
    "uint8_3d": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    "int8": np.array([-128, -1, 0, 127], dtype=np.int8),
    "int16": np.array([[-300, 2], [3, 32767]], dtype=np.int16),
    "int32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "float32": np.array([[0.5, -1.25, np.inf]], dtype=np.float32),
    "float64": np.array([1e-300, -2.5, 3.0], dtype=np.float64),
    "big_endian_int32": np.array([1, 256, 65536], dtype=">i4"),
}


def _write_mnist_dir(directory, n_train=6, n_test=4, names=None, size=5):
    """Four tiny MNIST-style files; pixel values encode (row index, label) so rows can be traced."""
    names = names or {"train-images": "train-images-idx3-ubyte.gz", "train-labels": "train-labels-idx1-ubyte.gz",
                      "t10k-images": "t10k-images-idx3-ubyte.gz", "t10k-labels": "t10k-labels-idx1-ubyte.gz"}
    os.makedirs(directory, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = np.zeros((n, size, size), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        images[:, 0, 1] = labels
        write_idx(os.path.join(directory, names[f"{split}-images"]), images)
        write_idx(os.path.join(directory, names[f"{split}-labels"]), labels)
    return directory


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("key", sorted(ARRAYS))
def test_write_read_round_trip(tmp_path, key, suffix):
    array = ARRAYS[key]
    path = tmp_path / f"{key}-idx{array.ndim}-ubyte{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.dtype.isnative and back.flags.writeable


def test_written_bytes_follow_the_idx_layout(tmp_path):
    path = tmp_path / "x-idx2-ubyte"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])


def test_reads_a_hand_made_big_endian_file(tmp_path):
    path = tmp_path / "h-idx1-short"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + bytes([0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(path), np.array([258, -2], dtype=np.int16))


def test_gzip_is_detected_by_its_magic_without_gz_suffix(tmp_path):
    gz = tmp_path / "a-idx1-ubyte.gz"
    write_idx(gz, np.array([7, 8, 9], dtype=np.uint8))
    plain_name = tmp_path / "a-idx1-ubyte"
    shutil.copy(gz, plain_name)
    np.testing.assert_array_equal(read_idx(str(plain_name)), [7, 8, 9])


def test_truncated_file_names_the_file_and_byte_counts(tmp_path):
    path = tmp_path / "t-idx2-ubyte"
    write_idx(path, np.zeros((2, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"t-idx2-ubyte.* is truncated.*needs 6 data bytes.*holds 5"):
        read_idx(path)


def test_truncated_gzip_payload_names_the_file(tmp_path):
    path = tmp_path / "t-idx2-ubyte.gz"
    header = bytes([0, 0, 8, 2, 0, 0, 0, 10, 0, 0, 0, 10])
    path.write_bytes(gzip.compress(header + bytes(50)))  # the header promises 100 bytes
    with pytest.raises(ValueError, match=r"t-idx2-ubyte\.gz.*truncated.*needs 100 data bytes.*holds 50"):
        read_idx(path)


def test_cut_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "cut-idx1-ubyte.gz"
    write_idx(path, np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"cut-idx1-ubyte\.gz.*not a valid gzip file"):
        read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    write_idx(path, np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(ValueError, match=r"long-idx1-ubyte.*longer than its header says.*needs 4 data bytes.*holds 6"):
        read_idx(path)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04", b"\x00"])
def test_wrong_magic_names_the_file_and_bytes(tmp_path, head):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(head + bytes(8))
    with pytest.raises(ValueError, match=r"bad-idx1-ubyte.* is not an IDX file: its magic bytes are"):
        read_idx(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere-idx1-ubyte"):
        read_idx(tmp_path / "nothere-idx1-ubyte")


def test_write_rejects_dtypes_without_idx_code(tmp_path):
    with pytest.raises(TypeError, match="int64 has no IDX code"):
        write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))


def test_load_idx_dir_reads_tiny_dir(tmp_path):
    directory = _write_mnist_dir(str(tmp_path / "tiny"))
    ds = load_idx_dir(directory)
    assert isinstance(ds, Dataset) and ds.name == "tiny" and ds.class_names is None
    assert ds.x_train.shape == (6, 5, 5) and ds.x_test.shape == (4, 5, 5)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, np.arange(6) % 3)
    np.testing.assert_array_equal(ds.x_test[:, 0, 1], ds.y_test)
    assert ds.num_classes == 3


def test_load_idx_dir_accepts_raw_files_and_mirror_spelling(tmp_path):
    names = {"train-images": "train-images.idx3-ubyte", "train-labels": "train-labels.idx1-ubyte",
             "t10k-images": "t10k-images-idx3-ubyte", "t10k-labels": "t10k-labels-idx1-ubyte.gz"}
    ds = load_idx_dir(_write_mnist_dir(str(tmp_path / "m"), names=names), name="mine", class_names=list("abc"))
    assert ds.name == "mine" and ds.class_names == ["a", "b", "c"]
    assert len(ds.x_train) == len(ds.y_train) == 6


def test_load_idx_dir_checks_counts_and_missing_files(tmp_path):
    directory = _write_mnist_dir(str(tmp_path / "d"))
    write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"), np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"has 4 images but .*t10k-labels-idx1-ubyte\.gz' has 3 labels"):
        load_idx_dir(directory)
    os.remove(os.path.join(directory, "train-labels-idx1-ubyte.gz"))
    with pytest.raises(FileNotFoundError, match=r"no train-labels-idx1-ubyte\[\.gz\]"):
        load_idx_dir(directory)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx_dir(tmp_path / "absent")


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y dataset-fashion-mnist.*SPARKDL_LITE_DATA"):
        load_fashion_mnist(tmp_path / "absent")
    monkeypatch.setenv("SPARKDL_LITE_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"\$SPARKDL_LITE_DATA.*apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no train-images.*apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "empty")


def test_env_var_directory_and_its_sub_directories(tmp_path, monkeypatch):
    _write_mnist_dir(str(tmp_path / "flat"))
    monkeypatch.setenv("SPARKDL_LITE_DATA", str(tmp_path / "flat"))
    ds = load_fashion_mnist()
    assert ds.name == "fashion-mnist" and ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    _write_mnist_dir(str(tmp_path / "root" / "mnist"), n_train=9)
    monkeypatch.setenv("SPARKDL_LITE_DATA", str(tmp_path / "root"))
    ds = load_mnist()
    assert ds.name == "mnist" and ds.class_names == [str(i) for i in range(10)] and len(ds.x_train) == 9
    assert len(load_dataset("MNIST").x_train) == 9


def test_load_dataset_dispatch(tmp_path):
    directory = _write_mnist_dir(str(tmp_path / "dir"))
    assert load_dataset(directory).name == "dir"
    with pytest.raises(ValueError, match=r"'cifar' is neither a known data set \(\['fashion-mnist', 'mnist'\]\)"):
        load_dataset("cifar")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "no" / "such"))


def test_real_fashion_mnist_loads(monkeypatch):
    directory = datasets.DEFAULT_DIRS["fashion-mnist"]
    if not os.path.isdir(directory):
        pytest.skip(f"{directory} is absent (apt-get install -y dataset-fashion-mnist)")
    monkeypatch.delenv("SPARKDL_LITE_DATA", raising=False)
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28) and ds.y_test.shape == (10000,)
    assert ds.y_train.shape == (60000,)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.num_classes == 10 and ds.x_train.max() == 255
    small = sample(ds, 100, 50, seed=1)
    np.testing.assert_array_equal(np.bincount(small.y_train), [10] * 10)


def test_digits_split_is_fixed_and_stratified():
    x_train, x_test, y_train, y_test = load_digits_split()
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0 and x_train.max() == 16
    totals = np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(np.bincount(y_test) - totals * 0.25) <= 1)  # stratified
    again = load_digits_split()
    np.testing.assert_array_equal(again[0], x_train)
    assert not np.array_equal(load_digits_split(seed=1)[0], x_train)
    with pytest.raises(ValueError, match="test_size"):
        load_digits_split(test_size=1.5)


def _toy(n_train=40, n_test=20):
    y_train = np.array([0] * 30 + [1] * 6 + [2] * 4)[:n_train]
    x_train = np.zeros((n_train, 2, 2), np.uint8)
    x_train[:, 0, 0] = np.arange(n_train)
    x_train[:, 1, 1] = y_train
    y_test = np.arange(n_test) % 2
    x_test = np.zeros((n_test, 2, 2), np.uint8)
    x_test[:, 1, 1] = y_test
    return Dataset(x_train, y_train, x_test, y_test, "toy", ["a", "b", "c"])


def test_sample_is_stratified_deterministic_and_keeps_rows_intact():
    ds = _toy()
    small = sample(ds, 12, 6, seed=3)
    assert small.x_train.shape == (12, 2, 2) and small.x_test.shape == (6, 2, 2)
    assert small.name == "toy" and small.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.bincount(small.y_train), [4, 4, 4])
    np.testing.assert_array_equal(small.x_train[:, 1, 1], small.y_train)  # x and y stay paired
    rows = small.x_train[:, 0, 0]
    assert np.all(np.diff(rows.astype(int)) > 0)  # original order, no repeats
    np.testing.assert_array_equal(ds.y_train[rows], small.y_train)
    # A scarce class gives all it has; the rest come from the others.
    np.testing.assert_array_equal(np.bincount(sample(ds, 20, 0).y_train), [10, 6, 4])
    again = sample(ds, 12, 6, seed=3)
    np.testing.assert_array_equal(again.x_train, small.x_train)
    np.testing.assert_array_equal(again.x_test, small.x_test)
    assert not np.array_equal(sample(ds, 12, 6, seed=4).x_train, small.x_train)


def test_sample_rejects_bad_counts():
    ds = _toy()
    with pytest.raises(ValueError, match=r"n_train must be in 0\.\.40"):
        sample(ds, 41, 1)
    with pytest.raises(ValueError, match="n_test"):
        sample(ds, 1, -1)
    with pytest.raises(TypeError, match="n_train must be an int"):
        sample(ds, 1.5, 1)
