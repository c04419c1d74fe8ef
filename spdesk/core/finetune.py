"""Per-photo fine-tuning: start from the universal delta, optimise it on one photo.

The delta lives on the photo's working view (short side 512 by default), exactly as applying it
would lay it out; the loop sees what an editor sees: the full-size protected photo downsized to the
working view. By linearity that is ``down(photo) + down(up(delta))``, so only the delta is resized
in the loop. The result is applied with :func:`spdesk.core.apply.apply_working_delta`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spdesk.core.apply import ApplyOptions, apply_working_delta, working_delta
from spdesk.core.encoders import Encoder
from spdesk.core.errors import ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.objectives import build_objectives
from spdesk.core.objectives.base import BatchCache, objective_loss
from spdesk.core.optim import DeltaOptimizer, OptimConfig, loss_gradient, run
from spdesk.core.perturbation import Perturbation

MIN_SIDE = 8  # below the latent grid there is nothing to fine-tune


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize; antialiased when shrinking (as editors downsize)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", antialias=shrinking, align_corners=False)


class FineTuner:
    """Fine-tunes a universal perturbation on each photo.

    Args:
        perturbation: the universal perturbation to start from.
        encoder: encoder (or ensemble) to attack.
        steps (`int`): optimisation steps per photo; 0 applies the universal delta unchanged.
        objective (`str`, *optional*, defaults to "encoder"): objective name(s), comma-separated.
        strength (`float`, *optional*): budget in 8-bit steps; None keeps the perturbation's eps.
        options: working size, randomisation (the starting layout), as for plain application.
        step_size (`float`, *optional*): first step in 8-bit steps; default eps/8 (cosine decay).
        optimizer (`str`, *optional*, defaults to "pgd"): "pgd" or "adam".
        target (`str`, *optional*, defaults to "grey"): target of the encoder objective.
        objective_options (`Mapping`, *optional*): further objective options, e.g. ``model_dir``,
            ``prompt`` and ``seed`` for the semantic objectives (sds+, sds-, advdm); each
            objective takes the options it knows.
    """

    def __init__(
        self,
        perturbation: Perturbation,
        encoder: Encoder,
        *,
        steps: int,
        objective: str = "encoder",
        strength: float | None = None,
        options: ApplyOptions | None = None,
        step_size: float | None = None,
        optimizer: str = "pgd",
        target: str = "grey",
        objective_options: Mapping[str, Any] | None = None,
    ) -> None:
        if steps < 0:
            raise ConfigError(f"Fine-tuning steps must be 0 or more, got {steps}.")
        self.perturbation = perturbation
        self.encoder = encoder
        self.steps = steps
        options = options or ApplyOptions()
        self.options = ApplyOptions(
            working_size=options.working_size,
            strength=strength if strength is not None else options.strength,
            randomize=options.randomize,
            seed=options.seed,
        )
        self.eps = self.options.strength or perturbation.eps
        self.objectives = build_objectives(
            objective, {"target": target, **(objective_options or {})}
        )
        for item in self.objectives:
            item.check(encoder)
        self.step_size = step_size if step_size is not None else self.eps / 8
        self.optimizer = optimizer

    def optimise_working_delta(
        self,
        image: np.ndarray,
        working: np.ndarray,
        *,
        cancel: CancelToken | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Fine-tune a working-view delta (3, wh, ww) for the uint8 (H, W, 3) ``image``."""
        device = self.encoder.device
        height, width = image.shape[:2]
        view = (int(working.shape[1]), int(working.shape[2]))
        full = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255).to(device)
        clean = _resize(full, view)
        del full
        config = OptimConfig(
            optimizer=self.optimizer,  # type: ignore[arg-type]
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
        )
        optimizer = DeltaOptimizer(config, torch.from_numpy(working)[None].to(device))
        cache = BatchCache()  # the clean view never changes: encode it once

        def loss(delta: torch.Tensor, _step: int) -> torch.Tensor:
            seen = _resize(_resize(delta, (height, width)), view)
            perturbed = (clean + seen).clamp(0, 1)
            return objective_loss(self.objectives, self.encoder, perturbed, clean, cache)

        def report(done: int, _loss: float) -> None:
            if on_step is not None:
                on_step(done, self.steps)

        delta = run(optimizer, loss_gradient(loss), cancel=cancel, on_step=report)
        return delta[0].detach().cpu().numpy().astype(np.float32)

    def protect(
        self,
        image: np.ndarray,
        *,
        cancel: CancelToken | None = None,
        on_step: Callable[[int, int], None] | None = None,
        key: str = "",
    ) -> np.ndarray:
        """uint8 (H, W, 3) RGB photo -> protected uint8 (H, W, 3).

        ``cancel.check()`` runs before every step; ``on_step(done, total)`` after each.
        """
        height, width = image.shape[:2]
        working = working_delta(self.perturbation, height, width, self.options, key)
        if self.steps and min(working.shape[1:]) >= MIN_SIDE:
            working = self.optimise_working_delta(image, working, cancel=cancel, on_step=on_step)
        return apply_working_delta(image, working)
