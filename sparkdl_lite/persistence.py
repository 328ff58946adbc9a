"""MLWriter / MLReader for graph-bearing stages: metadata JSON + GraphDef protobuf file.

Layout of a saved stage at ``path``::

    path/metadata/part-00000   Spark ML params metadata (JSON), plus sparkdlLiteVersion,
                               formatVersion, the graph's tensor names and the data files' names
    path/data/graph.pb         the frozen GraphDef (protobuf)
    path/data/model.keras      (classifier stages) the Keras model as Keras' own archive:
                               JSON config + weights, loaded in Keras' safe mode

Both are written and read through Spark / Hadoop file system APIs, so ``hdfs://`` and ``s3a://``
paths work. Nothing is unpickled and no Python code named in the files is run: the metadata class
must be the one being loaded, and the graph is parsed as protobuf.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Type

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from sparkdl_lite import __version__

__all__ = ["GraphStageWriter", "GraphStageReader", "StageDataWriter", "StageDataReader", "FORMAT_VERSION",
           "write_bytes", "read_bytes"]

FORMAT_VERSION = 1
GRAPH_FILE = "data/graph.pb"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")


def _fs_path(sc: Any, path: str):
    jvm = sc._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(sc._jsc.hadoopConfiguration()), p


def write_bytes(sc: Any, path: str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through the Hadoop FileSystem of the path's scheme."""
    fs, p = _fs_path(sc, path)
    out = fs.create(p, overwrite)
    try:
        out.write(bytearray(data))
    finally:
        out.close()


def read_bytes(spark: Any, path: str) -> bytes:
    """Read one whole file through the Hadoop FileSystem of the path's scheme."""
    sc = spark.sparkContext
    fs, p = _fs_path(sc, path)
    try:
        stream = fs.open(p)
        try:
            return bytes(sc._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()
    except Exception as exc:  # py4j wraps Java's FileNotFoundException / ChecksumException
        text = str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"cannot read {path!r}: {text.strip()[:300]}") from None


def _exists(sc: Any, path: str) -> bool:
    fs, p = _fs_path(sc, path)
    return bool(fs.exists(p))


def _list_files(sc: Any, path: str):
    fs, p = _fs_path(sc, path)
    if not fs.exists(p):
        return []
    it = fs.listFiles(p, True)
    names = []
    while it.hasNext():
        names.append(str(it.next().getPath().toString()))
    return names


def _write_files(writer: MLWriter, path: str, files: Dict[str, bytes]) -> None:
    for name, data in files.items():
        write_bytes(writer.sparkSession.sparkContext, f"{path.rstrip('/')}/data/{name}", data, writer.shouldOverwrite)


def _read_files(spark: Any, path: str, metadata: Dict[str, Any], who: str) -> Dict[str, bytes]:
    files = {}
    for name in metadata.get("files") or []:
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise ValueError(f"{who}: {path!r} names an invalid data file {name!r} in its metadata.")
        full = f"{path.rstrip('/')}/data/{name}"
        if not _exists(spark.sparkContext, full):
            raise FileNotFoundError(f"{who}: {path!r} is missing its data file {'data/' + name!r}.")
        files[name] = read_bytes(spark, full)
    return files


def _refuse_pickles(sc: Any, path: str, who: str) -> None:
    for f in _list_files(sc, path.rstrip("/")):
        if f.lower().endswith(_PICKLE_SUFFIXES):
            raise ValueError(f"{who}: refusing {path!r}: it contains the pickle file {f!r}. "
                             f"sparkdl_lite model directories hold only JSON, protobuf and Keras archives.")


def _check_version(metadata: Dict[str, Any], path: str, who: str, required: bool) -> None:
    version = metadata.get("formatVersion")
    if version is None and not required:
        return  # a stage saved by Spark's DefaultParamsWriter (sparkdl_lite 0.1.0's TFClassifier)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{who}: {path!r} was written in model format version {version!r} "
                         f"(sparkdl_lite {metadata.get('sparkdlLiteVersion')!r}); this sparkdl_lite "
                         f"{__version__} reads format <= {FORMAT_VERSION}. Upgrade sparkdl_lite.")
    saved = metadata.get("sparkdlLiteVersion")
    if saved is not None and saved != __version__:
        warnings.warn(f"{who}: {path!r} was saved by sparkdl_lite {saved}; this is {__version__}.",
                      UserWarning, stacklevel=3)


