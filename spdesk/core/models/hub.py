"""Download exactly the files a feature needs from a Hugging Face hub, resumably and verified.

Everything network-side is huggingface_hub: ``HfApi.model_info`` lists the repository at the pinned
commit (sizes, LFS sha256, git blob ids), ``get_hf_file_metadata`` (HEAD) gives each file's ETag
and commit, and ``file_download.http_get`` moves the bytes (its HTTP client, headers, proxies,
redirects and in-call retries with ``Range``).

Why not ``hf_hub_download`` itself: since huggingface_hub 1.x it downloads into a process-unique
temporary file that it deletes on any failure, so a cancelled or dropped 1.7 GB UNet starts from
zero next time. ``http_get`` appends to a file object we own, so the ``.part`` file survives a
cancel and the next run passes its size as ``resume_size`` (an HTTP ``Range`` request). Byte
progress comes through its ``tqdm_class`` hook; raising ``Cancelled`` from the hook's ``update``
(called before each chunk is written) stops the transfer between chunks.

Every file is verified before it is renamed into place: LFS files by sha256 (the hub's linked
ETag), small files by their git blob sha1 (their ETag); a ``.bin`` (only for parts published
without safetensors) is verified, then rewritten as fp16 safetensors and deleted. A mismatch
deletes the file and fetches it once more; a second mismatch fails. Files are stored under plain
diffusers names (``*.fp16.safetensors`` becomes ``*.safetensors``) so that every loader finds
them without a ``variant`` argument; the xet protocol is never used (plain HTTP ranges only).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

from spdesk.core.errors import Cancelled, DownloadError, NotEnoughSpaceError, SpdeskError
from spdesk.core.events import CancelToken, Event, EventSink, ignore_events
from spdesk.core.models.sources import Source

log = logging.getLogger(__name__)

WEIGHTLESS_PARTS = ("tokenizer", "scheduler")
PREFERRED_WEIGHTS = ("diffusion_pytorch_model", "model")  # diffusers / transformers file stems
CHUNK_BYTES = 1 << 20  # read size while downloading: progress and cancel every MiB
METADATA_TIMEOUT_S = 30.0


# --- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadPlanned(Event):
    """What will be fetched: ``to_fetch_bytes`` of ``total_bytes`` (the rest is already here)."""

    feature: str
    repo_id: str
    revision: str
    target: str
    files: int
    total_bytes: int
    to_fetch_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class DownloadStarted(Event):
    """The transfer begins; ``done_bytes`` counts what earlier attempts left in place."""

    feature: str
    files: int
    total_bytes: int
    done_bytes: int


@dataclass(frozen=True)
class DownloadProgress(Event):
    """Bytes of the current file and of the whole feature; speed (bytes/s) over this run."""

    file: str
    file_done: int
    file_total: int
    done: int
    total: int
    speed_bps: float
    eta_s: float | None


@dataclass(frozen=True)
class FileVerifying(Event):
    """A file is complete and being hashed (seconds for the 1.7 GB UNet; no progress meanwhile)."""

    file: str
    size: int


@dataclass(frozen=True)
class FileVerified(Event):
    """A file's size and hash matched the hub's; ``algorithm`` is ``sha256`` or ``git-sha1``."""

    file: str
    size: int
    algorithm: str
    digest: str


@dataclass(frozen=True)
class FileRejected(Event):
    """A downloaded file did not match the hub's hash; it was deleted (and is fetched again)."""

    file: str
    algorithm: str
    expected: str
    actual: str
    retrying: bool


@dataclass(frozen=True)
class DownloadFinished(Event):
    """Everything is in place and verified; ``fetched_bytes`` crossed the network in this run."""

    feature: str
    target: str
    total_bytes: int
    fetched_bytes: int
    elapsed_s: float


