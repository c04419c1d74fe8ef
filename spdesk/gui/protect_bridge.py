"""What the main window asks of the core, as worker tasks and plain view updates.

The window never imports the job machinery itself: each function here returns a task for
:class:`~spdesk.gui.workers.TaskRunner` that imports the core module inside the worker thread, or
turns a core event into a small :class:`RowUpdate` the queue can show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spdesk.core.device import DeviceInfo
from spdesk.core.events import CancelToken, Event
from spdesk.core.jobs.events import (
    UNCHANGED,
    FailReason,
    FileDone,
    FileFailed,
    FileProgress,
    FileSkipped,
    SkipReason,
)
from spdesk.gui.settings import ProtectOptions
from spdesk.gui.text import LeftOut
from spdesk.gui.widgets.queue import RowStatus
from spdesk.gui.workers import Task


@dataclass(frozen=True)
class RowUpdate:
    """How one event changes the queue: a row's status, progress (0..1) and output path."""

    path: Path | None
    status: RowStatus | None = None
    fraction: float | None = None
    reason: str = ""
    output: Path | None = None
    gone: bool = False  # failed: not where it was added any more (Remove, not Retry)
    photo_fault: bool = False  # failed for its content: no Retry (it would fail alike)


@dataclass(frozen=True)
class Scan:
    """The photos found, in job order, why a job will fail some of them (by path), and what is
    left out, with why: folders that cannot be read and named inputs not found first, then
    files and folders that are not photos (hidden, symbolic links, copies)."""

    photos: list[Path]  # resolved, as the queue keys them: in the worker, not the GUI thread
    problems: dict[Path, str]
    left_out: dict[Path, LeftOut]
    inputs: tuple[Path, ...] = ()  # the paths scanned

    @property
    def unreadable(self) -> dict[Path, LeftOut]:
        """Of ``left_out``: what could not be read or found."""
        return {path: entry for path, entry in self.left_out.items() if entry.unreadable}


def scan_task(
    paths: list[Path],
    options: ProtectOptions | None = None,
    output_root: Path | None = None,
    shown_from: Sequence[Path] = (),
) -> Task:
    """A worker task listing the photos in ``paths`` and reading their headers (each file
    opened once), so a photo a job will fail is known at once, with the words the job will
    use; it stops at the next file once cancelled (closing the window).

    ``options`` and ``output_root``: the window's, as a job would be given them now, so the
    queue leaves out what that job would (copies named with its suffix, the outputs its output
    folder's manifest records), with the job's reasons: with "Save to" the folder added and
    the suffix ".safe", each add queued the last run's copies (``a.safe.jpg``) again.

    A file named on its own that is not a photo is left out as a folder's walk leaves it out
    (the job takes any file named on its own, and the command line fails a wrong one with its
    reason; in the window it became a row that failed, with a Retry that could never succeed,
    and moved the default output folder up to the folder holding it).

    ``shown_from``: folders added before, in which ``paths`` (listed again) were found: what is
    left out is named from them, as when they were listed first."""

    def run(_on_event: Callable[[Event], None], cancel: CancelToken) -> Scan:
        from spdesk.core.jobs.scan import scan_photos

        settings = _scan_settings(options)
        not_photos = {path: why for path in paths if (why := _not_a_photo(path))}
        wanted = [path for path in paths if path not in not_photos]
        scan = scan_photos(wanted, cancel, settings=settings, output_root=output_root)
        # Resolved here, off the GUI thread: 25,000 photos resolved there held the window 0.8 s.
        photos = [path.resolve() for path in scan.photos]
        texts = {
            p.resolve(): failure_text(p, e.message, e.hint or "") for p, e in scan.problems.items()
        }
        # What could not be read went unsaid: "Added 1 photo", a green run, and the photos of
        # a subfolder the account cannot read never queued (audit F3).
        left_out = {s.path: _unreadable_entry(s) for s in scan.unreadable}
        left_out |= {path: LeftOut(NOT_FOUND, unreadable=True) for path in scan.missing}
        left_out |= {path: LeftOut(why) for path, why in not_photos.items()}
        left_out |= {s.path: LeftOut(s.reason, s.folder) for s in scan.left_out}
        left_out = {
            path: replace(entry, shown=shown_from_input(path, [*shown_from, *paths]))
            for path, entry in left_out.items()
        }
        return Scan(photos, texts, left_out, tuple(paths))

    return run