class GraphStageWriter(MLWriter):
    """Writes a stage's params as Spark ML JSON metadata, its graph as ``data/graph.pb`` and any data files."""

    def __init__(self, instance: Any, extra: Optional[Dict[str, Any]] = None,
                 files: Optional[Dict[str, bytes]] = None) -> None:
        super().__init__()
        self.instance = instance
        self.extra = extra or {}
        self.files = {k: v for k, v in (files or {}).items() if v is not None}

    def saveImpl(self, path: str) -> None:
        graph = self.instance._require_graph()
        extra = {"sparkdlLiteVersion": __version__, "formatVersion": FORMAT_VERSION,
                 "graph": graph.to_json(), "files": sorted(self.files), **self.extra}
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)
        write_bytes(self.sparkSession.sparkContext, f"{path.rstrip('/')}/{GRAPH_FILE}", graph.to_bytes(), self.shouldOverwrite)
        _write_files(self, path, self.files)


class StageDataWriter(MLWriter):
    """Writes a stage without a graph (an Estimator holding a Keras model): JSON metadata + data files."""

    def __init__(self, instance: Any, files: Optional[Dict[str, bytes]] = None) -> None:
        super().__init__()
        self.instance = instance
        self.files = {k: v for k, v in (files or {}).items() if v is not None}

    def saveImpl(self, path: str) -> None:
        extra = {"sparkdlLiteVersion": __version__, "formatVersion": FORMAT_VERSION, "files": sorted(self.files)}
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)
        _write_files(self, path, self.files)


class StageDataReader(MLReader):
    """Reads what :class:`StageDataWriter` wrote (or Spark's DefaultParamsWriter), refusing pickles."""

    def __init__(self, cls: Type[Any]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        sc = self.sparkSession.sparkContext
        name = self.cls.__name__
        if not _exists(sc, f"{path.rstrip('/')}/metadata"):
            raise FileNotFoundError(f"{name}.load: {path!r} has no metadata directory; it is not a saved {name}.")
        _refuse_pickles(sc, path, f"{name}.load")
        expected = f"{self.cls.__module__}.{self.cls.__qualname__}"
        try:
            metadata = DefaultParamsReader.loadMetadata(path, sc, expected)
        except Exception as exc:  # Spark raises a bare Exception or TypeError on a class mismatch
            raise ValueError(f"{name}.load: {path!r} is not a saved {expected}: {exc}") from None
        _check_version(metadata, path, f"{name}.load", required=False)
        files = _read_files(self.sparkSession, path, metadata, f"{name}.load")
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if hasattr(instance, "_load_files"):
            instance._load_files(files)
        return instance


class GraphStageReader(MLReader):
    """Reads what :class:`GraphStageWriter` wrote, refusing anything it did not write."""

    def __init__(self, cls: Type[Any]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        from sparkdl_lite.graph import TFGraph

        sc = self.sparkSession.sparkContext
        name = self.cls.__name__
        base = path.rstrip("/")
        if not _exists(sc, f"{base}/metadata"):
            raise FileNotFoundError(f"{name}.load: {path!r} has no metadata directory; it is not a saved {name}.")
        _refuse_pickles(sc, path, f"{name}.load")
        expected = f"{self.cls.__module__}.{self.cls.__qualname__}"
        try:
            metadata = DefaultParamsReader.loadMetadata(path, sc, expected)
        except Exception as exc:  # Spark raises a bare Exception or TypeError on a class mismatch
            raise ValueError(f"{name}.load: {path!r} is not a saved {expected}: {exc}") from None
        _check_version(metadata, path, f"{name}.load", required=True)
        graph_path = f"{base}/{GRAPH_FILE}"
        if not _exists(sc, graph_path):
            raise FileNotFoundError(f"{name}.load: {path!r} is missing its graph file {GRAPH_FILE!r}.")
        info = metadata.get("graph") or {}
        try:
            data = read_bytes(self.sparkSession, graph_path)
            graph = TFGraph.from_bytes(data, [t["name"] for t in info.get("inputs", [])] or None,
                                       [t["name"] for t in info.get("outputs", [])] or None)
        except ValueError as exc:
            raise ValueError(f"{name}.load: {graph_path!r} is not a valid graph: {exc}") from None
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        instance.setGraph(graph)
        if hasattr(instance, "_load_extra"):
            instance._load_extra(metadata)
        if hasattr(instance, "_load_files"):
            instance._load_files(_read_files(self.sparkSession, path, metadata, f"{name}.load"))
        return instance
