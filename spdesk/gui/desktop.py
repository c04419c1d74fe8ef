"""Opening a folder in the system's file manager, and saying so when none can.

``QDesktopServices.openUrl`` returns False (and shows nothing) on a desktop without a file
manager or ``xdg-open``; a button that silently does nothing looks broken, so every caller gets
a sentence to show instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

from spdesk.core.files import shown


def open_in_file_manager(folder: Path) -> str:
    """Open ``folder`` in the file manager: "" when it opened, else a sentence naming the folder."""
    with _system_libraries():
        opened = QDesktopServices.openUrl(folder_url(folder))
    if opened:
        return ""
    return f"No file manager could open the folder. It is: {shown(folder)}"


def folder_url(folder: Path) -> QUrl:
    """The ``file:`` URL of ``folder`` with its bytes percent-encoded as they are on disk:
    ``QUrl.fromLocalFile`` writes a name that is not UTF-8 (Latin-1 "café") as other bytes, a
    folder that does not exist."""
    return QUrl.fromEncoded(folder.absolute().as_uri().encode("ascii"))


@contextmanager
def _system_libraries() -> Iterator[None]:
    """While the file manager is started: the library path the user had. The frozen app's
    launcher puts its own folder first in ``LD_LIBRARY_PATH`` (its Qt, its libstdc++), which
    ``xdg-open`` and the file manager would inherit and load instead of the system's, and may
    fail on; PyInstaller keeps the user's value in ``LD_LIBRARY_PATH_ORIG``."""
    bundled = os.environ.get("LD_LIBRARY_PATH")
    if not getattr(sys, "frozen", False) or bundled is None:
        yield
        return
    original = os.environ.get("LD_LIBRARY_PATH_ORIG")
    if original is None:
        del os.environ["LD_LIBRARY_PATH"]
    else:
        os.environ["LD_LIBRARY_PATH"] = original
    try:
        yield
    finally:
        os.environ["LD_LIBRARY_PATH"] = bundled
