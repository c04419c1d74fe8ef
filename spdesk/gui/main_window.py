"""The main window: drop photos, pick how to protect them, run the job in a worker, see results."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.device import DEVICE_CHOICES, DeviceInfo
from spdesk.core.events import Event
from spdesk.core.files import shown
from spdesk.core.jobs.events import (
    UNCHANGED_WHY,
    FileDone,
    FileProgress,
    FileSkipped,
    JobStarted,
    SkipReason,
    count_of,
    left_out_phrase,
    location_text,
)
from spdesk.core.keys import KEY_BACKUP_SHORT, key_made_here
from spdesk.core.perturbation import perturbation_gain, perturbation_label
from spdesk.gui import protect_bridge
from spdesk.gui.announce import announce
from spdesk.gui.desktop import open_in_file_manager
from spdesk.gui.images import photo_file_filter
from spdesk.gui.missing_model import ask_for_model
from spdesk.gui.modal import run_modal
from spdesk.gui.settings import (
    ProtectOptions,
    last_folder,
    load_geometry,
    load_options,
    measured_step_times,
    read_only_notice,
    remember_folder,
    remember_step_time,
    save_geometry,
    save_options,
)
from spdesk.gui.style import fit_to_screen, muted_label, thin_progress_bar
from spdesk.gui.text import LeftOut, format_duration, gain_text, left_out_text
from spdesk.gui.widgets.column import FocusInView, ScrollingColumn
from spdesk.gui.widgets.drop_zone import PHOTO_KINDS, DropZone, local_paths
from spdesk.gui.widgets.elided import ElidedLabel
from spdesk.gui.widgets.options import FINETUNE_ENCODERS, OptionsPanel
from spdesk.gui.widgets.queue import PhotoQueue, QueueRow, RowStatus
from spdesk.gui.workers import TaskRunner

if TYPE_CHECKING:
    from spdesk.gui.train_dialog import TrainDialog

log = logging.getLogger(__name__)

SETTINGS_LEAST_WIDTH = 240
"""The settings column's least width in points; it is wider wherever the window has room."""


