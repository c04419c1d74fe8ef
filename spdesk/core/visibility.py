"""How visible a protection is: SSIMULACRA2 and NVIDIA FLIP of protected vs original.

PSNR says little about a structured pattern; these two model what people see. Both packages are
small wheels from PyPI (the ``eval`` extra) and run offline:

- SSIMULACRA2 (``ssimulacra2``): 100 = identical, 90 = visually lossless at 100% zoom, 70 = high
  quality, 50 = medium (JPEG q ~ 50-60), below 30 = low. Higher is less visible.
- FLIP (``flip-evaluator``): mean perceptual error in [0, 1] for a viewer at a standard distance
  (67 pixels per degree); 0 = identical. Lower is less visible.

Inputs are uint8 (H, W, 3) RGB arrays of the same size.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from spdesk.core.colour import rgb_image
from spdesk.core.errors import ConfigError

log = logging.getLogger(__name__)


def _png(image: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    rgb_image(image).save(buffer, format="PNG", compress_level=0)
    buffer.seek(0)
    return buffer


def _check_pair(original: np.ndarray, changed: np.ndarray) -> None:
    for image in (original, changed):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected uint8 (H, W, 3) images, got {image.dtype} {image.shape}")
    if original.shape != changed.shape:
        raise ValueError(f"images differ in size: {original.shape} vs {changed.shape}")


# What spdesk's [eval] extra installs (pyproject.toml; a test keeps the two alike), named
# package by package: "spdesk[eval]" would be looked up on PyPI, not where this spdesk came from.
EVAL_REQUIREMENTS = ("ssimulacra2>=0.3", "flip-evaluator>=1.6")
INSTALL_EVAL = "pip install " + " ".join(f'"{r}"' for r in EVAL_REQUIREMENTS)


def _missing(package: str, error: ImportError) -> ConfigError:
    return ConfigError(
        f"Visibility figures need the {package} package, which is not installed ({error}).",
        hint=f"Install spdesk's evaluation extra: {INSTALL_EVAL}",
    )


def ssimulacra2(original: np.ndarray, changed: np.ndarray) -> float:
    """SSIMULACRA2 score of ``changed`` against ``original`` (100 = identical; higher is better)."""
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError as error:
        raise _missing("ssimulacra2", error) from error

    _check_pair(original, changed)
    if np.array_equal(original, changed):
        return 100.0
    return float(compute_ssimulacra2(_png(original), _png(changed)))


def flip(original: np.ndarray, changed: np.ndarray) -> float:
    """Mean FLIP error of ``changed`` against ``original`` (0 = identical; lower is better)."""
    try:
        import flip_evaluator
    except ImportError as error:
        raise _missing("flip-evaluator", error) from error

    _check_pair(original, changed)
    if np.array_equal(original, changed):
        return 0.0
    reference = original.astype(np.float32) / 255.0
    test = changed.astype(np.float32) / 255.0
    _, mean_error, _ = flip_evaluator.evaluate(
        reference, test, "LDR", inputsRGB=True, applyMagma=False, computeMeanError=True
    )
    return float(mean_error)
