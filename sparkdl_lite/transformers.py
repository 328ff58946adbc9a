"""TFTransformer and TFImageTransformer: apply a frozen TF graph to DataFrame columns.

The graph bytes are shipped once per ``transform()`` through the engine (a broadcast on classic
Spark, a content-named artifact on Spark Connect); an iterator Arrow UDF loads them once per
Python worker (``runtime``), turns each Arrow batch into numpy arrays with no per-row Python on
the common path, runs the graph in ``batchSize`` slices and hands back Arrow arrays. Vector
outputs are made on the JVM (``array_to_vector``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkdl_lite.core import failpoint, runtime
from sparkdl_lite.core import image as img
from sparkdl_lite.images import image_schema, is_image_struct
from sparkdl_lite.params import HasBatchSize, HasGraph, HasOutputMode, check, to_str_dict
from sparkdl_lite.persistence import GraphStageReader, GraphStageWriter
from sparkdl_lite.runner import engine

__all__ = ["TFTransformer", "TFImageTransformer"]

_TMP = "__sparkdl_lite_out"
_SPARK_TYPES = {"float32": T.FloatType(), "float64": T.DoubleType(), "int32": T.IntegerType(),
                "int64": T.LongType(), "uint8": T.IntegerType(), "int8": T.IntegerType(),
                "int16": T.IntegerType(), "bool": T.BooleanType(), "float16": T.FloatType()}
_NUMPY_OUT = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
              "uint8": np.int32, "int8": np.int32, "int16": np.int32, "bool": np.bool_, "float16": np.float32}


def _list_array(values: np.ndarray, width: int, mask: Optional[np.ndarray], value_type: Any, n: Optional[int] = None):
    """Rows of ``width`` values each as an Arrow list array (zero-copy of ``values``); ``mask`` marks null rows."""

    if n is None:
        n = len(mask) if mask is not None else (values.size // max(width, 1) if width else 0)
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32) if width else np.zeros(n + 1, np.int32))
    flat = pa.array(values.reshape(-1), type=value_type)
    return pa.ListArray.from_arrays(offsets, flat, mask=None if mask is None else pa.array(mask))


# ============================================================================ TFTransformer
class _TFTransformerParams(HasBatchSize, HasOutputMode):
    inputMapping: "Param[Dict[str, str]]" = Param(
        Params._dummy(), "inputMapping",
        "Map of input column -> graph input tensor name, e.g. {'features': 'x:0'}.",
        typeConverter=to_str_dict)
    outputMapping: "Param[Dict[str, str]]" = Param(
        Params._dummy(), "outputMapping",
        "Map of graph output tensor name -> output column, e.g. {'y:0': 'prediction'}.",
        typeConverter=to_str_dict)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(batchSize=256, outputMode="vector")

    def getInputMapping(self) -> Dict[str, str]:
        return self.getOrDefault(self.inputMapping)

    def getOutputMapping(self) -> Dict[str, str]:
        return self.getOrDefault(self.outputMapping)


class TFTransformer(Transformer, _TFTransformerParams, HasGraph, MLReadable, MLWritable):
    """Apply a :class:`~sparkdl_lite.TFGraph` to vector or array columns.

    Each input column (Spark ML vector or ``array<numeric>``) feeds one graph input; flat rows are
    reshaped to the tensor's static shape (e.g. a 48-value array to ``4 x 4 x 3``). Each output
    tensor becomes one column, flattened per row, as a vector or ``array<float>`` (``outputMode``).

    Parameters
    ----------
    graph : TFGraph
        The frozen graph (model data, not a Param: it travels with ``copy()`` and ``save()``).
    inputMapping : dict
        ``{column: input tensor}``.
    outputMapping : dict
        ``{output tensor: column}``.
    batchSize : int, default 256
        Rows per graph call.
    outputMode : {"vector", "array"}, default "vector"

    Raises
    ------
    ValueError
        An unknown column or tensor, rows whose length does not fit the tensor, null rows.
    TypeError
        A column that is neither a vector nor a numeric array.

    Examples
    --------
    >>> import tensorflow as tf
    >>> g = TFGraph.from_function(lambda x: {"y": 2.0 * x}, [tf.TensorSpec([None, 2], tf.float32, name="x")])
    >>> df = spark.createDataFrame([([1.0, 2.0],)], ["a"])  # doctest: +SKIP
    >>> TFTransformer(graph=g, inputMapping={"a": "x"}, outputMapping={"y": "b"}).transform(df).head().b  # doctest: +SKIP
    DenseVector([2.0, 4.0])

    .. versionadded:: 0.1.0
    """

    @keyword_only
    def __init__(self, *, graph: Any = None, inputMapping: Optional[Dict[str, str]] = None,
                 outputMapping: Optional[Dict[str, str]] = None, batchSize: int = 256,
                 outputMode: str = "vector") -> None:
        super().__init__()
        kwargs = dict(self._input_kwargs)
        self.setGraph(kwargs.pop("graph", None))
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, inputMapping: Optional[Dict[str, str]] = None, outputMapping: Optional[Dict[str, str]] = None,
                  batchSize: int = 256, outputMode: str = "vector") -> "TFTransformer":
        return self._set(**self._input_kwargs)

    def setInputMapping(self, value: Dict[str, str]) -> "TFTransformer":
        return self._set(inputMapping=value)

    def setOutputMapping(self, value: Dict[str, str]) -> "TFTransformer":
        return self._set(outputMapping=value)

    def setBatchSize(self, value: int) -> "TFTransformer":
        return self._set(batchSize=value)

    def setOutputMode(self, value: str) -> "TFTransformer":
        return self._set(outputMode=value)

    # ------------------------------------------------------------------ validation
    def _validate(self, schema: T.StructType) -> Tuple[List[Tuple[str, str, Any]], List[Tuple[str, str, Any]]]:
        name = "TFTransformer"
        graph = self._require_graph()
        check(self.getBatchSize() >= 1, f"{name}: param 'batchSize' must be an int >= 1; got {self.getBatchSize()!r}.")
        check(self.getOutputMode() in ("vector", "array"),
              f"{name}: param 'outputMode' must be 'vector' or 'array'; got {self.getOutputMode()!r}.")
        if not self.isDefined(self.inputMapping) or not self.getInputMapping():
            raise ValueError(f"{name}: param 'inputMapping' must map at least one column to an input tensor. Graph inputs: {graph.input_names}.")
        if not self.isDefined(self.outputMapping) or not self.getOutputMapping():
            raise ValueError(f"{name}: param 'outputMapping' must map at least one output tensor to a column. Graph outputs: {graph.output_names}.")
        inputs = []
        for col, tensor in self.getInputMapping().items():
            if col not in schema.names:
                raise ValueError(f"{name}: input column {col!r} is not in the DataFrame. Available columns: {schema.names}.")
            full = graph.check_input(tensor, name)
            dt = schema[col].dataType
            numeric = (T.FloatType, T.DoubleType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)
            if not (isinstance(dt, VectorUDT) or (isinstance(dt, T.ArrayType) and isinstance(dt.elementType, numeric))):
                raise TypeError(f"{name}: input column {col!r} must be a Spark ML vector or an array of numbers "
                                f"for tensor {full!r}; got {dt.simpleString()}.")
            info = graph.tensor(full)
            if info.dtype not in _SPARK_TYPES or info.dtype in ("bool",):
                raise TypeError(f"{name}: input tensor {full!r} has dtype {info.dtype}; supported: float32, float64, int32, int64.")
            inputs.append((col, full, info))
        outputs = []
        existing = set(schema.names)
        for tensor, col in self.getOutputMapping().items():
            full = graph.check_output(tensor, name)
            if col in existing:
                raise ValueError(f"{name}: output column {col!r} already exists in the DataFrame; choose another name.")
            existing.add(col)
            outputs.append((full, col, graph.tensor(full)))
        used = {i[1] for i in inputs}
        missing = [n for n in graph.input_names if n not in used]
        if missing:
            raise ValueError(f"{name}: graph inputs {missing} have no column in 'inputMapping'. Every graph input needs one.")
        return inputs, outputs

    def _transform(self, dataset: DataFrame) -> DataFrame:
        inputs, outputs = self._validate(dataset.schema)
        graph = self._require_graph()
        engine.check_executors(dataset.sparkSession)  # once per session: a clear error for missing packages
        shipped = engine.ship(dataset.sparkSession, graph.to_bytes())
        in_specs = [(full, info.dtype, info.shape, col) for col, full, info in inputs]
        out_names = [full for full, _, _ in outputs]
        out_types = [_SPARK_TYPES.get(info.dtype, T.FloatType()) for _, _, info in outputs]
        key = graph.digest + "|" + ",".join(n for n, *_ in in_specs) + "|" + ",".join(out_names)
        return_type = T.StructType([T.StructField(f"o{i}", T.ArrayType(t), True) for i, t in enumerate(out_types)])
        udf = _tensor_udf(shipped, key, in_specs, out_names, [info.dtype for _, _, info in outputs],
                          self.getBatchSize(), return_type)
        args = []
        for col, _full, info in inputs:
            dt = dataset.schema[col].dataType
            target = _SPARK_TYPES[info.dtype]
            c = vector_to_array(F.col(col), "float64" if info.dtype == "float64" else "float32") if isinstance(dt, VectorUDT) else F.col(col)
            args.append(c.cast(T.ArrayType(target)))
        out = dataset.withColumn(_TMP, udf.asNondeterministic()(*args))
        for i, (_full, col, _info) in enumerate(outputs):
            field = F.col(f"{_TMP}.o{i}")
            out = out.withColumn(col, array_to_vector(field) if self.getOutputMode() == "vector" else field)
        return out.drop(_TMP)

    def registerUDF(self, spark: Any, name: str) -> Any:
        """Register this stage as the SQL function ``name(array)`` on ``spark`` (classic or Connect).

        Needs exactly one input and one output tensor; the argument is an ``array`` of numbers
        (in SQL there are no Spark ML vectors) and the result the output as an ``array``.

        Examples
        --------
        >>> TFTransformer(graph=g, inputMapping={"x": "x:0"}, outputMapping={"y:0": "y"}).registerUDF(spark, "f")  # doctest: +SKIP
        >>> spark.sql("SELECT f(x) FROM t")  # doctest: +SKIP

        .. versionadded:: 0.2.0
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"TFTransformer.registerUDF: name must be a SQL identifier such as 'score'; got {name!r}.")
        if len(self.getInputMapping()) != 1 or len(self.getOutputMapping()) != 1:
            raise ValueError(f"TFTransformer.registerUDF: a SQL function takes one input tensor and gives one output; "
                             f"inputMapping has {len(self.getInputMapping())} and outputMapping {len(self.getOutputMapping())}.")
        col = next(iter(self.getInputMapping()))
        inputs, outputs = self._validate(T.StructType([T.StructField(col, T.ArrayType(T.FloatType()), True)]))
        graph = self._require_graph()
        engine.check_executors(spark)
        shipped = engine.ship(spark, graph.to_bytes())
        in_specs = [(full, info.dtype, info.shape, c) for c, full, info in inputs]
        (out_name, _, out_info), = outputs
        key = graph.digest + "|sql|" + in_specs[0][0] + "|" + out_name
        udf = _tensor_udf(shipped, key, in_specs, [out_name], [out_info.dtype], self.getBatchSize(),
                          T.ArrayType(_SPARK_TYPES.get(out_info.dtype, T.FloatType())), value_only=True)
        return spark.udf.register(name, udf.asNondeterministic())

    # ------------------------------------------------------------------ persistence
    def write(self) -> GraphStageWriter:
        return GraphStageWriter(self)

    @classmethod
    def read(cls) -> GraphStageReader:
        return GraphStageReader(cls)

    def copy(self, extra: Optional[Dict[Param, Any]] = None) -> "TFTransformer":
        return super().copy(extra)


