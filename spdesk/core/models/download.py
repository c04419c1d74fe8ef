"""Fetch a plan's files into the store: resumable, verified, recorded in the manifest.

huggingface_hub does the listing (:mod:`selection`), each file's metadata
(``get_hf_file_metadata``: ETag and commit), the HTTP session, headers and token
(``get_session``, ``build_hf_headers``) and the hashing
(:mod:`verify`). spdesk keeps one small thing of its own, :func:`transfer`: the library's
``hf_hub_download`` writes into a process-unique temporary file that it deletes on any failure
(huggingface_hub 2.4), so a cancelled or dropped 1.7 GB UNet would start from zero. ``transfer``
appends to a ``.part`` file that survives a cancel, a crash or a dropped connection, and asks for
the rest with an HTTP ``Range`` request; a server that ignores ``Range`` restarts the file.

Every file is verified before it gets its name: weights by sha256 (the hub's linked ETag), small
files by their git blob sha1 (their ETag). A mismatch deletes the file and fetches it once more;
a second mismatch fails. A ``.bin`` (only for parts published without safetensors) is verified,
then stored as fp16 safetensors (:mod:`weights`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from spdesk.core.errors import (
    Cancelled,
    DiskFullError,
    DownloadError,
    ModelError,
    SpdeskError,
)
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.models.events import (
    DownloadFinished,
    DownloadPlanned,
    DownloadProgress,
    DownloadStarted,
    FileRejected,
    FileVerified,
    FileVerifying,
    TransferRetrying,
)
from spdesk.core.models.layout import (
    MOVE_FOLDER_HINT,
    PART_SUFFIX,
    download_lock,
    folder_write_error,
    local_size,
    partial_files,
    read_model_manifest,
    write_model_manifest,
)
from spdesk.core.models.selection import (
    CANCEL_POLL_S,
    IMPORT_HINT,
    DownloadPlan,
    RemoteFile,
    check_free_space,
    free_bytes,
    hub_error,
    human_size,
    list_candidates,
    select_files,
    unless_cancelled,
)
from spdesk.core.models.sources import Source
from spdesk.core.models.verify import algorithm_of, digest_of, sha256_of
from spdesk.core.models.weights import convert_pickle

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # progress is told at least every MiB...
PROGRESS_EVERY_S = 0.25  # ...or every quarter second, whichever comes first
TIMEOUT_S = 30.0  # connect / read timeout of one request
MAX_STALLS = 5  # attempts in a row that add no byte before a transfer gives up
RETRY_PAUSE_S = 1.0  # pause before asking again after a dropped connection
MAX_OVERSIZED = 3  # responses longer than the file before a transfer gives up

ByteSink = Callable[[int], None]  # told the bytes just written (negative: the file restarted)
RetrySink = Callable[[int, int, str], None]  # told (bytes here, stalled tries, why) before a retry


# --- planning -------------------------------------------------------------------------------------
def plan_download(
    feature: str,
    source: Source,
    endpoint: str,
    target: Path,
    cancel: CancelToken | None = None,
    on_event: EventSink = ignore_events,
) -> DownloadPlan:
    """List the repository (network) and work out what is still to fetch and the free space.
    Cancelled at once on ``cancel``; a failing hub's retries are told (HubRetrying)."""
    commit, candidates = list_candidates(source, endpoint, cancel, on_event)
    files = tuple(select_files(source, candidates))
    verified = verified_paths(target, read_model_manifest(target), files, commit)
    done = sum(bytes_on_disk(target, f, verified) for f in files)
    free, where = free_bytes(target)
    return DownloadPlan(feature, source, endpoint, commit, target, files, done, free, where)


def verified_paths(
    folder: Path, manifest: dict[str, Any], files: Iterable[RemoteFile], commit: str
) -> set[str]:
    """Repository paths recorded as verified at ``commit`` whose file is still in place."""
    if manifest.get("commit", manifest.get("revision")) != commit:
        return set()
    out: set[str] = set()
    for f in files:
        entry = manifest["files"].get(f.path)
        local = folder / f.local_name
        if (
            entry is not None
            and entry["size"] == f.size
            and local.is_file()
            and local.stat().st_size == local_size(entry)
        ):
            out.add(f.path)
    return out


def part_path(target: Path, f: RemoteFile) -> Path:
    return target / (f.local_name + PART_SUFFIX)


