"""The settings column's three modes round-trip and reach the job as its modes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    # The generator draws each photo's own pattern: photo mode, and fine-tuning from it.
    assert panel.generator_row.isVisibleTo(panel) == (mode != "universal")


def test_the_pattern_box_says_what_fine_tuning_starts_from(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests import protect_samples as samples

    panel = OptionsPanel(replace(ProtectOptions(), mode="universal"))
    qtbot.addWidget(panel)
    universal_info = panel.perturbation_info.text()
    assert panel.perturbation_combo.currentText() == "Default (bundled)"
    panel.set_mode("finetune")  # photo fine-tuning does not use the bundled universal pattern
    assert panel.perturbation_combo.currentText() == "Each photo's own"
    assert "each photo's own pattern" in panel.perturbation_info.text()
    assert job_settings(panel.options()).mode == "photo-finetune"
    own = samples.perturbation_file(tmp_path)
    panel.refresh_perturbations(str(own))  # a pattern of one's own is what gets fine-tuned
    assert job_settings(panel.options()).mode == "finetune"
    assert "each photo's own" not in panel.perturbation_info.text()
    panel.perturbation_combo.setCurrentIndex(0)
    panel.set_mode("universal")
    assert panel.perturbation_combo.currentText() == "Default (bundled)"
    assert panel.perturbation_info.text() == universal_info


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


def test_the_app_picks_fine_tuning_until_the_user_picks_a_mode(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(ProtectOptions())
    qtbot.addWidget(panel)
    assert panel.recommend("finetune", "taesd", 8)
    options = panel.options()
    assert (options.mode, options.finetune_encoder, options.finetune_steps) == (
        "finetune",
        "taesd",
        8,
    )
    assert not options.mode_chosen  # the app's choice, not the user's
    panel.mode_radios["photo"].click()  # the user's choice wins from now on, and is remembered
    assert panel.options().mode_chosen and panel.mode() == "photo"
    assert not panel.recommend("finetune", "taesd", 8) and panel.mode() == "photo"
    again = OptionsPanel(panel.options())
    qtbot.addWidget(again)
    assert not again.recommend("finetune", "taesd", 8) and again.mode() == "photo"


def test_the_app_never_swaps_a_chosen_pattern_for_fine_tuning(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests import protect_samples as samples

    own = samples.perturbation_file(tmp_path)
    panel = OptionsPanel(replace(ProtectOptions(), mode="universal", perturbation=str(own)))
    qtbot.addWidget(panel)
    assert not panel.recommend("finetune", "taesd", 8) and panel.mode() == "universal"


def test_the_main_window_fine_tunes_by_default_on_a_cuda_gpu_with_an_encoder(
    qtbot,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    import spdesk.core.models.store
    from spdesk.core.device import DeviceInfo
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: ["taesd"])
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window._detecting = str(window.device_combo.currentData())
    window._on_device_info(DeviceInfo(kind="cuda", name="Test GPU", memory_gb=16.0))
    options = window.current_options()
    assert (options.mode, options.finetune_encoder, options.finetune_steps) == (
        "finetune",
        "taesd",
        8,
    )
    assert "TAESD" in window.statusBar().currentMessage()


def test_a_gpu_estimate_under_a_second_is_not_rounded_to_zero(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune", finetune_encoder="taesd"))
    qtbot.addWidget(panel)
    panel.steps_spin.setValue(8)
    panel.set_device_kind("cuda")
    note = panel.mode_note.text()
    assert "About 0.3 s per 512 px photo" in note and "About 0 s" not in note


def test_a_long_encoder_file_name_keeps_its_ends_and_its_path(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune"))
    qtbot.addWidget(panel)
    panel.resize(336, 700)  # the settings column's width at 1366x768
    panel.show()
    qtbot.waitExposed(panel)
    path = tmp_path / "my-own-autoencoder-fine-tuned-for-portraits_f8e4m3.safetensors"
    path.write_bytes(b"")
    panel.set_encoder(str(path))
    combo = panel.encoder_combo
    shown = combo.shown_text()  # elided in the middle: the start and the extension both show
    assert shown != path.name and "…" in shown
    assert shown.startswith("my-own") and shown.endswith("safetensors")
    assert combo.toolTip() == str(path)
    combo.showPopup()  # the list opens wide enough to read the whole name
    assert combo.view().width() >= combo.fontMetrics().horizontalAdvance(path.name)
    combo.hidePopup()
    combo.setCurrentIndex(combo.findData("taesd"))  # a built-in entry: the general tooltip
    assert "TAESD" in combo.toolTip()


@pytest.mark.parametrize(("kind", "encoders"), [("cpu", ["sd15"]), ("cuda", [])])
def test_switching_to_fine_tuning_starts_at_the_default_steps_on_any_device(
    qtbot,  # type: ignore[no-untyped-def]
    monkeypatch,
    kind: str,
    encoders: list[str],
) -> None:
    """No recommendation here (a CPU; a GPU with no encoder installed): the user's switch to
    fine-tuning gets the default steps, and the estimate is for those steps."""
    import spdesk.core.models.store
    from spdesk.core.device import DeviceInfo
    from spdesk.core.jobs.settings import DEFAULT_FINETUNE_STEPS
    from spdesk.core.speed_figures import finetune_seconds_per_photo
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings
    from spdesk.gui.widgets.options import _duration

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: encoders)
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window._detecting = str(window.device_combo.currentData())
    window._on_device_info(DeviceInfo(kind=kind, name="Test device", memory_gb=None))
    assert window.current_options().mode == "photo"  # nothing recommended
    window.options_panel.mode_radios["finetune"].click()
    options = window.current_options()
    assert (options.mode, options.finetune_encoder) == ("finetune", "sd15")
    assert options.finetune_steps == DEFAULT_FINETUNE_STEPS == 8  # as the GPU recommendation
    seconds = finetune_seconds_per_photo("sd15", 8, kind, jpeg=True)
    assert seconds is not None and seconds < 10 * 60, "minutes a photo on a CPU, not 40"
    assert f"About {_duration(seconds)} per 512 px photo" in window.options_panel.mode_note.text()


def test_the_steps_box_reads_one_step_and_eight_steps(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune"))
    qtbot.addWidget(panel)
    panel.steps_spin.setValue(1)
    assert panel.steps_spin.text() == "1 step"
    panel.steps_spin.setValue(8)
    assert panel.steps_spin.text() == "8 steps"


def test_a_trained_pattern_says_how_visible_it_measured(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from spdesk.core.perturbation import save_perturbation

    delta = np.full((3, 16, 16), 8 / 255, np.float32)
    seen = {"photos": 4, "ssimulacra2": 42.4, "ssimulacra2_worst": 38.0, "flip": 0.11}
    seen |= {"sign_ssimulacra2": 58.8, "sign_flip": 0.081}
    meta = {"name": "mine", "gain_over_sign": 1.8, "visibility": seen}
    meta["product_gain"] = {"gain": 1.26, "editor": 512}
    mine = save_perturbation(tmp_path / "mine.safetensors", delta, eps=8, metadata=meta)
    meta["visibility"] = "not figures"  # an edited header: no sentence, no error
    meta["product_gain"] = {"gain": "strong"}
    odd = save_perturbation(tmp_path / "odd.safetensors", delta, eps=8, metadata=meta)
    panel = OptionsPanel(replace(ProtectOptions(), mode="universal"))
    qtbot.addWidget(panel)
    panel.refresh_perturbations(str(mine))
    assert (
        "Easier to see than random noise of the same strength (SSIMULACRA2 42 against 59"
        in panel.perturbation_info.text()
    )  # and the product's gain, not training's check (1.8x)
    assert "Disturbs a 512 px AI editor 1.3× as much" in panel.perturbation_info.text()
    panel.refresh_perturbations(str(odd))
    assert "Disturbs AI editors 1.8×" in panel.perturbation_info.text()
    assert "SSIMULACRA2" not in panel.perturbation_info.text()


def test_the_strength_note_says_how_visible_the_chosen_mode_is(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from spdesk.core.strength_figures import visibility_words
    from tests import protect_samples as samples

    panel = OptionsPanel(replace(ProtectOptions(), mode="photo", strength=8.0))
    qtbot.addWidget(panel)
    at_most = " Each colour value changes by at most {:g} out of 255."
    assert panel.strength_note.text() == visibility_words("photo", 8.0) + at_most.format(8)
    assert "SSIMULACRA2" in panel.strength_note.toolTip()
    panel.set_mode("universal")  # the same strength, a pattern far easier to see
    assert panel.strength_note.text() == visibility_words("universal", 8.0) + at_most.format(8)
    panel.strength_spin.setValue(16.0)
    assert panel.strength_note.text() == visibility_words("universal", 16.0) + (
        " Stronger protection." + at_most.format(16)
    )
    panel.set_mode("finetune")  # each photo's own pattern, fine-tuned
    assert panel.strength_note.text().startswith(visibility_words("photo", 16.0))
    panel.refresh_perturbations(str(samples.perturbation_file(tmp_path)))  # a pattern fine-tuned
    assert panel.strength_note.text().startswith(visibility_words("universal", 16.0))


def test_the_bundled_pattern_quotes_the_products_measured_gain_not_its_training_check(
    qtbot,
) -> None:  # type: ignore[no-untyped-def]
    from spdesk.core.strength_figures import BUNDLED_UNIVERSAL_GAIN
    from spdesk.gui.text import gain_text

    panel = OptionsPanel(replace(ProtectOptions(), mode="universal"))
    qtbot.addWidget(panel)
    info = panel.perturbation_info.text()
    assert panel.perturbation().metadata["gain_over_sign"] > 2  # its own 128 px crops
    assert gain_text(BUNDLED_UNIVERSAL_GAIN[512], 1) in info and "2.1" not in info
    assert "this pattern:" in panel.strength_note.toolTip()  # the universal pattern's own PSNR
    panel.set_mode("photo")  # which photo mode does not lay
    assert "this pattern:" not in panel.strength_note.toolTip()


def test_the_apps_own_fine_tuning_pick_is_not_restored_on_the_next_start() -> None:
    """Picked on a CUDA GPU, it outlived the GPU: the window picks again on each start."""
    from spdesk.gui.settings import load_options, open_settings, save_options

    settings = open_settings()
    save_options(settings, replace(ProtectOptions(), mode="finetune", mode_chosen=False))
    assert load_options(open_settings()).mode == "photo"
    save_options(settings, replace(ProtectOptions(), mode="finetune", mode_chosen=True))
    assert load_options(open_settings()).mode == "finetune"  # the user's own choice stays


def test_a_missing_pattern_stays_chosen_and_refuses_to_protect(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unplugged disk was silently replaced by the bundled pattern, and forgotten on close."""
    gone = tmp_path / "portraits.safetensors"
    panel = OptionsPanel(replace(ProtectOptions(), mode="universal", perturbation=str(gone)))
    qtbot.addWidget(panel)
    assert panel.perturbation_combo.currentText() == "portraits (not found)"
    assert panel.perturbation() is None
    assert str(gone) in panel.perturbation_error() and "not found" in panel.perturbation_error()
    assert panel.perturbation_error() in panel.perturbation_info.text()
    assert panel.options().perturbation == str(gone)  # saved as chosen: back once plugged in
    panel.refresh_perturbations()  # the list re-made (a pattern trained meanwhile)
    assert panel.options().perturbation == str(gone)


