"""The figures behind the app's time estimates: per device, and none where none was measured."""

from __future__ import annotations

from spdesk.core.speed_figures import (
    FINETUNE_SECONDS_PER_STEP_CPU,
    PHOTO_FINETUNE_SECONDS_PER_STEP_CPU,
    finetune_seconds_per_photo,
)


def test_estimates_scale_with_steps_and_differ_by_device() -> None:
    cpu = finetune_seconds_per_photo("sd15", 50, "cpu")
    assert cpu == 50 * FINETUNE_SECONDS_PER_STEP_CPU["sd15"]
    gpu = finetune_seconds_per_photo("sd15", 50, "cuda")
    assert gpu is not None and 0 < gpu < cpu
    assert finetune_seconds_per_photo("sd15", 100, "cuda") == 2 * gpu


def test_no_estimate_without_a_figure() -> None:
    assert finetune_seconds_per_photo("sd15", 50, "mps") is None
    assert finetune_seconds_per_photo("my-encoder.safetensors", 50, "cpu") is None


def test_the_jpeg_term_of_photo_fine_tuning_is_in_the_gpu_estimate() -> None:
    plain = finetune_seconds_per_photo("taesd", 8, "cuda")
    with_jpeg = finetune_seconds_per_photo("taesd", 8, "cuda", jpeg=True)
    assert plain is not None and with_jpeg is not None
    assert 1.5 * plain < with_jpeg < 3 * plain  # the photo and its re-save, encoded


def test_a_photo_fine_tuning_step_on_a_cpu_costs_several_encodes() -> None:
    """A step of photo fine-tuning encodes two editor sizes, each as is and re-saved as a
    JPEG, where a step of the universal pattern's encodes one view: on a CPU, where encoding
    is most of the time, the estimate is several universal steps, not 1.74 of one (which
    said 4 s where 2 steps took 20 s)."""
    for encoder in ("taesd", "sd15"):
        universal = finetune_seconds_per_photo(encoder, 2, "cpu")
        photo = finetune_seconds_per_photo(encoder, 2, "cpu", jpeg=True)
        assert universal is not None and photo is not None
        assert photo >= 2.5 * universal
    assert (
        finetune_seconds_per_photo("taesd", 2, "cpu", jpeg=True)
        == 2 * (PHOTO_FINETUNE_SECONDS_PER_STEP_CPU["taesd"])
    )
