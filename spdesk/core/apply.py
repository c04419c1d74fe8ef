"""Applying a perturbation to a photo: a pure function of (image, delta, options). No torch.

At the scale the editor works at (DESIGN decision 1): a photo the editor shrinks (short side over
``working_size``, 512 by default) gets the pattern tiled over its working view and resized to full
size, so that an editor's downsizing gives the pattern back; a smaller photo gets it 1:1.

The fast path (:class:`UniversalApplier`) works on Pillow images. The pattern is quantised to whole
8-bit steps around 128 (the output is rounded to whole steps anyway and x is an integer, so
round(x + d) = x + round(d)). Where one tile spans a whole number of full-size pixels along an axis
(the short side whenever it is a multiple of 4, with a 128 px tile and a 512 working size), the
resized view repeats along that axis: one period is resized and pasted, so a 24 MP camera canvas
costs a 6 MP resample. Other sizes resize the whole view, in bands on several threads. Each
photo size's canvas is cached for the batch, and added with clipping by
:func:`~spdesk.core.pixel_add.add_canvas` (the bytes ``ImageChops.add`` gives, without holding
Python's lock); no float copy of the photo is made.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageChops

from spdesk.core.colour import is_grey, rgb_image
from spdesk.core.errors import PerturbationFileError
from spdesk.core.geometry import layout_size, tile, working_size
from spdesk.core.perturbation import BOUND_TOLERANCE, MAX_EPS, Perturbation, whole_steps
from spdesk.core.pixel_add import ZERO as _ZERO
from spdesk.core.pixel_add import add_canvas

_CANVAS_LEVELS = np.abs(np.arange(256, dtype=np.float64) - _ZERO)  # change of each canvas level


@dataclass(frozen=True)
class ApplyOptions:
    """How a perturbation is laid onto a photo.

    Attributes:
        working_size: short side in pixels of the editor's working view (default 512).
        strength: budget in 8-bit steps; ``None`` keeps the perturbation's own eps.
        randomize: random tile offset and flips per photo, so no two photos carry the identical
            pattern (harder to estimate by averaging many protected photos).
        seed: seed of that randomisation, combined with each photo's key.
        secret: a secret key (the install's, see :mod:`spdesk.core.keys`) mixed into the
            randomisation with HMAC, so that the layout cannot be recomputed from the file name
            and the public seed; empty: the layout follows from (seed, key) alone.
    """

    working_size: int = 512
    strength: float | None = None
    randomize: bool = False
    seed: int = 0
    secret: bytes = field(default=b"", repr=False)


def _layout(
    key: str, seed: int, pattern: tuple[int, int], secret: bytes = b""
) -> tuple[tuple[int, int], bool, bool]:
    message = f"{seed}:{key}".encode()
    digest = (
        hmac.new(secret, message, hashlib.sha256).digest()
        if secret
        else hashlib.sha256(message).digest()
    )
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
        offset, flip_h, flip_v = _layout(key, options.seed, perturbation.size, options.secret)
        return tile(delta, wh, ww, offset=offset, flip_h=flip_h, flip_v=flip_v)
    return tile(delta, wh, ww)


def grey_delta(delta: np.ndarray) -> np.ndarray:
    """A (3, h, w) delta with each pixel's change the mean of its three: what a grey photo
    receives, so that it stays grey (a colour pattern on black-and-white shows)."""
    return np.repeat(delta.mean(axis=0, keepdims=True), 3, axis=0)


def _quantised_canvas(
    working: np.ndarray, eps: float, what: str = "The protection computed for this photo"
) -> Image.Image:
    check_bound(working, eps, what)
    # Whole 8-bit steps, never more than the budget: rounding alone took 4.6 to changes of 5.
    whole = whole_steps(eps)
    steps = np.clip(np.rint(working.transpose(1, 2, 0) * 255.0), -whole, whole) + _ZERO
    return rgb_image(np.clip(steps, 0, 255).astype(np.uint8))


def check_bound(
    delta: np.ndarray, eps: float, what: str = "The protection computed for this photo"
) -> None:
    """Refuse a delta with invalid values or over its budget of ``eps`` 8-bit steps. Every mode
    lays its delta through here: |change| <= eps is what spdesk promises, whatever a damaged
    file or a bug upstream computed (NaN once became changes of up to 149 levels at 8)."""
    peak = float(np.abs(delta).max(initial=0.0))
    if not np.isfinite(peak):
        problem = "has invalid values (NaN or infinite)"
    elif peak > eps / 255 + BOUND_TOLERANCE:
        problem = f"reaches {peak * 255:.2f} steps, over its budget of {eps:g}"
    else:
        return
    raise PerturbationFileError(
        f"{what} {problem}: nothing was written.",
        hint="The generator or perturbation file is probably damaged: use the one that comes "
        "with spdesk, or train a new one.",
    )


def upscale_delta(working: np.ndarray, height: int, width: int) -> np.ndarray:
    """A working-view delta (3, wh, ww) resized to full size: (height, width, 3) float32.

    Bilinear, as in the fast path (never exceeds the working delta's bound).
    """
    channels = []
    for channel in working.astype(np.float32):
        image = Image.fromarray(channel)  # float32: mode "F"
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        channels.append(np.asarray(image))
    return np.stack(channels, axis=-1).astype(np.float32, copy=False)


def add_delta(image: np.ndarray, delta_hw3: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image plus a float delta (H, W, 3) in pixel units: clipped, rounded uint8."""
    out = image.astype(np.float32) + delta_hw3 * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def apply_working_delta_pil(
    image: Image.Image, working: np.ndarray, *, eps: float = MAX_EPS
) -> Image.Image:
    """Fast path: add a working-view delta (3, wh, ww) to an RGB Pillow image of any size.
    ``eps``: the delta's budget in 8-bit steps (see :func:`check_bound`)."""
    if image.mode != "RGB":
        raise ValueError(f"apply expects an RGB image, got mode {image.mode}")
    canvas = _quantised_canvas(working, eps)
    if canvas.size != image.size:
        # Bilinear: never overshoots the budget, and the cheapest smooth upscale in Pillow.
        canvas = canvas.resize(image.size, Image.Resampling.BILINEAR)
    return add_canvas(image, canvas)


def apply_to_pil(
    image: Image.Image,
    perturbation: Perturbation,
    options: ApplyOptions = ApplyOptions(),
    key: str = "",
) -> Image.Image:
    """Protect an RGB Pillow image; returns a new image of the same size."""
    return UniversalApplier(perturbation, options, cache_bytes=0).apply(image, key)[0]


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
    result = apply_to_pil(rgb_image(image), perturbation, options, key)
    return np.asarray(result)


def apply_working_delta(
    image: np.ndarray, working: np.ndarray, *, eps: float = MAX_EPS
) -> np.ndarray:
    """Per-photo fine-tuning result: add a working-view delta (3, wh, ww) to a uint8 (H, W, 3)
    (``eps`` as in :func:`apply_working_delta_pil`)."""
    return np.asarray(apply_working_delta_pil(rgb_image(image), working, eps=eps))


Figures = tuple[float | None, int]  # PSNR in dB (None: unchanged), largest change in 8-bit steps


class UniversalApplier:
    """Lays a universal perturbation onto photos of any size; the one implementation of it.

    The quantised pattern is pasted 1:1 over a photo the editor does not shrink; over a larger
    one, the pattern tiled over the working view is resized to full size (see the module
    docstring for how that stays cheap). A batch repeats a few photo sizes (one camera, two
    orientations), so the full-size canvas of each size and its figures are cached within
    ``cache_bytes``: per photo that leaves one saturating add. Randomised layouts (a different
    tiling per photo) build theirs each time. Thread-safe: a job's workers share one applier.

    Args:
        perturbation: the universal perturbation.
        options: working size, strength, randomisation.
        cache_bytes: memory for cached full-size canvases (256 MiB holds three 24 MP ones).
    """

    def __init__(
        self,
        perturbation: Perturbation,
        options: ApplyOptions = ApplyOptions(),
        cache_bytes: int = 256 << 20,
    ) -> None:
        self.perturbation = perturbation
        self.options = options
        self.cache_bytes = cache_bytes
        self._pattern = _quantised_canvas(
            perturbation.at_strength(options.strength),
            options.strength or perturbation.eps,
            f"The pattern of {perturbation.name}",
        )
        self._full: OrderedDict[tuple[int, int], tuple[Image.Image, Figures]] = OrderedDict()
        self._building: dict[tuple[int, int], threading.Lock] = {}
        self._lock = threading.Lock()
        channels = np.asarray(self._pattern)
        self._colour = not (channels == channels[..., :1]).all()
        self._grey: UniversalApplier | None = None

    def _for_grey(self) -> UniversalApplier:
        """The applier for grey photos: the pattern's :func:`grey_delta`. The two share the
        canvas cache's memory: each gets half."""
        with self._lock:
            if self._grey is None:
                delta = grey_delta(self.perturbation.at_strength(self.options.strength))
                grey = Perturbation(delta, self.options.strength or self.perturbation.eps)
                self.cache_bytes //= 2  # the next canvas kept evicts down to it
                self._grey = UniversalApplier(grey, replace(self.options, strength=None),
                    self.cache_bytes)  # fmt: skip
            return self._grey

    def apply(self, image: Image.Image, key: str = "") -> tuple[Image.Image, Figures]:
        """The protected RGB image and the figures of the pattern as added.

        Figures: PSNR (dB) and largest change of the canvas; clipping at black or white can only
        make the real change smaller.
        """
        if image.mode != "RGB":
            raise ValueError(f"apply expects an RGB image, got mode {image.mode}")
        if self._colour and is_grey(image):
            return self._for_grey().apply(image, key)
        if self.options.randomize:
            canvas, figures = self._build(image.size, key)
        elif self._fits_base(image.size):
            canvas, figures = self._base.crop((0, 0, *image.size)), self._tiled_figures(image.size)
        else:
            canvas, figures = self.full_canvas(image.size)
        return add_canvas(image, canvas), figures

    def _fits_base(self, size: tuple[int, int]) -> bool:
        """Whether a photo of ``size`` gets the pattern 1:1 and fits :attr:`_base`."""
        width, height = size
        side = 2 * self.options.working_size
        laid = layout_size(height, width, self.options.working_size) == (height, width)
        return laid and width <= side and height <= side

    @functools.cached_property
    def _base(self) -> Image.Image:
        """The pattern tiled 1:1 over twice the working size square. Most photos no larger than
        the editor's view (an ImageNet sample, a web image) are a crop of it: one copy instead
        of a canvas built and cached for each of their many sizes."""
        side = 2 * self.options.working_size
        return _tiled(self._pattern, (side, side))

    def canvas(self, size: tuple[int, int], key: str = "") -> Image.Image:
        """The quantised pattern laid over a photo of ``size`` (width, height), at full size."""
        return self._build(size, key)[0]

    def _build(self, size: tuple[int, int], key: str) -> tuple[Image.Image, Figures]:
        """The canvas for ``size`` and its figures, each the cheapest way its layout allows."""
        width, height = size
        layout_h, layout_w = layout_size(height, width, self.options.working_size)
        offset, flip_h, flip_v = (0, 0), False, False
        if self.options.randomize:
            offset, flip_h, flip_v = _layout(
                key, self.options.seed, self.perturbation.size, self.options.secret
            )
        pattern = self._variant(flip_h, flip_v)
        if (layout_w, layout_h) != size:
            return _resized_layout(pattern, size, (layout_w, layout_h), offset)
        canvas = _tiled(pattern, size, offset)
        if self.options.randomize:
            return canvas, canvas_figures(canvas)
        return canvas, self._tiled_figures(size)

    def full_canvas(self, size: tuple[int, int]) -> tuple[Image.Image, Figures]:
        """The (non-randomised) canvas for ``size`` (width, height) and its figures; cached."""
        with self._lock:
            cached = self._full.get(size)
            if cached is not None:
                self._full.move_to_end(size)
                return cached
            building = self._building.setdefault(size, threading.Lock())
        with building:  # workers with photos of one size build its canvas once
            with self._lock:
                cached = self._full.get(size)
            if cached is None:
                cached = self._build(size, "")
                self._remember(size, cached)
        with self._lock:
            self._building.pop(size, None)
        return cached

    def _tiled_figures(self, size: tuple[int, int]) -> Figures:
        """The figures of the pattern laid 1:1 from its corner over ``size``, from the pattern
        alone: whole tiles plus the cut-off right and bottom ones, each a rectangle at the
        pattern's corner, read from prefix sums."""
        width, height = size
        squares, largest = self._prefix
        ph, pw = squares.shape[0] - 1, squares.shape[1] - 1
        nx, rx = divmod(width, pw)
        ny, ry = divmod(height, ph)
        parts = list(_pieces(pw, ph, nx, rx, ny, ry))
        total = sum(int(squares[h, w]) * times for w, h, times in parts)
        peak = max(int(largest[h, w]) for w, h, _ in parts)
        mse = total / (3 * width * height)
        return (None if mse == 0 else 10 * math.log10(255.0**2 / mse)), peak

    @functools.cached_property
    def _prefix(self) -> tuple[np.ndarray, np.ndarray]:
        """Sums of squared changes and largest changes over each rectangle at the corner."""
        change = np.abs(np.asarray(self._pattern, dtype=np.int64) - _ZERO)
        squares = np.zeros((change.shape[0] + 1, change.shape[1] + 1), np.int64)
        squares[1:, 1:] = (change**2).sum(axis=2).cumsum(axis=0).cumsum(axis=1)
        largest = np.zeros_like(squares)
        peaks = change.max(axis=2)
        largest[1:, 1:] = np.maximum.accumulate(np.maximum.accumulate(peaks, axis=0), axis=1)
        return squares, largest

    def _remember(self, size: tuple[int, int], entry: tuple[Image.Image, Figures]) -> None:
        with self._lock:
            self._full[size] = entry
            while sum(3 * w * h for w, h in self._full) > self.cache_bytes and len(self._full) > 1:
                self._full.popitem(last=False)
            if 3 * size[0] * size[1] > self.cache_bytes:
                self._full.pop(size, None)

    def _variant(self, flip_h: bool, flip_v: bool) -> Image.Image:
        pattern = self._pattern
        if flip_h:
            pattern = pattern.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if flip_v:
            pattern = pattern.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        return pattern


# Bilinear: never overshoots the budget, and the cheapest smooth upscale in Pillow.
_UPSCALE = Image.Resampling.BILINEAR
_BAND_PIXELS = 4_000_000  # canvases from this size up are resized in bands on several threads


def _resized_layout(
    pattern: Image.Image,
    size: tuple[int, int],
    layout: tuple[int, int],
    offset: tuple[int, int],
) -> tuple[Image.Image, Figures]:
    """``pattern`` tiled over the ``layout`` (width, height) view, resized to ``size``; figures.

    Where one tile spans a whole number of full-size pixels along an axis, the resized view
    repeats along it, so only one period (with the neighbouring tiles' pixels around it for the
    seams) is resized, then repeated; otherwise the whole view is resized, in bands.
    """
    (width, height), (layout_w, layout_h) = size, layout
    ph, pw = pattern.height, pattern.width
    if (ph * height) % layout_h == 0:
        source = _tiled(pattern, (layout_w, 3 * ph), offset)
        box = (0, ph, layout_w, 2 * ph)
        period = source.resize((width, ph * height // layout_h), _UPSCALE, box=box)
        return _tiled(period, size), _repeat_figures(period, size)
    if (pw * width) % layout_w == 0:
        source = _tiled(pattern, (3 * pw, layout_h), offset)
        box = (pw, 0, 2 * pw, layout_h)
        period = source.resize((pw * width // layout_w, height), _UPSCALE, box=box)
        return _tiled(period, size), _repeat_figures(period, size)
    canvas = _resize_in_bands(_tiled(pattern, layout, offset), size)
    return canvas, canvas_figures(canvas)


def _tiled(
    tile: Image.Image, size: tuple[int, int], offset: tuple[int, int] = (0, 0)
) -> Image.Image:
    """``tile`` repeated over ``size`` (width, height), starting ``offset`` (rows, columns) in."""
    width, height = size
    canvas = Image.new("RGB", size, None)  # not filled: the tiles cover it
    for y in range(-(offset[0] % tile.height), height, tile.height):
        for x in range(-(offset[1] % tile.width), width, tile.width):
            canvas.paste(tile, (x, y))
    return canvas


def _resize_in_bands(
    view: Image.Image, size: tuple[int, int], bands: int | None = None
) -> Image.Image:
    """``view.resize(size, BILINEAR)``, with bands of rows resized on several threads.

    A 24 MP canvas takes about 0.18 s on one core; Pillow releases the GIL while resampling, so
    bands run in parallel. Each band resizes the source box that maps onto its rows, which gives
    the pixels of one whole resize (the resampler reads neighbours outside the box), up to a
    rare one-step difference from float rounding of the weights.
    """
    width, height = size
    if bands is None:
        bands = min(os.cpu_count() or 1, 8, max(1, width * height // _BAND_PIXELS))
    if bands == 1:
        return view.resize(size, _UPSCALE)
    scale = view.height / height
    edges = [round(i * height / bands) for i in range(bands + 1)]
    canvas = Image.new("RGB", size, None)  # not filled: the bands cover it

    def band(top: int, bottom: int) -> None:
        box = (0.0, top * scale, float(view.width), bottom * scale)
        part = view.resize((width, bottom - top), _UPSCALE, box=box)
        canvas.paste(part, (0, top))

    with ThreadPoolExecutor(max_workers=bands, thread_name_prefix="spdesk-resize") as pool:
        for future in [pool.submit(band, t, b) for t, b in itertools.pairwise(edges)]:
            future.result()
    return canvas


def _pieces(
    unit_w: int, unit_h: int, nx: int, rx: int, ny: int, ry: int
) -> Iterator[tuple[int, int, int]]:
    """A unit repeated from the corner, nx (+ rx pixels) across and ny (+ ry) down, as the
    distinct rectangles at the unit's corner it is made of: (width, height, how many)."""
    for w, h, times in ((unit_w, unit_h, nx * ny), (rx, unit_h, ny), (unit_w, ry, nx), (rx, ry, 1)):
        if w and h and times:
            yield w, h, times


def _repeat_figures(unit: Image.Image, size: tuple[int, int]) -> Figures:
    """The figures of ``unit`` repeated from the corner over ``size``, from histograms of the
    unit and of its cut-off parts (a fraction of the canvas's pixels)."""
    width, height = size
    nx, rx = divmod(width, unit.width)
    ny, ry = divmod(height, unit.height)
    counts = np.zeros(768, np.float64)
    for w, h, times in _pieces(unit.width, unit.height, nx, rx, ny, ry):
        counts += times * np.asarray(unit.crop((0, 0, w, h)).histogram(), np.float64)
    return _figures(counts.reshape(3, 256).sum(axis=0), _CANVAS_LEVELS)


def canvas_figures(canvas: Image.Image) -> Figures:
    """PSNR (dB) and largest change of a quantised canvas as added, from one histogram pass."""
    counts = np.asarray(canvas.histogram(), dtype=np.float64).reshape(3, 256).sum(axis=0)
    return _figures(counts, _CANVAS_LEVELS)


def change_figures(original: Image.Image, protected: Image.Image) -> Figures:
    """PSNR (dB; None if identical) and largest change (8-bit steps) over the RGB channels.

    From the histogram of the difference image: two C passes, no float copy of the photo.
    """
    a = original.convert("RGB") if original.mode != "RGB" else original
    b = protected.convert("RGB") if protected.mode != "RGB" else protected
    counts = np.asarray(ImageChops.difference(a, b).histogram(), dtype=np.float64)
    return _figures(counts.reshape(3, 256).sum(axis=0), np.arange(256, dtype=np.float64))


_BAND_VALUES = 1 << 22  # colour values compared at a time: int16 bands of 8 MB, not gigabytes


def photo_change(photo: np.ndarray, protected: np.ndarray) -> tuple[float | None, int]:
    """PSNR in dB over the RGB values (None when identical) and the largest change of one
    value, as protect reports them; row band by band, so a 48 MP photo needs no full-size
    integer or float copy."""
    rows = max(1, _BAND_VALUES // (math.prod(photo.shape[1:]) or 1))
    squares, largest = 0, 0
    for top in range(0, len(photo), rows):
        change = protected[top : top + rows].astype(np.int16) - photo[top : top + rows]
        squares += int(np.square(change, dtype=np.int32).sum(dtype=np.int64))
        largest = max(largest, int(np.abs(change).max(initial=0)))
    if squares == 0:
        return None, largest
    return 10 * math.log10(255**2 * photo.size / squares), largest


def _figures(counts: np.ndarray, levels: np.ndarray) -> Figures:
    mse = float((counts * levels**2).sum() / max(counts.sum(), 1.0))
    peak = int(levels[counts > 0].max()) if counts.any() else 0
    return (None if mse == 0 else 10 * math.log10(255.0**2 / mse)), peak
