"""What an editor or an attacker does to a protected photo before editing it.

Each attack maps a uint8 (H, W, 3) photo to a uint8 photo of the same size:

- ``jpegQ``: re-encode as JPEG at quality Q (Pillow, 4:2:0, as platforms do);
- ``downF``: downscale by F (e.g. 0.5, antialiased) and back up to full size;
- ``blurS``: Gaussian blur with sigma S pixels;
- ``medianK``: a K x K median filter (K odd, 3 to 9), the oldest cleaner of fine-grained noise:
  it keeps edges sharp while it wipes out isolated changes;
- ``shiftK``: the photo moved K pixels up and left (1 to 32; K rows and columns cut off the top
  and left, the far edges repeated), as a slight crop does: the editor's pixel grid then meets
  the protection K pixels off where spdesk laid it;
- ``average``: the removal attack of someone who has many photos protected by the same install
  and spdesk's source (:class:`AveragingAttack`): estimate whatever the protection shares
  between photos, align it the way spdesk lays it, and subtract it;
- ``regenerate`` / ``regenerateK``: the removal attack of someone with one protected photo and
  spdesk's source (:class:`RegenerationAttack`): protect the photo again with K keys of their
  own (8 by default), average the changes into whatever does not depend on the key, and
  subtract it;
- ``known``: the removal attack of someone with the universal pattern file itself (the bundled
  one ships with spdesk): align it the way spdesk lays it and subtract it
  (:class:`KnownPatternAttack`); nothing to subtract in the photo modes.

Names parse with :func:`parse_attacks` ("jpeg85,jpeg75,down0.5,blur1,median3,shift4,average,
regenerate,known").
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from spdesk.core.apply import grey_delta, upscale_delta
from spdesk.core.colour import is_grey
from spdesk.core.errors import ConfigError
from spdesk.core.geometry import layout_size
from spdesk.core.keys import KEY_BYTES

Attack = Callable[[np.ndarray], np.ndarray]
PERIOD = 128  # the bundled universal tile's side; the attacker reads it in the source
WORKING_SIZE = 512  # spdesk's default working view (short side); the attacker reads it too
_PATTERN = re.compile(
    r"^jpeg(?P<jpeg>\d{1,3})$|^down(?P<down>0?\.\d+)$|^blur(?P<blur>\d+(?:\.\d+)?)$"
    r"|^(?P<average>average)$|^(?P<regenerate>regenerate)(?P<keys>\d*)$|^(?P<known>known)$"
    r"|^median(?P<median>[3579])$|^shift(?P<shift>\d{1,2})$"
)
REGENERATION_KEYS = 8  # keys of ``regenerate``; ``regenerateK`` names another count
MAX_REGENERATION_KEYS = 64  # each key is one more protection of every photo


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


def median(image: np.ndarray, size: int) -> np.ndarray:
    """Each channel's median over a ``size`` x ``size`` square (edges replicated)."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.MedianFilter(size)))


def shift(image: np.ndarray, pixels: int) -> np.ndarray:
    """``image`` moved ``pixels`` up and left, its bottom and right edges repeated."""
    height, width = image.shape[:2]
    pixels = min(pixels, height - 1, width - 1)
    moved = image[pixels:, pixels:]
    return np.pad(moved, ((0, pixels), (0, pixels), (0, 0)), mode="edge")


def parse_attacks(spec: str) -> list[str]:
    """Validated attack names from a comma-separated list, each once, in the order given."""
    names = list(dict.fromkeys(part.strip().lower() for part in spec.split(",") if part.strip()))
    for name in names:
        match = _PATTERN.match(name)
        bad_quality = match and match["jpeg"] and not 1 <= int(match["jpeg"]) <= 100
        bad_shift = match and match["shift"] and not 1 <= int(match["shift"]) <= 32
        if not match or bad_quality or bad_shift:
            raise ConfigError(
                f"Unknown attack {name!r}.",
                hint="Use jpegQ (quality 1-100), downF (0 < F < 1), blurS (sigma), medianK (K 3, "
                "5, 7 or 9), shiftK (K 1-32 pixels), average, regenerate[K] or known, "
                "comma-separated: e.g. jpeg85,jpeg75,down0.5,blur1,median3,shift4,average,"
                "regenerate,known.",
            )
        if match["regenerate"]:
            regeneration_keys(name)  # refuses a count out of range
        _refuse_a_null_edit(name, match)
    return names


