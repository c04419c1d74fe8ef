"""The figures behind the app's time estimates: per device, and none where none was measured."""

from __future__ import annotations

from spdesk.core.speed_figures import FINETUNE_SECONDS_PER_STEP_CPU, finetune_seconds_per_photo


def test_estimates_scale_with_steps_and_differ_by_device() -> None:
    cpu = finetune_seconds_per_photo("sd15", 50, "cpu")
    assert cpu == 50 * FINETUNE_SECONDS_PER_STEP_CPU["sd15"]
    gpu = finetune_seconds_per_photo("sd15", 50, "cuda")
    assert gpu is not None and 0 < gpu < cpu
    assert finetune_seconds_per_photo("sd15", 100, "cuda") == 2 * gpu


def test_no_estimate_without_a_figure() -> None:
    assert finetune_seconds_per_photo("sd15", 50, "mps") is None
    assert finetune_seconds_per_photo("my-encoder.safetensors", 50, "cpu") is None


def test_the_jpeg_term_of_photo_fine_tuning_is_in_the_estimate() -> None:
    for kind in ("cpu", "cuda"):
        plain = finetune_seconds_per_photo("taesd", 8, kind)
        with_jpeg = finetune_seconds_per_photo("taesd", 8, kind, jpeg=True)
        assert plain is not None and with_jpeg is not None
        assert 1.5 * plain < with_jpeg < 3 * plain  # the photo and its re-save, encoded
