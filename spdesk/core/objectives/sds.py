"""``sds+`` / ``sds-``: the semantic loss with the score-distillation gradient (Xue et al. 2024,
"Toward effective protection against diffusion based mimicry through score distillation",
arXiv:2311.12832).

The value is the diffusion loss L_DM = mean ||eps_theta(z_t, t, c) - eps||², but its gradient skips
the UNet Jacobian: d L / d z ≈ 2 (eps_theta - eps) sqrt(alpha_bar_t) / numel. The UNet runs without
a graph, so a step costs one UNet forward instead of forward + backward. ``sds+`` maximises the
loss (like AdvDM); ``sds-`` minimises it, which the paper finds gives more natural perturbations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from spdesk.core.encoders.base import Encoder
from spdesk.core.objectives.base import BatchCache, Direction, Objective
from spdesk.core.objectives.semantic import DiffusionObjective


class SdsObjective(DiffusionObjective):
    """Semantic loss with the SDS gradient; built as ``sds+`` (maximise) or ``sds-`` (minimise)
    (arguments: those of :class:`~spdesk.core.objectives.semantic.DiffusionObjective`)."""

    name: ClassVar[str] = "sds+"
    direction: ClassVar[Direction] = "maximize"

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any]) -> Objective:
        chosen = SdsMinus if name == "sds-" else SdsPlus
        return chosen(**options)

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        del clean, cache
        parts, z_t, t, eps = self.noised_latents(encoder, perturbed)
        with torch.no_grad():
            residual = parts.predict_noise(z_t, t) - eps
        loss = residual.pow(2).flatten(1).mean(1)
        # Same value as L_DM; gradient 2 * residual * dz_t/dz / numel (UNet Jacobian skipped).
        surrogate = (2 * residual * (z_t - z_t.detach())).flatten(1).mean(1)
        return loss + surrogate


class SdsPlus(SdsObjective):
    name: ClassVar[str] = "sds+"
    direction: ClassVar[Direction] = "maximize"


class SdsMinus(SdsObjective):
    name: ClassVar[str] = "sds-"
    direction: ClassVar[Direction] = "minimize"
