"""Which files of a repository a feature needs, and the plan to fetch them.

huggingface_hub lists the repository: ``snapshot_download(..., allow_patterns=..., dry_run=True)``
returns every candidate of the feature's parts with its size at the resolved commit (one tree
listing and one HEAD per candidate; nothing is downloaded). spdesk then keeps one set of weights
per part, by a rule the patterns cannot express: the fp16 safetensors when the part has them,
else the plain safetensors, standard file names first; a ``.bin`` only for a part published
without safetensors (converted on arrival, see :mod:`spdesk.core.models.weights`). Never
``.ckpt``, ``.pth``, single-file checkpoints or parts outside the feature (the safety checker).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from spdesk.core.errors import DownloadError, NotEnoughSpaceError, SpdeskError
from spdesk.core.models.layout import local_name, part_of
from spdesk.core.models.sources import Source

WEIGHTLESS_PARTS = ("tokenizer", "scheduler")
PREFERRED_WEIGHTS = ("diffusion_pytorch_model", "model")  # diffusers / transformers file stems
CANDIDATE_SUFFIXES = (".json", ".txt", ".safetensors", ".bin")


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


def list_candidates(source: Source, endpoint: str) -> tuple[str, list[RemoteFile]]:
    """``(commit, candidates)`` from the hub (network; the token is the library's own: HF_TOKEN
    or ``hf auth login``). Raises DownloadError with a plain reason."""
    from huggingface_hub import snapshot_download

    from spdesk.core.logs import library_output_to_log

    library_output_to_log("huggingface_hub")  # its retries go to the log, not the terminal
    try:
        infos = snapshot_download(
            source.repo_id,
            revision=source.revision,
            endpoint=endpoint,
            allow_patterns=candidate_patterns(source),
            dry_run=True,
            tqdm_class=_silent_bar(),
        )
    except Exception as error:
        raise hub_error(error, source, endpoint) from error
    commit = infos[0].commit_hash if infos else source.revision
    return commit, [RemoteFile(i.filename, int(i.file_size or 0)) for i in infos]


def _silent_bar() -> Any:
    """A tqdm class that never draws: spdesk reports progress through its own events."""
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[misc, type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def hub_error(error: Exception, source: Source, endpoint: str, file: str = "") -> SpdeskError:
    """A huggingface_hub / HTTP exception as a plain DownloadError (SpdeskErrors pass through)."""
    from huggingface_hub.errors import (
        DryRunError,
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, DryRunError) and isinstance(error.__cause__, Exception):
        error = error.__cause__  # the listing's own failure
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
        return DownloadError(f"The hub at {endpoint} refused a request for {where}: {error}")
    what = f"while downloading {file}" if file else "while listing the repository"
    return DownloadError(
        f"The connection to {endpoint} failed {what} ({type(error).__name__}: {error}).",
        hint="Check the internet connection and the endpoint; run the download again: "
        "it resumes where it stopped.",
    )


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


def window_or_command(button: str, command: str) -> str:
    """How to do something in either front end: the hints of core errors are shown in the
    Models window as well as on the terminal."""
    return f"Models window: {button}; command line: {command}"


MOVE_FOLDER_HINT = (
    "move the models folder to a disk with room "
    f"({window_or_command('Change folder…', 'spdesk models move FOLDER')})"
)
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
