"""Applying a perturbation to a photo: a pure function of (image, delta, options). No torch.

At the scale the editor works at (DESIGN decision 1): the pattern is tiled over the photo's working
view (short side 512 by default, 8-pixel aligned), that canvas is resized to the full photo, added,
clipped and rounded to 8 bits. An editor that downsizes the protected photo gets back about delta.

The fast path works on Pillow images: the canvas is quantised to whole 8-bit steps around 128 (the
output is rounded to whole steps anyway, and x is an integer, so round(x + d) = x + round(d)),
resized bilinearly by Pillow's SIMD resampler and added with ``ImageChops.add`` (which clips).
A 24 MP photo costs a few C passes and no float copy of the full image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops

from spdesk.core.geometry import tile, working_size
from spdesk.core.perturbation import Perturbation

_ZERO = 128  # the 8-bit level that stands for "no change" in a quantised canvas


@dataclass(frozen=True)
class ApplyOptions:
    """How a perturbation is laid onto a photo.

    Attributes:
        working_size: short side in pixels of the editor's working view (default 512).
        strength: budget in 8-bit steps; ``None`` keeps the perturbation's own eps.
        randomize: random tile offset and flips per photo, so no two photos carry the identical
            pattern (harder to estimate by averaging many protected photos).
        seed: seed of that randomisation, combined with each photo's key.
    """

    working_size: int = 512
    strength: float | None = None
    randomize: bool = False
    seed: int = 0


def _layout(key: str, seed: int, pattern: tuple[int, int]) -> tuple[tuple[int, int], bool, bool]:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    offset = (int(rng.integers(pattern[0])), int(rng.integers(pattern[1])))
    return offset, bool(rng.integers(2)), bool(rng.integers(2))


def working_delta(
    perturbation: Perturbation,
    height: int,
    width: int,
    options: ApplyOptions = ApplyOptions(),
    key: str = "",
) -> np.ndarray:
    """The pattern tiled over the working view of a (height x width) photo: (3, wh, ww) float32."""
    delta = perturbation.at_strength(options.strength)
    wh, ww = working_size(height, width, options.working_size)
    if options.randomize:
        offset, flip_h, flip_v = _layout(key, options.seed, perturbation.size)
        return tile(delta, wh, ww, offset=offset, flip_h=flip_h, flip_v=flip_v)
    return tile(delta, wh, ww)


def _quantised_canvas(working: np.ndarray) -> Image.Image:
    steps = np.rint(working.transpose(1, 2, 0) * 255.0) + _ZERO
    return Image.fromarray(np.clip(steps, 0, 255).astype(np.uint8), mode="RGB")


def upscale_delta(working: np.ndarray, height: int, width: int) -> np.ndarray:
    """A working-view delta (3, wh, ww) resized to full size: (height, width, 3) float32.

    Bilinear, as in the fast path (never exceeds the working delta's bound).
    """
    channels = []
    for channel in working.astype(np.float32):
        image = Image.fromarray(channel, mode="F")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        channels.append(np.asarray(image))
    return np.stack(channels, axis=-1).astype(np.float32, copy=False)


def add_delta(image: np.ndarray, delta_hw3: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image plus a float delta (H, W, 3) in pixel units: clipped, rounded uint8."""
    out = image.astype(np.float32) + delta_hw3 * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def apply_working_delta_pil(image: Image.Image, working: np.ndarray) -> Image.Image:
    """Fast path: add a working-view delta (3, wh, ww) to an RGB Pillow image of any size."""
    if image.mode != "RGB":
        raise ValueError(f"apply expects an RGB image, got mode {image.mode}")
    canvas = _quantised_canvas(working)
    if canvas.size != image.size:
        # Bilinear: never overshoots the budget, and the cheapest smooth upscale in Pillow.
        canvas = canvas.resize(image.size, Image.Resampling.BILINEAR)
    return ImageChops.add(image, canvas, scale=1.0, offset=-_ZERO)


def apply_to_pil(
    image: Image.Image,
    perturbation: Perturbation,
    options: ApplyOptions = ApplyOptions(),
    key: str = "",
) -> Image.Image:
    """Protect an RGB Pillow image; returns a new image of the same size."""
    width, height = image.size
    working = working_delta(perturbation, height, width, options, key)
    return apply_working_delta_pil(image, working)


def apply_perturbation(
    image: np.ndarray,
    perturbation: Perturbation,
    options: ApplyOptions = ApplyOptions(),
    key: str = "",
) -> np.ndarray:
    """Protect a uint8 (H, W, 3) RGB array; returns the protected uint8 (H, W, 3) array.

    Args:
        image: the photo, uint8 RGB, any size (1x1 up to very large).
        perturbation: a loaded perturbation (see :func:`load_perturbation`).
        options: working size, strength (8-bit steps), per-photo randomisation.
        key: a per-photo string (e.g. its relative path) that seeds the randomisation.
    """
    _check_rgb_uint8(image)
    result = apply_to_pil(Image.fromarray(image, mode="RGB"), perturbation, options, key)
    return np.asarray(result)


def apply_working_delta(image: np.ndarray, working: np.ndarray) -> np.ndarray:
    """Per-photo fine-tuning result: add a working-view delta (3, wh, ww) to a uint8 (H, W, 3)."""
    _check_rgb_uint8(image)
    return np.asarray(apply_working_delta_pil(Image.fromarray(image, mode="RGB"), working))


def _check_rgb_uint8(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}")
