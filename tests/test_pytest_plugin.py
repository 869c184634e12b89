"""The pytest plugin as a user meets it: installed through ``pytest11``, a fixture that fails a test over budget."""

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 64, 3, padding=1)

    def forward(self, x):
        return self.body(self.stem(x))


def test_fits(convaudit_check):
    result = convaudit_check(Net(), torch.randn(1, 3, 32, 32), max_macs="10M", max_params="26M")
    assert result.passed


def test_too_costly(convaudit_check):
    convaudit_check(Net(), torch.randn(1, 3, 32, 32), max_macs="1M")


def test_from_the_file(convaudit_check):
    convaudit_check(Net(), torch.randn(1, 3, 32, 32))


def test_bad_unit(convaudit_check):
    convaudit_check(Net(), torch.randn(1, 3, 32, 32), max_latency="30")
"""


def test_it_is_installed_as_a_pytest11_entry_point() -> None:
    (entry,) = importlib.metadata.entry_points(group="pytest11", name="convaudit")
    assert entry.value == "convaudit.pytest_plugin"


def test_user_tests_pass_within_budget_and_fail_over_it_with_the_cli_text(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.convaudit]\nmax-macs = "1M"\n')
    written = pytester.makepyfile(test_model=USER_TESTS).read_text().splitlines()
    body = next(n for n, line in enumerate(written, 1) if "self.body = nn.Conv2d(" in line)  # the oracle
    # a subprocess, as a user runs it (and torch is never imported twice in this process by in-process runs)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    lines = result.stdout.lines
    start = lines.index("convaudit check FAILED: 1 of 1 budgets exceeded — Net (Net, input 1×3×32×32)")
    assert lines[start - 1].startswith("_") and "test_too_costly" in lines[start - 1]  # the failure's whole text
    assert (
        lines[start + 1]
        == "budgets from pyproject.toml [tool.convaudit] (a budget given as a flag or keyword overrides it)"
    )
    assert lines[start + 2] == "  OVER  max-macs: MACs 9.88M > 1M, 888% over (max_macs=)"  # the keyword wins
    assert lines[start + 3].lstrip().startswith("layers responsible, costliest first")
    assert lines[start + 4].split()[:2] == ["body", f"test_model.py:{body}"]  # the line defining the layer
    assert "MACs as dw_pw m=" in lines[start + 4]
    assert "  OVER  max-macs: MACs 9.88M > 1M, 888% over (pyproject.toml [tool.convaudit])" in lines  # from the file
    assert any("UsageError: max_latency=: '30' is not a duration; write a number with a unit" in x for x in lines)
    assert not any("pytest_plugin.py" in x for x in lines[start - 1 : start + 10])  # pytest.fail: no plugin frames


def test_pytest_start_up_does_not_import_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_light="""
import sys


def test_nothing_heavy(convaudit_check):
    assert callable(convaudit_check)
    assert "torch" not in sys.modules
    assert not any(name.startswith("convaudit.") for name in sys.modules if name != "convaudit.pytest_plugin")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_light.py")
    result.assert_outcomes(passed=1)
