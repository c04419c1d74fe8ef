"""``spdesk`` given files (a file manager's "Open with spdesk"): the window opens with them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import spdesk.cli as cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    """The paths each would-be window was opened with (none is shown)."""
    calls: list[list[Path]] = []
    monkeypatch.setattr(cli, "_open_gui", lambda paths=(): calls.append(list(paths)) or 0)
    return calls


def test_spdesk_with_existing_paths_opens_the_window_with_them(
    tmp_path: Path, opened: list[list[Path]]
) -> None:
    photo = tmp_path / "a photo.jpg"
    photo.write_bytes(b"x")
    assert cli.main([str(photo), str(tmp_path)]) == 0
    assert cli.main(["gui", str(photo)]) == 0  # what the desktop entry runs
    assert cli.main([]) == 0
    assert opened == [[photo, tmp_path], [photo], []]


def test_a_word_that_is_neither_a_command_nor_a_file_is_still_refused(
    tmp_path: Path, opened: list[list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main([str(tmp_path / "missing.jpg")])
    assert refused.value.code == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # a folder named like a command: the command wins
    with pytest.raises(SystemExit):
        cli.main(["models", "--no-such-option"])
    assert opened == []


def test_the_desktop_entry_opens_the_window_with_the_files() -> None:
    entry = Path(__file__).parents[1] / "installer" / "linux" / "spdesk.desktop"
    (exec_line,) = [line for line in entry.read_text().splitlines() if line.startswith("Exec=")]
    assert exec_line == "Exec=spdesk gui %F"


def test_self_test_with_a_command_is_refused_not_run_in_its_place(
    opened: list[list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk --self-test protect photos --out st` said "self-test passed" and exited 0
    without protecting anything."""
    with pytest.raises(SystemExit) as refused:
        cli.main(["--self-test", "protect", "photos", "--out", "st"])
    assert refused.value.code == 2
    assert "--self-test takes no command" in capsys.readouterr().err


def test_with_json_a_protect_that_cannot_run_prints_one_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk protect 'nomatch*.jpg' --out o --json | jq` got nothing to read."""
    missing = str(tmp_path / "nomatch*.jpg")
    status = cli.main(["protect", missing, "--out", str(tmp_path / "o"), "--json"])
    assert status == 2
    failure = json.loads(capsys.readouterr().out)
    assert failure["ok"] is False and failure["exit_code"] == 2
    assert "nomatch*.jpg" in failure["error"]


def test_the_top_level_help_gives_the_exit_statuses_and_the_json_on_failure() -> None:
    epilog = cli.build_parser().format_help()
    for status in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {status}" in epilog
    assert '{"ok": false, "exit_code": 2' in epilog


@pytest.mark.parametrize("entry", ["main([])", "gui_main()"])
def test_spdesk_alone_without_qt_says_what_the_window_needs_not_a_traceback(
    tmp_path: Path, entry: str
) -> None:
    """``spdesk`` and ``spdesk-gui`` alike (the latter's entry point imported Qt first)."""
    script = (
        "import sys\n"
        "sys.modules['PySide6'] = None  # as when Qt was taken out of the install\n"
        f"from spdesk.cli import {entry.split('(')[0]}\n"
        f"sys.exit({entry})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPDESK_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "the app's window needs PySide6" in result.stderr
    assert 'pip install "PySide6-Essentials>=6.7"' in result.stderr
    assert "Traceback" not in result.stderr


def test_the_spdesk_gui_entry_point_is_the_qt_free_one_and_reads_its_own_arguments() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["gui-scripts"]["spdesk-gui"] == "spdesk.cli:gui_main"
    script = "import sys; from spdesk.cli import gui_main; sys.argv = ['spdesk-gui', '--version']"
    script += "; sys.exit(gui_main())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("spdesk "), result


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_after_the_command_finished_leaves_its_exit_status(
    tmp_path: Path, stop: str
) -> None:
    """A signal between the command's end and the process's exit killed it (exit -15 or -2)
    though the command had finished and its JSON said so. The first one is absorbed; a
    second one still stops the process."""
    default = "signal.default_int_handler" if stop == "SIGINT" else "signal.SIG_DFL"
    script = (
        "import os, signal, sys; from spdesk.cli import main\n"
        # As a terminal starts it: a background job of a script starts with SIGINT ignored,
        # and a second signal then does what the ignored one does.
        f"signal.signal(signal.{stop}, {default})\n"
        "sys.argv = ['spdesk', 'models', 'status', '--json']\n"
        "status = main()\n"
        f"os.kill(os.getpid(), signal.{stop})\n"  # the last instant, made certain
        "print('exiting', file=sys.stderr); sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPDESK_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "exiting" in result.stderr, result
    assert isinstance(json.loads(result.stdout), dict)  # its whole object
    twice = script.replace("sys.exit(status)", f"os.kill(os.getpid(), signal.{stop}); " * 2)
    result = subprocess.run(
        [sys.executable, "-c", twice], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == -getattr(signal, stop), result


def test_spdesk_gui_without_a_console_says_what_the_window_needs_in_a_message_box(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows starts gui-scripts without a console: printed, the message went nowhere."""
    import ctypes
    from types import SimpleNamespace

    shown: list[tuple[object, str, str, int]] = []
    box = SimpleNamespace(MessageBoxW=lambda *args: shown.append(args))
    monkeypatch.setattr(ctypes, "windll", SimpleNamespace(user32=box), raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "stderr", None)
    cli._tell_without_a_window("the window needs PySide6")
    assert shown == [(None, "the window needs PySide6", "spdesk", 0x10)]
