"""Cyclic garbage holding Qt objects is collected on the GUI thread, never in a worker's.

A worker thread that allocates (a model loading) used to run Python's collector itself, and
the closed windows it collected had their C++ destructors run off the GUI thread: the suite
died of it ("Segmentation fault ... Garbage-collecting" inside a task's model loading).
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QPushButton, QWidget

from spdesk.gui import garbage
from spdesk.gui.widgets import queue as queue_module
from spdesk.gui.widgets.queue import PhotoQueue
from spdesk.gui.workers import TaskRunner


class _Marker:
    """Notes the thread it is finalized in."""

    def __init__(self, seen: list[str]) -> None:
        self._seen = seen

    def __del__(self) -> None:
        self._seen.append(threading.current_thread().name)


def _closed_windows_in_cycles(count: int, seen: list[str]) -> None:
    """Windows nobody refers to but themselves (a window that keeps its own bound method, as
    views that store handlers do), each with a marker: garbage only the cyclic collector frees."""
    for _ in range(count):
        window = QWidget()
        QPushButton("Close", window)
        window.on_close = window.close  # type: ignore[attr-defined]
        window.marker = _Marker(seen)  # type: ignore[attr-defined]


def _allocate(rounds: int = 300_000) -> int:
    """Work that crosses the collector's thresholds many times over (as loading a model does)."""
    junk = [[index] for index in range(rounds)]
    return len(junk)


@pytest.fixture
def collected_on_gui_thread() -> None:
    gc.collect()  # no older test's garbage in the way


def test_a_task_allocating_in_its_thread_leaves_qt_garbage_to_the_gui_thread(
    qtbot, collected_on_gui_thread: None
) -> None:
    seen: list[str] = []
    runner = TaskRunner()
    ended: list[bool] = []

    def task(on_event, cancel) -> int:
        return _allocate()

    _closed_windows_in_cycles(40, seen)
    runner.succeeded.connect(lambda result: ended.append(True))
    with qtbot.waitSignal(runner.finished, timeout=30_000):
        runner.start(task)
    assert ended
    qtbot.waitUntil(lambda: not garbage.holding(), timeout=10_000)
    gc.collect()
    assert len(seen) == 40
    assert set(seen) == {threading.main_thread().name}


def test_while_a_task_runs_the_gui_thread_collects_what_is_due(qtbot) -> None:
    seen: list[str] = []
    release = threading.Event()
    runner = TaskRunner()

    def task(on_event, cancel) -> None:
        release.wait(30)

    with qtbot.waitSignal(runner.finished, timeout=30_000):
        runner.start(task)
        assert not gc.isenabled()  # off while the task's thread runs
        _closed_windows_in_cycles(5, seen)
        kept = [[index] for index in range(2_000)]  # over the youngest generation's threshold
        qtbot.waitUntil(lambda: len(seen) == 5, timeout=5_000)  # the timer, not a call
        release.set()
    assert len(kept) == 2_000 and set(seen) == {threading.main_thread().name}
    qtbot.waitUntil(lambda: gc.isenabled(), timeout=10_000)


def test_collection_stays_off_after_the_tasks_when_the_app_had_turned_it_off(qtbot) -> None:
    runner = TaskRunner()
    gc.disable()
    try:
        with qtbot.waitSignal(runner.finished, timeout=30_000):
            runner.start(lambda on_event, cancel: None)
        qtbot.waitUntil(lambda: not garbage.holding(), timeout=10_000)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_thumbnail_jobs_leave_qt_garbage_to_the_gui_thread(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collected_on_gui_thread: None
) -> None:
    seen: list[str] = []
    real = queue_module._thumbnail

    def allocating_thumbnail(path: Path):
        _allocate(100_000)  # a large photo's decoding
        return real(path)

    monkeypatch.setattr(queue_module, "_thumbnail", allocating_thumbnail)
    for index in range(4):
        Image.new("RGB", (32, 24), (index * 40, 90, 200)).save(tmp_path / f"p{index}.png")
    table = PhotoQueue()
    qtbot.addWidget(table)
    _closed_windows_in_cycles(20, seen)
    table.add_photos(sorted(tmp_path.glob("*.png")))
    assert table.wait_for_thumbnails()
    qtbot.waitUntil(lambda: not garbage.holding(), timeout=10_000)
    gc.collect()
    assert len(seen) == 20
    assert set(seen) == {threading.main_thread().name}


def test_a_cleared_queue_s_thumbnail_jobs_end_and_give_collection_back(
    qtbot, tmp_path: Path
) -> None:
    for index in range(40):
        Image.new("RGB", (64, 48), (index * 5, 90, 200)).save(tmp_path / f"p{index:02}.png")
    table = PhotoQueue()
    qtbot.addWidget(table)
    table.add_photos(sorted(tmp_path.glob("*.png")))
    table.clear_photos()  # most jobs have not started yet
    assert table.wait_for_thumbnails()
    qtbot.waitUntil(lambda: not garbage.holding(), timeout=10_000)
    assert gc.isenabled()
    assert table.rowCount() == 0


def test_the_guard_refuses_to_be_installed_off_the_gui_thread(qapp) -> None:
    errors: list[Exception] = []

    def install_here() -> None:
        try:
            garbage.install()
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=install_here)
    thread.start()
    thread.join()
    assert errors and "GUI thread" in str(errors[0])


def test_collection_stays_off_while_a_thread_the_core_started_outlives_its_task(qtbot) -> None:
    # A cancelled download leaves its hub call (thread "spdesk-hub-listing") to end on its own.
    finish = threading.Event()
    lingering = threading.Thread(target=finish.wait, args=(30,), name="spdesk-test-lingering")
    runner = TaskRunner()
    try:
        with qtbot.waitSignal(runner.finished, timeout=30_000):
            runner.start(lambda on_event, cancel: lingering.start())
        qtbot.wait(3 * garbage.CHECK_MS)
        assert garbage.holding() and not gc.isenabled()
    finally:
        finish.set()
    lingering.join()
    qtbot.waitUntil(lambda: gc.isenabled() and not garbage.holding(), timeout=5_000)


def test_a_thread_started_by_a_finalizer_of_the_last_collection_keeps_collection_off(
    qtbot,
) -> None:
    class StartsWork:
        def __del__(self) -> None:  # a closed view whose teardown starts a task
            garbage.hold()

    runner = TaskRunner()
    with qtbot.waitSignal(runner.finished, timeout=30_000):
        runner.start(lambda on_event, cancel: None)
        cycle = StartsWork()
        cycle.itself = cycle  # type: ignore[attr-defined]
        del cycle
    qtbot.wait(3 * garbage.CHECK_MS)  # the release's collection ran the finalizer
    assert garbage.holding() and not gc.isenabled()
    garbage.release()  # the finalizer's thread ends
    qtbot.waitUntil(lambda: gc.isenabled() and not garbage.holding(), timeout=5_000)
