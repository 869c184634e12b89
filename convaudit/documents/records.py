"""Plain records handed from stage to stage and consumed by the renderers.

Nothing here imports torch: JSON, text, Markdown and HTML renderers work from these records alone.
Units are in every field name: ``params``, ``macs``, ``flops`` (= 2·macs, only where labelled),
``bytes``, ``seconds``. ``Analysis.to_dict()`` is the versioned JSON document (see docs/schema.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from convaudit.documents.conversion import ConversionReport, ConvertedLayer, Fidelity, RecoveryStage
from convaudit.documents.graph import GraphModule, GraphNode, GraphView
from convaudit.documents.latency import (
    EndToEnd,
    LayerLatency,
    LayerTiming,
    Measurement,
    Recommendation,
    Spread,
    Timing,
    end_to_end_from_dict,
    end_to_end_to_dict,
    latency_from_dict,
    timing_from_dict,
)
from convaudit.documents.schema import SCHEMA_VERSION, plain
from convaudit.documents.tree import ModuleNode, OpCategory, modules_from_dict, other_ops_from_dict
from convaudit.vocab import Mode, WeightsOrigin

__all__ = [
    "MODE_AS_FOUND",
    "SCHEMA_VERSION",
    "Analysis",
    "ConvLayer",
    "ConversionReport",
    "ConvertedLayer",
    "CrossCheck",
    "EndToEnd",
    "Fidelity",
    "GraphModule",
    "GraphNode",
    "GraphView",
    "LayerLatency",
    "LayerTiming",
    "Measurement",
    "ModuleNode",
    "OpCategory",
    "OpSummary",
    "Recommendation",
    "RecoveryStage",
    "Separability",
    "Separable",
    "SeparableCost",
    "Spread",
    "Timing",
    "Totals",
]

#: The mode a schema 1.0 document stands for: it has no ``mode``, the model ran in whatever mode it was in.
MODE_AS_FOUND = "as found"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class SeparableCost:
    """Predicted cost of one separable replacement of a conv (all calls summed for MACs and bytes)."""

    order: str  #: a vocab.Order: "dw_pw" (depthwise then pointwise) or "pw_dw" (pointwise then depthwise, BSConv-U)
    multiplier: int  #: channel multiplier m of the depthwise part (1 for pw_dw)
    params: int
    macs: int
    bytes: int  #: inputs + weights + outputs of both parts, intermediate tensor written and read
    dw_params: int
    pw_params: int
    dw_macs: int
    pw_macs: int
    params_ratio: float  #: params / original params
    macs_ratio: float  #: macs / original macs
    formula: str  #: the MAC formula, for the reader


@dataclass(frozen=True)
class Separable:
    """The separable alternatives of one candidate conv."""

    dw_pw: SeparableCost  #: m = 1, the cheapest depthwise→pointwise form
    pw_dw: SeparableCost  #: pointwise at input resolution, then depthwise with the conv's stride
    dw_pw_exact: SeparableCost  #: m = min(Cout/g·..., kh·kw): reproduces the conv exactly (SVD)


@dataclass(frozen=True)
class Separability:
    """How much of a conv's weight energy each separable form keeps, from its trained weights.

    ``dw_pw[m-1]`` = Σ_{r≤m} s_r² / Σ s_r² over the per-input-channel SVDs (m = 1 … exact rank);
    ``pw_dw[m-1]`` the same over the per-output-channel SVDs. 1.0 means the form at that m is exact.
    """

    dw_pw: tuple[float, ...]
    pw_dw: tuple[float, ...]


@dataclass(frozen=True)
class ConvLayer:
    """One convolution (a module, or a functional call), with its cost over all its calls."""

    name: str  #: qualified module name, or the fx node name for a functional conv
    op: str  #: "module" or "functional"
    type: str  #: e.g. "torch.nn.Conv2d", "torch.nn.functional.conv2d", "mypkg.SameConv2d"
    kind: str  #: a vocab.Kind: standard | grouped | depthwise | pointwise | transposed | custom
    candidate: bool
    skip_reason: str | None
    source: str | None  #: "file:line" where the layer is defined, when known
    dims: int  #: 1, 2 or 3
    in_channels: int
    out_channels: int
    input_shape: Shape  #: of the first call
    output_shape: Shape  #: of the first call
    kernel_size: Shape
    stride: Shape
    padding: Shape | str
    dilation: Shape
    groups: int
    bias: bool
    padding_mode: str
    dtype: str
    calls: int  #: times the conv runs in one forward
    params: int  #: counted once, however many calls
    macs: int  #: summed over calls; bias additions are not MACs
    flops: int  #: 2·macs
    bytes: int  #: inputs + weights + outputs, summed over calls, at the tensors' dtypes
    arithmetic_intensity: float  #: flops per byte
    separable: Separable | None  #: for candidates only
    separability: Separability | None = None  #: from the weights, for candidates with real weights
    input_pixels: int = 0  #: N·∏input spatial, summed over calls (costs of any rewrite are linear in these)
    output_pixels: int = 0  #: N·∏output spatial, summed over calls
    latency: LayerLatency | None = None  #: predicted (and with --measure measured) times, for candidates (1.3)
    recommendation: Recommendation | None = None  #: convert (order, m) or keep, with the reason, for candidates (1.3)

    def replaced(self, **changes: Any) -> ConvLayer:
        """``dataclasses.replace(self, **changes)`` made as ``copy.copy`` makes a copy (no ``__init__``): 1/6 the
        cost, for analysis, which makes one per candidate and one per repeated conv.

        NB: the same record as long as every field is an init field and there is no ``__post_init__``
        (tests/test_documents.py checks both).
        """
        new = object.__new__(ConvLayer)
        new.__dict__.update(vars(self), **changes)
        return new


@dataclass(frozen=True)
class OpSummary:
    """Non-conv ops of one type, aggregated."""

    op: str  #: module type or function name
    category: str  #: "linear algebra" | "normalization" | "pooling" | "elementwise" | "data movement" | ...
    count: int
    macs: int
    params: int


@dataclass(frozen=True)
class Totals:
    """Whole-model totals; ``macs`` covers every costed op, not only convs."""

    params: int
    macs: int
    flops: int  #: 2·macs
    conv_params: int
    conv_macs: int
    conv_macs_share: float  #: conv_macs / macs
    candidates: int
    candidate_params: int
    candidate_macs: int
    params_after: int  #: predicted, every candidate converted depthwise→pointwise at m = 1
    macs_after: int  #: predicted, same conversion
    params_after_ratio: float
    macs_after_ratio: float


@dataclass(frozen=True)
class CrossCheck:
    """An independent count by another tool, shown beside ours."""

    tool: str  #: "fvcore"
    version: str | None
    macs: int | None  #: fvcore's total ("flops" in its API, which are MACs), incl. its norm/pool estimates
    conv_macs: int | None  #: fvcore's count for the conv modules we list, by the same names
    skipped: str | None  #: why no count was taken
    unsupported_ops: dict[str, int] = field(default_factory=dict)  #: ops fvcore skipped, with counts
    seconds: float | None = None
    macs_same_ops: int | None = None  #: fvcore's count of the contraction ops our MACs cover


@dataclass(frozen=True)
class Analysis:
    """Everything ``convaudit report`` knows about one model at one input size."""

    model: str  #: the source as given (path, torchvision:NAME, checkpoint, or class name)
    model_class: str
    input_shapes: tuple[Shape, ...]
    trace_path: str  #: a vocab.TracePath: "fx" (symbolic trace), "hooks" (fake-tensor forward) or "real" (since 1.1)
    trace_note: str | None  #: why this path was taken, and what it cannot see
    layers: tuple[ConvLayer, ...]
    ops: tuple[OpSummary, ...]
    uncosted_ops: tuple[str, ...]  #: ops that ran but have no cost rule (their MACs are not in totals)
    totals: Totals
    cross_check: CrossCheck | None
    graph: GraphView | None
    environment: dict[str, str]
    warnings: tuple[str, ...] = ()
    uncalled_convs: tuple[str, ...] = ()  #: conv modules the forward never ran at these inputs
    timing: Timing | None = None  #: measured layer times, when asked for (real compute)
    weights: str = WeightsOrigin.AS_GIVEN  #: a vocab.WeightsOrigin: loaded | model file | initialised | as given
    weights_source: str | None = None  #: where they came from: the file (and key), the model file, the builder
    #: a vocab.Mode: "eval" (as it runs for inference, the default) or "train" (--train-mode);
    #: "as found" for a schema 1.0 document, analysed in whatever mode the model was in (since 1.1)
    mode: str = Mode.EVAL
    schema_version: str = SCHEMA_VERSION
    measurement: Measurement | None = None  #: how --measure ran (threads, memory format, load) (1.3)
    end_to_end: EndToEnd | None = None  #: the whole model before/after the recommended set, with --measure (1.3)
    modules: tuple[ModuleNode, ...] = ()  #: every module, pre-order, with its subtree's params and MACs (1.4)
    other_ops: tuple[OpCategory, ...] = ()  #: functional ops (not module calls) by category (1.4)
    tree_depth: int = 3  #: how deep the reports show ``modules``; deeper ones fold into their ancestor (1.4)

    @property
    def candidates(self) -> tuple[ConvLayer, ...]:
        """The convs a depthwise-separable rewrite applies to."""
        return tuple(layer for layer in self.layers if layer.candidate)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: plain dicts, lists, numbers and strings."""
        doc = plain(dataclasses.asdict(self))
        doc["end_to_end"] = end_to_end_to_dict(self.end_to_end) if self.end_to_end else None
        return doc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        """Rebuild an Analysis from ``to_dict()`` output (for renderers working from saved JSON)."""
        layers = tuple(_layer_from_dict(d) for d in data["layers"])
        graph = data.get("graph")
        cross = data.get("cross_check")
        return cls(
            model=data["model"],
            model_class=data["model_class"],
            input_shapes=tuple(tuple(s) for s in data["input_shapes"]),
            trace_path=data["trace_path"],
            trace_note=data.get("trace_note"),
            layers=layers,
            ops=tuple(OpSummary(**d) for d in data["ops"]),
            uncosted_ops=tuple(data["uncosted_ops"]),
            totals=Totals(**data["totals"]),
            cross_check=CrossCheck(**cross) if cross else None,
            graph=GraphView.from_dict(graph) if graph else None,
            environment=dict(data["environment"]),
            warnings=tuple(data.get("warnings", ())),
            uncalled_convs=tuple(data.get("uncalled_convs", ())),
            timing=timing_from_dict(data.get("timing")),
            weights=data.get("weights", WeightsOrigin.AS_GIVEN),
            weights_source=data.get("weights_source"),
            mode=data.get("mode", MODE_AS_FOUND),
            schema_version=data["schema_version"],
            measurement=_measurement_from_dict(data.get("measurement")),
            end_to_end=end_to_end_from_dict(data.get("end_to_end")),
            modules=modules_from_dict(data.get("modules")),
            other_ops=other_ops_from_dict(data.get("other_ops")),
            tree_depth=data.get("tree_depth", 3),
        )


_SHAPE_FIELDS = ("input_shape", "output_shape", "kernel_size", "stride", "dilation")


def _layer_from_dict(d: dict[str, Any]) -> ConvLayer:
    d = dict(d)
    for key in _SHAPE_FIELDS:
        d[key] = tuple(d[key])
    if not isinstance(d["padding"], str):
        d["padding"] = tuple(d["padding"])
    sep = d.get("separable")
    if sep:
        d["separable"] = Separable(**{k: SeparableCost(**v) for k, v in sep.items()})
    energy = d.get("separability")
    if energy:
        d["separability"] = Separability(dw_pw=tuple(energy["dw_pw"]), pw_dw=tuple(energy["pw_dw"]))
    d["latency"] = latency_from_dict(d.get("latency"))
    d["recommendation"] = Recommendation(**d["recommendation"]) if d.get("recommendation") else None
    return ConvLayer(**d)


def _measurement_from_dict(d: dict[str, Any] | None) -> Measurement | None:
    return Measurement(**(d | {"unreliable_reasons": tuple(d["unreliable_reasons"])})) if d else None
