"""Which files of a repository a feature needs, and the plan to fetch them.

huggingface_hub lists the repository: ``HfApi.list_repo_tree`` at the resolved commit gives every
file with its size, filtered to the feature's parts by ``filter_repo_objects`` (one request,
run in a thread the cancel token can leave behind: Ctrl+C is honoured at once even while the
library retries a failing server). spdesk then keeps one set of weights
per part, by a rule the patterns cannot express: the fp16 safetensors when the part has them,
else the plain safetensors, standard file names first; a ``.bin`` only for a part published
without safetensors (converted on arrival, see :mod:`spdesk.core.models.weights`). Never
``.ckpt``, ``.pth``, single-file checkpoints or parts outside the feature (the safety checker).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from spdesk.core.errors import Cancelled, DownloadError, NotEnoughSpaceError, SpdeskError
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.models.events import HubRetrying
from spdesk.core.models.layout import MOVE_FOLDER_HINT, local_name, part_of, window_or_command
from spdesk.core.models.sources import Source, is_full_commit

WEIGHTLESS_PARTS = ("tokenizer", "scheduler")
PREFERRED_WEIGHTS = ("diffusion_pytorch_model", "model")  # diffusers / transformers file stems
CANDIDATE_SUFFIXES = (".json", ".txt", ".safetensors", ".bin")
CANCEL_POLL_S = 0.1  # how often a listing in progress looks at the cancel token
# A hub that takes connections and never answers (a network waiting for a sign-in page) held
# "Checking what needs to be downloaded…" for good: the library's listing has no read timeout.
# Two requests at the download's own timeout, and the library's retries of a failing server
# (some 23 s), fit inside.
LISTING_TIMEOUT_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """One repository file: ``path`` in the repo and ``size`` in bytes."""

    path: str
    size: int

    @property
    def local_name(self) -> str:
        """Where it is stored, relative to the model folder (see :func:`layout.local_name`)."""
        return local_name(self.path)

    @property
    def is_pickle(self) -> bool:
        """A ``.bin`` fetched only because its part has no safetensors at the commit; it is
        verified, then rewritten as fp16 safetensors (weights_only load)."""
        return self.path.endswith(".bin")


@dataclass(frozen=True)
class DownloadPlan:
    """The files to have in ``target`` and how many of their bytes are already there."""

    feature: str
    source: Source
    endpoint: str
    commit: str  # the commit the hub resolved the revision to
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


# --- listing --------------------------------------------------------------------------------------
def candidate_patterns(source: Source) -> list[str]:
    """``allow_patterns`` covering every file the feature could need (and nothing outside it)."""
    patterns = ["model_index.json"] if source.model_index else []
    for part in source.components:
        prefix = f"{part}/" if part else ""
        patterns += [f"{prefix}*{suffix}" for suffix in CANDIDATE_SUFFIXES]
    return patterns


def list_candidates(
    source: Source,
    endpoint: str,
    cancel: CancelToken | None = None,
    on_event: EventSink = ignore_events,
) -> tuple[str, list[RemoteFile]]:
    """``(commit, candidates)`` from the hub (network; the token is the library's own: HF_TOKEN
    or ``hf auth login``). Raises DownloadError with a plain reason, Cancelled at once on
    ``cancel``. Each retry of a failing hub is told as HubRetrying."""
    import huggingface_hub.utils.logging  # noqa: F401  (adds the library's console handler)

    from spdesk.core.logs import library_output_to_log

    library_output_to_log("huggingface_hub")  # its retries go to the log, not the terminal
    retries = _RetriesTold(endpoint)
    library = logging.getLogger("huggingface_hub")

    def listing() -> tuple[str, list[RemoteFile]]:
        retries.thread = threading.get_ident()  # this listing's retries, not another's
        return _listing(source, endpoint)

    def tell() -> None:
        while not retries.told.empty():
            on_event(retries.told.get())

    library.addHandler(retries)
    try:
        return unless_cancelled(
            listing, cancel or CancelToken(), timeout_s=LISTING_TIMEOUT_S, on_wait=tell
        )
    except Cancelled as error:
        raise Cancelled("Download cancelled while asking the hub; nothing was fetched.") from error
    except TimeoutError as error:
        raise DownloadError(
            f"{endpoint} did not answer within {LISTING_TIMEOUT_S:g} s; nothing was fetched.",
            hint="Check the connection (a network that wants you to sign in on a web page first "
            "holds connections open), a proxy, or HF_ENDPOINT, then try again.",
        ) from error
    except Exception as error:
        raise hub_error(error, source, endpoint) from error
    finally:
        library.removeHandler(retries)


# huggingface_hub's warnings as it retries a request (utils/_http.py): why, then the wait.
_RETRY_REASON = re.compile(r"(?:HTTP Error (\d+)|'(.*)') thrown while requesting ", re.DOTALL)
_RETRY_WAIT = re.compile(r"([\d.]+)s[^\[]*\[Retry (\d+)/(\d+)\]")


# What the network library says (``str`` of the error, all the retry warning keeps), in words.
_NETWORK_REASONS = (
    ("refused", "the connection was refused (nothing answers at that address and port)"),
    ("timed out", "it did not answer in time"),
    ("name or service not known", "its name was not found (check the address, or DNS)"),
    ("nodename nor servname", "its name was not found (check the address, or DNS)"),
    ("getaddrinfo failed", "its name was not found (check the address, or DNS)"),
    ("name resolution", "its name was not found (check the address, or DNS)"),
    ("reset by peer", "the connection was cut off"),
    ("broken pipe", "the connection was cut off"),
    ("disconnected without sending", "it closed the connection without answering"),
    ("network is unreachable", "the network is unreachable (is this computer online?)"),
    ("no route to host", "there is no route to it (is this computer online?)"),
    ("certificate", "its security certificate could not be checked"),
    ("ssl", "the secure connection to it failed"),
)


def network_reason(text: str) -> str:
    """Why a request failed, in plain words, from the network error's text ("[Errno 111]
    Connection refused": "the connection was refused (…)"); text it does not know is kept."""
    lowered = text.lower()
    for clue, words in _NETWORK_REASONS:
        if clue in lowered:
            return words
    return f"the connection failed ({text})" if text else "the connection failed"


