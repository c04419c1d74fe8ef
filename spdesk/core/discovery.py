"""Photo discovery: files and folders in, the photos a job reads (by content) out.

The one walk behind protection, training and evaluation: hidden, system and special files
(FIFOs, sockets, devices) are listed as skipped without being opened, symbolic links are not
followed unless asked (and never loop), and each photo keeps the folder its relative path is
taken from.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spdesk.core.events import CancelToken
from spdesk.core.files import shown
from spdesk.core.formats import CAMERA_RAW_REASON, IMAGE_SUFFIXES, raw_by_name, sniff_file

JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".directory"})
# What the files that cameras and photo editors write beside a photo are.
SIDECARS = {
    ".xmp": "sidecar file (metadata)",
    ".aae": "sidecar file (Apple Photos edits)",
    ".pp3": "sidecar file (RawTherapee edits)",
    ".dop": "sidecar file (DxO edits)",
    ".on1": "sidecar file (ON1 edits)",
    ".thm": "sidecar file (a camera's thumbnail)",
    ".lrv": "sidecar file (a camera's low-resolution video)",
    ".lrf": "sidecar file (a camera's low-resolution video)",
}
# Files of spdesk and other AI tools that a photo folder may hold (a trained pattern saved
# beside the photos it was trained on): never photos, whatever their first bytes say.
NOT_PHOTOS = {
    ".safetensors": "a pattern or model file (.safetensors), not a photo",
    ".ckpt": "a model file (.ckpt), not a photo",
    ".pth": "a model file (.pth), not a photo",
    ".pt": "a model file (.pt), not a photo",
}
# Folders that hold thumbnails, trash or system data (NAS thumbnails are real JPEGs!).
SYSTEM_FOLDERS = frozenset(
    {"@eadir", "$recycle.bin", "system volume information", ".trashes", ".thumbnails"}
)
# The kernel's virtual file systems: never photos, and walking them reads live system state
# (and fails on entries that vanish meanwhile).
PSEUDO_FOLDERS = frozenset({"/proc", "/sys", "/dev", "/run"})
_JUNK = "system file, not a photo"

# Why a file an earlier run wrote (its manifest says so) is never an input, whatever its name.
RECORDED_OUTPUT = (
    "an output of an earlier spdesk run in this folder (spdesk never protects its outputs twice)"
)
# Why a file named like the job's outputs is left out, found in a folder or named on its own.
OUTPUT_NAME = "named like an spdesk output (spdesk never protects its outputs twice)"
# Why the job's output folder, met in an input folder, is not walked.
OUTPUT_FOLDER = "the output folder of this job"
# What an unreadable folder's reason ends with (the app, which says it before any job, says
# its photos are not queued instead).
NOT_PROTECTED = "its photos were not protected"


@dataclass(frozen=True)
class InputPhoto:
    """A file a job will try to protect and the folder its relative path is taken from."""

    path: Path
    root: Path


@dataclass(frozen=True)
class SkippedInput:
    """A file or folder left out of a job, with the reason shown to the user."""

    path: Path
    reason: str
    folder: bool = False  # a whole folder, not one file
    hint: str = ""  # what to do about it, where the usual advice does not fit


@dataclass
class Discovery:
    """What a set of input paths holds: photos in job order, and what was left out and why."""

    photos: list[InputPhoto] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # named inputs that do not exist
    unreadable: list[SkippedInput] = field(default_factory=list)  # folders, inputs not readable
    # What is already listed in skipped or unreadable, by _listed_as: a folder reached twice
    # (named twice, or also by a link) must not list or count what it leaves out twice.
    _listed: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def leave_out(self, item: SkippedInput) -> None:
        """Record a file or folder left out, unless it already is."""
        if self._first_listing(item.path):
            self.skipped.append(item)

    def cannot_read(self, item: SkippedInput) -> None:
        """Record a folder or named input that cannot be read, unless it already is."""
        if self._first_listing(item.path):
            self.unreadable.append(item)

    def _first_listing(self, path: Path) -> bool:
        key = _listed_as(path)
        if key in self._listed:
            return False
        self._listed.add(key)
        return True


def _listed_as(path: Path) -> str:
    """The one name of a file or folder however it was reached: its real path, but a link's
    own (a link that is left out is an entry of its own, not the file it points to)."""
    if os.path.islink(path):
        return os.path.join(os.path.realpath(path.parent), path.name)
    return os.path.realpath(path)


@dataclass(frozen=True)
class DiscoveryOptions:
    """How inputs are walked.

    Attributes:
        follow_symlinks: follow symbolic links to files and folders (loops are detected).
        is_output_name: predicate on a file name; True for spdesk's own outputs (skipped).
        is_recorded_output: predicate on a file's path; True for a file an earlier run
            recorded writing there (protecting in place with another suffix: skipped).
        output_marker: a file name whose presence marks a folder as an spdesk output folder;
            ``output_marker`` and ``lock_name`` files are spdesk's bookkeeping (skipped
            silently), as is a ``shards_folder`` beside the marker (a distributed run's).
        exclude: folders never walked (the job's output folder).
        cancel: checked between files; the walk raises ``Cancelled`` once it is set.
        limit: stop after this many photos (a count shown while the user types a folder).
        sniff: tells a walked file's format from its first bytes (OSError when it cannot be
            read); a scan that also checks each photo's header passes one that does both while
            the file is open, so each file is opened once.
    """

    follow_symlinks: bool = False
    is_output_name: Callable[[str], bool] | None = None
    is_recorded_output: Callable[[Path], bool] | None = None
    output_marker: str | None = None
    lock_name: str | None = None
    shards_folder: str | None = None
    exclude: tuple[Path, ...] = ()
    cancel: CancelToken | None = None
    limit: int | None = None
    sniff: Callable[[Path], str | None] = sniff_file


def discover(paths: Sequence[Path], options: DiscoveryOptions = DiscoveryOptions()) -> Discovery:
    """Expand files and folders (recursively) into the photos a job protects, by content.

    Explicitly named files are taken whatever their content (a bad one then fails with a
    clear error), but not spdesk's own outputs; inside folders, files whose content is not an
    image are listed as skipped (OS junk, sidecars, documents) unless their name says they are
    photos. The walk never loops: symbolic links are not followed by default, and followed
    links are tracked by device and inode.
    """
    found = Discovery()
    seen: dict[str, int] = {}  # a photo's real path -> its place in found.photos
    excluded = {_real(p) for p in options.exclude}
    for path in paths:
        path = Path(path)
        try:
            mode = _named_mode(path)
        except OSError as error:
            _cannot_open(path, error, found, named=True)
            continue
        if mode is None:
            found.missing.append(path)
        elif stat.S_ISDIR(mode):
            _walk(path, options, excluded, seen, found)
        else:
            reason = _special_reason(path) or _output_reason(path, options)
            if reason:
                found.leave_out(SkippedInput(path, reason))
            else:
                _add(path, path.parent, seen, found)
    return found


_NOTHING_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # as Path.exists takes them


def _named_mode(path: Path) -> int | None:
    """The mode of a named input (a broken link's or a link loop's own), None when there is
    nothing there; OSError when it cannot be examined (its path too long, a folder on it not
    readable)."""
    for follow in (True, False):
        try:
            return os.stat(path, follow_symlinks=follow).st_mode
        except OSError as error:
            if error.errno not in _NOTHING_THERE:
                raise
    return None


def _real(path: Path) -> str:
    return str(Path(path).resolve())


def _add(path: Path, root: Path, seen: dict[str, int], found: Discovery) -> None:
    try:
        real = _real(path)
    except RuntimeError:  # a symbolic link loop (Python before 3.13)
        found.leave_out(SkippedInput(path, "symbolic link loop: it leads back to itself"))
        return
    except OSError as error:  # the same loop (ELOOP) from Python 3.13 on, or the path's folders
        found.leave_out(SkippedInput(path, f"cannot be followed ({error.strerror or error})"))
        return
    if real not in seen:
        seen[real] = len(found.photos)
        found.photos.append(InputPhoto(path, root))
        return
    # Met again: the same path or folder given twice says nothing; a followed link to a photo
    # met too is listed, and never takes the photo's own place (and name) in the job.
    kept = found.photos[seen[real]]
    if not (path.is_symlink() or kept.path.is_symlink()):
        return
    if kept.path.is_symlink() and not path.is_symlink():  # the photo itself, met after a link
        found.photos[seen[real]] = InputPhoto(path, root)
        path, kept = kept.path, found.photos[seen[real]]
    found.leave_out(SkippedInput(path, f"the same photo as {shown(kept.path)} (protected once)"))


def _walk(
    root: Path,
    options: DiscoveryOptions,
    excluded: set[str],
    seen: dict[str, int],
    found: Discovery,
) -> None:
    """Each folder's files by name, then its subfolders, depth first. A loop, not recursion
    (``os.walk`` recurses before Python 3.12: a few thousand nested folders exhaust it)."""
    visited: set[tuple[int, int]] = set()
    folders = [root]
    while folders:
        if _stop(options, found):
            return
        here = folders.pop()
        if _skip_folder(here, root, options, excluded, visited, found):
            continue
        subfolders: list[Path] = []
        for entry in _entries(here, found):
            if _is_folder(entry, options.follow_symlinks):
                subfolders.append(Path(entry.path))
                continue
            if _stop(options, found):
                return
            reason = _file_reason(entry, options)
            if reason is None:
                _add(Path(entry.path), root, seen, found)
            elif reason:
                folder = _is_folder(entry, True)  # a link to a folder, not followed
                found.leave_out(SkippedInput(Path(entry.path), reason, folder=folder))
        folders.extend(reversed(subfolders))


def _entries(folder: Path, found: Discovery) -> list[os.DirEntry[str]]:
    """``folder``'s entries by name; none when it cannot be listed (recorded)."""
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: _name_key(entry.name))
    except OSError as error:
        _cannot_open(folder, error, found)
        return []


