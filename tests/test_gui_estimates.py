"""Fine-tuning's time estimate: measured from the steps a job actually runs, kept live."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pytestqt.qtbot import QtBot
from tiny_sd import save_tiny_taesd

from spdesk.core.events import Event
from spdesk.core.jobs.events import FailReason, FileDone, FileFailed, FileProgress
from spdesk.core.models.store import ModelStore
from spdesk.gui.main_window import MainWindow
from spdesk.gui.protect_bridge import FinetuneClock
from spdesk.gui.settings import measured_step_times, open_settings


def test_the_clock_starts_at_the_first_step_and_follows_every_step() -> None:
    now = [100.0]
    a, b = Path("a.jpg"), Path("b.jpg")
    clock = FinetuneClock(steps=10, photos=2, now=lambda: now[0])
    clock.update(FileProgress(a, 0.5, 3, "reading"))
    now[0] = 160.0  # loading the encoder and reading a photo are not steps
    clock.update(FileProgress(a, 1.1, 3, "fine-tuning"))  # step 1 of 10: the clock starts
    assert clock.seconds_per_step is None and clock.left() is None
    now[0] = 170.0
    clock.update(FileProgress(a, 1.3, 3, "fine-tuning"))  # two more steps in 10 s
    assert clock.seconds_per_step == pytest.approx(5.0)
    assert clock.left() == pytest.approx(5.0 * (20 - 3))
    now[0] = 200.0
    clock.update(FileProgress(a, 1.5, 3, "fine-tuning"))  # slower now: the estimate follows
    assert clock.seconds_per_step == pytest.approx(10.0)
    clock.update(FileFailed(b, FailReason.UNREADABLE, "broken"))  # no steps for b
    assert clock.left() == pytest.approx(10.0 * (10 - 5))
    clock.update(FileDone(a, Path("out/a.jpg")))
    assert clock.left() == 0.0


def test_a_fine_tuning_job_shows_the_time_it_measures_and_keeps_it_for_the_estimate(
    qtbot: QtBot, tmp_path: Path
) -> None:
    ModelStore().import_path(save_tiny_taesd(tmp_path / "taesd.safetensors"))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    panel = window.options_panel
    panel.output_edit.setText(str(tmp_path / "out"))
    panel.finetune_radio.setChecked(True)
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData("taesd"))
    panel.steps_spin.setValue(4)
    assert "on a 2-core CPU" in panel.mode_note.text()  # nothing measured here yet
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        window.add_paths([photos])
    shown: list[str] = []

    def follow(_event: Event) -> None:  # after the window's own handler
        shown.append(window.progress_label.text())

    window.job_runner.core_event.connect(follow)
    with qtbot.waitSignal(window.job_runner.finished, timeout=120_000):
        window.start_button.click()
    assert window.summary_label.text().startswith("2 protected"), window.summary_label.text()
    live = [text for text in shown if "s per step here" in text]
    assert live and "left" in live[0], shown
    measured = measured_step_times(window.settings)["taesd"]
    assert measured > 0
    assert "on this computer" in panel.mode_note.text()
    assert f"{measured:.1f} s per step" in panel.mode_note.text()
