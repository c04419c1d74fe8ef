"""The app's persisted settings: a schema version, values checked on loading, no lost changes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pytestqt.qtbot import QtBot

from spdesk.gui.settings import (
    SCHEMA_VERSION,
    ProtectOptions,
    load_geometry,
    load_options,
    open_settings,
    read_only_notice,
    save_geometry,
    save_options,
    schema_of,
)


def test_settings_carry_a_schema_version_and_a_newer_ones_options_are_not_misread() -> None:
    settings = open_settings()
    assert int(str(settings.value("schema"))) == SCHEMA_VERSION
    save_options(settings, ProtectOptions(strength=16.0, suffix="_safe"))
    assert load_options(settings).strength == 16.0
    save_options(settings, ProtectOptions(keep_location=True))
    assert load_options(open_settings()).keep_location is True  # "true" in the INI file
    save_options(settings, ProtectOptions(keep_location=False))
    assert load_options(open_settings()).keep_location is False
    settings.setValue("schema", SCHEMA_VERSION + 1)  # as a newer spdesk would leave it
    assert load_options(settings) == ProtectOptions()


def test_the_collision_default_is_the_command_lines(qtbot: QtBot) -> None:
    """The app and ``spdesk protect`` agree on what happens when an output name is taken."""
    from spdesk.cli import build_parser
    from spdesk.core.export import DEFAULT_COLLISION
    from spdesk.core.jobs import ProtectSettings
    from spdesk.gui.widgets.options import OptionsPanel

    cli = build_parser().parse_args(["protect", "photo.jpg", "--out", "out"])
    assert cli.collision == ProtectSettings().collision == DEFAULT_COLLISION
    assert ProtectOptions().collision == DEFAULT_COLLISION
    panel = OptionsPanel(load_options(open_settings()))  # a first start: nothing saved yet
    qtbot.addWidget(panel)
    assert panel.collision_combo.currentData() == DEFAULT_COLLISION
    assert panel.collision_combo.currentText() == "Add a number"
    settings = open_settings()
    settings.setValue("options/collision", "suffix")  # what earlier versions of the app saved
    assert load_options(settings).collision == DEFAULT_COLLISION


def _file_text() -> str:
    from spdesk.gui.settings import settings_path

    return settings_path().read_text(encoding="utf-8")


def _write_settings_file(text: str) -> None:
    from spdesk.gui.settings import settings_path

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(text, encoding="utf-8")


def test_an_unreadable_schema_is_stamped_as_ours_and_the_settings_are_used() -> None:
    _write_settings_file("[General]\nschema=abc\n\n[options]\nstrength=16\n")
    settings = open_settings()
    assert schema_of(settings) == SCHEMA_VERSION
    assert load_options(settings).strength == 16.0
    settings.sync()
    assert f"schema={SCHEMA_VERSION}" in _file_text()
    assert read_only_notice(settings) == ""


def test_the_settings_of_a_newer_spdesk_are_never_overwritten_and_the_user_is_told() -> None:
    from PySide6.QtCore import QByteArray

    _write_settings_file(
        f"[General]\nschema={SCHEMA_VERSION + 1}\n\n[options]\nstrength=32\nmode=future\n"
    )
    settings = open_settings()
    assert load_options(settings) == ProtectOptions()  # its keys may mean other things
    save_options(settings, ProtectOptions(strength=4.0, format="png"))
    save_geometry(settings, "main", QByteArray(b"geometry"))
    settings.sync()
    text = _file_text()
    assert f"schema={SCHEMA_VERSION + 1}" in text
    assert "strength=32" in text and "mode=future" in text
    assert "format" not in text and "geometry" not in text
    assert "newer spdesk" in read_only_notice(settings)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("strength", "nan"),
        ("strength", "inf"),
        ("strength", "-inf"),
        ("strength", "0"),
        ("strength", "-4"),
        ("strength", "65"),
        ("finetune_steps", "0"),
        ("finetune_steps", "1001"),
        ("quality", "49"),
        ("quality", "101"),
        ("mode", "fast"),
        ("finetune_encoder", ""),
        ("collision", "ask"),
        ("format", "gif"),
        ("device", "tpu"),
    ],
)
def test_a_value_out_of_its_range_in_the_file_loads_as_its_default(key: str, value: str) -> None:
    settings = open_settings()
    settings.setValue(f"options/{key}", value)
    assert getattr(load_options(settings), key) == getattr(ProtectOptions(), key)


def test_values_in_range_in_the_file_are_kept() -> None:
    settings = open_settings()
    kept = ProtectOptions(
        strength=64.0,
        mode="universal",
        finetune_steps=1000,
        finetune_encoder="/models/vae",
        collision="skip",
        format="webp",
        quality=50,
        device="cpu",
        mode_chosen=True,
        encoder_chosen=True,
    )
    save_options(settings, kept)
    assert load_options(open_settings()) == kept


def test_two_windows_keep_each_others_changes() -> None:
    """Each window saves only what was changed in it: the last to close kept every option."""
    first, second = open_settings(), open_settings()
    first_options, second_options = load_options(first), load_options(second)
    save_options(first, replace(first_options, strength=16.0, mode="universal", mode_chosen=True))
    first.sync()
    save_options(second, replace(second_options, format="png"))
    second.sync()
    both = load_options(open_settings())
    assert (both.strength, both.mode, both.mode_chosen, both.format) == (
        16.0,
        "universal",
        True,
        "png",
    )
    save_options(first, replace(first_options, strength=16.0, mode="universal", mode_chosen=True))
    first.sync()  # saved again unchanged (on close): the other window's format stays
    assert load_options(open_settings()).format == "png"


def test_a_window_saved_on_a_larger_screen_is_not_restored_on_a_smaller_one() -> None:
    from PySide6.QtCore import QByteArray, QSize

    settings = open_settings()
    save_geometry(settings, "main", QByteArray(b"big window"), screen=QSize(2560, 1400))
    assert load_geometry(settings, "main", screen=QSize(1366, 728)) is None
    assert load_geometry(settings, "main", screen=QSize(2560, 1300)) is None
    assert load_geometry(settings, "main", screen=QSize(2560, 1400)) == QByteArray(b"big window")
    assert load_geometry(settings, "main", screen=QSize(3840, 2100)) == QByteArray(b"big window")
    settings.setValue("geometry/main", QByteArray(b"saved by an older spdesk"))  # no screen
    settings.remove("geometry/main_screen")
    assert load_geometry(settings, "main", screen=QSize(2560, 1400)) is None


def test_the_window_fits_the_screen_when_it_was_saved_on_a_larger_one(qtbot: QtBot) -> None:
    """Restored on a smaller screen, the window was squeezed to its minimum size instead."""
    from PySide6.QtGui import QGuiApplication

    from spdesk.gui.main_window import MainWindow

    room = QGuiApplication.primaryScreen().availableGeometry().size()
    first = MainWindow(open_settings())  # nothing saved yet: fitted to this screen
    qtbot.addWidget(first)
    fitted = first.size()
    first.resize(room * 2)
    save_geometry(first.settings, "main", first.saveGeometry(), screen=room * 2)
    first.settings.sync()
    window = MainWindow(open_settings())
    qtbot.addWidget(window)
    assert window.size() == fitted


def test_a_choice_equal_to_what_loading_made_of_the_apps_pick_is_still_saved() -> None:
    """Loading turns the app's own picks back into defaults; a save compared with those, so
    the user's pick of the default itself was never written and the app's pick came back."""
    first = open_settings()
    load_options(first)
    save_options(first, replace(ProtectOptions(), mode="finetune", finetune_encoder="taesd"))
    second = open_settings()
    loaded = load_options(second)  # the app's picks, made again: photo mode, SD 1.5's VAE
    assert (loaded.mode, loaded.finetune_encoder) == ("photo", "sd15")
    save_options(second, replace(loaded, mode_chosen=True, encoder_chosen=True))
    third = load_options(open_settings())
    assert (third.mode, third.mode_chosen) == ("photo", True)
    assert (third.finetune_encoder, third.encoder_chosen) == ("sd15", True)


def test_an_encoder_saved_before_the_chosen_flag_is_kept_as_saved() -> None:
    settings = open_settings()
    save_options(settings, replace(ProtectOptions(), finetune_encoder="taesd"))
    settings.remove("options/encoder_chosen")  # as an spdesk of 2026-12-04 wrote the file
    settings.sync()
    loaded = load_options(open_settings())
    assert loaded.finetune_encoder == "taesd" and loaded.encoder_chosen


def test_on_a_fresh_install_the_apps_encoder_pick_is_not_taken_for_the_users() -> None:
    settings = open_settings()
    load_options(settings)  # nothing saved yet
    save_options(settings, replace(ProtectOptions(), finetune_encoder="taesd"))
    loaded = load_options(open_settings())
    assert loaded.finetune_encoder == "sd15" and not loaded.encoder_chosen


def test_an_encoder_file_is_always_the_users_choice() -> None:
    save_options(open_settings(), replace(ProtectOptions(), finetune_encoder="/models/vae"))
    loaded = load_options(open_settings())
    assert loaded.finetune_encoder == "/models/vae" and loaded.encoder_chosen
