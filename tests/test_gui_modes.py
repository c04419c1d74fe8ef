"""The settings column's three modes round-trip and reach the job as its modes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spdesk.gui.protect_bridge import job_settings
from spdesk.gui.settings import ProtectOptions
from spdesk.gui.widgets.options import OptionsPanel


@pytest.mark.parametrize("mode", ["photo", "universal", "finetune"])
def test_each_mode_round_trips_to_the_job(qtbot, mode: str) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(replace(ProtectOptions(), mode=mode, output_dir="/tmp/out"))
    qtbot.addWidget(panel)
    assert panel.options().mode == mode
    # Fine-tuning starts from photo mode's perturbation unless a pattern of the user's is chosen.
    assert job_settings(panel.options()).mode == {"finetune": "photo-finetune"}.get(mode, mode)
    assert panel.steps_spin.isVisibleTo(panel) == (mode == "finetune")  # shown with its mode
    assert panel.mode_note.text()
    assert panel.perturbation_box.isVisibleTo(panel) == (mode != "photo")


def test_the_fine_tuning_estimate_follows_the_device(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune", finetune_encoder="sd15"))
    qtbot.addWidget(panel)
    changes: list[object] = []
    panel.changed.connect(lambda: changes.append(1))
    on_cpu = panel.mode_note.text()
    assert "CPU" in on_cpu
    panel.set_device_kind("cuda")
    on_gpu = panel.mode_note.text()
    assert "GPU" in on_gpu and on_gpu != on_cpu
    panel.set_device_kind("mps")  # no figures for Apple GPUs: no number is made up
    assert "measured as it runs" in panel.mode_note.text()
    assert not changes  # knowing the device changes no setting: no row becomes pending again
