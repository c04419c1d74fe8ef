"""The model manager: what is installed, where and how big; download with consent, verify, import,
move the models folder.

Every store operation (status, plan, download, verify, remove, import, move) runs in a worker:
listing the hub is network I/O, hashing or copying gigabytes takes minutes, and the GUI thread must
stay free. A download first plans (what is missing, how many bytes), then asks for consent with the
size and the destination, or, when the disk has no room, says so and offers another folder; a
cancelled download keeps its partial files, and "Download" resumes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.events import CancelToken, Event
from spdesk.core.models.events import (
    DownloadFinished,
    DownloadListing,
    DownloadProgress,
    FolderMoveProgress,
    HubRetrying,
    TransferRetrying,
)
from spdesk.core.models.settings import MODELS_DIR_VARIABLE, models_dir_variable
from spdesk.gui.desktop import open_in_file_manager
from spdesk.gui.modal import run_modal
from spdesk.gui.style import fit_to_screen, muted_label, thin_progress_bar
from spdesk.gui.text import (
    DOWNLOAD_SIZES,
    FEATURE_LABELS,
    format_bytes,
    format_duration,
    shorten_long_names,
)
from spdesk.gui.workers import Task, TaskRunner

COLUMNS = ("Feature", "Model", "Status", "Size", "Location")

StoreFactory = Callable[[], Any]
HF_CACHE = "huggingface-cache"
SHARED_CACHE_TEXT = (
    "This model is in the shared Hugging Face cache ({folder}), which other apps use: "
    "spdesk does not delete it."
)
"""Why Remove is off for a model found in the Hugging Face cache (spdesk only links to it)."""
PARTIAL = "partial"  # a Removal of the .part files a stopped download left
CHANGE_FOLDER = "Change folder…"
SELECT_HINT = "Select a feature to download, verify or remove its model."


@dataclass(frozen=True)
class Removal:
    """What Remove did: where the model came from, the bytes freed, and where the feature's
    model is found now (``now_origin`` is "" once it is gone)."""

    origin: str
    folder: str
    freed: int
    now_origin: str = ""
    now_folder: str = ""


def default_store() -> Any:
    from spdesk.core.models.store import ModelStore

    return ModelStore()


def store_task(factory: StoreFactory, action: str, feature: str | None = None, **kw: Any) -> Task:
    """A worker task calling one store method: status, plan, download, verify, remove, import."""

    def run(on_event: Callable[[Event], None], cancel: CancelToken) -> Any:
        store = factory()
        if action == "status":
            return store.root, store.status(), store.root_reason
        if action == "plan":
            # Stop and Close end a stalled listing at once; a failing hub's retries are told
            return store.plan(feature, cancel, on_event)
        if action == "download":
            return store.download(feature, on_event, cancel)
        if action == "verify":
            return store.verify(feature)
        if action == "remove":
            return remove_installed(store, feature)
        if action == "import":
            # a single file's configs may come from the hub: told, and Stop ends it
            return store.import_path(Path(kw["path"]), on_event=on_event, cancel=cancel)
        if action == "move":
            return store.relocate(Path(kw["path"]), on_event=on_event, cancel=cancel)
        raise ValueError(f"unknown store action {action!r}")

    return run


def remove_installed(store: Any, feature: str | None) -> Removal:
    """Delete the copy of ``feature``'s model the store finds (what its row shows installed):
    the downloaded files, or the imported copy. A Hugging Face cache is never touched: other
    apps share it (the store only links to it, and links it again whenever it looks)."""
    if feature is None:
        return Removal("", "", 0)
    found = store.find(feature)
    if found is None:  # what a stopped download left, if anything
        freed = int(store.remove(feature))
        return Removal(PARTIAL if freed else "", str(store.folder_for(feature)), freed)
    folder, origin = found
    if origin == HF_CACHE:
        return Removal(origin, str(folder), 0, origin, str(folder))
    if origin == "imported":
        freed = int(store.remove_imported(Path(folder).name))
    else:
        freed = int(store.remove(feature))
    now = store.find(feature)
    if now is None:
        return Removal(origin, str(folder), freed)
    return Removal(origin, str(folder), freed, now[1], str(now[0]))


class ModelManagerDialog(QDialog):
    """A table of the features' models with Download, Cancel, Verify, Remove and Import."""

    def __init__(
        self,
        parent: QWidget | None = None,
        store_factory: StoreFactory | None = None,
        feature: str | None = None,
    ) -> None:
        """``feature``: the row to select once the table is listed (the model a task needs)."""
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setMinimumSize(760, 400)
        fit_to_screen(self, 960, 480)
        self.store_factory = store_factory or default_store
        self.runner = TaskRunner(self)
        self.statuses: dict[str, Any] = {}
        self.root: Path | None = None
        self._then: Callable[[Any], None] | None = None
        self._action = ""
        self._import_asks_hub = False  # an import fetching its configs: Stop can end it
        self._pending_download = ""
        self._after_finished: list[Callable[[], object]] = []  # run once the task's thread ends
        self._first_selection = feature
        self.confirm: Callable[[str, str], bool] = self._ask
        self.offer: Callable[[str, str, str], bool] = self._offer  # title, text, action button
        self._build()
        self._connect()
        self.refresh()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.location_label = QLabel("Models folder: …")
        self.location_label.setObjectName("Muted")
        self.location_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setObjectName("Flat")
        self.change_folder_button = QPushButton(CHANGE_FOLDER)
        self.change_folder_button.setObjectName("Flat")
        for flat in (self.open_folder_button, self.change_folder_button):
            flat.setAutoDefault(False)  # Enter opened a file manager
        top = QHBoxLayout()
        top.addWidget(self.location_label, 1)
        top.addWidget(self.open_folder_button)
        top.addWidget(self.change_folder_button)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setAccessibleName("Features and their models")  # a bare "table" before
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(34)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Tab leaves the list for the buttons (the arrows move between rows): it moved from
        # cell to cell and wrapped round, and Download or Close was never reached.
        self.table.setTabKeyNavigation(False)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)  # long folders are elided; the tooltip has them whole
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for column, width in enumerate((170, 220, 170, 80)):
            self.table.setColumnWidth(column, width)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.download_button = QPushButton("&Download…")  # Alt+D
        self.download_button.setObjectName("Primary")
        self.cancel_button = QPushButton("Stop download")  # the task; Close is the dialog
        self.cancel_button.setToolTip("Stop the download; what was fetched is kept")
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        self.verify_button = QPushButton("Verify")
        self.remove_button = QPushButton("Remove")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Use a model you already have: Stable Diffusion 1.5 or TAESD")
        import_menu = QMenu(self.import_button)
        self.import_folder_action = import_menu.addAction(
            "Folder (Stable Diffusion 1.5 in diffusers layout)…"
        )
        self.import_file_action = import_menu.addAction(
            "Weights file (.safetensors: SD 1.5 checkpoint or TAESD)…"
        )
        self.import_button.setMenu(import_menu)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.verify_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.close_button)
        self.progress = thin_progress_bar()
        self.progress.setAccessibleName("Progress of the download or move")
        self.status_label = muted_label(SELECT_HINT)
        self.status_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 12)
        layout.setSpacing(10)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

    def _connect(self) -> None:
        self.open_folder_button.clicked.connect(self.open_folder)
        self.change_folder_button.clicked.connect(self.change_folder)
        self.download_button.clicked.connect(self.download)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)  # as Esc: asks before stopping a download
        self.verify_button.clicked.connect(self.verify)
        self.remove_button.clicked.connect(self.remove)
        self.import_folder_action.triggered.connect(self.import_folder)
        self.import_file_action.triggered.connect(self.import_weights_file)
        self.table.itemSelectionChanged.connect(self._update_controls)
        self.runner.core_event.connect(self._on_event)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.finished.connect(self._update_controls)
        self.runner.finished.connect(self._run_after_finished)

    # --- plumbing -------------------------------------------------------------------------------
    def _run(self, action: str, then: Callable[[Any], None], **kw: Any) -> bool:
        if self.runner.running:
            return False
        feature = kw.pop("feature", None)
        if action not in ("status", "plan", "download"):  # the bar shows downloads only
            self.progress.setValue(0)
        self._then, self._action = then, action
        self._import_asks_hub = False
        self.runner.start(store_task(self.store_factory, action, feature, **kw))
        self._update_controls()
        return True

    def _on_succeeded(self, result: Any) -> None:
        then, self._then = self._then, None
        if then is not None:
            then(result)

    def _on_failed(self, text: str) -> None:
        self._then = None
        self.status_label.setText(text)
        if self._action != "status":
            QMessageBox.warning(self, "Models", text)
        if self._action in ("download", "import", "remove", "move"):
            self._refresh_later()

    def _on_cancelled(self) -> None:
        self._then = None
        if self._action == "move":
            self.progress.setValue(0)
            self.status_label.setText(
                f"Moving cancelled. Nothing was moved: the models are still in {self.root}."
            )
        elif self._action == "plan":  # still asking the hub what to fetch: nothing came yet
            self.status_label.setText("Stopped before the download started: nothing was fetched.")
        elif self._action == "import":
            self.status_label.setText("Import stopped: nothing was imported.")
        else:
            self.status_label.setText(
                "Download cancelled. The part already fetched is kept: Download resumes it."
            )
        self._refresh_later()

    def _refresh_later(self) -> None:
        self._after_finished.append(self.refresh)

    def _run_after_finished(self) -> None:
        hooks, self._after_finished = self._after_finished, []
        for hook in hooks:
            hook()

    def _drop_pending(self) -> None:
        """Forget what was to follow the running task (a question, a download, a refresh)."""
        self._then = None
        self._after_finished.clear()
        self._pending_download = ""

    def selected_feature(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select(self, feature: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == feature:
                self.table.selectRow(row)

    # --- status ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        return self._run("status", self._show_status)

    def _show_status(self, result: Any) -> None:
        root, statuses, reason = result
        self.root = Path(root)
        fixed = f" ({reason})" if models_dir_variable() else ""
        self.location_label.setText(f"Models folder: {root}{fixed}")
        selected = self.selected_feature() or self._first_selection
        self._first_selection = None
        self.statuses = {s.feature: s for s in statuses}
        self.table.setRowCount(len(statuses))
        for row, status in enumerate(statuses):
            label, model = FEATURE_LABELS.get(status.feature, (status.feature, status.description))
            state, colour = _state(status)
            cells = (
                label,
                model,
                state,
                format_bytes(status.size_bytes)
                if status.present
                else DOWNLOAD_SIZES.get(status.feature, "—"),
                status.folder or "",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text if column != 1 else f"{status.repo_id} @ {status.revision}")
                if column == 3 and not status.present:
                    item.setToolTip(f"About {text.lstrip('~')} to download")
                    item.setForeground(_colour("muted"))
                if column == 0:
                    item.setData(Qt.ItemDataRole.UserRole, status.feature)
                if column == 2:
                    item.setForeground(_colour(colour))
                    if status.repair:
                        item.setToolTip(f"{text}: {REIMPORT}")
                self.table.setItem(row, column, item)
        for column in (1, 2):  # whole words ("Installed (imported) · verified"); folders elide
            self.table.resizeColumnToContents(column)
            self.table.setColumnWidth(column, self.table.columnWidth(column) + 16)  # a gutter
        if selected:
            self.select(selected)
        elif statuses:
            self.table.selectRow(0)
        self._update_controls()

    # --- download -------------------------------------------------------------------------------
    def download(self) -> bool:
        feature = self.selected_feature()
        if feature is None:
            return False
        self.status_label.setText("Checking what needs to be downloaded…")
        self.progress.setValue(0)
        return self._run("plan", lambda plan: self._after_plan(feature, plan), feature=feature)

    def _after_plan(self, feature: str, plan: Any) -> None:
        size = int(plan.to_fetch_bytes)
        if not plan.enough_space:
            self._no_room(plan)
            return
        if size <= 0:
            self.status_label.setText("Everything is already here; finishing the installation…")
        else:
            text = f"{format_bytes(size)} will be downloaded to {plan.target}."
            free = getattr(plan, "free_bytes", None)
            if isinstance(free, int):
                text += f"\nFree space there: {format_bytes(free)}."
            if int(getattr(plan, "done_bytes", 0)):
                text += f"\n{format_bytes(plan.done_bytes)} already fetched will be reused."
            if not self.confirm("Download the model?", text + "\n\nDownload now?"):
                self.status_label.setText("Download not started.")
                return
            self.status_label.setText(f"Downloading {format_bytes(size)}…")
        self._after_finished.append(self._start_download)
        self._pending_download = feature

    def _no_room(self, plan: Any) -> None:
        """Say the disk has no room for the download, and offer another models folder."""
        needed, free = format_bytes(plan.space_needed), format_bytes(plan.free_bytes)
        self.status_label.setText(f"Not enough space: {needed} needed, {free} free.")
        text = (
            f"The model needs {needed} in {plan.target}, and only {free} is free on that disk "
            f"({plan.free_on}).\n\nFree some space there, or "
        )
        if variable := models_dir_variable():  # the folder cannot change here
            text += f"set {MODELS_DIR_VARIABLE} (now {variable}) to a folder on a disk with room."
            QMessageBox.warning(self, "Not enough space", text)
        elif self.offer(
            "Not enough space",
            text + "choose a models folder on a disk with room: the models already installed "
            "move with it.",
            CHANGE_FOLDER,
        ):
            self._after_finished.append(self.change_folder)  # once the plan's thread has ended

    def _start_download(self) -> None:
        # The plan's thread has ended (finished fires after it); start the download's.
        if self._pending_download:
            self._run("download", self._after_download, feature=self._pending_download)

    def _after_download(self, folder: Any) -> None:
        self.progress.setValue(1000)
        self.status_label.setText(f"Downloaded and verified: {folder}")
        self._refresh_later()

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.status_label.setText("Cancelling…")

    def _on_event(self, event: Event) -> None:
        if self._action == "import" and isinstance(event, DownloadListing | DownloadFinished):
            # A single file's configs come from the hub: it was some 25 s of silence, with no
            # Stop, when the hub failed.
            self._import_asks_hub = isinstance(event, DownloadListing)
            self.status_label.setText(
                f"Fetching the configuration files the model needs from {event.endpoint}…"
                if isinstance(event, DownloadListing)
                else "Converting the model…"
            )
            self._update_controls()
        if isinstance(event, FolderMoveProgress):
            total = max(event.total_bytes, 1)
            self.progress.setValue(round(1000 * event.done_bytes / total))
            self.status_label.setText(
                f"Moving the models: {format_bytes(event.done_bytes)} of "
                f"{format_bytes(total)} ({event.file})"
            )
        if isinstance(event, TransferRetrying):  # the bar stood still, and nothing said why
            tries = f" ({event.stalled} of {event.give_up} tries)" if event.stalled else ""
            self.status_label.setText(
                f"The connection stopped at {format_bytes(event.done)} of "
                f"{format_bytes(event.size)} ({event.file}): asking again from there in "
                f"{event.wait_s:g} s{tries}. “Stop download” ends it."
            )
        if isinstance(event, HubRetrying):  # some 25 s of silence before it was told
            self.status_label.setText(f"{event.text}. “Stop download” ends it.")
        if isinstance(event, DownloadProgress):
            total = max(event.total, 1)
            self.progress.setValue(round(1000 * event.done / total))
            parts = [f"{format_bytes(event.done)} of {format_bytes(total)}"]
            if event.speed_bps:
                parts.append(f"{format_bytes(event.speed_bps)}/s")
            if event.eta_s is not None:
                parts.append(f"about {format_duration(event.eta_s)} left")
            # By its path in the repository: the UNet's, the VAE's and the text encoder's
            # weights have one file name.
            self.status_label.setText(" · ".join(parts) + f" ({event.file})")

    # --- verify, remove, import -----------------------------------------------------------------
    def verify(self) -> bool:
        feature = self.selected_feature()
        if feature is None:
            return False
        self.status_label.setText("Checking every file against its recorded hash…")
        return self._run("verify", self._after_verify, feature=feature)

    def _after_verify(self, result: Any) -> None:
        if result.folder is None:
            self.status_label.setText("Not installed: nothing to verify.")
        elif result.problems:
            problems = "\n".join(result.problems)
            self.status_label.setText(f"Problems found: {'; '.join(result.problems)}")
            status = self.statuses.get(result.feature)
            imported = status is not None and status.origin == "imported"
            # An import cannot be downloaded again: it is kept, marked and no longer used.
            repair = REIMPORT if imported else "Download again to repair (only bad files)."
            QMessageBox.warning(self, "Verify", f"{problems}\n\n{repair}")
        elif result.checked_files:
            self.status_label.setText(f"All {result.checked_files} files are intact.")
        else:
            self.status_label.setText("Present, but there are no recorded hashes to check.")
        self._refresh_later()  # a damaged file found is deleted: the row must say so

    def remove(self) -> bool:
        feature = self.selected_feature()
        if feature is None:
            return False
        status = self.statuses.get(feature)
        if status is not None and status.origin == HF_CACHE:
            self.status_label.setText(
                SHARED_CACHE_TEXT.format(folder=status.folder) + " Nothing was removed."
            )
            return False
        label = FEATURE_LABELS.get(feature, (feature, ""))[0]
        text = f"Delete the model files used for “{label}”?"
        if status is not None and not status.present and status.partial_bytes:
            text = (
                f"Delete the partly downloaded files of “{label}” "
                f"({format_bytes(status.partial_bytes)})? The next download starts again "
                "from the beginning."
            )
        if status is not None and status.origin == "imported":
            text = f"Delete the imported copy used for “{label}” ({status.folder})?"
            others = [
                FEATURE_LABELS.get(s.feature, (s.feature, ""))[0]
                for s in self.statuses.values()
                if s.feature != feature and s.origin == "imported" and s.folder == status.folder
            ]
            if others:
                text += "\nIt is also used for " + ", ".join(f"“{o}”" for o in others) + "."
        if not self.confirm("Remove model?", text):
            return False
        return self._run("remove", self._after_remove, feature=feature)

    def _after_remove(self, removal: Removal) -> None:
        if removal.origin == HF_CACHE:
            text = SHARED_CACHE_TEXT.format(folder=removal.folder) + " Nothing was removed."
        elif not removal.origin:
            text = "Not installed: nothing to remove."
        elif removal.origin == PARTIAL:
            text = f"Removed the partly downloaded files; {format_bytes(removal.freed)} freed."
        elif removal.freed <= 0 and removal.now_origin:
            text = f"Nothing was removed: the model is still in {removal.now_folder}."
        else:
            what = "the imported copy" if removal.origin == "imported" else "the downloaded files"
            text = f"Removed {what}; {format_bytes(removal.freed)} freed."
            if removal.now_origin:
                origin = _ORIGINS.get(removal.now_origin, "downloaded")
                text += f" The model is still installed ({origin}) in {removal.now_folder}."
        self.status_label.setText(text)
        self._refresh_later()

    def import_folder(self) -> bool:
        chosen = QFileDialog.getExistingDirectory(
            self, "Stable Diffusion 1.5 folder (diffusers layout)"
        )
        return self.import_model(Path(chosen)) if chosen else False

    def import_weights_file(self) -> bool:
        chosen, _ = QFileDialog.getOpenFileName(
            self,
            "Weights file: SD 1.5 checkpoint or TAESD",
            "",
            "Weights (*.safetensors)",
        )
        return self.import_model(Path(chosen)) if chosen else False

    def import_model(self, path: Path) -> bool:
        self.status_label.setText(f"Importing {path}…")
        return self._run("import", self._after_import, path=str(path))

    def _after_import(self, _result: Any) -> None:
        self.status_label.setText("Imported.")
        self._refresh_later()

    def change_folder(self) -> bool:
        """Choose another models folder; what is installed moves there (a worker: a copy to
        another disk takes minutes, tells its progress and can be stopped, moving nothing)."""
        if self.runner.running or models_dir_variable():
            return False
        start = str(self.root.parent) if self.root is not None else ""
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the models", start)
        if not chosen:
            return False
        new = Path(chosen)
        if self.root is not None and self.root.is_dir() and new != self.root:
            text = (
                f"Use {new} for the models?\n\nWhat is in {self.root} moves there; on another "
                "disk it is copied first, and the old folder is deleted only once the copy is "
                "complete."
            )
            if not self.confirm("Change the models folder?", text):
                return False
        self.status_label.setText(f"Moving the models to {new}…")
        return self._run("move", self._after_move, path=str(new))

    def _after_move(self, new_root: Any) -> None:
        self.progress.setValue(0)
        self.status_label.setText(f"The models folder was moved to {new_root}.")
        self._refresh_later()

    def open_folder(self) -> None:
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            if problem := open_in_file_manager(self.root):
                self.status_label.setText(problem)

    # --- state ----------------------------------------------------------------------------------
    def _update_controls(self) -> None:
        running = self.runner.running
        feature = self.selected_feature()
        said = self.status_label.text()  # the hint only while no feature is selected
        if feature is not None and said == SELECT_HINT:
            self.status_label.setText("")
        elif feature is None and not said:
            self.status_label.setText(SELECT_HINT)
        status = self.statuses.get(feature or "")
        present = bool(status is not None and status.present)
        self.download_button.setEnabled(not running and feature is not None)
        self.download_button.setText(
            "Resume &download"
            if status is not None and status.partial_bytes and not present
            else "&Download…"
        )
        stoppable = self._action in ("download", "plan", "move") or self._import_asks_hub
        self.cancel_button.setEnabled(running and stoppable)
        moving = running and self._action == "move"
        self.cancel_button.setText("Stop moving" if moving else "Stop download")
        # A download damaged since (not present) is verified too, as `spdesk models verify`
        # does: it says what is damaged, and deletes it for the next download.
        damaged = bool(status is not None and status.damaged)
        self.verify_button.setEnabled(not running and (present or damaged))
        shared = present and status is not None and status.origin == HF_CACHE
        partial = bool(status is not None and status.partial_bytes)
        self.remove_button.setEnabled(not running and (present or partial) and not shared)
        self.remove_button.setToolTip(
            SHARED_CACHE_TEXT.format(folder=status.folder) if shared and status is not None else ""
        )
        self.import_button.setEnabled(not running)
        variable = models_dir_variable()
        self.change_folder_button.setEnabled(not running and not variable)
        self.change_folder_button.setToolTip(
            f"The models folder is set by {MODELS_DIR_VARIABLE} ({variable}); unset it to "
            "choose another folder here."
            if variable
            else "Choose another folder for the models; what is installed moves there"
        )

    def _ask(self, title: str, text: str) -> bool:
        return run_modal(question_box(self, title, text)) == QMessageBox.StandardButton.Yes

    def _offer(self, title: str, text: str, action: str) -> bool:
        box = question_box(self, title, text)
        box.setStandardButtons(QMessageBox.StandardButton.Cancel)
        button = box.addButton(action, QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(button)
        run_modal(box)
        return box.clickedButton() is button

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.running:
            if self._action == "download" and not self.confirm(
                "Stop the download?", "Stop the download? What was fetched is kept for later."
            ):
                event.ignore()
                return
            if self._action == "move" and not self.confirm(
                "Stop moving the models?",
                f"Stop moving the models? Nothing is moved: they stay in {self.root}.",
            ):
                event.ignore()
                return
            # Nothing that was to follow the task runs on a closed dialog: no "Download the
            # model?" once a plan comes back, no download started behind it. The runner drops
            # the stopped task's late result.
            self._drop_pending()
            self.runner.stop()
        event.accept()

    def reject(self) -> None:
        if self.close():
            super().reject()


def question_box(parent: QWidget, title: str, text: str) -> QMessageBox:
    """A Yes/No question whose text can be selected; a long folder name in it is shortened
    so the box fits the screen, and the full text is then under "Show Details…"."""
    shown = shorten_long_names(text)
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    box = QMessageBox(QMessageBox.Icon.Question, title, shown, buttons, parent)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if shown != text:
        box.setDetailedText(text)
    return box


_ORIGINS = {"imported": "imported", HF_CACHE: "from HF cache"}


# An import verify found damaged is kept (the store cannot fetch it again) and no longer used.
DAMAGED_IMPORT = "Imported · damaged, not used"
REIMPORT = "Remove it, then Import… the original again."


def _state(status: Any) -> tuple[str, str]:
    if status.present and status.repair:
        return (DAMAGED_IMPORT, "warn")
    if status.present:
        origin = _ORIGINS.get(status.origin, "")
        text = "Installed" + (f" ({origin})" if origin else "")
        return (text + (" · verified" if status.verified else ""), "ok")
    if status.partial_bytes:
        return (f"Partly downloaded ({format_bytes(status.partial_bytes)})", "warn")
    return ("Not installed", "muted")


def _colour(kind: str) -> Any:
    from PySide6.QtGui import QColor

    return QColor({"ok": "#15803d", "warn": "#a16207", "muted": "#6b7280"}[kind])
