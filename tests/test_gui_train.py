"""The train dialog: a tiny perturbation trained with a tiny encoder lands in the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from accessibility import assert_alt_letters_reach, contrast, mnemonic_letters, record_announcements
from PIL import Image
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot
from tiny_sd import save_tiny_vae

from spdesk.core.events.training import CheckpointFailed, CheckpointSaved, TrainStarted, TrainStep
from spdesk.core.perturbation import library_perturbations, load_perturbation
from spdesk.core.usecases import StartingAfresh
from spdesk.gui.settings import open_settings
from spdesk.gui.train_dialog import NOISE_SERIES, TrainDialog, _check_request


@pytest.fixture(autouse=True)
def small_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-out check at a 64 px editor: a 512 px one costs the tiny VAE a minute."""
    import spdesk.core.train as train

    monkeypatch.setattr(train, "EDITOR_SIZE", 64)


@pytest.fixture(autouse=True)
def encoders_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in encoders count as installed (none is in a test's fresh home): a test of
    another part of start() must not meet the modal "Model needed" question. The test of
    that question puts the real check back."""
    import spdesk.gui.train_dialog as train_dialog

    monkeypatch.setattr(train_dialog, "encoder_problem", lambda _spec, use="": "")


def _photos(folder: Path, count: int = 4) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    return folder


def _stop_a_running_training(qtbot: QtBot, dialog: TrainDialog) -> None:
    """After a test that failed while training ran, closing asked "Stop training?", a box
    nobody answers offscreen: the run hung there instead of reporting the failure."""
    if dialog.runner.running:
        dialog.runner.cancel()
        qtbot.waitUntil(lambda: not dialog.runner.running, timeout=60_000)


@pytest.fixture
def dialog(qtbot: QtBot, tmp_path: Path) -> TrainDialog:
    dlg = TrainDialog(open_settings(), device="cpu")
    dlg.confirm = lambda _title, _text: True  # tiny runs are short on purpose
    qtbot.addWidget(dlg, before_close_func=lambda d: _stop_a_running_training(qtbot, d))
    dlg.folder_edit.setText(str(_photos(tmp_path / "photos")))
    dlg.encoder_combo.setCurrentIndex(dlg.encoder_combo.findData("custom"))
    dlg.encoder_edit.setText(str(save_tiny_vae(tmp_path / "vae")))
    dlg.size_spin.setValue(32)
    dlg.steps_spin.setValue(4)
    for check in dlg.robust_checks.values():
        check.setChecked(False)
    return dlg


def test_train_a_tiny_perturbation_and_save_it_to_the_library(
    qtbot: QtBot, dialog: TrainDialog
) -> None:
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.result is not None, dialog.status_label.text()
    assert dialog.loss_chart.series["loss"].points, "the loss chart got no points"
    assert dialog.val_chart.series["this pattern"].points
    assert dialog.val_chart.series[NOISE_SERIES].points
    assert dialog.save_frame.isVisibleTo(dialog)
    said = dialog.result_label.text()
    assert "At 100% zoom on" in said  # how visible, beside the strength
    assert "In training's check" in said and "as spdesk protect lays it" in said  # both gains
    dialog.name_edit.setText("My tiny test")
    with qtbot.waitSignal(dialog.saved) as saved:
        dialog.save_button.click()
    path = Path(saved.args[0])
    assert path in library_perturbations()
    loaded = load_perturbation(path)
    assert loaded.name == "My tiny test"
    assert loaded.delta.shape == (3, 32, 32)
    assert np.abs(loaded.delta).max() <= 8 / 255 + 1e-6
    assert loaded.metadata["visibility"]["photos"] >= 1  # the library file records it


def test_pause_then_cancel_saves_nothing(qtbot: QtBot, dialog: TrainDialog) -> None:
    dialog.steps_spin.setValue(2000)
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.loss_chart.series["loss"].points != [], timeout=30_000)
    dialog.toggle_pause()
    assert dialog.runner.paused
    assert dialog.pause_button.text() == "Resume"
    qtbot.wait(200)  # a step that ended as it paused is told too
    said = dialog.val_chart.empty_text  # it said "(about 1 min 06 s)" while paused (audit)
    assert said.startswith("First check after step") and "about" not in said, said
    assert dialog.cancel_button.text() == "Stop training"
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.cancel_button.click()
        assert dialog.status_label.text() == "Stopping…"  # as the button says, not "Cancelling…"
    assert dialog.result is None
    assert dialog.status_label.text().startswith("Stopped; nothing was saved to the library.")
    assert f"Press “{dialog.start_button.text().replace('&', '')}”" in dialog.status_label.text()
    assert dialog.val_chart.empty_text == "Stopped before the first check."  # not "…about 15 s"
    assert library_perturbations() == []


def test_a_cancelled_run_resumes_where_it_stopped(qtbot: QtBot, dialog: TrainDialog) -> None:
    from spdesk.core.paths import cache_dir

    dialog.steps_spin.setValue(2000)
    assert dialog.start()
    points = dialog.loss_chart.series["loss"].points
    qtbot.waitUntil(lambda: len(points) >= 3, timeout=30_000)
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.cancel()
    assert "resume" in dialog.status_label.text()
    (checkpoint,) = (cache_dir() / "training").glob("*.ckpt")
    stopped = len(points)
    assert dialog.start()
    qtbot.waitUntil(lambda: "Resumed at step" in dialog.status_label.text(), timeout=30_000)
    resumed_at = int(dialog.status_label.text().split("step ")[1].split(",")[0])
    assert resumed_at >= stopped
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.cancel()
    # Another step count is another run: it starts afresh, checkpoints on the way (every 25
    # steps) and at its end (a save that fails resumes there), and removes its checkpoint once
    # it is saved.
    saved: list[int] = []
    dialog.runner.core_event.connect(
        lambda e: saved.append(e.step) if isinstance(e, CheckpointSaved) else None
    )
    dialog.steps_spin.setValue(30)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.result is not None
    assert saved == [25, 30]
    assert len(list((cache_dir() / "training").glob("*.ckpt"))) == 2  # until it is saved
    dialog.name_edit.setText("Thirty steps")
    assert dialog.save_to_library() is not None
    assert list((cache_dir() / "training").glob("*.ckpt")) == [checkpoint]


def test_a_damaged_checkpoint_is_dropped_and_training_starts_afresh(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.paths import cache_dir

    # A failure would open a modal warning: record it instead of blocking the test.
    monkeypatch.setattr(QMessageBox, "warning", lambda *_args: None)

    dialog.steps_spin.setValue(2000)
    assert dialog.start()
    points = dialog.loss_chart.series["loss"].points
    qtbot.waitUntil(lambda: len(points) >= 2, timeout=30_000)
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.cancel()
    (checkpoint,) = (cache_dir() / "training").glob("*.ckpt")
    checkpoint.write_bytes(b"\x00" * 100)  # damaged, as by a disk error
    failures: list[str] = []
    dialog.runner.failed.connect(failures.append)
    assert dialog.start()
    qtbot.waitUntil(
        lambda: "Training on" in dialog.status_label.text() or bool(failures), timeout=30_000
    )
    assert failures == []
    assert "Resumed" not in dialog.status_label.text()
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.cancel()
    assert failures == []
    assert checkpoint.stat().st_size > 100  # the fresh run's own checkpoint, written on cancel


def test_refuses_a_folder_without_photos(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    empty = tmp_path / "empty"
    empty.mkdir()
    dialog.folder_edit.setText(str(empty))
    qtbot.waitUntil(lambda: dialog.photo_count == 0)
    assert not dialog.start()
    assert "needs at least 2" in shown[0]


def test_start_is_off_with_the_reason_for_a_folder_that_cannot_be_trained_on(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path
) -> None:
    one = _photos(tmp_path / "one", count=1)
    cases = [
        (tmp_path / "nowhere", "No folder there"),
        (one, "at least 2 photos"),
        (tmp_path, ""),  # not a problem: its subfolders hold photos
    ]
    _photos(tmp_path / "more", count=2)
    for folder, reason in cases:
        dialog.folder_edit.setText(str(folder))
        assert dialog.start_button.isEnabled()  # not yet counted: start() checks itself
        qtbot.waitUntil(lambda: dialog.count_label.text() != "Counting photos…", timeout=10_000)
        assert dialog.start_button.isEnabled() == (not reason)
        assert reason in dialog.start_button.toolTip()
        if reason:
            assert reason in dialog.status_label.text()
    dialog.folder_edit.setText("/")
    qtbot.waitUntil(lambda: not dialog.start_button.isEnabled(), timeout=5_000)
    assert "whole disk" in dialog.start_button.toolTip()


def test_the_folder_is_counted_in_a_worker_once_typing_pauses(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path
) -> None:
    nested = _photos(tmp_path / "mine" / "2024" / "summer", count=3)
    (nested.parent / "notes.txt").write_text("not a photo")
    text = str(tmp_path / "mine")
    for end in range(1, len(text) + 1):  # typed key by key: no count runs on the GUI thread
        dialog.folder_edit.setText(text[:end])
    assert dialog.count_label.text() == "Counting photos…"
    qtbot.waitUntil(lambda: dialog.photo_count == 3, timeout=10_000)
    assert dialog.count_label.text() == "3 photos found."
    qtbot.waitUntil(lambda: not dialog.count_runner.running)


def test_photos_that_cannot_be_read_are_not_counted(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path
) -> None:
    """A file that only starts like a photo was counted ("5 photos found"), and training
    then left it out as unreadable."""
    folder = _photos(tmp_path / "mine", count=3)
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not the rest" * 10)
    (folder / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    dialog.folder_edit.setText(str(folder))
    qtbot.waitUntil(lambda: dialog.photo_count is not None, timeout=10_000)
    assert dialog.photo_count == 3 and dialog.count_label.text() == "3 photos found."
    qtbot.waitUntil(lambda: not dialog.count_runner.running)


def test_a_whole_disk_is_never_walked(qtbot: QtBot, dialog: TrainDialog) -> None:
    dialog.folder_edit.setText("/")
    qtbot.waitUntil(lambda: "whole disk" in dialog.count_label.text(), timeout=5_000)
    assert not dialog.count_runner.running and dialog.photo_count is None


def test_a_model_gone_once_training_runs_is_named_not_a_traceback(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dialog checks the encoder before it starts (test below); one removed after that
    check still ends in the named error, with the way to get it back."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog.encoder_combo.setCurrentIndex(dialog.encoder_combo.findData("sd15"))
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.start()
    assert shown and "spdesk models download --for train" in shown[0]
    assert "Traceback" not in shown[0]


def test_a_run_too_short_to_beat_noise_asks_before_it_starts(dialog: TrainDialog) -> None:
    asked: list[str] = []
    dialog.confirm = lambda _title, text: asked.append(text) is not None  # the user says No
    assert not dialog.start()
    assert asked and "4 steps is probably too short" in asked[0]
    assert not dialog.runner.running


def test_a_result_weaker_than_noise_makes_train_longer_the_main_action(
    dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from spdesk.core.train_advice import MIN_USEFUL_STEPS

    weak = SimpleNamespace(
        metadata={"gain_over_sign": 0.65, "steps": 4, "train_photos": 3, "val_photos": 1},
        checkpoint=None,
    )
    assert dialog.start_button.objectName() == "Primary"  # before a run: the one main action
    dialog._on_succeeded(weak)
    dialog._update_controls()  # as the run's end does
    assert dialog.start_button.objectName() != "Primary", "one main action: in the save box"
    assert "WEAKER than random noise" in dialog.result_label.text()
    assert dialog.train_longer_button.isVisibleTo(dialog)
    assert dialog.train_longer_button.isDefault() and not dialog.save_button.isDefault()
    assert dialog.save_button.text() == "Save anyway"
    started: list[int] = []
    monkeypatch.setattr(dialog, "start", lambda: started.append(dialog.steps_spin.value()) or True)
    dialog.train_longer_button.click()
    assert started == [MIN_USEFUL_STEPS]
    strong = SimpleNamespace(metadata={**weak.metadata, "gain_over_sign": 1.9})
    dialog._on_succeeded(strong)
    assert not dialog.train_longer_button.isVisibleTo(dialog) and dialog.save_button.isDefault()


def test_validation_costs_the_dialog_no_more_than_the_cli() -> None:
    from spdesk.gui.train_dialog import validation_interval

    assert validation_interval(10) == 25  # a 10-step run validates once, at the end
    assert validation_interval(300) == 37 and validation_interval(8000) == 1000


def test_strength_is_a_preset_with_the_exact_value_only_for_custom(
    qtbot: QtBot, dialog: TrainDialog
) -> None:
    dialog.show()
    combo = dialog.strength_combo
    combo.setCurrentIndex(combo.findData(8.0))
    assert not dialog.strength_spin.isVisibleTo(dialog) and dialog.request().eps == 8.0
    assert not any("/255" in combo.itemText(i) for i in range(combo.count()))
    combo.setCurrentIndex(combo.count() - 1)  # Custom
    assert dialog.strength_spin.isVisibleTo(dialog)
    dialog.strength_spin.setValue(6.0)
    assert combo.currentIndex() == combo.count() - 1 and dialog.request().eps == 6.0
    dialog.strength_spin.setValue(16.0)  # a preset's value selects the preset
    assert combo.currentData() == 16.0 and not dialog.strength_spin.isVisibleTo(dialog)


def test_the_held_out_chart_says_when_its_first_check_comes(dialog: TrainDialog) -> None:
    from spdesk.core.events.training import TrainStep

    dialog.steps_spin.setValue(200)  # a check every 25 steps
    assert dialog.val_chart.empty_text == "First check after step 25 of 200."
    dialog.steps_spin.setValue(800)  # at most 8 checks a run: every 100 steps
    assert dialog.val_chart.empty_text == "First check after step 100 of 800."
    dialog.steps_spin.setValue(10)  # a short run is checked at its end
    assert dialog.val_chart.empty_text == "First check after step 10 of 10."
    dialog._on_event(TrainStep(1, 800, 0.5))  # the first step: no rate yet
    assert dialog.val_chart.empty_text == "First check after step 100 of 800."
    dialog._on_event(TrainStep(4, 800, 0.5, eta_s=500.0, step_s=0.5))  # the measured rate
    assert dialog.val_chart.empty_text == "First check after step 100 (about 48 s)."
    assert dialog.loss_chart.empty_text != "No data yet"
    dialog.val_chart.grab()  # paints the sentence (wrapped if the chart is narrow)


def test_a_run_just_weaker_than_noise_never_reads_as_equal_to_it() -> None:
    from types import SimpleNamespace

    from spdesk.gui.text import gain_text
    from spdesk.gui.train_dialog import _summary

    assert gain_text(0.997) == "0.99×" and gain_text(0.95, 1) == "0.9×"  # rounded down
    assert gain_text(1.004) == "1.00×" and gain_text(1.236) == "1.24×"
    assert gain_text(float("inf")) == gain_text(float("nan")) == "?×"  # never "inf×"
    meta = {"gain_over_sign": 0.997, "steps": 48, "train_photos": 6, "val_photos": 4}
    text = _summary(SimpleNamespace(metadata=meta))
    assert "0.99×" in text and "WEAKER" in text and "1.00×" not in text


def test_a_result_not_checked_as_protection_lays_it_says_why() -> None:
    from types import SimpleNamespace

    from spdesk.core.trained_pattern import UNCHECKED_TEXT
    from spdesk.gui.train_dialog import _summary

    meta = {"gain_over_sign": 1.2, "steps": 48, "train_photos": 6, "val_photos": 1}
    assert UNCHECKED_TEXT in _summary(SimpleNamespace(metadata=meta, product_gain=None))
    cancelled = meta | {"checked": "cancelled"}  # said otherwise, by the cancel
    assert UNCHECKED_TEXT not in _summary(SimpleNamespace(metadata=cancelled, product_gain=None))


def test_a_long_value_label_stays_clear_of_the_chart_frame(qtbot: QtBot) -> None:
    from spdesk.gui.widgets.chart import LABEL_INSET, LineChart

    chart = LineChart("Training loss (lower is better)")
    qtbot.addWidget(chart)
    chart.resize(420, 220)
    chart.add_series("loss", "#2f6fde")
    for step, value in enumerate([-0.00604123, -0.2, -0.376123], start=1):
        chart.append("loss", step, value)
    image = chart.grab().toImage()
    margin = [
        image.pixelColor(x, y).lightness()
        for x in range(LABEL_INSET - 2)
        for y in range(30, image.height() - 30)
    ]
    assert min(margin) > 200, "a y label's ink reaches the frame"  # only the light frame


def test_what_an_empty_chart_says_is_readable(qtbot: QtBot) -> None:
    """ "First check after step 37 of 300 (about 2 min)" was light grey on white, 2.5:1
    (WCAG AA asks 4.5:1 of text; accessibility audit)."""
    from spdesk.gui.widgets.chart import LineChart

    chart = LineChart("Effect on held-out photos (higher is stronger)")
    qtbot.addWidget(chart)
    chart.resize(420, 220)
    chart.set_empty_text("First check after step 37 of 300.")
    image = chart.grab().toImage()
    ink = min(  # the darkest of the text's pixels, in the middle of the plot
        (image.pixelColor(x, y) for x in range(80, 340) for y in range(90, 150)),
        key=lambda colour: colour.lightness(),
    )
    assert contrast(ink.name(), "#ffffff") >= 4.5, ink.name()


def test_the_dashed_series_is_dashed_in_the_legend_too(qtbot: QtBot) -> None:
    """Random noise's line is dashed, its legend's swatch was solid: only the colour (green
    or grey) told which line was which (accessibility audit)."""
    from PySide6.QtGui import QColor

    from spdesk.gui.widgets.chart import LineChart

    chart = LineChart("t")
    qtbot.addWidget(chart)
    chart.resize(420, 220)
    chart.add_series("this pattern", "#15803d")
    chart.add_series("noise", "#ff00ff", dashed=True)  # a colour no text's edge has
    for step in (1, 2):
        chart.append("this pattern", step, 1.0 + step)
        chart.append("noise", step, 1.0)
    image = chart.grab().toImage()

    def is_swatch(colour: QColor) -> bool:
        return colour.red() > 200 and colour.blue() > 200 and colour.green() < 60

    for y in range(10, 22):  # the legend's row, right of the title
        xs = [x for x in range(40, image.width()) if is_swatch(image.pixelColor(x, y))]
        if len(xs) >= 4:
            break
    else:
        raise AssertionError("no legend swatch for the noise")
    gaps = [x for x in range(xs[0], xs[-1]) if image.pixelColor(x, y).lightness() > 235]
    assert gaps, (y, xs)


def test_a_chart_is_named_and_described_for_screen_readers(qtbot: QtBot) -> None:
    """A painted chart was a nameless, empty graphic to a screen reader (accessibility
    audit): its title names it, its description is what it waits for or its last points."""
    from spdesk.gui.widgets.chart import LineChart

    chart = LineChart("Effect on held-out photos (higher is stronger)")
    qtbot.addWidget(chart)
    chart.add_series("this pattern", "#15803d")
    chart.add_series("random noise", "#9ca3af", dashed=True)
    chart.set_empty_text("First check after step 37 of 300.")
    assert chart.accessibleName() == "Effect on held-out photos (higher is stronger)"
    assert chart.accessibleDescription() == "First check after step 37 of 300."
    chart.append("this pattern", 37, 1.4567)
    chart.append("random noise", 37, 1.0)
    said = chart.accessibleDescription()
    assert said == "this pattern: 1.46 at 37; random noise: 1 at 37", said


def test_photos_that_cannot_be_read_are_named_as_left_out(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder count includes them; the dialog must say which were left out, and why."""
    from tests import protect_samples as samples

    folder = Path(dialog.folder_edit.text())
    samples.truncated_jpeg(folder / "cut.jpg")
    (folder / "notes.png").write_bytes(b"not an image")
    warnings: list[str] = []  # a failure's dialog would wait for a click forever
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[2]))
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.result is not None and not warnings, warnings
    said = dialog.result_label.text()
    assert "2 photos could not be read and were left out (" in said
    assert "cut.jpg" in said and "notes.png" in said
    why = dialog.result_label.toolTip()
    assert "cut.jpg is a damaged or truncated" in why and "notes.png is not a photo" in why
    # The line said at the start ("…; point here for why") had no reasons under it.
    assert dialog.status_label.toolTip() == why