def bytes_on_disk(target: Path, f: RemoteFile, verified: set[str]) -> int:
    """Bytes of ``f`` already here: the whole file when verified earlier, else its ``.part``."""
    if f.path in verified:
        return f.size
    part = part_path(target, f)
    return min(part.stat().st_size, f.size) if part.is_file() else 0


# --- fetching -------------------------------------------------------------------------------------
def fetch(
    plan: DownloadPlan,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
    on_recorded: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Check the space, fetch and verify ``plan``'s files, recording each in the manifest; returns
    the manifest. A lock beside the folder keeps two downloads (app and command line) apart.
    ``on_recorded(manifest)`` may add to the manifest after each file is entered in it, before
    it is written: what it adds is on disk with that file (a process killed next keeps it).

    Raises NotEnoughSpaceError before fetching, DownloadError on network, server or verification
    failures, ModelError when a config is unreadable, Cancelled (the ``.part`` data stays).
    """
    check_free_space(plan)
    with download_lock(plan.target):
        return _fetch_locked(plan, on_event, cancel or CancelToken(), on_recorded)


def _fetch_locked(
    plan: DownloadPlan,
    on_event: EventSink,
    cancel: CancelToken,
    on_recorded: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    on_event(_planned_event(plan))
    folder = plan.target
    manifest = read_model_manifest(folder)
    if manifest.get("commit", manifest.get("revision")) != plan.commit:
        manifest["files"], manifest["features"] = {}, {}
    manifest.update(repo_id=plan.source.repo_id, revision=plan.source.revision, commit=plan.commit)
    planned = set(manifest.get("planned", [])) | {f.local_name for f in plan.files}
    manifest["planned"] = sorted(planned)  # so that remove finds every .part this run leaves
    write_model_manifest(folder, manifest)

    def record(f: RemoteFile, algorithm: str, digest: str) -> None:
        local = folder / f.local_name
        entry: dict[str, Any] = {"local": f.local_name, "size": f.size, "algorithm": algorithm}
        entry.update(digest=digest, local_size=local.stat().st_size)
        if f.is_pickle:  # converted: the hub's digest is of the .bin, keep the result's own
            entry["local_sha256"] = sha256_of(local)
        manifest["files"][f.path] = entry
        if on_recorded is not None:
            on_recorded(manifest)
        write_model_manifest(folder, manifest)

    verified = verified_paths(folder, manifest, plan.files, plan.commit)
    downloader = Downloader(plan, on_event, cancel, verified, record)
    try:
        downloader.run()
    except OSError as error:  # writing the folder: a manifest, a conversion, a rename
        if not _is_local(error):
            raise
        where = Path(error.filename) if isinstance(error.filename, str) else plan.target
        raise _disk_error(error, where) from error
    except Cancelled as error:
        kept = sum(p.stat().st_size for p in partial_files(folder, manifest)) + sum(
            f.size for f in plan.files if f.path in downloader.verified
        )
        raise Cancelled(
            f"Download cancelled; {human_size(kept)} kept, the next download resumes."
        ) from error
    validate_configs(folder, [f.local_name for f in plan.files])
    return manifest


def _planned_event(plan: DownloadPlan) -> DownloadPlanned:
    source = plan.source
    return DownloadPlanned(
        plan.feature,
        source.repo_id,
        source.revision,
        str(plan.target),
        len(plan.files),
        plan.total_bytes,
        plan.to_fetch_bytes,
        plan.free_bytes,
    )


def validate_configs(folder: Path, local_names: Iterable[str]) -> None:
    """Every downloaded ``.json`` must parse: a truncated config fails here, not at load time."""
    for name in local_names:
        if not name.endswith(".json"):
            continue
        try:
            json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(
                f"{name} in {folder} is not valid JSON (truncated or damaged): {error}",
                hint="The repository holds a broken file; check the repository and revision in "
                f"the model settings, or {IMPORT_HINT}.",
            ) from error


class _Meter:
    """Overall byte counter with speed (this run only) and ETA."""

    def __init__(self, total: int, done: int) -> None:
        self.total = total
        self.completed = done  # bytes of files finished (or partly present) before the current
        self.current = 0  # bytes of the current file on disk
        self.network = 0  # bytes received in this run (re-fetches included)
        self.start = time.monotonic()

    @property
    def done(self) -> int:
        return self.completed + self.current

    def speed(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.network / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        speed = self.speed()
        return max(self.total - self.done, 0) / speed if speed > 0 else None


class Downloader:
    """Fetches a :class:`DownloadPlan`; one instance per run.

    ``verified`` holds repository paths already complete and verified in ``plan.target``;
    ``on_verified(file, algorithm, digest)`` is called after each newly verified file is in
    place, so that it is recorded (and a later run skips it).
    """

    def __init__(
        self,
        plan: DownloadPlan,
        on_event: EventSink,
        cancel: CancelToken,
        verified: set[str],
        on_verified: Callable[[RemoteFile, str, str], None],
    ) -> None:
        self.plan = plan
        self.on_event = on_event
        self.cancel = cancel
        self.verified = set(verified)
        self.on_verified = on_verified
        self.meter = _Meter(plan.total_bytes, plan.done_bytes)

    def run(self) -> DownloadFinished:
        plan = self.plan
        plan.target.mkdir(parents=True, exist_ok=True)
        self.on_event(
            DownloadStarted(plan.feature, len(plan.files), plan.total_bytes, plan.done_bytes)
        )
        for f in plan.files:
            self.cancel.check()
            if f.path in self.verified:
                continue
            self.meter.completed -= bytes_on_disk(plan.target, f, self.verified)
            self._fetch_verified(f)
            self.meter.completed += f.size
        elapsed = time.monotonic() - self.meter.start
        finished = DownloadFinished(
            plan.feature, str(plan.target), plan.total_bytes, self.meter.network, elapsed
        )
        self.on_event(finished)
        return finished

    def url(self, f: RemoteFile) -> str:
        from huggingface_hub import hf_hub_url

        s = self.plan.source
        return hf_hub_url(s.repo_id, f.path, revision=self.plan.commit, endpoint=self.plan.endpoint)

    def _progress(self, f: RemoteFile, file_done: int, delta: int) -> None:
        m = self.meter
        m.current = file_done
        m.network += max(delta, 0)
        self.on_event(
            DownloadProgress(f.path, file_done, f.size, m.done, m.total, m.speed(), m.eta())
        )

    def _fetch_verified(self, f: RemoteFile) -> None:
        algorithm, expected = self._expected_digest(f)
        part = part_path(self.plan.target, f)
        for attempt in (1, 2):
            self._transfer(f, part)
            self.on_event(FileVerifying(f.path, f.size))
            digest = digest_of(part, algorithm)
            self.meter.current = 0
            if digest == expected:
                final = self.plan.target / f.local_name
                if f.is_pickle:
                    convert_pickle(part, final)
                else:
                    part.replace(final)
                self.verified.add(f.path)
                self.on_verified(f, algorithm, digest)
                self.on_event(FileVerified(f.path, f.size, algorithm, digest))
                return
            part.unlink(missing_ok=True)  # corrupt: delete the bytes, then fetch once more
            self.on_event(FileRejected(f.path, algorithm, expected, digest, attempt == 1))
        raise DownloadError(
            f"{f.path} was downloaded twice but its {algorithm} does not match the hub's "
            f"(expected {expected}, got {digest}); the damaged file was deleted.",
            hint="The server or a proxy is corrupting data; try again later or another endpoint.",
        )

    def _expected_digest(self, f: RemoteFile) -> tuple[str, str]:
        """``(algorithm, hex)`` from the file's ETag (HEAD): the sha256 of weights (the linked
        ETag of LFS files), the git blob sha1 of small files."""
        from huggingface_hub import get_hf_file_metadata

        source = self.plan.source
        try:  # a hub slow to answer held a Stop or Ctrl+C for up to TIMEOUT_S
            url = self.url(f)
            meta = unless_cancelled(
                lambda: get_hf_file_metadata(url, timeout=TIMEOUT_S), self.cancel
            )
        except Exception as error:
            raise hub_error(error, source, self.plan.endpoint, f.path) from error
        if meta.commit_hash and meta.commit_hash != self.plan.commit:
            raise DownloadError(
                f"The hub served {f.path} from commit {meta.commit_hash[:12]}, "
                f"not {self.plan.commit[:12]}."
            )
        etag = (meta.etag or "").lower()
        algorithm = algorithm_of(etag)
        if algorithm is None:
            raise DownloadError(
                f"The hub at {self.plan.endpoint} gave no sha256 or git digest for {f.path} "
                f"(ETag {meta.etag!r}); spdesk does not install files it cannot verify.",
                hint="Use huggingface.co or a mirror that serves the hub's ETags.",
            )
        return algorithm, etag

    def _transfer(self, f: RemoteFile, part: Path) -> None:
        # Public API (documented under huggingface_hub.utils), re-exported lazily: mypy misses it.
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        self.meter.current = part.stat().st_size if part.is_file() else 0
        done = self.meter.current

        def on_bytes(n: int) -> None:
            nonlocal done
            done = max(done + n, 0)
            self._progress(f, done, n)

        def on_retry(have: int, stalled: int, why: str) -> None:
            self.on_event(
                TransferRetrying(f.path, have, f.size, why, RETRY_PAUSE_S, stalled, MAX_STALLS)
            )

        try:
            headers = build_hf_headers()
            transfer(
                self.url(f),
                part,
                f.size,
                headers,
                on_bytes,
                self.cancel,
                name=f.path,
                on_retry=on_retry,
            )
        except (Cancelled, SpdeskError):
            raise
        except Exception as error:  # an HTTP status the library raised (4xx, 5xx after retries)
            if isinstance(error, OSError) and _is_local(error):  # this disk, not the hub
                raise _disk_error(error, part) from error
            raise hub_error(error, self.plan.source, self.plan.endpoint, f.path) from error


def transfer(
    url: str,
    part: Path,
    size: int,
    headers: dict[str, str],
    on_bytes: ByteSink,
    cancel: CancelToken,
    *,
    name: str = "",
    on_retry: RetrySink | None = None,
) -> None:
    """Complete ``part`` to ``size`` bytes from ``url``, resuming from what it holds.

    A dropped connection is asked again from where it stopped (``Range``); ``MAX_STALLS``
    attempts in a row that add nothing fail with DownloadError, keeping ``part`` for the next
    run. Nothing past ``size`` is ever written: a response longer than the file is a failed try
    whose bytes are dropped, and ``MAX_OVERSIZED`` of them fail with DownloadError (refetching
    endlessly served gigabytes for a 100 kB file). The cancel token is checked before every
    chunk is written. ``on_retry(bytes here, stalled tries, why)`` is told before each new
    try after a dropped connection (the log alone said it: progress stood still meanwhile).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    stalls = oversized = 0
    while True:
        have = part.stat().st_size if part.is_file() else 0
        if have > size:  # longer than the file can be (an older spdesk's): not ours to resume
            part.unlink()
            on_bytes(-have)
            have = 0
        if have == size:
            return
        try:
            _append(url, part, have, size, headers, on_bytes, cancel)
            error: Exception | None = None
        except (Cancelled, SpdeskError):
            raise
        except _Oversized as caught:
            oversized += 1
            if oversized >= MAX_OVERSIZED:
                raise _oversized_error(url, name, size) from caught
            error = caught
        except Exception as caught:
            if _is_http_status(caught) or _is_local(caught):
                raise  # a status the hub answered, or the local disk: asking again won't help
            error = caught  # the connection dropped or timed out
        now = part.stat().st_size if part.is_file() else 0
        stalls = 0 if now > have else stalls + 1
        if stalls >= MAX_STALLS:
            reason = f": {type(error).__name__}: {error}" if error else ""
            got, whole = human_size(now), human_size(size)
            if got == whole:  # cut short within the rounding: "100 kB of 100 kB" read as done
                got, whole = f"{now:,} bytes", f"{size:,} bytes"
            raise DownloadError(
                f"The download of {name or url} stopped at {got} of {whole}{reason}",
                hint="Check the connection and run the same download again: it resumes where "
                "it stopped.",
            )
        if error is not None:
            log.warning("%s: %s; asking again from byte %d", url, error, now)
            if on_retry is not None:
                why = f"{type(error).__name__}: {error}"
                if isinstance(error, _Oversized):
                    why = "the server sent more bytes than the file holds"
                on_retry(now, stalls, why)
            time.sleep(RETRY_PAUSE_S)


