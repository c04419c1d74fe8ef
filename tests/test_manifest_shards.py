"""Manifest shards: many writers (a distributed run's tasks), one manifest, no Ray needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spdesk.core.errors import OutputError
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.manifest import (
    DONE,
    FAILED,
    MANIFEST_NAME,
    SHARDS_FOLDER,
    Manifest,
    read_job_manifest,
    shard_path,
)
from tests import protect_samples as samples


def _settings(tmp_path: Path) -> ProtectSettings:
    folder = tmp_path / "perturbation"
    folder.mkdir()
    return ProtectSettings(perturbation=samples.perturbation_file(folder), working_size=16)


def test_a_local_job_merges_what_a_killed_distributed_run_left_in_shards(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    photo = samples.photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    ProtectJob([photo], out, settings).run()
    (entry,) = read_job_manifest(out / MANIFEST_NAME).values()
    (out / MANIFEST_NAME).unlink()  # as if only a task's shard had recorded the photo
    with Manifest(out, shard="task-1") as shard:
        shard.record(
            entry["source"],
            DONE,
            **{k: entry[k] for k in entry if k not in ("source", "status", "time")},
        )
    assert shard_path(out, "task-1").is_file()

    again = ProtectJob([photo], out, settings).run()
    assert not again.done and [e.reason for e in again.skipped] == [
        "already protected with the same settings"
    ]
    assert not (out / SHARDS_FOLDER).exists()
    assert read_job_manifest(out / MANIFEST_NAME)[entry["source"]]["status"] == DONE


def test_a_shard_line_older_than_the_manifests_does_not_win(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with Manifest(out, shard="old") as shard:
        shard.record("/photos/a.jpg", FAILED, reason="an older try failed")
    with Manifest(out) as manifest:  # merges the shard
        assert manifest.entries[manifest.source_id("/photos/a.jpg")]["status"] == FAILED
        manifest.record("/photos/a.jpg", DONE, output="a.protected.jpg")
    stale = {"source": "/photos/a.jpg", "status": FAILED, "time": 1.0}  # an older spdesk's
    shard_path(out, "stale").parent.mkdir()
    shard_path(out, "stale").write_text(json.dumps(stale) + "\n", encoding="utf-8")
    with Manifest(out) as manifest:
        assert manifest.entries[manifest.source_id("/photos/a.jpg")]["status"] == DONE
    assert not (out / SHARDS_FOLDER).exists()


def test_a_shard_a_newer_spdesk_wrote_is_refused_without_keeping_the_folder_locked(
    tmp_path: Path,
) -> None:
    """The refusal escaped open() past its clean-up: the lock stayed held, and every later run
    into the folder, in the app, was "Another spdesk job is writing into …" (review M1)."""
    out = tmp_path / "out"
    out.mkdir()
    shard = shard_path(out, "worker-1")
    shard.parent.mkdir()
    shard.write_text(json.dumps({"format": "spdesk-manifest", "version": 2}) + "\n")
    with pytest.raises(OutputError, match="newer version of spdesk") as raised:
        Manifest(out).open()
    shard.unlink()
    # The error is still held (as the app holds it, to show): its manifest must not hold the lock.
    with Manifest(out) as manifest:  # not "Another spdesk job is writing into …"
        assert manifest.entries == {} and raised.value.message
