"""The use cases the CLI and the app share: training into the library with its checkpoint and
resume policy, and filing the result under a name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train import _config, write_photos
from tiny_sd import save_tiny_vae

from spdesk.core.apply import ApplyOptions
from spdesk.core.errors import Cancelled, OutputExistsError, SpdeskError
from spdesk.core.events import CancelToken, Event, EventSink, Loading, Progress, ignore_events
from spdesk.core.events.training import TrainStarted, TrainStep
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.perturbation import library_path_for, library_perturbations, load_perturbation
from spdesk.core.train import TrainConfig, TrainResult
from spdesk.core.usecases import (
    REUSED_FINE_TUNING,
    FineTunedMemo,
    FineTuning,
    StartingAfresh,
    library_checkpoint,
    protect_for_preview,
    save_to_library,
    train_into_library,
)
from tests import protect_samples as samples


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    root = tmp_path_factory.mktemp("usecases")
    return _config(write_photos(root / "photos"), save_tiny_vae(root / "sd"), steps=9)


def _cancel_after(steps: int, cancel: CancelToken) -> tuple[list[Event], EventSink]:
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, TrainStep) and event.step >= steps:
            cancel.cancel()

    return events, sink


def _started(events: list[Event]) -> TrainStarted:
    [started] = [e for e in events if isinstance(e, TrainStarted)]
    return started


def test_a_cancelled_library_run_resumes_and_its_checkpoint_goes_once_saved(
    config: TrainConfig,
) -> None:
    cancel = CancelToken()
    events, sink = _cancel_after(4, cancel)
    with pytest.raises(Cancelled):
        train_into_library(config, on_event=sink, cancel=cancel)
    checkpoint = library_checkpoint(config)
    assert checkpoint.is_file() and _started(events).resumed_from == 0

    again: list[Event] = []
    result = train_into_library(config, on_event=again.append)
    assert _started(again).resumed_from >= 3  # from the checkpoint, not from step 0
    assert result.metadata["steps"] == config.steps
    # Kept until the result is in the library: a save that fails loses no steps.
    assert checkpoint.is_file()
    save_to_library(result, "resumed")
    assert not checkpoint.exists()


def test_a_damaged_checkpoint_is_removed_and_the_run_starts_afresh(config: TrainConfig) -> None:
    checkpoint = library_checkpoint(config)
    checkpoint.write_bytes(b"\0" * 100)  # as a disk error leaves it
    events: list[Event] = []
    train_into_library(config, on_event=events.append)
    assert _started(events).resumed_from == 0
    assert checkpoint.stat().st_size > 100  # the fresh run's own, until its result is saved


def test_save_to_library_files_the_result_under_its_name_and_never_replaces_unasked(
    config: TrainConfig,
) -> None:
    result = train_into_library(config)
    path = save_to_library(result, "my photos")
    saved = load_perturbation(path)
    assert saved.metadata["name"] == "my photos"
    assert f"from “{Path(config.photos).name}”" in saved.metadata["description"]
    assert path in library_perturbations()
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already in your library"):
        save_to_library(result, "my photos")
    assert path.read_bytes() == before
    assert save_to_library(result, "my photos", replace=True) == path


def test_spdesk_train_library_is_the_same_use_case_as_the_app(
    config: TrainConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli import main

    argv = ["train", config.photos, "--library", "cli run", "--encoder", config.encoder]
    argv += ["--steps", "3", "--batch", "2", "--size", "32", "--json"]
    assert main(argv) == 0
    path = Path(json.loads(capsys.readouterr().out)["path"])
    assert path in library_perturbations()
    assert load_perturbation(path).metadata["name"] == "cli run"
    before = path.read_bytes()
    assert main(argv) == 2  # refused before any training: the name is taken
    assert "already in your library" in capsys.readouterr().err
    assert path.read_bytes() == before


def _cancelled_at(config: TrainConfig, steps: int) -> Path:
    """Run ``config`` into the library and stop it after ``steps`` steps; its checkpoint."""
    cancel = CancelToken()
    _events, sink = _cancel_after(steps, cancel)
    with pytest.raises(Cancelled):
        train_into_library(config, on_event=sink, cancel=cancel)
    return library_checkpoint(config)


def _afresh(events: list[Event]) -> str:
    """Why the run started afresh ("" when it did not say)."""
    return " ".join(e.reason for e in events if isinstance(e, StartingAfresh))


def test_a_name_taken_while_training_is_saved_under_a_free_name_never_lost(
    config: TrainConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import spdesk.core.usecases as usecases
    from spdesk.cli import main

    def train_while_another_run_saves_the_name(*args: object, **kwargs: object) -> TrainResult:
        result = train_into_library(*args, **kwargs)  # type: ignore[arg-type]
        save_to_library(result, "Same")  # the other run (or the app) finished first
        return result

    monkeypatch.setattr(usecases, "train_into_library", train_while_another_run_saves_the_name)
    argv = ["train", config.photos, "--library", "Same", "--encoder", config.encoder]
    argv += ["--steps", "3", "--batch", "2", "--size", "32"]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "“Same” was added to your library while this run trained" in said.err, said.err
    assert "saved as “Same-2”" in said.err
    names = sorted(p.name for p in library_perturbations())
    assert names == ["Same-2.safetensors", "Same.safetensors"]
    assert load_perturbation(library_path_for("Same-2")).metadata["name"] == "Same-2"
    assert not list(library_checkpoint(config).parent.glob("*.ckpt"))  # saved: gone


def test_a_checkpoint_holding_nan_is_dropped_with_a_notice_and_the_run_starts_afresh(
    config: TrainConfig,
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    checkpoint = _cancelled_at(config, 4)
    with safe_open(str(checkpoint), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(checkpoint))
    tensors["delta"][:] = float("nan")  # the header still reads as a checkpoint's
    save_file(tensors, str(checkpoint), metadata=meta)
    events: list[Event] = []
    result = train_into_library(config, on_event=events.append)
    assert _started(events).resumed_from == 0
    assert "damaged" in _afresh(events) and "not a number" in _afresh(events)
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, TrainStep))
    assert np.isfinite(result.delta).all()


def test_a_library_run_on_changed_photos_says_it_starts_afresh_and_replaces_the_checkpoint(
    tmp_path: Path, config: TrainConfig
) -> None:
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(config.photos, folder)
    changing = replace(config, photos=str(folder))
    checkpoint = _cancelled_at(changing, 4)
    shutil.copy(folder / "photo0.png", folder / "photo9.png")  # a photo added since
    events: list[Event] = []
    result = train_into_library(changing, on_event=events.append)
    assert _started(events).resumed_from == 0
    assert _afresh(events) == "the photos changed since the run stopped at step 4"
    save_to_library(result, "changed")
    assert not checkpoint.exists()  # replaced by the new run's, which went once saved


def test_a_library_run_with_other_settings_says_where_the_stopped_run_is(
    config: TrainConfig,
) -> None:
    stopped = _cancelled_at(config, 4)
    events: list[Event] = []
    result = train_into_library(replace(config, eps=4.0), on_event=events.append)
    said = _afresh(events)
    assert said.startswith("the settings changed since the run on these photos stopped at step 4")
    assert "(eps 8 in the checkpoint, 4 now)" in said and "resume" in said
    save_to_library(result, "other settings")
    assert stopped.is_file()  # still resumable with its own settings
    again: list[Event] = []
    train_into_library(config, on_event=again.append)
    assert _afresh(again) == "" and _started(again).resumed_from >= 3


# --- the preview of a fine-tuning job ----------------------------------------------------------
@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random-weight SD VAE folder, the fine-tuning encoder."""
    return str(save_tiny_vae(tmp_path_factory.mktemp("encoder") / "sd"))


