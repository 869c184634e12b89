"""ONNX files: read as data, turned into a torch module by onnx2torch (``pip install 'convaudit[onnx]'``).

Nothing in the file is run. It is parsed with ``onnx.load`` without its external data; every external
tensor must name a file inside the model's own directory (no absolute path, no ``..``, no symlink out of
it) before that data is read; ``onnx.checker`` validates the whole model; and every node must have an
onnx2torch converter (one line naming the node and its op otherwise). onnx2torch receives the parsed
model, never the path (given a path it writes a temporary file beside it). An ONNX graph is an inference
graph: the module comes back in eval mode.

The example inputs are the inputs the graph declares (initializers excluded), at their static dims and
element types; a symbolic or unknown dim becomes 1 for the batch (and any dim but a spatial one) and the
conv default for a spatial dim (224 for an image), and the note says which.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convaudit.errors import ModelLoadError, UsageError
from convaudit.sources.inputs import DEFAULT_SHAPES, InputForm

__all__ = ["OnnxModel", "load_onnx"]

#: ONNX element types (``TensorProto.DataType`` names) and the torch dtypes of the inputs made for them.
_DTYPES = {
    "FLOAT": torch.float32,
    "DOUBLE": torch.float64,
    "FLOAT16": torch.float16,
    "BFLOAT16": torch.bfloat16,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX file as a torch module, with the inputs its graph declares."""

    model: nn.Module  #: onnx2torch's GraphModule, in eval mode
    form: InputForm  #: the graph's input names and dtypes
    shapes: tuple[tuple[int, ...], ...]  #: the example shapes (empty when the caller gives its own)
    notes: tuple[str, ...]  #: where the shapes came from
    entry: str  #: e.g. "onnx2torch.convert(model.onnx)"


def load_onnx(path: Path, *, shapes_given: bool = False) -> OnnxModel:
    """Read ``path`` as data and convert it with onnx2torch; ``shapes_given``: the graph's shapes are not needed."""
    onnx, onnx2torch = _modules(path)
    proto = _read(onnx, path)
    names, dtypes, shapes, notes = _graph_inputs(onnx, proto, path, need_shapes=not shapes_given)
    _check_converters(onnx2torch, proto, path)
    try:
        model = onnx2torch.convert(proto)
    except Exception as exc:  # third-party code: its failure is a load failure, in one line naming the node
        raise ModelLoadError(f"{path}: {_failing_node(onnx2torch, proto, exc)}") from exc
    return OnnxModel(
        model.eval(), InputForm(names=names, dtypes=dtypes), shapes, notes, f"onnx2torch.convert({path.name})"
    )


