"""On a CUDA GPU: training steps, fine-tuning batches, the out-of-memory split, activation
checkpointing and photo mode, with tiny random-weight components.

Skipped without CUDA. ``SPDESK_CUDA_TESTS_ON_CPU=1`` runs them on the CPU instead (to develop
them where there is no GPU), except the out-of-memory split, which needs CUDA's memory limit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_sd import save_tiny_vae

from spdesk.core.apply import ApplyOptions
from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.events import Event
from spdesk.core.events.training import TrainStep, ValidationReport
from spdesk.core.finetune import FineTuner
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.perturbation import Perturbation
from spdesk.core.photo_protect import GeneratorProtector
from spdesk.core.train import TrainConfig, train_universal
from tests import protect_samples as samples
from tests.test_train import write_photos

ON_CPU = os.environ.get("SPDESK_CUDA_TESTS_ON_CPU") == "1"
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")

pytestmark = pytest.mark.skipif(
    not CUDA and not ON_CPU,
    reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
    "SPDESK_CUDA_TESTS_ON_CPU=1 runs these tests on the CPU",
)
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="needs a CUDA GPU: the memory limit that forces the split is CUDA's"
)


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vae(tmp_path_factory.mktemp("cuda") / "sd")


@pytest.fixture(scope="module")
def encoder(vae_folder: Path) -> Encoder:
    return load_encoder(str(vae_folder), DEVICE)


@pytest.fixture
def universal() -> Perturbation:
    rng = np.random.default_rng(0)
    delta = rng.choice([-8 / 255, 8 / 255], (3, 16, 16)).astype(np.float32)
    return Perturbation(delta=delta, eps=8.0)


def _photos(count: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(height * 31 + width)
    return [rng.integers(30, 225, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _largest_change(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def _share_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Share of values more than one 8-bit step apart."""
    return float(np.mean(np.abs(a.astype(int) - b.astype(int)) > 1))


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def test_the_tests_run_where_they_say() -> None:
    assert DEVICE.type == ("cuda" if CUDA else "cpu")
    if CUDA:
        assert torch.cuda.get_device_properties(DEVICE).total_memory > 0