def _refuse_a_null_edit(name: str, match: re.Match[str]) -> None:
    """A downscale to no pixels at all, or a blur that changes nothing, measures nothing."""
    if match["down"] and float(match["down"]) <= 0:
        raise ConfigError(
            f"{name!r} would shrink the photo to nothing.",
            hint="downF takes a factor between 0 and 1, e.g. down0.5 (half the size).",
        )
    if match["blur"] and float(match["blur"]) <= 0:
        raise ConfigError(
            f"{name!r} would not blur the photo at all.",
            hint="blurS takes a sigma above 0 in pixels, e.g. blur1.",
        )


def is_removal(name: str) -> bool:
    """Whether ``name`` is an attacker's removal (compared with the original itself) rather
    than an edit that the original would go through too."""
    return name in ("average", "known") or name.startswith("regenerate")


def regeneration_keys(name: str) -> int:
    """K of ``regenerateK`` (``regenerate``: :data:`REGENERATION_KEYS`)."""
    match = _PATTERN.match(name)
    if match is None or not match["regenerate"]:
        raise ConfigError(f"{name!r} is not a regeneration attack.")
    count = int(match["keys"] or REGENERATION_KEYS)
    if not 1 <= count <= MAX_REGENERATION_KEYS:
        raise ConfigError(
            f"{name!r} asks for {count} keys.",
            hint=f"regenerateK takes 1 to {MAX_REGENERATION_KEYS} keys, e.g. regenerate16.",
        )
    return count


def simple_attack(name: str) -> Attack:
    """The attack function for a name that needs no fitting (not ``average``, ``regenerate``
    nor ``known``)."""
    match = _PATTERN.match(name)
    if match is None or match["average"] or match["regenerate"] or match["known"]:
        raise ConfigError(f"{name!r} is not a simple attack.")
    kind = next(kind for kind in _SIMPLE if match[kind])
    parse, attack = _SIMPLE[kind]
    value = parse(match[kind])
    return lambda image: attack(image, value)


# Each simple attack's name (a group of _PATTERN): how its number reads, and the edit it names.
_SIMPLE: dict[str, tuple[Callable[[str], Any], Callable[[np.ndarray, Any], np.ndarray]]] = {
    "jpeg": (int, jpeg),
    "down": (float, downscale),
    "blur": (float, blur),
    "median": (int, median),
    "shift": (int, shift),
}


