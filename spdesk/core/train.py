"""Universal perturbation training over a folder of photos.

Photos are split into training and held-out validation sets (64:36 by default, seeded), resized so
their short side is the working size (512 by default, as an editor would) and cut into random
size x size crops. Each step draws a minibatch and its random crops and transforms from a generator
seeded by (seed, step), so a run is reproducible and resuming from a checkpoint gives the same
perturbation as never stopping. Every ``val_every`` steps the held-out photos report the relative
latent distortion of the perturbation next to random noise of the same budget (uniform and ±eps
signs). The result is saved with :func:`spdesk.core.perturbation.save_perturbation`, with metadata
built from the frozen :class:`TrainConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spdesk import __version__
from spdesk.core.discovery import DiscoveryOptions, discover
from spdesk.core.encoders import Encoder, load_encoder, measured_as
from spdesk.core.errors import Cancelled, ConfigError, ImageError, OutputError, with_outcome
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.events.training import (
    CheckingPattern,
    CheckpointFailed,
    CheckpointSaved,
    CheckStep,
    SkippedPhoto,
    TrainStarted,
    TrainStep,
    ValidationReport,
)
from spdesk.core.files import atomic_write, check_writable, same_file, shown
from spdesk.core.imageio import read_image
from spdesk.core.objectives import objectives_with_models
from spdesk.core.objectives.base import BatchCache, Objective, objective_loss
from spdesk.core.optim import DeltaOptimizer, OptimConfig, initial_delta, loss_gradient, run
from spdesk.core.perturbation import (
    BOUND_TOLERANCE,
    changes_a_pixel,
    check_destination,
    save_perturbation,
)
from spdesk.core.speed_figures import pattern_check_seconds
from spdesk.core.train_advice import DEFAULT_OBJECTIVE
from spdesk.core.trained_pattern import (
    EDITOR_SIZE,
    MAX_PHOTOS,
    PatternVisibility,
    ProductGain,
    pattern_gain,
    pattern_visibility,
    visibility_available,
)
from spdesk.core.transforms import Robustness, sample_transform

log = logging.getLogger(__name__)


# Bounds checked before any work: a crop of 2048 px is already 16x SD 1.5's working size in
# memory per photo, and larger values only exhaust memory (size 100000 asked for 23 GB and more).
MAX_SIZE = 2048
MAX_BATCH = 256
MAX_STEPS = 100_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (it becomes the perturbation's metadata).

    Attributes:
        photos: folder of training photos (walked recursively).
        encoder: encoder spec (see ``load_encoder``): "sd15", a folder, a weights file, or a list.
        objective: objective name(s), comma-separated (see ``spdesk.core.objectives``).
        target: target of the ``encoder`` objective: "grey", "black", "white" or an image path.
        eps: L-inf budget in 8-bit steps, in [1, 64] (below one step no pixel changes).
        steps: optimisation steps.
        batch: photos per step.
        size: crop size in pixels (multiple of 8); photos are resized to this short side first.
        optimizer, step_size, schedule, final_fraction: see :class:`OptimConfig`.
        start: "zero", "random", "sign" or "auto" (random when the objective needs it, else zero).
        robust: EOT transform names ("jpeg", "resize", "crop", "blur").
        seed: seeds the start, every minibatch, crop and transform.
        split_seed: seeds which photos train and which validate (and ``max_photos``' choice),
            apart from ``seed`` so that stages or repeats with other seeds hold out the same
            photos.
        split: fraction of photos used for training (the rest validate), in (0, 1).
        max_photos: use at most this many photos (after a seeded shuffle); None = all.
        val_every: validate every this many steps (0 = only at the end).
        val_photos: held-out photos used by periodic validation.
        checkpoint_every: write a checkpoint every this many steps (0 = never).
        micro_batch: split each minibatch into chunks of this many photos (less memory).
        checkpointing: recompute SD 1.5 VAE activations in the backward pass (the same result
            in much less GPU memory, for a second forward pass).
        device: "auto", "cpu", "cuda" or "mps".
        name, description: shown in the app's perturbation library.
    """

    photos: str
    encoder: str
    objective: str = DEFAULT_OBJECTIVE
    target: str = "grey"
    eps: float = 8.0
    steps: int = 500
    batch: int = 8
    size: int = 512
    optimizer: str = "pgd"
    step_size: float | None = None
    schedule: str = "cosine"
    final_fraction: float = 0.1
    start: str = "auto"
    robust: tuple[str, ...] = ()
    seed: int = 0
    split_seed: int = 0
    split: float = 0.64
    max_photos: int | None = None
    val_every: int = 50
    val_photos: int = 16
    checkpoint_every: int = 50
    micro_batch: int | None = None
    checkpointing: bool = False
    device: str = "auto"
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.size < 8 or self.size % 8 or self.size > MAX_SIZE:
            raise ConfigError(
                f"size must be a multiple of 8 pixels from 8 to {MAX_SIZE}, got {self.size} "
                "(SD 1.5 works at 512)."
            )
        if not 1 <= self.batch <= MAX_BATCH:
            raise ConfigError(f"batch must be from 1 to {MAX_BATCH} photos, got {self.batch}.")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be from 1 to {MAX_STEPS}, got {self.steps}.")
        if self.max_photos is not None and self.max_photos < 2:
            raise ConfigError(f"max_photos must be at least 2, got {self.max_photos}.")
        if self.val_photos < 1 or self.val_every < 0 or self.checkpoint_every < 0:
            raise ConfigError(
                "val_photos must be at least 1; val_every and checkpoint_every 0 or more."
            )
        if not 0 < self.split < 1:
            raise ConfigError(f"split must be between 0 and 1, got {self.split}.")
        check_seeds(self.seed, self.split_seed)
        if not (math.isfinite(self.eps) and changes_a_pixel(self.eps) and self.eps <= 64):
            below = (  # protect refuses such a pattern: refused before hours of training
                ": below one step it could not change any pixel of a photo (colour values change "
                "by whole steps)"
                if 0 < self.eps < 1
                else ""
            )
            raise ConfigError(
                f"eps must be from 1 to 64 8-bit steps, got {self.eps:g}{below}. 8 is the default."
            )
        # The optimiser's settings, refused now rather than after the photos and encoder load.
        self.optim_config([])
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ConfigError("micro_batch must be at least 1.")
        Robustness.from_names(self.robust)  # validates the names

    def optim_config(self, objectives: Sequence[Objective]) -> OptimConfig:
        start = self.start
        if start == "auto":
            needs_noise = any(o.requirements.random_start for o in objectives)
            start = "random" if needs_noise else "zero"
        return OptimConfig(
            optimizer=self.optimizer,  # type: ignore[arg-type]
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
            schedule=self.schedule,  # type: ignore[arg-type]
            final_fraction=self.final_fraction,
            start=start,  # type: ignore[arg-type]
        )

    def resumable_settings(self) -> dict[str, Any]:
        """The settings that must match for a checkpoint to be resumable (JSON values)."""
        fields = dataclasses.asdict(self)
        volatile = ("val_every", "val_photos", "checkpoint_every", "checkpointing", "device")
        for name in (*volatile, "name", "description"):
            fields.pop(name)
        fields["robust"] = list(self.robust)
        # The folder, not the text typed: "." in two folders is two runs, and "photos" and
        # its full path one run.
        fields["photos"] = str(Path(self.photos).resolve())
        if self.split_seed == self.seed:  # keeps the key of checkpoints that split by seed
            fields.pop("split_seed")
        return fields

    def resume_key(self) -> str:
        """Hash of :meth:`resumable_settings`."""
        settings = json.dumps(self.resumable_settings(), sort_keys=True)
        return hashlib.sha256(settings.encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """The trained delta (3, size, size) float32, its metadata and the validation history."""

    delta: np.ndarray
    metadata: dict[str, Any]
    validation: list[ValidationReport] = field(default_factory=list)
    path: Path | None = None
    seconds_per_step: float = 0.0
    held_out: list[Path] = field(default_factory=list)  # the photos it was not trained on
    product_gain: ProductGain | None = None  # see spdesk.core.trained_pattern
    visibility: PatternVisibility | None = None
    # A library run's checkpoint, kept until the result is saved (spdesk.core.usecases).
    checkpoint: Path | None = None


# --- photos -------------------------------------------------------------------------------------
def find_photos(folder: Path) -> list[Path]:
    """The photos under ``folder`` as a protection job finds them (recursive, by content; hidden,
    system and special files left out), sorted for reproducibility."""
    return photo_folder(folder)[0]


def photo_folder(folder: Path) -> tuple[list[Path], tuple[SkippedPhoto, ...]]:
    """:func:`find_photos`, and what the walk left out beside the photos, with why (as
    ``spdesk protect`` lists it): training said nothing of a pattern file or a sidecar."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{shown(folder)} is a file; a folder of photos is needed here.",
            hint=f"Give the folder that holds it: {shown(folder.parent)}",
        )
    if not folder.is_dir():
        raise ConfigError(f"Photo folder not found: {shown(folder)}")
    found = discover([folder], DiscoveryOptions())
    photos = sorted((p.path for p in found.photos), key=lambda p: str(p.relative_to(folder)))
    left_out = [SkippedPhoto(item.path, item.reason) for item in found.skipped + found.unreadable]
    return photos, tuple(sorted(left_out, key=lambda item: str(item.path)))


def training_photos(root: Path) -> list[Path]:
    """:func:`find_photos`, refusing a folder of fewer than 2: some are held out."""
    return training_photo_folder(root)[0]


def training_photo_folder(root: Path) -> tuple[list[Path], tuple[SkippedPhoto, ...]]:
    """:func:`photo_folder`, refusing a folder of fewer than 2 photos: some are held out."""
    photos, left_out = photo_folder(root)
    if len(photos) < 2:
        raise ConfigError(
            f"{shown(root)} holds {len(photos)} photo(s); training needs at least 2 "
            "(some are held out for validation).",
            hint="Photos are found by content, in subfolders too; hidden files and symbolic "
            "links are left out.",
        )
    return photos, left_out


def training_objectives(config: TrainConfig) -> list[Objective]:
    """The run's objectives; a model one of them loads on first use that is not installed
    raises ModelMissingError now, not after the encoder and the photos are loaded."""
    return objectives_with_models(config.objective, {"target": config.target})


def too_few_readable(root: Path, skipped: Sequence[SkippedPhoto]) -> ConfigError:
    """The error for a folder whose readable photos are too few to train on and hold out."""
    # The reader's reasons name their file already ("x.jpg looks like a JPEG file, but..."):
    # named again, and every one of them, the message was a wall of text.
    reasons = [s.reason.rstrip(".") for s in sorted(skipped, key=lambda s: s.path)[:3]]
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    listed = f" Unreadable: {'; '.join(reasons)}{more}." if skipped else ""
    return ConfigError(
        f"{shown(root)} has too few readable photos: training needs at least one to train on "
        f"and one held out.{listed}",
        hint="Choose a folder with at least 2 photos that open in an image viewer.",
    )


def load_working_view(path: Path, short_side: int) -> torch.Tensor:
    """Photo as uint8 tensor (3, h, w) with its short side resized to ``short_side`` pixels.

    Read by :func:`~spdesk.core.imageio.read_image`, as protection reads it (ImageError when the
    photo cannot be used).
    """
    image = read_image(path).image.convert("RGB")
    width, height = image.size
    scale = short_side / min(width, height)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def load_working_views(
    paths: Sequence[Path], short_side: int
) -> tuple[list[Path], list[torch.Tensor], list[SkippedPhoto]]:
    """:func:`load_working_view` of each photo; those that cannot be read are skipped and
    returned with the reader's reason. Returns the read paths, their views and the skipped."""
    read: list[Path] = []
    views: list[torch.Tensor] = []
    skipped: list[SkippedPhoto] = []
    for path in paths:
        try:
            views.append(load_working_view(path, short_side))
        except ImageError as error:
            skipped.append(SkippedPhoto(path, error.message))
            continue
        read.append(path)
    return read, views, skipped


def split_photos(
    photos: list[Path], split: float, seed: int, max_photos: int | None
) -> tuple[list[Path], list[Path]]:
    """Seeded shuffle, optional cap, then the first ``split`` fraction trains."""
    order = np.random.default_rng(seed).permutation(len(photos))
    chosen = [photos[i] for i in order[: max_photos or len(photos)]]
    n_train = max(1, min(len(chosen) - 1, round(len(chosen) * split)))
    return chosen[:n_train], chosen[n_train:]


def dataset_fingerprint(photos: list[Path], root: Path) -> str:
    """sha256 prefix over relative names and byte sizes of the training photos."""
    digest = hashlib.sha256()
    for path in photos:
        digest.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def centre_crop(view: torch.Tensor, size: int) -> torch.Tensor:
    top = (view.shape[1] - size) // 2
    left = (view.shape[2] - size) // 2
    return view[:, top : top + size, left : left + size]


# Seeds a training takes: each step's generator is seeded by seed * 1_000_003 + step, which
# torch takes below 2**63 (a seed of 1e13 trained, then failed: "Overflow when unpacking long
# long"), and the held-out split is seeded by the split seed alone.
MAX_TRAINING_SEED = 2**32 - 1


def check_seeds(seed: int, split_seed: int) -> None:
    """Refuse a seed a training cannot use (ConfigError, before any work)."""
    for name, value in (("seed", seed), ("split_seed", split_seed)):
        if not 0 <= value <= MAX_TRAINING_SEED:
            raise ConfigError(f"{name} must be from 0 to {MAX_TRAINING_SEED}, got {value}.")


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step + 1)