def test_universal_training_steps_on_the_device(vae_folder: Path, tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos")
    config = TrainConfig(
        photos=str(photos), encoder=str(vae_folder), steps=4, batch=4, size=32, val_every=2,
        val_photos=2, checkpoint_every=0, micro_batch=2, checkpointing=True, device=DEVICE.type,
    )  # fmt: skip
    events: list[Event] = []
    result = train_universal(config, on_event=events.append)
    steps = [event for event in events if isinstance(event, TrainStep)]
    assert [step.step for step in steps] == [1, 2, 3, 4]
    assert all(np.isfinite(step.loss) for step in steps)
    reports = [event for event in events if isinstance(event, ValidationReport)]
    assert reports and all(np.isfinite(report.distortion) for report in reports)
    assert result.delta.shape == (3, 32, 32) and result.delta.dtype == np.float32
    assert np.isfinite(result.delta).all()
    assert np.abs(result.delta).max() <= 8 / 255 + 1e-6


def test_micro_batches_take_the_step_the_whole_batch_takes(
    vae_folder: Path, tmp_path: Path
) -> None:
    photos = write_photos(tmp_path / "photos")
    common: dict[str, Any] = {
        "photos": str(photos), "encoder": str(vae_folder), "steps": 1, "batch": 4, "size": 32,
        "val_every": 0, "val_photos": 2, "checkpoint_every": 0, "device": DEVICE.type,
    }  # fmt: skip
    whole = train_universal(TrainConfig(**common)).delta
    parts = train_universal(TrainConfig(**common, micro_batch=1)).delta
    # One sign-PGD step from the same seeded start: the signs of the same gradient (elements
    # whose gradient is about zero may flip under reduced precision).
    assert np.mean(np.sign(whole) == np.sign(parts)) > 0.95


def test_fine_tuning_a_batch_gives_each_photo_what_it_gets_alone(
    encoder: Encoder, universal: Perturbation
) -> None:
    photos = _photos(4, 40, 60)
    options = ApplyOptions(working_size=32)
    alone = FineTuner(universal, encoder, steps=3, options=options, objective="latent")
    together = FineTuner(
        universal, encoder, steps=3, options=options, objective="latent", batch_size=4
    )
    singles = [alone.protect(photo) for photo in photos]
    batched = together.protect_batch(photos)
    for photo, single, batch in zip(photos, singles, batched, strict=True):
        assert batch.shape == photo.shape and batch.dtype == np.uint8
        assert 0 < _largest_change(batch, photo) <= 8
        # The same gradients, but a GPU computes a batch with other kernels, in bf16: a sign
        # step may flip where a gradient is about zero.
        assert _share_apart(batch, single) < 0.05


def test_checkpointing_gives_the_same_gradient(vae_folder: Path) -> None:
    plain = load_encoder(str(vae_folder), DEVICE)
    saving = load_encoder(str(vae_folder), DEVICE, checkpointing=True)
    forwards: list[int] = []
    first = cast(Any, saving).vae.encoder.down_blocks[0].resnets[0].norm1
    first.register_forward_pre_hook(lambda *_: forwards.append(1))
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    gradients = []
    for model in (plain, saving):
        x = images.clone().requires_grad_(True)
        model.encode(x).mean.pow(2).sum().backward()
        assert x.grad is not None
        gradients.append(x.grad)
    assert len(forwards) == 2  # the block ran again in the backward pass
    assert gradients[0].device.type == DEVICE.type
    assert gradients[0].abs().sum() > 0
    # Recomputed under the same autocast: equal up to the GPU's choice of kernels.
    assert _relative_error(gradients[1], gradients[0]) < 1e-2


@needs_cuda
def test_a_batch_that_runs_out_of_gpu_memory_is_split_and_finishes(
    encoder: Encoder, universal: Perturbation, caplog: pytest.LogCaptureFixture
) -> None:
    photos = _photos(8, 512, 512)
    options = ApplyOptions(working_size=512)
    reference = FineTuner(universal, encoder, steps=2, options=options, objective="latent")
    expected = reference.protect_batch(photos[:2])
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved()  # the limit counts what the allocator reserves
    peaks = []
    for count in (1, 2):  # what one and two photos per pass need over what is held
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        reference.protect_batch(photos[:count])
        peaks.append(torch.cuda.max_memory_reserved() - base)
    one, per_photo = peaks[0], peaks[1] - peaks[0]
    # On an H200 a limit of base + 3 x (one photo's peak) still fitted all 8 photos: the peak of
    # one photo is mostly fixed costs (weights, workspaces), so the limit must be set from what
    # each further photo adds.
    assert per_photo > 2**22, f"a second photo per pass reserved only {per_photo} bytes"
    total = torch.cuda.get_device_properties(DEVICE).total_memory
    tuner = FineTuner(
        universal, encoder, steps=2, options=options, objective="latent", batch_size=8
    )
    torch.cuda.empty_cache()
    # Room for one photo per pass and half of a second: batches of 8, 4 and 2 cannot fit.
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + one + per_photo // 2) / total))
    finetune_log = logging.getLogger("spdesk.core.finetune")
    finetune_log.addHandler(caplog.handler)  # spdesk's own logging may stop propagation
    try:
        with caplog.at_level(logging.WARNING, logger="spdesk.core.finetune"):
            results = tuner.protect_batch(photos)
    finally:
        finetune_log.removeHandler(caplog.handler)
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert "out of GPU memory" in caplog.text
    assert tuner.batch_size == 1  # later batches start at the size that fitted
    assert len(results) == 8
    for photo, result in zip(photos, results, strict=True):
        assert 0 < _largest_change(result, photo) <= 8
    for result, alone in zip(results[:2], expected, strict=True):
        assert _share_apart(result, alone) < 0.05


def test_photo_mode_on_the_device_is_deterministic_and_matches_the_cpu(
    generator_file: Path,
) -> None:
    pixels = np.random.default_rng(5).integers(20, 235, (300, 410, 3), dtype=np.uint8)
    photo = Image.fromarray(pixels)
    key = b"k" * 32
    here = GeneratorProtector(generator_file, key=key, device=DEVICE)
    assert next(here.model.parameters()).device.type == DEVICE.type
    first = np.asarray(here.apply(photo)[0])
    assert np.array_equal(first, np.asarray(here.apply(photo)[0]))
    on_cpu = np.asarray(GeneratorProtector(generator_file, key=key).apply(photo)[0])
    assert 0 < _largest_change(first, pixels) <= 8
    # The same noise (drawn on the CPU) through the same network: at most a rounding step.
    assert _largest_change(first, on_cpu) <= 1


def test_a_photo_mode_job_runs_on_the_device(
    generator_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPDESK_PROTECTION_KEY", "5a" * 32)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, photo in enumerate(_photos(3, 48, 64)):
        Image.fromarray(photo).save(inputs / f"p{index}.png")
    # Files named, not bundled: on a GPU machine spdesk may run from a checkout, not installed.
    settings = ProtectSettings(
        mode="photo",
        perturbation=samples.perturbation_file(tmp_path),
        generator=generator_file,
        device=DEVICE.type,
        workers=2,
    )
    report = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert len(report.done) == 3 and not report.failed
