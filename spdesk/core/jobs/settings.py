"""What decides how a job protects and writes photos.

Which of it changes the output bytes is in :mod:`~spdesk.core.jobs.fingerprint`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spdesk.core.apply import ApplyOptions
from spdesk.core.errors import ConfigError
from spdesk.core.export import (
    COLLISIONS,
    DEFAULT_COLLISION,
    DEFAULT_STRIP,
    DEFAULT_SUFFIX,
    ExportOptions,
    parse_format,
)
from spdesk.core.files import shown
from spdesk.core.imageio import DEFAULT_MAX_PIXELS

_COLLISION_ALIASES = {"suffix": "unique", "rename": "unique", "replace": "overwrite"}
GPU_FINETUNE_BATCH = 8  # photos fine-tuned together on a CUDA GPU unless set
# Photo fine-tuning also pushes a JPEG q75 re-save of each photo off course: on an H200, 24
# held-out photos, 8 steps against TAESD, the share of the gain kept after JPEG 75 went from 69%
# to 79% with the same strength and visibility, for twice the time (benchmarks/README.md).
DEFAULT_FINETUNE_JPEG = 75
# Fine-tuning steps per photo unless set, on any device: what a GPU with an encoder installed
# gets by default (see recommended_protection, where 8 steps were measured stronger at the same
# visibility). More steps buy strength with visibility (README), and on a 2-core CPU each step
# against SD 1.5's VAE takes about 20 s: 50 steps would be some 18 minutes a photo.
DEFAULT_FINETUNE_STEPS = 8
# Fine-tuning the universal pattern pushes each photo's latent away from the clean photo's
# (untargeted), not towards a grey photo's (PhotoGuard's targeted attack): on 12 held-out photos,
# 8 steps against TAESD, latent gain 1.57x / 1.29x over random signs at 256 / 512 px editors and
# 60% kept after JPEG 75, against 1.34x / 1.17x and 50%, for SSIMULACRA2 48 against 52
# (README, "Fine-tuning the universal pattern"). As for training (train_advice.DEFAULT_OBJECTIVE).
DEFAULT_FINETUNE_OBJECTIVE = "latent"
# One Protector kind each (spdesk.core.jobs.protector, which imports this module, not the reverse).
MODES = ("photo", "universal", "finetune", "photo-finetune")


def default_workers() -> int:
    """Photos protected at once by default: one more than the CPU cores this process may use,
    so that a core is never idle while a photo waits for its file or its fsync; at most 4, as
    each photo in flight holds about 200 MB at 24 MP. (On 2 cores, 3 workers measured 1.05x the
    Pillow floor against 1.10x for 2.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(4, (cores or 1) + 1))


FINETUNE_MODES = ("finetune", "photo-finetune")  # the modes that optimise against an encoder
PHOTO_MODES = ("photo", "photo-finetune")  # the modes whose perturbation a generator writes
_FINETUNE_FIELDS = ("finetune_steps", "finetune_batch", "finetune_jpeg", "encoder", "objective")


ENCODER_WORDS = {"sd15": "SD 1.5's VAE", "taesd": "TAESD"}


@dataclass(frozen=True)
class Recommendation:
    """The protection a user gets when they choose none: mode, and for fine-tuning its encoder
    and steps, with the reason in words."""

    mode: str
    encoder: str | None = None
    steps: int | None = None
    reason: str = ""


def recommended_protection(device_kind: str, installed_encoders: Sequence[str]) -> Recommendation:
    """Photo fine-tuning where a CUDA GPU and an encoder are both here, else photo mode.

    On an H200 (2026-12-04), 8 steps of photo fine-tuning against TAESD (JPEG q75 in the loss)
    took 0.43 s a photo and, against photo mode's one pass, raised the latent gain over random
    signs from 1.33x to 1.99x at a 256 px editor and from 0.92x to 1.31x at 512 px, kept 78% of it
    after JPEG 75 (72%) and was less visible (SSIMULACRA2 72.1 vs 71.4, FLIP 0.043 vs 0.048;
    README, "Photo fine-tuning on the 24 photos"). On a CPU it
    takes minutes a photo, so photo mode stays the default there. SD 1.5's own VAE, when
    installed, is preferred: it is the encoder the editors use.
    """
    if device_kind == "cuda":
        for encoder in ("sd15", "taesd"):
            if encoder in installed_encoders:
                return Recommendation(
                    "photo-finetune",
                    encoder,
                    DEFAULT_FINETUNE_STEPS,
                    f"this computer has a CUDA GPU and {ENCODER_WORDS[encoder]}, so each "
                    f"photo's perturbation is fine-tuned ({DEFAULT_FINETUNE_STEPS} steps): "
                    "stronger at the same visibility",
                )
    return Recommendation("photo")


