"""Images through Spark: ``read_images`` and ``images_from_numpy`` (the Spark side of the image codec).

Spark's image source, or Pillow inside an Arrow UDF, reads files into columns of image structs
(``origin, height, width, nChannels, mode, data``, OpenCV BGR order). The pixel codec itself is
:mod:`sparkdl_lite.core.image`; listing files goes through :mod:`sparkdl_lite.runner.engine`.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from sparkdl_lite.core.image import decode_file, encode_images

__all__ = ["image_schema", "is_image_struct", "images_from_numpy", "read_images", "empty_files"]


def is_image_struct(dt: Any) -> bool:
    """True for a struct type with the image fields (``height, width, nChannels, mode, data``)."""
    from pyspark.sql.types import StructType

    if not isinstance(dt, StructType):
        return False
    return {"height", "width", "nChannels", "mode", "data"} <= set(dt.fieldNames())


def image_schema():
    """The Spark SQL type of an image struct (as Spark's image source yields)."""
    from pyspark.ml.image import ImageSchema

    return ImageSchema.columnSchema


def images_from_numpy(spark: Any, array: np.ndarray, labels: Optional[Sequence[Any]] = None, *,
                      channel_order: str = "RGB", origin_prefix: str = "memory://", column: str = "image",
                      label_column: str = "label", num_partitions: Optional[int] = None) -> Any:
    """A DataFrame of image structs from a uint8 array ``N x H x W [x C]``.

    Pixels are taken as ``channel_order`` (RGB by default, as numpy image code has them) and stored
    in Spark's OpenCV order (BGR). ``labels`` (optional, length N) adds a ``label`` column.

    Examples
    --------
    >>> df = images_from_numpy(spark, np.zeros((2, 4, 4, 3), np.uint8), labels=[0, 1])  # doctest: +SKIP
    >>> df.columns  # doctest: +SKIP
    ['image', 'label']

    .. versionadded:: 0.1.0
    """
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    rows_bytes, h, w, c, mode = encode_images(array, channel_order)
    n = len(rows_bytes)
    if labels is not None and len(labels) != n:
        raise ValueError(f"images_from_numpy: labels has {len(labels)} entries for {n} images.")
    fields = [StructField(column, image_schema(), True)]
    if labels is not None:
        lab = np.asarray(labels)
        integral = np.issubdtype(lab.dtype, np.integer)
        fields.append(StructField(label_column, LongType() if integral else DoubleType(), True))
    rows = []
    for i, data in enumerate(rows_bytes):
        img = (f"{origin_prefix}{i}", h, w, c, mode, bytearray(data))
        rows.append((img, (int(lab[i]) if integral else float(lab[i]))) if labels is not None else (img,))
    df = spark.createDataFrame(rows, StructType(fields))
    if num_partitions:
        df = df.repartition(num_partitions)
    return df


def read_images(spark: Any, path: str, *, recursive: bool = False, drop_invalid: bool = False,
                sample_ratio: float = 1.0, num_partitions: Optional[int] = None, column: str = "image",
                decoder: str = "spark", keep_empty: bool = True) -> Any:
    """Read image files (PNG, JPEG, BMP, GIF...) into a column of Spark image structs.

    ``decoder="spark"`` (default) uses Spark's image source (``spark.read.format("image")``):
    invalid files stay as rows with ``height == -1`` unless ``drop_invalid``, and a 16-bit PNG
    keeps only the low byte of each gray pixel.
    ``decoder="pillow"`` reads the files with Spark's ``binaryFile`` source and decodes them with
    Pillow on the executors: 16-bit images keep their high byte, WebP and TIFF work, and a
    ``<column>_error`` column says why a file could not be decoded.
    ``path`` may be a directory, a glob, or any Hadoop file system URI.

    Spark's file sources never read 0-byte files. So that no file disappears silently, the driver
    lists them (same path, same ``recursive``; hidden ``.``/``_`` names excluded as Spark does) and,
    with ``keep_empty`` (default) and neither ``drop_invalid`` nor sampling, adds each as an invalid
    row (``height == -1``, empty data; ``<column>_error`` = ``"empty file (0 bytes)"`` with the
    Pillow decoder). Either way a warning names them. ``keep_empty=False`` skips that listing
    (one more file-system listing on the driver: worth skipping for millions of remote files).

    .. versionadded:: 0.1.0
    """
    if decoder not in ("spark", "pillow"):
        raise ValueError(f"read_images: decoder must be 'spark' or 'pillow'; got {decoder!r}.")
    if decoder == "pillow":
        df = _read_with_pillow(spark, path, recursive=recursive, column=column)
        if drop_invalid:
            df = df.filter(f"{column}.height >= 0")
        if sample_ratio != 1.0:
            df = df.sample(fraction=sample_ratio, seed=0)
    else:
        reader = spark.read.format("image").option("dropInvalid", drop_invalid)
        if recursive:
            reader = reader.option("recursiveFileLookup", "true")
        if sample_ratio != 1.0:
            reader = reader.option("sampleRatio", sample_ratio)
        df = reader.load(path)
        if column != "image":
            df = df.withColumnRenamed("image", column)
    if keep_empty:
        df = _with_empty_files(spark, df, path, recursive=recursive, column=column,
                               add_rows=not drop_invalid and sample_ratio == 1.0, error_col=decoder == "pillow")
    if num_partitions:
        df = df.repartition(num_partitions)
    return df


def empty_files(spark: Any, path: str, *, recursive: bool = False) -> List[str]:
    """URIs of the 0-byte files that ``path`` (a file, directory or glob) names, as Spark lists them.

    Directories are listed one level deep (all levels with ``recursive``); names starting with
    ``.`` or ``_`` are skipped, as Spark's file sources skip them. The listing is the engine's
    (the Hadoop file system on a classic session, Spark's ``binaryFile`` source on Connect).
    """
    from sparkdl_lite.runner import engine

    return engine.empty_files(spark, path, recursive=recursive)


def _with_empty_files(spark: Any, df: Any, path: str, *, recursive: bool, column: str, add_rows: bool,
                      error_col: bool) -> Any:
    import logging

    empties = empty_files(spark, path, recursive=recursive)
    if not empties:
        return df
    shown = ", ".join(empties[:5]) + (f" and {len(empties) - 5} more" if len(empties) > 5 else "")
    logging.getLogger("sparkdl_lite").warning(
        "read_images: %d 0-byte file(s) under %s, %s: %s", len(empties), path,
        "kept as invalid rows (height -1)" if add_rows else "not in the DataFrame", shown)
    if not add_rows:
        return df
    from pyspark.sql.types import StringType, StructField, StructType

    fields = [StructField(column, image_schema(), True)]
    h, w, c, mode, data, error = decode_file(b"")  # the same invalid row the Pillow decoder gives an empty file
    rows = [((uri, h, w, c, mode, bytearray(data)),) for uri in empties]
    if error_col:
        fields.append(StructField(f"{column}_error", StringType(), True))
        rows = [r + (error,) for r in rows]
    extra = spark.createDataFrame(rows, StructType(fields))
    return df.unionByName(extra, allowMissingColumns=True)


def _read_with_pillow(spark: Any, path: str, *, recursive: bool, column: str) -> Any:
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StringType, StructField, StructType

    reader = spark.read.format("binaryFile")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    files = reader.load(path)
    out_type = StructType([StructField("image", image_schema(), True), StructField("error", StringType(), True)])

    @pandas_udf(out_type)
    def decode(paths, contents):  # type: ignore[no-untyped-def]
        import pandas as pd

        images, errors = [], []
        for origin, content in zip(paths, contents):
            h, w, c, mode, data, err = decode_file(bytes(content) if content is not None else b"")
            images.append({"origin": origin, "height": h, "width": w, "nChannels": c, "mode": mode, "data": data})
            errors.append(err)
        return pd.DataFrame({"image": images, "error": errors})

    del pa
    decoded = files.select(decode(F.col("path"), F.col("content")).alias("_d"))
    return decoded.select(F.col("_d.image").alias(column), F.col("_d.error").alias(f"{column}_error"))
