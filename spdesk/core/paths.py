"""Every place spdesk keeps files, from one module.

Locations follow platformdirs. ``SPDESK_HOME`` puts everything under one folder (tests, portable
installs); ``SPDESK_MODELS_DIR`` moves only the model store.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "spdesk"


def _home_override() -> Path | None:
    home = os.environ.get("SPDESK_HOME")
    return Path(home) if home else None


def data_dir() -> Path:
    """User data root (models, perturbation library)."""
    home = _home_override()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Settings files."""
    home = _home_override()
    return (
        home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    )


def log_dir() -> Path:
    """Log files (tracebacks go here, never to the user)."""
    home = _home_override()
    return home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Disposable files (thumbnails, previews)."""
    home = _home_override()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    """Where downloaded and imported models live (changeable by the user)."""
    override = os.environ.get("SPDESK_MODELS_DIR")
    return Path(override) if override else data_dir() / "models"


def library_dir() -> Path:
    """The user's own trained perturbations."""
    return data_dir() / "perturbations"


def settings_file() -> Path:
    """Core settings shared by CLI and GUI (model source, endpoint, models folder)."""
    return config_dir() / "settings.json"


def ensure(path: Path) -> Path:
    """Create ``path`` (a folder) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
