"""Telling screen readers about a change where the keyboard focus is not."""

from __future__ import annotations

from PySide6.QtGui import QAccessible
from PySide6.QtWidgets import QWidget

try:  # Qt 6.8 and later; spdesk runs on 6.7 too, where nothing is announced
    from PySide6.QtGui import QAccessibleAnnouncementEvent
except ImportError:  # pragma: no cover - only on Qt 6.7
    QAccessibleAnnouncementEvent = None  # type: ignore[assignment,misc]


def announce(widget: QWidget, text: str) -> None:
    """Have a screen reader say ``text`` (from ``widget``'s window) once it has finished what
    it is saying: a run's end, photos added. A label's new text is read only when the user
    goes to it, and the focus on "Open output folder" said nothing of how the run went."""
    if text and QAccessibleAnnouncementEvent is not None:
        QAccessible.updateAccessibility(QAccessibleAnnouncementEvent(widget, text))
