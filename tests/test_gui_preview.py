"""The preview dialog: the protection at once without a model; with tiny random-weight SD
components, the AI edits (six tiles), figures and verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shiboken6
from accessibility import mnemonic_letters, record_announcements
from PIL import Image
from PySide6.QtCore import QPoint
from pytestqt.qtbot import QtBot
from tiny_sd import save_tiny_sd

from spdesk.core.perturbation import save_perturbation
from spdesk.core.usecases import DIFFERENCE_GAIN
from spdesk.gui.preview_panel import (
    EDIT_TILES,
    ENGINES,
    FINE_TUNING_NEEDS_MODEL,
    FINE_TUNING_NOT_SHOWN,
    MODEL_NEEDED,
    UNFILTERED_NOTE,
    EngineCache,
    PreviewDialog,
)
from spdesk.gui.settings import ProtectOptions


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, ProtectOptions]:
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    base = np.linspace(0, 255, 80 * 96 * 3).reshape(80, 96, 3)
    Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).save(
        photo
    )
    delta = rng.choice([-1.0, 1.0], size=(3, 64, 64)).astype(np.float32) * 16 / 255
    pert = save_perturbation(tmp_path / "p.safetensors", delta, eps=16)
    return photo, ProtectOptions(perturbation=str(pert), strength=16, device="cpu")


def _dialog(qtbot: QtBot, photo: Path, options: ProtectOptions, sd: Path | None) -> PreviewDialog:
    dialog = PreviewDialog(photo, options, model_dir=sd, inpaint_dir=sd)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.show()  # the photo is protected (no model needed) as the dialog opens
    dialog.working_size = 64
    dialog.steps_spin.setValue(4)
    return dialog


def test_preview_shows_six_tiles_figures_and_verdict(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    assert UNFILTERED_NOTE in dialog.note_label.text()
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("P3"))
    assert dialog.prompt_edit.text() == "add some snow"
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    assert all(tile.has_image() for tile in dialog.tiles.values())
    assert dialog.figures_table.isVisibleTo(dialog)
    # A figure the table leaves out is not a problem to report (the app has no pip to add piq).
    assert "piq" not in dialog.status_label.text() and "FSIM" not in dialog.status_label.text()
    for row in range(3):
        item = dialog.figures_table.item(row, 0)
        text = item.text() if item is not None else ""
        assert 0 <= float(text) <= 1, text
    assert dialog.verdict.text()
    for column in range(dialog.figures_table.columnCount()):  # each figure says what it means
        header = dialog.figures_table.horizontalHeaderItem(column)
        assert header is not None and "means" in header.toolTip() and "lower" in header.toolTip()
    # 100% view shows the protected photo at its full size, different from the original
    zoom = dialog.open_zoom()
    assert zoom is not None
    pixmap = zoom.picture.pixmap()
    assert (pixmap.width(), pixmap.height()) == (96, 80)
    assert not np.array_equal(dialog.outcome.protected, dialog.outcome.photo)
    zoom.close()


def test_the_verdict_is_told_to_screen_readers(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict came as a coloured label the focus was not on: a screen reader said
    nothing when the edit was done (accessibility audit)."""

    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    told = record_announcements(monkeypatch)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    assert told == [f"{dialog.status_label.text()} {dialog.verdict.text()}"]
    assert told[0].startswith("Done in") and dialog.verdict.text()


