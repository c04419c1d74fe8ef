"""Events of a model download (torch-free and hub-free, so the GUI imports them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from spdesk.core.events import Event


@dataclass(frozen=True)
class DownloadListing(Event):
    """The repository is being listed at ``endpoint``: the first network call, which the hub
    client retries for about 25 s when the network is down."""

    feature: str
    repo_id: str
    endpoint: str


@dataclass(frozen=True)
class HubRetrying(Event):
    """A request to the hub at ``endpoint`` failed (``reason``: "it answered with error 500",
    or what the connection said), and the hub client asks again in ``wait_s`` seconds: retry
    ``attempt`` of ``retries``. Without it a failing hub was some 25 s of silence."""

    endpoint: str
    attempt: int
    retries: int
    wait_s: float
    reason: str

    @property
    def text(self) -> str:
        """What the window and the command line say of it."""
        why = f": {self.reason}" if self.reason else ""
        return (
            f"Asking {self.endpoint} again in {self.wait_s:g} s "
            f"(retry {self.attempt} of {self.retries}){why}"
        )


@dataclass(frozen=True)
class TransferRetrying(Event):
    """The connection fetching ``file`` dropped or timed out (``reason``) with ``done`` of its
    ``size`` bytes here; it is asked again from there in ``wait_s`` seconds. ``stalled`` tries
    in a row have added nothing (the download gives up at ``give_up``)."""

    file: str
    done: int
    size: int
    reason: str
    wait_s: float
    stalled: int
    give_up: int


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


@dataclass(frozen=True)
class FolderMoveProgress(Event):
    """Moving the models folder to another disk: ``file`` (its path inside the models folder,
    with "/": the UNet, the VAE and the text encoder share a file name) was just copied,
    ``done_bytes`` of ``total_bytes`` are copied (a move on one disk is a rename, told by no
    event)."""

    file: str
    done_bytes: int
    total_bytes: int
