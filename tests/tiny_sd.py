"""Tiny random-weight Stable Diffusion 1.5 components, built and saved in diffusers layout.

They exercise the real SD 1.5 code paths (AutoencoderKL, UNet2DConditionModel, CLIP text encoder and
tokenizer, scheduler) on CPU in seconds. Seeded: the same call builds the same weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

LATENT_CHANNELS = 4


def _bytes_to_unicode() -> dict[int, str]:
    # The byte-to-character table CLIP's byte-level BPE uses.
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_tiny_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer whose vocabulary is single characters (no merges): small but real."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def tiny_vae(seed: int = 0, *, attention: bool = True):  # type: ignore[no-untyped-def]
    """``attention``: SD's VAE has self-attention in its middle block. With this VAE's factor
    of 2 it spans a 512 px photo's 65,536 latent positions: 5.7 s an encode on 2 cores against
    0.9 s without, and training checks its result at 512 px."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=32,
        mid_block_add_attention=attention,
    )


def tiny_unet(seed: int = 0, in_channels: int = LATENT_CHANNELS):  # type: ignore[no-untyped-def]
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def tiny_text_encoder(seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=16,
        intermediate_size=32,
        layer_norm_eps=1e-05,
        num_attention_heads=2,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=1000,
        projection_dim=16,
    )
    return CLIPTextModel(config)


def tiny_scheduler_config() -> dict[str, object]:
    return {
        "_class_name": "PNDMScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "skip_prk_steps": True,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "clip_sample": False,
    }


def save_tiny_vae(folder: Path, seed: int = 0) -> Path:
    """A diffusers folder holding only ``vae/`` (what training and fine-tuning need), without
    the middle block's attention (the complete pipeline of :func:`save_tiny_sd` has it)."""
    tiny_vae(seed, attention=False).save_pretrained(folder / "vae", safe_serialization=True)
    return folder


def save_tiny_sd(
    folder: Path, *, inpaint: bool = False, seed: int = 0, fp16_variant: bool = False
) -> Path:
    """A complete tiny SD 1.5 (or inpainting) pipeline folder in diffusers layout.

    ``fp16_variant`` also writes ``*.fp16.safetensors`` files, as the hub repository has them.
    """
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    in_channels = 9 if inpaint else LATENT_CHANNELS
    parts = {
        "vae": tiny_vae(seed),
        "unet": tiny_unet(seed, in_channels=in_channels),
        "text_encoder": tiny_text_encoder(seed),
    }
    for name, model in parts.items():
        if fp16_variant:  # first, so that the fp32 save leaves an fp32 config behind
            copy.deepcopy(model).to(torch.float16).save_pretrained(
                folder / name, safe_serialization=True, variant="fp16"
            )
        model.save_pretrained(folder / name, safe_serialization=True)
    write_tiny_tokenizer(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(tiny_scheduler_config()), encoding="utf-8"
    )
    pipeline = "StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline"
    model_index = {
        "_class_name": pipeline,
        "_diffusers_version": "0.30.0",
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "requires_safety_checker": False,
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(model_index, indent=2), encoding="utf-8")
    return folder


def save_tiny_taesd(path: Path, latent_channels: int = 4, seed: int = 0) -> Path:
    """A random-weight ``AutoencoderTiny`` as one safetensors file, the form TAESD ships in."""
    import torch
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = AutoencoderTiny(latent_channels=latent_channels)  # type: ignore[no-untyped-call]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