def left_out_for_the_output(reason: str) -> bool:
    """Whether a file or folder is left out for the job's output folder or suffix (the output
    folder itself, a file named with the suffix or recorded in that folder's manifest): with
    another "Save to" folder or suffix it may be photos to protect."""
    from spdesk.core.discovery import OUTPUT_FOLDER, OUTPUT_NAME, RECORDED_OUTPUT

    return reason in (OUTPUT_FOLDER, OUTPUT_NAME, RECORDED_OUTPUT)


def shown_from_input(path: Path, inputs: Sequence[Path]) -> str:
    """``path`` from the folder of ``inputs`` it was found in, that folder's name first
    (``Trip/sub/loop``); an input itself by its name."""
    from spdesk.core.files import shown

    for given in inputs:
        if path.is_relative_to(given):
            return shown(path.relative_to(given.parent))
    return shown(path.name or path)


# A file or a folder (a file has no photos to list): as a queued photo's row says it.
NOT_FOUND = "not found: moved or deleted since it was added"


def _unreadable_entry(skipped: Any) -> LeftOut:
    """A folder (or a named input) the scan could not read, said as the queue's: its photos
    are not in the queue (a job's words, "were not protected", come after a run)."""
    from spdesk.core.discovery import NOT_PROTECTED

    reason = skipped.reason.removesuffix(f": {NOT_PROTECTED}")
    if skipped.folder:
        why = f"{reason}: its photos are not in the queue"
        if skipped.hint:  # a sentence in the core's report: said inside this one here
            why += f" ({skipped.hint[0].lower()}{skipped.hint[1:].rstrip('.')})"
        return LeftOut(why, True, unreadable=True)
    return LeftOut(reason.removeprefix("folder "), unreadable=True)  # a named file or folder


def _scan_settings(options: ProtectOptions | None) -> Any:
    """The job settings a scan leaves out with; None (the defaults) where the window's cannot
    make a job (a suffix left empty, which the job refuses with why: taken as is, every photo
    would read as a copy named with it)."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.export import check_suffix

    if options is None:
        return None
    try:
        check_suffix(options.suffix)
        return job_settings(options)
    except ConfigError:
        return None


def _not_a_photo(path: Path) -> str | None:
    """Why the file ``path`` is not a photo, by the folder walk's rule (its first bytes, else its
    suffix); None for a photo, a folder or anything else the scan reports itself (a missing or
    special file: a named pipe is never opened)."""
    from spdesk.core.discovery import content_reason
    from spdesk.core.formats import sniff_file

    if not path.is_file():
        return None
    try:
        fmt = sniff_file(path)
    except OSError as error:
        return content_reason(path.name, None, error)
    return content_reason(path.name, fmt)


def failure_text(path: Path, reason: str, hint: str) -> str:
    """A failed photo's reason and hint as its queue row says them (the row names the photo)."""
    return f"{reason.replace(str(path), path.name)} {hint}".strip()


# Said of a photo that failed for its own content (damaged, not a photo, a form spdesk does
# not protect), after what to do about it: no Retry is offered, as it would read the same file
# the same way ("Protect photos" takes it again once the file is replaced).
NO_RETRY = "A retry would fail the same way."


def gone_text(path: Path) -> str:
    """Why a queued photo that is not where it was added any more failed, and what to do."""
    from spdesk.core.files import shown

    return (
        f"moved or deleted since it was added: it is no longer in {shown(path.parent)}. "
        "Remove it from the queue, or add it again from where it is now."
    )


ENCODER_NAMES = {
    "sd15": "Stable Diffusion's own encoder (SD 1.5's VAE, about 170 MB)",
    "taesd": "the fast encoder (TAESD, 10 MB)",
}


def encoder_problem(spec: str, use: str = "Fine-tuning") -> str:
    """Why ``use`` (fine-tuning, training) with encoder ``spec`` cannot start ("" when it can);
    disk checks only."""
    if spec in ENCODER_NAMES:
        from spdesk.core.models.store import ENCODER_FEATURES, ModelStore

        if ModelStore().find(ENCODER_FEATURES[spec]) is not None:
            return ""
        return f"{use} with {ENCODER_NAMES[spec]} needs that model, which is not installed."
    if Path(spec).expanduser().exists():
        return ""
    return f"The encoder {spec} is not there any more."


