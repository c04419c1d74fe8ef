"""Batch protection: files and folders in, protected copies out, nothing lost.

:class:`ProtectJob` is the one call behind ``spdesk protect``, the app's Protect button and the
benchmark. It walks the inputs (by content), protects each photo with the universal perturbation
(or fine-tunes it per photo), writes each output atomically into a mirrored folder structure, and
records every step in the output folder's manifest, so that a re-run with the same settings skips
finished photos and a killed job resumes where it stopped. Progress is reported through events;
the cancel token is checked between files, between stages of a file and inside fine-tuning.

The universal path never imports torch: Pillow and numpy only, so a batch starts at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from spdesk.core.apply import ApplyOptions, Figures, UniversalApplier, change_figures
from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    DiskFullError,
    ImageError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
    PerturbationFileError,
)
from spdesk.core.events import CancelToken, Event, EventSink, ignore_events
from spdesk.core.export import (
    COLLISIONS,
    DEFAULT_SUFFIX,
    ExportOptions,
    clean_stale_temps,
    output_error,
    output_format,
    output_name,
    output_name_pattern,
    parse_format,
    prepare,
    publish,
    settings_warnings,
    unique_candidates,
    write_temp,
)
from spdesk.core.imageio import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    Discovery,
    DiscoveryOptions,
    InputPhoto,
    discover,
    read_error,
    read_image,
    sniff_file,
)
from spdesk.core.manifest import DONE, FAILED, MANIFEST_NAME, SKIPPED, Manifest, SourceSignature
from spdesk.core.perturbation import Perturbation, bundled_perturbation_path, load_perturbation

if TYPE_CHECKING:
    from spdesk.core.finetune import FineTuner

log = logging.getLogger(__name__)

MODES = ("universal", "finetune")
_COLLISION_ALIASES = {"suffix": "unique", "rename": "unique", "replace": "overwrite"}


# --- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProtectSettings:
    """Everything that decides how a job protects and writes photos.

    Attributes:
        perturbation: perturbation file; None uses the one bundled with spdesk.
        strength: budget in 8-bit steps, (0, 64]; None keeps the perturbation's own.
        mode: "universal" (instant) or "finetune" (per-photo optimisation with ``encoder``).
        finetune_steps: optimisation steps per photo in "finetune" mode.
        finetune_batch: photos of one size fine-tuned together; None picks 8 on a CUDA GPU
            (one pass for several photos) and 1 elsewhere. It does not change the result.
        suffix: added to each output's stem: ``IMG_0001.protected.jpg``.
        collision: when an output name is taken: "skip" (default), "unique" (``-2``, ``-3``...)
            or "overwrite" (a previous output; never an original). "suffix" means "unique".
        format: "png", "jpeg", "webp", "tiff"; None or "same" keeps each photo's format.
        quality: JPEG/WebP quality (95; below 90 weakens the protection).
        device: torch device for fine-tuning ("auto", "cpu", "cuda", "mps").
        encoder: encoder spec for fine-tuning ("sd15", a folder or a weights file).
        objective: fine-tuning objective(s).
        working_size: short side of the editor's working view, in pixels (512).
        strip_metadata: "none", "gps" or "all" (see :class:`~spdesk.core.export.ExportOptions`).
        randomize: per-photo tile offset and flips; seed: their seed.
        max_pixels: photos with more pixels are refused before decoding.
        follow_symlinks: follow symbolic links while walking folders.
        allow_output_in_input: allow the output folder inside an input folder.
        redo: protect again photos the manifest lists as finished.
        workers: photos processed at once (decode, protect, encode overlap; 1 = strictly one
            after the other); by default one more than the CPU cores, at most 4 (see
            :func:`default_workers`). Fine-tuning always uses one.
    """

    perturbation: Path | None = None
    strength: float | None = None
    mode: str = "universal"
    finetune_steps: int = 50
    finetune_batch: int | None = None
    suffix: str = DEFAULT_SUFFIX
    collision: str = "skip"
    format: str | None = None
    quality: int = 95
    device: str = "auto"
    encoder: str = "sd15"
    objective: str = "encoder"
    working_size: int = 512
    strip_metadata: str = "none"
    randomize: bool = False
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    follow_symlinks: bool = False
    allow_output_in_input: bool = False
    redo: bool = False
    workers: int = field(default_factory=lambda: default_workers())

    def __post_init__(self) -> None:
        collision = _COLLISION_ALIASES.get(self.collision, self.collision)
        object.__setattr__(self, "collision", collision)
        object.__setattr__(self, "strip_metadata", self.strip_metadata or "none")
        if collision not in COLLISIONS:
            raise ConfigError(
                f"Unknown collision policy {self.collision!r}: use skip, unique or overwrite."
            )
        if self.mode not in MODES:
            raise ConfigError(f"Unknown mode {self.mode!r}: use universal or finetune.")
        if self.mode == "finetune" and not 1 <= self.finetune_steps <= 10_000:
            raise ConfigError(
                f"Fine-tuning steps must be between 1 and 10000, got {self.finetune_steps}."
            )
        if self.finetune_batch is not None and not 1 <= self.finetune_batch <= 256:
            raise ConfigError(
                "The fine-tuning batch must be between 1 and 256 photos, "
                f"got {self.finetune_batch}."
            )
        if not 8 <= self.working_size <= 8192:
            raise ConfigError(
                f"Working size must be between 8 and 8192 pixels, got {self.working_size}."
            )
        if not 1 <= self.workers <= 32:
            raise ConfigError(f"Workers must be between 1 and 32, got {self.workers}.")
        if self.max_pixels < 1:
            raise ConfigError("The pixel limit must be positive.")
        self.export_options()  # validates format, quality, metadata option and suffix

    def export_options(self) -> ExportOptions:
        return ExportOptions(
            format=parse_format(self.format),
            quality=self.quality,
            strip_metadata=self.strip_metadata,
            suffix=self.suffix,
        )

    def apply_options(self) -> ApplyOptions:
        return ApplyOptions(
            working_size=self.working_size,
            strength=self.strength,
            randomize=self.randomize,
            seed=self.seed,
        )

    def fingerprint(self, perturbation_digest: str) -> str:
        """A short hash of everything that changes the output bytes (not collision/device)."""
        keys = {
            "perturbation": perturbation_digest,
            "strength": self.strength,
            "mode": self.mode,
            "finetune": [self.finetune_steps, self.encoder, self.objective]
            if self.mode == "finetune"
            else None,
            "export": asdict(self.export_options()),
            "apply": [self.working_size, self.randomize, self.seed],
            "layout": APPLY_LAYOUT_VERSION,
        }
        text = json.dumps(keys, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """JSON-able settings for reports."""
        out = asdict(self)
        out["perturbation"] = str(self.perturbation) if self.perturbation else "bundled"
        return out


def default_workers() -> int:
    """Photos protected at once by default: one more than the CPU cores this process may use,
    so that a core is never idle while a photo waits for its file or its fsync; at most 4, as
    each photo in flight holds about 200 MB at 24 MP. (On 2 cores, 3 workers measured 1.05x the
    Pillow floor against 1.10x for 2.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(4, (cores or 1) + 1))


