"""Adding a quantised canvas outside Python's lock gives Pillow's bytes, on every path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops
from PIL import _imaging as pillow_core

from spdesk.core import pixel_add
from spdesk.core.apply import ApplyOptions, UniversalApplier, apply_working_delta_pil, working_delta
from spdesk.core.imageio import read_image
from spdesk.core.perturbation import Perturbation
from spdesk.core.pixel_add import add_canvas, allow_lending, lent_pixels

needs_arrow = pytest.mark.skipif(
    not pixel_add._LENDS, reason="Pillow before 11.3 lends no pixels to spdesk"
)


def _pillow_add(image: Image.Image, canvas: Image.Image) -> np.ndarray:
    return np.asarray(ImageChops.add(image, canvas, scale=1.0, offset=-128))


def _pair(width: int, height: int, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """A photo with black and white runs (where the sum clips) and a canvas of +-changes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[: height // 3] = 0
    pixels[height // 3 : 2 * height // 3 : 2] = 255
    changes = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)  # -128..127 around 128
    return Image.fromarray(pixels), Image.fromarray(changes)


@pytest.fixture
def several_blocks() -> Iterator[None]:
    """Pillow allocating images in blocks of 64 KiB, so a larger image cannot be lent."""
    allow_lending()
    before = pillow_core.get_block_size()
    pillow_core.set_block_size(1 << 16)
    yield
    pillow_core.set_block_size(before)


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (500, 375), (1031, 2900)])
def test_the_sum_is_pillows_to_the_byte_clipped_at_black_and_white(size: tuple[int, int]) -> None:
    image, canvas = _pair(*size)
    assert np.array_equal(np.asarray(add_canvas(image, canvas)), _pillow_add(image, canvas))


@needs_arrow
def test_a_decoded_photo_larger_than_pillows_default_block_is_lent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2400 x 1800 x 4 bytes: 17 MB, over Pillow's 16 MiB default block
    path = tmp_path / "large.jpg"
    Image.fromarray(np.full((1800, 2400, 3), 90, np.uint8)).save(path, quality=90)
    monkeypatch.setattr(pixel_add, "_allowed", False)  # as in a fresh process: reading allows it
    before = pillow_core.get_block_size()
    pillow_core.set_block_size(16 * 1024 * 1024)
    try:
        photo = read_image(path).image
    finally:
        pillow_core.set_block_size(max(before, pillow_core.get_block_size()))
    with lent_pixels(photo) as pixels:
        assert pixels is not None and pixels.shape == (1800, 2400, 4)
        assert np.array_equal(pixels[..., :3], np.asarray(photo))


@needs_arrow
def test_the_lent_path_adds_without_pillows_add(monkeypatch: pytest.MonkeyPatch) -> None:
    image, canvas = _pair(300, 200, seed=1)
    expected = _pillow_add(image, canvas)
    monkeypatch.setattr(ImageChops, "add", lambda *a, **k: pytest.fail("took Pillow's add"))
    assert np.array_equal(np.asarray(add_canvas(image, canvas)), expected)