def default_output_root(photos: list[Path], added: Sequence[Path] = ()) -> Path:
    """A "<folder> (protected)" folder outside the input tree: beside the folder holding the
    photos' roots, each photo's root the top-most of the ``added`` folders (those the user
    dropped or chose) holding it, or for a photo added on its own its folder.

    From the photos' own folders alone, a camera card dropped whole (``H`` holding
    ``H/DCIM/100CANON``) had its copies go to ``H/DCIM/100CANON (protected)``: inside the
    folder the user dropped, on the card (audit F4)."""
    roots = input_roots(photos, added)
    if not roots:
        return home_output()
    try:
        common = Path(os.path.commonpath([os.path.abspath(root) for root in roots]))
    except ValueError:  # other drives: beside the first
        common = roots[0]
    name = f"{common.name or 'photos'} (protected)"
    if _no_room_beside(common):
        return home_output() / name
    return common.parent / name


def home_output() -> Path:
    """Where copies go when beside the photos will not do: a folder in the user's home."""
    return Path.home() / "spdesk protected"


def _no_room_beside(folder: Path) -> bool:
    """Whether a folder beside ``folder`` is out of the question: a card or disk dropped whole
    is a mount point (``/media/me/CARD``, ``/Volumes/CARD``: their parent is the system's)
    or a drive's root (``E:\\``: "beside" it is on it), or the parent is not writable."""
    return (
        folder.parent == folder or os.path.ismount(folder) or not os.access(folder.parent, os.W_OK)
    )


def input_roots(photos: list[Path], added: Sequence[Path] = ()) -> list[Path]:
    """The folders the user gave that hold ``photos``: for each photo the top-most of the
    ``added`` folders holding it, else its own folder; the top-most added folders when there
    are no photos yet (a folder being listed). In the order first met."""
    tops: list[Path] = []
    for folder in sorted({Path(os.path.abspath(f)) for f in added}, key=lambda f: len(f.parts)):
        if not any(top in folder.parents for top in tops):
            tops.append(folder)
    if not photos:
        return tops
    roots: dict[Path, None] = {}
    # A Path made for each photo's folder held the window 0.4 s at 25,000 photos: the folders'
    # names first, a Path for each folder.
    folders = dict.fromkeys(os.path.dirname(os.fspath(photo)) for photo in photos)
    for parent in dict.fromkeys(Path(os.path.abspath(folder)) for folder in folders):
        top = next((t for t in tops if parent.is_relative_to(t)), parent)
        roots[top] = None
    return list(roots)


def protect_task(
    paths: list[Path],
    output_root: Path,
    options: ProtectOptions,
    mirror_base: Path | None = None,
) -> Task:
    """A worker task running the core protect job on ``paths`` and returning its report;
    ``mirror_base``: the folder the output mirrors below (see ``ProtectJob``)."""

    def run(on_event: Callable[[Event], None], cancel: CancelToken) -> Any:
        from spdesk.core import jobs

        settings = job_settings(options)
        job = jobs.ProtectJob(list(paths), output_root, settings, mirror_base=mirror_base)
        return job.run(on_event, cancel)

    return run


def job_mode_of(options: ProtectOptions) -> str:
    """The core job's mode for the window's options. The "finetune" choice fine-tunes photo
    mode's perturbation, or the universal pattern when one of the user's own is chosen (as
    ``spdesk protect --fine-tune`` does)."""
    from spdesk.core.jobs.settings import job_mode

    fine_tune = options.mode == "finetune"
    choice = None if fine_tune else options.mode
    return job_mode(choice, fine_tune=fine_tune, own_pattern=bool(options.perturbation))


def uses_pattern(options: ProtectOptions) -> bool:
    """Whether the job lays the chosen universal pattern (photo modes draw their own)."""
    return job_mode_of(options) in ("universal", "finetune")


def draws_its_own(options: ProtectOptions) -> bool:
    """Whether the job draws each photo's own perturbation with a generator the user chose
    (a generator chosen in photo mode is left out of a universal job, as a pattern is of a
    photo mode's: it would change the job's fingerprint)."""
    return bool(options.generator) and not uses_pattern(options)


def job_settings(options: ProtectOptions) -> Any:
    """The core job's settings for the window's options. A pattern chosen in universal mode
    and left selected when switching to photo mode is not the job's: passing it would change
    the job's fingerprint and protect photos finished in photo mode again."""
    from spdesk.core import jobs

    mode = job_mode_of(options)
    return jobs.ProtectSettings(
        perturbation=(
            Path(options.perturbation) if uses_pattern(options) and options.perturbation else None
        ),  # "" is the bundled pattern
        generator=Path(options.generator) if draws_its_own(options) else None,  # likewise
        strength=options.strength,
        mode=mode,
        finetune_steps=options.finetune_steps,
        encoder=options.finetune_encoder,
        suffix=options.suffix,
        collision=options.collision,
        format=options.format,
        quality=options.quality,
        device=options.device,
        strip_metadata="none" if options.keep_location else "gps",
    )


