"""The main window's protect flow with the real job runner: drop, protect, cancel, retry, close."""

from __future__ import annotations

import dataclasses
import html
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest
from accessibility import assert_alt_letters_reach, mnemonic_letters, record_announcements
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox, QScrollArea
from pytestqt.qtbot import QtBot

from spdesk.core.events import CancelToken, Event
from spdesk.core.files import LOCK_NAME
from spdesk.core.jobs import ProtectJob
from spdesk.core.jobs.events import FileDone, FileSkipped, SkipReason
from spdesk.core.keys import BACKUP_ADVICE, KEY_BACKUP_SHORT
from spdesk.core.manifest import MANIFEST_NAME
from spdesk.core.perturbation import library_path_for, save_perturbation
from spdesk.gui import protect_bridge
from spdesk.gui.main_window import MainWindow
from spdesk.gui.settings import open_settings
from spdesk.gui.widgets.queue import RowStatus
from tests import protect_samples as samples


def _photos(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        where = folder / "sub" if i % 2 else folder
        suffix = ".jpg" if i % 3 == 0 else ".png"
        Image.fromarray(pixels).save(where / f"photo{i}{suffix}")
    return folder


@pytest.fixture
def perturbation() -> Path:
    rng = np.random.default_rng(1)
    delta = rng.choice([-1.0, 1.0], size=(3, 64, 64)).astype(np.float32) * 8 / 255
    return save_perturbation(library_path_for("test pattern"), delta, eps=8)


@pytest.fixture
def window(qtbot: QtBot, perturbation: Path, tmp_path: Path) -> MainWindow:
    win = MainWindow(open_settings())
    qtbot.addWidget(win, before_close_func=lambda w: _stop_a_running_job(qtbot, w))
    win.options_panel.refresh_perturbations(select=str(perturbation))
    win.options_panel.output_edit.setText(str(tmp_path / "out"))
    win.show()
    return win


def _stop_a_running_job(qtbot: QtBot, window: MainWindow) -> None:
    """After a test that failed while a job ran, closing asked "Stop protecting?", a box
    nobody answers offscreen: the run hung there instead of reporting the failure."""
    if window.job_runner.running:
        window.cancel_job()
        qtbot.waitUntil(lambda: not window.job_runner.running, timeout=60_000)


def _two_photos_and_a_broken_jpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, padding: int
) -> tuple[Path, Path]:
    """A folder of two photos and ``name``: a JPEG by its first bytes, damaged after them (no
    message box pops up about it)."""
    monkeypatch.setattr(QMessageBox, "warning", lambda *_a: None)
    photos = _photos(tmp_path / "photos", 2)
    broken = photos / name
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(padding))
    return photos, broken


