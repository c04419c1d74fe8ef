"""Modal dialogs that leave nothing behind once answered."""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtWidgets import QDialog

Dialog = TypeVar("Dialog", bound=QDialog)


def run_modal(dialog: Dialog) -> int:
    """``dialog.exec()``, then the dialog is deleted once control returns to the event loop.

    A dialog made with a parent belongs to that parent: without this each opening of Models,
    Preview, Train or a question box stayed alive, hidden, until the main window closed (with
    its photos and its worker threads' objects). Its answer can still be read until the caller
    returns to the event loop.
    """
    result = dialog.exec()
    dialog.deleteLater()
    return int(result)
