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
from pathlib import Path
from typing import Any, ClassVar

import torch

from spdesk.core.encoders.base import Encoder
from spdesk.core.objectives.base import BatchCache, Direction, Objective, Requirements
from spdesk.core.objectives.semantic import DiffusionParts, latent_scale, load_diffusion_parts


class SdsObjective(Objective):
    """Semantic loss with the SDS gradient; built as ``sds+`` (maximise) or ``sds-`` (minimise).

    Args:
        model_dir (`str`, *optional*): diffusers SD 1.5 folder; default: the model store's.
        prompt (`str`, *optional*, defaults to ""): the text condition c.
        seed (`int`, *optional*, defaults to 0): seed of the sampled timesteps and noise.
    """

    name: ClassVar[str] = "sds+"
    direction: ClassVar[Direction] = "maximize"
    requirements: ClassVar[Requirements] = Requirements(unet=True)

    def __init__(
        self, model_dir: str | Path | None = None, prompt: str = "", seed: int = 0
    ) -> None:
        self.model_dir = model_dir
        self.prompt = prompt
        self.seed = seed
        self._parts: DiffusionParts | None = None
        self._generator = torch.Generator().manual_seed(seed)

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any]) -> Objective:
        chosen = SdsMinus if name == "sds-" else SdsPlus
        return chosen(**options)

    def check(self, encoder: Encoder) -> None:
        for member in encoder.members:
            latent_scale(member)

    def parts(self, device: torch.device) -> DiffusionParts:
        if self._parts is None:
            self._parts = load_diffusion_parts(self.model_dir, self.prompt, device)
        return self._parts

    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        del clean, cache
        parts = self.parts(encoder.device)
        z = encoder.encode(perturbed).mean * latent_scale(encoder)
        z_t, t, eps = parts.noised(z, self._generator)
        with torch.no_grad():
            residual = parts.predict_noise(z_t, t) - eps
        loss = residual.pow(2).flatten(1).mean(1)
        # Same value as L_DM; gradient 2 * residual * dz_t/dz / numel (UNet Jacobian skipped).
        surrogate = (2 * residual * (z_t - z_t.detach())).flatten(1).mean(1)
        return loss + surrogate

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.prompt, "seed": self.seed}


class SdsPlus(SdsObjective):
    name: ClassVar[str] = "sds+"
    direction: ClassVar[Direction] = "maximize"


class SdsMinus(SdsObjective):
    name: ClassVar[str] = "sds-"
    direction: ClassVar[Direction] = "minimize"
