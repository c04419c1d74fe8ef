"""Train a personal perturbation on the user's own photos, watch it learn, save it to the library.

Training runs :func:`spdesk.core.train.train_universal` in a :class:`TaskRunner` worker (torch is
imported there, never here). The live charts show the training loss and, on held-out photos, how
far the perturbation moves the encoder's latent compared with random noise of the same strength:
the figure that says whether training is worth anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.errors import SpdeskError
from spdesk.core.events import CancelToken, Event
from spdesk.core.events.training import (
    CheckingPattern,
    CheckpointFailed,
    CheckpointSaved,
    CheckStep,
    TrainStarted,
    TrainStep,
    ValidationReport,
)
from spdesk.core.jobs.events import count_of
from spdesk.core.perturbation import library_name_at
from spdesk.core.strength_figures import PLAIN
from spdesk.core.train_advice import (
    DEFAULT_ROBUSTNESS,
    MIN_USEFUL_STEPS,
    NOISE_GAIN,
    default_crop_size,
    short_run_warning,
)
from spdesk.core.trained_pattern import MISSING_TEXT, UNCHECKED_TEXT, visibility_available
from spdesk.core.usecases import (
    StartingAfresh,
    discard_training,
    save_to_library,
    train_into_library,
)
from spdesk.gui.announce import announce
from spdesk.gui.missing_model import ask_for_model
from spdesk.gui.protect_bridge import encoder_problem
from spdesk.gui.settings import STRENGTH_PRESETS, last_folder, remember_folder, strength_tip
from spdesk.gui.style import fit_to_screen, muted_label, set_primary, thin_progress_bar
from spdesk.gui.text import format_duration, gain_text
from spdesk.gui.widgets.chart import LineChart
from spdesk.gui.widgets.counts import StepsSpinBox
from spdesk.gui.workers import Task, TaskRunner

ROBUSTNESS = {
    "jpeg": "JPEG re-compression",
    "resize": "Resizing",
    "crop": "Cropping",
    "blur": "Slight blur",
}
ROBUSTNESS_TIP = (
    "Train to stay strong through this edit. Trained against JPEG and resizing, a pattern kept "
    "more of its effect after a JPEG re-save but came out much easier to see and weaker at "
    "512 px; against blur, also much easier to see; against cropping, no easier (measured in "
    "the README), so none is ticked by default"
)
ENCODERS = {
    "sd15": "Best: Stable Diffusion's own (SD 1.5 VAE, ~170 MB download)",
    "taesd": "Fast: a small stand-in (TAESD, 10 MB)",
    "custom": "Other encoder file or folder…",
}


@dataclass(frozen=True)
class TrainRequest:
    """What the dialog asks the core to train (the GUI side of ``TrainConfig``)."""

    photos: Path
    encoder: str  # "sd15", "taesd", or a file / folder
    eps: float
    steps: int
    robust: tuple[str, ...]
    size: int = 512
    batch: int = 4
    val_every: int = 25
    device: str = "auto"


NOISE_SERIES = "random noise, same strength"  # the baseline, in words (not "±ε")
CHECK_STAGES = {"effect": "its effect", "visibility": "how visible it is"}  # CheckStep's stages
CHECKPOINT_EVERY = 25  # steps between the checkpoints a cancelled run resumes from


def validation_interval(steps: int) -> int:
    """Steps between held-out checks: at most 8 checks a run and never more often than every
    25 steps, so validation costs a few percent of the run (the CLI validates every 50)."""
    return max(25, steps // 8)


def next_check(step: int, steps: int) -> int:
    """The step after which the next held-out check runs, once ``step`` steps are done
    (every :func:`validation_interval` steps, and at the end)."""
    every = validation_interval(steps)
    return min((step // every + 1) * every, steps)


def first_check_text(step: int, steps: int, step_s: float | None) -> str:
    """When the held-out chart gets its first points, from the run's settings and rate."""
    at = next_check(step, steps)
    if step_s is None:
        return f"First check after step {at} of {steps}."
    return f"First check after step {at} (about {format_duration((at - step) * step_s)})."


def train_task(request: TrainRequest) -> Task:
    """A worker task running :func:`spdesk.core.usecases.train_into_library` (its checkpoint
    and resume policy); returns the TrainResult (not saved yet)."""

    def run(on_event: Callable[[Event], None], cancel: CancelToken) -> Any:
        from spdesk.core.train import TrainConfig

        config = TrainConfig(
            photos=str(request.photos),
            encoder=request.encoder,  # load_encoder knows sd15 and taesd (model store)
            eps=request.eps,
            steps=request.steps,
            batch=request.batch,
            size=request.size,
            robust=request.robust,
            val_every=request.val_every,
            val_photos=8,
            checkpoint_every=CHECKPOINT_EVERY,
            device=request.device,
        )
        return train_into_library(config, on_event=on_event, cancel=cancel)

    return run