def test_the_window_refuses_to_protect_with_a_missing_pattern_and_keeps_it(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch
) -> None:
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import load_options, open_settings, save_options
    from tests import protect_samples as samples

    gone = tmp_path / "portraits.safetensors"
    chosen = replace(ProtectOptions(), mode="universal", perturbation=str(gone), mode_chosen=True)
    save_options(open_settings(), chosen)
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)
    monkeypatch.setattr(window, "ask", lambda *_: True)  # a job started by mistake: no dialog
    window.add_paths([samples.photo(tmp_path / "photo.png")])
    # The scan's end too: start_job refuses in silence while it runs (its rows come first).
    qtbot.waitUntil(
        lambda: bool(window.queue.paths()) and not window.scan_runner.running, timeout=10_000
    )
    assert not window.start_job()
    assert errors and str(gone) in errors[0]
    window.close()
    assert load_options(open_settings()).perturbation == str(gone)


def test_an_imported_pattern_is_listed_by_its_stored_name(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from spdesk.core.perturbation import save_perturbation

    delta = np.full((3, 16, 16), 4 / 255, np.float32)
    path = tmp_path / "Portraits _8.safetensors"  # the file name lost the "±"
    save_perturbation(path, delta, eps=8, metadata={"name": "Portraits ±8"})
    panel = OptionsPanel(replace(ProtectOptions(), mode="universal"))
    qtbot.addWidget(panel)
    panel.refresh_perturbations(str(path))
    assert panel.perturbation_combo.currentText() == "Portraits ±8 (file)"


@pytest.mark.parametrize("installed", [[], ["taesd"]])
def test_the_fine_tuning_note_asks_for_the_encoder_only_when_it_is_missing(  # type: ignore[no-untyped-def]
    qtbot, monkeypatch, installed: list[str]
) -> None:
    import spdesk.core.models.store

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: installed)
    panel = OptionsPanel(replace(ProtectOptions(), mode="finetune", finetune_encoder="taesd"))
    qtbot.addWidget(panel)
    assert ("Needs the fast encoder" in panel.mode_note.text()) == (not installed)


