"""Named errors whose text a non-programmer can act on.

Every failure a user can meet is a :class:`SpdeskError` subclass. ``str(error)`` is the plain
message; ``error.hint`` (optional) says what to do about it. Tracebacks go to the log file, never
to the user.
"""

from __future__ import annotations

import sys


class SpdeskError(Exception):
    """Base class: ``message`` is plain text for users, ``hint`` says what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def user_text(self) -> str:
        """The message and the hint, as shown in a dialog or on a terminal."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class Cancelled(SpdeskError):
    """The user cancelled the operation. What was finished stays (protected photos, verified
    downloads, the last checkpoint) and so does resumable partial data (``.part`` downloads);
    only unfinished temporary files are removed."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


# --- images -----------------------------------------------------------------------------------
class ImageError(SpdeskError):
    """A photo could not be read, decoded or written."""


class NotAnImageError(ImageError):
    """The file is not an image spdesk can read (decided by content, not by extension)."""


class CorruptImageError(ImageError):
    """The file looks like an image but is truncated or damaged."""


class UnsupportedImageError(ImageError):
    """A real image in a form spdesk does not protect (animated, odd colour mode, ...)."""


class MissingSupportError(UnsupportedImageError):
    """A photo in a form read only with an optional part this installation lacks (HEIC without
    pillow-heif): no fault of the photo's, since installing that part mends it."""


class ImageTooLargeError(ImageError):
    """Refused before decoding: too many pixels (a possible decompression bomb)."""


class OutputError(SpdeskError):
    """An output could not be written (permissions, disk full, name clash)."""

    #: The whole destination refuses writes, so every photo after this one would fail the same
    #: way: a job stops here (resumable) instead of failing each remaining photo in turn.
    stops_job = False


def with_outcome(error: OutputError, outcome: str) -> OutputError:
    """``error`` (of its own kind, with its hint) saying what became of the work it stopped."""
    return type(error)(f"{error.message} {outcome}", hint=error.hint)


class DiskFullError(OutputError):
    """The destination disk is full; the job stops cleanly and can be resumed."""

    stops_job = True


class OutputPermissionError(OutputError):
    """The destination cannot be written to."""


class ReadOnlyDiskError(OutputPermissionError):
    """The destination's whole file system became read-only (unplugged, remounted after an
    error); the job stops cleanly and can be resumed once it is writable again."""

    stops_job = True


class OutputExistsError(OutputError):
    """The output name is taken and the collision policy forbids replacing it."""


# --- perturbations ----------------------------------------------------------------------------
class PerturbationFileError(SpdeskError):
    """A perturbation file is missing, unreadable or not a valid spdesk perturbation."""


# --- models, encoders, objectives ---------------------------------------------------------------
class ModelError(SpdeskError):
    """A model is missing, incomplete, corrupt or cannot be loaded."""


class ModelMissingError(ModelError):
    """A model a feature needs is not installed; the hint names the command that fetches it."""


class DownloadError(ModelError):
    """A download failed (network, server, verification)."""


class NotEnoughSpaceError(ModelError):
    """Refused before downloading: not enough free disk space."""


class EncoderError(SpdeskError):
    """An encoder could not be loaded or used."""


class ObjectiveError(SpdeskError):
    """An objective cannot be used with the chosen encoder or settings."""


class ConfigError(SpdeskError):
    """A setting or command-line value is out of range or inconsistent."""


class EngineError(SpdeskError):
    """A distributed engine (Ray) is not installed, cannot be reached or failed."""


def pip_hint(hint: str, feature: str) -> str:
    """``hint``, a pip command to run; in an installer's app, which has no pip and takes no
    packages, where to get ``feature`` instead."""
    if getattr(sys, "frozen", False):
        return (
            f"The installed app does not include {feature}: install spdesk with pip as its "
            "README says, with the extra that brings it, and run that spdesk command."
        )
    return hint