GPU_FINETUNE_BATCH = 8  # photos fine-tuned together on a CUDA GPU unless set

# Bumped when the way a pattern is laid onto photos changes, so that a re-run redoes old outputs.
# 2: photos no larger than the working view get the pattern 1:1 (it was resampled to the view).
APPLY_LAYOUT_VERSION = 2


# --- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobStarted(Event):
    """The job is about to process ``total`` photos (``skipped_inputs`` non-photos left out)."""

    total: int
    output_root: Path
    skipped_inputs: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileProgress(Event):
    """Photo ``position`` of ``count`` is at ``stage``: ``done`` of ``total`` steps."""

    source: Path
    done: float
    total: float
    stage: str
    position: int = 0
    count: int = 0


@dataclass(frozen=True)
class FileDone(Event):
    """A photo was protected and written to ``output``.

    ``psnr`` (dB) and ``max_change`` (8-bit steps) compare the protected pixels with the
    original's (None when identical); ``notes`` say what else changed (format, depth, alpha).
    """

    source: Path
    output: Path
    psnr: float | None = None
    max_change: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    position: int = 0
    count: int = 0


@dataclass(frozen=True)
class FileSkipped(Event):
    """A file was left out (not a photo, already done, output exists...)."""

    source: Path
    reason: str
    output: Path | None = None
    position: int = 0
    count: int = 0