@pytest.mark.parametrize(
    ("installed", "picked", "expected"),
    [
        (["taesd"], None, "taesd"),  # the default (SD 1.5's VAE) is not here: TAESD is
        (["sd15", "taesd"], None, "sd15"),
        ([], None, "sd15"),  # neither: the best one, which the note asks to download
        (["taesd"], "sd15", "sd15"),  # the user's own pick stays
    ],
)
def test_choosing_fine_tuning_takes_an_encoder_that_is_installed(  # type: ignore[no-untyped-def]
    qtbot, monkeypatch, installed: list[str], picked: str | None, expected: str
) -> None:
    """With only TAESD installed, fine-tuning asked for SD 1.5's VAE, a 3 GB download."""
    import spdesk.core.models.store

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: installed)
    panel = OptionsPanel(ProtectOptions())
    qtbot.addWidget(panel)
    if picked is not None:
        panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData(picked))
        panel.encoder_combo.activated.emit(panel.encoder_combo.currentIndex())
    panel.finetune_radio.click()
    assert panel.mode() == "finetune" and panel.encoder() == expected
    assert ("Needs" in panel.mode_note.text()) == (expected not in installed)


def test_an_encoder_the_user_picked_is_kept_on_the_next_start(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A saved pick of SD 1.5's VAE was forgotten: on the next start a click on fine-tuning
    swapped it for the installed TAESD."""
    import spdesk.core.models.store
    from spdesk.gui.settings import load_options, open_settings, save_options

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: ["taesd"])
    first = OptionsPanel(ProtectOptions())
    qtbot.addWidget(first)
    first.encoder_combo.setCurrentIndex(first.encoder_combo.findData("sd15"))
    first.encoder_combo.activated.emit(first.encoder_combo.currentIndex())
    save_options(open_settings(), first.options())
    restored = load_options(open_settings())
    assert restored.encoder_chosen and restored.finetune_encoder == "sd15"
    again = OptionsPanel(restored)
    qtbot.addWidget(again)
    again.finetune_radio.click()
    assert again.encoder() == "sd15"


def test_the_apps_own_encoder_pick_is_made_again_on_the_next_start(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """TAESD taken because SD 1.5's VAE was missing is not the user's choice: once the VAE is
    installed, the next start takes it; a restored fine-tuned mode takes what is installed."""
    import spdesk.core.models.store
    from spdesk.gui.settings import load_options, open_settings, save_options

    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: ["taesd"])
    first = OptionsPanel(ProtectOptions())
    qtbot.addWidget(first)
    first.finetune_radio.click()
    assert first.encoder() == "taesd" and not first.options().encoder_chosen
    save_options(open_settings(), first.options())
    assert load_options(open_settings()).finetune_encoder == "sd15"
    again = OptionsPanel(load_options(open_settings()))  # fine-tuning, the user's own mode
    qtbot.addWidget(again)
    assert again.mode() == "finetune" and again.encoder() == "taesd"


@pytest.mark.parametrize("picked", ["taesd", "/models/my-vae.safetensors"])
def test_the_apps_recommendation_keeps_an_encoder_the_user_picked(qtbot, picked: str) -> None:  # type: ignore[no-untyped-def]
    """On a CUDA GPU the app recommends fine-tuning with its encoder on each start; it replaced
    the user's own pick."""
    panel = OptionsPanel(ProtectOptions())
    qtbot.addWidget(panel)
    if picked == "taesd":
        panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData(picked))
        panel.encoder_combo.activated.emit(panel.encoder_combo.currentIndex())
    else:
        panel.set_encoder(picked)  # as the file dialog does
    again = OptionsPanel(panel.options())
    qtbot.addWidget(again)
    assert again.recommend("finetune", "sd15", 8)
    assert again.mode() == "finetune" and again.encoder() == picked
    assert again.options().encoder_chosen


