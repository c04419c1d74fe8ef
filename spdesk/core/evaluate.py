"""The protection table: how much a perturbation disturbs the encoder and its round trip.

For each photo (a size x size centre crop of its working view) and each candidate delta — the
perturbation, random uniform noise of the same budget, random ±eps signs, and none — it reports:

- ``latent``: relative latent distortion ||E(x+δ) - E(x)|| / ||E(x)|| (mean over photos);
- ``rt_ssim`` / ``rt_psnr``: SSIM and PSNR (dB) between D(E(protected)) and D(E(original)), the
  autoencoder round trip standing in for an edit (lower = better protection; needs a decoder);
- ``vis_psnr``: PSNR (dB) of protected vs original (visibility; higher = less visible);
- the same three after JPEG re-encoding of both photos at ``jpeg_quality`` (``jpeg_*``).

Protected photos are rounded to 8 bits, as a saved file would be. The figure that counts is the
gain over the random-sign baseline (a sign-PGD delta sits at ±eps almost everywhere).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spdesk.core.apply import add_delta
from spdesk.core.encoders import Encoder
from spdesk.core.errors import ConfigError, ImageError
from spdesk.core.events.training import SkippedPhoto
from spdesk.core.geometry import tile
from spdesk.core.jobs.events import count_of
from spdesk.core.metrics import batch_psnr, batch_ssim
from spdesk.core.train import centre_crop, load_working_views, random_baselines

CANDIDATES = ("perturbation", "uniform", "sign", "none")


@dataclass(frozen=True)
class ProtectionRow:
    """Figures for one candidate delta, mean over photos (None where not measurable)."""

    name: str
    latent: float
    rt_ssim: float | None
    rt_psnr: float | None
    vis_psnr: float
    jpeg_latent: float | None = None
    jpeg_rt_ssim: float | None = None
    jpeg_rt_psnr: float | None = None


@dataclass
class ProtectionTable:
    """Rows for the perturbation and its baselines, with the setting they were measured in."""

    encoder: str
    photos: int
    size: int
    eps: float
    jpeg_quality: int | None
    rows: list[ProtectionRow] = field(default_factory=list)

    def row(self, name: str) -> ProtectionRow:
        return next(r for r in self.rows if r.name == name)

    def gains_over_sign(self) -> dict[str, float | None]:
        """Perturbation vs random signs (ratios above 1 mean the perturbation beats them).

        ``latent``: ratio of relative latent distortions. ``rt_ssim_drop``: ratio of round-trip
        SSIM drops (1 - SSIM). ``rt_mse``: ratio of round-trip mean squared errors, i.e.
        10^(dPSNR/10). ``jpeg_*``: the same after JPEG re-encoding.
        """
        p, s = self.row("perturbation"), self.row("sign")

        def ratio(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None or b <= 0 else a / b

        def drop(value: float | None) -> float | None:
            return None if value is None else 1 - value

        def mse_ratio(psnr_p: float | None, psnr_s: float | None) -> float | None:
            return None if psnr_p is None or psnr_s is None else 10 ** ((psnr_s - psnr_p) / 10)

        return {
            "latent": ratio(p.latent, s.latent),
            "rt_ssim_drop": ratio(drop(p.rt_ssim), drop(s.rt_ssim)),
            "rt_mse": mse_ratio(p.rt_psnr, s.rt_psnr),
            "jpeg_latent": ratio(p.jpeg_latent, s.jpeg_latent),
            "jpeg_rt_ssim_drop": ratio(drop(p.jpeg_rt_ssim), drop(s.jpeg_rt_ssim)),
            "jpeg_rt_mse": mse_ratio(p.jpeg_rt_psnr, s.jpeg_rt_psnr),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gains_over_sign"] = self.gains_over_sign()
        return out

    def format(self) -> str:
        """A plain-text table for terminals and logs."""
        header = (
            f"{'candidate':<13}{'latent':>8}{'rt_ssim':>9}{'rt_psnr':>9}{'vis_psnr':>9}"
            f"{'jpg_lat':>9}{'jpg_ssim':>9}{'jpg_psnr':>9}"
        )

        def cell(value: float | None, width: int = 9, digits: int = 3) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

        lines = [
            f"encoder {self.encoder}, {count_of(self.photos, 'photo')}, {self.size}px, "
            f"eps {self.eps:g}, "
            f"JPEG {self.jpeg_quality or 'off'}",
            header,
        ]
        for r in self.rows:
            lines.append(
                f"{r.name:<13}{cell(r.latent, 8)}{cell(r.rt_ssim)}{cell(r.rt_psnr, digits=2)}"
                f"{cell(r.vis_psnr, digits=2)}{cell(r.jpeg_latent)}{cell(r.jpeg_rt_ssim)}"
                f"{cell(r.jpeg_rt_psnr, digits=2)}"
            )
        gains = self.gains_over_sign()
        lines.append(
            "gain over random signs: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in gains.items() if v is not None)
        )
        return "\n".join(lines)


def load_eval_photos(paths: Sequence[Path], size: int) -> tuple[np.ndarray, list[SkippedPhoto]]:
    """uint8 (N, size, size, 3): centre crops of the photos' working views (short side = size),
    and the photos skipped because they cannot be read (ConfigError if none can)."""
    _read, views, skipped = load_working_views(paths, size)
    if not views:
        raise ConfigError(
            "None of the photos can be read: "
            + "; ".join(f"{s.path.name}: {s.reason}" for s in skipped)
        )
    crops = [centre_crop(view, size) for view in views]
    return torch.stack(crops).permute(0, 2, 3, 1).numpy(), skipped


# Below this short side the figures mean nothing: SSIMULACRA2 drops its scales under 8 px (random
# signs on a 16 px photo scored 95.7, on real photos 52-60) and an editor's view is all upscale.
MEASURE_MIN_SIDE = 32


def load_full_photos(
    paths: Sequence[Path], limit: int | None = None, *, min_side: int = 0
) -> tuple[list[np.ndarray], list[SkippedPhoto]]:
    """The photos as uint8 (H, W, 3) RGB arrays at full size, read as protection reads them;
    those that cannot be read, or whose short side is under ``min_side``, are skipped with the
    reason. With ``limit``, reading stops once that many were read (skipped files do not take
    their places)."""
    from spdesk.core.imageio import read_image

    photos: list[np.ndarray] = []
    skipped: list[SkippedPhoto] = []
    for path in paths:
        if limit is not None and len(photos) >= limit:
            break
        try:
            photo = np.asarray(read_image(path).image.convert("RGB"))
        except ImageError as error:
            skipped.append(SkippedPhoto(path, error.message))
            continue
        if min(photo.shape[:2]) < min_side:
            skipped.append(SkippedPhoto(path, _too_small(photo, min_side)))
        else:
            photos.append(photo)
    return photos, skipped


def _too_small(photo: np.ndarray, min_side: int) -> str:
    height, width = photo.shape[:2]
    return (
        f"too small to measure ({width} x {height} pixels; the visibility and strength "
        f"figures need at least {min_side} on each side)"
    )


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode each uint8 (H, W, 3) image as JPEG at ``quality`` (Pillow, 4:2:0) and decode."""
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(np.asarray(decoded.convert("RGB")))
    return np.stack(out)


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(device)


