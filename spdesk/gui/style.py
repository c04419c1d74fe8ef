"""A calm, light look over Qt's Fusion style: one accent colour, soft borders, roomy spacing."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFocusFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QWidget,
)

ACCENT = "#2563d0"  # 5.2:1 on the settings' grey, 5.6:1 under white text (WCAG AA)
FOCUS_ON_ACCENT = "#102a5c"  # the focus ring of a button filled with the accent colour

# The muted grey reads 4.2:1 on the status bar's: its labels take the bar's own text colour.


def _check_mark() -> str:
    """The stylesheet's url of the bundled tick (resources/icons), "" where it is not found."""
    try:
        ref = resources.files("spdesk.resources").joinpath("icons", "check-mark.svg")
    except ModuleNotFoundError:  # a checkout whose install does not map the resources package
        return ""
    return Path(str(ref)).as_posix() if ref.is_file() else ""


CHECK_MARK = _check_mark()
DISABLED_TEXT = "#868e99"  # 3.3:1 on white, 3.1:1 on the window's grey; the text 14:1
CONTROL_EDGE = "#6b7280"  # a check box's or a radio's outline: 4.8:1 on white (WCAG asks 3:1)
# Check boxes and radios are drawn by the rules below, not by Fusion: Fusion's box was #c1c2c4
# on white (1.7:1) and its radio 2.2:1, and under a dark system colour scheme Fusion drew the
# box white on the app's light palette, unseen. A ticked box is filled with the accent colour
# (the tick on it is an image; without it the fill still says "ticked"). The padding keeps
# Fusion's size for the whole control: the stylesheet's own leaves out Fusion's margins.
_TICK = f'image: url("{CHECK_MARK}");' if CHECK_MARK else ""

# A button with the keyboard focus gets a 2 px ring (its own :focus rule per look below), one
# pixel of padding less on each side: the same size, so the layout never moves with the focus.