def _is_folder(entry: os.DirEntry[str], follow_symlinks: bool) -> bool:
    """A folder to walk; a link to one only when links are followed (else it is a file that
    is left out as a link). One that cannot be examined is a file: its reason says why."""
    try:
        return entry.is_dir(follow_symlinks=follow_symlinks)
    except OSError:
        return False


def _stop(options: DiscoveryOptions, found: Discovery) -> bool:
    """Whether the walk has found enough; raises ``Cancelled`` once cancelled."""
    if options.cancel is not None:
        options.cancel.check()
    return options.limit is not None and len(found.photos) >= options.limit


def _name_key(name: str) -> tuple[str, str]:
    return name.casefold(), name


def _skip_folder(
    folder: Path,
    root: Path,
    options: DiscoveryOptions,
    excluded: set[str],
    visited: set[tuple[int, int]],
    found: Discovery,
) -> bool:
    """Whether to leave ``folder`` out (recording why); also guards against link loops."""
    reason = None
    try:
        info = folder.stat()
    except OSError as error:
        _cannot_open(folder, error, found)
        return True
    if (info.st_dev, info.st_ino) in visited:
        reason = "symbolic link loop (already walked)"
    elif folder != root and (folder.name.startswith(".") or folder.name.lower() in SYSTEM_FOLDERS):
        reason = "hidden or system folder"
    elif _real(folder) in PSEUDO_FOLDERS:
        reason = "system folder (not files on a disk)"
    elif folder != root and _real(folder) in excluded:
        reason = OUTPUT_FOLDER
    elif options.shards_folder and folder.name == options.shards_folder and folder != root:
        reason = ""  # bookkeeping: said nowhere, as the manifest beside it
    # os.path.exists, not Path.exists: False, not an error, for a path too long to open.
    elif (
        folder != root and options.output_marker and os.path.exists(folder / options.output_marker)
    ):
        # The folder the user named is walked even so (protecting in place); outputs in it
        # are recognised by name.
        reason = "an spdesk output folder (holds protected copies)"
    visited.add((info.st_dev, info.st_ino))
    if reason:
        found.leave_out(SkippedInput(folder, reason, folder=True))
    return reason is not None


