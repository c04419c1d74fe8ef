"""Tiny autoencoders (madebyollin's TAESD family) behind the Encoder protocol.

- TAESD for SD 1.x in diffusers' ``AutoencoderTiny`` safetensors layout (``encoder.layers.*``,
  ``decoder.layers.*``): latents are SD's *scaled* latents.
- TAEF2 (FLUX.2) and TAESana encoders as original state dicts (``.pth`` loaded with
  ``weights_only=True``, or a safetensors copy); nets built here from the published architecture.
  A decoder is looked up beside the encoder file (``*_encoder.*`` -> ``*_decoder.*``).

Deterministic: no log-variance. ``AutoencoderTiny.forward`` rounds latents and passes no gradient,
so only ``encoder``/``decoder`` are called.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spdesk.core.encoders.base import ENCODER_CHOICES, LatentDist, file_fingerprint, freeze
from spdesk.core.errors import EncoderError
from spdesk.core.logs import quiet_model_libraries
from spdesk.core.models.loading import verify_hint

CHANNELS = 64
TINY_ENCODER_PREFIX = "encoder.layers."  # diffusers' AutoencoderTiny (TAESD) layout
TINY_LATENT_LAYER = "encoder.layers.14.weight"  # its last conv: latent channels first

log = logging.getLogger(__name__)


class Block(nn.Module):
    """conv-ReLU-conv-ReLU-conv plus identity skip, then ReLU; optional midblock GroupNorm pool."""

    def __init__(self, channels: int, *, midblock_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.pool: nn.Module | None = None
        if midblock_gn:
            self.pool = nn.Sequential(
                nn.Conv2d(channels, channels * 4, 1, bias=False),
                nn.GroupNorm(4, channels * 4),
                nn.ReLU(),
                nn.Conv2d(channels * 4, channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Clamp(nn.Module):
    """Soft clamp of latents to about ±3 (parameter-free first layer of the decoders)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _conv(c_in: int, c_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def _blocks(count: int, *, midblock_gn: bool = False) -> list[nn.Module]:
    return [Block(CHANNELS, midblock_gn=midblock_gn) for _ in range(count)]


def taef2_encoder(latent_channels: int = 32) -> nn.Sequential:
    """TAEF2 encoder: [0, 1] image -> latent at 1/8 size."""
    layers: list[nn.Module] = [_conv(3, CHANNELS), *_blocks(1)]
    for stage in range(3):
        layers += [_conv(CHANNELS, CHANNELS, stride=2, bias=False)]
        layers += _blocks(3, midblock_gn=stage == 2)
    layers.append(_conv(CHANNELS, latent_channels))
    return nn.Sequential(*layers)


def taef2_decoder(latent_channels: int = 32) -> nn.Sequential:
    """TAEF2 decoder: latent -> [0, 1] image at 8x size."""
    layers: list[nn.Module] = [Clamp(), _conv(latent_channels, CHANNELS), nn.ReLU()]
    layers += _blocks(3, midblock_gn=True)
    for stage in range(3):
        layers += [nn.Upsample(scale_factor=2), _conv(CHANNELS, CHANNELS, bias=False)]
        layers += _blocks(1 if stage == 2 else 3)
    layers.append(_conv(CHANNELS, 3))
    return nn.Sequential(*layers)


def taesana_encoder(latent_channels: int = 32) -> nn.Sequential:
    """TAESana encoder: [0, 1] image -> latent at 1/32 size."""
    layers: list[nn.Module] = [_conv(3, 32, stride=2), nn.ReLU(), _conv(32, CHANNELS, stride=2)]
    layers += [nn.ReLU(), *_blocks(1)]
    for _ in range(3):
        layers += [_conv(CHANNELS, CHANNELS, stride=2, bias=False), *_blocks(3)]
    layers.append(_conv(CHANNELS, latent_channels))
    return nn.Sequential(*layers)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a ``.pth``; a ``.pth`` is unpickled with
    ``torch.load(weights_only=True)``, which builds plain tensors and refuses any other object
    (no code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable/unsafe file becomes one plain message
        raise _unreadable_weights(path, error) from error
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise EncoderError(f"{path.name} is not a plain state dict of tensors.")
    return {str(k): v for k, v in loaded.items()}


def state_keys(path: Path) -> list[str]:
    """The tensor names of a weights file: from a safetensors header alone (no weights read)."""
    if path.suffix != ".safetensors":
        return list(read_state_dict(path))
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except Exception as error:  # safetensors raises its own SafetensorError for bad headers
        raise _unreadable_weights(path, error) from error


def _unreadable_weights(path: Path, error: Exception) -> EncoderError:
    """What to say of a weights file that cannot be read, in words of its own: the library's
    text is not shown (torch.load's spans lines, holds terminal escapes and advises loading
    with weights_only=False; safetensors' says "header too large" of a renamed JPEG)."""
    log.debug("Reading %s failed: %r", path, error)  # the library's own words, for a report
    if isinstance(error, OSError):
        what = f"Cannot read {path.name}: {error.strerror or 'the file cannot be opened'}."
    elif path.suffix == ".safetensors":
        what = f"{path.name} is not a safetensors file (or it is damaged)."
    elif isinstance(error, pickle.UnpicklingError):
        what = f"{path.name} is not a plain file of tensors; spdesk never unpickles other objects."
    else:
        what = f"{path.name} is not a PyTorch weights file (or it is damaged)."
    return EncoderError(
        what, hint="spdesk loads .safetensors files and plain PyTorch state dicts only."
    )


def refuse_spdesk_file(path: Path) -> None:
    """A perturbation or generator spdesk wrote is not an encoder: say what it is and where it
    goes (``--encoder`` would otherwise call it an unknown state dict)."""
    from spdesk.core.generator_file import made_by_spdesk
    from spdesk.core.perturbation import header_metadata

    if path.suffix != ".safetensors":
        return
    kind = header_metadata(path).get("format")
    said = made_by_spdesk(path, kind, path.name, "an encoder")
    if said is not None:
        message, option, damaged = said
        hint = f"--encoder takes {ENCODER_CHOICES}."
        raise EncoderError(
            message, hint=hint if damaged else f"Give it to spdesk protect {option}; {hint}"
        )


def other_latent_space(channels: int, label: str) -> str | None:
    """Why a TAESD-layout autoencoder (``channels`` latent channels, file name ``label``) is
    not SD 1.x's, or None when it may be. Only the latent width can be checked: 16 channels
    (TAESD3, TAEF1) is another model's; TAESDXL has SD 1.x's shapes, so its name is what gives
    it away. The model store's import refuses the same files."""
    xl = "xl" in label.lower()
    if channels == 4 and not xl:
        return None
    return (
        f"{label} is a tiny autoencoder for another model's latent space "
        f"({channels} latent channels{', SDXL' if xl else ''}); "
        "spdesk needs TAESD, the one for Stable Diffusion 1.x (4 channels)."
    )


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    state = {k: v.float() for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise EncoderError(
            f"{path.name} does not match the expected tiny-autoencoder architecture: "
            f"{str(error).splitlines()[0]}"
        ) from error
    return module


def decoder_beside(encoder_path: Path) -> Path | None:
    """``x_encoder.pth`` -> ``x_decoder.pth`` (or .safetensors) in the same folder, if present."""
    if "encoder" not in encoder_path.stem:
        return None
    stem = encoder_path.stem.replace("encoder", "decoder")
    for suffix in (encoder_path.suffix, ".safetensors", ".pth"):
        candidate = encoder_path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


class TinyEncoder:
    """A deterministic tiny encoder on [0, 1] images, with an optional decoder to [0, 1].

    ``input_range`` is "01" for the original nets, "pm1" for diffusers' ``AutoencoderTiny`` parts
    (which map [-1, 1] input to [0, 1] internally and decode to [-1, 1]).
    """

    has_posterior = False

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | None,
        *,
        device: torch.device,
        id: str,
        fingerprint: str,
        signed_range: bool,
    ) -> None:
        self.encoder = freeze(encoder).to(device)
        self.decoder = freeze(decoder).to(device) if decoder is not None else None
        self.device = device
        self.id = id
        self.fingerprint = fingerprint
        self.signed_range = signed_range

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    @property
    def members(self) -> tuple[TinyEncoder, ...]:
        return (self,)

    def encode(self, images: torch.Tensor) -> LatentDist:
        inputs = images * 2 - 1 if self.signed_range else images
        return LatentDist(self.encoder(inputs))

    def decode(self, latents: torch.Tensor) -> torch.Tensor | None:
        if self.decoder is None:
            return None
        images: torch.Tensor = self.decoder(latents)
        if self.signed_range:
            images = (images + 1) / 2
        return images.clamp(0, 1)


def load_autoencoder_tiny(path: Path, device: torch.device) -> TinyEncoder:
    """TAESD-style single safetensors file in diffusers' AutoencoderTiny layout."""
    quiet_model_libraries()  # before diffusers' import: its advice comes with it
    from diffusers import AutoencoderTiny

    state = read_state_dict(path)
    latent_channels = int(state[TINY_LATENT_LAYER].shape[0])
    problem = other_latent_space(latent_channels, path.name)
    if problem:
        raise EncoderError(
            problem, hint="Pass taesd.safetensors (or its 8-bit taesd_f8e4m3.safetensors)."
        )
    model: Any = AutoencoderTiny(latent_channels=latent_channels)  # type: ignore[no-untyped-call]
    _load_into(model, state, path)
    name = path.stem.split("_")[0]
    return TinyEncoder(
        model.encoder,
        model.decoder,
        device=device,
        id=name,
        fingerprint=file_fingerprint(path),
        signed_range=True,
    )


def load_autoencoder_tiny_folder(folder: Path, device: torch.device) -> TinyEncoder:
    """A diffusers ``AutoencoderTiny`` folder (``config.json`` and weights), as the model store
    keeps ``madebyollin/taesd``."""
    quiet_model_libraries()  # before diffusers' import: its advice comes with it
    from diffusers import AutoencoderTiny

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise EncoderError(f"{folder} has no AutoencoderTiny weights (.safetensors).")
    try:
        model: Any = AutoencoderTiny.from_pretrained(str(folder), use_safetensors=True)  # type: ignore[no-untyped-call]
    except (OSError, ValueError, RuntimeError) as error:
        raise EncoderError(
            f"Cannot load the tiny autoencoder in {folder}: {error}", hint=verify_hint("taesd")
        ) from error
    return TinyEncoder(
        model.encoder,
        model.decoder,
        device=device,
        id="taesd",
        fingerprint=file_fingerprint(*weights),
        signed_range=True,
    )


def _kind_of(keys: Iterable[str], path: Path) -> str:
    """Recognise TAEF2 / TAESana encoders (or a TAEF2 decoder) from their state-dict keys."""
    names = set(keys)
    if "19.weight" in names and "1.weight" in names:
        return "taef2-decoder"
    if "14.weight" in names and "11.pool.0.weight" in names:
        return "taef2"
    if "17.weight" in names:
        return "taesana"
    raise EncoderError(
        f"{path.name} is not an encoder spdesk knows.", hint=f"--encoder takes {ENCODER_CHOICES}."
    )


def _network(kind: str, state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The empty net of ``kind`` for ``state``'s latent width."""
    if kind == "taef2-decoder":
        return taef2_decoder(int(state["1.weight"].shape[1]))
    if kind == "taef2":
        return taef2_encoder(int(state["14.weight"].shape[0]))
    return taesana_encoder(int(state["17.weight"].shape[0]))


def _files_of(path: Path, kind: str) -> list[Path]:
    """The weights an encoder of ``kind`` is made of: the file, and a TAEF2 decoder beside it."""
    decoder = decoder_beside(path) if kind == "taef2" else None
    return [path] if decoder is None else [path, decoder]


def tae_files(path: Path) -> list[Path]:
    """The weights files :func:`load_tae` loads for ``path`` (its fingerprint's), read from the
    names of its tensors alone."""
    refuse_spdesk_file(path)
    keys = state_keys(path)
    if any(key.startswith(TINY_ENCODER_PREFIX) for key in keys):
        return [path]
    return _files_of(path, _kind_of(keys, path))


def load_tae(path: Path, device: torch.device) -> TinyEncoder:
    """A TAESD file, or a TAEF2 or TAESana encoder file with the decoder beside it when there
    is one."""
    refuse_spdesk_file(path)
    state = read_state_dict(path)
    if any(key.startswith(TINY_ENCODER_PREFIX) for key in state):
        return load_autoencoder_tiny(path, device)
    kind = _kind_of(state, path)
    if kind == "taef2-decoder":
        raise EncoderError(f"{path.name} is a decoder; pass the encoder file instead.")
    encoder = _load_into(_network(kind, state), state, path)
    files = _files_of(path, kind)
    decoder = None
    if len(files) > 1:
        decoder = _load_into(taef2_decoder(), read_state_dict(files[1]), files[1])
    return TinyEncoder(
        encoder,
        decoder,
        device=device,
        id=kind,
        fingerprint=file_fingerprint(*files),
        signed_range=False,
    )