@dataclass(frozen=True)
class FileFailed(Event):
    """A photo could not be protected; the job goes on with the next one."""

    source: Path
    reason: str
    hint: str = ""
    position: int = 0
    count: int = 0


@dataclass(frozen=True)
class JobFinished(Event):
    """The job ended (completed, stopped by a full disk, or cancelled)."""

    report: JobReport


# --- report ------------------------------------------------------------------------------------
@dataclass
class JobReport:
    """What a job did: done / skipped / failed with reasons, and what is still pending."""

    output_root: Path
    settings: dict[str, Any] = field(default_factory=dict)
    done: list[FileDone] = field(default_factory=list)
    skipped: list[FileSkipped] = field(default_factory=list)
    failed: list[FileFailed] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was left pending."""
        return not self.failed and not self.pending and not self.cancelled

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (paths as strings)."""
        return {
            "output_root": str(self.output_root),
            "counts": {
                "done": len(self.done),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "pending": len(self.pending),
            },
            "cancelled": self.cancelled,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
            "done": [
                {
                    "source": str(e.source),
                    "output": str(e.output),
                    "psnr_db": None if e.psnr is None else round(e.psnr, 2),
                    "max_change": e.max_change,
                    "seconds": round(e.seconds, 3),
                    "notes": list(e.notes),
                }
                for e in self.done
            ],
            "skipped": [{"source": str(e.source), "reason": e.reason} for e in self.skipped],
            "failed": [
                {"source": str(e.source), "reason": e.reason, "hint": e.hint} for e in self.failed
            ],
            "pending": [str(p) for p in self.pending],
            "settings": self.settings,
        }

    def text(self) -> str:
        """A human-readable summary."""
        head = f"{len(self.done)} protected, {len(self.skipped)} skipped, {len(self.failed)} failed"
        if self.pending:
            head += f", {len(self.pending)} not done"
        lines = [f"{head} in {self.seconds:.1f} s. Output: {self.output_root}"]
        if self.cancelled:
            lines.append("Cancelled: run the same command again to finish the rest.")
        if self.stopped:
            lines.append(f"Stopped: {self.stopped}")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        if self.failed:
            lines.append("Failed:")
            lines.extend(f"  {e.source}: {e.reason}" for e in self.failed)
        if self.skipped:
            lines.append("Skipped:")
            lines.extend(f"  {e.source}: {e.reason}" for e in self.skipped)
        return "\n".join(lines)


class JobCancelled(Cancelled):
    """The job was cancelled; ``report`` says what was finished and what is pending."""

    def __init__(self, report: JobReport) -> None:
        super().__init__("Cancelled: finished photos are kept; run the job again to finish.")
        self.report = report


# --- inputs ------------------------------------------------------------------------------------
def scan_inputs(
    paths: Sequence[Path],
    settings: ProtectSettings | None = None,
    output_root: Path | None = None,
) -> Discovery:
    """Photos a job would protect (in job order) and the non-photos it leaves out, with why."""
    settings = settings or ProtectSettings()
    pattern = output_name_pattern(settings.suffix)
    options = DiscoveryOptions(
        follow_symlinks=settings.follow_symlinks,
        is_output_name=lambda name: pattern.fullmatch(name) is not None,
        output_marker=MANIFEST_NAME,
        exclude=(output_root,) if output_root is not None else (),
    )
    return discover([Path(p) for p in paths], options)


