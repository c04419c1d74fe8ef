"""The file-system foundation: atomic writes, temporary names, locks, names shown to people.

Every file spdesk writes (protected photos, the manifest, perturbation files, checkpoints)
goes through :func:`write_temp` + :func:`publish` or :func:`atomic_write`: the bytes go to a
hidden temporary file in the destination folder, are flushed and fsync'ed, and only then get
their name, so a crash, a full disk or a cancellation never leaves a partial file under a real
name. Temporary names are never longer than the final name (or a short fixed length), so a
name that fits the file system always has a temporary name that fits too. Temporary files
still open when the process is interrupted are removed by :func:`remove_live_temps`.

Locks use ``filelock`` (flock on POSIX, ``LockFileEx`` on Windows), never the platform calls
directly, so a second job is refused on every system spdesk runs on.

File names are bytes on POSIX: a name that is not valid UTF-8 reaches Python as a str with
lone surrogates (``surrogateescape``). :func:`shown` gives the form for people (and JSON):
undecodable bytes written as ``\\xe9``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import math
import os
import posixpath
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from spdesk.core.errors import (
    ConfigError,
    DiskFullError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
    ReadOnlyDiskError,
    SpdeskError,
)

TEMP_SUFFIX = ".spdesk-tmp"
_TEMP_RANDOM = 8  # hex digits: collisions are retried, so this only needs to be rare
_TEMP_OVERHEAD = 1 + 1 + _TEMP_RANDOM + len(TEMP_SUFFIX)  # ".", ".", random, suffix
_SHORT_NAME = 64  # a temporary name may always be this long (every file system allows it)
DEFAULT_NAME_MAX = 255
LOCK_NAME = ".spdesk.lock"

Writer = Callable[[IO[bytes]], None]

_live_lock = threading.Lock()
_live_temps: set[Path] = set()


# --- names --------------------------------------------------------------------------------------
def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links), existing or not."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist yet
        return False


def name_bytes(name: str) -> int:
    """The length of a file name on disk, in bytes (the unit of the file system's limit)."""
    return len(os.fsencode(name))


def name_max(folder: Path) -> int:
    """The longest file name (bytes) ``folder``'s file system allows (255 if it cannot say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf; 255 is NTFS's limit
        return DEFAULT_NAME_MAX


def truncate_name(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes on disk (bytes kept exactly, never re-encoded),
    between two characters: a name cut inside one is not UTF-8 (exFAT and others refuse it)."""
    raw = os.fsencode(name)[: max(limit, 0)]
    if _is_utf8(name):
        return raw.decode("utf-8", "ignore")  # only the last character can be cut: dropped
    # Undecodable already: cut by bytes, the tail comes back as surrogates (the same bytes).
    return os.fsdecode(raw)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes a name held that are not UTF-8
        return False
    return True


def folded(name: str) -> str:
    """``name`` as a disk that ignores case and Unicode normalisation (exFAT, FAT, macOS,
    Windows) compares it: ``A.jpg`` and ``a.jpg`` are one file there."""
    return unicodedata.normalize("NFC", name).casefold()


def listed_spelling(path: Path) -> Path:
    """Absolute ``path`` with each existing part spelled as its folder lists it (``photos``
    typed, ``Photos`` listed by a disk that ignores case): the parts still to create unchanged."""
    spelled = Path(path.anchor)
    parts = path.parts[1:]
    for index, part in enumerate(parts):
        try:
            names = os.listdir(spelled)
        except OSError:  # not a folder there (yet)
            return spelled.joinpath(*parts[index:])
        if part not in names and os.path.lexists(spelled / part):  # found under another name
            part = next((name for name in names if folded(name) == folded(part)), part)
        spelled /= part
    return spelled


def temp_path(target: Path) -> Path:
    """A fresh hidden temporary name beside ``target`` that fits wherever ``target`` fits."""
    budget = min(name_max(target.parent), max(name_bytes(target.name), _SHORT_NAME))
    stem = truncate_name(target.name, budget - _TEMP_OVERHEAD)
    return target.with_name(f".{stem}.{secrets.token_hex(_TEMP_RANDOM // 2)}{TEMP_SUFFIX}")


_CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127]} | {10: "\\n", 9: "\\t", 13: "\\r"}
# Characters that control, reorder (bidi overrides and isolates) or hide text, or break lines.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")  # format characters, but part of emoji and of words


