"""The app's persisted settings carry a schema version."""

from __future__ import annotations

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
    settings.setValue("schema", SCHEMA_VERSION + 1)  # as a newer spdesk would leave it
    assert load_options(settings) == ProtectOptions()