def discover_inputs(paths: Sequence[Path]) -> list[Path]:
    """The photos a job would protect for ``paths`` (files and folders), in job order."""
    return [photo.path for photo in scan_inputs(paths).photos]


def _relative_paths(photos: list[InputPhoto]) -> list[Path]:
    """Each photo's path relative to the inputs' common folder (mirrored in the output)."""
    roots = [os.path.abspath(p.root) for p in photos]
    try:
        base = os.path.commonpath(roots) if roots else ""
    except ValueError:  # different drives (Windows): mirror below each photo's own folder
        return [Path(p.path.name) for p in photos]
    return [Path(os.path.relpath(os.path.abspath(p.path), base)) for p in photos]


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


# --- the job -----------------------------------------------------------------------------------
class ProtectJob:
    """Protect ``inputs`` (files and folders) into ``output_root`` with ``settings``.

    Args:
        inputs: files and folders; folders are walked recursively, photos found by content.
        output_root: the output folder (created); its structure mirrors the inputs'.
        settings: how to protect and write (see :class:`ProtectSettings`).
    """

    def __init__(
        self,
        inputs: Sequence[Path],
        output_root: Path,
        settings: ProtectSettings | None = None,
    ) -> None:
        self.inputs = [Path(p) for p in inputs]
        self.output_root = Path(output_root)
        self.settings = settings or ProtectSettings()
        self._export = self.settings.export_options()
        self._apply = self.settings.apply_options()
        self._tuner: FineTuner | None = None

    def run(
        self, on_event: EventSink = ignore_events, cancel: CancelToken | None = None
    ) -> JobReport:
        """Run the job; returns its report.

        Raises:
            JobCancelled: when ``cancel`` was set (after JobFinished; its report is attached).
            SpdeskError: when the job cannot start (bad settings, perturbation, output folder).
        """
        cancel = cancel or CancelToken()
        started = time.monotonic()
        self._check_output_root()
        perturbation, digest = self._load_perturbation()
        discovery = scan_inputs(self.inputs, self.settings, self.output_root)
        report = JobReport(self.output_root, settings=self.settings.describe())
        report.warnings = settings_warnings(self._export)
        report.skipped = [FileSkipped(s.path, s.reason) for s in discovery.skipped]
        report.failed = [
            FileFailed(path, f"{path} does not exist.", "Check the name and the folder.")
            for path in discovery.missing
        ]
        if self.settings.mode == "finetune":
            self._tuner = self._fine_tuner(perturbation)
        _make_output_root(self.output_root)
        run = _Run(self, perturbation, self.settings.fingerprint(digest), on_event, cancel, report)
        with Manifest(self.output_root) as manifest:
            clean_stale_temps(self.output_root)
            on_event(
                JobStarted(
                    total=len(discovery.photos),
                    output_root=self.output_root,
                    skipped_inputs=len(discovery.skipped),
                    warnings=tuple(report.warnings),
                )
            )
            for event in [*report.failed, *report.skipped]:
                on_event(event)
            try:
                run.process_all(manifest, discovery.photos)
            finally:
                report.seconds = time.monotonic() - started
        on_event(JobFinished(report))
        if report.cancelled:
            raise JobCancelled(report)
        return report

    def _check_output_root(self) -> None:
        if self.settings.allow_output_in_input:
            return
        for path in self.inputs:
            if path.is_dir() and _inside(self.output_root, path):
                raise ConfigError(
                    f"The output folder {self.output_root} is inside the input folder {path}.",
                    hint="Choose an output folder outside the photos being protected (or allow "
                    "it explicitly: spdesk protect --allow-output-in-input).",
                )

    def _load_perturbation(self) -> tuple[Perturbation, str]:
        path = self.settings.perturbation or _bundled_path()
        if self.settings.perturbation is None and (path is None or not path.is_file()):
            raise PerturbationFileError(
                f"The perturbation bundled with spdesk is missing ({path or 'not installed'}).",
                hint="Choose a perturbation file (spdesk protect --perturbation FILE), or "
                "reinstall spdesk.",
            )
        assert path is not None
        perturbation = load_perturbation(path)
        if self.settings.strength is not None:
            perturbation.at_strength(self.settings.strength)  # validates the range up front
        return perturbation, hashlib.sha256(path.read_bytes()).hexdigest()

    def _fine_tuner(self, perturbation: Perturbation) -> FineTuner:
        from spdesk.core.encoders import load_encoder
        from spdesk.core.finetune import FineTuner

        encoder = load_encoder(self.settings.encoder, self.settings.device)
        batch = self.settings.finetune_batch
        if batch is None:
            batch = GPU_FINETUNE_BATCH if encoder.device.type == "cuda" else 1
        return FineTuner(
            perturbation,
            encoder,
            steps=self.settings.finetune_steps,
            objective=self.settings.objective,
            options=self._apply,
            batch_size=batch,
        )


