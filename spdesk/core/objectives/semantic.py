"""What the semantic objectives (``sds+``, ``sds-``, ``advdm``) share: the SD 1.5 UNet, the text
embedding of a prompt, the noise schedule, and latents in the UNet's units.

The diffusion (semantic) loss of Liang et al. (AdvDM, arXiv:2302.04578) and Xue et al.
(arXiv:2311.12832) is L_DM(x) = E_{t, eps} ||eps_theta(z_t, t, c) - eps||², z_t the forward-noised
latent of E(x). Models are loaded once per objective, on the encoder's device, frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from spdesk.core.encoders.base import Encoder, freeze
from spdesk.core.errors import ModelError, ModelMissingError, ObjectiveError
from spdesk.core.models.loading import verify_hint
from spdesk.core.objectives.base import Objective, Requirements

T_MIN, T_MAX = 20, 980  # timesteps sampled uniformly in this range (both ends are uninformative)


def latent_scale(encoder: Encoder) -> float:
    """Factor from the encoder's latents to the UNet's: SD's VAE scaling, 1 for TAESD."""
    scaling = getattr(encoder, "scaling_factor", None)
    if scaling is not None:
        return float(scaling)
    if encoder.id.startswith("taesd"):
        return 1.0  # TAESD encodes straight into SD's scaled latent space
    raise ObjectiveError(
        f"The {encoder.id} encoder does not share Stable Diffusion 1.5's latent space, so the "
        "semantic objectives (sds+, sds-, advdm) cannot use it.",
        hint="Use the 'sd15' encoder (or TAESD) with these objectives.",
    )


def _model_folder(model_dir: str | Path | None) -> Path:
    if model_dir is not None:
        folder = Path(model_dir)
        if not (folder / "unet" / "config.json").is_file():
            raise ModelMissingError(
                f"{folder} has no Stable Diffusion UNet (unet/config.json).",
                hint="Run: spdesk models download --for preview",
            )
        return folder
    try:
        from spdesk.core.models.store import ModelStore
    except ImportError as error:
        raise ModelMissingError(
            "The Stable Diffusion 1.5 UNet is not installed.",
            hint="Run: spdesk models download --for preview",
        ) from error
    return Path(ModelStore().require("preview"))


class DiffusionObjective(Objective):
    """Base of the objectives on the diffusion loss: the UNet and the prompt's embedding are
    loaded on first use, on the encoder's device; timesteps and noise follow ``seed``.

    Args:
        model_dir (`str`, *optional*): diffusers SD 1.5 folder; default: the model store's.
        prompt (`str`, *optional*, defaults to ""): the text condition c.
        seed (`int`, *optional*, defaults to 0): seed of the sampled timesteps and noise.
    """

    requirements: ClassVar[Requirements] = Requirements(unet=True)

    def __init__(
        self, model_dir: str | Path | None = None, prompt: str = "", seed: int = 0
    ) -> None:
        self.model_dir = model_dir
        self.prompt = prompt
        self.seed = seed
        self._parts: DiffusionParts | None = None
        self._generator = torch.Generator().manual_seed(seed)

    def check(self, encoder: Encoder) -> None:
        for member in encoder.members:
            latent_scale(member)

    def check_models(self) -> None:
        _model_folder(self.model_dir)

    def parts(self, device: torch.device) -> DiffusionParts:
        if self._parts is None:
            self._parts = load_diffusion_parts(self.model_dir, self.prompt, device)
        return self._parts

    def noised_latents(
        self, encoder: Encoder, perturbed: torch.Tensor
    ) -> tuple[DiffusionParts, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The parts, and (z_t, t, eps) for the perturbed photos' latents in the UNet's units."""
        parts = self.parts(encoder.device)
        z = encoder.encode(perturbed).mean * latent_scale(encoder)
        return (parts, *parts.noised(z, self._generator))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prompt": self.prompt, "seed": self.seed}


@dataclass
class DiffusionParts:
    """The frozen UNet, the prompt's text embedding and the cumulative alphas of the schedule."""

    unet: Any
    text_embedding: torch.Tensor  # (1, tokens, dim)
    alphas_cumprod: torch.Tensor  # (T,)

    def noised(
        self, z: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_t, t, eps): z forward-noised at random timesteps with Gaussian noise."""
        n = z.shape[0]
        t = torch.randint(T_MIN, T_MAX, (n,), generator=generator)
        eps = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        alpha = self.alphas_cumprod[t].to(z.device, z.dtype).view(n, 1, 1, 1)
        z_t = alpha.sqrt() * z + (1 - alpha).sqrt() * eps
        return z_t, t.to(z.device), eps

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        context = self.text_embedding.to(z_t.device, z_t.dtype).expand(z_t.shape[0], -1, -1)
        noise: torch.Tensor = self.unet(z_t, t, encoder_hidden_states=context).sample
        return noise


def load_diffusion_parts(
    model_dir: str | Path | None, prompt: str, device: torch.device
) -> DiffusionParts:
    """Load UNet, tokenizer, text encoder and scheduler from a diffusers SD 1.5 folder."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = _model_folder(model_dir)
    variant = "fp16" if any((folder / "unet").glob("*.fp16.safetensors")) else None
    try:
        unet_loader: Any = UNet2DConditionModel
        unet = unet_loader.from_pretrained(str(folder), subfolder="unet", variant=variant)
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), variant=variant)
        scheduler_loader: Any = DDPMScheduler
        scheduler = scheduler_loader.from_pretrained(str(folder), subfolder="scheduler")
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelError(
            f"Cannot load the Stable Diffusion model in {folder}: {error}",
            hint=verify_hint("preview"),  # the UNet and text encoder are the preview's
        ) from error
    unet = freeze(unet.float()).to(device)
    tokens = tokenizer(
        [prompt],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    text_model: Any = text_encoder
    with torch.no_grad():
        embedding = text_model.float()(tokens.input_ids).last_hidden_state
    return DiffusionParts(
        unet=unet,
        text_embedding=embedding.to(device),
        alphas_cumprod=scheduler.alphas_cumprod.float(),
    )