class _Oversized(Exception):
    """The server sent more bytes than the file holds."""


def _oversized_error(url: str, name: str, size: int) -> DownloadError:
    where = urlsplit(url)
    return DownloadError(
        f"The hub at {where.scheme}://{where.netloc} sent more bytes for {name or url} than "
        f"its {human_size(size)}, {MAX_OVERSIZED} times; what it sent was not kept.",
        hint="The server or a proxy is sending wrong data; try again later or another endpoint.",
    )


def _append(
    url: str,
    part: Path,
    have: int,
    size: int,
    headers: dict[str, str],
    on_bytes: ByteSink,
    cancel: CancelToken,
) -> None:
    """One request: append the bytes from ``have`` on (all of them if ``Range`` is ignored).
    _Oversized, with this response's bytes dropped, when it runs past ``size``."""
    from huggingface_hub import get_session, hf_raise_for_status

    wanted = {**headers, "Range": f"bytes={have}-"} if have else headers
    stream = get_session().stream("GET", url, headers=wanted, timeout=TIMEOUT_S)
    # The answer's headers are waited for looking at ``cancel``: a hub slow to answer held a
    # Stop or Ctrl+C for up to TIMEOUT_S. After a cancel the request ends on its own, and a
    # response that comes then is closed (it held a pooled connection until collected).
    response = unless_cancelled(
        stream.__enter__, cancel, on_late=lambda _late: stream.__exit__(None, None, None)
    )
    with contextlib.ExitStack() as closing:
        closing.push(stream)
        if response.status_code == 416:  # nothing at or after ``have``: start again
            part.unlink(missing_ok=True)
            on_bytes(-have)
            return
        hf_raise_for_status(response)
        start, mode = have, "ab"
        if have and response.status_code == 200:  # the server ignored Range: the whole file
            start, mode = 0, "wb"
            on_bytes(-have)
        with part.open(mode) as out:
            try:
                chunks = _at_most(response.iter_bytes(), size - start)
                _write_as_received(_read_aside(chunks, cancel), out, on_bytes, cancel)
            except _Oversized:
                on_bytes(start - out.tell())
                out.truncate(start)
                raise