def test_free_prompt_switches_the_preset_to_own_words(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    dialog.prompt_edit.setText("")
    qtbot.keyClicks(dialog.prompt_edit, "a castle")  # type: ignore[no-untyped-call]
    assert dialog.preset_combo.currentData() == ""
    assert dialog.settings().prompt == "a castle"


def test_without_the_model_the_protection_shows_at_once_and_the_edit_says_what_it_needs(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)  # nothing in the (empty) model store
    assert dialog.view is not None, dialog.status_label.text()
    for name in ("original", "protected", "difference"):
        assert dialog.tiles[name].has_image(), name
    assert not any(dialog.tiles[name].has_image() for name in EDIT_TILES)
    assert not dialog.figures_table.isVisibleTo(dialog), "no table of blanks before an edit"
    assert "PSNR" in dialog.status_label.text()  # the visibility figure, said meanwhile
    assert dialog.note_label.text() == MODEL_NEEDED["img2img"] and dialog.models_button.isVisible()
    assert dialog.models_button.isDefault() and not dialog.preview_button.isDefault()
    # The note bar is above the tiles: it pointed "above" at the protection shown below it.
    note_bottom = dialog.note_label.mapTo(dialog, dialog.note_label.rect().bottomLeft()).y()
    assert note_bottom < dialog.tiles["protected"].mapTo(dialog, QPoint(0, 0)).y()
    assert "shown below" in dialog.note_label.text() and "above" not in dialog.note_label.text()
    assert dialog.preview_button.objectName() != "Primary"  # one main action: get the model
    assert "strength 16" in dialog.status_label.text()
    # The difference view is the change, amplified around mid-grey.
    change = dialog.view.protected.astype(int) - dialog.view.photo.astype(int)
    assert 0 < np.abs(change).max() <= 16
    expected = np.clip(128 + DIFFERENCE_GAIN * change, 0, 255)
    assert np.array_equal(dialog.view.difference, expected)
    zoom = dialog.open_zoom()  # 100% before any AI edit
    assert zoom is not None and zoom.picture.pixmap().width() == 96
    zoom.close()
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.start()
    said = dialog.status_label.text() + dialog.note_label.text()
    assert "spdesk models" not in said and "Traceback" not in said  # the app's own words
    assert dialog.models_button.isVisible() and dialog.tiles["protected"].has_image()


def test_closing_the_preview_frees_the_sd_pipelines(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    import gc
    import weakref

    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    pipeline = weakref.ref(ENGINES.get(sd_dir, sd_dir, "cpu").pipeline("img2img"))
    gc.collect()
    assert pipeline() is not None  # kept while the dialog is open, for the next preview
    dialog.reject()
    gc.collect()
    assert pipeline() is None


def test_other_models_or_device_release_the_engine_first(sd_dir: Path) -> None:
    import gc
    import weakref

    cache = EngineCache()
    first = cache.get(sd_dir, None, "cpu")
    assert cache.get(sd_dir, None, "cpu") is first
    pipeline = weakref.ref(first.pipeline("img2img"))
    second = cache.get(None, sd_dir, "cpu")
    gc.collect()
    assert second is not first and pipeline() is None
    cache.release()


def test_the_app_starts_with_the_edit_the_command_line_runs(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    """The same photo and seed gave two edits: the app asked for 30 steps, `spdesk preview`
    for 50."""
    from spdesk.cli import build_parser
    from spdesk.core.preview import PreviewRequest, resolve_prompt

    photo, options = inputs
    dialog = PreviewDialog(photo, options)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.show()
    app = dialog.settings()
    cli = build_parser().parse_args(["preview", str(photo), "--out", "x"])
    assert (app.edit_strength, app.steps, app.seed) == (cli.strength_edit, cli.steps, cli.seed)
    assert app.prompt == resolve_prompt(cli.prompt, cli.preset)
    assert (app.mode, app.working_size) == (cli.mode, cli.size)
    request = PreviewRequest()
    assert (request.steps, request.strength, request.guidance) == (
        cli.steps,
        cli.strength_edit,
        cli.guidance,
    )


def test_the_edit_controls_speak_plainly_and_are_not_the_protection_strength(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    from PySide6.QtWidgets import QLabel

    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    presets = [dialog.preset_combo.itemText(i) for i in range(dialog.preset_combo.count())]
    assert presets[0] == "Watercolor painting" and not any("(P" in text for text in presets)
    modes = [dialog.mode_combo.itemText(i) for i in range(dialog.mode_combo.count())]
    assert not any("SDEdit" in text for text in modes), modes
    labels = {label.text() for label in dialog.findChildren(QLabel)}
    assert "Edit strength" in labels and "Strength" not in labels


def test_a_photo_the_protection_cannot_change_is_called_unchanged_not_protected(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import usecases
    from spdesk.core.jobs.events import UNCHANGED

    flat = tmp_path / "flat.png"
    Image.new("RGB", (80, 80), (200, 10, 10)).save(flat)
    # A budget rounded away leaves the photo as it was (a stand-in: too small photos, which
    # did, are refused now).
    monkeypatch.setattr(usecases, "_generator_protected", lambda photo, *_: photo.copy())
    dialog = _dialog(qtbot, flat, ProtectOptions(mode="photo", device="cpu"), None)
    assert dialog.view is not None and dialog.view.largest_change == 0
    assert dialog.status_label.text() == f"This photo is {UNCHANGED}."


def test_a_photo_too_small_to_protect_is_said_as_protect_says_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The preview called a 1x1 photo "unchanged: too small or flat", while Protect refuses
    it as too small to protect."""
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(dot)
    dialog = _dialog(qtbot, dot, ProtectOptions(mode="photo", device="cpu"), None)
    said = dialog.status_label.text()
    assert said.startswith("dot.png is 1x1 pixels: too small to protect"), said
    assert "unchanged" not in said and "Protected" not in said
    assert not dialog.tiles["protected"].has_image()
    assert not dialog.preview_button.isEnabled()
    assert not dialog.zoom_button.isEnabled()  # no protected copy to look at 100%


def test_a_photo_too_small_for_an_edit_says_so_before_any_model_loads(
    qtbot: QtBot, sd_dir: Path, tmp_path: Path
) -> None:
    """A 20 px high strip is shown protected, but the edit button stays off with the reason:
    no Stable Diffusion load and no failure dialog for a photo no edit could judge."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (400, 20), (90, 120, 200)).save(strip)
    dialog = _dialog(qtbot, strip, ProtectOptions(mode="photo", device="cpu"), sd_dir)
    assert dialog.view is not None
    assert "strip.png is 400x20 pixels: too small for an AI edit preview" in (
        dialog.status_label.text()
    )
    assert not dialog.preview_button.isEnabled()
    assert dialog.start() is False and not dialog.runner.running


def test_another_photo_clears_the_last_edit_and_zoom_is_only_for_the_photo_shown(
    qtbot: QtBot,
    sd_dir: Path,
    inputs: tuple[Path, ProtectOptions],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QMessageBox

    photo, options = inputs
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    assert dialog.verdict.text() and dialog.figures_table.isVisibleTo(dialog)
    zoom = dialog.open_zoom()
    assert zoom is not None and zoom.isVisible()
    other = tmp_path / "other.png"  # another size, to tell the photos apart at 100%
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (88, 112, 3), dtype=np.uint8)).save(other)
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(other))
    assert dialog.tiles["original"].has_image() and dialog.view is not None
    stale = [name for name in EDIT_TILES if dialog.tiles[name].has_image()]
    assert stale == [], "the previous photo's AI edits are shown beside this one"
    assert dialog.verdict.text() == "" and not dialog.figures_table.isVisibleTo(dialog)
    # Closed, and deleted once the event loop gets to it (when depends on pytest-qt's loop).
    assert dialog.outcome is None and (not shiboken6.isValid(zoom) or not zoom.isVisible())
    again = dialog.open_zoom()
    assert again is not None and again.picture.pixmap().width() == 112  # this photo, not the last
    again.close()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(bad))
    assert dialog.view is None and "bad.jpg" in dialog.status_label.text()
    assert not dialog.zoom_button.isEnabled()
    assert dialog.open_zoom() is None, "Zoom 100% showed an earlier photo"
    assert not any(tile.has_image() for tile in dialog.tiles.values()) and not shown


def test_an_edit_cannot_be_zoomed_once_an_unreadable_photo_is_chosen(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions], tmp_path: Path
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(bad))
    assert dialog.view is None
    assert not dialog.zoom_button.isEnabled() and dialog.open_zoom() is None
    assert dialog.verdict.text() == "" and not any(t.has_image() for t in dialog.tiles.values())


def test_an_unreadable_photo_says_why_in_the_note_bar_and_turns_the_edit_off(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions], tmp_path: Path
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    assert dialog.preview_button.isEnabled()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage" * 10)
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(bad))
    note = dialog.note_label.text()
    assert "bad.jpg" in note and UNFILTERED_NOTE not in note, note  # the error, where the eye is
    assert dialog.note_label.parentWidget().property("error") is True  # type: ignore[union-attr]
    assert not dialog.preview_button.isEnabled()
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(photo))  # a photo that reads: the edit is back
    assert dialog.note_label.text() == UNFILTERED_NOTE
    assert dialog.preview_button.isEnabled()