def device_task(choice: str) -> Task:
    """A worker task returning the :class:`~spdesk.core.device.DeviceInfo` of the device
    ``choice`` resolves to (imports torch)."""

    def run(_on_event: Callable[[Event], None], _cancel: CancelToken) -> DeviceInfo:
        from spdesk.core.device import device_info

        return device_info(choice)

    return run


def interpret(event: Event) -> RowUpdate | None:
    """The queue update an event of the protect job means, or None for job-level events."""
    match event:
        case FileProgress(source=path, done=done, total=total):
            return RowUpdate(path, RowStatus.PROTECTING, fraction=done / (total or 1.0))
        case FileDone(source=path, output=output, notes=notes) as done:
            said = (UNCHANGED, *notes) if done.unchanged else notes  # as the CLI says
            return RowUpdate(path, RowStatus.DONE, 1.0, "; ".join(said), output)
        case FileSkipped(source=path, kind=SkipReason.ALREADY_DONE, reason=reason, output=output):
            return RowUpdate(path, RowStatus.DONE, 1.0, reason, output)  # a re-run: done before
        case FileSkipped(source=path, kind=SkipReason.OUTPUT_EXISTS, reason=reason):
            advice = "choose “Add a number” under More options › If it exists to keep both"
            return RowUpdate(path, RowStatus.SKIPPED, reason=f"{reason}: {advice}")
        case FileSkipped(source=path, reason=reason):
            return RowUpdate(path, RowStatus.SKIPPED, reason=reason)
        case FileFailed(source=path, kind=FailReason.MISSING):  # "X does not exist", Retry
            return RowUpdate(path, RowStatus.FAILED, reason=gone_text(path), gone=True)
        case FileFailed(source=path, reason=reason, hint=hint, photo_fault=True):
            text = f"{failure_text(path, reason, hint)} {NO_RETRY}"
            return RowUpdate(path, RowStatus.FAILED, reason=text, photo_fault=True)
        case FileFailed(source=path, reason=reason, hint=hint):
            return RowUpdate(path, RowStatus.FAILED, reason=failure_text(path, reason, hint))
    return None


class FinetuneClock:
    """The time a fine-tuning job takes, measured from the steps it actually runs.

    Loading the encoder and reading the first photo are not steps, so the clock starts at the
    first step it sees; from then on every progress event refines the seconds per step, and the
    time left is the steps left at that rate. Qt-free and given ``now``, so tests need no sleep.

    Args:
        steps: fine-tuning steps per photo.
        photos: photos the job fine-tunes.
        now: the clock (seconds).
    """

    def __init__(self, steps: int, photos: int, now: Callable[[], float] = time.monotonic) -> None:
        self.steps = max(1, steps)
        self.photos = photos
        self.now = now
        self._steps_done: dict[Path, float] = {}
        self._start: tuple[float, float] | None = None  # (time, steps done) at the first step

    def update(self, event: Event) -> None:
        """Follow one job event (fine-tuning progress, a photo done, skipped or failed)."""
        match event:
            case FileProgress(source=path, done=done):  # 0-1 reading, 1-2 steps, 2-3 saving
                steps = min(max(done - 1.0, 0.0), 1.0) * self.steps
                self._record(path, steps)
            case FileDone(source=path):
                self._record(path, float(self.steps))
            case FileSkipped(source=path) | FileFailed(source=path):
                if path not in self._steps_done:
                    self.photos = max(0, self.photos - 1)  # no steps for it

    def _record(self, path: Path, steps: float) -> None:
        self._steps_done[path] = max(self._steps_done.get(path, 0.0), steps)
        if self._start is None and self.done > 0:
            self._start = (self.now(), self.done)

    @property
    def done(self) -> float:
        return sum(self._steps_done.values())

    @property
    def seconds_per_step(self) -> float | None:
        """Measured since the first step; None until a step has been timed."""
        if self._start is None:
            return None
        since, first = self._start
        steps = self.done - first
        return (self.now() - since) / steps if steps >= 1 else None

    def left(self) -> float | None:
        """Seconds left at the measured rate."""
        rate = self.seconds_per_step
        return None if rate is None else rate * max(0.0, self.photos * self.steps - self.done)


def common_folder(paths: list[Path]) -> Path | None:
    """The folder holding every one of ``paths`` (None: none, or they are on other drives)."""
    try:
        return Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths]))
    except ValueError:
        return None
