"""``pca+`` / ``pca-``: posterior-collapse attacks (SPD blog; needs a VAE with a posterior).

- ``pca+``: maximise KL(q(z|x+δ) || N(0, I)), mean over latent elements.
- ``pca-``: minimise the mean of σ² + μ² (drive the posterior towards a collapsed point).
Deterministic encoders (the tiny autoencoders) have no posterior and are refused plainly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from spdesk.core.encoders.base import Encoder
from spdesk.core.errors import ObjectiveError
from spdesk.core.objectives.base import BatchCache, Direction, Objective, Requirements


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over elements of KL(N(mean, exp(logvar)) || N(0, 1))."""
    kl = 0.5 * (logvar.exp() + mean.pow(2) - 1.0 - logvar)
    return kl.flatten(1).mean(1)


class PosteriorCollapse(Objective):
    """Base of pca+ and pca-; refuses encoders without a posterior."""

    requirements: ClassVar[Requirements] = Requirements(posterior=True)

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any]) -> Objective:
        kind = {"pca+": PcaPlus, "pca-": PcaMinus}[name]
        return kind(**options)

    def check(self, encoder: Encoder) -> None:
        for member in encoder.members:
            if not member.has_posterior:
                raise ObjectiveError(
                    f"Objective {self.name} needs an encoder with a posterior (SD 1.5's VAE); "
                    f"{member.id} is deterministic.",
                    hint="Use --objective encoder or latent with this encoder, or use sd15.",
                )

    def _posterior(
        self, encoder: Encoder, perturbed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dist = encoder.encode(perturbed)
        if dist.logvar is None:
            self.check(encoder)
            raise ObjectiveError(f"{encoder.id} returned no log-variance.")
        return dist.mean, dist.logvar


class PcaPlus(PosteriorCollapse):
    """Maximise KL(q(z|x+δ) || N(0, I)) (mean over latent elements)."""

    name: ClassVar[str] = "pca+"
    direction: ClassVar[Direction] = "maximize"

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        mean, logvar = self._posterior(encoder, perturbed)
        return kl_to_standard_normal(mean, logvar)


class PcaMinus(PosteriorCollapse):
    """Minimise the mean over latent elements of σ² + μ²."""

    name: ClassVar[str] = "pca-"
    direction: ClassVar[Direction] = "minimize"

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        mean, logvar = self._posterior(encoder, perturbed)
        return (logvar.exp() + mean.pow(2)).flatten(1).mean(1)
