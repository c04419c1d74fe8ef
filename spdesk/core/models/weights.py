"""Weights conversion: pickled checkpoints become safetensors, without running their code.

``torch.load(weights_only=True)`` reads plain tensors only: a pickle that would run code to load
is refused (ModelError), even when its sha256 matched the hub's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spdesk.core.errors import ModelError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def load_pickle_weights(path: Path) -> dict[str, Any]:
    """Tensors from a pickle checkpoint, only if ``weights_only=True`` loads it (no code runs)."""
    import pickle

    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as error:
        raise ModelError(
            f"{path.name} is a pickle file that would run code to load; spdesk refuses it.",
            hint="Use the .safetensors version of this model (most are published as both).",
        ) from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights.")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path.name} holds no weights.")
    return tensors


def save_safetensors(tensors: dict[str, Any], target: Path) -> None:
    from safetensors.torch import save_file

    # Clone: pickles often share storage between tensors, which safetensors refuses.
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(target))


def convert_pickle(source: Path, final: Path) -> None:
    """A verified ``.bin`` as fp16 safetensors at ``final``; ``source`` is deleted either way."""
    import torch

    try:
        tensors = load_pickle_weights(source)
        # The store keeps fp16 weights, as the hub's fp16 variants.
        half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        tmp = final.with_name(final.name + ".tmp")
        save_safetensors(half, tmp)
        tmp.replace(final)
    finally:
        source.unlink(missing_ok=True)
