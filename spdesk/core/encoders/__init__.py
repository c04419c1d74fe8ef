"""Image encoders behind one protocol, and ``load_encoder(spec)`` that picks the right loader.

``spec`` is one of: ``"sd15"`` or ``"taesd"`` (the model store's SD 1.5 VAE or TAESD), a diffusers
folder (pipeline, ``vae/`` or an ``AutoencoderTiny``), a single ``AutoencoderTiny`` safetensors file
(TAESD), a TAEF2/TAESana encoder file (``.pth`` or ``.safetensors``), or several of these separated
by commas (an ensemble).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spdesk.core.encoders.base import Encoder, LatentDist
from spdesk.core.errors import EncoderError

if TYPE_CHECKING:
    import torch

__all__ = ["Encoder", "LatentDist", "load_encoder"]

STORE_SPECS = ("sd15", "taesd")


def _store_folder(spec: str) -> Path:
    from spdesk.core.models.store import encoder_folder

    return encoder_folder(spec)  # ModelMissingError names `spdesk models download --for ...`


def _load_folder(folder: Path, device: torch.device, checkpointing: bool) -> Encoder:
    from spdesk.core.encoders.sd15 import KLEncoder
    from spdesk.core.encoders.tiny import load_autoencoder_tiny_folder

    if _class_name(folder) == "AutoencoderTiny":
        return load_autoencoder_tiny_folder(folder, device)
    return KLEncoder(folder, device, checkpointing=checkpointing)


def _class_name(folder: Path) -> str | None:
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("_class_name") if isinstance(config, dict) else None


def _load_one(spec: str, device: torch.device, checkpointing: bool) -> Encoder:
    from spdesk.core.encoders.tiny import load_tae

    if spec in STORE_SPECS:
        return _load_folder(_store_folder(spec), device, checkpointing)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path, device, checkpointing)
    if path.is_file():
        if path.suffix not in (".safetensors", ".pth", ".pt"):
            raise EncoderError(f"{path.name}: expected a .safetensors or .pth encoder file.")
        return load_tae(path, device)
    raise EncoderError(
        f"Encoder {spec!r} not found: it is neither 'sd15', 'taesd' nor an existing file or "
        "folder.",
        hint="Pass 'sd15', 'taesd', a diffusers folder, or a tiny-autoencoder weights file.",
    )


def load_encoder(
    spec: str, device: str | torch.device = "auto", *, checkpointing: bool = False
) -> Encoder:
    """Load the encoder(s) named by ``spec`` on ``device`` ("auto", "cpu", "cuda", "mps").

    ``checkpointing`` trades a second forward pass for much less memory in SD 1.5's VAE (the
    tiny autoencoders are small enough without it).

    Raises EncoderError (plain text) for anything that is not a usable encoder, and
    ModelMissingError when "sd15" is asked for but not installed.
    """
    import torch

    from spdesk.core.device import resolve_device
    from spdesk.core.encoders.ensemble import EnsembleEncoder

    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise EncoderError("No encoder given.", hint="Pass 'sd15' or a path to encoder weights.")
    encoders = [_load_one(part, resolved, checkpointing) for part in parts]
    return encoders[0] if len(encoders) == 1 else EnsembleEncoder(encoders)
