"""Pillow's Lanczos resize as differentiable torch code: what an SD editor does to a photo.

diffusers' image processor resizes a photo to the model's size with Pillow's Lanczos filter (its
default ``resample``), so a protection optimised through that filter is optimised against what
the editor really sees; torch has no Lanczos mode. The coefficients are Pillow's own
(``precompute_coeffs`` in its ``Resample.c``: a windowed sinc of 3 lobes, widened by the scale
when shrinking, each output's weights normalised to sum to 1), so on a float image the result
equals Pillow's to float rounding. Each output pixel reads a short window of input pixels, so a
resize costs a gather and a weighted sum along each axis, not a dense matrix.

Measured with ``python benchmarks/bench_editor_filter.py --measure 12 --steps 4``: photo
fine-tuning through this resize instead of torch's bilinear one moved its latent gain over random
signs at Lanczos editors from 1.50x to 1.54x at 256 px and 1.07x to 1.11x at 512 px.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

LOBES = 3.0  # Pillow's Lanczos support


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -LOBES) & (x < LOBES)  # Pillow's interval, closed below
    return np.where(inside, np.sinc(x) * np.sinc(x / LOBES), 0.0)


@lru_cache(maxsize=128)
def lanczos_taps(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into the input and their weights, each (size_out, taps), for one axis."""
    if size_in < 1 or size_out < 1:
        raise ValueError(f"Cannot resize {size_in} pixels to {size_out}.")
    scale = size_in / size_out
    widen = max(scale, 1.0)  # shrinking widens the filter: it antialiases
    support = LOBES * widen
    centres = (np.arange(size_out) + 0.5) * scale
    # Pillow rounds with a C cast (towards zero), then clips to the image.
    lows = np.maximum(np.trunc(centres - support + 0.5).astype(np.int64), 0)
    highs = np.minimum(np.trunc(centres + support + 0.5).astype(np.int64), size_in)
    taps = int((highs - lows).max())
    indices = lows[:, None] + np.arange(taps)[None, :]
    weights = _lanczos((indices - centres[:, None] + 0.5) / widen)
    weights = np.where(indices < highs[:, None], weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    indices = np.minimum(indices, size_in - 1)  # padding taps, weight 0
    return torch.from_numpy(indices), torch.from_numpy(weights)


def _along(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    if x.shape[dim] == size:
        return x
    indices, weights = lanczos_taps(x.shape[dim], size)
    moved = x.movedim(dim, -1)
    windows = moved[..., indices.to(x.device)]  # (..., size, taps)
    resized = (windows * weights.to(device=x.device, dtype=x.dtype)).sum(-1)
    return resized.movedim(-1, dim)


def lanczos_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) images resized to ``size`` (height, width) as Pillow's Lanczos resize does,
    differentiably; no clipping (Lanczos overshoots a little at hard edges, and Pillow clips
    only 8-bit images)."""
    # The input's memory layout, as torch's own resizes keep it: a photo from an (H, W, C) array
    # is channels-last, in which a CPU runs the encoder after it a fifth faster.
    layout = torch.channels_last if _channels_last(x) else torch.contiguous_format
    return _along(_along(x, size[1], -1), size[0], -2).contiguous(memory_format=layout)


def _channels_last(x: torch.Tensor) -> bool:
    return (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )
