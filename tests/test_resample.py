"""Pillow's Lanczos resize in torch: the editor's view, differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spdesk.core.resample import lanczos_resize, lanczos_taps

SIZES = [
    ((375, 500), (512, 680)),  # an ImageNet photo at a 512 px editor: enlarged
    ((375, 500), (256, 336)),  # at a 256 px editor: shrunk
    ((40, 56), (24, 32)),
    ((12, 600), (96, 4800)),  # a thin strip
    ((7, 9), (8, 8)),  # enlarged along one axis, shrunk along the other
    ((1, 5), (8, 3)),
]


def _pillow(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(channel.astype(np.float32), mode="F")
    return np.asarray(image.resize(size[::-1], Image.Resampling.LANCZOS))


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_it_equals_pillows_lanczos_on_float_images(
    shape: tuple[int, int], size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(shape[0] * 7 + size[1])
    image = rng.random((2, 3, *shape))
    ours = lanczos_resize(torch.from_numpy(image), size).numpy()
    assert ours.shape == (2, 3, *size)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(ours[n, c], _pillow(image[n, c], size), atol=2e-6)


def test_an_8_bit_photo_comes_out_as_pillow_resizes_it() -> None:
    """What a diffusers editor receives: Pillow's 8-bit Lanczos, to within its own rounding (it
    rounds, and clips, between its two passes too: a photo away from black and white)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:60, 0:90]
    smooth = np.stack([60 + 2 * y, 90 + x, 150 - y], -1)
    photo = np.clip(smooth + rng.normal(0, 12, (60, 90, 3)), 0, 255).astype(np.uint8)
    expected = np.asarray(Image.fromarray(photo).resize((64, 40), Image.Resampling.LANCZOS))
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].double()
    ours = lanczos_resize(x, (40, 64))[0].permute(1, 2, 0).numpy()
    assert np.abs(np.clip(np.rint(ours), 0, 255) - expected).max() <= 1


def test_it_is_differentiable_and_linear() -> None:
    x = torch.rand(1, 2, 9, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: lanczos_resize(t, (5, 12)), (x,))
    y = torch.rand_like(x)
    both = lanczos_resize(2 * x + y, (5, 12))
    torch.testing.assert_close(both, 2 * lanczos_resize(x, (5, 12)) + lanczos_resize(y, (5, 12)))


def test_the_same_size_is_the_image_itself() -> None:
    x = torch.rand(1, 3, 10, 12)
    assert lanczos_resize(x, (10, 12)) is x


def test_weights_sum_to_one_and_shrinking_widens_the_window() -> None:
    _, up = lanczos_taps(100, 150)
    _, down = lanczos_taps(150, 50)
    torch.testing.assert_close(up.sum(1), torch.ones(150, dtype=up.dtype))
    torch.testing.assert_close(down.sum(1), torch.ones(50, dtype=down.dtype))
    assert down.shape[1] >= 3 * up.shape[1] - 2  # 3x the support when shrinking 3x


def test_an_empty_axis_is_refused() -> None:
    with pytest.raises(ValueError, match="Cannot resize 0 pixels"):
        lanczos_taps(0, 5)


def test_the_memory_layout_is_kept() -> None:
    """A photo made from an (H, W, C) array is channels-last, as torch's resizes keep it (a CPU
    runs the encoder after it a fifth faster); a plain tensor stays plain."""
    photo = torch.rand(1, 12, 10, 3).permute(0, 3, 1, 2)
    assert lanczos_resize(photo, (7, 9)).is_contiguous(memory_format=torch.channels_last)
    assert lanczos_resize(torch.rand(1, 3, 12, 10), (7, 9)).is_contiguous()