def test_tab_goes_into_strength_and_mode_at_the_chosen_button(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Medium chosen (the default) and universal restored from the settings: Tab put the focus
    on "Low" and on "Photo-specific", the first of each group, where Space chose them. Qt moves
    a group's Tab stop only when one of its buttons gets the focus (a click, an arrow key)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget

    holder = QWidget()
    before = QLineEdit()
    panel = OptionsPanel(replace(ProtectOptions(), mode="universal"))
    layout = QVBoxLayout(holder)
    layout.addWidget(before)
    layout.addWidget(panel)
    qtbot.addWidget(holder)
    holder.show()
    holder.activateWindow()
    qtbot.waitUntil(holder.isActiveWindow)

    def tab_from(widget: QWidget) -> QWidget | None:
        widget.setFocus()
        qtbot.keyClick(widget, Qt.Key.Key_Tab)
        return QApplication.focusWidget()

    medium = panel.strength_group.checkedButton()
    assert medium is not None and medium.text() == "Medium"
    assert tab_from(before) is medium
    assert tab_from(medium) is panel.mode_radios["universal"]
    panel.set_mode("finetune")  # chosen by the program (a GPU's recommendation)
    panel.strength_spin.setValue(16)  # the exact strength, More options
    assert tab_from(before) is panel.strength_group.button(2)
    assert tab_from(panel.strength_group.button(2)) is panel.mode_radios["finetune"]
    # The arrow keys still move along a group and choose, as they did.
    qtbot.keyClick(panel.mode_radios["finetune"], Qt.Key.Key_Up)
    assert panel.mode() == "universal"
    assert QApplication.focusWidget() is panel.mode_radios["universal"]


def _choose_generator(window, monkeypatch, path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Pick ``path`` in the generator list's "Generator file…" entry; returns the errors shown."""
    from spdesk.gui import main_window
    from spdesk.gui.widgets.options import CHOOSE_GENERATOR

    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)
    monkeypatch.setattr(
        main_window.QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(path), "")
    )
    combo = window.options_panel.generator_combo
    combo.setCurrentIndex(combo.findData(CHOOSE_GENERATOR))
    combo.activated.emit(combo.currentIndex())
    return errors


