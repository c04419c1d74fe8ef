"""The job manifest: what a job did in an output folder, so re-runs skip and crashes resume.

The manifest is a JSON Lines file (``spdesk-manifest.jsonl``) in the output folder. A job appends
one line per event (every file "pending" at the start, then "done", "failed" or "skipped") and
flushes it, so a job killed at any moment (SIGKILL) leaves a manifest that says what was finished;
it is fsync'ed about once a second, so a power cut loses at most the last second of lines (those
photos are looked at again). A torn last line is ignored on reading. The latest line for a
source wins. At the end of a job the file is compacted (one line per source, written atomically),
under a header naming the format and its version: a manifest whose header names a newer version
than :data:`FORMAT_VERSION` is refused, not read and rewritten (its lines may mean more).

Lines are ASCII JSON: a file name that is not valid UTF-8 (bytes on POSIX, lone surrogates in
Python) is kept exactly, as ``\\udcxx`` escapes.

A file counts as finished only if its line says "done" with the same settings fingerprint, the
source is unchanged (size and modification time) and the output still holds what was recorded.
Each "done" line records the output's size and sha256, and in a folder its modification time: a
re-run trusts an output of the recorded size and time without reading it, reads one whose time
changed and trusts it only with the recorded sha256 (lines without a time, from older manifests
or an object store, are checked by size alone). Anything else is protected again; an output
that changed since spdesk wrote it is never replaced (see :mod:`spdesk.core.jobs.naming`). An
existing file is replaced (collision policy "overwrite") only when it still has the recorded
content.
A source's latest line carries the proofs (name, size, sha256) of the other outputs spdesk wrote
for it, in ``earlier_outputs``: a copy an earlier run made under another name ("unique") stays
spdesk's after the line that recorded it is replaced. Lines without it (older manifests) read as
before.

A line names its original by a keyed digest of where it is (``"source": "id:..."``, see
:class:`SourceIds`), never by its path: the output folder is what people share, and an
original's path tells where its owner keeps photos (a home folder, a user name, a private
folder's name). The digest is keyed with this install's protection key, so nobody without the
key can check a guessed path against it; with another key spdesk does not recognise the photos
it finished before (as photo-specific protection already could not). Lines an older spdesk wrote
with the path itself are read as their digest, and the next compaction rewrites them so.

Many writers (the tasks of a distributed run) each append to a shard of their own,
``spdesk-manifest.d/NAME.jsonl``, in the same format; the job that holds the folder merges the
shards into the manifest when it opens and closes it, so a run killed before merging loses
nothing and any engine's next run reads what every writer finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from spdesk.core.errors import OutputError
from spdesk.core.files import atomic_write, folder_lock, output_error, shown

MANIFEST_NAME = "spdesk-manifest.jsonl"
SHARDS_FOLDER = "spdesk-manifest.d"
FORMAT_VERSION = 1

PENDING, DONE, FAILED, SKIPPED = "pending", "done", "failed", "skipped"
# An object store's output about to be uploaded (see spdesk.core.stores.StoreManifest).
PUBLISHING = "publishing"
_WRITTEN = (DONE, PUBLISHING)  # lines naming an output spdesk wrote (a sha256 proves which)
EARLIER_OUTPUTS = "earlier_outputs"  # the proofs of a source's other outputs (see supersede)
OUTPUT_MTIME = "output_mtime_ns"  # a folder's output's time when published (see _intact)
_PROOF_FIELDS = ("output", "output_size", "output_sha256")
SYNC_INTERVAL_S = 1.0
SOURCE_ID_PREFIX = "id:"


class SourceIds:
    """The names a manifest gives originals: a keyed digest of each one's absolute path or URL
    (HMAC-SHA256 with a key derived from the install's protection key), never the path."""

    def __init__(self, protection_key: bytes) -> None:
        # A key of its own, derived: the protection key's other uses never see these inputs.
        self._key = hmac.new(protection_key, b"spdesk manifest source ids", hashlib.sha256).digest()

    @classmethod
    def of_install(cls) -> SourceIds:
        from spdesk.core.keys import install_key

        return cls(install_key())

    def __call__(self, location: str) -> str:
        """The id of the original at ``location`` (an id given is returned as it is)."""
        if location.startswith(SOURCE_ID_PREFIX):
            return location
        # surrogatepass: a name that is not valid UTF-8 keeps its own id (see the module note)
        data = location.encode("utf-8", "surrogatepass")
        return SOURCE_ID_PREFIX + hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class SourceSignature:
    """What identifies one version of an original: its size and modification time."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceSignature:
        info = path.stat()
        return cls(info.st_size, info.st_mtime_ns)

    def as_list(self) -> list[int]:
        return [self.size, self.mtime_ns]


class Manifest:
    """The manifest of one output folder, open for one job (use as a context manager).

    Args:
        root: the job's output folder (created if needed).
        shard: open the shard of that name instead (one writer of a distributed run): no
            folder lock, no compaction; the job that holds the folder merges it.
    """

    def __init__(self, root: Path, *, shard: str | None = None) -> None:
        self.root = root
        self.shard = shard
        self.path = root / MANIFEST_NAME if shard is None else shard_path(root, shard)
        self.entries: dict[str, dict[str, Any]] = self._load()
        # Unbuffered bytes: a write the disk refuses leaves nothing queued to flush later.
        self._handle: IO[bytes] | None = None
        self._lock: contextlib.ExitStack | None = None
        self._synced = 0.0
        self._written: dict[str, set[str]] | None = None  # output -> sha256s recorded for it
        self._ids: SourceIds | None = None  # made when a path is given (a writer gets ids)

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> Manifest:
        """Lock the folder against a second job and open the manifest for appending."""
        self._lock = contextlib.ExitStack()
        if self.shard is None:  # a shard has one writer; the folder's job holds the lock
            busy = f"Another spdesk job is writing into {shown(self.root)}."
            self._lock.enter_context(folder_lock(self.root, busy=busy))
        try:
            if self.shard is not None:
                self.path.parent.mkdir(exist_ok=True)
            self._refuse_a_link()
            self.entries = self._load()  # re-read under the lock
            self._handle = _open_appending(self.path)
            self._end_torn_line()
            self._merge_shards()  # what writers of a killed distributed run finished
        except OSError as error:
            self.close(compact=False)
            raise output_error(error, self.path) from error
        except BaseException:  # a record of a newer spdesk: the lock is not kept either
            self.close(compact=False)
            raise
        return self

    def _refuse_a_link(self) -> None:
        """A link in the manifest's place would have spdesk append to whatever it points at
        (a photo, in the audit that found it): refused, as a linked lock file is."""
        if self.path.is_symlink():
            self.close(compact=False)
            raise OutputError(
                f"The record of finished photos {shown(self.path)} is a symbolic link (spdesk "
                "keeps it in a plain file only).",
                hint="Remove the link (when no spdesk job is running in that folder) and run "
                "again.",
            )

    def close(self, *, compact: bool = True) -> None:
        """Compact the manifest (one line per source) and release the lock."""
        if self._handle is not None:
            with contextlib.suppress(OSError, OutputError):  # a full disk: merged next time
                self._merge_shards()
            with contextlib.suppress(OSError):
                os.fsync(self._handle.fileno())
            with contextlib.suppress(OSError):  # nothing is buffered: nothing lost
                self._handle.close()
            self._handle = None
            if compact and self.shard is None:
                with contextlib.suppress(OutputError):  # a full disk keeps the (valid) long form
                    self._compact()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Manifest:
        return self.open()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def _load(self) -> dict[str, dict[str, Any]]:
        return read_job_manifest(self.path)

    # -- records --------------------------------------------------------------------------------
    def source_id(self, source: str) -> str:
        """The id the manifest files ``source`` under: every method takes an original's path
        (or URL) or its id (what a job plans with, and hands the writers of a distributed run,
        which then need no key)."""
        if source.startswith(SOURCE_ID_PREFIX):
            return source
        if self._ids is None:
            self._ids = SourceIds.of_install()
        return self._ids(source)

    def record(self, source: str, status: str, **fields: Any) -> None:
        """Append one line: ``source`` is now ``status`` (OutputError if it cannot be written)."""
        source = self.source_id(source)
        line = {"source": source, "status": status, "time": time.time(), **fields}
        entry = supersede(self.entries.get(source), line)
        self.entries[source] = entry
        self._index(entry)
        self._append([entry])

    def made_with_other_keys(self, key: str) -> int:
        """How many finished outputs record a protection key other than ``key`` (their lines
        name the key's public id; lines from before it was recorded name none)."""
        return sum(
            1
            for entry in self.entries.values()
            if entry.get("status") == DONE and entry.get("key") not in (None, key)
        )

    def mark_pending(self, sources: list[str], settings: str) -> None:
        """Record every source not yet finished as pending (one write for the whole list)."""
        lines = []
        for source in map(self.source_id, sources):
            previous = self.entries.get(source)
            if previous is not None and previous.get("status") == DONE:
                continue  # keep the proof of the finished output
            entry = supersede(previous, {"source": source, "status": PENDING, "settings": settings})
            self.entries[source] = entry
            lines.append(entry)
        self._append(lines)

    def is_done(self, source: str) -> bool:
        """Whether the latest line of ``source`` says "done" (whatever the settings), or
        "publishing" (an object store's writer killed while uploading: the output may be whole,
        and that line is its only proof)."""
        return self.entries.get(self.source_id(source), {}).get("status") in _WRITTEN

    def wrote(self, path: Path) -> bool:
        """Whether ``path`` is an output a job of this folder recorded writing, unchanged since
        (the same sha256): the only files an "overwrite" may replace."""
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            return False
        if self._written is None:  # indexed once: a re-run may ask for every output
            self._written = {}
            for entry in self.entries.values():
                self._index(entry)
        digests = self._written.get(relative, set())
        return bool(digests) and self._output_sha256(path) in digests

    def _index(self, entry: dict[str, Any]) -> None:
        if self._written is None:
            return
        for proof in output_proofs(entry):
            self._written.setdefault(proof["output"], set()).add(str(proof["output_sha256"]))

    def kept_outputs(self, sources: Iterable[str]) -> dict[Path, str]:
        """The outputs recorded written for ``sources`` (path -> source), the latest and the
        earlier ones: the names a run keeps for them, whatever the settings."""
        kept: dict[Path, str] = {}
        for source in sources:
            entry = self.entries.get(self.source_id(source), {})
            outputs = [p["output"] for p in _earlier_proofs(entry)]
            if entry.get("status") in _WRITTEN and isinstance(entry.get("output"), str):
                outputs.append(entry["output"])
            kept.update((self.root / output, source) for output in outputs if output)
        return kept

    def recorded_outputs(self) -> set[Path]:
        """Every output the manifest and its shards name, whatever the line's status, read
        without opening it (protecting in place: those files are never inputs)."""
        entries = [*self.entries.values(), *self._shard_entries()]
        outputs = {str(e["output"]) for e in entries if isinstance(e.get("output"), str)}
        outputs.update(p["output"] for e in entries for p in output_proofs(e))
        return {self.root / output for output in outputs if output}

    def _shard_entries(self) -> list[dict[str, Any]]:
        """The lines of the shards not yet merged (a distributed run killed before merging)."""
        return [e for path in shard_paths(self.root) for e in read_job_manifest(path).values()]

    def finished_output(
        self, source: str, settings: str, signature: SourceSignature
    ) -> Path | None:
        """The output of ``source`` if it was finished with these settings and is intact."""
        source = self.source_id(source)
        entry = self.entries.get(source)
        if not entry or entry.get("status") != DONE or entry.get("settings") != settings:
            return None
        if entry.get("source_signature") != signature.as_list():
            return None
        output = self.root / str(entry.get("output", ""))
        return output if self._intact(source, output) else None

    def earlier_copy(
        self, source: str, settings: str, signature: SourceSignature
    ) -> tuple[Path, str] | None:
        """The photo's intact copy from an earlier run that this run does not skip (the photo
        changed since, or the settings did), and how it was made, in words; None when none is
        there. A new copy beside it must say so: the name that looks like the photo's copy
        would hold the outdated one."""
        found = self._recorded_copy(source)
        if found is None or not self._intact(*found):
            return None
        entry, output = self.entries[found[0]], found[1]
        if entry.get("settings") != settings:
            return output, "made with other settings"
        if entry.get("source_signature") != signature.as_list():
            return output, "made from the photo before it changed"
        return output, "made before"

    def changed_output(self, source: str) -> Path | None:
        """The output the latest "done" line of ``source`` names, if that file is still there
        but no longer holds what spdesk wrote (cut short, edited, another file put there): the
        photo's next copy never replaces it (it may hold the user's edits), but says so."""
        found = self._recorded_copy(source)
        return None if found is None or self._intact(*found) else found[1]

    def _recorded_copy(self, source: str) -> tuple[str, Path] | None:
        """``source``'s id and the output its latest "done" line names, if that file is there."""
        source = self.source_id(source)
        entry = self.entries.get(source, {})
        if entry.get("status") != DONE or not isinstance(entry.get("output"), str):
            return None
        output = self.root / entry["output"]
        return None if self._output_size(output) is None else (source, output)

    def _intact(self, source: str, output: Path) -> bool:
        """Whether ``output`` still holds what the latest line of ``source`` recorded, without
        reading it when it can: the recorded size and modification time are trusted; a file
        whose time changed is read, and trusted with the recorded sha256 (its new time is
        remembered). A line without a time (an older manifest, an object store) is checked by
        its size alone, as before."""
        entry = self.entries[source]
        if self._output_size(output) != entry.get("output_size"):
            return False
        recorded = entry.get(OUTPUT_MTIME)
        if recorded is None:
            return True
        mtime = output_mtime_ns(output)
        if mtime == recorded:
            return True
        if self._output_sha256(output) != entry.get("output_sha256"):
            return False
        self.entries[source] = {**entry, OUTPUT_MTIME: mtime}  # kept by the compaction
        return True

    def publishing(self, source: str, output: Path, settings: str, **proof: Any) -> None:
        """An output of ``source`` is about to get its name (``proof``: its size, sha256 and the
        source's signature). A folder needs no note of it: its rename is atomic and the "done"
        line follows at once (see :class:`~spdesk.core.stores.StoreManifest`)."""

    def _output_size(self, output: Path) -> int | None:
        """The size of the output file ``output`` (None if it is not a file)."""
        try:
            return output.stat().st_size if output.is_file() else None
        except OSError:
            return None

    def _output_sha256(self, output: Path) -> str | None:
        return _sha256(output)

    def _append(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        if self._handle is None:
            raise RuntimeError("the manifest is not open")
        data = "".join(json.dumps(e) + "\n" for e in entries).encode("utf-8")
        fd = self._handle.fileno()
        start = os.fstat(fd).st_size  # one writer (the folder lock): where these lines begin
        try:
            view = memoryview(data)
            while view:  # written lines survive the process being killed
                view = view[self._handle.write(view) or 0 :]
            # fsync (for power cuts) at most once a second: a lost line only means a finished
            # photo is looked at again.
            if time.monotonic() - self._synced > SYNC_INTERVAL_S:
                os.fsync(fd)
                self._synced = time.monotonic()
        except OSError as error:  # a full disk: DiskFullError, which stops the job cleanly
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # no torn line left for the next run to trip on
            raise output_error(error, self.path) from error

    def _end_torn_line(self) -> None:
        """A manifest cut mid-line (a power cut, a disk that filled) gets its line ended, so
        the lines this job appends are read whole (the torn one is ignored when read)."""
        assert self._handle is not None
        with self.path.open("rb") as reader:  # no os.pread on Windows
            reader.seek(0, os.SEEK_END)
            if not reader.tell():
                return
            reader.seek(-1, os.SEEK_END)
            last = reader.read(1)
        if last != b"\n":
            self._handle.write(b"\n")

    def _merge_shards(self) -> None:
        """Append the shards' entries (newer than this manifest's) and remove the shards."""
        if self.shard is not None:
            return
        shards = shard_paths(self.root)
        if not shards:
            return
        found = [e for shard in shards for e in read_job_manifest(shard).values()]
        newer = merge_entries(self.entries, found)
        self._append(newer)
        if self._handle is not None:  # merged lines are durable before the shards go
            os.fsync(self._handle.fileno())
        for shard in shards:
            shard.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.root / SHARDS_FOLDER).rmdir()

    def _compact(self) -> None:
        atomic_write(self.path, compact_text(self.entries).encode("utf-8"))


def merge_entries(
    entries: dict[str, dict[str, Any]], found: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Merge shard lines ``found`` into ``entries`` (the later line for a source wins); returns
    the lines that were newer, oldest first (what a manifest file appends).

    A failed or skipped photo changed no output, so its line never replaces one that proves an
    output spdesk wrote: the rule the job keeps when it writes one line, kept here for the
    writers of a distributed run, whose shards do not hold the earlier runs' lines. A line
    that wins carries the proofs of the outputs the line it replaces named (see
    :func:`supersede`).
    """
    newer = []
    for entry in sorted(found, key=_entry_time):
        before = entries.get(entry["source"], {})
        if _entry_time(entry) < _entry_time(before):
            continue
        if entry.get("status") in (FAILED, SKIPPED) and before.get("status") in _WRITTEN:
            continue
        entry = supersede(before, entry)
        entries[entry["source"]] = entry
        newer.append(entry)
    return newer


def supersede(before: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` as its source's latest line in place of ``before``, carrying the proofs of
    the other outputs spdesk wrote for the source (an "overwrite" may replace them; protecting
    in place leaves them out). A "done" line drops the older proofs of its own name: that file
    holds its bytes now."""
    proofs = {_proof_key(p): p for p in output_proofs(before or {})}
    proofs.update((_proof_key(p), p) for p in _earlier_proofs(entry))
    own = _own_proof(entry)
    for key in list(proofs):
        replaced = entry.get("status") == DONE and key[0] == entry.get("output")
        if replaced or (own is not None and key == _proof_key(own)):
            del proofs[key]
    line = {k: v for k, v in entry.items() if k != EARLIER_OUTPUTS}
    return {**line, EARLIER_OUTPUTS: list(proofs.values())} if proofs else line


def output_proofs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The outputs a line proves spdesk wrote for its source (name, size, sha256): its own,
    and those it carries from the lines it replaced."""
    own = _own_proof(entry)
    return [*_earlier_proofs(entry), *([own] if own is not None else [])]


def _own_proof(entry: dict[str, Any]) -> dict[str, Any] | None:
    output, digest = entry.get("output"), entry.get("output_sha256")
    if entry.get("status") not in _WRITTEN or not isinstance(output, str) or not digest:
        return None
    return {field: entry.get(field) for field in _PROOF_FIELDS}


def _earlier_proofs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    earlier = entry.get(EARLIER_OUTPUTS)
    if not isinstance(earlier, list):  # an older manifest's line, or a foreign one
        return []
    return [
        p
        for p in earlier
        if isinstance(p, dict) and isinstance(p.get("output"), str) and p.get("output_sha256")
    ]


def _proof_key(proof: dict[str, Any]) -> tuple[str, str]:
    return str(proof["output"]), str(proof.get("output_sha256"))


def compact_text(entries: dict[str, dict[str, Any]]) -> str:
    """A manifest's compact form: the format header, then one line per source."""
    text = "".join(json.dumps(e) + "\n" for e in entries.values() if e)
    header = json.dumps({"format": "spdesk-manifest", "version": FORMAT_VERSION}) + "\n"
    return header + text


def shard_paths(root: Path) -> list[Path]:
    """The shards of the output folder ``root`` (of a distributed run not yet merged)."""
    return sorted((root / SHARDS_FOLDER).glob("*.jsonl"))


def shard_path(root: Path, name: str) -> Path:
    """Where the manifest shard ``name`` of the output folder ``root`` is written."""
    return root / SHARDS_FOLDER / f"{name}.jsonl"


def _entry_time(entry: dict[str, Any]) -> float:
    value = entry.get("time", 0.0)  # "pending" lines have none: anything recorded is newer
    return float(value) if isinstance(value, int | float) else 0.0


def _open_appending(path: Path) -> IO[bytes]:
    """Unbuffered appending that never follows a link put there meanwhile (where the system
    can tell: O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags | getattr(os, "O_BINARY", 0), 0o666), "ab", buffering=0)


def read_job_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The latest entry per source in a job's manifest (an output folder's, or one shard); torn
    or foreign lines are ignored, a newer spdesk's format is refused (see
    :func:`parse_job_manifest`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return parse_job_manifest(text, shown(path))


def parse_job_manifest(text: str, where: str = MANIFEST_NAME) -> dict[str, dict[str, Any]]:
    """:func:`read_job_manifest` of a manifest's text (an object store's manifest object, shown
    as ``where``). OutputError for one a newer spdesk wrote: its lines may mean what this one
    cannot read, and compacting them into this format would lose them."""
    entries: dict[str, dict[str, Any]] = {}
    ids: SourceIds | None = None  # made only for an older manifest's lines
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed job may be cut short
        if isinstance(entry, dict) and entry.get("format") == "spdesk-manifest":
            _refuse_a_newer_format(entry.get("version"), where)
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
            continue
        if not entry["source"].startswith(SOURCE_ID_PREFIX):  # a path: an older spdesk's line
            ids = ids or SourceIds.of_install()
            entry["source"] = ids(entry["source"])
        entries[entry["source"]] = supersede(entries.get(entry["source"]), entry)
    return entries


def _refuse_a_newer_format(version: Any, where: str) -> None:
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise OutputError(
            f"The record of finished photos {where} was written by a newer version of spdesk "
            f"(its format {version}; this version reads format {FORMAT_VERSION}).",
            hint="Update spdesk to protect into this folder again, or choose another output "
            "folder.",
        )


def output_mtime_ns(output: Path) -> int | None:
    """The modification time of the output file ``output`` (recorded with it, in a folder's
    manifest: a re-run trusts a copy of the recorded size and time without reading it)."""
    try:
        return output.stat().st_mtime_ns
    except OSError:
        return None


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
