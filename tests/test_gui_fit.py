"""Every window and dialog fits a 1366x768 laptop screen (and 1280x720 where it can)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from accessibility import contrast
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from spdesk.gui.main_window import MainWindow
from spdesk.gui.settings import open_settings
from spdesk.gui.style import SMALL_SCREEN
from spdesk.gui.text import LeftOut

WIDTH, HEIGHT = SMALL_SCREEN
FRAME_W, FRAME_H = 16, 72  # borders, title bar and a desktop panel
SMALLEST = (1280, 720)


def _main(_parent: QWidget) -> QWidget:
    return MainWindow(open_settings())


def _train(parent: QWidget) -> QWidget:
    from spdesk.gui.train_dialog import TrainDialog

    return TrainDialog(open_settings(), device="cpu", parent=parent)


def _models(parent: QWidget) -> QWidget:
    from spdesk.gui.model_manager import ModelManagerDialog

    return ModelManagerDialog(parent)


def _preview(parent: QWidget) -> QWidget:
    from spdesk.gui.preview_panel import PreviewDialog

    assert isinstance(parent, MainWindow)
    return PreviewDialog(None, parent.current_options(), parent=parent)


def _about(parent: QWidget) -> QWidget:
    from spdesk.gui.about import AboutDialog

    return AboutDialog(parent, device="cpu")


@pytest.mark.parametrize("make", [_main, _train, _models, _preview, _about])
def test_window_fits_a_small_laptop_screen(
    qtbot: QtBot, make: Callable[[QWidget], QWidget], monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui import style

    # The offscreen screen is 800x800: measure against a 1366x768 laptop's room instead.
    monkeypatch.setattr(style, "screen_room", lambda _w: (WIDTH - FRAME_W, HEIGHT - FRAME_H))
    main = MainWindow(open_settings())
    qtbot.addWidget(main)
    widget = make(main)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    room_w, room_h = WIDTH - FRAME_W, HEIGHT - FRAME_H
    needed = widget.minimumSizeHint().expandedTo(widget.minimumSize())
    assert needed.width() <= SMALLEST[0] - FRAME_W and needed.height() <= SMALLEST[1] - FRAME_H
    assert widget.width() <= room_w and widget.height() <= room_h, widget.size()
    if isinstance(widget, MainWindow):  # the status bar is inside the window, not cut off
        bar = widget.statusBar().geometry()
        assert bar.bottom() < widget.height() and bar.height() > 0
    runner = getattr(widget, "runner", None)
    if runner is not None:  # About describes the device: torch is imported in its worker
        qtbot.waitUntil(lambda: not runner.running, timeout=120_000)
    widget.close()


def test_the_main_window_uses_a_big_screen_and_fills_a_small_one(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui import style

    for screen, expected in (((1920, 1080), (1440, 900)), ((WIDTH, HEIGHT), (1350, 696))):
        room = (screen[0] - FRAME_W, screen[1] - FRAME_H)
        monkeypatch.setattr(style, "screen_room", lambda _w, room=room: room)
        window = MainWindow(open_settings())
        qtbot.addWidget(window)
        assert window.size().toTuple() == expected, screen


TINY = (1024, 600)  # a netbook or a small VM: the room the code computes is 1008 x 528


@pytest.mark.parametrize("make", [_main, _train, _models, _preview, _about])
def test_window_fits_a_1024x600_screen_with_its_buttons_on_it(
    qtbot: QtBot, make: Callable[[QWidget], QWidget], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QPushButton

    from spdesk.gui import style

    room_w, room_h = TINY[0] - FRAME_W, TINY[1] - FRAME_H
    monkeypatch.setattr(style, "screen_room", lambda _w: (room_w, room_h))
    main = MainWindow(open_settings())
    qtbot.addWidget(main)
    widget = make(main)
    qtbot.addWidget(widget)
    save_frame = getattr(widget, "save_frame", None)
    if save_frame is not None:  # the Train dialog once a result is in: its tallest
        save_frame.show()
    widget.show()
    qtbot.waitExposed(widget)
    needed = widget.minimumSizeHint().expandedTo(widget.minimumSize())
    assert needed.width() <= room_w and needed.height() <= room_h, needed
    assert widget.width() <= room_w and widget.height() <= room_h, widget.size()
    for button in widget.findChildren(QPushButton):
        if button.text() in ("Close", "Copy diagnostics") and button.isVisibleTo(widget):
            bottom = button.mapTo(widget, button.rect().bottomLeft()).y()
            assert bottom < widget.height(), f"{button.text()} is below the window"
    runner = getattr(widget, "runner", None)
    if runner is not None:
        qtbot.waitUntil(lambda: not runner.running, timeout=120_000)
    widget.close()


def test_the_main_window_fits_a_1280x800_screen_at_150_percent(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """853 x 533 points: the least width of 900 put the settings column off the screen."""
    from spdesk.gui import style

    room = (853 - FRAME_W, 533 - FRAME_H)
    monkeypatch.setattr(style, "screen_room", lambda _w: room)
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.width() <= room[0] and window.height() <= room[1], window.size()


def test_the_accent_and_the_first_button_a_user_sees_are_readable() -> None:
    """Flat buttons in the accent read 4.40:1 on the settings' grey, the disabled "Protect
    photos" 1.68:1 (audit): WCAG AA asks 4.5:1 of text."""
    import re

    from spdesk.gui.style import ACCENT, STYLESHEET

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    def contrast(a: str, b: str) -> float:
        high, low = sorted((luminance(a), luminance(b)), reverse=True)
        return (high + 0.05) / (low + 0.05)

    assert contrast(ACCENT, "#f6f7f9") >= 4.5 and contrast(ACCENT, "#ffffff") >= 4.5
    disabled = re.search(r"Primary:disabled \{ background: (#\w+);.*color: (#\w+);", STYLESHEET)
    assert disabled is not None and contrast(disabled.group(1), disabled.group(2)) >= 4.5


