"""The settings column of the main window: perturbation, strength, mode and output."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from spdesk.core.errors import SpdeskError
from spdesk.core.perturbation import (
    Perturbation,
    bundled_perturbation_path,
    library_perturbations,
    load_perturbation,
    perturbation_label,
)
from spdesk.core.speed_figures import DEVICE_WORDS, finetune_seconds_per_photo
from spdesk.core.strength_figures import BUNDLED_UNIVERSAL_GAIN, visibility_tip, visibility_words
from spdesk.core.trained_pattern import PatternVisibility, ProductGain
from spdesk.gui.settings import (
    COLLISIONS,
    DEFAULT_STRENGTH,
    FORMATS,
    STRENGTH_PRESETS,
    ProtectOptions,
    strength_tip,
)
from spdesk.gui.text import FEATURE_LABELS, gain_text
from spdesk.gui.widgets.combo import ElidedComboBox
from spdesk.gui.widgets.counts import StepsSpinBox

MODES = {
    "photo": "Photo-specific — hard to see",
    "universal": "Universal — instant, stronger, visible",
    "finetune": "Fine-tuned per photo — stronger",
}
"""The protection modes offered, in order (one radio button each)."""
FINETUNE_ENCODERS = {
    "sd15": "Best: Stable Diffusion's own encoder",
    "taesd": "Fast: a small stand-in",
}
"""The encoders fine-tuning works against, in plain words (SD 1.5's VAE and TAESD: the model
names are in the tooltip and in Models…)."""
NEEDED_MODELS = {
    "sd15": f"Stable Diffusion's encoder (Models…, “{FEATURE_LABELS['train'][0]}”)",
    "taesd": f"the fast encoder (Models…, “{FEATURE_LABELS['taesd'][0]}”)",
}
"""What the mode note says a missing encoder is, and where Models… lists it."""
CHOOSE_ENCODER = "\x00choose"  # the combo entry that asks for an encoder file
CHOOSE_GENERATOR = "\x00choose"  # the combo entry that asks for a generator file
BUNDLED_GENERATOR = "spdesk's own"
MEASURED_ON = {"cpu": "CPU", "cuda": "NVIDIA GPU", "mps": "Apple GPU"}
"""The device a remembered fine-tuning time was measured on, in words."""
# A pause in typing a folder or a suffix that counts as a change: each key re-marked every
# finished row of the queue (0.2 s a key at 5,000 rows, 0.9 s at 25,000).
TYPING_PAUSE_MS = 300


def worst_case_psnr(eps: float) -> float:
    """PSNR (dB) of protected vs original if every value moved by the full budget ``eps``/255."""
    return 20.0 * math.log10(255.0 / max(eps, 1e-6))


def _tab_to_the_chosen(group: QButtonGroup) -> None:
    """Tab goes into a group of choices at the chosen one. Qt moves a group's Tab stop only
    when one of its buttons gets the focus (a click, an arrow key): a choice made by the
    program (the saved settings, a GPU's recommended mode, the exact strength) left it on the
    first button, and the focus showed on "Low" with "Medium" chosen, where Space chose Low."""
    chosen = group.checkedButton()
    for button in group.buttons():
        tab_stop = chosen is None or button is chosen
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus if tab_stop else Qt.FocusPolicy.ClickFocus)


def _wrap(label: QLabel) -> QLabel:
    label.setWordWrap(True)
    label.setObjectName("Muted")
    return label


class OptionsPanel(QWidget):
    """Edits a :class:`ProtectOptions`; emits ``changed`` whenever the user changes something."""

    changed = Signal()
    import_requested = Signal()
    choose_encoder_requested = Signal()
    choose_generator_requested = Signal()
    choose_output_requested = Signal()

    def __init__(self, options: ProtectOptions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("OptionsPanel")
        self._typing = QTimer(self)  # "changed" once the typing in a text field pauses
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_PAUSE_MS)
        self._typing.timeout.connect(self.changed)
        self._perturbation: Perturbation | None = None
        self._perturbation_error = ""  # why the chosen pattern did not load
        self._measured_step_times: dict[tuple[str, str], float] = {}  # (device kind, encoder)
        self._default_output: Path | None = None  # where copies go with no folder chosen
        self._default_used = False  # that folder has this queue's earlier copies
        self._output_problem = ""  # why the window would refuse the typed folder ("" if none)
        self._mode_chosen = False  # set by a click on a mode, never by the app's own choice
        self._encoder_chosen = False  # likewise, by the user's pick of an encoder
        self._generator = ""  # the photo modes' generator file ("" = the bundled one)
        self._generator_error = ""  # why that file cannot be used ("" when it can)
        self.device_kind = "cpu"  # what the time estimates assume until the device is known
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)
        # The few choices that matter are always shown; the rest waits under "More options".
        perturbation_box = self._build_perturbation_box()
        layout.addWidget(self._build_strength_box())
        layout.addWidget(self._build_mode_box())
        layout.addWidget(perturbation_box)  # shown with the modes that use a pattern
        layout.addWidget(self._build_output_box())
        self.more_button = QToolButton()
        self.more_button.setText("More &options")  # Alt+O
        self.more_button.setCheckable(True)
        self.more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more_button.setArrowType(Qt.ArrowType.RightArrow)
        self.more_button.setObjectName("Flat")
        self.more = QWidget()
        more_lay = QVBoxLayout(self.more)
        more_lay.setContentsMargins(0, 0, 0, 0)
        more_lay.setSpacing(12)
        more_lay.addWidget(self._build_file_box())
        self.more.hide()
        self.more_button.toggled.connect(self.show_more)
        layout.addWidget(self.more_button)
        layout.addWidget(self.more)
        layout.addStretch(1)
        self.set_options(options)

    def show_more(self, shown: bool) -> None:
        self.more.setVisible(shown)
        for shortcut in self._closed_letters:
            shortcut.setEnabled(not shown)
        self.more_button.setChecked(shown)
        self.more_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown:  # it opens below the column's end on a short screen: bring it into view
            QTimer.singleShot(0, self._scroll_to_more)

    def _scroll_to_more(self) -> None:
        scroll = self.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        if scroll is None or not self.more.isVisible():
            return
        for _ in range(3):  # the column's new height, then the scroll range it gives
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        scroll.ensureWidgetVisible(self.more, 0, 16)
        scroll.ensureWidgetVisible(self.more_button, 0, 16)  # its top, if it is taller

    # --- perturbation ---------------------------------------------------------------------------
    def _build_perturbation_box(self) -> QGroupBox:
        box = QGroupBox("P&attern")  # Alt+A goes to it (P opens the Protect menu)
        self.perturbation_combo = ElidedComboBox()
        self.perturbation_combo.setAccessibleName("Pattern")
        self.perturbation_combo.setMinimumContentsLength(16)
        self.perturbation_combo.currentIndexChanged.connect(self._on_perturbation_changed)
        import_button = QToolButton()
        import_button.setText("Import…")
        import_button.setToolTip("Use a pattern file (.safetensors) from disk")
        import_button.clicked.connect(self.import_requested)
        row = QHBoxLayout()
        row.addWidget(self.perturbation_combo, 1)
        row.addWidget(import_button)
        self.perturbation_info = _wrap(QLabel())
        lay = QVBoxLayout(box)
        lay.addLayout(row)
        lay.addWidget(self.perturbation_info)
        self.perturbation_box = box
        return box

    def refresh_perturbations(self, select: str | None = None) -> None:
        """Re-list the bundled default, the library and ``select`` (an imported file). A chosen
        file that is missing (an unplugged disk) stays chosen, marked: the bundled pattern in
        its place would protect with another pattern, and forget the choice on closing."""
        current = select if select is not None else self.perturbation_path()
        combo = self.perturbation_combo
        combo.blockSignals(True)
        combo.clear()
        if _bundled_path() is not None:
            combo.addItem(self._default_item_text(), "")
        for path in library_perturbations():
            combo.addItem(perturbation_label(path), str(path))
        if current and combo.findData(current) < 0:
            missing = not Path(current).exists()
            label = Path(current).stem if missing else perturbation_label(Path(current))
            combo.addItem(f"{label} ({'not found' if missing else 'file'})", current)
        for index in range(combo.count()):  # a long name is elided: its file in the tooltip
            if combo.itemData(index):
                combo.setItemData(index, combo.itemData(index), Qt.ItemDataRole.ToolTipRole)
        index = combo.findData(current)
        combo.setCurrentIndex(index if index >= 0 else 0)
        combo.blockSignals(False)
        combo.update_tooltip()
        self._on_perturbation_changed()

    def perturbation_path(self) -> str:
        data = self.perturbation_combo.currentData()
        return str(data) if data is not None else ""

    def perturbation(self) -> Perturbation | None:
        return self._perturbation

    def perturbation_error(self) -> str:
        """Why the chosen pattern could not be loaded ("" when it loaded or none is chosen)."""
        return self._perturbation_error

    def _on_perturbation_changed(self) -> None:
        self._perturbation, self._perturbation_error = None, ""
        if self.perturbation_combo.count() == 0:
            self.perturbation_info.setText(
                "No pattern installed yet. Import one, or train your own (Tools menu)."
            )
            self.changed.emit()
            return
        path = self.perturbation_path() or str(_bundled_path())
        try:
            self._perturbation = load_perturbation(path)
        except SpdeskError as error:
            self._perturbation_error = _pattern_problem(path, error)
            self.perturbation_info.setText(self._perturbation_error)
        else:
            self._show_pattern_info()
        self._update_generator_row()
        self._update_strength_note()
        self.changed.emit()

    def _default_item_text(self) -> str:
        # Photo fine-tuning starts from each photo's own pattern, not from the bundled one.
        return "Each photo's own" if self.mode() == "finetune" else "Default (bundled)"

    def _show_pattern_info(self) -> None:
        if self._perturbation is None:
            return
        bundled = not self.perturbation_path()
        if bundled and self.mode() == "finetune":
            self.perturbation_info.setText(
                "Fine-tuning starts from each photo's own pattern, as in the photo-specific "
                "mode. Choose a pattern here to fine-tune that one instead."
            )
            self.perturbation_info.setToolTip("")
            return
        self.perturbation_info.setText(_describe(self._perturbation, bundled))
        self.perturbation_info.setToolTip(self._perturbation.description or "")

    # --- strength -------------------------------------------------------------------------------
    def _build_strength_box(self) -> QGroupBox:
        box = QGroupBox("&Strength")  # Alt+S goes to the chosen one
        self.strength_group = QButtonGroup(self)
        presets = QHBoxLayout()
        presets.setSpacing(0)
        for index, (name, eps) in enumerate(STRENGTH_PRESETS.items()):
            # A bare "4", "8" or "16" meant nothing to a user: the number is in the tooltip.
            button = QPushButton(name.title())
            button.setToolTip(strength_tip(name, eps))
            button.setCheckable(True)
            button.setObjectName("Segment")
            button.setProperty("eps", eps)
            self.strength_group.addButton(button, index)
            presets.addWidget(button)
        self.strength_group.idClicked.connect(self._on_preset)
        self.strength_group.buttonToggled.connect(lambda: _tab_to_the_chosen(self.strength_group))
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(1.0, 64.0)
        self.strength_spin.setDecimals(1)
        self.strength_spin.setSingleStep(1.0)
        self.strength_spin.setSuffix(" / 255")  # as the Train dialog's
        self.strength_spin.setToolTip(
            "Exact strength: the largest change of any colour value, out of 255 "
            f"({DEFAULT_STRENGTH:g} by default)"
        )
        self.strength_spin.valueChanged.connect(self._on_strength_spin)
        self.strength_note = _wrap(QLabel())
        lay = QVBoxLayout(box)
        lay.addLayout(presets)
        lay.addWidget(self.strength_note)
        return box

    def _on_preset(self, index: int) -> None:
        eps = float(self.strength_group.button(index).property("eps"))
        self.strength_spin.setValue(eps)

    def _on_strength_spin(self, value: float) -> None:
        for button in self.strength_group.buttons():
            button.setChecked(abs(float(button.property("eps")) - value) < 1e-6)
        self._update_strength_note()
        self.changed.emit()

    def _update_strength_note(self) -> None:
        eps = self.strength_spin.value()
        text = visibility_words(self._pattern_family(), eps)
        text += " Weaker protection." if eps <= 4 else " Stronger protection." if eps > 8 else ""
        if self._pattern_family() == "photo" and self._generator:  # figures of spdesk's own
            text += f" Measured with {BUNDLED_GENERATOR} generator, not yours."
        # The number behind Low, Medium and High, which their tooltips alone said: Qt shows
        # no tooltip to the keyboard (accessibility audit).
        text += f" Each colour value changes by at most {eps:g} out of 255."
        tip = f"{visibility_tip(self._pattern_family(), eps)}.\n"
        tip += f"Each colour value changes by at most {eps:g} out of 255 (PSNR ≥ "
        tip += f"{worst_case_psnr(eps):.1f} dB"
        if self._perturbation is not None and self._pattern_family() == "universal":
            delta = self._perturbation.at_strength(eps)
            rms = float((delta.astype("float64") ** 2).mean() ** 0.5)
            if rms > 0:
                tip += f"; this pattern: {20 * math.log10(1 / rms):.1f} dB"
        self.strength_note.setText(text)
        self.strength_note.setToolTip(tip + ").")

    # --- mode -----------------------------------------------------------------------------------
    def _build_mode_box(self) -> QGroupBox:
        box = QGroupBox("&Mode")
        self.mode_group = QButtonGroup(self)
        self.mode_radios: dict[str, QRadioButton] = {}
        lay = QVBoxLayout(box)
        for key, label in MODES.items():
            radio = QRadioButton(label)
            radio.setProperty("mode", key)
            radio.toggled.connect(self._on_mode)
            radio.clicked.connect(self._on_mode_clicked)  # the user's own choice
            self.mode_group.addButton(radio)
            self.mode_radios[key] = radio
            lay.addWidget(radio)
        self.mode_group.buttonToggled.connect(lambda: _tab_to_the_chosen(self.mode_group))
        self.finetune_radio = self.mode_radios["finetune"]
        self.steps_spin = StepsSpinBox()
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setAccessibleName("Fine-tuning steps")  # no label beside it
        self.encoder_combo = ElidedComboBox()
        for key, label in FINETUNE_ENCODERS.items():
            self.encoder_combo.addItem(label, key)
        self.encoder_combo.addItem("Encoder file or folder…", CHOOSE_ENCODER)
        self.encoder_combo.setAccessibleName("Fine-tuning encoder")  # no label beside it
        self.encoder_combo.setToolTip(
            "What the fine-tuning works against: Stable Diffusion's own encoder (the best "
            "protection; SD 1.5's VAE, about 170 MB), a small stand-in for it (about ten times "
            "faster on a CPU; TAESD, 10 MB), or an encoder file you already have"
        )
        # A chosen file's long name must not widen the settings column.
        self.encoder_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        # 12 made the fine-tuned mode's row 2 points wider than the column at 1366x768 once its
        # vertical scroll bar showed: the settings scrolled sideways.
        self.encoder_combo.setMinimumContentsLength(10)
        self.encoder_combo.activated.connect(self._on_encoder_activated)
        self.encoder_combo.currentIndexChanged.connect(self._on_mode)
        self.mode_note = _wrap(QLabel())
        self.steps_spin.valueChanged.connect(self._on_mode)
        self.finetune_row = QWidget()  # shown with the fine-tuned mode only
        # The encoder on a line of its own: beside the steps it had 140 points at 1366x768,
        # and "Best: Stable Diffusion's own encoder" showed as "Best: St… encoder".
        finetune_lines = QVBoxLayout(self.finetune_row)
        finetune_lines.setContentsMargins(22, 0, 0, 0)
        steps_line = QHBoxLayout()
        steps_line.addWidget(self.steps_spin)
        steps_line.addStretch(1)
        finetune_lines.addLayout(steps_line)
        finetune_lines.addWidget(self.encoder_combo)
        lay.addWidget(self.finetune_row)
        lay.addWidget(self._build_generator_row())  # under the mode that uses it
        lay.addWidget(self.mode_note)
        self._mode_lines = lay
        return box

    def _build_generator_row(self) -> QWidget:
        """The generator the photo modes draw each photo's perturbation with: spdesk's own, or
        one the user trained (``spdesk train-generator``), chosen as a file."""
        self.generator_combo = ElidedComboBox()
        self.generator_combo.addItem(BUNDLED_GENERATOR, "")
        self.generator_combo.addItem("Generator file…", CHOOSE_GENERATOR)
        self.generator_combo.setAccessibleName("Protection generator")
        self.generator_combo.setToolTip(
            "What draws each photo's own pattern: spdesk's own generator, or one you trained "
            "with spdesk train-generator"
        )
        self.generator_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.generator_combo.setMinimumContentsLength(10)  # as the encoder's: the column's width
        self.generator_combo.activated.connect(self._on_generator_activated)
        label = QLabel("&Generator")
        label.setBuddy(self.generator_combo)
        self.generator_note = _wrap(QLabel())
        self.generator_row = QWidget()  # shown with the modes that draw each photo's own
        lines = QVBoxLayout(self.generator_row)
        lines.setContentsMargins(22, 0, 0, 0)
        line = QHBoxLayout()
        line.addWidget(label)
        line.addWidget(self.generator_combo, 1)
        lines.addLayout(line)
        lines.addWidget(self.generator_note)
        return self.generator_row

    def generator_path(self) -> str:
        """The chosen generator file, "" for spdesk's own."""
        return self._generator

    def generator_error(self) -> str:
        """Why the chosen generator cannot be used ("" when it can): a file gone missing since
        it was chosen, or changed into one spdesk refuses."""
        return self._generator_error

    def set_generator(self, path: str) -> None:
        """Select the generator file ``path`` ("" for spdesk's own), listed once by its name;
        a file that is missing stays chosen, marked, as a missing pattern does."""
        combo = self.generator_combo
        combo.blockSignals(True)
        for index in reversed(range(combo.count())):  # only the chosen file is listed
            if combo.itemData(index) not in ("", CHOOSE_GENERATOR):
                combo.removeItem(index)
        if path:
            missing = not Path(path).exists()
            combo.insertItem(1, f"{Path(path).stem}{' (not found)' if missing else ''}", path)
            combo.setItemData(1, path, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(path)))
        combo.blockSignals(False)
        combo.update_tooltip()
        self._generator = path
        self._generator_error = generator_problem(path) if path else ""
        self._show_generator_info()
        self._update_strength_note()
        self.changed.emit()

    def choose_generator(self, path: str) -> str:
        """The file the user picked ("" when they cancelled): selected when spdesk can use it
        as a generator, else the generator chosen before stays; returns why it was refused
        ("" when it was not)."""
        problem = generator_problem(path) if path else ""
        self.set_generator(path if path and not problem else self._generator)
        if problem:
            problem += f"\nNothing was changed: {self.generator_combo.currentText()} stays chosen."
        return problem

    def _on_generator_activated(self) -> None:
        if self.generator_combo.currentData() == CHOOSE_GENERATOR:
            self.choose_generator_requested.emit()
        elif str(self.generator_combo.currentData()) != self._generator:
            self.set_generator(str(self.generator_combo.currentData()))

    def _show_generator_info(self) -> None:
        note = self._generator_error
        if not note and self._generator:
            note = _describe_generator(Path(self._generator))
        self.generator_note.setText(note)
        self.generator_note.setVisible(bool(note))

    def _update_generator_row(self) -> None:
        """Shown where the job draws each photo's own pattern: photo mode, and fine-tuning
        with no pattern of the user's (it starts from the generator's)."""
        photo = self.mode() == "photo"
        drawn = photo or (self.mode() == "finetune" and not self.perturbation_path())
        self.generator_row.setVisible(drawn)
        # Under its mode's button: below "Fine-tuned per photo" it read as fine-tuning's alone.
        above = self.mode_radios["photo"] if photo else self.finetune_row
        self._mode_lines.removeWidget(self.generator_row)
        self._mode_lines.insertWidget(self._mode_lines.indexOf(above) + 1, self.generator_row)

    def _on_mode_clicked(self) -> None:
        self._mode_chosen = True
        if self.mode() == "finetune" and not self._encoder_chosen:
            self._prefer_an_installed_encoder()
        self.changed.emit()

    def _prefer_an_installed_encoder(self) -> None:
        """An encoder that is here in place of the default one that is not: fine-tuning asked
        for SD 1.5's VAE (a 3 GB download) where TAESD was installed and ready."""
        current = self.encoder()
        if current not in FINETUNE_ENCODERS or _installed(current):
            return
        here = [encoder for encoder in FINETUNE_ENCODERS if _installed(encoder)]
        if here:
            self.set_encoder(here[0])

    def recommend(self, mode: str, encoder: str, steps: int) -> bool:
        """Select ``mode`` with ``encoder`` and ``steps`` in place of the default photo mode,
        unless the user chose a mode (or a pattern of their own, which the fine-tuned mode would
        use instead); True when it was selected."""
        if self._mode_chosen or self.mode() != "photo" or self.perturbation_path():
            return False
        self.steps_spin.setValue(steps)
        if not self._encoder_chosen:
            self.set_encoder(encoder)
        self.set_mode(mode)
        return True

    def _pattern_family(self) -> str:
        """Whose visibility figures apply: each photo's own pattern, or a universal one."""
        universal = self.mode() == "universal" or (
            self.mode() == "finetune" and bool(self.perturbation_path())
        )
        return "universal" if universal else "photo"

    def mode(self) -> str:
        checked = self.mode_group.checkedButton()
        return str(checked.property("mode")) if checked is not None else "photo"

    def set_mode(self, mode: str) -> None:
        self.mode_radios.get(mode, self.mode_radios["photo"]).setChecked(True)

    def _on_encoder_activated(self) -> None:
        if self.encoder_combo.currentData() != CHOOSE_ENCODER:  # a file: once one is chosen
            self._encoder_chosen = True
        if self.encoder_combo.currentData() == CHOOSE_ENCODER:
            self.choose_encoder_requested.emit()

    def encoder(self) -> str:
        """ "sd15", "taesd" or the path of the encoder file or folder the user chose."""
        data = self.encoder_combo.currentData()
        return str(data) if data not in (None, CHOOSE_ENCODER) else "sd15"

    def set_encoder(self, spec: str) -> None:
        """Select ``spec``; a path is listed by its name (added once) and is the user's choice
        (only the user chooses a file)."""
        combo = self.encoder_combo
        if spec not in FINETUNE_ENCODERS:
            self._encoder_chosen = True
        if combo.findData(spec) < 0 and spec not in FINETUNE_ENCODERS:
            combo.insertItem(combo.count() - 1, Path(spec).name, spec)
            combo.setItemData(combo.count() - 2, spec, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(spec)))

    def set_device_kind(self, kind: str) -> None:
        """Base the time estimates on figures for ``kind`` ("cpu", "cuda", "mps"), the device
        the job will run on; changes no setting."""
        self.device_kind = kind
        self._update_mode_note()

    def _on_mode(self) -> None:
        # Photo-specific protection writes its own pattern: the pattern choice is not used.
        self.perturbation_box.setVisible(self.mode() != "photo")
        self.finetune_row.setVisible(self.mode() == "finetune")
        self._update_generator_row()
        default = self.perturbation_combo.findData("")
        if default >= 0:
            self.perturbation_combo.setItemText(default, self._default_item_text())
        self._show_pattern_info()
        self._update_mode_note()
        self._update_strength_note()
        self.changed.emit()

    def refresh_model_note(self) -> None:
        """Say again what the chosen mode needs (a model installed or removed meanwhile)."""
        self._update_mode_note()

    def _update_mode_note(self) -> None:
        if self.mode() == "finetune":
            encoder = self.encoder()
            model = NEEDED_MODELS.get(encoder)
            cost = self._finetune_cost(encoder)
            needs = f"Needs {model}. " if model and not _installed(encoder) else ""
            start = (
                "Strengthens your pattern on each photo. "
                if self.perturbation_path()
                else "Strengthens each photo's own pattern, as hard to see. "
            )
            self.mode_note.setText(start + needs + cost)
        elif self.mode() == "photo":
            self.mode_note.setText(
                "Each photo gets its own pattern, hidden in its texture and drawn from a secret "
                "kept on this computer; no download, well under a second per photo."
            )
        else:
            self.mode_note.setText("Adds the chosen pattern; no model needed, well under a second.")

    def set_measured_step_times(self, times: dict[tuple[str, str], float]) -> None:
        """Seconds per fine-tuning step measured on this computer, by (device kind, encoder):
        the estimate for the same device uses them instead of :mod:`spdesk.core.speed_figures`."""
        self._measured_step_times = dict(times)
        self._on_mode()

    def _finetune_cost(self, encoder: str) -> str:
        steps = self.steps_spin.value()
        measured = self._measured_step_times.get((self.device_kind, encoder))
        if measured is not None:
            where = MEASURED_ON.get(self.device_kind, self.device_kind)
            return (
                f"About {_duration(steps * measured)} per 512 px photo on this computer's "
                f"{where} ({measured:.2g} s per step in its last run)."
            )
        # Photo fine-tuning (no pattern of the user's) also encodes a JPEG re-save each step.
        jpeg = not self.perturbation_path()
        seconds = finetune_seconds_per_photo(encoder, steps, self.device_kind, jpeg=jpeg)
        if seconds is None:
            return "Time per photo is measured as it runs."
        where = DEVICE_WORDS.get(self.device_kind, self.device_kind)
        after = "; far less on a GPU." if self.device_kind == "cpu" else "."
        return (
            f"About {_duration(seconds)} per 512 px photo on {where} (measured live once it "
            f"runs){after}"
        )

    # --- output ---------------------------------------------------------------------------------
    def _build_output_box(self) -> QGroupBox:
        box = QGroupBox("Sa&ve to")
        self.output_edit = QLineEdit()
        self.output_note = _wrap(QLabel())
        self.output_edit.textChanged.connect(self._update_output_note)
        self.show_default_output(None)
        self._emit_when_typed(self.output_edit)
        # A typed folder is looked at once typing pauses, not on each key (a slow network path)
        self._typing.timeout.connect(self._update_output_note_for_typed)
        self.output_edit.editingFinished.connect(self._update_output_note_for_typed)
        # Screen readers announce a button by its text ("…") and a combo box by its value:
        # the controls without words of their own are named.
        self.output_edit.setAccessibleName("Save to folder")
        self.output_button = QToolButton()
        self.output_button.setText("…")
        self.output_button.setToolTip("Choose the output folder")
        self.output_button.setAccessibleName("Choose the output folder")
        self.output_button.clicked.connect(self.choose_output_requested)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.output_edit, 1)
        folder_row.addWidget(self.output_button)
        lay = QVBoxLayout(box)
        lay.addLayout(folder_row)
        lay.addWidget(self.output_note)
        return box

    def _emit_when_typed(self, edit: QLineEdit) -> None:
        """``changed`` once typing in ``edit`` pauses, or the user leaves it or presses Enter:
        not on each key."""
        edit.textChanged.connect(self._typing.start)
        edit.editingFinished.connect(self.flush_typing)

    def flush_typing(self) -> None:
        """Emit ``changed`` now for text typed and not yet said (a job about to start must see
        the folder and suffix as they are); nothing when none waits."""
        if self._typing.isActive():
            self._typing.stop()
            self.changed.emit()

    def show_default_output(self, folder: Path | None, *, used: bool = False) -> None:
        """Say where the copies go when no folder is chosen: ``folder`` once photos are queued
        (a new folder beside them, never inside: the originals stay as they are; ``used``: the
        folder this queue's earlier copies went to, kept for the photos added since)."""
        self._default_output = folder
        self._default_used = used
        self.output_edit.setPlaceholderText("a new folder beside the photos")
        where = str(folder) if folder is not None else "a “… (protected)” folder beside the photos"
        self.output_edit.setToolTip(f"Protected copies go here; left empty: {where}")
        self._update_output_note()

    def _update_output_note_for_typed(self) -> None:
        """Say at once when the typed folder is a file (the job would refuse it only when it
        starts); nothing for a folder that is there or is not yet (the job makes it)."""
        typed = self.output_edit.text().strip()
        try:
            a_file = bool(typed) and Path(typed).expanduser().is_file()
        except (OSError, RuntimeError):  # a name the system refuses, "~nobody/x" of no user:
            a_file = False  # the job says why when it starts
        if a_file:
            self.output_note.setText(
                f"“{Path(typed).name}” is a file, not a folder: choose a folder for the "
                "protected copies."
            )
        elif self._output_problem:
            self.output_note.setText(self._output_problem)
        shown = a_file or bool(self._output_problem)
        self.output_note.setVisible(shown or self._default_note_shown())

    def set_output_problem(self, text: str) -> None:
        """Say under "Save to" why the window would refuse the typed folder when the job starts
        (what only the window knows: the folders added); "" when nothing is wrong."""
        if text != self._output_problem or (text and not self.output_note.isVisibleTo(self)):
            self._output_problem = text
            self._update_output_note_for_typed()

    def _default_note_shown(self) -> bool:
        return self._default_output is not None and not self.output_edit.text().strip()

    def _update_output_note(self) -> None:
        folder = self._default_output
        shown = self._default_note_shown()
        if folder is not None:  # a wrapped line: a long folder name is never cut off
            # Where it is in full, which the field's tooltip alone said (accessibility audit).
            where = _breakable(folder.parent)
            text = f"New folder “{folder.name}”, beside the photos in {where}."
            if self._default_used:
                text = f"Same folder as this queue's earlier copies: “{folder.name}”, in {where}."
            self.output_note.setText(text)
        self.output_note.setVisible(shown)

    def _build_file_box(self) -> QGroupBox:
        box = QGroupBox("Details")
        self.suffix_edit = QLineEdit()
        self._emit_when_typed(self.suffix_edit)
        self.collision_combo = QComboBox()
        for key, label in zip(
            COLLISIONS, ("Add a number", "Skip the photo", "Replace the old copy"), strict=True
        ):
            self.collision_combo.addItem(label, key)
        self.collision_combo.currentIndexChanged.connect(self.changed)
        self.format_combo = QComboBox()
        for key, label in zip(FORMATS, ("Same as photo", "PNG", "JPEG", "WebP"), strict=True):
            self.format_combo.addItem(label, key)
        self.format_combo.currentIndexChanged.connect(self._on_format)
        self.quality_spin = QSpinBox()
        self.quality_spin.setRange(50, 100)
        self.quality_spin.valueChanged.connect(self.changed)
        # Alt and the underlined letter goes to each field: none of the window's other
        # letters (S, M, A, V, O; the menus' F, P, T, H).
        form = QFormLayout(box)
        form.addRow("&Exact strength", self.strength_spin)
        form.addRow("&Name ends with", self.suffix_edit)
        form.addRow("&If it exists", self.collision_combo)
        form.addRow("Fo&rmat", self.format_combo)
        form.addRow("&Quality", self.quality_spin)
        self.keep_location_check = QCheckBox("Keep the &location (GPS)")
        self.keep_location_check.setToolTip(
            "Off: the protected copies do not say where the photos were taken (the camera, "
            "date and other details stay). On: the GPS position is copied too."
        )
        self.keep_location_check.toggled.connect(self.changed)
        form.addRow("", self.keep_location_check)
        self._letters_while_closed(
            {"E": self.strength_spin, "N": self.suffix_edit, "I": self.collision_combo,
             "R": self.format_combo, "Q": self.quality_spin, "L": self.keep_location_check}
        )  # fmt: skip
        return box

    def _letters_while_closed(self, fields: dict[str, QWidget]) -> None:
        """Alt with a Details letter while More options is closed: Qt looks past a hidden
        label's letter, so it did nothing. It opens More options and does what the letter does
        there (goes to the field; ticks the box). Off while open, where the labels answer."""
        self._closed_letters: list[QShortcut] = []
        for letter, field in fields.items():
            shortcut = QShortcut(QKeySequence(f"Alt+{letter}"), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(lambda field=field: self._open_more_at(field))
            self._closed_letters.append(shortcut)

    def _open_more_at(self, field: QWidget) -> None:
        self.show_more(True)
        field.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if isinstance(field, QCheckBox):
            field.click()

    def _on_format(self) -> None:
        self.quality_spin.setEnabled(self.format_combo.currentData() != "png")
        self.changed.emit()

    # --- whole ----------------------------------------------------------------------------------
    def set_options(self, options: ProtectOptions) -> None:
        self.refresh_perturbations(options.perturbation)
        self.set_generator(options.generator)
        self.strength_spin.setValue(options.strength)
        self._on_strength_spin(options.strength)
        self.steps_spin.setValue(options.finetune_steps)
        self._encoder_chosen = options.encoder_chosen
        self.set_encoder(options.finetune_encoder)
        self.set_mode(options.mode)
        self._on_mode()
        self.output_edit.setText(options.output_dir)
        self.suffix_edit.setText(options.suffix)
        self.collision_combo.setCurrentIndex(
            max(0, self.collision_combo.findData(options.collision))
        )
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(options.format)))
        self.quality_spin.setValue(options.quality)
        self.keep_location_check.setChecked(options.keep_location)
        self._mode_chosen = options.mode_chosen
        if self.mode() == "finetune" and not self._encoder_chosen:
            self._prefer_an_installed_encoder()
        self._on_format()

    def options(self, device: str = "auto") -> ProtectOptions:
        return ProtectOptions(
            perturbation=self.perturbation_path(),
            generator=self.generator_path(),
            strength=self.strength_spin.value(),
            mode=self.mode(),
            finetune_steps=self.steps_spin.value(),
            finetune_encoder=self.encoder(),
            output_dir=self.output_edit.text().strip(),
            suffix=self.suffix_edit.text(),
            collision=str(self.collision_combo.currentData()),
            format=str(self.format_combo.currentData()),
            quality=self.quality_spin.value(),
            device=device,
            keep_location=self.keep_location_check.isChecked(),
            mode_chosen=self._mode_chosen,
            encoder_chosen=self._encoder_chosen,
        )


