"""Conversion records: what ``convaudit convert`` did, how faithful the result is, and the recovery it ran.

Plain data, no torch; ``ConversionReport.to_dict()`` is conversion.json (see docs/schema.md). Also
importable from :mod:`convaudit.documents.records`, where they lived before 1.4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from convaudit.documents.schema import SCHEMA_VERSION, plain
from convaudit.vocab import WeightsOrigin

__all__ = ["ConversionReport", "ConvertedLayer", "Fidelity", "RecoveryStage"]


@dataclass(frozen=True)
class Fidelity:
    """How closely a converted model reproduces the original's function, measured on ``inputs``.

    Non-float output leaves are ignored; a batch whose outputs cannot be compared (their structure or a
    float leaf's shape differs) counts as total disagreement: relative error 1, cosine 0, top-1 agreement 0
    for its samples. A detector's output (per image: boxes, scores, labels, ...) is compared as a set of
    detections matched by label and IoU (``conversion.detections``): samples are images, a lost or an extra
    detection stands against zeros.
    """

    relative_error: float  #: ‖y' − y‖/‖y‖ pooled over samples, of the worst output tensor
    cosine: float  #: mean per-sample cosine of the flattened outputs, of the worst output tensor
    top1_agreement: float | None  #: share of samples with the same argmax (classifier-shaped output: float [N, C])
    samples: int
    inputs: str  #: what they were: "held-out calibration batches", "--holdout inputs", "example inputs"
    #: detector outputs: share of the detections matched, of matched + lost + extra ones (None: not a detector)
    detections_kept: float | None = None


@dataclass(frozen=True)
class RecoveryStage:
    """One stage of label-free recovery and the held-out relative error before and after it."""

    name: str  #: "batchnorm", "blockwise" or "distill"
    steps: int  #: optimiser steps (batchnorm: batches forwarded)
    seconds: float
    error_before: float  #: held-out relative error (Fidelity.relative_error) when the stage started
    error_after: float  #: ... when it ended (after restoring the best state seen)
    stopped: str  #: "done", "steps" (step budget), "time" (time budget) or "interrupted" (Ctrl-C)


@dataclass(frozen=True)
class ConvertedLayer:
    """One conv as converted: before, predicted, measured, and how faithful it is."""

    name: str
    order: str  #: a vocab.Order: "dw_pw" | "pw_dw"
    rank: int  #: channel multiplier m
    exact_rank: int  #: m at which the rewrite is exact
    init: str  #: a vocab.Init: "svd" | "calibrated" | "random"
    energy: float | None  #: weight energy kept (calibrated: of the whitened weight)
    params_before: int
    macs_before: int
    params_predicted: int
    macs_predicted: int
    params_measured: int  #: by the analysis engine on the converted model
    macs_measured: int
    relative_error: float | None  #: ‖y' − y‖/‖y‖ of this layer alone on its real inputs (None: not measurable)
    note: str | None = None


@dataclass(frozen=True)
class ConversionReport:
    """What ``convaudit convert`` did, and the numbers that prove it."""

    model: str
    settings: dict[str, Any]  #: rank, order, init, globs, budgets as asked
    layers: tuple[ConvertedLayer, ...]
    skipped: tuple[tuple[str, str], ...]  #: (layer, reason) for every conv not converted
    params_before: int
    macs_before: int
    params_predicted: int
    macs_predicted: int
    params_measured: int
    macs_measured: int
    output_error: float | None  #: relative error of the model's final output(s) on the example inputs
    costs_match: bool  #: measured params and MACs equal the predicted ones
    notes: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    weights: str = WeightsOrigin.AS_GIVEN  #: as in Analysis
    weights_source: str | None = None
    schema_version: str = SCHEMA_VERSION
    generator: str = "convaudit"  #: marks conversion.json as ours: --force replaces only such artifacts
    verdict: str | None = None  #: "kept", "degraded" or "broken" (fidelity.judge); None: nothing comparable (1.2)
    fidelity: Fidelity | None = None  #: agreement with the original on held-out inputs, before recovery (1.2)
    recovered: Fidelity | None = None  #: the same after label-free recovery (None: no recovery) (1.2)
    recovery: tuple[RecoveryStage, ...] = ()  #: the recovery stages run, in order (1.2)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the conversion; it opens with the verdict and the fidelity figures."""
        doc = plain(dataclasses.asdict(self))
        return {k: doc.pop(k) for k in ("verdict", "fidelity", "recovered", "recovery")} | doc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionReport:
        """Rebuild from ``to_dict()`` output, or a conversion.json of schema 1.0/1.1 (no verdict, no fidelity)."""
        d = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        d["layers"] = tuple(ConvertedLayer(**layer) for layer in d["layers"])
        d["skipped"] = tuple(tuple(s) for s in d["skipped"])
        d["notes"] = tuple(d.get("notes", ()))
        for key in ("fidelity", "recovered"):
            d[key] = Fidelity(**d[key]) if d.get(key) else None
        d["recovery"] = tuple(RecoveryStage(**stage) for stage in d.get("recovery", ()))
        return cls(**d)

    @property
    def max_layer_error(self) -> float | None:
        """Largest per-layer relative error (None when none was measurable)."""
        errors = [layer.relative_error for layer in self.layers if layer.relative_error is not None]
        return max(errors) if errors else None