def random_crops(
    views: list[torch.Tensor], batch: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """A minibatch (batch, 3, size, size) in [0, 1] of random crops of random photos."""
    count = len(views)
    picks = torch.randperm(count, generator=generator)[: min(batch, count)].tolist()
    while len(picks) < batch:  # fewer photos than the batch: reuse with fresh crops
        picks.append(int(torch.randint(0, count, (), generator=generator)))
    crops = []
    for index in picks:
        view = views[index]
        top = int(torch.randint(0, view.shape[1] - size + 1, (), generator=generator))
        left = int(torch.randint(0, view.shape[2] - size + 1, (), generator=generator))
        crops.append(view[:, top : top + size, left : left + size])
    return torch.stack(crops).float() / 255


# --- validation -------------------------------------------------------------------------------
def clean_latents(encoder: Encoder, clean: torch.Tensor) -> list[torch.Tensor]:
    """E(x) of each ensemble member: what :func:`relative_distortion` compares against."""
    with torch.no_grad():
        return [member.encode(clean).mean for member in encoder.members]


def relative_distortion(
    encoder: Encoder,
    clean: torch.Tensor,
    delta: torch.Tensor,
    reference: Sequence[torch.Tensor] | None = None,
) -> float:
    """Mean over photos and ensemble members of ||E(x+δ) - E(x)|| / ||E(x)||; ``reference``
    (:func:`clean_latents` of ``clean``) saves encoding the clean photos again."""
    latents = reference if reference is not None else clean_latents(encoder, clean)
    values = []
    with torch.no_grad():
        for member, z in zip(encoder.members, latents, strict=True):
            z_p = member.encode((clean + delta).clamp(0, 1)).mean
            ratio = (z_p - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1).clamp_min(1e-8)
            values.append(float(ratio.mean()))
    return float(np.mean(values))


def random_baselines(shape: tuple[int, ...], eps: float, seed: int) -> dict[str, torch.Tensor]:
    """Same-budget random noise: uniform in ±eps and random ±eps signs (pixel units)."""
    generator = torch.Generator().manual_seed(seed + 7919)
    bound = eps / 255
    uniform = (torch.rand(shape, generator=generator) * 2 - 1) * bound
    signs = (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1) * bound
    return {"uniform": uniform, "sign": signs}


class _Trainer:
    """One run: holds the data, encoder, objectives and optimiser between steps."""

    def __init__(
        self,
        config: TrainConfig,
        encoder: Encoder,
        on_event: EventSink,
        photos: list[Path] | None = None,
        objectives: list[Objective] | None = None,
    ) -> None:
        """``photos`` and ``objectives``: when already found (:func:`training_photos`,
        :func:`training_objectives`)."""
        self.config = config
        self.encoder = encoder
        self.on_event = on_event
        self.device = encoder.device
        self.objectives = training_objectives(config) if objectives is None else objectives
        for objective in self.objectives:
            objective.check(encoder)
        self.robustness = Robustness.from_names(config.robust)
        root = Path(config.photos)
        self.train_paths, self.val_paths = split_photos(
            training_photos(root) if photos is None else photos,
            config.split, config.split_seed, config.max_photos,
        )  # fmt: skip
        self.train_paths, self.train_views, skipped = load_working_views(
            self.train_paths, config.size
        )
        _val_read, val_views, val_skipped = load_working_views(
            self.val_paths[: config.val_photos], config.size
        )
        self.skipped = (*skipped, *val_skipped)
        self.val_paths = [p for p in self.val_paths if p not in {s.path for s in val_skipped}]
        if not val_views and len(self.train_views) >= 2:  # every held-out photo was unreadable
            self.val_paths, val_views = [self.train_paths.pop()], [self.train_views.pop()]
        if not self.train_views or not val_views:
            raise too_few_readable(root, self.skipped)
        self.fingerprint = dataset_fingerprint(self.train_paths, root)
        self.val_batch = torch.stack([centre_crop(v, config.size) for v in val_views]).float() / 255
        self.val_batch = self.val_batch.to(self.device)
        began = time.monotonic()
        self.val_latents = clean_latents(encoder, self.val_batch)  # the same at every check
        # A check encodes the held-out photos three times (δ and two kinds of noise): the
        # time left counts it at that before the first check is timed.
        self.validation_guess_s = 3 * (time.monotonic() - began)
        self.baselines = {
            k: v.to(self.device)
            for k, v in random_baselines((3, config.size, config.size), config.eps, 0).items()
        }
        self.optim_config = config.optim_config(self.objectives)
        start = initial_delta(
            self.optim_config, (3, config.size, config.size), _step_generator(config.seed, -1)
        )
        self.optimizer = DeltaOptimizer(self.optim_config, start.to(self.device))
        self.validation: list[ValidationReport] = []

    def _batch_loss(self, delta: torch.Tensor, clean: torch.Tensor, transform: Any) -> torch.Tensor:
        perturbed = transform((clean + delta).clamp(0, 1))
        with torch.no_grad():
            reference = transform(clean)
        return objective_loss(self.objectives, self.encoder, perturbed, reference, BatchCache())

    def _part_loss(
        self, part: torch.Tensor, transform: Any
    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        def loss(delta: torch.Tensor, _step: int) -> torch.Tensor:
            return self._batch_loss(delta, part, transform)

        return loss

    def gradient(self, delta: torch.Tensor, step: int) -> tuple[float, torch.Tensor]:
        """Mean loss gradient over the step's minibatch (micro-batched if configured)."""
        generator = _step_generator(self.config.seed, step)
        clean = random_crops(self.train_views, self.config.batch, self.config.size, generator)
        transform = sample_transform(self.robustness, generator)
        clean = clean.to(self.device)
        chunk = self.config.micro_batch or len(clean)
        total_loss, total_grad = 0.0, torch.zeros_like(delta)
        for start in range(0, len(clean), chunk):
            part = clean[start : start + chunk]
            weight = len(part) / len(clean)
            loss, grad = loss_gradient(self._part_loss(part, transform))(delta, step)
            total_loss += loss * weight
            total_grad += grad * weight
        return total_loss, total_grad

    def _distortion(self, delta: torch.Tensor) -> float:
        return relative_distortion(self.encoder, self.val_batch, delta, self.val_latents)

    def validate(self) -> ValidationReport:
        delta = self.optimizer.delta
        report = ValidationReport(
            step=self.optimizer.step_index,
            distortion=self._distortion(delta),
            sign_distortion=self._distortion(self.baselines["sign"]),
            uniform_distortion=self._distortion(self.baselines["uniform"]),
        )
        self.validation.append(report)
        self.on_event(report)
        return report


class TrainClock:
    """The time left in a run: the steps left at the rate measured without the validations,
    plus the validations left (those every ``val_every`` steps and the final one) at their
    measured cost. The rate is timed from the first step reported on: that step also warms
    up (first passes, allocations) and took 2-3 steps' time, which made the early estimates
    high. Before the first validation is timed, one costs ``validation_guess_s`` (the trainer
    times encoding the held-out photos once, a third of a check), else ``val_photos / batch``
    steps. (Issue 14's re-timing: the ETA of every step alone said "0 s left" when the final
    validation was still to run; then a validation guessed at 2 steps took 5-6, and the
    estimate ran 1-4 s low until the first check.)"""

    def __init__(
        self,
        config: TrainConfig,
        first: int = 0,
        now: Callable[[], float] = time.monotonic,
        validation_guess_s: float | None = None,
        check_s: float = 0.0,
    ) -> None:
        self.config = config
        self.check_s = check_s  # the check after the last step, where its time is known
        self.first = first
        self.now = now
        self.validation_guess_s = validation_guess_s
        self.validations: list[float] = []
        self._timed_from: tuple[float, int, float] | None = None  # time, step, validations

    @contextlib.contextmanager
    def validating(self) -> Iterator[None]:
        """Time one validation (it is not a step)."""
        began = self.now()
        try:
            yield
        finally:
            self.validations.append(self.now() - began)

    def validations_left(self, done: int) -> int:
        """Validations still to run once step ``done`` is reported: every ``val_every`` steps
        from ``done`` on (the one at ``done`` runs right after its report), then the last."""
        every, steps = self.config.val_every, self.config.steps
        middle = (steps - 1) // every - (done - 1) // every if every else 0
        return max(0, middle) + 1

    def seconds_per_step(self, done: int) -> float | None:
        """The rate once step ``done`` is reported (call it at every step: the first call
        starts the timing); None until a step after the first was timed."""
        if self._timed_from is None:
            if done > self.first:
                self._timed_from = (self.now(), done, sum(self.validations))
            return None
        since, first, validated = self._timed_from
        steps = done - first
        if steps <= 0:
            return None
        return max(0.0, self.now() - since - (sum(self.validations) - validated)) / steps

    def validation_seconds(self, step_s: float) -> float:
        """What one validation costs: as measured, else the guess."""
        if self.validations:
            return sum(self.validations) / len(self.validations)
        if self.validation_guess_s is not None:
            return self.validation_guess_s
        return step_s * self.config.val_photos / self.config.batch

    def eta(self, done: int) -> float | None:
        """Seconds left after step ``done`` (call it at every step); None before a step after
        the first was timed."""
        step_s = self.seconds_per_step(done)
        if step_s is None:
            return None
        left = (self.config.steps - done) * step_s
        left += self.validations_left(done) * self.validation_seconds(step_s)
        return max(0.0, left + self.check_s)


# --- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path: Path, trainer: _Trainer) -> None:
    """Optimiser state + validation history, atomically (safetensors; no pickle)."""
    from safetensors.torch import save

    meta = {
        "resume_key": trainer.config.resume_key(),
        "settings": json.dumps(trainer.config.resumable_settings()),  # to name a mismatch
        "train_fingerprint": trainer.fingerprint,  # the photos it trained on
        "validation": json.dumps([_report_dict(r) for r in trainer.validation]),
    }
    atomic_write(path, save(trainer.optimizer.state_dict(), metadata=meta))
    trainer.on_event(CheckpointSaved(step=trainer.optimizer.step_index, path=path))


def is_training_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a file whose header is a training checkpoint's (it holds the
    resume key :func:`save_checkpoint` writes); False for anything else or unreadable."""
    return path.is_file() and checkpoint_header(path) is not None


def _check_checkpoint_place(path: Path, out: Path | None = None, resume: bool = False) -> None:
    """Refuse, before any step, a checkpoint that could never be written (a folder, a
    read-only place): the first checkpoint would otherwise end the run and lose its steps.
    Refuse too a checkpoint that would overwrite what is not a training checkpoint (a photo,
    a document, a damaged checkpoint) or the run's own ``out``: a checkpoint is written over
    whatever is there. A training checkpoint of another run may be replaced (started without
    resume, a run starts afresh; with resume, one of other settings is refused on loading)."""
    if path.is_dir():
        raise ConfigError(
            f"The checkpoint {shown(path)} is a folder; a checkpoint needs a file name.",
            hint=f"For example: --checkpoint {shown(path / 'run.ckpt.safetensors')}",
        )
    if out is not None and same_file(path, out):
        raise ConfigError(
            f"The checkpoint {shown(path)} is also where the perturbation is saved; they need "
            "two files.",
            hint=f"For example: --checkpoint {shown(out.with_name(out.stem + '.ckpt'))}"
            f"{out.suffix}",
        )
    if path.exists() and not is_training_checkpoint(path):
        if resume:
            raise ConfigError(
                f"Checkpoint {path.name} is damaged or not a checkpoint; cannot resume (nor "
                "write a checkpoint over it).",
                hint="Check the name; or give --checkpoint a new file name (or move or delete "
                "that file) and start afresh without --resume.",
            )
        raise ConfigError(
            f"{shown(path)} is already there and is not an spdesk training checkpoint (or is a "
            "damaged one); spdesk will not write a checkpoint over it.",
            hint="Give --checkpoint a new file name, or move or delete that file first.",
        )
    check_writable(path)


class PhotosChanged(ConfigError):
    """The checkpoint was trained on other photos than the folder now holds."""


class DamagedCheckpoint(ConfigError):
    """The checkpoint's header reads as a checkpoint's but what it holds cannot be resumed."""


def _state_problem(state: dict[str, torch.Tensor], config: TrainConfig) -> str | None:
    """What makes a checkpoint's tensors unfit to resume ``config`` from, in words; None when
    they are fit. A pattern of NaN would otherwise train every step at loss nan and fail only
    when saved; one beyond the budget would be measured, then refused when saved."""
    shape = (3, config.size, config.size)
    for name in ("delta", "exp_avg", "exp_avg_sq"):
        tensor = state.get(name)
        if tensor is None:
            return f"it holds no '{name}'"
        if tuple(tensor.shape) != shape:
            return f"its '{name}' is {_dims(tensor.shape)}, not {_dims(shape)}"
        if not bool(torch.isfinite(tensor).all()):
            return f"its '{name}' holds values that are not a number or infinite"
    return _pattern_problem(state["delta"], config) or _step_problem(state.get("step"), config)


def _pattern_problem(delta: torch.Tensor, config: TrainConfig) -> str | None:
    """Why a checkpoint's pattern is beyond the run's budget (a forged or damaged file: the
    optimiser takes it as it is, and the held-out check would measure a visible overlay)."""
    peak = float(delta.abs().max())
    if peak > config.eps / 255 + BOUND_TOLERANCE:
        return (
            f"its pattern reaches {peak * 255:.2f}/255, over the run's budget of {config.eps:g}/255"
        )
    return None


def _step_problem(step: torch.Tensor | None, config: TrainConfig) -> str | None:
    if step is None or step.numel() != 1 or step.dtype.is_floating_point:
        return "it holds no step count"
    if not 0 <= int(step.flatten()[0]) <= config.steps:
        return f"its step {int(step.flatten()[0])} is outside the run's 0 to {config.steps}"
    return None


_REPORT_FIGURES = ("distortion", "sign_distortion", "uniform_distortion")


def _validation_history(meta: dict[str, str]) -> list[ValidationReport]:
    """The held-out reports a checkpoint's header records. Reports that cannot be read (a
    damaged header, a report without its step or figures) are left out with a note in the log:
    the history is only a record, the run's state is in the tensors, and refusing the
    checkpoint for it would throw away the training (the app deletes a damaged one). A report
    may also hold figures this spdesk does not know (a later one may add some): they are left
    out."""
    try:
        records = json.loads(meta.get("validation", "[]"))
    except ValueError:
        records = None
    if not isinstance(records, list):
        log.warning("A checkpoint's held-out history is not readable: it is left out")
        return []
    kept = [report for report in map(_validation_report, records) if report is not None]
    if len(kept) < len(records):
        log.warning(
            "%d of a checkpoint's held-out reports are damaged: left out", len(records) - len(kept)
        )
    return kept


def _validation_report(record: object) -> ValidationReport | None:
    if not isinstance(record, dict) or not _is_count(record.get("step")):
        return None
    if not all(_is_figure(record.get(name)) for name in _REPORT_FIGURES):
        return None
    return ValidationReport(record["step"], *(float(record[name]) for name in _REPORT_FIGURES))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_figure(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def checkpoint_damage(path: Path, config: TrainConfig) -> str | None:
    """What makes the checkpoint at ``path`` unfit to resume ``config`` from (unreadable, not a
    checkpoint, damaged tensors), in words; None when it is fit (settings and photos are
    compared on loading)."""
    from safetensors.torch import load_file

    header = checkpoint_header(path)
    if header is None:
        return "it cannot be read as a checkpoint"
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for any damage
        return f"it cannot be read ({error})"
    return _state_problem(state, config)


def checkpoint_step(path: Path) -> int | None:
    """The step a checkpoint stopped at, or None when ``path`` is not a readable checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return int(handle.get_tensor("step").flatten()[0])
    except Exception:  # any unreadable file: the caller says less
        return None


