"""An independent count with fvcore (the numbers papers quote), shown beside ours.

fvcore jit-traces a *real* forward, so this is opt-in from Python and skipped, with the reason
stated, when the activations of one forward would be too large. BatchNorm running statistics that
a training-mode forward would update are restored afterwards: the user's model is left as found.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

from .records import CrossCheck

__all__ = ["fvcore_count", "MAX_FORWARD_BYTES", "CONTRACTION_OPS"]

#: Above this many bytes of activations (sum over all ops of one forward) no real forward is run.
MAX_FORWARD_BYTES = 2 * 1024**3

#: fvcore operator names that are tensor contractions, i.e. what our MACs count.
CONTRACTION_OPS = frozenset({"conv", "addmm", "bmm", "einsum", "matmul", "mm", "linear", "scaled_dot_product_attention"})


def fvcore_count(
    model: nn.Module, args: tuple, kwargs: Mapping[str, Any], conv_names: Iterable[str], activation_bytes: int
) -> CrossCheck:
    """fvcore's total, its count of the same contraction ops, and its count for our conv modules."""
    try:
        import fvcore
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        return CrossCheck("fvcore", None, None, None, None, skipped="fvcore is not installed (pip install fvcore)")
    version = getattr(fvcore, "__version__", None)
    if activation_bytes > MAX_FORWARD_BYTES:
        reason = (
            f"a real forward would move ~{activation_bytes / 1024**3:.1f} GiB of activations "
            f"(limit {MAX_FORWARD_BYTES / 1024**3:.0f} GiB); our counts need no forward"
        )
        return CrossCheck("fvcore", version, None, None, None, skipped=reason)
    if kwargs:
        return CrossCheck("fvcore", version, None, None, None, skipped="fvcore cannot pass keyword inputs")
    real = tree_map(_materialize, tuple(args))
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            fca = FlopCountAnalysis(model, real)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = int(fca.total())
            by_op = fca.by_operator()
            by_module = fca.by_module()
            unsupported = dict(fca.unsupported_ops())
    except Exception as exc:  # fvcore's jit trace fails on some models; say so, do not fail the report
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CrossCheck("fvcore", version, None, None, None, skipped=f"fvcore failed: {line[:200]}")
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in saved:
                    b.copy_(saved[name])
    comparable = sum(int(v) for k, v in by_op.items() if k in CONTRACTION_OPS)
    conv = sum(int(by_module.get(name, 0)) for name in conv_names)
    return CrossCheck(
        "fvcore", version, macs=total, conv_macs=conv, skipped=None, unsupported_ops=unsupported,
        seconds=time.perf_counter() - start, macs_same_ops=comparable,
    )  # fmt: skip


def _materialize(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.is_meta:
        return torch.randn(t.shape, dtype=t.dtype) if t.is_floating_point() else torch.zeros(t.shape, dtype=t.dtype)
    return t
