"""The app's persisted settings (QSettings in an INI file under the platformdirs config folder).

Keeping the file under :func:`spdesk.core.paths.config_dir` means ``SPDESK_HOME`` (tests, portable
installs) moves it too: tests never read or write the user's real settings.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QSize
from PySide6.QtGui import QGuiApplication

from spdesk.core.device import DEVICE_CHOICES
from spdesk.core.export import DEFAULT_COLLISION
from spdesk.core.jobs.settings import DEFAULT_FINETUNE_STEPS
from spdesk.core.paths import config_dir

STRENGTH_PRESETS: dict[str, float] = {"low": 4.0, "medium": 8.0, "high": 16.0}
"""Strength presets, in 8-bit steps (8 means at most ±8/255 per channel)."""
DEFAULT_STRENGTH = 8.0


def strength_tip(name: str, eps: float) -> str:
    """What a strength preset means, in words: its number alone ("8") said nothing."""
    default = " (the default)" if eps == DEFAULT_STRENGTH else ""
    return (
        f"{name.title()}{default}: each colour value of the photo changes by at most "
        f"{eps:g} out of 255"
    )


SCHEMA_VERSION = 1
"""Version of the settings' keys and meanings: bump it when one changes, and migrate in
:func:`open_settings`. Settings written by a newer spdesk are neither read (defaults are used)
nor written (that version's values stay as they are)."""

MODE_NAMES = ("photo", "universal", "finetune")
FORMATS = ("same", "png", "jpeg", "webp")
COLLISIONS = ("unique", "skip", "overwrite")  # the core's policies; DEFAULT_COLLISION first
_OLD_COLLISIONS = {"suffix": "unique"}  # saved by spdesk before the app used the core's names


def settings_path() -> Path:
    return config_dir() / "gui.ini"


def open_settings() -> QSettings:
    """The app's QSettings, stored as INI in the config folder, stamped with its schema (an
    unreadable stamp too: left as it was, the settings would be ignored on every start)."""
    settings = QSettings(str(settings_path()), QSettings.Format.IniFormat)
    if _stamped_schema(settings) is None:
        settings.setValue("schema", SCHEMA_VERSION)
    return settings


def _stamped_schema(settings: QSettings) -> int | None:
    try:
        return int(str(settings.value("schema")))
    except (TypeError, ValueError):
        return None


def schema_of(settings: QSettings) -> int:
    schema = _stamped_schema(settings)
    return SCHEMA_VERSION if schema is None else schema


def read_only(settings: QSettings) -> bool:
    """Whether a newer spdesk wrote ``settings``: this version leaves them as they are."""
    return schema_of(settings) > SCHEMA_VERSION


def read_only_notice(settings: QSettings) -> str:
    """What to tell the user, once, when ``settings`` are a newer spdesk's ("" when ours)."""
    if not read_only(settings):
        return ""
    return (
        "Settings were saved by a newer spdesk: this version will not change them. It starts "
        "with its defaults, and your changes last until you close it."
    )


@dataclass
class ProtectOptions:
    """What the main window's controls hold; saved between sessions.

    Attributes:
        perturbation: path of the perturbation file ("" = the bundled default).
        generator: path of the protection generator file the photo modes draw each photo's
            perturbation with ("" = the bundled one; ``spdesk train-generator`` makes others).
        strength: budget in 8-bit steps, in (0, 64]; presets 4 / 8 / 16.
        mode: "photo" (each photo its own perturbation from the generator),
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
            this computer (photo fine-tuning on a CUDA GPU with an encoder installed), again on
            each start: an unchosen mode loads as "photo".
        encoder_chosen: the user picked the fine-tuning encoder; until then the app may take
            the one installed (TAESD where SD 1.5's VAE is not), again on each start: an
            unchosen encoder loads as "sd15".
    """

    perturbation: str = ""
    generator: str = ""
    strength: float = DEFAULT_STRENGTH
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
    encoder_chosen: bool = False


_VALID: dict[str, Callable[[Any], bool]] = {
    "strength": lambda eps: math.isfinite(eps) and 0 < eps <= 64,
    "mode": lambda mode: mode in MODE_NAMES,
    "finetune_steps": lambda steps: 1 <= steps <= 1000,
    "finetune_encoder": bool,  # "sd15", "taesd" or a file or folder
    "collision": lambda policy: policy in COLLISIONS,
    "format": lambda fmt: fmt in FORMATS,
    "quality": lambda quality: 50 <= quality <= 100,
    "device": lambda device: device in DEVICE_CHOICES,
}
"""What a loaded option must be; a file edited by hand or damaged says anything."""

# The options as each QSettings last loaded or saved them: a save writes only what changed since,
# so two windows on one file keep each other's changes.
_as_stored: weakref.WeakKeyDictionary[QSettings, ProtectOptions] = weakref.WeakKeyDictionary()


def load_options(settings: QSettings) -> ProtectOptions:
    """Options from ``settings``; any missing, malformed or out-of-range value falls back to its
    default, and so do all of them when a newer spdesk wrote the settings (its keys may mean
    other things)."""
    defaults = ProtectOptions()
    if read_only(settings):
        return defaults
    values = {
        f.name: _stored_value(settings, f.name, getattr(defaults, f.name))
        for f in fields(ProtectOptions)
    }
    if not settings.contains("options/encoder_chosen"):  # saved before the flag: kept as saved
        values["encoder_chosen"] = settings.contains("options/finetune_encoder")
    stored = ProtectOptions(**values)
    _as_stored[settings] = stored  # what the file holds: a save writes what differs from it
    return _made_again(stored, defaults)


def _made_again(stored: ProtectOptions, defaults: ProtectOptions) -> ProtectOptions:
    """The app's own picks suit one computer on one day (its GPU, the encoders installed): they
    are made again on each start, unlike the user's. An encoder file is always the user's."""
    options = stored
    if not stored.mode_chosen:
        options = replace(options, mode=defaults.mode)
    if stored.finetune_encoder not in ("sd15", "taesd"):
        options = replace(options, encoder_chosen=True)
    elif not stored.encoder_chosen:
        options = replace(options, finetune_encoder=defaults.finetune_encoder)
    return options


def _stored_value(settings: QSettings, name: str, default: Any) -> Any:
    raw = settings.value(f"options/{name}", default)
    value: Any
    try:
        value = _as_bool(raw) if isinstance(default, bool) else type(default)(raw)
    except (TypeError, ValueError):
        return default
    if name == "collision":
        value = _OLD_COLLISIONS.get(value, value)
    return value if _VALID.get(name, lambda _: True)(value) else default


def _as_bool(raw: object) -> bool:
    """A flag as QSettings gives it back from an INI file: "true"/"false" strings."""
    return raw is True or str(raw).strip().lower() in ("true", "1", "yes")


def save_options(settings: QSettings, options: ProtectOptions) -> None:
    """Write the options changed since ``settings`` loaded or saved them (all of them the first
    time): another window on the same file keeps what was changed there."""
    if read_only(settings):
        return
    stored = _as_stored.get(settings)
    for f in fields(ProtectOptions):
        value = getattr(options, f.name)
        if stored is None or getattr(stored, f.name) != value:
            settings.setValue(f"options/{f.name}", value)
    if not settings.contains("options/encoder_chosen"):  # its absence means "saved before it"
        settings.setValue("options/encoder_chosen", options.encoder_chosen)
    _as_stored[settings] = replace(options)


def save_geometry(
    settings: QSettings, key: str, geometry: QByteArray, screen: QSize | None = None
) -> None:
    """Keep a window's geometry with the room its screen had (``screen``; by default the primary
    screen's available size)."""
    if read_only(settings):
        return
    settings.setValue(f"geometry/{key}", geometry)
    settings.setValue(f"geometry/{key}_screen", _screen_room() if screen is None else screen)


def load_geometry(settings: QSettings, key: str, screen: QSize | None = None) -> QByteArray | None:
    """A window's saved geometry, or None (the window then fits itself to the screen) where it
    was saved on a screen with more room than ``screen`` (by default the primary screen's): Qt
    squeezed such a window to its minimum size. None too for one saved without its screen."""
    value = settings.value(f"geometry/{key}")
    saved_on = settings.value(f"geometry/{key}_screen")
    if not isinstance(value, QByteArray) or not isinstance(saved_on, QSize):
        return None
    room = _screen_room() if screen is None else screen
    fits = saved_on.width() <= room.width() and saved_on.height() <= room.height()
    return value if saved_on.isValid() and fits else None


def _screen_room() -> QSize:
    screen = QGuiApplication.primaryScreen()
    return screen.availableGeometry().size() if screen is not None else QSize()


def last_folder(settings: QSettings, key: str) -> str:
    return str(settings.value(f"folders/{key}", "") or "")


def remember_folder(settings: QSettings, key: str, folder: str) -> None:
    if not read_only(settings):
        settings.setValue(f"folders/{key}", folder)


def remember_step_time(settings: QSettings, device_kind: str, encoder: str, seconds: float) -> None:
    """The seconds per fine-tuning step last measured on this computer with ``encoder`` on a
    device of ``device_kind`` ("cpu", "cuda", "mps"): a GPU's figure says nothing of the CPU's."""
    if read_only(settings):
        return
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