def shown(path: Path | str) -> str:
    """``path`` as text for people and JSON: undecodable bytes written as ``\\xe9``, control
    characters as ``\\n`` or ``\\x1b``, other characters that reorder or hide text as
    ``\\u202e`` (a name cannot break a line of the report, drive the terminal, or show
    ``abc\\u202egpj.exe`` as ``abcexe.jpg``)."""
    text = shown_text(os.fspath(path))
    if text.isprintable():  # the usual name: nothing to look at closer
        return text
    return "".join(map(_shown_char, text))


def _shown_char(char: str) -> str:
    code = ord(char)
    if code in _CONTROL:
        return _CONTROL[code]
    if char in _JOINERS or unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown_text(text: str) -> str:
    """A message for people and JSON, which may hold line breaks and names already
    :func:`shown`: only undecodable bytes are written as ``\\xe9``."""
    if _is_utf8(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of spdesk's temporary files."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


# --- atomic writes ------------------------------------------------------------------------------
def write_temp(target: Path, write: Writer | bytes) -> tuple[Path, int]:
    """Write a complete, fsync'ed temporary file beside ``target``; returns it and its size.

    ``write`` is the content or a function that writes it into an open binary file. On any
    failure nothing is left behind: OSError becomes a named :class:`OutputError` (disk full,
    permission, name too long) naming ``target``; anything else propagates unchanged.
    """
    make_folder(target.parent, target)
    temp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(write, bytes):
                handle.write(write)
            else:
                write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            # The file's length, not the position: an encoder writing to the descriptor itself
            # (Pillow's libtiff) leaves Python's position short of the end.
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        discard(temp)
        raise output_error(error, target) from error
    except BaseException:
        discard(temp)
        raise
    return temp, size


def check_writable(target: Path) -> None:
    """Create ``target``'s folder and prove a file can be written there, before long work whose
    result goes there; raises the named :class:`OutputError` that writing ``target`` would."""
    temp, _size = write_temp(target, b"")
    discard(temp)


def check_save_path(
    path: Path, kind: str, read: Callable[[Path], object], *, force: bool = False
) -> None:
    """Refuse, before any work, a place a file of ``kind`` (a trained perturbation or
    generator) cannot or must not be saved: a folder, a place that cannot be written, or an
    existing file that ``read`` refuses (a photo given by mistake); ``force`` replaces it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{shown(path)} is a folder; the {kind} needs a file name.",
            hint=f"For example: {shown(path / 'mine.safetensors')}",
        )
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OutputPermissionError(
            f"Cannot save {shown(path.name)} in {shown(folder)}: it is read-only, not a folder, "
            "or you do not have permission to write there.",
            hint=f"Choose another place for the {kind} file (--out).",
        )
    if path.exists() and not force:
        try:
            read(path)
        except SpdeskError as error:
            raise ConfigError(
                f"{shown(path)} exists and is not an spdesk {kind} file, so it was not "
                f"replaced ({error.message.rstrip('.')}).",
                hint="Choose another file name, or add --force to replace it.",
            ) from error


def publish(temp: Path, target: Path, *, replace: bool = False) -> None:
    """Give a complete temporary file from :func:`write_temp` its final name, atomically.

    Never replaces an existing ``target`` unless ``replace``: a taken name raises
    :class:`OutputExistsError` and keeps ``temp`` (to publish under another name). Otherwise
    ``temp`` is gone afterwards, published or not.
    """
    try:
        # The rename itself is not fsync'ed: after a power cut it may be lost, which leaves the
        # complete temp file; the next run removes it and writes the file again.
        _publish(temp, target, replace)
    except OutputExistsError:
        raise
    except OSError as error:
        discard(temp)
        raise output_error(error, target) from error
    except BaseException:
        discard(temp)
        raise
    discard(temp)  # after a hard link, the temporary name remains


def atomic_write(target: Path, write: Writer | bytes, *, replace: bool = True) -> int:
    """Write ``target`` atomically (temporary file, fsync, rename); returns its size in bytes.

    Args:
        target: the final path; its folder is created if needed.
        write: the content, or a function writing it into an open binary file.
        replace: replace an existing ``target``; otherwise a taken name raises
            :class:`OutputExistsError` and nothing is replaced.

    Raises:
        DiskFullError, OutputPermissionError, OutputExistsError, OutputError: naming the file;
        the temporary file is always removed.
    """
    temp, size = write_temp(target, write)
    try:
        publish(temp, target, replace=replace)
    finally:
        discard(temp)
    return size


def discard(temp: Path) -> None:
    """Remove a temporary file (if still there) and forget it."""
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)
    with _live_lock:
        _live_temps.discard(temp)


def remove_live_temps() -> list[Path]:
    """Remove every temporary file this process still has open (on the way out of a forced
    stop, e.g. a second Ctrl-C); returns what was removed."""
    with _live_lock:
        temps = list(_live_temps)
    for temp in temps:
        discard(temp)
    return temps


# At exit (after worker threads are joined), e.g. after a second Ctrl-C stopped a job mid-write.
atexit.register(remove_live_temps)


def clean_stale_temps(root: Path) -> list[Path]:
    """Remove temporary files a killed job left under ``root``; returns what was removed.
    A sub-folder another spdesk job holds locked (its own output folder, inside this one) is
    left alone: its temporary files are that job's photos being written."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _locked_elsewhere(Path(folder) / d)]
        for name in files:
            if is_temp_name(name):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _locked_elsewhere(folder: Path) -> bool:
    """Whether ``folder`` holds an spdesk lock that a running job holds now."""
    if not (folder / LOCK_NAME).is_file():
        return False
    import filelock

    lock = filelock.FileLock(folder / LOCK_NAME, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    except (OSError, NotImplementedError):  # cannot tell: its files are left alone
        return True
    lock.release()
    return False


_is_junction = getattr(os.path, "isjunction", lambda _path: False)  # Python 3.12+


def refuse_linked_folders(root: Path, target: Path) -> None:
    """Refuse to write ``target`` when a folder between the output ``root`` and it is a
    symbolic link (or a Windows junction): it could lead anywhere, the photos' own folder
    included, which the check that the output is not inside the inputs made for ``root`` alone.
    ``root`` itself may be a link: the user chose it."""
    try:
        parts = target.parent.relative_to(root).parts
    except ValueError:
        return
    folder = root
    for part in parts:
        folder = folder / part
        try:
            linked = folder.is_symlink() or _is_junction(folder)
        except OSError as error:  # a path too long to examine is one too long to write
            raise output_error(error, target) from error
        if linked:
            raise OutputError(
                f"Not written: the folder {shown(folder)} in the output folder is a link to "
                f"{shown(os.readlink(folder))}, and spdesk writes only into real folders there.",
                hint="Remove the link (or move it out of the output folder) and run again.",
            )


def shared_no_wider_than(path: Path, original: Path) -> None:
    """Take from ``path`` (a new copy of ``original``) the group and other permissions the
    original does not have: a private photo (mode 600) gave a copy anyone could read (644),
    with the same camera data. Best effort: where permissions cannot be read or set (not
    POSIX, another file system), the copy keeps the usual ones."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        mine, theirs = os.stat(path).st_mode & 0o777, os.stat(original).st_mode
        wanted = (mine & 0o700) | (mine & theirs & 0o077)
        if wanted != mine:
            os.chmod(path, wanted)


def make_folder(folder: Path, target: Path) -> None:
    """Create ``folder`` (for ``target``), or say plainly why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise OutputError(
            f"Cannot create the folder {shown(folder)} for {shown(target.name)}: a file has "
            "that name.",
            hint="Rename or move that file, or choose another output folder.",
        ) from error
    except OSError as error:
        raise output_error(error, target) from error


def _create_temp(target: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _attempt in range(100):
        temp = temp_path(target)
        try:
            fd = os.open(temp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        except OSError as error:
            raise output_error(error, target) from error
        with _live_lock:
            _live_temps.add(temp)
        return temp, fd
    raise OutputError(f"Could not create a temporary file beside {shown(target)}.")


def _publish(temp: Path, target: Path, replace: bool) -> None:
    if replace:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # atomic and never clobbers
        return
    except FileExistsError:
        raise OutputExistsError(f"{shown(target)} already exists.") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    # Hard links unsupported (FAT, some network shares): check, then rename.
    if target.exists() or target.is_symlink():
        raise OutputExistsError(f"{shown(target)} already exists.")
    os.rename(temp, target)


def output_error(error: OSError, target: Path | str) -> OutputError:
    """A named, actionable error for an OSError met while writing ``target`` (a path, or a
    URL as an object store shows it: ``s3://bucket/out/a.jpg``)."""
    code = error.errno
    if isinstance(target, Path):
        name, folder = shown(target.name), shown(target.parent)
    else:
        name, folder = shown(posixpath.basename(target)), shown(posixpath.dirname(target))
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(
            f"The disk is full: {name} could not be written to {folder}.",
            hint="Free some space, or choose an output folder on another disk.",
        )
    if code == errno.EROFS:
        return ReadOnlyDiskError(
            f"Cannot write {name}: the disk holding {folder} is read-only (it may have been "
            "unplugged, or the system made it read-only after a disk error).",
            hint="Make the disk writable again, or choose an output folder on another disk.",
        )
    if isinstance(error, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return OutputPermissionError(
            f"Cannot write {name}: the folder {folder} is read-only or you do not have "
            "permission to write there.",
            hint="Choose an output folder you can write to, or change that folder's permissions.",
        )
    if code == errno.ENAMETOOLONG:
        return OutputError(
            f"Cannot write {shown(target)}: the name or path is too long for this disk.",
            hint="Choose a shorter output folder path or a shorter suffix.",
        )
    refused = code in (errno.ENOENT, errno.EINVAL, errno.EILSEQ)
    if refused and _new_parts_not_utf8(target):
        return OutputError(
            f"Cannot write {shown(target)}: this disk keeps names as Unicode (exFAT, FAT, NTFS, "
            "Windows shares), and the name is in another encoding (the bytes shown as \\x..).",
            hint="Rename the photo (or its folder) so that its name reads correctly here, or "
            "choose an output folder on another disk.",
        )
    forbidden = _forbidden_characters(target) if refused else []
    if forbidden:
        return OutputError(
            f"Cannot write {shown(target)}: this disk does not allow the characters "
            f"{' '.join(forbidden)} in names (exFAT, FAT and Windows shares refuse them).",
            hint="Rename the photo (or its folder) without them, or choose an output folder "
            "on another disk.",
        )
    return OutputError(f"Could not write {shown(target)}: {error.strerror or error}.")


_FORBIDDEN_ON_SOME_DISKS = ':?*"<>|'


def _forbidden_characters(target: Path | str) -> list[str]:
    """The characters some disks refuse in names, in order, found in the parts of ``target``
    not created yet (the file, and folders still to make for it)."""
    new = _new_parts(target)
    return [char for char in _FORBIDDEN_ON_SOME_DISKS if any(char in name for name in new)]


def _new_parts_not_utf8(target: Path | str) -> bool:
    """Whether a part of ``target`` not created yet has bytes that are not UTF-8, which disks
    that keep names as Unicode refuse (Linux says EINVAL or EILSEQ)."""
    return any(not _is_utf8(name) for name in _new_parts(target))


def _new_parts(target: Path | str) -> list[str]:
    """The names in ``target`` not created yet: the file, and folders still to make for it."""
    if isinstance(target, Path):
        return [p.name for p in (target, *target.parents) if not os.path.lexists(p)]
    return [posixpath.basename(target)]


# --- locks --------------------------------------------------------------------------------------
class FolderLockedError(OutputError):
    """Another spdesk process holds the lock of a folder."""


@contextlib.contextmanager
def folder_lock(folder: Path, *, wait_s: float = 0.0, busy: str = "") -> Iterator[None]:
    """Hold ``folder``'s spdesk lock (a ``.spdesk.lock`` file in it) for the ``with`` block.

    Args:
        folder: the folder to lock (it must exist).
        wait_s: how long to wait for another holder, in seconds (0: refuse at once).
        busy: the message of the :class:`FolderLockedError` raised when it stays locked.
    """
    import filelock

    lock = filelock.FileLock(folder / LOCK_NAME, timeout=wait_s, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout as error:
        raise FolderLockedError(
            busy or f"Another spdesk process is using {shown(folder)}.",
            hint="Wait for it to finish, or choose another folder.",
        ) from error
    except NotImplementedError:  # a file system without locks (some network shares)
        yield
        return
    except OSError as error:  # the lock file cannot be created (read-only folder...)
        raise lock_error(error, folder / LOCK_NAME) from error
    try:
        yield
    finally:
        lock.release()


def lock_error(error: OSError, lock: Path) -> OutputError:
    """A named error for a lock file that could not be opened: an existing one in the way (a
    folder, a link, a file that cannot be written) is named with what is wrong with it; else
    the folder's problem (read-only, full) as for any file written there."""
    whole_disk = (errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if not os.path.lexists(lock) or error.errno in whole_disk:
        return output_error(error, lock)
    if lock.is_symlink():
        problem = "is a symbolic link (spdesk locks with a plain file only)"
    elif lock.is_dir():
        problem = "is a folder, not a file"
    elif isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM):
        problem = (
            "cannot be opened for writing: it is read-only, marked immutable, or belongs to "
            "another user"
        )
    else:
        problem = f"cannot be opened: {error.strerror or error}"
    return OutputError(
        f"The lock file {shown(lock)} {problem}.",
        hint="spdesk makes a new one when needed: remove it (when no spdesk job is running in "
        "that folder) and try again.",
    )


def finite_for_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, in nested dicts, lists and tuples: JSON has no
    word for them, and strict parsers refuse the ``NaN`` Python writes (a blank edit's metric)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: finite_for_json(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_for_json(value) for value in obj]
    return obj
