"""Re-hash installed files against the digests recorded when they arrived (no network).

Digests are huggingface_hub's own: sha256 (``utils.sha.sha_fileobj``) for weights and other
LFS files, git blob sha1 (``utils.sha.git_hash``) for small files, as the hub's ETags give them.
Imported models record the sha256 of every file at import, so changed bytes are found too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spdesk.core.errors import OutputError
from spdesk.core.models.layout import (
    local_size,
    read_model_manifest,
    removal_lock,
    write_model_manifest,
)

SHA256 = "sha256"
GIT_SHA1 = "git-sha1"


@dataclass
class VerifyResult:
    """Outcome of re-hashing one feature's files; ``problems`` is empty when all match."""

    feature: str
    folder: str | None
    checked_files: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.folder is not None and self.checked_files > 0 and not self.problems


def algorithm_of(digest: str) -> str | None:
    """``sha256`` or ``git-sha1`` from a hex digest's length (what the hub's ETags are)."""
    return {64: SHA256, 40: GIT_SHA1}.get(len(digest))


def digest_of(path: Path, algorithm: str) -> str:
    """The hex digest of a file in ``algorithm`` (``sha256`` or ``git-sha1``)."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    if algorithm == GIT_SHA1:  # small files only (configs, tokenizer files)
        return git_hash(path.read_bytes())
    with path.open("rb") as fh:
        return sha_fileobj(fh).hex()


def sha256_of(path: Path) -> str:
    return digest_of(path, SHA256)


def verify_download(feature: str, folder: Path) -> VerifyResult:
    """Re-hash the files a download manifest lists for ``feature``; damaged ones are deleted
    (and the features that used them marked incomplete) so the next download fetches exactly
    those again. ModelError, deleting nothing, while a download into ``folder`` runs. In a
    store this user cannot write (read-only, another user's) the damage is reported all the
    same, with why nothing was deleted."""
    manifest = read_model_manifest(folder)
    paths = manifest["features"].get(feature, [])
    damaged: dict[str, str] = {}  # remote name: what is wrong with its local file
    for remote in paths:
        entry = manifest["files"][remote]
        problem = _download_problem(folder / entry["local"], entry)
        if problem:
            damaged[remote] = f"{entry['local']} {problem}"
    if not damaged:
        return VerifyResult(feature, str(folder), len(paths), [])
    try:
        with removal_lock(folder):
            _forget(folder, set(damaged))
    except (OutputError, OSError) as error:
        why = error.message if isinstance(error, OutputError) else error.strerror or str(error)
        problems = [f"{problem} (not deleted)" for problem in damaged.values()]
        problems.append(
            f"Nothing could be deleted in {folder}: {str(why).rstrip('.')}. Its owner can "
            "delete the damaged files (spdesk models remove), and the next download fetches "
            "them again."
        )
        return VerifyResult(feature, str(folder), len(paths), problems)
    problems = [f"{p} (deleted: the next download fetches it)" for p in damaged.values()]
    return VerifyResult(feature, str(folder), len(paths), problems)


def _forget(folder: Path, remotes: set[str]) -> None:
    """Delete the files of ``remotes`` and drop them, and the features using them, from the
    manifest (read again: it is the lock holder's to change). The manifest first: a file it
    no longer lists is fetched again, whether or not deleting it then works."""
    manifest = read_model_manifest(folder)
    gone = [folder / manifest["files"].pop(r)["local"] for r in remotes & set(manifest["files"])]
    for name in [n for n, ps in manifest["features"].items() if remotes & set(ps)]:
        manifest["features"].pop(name)
    write_model_manifest(folder, manifest)
    for local in gone:
        local.unlink(missing_ok=True)


def _download_problem(local: Path, entry: dict[str, Any]) -> str:
    if not local.is_file():
        return "is missing"
    if local.stat().st_size != local_size(entry):
        return "has the wrong size"
    if "local_sha256" in entry:  # converted from a .bin: the hub's digest is of the pickle
        if sha256_of(local) != entry["local_sha256"]:
            return "does not match the sha256 recorded when it was converted"
        return ""
    if digest_of(local, entry["algorithm"]) != entry["digest"]:
        return f"does not match its {entry['algorithm']}"
    return ""


def record_digests(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {size, sha256}}`` of files under ``folder`` (what an import records)."""
    return {n: {"size": (folder / n).stat().st_size, SHA256: sha256_of(folder / n)} for n in names}


def verify_recorded(folder: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """Problems of files whose sha256 was recorded (an imported model); empty when all match."""
    problems = []
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{name} has the wrong size")
        elif sha256_of(path) != entry[SHA256]:
            problems.append(f"{name} does not match the sha256 recorded when it was imported")
    return problems


def verify_cache_links(snapshot: Path, files: Iterable[Path]) -> tuple[int, list[str]]:
    """Re-hash files of a Hugging Face cache snapshot against their blob names (the ETag: sha256
    of weights, git sha1 of small files). Returns ``(checked, problems)``."""
    checked = 0
    problems = []
    for src in files:
        blob = src.resolve().name
        algorithm = algorithm_of(blob)
        if algorithm is None:
            continue
        checked += 1
        if digest_of(src, algorithm) != blob:
            name = src.relative_to(snapshot).as_posix()
            problems.append(f"{name} does not match its {algorithm}")
    return checked, problems
