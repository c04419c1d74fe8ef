"""``spdesk --self-test``: protect a generated photo with the bundled perturbation and verify it.

Used to smoke-test installs and frozen builds: it exercises the perturbation file, the apply path,
JPEG export and re-decoding, and torch (through the quality figures), without network or models.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image, ImageDraw

from spdesk.cli.common import print_json
from spdesk.core.apply import ApplyOptions, apply_to_pil
from spdesk.core.errors import SpdeskError
from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation


def _test_photo(width: int = 960, height: int = 640) -> Image.Image:
    """A photo-like picture: a sky gradient, a sun and hills."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([110, 160, 230], np.float32) + y * np.array(
        [235, 225, 200], np.float32
    )
    image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([width * 0.65, height * 0.12, width * 0.8, height * 0.34], fill=(250, 210, 90))
    draw.polygon(
        [(0, height), (width * 0.35, height * 0.45), (width * 0.8, height)], fill=(60, 110, 60)
    )
    return image


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    path = bundled_perturbation_path()
    if not path.is_file():
        raise SpdeskError(f"Self-test failed: the bundled perturbation is missing ({path}).")
    perturbation = load_perturbation(path)
    original = _test_photo()
    protected = apply_to_pil(original, perturbation, ApplyOptions())
    buffer = io.BytesIO()
    protected.save(buffer, "JPEG", quality=95, subsampling=0)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    if decoded.size != original.size:
        raise SpdeskError(f"Self-test failed: output size {decoded.size} != {original.size}.")
    change = np.abs(np.asarray(protected, np.int16) - np.asarray(original, np.int16))
    if change.max() > perturbation.eps or change.mean() < 0.5:
        raise SpdeskError(
            f"Self-test failed: change max {change.max()} / mean {change.mean():.2f} is not "
            f"within the budget of {perturbation.eps:g} steps."
        )
    from spdesk.core import metrics  # imports torch: proves the compute stack loads

    visibility = metrics.psnr(np.asarray(decoded), np.asarray(original))
    seconds = time.monotonic() - start
    if getattr(args, "json", False):
        print_json(
            {
                "passed": True,
                "perturbation": perturbation.name,
                "eps": perturbation.eps,
                "size": [original.width, original.height],
                "mean_change": round(float(change.mean()), 3),
                "max_change": int(change.max()),
                "psnr_db_after_jpeg95": round(float(visibility), 2),
                "seconds": round(seconds, 3),
            }
        )
        return 0
    print(
        f"self-test passed: {perturbation.name} (eps {perturbation.eps:g}) protected a "
        f"{original.width}x{original.height} photo; mean change {change.mean():.2f}/255, "
        f"PSNR {visibility:.1f} dB after JPEG 95; {seconds:.1f} s"
    )
    return 0