def checkpoint_header(path: Path) -> dict[str, str] | None:
    """A checkpoint's header (its resume key, settings, photos), or None when ``path`` is not
    a readable training checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # any unreadable file
        return None
    return meta if "resume_key" in meta else None


def load_checkpoint(path: Path, trainer: _Trainer) -> None:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    def damaged(problem: object, what: str = "damaged or not a checkpoint") -> ConfigError:
        return DamagedCheckpoint(
            f"Checkpoint {path.name} is {what} ({problem}); cannot resume.",
            hint="Delete it and start afresh without --resume, or give another --checkpoint.",
        )

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise damaged(error) from error
    if meta.get("resume_key") != trainer.config.resume_key():
        differences = settings_differences(path, meta, trainer.config)
        named = f" ({'; '.join(differences)})" if differences else ""
        raise ConfigError(
            f"Checkpoint {path.name} was made with different training settings{named}; "
            "cannot resume.",
            hint="Use the checkpoint's settings, or start afresh without --resume.",
        )
    stored = meta.get("train_fingerprint")  # absent in checkpoints from before it was stored
    if stored is not None and stored != trainer.fingerprint:
        raise PhotosChanged(
            f"Checkpoint {path.name} was trained on other photos: the training photos in "
            f"{shown(Path(trainer.config.photos))} changed since (added, removed, renamed or "
            "resized files); cannot resume.",
            hint="Put the photos back as they were, or start afresh without --resume (the "
            "checkpoint is then replaced).",
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise damaged(error) from error
    problem = _state_problem(state, trainer.config)
    if problem:
        raise damaged(problem, "damaged")
    trainer.optimizer.load_state_dict(state)
    trainer.validation = _validation_history(meta)


def checkpoint_crop_size(path: Path) -> int | None:
    """The crop side a checkpoint was trained at (from its perturbation's shape), or None when
    ``path`` is not a readable checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            shape = handle.get_slice("delta").get_shape()
    except Exception:  # any unreadable file: the caller falls back to its default
        return None
    return int(shape[-1]) if len(shape) == 3 else None


def settings_differences(path: Path, meta: dict[str, str], config: TrainConfig) -> list[str]:
    """Each setting where ``config`` differs from the checkpoint's ("eps 8 in the checkpoint, 4
    now"). Checkpoints from before the settings were stored name only the crop size (from the
    delta's shape)."""
    try:
        stored = json.loads(meta["settings"])
    except (KeyError, ValueError):
        stored = None
    if not isinstance(stored, dict):  # an older or damaged header
        size = checkpoint_crop_size(path)
        stored = {"size": size} if size is not None else {}
    if "seed" in stored:  # a checkpoint that split by seed stores no split_seed of its own
        stored.setdefault("split_seed", stored["seed"])
    current = config.resumable_settings() | {"split_seed": config.split_seed}
    return [
        f"{name} {_shown_setting(stored[name])} in the checkpoint, "
        f"{_shown_setting(current[name])} now"
        for name in sorted(stored)
        if name in current and stored[name] != current[name]
    ]


def _shown_setting(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def _report_dict(report: ValidationReport) -> dict[str, float | int]:
    return {
        "step": report.step,
        "distortion": report.distortion,
        "sign_distortion": report.sign_distortion,
        "uniform_distortion": report.uniform_distortion,
    }


# --- the public entry point ---------------------------------------------------------------------
def build_metadata(
    config: TrainConfig, trainer: _Trainer, seconds_per_step: float
) -> dict[str, Any]:
    """The perturbation file's metadata: the frozen config plus provenance and figures."""
    config_fields = dataclasses.asdict(config)
    config_fields["robust"] = list(config.robust)
    # The folder's name, not where it is: a pattern may be shared, and its full path names the
    # user (their home folder) and how they file their photos.
    config_fields["photos"] = Path(config.photos).resolve().name
    last = trainer.validation[-1] if trainer.validation else None
    return {
        "name": config.name or f"{trainer.encoder.id}-eps{config.eps:g}",
        "description": config.description,
        "encoder": trainer.encoder.id,
        "encoder_hash": trainer.encoder.fingerprint,
        "objectives": [o.describe() for o in trainer.objectives],
        "optimizer": dataclasses.asdict(trainer.optim_config),
        "steps": trainer.optimizer.step_index,
        "transforms": list(trainer.robustness.names),
        "train_photos": len(trainer.train_paths),
        "val_photos": len(trainer.val_paths),
        "train_fingerprint": trainer.fingerprint,
        "validation": _report_dict(last) if last else None,
        "gain_over_sign": last.gain_over_sign if last else None,
        "seconds_per_step": seconds_per_step,
        "config": config_fields,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spdesk_version": __version__,
    }


def train_universal(
    config: TrainConfig,
    *,
    out: Path | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    encoder: Encoder | None = None,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
    force: bool = False,
    check: bool = False,
    on_photos_changed: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a universal perturbation; save it to ``out`` when given.

    Args:
        config: the run's settings (see :class:`TrainConfig`).
        out: where to save the ``.safetensors`` perturbation (None: do not save).
        checkpoint: checkpoint file, written every ``config.checkpoint_every`` steps, once the
            last step has run and on cancel; one that cannot be written (a full disk) is
            reported with CheckpointFailed and training goes on.
        resume: continue from ``checkpoint`` if it exists (settings and training photos must
            match: ConfigError otherwise, before any step).
        encoder: an already loaded encoder (else ``load_encoder(config.encoder, config.device)``).
        on_event: receives TrainStarted, TrainStep (loss, ETA), ValidationReport, CheckpointSaved,
            CheckpointFailed (``spdesk.core.events.training``).
        cancel: checked before every step; on cancel a checkpoint is written, then Cancelled raised.
        force: replace ``out`` even if it exists and is not a perturbation file (checked before
            any work, with the folder being writable: see ``check_destination``).
        check: also measure the result on held-out photos the product's way (emitting
            CheckingPattern first): its gain at a 512 px editor into ``result.product_gain``
            and the metadata's "product_gain", and where the ``eval`` extra is installed
            its visibility into ``result.visibility`` and "visibility" (``trained_pattern``).
        on_photos_changed: with ``resume``, a checkpoint trained on other photos of the
            folder is not resumed: this is called and the run starts afresh (its checkpoint
            replacing that one), as the library's own checkpoints are; without it,
            PhotosChanged (a ConfigError).

    Raises ConfigError before any work when ``checkpoint`` is ``out``, a folder, not writable,
    or a file there that is not a training checkpoint (see ``_check_checkpoint_place``).
    """
    if out is not None:
        check_destination(out, force=force)
    if checkpoint is not None:
        _check_checkpoint_place(checkpoint, out, resume)
    # An empty folder is said before the encoder loads.
    photos, left_out = training_photo_folder(Path(config.photos))
    objectives = training_objectives(config)  # and a model sds+ or advdm lacks
    encoder = encoder or load_encoder(
        config.encoder, config.device, checkpointing=config.checkpointing
    )
    trainer = _Trainer(config, encoder, on_event, photos, objectives)
    if resume and checkpoint is not None and checkpoint.is_file():
        try:
            load_checkpoint(checkpoint, trainer)
        except PhotosChanged:
            if on_photos_changed is None:
                raise
            log.warning("the photos changed since checkpoint %s: starting afresh", checkpoint)
            on_photos_changed()
    first = trainer.optimizer.step_index
    on_event(
        TrainStarted(
            train_photos=len(trainer.train_paths),
            val_photos=len(trainer.val_paths),
            steps=config.steps,
            encoder=encoder.id,
            resumed_from=first,
            skipped=trainer.skipped,
            left_out=left_out,
        )
    )
    # The check after the last step took 1.5-2 min on a CPU with SD 1.5's VAE: the time left
    # counts it where it was measured.
    check_s = (_check_seconds(encoder) or 0.0) if check else 0.0
    clock = TrainClock(
        config, first, validation_guess_s=trainer.validation_guess_s, check_s=check_s
    )
    started = time.monotonic()

    def after_step(done: int, loss: float) -> None:
        eta = clock.eta(done)
        on_event(TrainStep(done, config.steps, loss, eta, clock.seconds_per_step(done)))
        if config.val_every and done % config.val_every == 0 and done < config.steps:
            with clock.validating():
                trainer.validate()
        if (
            checkpoint is not None
            and config.checkpoint_every
            and done % config.checkpoint_every == 0
        ):
            _checkpoint_or_warn(checkpoint, trainer)

    seconds_per_step = 0.0  # measured once the steps have run
    try:
        run(trainer.optimizer, trainer.gradient, cancel=cancel, on_step=after_step)
        every = config.checkpoint_every
        written = bool(every) and config.steps % every == 0  # by after_step, at the last step
        if checkpoint is not None and first < config.steps and not written:
            _checkpoint_or_warn(checkpoint, trainer)  # the finished steps, kept until saved
        seconds_per_step = (time.monotonic() - started) / max(1, config.steps - first)
        if not trainer.validation or trainer.validation[-1].step != trainer.optimizer.step_index:
            trainer.validate()
        delta = trainer.optimizer.delta.detach().cpu().numpy().astype(np.float32)
        gain, seen = _check(delta, config.eps, trainer, on_event, cancel) if check else (None, None)
    except Cancelled as cancelled:  # a run cancelled while measuring resumes at its last step
        if checkpoint is not None:  # a full disk here must not cost a finished run its --out
            _checkpoint_or_warn(checkpoint, trainer)
        if out is not None and trainer.optimizer.step_index >= config.steps:
            raise _saved_unchecked(out, config, trainer, seconds_per_step) from cancelled
        raise
    metadata = build_metadata(config, trainer, seconds_per_step)
    if gain is not None:
        metadata["product_gain"] = dataclasses.asdict(gain)
    if seen is not None:
        metadata["visibility"] = dataclasses.asdict(seen)
    path = _save_result(out, delta, config, metadata, checkpoint) if out else None
    held_out = list(trainer.val_paths)
    return TrainResult(
        delta, metadata, trainer.validation, path, seconds_per_step, held_out, gain, seen
    )


def _checkpoint_or_warn(checkpoint: Path, trainer: _Trainer) -> None:
    """Write the checkpoint; one that cannot be written (a full disk) is reported and the run
    goes on: it ended the run, and with it the steps the checkpoint was there to keep."""
    try:
        save_checkpoint(checkpoint, trainer)
    except OutputError as error:
        log.warning("checkpoint %s not written: %s", checkpoint, error.message)
        step = trainer.optimizer.step_index
        trainer.on_event(CheckpointFailed(step, checkpoint, error.message))


def _save_result(
    out: Path,
    delta: np.ndarray,
    config: TrainConfig,
    metadata: dict[str, Any],
    checkpoint: Path | None,
) -> Path:
    """Save the trained pattern to ``out``. When that fails (a full disk) the training is not
    thrown away: the error says where it is kept, its checkpoint (``--resume`` saves it without
    training again) or, without one, a copy in the cache folder."""
    try:
        return save_perturbation(out, delta, eps=config.eps, metadata=metadata)
    except OutputError as error:
        kept = _kept_elsewhere(delta, config, metadata, checkpoint)
        raise with_outcome(error, kept) from error


def _kept_elsewhere(
    delta: np.ndarray, config: TrainConfig, metadata: dict[str, Any], checkpoint: Path | None
) -> str:
    """Where the finished training is kept when its ``--out`` could not be written, in words."""
    from spdesk.core.paths import cache_dir, ensure

    if checkpoint is not None and checkpoint_step(checkpoint) == config.steps:  # not an older one
        return (
            f"The training is kept in its checkpoint {checkpoint}: free some space and run the "
            "same command with --resume to save it without training again."
        )
    try:
        name = f"unsaved-{config.resume_key()[:12]}.safetensors"
        rescued = save_perturbation(
            ensure(cache_dir() / "training") / name, delta, eps=config.eps, metadata=metadata
        )
    except (OSError, OutputError) as error:
        log.warning("the trained pattern could not be kept anywhere: %s", error)
        return "It could not be kept elsewhere either: the training is lost."
    return f"The trained pattern is kept at {rescued}: copy it where you want it."


class CancelledWhileChecking(Cancelled):
    """Cancelled once every step had run (during the held-out figures): the trained pattern
    is finished and was saved, at ``path``, without them. Throwing it away would cost the
    whole run where no checkpoint was asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__("Cancelled during the final check: the trained pattern is saved.")
        self.path = path


def _saved_unchecked(
    out: Path, config: TrainConfig, trainer: _Trainer, seconds_per_step: float
) -> CancelledWhileChecking:
    delta = trainer.optimizer.delta.detach().cpu().numpy().astype(np.float32)
    metadata = build_metadata(config, trainer, seconds_per_step)
    metadata["checked"] = "cancelled"  # no product_gain nor visibility: spdesk eval measures it
    return CancelledWhileChecking(save_perturbation(out, delta, eps=config.eps, metadata=metadata))


def _check_seconds(encoder: Encoder) -> float | None:
    """The check's estimated seconds with ``encoder`` on its device, by its network (a TAESD
    file given by its path is TAESD); None where not measured."""
    return pattern_check_seconds(measured_as(encoder) or "", encoder.device.type)


def _check(
    delta: np.ndarray,
    eps: float,
    trainer: _Trainer,
    on_event: EventSink,
    cancel: CancelToken | None,
) -> tuple[ProductGain | None, PatternVisibility | None]:
    """The result's gain at SD 1.5's editor size and its visibility, on held-out photos, each
    stage's progress reported (CheckStep: a minute or two on a CPU with SD 1.5's VAE)."""
    photos = trainer.val_paths
    count = min(len(photos), MAX_PHOTOS)
    on_event(CheckingPattern(count, EDITOR_SIZE, _check_seconds(trainer.encoder)))
    effect = _check_progress("effect", count, on_event)
    gain = pattern_gain(
        delta, eps, photos, trainer.encoder, size=EDITOR_SIZE, cancel=cancel, on_photo=effect
    )
    product = None if gain is None else ProductGain(gain, EDITOR_SIZE)
    seen = None
    if visibility_available():
        looked = _check_progress("visibility", count, on_event)
        seen = pattern_visibility(delta, eps, photos, cancel=cancel, on_photo=looked)
    return product, seen


def _check_progress(stage: str, total: int, on_event: EventSink) -> Callable[[int], None]:
    """Say that the check's ``stage`` begins; the callback that reports each photo measured,
    with the time the stage has left at its pace so far."""
    began = time.monotonic()
    on_event(CheckStep(stage, 0, total))

    def measured(done: int) -> None:
        pace = (time.monotonic() - began) / max(done, 1)
        on_event(CheckStep(stage, done, total, max(0.0, pace * (total - done))))

    return measured
