"""What a job tells its caller: typed events while it runs, and the report at the end.

Match events by type (``isinstance`` or ``match``) and on their ``kind`` enums, never on text:
the ``reason`` strings are for people and may change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from spdesk.core.errors import (
    Cancelled,
    CorruptImageError,
    MissingSupportError,
    NotAnImageError,
    UnsupportedImageError,
)
from spdesk.core.events import Event
from spdesk.core.files import shown, shown_text


class SkipReason(StrEnum):
    """Why a file was not protected in this run (none of these is an error)."""

    EXCLUDED = "excluded"  # left out while listing the inputs: not a photo, hidden, an output
    ALREADY_DONE = "already-done"  # the output folder's manifest: protected with these settings
    OUTPUT_EXISTS = "output-exists"  # the output name is taken and the collision policy is "skip"


def is_photo_fault(error: Exception) -> bool:
    """Whether ``error`` is in the photo's own content, which a re-run reads the same way (a
    file that could not be read for its permissions, or too large for this computer's memory,
    may protect once that changes; so may a HEIC once the optional part that reads it is
    installed)."""
    if isinstance(error, MissingSupportError):
        return False
    return isinstance(error, NotAnImageError | CorruptImageError | UnsupportedImageError)


class FailReason(StrEnum):
    """Why a photo could not be protected (the job goes on with the next one)."""

    MISSING = "missing"  # the input path does not exist
    UNREADABLE = "unreadable"  # the file could not be read or decoded
    ERROR = "error"  # a named spdesk error (disk full, output not writable...), with a hint
    UNEXPECTED = "unexpected"  # a bug: details in the log


@dataclass(frozen=True)
class LookingForPhotos(Event):
    """The job's first event: its output folder and pattern are checked, and it walks its
    inputs now. The walk of a large or network folder can take minutes, which a caller may
    say once it has lasted a while (PhotosFound ends it)."""


@dataclass(frozen=True)
class PhotosFound(Event):
    """The inputs are walked: ``total`` photos found. The job then loads what protects them
    and starts (JobStarted)."""

    total: int


@dataclass(frozen=True)
class JobStarted(Event):
    """The job is about to process ``total`` photos; ``skipped_inputs`` other files and
    folders were left out (``skipped_folders`` of them folders) and ``failed_inputs`` inputs
    cannot be read (each comes as its own event next).

    ``unreadable`` of the ``total`` photos already failed the header check made at the start
    (local folders and files; an object store's photos are not checked there): each still
    comes, in its turn, as a FileFailed with its reason. Damaged pixel data behind a good
    header is only found when the photo is decoded."""

    total: int
    output_root: Path
    skipped_inputs: int = 0
    warnings: tuple[str, ...] = ()
    failed_inputs: int = 0  # named inputs missing or unreadable (each also a FileFailed)
    unreadable: int = 0  # photos of ``total`` whose header says the job will fail them
    skipped_folders: int = 0  # of ``skipped_inputs``: whole folders


@dataclass(frozen=True)
class FileProgress(Event):
    """Photo ``position`` of ``count`` is at ``stage``: ``done`` of ``total`` steps."""

    source: Path
    done: float
    total: float
    stage: str
    position: int = 0
    count: int = 0


# What a copy identical to its photo says (psnr None): a few pixels, or a flat area, where the
# budget rounds to no change at all. Said as it is, never as "protected".
UNCHANGED_WHY = "too small or flat to carry the protection"
UNCHANGED = f"unchanged: {UNCHANGED_WHY}"


@dataclass(frozen=True)
class FileDone(Event):
    """A photo was protected and written to ``output``.

    ``psnr`` (dB) and ``max_change`` (8-bit steps) compare the protected pixels with the
    original's (None when identical); ``notes`` say what else changed (format, depth, alpha);
    ``location_removed``: the photo had a location (GPS) that the output does not.
    """

    source: Path
    output: Path
    psnr: float | None = None
    max_change: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    position: int = 0
    count: int = 0
    location_removed: bool = False

    @property
    def unchanged(self) -> bool:
        """The copy is identical to the photo (see :data:`UNCHANGED`): done, not protected."""
        return self.psnr is None


@dataclass(frozen=True)
class FileSkipped(Event):
    """A file was left out: ``kind`` says why (match on it), ``reason`` says it in words."""

    source: Path
    kind: SkipReason
    reason: str
    output: Path | None = None
    position: int = 0
    count: int = 0
    folder: bool = False  # a whole folder left out while listing the inputs, not one file


@dataclass(frozen=True)
class FileFailed(Event):
    """A photo could not be protected; the job goes on with the next one."""

    source: Path
    kind: FailReason
    reason: str
    hint: str = ""
    position: int = 0
    count: int = 0
    # In the photo's own content (damaged, not a photo, in a form spdesk does not protect):
    # running again fails it the same way until the file itself is replaced.
    photo_fault: bool = False


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
    # The inputs held no photo: the output folder was not made (nor a manifest written).
    no_photos: bool = False
    # No output folder was made, nor a manifest written: no photos, or none could be read.
    nothing_written: bool = False
    # How the inputs' and the outputs' paths are shown: as the job was given them (an object
    # store's URL, ``s3://bucket/a.jpg``, not the path inside its file system).
    source_shown: Callable[[Path], str] = field(default=shown, repr=False, compare=False)
    output_shown: Callable[[Path], str] = field(default=shown, repr=False, compare=False)

    @property
    def left_out(self) -> list[FileSkipped]:
        """Files left out while listing the inputs (not photos, hidden, links...)."""
        return [e for e in self.skipped if e.kind is SkipReason.EXCLUDED]

    @property
    def photos_skipped(self) -> list[FileSkipped]:
        """Photos not protected in this run (done before, or their output name taken)."""
        return [e for e in self.skipped if e.kind is not SkipReason.EXCLUDED]

    @property
    def location_removed(self) -> list[FileDone]:
        """Photos whose location (GPS) was left out of their protected copy."""
        return [e for e in self.done if e.location_removed]

    @property
    def unchanged(self) -> list[FileDone]:
        """Copies identical to their photo (see :data:`UNCHANGED`): done, not protected."""
        return [e for e in self.done if e.unchanged]

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was left pending."""
        return not self.failed and not self.pending and not self.cancelled

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (paths and texts in their display form, see :func:`shown`)."""
        return {
            "output_root": self.output_shown(self.output_root),
            "counts": {
                "done": len(self.done),
                "unchanged": len(self.unchanged),
                "skipped": len(self.photos_skipped),
                "left_out": len(self.left_out),
                "failed": len(self.failed),
                "pending": len(self.pending),
            },
            "location_removed": len(self.location_removed),
            "cancelled": self.cancelled,
            "no_photos": self.no_photos,
            "nothing_written": self.nothing_written,
            "stopped": shown_text(self.stopped) if self.stopped else None,
            "seconds": round(self.seconds, 3),
            "warnings": [shown_text(w) for w in self.warnings],
            "done": [
                {
                    "source": self.source_shown(e.source),
                    "output": self.output_shown(e.output),
                    "psnr_db": None if e.psnr is None else round(e.psnr, 2),
                    "max_change": e.max_change,
                    "seconds": round(e.seconds, 3),
                    "notes": [shown(n) for n in e.notes],
                    "location_removed": e.location_removed,
                }
                for e in self.done
            ],
            "skipped": [
                {
                    "source": self.source_shown(e.source),
                    "kind": e.kind.value,
                    "reason": shown(e.reason),
                }
                for e in self.skipped
            ],
            "failed": [
                {
                    "source": self.source_shown(e.source),
                    "kind": e.kind.value,
                    "reason": shown(e.reason),
                    "hint": shown(e.hint),
                }
                for e in self.failed
            ],
            "pending": [self.source_shown(p) for p in self.pending],
            "settings": self.settings,
        }

    def text(self, how_to_keep: str = "") -> str:
        """A human-readable summary (``how_to_keep``: see :func:`location_text`)."""
        unchanged = len(self.unchanged)
        head = f"{len(self.done) - unchanged} protected, "
        head += f"{unchanged} unchanged ({UNCHANGED_WHY}), " if unchanged else ""
        head += f"{len(self.photos_skipped)} skipped, {len(self.failed)} failed"
        if self.pending:
            head += f", {len(self.pending)} not done"
        head += f" in {self.seconds:.1f} s"
        if self.left_out:
            folders = sum(e.folder for e in self.left_out)
            head += f" ({left_out_phrase(len(self.left_out) - folders, folders)} left out)"
        output = "Output:"
        if self.nothing_written:
            output = (
                "No photos: nothing was written to" if self.no_photos else "Nothing was written to"
            )
        lines = [f"{head}. {output} {self.output_shown(self.output_root)}"]
        if self.cancelled:
            lines.append("Cancelled: run the same command again to finish the rest.")
        if self.stopped:
            lines.append(f"Stopped: {self.stopped}")
        if self.location_removed:
            lines.append(location_text(len(self.location_removed), how_to_keep))
        lines.extend(f"Warning: {w}" for w in self.warnings)
        for title, events in (("Failed:", self.failed), ("Skipped:", self.skipped)):
            if events:
                lines.append(title)
                lines.extend(f"  {self.source_shown(e.source)}: {shown(e.reason)}" for e in events)
        return shown_text("\n".join(lines))  # stopped/warnings may name files too


def location_text(removed: int, how_to_keep: str = "") -> str:
    """The summary's line on the locations the protected copies do not carry; ``how_to_keep``
    is the front-end's own words for keeping them."""
    keep = f" ({how_to_keep})" if how_to_keep else ""
    return f"Location (GPS) removed from {count_of(removed, 'photo')}{keep}."


def left_out_phrase(files: int, folders: int) -> str:
    """``2 other files and 1 folder``: what was left out besides the photos."""
    parts = [count_of(files, "other file")] if files else []
    parts += [count_of(folders, "folder")] if folders else []
    return " and ".join(parts)


def count_of(count: int, noun: str) -> str:
    """``1 photo``, ``2 photos``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class JobCancelled(Cancelled):
    """The job was cancelled; ``report`` says what was finished and what is pending."""

    def __init__(self, report: JobReport) -> None:
        super().__init__("Cancelled: finished photos are kept; run the job again to finish.")
        self.report = report
