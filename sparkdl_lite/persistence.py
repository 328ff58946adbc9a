"""MLWriter / MLReader for stages with data: metadata JSON + data files, all through the engine.

Layout of a saved stage at ``path`` (format version 2)::

    path/metadata/part-00000   Spark ML params metadata (JSON), plus sparkdlLiteVersion,
                               formatVersion, the graph's tensor names and the data files' names
    path/data/graph.pb/        the frozen GraphDef's protobuf bytes, as a Parquet dataset of
                               ordered byte chunks
    path/data/model.keras/     (classifier stages) Keras' own archive (JSON config + weights),
                               the same way; loaded in Keras' safe mode

Spark writes and reads every file (the server, on Spark Connect), so ``hdfs://`` and ``s3a://``
paths and remote cluster paths work from either kind of session. Format version 1 (sparkdl_lite
0.1.0) kept ``data/graph.pb`` as a plain file; it still loads. Nothing is unpickled and no Python
code named in the files is run: the metadata class must be the one being loaded, graphs are
parsed as protobuf and Keras archives are loaded in safe mode.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Type

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from sparkdl_lite import __version__
from sparkdl_lite.runner import engine

__all__ = ["GraphStageWriter", "GraphStageReader", "StageDataWriter", "StageDataReader", "FORMAT_VERSION"]

FORMAT_VERSION = 2
GRAPH_FILE = "graph.pb"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")


def _session(writer_or_reader: Any) -> Any:
    return engine.session_for(getattr(writer_or_reader, "_sparkSession", None))


def _write_files(spark: Any, path: str, files: Dict[str, bytes]) -> None:
    for name, data in files.items():
        engine.write_bytes(spark, f"{path.rstrip('/')}/data/{name}", data)


def _read_files(spark: Any, path: str, metadata: Dict[str, Any], who: str) -> Dict[str, bytes]:
    files = {}
    blob = int(metadata.get("formatVersion") or 1) >= 2
    for name in metadata.get("files") or []:
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise ValueError(f"{who}: {path!r} names an invalid data file {name!r} in its metadata.")
        full = f"{path.rstrip('/')}/data/{name}"
        try:
            files[name] = engine.read_bytes(spark, full, blob=blob)
        except ValueError as exc:
            raise FileNotFoundError(f"{who}: {path!r} is missing its data file {'data/' + name!r} ({exc}).") from None
    return files


def _refuse_pickles(spark: Any, path: str, who: str) -> None:
    for f in engine.list_files(spark, path.rstrip("/")):
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


def _load_metadata(spark: Any, cls: Type[Any], path: str) -> Dict[str, Any]:
    name = cls.__name__
    if not engine.exists(spark, f"{path.rstrip('/')}/metadata"):
        raise FileNotFoundError(f"{name}.load: {path!r} has no metadata directory; it is not a saved {name}.")
    _refuse_pickles(spark, path, f"{name}.load")
    expected = f"{cls.__module__}.{cls.__qualname__}"
    try:
        return DefaultParamsReader.loadMetadata(path, spark, expected)
    except Exception as exc:  # Spark raises a bare Exception or TypeError on a class mismatch
        raise ValueError(f"{name}.load: {path!r} is not a saved {expected}: {exc}") from None


class _EngineWriter(MLWriter):
    """An MLWriter whose overwrite goes through the engine (Spark's own one needs py4j)."""

    def save(self, path: str) -> None:
        spark = _session(self)
        if self.shouldOverwrite:
            engine.handle_overwrite(spark, path)
        self.saveImpl(path)


class GraphStageWriter(_EngineWriter):
    """Writes a stage's params as Spark ML JSON metadata, its graph and any data files through Spark."""

    def __init__(self, instance: Any, extra: Optional[Dict[str, Any]] = None,
                 files: Optional[Dict[str, bytes]] = None) -> None:
        super().__init__()
        self.instance = instance
        self.extra = extra or {}
        self.files = {k: v for k, v in (files or {}).items() if v is not None}

    def saveImpl(self, path: str) -> None:
        spark = _session(self)
        graph = self.instance._require_graph()
        files = {GRAPH_FILE: graph.to_bytes(), **self.files}
        extra = {"sparkdlLiteVersion": __version__, "formatVersion": FORMAT_VERSION,
                 "graph": graph.to_json(), "files": sorted(files), **self.extra}
        DefaultParamsWriter.saveMetadata(self.instance, path, spark, extraMetadata=extra)
        _write_files(spark, path, files)


class StageDataWriter(_EngineWriter):
    """Writes a stage without a graph (an Estimator holding a Keras model): JSON metadata + data files."""

    def __init__(self, instance: Any, files: Optional[Dict[str, bytes]] = None) -> None:
        super().__init__()
        self.instance = instance
        self.files = {k: v for k, v in (files or {}).items() if v is not None}

    def saveImpl(self, path: str) -> None:
        spark = _session(self)
        extra = {"sparkdlLiteVersion": __version__, "formatVersion": FORMAT_VERSION, "files": sorted(self.files)}
        DefaultParamsWriter.saveMetadata(self.instance, path, spark, extraMetadata=extra)
        _write_files(spark, path, self.files)


class StageDataReader(MLReader):
    """Reads what :class:`StageDataWriter` wrote (or Spark's DefaultParamsWriter), refusing pickles."""

    def __init__(self, cls: Type[Any]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        spark = _session(self)
        metadata = _load_metadata(spark, self.cls, path)
        _check_version(metadata, path, f"{self.cls.__name__}.load", required=False)
        files = _read_files(spark, path, metadata, f"{self.cls.__name__}.load")
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if hasattr(instance, "_load_files"):
            instance._load_files(files)
        return instance


class GraphStageReader(MLReader):
    """Reads what :class:`GraphStageWriter` wrote (format 1 or 2), refusing anything it did not write."""

    def __init__(self, cls: Type[Any]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        from sparkdl_lite.core.graph import TFGraph

        spark = _session(self)
        name = self.cls.__name__
        metadata = _load_metadata(spark, self.cls, path)
        _check_version(metadata, path, f"{name}.load", required=True)
        if metadata["formatVersion"] < 2:  # 0.1.0: data/graph.pb, a plain file
            metadata = {**metadata, "files": [GRAPH_FILE]}
        files = _read_files(spark, path, metadata, f"{name}.load")
        if GRAPH_FILE not in files:
            raise FileNotFoundError(f"{name}.load: {path!r} is missing its graph file {'data/' + GRAPH_FILE!r}.")
        info = metadata.get("graph") or {}
        graph_path = f"{path.rstrip('/')}/data/{GRAPH_FILE}"
        try:
            graph = TFGraph.from_bytes(files.pop(GRAPH_FILE), [t["name"] for t in info.get("inputs", [])] or None,
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
            instance._load_files(files)
        return instance
