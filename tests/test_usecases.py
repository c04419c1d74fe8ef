"""The use cases the CLI and the app share: training into the library with its checkpoint and
resume policy, and filing the result under a name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import _config, write_photos
from tiny_sd import save_tiny_vae

from spdesk.core.errors import Cancelled, OutputExistsError
from spdesk.core.events import CancelToken, Event, EventSink
from spdesk.core.events.training import TrainStarted, TrainStep
from spdesk.core.perturbation import library_perturbations, load_perturbation
from spdesk.core.train import TrainConfig
from spdesk.core.usecases import library_checkpoint, save_to_library, train_into_library


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


def test_a_cancelled_library_run_resumes_and_its_checkpoint_goes_when_done(
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
    assert not checkpoint.exists()


def test_a_damaged_checkpoint_is_removed_and_the_run_starts_afresh(config: TrainConfig) -> None:
    checkpoint = library_checkpoint(config)
    checkpoint.write_bytes(b"\0" * 100)  # as a disk error leaves it
    events: list[Event] = []
    train_into_library(config, on_event=events.append)
    assert _started(events).resumed_from == 0
    assert not checkpoint.exists()


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
