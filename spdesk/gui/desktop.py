"""Opening a folder in the system's file manager, and saying so when none can.

``QDesktopServices.openUrl`` returns False (and shows nothing) on a desktop without a file
manager or ``xdg-open``; a button that silently does nothing looks broken, so every caller gets
a sentence to show instead.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices


def open_in_file_manager(folder: Path) -> str:
    """Open ``folder`` in the file manager: "" when it opened, else a sentence naming the folder."""
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
        return ""
    return f"No file manager could open the folder. It is: {folder}"