COUNT_LIMIT = 1000  # photos counted at most while the user types a folder
COUNT_DELAY_MS = 400  # typing pause before counting


def count_task(folder: Path) -> Task:
    """A worker task counting the photos in ``folder`` (by content, as training reads them),
    up to ``COUNT_LIMIT``, leaving out those whose header cannot be read (training leaves them
    out); None when it is not a folder. Cancelled by the next keystroke."""

    def run(_on_event: Callable[[Event], None], cancel: CancelToken) -> int | None:
        from spdesk.core.discovery import DiscoveryOptions, discover
        from spdesk.core.imageio import DEFAULT_MAX_PIXELS
        from spdesk.core.jobs.scan import HeaderScan

        if not folder.is_dir():
            return None
        headers = HeaderScan(DEFAULT_MAX_PIXELS)
        options = DiscoveryOptions(cancel=cancel, limit=COUNT_LIMIT, sniff=headers.sniff)
        return sum(photo.path in headers.headers for photo in discover([folder], options).photos)

    return run


ADVISED_PHOTOS = 20  # the folder's advice: fewer trains a weaker, less general pattern
CHOOSE_TEXT = "Choose a folder of photos, then press “Start training”."
START_TEXT, AGAIN_TEXT = "Start &training", "&Train again"  # Alt+T, whichever it says


def ready_text(count: int | None) -> str:
    """The footer once the folder is counted: what to do next, and the advice on its size."""
    if count is None or count < 2:
        return folder_problem(count)
    if count < ADVISED_PHOTOS:
        return (
            f"Only {count} photos: {ADVISED_PHOTOS} or more train a stronger pattern. "
            "Press “Start training” to train on these anyway."
        )
    return "Ready: press “Start training”."


def folder_problem(count: int | None) -> str:
    """Why a counted folder cannot be trained on (the Start button's tooltip); "" when it can."""
    if count is None:
        return "No folder there: choose the folder of your photos."
    if count < 2:
        return "Training needs at least 2 photos: choose a folder with more."
    return ""


def folder_typed(text: str) -> Path:
    """The folder the user typed, ``~`` expanded: what is counted is what is trained on."""
    return Path(text.strip()).expanduser()


def _count_text(count: int | None) -> str:
    if count is None:
        return "Folder not found."
    more = "+" if count >= COUNT_LIMIT else ""
    return f"{count}{more} photo{'s' if count != 1 else ''} found."


