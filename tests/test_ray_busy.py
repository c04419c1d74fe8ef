"""How busy a Ray job's workers keep their protector (the GPU, on GPU actors): each worker's
time computing against its time alive. Timed with a clock the tests move by hand, without Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from spdesk.core.discovery import InputPhoto
from spdesk.core.distributed import ray_engine
from spdesk.core.distributed.busy import BusyClock, TimedProtector, busy_share, keep_latest
from spdesk.core.distributed.ray_engine import RayStats, encode_task
from spdesk.core.imageio import DecodedImage
from spdesk.core.jobs import ProtectSettings
from spdesk.core.jobs.naming import Target
from spdesk.core.jobs.pool import _Planned, _Task
from spdesk.core.jobs.protector import Protected, UniversalProtector, build_protector
from spdesk.core.perturbation import load_perturbation
from spdesk.core.stores import FolderStore
from tests import protect_samples as samples


class FakeTime:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_is_busy_while_computing_and_alive_from_its_first_batch_to_its_last() -> None:
    time = FakeTime()
    clock = BusyClock(now=time)
    assert clock.reading()[1:] == (0.0, 0.0)
    time.now = 10.0  # before the first batch: loading its models, not counted
    for read, compute, write in [(3.0, 1.0, 0.5), (2.0, 2.0, 0.5)]:
        with clock.batch():
            time.now += read
            with clock.computing():
                time.now += compute
            time.now += write
        time.now += 4.0  # between batches: waiting for Ray's next one
    worker, busy, alive = clock.reading()
    assert (busy, alive) == (3.0, 4.5 + 4.0 + 4.5)  # the wait after the last batch is not alive
    assert worker == clock.worker and worker != BusyClock().worker


def test_protector_calls_overlapping_on_two_threads_count_once() -> None:
    time = FakeTime()
    clock = BusyClock(now=time)
    with clock.batch():
        first = clock.computing()
        first.__enter__()
        time.now = 1.0
        with clock.computing():  # a second thread's call starts while the first runs
            time.now = 2.0
            first.__exit__(None, None, None)
            time.now = 3.0
        time.now = 5.0
        with clock.computing():
            time.now = 6.0
    assert clock.reading()[1:] == (4.0, 6.0)


def test_a_slower_reader_leaves_the_share_busy_smaller() -> None:
    shares = []
    for read in (0.1, 2.0):
        time = FakeTime()
        clock = BusyClock(now=time)
        with clock.batch():
            for _photo in range(3):
                time.now += read
                with clock.computing():
                    time.now += 1.0
        _worker, busy, alive = clock.reading()
        assert 0 < busy <= alive
        shares.append(busy_share([(busy, alive)]))
    assert shares == [pytest.approx(3 / 3.3), pytest.approx(3 / 9)]


def test_the_driver_keeps_each_workers_latest_reading_and_adds_the_workers_up() -> None:
    readings: dict[str, tuple[float, float]] = {}
    keep_latest(readings, [("a", 2.0, 4.0), ("b", 1.0, 1.0)])
    keep_latest(readings, [("a", 1.0, 2.0)])  # an earlier batch of "a" came back late
    keep_latest(readings, [("b", 3.0, 6.0), ("b", 3.0, 6.0)])  # one row per photo
    assert readings == {"a": (2.0, 4.0), "b": (3.0, 6.0)}
    assert busy_share(readings.values()) == pytest.approx(5 / 10)
    assert busy_share([]) is None and busy_share([(0.0, 0.0)]) is None


def test_the_stats_say_how_busy_the_workers_were() -> None:
    stats = RayStats(workers=2, protected=4, protect_seconds=2.0)
    assert stats.busy_share is None and "busy" not in stats.text()
    assert stats.to_dict()["workers_busy_share"] is None
    stats.readings = {"a": (3.0, 4.0), "b": (0.0, 4.0)}
    assert stats.busy_text() == "workers busy 38% of their time (idle 62% waiting for input)"
    assert stats.busy_text() in stats.text()
    figures = stats.to_dict()
    assert (figures["workers_busy_seconds"], figures["workers_alive_seconds"]) == (3.0, 8.0)
    assert figures["workers_busy_share"] == 0.375


def test_the_timed_protector_protects_as_its_protector_and_times_each_call(
    tmp_path: Path,
) -> None:
    settings = ProtectSettings(perturbation=samples.perturbation_file(tmp_path), working_size=16)
    inner = build_protector(settings, load_perturbation(settings.perturbation))
    time = FakeTime()

    class Slow(UniversalProtector):
        def protect(self, image: Image.Image, key: str) -> Protected:
            time.now += 2.0
            return inner.protect(image, key)

    assert isinstance(inner, UniversalProtector)
    timed = TimedProtector(Slow(inner.applier), BusyClock(now=time))
    image = Image.fromarray(samples.photo_array())
    with timed.clock.batch():
        protected, figures = timed.protect(image, "k")
        batch = timed.protect_batch([image, image], ["k", "j"])
    assert protected.tobytes() == inner.protect(image, "k")[0].tobytes()
    assert [p.tobytes() for p, _f in batch] == [inner.protect(image, k)[0].tobytes() for k in "kj"]
    assert figures == inner.protect(image, "k")[1]
    assert timed.clock.reading()[1:] == (6.0, 6.0)
    assert (timed.concurrent, timed.batch_size) == (inner.concurrent, inner.batch_size)


def test_a_workers_batch_reports_a_slow_reader_as_time_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The actors' own batch code (no Ray): reading a photo and protecting it move the clock by
    known amounts, so the reading that comes back with the batch is exact."""
    time = FakeTime()
    monkeypatch.setattr(ray_engine, "BusyClock", lambda: BusyClock(now=time))
    settings = ProtectSettings(
        perturbation=samples.perturbation_file(tmp_path), working_size=16, workers=1
    )
    real = ray_engine.build_protector

    class Computing(UniversalProtector):
        def protect(self, image: Image.Image, key: str) -> Protected:
            time.now += 1.0
            return super().protect(image, key)

    def build(settings: ProtectSettings, perturbation: object) -> Computing:
        universal = real(settings, perturbation)  # type: ignore[arg-type]
        assert isinstance(universal, UniversalProtector)
        return Computing(universal.applier)

    monkeypatch.setattr(ray_engine, "build_protector", build)

    class SlowStore(FolderStore):
        def __init__(self, seconds: float) -> None:
            self.seconds = seconds

        def read_image(self, path: Path, **options: int) -> DecodedImage:
            time.now += self.seconds
            return super().read_image(path, **options)

    photos = [samples.photo(tmp_path / "in" / f"{i}.png") for i in range(3)]
    perturbation = load_perturbation(settings.perturbation)
    for read in (0.25, 3.0):
        out = tmp_path / f"out-{read}"
        out.mkdir()  # as the driver made it
        store = SlowStore(read)
        worker = ray_engine._Protector(out, settings, perturbation, "fp", inputs=store)
        rows, (_worker, busy, alive) = worker.batch(_tasks(photos, out))
        assert len(rows) == 3 and all('"done"' in event for event, _s, _f in rows)
        assert (busy, alive) == (pytest.approx(3.0), pytest.approx(3.0 + 3 * read))


def _tasks(photos: list[Path], out: Path) -> list[str]:
    """The driver's plan of ``photos`` (in one folder) as the worker receives it."""
    store = FolderStore()
    tasks = []
    for position, path in enumerate(photos, 1):
        key = store.key(path)
        item = _Planned(InputPhoto(path, path.parent), Path(path.name), key, position, len(photos))
        target = Target(out / f"{path.stem}.protected{path.suffix}")
        tasks.append(encode_task(_Task(item, target, store.signature(path), 0.0)))
    return tasks
