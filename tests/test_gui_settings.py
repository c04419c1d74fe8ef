"""The app's persisted settings carry a schema version."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from spdesk.gui.settings import (
    SCHEMA_VERSION,
    ProtectOptions,
    load_options,
    open_settings,
    save_options,
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