def test_files_that_are_not_photos_are_named_as_left_out(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spdesk protect lists what it leaves out; training said nothing of a pattern file or a
    sidecar in the folder."""
    folder = Path(dialog.folder_edit.text())
    (folder / "mine.safetensors").write_bytes(b"\0" * 16)
    (folder / "p0.xmp").write_text("<x:xmpmeta/>")
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[2]))
    started: list[str] = []
    dialog.runner.core_event.connect(
        lambda event: (
            started.append(dialog.status_label.text()) if isinstance(event, TrainStarted) else None
        )
    )
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.result is not None and not warnings, warnings
    assert started and "Left out, not photos: mine.safetensors, p0.xmp." in started[0]
    said = dialog.result_label.text()
    assert "Left out, not photos: mine.safetensors, p0.xmp." in said
    assert "could not be read" not in said  # they are not photos that failed
    why = dialog.result_label.toolTip()
    assert "mine.safetensors: a pattern or model file" in why
    assert "p0.xmp: sidecar file (metadata), not a photo" in why


@pytest.mark.parametrize(("kind", "size"), [("cpu", 128), ("cuda", 512), (None, 512)])
def test_crops_default_to_what_the_device_trains_in_minutes(
    qtbot: QtBot, kind: str | None, size: int
) -> None:
    dlg = TrainDialog(open_settings(), device="auto", device_kind=kind)
    qtbot.addWidget(dlg)
    assert dlg.size_spin.value() == size
    assert dlg.request().size == size


def test_a_device_described_after_the_dialog_opened_sets_its_default_crops(
    qtbot: QtBot,
) -> None:
    # Opened while the window was still describing the device (seconds after it starts): a
    # CPU trained at 512 px, about twenty times as slow, unless the user saw and changed it.
    settings = open_settings()
    dlg = TrainDialog(settings, device="auto", device_kind=None)
    qtbot.addWidget(dlg)
    dlg.set_device_kind("cpu")
    assert dlg.size_spin.value() == 128 == dlg.request().size
    chosen = TrainDialog(settings, device="auto", device_kind=None)
    qtbot.addWidget(chosen)
    chosen.size_spin.setValue(256)  # the user's choice stays
    chosen.set_device_kind("cpu")
    assert chosen.size_spin.value() == 256


def test_the_window_tells_an_open_train_dialog_the_device_it_described(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.device import DeviceInfo
    from spdesk.gui.main_window import MainWindow

    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    sizes: list[int] = []

    def exec_while_detecting(dialog: TrainDialog) -> int:
        window._detecting = str(window.device_combo.currentData())
        window._on_device_info(DeviceInfo(kind="cpu", name="CPU", memory_gb=None))
        sizes.append(dialog.size_spin.value())
        return 0

    monkeypatch.setattr(TrainDialog, "exec", exec_while_detecting)
    window.open_train_dialog()
    assert sizes == [128]


def test_a_crop_size_is_remembered_only_when_the_user_chose_it(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialog.runner, "start", lambda _task: None)  # no training here
    settings = dialog.settings
    dialog.size_spin.setValue(dialog.default_size)
    assert dialog.start()
    # A default is not kept: the same user on a GPU later gets the GPU's default.
    assert settings.value("train/size") is None
    gpu = TrainDialog(settings, device="auto", device_kind="cuda")
    qtbot.addWidget(gpu)
    assert gpu.size_spin.value() == 512
    dialog.size_spin.setValue(96)
    assert dialog.start()
    again = TrainDialog(settings, device="auto", device_kind="cuda")
    qtbot.addWidget(again)
    assert again.size_spin.value() == 96


def test_training_is_against_no_edits_unless_the_user_ticks_some(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = open_settings()
    # Everyone who trained before this default changed has the old one stored: not a choice.
    settings.setValue("train/robust", "jpeg,resize")
    dlg = TrainDialog(settings, device="auto", device_kind="cpu")
    qtbot.addWidget(dlg)
    assert dlg.request().robust == ()
    assert "easier to see" in dlg.robust_checks["jpeg"].toolTip()
    assert "easier to see" in dlg.robust_hint.text()  # said where a user deciding looks
    dlg.robust_checks["blur"].setChecked(True)
    dlg.folder_edit.setText(str(_photos(tmp_path / "photos")))
    monkeypatch.setattr(dlg.runner, "start", lambda _task: None)  # no training here
    dlg.confirm = lambda _title, _text: True
    assert dlg.start()
    again = TrainDialog(settings, device="auto", device_kind="cpu")
    qtbot.addWidget(again)
    assert again.request().robust == ("blur",)  # a choice is kept


@pytest.mark.parametrize(("stored", "robust"), [("rotate,jpeg", ("jpeg",)), (7, ()), ("", ())])
def test_a_mangled_robustness_setting_ticks_only_edits_it_names(
    qtbot: QtBot, stored: object, robust: tuple[str, ...]
) -> None:
    settings = open_settings()
    settings.setValue("train/robustness", stored)  # a hand-edited or foreign settings file
    dlg = TrainDialog(settings, device="auto", device_kind="cpu")
    qtbot.addWidget(dlg)
    assert dlg.request().robust == robust


def test_without_the_eval_extra_the_summary_says_how_to_see_visibility(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    import spdesk.gui.train_dialog as train_dialog
    from spdesk.core.trained_pattern import PatternVisibility

    meta = {"gain_over_sign": 1.5, "steps": 300, "train_photos": 6, "val_photos": 4}
    seen = PatternVisibility(4, 40.0, 35.0, 0.1, 56.0, 0.07)
    text = train_dialog._summary(SimpleNamespace(metadata=meta, visibility=seen))
    assert "easier to see than random noise" in text and "SSIMULACRA2 40.0" in text
    assert "Robust to" not in text  # trained against no edits: nothing to untick
    plain = PatternVisibility(4, 13.0, 2.0, 0.16, 56.0, 0.07)
    robust = meta | {"transforms": ["jpeg", "resize"]}
    text = train_dialog._summary(SimpleNamespace(metadata=robust, visibility=plain))
    assert "with Robust to left unticked it comes out less visible" in text
    monkeypatch.setattr(train_dialog, "visibility_available", lambda: False)
    text = train_dialog._summary(SimpleNamespace(metadata=meta, visibility=None))
    assert 'pip install "ssimulacra2>=0.3" "flip-evaluator>=1.6"' in text


def test_the_check_after_training_says_how_long_it_takes_where_measured(qtbot: QtBot) -> None:
    from spdesk.core.events.training import CheckingPattern
    from spdesk.core.speed_figures import PATTERN_CHECK_SECONDS_CPU

    dialog = TrainDialog(open_settings(), device="cpu", device_kind="cpu")
    qtbot.addWidget(dialog)
    # The core sends the figure of the encoder's network (by name or by path alike).
    dialog._on_event(CheckingPattern(4, 512, PATTERN_CHECK_SECONDS_CPU["sd15"]))
    assert PATTERN_CHECK_SECONDS_CPU["sd15"] > 60
    assert "checking it on 4 held-out photos" in dialog.status_label.text()
    assert "(about 2 min" in dialog.status_label.text()
    dialog._on_event(CheckingPattern(photos=4, editor=512))  # nothing measured: no guess
    assert "about" not in dialog.status_label.text()


def test_the_check_after_training_fills_the_bar_photo_by_photo(qtbot: QtBot) -> None:
    """The bar stood full, with the check's one line, for the minute or two it takes."""
    from spdesk.core.events.training import CheckingPattern, CheckStep

    dialog = TrainDialog(open_settings(), device="cpu", device_kind="cpu")
    qtbot.addWidget(dialog)
    dialog.progress.setValue(1000)  # the last step
    dialog._on_event(CheckingPattern(photos=4, editor=512))
    dialog._on_event(CheckStep("effect", 0, 4))
    assert dialog.progress.value() == 0
    dialog._on_event(CheckStep("effect", 1, 4, 95.0))
    assert dialog.progress.value() == 250
    text = dialog.status_label.text()
    assert "checking its effect" in text and "held-out photo 1 of 4" in text
    assert "about 1 min 35 s left" in text
    dialog._on_event(CheckStep("visibility", 3, 4, 1.0))
    assert "how visible it is" in dialog.status_label.text() and dialog.progress.value() == 750


def _answer_questions(
    monkeypatch: pytest.MonkeyPatch, answer: QMessageBox.StandardButton
) -> list[tuple[str, str, object]]:
    """Record each QMessageBox.question (title, text, buttons) and give ``answer``."""
    asked: list[tuple[str, str, object]] = []

    def question(_parent: object, title: str, text: str, *args: object) -> object:
        asked.append((title, text, args[0] if args else None))
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def test_closing_with_an_unsaved_result_asks_before_discarding_it(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialog.show()
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    result = dialog.result
    assert result is not None, dialog.status_label.text()
    result.checkpoint.write_bytes(b"kept until the result is saved or discarded")
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Cancel)
    dialog.reject()  # Esc
    assert [title for title, _text, _buttons in asked] == ["Discard the result?"]
    _title, text, buttons = asked[0]
    assert "not saved" in text
    assert buttons == QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
    assert dialog.isVisible() and dialog.result is result, "Cancel keeps the result"
    assert result.checkpoint.is_file()
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Discard)
    dialog.reject()
    assert len(asked) == 1 and not dialog.isVisible()
    assert not result.checkpoint.exists()  # discarded: nothing left to resume
    dialog.show()  # once saved, closing asks nothing
    dialog.name_edit.setText("Kept")
    assert dialog.save_to_library() is not None
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert dialog.close() and asked == []


