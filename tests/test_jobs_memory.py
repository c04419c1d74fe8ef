"""The memory budget of a job: photos are admitted to the worker pool by what they need once
decoded (read from the header), so that the photos in flight never hold more than the budget.

The pool is observed through its own steps (no timing): a gate holds every photo's work at its
start until the job's thread has handed out all it may (it waits for a result) and every photo
handed out has reached the gate; the photos in flight at that moment are exactly those the
scheduler let in at once.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spdesk.core.events import Event
from spdesk.core.jobs import FileDone, FileFailed, ProtectJob, ProtectSettings
from spdesk.core.jobs import memory as memory_module
from spdesk.core.jobs.memory import (
    MemoryBudget,
    PhotoHeader,
    default_budget,
    parse_size,
    photo_need,
)
from spdesk.core.jobs.pool import JobRun
from spdesk.core.jobs.protector import Protected, Protector, UniversalProtector

WORKERS = 4
SMALL = (96, 64)
SMALL_NEED = photo_need(PhotoHeader(*SMALL, "RGB"))


def _pngs(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index, (width, height) in enumerate(sizes):
        path = folder / f"p{index:02d}.png"
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


class _Gate:
    """Counts the photos inside the pool's per-photo work, holding them at its start until the
    job's thread waits for a result and every photo it handed out has arrived."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.handed_out = 0
        self.arrived = 0
        self.job_waiting = False
        self.open = False
        self.inside: list[Path] = []
        self.most_inside = 0
        self.company: dict[Path, int] = {}  # the most photos in flight while each one was

    def _ready(self) -> bool:
        expected = min(WORKERS, self.handed_out)
        self.open = self.open or (self.job_waiting and self.arrived >= expected)
        return self.open

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        submit, work, finish = JobRun._submit, JobRun._work, JobRun._finish
        gate = self

        def counted_submit(run: JobRun, pool: Any, tasks: list[Any], workers: int) -> Any:
            with gate.condition:
                gate.handed_out += len(tasks)
            return submit(run, pool, tasks, workers)

        def gated_work(run: JobRun, task: Any) -> Any:
            source = task.item.source
            with gate.condition:
                gate.arrived += 1
                gate.inside.append(source)
                gate.most_inside = max(gate.most_inside, len(gate.inside))
                for path in gate.inside:
                    gate.company[path] = max(gate.company.get(path, 0), len(gate.inside))
                gate.condition.notify_all()
                gate.condition.wait_for(gate._ready)
            try:
                return work(run, task)
            finally:
                with gate.condition:
                    gate.inside.remove(source)

        def waiting_finish(run: JobRun, *args: Any) -> Any:
            with gate.condition:
                gate.job_waiting = True
                gate.condition.notify_all()
            return finish(run, *args)

        monkeypatch.setattr(JobRun, "_submit", counted_submit)
        monkeypatch.setattr(JobRun, "_work", gated_work)
        monkeypatch.setattr(JobRun, "_finish", waiting_finish)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gate]:
    watcher = _Gate()
    watcher.install(monkeypatch)
    yield watcher


def _budgeted(settings: ProtectSettings, budget: int) -> ProtectSettings:
    return ProtectSettings(
        perturbation=settings.perturbation,
        mode="universal",
        working_size=settings.working_size,
        workers=WORKERS,
        memory_budget=budget,
    )


def test_photos_in_flight_never_need_more_than_the_budget(
    tmp_path: Path, settings: ProtectSettings, gate: _Gate, originals_guard: list[Path]
) -> None:
    photos = _pngs(tmp_path / "in", [SMALL] * 8)
    originals_guard.append(tmp_path / "in")
    budget = int(2.5 * SMALL_NEED)  # two photos at once, not three
    report = ProtectJob(photos, tmp_path / "out", _budgeted(settings, budget)).run()
    assert len(report.done) == 8 and not report.failed
    assert gate.most_inside == 2  # four workers, but only two photos fit (and two ran at once)


def test_without_a_budget_every_worker_holds_a_photo(
    tmp_path: Path, settings: ProtectSettings, gate: _Gate
) -> None:
    """The gate does see parallel photos: with room for all, every worker holds one at once."""
    photos = _pngs(tmp_path / "in", [SMALL] * 8)
    report = ProtectJob(photos, tmp_path / "out", _budgeted(settings, 100 * SMALL_NEED)).run()
    assert len(report.done) == 8
    assert gate.most_inside == WORKERS


