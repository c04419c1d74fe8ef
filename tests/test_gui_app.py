"""The app's entry point: where Qt's own notes go."""

from __future__ import annotations

import logging

import pytest
from PySide6.QtCore import qCritical, qInstallMessageHandler, qWarning
from pytestqt.qtbot import QtBot

from spdesk.gui.app import qt_messages_to_log


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
