"""The command line as a user meets it: exit codes, one-line errors, outputs, --force, --debug."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from convaudit.cli.app import COMMANDS, build_parser, main
from convaudit.cli.shared import Command
from convaudit.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "fixtures" / "bad"
EXAMPLES = ROOT / "examples"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convaudit", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("convaudit: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "args,code,pattern",
    [
        (["report", "nope.py"], EXIT_USAGE, "nope.py: no such file"),
        (["report", str(BAD / "syntax_error.py")], EXIT_FAILURE, "syntax_error.py:3: syntax error"),
        (["report", str(BAD / "raises.py")], EXIT_FAILURE, "build_model() raised RuntimeError: weights file missing"),
        (["report", str(BAD / "no_module.py")], EXIT_FAILURE, "defines no nn.Module"),
        (["report", str(BAD / "several.py")], EXIT_FAILURE, "pick one with --entry NAME"),
        (
            ["report", str(EXAMPLES / "small_cnn.py"), "--input-shape", "1,4,32,32"],
            EXIT_FAILURE,
            "shapes stop matching at 'stem' (Conv2d; input (1, 4, 32, 32)): expects 3 input channels, got 4",
        ),
        (["report", str(EXAMPLES / "small_cnn.py"), "--input-shape", "1,3,x"], EXIT_USAGE, "is not a shape"),
        (["report", "torchvision:resnet5O"], EXIT_FAILURE, "did you mean resnet50"),
    ],
)
def test_bad_input_one_line_and_exit_code(tmp_path: Path, capsys, args: list, code: int, pattern: str) -> None:
    assert main([*args, "-o", str(tmp_path / "r.json")]) == code
    line = one_line_error(capsys.readouterr().err)
    assert pattern in line
    assert not (tmp_path / "r.json").exists()


def test_traceback_only_with_debug(tmp_path: Path) -> None:
    plain = run("report", str(BAD / "raises.py"), cwd=tmp_path)
    assert plain.returncode == EXIT_FAILURE and "Traceback" not in plain.stderr
    one_line_error(plain.stderr)
    debug = run("report", str(BAD / "raises.py"), "--debug", cwd=tmp_path)
    assert debug.returncode == EXIT_FAILURE and "Traceback" in debug.stderr


def test_malicious_checkpoint(tmp_path: Path, capsys) -> None:
    import os

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save(Evil(), tmp_path / "evil.pt")
    assert main(["report", str(tmp_path / "evil.pt"), "-o", str(tmp_path / "r.json")]) == EXIT_FAILURE
    assert "refused" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "pwned").exists()


def test_model_without_convs_exits_zero(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.txt"
    assert main(["report", str(BAD / "no_conv.py"), "-o", str(out), "--no-cross-check"]) == EXIT_OK
    assert "No convolutions found." in out.read_text()
    assert "no convolutions" in capsys.readouterr().out


def test_json_output_and_refusal_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.json"
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out)]) == EXIT_OK
    doc = json.loads(out.read_text())
    assert doc["schema_version"] and doc["totals"]["macs"] > 0
    conv64 = next(layer for layer in doc["layers"] if layer["name"] == "conv64")
    assert (conv64["params"], conv64["separable"]["dw_pw"]["params"]) == (36_864, 4_672)
    assert doc["cross_check"]["macs_same_ops"] == doc["totals"]["macs"]
    printed = capsys.readouterr().out
    assert "costliest candidates" in printed and "wrote" in printed

    out.write_text("keep me")
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out)]) == EXIT_USAGE
    assert "already exists; pass --force" in one_line_error(capsys.readouterr().err)
    assert out.read_text() == "keep me"
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "--force", "-q"]) == EXIT_USAGE
    assert "was not written by convaudit" in one_line_error(capsys.readouterr().err)  # --force replaces only ours
    assert out.read_text() == "keep me"
    out.unlink()
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "-q", "--no-cross-check"]) == EXIT_OK
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "--force", "-q"]) == EXIT_OK
    assert json.loads(out.read_text())["model"].endswith("small_cnn.py")
    assert capsys.readouterr().out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary files left


def test_stdout_and_formats(tmp_path: Path, capsys) -> None:
    assert (
        main(["report", str(EXAMPLES / "small_cnn.py"), "--format", "text", "-o", "-", "--no-cross-check"]) == EXIT_OK
    )
    out = capsys.readouterr().out
    assert "576 + 4,096 = 4,672" in out and "0.127×" in out and "2,304 + 65,536 = 67,840" in out


def test_format_and_suffix_disagree(tmp_path: Path, capsys) -> None:
    assert (
        main(["report", str(EXAMPLES / "small_cnn.py"), "--format", "json", "-o", str(tmp_path / "r.html")])
        == EXIT_USAGE
    )
    one_line_error(capsys.readouterr().err)


def test_an_unknown_suffix_is_a_usage_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.csv"
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out)]) == EXIT_USAGE
    line = one_line_error(capsys.readouterr().err)
    assert "unknown suffix .csv" in line and ".json" in line and ".md" in line and "--format" in line
    assert not out.exists()  # refused before any work, nothing written
    argv = ["report", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "--format", "json", "-q", "--no-cross-check"]
    assert main(argv) == EXIT_OK
    assert json.loads(out.read_text())["model"].endswith("small_cnn.py")  # a format named: written as asked


def test_default_output_is_html(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(EXAMPLES / "residual_net.py"), "-q"]) == EXIT_OK
    html = (tmp_path / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")


def test_html_escapes_model_names(tmp_path: Path) -> None:
    model_py = tmp_path / "evil_names.py"
    model_py.write_text(
        "import torch, torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self._modules['<script>alert(1)</script>'] = nn.Conv2d(3, 8, 3)\n"
        "    def forward(self, x):\n"
        "        return self._modules['<script>alert(1)</script>'](x)\n"
        "def example_inputs():\n"
        "    return (torch.randn(1, 3, 16, 16),)\n"
    )
    assert main(["report", str(model_py), "-o", str(tmp_path / "r.html"), "-q"]) == EXIT_OK
    html = (tmp_path / "r.html").read_text()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html


def test_unknown_option_is_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["report", "x.py", "--frobnicate"])
    assert info.value.code == EXIT_USAGE


# ---------------------------------------------------------------- the command table, formats from the registry


def test_commands_come_from_one_table_with_shared_options() -> None:
    assert [c.name for c in COMMANDS] == ["report", "convert", "check", "diff", "calibrate-device"]
    shared = ["--input-shape", "1,3,8,8", "--entry", "E", "--weights", "w.pt", "--trust", "m", "-o", "o"]
    for command in COMMANDS[:2]:  # the commands that read a model (calibrate-device: tests/test_latency_profile.py)
        args = build_parser().parse_args([command.name, "model.py", *shared, "--force", "-q", "--debug"])
        assert (args.source, args.input_shape, args.entry, args.weights, args.trust, args.output) == (
            "model.py",
            ["1,3,8,8"],
            "E",
            "w.pt",
            ["m"],
            "o",
        )
        assert args.force and args.quiet and args.debug
    extra = Command("hello", "say hello", lambda p: p.add_argument("--name"), lambda args: EXIT_OK)
    assert build_parser([*COMMANDS, extra]).parse_args(["hello", "--name", "x"]).name == "x"


def render_shout(analysis) -> str:
    """A format another package could install: the entry point below names it."""
    return f"{analysis.model_class.upper()} HAS {len(analysis.layers)} CONVS\n"


def test_format_installed_through_an_entry_point_is_accepted(monkeypatch, capsys) -> None:
    real = importlib.metadata.entry_points
    ours = importlib.metadata.EntryPoints(
        [importlib.metadata.EntryPoint("shout", f"{__name__}:render_shout", "convaudit.formats")]
    )

    def entry_points(**params):
        return ours.select(**params) if params.get("group") == "convaudit.formats" else real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    model = str(EXAMPLES / "small_cnn.py")
    assert main(["report", model, "--format", "shout", "-o", "-", "--no-cross-check"]) == EXIT_OK
    assert "SMALLCNN HAS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["report", model, "--format", "yell", "-o", "-"])
    assert info.value.code == EXIT_USAGE and "invalid choice: 'yell'" in capsys.readouterr().err


# ---------------------------------------------------------------- convaudit convert


def test_convert_writes_the_artifact(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sep"
    assert main(["convert", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "--rank", "full"]) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["conversion.html", "conversion.json", "model.py", "state_dict.pt"]
    printed = capsys.readouterr().out
    assert "measured = predicted" in printed and "converted because --rank full asks for it" in printed
    report = json.loads((out / "conversion.json").read_text())
    assert report["costs_match"] and report["output_error"] < 1e-5
    html = (out / "conversion.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "http://" not in html and "https://" not in html


@pytest.mark.parametrize(
    "args,code,pattern",
    [
        (["--rank", "1", "--exact"], EXIT_FAILURE, "--exact: layer"),
        (
            ["--include", "layer9.*"],
            EXIT_USAGE,
            "--include 'layer9.*' matches no conv; convs are named like stem, conv64",
        ),
        (["--rank", "None"], EXIT_USAGE, "give a positive integer or 'full'"),
        (["--target-macs", "0.01"], EXIT_USAGE, "cannot be met"),
        (["--rank", "2", "--energy", "0.9"], EXIT_USAGE, "--rank cannot be combined"),
        (["--init", "calibrated"], EXIT_USAGE, "needs calibration_inputs()"),
        (["--style", "mobilenet"], EXIT_USAGE, "needs --init random"),
        (["--recover"], EXIT_USAGE, "--recover needs calibration_inputs()"),
        (["--recover", "--recover-time", "10x"], EXIT_USAGE, "--recover-time '10x': give a positive duration"),
        (["--recover-time", "10m"], EXIT_USAGE, "--recover-time sets how recovery runs: it needs --recover"),
        (["--recover-steps", "5"], EXIT_USAGE, "--recover-steps sets how recovery runs: it needs --recover"),
        (["--select", "sensitivity", "--target-macs", "0.5"], EXIT_USAGE, "--select sensitivity needs calibration"),
        (["--images", "nowhere"], EXIT_USAGE, "--images nowhere: no such directory"),
    ],
)
def test_convert_bad_input_writes_nothing(tmp_path: Path, capsys, args: list, code: int, pattern: str) -> None:
    out = tmp_path / "sep"
    assert main(["convert", str(EXAMPLES / "small_cnn.py"), "-o", str(out), *args]) == code
    assert pattern in one_line_error(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_convert_refuses_an_existing_directory(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sep"
    out.mkdir()
    assert main(["convert", str(EXAMPLES / "small_cnn.py"), "-o", str(out)]) == EXIT_USAGE
    assert "already exists; pass --force" in one_line_error(capsys.readouterr().err)
    assert main(["convert", str(EXAMPLES / "small_cnn.py"), "-o", str(out), "--force", "-q"]) == EXIT_OK
    assert (out / "model.py").exists()


def test_convert_functional_conv_in_an_untraceable_model(tmp_path: Path, capsys) -> None:
    model_py = tmp_path / "untraceable.py"
    model_py.write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 8, 3, padding=1)\n"
        "        self.w = nn.Parameter(torch.randn(8, 8, 3, 3))\n"
        "    def forward(self, x):\n"
        "        x = self.conv(x)\n"
        "        if x.shape[-1] > 4:\n"
        "            x = F.conv2d(x, self.w, padding=1)\n"
        "        return x\n"
        "def example_inputs():\n"
        "    return (torch.randn(1, 3, 8, 8),)\n"
    )
    # the hook path lists the functional conv by its weight, but a rewrite reaches functional convs only
    # through a symbolic trace: it is no candidate, and the conversion says why
    assert main(["convert", str(model_py), "-o", str(tmp_path / "o"), "--include", "w"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "converted 0 convs" in out and "functional conv seen without a symbolic trace" in out
    assert main(["convert", str(model_py), "-o", str(tmp_path / "o2"), "--include", "nope"]) == EXIT_USAGE
    line = one_line_error(capsys.readouterr().err)
    assert "matches no conv" in line and "without a symbolic trace" in line


def test_report_states_the_mode_and_train_mode_counts_training_branches(tmp_path: Path) -> None:
    model_py = tmp_path / "aux.py"
    model_py.write_text("from tests.fixtures.modes import AuxHead\n\ndef build_model():\n    return AuxHead()\n")
    base = ["report", str(model_py), "--input-shape", "2,3,8,8", "--no-cross-check", "-q"]
    assert main([*base, "-o", str(tmp_path / "eval.json")]) == EXIT_OK
    assert main([*base, "--train-mode", "-o", str(tmp_path / "train.json")]) == EXIT_OK
    evaluated, trained = (json.loads((tmp_path / f"{m}.json").read_text()) for m in ("eval", "train"))
    assert (evaluated["mode"], trained["mode"]) == ("eval", "train")
    assert [layer["name"] for layer in evaluated["layers"]] == ["stem"] and evaluated["uncalled_convs"] == ["aux"]
    assert [layer["name"] for layer in trained["layers"]] == ["stem", "aux"]


# ---------------------------------------------------------------- convert: the verdict, recovery, inputs


@pytest.mark.parametrize("text,seconds", [("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), (" 2m ", 120.0)])
def test_recover_time_reads_seconds_minutes_hours(text: str, seconds: float) -> None:
    from convaudit.cli.convert import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "10x", "-5m", "0s", "1e3s", "m", "10 m", "1,5h", "10min"])
def test_recover_time_refuses_anything_else_in_one_line(text: str) -> None:
    from convaudit.cli.convert import parse_duration
    from convaudit.errors import UsageError

    with pytest.raises(UsageError, match=r"give a positive duration with its unit, like 90s, 10m or 1\.5h"):
        parse_duration(text)


def test_convert_untrained_zoo_model_is_broken_and_says_its_figures_mean_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r18"  # a smaller input than its 224² keeps the test quick; the verdict is the same
    args = ["convert", "torchvision:resnet18", "--rank", "1", "--input-shape", "1,3,64,64", "-o", str(out)]
    assert main(args) == EXIT_OK  # a completed lossy conversion is no failure
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "verdict: broken: the converted model no longer computes what the original did"
    assert lines[1].startswith("  on the example inputs (1 sample; not held out")
    assert lines[2].startswith("  next: try --recover with calibration inputs") and "--rank 2" in lines[2]
    assert (
        lines[3].startswith("warning: the weights are freshly initialised (untrained)") and "mean nothing" in lines[3]
    )
    doc = json.loads((out / "conversion.json").read_text())
    assert doc["verdict"] == "broken" and doc["fidelity"]["inputs"] == "example inputs"
    assert doc["fidelity"]["relative_error"] > 0.5 and doc["notes"][0].startswith("the weights are freshly")
    html = (out / "conversion.html").read_text()
    assert 'class="verdict broken"' in html and "freshly initialised (untrained)" in html


def test_convert_recover_on_the_digits_example(tmp_path: Path, capsys) -> None:
    out = tmp_path / "digits"
    args = ["convert", str(EXAMPLES / "digits_experiment.py"), "--rank", "1", "--recover", "--recover-steps", "3"]
    assert main([*args, "--seed", "1", "-o", str(out)]) == EXIT_OK
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("verdict: ") and lines[1] == (
        "  on the held-out calibration batches (64 samples, never fitted to):"
    )
    assert lines[2].startswith("    before recovery: top-1 agreement ")
    assert lines[3].startswith("    after recovery:  top-1 agreement ") and lines[4].startswith("  recovery: ")
    assert "recover:" not in captured.err  # no progress bar when stderr is no terminal
    doc = json.loads((out / "conversion.json").read_text())
    assert list(doc)[:4] == ["verdict", "fidelity", "recovered", "recovery"] and doc["recovery"]
    assert doc["settings"]["recover_steps"] == 3 and doc["settings"]["seed"] == 1
    assert doc["recovered"]["relative_error"] <= doc["fidelity"]["relative_error"]


def test_convert_max_output_error_exits_1_when_no_conversion_meets_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    args = ["convert", str(EXAMPLES / "digits_experiment.py"), "--max-output-error", "1e-9", "--select", "energy"]
    assert main([*args, "-o", str(out)]) == EXIT_FAILURE
    assert "--max-output-error" in one_line_error(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


IMAGE_MODEL = """
import torch, torch.nn as nn
from torchvision.transforms.functional import pil_to_tensor

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)
    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))