@dataclass
class _Encoded:
    latents: list[torch.Tensor]
    roundtrip: torch.Tensor | None


def _encode(encoder: Encoder, images: np.ndarray, batch: int) -> _Encoded:
    latents: list[torch.Tensor] = []
    decoded: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = _to_tensor(images[start : start + batch], encoder.device)
            z = encoder.encode(x).mean
            latents.append(z.cpu())
            image = encoder.decode(z) if encoder.has_decoder else None
            if image is not None:
                decoded.append(image.float().cpu())
    return _Encoded(latents, torch.cat(decoded) if decoded else None)


def _latent_distortion(a: _Encoded, b: _Encoded) -> float:
    za, zb = torch.cat(a.latents).flatten(1), torch.cat(b.latents).flatten(1)
    return float(((za - zb).norm(dim=1) / zb.norm(dim=1).clamp_min(1e-8)).mean())


def _compare(protected: _Encoded, original: _Encoded) -> tuple[float, float | None, float | None]:
    latent = _latent_distortion(protected, original)
    if protected.roundtrip is None or original.roundtrip is None:
        return latent, None, None
    ssim = float(batch_ssim(protected.roundtrip, original.roundtrip).mean())
    psnr = float(batch_psnr(protected.roundtrip, original.roundtrip).mean())
    return latent, ssim, psnr


