"""The photo queue: many rows at once, each path on its own row, duplicates skipped."""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QPushButton, QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from spdesk.gui.widgets.queue import THUMB, PhotoQueue, RowStatus


def test_thousands_of_photos_land_in_order_and_each_row_follows_its_photo(
    qtbot: QtBot, tmp_path: Path
) -> None:
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    paths = [tmp_path / f"photo_{i:04d}.jpg" for i in range(1500)]
    assert queue.add_photos(paths[:1000]) == 1000
    assert queue.add_photos(paths) == 500  # the first thousand are already queued
    assert queue.rowCount() == 1500 and queue.paths() == [p.resolve() for p in paths]
    queue.set_status(paths[1234], RowStatus.FAILED, "Cannot read it")
    assert queue.text(1234, 1) == "Failed: Cannot read it"
    assert queue.text(1234, 0) == "photo_1234.jpg"
    assert queue.retry_button(paths[1234]) is not None
    assert queue.count_by_status()[RowStatus.WAITING] == 1499
    queue.clear_photos()
    assert queue.rowCount() == 0


def test_removing_thousands_of_selected_rows_removes_each_run_of_neighbours_at_once(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """Row by row, with the rows still selected, "Remove selected" took time growing with the
    square of the rows: 4,000 rows froze the window for 10 s, 25,000 for 8 minutes (audit)."""
    from PySide6.QtCore import QItemSelectionModel

    queue = PhotoQueue()
    qtbot.addWidget(queue)
    paths = [tmp_path / f"photo_{i:04d}.jpg" for i in range(2000)]
    queue.add_photos(paths)
    kept = {0, 700, 701, 1999}  # two runs of selected rows between them
    rows = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in set(range(2000)) - kept:
        queue.selectionModel().select(queue.model().index(row, 0), rows)
    removals: list[int] = []
    queue.model().rowsAboutToBeRemoved.connect(lambda _parent, _first, _last: removals.append(1))
    queue.remove_selected()
    assert len(removals) == 2
    assert queue.paths() == [paths[i].resolve() for i in sorted(kept)]
    assert [queue.text(row, 0) for row in range(4)] == [
        "photo_0000.jpg", "photo_0700.jpg", "photo_0701.jpg", "photo_1999.jpg"
    ]  # fmt: skip
    queue.set_status(paths[1999], RowStatus.FAILED, "Cannot read it")  # found at its new row
    assert queue.text(3, 1) == "Failed: Cannot read it"
    assert not queue.selectedIndexes()


def test_a_done_photo_shows_what_else_changed_and_whether_it_changed_at_all(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from spdesk.core.jobs.events import FileDone
    from spdesk.gui.protect_bridge import interpret

    queue = PhotoQueue()
    qtbot.addWidget(queue)
    photos = [tmp_path / "deep.png", tmp_path / "dot.png", tmp_path / "plain.jpg"]
    queue.add_photos(photos)
    events = [
        FileDone(photos[0], tmp_path / "o1.png", psnr=31.5, notes=("16-bit image saved as 8-bit",)),
        FileDone(photos[1], tmp_path / "o2.png", psnr=None),
        FileDone(photos[2], tmp_path / "o3.jpg", psnr=32.0),
    ]
    for event in events:
        update = interpret(event)
        assert update is not None and update.status is not None and update.path is not None
        queue.set_status(update.path, update.status, update.reason)
    statuses = [queue.text(row, 1) for row in range(3)]
    assert statuses[0] == "Done: 16-bit image saved as 8-bit" and statuses[2] == "Done"
    assert statuses[1] == "Done: unchanged: too small or flat to carry the protection"


def test_retry_buttons_are_off_while_retrying_is_not_allowed(qtbot: QtBot, tmp_path: Path) -> None:
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    paths = [tmp_path / f"photo_{i}.jpg" for i in range(3)]
    queue.add_photos(paths)
    queue.set_status(paths[0], RowStatus.FAILED, "Cannot read it")
    first = queue.retry_button(paths[0])
    assert first is not None and first.isEnabled()
    queue.set_retry_enabled(False)  # a job runs
    assert not first.isEnabled()
    queue.set_status(paths[1], RowStatus.FAILED, "Cannot read it")  # fails meanwhile
    second = queue.retry_button(paths[1])
    assert second is not None and not second.isEnabled()
    queue.set_retry_enabled(True)
    assert first.isEnabled() and second.isEnabled()


def test_a_heic_photo_gets_a_thumbnail_though_qt_cannot_read_it(
    qtbot: QtBot, tmp_path: Path
) -> None:
    import numpy as np
    import pytest
    from PIL import Image

    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "red.heic"
    try:
        pillow_heif.from_pillow(Image.new("RGB", (64, 40), (220, 30, 30))).save(path)
    except Exception as error:  # no HEVC encoder in this build
        pytest.skip(f"cannot write HEIC here: {error}")
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.add_photos([path])
    assert queue.wait_for_thumbnails()

    def centre_is_red() -> None:
        image = queue.icon(0).pixmap(THUMB, THUMB).toImage()
        colour = image.pixelColor(THUMB // 2, THUMB // 2)
        assert np.allclose((colour.red(), colour.green(), colour.blue()), (220, 30, 30), atol=12)

    qtbot.waitUntil(centre_is_red, timeout=5000)


_TIFF_QUEUE = """
import sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
from spdesk.gui.widgets.queue import PhotoQueue, _ThumbJob

app = QApplication([])
queue = PhotoQueue()
paths = [Path(p).resolve() for p in sys.argv[1:]]
queue.add_photos(paths)
for _ in range(10):  # decoded many times over: the crash came as a reader was deleted
    for path in paths:
        queue._pool.start(_ThumbJob([(path, None, 0)], queue._thumbs))
assert queue.wait_for_thumbnails()
app.processEvents()
placeholder = queue._placeholder.cacheKey()
drawn = [queue.icon(row).cacheKey() != placeholder for row in range(queue.rowCount())]
print("thumbnails", sum(drawn), "of", len(drawn))
"""


def test_tiff_photos_get_thumbnails_and_do_not_crash_the_app(tmp_path: Path) -> None:
    """Queuing an uncompressed or LZW TIFF killed the app (exit 139): Qt's TIFF reader closes
    its handle on the file as the reader is deleted, and the file went first. A process of its
    own: the crash takes the process with it."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    paths = []
    for name, options in (("plain.tif", {}), ("lzw.tif", {"compression": "tiff_lzw"})):
        pixels = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / name, **options)
        paths.append(str(tmp_path / name))
    done = subprocess.run(
        [sys.executable, "-c", _TIFF_QUEUE, *paths],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-1500:]}"
    assert "thumbnails 2 of 2" in done.stdout


def test_tab_leaves_the_queue_and_the_arrows_still_move_between_rows(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """Tab went from cell to cell and wrapped round: the buttons after the queue (Protect, the
    settings) could not be reached from the keyboard."""
    window = QWidget()
    before, queue, after = QPushButton("Add photos…"), PhotoQueue(), QPushButton("Protect photos")
    layout = QVBoxLayout(window)
    for widget in (before, queue, after):
        layout.addWidget(widget)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    queue.add_photos([tmp_path / f"photo_{i}.jpg" for i in range(3)])
    queue.setFocus()
    queue.setCurrentCell(0, 0)
    qtbot.keyClick(queue, Qt.Key.Key_Down)
    assert queue.currentRow() == 1
    qtbot.keyClick(queue, Qt.Key.Key_Tab)
    assert after.hasFocus()
    queue.setFocus()
    qtbot.keyClick(queue, Qt.Key.Key_Backtab)
    assert before.hasFocus()


def _stripes(path: Path) -> Path:
    """A photo of one-pixel stripes, as wide as a thumbnail at a scale factor of 2."""
    stripes = np.zeros((THUMB * 2, THUMB * 2, 3), np.uint8)
    stripes[:, ::2] = 255
    Image.fromarray(stripes).save(path)
    return path


def _sharp_at_twice(queue: PhotoQueue) -> None:
    """The first row's thumbnail, drawn at a scale factor of 2, keeps its stripes."""
    image = queue.icon(0).pixmap(QSize(THUMB, THUMB), 2.0).toImage()
    assert image.width() == THUMB * 2
    row = [image.pixelColor(x, THUMB).red() for x in range(THUMB - 4, THUMB + 4)]
    assert all(abs(a - b) > 200 for a, b in pairwise(row)), row


def test_thumbnails_are_drawn_at_the_screens_pixel_density(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a scale factor of 2 the thumbnail was made 48 pixels wide and stretched to 96 on the
    screen: blocky. One-pixel stripes must come out as stripes."""
    path = _stripes(tmp_path / "stripes.png")
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    monkeypatch.setattr(queue, "devicePixelRatioF", lambda: 2.0)
    queue.add_photos([path])
    assert queue.wait_for_thumbnails()

    qtbot.waitUntil(lambda: _sharp_at_twice(queue), timeout=5000)


def test_a_thumbnail_made_before_the_window_moved_screens_is_made_again_at_the_new_density(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Squared for a scale factor of 1, then shown on a screen of 2: it is decoded again at 96
    pixels, not stretched (nor redrawn from the 48 pixels made)."""
    path = _stripes(tmp_path / "stripes.png")
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    ratio = [1.0]
    monkeypatch.setattr(queue, "devicePixelRatioF", lambda: ratio[0])
    queue.add_photos([path])
    queue._decode_in_view()
    assert queue._pool.waitForDone(10_000)
    ratio[0] = 2.0  # the window moved before the thumbnail was drawn
    assert queue.wait_for_thumbnails()

    def sharp() -> None:
        queue.wait_for_thumbnails()
        _sharp_at_twice(queue)

    qtbot.waitUntil(sharp, timeout=5000)


def test_a_photo_whose_name_is_not_utf8_gets_its_own_thumbnail_not_its_neighbours(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """``a\\xffb.jpg`` beside ``ab.jpg``: Qt dropped the byte from the path handed back with
    the thumbnail, so the odd photo's row stayed grey and ``ab.jpg``'s row showed its picture."""
    odd = tmp_path / os.fsdecode(b"a\xffb.png")
    try:
        Image.new("RGB", (64, 40), (220, 30, 30)).save(odd, "PNG")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    plain = tmp_path / "ab.png"
    Image.new("RGB", (64, 40), (30, 30, 220)).save(plain)
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.add_photos([plain, odd])
    assert queue.wait_for_thumbnails()

    def centre(row: int) -> tuple[int, int, int]:
        colour = queue.icon(row).pixmap(THUMB, THUMB).toImage().pixelColor(THUMB // 2, THUMB // 2)
        return colour.red(), colour.green(), colour.blue()

    def each_row_shows_its_photo() -> None:
        assert np.allclose(centre(0), (30, 30, 220), atol=12)
        assert np.allclose(centre(1), (220, 30, 30), atol=12)

    qtbot.waitUntil(each_row_shows_its_photo, timeout=5000)


def test_the_photo_column_gives_way_in_a_narrow_window_unless_set_by_hand(qtbot: QtBot) -> None:
    """At half a 1920 screen the status column was 92 px wide ("Failed: empty.jpg is em…")."""
    from spdesk.gui.widgets.queue import PHOTO_COLUMN_MAX, PHOTO_COLUMN_MIN

    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.show()
    queue.resize(1000, 400)
    qtbot.waitUntil(lambda: queue.columnWidth(0) == PHOTO_COLUMN_MAX)
    queue.resize(570, 400)  # the queue's share of a 960-wide window
    qtbot.waitUntil(lambda: queue.columnWidth(0) < PHOTO_COLUMN_MAX)
    assert PHOTO_COLUMN_MIN <= queue.columnWidth(0) <= 0.3 * queue.viewport().width() + 1
    assert queue.columnWidth(1) >= 180, "the status column has room for a reason (was 92)"
    queue.resize(300, 400)
    qtbot.waitUntil(lambda: queue.columnWidth(0) == PHOTO_COLUMN_MIN)
    queue.horizontalHeader().resizeSection(0, 222)  # the user's own width stays
    queue.resize(900, 400)
    qtbot.wait(50)
    assert queue.columnWidth(0) == 222


def test_a_thumbnail_job_calls_nothing_of_qts_in_its_thread(qtbot: QtBot, tmp_path: Path) -> None:
    """A pool thread that called Qt (QImageReader.size, a signal) held the GIL while it waited
    for a lock of Qt's, which the GUI thread held while it waited for the GIL (a disconnect
    calling into Python): a full test run hung for good in test_gui_main (py-spy showed both)."""
    import sys
    import threading

    from spdesk.gui.widgets.queue import _ThumbInbox, _ThumbJob

    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.jpg", "b.png", "c.tif"):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(tmp_path / name)
    inbox = _ThumbInbox()
    jobs = [_ThumbJob([(path, None, 0)], inbox) for path in paths]  # made on the GUI thread
    qt_calls: list[str] = []

    def watch(_frame: object, event: str, arg: object) -> None:
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            module = f"{getattr(arg, '__module__', '')} {type(owner).__module__}"
            if "PySide6" in module or "shiboken6" in module:
                qt_calls.append(repr(arg))

    def run_jobs() -> None:
        sys.setprofile(watch)
        try:
            for job in jobs:
                job.run()
        finally:
            sys.setprofile(None)

    worker = threading.Thread(target=run_jobs)
    worker.start()
    worker.join(30)
    assert qt_calls == []
    assert sorted(thumb.path.name for thumb in inbox.take()) == ["a.jpg", "b.png", "c.tif"]
    assert inbox.running == 0


def test_the_photo_being_protected_is_scrolled_into_view(qtbot: QtBot, tmp_path: Path) -> None:
    """With a long queue the "Protecting" row was off the screen the whole job (audit)."""
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.resize(400, 300)
    queue.show()
    paths = [tmp_path / f"photo_{i:02d}.jpg" for i in range(40)]
    queue.add_photos(paths)
    last = queue.model().index(39, 0)
    assert not queue.viewport().rect().intersects(queue.visualRect(last))
    queue.set_status(paths[39], RowStatus.PROTECTING)
    assert queue.viewport().rect().intersects(queue.visualRect(last))


def test_a_photo_edited_on_disk_gets_its_new_thumbnail(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row's thumbnail was drawn once, when the photo was queued: edited since (same name,
    same size even), added again or protected, the row still showed the old picture. It is
    drawn again when the file's size or time changed, and only then."""
    from spdesk.gui.widgets import queue as queue_module

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 40), (220, 30, 30)).save(photo)
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.add_photos([photo])
    assert queue.wait_for_thumbnails()

    def centre() -> tuple[int, int, int]:
        colour = queue.icon(0).pixmap(THUMB, THUMB).toImage().pixelColor(THUMB // 2, THUMB // 2)
        return colour.red(), colour.green(), colour.blue()

    assert np.allclose(centre(), (220, 30, 30), atol=12)
    decoded: list[Path] = []
    real = queue_module._thumbnail

    def counted(path: Path, *args: object) -> object:
        decoded.append(path)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(queue_module, "_thumbnail", counted)
    assert queue.add_photos([photo]) == 0  # unchanged: nothing decoded again
    assert queue.wait_for_thumbnails() and decoded == []
    before = photo.stat()
    Image.new("RGB", (64, 40), (30, 30, 220)).save(photo)  # the photo edited in place
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert queue.add_photos([photo]) == 0  # dropped again: still one row
    assert queue.wait_for_thumbnails()
    assert np.allclose(centre(), (30, 30, 220), atol=12) and len(decoded) == 1
    Image.new("RGB", (64, 40), (30, 200, 30)).save(photo)  # edited again, then protected
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    queue.set_status(photo, RowStatus.PROTECTING)
    queue.set_status(photo, RowStatus.PROTECTING)  # the job's progress: checked once
    qtbot.waitUntil(lambda: np.allclose(centre(), (30, 200, 30), atol=12), timeout=5000)
    assert queue.wait_for_thumbnails() and len(decoded) == 2


def test_the_photos_a_job_reaches_are_checked_for_edits_together(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each photo a job reached started a pool job to check its thumbnail: at 200 photos a
    second the window stalled three times as often as without (5,000 photos: 105-148 pauses
    over 100 ms against 28-39). Photos reached within ``THUMB_CHECK_MS`` share one job."""
    from spdesk.gui.widgets import queue as queue_module

    paths = []
    for i in range(30):
        paths.append(tmp_path / f"photo_{i:02d}.png")
        Image.new("RGB", (16, 16), (8 * i, 0, 0)).save(paths[-1])
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.resize(400, 31 * (THUMB + 12))  # every row in view: each thumbnail is kept
    queue.show()
    queue.add_photos(paths)
    assert queue.wait_for_thumbnails()
    assert list(queue.rows_in_view()) == list(range(30))
    started: list[int] = []
    real = queue_module._ThumbJob

    def counted(requests: list[object], inbox: object, **options: bool) -> object:
        started.append(len(requests))
        return real(requests, inbox, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(queue_module, "_ThumbJob", counted)
    edited = paths[17]
    Image.new("RGB", (16, 16), (0, 0, 250)).save(edited)
    os.utime(edited, ns=(0, edited.stat().st_mtime_ns + 1_000_000_000))
    for path in paths:
        queue.set_status(path, RowStatus.PROTECTING)
        queue.set_status(path, RowStatus.DONE)
    qtbot.waitUntil(lambda: started == [30], timeout=5000)
    middle = THUMB // 2
    qtbot.waitUntil(
        lambda: (
            queue.icon(17).pixmap(THUMB, THUMB).toImage().pixelColor(middle, middle).blue() > 200
        ),
        timeout=5000,
    )
    assert queue.wait_for_thumbnails() and started == [30]


def _red_thumbnails(
    monkeypatch: pytest.MonkeyPatch, decoded: list[Path] | None = None
) -> list[Path]:
    """Thumbnails made without reading a file (a red square for any path), each decode
    counted in the list returned."""
    from spdesk.gui.widgets import queue as queue_module

    counted = [] if decoded is None else decoded

    def red(path: Path, stamp: object = None, serial: int = 0) -> object:
        counted.append(path)
        return queue_module._Thumb(path, bytes((220, 30, 30, 255)) * 4, 2, 2, None, serial)

    monkeypatch.setattr(queue_module, "_thumbnail", red)
    return counted


def _shown_queue(qtbot: QtBot) -> PhotoQueue:
    """A queue on the screen, 400x600: about ten rows in view."""
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.resize(400, 600)
    queue.show()
    return queue


def _drawn(queue: PhotoQueue, row: int) -> bool:
    return queue.icon(row).cacheKey() != queue._placeholder.cacheKey()


def test_only_the_rows_in_view_and_a_few_beside_get_their_thumbnails_decoded(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every photo's thumbnail was decoded as it was queued: 25,000 photos took 27 s of
    decoding and 500 MB (audit F7). Those in view are decoded, and THUMB_MARGIN rows beside."""
    from spdesk.gui.widgets.queue import THUMB_MARGIN

    decoded = _red_thumbnails(monkeypatch)
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    queue.resize(400, 300)
    queue.show()
    queue.add_photos([tmp_path / f"photo_{i:04d}.jpg" for i in range(500)])
    assert queue.wait_for_thumbnails()
    in_view = queue.rowAt(queue.viewport().height() - 1) + 1  # rows 0.. in view: 4 or 5
    assert 3 <= in_view <= 6
    assert sorted(decoded) == queue.paths()[: in_view + THUMB_MARGIN]
    assert all(_drawn(queue, row) for row in range(in_view)) and not _drawn(queue, 499)


def test_rows_scrolled_to_get_their_thumbnails_and_few_are_kept(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thumbnails are kept for the last THUMB_CACHE rows shown, not for the whole queue (a
    96x96 icon a photo at a scale factor of 2: 500 MB at 25,000 photos); rows scrolled back
    to are decoded again."""
    from spdesk.gui.widgets import queue as queue_module
    from spdesk.gui.widgets.queue import THUMB_CACHE

    decoded = _red_thumbnails(monkeypatch)
    monkeypatch.setattr(queue_module, "FILLED_ROWS", 200)
    queue = _shown_queue(qtbot)
    paths = [tmp_path / f"photo_{i:04d}.jpg" for i in range(3000)]
    queue.add_photos(paths)
    assert queue.wait_for_thumbnails()
    queue.scrollToBottom()
    qtbot.waitUntil(lambda: _drawn(queue, 2999), timeout=5000)
    for row in range(0, 3000, 20):  # scrolled through the whole queue
        queue.scrollTo(queue.model().index(row, 0))
        assert queue.wait_for_thumbnails()
        assert _drawn(queue, row)
        assert len(queue._icons) <= THUMB_CACHE and len(queue._thumb_stamps) <= 2 * THUMB_CACHE
    assert len(set(decoded)) == 3000  # each row was in view once
    assert sum(queue.item(row, 0) is not None for row in range(3000)) <= 200  # cells made
    queue.scrollToTop()
    assert queue.wait_for_thumbnails() and _drawn(queue, 0)
    assert decoded.count(paths[0]) == 2  # dropped from those kept, decoded again


def test_thousands_of_photos_are_added_with_work_for_the_rows_in_view_only(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding 25,000 photos held the window 2.7 s: each path resolved (0.8 s), three table
    items made a row, a thumbnail job started a photo. Paths the scan resolved are taken as
    they are, and nothing is made for a row out of view."""
    from spdesk.gui.widgets import queue as queue_module
    from tests.conftest import resolves_on_the_main_thread

    decoded = _red_thumbnails(monkeypatch)
    named: list[object] = []
    real_shown = queue_module.shown
    monkeypatch.setattr(queue_module, "shown", lambda p: named.append(p) or real_shown(p))
    queue = _shown_queue(qtbot)
    paths = [tmp_path.resolve() / f"photo_{i:05d}.jpg" for i in range(20_000)]
    resolved_here = resolves_on_the_main_thread(monkeypatch)
    assert queue.add_photos(paths, resolved=True) == 20_000
    assert queue.add_photos(paths[:10_000], resolved=True) == 0  # the folder added again
    assert queue.wait_for_thumbnails()
    qtbot.wait(50)  # painted
    assert resolved_here == []
    assert queue.rowCount() == 20_000 and queue.paths() == paths
    assert len(decoded) < 40 and len(named) < 400, (len(decoded), len(named))


def test_a_photo_decoded_as_it_is_scrolled_past_is_not_decoded(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast scroll through the queue asked for every row it passed: the pool then decoded
    rows long out of view before those the user stopped at."""
    from spdesk.gui.widgets.queue import _ThumbInbox, _ThumbJob

    decoded = _red_thumbnails(monkeypatch)
    inbox = _ThumbInbox()
    seen, passed = tmp_path / "seen.jpg", tmp_path / "passed.jpg"
    inbox.wanted = frozenset({seen})
    _ThumbJob([(seen, None, 1), (passed, None, 2)], inbox, if_wanted=True).run()
    assert decoded == [seen] and inbox.take_passed() == [passed]
    assert [thumb.path for thumb in inbox.take()] == [seen] and inbox.running == 0


def test_a_jobs_scrolling_asks_for_thumbnails_in_batches_not_a_pool_job_a_photo(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view follows the photo being protected, a row a photo: asking for the one row that
    came into reach each time would start a pool job a photo, as the edit checks did when the
    window stalled three times as often (45776e6). The rows ahead are asked for in batches."""
    from spdesk.gui.widgets import queue as queue_module

    decoded = _red_thumbnails(monkeypatch)
    queue = _shown_queue(qtbot)
    paths = [tmp_path / f"photo_{i:03d}.jpg" for i in range(400)]
    queue.add_photos(paths)
    assert queue.wait_for_thumbnails()
    started: list[int] = []
    real = queue_module._ThumbJob

    def counted(requests: list[object], inbox: object, **options: bool) -> object:
        if options.get("if_wanted"):  # asked by the view (not an edit check)
            started.append(len(requests))
        return real(requests, inbox, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(queue_module, "_ThumbJob", counted)
    monkeypatch.setattr(queue, "underMouse", lambda: False)  # offscreen, the pointer is on it
    for path in paths:  # a job: each photo scrolled to as it is reached
        queue.set_status(path, RowStatus.PROTECTING)
        qtbot.wait(1)  # the view settles
        assert queue.wait_for_thumbnails()
        queue.set_status(path, RowStatus.DONE)
    assert len(set(decoded)) == 400
    assert all(_drawn(queue, row) for row in queue.rows_in_view(0))
    assert len(started) < 400 / 3, len(started)  # a job a photo: 400


def test_painting_the_queue_asks_python_for_nothing_but_the_progress_bars(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model written in Python was asked for each cell's data as it was painted; each ask
    waited for the job's thread to let go of the GIL, so the window paused up to 1.5 s a
    paint while photos were protected. The cells are Qt's items: painting them runs no
    Python but the progress bars' delegate."""
    import sys

    _red_thumbnails(monkeypatch)
    queue = _shown_queue(qtbot)
    paths = [tmp_path / f"photo_{i:04d}.jpg" for i in range(500)]
    queue.add_photos(paths)
    queue.set_status(paths[1], RowStatus.FAILED, "Cannot read it")
    queue.set_progress(paths[2], 0.5)
    assert queue.wait_for_thumbnails()
    qtbot.wait(50)
    queue.grab()  # laid out and painted once
    called: list[str] = []

    def watch(frame: object, event: str, _arg: object) -> None:
        code = frame.f_code  # type: ignore[attr-defined]
        if event == "call" and code.co_filename.endswith("queue.py"):
            called.append(code.co_qualname)

    sys.setprofile(watch)
    try:
        queue.grab()  # painted whole, as on the screen
    finally:
        sys.setprofile(None)
    in_view = queue.rowAt(queue.viewport().height() - 1) + 1
    assert set(called) == {"_ProgressDelegate.paint"}, set(called)
    assert len(called) <= in_view + 1


def test_rows_a_job_scrolls_past_are_not_decoded_until_the_view_stands_still(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job in universal mode reaches 200 photos a second, each scrolled into view: their
    thumbnails, each on the screen for 5 ms, were decoded in the pool beside the job (5,000
    photos: pauses of the window doubled). The view's thumbnails wait for it to stand still."""
    decoded = _red_thumbnails(monkeypatch)
    queue = _shown_queue(qtbot)
    monkeypatch.setattr(queue, "underMouse", lambda: False)  # offscreen, the pointer is on it
    paths = [tmp_path / f"photo_{i:03d}.jpg" for i in range(300)]
    queue.add_photos(paths)
    assert queue.wait_for_thumbnails()
    first = set(decoded)
    queue._view_timer.setInterval(60_000)  # the view never stands still long enough
    for path in paths:
        queue.set_status(path, RowStatus.PROTECTING)
        qtbot.wait(1)
        queue.set_status(path, RowStatus.DONE)
    queue._pool.waitForDone()
    assert set(decoded) == first
    assert all(queue.text(row, 1) == "Done" for row in queue.rows_in_view(0))  # cells made
    queue._view_timer.setInterval(1)  # it stands still
    queue._view_moved()
    qtbot.waitUntil(lambda: all(_drawn(queue, row) for row in queue.rows_in_view(0)), timeout=5000)
    assert set(decoded) == first | {paths[row] for row in queue.rows_in_view()}


def test_a_rows_progress_is_read_out_as_a_percentage(qtbot: QtBot, tmp_path: Path) -> None:
    """The progress cell is a painted bar: a screen reader read it as empty, and a photo
    fine-tuned for minutes said nothing of how far it had come (accessibility audit)."""
    from PySide6.QtCore import Qt

    queue = _shown_queue(qtbot)
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    queue.add_photos(paths)
    queue.set_progress(paths[0], 0.375)

    def said(row: int) -> str:
        item = queue.item(row, 2)
        return str(item.data(Qt.ItemDataRole.AccessibleTextRole)) if item is not None else ""

    assert said(0) == "38%" and said(1) == "0%"
    queue.set_status(paths[1], RowStatus.DONE)
    assert said(1) == "100%"
