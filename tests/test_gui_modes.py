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
    assert job_settings(panel.options()).mode == mode
    assert panel.steps_spin.isVisibleTo(panel) == (mode == "finetune")  # shown with its mode
    assert panel.mode_note.text()
    assert panel.perturbation_box.isVisibleTo(panel) == (mode != "photo")
