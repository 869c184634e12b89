"""The terminal that talks: stages and bars on a terminal only, quiet with -q, in CI and on a pipe; colour
only on a terminal without NO_COLOR; the report's and the conversion's last lines."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from convaudit.cli.app import main
from convaudit.cli.progress import Progress, colour_enabled, paint, talks
from convaudit.errors import EXIT_OK

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ANSI = "\033["


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def work(progress: Progress) -> None:
    """A command's stages: one without steps, the measurement's steps, recovery's stages."""
    with progress.step("load model.py"):
        pass
    with progress.step("analyse", unit="layer", counting="measure layers"):
        for done in (1, 2, 3):
            progress.steps(done, 3)
    with progress.step("convert"):
        progress.recovery("blockwise", 1, 4, 0.9)
        for step in (1, 2, 3):
            progress.recovery("distill", step, 3, 1.0 / step)


@pytest.mark.parametrize(
    "stream,quiet,environ,shown",
    [
        (Terminal, False, {}, True),
        (Terminal, True, {}, False),  # -q
        (io.StringIO, False, {}, False),  # a pipe, a log file
        (Terminal, False, {"CI": "true"}, False),  # CI, even with a pseudo-terminal
        (Terminal, False, {"CI": "false"}, True),
        (Terminal, False, {"TERM": "dumb"}, False),
    ],
)
def test_progress_only_on_a_terminal_never_quiet_nor_in_ci(
    stream: type, quiet: bool, environ: dict, shown: bool
) -> None:
    out = stream()
    work(Progress(quiet=quiet, stream=out, environ=environ))
    text = re.sub(r"\033\[[\d;]*m", "", out.getvalue())  # colours (tested below)
    assert bool(text) is shown
    if shown:
        for done in ("load model.py", "analyse", "recover: blockwise, 1 step", "recover: distill, 3 steps", "convert"):
            assert f"✓ {done} (" in text, done
        assert "measure layers" in text and "3/3" in text and "loss 0.3333" in text and "layer" in text


def test_a_failed_stage_leaves_no_tick_and_the_error_passes() -> None:
    out = Terminal()
    progress = Progress(quiet=False, stream=out, environ={})
    with pytest.raises(ValueError), progress.step("load broken.py"):
        raise ValueError("broken")
    assert "✓" not in out.getvalue()


def test_a_stage_without_steps_ticks_its_elapsed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import convaudit.cli.progress as module

    monkeypatch.setattr(module, "TICK_SECONDS", 0.01)
    out = Terminal()
    with Progress(quiet=False, stream=out, environ={}).step("analyse"):
        time.sleep(0.2)
    assert out.getvalue().count("analyse … 00:00") >= 3  # redrawn while the stage ran, not only at its start


@pytest.mark.parametrize(
    "stream,environ,coloured",
    [
        (Terminal, {}, True),
        (Terminal, {"NO_COLOR": "1"}, False),
        (Terminal, {"NO_COLOR": ""}, True),
        (io.StringIO, {}, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(stream: type, environ: dict, coloured: bool) -> None:
    out = stream()
    assert colour_enabled(out, environ) is coloured
    assert (paint("next: x", "next", out, environ) != "next: x") is coloured
    work(Progress(quiet=False, stream=out, environ=environ))
    assert (ANSI in out.getvalue()) is coloured


def test_a_closed_stream_is_no_terminal() -> None:
    out = io.StringIO()
    out.close()  # its isatty() raises ValueError
    assert not talks(out, quiet=False, environ={}) and not colour_enabled(out, {})


def test_report_ends_with_what_was_written_and_the_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "--no-cross-check"]) == EXIT_OK
    captured = capsys.readouterr()
    last = captured.out.rstrip("\n").splitlines()[-2:]
    assert last[0] == "wrote report.html (html): open it in a browser"  # relative: it is in the working directory
    assert last[1].startswith("next: convaudit ")
    assert ANSI not in captured.out and captured.err == ""  # not a terminal: no colour, no progress


def test_quiet_report_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(EXAMPLES / "small_cnn.py"), "--no-cross-check", "-q", "-o", "r.json"]) == EXIT_OK
    assert capsys.readouterr() == ("", "")
