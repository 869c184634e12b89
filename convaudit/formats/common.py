"""Number and path formatting shared by every renderer (no torch here: renderers read records only)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from convaudit.documents.records import Analysis, ConvLayer
from convaudit.formats.latency import latency_lines
from convaudit.vocab import Mode, WeightsOrigin

__all__ = [
    "compact_names",
    "costliest",
    "count",
    "cut_left",
    "describe_layers",
    "kept_energy",
    "kernel",
    "likely_contractions",
    "mode_text",
    "percent",
    "plural",
    "ratio",
    "shape",
    "si",
    "summary_lines",
    "timing_lines",
    "timing_totals",
    "weights_text",
    "where",
]


def count(n: int | None) -> str:
    """36864 → '36,864'; None → '—'."""
    return "—" if n is None else f"{int(n):,}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """1, 'candidate' → '1 candidate'; 17 → '17 candidates' (``many`` for an irregular plural)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def si(n: float | None, unit: str = "") -> str:
    """4089184256 → '4.09 G' (+unit); exact figures live in the JSON."""
    if n is None:
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}".rstrip()
    return f"{int(n)} {unit}".rstrip()


def ratio(r: float | None) -> str:
    """0.12673 → '0.127×'."""
    return "—" if r is None else f"{r:.3f}×"


def shape(s: Any) -> str:
    """(1, 64, 56, 56) → '1×64×56×56'; a string padding mode stays as is."""
    if isinstance(s, str):
        return s
    return "×".join(str(d) for d in s)


def kernel(layer: ConvLayer) -> str:
    """'3×3 /2' style kernel summary with stride when not 1."""
    text = shape(layer.kernel_size)
    if any(s != 1 for s in layer.stride):
        text += f" /{shape(layer.stride)}"
    return text


def where(source: str | None) -> str:
    """A source location relative to the working directory when it lies under it."""
    if not source:
        return ""
    path, _, line = source.rpartition(":")
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = path
    shown = rel if not rel.startswith("..") else path
    return f"{shown}:{line}"


def costliest(analysis: Analysis, n: int = 10) -> list[ConvLayer]:
    """Candidates ordered by the MACs a depthwise→pointwise rewrite (m = 1) would save."""
    saved = [
        (layer.macs - layer.separable.dw_pw.macs, layer)
        for layer in analysis.layers
        if layer.candidate and layer.separable
    ]
    saved.sort(key=lambda pair: pair[0], reverse=True)
    return [layer for _, layer in saved[:n]]


def percent(x: float) -> str:
    """0.9997 → '99.97%': one decimal, more where one would round a partial share to 0% or 100%."""
    for digits in (1, 2):
        text = f"{x:.{digits}%}"
        if not (0 < x < 1 and float(text[:-1]) in (0.0, 100.0)):
            return text
    return "<0.01%" if x < 0.5 else ">99.99%"


def kept_energy(analysis: Analysis) -> float | None:
    """MAC-weighted mean weight energy the m = 1 DW→PW forms keep, over candidates with weights."""
    pairs = [(x.macs, x.separability.dw_pw[0]) for x in analysis.candidates if x.separability and x.separability.dw_pw]
    total = sum(macs for macs, _ in pairs)
    return sum(macs * e for macs, e in pairs) / total if total else None


_CONTRACTION_HINTS = ("attention", "mm", "matmul", "conv", "einsum", "linear", "dot")


def likely_contractions(unsupported: dict[str, int]) -> list[str]:
    """The ops fvcore skipped that do multiply-accumulates (where its count and ours part ways)."""
    return [f"{op} ×{n}" for op, n in unsupported.items() if any(h in op for h in _CONTRACTION_HINTS)]


