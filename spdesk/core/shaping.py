"""Where the budget goes: a per-pixel, per-photo perceptual budget inside the ±eps bound.

People see an added pattern most on flat, smooth areas (sky, walls, skin) and in colour; they see
it least in texture and as brightness changes. So a protection's change at each pixel is bounded by
``eps * budget(x)`` with ``budget`` in [floor, 1]: the photo's own local contrast (a texture mask,
computed on the luminance of the view an editor sees) decides how much of eps a pixel may use.
Colour is a small share of the budget, and only where the photo itself is colourful: a grey photo
receives no colour at all.

All functions are differentiable torch code on (N, 3, H, W) images in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 weights: the luminance a JPEG encoder sees
# Opponent colour directions (red-green, yellow-blue), scaled so one unit of each changes no
# channel by more than 0.5 + 0.25 of a unit together.
RED_GREEN = (0.5, -0.5, 0.0)
YELLOW_BLUE = (0.25, 0.25, -0.5)
# The widest square local contrast is measured over (the recipe measured 7 and 11): the
# window comes from a generator's header, and a forged one must not make spdesk pad a 512 px
# view by tens of thousands of pixels (100001 asked for 40 GB).
MAX_WINDOW = 63


@dataclass(frozen=True)
class Shaping:
    """How the budget is shaped.

    Attributes:
        floor: share of eps that the flattest areas still get, in [0, 1].
        texture_ref: local luminance standard deviation (0..1 units) at which a pixel gets the
            full budget; 0.04 is about 10/255, the texture of foliage or fabric.
        window: side in pixels of the square over which local contrast is measured (odd, at
            most ``MAX_WINDOW``).
        colour: largest share of the budget that may go to colour, in [0, 1).
        colour_ref: local saturation (max - min channel, 0..1) at which colour is fully allowed.
        dark_ref: local luminance (0..1) below which the budget shrinks in proportion, down to
            ``dark_floor`` of it: the same 8-bit change is a larger change of perceived
            lightness in dark areas (0 turns this off).
        dark_floor: share of the budget the darkest areas keep, in (0, 1].
        ceiling: share of eps the most textured pixels get, in (0, 1]: a generator measured to
            trade better at a little less than its full budget says so here, and every pixel's
            budget scales with it (so |delta| <= ceiling * eps / 255 whatever the strength).
    """

    floor: float = 0.25
    texture_ref: float = 0.04
    window: int = 7
    colour: float = 0.2
    colour_ref: float = 0.15
    dark_ref: float = 0.0
    dark_floor: float = 0.35
    ceiling: float = 1.0

    def __post_init__(self) -> None:
        _check_finite_numbers(self)
        window = self.window
        if not isinstance(window, int) or not 1 <= window <= MAX_WINDOW or window % 2 == 0:
            raise ValueError(
                f"window must be an odd whole number of pixels from 1 to {MAX_WINDOW}, got {window}"
            )
        if not 0 <= self.floor <= 1:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")
        if not self.texture_ref > 0:
            raise ValueError(f"texture_ref must be positive, got {self.texture_ref}")
        if not 0 <= self.colour < 1:
            raise ValueError(f"colour must be in [0, 1), got {self.colour}")
        if not self.colour_ref > 0:
            raise ValueError(f"colour_ref must be positive, got {self.colour_ref}")
        if not 0 <= self.dark_ref <= 1 or not 0 < self.dark_floor <= 1:
            raise ValueError("dark_ref must be in [0, 1] and dark_floor in (0, 1]")
        if not 0 < self.ceiling <= 1:
            raise ValueError(f"ceiling must be in (0, 1], got {self.ceiling}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, float | int]) -> Shaping:
        """The shaping a file's settings describe (missing ones take their defaults); ValueError
        names a setting out of range, or one this spdesk does not know (a newer file)."""
        unknown = sorted(set(settings) - {item.name for item in fields(cls)})
        if unknown:
            raise ValueError(
                f"unknown shaping setting {', '.join(unknown)} (made by a newer spdesk?)"
            )
        return cls(**settings)  # type: ignore[arg-type]


def _check_finite_numbers(shaping: Shaping) -> None:
    """Every setting may come from a file's header: a NaN passes any range test written as
    "x <= 0", so each is checked to be a finite number before its range."""
    for item in fields(shaping):
        value = getattr(shaping, item.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{item.name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{item.name} must be a finite number, got {value}")


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) Rec. 601 luminance."""
    weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    pad = window // 2
    if pad == 0:
        return x
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode=mode), window, stride=1)


def texture_budget(images: torch.Tensor, shaping: Shaping = Shaping()) -> torch.Tensor:
    """(N, 1, H, W) share of eps per pixel, in [0, ``ceiling``]: high in texture, low on flat
    areas (``floor`` of the ceiling), lower still in dark areas when ``dark_ref`` is set."""
    y = luminance(images)
    mean = _local_mean(y, shaping.window)
    variance = (_local_mean(y * y, shaping.window) - mean * mean).clamp_min(0)
    texture = (variance.sqrt() / shaping.texture_ref).clamp(max=1.0)
    # A second, smaller pooling keeps the budget from jumping at edges (a jump is itself visible).
    texture = _local_mean(texture, 3)
    budget = shaping.ceiling * (shaping.floor + (1 - shaping.floor) * texture)
    if shaping.dark_ref > 0:
        budget = budget * (mean / shaping.dark_ref).clamp(shaping.dark_floor, 1.0)
    return budget


def colour_allowance(images: torch.Tensor, shaping: Shaping = Shaping()) -> torch.Tensor:
    """(N, 1, H, W) share of the budget that may be colour: 0 on grey areas and grey photos."""
    saturation = images.amax(dim=1, keepdim=True) - images.amin(dim=1, keepdim=True)
    local = _local_mean(saturation, shaping.window)
    return shaping.colour * (local / shaping.colour_ref).clamp(max=1.0)


def compose_delta(
    raw: torch.Tensor, images: torch.Tensor, eps: float, shaping: Shaping = Shaping()
) -> torch.Tensor:
    """A bounded, shaped delta from raw (N, 3, H, W) outputs in [-1, 1] (e.g. tanh).

    Channel 0 is a luminance change (the same on R, G and B), channels 1 and 2 are red-green and
    yellow-blue changes. Returns a delta in pixel units with |delta| <= eps/255 * budget(x) on
    every channel, exactly (a final clamp removes any rounding overshoot).
    """
    budget = texture_budget(images, shaping) * (eps / 255.0)
    allowance = colour_allowance(images, shaping)
    rg = raw.new_tensor(RED_GREEN).view(1, 3, 1, 1)
    yb = raw.new_tensor(YELLOW_BLUE).view(1, 3, 1, 1)
    # The luminance share shrinks by what colour takes, so each channel stays within budget.
    colour = raw[:, 1:2] * rg + raw[:, 2:3] * yb  # at most 0.75 per channel
    mixed = (1 - 0.75 * allowance) * raw[:, 0:1] + allowance * colour
    return (budget * mixed).clamp(-budget, budget)