class MainWindow(QMainWindow):
    """The app's single window. Takes the settings store; all work goes through ``TaskRunner``s."""

    def __init__(self, settings: QSettings) -> None:
        super().__init__()
        self.settings = settings
        self.setWindowTitle("spdesk — protect your photos from AI edits")
        self.setMinimumSize(900, 480)
        self.setAcceptDrops(True)  # what no child takes (the list, the settings) is queued
        self.job_runner = TaskRunner(self)
        self.device_runner = TaskRunner(self)
        self.scan_runner = TaskRunner(self)
        self._pending_paths: list[Path] = []
        # The folders the user added (dropped or chosen), as the queue keys its photos: the
        # default output folder goes beside the top-most, never inside one.
        self._added_folders: list[Path] = []
        self._output_in_input_key: tuple[object, ...] = ()  # what the note below was said for
        self._output_in_input_said = ""  # "Save to" is (inside) a folder added: why refused
        self._typed_real: tuple[str, Path] = ("", Path())  # "Save to" as typed, resolved
        # The output folder and suffix the last listing left out with; what it left out for
        # them is listed again once they change (_recheck_left_out).
        self._listed_for: tuple[Path | None, str] | None = None
        self._rechecking: list[Path] = []
        # Counted from the whole queue, kept until it changes: each update of the controls
        # (each key typed in "Save to") walked every row for them.
        self._default_guess: Path | None = None  # the default output folder for the queue now
        self._copies_counted: tuple[int, Path | None, int] = (-1, None, 0)  # changes, root, n
        self._empty_hint = ""  # why the queue is still empty after a folder was added
        self._selected_said = ""  # the selected photo's status, as the status bar says it
        self._error_said = ""  # the last error, as the status bar says it (for 10 s)
        # What the added paths held (or were) that is not queued: unreadable folders, files
        # that are not photos; and as the queue's title and tooltip say it (kept, not redone
        # on each update of the controls).
        self._left_out: dict[Path, LeftOut] = {}
        self._left_out_title = ""
        self._left_out_tip = ""
        self._job_paths: list[Path] = []
        self._job_set: set[Path] = set()  # _job_paths, to look up
        self._job_finished: set[Path] = set()  # of those: done, skipped or failed
        self._job_started = 0.0
        self._output_root: Path | None = None
        self._job_warnings: list[str] = []
        self._ending = ""  # "Finished.", "Cancelled." or "Stopped.": how the last job ended
        self._job_failure = ""  # why the last job stopped as a whole, if it did
        self._job_cancelled = False
        self._already_done = 0  # photos of this job the output folder had already
        self._location_removed = 0  # photos whose protected copy left their GPS position out
        self._closing = False  # asked to close while a job ran: closes when it has stopped
        self._key_made_told = False  # the first run's notice of a new protection key
        self._key_made_line = ""  # that notice, in the last run's summary
        # The last run's rows by status as it ended, of them how many were gone, its seconds.
        self._run_counts: tuple[dict[RowStatus, int], int, float] = ({}, 0, 0.0)
        self._unchanged = 0  # copies the protection could not change (too small or flat)
        self._finetune_clock: protect_bridge.FinetuneClock | None = None  # fine-tuning jobs
        self._job_device = "auto"  # the device choice the running or last job was given
        self._detecting = "auto"  # the device choice being (or last) described
        self._device_kinds: dict[str, str] = {}  # device choice -> kind, once described
        self._train_dialog: TrainDialog | None = None  # while the Train dialog is open
        self._done_with: ProtectOptions | None = None  # what the finished rows were protected with
        self._settings_redo: list[Path] = []  # finished rows made pending by a settings change
        # The last run's summary hidden by a settings change: the bar's value it had (None:
        # none hidden), both shown again when the settings are changed back.
        self._summary_held: int | None = None
        # The default output folder of the queue's first job, kept until the queue is emptied:
        # photos added later would move the common folder, and the next job would protect the
        # finished photos again into a new folder (its manifest does not know them).
        self._default_root: Path | None = None
        # Likewise the folder the output mirrors below: the first job's common folder. A folder
        # added later would move it up, and put the first folder's copies in a new layout.
        self._mirror_base: Path | None = None
        self.options_panel = OptionsPanel(load_options(settings))
        self.options_panel.set_measured_step_times(measured_step_times(settings))
        self._last_encoder = self.options_panel.encoder()
        self._build_central()
        self._build_actions()
        self._build_status_bar()
        self._connect()
        geometry = load_geometry(settings, "main")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            fit_to_screen(self, 1440, 900)  # a big screen gets a roomier queue
        self._update_controls()
        if notice := read_only_notice(settings):  # a newer spdesk's settings stay as they are
            self.statusBar().showMessage(notice)

    # --- layout ---------------------------------------------------------------------------------
    def _build_central(self) -> None:
        self.drop_zone = DropZone()
        self.queue = PhotoQueue()
        self.queue.setAccessibleName("Photos to protect")
        # Cut with "…" in a narrow window: "Queue · 3 photos · 2 other files left out" made
        # the window 900 points wide at least (1280x800 at 200% has 640 across).
        self.queue_title = ElidedLabel("Queue", least="Queue · 12")
        self.queue_title.setObjectName("SectionTitle")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("Flat")
        queue_header = QHBoxLayout()
        self.preview_button = QPushButton("Preview AI edit…")
        self.preview_button.setObjectName("Flat")
        self.preview_button.setToolTip("See what an AI edit does to the selected photo (Ctrl+P)")
        queue_header.addWidget(self.queue_title, 1)
        queue_header.addWidget(self.preview_button)
        queue_header.addWidget(self.clear_button)

        self.summary = QFrame()
        self.summary.setObjectName("Summary")
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.open_output_button = QPushButton("Open output folder")
        summary_lay = QHBoxLayout(self.summary)
        summary_lay.setContentsMargins(12, 8, 8, 8)
        summary_lay.addWidget(self.summary_label, 1)
        summary_lay.addWidget(self.open_output_button)
        self.summary.hide()

        self.rerun_bar = QFrame()
        self.rerun_bar.setObjectName("Summary")
        self.rerun_label = QLabel()
        self.rerun_label.setWordWrap(True)
        self.rerun_collision = QComboBox()
        self.rerun_collision.setToolTip("What to do with the copies protected before")
        # A combo box is announced by its value: its name on Windows and macOS, its label
        # (the buddy) on Linux.
        self.rerun_collision.setAccessibleName("If a copy exists")
        self.rerun_label.setBuddy(self.rerun_collision)
        rerun_lay = QHBoxLayout(self.rerun_bar)
        rerun_lay.setContentsMargins(12, 8, 8, 8)
        rerun_lay.addWidget(self.rerun_label, 1)
        rerun_lay.addWidget(self.rerun_collision)
        self.rerun_bar.hide()

        self.overall_bar = thin_progress_bar()
        self.overall_bar.setAccessibleName("Progress of the job")
        self.progress_label = muted_label("Add photos to begin.")
        self.progress_label.setWordWrap(True)
        self.start_button = QPushButton("Protect photos")
        self.start_button.setObjectName("Primary")
        self.cancel_button = QPushButton("Cancel")
        progress_col = QVBoxLayout()
        progress_col.setSpacing(4)
        progress_col.addWidget(self.overall_bar)
        progress_col.addWidget(self.progress_label)
        action_row = QHBoxLayout()
        action_row.addLayout(progress_col, 1)
        action_row.addSpacing(12)
        action_row.addWidget(self.cancel_button)
        action_row.addWidget(self.start_button)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(16, 16, 8, 12)
        left_lay.setSpacing(10)
        left_lay.addWidget(self.drop_zone)
        left_lay.addLayout(queue_header)
        left_lay.addWidget(self.queue, 1)
        left_lay.addWidget(self.summary)
        left_lay.addWidget(self.rerun_bar)
        left_lay.addLayout(action_row)
        # It scrolls where the window is shorter than its content needs (1280x800 at 200% has
        # about 330 points down): squeezed, the drop area, the queue's title and the summary
        # were drawn over one another.
        left_scroll = ScrollingColumn(left)
        left_scroll.setObjectName("QueueScroll")
        self.queue_column = left_scroll

        scroll = QScrollArea()
        scroll.setObjectName("OptionsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no ring: focus went there unseen
        holder = QWidget()
        holder.setObjectName("OptionsHolder")
        holder_lay = QVBoxLayout(holder)
        holder_lay.setContentsMargins(8, 16, 16, 12)
        holder_lay.addWidget(self.options_panel)
        scroll.setWidget(holder)
        FocusInView(scroll)
        # Its least width gives way to a narrow window (1280x800 at 200% has 640 points
        # across): a setting wider than the column then scrolls sideways, not off the window.
        scroll.setMinimumWidth(SETTINGS_LEAST_WIDTH)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left_scroll)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([800, 360])
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)

    def _build_actions(self) -> None:
        def action(
            text: str,
            shortcut: QKeySequence | QKeySequence.StandardKey | str | None,
            slot: Callable[[], Any],
        ) -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            return act

        self.add_files_action = action(
            "&Add photos…", QKeySequence.StandardKey.Open, self.add_files
        )
        self.add_folder_action = action("Add &folder…", "Ctrl+Shift+O", self.add_folder)
        self.start_action = action("&Protect photos", "Ctrl+Return", lambda: self.start_job())
        # The keypad's Enter is another key: "Ctrl+Enter", as the hint says, did nothing there.
        self.start_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.cancel_action = action("&Cancel", "Esc", self.ask_to_cancel)
        self.remove_action = action(
            "&Remove selected", QKeySequence.StandardKey.Delete, self.remove_selected
        )
        # The list was a tooltip on the queue's title only: out of a keyboard's reach.
        self.left_out_action = action("Files &left out…", None, self.show_left_out)
        self.open_output_action = action("&Open output folder", "Ctrl+Shift+E", self.open_output)
        self.train_action = action("&Train personal pattern…", "Ctrl+T", self.open_train_dialog)
        self.models_action = action("&Models…", "Ctrl+M", lambda: self.open_model_manager())
        self.preview_action = action("Pre&view AI edit…", "Ctrl+P", self.open_preview)
        self.about_action = action("&About and diagnostics", "F1", self.open_about)
        quit_action = action("&Quit", QKeySequence.StandardKey.Quit, self.close)
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu_actions = (self.add_files_action, self.add_folder_action, self.remove_action)
        for act in (*file_menu_actions, self.left_out_action):
            file_menu.addAction(act)
        file_menu.addSeparator()
        file_menu.addAction(self.open_output_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        protect_menu = menus.addMenu("&Protect")
        protect_menu.addAction(self.start_action)
        protect_menu.addAction(self.cancel_action)
        protect_menu.addAction(self.preview_action)
        tools = menus.addMenu("&Tools")
        tools.addAction(self.train_action)
        tools.addAction(self.models_action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel("Device: detecting…")
        self.device_label.setObjectName("Muted")
        self.device_combo = QComboBox()
        for choice in DEVICE_CHOICES:
            self.device_combo.addItem("Automatic" if choice == "auto" else choice.upper(), choice)
        self.device_combo.setToolTip("Which processor computes (fine-tuning, training, preview)")
        self.device_combo.setAccessibleName("Device")  # as the re-run bar's choice
        self.device_label.setBuddy(self.device_combo)
        saved = load_options(self.settings).device
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(saved)))
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.device_combo)

    def _connect(self) -> None:
        self.drop_zone.paths_dropped.connect(self.add_paths)
        self.drop_zone.add_files_clicked.connect(self.add_files)
        self.drop_zone.add_folder_clicked.connect(self.add_folder)
        self.clear_button.clicked.connect(self.clear_queue)
        self.preview_button.clicked.connect(self.open_preview)
        self.start_button.clicked.connect(lambda: self.start_job())
        self.cancel_button.clicked.connect(self.cancel_job)
        self.open_output_button.clicked.connect(self.open_output)
        self.queue.retry_requested.connect(self.retry)
        self.queue.remove_requested.connect(self.remove_photo)
        self.queue.itemSelectionChanged.connect(self._say_selected_status)
        self.queue.cellActivated.connect(lambda _row, _column: self.show_selected_status())
        self.options_panel.changed.connect(self._save_options)
        self.options_panel.changed.connect(self._redo_if_settings_changed)
        self.options_panel.changed.connect(self._recheck_left_out)
        self.options_panel.changed.connect(self._say_output_in_input)
        self._mirror_collision_choice()
        self.options_panel.import_requested.connect(self.import_perturbation)
        self.options_panel.choose_output_requested.connect(self.choose_output)
        self.options_panel.choose_encoder_requested.connect(self.choose_encoder)
        self.options_panel.choose_generator_requested.connect(self.choose_generator)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        self.job_runner.core_event.connect(self._on_job_event)
        self.job_runner.failed.connect(self._on_job_failed)
        self.job_runner.cancelled.connect(self._on_job_cancelled)
        self.job_runner.succeeded.connect(self._on_job_succeeded)
        self.job_runner.finished.connect(self._on_job_thread_finished)
        self.device_runner.succeeded.connect(self._on_device_info)
        self.device_runner.finished.connect(self._describe_if_changed)
        self.scan_runner.succeeded.connect(self._on_scanned)
        self.scan_runner.failed.connect(self.show_error)
        self.scan_runner.finished.connect(self._scan_next)
        self.scan_runner.finished.connect(self._update_controls)
        self.device_runner.failed.connect(lambda text: self.device_label.setText("Device: " + text))

    # --- adding photos --------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Photos dropped anywhere in the window are queued: once the queue held photos, the
        drop area shrank and the list a user drops onto refused them."""
        if local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        if paths := local_paths(event):
            event.acceptProposedAction()
            self.add_paths(paths)

    def add_paths(self, paths: list[Path]) -> None:
        """Queue the photos found in ``paths`` (files or folders).

        Folders are walked in a worker (photos are recognised by content, which takes a while on
        a big folder or a network drive); paths dropped meanwhile wait their turn.
        """
        if not paths:
            return
        first = paths[0]
        remember_folder(self.settings, "input", str(first.parent if first.is_file() else first))
        self._added_folders += [path.resolve() for path in paths if path.is_dir()]
        self._default_guess = None
        self._pending_paths.extend(paths)
        self._scan_next()

    def _scan_next(self) -> None:
        if self.scan_runner.running or not self._pending_paths:
            return
        paths, self._pending_paths = self._pending_paths, []
        self.statusBar().showMessage("Looking for photos…")
        # The suffix and folder a job would be given now: the queue leaves out what it would.
        self._listed_for = self._output_key()
        root, _suffix = self._listed_for
        options = self.current_options()
        shown_from = sorted(
            {f for f in self._added_folders if any(p.is_relative_to(f) for p in self._rechecking)},
            key=lambda f: len(f.parts),
        )  # the top-most first: what is left out is named from the folder the user added
        self.scan_runner.start(protect_bridge.scan_task(paths, options, root, shown_from))
        self._update_controls()

    def _on_scanned(self, scan: object) -> None:
        if not isinstance(scan, protect_bridge.Scan):
            return
        added = self.queue.add_photos(scan.photos, resolved=True)
        self._default_guess = None
        for path, problem in scan.problems.items():
            self.queue.set_status(path, RowStatus.UNREADABLE, problem)
        unreadable = scan.unreadable
        self._forget_unreadable_in(scan.inputs)  # read now: said again if it still cannot be
        # Left out beside the photos queued: a drop that added none has no say, but what could
        # not be read is said however many photos it added (its own may be missing), and what
        # was left out before and is listed again (_recheck_left_out) is said as it is now.
        rechecked = [p for p in scan.inputs if p in self._rechecking]
        self._rechecking = [p for p in self._rechecking if p not in rechecked]
        kept = {
            path: entry
            for path, entry in scan.left_out.items()
            if added or entry.unreadable or any(path.is_relative_to(p) for p in rechecked)
        }
        self._left_out.update(kept)
        self._left_out_changed()
        self._empty_hint = ""
        if rechecked and len(rechecked) == len(scan.inputs) and not added:
            self.statusBar().clearMessage()  # "Looking for photos…" is over; nothing new
        elif added:
            message = f"Added {added} photo{'s' if added != 1 else ''}."
            if scan.problems:
                message += f" {len(scan.problems)} cannot be read (see the red rows)."
            said = [_cannot_read_text(list(unreadable.values()))] if unreadable else []
            others = [e for e in scan.left_out.values() if not e.unreadable]
            if others:
                folders = sum(e.folder for e in others)
                said.append(f"{left_out_phrase(len(others) - folders, folders)} left out")
            if said:
                them = "it" if len(scan.left_out) == 1 else "them"
                message += f" {'. '.join(said)} (File › Files left out… lists {them})."
            self.statusBar().showMessage(message, 10_000 if unreadable else 6000)
        elif self.queue.paths():
            text = _nothing_added_text(scan) or "No new photos found there."
            self.statusBar().showMessage(text, 10_000)
        else:  # said where the eye is, not only in the status bar for a few seconds
            self._empty_hint = (
                _nothing_added_text(scan)
                or f"No photos found there: spdesk reads {PHOTO_KINDS} files."
            )
            self.statusBar().showMessage(self._empty_hint, 5000)
        announce(self, self.statusBar().currentMessage())
        self._update_controls()
        self._recheck_left_out()  # "Save to" changed while this listing ran

    def _output_key(self) -> tuple[Path | None, str]:
        """The output folder and suffix a job would be given now (no folder: it cannot be
        used as typed)."""
        root = None if self._output_root_problem() else self.output_root()
        return root, self.options_panel.suffix_edit.text()

    def _recheck_left_out(self) -> None:
        """List again, once the "Save to" folder or suffix has changed, what was left out for
        them: a folder left out as the job's output folder, a photo named with its suffix or
        recorded by its manifest, may be photos to queue now (or be left out for another
        reason, said as it is now)."""
        if self._listed_for is None or self._output_key() == self._listed_for:
            return
        stale = [
            path
            for path, entry in self._left_out.items()
            if protect_bridge.left_out_for_the_output(entry.reason)
        ]
        if not stale:
            return
        for path in stale:
            del self._left_out[path]
        self._left_out_changed()
        self._rechecking += stale
        self._pending_paths.extend(stale)
        self._scan_next()

    def _forget_unreadable_in(self, inputs: tuple[Path, ...]) -> None:
        """Forget what could not be read in or as ``inputs``, scanned again (and said again if
        it still cannot be read): once the user has mended it, it is queued, not unreadable."""
        gone = [
            path
            for path, entry in self._left_out.items()
            if entry.unreadable and any(path.is_relative_to(p) for p in inputs)
        ]
        for path in gone:
            del self._left_out[path]

    def _left_out_changed(self) -> None:
        """The queue title's count of what is left out, and its tooltip, for the entries now."""
        unreadable = [e for e in self._left_out.values() if e.unreadable]
        others = [e for e in self._left_out.values() if not e.unreadable]
        parts = [f"{_unreadable_count(unreadable)} cannot be read"] if unreadable else []
        if others and unreadable:  # short: the title is one line (the tooltip says which)
            parts.append(f"{len(others)} more left out")
        elif others:
            folders = sum(e.folder for e in others)
            parts.append(f"{left_out_phrase(len(others) - folders, folders)} left out")
        self._left_out_title = "".join(f" · {part}" for part in parts)
        self._left_out_tip = left_out_text(self._left_out)

    def show_left_out(self) -> None:
        """What the added paths held that is not queued, and why: all of it, in a box that
        scrolls, with a button that copies the list and one that forgets it."""
        from spdesk.gui.left_out_dialog import LeftOutDialog

        if (
            self._left_out
            and run_modal(LeftOutDialog(self._left_out, self)) == LeftOutDialog.FORGET
        ):
            self._forget_left_out()

    def _forget_left_out(self) -> None:
        """Say no more what the added paths left out (the queue stays as it is)."""
        self._left_out.clear()
        self._left_out_changed()
        if self.summary.isVisibleTo(self) and not self.job_runner.running:
            self._summarise(focus=False)  # it said in red what could not be read
        self._update_controls()

    def add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Add photos",
            last_folder(self.settings, "input"),
            photo_file_filter(),
        )
        self.add_paths([Path(f) for f in files])

    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Add a folder", last_folder(self.settings, "input")
        )
        if folder:
            self.add_paths([Path(folder)])

    def clear_queue(self) -> None:
        if not self.job_runner.running:
            self.queue.clear_photos()
            self._forget_the_queue()

    def _forget_the_queue(self) -> None:
        """An empty queue starts afresh: no last job's summary, bar or left-out files."""
        self._left_out.clear()
        self._left_out_changed()
        self._empty_hint = ""
        self.summary.hide()
        self.rerun_bar.hide()
        self.overall_bar.setValue(0)
        self._done_with = None
        self._settings_redo = []
        self._summary_held = None
        self._default_root = self._mirror_base = None
        self._added_folders = []
        self._default_guess = None
        self._update_controls()

    def remove_selected(self) -> None:
        """Take the selected photos out of the queue; not while a job runs, which would protect
        them anyway (it was given the list at its start), nor while photos are being listed
        (emptied, the queue forgot the folders added, the scan's among them)."""
        if self._removal_refused():
            return
        before = self._folders_with_photos()
        self.queue.remove_selected()
        self._after_removal(sorted(before - self._folders_with_photos()))

    def remove_photo(self, path: Path) -> None:
        """Take one photo out of the queue (its row's Remove: it is not where it was added)."""
        if self._removal_refused():
            return
        before = self._folders_with_photos()
        self.queue.remove_paths([path])
        self._after_removal(sorted(before - self._folders_with_photos()))

    def _removal_refused(self) -> bool:
        """Whether photos cannot be removed now (said in the status bar)."""
        if self.job_runner.running:
            self.statusBar().showMessage("A job is running: remove photos when it ends.", 5000)
        elif self.scan_runner.running:
            self.statusBar().showMessage(
                "Photos are being listed: remove photos when that ends.", 5000
            )
        return self.job_runner.running or self.scan_runner.running

    def _after_removal(self, emptied: list[Path]) -> None:
        """``emptied``: the folders added whose last photos were removed. What could not be
        read in them is forgotten (each later run said it, in red), and the last run's summary
        is said again (it asked to select Remove for a row removed)."""
        self._default_guess = None
        if not self.queue.rowCount():  # every row removed: as Clear leaves it
            self._forget_the_queue()
            return
        if emptied:
            self._added_folders = [f for f in self._added_folders if f not in emptied]
            for path in [p for p in self._left_out if any(map(_real(p).is_relative_to, emptied))]:
                del self._left_out[path]
            self._left_out_changed()
        if self.summary.isVisibleTo(self) and not self.job_runner.running:
            self._summarise(focus=False)
        self._update_controls()

    def _folders_with_photos(self) -> set[Path]:
        """The folders added that hold a queued photo: each photo's folder, once, and the
        folders above it (a few thousand folders, not rows times folders added)."""
        added = set(self._added_folders)
        found: set[Path] = set()
        for folder in {path.parent for path in self.queue.paths()}:
            found.update(place for place in (folder, *folder.parents) if place in added)
        return found

    # --- options --------------------------------------------------------------------------------
    def current_options(self) -> ProtectOptions:
        return self.options_panel.options(device=str(self.device_combo.currentData()))

    def _save_options(self) -> None:
        save_options(self.settings, self.current_options())

    def import_perturbation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import a pattern",
            last_folder(self.settings, "perturbation"),
            "spdesk pattern (*.safetensors)",
        )
        if path:
            remember_folder(self.settings, "perturbation", str(Path(path).parent))
            self.options_panel.refresh_perturbations(select=path)

    def choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Output folder", self.options_panel.output_edit.text()
        )
        if folder:
            self.options_panel.output_edit.setText(folder)

    def _mirror_collision_choice(self) -> None:
        """The re-run bar shows the same collision choice as the settings column, kept in step."""
        source = self.options_panel.collision_combo
        for index in range(source.count()):
            self.rerun_collision.addItem(source.itemText(index), source.itemData(index))
        self.rerun_collision.setCurrentIndex(source.currentIndex())
        self.rerun_collision.currentIndexChanged.connect(source.setCurrentIndex)
        source.currentIndexChanged.connect(self.rerun_collision.setCurrentIndex)

    def _redo_if_settings_changed(self) -> None:
        """Photos protected with other settings are to be protected again: make them pending,
        and show what happens to their earlier copies at that moment. Settings changed back
        make them finished again. Only another "Save to" folder or suffix is not a change of
        protection: the copies are made again where they are now to go, and no earlier copy is
        in the way there, so the re-run bar stays hidden."""
        if self.job_runner.running or self._done_with is None:
            return
        options = _output_settings(self.current_options())
        if options == self._done_with:
            self._restore_settings_redo()
            return
        if not self._settings_redo:
            self._settings_redo = [r.path for r in self.queue.rows() if r.status is RowStatus.DONE]
        place_only = _protection_settings(options) == _protection_settings(self._done_with)
        reason = (
            (
                "new output folder"
                if options.output_dir != self._done_with.output_dir
                else "new suffix"
            )
            if place_only
            else "settings changed"
        )
        with_copies = 0
        for path in self._settings_redo:
            row = self.queue.row_for(path)
            if row is not None and row.status in (RowStatus.DONE, RowStatus.WAITING):
                if row.status is not RowStatus.WAITING or row.reason != reason:  # else as it is
                    self.queue.set_status(path, RowStatus.WAITING, reason)
                with_copies += row.output is not None
        if with_copies and not place_only:
            noun = "photo has" if with_copies == 1 else "photos have"
            self.rerun_label.setText(
                f"Settings changed: {with_copies} {noun} a protected copy made with the old "
                "settings. If a copy exists:"
            )
            if not self.rerun_bar.isVisibleTo(self):  # far from the setting the focus is on
                announce(self, self.rerun_label.text())
            self.rerun_bar.show()
        else:
            self.rerun_bar.hide()
        if self._summary_held is None and self.summary.isVisibleTo(self):
            self._summary_held = self.overall_bar.value()
        self.summary.hide()
        self.overall_bar.setValue(0)  # full would say the redone photos are finished
        self._update_controls()

    def _restore_settings_redo(self) -> None:
        """The settings are those the finished copies were made with again: nothing to redo,
        and the last run's summary (with its Open output folder) is shown again."""
        for path in self._settings_redo:
            row = self.queue.row_for(path)
            if row is not None and row.status is RowStatus.WAITING:
                self.queue.set_status(path, RowStatus.DONE)
        if self._settings_redo:
            self._settings_redo = []
            self.rerun_bar.hide()
            self._update_controls()
        if self._summary_held is not None:
            self.overall_bar.setValue(self._summary_held)  # a cancelled run's, not 0
            self._summary_held = None
            self._summarise(focus=False)

    def _on_device_changed(self) -> None:
        self._save_options()
        self.detect_device()

    # --- device ---------------------------------------------------------------------------------
    def detect_device(self) -> None:
        """Describe the chosen device in the status bar (imports torch, so in a worker)."""
        if self.device_runner.running:
            return
        self.device_label.setText("Device: detecting…")
        self._detecting = str(self.device_combo.currentData())
        self.device_runner.start(protect_bridge.device_task(self._detecting))

    def _on_device_info(self, info: object) -> None:
        if not isinstance(info, DeviceInfo):
            return
        self._device_kinds[self._detecting] = info.kind
        if self._detecting == str(self.device_combo.currentData()):  # else described next
            self.device_label.setText(f"Device: {info.describe()}")
            self.options_panel.set_device_kind(info.kind)  # estimates for the device jobs run on
            if self._train_dialog is not None:  # opened before the device was described
                self._train_dialog.set_device_kind(info.kind)
            if info.kind == "cuda":
                self._recommend_for(info.kind)

    def _recommend_for(self, kind: str) -> None:
        """Until the user picks a mode, pick the strongest this computer does quickly: photo
        fine-tuning on a CUDA GPU with an encoder installed (the command line's rule too)."""
        from spdesk.core.jobs.settings import recommended_protection
        from spdesk.core.models.store import installed_encoders

        advice = recommended_protection(kind, installed_encoders())
        if advice.encoder is None or advice.steps is None:
            return
        if self.options_panel.recommend("finetune", advice.encoder, advice.steps):
            reason = advice.reason[0].upper() + advice.reason[1:]
            self.statusBar().showMessage(f"{reason}. Pick another mode any time.", 15000)

    def _describe_if_changed(self) -> None:
        """A device chosen while another was being described is described next."""
        if self._detecting != str(self.device_combo.currentData()):
            self.detect_device()

    # --- the job --------------------------------------------------------------------------------
    def output_root(self) -> Path:
        chosen = self.options_panel.output_edit.text().strip()
        if not chosen:
            return self._default_output_root()
        # "~/protected" is the home folder's, as in a shell (Path leaves "~" a folder name);
        # "~nobody/x" of an unknown user stays as typed, and is refused as not a whole path.
        try:
            return Path(chosen).expanduser()
        except RuntimeError:
            return Path(chosen)

    def _output_root_problem(self) -> str:
        """Why the typed "Save to" folder cannot be used; "" when it can. A relative one would
        land wherever the app was started (a launcher's folder, unseen), so it is refused."""
        chosen = self.options_panel.output_edit.text().strip()
        if not chosen or self.output_root().is_absolute():
            return ""
        if chosen.startswith("~"):
            user = chosen[1:].split("/")[0].split("\\")[0]
            return f"“{chosen}”: there is no user “{user}” on this computer."
        return (
            f"“{chosen}” is not a full path: type one such as ~/{chosen} or "
            f"{Path.home() / chosen}, or choose the folder with the … button."
        )

    def _output_in_input(self, queued: list[Path]) -> str:
        """Why the "Save to" folder cannot take the copies: it is a folder added whose photos
        are queued, or inside one (the next listing of that folder would find the copies among
        its photos; ``spdesk protect`` refuses it too). "" when it can take them."""
        root = self.output_root()
        folder = self._added_folder_holding(_real(root), queued)
        if folder is None:
            return ""
        place = "the folder" if _real(root) == folder else "inside the folder"
        return (
            f"The output folder {shown(root)} is {place} {shown(folder)}, whose photos "
            "are being protected.\n\nChoose a “Save to” folder outside it: the "
            "protected copies would otherwise be found among its photos."
        )

    def _added_folder_holding(self, where: Path, queued: list[Path]) -> Path | None:
        """The folder added, whose photos are queued, that is ``where`` (resolved) or holds it;
        None."""
        added = set(self._added_folders)
        for folder in protect_bridge.input_roots(queued, self._added_folders):
            if folder in added and where.is_relative_to(folder):
                return folder
        return None

    def _say_output_in_input(self) -> None:
        """Say under "Save to", once typing pauses or the photos queued change, why Protect
        would refuse the typed folder (it was said only then): not a whole path, or (inside) a
        folder added."""
        typed = self.options_panel.output_edit.text().strip()
        # Worked out again only when what it depends on changes: the typed folder is resolved
        # on this thread (a slow disk), and this runs whenever the controls are updated.
        key = (typed, tuple(self._added_folders), self.queue.rowCount())
        if key != self._output_in_input_key:
            self._output_in_input_key, self._output_in_input_said = key, ""
            if typed and (not_whole := self._output_root_problem()):
                self._output_in_input_said = not_whole
            elif typed and self._added_folders:
                root = self.output_root()
                if self._typed_real[0] != typed:  # resolved once for each folder typed
                    self._typed_real = (typed, _real(root))
                where = self._typed_real[1]
                folder = self._added_folder_holding(where, self.queue.paths())
                if folder is not None:
                    place = "the folder" if where == folder else "inside the folder"
                    self._output_in_input_said = (
                        f"“{root.name or root}” is {place} “{folder.name or folder}”, whose "
                        "photos are being protected: choose a folder outside it."
                    )
        self.options_panel.set_output_problem(self._output_in_input_said)

    def _default_output_root(self) -> Path:
        if self._default_root is not None:
            return self._default_root
        if self._default_guess is None:
            paths = self.queue.paths()
            self._default_guess = protect_bridge.default_output_root(paths, self._added_folders)
        return self._default_guess

    def start_job(self) -> bool:
        """Protect every queued photo not yet done; True when the job started.

        The job always gets the whole queue, so outputs mirror the same folder structure on every
        run; photos finished earlier are recognised by the output folder's manifest and skipped.
        """
        if self.job_runner.running or self.scan_runner.running:
            return False
        self.options_panel.flush_typing()  # a folder or suffix typed just now is this job's
        queued = self.queue.paths()
        todo = [r.path for r in self.queue.rows() if r.status is not RowStatus.DONE]
        if not queued:
            self.statusBar().showMessage("Nothing to protect: add photos first.", 5000)
            return False
        # Every row done still runs the job: it skips what is unchanged at once, and protects
        # again a photo edited since its copy was made (see _adopt).
        options = self.current_options()
        if problem := self._protection_problem(options):
            self.show_error(problem)
            return False
        if options.mode == "finetune" and not self._encoder_ready(options.finetune_encoder):
            return False
        if problem := self._output_root_problem() or self._output_in_input(queued):
            self.show_error(problem)
            return False
        self._output_root = self.output_root()
        if not self.options_panel.output_edit.text().strip():
            self._default_root = self._output_root
        if self._mirror_base is None:
            self._mirror_base = protect_bridge.common_folder(queued)
        self._job_paths = todo
        self._job_set, self._job_finished = set(todo), set()
        self._job_started = time.monotonic()
        self._job_device = options.device
        self._job_warnings = []
        self._job_failure = ""
        self._job_cancelled = False
        self._key_made_line = ""
        self._already_done = self._location_removed = self._unchanged = 0
        self._finetune_clock = (
            protect_bridge.FinetuneClock(options.finetune_steps, len(todo))
            if options.mode == "finetune"
            else None
        )
        for row in self.queue.rows():  # a known problem stays shown until the run says more
            if row.problem and row.status is not RowStatus.DONE:
                self.queue.set_status(row.path, RowStatus.UNREADABLE, row.problem)
            elif row.status is not RowStatus.DONE:
                self.queue.set_status(row.path, RowStatus.WAITING)
        self._say_selected_status()  # a failure's reason said of a photo now waiting: gone
        if self._error_said and self.statusBar().currentMessage() == self._error_said:
            self.statusBar().clearMessage()  # a stopped job's error, not this job's
        self.summary.hide()
        self.rerun_bar.hide()
        self._done_with = _output_settings(options)
        self._settings_redo = []
        self._summary_held = None
        self.overall_bar.setValue(0)
        self.progress_label.setText(
            f"Starting: {len(todo)} photo(s)…" if todo else "Looking for photos changed since…"
        )
        self.job_runner.start(
            protect_bridge.protect_task(queued, self._output_root, options, self._mirror_base)
        )
        self._update_controls()
        self.queue.setFocus()  # Protect is disabled now: focus went on, unseen
        return True

    def _encoder_ready(self, spec: str) -> bool:
        """Check the fine-tuning encoder before any photo is touched; offer the ways to get one."""
        problem = protect_bridge.encoder_problem(spec)
        if not problem:
            return True
        choice = self.ask_missing_model(problem)
        if choice == "models":
            self.open_model_manager("taesd" if spec == "taesd" else "train")
        elif choice == "file":
            self.choose_encoder()
        return False

    def ask_missing_model(self, text: str) -> str:
        """ "models", "file" or "" (cancel): what the user wants to do about a missing model."""
        return ask_for_model(self, text)

    def choose_encoder(self) -> None:
        """Fine-tune against an encoder the user has: a diffusers VAE folder or a weights file."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Encoder weights",
            last_folder(self.settings, "encoder"),
            "Encoder weights (*.safetensors *.pth *.pt);;All files (*)",
        )
        panel = self.options_panel
        if path:
            remember_folder(self.settings, "encoder", str(Path(path).parent))
            panel.set_encoder(path)
        else:  # back to what was chosen before the "file…" entry
            panel.set_encoder(self._last_encoder)
        self._last_encoder = panel.encoder()

    def _protection_problem(self, options: ProtectOptions) -> str:
        """Why the chosen pattern or generator cannot protect ("" when it can): a file gone
        missing or damaged, said before a job or a preview (the preview blamed the photo:
        "photo.jpg cannot be read")."""
        panel = self.options_panel
        if protect_bridge.uses_pattern(options) and panel.perturbation() is None:
            return (
                panel.perturbation_error()
                or "Choose a pattern first (import one or train your own)."
            )
        if protect_bridge.draws_its_own(options):
            return panel.generator_error()
        return ""

    def choose_generator(self) -> None:
        """Draw each photo's perturbation with a generator the user trained (``spdesk
        train-generator``); a file that is not one is refused with why, and nothing changes."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Protection generator",
            last_folder(self.settings, "generator"),
            "spdesk protection generator (*.safetensors);;All files (*)",
        )
        if path:
            remember_folder(self.settings, "generator", str(Path(path).parent))
        if problem := self.options_panel.choose_generator(path):
            self.show_error(problem)

    def retry(self, _path: Path) -> None:
        """Run the job again: the failed photo is retried, finished ones are skipped."""
        if self.job_runner.running or self.scan_runner.running:
            self.statusBar().showMessage("A job is running: retry when it ends.", 5000)
            return
        self.start_job()

    def _selected_with_reason(self) -> QueueRow | None:
        """The selected photo's row, when its status has a reason (a failure's, a skip's)."""
        path = self.queue.selected_path()
        row = self.queue.row_for(path) if path is not None else None
        return row if row is not None and row.reason else None

    def _say_selected_status(self) -> None:
        """The selected photo's status in the status bar: a failure's reason and advice are cut
        off in the row, and its tooltip needs a mouse (arrow keys select rows; Enter shows it
        all, :meth:`show_selected_status`)."""
        if row := self._selected_with_reason():  # the reason names the photo
            self._selected_said = f"{row.status.value}: {row.reason}"
            self.statusBar().showMessage(self._selected_said)
        elif self._selected_said and self.statusBar().currentMessage() == self._selected_said:
            self.statusBar().clearMessage()  # not true of what is selected now (or removed)

    def show_selected_status(self) -> None:
        """Enter (or a double click) on a photo with a reason: all of it, in a box of its own
        (the status bar cuts a long one off at the window's width). A failed photo's box offers
        what its row's button does, Retry (or Remove, for a photo moved or deleted since it was
        added): that button is last in the Tab order, after the status bar, so the keyboard's
        way to it is the row (arrow keys, then Enter)."""
        row = self._selected_with_reason()
        if row is None:
            return
        if row.status is not RowStatus.FAILED:
            QMessageBox.information(self, row.status.value, row.reason)
            return
        if row.photo_fault:  # no Retry: the reason says why, and what to do instead
            QMessageBox.warning(self, row.status.value, row.reason)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, row.status.value, row.reason, parent=self)
        action = box.addButton(
            "&Remove" if row.gone else "&Retry", QMessageBox.ButtonRole.AcceptRole
        )
        busy = self.job_runner.running or self.scan_runner.running
        action.setEnabled(not busy)  # as the row's button: a retry starts a job
        action.setToolTip(
            f"A job is running: {'remove' if row.gone else 'retry'} it when it ends"
            if busy
            else "Take it out of the queue"
            if row.gone
            else "Protect this photo again (and any other not done)"
        )
        close = box.addButton(QMessageBox.StandardButton.Close)
        box.setDefaultButton(close)  # Enter twice must not start a job by chance
        box.setEscapeButton(close)
        run_modal(box)
        if box.clickedButton() is action:
            (self.remove_photo if row.gone else self.retry)(row.path)

    def ask_to_cancel(self) -> None:
        """Esc (and the menu's Cancel): a key pressed by chance stopped minutes of fine-tuning
        at once; it asks first, as closing the window does. The Cancel button does not ask."""
        if self.job_runner.running and self.ask(
            "Stop protecting?",
            "Stop protecting these photos? Those done so far are kept, and “Protect photos” "
            "does the rest later.",
        ):
            self.cancel_job()

    def cancel_job(self) -> None:
        if self.job_runner.running:
            self.job_runner.cancel()
            self.progress_label.setText("Cancelling…")

    def _on_job_event(self, event: Event) -> None:
        # The job is given the whole queue (see start_job): photos finished before this job
        # come back as "already done" and must not count as this job's.
        source = getattr(event, "source", None)
        ours = not isinstance(source, Path) or source in self._job_set or self._in_job(source)
        if not ours and isinstance(event, FileProgress | FileDone) and isinstance(source, Path):
            ours = self._adopt(source)  # done before, protected again: its photo changed
        if isinstance(event, JobStarted):
            self._job_warnings = list(event.warnings)
        elif isinstance(event, FileSkipped) and event.kind is SkipReason.ALREADY_DONE and ours:
            self._already_done += 1
        elif isinstance(event, FileDone) and ours:
            self._location_removed += event.location_removed
            self._unchanged += event.unchanged
        if self._finetune_clock is not None and ours:
            self._finetune_clock.update(event)
        update = protect_bridge.interpret(event)
        if update is None:
            return
        if update.path is not None:
            if update.status is not None:
                if update.gone:  # not where it was added: Remove, not a Retry that cannot work
                    self.queue.set_status(update.path, update.status, update.reason, gone=True)
                elif update.photo_fault:  # its content: no Retry, which would fail alike
                    self.queue.set_status(
                        update.path, update.status, update.reason, photo_fault=True
                    )
                else:
                    self.queue.set_status(update.path, update.status, update.reason)
                self._count_finished(update.path, update.status)
            if update.fraction is not None:
                self.queue.set_progress(update.path, update.fraction)
            if update.output is not None:
                self.queue.set_output(update.path, update.output)
        self._update_overall()

    def _adopt(self, path: Path) -> bool:
        """Count a photo finished before as this job's: the job works on it again (the photo
        changed since its copy was made), so its new copy is this run's work."""
        row = self.queue.row_for(path)
        if row is None:
            return False
        self._job_paths.append(row.path)
        self._job_set.add(row.path)
        return True

    def _in_job(self, path: Path) -> bool:
        """Whether ``path`` (as an event names it) is one of the running job's own photos."""
        row = self.queue.row_for(path)
        return row is not None and row.path in self._job_set

    def _count_finished(self, path: Path, status: RowStatus) -> None:
        """Keep the count of the job's finished photos as events come: counting the rows again
        for each event took the window's thread 33 s of a 39 s job of 300 photos (quadratic)."""
        row = self.queue.row_for(path)
        if row is None or row.path not in self._job_set:  # done before: not this job's
            return
        if status in (RowStatus.DONE, RowStatus.SKIPPED, RowStatus.FAILED):
            self._job_finished.add(row.path)
        else:
            self._job_finished.discard(row.path)

    def _update_overall(self) -> None:
        total = len(self._job_paths)
        if not total:
            return
        finished = float(len(self._job_finished))
        self.overall_bar.setValue(round(1000 * finished / total))
        elapsed = time.monotonic() - self._job_started
        eta = ""
        if 0 < finished < total:
            eta = f" · about {format_duration(elapsed / finished * (total - finished))} left"
        clock = self._finetune_clock
        left = clock.left() if clock is not None else None
        if clock is not None and left is not None:  # live from the steps run, not a table
            rate = f"{clock.seconds_per_step or 0:.1f} s per step here"
            eta = f" · {rate} · about {format_duration(left)} left"
        self.progress_label.setText(f"{finished:.0f} of {total} photos{eta}")

    def _on_job_failed(self, text: str) -> None:
        """The job as a whole could not go on (its settings, the key, the output folder): the
        photos it had not finished wait again, not "failed" with a Retry that fails the same
        way until what the message names is fixed. Those moved or deleted since they were
        added (all of them, when the job found nothing to protect) offer Remove."""
        self._mark_unfinished(RowStatus.WAITING)
        for path in self._job_paths:
            row = self.queue.row_for(path)
            if row is not None and row.status is RowStatus.WAITING and not path.exists():
                self.queue.set_status(
                    path, RowStatus.FAILED, protect_bridge.gone_text(path), gone=True
                )
        self._job_failure = text.splitlines()[0] if text else "an unexpected error"
        self.show_error(text)

    def _mark_unfinished(self, status: RowStatus) -> None:
        """The job's photos it did not finish (waiting, or under way) get ``status``."""
        for path in self._job_paths:
            row = self.queue.row_for(path)
            if row is not None and row.status in (RowStatus.WAITING, RowStatus.PROTECTING):
                self.queue.set_status(path, status)

    def _on_job_cancelled(self) -> None:
        self._job_cancelled = True
        self._mark_unfinished(RowStatus.CANCELLED)

    def _on_job_succeeded(self, report: object) -> None:
        """Rows were updated event by event; the summary is built when the thread ends. A job
        that stopped itself (a full disk) returns its report: the photos it did not reach wait
        again, and the summary says why it stopped (it read "Finished.", rows "Protecting")."""
        stopped = getattr(report, "stopped", None)
        if stopped:
            self._mark_unfinished(RowStatus.WAITING)
            self._job_failure = str(stopped)

    def _on_job_thread_finished(self) -> None:
        self._remember_step_time()
        counts = {status: 0 for status in RowStatus}
        gone = 0  # of the failed: not where they were added any more
        for path in self._job_paths:
            row = self.queue.row_for(path)
            if row is not None:
                counts[row.status] += 1
                gone += row.gone
        self._run_counts = (counts, gone, time.monotonic() - self._job_started)
        self._summarise()

    def _summarise(self, *, focus: bool = True) -> None:
        """Say how the last run went, from its rows' statuses as it ended; said again after a
        removal, what it asks of the user (Retry, Remove) only while rows still need it."""
        counts, gone, seconds = self._run_counts
        if not (self._job_paths or self._job_failure or self._job_cancelled):
            self._summarise_nothing_changed(seconds, focus=focus)  # all done before, unchanged
            return
        retry, remove = self._actions_left()
        parts = [f"{counts[RowStatus.DONE] - self._already_done - self._unchanged} protected"]
        if self._unchanged:
            parts.append(f"{self._unchanged} unchanged ({UNCHANGED_WHY})")
        if self._already_done:
            parts.append(f"{self._already_done} already protected with these settings")
        if counts[RowStatus.SKIPPED]:
            parts.append(f"{counts[RowStatus.SKIPPED]} skipped")
        if counts[RowStatus.FAILED] > gone:
            parts.append(f"{counts[RowStatus.FAILED] - gone} failed{retry}")
        if gone:  # a Retry could never succeed
            parts.append(f"{gone} moved or deleted since added{remove}")
        if counts[RowStatus.UNREADABLE]:  # known unreadable when added; the run left it so
            parts.append(f"{counts[RowStatus.UNREADABLE]} cannot be read")
        if counts[RowStatus.CANCELLED]:
            parts.append(f"{counts[RowStatus.CANCELLED]} not done (cancelled)")
        text = ", ".join(parts) + f" in {format_duration(seconds)}."
        unreadable = [e for e in self._left_out.values() if e.unreadable]
        if unreadable:  # the job was given the queue: what could not be listed is not in it
            text += (
                f"\n{_unreadable_count(unreadable)} could not be read when added: "
                f"{_their(unreadable)} photos are not protected (File › Files left out…)."
            )
        if self._job_failure:  # the summary must not read as a normal end
            text = f"The job stopped: {self._job_failure}\n{text}"
        if self._location_removed:
            keep = "More options › Keep the location keeps it"
            text += f"\n{location_text(self._location_removed, keep)}"
        for warning in self._job_warnings:  # settings that weaken the protection
            text += f"\nNote: {warning}"
        # The queue's copies in the folder, this run's and the earlier runs' (a Retry that
        # failed again saved nothing, but the folder holds the rest of the queue).
        in_folder = self._copies_in_output()
        root = shown(self._output_root) if self._output_root is not None else ""
        if root and counts[RowStatus.DONE] > self._already_done:  # done now, not before
            text += f"\nSaved to {root}"
        elif root and in_folder:
            noun = "copy" if in_folder == 1 else f"{in_folder} copies"
            text += f"\nNothing new was saved. This queue's earlier {noun}: {root}"
        elif root:
            text += "\nNothing was saved."  # a cancelled or stopped run wrote no copy
        # Last, after where the copies are; told on a run that protected something (one that
        # stopped at once is read for why it stopped).
        made = key_made_here() if counts[RowStatus.DONE] else None
        if made and not self._key_made_told:
            self._key_made_told = True  # once: the first run of an install
            # Short here: five lines of it left the queue half a row at the window's least
            # height; the whole advice is in About and diagnostics.
            self._key_made_line = (
                f"\nMade this install's protection key: {shown(made)}\n{KEY_BACKUP_SHORT}"
            )
        text += self._key_made_line
        ended = not (counts[RowStatus.CANCELLED] or self._job_failure or self._job_cancelled)
        failed = bool(counts[RowStatus.FAILED] or counts[RowStatus.UNREADABLE] or unreadable)
        has_copies = bool(counts[RowStatus.DONE] or in_folder)
        self._show_summary(text, has_copies, ended, failed, focus=focus)

    def _bring_the_ending_into_view(self) -> None:
        """Scroll the queue's column, where it scrolls, to "Protect photos" and the summary
        above it: at 1024x600 a first run's summary pushed them below the column's fold."""
        self.queue_column.ensureWidgetVisible(self.start_button)

    def _actions_left(self) -> tuple[str, str]:
        """What the summary asks of the user: " (select Retry)" while a failed photo of the
        run is queued, " (select Remove)" while one moved or deleted is ("" once removed)."""
        retry = remove = faults = False
        for path in self._job_paths:
            row = self.queue.row_for(path)
            if row is not None and row.status is RowStatus.FAILED and row.photo_fault:
                faults = True  # no Retry: its row says what to do instead
            elif row is not None and row.status is RowStatus.FAILED:
                remove, retry = remove or row.gone, retry or not row.gone
        asked = " (select Retry)" if retry else " (select to see why)" if faults else ""
        return asked, " (select Remove)" * remove

    def _show_summary(
        self, text: str, copies: bool, ended: bool, failed: bool = False, *, focus: bool = True
    ) -> None:
        """Show the job's summary, the Open button where there are ``copies``, and its ending
        (in a success's green only when every photo went through)."""
        self.summary_label.setText(text)
        self.open_output_button.setVisible(copies)
        troubled = bool(self._job_failure) or not ended or failed
        self.summary.setProperty("stopped", troubled)
        self.summary.style().unpolish(self.summary)
        self.summary.style().polish(self.summary)
        self.summary.show()
        if focus:  # a run's end (not a removal's or a setting's): once laid out
            QTimer.singleShot(0, self, self._bring_the_ending_into_view)
        self.overall_bar.setValue(1000 if ended else self.overall_bar.value())
        self._ending = "Stopped." if self._job_failure else "Finished." if ended else "Cancelled."
        self._update_controls()  # says the ending, and the photos added meanwhile
        if focus:
            announce(self, f"{self._ending} {text}")
        # The next step where a keyboard user is: open the copies, or protect again.
        for button in (self.open_output_button, self.start_button) if focus else ():
            if button.isVisibleTo(self) and button.isEnabled():
                button.setFocus()
                break

    def _summarise_nothing_changed(self, seconds: float, *, focus: bool = True) -> None:
        """The end of a run over a queue whose photos were all protected before: none changed
        since its copy was made, so nothing was written."""
        copies = self._copies_in_output()
        text = (
            "No photo changed since its copy was made: nothing new was saved "
            f"({format_duration(seconds)})."
        )
        if copies and self._output_root is not None:
            noun = "copy" if copies == 1 else f"{copies} copies"
            text += f"\nThis queue's {noun}: {shown(self._output_root)}"
        self._show_summary(text, bool(copies), ended=True, focus=focus)

    def _copies_in_output(self) -> int:
        """How many of the queue's finished photos have their protected copy in the output
        folder (any run's, not only the last one's)."""
        root = self._output_root
        if root is None:
            return 0
        changes, counted_root, count = self._copies_counted
        if (changes, counted_root) != (self.queue.changes, root):
            count = sum(
                1
                for row in self.queue.rows()
                if row.status is RowStatus.DONE
                and row.output is not None
                and root in row.output.parents
            )
            self._copies_counted = (self.queue.changes, root, count)
        return count

    def _remember_step_time(self) -> None:
        """Keep the fine-tuning time measured here: the mode's estimate uses it next time."""
        clock = self._finetune_clock
        rate = clock.seconds_per_step if clock is not None else None
        options = self.current_options()
        # The kind detected for the device choice the job ran with; unknown: not remembered.
        kind = self._device_kinds.get(self._job_device)
        if rate is not None and kind and options.finetune_encoder in FINETUNE_ENCODERS:
            remember_step_time(self.settings, kind, options.finetune_encoder, rate)
            self.options_panel.set_measured_step_times(measured_step_times(self.settings))

    def open_output(self) -> None:
        root = self._output_root or (self.output_root() if self.queue.paths() else None)
        if root is None or not root.is_dir():
            self.statusBar().showMessage("No output folder yet: protect some photos first.", 8000)
        elif problem := open_in_file_manager(root):
            self.show_error(problem)

    def _update_controls(self) -> None:
        running = self.job_runner.running
        busy = running or self.scan_runner.running  # no job while photos are being listed
        count = self.queue.rowCount()
        has_photos = bool(count)
        self.start_button.setEnabled(has_photos and not busy)
        self.start_action.setEnabled(has_photos and not busy)
        self.cancel_button.setEnabled(running)
        self.cancel_action.setEnabled(running)
        self.clear_button.setEnabled(has_photos and not busy)
        self.remove_action.setEnabled(has_photos and not busy)
        self.preview_button.setEnabled(has_photos)
        self.preview_action.setEnabled(has_photos)  # Ctrl+P opened it on an empty queue
        self.options_panel.setEnabled(not running)
        self.queue.set_retry_enabled(not busy)  # a retry starts a job: not while one runs
        self.drop_zone.set_compact(has_photos)
        self.options_panel.show_default_output(
            self._default_output_root() if has_photos else None,
            # "earlier copies" only where there are some (a cancelled first run saved none)
            used=self._default_root is not None and self._copies_in_output() > 0,
        )
        self._say_output_in_input()
        title = f"Queue · {count_of(count, 'photo')}" if count else "Queue"
        if count:  # nothing in the folder goes unmentioned
            title += self._left_out_title
        self.queue_title.setText(title)
        self.queue_title.setToolTip(self._left_out_tip if count else "")
        # Also with no photo queued: a folder that could not be read is listed there.
        self.left_out_action.setEnabled(bool(self._left_out))
        if self.scan_runner.running:
            self.progress_label.setText("Looking for photos…")
        elif not running and not has_photos:
            self.progress_label.setText(self._empty_hint or "Add photos to begin.")
        elif not running and self.summary.isHidden():
            self.progress_label.setText("Ready. Press “Protect photos” (Ctrl+Enter).")
        elif not running:  # the last job's summary is shown
            self.progress_label.setText(self._ending_text())

    def _ending_text(self) -> str:
        """How the last job ended, and the photos added since (during it or after) that wait."""
        waiting = self.queue.count_by_status()[RowStatus.WAITING]
        if not waiting:
            return self._ending
        waits = f"{self._ending} {count_of(waiting, 'photo')} waiting"
        if self._job_failure:  # pressing again fails alike until what stopped it is fixed
            return f"{waits}: once what stopped the job (above) is fixed, press “Protect photos”."
        return f"{waits}: press “Protect photos”."

    # --- dialogs --------------------------------------------------------------------------------
    def open_train_dialog(self) -> None:
        from spdesk.gui.train_dialog import TrainDialog

        choice = str(self.device_combo.currentData())
        dialog = TrainDialog(
            self.settings, device=choice, parent=self, device_kind=self._device_kinds.get(choice)
        )
        dialog.saved.connect(self._on_perturbation_saved)
        dialog.open_models_requested.connect(self.open_model_manager)
        self._train_dialog = dialog  # told the device's kind if it is described meanwhile
        try:
            run_modal(dialog)
        finally:
            self._train_dialog = None

    def _on_perturbation_saved(self, path: Path) -> None:
        """List a newly trained perturbation; select it only if it beats random noise."""
        gain = perturbation_gain(path)
        if gain is not None and gain < 1.0:
            self.options_panel.refresh_perturbations()
            self.statusBar().showMessage(
                f"“{perturbation_label(path)}” is in the list but not selected: it measured "
                f"{gain_text(gain)} the effect of random noise (weaker). Train it longer.",
                15_000,
            )
        else:
            self.options_panel.refresh_perturbations(select=str(path))
            if self.options_panel.mode() == "photo":  # which uses no pattern: it went unused
                self.options_panel.set_mode("universal")
                self.statusBar().showMessage(
                    f"“{perturbation_label(path)}” is selected, in the Universal mode that lays "
                    "it over every photo (Photo-specific mode makes each photo a pattern of its "
                    "own and does not use it).",
                    15_000,
                )

    def open_model_manager(self, feature: str | None = None) -> None:
        from spdesk.gui.model_manager import ModelManagerDialog

        run_modal(ModelManagerDialog(self, feature=feature))
        self.options_panel.refresh_model_note()  # a model installed or removed meanwhile

    def open_preview(self) -> None:
        from spdesk.gui.preview_panel import PreviewDialog

        if problem := self._protection_problem(self.current_options()):
            self.show_error(problem)
            return
        queued = self.queue.paths()
        photo = self.queue.selected_path() or (queued[0] if queued else None)
        dialog = PreviewDialog(photo, self.current_options(), parent=self)
        dialog.open_models_requested.connect(lambda: self._models_for_preview(dialog))
        try:
            run_modal(dialog)
        finally:
            # However it was closed: its workers are stopped, or let go after a second when an
            # edit step is still running (the next preview waits for that step to end).
            dialog.stop_workers()

    def _models_for_preview(self, dialog: Any) -> None:
        self.open_model_manager(dialog.model_feature())  # the chosen edit's: img2img or inpaint
        dialog.recheck_model()  # downloaded or imported meanwhile: the edit can run

    def open_about(self) -> None:
        from spdesk.gui.about import AboutDialog

        run_modal(AboutDialog(self, device=str(self.device_combo.currentData())))

    # --- messages and closing -------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """A readable message (tracebacks are only in the log file)."""
        self._error_said = text.splitlines()[0] if text else ""
        self.statusBar().showMessage(self._error_said, 10_000)
        QMessageBox.warning(self, "spdesk", text)

    def ask(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.job_runner.running:
            # The window stays alive and drawn until the job has stopped after its step (a
            # fine-tuning step takes seconds to minutes), then closes itself: waiting here froze
            # it, the question box still on screen, and a wait that timed out crashed at exit.
            if not self._closing and not self.ask(
                "Stop protecting?", "Photos are still being protected. Stop and quit?"
            ):
                event.ignore()
                return
            if not self._closing:
                self._closing = True
                self.cancel_job()
                self.progress_label.setText("Stopping after the current step, then closing…")
                self.job_runner.finished.connect(self.close, Qt.ConnectionType.QueuedConnection)
            event.ignore()
            return
        self.device_runner.stop()
        self.scan_runner.stop()
        self.queue.wait_for_thumbnails()
        save_geometry(self.settings, "main", self.saveGeometry())
        self._save_options()
        self.settings.sync()
        event.accept()


def _real(path: Path) -> Path:
    """``path`` with its links resolved, as the folders added are (itself where it cannot be)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _unreadable_count(entries: list[LeftOut]) -> str:
    """``1 folder``, ``2 folders and 1 item``: what could not be read (or found)."""
    folders = sum(e.folder for e in entries)
    parts = [count_of(folders, "folder")] if folders else []
    if len(entries) > folders:  # named inputs that cannot be read, or are not there
        parts.append(count_of(len(entries) - folders, "item"))
    return " and ".join(parts)


def _their(entries: list[LeftOut]) -> str:
    return "its" if len(entries) == 1 else "their"


def _cannot_read_text(entries: list[LeftOut]) -> str:
    """The status bar's words, after an add, for what could not be read."""
    return f"{_unreadable_count(entries)} cannot be read: {_their(entries)} photos are not queued"


def _nothing_added_text(scan: protect_bridge.Scan) -> str:
    """Why an add queued nothing, where "No photos found there" would be wrong: what it named
    could not be read (it was not looked at), or was left out itself, with why (a copy named
    like spdesk's outputs, a file that is no photo)."""
    if scan.unreadable:
        return _nothing_read_text(scan.unreadable)
    named = [(path, entry) for path, entry in scan.left_out.items() if path in scan.inputs]
    if not named:
        return ""
    path, entry = named[0]
    more = f" {len(named) - 1} more, each left out." if len(named) > 1 else ""
    return f"Nothing added: “{entry.shown or shown(path.name or path)}”: {entry.reason}.{more}"


def _nothing_read_text(unreadable: dict[Path, LeftOut]) -> str:
    """Why an add queued nothing when what it named could not be read (said "No photos found
    there", as if it had been looked at and held none)."""
    path, entry = next(iter(unreadable.items()))
    text = f"Nothing added: “{entry.shown or shown(path.name or path)}”: {entry.reason}."
    if entry.reason != protect_bridge.NOT_FOUND:
        text += " Check that your account can read it."
    if len(unreadable) > 1:
        text += f" {len(unreadable) - 1} more: File › Files left out…"
    return text


def _output_settings(options: ProtectOptions) -> ProtectOptions:
    """The options that decide the protected files (not the device or the collision policy)."""
    return dataclasses.replace(options, device="", collision="")


def _protection_settings(options: ProtectOptions) -> ProtectOptions:
    """The options that decide a protected copy's bytes (not where it goes or its name)."""
    return dataclasses.replace(options, output_dir="", suffix="")
