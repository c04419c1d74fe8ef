"""The AI edit a preview runs, as both front-ends start it: the SPD blog's prompts and the
default settings. No torch here: the app reads these at start-up, and the command line and the
app showed different edits for the same seed while each kept its own copy (50 steps and 30)."""

from __future__ import annotations

# Prompts of the SPD blog's evaluation (P4 is the empty prompt).
PRESETS: dict[str, str] = {
    "P1": "make it like a watercolor painting",
    "P2": "apply sunset lighting",
    "P3": "add some snow",
    "P4": "",
}
EDIT_STRENGTH = 0.5  # how much of the photo the editor regenerates, in (0, 1]
# Denoising steps asked for (img2img runs strength x steps of them), not diffusers' 50: on a
# CPU each step of SD 1.5 takes seconds, and a preview runs the edit three times.
EDIT_STEPS = 30
GUIDANCE = 7.5  # classifier-free guidance scale
