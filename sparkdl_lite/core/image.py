"""Spark image structs <-> numpy batches, and in-graph image preprocessing.

Spark's image source (``spark.read.format("image")``) yields a struct
``origin, height, width, nChannels, mode, data`` with ``data`` the row-major pixel bytes in OpenCV
order: BGR for 3 channels (mode 16), BGRA for 4 (mode 24), gray for 1 (mode 0). Invalid files
give ``height == -1`` and empty data. This module turns an Arrow batch of such structs into
uint8 numpy arrays without per-row Python on the common path (one size per batch: a zero-copy
view of the Arrow data buffer), and builds the TF preprocessing (cast, channel order, resize,
scale) fused in front of a graph. Core module: numpy, Pillow and TensorFlow, no pyspark (reading
files through Spark, ``read_images`` and ``images_from_numpy``, lives in :mod:`sparkdl_lite.images`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CHANNEL_ORDERS", "MODE_BY_CHANNELS", "IMAGE_FIELDS", "ImageBatch", "decode_batch", "encode_images",
           "make_preprocess", "decode_file", "EMPTY_FILE_ERROR", "without_alpha", "shape_without_alpha"]

CHANNEL_ORDERS = ("RGB", "BGR", "L")
MODE_BY_CHANNELS = {1: 0, 3: 16, 4: 24}  # OpenCV CV_8UC1 / CV_8UC3 / CV_8UC4
IMAGE_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")


@dataclass
class ImageBatch:
    """One Arrow batch of image structs, decoded.

    ``groups`` maps ``(height, width, channels)`` to ``(row indices, uint8 array N x H x W x C)``;
    ``errors`` maps a row index to the reason it could not be decoded. ``origins`` (the rows'
    ``origin`` strings) is built from ``origin_column`` on first use: the hot path never needs it.
    """

    size: int
    origin_column: Any = None
    groups: Dict[Tuple[int, int, int], Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    errors: Dict[int, str] = field(default_factory=dict)
    _origins: Optional[List[Optional[str]]] = field(default=None, repr=False, compare=False)

    @property
    def origins(self) -> List[Optional[str]]:
        if self._origins is None:
            col = self.origin_column
            self._origins = col.to_pylist() if col is not None else [None] * self.size
        return self._origins

    def origin(self, i: int) -> Optional[str]:
        """The ``origin`` of row ``i`` (without converting the whole column)."""
        if self._origins is not None or self.origin_column is None:
            return self.origins[i]
        return self.origin_column[i].as_py()


def decode_batch(arr: Any) -> ImageBatch:
    """Decode a ``pyarrow.StructArray`` of Spark image structs into uint8 arrays.

    Rows that are null, invalid (``height == -1``), of an unsupported channel count, or whose byte
    count does not match ``height * width * nChannels`` land in ``errors`` with the reason.
    """
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    batch = ImageBatch(size=n, origin_column=arr.field("origin"))
    if n == 0:
        return batch
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    h = _int_field(arr, "height")
    w = _int_field(arr, "width")
    c = _int_field(arr, "nChannels")
    data = arr.field("data")
    if data.offset != 0 or arr.offset != 0:
        data = pa.concat_arrays([data])  # a sliced array: re-base its offsets
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32, count=len(data) + 1, offset=data.offset * 4)
    values = data.buffers()[2]
    buf = np.frombuffer(values, dtype=np.uint8) if values is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    data_valid = ~np.asarray(data.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ok = valid & data_valid & (h > 0) & (w > 0) & np.isin(c, (1, 3, 4)) & (lengths == h * w * np.maximum(c, 0))
    for i in np.flatnonzero(~ok):
        batch.errors[int(i)] = _why(bool(valid[i]) and bool(data_valid[i]), int(h[i]), int(w[i]), int(c[i]), int(lengths[i]))
    good = np.flatnonzero(ok)
    if len(good) == 0:
        return batch
    shapes = np.stack([h[good], w[good], c[good]], axis=1)
    first = shapes[0]
    if (shapes == first).all():
        hh, ww, cc = (int(v) for v in first)
        per = hh * ww * cc
        starts = offsets[good]
        if len(good) == n and offsets[-1] - offsets[0] == n * per:
            # Common case: every row valid and the same size -> zero-copy view of the Arrow buffer.
            images = buf[offsets[0]:offsets[-1]].reshape(n, hh, ww, cc)
        else:
            images = np.stack([buf[s:s + per] for s in starts]).reshape(len(good), hh, ww, cc)
        batch.groups[(hh, ww, cc)] = (good, images)
        return batch
    keys = [tuple(int(v) for v in s) for s in shapes]
    for key in sorted(set(keys)):
        rows = good[[k == key for k in keys]]
        per = key[0] * key[1] * key[2]
        images = np.stack([buf[offsets[r]:offsets[r] + per] for r in rows]).reshape(len(rows), *key)
        batch.groups[key] = (rows, images)
    return batch


def _int_field(arr: Any, name: str) -> np.ndarray:
    col = arr.field(name)
    return np.asarray(col.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _why(present: bool, h: int, w: int, c: int, length: int) -> str:
    if not present:
        return "the image is null"
    if h == -1 or (h <= 0 and length == 0):
        return "the image is invalid (height -1, no data): the image source could not decode the file"
    if h <= 0 or w <= 0:
        return f"the image has height {h} and width {w}; both must be >= 1"
    if c not in (1, 3, 4):
        return f"the image has nChannels={c}; expected 1 (gray), 3 (BGR) or 4 (BGRA)"
    return f"the image data has {length} bytes; height*width*nChannels = {h}*{w}*{c} = {h * w * c}"


def without_alpha(x: np.ndarray) -> np.ndarray:
    """Image rows ``(N, H, W, C)`` without an alpha channel: 4 channels keep the first three (as
    TFImageTransformer does when scoring); other arrays unchanged."""
    return x[..., :3] if x.ndim == 4 and x.shape[-1] == 4 else x


def shape_without_alpha(shape: Sequence[int]) -> Tuple[int, ...]:
    """An image row's shape ``(H, W, C)`` after :func:`without_alpha`."""
    shape = tuple(int(d) for d in shape)
    return shape[:-1] + (3,) if len(shape) == 3 and shape[-1] == 4 else shape