def _three_photos_one_of_which_cannot_be_saved(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder of three photos, one of which fails until ``blocker`` is deleted: a file in
    the window's output folder has the name of the folder its copy goes to (a failure a Retry
    can mend, unlike a damaged photo's). Returns the folder, that photo and ``blocker``."""
    photos = _photos(tmp_path / "photos", 3)
    blocker = tmp_path / "out" / "sub"
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("in the way")
    return photos, photos / "sub" / "photo1.png", blocker


# A job's first photo-mode run imports torch and loads the generator: seconds alone, over 30 s
# when the suite shares 2 cores with other work. A job that hangs still fails, only later.
JOB_WAIT_MS = 120_000


def _add(qtbot: QtBot, window: MainWindow, paths: list[Path]) -> None:
    """Queue ``paths`` and wait for the worker that lists their photos."""
    with qtbot.waitSignal(window.scan_runner.finished, timeout=JOB_WAIT_MS):
        window.add_paths(paths)


def _protect(qtbot: QtBot, window: MainWindow) -> None:
    """Click Protect and wait for the job to finish."""
    with qtbot.waitSignal(window.job_runner.finished, timeout=JOB_WAIT_MS):
        window.start_button.click()


def _drop(window: MainWindow, *paths: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.drop_zone.dropEvent(event)


def _pausing_task(pause_after: int) -> Callable[..., Any]:
    """protect_task whose job pauses itself after ``pause_after`` finished photos (a slow job;
    0: at once, so that nothing is finished when the user cancels)."""
    real = protect_bridge.protect_task

    def make(*args: Any) -> Any:
        task = real(*args)

        def run(on_event: Callable[[Event], None], cancel: CancelToken) -> Any:
            if pause_after == 0:
                cancel.pause()
            done = [0]

            def sink(event: Event) -> None:
                on_event(event)
                if isinstance(event, FileDone):
                    done[0] += 1
                    if done[0] == pause_after:
                        cancel.pause()

            return task(sink, cancel)

        return run

    return make


def _start_paused(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    """Start a job that pauses itself after ``after`` finished photos, and wait for them
    (``window.job_runner.resume()`` lets it go on; ``monkeypatch.undo()`` ends the pausing)."""
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(after))
    window.start_job()
    qtbot.waitUntil(lambda: window.queue.count_by_status()[RowStatus.DONE] == after, timeout=30_000)


def test_drop_a_folder_and_protect_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, originals_guard: list[Path]
) -> None:
    photos = _photos(tmp_path / "photos", 5)
    originals_guard.append(photos)
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        _drop(window, photos)
    assert len(window.queue.paths()) == 5
    assert window.start_button.isEnabled()
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_button.click()
    rows = window.queue.rows()
    assert [r.status for r in rows] == [RowStatus.DONE] * 5, [r.reason for r in rows]
    for row in rows:
        assert row.output is not None and row.output.is_file()
        assert tmp_path / "out" in row.output.parents
        with Image.open(row.output) as image:
            assert image.convert("RGB").size == (64, 48)
            changed = np.asarray(image.convert("RGB")) != np.asarray(
                Image.open(row.path).convert("RGB")
            )
            assert changed.any()
    assert (tmp_path / "out" / "sub").is_dir(), "the folder structure is mirrored"
    assert window.summary.isVisibleTo(window)
    assert "5 protected" in window.summary_label.text()
    assert window.open_output_button.isVisibleTo(window)
    assert window.focusWidget() is window.open_output_button  # not a scroll area (audit)


def test_photos_added_and_a_runs_end_are_told_to_screen_readers(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a run went was in the summary's text, and the focus went to "Open output folder":
    a screen reader said that button's name and nothing of the run; nor how many photos a
    folder added (the status bar's text; accessibility audit)."""

    told = record_announcements(monkeypatch)
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    assert told == ["Added 3 photos."]
    _protect(qtbot, window)
    assert len(told) == 2 and told[1].startswith("Finished. 3 protected"), told
    assert window.summary_label.text() in told[1]


def test_the_first_photo_specific_job_says_where_the_new_key_is_and_only_once(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window.options_panel.set_mode("photo")
    _add(qtbot, window, [_photos(tmp_path / "first", 1)])
    (tmp_path / "a file").write_bytes(b"")
    window.options_panel.output_edit.setText(str(tmp_path / "a file"))
    monkeypatch.setattr(window, "show_error", lambda _text: None)
    _protect(qtbot, window)  # stops at once: the output folder is a file
    assert "protection key" not in window.summary_label.text(), "kept for a run that saves"
    window.options_panel.output_edit.setText(str(tmp_path / "out"))
    _protect(qtbot, window)
    text = window.summary_label.text()
    assert "1 protected" in text and "Made this install's protection key: " in text
    assert KEY_BACKUP_SHORT in text and BACKUP_ADVICE not in text  # the whole advice: About
    assert text.count("\n") <= 3, text  # five lines left the queue half a row (audit)
    _add(qtbot, window, [_photos(tmp_path / "second", 1)])
    _protect(qtbot, window)
    assert "1 protected" in window.summary_label.text()
    assert "protection key" not in window.summary_label.text()


def test_cancel_mid_job_leaves_no_partial_file(
    qtbot: QtBot,
    window: MainWindow,
    tmp_path: Path,
    originals_guard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = _photos(tmp_path / "photos", 6)
    originals_guard.append(photos)
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(2))
    _add(qtbot, window, [photos])
    window.start_job()
    qtbot.waitUntil(lambda: window.queue.count_by_status()[RowStatus.DONE] == 2, timeout=30_000)
    assert window.cancel_button.isEnabled()
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    counts = window.queue.count_by_status()
    assert counts[RowStatus.DONE] == 2
    assert counts[RowStatus.CANCELLED] == 4
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    outputs = [p for p in files if p.name not in (MANIFEST_NAME, LOCK_NAME)]
    assert len(outputs) == 2, f"only the two finished photos, no partial file: {outputs}"
    for output in outputs:
        Image.open(output).verify()
    assert "Cancelled" in window.progress_label.text()
    # Protect again: the two finished photos are recognised, the other four get done.
    monkeypatch.undo()
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        assert window.start_job()
    assert window.queue.count_by_status()[RowStatus.DONE] == 6


def test_esc_asks_before_it_stops_a_job_and_no_keeps_it_running(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Esc press stopped the job at once, minutes of fine-tuning included (audit)."""
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(1))
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    window.start_job()
    qtbot.waitUntil(lambda: window.queue.count_by_status()[RowStatus.DONE] == 1, timeout=30_000)
    asked: list[str] = []
    answers = iter([False, True])
    monkeypatch.setattr(window, "ask", lambda title, _text: asked.append(title) or next(answers))
    assert window.cancel_action.shortcut().toString() == "Esc"
    window.cancel_action.trigger()  # Esc: No
    assert asked == ["Stop protecting?"] and window.job_runner.running
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_action.trigger()  # Esc: Yes
    assert window.queue.count_by_status()[RowStatus.CANCELLED] == 2
    assert window.summary.property("stopped") is True  # not a success's green


def test_a_run_cancelled_before_any_photo_does_not_say_it_saved_them(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(0))
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    window.start_job()
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    text = window.summary_label.text()
    assert "0 protected" in text and "Nothing was saved." in text and "Saved to" not in text
    assert not window.open_output_button.isVisibleTo(window)  # no folder to open


def test_a_first_run_that_saved_nothing_has_no_earlier_copies_to_speak_of(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Same folder as this queue's earlier copies" was said of a folder holding none (audit)."""
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(0))
    window.options_panel.output_edit.setText("")  # the default folder beside the photos
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    window.start_job()
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    note = window.options_panel.output_note.text()
    assert "earlier copies" not in note and note.startswith("New folder"), note
    monkeypatch.undo()
    _protect(qtbot, window)  # copies made: the same folder keeps them together
    assert "earlier copies" in window.options_panel.output_note.text()


def _answer_the_box(qtbot: QtBot, button: str, keys: bool = False) -> list[str]:
    """Answer the next modal box by its ``button`` (by Tab and Space where ``keys``, from the
    button the box gives the focus to); the list it returns gets the box's text once it opened,
    or what went wrong (the box is closed then: an error in a timer's slot left it open)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    shown: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        shown.append(box.text())
        wanted = next((b for b in box.buttons() if b.text().replace("&", "") == button), None)
        if wanted is None:
            shown.append(f"no {button} button")
            box.reject()
            return
        if not keys:
            wanted.click()
            return
        for _ in range(len(box.buttons())):  # the keyboard's way: Tab to it, then Space
            if box.focusWidget() is wanted:
                break
            qtbot.keyClick(box.focusWidget() or box, Qt.Key.Key_Tab)
        if box.focusWidget() is not wanted:
            shown.append(f"Tab did not reach {button}")
            box.reject()
            return
        qtbot.keyClick(wanted, Qt.Key.Key_Space)

    QTimer.singleShot(0, answer)
    return shown


def test_a_selected_photos_status_leaves_the_status_bar_once_it_is_not_true(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selected row's "Failed: …" stayed in the status bar after the row was removed, and
    through the next run, whose rows read otherwise; a drop's "Nothing added" stayed after
    Clear (GUI audit)."""
    photos, broken = _two_photos_and_a_broken_jpeg(tmp_path, monkeypatch, "broken.jpg", 200)
    _add(qtbot, window, [photos / "photo0.jpg", broken])
    _protect(qtbot, window)
    row = window.queue.row_for(broken)
    assert row is not None and row.status is RowStatus.FAILED
    window.queue.selectRow(window.queue.rows().index(row))
    assert window.statusBar().currentMessage() == f"Failed: {row.reason}"
    window.queue.selectRow(0)  # a photo done: no reason to say
    assert window.statusBar().currentMessage() == ""
    window.queue.selectRow(window.queue.rows().index(row))
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_job()  # the failed photo is protected again: waiting, no reason
        assert window.statusBar().currentMessage() != f"Failed: {row.reason}"
    window.queue.selectRow(window.queue.rows().index(row))
    window.remove_selected()
    assert not window.statusBar().currentMessage().startswith("Failed")
    window.clear_queue()
    _add(qtbot, window, [tmp_path / "does-not-exist.jpg"])
    said = window.progress_label.text()  # a file: it has no "photos could be listed"
    assert (
        said
        == "Nothing added: “does-not-exist.jpg”: not found: moved or deleted since it was added."
    ), said
    window.clear_queue()
    assert not window.progress_label.text().startswith("Nothing added")


def test_a_stopped_jobs_error_leaves_the_status_bar_when_the_next_job_starts(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job stopped by a read-only or full disk says why in a box and in the status bar for
    10 s; a job started at once into another folder ran under the other folder's words."""
    monkeypatch.setattr(QMessageBox, "warning", lambda *_a: None)
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    window.show_error("The disk holding /media/card/out is read-only.\nChoose another folder.")
    assert window.statusBar().currentMessage() == "The disk holding /media/card/out is read-only."
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_job()
        said = window.statusBar().currentMessage()
    assert "read-only" not in said


def test_retry_a_failed_row(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken, blocker = _three_photos_one_of_which_cannot_be_saved(tmp_path)
    _add(qtbot, window, [photos / "photo0.jpg", broken])
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_job()
    row = window.queue.row_for(broken)
    assert row is not None and row.status is RowStatus.FAILED
    assert row.reason and "Traceback" not in row.reason
    assert window.summary.property("stopped") is True  # a failed photo: not a success's green
    # Its whole reason, cut off in the row, is read by selecting it (arrow keys; audit).
    window.queue.selectRow(window.queue.rows().index(row))
    assert window.statusBar().currentMessage() == f"Failed: {row.reason}"
    cell = window.queue.model().index(window.queue.rows().index(row), 1)
    assert cell.data(Qt.ItemDataRole.AccessibleTextRole).endswith(row.reason)
    shown = _answer_the_box(qtbot, "Close")
    window.queue.cellActivated.emit(window.queue.rows().index(row), 1)  # Enter on the row
    assert shown == [row.reason] and not window.job_runner.running  # closed: no retry
    retry = window.queue.retry_button(broken)
    assert retry is not None and retry.isVisibleTo(window.queue)
    blocker.unlink()
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        retry.click()
    assert window.queue.row_for(broken).status is RowStatus.DONE  # type: ignore[union-attr]
    assert window.queue.row_for(photos / "photo0.jpg").status is RowStatus.DONE  # type: ignore[union-attr]
    assert window.queue.retry_button(broken) is None, "no Retry once the photo is done"
    assert window.summary.property("stopped") is False


def test_a_photo_moved_or_deleted_after_it_was_queued_offers_remove_not_retry(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """It failed with "X does not exist. Check the name and the folder." and a Retry that
    could never succeed (audit F8)."""
    photos = _photos(tmp_path / "photos", 3)
    _add(qtbot, window, [photos])
    gone = photos / "photo2.png"
    gone.rename(tmp_path / "elsewhere.png")
    _protect(qtbot, window)
    row = window.queue.row_for(gone.resolve())
    assert row is not None and row.status is RowStatus.FAILED
    assert row.reason.startswith("moved or deleted since it was added"), row.reason
    button = window.queue.retry_button(gone)
    assert button is not None and button.text() == "Remove" and button.isEnabled()
    holder = button.parentWidget()
    assert window.queue.columnWidth(3) >= holder.sizeHint().width(), "its word cut off"
    summary = window.summary_label.text()
    assert summary.startswith("2 protected, 1 moved or deleted since added (select Remove)")
    window.queue.setFocus()
    window.queue.selectRow([r.path for r in window.queue.rows()].index(gone.resolve()))
    shown = _answer_the_box(qtbot, "Remove", keys=True)  # the keyboard's way: Enter on its row
    qtbot.keyClick(window.queue, Qt.Key.Key_Return)
    assert shown and shown[0].startswith("moved or deleted since it was added"), shown
    assert len(window.queue.paths()) == 2 and window.queue.row_for(gone) is None
    assert window.queue_title.text() == "Queue · 2 photos"
    # The summary still says what the run did, but asks no more to select Remove (review).
    summary = window.summary_label.text()
    assert summary.startswith("2 protected, 1 moved or deleted since added in "), summary


def test_when_every_queued_photo_is_gone_each_row_offers_remove(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job stopped ("Nothing to protect… does not exist") and the rows waited again, with
    no Remove: Protect failed the same way each time (review)."""
    monkeypatch.setattr(window, "show_error", lambda _text: None)  # no modal box in a test
    photos = _photos(tmp_path / "photos", 2)
    _add(qtbot, window, [photos])
    photos.rename(tmp_path / "moved")
    _protect(qtbot, window)
    rows = window.queue.rows()
    assert [r.status for r in rows] == [RowStatus.FAILED] * 2 and all(r.gone for r in rows)
    assert all(window.queue.retry_button(r.path).text() == "Remove" for r in rows)  # type: ignore[union-attr]


def test_a_failed_photo_is_retried_from_the_keyboard(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its Retry button was a mouse's only (audit): arrow keys select the row, Enter opens its
    box, and Tab reaches Retry there, which runs the job again."""
    photos, broken, blocker = _three_photos_one_of_which_cannot_be_saved(tmp_path)
    _add(qtbot, window, [photos / "photo0.jpg", broken])
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_job()
    index = [r.path for r in window.queue.rows()].index(broken.resolve())
    assert window.queue.rows()[index].status is RowStatus.FAILED
    blocker.unlink()  # mended
    window.queue.setFocus()
    window.queue.selectRow(index)
    shown = _answer_the_box(qtbot, "Retry", keys=True)
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        qtbot.keyClick(window.queue, Qt.Key.Key_Return)  # Enter on the row
    assert shown and "photo1.protected.png" in shown[0]
    assert window.queue.row_for(broken).status is RowStatus.DONE  # type: ignore[union-attr]
    retry = window.queue.retry_button(broken)
    assert retry is None


def test_a_failed_photos_box_offers_no_retry_while_a_job_runs(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    photos, broken = _two_photos_and_a_broken_jpeg(tmp_path, monkeypatch, "broken.jpg", 200)
    _add(qtbot, window, [photos / "photo0.jpg", broken])
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(0))
    states: list[bool] = []
    names: list[str] = []

    def look() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, look)
            return
        states.extend(b.isEnabled() for b in box.buttons() if b.text() == "&Retry")
        box.reject()

    window.start_job()
    try:  # the job is stopped whatever fails: one left running hangs the window's closing
        window.queue.set_status(broken, RowStatus.FAILED, "broken.jpg is damaged.")  # as it runs
        retry = window.queue.retry_button(broken)
        names.append(retry.accessibleName() if retry is not None else "")
        window.queue.selectRow([r.path for r in window.queue.rows()].index(broken.resolve()))
        QTimer.singleShot(0, look)
        window.show_selected_status()
    finally:
        with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
            window.cancel_button.click()
    assert states == [False]
    assert names == ["Retry broken.jpg"]  # which of the failed photos


def test_a_broken_photo_shows_its_problem_when_added_and_fails_with_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken = _two_photos_and_a_broken_jpeg(tmp_path, monkeypatch, "scan-0042.jpg", 64)
    _add(qtbot, window, [photos])
    row = window.queue.row_for(broken)
    assert row is not None and row.status is RowStatus.UNREADABLE, "not 'Waiting' until the run"
    before = row.reason
    assert "damaged" in before and str(tmp_path) not in before
    _assert_the_reason_is_read_whole(window, broken, f"Problem: {before}")
    assert "cannot be read" in window.statusBar().currentMessage()
    assert window.queue.row_for(photos / "photo0.jpg").status is RowStatus.WAITING  # type: ignore[union-attr]
    shown: list[RowStatus] = []
    set_status = window.queue.set_status
    monkeypatch.setattr(
        window.queue,
        "set_status",
        lambda path, status, reason="", **kwargs: (
            shown.append(status) if path == broken else None,
            set_status(path, status, reason, **kwargs),
        ),
    )
    _protect(qtbot, window)
    assert row.status is RowStatus.FAILED  # the run says the same, and that a Retry cannot help
    assert row.reason == f"{before} {protect_bridge.NO_RETRY}"
    assert RowStatus.WAITING not in shown, "the problem stays shown until the run fails it"
    window.options_panel.strength_group.button(2).click()  # other settings: a second run
    _protect(qtbot, window)
    assert RowStatus.WAITING not in shown and row.status is RowStatus.FAILED


def test_a_photo_damaged_behind_a_good_header_waits_then_fails_with_its_reason_and_counts(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos", 2)
    cut = samples.truncated_jpeg(photos / "cut.jpg")  # its header reads: only decoding fails
    _add(qtbot, window, [photos])
    row = window.queue.row_for(cut)
    assert row is not None and row.status is RowStatus.WAITING, "nothing known before the run"
    _protect(qtbot, window)
    assert row.status is RowStatus.FAILED
    assert row.reason.startswith("cut.jpg is a damaged or truncated JPEG file")
    assert "Copy the photo again" in row.reason and str(tmp_path) not in row.reason
    _assert_the_reason_is_read_whole(window, cut, f"Failed: {row.reason}")
    # A Retry reads the same damaged file again: none is offered, and the row says why.
    assert window.queue.retry_button(cut) is None
    assert row.reason.endswith(protect_bridge.NO_RETRY)
    summary = window.summary_label.text()
    assert summary.startswith("2 protected, 1 failed (select to see why) in "), summary
    boxes: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: boxes.append(text))
    window.queue.selectRow(window.queue.paths().index(cut))
    window.show_selected_status()  # Enter on the row: its reason, and no Retry
    assert boxes == [row.reason]


def test_a_heic_failed_for_want_of_its_optional_extra_gets_a_retry_that_works_once_installed(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Retry was offered ("A retry would fail the same way"), though installing the heif
    extra mends it: Protect, or the photo added again, then protected it in the same app."""
    pillow_heif = pytest.importorskip("pillow_heif")
    photos = _photos(tmp_path / "photos", 1)
    heic = photos / "phone.heic"
    pillow_heif.from_pillow(Image.new("RGB", (64, 48), (10, 200, 30))).save(heic)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # the extra is not installed
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    row = window.queue.row_for(heic)
    assert row is not None and row.status is RowStatus.FAILED
    assert "HEIC support is not installed" in row.reason and "pillow-heif" in row.reason
    assert not row.reason.endswith(protect_bridge.NO_RETRY)
    retry = window.queue.retry_button(heic)
    assert retry is not None and retry.text() == "Retry"
    monkeypatch.delitem(sys.modules, "pillow_heif")  # installed now, the app still running
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        retry.click()
    assert row.status is RowStatus.DONE, row.reason


def _assert_the_reason_is_read_whole(window: MainWindow, photo: Path, text: str) -> None:
    """The Status cell says ``text`` in lines that fit the row at a laptop's width, and its
    tooltip says it too."""
    window.resize(1280, 720)
    queue = window.queue
    index = queue.model().index(queue.paths().index(photo), 1)
    assert index.data() == text
    assert text in html.unescape(index.data(Qt.ItemDataRole.ToolTipRole))
    cell = queue.visualRect(index).adjusted(4, 0, -4, 0)
    needed = queue.fontMetrics().boundingRect(cell, Qt.TextFlag.TextWordWrap, text)
    assert queue.wordWrap() and needed.height() <= cell.height(), "not cut at the cell's end"


def test_close_during_a_job_asks_then_stops_the_worker(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(1))
    _add(qtbot, window, [_photos(tmp_path / "photos", 4)])
    window.start_job()
    qtbot.waitUntil(lambda: window.queue.count_by_status()[RowStatus.DONE] == 1, timeout=30_000)
    answers = iter([False, True])
    monkeypatch.setattr(window, "ask", lambda *_a: next(answers))
    assert not window.close(), "saying no keeps the window and the job"
    assert window.job_runner.running
    assert not window.close(), "yes: the job stops after its step, the window stays drawn"
    assert "Stopping after the current step, then closing" in window.progress_label.text()
    assert not window.close(), "asked once: closing again while it stops asks nothing"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.job_runner.running
    assert window.queue.count_by_status()[RowStatus.DONE] == 1


def test_settings_survive_a_restart(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    window.options_panel.strength_spin.setValue(16)
    window.options_panel.format_combo.setCurrentIndex(
        window.options_panel.format_combo.findData("png")
    )
    window.resize(960, 640)
    window.close()
    again = MainWindow(open_settings())
    qtbot.addWidget(again)
    options = again.current_options()
    assert options.strength == 16
    assert options.format == "png"
    assert options.output_dir == str(tmp_path / "out")
    assert options.perturbation.endswith("test pattern.safetensors")
    # The offscreen screen is 800 px wide, so restoring clamps the width; the height survives.
    assert again.height() == 640


def test_fine_tuned_mode_picks_its_encoder_and_says_what_it_costs(
    qtbot: QtBot, window: MainWindow
) -> None:
    panel = window.options_panel
    assert not panel.encoder_combo.isVisibleTo(window)  # universal mode needs no encoder
    panel.finetune_radio.setChecked(True)
    assert panel.encoder_combo.isVisibleTo(window)
    assert "Stable Diffusion's encoder" in panel.mode_note.text()
    slow = panel.mode_note.text()
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.findData("taesd"))
    panel.encoder_combo.activated.emit(panel.encoder_combo.currentIndex())  # the user's pick
    assert "the fast encoder" in panel.mode_note.text() and panel.mode_note.text() != slow
    options = window.current_options()
    assert options.mode == "finetune" and options.finetune_encoder == "taesd"
    settings = protect_bridge.job_settings(options)
    assert settings.mode == "finetune" and settings.encoder == "taesd"
    window.close()
    again = MainWindow(open_settings())
    qtbot.addWidget(again)
    assert again.current_options().finetune_encoder == "taesd"


def test_device_override_is_shown_and_remembered(qtbot: QtBot, window: MainWindow) -> None:
    window.device_combo.setCurrentIndex(window.device_combo.findData("cpu"))
    qtbot.waitUntil(lambda: "CPU" in window.device_label.text(), timeout=120_000)  # imports torch
    assert window.current_options().device == "cpu"
    window.close()
    again = MainWindow(open_settings())
    qtbot.addWidget(again)
    assert again.device_combo.currentData() == "cpu"


def test_preview_button_opens_the_preview_for_the_selected_photo(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui.preview_panel import PreviewDialog

    opened: list[str] = []

    def fake_exec(dialog: PreviewDialog) -> int:
        opened.append(dialog.photo_edit.text())
        return 0

    monkeypatch.setattr(PreviewDialog, "exec", fake_exec)
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    window.queue.selectRow(1)
    window.preview_button.click()
    assert opened == [str(window.queue.paths()[1])]


def test_settings_that_weaken_protection_are_noted_in_the_summary(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    panel = window.options_panel
    panel.format_combo.setCurrentIndex(panel.format_combo.findData("jpeg"))
    panel.quality_spin.setValue(70)
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.start_job()
    assert "1 protected" in window.summary_label.text()
    assert "JPEG quality 70" in window.summary_label.text()


@pytest.mark.parametrize("gain", [None, 1.8, 0.65])
def test_a_perturbation_saved_by_the_train_dialog_is_selected_unless_weaker_than_noise(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, gain: float | None
) -> None:
    from spdesk.gui.train_dialog import TrainDialog

    rng = np.random.default_rng(2)
    delta = rng.choice([-1.0, 1.0], size=(3, 32, 32)).astype(np.float32) * 4 / 255
    meta: dict[str, object] = {"name": "Portraits ±4", "gain_over_sign": gain}
    trained = library_path_for("Portraits")
    before = window.options_panel.perturbation_path()

    def fake_exec(dialog: TrainDialog) -> int:  # the user trains, names and saves
        dialog.saved.emit(save_perturbation(trained, delta, eps=4, metadata=meta))
        return 0

    monkeypatch.setattr(TrainDialog, "exec", fake_exec)
    window.options_panel.set_mode("photo")  # the default, which uses no pattern
    window.open_train_dialog()
    combo = window.options_panel.perturbation_combo
    assert combo.findText("Portraits ±4") >= 0
    if gain is not None and gain < 1:
        assert combo.currentData() == before != str(trained)
        assert "not selected" in window.statusBar().currentMessage()
        assert window.options_panel.mode() == "photo"
    else:
        assert combo.currentData() == str(trained)
        assert combo.currentText() == "Portraits ±4"
        # Protect photos uses it: the photo-specific mode would have left it unused, unsaid.
        assert window.options_panel.mode() == "universal"
        assert "Universal" in window.statusBar().currentMessage()
        assert window.options_panel.perturbation_box.isVisibleTo(window)


def test_a_pattern_saved_while_fine_tuning_keeps_that_mode(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui.train_dialog import TrainDialog

    delta = np.full((3, 32, 32), 4 / 255, np.float32)
    trained = library_path_for("Mine")

    def fake_exec(dialog: TrainDialog) -> int:
        dialog.saved.emit(save_perturbation(trained, delta, eps=4, metadata={"name": "Mine"}))
        return 0

    monkeypatch.setattr(TrainDialog, "exec", fake_exec)
    window.options_panel.set_mode("finetune")  # which fine-tunes the chosen pattern
    window.open_train_dialog()
    assert window.options_panel.perturbation_path() == str(trained)
    assert window.options_panel.mode() == "finetune"


def test_folders_dropped_while_listing_wait_their_turn(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    first, second = _photos(tmp_path / "a", 3), _photos(tmp_path / "b", 2)
    (second / "notes.txt").write_text("not a photo")
    window.add_paths([first])
    window.add_paths([second])  # while the first folder may still be listed
    qtbot.waitUntil(
        lambda: len(window.queue.paths()) == 5 and not window.scan_runner.running, timeout=30_000
    )
    assert window.start_button.isEnabled()
    assert all(p.suffix in (".png", ".jpg") for p in window.queue.paths())


def test_the_folder_scan_stops_at_a_cancel(tmp_path: Path) -> None:
    from spdesk.core.errors import Cancelled
    from spdesk.core.events import ignore_events

    samples_dir = tmp_path / "photos"
    samples_dir.mkdir()
    Image.new("RGB", (8, 8)).save(samples_dir / "a.png")
    task = protect_bridge.scan_task([samples_dir])
    assert task(ignore_events, CancelToken()).photos == [samples_dir / "a.png"]
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        task(ignore_events, token)


def test_protect_again_after_a_settings_change_redoes_the_photos(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    photos = _photos(tmp_path / "photos", 3)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    first = {r.path: r.output for r in window.queue.rows()}
    assert not window.rerun_bar.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(4.0)  # another strength: other outputs
    assert {r.status for r in window.queue.rows()} == {RowStatus.WAITING}
    assert window.overall_bar.value() == 0, "no full bar over photos waiting to be redone"
    assert window.rerun_bar.isVisibleTo(window), "the collision choice shows when it matters"
    assert "3 photos" in window.rerun_label.text()
    window.rerun_collision.setCurrentIndex(window.rerun_collision.findData("overwrite"))
    assert window.current_options().collision == "overwrite"  # one choice, two places
    _protect(qtbot, window)
    rows = window.queue.rows()
    assert {r.status for r in rows} == {RowStatus.DONE}, [r.reason for r in rows]
    assert {r.path: r.output for r in rows} == first  # replaced in place, as chosen
    assert "3 protected" in window.summary_label.text()


def test_a_settings_change_that_redoes_finished_photos_is_told_to_screen_readers(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another strength after a run made every finished row wait again and showed the bar
    that asks what to do with the old copies, far from the focus on the strength: a screen
    reader said nothing of either (accessibility audit). Said once, not at each change."""

    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    _protect(qtbot, window)
    told = record_announcements(monkeypatch)
    window.options_panel.strength_spin.setValue(4.0)
    assert told == [window.rerun_label.text()], told
    assert told[0].startswith("Settings changed: 3 photos")
    window.options_panel.strength_spin.setValue(5.0)  # the bar was already there
    assert len(told) == 1, told


def test_clear_resets_the_overall_progress(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    _protect(qtbot, window)
    assert window.overall_bar.value() == 1000
    window.clear_button.click()
    assert window.overall_bar.value() == 0 and not window.summary.isVisibleTo(window)


@pytest.mark.parametrize("original", ["/opt/mine/lib", None])
def test_the_frozen_app_starts_the_file_manager_with_the_users_library_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, original: str | None
) -> None:
    """The installed app's launcher puts its own folder first in LD_LIBRARY_PATH: xdg-open
    and the file manager inherited it and loaded the app's Qt instead of the system's."""
    from PySide6.QtGui import QDesktopServices

    from spdesk.gui.desktop import open_in_file_manager

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/spdesk/_internal")
    if original is None:
        monkeypatch.delenv("LD_LIBRARY_PATH_ORIG", raising=False)
    else:
        monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", original)
    seen: list[str | None] = []
    monkeypatch.setattr(
        QDesktopServices,
        "openUrl",
        lambda _url: seen.append(os.environ.get("LD_LIBRARY_PATH")) or True,
    )
    assert open_in_file_manager(tmp_path) == ""
    assert seen == [original]
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/spdesk/_internal"  # the app's own again


def _file_manager(monkeypatch: pytest.MonkeyPatch, opens: bool) -> tuple[list[QUrl], list[str]]:
    """A file manager that opens (or not) what it is sent; the URLs sent and the warnings."""
    from PySide6.QtGui import QDesktopServices

    opened: list[QUrl] = []
    warned: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or opens)
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warned.append(text))
    return opened, warned


@pytest.mark.parametrize("opens", [True, False])
def test_open_output_folder_says_so_when_no_file_manager_opens_it(
    qtbot: QtBot,
    window: MainWindow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    opens: bool,
) -> None:
    opened, shown = _file_manager(monkeypatch, opens)
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    _protect(qtbot, window)
    window.statusBar().clearMessage()  # "Added 1 photo." may still be showing
    window.open_output_button.click()
    assert [QUrl(url).toLocalFile() for url in opened] == [str(tmp_path / "out")]
    said = window.statusBar().currentMessage()
    if opens:
        assert not shown and not said
    else:  # a desktop without a file manager: never a button that does nothing
        assert "No file manager" in said and str(tmp_path / "out") in shown[0]


@pytest.mark.parametrize("opens", [True, False])
def test_an_output_folder_whose_name_is_not_utf8_is_opened_and_named_with_its_bytes(
    qtbot: QtBot,
    window: MainWindow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    opens: bool,
) -> None:
    """Photos in a folder named in Latin-1 ("été") go to "été (protected)" beside it: the
    file manager was sent "t (protected)" (Qt dropped the bytes), a folder that does not
    exist, and the window named it with the bytes left out."""
    from spdesk.core.files import shown

    photos = tmp_path / os.fsdecode(b"\xe9t\xe9")
    try:
        photos.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    Image.new("RGB", (64, 48), (120, 80, 40)).save(photos / "photo.png")
    opened, warned = _file_manager(monkeypatch, opens)
    window.options_panel.output_edit.clear()  # the default: a folder beside the photos
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    out = tmp_path / os.fsdecode(b"\xe9t\xe9 (protected)")
    assert out.is_dir()
    assert "Saved to " + shown(out) in window.summary_label.text()
    window.open_output_button.click()
    (url,) = opened
    encoded = url.toEncoded().data()  # what xdg-open is given
    assert encoded.startswith(b"file:///")
    assert unquote_to_bytes(encoded.removeprefix(b"file://")) == os.fsencode(out)
    if not opens:
        assert shown(out) in warned[0]


def test_a_save_to_folder_typed_with_a_tilde_is_in_the_home_folder(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "~/guiout" made a folder named "~" wherever the app was started, while the summary said
    "Saved to ~/guiout"."""
    home, elsewhere = tmp_path / "home", tmp_path / "started here"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    window.options_panel.output_edit.setText("~/guiout")
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    _protect(qtbot, window)
    (row,) = window.queue.rows()
    assert row.output is not None and row.output.parent == home / "guiout"
    assert f"Saved to {home / 'guiout'}" in window.summary_label.text()
    assert not any(elsewhere.iterdir())


def test_a_relative_save_to_folder_is_refused_and_says_what_to_write(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "protected" would be a folder wherever the app was started (a desktop launcher's
    folder, unseen): the window asks for a whole path instead of guessing."""
    elsewhere = tmp_path / "started here"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warned.append(text))
    monkeypatch.setattr(window, "ask", lambda _title, _text: True)  # a job started: close it
    window.options_panel.output_edit.setText("protected")
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    assert not window.start_job()
    assert len(warned) == 1 and "“protected”" in warned[0] and "~/" in warned[0]
    assert not any(elsewhere.iterdir())
    assert [r.status for r in window.queue.rows()] == [RowStatus.WAITING]
    window.options_panel.output_edit.setText("~nosuchuser0/out")  # raised RuntimeError
    assert not window.start_job()
    assert len(warned) == 2 and "no user “nosuchuser0”" in warned[1]


def test_a_save_to_folder_inside_a_folder_added_is_refused_as_the_command_line_does(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spdesk protect photos --out photos/protected`` is refused (the copies would be listed
    as photos by the next run of that folder), while the window protected into it."""
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warned.append(text))
    monkeypatch.setattr(window, "ask", lambda _title, _text: True)  # a job started: close it
    photos = _photos(tmp_path / "photos", 2)
    _add(qtbot, window, [photos])
    for inside, where in ((photos / "sub" / "protected", "inside"), (photos, "the")):
        window.options_panel.output_edit.setText(str(inside))
        assert not window.start_job()
        assert f"{inside} is {where}" in warned[-1] and f"folder {photos}" in warned[-1]
        assert "Save to" in warned[-1] and "--allow" not in warned[-1]
    assert not (photos / "sub" / "protected").exists()
    assert [r.status for r in window.queue.rows()] == [RowStatus.WAITING] * 2
    assert window.options_panel.output_edit.text() == str(photos)  # as typed, to be mended
    window.options_panel.output_edit.setText(str(tmp_path / "out"))  # beside: protected
    _protect(qtbot, window)
    assert [r.status for r in window.queue.rows()] == [RowStatus.DONE] * 2


def test_photos_done_before_are_not_counted_as_protected_again(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    photos = _photos(tmp_path / "photos", 3)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    window.clear_button.click()
    _add(qtbot, window, [photos])  # the same photos, the same settings, the same output folder
    _protect(qtbot, window)
    text = window.summary_label.text()
    assert text.startswith("0 protected, 3 already protected with these settings"), text
    assert "Saved to" not in text  # nothing was (it said so of the earlier run's copies)
    assert "Nothing new was saved. This queue's earlier 3 copies: " in text


def test_a_photo_edited_since_its_copy_counts_as_protected_in_the_run_that_redoes_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A run started for a failed row also redoes a finished photo edited since (the job gets
    the whole queue): its new copy was not counted, and the summary said "0 protected ...
    Nothing new was saved" beside a row with a new copy."""
    photos = _photos(tmp_path / "photos", 2)
    (photos / "broken.jpg").write_text("not a photo")
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    edited = samples.photo(photos / "photo0.jpg", width=40)  # cropped
    _protect(qtbot, window)
    text = window.summary_label.text()
    assert text.startswith("1 protected, 1 failed (select to see why)"), text  # no Retry
    assert "Saved to" in text
    row = window.queue.row_for(edited)
    assert row is not None and row.output is not None and row.output.stem.endswith("-2")
    assert "stays as it is" in row.reason


def test_protect_on_a_finished_queue_protects_the_photos_edited_since(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """It answered "All done." and left an edited photo with the copy of its old version."""
    photos = _photos(tmp_path / "photos", 2)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    _protect(qtbot, window)  # nothing changed
    text = window.summary_label.text()
    assert text.startswith("No photo changed since its copy was made: nothing new was saved")
    assert "This queue's 2 copies: " in text and window.progress_label.text() == "Finished."
    edited = samples.photo(photos / "photo0.jpg", width=40)  # cropped
    _protect(qtbot, window)
    assert window.summary_label.text().startswith("1 protected in "), window.summary_label.text()
    row = window.queue.row_for(edited)
    assert row is not None and row.output is not None and row.output.stem.endswith("-2")


def test_fine_tuning_without_its_model_offers_models_before_touching_a_photo(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui.model_manager import ModelManagerDialog

    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    window.options_panel.finetune_radio.setChecked(True)
    asked: list[str] = []
    opened: list[str | None] = []
    monkeypatch.setattr(window, "ask_missing_model", lambda text: asked.append(text) or "models")

    def fake_exec(dialog: ModelManagerDialog) -> int:
        opened.append(dialog._first_selection)
        return 0

    monkeypatch.setattr(ModelManagerDialog, "exec", fake_exec)
    assert not window.start_job()
    assert "not installed" in asked[0] and "spdesk models" not in asked[0]
    assert opened == ["train"]  # the Models dialog, on the model fine-tuning needs
    assert {r.status for r in window.queue.rows()} == {RowStatus.WAITING}
    assert not (tmp_path / "out").exists(), "nothing is written before the check passes"


def test_fine_tuning_can_use_an_encoder_file_the_user_picks(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    weights = tmp_path / "my-encoder.safetensors"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(weights), ""))
    panel = window.options_panel
    panel.finetune_radio.setChecked(True)
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.count() - 1)
    panel.encoder_combo.activated.emit(panel.encoder_combo.currentIndex())  # as a user's pick
    assert panel.encoder() == str(weights)
    assert panel.encoder_combo.currentText() == "my-encoder.safetensors"
    assert protect_bridge.encoder_problem(panel.encoder()) == ""
    assert protect_bridge.job_settings(window.current_options()).encoder == str(weights)


def test_the_settings_column_shows_the_few_that_matter(qtbot: QtBot, window: MainWindow) -> None:
    panel = window.options_panel
    shown = [panel.strength_group.buttons()[0], panel.finetune_radio, panel.output_edit]
    assert all(w.isVisibleTo(window) for w in shown)
    folded = [panel.strength_spin, panel.collision_combo]
    folded += [panel.format_combo, panel.quality_spin, panel.suffix_edit]
    assert not any(w.isVisibleTo(window) for w in folded)
    panel.more_button.click()
    assert all(w.isVisibleTo(window) for w in folded)
    panel.set_mode("universal")  # the pattern choice is shown with the modes that use one
    assert panel.perturbation_combo.isVisibleTo(window)
    assert "/255" not in panel.strength_note.text() and "dB" not in panel.strength_note.text()


def test_a_photo_skipped_for_a_taken_name_says_what_to_choose_in_the_app(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    photos = _photos(tmp_path / "photos", 2)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    window.options_panel.strength_spin.setValue(4.0)
    window.rerun_collision.setCurrentIndex(window.rerun_collision.findData("skip"))
    _protect(qtbot, window)
    reasons = [r.reason for r in window.queue.rows()]
    assert {r.status for r in window.queue.rows()} == {RowStatus.SKIPPED}
    assert all("“Add a number”" in reason and "--collision" not in reason for reason in reasons)


def test_the_location_is_left_out_unless_kept_and_the_summary_says_so(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    photos = tmp_path / "holiday"
    photos.mkdir()
    samples.gps_xmp_jpeg(photos / "beach.jpg")
    _add(qtbot, window, [photos])
    assert not window.options_panel.keep_location_check.isChecked()  # the default
    _protect(qtbot, window)
    assert "Location (GPS) removed from 1 photo" in window.summary_label.text()
    (row,) = window.queue.rows()
    assert row.output is not None
    with Image.open(row.output) as image:
        assert not image.getexif().get_ifd(0x8825) and image.getexif()[0x010F] == "TestCam"
    window.options_panel.keep_location_check.setChecked(True)
    assert window.queue.rows()[0].status is RowStatus.WAITING  # other copies: redo
    _protect(qtbot, window)
    (row,) = window.queue.rows()
    assert row.output is not None and "Location" not in window.summary_label.text()
    with Image.open(row.output) as image:
        assert image.getexif().get_ifd(0x8825)[1] == "N"


def test_save_to_names_the_folder_the_copies_go_to_before_protecting(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    panel = window.options_panel
    panel.output_edit.clear()
    edit = panel.output_edit
    assert edit.placeholderText() == "a new folder beside the photos"
    room = edit.width() - 2 * edit.textMargins().left() - 16  # the frame and padding
    assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room  # not cut off
    assert not panel.output_note.isVisibleTo(window)
    _add(qtbot, window, [_photos(tmp_path / "Holiday photos from the summer", 2)])
    note = panel.output_note
    assert note.isVisibleTo(window) and note.wordWrap()  # a long name wraps, never cut
    assert "“Holiday photos from the summer (protected)”, beside the photos" in note.text()
    assert str(tmp_path / "Holiday photos from the summer (protected)") in edit.toolTip()
    edit.setText(str(tmp_path / "mine"))  # a chosen folder speaks for itself
    assert not note.isVisibleTo(window)
    edit.clear()
    window.clear_queue()
    assert not note.isVisibleTo(window)


def test_save_to_says_while_typing_that_a_file_is_not_a_folder(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A file typed as the output folder was refused only when the job started."""
    panel = window.options_panel
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    panel.output_edit.clear()
    qtbot.keyClicks(panel.output_edit, str(a_file))
    qtbot.waitUntil(lambda: panel.output_note.isVisibleTo(window), timeout=2000)
    assert "“notes.txt” is a file, not a folder" in panel.output_note.text()
    panel.output_edit.setText(str(tmp_path / "protected"))  # a folder to be made: no note
    panel.flush_typing()
    panel.output_edit.editingFinished.emit()
    assert not panel.output_note.isVisibleTo(window)
    assert a_file.read_text() == "mine"


def test_save_to_says_while_typing_that_a_folder_inside_a_folder_added_is_refused(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A "Save to" folder inside a folder added was refused only when Protect was pressed."""
    panel = window.options_panel
    photos = _photos(tmp_path / "photos", 2)
    _add(qtbot, window, [photos])
    panel.output_edit.clear()
    qtbot.keyClicks(panel.output_edit, str(photos / "protected"))
    qtbot.waitUntil(lambda: panel.output_note.isVisibleTo(window), timeout=2000)
    said = panel.output_note.text()
    assert "“protected” is inside the folder “photos”, whose photos are being protected" in said
    panel.output_edit.setText(str(photos))
    panel.flush_typing()
    assert "“photos” is the folder “photos”" in panel.output_note.text()
    assert panel.output_note.isVisibleTo(window)
    panel.output_edit.setText(str(tmp_path / "protected"))  # beside it: no note
    panel.flush_typing()
    assert not panel.output_note.isVisibleTo(window)
    panel.output_edit.setText(str(photos / "protected"))
    panel.flush_typing()
    assert panel.output_note.isVisibleTo(window)
    window.clear_queue()  # no folder added any more: nothing to say
    assert not panel.output_note.isVisibleTo(window)
    assert not (photos / "protected").exists()


def test_save_to_typed_with_a_user_that_does_not_exist_raises_nothing(
    qtbot: QtBot, window: MainWindow
) -> None:
    """Typing "~nosuchuser0/out" raised RuntimeError in the event loop once typing paused
    (Path.expanduser of an unknown user); the note says why it cannot be used."""
    panel = window.options_panel
    panel.output_edit.clear()
    qtbot.keyClicks(panel.output_edit, "~nosuchuser0/out")
    panel.flush_typing()
    panel.output_edit.editingFinished.emit()
    said = panel.output_note.text()
    assert said == "“~nosuchuser0/out”: there is no user “nosuchuser0” on this computer."
    assert panel.output_note.isVisibleTo(window)


def test_save_to_says_while_typing_that_a_folder_is_not_a_whole_path(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A folder typed without its whole path was refused only when Protect was pressed."""
    panel = window.options_panel
    panel.output_edit.clear()
    qtbot.keyClicks(panel.output_edit, "protected")
    qtbot.waitUntil(lambda: panel.output_note.isVisibleTo(window), timeout=2000)
    assert panel.output_note.text().startswith("“protected” is not a full path")
    panel.output_edit.setText(str(tmp_path / "protected"))
    panel.flush_typing()
    assert not panel.output_note.isVisibleTo(window)


def test_a_card_dropped_whole_gets_its_default_folder_in_home_not_beside_its_mount(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a mount point (``/media/me/CARD (protected)``), or in a folder one cannot
    write to, the job failed at once; beside a drive's root is on the card (review)."""
    window.options_panel.output_edit.clear()
    card = tmp_path / "CARD"
    _photos(card / "DCIM" / "100CANON", 2)
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == card or real_ismount(path))
    _drop(window, card)
    qtbot.waitUntil(lambda: len(window.queue.paths()) == 2, timeout=30_000)
    assert window.output_root() == Path.home() / "spdesk protected" / "CARD (protected)"
    monkeypatch.setattr(os.path, "ismount", real_ismount)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode)
    )
    window.clear_queue()
    _drop(window, card)
    qtbot.waitUntil(lambda: len(window.queue.paths()) == 2, timeout=30_000)
    assert window.output_root() == Path.home() / "spdesk protected" / "CARD (protected)"


def test_the_strengths_number_and_the_default_folders_path_are_shown_not_only_in_tooltips(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The number behind Low, Medium and High and the default output folder's full path were
    in tooltips alone, which Qt never shows to the keyboard: a sighted keyboard user could not
    read them (accessibility audit). The notes under them say them; a long path wraps."""
    panel = window.options_panel
    for button in panel.strength_group.buttons():
        button.click()
        eps = float(button.property("eps"))
        assert f"at most {eps:g} out of 255" in panel.strength_note.text(), button.text()
    panel.output_edit.clear()
    photos = _photos(tmp_path / ("LongFolderNameWithoutSpaces" * 3) / "trip", 2)
    _add(qtbot, window, [photos])
    note = panel.output_note
    assert note.isVisibleTo(window)
    shown = note.text().replace("\u200b", "")  # where a line may break
    assert window.output_root() == photos.parent / "trip (protected)"
    assert f"“trip (protected)”, beside the photos in {photos.parent}." in shown, shown
    assert note.minimumSizeHint().width() < 300  # the column's width: it wraps, not widens


def test_the_default_output_folder_is_beside_the_folder_dropped_not_inside_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A camera card dropped whole (``H`` holding ``H/DCIM/100CANON``) had its copies go to
    ``H/DCIM/100CANON (protected)``: inside the folder dropped, on the card (audit F4)."""
    window.options_panel.output_edit.clear()
    card = tmp_path / "H"
    _photos(card / "DCIM" / "100CANON", 2)
    _drop(window, card)
    qtbot.waitUntil(lambda: len(window.queue.paths()) == 2, timeout=30_000)
    assert window.output_root() == tmp_path / "H (protected)"
    assert "“H (protected)”" in window.options_panel.output_note.text()
    # A folder inside it added too, or a photo of it on its own, changes nothing.
    _add(qtbot, window, [card / "DCIM", card / "DCIM" / "100CANON" / "photo0.jpg"])
    assert window.output_root() == tmp_path / "H (protected)"
    _protect(qtbot, window)
    assert len(list((tmp_path / "H (protected)").rglob("*.protected.*"))) == 2
    assert not list(card.rglob("*(protected)*")), "nothing written inside the folder dropped"
    # Photos added on their own: beside their folder, as before.
    window.clear_queue()
    loose = _photos(tmp_path / "Loose", 2)
    _add(qtbot, window, [loose / "photo0.jpg", loose / "sub" / "photo1.png"])
    assert window.output_root() == tmp_path / "Loose (protected)"
    # Two folders side by side: beside the folder holding both (outside each).
    window.clear_queue()
    _add(qtbot, window, [_photos(tmp_path / "P" / "A" / "deep", 1)])
    _add(qtbot, window, [_photos(tmp_path / "P" / "B", 1)])
    assert window.output_root() == tmp_path / "P (protected)"


def test_the_default_output_folder_of_thousands_of_photos_is_found_from_their_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default output folder is worked out on the GUI thread once photos are added: a
    Path made for each photo's folder held the window 0.4 s at 25,000 photos (audit F7)."""
    made: list[str] = []
    real = os.path.abspath
    monkeypatch.setattr(os.path, "abspath", lambda path: made.append(path) or real(path))
    card = tmp_path / "H"
    photos = [card / "DCIM" / f"{100 + i % 3}CANON" / f"IMG_{i:05d}.JPG" for i in range(20_000)]
    photos += [tmp_path / "Loose" / "photo.jpg"]
    roots = protect_bridge.input_roots(photos, [card])
    assert roots == [card, tmp_path / "Loose"]
    assert len(made) <= 5, len(made)  # the folder added and each folder of photos once


def test_a_file_added_on_its_own_and_left_out_says_why_not_that_there_are_no_photos(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A copy spdesk made, added on its own, read "No photos found there: spdesk reads JPEG…"
    and Files left out… stayed off: the reason was never shown (review)."""
    copy = samples.photo(tmp_path / "trip.protected.jpg")
    _add(qtbot, window, [copy])
    text = window.progress_label.text()
    assert text.startswith("Nothing added: “trip.protected.jpg”: named like an spdesk output")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    _add(qtbot, window, [notes, copy])
    said = window.statusBar().currentMessage()
    assert said.startswith("Nothing added: “notes.txt”:") and "1 more, each left out." in said


def test_a_folder_without_photos_says_so_where_the_eye_is_and_what_is_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    notes = tmp_path / "Notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a photo")
    (notes / "IMG_0001.CR2").write_bytes(b"raw")
    _add(qtbot, window, [notes])
    text = window.progress_label.text()
    assert text.startswith("No photos found there") and "JPEG" in text and "HEIC" in text
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    assert not window.progress_label.text().startswith("No photos")
    window.clear_queue()
    assert window.progress_label.text() == "Add photos to begin."


def test_files_a_folder_holds_that_are_not_queued_are_named_in_the_queue_title(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _photos(tmp_path / "Mixed", 2)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "link.jpg").symlink_to(folder / "photo0.jpg")
    (folder / ".hidden").mkdir()  # a folder: said as one, not as "a file"
    _add(qtbot, window, [folder])
    assert window.queue_title.text() == "Queue · 2 photos · 2 other files and 1 folder left out"
    tip = window.queue_title.toolTip().splitlines()
    assert tip[0] == "Mixed/link.jpg: symbolic link (not followed)"  # in the walk's order
    assert tip[1].startswith("Mixed/notes.txt: ") and tip[1].endswith("not a photo")
    # Within a keyboard's reach too: File › Files left out… (the title's tooltip needs a mouse)
    shown = _left_out_dialog_text(window, monkeypatch)
    assert shown == window.queue_title.toolTip()
    window.clear_queue()
    assert window.queue_title.text() == "Queue" and not window.queue_title.toolTip()
    assert not window.left_out_action.isEnabled()
    # A drop that queued nothing does not count its files against the next one (audit).
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "a.txt").write_text("a")
    _add(qtbot, window, [documents])
    _add(qtbot, window, [_photos(tmp_path / "Clean", 1)])
    assert window.queue_title.text() == "Queue · 1 photo"


def _left_out_dialog_text(window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> str:
    """What File › Files left out… lists (the dialog is not left open)."""
    from spdesk.gui.left_out_dialog import LeftOutDialog

    listed: list[str] = []
    monkeypatch.setattr(
        LeftOutDialog, "exec", lambda dialog: listed.append(dialog.list_view.toPlainText()) or 0
    )
    assert window.left_out_action.isEnabled()
    window.left_out_action.trigger()
    (text,) = listed
    return text


def test_the_left_out_tooltip_names_twenty_files_then_counts_the_rest() -> None:
    from spdesk.gui.text import LeftOut, left_out_text

    entries = {Path(f"f{i}.txt"): LeftOut("not a photo") for i in range(22)}
    entries[Path("locked")] = LeftOut("folder cannot be read", True, unreadable=True)
    lines = left_out_text(entries).splitlines()
    assert len(lines) == 21 and lines[0] == "locked: folder cannot be read"  # failures first
    assert lines[1] == "f0.txt: not a photo"
    assert lines[-1] == "… and 3 more (File › Files left out… lists all)"


def test_files_left_out_are_listed_by_their_path_in_the_folder_added_and_all_reachable(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By name only, at most 20: two ``loop`` links in two subfolders read the same, and a
    folder of RAW files and sidecars had everything past 20 as "… and N more", with no way
    to the rest (audit F8)."""
    from PySide6.QtWidgets import QApplication

    trip = _photos(tmp_path / "Trip", 1)
    for sub in ("a", "b"):
        (trip / sub).mkdir()
        (trip / sub / "loop").symlink_to(trip / sub)
    for i in range(30):
        (trip / "raw" / f"IMG_{i:04d}.xmp").parent.mkdir(exist_ok=True)
        (trip / "raw" / f"IMG_{i:04d}.xmp").write_text("<x:xmpmeta/>")
    _photos(trip / "locked", 1)
    _refuse_to_list(monkeypatch, "locked")
    _add(qtbot, window, [trip])
    # One line: the kinds of what is left out are in the tooltip and the box.
    assert (
        window.queue_title.text() == "Queue · 1 photo · 1 folder cannot be read · 32 more left out"
    )
    tip = window.queue_title.toolTip().splitlines()
    assert tip[0].startswith("Trip/locked: folder cannot be read"), tip  # failures first
    assert tip[1:3] == [
        "Trip/a/loop: symbolic link (not followed)",
        "Trip/b/loop: symbolic link (not followed)",
    ]
    assert len(tip) == 21 and tip[-1] == "… and 13 more (File › Files left out… lists all)"
    listed = _left_out_dialog_text(window, monkeypatch).splitlines()
    assert len(listed) == 33 and listed[:3] == tip[:3]
    assert "Trip/raw/IMG_0029.xmp: sidecar file (metadata), not a photo" in listed
    monkeypatch.undo()
    from spdesk.gui.left_out_dialog import LeftOutDialog

    dialog = LeftOutDialog(window._left_out, window)
    monkeypatch.setattr("spdesk.gui.left_out_dialog.COPIED_MS", 10)
    dialog.copy_button.click()
    copied = QApplication.clipboard().text().splitlines()
    assert len(copied) == 33 and copied[0].startswith(f"{trip / 'locked'}: folder cannot be read")
    assert dialog.copy_button.text() == "Copied"  # then as it was (it said so for good)
    qtbot.waitUntil(lambda: dialog.copy_button.text() == "Copy list", timeout=2000)


def test_a_photo_too_small_to_protect_is_said_when_added_and_fails_without_a_copy(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A 1x1 photo was "Done" with a copy named dot.protected.png, unchanged."""
    folder = _photos(tmp_path / "photos", 1)
    dot = folder / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(dot)
    window.options_panel.mode_radios["photo"].click()
    _add(qtbot, window, [folder])
    row = window.queue.row_for(dot)
    assert row is not None and row.status is RowStatus.UNREADABLE
    assert row.reason.startswith("dot.png is 1x1 pixels: too small to protect"), row.reason
    _protect(qtbot, window)
    assert row.status is RowStatus.FAILED and window.queue.retry_button(dot) is None
    assert not list((tmp_path / "out").glob("dot*"))
    text = window.summary_label.text()
    assert text.startswith("1 protected, 1 failed (select to see why)"), text


def test_the_summary_counts_a_copy_the_protection_cannot_change_as_unchanged(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _photos(tmp_path / "photos", 1)
    Image.new("RGB", (9, 9), (200, 10, 10)).save(folder / "dot.png")
    samples.unchanged_at(monkeypatch, (9, 9))  # as a budget rounded away would leave it
    window.options_panel.mode_radios["photo"].click()
    _add(qtbot, window, [folder])
    _protect(qtbot, window)
    text = window.summary_label.text()
    assert text.startswith("1 protected, 1 unchanged (too small or flat to carry the protection)")


def test_a_large_queue_costs_the_window_a_few_lookups_per_photo_not_one_per_row(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The overall progress counted every row of the job again for each event, resolving each
    path on disk: 1000 photos took the app 143 s where the command line took 69 s."""
    count = 60
    _add(qtbot, window, [_photos(tmp_path / "photos", count)])
    lookups = 0
    row_for = window.queue.row_for

    def counted(path: Path) -> Any:
        nonlocal lookups
        lookups += 1
        return row_for(path)

    window.queue.row_for = counted  # type: ignore[method-assign]
    seen: list[int] = []
    window.job_runner.core_event.connect(lambda _e: seen.append(window.overall_bar.value()))
    _protect(qtbot, window)
    assert window.queue.count_by_status()[RowStatus.DONE] == count
    assert seen == sorted(seen) and seen[-1] == 1000  # the bar only moves on, to the end
    assert lookups < 8 * count, lookups  # was about count x events: over 3600 here


def test_the_train_dialog_gets_the_device_the_window_detected(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui.train_dialog import TrainDialog

    seen: list[int] = []
    monkeypatch.setattr(TrainDialog, "exec", lambda dialog: seen.append(dialog.request().size) or 0)
    window.open_train_dialog()  # before the device is known: the usual 512 px
    window.detect_device()
    qtbot.waitUntil(lambda: "detecting" not in window.device_label.text(), timeout=60_000)
    window.open_train_dialog()  # this test machine has no GPU
    assert seen == [512, 128]


def test_retry_counts_the_retried_photo_alone(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken, blocker = _three_photos_one_of_which_cannot_be_saved(tmp_path)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    assert window.summary_label.text().startswith("2 protected, 1 failed (select Retry)")
    blocker.unlink()
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.queue.retry_button(broken).click()  # type: ignore[union-attr]
    text = window.summary_label.text()
    assert text.startswith("1 protected in"), text  # was "-1 protected, 2 already protected"


def test_fine_tuning_time_left_counts_only_the_photos_the_job_does(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos", 3)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    extra = tmp_path / "photos" / "later.png"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(extra)
    _add(qtbot, window, [extra])
    window._finetune_clock = clock = protect_bridge.FinetuneClock(4, 1)
    window._job_paths, window._job_set = [extra.resolve()], {extra.resolve()}
    done_before = window.queue.paths()[0]
    window._on_job_event(FileSkipped(done_before, SkipReason.ALREADY_DONE, "already done"))
    assert clock.photos == 1 and window._already_done == 0  # not the job's photo


def test_a_folder_added_after_protecting_does_not_protect_the_first_again(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    window.options_panel.output_edit.clear()  # the default: a folder beside the photos
    first = _photos(tmp_path / "photos" / "A", 2)
    _add(qtbot, window, [first])
    _protect(qtbot, window)
    copies = tmp_path / "photos" / "A (protected)"
    assert len(list(copies.rglob("*.png"))) + len(list(copies.rglob("*.jpg"))) == 2
    _add(qtbot, window, [_photos(tmp_path / "photos" / "B", 2)])
    # The common folder is now photos/, whose default would be a new "photos (protected)":
    # the queue keeps the folder its first copies went to, and says so.
    note = window.options_panel.output_note.text()
    assert note.startswith("Same folder as this queue's earlier copies: “A (protected)”, in "), note
    _protect(qtbot, window)
    assert not (tmp_path / "photos (protected)").exists(), "A protected again elsewhere"
    outputs = [p for p in copies.rglob("*") if p.suffix in (".png", ".jpg")]
    assert len(outputs) == 4, outputs
    assert window.summary_label.text().startswith("2 protected in")
    window.clear_button.click()
    _add(qtbot, window, [tmp_path / "photos" / "B"])
    assert window.output_root() == tmp_path / "photos" / "B (protected)"  # a new queue


def test_removing_every_row_starts_afresh_as_clear_does(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The emptied queue kept the last job's summary, full bar and "Open output folder", and
    the next folder's title counted the removed folder's left-out files."""
    folder = _photos(tmp_path / "Mixed", 2)
    (folder / "notes.txt").write_text("not a photo")
    _add(qtbot, window, [folder])
    _protect(qtbot, window)
    assert window.summary.isVisibleTo(window) and window.overall_bar.value() > 0
    window.queue.selectAll()
    window.remove_selected()
    assert not window.queue.paths()
    assert not window.summary.isVisibleTo(window) and window.overall_bar.value() == 0
    _add(qtbot, window, [_photos(tmp_path / "Good", 3)])
    assert window.queue_title.text() == "Queue · 3 photos"


def test_photos_cannot_be_removed_while_photos_are_being_listed(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emptied during a scan, the queue forgot the folders added, the scan's among them: the
    camera card's copies went into the card again (review)."""
    import threading

    _add(qtbot, window, [_photos(tmp_path / "A", 2)])
    release, real = threading.Event(), protect_bridge.scan_task

    def held_scan(*args: Any, **kwargs: Any) -> Any:
        task = real(*args, **kwargs)

        def run(on_event: Any, cancel: Any) -> Any:
            release.wait(30)
            return task(on_event, cancel)

        return run

    monkeypatch.setattr(protect_bridge, "scan_task", held_scan)
    window.add_paths([_photos(tmp_path / "B", 1)])
    try:
        assert window.scan_runner.running and not window.remove_action.isEnabled()
        window.queue.selectAll()
        window.remove_selected()
        assert len(window.queue.paths()) == 2
        assert "being listed" in window.statusBar().currentMessage()
    finally:
        with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
            release.set()
    assert len(window.queue.paths()) == 3 and window.remove_action.isEnabled()


def test_photos_cannot_be_removed_or_retried_while_a_job_runs(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(qtbot, window, [_photos(tmp_path / "photos", 5)])
    _start_paused(qtbot, window, monkeypatch, after=1)
    assert not window.remove_action.isEnabled()  # the job was given the list: it would go on
    window.queue.selectRow(3)
    window.remove_selected()
    assert len(window.queue.paths()) == 5
    assert "when it ends" in window.statusBar().currentMessage()
    window.retry(window.queue.paths()[4])
    assert "when it ends" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.job_runner.resume()
    assert window.remove_action.isEnabled()
    window.queue.selectRow(3)
    window.remove_selected()
    assert len(window.queue.paths()) == 4


def test_settings_changed_back_make_the_copies_finished_again(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    _protect(qtbot, window)
    window.options_panel.strength_spin.setValue(4.0)
    assert window.rerun_bar.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(8.0)  # back to what the copies were made with
    assert not window.rerun_bar.isVisibleTo(window)
    assert {r.status for r in window.queue.rows()} == {RowStatus.DONE}
    _protect(qtbot, window)  # nothing to do: a quick look for photos changed since
    assert window.summary_label.text().startswith("No photo changed since its copy was made")
    assert {r.status for r in window.queue.rows()} == {RowStatus.DONE}
    window.options_panel.strength_spin.setValue(4.0)  # and changed again: pending again
    assert {r.status for r in window.queue.rows()} == {RowStatus.WAITING}


def test_settings_changed_back_show_the_last_runs_summary_again(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Changed and changed back, the photos were finished again, but the summary and its
    "Open output folder" stayed hidden, with the bar at 0 under "Ready" (GUI audit)."""
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    _protect(qtbot, window)
    said = window.summary_label.text()
    assert said.startswith("3 protected") and window.open_output_button.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(4.0)
    assert not window.summary.isVisibleTo(window) and window.overall_bar.value() == 0
    window.options_panel.strength_spin.setValue(8.0)  # back to what the copies were made with
    assert window.summary.isVisibleTo(window) and window.summary_label.text() == said
    assert window.open_output_button.isVisibleTo(window)
    assert window.overall_bar.value() == window.overall_bar.maximum()
    assert window.progress_label.text().startswith("Finished."), window.progress_label.text()


def test_settings_changed_back_after_a_cancel_show_its_bar_where_it_was(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shown again, a cancelled run's summary stood over an empty bar (review L4)."""
    _add(qtbot, window, [_photos(tmp_path / "photos", 6)])
    _start_paused(qtbot, window, monkeypatch, 2)
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    bar = window.overall_bar.value()
    assert 0 < bar < window.overall_bar.maximum() and window.summary.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(4.0)
    assert window.overall_bar.value() == 0
    window.options_panel.strength_spin.setValue(8.0)
    assert window.summary.isVisibleTo(window) and window.overall_bar.value() == bar


def test_another_save_to_folder_makes_copies_there_without_the_settings_bar(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Choosing another folder after protecting is not a change of protection: the photos
    wait to be saved there, and the re-run bar about old copies (none are in the new folder)
    stays hidden until a setting that changes the copies changes too."""
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    _protect(qtbot, window)
    window.options_panel.output_edit.setText(str(tmp_path / "elsewhere"))
    # Once the typing pauses (each key re-marked every row: see the test below).
    qtbot.waitUntil(lambda: {r.status for r in window.queue.rows()} == {RowStatus.WAITING})
    rows = window.queue.rows()
    assert {r.reason for r in rows} == {"new output folder"}
    assert not window.rerun_bar.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(4.0)  # now the copies change too
    assert {r.reason for r in window.queue.rows()} == {"settings changed"}
    assert window.rerun_bar.isVisibleTo(window)
    window.options_panel.strength_spin.setValue(8.0)
    assert not window.rerun_bar.isVisibleTo(window)
    _protect(qtbot, window)
    elsewhere = tmp_path / "elsewhere"
    made = sorted(p.relative_to(elsewhere).as_posix() for p in elsewhere.rglob("*.protected.*"))
    assert made == ["photo0.protected.jpg", "sub/photo1.protected.png"], made
    assert window.summary_label.text().startswith("2 protected"), window.summary_label.text()


def test_typing_a_folder_or_suffix_after_a_job_re_marks_the_rows_once_it_pauses(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Each key typed in "Save to" or the suffix re-marked every finished row and counted the
    whole queue twice more: 0.2 s a key at 5,000 rows, 0.9 s at 25,000 (audit F5). Typing now
    costs nothing; the rows are re-marked once when it pauses, or when Enter is pressed."""
    from PySide6.QtTest import QTest

    count = 4
    _add(qtbot, window, [_photos(tmp_path / "photos", count)])
    _protect(qtbot, window)
    marked: list[Path] = []
    walks = [0]
    set_status, rows = window.queue.set_status, window.queue.rows

    def counted_set_status(path: Path, *args: Any) -> None:
        marked.append(path)
        set_status(path, *args)

    def counted_rows() -> Any:
        walks[0] += 1
        return rows()

    window.queue.set_status = counted_set_status  # type: ignore[method-assign]
    window.queue.rows = counted_rows  # type: ignore[method-assign]
    edit = window.options_panel.output_edit
    edit.setFocus()
    QTest.keyClicks(edit, "-v2")
    assert (marked, walks[0]) == ([], 0), "work done on each key"
    qtbot.waitUntil(lambda: len(marked) == count)
    assert {r.reason for r in rows()} == {"new output folder"}
    qtbot.wait(2 * 300)
    assert len(marked) == count, "each row re-marked once"
    QTest.keyClicks(edit, "x")  # rows already waiting for the new folder are left as they are
    qtbot.wait(2 * 300)
    assert len(marked) == count
    edit.setText(str(tmp_path / "out"))  # back: the copies are finished again
    QTest.keyClick(edit, Qt.Key.Key_Return)  # Enter: at once, no pause needed
    assert {r.status for r in rows()} == {RowStatus.DONE}
    marked.clear()
    suffix = window.options_panel.suffix_edit
    suffix.setFocus()
    QTest.keyClicks(suffix, "s")
    QTest.keyClick(suffix, Qt.Key.Key_Return)
    assert len(marked) == count and {r.reason for r in rows()} == {"new suffix"}


def test_photos_added_during_a_job_are_said_to_wait_when_it_ends(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(qtbot, window, [_photos(tmp_path / "photos", 3)])
    _start_paused(qtbot, window, monkeypatch, after=1)
    _add(qtbot, window, [_photos(tmp_path / "more", 2)])
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.job_runner.resume()
    text = window.progress_label.text()
    assert text == "Finished. 2 photos waiting: press “Protect photos”.", text


def test_a_retry_that_fails_again_still_offers_the_queues_copies(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken, _blocker = _three_photos_one_of_which_cannot_be_saved(tmp_path)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    with qtbot.waitSignal(window.job_runner.finished, timeout=30_000):
        window.queue.retry_button(broken).click()  # type: ignore[union-attr]  # still blocked
    text = window.summary_label.text()
    assert text.startswith("0 protected, 1 failed"), text  # this run's counts
    assert "Nothing was saved." not in text, "the queue's two copies are in the folder"
    assert f"This queue's earlier 2 copies: {tmp_path / 'out'}" in text, text
    assert window.open_output_button.isVisibleTo(window)


def test_retry_buttons_made_while_a_job_runs_are_off_until_it_ends(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken, _blocker = _three_photos_one_of_which_cannot_be_saved(tmp_path)
    _add(qtbot, window, [photos])
    _protect(qtbot, window)
    before = window.queue.retry_button(broken)
    assert before is not None and before.isEnabled()
    window.options_panel.strength_group.button(2).click()
    monkeypatch.setattr(protect_bridge, "protect_task", _pausing_task(1))
    window.start_job()
    assert window.job_runner.running
    # A row failing meanwhile gets a Retry that is off, as the others are.
    window.queue.set_status(broken, RowStatus.FAILED, "broken")
    retry = window.queue.retry_button(broken)
    assert retry is not None and not retry.isEnabled()
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    window.queue.set_status(broken, RowStatus.FAILED, "broken")
    after = window.queue.retry_button(broken)
    assert after is not None and after.isEnabled()


def test_a_cancelled_run_counts_the_photos_that_cannot_be_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, broken = _two_photos_and_a_broken_jpeg(tmp_path, monkeypatch, "scan.jpg", 64)
    _add(qtbot, window, [photos])
    assert window.queue.row_for(broken).status is RowStatus.UNREADABLE  # type: ignore[union-attr]
    real = protect_bridge.protect_task

    def paused_at_once(*args: Any) -> Any:
        task = real(*args)

        def run(on_event: Callable[[Event], None], cancel: CancelToken) -> Any:
            cancel.pause()
            return task(on_event, cancel)

        return run

    monkeypatch.setattr(protect_bridge, "protect_task", paused_at_once)
    window.start_job()
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    text = window.summary_label.text()
    assert text.startswith("0 protected, 1 cannot be read, 2 not done (cancelled)"), text


def test_more_options_scrolls_into_view_on_a_short_window(qtbot: QtBot, window: MainWindow) -> None:
    window.resize(1000, 480)
    qtbot.wait(50)
    panel = window.options_panel
    scroll = window.centralWidget().findChild(QScrollArea, "OptionsScroll")
    assert scroll is not None
    panel.more.setMinimumHeight(260)  # as tall as on a screen 600 px high, whatever the fonts
    panel.show_more(True)
    viewport = scroll.viewport()

    def shown() -> bool:
        top = panel.more.mapTo(viewport, QPoint(0, 0)).y()
        return top >= 0 and top + min(panel.more.height(), viewport.height()) <= viewport.height()

    qtbot.waitUntil(shown, timeout=2_000)
    assert scroll.verticalScrollBar().value() > 0


def test_add_photos_dialog_lists_every_kind_spdesk_reads(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cameras name HEIF files .hif; the dialog must not hide a file spdesk protects. Checked
    with Qt's own filter matching on a real folder."""
    from PySide6.QtCore import QDir

    from spdesk.core.formats import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        (tmp_path / f"a{suffix}").touch()
        (tmp_path / f"b{suffix.upper()}").touch()
    (tmp_path / "notes.txt").touch()
    filters: list[str] = []

    def chosen(*args: object, **_kwargs: object) -> tuple[list[str], str]:
        filters.append(str(args[3]))
        return [], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", chosen)
    window.add_files()
    images = filters[0].split(";;")[0]
    patterns = images[images.index("(") + 1 : images.index(")")].split()
    listed = QDir(str(tmp_path)).entryList(patterns, QDir.Filter.Files)
    assert len(listed) == 2 * len(IMAGE_SUFFIXES) and "notes.txt" not in listed, listed
    assert "a.hif" in listed and "b.JFIF" in listed


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_the_drop_area_names_every_format_the_reader_takes(
    window: MainWindow, tmp_path: Path, fmt: str
) -> None:
    """It said "JPEG, PNG, WebP, TIFF" while BMP and GIF photos were read and protected too
    (audit): its words come from the reader's own list now."""
    from spdesk.core.formats import format_label, sniff_file
    from spdesk.core.imageio import read_image

    photo = tmp_path / "photo"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(photo, format=fmt)
    read_image(photo)  # the reader takes it
    sniffed = sniff_file(photo)
    assert sniffed is not None
    hint = window.drop_zone.hint_label.text()
    assert format_label(sniffed) in hint.split(" · ")[0].split(", "), hint


def test_photo_mode_ignores_a_pattern_left_selected_for_universal(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pattern choice is hidden in photo mode: a pattern left selected there, broken or
    not, neither blocks protecting nor changes the job (its fingerprint would redo photos
    finished in photo mode); universal mode names what is wrong with the broken one."""
    from spdesk.gui import protect_bridge

    panel = window.options_panel
    panel.set_mode("universal")
    (tmp_path / "mine.safetensors").write_bytes(b"not a perturbation")
    panel.refresh_perturbations(select=str(tmp_path / "mine.safetensors"))
    panel.set_mode("photo")
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    _protect(qtbot, window)
    assert {r.status for r in window.queue.rows()} == {RowStatus.DONE}
    assert protect_bridge.job_settings(window.current_options()).perturbation is None
    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)
    panel.set_mode("universal")
    assert not window.start_job()
    assert errors and "mine.safetensors" in errors[0] and "Choose a pattern" not in errors[0]


def test_universal_mode_with_the_bundled_pattern_protects(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The bundled pattern is the list's "" entry: it must reach the job as no file (it once
    became Path("."), "a folder, not a perturbation file")."""
    panel = window.options_panel
    panel.set_mode("universal")
    panel.perturbation_combo.setCurrentIndex(panel.perturbation_combo.findData(""))
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    _protect(qtbot, window)
    rows = window.queue.rows()
    assert {r.status for r in rows} == {RowStatus.DONE}, [r.reason for r in rows]


def test_dialogs_opened_from_the_window_are_gone_once_closed(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each opening of Models, Preview, Train or About made a child of the window that stayed,
    hidden, until the window closed: with its photos and objects, one more at each opening."""
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QDialog

    from spdesk.gui.about import AboutDialog
    from spdesk.gui.model_manager import ModelManagerDialog
    from spdesk.gui.preview_panel import PreviewDialog
    from spdesk.gui.train_dialog import TrainDialog

    def close_at_once(dialog: QDialog) -> int:
        dialog.reject()  # as Esc or the Close button: the dialog stops its own workers
        return 0

    for kind in (AboutDialog, ModelManagerDialog, PreviewDialog, TrainDialog):
        monkeypatch.setattr(kind, "exec", close_at_once)
    for open_dialog in (
        window.open_about,
        window.open_model_manager,
        window.open_preview,
        window.open_train_dialog,
    ):
        open_dialog()
        open_dialog()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    left = [type(dialog).__name__ for dialog in window.findChildren(QDialog)]
    assert left == [], f"closed dialogs kept by the window: {left}"


def test_a_folder_added_after_a_job_says_what_waits_once_it_is_listed(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """ "Looking for photos…" stayed under the bar until the next job."""
    _add(qtbot, window, [_photos(tmp_path / "first", 2)])
    _protect(qtbot, window)
    assert window.progress_label.text() == "Finished."
    _add(qtbot, window, [_photos(tmp_path / "second", 3)])
    text = window.progress_label.text()
    assert text == "Finished. 3 photos waiting: press “Protect photos”.", text
    _add(qtbot, window, [tmp_path / "first"])  # nothing new there
    assert window.progress_label.text() == text


@pytest.mark.parametrize("look", ["", "Primary", "Flat", "Segment", "RetryButton"])
def test_a_button_with_the_keyboard_focus_shows_it_without_changing_size(
    qtbot: QtBot, look: str
) -> None:
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QPushButton, QStyle, QStyleOptionButton, QVBoxLayout, QWidget

    from spdesk.gui.style import STYLESHEET

    holder = QWidget()
    holder.setStyleSheet(STYLESHEET)
    button, other = QPushButton("Protect photos"), QPushButton("Clear")
    button.setObjectName(look)
    layout = QVBoxLayout(holder)
    layout.addWidget(button)
    layout.addWidget(other)
    qtbot.addWidget(holder)
    holder.show()
    holder.activateWindow()
    qtbot.waitUntil(holder.isActiveWindow)
    other.setFocus()
    unfocused = button.grab().toImage()
    button.setFocus()
    assert button.hasFocus()
    assert button.grab().toImage() != unfocused
    # The same box focused or not (border plus padding), so the layout does not jump.
    option = QStyleOptionButton()
    button.initStyleOption(option)
    sizes = []
    for focused in (False, True):
        option.state = option.state & ~QStyle.StateFlag.State_HasFocus
        if focused:
            option.state |= QStyle.StateFlag.State_HasFocus
        contents = QSize(80, 16)
        sizes.append(
            button.style().sizeFromContents(
                QStyle.ContentsType.CT_PushButton, option, contents, button
            )
        )
    assert sizes[0] == sizes[1]


def test_controls_with_no_words_of_their_own_have_names_for_screen_readers(
    window: MainWindow,
) -> None:
    """The output folder's button was announced as an ellipsis, the device and the re-run
    bar's choice by their value alone."""
    from PySide6.QtGui import QAccessible, QAccessibleInterface

    def interface(widget: Any) -> QAccessibleInterface:
        found = QAccessible.queryAccessibleInterface(widget)
        assert found is not None
        return found

    def name(widget: Any) -> str:
        return str(interface(widget).text(QAccessible.Text.Name))

    def labels(widget: Any) -> list[Any]:
        """The labels a screen reader on Linux names a combo box by (its name is its value)."""
        relations = interface(widget).relations(QAccessible.Relation.Label)
        return [related.object() for related, _ in relations]

    panel = window.options_panel
    assert name(panel.output_button) == "Choose the output folder"
    assert name(panel.output_edit) == "Save to folder"
    assert name(panel.steps_spin) == "Fine-tuning steps"
    assert window.device_label in labels(window.device_combo)
    assert window.rerun_label in labels(window.rerun_collision)
    # Windows and macOS name a combo box by its accessible name.
    assert window.device_combo.accessibleName() == "Device"
    assert window.rerun_collision.accessibleName() == "If a copy exists"
    assert panel.encoder_combo.accessibleName() == "Fine-tuning encoder"


def test_a_file_named_on_its_own_that_is_not_a_photo_is_left_out_as_in_a_folder(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Dropped on the window, it became a row that failed with a Retry that could never
    succeed, and moved the default output folder up to the folder holding it."""
    from spdesk.core.jobs.scan import scan_inputs

    window.options_panel.output_edit.clear()
    data = tmp_path / "data"
    small = _photos(data / "small", 2)
    note = data / "notaphoto.txt"
    note.write_text("not a photo")
    (small / "scan.dat").write_bytes((small / "photo0.jpg").read_bytes())  # a photo by content
    (walked,) = [s.reason for s in scan_inputs([data]).skipped if s.path == note]
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        _drop(window, small, note, small / "scan.dat")
    assert note.resolve() not in window.queue.paths()
    assert (small / "scan.dat").resolve() in window.queue.paths()
    assert window.queue_title.text() == "Queue · 3 photos · 1 other file left out"
    assert window.queue_title.toolTip() == f"notaphoto.txt: {walked}"
    assert window.output_root() == data / "small (protected)"


def test_the_queue_leaves_out_the_copies_the_job_would_with_its_suffix_and_folder(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The app's scan knew only the default suffix and no output folder: with "Save to" the
    folder added and the suffix ".safe", re-adding the folder queued ``a.safe.jpg`` (audit F2),
    a copy the job then left out."""
    from spdesk.core.discovery import OUTPUT_NAME, RECORDED_OUTPUT

    folder = tmp_path / "trip"
    folder.mkdir()
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(folder / "a.jpg")
    panel = window.options_panel
    panel.output_edit.setText(str(folder))
    panel.suffix_edit.setText(".safe")
    _add(qtbot, window, [folder])
    # The window refuses to save into the folder added: made as `spdesk protect trip --out trip
    # --suffix .safe --allow-output-in-input` would.
    settings = protect_bridge.job_settings(window.current_options())
    settings = dataclasses.replace(settings, allow_output_in_input=True)
    ProtectJob([folder], folder, settings).run(lambda _e: None, CancelToken())
    assert (folder / "a.safe.jpg").is_file()
    window.clear_queue()
    _add(qtbot, window, [folder])
    assert [p.name for p in window.queue.paths()] == ["a.jpg"]
    assert window.queue_title.text() == "Queue · 1 photo · 1 other file left out"
    assert window.queue_title.toolTip() == f"trip/a.safe.jpg: {OUTPUT_NAME}"
    # Named on its own (Add photos…, select all) too.
    window.clear_queue()
    _add(qtbot, window, [folder / "a.jpg", folder / "a.safe.jpg"])
    assert [p.name for p in window.queue.paths()] == ["a.jpg"]
    # Another suffix now: the copy is still the output folder's, as its manifest says.
    window.clear_queue()
    panel.suffix_edit.setText(".mine")
    _add(qtbot, window, [folder])
    assert [p.name for p in window.queue.paths()] == ["a.jpg"]
    assert window.queue_title.toolTip() == f"trip/a.safe.jpg: {RECORDED_OUTPUT}"


def test_what_is_left_out_for_the_save_to_folder_is_looked_at_again_when_it_changes(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Left out as "the output folder of this job" (or named with its suffix), a folder or
    photo stayed so once "Save to" (or the suffix) changed: its photos never queued, and Files
    left out said a reason no longer true."""
    folder = tmp_path / "trip"
    (folder / "out").mkdir(parents=True)
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(folder / "a.jpg")
    Image.fromarray(np.full((40, 48, 3), 60, np.uint8)).save(folder / "out" / "b.jpg")
    Image.fromarray(np.full((40, 48, 3), 30, np.uint8)).save(folder / "c.safe.jpg")
    panel = window.options_panel
    panel.output_edit.setText(str(folder / "out"))
    panel.suffix_edit.setText(".safe")
    _add(qtbot, window, [folder])
    assert [p.name for p in window.queue.paths()] == ["a.jpg"]
    assert window.queue_title.text() == "Queue · 1 photo · 1 other file and 1 folder left out"
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        panel.output_edit.setText(str(tmp_path / "elsewhere"))
        panel.flush_typing()
    assert sorted(p.name for p in window.queue.paths()) == ["a.jpg", "b.jpg"]
    assert (
        window.queue_title.toolTip() == "trip/c.safe.jpg: named like an spdesk output "
        "(spdesk never protects its outputs twice)"
    )
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        panel.suffix_edit.setText(".protected")
        panel.flush_typing()
    assert sorted(p.name for p in window.queue.paths()) == ["a.jpg", "b.jpg", "c.safe.jpg"]
    assert "left out" not in window.queue_title.text()
    assert not window.left_out_action.isEnabled()


def _refuse_to_list(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Folders of these names cannot be listed, as without read permission (the tests may run
    as root, which reads past ``chmod 000``)."""
    scandir = os.scandir

    def refuse(folder: Any) -> Any:
        if Path(folder).name in names:
            raise PermissionError(13, "Permission denied", str(folder))
        return scandir(folder)

    monkeypatch.setattr("spdesk.core.discovery.os.scandir", refuse)


def test_removing_the_photos_of_a_folder_forgets_what_it_could_not_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every photo of the folder holding an unreadable subfolder was removed, each later
    run still said "1 folder could not be read when added", in red (review)."""
    folder = tmp_path / "g1"
    _photos(folder / "ok", 1)
    _photos(folder / "locked", 1)
    other = _photos(tmp_path / "g3", 2)
    _refuse_to_list(monkeypatch, "locked")
    _add(qtbot, window, [folder])
    _add(qtbot, window, [other])
    assert window.queue_title.text() == "Queue · 3 photos · 1 folder cannot be read"
    window.queue.clearSelection()
    window.queue.selectRow(0)  # g1's only photo
    window.remove_selected()
    assert window.queue_title.text() == "Queue · 2 photos"
    assert not window.left_out_action.isEnabled()
    _protect(qtbot, window)
    summary = window.summary_label.text()
    assert "could not be read" not in summary and not window.summary.property("stopped")


def test_forget_list_stops_saying_a_folder_that_queued_nothing_and_cannot_be_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder added that queued no photo, only a subfolder it cannot read, has no row to
    remove: each run said it in red until the whole queue was cleared (review L11)."""
    from spdesk.gui.left_out_dialog import LeftOutDialog

    locked = tmp_path / "g1"
    _photos(locked / "locked", 1)
    _refuse_to_list(monkeypatch, "locked")
    _add(qtbot, window, [locked])
    _add(qtbot, window, [_photos(tmp_path / "g3", 2)])
    assert window.queue_title.text() == "Queue · 2 photos · 1 folder cannot be read"
    _protect(qtbot, window)
    assert "1 folder could not be read when added" in window.summary_label.text()
    assert window.summary.property("stopped")
    monkeypatch.setattr(
        LeftOutDialog, "exec", lambda dialog: dialog.forget_button.click() or dialog.result()
    )
    window.left_out_action.trigger()
    assert window.queue_title.text() == "Queue · 2 photos"
    assert not window.left_out_action.isEnabled()
    summary = window.summary_label.text()
    assert summary.startswith("2 protected") and "could not be read" not in summary, summary
    assert not window.summary.property("stopped")
    assert [p.name for p in window.queue.paths()] == ["photo0.jpg", "photo1.png"]


def test_closing_files_left_out_forgets_nothing(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.gui.left_out_dialog import LeftOutDialog

    locked = tmp_path / "g1"
    _photos(locked / "locked", 1)
    _refuse_to_list(monkeypatch, "locked")
    _add(qtbot, window, [locked, _photos(tmp_path / "g3", 2)])
    monkeypatch.setattr(LeftOutDialog, "exec", lambda dialog: dialog.reject() or dialog.result())
    window.left_out_action.trigger()
    assert window.queue_title.text() == "Queue · 2 photos · 1 folder cannot be read"


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_removing_the_photos_of_a_folder_added_by_a_link_forgets_what_it_could_not_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folders added are kept resolved, what they could not read by the path as given:
    through a link (a mapped drive) the two never matched (review)."""
    real = tmp_path / "real" / "g1"
    _photos(real / "ok", 1)
    _photos(real / "locked", 1)
    link = tmp_path / "link"
    link.symlink_to(real)
    _refuse_to_list(monkeypatch, "locked")
    _add(qtbot, window, [link])
    _add(qtbot, window, [_photos(tmp_path / "g3", 2)])
    assert window.queue_title.text() == "Queue · 3 photos · 1 folder cannot be read"
    window.queue.clearSelection()
    window.queue.selectRow(0)  # the linked folder's only photo
    window.remove_selected()
    assert window.queue_title.text() == "Queue · 2 photos"


@pytest.mark.skipif(os.name != "posix", reason="a path past the limit is made through open folders")
def test_a_subfolder_too_deep_to_open_is_said_as_one_that_cannot_be_read(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """It was counted among the "other files left out", in the job's words ("its photos were
    not protected", before any run), and the run after it was green (review)."""
    from tests.test_discovery import deep_folder, jpeg_bytes, write_at

    folder = tmp_path / "g1"
    _photos(folder / "ok", 1)
    _deep, fd = deep_folder(folder, 5000)
    write_at(fd, "lost.jpg", jpeg_bytes())
    os.close(fd)
    _add(qtbot, window, [folder])
    assert [p.name for p in window.queue.paths()] == ["photo0.jpg"]
    assert window.queue_title.text() == "Queue · 1 photo · 1 folder cannot be read"
    tip = window.queue_title.toolTip()
    assert "path too long for the system to open" in tip, tip
    assert "its photos are not in the queue (move it to a folder with a shorter path" in tip
    assert "were not protected" not in tip
    _protect(qtbot, window)
    summary = window.summary_label.text()
    assert "1 folder could not be read when added: its photos are not protected" in summary
    assert window.summary.property("stopped"), "not the green of a run that did everything"


def test_a_subfolder_that_cannot_be_read_is_said_when_added_and_after_the_run(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It went unsaid: "Added 1 photo.", nothing left out, a green run, and the photos of the
    subfolder never protected; a folder that could not be read at all was "No photos found
    there" (audit F3)."""
    folder = tmp_path / "g1"
    _photos(folder / "ok", 1)
    _photos(folder / "locked", 1)
    _refuse_to_list(monkeypatch, "locked", "g2")
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    _add(qtbot, window, [folder])
    assert [p.name for p in window.queue.paths()] == ["photo0.jpg"]
    said = "Added 1 photo. 1 folder cannot be read: its photos are not queued"
    assert messages[-1].startswith(said), messages
    assert window.queue_title.text() == "Queue · 1 photo · 1 folder cannot be read"
    why = "folder cannot be read (Permission denied): its photos are not in the queue"
    assert window.queue_title.toolTip() == f"g1/locked: {why}"
    assert window.left_out_action.isEnabled()
    _protect(qtbot, window)
    summary = window.summary_label.text()
    assert "1 folder could not be read when added: its photos are not protected" in summary
    assert window.summary.property("stopped"), "not the green of a run that did everything"
    # A folder that cannot be read at all is not said to hold no photos.
    window.clear_queue()
    unreadable = tmp_path / "g2"
    _photos(unreadable, 1)
    _add(qtbot, window, [unreadable])
    hint = window.progress_label.text()
    assert hint.startswith(f"Nothing added: “g2”: {why}."), hint
    assert window.left_out_action.isEnabled()
    # Readable again: queued, and no longer said to be unreadable.
    monkeypatch.undo()
    _add(qtbot, window, [unreadable, folder])
    assert window.queue_title.text() == "Queue · 3 photos"


def test_a_folder_added_after_a_cancelled_job_leaves_the_first_folders_layout(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue's common folder moved up when another folder was added, and the next job put
    the rest of the first folder's photos in a new layout (``trip/...`` beside the copies of
    the cancelled job), splitting one folder's copies in two."""
    out = tmp_path / "out"
    _add(qtbot, window, [_photos(tmp_path / "data" / "trip", 3)])
    _start_paused(qtbot, window, monkeypatch, after=1)
    with qtbot.waitSignal(window.job_runner.finished, timeout=10_000):
        window.cancel_button.click()
    monkeypatch.undo()
    _add(qtbot, window, [_photos(tmp_path / "data" / "party", 2)])
    _protect(qtbot, window)
    copies = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.protected.*"))
    assert copies == [
        "party/photo0.protected.jpg",
        "party/sub/photo1.protected.png",
        "photo0.protected.jpg",
        "photo2.protected.png",
        "sub/photo1.protected.png",
    ]


def test_a_job_that_cannot_run_leaves_its_photos_waiting_not_failed(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job-level error (a damaged key, the output folder) marked every row failed with a
    Retry that fails the same way, and the summary said "select Retry"."""
    from spdesk.core.errors import ConfigError

    errors: list[str] = []
    monkeypatch.setattr(window, "show_error", errors.append)

    def cannot_run(*_args: Any) -> Any:
        def run(_on_event: Callable[[Event], None], _cancel: CancelToken) -> Any:
            raise ConfigError("The protection key is damaged.", hint="Delete it.")

        return run

    monkeypatch.setattr(protect_bridge, "protect_task", cannot_run)
    _add(qtbot, window, [_photos(tmp_path / "photos", 2)])
    _protect(qtbot, window)
    assert {r.status for r in window.queue.rows()} == {RowStatus.WAITING}
    assert errors and "damaged" in errors[0]
    assert "Retry" not in window.summary_label.text()
    assert "2 photos waiting" in window.progress_label.text()
    # It read as a normal end ("0 protected in 0 s. Nothing was saved.", "Finished.")
    summary = window.summary_label.text()
    assert summary.startswith("The job stopped: The protection key is damaged.")
    assert window.progress_label.text() == (
        "Stopped. 2 photos waiting: once what stopped the job (above) is fixed, press "
        "“Protect photos”."
    ), "not simply 'press Protect photos', which fails the same way"
    assert window.overall_bar.value() < 1000


def test_a_job_stopped_by_a_full_disk_says_so_and_its_unreached_photos_wait(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job stops itself when the disk fills: the summary read "0 protected, 1 failed …
    Finished." and the photos it never reached stayed "Protecting"."""
    import errno

    from spdesk.core import export

    monkeypatch.setattr(QMessageBox, "warning", lambda *_a: None)

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "write_image", disk_full)
    _add(qtbot, window, [_photos(tmp_path / "photos", 4)])
    _protect(qtbot, window)
    statuses = [r.status for r in window.queue.rows()]
    assert RowStatus.PROTECTING not in statuses and RowStatus.WAITING in statuses
    summary = window.summary_label.text()
    assert summary.startswith("The job stopped: ") and "full" in summary, summary
    assert window.progress_label.text().startswith("Stopped.")
    assert window.summary.property("stopped") is True  # amber, not a success's green


def test_the_settings_of_a_newer_spdesk_are_said_to_be_left_alone(qtbot: QtBot) -> None:
    settings = open_settings()
    settings.setValue("schema", 99)
    window = MainWindow(settings)
    qtbot.addWidget(window)
    assert "newer spdesk" in window.statusBar().currentMessage()


def test_preview_opens_only_with_photos_and_ctrl_keypad_enter_protects(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """Ctrl+P opened Preview on an empty queue while its button was off; the keypad's Enter
    with Ctrl did nothing, though the hint says Ctrl+Enter (audit)."""
    assert not window.preview_action.isEnabled()
    _add(qtbot, window, [_photos(tmp_path / "photos", 1)])
    assert window.preview_action.isEnabled()
    keys = {shortcut.toString() for shortcut in window.start_action.shortcuts()}
    assert keys == {"Ctrl+Return", "Ctrl+Enter"}


def test_controls_without_words_have_names_a_screen_reader_can_say(
    qtbot: QtBot, window: MainWindow
) -> None:
    """ "…" buttons, the queue, the job's bar and the pattern list were nameless (audit)."""
    from PySide6.QtWidgets import QToolButton

    from spdesk.gui.preview_panel import PreviewDialog
    from spdesk.gui.settings import ProtectOptions
    from spdesk.gui.train_dialog import TrainDialog

    train = TrainDialog(open_settings(), device="cpu")
    preview = PreviewDialog(None, ProtectOptions(device="cpu"))
    for dialog in (train, preview):
        qtbot.addWidget(dialog)
    for widget in (window, train, preview):
        for button in widget.findChildren(QToolButton):
            if button.text() == "…":
                assert button.accessibleName(), widget
    assert window.queue.accessibleName() and window.overall_bar.accessibleName()
    assert window.queue.horizontalHeader().accessibleName() == "Queue columns"
    assert window.options_panel.perturbation_combo.accessibleName() == "Pattern"


def test_photos_dropped_on_the_queue_are_queued_once_it_holds_photos(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The drop area shrinks once photos are queued, and the list refused drops (audit): the
    window takes what its children do not."""
    from PySide6.QtGui import QDragEnterEvent
    from PySide6.QtWidgets import QApplication

    _add(qtbot, window, [_photos(tmp_path / "first", 1)])
    assert window.acceptDrops() and not window.queue.viewport().acceptDrops()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(_photos(tmp_path / "second", 2)))])
    enter = QDragEnterEvent(
        QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    with qtbot.waitSignal(window.scan_runner.finished, timeout=30_000):
        QApplication.sendEvent(window, drop)
    assert len(window.queue.rows()) == 3
    web = QMimeData()
    web.setUrls([QUrl("https://example.com/photo.jpg")])
    refused = QDragEnterEvent(
        QPoint(5, 5), Qt.DropAction.CopyAction, web, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(window, refused)
    assert not refused.isAccepted()


def test_the_window_speaks_of_patterns_in_plain_words(qtbot: QtBot, window: MainWindow) -> None:
    """It said "Pattern" in the settings and "perturbation" in the menu, the import dialog and
    the messages, named encoders "SD 1.5 VAE" and "TAESD", and gave strengths as bare numbers
    (audit). One word, as README's walk through the app says: pattern; model names only in
    tooltips; a strength's number with its meaning."""
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QLabel

    panel = window.options_panel
    panel.show_more(True)
    for mode in ("photo", "universal", "finetune"):
        panel.set_mode(mode)
        texts = [a.text() for a in window.findChildren(QAction)]
        texts += [w.text() for w in window.findChildren(QLabel)]
        texts += [w.text() for w in window.findChildren(QAbstractButton)]
        texts += [w.title() for w in window.findChildren(QGroupBox)]
        texts += [c.itemText(i) for c in window.findChildren(QComboBox) for i in range(c.count())]
        texts += [c.accessibleName() for c in window.findChildren(QComboBox)]
        for jargon in ("perturbation", "VAE", "TAESD", "SD 1.5"):
            assert not [t for t in texts if jargon.lower() in t.lower()], (mode, jargon)
    for button in panel.strength_group.buttons():  # "Low", with "4 out of 255" in its tooltip
        eps = float(button.property("eps"))
        assert not any(c.isdigit() for c in button.text()), button.text()
        assert f"at most {eps:g} out of 255" in button.toolTip(), button.toolTip()
    assert "(the default)" in panel.strength_group.button(1).toolTip()
    assert panel.strength_spin.suffix() == " / 255"
    assert "out of 255" in panel.strength_note.toolTip()


def test_the_core_s_hints_name_the_train_menu_item_as_the_window_shows_it(
    window: MainWindow,
) -> None:
    """They said "Train personal perturbation" once the window said "pattern" (review)."""
    from spdesk.core.errors import PerturbationFileError
    from spdesk.core.generator_file import bundled_generator_path
    from spdesk.core.perturbation import load_perturbation

    item = window.train_action.text().replace("&", "")
    with pytest.raises(PerturbationFileError) as chosen_wrong:
        load_perturbation(bundled_generator_path())  # a generator chosen as a pattern
    assert item in chosen_wrong.value.hint, (item, chosen_wrong.value.hint)


def test_the_photos_of_a_folder_are_resolved_by_the_scan_not_the_window(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each photo's path was resolved on the GUI thread as it was queued: 0.8 s of a frozen
    window for 25,000 photos, and again each time the folder was added (audit F7). The scan's
    worker resolves them; the window resolves the folder it was given, not its photos."""
    from tests.conftest import resolves_on_the_main_thread

    real = _photos(tmp_path / "real", 30)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    resolved_here = resolves_on_the_main_thread(monkeypatch)
    for _ in range(2):  # added, then added again
        _add(qtbot, window, [tmp_path / "link"])
    assert len(window.queue.paths()) == 30
    assert all(real in path.parents for path in window.queue.paths())  # the keys: resolved
    assert len(resolved_here) <= 4, resolved_here


def test_every_menu_item_has_a_letter_of_its_own(window: MainWindow) -> None:
    """Alt+F opened the File menu, but no item had an underlined letter: a key did nothing
    there, and a keyboard user went item by item with the arrows (accessibility audit)."""
    from PySide6.QtGui import QKeySequence

    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        assert menu is not None
        letters = [
            QKeySequence.mnemonic(action.text()).toString()
            for action in menu.actions()
            if not action.isSeparator()
        ]
        assert all(letters), (menu.title(), [a.text() for a in menu.actions()])
        assert len(set(letters)) == len(letters), (menu.title(), letters)


def test_alt_and_a_letter_goes_to_each_setting_from_anywhere(
    qtbot: QtBot, window: MainWindow
) -> None:
    """A keyboard user reached the strength, the mode or the output folder only by tabbing
    through the drop area, the queue and "Protect photos" (accessibility audit): each box's
    title has a letter, and Alt with it goes to the box's chosen control; Alt+O opens More
    options."""

    panel = window.options_panel
    panel.set_mode("universal")  # the pattern box shows
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    keys = {
        Qt.Key.Key_S: panel.strength_group.checkedButton(),
        Qt.Key.Key_M: panel.mode_radios["universal"],
        Qt.Key.Key_V: panel.output_edit,
        Qt.Key.Key_A: panel.perturbation_combo,
    }
    assert_alt_letters_reach(qtbot, window.queue, keys)
    assert not panel.more.isVisibleTo(window)
    qtbot.keyClick(window.queue, Qt.Key.Key_O, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: panel.more.isVisibleTo(window))  # More options opened, Alt+O


def test_each_field_of_more_options_has_a_letter_no_other_control_uses(
    qtbot: QtBot, window: MainWindow
) -> None:
    """Exact strength, Name ends with, If it exists, Format, Quality and Keep the location had
    no Alt letter: a keyboard user tabbed to each (accessibility audit). Alt with the letter
    goes to the field (ticks the box); no letter is used twice in the window, menus included."""

    panel = window.options_panel
    panel.show_more(True)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    keys = {
        Qt.Key.Key_E: panel.strength_spin,
        Qt.Key.Key_N: panel.suffix_edit,
        Qt.Key.Key_I: panel.collision_combo,
        Qt.Key.Key_R: panel.format_combo,
        Qt.Key.Key_Q: panel.quality_spin,
        Qt.Key.Key_L: panel.keep_location_check,
    }
    assert_alt_letters_reach(qtbot, window.queue, keys)
    qtbot.waitUntil(panel.keep_location_check.isChecked)  # Alt+L ticked it
    twice = {key: texts for key, texts in mnemonic_letters(window).items() if len(texts) > 1}
    assert not twice, twice


def test_a_details_letter_opens_more_options_and_goes_to_its_field(
    qtbot: QtBot, window: MainWindow
) -> None:
    """Alt+Q and the other Details letters did nothing while More options was closed (Qt looks
    past a hidden label's letter): a keyboard user had to know to open it first."""
    from PySide6.QtWidgets import QApplication

    panel = window.options_panel
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    assert not panel.more.isVisibleTo(window)
    window.queue.setFocus()
    qtbot.keyClick(window.queue, Qt.Key.Key_Q, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: panel.more.isVisibleTo(window))
    assert QApplication.focusWidget() is panel.quality_spin
    panel.show_more(False)
    assert not panel.keep_location_check.isChecked()
    qtbot.keyClick(window.queue, Qt.Key.Key_L, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(panel.keep_location_check.isChecked)  # as Alt+L does with it open
    # Open, the labels' own letters answer, once: Alt+L unticks it again.
    qtbot.keyClick(window.queue, Qt.Key.Key_L, Qt.KeyboardModifier.AltModifier)
    qtbot.waitUntil(lambda: not panel.keep_location_check.isChecked())


def test_the_readme_lists_every_menu_shortcut_and_settings_letter(window: MainWindow) -> None:
    """Nothing told a keyboard user that Ctrl+Shift+O adds a folder or Alt+S goes to the
    strength: the shortcuts were only in the menus (accessibility audit)."""
    from PySide6.QtGui import QKeySequence

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = " ".join(readme.split("### Keyboard", 1)[1].split("\n## ", 1)[0].split())
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        assert menu is not None
        for action in menu.actions():
            if action.shortcut().isEmpty():
                continue
            key = action.shortcut().toString(QKeySequence.SequenceFormat.PortableText)
            name = action.text().replace("&", "")
            assert f"**{key}**" in section and name in section, (key, name)
    for letter in ("Alt+S", "Alt+M", "Alt+V", "Alt+A", "Alt+O"):
        assert f"**{letter}**" in section, letter
