"""A drop-down for names that can be long (an encoder file, a perturbation from disk)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter, QWidget


class ElidedComboBox(QComboBox):
    """A combo box whose closed face elides a long name in the middle (the start and the
    extension stay readable, where Qt cuts the end off) and whose tooltip holds the current
    entry's full text: an entry's own tooltip (e.g. its full path), else the box's general
    tooltip. (Fusion already opens the list as wide as its longest entry.)"""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._general_tip = ""
        self.currentIndexChanged.connect(self.update_tooltip)

    def setToolTip(self, text: str) -> None:
        self._general_tip = text
        self.update_tooltip()

    def update_tooltip(self) -> None:
        """Show the current entry's full text (call after changing it with signals blocked)."""
        full = self.currentData(Qt.ItemDataRole.ToolTipRole)
        super().setToolTip(str(full) if full else self._general_tip)

    def shown_text(self) -> str:
        """The current entry's text as the closed box shows it (elided to fit)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        return self.fontMetrics().elidedText(
            self.currentText(), Qt.TextElideMode.ElideMiddle, field.width()
        )

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()  # type: ignore[attr-defined]
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
