"""Pairing the convolutions of two analyses: by name first, then by structure for the rest.

A layer keeps its name across most edits, so names pair first. What is left on both sides (renamed modules,
a block moved into a ``Sequential``) is aligned in execution order with :class:`difflib.SequenceMatcher` over
structural signatures: the exact configuration first (type, kind, channels, kernel, stride, padding, groups),
then, inside a stretch that differs, a looser one (type, kernel, stride, dilation), so a layer renamed *and*
widened still pairs with its old self. Leftovers are aligned within the stretch between the same two
name-matched neighbours before the whole model is tried, so a structural twin far away is not preferred.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from convaudit.documents.records import ConvLayer

__all__ = ["Match", "loose_signature", "match_layers", "signature"]

Signature = Callable[[ConvLayer], Hashable]


@dataclass(frozen=True)
class Match:
    """One layer of either side: a pair (``by`` "name" or "structure"), or one side alone (``by`` None)."""

    base: int | None  #: index into the base's layers; None: added in head
    head: int | None  #: index into the head's layers; None: removed from base
    by: str | None


def signature(layer: ConvLayer) -> Hashable:
    """The layer's configuration, without its name or anything its neighbours decide (shapes, calls)."""
    return (
        layer.type,
        layer.kind,
        layer.dims,
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        layer.groups,
        layer.bias,
    )


def loose_signature(layer: ConvLayer) -> Hashable:
    """What survives widening or narrowing a layer: its type and its spatial configuration."""
    return (layer.type, layer.dims, layer.kernel_size, layer.stride, layer.dilation)


def match_layers(base: Sequence[ConvLayer], head: Sequence[ConvLayer]) -> list[Match]:
    """Every layer of both sides exactly once: the pairs (in base order), then the removed, then the added."""
    head_by_name: dict[str, int] = {}
    for j, layer in enumerate(head):
        head_by_name.setdefault(layer.name, j)
    pairs: dict[int, tuple[int, str]] = {}  # base index → (head index, by)
    for i, layer in enumerate(base):
        same = head_by_name.get(layer.name)
        if same is not None:
            pairs[i] = (same, "name")
    paired_heads = {j for j, _ in pairs.values()}
    rest_base = [i for i in range(len(base)) if i not in pairs]
    rest_head = [j for j in range(len(head)) if j not in paired_heads]
    # first within the stretch between the same name-matched neighbours, then across the whole model
    for stretch_base, stretch_head in _stretches(rest_base, rest_head, sorted(pairs), sorted(paired_heads)):
        for i, j in _align(stretch_base, stretch_head, base, head):
            pairs[i] = (j, "structure")
    paired_heads = {j for j, _ in pairs.values()}
    rest_base = [i for i in range(len(base)) if i not in pairs]
    rest_head = [j for j in range(len(head)) if j not in paired_heads]
    for i, j in _align(rest_base, rest_head, base, head, loose=False):
        pairs[i] = (j, "structure")
    paired_heads = {j for j, _ in pairs.values()}
    matches = [Match(i, j, by) for i, (j, by) in sorted(pairs.items())]
    matches += [Match(i, None, None) for i in range(len(base)) if i not in pairs]
    matches += [Match(None, j, None) for j in range(len(head)) if j not in paired_heads]
    return matches


def _stretches(
    rest_base: list[int], rest_head: list[int], anchors_base: list[int], anchors_head: list[int]
) -> list[tuple[list[int], list[int]]]:
    """The leftovers grouped by how many name-matched layers precede them (the k-th gap on each side)."""

    def gap(index: int, anchors: list[int]) -> int:
        return sum(1 for a in anchors if a < index)

    gaps: dict[int, tuple[list[int], list[int]]] = {}
    for i in rest_base:
        gaps.setdefault(gap(i, anchors_base), ([], []))[0].append(i)
    for j in rest_head:
        gaps.setdefault(gap(j, anchors_head), ([], []))[1].append(j)
    return [gaps[k] for k in sorted(gaps) if gaps[k][0] and gaps[k][1]]


def _align(
    rest_base: list[int],
    rest_head: list[int],
    base: Sequence[ConvLayer],
    head: Sequence[ConvLayer],
    *,
    loose: bool = True,
) -> list[tuple[int, int]]:
    """Pairs of indices whose signatures align in order (exact first; loose inside the differing stretches)."""
    found: list[tuple[int, int]] = []
    strict = difflib.SequenceMatcher(
        None, [signature(base[i]) for i in rest_base], [signature(head[j]) for j in rest_head], autojunk=False
    )
    for tag, b0, b1, h0, h1 in strict.get_opcodes():
        if tag == "equal":
            found += zip(rest_base[b0:b1], rest_head[h0:h1], strict=True)
        elif tag == "replace" and loose:
            inner_base, inner_head = rest_base[b0:b1], rest_head[h0:h1]
            inner = difflib.SequenceMatcher(
                None,
                [loose_signature(base[i]) for i in inner_base],
                [loose_signature(head[j]) for j in inner_head],
                autojunk=False,
            )
            for block in inner.get_matching_blocks():
                found += zip(
                    inner_base[block.a : block.a + block.size], inner_head[block.b : block.b + block.size], strict=True
                )
    return found