class TrainDialog(QDialog):
    """Settings on the left, live charts on the right, progress and save-to-library below."""

    saved = Signal(object)  # Path of the perturbation written to the library
    open_models_requested = Signal(str)  # the feature whose model is missing ("train", "taesd")

    def __init__(
        self,
        settings: QSettings,
        device: str = "auto",
        parent: QWidget | None = None,
        *,
        device_kind: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train a personal pattern")
        self.setMinimumSize(880, 480)
        fit_to_screen(self, 1100, 680)
        self.settings = settings
        self.device = device
        # What ``device`` was detected as ("cpu", "cuda", "mps"; None while unknown): a CPU
        # trains on smaller crops unless the user picks a size.
        self.default_size = default_crop_size(device_kind)
        self.device_kind = device_kind
        self.runner = TaskRunner(self)
        self.count_runner = TaskRunner(self)
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DELAY_MS)
        self._counted = ""  # the folder text the last count was started for
        self.photo_count: int | None = None
        self.folder_problem = ""  # why the counted folder cannot be trained on ("" when it can)
        self._advice_texts: set[str] = set()  # footers ready_text said (replaced by the next)
        self.skipped: dict[Path, str] = {}  # photos the running training could not read, why
        self.left_out: dict[Path, str] = {}  # what its folder holds that is not a photo, why
        self.afresh = ""  # why the running training started afresh ("" when it did not)
        self.resumed_at = 0  # the step the running training resumed at (0 when it did not)
        self._last_step: TrainStep | None = None  # the running training's latest step
        self.unkept = ""  # why the last checkpoint was not written ("" when it was)
        self.result: Any = None
        self.saved_path: Path | None = None
        self._started = 0.0
        self._build()
        # Its look and the Enter key, now that it is in the dialog: Qt gave Enter to the first
        # button, the disabled "Pause", and Enter after typing the folder did nothing.
        set_primary(self.start_button, True)
        self._connect()
        self._restore()
        self._say_when_the_first_check_comes()
        self._update_controls()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        settings_column = QWidget()
        settings_column.setObjectName("OptionsHolder")
        left = QVBoxLayout(settings_column)
        left.setContentsMargins(0, 0, 4, 0)
        left.setSpacing(12)
        left.addWidget(self._photos_box())
        left.addWidget(self._settings_box())
        left.addStretch(1)
        # The settings scroll on a short screen (the save box below takes room once a result
        # is in): the dialog fits a 1024x600 screen.
        self.settings_scroll = QScrollArea()
        self.settings_scroll.setObjectName("OptionsScroll")
        self.settings_scroll.setWidgetResizable(True)
        self.settings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no ring: Tab skips it
        self.settings_scroll.setWidget(settings_column)
        bar = self.settings_scroll.verticalScrollBar().sizeHint().width()
        self.settings_scroll.setMinimumWidth(settings_column.sizeHint().width() + bar)
        self.loss_chart = LineChart("Training loss (lower is better)")
        self.loss_chart.add_series("loss", "#2f6fde")
        self.loss_chart.set_empty_text("The loss shows from the first step.")
        self.val_chart = LineChart("Effect on held-out photos (higher is stronger)")
        self.val_chart.add_series("this pattern", "#15803d")
        self.val_chart.add_series(NOISE_SERIES, "#9ca3af", dashed=True)
        self.val_note = QLabel(
            "Validated every few steps against random noise of the same strength."
        )
        self.val_note.setObjectName("Muted")
        self.val_note.setWordWrap(True)
        right = QVBoxLayout()
        right.addWidget(self.loss_chart, 1)
        right.addWidget(self.val_chart, 1)
        right.addWidget(self.val_note)
        top = QHBoxLayout()
        top.addWidget(self.settings_scroll, 0)
        top.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 12)
        layout.addLayout(top, 1)
        layout.addWidget(self._progress_row())
        layout.addWidget(self._save_box())

    def _photos_box(self) -> QGroupBox:
        box = QGroupBox("Your photos")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText(
            f"a folder of your own photos ({ADVISED_PHOTOS} or more is best)"
        )
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose the folder")
        browse.setAccessibleName("Choose the photo folder")
        # Named for screen readers, which said a bare "edit" (the box's title is no label).
        self.folder_edit.setAccessibleName("Photo folder")
        browse.clicked.connect(self.choose_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        self.count_label = QLabel()
        self.count_label.setObjectName("Muted")
        lay = QVBoxLayout(box)
        lay.addLayout(row)
        lay.addWidget(self.count_label)
        return box

    def _settings_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        self.strength_combo = QComboBox()
        for name, eps in STRENGTH_PRESETS.items():
            self.strength_combo.addItem(name.title(), eps)  # as the main window: its number
            # in the tooltip (a bare "8" said nothing)
            self.strength_combo.setItemData(
                self.strength_combo.count() - 1,
                strength_tip(name, eps),
                Qt.ItemDataRole.ToolTipRole,
            )
        self.strength_combo.addItem("Custom", None)
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(1.0, 64.0)
        self.strength_spin.setDecimals(1)
        self.strength_spin.setSuffix(" / 255")
        self.strength_spin.setToolTip("The largest change of any colour value, out of 255")
        # The form's label is the row's, not theirs: each is named (a combo box was
        # announced by its value alone, "Medium").
        self.strength_combo.setAccessibleName("Strength")
        self.strength_spin.setAccessibleName("Exact strength")
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_combo, 1)
        strength_row.addWidget(self.strength_spin)
        self.steps_spin = StepsSpinBox()
        self.steps_spin.setRange(1, 20_000)
        self.steps_spin.setSingleStep(50)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(32, 1024)
        self.size_spin.setSingleStep(64)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip(
            "Crop size; photos are resized to this short side first (512 on a GPU; 128 on a "
            "CPU, where a 512 px step costs about twenty times as much)"
        )
        self.robust_checks: dict[str, QCheckBox] = {}
        robust = QVBoxLayout()
        robust.setSpacing(2)
        for key, label in ROBUSTNESS.items():
            check = QCheckBox(label)
            check.setToolTip(ROBUSTNESS_TIP)
            self.robust_checks[key] = check
            robust.addWidget(check)
        self.robust_hint = muted_label("JPEG + resizing, or blur: far easier to see")
        self.robust_hint.setToolTip(ROBUSTNESS_TIP)
        robust.addWidget(self.robust_hint)
        self.encoder_combo = QComboBox()
        for key, label in ENCODERS.items():
            self.encoder_combo.addItem(label, key)
        self.encoder_combo.setAccessibleName("Encoder")
        self.encoder_edit = QLineEdit()
        self.encoder_edit.setAccessibleName("Encoder folder or file")
        self.encoder_edit.setPlaceholderText("diffusers folder or .safetensors file")
        self.encoder_browse = QToolButton()
        self.encoder_browse.setText("…")
        self.encoder_browse.setToolTip("Choose the encoder's folder or file")
        self.encoder_browse.setAccessibleName("Choose the encoder's folder or file")
        self.encoder_browse.clicked.connect(self.choose_encoder)
        encoder_row = QHBoxLayout()
        encoder_row.addWidget(self.encoder_edit, 1)
        encoder_row.addWidget(self.encoder_browse)
        self.encoder_row = QWidget()
        self.encoder_row.setLayout(encoder_row)
        encoder_row.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout(box)  # Alt and the underlined letter goes to each field
        form.addRow("&Strength", strength_row)
        strength_label = form.labelForField(strength_row)
        if isinstance(strength_label, QLabel):  # a row of two: the letter goes to the first
            strength_label.setBuddy(self.strength_combo)
        form.addRow("&Length", self.steps_spin)
        form.addRow("&Crop size", self.size_spin)
        form.addRow("Robust to", robust)
        form.addRow("&Encoder", self.encoder_combo)
        form.addRow("", self.encoder_row)
        return box

    def _progress_row(self) -> QWidget:
        self.progress = thin_progress_bar()
        self.progress.setAccessibleName("Training progress")
        self.status_label = muted_label(CHOOSE_TEXT)
        self.status_label.setWordWrap(True)
        self.start_button = QPushButton(START_TEXT)
        self.start_button.setObjectName("Primary")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Stop training")  # the task; Close is the dialog
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        col = QVBoxLayout()
        col.setSpacing(4)
        col.addWidget(self.progress)
        col.addWidget(self.status_label)
        row = QHBoxLayout()
        row.setContentsMargins(0, 8, 0, 0)
        row.addLayout(col, 1)
        row.addSpacing(12)
        row.addWidget(self.pause_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.start_button)
        row.addWidget(self.close_button)
        holder = QWidget()
        holder.setLayout(row)
        return holder

    def _save_box(self) -> QWidget:
        self.save_frame = QGroupBox("Save to your library")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("a name, e.g. “My portraits”")
        self.save_button = QPushButton("Save to library")
        self.save_button.setObjectName("Primary")
        self.train_longer_button = QPushButton("Train longer")
        self.train_longer_button.setToolTip("Train again with more steps")
        self.train_longer_button.hide()
        self.name_edit.setAccessibleName("Name")
        name_label = QLabel("Name")
        name_label.setBuddy(self.name_edit)
        row = QHBoxLayout()
        row.addWidget(name_label)
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.train_longer_button)
        lay = QVBoxLayout(self.save_frame)
        lay.addWidget(self.result_label)
        lay.addLayout(row)
        self.save_frame.hide()
        return self.save_frame

    def _connect(self) -> None:
        self.folder_edit.textChanged.connect(self._on_folder_changed)
        self.strength_combo.currentIndexChanged.connect(self._on_strength_preset)
        self.strength_spin.valueChanged.connect(self._on_strength_spin)
        self.encoder_combo.currentIndexChanged.connect(self._on_encoder)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)  # as Esc: asks while training runs
        self.save_button.clicked.connect(self.save_to_library)
        self.train_longer_button.clicked.connect(self.train_longer)
        self.name_edit.textChanged.connect(self._update_controls)
        self.steps_spin.valueChanged.connect(self._say_when_the_first_check_comes)
        self.runner.core_event.connect(self._on_event)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.finished.connect(self._update_controls)
        self._count_timer.timeout.connect(self._count_photos)
        self.count_runner.succeeded.connect(self._on_counted)
        self.count_runner.finished.connect(self._count_if_stale)

    def _restore(self) -> None:
        s = self.settings
        self.folder_edit.setText(last_folder(s, "train"))
        self.strength_spin.setValue(float(s.value("train/eps", 8.0)))  # type: ignore[arg-type]
        self._on_strength_spin(self.strength_spin.value())
        self.steps_spin.setValue(int(s.value("train/steps", 300)))  # type: ignore[call-overload]
        size = s.value("train/size", self.default_size)
        self.size_spin.setValue(int(size))  # type: ignore[call-overload]
        # A new key: "train/robust" held the old default (JPEG and resizing) for everyone who
        # trained before, chosen or not (train_advice.DEFAULT_ROBUSTNESS says why it changed).
        stored = s.value("train/robustness", ",".join(DEFAULT_ROBUSTNESS))
        chosen = str(stored or "").split(",")
        for key, check in self.robust_checks.items():
            check.setChecked(key in chosen)
        encoder = str(s.value("train/encoder", "sd15"))
        if encoder in ("sd15", "taesd"):
            self.encoder_combo.setCurrentIndex(self.encoder_combo.findData(encoder))
        else:
            self.encoder_combo.setCurrentIndex(self.encoder_combo.findData("custom"))
            self.encoder_edit.setText(encoder)
        self._on_encoder()
        self._on_folder_changed()

    def set_device_kind(self, kind: str) -> None:
        """The device was described after the dialog opened (the window describes it in a
        worker, seconds after it starts): its default crop size replaces the one assumed
        meanwhile, unless a size was chosen (kept in the settings, or changed here)."""
        if kind == self.device_kind:
            return
        assumed, self.device_kind = self.default_size, kind
        self.default_size = default_crop_size(kind)
        chosen = self.settings.contains("train/size")
        if not chosen and not self.runner.running and self.size_spin.value() == assumed:
            self.size_spin.setValue(self.default_size)

    def _remember(self, request: TrainRequest) -> None:
        s = self.settings
        remember_folder(s, "train", str(request.photos))
        s.setValue("train/eps", request.eps)
        s.setValue("train/steps", request.steps)
        if request.size == self.default_size:  # a later run on another device gets its own
            s.remove("train/size")
        else:
            s.setValue("train/size", request.size)
        s.setValue("train/robustness", ",".join(request.robust))
        s.remove("train/robust")
        s.setValue("train/encoder", request.encoder)

    # --- inputs ---------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder of your photos", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    # Methods, not lambdas kept on the instance: a lambda holding ``self`` makes a cycle that
    # only the cyclic garbage collector frees, from whichever thread runs it; a dialog without
    # a parent then dies off the GUI thread, which crashed a later dialog's event loop.
    def confirm(self, title: str, text: str) -> bool:
        return _confirm(self, title, text)

    def ask_missing_model(self, text: str) -> str:
        return ask_for_model(self, text)

    def _encoder_ready(self, encoder: str) -> bool:
        """A missing encoder is found before training starts, and offered from here: the
        Models window, or a file of one's own (not a "Training failed" naming commands)."""
        problem = encoder_problem(encoder, use="Training")
        if not problem:
            return True
        choice = self.ask_missing_model(problem)
        if choice == "models":
            self.open_models_requested.emit("taesd" if encoder == "taesd" else "train")
        elif choice == "file":
            self.encoder_combo.setCurrentIndex(self.encoder_combo.findData("custom"))
            self.choose_encoder()
        return False

    def choose_encoder(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Encoder weights", "", "Weights (*.safetensors *.pth *.pt);;All files (*)"
        )
        if path:
            self.encoder_edit.setText(path)

    def _on_folder_changed(self) -> None:
        """Count again once typing pauses; a count under way stops at its next file."""
        self.photo_count = None
        self.folder_problem = ""
        self.count_runner.cancel()
        text = self.folder_edit.text().strip()
        self._advise(CHOOSE_TEXT)
        if not text:
            self._count_timer.stop()
            self.count_label.setText("Some photos are held out to check the result.")
        else:
            self.count_label.setText("Counting photos…")
            self._count_timer.start()
        self._update_controls()

    def _count_photos(self) -> None:
        text = self.folder_edit.text().strip()
        if not text or self.count_runner.running:  # a cancelled count ends first, then recounts
            return
        folder = folder_typed(text)
        if folder.anchor and str(folder) == folder.anchor:
            self.count_label.setText("That is a whole disk: choose the folder of your photos.")
            self.folder_problem = self.count_label.text()
            self._update_controls()
            return
        self._counted = text
        self.count_runner.start(count_task(folder))

    def _on_counted(self, count: int | None) -> None:
        if self._counted == self.folder_edit.text().strip():
            self.photo_count = count
            self.count_label.setText(_count_text(count))
            self._advise(ready_text(count))
            self.folder_problem = folder_problem(count)
            self._update_controls()

    def _advise(self, text: str) -> None:
        """Say ``text`` in the footer, unless it tells of a training (running or finished)."""
        shown = self.status_label.text()
        if self.runner.running or self.result is not None:
            return
        if shown == CHOOSE_TEXT or shown in self._advice_texts:
            self.status_label.setText(text)
            self._advice_texts.add(text)

    def _count_if_stale(self) -> None:
        text = self.folder_edit.text().strip()
        if text and text != self._counted and not self._count_timer.isActive():
            self._count_photos()

    def _on_strength_preset(self) -> None:
        eps = self.strength_combo.currentData()
        if eps is not None:
            self.strength_spin.setValue(float(eps))
        self.strength_spin.setVisible(eps is None)  # the exact value only for "Custom"

    def _on_strength_spin(self, value: float) -> None:
        index = self.strength_combo.count() - 1
        for i in range(self.strength_combo.count() - 1):
            if abs(float(self.strength_combo.itemData(i)) - value) < 1e-6:
                index = i
        self.strength_combo.blockSignals(True)
        self.strength_combo.setCurrentIndex(index)
        self.strength_combo.blockSignals(False)
        self.strength_spin.setVisible(index == self.strength_combo.count() - 1)

    def _on_encoder(self) -> None:
        self.encoder_row.setVisible(self.encoder_combo.currentData() == "custom")

    def request(self) -> TrainRequest:
        choice = str(self.encoder_combo.currentData())
        encoder = self.encoder_edit.text().strip() if choice == "custom" else choice
        return TrainRequest(
            photos=folder_typed(self.folder_edit.text()),
            encoder=encoder,
            eps=self.strength_spin.value(),
            steps=self.steps_spin.value(),
            robust=tuple(k for k, c in self.robust_checks.items() if c.isChecked()),
            size=self.size_spin.value() // 8 * 8,
            batch=4,
            val_every=validation_interval(self.steps_spin.value()),
            device=self.device,
        )

    # --- running --------------------------------------------------------------------------------
    def start(self) -> bool:
        if self.runner.running:
            return False
        request = self.request()
        problem = _check_request(request, self.photo_count)
        if problem:
            QMessageBox.warning(self, "Train", problem)
            return False
        if not self._encoder_ready(request.encoder):
            return False
        short = short_run_warning(request.steps)
        if short and not self.confirm("Short training run", f"{short} Start anyway?"):
            return False
        if not self._may_discard_result():
            return False
        self._remember(request)
        self.result = None
        self.saved_path = None
        self.afresh = self.unkept = ""
        self.resumed_at = 0
        self.save_frame.hide()
        self.loss_chart.clear()
        self.val_chart.clear()
        self.val_chart.set_empty_text(first_check_text(0, request.steps, None))
        self._last_step = None
        self.progress.setValue(0)
        self.status_label.setText("Loading the encoder and your photos…")
        self._started = time.monotonic()
        self.runner.start(train_task(request))
        self._update_controls()
        return True

    def toggle_pause(self) -> None:
        if not self.runner.running:
            return
        if self.runner.paused:
            self.runner.resume()
            self.status_label.setText("Resumed.")
        else:
            self.runner.pause()
            self.status_label.setText("Paused. Press Resume to continue.")
            if self._last_step is not None:  # no time while paused: it does not pass
                step = self._last_step
                self.val_chart.set_empty_text(first_check_text(step.step, step.steps, None))
        self._update_controls()

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.status_label.setText("Stopping…")  # as the button says

    def _on_event(self, event: Event) -> None:
        match event:
            case StartingAfresh(reason=reason):
                self.afresh = reason  # said with TrainStarted, which comes next
            case TrainStarted(train_photos=train, val_photos=val, resumed_from=resumed):
                text = f"Training on {count_of(train, 'photo')}, checking on {val} held out…"
                if resumed and resumed >= event.steps:  # its save failed, or the app closed
                    text = "Every step of this run had run: checking its result again. " + text
                elif resumed:
                    self.resumed_at = resumed
                    text = f"Resumed at step {resumed}, where the stopped run ended. " + text
                elif self.afresh:
                    text = f"Started afresh: {self.afresh}. " + text
                self.skipped = {s.path: s.reason for s in event.skipped}
                self.left_out = {item.path: item.reason for item in event.left_out}
                if self.skipped:
                    text += f" {skipped_text(list(self.skipped))}"
                if self.left_out:
                    text += f" {left_out_text(list(self.left_out))}"
                self.status_label.setText(text)
                # skipped_text says "point here for why": each reader's reason, as the result's.
                self.status_label.setToolTip("\n".join(self.skipped.values()))
            case TrainStep():
                self._on_step(event)
            case ValidationReport(step=step, distortion=distortion, sign_distortion=sign):
                self.val_chart.append("this pattern", step, distortion)
                self.val_chart.append(NOISE_SERIES, step, sign)
                gain = event.gain_over_sign
                self.val_note.setText(f"Step {step}: {gain_text(gain)} the effect of random noise.")
            case CheckpointFailed(reason=reason):
                self.unkept = reason  # said with each step, as training goes on
            case CheckpointSaved():
                self.unkept = ""  # space was freed: a stop loses nothing again
            case CheckStep():
                self._on_check_step(event)
            case CheckingPattern(photos=photos, estimate_s=seconds):  # the encoder's own
                about = f" (about {format_duration(seconds)})" if seconds else ""
                self.status_label.setText(
                    f"Trained; checking it on {count_of(photos, 'held-out photo')} as "
                    f"protecting would lay it{about}…"
                )

    def _on_check_step(self, event: CheckStep) -> None:
        """The check after the last step: the bar fills for each of its stages (it stood
        full, with no word, for the minute or two the check takes on a CPU)."""
        self.progress.setValue(round(1000 * event.done / max(event.total, 1)))
        what = CHECK_STAGES.get(event.stage, event.stage)
        left = f" · about {format_duration(event.eta_s)} left" if event.eta_s is not None else ""
        if not self.runner.paused:
            self.status_label.setText(
                f"Trained; checking {what} as protecting would lay it: held-out photo "
                f"{event.done} of {event.total}{left}…"
            )

    def _say_when_the_first_check_comes(self) -> None:
        if not self.runner.running:
            self.val_chart.set_empty_text(first_check_text(0, self.steps_spin.value(), None))

    def _on_step(self, event: TrainStep) -> None:
        self._last_step = event
        self.progress.setValue(round(1000 * event.step / max(event.steps, 1)))
        self.loss_chart.append("loss", event.step, event.loss)
        step_s = None if self.runner.paused else event.step_s  # a step ending as it paused
        self.val_chart.set_empty_text(first_check_text(event.step, event.steps, step_s))
        left = f" · about {format_duration(event.eta_s)} left" if event.eta_s is not None else ""
        # Why it started afresh stays in view: a user who expected it to resume learns why;
        # and that it resumed (the first step's status replaced "Resumed at step N").
        afresh = f" (started afresh: {self.afresh})" if self.afresh else ""
        if self.resumed_at:
            afresh = f" (resumed at step {self.resumed_at})"
        if self.unkept:  # a stop now loses the steps since the last checkpoint
            afresh += f" · progress not saved for resuming: {self.unkept}"
        if not self.runner.paused:
            self.status_label.setText(f"Step {event.step} of {event.steps}{left}{afresh}")

    def _on_succeeded(self, result: Any) -> None:
        self.result = result
        elapsed = format_duration(time.monotonic() - self._started)
        self.progress.setValue(1000)
        self.status_label.setText(f"Finished in {elapsed}.")
        left_out = f" {skipped_text(list(self.skipped))}" if self.skipped else ""
        left_out += f" {left_out_text(list(self.left_out))}" if self.left_out else ""
        self.result_label.setText(_summary(result) + left_out)
        whys = [*self.skipped.values()]  # each reader's reason names its photo
        whys += [f"{path.name}: {reason}" for path, reason in self.left_out.items()]
        self.result_label.setToolTip("\n".join(whys))
        self.name_edit.setText(self.name_edit.text() or _default_name(result))
        gain = result_gain(result)
        weak = gain is not None and gain < NOISE_GAIN
        # Weaker than noise: training longer is the way on; saving it stays possible.
        set_primary(self.train_longer_button, weak)
        set_primary(self.save_button, not weak)
        self.train_longer_button.setVisible(weak)
        self.train_longer_button.setToolTip(
            f"A new run from the start with four times the steps (at least {MIN_USEFUL_STEPS}): "
            "a finished run cannot go on, its step sizes shrank to its last step"
        )
        self.save_button.setText("Save anyway" if weak else "Save to library")
        self.save_frame.show()
        (self.train_longer_button if weak else self.name_edit).setFocus()
        # The focus on the name said nothing of how the run went.
        announce(self, f"{self.status_label.text()} {self.result_label.text()}")

    def train_longer(self) -> bool:
        """Train again with more steps (the last run measured weaker than random noise).

        Asks before the unsaved result is replaced, as "Train again" does."""
        steps = self.steps_spin.value()
        self.steps_spin.setValue(min(self.steps_spin.maximum(), max(4 * steps, MIN_USEFUL_STEPS)))
        if self.start():
            return True
        self.steps_spin.setValue(steps)  # kept the result (or could not start): as it was
        return False

    def _on_failed(self, text: str) -> None:
        self.status_label.setText(text.splitlines()[0])
        self.val_chart.set_empty_text("The run failed before the first check.")
        QMessageBox.warning(self, "Training failed", text)

    def _on_cancelled(self) -> None:
        where = "where it stopped"
        if self.unkept:  # the last checkpoint failed: an earlier one is what resumes
            where = f"at its last checkpoint written (the one after was not: {self.unkept})"
        self.status_label.setText(
            f"Stopped; nothing was saved to the library. Press “{self._start_words()}” "
            f"with the same settings to resume {where}."
        )
        # The chart's "First check after step N (about M s)" spoke of the run under way.
        self.val_chart.set_empty_text("Stopped before the first check.")
        announce(self, self.status_label.text())

    def _start_words(self) -> str:
        """What the start button says, its letter's "&" left out ("Start training")."""
        return self.start_button.text().replace("&", "")

    def _update_controls(self) -> None:
        running = self.runner.running
        has_folder = bool(self.folder_edit.text().strip())
        self.start_button.setEnabled(not running and has_folder and not self.folder_problem)
        self.start_button.setToolTip(self.folder_problem or "")
        self.start_button.setText(AGAIN_TEXT if self.result is not None else START_TEXT)
        # One main action at a time: once a result is in, it is in the save box below.
        if (self.start_button.objectName() == "Primary") != (self.result is None):
            set_primary(self.start_button, self.result is None)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if self.runner.paused else "Pause")
        self.cancel_button.setEnabled(running)
        for box in self.findChildren(QGroupBox):
            if box is not self.save_frame:
                box.setEnabled(not running)
        self.save_button.setEnabled(
            self.result is not None and bool(self.name_edit.text().strip()) and not running
        )

    # --- saving ---------------------------------------------------------------------------------
    def save_to_library(self) -> Path | None:
        """Write the trained perturbation under its name in the library; emits ``saved``."""
        name = self.name_edit.text().strip()
        if self.result is None or not name:
            return None
        there = library_name_at(name)
        question = (
            f"“{name}” is already in your library. Replace it?"
            if there == name
            else f"“{there}” is in your library under the file this name would take. "
            f"Replace “{there}” with “{name}”?"
        )
        if there is not None and not _confirm(self, "Replace?", question):
            return None
        try:
            path = save_to_library(self.result, name, replace=True)
        except (SpdeskError, OSError) as error:
            text = error.user_text() if isinstance(error, SpdeskError) else str(error)
            QMessageBox.warning(self, "Could not save", text)
            return None
        self.saved_path = path
        self.status_label.setText(f"Saved “{name}”: it is now in the Pattern list.")
        self.saved.emit(path)
        self.save_button.setEnabled(False)
        return path

    @property
    def unsaved(self) -> bool:
        """A finished training result that is not in the library yet."""
        return self.result is not None and self.saved_path is None

    def _may_discard_result(self) -> bool:
        """True when there is no unsaved result, or the user agrees to discard it (its
        checkpoint goes with it)."""
        if not self.unsaved:
            return True
        if not _confirm_discard(
            self,
            "Discard the result?",
            "The trained pattern is not saved to your library. Discard it?",
        ):
            return False
        discard_training(self.result)
        return True

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.running:
            if not _confirm(
                self, "Stop training?", "Training is still running. Stop it and close?"
            ):
                event.ignore()
                return
            self.runner.stop()
        elif self.isVisible() and not self._may_discard_result():
            event.ignore()  # a hidden dialog has no result on screen to lose
            return
        self._count_timer.stop()
        self.count_runner.stop()
        event.accept()

    def reject(self) -> None:
        """Esc / Close: same as closing the window (asks while training runs)."""
        if self.close():
            super().reject()


