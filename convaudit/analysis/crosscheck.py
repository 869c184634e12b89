"""An independent count with fvcore (the numbers papers quote), shown beside ours.

fvcore jit-traces a *real* forward, so this is opt-in from Python and skipped, with the reason
stated, when the activations of one forward would be too large. The forward runs on a deep copy of
the model, so whatever fvcore leaves behind when its trace fails (hooks on every module) and whatever
the model's own hooks and forward change stay on the copy; a model that cannot be copied is not
cross-checked, and the report says why.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from copy import deepcopy
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

from convaudit.documents.records import CrossCheck

__all__ = ["CONTRACTION_OPS", "MAX_FORWARD_BYTES", "fvcore_count"]

#: Above this many bytes of activations (sum over all ops of one forward) no real forward is run.
MAX_FORWARD_BYTES = 2 * 1024**3

#: fvcore operator names that are tensor contractions, i.e. what our MACs count.
CONTRACTION_OPS = frozenset(
    {"conv", "addmm", "bmm", "einsum", "matmul", "mm", "linear", "scaled_dot_product_attention"}
)


def fvcore_count(
    model: nn.Module, args: tuple, kwargs: Mapping[str, Any], conv_names: Iterable[str], activation_bytes: int
) -> CrossCheck:
    """fvcore's total, its count of the same contraction ops, and its count for our conv modules."""
    try:
        with warnings.catch_warnings():  # fvcore's import touches deprecated torch.jit APIs
            warnings.simplefilter("ignore")
            import fvcore
            from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return _skipped(None, "fvcore is not installed (pip install fvcore)")
    version = getattr(fvcore, "__version__", None)
    if activation_bytes > MAX_FORWARD_BYTES:
        reason = (
            f"a real forward would move ~{activation_bytes / 1024**3:.1f} GiB of activations "
            f"(limit {MAX_FORWARD_BYTES / 1024**3:.0f} GiB); our counts need no forward"
        )
        return _skipped(version, reason)
    try:
        copy = deepcopy(model)
    except Exception as exc:
        return _skipped(
            version, f"the model cannot be copied ({_first_line(exc)}), and fvcore's forward is not run on the original"
        )
    real = tree_map(_materialize, tuple(args))
    target, prefix = copy, ""
    if kwargs:  # fvcore passes positional inputs only: bind the keyword ones in a wrapper
        target, prefix = _BoundKwargs(copy, tree_map(_materialize, dict(kwargs))), "model."
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            fca = FlopCountAnalysis(target, real)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = int(fca.total())
            by_op = fca.by_operator()
            by_module = fca.by_module()
            unsupported = dict(sorted(fca.unsupported_ops().items()))  # a stable order, whatever fvcore's
    except Exception as exc:  # fvcore's jit trace fails on some models; say so, do not fail the report
        return _skipped(version, f"fvcore failed: {_first_line(exc)[:200]}")
    comparable = sum(int(v) for k, v in by_op.items() if k in CONTRACTION_OPS)
    conv = sum(int(by_module.get(prefix + name, 0)) for name in conv_names)
    return CrossCheck(
        "fvcore",
        version,
        macs=total,
        conv_macs=conv,
        skipped=None,
        unsupported_ops=unsupported,
        seconds=None,  # NB: not timed: a wall-clock figure would make two reports of one model differ
        macs_same_ops=comparable,
    )


class _BoundKwargs(nn.Module):
    def __init__(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.kwargs = kwargs

    def forward(self, *args: Any) -> Any:
        return self.model(*args, **self.kwargs)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _skipped(version: str | None, reason: str) -> CrossCheck:
    return CrossCheck("fvcore", version, macs=None, conv_macs=None, skipped=reason)


def _materialize(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.is_meta:
        return torch.randn(t.shape, dtype=t.dtype) if t.is_floating_point() else torch.zeros(t.shape, dtype=t.dtype)
    return t
