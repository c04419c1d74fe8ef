"""The editor's working view and tiling a pattern over it (DESIGN decision 1)."""

from __future__ import annotations

import numpy as np

from spdesk.core.errors import UnsupportedImageError

LATENT_GRID = 8  # SD's VAE works on an 8-pixel grid
# Below this a photo's view has a latent of a few cells: no AI edit worth judging (and the
# preview's VIF figure needs 41 pixels).
MIN_PREVIEW_SIDE = 64


def working_size(
    height: int, width: int, short_side: int = 512, align: int = LATENT_GRID
) -> tuple[int, int]:
    """The (height, width) an editor works at for a photo of this size.

    The short side goes to ``short_side`` (never upscaled: smaller photos keep their size), and each
    side is rounded to a multiple of ``align`` pixels (sides shorter than ``align`` stay as is).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = min(1.0, short_side / min(height, width))

    def side(n: int) -> int:
        scaled = max(1, round(n * scale))
        if scaled < align:
            return scaled
        return max(align, round(scaled / align) * align)

    return side(height), side(width)


def tile(
    delta: np.ndarray,
    height: int,
    width: int,
    *,
    offset: tuple[int, int] = (0, 0),
    flip_h: bool = False,
    flip_v: bool = False,
) -> np.ndarray:
    """Repeat ``delta`` (C, h, w) to cover (C, height, width), shifted by ``offset`` and flipped."""
    if flip_h:
        delta = delta[:, :, ::-1]
    if flip_v:
        delta = delta[:, ::-1, :]
    rows = (np.arange(height) + offset[0]) % delta.shape[1]
    cols = (np.arange(width) + offset[1]) % delta.shape[2]
    return np.ascontiguousarray(delta[:, rows][:, :, cols])


def layout_size(height: int, width: int, short_side: int = 512) -> tuple[int, int]:
    """The (height, width) a universal pattern is laid out at for a photo of this size.

    A photo the editor shrinks gets the pattern at the editor's working view (then resized to
    full size, so that downsizing gives the pattern back). A photo no larger than the working view
    reaches the editor at about its own size, so the pattern is laid 1:1 on its pixels: resampling
    it to the 8-pixel-aligned view first would only blur it (the editor's own alignment moves
    each side by under 8 pixels).
    """
    if min(height, width) <= short_side:
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        return height, width
    return working_size(height, width, short_side)


def too_small_to_protect(width: int, height: int, name: str) -> UnsupportedImageError | None:
    """Why a photo this size is not protected, or None: a side shorter than the editor's
    8-pixel grid holds no whole cell of its latent, so there is nothing to protect (a 1x1
    photo's copy came out unchanged under a ``.protected`` name)."""
    if min(width, height) >= LATENT_GRID:
        return None
    return UnsupportedImageError(
        f"{name} is {width}x{height} pixels: too small to protect (an AI editor works on "
        f"{LATENT_GRID}x{LATENT_GRID}-pixel cells; spdesk protects photos at least "
        f"{LATENT_GRID} pixels on each side).",
        hint="Protect a larger version of it, if there is one.",
    )


def check_previewable(photo: np.ndarray, name: str = "The photo") -> None:
    """Refuse a photo (H, W, ...) too small on a side for an AI edit preview to show anything."""
    height, width = photo.shape[:2]
    if min(height, width) < MIN_PREVIEW_SIDE:
        raise UnsupportedImageError(
            f"{name} is {width}x{height} pixels: too small for an AI edit preview, which needs "
            f"at least {MIN_PREVIEW_SIDE} pixels on each side.",
            hint="Choose a larger photo to preview.",
        )


# Photo mode: a photo larger than the view gets the view's delta upscaled, which moves its fine
# texture down to frequencies people see (a 2400x1600 photo: SSIMULACRA2 -0.4 at full budget).
# The editor's downsizing averages noise away, so much less is needed there: scaled by
# (photo short side / view short side) ** -0.8, the 9 held-out photos over 512 px measured
# SSIMULACRA2 71.6 and 1.63x random signs' latent distortion at a 256 px editor; 1.0 gave 74.2 and
# 1.54x, the same trade-off line as every shaping setting (RECIPE.md, "Large photos").
LARGE_PHOTO_EXPONENT = 0.8
# ... but never below this share: the power alone gave a camera's photo (24 MP, 7.8 times the
# view) 0.19 of the budget, which left an editor a fifth of the protection a small photo gets,
# less than random signs of the same bound. At 0.36, stand-ins of 12 and 24 MP still read
# SSIMULACRA2 over 50 at 100% zoom on every photo, over 75 fitted to a screen (RECIPE.md,
# "Camera-sized photos"; benchmarks/bench_large_photos.py). It applies from 1838 px up.
LARGE_PHOTO_FLOOR = 0.36


def large_photo_factor(height: int, view_height: int) -> float:
    """Share of the budget a photo gets when its view is smaller than itself (1 otherwise)."""
    upscale = height / view_height
    if upscale <= 1:
        return 1.0
    return max(float(upscale**-LARGE_PHOTO_EXPONENT), LARGE_PHOTO_FLOOR)
