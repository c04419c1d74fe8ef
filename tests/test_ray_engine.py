"""The Ray engine keeps the local engine's guarantees: same outputs, failures, resume, manifest.

One local Ray instance (2 CPUs, a small object store, no dashboard) serves the whole module;
every job here joins it. Each test compares with the local engine rather than fixed bytes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import posixpath
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from spdesk.cli import main
from spdesk.core.discovery import InputPhoto
from spdesk.core.distributed.ray_engine import (
    RayOptions,
    RayProtectJob,
    RayStats,
    decode_event,
    decode_task,
    encode_event,
    encode_task,
    protect_on_ray,
)
from spdesk.core.errors import ConfigError, EncoderError
from spdesk.core.events import CancelToken, Event
from spdesk.core.files import LOCK_NAME, TEMP_SUFFIX
from spdesk.core.jobs import (
    FileDone,
    FileFailed,
    FileSkipped,
    JobCancelled,
    ProtectJob,
    ProtectSettings,
)
from spdesk.core.jobs.events import FailReason, SkipReason
from spdesk.core.jobs.naming import Target
from spdesk.core.jobs.pool import _Planned, _Task
from spdesk.core.manifest import (
    MANIFEST_NAME,
    SHARDS_FOLDER,
    SourceIds,
    SourceSignature,
    read_job_manifest,
)
from tests import protect_samples as samples
from tests.s3_server import new_bucket, s3_server

# Decided without importing Ray, so that the rest of the suite never runs with Ray loaded.
pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="Ray is not installed (spdesk's [ray] extra, part of the test extra)",
    ),
    pytest.mark.slow,  # a Ray instance and its workers: about a minute on 2 cores
]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One small local Ray instance for the module; workers get an isolated SPDESK_HOME."""
    import ray

    home = tmp_path_factory.mktemp("ray-spdesk-home")
    for attempt in (1, 2):  # a starved machine can miss Ray's start-up deadlines
        try:
            context = ray.init(
                num_cpus=2,
                object_store_memory=200 * 1024**2,
                include_dashboard=False,
                logging_level="WARNING",
                runtime_env={"env_vars": {"SPDESK_HOME": str(home), "OMP_NUM_THREADS": "1"}},
            )
            break
        except Exception as error:  # the raylet's helpers did not start in time
            ray.shutdown()
            if attempt == 2:
                pytest.skip(f"Ray could not start a local instance on this busy machine: {error}")
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> ProtectSettings:
    folder = tmp_path / "perturbation"
    folder.mkdir()
    return ProtectSettings(perturbation=samples.perturbation_file(folder), working_size=16)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file spdesk wrote under ``root`` (outputs only), by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)
    }


def _photo_mix(root: Path) -> Path:
    """Formats, folders, metadata, alpha and two photos that want the same output name."""
    samples.photo(root / "a" / "one.jpg", 40, 24)
    samples.photo(root / "a" / "two.png", 36, 28)
    samples.photo(root / "a" / "one.png", 40, 24, fmt="JPEG")  # a JPEG: also one.protected.jpg
    (root / "b").mkdir()
    samples.gps_jpeg(root / "b" / "gps.jpg")
    samples.rgba(root / "b" / "alpha.png")
    for i in range(6):
        samples.photo(root / "c" / f"{i}.webp", 30 + i, 20)
    return root


