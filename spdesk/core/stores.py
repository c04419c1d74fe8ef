"""Where a job reads photos and publishes outputs: a folder, or an object store.

A job touches storage in a few places: the inputs are listed (with each one's size and
modification time, which decide whether it changed since it was protected, and their first
bytes, which decide the output names), output names are checked, a photo is read, a complete
output is published under its planned name, and what was done is recorded in a manifest (or a
writer's shard of it). A :class:`Store` does these for one kind of place; both engines go
through it, so URLs work with either:

- :class:`FolderStore`: a local or shared (NFS-style) folder, with the local engine's own
  functions: discovery by content, :func:`~spdesk.core.imageio.read_image`, an atomic rename
  or hard link that never replaces (:func:`~spdesk.core.files.publish`), the manifest's own
  shard merging under the folder's lock.
- :class:`FsspecStore`: any `fsspec <https://filesystem-spec.readthedocs.io>`_ file system:
  ``s3://`` (s3fs), ``gs://`` (gcsfs), ``memory://``, or a ``pyarrow.fs`` file system wrapped
  in ``fsspec.implementations.arrow.ArrowFSWrapper`` (what Ray Data uses).

What an object store gives and does not give (see docs/ray.md):

- An output is encoded and checked in a local temporary file, then uploaded with **one PUT**:
  an object is never seen half-written (an object store has no rename to make atomic).
- **No overwrite** asks the store to create the object only if no object has its name
  (``pipe_file(mode="create")``: S3's ``If-None-Match: *``, GCS's ``ifGenerationMatch=0``):
  atomic where the store does this, a check before the write where it does not (a pyarrow
  local file system). An object that already holds the same bytes counts as published: a batch
  retried after its worker died publishes again what its first try did.
- A writer's manifest lines are one shard object, rewritten whole when they change; before
  each output is uploaded its shard holds a ``publishing`` line with the output's sha256, so a
  writer killed between the upload and its "done" line leaves an output the next run knows
  (:class:`StoreManifest`). The job merges the shards into the manifest object (one PUT) and
  then removes them, so a job killed before merging loses nothing. There are no locks: one job
  per output prefix at a time is the caller's rule.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import posixpath
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from spdesk.core.discovery import (
    RECORDED_OUTPUT,
    SYSTEM_FOLDERS,
    Discovery,
    DiscoveryOptions,
    InputPhoto,
    SkippedInput,
    content_reason,
    discover,
    name_reason,
)
from spdesk.core.errors import (
    ConfigError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
    pip_hint,
)
from spdesk.core.files import (
    atomic_write,
    clean_stale_temps,
    discard,
    listed_spelling,
    make_folder,
    name_max,
    output_error,
    publish,
    refuse_linked_folders,
    shown,
)
from spdesk.core.formats import HEAD_BYTES, sniff, sniff_file
from spdesk.core.imageio import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    PhotoHeader,
    read_error,
    read_header,
    read_header_from,
    read_image,
    read_image_from,
)
from spdesk.core.manifest import (
    MANIFEST_NAME,
    PUBLISHING,
    SHARDS_FOLDER,
    Manifest,
    SourceSignature,
    compact_text,
    merge_entries,
    parse_job_manifest,
    shard_path,
    supersede,
)

# Object metadata that says when an object was last written, by file system (s3fs, gcsfs,
# pyarrow, memory).
_TIME_FIELDS = ("mtime", "LastModified", "updated", "created")
# Object names have no file system's limit (S3 and GCS allow 1024 bytes a key): keep names
# that fit any disk the outputs may be copied to.
_OBJECT_NAME_MAX = 255
_HEADER_BLOCK = 64 * 1024  # a photo's header is read in blocks of this many bytes
_HEADS_PER_REQUEST = 256  # first bytes of this many objects fetched together while listing


@dataclass(frozen=True)
class StoredFile:
    """One input photo of a store: its location and what identifies its version."""

    path: str
    signature: SourceSignature


class Store(Protocol):
    """Every storage step of a job (see the module docstring). Paths are the store's own: a
    local path for a folder, the path inside the file system (no scheme) for an object store."""

    # -- inputs -----------------------------------------------------------------------------
    def discover(self, paths: Sequence[Path], options: DiscoveryOptions) -> Discovery:
        """The photos under ``paths`` in job order, and what is left out (as the local walk)."""
        ...

    def list_photos(self, root: str) -> list[StoredFile]:
        """The photos under ``root``, in a stable order (hidden and spdesk's files left out)."""
        ...

    def key(self, path: Path) -> str:
        """The photo's name in the manifest (a local absolute path, or a URL)."""
        ...

    def within(self, path: Path, folder: Path) -> bool:
        """Whether ``path`` is the folder ``folder`` or lies under it (False when ``folder``
        is not a folder): an output inside the inputs."""
        ...

    def shown(self, path: Path | str) -> str:
        """A path of this store as people see it in reports and errors: the URL the job was
        given (``s3://bucket/a.jpg``), not the path inside the file system."""
        ...

    def signature(self, path: Path) -> SourceSignature:
        """The photo's size and modification time (OSError when it cannot be found)."""
        ...

    def sniff(self, path: Path) -> str | None:
        """The format of the photo's first bytes (OSError when it cannot be read)."""
        ...

    def read_header(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoHeader:
        """The size and mode the photo declares (raises the local engine's named ImageError)."""
        ...

    def read_image(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        """Decode one photo (raises the local engine's named ImageError)."""
        ...

    # -- outputs ----------------------------------------------------------------------------
    def make_root(self, root: Path) -> None:
        """Make the output root, or say plainly why the job cannot write there."""
        ...

    def clean_stale_temps(self, root: Path) -> None:
        """Remove what a killed job left half-written under ``root``."""
        ...

    def manifest(self, root: Path, *, shard: str | None = None) -> Manifest:
        """The manifest of the output ``root`` (or one writer's shard of it), not yet open."""
        ...

    def exists(self, path: Path) -> bool:
        """Whether an output name is taken."""
        ...

    def name_max(self, folder: Path) -> int:
        """The longest name (bytes) an output in ``folder`` may have."""
        ...

    def scratch(self, root: Path, target: Path) -> Path:
        """Where an output's complete local temporary file is written: beside ``target``, or
        in a local folder for a store without renames. OutputError when a folder between the
        output ``root`` and ``target`` leads elsewhere (a symbolic link)."""
        ...

    def publish(
        self, temp: Path, target: str | Path, *, replace: bool = False, idempotent: bool = True
    ) -> None:
        """Give a complete local temporary file its final name; OutputExistsError (the
        temporary file kept) if the name holds other bytes and ``replace`` is False. With
        ``idempotent``, a name that already holds these very bytes counts as published."""
        ...

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        """Record one writer's manifest lines as the shard ``name`` of the output ``root``."""
        ...

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        """Merge the output's shards into its manifest; returns the manifest's entries."""
        ...


class FolderStore:
    """A local or shared folder, through the local engine's own functions."""

    def discover(self, paths: Sequence[Path], options: DiscoveryOptions) -> Discovery:
        return discover(paths, options)

    def list_photos(self, root: str) -> list[StoredFile]:
        found = discover([Path(root)])
        return [StoredFile(str(p.path), SourceSignature.of(p.path)) for p in found.photos]

    def key(self, path: Path) -> str:
        return os.path.abspath(path)

    def within(self, path: Path, folder: Path) -> bool:
        # The same folder, not the same text: a disk that ignores case (exFAT, macOS, Windows)
        # or a bind mount gives a folder other names than the one given for the inputs.
        try:
            outer = os.stat(folder)
        except OSError:
            return False
        if not stat.S_ISDIR(outer.st_mode):
            return False
        path = path.resolve()  # links resolved: the folders the output really goes into
        if any(_same_file(place, outer) for place in (path, *path.parents)):
            return True
        # Some drivers (exFAT through FUSE) number a folder differently under each spelling.
        path, folder = listed_spelling(path), listed_spelling(folder.resolve())
        return path == folder or folder in path.parents

    def shown(self, path: Path | str) -> str:
        return shown(path)

    def signature(self, path: Path) -> SourceSignature:
        return SourceSignature.of(path)

    def sniff(self, path: Path) -> str | None:
        return sniff_file(path)

    def read_header(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoHeader:
        return read_header(path, max_pixels=max_pixels)

    def read_image(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        return read_image(Path(path), max_pixels=max_pixels)

    def make_root(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise OutputError(
                f"The output folder {shown(root)} is a file, not a folder.",
                hint="Choose another output folder, or move that file away.",
            ) from error
        except OSError as error:
            raise _root_error(error, root) from error
        if not os.access(root, os.W_OK):
            raise OutputPermissionError(
                f"Cannot write into the output folder {shown(root)}: it is read-only or you do "
                "not have permission to write there.",
                hint="Choose an output folder you can write to.",
            )

    def clean_stale_temps(self, root: Path) -> None:
        clean_stale_temps(root)

    def manifest(self, root: Path, *, shard: str | None = None) -> Manifest:
        return Manifest(root, shard=shard)

    def exists(self, path: Path) -> bool:
        try:
            os.lstat(path)
        except OSError:  # cannot tell (a folder in the way...): publishing will say what is wrong
            return False
        return True

    def name_max(self, folder: Path) -> int:
        return name_max(folder)

    def scratch(self, root: Path, target: Path) -> Path:
        refuse_linked_folders(root, target)
        return target  # the rename that publishes it is atomic on one file system

    def publish(
        self, temp: Path, target: str | Path, *, replace: bool = False, idempotent: bool = True
    ) -> None:
        make_folder(Path(target).parent, Path(target))
        try:
            publish(temp, Path(target), replace=replace)
        except OutputExistsError:
            if not idempotent or _file_bytes(temp) != _file_bytes(Path(target)):
                raise
            discard(temp)

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        atomic_write(shard_path(Path(root), name), _lines(entries).encode("utf-8"))

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        with Manifest(Path(root)) as manifest:  # merges under the folder's lock, compacts
            return dict(manifest.entries)


def _root_error(error: OSError, root: Path) -> OutputError:
    """Why the output folder ``root`` could not be made, naming the folder at fault: the
    nearest one that exists (the message named ``root`` itself, which did not exist, as
    "read-only"), or the file in the way ("Could not write .../spdesk-manifest.jsonl: Not a
    directory")."""
    existing = next((p for p in root.parents if os.path.lexists(p)), None)
    if error.errno == errno.ENOTDIR and existing is not None:
        return OutputError(
            f"The output folder {shown(root)} cannot be made: {shown(existing)} is a file, not "
            "a folder.",
            hint="Choose another output folder, or move that file away.",
        )
    denied = isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM)
    if denied and existing is not None:
        return OutputPermissionError(
            f"The output folder {shown(root)} cannot be made: the folder {shown(existing)} is "
            "read-only or you do not have permission to write there.",
            hint="Choose an output folder you can write to.",
        )
    named = output_error(error, root / MANIFEST_NAME)
    if type(named) is OutputError and named.hint is None and existing is not None:
        # The general case named the record, a file the user never asked for ("Could not
        # write /proc/out/spdesk-manifest.jsonl: No such file or directory"), with no way out.
        return OutputError(
            f"The output folder {shown(root)} cannot be made in {shown(existing)}: "
            f"{error.strerror or error}.",
            hint="Choose an output folder on a disk you can write to (in your home folder, "
            "for example).",
        )
    return named


def _same_file(path: Path, other: os.stat_result) -> bool:
    """Whether ``path`` exists and is the file ``other`` was read from."""
    try:
        return os.path.samestat(os.stat(path), other)
    except OSError:  # not there yet (an output folder still to make)
        return False


class FsspecStore:
    """Any fsspec file system (an object store; see the module docstring for its guarantees).

    Args:
        fs: the file system (``fsspec.filesystem("s3")``, ``ArrowFSWrapper(pyarrow_fs)``...).
        scheme: the scheme of the URLs the job was given (``s3``), to show paths as those URLs;
            "" for paths given inside ``filesystem=``, shown as given.
    """

    def __init__(self, fs: Any, scheme: str = "") -> None:
        self.fs = fs
        self.scheme = scheme
        # What listing the inputs told (the driver plans from it without a request per photo).
        self._signatures: dict[str, SourceSignature] = {}
        self._formats: dict[str, str | None] = {}
        # Listed keys a Path does not keep (``in//a.jpg`` is ``in/a.jpg`` as a Path), by the
        # Path's name: photos are read by the key listed.
        self._keys: dict[str, str] = {}
        # The output root's objects and sizes, listed once when its manifest opens.
        self._outputs: dict[str, int] | None = None
        self._outputs_root = ""

    def __getstate__(self) -> dict[str, Any]:
        # A worker gets the file system and the keys of odd names, not the driver's listings.
        return {"fs": self.fs, "scheme": self.scheme, "keys": self._keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fs"], state.get("scheme", ""))  # type: ignore[misc]
        self._keys = dict(state.get("keys", {}))

    # -- inputs -----------------------------------------------------------------------------
    def discover(self, paths: Sequence[Path], options: DiscoveryOptions) -> Discovery:
        found = Discovery()
        seen: set[str] = set()
        excluded = {self._strip(p) for p in options.exclude}
        for given in paths:
            path = self._strip(given)
            self._forget_listings(path)
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                found.missing.append(Path(path))
                continue
            except OSError as error:
                found.unreadable.append(SkippedInput(Path(path), f"cannot be read ({error})"))
                continue
            if info.get("type") == "directory":
                self._walk(path, options, excluded, seen, found)
            elif path not in seen:  # a named file is always taken (a bad one fails by name)
                seen.add(path)
                self._signatures[path] = self._signature(path, info)
                found.photos.append(InputPhoto(Path(path), Path(posixpath.dirname(path))))
        return found

    def _walk(
        self,
        root: str,
        options: DiscoveryOptions,
        excluded: set[str],
        seen: set[str],
        found: Discovery,
    ) -> None:
        """The local walk's rules on a listing: files of a folder before its subfolders, by
        name; hidden, system and output folders left out; photos by content."""
        listing: dict[str, dict[str, Any]] = self.fs.find(root, detail=True)
        files = sorted(
            # A key ending in "/" is a folder's marker (S3 console's "Create folder").
            (p for p, info in listing.items() if info.get("type") != "directory" and p[-1:] != "/"),
            key=lambda path: _walk_key(posixpath.relpath(path, root)),
        )
        relative = {path: posixpath.relpath(path, root) for path in files}
        marked = {
            posixpath.dirname(rel)
            for rel in relative.values()
            if options.output_marker and posixpath.basename(rel) == options.output_marker
        }
        left_out: set[str] = set()
        undecided: list[str] = []
        for path in files:
            folder = _folder_reason(root, relative[path], excluded, marked - {""})
            if folder is not None:
                where, why = folder
                if where not in left_out:
                    left_out.add(where)
                    found.skipped.append(SkippedInput(Path(where), why, folder=True))
                continue
            reason = name_reason(posixpath.basename(path), options)
            if reason is None:
                reason = self._key_reason(path, listing, options)
            if reason is None:
                undecided.append(path)
            elif reason:
                found.skipped.append(SkippedInput(Path(path), reason))
        heads = self._heads(undecided)
        for path in undecided:
            head = heads[path]
            error = head if isinstance(head, OSError) else None
            fmt = None if error is not None else self._formats.get(path)
            reason = content_reason(posixpath.basename(path), fmt, error)
            if reason is None and path not in seen:
                seen.add(path)
                self._signatures[path] = self._signature(path, listing[path])
                if str(Path(path)) != path:
                    self._keys[str(Path(path))] = path
                found.photos.append(InputPhoto(Path(path), Path(root)))
            elif reason:
                found.skipped.append(SkippedInput(Path(path), reason))

    def _key_reason(
        self, path: str, listing: dict[str, Any], options: DiscoveryOptions
    ) -> str | None:
        """Why a listed key that is no spdesk file by name is left out for what it names: an
        earlier run's output (protecting in place), or a key another key's name hides."""
        if options.is_recorded_output is not None and options.is_recorded_output(Path(path)):
            return RECORDED_OUTPUT
        if str(Path(path)) != path and str(Path(path)) in listing:
            return (
                f"another photo is named {self.shown(Path(path))}: this name differs only by an "
                "empty or '.' folder, which spdesk cannot tell apart (rename one of them)"
            )
        return None

    def _heads(self, paths: list[str]) -> dict[str, bytes | OSError]:
        """The first bytes of each object (many requests at once where the file system can),
        sniffed and kept for naming; an OSError for one that cannot be read."""
        heads: dict[str, bytes | OSError] = {}
        for start in range(0, len(paths), _HEADS_PER_REQUEST):
            chunk = paths[start : start + _HEADS_PER_REQUEST]
            got = self.fs.cat_ranges(
                chunk, [0] * len(chunk), [HEAD_BYTES] * len(chunk), on_error="return"
            )
            for path, head in zip(chunk, got, strict=True):
                if not isinstance(head, bytes):  # pyarrow's wrapper reads no ranges: open it
                    try:
                        head = self._head(path)
                    except OSError as error:
                        heads[path] = error
                        continue
                self._formats[path] = sniff(head)
                heads[path] = head
        return heads

    def _head(self, path: str) -> bytes:
        with self.fs.open(path, "rb", block_size=_HEADER_BLOCK) as handle:
            return bytes(handle.read(HEAD_BYTES))

    def list_photos(self, root: str) -> list[StoredFile]:
        found = self.discover([Path(root)], DiscoveryOptions(output_marker=MANIFEST_NAME))
        return [StoredFile(str(p.path), self.signature(p.path)) for p in found.photos]

    def key(self, path: Path) -> str:
        if _is_local(self.fs):  # the local engine's key: either engine skips what one did
            return os.path.abspath(path)
        return str(self.fs.unstrip_protocol(self._listed(path)))

    def within(self, path: Path, folder: Path) -> bool:
        inner, outer = self._strip(path), self._strip(folder)
        if inner != outer and not inner.startswith(outer.rstrip("/") + "/"):
            return False
        try:
            return bool(self.fs.isdir(outer))
        except OSError:
            return False

    def shown(self, path: Path | str) -> str:
        text = self._listed(path)
        return shown(f"{self.scheme}://{text.lstrip('/')}" if self.scheme else text)

    def _listed(self, path: Path | str) -> str:
        """The key of ``path`` as listed (see ``_keys``)."""
        return self._keys.get(str(path), str(path))

    def signature(self, path: Path) -> SourceSignature:
        known = self._signatures.get(self._listed(path))
        return known if known is not None else self._signature(self._listed(path))

    def _signature(self, path: str, info: dict[str, Any] | None = None) -> SourceSignature:
        """Size and modification time from the listing (``info``); on this machine's own disk
        from ``stat``, to the nanosecond, as the local engine records it."""
        if _is_local(self.fs):
            return SourceSignature.of(Path(path))
        info = self.fs.info(path) if info is None else info
        return SourceSignature(int(info.get("size") or 0), _mtime_ns(info))

    def sniff(self, path: Path) -> str | None:
        key = self._listed(path)
        if key in self._formats:
            return self._formats[key]
        return sniff(self._head(key))

    def read_header(self, path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoHeader:
        try:
            # Ranged reads of a small block: the header only, not the photo (read next).
            with self.fs.open(self._listed(path), "rb", block_size=_HEADER_BLOCK) as handle:
                return read_header_from(handle, Path(path), max_pixels=max_pixels)
        except OSError as error:
            raise read_error(self.shown(path), error) from error

    def read_image(self, path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        try:
            data = self.fs.cat_file(self._listed(path))  # one GET; decoded in memory anyway
            return read_image_from(io.BytesIO(data), Path(path), max_pixels=max_pixels)
        except OSError as error:
            raise read_error(self.shown(path), error) from error

    # -- outputs ----------------------------------------------------------------------------
    def make_root(self, root: Path) -> None:
        with contextlib.suppress(OSError):  # object stores have no folders; others need them
            self.fs.makedirs(str(root), exist_ok=True)

    def clean_stale_temps(self, root: Path) -> None:
        """Nothing to clean: outputs are never half-written in the store (one PUT each)."""

    def manifest(self, root: Path, *, shard: str | None = None) -> Manifest:
        return StoreManifest(self, Path(root), shard=shard)

    def survey(self, root: Path) -> None:
        """List the output root's objects once, so that planning asks no request per photo
        whether a name is taken or a finished output is still there."""
        self._forget_listings(str(root))
        listing: dict[str, dict[str, Any]] = self.fs.find(str(root), detail=True)
        self._outputs = {path: int(info.get("size") or 0) for path, info in listing.items()}
        self._outputs_root = str(root).rstrip("/") + "/"

    def exists(self, path: Path) -> bool:
        if self._surveyed(path):
            assert self._outputs is not None
            return str(path) in self._outputs
        return bool(self.fs.exists(str(path)))

    def size(self, path: Path) -> int | None:
        """The size of the object ``path`` (None if there is none)."""
        if self._surveyed(path):
            assert self._outputs is not None
            return self._outputs.get(str(path))
        try:
            info = self.fs.info(str(path))
        except OSError:
            return None
        return int(info.get("size") or 0) if info.get("type") != "directory" else None

    def sha256(self, path: Path) -> str | None:
        data = self._bytes(str(path))
        return None if data is None else hashlib.sha256(data).hexdigest()

    def _surveyed(self, path: Path) -> bool:
        return self._outputs is not None and str(path).startswith(self._outputs_root)

    def name_max(self, folder: Path) -> int:
        return _OBJECT_NAME_MAX

    def scratch(self, root: Path, target: Path) -> Path:  # an object store has no links
        return Path(tempfile.gettempdir()) / "spdesk-uploads" / target.name

    def publish(
        self, temp: Path, target: str | Path, *, replace: bool = False, idempotent: bool = True
    ) -> None:
        try:
            data = temp.read_bytes()
        except OSError as error:
            discard(temp)
            raise output_error(error, self.shown(target)) from error
        try:
            self._put(str(target), data, replace=replace, idempotent=idempotent)
        except OutputExistsError:
            raise  # the temporary file is kept, to publish under another name
        except BaseException:
            discard(temp)
            raise
        discard(temp)
        if self._surveyed(Path(target)):
            assert self._outputs is not None
            self._outputs[str(target)] = len(data)

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        target = posixpath.join(str(root), SHARDS_FOLDER, f"{name}.jsonl")
        self._put(target, _lines(entries).encode("utf-8"), replace=True)

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        manifest = posixpath.join(str(root), MANIFEST_NAME)
        entries = parse_job_manifest(self.text(manifest), self.shown(manifest))
        self._forget_listings(str(root))  # shards other processes (Ray workers) wrote
        shards = self.shards(str(root))
        if not shards:
            return entries
        found = self.shard_entries(shards)
        merge_entries(entries, found)
        self._put(manifest, compact_text(entries).encode("utf-8"), replace=True)
        for shard in shards:  # only once the merged manifest is stored
            with contextlib.suppress(OSError):
                self.fs.rm_file(shard)
        return entries

    def shard_entries(self, shards: list[str]) -> list[dict[str, Any]]:
        """Every entry the shard objects ``shards`` hold, each shard named in its errors."""
        return [e for s in shards for e in parse_job_manifest(self.text(s), self.shown(s)).values()]

    def shards(self, root: str) -> list[str]:
        """The shard objects of the output ``root``: listed, not globbed (a prefix may hold
        ``[`` or ``*``)."""
        found = self.fs.find(posixpath.join(root, SHARDS_FOLDER))
        return sorted(str(path) for path in found if str(path).endswith(".jsonl"))

    def _put(self, target: str, data: bytes, *, replace: bool, idempotent: bool = True) -> None:
        """One PUT of the whole object; ``replace`` False: only if no other bytes hold the name
        (the same bytes count as published where ``idempotent``)."""
        try:
            with contextlib.suppress(OSError):  # object stores have no folders; others need them
                self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            self.fs.pipe_file(target, data, mode="overwrite" if replace else "create")
        except FileExistsError:
            if not idempotent or data != self._bytes(target):
                raise OutputExistsError(f"{self.shown(target)} already exists.") from None
        except OSError as error:
            raise output_error(error, self.shown(target)) from error

    def _forget_listings(self, path: str) -> None:
        """Drop the file system's cached listings under ``path`` (s3fs and gcsfs cache them):
        other processes (a Ray job's workers) wrote there since."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)

    def _strip(self, path: Path | str) -> str:
        return str(self.fs._strip_protocol(str(path))).rstrip("/") or "/"

    def _bytes(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except OSError:
            return None

    def text(self, path: str) -> str:
        """The object ``path`` as text ("" if there is none)."""
        data = self._bytes(path)
        return "" if data is None else data.decode("utf-8", errors="replace")


class StoreManifest(Manifest):
    """The manifest of an output in an object store, where nothing can be appended to.

    Lines are kept in memory and written as one shard object of this writer (the job's own or
    a Ray batch's), rewritten whole when it changes; the job merges every shard into the
    manifest object when it opens and closes. An output is uploaded only after a
    ``publishing`` line naming it with its sha256 is stored: a writer killed between the upload
    and its "done" line leaves an output the next run recognises by its bytes (one GET), so it
    is neither protected again under another name nor taken for someone else's file.
    """

    def __init__(self, store: FsspecStore, root: Path, *, shard: str | None = None) -> None:
        self.store = store
        self.name = shard or f"job-{uuid.uuid4().hex}"
        self.lines: list[dict[str, Any]] = []
        self._dirty = False
        super().__init__(root, shard=shard)

    def _load(self) -> dict[str, dict[str, Any]]:
        return parse_job_manifest(self.store.text(str(self.path)), self.store.shown(self.path))

    def open(self) -> Manifest:
        try:
            if self.shard is None:
                self.entries = self.store.merge_shards(str(self.root))
                self.store.survey(self.root)
                self._check_writable()
            else:  # a retried batch: its shard object keeps the earlier try's lines
                self.entries = self._load()
                self.lines = list(self.entries.values())
        except OSError as error:
            raise output_error(error, self.store.shown(self.path)) from error
        return self

    def _check_writable(self) -> None:
        """Store this writer's (empty) shard once: a store that refuses writes (a read-only
        bucket) stops the job before any photo is protected, not after each one."""
        try:
            self.store.write_shard(str(self.root), self.name, [])
        except OutputPermissionError as error:
            raise OutputPermissionError(
                f"Cannot write into {self.store.shown(self.root)}: the store refuses writes "
                "there (read-only, or your credentials may only read).",
                hint="Choose an output you can write to (spdesk protect --out URL), or use "
                "credentials allowed to write there.",
            ) from error

    def _shard_entries(self) -> list[dict[str, Any]]:
        shards = self.store.shards(str(self.root))
        return self.store.shard_entries(shards)

    def close(self, *, compact: bool = True) -> None:
        with contextlib.suppress(OutputError):  # a store refusing writes: merged next time
            self.flush()
            if self.shard is None:
                self.store.merge_shards(str(self.root))

    def flush(self) -> None:
        """Store this writer's lines (one PUT of its shard object)."""
        if self._dirty:
            self.store.write_shard(str(self.root), self.name, self.lines)
            self._dirty = False

    def mark_pending(self, sources: list[str], settings: str) -> None:
        """Nothing to write: a photo without a line in an object store's manifest is pending."""

    def publishing(self, source: str, output: Path, settings: str, **proof: Any) -> None:
        source = self.source_id(source)
        entry = {
            "source": source,
            "status": PUBLISHING,
            "time": time.time(),
            "output": output.relative_to(self.root).as_posix(),
            "settings": settings,
            **proof,
        }
        entry = supersede(self.entries.get(source), entry)
        self.entries[source] = entry
        self._append([entry])
        self.flush()  # stored before the upload it announces

    def finished_output(
        self, source: str, settings: str, signature: SourceSignature
    ) -> Path | None:
        entry = self.entries.get(self.source_id(source), {})
        same = entry.get("settings") == settings
        if entry.get("status") == PUBLISHING and same:  # the writer was killed meanwhile
            output = self.root / str(entry.get("output", ""))
            mine = entry.get("source_signature") == signature.as_list()
            if mine and self.store.sha256(output) == entry.get("output_sha256"):
                return output
            return None
        return super().finished_output(source, settings, signature)

    def _append(self, entries: list[dict[str, Any]]) -> None:
        self.lines.extend(entries)
        self._dirty = self._dirty or bool(entries)

    def _output_size(self, output: Path) -> int | None:
        return self.store.size(output)

    def _output_sha256(self, output: Path) -> str | None:
        return self.store.sha256(output)


def open_store(location: str) -> tuple[Store, str]:
    """The store of ``location`` and the path inside it: a URL with a scheme (``s3://bucket/
    photos``, ``memory://...``) through fsspec (in spdesk's ``[ray]`` extra), anything
    else a folder."""
    if "://" not in location or location.startswith("file://"):
        return FolderStore(), location.removeprefix("file://")
    if location.split("://", 1)[0].lower() in ("http", "https"):  # pages, not a store to walk
        raise ConfigError(
            f"{location} is a web address: spdesk reads photos from folders and object stores "
            "(s3://, gs://, ...), not from web pages.",
            hint="Download the photos into a folder first.",
        )
    try:
        from fsspec.core import url_to_fs
    except ImportError as error:
        raise OutputError(
            f"{location} is in an object store, and fsspec is not installed.",
            hint=pip_hint(
                'Install it with: pip install "fsspec>=2024.12" (and s3fs or gcsfs for S3 or GCS).',
                "object stores",
            ),
        ) from error
    try:
        fs, path = url_to_fs(location)
    except (ImportError, ValueError) as error:  # no driver for the scheme (s3fs, gcsfs)
        raise OutputError(
            f"Cannot open {location}: {error}",
            hint=pip_hint(
                "Install the file system for its scheme: pip install s3fs (s3://) or "
                "gcsfs (gs://).",
                "object stores",
            ),
        ) from error
    except Exception as error:  # a driver that connects as it is made (ftp://, sftp://)
        raise _unreachable(location, error) from error
    _reach(fs, str(path), location)
    return FsspecStore(fs, scheme=location.split("://", 1)[0]), str(path)


def _reach(fs: Any, path: str, location: str) -> None:
    """One request before any work, so that a store that cannot be reached or that refuses the
    credentials is a named error at once, not an unexpected one midway (the drivers raise their
    own kinds: botocore's NoCredentialsError, EndpointConnectionError...)."""
    try:
        fs.exists(path)  # False for a place that is not there yet (an output): that is fine
    except Exception as error:
        raise _unreachable(location, error) from error


def _unreachable(location: str, error: Exception) -> ConfigError:
    return ConfigError(
        f"Cannot reach {location}: {error}",
        hint="Check the address, the network and the store's credentials (S3: AWS_PROFILE or "
        "~/.aws/credentials; GCS: gcloud auth application-default login).",
    )


def open_location(location: Path | str, filesystem: Any = None) -> tuple[Store, Path]:
    """The store of one input or output location and the path inside it: ``filesystem`` (an
    fsspec or ``pyarrow.fs`` file system, as Ray Data's ``filesystem=``) when given; else a
    URL string through :func:`open_store`; a :class:`~pathlib.Path` is always a folder."""
    if filesystem is not None:
        fs = _as_fsspec(filesystem)
        return FsspecStore(fs), Path(fs._strip_protocol(str(location)))
    if isinstance(location, Path):
        return FolderStore(), location
    store, path = open_store(location)
    return store, Path(path)


def locate(
    inputs: Sequence[Path | str], output: Path | str, filesystem: Any = None
) -> tuple[Store, list[Path], Store, Path]:
    """The store of a job's inputs (all in one place), their paths, and the output's."""
    opened = [open_location(location, filesystem) for location in inputs]
    output_store, output_path = open_location(output, filesystem)
    stores = [store for store, _ in opened] or [output_store]
    first = stores[0]
    if any(not _same_store(first, store) for store in stores):
        raise ConfigError(
            "The inputs are in different places (folders and object stores, or two object "
            "stores): one job reads from one place.",
            hint="Run one job per place, each with its own output.",
        )
    if _same_store(first, output_store):
        output_store = first  # one store: what listing the inputs learnt serves the output
    return first, [path for _, path in opened], output_store, output_path


def _same_store(one: Store, other: Store) -> bool:
    if isinstance(one, FsspecStore) and isinstance(other, FsspecStore):
        return bool(one.fs is other.fs or one.fs == other.fs)
    return type(one) is type(other)


def _as_fsspec(filesystem: Any) -> Any:
    """An fsspec file system for ``filesystem`` (a ``pyarrow.fs`` one gets fsspec's wrapper)."""
    if type(filesystem).__module__.startswith("pyarrow"):
        from fsspec.implementations.arrow import ArrowFSWrapper

        return ArrowFSWrapper(filesystem)
    return filesystem


def _is_local(fs: Any) -> bool:
    """Whether ``fs`` is this machine's own file system (fsspec's, or pyarrow's wrapped)."""
    inner = getattr(fs, "fs", None)
    return bool(getattr(fs, "local_file", False)) or getattr(inner, "type_name", "") == "local"


def _walk_key(relative: str) -> tuple[tuple[int, str, str], ...]:
    """The local walk's order: a folder's files (by name) before its subfolders (by name)."""
    parts = relative.split("/")
    folders = tuple((1, part.casefold(), part) for part in parts[:-1])
    return (*folders, (0, parts[-1].casefold(), parts[-1]))


def _folder_reason(
    root: str, relative: str, excluded: set[str], marked: set[str]
) -> tuple[str, str] | None:
    """The folder below ``root`` that leaves this file out, and why (as the local walk)."""
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        name, folder = parts[depth - 1], "/".join(parts[:depth])
        where = posixpath.join(root, folder)
        if name.startswith(".") or name.lower() in SYSTEM_FOLDERS:
            return where, "hidden or system folder"
        if where in excluded:
            return where, "the output folder of this job"
        if folder in marked or name == SHARDS_FOLDER:
            return where, "an spdesk output folder (holds protected copies)"
    return None


def _mtime_ns(info: dict[str, Any]) -> int:
    """When the object was last written (ns since the epoch; 0 when the store does not say)."""
    for name in _TIME_FIELDS:
        value = info.get(name)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1_000_000) * 1000
        if isinstance(value, int | float):
            return int(value * 1e9)
    return 0


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _lines(entries: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(entry) + "\n" for entry in entries)


__all__ = [
    "FolderStore",
    "FsspecStore",
    "Store",
    "StoreManifest",
    "StoredFile",
    "locate",
    "open_location",
    "open_store",
]