def make_preprocess(*, src_channels: int, channel_order: str, target_hw: Optional[Tuple[int, int]],
                    target_channels: int, scale: float, offset: float, dtype: str = "float32"):
    """A TF function ``uint8 N x H x W x src_channels -> (graph input,)``.

    Steps, in order: cast to float32; convert channels from OpenCV order (gray / BGR / BGRA) to
    ``channel_order`` (gray -> RGB/BGR repeats the gray plane; BGRA drops alpha; colour -> L uses
    ITU-R 601 luma weights, as ``tf.image.rgb_to_grayscale``); bilinear resize to ``target_hw``
    when given (``tf.image.resize``); then ``x * scale + offset``; finally cast to ``dtype``.
    """
    import tensorflow as tf

    tf_dtype = tf.as_dtype(dtype)

    def preprocess(x):
        x = tf.cast(x, tf.float32)
        if src_channels == 4:
            x = x[..., :3]
        if channel_order == "L":
            if src_channels != 1:
                x = tf.image.rgb_to_grayscale(x[..., ::-1])  # BGR -> RGB -> luma
        else:
            if src_channels == 1:
                x = tf.repeat(x, 3, axis=-1)
            elif channel_order == "RGB":
                x = x[..., ::-1]
        if target_hw is not None:
            x = tf.image.resize(x, target_hw)
        if scale != 1.0:
            x = x * scale
        if offset != 0.0:
            x = x + offset
        if target_channels not in (None, -1) and x.shape[-1] != target_channels:
            raise ValueError(f"preprocess produced {x.shape[-1]} channels for a graph that takes {target_channels}")
        return (tf.cast(x, tf_dtype),)

    return preprocess


def encode_images(array: np.ndarray, channel_order: str = "BGR") -> Tuple[List[bytes], int, int, int, int]:
    """uint8 N x H x W [x C] in ``channel_order`` -> (row bytes in OpenCV order, h, w, c, mode)."""
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"images: expected an array of shape (N, H, W) or (N, H, W, C); got shape {arr.shape}.")
    c = arr.shape[-1]
    if c not in MODE_BY_CHANNELS:
        raise ValueError(f"images: expected 1, 3 or 4 channels; got {c} (shape {arr.shape}).")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and (np.nanmin(arr) < 0 or np.nanmax(arr) > 255):
            raise ValueError(f"images: float pixel values must lie in [0, 255]; got range [{np.nanmin(arr)}, {np.nanmax(arr)}].")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if c >= 3 and channel_order.upper() == "RGB":
        arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=-1)  # RGB(A) -> BGR(A)
    arr = np.ascontiguousarray(arr)
    n, h, w = arr.shape[:3]
    return [arr[i].tobytes() for i in range(n)], h, w, c, MODE_BY_CHANNELS[c]


EMPTY_FILE_ERROR = "empty file (0 bytes)"


def decode_file(content: bytes) -> Tuple[int, int, int, int, bytes, Optional[str]]:
    """Decode one image file with Pillow into Spark's layout: ``(h, w, c, mode, BGR(A) bytes, error)``.

    16-bit images keep their high byte (``value >> 8``), unlike Spark's image source which keeps
    only the low byte of 16-bit gray. Palette, CMYK and other modes become RGB (RGBA when the
    image has transparency). A file that cannot be decoded gives ``(-1, -1, -1, -1, b"", reason)``.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    if not content:
        return -1, -1, -1, -1, b"", EMPTY_FILE_ERROR
    try:
        with Image.open(io.BytesIO(content)) as im:
            im.load()
            fmt = im.format
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.uint32)
                arr = (arr >> 8).astype(np.uint8) if arr.max(initial=0) > 255 or im.mode.startswith("I;16") else arr.astype(np.uint8)
            elif im.mode in ("L", "RGB", "RGBA"):
                arr = np.asarray(im, dtype=np.uint8)
            elif im.mode == "1":
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
            else:
                has_alpha = "A" in im.mode or "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return -1, -1, -1, -1, b"", f"cannot decode the file: {exc}"
    if arr.ndim == 2:
        arr = arr[..., None]
    c = arr.shape[-1]
    if c >= 3:
        arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=-1)  # RGB(A) -> BGR(A)
    del fmt
    return arr.shape[0], arr.shape[1], c, MODE_BY_CHANNELS[c], np.ascontiguousarray(arr).tobytes(), None