class _RetriesTold(logging.Handler):
    """The hub client's warnings as it retries the requests of one thread (``thread``), kept
    as HubRetrying events for the waiting thread to tell."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(logging.WARNING)
        self.endpoint = endpoint
        self.thread: int | None = None
        self.reason = ""
        self.told: queue.SimpleQueue[HubRetrying] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        text = record.getMessage()
        if why := _RETRY_REASON.match(text):
            self.reason = f"it answered with error {why[1]}" if why[1] else network_reason(why[2])
        elif "Retry" in text and (wait := _RETRY_WAIT.search(text)):
            attempt, retries = int(wait[2]), int(wait[3])
            self.told.put(HubRetrying(self.endpoint, attempt, retries, float(wait[1]), self.reason))


def _listing(source: Source, endpoint: str) -> tuple[str, list[RemoteFile]]:
    """The resolved commit and the repository's files matching the feature's patterns, from
    one tree listing (what ``snapshot_download`` lists, without its HEAD per file: those ran
    in a thread pool that a cancelled command waited for at exit)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    # Public API (documented under huggingface_hub.utils), re-exported lazily: mypy misses it.
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    api = HfApi(endpoint=endpoint)
    commit = source.revision
    if not is_full_commit(commit):  # a branch or tag: the commit it points at now
        commit = str(api.repo_info(source.repo_id, revision=commit).sha)
    tree = api.list_repo_tree(source.repo_id, recursive=True, revision=commit)
    sizes = {f.path: f.lfs.size if f.lfs else f.size for f in tree if isinstance(f, RepoFile)}
    wanted = filter_repo_objects(list(sizes), allow_patterns=candidate_patterns(source))
    return commit, [RemoteFile(path, sizes[path]) for path in wanted]