def _file_reason(entry: os.DirEntry[str], options: DiscoveryOptions) -> str | None:
    """None to take the file, or the reason it is skipped ("" = skip silently)."""
    path = Path(entry.path)
    reason = name_reason(entry.name, options)
    if reason in ("", _JUNK):
        return reason
    link = _is_link(entry)
    if link and not options.follow_symlinks:
        return "symbolic link (not followed)"
    if reason is not None:
        return reason
    if options.is_recorded_output is not None and options.is_recorded_output(path):
        return RECORDED_OUTPUT
    special = _examined_reason(path, link)
    if special:
        return special
    try:
        fmt = options.sniff(path)
    except OSError as error:
        return content_reason(entry.name, None, error)
    return content_reason(entry.name, fmt)


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:  # cannot be examined: the next step says why
        return False


def _examined_reason(path: Path, link: bool) -> str | None:
    """Why a file is left out for what it is: a special file, a broken link, a path too long
    to open. None for a regular file, or one that cannot be examined (the reader says why)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return _broken_link(path) if link else None
    except OSError as error:
        too_long = error.errno == errno.ENAMETOOLONG
        return _too_long(path, "move it to a shorter folder") if too_long else None
    return _special_kind(mode)


def _broken_link(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        return "broken symbolic link"
    return f"broken symbolic link (points to {shown(target)})"


def name_reason(name: str, options: DiscoveryOptions) -> str | None:
    """Why a file inside a folder is skipped for its name alone ("" = silently; None: its
    content decides, see :func:`content_reason`). Also used for an object store's listing."""
    if name in (options.output_marker, options.lock_name):
        return ""
    if name.lower() in JUNK_NAMES or name.startswith("._"):
        return _JUNK
    if name.startswith("."):
        return "hidden file"
    if options.is_output_name is not None and options.is_output_name(name):
        return OUTPUT_NAME
    return None


