"""How visible a trained universal pattern is, laid on photos as ``spdesk protect`` lays it.

Training reports strength (the held-out effect on the encoder); this is the other half of the
trade. Edits trained against change it a lot: against JPEG and resizing a pattern came out three
times as far from the photos by SSIMULACRA2 as one trained against none (13.0 against 39.5,
``core.train_advice``). It is measured on a few held-out photos at 100% zoom, a centre crop of
the full-size protected photo, beside random ±eps signs on the same crops. The figures need the
``eval`` extra (SSIMULACRA2 and FLIP, :mod:`spdesk.core.visibility`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spdesk.core.errors import ImageError
from spdesk.core.events import CancelToken
from spdesk.core.jobs.events import count_of

if TYPE_CHECKING:
    from spdesk.core.jobs.protector import Protector

MAX_PHOTOS = 4  # a few seconds on a laptop's CPU: about 0.8 s a photo at ImageNet's size
CROP = 768  # the side of the 100%-zoom crop measured (a 24 MP photo costs as much as a small one)
MIN_SIDE = 32  # smaller photos are passed over: SSIMULACRA2 reads 100 below about 8 px
SAME_AS_NOISE = 3.0  # SSIMULACRA2 points within which a pattern counts as noise's equal


@dataclass(frozen=True)
class PatternVisibility:
    """SSIMULACRA2 (higher: less visible) and FLIP (lower: less visible) of protected vs
    original, mean over ``photos``, and the same for random ±eps signs on those photos."""

    photos: int
    ssimulacra2: float
    ssimulacra2_worst: float
    flip: float
    sign_ssimulacra2: float
    sign_flip: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> PatternVisibility | None:
        """The figures a perturbation file's metadata holds ("visibility"), or None where it
        holds none or something else (a file from another tool, an edited header)."""
        stored = metadata.get("visibility")
        if not isinstance(stored, dict):
            return None
        try:
            figures = {name: float(stored[name]) for name in _FIGURES}
            return cls(photos=int(stored["photos"]), **figures)
        except (KeyError, TypeError, ValueError):
            return None

    def verdict(self) -> str:
        """How it compares with random noise of the same strength, in words."""
        if self.ssimulacra2 >= self.sign_ssimulacra2 + SAME_AS_NOISE:
            return "harder to see than random noise of the same strength"
        if self.ssimulacra2 <= self.sign_ssimulacra2 - SAME_AS_NOISE:
            return "easier to see than random noise of the same strength"
        return "about as visible as random noise of the same strength"

    def brief(self) -> str:
        """The verdict and SSIMULACRA2 in one short sentence (the app's pattern description)."""
        return (
            f"{self.verdict().capitalize()} (SSIMULACRA2 {self.ssimulacra2:.0f} against "
            f"{self.sign_ssimulacra2:.0f} on held-out photos)."
        )

    def text(self) -> str:
        """One sentence with the figures, for the app and the command line."""
        return (
            f"At 100% zoom on {count_of(self.photos, 'held-out photo')} it "
            f"is {self.verdict()}: SSIMULACRA2 {self.ssimulacra2:.1f} against noise's "
            f"{self.sign_ssimulacra2:.1f} (higher is harder to see), "
            f"FLIP {self.flip:.3f} against {self.sign_flip:.3f} (lower is)."
        )


_FIGURES = ("ssimulacra2", "ssimulacra2_worst", "flip", "sign_ssimulacra2", "sign_flip")


def visibility_available() -> bool:
    """Whether the ``eval`` extra's metrics are installed."""
    return all(importlib.util.find_spec(m) for m in ("ssimulacra2", "flip_evaluator"))


MISSING_TEXT = (
    "To see how visible it is, install spdesk's evaluation extra: pip install 'spdesk[eval]'"
)


def pattern_visibility(
    delta: np.ndarray,
    eps: float,
    photos: Sequence[Path],
    *,
    cancel: CancelToken | None = None,
) -> PatternVisibility | None:
    """Visibility of the universal pattern ``delta`` (float32 (3, H, W), |delta| <= eps / 255)
    on up to :data:`MAX_PHOTOS` of ``photos``; photos that cannot be read, or are smaller than
    :data:`MIN_SIDE`, are passed over.
    None when no photo could be read. Raises ConfigError without the ``eval`` extra."""
    from spdesk.core.assessment import sign_noise
    from spdesk.core.jobs.protector import build_protector
    from spdesk.core.jobs.settings import ProtectSettings
    from spdesk.core.perturbation import Perturbation
    from spdesk.core.visibility import flip, ssimulacra2

    protector = build_protector(ProtectSettings(mode="universal"), Perturbation(delta, eps))
    noise = sign_noise(eps)
    rows = []
    for index, (original, protected) in enumerate(_protected(protector, photos)):
        if cancel is not None:
            cancel.check()
        signs = noise(original, index)
        rows.append(
            (
                ssimulacra2(original, protected),
                flip(original, protected),
                ssimulacra2(original, signs),
                flip(original, signs),
            )
        )
        if len(rows) == MAX_PHOTOS:
            break
    if not rows:
        return None
    figures = np.array(rows)
    means = figures.mean(axis=0)
    return PatternVisibility(
        photos=len(rows),
        ssimulacra2=float(means[0]),
        ssimulacra2_worst=float(figures[:, 0].min()),
        flip=float(means[1]),
        sign_ssimulacra2=float(means[2]),
        sign_flip=float(means[3]),
    )


def _protected(
    protector: Protector, photos: Sequence[Path]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(original, protected) centre crops of each readable photo, uint8 (h, w, 3)."""
    from spdesk.core.imageio import read_image
    from spdesk.core.jobs.protector import rgb_of

    for path in photos:
        try:
            image = rgb_of(read_image(path).image)
        except (ImageError, OSError):
            continue
        if min(image.size) < MIN_SIDE:
            continue
        protected, _ = protector.protect(image, path.name)
        yield _centre(np.asarray(image)), _centre(np.asarray(protected))


def _centre(pixels: np.ndarray) -> np.ndarray:
    top = max(0, (pixels.shape[0] - CROP) // 2)
    left = max(0, (pixels.shape[1] - CROP) // 2)
    return np.ascontiguousarray(pixels[top : top + CROP, left : left + CROP, :3])