def test_train_again_asks_before_discarding_an_unsaved_result(
    dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    weak = SimpleNamespace(
        metadata={"gain_over_sign": 0.65, "steps": 4, "train_photos": 3, "val_photos": 1},
        checkpoint=None,
    )
    dialog._on_succeeded(weak)
    dialog._update_controls()
    started: list[object] = []
    monkeypatch.setattr(dialog.runner, "start", started.append)  # no training here
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Cancel)
    steps = dialog.steps_spin.value()
    dialog.train_longer_button.click()
    assert [title for title, _text, _buttons in asked] == ["Discard the result?"]
    assert started == [] and dialog.result is weak and dialog.steps_spin.value() == steps
    assert dialog.start_button.text() == "&Train again"
    dialog.start_button.click()
    assert len(asked) == 2 and started == [] and dialog.result is weak
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Discard)
    assert dialog.start()
    assert len(asked) == 1 and len(started) == 1 and dialog.result is None


def test_the_footer_says_what_to_do_once_the_folder_is_counted(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path
) -> None:
    qtbot.waitUntil(lambda: dialog.photo_count == 4, timeout=10_000)
    footer = dialog.status_label.text()
    assert "Choose a folder" not in footer, footer
    assert "Only 4 photos: 20 or more" in footer and "Start training" in footer, footer
    many = _photos(tmp_path / "many", count=21)
    dialog.folder_edit.setText(str(many))
    qtbot.waitUntil(lambda: dialog.photo_count == 21, timeout=10_000)
    assert dialog.status_label.text() == "Ready: press “Start training”."
    dialog.folder_edit.setText("")
    assert dialog.status_label.text() == "Choose a folder of photos, then press “Start training”."


