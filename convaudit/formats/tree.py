"""The module tree as rows every renderer shares: depth-limited, with subtotals, shares and separable columns.

Rows come from ``Analysis.modules`` (records only, no torch). A row down to ``depth`` stands for its
whole subtree (deeper modules fold into it, as torchinfo's depth and fvcore's ``max_depth`` do); a module
shown with its children gets an extra "own ops" row when its forward does work outside them, so each
level's rows add up to their parent. The DW→PW column is the subtree after converting its candidates at
m = 1 (for a conv row: its m = 1 form), so the totals row's is the summary's predicted MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

from convaudit.documents.records import Analysis, ConvLayer, ModuleNode
from convaudit.formats.common import shape

__all__ = ["OWN_OPS", "TreeRow", "action_of", "batch_of", "owner_of", "reason_label", "tree_rows"]

#: The label of the row holding a module's own ops and parameters (outside its submodules).
OWN_OPS = "(own ops)"


@dataclass(frozen=True)
class TreeRow:
    """One row of the module tree (or an "own ops" row, or the totals row)."""

    name: str  #: qualified module name ("" for the root; OWN_OPS rows carry their module's name)
    label: str  #: the last part of the name (the root's type), or OWN_OPS, or "total"
    depth: int  #: 1 for the root's children (0: the totals row)
    type: str  #: class name, with the kernel for a conv ("Conv2d 3×3 /2") and "×N" for N ≠ 1 calls
    params: int
    macs: int
    share: float  #: of the model's MACs
    output: str  #: output shape (per sample when ``batch_of`` gave a batch), "—" when not called
    after_macs: int | None  #: the subtree after converting its candidates (m = 1); None: no candidate in it
    after_ratio: float | None
    action: str  #: conv: convert | keep | candidate | a short reason; other rows: "k/n cand" over its convs
    conv: ConvLayer | None = None
    folded: int = 0  #: modules below it that this row stands for
    own: bool = False  #: an "own ops" row
    total: bool = False  #: the totals row


_SHORT_REASONS = (
    ("no savings", "no saving"),
    ("weight is computed", "computed"),
    ("functional conv seen without", "unreachable"),
    ("custom subclass", "custom"),
)
_KIND_LABELS = {"depthwise": "depthwise", "pointwise": "1×1", "transposed": "transposed", "custom": "custom"}


def reason_label(layer: ConvLayer) -> str:
    """A few characters for why a conv is not a candidate ("depthwise", "1×1", "no saving", ...)."""
    reason = layer.skip_reason or ""
    for head, label in _SHORT_REASONS:
        if reason.startswith(head):
            return label
    return _KIND_LABELS.get(layer.kind, reason.split(" ")[0][:11] or "skipped")


def action_of(layer: ConvLayer) -> str:
    """convert | keep (the recommendation), candidate (none made), or the short reason it is no candidate."""
    if not layer.candidate:
        return reason_label(layer)
    return layer.recommendation.action if layer.recommendation is not None else "candidate"


def batch_of(modules: tuple[ModuleNode, ...]) -> int | None:
    """The batch size every called module's output shares (then rows show shapes per sample), else None."""
    batches = {n.output_shape[0] for n in modules if n.calls}
    batched = all(len(n.output_shape) > 1 for n in modules if n.calls)
    return batches.pop() if len(batches) == 1 and batched else None


def owner_of(layer: ConvLayer, names: set[str]) -> str:
    """The module a conv's MACs count in: a conv module itself, else the module its functional call ran in."""
    base = layer.name.split(" (functional conv #", 1)[0]
    if base.startswith("functional conv #"):
        return ""
    while base and base not in names:
        base = base.rpartition(".")[0]
    return base


def _inside(name: str, root: str) -> bool:
    return not root or name == root or name.startswith(root + ".")