def test_a_path_with_no_photo_shows_nothing_of_the_last_one_and_says_so(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions], tmp_path: Path
) -> None:
    """The previous photo's tiles and status stayed, and the edit button's tooltip blamed the
    model."""
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    assert dialog.tiles["original"].has_image()
    dialog.photo_edit.setText(str(tmp_path / "typo.jpg"))
    qtbot.waitUntil(lambda: dialog.view is None, timeout=5_000)
    assert not any(tile.has_image() for tile in dialog.tiles.values())
    assert dialog.status_label.text() == f"No photo at {tmp_path / 'typo.jpg'}."
    assert not dialog.preview_button.isEnabled()
    assert dialog.preview_button.toolTip() == "No photo at this path"
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.photo_edit.setText(str(photo))  # back: shown, and the edit can run
    assert dialog.tiles["original"].has_image() and dialog.preview_button.isEnabled()


def test_without_the_model_the_edit_button_is_off_until_models_brings_it(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui import preview_panel

    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)  # nothing in the (empty) model store
    assert dialog.note_label.text() == MODEL_NEEDED["img2img"]
    assert not dialog.preview_button.isEnabled() and dialog.models_button.isEnabled()
    monkeypatch.setattr(preview_panel, "_model_installed", lambda _mode: True)
    dialog.recheck_model()  # Models… closed with the model downloaded
    assert dialog.preview_button.isEnabled() and not dialog.models_button.isVisible()
    assert dialog.note_label.text() == UNFILTERED_NOTE