def build_model():
    torch.manual_seed(0)
    return Net()

def example_inputs():
    return (torch.randn(1, 3, 8, 8),)

def preprocess(image):
    return pil_to_tensor(image.convert("RGB").resize((8, 8))).float() / 255
"""


def write_images(directory: Path, n: int, seed: int) -> None:
    from PIL import Image

    gen = __import__("random").Random(seed)
    directory.mkdir()
    for i in range(n):
        pixels = bytes(gen.randrange(256) for _ in range(12 * 10 * 3))
        Image.frombytes("RGB", (12, 10), pixels).save(directory / f"img{i}.png")


def test_convert_images_and_holdout_come_from_image_files(tmp_path: Path, capsys) -> None:
    model_py = tmp_path / "net.py"
    model_py.write_text(IMAGE_MODEL)
    write_images(tmp_path / "images", 6, seed=0)
    write_images(tmp_path / "holdout", 3, seed=1)
    base = ["convert", str(model_py), "--images", str(tmp_path / "images"), "-q"]
    assert main([*base, "-o", str(tmp_path / "split")]) == EXIT_OK
    split = json.loads((tmp_path / "split" / "conversion.json").read_text())["fidelity"]
    assert split["inputs"] == "held-out calibration batches" and 0 < split["samples"] < 6  # 6 images, some held out
    assert main([*base, "--holdout", str(tmp_path / "holdout"), "-o", str(tmp_path / "held")]) == EXIT_OK
    held = json.loads((tmp_path / "held" / "conversion.json").read_text())["fidelity"]
    assert held["inputs"] == "--holdout inputs" and held["samples"] == 3
    assert capsys.readouterr().out == ""


def test_convert_images_need_the_models_preprocessing(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "images", 2, seed=0)
    args = ["convert", str(EXAMPLES / "small_cnn.py"), "--images", str(tmp_path / "images"), "-o", str(tmp_path / "o")]
    assert main(args) == EXIT_USAGE
    assert "--images needs the model's preprocessing: define preprocess(image)" in one_line_error(
        capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()
