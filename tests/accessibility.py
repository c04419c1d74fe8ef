"""Test helpers for what assistive technology gets: announcements and colour contrast."""

from __future__ import annotations

from typing import Any

import pytest


def record_announcements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the app announces to screen readers from now on, in order."""
    from PySide6.QtGui import QAccessible

    told: list[str] = []

    def record(event: Any) -> None:
        if event.type() == QAccessible.Event.Announcement:
            told.append(event.message())

    monkeypatch.setattr(QAccessible, "updateAccessibility", staticmethod(record))
    return told


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two "#rrggbb" colours (1 to 21)."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def mnemonic_letters(window: Any) -> dict[str, list[str]]:
    """The Alt letters of ``window`` (its buttons, its labels with a buddy, its boxes' titles
    and its menus, shown or not), each with the texts that use it: one text each, or Alt with
    that letter goes to only one of them."""
    import re

    from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QMenuBar, QWidget

    texts: list[str] = []
    for widget in window.findChildren(QWidget):
        if isinstance(widget, QMenuBar):
            texts += [action.text() for action in widget.actions()]
        elif isinstance(widget, QAbstractButton) or (
            isinstance(widget, QLabel) and widget.buddy() is not None
        ):
            texts.append(widget.text())
        elif isinstance(widget, QGroupBox):
            texts.append(widget.title())
    letters: dict[str, list[str]] = {}
    for text in texts:
        found = re.search(r"&([^&])", text.replace("&&", ""))
        if found:
            letters.setdefault(found.group(1).lower(), []).append(text)
    return letters


def assert_alt_letters_reach(qtbot: Any, start: Any, keys: dict[Any, Any]) -> None:
    """Alt with each letter, pressed with the focus on ``start``, puts the focus on its control
    (``keys``: Qt key -> widget)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    for key, control in keys.items():
        start.setFocus()
        qtbot.keyClick(start, key, Qt.KeyboardModifier.AltModifier)
        assert QApplication.focusWidget() is control, (key, QApplication.focusWidget())
