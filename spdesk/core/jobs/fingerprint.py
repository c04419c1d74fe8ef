"""The fingerprint of a job's settings that a re-run compares to decide what to redo."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from spdesk.core.export import DEFAULT_QUALITY
from spdesk.core.jobs.protector import mode_key
from spdesk.core.jobs.settings import PHOTO_MODES, ProtectSettings

# Bumped when the way a pattern is laid onto photos changes, so that a re-run redoes old outputs.
# 2: photos no larger than the working view get the pattern 1:1 (it was resampled to the view).
APPLY_LAYOUT_VERSION = 2
LOSSLESS_FORMATS = ("PNG", "TIFF")  # the chosen output formats that take no quality


def output_fingerprint(settings: ProtectSettings, perturbation_digest: str) -> str:
    """A short hash of everything that changes the output bytes (not collision/device)."""
    keys = {
        "perturbation": perturbation_digest,
        "strength": _strength_key(settings),
        "mode": settings.mode,
        # The mode's own settings (the key is named for the first mode that had any).
        "finetune": mode_key(settings),
        "export": _export_key(settings),
        "apply": [settings.working_size, settings.randomize, settings.seed, _secret_id(settings)],
        "layout": APPLY_LAYOUT_VERSION,
    }
    text = json.dumps(keys, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _export_key(settings: ProtectSettings) -> dict[str, Any]:
    """How outputs are written; a quality only where it is used (PNG and TIFF ignore it, and
    the app passes its greyed-out box's value where the command line passes its default)."""
    export = asdict(settings.export_options())
    if export["format"] in LOSSLESS_FORMATS:
        export["quality"] = DEFAULT_QUALITY
    return export


def _strength_key(settings: ProtectSettings) -> float | None:
    """The strength, None when it is the protection's own (the generator's or the pattern
    file's): the same bytes as naming none. The app always names one and the command line only
    when asked; None keeps the fingerprint that default runs' manifests already hold."""
    if settings.strength is None or settings.strength == _own_strength(settings):
        return None
    return settings.strength


def _own_strength(settings: ProtectSettings) -> float | None:
    """The strength the job's generator or pattern file was made at; None when unknown (a
    file that cannot be read: the job itself says why)."""
    from spdesk.core.errors import SpdeskError

    if settings.mode in PHOTO_MODES:
        from spdesk.core.generator_file import read_spec

        try:
            return read_spec(settings.generator_path()).eps
        except (SpdeskError, OSError):
            return None
    from spdesk.core.perturbation import bundled_perturbation_path, header_metadata

    try:
        path = settings.perturbation or bundled_perturbation_path()
        return float(header_metadata(path)["eps"])
    except (KeyError, TypeError, ValueError, OSError, ModuleNotFoundError):
        return None


def _secret_id(settings: ProtectSettings) -> str | None:
    """Which install key seeds randomised layouts (public id; None when not randomised)."""
    if not settings.randomize:
        return None
    from spdesk.core.keys import install_key, key_id

    return key_id(install_key())
