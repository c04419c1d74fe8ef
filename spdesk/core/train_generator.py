"""Training the protection generator (:mod:`spdesk.core.generator`) against an encoder.

Each step takes random crops of training photos, draws two secret-noise images per crop, and asks
the generator for a shaped delta for each. The loss has two parts:

- strength: the relative latent distortion ||E(T(x+δ)) - E(T(x))||² / ||E(T(x))||², maximised,
  through a random editor transform T (the editor's resize by 0.5-1.4x, and sometimes JPEG or a
  slight blur), averaged over the encoder's members (an ensemble such as TAESD + TAEF2 trains for
  several latent spaces at once; the relative measure makes them comparable);
- secrecy: the squared cosine similarity of the two deltas of one photo, minimised, so the
  perturbation depends on the secret noise and not only on the photo (what does not depend on
  the noise could be regenerated from the protected photo by anyone with these weights).

The generator's weights are optimised with Adam (a network's weights, not a delta: this is not the
delta loop of :mod:`spdesk.core.optim`). Steps are seeded by (seed, step), so a run is
reproducible. The result is a safetensors file (:func:`spdesk.core.generator_file.save_generator`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spdesk.core.encoders import Encoder
from spdesk.core.errors import Cancelled, ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.events.training import SkippedPhoto
from spdesk.core.generator import (
    DeltaGenerator,
    GeneratorConfig,
    generate_delta,
    noise_shape,
)
from spdesk.core.generator_file import NETWORK_LIMITS
from spdesk.core.resample import lanczos_resize
from spdesk.core.shaping import Shaping, compose_delta
from spdesk.core.train import (
    check_seeds,
    load_working_views,
    random_crops,
    split_photos,
    too_few_readable,
    training_photos,
)

GRID = 8
# The held-out check's line between fine-grained and coarse files: every fine-grained generator
# (SSIMULACRA2 67-72 on held-out photos) scores 0.004-0.007, the four coarse ones (29-49) score
# 0.034-0.063, their first stages 0.004-0.014 against 0.039-0.098 (random signs: 0.013;
# benchmarks/bench_generator_grain.py, resources/generators/RECIPE.md). It does not rank
# fine-grained files against each other.
COARSE_SHARE = 0.02
CHECK_PHOTOS, CHECK_CROPS = 8, 48
EDITOR_FILTERS = ("bilinear", "lanczos", "mixed")


@dataclass(frozen=True)
class GeneratorTrainConfig:
    """Settings of a generator training run (stored in the generator file's metadata).

    Attributes:
        eps: budget in 8-bit steps (the generator is trained at, and ships with, this budget).
        steps, batch, size: optimisation steps, crops per step, crop side in pixels.
        view: short side the photos are loaded at before cropping (ImageNet-like photos); a
            larger ``size`` loads them at ``size`` (see :attr:`load_side`).
        lr: Adam learning rate (cosine decay to 5% of it).
        secrecy: weight of the noise-dependence (squared cosine) term.
        visibility: weight of the visibility term: the share of the delta's energy left after
            a Gaussian blur (sigma 2 px). Smooth, blotchy changes are what perceptual metrics
            and people see most; fine-grained ones hide in the photo's own grain.
        editor_scale: range of the editor's resize factor after protection.
        editor_filter: how that editor resizes: ``"bilinear"`` (torch's, antialiased when
            shrinking), ``"lanczos"`` (Pillow's, as diffusers' image processor resizes) or
            ``"mixed"`` (either, drawn per step: Lanczos alone trains a finer delta, which a
            blur or a 0.5x downscale removes).
        lanczos_share: with ``"mixed"``, the odds that a step draws Lanczos (0.5: even odds;
            resources/generators/RECIPE.md has what another share measured).
        ssim: weight of a structural-similarity term: 1 - SSIM of the protected vs the clean
            luminance, at full size and at half size (a differentiable stand-in for what
            SSIMULACRA2 measures, which is not differentiable).
        jpeg, blur: probability that a step also JPEG-compresses (quality ``jpeg_quality`` to
            95) or blurs (sigma 0.3-1.2) what the encoder sees.
        jpeg_quality: lowest JPEG quality a step may use.
        jpeg_first: the share of JPEG steps that compress before the editor's resize, at the
            photo's own size, as a platform recompresses a posted photo before an editor
            fetches it (and as the evaluation's JPEG attacks do); the others compress what the
            editor resized. 0 (the default) keeps the draws of earlier runs.
        time_limit: seconds of training at most (0: no limit). The learning-rate schedule
            follows whichever runs out first, steps or time, so a time-boxed run on a fast
            GPU still ends with a decayed rate.
        seed: seeds every step (crops, editors, noises).
        split, max_photos: as for universal training (same split function).
        split_seed: seeds which photos train and which are held out. It is kept apart from
            ``seed`` so that a run with another seed (a second stage, a continuation) holds out
            the same photos: with one seed for both, the bundled recipe's second stage
            (``--seed 1``) trained on 200 of the 300 photos the benchmark holds out.
    """

    eps: float = 8.0
    steps: int = 800
    batch: int = 6
    size: int = 128
    view: int = 384
    lr: float = 2e-3
    secrecy: float = 0.5
    visibility: float = 0.0
    ssim: float = 0.0
    editor_scale: tuple[float, float] = (0.5, 1.4)
    editor_filter: str = "bilinear"
    lanczos_share: float = 0.5
    jpeg: float = 0.3
    blur: float = 0.2
    jpeg_quality: int = 60
    jpeg_first: float = 0.0
    time_limit: float = 0.0
    seed: int = 0
    split: float = 0.7
    split_seed: int = 0
    max_photos: int | None = None
    shaping: Shaping = field(default_factory=Shaping)
    network: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        """Refuse settings out of range (ConfigError, starting with the setting's name)."""
        low, high = self.editor_scale
        checks = [
            # Below one whole step nothing it writes changes a pixel (protect refuses it).
            ("eps", 1 <= self.eps <= 64, "in [1, 64] 8-bit steps"),
            ("steps", 1 <= self.steps <= 100_000, "1..100000"),
            ("batch", 1 <= self.batch <= 256, "1..256"),
            ("size", 32 <= self.size <= 1024 and self.size % 8 == 0,
             "a multiple of 8 from 32 to 1024"),
            ("lr", 0 < self.lr < math.inf, "positive and finite"),
            ("ssim", 0 <= self.ssim < math.inf, ">= 0 and finite"),
            ("editor_scale", 0.1 <= low <= high <= 4, "0.1 <= LOW <= HIGH <= 4"),
            ("editor_filter", self.editor_filter in EDITOR_FILTERS,
             f"one of {', '.join(EDITOR_FILTERS)}"),
            ("lanczos_share", 0 <= self.lanczos_share <= 1, "in [0, 1]"),
            ("lanczos_share", self.lanczos_share == 0.5 or self.editor_filter == "mixed",
             "0.5 unless the editor filter is mixed (the share of steps that draw Lanczos)"),
            ("secrecy", 0 <= self.secrecy < math.inf, ">= 0 and finite"),
            ("visibility", 0 <= self.visibility < math.inf, ">= 0 and finite"),
            ("jpeg", 0 <= self.jpeg <= 1, "in [0, 1]"),
            ("blur", 0 <= self.blur <= 1, "in [0, 1]"),
            ("jpeg_quality", 10 <= self.jpeg_quality <= 95, "10..95"),
            ("jpeg_first", 0 <= self.jpeg_first <= 1, "in [0, 1]"),
            ("time_limit", self.time_limit >= 0, ">= 0"),
            ("split", 0 < self.split < 1, "in (0, 1)"),
            ("view", 32 <= self.view <= 4096, "32..4096 pixels"),
            ("max_photos", self.max_photos is None or self.max_photos >= 1, "None or >= 1"),
            *(
                (name, low <= getattr(self.network, name) <= high, f"{low}..{high}")
                for name, (low, high) in NETWORK_LIMITS.items()
            ),
        ]  # fmt: skip
        for name, ok, allowed in checks:
            if not ok:
                value = getattr(self.network if name in ("width", "blocks") else self, name)
                raise ConfigError(f"{name} must be {allowed}, got {value!r}.")
        check_seeds(self.seed, self.split_seed)

    @property
    def load_side(self) -> int:
        """The short side photos are loaded at: ``view``, or ``size`` when crops are larger
        (a crop cannot be larger than the photo it is cut from). Sizes up to ``view`` load as
        before, so earlier recipes draw the same crops."""
        return max(self.view, self.size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _editor(generator: torch.Generator, config: GeneratorTrainConfig) -> Callable[..., Any]:
    """A random editor transform with fixed parameters (applied alike to clean and protected)."""
    low, high = config.editor_scale
    scale = low + (high - low) * float(torch.rand((), generator=generator))
    use_jpeg = float(torch.rand((), generator=generator)) < config.jpeg
    quality = float(torch.randint(config.jpeg_quality, 96, (), generator=generator))
    use_blur = float(torch.rand((), generator=generator)) < config.blur
    sigma = 0.3 + 0.9 * float(torch.rand((), generator=generator))
    lanczos = config.editor_filter == "lanczos"
    if config.editor_filter == "mixed":  # drawn only here, so the other filters' draws stay
        lanczos = float(torch.rand((), generator=generator)) < config.lanczos_share
    jpeg_first = False
    if config.jpeg_first > 0:  # drawn only here, as above
        jpeg_first = float(torch.rand((), generator=generator)) < config.jpeg_first

    def compress(x: torch.Tensor) -> torch.Tensor:
        from kornia.enhance import jpeg_codec_differentiable

        return jpeg_codec_differentiable(x.clamp(0, 1), x.new_tensor([quality]))

    def edit(x: torch.Tensor) -> torch.Tensor:
        if use_jpeg and jpeg_first:
            x = compress(x)
        size = [max(GRID, round(side * scale / GRID) * GRID) for side in x.shape[-2:]]
        if lanczos:
            x = lanczos_resize(x, (size[0], size[1]))
        else:
            x = F.interpolate(
                x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False
            )
        if use_blur:
            from kornia.filters import gaussian_blur2d

            x = gaussian_blur2d(x, (5, 5), (sigma, sigma), border_type="reflect")
        if use_jpeg and not jpeg_first:
            x = compress(x)
        return x

    return edit


def _relative_sq(
    encoder: Encoder, edited: torch.Tensor, clean_latent: torch.Tensor
) -> torch.Tensor:
    z = encoder.encode(edited).mean
    return ((z - clean_latent) ** 2).flatten(1).sum(1) / (clean_latent**2).flatten(1).sum(1)


def _ensemble_relative_sq(
    encoder: Encoder, edit: Callable[..., Any], clean: torch.Tensor, protected: torch.Tensor
) -> torch.Tensor:
    """Per-photo relative squared latent distortion, averaged over the encoder's members."""
    edited_clean, edited = edit(clean), edit(protected)
    total = clean.new_zeros(len(clean))
    for member in encoder.members:
        with torch.no_grad():
            clean_latent = member.encode(edited_clean).mean
        total = total + _relative_sq(member, edited, clean_latent)
    return total / len(encoder.members)


def _progress(step: int, started: float, config: GeneratorTrainConfig) -> float:
    """Share of the run done, in [0, 1]: by steps, or by time when that runs out first."""
    done = step / config.steps
    if config.time_limit > 0:
        done = max(done, (time.monotonic() - started) / config.time_limit)
    return min(done, 1.0)


def low_frequency_share(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean squared Gaussian-blurred (sigma 2) delta, in units of the budget squared: about
    0.02 for random signs, near 1 for a smooth change at full budget."""
    from kornia.filters import gaussian_blur2d

    smooth = gaussian_blur2d(delta, (9, 9), (2.0, 2.0), border_type="reflect")
    return (smooth / (eps / 255.0)).pow(2).mean()


@torch.no_grad()
def held_out_coarseness(
    model: DeltaGenerator,
    photos: list[Path],
    config: GeneratorTrainConfig,
    device: torch.device,
    skipped: list[SkippedPhoto] | None = None,
) -> dict[str, float | int] | None:
    """How coarse the trained generator's deltas are on held-out photos, beside random signs
    under the same shaping: the visibility term's :func:`low_frequency_share` of a fixed set of
    crops. A cheap, seeded stand-in for measuring visibility: the same recipe can end
    fine-grained or coarse and far more visible, depending on its seed (above
    :data:`COARSE_SHARE`, measure the file before using it). None without readable photos;
    the unreadable ones are added to ``skipped``."""
    _, views, unreadable = load_working_views(photos[:CHECK_PHOTOS], config.load_side)
    if skipped is not None:
        skipped.extend(unreadable)
    if not views:
        return None
    rng = torch.Generator().manual_seed(config.split_seed)
    crops = random_crops(views, CHECK_CROPS, config.size, rng).to(device)
    noise = torch.randn((len(crops), *noise_shape(config.size, config.size)), generator=rng)
    delta = generate_delta(model, crops, noise.to(device), config.eps, config.shaping)
    signs = torch.randn(crops.shape, generator=rng).sign().to(device)
    reference = compose_delta(signs, crops, config.eps, config.shaping)
    return {
        "low_frequency_share": float(low_frequency_share(delta, config.eps)),
        "random_signs": float(low_frequency_share(reference, config.eps)),
        "photos": len(views),
    }


def structural_loss(clean: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - SSIM between clean and protected luminance, at full and half size."""
    from kornia.metrics import ssim

    from spdesk.core.shaping import luminance

    a, b = luminance(clean), luminance(protected)
    full = 1 - ssim(a, b, 7).mean()
    half = 1 - ssim(F.avg_pool2d(a, 2), F.avg_pool2d(b, 2), 7).mean()
    return (full + half) / 2


@dataclass
class GeneratorStep:
    """What one step reports."""

    step: int
    steps: int
    distortion: float  # mean relative latent distortion (not squared) of the step's batch
    similarity: float  # mean cosine similarity of the two deltas of one photo
    seconds: float


def train_generator(
    photos: Path,
    encoder: Encoder,
    config: GeneratorTrainConfig = GeneratorTrainConfig(),
    *,
    on_step: Callable[[GeneratorStep], None] | None = None,
    cancel: CancelToken | None = None,
    stop: CancelToken | None = None,
    start: dict[str, torch.Tensor] | None = None,
    found: list[Path] | None = None,
) -> tuple[DeltaGenerator, dict[str, Any]]:
    """Train a generator on the photos in ``photos``; returns it and its training record.
    ``found``: the folder's photos when already found (:func:`training_photos`).

    ``cancel`` abandons the run (raises Cancelled); ``stop`` ends it after the current step and
    returns what was learnt, as ``time_limit`` does (Ctrl+C: minutes of training are not lost).
    Stopped before the first step, there is nothing to return: Cancelled.
    ``start``: weights to start from (a generator trained before, e.g. to shape it further).
    """
    torch.manual_seed(config.seed)
    train_paths, val_paths = split_photos(
        training_photos(photos) if found is None else found,
        config.split, config.split_seed, config.max_photos,
    )  # fmt: skip
    train_paths, views, skipped = load_working_views(train_paths, config.load_side)
    if not views:  # the held-out photos too, to say how many of the folder's cannot be read
        _, _, held_out = load_working_views(val_paths, config.load_side)
        raise too_few_readable(photos, [*skipped, *held_out])
    model = DeltaGenerator(config.network).to(encoder.device)
    if start is not None:
        model.load_state_dict(start)
    if encoder.device.type == "cuda":  # TF32 convolutions: several times faster, ample precision
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[GeneratorStep] = []
    run_started = time.monotonic()
    stopped = False
    for step in range(config.steps):
        if cancel is not None:
            cancel.check()
        if stop is not None and stop.cancelled:
            if not history:
                raise Cancelled("Stopped before the first training step; nothing was saved.")
            stopped = True
            break
        progress = _progress(step, run_started, config)
        if step and progress >= 1.0:
            break
        for group in optimiser.param_groups:  # cosine decay to 5% over steps or time
            group["lr"] = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        record = _step(model, optimiser, views, encoder, config, step)
        history.append(record)
        if on_step is not None:
            on_step(record)
    model.eval()
    last = history[-50:]  # at least one: step 0 always runs
    summary = {
        "train_photos": len(train_paths),
        "val_photos": len(val_paths),
        "skipped_photos": [{"name": s.path.name, "reason": s.reason} for s in skipped],
        "final_distortion": sum(h.distortion for h in last) / len(last),
        "final_similarity": sum(h.similarity for h in last) / len(last),
        "seconds_per_step": sum(h.seconds for h in history) / len(history),
        "steps_done": len(history),
        "stopped_early": stopped,  # by ``stop``, before the steps or the time limit ran out
        "time_limit_reached": not stopped and len(history) < config.steps,
        "seconds": round(time.monotonic() - run_started, 1),
    }
    held_out_skipped: list[SkippedPhoto] = []
    summary["held_out_check"] = held_out_coarseness(
        model, val_paths, config, encoder.device, held_out_skipped
    )
    summary["skipped_held_out"] = [
        {"name": s.path.name, "reason": s.reason} for s in held_out_skipped
    ]
    return model, summary


def _step(
    model: DeltaGenerator,
    optimiser: torch.optim.Optimizer,
    views: list[torch.Tensor],
    encoder: Encoder,
    config: GeneratorTrainConfig,
    step: int,
) -> GeneratorStep:
    """One training step, on crops, editor and noises drawn from a seed of ``step``."""
    started = time.monotonic()
    rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 1)
    clean = random_crops(views, config.batch, config.size, rng).to(encoder.device)
    edit = _editor(rng, config)
    shape = (len(clean), *noise_shape(config.size, config.size))
    noises = [torch.randn(shape, generator=rng).to(encoder.device) for _ in range(2)]
    deltas = [generate_delta(model, clean, z, config.eps, config.shaping) for z in noises]
    # The encoder (the costly part) sees one delta; the second only serves the secrecy term.
    protected = (clean + deltas[0]).clamp(0, 1)
    strength = _ensemble_relative_sq(encoder, edit, clean, protected)
    similarity = F.cosine_similarity(deltas[0].flatten(1), deltas[1].flatten(1), dim=1)
    loss = -strength.mean() + config.secrecy * (similarity**2).mean()
    if config.visibility:
        loss = loss + config.visibility * low_frequency_share(deltas[0], config.eps)
    if config.ssim:
        loss = loss + config.ssim * structural_loss(clean, protected)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimiser.step()
    return GeneratorStep(
        step + 1,
        config.steps,
        float(strength.detach().sqrt().mean()),
        float(similarity.detach().mean()),
        time.monotonic() - started,
    )