def timing_totals(analysis: Analysis) -> tuple[float, float, int, int] | None:
    """(seconds of the timed candidates, seconds of their replacements, faster count, timed count), calls included."""
    t = analysis.timing
    if t is None:
        return None
    calls = {layer.name: layer.calls for layer in analysis.layers}
    timed = [
        (x.seconds * calls[x.name], x.seconds_dw_pw * calls[x.name], x.speedup_measured)
        for x in t.layers
        if x.seconds is not None and x.seconds_dw_pw is not None
    ]
    before = sum(seconds for seconds, _, _ in timed)
    after = sum(seconds for _, seconds, _ in timed)
    return before, after, sum(1 for _, _, speedup in timed if (speedup or 0) > 1), len(timed)


def timing_lines(analysis: Analysis) -> list[str]:
    """The measured-time headline: what the MAC ratio promised and what this machine delivered."""
    t = analysis.timing
    totals = timing_totals(analysis)
    if t is None or totals is None:
        return []
    before, after, faster, n = totals
    if not n:
        return [f"measured time ({t.device}): no candidate could be timed"]
    cands = [(x.macs, x.separable.dw_pw.macs) for x in analysis.layers if x.candidate and x.separable]
    promised = sum(macs for macs, _ in cands) / max(sum(dw_pw for _, dw_pw in cands), 1)
    return [
        f"measured on {t.device} ({t.threads} threads, median of {t.repeats} calls): "
        f"candidates take {before * 1e3:.2f} ms, "
        f"their depthwise→pointwise forms {after * 1e3:.2f} ms "
        f"({before / after:.2f}× faster; MACs promised {promised:.2f}×); "
        f"faster for {faster} of {n}"
    ]


def weights_text(weights: str, source: str | None) -> str:
    """Where the weights came from, for one summary line: trained (loaded), the model file's, or fresh."""
    src = f" {source}" if source else ""
    if weights == WeightsOrigin.LOADED:
        return f"trained, loaded from{src}"
    if weights == WeightsOrigin.INITIALISED:
        built = source or "no checkpoint"
        return f"freshly initialised ({built}): energy figures describe random weights; pass --weights"
    if weights == WeightsOrigin.MODEL_FILE:
        return f"as the model file builds them ({source})" if source else "as the model file builds them"
    return "as given to analyze() (not loaded by convaudit)" if weights == WeightsOrigin.AS_GIVEN else f"{weights}{src}"


def mode_text(mode: str) -> str:
    """The mode the model was analysed in, for one summary line."""
    if mode == Mode.EVAL:
        return "eval, as the model runs for inference (--train-mode analyses the training graph)"
    if mode == Mode.TRAIN:
        return "train (--train-mode): the training graph, training-only branches included"
    return f"{mode} (a schema 1.0 document: whatever mode the model was in)"


def summary_lines(analysis: Analysis) -> list[str]:
    """The headline figures, one per line, units named."""
    t = analysis.totals
    lines = [
        f"model: {analysis.model} ({analysis.model_class}), "
        f"inputs {', '.join(shape(s) for s in analysis.input_shapes)}",
        f"weights: {weights_text(analysis.weights, analysis.weights_source)}",
        f"mode: {mode_text(analysis.mode)}",
        f"traced with: {analysis.trace_path}" + (f" — {analysis.trace_note}" if analysis.trace_note else ""),
        f"params: {count(t.params)} · MACs: {count(t.macs)} ({si(t.macs)}; FLOPs = 2·MACs = {si(t.flops)})",
        f"convolutions: {len(analysis.layers)} ({plural(t.candidates, 'candidate')}) · {t.conv_macs_share:.1%} of MACs",
    ]
    if analysis.candidates:
        kept = kept_energy(analysis)
        lines.append(
            f"predicted after converting all candidates (depthwise→pointwise, m=1): params {count(t.params_after)} "
            f"({ratio(t.params_after_ratio)}), MACs {count(t.macs_after)} ({ratio(t.macs_after_ratio)})"
            + ("" if kept is None else f" — the m = 1 forms keep {percent(kept)} of the weight energy")
        )
    c = analysis.cross_check
    if c is not None:
        if c.skipped:
            lines.append(f"cross-check ({c.tool}): skipped — {c.skipped}")
        else:
            same = "matches" if c.macs_same_ops == t.macs else f"differs by {count((c.macs_same_ops or 0) - t.macs)}"
            if c.macs_same_ops != t.macs and c.unsupported_ops:
                same += f"; fvcore did not count {', '.join(likely_contractions(c.unsupported_ops)) or 'some ops'}"
            lines.append(
                f"cross-check ({c.tool} {c.version or ''}): same ops {count(c.macs_same_ops)} MACs ({same}); "
                f"its total incl. norm/pool estimates {count(c.macs)}"
            )
    if analysis.uncosted_ops:
        lines.append(
            f"not costed ({len(analysis.uncosted_ops)}): {', '.join(analysis.uncosted_ops[:8])}"
            + (" …" if len(analysis.uncosted_ops) > 8 else "")
        )
    lines.extend(latency_lines(analysis) or timing_lines(analysis))  # the 1.2 timing headline for 1.2 documents
    if analysis.uncalled_convs:
        lines.append(
            f"never called at these inputs ({len(analysis.uncalled_convs)}): {', '.join(analysis.uncalled_convs[:8])}"
            + (" …" if len(analysis.uncalled_convs) > 8 else "")
        )
    lines.extend(f"note: {w}" for w in analysis.warnings)
    return lines


