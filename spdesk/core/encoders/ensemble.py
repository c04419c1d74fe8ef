"""Several encoders as one: objectives sum their per-encoder losses (for transfer)."""

from __future__ import annotations

import torch

from spdesk.core.encoders.base import Encoder, LatentDist


class EnsembleEncoder:
    """An ensemble; ``encode``/``decode`` use the first (primary) member, objectives use all."""

    def __init__(self, members: list[Encoder]) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two encoders")
        self._members = tuple(members)
        self.device = members[0].device
        self.id = "+".join(m.id for m in members)
        self.fingerprint = "+".join(m.fingerprint for m in members)

    @property
    def members(self) -> tuple[Encoder, ...]:
        return self._members

    @property
    def has_posterior(self) -> bool:
        return all(m.has_posterior for m in self._members)

    @property
    def has_decoder(self) -> bool:
        return self._members[0].has_decoder

    def encode(self, images: torch.Tensor) -> LatentDist:
        return self._members[0].encode(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor | None:
        return self._members[0].decode(latents)
