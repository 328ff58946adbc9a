"""Small real data sets for examples, tests and benchmarks: IDX files (MNIST, Fashion-MNIST) and
scikit-learn's 8x8 digits.

IDX is the format of the MNIST family: a 4-byte magic (two zero bytes, a dtype code, the number
of dimensions), one big-endian uint32 per dimension, then the values, big-endian, row-major.
Files may be gzipped. Core module: numpy only, no pyspark (turn arrays into DataFrames with
:func:`sparkdl_lite.images_from_numpy`).
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["DATA_ENV", "DEFAULT_DIRS", "Dataset", "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "load_dataset",
           "load_digits_split", "load_fashion_mnist", "load_idx_dir", "load_mnist", "read_idx", "sample",
           "write_idx"]

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming a directory with the IDX files (or with one sub-directory per data set).
DATA_ENV = "SPARKDL_LITE_DATA"

#: Where each data set is looked for when neither a path nor ``$SPARKDL_LITE_DATA`` is given.
#: Fashion-MNIST's is where Debian's ``dataset-fashion-mnist`` package installs it.
DEFAULT_DIRS: Dict[str, str] = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]

# IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Dataset:
    """A train/test split of images and integer labels.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        Images, uint8, shape ``(N, height, width)``.
    y_train, y_test : numpy.ndarray
        Labels, int64, shape ``(N,)``.
    name : str
        ``"fashion-mnist"``, ``"mnist"`` or the directory's name.
    class_names : list of str, optional
        The name of each label value, when known.

    .. versionadded:: 0.1.0
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    class_names: Optional[List[str]] = None

    @property
    def num_classes(self) -> int:
        """Number of classes: ``len(class_names)``, else one more than the largest label."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
                f"classes={self.num_classes})")


# ----------------------------------------------------------------------------- IDX files
def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_idx: file {path!r} does not exist.")
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz") or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"read_idx: file {path!r} is not a valid gzip file (truncated or corrupt?): {exc}.") from exc
    return raw


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw, or gzipped when the name ends in ``.gz`` or the bytes say so).

    Parameters
    ----------
    path : str or os.PathLike
        The file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    numpy.ndarray
        The array, in native byte order, with the file's dtype (uint8 for MNIST) and shape.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the magic number is wrong, or the data size does not match the header (a
        truncated file or trailing bytes); the message names the file and both byte counts.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a-idx2-ubyte.gz")
    >>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(p).tolist()
    [[0, 1, 2], [3, 4, 5]]

    .. versionadded:: 0.1.0
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: file {path!r} is not an IDX file: its magic bytes are {data[:4].hex(' ')!r}; expected "
                         f"00 00, a dtype code (one of {', '.join(f'{c:02x}' for c in _IDX_DTYPES)}), then the number of dimensions.")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: file {path!r} is truncated: its header needs {header} bytes for {ndim} dimensions "
                         f"but the file holds {len(data)} bytes.")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(f"read_idx: file {path!r} is {what}: shape {list(shape)} of {dtype.newbyteorder('=').name} needs "
                         f"{expected} data bytes after the {header}-byte header, but the file holds {actual}.")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : numpy.ndarray
        1 to 255 dimensions, of dtype uint8, int8, int16, int32, float32 or float64.

    Raises
    ------
    TypeError
        When the dtype has no IDX code (e.g. int64: cast it to int32 first).
    ValueError
        When the number of dimensions is 0 or above 255.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
    >>> read_idx(p).tolist()
    [3, 1, 4]

    .. versionadded:: 0.1.0
    """
    path = os.fspath(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX code; use one of uint8, int8, int16, int32, "
                        "float32, float64 (e.g. array.astype(np.int32)).")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: an IDX array needs 1 to 255 dimensions; got shape {array.shape}.")
    code = _IDX_CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if path.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: identical arrays give identical files
    with open(path, "wb") as f:
        f.write(payload)


