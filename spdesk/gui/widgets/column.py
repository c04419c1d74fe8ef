"""A column that scrolls down where the window is shorter than its content, never sideways."""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QApplication, QFrame, QScrollArea, QStyle, QWidget
from shiboken6 import isValid


class FocusInView(QObject):
    """Scrolls ``area`` to the control inside it that takes the keyboard focus. Qt does so only
    for Tab within the area: Tab into it from outside (the queue's "Protect photos" to the
    settings column) left the focus on a control scrolled out of sight, and a keyboard user saw
    no focus anywhere. A click is left alone (the user sees where it went)."""

    def __init__(self, area: QScrollArea) -> None:
        super().__init__(area)
        self._area = area
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.focusChanged.connect(self._follow)
            # Windows torn down after the event loop moved the focus through widgets half
            # destroyed, and following it there crashed the app on its way out.
            app.aboutToQuit.connect(self._stop)

    def _stop(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            with contextlib.suppress(RuntimeError, TypeError):
                app.focusChanged.disconnect(self._follow)

    def _follow(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is None or not (isValid(self._area) and isValid(new)):
            return
        content = self._area.widget()
        if content is None or not content.isAncestorOf(new):
            return
        if QApplication.mouseButtons() != Qt.MouseButton.NoButton:
            return
        self._area.ensureWidgetVisible(new)


class ScrollingColumn(QScrollArea):
    """Holds ``content`` at the window's height, or at its own least height with a scroll bar
    where the window is shorter (squeezed below it, Qt draws widgets over one another). Its
    least width is the content's, kept as that changes (a longer title, a summary shown)."""

    def __init__(self, content: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the controls inside take the focus
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)
        FocusInView(self)

    def minimumSizeHint(self) -> QSize:
        content = self.widget()
        least = super().minimumSizeHint()
        if content is None:
            return least
        # With the scroll bar's width: where it shows (a short window) it covered the
        # content's right edge. The column still fits 640 points across.
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self)
        return QSize(content.minimumSizeHint().width() + bar, least.height())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's least width may have changed
        return super().eventFilter(watched, event)
