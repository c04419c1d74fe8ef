"""The app's entry point given files (``spdesk gui PATH...``, ``spdesk-gui PATH...``): the window
opens and queues them once it shows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from spdesk.gui import app
from spdesk.gui.main_window import MainWindow


@pytest.fixture
def queued(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    """What each window queued; the event loop runs until something is (no device detection)."""
    calls: list[list[Path]] = []
    windows: list[MainWindow] = []
    monkeypatch.setattr(app, "qInstallMessageHandler", lambda _handler: None)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after main() sets it

    def add_paths(window: MainWindow, paths: list[Path]) -> None:
        assert window.isVisible()  # queued once the window is up
        windows.append(window)
        calls.append(paths)

    monkeypatch.setattr(MainWindow, "add_paths", add_paths)
    monkeypatch.setattr(MainWindow, "detect_device", lambda _self: None)

    def exec_until_queued(_self: object = None) -> int:
        qtbot.waitUntil(lambda: bool(calls), timeout=5000)
        for window in windows:
            window.close()
            window.deleteLater()
        return 0

    monkeypatch.setattr(QApplication, "exec", exec_until_queued)
    return calls


def test_the_window_queues_the_paths_it_was_opened_with(
    tmp_path: Path, queued: list[list[Path]]
) -> None:
    assert app.main([tmp_path / "sky.png", tmp_path]) == 0
    assert queued == [[tmp_path / "sky.png", tmp_path]]


def test_the_gui_script_takes_its_paths_from_the_command_line_after_qt_options(
    tmp_path: Path, queued: list[list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Qt has already removed its own options (-style fusion, --reverse) from arguments().
    arguments = ["spdesk-gui", str(tmp_path / "sky.png")]
    monkeypatch.setattr(QApplication, "arguments", lambda _self=None: arguments)
    assert app.main() == 0
    assert queued == [[tmp_path / "sky.png"]]
