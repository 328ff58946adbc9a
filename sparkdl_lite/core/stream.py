"""Stream staged Parquet rows into a training task: the task side of issue #23.

The Spark layer stages a training DataFrame once as Parquet in a directory every executor can read
(a local path, ``file://``, ``hdfs://``, ``s3://`` / ``s3a://``, ``gs://``). The layout is fixed:
column ``features`` is ``list<float>`` (flat float32 rows of one length) or ``binary`` (raw uint8
pixels, height*width*channels bytes in HWC order, one size), column ``label`` is a double (the class
index); files whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``) are not data.

A training task opens the directory as :class:`StagedRows` (Parquet footers only) and reads one
epoch with :meth:`StagedRows.batches`: the row groups in a seeded random order, mixed through a
bounded shuffle buffer, converted from Arrow to numpy without per-row Python. :func:`dataset` wraps
that in a ``tf.data.Dataset`` for Keras ``fit``, handing TensorFlow a few large chunks per epoch
(:meth:`StagedRows.chunks`) read ahead by a thread. Memory is bounded by the buffer and a few row
groups, whatever the size of the data. Core module: numpy, pyarrow and TensorFlow, no pyspark.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import sys
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["FEATURES", "LABEL", "Piece", "StagedRows", "arrow_uri", "dataset", "filesystem"]

FEATURES = "features"  # the staged layout's column names
LABEL = "label"

_WHO = "staged data"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HADOOP_S3 = ("s3a", "s3n")  # Hadoop's S3 connectors; pyarrow knows the bucket as s3://
_DTYPES = {"float": np.dtype(np.float32), "binary": np.dtype(np.uint8)}


class Piece(NamedTuple):
    """One row group of one staged file: the unit read at a time."""

    path: str
    row_group: int
    rows: int


# ----------------------------------------------------------------------------- file systems
def arrow_uri(uri: str) -> str:
    """The URI as ``pyarrow.fs.FileSystem.from_uri`` takes it.

    Hadoop's ``s3a://`` and ``s3n://`` become ``s3://`` (the same bucket and key; pyarrow knows
    only ``s3://``), a plain path becomes an absolute local path, anything else is left as is.

    Parameters
    ----------
    uri : str
        A local path or a URI (``file://``, ``hdfs://``, ``s3://``, ``s3a://``, ``gs://``, ...).

    Returns
    -------
    str
        The URI or absolute path to hand to pyarrow.

    Raises
    ------
    TypeError
        When ``uri`` is not a str or path.

    Examples
    --------
    >>> arrow_uri("s3a://bucket/staged?region=eu-west-1")
    's3://bucket/staged?region=eu-west-1'
    >>> arrow_uri("hdfs://namenode:8020/tmp/staged")
    'hdfs://namenode:8020/tmp/staged'

    .. versionadded:: 0.3.0
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str):
        raise TypeError(f"{_WHO}: the location must be a str URI or path; got {uri!r} ({type(uri).__name__}).")
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:  # no scheme (a one-letter "scheme" is a Windows drive)
        return os.path.abspath(os.path.expanduser(uri))
    scheme = match.group(1).lower()
    return "s3" + uri[len(scheme):] if scheme in _HADOOP_S3 else uri


def filesystem(uri: str) -> Tuple[pafs.FileSystem, str]:
    """Open the file system that holds ``uri`` and give the path inside it.

    Parameters
    ----------
    uri : str
        A local path or a URI every executor can read (see :func:`arrow_uri` for the mapping of
        Hadoop's ``s3a://``). Options pyarrow reads from the URI's query (``?region=...``) pass through.

    Returns
    -------
    (pyarrow.fs.FileSystem, str)
        The file system and the path of ``uri`` in it (``bucket/key`` for object stores).

    Raises
    ------
    ValueError
        When pyarrow cannot open a file system for the URI (unknown scheme, bad options, a
        missing HDFS library); the message names the URI.

    Examples
    --------
    >>> import tempfile
    >>> fs, path = filesystem("file://" + tempfile.gettempdir())
    >>> type(fs).__name__
    'LocalFileSystem'

    .. versionadded:: 0.3.0
    """
    target = arrow_uri(uri)
    try:
        return pafs.FileSystem.from_uri(target)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ValueError(f"{_WHO}: cannot open a file system for {uri!r} (as {target!r}): {e}. Give a local path or "
                         f"a file://, hdfs://, s3://, s3a:// or gs:// URI that this process can read.") from e


