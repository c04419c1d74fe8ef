"""What a training run needs to be worth it, from measurements (torch-free: the app and CLI ask
before a run starts).

Figures from ``benchmarks/bench_train.py --stages plain,latent-small`` (TAESD, 128 px, 100 steps,
50 photos of ``../shared/data/imagenet-sample``, held-out gain over random ±8/255 signs): see
``DEFAULT_OBJECTIVE`` and ``MIN_USEFUL_STEPS``.
"""

from __future__ import annotations

DEFAULT_OBJECTIVE = "latent"
"""The objective of ``spdesk train`` and the train dialog: the untargeted latent distortion (from a
random start) measured GAIN_LATENT× random signs where the PhotoGuard ``encoder`` objective measured
GAIN_ENCODER× with the same photos, steps and budget."""

MIN_USEFUL_STEPS = 100
"""Runs shorter than this are unlikely to beat random noise of the same strength."""

NOISE_GAIN = 1.0
"""A perturbation whose held-out effect is below this multiple of random noise's is no use."""


def short_run_warning(steps: int) -> str:
    """A sentence for a run of ``steps`` that is too short to beat noise ("" when it is not)."""
    if steps >= MIN_USEFUL_STEPS:
        return ""
    return (
        f"{steps} steps is probably too short to beat random noise of the same strength "
        f"(runs of {MIN_USEFUL_STEPS} steps or more do, on our test photos)."
    )
