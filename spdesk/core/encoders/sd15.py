"""Stable Diffusion 1.5's ``AutoencoderKL`` (diffusers) behind the Encoder protocol."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import torch

from spdesk.core.device import compute_dtype
from spdesk.core.encoders.base import LatentDist, file_fingerprint, freeze
from spdesk.core.errors import EncoderError
from spdesk.core.logs import quiet_model_libraries
from spdesk.core.models.loading import verify_hint


def vae_folder(folder: Path) -> Path:
    """The folder holding the VAE's config: ``folder/vae`` for a pipeline, else ``folder``."""
    for candidate in (folder / "vae", folder):
        if (candidate / "config.json").is_file():
            return candidate
    raise EncoderError(
        f"{folder} is not a diffusers model folder (no vae/config.json or config.json).",
        hint="Pass the Stable Diffusion 1.5 folder, or 'sd15' to use the downloaded model.",
    )


def weights_files(folder: Path) -> list[Path]:
    """The weights of a VAE folder, in the order the encoder's fingerprint reads them."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def checkpoint_blocks(module: torch.nn.Module) -> None:
    """Recompute each residual and attention block of ``module`` in the backward pass.

    Only the blocks' inputs are kept between the passes. Measured on the CPU for SD 1.5's encoder
    (batch 2, 256 px, forward and backward): the peak over the loaded model fell from 1.7 GB to
    0.9 GB, where diffusers' own checkpointing (per stage of blocks) reached 1.4 GB.
    """
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D
    from torch.utils.checkpoint import checkpoint

    for block in module.modules():
        if isinstance(block, (ResnetBlock2D, Attention)):
            forward = block.forward

            def recomputed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
                if not torch.is_grad_enabled():
                    return _forward(*args, **kwargs)
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

            block.forward = recomputed  # type: ignore[method-assign]


class KLEncoder:
    """SD 1.5 VAE: posterior mean and log-variance (unscaled latents), and its decoder.

    On CUDA the forward runs under bf16/fp16 autocast; on CPU in fp32. Weights stay fp32 so that
    gradients w.r.t. the input are accurate. ``checkpointing`` recomputes the encoder's blocks
    during the backward pass instead of keeping their activations: the same gradients for much
    less memory (a consumer GPU can then take a batch of 512 px photos), at the cost of a second
    forward pass.
    """

    has_posterior = True
    has_decoder = True

    def __init__(
        self,
        folder: Path,
        device: torch.device,
        *,
        channels_last: bool = False,
        checkpointing: bool = False,
    ) -> None:
        quiet_model_libraries()  # before diffusers' import: its advice comes with it
        from diffusers import AutoencoderKL

        folder = vae_folder(Path(folder))
        if not weights_files(folder):
            raise EncoderError(f"{folder} has no VAE weights (.safetensors).")
        try:
            vae = AutoencoderKL.from_pretrained(str(folder), use_safetensors=True)  # type: ignore[no-untyped-call]
        except (OSError, ValueError, RuntimeError) as error:
            raise EncoderError(
                f"Cannot load the VAE in {folder}: {error}", hint=verify_hint("train")
            ) from error
        self.vae = cast(Any, freeze(vae))
        self.vae.to(device)
        if channels_last:  # measured slower on an H100; kept as an option for other GPUs
            self.vae = self.vae.to(memory_format=torch.channels_last)
        self.checkpointing = checkpointing
        if checkpointing:
            checkpoint_blocks(self.vae.encoder)
        self.device = device
        self.dtype = compute_dtype(device)
        self.id = "sd15-vae" if folder.name == "vae" else f"vae:{folder.name}"
        self.fingerprint = file_fingerprint(*weights_files(folder))
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def members(self) -> tuple[KLEncoder, ...]:
        return (self,)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type not in ("cuda", "mps") or self.dtype == torch.float32:
            return contextlib.nullcontext()
        try:
            return torch.autocast(self.device.type, dtype=self.dtype)
        except RuntimeError:  # autocast on Apple GPUs needs torch 2.5; run in fp32 there
            return contextlib.nullcontext()

    def encode(self, images: torch.Tensor) -> LatentDist:
        with self._autocast():
            posterior = self.vae.encode(images * 2 - 1).latent_dist
        return LatentDist(posterior.mean.float(), posterior.logvar.float())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            images = self.vae.decode(latents).sample
        decoded: torch.Tensor = ((images.float() + 1) / 2).clamp(0, 1)
        return decoded
