"""Expectation over transformation (EOT): random, differentiable edits an attacker might apply.

Each is switchable: ``jpeg`` (kornia's differentiable JPEG at a random quality), ``resize`` (the
editor's downsizing, antialiased, to a random scale aligned to the 8-pixel latent grid), ``crop``
(a random crop that shifts the pattern against the latent grid) and ``blur`` (slight Gaussian blur).
A sampled transform has fixed parameters, so the clean and the perturbed batch get the same edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spdesk.core.errors import ConfigError

TRANSFORM_NAMES = ("jpeg", "resize", "crop", "blur")
GRID = 8

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Robustness:
    """Which random transforms training sees, and their ranges.

    Attributes:
        jpeg: differentiable JPEG; quality drawn uniformly from ``jpeg_quality`` (1..100).
        resize: downsizing by a factor drawn from ``resize_scale`` (0 < low <= high <= 1).
        crop: crop up to ``max_shift`` pixels (multiple of 8) off the edges, shifting the grid.
        blur: Gaussian blur with sigma drawn from ``blur_sigma`` (pixels).
    """

    jpeg: bool = False
    resize: bool = False
    crop: bool = False
    blur: bool = False
    jpeg_quality: tuple[int, int] = (70, 95)
    resize_scale: tuple[float, float] = (0.5, 1.0)
    max_shift: int = 8
    blur_sigma: tuple[float, float] = (0.3, 1.0)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Robustness:
        """From names such as ``["jpeg", "crop"]``; unknown names raise ConfigError."""
        chosen = {name.strip().lower() for name in names if name.strip()}
        chosen.discard("none")
        unknown = chosen - set(TRANSFORM_NAMES)
        if unknown:
            raise ConfigError(
                f"Unknown robustness transform(s): {', '.join(sorted(unknown))}.",
                hint=f"Choose from: {', '.join(TRANSFORM_NAMES)} (comma-separated).",
            )
        return cls(
            jpeg="jpeg" in chosen,
            resize="resize" in chosen,
            crop="crop" in chosen,
            blur="blur" in chosen,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in TRANSFORM_NAMES if getattr(self, name))

    @property
    def active(self) -> bool:
        return bool(self.names)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _crop(generator: torch.Generator, max_shift: int) -> Transform:
    top = int(torch.randint(0, max_shift + 1, (), generator=generator))
    left = int(torch.randint(0, max_shift + 1, (), generator=generator))

    def crop(x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2] - max_shift, x.shape[-1] - max_shift
        return x[..., top : top + height, left : left + width]

    return crop


def _resize(generator: torch.Generator, scale_range: tuple[float, float]) -> Transform:
    scale = _uniform(generator, *scale_range)

    def resize(x: torch.Tensor) -> torch.Tensor:
        size = [max(GRID, round(side * scale / GRID) * GRID) for side in x.shape[-2:]]
        if size == list(x.shape[-2:]):
            return x
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    return resize


def _blur(generator: torch.Generator, sigma_range: tuple[float, float]) -> Transform:
    from kornia.filters import gaussian_blur2d

    sigma = _uniform(generator, *sigma_range)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur2d(x, (5, 5), (sigma, sigma), border_type="reflect")

    return blur


def _jpeg(generator: torch.Generator, quality_range: tuple[int, int]) -> Transform:
    from kornia.enhance import jpeg_codec_differentiable

    low, high = quality_range
    quality = int(torch.randint(low, high + 1, (), generator=generator))

    def jpeg(x: torch.Tensor) -> torch.Tensor:
        q = torch.tensor([float(quality)], device=x.device)
        out: torch.Tensor = jpeg_codec_differentiable(x.clamp(0, 1), q)
        return out

    return jpeg


def sample_transform(robustness: Robustness, generator: torch.Generator) -> Transform:
    """One random transform with fixed parameters (identity when nothing is switched on).

    Order: crop, resize, blur, JPEG (a platform re-encodes last). ``generator`` is a CPU generator.
    """
    steps: list[Transform] = []
    if robustness.crop:
        steps.append(_crop(generator, robustness.max_shift))
    if robustness.resize:
        steps.append(_resize(generator, robustness.resize_scale))
    if robustness.blur:
        steps.append(_blur(generator, robustness.blur_sigma))
    if robustness.jpeg:
        steps.append(_jpeg(generator, robustness.jpeg_quality))

    def transform(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return transform