def _at_most(chunks: Iterable[bytes], room: int) -> Iterator[bytes]:
    """``chunks`` while they fit in ``room`` bytes; _Oversized before the one that does not."""
    for chunk in chunks:
        room -= len(chunk)
        if room < 0:
            raise _Oversized
        yield chunk


def _read_aside(chunks: Iterable[bytes], cancel: CancelToken) -> Iterator[bytes]:
    """``chunks``, read by a helper thread while this one waits for them looking at ``cancel``:
    a network gone silent mid-file blocks a read for up to TIMEOUT_S, and Ctrl+C or Cancel
    waited for it (22 s measured). After a cancel the helper, still in its read, ends on its own
    once the read returns or times out, dropping what it read: the next download resumes from
    what was written."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def hand(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=CANCEL_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand(("chunk", chunk)):
                    return
            hand(("end", None))
        except BaseException as error:  # raised again in the downloading thread
            hand(("error", error))

    threading.Thread(target=read, name="spdesk-download-read", daemon=True).start()
    try:
        while True:
            try:
                kind, value = handoff.get(timeout=CANCEL_POLL_S)
            except queue.Empty:
                cancel.check()
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def _write_as_received(
    chunks: Iterable[bytes], out: IO[bytes], on_bytes: ByteSink, cancel: CancelToken
) -> None:
    """Write each piece as the network delivers it and check the cancel token after it: on a
    slow connection a cancel takes effect at once and keeps every byte that arrived (reading
    whole MiB chunks kept none of a partial one and waited for it). Progress is told in batches,
    so a fast connection does not send an event per network read."""
    told, since = 0, time.monotonic()
    try:
        for chunk in chunks:
            out.write(chunk)
            told += len(chunk)
            if told >= CHUNK_BYTES or time.monotonic() - since >= PROGRESS_EVERY_S:
                on_bytes(told)
                told, since = 0, time.monotonic()
            cancel.check()
    finally:
        if told:
            on_bytes(told)


def _disk_error(error: OSError, path: Path) -> SpdeskError:
    """A write of the model folder that failed (full, read-only...), named as such: it was
    reported as a failed connection, or as an unexpected error. What arrived stays for the
    next run."""
    named = folder_write_error(error, path)
    if isinstance(named, DiskFullError):
        named.hint = (
            "Free some space and run the download again (it resumes where it stopped), or "
            f"{MOVE_FOLDER_HINT}."
        )
    return named


def _is_local(error: Exception) -> bool:
    """An OSError of this machine (its disk), not the network's nor the hub's: huggingface_hub's
    HTTP errors are OSErrors too (a 500 was "Could not write ….part")."""
    network = isinstance(error, ConnectionError | TimeoutError) or _is_http_status(error)
    return isinstance(error, OSError) and not network


def _is_http_status(error: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(error, HfHubHTTPError)