def tree_rows(analysis: Analysis, depth: int | None = None) -> list[TreeRow]:
    """The tree down to ``depth`` (default: the analysis's ``tree_depth``), then the totals row; [] without modules."""
    nodes = analysis.modules
    if not nodes:
        return []
    limit = analysis.tree_depth if depth is None else depth
    root = nodes[0]
    total = root.macs or 1
    names = {n.name for n in nodes}
    by_module = {layer.name: layer for layer in analysis.layers if layer.op == "module"}
    owned = [(owner_of(layer, names), layer) for layer in analysis.layers]
    batch = batch_of(nodes)
    children: dict[str, list[ModuleNode]] = {}
    below: dict[str, int] = dict.fromkeys(names, 0)  # descendants of each module
    for n in nodes[1:]:
        parent = _parent_of(n, names)
        children.setdefault(parent, []).append(n)
    for n in reversed(nodes[1:]):
        below[_parent_of(n, names)] += below[n.name] + 1

    def figures(name: str, macs: int, own_only: bool = False) -> tuple[int | None, float | None, str]:
        inside = [x for o, x in owned if (o == name if own_only else _inside(o, name))]
        cands = [x for x in inside if x.candidate and x.separable is not None]
        if not inside:
            return None, None, ""
        action = f"{len(cands)}/{len(inside)} cand"
        if not cands:
            return None, None, action
        after = macs - sum(x.macs for x in cands) + sum(x.separable.dw_pw.macs for x in cands if x.separable)
        return after, (after / macs if macs else None), action

    rows: list[TreeRow] = []

    def add(node: ModuleNode) -> None:
        kids = children.get(node.name, [])
        conv = by_module.get(node.conv) if node.conv else None
        shown = node.depth < limit and bool(kids)
        folded = 0 if shown else below[node.name]
        if conv is not None:
            sep = conv.separable
            after_macs, after_ratio = (sep.dw_pw.macs, sep.dw_pw.macs_ratio) if sep else (None, None)
            action = action_of(conv)
        else:
            after_macs, after_ratio, action = figures(node.name, node.macs)
        rows.append(
            TreeRow(
                name=node.name,
                label=node.name.rpartition(".")[2] or node.type,
                depth=max(node.depth, 1),
                type=_type_text(node, conv),
                params=node.params,
                macs=node.macs,
                share=node.macs / total,
                output=_output(node, batch),
                after_macs=after_macs,
                after_ratio=after_ratio,
                action=action,
                conv=conv,
                folded=folded,
            )
        )
        if shown:
            own(node, kids)

    def own(node: ModuleNode, kids: list[ModuleNode]) -> None:
        """The row of a module's own ops and parameters, when it has any, then its children."""
        own_params = node.params - sum(k.params for k in kids)
        if node.direct_macs or own_params:
            after, ratio, action = figures(node.name, node.direct_macs, own_only=True)
            share = node.direct_macs / total
            rows.append(
                TreeRow(
                    node.name,
                    OWN_OPS,
                    node.depth + 1,
                    "",
                    own_params,
                    node.direct_macs,
                    share,
                    "",
                    after,
                    ratio,
                    action,
                    own=True,
                )
            )
        for kid in kids:
            add(kid)

    if limit <= 0 or not children.get(""):
        add(root)
    else:  # the root is the totals row: its children (and own ops) are the top level
        own(root, children[""])
    t = analysis.totals
    after_total = t.macs_after if t.candidates else None
    rows.append(
        TreeRow(
            name="",
            label="total",
            depth=0,
            type=root.type,
            params=root.params,
            macs=root.macs,
            share=1.0 if root.macs else 0.0,
            output=_output(root, batch),
            after_macs=after_total,
            after_ratio=t.macs_after_ratio if t.candidates else None,
            action=f"{t.candidates}/{len(analysis.layers)} cand" if analysis.layers else "",
            total=True,
        )
    )
    return rows


def _parent_of(node: ModuleNode, names: set[str]) -> str:
    name = node.name
    while name:
        name = name.rpartition(".")[0]
        if name in names:
            return name
    return ""


def _type_text(node: ModuleNode, conv: ConvLayer | None) -> str:
    text = node.type
    if conv is not None:
        text += " " + shape(conv.kernel_size)
        if any(s != 1 for s in conv.stride):
            text += f" /{conv.stride[0] if len(set(conv.stride)) == 1 else shape(conv.stride)}"
        if conv.groups > 1:
            text += f" g{conv.groups}"
    if node.calls != 1:
        text += f" ×{node.calls}"
    return text


def _output(node: ModuleNode, batch: int | None) -> str:
    if not node.calls or not node.output_shape:
        return "—"
    return shape(node.output_shape[1:] if batch is not None else node.output_shape)
