"""Applying a perturbation at the editor's scale: bounds, sizes, randomisation, purity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spdesk.core.apply import (
    ApplyOptions,
    UniversalApplier,
    apply_perturbation,
    apply_working_delta,
    change_figures,
    upscale_delta,
    working_delta,
)
from spdesk.core.colour import is_grey, rgb_image
from spdesk.core.geometry import layout_size, tile, working_size
from spdesk.core.perturbation import Perturbation


def _pert(eps: float = 8, size: int = 64, seed: int = 0) -> Perturbation:
    rng = np.random.default_rng(seed)
    delta = rng.choice([-1.0, 1.0], size=(3, size, size)) * eps / 255
    return Perturbation(delta=delta.astype(np.float32), eps=eps)


def _photo(height: int, width: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(20, 236, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1, 1), (1, 1)),
        ((8, 10000), (8, 10000)),
        ((300, 200), (304, 200)),
        ((3000, 4000), (512, 680)),
        ((4000, 3000), (680, 512)),
        ((512, 512), (512, 512)),
        ((6000, 4000), (768, 512)),
    ],
)
def test_working_size_short_side_512_aligned_never_upscaled(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert working_size(*size) == expected


def test_tile_repeats_and_offsets() -> None:
    delta = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    tiled = tile(delta, 7, 9)
    np.testing.assert_array_equal(tiled[:, 3:6, 4:8], delta)
    shifted = tile(delta, 3, 4, offset=(1, 2))
    np.testing.assert_array_equal(shifted, np.roll(delta, (-1, -2), axis=(1, 2)))


@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 3), (8, 10000), (10000, 8), (300, 200), (600, 900), (1000, 750)]
)
def test_apply_keeps_size_and_respects_the_bound(shape: tuple[int, int]) -> None:
    image = _photo(*shape)
    out = apply_perturbation(image, _pert(8))
    assert out.shape == image.shape and out.dtype == np.uint8
    change = out.astype(int) - image.astype(int)
    assert np.abs(change).max() <= 8
    assert np.abs(change).mean() > 1, "the perturbation must actually be added"


def test_apply_clips_at_black_and_white() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    image[:32] = 255
    out = apply_perturbation(image, _pert(8))
    assert out.dtype == np.uint8
    assert (out[:32] >= 247).all() and (out[32:] <= 8).all()


def test_apply_at_working_size_equals_tiled_delta() -> None:
    image = _photo(128, 192)
    pert = _pert(8, size=64)
    out = apply_perturbation(image, pert)
    expected = np.clip(
        image.astype(int)
        + np.rint(tile(pert.delta, 128, 192) * 255).astype(int).transpose(1, 2, 0),
        0,
        255,
    )
    np.testing.assert_array_equal(out, expected)


def test_photos_no_larger_than_the_working_view_get_the_pattern_one_to_one() -> None:
    # 375x500 is not 8-pixel aligned: no resample to the aligned view, the pattern lands 1:1.
    image = _photo(375, 500)
    pert = _pert(8, size=64)
    assert layout_size(375, 500) == (375, 500)
    out = apply_perturbation(image, pert)
    steps = np.rint(tile(pert.delta, 375, 500) * 255).astype(int).transpose(1, 2, 0)
    np.testing.assert_array_equal(out, np.clip(image.astype(int) + steps, 0, 255))


@pytest.mark.parametrize("size", [(1024, 300), (1025, 300), (300, 1024), (300, 1025), (1, 1)])
def test_one_to_one_photos_inside_and_beyond_the_pre_tiled_base_get_the_same_tiling(
    size: tuple[int, int],
) -> None:
    width, height = size  # the base is twice the working size square: 1024 x 1024 here
    image = Image.fromarray(_photo(height, width), mode="RGB")
    pert = _pert(8, size=48)  # 1024 is no whole number of tiles
    applier = UniversalApplier(pert, ApplyOptions(), cache_bytes=0)
    out, figures = applier.apply(image)
    steps = np.rint(tile(pert.delta, height, width) * 255).astype(int).transpose(1, 2, 0)
    expected = np.clip(np.asarray(image).astype(int) + steps, 0, 255)
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert figures == change_figures(image, out)


def _resized_working_view(pert: Perturbation, height: int, width: int, short: int) -> np.ndarray:
    """The reference layout: quantise, tile over the whole working view, resize it to full size."""
    wh, ww = working_size(height, width, short)
    steps = np.rint(tile(pert.delta, wh, ww) * 255).transpose(1, 2, 0) + 128
    view = Image.fromarray(steps.astype(np.uint8), mode="RGB")
    return np.asarray(view.resize((width, height), Image.Resampling.BILINEAR)).astype(int) - 128


def test_resizing_one_tile_equals_resizing_the_whole_working_view() -> None:
    # 96x192 at working size 32: view 32x64, scale 3, whole-pixel tiles (8 px -> 24 px).
    pert = _pert(8, size=8)
    canvas = UniversalApplier(pert, ApplyOptions(working_size=32)).canvas((192, 96))
    expected = _resized_working_view(pert, 96, 192, 32)
    # Inside; at the photo's edge a whole-view resize clamps where the tiling wraps around.
    inner = np.s_[3:-3, 3:-3]
    np.testing.assert_array_equal((np.asarray(canvas).astype(int) - 128)[inner], expected[inner])


@pytest.mark.parametrize(
    "size",
    [
        (1000, 750),  # no whole-pixel period: the whole view is resized
        (500, 376),  # whole-pixel period down the photo: one band of rows, repeated
        (376, 500),  # whole-pixel period across the photo: one band of columns, repeated
        (750, 500),  # both
    ],
)
def test_canvas_equals_resizing_the_whole_working_view(size: tuple[int, int]) -> None:
    width, height = size
    pert = _pert(8, size=16, seed=2)
    canvas = np.asarray(UniversalApplier(pert, ApplyOptions(working_size=64)).canvas(size))
    change = canvas.astype(int) - 128
    assert change.shape == (height, width, 3)
    assert np.abs(change).max() <= 8
    expected = _resized_working_view(pert, height, width, 64)
    # Inside (at the edge a whole-view resize clamps where a repeated period wraps around),
    # equal but for float rounding of the resampling weights.
    inner = np.s_[20:-20, 20:-20]
    differ = change[inner] != expected[inner]
    assert np.abs(change[inner] - expected[inner]).max() <= 1
    assert differ.mean() < 0.001


def test_editor_downsizing_recovers_the_pattern() -> None:
    # A 2048x1536 photo is protected at full size; the editor resizes it to 512 short side.
    image = np.full((1536, 2048, 3), (128, 120, 136), np.uint8)  # flat, not grey: all colours
    pert = _pert(8, size=64)
    out = apply_perturbation(image, pert)
    seen = np.asarray(Image.fromarray(out).resize((680, 512), Image.Resampling.BICUBIC), np.float32)
    recovered = (seen - image[:512, :680]) / 255
    target = tile(pert.delta, 512, 680).transpose(1, 2, 0)
    corr = np.corrcoef(recovered.ravel(), target.ravel())[0, 1]
    assert corr > 0.8, f"downsized protection correlates only {corr:.2f} with the pattern"


def test_full_resolution_tiling_would_be_averaged_away() -> None:
    # The reason for decision 1: a pattern tiled at full resolution does not survive downsizing.
    image = np.full((1536, 2048, 3), 128, np.uint8)
    pert = _pert(8, size=64)
    naive = np.clip(image + np.rint(tile(pert.delta, 1536, 2048) * 255).transpose(1, 2, 0), 0, 255)
    seen = np.asarray(
        Image.fromarray(naive.astype(np.uint8)).resize((680, 512), Image.Resampling.BICUBIC),
        np.float32,
    )
    target = tile(pert.delta, 512, 680).transpose(1, 2, 0)
    corr = np.corrcoef(((seen - 128) / 255).ravel(), target.ravel())[0, 1]
    assert abs(corr) < 0.2


def test_strength_scales_the_change() -> None:
    image = _photo(64, 64)
    out = apply_perturbation(image, _pert(8), ApplyOptions(strength=4))
    assert np.abs(out.astype(int) - image).max() <= 4


def test_randomize_differs_per_photo_key_but_is_reproducible() -> None:
    image = _photo(96, 96)
    options = ApplyOptions(randomize=True, seed=3)
    a = apply_perturbation(image, _pert(), options, key="a.jpg")
    b = apply_perturbation(image, _pert(), options, key="b.jpg")
    again = apply_perturbation(image, _pert(), options, key="a.jpg")
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, again)


def test_apply_is_pure() -> None:
    image = _photo(40, 50)
    copy = image.copy()
    pert = _pert()
    before = pert.delta.copy()
    apply_perturbation(image, pert, ApplyOptions(randomize=True))
    np.testing.assert_array_equal(image, copy)
    np.testing.assert_array_equal(pert.delta, before)


def test_working_delta_and_upscale_shapes_and_bound() -> None:
    pert = _pert(8)
    working = working_delta(pert, 3000, 4000)
    assert working.shape == (3, 512, 680)
    full = upscale_delta(working, 900, 1200)
    assert full.shape == (900, 1200, 3)
    assert np.abs(full).max() <= 8 / 255 + 1e-6


def test_apply_working_delta_adds_a_finetuned_delta() -> None:
    image = _photo(64, 64)
    working = np.full((3, 64, 64), 3 / 255, np.float32)
    out = apply_working_delta(image, working)
    np.testing.assert_array_equal(out.astype(int), np.clip(image.astype(int) + 3, 0, 255))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 9 / 255], ids=["nan", "inf", "over"])
def test_a_delta_that_is_not_finite_or_over_its_budget_is_never_laid_on_a_photo(
    bad: float,
) -> None:
    # A generator's NaN delta was cast to uint8: copies changed by up to 149 levels at
    # strength 8. The bound is the product's promise: it is checked where every mode lays one.
    from spdesk.core.apply import apply_working_delta_pil
    from spdesk.core.errors import PerturbationFileError

    working = np.full((3, 16, 16), 8 / 255, np.float32)
    working[1, 2, 3] = bad
    image = Image.fromarray(_photo(16, 16), mode="RGB")
    with pytest.raises(PerturbationFileError, match="nothing was written"):
        apply_working_delta_pil(image, working, eps=8)
    pattern = Perturbation(delta=working, eps=8)  # built directly: no file check on the way
    with pytest.raises(PerturbationFileError, match="nothing was written"):
        UniversalApplier(pattern).apply(image)
    with pytest.raises(PerturbationFileError, match="nothing was written"):
        apply_working_delta(_photo(16, 16), working * 8)  # over 64, the largest budget
    apply_working_delta_pil(image, np.full((3, 16, 16), 8 / 255, np.float32), eps=8)


def test_apply_refuses_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        apply_perturbation(np.zeros((4, 4, 3), np.float32), _pert())


@pytest.mark.parametrize("working", [16, 512])
@pytest.mark.parametrize("size", [(1, 1), (10000, 8), (53, 37), (700, 500), (1200, 1000)])
def test_applier_cached_canvas_gives_the_fresh_result_and_exact_figures(
    working: int, size: tuple[int, int]
) -> None:
    pert = _pert(8, size=24)
    options = ApplyOptions(working_size=working, strength=5.0)
    image = Image.fromarray(_photo(size[1], size[0]), mode="RGB")
    fresh = UniversalApplier(pert, options, cache_bytes=0)
    reference, _ = fresh.apply(image)
    applier = UniversalApplier(pert, options)
    for _ in range(2):  # the second call takes the cached canvas
        fast, figures = applier.apply(image, "key")
        assert np.array_equal(np.asarray(fast), np.asarray(reference))
        # No clipping on mid-range pixels: the canvas figures are the exact change.
        assert figures == change_figures(image, fast)
        assert figures[1] == 5


def test_canvas_cache_stays_within_its_budget() -> None:
    applier = UniversalApplier(_pert(8, size=24), ApplyOptions(), cache_bytes=3 * 100 * 100 * 2)
    for size in [(100, 100), (100, 90), (100, 80), (100, 100)]:
        applier.full_canvas(size)
    assert list(applier._full) == [(100, 80), (100, 100)]  # least recently used went first
    applier.full_canvas((300, 300))  # larger than the whole budget: not kept
    assert (300, 300) not in applier._full


def test_randomised_layouts_shift_and_flip_the_same_pattern() -> None:
    pert = _pert(8, size=16)
    options = ApplyOptions(randomize=True, seed=1)
    applier = UniversalApplier(pert, options)
    steps = np.rint(pert.delta * 255).astype(int) + 128
    variants = {
        np.asarray(p).tobytes()
        for p in (steps, steps[:, ::-1], steps[:, :, ::-1], steps[:, ::-1, ::-1])
    }
    seen = set()
    for key in ("a", "b", "c", "d", "e", "f"):
        canvas = np.asarray(applier.canvas((48, 32), key)).transpose(2, 0, 1).astype(int)
        found = [
            (dy, dx)
            for dy in range(16)
            for dx in range(16)
            if np.roll(canvas, (dy, dx), axis=(1, 2))[:, :16, :16].tobytes() in variants
        ]
        assert found, f"layout for {key!r} is not a shifted or flipped copy of the pattern"
        seen.add(canvas.tobytes())
    assert len(seen) > 1


@pytest.mark.parametrize(
    ("pattern", "working", "size"),
    [
        (24, 512, (1, 1)),  # 1:1 layouts: from prefix sums of the pattern
        (24, 512, (3, 200)),
        (24, 512, (48, 72)),
        (24, 512, (500, 375)),
        (24, 512, (511, 13)),
        (24, 16, (48, 36)),  # a repeated band of rows
        (24, 16, (50, 37)),  # a repeated band of columns
        (20, 16, (53, 37)),  # the whole view resized
    ],
)
def test_canvas_figures_match_a_pass_over_the_canvas(
    pattern: int, working: int, size: tuple[int, int]
) -> None:
    from spdesk.core.apply import canvas_figures

    pert = _pert(8, size=pattern, seed=5)
    applier = UniversalApplier(pert, ApplyOptions(working_size=working, strength=6.0))
    _canvas, figures = applier.full_canvas(size)
    assert figures == canvas_figures(applier.canvas(size))


def test_canvases_resized_in_bands_on_threads_equal_one_resize() -> None:
    from spdesk.core.apply import _resize_in_bands

    rng = np.random.default_rng(3)
    view = Image.fromarray(rng.integers(120, 137, (64, 96, 3), dtype=np.uint8), mode="RGB")
    size = (3000, 2000)
    banded = np.asarray(_resize_in_bands(view, size, bands=3)).astype(int)
    whole = np.asarray(view.resize(size, Image.Resampling.BILINEAR)).astype(int)
    # The same weights up to float rounding (a band's box starts at a fractional row).
    assert np.abs(banded - whole).max() <= 1
    assert (banded != whole).mean() < 0.01


@pytest.mark.parametrize("size", [(1000, 750), (500, 376), (376, 500), (750, 500)])
def test_randomised_canvases_of_large_photos_resize_the_shifted_view(
    size: tuple[int, int],
) -> None:
    from spdesk.core.apply import _layout

    width, height = size
    pert = _pert(8, size=16, seed=4)
    options = ApplyOptions(working_size=64, randomize=True, seed=7)
    canvas = np.asarray(UniversalApplier(pert, options).canvas(size, "IMG_0001.jpg"))
    offset, flip_h, flip_v = _layout("IMG_0001.jpg", 7, pert.size)
    wh, ww = working_size(height, width, 64)
    view = tile(pert.delta, wh, ww, offset=offset, flip_h=flip_h, flip_v=flip_v)
    steps = np.rint(view * 255).transpose(1, 2, 0) + 128
    resized = Image.fromarray(steps.astype(np.uint8), mode="RGB").resize(
        size, Image.Resampling.BILINEAR
    )
    expected = np.asarray(resized).astype(int)
    inner = np.s_[20:-20, 20:-20]
    assert np.abs(canvas.astype(int)[inner] - expected[inner]).max() <= 1


@pytest.mark.parametrize("randomize", [False, True])
@pytest.mark.parametrize("size", [(40, 56), (900, 1200)])  # laid 1:1, and resized from the view
def test_a_grey_photo_gets_the_patterns_luminance_and_stays_grey(
    size: tuple[int, int], randomize: bool
) -> None:
    grey = np.repeat(_photo(*size)[..., :1], 3, axis=2)
    applier = UniversalApplier(_pert(), ApplyOptions(working_size=64, randomize=randomize,
        strength=6))  # fmt: skip
    out, (_psnr, largest) = applier.apply(Image.fromarray(grey), "a.png")
    pixels = np.asarray(out, np.int16)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    change = np.abs(pixels - grey)
    assert 0 < change.max() <= largest <= 6
    assert applier.cache_bytes + applier._for_grey().cache_bytes <= 256 << 20  # one budget
    # A colour photo still gets the colour pattern.
    colour, _ = applier.apply(Image.fromarray(_photo(*size)), "a.png")
    channels = np.asarray(colour, np.int16) - _photo(*size)
    assert (channels[..., 0] != channels[..., 1]).any()


def test_is_grey_needs_every_pixel_grey() -> None:
    grey = np.repeat(_photo(30, 20)[..., :1], 3, axis=2)
    assert is_grey(Image.fromarray(grey))
    assert is_grey(Image.fromarray(grey).convert("RGBA"))  # alpha is not colour
    for y, x in [(0, 0), (7, 11), (29, 19)]:  # a sampled row, and rows the first look skips
        tinted = grey.copy()
        tinted[y, x, 2] ^= 1
        assert not is_grey(Image.fromarray(tinted))


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5, 3), np.float32)],
    ids=["grey", "rgba", "float"],
)
def test_arrays_that_are_not_rgb_photos_are_refused(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\) RGB array"):
        rgb_image(array)


def test_an_rgb_array_becomes_an_rgb_image_with_its_pixels() -> None:
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    image = rgb_image(pixels)
    assert image.mode == "RGB" and image.size == (5, 4)
    assert np.array_equal(np.asarray(image), pixels)


def test_a_delta_laid_on_a_photo_never_goes_past_a_fractional_budget() -> None:
    """Photo mode lays its delta here: 4.55 steps under a budget of 4.6 rounded to 5."""
    from PIL import Image

    from spdesk.core.apply import apply_working_delta_pil

    photo = Image.new("RGB", (32, 24), (120, 120, 120))
    working = np.full((3, 24, 32), 4.55 / 255, dtype=np.float32)
    working[:, ::2] *= -1
    protected = apply_working_delta_pil(photo, working, eps=4.6)
    change = np.abs(np.asarray(protected, np.int16) - 120)
    assert change.max() == 4
