"""What an editor or an attacker does to a protected photo before editing it.

Each attack maps a uint8 (H, W, 3) photo to a uint8 photo of the same size:

- ``jpegQ``: re-encode as JPEG at quality Q (Pillow, 4:2:0, as platforms do);
- ``downF``: downscale by F (e.g. 0.5, antialiased) and back up to full size;
- ``blurS``: Gaussian blur with sigma S pixels;
- ``average``: the removal attack of someone who has many photos protected by the same install
  and spdesk's source (:class:`AveragingAttack`): estimate whatever the protection shares
  between photos, align it the way spdesk lays it, and subtract it.

Names parse with :func:`parse_attacks` ("jpeg85,jpeg75,down0.5,blur1,average").
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from spdesk.core.errors import ConfigError

Attack = Callable[[np.ndarray], np.ndarray]
PERIOD = 128  # the bundled universal tile's side; the attacker reads it in the source
_PATTERN = re.compile(r"^(jpeg)(\d{1,3})$|^(down)(0?\.\d+)$|^(blur)(\d+(?:\.\d+)?)$|^(average)$")


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Down by ``factor`` (Lanczos, antialiased) and back up to the original size (bicubic)."""
    height, width = image.shape[:2]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    down = Image.fromarray(image).resize(small, Image.Resampling.LANCZOS)
    return np.asarray(down.resize((width, height), Image.Resampling.BICUBIC))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def parse_attacks(spec: str) -> list[str]:
    """Validated attack names from a comma-separated list."""
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    for name in names:
        match = _PATTERN.match(name)
        if not match or (match.group(1) and not 1 <= int(match.group(2)) <= 100):
            raise ConfigError(
                f"Unknown attack {name!r}.",
                hint="Use jpegQ (quality 1-100), downF (0 < F < 1), blurS (sigma) or average, "
                "comma-separated: e.g. jpeg85,jpeg75,down0.5,blur1,average.",
            )
    return names


def simple_attack(name: str) -> Attack:
    """The attack function for a name that needs no fitting (everything but ``average``)."""
    match = _PATTERN.match(name)
    if match is None or match.group(7):
        raise ConfigError(f"{name!r} is not a simple attack.")
    if match.group(1):
        quality = int(match.group(2))
        return lambda image: jpeg(image, quality)
    if match.group(3):
        factor = float(match.group(4))
        return lambda image: downscale(image, factor)
    sigma = float(match.group(6))
    return lambda image: blur(image, sigma)


# --- the averaging attack ---------------------------------------------------------------------
def high_pass(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """float32 (3, H, W): the photo minus its blur; what is left of a pattern on smooth content."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))
    return (image.astype(np.float32) - blurred.astype(np.float32)).transpose(2, 0, 1) / 255.0


def fold(residual: np.ndarray, period: int) -> np.ndarray:
    """Average a (3, H, W) residual over its ``period``-pixel tiles: (3, period, period)."""
    _, height, width = residual.shape
    total = np.zeros((3, period, period), np.float64)
    counts = np.zeros((period, period), np.float64)
    for top in range(0, height, period):
        for left in range(0, width, period):
            part = residual[:, top : top + period, left : left + period]
            total[:, : part.shape[1], : part.shape[2]] += part
            counts[: part.shape[1], : part.shape[2]] += 1
    return (total / np.maximum(counts, 1)).astype(np.float32)


_FLIPS = ((False, False), (True, False), (False, True), (True, True))


def _flip(pattern: np.ndarray, flip_h: bool, flip_v: bool) -> np.ndarray:
    if flip_h:
        pattern = pattern[:, :, ::-1]
    if flip_v:
        pattern = pattern[:, ::-1, :]
    return np.ascontiguousarray(pattern)


@dataclass(frozen=True)
class Alignment:
    """How a periodic pattern sits in a photo: the pattern, flipped, then shifted by offset."""

    offset: tuple[int, int]
    flip_h: bool
    flip_v: bool
    score: float


def align(folded: np.ndarray, pattern: np.ndarray) -> Alignment:
    """The flip and circular shift of ``pattern`` that best matches ``folded`` (both (3, P, P)),
    by FFT cross-correlation over all P² shifts and 4 flips."""
    target = np.fft.rfft2(folded.astype(np.float64))
    best = Alignment((0, 0), False, False, -np.inf)
    for flip_h, flip_v in _FLIPS:
        candidate = np.fft.rfft2(_flip(pattern, flip_h, flip_v).astype(np.float64))
        correlation = np.fft.irfft2((target * np.conj(candidate)).sum(axis=0), s=folded.shape[1:])
        index = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
        score = float(correlation[index])
        if score > best.score:
            best = Alignment((int(index[0]), int(index[1])), flip_h, flip_v, score)
    return best


def place(pattern: np.ndarray, alignment: Alignment, height: int, width: int) -> np.ndarray:
    """The pattern laid over (height, width) as ``alignment`` says: (3, height, width)."""
    flipped = _flip(pattern, alignment.flip_h, alignment.flip_v)
    period_h, period_w = flipped.shape[1:]
    rows = (np.arange(height) - alignment.offset[0]) % period_h
    cols = (np.arange(width) - alignment.offset[1]) % period_w
    return flipped[:, rows][:, :, cols]


class AveragingAttack:
    """Estimate a shared periodic pattern from many protected photos, then subtract it.

    What the attacker knows from spdesk's source: a universal pattern is a ``period``-pixel tile
    laid on the photo 1:1 (photos up to the working size) with, at most, an unknown shift and
    flips per photo. So: fold each photo's high-pass residual into one period, align every fold
    to the running estimate (all shifts and flips), average, repeat; then, on a photo to clean,
    find the alignment of the estimate and subtract it, scaled by least squares.

    Against a pattern that differs per photo, the folds share nothing and the estimate is noise
    that the least-squares scale shrinks to almost nothing.
    """

    def __init__(self, period: int = PERIOD, rounds: int = 3) -> None:
        self.period = period
        self.rounds = rounds
        self.pattern: np.ndarray | None = None

    def fit(self, protected: Sequence[np.ndarray]) -> np.ndarray:
        """Estimate the shared pattern (3, P, P) from protected uint8 photos."""
        folds = [fold(high_pass(image), self.period) for image in protected]
        if not folds:
            raise ConfigError("The averaging attack needs at least one protected photo.")
        estimate = folds[0]
        for _ in range(self.rounds):
            aligned = []
            for folded in folds:
                where = align(folded, estimate)
                # Undo the found shift and flip, so every fold lines up with the estimate.
                shifted = place(
                    folded,
                    Alignment((-where.offset[0], -where.offset[1]), False, False, 0.0),
                    *folded.shape[1:],
                )
                aligned.append(_flip(shifted, where.flip_h, where.flip_v))
            estimate = np.mean(aligned, axis=0).astype(np.float32)
        self.pattern = estimate
        return estimate

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The photo with the aligned, least-squares-scaled estimate subtracted (uint8)."""
        if self.pattern is None:
            raise RuntimeError("fit the attack on protected photos first")
        residual = high_pass(image)
        where = align(fold(residual, self.period), self.pattern)
        laid = place(self.pattern, where, image.shape[0], image.shape[1])
        scale = float((residual * laid).sum() / max(float((laid * laid).sum()), 1e-12))
        cleaned = image.astype(np.float32) - max(scale, 0.0) * laid.transpose(1, 2, 0) * 255
        return np.clip(np.rint(cleaned), 0, 255).astype(np.uint8)