def _bundled_path() -> Path | None:
    try:
        return bundled_perturbation_path()
    except (ModuleNotFoundError, FileNotFoundError):  # a checkout without the resources package
        return None


def _make_output_root(root: Path) -> None:
    """Create the output folder, or say plainly why the job cannot write there."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise OutputError(f"The output folder {root} is a file, not a folder.") from error
    except OSError as error:
        raise output_error(error, root / MANIFEST_NAME) from error
    if not os.access(root, os.W_OK):
        raise OutputPermissionError(
            f"Cannot write into the output folder {root}: it is read-only or you do not have "
            "permission to write there.",
            hint="Choose an output folder you can write to (spdesk protect --out FOLDER).",
        )


@dataclass
class _Planned:
    """One photo of the job: where it comes from and the name its output gets."""

    photo: InputPhoto
    relative: Path
    key: str
    position: int
    count: int

    @property
    def source(self) -> Path:
        return self.photo.path


@dataclass
class _Task:
    """A photo that needs work, with its planned output (decided in job order)."""

    item: _Planned
    target: Path
    replace: bool
    signature: SourceSignature
    started: float


@dataclass
class _Outcome:
    """What a worker produced for one task: a complete temporary file, not yet published."""

    temp: Path
    size: int
    figures: Figures
    notes: tuple[str, ...]


def _rgb(image: Image.Image) -> Image.Image:
    """The colour channels of a decoded photo (RGB or RGBA after decoding)."""
    return image.convert("RGB") if image.mode == "RGBA" else image


def _with_alpha(protected: Image.Image, decoded: Image.Image) -> Image.Image:
    """The protected colours with the original's alpha channel, where it had one."""
    if decoded.mode == "RGBA":
        protected.putalpha(decoded.getchannel("A"))
    return protected


def _settle(future: Future[_Outcome], work: Callable[..., _Outcome], *args: Any) -> None:
    try:
        future.set_result(work(*args))
    except Exception as error:
        future.set_exception(error)


def _completed(work: Callable[..., _Outcome], *args: Any) -> Future[_Outcome]:
    future: Future[_Outcome] = Future()
    _settle(future, work, *args)
    return future


