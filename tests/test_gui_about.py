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
