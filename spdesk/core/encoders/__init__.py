"""Image encoders behind one protocol, and ``load_encoder(spec)`` that picks the right loader.

``spec`` is one of: ``"sd15"`` or ``"taesd"`` (the model store's SD 1.5 VAE or TAESD), a diffusers
folder (pipeline, ``vae/`` or an ``AutoencoderTiny``), a single ``AutoencoderTiny`` safetensors file
(TAESD), a TAEF2/TAESana encoder file (``.pth`` or ``.safetensors``), or several of these separated
by commas (an ensemble). ``weights_fingerprint(spec)`` identifies the weights a spec names
without loading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spdesk.core.encoders.base import ENCODER_CHOICES, Encoder, LatentDist, file_fingerprint
from spdesk.core.errors import EncoderError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENCODER_CHOICES",
    "Encoder",
    "LatentDist",
    "load_encoder",
    "measured_as",
    "weights_fingerprint",
]

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
    path = _existing_path(spec)
    if path.is_dir():
        return _load_folder(path, device, checkpointing)
    return load_tae(path, device)


def _existing_path(spec: str) -> Path:
    """The folder or weights file ``spec`` names; EncoderError when it is neither."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix not in (".safetensors", ".pth", ".pt"):
            raise EncoderError(
                f"{path.name}: expected a .safetensors or .pth encoder file.",
                hint=f"--encoder takes {ENCODER_CHOICES}.",
            )
        return path
    raise EncoderError(
        f"Encoder {spec!r} not found: it is neither 'sd15', 'taesd' nor an existing file or "
        "folder.",
        hint=f"Pass {ENCODER_CHOICES}.",
    )


def _weights_of(spec: str) -> list[Path]:
    """The files the encoder ``spec`` names is loaded from, in its fingerprint's order."""
    from spdesk.core.encoders.sd15 import vae_folder, weights_files
    from spdesk.core.encoders.tiny import tae_files

    path = _store_folder(spec) if spec in STORE_SPECS else _existing_path(spec)
    if path.is_file():
        return tae_files(path)
    if _class_name(path) == "AutoencoderTiny":
        return sorted(path.glob("*.safetensors"))
    return weights_files(vae_folder(path))


def weights_fingerprint(spec: str) -> str:
    """The ``fingerprint`` of the encoder ``load_encoder(spec)`` gives, without loading it:
    what changes the output of fine-tuning is the weights, not the name they were given (a
    file overwritten, another model imported as "taesd", a relative path). Each file is read
    once while it stays unchanged, so this is free right after the encoder was loaded.

    Raises EncoderError or ModelMissingError as ``load_encoder`` does for what is not there.
    """
    parts = spec_parts(spec)
    return "+".join(file_fingerprint(*_weights_of(part)) for part in parts)


def absolute_spec(spec: str) -> str:
    """``spec`` with each file or folder as an absolute path (the names stay): what a process
    in another working folder, such as a Ray worker, loads the same encoders from."""
    parts = [
        part if part in STORE_SPECS else str(Path(part).expanduser().absolute())
        for part in spec_parts(spec)
    ]
    return ",".join(parts)


# Parameters of each store encoder's network, which decide its speed: SD 1.5's VAE encoder
# (diffusers' AutoencoderKL at SD 1.5's configuration) and TAESD's (AutoencoderTiny's default).
MEASURED_NETWORKS = {34_163_592: "sd15", 1_222_532: "taesd"}


def measured_as(encoder: Encoder) -> str | None:
    """The model store's encoder ("sd15" or "taesd") whose measured speeds ``encoder`` shares:
    the same network, however it was given (a TAESD file or SD 1.5's VAE folder given by its
    path had no estimate where the figures were looked up by name); None for another network
    or an ensemble."""
    members = encoder.members
    if len(members) != 1:
        return None
    network = getattr(getattr(members[0], "vae", members[0]), "encoder", None)  # SD's VAE, TAE
    weights = getattr(network, "parameters", None)
    if weights is None:  # an encoder of another kind
        return None
    return MEASURED_NETWORKS.get(sum(weight.numel() for weight in weights()))


def spec_parts(spec: str) -> list[str]:
    """The encoders of a spec (several, separated by commas, make an ensemble)."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise EncoderError("No encoder given.", hint=f"Pass {ENCODER_CHOICES}.")
    return parts


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
    encoders = [_load_one(part, resolved, checkpointing) for part in spec_parts(spec)]
    return encoders[0] if len(encoders) == 1 else EnsembleEncoder(encoders)
