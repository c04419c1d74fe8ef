"""The fingerprint of a job's settings that a re-run compares to decide what to redo."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from spdesk.core.jobs.protector import mode_key
from spdesk.core.jobs.settings import ProtectSettings

# Bumped when the way a pattern is laid onto photos changes, so that a re-run redoes old outputs.
# 2: photos no larger than the working view get the pattern 1:1 (it was resampled to the view).
APPLY_LAYOUT_VERSION = 2


def output_fingerprint(settings: ProtectSettings, perturbation_digest: str) -> str:
    """A short hash of everything that changes the output bytes (not collision/device)."""
    keys = {
        "perturbation": perturbation_digest,
        "strength": settings.strength,
        "mode": settings.mode,
        # The mode's own settings (the key is named for the first mode that had any).
        "finetune": mode_key(settings),
        "export": asdict(settings.export_options()),
        "apply": [settings.working_size, settings.randomize, settings.seed, _secret_id(settings)],
        "layout": APPLY_LAYOUT_VERSION,
    }
    text = json.dumps(keys, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _secret_id(settings: ProtectSettings) -> str | None:
    """Which install key seeds randomised layouts (public id; None when not randomised)."""
    if not settings.randomize:
        return None
    from spdesk.core.keys import install_key, key_id

    return key_id(install_key())