def _protect_one(qtbot, window, photo: Path, out: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    window.options_panel.output_edit.setText(str(out))
    with qtbot.waitSignal(window.job_runner.finished, timeout=60_000):
        assert window.start_job()
    (row,) = window.queue.rows()
    assert row.output is not None, row.reason
    return np.asarray(Image.open(row.output).convert("RGB"), dtype=np.int16)


def test_a_generator_trained_at_another_budget_says_it_and_has_a_letter(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch
) -> None:
    """The window draws at its own strength, where ``spdesk protect --generator`` without
    --strength uses the file's: the note said nothing of a file trained at ±16. The row had no
    Alt letter either (every other setting has one)."""
    import torch
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from spdesk.core.generator import DeltaGenerator, GeneratorConfig, shaping_to_dict
    from spdesk.core.generator_file import save_generator
    from spdesk.core.shaping import Shaping
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings

    torch.manual_seed(0)
    config = GeneratorConfig(width=8, blocks=1)
    strong = save_generator(
        tmp_path / "strong.safetensors", DeltaGenerator(config).state_dict(), eps=16,
        network=config.to_dict(), shaping=shaping_to_dict(Shaping(floor=0.5)),
    )  # fmt: skip
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    window.show()
    assert not _choose_generator(window, monkeypatch, strong)
    note = window.options_panel.generator_note.text()
    assert "±16 out of 255" in note and "runs at the strength set above" in note, note
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.queue.setFocus()
    qtbot.keyClick(window.queue, Qt.Key.Key_G, Qt.KeyboardModifier.AltModifier)
    assert QApplication.focusWidget() is window.options_panel.generator_combo


def test_a_trained_generator_is_chosen_reaches_the_job_and_is_kept(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch, generator_file
) -> None:
    """The window always drew with the bundled generator: one made by spdesk train-generator
    was for the command line only (spdesk protect --generator)."""
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import load_options, open_settings
    from tests import protect_samples as samples

    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    monkeypatch.setattr(window, "ask", lambda *_: True)
    panel = window.options_panel
    assert panel.mode() == "photo" and panel.generator_combo.currentText() == "spdesk's own"
    photo = samples.photo(tmp_path / "photos" / "photo.png", 64, 48)
    with qtbot.waitSignal(window.scan_runner.finished, timeout=10_000):
        window.add_paths([photo])
    bundled = _protect_one(qtbot, window, photo, tmp_path / "bundled")
    assert not _choose_generator(window, monkeypatch, generator_file)
    assert panel.generator_combo.currentText() == "gen"  # which one is in use
    assert panel.generator_combo.toolTip() == str(generator_file)
    assert "Your generator “gen”" in panel.generator_note.text()
    assert job_settings(window.current_options()).generator == generator_file
    trained = _protect_one(qtbot, window, photo, tmp_path / "trained")
    assert np.abs(trained - bundled).max() > 0  # the job drew with the file chosen
    panel.set_mode("universal")  # a universal job lays a pattern: the generator is not its
    assert job_settings(window.current_options()).generator is None
    panel.set_mode("photo")
    window.close()
    assert load_options(open_settings()).generator == str(generator_file)
    again = MainWindow(open_settings())  # the next start
    qtbot.addWidget(again)
    assert again.options_panel.generator_combo.currentText() == "gen"
    assert again.options_panel.generator_path() == str(generator_file)


def test_a_pattern_or_a_damaged_file_is_refused_as_a_generator(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch, generator_file
) -> None:
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings
    from tests import protect_samples as samples

    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    panel = window.options_panel
    assert not _choose_generator(window, monkeypatch, generator_file)
    pattern = samples.perturbation_file(tmp_path)
    errors = _choose_generator(window, monkeypatch, pattern)
    assert len(errors) == 1 and "test.safetensors is a universal pattern" in errors[0]
    assert "Universal mode" in errors[0] and "gen stays chosen" in errors[0]
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(generator_file.read_bytes()[:-40])  # cut short, as by a full disk
    errors = _choose_generator(window, monkeypatch, damaged)
    assert len(errors) == 1 and errors[0].startswith("damaged.safetensors")
    text = tmp_path / "notes.safetensors"
    text.write_text("not a generator")
    errors = _choose_generator(window, monkeypatch, text)
    assert len(errors) == 1 and "notes.safetensors" in errors[0]
    assert panel.generator_path() == str(generator_file)  # nothing changed
    assert panel.generator_combo.currentText() == "gen" and not panel.generator_error()


def test_a_missing_generator_stays_chosen_and_refuses_to_protect(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch, generator_file
) -> None:
    """A generator on a disk unplugged since: said at once, with what to do, not a failed row
    for each photo; "spdesk's own" is one pick away."""
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import load_options, open_settings, save_options
    from tests import protect_samples as samples

    gone = tmp_path / "portraits-gen.safetensors"
    save_options(open_settings(), replace(ProtectOptions(), generator=str(gone)))
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)
    monkeypatch.setattr(window, "ask", lambda *_: True)
    panel = window.options_panel
    assert panel.generator_combo.currentText() == "portraits-gen (not found)"
    assert (
        str(gone) in panel.generator_note.text() and "spdesk's own" in panel.generator_note.text()
    )
    assert panel.generator_note.isVisibleTo(panel)
    photo = samples.photo(tmp_path / "photo.png")
    with qtbot.waitSignal(window.scan_runner.finished, timeout=10_000):
        window.add_paths([photo])
    window.options_panel.output_edit.setText(str(tmp_path / "out"))
    assert not window.start_job()
    assert errors and str(gone) in errors[0] and "not found" in errors[0]
    panel.set_mode("universal")  # a universal job does not need it
    assert panel.generator_row.isHidden()
    panel.set_mode("photo")
    combo = panel.generator_combo
    combo.setCurrentIndex(combo.findData(""))
    combo.activated.emit(combo.currentIndex())  # the user picks spdesk's own
    assert not panel.generator_error() and not panel.generator_note.isVisibleTo(panel)
    with qtbot.waitSignal(window.job_runner.finished, timeout=60_000):
        assert window.start_job()
    window.close()
    assert load_options(open_settings()).generator == ""


