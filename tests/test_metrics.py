"""Image-quality figures: identity, ordering and range."""

from __future__ import annotations

import numpy as np
import torch

from spdesk.core import metrics


def test_identical_images_score_perfectly() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) > 0.999
    assert metrics.psnr(image, image) == 100.0
    assert metrics.vifp(image, image) > 0.99


def test_more_noise_scores_worse() -> None:
    torch.manual_seed(0)
    clean = torch.rand(2, 3, 64, 64)
    light = (clean + 0.02 * torch.randn_like(clean)).clamp(0, 1)
    heavy = (clean + 0.2 * torch.randn_like(clean)).clamp(0, 1)
    assert metrics.ssim(clean, light) > metrics.ssim(clean, heavy)
    assert metrics.psnr(clean, light) > metrics.psnr(clean, heavy) > 0
    assert metrics.vifp(clean, light) > metrics.vifp(clean, heavy)
    per_image = metrics.batch_ssim(clean, heavy)
    assert per_image.shape == (2,) and bool(((per_image > -1) & (per_image < 1)).all())


def test_psnr_matches_its_definition() -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 51, np.uint8)  # difference 0.2 everywhere -> 13.98 dB
    assert abs(metrics.psnr(a, b) - 10 * np.log10(1 / 0.04)) < 1e-3


def test_fsim_is_a_number_or_explicitly_unavailable() -> None:
    value = metrics.fsim(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert value is None or 0 <= value <= 1
    assert (value is None) == (not metrics.fsim_available())