def test_a_photo_larger_than_the_whole_budget_runs_alone(
    tmp_path: Path, settings: ProtectSettings, gate: _Gate
) -> None:
    large = (640, 480)
    photos = _pngs(tmp_path / "in", [SMALL, SMALL, large, SMALL, SMALL, SMALL])
    budget = int(3.5 * SMALL_NEED)
    assert photo_need(PhotoHeader(*large, "RGB")) > budget
    report = ProtectJob(photos, tmp_path / "out", _budgeted(settings, budget)).run()
    assert len(report.done) == 6 and not report.failed
    assert gate.company[photos[2]] == 1  # nothing else was in flight while it was
    assert gate.most_inside <= 3  # the budget holds three small photos at most


def test_a_photo_that_needs_more_than_the_computer_has_is_refused_from_its_header(
    tmp_path: Path,
    settings: ProtectSettings,
    monkeypatch: pytest.MonkeyPatch,
    originals_guard: list[Path],
) -> None:
    from tests import protect_samples as samples

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 4 << 30)
    folder = tmp_path / "in"
    photos = _pngs(folder, [SMALL, SMALL])
    # 400 MP claimed by a header with no real pixel data: decoding it would say "damaged".
    huge = samples.png_bomb(folder / "huge.png", side=20_000, data=b"not zlib data")
    originals_guard.append(folder)
    job_settings = ProtectSettings(
        perturbation=settings.perturbation,
        mode="universal",
        working_size=settings.working_size,
        max_pixels=500_000_000,
    )
    events: list[Event] = []
    report = ProtectJob([folder], tmp_path / "out", job_settings).run(events.append)
    assert sorted(e.source for e in report.done) == photos
    (failed,) = report.failed
    assert failed.source == huge
    assert "huge.png (20000x20000, 400 MP) needs about 7.1 GB of memory" in failed.reason
    assert "more than this computer has (4.0 GB)" in failed.reason
    assert "computer with more memory" in failed.hint
    assert [e for e in events if isinstance(e, FileFailed)] == [failed]
    assert not any(p.name.startswith("huge") for p in (tmp_path / "out").iterdir())


class _BatchRecorder(Protector):
    """A protector that runs on the job's thread in batches (like fine-tuning) and records them."""

    mode = "universal"
    concurrent = False
    batch_size = 4

    def __init__(self, inner: Protector) -> None:
        self.inner = inner
        self.batches: list[int] = []

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Any) -> Protector:
        raise NotImplementedError

    def protect(self, image: Image.Image, key: str) -> Protected:
        return self.inner.protect(image, key)

    def protect_batch(self, images: Any, keys: Any, **kwargs: Any) -> list[Protected]:
        self.batches.append(len(images))
        return [self.protect(image, key) for image, key in zip(images, keys, strict=True)]


def test_batches_are_cut_to_fit_the_budget(tmp_path: Path, settings: ProtectSettings) -> None:
    photos = _pngs(tmp_path / "in", [SMALL] * 7)
    recorder: list[_BatchRecorder] = []

    class _Job(ProtectJob):
        def _protector(self, perturbation: Any) -> Protector:
            inner = UniversalProtector.build(self.settings, perturbation)
            recorder.append(_BatchRecorder(inner))
            return recorder[0]

    budget = int(2.5 * SMALL_NEED)
    report = _Job(photos, tmp_path / "out", _budgeted(settings, budget)).run()
    assert len(report.done) == 7
    assert recorder[0].batches == [2, 2, 2, 1]


def test_the_budget_is_held_and_given_back() -> None:
    budget = MemoryBudget(limit=100)
    assert budget.fits(500)  # nothing held: a photo larger than the budget runs alone
    budget.take(60)
    assert budget.fits(40) and not budget.fits(41)
    budget.take(40)
    budget.give(60)
    budget.give(40)
    assert budget.held == 0 and budget.peak == 100


