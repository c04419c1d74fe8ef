"""The ordered worker pool of a job: photos read, protected and encoded on worker threads,
published, recorded and reported in job order on the job's thread.

Each photo goes through the same three stages, whatever the engine: read
(:func:`~spdesk.core.imageio.read_image`), protect (the job's
:class:`~spdesk.core.jobs.protector.Protector`), write (a complete, fsync'ed temporary file).
Only then, in job order, does the output get its name and a manifest line. Photos are handed
to the workers within the job's memory budget (:mod:`spdesk.core.jobs.memory`), by what each
needs once decoded, read from its header.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from spdesk.core.apply import Figures
from spdesk.core.discovery import InputPhoto
from spdesk.core.errors import (
    Cancelled,
    DiskFullError,
    ImageError,
    OutputError,
    OutputPermissionError,
    PerturbationFileError,
    SpdeskError,
)
from spdesk.core.events import CancelToken, Event, EventSink
from spdesk.core.export import output_format, prepare, write_checked
from spdesk.core.files import discard, shared_no_wider_than, shown
from spdesk.core.imageio import DecodedImage, PhotoHeader, read_error
from spdesk.core.jobs.events import (
    FailReason,
    FileDone,
    FileFailed,
    FileProgress,
    FileSkipped,
    JobReport,
    SkipReason,
    is_photo_fault,
)
from spdesk.core.jobs.memory import HeapTrimmer, MemoryBudget, photo_need
from spdesk.core.jobs.naming import OutputNamer, Target
from spdesk.core.jobs.protector import (
    Protector,
    protect_photo,
    protection_key_id,
    rgb_of,
    with_alpha,
)
from spdesk.core.jobs.scan import header_refusal, relative_paths
from spdesk.core.manifest import (
    DONE,
    FAILED,
    OUTPUT_MTIME,
    SKIPPED,
    Manifest,
    SourceIds,
    SourceSignature,
    output_mtime_ns,
)
from spdesk.core.stores import FolderStore, Store

if TYPE_CHECKING:
    from spdesk.core.jobs.settings import ProtectSettings

log = logging.getLogger(__name__)


class JobPlace(Protocol):
    """What a run reads of its job (a :class:`~spdesk.core.jobs.job.ProtectJob`, which imports
    this module): its settings, output folder, where photos are read and outputs go, and the
    headers already read."""

    settings: ProtectSettings
    output_root: Path
    store: Store
    output_store: Store
    mirror_base: Path | None  # the folder the output mirrors below (None: the common one)
    walked_headers: dict[Path, PhotoHeader]  # headers read while the folders were walked
    walked_errors: dict[Path, ImageError]  # and the errors of those that did not read


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

    @property
    def key_for_layout(self) -> str:
        """The key a protector gets for this photo (see :mod:`spdesk.core.jobs.protector`)."""
        return self.relative.as_posix()


@dataclass
class _Task:
    """A photo that needs work, with its planned output (decided in job order)."""

    item: _Planned
    target: Target
    signature: SourceSignature
    started: float
    need: int = 0  # bytes its photo holds in flight (the memory budget), from its header
    refusal: ImageError | None = None  # it cannot be protected (too large here, or unreadable)


@dataclass
class _Outcome:
    """What a worker produced for one task: a complete temporary file, not yet published."""

    temp: Path
    size: int
    sha256: str
    figures: Figures
    notes: tuple[str, ...]
    location_removed: bool = False


def _settle(future: Future[_Outcome], work: Callable[..., _Outcome], *args: Any) -> None:
    try:
        future.set_result(work(*args))
    except Exception as error:
        _fail_future(future, error)


def _fail_future(future: Future[_Outcome], error: BaseException) -> None:
    _forget_frames(error)
    future.set_exception(error)


def _forget_frames(error: BaseException | None) -> None:
    """Clear the locals of the frames a failure's traceback holds, and its causes': a failed
    photo's pixels must not live on (outside the memory budget) until it is reported."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _completed(work: Callable[..., _Outcome], *args: Any) -> Future[_Outcome]:
    future: Future[_Outcome] = Future()
    _settle(future, work, *args)
    return future