# --- listing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One repository file: ``path`` in the repo, ``size`` in bytes, and what to verify it with."""

    path: str
    size: int
    sha256: str | None = None  # LFS files
    blob_id: str | None = None  # git blob sha1 of small files

    @property
    def local_name(self) -> str:
        """Where it is stored, relative to the model folder: plain safetensors names (``.fp16``
        dropped; a ``.bin`` is stored converted, see :attr:`is_pickle`)."""
        for suffix in (".fp16.safetensors", ".fp16.bin", ".bin"):
            if self.path.endswith(suffix):
                return self.path[: -len(suffix)] + ".safetensors"
        return self.path

    @property
    def is_pickle(self) -> bool:
        """A ``.bin`` fetched only because the part has no safetensors weights at the pinned
        commit; it is verified, then rewritten as fp16 safetensors (weights_only load)."""
        return self.path.endswith(".bin")

    @property
    def expected(self) -> tuple[str, str | None]:
        """``("sha256", hex)`` for LFS files, ``("git-sha1", hex)`` for small ones."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        return "git-sha1", self.blob_id.lower() if self.blob_id else None


def list_repository(source: Source, endpoint: str, token: str | None) -> list[RemoteFile]:
    """Every file of ``source`` at its revision, with sizes and hashes. Raises DownloadError."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint, token=token or False).model_info(
            source.repo_id, revision=source.revision, files_metadata=True
        )
    except Exception as error:
        raise hub_error(error, source, endpoint) from error
    return [_remote_file(s) for s in info.siblings or []]


