"""``spdesk --self-test``: protect a generated photo in three modes and verify the results.

Used to smoke-test installs and frozen builds, without network or models: the bundled perturbation,
the apply path, JPEG export and re-decoding, torch (through the quality figures), the default
mode end to end (a :class:`~spdesk.core.jobs.ProtectJob` in photo mode, with the bundled generator
and this install's protection key, made here on a first run, writing into a temporary folder), and
photo fine-tuning against an encoder file (random weights in TAESD's shape: diffusers, loading an
encoder, a gradient step).
Photo mode adds under a second on a CPU (2.4 s became 2.8 s on 2 shared cores: the generator runs
on one 960x640 photo; torch was loaded already); fine-tuning about two more, mostly importing
diffusers (3.0 s became 5.1 s), on the CPU whatever the machine has: the install is under test,
not its GPU.

Each stage is named when it fails, whatever failed: a file or a module missing from a broken build
is what this test exists to find, so it is a failed self-test, not a bug of spdesk.
"""

from __future__ import annotations

import argparse
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from spdesk.cli.common import print_json
from spdesk.core.errors import SpdeskError

log = logging.getLogger(__name__)


class SelfTestFailed(SpdeskError):
    """One stage of the self-test failed; ``stage`` names it, ``error`` says what happened."""

    def __init__(self, stage: str, error: str) -> None:
        super().__init__(f"Self-test failed: {stage}: {error}")
        self.stage = stage
        self.error = error


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Turn any failure inside into :class:`SelfTestFailed` naming ``name``."""
    try:
        yield
    except SelfTestFailed:
        raise
    except SpdeskError as error:
        raise SelfTestFailed(name, error.user_text()) from error
    except Exception as error:  # ImportError included: a broken build, reported as such
        log.exception("self-test stage %s failed", name)
        raise SelfTestFailed(name, f"{type(error).__name__}: {error}") from error


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


def _change(protected: Image.Image, original: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(protected, np.int16) - np.asarray(original, np.int16))


def _check_change(change: np.ndarray, eps: float) -> None:
    """The photo changed, and by no more than the budget of ``eps`` 8-bit steps."""
    if change.max() > eps or change.mean() == 0:
        raise SpdeskError(
            f"change max {change.max()} / mean {change.mean():.2f} is not within the budget "
            f"of {eps:g} steps."
        )


def _universal(original: Image.Image) -> dict[str, Any]:
    """The bundled universal pattern laid on ``original``, saved as JPEG and read back."""
    from spdesk.core.apply import ApplyOptions, apply_to_pil
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    with _stage("bundled perturbation"):
        path = bundled_perturbation_path()
        if not path.is_file():
            raise SpdeskError(f"the file is missing ({path}).")
        perturbation = load_perturbation(path)
    with _stage("universal pattern"):
        protected = apply_to_pil(original, perturbation, ApplyOptions())
        buffer = io.BytesIO()
        protected.save(buffer, "JPEG", quality=95, subsampling=0)
        decoded = Image.open(io.BytesIO(buffer.getvalue()))
        decoded.load()
        if decoded.size != original.size:
            raise SpdeskError(f"output size {decoded.size} != {original.size}.")
        change = _change(protected, original)
        _check_change(change, perturbation.eps)
        if change.mean() < 0.5:
            raise SpdeskError(f"mean change {change.mean():.2f} is too small to protect.")
    with _stage("compute stack"):
        from spdesk.core import metrics  # imports torch: proves the compute stack loads

        visibility = metrics.psnr(np.asarray(decoded), np.asarray(original))
    return {
        "perturbation": perturbation.name,
        "eps": perturbation.eps,
        "mean_change": round(float(change.mean()), 3),
        "max_change": int(change.max()),
        "psnr_db_after_jpeg95": round(float(visibility), 2),
    }


def _photo_mode(original: Image.Image) -> dict[str, Any]:
    """The default mode through the real job: bundled generator, install key, PNG output."""
    with _stage("photo mode"):
        from spdesk.core.jobs import ProtectSettings

        eps, change = _protect_in_a_job(original, ProtectSettings(mode="photo", workers=1))
    return {
        "photo_eps": eps,
        "photo_mean_change": round(float(change.mean()), 3),
        "photo_max_change": int(change.max()),
    }


def _fine_tuning(original: Image.Image) -> dict[str, Any]:
    """Photo fine-tuning through the real job, one step against a TAESD-shaped encoder of random
    weights written here: nothing is downloaded, yet diffusers builds and loads the encoder from
    a file and torch takes its gradient, as with the real encoders (a build missing a file one
    of them needs fails here, not at a user's first fine-tuning)."""
    with _stage("fine-tuning"):
        import torch
        from diffusers import AutoencoderTiny
        from safetensors.torch import save_file

        from spdesk.core.jobs import ProtectSettings

        with tempfile.TemporaryDirectory(prefix="spdesk-self-test-") as folder:
            encoder = Path(folder) / "random-taesd.safetensors"
            torch.manual_seed(0)
            model: Any = AutoencoderTiny(latent_channels=4)  # type: ignore[no-untyped-call]
            save_file(model.state_dict(), str(encoder))
            settings = ProtectSettings(
                mode="photo-finetune",
                encoder=str(encoder),
                finetune_steps=1,
                working_size=64,  # a second, not a minute
                device="cpu",
                workers=1,
            )
            small = original.resize((96, 64), Image.Resampling.BOX)
            _, change = _protect_in_a_job(small, settings)
    return {"finetune_mean_change": round(float(change.mean()), 3)}


def _protect_in_a_job(original: Image.Image, settings: Any) -> tuple[float, np.ndarray]:
    """``original`` saved as PNG and protected by a :class:`~spdesk.core.jobs.ProtectJob` in a
    temporary folder: the generator's budget and the change, checked against that budget."""
    from spdesk.core.generator_file import bundled_generator_path, read_spec
    from spdesk.core.jobs import ProtectJob

    eps = read_spec(bundled_generator_path()).eps
    with tempfile.TemporaryDirectory(prefix="spdesk-self-test-") as folder:
        source = Path(folder) / "self-test.png"
        original.save(source)
        report = ProtectJob([source], Path(folder) / "out", settings).run()
        if report.failed or not report.done:
            reason = report.failed[0].reason if report.failed else report.stopped
            raise SpdeskError(f"the photo was not protected: {reason}")
        with Image.open(report.done[0].output) as written:
            change = _change(written.convert("RGB"), original)
    _check_change(change, eps)
    return eps, change


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    original = _test_photo()
    try:
        figures = _universal(original) | _photo_mode(original) | _fine_tuning(original)
    except SelfTestFailed as failed:
        if getattr(args, "json", False):
            print_json({"passed": False, "stage": failed.stage, "error": failed.error})
        raise
    seconds = time.monotonic() - start
    if getattr(args, "json", False):
        size = [original.width, original.height]
        result = {"passed": True, "default_mode": "photo", **figures}
        print_json(result | {"size": size, "seconds": round(seconds, 3)})
        return 0
    print(_summary(figures, original, seconds))
    return 0


def _summary(figures: dict[str, Any], original: Image.Image, seconds: float) -> str:
    """The passed self-test in words, each figure under its mode's name, the default first: the
    universal pattern changes a photo several times more and must not read as the default."""
    return (
        f"self-test passed on a {original.width}x{original.height} photo: photo-specific (the "
        f"default mode): mean change {figures['photo_mean_change']:.2f}/255, at most "
        f"{figures['photo_max_change']} (budget {figures['photo_eps']:g}); universal pattern "
        f"(eps {figures['eps']:g}): mean change {figures['mean_change']:.2f}/255, PSNR "
        f"{figures['psnr_db_after_jpeg95']:.1f} dB after JPEG 95; fine-tuning one step against "
        f"a test encoder: mean change {figures['finetune_mean_change']:.2f}/255; {seconds:.1f} s"
    )