def candidate_deltas(delta: np.ndarray, eps: float, seed: int = 0) -> dict[str, np.ndarray]:
    """The perturbation and its same-budget baselines, all (3, h, w) float32."""
    shape = tuple(delta.shape)
    baselines = random_baselines(shape, eps, seed)
    return {
        "perturbation": delta.astype(np.float32),
        "uniform": baselines["uniform"].numpy(),
        "sign": baselines["sign"].numpy(),
        "none": np.zeros(shape, np.float32),
    }


def protect_with(photos: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """uint8 photos (N, S, S, 3) plus a delta (3, h, w) tiled over each: rounded uint8."""
    canvas = tile(delta, photos.shape[1], photos.shape[2]).transpose(1, 2, 0)
    return np.stack([add_delta(photo, canvas) for photo in photos])


def evaluate_protection(
    photos: np.ndarray,
    encoder: Encoder,
    delta: np.ndarray,
    eps: float,
    *,
    jpeg_quality: int | None = 85,
    seed: int = 0,
    batch: int = 8,
) -> ProtectionTable:
    """The protection table for uint8 photos (N, S, S, 3) and a delta (3, h, w) in pixel units.

    The delta is tiled over each S x S photo (the editor's working view), added and rounded to
    8 bits. Baselines use the same budget ``eps`` (8-bit steps) and ``seed``.
    """
    protected = {
        name: protect_with(photos, candidate)
        for name, candidate in candidate_deltas(delta, eps, seed).items()
    }
    return evaluate_protected(
        photos, protected, encoder, eps, jpeg_quality=jpeg_quality, batch=batch
    )


def evaluate_protected(
    photos: np.ndarray,
    protected: dict[str, np.ndarray],
    encoder: Encoder,
    eps: float,
    *,
    jpeg_quality: int | None = 85,
    batch: int = 8,
) -> ProtectionTable:
    """The table for already protected versions of the photos (e.g. fine-tuned per photo).

    ``protected`` maps a candidate name to uint8 (N, S, S, 3) images; include "sign" for the
    gains over random signs.
    """
    table = ProtectionTable(encoder.id, len(photos), photos.shape[1], eps, jpeg_quality)
    original = _encode(encoder, photos, batch)
    original_jpeg = (
        _encode(encoder, jpeg_roundtrip(photos, jpeg_quality), batch) if jpeg_quality else None
    )
    for name, images in protected.items():
        latent, ssim, psnr = _compare(_encode(encoder, images, batch), original)
        vis = float(batch_psnr(images, photos).mean())
        row = ProtectionRow(name, latent, ssim, psnr, vis)
        if original_jpeg is not None and jpeg_quality:
            jpeg = _encode(encoder, jpeg_roundtrip(images, jpeg_quality), batch)
            j_latent, j_ssim, j_psnr = _compare(jpeg, original_jpeg)
            row = ProtectionRow(name, latent, ssim, psnr, vis, j_latent, j_ssim, j_psnr)
        table.rows.append(row)
    return table
