"""The pytest plugin (entry point ``pytest11``): a ``convaudit_check`` fixture that fails a test over budget.

    def test_backbone_fits(convaudit_check):
        convaudit_check(build_model(), torch.randn(1, 3, 224, 224), max_macs="4.2G", max_latency="30ms")

The test fails (``pytest.fail``) with the explanation ``convaudit check`` prints: each exceeded budget,
the layers responsible and what converting them saves. Budgets not given as keywords come from
``[tool.convaudit]`` in the nearest pyproject.toml above the working directory (``config=False``: only the
keywords). :func:`convaudit_check` is also a plain function, for use outside the fixture.

Nothing is imported at pytest start-up but pytest itself: convaudit's analysis (and torch) is imported
the first time the callable runs, so a test suite that does not use it pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from convaudit.documents.check import CheckResult

__all__ = ["convaudit_check", "convaudit_check_fixture"]


def convaudit_check(
    model: Any,
    inputs: Any = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    max_macs: str | int | None = None,
    max_params: str | int | None = None,
    max_conv_macs: str | int | None = None,
    max_layer_macs: str | int | None = None,
    max_candidate_share: str | float | None = None,
    max_latency: str | None = None,
    config: bool | str | Path = True,
    name: str | None = None,
    leaf_types: tuple[type, ...] = (),
    train_mode: bool = False,
) -> CheckResult:
    """Analyse ``model`` at ``inputs`` and fail the running test when a budget is exceeded.

    Args:
        model: an ``nn.Module`` (left as found: the analysis restores everything it touches).
        inputs: a tensor or a tuple of positional inputs (real or ``device="meta"``); ``kwargs`` keyword inputs.
        max_macs ... max_latency: budgets written as for ``convaudit check`` (``"4.2G"``, ``"30ms"``, ``"25%"``).
        config: True: budgets not given here come from the nearest pyproject.toml; a path: from that file;
            False: only these keywords.
        name: the model's key in ``[tool.convaudit.models."..."]`` (default: none, the top-level budgets).
    Returns:
        The CheckResult, when every budget holds.
    """
    from convaudit.errors import UsageError
    from convaudit.formats.check import render_check_text
    from convaudit.review.budgets import resolve_budgets
    from convaudit.review.check import analyse_for_check, check_analysis
    from convaudit.review.pyproject import find_config, read_config, settings_for

    flags = {
        "max-macs": max_macs,
        "max-params": max_params,
        "max-conv-macs": max_conv_macs,
        "max-layer-macs": max_layer_macs,
        "max-candidate-share": max_candidate_share,
        "max-latency": max_latency,
    }
    found = None
    if isinstance(config, (str, Path)):
        found = read_config(config)
        if found is None:
            raise UsageError(f"config={str(config)!r}: it has no [tool.convaudit] table; add one with the budgets")
    elif config:
        found = find_config([Path.cwd()])
    settings = settings_for(found, name) if found else None
    label = found.label if found else "pyproject.toml [tool.convaudit]"
    budgets = resolve_budgets(flags, settings, label, flag_style=lambda n: f"{n.replace('-', '_')}=")
    inputs = inputs if inputs is None or isinstance(inputs, tuple) else (inputs,)
    analysis = analyse_for_check(model, inputs, kwargs, source=name, leaf_types=leaf_types, train_mode=train_mode)
    result = check_analysis(analysis, budgets, source=name, config=found.label if found else None)
    if not result.passed:
        pytest.fail(render_check_text(result), pytrace=False)
    return result


@pytest.fixture(name="convaudit_check")
def convaudit_check_fixture() -> Callable[..., CheckResult]:
    """``convaudit_check(model, inputs, max_macs="4.2G", ...)``: fails the test over budget (see the module)."""
    return convaudit_check
