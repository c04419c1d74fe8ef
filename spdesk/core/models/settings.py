"""Model-store settings: sources, hub endpoint and the models folder.

They live under the ``"models"`` key of :func:`spdesk.core.paths.settings_file` (other keys of that
file belong to other parts of spdesk and are preserved on save), with a schema ``version``: a file
written by a newer spdesk is refused rather than misread. ``HF_ENDPOINT`` is used when the file
names no endpoint. There is no token here: huggingface_hub finds its own (``HF_TOKEN``, or the one
``hf auth login`` saved), and spdesk never writes one to disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spdesk.core import paths
from spdesk.core.errors import ConfigError
from spdesk.core.files import atomic_write
from spdesk.core.models.sources import (
    DEFAULT_ENDPOINT,
    FEATURES,
    Feature,
    Source,
    default_source,
)

SETTINGS_KEY = "models"
MODELS_DIR_VARIABLE = "SPDESK_MODELS_DIR"  # read by spdesk.core.paths.models_dir
SCHEMA_VERSION = 2  # 2: no token (the library's own store holds it)


@dataclass(frozen=True)
class SourceOverride:
    """A replacement repository and/or revision for one feature (``None`` keeps the default)."""

    repo_id: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class StoreSettings:
    """Everything the store needs to know; immutable, change with :func:`dataclasses.replace`.

    ``endpoint`` is the hub's base URL (``None``: ``HF_ENDPOINT`` or huggingface.co);
    ``models_dir`` moves the store (``None``: :func:`spdesk.core.paths.models_dir`).
    """

    endpoint: str | None = None
    models_dir: str | None = None
    overrides: dict[str, SourceOverride] = field(default_factory=dict)

    def resolved_endpoint(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")

    def root(self) -> Path:
        """``SPDESK_MODELS_DIR`` (this run's explicit choice), else the saved folder, else the
        default: :func:`spdesk.core.paths.models_dir`."""
        if self.models_dir and not models_dir_variable():
            return Path(self.models_dir).expanduser()
        return paths.models_dir()

    def root_reason(self) -> str:
        """Why :meth:`root` is that folder, in words for ``spdesk models status``."""
        if models_dir_variable():
            unused = f"; the saved folder {self.models_dir} is not used" if self.models_dir else ""
            return f"set by {MODELS_DIR_VARIABLE}{unused}"
        if self.models_dir:
            return "saved in the settings"
        return "the default"

    def source(self, feature: Feature) -> Source:
        """The feature's source with the user's repository/revision override applied."""
        base = default_source(feature)
        override = self.overrides.get(feature)
        if override is None:
            return base
        return replace(
            base,
            repo_id=override.repo_id or base.repo_id,
            revision=override.revision or base.revision,
        )

    def with_override(
        self, feature: Feature, *, repo_id: str | None = None, revision: str | None = None
    ) -> StoreSettings:
        overrides = dict(self.overrides)
        overrides[feature] = SourceOverride(repo_id, revision)
        return replace(self, overrides=overrides)


def models_dir_variable() -> str:
    """The folder ``SPDESK_MODELS_DIR`` names for this run ("" when it is not set)."""
    return os.environ.get(MODELS_DIR_VARIABLE, "")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"The settings file {path} cannot be read: {error}",
            hint="Fix or delete the file; spdesk recreates it with defaults.",
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(f"The settings file {path} does not hold a JSON object.")
    return data


def load_settings(path: Path | None = None) -> StoreSettings:
    """Read the store settings (defaults when the file or its ``"models"`` key is absent)."""
    section = _read_file(path or paths.settings_file()).get(SETTINGS_KEY) or {}
    if not isinstance(section, dict):
        raise ConfigError(f'The "{SETTINGS_KEY}" entry of the settings file is not an object.')
    version = section.get("version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ConfigError(
            f"The model settings were written by a newer spdesk (schema {version!r}; this one "
            f"reads up to {SCHEMA_VERSION}).",
            hint='Update spdesk, or delete the "models" entry of the settings file.',
        )
    overrides: dict[str, SourceOverride] = {}
    for feature, value in (section.get("overrides") or {}).items():
        if feature not in FEATURES or not isinstance(value, dict):
            raise ConfigError(
                f"Unknown model feature {feature!r} in the settings file; "
                f"expected one of {', '.join(FEATURES)}."
            )
        overrides[feature] = SourceOverride(value.get("repo_id"), value.get("revision"))
    return StoreSettings(
        endpoint=section.get("endpoint"),
        models_dir=section.get("models_dir"),
        overrides=overrides,
    )


def save_settings(settings: StoreSettings, path: Path | None = None) -> Path:
    """Write the ``"models"`` section atomically, keeping every other key of the file (a token an
    older spdesk stored there is dropped)."""
    path = path or paths.settings_file()
    data = _read_file(path)
    data[SETTINGS_KEY] = {**asdict(settings), "version": SCHEMA_VERSION}
    atomic_write(path, json.dumps(data, indent=2).encode("utf-8"))
    return path
