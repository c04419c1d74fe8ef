"""The interface every objective implements (encoder attacks here; SDS/AdvDM plug in the same way).

An objective scores a batch of *perturbed* images against the matching *clean* images, one value
per sample, and says which way is better for protection. The optimisation loop
(``spdesk.core.optim``) always minimises ``loss = sign * value`` averaged over the batch, where
``sign`` is -1 for objectives that maximise. Objectives never touch the perturbation itself, so
the same object serves universal training, per-photo fine-tuning and evaluation.

Writing a new objective (e.g. ``spdesk/core/objectives/sds.py``):

1. Subclass :class:`Objective`; set ``name`` (the CLI spelling), ``direction`` and ``requirements``.
2. Implement ``value(encoder, perturbed, clean, cache)`` returning a (N,) tensor, differentiable
   w.r.t. ``perturbed``. ``encoder`` is a single encoder (the loop calls you once per ensemble
   member and sums the losses). Anything computed from the clean batch alone (target latents,
   clean latents, text embeddings) goes through ``cache.get(key, fn)`` so it is computed once per
   batch and never receives gradients.
3. Optionally override ``check(encoder)`` to refuse encoders you cannot use, with ObjectiveError.
4. Register the class in ``spdesk.core.objectives.REGISTRY`` ("name": "module:Class"). The class is
   built as ``Class.create(name, options)`` where ``options`` is a dict of CLI/GUI options (e.g.
   ``{"target": "grey"}``); the default ``create`` passes the options as keyword arguments.

Values are *relative* where possible (distances divided by the clean latent norm) so that encoders
with different latent scales can be summed in an ensemble without one dominating.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from spdesk.core.encoders.base import Encoder

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Requirements:
    """What an objective needs.

    Attributes:
        posterior: an encoder with a latent log-variance (SD's AutoencoderKL), e.g. ``pca+``.
        decoder: an encoder whose decoder is loaded.
        random_start: the gradient vanishes at delta = 0 (e.g. ``latent``); start from noise.
        unet: the SD UNet (semantic objectives such as ``sds+``); loaded by the objective itself.
    """

    posterior: bool = False
    decoder: bool = False
    random_start: bool = False
    unet: bool = False


class BatchCache:
    """Per-batch, per-encoder memo of values computed from clean images only (no gradients)."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, str], Any] = {}

    def get(self, encoder: Encoder, key: str, compute: Callable[[], Any]) -> Any:
        slot = (id(encoder), key)
        if slot not in self._values:
            with torch.no_grad():
                self._values[slot] = compute()
        return self._values[slot]


class Objective(ABC):
    """One attack objective. See the module docstring for how to write one."""

    name: ClassVar[str]
    direction: ClassVar[Direction]
    requirements: ClassVar[Requirements] = Requirements()

    @classmethod
    def create(cls, name: str, options: Mapping[str, Any]) -> Objective:
        """Build from the registry name and a dict of options (keyword arguments by default)."""
        del name
        return cls(**options)

    @property
    def sign(self) -> float:
        """+1 when lower values protect better, -1 when higher values do."""
        return 1.0 if self.direction == "minimize" else -1.0

    def check(self, encoder: Encoder) -> None:
        """Raise ObjectiveError when ``encoder`` cannot serve this objective (default: fine)."""
        del encoder

    def check_models(self) -> None:
        """Raise ModelMissingError when a model this objective loads on first use is not
        installed (default: it loads none). Called before any model loads, so that a run
        does not load an encoder and read its photos only to stop at its first step."""
        return None

    @abstractmethod
    def value(
        self, encoder: Encoder, perturbed: torch.Tensor, clean: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        """Per-sample value (N,), differentiable w.r.t. ``perturbed``.

        Args:
            encoder: a single encoder (never an ensemble).
            perturbed: (N, 3, H, W) in [0, 1], the protected images after any transforms.
            clean: (N, 3, H, W) in [0, 1], the same images without perturbation, same transforms.
            cache: memo for values computed from ``clean`` alone.
        """

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters for the perturbation file's metadata."""
        return {"name": self.name}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({params})"


def objective_loss(
    objectives: list[Objective],
    encoder: Encoder,
    perturbed: torch.Tensor,
    clean: torch.Tensor,
    cache: BatchCache | None = None,
) -> torch.Tensor:
    """The scalar the loop minimises: sum over objectives and ensemble members of the batch mean
    of ``sign * value``."""
    cache = cache or BatchCache()
    total = perturbed.new_zeros(())
    for member in encoder.members:
        for objective in objectives:
            total = total + objective.sign * objective.value(member, perturbed, clean, cache).mean()
    return total


def relative_sq_distance(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample ||a - b||² / ||reference||² (flattened), with a floor on the denominator."""
    num = (a - b).flatten(1).pow(2).sum(1)
    den = reference.flatten(1).pow(2).sum(1).clamp_min(1e-8)
    return num / den
