"""Which device computes: CUDA GPU, Apple GPU (MPS) or CPU, with a user override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spdesk.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceInfo:
    """What spdesk runs on, in words for the user."""

    kind: str  # "cuda", "mps" or "cpu"
    name: str
    memory_gb: float | None

    def describe(self) -> str:
        if self.memory_gb:
            return f"{self.name} ({self.memory_gb:.0f} GB)"
        return self.name


def resolve_device(choice: str = "auto") -> torch.device:
    """The torch device for ``choice`` ("auto", "cpu", "cuda", "cuda:N", "mps").

    "auto" prefers CUDA, then MPS, then CPU. Asking for a device that is not present is an error
    with a plain message rather than a crash later.
    """
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                "No CUDA GPU is available on this computer.",
                hint="Choose device 'auto' or 'cpu'.",
            )
        return torch.device(choice)
    if choice == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("The Apple GPU (MPS) is not available.", hint="Choose 'cpu'.")
        return torch.device("mps")
    if choice == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"Unknown device {choice!r}; choose one of {', '.join(DEVICE_CHOICES)}.")


def generator_device(choice: str = "auto") -> torch.device:
    """Where the protection generator runs for the device ``choice`` ("auto", "cpu", "cuda",
    ...): a CUDA GPU when the choice resolves to one, else the CPU. Apple's MPS is not used:
    the generator has never been run there, and one pass takes a fraction of a second on a CPU.
    """
    import torch

    device = resolve_device(choice)
    return device if device.type == "cuda" else torch.device("cpu")


def generator_device_kind(choice: str = "auto") -> str:
    """The kind of device ("cuda" or "cpu") :func:`generator_device` gives for ``choice``. An
    explicit choice needs no torch and no GPU here: a Ray driver names the device of the GPU
    workers that will run its job, and fingerprints it without loading torch."""
    if choice == "cpu":
        return "cpu"
    if choice.startswith("cuda"):
        return "cuda"
    return generator_device(choice).type


def device_info(choice: str = "auto") -> DeviceInfo:
    """Describe the device ``choice`` resolves to."""
    import torch

    device = resolve_device(choice)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return DeviceInfo("cuda", props.name, props.total_memory / 2**30)
    if device.type == "mps":
        return DeviceInfo("mps", "Apple GPU (Metal)", None)
    import os

    return DeviceInfo("cpu", f"CPU ({os.cpu_count() or 1} cores)", None)


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA where supported (else fp16), fp16 on MPS, fp32 on CPU."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