STYLESHEET = f"""
QMainWindow, QDialog {{ background: #f6f7f9; }}
QGroupBox {{
    background: #ffffff; border: 1px solid #e3e6eb; border-radius: 10px;
    margin-top: 14px; padding: 12px 10px 10px 10px; font-weight: 600;
}}
QGroupBox::title {{ subcontrol-origin: margin; left: 12px; padding: 0 4px; color: #374151; }}
QLabel#Muted {{ color: #6b7280; font-weight: normal; }}
QLabel#SectionTitle {{ font-size: 13pt; font-weight: 600; color: #1f2937; }}
QLabel#DropTitle {{ font-size: 15pt; font-weight: 600; color: #1f2937; }}
QLabel#Verdict {{ font-size: 11pt; font-weight: 600; padding: 2px 0; }}
QFrame#Tile {{ background: #ffffff; border: 1px solid #e3e6eb; border-radius: 10px; }}
QLabel#TileCaption {{ color: #374151; font-weight: 600; }}
QFrame#DropZone {{
    background: #ffffff; border: 2px dashed #c5ccd6; border-radius: 14px;
}}
QFrame#DropZone[hover="true"] {{ border-color: {ACCENT}; background: #eef4ff; }}
QFrame#Summary {{ background: #ecfdf3; border: 1px solid #b7e4c7; border-radius: 8px; }}
QFrame#Summary[stopped="true"] {{ background: #fff8e6; border-color: #f3d98b; }}
QFrame#Note {{ background: #fff8e6; border: 1px solid #f3d98b; border-radius: 8px; }}
QFrame#Note[error="true"] {{ background: #fdecec; border-color: #f1b5b5; }}
QFrame#Note[error="true"] QLabel {{ color: #991b1b; }}
QTableWidget#PhotoQueue, QTableWidget {{
    background: #ffffff; alternate-background-color: #fafbfc; border: 1px solid #e3e6eb;
    border-radius: 10px; selection-background-color: #dbe7ff; selection-color: #111827;
}}
QHeaderView::section {{
    background: #ffffff; border: none; border-bottom: 1px solid #e3e6eb;
    padding: 6px 8px; color: #6b7280; font-weight: 600;
}}
QPushButton {{
    background: #ffffff; border: 1px solid #cfd5dd; border-radius: 7px; padding: 6px 14px;
    color: #1f2937;
}}
QPushButton:hover {{ border-color: {ACCENT}; }}
QPushButton:disabled {{ color: #9ca3af; border-color: #e5e7eb; }}
QPushButton#Primary {{
    background: {ACCENT}; border-color: {ACCENT}; color: white; font-weight: 600; padding: 8px 20px;
}}
QPushButton#Primary:hover {{ background: #275fc0; }}
QPushButton#Primary:disabled {{ background: #dbe4f5; border-color: #dbe4f5; color: #3f5170; }}
QPushButton#Flat {{ border: none; background: transparent; color: {ACCENT}; }}
QPushButton#Flat:disabled, QToolButton#Flat:disabled {{ color: #9ca3af; }}
QToolButton#Flat {{
    border: none; background: transparent; color: {ACCENT}; padding: 2px 3px 2px 2px;
}}
QPushButton#RetryButton {{ padding: 3px 10px; color: #b91c1c; border-color: #f1b5b5; }}
QPushButton#Segment {{ border-radius: 0; padding: 6px 6px; }}
QPushButton#Segment:checked {{ background: #e3edff; border-color: {ACCENT}; color: #1d4ed8; }}
QPushButton:focus {{ border: 2px solid {ACCENT}; padding: 5px 13px; }}
QPushButton#Primary:focus {{ border: 2px solid {FOCUS_ON_ACCENT}; padding: 7px 19px; }}
QPushButton#Flat:focus {{ border: 2px solid {ACCENT}; padding: 4px 12px; }}
QPushButton#RetryButton:focus {{ border: 2px solid #b91c1c; padding: 2px 9px; }}
QPushButton#Segment:focus {{ border: 2px solid {ACCENT}; padding: 5px 5px; }}
QProgressBar {{ background: #e8ebf0; border: none; border-radius: 4px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 4px; }}
QLineEdit, QPlainTextEdit {{
    background: #ffffff; border: 1px solid #8c95a0; border-radius: 6px; padding: 4px 6px;
}}
QLineEdit:focus {{ border: 2px solid {ACCENT}; padding: 3px 5px; }}
QScrollArea#OptionsScroll, QWidget#OptionsHolder {{ background: #f6f7f9; }}
QStatusBar {{ background: #eef0f3; color: #4b5563; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QStatusBar QLabel#Muted {{ color: #4b5563; }}
QSplitter::handle {{ background: transparent; }}
QCheckBox, QRadioButton {{ padding: 2px 4px 3px 0; }}
QCheckBox::indicator, QRadioButton::indicator {{
    width: 12px; height: 12px; border: 1px solid {CONTROL_EDGE}; background: #ffffff;
}}
QCheckBox::indicator {{ border-radius: 3px; }}
QRadioButton::indicator {{ border-radius: 7px; }}
QCheckBox::indicator:checked {{ border-color: {ACCENT}; background: {ACCENT}; {_TICK} }}
QRadioButton::indicator:checked {{
    border-color: {ACCENT};
    background: qradialgradient(cx: 0.5, cy: 0.5, radius: 0.5, fx: 0.5, fy: 0.5,
        stop: 0 {ACCENT}, stop: 0.5 {ACCENT}, stop: 0.6 #ffffff, stop: 1 #ffffff);
}}
QCheckBox::indicator:disabled, QRadioButton::indicator:disabled {{
    border-color: #c5ccd6; background: #f3f4f6;
}}
QCheckBox::indicator:checked:disabled {{
    border-color: {DISABLED_TEXT}; background: {DISABLED_TEXT};
}}
QRadioButton::indicator:checked:disabled {{
    background: qradialgradient(cx: 0.5, cy: 0.5, radius: 0.5, fx: 0.5, fy: 0.5,
        stop: 0 {DISABLED_TEXT}, stop: 0.5 {DISABLED_TEXT}, stop: 0.6 #f3f4f6, stop: 1 #f3f4f6);
}}
QCheckBox::indicator:focus, QRadioButton::indicator:focus {{
    border: 2px solid {ACCENT}; width: 10px; height: 10px;
}}
QCheckBox::indicator:checked:focus {{ border-color: {FOCUS_ON_ACCENT}; }}
QFocusFrame {{ border: 2px solid {ACCENT}; border-radius: 5px; }}
"""


def apply_style(app: QApplication) -> None:
    """Fusion with a light palette (the same on every platform) and the stylesheet above."""
    app.setStyle("Fusion")
    app.setPalette(light_palette())
    app.setStyleSheet(STYLESHEET)
    if app.findChild(FocusRing) is None:
        FocusRing(app)


RINGED = (QComboBox, QAbstractSpinBox, QToolButton)
"""The controls Fusion shows the focus on with a 1 px blue border or a faint tint, which the
stylesheet cannot thicken without drawing them anew (their arrows included)."""