def test_the_main_window_fits_640_points_across_a_1280x800_screen_at_200_percent(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """Its least width was 744 points empty and 912 with a queue (its title on one line, the
    drop area's, the settings column's 300): a 1280 screen at 200% has 640 across."""
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.minimumSizeHint().width() <= 640 - FRAME_W, window.minimumSizeHint()
    folder = tmp_path
    window.queue.add_photos([folder / f"IMG_{i:04d}.jpg" for i in range(1234)])
    window._left_out = {
        folder / "notes.txt": LeftOut("not a photo"), folder / "a.xmp": LeftOut("not a photo")
    }  # fmt: skip
    window._left_out_changed()
    window._update_controls()
    title = window.queue_title.text()
    assert title.endswith("2 other files left out"), title
    assert window.queue_title.accessibleName() == title  # whole, where the line cuts it
    window.progress_label.setText("Cancelled. 1,234 photos waiting: press “Protect photos”.")
    qtbot.wait(10)
    assert window.minimumSizeHint().width() <= 640 - FRAME_W, window.minimumSizeHint()
    window.queue.wait_for_thumbnails()


def test_the_main_window_scrolls_rather_than_overlap_on_a_short_screen(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """A 1280x800 screen at 200% leaves about 330 points of height: the window was squeezed
    below its content's least height there, and the drop area, the queue's title, the summary
    and the progress text were drawn over one another. The left column scrolls instead."""
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.queue.add_photos([tmp_path / f"IMG_{i:04d}.jpg" for i in range(40)])
    window.summary_label.setText("2 protected, 1 failed (select Retry) in 3 s.\nSaved to Trip")
    window.summary.show()
    window.progress_label.setText("Cancelled. 1 photo waiting: press “Protect photos”.")
    window._update_controls()
    window.setMinimumSize(0, 0)  # as fit_to_screen gives way to a small screen
    window.resize(624, 328)
    qtbot.wait(50)
    column = {  # top to bottom
        "drop area": window.drop_zone,
        "queue's title": window.queue_title,
        "queue": window.queue,
        "summary": window.summary,
        "progress text": window.progress_label,
    }
    spans = {
        name: (part.mapTo(window, part.rect().topLeft()).y(), part.height())
        for name, part in column.items()
    }
    names = list(column)
    for name, below in itertools.pairwise(names):
        (top, height), (next_top, _) = spans[name], spans[below]
        assert top + height <= next_top, f"the {name} runs into the {below}"
    for part in [*column.values(), window.start_button]:
        assert part.height() >= min(part.minimumSizeHint().height(), part.sizeHint().height())
    window.queue.wait_for_thumbnails()


@pytest.mark.parametrize("mode", ["photo", "universal", "finetune"])
def test_the_settings_column_does_not_scroll_sideways_on_a_small_laptop_screen(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """At 1366x768 the fine-tuned mode's steps and encoder row made the settings 2 points
    wider than the column once its vertical scroll bar showed: a sideways scroll bar covered
    the bottom of the settings."""
    from PySide6.QtWidgets import QScrollArea

    from spdesk.gui import style

    monkeypatch.setattr(style, "screen_room", lambda _w: (WIDTH - FRAME_W, HEIGHT - FRAME_H))
    window = MainWindow(open_settings())
    window.setStyleSheet(style.STYLESHEET)  # the app's look (create_app sets it app-wide)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.options_panel.set_mode(mode)
    scroll = window.findChild(QScrollArea, "OptionsScroll")
    assert scroll is not None
    qtbot.wait(100)  # the column laid out again, with its vertical scroll bar
    assert not scroll.horizontalScrollBar().isVisible(), (
        scroll.viewport().width(),
        scroll.widget().minimumSizeHint().width(),
    )


def test_the_fine_tuning_encoders_are_named_in_full_on_a_small_laptop_screen(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the steps, the encoder box had 140 points: "Best: Stable Diffusion's own
    encoder" showed as "Best: St… encoder", which says nothing of which encoder it is."""
    from spdesk.gui import style
    from spdesk.gui.widgets.options import FINETUNE_ENCODERS

    monkeypatch.setattr(style, "screen_room", lambda _w: (WIDTH - FRAME_W, HEIGHT - FRAME_H))
    window = MainWindow(open_settings())
    window.setStyleSheet(style.STYLESHEET)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.options_panel.set_mode("finetune")
    combo = window.options_panel.encoder_combo
    for key, label in FINETUNE_ENCODERS.items():
        window.options_panel.set_encoder(key)
        qtbot.wait(50)
        assert combo.shown_text() == label, (combo.shown_text(), combo.width())


def test_after_a_run_on_a_short_screen_the_summary_and_protect_photos_are_in_view(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """At 1024x600 a first run's summary (with the key notice) pushed the progress text,
    Cancel and "Protect photos" below the fold of the queue's scrolling column (GUI audit)."""
    import numpy as np
    from PIL import Image
    from PySide6.QtWidgets import QScrollArea

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((40, 48, 3), 20 * i, np.uint8)).save(folder / f"p{i}.png")
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.setMinimumSize(0, 0)  # as fit_to_screen gives way to a small screen
    window.resize(1008, 400)
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        window.add_paths([folder])
    with qtbot.waitSignal(window.job_runner.finished, timeout=60_000):
        window.start_button.click()
    scroll = window.findChild(QScrollArea, "QueueScroll")
    assert scroll is not None
    column = scroll.viewport()

    def in_view(part: QWidget) -> bool:
        top = part.mapTo(column, part.rect().topLeft()).y()
        return top >= 0 and top + part.height() <= column.height()

    qtbot.waitUntil(lambda: in_view(window.start_button) and in_view(window.summary))
    window.queue.wait_for_thumbnails()


def test_tab_into_a_scrolled_settings_column_brings_the_control_it_lands_on_into_view(
    qtbot: QtBot,
) -> None:
    """With More options open (or on a short screen) the settings column is scrolled down: Tab
    from the queue moved the focus to the Strength buttons scrolled out of sight above it, and
    a keyboard user saw no focus anywhere (accessibility audit). Qt scrolls a scroll area to
    the focus only for Tab within it."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QScrollArea

    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.setMinimumSize(0, 0)  # as fit_to_screen gives way to a small screen
    window.resize(1008, 420)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    scroll = window.findChild(QScrollArea, "OptionsScroll")
    assert scroll is not None
    window.options_panel.show_more(True)
    qtbot.waitUntil(lambda: scroll.verticalScrollBar().value() > 0)
    window.queue.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.keyClick(window.queue, Qt.Key.Key_Tab)
    focused = QApplication.focusWidget()
    assert focused is window.options_panel.strength_group.checkedButton()
    top = focused.mapTo(scroll.viewport(), focused.rect().topLeft()).y()
    assert top >= 0 and top + focused.height() <= scroll.viewport().height(), top


def test_a_disabled_control_is_drawn_unlike_an_enabled_one_and_stays_readable() -> None:
    """The palette gave the disabled colour group the enabled text colour: while a job ran,
    the whole settings column (and Quality for a PNG) looked as if it could be changed
    (accessibility audit)."""
    from PySide6.QtGui import QPalette

    from spdesk.gui.style import light_palette

    palette = light_palette()
    roles = (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText)
    for role in roles:
        enabled = palette.color(QPalette.ColorGroup.Active, role).name()
        disabled = palette.color(QPalette.ColorGroup.Disabled, role).name()
        assert disabled != enabled, role
        for ground in ("#ffffff", "#f6f7f9"):  # fields, the window
            assert 3.0 <= contrast(disabled, ground) < contrast(enabled, ground), role


def test_a_fields_hint_is_readable_and_the_apps_own_on_any_system() -> None:
    """Placeholder text ("a new folder beside the photos": where the copies go) was Qt's
    half-transparent black, 4.0:1 on a field's white (WCAG AA asks 4.5:1), and not the
    palette's own (accessibility audit)."""
    from PySide6.QtGui import QColor, QPalette

    from spdesk.gui.style import light_palette

    palette = light_palette()
    role = QPalette.ColorRole.PlaceholderText
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        assert palette.isBrushSet(group, role), group
        hint = palette.color(group, role)
        base = palette.color(group, QPalette.ColorRole.Base)
        alpha = hint.alphaF()  # drawn over the field's colour
        shown = QColor.fromRgbF(
            *(
                alpha * getattr(hint, part)() + (1 - alpha) * getattr(base, part)()
                for part in ("redF", "greenF", "blueF")
            )
        )
        assert contrast(shown.name(), base.name()) >= 4.5, shown.name()


def test_the_status_bars_device_label_is_readable(qtbot: QtBot) -> None:
    """ "Device: CPU" was the muted grey on the status bar's grey, 4.2:1 (WCAG AA asks 4.5:1;
    accessibility audit)."""
    from spdesk.gui.style import STYLESHEET

    window = MainWindow(open_settings())
    window.setStyleSheet(STYLESHEET)  # the app's look (create_app sets it app-wide)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    label = window.device_label
    label.setText("Device: CPU")
    qtbot.wait(10)
    image = label.grab().toImage()
    pixels = [image.pixelColor(x, y) for x in range(image.width()) for y in range(image.height())]
    ground = max(pixels, key=lambda colour: colour.lightness())
    ink = min(pixels, key=lambda colour: colour.lightness())
    assert contrast(ink.name(), ground.name()) >= 4.5, (ink.name(), ground.name())


def test_a_text_field_with_the_focus_has_the_buttons_two_point_ring(qtbot: QtBot) -> None:
    """A focused text field ("Save to", "Name ends with") only turned its 1 px border blue,
    where a focused button has a 2 px ring: hard to find for a keyboard user (accessibility
    audit). The field keeps its size."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor

    from spdesk.gui.style import ACCENT, STYLESHEET

    window = MainWindow(open_settings())
    window.setStyleSheet(STYLESHEET)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    field = window.options_panel.output_edit
    size = field.size()
    field.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(field.hasFocus)
    qtbot.wait(20)
    assert field.size() == size
    image = field.grab().toImage()
    accent = QColor(ACCENT)
    middle = image.height() // 2

    def is_accent(x: int) -> bool:
        colour = image.pixelColor(x, middle)
        return abs(colour.red() - accent.red()) + abs(colour.blue() - accent.blue()) < 40

    ring = [x for x in range(6) if is_accent(x)]  # the left edge, halfway down
    assert len(ring) >= 2, ring


def test_check_boxes_and_radios_have_an_outline_a_user_can_see(qtbot: QtBot) -> None:
    """Fusion drew an unticked box #c1c2c4 on white (1.7:1) and a radio 2.2:1 (WCAG 1.4.11 asks
    3:1 of a control's edge), and under a dark system colour scheme a white box on the app's
    light palette: nothing showed that there was something to tick (accessibility audit). The
    stylesheet draws them now, whatever the system's scheme, at Fusion's size; a ticked box is
    filled with the accent colour, its tick drawn on it."""
    from PySide6.QtGui import QColor, QImage
    from PySide6.QtWidgets import QCheckBox, QRadioButton

    from spdesk.gui.style import ACCENT, STYLESHEET

    window = MainWindow(open_settings())
    window.setStyleSheet(STYLESHEET)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    panel = window.options_panel
    panel.show_more(True)
    check, radio = panel.keep_location_check, panel.mode_radios["universal"]
    check.setChecked(False)
    qtbot.wait(20)
    for styled, plain in ((check, QCheckBox(check.text())), (radio, QRadioButton(radio.text()))):
        assert styled.sizeHint() == plain.sizeHint()  # Fusion's size: the settings do not move

    def indicator(widget: QWidget) -> tuple[QImage, list[QColor], QColor]:
        image = widget.grab().toImage()
        ground = image.pixelColor(image.width() - 1, image.height() // 2)  # beyond the text
        box = [image.pixelColor(x, y) for x in range(16) for y in range(image.height())]
        return image, box, ground

    for widget in (check, radio):
        _, box, ground = indicator(widget)
        edge = min(box, key=lambda colour: colour.lightness())
        assert contrast(edge.name(), ground.name()) >= 3.0, (widget.text(), edge.name())
    check.setChecked(True)
    qtbot.wait(20)
    image, box, _ = indicator(check)
    accent = QColor(ACCENT)
    filled = [
        (x, y)
        for x in range(16)
        for y in range(image.height())
        if abs(image.pixelColor(x, y).red() - accent.red()) < 12
        and abs(image.pixelColor(x, y).blue() - accent.blue()) < 12
    ]
    assert len(filled) > 60, len(filled)  # the box filled with the accent colour
    left, right = min(x for x, _ in filled), max(x for x, _ in filled)
    top, bottom = min(y for _, y in filled), max(y for _, y in filled)
    tick = [
        (x, y)
        for x in range(left, right + 1)
        for y in range(top, bottom + 1)
        if image.pixelColor(x, y).lightness() > 230
    ]
    assert len(tick) >= 6, tick  # white on it: the check mark image was found and drawn


def test_combo_spin_and_tool_buttons_check_boxes_and_radios_have_the_two_point_ring(
    qtbot: QtBot,
) -> None:
    """Push buttons and text fields show the focus with a 2 px ring; a combo box or a spin box
    only turned its 1 px border blue, a tool button ("…", More options) was tinted and a check
    box or a radio barely changed: hard to find for a keyboard user (accessibility audit).
    Nothing changes size with the focus."""
    from PySide6.QtCore import QPoint, QRect, Qt
    from PySide6.QtGui import QColor

    from spdesk.gui.style import ACCENT, STYLESHEET, FocusRing

    window = MainWindow(open_settings())
    window.setStyleSheet(STYLESHEET)
    FocusRing(window)  # create_app gives the app one
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    panel = window.options_panel
    panel.show_more(True)
    accent = QColor(ACCENT)

    def is_accent(colour: QColor) -> bool:
        return abs(colour.red() - accent.red()) + abs(colour.blue() - accent.blue()) < 40

    def ring(widget: QWidget, outside: bool) -> list[int]:
        """The accent-coloured columns at the left edge (outside it, or of the indicator)."""
        left = widget.mapTo(window, QPoint(0, 0))
        area = QRect(left.x() - 3, left.y(), 9, widget.height())
        image = window.grab(area).toImage()
        middle = image.height() // 2
        columns = range(0, 3) if outside else range(3, 9)
        return [x for x in columns if is_accent(image.pixelColor(x, middle))]

    ringed = {
        "combo box": (panel.collision_combo, True),
        "spin box": (panel.quality_spin, True),
        "tool button": (panel.output_button, True),
        "More options": (panel.more_button, True),
        "check box": (panel.keep_location_check, False),
        "radio": (panel.mode_radios["universal"], False),
    }
    for name, (widget, outside) in ringed.items():
        window.start_button.setFocus()
        qtbot.wait(20)
        size = widget.size()
        widget.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.waitUntil(widget.hasFocus)
        qtbot.wait(20)
        assert widget.size() == size, name
        assert len(ring(widget, outside)) >= 2, name


def test_more_options_is_drawn_as_the_flat_links_clear_and_preview_are(qtbot: QtBot) -> None:
    """More options was named "Flat" but drawn as a grey framed tool button: the flat rule was
    for push buttons only. It reads as a link in the accent, with no frame, as Clear does (its
    size and its focus ring are pinned by the tests above)."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtGui import QColor

    from spdesk.gui.style import ACCENT, STYLESHEET

    window = MainWindow(open_settings())
    window.setStyleSheet(STYLESHEET)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.start_button.setFocus()
    qtbot.wait(20)
    accent = QColor(ACCENT)

    def look(widget: QWidget) -> tuple[int, set[str]]:
        """How many of its pixels are the accent, and the colours of its left edge and of
        the column just outside it (one colour, the background's, without a frame)."""
        left = widget.mapTo(window, QPoint(0, 0))
        image = window.grab(QRect(left.x() - 1, left.y(), widget.width() + 1, widget.height()))
        image = image.toImage()
        colours = [
            image.pixelColor(x, y) for x in range(image.width()) for y in range(image.height())
        ]
        text = sum(
            abs(c.red() - accent.red()) + abs(c.green() - accent.green()) < 60
            and abs(c.blue() - accent.blue()) < 30
            for c in colours
        )
        edge = {image.pixelColor(x, y).name() for x in (0, 1) for y in range(image.height())}
        return text, edge

    text, edge = look(window.options_panel.more_button)
    assert text >= 10, text  # its words in the accent
    assert len(edge) == 1, edge  # no frame
