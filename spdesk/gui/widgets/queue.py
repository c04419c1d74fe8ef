"""The queue of photos: thumbnail, name, status per photo, progress, and retry for failed rows.

A row is a few Python objects until it comes near the view, when its cells are made (see
:class:`PhotoQueue`). Thumbnails are decoded for the rows in view and a few either side, kept
for the last ``THUMB_CACHE`` rows shown (a queue of 25,000 decoded every photo up front: 500 MB
and 27 s of decoding). They are decoded in a thread pool by Pillow (a JPEG at a fraction of its
size, other photos by spdesk's own reader) and collected by the GUI thread on a timer: the
pool's threads call nothing of Qt's (see ``_ThumbInbox``).
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from PIL import Image, ImageOps
from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QRectF,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QIcon,
    QImage,
    QPainter,
    QPixmap,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from spdesk.core.errors import ImageError
from spdesk.core.files import shown
from spdesk.core.imageio import read_thumbnail
from spdesk.gui import garbage

THUMB = 48  # thumbnail edge in pixels
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 1  # a row's progress, 0..1, painted as a bar


class RowStatus(Enum):
    WAITING = "Waiting"
    UNREADABLE = "Problem"  # known from its header before the run, which then fails it
    PROTECTING = "Protecting"
    DONE = "Done"
    SKIPPED = "Skipped"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


_STATUS_COLOURS = {
    RowStatus.WAITING: "#6b7280",
    RowStatus.UNREADABLE: "#b91c1c",
    RowStatus.PROTECTING: "#2563eb",
    RowStatus.DONE: "#15803d",
    RowStatus.SKIPPED: "#a16207",
    RowStatus.FAILED: "#b91c1c",
    RowStatus.CANCELLED: "#6b7280",
}


@dataclass
class QueueRow:
    path: Path
    status: RowStatus = RowStatus.WAITING
    reason: str = ""
    output: Path | None = None
    problem: str = ""  # what its header said when it was added ("" once it is protected)
    gone: bool = False  # failed: not where it was added any more (offers Remove, not Retry)
    photo_fault: bool = False  # failed for its own content: a Retry would fail alike (none)


Stamp = tuple[int, int]
"""A file's size and modification time (ns): what its thumbnail was made from."""

_ThumbRequest = tuple[Path, "Stamp | None", int]
"""A photo to draw, the stamp of its thumbnail drawn (None: none yet) and the request's serial."""


@dataclass(frozen=True)
class _Thumb:
    """A thumbnail's RGBA pixels, decoded in the pool, for the GUI thread to draw; ``stamp``
    says which version of the file they show, ``serial`` which job made them."""

    path: Path
    rgba: bytes
    width: int
    height: int
    stamp: Stamp | None = None
    serial: int = 0


class _ThumbInbox:
    """Where the pool's jobs leave thumbnails for the GUI thread, which collects them on a
    timer. Plain Python: a pool thread makes no Qt call at all. One that did (Qt decoding the
    file, a signal emitted) held the GIL while it waited for a lock of Qt's, which the GUI
    thread held while it waited for the GIL (a disconnect calling into Python): the app, and
    the test suite, hung for good."""

    def __init__(self) -> None:
        self.batch = 0  # raised when the queue is cleared: older jobs skip their photo
        # The photos in view and near it, replaced whole by the GUI thread as the view moves:
        # a photo scrolled past before a job reached it is passed over, not decoded.
        self.wanted: frozenset[Path] = frozenset()
        # The thumbnails' edge in device pixels (THUMB points at the screen's pixel ratio): the
        # jobs square them to it, so the GUI thread only wraps their pixels.
        self.edge = THUMB
        self._lock = threading.Lock()
        self._ready: list[_Thumb] = []
        self._passed: list[Path] = []
        self.running = 0  # jobs queued or running

    def started(self) -> None:
        with self._lock:
            self.running += 1

    def deliver(self, thumb: _Thumb | None) -> None:
        if thumb is not None:
            with self._lock:
                self._ready.append(thumb)

    def passed(self, path: Path) -> None:
        """``path`` was not decoded (scrolled past, or unchanged since it was drawn)."""
        with self._lock:
            self._passed.append(path)

    def finished(self) -> None:
        with self._lock:
            self.running -= 1

    def take(self, limit: int | None = None) -> list[_Thumb]:
        """The thumbnails made, the first ``limit`` of them (the rest wait for the next take)."""
        with self._lock:
            ready, self._ready = self._ready[:limit], self._ready[len(self._ready[:limit]) :]
            return ready

    def waiting(self) -> int:
        with self._lock:
            return len(self._ready)

    def take_passed(self) -> list[Path]:
        with self._lock:
            passed, self._passed = self._passed, []
            return passed