# --- the averaging attack ---------------------------------------------------------------------
def high_pass(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """float32 (3, H, W): the photo minus its blur; what is left of a pattern on smooth content."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))
    return (image.astype(np.float32) - blurred.astype(np.float32)).transpose(2, 0, 1) / 255.0


def fold(residual: np.ndarray, period: int | tuple[int, int]) -> np.ndarray:
    """Average a (3, H, W) residual over its tiles of ``period`` pixels (a side, or (rows,
    columns)): (3, rows, columns)."""
    rows, columns = _tile_shape(period)
    _, height, width = residual.shape
    total = np.zeros((3, rows, columns), np.float64)
    counts = np.zeros((rows, columns), np.float64)
    for top in range(0, height, rows):
        for left in range(0, width, columns):
            part = residual[:, top : top + rows, left : left + columns]
            total[:, : part.shape[1], : part.shape[2]] += part
            counts[: part.shape[1], : part.shape[2]] += 1
    return (total / np.maximum(counts, 1)).astype(np.float32)


def _tile_shape(period: int | tuple[int, int]) -> tuple[int, int]:
    return (period, period) if isinstance(period, int) else (int(period[0]), int(period[1]))


# Shrinking a view spdesk enlarged (bilinear) back to its grid: a box filter averages each
# view pixel's footprint, which gives back the most of the pattern.
_SHRINK = Image.Resampling.BOX


def working_view(image: np.ndarray, working_size: int = WORKING_SIZE) -> np.ndarray:
    """``image`` at the view spdesk lays a universal pattern on: itself when the pattern is laid
    1:1, else shrunk to the working view (whose tiled pattern spdesk resized to full size)."""
    height, width = image.shape[:2]
    layout_h, layout_w = layout_size(height, width, working_size)
    if (layout_h, layout_w) == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((layout_w, layout_h), _SHRINK))


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

    What the attacker knows from spdesk's source and the pattern file: a universal pattern is a
    ``period``-pixel tile laid on the photo's working view (short side ``working_size``; the
    photo itself when no larger), with, at most, an unknown shift and flips per photo, and that
    view is resized to full size. So: shrink each photo to its view, fold its high-pass residual
    into one period, align every fold to the running estimate (all shifts and flips), average,
    repeat; then, on a photo to clean, find the alignment of the estimate at its view, resize
    the aligned estimate to full size as spdesk does, and subtract it, scaled by least squares.

    Against a pattern that differs per photo, the folds share nothing and the estimate is noise
    that the least-squares scale shrinks to almost nothing.
    """

    def __init__(
        self,
        period: int | tuple[int, int] = PERIOD,
        working_size: int = WORKING_SIZE,
        rounds: int = 3,
        estimate_sigma: float = 1.5,
    ) -> None:
        self.period = _tile_shape(period)
        self.working_size = working_size
        self.rounds = rounds
        self.estimate_sigma = estimate_sigma  # of the high-pass the pattern is estimated from
        self.pattern: np.ndarray | None = None

    def fit(self, protected: Sequence[np.ndarray]) -> np.ndarray:
        """Estimate the shared pattern (3, rows, columns) from protected uint8 photos."""
        views = [working_view(image, self.working_size) for image in protected]
        folds = [fold(high_pass(view, self.estimate_sigma), self.period) for view in views]
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
        return self.clean(image)[0]

    def clean(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """:meth:`__call__`'s photo, and how much of the photo's fine residual the subtracted
        estimate explained (its least-squares fit's energy): what an attacker can compare."""
        if self.pattern is None:
            raise RuntimeError("fit the attack on protected photos first")
        return self._clean_with(image, self.pattern)

    def _clean_with(self, image: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, float]:
        view = working_view(image, self.working_size)
        where = align(fold(high_pass(view, self.estimate_sigma), self.period), pattern)
        laid = place(pattern, where, view.shape[0], view.shape[1])
        if view.shape != image.shape:
            laid = upscale_delta(laid, image.shape[0], image.shape[1]).transpose(2, 0, 1)
        # Scaled where it is subtracted, both sides filtered alike: the estimate is a blurred,
        # high-passed copy of the pattern, and an enlarged one loses more to the filter.
        filtered = gaussian_high_pass(laid)
        scale = least_squares_scale(high_pass(image), filtered)
        return subtract(image, laid, scale), scale * scale * float((filtered * filtered).sum())


class KnownPatternAttack(AveragingAttack):
    """The attack of someone who has the universal pattern file itself (the bundled one ships
    with spdesk): no estimate, the averaging attack's alignment and subtraction of the pattern
    (3, rows, columns; 1 = 255 levels), or, on a grey photo, of its grey form, as spdesk lays
    it there (:func:`~spdesk.core.apply.grey_delta`)."""

    def __init__(self, pattern: np.ndarray, working_size: int = WORKING_SIZE) -> None:
        super().__init__((int(pattern.shape[1]), int(pattern.shape[2])), working_size)
        self._colour = self.pattern = pattern.astype(np.float32)
        self._grey = grey_delta(self._colour)

    def clean(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        grey = is_grey(Image.fromarray(image))
        return self._clean_with(image, self._grey if grey else self._colour)


# The residuals an attacker estimates the pattern from: the view minus a slight blur (the
# pattern's finest part, little of the photo) and minus a wide one (its low and middle
# frequencies too, and more of the photo). On synthetic gradients the first wins; on the
# bundled pattern over real photos the second: its estimate correlated 0.98 with the true tile,
# against 0.88, and left the pattern 0.53x random signs, not 1.09x (audit, 2026-12-06).
ESTIMATE_SIGMAS = (1.5, 8.0)


class StrongestAveraging:
    """The averaging attack with each residual of ``ESTIMATE_SIGMAS``, fitted on the same
    photos; each photo is cleaned with the estimate that explains more of its fine residual,
    which an attacker can tell without the original (a poor estimate, mostly photo content,
    fits any one photo's residual little)."""

    def __init__(self, attacks: Sequence[AveragingAttack]) -> None:
        if not attacks:
            raise ValueError("StrongestAveraging needs at least one averaging attack")
        self.attacks = list(attacks)

    @classmethod
    def like(
        cls, period: int | tuple[int, int] = PERIOD, working_size: int = WORKING_SIZE
    ) -> StrongestAveraging:
        """One averaging attack per residual of ``ESTIMATE_SIGMAS``."""
        return cls(
            [AveragingAttack(period, working_size, estimate_sigma=s) for s in ESTIMATE_SIGMAS]
        )

    def fit(self, protected: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each attack's estimate, fitted on the same protected uint8 photos."""
        return [attack.fit(protected) for attack in self.attacks]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        cleaned = [attack.clean(image) for attack in self.attacks]
        return max(cleaned, key=lambda pair: pair[1])[0]


def least_squares_scale(residual: np.ndarray, estimate: np.ndarray) -> float:
    """The scale s >= 0 that makes ``s * estimate`` closest to ``residual`` (least squares).
    Never negative: adding the estimate back would make the protection stronger, not weaker."""
    scale = float((residual * estimate).sum() / max(float((estimate * estimate).sum()), 1e-12))
    return max(scale, 0.0)


def subtract(image: np.ndarray, estimate: np.ndarray, scale: float) -> np.ndarray:
    """uint8 ``image`` minus ``scale`` times ``estimate`` ((3, H, W), 1 = 255 levels)."""
    cleaned = image.astype(np.float32) - scale * estimate.transpose(1, 2, 0) * 255
    return np.clip(np.rint(cleaned), 0, 255).astype(np.uint8)


# --- the regeneration attack ------------------------------------------------------------------
KeyedProtect = Callable[[np.ndarray, bytes], np.ndarray]  # (uint8 photo, secret key) -> protected


def attacker_keys(count: int, seed: int = 0, avoid: Collection[bytes] = ()) -> list[bytes]:
    """``count`` distinct random keys drawn from ``seed`` (so a run can be repeated), none of
    them in ``avoid``: the keys an attacker makes with installs of their own."""
    rng = np.random.default_rng(seed)
    keys: list[bytes] = []
    while len(keys) < count:
        key = rng.bytes(KEY_BYTES)
        if key not in avoid and key not in keys:
            keys.append(key)
    return keys


def gaussian_high_pass(planes: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Float (C, H, W) planes minus their Gaussian blur (kornia's, edges reflected). Pillow's
    blur (:func:`high_pass`) takes only 8-bit images, and an estimate is a float."""
    import torch
    from kornia.filters import gaussian_blur2d

    side = 2 * max(1, round(3 * sigma)) + 1
    tensor = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    blurred = gaussian_blur2d(tensor, (side, side), (sigma, sigma), border_type="reflect")
    high: np.ndarray = (tensor - blurred)[0].numpy()
    return high


class RegenerationAttack:
    """Protect one protected photo again with keys of one's own, average the changes, subtract.

    What the attacker knows from spdesk's source: the perturbation is a function of the photo
    and a secret key, and they can run it with keys of their own. On the protected photo y, key k
    changes it by d_k = protect(y, k) - y. Whatever part of the change follows from the photo
    alone (its content, an encoder's gradient on it) is in every d_k and survives their mean;
    the part the key draws averages away (as 1/sqrt(K)). The mean is subtracted from y, scaled
    by least squares on y's high-pass residual (where a perturbation stands out of the content)
    and at most 1: the victim's change holds the shared part once.

    Args:
        protect: protects a uint8 photo with a given secret key, as spdesk would.
        keys: how many keys of one's own (K).
        seed: draws the keys, so a run can be repeated.
        avoid: keys never to use (the victim's: the attacker does not have it).
    """

    def __init__(
        self,
        protect: KeyedProtect,
        keys: int = REGENERATION_KEYS,
        *,
        seed: int = 0,
        avoid: Collection[bytes] = (),
    ) -> None:
        self.protect = protect
        self.keys = attacker_keys(keys, seed, avoid)
        self.scale = 0.0  # the last photo's, for reports and tests

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """The mean change (3, H, W; 1 = 255 levels) of protecting ``image`` with each key."""
        base = image.astype(np.float32)
        total = np.zeros_like(base)
        for key in self.keys:
            total += self.protect(image, key).astype(np.float32) - base
        return (total / (255 * len(self.keys))).transpose(2, 0, 1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The photo with the scaled estimate subtracted (uint8)."""
        estimate = self.estimate(image)
        residual = gaussian_high_pass(image.astype(np.float32).transpose(2, 0, 1) / 255)
        self.scale = min(least_squares_scale(residual, gaussian_high_pass(estimate)), 1.0)
        return subtract(image, estimate, self.scale)