def _job_copy(photo: Path, out: Path, settings: ProtectSettings) -> np.ndarray:
    report = ProtectJob([photo], out, settings).run(ignore_events)
    [done] = report.done
    return np.asarray(Image.open(done.output).convert("RGB"))


@pytest.mark.parametrize("protection", ["photo", "universal"])
def test_a_fine_tuned_preview_shows_the_pixels_the_job_writes(
    tmp_path: Path, encoder: str, generator_file: Path, protection: str
) -> None:
    """What the preview shows is the copy a fine-tuning job writes, pixel for pixel, and not
    the one-pass protection it starts from."""
    photo = samples.photo(tmp_path / "in" / "cat.png", 40, 24)
    pattern = samples.perturbation_file(tmp_path)
    options = ApplyOptions(working_size=16, strength=8)
    tuning = FineTuning(3, encoder, jpeg=75, objective="latent", device="cpu")
    generator = generator_file if protection == "photo" else None
    events: list[Event] = []
    shown = protect_for_preview(
        photo, pattern, options, protection=protection, generator=generator,
        fine_tuning=tuning, on_event=events.append,
    )  # fmt: skip
    settings = tuning.settings(protection, options, pattern, generator)
    assert settings.mode == ("photo-finetune" if protection == "photo" else "finetune")
    np.testing.assert_array_equal(shown.protected, _job_copy(photo, tmp_path / "out", settings))
    one_pass = protect_for_preview(photo, pattern, options, protection=protection,
                                   generator=generator)  # fmt: skip
    assert not np.array_equal(shown.protected, one_pass.protected)
    assert np.abs(shown.protected.astype(int) - shown.photo).max() <= 8
    steps = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert all(e.stage == "fine-tuning" for e in events if isinstance(e, Progress))


