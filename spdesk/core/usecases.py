"""What a user does with spdesk, as one call each; the CLI, the app and the benchmarks call these.

Each use case owns its policy, so that the command line and the app behave alike by
construction (their own code only gathers settings and shows events):

- :func:`train_into_library`: train with a checkpoint named by the run's settings in the cache
  folder, written every ``checkpoint_every`` steps, at the end and on cancel; starting again
  with the same photo folder (resolved, not as typed) and settings resumes from it (a run whose
  save failed, at its end: nothing is trained again); a damaged checkpoint is
  removed, and one trained on photos the folder no longer holds replaced (the run starts afresh,
  saying why with :class:`StartingAfresh`, as it does when a stopped run of the folder had other
  settings). The result is then checked on held-out photos the product's way
  (:mod:`spdesk.core.trained_pattern`); :func:`save_to_library` files it by name and only then
  deletes the checkpoint (:func:`discard_training` when the user lets the result go), so that a
  save that fails loses no training; :func:`save_under_free_name` never fails for the name.
- :func:`protect_for_preview`: protect a photo in memory, as a job would, with the amplified
  difference (no Stable Diffusion model needed; fine-tuning needs its encoder);
  :func:`preview_photo` then runs the same AI edit on the original, the protected photo and
  noise of the same strength.
- Protecting photos is :class:`spdesk.core.jobs.ProtectJob` (``--engine ray``: its Ray twin):
  the job is already one call that owns its policy (naming, collisions, manifest and resume,
  the memory budget). Training into a file is :func:`spdesk.core.train.train_universal`.

Heavy libraries are imported inside the functions: this module is cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spdesk.core.events import CancelToken, Event, EventSink, Loading, ignore_events

if TYPE_CHECKING:
    import numpy as np

    from spdesk.core.apply import ApplyOptions
    from spdesk.core.preview import PreviewEngine, PreviewRequest, PreviewResult
    from spdesk.core.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)


# --- training into the library ------------------------------------------------------------------
@dataclass(frozen=True)
class StartingAfresh(Event):
    """A library run starts at step 0 although a stopped run of these photos left a
    checkpoint; ``reason`` says why, in words ("the photos changed since the run stopped at
    step 120"). Emitted before TrainStarted."""

    reason: str


def library_checkpoint(config: TrainConfig) -> Path:
    """Where the checkpoint of a library run with these settings lives (the cache folder)."""
    from spdesk.core.paths import cache_dir, ensure

    return ensure(cache_dir() / "training") / f"{config.resume_key()}.ckpt"


def drop_if_damaged(checkpoint: Path, config: TrainConfig) -> str | None:
    """Remove a checkpoint that cannot be resumed: its header unreadable or not a training
    checkpoint's, or its tensors damaged (not finite, misshapen, a step past the run); returns
    what was wrong, None when nothing was removed.

    Resuming is implicit for library runs, so a damaged checkpoint (a disk error, a hand-edited
    cache) must not stop every later start (training refuses to write over a file that is not
    a checkpoint; this one is in spdesk's own cache folder), nor train on NaN."""
    if not checkpoint.is_file():
        return None
    from spdesk.core.train import checkpoint_damage

    problem = checkpoint_damage(checkpoint, config)
    if problem:
        log.warning("removing the damaged training checkpoint %s: %s", checkpoint, problem)
        checkpoint.unlink(missing_ok=True)
    return problem


def stopped_run_with_other_settings(config: TrainConfig) -> Path | None:
    """The newest checkpoint in the cache of a library run on the same photo folder with other
    settings (a stopped run that ``config`` does not resume), or None.

    It is kept: its key is a hash of its settings and records no library name (the app names
    a result after training), so it cannot be told from another run the user may resume."""
    from spdesk.core.train import checkpoint_header

    own = library_checkpoint(config)
    folder = config.resumable_settings()["photos"]
    stopped = [
        path
        for path in own.parent.glob("*.ckpt")
        if path != own and _settings_folder(checkpoint_header(path)) == folder
    ]
    return max(stopped, key=_written, default=None)


def _settings_folder(header: dict[str, str] | None) -> str | None:
    """The resolved photo folder a checkpoint's header records (None: no header, or an older
    one)."""
    try:
        settings = json.loads((header or {}).get("settings", ""))
    except ValueError:
        return None
    return settings.get("photos") if isinstance(settings, dict) else None


def _written(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile
        return 0.0


def _why_afresh(checkpoint: Path, config: TrainConfig) -> str:
    """Why a library run with ``config`` starts at step 0 although a stopped run of its photos
    left a checkpoint ("" when none did); a damaged checkpoint is removed first."""
    from spdesk.core.train import checkpoint_header, checkpoint_step, settings_differences

    problem = drop_if_damaged(checkpoint, config)
    if problem:
        return f"the stopped run's checkpoint was damaged ({problem}); it was removed"
    stopped = None if checkpoint.is_file() else stopped_run_with_other_settings(config)
    if stopped is None:
        return ""
    differences = settings_differences(stopped, checkpoint_header(stopped) or {}, config)
    named = f" ({'; '.join(differences)})" if differences else ""
    step = checkpoint_step(stopped)
    at = f" at step {step}" if step is not None else ""
    return (
        f"the settings changed since the run on these photos stopped{at}{named}; "
        "that run is kept: its settings resume it"
    )


def train_into_library(
    config: TrainConfig,
    *,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train a universal perturbation for the library (not saved yet: see
    :func:`save_to_library`), resuming a cancelled run with the same settings.

    Raises Cancelled after writing the checkpoint; the errors of
    :func:`spdesk.core.train.train_universal` otherwise.
    """
    from spdesk.core.train import checkpoint_step, train_universal

    checkpoint = library_checkpoint(config)
    why = _why_afresh(checkpoint, config)
    if why:
        on_event(StartingAfresh(why))
    stopped_at = checkpoint_step(checkpoint)  # read before this run replaces it

    def photos_changed() -> None:  # its checkpoint is this folder's: the photos changed
        on_event(StartingAfresh(f"the photos changed since the run stopped at step {stopped_at}"))

    result = train_universal(
        config,
        checkpoint=checkpoint,
        resume=True,
        on_event=on_event,
        cancel=cancel,
        check=True,
        on_photos_changed=photos_changed,
    )
    result.checkpoint = checkpoint  # deleted once the result is saved or discarded
    return result


def discard_training(result: TrainResult) -> None:
    """The user let an unsaved library result go: its checkpoint goes too (the same settings
    then train afresh, as after saving)."""
    if result.checkpoint is not None:
        result.checkpoint.unlink(missing_ok=True)


def library_metadata(result: TrainResult, name: str) -> dict[str, Any]:
    """The result's metadata with the name it is filed under and a description for people."""
    metadata = dict(result.metadata)
    metadata["name"] = name
    if not metadata.get("description"):
        folder = Path(str(metadata.get("config", {}).get("photos", ""))).name
        metadata["description"] = (
            f"Trained on {metadata.get('train_photos')} of your photos from “{folder}”."
        )
    return metadata


def save_to_library(result: TrainResult, name: str, *, replace: bool = False) -> Path:
    """Write ``result`` into the library as ``name``, then delete its run's checkpoint;
    returns its path.

    Raises OutputExistsError when the name is taken and ``replace`` is False (the checkpoint
    is kept: nothing trained is lost).
    """
    from spdesk.core.errors import OutputExistsError
    from spdesk.core.perturbation import library_path_for, save_perturbation

    path = library_path_for(name)
    if path.exists() and not replace:
        raise OutputExistsError(
            f"“{name}” is already in your library ({path}).",
            hint="Choose another name, or replace it.",
        )
    metadata = library_metadata(result, name)
    eps = float(metadata.get("config", {}).get("eps", 8.0))
    save_perturbation(path, result.delta, eps=eps, metadata=metadata)
    discard_training(result)
    return path


def free_library_name(name: str) -> str:
    """``name``, or the first of "name-2", "name-3"… not in the library yet."""
    from spdesk.core.perturbation import library_path_for

    candidate, number = name, 1
    while library_path_for(candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def save_under_free_name(result: TrainResult, name: str) -> tuple[Path, str]:
    """Write ``result`` into the library as ``name``, or as the first free "name-2"… when
    ``name`` was taken meanwhile (another run, the app): a finished run is never thrown away
    for its name. Returns the path and the name it was saved under."""
    from spdesk.core.errors import OutputExistsError

    while True:
        free = free_library_name(name)
        try:
            return save_to_library(result, free), free
        except OutputExistsError:  # taken between the look and the save: the next one
            continue


# --- preview --------------------------------------------------------------------------------------
DIFFERENCE_GAIN = 8  # the amplified difference view: ±8/255 becomes ±64/255 around mid-grey
DIFFERENCE_SIDE = 1024  # its longest side: a tile never shows more (a 48 MP copy is 144 MB)


@dataclass
class ProtectionView:
    """A photo protected in memory, as a job would write it, to look at before sharing it.

    Attributes:
        photo: the original, uint8 (H, W, 3) at full size.
        protected: the protected photo, same shape.
        difference: ``protected - photo`` amplified ``DIFFERENCE_GAIN`` times around mid-grey,
            at most ``DIFFERENCE_SIDE`` pixels on its longest side.
        psnr: protected vs original at full size, in dB (None when identical), as protect
            reports it.
        largest_change: the largest change of one colour value, in 8-bit steps.
    """

    photo: np.ndarray
    protected: np.ndarray
    difference: np.ndarray
    psnr: float | None
    largest_change: int


@dataclass(frozen=True)
class FineTuning:
    """Per-photo fine-tuning as a job runs it (the :class:`~spdesk.core.jobs.ProtectSettings`
    fields of the same meaning): a preview of a fine-tuning job shows what its copies get."""

    steps: int
    encoder: str
    jpeg: int | None  # photo fine-tuning's JPEG re-save quality; None: off
    objective: str  # universal fine-tuning's
    device: str = "auto"

    @classmethod
    def of(cls, settings: Any) -> FineTuning:
        """The fine-tuning of a job's ``ProtectSettings``."""
        return cls(
            settings.finetune_steps,
            settings.encoder,
            settings.finetune_jpeg,
            settings.objective,
            settings.device,
        )

    def settings(
        self, protection: str, options: ApplyOptions, pattern: Path | None, generator: Path | None
    ) -> Any:
        """The job settings fine-tuning ``protection`` ("photo" or "universal") this way."""
        from spdesk.core.jobs import ProtectSettings

        photo = protection == "photo"
        return ProtectSettings(
            mode="photo-finetune" if photo else "finetune",
            perturbation=None if photo else pattern,
            generator=generator if photo else None,
            strength=options.strength,
            working_size=options.working_size,
            finetune_steps=self.steps,
            encoder=self.encoder,
            finetune_jpeg=self.jpeg if photo else None,
            objective=self.objective,
            device=self.device,
            workers=1,
        )


@dataclass
class PreviewOutcome:
    """The preview's result plus the full-size original and protected photo (100 % view)."""

    result: PreviewResult
    photo: np.ndarray
    protected: np.ndarray


def amplified_difference(
    photo: np.ndarray,
    protected: np.ndarray,
    gain: float = DIFFERENCE_GAIN,
    max_side: int = DIFFERENCE_SIDE,
) -> np.ndarray:
    """``protected - photo`` times ``gain`` around mid-grey (uint8): where and how the photo
    changed, made visible. Larger photos are sampled every few pixels down to ``max_side``
    (their own changes, not averages, which would cancel out to grey)."""
    import numpy as np

    step = max(1, math.ceil(max(photo.shape[:2]) / max_side))
    change = protected[::step, ::step].astype(np.float32) - photo[::step, ::step]
    amplified: np.ndarray = np.clip(np.rint(128 + gain * change), 0, 255).astype(np.uint8)
    return amplified


class FineTunedMemo:
    """The last fine-tuned photo a preview made, kept while its window stays open: fine-tuning
    takes minutes on a CPU, and the next preview often changes only the edit (its prompt, mode
    or strength), not the protection. Recalled only when everything that decides the pixels is
    the same, the content of the photo file included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[tuple[Any, ...], ProtectionView] | None = None

    def recall(self, key: tuple[Any, ...]) -> ProtectionView | None:
        with self._lock:
            return self._kept[1] if self._kept is not None and self._kept[0] == key else None

    def keep(self, key: tuple[Any, ...], view: ProtectionView) -> None:
        with self._lock:
            self._kept = (key, view)

    def forget(self) -> None:
        with self._lock:
            self._kept = None


REUSED_FINE_TUNING = "Reusing the photo fine-tuned for the last preview (same photo and protection)"


def _file_state(path: Path | None) -> str | None:
    """A file's content as a preview saw it (a digest: a rewrite may keep its size and time)."""
    if path is None:
        return None
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "blake2b").hexdigest()


def _fine_tuned_key(
    photo_path: Path,
    perturbation_path: Path | None,
    options: ApplyOptions,
    protection: str,
    generator: Path | None,
    fine_tuning: FineTuning,
) -> tuple[Any, ...] | None:
    """Everything that decides a fine-tuned preview's pixels (photo mode's noise: the key);
    None when a file cannot be read (the protection then says which, by its name)."""
    from spdesk.core.keys import install_key, key_id

    key = key_id(install_key()) if protection == "photo" else ""
    try:
        files = [_file_state(path) for path in (photo_path, perturbation_path, generator)]
    except OSError:
        return None
    return (*files, options, protection, fine_tuning, key)


def protect_for_preview(
    photo_path: Path,
    perturbation_path: Path | None,
    options: ApplyOptions,
    *,
    protection: str = "universal",
    generator: Path | None = None,
    fine_tuning: FineTuning | None = None,
    memo: FineTunedMemo | None = None,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
) -> ProtectionView:
    """Protect ``photo_path`` in memory as a job would in ``protection`` mode ("photo": the
    generator, None the bundled one; "universal": the perturbation, None the bundled one),
    then fine-tuned as a job would when ``fine_tuning`` is given (reporting
    ``Progress("fine-tuning", step, steps)``; Cancelled between steps; ``memo`` gives back the
    last fine-tuned view when nothing that decides it changed). Without fine-tuning it
    needs no Stable Diffusion model: what a user can look at before downloading one."""
    import numpy as np

    from spdesk.core.imageio import read_image, require_named_file

    # Decoded as the export decodes it (upright, 8-bit, colour-managed); no torch import here.
    require_named_file(Path(photo_path), "photo")
    key = None
    if fine_tuning is not None and memo is not None:
        key = _fine_tuned_key(
            photo_path, perturbation_path, options, protection, generator, fine_tuning
        )
        if key is not None and (kept := memo.recall(key)) is not None:
            on_event(Loading(REUSED_FINE_TUNING))
            return kept
    photo = np.asarray(read_image(Path(photo_path)).image.convert("RGB"))
    if fine_tuning is not None:
        settings = fine_tuning.settings(protection, options, perturbation_path, generator)
        protected = _fine_tuned(photo, Path(photo_path).name, settings, on_event, cancel)
    elif protection == "photo":
        protected = _generator_protected(photo, options, generator)
    else:
        from spdesk.core.apply import apply_perturbation
        from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

        perturbation = load_perturbation(perturbation_path or bundled_perturbation_path())
        protected = apply_perturbation(photo, perturbation, options)
    from spdesk.core.apply import photo_change

    psnr, largest = photo_change(photo, protected)
    difference = amplified_difference(photo, protected)
    view = ProtectionView(photo, protected, difference, psnr, largest)
    if memo is not None and key is not None:
        memo.keep(key, view)
    return view


def _generator_protected(
    photo: np.ndarray, options: ApplyOptions, generator: Path | None
) -> np.ndarray:
    """Photo mode's one-pass protection of ``photo``, as the job writes it."""
    import numpy as np

    from spdesk.core.colour import rgb_image
    from spdesk.core.generator_file import bundled_generator_path
    from spdesk.core.photo_protect import GeneratorProtector

    protector = GeneratorProtector(
        generator or bundled_generator_path(), options.strength, working_side=options.working_size
    )
    return np.asarray(protector.apply(rgb_image(photo))[0])


def _fine_tuned(
    photo: np.ndarray,
    key: str,
    settings: Any,
    on_event: EventSink,
    cancel: CancelToken | None,
) -> np.ndarray:
    """``photo`` protected by the fine-tuning job of ``settings``, through the protector the
    job itself builds (the same encoder, steps and start, so the same pixels as its copy)."""
    import numpy as np

    from spdesk.core.colour import rgb_image
    from spdesk.core.events import Progress
    from spdesk.core.jobs.protector import build_protector
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    on_event(Loading(f"Loading the fine-tuning encoder ({settings.encoder})…"))
    pattern = load_perturbation(settings.perturbation or bundled_perturbation_path())
    protector = build_protector(settings, pattern)

    def on_step(done: int, total: int) -> None:
        on_event(Progress("fine-tuning", done, total, message="fine-tuning"))

    [(protected, _figures)] = protector.protect_batch(
        [rgb_image(photo)], [key], cancel=cancel, on_step=on_step
    )
    return np.asarray(protected)


def preview_photo(
    photo_path: Path,
    perturbation_path: Path | None,
    request: PreviewRequest,
    options: ApplyOptions,
    engine: PreviewEngine,
    *,
    protection: str = "universal",
    generator: Path | None = None,
    fine_tuning: FineTuning | None = None,
    memo: FineTunedMemo | None = None,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
) -> PreviewOutcome:
    """Protect ``photo_path`` as :func:`protect_for_preview` does (fine-tuned first when
    ``fine_tuning`` is given) and run the same AI edit on the original, the protected photo and
    noise of the same size. ``perturbation_path`` is only read for universal protection (photo
    modes draw their own).

    Raises the named errors of reading, applying, the encoder and the engine
    (ModelMissingError when weights are not installed); Cancelled between steps.
    """
    from spdesk.core.geometry import check_previewable

    request.validate()
    cancel = cancel or CancelToken()
    if fine_tuning is not None:  # a missing model is said before minutes of fine-tuning
        engine.model_dir(request.mode)
    view = protect_for_preview(
        photo_path, perturbation_path, options, protection=protection, generator=generator,
        fine_tuning=fine_tuning, memo=memo, on_event=on_event, cancel=cancel,
    )  # fmt: skip
    check_previewable(view.photo, name=Path(photo_path).name)
    cancel.check()
    result = engine.run(
        view.photo,
        None,
        request,
        apply_options=options,
        protected=view.protected,
        on_event=on_event,
        cancel=cancel,
    )
    return PreviewOutcome(result, view.photo, view.protected)