@needs_arrow
@pytest.mark.parametrize("size", [(600, 400), (1200, 900)])  # laid 1:1; resized from the view
def test_both_protections_lay_their_change_outside_pillows_add(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    """Universal mode's pattern and photo mode's working-view change: the lock-free add."""
    rng = np.random.default_rng(5)
    photo = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    delta = (rng.choice([-1.0, 1.0], size=(3, 64, 64)) * 8 / 255).astype(np.float32)
    pattern = Perturbation(delta=delta, eps=8)
    applier = UniversalApplier(pattern, ApplyOptions(), cache_bytes=0)
    expected = applier.apply(photo)[0]
    view = working_delta(pattern, size[1], size[0])
    expected_view = apply_working_delta_pil(photo, view, eps=8)
    monkeypatch.setattr(ImageChops, "add", lambda *a, **k: pytest.fail("took Pillow's add"))
    assert np.array_equal(np.asarray(applier.apply(photo)[0]), np.asarray(expected))
    assert np.array_equal(
        np.asarray(apply_working_delta_pil(photo, view, eps=8)), np.asarray(expected_view)
    )


@needs_arrow
def test_an_image_in_several_blocks_is_not_lent_and_gets_pillows_add(several_blocks: None) -> None:
    image, canvas = _pair(400, 300, seed=2)  # 480 KB each: several 64 KiB blocks
    with lent_pixels(image) as pixels:
        assert pixels is None
    assert np.array_equal(np.asarray(add_canvas(image, canvas)), _pillow_add(image, canvas))


def test_a_pillow_that_lends_nothing_gets_pillows_add(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Image.Image, "__arrow_c_array__", raising=False)
    image, canvas = _pair(64, 48, seed=3)
    with lent_pixels(image) as pixels:
        assert pixels is None
    assert np.array_equal(np.asarray(add_canvas(image, canvas)), _pillow_add(image, canvas))


def test_a_pillow_that_leaks_what_it_lends_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow 11.2.1 never freed memory it lent: every photo, canvas and copy stayed."""
    monkeypatch.setattr(pixel_add, "_LENDS", False)
    image, canvas = _pair(64, 48, seed=6)
    with lent_pixels(image) as pixels:
        assert pixels is None
    assert np.array_equal(np.asarray(add_canvas(image, canvas)), _pillow_add(image, canvas))


def test_rows_aligned_by_pillow_alignment_are_not_lent() -> None:
    """Pillow 11.3-12 lent the block's start, not the first aligned row: shifted pixels."""
    before = pillow_core.get_alignment()
    pillow_core.set_alignment(64)
    try:
        image, canvas = _pair(101, 33, seed=7)
        with lent_pixels(image) as pixels:
            assert pixels is None
        assert np.array_equal(np.asarray(add_canvas(image, canvas)), _pillow_add(image, canvas))
    finally:
        pillow_core.set_alignment(before)


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_empty_image_is_not_lent(size: tuple[int, int]) -> None:
    """Pillow 11.3-12 crashes lending an image of no pixels."""
    empty = Image.new("RGB", size)
    with lent_pixels(empty) as pixels:
        assert pixels is None
    assert add_canvas(empty, Image.new("RGB", size)).size == size


@needs_arrow
def test_only_a_list_of_four_bytes_a_pixel_is_read_as_rgb() -> None:
    with lent_pixels(Image.new("L", (8, 8))) as pixels:  # exported as plain bytes
        assert pixels is None


def test_the_sum_is_a_new_image_and_the_photo_is_untouched() -> None:
    image, canvas = _pair(50, 40, seed=4)
    before = np.asarray(image).copy()
    out = add_canvas(image, canvas)
    assert out is not image and np.array_equal(np.asarray(image), before)


@pytest.mark.parametrize(
    ("image", "canvas"),
    [
        (Image.new("L", (4, 4)), Image.new("RGB", (4, 4))),
        (Image.new("RGB", (4, 4)), Image.new("RGBA", (4, 4))),
        (Image.new("RGB", (4, 4)), Image.new("RGB", (4, 5))),
    ],
)
def test_images_of_another_mode_or_size_are_refused(
    image: Image.Image, canvas: Image.Image
) -> None:
    with pytest.raises(ValueError, match="two RGB images of one size"):
        add_canvas(image, canvas)


def test_a_block_size_or_block_cache_the_user_set_is_left_alone() -> None:
    script = (
        "from PIL import _imaging as pillow_core\n"
        "from spdesk.core.pixel_add import allow_lending\n"
        "allow_lending()\n"
        "print(pillow_core.get_block_size())\n"
    )
    env = {**os.environ, "PILLOW_BLOCK_SIZE": "2m"}
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert int(shown.stdout) == 2 * 1024 * 1024
    del env["PILLOW_BLOCK_SIZE"]
    env["PILLOW_BLOCKS_MAX"] = "4"  # freed blocks kept: larger ones would keep whole photos
    kept = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert int(kept.stdout) == 16 * 1024 * 1024
    del env["PILLOW_BLOCKS_MAX"]
    raised = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert raised.returncode == 0, raised.stderr
    assert int(raised.stdout) >= 1 << 30