def test_a_fine_tuned_preview_stops_between_steps_when_cancelled(
    tmp_path: Path, encoder: str
) -> None:
    photo = samples.photo(tmp_path / "cat.png", 40, 24)
    cancel = CancelToken()

    def on_event(event: Event) -> None:
        if isinstance(event, Progress) and event.done == 1:
            cancel.cancel()

    tuning = FineTuning(5, encoder, jpeg=None, objective="latent", device="cpu")
    with pytest.raises(Cancelled):
        protect_for_preview(
            photo, None, ApplyOptions(working_size=16), protection="photo",
            fine_tuning=tuning, on_event=on_event, cancel=cancel,
        )  # fmt: skip


def test_a_fine_tuned_preview_with_a_missing_encoder_says_which(tmp_path: Path) -> None:
    photo = samples.photo(tmp_path / "cat.png", 40, 24)
    tuning = FineTuning(2, str(tmp_path / "no-vae"), jpeg=None, objective="latent", device="cpu")
    with pytest.raises(SpdeskError) as info:
        protect_for_preview(photo, None, ApplyOptions(working_size=16), fine_tuning=tuning)
    assert "no-vae" in info.value.user_text()


def _fine_tuning_steps(events: list[Event]) -> list[float]:
    return [e.done for e in events if isinstance(e, Progress) and e.stage == "fine-tuning"]


def test_a_second_preview_of_the_same_fine_tuning_reuses_its_photo_and_says_so(
    tmp_path: Path, encoder: str
) -> None:
    """Another prompt changes nothing the fine-tuning decides: minutes on a CPU are not spent
    again, and the pixels are the same."""
    photo = samples.photo(tmp_path / "cat.png", 40, 24)
    options = ApplyOptions(working_size=16, strength=8)
    tuning = FineTuning(2, encoder, jpeg=None, objective="latent", device="cpu")
    memo = FineTunedMemo()
    first: list[Event] = []
    again: list[Event] = []
    shown = protect_for_preview(photo, None, options, protection="photo", fine_tuning=tuning,
                                memo=memo, on_event=first.append)  # fmt: skip
    kept = protect_for_preview(photo, None, options, protection="photo", fine_tuning=tuning,
                               memo=memo, on_event=again.append)  # fmt: skip
    assert _fine_tuning_steps(first) == [1, 2] and _fine_tuning_steps(again) == []
    assert [e.message for e in again if isinstance(e, Loading)] == [REUSED_FINE_TUNING]
    np.testing.assert_array_equal(kept.protected, shown.protected)


@pytest.mark.parametrize("change", ["strength", "steps", "photo", "protection"])
def test_a_preview_fine_tunes_again_when_what_decides_its_pixels_changed(
    tmp_path: Path, encoder: str, change: str
) -> None:
    photo = samples.photo(tmp_path / "cat.png", 40, 24)
    options = ApplyOptions(working_size=16, strength=8)
    tuning = FineTuning(2, encoder, jpeg=None, objective="latent", device="cpu")
    memo = FineTunedMemo()
    protect_for_preview(photo, None, options, protection="photo", fine_tuning=tuning, memo=memo)
    protection = "universal" if change == "protection" else "photo"
    if change == "strength":
        options = replace(options, strength=6)
    elif change == "steps":
        tuning = replace(tuning, steps=1)
    elif change == "photo":  # the same name and size, other pixels
        Image.fromarray(255 - samples.photo_array(40, 24)).save(photo)
    events: list[Event] = []
    view = protect_for_preview(photo, None, options, protection=protection, fine_tuning=tuning,
                               memo=memo, on_event=events.append)  # fmt: skip
    assert _fine_tuning_steps(events) == list(range(1, tuning.steps + 1))
    np.testing.assert_array_equal(view.photo, np.asarray(Image.open(photo).convert("RGB")))


def test_a_fine_tuned_preview_names_a_missing_pattern_file_with_the_memo_too(
    tmp_path: Path, encoder: str
) -> None:
    """The memo's key read the file first: a bare FileNotFoundError reached the app (review)."""
    photo = samples.photo(tmp_path / "cat.png", 40, 24)
    tuning = FineTuning(1, encoder, jpeg=None, objective="latent", device="cpu")
    for memo in (None, FineTunedMemo()):
        with pytest.raises(SpdeskError) as info:
            protect_for_preview(
                photo, tmp_path / "gone.safetensors", ApplyOptions(working_size=16),
                fine_tuning=tuning, memo=memo,
            )  # fmt: skip
        assert "gone.safetensors" in info.value.user_text()


def test_the_fine_tuning_of_a_job_is_the_one_its_preview_runs() -> None:
    settings = ProtectSettings(
        mode="photo-finetune", finetune_steps=5, encoder="taesd", finetune_jpeg=None,
        device="cpu", working_size=256, strength=6,
    )  # fmt: skip
    tuning = FineTuning.of(settings)
    again = tuning.settings("photo", ApplyOptions(working_size=256, strength=6), None, None)
    for field in ("mode", "finetune_steps", "encoder", "finetune_jpeg", "device", "strength"):
        assert getattr(again, field) == getattr(settings, field), field
