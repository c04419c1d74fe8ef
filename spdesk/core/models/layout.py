"""Where the store keeps things, and the manifests that say what is there.

Layout under the store root (``StoreSettings.root()``, by default platformdirs' data folder)::

    <org>--<name>/<revision>/        one diffusers folder per repository and commit
        spdesk-manifest.json          files in place with their verified digests, features complete
    imported/<name>/                  models the user brought, with their sha256 at import
        spdesk-manifest.json
    hf-cache/<org>--<name>/<rev>/     links into a Hugging Face cache that holds the pinned commit
        spdesk-manifest.json          the links spdesk made

Every folder the store writes holds a manifest naming the files it put there: removing a model
deletes exactly those (the store folder may be shared with other people's files). Files are
stored under plain diffusers names (``*.fp16.safetensors`` becomes ``*.safetensors``; a ``.bin``
is stored converted), so every loader finds them without a ``variant`` argument.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spdesk.core.errors import (
    DiskFullError,
    DownloadError,
    ModelError,
    OutputError,
    ReadOnlyDiskError,
    SpdeskError,
)
from spdesk.core.files import FolderLockedError, atomic_write, folder_lock, output_error, shown
from spdesk.core.models.sources import Source

MANIFEST = "spdesk-manifest.json"
MANIFEST_VERSION = 2  # 2: downloads record the resolved commit and their planned files
IMPORTED = "imported"
HF_CACHE_LINKS = "hf-cache"
PART_SUFFIX = ".part"  # bytes of a file still being downloaded (kept across a cancel)
WEIGHT_PARTS = ("vae", "unet", "text_encoder")  # the model parts that carry weights
LOCK_WAIT_S = 1.0  # how long a second download waits for the first to let go


def window_or_command(button: str, command: str) -> str:
    """How to do something in either front end: the hints of core errors are shown in the
    Models window as well as on the terminal."""
    return f"Models window: {button}; command line: {command}"


CHANGE_FOLDER = window_or_command("Change folder…", "spdesk models move FOLDER")
MOVE_FOLDER_HINT = f"move the models folder to a disk with room ({CHANGE_FOLDER})"


def repo_key(repo_id: str) -> str:
    """A folder name for a repository id, as Hugging Face's cache spells it (``org--name``)."""
    return repo_id.replace("/", "--")


def local_name(repo_path: str) -> str:
    """Where a repository file is stored, relative to the model folder (plain safetensors names:
    ``.fp16`` dropped, a ``.bin`` stored converted)."""
    for suffix in (".fp16.safetensors", ".fp16.bin", ".bin"):
        if repo_path.endswith(suffix):
            return repo_path[: -len(suffix)] + ".safetensors"
    return repo_path


def part_of(repo_path: str) -> str:
    """The diffusers sub-folder a repository path belongs to (``""``: the repository root)."""
    return repo_path.split("/")[0] if "/" in repo_path else ""


# --- manifests ------------------------------------------------------------------------------------
def read_model_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a model folder (its files, digests and features) with empty defaults; a
    damaged one reads as empty (its files are then re-verified by the next download)."""
    data: dict[str, Any] = {}
    path = folder / MANIFEST
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            data = dict(loaded) if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            data = {}
    # A manifest of the wrong shape reads as empty too ("files": [] failed as "unexpected error
    # (AttributeError: 'list' object has no attribute 'get')"); so does an entry of one.
    files = data.get("files")
    features = data.get("features")
    data["files"] = {
        str(name): entry
        for name, entry in (files.items() if isinstance(files, dict) else [])
        if isinstance(entry, dict)
    }
    data["features"] = {  # a feature naming a file the manifest lacks is not recorded
        str(name): [str(p) for p in paths]
        for name, paths in (features.items() if isinstance(features, dict) else [])
        if isinstance(paths, list) and all(str(p) in data["files"] for p in paths)
    }
    return data


def write_model_manifest(folder: Path, data: dict[str, Any]) -> None:
    """Replace ``folder``'s manifest atomically (a crash leaves the old one or the new one)."""
    text = json.dumps({**data, "version": MANIFEST_VERSION}, indent=2, sort_keys=True)
    atomic_write(folder / MANIFEST, text.encode("utf-8"))


def local_size(entry: dict[str, Any]) -> int:
    """The stored file's size (a converted ``.bin`` differs from the hub's size)."""
    return int(entry.get("local_size", entry["size"]))