def _modules(path: Path) -> tuple[Any, Any]:
    try:
        return importlib.import_module("onnx"), importlib.import_module("onnx2torch")
    except ImportError as exc:
        raise ModelLoadError(
            f"{path}: reading an ONNX file needs onnx and onnx2torch, which are not installed; "
            "pip install 'convaudit[onnx]'"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------- reading the file as data


def _read(onnx: Any, path: Path) -> Any:
    """The ModelProto with its external data (vetted), checked by onnx.checker."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{path}: not an ONNX model ({_first_line(exc)})") from exc
    base = path.resolve().parent
    external = [t for t in _tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        _check_location(tensor, base, path)
    try:
        if external:
            onnx.external_data_helper.load_external_data_for_model(proto, str(base))
        if proto.ByteSize() < 2**31:
            onnx.checker.check_model(proto)
        else:  # NB: a protobuf cannot hold 2 GiB: the checker reads the file (and its vetted data) itself
            onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from exc
    return proto


def _tensors(proto: Any) -> Iterator[Any]:
    """Every TensorProto of the model: initializers and node attributes, in subgraphs and functions too."""

    def graph(g: Any) -> Iterator[Any]:
        yield from g.initializer
        yield from nodes(g.node)

    def nodes(items: Any) -> Iterator[Any]:
        for node in items:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from graph(attr.g)
                for sub in attr.graphs:
                    yield from graph(sub)

    yield from graph(proto.graph)
    for function in proto.functions:
        yield from nodes(function.node)


def _check_location(tensor: Any, base: Path, path: Path) -> None:
    """An external tensor's file must be a regular file inside the model's directory."""
    location = next((e.value for e in tensor.external_data if e.key == "location"), "")
    target = (base / location).resolve()
    inside = bool(location) and not os.path.isabs(location) and ".." not in Path(location).parts
    if not inside or not target.is_relative_to(base) or not target.is_file():
        raise ModelLoadError(
            f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which is not a file beside the model; "
            "convaudit reads external data only from the model's own directory"
        )


# ---------------------------------------------------------------- the graph's inputs


def _graph_inputs(
    onnx: Any, proto: Any, path: Path, need_shapes: bool
) -> tuple[tuple[str, ...], tuple[torch.dtype, ...], tuple[tuple[int, ...], ...], tuple[str, ...]]:
    """(names, dtypes, example shapes, notes) of the inputs the graph declares (initializers are weights)."""
    weights = {t.name for t in proto.graph.initializer}
    inputs = [vi for vi in proto.graph.input if vi.name not in weights]
    if not inputs:
        raise ModelLoadError(f"{path}: the graph declares no inputs; convaudit needs inputs to run it")
    names = tuple(vi.name for vi in inputs)
    dtypes = tuple(_dtype(onnx, vi, path) for vi in inputs)
    if not need_shapes:
        return names, dtypes, (), ()
    shapes, guessed = [], []
    for vi in inputs:
        shape, set_dims = _example_shape(vi, path, names)
        shapes.append(shape)
        guessed += [f"{vi.name}[{i}] {what} → {d}" for i, what, d in set_dims]
    shown = ", ".join(f"{n} {','.join(map(str, s))}" for n, s in zip(names, shapes, strict=True))
    where = "the graph's input" + ("s" if len(names) > 1 else "")
    dims = f" (not fixed in the graph: {'; '.join(guessed)})" if guessed else ""
    note = f"input shape {shown} from {where}{dims}; pass --input-shape to set it"
    return names, dtypes, tuple(shapes), (note,)


def _dtype(onnx: Any, vi: Any, path: Path) -> torch.dtype:
    if vi.type.WhichOneof("value") != "tensor_type":
        raise ModelLoadError(f"{path}: input {vi.name!r} is not a tensor; convaudit can only make tensor inputs")
    elem = onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
    if elem not in _DTYPES:
        raise ModelLoadError(f"{path}: input {vi.name!r} has element type {elem}, which convaudit cannot make")
    return _DTYPES[elem]


def _example_shape(vi: Any, path: Path, names: tuple[str, ...]) -> tuple[tuple[int, ...], list[tuple[int, str, int]]]:
    """The input's shape, with (index, 'name' or 'unknown', value) for each dim the graph leaves open."""
    tensor_type = vi.type.tensor_type
    if not tensor_type.HasField("shape"):
        raise UsageError(
            f"{path}: the graph gives input {vi.name!r} no shape; pass --input-shape once per input "
            f"({', '.join(names)})"
        )
    dims = list(tensor_type.shape.dim)
    shape, set_dims = [], []
    for i, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
            continue
        spatial = DEFAULT_SHAPES.get(len(dims) - 2)
        value = spatial[i - 1] if spatial is not None and i >= 2 else 1  # batch, channels, features: 1
        shape.append(value)
        set_dims.append((i, repr(dim.dim_param) if dim.dim_param else "unknown", value))
    return tuple(shape), set_dims


# ---------------------------------------------------------------- onnx2torch


def _check_converters(onnx2torch: Any, proto: Any, path: Path) -> None:
    """Every node has an onnx2torch converter for its op and opset, or one line naming the first that has none."""
    registry = importlib.import_module("onnx2torch.node_converters.registry")
    opsets = {o.domain: o.version for o in proto.opset_import}
    for i, node in enumerate(proto.graph.node):
        what = f"node {_node_name(node, i)} ({_op(node)})"
        if node.domain not in opsets:
            raise ModelLoadError(f"{path}: {what}: the model imports no opset for domain {node.domain!r}")
        try:
            registry.get_converter(domain=node.domain, operation_type=node.op_type, version=opsets[node.domain])
        except NotImplementedError as exc:
            raise ModelLoadError(
                f"{path}: {what}, opset {opsets[node.domain]}: onnx2torch {_version(onnx2torch)} cannot convert "
                "this op, so the model cannot be analysed"
            ) from exc


def _failing_node(onnx2torch: Any, proto: Any, exc: Exception) -> str:
    """What failed: the first node whose converter raises, found by running them one by one (only on failure)."""
    message = f"onnx2torch {_version(onnx2torch)} failed: {_first_line(exc)}"
    try:
        inference = importlib.import_module("onnx2torch.utils.safe_shape_inference")
        graph_module = importlib.import_module("onnx2torch.onnx_graph")
        registry = importlib.import_module("onnx2torch.node_converters.registry")
        graph = graph_module.OnnxGraph(inference.safe_shape_inference(proto).graph)
        opsets = {o.domain: o.version for o in proto.opset_import}
        for i, node in enumerate(graph.nodes.values()):
            converter = registry.get_converter(
                domain=node.domain, operation_type=node.operation_type, version=opsets[node.domain]
            )
            try:
                converter(node, graph)
            except Exception as inner:
                where = f"node {_node_name(proto.graph.node[i], i)} ({_op(proto.graph.node[i])})"
                return f"{where}: onnx2torch {_version(onnx2torch)} cannot convert it: {_first_line(inner)}"
    except Exception:  # the diagnosis is best effort: the original error stands
        pass
    return message


def _node_name(node: Any, index: int) -> str:
    return repr(node.name) if node.name else f"#{index}"


def _op(node: Any) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def _version(onnx2torch: Any) -> str:
    try:
        return importlib.metadata.version("onnx2torch")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree
        return str(getattr(onnx2torch, "__version__", "")) or "(unknown version)"