def _row_shape(shape: Optional[Sequence[Optional[int]]], length: int, tensor: str, col: str) -> Tuple[int, ...]:
    """The per-row shape for a flat row of ``length`` values fed to a tensor of static ``shape``."""
    if shape is None:
        return (length,)
    dims = list(shape[1:])
    unknown = [i for i, d in enumerate(dims) if d is None or d < 0]
    known = int(np.prod([d for d in dims if d is not None and d >= 0])) if dims else 1
    if not unknown:
        if known != length:
            raise ValueError(f"column {col!r} has rows of {length} values; tensor {tensor!r} with shape "
                             f"{list(shape)} takes {known} values per row.")
        return tuple(dims)
    if len(unknown) > 1 or known == 0 or length % known:
        raise ValueError(f"column {col!r} has rows of {length} values, which cannot be reshaped to tensor "
                         f"{tensor!r} with shape {list(shape)}.")
    dims[unknown[0]] = length // known
    return tuple(dims)


def _tensor_udf(shipped, key, in_specs, out_names, out_dtypes, batch_size, return_type, value_only=False):
    from pyspark.sql.functions import arrow_udf

    arrow_out = [pa.from_numpy_dtype(_NUMPY_OUT.get(d, np.float32)) for d in out_dtypes]

    def to_numpy(arrays):
        feeds = {}
        n = None
        for arr, (tensor, _dtype, shape, col) in zip(arrays, in_specs):
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if arr.null_count:
                row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
                raise ValueError(f"TFTransformer: column {col!r} has a null at row {row} of a batch; "
                                 f"tensor {tensor!r} needs a value in every row. Filter or fill nulls first.")
            n = len(arr)
            offsets = arr.offsets.to_numpy()
            lengths = np.diff(offsets)
            width = int(lengths[0]) if n else 0
            if n and not (lengths == width).all():
                bad = int(np.flatnonzero(lengths != width)[0])
                raise ValueError(f"TFTransformer: column {col!r} has rows of different lengths ({width} and "
                                 f"{int(lengths[bad])}); tensor {tensor!r} needs a fixed shape.")
            values = arr.values.slice(int(offsets[0]), n * width).to_numpy(zero_copy_only=False)
            per_row = _row_shape(shape, width, tensor, col) if n else tuple(d or 0 for d in (shape or [0, 0])[1:])
            feeds[tensor] = values.reshape((n,) + tuple(per_row))
        return n or 0, feeds

    def loader():
        return runtime.load_callable(shipped.read(), [s[0] for s in in_specs], out_names)

    @arrow_udf(return_type)
    def predict(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        runtime.configure_threads(engine.task_cpus())
        run = runtime.get_or_load(key, loader)
        kill = failpoint.value("kill_worker")  # test-only; once per partition
        for n, feeds in runtime.prefetch((b if isinstance(b, tuple) else (b,) for b in batches), to_numpy):
            failpoint.kill_worker(kill)
            parts: List[List[np.ndarray]] = [[] for _ in out_names]
            for start in range(0, n, batch_size):
                res = run({k: v[start:start + batch_size] for k, v in feeds.items()})
                runtime.count_batch(key)
                for i, name in enumerate(out_names):
                    r = np.asarray(res[name])
                    m = min(batch_size, n - start)
                    if r.shape[:1] != (m,):
                        raise ValueError(f"TFTransformer: output {name!r} has {r.shape[0] if r.ndim else 0} rows for a batch of {m}; "
                                         f"each output needs one row per input row.")
                    parts[i].append(r.reshape(m, -1))
            cols = []
            for i in range(len(out_names)):
                vals = np.concatenate(parts[i]) if parts[i] else np.zeros((0, 0), np.float32)
                cols.append(_list_array(vals.astype(_NUMPY_OUT.get(out_dtypes[i], np.float32), copy=False),
                                        vals.shape[1] if vals.ndim == 2 else 0, None, arrow_out[i], n))
            yield cols[0] if value_only else pa.StructArray.from_arrays(cols, names=[f"o{i}" for i in range(len(out_names))])

    return predict


# ============================================================================ TFImageTransformer
class _TFImageTransformerParams(HasInputCol, HasOutputCol, HasBatchSize):
    inputTensor: "Param[str]" = Param(
        Params._dummy(), "inputTensor",
        "Graph input tensor fed with the images; default: the graph's only input.",
        typeConverter=TypeConverters.toString)
    outputTensor: "Param[str]" = Param(
        Params._dummy(), "outputTensor",
        "Graph output tensor to store; default: the graph's only output.",
        typeConverter=TypeConverters.toString)
    outputMode: "Param[str]" = Param(
        Params._dummy(), "outputMode",
        "'vector' (DenseVector), 'array' (array<float>) or 'image' (an image struct, for image-to-image graphs).",
        typeConverter=TypeConverters.toString)
    channelOrder: "Param[str]" = Param(
        Params._dummy(), "channelOrder",
        "Channel order the graph expects: 'RGB', 'BGR' or 'L' (1-channel gray). Spark images are BGR.",
        typeConverter=TypeConverters.toString)
    resize: "Param[bool]" = Param(
        Params._dummy(), "resize",
        "Resize images (bilinear, tf.image.resize) to the graph's static height x width; if false, a size mismatch is an error.",
        typeConverter=TypeConverters.toBoolean)
    scale: "Param[float]" = Param(
        Params._dummy(), "scale",
        "Pixels reach the graph as float(uint8 value) * scale + offset; e.g. 1/255 for [0, 1].",
        typeConverter=TypeConverters.toFloat)
    offset: "Param[float]" = Param(
        Params._dummy(), "offset",
        "Added after scaling: pixel * scale + offset (e.g. scale=1/127.5, offset=-1 for [-1, 1]).",
        typeConverter=TypeConverters.toFloat)
    errorMode: "Param[str]" = Param(
        Params._dummy(), "errorMode",
        "'fail': a bad image raises an error naming its origin; 'null': its output is null and the reason goes to <outputCol>_error.",
        typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(outputMode="vector", channelOrder="RGB", resize=True, batchSize=64,
                         scale=1.0, offset=0.0, errorMode="fail")

    def getInputTensor(self) -> Optional[str]:
        return self.getOrDefault(self.inputTensor) if self.isDefined(self.inputTensor) else None

    def getOutputTensor(self) -> Optional[str]:
        return self.getOrDefault(self.outputTensor) if self.isDefined(self.outputTensor) else None

    def getOutputMode(self) -> str:
        return self.getOrDefault(self.outputMode)

    def getChannelOrder(self) -> str:
        return self.getOrDefault(self.channelOrder)

    def getResize(self) -> bool:
        return self.getOrDefault(self.resize)

    def getScale(self) -> float:
        return self.getOrDefault(self.scale)

    def getOffset(self) -> float:
        return self.getOrDefault(self.offset)

    def getErrorMode(self) -> str:
        return self.getOrDefault(self.errorMode)


class TFImageTransformer(Transformer, _TFImageTransformerParams, HasGraph, MLReadable, MLWritable):
    """Apply a :class:`~sparkdl_lite.TFGraph` to a column of Spark image structs.

    Images travel as uint8 through Arrow. In front of the graph, fused into one TF function, each
    batch is cast to float32, converted from Spark's OpenCV order (gray / BGR / BGRA) to
    ``channelOrder`` (gray is repeated to 3 channels for an RGB graph; alpha is dropped), resized to
    the graph's static height and width (``resize=True``), then mapped to ``pixel * scale + offset``.

    Parameters
    ----------
    graph : TFGraph
    inputCol, outputCol : str
    inputTensor, outputTensor : str, optional
        Default: the graph's only input / output.
    outputMode : {"vector", "array", "image"}, default "vector"
    channelOrder : {"RGB", "BGR", "L"}, default "RGB"
    resize : bool, default True
    scale, offset : float, default 1.0 and 0.0
    batchSize : int, default 64
    errorMode : {"fail", "null"}, default "fail"
        With ``"null"``, a null, invalid or undecodable image gives a null output and a message in
        ``<outputCol>_error`` (null for good rows).

    Raises
    ------
    ValueError
        Unknown column or tensor, a graph input that is not N x H x W x C, a channel count the graph
        cannot take; with ``errorMode="fail"``, a bad image (the error names its ``origin``).
    TypeError
        ``inputCol`` is not an image struct.

    Examples
    --------
    >>> t = TFImageTransformer(graph=g, inputCol="image", outputCol="scores", scale=1 / 255)  # doctest: +SKIP
    >>> t.transform(read_images(spark, "photos/")).select("image.origin", "scores")  # doctest: +SKIP

    .. versionadded:: 0.1.0
    """

    @keyword_only
    def __init__(self, *, graph: Any = None, inputCol: Optional[str] = None, outputCol: Optional[str] = None,
                 inputTensor: Optional[str] = None, outputTensor: Optional[str] = None,
                 outputMode: str = "vector", channelOrder: str = "RGB", resize: bool = True,
                 scale: float = 1.0, offset: float = 0.0, batchSize: int = 64, errorMode: str = "fail") -> None:
        super().__init__()
        kwargs = dict(self._input_kwargs)
        self.setGraph(kwargs.pop("graph", None))
        self._set(**kwargs)

    @keyword_only
    def setParams(self, *, inputCol: Optional[str] = None, outputCol: Optional[str] = None,
                  inputTensor: Optional[str] = None, outputTensor: Optional[str] = None,
                  outputMode: str = "vector", channelOrder: str = "RGB", resize: bool = True,
                  scale: float = 1.0, offset: float = 0.0, batchSize: int = 64, errorMode: str = "fail") -> "TFImageTransformer":
        return self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "TFImageTransformer":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "TFImageTransformer":
        return self._set(outputCol=value)

    def setInputTensor(self, value: str) -> "TFImageTransformer":
        return self._set(inputTensor=value)

    def setOutputTensor(self, value: str) -> "TFImageTransformer":
        return self._set(outputTensor=value)

    def setOutputMode(self, value: str) -> "TFImageTransformer":
        return self._set(outputMode=value)

    def setChannelOrder(self, value: str) -> "TFImageTransformer":
        return self._set(channelOrder=value)

    def setResize(self, value: bool) -> "TFImageTransformer":
        return self._set(resize=value)

    def setScale(self, value: float) -> "TFImageTransformer":
        return self._set(scale=value)

    def setOffset(self, value: float) -> "TFImageTransformer":
        return self._set(offset=value)

    def setBatchSize(self, value: int) -> "TFImageTransformer":
        return self._set(batchSize=value)

    def setErrorMode(self, value: str) -> "TFImageTransformer":
        return self._set(errorMode=value)

    # ------------------------------------------------------------------ validation
    def _validate(self, schema: T.StructType) -> Dict[str, Any]:
        name = "TFImageTransformer"
        graph = self._require_graph()
        check(self.getBatchSize() >= 1, f"{name}: param 'batchSize' must be an int >= 1; got {self.getBatchSize()!r}.")
        check(self.getOutputMode() in ("vector", "array", "image"),
              f"{name}: param 'outputMode' must be 'vector', 'array' or 'image'; got {self.getOutputMode()!r}.")
        check(self.getChannelOrder() in img.CHANNEL_ORDERS,
              f"{name}: param 'channelOrder' must be one of {list(img.CHANNEL_ORDERS)}; got {self.getChannelOrder()!r}.")
        check(self.getErrorMode() in ("fail", "null"),
              f"{name}: param 'errorMode' must be 'fail' or 'null'; got {self.getErrorMode()!r}.")
        for p in (self.inputCol, self.outputCol):
            if not self.isDefined(p):
                raise ValueError(f"{name}: param {p.name!r} must be set.")
        col = self.getInputCol()
        if col not in schema.names:
            raise ValueError(f"{name}: inputCol {col!r} is not in the DataFrame. Available columns: {schema.names}.")
        if not is_image_struct(schema[col].dataType):
            raise TypeError(f"{name}: inputCol {col!r} must be an image struct (origin, height, width, nChannels, mode, "
                            f"data) as spark.read.format('image') yields; got {schema[col].dataType.simpleString()}.")
        out_col = self.getOutputCol()
        err_col = f"{out_col}_error"
        for c in (out_col, err_col) if self.getErrorMode() == "null" else (out_col,):
            if c in schema.names:
                raise ValueError(f"{name}: output column {c!r} already exists in the DataFrame; choose another outputCol.")
        in_tensor = self.getInputTensor()
        if in_tensor is None:
            if len(graph.input_names) != 1:
                raise ValueError(f"{name}: the graph has {len(graph.input_names)} inputs {graph.input_names}; set inputTensor.")
            in_tensor = graph.input_names[0]
        in_tensor = graph.check_input(in_tensor, name)
        out_tensor = self.getOutputTensor()
        if out_tensor is None:
            if len(graph.output_names) != 1:
                raise ValueError(f"{name}: the graph has {len(graph.output_names)} outputs {graph.output_names}; set outputTensor.")
            out_tensor = graph.output_names[0]
        out_tensor = graph.check_output(out_tensor, name)
        info = graph.tensor(in_tensor)
        shape = info.shape
        if shape is None or len(shape) != 4:
            raise ValueError(f"{name}: input tensor {in_tensor!r} must have shape [batch, height, width, channels]; "
                             f"got {None if shape is None else list(shape)}.")
        if not info.dtype.startswith("float") and info.dtype not in ("uint8", "int32"):
            raise ValueError(f"{name}: input tensor {in_tensor!r} has dtype {info.dtype}; expected a float or uint8 image tensor.")
        channels = shape[3]
        want = 1 if self.getChannelOrder() == "L" else 3
        if channels is not None and channels != want:
            hint = "channelOrder='L'" if channels == 1 else "channelOrder='RGB' or 'BGR'"
            raise ValueError(f"{name}: input tensor {in_tensor!r} takes {channels} channels but channelOrder "
                             f"{self.getChannelOrder()!r} gives {want}. " + (f"Use {hint}." if channels in (1, 3) else
                             "Only 1-channel (L) and 3-channel (RGB/BGR) graphs are supported."))
        hw = (shape[1], shape[2]) if shape[1] and shape[2] else None
        out_info = graph.tensor(out_tensor)
        if self.getOutputMode() == "image":
            oshape = out_info.shape
            if oshape is None or len(oshape) != 4 or oshape[3] not in (1, 3, 4):
                raise ValueError(f"{name}: outputMode 'image' needs an output tensor of shape [batch, h, w, 1|3|4]; "
                                 f"{out_tensor!r} has shape {None if oshape is None else list(oshape)}.")
        return {"in": in_tensor, "out": out_tensor, "hw": hw, "channels": want, "dtype": info.dtype,
                "out_dtype": out_info.dtype, "err_col": err_col}

    def _transform(self, dataset: DataFrame) -> DataFrame:
        spec = self._validate(dataset.schema)
        graph = self._require_graph()
        engine.check_executors(dataset.sparkSession)  # once per session: a clear error for missing packages
        shipped = engine.ship(dataset.sparkSession, graph.to_bytes())
        mode = self.getOutputMode()
        value_type = image_schema() if mode == "image" else T.ArrayType(T.FloatType())
        return_type = T.StructType([T.StructField("value", value_type, True), T.StructField("error", T.StringType(), True)])
        udf = _image_udf(shipped, graph.digest, spec, self._udf_options(mode), return_type)
        out = dataset.withColumn(_TMP, udf.asNondeterministic()(F.col(self.getInputCol())))
        value = F.col(f"{_TMP}.value")
        vec = F.when(value.isNull(), F.lit(None)).otherwise(array_to_vector(value))  # array_to_vector fails on null
        out = out.withColumn(self.getOutputCol(), vec if mode == "vector" else value)
        if self.getErrorMode() == "null":
            out = out.withColumn(spec["err_col"], F.col(f"{_TMP}.error"))
        return out.drop(_TMP)

    def _udf_options(self, mode: str, value_only: bool = False) -> Dict[str, Any]:
        """What the image UDF needs of this stage's params (``value_only``: the output alone, for SQL)."""
        return {"channel_order": self.getChannelOrder(), "resize": self.getResize(), "scale": self.getScale(),
                "offset": self.getOffset(), "batch_size": self.getBatchSize(), "fail": self.getErrorMode() == "fail",
                "mode": mode, "value_only": value_only}

    def registerUDF(self, spark: Any, name: str) -> Any:
        """Register this stage as the SQL function ``name(image)`` on ``spark`` (classic or Connect).

        ``SELECT name(image) FROM photos`` then gives the output tensor as ``array<float>`` (or an
        image struct with ``outputMode="image"``); a row that cannot be scored gives null, or fails
        the query with ``errorMode="fail"``. The graph is shipped once, as for :meth:`transform`.

        Returns
        -------
        The registered UDF (usable from the DataFrame API too).

        Examples
        --------
        >>> scorer.registerUDF(spark, "classify")  # doctest: +SKIP
        >>> spark.sql("SELECT image.origin, classify(image) AS scores FROM photos")  # doctest: +SKIP

        .. versionadded:: 0.2.0
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"TFImageTransformer.registerUDF: name must be a SQL identifier such as 'classify'; got {name!r}.")
        column = self.getInputCol() or "image"
        spec = self._validate(T.StructType([T.StructField(column, image_schema(), True)]))
        graph = self._require_graph()
        engine.check_executors(spark)
        shipped = engine.ship(spark, graph.to_bytes())
        mode = self.getOutputMode()
        value_type = image_schema() if mode == "image" else T.ArrayType(T.FloatType())
        options = self._udf_options("array" if mode == "vector" else mode, value_only=True)
        udf = _image_udf(shipped, graph.digest, spec, options, value_type).asNondeterministic()
        return spark.udf.register(name, udf)

    def write(self) -> GraphStageWriter:
        return GraphStageWriter(self)

    @classmethod
    def read(cls) -> GraphStageReader:
        return GraphStageReader(cls)


def _image_udf(shipped, digest: str, spec: Dict[str, Any], options: Dict[str, Any], return_type: T.StructType):
    from pyspark.sql.functions import arrow_udf

    hw = spec["hw"]
    batch_size = options["batch_size"]
    mode = options["mode"]

    def runner(src_channels: int):
        key = f"{digest}|{spec['in']}|{spec['out']}|{src_channels}|{options['channel_order']}|{hw if options['resize'] else None}|{options['scale']}|{options['offset']}"

        def loader():
            pre = img.make_preprocess(src_channels=src_channels, channel_order=options["channel_order"],
                                      target_hw=hw if options["resize"] else None, target_channels=spec["channels"],
                                      scale=options["scale"], offset=options["offset"], dtype=spec["dtype"])
            return runtime.load_callable(shipped.read(), [spec["in"]], [spec["out"]], preprocess=pre)

        return key, runtime.get_or_load(key, loader)

    def compute(arr) -> Tuple[int, img.ImageBatch, Dict[int, str], List[Tuple[np.ndarray, np.ndarray]]]:
        batch = img.decode_batch(arr)
        errors = dict(batch.errors)
        results = []
        for (h, w, c), (rows, images) in batch.groups.items():
            if hw is not None and not options["resize"] and (h, w) != tuple(hw):
                for r in rows:
                    errors[int(r)] = f"the image is {h}x{w}; the graph takes {hw[0]}x{hw[1]} and resize=False"
                continue
            key, run = runner(c)
            outs = []
            for start in range(0, len(rows), batch_size):
                chunk = images[start:start + batch_size]
                res = run({spec["in"]: chunk})[spec["out"]]
                runtime.count_batch(key)
                if res.shape[:1] != (len(chunk),):
                    raise ValueError(f"TFImageTransformer: output {spec['out']!r} has {res.shape[0] if res.ndim else 0} rows "
                                     f"for a batch of {len(chunk)} images.")
                outs.append(res)
            results.append((rows, outs[0] if len(outs) == 1 else np.concatenate(outs)))
        return batch.size, batch, errors, results

    @arrow_udf(return_type)
    def predict(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        runtime.configure_threads(engine.task_cpus())
        kill = failpoint.value("kill_worker")  # test-only; once per partition
        for n, batch, errors, results in runtime.prefetch(batches, compute):
            failpoint.kill_worker(kill)
            if errors and options["fail"]:
                i = min(errors)
                raise ValueError(f"TFImageTransformer: image {batch.origin(i)!r} (row {i} of a batch): {errors[i]}. "
                                 f"Set errorMode='null' to get a null output and the reason in a column instead.")
            if errors:
                mask: Optional[np.ndarray] = np.zeros(n, bool)
                mask[list(errors)] = True
                err = pa.array([errors.get(i) for i in range(n)], type=pa.string())
            else:  # the common case: no per-row Python, no validity bitmaps
                mask = None
                err = pa.nulls(n, pa.string())
            if mode == "image":
                value = _image_structs(n, batch.origins, results, np.zeros(n, bool) if mask is None else mask,
                                       options["channel_order"])
            else:
                width = int(np.prod(results[0][1].shape[1:])) if results else 0
                rows0 = results[0][0] if len(results) == 1 else None
                if rows0 is not None and len(rows0) == n:  # every row, in order: hand TF's output over as is
                    vals = results[0][1].reshape(n, width).astype(np.float32, copy=False)
                else:
                    vals = np.zeros((n, width), np.float32)
                    for rows, res in results:
                        vals[rows] = res.reshape(len(rows), -1)
                value = _list_array(vals, width, mask, pa.float32(), n)
            yield value if options.get("value_only") else pa.StructArray.from_arrays([value, err], names=["value", "error"])

    return predict


def _image_structs(n: int, origins: List[Optional[str]], results, mask: np.ndarray, channel_order: str):
    """Graph image outputs (float, in ``channel_order``) back to Spark image structs (uint8, BGR)."""

    hs = np.full(n, -1, np.int32)
    ws = np.full(n, -1, np.int32)
    cs = np.full(n, -1, np.int32)
    modes = np.full(n, -1, np.int32)
    data: List[Optional[bytes]] = [None] * n
    for rows, res in results:
        arr = np.clip(np.rint(res), 0, 255).astype(np.uint8)
        if arr.ndim == 3:
            arr = arr[..., None]
        c = arr.shape[-1]
        if c >= 3 and channel_order == "RGB":
            arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=-1)
        for j, r in enumerate(rows):
            hs[r], ws[r], cs[r], modes[r] = arr.shape[1], arr.shape[2], c, img.MODE_BY_CHANNELS[c]
            data[r] = arr[j].tobytes()
    fields = [pa.array(origins, pa.string()), pa.array(hs), pa.array(ws), pa.array(cs), pa.array(modes),
              pa.array(data, pa.binary())]
    return pa.StructArray.from_arrays(fields, names=list(img.IMAGE_FIELDS), mask=pa.array(mask))
