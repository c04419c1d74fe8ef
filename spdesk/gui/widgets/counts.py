"""A spin box for a count of steps that reads as English: "1 step", "8 steps"."""

from __future__ import annotations

from PySide6.QtWidgets import QSpinBox, QWidget


class StepsSpinBox(QSpinBox):
    """A QSpinBox whose suffix follows its value (a fixed " steps" showed "1 steps")."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.valueChanged.connect(self._suffix_for)
        self._suffix_for(self.value())

    def _suffix_for(self, value: int) -> None:
        self.setSuffix(" step" if value == 1 else " steps")