def unless_cancelled(
    call: Callable[[], T],
    cancel: CancelToken,
    *,
    timeout_s: float | None = None,
    on_wait: Callable[[], None] | None = None,
    on_late: Callable[[T], object] | None = None,
) -> T:
    """``call()``'s result, or Cancelled as soon as ``cancel`` is set (TimeoutError after
    ``timeout_s``). huggingface_hub's calls cannot be interrupted (a failing server is retried
    for some 23 s), so ``call`` runs in a daemon thread left to end on its own: a dry-run
    listing writes nothing. ``on_wait`` is called in this thread as it waits (every
    CANCEL_POLL_S). ``on_late`` is given a result that came after the caller left (an open
    response to close), in whichever thread has it."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()
    lock = threading.Lock()
    left = False  # the caller stopped waiting (cancelled or timed out)

    def run() -> None:
        try:
            result: tuple[bool, Any] = (True, call())
        except BaseException as error:  # handed to the caller's thread
            result = (False, error)
        with lock:
            late = left
            if not late:
                outcome.append(result)
                done.set()
        if late and result[0]:
            clean_up(result[1])

    def leave() -> None:
        nonlocal left
        with lock:
            left = True
            arrived = list(outcome)
        if arrived and arrived[0][0]:  # it came as the caller left
            clean_up(arrived[0][1])

    def clean_up(late: Any) -> None:
        if on_late is not None:
            with contextlib.suppress(Exception):  # a clean-up, never the caller's failure
                on_late(late)

    threading.Thread(target=run, name="spdesk-hub-listing", daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not done.wait(CANCEL_POLL_S):
        if on_wait is not None:
            on_wait()
        if cancel.cancelled:
            leave()
            raise Cancelled("Download cancelled while asking the hub; nothing was fetched.")
        if deadline is not None and time.monotonic() > deadline:
            leave()
            raise TimeoutError(f"no answer within {timeout_s:g} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def hub_error(error: Exception, source: Source, endpoint: str, file: str = "") -> SpdeskError:
    """A huggingface_hub / HTTP exception as a plain DownloadError (SpdeskErrors pass through)."""
    from huggingface_hub.errors import (
        DryRunError,
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    wrapper = DryRunError | LocalEntryNotFoundError  # "no network and nothing cached"
    if isinstance(error, wrapper) and isinstance(error.__cause__, Exception):
        error = error.__cause__  # the listing's own failure (a 500 is not a missing file)
    where = f"{source.repo_id} on {endpoint}"
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
            hint="Log in with `hf auth login`, or set the HF_TOKEN environment variable.",
        )
    if isinstance(error, RepositoryNotFoundError):
        return DownloadError(
            f"The model repository {source.repo_id} was not found on {endpoint}.",
            hint="Check the repository id and the endpoint in the model settings "
            "(a private or gated repository also needs `hf auth login`).",
        )
    if isinstance(error, EntryNotFoundError):
        return DownloadError(
            f"{file or 'A file'} is missing from {where}.",
            hint="Check the repository id, revision and endpoint in the model settings.",
        )
    if isinstance(error, OfflineModeIsEnabled):
        return DownloadError(
            "Downloads are switched off (HF_HUB_OFFLINE is set).",
            hint=f"Unset HF_HUB_OFFLINE to download, or {IMPORT_HINT}.",
        )
    if isinstance(error, HfHubHTTPError):
        asked = file or _requested_file(error)
        what = f"{asked} of {source.repo_id}" if asked else source.repo_id  # endpoint: below
        code = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(code, int) and 400 <= code < 500 and code not in (408, 429):
            hint = (  # the server answered, and waiting will not change its answer
                "The server does not give spdesk this file: check the endpoint, repository "
                "and revision in the model settings (a private mirror may also need "
                "`hf auth login`)."
            )
        else:
            hint = (
                "The server may be busy or down: try again later, or check the endpoint in "
                "the model settings."
            )
        return DownloadError(
            f"The hub at {endpoint} refused a request for {what} ({_status(error)}).", hint=hint
        )
    what = f"while downloading {file}" if file else "while listing the repository"
    again = (
        "run the download again: it resumes where it stopped"
        if file
        # beside a download stopped earlier: its files stay and the next run reuses them
        else "then run the download again (nothing was fetched this time; what an earlier "
        "download fetched is kept)"
    )
    return DownloadError(
        f"The connection to {endpoint} failed {what} ({type(error).__name__}: {error}).",
        hint=f"Check the internet connection and the endpoint; {again}.",
    )


def _status(error: Exception) -> str:
    """``500 Internal Server Error``: the status line of the response an HTTP error carries."""
    response = getattr(error, "response", None)
    if response is None:
        return str(error).splitlines()[0]
    return f"{response.status_code} {response.reason_phrase}".strip()


def _requested_file(error: Exception) -> str:
    """The repository path an HTTP error's request asked for (``.../resolve/REV/PATH``)."""
    response = getattr(error, "response", None)
    url = str(response.request.url) if response is not None else ""
    found = re.search(r"/resolve/[^/]+/(.+)$", urlsplit(url).path)
    return unquote(found[1]) if found else ""


