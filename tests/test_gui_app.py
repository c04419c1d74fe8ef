"""The app's entry point: where Qt's own notes go."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import qCritical, qInstallMessageHandler, qWarning
from pytestqt.qtbot import QtBot

from spdesk.gui.app import STARTUP_PROBE, qt_messages_to_log


def test_qt_notes_go_to_the_log_file_and_only_critical_ones_to_the_terminal(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    previous = qInstallMessageHandler(qt_messages_to_log)
    try:
        with caplog.at_level(logging.DEBUG, logger="spdesk.qt"):
            qWarning("fromIccProfile: invalid tag offset alignment")  # a thumbnail's ICC
            qCritical("a critical one")
    finally:
        qInstallMessageHandler(previous)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "spdesk.qt"]
    assert said == [
        (logging.WARNING, "default: fromIccProfile: invalid tag offset alignment"),
        (logging.ERROR, "default: a critical one"),
    ]
    err = capfd.readouterr().err
    assert "invalid tag offset" not in err and "a critical one" in err


def _odd_name(folder: Path) -> Path:
    """A photo whose name is not UTF-8 (Latin-1 "café"), or a skip where the file system
    refuses such names."""
    odd = folder / os.fsdecode(b"caf\xe9.jpg")
    try:
        Image.new("RGB", (32, 24), (200, 120, 40)).save(odd, "JPEG")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    return odd


def _run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a Python of its own: a crash there fails the test, not the suite."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
    )


def test_the_app_opens_with_a_photo_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """``spdesk gui café.jpg`` (Latin-1) ended in a segmentation fault, with no message: the
    command line went to Qt, and PySide crashes on an argument holding such bytes."""
    odd = _odd_name(tmp_path)
    code = "import sys; from spdesk.cli import main; sys.exit(main())"
    result = _run_python(code, "gui", str(odd), **{STARTUP_PROBE: "1"})
    assert result.returncode == 0, result.stderr
    assert "window-shown" in result.stdout


def test_paths_given_to_spdesk_gui_keep_their_bytes_and_qt_still_takes_its_options(
    tmp_path: Path,
) -> None:
    """``spdesk-gui -platform minimal café.jpg plain.jpg``: Qt takes its option, the photos
    are queued, the one not in UTF-8 with its bytes as they are."""
    odd = _odd_name(tmp_path)
    code = (
        "import os, sys\n"
        "from spdesk.gui.app import create_app, file_arguments\n"
        "sys.argv[0] = 'spdesk-gui'\n"
        "app = create_app()\n"
        "print(app.platformName())\n"
        "for path in file_arguments(app.arguments()): print(os.fsencode(path).hex())\n"
    )
    result = _run_python(code, "-platform", "minimal", str(odd), "plain.jpg")
    assert result.returncode == 0, result.stderr
    platform, *paths = result.stdout.split()
    assert platform == "minimal"  # the command line's, not QT_QPA_PLATFORM's
    assert [bytes.fromhex(p) for p in paths] == [os.fsencode(odd), b"plain.jpg"]


_GUI_MAIN = (
    "import sys; from spdesk.gui.app import main; sys.argv[0] = 'spdesk-gui'; sys.exit(main())"
)


@pytest.mark.parametrize(
    ("option", "said"), [("--help", "usage: spdesk-gui"), ("--version", "spdesk ")]
)
def test_spdesk_gui_answers_help_and_version_without_a_window(option: str, said: str) -> None:
    """Both opened the window and queued a photo called "--help" (it stayed open for good)."""
    result = _run_python(_GUI_MAIN, option)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(said)
