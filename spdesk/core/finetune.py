"""Per-photo fine-tuning: start from the universal delta, optimise it on one photo.

The delta lives on the photo's working view (short side 512 by default), exactly as applying it
would lay it out; the loop sees what an editor sees: the full-size protected photo downsized to the
working view. By linearity that is ``down(photo) + down(up(delta))``; the first term is computed
once, and ``down(up(.))`` is one small matrix per axis (:class:`EditorView`), so the loop never
holds a full-size tensor. The result is applied with :func:`spdesk.core.apply.apply_working_delta`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from spdesk.core.apply import ApplyOptions, apply_working_delta, grey_delta, working_delta
from spdesk.core.batches import batches_by_key, free_accelerator_memory
from spdesk.core.colour import is_grey
from spdesk.core.encoders import Encoder
from spdesk.core.errors import ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.objectives import objectives_with_models
from spdesk.core.objectives.base import BatchCache, objective_loss
from spdesk.core.optim import DeltaOptimizer, OptimConfig, loss_gradient, run
from spdesk.core.perturbation import Perturbation

log = logging.getLogger(__name__)

MIN_SIDE = 8  # below the latent grid there is nothing to fine-tune


def resize_view(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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
        batch_size (`int`, *optional*, defaults to 1): photos of one size fine-tuned together by
            :meth:`protect_batch` (8 or more suits a GPU; on a CPU a batch saves little).
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
        batch_size: int = 1,
    ) -> None:
        if steps < 0:
            raise ConfigError(f"Fine-tuning steps must be 0 or more, got {steps}.")
        if batch_size < 1:
            raise ConfigError(f"The fine-tuning batch must hold 1 photo or more, got {batch_size}.")
        self.batch_size = batch_size
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
        self.objectives = objectives_with_models(
            objective, {"target": target, **(objective_options or {})}
        )
        for item in self.objectives:
            item.check(encoder)
        self.step_size = step_size if step_size is not None else self.eps / 8
        self.optimizer = optimizer

    def optimise_working_deltas(
        self,
        images: Sequence[np.ndarray],
        workings: np.ndarray,
        *,
        cancel: CancelToken | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Fine-tune working-view deltas (B, 3, wh, ww) for B uint8 photos of one size, at once.

        Each photo keeps its own delta; the loss is the sum of the photos' losses, so each delta
        gets exactly the gradient it would get alone (the step rules work per element), and a
        batch is one forward and backward pass instead of B.
        """
        device = self.encoder.device
        height, width = images[0].shape[:2]
        if any(image.shape[:2] != (height, width) for image in images):
            raise ValueError("a fine-tuning batch needs photos of one size")
        view = (int(workings.shape[2]), int(workings.shape[3]))
        clean = torch.cat([self._clean_view(image, view) for image in images])
        config = OptimConfig(
            optimizer=self.optimizer,  # type: ignore[arg-type]
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
        )
        optimizer = DeltaOptimizer(config, torch.from_numpy(workings).to(device))
        cache = BatchCache()  # the clean views never change: encode them once
        count = len(images)
        editor_sees = EditorView(view, (height, width), device)

        def loss(delta: torch.Tensor, _step: int) -> torch.Tensor:
            seen = editor_sees(delta)
            perturbed = (clean + seen).clamp(0, 1)
            # objective_loss is a batch mean: times the batch size, each photo's own gradient.
            return count * objective_loss(self.objectives, self.encoder, perturbed, clean, cache)

        def report(done: int, _loss: float) -> None:
            if on_step is not None:
                on_step(done, self.steps)

        delta = run(optimizer, loss_gradient(loss), cancel=cancel, on_step=report)
        return delta.detach().cpu().numpy().astype(np.float32)

    def _clean_view(self, image: np.ndarray, view: tuple[int, int]) -> torch.Tensor:
        full = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255)
        return resize_view(full.to(self.encoder.device), view)

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
        return self.protect_batch([image], keys=[key], cancel=cancel, on_step=on_step)[0]

    def protect_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        keys: Sequence[str] | None = None,
        cancel: CancelToken | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """Protect several photos, fine-tuning those of one size together, up to
        ``batch_size`` at a time (a GPU is far better used by a batch than by one photo).

        Returns the protected photos in order. ``on_step(done, total)`` counts steps over all
        the batches; a batch that runs out of GPU memory is split in two and retried, and later
        batches are no larger than the half.
        """
        keys = list(keys) if keys is not None else [""] * len(images)
        workings = [
            working_delta(self.perturbation, image.shape[0], image.shape[1], self.options, key)
            for image, key in zip(images, keys, strict=True)
        ]
        results: dict[int, np.ndarray] = {}
        groups = _groups(images, workings, self.batch_size if self.steps else len(images))
        total = self.steps * len(groups)
        finished = 0

        def progress(done: int, _total: int) -> None:
            if on_step is not None:
                on_step(finished * self.steps + done, total)

        for group in groups:
            view = workings[group[0]].shape[1:]
            if self.steps and min(view) >= MIN_SIDE:
                tuned = self._optimise_splitting(
                    [images[i] for i in group],
                    np.stack([workings[i] for i in group]),
                    cancel,
                    progress,
                )
                for index, delta in zip(group, tuned, strict=True):
                    workings[index] = delta
            finished += 1
            for index in group:
                delta = workings[index]
                if is_grey(Image.fromarray(images[index])):  # a grey photo stays grey
                    delta = grey_delta(delta)
                results[index] = apply_working_delta(images[index], delta, eps=self.eps)
        return [results[index] for index in range(len(images))]

    def _optimise_splitting(
        self,
        images: list[np.ndarray],
        workings: np.ndarray,
        cancel: CancelToken | None,
        on_step: Callable[[int, int], None],
    ) -> np.ndarray:
        try:
            return self.optimise_working_deltas(images, workings, cancel=cancel, on_step=on_step)
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError only from torch 2.5
            if len(images) == 1:
                raise
        free_accelerator_memory()
        half = len(images) // 2
        # Later batches start at the size that may fit, instead of running out of memory again.
        self.batch_size = min(self.batch_size, max(1, half))
        log.warning("out of GPU memory with %d photos per batch: trying %d", len(images), half)
        return np.concatenate(
            [
                self._optimise_splitting(images[:half], workings[:half], cancel, on_step),
                self._optimise_splitting(images[half:], workings[half:], cancel, on_step),
            ]
        )