# --- choosing -------------------------------------------------------------------------------------
def select_files(source: Source, files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """The files a feature needs among ``files``: the model index, each part's configs and
    tokenizer files, and one set of weights per weight-carrying part."""
    by_path = {f.path: f for f in files}
    label = f"{source.repo_id} at {source.revision[:12]}"
    if not by_path:
        raise DownloadError(f"{label} holds no files spdesk can use.")
    chosen: list[RemoteFile] = []
    if source.model_index:
        if "model_index.json" not in by_path:
            raise DownloadError(
                f"{label} has no model_index.json; it is not a diffusers Stable Diffusion "
                "repository.",
                hint="Check the repository id in the model settings.",
            )
        chosen.append(by_path["model_index.json"])
    for part in source.components:
        chosen.extend(_part_files(label, part, by_path))
    return chosen


def _part_files(label: str, part: str, by_path: dict[str, RemoteFile]) -> list[RemoteFile]:
    inside = [f for f in by_path.values() if part_of(f.path) == part]
    configs = [f for f in inside if f.path.endswith((".json", ".txt"))]
    where = f"{part}/" if part else "the model"
    if part == "":
        configs = [f for f in configs if f.path != "model_index.json"]
    if not configs:
        raise DownloadError(
            f"{label} has no configuration for {where}.",
            hint="Check the repository id in the model settings.",
        )
    if part in WEIGHTLESS_PARTS:
        return sorted(configs, key=lambda f: f.path)
    weights = _weights(inside)
    if not weights:
        raise DownloadError(
            f"{label} has no safetensors weights for {where}.",
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
        if suffix == ".safetensors" and weights:
            return standard or weights
        if suffix == ".bin" and standard:
            return standard[:1]
    return []


# --- space ----------------------------------------------------------------------------------------
def existing_parent(path: Path) -> Path:
    """The nearest folder that exists (where the free space is measured)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or ".")


def free_bytes(target: Path) -> tuple[int, Path]:
    where = existing_parent(target)
    return shutil.disk_usage(where).free, where


def human_size(n: int) -> str:
    """Bytes for messages: ``1.72 GB``, ``0.17 GB``; ``3.4 MB`` below 0.1 GB; ``24 kB`` and
    ``512 bytes`` below 1 MB (where "0.0 MB" said nothing)."""
    if abs(n) >= 10**8:
        return f"{n / 1e9:.2f} GB"
    if abs(n) >= 10**6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB" if abs(n) >= 10**3 else f"{n} bytes"


IMPORT_HINT = (
    f"import a model you already have ({window_or_command('Import…', 'spdesk models import PATH')})"
)


def check_free_space(plan: DownloadPlan) -> None:
    """Raises NotEnoughSpaceError (before anything is fetched) when the plan does not fit."""
    if not plan.enough_space:
        raise NotEnoughSpaceError(
            f"The download needs {human_size(plan.space_needed)}, "
            f"{human_size(plan.free_bytes)} free on {plan.free_on}.",
            hint=f"Free some space there, or {MOVE_FOLDER_HINT}.",
        )
