"""Load a Stable Diffusion pipeline from a local diffusers folder, never from the network.

The folder comes from :meth:`ModelStore.require` (disk only) or the user; ``local_files_only=True``
means a complete store works with the network unplugged. The weights are fp16 on disk; they load
in the ``dtype`` asked for (float32 by default). The encoders load through
:func:`spdesk.core.encoders.load_encoder`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from spdesk.core.errors import ModelError
from spdesk.core.logs import quiet_model_libraries
from spdesk.core.models.sources import Feature

LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


def load_pipeline_from(
    folder: Path, feature: Feature = "preview", *, dtype: torch.dtype = torch.float32
) -> Any:
    """A pipeline from a diffusers folder (the store's, or one the user names), local files only.

    Folders holding only the hub's ``*.fp16.safetensors`` files load through that variant.
    """
    quiet_model_libraries()  # before the import: some of their advice comes with it
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    cls: Any = (
        StableDiffusionInpaintPipeline if feature == "inpaint" else StableDiffusionImg2ImgPipeline
    )
    try:
        with warnings.catch_warnings():
            # Newer diffusers renamed torch_dtype to dtype; older ones know only torch_dtype.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            return cls.from_pretrained(
                str(folder),
                local_files_only=True,
                torch_dtype=dtype,
                variant=_variant(folder),
                use_safetensors=True,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    except LOAD_ERRORS as error:
        raise _load_error(feature, folder, error) from error


def _variant(folder: Path) -> str | None:
    """ "fp16" when the UNet exists only as the hub's fp16 variant files."""
    unet = folder / "unet"
    if any(unet.glob("*.fp16.safetensors")) and not any(
        p for p in unet.glob("*.safetensors") if ".fp16." not in p.name
    ):
        return "fp16"
    return None


def _load_error(feature: Feature, folder: Any, error: Exception) -> ModelError:
    return ModelError(
        f"The {feature} model in {folder} does not load: {error}", hint=verify_hint(feature)
    )


def verify_hint(feature: Feature) -> str:
    """What to do about a model that does not load: the store's check finds what changed (a
    status reads only what the files are, not their bytes) and names the fix."""
    return f"Run: spdesk models verify --for {feature}"
