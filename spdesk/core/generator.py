"""A small network that writes a photo-specific protection: delta = shaped(G(x, z)).

Why a network: one fixed pattern for every photo can be estimated by averaging many protected
photos and subtracted (DESIGN, "Revised decision"). ``G`` looks at the photo the editor will see
(its working view) and at a secret noise image ``z``, and returns a different, content-dependent
perturbation for every photo in one forward pass: no optimisation per photo, so it runs in a
fraction of a second on a CPU. The secret noise comes from a per-install key and the photo's own
pixels (:mod:`spdesk.core.keys`), so even someone who has spdesk's source and this network's
weights cannot regenerate the exact perturbation of a protected photo and subtract it.

Architecture: the photo is folded into 4x4 pixel blocks (pixel-unshuffle: 48 channels at 1/4
size), joined with 4 channels of noise, passed through a few residual 3x3 convolutions, and
unfolded back to full size as three raw channels (luminance, red-green, yellow-blue) squashed by
tanh. :func:`spdesk.core.shaping.compose_delta` turns those into a delta within the photo's
perceptual budget, so every output respects |delta| <= eps/255 exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spdesk.core.shaping import Shaping, compose_delta

FOLD = 4  # pixels per side of one folded block
NOISE_CHANNELS = 4


@dataclass(frozen=True)
class GeneratorConfig:
    """The network's shape (stored with its weights).

    Attributes:
        width: channels of the hidden convolutions.
        blocks: residual blocks (two 3x3 convolutions each) at 1/4 size.
    """

    width: int = 48
    blocks: int = 3

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class DeltaGenerator(nn.Module):
    """G(x, z) -> raw (N, 3, H, W) in [-1, 1]; H and W multiples of 4 (pad otherwise)."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        folded = 3 * FOLD * FOLD
        layers: list[nn.Module] = [
            nn.Conv2d(folded + NOISE_CHANNELS, config.width, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
        layers += [_Residual(config.width) for _ in range(config.blocks)]
        layers.append(nn.Conv2d(config.width, folded, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        folded = F.pixel_unshuffle(images * 2 - 1, FOLD)
        out = self.net(torch.cat([folded, noise], dim=1))
        return torch.tanh(F.pixel_shuffle(out, FOLD))


def noise_shape(height: int, width: int) -> tuple[int, int, int]:
    """Shape (C, h, w) of the noise for a (height x width) view (padded to a multiple of 4)."""
    return NOISE_CHANNELS, -(-height // FOLD), -(-width // FOLD)


def generator_raw(
    generator: DeltaGenerator, images: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The raw output (N, 3, H, W) in [-1, 1] for images of any size (padded to the fold, then
    cropped): channel 0 luminance, 1 red-green, 2 yellow-blue (see :func:`compose_delta`)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % FOLD, (-width) % FOLD
    padded = images
    if pad_h or pad_w:
        padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
    raw: torch.Tensor = generator(padded, noise)[..., :height, :width]
    return raw


def generate_delta(
    generator: DeltaGenerator,
    images: torch.Tensor,
    noise: torch.Tensor,
    eps: float,
    shaping: Shaping,
) -> torch.Tensor:
    """The shaped delta (N, 3, H, W) for images of any size."""
    return compose_delta(generator_raw(generator, images, noise), images, eps, shaping)


def shaping_to_dict(shaping: Shaping) -> dict[str, float | int]:
    return dict(asdict(shaping))