def _discard_temps(futures: Iterable[Future[_Outcome]]) -> None:
    """Remove the temporary files of photos that finished but were never published."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            discard(future.result().temp)


class JobRun:
    """The state of one run of a job (split from the job to keep each step short).

    Photos are planned, published (renamed into place), recorded and reported in job order by
    the calling thread; the heavy work of each photo (decode, protect, encode into an fsync'ed
    temporary file) runs on ``workers`` threads, which overlap well because Pillow and fsync
    release the GIL. With one worker everything runs in the calling thread, strictly one photo
    after the other. Fine-tuning runs in the calling thread too, a batch of photos at a time.
    """

    def __init__(
        self,
        job: JobPlace,
        protector: Protector,
        fingerprint: str,
        on_event: EventSink,
        cancel: CancelToken,
        report: JobReport,
    ) -> None:
        self.job = job
        self.protector = protector
        self.settings = job.settings
        self._export = job.settings.export_options()
        self.fingerprint = fingerprint
        # Recorded with each output: a re-run made with another key can say why it redoes them.
        self.key_id = protection_key_id(job.settings)
        self.source_ids = SourceIds.of_install()  # how the manifest names the originals
        self._sink = on_event
        self._emit_lock = threading.Lock()
        self.cancel = cancel
        self.abort = CancelToken()  # set when the job must stop (disk full)
        self._disk_full = False  # what stopped it: photos written already are still published
        self.report = report
        self.names = OutputNamer(
            job.output_root,
            self._export,
            job.settings.collision,
            inputs=job.store,
            outputs=job.output_store,
        )
        self.handled: set[str] = set()
        self.memory = MemoryBudget.for_job(job.settings.memory_budget)
        self.trim_heap = HeapTrimmer()

    def emit(self, event: Event) -> None:
        with self._emit_lock:  # workers report progress too; sinks need not be thread-safe
            self._sink(event)

    def check(self) -> None:
        """Raise Cancelled if the user cancelled or the job must stop."""
        self.cancel.check()
        self.abort.check()

    def process_all(self, manifest: Manifest, photos: list[InputPhoto]) -> None:
        planned = self.plan(photos)
        manifest.mark_pending([p.key for p in planned], self.fingerprint)
        self.process_planned(manifest, planned)

    def plan(self, photos: list[InputPhoto]) -> list[_Planned]:
        """Each photo's place in the job: its path below the output folder, key and position."""
        relative = relative_paths(photos, self.job.mirror_base)
        return [
            _Planned(photo, rel, self.source_id(photo.path), i + 1, len(photos))
            for i, (photo, rel) in enumerate(zip(photos, relative, strict=True))
        ]

    def source_id(self, source: Path) -> str:
        """The name the manifest gives the original ``source`` (a keyed digest, not its path)."""
        return self.source_ids(self.job.store.key(source))

    def process_planned(self, manifest: Manifest, planned: list[_Planned]) -> None:
        """Protect, publish and record the planned photos (see :meth:`_prepare` for which)."""
        workers = self.settings.workers if self.protector.concurrent else 1
        inflight: deque[tuple[_Task, Future[_Outcome]]] = deque()
        # Workers run ahead of the bookkeeping (which stays on this thread, in job order), so a
        # few more photos are queued than there are workers: none waits while one is recorded.
        window = 2 * workers
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spdesk-job") as pool:
                try:
                    for part in self._parts(manifest, planned):
                        self._make_room(manifest, inflight, part)
                        inflight.extend(self._submit(pool, part, workers))
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
        self, manifest: Manifest, planned: list[_Planned], size: int | None = None
    ) -> Iterator[list[_Task]]:
        """The photos that need work, planned in job order, ``size`` at a time (None: the
        protector's, a fine-tuning batch or one by one); nothing more once the job stops. A
        deferred protector is built when the first photo needs work."""
        self._take_proof(manifest, planned)
        batch: list[_Task] = []
        for item in planned:
            if self._stopping():
                return
            task = self._prepare(manifest, item)
            if task is None:
                continue
            size = size or self._ready()
            batch.append(task)
            if len(batch) == size:
                yield batch
                batch = []
        if batch and not self._stopping():
            yield batch

    def _ready(self) -> int:
        """Build the protector if the job deferred it (its models load now); the photos it
        takes at a time."""
        self.protector = self.protector.ready()
        return 1 if self.protector.concurrent else self.protector.batch_size

    def all_finished(self, manifest: Manifest, photos: list[InputPhoto]) -> bool:
        """Whether ``manifest`` (read, not yet locked) holds every photo finished with these
        settings, its copy intact: a re-run that will skip them all needs no model."""
        if self.settings.redo or not manifest.entries:
            return False
        for item in self.plan(photos):
            try:
                signature = self.job.store.signature(item.source)
            except OSError:
                return False
            if manifest.finished_output(item.key, self.fingerprint, signature) is None:
                return False
        return True

    def _take_proof(self, manifest: Manifest, planned: list[_Planned]) -> None:
        """What the folder's manifest proves, before any name is planned: which existing files
        spdesk wrote ("overwrite" replaces only those), which names earlier runs' photos keep."""
        self.names.wrote = manifest.wrote
        self.names.keep(manifest.kept_outputs([item.key for item in planned]))

    def _parts(self, manifest: Manifest, planned: list[_Planned]) -> Iterator[list[_Task]]:
        """The batches of :meth:`_batches`, each cut where its photos together would need more
        than the memory budget (one photo alone may need more: it then runs alone)."""
        for batch in self._batches(manifest, planned):
            part: list[_Task] = []
            for task in batch:
                self._estimate(task)
                if part and sum(t.need for t in part) + task.need > self.memory.limit:
                    yield part
                    part = []
                part.append(task)
            yield part

    def _estimate(self, task: _Task) -> None:
        """What the task's photo will hold once decoded, from its header alone. A header that
        cannot be read needs nothing here: reading the photo then says why it failed (or, for
        one that failed at the start, the photo fails with that error, unopened again)."""
        source = task.item.source
        task.refusal = self.job.walked_errors.get(source)
        if task.refusal is not None:
            return
        header = self.job.walked_headers.get(source)  # read while the folder was walked
        try:
            if header is None:
                header = self.job.store.read_header(source, max_pixels=self.settings.max_pixels)
        except ImageError:
            return
        need = photo_need(header)
        task.refusal = header_refusal(header, source) or self.memory.refusal(source, header, need)
        task.need = 0 if task.refusal else need

    def _make_room(
        self, manifest: Manifest, inflight: deque[tuple[_Task, Future[_Outcome]]], part: list[_Task]
    ) -> None:
        """Finish earlier photos, in job order, until ``part`` fits in the memory budget."""
        need = sum(task.need for task in part)
        while inflight and not self.memory.fits(need):
            self._finish(manifest, *inflight.popleft())

    def _stopping(self) -> bool:
        if self.cancel.cancelled:
            self.report.cancelled = True
        return self.report.cancelled or self.report.stopped is not None

    def _submit(
        self, pool: ThreadPoolExecutor, tasks: list[_Task], workers: int
    ) -> list[tuple[_Task, Future[_Outcome]]]:
        """Start the work of ``tasks``: one photo on the pool, or a batch here (a protector
        that cannot run on several threads, such as fine-tuning)."""
        if not self.protector.concurrent:
            return list(zip(tasks, self._work_batch(tasks), strict=True))
        (task,) = tasks
        self.memory.take(task.need)
        if workers > 1:
            return [(task, pool.submit(self._held, task))]
        return [(task, _completed(self._held, task))]  # one worker: run here, in order

    def _held(self, task: _Task) -> _Outcome:
        """:meth:`_work`, then the photo's share of the memory budget given back (its pixels
        are freed by then, a failure's too)."""
        try:
            return self._work(task)
        except BaseException as error:
            _forget_frames(error)
            raise
        finally:
            self.memory.give(task.need)

    def _prepare(self, manifest: Manifest, item: _Planned) -> _Task | None:
        """Skip finished photos and taken names; plan the output name (in job order)."""
        try:
            signature = self.job.store.signature(item.source)
        except OSError as error:
            reason = read_error(self.job.store.shown(item.source), error).message
            self._fail(manifest, item, FailReason.UNREADABLE, reason)
            return None
        if not self.settings.redo:
            finished = manifest.finished_output(item.key, self.fingerprint, signature)
            if finished is not None:
                reason = "already protected with the same settings"
                self._skip(item, SkipReason.ALREADY_DONE, reason, finished)
                return None
        fmt, alpha = self._format_of(item.source)
        changed = manifest.changed_output(item.key)  # its copy, cut short or edited since
        target = self.names.plan(
            item.source, item.relative, fmt, owner=item.key, alpha=alpha, changed=changed
        )
        earlier = manifest.earlier_copy(item.key, self.fingerprint, signature)
        if earlier is not None:
            target = replace(target, earlier=earlier)
        if target.taken:
            # Front-ends add how to choose another policy, in their own words (kind tells).
            self._skip(item, SkipReason.OUTPUT_EXISTS, _taken_text(target), target.path, manifest)
            return None
        return _Task(item, target, signature, time.monotonic())

    def _work(self, task: _Task) -> _Outcome:
        """Decode, protect, encode and fsync one photo into a temporary file (on a worker)."""
        decoded = self._read(task)
        self._progress(task.item, 1, self.protector.stage)
        protected, figures = protect_photo(self.protector, decoded, task.item.key_for_layout)
        return self._write(decoded, protected, figures, task)

    def _work_batch(self, tasks: list[_Task]) -> list[Future[_Outcome]]:
        """Protect a batch of photos together (fine-tuning: photos of one size share passes),
        holding their share of the memory budget meanwhile.

        A photo that cannot be read fails alone; a failure of the protector itself (or a
        cancel) is every photo's outcome in the batch.
        """
        need = sum(task.need for task in tasks)
        self.memory.take(need)
        try:
            return self._protect_batch(tasks)
        finally:
            self.memory.give(need)

    def _protect_batch(self, tasks: list[_Task]) -> list[Future[_Outcome]]:
        futures: list[Future[_Outcome]] = [Future() for _ in tasks]
        loaded: list[tuple[int, DecodedImage]] = []
        for index, task in enumerate(tasks):
            try:
                loaded.append((index, self._read(task)))
            except Exception as error:
                _fail_future(futures[index], error)
        items = [tasks[index].item for index, _ in loaded]
        stage = self.protector.stage

        def on_step(done: int, total: int) -> None:
            for item in items:
                self._progress(item, 1 + done / max(total, 1), stage)

        try:
            for item in items:
                self._progress(item, 1, stage)
            results = self.protector.protect_batch(
                [rgb_of(decoded.image) for _, decoded in loaded],
                [item.key_for_layout for item in items],
                cancel=self.cancel,
                on_step=on_step,
            )
        except Exception as error:
            for index, _ in loaded:
                _fail_future(futures[index], error)
            return futures
        for (index, decoded), (protected, figures) in zip(loaded, results, strict=True):
            result = with_alpha(protected, decoded.image)
            _settle(futures[index], self._write, decoded, result, figures, tasks[index])
        return futures

    def _read(self, task: _Task) -> DecodedImage:
        self.check()
        if task.refusal is not None:
            raise task.refusal
        self._progress(task.item, 0, "reading")
        decoded = self.job.store.read_image(task.item.source, max_pixels=self.settings.max_pixels)
        self.check()
        return decoded

    def _write(
        self, decoded: DecodedImage, protected: Image.Image, figures: Figures, task: _Task
    ) -> _Outcome:
        self.check()
        self._progress(task.item, 2, "saving")
        # The planned name decided the format (a placeholder's did not: the photo named none).
        fmt = task.target.format or output_format(decoded.source_format, self._export)
        encoded = prepare(decoded, protected, fmt, self._export)
        decoded.notes.extend(encoded.notes)
        temp, size, digest = write_checked(
            encoded,
            self.job.output_store.scratch(Path(self.job.output_root), task.target.path),
            decoded.size,
            task.target.path,
        )
        if isinstance(self.job.store, FolderStore) and isinstance(
            self.job.output_store, FolderStore
        ):
            shared_no_wider_than(temp, task.item.source)
        notes = (*decoded.notes, *task.target.notes)
        return _Outcome(temp, size, digest, figures, notes, encoded.location_removed)

    def _finish(self, manifest: Manifest, task: _Task, future: Future[_Outcome]) -> None:
        """Publish, record and report one photo's result (in job order, on the job's thread).

        Only here does an output get its name: a cancel (or pause) requested while photo k is
        reported never lets photo k+1 through, whatever the workers have finished meanwhile.
        """
        item = task.item
        try:
            outcome = future.result()
            try:
                if not self._publish_after_disk_full():
                    self.check()  # blocks while paused
                self._publishing(manifest, task, outcome)
                output = self.names.publish(outcome.temp, task.target)
            finally:
                discard(outcome.temp)
            outcome.notes = (*outcome.notes, *task.target.notes_once_published(output))
        except Cancelled:
            self.report.cancelled = self.report.cancelled or self.cancel.cancelled
            return  # stays pending
        except PerturbationFileError as error:  # the file, not the photo: the next fails alike
            self._stop(manifest, item, error)
            return
        except (ImageError, OutputError) as error:
            if isinstance(error, OutputError) and (error.stops_job or self._root_refuses(error)):
                self._stop(manifest, item, error)
                return
            kind = FailReason.UNREADABLE if isinstance(error, ImageError) else FailReason.ERROR
            fault = is_photo_fault(error)
            self._fail(manifest, item, kind, error.message, error.hint or "", photo_fault=fault)
            return
        except Exception as error:  # a bug must not stop a batch of thousands
            log.error("unexpected error protecting %s", item.source, exc_info=error)
            reason = f"unexpected error: {error} (details in the log)"
            self._fail(manifest, item, FailReason.UNEXPECTED, reason)
            return
        self._done(manifest, task, outcome, output)
        self.trim_heap()

    def _root_refuses(self, error: OutputError) -> bool:
        """Whether a refused write means the output folder itself refuses writes now (made
        read-only while the job ran): every later photo would fail alike, after its whole
        work, so the job stops as for a read-only disk. A sub-folder that refuses fails only
        its own photos."""
        return (
            isinstance(error, OutputPermissionError)
            and isinstance(self.job.output_store, FolderStore)
            and not os.access(self.job.output_root, os.W_OK)
        )

    def _publish_after_disk_full(self) -> bool:
        """Whether a photo whose temporary file is complete is still published although the
        job stopped: after a full disk (unless the user cancelled), as naming it takes no
        space. Workers write side by side, and a full disk threw away photos that fitted
        (with 274 KB free none was kept, the first needing 108 KB)."""
        return self._disk_full and not self.cancel.cancelled

    def _stop(self, manifest: Manifest, item: _Planned, error: SpdeskError) -> None:
        """A destination that takes no more files (full, read-only), or a protection file that
        turns out damaged, stops the job: this photo fails, the rest stay pending for the
        re-run that finishes them."""
        if self.report.stopped is None:
            self._fail(manifest, item, FailReason.ERROR, error.message, error.hint or "")
            self.report.stopped = _stopped_text(error)
            self._disk_full = isinstance(error, DiskFullError)
            self.abort.cancel()

    def _format_of(self, source: Path) -> tuple[str, bool]:
        """The photo's format and whether it holds transparency, for its output's name: the
        walk's header where a local folder's was read (no second open just for a name); else
        the first bytes, and for a HEIC or AVIF its header (its transparency makes the copy a
        PNG: a ranged read on an object store)."""
        header = self.job.walked_headers.get(source)
        if header is not None:
            return header.format, header.has_alpha
        try:
            fmt = self.job.store.sniff(source) or ""
            if fmt in ("HEIF", "AVIF"):
                header = self.job.store.read_header(source, max_pixels=self.settings.max_pixels)
                return fmt, header.has_alpha
        except (OSError, ImageError):
            return "", False  # reading the photo names the problem
        return fmt, False

    def _publishing(self, manifest: Manifest, task: _Task, outcome: _Outcome) -> None:
        """Tell the manifest which bytes are about to get the task's name (an object store
        keeps this proof before the upload; see :class:`~spdesk.core.stores.StoreManifest`)."""
        manifest.publishing(
            task.item.key,
            task.target.path,
            self.fingerprint,
            output_size=outcome.size,
            output_sha256=outcome.sha256,
            source_signature=task.signature.as_list(),
            **self._done_line_extras(outcome),
        )

    # -- steps ---------------------------------------------------------------------------------
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
                output_sha256=outcome.sha256,
                settings=self.fingerprint,
                source_signature=task.signature.as_list(),
                **({"key": self.key_id} if self.key_id else {}),
                **self._output_time(output),
                **self._done_line_extras(outcome),
            )
        except OutputError as error:  # the output is complete; only its record is missing
            self.report.stopped = self.report.stopped or _stopped_text(error)
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
            location_removed=outcome.location_removed,
        )
        self.report.done.append(event)
        self.emit(event)

    def _done_line_extras(self, outcome: _Outcome) -> dict[str, Any]:
        """More for a photo's "done" line: nothing here (a Ray batch's shard keeps what a retry
        of the batch says again)."""
        return {}

    def _output_time(self, output: Path) -> dict[str, int]:
        """The output's modification time, for a folder's manifest: a re-run trusts a copy of
        the recorded size and time without reading it. An object store's outputs are checked
        by size, as before."""
        mtime = output_mtime_ns(output) if isinstance(self.job.output_store, FolderStore) else None
        return {} if mtime is None else {OUTPUT_MTIME: mtime}

    def _skip(
        self,
        item: _Planned,
        kind: SkipReason,
        reason: str,
        output: Path | None,
        manifest: Manifest | None = None,
    ) -> None:
        self.handled.add(item.key)
        # A photo skipped for a taken name changed nothing: its earlier "done" line stays (a
        # later run with those settings finds it finished, "overwrite" its proof).
        if manifest is not None and not manifest.is_done(item.key):
            with contextlib.suppress(OutputError):
                manifest.record(item.key, SKIPPED, reason=reason, settings=self.fingerprint)
        event = FileSkipped(item.source, kind, reason, output, item.position, item.count)
        self.report.skipped.append(event)
        self.emit(event)

    def _fail(
        self,
        manifest: Manifest,
        item: _Planned,
        kind: FailReason,
        reason: str,
        hint: str = "",
        *,
        photo_fault: bool = False,
    ) -> None:
        self.handled.add(item.key)
        event = FileFailed(
            item.source, kind, reason, hint, item.position, item.count, photo_fault=photo_fault
        )
        self.report.failed.append(event)
        # A failed photo changed no output: an earlier "done" line stays, as for a skip (its
        # output is still proven spdesk's, and finished once the photo reads as it did). On a
        # full disk the line may not be written: the entry stays "pending", also true.
        if not manifest.is_done(item.key):
            with contextlib.suppress(OutputError):
                manifest.record(item.key, FAILED, reason=reason, settings=self.fingerprint)
        self.emit(event)


def _taken_text(target: Target) -> str:
    """Why a photo whose output name is taken was skipped."""
    if target.changed:  # its own copy: a re-run redoes it, but never over what is there now
        return (
            f"the earlier copy {shown(target.path.name)} had changed since spdesk wrote it: "
            "left as it is, like any file spdesk did not write"
        )
    if target.foreign:
        return (
            "the output name is taken by a file spdesk did not write (or that changed since): "
            "left untouched"
        )
    return "an output of this name exists already"


def _stopped_text(error: SpdeskError) -> str:
    """Why the job stopped (a full disk, a manifest it cannot write, a damaged protection
    file), and how to finish it."""
    return f"{error.user_text()} Then run the same job again: finished photos are kept and skipped."
