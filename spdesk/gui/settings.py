"""The app's persisted settings (QSettings in an INI file under the platformdirs config folder).

Keeping the file under :func:`spdesk.core.paths.config_dir` means ``SPDESK_HOME`` (tests, portable
installs) moves it too: tests never read or write the user's real settings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from spdesk.core.export import DEFAULT_COLLISION
from spdesk.core.jobs.settings import DEFAULT_FINETUNE_STEPS
from spdesk.core.paths import config_dir

STRENGTH_PRESETS: dict[str, float] = {"low": 4.0, "medium": 8.0, "high": 16.0}
"""Strength presets, in 8-bit steps (8 means at most ±8/255 per channel)."""

SCHEMA_VERSION = 1
"""Version of the settings' keys and meanings: bump it when one changes, and migrate in
:func:`open_settings`. Settings written by a newer spdesk are not read (defaults are used)."""

FORMATS = ("same", "png", "jpeg", "webp")
COLLISIONS = ("unique", "skip", "overwrite")  # the core's policies; DEFAULT_COLLISION first
_OLD_COLLISIONS = {"suffix": "unique"}  # saved by spdesk before the app used the core's names


def settings_path() -> Path:
    return config_dir() / "gui.ini"


def open_settings() -> QSettings:
    """The app's QSettings, stored as INI in the config folder, stamped with its schema."""
    settings = QSettings(str(settings_path()), QSettings.Format.IniFormat)
    if settings.value("schema") is None:
        settings.setValue("schema", SCHEMA_VERSION)
    return settings


def schema_of(settings: QSettings) -> int:
    try:
        return int(str(settings.value("schema", SCHEMA_VERSION)))
    except (TypeError, ValueError):
        return SCHEMA_VERSION + 1  # unreadable: treat as not ours to interpret


@dataclass
class ProtectOptions:
    """What the main window's controls hold; saved between sessions.

    Attributes:
        perturbation: path of the perturbation file ("" = the bundled default).
        strength: budget in 8-bit steps, in (0, 64]; presets 4 / 8 / 16.
        mode: "photo" (each photo its own perturbation from the bundled generator),
            "universal" (instant) or "finetune" (per-photo optimisation; needs the VAE).
        finetune_steps: optimisation steps per photo in fine-tuned mode, 1..1000 (the core's
            default, 8, on any device: about 3 minutes a photo with SD 1.5's VAE on a CPU).
        finetune_encoder: the encoder fine-tuning attacks: "sd15" (SD 1.5's own VAE, the best
            protection against SD 1.5) or "taesd" (its tiny stand-in, far faster on a CPU).
        output_dir: where protected copies go ("" = a "protected" folder next to the inputs).
        suffix: appended to each output's file name (before the extension).
        collision: what to do when an output exists: "unique" (add a number; the default of
            the app and ``spdesk protect``), "skip", "overwrite" (a copy spdesk wrote).
        format: "same" (keep the input's format), "png", "jpeg" or "webp".
        quality: JPEG/WebP quality, 50..100.
        device: "auto", "cpu", "cuda" or "mps".
        keep_location: keep the photos' GPS position in the protected copies (off: photos
            protected to be posted should not say where they were taken; other metadata stays).
        mode_chosen: the user picked the mode; until then the app may pick the best one for
            this computer (photo fine-tuning on a CUDA GPU with an encoder installed).
    """

    perturbation: str = ""
    strength: float = 8.0
    mode: str = "photo"
    finetune_steps: int = DEFAULT_FINETUNE_STEPS
    finetune_encoder: str = "sd15"
    output_dir: str = ""
    suffix: str = ".protected"
    collision: str = DEFAULT_COLLISION
    format: str = "same"
    quality: int = 95
    device: str = "auto"
    keep_location: bool = False
    mode_chosen: bool = False


def load_options(settings: QSettings) -> ProtectOptions:
    """Options from ``settings``; any missing or malformed value falls back to its default, and
    so do all of them when a newer spdesk wrote the settings (its keys may mean other things)."""
    defaults = ProtectOptions()
    if schema_of(settings) > SCHEMA_VERSION:
        return defaults
    values: dict[str, Any] = {}
    for f in fields(ProtectOptions):
        default = getattr(defaults, f.name)
        raw = settings.value(f"options/{f.name}", default)
        try:
            values[f.name] = _as_bool(raw) if isinstance(default, bool) else type(default)(raw)
        except (TypeError, ValueError):
            values[f.name] = default
    values["collision"] = _OLD_COLLISIONS.get(values["collision"], values["collision"])
    return ProtectOptions(**values)


def _as_bool(raw: object) -> bool:
    """A flag as QSettings gives it back from an INI file: "true"/"false" strings."""
    return raw is True or str(raw).strip().lower() in ("true", "1", "yes")


def save_options(settings: QSettings, options: ProtectOptions) -> None:
    for f in fields(ProtectOptions):
        settings.setValue(f"options/{f.name}", getattr(options, f.name))


def save_geometry(settings: QSettings, key: str, geometry: QByteArray) -> None:
    settings.setValue(f"geometry/{key}", geometry)


def load_geometry(settings: QSettings, key: str) -> QByteArray | None:
    value = settings.value(f"geometry/{key}")
    return value if isinstance(value, QByteArray) else None


def last_folder(settings: QSettings, key: str) -> str:
    return str(settings.value(f"folders/{key}", "") or "")


def remember_folder(settings: QSettings, key: str, folder: str) -> None:
    settings.setValue(f"folders/{key}", folder)


def remember_step_time(settings: QSettings, device_kind: str, encoder: str, seconds: float) -> None:
    """The seconds per fine-tuning step last measured on this computer with ``encoder`` on a
    device of ``device_kind`` ("cpu", "cuda", "mps"): a GPU's figure says nothing of the CPU's."""
    settings.setValue(f"finetune_step_seconds/{device_kind}/{encoder}", float(f"{seconds:.4g}"))


def measured_step_times(settings: QSettings) -> dict[tuple[str, str], float]:
    """Seconds per fine-tuning step by (device kind, encoder), as remember_step_time kept them.
    Figures kept without their device (before it was recorded) are left out."""
    settings.beginGroup("finetune_step_seconds")
    try:
        times: dict[tuple[str, str], float] = {}
        for key in settings.allKeys():
            kind, _, encoder = key.partition("/")
            try:
                seconds = float(str(settings.value(key)))
            except ValueError:
                continue
            if encoder and seconds > 0:
                times[kind, encoder] = seconds
        return times
    finally:
        settings.endGroup()
