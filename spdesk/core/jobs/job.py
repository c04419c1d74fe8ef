"""Batch protection: files and folders in, protected copies out, nothing lost.

:class:`ProtectJob` is the one call behind ``spdesk protect``, the app's Protect button and the
benchmark. It walks the inputs (by content), protects each photo with the mode's
:class:`~spdesk.core.jobs.protector.Protector`, writes each output atomically into a mirrored
folder structure, and records every step in the output folder's manifest, so that a re-run with
the same settings skips finished photos and a killed job resumes where it stopped. Progress is
reported through events; the cancel token is checked between files, between stages of a file
and inside fine-tuning.

The universal path never imports torch: Pillow and numpy only, so a batch starts at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spdesk.core.discovery import Discovery, InputPhoto
from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    ImageError,
    PerturbationFileError,
)
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.export import ExportOptions, output_format, settings_warnings
from spdesk.core.files import shown
from spdesk.core.imageio import PhotoHeader
from spdesk.core.jobs.events import (
    FailReason,
    FileFailed,
    FileSkipped,
    JobCancelled,
    JobFinished,
    JobReport,
    JobStarted,
    LookingForPhotos,
    PhotosFound,
    SkipReason,
    is_photo_fault,
)
from spdesk.core.jobs.fingerprint import output_fingerprint
from spdesk.core.jobs.pool import JobRun
from spdesk.core.jobs.protector import (
    DeferredProtector,
    Protector,
    build_protector,
    protector_kind,
)
from spdesk.core.jobs.scan import HeaderScan, scan_inputs
from spdesk.core.jobs.settings import PHOTO_MODES, ProtectSettings
from spdesk.core.manifest import Manifest
from spdesk.core.perturbation import (
    Perturbation,
    bundled_perturbation_path,
    changes_a_pixel,
    check_perturbation_file,
    load_perturbation,
)
from spdesk.core.stores import FolderStore, Store, locate

WALK_CANCELLED = "Cancelled while looking for photos: nothing was protected or written."


class ProtectJob:
    """Protect ``inputs`` (files and folders) into ``output_root`` with ``settings``.

    Args:
        inputs: files and folders; folders are walked recursively, photos found by content.
            A string with a scheme (``s3://bucket/photos``) is a prefix in an object store
            (see :mod:`spdesk.core.stores`); a :class:`~pathlib.Path` is always local.
        output_root: the output folder (created), or an object store's prefix; its structure
            mirrors the inputs'.
        settings: how to protect and write (see :class:`ProtectSettings`).
        filesystem: an fsspec or ``pyarrow.fs`` file system holding every input and the
            output (paths inside it), as Ray Data's ``filesystem=``: credentials, endpoint.
        mirror_base: a local folder the output mirrors below, kept by a caller across jobs
            (the app keeps its queue's first folder); photos elsewhere go into a folder named
            for theirs. None: the inputs' common folder.
    """

    # A re-run with every photo finished loads no model (see _new_run). The Ray engine's driver
    # builds its stand-in at once: where the actors run enters the fingerprint.
    defers_models: ClassVar[bool] = True

    def __init__(
        self,
        inputs: Sequence[Path | str],
        output_root: Path | str,
        settings: ProtectSettings | None = None,
        *,
        filesystem: Any = None,
        mirror_base: Path | None = None,
    ) -> None:
        self.store: Store
        self.output_store: Store
        self.store, self.inputs, self.output_store, self.output_root = locate(
            inputs, output_root, filesystem
        )
        self.settings = settings or ProtectSettings()
        self.mirror_base = mirror_base
        # Headers read while the folders were walked (local folders), reused for the budget,
        # and the errors of those that did not read, reported without opening the file again.
        self.walked_headers: dict[Path, PhotoHeader] = {}
        self.walked_errors: dict[Path, ImageError] = {}

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
        same_place = self.store is self.output_store
        output = self.output_root if same_place else None  # left out when inside the inputs
        on_event(LookingForPhotos())
        try:
            discovery, unreadable = self._discover(output, cancel)
        except Cancelled as cancelled:
            raise Cancelled(WALK_CANCELLED) from cancelled
        on_event(PhotosFound(len(discovery.photos)))
        _check_something_exists(discovery.missing, self.inputs, self.store.shown)
        report = self._new_report(discovery)
        report.warnings += _visible_budget_warning(self.settings, perturbation)
        if not discovery.photos:  # nothing to write: no output folder, manifest nor lock (and
            # no model loaded, no Ray instance started, to say so)
            return self._nothing_to_protect(report, discovery, unreadable, on_event, started)
        if unreadable == len(discovery.photos):  # none can be read (the start line says
            # nothing is written): each fails with its header's error, and nothing is made
            refused = self._refused(discovery.photos)
            return self._nothing_to_protect(
                report, discovery, unreadable, on_event, started, refused
            )
        # Read before a model loads or Ray starts: a newer spdesk's record is refused at once
        # (OutputError). Opened below, it is read again under the folder's lock.
        record = self.output_store.manifest(self.output_root)
        run = self._new_run(
            perturbation, digest, record, discovery.photos, on_event, cancel, report
        )
        self.output_store.make_root(self.output_root)
        with record as manifest:
            self.output_store.clean_stale_temps(self.output_root)
            report.warnings += _other_key_warning(manifest, run.key_id)
            on_event(_started(report, discovery, unreadable, self.output_root))
            for event in [*report.failed, *report.skipped]:
                on_event(event)
            try:
                self._process(run, manifest, discovery.photos)
            finally:
                report.seconds = time.monotonic() - started
        if report.cancelled and not report.pending:  # asked after the last photo: all done
            report.cancelled = False
        on_event(JobFinished(report))
        if report.cancelled:
            raise JobCancelled(report)
        return report

    def _nothing_to_protect(
        self,
        report: JobReport,
        discovery: Discovery,
        unreadable: int,
        on_event: EventSink,
        started: float,
        refused: Sequence[FileFailed] = (),
    ) -> JobReport:
        """The report of a job whose inputs hold no photo (an empty folder, only other files),
        or only photos that cannot be read (``refused``, the failures they are reported as):
        what was left out or failed is told as usual, and the output folder is not made."""
        on_event(_started(report, discovery, unreadable, self.output_root))
        for event in [*report.failed, *report.skipped]:
            on_event(event)
        for event in refused:
            report.failed.append(event)
            on_event(event)
        report.seconds = time.monotonic() - started
        report.no_photos = not discovery.photos
        report.nothing_written = True
        on_event(JobFinished(report))
        return report

    def _refused(self, photos: Sequence[InputPhoto]) -> list[FileFailed]:
        """``photos``, whose headers failed while the folders were walked, failed in job order
        with the reason each header gave (as the pool would fail them, unopened again)."""
        return [
            FileFailed(
                photo.path,
                FailReason.UNREADABLE,
                self.walked_errors[photo.path].message,
                self.walked_errors[photo.path].hint or "",
                position,
                len(photos),
                photo_fault=is_photo_fault(self.walked_errors[photo.path]),
            )
            for position, photo in enumerate(photos, start=1)
        ]

    def _planned_formats(self, discovery: Discovery, options: ExportOptions) -> set[str] | None:
        """The formats the outputs will be written in, from the headers read while the folders
        were walked; None where a photo's is not known (an object store's), so a warning about
        a lossy format is given whenever one may be written."""
        headers = [self.walked_headers.get(photo.path) for photo in discovery.photos]
        if not headers or any(header is None or not header.format for header in headers):
            return None
        return {
            output_format(header.format, options, alpha=header.has_alpha)
            for header in headers
            if header is not None
        }

    def _new_report(self, discovery: Discovery) -> JobReport:
        """The report a job starts with: its settings, and the inputs it leaves out or cannot
        find or read, each as the event it reports."""
        report = JobReport(
            self.output_root,
            settings=self.settings.describe(),
            source_shown=self.store.shown,
            output_shown=self.output_store.shown,
        )
        options = self.settings.export_options()
        report.warnings = settings_warnings(options, self._planned_formats(discovery, options))
        report.skipped = [
            FileSkipped(s.path, SkipReason.EXCLUDED, s.reason, folder=s.folder)
            for s in discovery.skipped
        ]
        report.failed = [
            FileFailed(
                path,
                FailReason.MISSING,
                f"{self.store.shown(path)} does not exist.",
                "Check the name and the folder.",
            )
            for path in discovery.missing
        ]
        report.failed += [
            FileFailed(
                s.path,
                FailReason.UNREADABLE,
                s.reason,
                s.hint or "Check that your account can read this folder.",
            )
            for s in discovery.unreadable
        ]
        return report

    def _discover(self, output: Path | None, cancel: CancelToken) -> tuple[Discovery, int]:
        """The inputs walked into photos, and how many of them already fail the header check
        made while a local folder's files are open to be sniffed, or read once for a file named
        on its own (no file is opened twice: the pool reuses these headers). Cancelled between
        files: a walk of a large network folder takes minutes."""
        if not isinstance(self.store, FolderStore):
            return scan_inputs(self.inputs, self.settings, output, cancel, store=self.store), 0
        headers = HeaderScan(self.settings.max_pixels)
        discovery = scan_inputs(
            self.inputs, self.settings, output, cancel, store=self.store, sniffer=headers.sniff
        )
        headers.read_unopened(discovery.photos, cancel)
        self.walked_headers = headers.headers
        self.walked_errors = headers.errors(discovery.photos)
        return discovery, len(self.walked_errors)

    def _new_run(
        self,
        perturbation: Perturbation,
        digest: str,
        record: Manifest,
        photos: list[InputPhoto],
        on_event: EventSink,
        cancel: CancelToken,
        report: JobReport,
    ) -> JobRun:
        """The run, with the mode's protector built (its models loaded) before anything is
        written. A local folder's record (read, not yet locked) that holds every photo finished
        with these settings defers it until a photo needs work: re-run on a finished folder,
        the encoder to fine-tune took 41 s to load under load, to skip every photo."""
        # Universal mode loads no model: a second pass over a large finished folder's photos
        # (their signatures and records) would cost its re-run more than it saves.
        loads_models = self.settings.mode != "universal"
        if not (loads_models and self.defers_models and isinstance(self.output_store, FolderStore)):
            protector = self._protector(perturbation)  # may change the settings (Ray's device)
            fingerprint = output_fingerprint(self.settings, digest)
            return JobRun(self, protector, fingerprint, on_event, cancel, report)
        deferred = DeferredProtector(
            protector_kind(self.settings), lambda: self._protector(perturbation)
        )
        fingerprint = output_fingerprint(self.settings, digest)
        run = JobRun(self, deferred, fingerprint, on_event, cancel, report)
        if not run.all_finished(record, photos):
            run.protector = self._protector(perturbation)
        return run

    def _protector(self, perturbation: Perturbation) -> Protector:
        """The mode's per-photo step (loads its models: the encoder, to fine-tune)."""
        return build_protector(self.settings, perturbation)

    def _process(self, run: JobRun, manifest: Manifest, photos: list[InputPhoto]) -> None:
        """Protect ``photos`` here, on worker threads (other engines, e.g. Ray, override it)."""
        run.process_all(manifest, photos)

    def _check_output_root(self) -> None:
        if self.settings.allow_output_in_input or self.store is not self.output_store:
            return  # inputs and output in two places: one cannot hold the other
        for path in self.inputs:
            if self.store.within(self.output_root, path):
                same = self.store.within(path, self.output_root)
                where = "the input folder" if same else "inside the input folder"
                raise ConfigError(
                    f"The output folder {self.store.shown(self.output_root)} is {where} "
                    f"{self.store.shown(path)}.",
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
        # Hashed before and after it is read: the outputs are recorded under the hash, so a
        # file replaced meanwhile (a pattern retrained into the same file) must not lend the
        # new file's hash to the old pattern's outputs (a re-run would skip them as done).
        check_perturbation_file(path)  # first: a named pipe is never opened, 2 GB never read
        before = _file_sha256(path)
        perturbation = load_perturbation(path)
        _check_changes_pixels(perturbation, self.settings)
        if _file_sha256(path) != before:
            raise PerturbationFileError(
                f"The perturbation file {shown(path)} changed while spdesk was reading it.",
                hint="Wait until whatever writes it has finished (a training run saving into "
                "it), then run again.",
            )
        return perturbation, before


def _file_sha256(path: Path) -> str:
    """The sha256 of ``path``, read in chunks (a pattern file may be up to MAX_FILE_BYTES)."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        raise PerturbationFileError(
            f"Cannot read the perturbation file {shown(path)}: {error.strerror or error}."
        ) from error


def _check_changes_pixels(perturbation: Perturbation, settings: ProtectSettings) -> None:
    """Refuse a strength too weak to change any 8-bit value: every output would be an
    unchanged copy counted as protected. (Also validates the strength's range.)"""
    delta = perturbation.at_strength(settings.strength)
    eps = settings.strength if settings.strength is not None else perturbation.eps
    # The universal pattern is rounded to 8 bits as it is; other modes may use the whole budget.
    largest = float(np.abs(delta).max()) * 255 if settings.mode == "universal" else eps
    if largest == 0 and settings.mode == "universal":  # the file's fault, not the strength's
        name = shown(settings.perturbation) if settings.perturbation else "The bundled pattern"
        raise ConfigError(
            f"{name} holds an empty pattern (every value is 0): it cannot protect any photo.",
            hint="Choose another perturbation file, or train your own (spdesk train, or the app's "
            "Train personal pattern…).",
        )
    if changes_a_pixel(largest):
        return
    name = shown(settings.perturbation) if settings.perturbation else "The bundled pattern"
    if changes_a_pixel(eps):  # a budget that allows a step, and a pattern far below it
        raise ConfigError(
            f"{name} reaches only {largest:.2g} of its budget's {eps:g} steps: it cannot change "
            "any pixel, so every output would be an unchanged copy.",
            hint="Its stated budget is far above its pattern: the file is probably damaged. "
            "Choose another perturbation file.",
        )
    given = f"Strength {eps:g}" if settings.strength is not None else f"{name}'s budget of {eps:g}"
    raise ConfigError(
        f"{given} cannot change any pixel: an 8-bit colour value changes by whole steps, and "
        "this allows none, so every output would be an unchanged copy.",
        hint="Use a strength of at least 1 (4 is low, 8 medium, 16 high).",
    )


def _check_something_exists(
    missing: list[Path], inputs: list[Path], shown_as: Callable[[Path], str] = shown
) -> None:
    """Every input missing means the job cannot run (exit 2), and no output folder is made;
    some missing is a partial failure, listed with the rest."""
    if inputs and len(missing) == len(inputs):
        names = ", ".join(shown_as(path) for path in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(
            f"Nothing to protect: {names}{more} {'does' if len(missing) == 1 else 'do'} not exist.",
            hint="Check the names and the folders.",
        )


def _bundled_path() -> Path | None:
    try:
        return bundled_perturbation_path()
    except (ModuleNotFoundError, FileNotFoundError):  # a checkout without the resources package
        return None


# Above this budget (8-bit steps) a protection shows plainly on smooth areas; the README's
# scale calls 16 "high" (SSIMULACRA2 falls below 50 on some photos already at 12).
PLAINLY_VISIBLE_EPS = 16.0


def _visible_budget_warning(settings: ProtectSettings, perturbation: Perturbation) -> list[str]:
    """Say so when the budget makes the change plainly visible, above all when it comes from
    a file the user chose (a generator or pattern made with ``--eps 64``), not from a strength
    they gave."""
    if settings.strength is not None:
        eps, whose = settings.strength, ""
    elif settings.mode in PHOTO_MODES:
        from spdesk.core.generator_file import read_spec

        try:
            eps = read_spec(settings.generator_path()).eps
        except (PerturbationFileError, OSError):
            return []  # the protector names what is wrong with the file
        whose = " (the protection generator's own budget)"
    else:
        eps, whose = perturbation.eps, " (the pattern file's own budget)"
    if eps <= PLAINLY_VISIBLE_EPS:
        return []
    return [
        f"Strength {eps:g}{whose} is above {PLAINLY_VISIBLE_EPS:g}: the change will be plainly "
        "visible on smooth areas (skies, skin, walls). spdesk's default is 8."
    ]


def _other_key_warning(manifest: Manifest, key: str | None) -> list[str]:
    """Say so when the folder's copies were made with another protection key: their settings
    differ now, so they are protected again (as new copies), and the user should know why."""
    if key is None:
        return []
    count = manifest.made_with_other_keys(key)
    if not count:
        return []
    from spdesk.core.keys import ENV_KEY, key_path

    copies = "1 copy" if count == 1 else f"{count} copies"
    return [
        f"{copies} in this folder were made with another protection key, so this run protects "
        f"their photos again (the key in {key_path()} changed, or {ENV_KEY} differs). To keep "
        "those copies as they are, put the earlier key back."
    ]


def _started(report: JobReport, discovery: Discovery, unreadable: int, root: Path) -> JobStarted:
    return JobStarted(
        total=len(discovery.photos),
        output_root=root,
        skipped_inputs=len(discovery.skipped),
        skipped_folders=sum(s.folder for s in discovery.skipped),
        warnings=tuple(report.warnings),
        failed_inputs=len(report.failed),
        unreadable=unreadable,
    )