def test_a_photo_needs_its_decoded_copies_and_its_own_mode_while_converted() -> None:
    rgb = photo_need(PhotoHeader(1000, 1000, "RGB"))
    assert rgb == photo_need(PhotoHeader(1000, 1000, "RGBA")) >= 4 * 4_000_000
    assert photo_need(PhotoHeader(1000, 1000, "I;16")) == rgb + 2_000_000
    assert photo_need(PhotoHeader(1000, 1000, "CMYK")) == rgb + 4_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4G", 4 << 30), ("1500M", 1500 << 20), ("512MiB", 512 << 20), ("0.5g", 1 << 29)],
)
def test_memory_sizes_are_read_in_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_an_unreadable_memory_size_is_a_plain_error() -> None:
    from spdesk.core.errors import ConfigError

    with pytest.raises(ConfigError, match="Cannot read 'lots' as an amount of memory"):
        parse_size("lots")


def test_the_default_budget_is_half_the_available_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert memory_module._meminfo("MemAvailable", meminfo) == 8_000_000 * 1024
    assert default_budget(available=8 << 30) == 4 << 30
    assert default_budget() > 0  # whatever this machine says


def test_the_settings_refuse_a_budget_that_is_not_positive(settings: ProtectSettings) -> None:
    from spdesk.core.errors import ConfigError

    with pytest.raises(ConfigError, match="memory budget must be positive"):
        ProtectSettings(perturbation=settings.perturbation, memory_budget=0)


def test_progress_events_still_come_for_every_photo(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    photos = _pngs(tmp_path / "in", [SMALL] * 3)
    events: list[Event] = []
    ProtectJob(photos, tmp_path / "out", _budgeted(settings, SMALL_NEED)).run(events.append)
    assert [e.source for e in events if isinstance(e, FileDone)] == photos


def test_the_command_line_sets_the_budget(
    tmp_path: Path, settings: ProtectSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from spdesk.cli import main

    _pngs(tmp_path / "in", [SMALL] * 2)
    args = ["protect", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--mode", "universal"]
    args += ["--perturbation", str(settings.perturbation), "--json"]
    assert main([*args, "--memory-budget", "1500M"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["memory_budget"] == 1500 << 20
    assert summary["counts"]["done"] == 2


def test_an_unreadable_budget_on_the_command_line_exits_2(
    tmp_path: Path, settings: ProtectSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli import main

    _pngs(tmp_path / "in", [SMALL])
    args = ["protect", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main([*args, "--memory-budget", "lots"]) == 2
    assert "Cannot read 'lots' as an amount of memory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _recording(trims: list[int]) -> Callable[[int], int]:
    """A stand-in for ``malloc_trim`` that notes each call."""

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    return trim


def test_the_heap_is_trimmed_after_photos_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(memory_module.time, "monotonic", lambda: clock[0])
    trims: list[int] = []
    trimmer = memory_module.HeapTrimmer(every_s=5.0)
    trimmer._trim = _recording(trims)
    trimmer()  # a photo just after the job began: too soon
    clock[0] += 5.0
    trimmer()
    clock[0] += 1.0
    trimmer()
    assert trims == [0]  # one trim in those six seconds, all that is free given back


def test_trimming_the_heap_does_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module.sys, "platform", "darwin")
    trimmer = memory_module.HeapTrimmer(every_s=0.0)
    assert trimmer._trim is None
    trimmer()  # no error where there is no malloc_trim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux")
def test_every_finished_photo_may_trim_the_heap(
    tmp_path: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's resident memory grew with the photos it had done: glibc kept what they freed
    (2000 ImageNet photos: 1.03 GB at most, 0.72 GB with the trims)."""
    assert memory_module._malloc_trim() is not None  # the real one, on this Linux
    trims: list[int] = []
    real = memory_module.HeapTrimmer.__init__

    def every_photo(trimmer: memory_module.HeapTrimmer, every_s: float = 0.0) -> None:
        real(trimmer, every_s=0.0)
        trimmer._trim = _recording(trims)

    monkeypatch.setattr(memory_module.HeapTrimmer, "__init__", every_photo)
    photos = _pngs(tmp_path / "in", [SMALL] * 5)
    report = ProtectJob(photos, tmp_path / "out", _budgeted(settings, 1 << 30)).run()
    assert len(report.done) == 5 and trims == [0] * 5
