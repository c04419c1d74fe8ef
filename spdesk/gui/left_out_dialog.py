"""File › Files left out…: everything the added paths held that is not queued, and why."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.files import shown
from spdesk.gui.text import LeftOut, left_out_lines, unreadable_first

# Lines the list shows; past them a count (Copy list copies every one). A folder of RAW files
# and their sidecars can leave out tens of thousands.
SHOWN_LINES = 2_000
COPIED_MS = 2_000  # how long Copy list says "Copied"


class LeftOutDialog(QDialog):
    """The whole list, what could not be read first, each path from the folder it was added
    with, in a box that scrolls (a message box showed 20 names and "… and N more", with no
    way to the rest); Copy list puts every entry, with its full path, on the clipboard.
    Forget list ends it with ``FORGET``: a folder that cannot be read and queued nothing had
    each run said in red until the whole queue was cleared."""

    FORGET = 2  # the dialog's result when the list is to be forgotten (beside Rejected, 0)

    def __init__(self, left_out: Mapping[Path, LeftOut], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Files left out")
        self._left_out = dict(left_out)
        unreadable = sum(entry.unreadable for entry in left_out.values())
        intro = "These are not in the queue, and are not protected."
        if unreadable:
            intro = (
                "Those that cannot be read come first: photos in them may be missing from the "
                "queue. " + intro
            )
        self.intro = QLabel(intro)
        self.intro.setWordWrap(True)
        lines = left_out_lines(left_out)
        if len(lines) > SHOWN_LINES:
            more = len(lines) - SHOWN_LINES
            lines[SHOWN_LINES:] = [f"… and {more} more (Copy list copies them all)"]
        self.list_view = QPlainTextEdit("\n".join(lines))
        self.list_view.setReadOnly(True)
        self.list_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.list_view.setAccessibleName("Files left out, and why")
        self.list_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy list")
        self.copy_button.setToolTip("Copy every entry, with its full path, to the clipboard")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy_list)
        self.forget_button = QPushButton("Forget list")
        self.forget_button.setToolTip(
            "Stop saying these in the queue's title and after each run (the files are not "
            "touched; adding their folder again lists them again)"
        )
        buttons.addButton(self.forget_button, QDialogButtonBox.ButtonRole.ResetRole)
        self.forget_button.clicked.connect(lambda: self.done(self.FORGET))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.list_view, 1)
        layout.addWidget(buttons)
        self.resize(720, 420)

    def full_text(self) -> str:
        """Every entry, what could not be read first, by its full path: ``path: reason``."""
        entries = unreadable_first(self._left_out)
        return "\n".join(f"{shown(path)}: {entry.reason}" for path, entry in entries)

    def copy_list(self) -> None:
        QGuiApplication.clipboard().setText(self.full_text())
        self.copy_button.setText("Copied")  # for a moment: it said so however long after
        QTimer.singleShot(COPIED_MS, self, lambda: self.copy_button.setText("Copy list"))
