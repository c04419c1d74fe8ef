"""The encoder protocol every attack talks to, and the latent distribution it returns.

Images go in as float tensors (N, 3, H, W) in [0, 1]; each encoder converts to its own input range.
Latents come out in the model's own units (AutoencoderKL: the unscaled posterior mean and
log-variance; tiny autoencoders: their deterministic latent, no log-variance). Objectives that mix
encoders use *relative* distances, so the units never need to agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class LatentDist:
    """A latent distribution: ``mean`` (N, C, h, w) and ``logvar`` (same shape) or None.

    ``logvar`` is present only for encoders with a posterior (SD's AutoencoderKL); tiny autoencoders
    are deterministic and return ``None``.
    """

    mean: torch.Tensor
    logvar: torch.Tensor | None = None


@runtime_checkable
class Encoder(Protocol):
    """What objectives, training, fine-tuning and evaluation need from an image encoder."""

    id: str  # short human-readable name, e.g. "taesd" or "sd15-vae"
    fingerprint: str  # sha256 prefix of the weights (identifies the exact model in metadata)
    device: torch.device

    @property
    def has_posterior(self) -> bool: ...

    @property
    def has_decoder(self) -> bool: ...

    @property
    def members(self) -> tuple[Encoder, ...]:
        """The single encoders inside (an ensemble lists several; a single encoder itself)."""
        ...

    def encode(self, images: torch.Tensor) -> LatentDist:
        """Images (N, 3, H, W) in [0, 1], H and W multiples of the encoder's stride."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor | None:
        """Latents -> images (N, 3, H, W) clamped to [0, 1]; None when there is no decoder."""
        ...


ENCODER_CHOICES = "taesd, sd15, a diffusers VAE folder, or a TAESD, TAEF2 or TAESana weights file"
"""What an encoder spec may name (several, separated by commas, make an ensemble)."""

FileVersion = tuple[str, int, int, int, int]
_fingerprints: dict[tuple[FileVersion, ...], str] = {}


def file_fingerprint(*paths: Path) -> str:
    """First 16 hex digits of the sha256 of the files' bytes (in order).

    Remembered while the files stay as they are (same path, inode, size and times of change):
    a job loads its encoder, then keys its settings by the same weights; a second read of SD
    1.5's VAE (335 MB) would be the only cost of that key.
    """
    versions = tuple(_version(path) for path in paths)  # before reading: a change then shows
    if versions not in _fingerprints:
        digest = hashlib.sha256()
        for path in paths:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _fingerprints[versions] = digest.hexdigest()[:16]
    return _fingerprints[versions]


def _version(path: Path) -> FileVersion:
    """What changes when a file's bytes may have: ctime too, which no copy can set back."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no parameter gradients (attacks differentiate w.r.t. the input only)."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
