"""Preview what an AI editor does to a photo before and after protection.

As soon as a photo is chosen, a worker protects it in memory as a job would
(:func:`spdesk.core.usecases.protect_for_preview`, no model needed) and the dialog shows the
original, the protected photo and their difference amplified 8 times, with a 100% view. The same
Stable Diffusion edit (same seed, prompt and settings) then runs on the original, the protected
photo and a random-noise baseline in :class:`spdesk.core.preview.PreviewEngine`, inside a worker:
three more tiles, the figures and the plain-words verdict. Without the model, the dialog says
what the edit needs and offers the Models dialog.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.edits import EDIT_STEPS, EDIT_STRENGTH, PRESETS
from spdesk.core.errors import ModelMissingError, UnsupportedImageError
from spdesk.core.events import CancelToken, Event, Loading, Progress
from spdesk.core.geometry import check_previewable, too_small_to_protect
from spdesk.core.jobs.events import UNCHANGED
from spdesk.core.usecases import (
    DIFFERENCE_GAIN,
    FineTunedMemo,
    FineTuning,
    PreviewOutcome,
    ProtectionView,
    amplified_difference,
    preview_photo,
    protect_for_preview,
)
from spdesk.gui import garbage
from spdesk.gui.announce import announce
from spdesk.gui.images import ImageTile, photo_file_filter, to_pixmap
from spdesk.gui.settings import ProtectOptions
from spdesk.gui.style import fit_to_screen, muted_label, set_primary, thin_progress_bar
from spdesk.gui.text import DOWNLOAD_SIZES, FEATURE_LABELS
from spdesk.gui.workers import Task, TaskRunner

# The SPD blog's prompts, as the menu names them.
PROMPT_PRESETS: dict[str, tuple[str, str]] = {
    key: (label, PRESETS[key])
    for key, label in (
        ("P1", "Watercolor painting"),
        ("P2", "Sunset lighting"),
        ("P3", "Add snow"),
        ("P4", "No prompt"),
    )
}
UNFILTERED_NOTE = (
    "This preview shows an unfiltered AI edit of your own photo: no safety checker is applied."
)
FIGURE_KEYS = (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("vifp", "VIFp"), ("fsim", "FSIM"))
# What each figure means, in a column header's tooltip: the names are image-quality jargon.
FIGURE_MEANINGS = {
    "ssim": "Structural similarity: 1 means the two images look identical, lower means they "
    "differ more in structure and contrast.",
    "psnr": "Peak signal-to-noise ratio, in decibels: higher means closer; above about 40 dB "
    "the difference is usually hard to see.",
    "vifp": "Visual information fidelity: how much of the first image's detail the second keeps "
    "(1: all of it).",
    "fsim": "Feature similarity: 1 means the edges and structures people notice are the same.",
}
FIGURE_ROWS_NOTE = (
    "For the AI edit rows, lower means the protection changed the edit more; for the last row, "
    "higher means the protection is harder to see."
)
# The model each edit mode needs, by the model store's feature name, and what to say without it.
MODEL_FEATURE = {"img2img": "preview", "inpaint": "inpaint"}
MODEL_NAME = {mode: FEATURE_LABELS[feature][1] for mode, feature in MODEL_FEATURE.items()}
MODEL_NEEDED = {
    mode: f"The AI edit needs the {MODEL_NAME[mode]} model ({DOWNLOAD_SIZES[feature]}, "
    f"downloaded once): open Models… and get “{FEATURE_LABELS[feature][0]}”. The protection "
    "itself is shown below without it."  # the note bar is above the tiles
    for mode, feature in MODEL_FEATURE.items()
}
FINE_TUNING_NOT_SHOWN = (
    "Shown before fine-tuning: “Preview AI edit” fine-tunes it first, as the protected copies "
    "get it (seconds on a GPU, minutes on a CPU)."
)
# The same while the edit's model is missing: "Preview AI edit" is off until it is installed.
FINE_TUNING_NEEDS_MODEL = (
    "Shown before fine-tuning: the protected copies get it fine-tuned; “Preview AI edit” shows "
    "that once the model is installed (Open Models…)."
)
EDIT_TILES = ("edit_original", "edit_protected", "edit_noisy")


@dataclass(frozen=True)
class ModelNeeded:
    """A preview task's answer when the Stable Diffusion model is not installed."""


@dataclass(frozen=True)
class ProtectionShown:
    """The protection task's answer: the view, and whether the AI edit's model is there."""

    view: ProtectionView
    model_ready: bool


@dataclass(frozen=True)
class PreviewSettings:
    """What one preview asks for (the GUI side of ``PreviewRequest``)."""

    photo: Path
    perturbation: str  # file path; "" = the bundled default
    strength: float
    prompt: str
    mode: str = "img2img"
    edit_strength: float = EDIT_STRENGTH
    steps: int = EDIT_STEPS
    seed: int = 0
    working_size: int = 512
    protection: str = "universal"  # the job's mode (protect_bridge.job_mode_of)
    generator: str = ""  # the photo modes' generator file; "" = the bundled one
    fine_tuning: FineTuning | None = None  # the job's, in the fine-tuning modes

    @property
    def shown_protection(self) -> str:
        """The protection shown: photo mode's one pass, or the universal pattern (the quick
        view shows them before fine-tuning; the AI edit's preview fine-tunes them first)."""
        return "photo" if self.protection in ("photo", "photo-finetune") else "universal"

    @property
    def fine_tuned(self) -> bool:
        return self.protection in ("photo-finetune", "finetune")