class EditorView:
    """What an editor sees of a working-view delta: laid at full size, then downsized again.

    Both resizes are separable and linear, so together they are one small matrix per axis:
    ``seen = A_h @ delta @ A_w.T``, exact to float rounding, without a full-size tensor (a 24 MP
    photo would otherwise cost two 24 MP resamples per step, and their memory, for every photo
    of a batch). A photo smaller than its view along an axis (a few pixels, from the 8-pixel
    alignment) resizes directly: the resizes then antialias differently and it is cheap anyway.
    """

    def __init__(self, view: tuple[int, int], full: tuple[int, int], device: torch.device) -> None:
        self.view, self.full = view, full
        self.operators: tuple[torch.Tensor, torch.Tensor] | None = None
        if full[0] >= view[0] and full[1] >= view[1]:
            self.operators = (
                _axis_operator(view[0], full[0], device),
                _axis_operator(view[1], full[1], device),
            )

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        if self.operators is None:
            return resize_view(resize_view(delta, self.full), self.view)
        along_h, along_w = self.operators
        return torch.einsum("yh,bchw,xw->bcyx", along_h, delta, along_w)


def _axis_operator(size: int, full: int, device: torch.device) -> torch.Tensor:
    """The (size x size) matrix of ``resize_view`` to ``full`` and back along one axis.

    Read off by resizing a basis along the axis; across it, 2 pixels grow to 4 and shrink back,
    so that both resizes make the same antialiasing choice as the photo's (a 1-pixel-wide
    image is a special case in torch and would not).
    """
    basis = torch.eye(size, device=device).reshape(1, size, size, 1).expand(1, size, size, 2)
    there_and_back = resize_view(resize_view(basis.contiguous(), (full, 4)), (size, 2))
    return there_and_back[..., 0].reshape(size, size).T.contiguous()


def _groups(
    images: Sequence[np.ndarray], workings: Sequence[np.ndarray], batch_size: int
) -> list[list[int]]:
    """Indices of photos that can share a batch (one size), in chunks of ``batch_size``."""
    sizes = [
        (*image.shape[:2], *working.shape) for image, working in zip(images, workings, strict=True)
    ]
    return batches_by_key(sizes, batch_size)
