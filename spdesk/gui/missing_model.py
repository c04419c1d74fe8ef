"""The question asked when a model a feature needs is not installed (fine-tuning, training)."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from spdesk.gui.modal import run_modal


def ask_for_model(parent: QWidget, text: str) -> str:
    """ "models", "file" or "" (cancel): what the user wants to do about a missing model."""
    box = QMessageBox(QMessageBox.Icon.Information, "Model needed", text, parent=parent)
    box.setInformativeText(
        "Download it in Models…, or choose an encoder file or folder you already have."
    )
    models = box.addButton("Open Models…", QMessageBox.ButtonRole.AcceptRole)
    file = box.addButton("Choose a file…", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    run_modal(box)
    clicked = box.clickedButton()
    return "models" if clicked is models else "file" if clicked is file else ""
