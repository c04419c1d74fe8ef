"""Applying a perturbation at the editor's scale: bounds, sizes, randomisation, purity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spdesk.core.apply import (
    ApplyOptions,
    apply_perturbation,
    apply_working_delta,
    upscale_delta,
    working_delta,
)
from spdesk.core.geometry import tile, working_size
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


def test_editor_downsizing_recovers_the_pattern() -> None:
    # A 2048x1536 photo is protected at full size; the editor resizes it to 512 short side.
    image = np.full((1536, 2048, 3), 128, np.uint8)
    pert = _pert(8, size=64)
    out = apply_perturbation(image, pert)
    seen = np.asarray(Image.fromarray(out).resize((680, 512), Image.Resampling.BICUBIC), np.float32)
    recovered = (seen - 128) / 255
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


def test_apply_refuses_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        apply_perturbation(np.zeros((4, 4, 3), np.float32), _pert())
