"""TFGraph: a frozen TensorFlow 2 graph plus the names, dtypes and shapes of its inputs and outputs.

A ``TFGraph`` is plain data (a serialized ``GraphDef`` with every variable folded into a constant)
so it can be broadcast to Spark executors, written next to a model as protobuf and loaded without
running any Python code from the file. No pyspark import here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["TFGraph", "TensorInfo", "tensor_name"]

# Ops that never count as a graph output when outputs are inferred from a bare GraphDef.
_NON_OUTPUT_OPS = {"NoOp", "Const", "Placeholder", "Assert", "VarHandleOp", "PlaceholderWithDefault"}


def tensor_name(name: str) -> str:
    """Normalise ``"op"`` to ``"op:0"``; leave ``"op:1"`` alone."""
    return name if ":" in name else f"{name}:0"


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and static shape (``None`` for unknown dims) of one graph tensor."""

    name: str
    dtype: str
    shape: Optional[Tuple[Optional[int], ...]]

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}

    @staticmethod
    def from_json(d: Dict[str, Any]) -> TensorInfo:
        shape = d.get("shape")
        return TensorInfo(d["name"], d["dtype"], None if shape is None else tuple(shape))


def _tf():
    from sparkdl_lite.core.tfimport import import_tensorflow  # lazily: building params and importing the package stay fast

    return import_tensorflow()


def _parse_graph_def(data: bytes):
    tf = _tf()
    from google.protobuf.message import DecodeError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"TFGraph.from_bytes: expected bytes holding a serialized GraphDef; got {type(data).__name__}.")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise ValueError(f"TFGraph.from_bytes: the {len(data)} bytes given are not a serialized TensorFlow GraphDef ({exc}).") from exc
    if not graph_def.node:
        raise ValueError(f"TFGraph.from_bytes: the {len(data)} bytes given parse as an empty GraphDef; they are not a frozen TensorFlow graph.")
    known = set(tf.raw_ops.__dict__) if hasattr(tf, "raw_ops") else set()
    for node in graph_def.node:
        if not node.op or (known and node.op not in known and not node.op.startswith("_")):
            raise ValueError(f"TFGraph.from_bytes: the bytes given are not a valid GraphDef: node {node.name!r} has unknown op {node.op!r}.")
    return graph_def


def _import(graph_def):
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.InvalidArgumentError) as exc:
            raise ValueError(f"TFGraph: the GraphDef cannot be imported into TensorFlow: {exc}") from exc
    return g


def _info(t) -> TensorInfo:
    shape = None if t.shape.rank is None else tuple(t.shape.as_list())
    return TensorInfo(t.name, t.dtype.name, shape)


def _infer_io(graph_def, g) -> Tuple[List[str], List[str]]:
    consumed = set()
    for node in graph_def.node:
        for inp in node.input:
            consumed.add(inp.lstrip("^").split(":")[0])
    inputs = [f"{n.name}:0" for n in graph_def.node if n.op == "Placeholder"]
    outputs = []
    for node in graph_def.node:
        if node.name in consumed or node.op in _NON_OUTPUT_OPS:
            continue
        op = g.get_operation_by_name(node.name)
        outputs.extend(t.name for t in op.outputs)
    return inputs, outputs