# ---------------------------------------------------------------- groups of layers, named compactly


def describe_layers(layers: Sequence[ConvLayer], groups: int = 2) -> str:
    """'the 3×3 convs of layer1–4 and the 7×7 conv1': by kernel, costliest first, names by common prefix."""
    by_kernel: dict[str, list[ConvLayer]] = {}
    for layer in layers:
        by_kernel.setdefault(shape(layer.kernel_size), []).append(layer)
    ranked = sorted(by_kernel.items(), key=lambda kv: -sum(x.macs for x in kv[1]))
    parts = []
    for kernel, group in ranked[:groups]:
        if len(group) == 1:
            parts.append(f"the {kernel} {group[0].name}")
        else:
            label = compact_names([x.name for x in group])
            leaves = all("." not in x.name for x in group)
            parts.append(f"the {kernel} convs {'' if leaves else 'of '}{label}")
    rest = sum(len(g) for _, g in ranked[groups:])
    if rest:
        parts.append(plural(rest, "other conv"))
    return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]


def compact_names(names: Sequence[str]) -> str:
    """Module names by their common prefix and the level where they part: 'layer1–4', 'features.1–3'."""
    parts = [name.split(".") for name in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    at = len(common)
    nexts = list(dict.fromkeys(p[at] for p in parts if len(p) > at))
    if not nexts:
        return ".".join(common)
    return ".".join([*common, _ranges(nexts)])


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def _ranges(values: Sequence[str], most: int = 3) -> str:
    """['layer1', 'layer2', 'layer4'] → 'layer1–2, layer4'; other names: the first few, then how many more."""
    matches = [_NUMBERED.match(v) for v in values]
    stems = {m.group(1) for m in matches if m}
    if all(matches) and len(stems) == 1:
        stem = stems.pop()
        numbers = sorted({int(m.group(2)) for m in matches if m})
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        pieces = [f"{stem}{r[0]}" + (f"–{r[-1]}" if len(r) > 1 else "") for r in runs]
        values = pieces
    if len(values) > most:
        return ", ".join(values[:most]) + f" and {len(values) - most} more"
    return " and ".join([", ".join(values[:-1]), values[-1]]) if len(values) > 1 else values[0]


def cut_left(name: str, budget: int) -> str:
    """A dotted name cut from the left, whole parts first: 'layer3.0.downsample.0' → '…downsample.0'."""
    if len(name) <= budget:
        return name
    kept = ""
    for part in reversed(name.split(".")):
        candidate = f"{part}.{kept}" if kept else part
        if len(candidate) > budget - 1:
            break
        kept = candidate
    return "…" + (kept or name[-(budget - 1) :])