def _confirm(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text)
    return answer == QMessageBox.StandardButton.Yes


def _confirm_discard(parent: QWidget, title: str, text: str) -> bool:
    """Discard / Cancel (Cancel is the default: Enter keeps the result)."""
    buttons = QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
    answer = QMessageBox.question(parent, title, text, buttons, QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Discard


def _check_request(request: TrainRequest, count: int | None) -> str:
    """What is wrong with ``request`` (``count``: photos found, None while unknown)."""
    if not request.photos.is_dir():
        return f"Folder not found: {request.photos}"
    if count is not None and count < 2:
        return f"{request.photos} holds {count} photo(s); training needs at least 2."
    if not request.encoder:
        return "Choose an encoder file or folder."
    return ""


def result_gain(result: Any) -> float | None:
    """How many times random noise's effect the trained perturbation has on held-out photos."""
    gain = result.metadata.get("gain_over_sign")
    return float(gain) if isinstance(gain, int | float) else None


def _summary(result: Any) -> str:
    meta = result.metadata
    gain = result_gain(result)
    steps, photos = int(meta.get("steps", 0)), int(meta.get("train_photos", 0))
    parts = [f"Trained for {count_of(steps, 'step')} on {count_of(photos, 'photo')}."]
    if gain is not None:
        verdict = (
            "stronger than noise"
            if gain > 1.05
            else "no better than noise"
            if gain >= NOISE_GAIN
            else "WEAKER than random noise: train longer before using it"
        )
        size = meta.get("config", {}).get("size")
        at = f" at {size} px" if size else ""
        parts.append(
            f"In training's check ({count_of(int(meta.get('val_photos', 0)), 'held-out photo')}"
            f"{at}) it moves the "
            f"encoder {gain_text(gain)} as much as random noise of the same strength ({verdict})."
        )
    product_gain = getattr(result, "product_gain", None)
    if product_gain is not None:
        parts.append(product_gain.text())
    elif hasattr(result, "product_gain") and meta.get("checked") != "cancelled":
        parts.append(f"{UNCHECKED_TEXT}.")  # every held-out photo too small to measure
    visibility = getattr(result, "visibility", None)
    if visibility is not None:
        parts.append(visibility.text())
        if meta.get("transforms") and visibility.ssimulacra2 < PLAIN:
            parts.append(
                "Training against edits makes a pattern easier to see: with Robust to left "
                "unticked it comes out less visible."
            )
    elif not visibility_available():
        parts.append(f"{MISSING_TEXT}.")
    return " ".join(parts)


def skipped_text(paths: list[Path], named: int = 5) -> str:
    """The photos training left out because they could not be read, named (a few)."""
    names = ", ".join(p.name for p in paths[:named])
    more = f" and {len(paths) - named} more" if len(paths) > named else ""
    verb = "was" if len(paths) == 1 else "were"
    return (
        f"{count_of(len(paths), 'photo')} could not be read and {verb} left out "
        f"({names}{more}; point here for why)."
    )


def left_out_text(paths: list[Path], named: int = 5) -> str:
    """What the folder held beside its photos and training left out (as protecting leaves it
    out: a pattern file, a sidecar, a hidden file), named (a few)."""
    names = ", ".join(p.name for p in paths[:named])
    more = f" and {len(paths) - named} more" if len(paths) > named else ""
    return f"Left out, not photos: {names}{more}."


def _default_name(result: Any) -> str:
    config = result.metadata.get("config", {})
    folder = Path(str(config.get("photos", "photos"))).name or "photos"
    return f"{folder} ±{float(config.get('eps', 8)):g}"