def _find(directory: str, split: str, kind: str) -> Optional[str]:
    n = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{n}-ubyte", f"{split}-{kind}.idx{n}-ubyte"):
        for name in (stem + ".gz", stem):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def load_idx_dir(directory: PathLike, *, name: Optional[str] = None,
                 class_names: Optional[List[str]] = None) -> Dataset:
    """Load the four MNIST-style IDX files of a directory.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``; the
    ``train-images.idx3-ubyte`` spelling of some mirrors works too.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory holding the files.
    name : str, optional
        The data set's name; defaults to the directory's base name.
    class_names : list of str, optional
        The name of each label value.

    Returns
    -------
    Dataset
        Images as uint8 ``(N, height, width)``, labels as int64 ``(N,)``.

    Raises
    ------
    FileNotFoundError
        When the directory or one of the files is missing (the message lists the names tried).
    ValueError
        When a file is not valid IDX, images are not 3-D uint8, labels are not 1-D, or the image
        and label counts differ.

    Examples
    --------
    >>> ds = load_idx_dir(DEFAULT_DIRS["fashion-mnist"])  # doctest: +SKIP
    >>> ds.x_train.shape, ds.y_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000,))

    .. versionadded:: 0.1.0
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"load_idx_dir: directory {directory!r} does not exist.")
    arrays = {}
    for split in ("train", "t10k"):
        for kind in ("images", "labels"):
            path = _find(directory, split, kind)
            if path is None:
                n = 3 if kind == "images" else 1
                raise FileNotFoundError(f"load_idx_dir: directory {directory!r} has no {split}-{kind}-idx{n}-ubyte[.gz] "
                                        f"(nor {split}-{kind}.idx{n}-ubyte[.gz]); it holds {sorted(os.listdir(directory))}.")
            arrays[split, kind] = (path, read_idx(path))
    for split in ("train", "t10k"):
        (ipath, images), (lpath, labels) = arrays[split, "images"], arrays[split, "labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"load_idx_dir: {ipath!r} must hold uint8 images of shape (N, height, width); "
                             f"got {images.dtype} {images.shape}.")
        if labels.ndim != 1:
            raise ValueError(f"load_idx_dir: {lpath!r} must hold a 1-D array of labels; got shape {labels.shape}.")
        if len(images) != len(labels):
            raise ValueError(f"load_idx_dir: {ipath!r} has {len(images)} images but {lpath!r} has {len(labels)} labels.")
    return Dataset(x_train=arrays["train", "images"][1], y_train=arrays["train", "labels"][1].astype(np.int64),
                   x_test=arrays["t10k", "images"][1], y_test=arrays["t10k", "labels"][1].astype(np.int64),
                   name=name or os.path.basename(os.path.normpath(directory)), class_names=class_names)


def _resolve_dir(name: str, path: Optional[PathLike], hint: str) -> str:
    if path is not None:
        directory, source = os.fspath(path), "the path given"
    elif os.environ.get(DATA_ENV):
        env = os.environ[DATA_ENV]
        nested = os.path.join(env, name)  # $SPARKDL_LITE_DATA may hold one sub-directory per data set
        directory, source = (nested if os.path.isdir(nested) else env), f"${DATA_ENV}"
    else:
        directory, source = DEFAULT_DIRS[name], "the default directory"
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{name}: directory {directory!r} ({source}) does not exist. {hint}")
    return directory


def load_fashion_mnist(path: Optional[PathLike] = None) -> Dataset:
    """Load Fashion-MNIST: 60,000 training and 10,000 test 28x28 grey images of 10 clothing classes.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory with the four IDX files. Defaults to ``$SPARKDL_LITE_DATA`` (or its
        ``fashion-mnist`` sub-directory), else ``/usr/share/datasets/fashion-mnist``, where
        Debian's ``dataset-fashion-mnist`` package puts them.

    Returns
    -------
    Dataset
        With ``class_names`` T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
        Sneaker, Bag, Ankle boot.

    Raises
    ------
    FileNotFoundError
        When the directory or a file is missing; the message says how to install the data.

    Examples
    --------
    >>> ds = load_fashion_mnist()  # doctest: +SKIP
    >>> ds.class_names[int(ds.y_train[0])]  # doctest: +SKIP
    'Ankle boot'

    .. versionadded:: 0.1.0
    """
    hint = (f"Install it with 'apt-get install -y dataset-fashion-mnist' (Debian/Ubuntu), or set {DATA_ENV} "
            "to a directory holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.")
    return _load_named("fashion-mnist", path, hint, FASHION_MNIST_CLASSES)


def load_mnist(path: Optional[PathLike] = None) -> Dataset:
    """Load MNIST: 60,000 training and 10,000 test 28x28 grey images of handwritten digits.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory with the four IDX files. Defaults to ``$SPARKDL_LITE_DATA`` (or its ``mnist``
        sub-directory), else ``/usr/share/datasets/mnist``.

    Returns
    -------
    Dataset
        With ``class_names`` "0" to "9".

    Raises
    ------
    FileNotFoundError
        When the directory or a file is missing.

    Examples
    --------
    >>> load_mnist("/data/mnist").x_test.shape  # doctest: +SKIP
    (10000, 28, 28)

    .. versionadded:: 0.1.0
    """
    hint = (f"Pass the directory, or set {DATA_ENV} to a directory holding train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].")
    return _load_named("mnist", path, hint, MNIST_CLASSES)


def _load_named(name: str, path: Optional[PathLike], hint: str, class_names: Sequence[str]) -> Dataset:
    directory = _resolve_dir(name, path, hint)
    try:
        return load_idx_dir(directory, name=name, class_names=list(class_names))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc} {hint}") from exc


_LOADERS = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist}


def load_dataset(name_or_dir: PathLike) -> Dataset:
    """Load ``"fashion-mnist"``, ``"mnist"`` or a directory of MNIST-style IDX files.

    Parameters
    ----------
    name_or_dir : str or os.PathLike
        A data set name (``fashion_mnist`` and any case work too) or a directory.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        When the argument is neither a known name nor a directory.
    FileNotFoundError
        When the data set's files are missing.

    Examples
    --------
    >>> load_dataset("fashion-mnist").num_classes  # doctest: +SKIP
    10

    .. versionadded:: 0.1.0
    """
    text = os.fspath(name_or_dir)
    key = text.strip().lower().replace("_", "-")
    if key in _LOADERS and not os.path.isdir(text):
        return _LOADERS[key]()
    if os.path.isdir(text):
        return load_idx_dir(text)
    if os.sep in text or (os.altsep and os.altsep in text):
        raise FileNotFoundError(f"load_dataset: directory {text!r} does not exist.")
    raise ValueError(f"load_dataset: {text!r} is neither a known data set ({sorted(_LOADERS)}) nor an existing directory.")


# ----------------------------------------------------------------------------- small data
def load_digits_split(seed: int = 0, test_size: float = 0.25) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8x8 digit images as a fixed, stratified train/test split.

    Parameters
    ----------
    seed : int
        Seed of the split.
    test_size : float
        Fraction of the rows in the test set, in (0, 1).

    Returns
    -------
    x_train, x_test, y_train, y_test : numpy.ndarray
        Features as float32 ``(N, 64)`` with values 0 to 16, labels as int64 ``(N,)``
        (1,347 / 450 rows at the defaults).

    Raises
    ------
    ImportError
        When scikit-learn is not installed.
    ValueError
        When ``test_size`` is not in (0, 1).

    Examples
    --------
    >>> x_train, x_test, y_train, y_test = load_digits_split()
    >>> x_train.shape, x_test.shape
    ((1347, 64), (450, 64))

    .. versionadded:: 0.1.0
    """
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"load_digits_split: test_size must be in (0, 1); got {test_size!r}.")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError("load_digits_split needs scikit-learn: pip install scikit-learn.") from exc
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    return x_train, x_test, y_train, y_test