class TFGraph:
    """A frozen TensorFlow graph: a ``GraphDef`` with no variables, and its input/output tensors.

    Build one with :meth:`from_keras`, :meth:`from_saved_model`, :meth:`from_function` or
    :meth:`from_bytes`; ship it with :meth:`to_bytes`; run it with :meth:`load`.

    Examples
    --------
    >>> import tensorflow as tf
    >>> g = TFGraph.from_function(lambda x: {"y": 2.0 * x},
    ...                           [tf.TensorSpec([None, 3], tf.float32, name="x")])
    >>> g.input_names, g.output_names
    (['x:0'], ['y:0'])
    >>> run = g.load()
    >>> run({"x:0": np.ones((2, 3), np.float32)})["y:0"].tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]

    .. versionadded:: 0.1.0
    """

    def __init__(self, graph_def_bytes: bytes, input_names: Optional[Sequence[str]] = None,
                 output_names: Optional[Sequence[str]] = None) -> None:
        graph_def = _parse_graph_def(graph_def_bytes)
        g = _import(graph_def)
        inferred_in, inferred_out = _infer_io(graph_def, g)
        self._bytes = bytes(graph_def_bytes)
        self._tensors = {}
        self.input_names = [tensor_name(n) for n in (input_names if input_names is not None else inferred_in)]
        self.output_names = [tensor_name(n) for n in (output_names if output_names is not None else inferred_out)]
        for name in self.input_names + self.output_names:
            try:
                self._tensors[name] = _info(g.get_tensor_by_name(name))
            except (KeyError, ValueError):
                raise ValueError(f"TFGraph: tensor {name!r} is not in the graph. Placeholders: {inferred_in}; "
                                 f"unconsumed outputs: {inferred_out}.") from None
        for name in self.input_names:
            if g.get_tensor_by_name(name).op.type not in ("Placeholder", "PlaceholderWithDefault"):
                raise ValueError(f"TFGraph: input {name!r} is a {g.get_tensor_by_name(name).op.type!r} op, not a Placeholder.")
        if not self.output_names:
            raise ValueError("TFGraph: the graph has no output tensor (every op is consumed or a constant).")
        self._all_names = sorted(t.name for op in g.get_operations() for t in op.outputs)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_bytes(cls, data: bytes, input_names: Optional[Sequence[str]] = None,
                   output_names: Optional[Sequence[str]] = None) -> TFGraph:
        """Wrap serialized ``GraphDef`` bytes.

        Inputs default to every ``Placeholder``; outputs to every op output no other op consumes.

        Raises
        ------
        ValueError
            When the bytes are not a GraphDef or a named tensor is missing.
        """
        return cls(data, input_names, output_names)

    @classmethod
    def from_function(cls, fn: Callable, input_signature: Sequence[Any]) -> TFGraph:
        """Trace ``fn`` with ``input_signature`` (``tf.TensorSpec`` list) and freeze it.

        ``fn`` may return a tensor, a list of tensors or a dict; dict keys become output names.
        Input names come from the specs' ``name`` (``input_0``... when unnamed).
        """
        tf = _tf()
        specs = []
        for i, spec in enumerate(input_signature):
            if not isinstance(spec, tf.TensorSpec):
                raise TypeError(f"TFGraph.from_function: input_signature[{i}] must be a tf.TensorSpec; got {spec!r}.")
            specs.append(tf.TensorSpec(spec.shape, spec.dtype, name=spec.name or f"input_{i}"))

        def named(*args):
            result = fn(*args)
            if isinstance(result, dict):
                items = list(result.items())
            elif isinstance(result, (list, tuple)):
                items = [(f"output_{i}", r) for i, r in enumerate(result)]
            else:
                items = [("output", result)]
            return {k: tf.identity(v, name=k) for k, v in items}

        concrete = tf.function(named).get_concrete_function(*specs)
        return cls._freeze(concrete, [s.name for s in specs])

    @classmethod
    def from_keras(cls, model: Any) -> TFGraph:
        """Freeze a Keras 3 model (Sequential or functional) in inference mode.

        Inputs are named after the model's inputs; outputs after ``model.output_names``.
        Dropout is off and batch normalisation uses its moving statistics.
        """
        tf = _tf()
        inputs = model.inputs if getattr(model, "inputs", None) else None
        if not inputs:
            raise ValueError("TFGraph.from_keras: the model has no defined inputs; build it with keras.Input(...) first.")
        specs = []
        in_names = []
        for i, t in enumerate(inputs):
            name = _clean(_layer_name(t) or f"input_{i}")
            in_names.append(name)
            specs.append(tf.TensorSpec([None] + list(t.shape[1:]), t.dtype, name=name))
        outputs = model.outputs
        out_names = [_clean(_layer_name(t) or f"output_{i}") for i, t in enumerate(outputs)]
        if len(out_names) != len(outputs):
            out_names = [f"output_{i}" for i in range(len(outputs))]
        if len(set(out_names)) != len(out_names):
            out_names = [f"{n}_{i}" for i, n in enumerate(out_names)]

        def call(*args):
            y = model(list(args) if len(args) > 1 else args[0], training=False)
            ys = list(y.values()) if isinstance(y, dict) else (list(y) if isinstance(y, (list, tuple)) else [y])
            return {n: tf.identity(v, name=n) for n, v in zip(out_names, ys)}

        concrete = tf.function(call).get_concrete_function(*specs)
        return cls._freeze(concrete, in_names)

    @classmethod
    def from_saved_model(cls, path: str, signature: str = "serving_default") -> TFGraph:
        """Freeze one signature of a TensorFlow SavedModel directory."""
        tf = _tf()
        loaded = tf.saved_model.load(path)
        if signature not in loaded.signatures:
            raise ValueError(f"TFGraph.from_saved_model: signature {signature!r} is not in {path!r}. "
                             f"Available signatures: {sorted(loaded.signatures)}.")
        concrete = loaded.signatures[signature]
        _, kw_specs = concrete.structured_input_signature
        names = sorted(kw_specs)
        specs = [tf.TensorSpec(kw_specs[n].shape, kw_specs[n].dtype, name=n) for n in names]

        def call(*args):
            out = concrete(**dict(zip(names, args)))
            return {k: tf.identity(v, name=k) for k, v in out.items()}

        return cls._freeze(tf.function(call).get_concrete_function(*specs), names)

    @classmethod
    def _freeze(cls, concrete, in_names: Sequence[str]) -> TFGraph:
        tf = _tf()
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(concrete)
        graph_def = frozen.graph.as_graph_def()
        flat = tf.nest.flatten(frozen.structured_outputs)
        keys = sorted(concrete.structured_outputs) if isinstance(concrete.structured_outputs, dict) \
            else [f"output_{i}" for i in range(len(flat))]
        structured = dict(zip(keys, flat))  # nest.flatten orders a dict by its sorted keys
        nodes = {n.name: n for n in graph_def.node}
        out_names = []
        for key in keys:
            t = structured[key]
            src = t.name.split(":")[0]
            node = nodes.get(key)
            if node is not None and node.op == "Identity":
                out_names.append(f"{key}:0")  # the tf.identity(name=key) made while tracing
                continue
            target = key if node is None else f"{key}_out"
            new = graph_def.node.add()
            new.name, new.op = target, "Identity"
            new.input.append(src if t.name.endswith(":0") else t.name)
            new.attr["T"].type = t.dtype.as_datatype_enum
            nodes[target] = new
            out_names.append(f"{target}:0")
        graph_def = _sub_graph(graph_def, [n.split(":")[0] for n in out_names])
        in_tensor_names = [t.name for t in frozen.inputs if t.dtype != tf.resource]
        # Placeholders keep the spec names given to the trace (TF may suffix them on clashes).
        if len(in_tensor_names) != len(in_names):
            in_tensor_names = in_tensor_names[: len(in_names)]
        return cls(graph_def.SerializeToString(deterministic=True), in_tensor_names, out_names)

    # ----------------------------------------------------------------- accessors
    def to_bytes(self) -> bytes:
        """The serialized ``GraphDef`` (protobuf)."""
        return self._bytes

    @property
    def digest(self) -> str:
        """SHA-256 of the GraphDef bytes and the input/output names: the runtime cache key."""
        h = hashlib.sha256(self._bytes)
        h.update(repr((self.input_names, self.output_names)).encode())
        return h.hexdigest()

    def tensor(self, name: str) -> TensorInfo:
        """Info on an input or output tensor; ``ValueError`` listing the names when unknown."""
        full = tensor_name(name)
        if full not in self._tensors:
            raise ValueError(f"TFGraph: tensor {name!r} is not an input or output of this graph. "
                             f"Inputs: {self.input_names}; outputs: {self.output_names}.")
        return self._tensors[full]

    def check_input(self, name: str, owner: str = "TFGraph") -> str:
        full = tensor_name(name)
        if full not in self.input_names:
            raise ValueError(f"{owner}: input tensor {name!r} is not an input of the graph. Available inputs: {self.input_names}.")
        return full

    def check_output(self, name: str, owner: str = "TFGraph") -> str:
        full = tensor_name(name)
        if full not in self._all_names:
            raise ValueError(f"{owner}: output tensor {name!r} is not in the graph. Graph outputs: {self.output_names}.")
        if full not in self._tensors:
            self._tensors[full] = self._lookup(full)
        return full

    def _lookup(self, name: str) -> TensorInfo:
        return _info(_import(_parse_graph_def(self._bytes)).get_tensor_by_name(name))

    @property
    def inputs(self) -> List[TensorInfo]:
        return [self._tensors[n] for n in self.input_names]

    @property
    def outputs(self) -> List[TensorInfo]:
        return [self._tensors[n] for n in self.output_names]

    def to_json(self) -> Dict[str, Any]:
        """Names, dtypes and shapes (no graph bytes): what persistence writes beside the protobuf."""
        return {"inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}

    def load(self, output_names: Optional[Sequence[str]] = None,
             input_names: Optional[Sequence[str]] = None) -> Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]:
        """Return ``run(feeds) -> {output name: ndarray}`` for numpy batches.

        ``feeds`` maps input tensor names to arrays with a leading batch dimension.
        """
        from sparkdl_lite.core import runtime

        outs = [self.check_output(n) for n in (output_names or self.output_names)]
        ins = [self.check_input(n) for n in (input_names or self.input_names)]
        return runtime.load_callable(self._bytes, ins, outs)

    def __repr__(self) -> str:
        return f"TFGraph(inputs={[t.to_json() for t in self.inputs]}, outputs={[t.to_json() for t in self.outputs]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TFGraph) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)


def _clean(name: str) -> str:
    """A Keras tensor or layer name made safe for a TF op name."""
    out = "".join(c if (c.isalnum() or c in "_-./") else "_" for c in str(name).split(":")[0])
    return out if out and out[0].isalnum() else f"t{out}"


def _layer_name(t: Any) -> Optional[str]:
    history = getattr(t, "_keras_history", None)
    return getattr(history[0], "name", None) if history else getattr(t, "name", None)


def _sub_graph(graph_def, keep: Sequence[str]):
    """The nodes that ``keep`` depends on, in their original order (drops the trace's NoOps)."""
    nodes = {n.name: n for n in graph_def.node}
    needed, stack = set(), list(keep)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    out = type(graph_def)()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(n for n in graph_def.node if n.name in needed)
    return out