def feature_files_present(folder: Path, manifest: dict[str, Any], feature: str) -> bool:
    """All files the manifest lists for ``feature`` exist with their recorded sizes."""
    paths = manifest["features"].get(feature)
    if not paths:
        return False
    for remote in paths:
        entry = manifest["files"].get(remote)
        if entry is None:
            return False
        local = folder / entry["local"]
        if not local.is_file() or local.stat().st_size != local_size(entry):
            return False
    return True


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def partial_files(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """The ``.part`` files of the downloads the manifest planned that are still on disk."""
    planned = (folder / (name + PART_SUFFIX) for name in manifest.get("planned", []))
    return [p for p in planned if p.is_file()]


def delete_recorded(folder: Path, relative: Iterable[str]) -> int:
    """Delete the named files under ``folder``, then the sub-folders they leave empty (and
    ``folder`` itself when nothing else is in it). Returns the bytes freed."""
    freed = 0
    parents: set[Path] = set()
    for name in relative:
        path = folder / name
        if path.is_symlink() or path.is_file():
            freed += path.lstat().st_size
            path.unlink()
        parents.update(p for p in path.parents if p.is_relative_to(folder))
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: someone else's files are in it
            parent.rmdir()
    return freed


def remove_empty_parents(folder: Path, root: Path) -> None:
    """Remove ``folder``'s empty parents up to, not including, ``root``."""
    for parent in folder.parents:
        if parent == root or not parent.is_relative_to(root):
            return
        try:
            parent.rmdir()
        except OSError:
            return


# --- errors of the models folder ----------------------------------------------------------------
def folder_hint(named: OutputError) -> str:
    """What to do when the models folder cannot be written (full, read-only, no permission)."""
    if isinstance(named, DiskFullError):
        return f"Free some space, or {MOVE_FOLDER_HINT}."
    return f"Make the folder writable, or use a models folder you can write to ({CHANGE_FOLDER})."


def folder_write_error(error: OSError, path: Path) -> OutputError:
    """A write of the models folder that failed, named as such with what to do (it was an
    "unexpected error" outside a download)."""
    named = output_error(error, path)
    named.hint = folder_hint(named)
    return named


def removal_error(error: OSError, path: Path) -> OutputError:
    """A file of the models folder that could not be deleted, and why."""
    named = output_error(error, path)
    if isinstance(named, ReadOnlyDiskError):
        reason = "the disk is read-only"
    elif isinstance(named, DiskFullError):
        reason = "the disk is full"
    else:
        reason = error.strerror or str(error)
    message = f"Could not delete {shown(path)}: {reason}."
    return type(named)(message, hint=folder_hint(named))


# --- lock -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def download_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (:func:`spdesk.core.files.folder_lock`), creating the folder;
    DownloadError when another process holds it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise folder_write_error(error, folder) from error
    busy = DownloadError(
        f"Another download into {folder} is running (another spdesk window or command).",
        hint="Wait for it to finish, or cancel it, then try again.",
    )
    with _held(folder, busy):
        yield


@contextlib.contextmanager
def removal_lock(folder: Path) -> Iterator[None]:
    """Hold an existing ``folder``'s download lock while deleting in it: a download running
    there would fail half-way with "No such file", its lock file gone. ModelError while one
    runs."""
    busy = ModelError(
        f"A download into {folder} is running (another spdesk window or command); "
        "nothing was deleted.",
        hint="Wait for it to finish, or cancel it, then try again.",
    )
    with _held(folder, busy):
        yield


def refuse_while_downloading(folder: Path, busy: SpdeskError) -> None:
    """Raise ``busy`` while a download runs into ``folder`` (its lock is held elsewhere); the
    lock is let go at once: held during a move, its open file would stop the move on Windows."""
    with _held(folder, busy):
        pass


@contextlib.contextmanager
def _held(folder: Path, busy: SpdeskError) -> Iterator[None]:
    """Hold ``folder``'s lock; ``busy`` when another holds it. Only taking the lock is guarded:
    the errors of the ``with`` block pass as they are."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(folder, wait_s=LOCK_WAIT_S))
        except FolderLockedError as error:
            raise busy from error
        except OutputError as error:  # the lock file cannot be written: the folder's problem
            error.hint = folder_hint(error)
            raise
        yield


# --- diffusers folders and the Hugging Face cache -----------------------------------------------
def huggingface_cache_dir() -> Path:
    """The Hugging Face hub cache as the library resolves it (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE,
    HF_HOME...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def present(folder: Path, pattern: str) -> list[Path]:
    """The files in ``folder`` matching ``pattern`` that can be read: a link whose target is
    gone (a Hugging Face cache missing a blob) is not a file."""
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def looks_complete(folder: Path, source: Source) -> bool:
    """Structure check without a manifest: configs, and safetensors weights for weight parts."""
    if source.model_index and not (folder / "model_index.json").is_file():
        return False
    for part in source.components:
        sub = folder / part if part else folder
        if not present(sub, "*.json"):
            return False
        if (part in WEIGHT_PARTS or part == "") and not present(sub, "*.safetensors"):
            return False
    return True


def wanted_files(snapshot: Path, source: Source) -> list[Path]:
    """The files of a diffusers folder ``source`` needs (fp16 safetensors preferred)."""
    wanted: list[Path] = []
    if source.model_index:
        wanted.append(snapshot / "model_index.json")
    for part in source.components:
        sub = snapshot / part if part else snapshot
        fp16 = present(sub, "*.fp16.safetensors")
        plain = [p for p in present(sub, "*.safetensors") if p.suffixes == [".safetensors"]]
        wanted += present(sub, "*.json") + present(sub, "*.txt") + (fp16 or plain)
    return wanted


def link_tree(snapshot: Path, folder: Path, source: Source) -> None:
    """Hard links (symlinks across disks) of the snapshot's needed files under plain names,
    recorded in ``folder``'s manifest."""
    linked: list[str] = []
    for src in wanted_files(snapshot, source):
        relative = local_name(src.relative_to(snapshot).as_posix())
        linked.append(relative)
        dest = folder / relative
        if dest.exists():
            continue
        if dest.is_symlink():  # its target is gone: link it again
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = src.resolve()
        try:
            os.link(real, dest)
        except OSError:
            dest.symlink_to(real)
    record = {"links": sorted(linked), "snapshot": str(snapshot)}
    if {k: read_model_manifest(folder).get(k) for k in record} != record:
        write_model_manifest(folder, record)