def content_reason(name: str, fmt: str | None, error: OSError | None = None) -> str | None:
    """None to take a file whose first bytes sniff as ``fmt`` (or could not be read:
    ``error``), or why it is skipped: what is not a photo by content or by name."""
    suffix = os.path.splitext(name)[1].lower()
    looks_like_photo = suffix in IMAGE_SUFFIXES
    if error is not None:
        return None if looks_like_photo else f"cannot be read ({error.strerror or error})"
    if raw_by_name(name, fmt):  # TIFF inside, often only a preview: never taken as a photo
        return CAMERA_RAW_REASON
    if suffix in NOT_PHOTOS:  # a PNG renamed grey.safetensors was trained on as a photo
        return NOT_PHOTOS[suffix]
    if fmt is not None or looks_like_photo:
        return None
    if suffix in SIDECARS:
        return f"{SIDECARS[suffix]}, not a photo"
    return "its content is not JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC or AVIF: not a photo"


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "device"),
    (stat.S_ISBLK, "device"),
)


def _output_reason(path: Path, options: DiscoveryOptions) -> str | None:
    """Why a file named on its own is an earlier run's output, else None: a shell glob
    (``spdesk protect *.jpg --out .``) or "select all" in the folder the copies went to names
    them too, and each run protected the last one's copies again, over their protection."""
    if options.is_recorded_output is not None and options.is_recorded_output(path):
        return RECORDED_OUTPUT
    if options.is_output_name is not None and options.is_output_name(path.name):
        return OUTPUT_NAME
    return None


def _special_reason(path: Path) -> str | None:
    """Why ``path`` is left out unopened when it is not a regular file (opening a named pipe
    waits for a writer for ever), else None. A file that cannot be examined is for the reader."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return _special_kind(mode)


def _special_kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
    return f"special file ({kind}), not a photo: left out without opening it"


def _cannot_open(path: Path, error: OSError, found: Discovery, *, named: bool = False) -> None:
    """A folder (or a ``named`` input, file or folder) that cannot be opened: unreadable (a
    failure), as a folder whose path is longer than the system lets any program open is (what
    it holds was never seen: photos are missing); a named input that long is left out."""
    if named and error.errno == errno.ENAMETOOLONG:
        found.leave_out(SkippedInput(path, _too_long(path, "move it to a shorter folder")))
    elif error.errno == errno.ENAMETOOLONG:
        why = _too_long(path, NOT_PROTECTED)
        found.cannot_read(SkippedInput(path, why, folder=True, hint=MOVE_SHORTER))
    else:
        found.cannot_read(SkippedInput(path, _unreadable(error), folder=not named))


MOVE_SHORTER = "Move it to a folder with a shorter path, nearer the top of the drive."


def _too_long(path: Path, advice: str) -> str:
    size = len(os.fsencode(path))
    return f"path too long for the system to open ({size} bytes): {advice}"


def _unreadable(error: OSError) -> str:
    return f"folder cannot be read ({error.strerror or error}): {NOT_PROTECTED}"
