"""Budgets from [tool.convaudit]: the nearest file wins, per-model sections override, bad files are one line."""

from pathlib import Path

import pytest

from convaudit.errors import UsageError
from convaudit.review.budgets import resolve_budgets
from convaudit.review.pyproject import find_config, read_config, settings_for


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_nearest_file_with_a_convaudit_table_wins(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.convaudit]\nmax-macs = "9G"\n')
    write(tmp_path / "pkg" / "pyproject.toml", '[tool.convaudit]\nmax-macs = "1G"\n')
    write(tmp_path / "pkg" / "sub" / "pyproject.toml", "[tool.ruff]\nline-length = 100\n")  # no table: skipped
    model = write(tmp_path / "pkg" / "sub" / "model.py", "")
    found = find_config([model])
    assert found is not None and found.path == tmp_path / "pkg" / "pyproject.toml"
    assert settings_for(found, str(model)) == {"max-macs": "1G"}
    other = write(tmp_path / "elsewhere" / "model.py", "")
    outer = find_config([other])
    assert outer is not None and outer.path == tmp_path / "pyproject.toml"


def test_the_model_file_comes_before_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path / "a" / "pyproject.toml", '[tool.convaudit]\nmax-params = "1M"\n')
    write(tmp_path / "b" / "pyproject.toml", '[tool.convaudit]\nmax-params = "2M"\n')
    model = write(tmp_path / "a" / "net.py", "")
    found = find_config([model, tmp_path / "b"])
    assert found is not None and found.path.parent == tmp_path / "a"
    found = find_config([tmp_path / "nowhere-near" / "net.py", tmp_path / "b"])
    assert found is not None and found.path.parent == tmp_path / "b"


PER_MODEL = """
[tool.convaudit]
max-macs = "4.2G"
max-params = "26M"

[tool.convaudit.models."torchvision:resnet18"]
max-macs = "2G"

[tool.convaudit.models."models/net.py"]
max-params = "1M"
max-latency = "30ms"
"""


def test_per_model_sections_override_the_top_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = read_config(write(tmp_path / "pyproject.toml", PER_MODEL))
    assert config is not None
    assert settings_for(config, "torchvision:resnet18") == {"max-macs": "2G", "max-params": "26M"}
    assert settings_for(config, "torchvision:resnet50") == {"max-macs": "4.2G", "max-params": "26M"}
    net = write(tmp_path / "models" / "net.py", "")
    expected = {"max-macs": "4.2G", "max-params": "1M", "max-latency": "30ms"}
    assert settings_for(config, str(net)) == expected  # a path key is relative to the pyproject's folder
    monkeypatch.chdir(tmp_path / "models")
    assert settings_for(config, "net.py") == expected  # however the user spells the path
    budgets = {b.name: b.limit for b in resolve_budgets({"max-params": "5M"}, settings_for(config, "net.py"))}
    assert budgets == {"max-macs": 4.2e9, "max-params": 5e6, "max-latency": 0.03}  # the flag wins over the file


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("[tool.convaudit\nmax-macs = 1", "not valid TOML"),
        ('[tool]\nconvaudit = "4G"\n', "must be a table"),
        ('[tool.convaudit]\nmodels = "net.py"\n', "'models' must hold a section per model"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, text: str, pattern: str) -> None:
    path = write(tmp_path / "pyproject.toml", text)
    with pytest.raises(UsageError) as info:
        config = read_config(path)
        assert config is not None
        settings_for(config, "net.py")
    assert pattern in str(info.value) and "pyproject.toml" in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_keys_and_bad_values_name_the_file_and_key(tmp_path: Path) -> None:
    config = read_config(write(tmp_path / "pyproject.toml", '[tool.convaudit]\nmax-mac = "4G"\n'))
    assert config is not None
    with pytest.raises(UsageError, match=r"unknown setting 'max-mac'; the budgets are max-macs, "):
        resolve_budgets({}, settings_for(config, None), config.label)
    config = read_config(write(tmp_path / "pyproject.toml", "[tool.convaudit]\nmax-latency = 30\n"))
    assert config is not None
    with pytest.raises(UsageError, match=r"pyproject.toml \[tool.convaudit\] max-latency: 30 is not a duration"):
        resolve_budgets({}, settings_for(config, None), config.label)
