"""``encoder`` (PhotoGuard's encoder attack, Salman et al. 2023, arXiv:2302.06588).

Pull E(x+δ) towards a target latent: E(grey image) by default, or E(target image). Value per
sample: ||E(x+δ) - z_target||² / ||E(x)||² (relative, minimised).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from spdesk.core.encoders.base import Encoder
from spdesk.core.errors import ImageError, ImageTooLargeError, ObjectiveError
from spdesk.core.objectives.base import BatchCache, Direction, Objective, relative_sq_distance

GREY = 0.5


NAMED_TARGETS = {"grey": GREY, "gray": GREY, "black": 0.0, "white": 1.0}


def _read_target(target: str) -> np.ndarray | None:
    """A target image's pixels (H, W, 3) in [0, 1], read as photos are (None for a named
    target), or a named error before any training starts."""
    if target in NAMED_TARGETS:
        return None
    path = Path(target)
    if not path.is_file():
        raise ObjectiveError(
            f"Target {target!r} is neither 'grey', 'black', 'white' nor an image file."
        )
    from spdesk.core.imageio import read_image

    try:
        decoded = read_image(path)
    except ImageError as error:
        # protect's --max-megapixels (the reader's hint for a large file) does not apply here.
        hint = (
            "Use a smaller target image: it is scaled to the training crops anyway."
            if isinstance(error, ImageTooLargeError)
            else error.hint
        )
        message = f"The target image cannot be used: {error.message}"
        raise ObjectiveError(message, hint=hint) from error
    return np.asarray(decoded.image.convert("RGB"), dtype=np.float32) / 255.0


def _target_image(target: str, pixels: np.ndarray | None, like: torch.Tensor) -> torch.Tensor:
    """The target resized to ``like``'s size."""
    if pixels is None:
        return torch.full_like(like, NAMED_TARGETS[target])
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(like.device)
    tensor = F.interpolate(tensor, size=like.shape[-2:], mode="bilinear", antialias=True)
    return tensor.expand_as(like).clamp(0, 1)


class EncoderObjective(Objective):
    """Minimise the relative distance between E(x+δ) and a target latent.

    Args:
        target (`str`, *optional*, defaults to "grey"): "grey", "black", "white" or an image path.
    """

    name: ClassVar[str] = "encoder"
    direction: ClassVar[Direction] = "minimize"

    def __init__(self, target: str = "grey") -> None:
        self.target = target
        self._pixels = _read_target(target)

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        z_target = cache.get(
            encoder,
            f"target:{self.target}",
            lambda: encoder.encode(_target_image(self.target, self._pixels, clean)).mean,
        )
        z_clean = cache.get(encoder, "clean", lambda: encoder.encode(clean).mean)
        z = encoder.encode(perturbed).mean
        return relative_sq_distance(z, z_target, z_clean)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target}