class _ThumbJob(QRunnable):
    """Decodes thumbnails in the pool, one photo's or several; every job queued runs, and a
    cleared queue's jobs end at once. Given the ``known`` stamp of the thumbnail drawn, it
    decodes nothing for a file that still has it; ``if_wanted``: nothing for a photo no longer
    in or near the view (``_ThumbInbox.wanted``). Each request ends in the inbox, as a thumbnail
    (an unreadable file's has no pixels) or as passed over. It calls nothing of Qt's (see
    :class:`_ThumbInbox`), and collects no garbage (see :mod:`spdesk.gui.garbage`, installed
    with the queue)."""

    def __init__(
        self, requests: list[_ThumbRequest], inbox: _ThumbInbox, *, if_wanted: bool = False
    ) -> None:
        super().__init__()
        self._requests = requests
        self._inbox = inbox
        self._batch = inbox.batch
        self._if_wanted = if_wanted
        inbox.started()

    def run(self) -> None:
        inbox = self._inbox
        try:
            for path, known, serial in self._requests:
                if self._batch != inbox.batch:
                    break
                if self._if_wanted and path not in inbox.wanted:
                    inbox.passed(path)
                    continue
                stamp = _stamp(path)
                if stamp is not None and stamp == known:
                    inbox.passed(path)
                    continue
                thumb = _thumbnail(path, stamp, serial)
                thumb = _squared(thumb, inbox.edge) if thumb is not None else None
                inbox.deliver(thumb or _Thumb(path, b"", 0, 0, stamp, serial))
        finally:
            inbox.finished()


