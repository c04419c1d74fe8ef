"""About and diagnostics: versions, where files live, what computes; copyable for bug reports.

Library versions come from the installed package metadata, so nothing heavy is imported here;
the device description (which imports torch) is computed in a worker.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from spdesk import __version__
from spdesk.core import paths
from spdesk.core.keys import BACKUP_ADVICE, ENV_KEY, key_path
from spdesk.core.logs import log_file
from spdesk.gui import protect_bridge
from spdesk.gui.desktop import open_in_file_manager
from spdesk.gui.settings import settings_path
from spdesk.gui.style import fit_to_screen, set_primary
from spdesk.gui.workers import TaskRunner

PACKAGES = ("torch", "diffusers", "transformers", "huggingface_hub", "numpy", "Pillow")


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    rows = [
        ("spdesk", __version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Qt", f"{qVersion()} (PySide6 {pyside_version})"),
        ("System", f"{platform.system()} {platform.release()} {platform.machine()}"),
    ]
    return rows + [(name, package_version(name)) for name in PACKAGES]


def key_advice() -> str:
    """What the protection key is for, and what losing it costs (the README's advice)."""
    if os.environ.get(ENV_KEY):
        return f"The protection key comes from {ENV_KEY}: the file above is not used."
    return BACKUP_ADVICE


def models_folder() -> str:
    try:
        from spdesk.core.models.settings import load_settings

        return str(load_settings().root())
    except Exception:  # an unreadable settings file must not break the About box
        return str(paths.models_dir())


def locations() -> list[tuple[str, str]]:
    return [
        ("Models", models_folder()),
        ("Your patterns", str(paths.library_dir())),
        ("Settings", str(settings_path())),
        ("Protection key", str(key_path())),
        ("Log file", log_file()),
        ("Cache", str(paths.cache_dir())),
    ]


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, device: str = "auto") -> None:
        super().__init__(parent)
        self.setWindowTitle("About spdesk")
        self.setMinimumWidth(620)
        self.runner = TaskRunner(self)
        title = QLabel(f"spdesk {__version__}")
        title.setObjectName("SectionTitle")
        blurb = QLabel(
            "Protects your photos from AI edits with changes too small to see that break "
            "Stable Diffusion's image editing."
        )
        blurb.setWordWrap(True)
        blurb.setObjectName("Muted")
        self.device_label = QLabel("detecting…")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.addWidget(title)
        layout.addWidget(blurb)
        # The groups scroll on a short screen: Close and Copy diagnostics stay on it.
        groups = QWidget()
        groups.setObjectName("OptionsHolder")
        groups_lay = QVBoxLayout(groups)
        groups_lay.setContentsMargins(0, 0, 4, 0)
        groups_lay.addWidget(self._box("Versions", versions()))
        self.open_problem = QLabel()  # said when no file manager could open a folder
        self.open_problem.setWordWrap(True)
        self.open_problem.setObjectName("Muted")
        self.open_problem.hide()
        groups_lay.addWidget(self._box("Files", locations(), open_buttons=True))
        self.key_note = QLabel(key_advice())
        self.key_note.setWordWrap(True)
        self.key_note.setObjectName("Muted")
        groups_lay.addWidget(self.key_note)
        groups_lay.addWidget(self.open_problem)
        device_box = QGroupBox("Computing")
        device_form = QFormLayout(device_box)
        device_form.addRow("Device", self.device_label)
        groups_lay.addWidget(device_box)
        groups_lay.addStretch(1)
        self.groups_scroll = QScrollArea()
        self.groups_scroll.setObjectName("OptionsScroll")
        self.groups_scroll.setWidgetResizable(True)
        self.groups_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.groups_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.groups_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no ring: Tab skips it
        self.groups_scroll.setWidget(groups)
        layout.addWidget(self.groups_scroll, 1)
        copy = QPushButton("Copy diagnostics")
        copy.clicked.connect(self.copy_diagnostics)
        self.close_button = QPushButton("Close")
        set_primary(self.close_button, True)  # Enter closes (it opened the first folder)
        self.close_button.clicked.connect(self.accept)
        row = QHBoxLayout()
        row.addWidget(copy)
        row.addStretch(1)
        row.addWidget(self.close_button)
        layout.addLayout(row)
        # As tall as the groups need, or the screen's room (the groups then scroll).
        self.ensurePolished()  # the style sheet's paddings count in the sizes below
        groups.ensurePolished()
        outside = layout.sizeHint().height() - self.groups_scroll.sizeHint().height()
        inside = groups.heightForWidth(660 - 40) if groups.hasHeightForWidth() else -1
        fit_to_screen(self, 660, outside + max(inside, groups.minimumSizeHint().height()) + 4)
        self.runner.succeeded.connect(lambda info: self.device_label.setText(info.describe()))
        self.runner.failed.connect(lambda text: self.device_label.setText(text.splitlines()[0]))
        self.runner.start(protect_bridge.device_task(device))

    def _box(
        self, title: str, rows: list[tuple[str, str]], open_buttons: bool = False
    ) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        for name, value in rows:
            # Zero-width spaces after separators let a long path wrap instead of being clipped.
            label = QLabel(value.replace("/", "/\u200b").replace("\\", "\\\u200b"))
            label.setToolTip(value)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            name_label = QLabel(name)
            # Room for a whole line: the group box's padding squeezed the rows, cutting off
            # underscores and descenders ("huggingface_hub", "x86_64").
            for text in (name_label, label):
                text.setMinimumHeight(text.fontMetrics().height() + 4)
            if not open_buttons:
                form.addRow(name_label, label)
                continue
            show = QPushButton("Show")
            show.setObjectName("Flat")
            show.setAutoDefault(False)  # Enter is Close's, wherever the focus is
            show.setAccessibleName(f"Show {name.lower()} in the file manager")
            show.setStyleSheet("padding: 0 4px;")  # a row as tall as its text
            show.clicked.connect(self._opener(Path(value)))
            line = QHBoxLayout()
            line.addWidget(label, 1)
            line.addWidget(show)
            form.addRow(name_label, line)
        return box

    def _opener(self, path: Path) -> Callable[[], None]:
        def open_it() -> None:
            folder = path if path.is_dir() else path.parent
            folder.mkdir(parents=True, exist_ok=True)
            problem = open_in_file_manager(folder)
            self.open_problem.setText(problem)
            self.open_problem.setVisible(bool(problem))

        return open_it

    def diagnostics(self) -> str:
        lines = [f"{name}: {value}" for name, value in versions() + locations()]
        lines.append(f"Device: {self.device_label.text()}")
        lines.append(f"Executable: {sys.executable}")
        return "\n".join(lines)

    def copy_diagnostics(self) -> None:
        QGuiApplication.clipboard().setText(self.diagnostics())

    def done(self, result: int) -> None:
        self.runner.stop()
        super().done(result)