def _bundled_path() -> Path | None:
    """The bundled default perturbation, or None when this install has none."""
    try:
        path = bundled_perturbation_path()
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    return path if path.is_file() else None


def _pattern_problem(path: str, error: SpdeskError) -> str:
    """Why the chosen pattern cannot be used, and what to do (a missing file: where it was)."""
    if Path(path).exists():
        return error.user_text()
    return (
        f"The pattern file {path} is not found: its disk may be unplugged, or the file was "
        "moved or deleted.\nConnect the disk, or choose another pattern or import it again."
    )


def generator_problem(path: str) -> str:
    """Why the file ``path`` cannot be the photo modes' generator, in the window's words ("" when
    it can): not found, a pattern (chosen under Pattern instead), or damaged. Its header and
    weights are read, not the network built: no torch import."""
    from spdesk.core.generator_file import read_spec
    from spdesk.core.perturbation import generator_weights_problem

    file = Path(path)
    if not file.exists():
        return (
            f"The generator file {path} is not found: its disk may be unplugged, or the file "
            f"was moved or deleted.\nConnect the disk, or choose another generator or "
            f"“{BUNDLED_GENERATOR}”."
        )
    try:
        read_spec(file)
    except SpdeskError as error:
        # Only a file refused as a generator is tried as a pattern: tried first, a generator's
        # weights were read twice (the pattern loader checks them to call it damaged or not).
        try:
            load_perturbation(file)
        except SpdeskError:
            return error.message
        return (
            f"{file.name} is a universal pattern, not a protection generator: use it in the "
            "Universal mode, under Pattern (Import…). A generator is made by spdesk "
            "train-generator."
        )
    problem = generator_weights_problem(file)
    if problem is not None:
        return (
            f"{file.name} is a damaged protection generator ({problem.rstrip('.')}): choose "
            f"another generator or “{BUNDLED_GENERATOR}”."
        )
    return ""


