"""Fine-tuning's time estimate: measured from the steps a job actually runs, kept live."""

from __future__ import annotations

from dataclasses import replace
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
from spdesk.gui.settings import (
    ProtectOptions,
    measured_step_times,
    open_settings,
    remember_step_time,
)
from spdesk.gui.widgets.options import MEASURED_ON, OptionsPanel


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
    # One small photo and two steps: each step encodes it at both editor sizes (short side 256
    # and 512) and its JPEG re-save, about 10 s a step on a loaded 2-core machine.
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(photos / "0.png")
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.device_runner.finished, timeout=60_000):
        window.detect_device()  # as the app does once its window shows
    panel = window.options_panel
    panel.output_edit.setText(str(tmp_path / "out"))
    panel.finetune_radio.setChecked(True)
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData("taesd"))
    panel.steps_spin.setValue(2)
    assert "on a 2-core CPU" in panel.mode_note.text()  # nothing measured here yet
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        window.add_paths([photos])
    shown: list[str] = []

    def follow(_event: Event) -> None:  # after the window's own handler
        shown.append(window.progress_label.text())

    window.job_runner.core_event.connect(follow)
    with qtbot.waitSignal(window.job_runner.finished, timeout=240_000):
        window.start_button.click()
    assert window.summary_label.text().startswith("1 protected"), window.summary_label.text()
    live = [text for text in shown if "s per step here" in text]
    assert live and "left" in live[0], shown
    kind = panel.device_kind  # what "Automatic" is on this machine
    times = measured_step_times(window.settings)
    assert list(times) == [(kind, "taesd")], "kept with the device it was measured on"
    measured = times[kind, "taesd"]
    assert measured > 0
    assert f"on this computer's {MEASURED_ON[kind]}" in panel.mode_note.text()
    assert f"{measured:.2g} s per step" in panel.mode_note.text()


def test_a_step_time_is_reused_only_on_the_device_it_was_measured_on(qtbot: QtBot) -> None:
    settings = open_settings()
    settings.setValue("finetune_step_seconds/taesd", 0.5)  # kept before devices were recorded
    remember_step_time(settings, "cuda", "taesd", 0.0172)
    assert measured_step_times(settings) == {("cuda", "taesd"): 0.0172}
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune", finetune_encoder="taesd"))
    qtbot.addWidget(panel)
    panel.set_measured_step_times(measured_step_times(settings))
    assert "on this computer" not in panel.mode_note.text()  # a CPU: the GPU's time says nothing
    panel.set_device_kind("cuda")
    assert "on this computer's NVIDIA GPU (0.017 s per step" in panel.mode_note.text()
    panel.set_device_kind("mps")
    assert "on this computer" not in panel.mode_note.text()


def test_a_job_on_a_device_not_yet_described_keeps_no_step_time(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    panel = window.options_panel
    panel.finetune_radio.setChecked(True)
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData("taesd"))
    clock = FinetuneClock(steps=10, photos=1)
    monkeypatch.setattr(FinetuneClock, "seconds_per_step", 2.0)
    window._finetune_clock, window._job_device = clock, "cuda"  # its description never came
    window._remember_step_time()
    assert measured_step_times(window.settings) == {}
    window._device_kinds["cuda"] = "cuda"
    window._remember_step_time()
    assert measured_step_times(window.settings) == {("cuda", "taesd"): 2.0}
