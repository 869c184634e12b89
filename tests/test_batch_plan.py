"""Planning a batch: stable, safe file names; keys that change exactly when the report would; forwarded options."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convaudit.batch.plan import BatchRequest, forwarded_options, plan_jobs, report_name
from convaudit.cli.report import add_arguments
from tests.batch_models import good

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{8}")


@given(st.text(min_size=1, max_size=200))
def test_names_are_safe_for_any_spec(spec: str) -> None:
    name = report_name(spec)
    assert SAFE.fullmatch(name) and len(name) <= 69 and name == report_name(spec)


def test_names_are_readable_and_distinct() -> None:
    assert report_name("torchvision:resnet50").startswith("torchvision-resnet50-")
    assert report_name("models/a/model.py").startswith("models-a-model.py-")
    names = {report_name(s) for s in ("a/model.py", "b/model.py", "a-model.py", "timm:a", "timm-a", "../x.py")}
    assert len(names) == 6
    assert report_name("<script>alert(1)</script>.py").startswith("script_alert_1_-script_.py-")


def test_a_file_is_one_model_however_it_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good(tmp_path, "a.py")
    assert report_name("a.py") == report_name("./a.py")
    assert report_name(str(tmp_path / "a.py")).endswith(report_name("a.py")[-9:])  # the same hash
    jobs = plan_jobs(BatchRequest(specs=("a.py", "./a.py", "torchvision:resnet18"), output="o", fmt="html"))
    assert [j.spec for j in jobs] == ["a.py", "torchvision:resnet18"]  # named twice, run once


def keys(tmp_path: Path, **changes: object) -> str:
    request = BatchRequest(specs=("a.py",), output="o", fmt="html", settings={"input_shape": []})
    (job,) = plan_jobs(BatchRequest(**{**request.__dict__, **changes}))  # type: ignore[arg-type]
    return job.key


def test_the_key_changes_with_what_the_report_depends_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good(tmp_path, "a.py")
    base = keys(tmp_path)
    assert keys(tmp_path) == base
    assert keys(tmp_path, jobs=4, timeout_seconds=9.0, quiet=True, force=True, output="elsewhere") == base
    assert keys(tmp_path, fmt="markdown") != base
    assert keys(tmp_path, settings={"input_shape": ["1,3,8,8"]}) != base
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    with_weights = keys(tmp_path, option_files=(str(weights),))
    weights.write_bytes(b"two")
    assert keys(tmp_path, option_files=(str(weights),)) != with_weights != base
    good(tmp_path, "a.py", width=4)
    assert keys(tmp_path) != base
    os.utime(tmp_path / "a.py")  # a touch alone is no change
    assert keys(tmp_path) == keys(tmp_path)


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return parser


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--input-shape", "1,3,8,8", "--input-shape", "1,4"],
        ["--entry=-weird", "--no-cross-check", "--train-mode", "--leaf", "m.C"],
        ["--measure", "--measure-time", "0.5", "--memory-format", "channels_last", "--trust", "pkg"],
    ],
)
def test_forwarded_options_give_the_same_settings(options: list[str]) -> None:
    parser = report_parser()
    args = parser.parse_args(["a.py", "b.py", "-j", "2", "-o", "d", "--format", "json", *options])
    argv, settings = forwarded_options(parser._actions, args)
    assert not {"jobs", "output", "format", "more_sources", "source"} & settings.keys()
    again = parser.parse_args(["x.py", *argv])
    assert forwarded_options(parser._actions, again) == (argv, settings)
    assert not any(token in argv for token in ("-j", "-o", "--format", "b.py"))