def hub_error(error: Exception, source: Source, endpoint: str, file: str = "") -> SpdeskError:
    """A huggingface_hub / HTTP exception as a plain DownloadError (SpdeskErrors pass through)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{source.repo_id} on {endpoint}"
    settings_hint = "Check the repository id, revision and endpoint in the model settings."
    if isinstance(error, SpdeskError):
        return error
    if isinstance(error, RevisionNotFoundError):
        return DownloadError(
            f"The revision {source.revision} does not exist in {where}.",
            hint="Check the revision in the model settings (a full 40-character commit hash).",
        )
    if isinstance(error, GatedRepoError):
        return DownloadError(
            f"{where} needs an access token that allows it.",
            hint="Set a token in the model settings or the HF_TOKEN environment variable.",
        )
    if isinstance(error, RepositoryNotFoundError):
        return DownloadError(
            f"The model repository {source.repo_id} was not found on {endpoint}.",
            hint="Check the repository id and the endpoint in the model settings "
            "(a private or gated repository also needs a token).",
        )
    if isinstance(error, EntryNotFoundError):
        return DownloadError(f"{file or 'A file'} is missing from {where}.", hint=settings_hint)
    if isinstance(error, OfflineModeIsEnabled):
        return DownloadError(
            "Downloads are switched off (HF_HUB_OFFLINE is set).",
            hint="Unset HF_HUB_OFFLINE to download, or import a model you already have.",
        )
    if isinstance(error, HfHubHTTPError):
        return DownloadError(f"The hub at {endpoint} refused a request for {where}: {error}")
    what = f"while downloading {file}" if file else "while listing the repository"
    return DownloadError(
        f"The connection to {endpoint} failed {what} ({type(error).__name__}: {error}).",
        hint="Check the internet connection and the endpoint; run the download again: "
        "it resumes where it stopped.",
    )


def _remote_file(sibling: Any) -> RemoteFile:
    lfs = sibling.lfs
    sha256 = lfs.sha256 if lfs is not None else None
    size = lfs.size if lfs is not None else sibling.size
    return RemoteFile(sibling.rfilename, int(size or 0), sha256, None if lfs else sibling.blob_id)


def select_files(source: Source, files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """The files a feature needs: configs and tokenizer files, and the safetensors weights of
    each model part (the fp16 variant when there is one). Never ``.ckpt``, ``.pth``, single-file
    checkpoints or parts outside ``source.components`` (the safety checker); a ``.bin`` only for
    a part that has no safetensors at all (see :func:`_weights`), converted on arrival."""
    by_path = {f.path: f for f in files}
    if not by_path:
        raise DownloadError(f"{source.repo_id} at {source.revision[:12]} holds no files.")
    chosen: list[RemoteFile] = []
    if source.model_index:
        if "model_index.json" not in by_path:
            raise DownloadError(
                f"{source.repo_id} at {source.revision[:12]} has no model_index.json; "
                "it is not a diffusers Stable Diffusion repository.",
                hint="Check the repository id in the model settings.",
            )
        chosen.append(by_path["model_index.json"])
    for part in source.components:
        chosen.extend(_part_files(source, part, by_path))
    return chosen


def _part_files(source: Source, part: str, by_path: dict[str, RemoteFile]) -> list[RemoteFile]:
    prefix = f"{part}/" if part else ""
    inside = [f for f in by_path.values() if f.path.startswith(prefix)]
    inside = [f for f in inside if "/" not in f.path[len(prefix) :]]
    configs = [f for f in inside if f.path.endswith((".json", ".txt"))]
    label = f"{part}/" if part else "the model"
    if not configs:
        raise DownloadError(
            f"{source.repo_id} at {source.revision[:12]} has no configuration for {label}.",
            hint="Check the repository id in the model settings.",
        )
    if part in WEIGHTLESS_PARTS:
        return sorted(configs, key=lambda f: f.path)
    weights = _weights(inside)
    if not weights:
        raise DownloadError(
            f"{source.repo_id} at {source.revision[:12]} has no safetensors weights for {label}.",
            hint="spdesk downloads only safetensors files; pick a repository that has them.",
        )
    return sorted(configs + weights, key=lambda f: f.path)


def _weights(inside: list[RemoteFile]) -> list[RemoteFile]:
    """fp16 safetensors if present, else plain ones; the standard file names when there are.

    A part without any safetensors (the pinned SD 1.5 inpainting commit has only ``.bin`` for
    its VAE and UNet) falls back to its standard ``.bin`` (fp16 variant first), which is
    verified and converted to safetensors: never kept, never loaded with code execution."""
    for suffix in (".safetensors", ".bin"):
        fp16 = [f for f in inside if f.path.endswith(f".fp16{suffix}")]
        plain = [f for f in inside if PurePosixPath(f.path).suffixes == [suffix]]
        weights = fp16 or plain
        standard = [
            f for f in weights if PurePosixPath(f.path).name.split(".")[0] in PREFERRED_WEIGHTS
        ]
        if suffix == ".safetensors" and (standard or weights):
            return standard or weights
        if suffix == ".bin" and standard:
            return standard[:1]
    return []


# --- planning ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadPlan:
    """The files to have in ``target`` and how many of their bytes are already there."""

    feature: str
    source: Source
    endpoint: str
    target: Path
    files: tuple[RemoteFile, ...]
    done_bytes: int  # verified files plus partial ``.part`` data already on disk
    free_bytes: int  # free space where the files go, measured when planning
    free_on: Path  # the existing folder that free space was measured on

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def to_fetch_bytes(self) -> int:
        return self.total_bytes - self.done_bytes

    @property
    def space_needed(self) -> int:
        """Bytes still to fetch, plus room to convert the largest ``.bin`` beside itself."""
        pickles = [f.size for f in self.files if f.is_pickle]
        return self.to_fetch_bytes + max(pickles, default=0)

    @property
    def enough_space(self) -> bool:
        return self.space_needed <= self.free_bytes


def part_path(target: Path, f: RemoteFile) -> Path:
    return target / (f.local_name + ".part")


def bytes_on_disk(target: Path, f: RemoteFile, verified: set[str]) -> int:
    """Bytes of ``f`` already here: the whole file when verified earlier, else its ``.part``."""
    if f.path in verified:
        return f.size
    part = part_path(target, f)
    return min(part.stat().st_size, f.size) if part.is_file() else 0


def existing_parent(path: Path) -> Path:
    """The nearest folder that exists (where the free space is measured)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or ".")


def human_size(n: int) -> str:
    """Bytes for messages: ``1.72 GB``, ``0.17 GB``; ``3.4 MB`` below 0.1 GB."""
    return f"{n / 1e9:.2f} GB" if abs(n) >= 10**8 else f"{n / 1e6:.1f} MB"


def free_bytes(target: Path) -> tuple[int, Path]:
    where = existing_parent(target)
    return shutil.disk_usage(where).free, where


def check_free_space(plan: DownloadPlan) -> None:
    """Raises NotEnoughSpaceError (before anything is fetched) when the plan does not fit."""
    if not plan.enough_space:
        raise NotEnoughSpaceError(
            f"The download needs {human_size(plan.space_needed)}, "
            f"{human_size(plan.free_bytes)} free on {plan.free_on}.",
            hint="Free some space, or move the model folder "
            "(spdesk models status shows where it is).",
        )


# --- transfer ---------------------------------------------------------------------------------
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