@pytest.mark.parametrize("missing", ["pattern", "generator"])
def test_the_preview_names_a_missing_file_not_the_photo(  # type: ignore[no-untyped-def]
    qtbot, tmp_path, monkeypatch, missing: str
) -> None:
    """With its pattern or generator gone, Preview AI edit said "photo.png cannot be read"."""
    from spdesk.gui import main_window
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings, save_options

    gone = tmp_path / "gone.safetensors"
    chosen = replace(ProtectOptions(), generator=str(gone))
    if missing == "pattern":
        chosen = replace(chosen, mode="universal", perturbation=str(gone), mode_chosen=True)
    save_options(open_settings(), chosen)
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)
    opened: list[object] = []
    monkeypatch.setattr(main_window, "run_modal", opened.append)
    window.open_preview()
    assert not opened and len(errors) == 1
    assert str(gone) in errors[0] and "not found" in errors[0]


def test_the_strength_note_says_its_figures_are_not_a_trained_generators(  # type: ignore[no-untyped-def]
    qtbot, generator_file
) -> None:
    """ "Hard to see" was measured with spdesk's own generator: said of a user's, it promised
    what nobody measured."""
    panel = OptionsPanel(replace(ProtectOptions(), generator=str(generator_file)))
    qtbot.addWidget(panel)
    assert "Measured with spdesk's own generator, not yours." in panel.strength_note.text()
    panel.set_mode("universal")  # the pattern's figures: the generator is not used
    assert "not yours" not in panel.strength_note.text()
    panel.set_mode("photo")
    panel.set_generator("")
    assert "not yours" not in panel.strength_note.text()