def job_mode(choice: str | None, *, fine_tune: bool, own_pattern: bool) -> str:
    """The job's mode for a user's choice, as the command line and the app both decide it.

    ``choice`` is "photo", "universal" or None (none made); a pattern file of the user's own
    means universal protection unless photo mode was chosen; fine-tuning optimises the chosen
    protection on each photo: photo mode's perturbation, or the universal pattern.
    """
    mode = choice or ("universal" if own_pattern else "photo")
    if not fine_tune:
        return mode
    return "finetune" if mode == "universal" else "photo-finetune"


@dataclass(frozen=True)
class ProtectSettings:
    """Everything that decides how a job protects and writes photos.

    Attributes:
        perturbation: perturbation file; None uses the one bundled with spdesk.
        strength: budget in 8-bit steps, (0, 64]; None keeps the perturbation's own.
        mode: "photo" (each photo its own perturbation from the protection generator),
            "universal" (one pattern for all photos; instant), "photo-finetune" (photo mode's
            perturbation optimised per photo against ``encoder``, inside the same perceptual
            budget) or "finetune" (the universal pattern optimised per photo); one per
            :class:`~spdesk.core.jobs.protector.Protector` kind.
        generator: protection generator file for "photo" mode; None uses the bundled one.
        finetune_steps: optimisation steps per photo in the fine-tuning modes (8 on any
            device, see ``DEFAULT_FINETUNE_STEPS``).
        finetune_jpeg: photo fine-tuning also pushes a JPEG re-save of this quality off course
            (a differentiable round trip in the loss), so the protection survives one; None:
            the photo as is only.
        finetune_batch: photos of one size fine-tuned together; None picks 8 on a CUDA GPU
            (one pass for several photos) and 1 elsewhere. It does not change the result.
        suffix: added to each output's stem: ``IMG_0001.protected.jpg``.
        collision: when an output name is taken: "unique" (default: ``-2``, ``-3``..., so
            nothing is ever replaced and a run always writes what it was asked for; a re-run
            with the same settings still skips finished photos through the manifest), "skip"
            or "overwrite" (an output spdesk wrote, unchanged since; never an original or a
            user's file). "suffix" means "unique". The app and ``spdesk protect`` share it.
        format: "png", "jpeg", "webp", "tiff"; None or "same" keeps each photo's format.
        quality: JPEG/WebP quality (95; below 90 weakens the protection).
        device: torch device for fine-tuning and for photo mode's generator ("auto", "cpu",
            "cuda", "mps"; photo mode uses a CUDA GPU or else the CPU).
        encoder: encoder spec for fine-tuning ("sd15", a folder or a weights file).
        objective: fine-tuning objective(s).
        working_size: short side of the editor's working view, in pixels (512).
        strip_metadata: "gps" (default: the location is removed, the rest kept), "none" or
            "all" (see :class:`~spdesk.core.export.ExportOptions`).
        randomize: per-photo tile offset and flips; seed: their seed.
        max_pixels: photos with more pixels are refused before decoding.
        follow_symlinks: follow symbolic links while walking folders.
        allow_output_in_input: allow the output folder inside an input folder.
        redo: protect again photos the manifest lists as finished.
        memory_budget: bytes the photos in flight may hold at once, estimated from each
            photo's header (see :mod:`spdesk.core.jobs.memory`); None: half the memory
            available when the job starts. A photo needing more than the budget runs alone.
        workers: photos processed at once (decode, protect, encode overlap; 1 = strictly one
            after the other); by default one more than the CPU cores, at most 4 (see
            :func:`default_workers`). Fine-tuning always uses one.
    """

    perturbation: Path | None = None
    strength: float | None = None
    mode: str = "universal"
    generator: Path | None = None
    finetune_steps: int = DEFAULT_FINETUNE_STEPS
    finetune_batch: int | None = None
    finetune_jpeg: int | None = DEFAULT_FINETUNE_JPEG
    suffix: str = DEFAULT_SUFFIX
    collision: str = DEFAULT_COLLISION
    format: str | None = None
    quality: int = 95
    device: str = "auto"
    encoder: str = "sd15"
    objective: str = DEFAULT_FINETUNE_OBJECTIVE
    working_size: int = 512
    strip_metadata: str = DEFAULT_STRIP
    randomize: bool = False
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    follow_symlinks: bool = False
    allow_output_in_input: bool = False
    redo: bool = False
    workers: int = field(default_factory=lambda: default_workers())
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        collision = _COLLISION_ALIASES.get(self.collision, self.collision)
        object.__setattr__(self, "collision", collision)
        object.__setattr__(self, "strip_metadata", self.strip_metadata or DEFAULT_STRIP)
        if collision not in COLLISIONS:
            raise ConfigError(
                f"Unknown collision policy {self.collision!r}: use skip, unique or overwrite."
            )
        if self.mode not in MODES:
            raise ConfigError(f"Unknown mode {self.mode!r}: use {' or '.join(MODES)}.")
        if self.mode in FINETUNE_MODES and not 1 <= self.finetune_steps <= 10_000:
            raise ConfigError(
                f"Fine-tuning steps must be between 1 and 10000, got {self.finetune_steps}."
            )
        if self.finetune_jpeg is not None and not 1 <= self.finetune_jpeg <= 100:
            raise ConfigError(
                f"The fine-tuning JPEG quality must be between 1 and 100, got {self.finetune_jpeg}."
            )
        if self.finetune_batch is not None and not 1 <= self.finetune_batch <= 256:
            raise ConfigError(
                "The fine-tuning batch must be between 1 and 256 photos, "
                f"got {self.finetune_batch}."
            )
        if not 8 <= self.working_size <= 8192:
            raise ConfigError(
                f"Working size must be between 8 and 8192 pixels, got {self.working_size}."
            )
        if not 1 <= self.workers <= 32:
            raise ConfigError(f"Workers must be between 1 and 32, got {self.workers}.")
        if self.max_pixels < 1:
            raise ConfigError("The pixel limit must be positive.")
        if self.memory_budget is not None and self.memory_budget < 1:
            raise ConfigError(
                f"The memory budget must be positive, got {self.memory_budget} bytes."
            )
        self.export_options()  # validates format, quality, metadata option and suffix

    def export_options(self) -> ExportOptions:
        return ExportOptions(
            format=parse_format(self.format),
            quality=self.quality,
            strip_metadata=self.strip_metadata,
            suffix=self.suffix,
        )

    def generator_path(self) -> Path:
        from spdesk.core.generator_file import bundled_generator_path

        return self.generator or bundled_generator_path()

    def apply_options(self) -> ApplyOptions:
        from spdesk.core.keys import install_key

        return ApplyOptions(
            working_size=self.working_size,
            strength=self.strength,
            randomize=self.randomize,
            seed=self.seed,
            # Randomised layouts are seeded by this install's secret too (never by public
            # inputs alone): nobody else can recompute them from the file names.
            secret=install_key() if self.randomize else b"",
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able settings for reports: only those this mode uses (a report of a one-pass
        run that names fine-tuning steps and an encoder says what did not happen)."""
        out = asdict(self)
        out["perturbation"] = shown(self.perturbation) if self.perturbation else "bundled"
        if self.mode not in FINETUNE_MODES:
            for name in _FINETUNE_FIELDS:
                del out[name]
        if self.mode in PHOTO_MODES:  # the universal pattern's options are not used
            out["generator"] = shown(self.generator) if self.generator else "bundled"
            for name in ("perturbation", "randomize", "seed"):
                del out[name]
        else:
            del out["generator"]
        return out