class _FileBar:
    """The progress "bar" ``http_get`` drives (its ``tqdm_class``): turns chunks into events.

    ``update`` runs before each chunk is written, so raising Cancelled there leaves exactly the
    bytes counted so far in the ``.part`` file.
    """

    def __init__(self, downloader: Downloader, f: RemoteFile, initial: int = 0) -> None:
        self.downloader = downloader
        self.f = f
        self.n = initial

    def __enter__(self) -> _FileBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (the tqdm interface)."""

    def update(self, n: int = 1) -> None:
        self.downloader.cancel.check()
        self.n += n
        self.downloader.file_progress(self.f, self.n, n)


class Downloader:
    """Fetches a :class:`DownloadPlan`; one instance per run.

    ``verified`` holds repository paths already complete and verified in ``plan.target``;
    ``on_verified(file, digest)`` is called after each newly verified file is in place, so that
    the store can record it (and a later run skips it).
    """

    def __init__(
        self,
        plan: DownloadPlan,
        *,
        token: str | None = None,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
        verified: set[str] | None = None,
        on_verified: Callable[[RemoteFile, str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.token = token
        self.on_event = on_event
        self.cancel = cancel or CancelToken()
        self.verified = set(verified or ())
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
        finished = DownloadFinished(
            plan.feature,
            str(plan.target),
            plan.total_bytes,
            self.meter.network,
            time.monotonic() - self.meter.start,
        )
        self.on_event(finished)
        return finished

    def url(self, f: RemoteFile) -> str:
        from huggingface_hub import hf_hub_url

        s = self.plan.source
        return hf_hub_url(s.repo_id, f.path, revision=s.revision, endpoint=self.plan.endpoint)

    def file_progress(self, f: RemoteFile, file_done: int, delta: int) -> None:
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
            self._fetch(f, part)
            self.on_event(FileVerifying(f.path, f.size))
            digest = file_digest(part, f)
            if expected is None or digest == expected:
                final = self.plan.target / f.local_name
                if f.is_pickle:
                    convert_pickle(part, final)
                else:
                    part.replace(final)
                self.verified.add(f.path)
                self.meter.current = 0
                if self.on_verified is not None:
                    self.on_verified(f, digest)
                self.on_event(FileVerified(f.path, f.size, algorithm, digest))
                return
            # Corrupt: delete the bytes (and take them off the progress), then fetch once more.
            part.unlink(missing_ok=True)
            self.meter.current = 0
            self.on_event(FileRejected(f.path, algorithm, expected, digest, attempt == 1))
        raise DownloadError(
            f"{f.path} was downloaded twice but its {algorithm} does not match the hub's "
            f"(expected {expected}, got {digest}); the damaged file was deleted.",
            hint="The server or a proxy is corrupting data; try again later or another endpoint.",
        )

    def _expected_digest(self, f: RemoteFile) -> tuple[str, str | None]:
        """The listing's digest, cross-checked with the file's HEAD (ETag = sha256 for LFS)."""
        from huggingface_hub import get_hf_file_metadata

        source = self.plan.source
        try:
            meta = get_hf_file_metadata(
                self.url(f), token=self.token or False, timeout=METADATA_TIMEOUT_S
            )
        except Exception as error:
            raise hub_error(error, source, self.plan.endpoint, f.path) from error
        algorithm, expected = f.expected
        if meta.commit_hash and meta.commit_hash != source.revision and _is_commit(source):
            raise DownloadError(
                f"The hub served {f.path} from commit {meta.commit_hash[:12]}, "
                f"not the pinned {source.revision[:12]}."
            )
        if expected is None and meta.etag:
            expected = meta.etag.lower()  # no digest in the listing: the ETag is the reference
        elif expected and meta.etag and meta.etag.lower() != expected:
            # On huggingface.co the linked ETag of an LFS file is its sha256, as in the listing;
            # a mirror may differ, so the listing (the LFS pointer's oid) stays the reference.
            log.warning("%s: ETag %s differs from the listed %s", f.path, meta.etag, expected)
        return algorithm, expected

    def _fetch(self, f: RemoteFile, part: Path) -> None:
        """Complete ``part`` from where it stops (``http_get`` sends ``Range`` and retries)."""
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        _check_http_get(http_get)
        part.parent.mkdir(parents=True, exist_ok=True)
        if part.is_file() and part.stat().st_size > f.size:
            part.unlink()  # longer than the file can be: not ours to resume
        try:
            with part.open("ab") as out, _chunk_size(CHUNK_BYTES):
                out.seek(0, 2)
                have = out.tell()
                self.meter.current = have
                if have == f.size:
                    return
                bar = cast(Any, _bar_class(self, f))
                http_get(
                    self.url(f),
                    out,
                    resume_size=have,
                    headers=build_hf_headers(token=self.token or False),
                    expected_size=f.size,
                    displayed_filename=f.path,
                    tqdm_class=bar,
                )
        except (Cancelled, SpdeskError):
            raise
        except Exception as error:
            have = part.stat().st_size if part.is_file() else 0
            raise _transfer_error(error, self.plan, f, have) from error


def _check_http_get(http_get: Callable[..., Any]) -> None:
    """Byte progress needs ``http_get(tqdm_class=...)`` (huggingface_hub 1.x and later)."""
    import inspect

    if "tqdm_class" not in inspect.signature(http_get).parameters:
        import huggingface_hub

        raise DownloadError(
            f"huggingface_hub {huggingface_hub.__version__} is too old for spdesk's downloads.",
            hint="Update it: pip install -U huggingface_hub",
        )


def _bar_class(downloader: Downloader, f: RemoteFile) -> Callable[..., _FileBar]:
    def make(*, initial: int = 0, **_tqdm_kwargs: Any) -> _FileBar:
        return _FileBar(downloader, f, initial)

    return make


@contextlib.contextmanager
def _chunk_size(size: int) -> Iterator[None]:
    """http_get reads in huggingface_hub's 10 MB chunks; smaller ones keep progress and cancel
    responsive on slow links (the module constant is read at every call)."""
    from huggingface_hub import constants

    before = constants.DOWNLOAD_CHUNK_SIZE
    constants.DOWNLOAD_CHUNK_SIZE = size
    try:
        yield
    finally:
        constants.DOWNLOAD_CHUNK_SIZE = before


def _transfer_error(error: Exception, plan: DownloadPlan, f: RemoteFile, have: int) -> SpdeskError:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, HfHubHTTPError | OfflineModeIsEnabled):
        return hub_error(error, plan.source, plan.endpoint, f.path)
    return DownloadError(
        f"The download of {f.path} stopped at {human_size(have)} of {human_size(f.size)}: "
        f"{type(error).__name__}: {error}".rstrip(": "),
        hint="Check the connection and run the same download again: it resumes where it stopped.",
    )


def _is_commit(source: Source) -> bool:
    from spdesk.core.models.sources import is_full_commit

    return is_full_commit(source.revision)


def convert_pickle(part: Path, final: Path) -> None:
    """A verified ``.bin`` as fp16 safetensors at ``final``; the pickle is deleted either way.

    ``torch.load(weights_only=True)`` reads plain tensors only: a pickle that would run code is
    refused (ModelError) even though its sha256 matched the hub's."""
    import torch

    from spdesk.core.models.importing import load_pickle_weights, save_safetensors

    try:
        tensors = load_pickle_weights(part)
        half = {
            k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()
        }  # the store keeps fp16 weights, as the hub's fp16 variants
        tmp = final.with_name(final.name + ".tmp")
        save_safetensors(half, tmp)
        tmp.replace(final)
    finally:
        part.unlink(missing_ok=True)


def file_digest(path: Path, f: RemoteFile) -> str:
    """The digest of a stored file in the algorithm ``f.expected`` names."""
    algorithm, _ = f.expected
    if algorithm == "sha256":
        from huggingface_hub.utils.sha import sha_fileobj

        with path.open("rb") as src:
            return sha_fileobj(src).hex()
    size = path.stat().st_size  # git blob id: sha1 of "blob <size>\0" + content (small files)
    hasher = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    with path.open("rb") as src:
        while data := src.read(1 << 20):
            hasher.update(data)
    return hasher.hexdigest()


__all__ = [
    "DownloadFinished",
    "DownloadPlan",
    "DownloadPlanned",
    "DownloadProgress",
    "DownloadStarted",
    "Downloader",
    "FileRejected",
    "FileVerified",
    "FileVerifying",
    "RemoteFile",
    "check_free_space",
    "list_repository",
    "select_files",
]