def test_the_dialog_has_close_and_a_stop_that_names_the_preview(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    assert dialog.cancel_button.text() == "Stop preview" and not dialog.cancel_button.isEnabled()
    assert dialog.close_button.isEnabled()
    dialog.close_button.click()
    assert not dialog.isVisible()


def test_fine_tuned_per_photo_shows_photo_mode_s_protection_at_once_before_fine_tuning(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions], sd_dir: Path
) -> None:
    """Not the universal pattern, which the app's "Fine-tuned per photo" never writes."""
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.usecases import protect_for_preview

    photo, _options = inputs
    options = ProtectOptions(mode="finetune", strength=8, device="cpu")
    dialog = _dialog(qtbot, photo, options, None)
    assert dialog.view is not None, dialog.status_label.text()
    applied = ApplyOptions(strength=8)
    one_pass = protect_for_preview(photo, None, applied, protection="photo").protected
    universal = protect_for_preview(photo, None, applied, protection="universal").protected
    assert np.array_equal(dialog.view.protected, one_pass)
    assert not np.array_equal(dialog.view.protected, universal)
    # Without the model "Preview AI edit" is off: the line must not ask to press it.
    assert not dialog.preview_button.isEnabled()
    assert FINE_TUNING_NEEDS_MODEL in dialog.status_label.text()
    assert FINE_TUNING_NOT_SHOWN not in dialog.status_label.text()
    assert "before fine-tuning" in dialog.tiles["protected"].caption.text()
    dialog.model_dir = sd_dir  # installed meanwhile (Models…): the button is the way on
    dialog.recheck_model()
    assert dialog.preview_button.isEnabled()
    assert FINE_TUNING_NOT_SHOWN in dialog.status_label.text()
    assert FINE_TUNING_NEEDS_MODEL not in dialog.status_label.text()