def _is_data(relative: str) -> bool:
    """False for Spark's and Hadoop's side files (a name or directory starting with ``_`` or ``.``)."""
    return not any(part.startswith(("_", ".")) for part in relative.split("/"))


def _data_files(fs: pafs.FileSystem, path: str, uri: str) -> List[str]:
    """The staged data files at ``path`` (itself a file, or a directory searched recursively), sorted."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{_WHO}: {uri!r} does not exist; expected the directory of Parquet files the "
                                f"training rows were staged in.")
    if info.type == pafs.FileType.File:
        return [path]
    base = path.rstrip("/") + "/"
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(f.path for f in found if f.type == pafs.FileType.File and _is_data(f.path[len(base):]))
    if not files:
        raise ValueError(f"{_WHO}: {uri!r} holds no Parquet file (only {sorted(f.base_name for f in found)[:5]}); "
                         f"expected the part files Spark's DataFrame writer stages there.")
    return files


# ----------------------------------------------------------------------------- Arrow -> numpy
def _kind(schema: pa.Schema, path: str) -> str:
    """``"float"`` or ``"binary"``: the layout of a staged file's features; TypeError for any other."""
    names = schema.names
    if FEATURES not in names or LABEL not in names:
        raise ValueError(f"{_WHO}: {path!r} has columns {names}; expected {FEATURES!r} and {LABEL!r}.")
    features, label = schema.field(FEATURES).type, schema.field(LABEL).type
    if not (pa.types.is_integer(label) or pa.types.is_floating(label)):
        raise TypeError(f"{_WHO}: column {LABEL!r} of {path!r} has type {label}; expected double (the class index).")
    if (pa.types.is_list(features) or pa.types.is_large_list(features)) and pa.types.is_floating(features.value_type):
        return "float"
    if pa.types.is_binary(features) or pa.types.is_large_binary(features):
        return "binary"
    raise TypeError(f"{_WHO}: column {FEATURES!r} of {path!r} has type {features}; expected list<float> (flat "
                    f"features) or binary (uint8 image pixels).")


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """A column of one row group as one Arrow array."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _check_sizes(offsets: np.ndarray, size: int, piece: Piece, unit: str, shape: Tuple[int, ...]) -> None:
    """Raise a ValueError naming the file and row unless every row holds ``size`` values."""
    lengths = np.diff(offsets)
    bad = np.flatnonzero(lengths != size)
    if bad.size:
        row = int(bad[0])
        raise ValueError(f"{_WHO}: row {row} of row group {piece.row_group} in {piece.path!r} has {int(lengths[row])} "
                         f"{unit} in column {FEATURES!r}; expected {size} (feature_shape {list(shape)}) in every row "
                         f"({bad.size} of {lengths.size} rows in this row group differ). Stage rows of one size.")


def _float_rows(arr: pa.Array, piece: Piece, shape: Tuple[int, ...]) -> np.ndarray:
    """list<float> rows as float32 ``(n, *shape)``: the flat values buffer reshaped."""
    offsets = arr.offsets.to_numpy()  # respects a sliced array's offset; .values does not
    _check_sizes(offsets, math.prod(shape), piece, "values", shape)
    values = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if values.null_count:
        raise ValueError(f"{_WHO}: row group {piece.row_group} in {piece.path!r} has {values.null_count} null "
                         f"values inside column {FEATURES!r}; staged features must be complete.")
    flat = values.to_numpy(zero_copy_only=True)
    return flat.astype(np.float32, copy=False).reshape((len(arr), *shape))


def _binary_rows(arr: pa.Array, piece: Piece, shape: Tuple[int, ...]) -> np.ndarray:
    """binary rows as uint8 ``(n, *shape)``: the data buffer read through the offsets."""
    _, offset_buf, data_buf = arr.buffers()
    wide = pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(offset_buf, dtype=np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]
    _check_sizes(offsets, math.prod(shape), piece, "bytes", shape)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    return data[offsets[0]:offsets[-1]].reshape((len(arr), *shape))


def _check_no_nulls(arr: pa.Array, column: str, piece: Piece) -> None:
    """Raise a ValueError naming the first null row of ``column``."""
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{_WHO}: row {row} of row group {piece.row_group} in {piece.path!r} has a null {column!r} "
                         f"({arr.null_count} nulls in this row group); staged rows must be complete.")


# ----------------------------------------------------------------------------- checks
def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{_WHO}: {name!r} must be an int; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{_WHO}: {name!r} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_shape(shape: Any) -> Tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise TypeError(f"{_WHO}: 'feature_shape' must be a sequence of ints, e.g. (64,) or (28, 28, 1); "
                        f"got {shape!r}.")
    dims = list(shape)
    if not dims or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"{_WHO}: 'feature_shape' must be a non-empty sequence of ints; got {shape!r}.")
    if any(d < 1 for d in dims):
        raise ValueError(f"{_WHO}: 'feature_shape' must hold ints >= 1; got {dims!r}.")
    return tuple(int(d) for d in dims)


def _rows_out(held: int, shuffle_rows: int, batch_size: int) -> int:
    """Rows to emit from ``held`` mixed rows: whole batches, keeping at most ``max(shuffle_rows, batch_size - 1)`` back."""
    over = held - shuffle_rows
    if over <= 0:
        return 0
    return min(-(-over // batch_size), held // batch_size) * batch_size


# ----------------------------------------------------------------------------- staged rows
class StagedRows:
    """The training rows Spark staged as Parquet, read by a task one row group at a time.

    Opening reads only the Parquet footers (row counts per row group, schemas); :meth:`batches`
    streams one epoch. Rows pass through a shuffle buffer of ``shuffle_rows`` rows as in tf.data's
    ``shuffle``, vectorised per row group: the buffer and the next row group are permuted together
    with the epoch's random generator, whole batches are emitted from the front and the rest is kept
    as the buffer; the last, partial batch comes at the end. So every row appears exactly once per
    epoch, in ``ceil(rows / batch_size)`` batches.

    Memory: at most ``max(shuffle_rows, batch_size - 1)`` buffered rows plus one row group are held
    (:attr:`max_rows_held` records the most in the last epoch; numpy's copies double that for the
    moment a row group is mixed in), whatever the size of the data.

    Parameters
    ----------
    uri : str
        The staging directory (or one Parquet file): a local path or a ``file://``, ``hdfs://``,
        ``s3://``, ``s3a://`` or ``gs://`` URI. Files and directories whose names start with ``_``
        or ``.`` are skipped.
    feature_shape : sequence of int
        The shape of one row's features, e.g. ``(64,)`` for flat vectors or ``(28, 28, 1)`` for
        images (height, width, channels); each row holds ``prod(feature_shape)`` values or bytes.

    Attributes
    ----------
    uri : str
        The location as given.
    feature_shape : tuple of int
    kind : {"float", "binary"}
        The features' layout: ``list<float>`` rows (batches of float32) or ``binary`` pixels (uint8).
    dtype : numpy.dtype
        The dtype of the batches' features: float32 or uint8.
    files : list of str
        The data files (paths in the file system), sorted.
    pieces : list of Piece
        Every non-empty row group: ``(path, row_group, rows)``.
    rows : int
        The number of staged rows (from the footers).
    largest_row_group : int
        The rows of the largest row group.
    max_rows_held : int
        The most rows held at once (buffer plus the row group being mixed in) during the last
        epoch read to its end; 0 before any.

    Raises
    ------
    FileNotFoundError
        When ``uri`` does not exist (the message names it).
    ValueError
        When ``uri`` cannot be opened, holds no Parquet file or no row, or a file lacks the
        ``features`` / ``label`` columns (each message names the URI or file).
    TypeError
        For a column type outside the staged layout, or a ``feature_shape`` that is not ints.

    Examples
    --------
    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> d = tempfile.mkdtemp()
    >>> table = pa.table({"features": pa.array([[float(i), 1.0] for i in range(5)], pa.list_(pa.float32())),
    ...                   "label": pa.array([0.0, 1.0, 0.0, 1.0, 0.0])})
    >>> pq.write_table(table, f"{d}/part-0.parquet", row_group_size=2)
    >>> staged = StagedRows(d, feature_shape=(2,))
    >>> staged.rows, len(staged.pieces), staged.kind
    (5, 3, 'float')
    >>> [x.shape for x, y in staged.batches(0, seed=1, batch_size=2, shuffle_rows=2)]
    [(2, 2), (2, 2), (1, 2)]

    .. versionadded:: 0.3.0
    """

    def __init__(self, uri: str, feature_shape: Sequence[int]) -> None:
        self.feature_shape = _check_shape(feature_shape)
        self.uri = uri
        self._fs, path = filesystem(uri)
        self.files = _data_files(self._fs, path, uri)
        self._meta: Dict[str, pq.FileMetaData] = {}
        kinds = {}
        for file in self.files:
            try:
                with self._fs.open_input_file(file) as f:
                    parquet = pq.ParquetFile(f)
                    self._meta[file], schema = parquet.metadata, parquet.schema_arrow
            except (pa.ArrowException, OSError) as e:
                raise ValueError(f"{_WHO}: cannot read {file!r} in {uri!r} as Parquet: {e}.") from e
            kinds[file] = _kind(schema, file)
        if len(set(kinds.values())) > 1:
            raise TypeError(f"{_WHO}: the files in {uri!r} mix feature layouts: {kinds}; expected one.")
        self.kind: str = kinds[self.files[0]]
        self.dtype = _DTYPES[self.kind]
        self.pieces = [Piece(file, g, meta.row_group(g).num_rows)
                       for file, meta in self._meta.items() for g in range(meta.num_row_groups)
                       if meta.row_group(g).num_rows]
        self.rows = sum(p.rows for p in self.pieces)
        if not self.rows:
            raise ValueError(f"{_WHO}: {uri!r} holds {len(self.files)} Parquet files but no rows; stage at least "
                             f"one training row.")
        self.largest_row_group = max(p.rows for p in self.pieces)
        self.max_rows_held = 0

    def __repr__(self) -> str:
        return (f"StagedRows({self.uri!r}, feature_shape={self.feature_shape}, kind={self.kind!r}, rows={self.rows}, "
                f"files={len(self.files)}, pieces={len(self.pieces)})")

    def steps(self, batch_size: int) -> int:
        """Batches per epoch, ``ceil(rows / batch_size)``: Keras ``fit``'s ``steps_per_epoch`` for :func:`dataset`."""
        return -(-self.rows // _check_int("batch_size", batch_size, 1))

    def read(self, piece: Piece) -> Tuple[np.ndarray, np.ndarray]:
        """One row group's features and labels, ``(x, y)``, in file order.

        Reads only the ``features`` and ``label`` columns of that row group. ``x`` is float32 or
        uint8 ``(n, *feature_shape)`` (it may be a read-only view of Arrow's buffers), ``y`` float64 ``(n,)``.

        Raises
        ------
        ValueError
            When a row's features have the wrong length, or a feature or label is null; the message
            names the file, row group and row, and what was expected.

        Examples
        --------
        >>> staged = StagedRows("/tmp/staged", feature_shape=(64,))  # doctest: +SKIP
        >>> x, y = staged.read(staged.pieces[0])  # doctest: +SKIP

        .. versionadded:: 0.3.0
        """
        with self._fs.open_input_file(piece.path) as f:
            table = pq.ParquetFile(f, metadata=self._meta[piece.path]).read_row_group(piece.row_group,
                                                                                       columns=[FEATURES, LABEL])
        features, labels = _one_array(table.column(FEATURES)), _one_array(table.column(LABEL))
        _check_no_nulls(features, FEATURES, piece)
        _check_no_nulls(labels, LABEL, piece)
        rows = _float_rows if self.kind == "float" else _binary_rows
        x = rows(features, piece, self.feature_shape)
        return x, labels.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)

    def batches(self, epoch: int, *, seed: int, batch_size: int, shuffle_rows: int
                ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """One epoch of shuffled ``(x, y)`` batches.

        The row groups come in an order drawn from ``numpy.random.default_rng([seed, epoch])``, and
        the rows pass through a shuffle buffer of ``shuffle_rows`` rows mixed with the same
        generator: every epoch has its own order, and the same ``seed`` repeats the same sequence
        of orders. All batches hold ``batch_size`` rows but the last; every row comes exactly once.

        Parameters
        ----------
        epoch : int
            The epoch (>= 0), part of the seed of its order.
        seed : int
            The run's seed (>= 0).
        batch_size : int
            Rows per batch (>= 1).
        shuffle_rows : int
            Rows kept back in the shuffle buffer (>= 0; 0 shuffles within each row group only).
            Larger mixes better across row groups and holds more memory.

        Returns
        -------
        iterator of (numpy.ndarray, numpy.ndarray)
            ``x``: float32 (list<float> layout) or uint8 (binary) ``(n, *feature_shape)``;
            ``y``: float64 ``(n,)``.

        Raises
        ------
        ValueError, TypeError
            For out-of-range or mistyped arguments (at the call), and, while iterating, for a row
            group whose rows do not fit the layout (see :meth:`read`).

        Examples
        --------
        >>> staged = StagedRows("/tmp/staged", feature_shape=(64,))  # doctest: +SKIP
        >>> for x, y in staged.batches(0, seed=7, batch_size=128, shuffle_rows=4096):  # doctest: +SKIP
        ...     model.train_on_batch(x, y)

        .. versionadded:: 0.3.0
        """
        chunks = self.chunks(epoch, seed=seed, batch_size=batch_size, shuffle_rows=shuffle_rows)
        return ((x[lo:lo + batch_size], y[lo:lo + batch_size]) for x, y in chunks for lo in range(0, len(x), batch_size))

    def chunks(self, epoch: int, *, seed: int, batch_size: int, shuffle_rows: int
               ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """One epoch as a few large ``(x, y)`` chunks: :meth:`batches` before it is cut into batches.

        One chunk per row group read (the whole batches it lets out of the shuffle buffer, so its
        length is a multiple of ``batch_size``), then the buffer's rest; chunks with no row are
        skipped. Cutting every chunk into ``batch_size`` rows from its start gives exactly the
        batches of :meth:`batches`, which is how :func:`dataset` hands an epoch to TensorFlow: a
        few hand-offs from Python per epoch instead of one per batch. Same arguments and errors
        as :meth:`batches`.

        .. versionadded:: 0.3.0
        """
        epoch = _check_int("epoch", epoch, 0)
        rng = np.random.default_rng([_check_int("seed", seed, 0), epoch])
        return self._epoch(rng, _check_int("batch_size", batch_size, 1), _check_int("shuffle_rows", shuffle_rows, 0))

    def _epoch(self, rng: np.random.Generator, batch_size: int, shuffle_rows: int
               ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """The chunks of one epoch drawn with ``rng`` (see :meth:`chunks`)."""
        kept_x = np.empty((0, *self.feature_shape), self.dtype)
        kept_y = np.empty(0, np.float64)
        most = 0
        for i in rng.permutation(len(self.pieces)):
            x, y = self.read(self.pieces[i])
            x, y = np.concatenate([kept_x, x]), np.concatenate([kept_y, y])  # copies: Arrow's buffers go now
            del kept_x, kept_y
            most = max(most, len(x))
            order = rng.permutation(len(x))
            out = _rows_out(len(x), shuffle_rows, batch_size)
            # two gathers, not one permuted array sliced: a kept view would pin the whole array
            sent_x, sent_y = x[order[:out]], y[order[:out]]
            kept_x, kept_y = x[order[out:]], y[order[out:]]
            del x, y
            if out:
                yield sent_x, sent_y
            del sent_x, sent_y
        if len(kept_x):  # the buffer, already in random order
            yield kept_x, kept_y
        self.max_rows_held = most


# ----------------------------------------------------------------------------- tf.data
def dataset(rows: StagedRows, *, seed: int, batch_size: int, shuffle_rows: int, epochs: int, first_epoch: int = 0,
            prefetch: int = 2, transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y)`` batches streaming ``epochs`` epochs of staged rows.

    The epochs run back to back: ``rows.batches(first_epoch)``, then
    ``rows.batches(first_epoch + 1)``, ... (each epoch its own order), handed to TensorFlow as
    :meth:`StagedRows.chunks` (a helper thread, :func:`sparkdl_lite.core.runtime.prefetch`, reads,
    mixes and transforms the next chunk while TensorFlow cuts the last one into batches and trains
    on them). Give Keras
    ``fit(ds, epochs=first_epoch + epochs, initial_epoch=first_epoch, steps_per_epoch=rows.steps(batch_size))``:
    with ``steps_per_epoch`` set and the dataset's length unknown, Keras keeps one iterator across
    its epochs, so each Keras epoch reads exactly one epoch of the stream, and none is read after
    the last (without ``steps_per_epoch`` the first Keras epoch would read them all). Memory: the
    shuffle buffer and the row group being mixed in, one finished chunk waiting in the helper's
    queue, the chunk being cut and ``prefetch`` batches (a chunk is at most one row group plus the
    buffer): bounded, whatever the size of the data.

    Parameters
    ----------
    rows : StagedRows
        The staged training rows.
    seed, batch_size, shuffle_rows
        As for :meth:`StagedRows.batches`.
    epochs : int
        Epochs to stream (>= 1).
    first_epoch : int
        The first epoch's number (>= 0), e.g. a warm start's ``initial_epoch``: a run continued
        from epoch 3 reads the orders of epochs 3, 4, ... as an unbroken run would.
    prefetch : int
        Batches made ready ahead of the training step (>= 0).
    transform : callable, optional
        A numpy function applied to each ``x`` batch in the generator (scaling, casting,
        reshaping), returning as many rows. It is called once on a one-row batch of zeros to learn
        the output's dtype and shape.

    Returns
    -------
    tf.data.Dataset
        Elements ``(x, y)``: ``x`` the (transformed) features with an unknown batch dimension,
        ``y`` float64 labels; unknown cardinality (``epochs * rows.steps(batch_size)`` batches).

    Raises
    ------
    ValueError, TypeError
        For out-of-range or mistyped arguments; while iterating, for rows that do not fit the
        layout or a ``transform`` that changes the number of rows (TensorFlow wraps these).
    ImportError
        When TensorFlow is missing.

    Examples
    --------
    >>> staged = StagedRows("s3a://bucket/staged", feature_shape=(784,))  # doctest: +SKIP
    >>> ds = dataset(staged, seed=0, batch_size=128, shuffle_rows=10_000, epochs=5,
    ...              transform=lambda x: x / np.float32(255))  # doctest: +SKIP
    >>> model.fit(ds, epochs=5, steps_per_epoch=staged.steps(128))  # doctest: +SKIP

    .. versionadded:: 0.3.0
    """
    for name, value, minimum in (("seed", seed, 0), ("batch_size", batch_size, 1), ("shuffle_rows", shuffle_rows, 0),
                                 ("epochs", epochs, 1), ("first_epoch", first_epoch, 0), ("prefetch", prefetch, 0)):
        _check_int(name, value, minimum)
    if transform is not None and not callable(transform):
        raise TypeError(f"{_WHO}: 'transform' must be a callable on numpy batches or None; got {transform!r}.")
    from sparkdl_lite.core import runtime  # TF only when a dataset is built
    from sparkdl_lite.core.tfimport import import_tensorflow

    tf = import_tensorflow()
    apply = _transformed(transform)
    probe = apply(np.zeros((1, *rows.feature_shape), rows.dtype))  # the output's dtype and shape, derived not declared
    signature = (tf.TensorSpec((None, *probe.shape[1:]), tf.as_dtype(probe.dtype)), tf.TensorSpec((None,), tf.float64))

    def epochs_of_chunks() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for epoch in range(first_epoch, first_epoch + epochs):
            yield from rows.chunks(epoch, seed=seed, batch_size=batch_size, shuffle_rows=shuffle_rows)

    def read_ahead() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        # a helper thread reads, mixes and transforms the next chunk (pyarrow's reads and numpy's copies
        # release the GIL for most of their time); TensorFlow's call into Python only takes a finished one
        _raise_malloc_thresholds()  # called by TF after from_generator's kernel lowered them (see there)
        return runtime.prefetch(epochs_of_chunks(), lambda chunk: (apply(chunk[0]), chunk[1]))

    def cut(x: Any, y: Any) -> Any:  # a chunk into batches, in TensorFlow: no Python per batch
        starts = tf.data.Dataset.range(0, tf.shape(x, out_type=tf.int64)[0], batch_size)
        return starts.map(lambda lo: (x[lo:lo + batch_size], y[lo:lo + batch_size]))

    options = tf.data.Options()
    options.autotune.enabled = False  # as in training.train: the autotuner's thread holds up each iterator's end
    chunks = tf.data.Dataset.from_generator(read_ahead, output_signature=signature)
    return chunks.with_options(options).flat_map(cut).prefetch(prefetch)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (its dynamic threshold's ceiling on 64-bit)


def _raise_malloc_thresholds() -> None:
    """Undo what ``tf.data.Dataset.from_generator`` does to glibc's malloc, for the whole process.

    Its kernel (TF 2.21 at least: ``ApplyPython311MemoryPatch``, against a Python 3.11 leak) calls
    ``mallopt(M_MMAP_THRESHOLD, 128 KiB)``: a fixed threshold, so from then on every allocation of
    128 KiB or more (a training step's weight gradients and optimizer temporaries, a batch) is a fresh
    ``mmap``, page-faulted and zeroed, then ``munmap``-ed, at every step. Measured: ~880 page faults
    per step, epochs 1.3x those of in-memory arrays, here and in any later training of the same
    (Spark worker) process. This sets the thresholds glibc's own dynamic tuning would reach
    (mmap above 32 MiB, trim above 64 MiB); it is called from the generator, after that kernel.
    A no-op where there is no glibc ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not the allocator TF tuned
        return
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD)


def _transformed(transform: Optional[Callable[[np.ndarray], np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """``transform`` checked to keep the batch's row count (identity when None)."""
    if transform is None:
        return lambda x: x

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.asarray(transform(x))
        if out.ndim == 0 or len(out) != len(x):
            raise ValueError(f"{_WHO}: 'transform' returned shape {out.shape} for a batch of {len(x)} rows; it must "
                             f"return one row per input row.")
        return out

    return apply
