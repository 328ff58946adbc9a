"""MLWriter / MLReader for graph-bearing stages: metadata JSON + GraphDef protobuf file.

Layout of a saved stage at ``path``::

    path/metadata/part-00000   Spark ML params metadata (JSON), plus sparkdlLiteVersion,
                               formatVersion and the graph's tensor names
    path/data/graph.pb         the frozen GraphDef (protobuf)

Both are written and read through Spark / Hadoop file system APIs, so ``hdfs://`` and ``s3a://``
paths work. Nothing is unpickled and no Python code named in the files is run: the metadata class
must be the one being loaded, and the graph is parsed as protobuf.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Type

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from sparkdl_lite import __version__

__all__ = ["GraphStageWriter", "GraphStageReader", "FORMAT_VERSION", "write_bytes", "read_bytes"]

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


class GraphStageWriter(MLWriter):
    """Writes a stage's params as Spark ML JSON metadata and its graph as ``data/graph.pb``."""

    def __init__(self, instance: Any, extra: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.instance = instance
        self.extra = extra or {}

    def saveImpl(self, path: str) -> None:
        graph = self.instance._require_graph()
        extra = {"sparkdlLiteVersion": __version__, "formatVersion": FORMAT_VERSION,
                 "graph": graph.to_json(), **self.extra}
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)
        write_bytes(self.sparkSession.sparkContext, f"{path.rstrip('/')}/{GRAPH_FILE}", graph.to_bytes(), self.shouldOverwrite)


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
        for f in _list_files(sc, base):
            if f.lower().endswith(_PICKLE_SUFFIXES):
                raise ValueError(f"{name}.load: refusing {path!r}: it contains the pickle file {f!r}. "
                                 f"sparkdl_lite model directories hold only JSON and protobuf.")
        expected = f"{self.cls.__module__}.{self.cls.__qualname__}"
        try:
            metadata = DefaultParamsReader.loadMetadata(path, sc, expected)
        except Exception as exc:  # Spark raises a bare Exception or TypeError on a class mismatch
            raise ValueError(f"{name}.load: {path!r} is not a saved {expected}: {exc}") from None
        version = metadata.get("formatVersion")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{name}.load: {path!r} was written in model format version {version!r} "
                             f"(sparkdl_lite {metadata.get('sparkdlLiteVersion')!r}); this sparkdl_lite "
                             f"{__version__} reads format <= {FORMAT_VERSION}. Upgrade sparkdl_lite.")
        if metadata.get("sparkdlLiteVersion") != __version__:
            warnings.warn(f"{name}.load: {path!r} was saved by sparkdl_lite {metadata.get('sparkdlLiteVersion')}; "
                          f"this is {__version__}.", UserWarning, stacklevel=2)
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
        return instance
