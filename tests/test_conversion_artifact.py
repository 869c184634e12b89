"""The conversion artifact: a readable model.py that rebuilds the converted model, written atomically."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import convaudit
from convaudit.conversion.artifact.writer import load_converted, write_artifact
from convaudit.errors import OutputExistsError, UsageError
from convaudit.sources.loader import load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def converted(name: str, **kwargs):
    loaded = load(str(EXAMPLES / f"{name}.py"))
    return loaded, convaudit.convert(loaded.model, loaded.args, loaded.kwargs, **kwargs)


def outputs_equal(a: torch.nn.Module, b: torch.nn.Module, args, kwargs) -> bool:
    with torch.no_grad():
        return torch.allclose(a.eval()(*args, **kwargs), b.eval()(*args, **kwargs), rtol=1e-5, atol=1e-6)


def test_generated_model_py_needs_only_torch(tmp_path: Path) -> None:
    loaded, c = converted("small_cnn", rank=1)
    out = write_artifact(
        tmp_path / "out", c.model, c.report, c.plan, (loaded.args, loaded.kwargs), source=loaded.source
    )
    assert sorted(p.name for p in out.iterdir()) == ["conversion.json", "model.py", "state_dict.pt"]
    code = (out / "model.py").read_text()
    assert "class ConvertedModel(torch.nn.Module)" in code and "def forward(self, x" in code
    probe = (
        "import sys, torch\n"
        "from model import load\n"
        "m = load()\n"
        "assert not any(k.startswith('convaudit') for k in sys.modules), [k for k in sys.modules if 'convaudit' in k]\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == c.report.params_measured
    assert outputs_equal(load_converted(out), c.model, loaded.args, loaded.kwargs)


def test_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    loaded, c = converted("small_cnn", rank=2)
    out = write_artifact(tmp_path / "o", c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source)
    state = torch.load(out / "state_dict.pt", weights_only=True)
    assert state.keys() == c.model.state_dict().keys()


@pytest.mark.parametrize("name", ["dynamic_net", "residual_net"])
def test_replay_for_models_that_cannot_be_written_as_code(tmp_path: Path, name: str) -> None:
    loaded, c = converted(name, rank=1)
    out = write_artifact(tmp_path / "o", c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source)
    code = (out / "model.py").read_text()
    assert "SOURCE = " in code and "rebuild_structure" in code
    assert outputs_equal(load_converted(out), c.model, loaded.args, {})


def test_two_inputs_and_keywords(tmp_path: Path) -> None:
    loaded, c = converted("two_inputs", rank="full")
    out = write_artifact(tmp_path / "o", c.model, c.report, c.plan, (loaded.args, loaded.kwargs), source=loaded.source)
    assert outputs_equal(load_converted(out), c.model, loaded.args, loaded.kwargs)


def test_existing_directory_is_kept_without_force(tmp_path: Path) -> None:
    loaded, c = converted("small_cnn", rank=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        write_artifact(out, c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source)
    assert (out / "mine.txt").read_text() == "keep"
    with pytest.raises(UsageError, match=r"not written by convaudit \(it holds 'mine.txt'.*left it alone"):
        write_artifact(out, c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source, force=True)
    assert (out / "mine.txt").read_text() == "keep"  # --force replaces only convaudit's own artifact
    (out / "mine.txt").unlink()
    write_artifact(out, c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source, force=True)  # empty
    write_artifact(out, c.model, c.report, c.plan, (loaded.args, {}), source=loaded.source, force=True)  # ours
    assert (out / "model.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directories left
