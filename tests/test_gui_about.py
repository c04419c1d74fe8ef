"""About / diagnostics: versions, file locations and the device, without importing torch."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from spdesk import __version__
from spdesk.core.paths import library_dir
from spdesk.gui.about import AboutDialog
from spdesk.gui.settings import settings_path


def test_about_lists_versions_paths_and_device(qtbot: QtBot) -> None:
    dialog = AboutDialog(device="cpu")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "CPU" in dialog.device_label.text(), timeout=20_000)
    text = dialog.diagnostics()
    assert f"spdesk: {__version__}" in text
    assert "torch: " in text and "diffusers: " in text
    assert str(library_dir()) in text
    assert str(settings_path()) in text
    assert "spdesk.log" in text
    dialog.accept()


def test_a_missing_device_is_a_readable_message(qtbot: QtBot) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: nothing to refuse")
    dialog = AboutDialog(device="cuda")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "detecting" not in dialog.device_label.text(), timeout=20_000)
    assert "No CUDA GPU" in dialog.device_label.text()
    dialog.accept()


def test_show_says_so_when_no_file_manager_opens_the_folder(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QPushButton

    monkeypatch.setattr(QDesktopServices, "openUrl", lambda _url: False)
    dialog = AboutDialog(device="cpu")
    qtbot.addWidget(dialog)
    assert not dialog.open_problem.isVisibleTo(dialog)
    show = next(b for b in dialog.findChildren(QPushButton) if b.text() == "Show")
    show.click()  # the first one: the models folder
    assert dialog.open_problem.isVisibleTo(dialog)
    assert "No file manager" in dialog.open_problem.text()
    # the device is detected in a worker (torch is imported there): let it finish
    qtbot.waitUntil(lambda: "detecting" not in dialog.device_label.text(), timeout=60_000)
    dialog.accept()


def test_the_about_box_rows_have_room_for_a_whole_line(qtbot: QtBot) -> None:
    """Underscores and descenders ("huggingface_hub", "x86_64") were cut off."""
    from PySide6.QtWidgets import QGroupBox, QLabel

    dialog = AboutDialog(device="cpu")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    for box in dialog.findChildren(QGroupBox):
        for label in box.findChildren(QLabel):
            if label.isVisibleTo(dialog) and label.text():
                assert label.height() >= label.fontMetrics().height(), label.text()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=60_000)
    dialog.accept()


def test_about_lists_the_protection_key_and_says_to_back_it_up(qtbot: QtBot) -> None:
    from spdesk.core.keys import key_path

    dialog = AboutDialog(device="cpu")
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=60_000)
    dialog.accept()
    assert f"Protection key: {key_path()}" in dialog.diagnostics()
    assert "Back up" in dialog.key_note.text() and "second copy" in dialog.key_note.text()
    assert dialog.key_note.isVisibleTo(dialog)


def test_enter_closes_about_and_no_scroll_area_takes_the_focus(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter opened the first folder in a file manager; the first Tab stop was a scroll area
    with no focus ring (audit)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    import spdesk.gui.about as about

    opened: list[object] = []
    monkeypatch.setattr(about, "open_in_file_manager", lambda path: opened.append(path) or True)
    dialog = AboutDialog(device="cpu")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.groups_scroll.focusPolicy() == Qt.FocusPolicy.NoFocus
    shows = [b for b in dialog.findChildren(QPushButton) if b.text() == "Show"]
    assert shows and not any(b.autoDefault() for b in shows)
    assert len({b.accessibleName() for b in shows}) == len(shows)  # each says which
    with qtbot.waitSignal(dialog.accepted, timeout=5_000):
        qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert opened == []