def _stamp(path: Path) -> Stamp | None:
    """``path``'s size and modification time, or None where it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _thumbnail(path: Path, stamp: Stamp | None = None, serial: int = 0) -> _Thumb | None:
    """``path``'s thumbnail, or None where it cannot be read (the row's status tells why once
    the job runs). A JPEG is decoded at a fraction of its size (Pillow's draft: 1/2 to 1/8);
    other photos by spdesk's own reader, as a job reads them."""
    try:
        image = _jpeg_draft(path) or read_thumbnail(path, THUMB * 2)
        image = image.convert("RGBA")
        image.thumbnail((THUMB * 2, THUMB * 2))
    except (ImageError, MemoryError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return _Thumb(path, image.tobytes(), image.width, image.height, stamp, serial)


def _jpeg_draft(path: Path) -> Image.Image | None:
    """An RGB JPEG decoded near thumbnail size and turned upright; None for anything else (a
    format Pillow does not open by itself, HEIC: spdesk's reader does)."""
    try:
        opened = Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    with opened as image:
        if image.format != "JPEG" or image.mode not in ("RGB", "L"):
            return None  # CMYK and others: spdesk's reader converts them properly
        image.draft("RGB", (THUMB * 2, THUMB * 2))
        image.load()
        return ImageOps.exif_transpose(image)


def _squared(thumb: _Thumb, edge: int) -> _Thumb | None:
    """``thumb`` fitted, centred, in a transparent ``edge``-pixel square (THUMB points at the
    screen's pixel ratio: at 2, one made at 48 pixels and stretched is blocky), by Pillow in the
    pool: on the GUI thread each of Qt's calls that drew it could wait for a busy job's thread
    to let go of the GIL."""
    try:
        image = Image.frombytes("RGBA", (thumb.width, thumb.height), thumb.rgba)
        scale = edge / max(thumb.width, thumb.height)
        size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        square = Image.new("RGBA", (edge, edge), (0, 0, 0, 0))
        square.paste(image, ((edge - size[0]) // 2, (edge - size[1]) // 2))
    except (MemoryError, ValueError):
        return None
    return replace(thumb, rgba=square.tobytes(), width=edge, height=edge)


def _pixmap(thumb: _Thumb, ratio: float) -> QPixmap:
    """The pixmap of a thumbnail squared in the pool at ``ratio``, in as few of Qt's calls as
    can be (each may wait for the GIL)."""
    image = QImage(
        thumb.rgba, thumb.width, thumb.height, 4 * thumb.width, QImage.Format.Format_RGBA8888
    )
    pixmap = QPixmap.fromImage(image)  # a copy of the pixels: the bytes may go
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


THUMB_COLLECT_MS = 50  # how often the GUI thread draws the thumbnails the pool has made
THUMB_COLLECT_MAX = 6  # thumbnails drawn at most each time: a long queue of them waits its turn
THUMB_SETTLE_MS = 100  # the view stands still this long before its thumbnails are decoded
THUMB_CHECK_MS = 500  # photos reached by a job within this are checked for edits together
THUMB_MARGIN = 10  # rows beyond each edge of the view whose thumbnails are decoded too
THUMB_CACHE = 300  # thumbnails kept, the last drawn (96x96 pixels each at a scale of 2: 11 MB)
THUMB_JOBS = 2  # pool jobs that decode the thumbnails the view asks for at once (a thread each)
FILLED_ROWS = 2000  # rows with cells (table items) at most: those near the view, and lately

# The photo column's width: 260 points where there is room, a third of the table in a narrow
# window, never under 150 (a thumbnail and a short name).
PHOTO_COLUMN_MAX, PHOTO_COLUMN_MIN, PHOTO_COLUMN_SHARE = 260, 150, 0.3


class _ProgressDelegate(QStyledItemDelegate):
    """Paints a thin rounded bar: no widget per row, so thousands of rows stay cheap."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        super().paint(painter, option, index)
        fraction = float(index.data(PROGRESS_ROLE) or 0.0)
        rect = QRectF(option.rect).adjusted(8, 0, -8, 0)  # type: ignore[attr-defined]
        bar = QRectF(rect.left(), rect.center().y() - 4, rect.width(), 8)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e8ebf0"))
        painter.drawRoundedRect(bar, 4, 4)
        if fraction > 0:
            painter.setBrush(QColor("#2f6fde"))
            painter.drawRoundedRect(QRectF(bar.left(), bar.top(), bar.width() * fraction, 8), 4, 4)
        painter.restore()


def status_text(row: QueueRow) -> str:
    """A row's status as its Status cell says it: "Failed: Cannot read it"."""
    return f"{row.status.value}: {row.reason}" if row.reason else row.status.value


class PhotoQueue(QTableWidget):
    """One row per photo; the window updates rows from job events by path.

    A row's cells (table items) are made when it comes near the view, and dropped once
    ``FILLED_ROWS`` others were made since it was last in view; until then it is a
    :class:`QueueRow` and its key. The cells stay Qt's own items, painted without Python: a
    model in Python was asked for each cell's data as it was painted, and each call waited for
    the job's thread to let go of the GIL (5,000 photos in the window: pauses of 1.5 s)."""

    retry_requested = Signal(object)  # Path
    remove_requested = Signal(object)  # Path: a photo gone from where it was added
    COLUMNS = ("Photo", "Status", "Progress", "")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setObjectName("PhotoQueue")
        self.setHorizontalHeaderLabels(list(self.COLUMNS))
        rows = self.verticalHeader()
        rows.setVisible(False)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # one height: no row measured
        rows.setDefaultSectionSize(THUMB + 12)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setShowGrid(False)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Tab leaves the queue for the next control (the arrows move between rows): moving
        # from cell to cell, it wrapped round and trapped the keyboard in the table.
        self.setTabKeyNavigation(False)
        # Rows are as tall as a thumbnail (three lines of text): a failure's reason wraps there
        # to be read whole, rather than cut at the cell's end.
        self.setWordWrap(True)
        header = self.horizontalHeader()
        header.setAccessibleName("Queue columns")  # a screen reader said a nameless header
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # The status column stretches: failure reasons are the longest text in the table.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Fixed)
        self.setColumnWidth(0, PHOTO_COLUMN_MAX)
        self._photo_width_by_hand = False  # the user dragged it: kept as they left it
        self._fitting_photo_column = False
        header.sectionResized.connect(self._on_section_resized)
        self.setColumnWidth(2, 120)
        self.setColumnWidth(3, 84)
        self.setItemDelegateForColumn(2, _ProgressDelegate(self))
        self._rows: dict[Path, QueueRow] = {}
        self._order: list[Path] = []
        self._index: dict[Path, int] = {}  # row number of each path
        self._fractions: dict[Path, float] = {}  # progress of the rows that have any
        self._filled: OrderedDict[Path, None] = OrderedDict()  # rows with cells, oldest first
        self._counts = dict.fromkeys(RowStatus, 0)  # rows by status, kept as they change
        # Raised at each change of the rows, a status or an output: what a window counts from
        # the rows is counted again only when this has moved, not on each update of its controls.
        self.changes = 0
        placeholder = QPixmap(THUMB, THUMB)
        placeholder.fill(QColor("#e5e7eb"))
        self._placeholder = QIcon(placeholder)
        self._colours = {status: QColor(colour) for status, colour in _STATUS_COLOURS.items()}
        self._retry_enabled = True  # off while a job runs (a retry starts one)
        garbage.install()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._thumbs = _ThumbInbox()
        # The thumbnails kept, the last shown last (None: the file could not be read); at most
        # THUMB_CACHE, the least recently shown dropped first (decoded again when in view).
        self._icons: OrderedDict[Path, QIcon | None] = OrderedDict()
        # The stamp and job of each thumbnail kept: a photo edited since (on disk) is drawn
        # again when it is added again or protected (it stayed as it was when queued).
        self._thumb_stamps: dict[Path, Stamp | None] = {}
        self._thumb_serials: dict[Path, int] = {}
        self._thumb_serial = 0
        self._decoding: set[Path] = set()  # rows near the view whose thumbnail a pool job has
        self._thumb_timer = QTimer(self)  # collects the pool's thumbnails, while it works
        self._thumb_timer.setInterval(THUMB_COLLECT_MS)
        self._thumb_timer.timeout.connect(self._collect_thumbnails)
        self._checks_due: dict[Path, None] = {}  # thumbnails to check, in the order asked
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(THUMB_CHECK_MS)
        self._check_timer.timeout.connect(self._check_due_thumbnails)
        # The thumbnails of the rows near the view are asked for once it has stood still for
        # THUMB_SETTLE_MS (scrolled, resized, rows added or removed); their cells are made at
        # once. A job's scrolling, 200 rows a second, had the pool decode rows seen for 5 ms.
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(THUMB_SETTLE_MS)
        self._view_timer.timeout.connect(self._decode_in_view)
        self.verticalScrollBar().valueChanged.connect(self._view_moved)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """The photo column gives way in a narrow window (half a screen), down to a readable
        width, so the status column shows the reasons (cut to "Failed: empty.jpg is em…")."""
        super().resizeEvent(event)
        self._view_moved()
        if self._photo_width_by_hand:
            return
        share = int(self.viewport().width() * PHOTO_COLUMN_SHARE)
        self._fitting_photo_column = True
        try:
            self.setColumnWidth(0, max(PHOTO_COLUMN_MIN, min(PHOTO_COLUMN_MAX, share)))
        finally:
            self._fitting_photo_column = False

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._view_moved()

    def _on_section_resized(self, index: int, _old: int, _new: int) -> None:
        if index == 0 and not self._fitting_photo_column:
            self._photo_width_by_hand = True

    def text(self, row: int, column: int) -> str:
        """What the cell at ``row``, ``column`` says (made now if it was not)."""
        self._fill(range(row, row + 1))
        item = self.item(row, column)
        return item.text() if item is not None else ""

    def icon(self, row: int) -> QIcon:
        """The thumbnail ``row`` shows (the grey placeholder until it is decoded)."""
        self._fill(range(row, row + 1))
        item = self.item(row, 0)
        return item.icon() if item is not None else QIcon()

    # --- contents -------------------------------------------------------------------------------
    def add_photos(self, paths: list[Path], *, resolved: bool = False) -> int:
        """Append photos not already queued; returns how many were added. ``resolved``: the
        paths are resolved already (the scan's worker resolves the photos it lists: 25,000
        resolved here held the window for 0.8 s, and again each time the folder was added).

        The rows are added at once, empty: the cells of those near the view are made then,
        the others' as they come near it (25,000 rows of cells held the window 2 s).
        """
        new: list[Path] = []
        again: list[Path] = []
        rows = self._rows
        for path in paths:
            key = path if resolved else path.resolve()
            if key not in rows:
                rows[key] = QueueRow(key)
                new.append(key)
            else:  # added again: perhaps edited since, its thumbnail is checked
                again.append(key)
        if again:
            self._check_thumbnails(again)
        if not new:
            return 0
        first = len(self._order)
        self._order.extend(new)
        self._index.update(zip(new, range(first, first + len(new)), strict=True))
        self.setUpdatesEnabled(False)
        try:
            self.setRowCount(first + len(new))
            self._view_moved()
        finally:
            self.setUpdatesEnabled(True)
        self._counts[RowStatus.WAITING] += len(new)
        self.changes += 1
        return len(new)

    def _check_thumbnail_soon(self, key: Path) -> None:
        """Check ``key``'s thumbnail with the others asked for within ``THUMB_CHECK_MS``, in one
        pool job. A job a photo (a job's photos are checked as each is reached) woke a pool
        thread each time: at 200 photos a second the window stalled three times as often."""
        self._checks_due[key] = None
        if not self._check_timer.isActive():
            self._check_timer.start()

    def _check_due_thumbnails(self) -> None:
        self._check_timer.stop()
        keys = [key for key in self._checks_due if key in self._rows]
        self._checks_due.clear()
        if keys:
            self._check_thumbnails(keys)

    def _view_moved(self) -> None:
        """Make the cells of the rows near the view now (before it is painted), and ask for
        their thumbnails once it has settled (a pool job skips a row no longer near it)."""
        wanted = self.rows_in_view()
        self._fill(wanted)
        self._thumbs.wanted = frozenset(self._order[row] for row in wanted)
        self._view_timer.start()

    def rows_in_view(self, margin: int = THUMB_MARGIN) -> range:
        """The rows in view and ``margin`` either side: those whose thumbnails are made."""
        count = len(self._order)
        if not count:
            return range(0)
        first = max(0, self.rowAt(0))
        last = self.rowAt(self.viewport().height() - 1)
        if last < 0:  # the rows end before the view does
            last = count - 1
        return range(max(0, first - margin), min(count, last + margin + 1))

    def _decode_in_view(self) -> None:
        """Decode the thumbnails not kept of the rows in view and ``THUMB_MARGIN`` beside, in
        two pool jobs (one a thread), the rows in view first; a job skips a row scrolled far
        past meanwhile. Only once a row within ``THUMB_MARGIN // 3`` of the view lacks its
        thumbnail: a job's scrolling, a row a photo, asks for a batch every few photos, not a
        pool job each (which made the window stall three times as often: 45776e6)."""
        self._view_timer.stop()
        order, icons = self._order, self._icons
        near = self.rows_in_view(THUMB_MARGIN // 3)
        wanted = self.rows_in_view()
        self._fill(wanted)
        self._thumbs.wanted = frozenset(order[row] for row in wanted)
        for row in near:
            if order[row] in icons:
                icons.move_to_end(order[row])  # in view: the last to be dropped
        if all(order[row] in icons or order[row] in self._decoding for row in near):
            return
        centre = (near.start + near.stop) // 2
        rows = sorted(wanted, key=lambda row: abs(row - centre))  # the view's rows first
        todo = [order[row] for row in rows if order[row] not in icons]
        todo = [key for key in todo if key not in self._decoding]
        self._decoding.update(todo)
        self._thumbs.edge = round(THUMB * self.devicePixelRatioF())
        for thread in range(THUMB_JOBS):
            requests = [self._thumb_request(key) for key in todo[thread::THUMB_JOBS]]
            if requests:
                self._pool.start(_ThumbJob(requests, self._thumbs, if_wanted=True))
        self._thumb_timer.start()

    def _check_thumbnails(self, keys: list[Path]) -> None:
        """Check the thumbnails kept of ``keys`` against their files, in one pool job (one not
        kept is decoded from the file as it is then, once it comes into view)."""
        stamps = self._thumb_stamps
        icons = self._icons
        requests = [self._thumb_request(key, stamps.get(key)) for key in keys if key in icons]
        if requests:
            self._thumbs.edge = round(THUMB * self.devicePixelRatioF())
            self._pool.start(_ThumbJob(requests, self._thumbs))
            self._thumb_timer.start()

    def _thumb_request(self, key: Path, known: Stamp | None = None) -> _ThumbRequest:
        self._thumb_serial += 1
        return key, known, self._thumb_serial

    def clear_photos(self) -> None:
        self._thumbs.batch += 1
        self._rows.clear()
        self._order.clear()
        self._index.clear()
        self._fractions.clear()
        self._filled.clear()
        self._icons.clear()
        self._counts = dict.fromkeys(RowStatus, 0)
        self.changes += 1
        self._thumb_stamps.clear()
        self._thumb_serials.clear()
        self._decoding.clear()
        self._checks_due.clear()
        self.setRowCount(0)

    def remove_selected(self) -> None:
        """Remove the selected rows, each run of neighbours at once, the last run first.
        Row by row, with the rows still selected, took time growing with the square of the
        rows (4,000 rows: 10 s; 25,000: 8 minutes of a frozen window)."""
        self._remove_rows({index.row() for index in self.selectionModel().selectedRows()})

    def remove_paths(self, paths: list[Path]) -> None:
        """Remove the rows of ``paths`` (those queued)."""
        keys = (self._key(path) for path in paths)
        self._remove_rows({self._index[key] for key in keys if key in self._index})

    def _remove_rows(self, numbers: set[int]) -> None:
        rows = sorted(numbers)
        self.clearSelection()
        self.setUpdatesEnabled(False)
        try:
            for first, last in reversed(_runs(rows)):
                for key in self._order[first : last + 1]:
                    self._counts[self._rows.pop(key).status] -= 1
                    self._thumb_stamps.pop(key, None)
                    self._thumb_serials.pop(key, None)
                    self._icons.pop(key, None)
                    self._fractions.pop(key, None)
                    self._filled.pop(key, None)
                    self._decoding.discard(key)
                del self._order[first : last + 1]
                self.model().removeRows(first, last - first + 1)
            self._index = {path: i for i, path in enumerate(self._order)}
            self._view_moved()
        finally:
            self.setUpdatesEnabled(True)
        self.changes += 1

    def paths(self) -> list[Path]:
        return list(self._order)

    def rows(self) -> list[QueueRow]:
        return [self._rows[p] for p in self._order]

    def row_for(self, path: Path) -> QueueRow | None:
        return self._rows.get(self._key(path))

    def _key(self, path: Path) -> Path:
        """The queue's key of ``path``: itself when it is one (a job's events name the paths
        the queue gave it), else its resolved form. Resolving costs a system call per part of
        the path, and a job sends several events per photo."""
        return path if path in self._rows else path.resolve()

    def selected_path(self) -> Path | None:
        rows = self.selectionModel().selectedRows() if self.selectionModel() else []
        return self._order[rows[0].row()] if rows else None

    def wait_for_thumbnails(self, timeout_ms: int = 10_000) -> bool:
        """Decode the thumbnails of the rows in view and check those due now, wait for the
        pool's jobs, then draw what they made; True when all have ended."""
        self._decode_in_view()
        self._check_due_thumbnails()
        done = bool(self._pool.waitForDone(timeout_ms))
        self._collect_thumbnails()
        while self._thumbs.waiting():
            self._collect_thumbnails()
        return done

    def _collect_thumbnails(self) -> None:
        # Read first: a job that ends after the take below leaves its thumbnails for the next.
        running = self._thumbs.running
        passed = self._thumbs.take_passed()
        self._decoding.difference_update(passed)
        if not self._thumbs.wanted.isdisjoint(passed):  # scrolled back meanwhile: asked again
            self._view_moved()
        ratio = self.devicePixelRatioF()
        wanted = self._thumbs.wanted
        again = False
        for thumb in self._thumbs.take(THUMB_COLLECT_MAX):
            key = thumb.path
            self._decoding.discard(key)
            if key not in self._rows or thumb.serial < self._thumb_serials.get(key, -1):
                continue  # an older job's, done after a newer one's: the file as it was
            if key not in wanted:  # scrolled far past since: made again if it comes back
                self._drop_icon(key)
                continue
            if thumb.rgba and thumb.width != round(THUMB * ratio):
                # Squared for the screen the window was on when asked: made again for this one.
                self._drop_icon(key)
                again = True
                continue
            self._thumb_serials[key] = thumb.serial
            self._thumb_stamps[key] = thumb.stamp
            self._keep_icon(key, QIcon(_pixmap(thumb, ratio)) if thumb.rgba else None)
        if again:
            self._view_moved()
        if len(self._thumb_stamps) > 2 * THUMB_CACHE:  # those of thumbnails no longer kept
            icons = self._icons
            self._thumb_stamps = {k: v for k, v in self._thumb_stamps.items() if k in icons}
        if not running and not self._thumbs.waiting():
            self._thumb_timer.stop()
            if self._decoding:  # passed over while scrolled away: asked again if in view now
                self._decoding.clear()
                self._view_moved()

    def _keep_icon(self, key: Path, icon: QIcon | None) -> None:
        """Show ``key``'s thumbnail and keep it, dropping the least recently shown beyond
        THUMB_CACHE (their rows show the placeholder again, as their pixels are let go)."""
        self._icons[key] = icon
        self._icons.move_to_end(key)
        self._show_icon(key)
        while len(self._icons) > THUMB_CACHE:
            dropped, _ = self._icons.popitem(last=False)
            self._show_icon(dropped)

    def _drop_icon(self, key: Path) -> None:
        if self._icons.pop(key, False) is not False:
            self._thumb_stamps.pop(key, None)
            self._show_icon(key)

    def _show_icon(self, key: Path) -> None:
        if key in self._filled:
            item = self.item(self._index[key], 0)
            if item is not None:
                item.setIcon(self._icons.get(key) or self._placeholder)

    # --- status ---------------------------------------------------------------------------------
    def set_status(
        self,
        path: Path,
        status: RowStatus,
        reason: str = "",
        *,
        gone: bool = False,
        photo_fault: bool = False,
    ) -> None:
        """Show a row's status and why; ``gone``: it failed as it is not where it was added
        any more (a Retry could never succeed: Remove is offered instead); ``photo_fault``: it
        failed for its own content (no Retry: the reason says what to do instead)."""
        key = self._key(path)
        row = self._rows.get(key)
        if row is None:
            return
        if status is RowStatus.PROTECTING and row.status is not RowStatus.PROTECTING:
            self._check_thumbnail_soon(key)  # the job reads the photo now, as it is on disk
        self._counts[row.status] -= 1
        self._counts[status] += 1
        self.changes += 1
        row.status, row.reason = status, reason
        row.gone = gone and status is RowStatus.FAILED
        row.photo_fault = photo_fault and status is RowStatus.FAILED
        if status is RowStatus.UNREADABLE:
            row.problem = reason
        elif status is RowStatus.DONE:
            row.problem = ""  # the file was mended
        index = self._index[key]
        if status is RowStatus.PROTECTING and not self.underMouse():  # in view as it is worked
            self.scrollTo(self.model().index(index, 0))  # on, unless the user points at the list
        if status is RowStatus.DONE:
            self._fractions[key] = 1.0
        elif status in (RowStatus.WAITING, RowStatus.CANCELLED):
            self._fractions.pop(key, None)
        if key in self._filled:
            self._show_status(index, row)
            self._show_fraction(index, key)
        retried = status is RowStatus.FAILED and not row.photo_fault
        self._set_retry(index, key, retried, row.gone)

    def set_progress(self, path: Path, fraction: float) -> None:
        key = self._key(path)
        index = self._index.get(key)
        if index is not None:
            self._fractions[key] = max(0.0, min(1.0, fraction))
            if key in self._filled:
                self._show_fraction(index, key)

    def set_output(self, path: Path, output: Path) -> None:
        row = self._rows.get(self._key(path))
        if row is not None:
            row.output = output
            self.changes += 1

    def count_by_status(self) -> dict[RowStatus, int]:
        """How many rows have each status (kept as they change: no walk of the rows)."""
        return dict(self._counts)

    # --- internals ------------------------------------------------------------------------------
    def _fill(self, rows: range) -> None:
        """Make the cells of ``rows`` that have none; drop those of the rows made longest ago
        beyond FILLED_ROWS (out of view: a row near it was made or shown since)."""
        order, filled = self._order, self._filled
        for index in rows:
            key = order[index]
            if key in filled:
                filled.move_to_end(key)
                continue
            name = QTableWidgetItem(shown(key.name))  # Qt drops bytes that are not UTF-8
            name.setToolTip(shown(key))
            name.setIcon(self._icons.get(key) or self._placeholder)
            self.setItem(index, 0, name)
            self.setItem(index, 1, QTableWidgetItem())
            self.setItem(index, 2, QTableWidgetItem())
            self._show_status(index, self._rows[key])
            self._show_fraction(index, key)
            filled[key] = None
        while len(filled) > FILLED_ROWS:
            key, _ = filled.popitem(last=False)
            index = self._index[key]
            for column in range(3):
                self.takeItem(index, column)

    def _show_status(self, index: int, row: QueueRow) -> None:
        item = self.item(index, 1)
        if item is None:
            return
        text = status_text(row)
        item.setText(text)
        item.setForeground(self._colours[row.status])
        item.setToolTip(f"<p>{html.escape(text)}</p>")  # rich text: the tooltip wraps too
        item.setData(Qt.ItemDataRole.AccessibleTextRole, text)  # whole, where the row cuts it

    def _show_fraction(self, index: int, key: Path) -> None:
        item = self.item(index, 2)
        if item is not None:
            fraction = self._fractions.get(key, 0.0)
            item.setData(PROGRESS_ROLE, fraction)
            # The bar is painted: a screen reader read the cell as empty.
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{fraction:.0%}")

    def retry_button(self, path: Path) -> QPushButton | None:
        """The row's Retry button, or Remove for a photo gone from where it was added (one
        exists only while the row has failed)."""
        holder = self.cellWidget(self._index[path.resolve()], 3)
        return holder.findChild(QPushButton) if holder is not None else None

    def _set_retry(self, index: int, path: Path, failed: bool, gone: bool = False) -> None:
        current = self.cellWidget(index, 3)
        if not failed:
            if current is not None:
                self.removeCellWidget(index, 3)
            return
        if current is not None and current.property("gone") == gone:
            return
        retry = QPushButton("Remove" if gone else "Retry")
        retry.setObjectName("RemoveButton" if gone else "RetryButton")
        retry.setAccessibleName(f"{retry.text()} {shown(path.name)}")  # which failed photo
        self._enable_retry(retry)
        wanted = self.remove_requested if gone else self.retry_requested
        retry.clicked.connect(lambda _=False, p=path, s=wanted: s.emit(p))
        holder = QWidget()
        holder.setProperty("gone", gone)
        lay = QHBoxLayout(holder)
        lay.setContentsMargins(6, 0, 6, 0)
        lay.addWidget(retry)
        self.setCellWidget(index, 3, holder)
        if gone:  # "Remove" is wider than "Retry", which the column is made for: never cut
            self.setColumnWidth(3, max(self.columnWidth(3), holder.sizeHint().width()))

    def set_retry_enabled(self, enabled: bool) -> None:
        """Let the rows' Retry buttons be clicked, or not (while a job runs)."""
        if enabled == self._retry_enabled:
            return
        self._retry_enabled = enabled
        for name in ("RetryButton", "RemoveButton"):
            for button in self.viewport().findChildren(QPushButton, name):
                self._enable_retry(button)

    def _enable_retry(self, button: QPushButton) -> None:
        button.setEnabled(self._retry_enabled)
        if button.objectName() == "RemoveButton":
            button.setToolTip(
                "Take this photo out of the queue (it is not where it was added any more)"
                if self._retry_enabled
                else "A job is running: remove it when it ends"
            )
            return
        button.setToolTip(
            "Protect this photo again (and any other not done)"
            if self._retry_enabled
            else "A job is running: retry when it ends"
        )


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as runs of neighbours: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for row in rows:
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