def _run_driver(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a Ray driver script in its own process (so that it can be killed), with this checkout
    importable and one torch thread."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", script, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def _ray(settings: ProtectSettings, **options: object) -> RayOptions:
    return RayOptions(**{"progress": False, "batch_size": 3, **options})  # type: ignore[arg-type]


def test_outputs_are_byte_identical_to_the_local_engine(
    tmp_path: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    inputs = _photo_mix(tmp_path / "in")
    originals_guard.append(inputs)
    settings = dataclasses.replace(settings, randomize=True, seed=3, strip_metadata="gps")
    local = ProtectJob([inputs], tmp_path / "local", settings).run()
    events: list[Event] = []
    distributed = protect_on_ray(
        [inputs], tmp_path / "ray", settings, _ray(settings), on_event=events.append
    )
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    assert len(_tree(tmp_path / "ray")) == len(local.done) == 11
    assert "a/one.protected-2.jpg" in _tree(tmp_path / "ray")  # the same collision naming
    by_source = {e.source: (e.output, e.psnr, e.max_change, e.notes) for e in local.done}
    assert {
        e.source: (tmp_path / "local" / e.output.relative_to(tmp_path / "ray"), *rest)
        for e in distributed.done
        for rest in [(e.psnr, e.max_change, e.notes)]
    } == by_source
    assert distributed.ok and [type(e).__name__ for e in events].count("FileDone") == 11


def _assert_busy_share_measured(stats: RayStats, workers: int) -> None:
    """Workers sent readings: time in their protector, within their time alive. (Plain tasks
    may run one after the other on one worker process.)"""
    assert 1 <= len(stats.readings) <= workers
    assert all(0 < busy <= alive for busy, alive in stats.readings.values())
    share = stats.busy_share
    assert share is not None and 0 < share <= 1
    assert stats.busy_text() in stats.text()


def test_a_bad_photo_mix_fails_photo_by_photo_like_the_local_engine(
    tmp_path: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    for i in range(4):
        samples.photo(inputs / f"good{i}.png")
    samples.truncated_jpeg(inputs / "half.jpg")
    (inputs / "random.jpg").write_bytes(os.urandom(4096))
    (inputs / "empty.jpg").write_bytes(b"")
    samples.png_bomb(inputs / "bomb.png")
    samples.animated(inputs / "anim.gif", "GIF")
    (inputs / "notes.txt").write_text("not a photo")
    originals_guard.append(inputs)
    local = ProtectJob([inputs], tmp_path / "local", settings).run()
    assert local.failed

    args = ["protect", str(inputs), "--out", str(tmp_path / "ray"), "--engine", "ray"]
    perturbation = ["--perturbation", str(settings.perturbation), "--working-size", "16"]
    assert main([*args, *perturbation, "--json"]) == 1  # some photos failed
    summary = json.loads(capsys.readouterr().out)
    expected = local.to_dict()["failed"]  # path, kind, reason and hint of each
    assert sorted(summary["failed"], key=str) == sorted(expected, key=str)
    failed = len(local.failed)
    counts = {
        "done": 4, "unchanged": 0, "skipped": 0, "left_out": 1, "failed": failed, "pending": 0
    }  # fmt: skip
    assert summary["counts"] == counts  # notes.txt is left out, not a skipped photo
    assert summary["engine"]["engine"] == "ray" and summary["engine"]["protected"] == 4
    assert summary["engine"]["photos_per_second"] > 0
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")


_KILLED_DRIVER = """
import os, signal, sys
from pathlib import Path
from spdesk.core.distributed.ray_engine import RayOptions, protect_on_ray
from spdesk.core.jobs import FileDone, ProtectSettings

inputs, out, perturbation, address = sys.argv[1:5]
if len(sys.argv) > 5:  # a local S3's settings, for s3:// URLs
    import json, fsspec.config
    fsspec.config.conf["s3"] = json.loads(sys.argv[5])
done = []

def on_event(event):
    if isinstance(event, FileDone):
        done.append(event)
        if len(done) == 4:  # some batches finished, others in flight: kill the driver here
            os.kill(os.getpid(), signal.SIGKILL)

settings = ProtectSettings(perturbation=Path(perturbation), working_size=16)
options = RayOptions(address=address, progress=False, batch_size=2)
protect_on_ray([inputs], out, settings, options, on_event=on_event)  # paths or URLs
"""


def test_a_killed_driver_resumes_with_nothing_lost_and_identical_outputs(
    tmp_path: Path, settings: ProtectSettings, ray_instance: str
) -> None:
    inputs = tmp_path / "in"
    for i in range(24):
        samples.photo(inputs / f"{i:02d}.png", 64, 48)
    out = tmp_path / "ray"
    driver = _run_driver(
        _KILLED_DRIVER, str(inputs), str(out), str(settings.perturbation), ray_instance
    )
    assert driver.returncode == -9, driver.stderr[-2000:]  # killed, not finished
    finished = [p for p in out.rglob("*.protected.png")]
    assert 4 <= len(finished) < 24
    assert list((out / SHARDS_FOLDER).glob("*.jsonl"))  # what the workers recorded, unmerged

    resumed = RayProtectJob([inputs], out, settings, _ray(settings)).run()
    assert resumed.ok and not resumed.failed
    assert len(resumed.done) + len(resumed.skipped) == 24
    assert len(resumed.done) <= 24 - 4  # what the killed run recorded was not done again
    local = ProtectJob([inputs], tmp_path / "local", settings).run()
    assert _tree(out) == _tree(tmp_path / "local")  # complete, byte-identical, no partial files
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    assert not (out / SHARDS_FOLDER).exists()
    assert len(local.done) == 24


def _dying(store: Any, marker: Path, *, before: bool, photo: str = "", once_at: str = "") -> Any:
    """``store`` with a fault for tests: a Ray worker publishing an output kills itself (SIGKILL)
    just before the output is published (for an object store: its 'publishing' line stored,
    not yet its PUT) or just after (its 'done' line not yet stored). Only the first such output
    of the job (``marker`` records that one died), or the first of photo ``once_at``'s, or,
    given ``photo``, every try of that photo's output. The driver never dies. The class is made
    here, so that Ray sends it to the workers by value (cloudpickle): nothing of the tests is
    imported there."""
    driver = os.getpid()
    base = type(store)

    class Dying(base):  # type: ignore[valid-type,misc]
        def publish(self, temp: Path, target: str | Path, **how: Any) -> None:
            dies = os.getpid() != driver and self._dies(str(target))
            if dies and before:
                os.kill(os.getpid(), signal.SIGKILL)
            base.publish(self, temp, target, **how)
            if dies:
                os.kill(os.getpid(), signal.SIGKILL)

        def _dies(self, target: str) -> bool:
            if photo:
                return posixpath.basename(target).startswith(f"{photo}.")
            if once_at and not posixpath.basename(target).startswith(f"{once_at}."):
                return False
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # the first output only
            except FileExistsError:
                return False
            return True

    dying = Dying.__new__(Dying)
    dying.__dict__.update(store.__dict__)
    return dying


@pytest.mark.parametrize(
    ("mode", "before", "once_at"),
    [("universal", True, ""), ("photo", False, ""), ("universal", False, "02")],
    ids=["tasks-before-publishing", "actors-after-publishing", "tasks-after-two-photos"],
)
def test_a_killed_worker_is_retried_and_nothing_is_lost_or_done_twice(
    tmp_path: Path, settings: ProtectSettings, mode: str, before: bool, once_at: str
) -> None:
    """A worker dies with its batch half done (a universal-mode task with an output written but
    not yet published, or a photo-mode actor with one published but not yet recorded, or a task
    that had finished two photos of its batch first): Ray retries the batch, which finishes the
    rest, and nothing is lost, doubled or left behind; what the first try finished is reported
    as done, as the local engine reports it (it was "skipped: already protected")."""
    if mode == "photo":
        pytest.importorskip("torch")
    settings = dataclasses.replace(settings, mode=mode)
    inputs = tmp_path / "in"
    for i in range(16):
        samples.photo(inputs / f"{i:02d}.png", 64, 48)
    out, died = tmp_path / "ray", tmp_path / "died"
    job = RayProtectJob([inputs], out, settings, _ray(settings, batch_size=4 if once_at else 2))
    job.store = job.output_store = _dying(job.output_store, died, before=before, once_at=once_at)
    report = job.run()
    assert died.exists() and not report.failed and not report.pending
    # What the retried batch's first try finished is done by this job, with its figures.
    assert len(report.done) == 16 and not report.skipped
    local = ProtectJob([inputs], tmp_path / "local", settings).run()
    assert _tree(out) == _tree(tmp_path / "local")
    said = {(e.source.name, e.output.name, e.psnr, e.max_change, e.notes) for e in report.done}
    assert said == {
        (e.source.name, e.output.name, e.psnr, e.max_change, e.notes) for e in local.done
    }
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


_UNIVERSAL_DRIVER = """
import sys
from pathlib import Path
from spdesk.core.distributed.ray_engine import RayOptions, protect_on_ray
from spdesk.core.jobs import ProtectSettings

inputs, out, perturbation, address = sys.argv[1:5]
settings = ProtectSettings(perturbation=Path(perturbation), working_size=16)
report = protect_on_ray([inputs], out, settings, RayOptions(address=address, batch_size=2))
print(len(report.done), "ray.data" in sys.modules)
"""


def test_universal_mode_runs_as_plain_tasks_without_ray_data_and_shows_rays_progress_bar(
    tmp_path: Path, settings: ProtectSettings, ray_instance: str
) -> None:
    """A universal-mode driver never imports Ray Data (nor starts its helper actors, which made
    a job's start slow) and shows the job's progress with Ray's own bar (``tqdm_ray``)."""
    inputs = tmp_path / "in"
    for i in range(6):
        samples.photo(inputs / f"{i}.png")
    driver = _run_driver(
        _UNIVERSAL_DRIVER,
        str(inputs),
        str(tmp_path / "out"),
        str(settings.perturbation),
        ray_instance,
    )
    assert driver.returncode == 0, driver.stderr[-2000:]
    assert driver.stdout.split("\n")[-2] == "6 False"  # every photo, and no Ray Data loaded
    assert "Protecting: 100%" in driver.stderr and "6.00/6.00" in driver.stderr  # tqdm_ray


def test_the_command_on_a_pipe_prints_each_photo_once_and_no_progress_bar(
    tmp_path: Path, settings: ProtectSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``spdesk protect --engine ray`` into a log: one line per photo, the report once, and none
    of the carriage returns of Ray's bar (whose last state came out twice on one line)."""
    inputs = tmp_path / "in"
    for i in range(3):
        samples.photo(inputs / f"{i}.png")
    args = ["protect", str(inputs), "--out", str(tmp_path / "out"), "--engine", "ray"]
    perturbation = ["--perturbation", str(settings.perturbation), "--working-size", "16"]
    assert main([*args, *perturbation]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err and "Protecting:" not in err
    lines = err.splitlines()
    done = sorted(line.split()[1] for line in lines if line.startswith("done"))
    assert done == [str(inputs / f"{i}.png") for i in range(3)]  # as batches come back
    assert out.count("3 protected") == 1 and out.count("Ray: 3 photo(s)") == 1


def test_either_engine_skips_what_the_other_finished(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    inputs = tmp_path / "in"
    for i in range(5):
        samples.photo(inputs / f"{i}.jpg")
    out = tmp_path / "out"
    job = RayProtectJob([inputs], out, settings, _ray(settings))
    first = job.run()
    assert len(first.done) == 5
    _assert_busy_share_measured(job.stats, workers=2)  # universal mode: plain tasks
    entries = read_job_manifest(out / MANIFEST_NAME)
    assert {e["status"] for e in entries.values()} == {"done"}
    assert not (out / SHARDS_FOLDER).exists()  # merged into the manifest

    again = ProtectJob([inputs], out, settings).run()
    assert not again.done and len(again.skipped) == 5
    assert {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}

    samples.photo(inputs / "new.jpg")
    local_then_ray = RayProtectJob([inputs], out, settings, _ray(settings)).run()
    assert [e.source.name for e in local_then_ray.done] == ["new.jpg"]
    assert len(local_then_ray.skipped) == 5


def test_overwrite_with_other_settings_replaces_the_outputs_as_the_local_engine_does(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """The driver proves the outputs spdesk's; a worker's shard, holding only its batch, once
    refused every one ("already exists") and its "failed" lines hid the proof."""
    inputs = tmp_path / "in"
    for i in range(2):
        samples.photo(inputs / f"{i}.jpg")
    overwrite = dataclasses.replace(settings, collision="overwrite")
    stronger = dataclasses.replace(overwrite, strength=4.0)
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        run = (
            (lambda s, o=out: ProtectJob([inputs], o, s).run())
            if engine == "local"
            else (lambda s, o=out: RayProtectJob([inputs], o, s, _ray(s)).run())
        )
        run(overwrite)
        replaced = run(stronger)
        assert not replaced.failed, [e.reason for e in replaced.failed]
        assert sorted(e.output.name for e in replaced.done) == [
            "0.protected.jpg",
            "1.protected.jpg",
        ]
        again = run(stronger)
        assert {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}
        runs[engine] = _tree(out)
    assert runs["ray"] == runs["local"]


def test_photos_failing_on_a_rerun_keep_their_earlier_outputs_proof(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    inputs = tmp_path / "in"
    for i in range(2):
        samples.photo(inputs / f"{i}.jpg", 40, 30)
    out = tmp_path / "out"
    RayProtectJob([inputs], out, settings, _ray(settings)).run()
    tiny = dataclasses.replace(settings, strength=4.0, max_pixels=100)  # both refused
    failed = RayProtectJob([inputs], out, tiny, _ray(tiny)).run()
    assert len(failed.failed) == 2
    entries = read_job_manifest(out / MANIFEST_NAME)
    assert {e["status"] for e in entries.values()} == {"done"}, "a failure changed no output"
    again = RayProtectJob([inputs], out, settings, _ray(settings)).run()
    assert not again.done and {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}


def test_unique_names_past_a_foreign_file_are_the_local_engines(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    inputs = tmp_path / "in"
    samples.photo(inputs / "a.jpg", 24, 16)
    samples.photo(inputs / "a.tif", 96, 64, fmt="TIFF")  # larger: its batch ends later
    unique = dataclasses.replace(settings, collision="unique", format="png")
    names = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        out.mkdir()
        (out / "a.protected.png").write_bytes(b"someone else's file")
        if engine == "local":
            report = ProtectJob([inputs], out, unique).run()
        else:
            report = RayProtectJob([inputs], out, unique, _ray(unique, batch_size=1)).run()
        names[engine] = {e.source.name: e.output.name for e in report.done}
        assert (out / "a.protected.png").read_bytes() == b"someone else's file"
    assert (
        names["ray"]
        == names["local"]
        == {"a.jpg": "a.protected-2.png", "a.tif": "a.protected-3.png"}
    )


def test_fine_tuning_runs_on_actors_with_the_local_engines_outputs(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    pytest.importorskip("torch")
    from tiny_sd import save_tiny_vae

    encoder = str(save_tiny_vae(tmp_path / "sd"))
    inputs = tmp_path / "in"
    for i in range(3):
        samples.photo(inputs / f"{i}.png", 40, 24)
    (inputs / "broken.png").write_bytes(b"not an image")
    tuned = dataclasses.replace(
        settings, mode="finetune", finetune_steps=2, encoder=encoder, device="cpu"
    )
    local = ProtectJob([inputs], tmp_path / "local", tuned).run()
    job = RayProtectJob([inputs], tmp_path / "ray", tuned, _ray(tuned, num_cpus=1))
    report = job.run()
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    assert len(report.done) == len(local.done) == 3
    assert [(e.kind, e.reason) for e in report.failed] == [(e.kind, e.reason) for e in local.failed]
    assert job.stats.worker_kind == "CPU" and job.stats.workers == 1  # no GPU in this cluster
    _assert_busy_share_measured(job.stats, workers=1)


@pytest.mark.parametrize("mode", ["universal", "finetune"], ids=["tasks", "actors"])
def test_relative_paths_name_the_drivers_folders_on_workers_elsewhere(
    tmp_path: Path, settings: ProtectSettings, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers of a cluster the job joins (--address) run in the cluster's folder, not the
    user's: relative inputs, output and encoder named other folders, or none ("Could not
    write ../out/...", "Encoder '../models/...' not found"). Here the driver moves away from
    the folder the module's workers run in."""
    pytest.importorskip("torch")
    from tiny_sd import save_tiny_vae

    save_tiny_vae(tmp_path / "sd")
    for i in range(3):
        samples.photo(tmp_path / "in" / f"{i}.png", 40, 24)
    chosen = dataclasses.replace(
        settings,
        perturbation=settings.perturbation.relative_to(tmp_path),  # type: ignore[union-attr]
        mode=mode,
        finetune_steps=1,
        encoder="sd",
        device="cpu",
    )
    monkeypatch.chdir(tmp_path)
    local = ProtectJob([Path("in")], Path("local"), chosen).run()
    report = RayProtectJob(["in"], "ray", chosen, _ray(chosen, num_cpus=1)).run()
    assert report.ok and len(report.done) == len(local.done) == 3
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    assert all(e.output.is_absolute() for e in report.done)


@pytest.mark.parametrize("mode", ["photo", "universal"], ids=["actors", "tasks"])
def test_a_named_error_on_the_workers_reaches_the_user_in_its_own_words(
    tmp_path: Path, settings: ProtectSettings, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised on an actor, it came back as Ray Data's wrapper, terminal colour codes and all:
    "The Ray run failed: RayTaskError(UserCodeException): \\x1b[36mray::MapWorker(...)". Here
    the workers cannot write their manifest shards (the output, relative, names a folder that
    is not there from where they run)."""
    from spdesk.core.distributed import ray_engine
    from spdesk.core.errors import OutputError

    for i in range(2):
        samples.photo(tmp_path / "in" / f"{i}.png", 40, 24)
    monkeypatch.setattr(ray_engine, "_absolute", lambda location: location)
    monkeypatch.chdir(tmp_path)
    out = f"out-{uuid.uuid4().hex}"  # a folder only the driver has
    chosen = dataclasses.replace(settings, mode=mode)
    with pytest.raises(OutputError) as raised:
        RayProtectJob([str(tmp_path / "in")], out, chosen, _ray(chosen, num_cpus=1)).run()
    message = raised.value.user_text()
    assert message.startswith(f"Could not write {out}/") and "\x1b" not in message
    assert not (REPO / out).exists()


def test_a_failure_of_ray_itself_is_named_without_terminal_colour_codes() -> None:
    from spdesk.core.distributed.ray_engine import _engine_error

    error = _engine_error(RuntimeError("\x1b[36mray::MapWorker.submit()\x1b[39m (pid=7)\nmore"))
    assert error.message == "The Ray run failed: RuntimeError: ray::MapWorker.submit() (pid=7)"


def test_tasks_and_outcomes_travel_as_json(tmp_path: Path) -> None:
    done = FileDone(tmp_path / "a.jpg", tmp_path / "o.jpg", 31.5, 8, 0.2, ("note",), 1, 2)
    failed = FileFailed(tmp_path / "b.jpg", FailReason.UNREADABLE, "damaged", "copy it", 2, 2)
    skipped = FileSkipped(tmp_path / "c.jpg", SkipReason.OUTPUT_EXISTS, "taken", None, 3, 3)
    for event in (done, failed, skipped):
        assert decode_event(encode_event(event)) == event
    photo = InputPhoto(tmp_path / "in" / "é.jpg", tmp_path / "in")
    item = _Planned(photo, Path("é.jpg"), str(photo.path), 3, 9)
    target = Target(
        tmp_path / "out" / "é.protected.jpg",
        replace=True,
        notes=("shortened",),
        existing=True,  # a taken name: the worker must not publish over it as a retry would
        owner=item.key,
        format="PNG",  # decided with the name: a HEIC with transparency is written as PNG
        earlier=(tmp_path / "out" / "é.protected.jpg", "made with other settings"),
    )
    task = _Task(item, target, SourceSignature(5, 7), 0.0)
    assert decode_task(encode_task(task)) == task
    plain = _Task(item, replace(target, earlier=None), task.signature, 0.0)
    assert decode_task(encode_task(plain)) == plain


def test_a_missing_encoder_on_the_workers_is_the_named_error(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    samples.photo(tmp_path / "in" / "a.png")
    tuned = dataclasses.replace(
        settings, mode="finetune", encoder=str(tmp_path / "nowhere.safetensors"), device="cpu"
    )
    job = RayProtectJob([tmp_path / "in"], tmp_path / "out", tuned, _ray(tuned, num_cpus=1))
    with pytest.raises(EncoderError, match=r"nowhere\.safetensors' not found"):
        job.run()


def test_a_damaged_encoder_file_is_refused_before_any_write_as_the_local_engine_does(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    samples.photo(tmp_path / "in" / "a.png")
    damaged = tmp_path / "taesd.safetensors"
    damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    tuned = dataclasses.replace(
        settings, mode="finetune", encoder=str(damaged), device="cpu", finetune_steps=1
    )
    with pytest.raises(EncoderError) as local:
        ProtectJob([tmp_path / "in"], tmp_path / "local", tuned).run()
    job = RayProtectJob([tmp_path / "in"], tmp_path / "out", tuned, _ray(tuned, num_cpus=1))
    with pytest.raises(EncoderError) as distributed:
        job.run()
    assert distributed.value.message == local.value.message
    assert not (tmp_path / "out").exists() and not (tmp_path / "local").exists()


def test_photo_mode_on_cpu_actors_writes_the_local_engines_bytes(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """Photo mode (the default) with the bundled generator: keyed, photo-specific outputs match
    the local engine's byte for byte. The workers have a config folder, and so an install key,
    of their own (the module's runtime_env): they protect with the driver's key."""
    pytest.importorskip("torch")
    inputs = tmp_path / "in"
    for i in range(3):
        samples.photo(inputs / f"{i}.png", 40 + 8 * i, 24)
    samples.grey_icc_jpeg(inputs / "grey.jpg")
    samples.photo(inputs / "big.jpg", 72, 40)  # larger than the view: the delta is resized
    photo = dataclasses.replace(settings, mode="photo")
    local = ProtectJob([inputs], tmp_path / "local", photo).run()
    job = RayProtectJob([inputs], tmp_path / "ray", photo, _ray(photo, num_cpus=1, batch_size=2))
    report = job.run()
    assert len(report.done) == len(local.done) == 5
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    assert job.placement is not None and job.placement.device == "cpu"
    assert (job.stats.worker_kind, job.stats.workers) == ("CPU", 1)  # no GPU in this cluster
    _assert_busy_share_measured(job.stats, workers=1)
    again = ProtectJob([inputs], tmp_path / "ray", photo).run()  # the same fingerprint
    assert not again.done and len(again.skipped) == 5


@pytest.mark.parametrize("mode", ["photo", "universal"], ids=["actors", "tasks"])
def test_a_name_that_is_not_utf8_is_protected_as_the_local_engine_does(
    tmp_path: Path, settings: ProtectSettings, mode: str
) -> None:
    """Its batch's manifest shard name hashed the name as UTF-8: the batch failed on every
    try, then the whole job (a Ray audit: 53 of 161 photos written, 0 in universal mode)."""
    inputs = tmp_path / "in"
    odd = inputs / os.fsdecode(b"bad\xffname.png")
    try:
        samples.photo(odd, 40, 24)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    samples.photo(inputs / "plain.png", 40, 24)
    chosen = dataclasses.replace(settings, mode=mode)
    local = ProtectJob([inputs], tmp_path / "local", chosen).run()
    report = RayProtectJob([inputs], tmp_path / "ray", chosen, _ray(chosen, num_cpus=1)).run()
    assert report.ok and len(report.done) == len(local.done) == 2
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    assert os.fsdecode(b"bad\xffname.protected.png") in _tree(tmp_path / "ray")


def test_a_cancel_reaches_the_actors_and_the_report_matches_the_files_on_disk(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """An actor protects a whole batch per call: the stop reaches it between photos, and what
    it finished meanwhile is recorded (it once came back unrecorded: "not done", yet on disk)."""
    pytest.importorskip("torch")
    inputs = tmp_path / "in"
    for i in range(16):
        samples.photo(inputs / f"{i:02d}.png", 192 + i, 128)
    photo = dataclasses.replace(settings, mode="photo", working_size=192)  # a while a photo
    out = tmp_path / "out"
    cancel = CancelToken()

    def on_event(event: Event) -> None:
        if isinstance(event, FileDone):
            cancel.cancel()

    job = RayProtectJob([inputs], out, photo, _ray(photo, num_cpus=2, batch_size=2))
    with pytest.raises(JobCancelled) as stopped:
        job.run(on_event, cancel)
    report = stopped.value.report
    written = {p.name for p in out.rglob("*.png")}
    assert written == {e.output.name for e in report.done}, "on disk but reported not done"
    assert len(report.done) + len(report.pending) == 16
    assert len(report.done) < 16, "the actors protected every batch after the cancel"
    entries = samples.recorded(out, sorted(inputs.iterdir()))
    done = {name for name, e in entries.items() if e["status"] == "done"}
    assert done == {e.source.name for e in report.done}
    again = RayProtectJob([inputs], out, photo, _ray(photo, num_cpus=2, batch_size=2)).run()
    assert len(again.done) == len(report.pending) and len(again.skipped) == len(report.done)


def _slow(store: Any, seconds: float) -> Any:
    """``store`` whose workers take ``seconds`` more to publish each output, so that a photo
    takes a known while (made here, so Ray sends it to the workers by value: see _dying)."""
    driver = os.getpid()
    base = type(store)

    class Slow(base):  # type: ignore[valid-type,misc]
        def publish(self, temp: Path, target: str | Path, **how: Any) -> None:
            if os.getpid() != driver:
                time.sleep(seconds)
            base.publish(self, temp, target, **how)

    slow = Slow.__new__(Slow)
    slow.__dict__.update(store.__dict__)
    return slow


def _cancel_at_first_output(out: Path, cancel: CancelToken) -> threading.Thread:
    """Cancel as soon as a worker published its first photo (long before its batch is back)."""

    def watch() -> None:
        while not cancel.cancelled:
            if next(out.rglob("*.protected.png"), None) is not None:
                cancel.cancel()
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["photo", "universal"], ids=["actors", "tasks"])
def test_a_cancel_stops_each_worker_within_a_photo_or_two_of_its_batch(
    tmp_path: Path, settings: ProtectSettings, mode: str
) -> None:
    """A batch is up to 64 photos (here 12 per worker): the stop once reached the actors only
    after a whole batch came back, so Ctrl-C let every photo of the job be protected."""
    if mode == "photo":
        pytest.importorskip("torch")
    inputs = tmp_path / "in"
    for i in range(24):
        samples.photo(inputs / f"{i:02d}.png", 40, 24)
    out, cancel = tmp_path / "out", CancelToken()
    chosen = dataclasses.replace(settings, mode=mode)
    options = RayOptions(num_cpus=2, threads=1, progress=False)  # 2 batches of 12
    job = RayProtectJob([inputs], out, chosen, options)
    job.output_store = _slow(job.output_store, 0.5)
    watcher = _cancel_at_first_output(out, cancel)
    with pytest.raises(JobCancelled) as stopped:
        job.run(cancel=cancel)
    watcher.join()
    report = stopped.value.report
    written = {p.name for p in out.rglob("*.protected.png")}
    assert written == {e.output.name for e in report.done}, "on disk but reported not done"
    assert len(report.done) + len(report.pending) == 24
    # The first photo, then the few each worker finishes while the stop sign goes up (about a
    # photo on a quiet machine; more on a loaded one, where the sign's actor starts slowly):
    # far from the two whole batches of 12 that ran before.
    assert len(report.done) <= 8, f"{len(report.done)} of 24 protected after the cancel"


def _timed(store: Any, log: Path, seconds: float) -> Any:
    """``store`` whose workers take ``seconds`` more to read each photo (on the threads that
    hold the photos in flight) and note when each read started and ended, by process (made
    here: Ray sends it by value, see _dying)."""
    driver = os.getpid()
    base = type(store)

    class Timed(base):  # type: ignore[valid-type,misc]
        def read_image(self, path: Path, **how: Any) -> Any:
            started = time.monotonic()
            if os.getpid() != driver:
                time.sleep(seconds)
            decoded = base.read_image(self, path, **how)
            with open(log, "a") as times:  # one short line: appended whole
                times.write(f"{os.getpid()} {started} {time.monotonic()}\n")
            return decoded

    timed = Timed.__new__(Timed)
    timed.__dict__.update(store.__dict__)
    return timed


def _most_at_once(log: Path) -> int:
    """The most photos one process was reading at the same time."""
    spans = [line.split() for line in log.read_text().splitlines()]
    return max(
        sum(1 for p, s, e in spans if p == pid and float(s) <= float(start) < float(e))
        for pid, start, _end in spans
    )


def test_photos_in_flight_per_worker_are_the_ones_the_report_names(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """Each worker has ``RayOptions.threads`` photos in flight (the command line's --workers),
    and the report's settings (--json) say so: they named the driver's own default (its
    cores + 1) while every worker ran 2."""
    inputs = tmp_path / "in"
    for i in range(6):
        samples.photo(inputs / f"{i}.png", 40, 24)
    log = tmp_path / "publishing.log"
    for threads in (1, 3):
        options = RayOptions(num_cpus=1, threads=threads, progress=False)
        job = RayProtectJob([inputs], tmp_path / f"out{threads}", settings, options)
        job.store = _timed(job.store, log, 0.3)
        report = job.run()
        assert len(report.done) == 6
        assert report.to_dict()["settings"]["workers"] == threads
        assert _most_at_once(log) == threads
        log.unlink()


def test_gpu_workers_asked_of_a_cluster_without_gpus_are_refused_before_any_write(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    samples.photo(tmp_path / "in" / "a.png")
    photo = dataclasses.replace(settings, mode="photo")
    job = RayProtectJob([tmp_path / "in"], tmp_path / "out", photo, _ray(photo, num_gpus=1))
    with pytest.raises(ConfigError, match=r"--num-gpus 1: the Ray cluster has 0 GPU"):
        job.run()
    assert not (tmp_path / "out").exists()


def test_gpus_this_machine_lacks_are_refused_before_the_local_instance_starts_or_any_write(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """Ray believed --num-gpus 1 on a machine without one: the actors failed on a GPU that was
    not there, after the output folder was made, saying to choose --device auto (it was)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    samples.photo(tmp_path / "in" / "a.png")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local instance
    command = [sys.executable, "-m", "spdesk", "protect", "in", "--out", "out", "--engine"]
    command += ["ray", "--num-gpus", "1", "--perturbation", str(settings.perturbation), "--json"]
    ran = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert ran.returncode == 2, (ran.stdout[-1000:], ran.stderr[-2000:])
    failure = json.loads(ran.stdout)
    assert failure["error"].startswith("--num-gpus 1: this computer has 0 CUDA GPU(s)")
    assert "--num-gpus 0" in failure["hint"]
    assert not (tmp_path / "out").exists()


# -- object stores: s3:// URLs (s3fs on moto's local S3) and a pyarrow file system ---------------
@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


def _s3() -> Any:
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()  # Ray's workers wrote there
    return fs


def _uploaded(local: Path) -> str:
    """``local``'s files in a new bucket, under ``in/``; returns the bucket."""
    bucket = new_bucket()
    _s3().put(f"{local}/", f"{bucket}/in/", recursive=True)
    return bucket


def _s3_tree(prefix: str) -> dict[str, bytes]:
    """The outputs under ``prefix`` (no manifest, no shards), by relative path."""
    fs = _s3()
    found = {posixpath.relpath(p, prefix): p for p in fs.find(prefix)}
    return {r: fs.cat_file(p) for r, p in sorted(found.items()) if not r.startswith("spdesk-")}


def test_object_store_urls_run_end_to_end_and_a_local_rerun_skips_everything(
    tmp_path: Path,
    settings: ProtectSettings,
    s3_endpoint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``spdesk protect s3://… --out s3://… --engine ray``: the local engine's names,
    collisions, metadata and bytes, its failure records, a manifest object the local engine
    reads, no shard left; the local engine given the same URLs then skips every photo."""
    inputs = _photo_mix(tmp_path / "in")
    samples.truncated_jpeg(inputs / "half.jpg")
    (inputs / "notes.txt").write_text("not a photo")
    bucket = _uploaded(inputs)
    local = ProtectJob([inputs], tmp_path / "local", settings).run()

    source, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    args = ["protect", source, "--out", out, "--engine", "ray", "--json"]
    perturbation = ["--perturbation", str(settings.perturbation), "--working-size", "16"]
    assert main([*args, *perturbation]) == 1  # the damaged photo failed
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["done"] == len(local.done) == 11
    assert [(Path(f["source"]).name, f["reason"], f["hint"]) for f in summary["failed"]] == [
        (Path(f["source"]).name, f["reason"], f["hint"]) for f in local.to_dict()["failed"]
    ]
    assert {f["source"] for f in summary["failed"]} == {f"{source}/half.jpg"}  # the URL given
    assert all(d["output"].startswith(f"{out}/") for d in summary["done"])
    assert _s3_tree(f"{bucket}/out") == _tree(tmp_path / "local")
    manifest = tmp_path / "copy" / MANIFEST_NAME
    manifest.parent.mkdir()
    manifest.write_bytes(_s3().cat_file(f"{bucket}/out/{MANIFEST_NAME}"))
    entries = read_job_manifest(manifest)
    assert sorted(e["status"] for e in entries.values()) == ["done"] * 11 + ["failed"]
    # The originals' URLs are not written there: each line names its original by a keyed id.
    ids = SourceIds.of_install()
    urls = {ids(d["source"]) for d in summary["done"]}
    assert urls <= set(entries) and f"{bucket}/in".encode() not in manifest.read_bytes()
    assert not _s3().find(f"{bucket}/out/{SHARDS_FOLDER}")  # merged, then removed

    again = ProtectJob([source], out, settings).run()
    assert not again.done
    assert [e.kind for e in again.skipped].count(SkipReason.ALREADY_DONE) == 11


def test_a_killed_driver_resumes_an_object_store_job_with_nothing_lost(
    tmp_path: Path, settings: ProtectSettings, ray_instance: str, s3_endpoint: str
) -> None:
    import fsspec.config

    inputs = tmp_path / "in"
    for i in range(24):
        samples.photo(inputs / f"{i:02d}.png", 64, 48)
    bucket = _uploaded(inputs)
    source, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    local_s3 = json.dumps(fsspec.config.conf["s3"])
    driver = _run_driver(
        _KILLED_DRIVER, source, out, str(settings.perturbation), ray_instance, local_s3
    )
    assert driver.returncode == -9, driver.stderr[-2000:]  # killed, not finished
    finished = [p for p in _s3().find(f"{bucket}/out") if p.endswith(".protected.png")]
    assert 4 <= len(finished) < 24
    assert _s3().find(f"{bucket}/out/{SHARDS_FOLDER}")  # what the workers recorded, unmerged

    resumed = RayProtectJob([source], out, settings, _ray(settings)).run()
    assert resumed.ok and not resumed.failed
    assert len(resumed.done) + len(resumed.skipped) == 24
    assert len(resumed.done) <= 24 - 4  # what the killed run recorded was not done again
    ProtectJob([inputs], tmp_path / "local", settings).run()
    assert _s3_tree(f"{bucket}/out") == _tree(tmp_path / "local")  # nothing lost or doubled
    assert not _s3().find(f"{bucket}/out/{SHARDS_FOLDER}")


def test_a_pyarrow_file_system_serves_the_ray_engine_and_the_local_engine_skips_its_work(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """``filesystem=`` as Ray Data takes it (here pyarrow's local one, which every worker
    process reaches): the local engine's bytes, and its manifest keys."""
    import pyarrow.fs

    inputs = _photo_mix(tmp_path / "in")
    options = _ray(settings)
    filesystem = pyarrow.fs.LocalFileSystem()
    report = protect_on_ray(
        [str(inputs)], str(tmp_path / "ray"), settings, options, filesystem=filesystem
    )
    ProtectJob([inputs], tmp_path / "local", settings).run()
    assert len(report.done) == 11
    assert _tree(tmp_path / "ray") == _tree(tmp_path / "local")
    again = ProtectJob([inputs], tmp_path / "ray", settings).run()
    assert not again.done and {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}


@pytest.mark.parametrize("before", [True, False], ids=["before-the-put", "after-the-put"])
def test_a_worker_killed_while_uploading_to_an_object_store_loses_nothing(
    tmp_path: Path, settings: ProtectSettings, s3_endpoint: str, before: bool
) -> None:
    """A worker dies with an output announced in its shard ('publishing', with the output's
    sha256) and its PUT not yet made, or made without its 'done' line: the retried batch
    uploads the first again and recognises the second by its bytes. Every output is there
    once, byte-identical to the local engine's (no partial object, no '-2' copy), no shard
    is left, and a re-run of the local engine on the same URLs skips every photo."""
    inputs = tmp_path / "in"
    for i in range(12):
        samples.photo(inputs / f"{i:02d}.png", 64, 48)
    bucket = _uploaded(inputs)
    source, out, died = f"s3://{bucket}/in", f"s3://{bucket}/out", tmp_path / "died"
    job = RayProtectJob([source], out, settings, _ray(settings, batch_size=2))
    job.store = job.output_store = _dying(job.output_store, died, before=before)
    report = job.run()
    assert died.exists() and not report.failed and not report.pending
    assert len(report.done) + len(report.skipped) == 12
    ProtectJob([inputs], tmp_path / "local", settings).run()
    assert _s3_tree(f"{bucket}/out") == _tree(tmp_path / "local")
    assert not _s3().find(f"{bucket}/out/{SHARDS_FOLDER}")

    again = ProtectJob([source], out, settings).run()
    assert not again.done and not again.failed
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE] * 12


def test_ray_datas_notes_for_developers_stay_off_the_terminal() -> None:
    """ "Dataset ... execution finished" (INFO) and "Progress bars disabled. To enable, set ..."
    (WARNING) came between spdesk's own lines; Ray Data's console shows only its errors, while
    its session log (a handler of another kind) keeps everything."""
    import logging

    from spdesk.core.distributed.ray_engine import import_ray

    import_ray(data=True)
    handlers = logging.getLogger("ray.data").handlers
    consoles = [
        h
        for h in handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    assert consoles and all(h.level >= logging.ERROR for h in consoles)
    assert any(h.level < logging.ERROR for h in handlers if h not in consoles)  # its log
