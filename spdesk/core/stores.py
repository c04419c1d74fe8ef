"""Where a job reads photos and publishes outputs: a folder, or an object store.

A photo touches storage in four places: the inputs are listed (with each one's size and
modification time, which decide whether it changed since it was protected), a photo is read,
a complete output is published under its planned name, and what was done is recorded in a
manifest shard that the job merges into the output's manifest. A :class:`Store` does these four
things for one kind of place:

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
- A manifest shard is one object written once, when its batch ends; the job merges the shards
  into the manifest object (one PUT) and then removes them, so a job killed before merging
  loses nothing. There are no locks: one job per output prefix at a time is the caller's rule.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from spdesk.core.discovery import discover
from spdesk.core.errors import OutputError, OutputExistsError
from spdesk.core.files import (
    atomic_write,
    discard,
    is_temp_name,
    make_folder,
    output_error,
    publish,
)
from spdesk.core.formats import IMAGE_SUFFIXES
from spdesk.core.imageio import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    read_error,
    read_image,
    read_image_from,
)
from spdesk.core.manifest import (
    MANIFEST_NAME,
    SHARDS_FOLDER,
    Manifest,
    SourceSignature,
    compact_text,
    merge_entries,
    parse_job_manifest,
    shard_path,
)

# Object metadata that says when an object was last written, by file system (s3fs, gcsfs,
# pyarrow, memory).
_TIME_FIELDS = ("mtime", "LastModified", "updated", "created")


@dataclass(frozen=True)
class StoredFile:
    """One input photo of a store: its location and what identifies its version."""

    path: str
    signature: SourceSignature


class Store(Protocol):
    """The four storage steps of a job (see the module docstring)."""

    def list_photos(self, root: str) -> list[StoredFile]:
        """The photos under ``root``, in a stable order (hidden and spdesk's files left out)."""
        ...

    def read_image(self, path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        """Decode one photo (raises the local engine's named ImageError)."""
        ...

    def publish(self, temp: Path, target: str, *, replace: bool = False) -> None:
        """Give a complete local temporary file its final name; OutputExistsError (the
        temporary file kept) if the name holds other bytes and ``replace`` is False."""
        ...

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        """Record one writer's manifest lines as the shard ``name`` of the output ``root``."""
        ...

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        """Merge the output's shards into its manifest; returns the manifest's entries."""
        ...


class FolderStore:
    """A local or shared folder, through the local engine's own functions."""

    def list_photos(self, root: str) -> list[StoredFile]:
        found = discover([Path(root)])
        return [StoredFile(str(p.path), SourceSignature.of(p.path)) for p in found.photos]

    def read_image(self, path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        return read_image(Path(path), max_pixels=max_pixels)

    def publish(self, temp: Path, target: str, *, replace: bool = False) -> None:
        make_folder(Path(target).parent, Path(target))
        try:
            publish(temp, Path(target), replace=replace)
        except OutputExistsError:
            if _file_bytes(temp) != _file_bytes(Path(target)):
                raise
            discard(temp)

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        atomic_write(shard_path(Path(root), name), _lines(entries).encode("utf-8"))

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        with Manifest(Path(root)) as manifest:  # merges under the folder's lock, compacts
            return dict(manifest.entries)


class FsspecStore:
    """Any fsspec file system (an object store; see the module docstring for its guarantees).

    Args:
        fs: the file system (``fsspec.filesystem("s3")``, ``ArrowFSWrapper(pyarrow_fs)``...).
    """

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def list_photos(self, root: str) -> list[StoredFile]:
        found: dict[str, dict[str, Any]] = self.fs.find(root, detail=True)
        return [
            StoredFile(path, SourceSignature(int(info.get("size") or 0), _mtime_ns(info)))
            for path, info in sorted(found.items())
            if _is_photo_name(posixpath.relpath(path, root))
        ]

    def read_image(self, path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
        try:
            data = self.fs.cat_file(path)  # one GET; photos are decoded in memory anyway
            return read_image_from(io.BytesIO(data), Path(path), max_pixels=max_pixels)
        except OSError as error:
            raise read_error(Path(path), error) from error

    def publish(self, temp: Path, target: str, *, replace: bool = False) -> None:
        try:
            data = temp.read_bytes()
        except OSError as error:
            discard(temp)
            raise output_error(error, Path(target)) from error
        try:
            self._put(target, data, replace=replace)
        except OutputExistsError:
            raise  # the temporary file is kept, to publish under another name
        except BaseException:
            discard(temp)
            raise
        discard(temp)

    def write_shard(self, root: str, name: str, entries: Iterable[dict[str, Any]]) -> None:
        target = posixpath.join(root, SHARDS_FOLDER, f"{name}.jsonl")
        self._put(target, _lines(entries).encode("utf-8"), replace=True)

    def merge_shards(self, root: str) -> dict[str, dict[str, Any]]:
        manifest = posixpath.join(root, MANIFEST_NAME)
        entries = parse_job_manifest(self._text(manifest))
        shards = sorted(self.fs.glob(posixpath.join(root, SHARDS_FOLDER, "*.jsonl")))
        if not shards:
            return entries
        found = [e for shard in shards for e in parse_job_manifest(self._text(shard)).values()]
        merge_entries(entries, found)
        self._put(manifest, compact_text(entries).encode("utf-8"), replace=True)
        for shard in shards:  # only once the merged manifest is stored
            with contextlib.suppress(OSError):
                self.fs.rm_file(shard)
        return entries

    def _put(self, target: str, data: bytes, *, replace: bool) -> None:
        """One PUT of the whole object; ``replace`` False: only if no other bytes hold the name."""
        try:
            with contextlib.suppress(OSError):  # object stores have no folders; others need them
                self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            self.fs.pipe_file(target, data, mode="overwrite" if replace else "create")
        except FileExistsError:
            if data != self._bytes(target):
                raise OutputExistsError(f"{target} already exists.") from None
        except OSError as error:
            raise output_error(error, Path(target)) from error

    def _bytes(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except OSError:
            return None

    def _text(self, path: str) -> str:
        data = self._bytes(path)
        return "" if data is None else data.decode("utf-8", errors="replace")


def open_store(location: str) -> tuple[Store, str]:
    """The store of ``location`` and the path inside it: a URL with a scheme (``s3://bucket/
    photos``, ``memory://...``) through fsspec (installed with ``spdesk[ray]``), anything
    else a folder."""
    if "://" not in location or location.startswith("file://"):
        return FolderStore(), location.removeprefix("file://")
    try:
        from fsspec.core import url_to_fs
    except ImportError as error:
        raise OutputError(
            f"{location} is in an object store, and fsspec is not installed.",
            hint='Install it with: pip install "spdesk[ray]" (and s3fs or gcsfs for S3 or GCS).',
        ) from error
    try:
        fs, path = url_to_fs(location)
    except (ImportError, ValueError) as error:  # no driver for the scheme (s3fs, gcsfs)
        raise OutputError(
            f"Cannot open {location}: {error}",
            hint="Install the file system for its scheme: pip install s3fs (s3://) or "
            "gcsfs (gs://).",
        ) from error
    return FsspecStore(fs), str(path)


def _is_photo_name(relative: str) -> bool:
    """Listed as an input: a photo's name, not hidden, not spdesk's temporary or manifest files."""
    parts = relative.split("/")
    name = parts[-1]
    hidden = any(part.startswith(".") for part in parts) or is_temp_name(name)
    ours = SHARDS_FOLDER in parts[:-1] or name == MANIFEST_NAME
    return not hidden and not ours and posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


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


__all__ = ["FolderStore", "FsspecStore", "Store", "StoredFile", "open_store"]
