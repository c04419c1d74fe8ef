"""Cyclic garbage holding Qt objects is collected on the GUI thread, never in another's.

A worker thread that allocates (a model loading) used to run Python's collector itself, and
the closed windows it collected had their C++ destructors run off the GUI thread: the suite
died of it ("Segmentation fault ... Garbage-collecting" inside a task's model loading). Threads
the app did not start (tqdm's monitor, a test's HTTP server) did the same once the app's own
had ended, and PySide's cleanup of a dead window's connections, run there with the GIL
released, raced the GUI thread's connects: a later crash in a QDialog's constructor.
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
    gc.collect()
    assert len(seen) == 40
    assert set(seen) == {threading.main_thread().name}


def test_the_gui_thread_collects_what_is_due_on_its_timer(qtbot) -> None:
    seen: list[str] = []
    release = threading.Event()
    runner = TaskRunner()

    def task(on_event, cancel) -> None:
        release.wait(30)

    with qtbot.waitSignal(runner.finished, timeout=30_000):
        runner.start(task)
        assert not gc.isenabled() and garbage.installed()
        _closed_windows_in_cycles(5, seen)
        kept = [[index] for index in range(2_000)]  # over the youngest generation's threshold
        qtbot.waitUntil(lambda: len(seen) == 5, timeout=5_000)  # the timer, not a call
        release.set()
    assert len(kept) == 2_000 and set(seen) == {threading.main_thread().name}
    assert not gc.isenabled(), "the GUI thread collects for as long as the app runs"


def test_a_thread_the_app_did_not_start_frees_no_qt_garbage_after_the_tasks_ended(
    qtbot, collected_on_gui_thread: None
) -> None:
    """tqdm's monitor thread, started by a model download, lives for good and allocates every
    few seconds: once the app's own threads had ended, automatic collection came back on and
    ran there."""
    seen: list[str] = []
    runner = TaskRunner()
    with qtbot.waitSignal(runner.finished, timeout=30_000):
        runner.start(lambda on_event, cancel: None)
    qtbot.wait(3 * garbage.CHECK_MS)
    _closed_windows_in_cycles(20, seen)
    kept: list[list[int]] = []
    other = threading.Thread(
        target=lambda: kept.extend([index] for index in range(5_000)), name="a-librarys-monitor"
    )  # over the collector's thresholds, in that thread
    other.start()
    other.join()
    qtbot.waitUntil(lambda: len(seen) == 20, timeout=5_000)  # the GUI thread's timer
    assert len(kept) == 5_000 and set(seen) == {threading.main_thread().name}


def test_a_full_collection_asked_for_from_another_thread_runs_on_the_gui_thread(qtbot) -> None:
    """A preview task that frees its pipelines asks for it (their cycles hold gigabytes)."""
    from spdesk.gui.preview_panel import EngineCache

    seen: list[str] = []
    garbage.install()
    _closed_windows_in_cycles(3, seen)

    class Engine:  # a preview engine: dropping it frees pipelines (here: nothing)
        def release(self) -> None:
            pass

    cache = EngineCache()
    cache._engine, cache._key = Engine(), ("model", "", "cpu")
    dropping = threading.Thread(target=cache.release, name="a-preview-task")
    dropping.start()
    dropping.join()
    assert not seen, "collected in the task's thread"
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=5_000)
    assert set(seen) == {threading.main_thread().name}


def test_uninstalling_gives_collection_back_as_the_app_found_it(qtbot) -> None:
    garbage.uninstall()
    gc.disable()
    try:
        garbage.install()
        garbage.uninstall()
        assert not gc.isenabled()  # off before: off after
    finally:
        gc.enable()
    garbage.install()
    garbage.uninstall()
    assert gc.isenabled() and not garbage.installed()


def test_thumbnail_jobs_leave_qt_garbage_to_the_gui_thread(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collected_on_gui_thread: None
) -> None:
    seen: list[str] = []
    real = queue_module._thumbnail

    def allocating_thumbnail(path: Path, *args: object):
        _allocate(100_000)  # a large photo's decoding
        return real(path, *args)

    monkeypatch.setattr(queue_module, "_thumbnail", allocating_thumbnail)
    for index in range(4):
        Image.new("RGB", (32, 24), (index * 40, 90, 200)).save(tmp_path / f"p{index}.png")
    table = PhotoQueue()
    qtbot.addWidget(table)
    _closed_windows_in_cycles(20, seen)
    table.add_photos(sorted(tmp_path.glob("*.png")))
    assert table.wait_for_thumbnails()
    gc.collect()
    assert len(seen) == 20
    assert set(seen) == {threading.main_thread().name}


def test_a_cleared_queue_s_thumbnail_jobs_end(qtbot, tmp_path: Path) -> None:
    for index in range(40):
        Image.new("RGB", (64, 48), (index * 5, 90, 200)).save(tmp_path / f"p{index:02}.png")
    table = PhotoQueue()
    qtbot.addWidget(table)
    table.add_photos(sorted(tmp_path.glob("*.png")))
    table.clear_photos()  # most jobs have not started yet
    assert table.wait_for_thumbnails()
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
