"""``latent`` (untargeted): push E(x+δ) away from E(x).

Value per sample: ||E(x+δ) - E(x)||² / ||E(x)||² (the squared relative latent distortion that the
evaluation reports), maximised. Its gradient is exactly zero at δ = 0, so it needs a random start.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from spdesk.core.encoders.base import Encoder
from spdesk.core.objectives.base import (
    BatchCache,
    Direction,
    Objective,
    Requirements,
    relative_sq_distance,
)


class LatentObjective(Objective):
    """Maximise the relative latent distortion of the perturbed image."""

    name: ClassVar[str] = "latent"
    direction: ClassVar[Direction] = "maximize"
    requirements: ClassVar[Requirements] = Requirements(random_start=True)

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        z_clean = cache.get(encoder, "clean", lambda: encoder.encode(clean).mean)
        return relative_sq_distance(encoder.encode(perturbed).mean, z_clean, z_clean)