class FocusRing(QObject):
    """Draws the buttons' 2 px focus ring (QFocusFrame in the stylesheet) round the combo box,
    spin box or tool button that has the focus, just outside it: nothing changes size. Qt
    paints it; Python only moves it when the focus moves. Lives as long as ``parent``."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._frame: QFocusFrame | None = None
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        app.focusChanged.connect(self._follow)

    def _follow(self, _old: QWidget | None, new: QWidget | None) -> None:
        if self._frame is not None:  # its window still open (see _forget)
            self._frame.destroyed.disconnect(self._forget)
            self._frame.hide()
            self._frame.deleteLater()
            self._frame = None
        if isinstance(new, RINGED) and not new.isWindow():
            self._frame = QFocusFrame(new.parentWidget())
            self._frame.destroyed.connect(self._forget)  # with the window it was shown in
            self._frame.setWidget(new)
            _room_for(self._frame)

    def _forget(self) -> None:
        self._frame = None


def _room_for(frame: QFocusFrame) -> None:
    """Move ``frame`` up to an ancestor with room for all of it: Qt puts it in the control's
    parent, where a control at the edge (More options, at the settings column's left) lost
    that side of its ring. It stops at a scroll area's content, which it scrolls with."""
    parent, geometry = frame.parentWidget(), frame.geometry()
    while parent is not None and not parent.rect().contains(geometry):
        above = parent.parentWidget()
        if (
            above is None
            or parent.isWindow()
            or isinstance(above.parentWidget(), QAbstractScrollArea)
        ):
            break  # a window, or a scroll area's content (the child of its viewport)
        geometry = geometry.translated(parent.pos())
        parent = above
    if parent is not None and parent is not frame.parentWidget():
        frame.setParent(parent)
        frame.setGeometry(geometry)
        frame.show()


def light_palette() -> QPalette:
    """The app's palette. Its text roles are set for every colour group, the disabled one
    included: a disabled control (the settings while a job runs, Quality for PNG) was drawn
    exactly as an enabled one, and looked as if it could be changed."""
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor("#f6f7f9"))
    palette.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#fafbfc"))
    palette.setColor(QPalette.ColorRole.Text, QColor("#1f2937"))
    palette.setColor(QPalette.ColorRole.WindowText, QColor("#1f2937"))
    palette.setColor(QPalette.ColorRole.Button, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor("#1f2937"))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ToolTipText, QColor("#1f2937"))
    # A field's hint ("a new folder beside the photos") as the muted labels, 4.8:1: Qt's was
    # half-transparent black, 4.0:1 on white.
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor("#6b7280"))
    disabled = QPalette.ColorGroup.Disabled
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.PlaceholderText,
    ):
        palette.setColor(disabled, role, QColor(DISABLED_TEXT))
    return palette


def thin_progress_bar() -> QProgressBar:
    """The slim, text-less progress bar every window uses (0..1000 for smooth steps)."""
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(False)
    bar.setFixedHeight(10)
    return bar


def muted_label(text: str) -> QLabel:
    """A secondary-text label (status lines, hints)."""
    label = QLabel(text)
    label.setObjectName("Muted")
    return label


def set_primary(button: QPushButton, primary: bool) -> None:
    """Give ``button`` the main-action look (or take it away) and the Enter key: one per window."""
    button.setObjectName("Primary" if primary else "")
    button.setDefault(primary)
    button.style().unpolish(button)
    button.style().polish(button)


SMALL_SCREEN = (1366, 768)
"""The smallest screen every window and dialog must fit (a common laptop); 1280x720 where it can."""
_WINDOW_FRAME = (16, 72)  # room left for window borders, title bar and a desktop panel


def screen_room(widget: QWidget) -> tuple[int, int]:
    """The width and height a window of ``widget``'s screen can have, frame and panels aside."""
    screen = widget.screen() or QApplication.primaryScreen()
    size = screen.availableGeometry().size().toTuple() if screen is not None else SMALL_SCREEN
    return size[0] - _WINDOW_FRAME[0], size[1] - _WINDOW_FRAME[1]


def fit_to_screen(widget: QWidget, width: int, height: int) -> None:
    """Resize ``widget`` to ``width`` x ``height``, or less where its screen is smaller."""
    room_w, room_h = screen_room(widget)
    width, height = min(width, room_w), min(height, room_h)
    # A least size larger than the screen (a 1280x800 screen at 150% has 853 points across)
    # gives way to it: the window stayed 900 wide, its right column off the screen.
    least = widget.minimumSize()
    widget.setMinimumSize(min(least.width(), room_w), min(least.height(), room_h))
    widget.resize(max(width, widget.minimumWidth()), max(height, widget.minimumHeight()))
