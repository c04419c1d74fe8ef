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
