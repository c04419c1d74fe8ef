"""The large drop target for photos and folders, with "Add photos…" and "Add folder…" buttons."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from spdesk.core.formats import readable_kinds
from spdesk.gui.widgets.elided import ElidedLabel

PHOTO_KINDS = readable_kinds()
"""The photo formats read here, in the words the window uses (HEIC and AVIF where they can be
read): from the reader's own list, so that the drop area names every format it takes."""


class DropZone(QFrame):
    """Accepts dropped local files and folders; emits ``paths_dropped`` with them."""

    paths_dropped = Signal(list)  # list[Path]
    add_files_clicked = Signal()
    add_folder_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DropZone")
        self.setAcceptDrops(True)
        self.setProperty("hover", False)
        self._title = ElidedLabel("Drop photos or folders here", least="Drop photos")
        self._title.setObjectName("DropTitle")
        self._title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint_label = QLabel(f"{PHOTO_KINDS} · originals are never changed")
        self.hint_label.setObjectName("Muted")
        self.hint_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint_label.setWordWrap(True)  # every format is named: wrapped in a narrow window
        self.add_files_button = QPushButton("Add photos…")
        self.add_folder_button = QPushButton("Add folder…")
        self.add_files_button.clicked.connect(self.add_files_clicked)
        self.add_folder_button.clicked.connect(self.add_folder_clicked)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.add_files_button)
        buttons.addWidget(self.add_folder_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.addStretch(1)
        layout.addWidget(self._title)
        layout.addWidget(self.hint_label)
        layout.addSpacing(6)
        layout.addLayout(buttons)
        layout.addStretch(1)

    def set_compact(self, compact: bool) -> None:
        """Smaller once the queue has photos, so the queue gets the room."""
        self.hint_label.setVisible(not compact)
        self.setMinimumHeight(96 if compact else 220)
        self.setMaximumHeight(110 if compact else 16_777_215)

    def _set_hover(self, hover: bool) -> None:
        self.setProperty("hover", hover)
        self.style().unpolish(self)
        self.style().polish(self)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event):
            event.acceptProposedAction()
            self._set_hover(True)
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_hover(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_hover(False)
        paths = local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)


def local_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    """The local files and folders a drag carries (web links and the like are not photos)."""
    return [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