class EngineCache:
    """Keeps the PreviewEngine of the last preview while the dialog stays open (loading SD
    takes many seconds, and the next preview often differs only in its prompt). Other models
    or another device release it first; closing the preview releases it (gigabytes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = threading.Lock()  # held by the one preview running on the pipelines
        self._key: tuple[str, str, str] | None = None
        self._engine: Any = None

    @contextlib.contextmanager
    def use(
        self, model_dir: Path | None, inpaint_dir: Path | None, device: str, cancel: CancelToken
    ) -> Iterator[Any]:
        """The engine, for one preview at a time. A preview let go when its window closed (an
        edit step does not see the cancel) ends its step before the next one starts: two
        threads in one pipeline failed the new preview ("The size of tensor a (248) must
        match the size of tensor b (188)") or could mix their edits. Waiting, the next one
        still hears its own cancel."""
        while not self._running.acquire(timeout=0.1):
            cancel.check()
        try:
            yield self.get(model_dir, inpaint_dir, device)
        finally:
            self._running.release()

    def get(self, model_dir: Path | None, inpaint_dir: Path | None, device: str) -> Any:
        from spdesk.core.preview import PreviewEngine

        key = (str(model_dir or ""), str(inpaint_dir or ""), device)
        with self._lock:
            if key != self._key:
                self._drop()
                self._engine = PreviewEngine(model_dir, inpaint_dir=inpaint_dir, device=device)
                self._key = key
            return self._engine

    def release(self) -> None:
        """Free the pipelines now, unless a preview still runs on them (one let go when its
        window closed): the next preview then takes them over, or frees them."""
        if not self._running.acquire(blocking=False):
            return
        try:
            with self._lock:
                self._drop()
        finally:
            self._running.release()

    def _drop(self) -> None:
        if self._engine is not None:
            self._engine.release()  # collects its cycles only on the GUI thread
        self._engine, self._key = None, None
        if threading.current_thread() is not threading.main_thread():
            garbage.collect_soon()  # the pipelines' cycles, freed by the GUI thread


ENGINES = EngineCache()


def preview_task(
    settings: PreviewSettings,
    *,
    model_dir: Path | None = None,
    inpaint_dir: Path | None = None,
    device: str = "auto",
    memo: FineTunedMemo | None = None,
) -> Task:
    """A worker task running one preview; returns a :class:`PreviewOutcome`, or
    :class:`ModelNeeded` when the Stable Diffusion model is not installed. ``memo`` keeps the
    fine-tuned photo for the next preview of the same photo and protection."""

    def run(on_event: Callable[[Event], None], cancel: CancelToken) -> PreviewOutcome | ModelNeeded:
        from spdesk.core.apply import ApplyOptions
        from spdesk.core.preview import PreviewRequest

        options = ApplyOptions(working_size=settings.working_size, strength=settings.strength)
        request = PreviewRequest(
            prompt=settings.prompt,
            mode=settings.mode,  # type: ignore[arg-type]
            strength=settings.edit_strength,
            steps=settings.steps,
            seed=settings.seed,
            working_size=settings.working_size,
        )
        perturbation = Path(settings.perturbation) if settings.perturbation else None
        with ENGINES.use(model_dir, inpaint_dir, device, cancel) as engine:
            try:  # only the edit's model: a missing fine-tuning encoder says its own name
                engine.model_dir(request.mode)
            except ModelMissingError:
                return ModelNeeded()
            _announce_loading(on_event, engine.loaded(request.mode))
            return preview_photo(
                settings.photo, perturbation, request, options, engine,
                protection=settings.shown_protection, generator=_generator(settings),
                fine_tuning=settings.fine_tuning, memo=memo, on_event=on_event, cancel=cancel,
            )  # fmt: skip

    return run


def protection_task(settings: PreviewSettings, *, model_dir: Path | None = None) -> Task:
    """A worker task protecting the photo in memory (no model); returns ProtectionShown."""

    def run(_on_event: Callable[[Event], None], _cancel: CancelToken) -> ProtectionShown:
        from spdesk.core.apply import ApplyOptions

        options = ApplyOptions(working_size=settings.working_size, strength=settings.strength)
        perturbation = Path(settings.perturbation) if settings.perturbation else None
        view = protect_for_preview(
            settings.photo, perturbation, options, protection=settings.shown_protection,
            generator=_generator(settings),
        )  # fmt: skip
        return ProtectionShown(view, model_dir is not None or _model_installed(settings.mode))

    return run


def _generator(settings: PreviewSettings) -> Path | None:
    """The generator the photo modes draw with, as the job's (None: the bundled one)."""
    return Path(settings.generator) if settings.generator else None


def _model_installed(mode: str) -> bool:
    from spdesk.core.models.store import ModelStore

    return ModelStore().find(MODEL_FEATURE.get(mode, "preview")) is not None  # type: ignore[arg-type]


def _protectable(photo: np.ndarray) -> bool:
    """Whether Protect takes a photo this size (not too small to protect)."""
    height, width = photo.shape[:2]
    return too_small_to_protect(width, height, "") is None


def _edit_refusal(photo: np.ndarray, path: Path) -> str:
    """Why an AI edit of this photo would show nothing ("" when it can be previewed)."""
    try:
        check_previewable(photo, name=path.name)
    except UnsupportedImageError as error:
        return error.user_text()
    return ""


def _announce_loading(on_event: Callable[[Event], None], loaded: bool) -> None:
    """What happens before the first step: loading the model once (seconds), then nothing to
    wait for (it said "Loading… (first time only)" before every preview)."""
    on_event(Loading("Starting the edit…" if loaded else LOADING_TEXT))


LOADING_TEXT = "Loading Stable Diffusion (first time only)…"


def _label_for(field: QWidget, text: str) -> QLabel:
    """The label beside ``field``, and its name for screen readers: the fields of a grid
    were announced as a bare "edit" or by their value (accessibility audit)."""
    label = QLabel(text)
    label.setBuddy(field)
    field.setAccessibleName(text)
    return label


class ZoomDialog(QDialog):
    """The protected photo at 100%; hold "Show original" to compare the same pixels."""

    def __init__(self, photo: np.ndarray, protected: np.ndarray, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Protected photo at 100%")
        self.resize(900, 700)
        self._protected = to_pixmap(protected)
        self._original = to_pixmap(photo)
        self.picture = QLabel()
        self.picture.setPixmap(self._protected)
        scroll = QScrollArea()
        scroll.setWidget(self.picture)
        scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.compare_button = QPushButton("Hold to show the original")
        self.compare_button.pressed.connect(lambda: self.picture.setPixmap(self._original))
        self.compare_button.released.connect(lambda: self.picture.setPixmap(self._protected))
        hint = QLabel(f"{protected.shape[1]} × {protected.shape[0]} pixels, shown 1:1.")
        hint.setObjectName("Muted")
        row = QHBoxLayout()
        row.addWidget(hint, 1)
        row.addWidget(self.compare_button)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(row)


class PreviewDialog(QDialog):
    """Pick a photo and an edit; see the four tiles, the figures and the verdict."""

    open_models_requested = Signal()

    def __init__(
        self,
        photo: Path | None,
        options: ProtectOptions,
        parent: QWidget | None = None,
        *,
        model_dir: Path | None = None,
        inpaint_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preview an AI edit")
        self.setMinimumSize(860, 480)
        fit_to_screen(self, 1080, 680)
        self.options = options
        self.model_dir = model_dir
        self.inpaint_dir = inpaint_dir
        self.working_size = 512
        self.runner = TaskRunner(self)
        self.protect_runner = TaskRunner(self)
        self.fine_tuned = FineTunedMemo()  # another prompt does not fine-tune again
        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(250)  # typing a path: protect once it stops
        self.view: ProtectionView | None = None
        self.outcome: PreviewOutcome | None = None
        self._in_tiles: ProtectionView | PreviewOutcome | None = None  # the protected tile's
        self.zoom: ZoomDialog | None = None
        # Which photo each result is of: the view's, the edit's, the protection and the edit
        # under way (a result of another photo than the one chosen is not shown beside it).
        self._view_photo: Path | None = None
        self._outcome_photo: Path | None = None
        self._protecting: Path | None = None
        self._editing: Path | None = None
        self._editing_settings: PreviewSettings | None = None  # those of the edit under way
        self.edit_refusal = ""  # why the shown photo cannot be edited ("" when it can)
        self.photo_problem = ""  # why the chosen photo cannot be read ("" when it can)
        self._problem_photo: Path | None = None  # the photo photo_problem is about
        self.model_missing = False  # the AI edit's model is not installed
        self._build()
        self._connect()
        self._caption_protected(fine_tuned=False)
        if photo is not None:
            self.photo_edit.setText(str(photo))
            self._view_timer.stop()  # protect now, not again once the timer fires
            self.show_protection()
        self._update_controls()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 12)
        layout.setSpacing(10)
        layout.addLayout(self._controls())
        layout.addWidget(self._note())
        layout.addLayout(self._tiles(), 1)
        layout.addWidget(self._figures())
        self.verdict = QLabel()
        self.verdict.setObjectName("Verdict")
        self.verdict.setWordWrap(True)
        layout.addWidget(self.verdict)
        layout.addLayout(self._progress())

    def _controls(self) -> QGridLayout:
        self.photo_edit = QLineEdit()
        self.photo_edit.setPlaceholderText("a photo to try")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a photo")
        browse.setAccessibleName("Choose a photo")
        browse.clicked.connect(self.choose_photo)
        self.preset_combo = QComboBox()
        for key, (label, _prompt) in PROMPT_PRESETS.items():
            self.preset_combo.addItem(label, key)  # P1..P4 (the CLI's names) in the tooltip
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1,
                f"--prompt {key} in the CLI",
                Qt.ItemDataRole.ToolTipRole,
            )
        self.preset_combo.addItem("Your own words…", "")
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("describe the edit")
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Redraw the whole photo", "img2img")
        self.mode_combo.addItem("Repaint around the centre", "inpaint")
        self.mode_combo.setToolTip(
            "How the AI edits: image to image (SDEdit) redraws everything; inpainting keeps the "
            "centre and repaints the rest"
        )
        self.edit_strength = QDoubleSpinBox()
        self.edit_strength.setRange(0.1, 1.0)
        self.edit_strength.setSingleStep(0.05)
        self.edit_strength.setValue(EDIT_STRENGTH)
        self.edit_strength.setToolTip(
            "How much of the photo the AI redraws (0.1: a little, 1.0: everything); not the "
            "protection's strength"
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 200)
        self.steps_spin.setValue(EDIT_STEPS)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.addWidget(_label_for(self.photo_edit, "Photo"), 0, 0)
        photo_row = QHBoxLayout()
        photo_row.addWidget(self.photo_edit, 1)
        photo_row.addWidget(browse)
        grid.addLayout(photo_row, 0, 1, 1, 3)
        grid.addWidget(_label_for(self.mode_combo, "Edit"), 0, 4)
        grid.addWidget(self.mode_combo, 0, 5, 1, 3)
        grid.addWidget(_label_for(self.preset_combo, "Prompt"), 1, 0)
        self.prompt_edit.setAccessibleName("Prompt text")  # the label is the preset's
        grid.addWidget(self.preset_combo, 1, 1)
        grid.addWidget(self.prompt_edit, 1, 2, 1, 2)
        # Not the protection's strength.
        grid.addWidget(_label_for(self.edit_strength, "Edit strength"), 1, 4)
        grid.addWidget(self.edit_strength, 1, 5)
        grid.addWidget(_label_for(self.steps_spin, "Steps"), 1, 6)
        grid.addWidget(self.steps_spin, 1, 7)
        grid.setColumnStretch(3, 1)
        return grid

    def _note(self) -> QFrame:
        frame = QFrame()
        frame.setObjectName("Note")
        label = QLabel(UNFILTERED_NOTE)
        label.setWordWrap(True)
        lay = QHBoxLayout(frame)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.addWidget(label)
        self.note_label = label
        return frame

    def _tiles(self) -> QGridLayout:
        self.tiles = {
            "original": ImageTile("Original"),
            "protected": ImageTile("Protected"),
            "difference": ImageTile(f"What changed, amplified {DIFFERENCE_GAIN}×"),
            "edit_original": ImageTile("AI edit of the original"),
            "edit_protected": ImageTile("AI edit of the protected photo"),
            "edit_noisy": ImageTile("AI edit of random noise"),
        }
        self.tiles["edit_noisy"].setToolTip(
            "The same edit of the photo with random noise of the same strength: the baseline "
            "the protection must beat"
        )
        self.zoom_button = QPushButton("Zoom 100%")
        self.zoom_button.setObjectName("Flat")
        self.zoom_button.setToolTip("Judge how visible the protection is, pixel for pixel")
        self.zoom_button.clicked.connect(self.open_zoom)
        self.zoom_button.setStyleSheet("padding: 0 4px;")  # as tall as the other captions
        header = self.tiles["protected"].layout()
        assert isinstance(header, QVBoxLayout)
        caption_row = QHBoxLayout()
        header.removeWidget(self.tiles["protected"].caption)
        caption_row.addWidget(self.tiles["protected"].caption, 1)
        caption_row.addWidget(self.zoom_button)
        header.insertLayout(0, caption_row)
        grid = QGridLayout()
        grid.setSpacing(10)
        for index, tile in enumerate(self.tiles.values()):
            grid.addWidget(tile, index // 3, index % 3)
        for line in (0, 1, 2):  # six equal tiles, whatever the captions' widths
            grid.setColumnStretch(line, 1)
        for line in (0, 1):
            grid.setRowStretch(line, 1)
        return grid

    def _figures(self) -> QTableWidget:
        table = QTableWidget(3, len(FIGURE_KEYS))
        table.setObjectName("Figures")
        table.setHorizontalHeaderLabels([label for _key, label in FIGURE_KEYS])
        for column, (key, _label) in enumerate(FIGURE_KEYS):
            header = table.horizontalHeaderItem(column)
            if header is not None:
                header.setToolTip(f"{FIGURE_MEANINGS[key]}\n{FIGURE_ROWS_NOTE}")
        table.setVerticalHeaderLabels(
            [
                "Edit of protected vs edit of original",
                "Random noise of the same strength",
                "Protected photo vs original (visibility)",
            ]
        )
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.verticalHeader().setDefaultSectionSize(27)
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + 3 * 27 + 4)
        table.setCornerButtonEnabled(False)
        self.figures_table = table
        table.hide()  # until an AI edit's figures are in
        return table

    def _progress(self) -> QHBoxLayout:
        self.progress = thin_progress_bar()
        self.progress.setAccessibleName("Progress of the preview")
        self.status_label = muted_label("Press “Preview AI edit”. The first run loads the model.")
        self.status_label.setWordWrap(True)
        self.models_button = QPushButton("Open Models…")
        self.models_button.hide()
        self.preview_button = QPushButton("&Preview AI edit")  # Alt+P
        self.preview_button.setObjectName("Primary")
        self.cancel_button = QPushButton("Stop preview")  # the edit; Close is the dialog
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        col = QVBoxLayout()
        col.setSpacing(4)
        col.addWidget(self.progress)
        col.addWidget(self.status_label)
        row = QHBoxLayout()
        row.addLayout(col, 1)
        row.addWidget(self.models_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.preview_button)
        row.addWidget(self.close_button)
        return row

    def _connect(self) -> None:
        self.preset_combo.currentIndexChanged.connect(self._on_preset)
        self.prompt_edit.textEdited.connect(self._on_prompt_edited)
        self.photo_edit.textChanged.connect(self._update_controls)
        self.photo_edit.textChanged.connect(self._view_timer.start)
        self._view_timer.timeout.connect(self.show_protection)
        # Another edit: the last one's tiles, verdict and figures are not this one's (they
        # stayed under "Needs ... inpainting", and came back stale with the first edit).
        self.mode_combo.currentIndexChanged.connect(self._on_edit_mode)
        self.mode_combo.currentIndexChanged.connect(self._view_timer.start)  # its model
        self.protect_runner.succeeded.connect(self._on_protection)
        self.protect_runner.failed.connect(self._on_protection_failed)
        self.protect_runner.finished.connect(self._update_controls)
        self.preview_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)  # as Esc
        self.models_button.clicked.connect(self.open_models_requested)
        self.runner.core_event.connect(self._on_event)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.finished.connect(self._update_controls)
        self._on_preset()

    # --- inputs ---------------------------------------------------------------------------------
    def choose_photo(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Photo to preview",
            str(Path(self.photo_edit.text()).parent) if self.photo_edit.text() else "",
            photo_file_filter(all_files=False),
        )
        if path:
            self.photo_edit.setText(path)

    def _on_preset(self) -> None:
        key = str(self.preset_combo.currentData())
        if key in PROMPT_PRESETS:
            self.prompt_edit.setText(PROMPT_PRESETS[key][1])

    def _on_prompt_edited(self) -> None:
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(self.preset_combo.count() - 1)
        self.preset_combo.blockSignals(False)

    def settings(self) -> PreviewSettings:
        from spdesk.gui.protect_bridge import draws_its_own, job_mode_of, job_settings, uses_pattern

        # A pattern left selected from universal mode is not photo mode's: never read it.
        pattern = self.options.perturbation if uses_pattern(self.options) else ""
        protection = job_mode_of(self.options)
        tuned = protection in ("photo-finetune", "finetune")
        return PreviewSettings(
            photo=Path(self.photo_edit.text().strip()),
            perturbation=pattern,
            strength=self.options.strength,
            prompt=self.prompt_edit.text(),
            mode=str(self.mode_combo.currentData()),
            edit_strength=self.edit_strength.value(),
            steps=self.steps_spin.value(),
            seed=self.seed_spin.value(),
            working_size=self.working_size,
            protection=protection,
            generator=self.options.generator if draws_its_own(self.options) else "",
            fine_tuning=FineTuning.of(job_settings(self.options)) if tuned else None,
        )

    def model_feature(self) -> str:
        """The model store's feature the chosen edit needs ("preview" or "inpaint")."""
        return MODEL_FEATURE[str(self.mode_combo.currentData())]

    # --- the protection, without a model ---------------------------------------------------------
    def show_protection(self) -> bool:
        """Protect the chosen photo in memory and show it beside the original (no model)."""
        settings = self.settings()
        if not settings.photo.is_file():
            self._show_no_photo(settings.photo)
            return False
        if self.protect_runner.running:
            self._view_timer.start()  # once this one is back
            return False
        self.status_label.setText("Protecting the photo to show it…")
        self._protecting = settings.photo
        task = protection_task(settings, model_dir=self.model_dir)
        self.protect_runner.start(task)
        return True

    def _on_protection(self, shown: ProtectionShown) -> None:
        if self.photo_problem:  # the last photo's error, in the note bar: this one reads
            self._show_note(UNFILTERED_NOTE)
        self.photo_problem, self._problem_photo = "", None
        self.model_missing = not shown.model_ready
        if shown.model_ready:
            self._model_found()
        if self._protecting != self._view_photo:
            self._close_zoom()  # it showed the previous photo
        if self.outcome is not None and self._protecting != self._outcome_photo:
            self._clear_edit()  # the previous photo's edit, verdict and figures
        self.view = shown.view
        self._view_photo = self._protecting
        self.tiles["original"].set_image(shown.view.photo)
        self.tiles["protected"].set_image(shown.view.protected)
        self._in_tiles = shown.view
        self._caption_protected(fine_tuned=False)
        self.tiles["difference"].set_image(shown.view.difference)
        strength = self.options.strength
        psnr = "" if shown.view.psnr is None else f" (PSNR {shown.view.psnr:.1f} dB)"
        height, width = shown.view.photo.shape[:2]
        photo_name = self._protecting.name if self._protecting is not None else "The photo"
        too_small = too_small_to_protect(width, height, photo_name)
        if too_small is not None:  # as Protect refuses it: no copy, so none is shown
            self.status_label.setText(too_small.message)
            for tile in ("protected", "difference"):
                self.tiles[tile].clear("Too small to protect")
        elif shown.view.largest_change:
            self.status_label.setText(
                f"Protected at strength {strength:g}: each colour value moved by at most "
                f"{shown.view.largest_change} of 255{psnr}. Zoom 100% to compare pixel for pixel."
            )
        else:  # as the queue and the CLI say it: never "protected"
            self.status_label.setText(f"This photo is {UNCHANGED}.")
        if self.settings().fine_tuned and too_small is None:
            said = FINE_TUNING_NOT_SHOWN if shown.model_ready else FINE_TUNING_NEEDS_MODEL
            self.status_label.setText(f"{self.status_label.text()}\n{said}")
        self._show_visibility(shown.view.psnr)
        self.edit_refusal = _edit_refusal(shown.view.photo, self.settings().photo)
        if self.edit_refusal and too_small is not None:  # that says it all
            for name in EDIT_TILES:
                self.tiles[name].clear("Too small to protect")
        elif self.edit_refusal:  # said before any model is loaded, not as a failed edit
            self.status_label.setText(f"{self.status_label.text()}\n{self.edit_refusal}")
            for name in EDIT_TILES:
                self.tiles[name].clear("Too small for an AI edit")
        elif not shown.model_ready:
            self._show_model_needed()
        elif self.outcome is None and not self.runner.running:
            for name in EDIT_TILES:
                self.tiles[name].clear("Press “Preview AI edit”")

    def _on_edit_mode(self) -> None:
        if not self.runner.running:
            self._clear_edit()

    def _clear_edit(self) -> None:
        """Forget the last AI edit: its tiles, verdict, figures and note (another photo)."""
        if self.outcome is not None:
            self.note_label.setText(UNFILTERED_NOTE)  # the edit's own note replaced it
        self.outcome = None
        self._outcome_photo = None
        for name in EDIT_TILES:
            self.tiles[name].clear()
        self.verdict.setText("")
        self.verdict.setStyleSheet("")
        self.figures_table.clearContents()
        self.figures_table.hide()
        self.progress.setValue(0)

    def _close_zoom(self) -> None:
        if self.zoom is not None:
            self.zoom.close()
            self.zoom.deleteLater()  # a child of this dialog: closing only hides it
            self.zoom = None

    def _show_visibility(self, psnr: float | None) -> None:
        """The visibility row's PSNR, known before any edit (SSIM comes with the edit). The
        table waits for the edit's figures: a table of blanks says nothing (the status line
        gives the PSNR meanwhile)."""
        self.figures_table.clearContents()
        self.figures_table.hide()
        column = [name for name, _label in FIGURE_KEYS].index("psnr")
        item = QTableWidgetItem("—" if psnr is None else f"{psnr:.1f}")
        item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        self.figures_table.setItem(2, column, item)

    def _on_protection_failed(self, text: str) -> None:
        self.view = None
        self._view_photo = None
        self._clear_edit()  # nothing of an earlier photo is shown (nor zoomed) beside this one
        self._close_zoom()
        self.edit_refusal = ""
        for tile in self.tiles.values():
            tile.clear()
        # Said where the eye is, in the note bar above the tiles (not the safety note, which
        # is about an edit that cannot be made of this photo); the edit button is off.
        self.photo_problem, self._problem_photo = text, self._protecting
        self._show_note(text, error=True)
        self.tiles["original"].clear("Cannot be read")
        name = self._protecting.name if self._protecting is not None else "The photo"
        self.status_label.setText(f"{name} cannot be read: see above.")
        self._update_controls()

    def _show_no_photo(self, path: Path) -> None:
        """No photo at the path typed: nothing of the last one stays beside it (its tiles and
        "too small" status stayed, as if the new path were that photo)."""
        self.view = None
        self._view_photo = None
        self._clear_edit()
        self._close_zoom()
        self.edit_refusal = ""
        for tile in self.tiles.values():
            tile.clear()
        typed = bool(self.photo_edit.text().strip())
        self.status_label.setText(f"No photo at {path}." if typed else "Choose a photo to try.")
        self._update_controls()

    def _show_note(self, text: str, *, error: bool = False) -> None:
        """The bar above the tiles: the safety note, the model needed, or a photo's error."""
        self.note_label.setText(text)
        frame = self.note_label.parentWidget()
        if frame is not None and frame.property("error") != error:
            frame.setProperty("error", error)
            for widget in (frame, self.note_label):  # the style sheet's look for it
                widget.style().unpolish(widget)
                widget.style().polish(widget)

    def recheck_model(self) -> None:
        """See again whether the AI edit's model is installed (after Models… closed)."""
        if not self.model_missing:
            return
        mode = str(self.mode_combo.currentData())
        self.model_missing = not (self.model_dir is not None or _model_installed(mode))
        if not self.model_missing:
            self._model_found()
            if self.view is not None and self.outcome is None and not self.edit_refusal:
                for name in EDIT_TILES:
                    self.tiles[name].clear("Press “Preview AI edit”")
        self._update_controls()

    def _model_found(self) -> None:
        """The model is there: the edit is the main action again."""
        if self.note_label.text() in MODEL_NEEDED.values():
            self._show_note(UNFILTERED_NOTE)
        self._say_fine_tuning(FINE_TUNING_NEEDS_MODEL, FINE_TUNING_NOT_SHOWN)
        if self.models_button.isVisible() or self.models_button.isDefault():
            self.models_button.hide()
            set_primary(self.models_button, False)
            set_primary(self.preview_button, True)

    def _say_fine_tuning(self, old: str, new: str) -> None:
        """Say what the quick view leaves out as the model now allows: it said press "Preview
        AI edit" (to fine-tune) while that button was off for want of the model."""
        said = self.status_label.text()
        if old in said:
            self.status_label.setText(said.replace(old, new))

    def _show_model_needed(self) -> None:
        mode = str(self.mode_combo.currentData())
        for name in EDIT_TILES:
            self.tiles[name].clear(f"Needs {MODEL_NAME[mode]}\n(Open Models…)")
        self.model_missing = True
        self._show_note(MODEL_NEEDED[mode])
        self._say_fine_tuning(FINE_TUNING_NOT_SHOWN, FINE_TUNING_NEEDS_MODEL)
        self.models_button.show()
        set_primary(self.models_button, True)  # the one way on: getting the model
        set_primary(self.preview_button, False)

    # --- running --------------------------------------------------------------------------------
    def start(self) -> bool:
        if self.runner.running:
            return False
        settings = self.settings()
        if not settings.photo.is_file():
            self.status_label.setText(f"Photo not found: {settings.photo}")
            return False
        if self.edit_refusal:
            self.status_label.setText(self.edit_refusal)
            return False
        self.models_button.hide()
        set_primary(self.models_button, False)
        set_primary(self.preview_button, True)
        self.progress.setValue(0)
        self.status_label.setText("Preparing…")
        self.outcome, self._outcome_photo = None, None
        self._editing, self._editing_settings = settings.photo, settings
        self.verdict.setText("")
        for name in EDIT_TILES:
            self.tiles[name].clear("…")
        # The last edit's figures go with its tiles (they stayed beside an edit thrown away).
        self._show_visibility(self.view.psnr if self.view is not None else None)
        task = preview_task(
            settings,
            model_dir=self.model_dir,
            inpaint_dir=self.inpaint_dir,
            device=self.options.device,
            memo=self.fine_tuned,
        )
        self.runner.start(task)
        self._update_controls()
        return True

    def _on_cancelled(self) -> None:
        """Nothing of the stopped edit stays: its tiles said "…" and its bar stayed part-filled
        under "Preview cancelled."."""
        self.status_label.setText("Preview cancelled.")
        announce(self, self.status_label.text())
        self.progress.setValue(0)
        if self.outcome is None and self.view is not None and not self.edit_refusal:
            for name in EDIT_TILES:
                self.tiles[name].clear("Press “Preview AI edit”")

    def cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.status_label.setText("Cancelling after the current step…")

    def _on_event(self, event: Event) -> None:
        match event:
            case Loading(message=message):
                self.status_label.setText(message)
            case Progress(stage=stage, done=done, total=total):
                self.progress.setValue(round(1000 * done / (total or 1.0)))
                doing = "Fine-tuning the protection" if stage == "fine-tuning" else "Editing"
                self.status_label.setText(f"{doing}: step {done:.0f} of {total:.0f}")

    def _on_succeeded(self, outcome: PreviewOutcome | ModelNeeded) -> None:
        if isinstance(outcome, ModelNeeded):
            mode = str(self.mode_combo.currentData())
            self.status_label.setText(f"The AI edit needs the {MODEL_NAME[mode]} model.")
            self._show_model_needed()
            self._update_controls()
            return
        self.model_missing = False
        changed = self._changed_since_start()
        if changed:  # the edit is of other settings than those shown now
            for name in EDIT_TILES:
                self.tiles[name].clear("Press “Preview AI edit”")
            self.status_label.setText(changed)
            return
        self.outcome = outcome
        self._outcome_photo = self._editing
        result = outcome.result
        self.tiles["original"].set_image(outcome.photo)
        self.tiles["protected"].set_image(outcome.protected)
        self._in_tiles = outcome
        self._caption_protected(fine_tuned=True)
        self.tiles["difference"].set_image(amplified_difference(outcome.photo, outcome.protected))
        for name in EDIT_TILES:
            self.tiles[name].set_image(getattr(result, name))
        self._show_figures(result.figures)
        self.verdict.setText(result.verdict)
        colour = {True: "#15803d", False: "#b45309", None: "#b91c1c"}[result.worked]
        self.verdict.setStyleSheet(f"color: {colour};")
        self.note_label.setText(result.note)
        self.progress.setValue(1000)
        extra = (" " + " ".join(result.warnings)) if result.warnings else ""
        self.status_label.setText(f"Done in {result.seconds:.1f} s.{extra}")
        # The verdict is a label the focus is not on, and its colour a sighted user's alone.
        announce(self, f"{self.status_label.text()} {result.verdict}")

    def _changed_since_start(self) -> str:
        """What to say when the photo or an edit setting changed while the edit ran ("" when
        nothing did)."""
        settings = self.settings()
        if self._editing != settings.photo:
            return "Another photo was chosen during the edit: press “Preview AI edit” for it."
        if self._editing_settings != settings:
            return "The settings changed during the edit: press “Preview AI edit” again."
        return ""

    def _show_figures(self, figures: dict[str, dict[str, float | None]]) -> None:
        rows = ("protected_edit", "noise_edit", "visibility")
        for row, key in enumerate(rows):
            values = figures.get(key, {})
            for column, (name, _label) in enumerate(FIGURE_KEYS):
                value = values.get(name)
                text = (
                    "—" if value is None else (f"{value:.1f}" if name == "psnr" else f"{value:.3f}")
                )
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.figures_table.setItem(row, column, item)
        for column, (name, _label) in enumerate(FIGURE_KEYS):  # e.g. FSIM without piq
            empty = all(figures.get(key, {}).get(name) is None for key in rows)
            self.figures_table.setColumnHidden(column, empty)
        self.figures_table.show()

    def _on_failed(self, text: str) -> None:
        for name in EDIT_TILES:
            self.tiles[name].clear()
        self.status_label.setText(text)
        QMessageBox.warning(self, "Preview failed", text)

    def _update_controls(self) -> None:
        running = self.runner.running
        chosen = bool(self.photo_edit.text().strip())
        unreadable = bool(self.photo_problem) and self._problem_photo == self.settings().photo
        missing = chosen and not self.settings().photo.is_file()
        why = (
            "No photo at this path"
            if missing
            else "This photo cannot be read"
            if unreadable
            else f"Needs the {MODEL_NAME[str(self.mode_combo.currentData())]} model: Open Models…"
            if self.model_missing
            else self.edit_refusal
        )
        self.preview_button.setEnabled(not running and chosen and not why)
        self.preview_button.setToolTip(why)
        self.cancel_button.setEnabled(running)
        # Not for a photo too small to protect: there is no protected copy to look at.
        shown = self.view is not None and _protectable(self.view.photo)
        self.zoom_button.setEnabled(shown or self.outcome is not None)

    def _caption_protected(self, *, fine_tuned: bool) -> None:
        """Say whether the protected tile shows the photo fine-tuned, as its copy gets it,
        or (the quick view) before fine-tuning; other modes have nothing to say."""
        tile = self.tiles["protected"]
        if not self.settings().fine_tuned:
            tile.set_caption("Protected")
            tile.setToolTip("")
        elif fine_tuned:
            tile.set_caption("Protected, fine-tuned")
            tile.setToolTip("Fine-tuned as the protected copies get it.")
        else:
            tile.set_caption("Protected, before fine-tuning")
            tile.setToolTip(FINE_TUNING_NOT_SHOWN)

    def open_zoom(self) -> ZoomDialog | None:
        # What the protected tile shows (the fine-tuned photo once edited), while it is shown.
        current = [shown for shown in (self.view, self.outcome) if shown is not None]
        shown = next((s for s in current if s is self._in_tiles), None) or next(iter(current), None)
        if shown is None:
            return None
        self._close_zoom()  # one 100% view at a time; an earlier one is not kept hidden
        self.zoom = ZoomDialog(shown.photo, shown.protected, self)
        self.zoom.show()
        return self.zoom

    def stop_workers(self) -> bool:
        """Cancel the preview's tasks; True when they have ended (not just been let go)."""
        self._view_timer.stop()
        stopped = [runner.stop() for runner in (self.runner, self.protect_runner)]
        return all(stopped)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._stop_and_release()
        event.accept()

    def reject(self) -> None:
        self._stop_and_release()
        super().reject()

    def _stop_and_release(self) -> None:
        """Stop the workers, then free the SD pipelines (kept while an edit step let go still
        runs on them: closing calls this twice, and the second found the runners free)."""
        self.stop_workers()
        ENGINES.release()
        self.fine_tuned.forget()
