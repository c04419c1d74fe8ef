"""Measured speeds behind the time estimates the app shows before a run, per kind of device.

Torch-free: the app asks before anything heavy is loaded. Each figure names the command that
measured it. The CUDA figures are PLACEHOLDERS, to be replaced by measured H200 figures from
``bash benchmarks/gpu/run_issue16.sh`` (``train.json``: ``finetune`` rows, seconds per photo
for ``--finetune-steps`` steps in batches of 8, divided by the steps); until then they are the
issue's H100 reference, and None where there is no reference (the app then says that the time
is measured as it runs).
"""

from __future__ import annotations

FINETUNE_SECONDS_PER_STEP_CPU: dict[str, float] = {"sd15": 12.4, "taesd": 1.07}
"""Seconds per fine-tuning step on a 512x512 photo on this project's 2-core CPU, from
``python benchmarks/bench_train.py --finetune-step-times --stages none`` (two runs: 12.4 and
11.2 s for SD 1.5's VAE architecture, 1.07 and 1.37 s for TAESD)."""

FINETUNE_SECONDS_PER_STEP_CUDA: dict[str, float | None] = {
    # PLACEHOLDER, to be replaced by measured H200 figures: issue 16's H100 reference, a
    # 200-step PhotoGuard encoder attack with SD 1.5's VAE at 512 px took 4.9 s per photo
    # one photo at a time (0.0245 s per step); batched photos take less (2.65 s at batch 32).
    "sd15": 0.0245,
    "taesd": None,  # PLACEHOLDER: not measured on a GPU yet
}
"""Seconds per fine-tuning step and photo on a 512x512 photo on a CUDA GPU."""

DEVICE_WORDS = {"cpu": "a 2-core CPU", "cuda": "an H100 GPU"}
"""How each estimate's device is named to the user: what its figures were measured on
(PLACEHOLDER for CUDA: "an H200 GPU" once the measured H200 figures replace the reference)."""


def finetune_seconds_per_photo(encoder: str, steps: int, device_kind: str) -> float | None:
    """Estimated seconds to fine-tune one 512 px photo for ``steps`` steps against ``encoder``
    ("sd15" or "taesd") on a device of ``device_kind`` ("cpu", "cuda", "mps"); None when there
    is no figure for that pair (another encoder, Apple GPUs, or no GPU measurement yet)."""
    tables: dict[str, dict[str, float | None]] = {
        "cpu": dict(FINETUNE_SECONDS_PER_STEP_CPU),
        "cuda": FINETUNE_SECONDS_PER_STEP_CUDA,
    }
    per_step = tables.get(device_kind, {}).get(encoder)
    return None if per_step is None else steps * per_step
