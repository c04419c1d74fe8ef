"""How a trained universal pattern does on held-out photos, laid as ``spdesk protect`` lays it.

Training's own check encodes held-out photos at the crop size it trains at (128 px on a CPU);
the product lays the pattern on the whole photo and an editor sees it at its own size. So when a
run ends both halves of the trade are measured on a few held-out photos the product's way:

- strength: the latent distortion a 512 px editor's encoder (SD 1.5's working size) sees, in
  multiples of random ±eps signs' (the README's "latent gain"); the CPU recipe's pattern checks
  at about 1.8x in training and measures 1.35x here (``core.train_advice``);
- visibility: SSIMULACRA2 and FLIP at 100% zoom, a centre crop of the full-size protected photo,
  beside random ±eps signs on the same crops. Edits trained against change it a lot: against JPEG
  and resizing a pattern came out three times as far from the photos by SSIMULACRA2 as one
  trained against none (13.0 against 39.5). These need the ``eval`` extra
  (:mod:`spdesk.core.visibility`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spdesk.core.errors import ImageError
from spdesk.core.events import CancelToken
from spdesk.core.jobs.events import count_of
from spdesk.core.visibility import INSTALL_EVAL

if TYPE_CHECKING:
    from spdesk.core.encoders import Encoder

MAX_PHOTOS = 4  # about 15 s in all on 2 CPU cores with TAESD (its 512 px encodes, then the metrics)
CROP = 768  # the side of the 100%-zoom crop measured (a 24 MP photo costs as much as a small one)
EDITOR_SIZE = 512  # SD 1.5's working size: what its editors resize a photo to
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
            visibility = cls(photos=int(stored["photos"]), **figures)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        # An edited header's Infinity or NaN (JSON allows them) is no figure to show.
        return visibility if all(map(math.isfinite, figures.values())) else None

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


@dataclass(frozen=True)
class ProductGain:
    """The pattern's latent distortion at an ``editor`` px editor, laid as ``spdesk protect``
    lays it, in multiples of random ±eps signs' (:func:`pattern_gain`)."""

    gain: float
    editor: int = EDITOR_SIZE

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ProductGain | None:
        """The figure a perturbation file's metadata holds ("product_gain"), or None."""
        stored = metadata.get("product_gain")
        if not isinstance(stored, dict):
            return None
        try:
            product = cls(gain=float(stored["gain"]), editor=int(stored["editor"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        return product if math.isfinite(product.gain) and product.gain >= 0 else None

    def text(self) -> str:
        """In words, for the app and the command line."""
        verdict = (
            "stronger than"
            if self.gain > 1.05
            else "no stronger than"
            if self.gain >= 0.995
            else "WEAKER than"
        )
        return (
            f"Laid on held-out photos as spdesk protect lays it, it moves a {self.editor} px "
            f"editor's encoder {self.gain:.2f}× as much as random noise of the same strength "
            f"({verdict} noise)."
        )


def visibility_available() -> bool:
    """Whether the ``eval`` extra's metrics are installed."""
    return all(importlib.util.find_spec(m) for m in ("ssimulacra2", "flip_evaluator"))


MISSING_TEXT = f"To see how visible it is, install spdesk's evaluation extra: {INSTALL_EVAL}"
UNCHECKED_TEXT = (
    f"It was not checked as protection lays it: no held-out photo is {MIN_SIDE} px or more on "
    "its short side. Measure it on photos of your own: spdesk eval --photos FOLDER "
    "--perturbation FILE"
)


def pattern_visibility(
    delta: np.ndarray,
    eps: float,
    photos: Sequence[Path],
    *,
    cancel: CancelToken | None = None,
    on_photo: Callable[[int], None] | None = None,
) -> PatternVisibility | None:
    """Visibility of the universal pattern ``delta`` (float32 (3, H, W), |delta| <= eps / 255)
    on the first :data:`MAX_PHOTOS` usable ``photos`` (see :func:`protected_photos`); None when
    none is usable. Raises ConfigError without the ``eval`` extra."""
    from spdesk.core.assessment import sign_noise
    from spdesk.core.visibility import flip, ssimulacra2

    noise = sign_noise(eps)
    rows = []
    for index, (whole, protected_whole) in enumerate(protected_photos(delta, eps, photos)):
        if cancel is not None:
            cancel.check()
        original, protected = _centre(whole), _centre(protected_whole)
        signs = noise(original, index)
        rows.append(
            (
                ssimulacra2(original, protected),
                flip(original, protected),
                ssimulacra2(original, signs),
                flip(original, signs),
            )
        )
        if on_photo is not None:
            on_photo(len(rows))
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


def pattern_gain(
    delta: np.ndarray,
    eps: float,
    photos: Sequence[Path],
    encoder: Encoder,
    *,
    size: int = EDITOR_SIZE,
    cancel: CancelToken | None = None,
    on_photo: Callable[[int], None] | None = None,
) -> float | None:
    """Latent distortion of the first :data:`MAX_PHOTOS` usable ``photos`` protected with
    ``delta`` and seen by a ``size`` px editor through ``encoder``, over that of random ±eps
    signs (means over the photos, as ``spdesk eval`` and the benchmarks compute it); None when
    no photo is usable. Latents only: a round trip through SD 1.5's decoder costs seconds a
    photo on a CPU and the gain does not need it."""
    from spdesk.core.assessment import editor_latent, relative_change, sign_noise

    noise = sign_noise(eps)
    pattern, signs = [], []
    for index, (original, protected) in enumerate(protected_photos(delta, eps, photos)):
        if cancel is not None:
            cancel.check()
        clean = editor_latent(encoder, original, size)
        pattern.append(relative_change(editor_latent(encoder, protected, size), clean))
        signs.append(relative_change(editor_latent(encoder, noise(original, index), size), clean))
        if on_photo is not None:
            on_photo(len(pattern))
    if not pattern:
        return None
    return float(np.mean(pattern) / max(float(np.mean(signs)), 1e-12))


def protected_photos(
    delta: np.ndarray, eps: float, photos: Sequence[Path]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(original, protected) of the first :data:`MAX_PHOTOS` usable ``photos``, whole, uint8
    (h, w, 3), protected by universal mode's own protector. Photos that cannot be read, or are
    smaller than :data:`MIN_SIDE`, are passed over."""
    from spdesk.core.imageio import read_image
    from spdesk.core.jobs.protector import build_protector, rgb_of
    from spdesk.core.jobs.settings import ProtectSettings
    from spdesk.core.perturbation import Perturbation

    protector = build_protector(ProtectSettings(mode="universal"), Perturbation(delta, eps))
    given = 0
    for path in photos:
        try:
            image = rgb_of(read_image(path).image)
        except (ImageError, OSError):
            continue
        if min(image.size) < MIN_SIDE:
            continue
        protected, _ = protector.protect(image, path.name)
        yield np.asarray(image), np.asarray(protected)
        given += 1
        if given == MAX_PHOTOS:
            return


def _centre(pixels: np.ndarray) -> np.ndarray:
    top = max(0, (pixels.shape[0] - CROP) // 2)
    left = max(0, (pixels.shape[1] - CROP) // 2)
    return np.ascontiguousarray(pixels[top : top + CROP, left : left + CROP, :3])
