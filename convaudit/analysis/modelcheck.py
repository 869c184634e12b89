"""What a model must be before any stage touches it, checked once, with one clear line each."""

from __future__ import annotations

import torch.nn as nn

from convaudit.errors import ModelLoadError, UsageError

__all__ = ["check_model"]


def check_model(model: object, *, need_data: bool = False) -> list[tuple[str, nn.Module]]:
    """Raise a convaudit error if ``model`` cannot be analysed (or, with ``need_data``, converted).

    Returns ``list(model.named_modules())``, the walk it checked (for callers that walk the model next).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"the model is a {type(model).__name__}, not a torch.nn.Module")
    _check_acyclic(model)
    named = list(model.named_modules())
    for name, m in named:
        cls = type(m)
        quantized = ".quantized" in cls.__module__ and ".reference" not in cls.__module__  # reference convs are float
        if quantized and "Conv" in cls.__name__:
            raise ModelLoadError(
                f"'{name}' is a quantized conv ({cls.__module__}.{cls.__qualname__}); convaudit analyses float "
                "models: analyse the model before quantization"
            )
    if need_data:
        meta = next((n for n, p in model.named_parameters() if p.is_meta), None)
        if meta is not None:
            raise ModelLoadError(
                f"parameter '{meta}' is on the meta device (no data): converting needs real weights; build the model "
                "on the CPU or load its weights (--weights state_dict.pt)"
            )
    return named


def _check_acyclic(model: nn.Module) -> None:
    """A module tree that contains itself would make every walk over it recurse forever."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[str, nn.Module, bool]] = [("", model, False)]
    while stack:
        name, m, leaving = stack.pop()
        if leaving:
            on_path.discard(id(m))
            done.add(id(m))
            continue
        if id(m) in on_path:
            raise ModelLoadError(
                f"the module tree contains a cycle: '{name}' is one of its own ancestors; "
                "a submodule must not hold its parent"
            )
        if id(m) in done:
            continue
        on_path.add(id(m))
        stack.append((name, m, True))
        for child_name, child in m._modules.items():
            if child is not None:
                stack.append((f"{name}.{child_name}" if name else child_name, child, False))