def _describe_generator(path: Path) -> str:
    """What a chosen generator file is, in a sentence (its path in the combo's tooltip)."""
    from spdesk.core.generator_file import read_spec

    spec = read_spec(path)
    encoder = spec.metadata.get("encoder")
    against = f", trained against {encoder}" if isinstance(encoder, str) and encoder else ""
    # The window draws at its own strength; `spdesk protect --generator` without --strength
    # uses the file's, so a file trained at another budget says which it was.
    return (
        f"Your generator “{path.stem}”{against}, at ±{spec.eps:g} out of 255; here it runs at "
        "the strength set above."
    )


def _describe(perturbation: Perturbation, bundled: bool) -> str:
    """In a photographer's words (the file's technical description stays in the tooltip)."""
    meta = perturbation.metadata
    parts = ["spdesk's own pattern."] if bundled else [perturbation.description or ""]
    gain = meta.get("gain_over_sign")
    if bundled:  # through the product's whole path, not the training's own check
        low, high = (gain_text(g, 1) for g in sorted(BUNDLED_UNIVERSAL_GAIN.values()))
        parts.append(
            f"Disturbs AI editors {low}–{high} as much as random noise (measured on test photos)."
        )
    elif (product := ProductGain.from_metadata(meta)) is not None:
        shown = gain_text(product.gain, 1)
        verdict = "weaker than noise there" if product.gain < 1 else "measured on held-out photos"
        parts.append(
            f"Disturbs a {product.editor} px AI editor {shown} as much as random noise ({verdict})."
        )
    elif isinstance(gain, int | float) and 0 < gain < math.inf:  # not an edited Infinity
        verdict = "weaker than noise: train it longer" if gain < 1 else "measured in training"
        shown = gain_text(float(gain), 1)
        parts.append(f"Disturbs AI editors {shown} as much as random noise ({verdict}).")
    visibility = PatternVisibility.from_metadata(meta)
    if visibility is not None:
        parts.append(visibility.brief())
    return " ".join(p for p in parts if p)


def _breakable(path: Path) -> str:
    """``path`` with a line break allowed (a zero-width space) after each separator and every
    20 characters of a longer name: a long path wraps in a note, where it would widen the
    settings column."""
    shown, run = [], 0
    for character in str(path):
        shown.append(character)
        run += 1
        if character in "/\\" or run == 20:
            shown.append("\u200b")
            run = 0
    return "".join(shown)


def _duration(seconds: float) -> str:
    if seconds < 9.5:  # a GPU's fraction of a second must not read "0 s"
        return f"{seconds:.1g} s" if seconds < 1 else f"{seconds:.0f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _installed(encoder: str) -> bool:
    """Whether the model-store encoder ``encoder`` is installed (disk checks only): the note
    asks for it only when it is missing."""
    from spdesk.core.models import store

    return encoder in store.installed_encoders()