def test_fine_tuned_per_photo_edits_the_fine_tuned_photo_its_copy_gets(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    """The AI edit's preview fine-tunes first (the job's encoder and steps), then shows and
    edits that photo: the protected tile, the 100% view and the edit are of what the copy
    gets, not of the one-pass protection shown before."""
    from PySide6.QtGui import QImage

    from spdesk.core.apply import ApplyOptions
    from spdesk.core.usecases import FineTuning, protect_for_preview
    from spdesk.gui.images import to_pixmap
    from spdesk.gui.protect_bridge import job_settings

    photo, _options = inputs
    options = ProtectOptions(
        mode="finetune", strength=8, device="cpu", finetune_encoder=str(sd_dir), finetune_steps=2
    )
    dialog = _dialog(qtbot, photo, options, sd_dir)
    assert dialog.view is not None, dialog.status_label.text()
    statuses: list[str] = []  # what the status line said as each event came
    dialog.runner.core_event.connect(lambda _e: statuses.append(dialog.status_label.text()))
    with qtbot.waitSignal(dialog.runner.finished, timeout=120_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    assert "Fine-tuning the protection: step 2 of 2" in statuses, statuses
    tuning = FineTuning.of(job_settings(options))
    assert tuning.steps == 2 and tuning.encoder == str(sd_dir)
    expected = protect_for_preview(
        photo, None, ApplyOptions(working_size=64, strength=8), protection="photo",
        fine_tuning=tuning,
    ).protected  # fmt: skip
    np.testing.assert_array_equal(dialog.outcome.protected, expected)
    assert not np.array_equal(dialog.outcome.protected, dialog.view.protected)
    assert dialog.tiles["protected"].caption.text() == "Protected, fine-tuned"
    assert FINE_TUNING_NOT_SHOWN not in dialog.status_label.text()
    zoom = dialog.open_zoom()
    assert zoom is not None
    shown: QImage = zoom.picture.pixmap().toImage()
    assert shown == to_pixmap(dialog.outcome.protected).toImage()
    zoom.close()


def test_another_prompt_edits_the_same_fine_tuned_photo_without_fine_tuning_again(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    """Fine-tuning takes minutes on a CPU; trying a second prompt is the usual next step."""
    photo, _options = inputs
    options = ProtectOptions(
        mode="finetune", strength=8, device="cpu", finetune_encoder=str(sd_dir), finetune_steps=2
    )
    dialog = _dialog(qtbot, photo, options, sd_dir)
    statuses: list[str] = []
    dialog.runner.core_event.connect(lambda _e: statuses.append(dialog.status_label.text()))
    with qtbot.waitSignal(dialog.runner.finished, timeout=120_000):
        assert dialog.start()
    assert dialog.outcome is not None, dialog.status_label.text()
    first = dialog.outcome
    dialog.prompt_edit.setText("a castle at night")
    statuses.clear()
    with qtbot.waitSignal(dialog.runner.finished, timeout=120_000):
        assert dialog.start()
    assert dialog.outcome is not None and dialog.outcome is not first
    assert not any(s.startswith("Fine-tuning") for s in statuses), statuses
    assert any(s.startswith("Reusing the photo fine-tuned") for s in statuses), statuses
    np.testing.assert_array_equal(dialog.outcome.protected, first.protected)
    assert dialog.tiles["protected"].caption.text() == "Protected, fine-tuned"
    dialog.options = replace(options, finetune_steps=1)  # another protection: fine-tuned again
    statuses.clear()
    with qtbot.waitSignal(dialog.runner.finished, timeout=120_000):
        assert dialog.start()
    assert "Fine-tuning the protection: step 1 of 1" in statuses, statuses


def test_a_fine_tuning_encoder_that_is_not_there_fails_the_edit_by_its_name(
    qtbot: QtBot,
    sd_dir: Path,
    inputs: tuple[Path, ProtectOptions],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not as a missing Stable Diffusion model, which is there."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    photo, _options = inputs
    missing = tmp_path / "gone-vae"
    options = ProtectOptions(
        mode="finetune", strength=8, device="cpu", finetune_encoder=str(missing)
    )
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is None
    assert len(shown) == 1 and "gone-vae" in shown[0], shown
    assert not dialog.models_button.isVisible()
    assert dialog.tiles["protected"].caption.text() == "Protected, before fine-tuning"


def test_photo_mode_edits_with_a_stale_pattern_path_left_from_universal_mode(
    qtbot: QtBot,
    sd_dir: Path,
    inputs: tuple[Path, ProtectOptions],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    photo, _options = inputs
    options = ProtectOptions(mode="photo", perturbation="/deleted/file", device="cpu")
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.outcome is not None and not shown, shown


def test_inpainting_without_its_model_names_it_and_opens_models_on_it(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only SD 1.5 installed, the note once asked for it and Models… opened on it."""
    from types import SimpleNamespace

    from spdesk.gui import preview_panel
    from spdesk.gui.main_window import MainWindow

    monkeypatch.setattr(preview_panel, "_model_installed", lambda mode: mode == "img2img")
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    assert not dialog.model_missing
    with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
        dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("inpaint"))
    assert dialog.note_label.text() == MODEL_NEEDED["inpaint"]
    assert "Stable Diffusion 1.5 inpainting model" in dialog.note_label.text()
    assert "inpainting" in dialog.preview_button.toolTip()
    opened: list[str | None] = []
    MainWindow._models_for_preview(SimpleNamespace(open_model_manager=opened.append), dialog)  # type: ignore[arg-type]
    assert opened == ["inpaint"]


def test_another_edit_mode_forgets_the_last_edit(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    """Back from inpainting, the first edit's tiles said "Needs ... inpainting" under its old
    verdict and figures."""
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
    assert dialog.verdict.text() and dialog.figures_table.isVisibleTo(dialog)
    for mode in ("inpaint", "img2img"):
        with qtbot.waitSignal(dialog.protect_runner.finished, timeout=30_000):
            dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData(mode))
        assert dialog.outcome is None and dialog.verdict.text() == ""
        assert not dialog.figures_table.isVisibleTo(dialog)
        assert not any(dialog.tiles[name].has_image() for name in EDIT_TILES)
    assert dialog.preview_button.isEnabled()


def test_settings_changed_during_an_edit_are_not_shown_as_its_result(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()  # a first edit, whose figures are then shown
    assert dialog.figures_table.isVisibleTo(dialog)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
        dialog.seed_spin.setValue(7)  # the edit under way is of seed 0
    assert dialog.outcome is None
    assert "settings changed" in dialog.status_label.text()
    assert not any(dialog.tiles[name].has_image() for name in EDIT_TILES)
    assert not dialog.figures_table.isVisibleTo(dialog), "the first edit's figures stayed"


def test_a_preview_let_go_ends_its_step_before_the_next_one_uses_the_pipelines() -> None:
    """Closing during an edit lets the task go after a second; reopened at once, the next
    preview ran on the same cached pipelines beside it and failed ("The size of tensor a (248)
    must match the size of tensor b (188)"). The next one now waits, hearing its own cancel."""
    import threading
    import time

    from spdesk.core.errors import Cancelled
    from spdesk.core.events import CancelToken
    from spdesk.gui.preview_panel import EngineCache

    cache = EngineCache()
    order: list[str] = []
    inside = threading.Event()

    def let_go_edit() -> None:
        with cache.use(None, None, "cpu", CancelToken()) as engine:
            inside.set()
            order.append("old starts")
            time.sleep(0.5)  # the step that did not see its cancel
            order.append("old ends")
            assert engine is not None

    old = threading.Thread(target=let_go_edit)
    old.start()
    assert inside.wait(5)
    stopped = CancelToken()
    stopped.cancel()
    # Stopped while waiting: it does not wait on.
    with pytest.raises(Cancelled), cache.use(None, None, "cpu", stopped):
        pass
    with cache.use(None, None, "cpu", CancelToken()) as engine:
        order.append("new starts")
        mine = engine
    old.join(5)
    assert order == ["old starts", "old ends", "new starts"]
    # Freeing the pipelines while a preview runs on them waits for a later release.
    inside.clear()
    old = threading.Thread(target=let_go_edit)
    old.start()
    assert inside.wait(5)
    cache.release()  # the window closed: its preview still runs
    old.join(5)
    with cache.use(None, None, "cpu", CancelToken()) as engine:
        assert engine is mine  # kept, not freed under the running preview
    cache.release()
    with cache.use(None, None, "cpu", CancelToken()) as engine:
        assert engine is not mine  # freed once nothing ran on them


def test_a_second_preview_does_not_say_it_loads_the_model_and_a_stopped_one_leaves_no_dots(
    qtbot: QtBot, sd_dir: Path, inputs: tuple[Path, ProtectOptions]
) -> None:
    """ "Loading Stable Diffusion (first time only)…" showed before every preview; after Stop
    the edit tiles kept "…" and the bar stayed part-filled under "Preview cancelled."."""
    from spdesk.core.events import Loading
    from spdesk.gui.preview_panel import ENGINES

    ENGINES.release()  # an earlier test's pipelines: this one loads its own first
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, sd_dir)
    said: list[str] = []
    dialog.runner.core_event.connect(
        lambda event: said.append(event.message) if isinstance(event, Loading) else None
    )
    for _ in range(2):
        with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
            assert dialog.start()
    assert said == ["Loading Stable Diffusion (first time only)…", "Starting the edit…"]
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.start()
        dialog.cancel()
    if dialog.outcome is None:  # stopped before it ended (it may end first on a fast machine)
        assert dialog.status_label.text() == "Preview cancelled."
        assert dialog.progress.value() == 0
        assert all(dialog.tiles[name].picture.text() != "…" for name in EDIT_TILES)


def test_preview_ai_edit_has_a_letter_of_its_own(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    """ "Preview AI edit" had no Alt letter (accessibility audit): Alt+P now, used once."""
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    letters = mnemonic_letters(dialog)
    assert letters.get("p") == [dialog.preview_button.text()], letters
    assert not {key: texts for key, texts in letters.items() if len(texts) > 1}, letters


def test_the_fields_and_pictures_are_named_for_screen_readers(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions]
) -> None:
    """The grid's fields had no name (their labels were not their buddies): a screen reader
    said "edit", "0.50 spin box" or the combo's value; each picture was a bare "graphic"
    (accessibility audit)."""
    photo, options = inputs
    dialog = _dialog(qtbot, photo, options, None)
    fields = {
        dialog.photo_edit: "Photo",
        dialog.mode_combo: "Edit",
        dialog.preset_combo: "Prompt",
        dialog.prompt_edit: "Prompt text",
        dialog.edit_strength: "Edit strength",
        dialog.steps_spin: "Steps",
    }
    for field, name in fields.items():
        assert field.accessibleName() == name
    assert dialog.progress.accessibleName() == "Progress of the preview"
    assert dialog.tiles["original"].picture.accessibleName() == "Original"
    waiting = dialog.tiles["edit_original"]
    assert waiting.picture.accessibleName() == f"AI edit of the original: {waiting.picture.text()}"
    assert waiting.picture.text()  # what it needs, in its place
    dialog.tiles["protected"].set_caption("Protected, fine-tuned")
    assert dialog.tiles["protected"].picture.accessibleName() == "Protected, fine-tuned"


def test_the_preview_draws_with_the_generator_the_window_chose(
    qtbot: QtBot, inputs: tuple[Path, ProtectOptions], generator_file: Path
) -> None:
    """The window protects with a trained generator: its preview showed the bundled one's."""
    photo, options = inputs
    photo_mode = replace(options, mode="photo", perturbation="")
    bundled = _dialog(qtbot, photo, photo_mode, None)
    trained = _dialog(qtbot, photo, replace(photo_mode, generator=str(generator_file)), None)
    assert trained.settings().generator == str(generator_file)
    assert bundled.view is not None and trained.view is not None
    assert not np.array_equal(bundled.view.protected, trained.view.protected)
    universal = _dialog(
        qtbot, photo, replace(options, mode="universal", generator=str(generator_file)), None
    )
    assert universal.settings().generator == ""  # a universal pattern is laid, not drawn
