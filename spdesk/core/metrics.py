"""Image-quality figures from well-kept libraries (torchmetrics; piq for FSIM where it imports).

All functions take two batches in [0, 1], torch tensors (N, 3, H, W) or uint8 arrays (H, W, 3) /
(N, H, W, 3), and return the mean over the batch (``batch_*`` return one value per image).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
    visual_information_fidelity,
)

log = logging.getLogger(__name__)

ImageLike = torch.Tensor | np.ndarray


def to_tensor(image: ImageLike) -> torch.Tensor:
    """uint8 (H, W, 3) / (N, H, W, 3) arrays or float tensors -> float32 (N, 3, H, W) in [0, 1]."""
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        return tensor.permute(0, 3, 1, 2)
    tensor = image.detach().float()
    return tensor.unsqueeze(0) if tensor.ndim == 3 else tensor


def batch_ssim(a: ImageLike, b: ImageLike) -> torch.Tensor:
    """SSIM per image (1 = identical)."""
    x, y = to_tensor(a), to_tensor(b)
    out = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")
    assert isinstance(out, torch.Tensor)
    return out


def batch_psnr(a: ImageLike, b: ImageLike) -> torch.Tensor:
    """PSNR in dB per image (capped at 100 dB for identical images)."""
    x, y = to_tensor(a), to_tensor(b)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-10)), torch.tensor(100.0))


def ssim(a: ImageLike, b: ImageLike) -> float:
    return float(batch_ssim(a, b).mean())


def psnr(a: ImageLike, b: ImageLike) -> float:
    """PSNR in dB, mean over the batch (torchmetrics, identical images reported as 100 dB)."""
    x, y = to_tensor(a), to_tensor(b)
    if torch.equal(x, y):
        return 100.0
    values = [
        float(peak_signal_noise_ratio(xi[None], yi[None], data_range=1.0))
        if not torch.equal(xi, yi)
        else 100.0
        for xi, yi in zip(x, y, strict=True)
    ]
    return float(np.mean(values))


def vifp(a: ImageLike, b: ImageLike) -> float:
    """Pixel-domain visual information fidelity (1 = identical; needs images of at least 41 px)."""
    x, y = to_tensor(a), to_tensor(b)
    return float(visual_information_fidelity(x, y))


@functools.cache
def _piq_fsim():  # type: ignore[no-untyped-def]
    try:
        import piq

        return piq.fsim
    except Exception as error:  # piq needs a torchvision that matches torch
        log.info("FSIM unavailable: piq did not import (%s)", error)
        return None


def fsim_available() -> bool:
    return _piq_fsim() is not None


def fsim(a: ImageLike, b: ImageLike) -> float | None:
    """Feature similarity (piq); ``None`` when piq (and a matching torchvision) is not installed."""
    fn = _piq_fsim()
    if fn is None:
        return None
    x, y = to_tensor(a), to_tensor(b)
    return float(fn(x.clamp(0, 1), y.clamp(0, 1), data_range=1.0))
