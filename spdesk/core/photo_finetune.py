"""Per-photo fine-tuning of the photo-specific protection, inside its perceptual budget.

Photo mode's generator writes each photo's perturbation in one pass. Fine-tuning starts from that
output and takes a few signed-gradient steps against an encoder, on the generator's *raw* output
(luminance, red-green and yellow-blue in [-1, 1]) rather than on pixels: the result goes through
the same :func:`~spdesk.core.shaping.compose_delta` as the generator's, so it keeps the photo's
texture mask, its small colour share and the ±eps bound exactly. Shaping a finished perturbation
throws its strength away; optimising inside the shaping lets the steps put the energy where the
mask allows it.

The loss is what an editor does: the protected view resized to each editor size (short side 256
and 512 by default) with Pillow's Lanczos filter, as diffusers' image processor resizes
(:mod:`spdesk.core.resample`), and encoded; the relative squared distance of its
latent from the clean photo's, averaged over sizes and over an ensemble's members. The start
comes from the install's secret key and the photo (as in photo mode), so fine-tuned photos share
no pattern an attacker could average out.

Measured on 6 held-out ImageNet photos against TAESD (8 steps, step 0.5 of the raw range):
SSIMULACRA2 73.7 and latent gain 1.68x / 1.25x over random ±8 signs at 256 / 512 px editors,
against 71.1 and 1.11x / 0.85x for the generator alone (``benchmarks/bench_protection.py``;
then with a bilinear resize in the loss). Resizing as the editor does made 4 steps 2-4% stronger
on 12 photos (``benchmarks/bench_editor_filter.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spdesk.core.apply import Figures
from spdesk.core.batches import free_accelerator_memory
from spdesk.core.encoders import Encoder
from spdesk.core.errors import ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.optim import DeltaOptimizer, OptimConfig, loss_gradient, run
from spdesk.core.photo_protect import WORKING_SIDE, GeneratorProtector
from spdesk.core.resample import lanczos_resize
from spdesk.core.shaping import Shaping, compose_delta

EDITOR_SIDES = (256, 512)  # the short sides SD editors work at (SD 1.x: 512; quick edits: 256)
FIRST_STEP = 0.5  # of the raw range [-1, 1]; cosine decay to a tenth of it
GRID = 8  # latent stride: editor views are cut to multiples of it
MAX_EDITOR_ASPECT = 4  # an editor's view is at most 4 short sides long (2048 px at 512)


Resize = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def editor_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) of a view resized to short side ``side``, cut to the latent grid; the
    long side stops at ``MAX_EDITOR_ASPECT`` x ``side`` (a 4000x20 panorama's 512 px view would
    be 102400 px long, and its encoder gradient would need tens of GB)."""
    scale = min(side / min(height, width), MAX_EDITOR_ASPECT * side / max(height, width))
    return (
        max(GRID, round(height * scale) // GRID * GRID),
        max(GRID, round(width * scale) // GRID * GRID),
    )


def _relative_sq(encoder: Encoder, image: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Relative squared latent distance of each photo of a batch, summed over the batch: each
    photo's gradient is the one it would get alone."""
    latent = encoder.encode(image).mean
    distance = ((latent - clean) ** 2).flatten(1).sum(1)
    return (distance / (clean**2).flatten(1).sum(1).clamp_min(1e-12)).sum()


class PhotoFineTuner(GeneratorProtector):
    """Photo mode's perturbation, fine-tuned on each photo against ``encoder``.

    Args:
        path: the generator file (its output is the start).
        encoder: encoder (or ensemble) to push off course; the generator runs on its device.
        steps: signed-gradient steps per photo (>= 1).
        strength: budget in 8-bit steps; None keeps the generator file's.
        key: the secret key (default: this install's key).
        working_side: short side of the view the perturbation is written at (512).
        editor_sides: short sides of the editor views the loss looks at.
        shaping: another perceptual budget than the generator file's (for benchmarks that
            measure what the budget costs; the product always uses the file's).
        jpeg_quality: also push the editor views of the protected photo after a JPEG round trip
            of this quality (differentiable, kornia) away from the same round trip of the clean
            photo, so the protection survives a re-save; None: clean views only.
        batch_size: photos of one view size fine-tuned together by :meth:`apply_batch` (a GPU
            runs 8 in about the time of one); a batch that runs out of GPU memory is split.
        first_step: size of the first signed step, as a share of the raw range [-1, 1].
        editor_resize: how the loss resizes the photo to each editor's view (default: Pillow's
            Lanczos, as diffusers does; benchmarks compare others).
    """

    def __init__(
        self,
        path: Path,
        encoder: Encoder,
        steps: int,
        strength: float | None = None,
        *,
        key: bytes | None = None,
        working_side: int = WORKING_SIDE,
        editor_sides: Sequence[int] = EDITOR_SIDES,
        shaping: Shaping | None = None,
        jpeg_quality: int | None = None,
        batch_size: int = 1,
        first_step: float = FIRST_STEP,
        editor_resize: Resize = lanczos_resize,
    ) -> None:
        if not 1 <= steps <= 10_000:
            raise ConfigError(f"Fine-tuning steps must be between 1 and 10000, got {steps}.")
        if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"JPEG quality must be between 1 and 100, got {jpeg_quality}.")
        if not 0 < first_step <= 2:
            raise ConfigError(f"The first step must be in (0, 2] of the raw range: {first_step}.")
        if not editor_sides or min(editor_sides) < GRID:
            raise ConfigError(f"Editor sizes must be {GRID} pixels or more, got {editor_sides}.")
        super().__init__(path, strength, key=key, working_side=working_side, device=encoder.device)
        if shaping is not None:
            self.shaping = shaping
        self.encoder = encoder
        self.steps = steps
        self.editor_sides = tuple(editor_sides)
        self.jpeg_quality = jpeg_quality
        self.batch_size = max(1, batch_size)
        self.first_step = first_step
        self.editor_resize = editor_resize
        self.cancel: CancelToken | None = None
        self.on_step: Callable[[int, int], None] | None = None

    def apply_batch(
        self, images: Sequence[Image.Image], batch_size: int | None = None
    ) -> list[tuple[Image.Image, Figures]]:
        """:meth:`apply` for several photos, those of one view size fine-tuned together."""
        return super().apply_batch(images, batch_size or self.batch_size)

    def working_deltas(self, views: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Fine-tuned deltas of views of one size; a batch that runs out of GPU memory is split
        in two, and later batches are no larger than the half."""
        limit = self.batch_size  # read once: a split below lowers it
        if len(views) > limit:  # more than the last batch that fitted
            return [*self.working_deltas(views[:limit]), *self.working_deltas(views[limit:])]
        try:
            return super().working_deltas(views)
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError only from torch 2.5
            if len(views) == 1:
                raise
        free_accelerator_memory()
        self.batch_size = max(1, len(views) // 2)
        return self.working_deltas(views)

    def refine(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """``steps`` signed-gradient steps on the raw output (the shared optimisation loop on
        raw * eps/255, so its L-inf projection is the raw range [-1, 1])."""
        height, width = x.shape[-2:]
        sizes = sorted({editor_size(height, width, side) for side in self.editor_sides})
        members = self.encoder.members
        with torch.no_grad():
            clean = {
                (size, index, way): member.encode(self.editor_resize(view, size)).mean
                for way, view in self._ways(x).items()
                for size in sizes
                for index, member in enumerate(members)
            }
        bound = self.eps / 255

        def loss(scaled: torch.Tensor, step: int) -> torch.Tensor:
            del step
            protected = (x + compose_delta(scaled / bound, x, self.eps, self.shaping)).clamp(0, 1)
            total = protected.new_zeros(())
            for way, image in self._ways(protected).items():
                for size in sizes:
                    view = self.editor_resize(image, size)
                    for index, member in enumerate(members):
                        total = total + _relative_sq(member, view, clean[(size, index, way)])
            return -total / len(clean)  # the loop minimises

        config = OptimConfig(
            optimizer="pgd", eps=self.eps, steps=self.steps, step_size=self.first_step * self.eps
        )
        optimiser = DeltaOptimizer(config, raw * bound)
        on_step = self.on_step
        position, batches = self.batch_position
        scaled = run(
            optimiser,
            loss_gradient(loss),
            cancel=self.cancel,
            on_step=None
            if on_step is None
            else lambda done, _: on_step(position * self.steps + done, batches * self.steps),
        )
        return (scaled / bound).clamp(-1, 1)

    def _ways(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The photo as an editor may receive it: as is, and re-saved as a JPEG if asked."""
        ways = {"as is": image}
        if self.jpeg_quality is not None:
            from kornia.enhance import jpeg_codec_differentiable

            quality = image.new_tensor([float(self.jpeg_quality)])
            ways["jpeg"] = jpeg_codec_differentiable(image, quality)
        return ways