def _discard_temps(futures: Iterable[Future[_Outcome]]) -> None:
    """Remove the temporary files of photos that finished but were never published."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().temp.unlink(missing_ok=True)


class _Run:
    """The state of one run of a job (split from ProtectJob to keep each step short).

    Photos are planned, published (renamed into place), recorded and reported in job order by
    the calling thread; the heavy work of each photo (decode, protect, encode into an fsync'ed
    temporary file) runs on ``workers`` threads, which overlap well because Pillow and fsync
    release the GIL. With one worker everything runs in the calling thread, strictly one photo
    after the other. Fine-tuning runs in the calling thread too, a batch of photos at a time.
    """

    def __init__(
        self,
        job: ProtectJob,
        perturbation: Perturbation,
        fingerprint: str,
        on_event: EventSink,
        cancel: CancelToken,
        report: JobReport,
    ) -> None:
        self.job = job
        self.perturbation = perturbation
        self.fingerprint = fingerprint
        self._sink = on_event
        self._emit_lock = threading.Lock()
        self.cancel = cancel
        self.abort = CancelToken()  # set when the job must stop (disk full)
        self.report = report
        self.written: set[Path] = set()  # outputs of this run: never replaced by a sibling
        self.handled: set[str] = set()
        self.applier = UniversalApplier(perturbation, job._apply)

    def emit(self, event: Event) -> None:
        with self._emit_lock:  # workers report progress too; sinks need not be thread-safe
            self._sink(event)

    def check(self) -> None:
        """Raise Cancelled if the user cancelled or the job must stop."""
        self.cancel.check()
        self.abort.check()

    def process_all(self, manifest: Manifest, photos: list[InputPhoto]) -> None:
        relative = _relative_paths(photos)
        planned = [
            _Planned(photo, rel, os.path.abspath(photo.path), i + 1, len(photos))
            for i, (photo, rel) in enumerate(zip(photos, relative, strict=True))
        ]
        manifest.mark_pending([p.key for p in planned], self.fingerprint)
        tuner = self.job._tuner
        workers = 1 if tuner is not None else self.job.settings.workers
        batch_size = tuner.batch_size if tuner is not None else 1
        inflight: deque[tuple[_Task, Future[_Outcome]]] = deque()
        # Workers run ahead of the bookkeeping (which stays on this thread, in job order), so a
        # few more photos are queued than there are workers: none waits while one is recorded.
        window = 2 * workers
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spdesk-job") as pool:
                try:
                    for batch in self._batches(manifest, planned, batch_size):
                        inflight.extend(self._submit(pool, batch, workers))
                        while inflight and (len(inflight) >= window or inflight[0][1].done()):
                            self._finish(manifest, *inflight.popleft())
                    while inflight:  # after a stop, finished temporary files are discarded
                        self._finish(manifest, *inflight.popleft())
                except BaseException:
                    self.abort.cancel()  # release the workers so the pool can shut down
                    raise
        finally:
            _discard_temps(future for _task, future in inflight)
        if self._stopping():
            self.report.pending = [p.source for p in planned if p.key not in self.handled]

    def _batches(
        self, manifest: Manifest, planned: list[_Planned], size: int
    ) -> Iterator[list[_Task]]:
        """The photos that need work, planned in job order, ``size`` at a time (a fine-tuning
        batch; else one by one); nothing more once the job stops."""
        batch: list[_Task] = []
        for item in planned:
            if self._stopping():
                return
            task = self._prepare(manifest, item)
            if task is not None:
                batch.append(task)
            if len(batch) == size:
                yield batch
                batch = []
        if batch and not self._stopping():
            yield batch

    def _stopping(self) -> bool:
        if self.cancel.cancelled:
            self.report.cancelled = True
        return self.report.cancelled or self.report.stopped is not None

    def _submit(
        self, pool: ThreadPoolExecutor, tasks: list[_Task], workers: int
    ) -> list[tuple[_Task, Future[_Outcome]]]:
        """Start the work of ``tasks``: one photo on the pool, or a fine-tuning batch here."""
        if self.job._tuner is not None:
            return list(zip(tasks, self._work_batch(tasks), strict=True))
        (task,) = tasks
        if workers > 1:
            return [(task, pool.submit(self._work, task))]
        return [(task, _completed(self._work, task))]  # one worker: run here, in order

    def _prepare(self, manifest: Manifest, item: _Planned) -> _Task | None:
        """Skip finished photos and taken names; plan the output name (in job order)."""
        try:
            signature = SourceSignature.of(item.source)
        except OSError as error:
            self._fail(manifest, item, read_error(item.source, error).message, "")
            return None
        if not self.job.settings.redo:
            finished = manifest.finished_output(item.key, self.fingerprint, signature)
            if finished is not None:
                self._skip(item, "already protected with the same settings", finished)
                return None
        target, replace_existing = self._target(manifest, item)
        if target is None:
            return None
        self.written.add(target)  # reserved: a later photo of this job gets another name
        return _Task(item, target, replace_existing, signature, time.monotonic())

    def _work(self, task: _Task) -> _Outcome:
        """Decode, protect, encode and fsync one photo into a temporary file (on a worker)."""
        decoded = self._read(task)
        self._progress(task.item, 1, "protecting")
        rgb = _rgb(decoded.image)
        protected, figures = self.applier.apply(rgb, task.item.relative.as_posix())
        return self._write(decoded, _with_alpha(protected, decoded.image), figures, task)

    def _work_batch(self, tasks: list[_Task]) -> list[Future[_Outcome]]:
        """Fine-tune a batch of photos together (photos of one size share passes), in order.

        A photo that cannot be read fails alone; a failure of the fine-tuning itself (or a
        cancel) is every photo's outcome in the batch.
        """
        tuner = self.job._tuner
        assert tuner is not None
        futures: list[Future[_Outcome]] = [Future() for _ in tasks]
        loaded: list[tuple[int, DecodedImage]] = []
        for index, task in enumerate(tasks):
            try:
                loaded.append((index, self._read(task)))
            except Exception as error:
                futures[index].set_exception(error)
        items = [tasks[index].item for index, _ in loaded]
        rgbs = [_rgb(decoded.image) for _, decoded in loaded]

        def on_step(done: int, total: int) -> None:
            for item in items:
                self._progress(item, 1 + done / max(total, 1), "fine-tuning")

        try:
            for item in items:
                self._progress(item, 1, "fine-tuning")
            arrays = tuner.protect_batch(
                [np.asarray(rgb) for rgb in rgbs],
                keys=[item.relative.as_posix() for item in items],
                cancel=self.cancel,
                on_step=on_step,
            )
        except Exception as error:
            for index, _ in loaded:
                futures[index].set_exception(error)
            return futures
        for (index, decoded), rgb, array in zip(loaded, rgbs, arrays, strict=True):
            protected = Image.fromarray(array, mode="RGB")
            figures = change_figures(rgb, protected)
            result = _with_alpha(protected, decoded.image)
            _settle(futures[index], self._write, decoded, result, figures, tasks[index])
        return futures

    def _read(self, task: _Task) -> DecodedImage:
        self.check()
        self._progress(task.item, 0, "reading")
        decoded = read_image(task.item.source, max_pixels=self.job.settings.max_pixels)
        self.check()
        return decoded

    def _write(
        self, decoded: DecodedImage, protected: Image.Image, figures: Figures, task: _Task
    ) -> _Outcome:
        self.check()
        self._progress(task.item, 2, "saving")
        fmt = output_format(decoded.source_format, self._export)
        encoded = prepare(decoded, protected, fmt, self._export)
        decoded.notes.extend(encoded.notes)
        temp, size = write_temp(encoded, task.target)
        return _Outcome(temp, size, figures, tuple(decoded.notes))

    def _finish(self, manifest: Manifest, task: _Task, future: Future[_Outcome]) -> None:
        """Publish, record and report one photo's result (in job order, on the job's thread).

        Only here does an output get its name: a cancel (or pause) requested while photo k is
        reported never lets photo k+1 through, whatever the workers have finished meanwhile.
        """
        item = task.item
        try:
            outcome = future.result()
            try:
                self.check()  # blocks while paused
                output = self._publish(outcome.temp, task)
            finally:
                outcome.temp.unlink(missing_ok=True)
        except Cancelled:
            self.report.cancelled = self.report.cancelled or self.cancel.cancelled
            return  # stays pending
        except DiskFullError as error:
            if self.report.stopped is None:
                self._fail(manifest, item, error.message, error.hint or "")
                self.report.stopped = error.user_text()
                self.abort.cancel()
            return
        except (ImageError, OutputError) as error:
            self._fail(manifest, item, error.message, error.hint or "")
            return
        except Exception as error:  # a bug must not stop a batch of thousands
            log.error("unexpected error protecting %s", item.source, exc_info=error)
            self._fail(manifest, item, f"unexpected error: {error} (details in the log)", "")
            return
        self._done(manifest, task, outcome, output)

    # -- steps ---------------------------------------------------------------------------------
    def _target(self, manifest: Manifest, item: _Planned) -> tuple[Path | None, bool]:
        """The output path, and whether it may replace an existing file (overwrite policy)."""
        try:
            source_format = sniff_file(item.source)
        except OSError:
            source_format = None
        if source_format is None:  # read_image will name the problem; plan a placeholder
            return self.job.output_root / item.relative, False
        fmt = output_format(source_format, self._export)
        name = output_name(item.relative.name, fmt, self._export.suffix)
        target = self.job.output_root / item.relative.parent / name
        if target in self.written:  # two photos of this job map to one name: keep both
            return next(c for c in unique_candidates(target) if c not in self.written), False
        policy = self.job.settings.collision
        if policy == "skip" and (target.exists() or target.is_symlink()):
            reason = "output already exists (choose unique or overwrite)"
            self._skip(item, reason, target, manifest)
            return None, False
        return target, policy == "overwrite"

    def _publish(self, temp: Path, task: _Task) -> Path:
        """Give the complete temporary file its planned name (or the next free one)."""
        target = task.target
        unique = self.job.settings.collision == "unique"
        for candidate in unique_candidates(target) if unique else iter([target]):
            if candidate != target and candidate in self.written:
                continue  # another photo of this job has (or will have) that name
            try:
                publish(temp, candidate, replace=task.replace)
            except OutputExistsError:
                if unique:
                    continue
                raise
            self.written.add(candidate)
            return candidate
        raise OutputError(f"No free output name for {target.name}.")

    @property
    def _export(self) -> ExportOptions:
        return self.job._export

    # -- outcomes ------------------------------------------------------------------------------
    def _progress(self, item: _Planned, done: float, stage: str) -> None:
        self.emit(
            FileProgress(item.source, done, 3, stage, position=item.position, count=item.count)
        )

    def _done(self, manifest: Manifest, task: _Task, outcome: _Outcome, output: Path) -> None:
        item = task.item
        psnr, peak = outcome.figures
        try:
            manifest.record(
                item.key,
                DONE,
                output=output.relative_to(self.job.output_root).as_posix(),
                output_size=outcome.size,
                settings=self.fingerprint,
                source_signature=task.signature.as_list(),
            )
        except OutputError as error:  # the output is complete; only its record is missing
            self.report.stopped = self.report.stopped or error.user_text()
            self.abort.cancel()
        self.handled.add(item.key)
        event = FileDone(
            item.source,
            output,
            psnr=psnr,
            max_change=peak,
            seconds=time.monotonic() - task.started,
            notes=outcome.notes,
            position=item.position,
            count=item.count,
        )
        self.report.done.append(event)
        self.emit(event)

    def _skip(
        self, item: _Planned, reason: str, output: Path | None, manifest: Manifest | None = None
    ) -> None:
        self.handled.add(item.key)
        if manifest is not None:
            with contextlib.suppress(OutputError):
                manifest.record(item.key, SKIPPED, reason=reason, settings=self.fingerprint)
        event = FileSkipped(item.source, reason, output, item.position, item.count)
        self.report.skipped.append(event)
        self.emit(event)

    def _fail(self, manifest: Manifest, item: _Planned, reason: str, hint: str) -> None:
        self.handled.add(item.key)
        event = FileFailed(item.source, reason, hint, item.position, item.count)
        self.report.failed.append(event)
        # On a full disk the line may not be written: the entry stays "pending", also true.
        with contextlib.suppress(OutputError):
            manifest.record(item.key, FAILED, reason=reason, settings=self.fingerprint)
        self.emit(event)


__all__ = [
    "FileDone",
    "FileFailed",
    "FileProgress",
    "FileSkipped",
    "JobCancelled",
    "JobFinished",
    "JobReport",
    "JobStarted",
    "ProtectJob",
    "ProtectSettings",
    "discover_inputs",
    "scan_inputs",
]
