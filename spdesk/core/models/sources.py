"""Where each model feature comes from: repository ids and pinned commits, in this one place.

Revisions are full 40-hex commit hashes so that a download is reproducible and the sha256 of every
file is known in advance. The old ``runwayml`` repositories are gone; never use them.

The three hashes below were confirmed only from Hugging Face cache paths
(``models--<org>--<name>/snapshots/<commit>``) seen in several independent public projects, not from
the hub itself (no internet here): check them with ``spdesk models download`` against the real hub.
Public download logs of the inpainting commit show its VAE and UNet as ``.bin`` only: the store
then fetches the ``.bin`` (fp16 variant first), verifies its sha256 and converts it to
safetensors with a ``weights_only`` load (see ``hub._weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Feature = Literal["train", "preview", "inpaint", "taesd"]
FEATURES: tuple[Feature, ...] = ("train", "preview", "inpaint", "taesd")

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_REVISION = "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"
SD15_INPAINT_REPO = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SD15_INPAINT_REVISION = "8a4288a76071f7280aedbdb3253bdb9e9d5d84bb"
TAESD_REPO = "madebyollin/taesd"
TAESD_REVISION = "614f76814bbe30edbe2e627ace1c2234c81a2c0e"

DEFAULT_ENDPOINT = "https://huggingface.co"

PIPELINE_PARTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")


@dataclass(frozen=True)
class Source:
    """One repository at one commit, and the sub-folders of it a feature needs.

    ``components`` are diffusers sub-folders (``"vae"``, ``"unet"``...); ``""`` means the repository
    root holds a single model (as ``madebyollin/taesd`` does). ``model_index`` adds the pipeline's
    ``model_index.json``.
    """

    repo_id: str
    revision: str
    components: tuple[str, ...]
    model_index: bool
    description: str


def default_source(feature: Feature) -> Source:
    """The built-in source of ``feature`` (settings may override repository and revision)."""
    if feature == "train":
        return Source(SD15_REPO, SD15_REVISION, ("vae",), False, "Stable Diffusion 1.5 VAE")
    if feature == "preview":
        return Source(SD15_REPO, SD15_REVISION, PIPELINE_PARTS, True, "Stable Diffusion 1.5")
    if feature == "inpaint":
        return Source(
            SD15_INPAINT_REPO,
            SD15_INPAINT_REVISION,
            PIPELINE_PARTS,
            True,
            "Stable Diffusion 1.5 inpainting",
        )
    if feature == "taesd":
        return Source(TAESD_REPO, TAESD_REVISION, ("",), False, "TAESD tiny autoencoder (SD 1.x)")
    raise ValueError(f"unknown model feature {feature!r}; expected one of {FEATURES}")


def is_full_commit(revision: str) -> bool:
    """True for a full 40-hex commit hash (branches and tags move; commits do not)."""
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower())
