"""Measured speeds behind the time estimates the app shows before a run, per kind of device.

Torch-free: the app asks before anything heavy is loaded. Each figure names the command that
measured it; None where nothing was measured (the app then says that the time is measured as it
runs).
"""

from __future__ import annotations

FINETUNE_SECONDS_PER_STEP_CPU: dict[str, float] = {"sd15": 12.4, "taesd": 1.07}
"""Seconds per step of fine-tuning the universal pattern (one encode of one 512 px view a
step) on a 512x512 photo on this project's 2-core CPU, from
``python benchmarks/bench_train.py --finetune-step-times --stages none`` (two runs: 12.4 and
11.2 s for SD 1.5's VAE architecture, 1.07 and 1.37 s for TAESD)."""

PHOTO_FINETUNE_SECONDS_PER_STEP_CPU: dict[str, float] = {"taesd": 5.95, "sd15": 50.0}
"""Seconds per step of photo fine-tuning with its JPEG term (the product's default) on a
512 px photo on this project's 2-core CPU. Such a step encodes the photo at two editor sizes
(256 and 512 px), each as is and after a differentiable JPEG re-save, through the generator's
shaping: several universal steps, not one and its re-save.

TAESD: 23.8 s a photo for 4 steps / 4 (the photo's generator pass included), both cores on
a quiet machine, from the command under :data:`JPEG_TERM_COST`. Checked on 2026-12-05 by a
scratch script running the product's ``PhotoFineTuner`` (bundled generator, the f8e4m3 TAESD
file, editor sides 256 and 512) on one ImageNet photo resized to 683x512 with
``torch.set_num_threads(1)`` on the shared 2-core machine (load about 1: the other core at
other work), timing the gaps between the steps' callbacks: 10.8 s a step with the JPEG term,
4.8 s without (1.8x and 1.4x the two-core 5.95 and 3.4 s). SD 1.5's VAE architecture (random
weights, as above), the same way: 92.4 and 89.6 s a step with the JPEG term on one core, so
about 50 s on two at TAESD's 1.8x; not measured on two cores."""

FINETUNE_SECONDS_PER_STEP_CUDA: dict[str, float | None] = {
    # Measured on an NVIDIA H200 (torch 2.11, CUDA 13.0): `python benchmarks/bench_train.py
    # --cuda-speed --checkpointing --finetune-batch 8 --stages none` fine-tuned 50 steps of
    # 512 px photos against SD 1.5's VAE architecture in 0.861 s per photo in batches of 8
    # (1.578 s one photo at a time): 0.861 / 50 = 0.0172 s per step and photo.
    "sd15": 0.0172,
    # Photo fine-tuning, 8 steps against TAESD, without the JPEG term, one photo per pass:
    # 0.167 s a photo on the same H200 (`bash benchmarks/gpu/run_issue15.sh`, ISSUE15_PLAN=
    # variants; benchmarks/results/h200-2026-11-30/variants8.json, "speed").
    "taesd": 0.167 / 8,
}
"""Seconds per fine-tuning step and photo on a 512x512 photo on a CUDA GPU."""

JPEG_TERM_COST: dict[str, float] = {"cuda": 2.08}
"""How much longer a photo fine-tuning step takes on a CUDA GPU with the JPEG re-save in its
loss (the product's default): 0.347 / 0.167 s a photo (the H200 run above). On this project's
2-core CPU it was 23.8 / 13.7 s for 4 steps (1.74x), measured in one run of `python
benchmarks/bench_protection.py --speed-only --modes photo --fine-tune 4 --tuner-variants nojpeg
--speed-photos 4 --threads 2`; the CPU estimate takes the step with the term as measured
(:data:`PHOTO_FINETUNE_SECONDS_PER_STEP_CPU`), as the universal step it used to multiply
encodes a quarter of the pixels."""

PATTERN_CHECK_SECONDS_CPU: dict[str, float] = {"taesd": 16.0, "sd15": 131.0}
"""Seconds the check at the end of training takes on this project's 2-core CPU (4 held-out
photos at a 512 px editor, then the visibility metrics; ``spdesk.core.trained_pattern``). TAESD:
`spdesk train` on 39 ImageNet photos, 60 steps, took 3 min 28 s with it and 3 min 12 s without.
SD 1.5's VAE architecture (random weights): the gain alone took 126 s (a scratch script calling
``pattern_gain`` on the first 4 held-out photos, one run), plus the metrics' 5 s."""

DEVICE_WORDS = {"cpu": "a 2-core CPU", "cuda": "an H200 GPU"}
"""How each estimate's device is named to the user: what its figures were measured on."""


def finetune_seconds_per_photo(
    encoder: str, steps: int, device_kind: str, *, jpeg: bool = False
) -> float | None:
    """Estimated seconds to fine-tune one 512 px photo for ``steps`` steps against ``encoder``
    ("sd15" or "taesd") on a device of ``device_kind`` ("cpu", "cuda", "mps"): photo
    fine-tuning with its JPEG term (the app's per-photo fine-tuning) if ``jpeg``, else the
    universal pattern's; None when there is no figure for that pair (another encoder, Apple
    GPUs)."""
    if jpeg and device_kind == "cpu":
        photo_step = PHOTO_FINETUNE_SECONDS_PER_STEP_CPU.get(encoder)
        return None if photo_step is None else steps * photo_step
    tables: dict[str, dict[str, float | None]] = {
        "cpu": dict(FINETUNE_SECONDS_PER_STEP_CPU),
        "cuda": FINETUNE_SECONDS_PER_STEP_CUDA,
    }
    per_step = tables.get(device_kind, {}).get(encoder)
    if per_step is None:
        return None
    return steps * per_step * (JPEG_TERM_COST.get(device_kind, 2.0) if jpeg else 1.0)


def pattern_check_seconds(encoder: str, device_kind: str | None) -> float | None:
    """Estimated seconds of the end-of-training check against ``encoder`` ("sd15" or "taesd")
    on ``device_kind``; None where nothing was measured (GPUs: a fraction of a second, not
    measured; other encoders)."""
    return PATTERN_CHECK_SECONDS_CPU.get(encoder) if device_kind == "cpu" else None