def _stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices of ``y``, as evenly spread over its classes as their sizes allow, ascending."""
    order = rng.permutation(len(y))
    labels = y[order]
    rank = np.empty(len(y), dtype=np.int64)  # rank of each shuffled row within its class
    for value in np.unique(labels):
        members = labels == value
        rank[members] = np.arange(int(members.sum()))
    tie = rng.permutation(len(y))  # which class goes first within one round
    picked = order[np.lexsort((tie, rank))[:n]]
    return np.sort(picked)


def sample(dataset: Dataset, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """A smaller copy of ``dataset``: ``n_train`` and ``n_test`` rows, stratified by label.

    Rows are drawn with a seeded shuffle so each class gets an equal share (as far as its size
    allows); they keep their original order. The same arguments give the same rows.

    Parameters
    ----------
    dataset : Dataset
        The data set to sample from.
    n_train, n_test : int
        Rows to keep from each split (0 up to the split's size).
    seed : int
        Seed of the draw.

    Returns
    -------
    Dataset
        Same name and class names, fewer rows.

    Raises
    ------
    ValueError
        When a count is negative or larger than its split.

    Examples
    --------
    >>> ds = Dataset(np.zeros((10, 2, 2), np.uint8), np.arange(10) % 2, np.zeros((4, 2, 2), np.uint8),
    ...              np.arange(4) % 2, "toy")
    >>> small = sample(ds, 4, 2)
    >>> small.x_train.shape, np.bincount(small.y_train).tolist()
    ((4, 2, 2), [2, 2])

    .. versionadded:: 0.1.0
    """
    rng = np.random.default_rng(seed)
    parts = {}
    for split, x, y, n in (("train", dataset.x_train, dataset.y_train, n_train),
                           ("test", dataset.x_test, dataset.y_test, n_test)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"sample: n_{split} must be an int; got {n!r}.")
        if not 0 <= n <= len(y):
            raise ValueError(f"sample: n_{split} must be in 0..{len(y)} (the size of the {split} split); got {n}.")
        idx = _stratified_indices(np.asarray(y), int(n), rng)
        parts[split] = (x[idx], y[idx])
    return Dataset(x_train=parts["train"][0], y_train=parts["train"][1], x_test=parts["test"][0],
                   y_test=parts["test"][1], name=dataset.name,
                   class_names=None if dataset.class_names is None else list(dataset.class_names))