def test_close_asks_before_stopping_training_and_stop_says_what_it_stops(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dialog.cancel_button.text() == "Stop training"
    assert not dialog.cancel_button.isEnabled() and dialog.close_button.isEnabled()
    dialog.show()
    dialog.steps_spin.setValue(2000)
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.loss_chart.series["loss"].points != [], timeout=30_000)
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    dialog.close_button.click()  # as Esc: asks; No keeps training
    assert [title for title, _text, _buttons in asked] == ["Stop training?"]
    assert dialog.isVisible() and dialog.runner.running
    asked = _answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    dialog.close_button.click()
    assert len(asked) == 1 and not dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    # Closing waits 1 s for the task, then lets it go when its step takes longer (a loaded
    # machine): it ends at its next check. The test ended before it did in 3 runs of 5 here,
    # and its teardown's check for threads left running failed.
    from spdesk.gui.workers import wait_for_live_threads

    assert wait_for_live_threads(30_000)


def test_a_folder_typed_with_a_tilde_is_the_one_counted_and_trained_on(
    qtbot: QtBot, dialog: TrainDialog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the fixture's photos are in ~/photos
    dialog.folder_edit.setText("~/photos")
    qtbot.waitUntil(lambda: dialog.photo_count == 4, timeout=10_000)
    request = dialog.request()
    assert request.photos == tmp_path / "photos"
    assert _check_request(request, dialog.photo_count) == ""


def test_a_run_that_starts_afresh_says_why(dialog: TrainDialog) -> None:
    reason = "the photos changed since the run stopped at step 40"
    dialog._on_event(StartingAfresh(reason))
    dialog._on_event(TrainStarted(train_photos=3, val_photos=1, steps=100, encoder="tiny"))
    said = dialog.status_label.text()
    assert said.startswith(f"Started afresh: {reason}. Training on 3 photos"), said
    dialog._on_event(TrainStep(step=1, steps=100, loss=0.5))
    assert f"(started afresh: {reason})" in dialog.status_label.text()  # stays in view


def test_one_training_photo_is_said_in_the_singular(dialog: TrainDialog) -> None:
    # Two photos found (the least it takes): one trains, one is held out.
    dialog._on_event(TrainStarted(train_photos=1, val_photos=1, steps=100, encoder="tiny"))
    assert dialog.status_label.text().startswith("Training on 1 photo, checking on 1 held out")
    from types import SimpleNamespace

    from spdesk.gui.train_dialog import _summary

    meta = {"steps": 1, "train_photos": 1, "val_photos": 1, "gain_over_sign": 1.2}
    said = _summary(SimpleNamespace(metadata=meta, validation=[]))
    assert said.startswith("Trained for 1 step on 1 photo. In training's check (1 held-out photo)")


def test_enter_is_start_training_s_as_its_look_says(qtbot: QtBot, dialog: TrainDialog) -> None:
    """ "Start training" had the main action's look but not the Enter key: Qt gave that to the
    first button, the disabled "Pause", so Enter after typing the folder did nothing (and once
    a run had ended, "Train again" had it)."""
    from PySide6.QtCore import Qt

    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.start_button.isDefault() and not dialog.pause_button.isDefault()
    qtbot.keyClick(dialog.folder_edit, Qt.Key.Key_Return)
    assert dialog.runner.running
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        dialog.cancel()  # no result to ask about when the dialog closes


def test_a_resumed_run_says_so_with_each_step(dialog: TrainDialog) -> None:
    """ "Resumed at step 40" was replaced by the first step's "Step 41 of 100": a user told to
    press Start to resume could not see that it had."""
    dialog._on_event(TrainStarted(train_photos=3, val_photos=1, steps=100, encoder="tiny"))
    dialog._on_event(TrainStep(step=1, steps=100, loss=0.5))
    assert "resumed" not in dialog.status_label.text()  # a run from the start says nothing
    started = TrainStarted(train_photos=3, val_photos=1, steps=100, encoder="tiny", resumed_from=40)
    dialog._on_event(started)
    assert dialog.status_label.text().startswith("Resumed at step 40")
    dialog._on_event(TrainStep(step=41, steps=100, loss=0.5))
    said = dialog.status_label.text()
    assert said.startswith("Step 41 of 100") and "(resumed at step 40)" in said, said


def test_a_checkpoint_not_written_is_said_with_each_step_while_training_goes_on(
    dialog: TrainDialog, tmp_path: Path
) -> None:
    dialog._on_event(TrainStarted(train_photos=3, val_photos=1, steps=100, encoder="tiny"))
    dialog._on_event(CheckpointFailed(25, tmp_path / "run.ckpt", "The disk is full."))
    dialog._on_event(TrainStep(step=26, steps=100, loss=0.5))
    said = dialog.status_label.text()
    assert said.startswith("Step 26 of 100") and "not saved for resuming: The disk is full." in said


def test_a_checkpoint_written_again_clears_the_warning_and_a_finished_run_is_not_cancelled(
    dialog: TrainDialog, tmp_path: Path
) -> None:
    dialog._on_event(CheckpointFailed(25, tmp_path / "run.ckpt", "The disk is full."))
    dialog._on_event(CheckpointSaved(step=50, path=tmp_path / "run.ckpt"))  # space freed
    dialog._on_event(TrainStep(step=51, steps=100, loss=0.5))
    assert "not saved for resuming" not in dialog.status_label.text()
    started = TrainStarted(train_photos=3, val_photos=1, steps=30, encoder="tiny", resumed_from=30)
    dialog._on_event(started)  # a run whose save failed resumes at its end
    said = dialog.status_label.text()
    assert said.startswith("Every step of this run had run") and "cancelled" not in said


def test_a_failed_run_leaves_no_promise_of_a_first_check(
    dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "First check after step 25 of 40" stayed under a failed run (audit)."""
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "warning", lambda *_args: None)
    dialog._on_event(TrainStep(step=3, steps=40, loss=0.5))
    assert dialog.val_chart.empty_text.startswith("First check after step")
    dialog._on_failed("None of the photos can be read.")
    assert dialog.val_chart.empty_text == "The run failed before the first check."


@pytest.mark.parametrize(("encoder", "feature"), [("sd15", "train"), ("taesd", "taesd")])
def test_a_missing_encoder_is_offered_from_models_before_training_starts(
    qtbot: QtBot, dialog: TrainDialog, encoder: str, feature: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "Training failed" with commands to type: the dialog finds the missing model before
    it starts, and offers the Models window (or a file of one's own)."""
    import spdesk.gui.train_dialog as train_dialog
    from spdesk.gui.protect_bridge import encoder_problem

    monkeypatch.setattr(train_dialog, "encoder_problem", encoder_problem)  # the real check
    asked: list[str] = []
    dialog.ask_missing_model = lambda text: asked.append(text) or "models"
    dialog.encoder_combo.setCurrentIndex(dialog.encoder_combo.findData(encoder))
    with qtbot.waitSignal(dialog.open_models_requested, timeout=5_000) as opened:
        assert not dialog.start()
    assert opened.args == [feature] and not dialog.runner.running
    assert asked and asked[0].startswith("Training with") and "not installed" in asked[0]
    dialog.ask_missing_model = lambda text: "file"
    chosen: list[bool] = []
    dialog.choose_encoder = lambda: chosen.append(True)  # type: ignore[method-assign]
    assert not dialog.start()
    assert chosen and dialog.encoder_combo.currentData() == "custom"


def test_a_closed_dialog_is_freed_without_the_cyclic_garbage_collector(qtbot: QtBot) -> None:
    """Callables kept on the dialog that hold the dialog make a cycle only the cyclic collector
    frees, from whichever thread runs it: a dialog without a parent then died off the GUI
    thread, and the next dialog's event loop crashed (a segfault in the screenshot tour)."""
    import gc
    import weakref

    del qtbot  # a QApplication, nothing else
    dialog = TrainDialog(open_settings(), device="cpu")
    alive = weakref.ref(dialog)
    gc.disable()
    try:
        del dialog
        assert alive() is None, "the dialog waits for the cyclic garbage collector"
    finally:
        gc.enable()


def test_saving_under_a_name_whose_file_holds_another_pattern_names_that_pattern(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Portraits ?8" takes the file of "Portraits *8": the question named the new name, which
    was not in the list, and Yes silently replaced the other pattern."""
    import spdesk.gui.train_dialog as train_dialog
    from spdesk.core.perturbation import library_path_for, perturbation_label, save_perturbation

    other = library_path_for("Portraits *8")
    signs = np.sign(np.random.default_rng(1).standard_normal((3, 16, 16))).astype(np.float32)
    save_perturbation(other, signs * 8 / 255, eps=8, metadata={"name": "Portraits *8"})
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    asked: list[str] = []
    monkeypatch.setattr(train_dialog, "_confirm", lambda _p, _t, text: asked.append(text) or False)
    dialog.name_edit.setText("Portraits ?8")
    assert dialog.save_to_library() is None
    assert asked == [
        "“Portraits *8” is in your library under the file this name would take. "
        "Replace “Portraits *8” with “Portraits ?8”?"
    ]
    assert perturbation_label(other) == "Portraits *8"  # kept: the answer was no
    dialog.name_edit.setText("a" * 300)  # too long for a file name: cut to fit, saved
    assert dialog.save_to_library() is not None


def test_every_field_and_the_progress_are_named_for_screen_readers(
    qtbot: QtBot, dialog: TrainDialog
) -> None:
    """The photo folder, the strength (a combo box announced by its value alone, "Medium"),
    the encoder's file, the progress bar and the name to save under had no name for a screen
    reader (accessibility audit)."""
    names = {
        dialog.folder_edit: "Photo folder",
        dialog.strength_combo: "Strength",
        dialog.strength_spin: "Exact strength",
        dialog.encoder_combo: "Encoder",
        dialog.encoder_edit: "Encoder folder or file",
        dialog.progress: "Training progress",
        dialog.name_edit: "Name",
    }
    for widget, name in names.items():
        assert widget.accessibleName() == name


def test_each_setting_and_start_training_have_a_letter_of_their_own(
    qtbot: QtBot, dialog: TrainDialog
) -> None:
    """Strength, Length, Crop size, Encoder and "Start training" had no Alt letter: a keyboard
    user tabbed to each (accessibility audit). Alt with the letter goes to the field; no
    letter is used twice in the dialog; "Train again" keeps the start button's."""
    from PySide6.QtCore import Qt

    dialog.show()
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    keys = {
        Qt.Key.Key_S: dialog.strength_combo,
        Qt.Key.Key_L: dialog.steps_spin,
        Qt.Key.Key_C: dialog.size_spin,
        Qt.Key.Key_E: dialog.encoder_combo,
    }
    assert_alt_letters_reach(qtbot, dialog.close_button, keys)
    letters = mnemonic_letters(dialog)
    assert letters.get("t") == [dialog.start_button.text()], letters
    twice = {key: texts for key, texts in letters.items() if len(texts) > 1}
    assert not twice, twice
    assert dialog.status_label.text().count("“Start training”") == 1  # its words, no "&"


def test_a_runs_end_is_told_to_screen_readers(
    qtbot: QtBot, dialog: TrainDialog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end the focus went to the name to save under: a screen reader said "Name,
    edit" and nothing of the result beside it; a cancel said nothing (accessibility audit)."""

    told = record_announcements(monkeypatch)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.result is not None, dialog.status_label.text()
    assert told == [f"{dialog.status_label.text()} {dialog.result_label.text()}"]
    assert told[0].startswith("Finished in")
    dialog._on_cancelled()
    assert told[-1] == dialog.status_label.text() and told[-1].startswith("Stopped")
