"""Opening a folder in the system's file manager, and saying so when none can.

``QDesktopServices.openUrl`` returns False (and shows nothing) on a desktop without a file
manager or ``xdg-open``; a button that silently does nothing looks broken, so every caller gets
a sentence to show instead.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

from spdesk.core.files import shown


def open_in_file_manager(folder: Path) -> str:
    """Open ``folder`` in the file manager: "" when it opened, else a sentence naming the folder."""
    if QDesktopServices.openUrl(folder_url(folder)):
        return ""
    return f"No file manager could open the folder. It is: {shown(folder)}"


def folder_url(folder: Path) -> QUrl:
    """The ``file:`` URL of ``folder`` with its bytes percent-encoded as they are on disk:
    ``QUrl.fromLocalFile`` writes a name that is not UTF-8 (Latin-1 "café") as other bytes, a
    folder that does not exist."""
    return QUrl.fromEncoded(folder.absolute().as_uri().encode("ascii"))
