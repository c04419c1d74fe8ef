"""The model store: which weights are installed, where, whether verified; fetch, check, remove.

Public API (what the CLI, the engine, the preview and the GUI's model manager call)::

    store = ModelStore()                       # settings from the settings file / HF_ENDPOINT
    store.root                                 # the store folder (store.relocate(new) moves it)
    store.status() -> list[FeatureStatus]      # per feature: present, folder, size, verified
    store.plan(feature) -> DownloadPlan        # network: files, total/to-fetch bytes, free space
    store.download(feature, on_event, cancel) -> Path   # events in models.events
    store.verify(feature) -> VerifyResult      # re-hash against the recorded digests (no network)
    store.remove(feature | None) -> bytes freed    # only files the store's manifests name
    store.removal_note(feature) -> str         # what else remove(feature) takes (a shared VAE)
    store.import_path(path, name=) -> ImportResult  # a diffusers folder or one .safetensors file
    store.remove_imported(name) -> bytes freed
    store.require(feature) -> Path             # disk only, no network; ModelMissingError if absent
    store.find(feature) -> (Path, origin) | None     # the same, without raising
    encoder_folder("sd15") -> Path             # what ``load_encoder("sd15")`` uses

Features: ``train`` (SD 1.5 VAE), ``preview`` (VAE, UNet, text encoder, tokenizer, scheduler),
``inpaint`` (the same parts of the inpainting model) and ``taesd`` (tiny autoencoder).

The modules below import in one direction (an import-linter contract checks it)::

    store -> importing -> download -> selection, verify, weights -> layout -> settings, sources

:meth:`ModelStore.require` answers from the disk only (no network, no hashing). A Hugging Face
cache (``HF_HUB_CACHE``) that holds the pinned revision is reused by hard-linking its files
(symlinks across disks) instead of downloading 2 GB again.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    ModelError,
    ModelMissingError,
    NotEnoughSpaceError,
    OutputError,
)
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.files import LOCK_NAME, make_folder, output_error
from spdesk.core.models import download, importing
from spdesk.core.models.events import DownloadListing, FolderMoveProgress
from spdesk.core.models.layout import (
    HF_CACHE_LINKS,
    IMPORTED,
    MANIFEST,
    delete_recorded,
    feature_files_present,
    huggingface_cache_dir,
    link_tree,
    local_size,
    looks_complete,
    part_of,
    partial_files,
    read_model_manifest,
    refuse_while_downloading,
    removal_error,
    removal_lock,
    remove_empty_parents,
    repo_key,
    tree_size,
    wanted_files,
    window_or_command,
    write_model_manifest,
)
from spdesk.core.models.selection import IMPORT_HINT, DownloadPlan, RemoteFile, human_size
from spdesk.core.models.settings import (
    MODELS_DIR_VARIABLE,
    StoreSettings,
    load_settings,
    models_dir_variable,
    save_settings,
)
from spdesk.core.models.sources import FEATURES, Feature, Source
from spdesk.core.models.verify import VerifyResult, verify_cache_links, verify_download

ENCODER_FEATURES: dict[str, Feature] = {"sd15": "train", "taesd": "taesd"}
# Who uses a feature's files, for "this also removes the VAE that ... use(s)".
USED_BY = {
    "train": "training and fine-tuning with sd15 use",
    "preview": "the preview (Stable Diffusion 1.5) uses",
}
# In an imported model's manifest: the problems the last verify found (absent when sound).
DAMAGED = "damaged"


@dataclass
class FeatureStatus:
    """What ``spdesk models status`` shows for one feature (sizes in bytes)."""

    feature: str
    description: str
    repo_id: str
    revision: str
    present: bool
    folder: str | None
    size_bytes: int
    verified: bool
    origin: str  # "downloaded", "imported", "huggingface-cache" or "" when absent
    partial_bytes: int = 0  # data a resume reuses: ``.part`` files and files already verified
    repair: str = ""  # an import verify found damaged: the commands that import it again
    # Downloaded, but a file of it is missing or cut short since (so not present): verify
    # says which, and deletes it for the next download to fetch again.
    damaged: bool = False


def covered_files(paths: list[str], source: Source) -> list[str]:
    """Repository paths among ``paths`` that belong to ``source``'s components (and index)."""
    out = []
    for path in paths:
        if path == "model_index.json":
            if source.model_index:
                out.append(path)
        elif (path.split("/")[0] if "/" in path else "") in source.components:
            out.append(path)
    return out


def _complete_bytes(folder: Path, manifest: dict[str, Any], own: list[str], source: Source) -> int:
    """Bytes of the feature's planned files already fetched and verified in ``folder``, when
    some other planned file is still missing (a download stopped half-way, or a file deleted
    since); 0 when none is missing, so that files another feature installed are not shown as
    this one's partial download."""
    if manifest.get("commit", manifest.get("revision")) != source.revision:
        return 0
    recorded = {e["local"]: local_size(e) for e in manifest.get("files", {}).values()}
    here, missing = 0, False
    for name in own:
        path = folder / name
        if name in recorded and path.is_file() and path.stat().st_size == recorded[name]:
            here += recorded[name]
        else:
            missing = True
    return here if missing else 0


def _move_tree(old: Path, new: Path, on_event: EventSink, cancel: CancelToken) -> None:
    """Move folder ``old`` to ``new`` (absent, or an empty folder): a rename on one disk; on
    another, a checked copy told file by file (a cancel or a failure removes the copy), then
    ``old`` is deleted."""
    try:
        make_folder(new.parent, new)
        if new.exists():
            new.rmdir()
        os.rename(old, new)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:  # the same disk, and the rename itself failed
            raise output_error(error, new) from error
    needed, free = _copied_size(old), shutil.disk_usage(new.parent).free
    if needed > free:
        raise NotEnoughSpaceError(
            f"Moving the models needs {human_size(needed)}, {human_size(free)} free on "
            f"{new.parent}.",
            hint="Free some space there, or choose a folder on another disk.",
        )
    try:
        shutil.copytree(
            old, new, symlinks=True, copy_function=_told_copy(old, needed, on_event, cancel)
        )
    except Cancelled as error:
        shutil.rmtree(new, ignore_errors=True)
        raise Cancelled(
            f"Moving cancelled. Nothing was moved: the models are still in {old}."
        ) from error
    except KeyboardInterrupt:  # a second Ctrl+C: stop now, but leave no half copy behind
        shutil.rmtree(new, ignore_errors=True)
        raise
    except OSError as error:
        shutil.rmtree(new, ignore_errors=True)  # the models are all still in the old folder
        raise OutputError(
            f"Could not copy the models to {new}: {error}. Nothing was moved.",
            hint="Free some space there, or choose another folder.",
        ) from error
    shutil.rmtree(old, ignore_errors=True)


def _copied_size(folder: Path) -> int:
    """The bytes a copy of ``folder`` writes (links are copied as links)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _told_copy(
    old: Path, total: int, on_event: EventSink, cancel: CancelToken
) -> Callable[[str, str], str]:
    """A ``copytree`` copy function of the folder ``old`` that checks the cancel token before
    each file and tells the bytes copied after it, and the file by its path inside ``old``."""
    done = 0

    def copy(src: str, dst: str) -> str:
        nonlocal done
        cancel.check()
        shutil.copy2(src, dst)
        done += os.path.getsize(dst)
        on_event(FolderMoveProgress(Path(src).relative_to(old).as_posix(), done, total))
        return dst

    return copy


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and a file in it, or say why the models cannot go there."""
    probe = folder / ".spdesk-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as error:
        named = output_error(error, probe)
        named.hint = "Choose a folder you can write to for the models."
        raise named from error


class ModelStore:
    """Installed models for the features ``train``, ``preview``, ``inpaint`` and ``taesd``.

    ``root`` overrides the store folder of ``settings`` (default: the saved settings).
    """

    def __init__(self, root: Path | None = None, settings: StoreSettings | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.root = Path(root) if root is not None else self.settings.root()
        self.root_reason = self.settings.root_reason() if root is None else "given for this run"

    # --- where things are -----------------------------------------------------------------
    def source(self, feature: Feature) -> Source:
        check_feature(feature)
        return self.settings.source(feature)

    def folder_for(self, feature: Feature) -> Path:
        """The download folder of ``feature`` (whether or not it exists yet)."""
        source = self.source(feature)
        return self.root / repo_key(source.repo_id) / source.revision

    def find(self, feature: Feature) -> tuple[Path, str] | None:
        """``(folder, origin)`` holding ``feature``, from the disk only; ``None`` when absent."""
        folder = self.folder_for(feature)
        if feature_files_present(folder, read_model_manifest(folder), feature):
            return folder, "downloaded"
        imported = self._imported_for(feature)
        if imported is not None:
            return imported, "imported"
        cached = self._link_from_hf_cache(feature)
        if cached is not None:
            return cached, "huggingface-cache"
        return None

    def require(self, feature: Feature) -> Path:
        """The local diffusers folder holding what ``feature`` needs. Never uses the network.

        Raises ModelMissingError whose message names the command that fetches it.
        """
        found = self.find(feature)
        if found is None:
            source = self.source(feature)
            raise ModelMissingError(
                f"{source.description} is not installed (looked in {self.root}); "
                f"`spdesk models download --for {feature}` fetches it.",
                hint="Download it ("
                + window_or_command("Download…", f"spdesk models download --for {feature}")
                + f"), or {IMPORT_HINT}.",
            )
        folder, origin = found
        damage = _damage_of(folder) if origin == "imported" else []
        if damage:
            raise ModelError(
                f"The imported model {folder.name} ({self.source(feature).description}) is "
                f"damaged: {damage[0]}",
                hint="Import it again ("
                + window_or_command("Remove, then Import…", _reimport_commands(folder))
                + ").",
            )
        return folder

    # --- download ---------------------------------------------------------------------------
    def plan(
        self,
        feature: Feature,
        cancel: CancelToken | None = None,
        on_event: EventSink = ignore_events,
    ) -> DownloadPlan:
        """List the repository (network) and work out what is still to fetch and the free space.
        Cancelled at once on ``cancel``; a failing hub's retries are told (HubRetrying)."""
        source = self.source(feature)
        endpoint = self.settings.resolved_endpoint()
        folder = self.folder_for(feature)
        return download.plan_download(feature, source, endpoint, folder, cancel, on_event)

    def download(
        self,
        feature: Feature,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Fetch what ``feature`` needs (resuming partial files), verify it, and return the folder.

        A feature already complete in the store, or in a Hugging Face cache holding the pinned
        commit, returns at once without network. Raises NotEnoughSpaceError before fetching,
        DownloadError on network, server or verification failures, ModelError when a downloaded
        config is unreadable, Cancelled on cancel (the partial data stays; the next call resumes).
        """
        found = self.find(feature)
        if found is not None and found[1] in ("downloaded", "huggingface-cache"):
            return found[0]  # the pinned files are here (a Hugging Face cache is not copied)
        endpoint = self.settings.resolved_endpoint()  # what plan() lists, said before it waits
        on_event(DownloadListing(feature, self.source(feature).repo_id, endpoint))
        plan = self.plan(feature, cancel, on_event)
        manifest = download.fetch(plan, on_event, cancel, self._features_recorder(plan))
        self._record_features(manifest, [f.path for f in plan.files])
        write_model_manifest(plan.target, manifest)
        return plan.target

    def _features_recorder(self, plan: DownloadPlan) -> Callable[[dict[str, Any]], None]:
        """What ``fetch`` calls as each file is entered in the manifest: it marks complete each
        feature whose planned files have all arrived, verified, in the same write. A preview
        download that stopped after the VAE (cancelled, the network gone, the process killed
        or the power lost) left training "not installed" with all of its files there. A file
        not yet verified is not in the manifest, so a partial or damaged one never counts."""
        planned = [f.path for f in plan.files]

        def record(manifest: dict[str, Any]) -> None:
            arrived = set(manifest["files"])
            for feature in FEATURES:
                own = covered_files(planned, self.source(feature))
                if not own or feature in manifest["features"] or not arrived.issuperset(own):
                    continue
                try:  # a truncated config: its feature is not there
                    download.validate_configs(
                        plan.target, [manifest["files"][path]["local"] for path in own]
                    )
                except ModelError:
                    continue
                self._record_features(manifest, own)

        return record

    def config_folder(
        self,
        feature: Feature,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> Path:
        """A folder with ``feature``'s configuration files (what ``from_single_file`` needs):
        the installed model, or only its configs and tokenizer fetched from the hub (a few MB).
        The asking is told (DownloadListing, then a failing hub's retries as HubRetrying), and
        ``cancel`` ends it at once (Cancelled)."""
        found = self.find(feature)
        if found is not None:
            return found[0]
        endpoint = self.settings.resolved_endpoint()
        on_event(DownloadListing(feature, self.source(feature).repo_id, endpoint))
        plan = self.plan(feature, cancel, on_event)
        configs = tuple(f for f in plan.files if not f.path.endswith((".safetensors", ".bin")))
        verified = download.verified_paths(
            plan.target, read_model_manifest(plan.target), configs, plan.commit
        )
        done = sum(download.bytes_on_disk(plan.target, f, verified) for f in configs)
        download.fetch(replace(plan, files=configs, done_bytes=done), on_event, cancel)
        return plan.target

    def _record_features(self, manifest: dict[str, object], files: list[str]) -> None:
        """Mark complete every feature whose parts all came with this download (``train`` is
        inside ``preview``: one download serves both)."""
        features = manifest["features"]
        assert isinstance(features, dict)
        for feature in FEATURES:
            source = self.source(feature)
            if (source.repo_id, source.revision) != (manifest["repo_id"], manifest["revision"]):
                continue
            paths = covered_files(files, source)
            parts_ok = all(
                any(p.startswith(f"{c}/") if c else "/" not in p for p in paths)
                for c in source.components
            )
            index_ok = not source.model_index or "model_index.json" in files
            if paths and parts_ok and index_ok:
                features[feature] = sorted(paths)

    # --- status, verify, remove -----------------------------------------------------------
    def status(self) -> list[FeatureStatus]:
        """One entry per feature: present or not, where, size on disk, verified or not."""
        return [self.status_of(feature) for feature in FEATURES]

    def status_of(self, feature: Feature) -> FeatureStatus:
        source = self.source(feature)
        found = self.find(feature)
        folder, origin = found if found is not None else (None, "")
        size = self._feature_size(feature, folder, origin)
        verified, repair = origin == "downloaded", ""
        if origin == "imported" and folder is not None:
            imported = read_model_manifest(folder)
            verified = bool(imported.get("validated")) and not imported.get(DAMAGED)
            repair = _reimport_commands(folder) if imported.get(DAMAGED) else ""
        download_folder = self.folder_for(feature)
        manifest = read_model_manifest(download_folder)
        # Features of one repository share its folder: count only this feature's .part files.
        own = covered_files(list(manifest.get("planned", [])), source)
        parts = partial_files(download_folder, {"planned": own})
        kept = sum(p.stat().st_size for p in parts)
        if found is None:  # what a resume reuses, as the download's plan and its cancel count it
            kept += _complete_bytes(download_folder, manifest, own, source)
        return FeatureStatus(
            feature,
            source.description,
            source.repo_id,
            source.revision,
            found is not None,
            str(folder) if folder else None,
            size,
            verified,
            origin,
            kept,
            repair,
            damaged=found is None and self.recorded(feature),
        )

    def _feature_size(self, feature: Feature, folder: Path | None, origin: str) -> int:
        if folder is None:
            return 0
        if origin == "downloaded":
            manifest = read_model_manifest(folder)
            return sum(local_size(manifest["files"][p]) for p in manifest["features"][feature])
        return tree_size(folder)

    def verify(self, feature: Feature) -> VerifyResult:
        """Re-hash ``feature``'s files against the digests recorded when they arrived (no
        network): downloads against the hub's digests, files reused from a Hugging Face cache
        against their blob names, imported models against the sha256 recorded at import.

        A damaged download is deleted (the next download fetches it again). A damaged import is
        kept, marked damaged and no longer used: the store cannot fetch it again, and the
        original it was copied from may be gone; the user imports it again or removes it. A
        later verify that finds it sound again (put back by hand) clears the mark."""
        found = self.find(feature)
        if found is None and self.recorded(feature):  # a download damaged since: say what is
            return self.verify_recorded(feature)
        if found is None:
            return VerifyResult(feature, None, 0, [f"{feature} is not installed"])
        folder, origin = found
        if origin == "downloaded":
            return self.verify_recorded(feature)
        if origin == "huggingface-cache":
            snapshot = self.hf_cache_snapshot(feature)
            files = wanted_files(snapshot, self.source(feature))
            checked, problems = verify_cache_links(snapshot, files)
            return VerifyResult(feature, str(folder), checked, problems)
        return self._verify_import(feature, folder)

    def verify_imports(self, done: set[str]) -> list[tuple[VerifyResult, str]]:
        """Re-hash every imported model whose folder is not in ``done`` (those no feature uses
        now: a later import took its place), each with the commands that import it again
        ("" when sound). Labelled ``imported NAME``, as ``status`` lists them."""
        results = []
        for folder in self.imported_folders():
            if str(folder) not in done:
                result = self._verify_import(f"imported {folder.name}", folder)
                results.append((result, "" if result.ok else _reimport_commands(folder)))
        return results

    def _verify_import(self, label: str, folder: Path) -> VerifyResult:
        checked, problems = importing.verify_imported(folder)
        problems += _mark_imported(folder, problems)
        return VerifyResult(label, str(folder), checked, problems)

    def recorded(self, feature: Feature) -> bool:
        """Whether a download of ``feature`` is recorded in the store, complete or not (a file
        cut short or deleted since makes it not installed, but it is still there to verify)."""
        folder = self.folder_for(feature)
        return (folder / MANIFEST).is_file() and feature in read_model_manifest(folder)["features"]

    def verify_recorded(self, feature: Feature) -> VerifyResult:
        folder = self.folder_for(feature)
        try:
            return verify_download(feature, folder)
        except OSError as error:  # deleting a damaged file
            raise removal_error(error, Path(error.filename or folder)) from error

    def remove(self, feature: Feature | None = None) -> int:
        """Delete the downloaded files of ``feature``'s parts (features sharing them, such as
        ``train`` and ``preview`` sharing the VAE, become incomplete), or, when ``feature`` is
        None, everything the store's manifests name: downloads, imported models and links into a
        Hugging Face cache. Files the store did not write stay, even inside its folder (it may
        be shared). Never touches a Hugging Face cache itself. Returns the bytes freed."""
        try:
            if feature is not None:
                return self._remove_feature(feature)
            return self._remove_all()
        except OSError as error:  # a read-only disk, no permission: named, not "unexpected"
            raise removal_error(error, Path(error.filename or self.root)) from error

    def removal_note(self, feature: Feature) -> str:
        """What else ``remove(feature)`` deletes: the downloaded files it shares with other
        installed features (train's VAE is inside preview's pipeline). Empty when nothing."""
        folder = self.folder_for(feature)
        manifest = read_model_manifest(folder)
        mine = set(covered_files(list(manifest["files"]), self.source(feature)))
        notes = []
        for other in FEATURES:
            shared = mine & set(manifest["features"].get(other, [])) if other != feature else set()
            if shared and feature_files_present(folder, manifest, other):
                what = "the VAE" if {part_of(p) for p in shared} == {"vae"} else "files"
                users = USED_BY.get(other, f"the {other} model uses")
                notes.append(f"this also removes {what} that {users}")
        return "; ".join(notes)

    def _remove_all(self) -> int:
        freed = sum(self._remove_feature(f) for f in FEATURES)
        for folder in list(self.imported_folders()):
            freed += importing.remove_imported(self.root, folder.name)
        links = self.root / HF_CACHE_LINKS
        for manifest_path in sorted(links.glob(f"*/*/{MANIFEST}")) if links.is_dir() else []:
            folder = manifest_path.parent
            freed += delete_recorded(
                folder, [*read_model_manifest(folder).get("links", []), MANIFEST]
            )
            remove_empty_parents(folder, self.root)
        return freed

    def _remove_feature(self, feature: Feature) -> int:
        """Delete ``feature``'s parts, holding the download lock: a download running into the
        folder refuses it."""
        folder = self.folder_for(feature)
        if not (folder / MANIFEST).is_file():
            return 0
        with removal_lock(folder):
            freed, emptied = self._delete_parts(folder, feature)
        if emptied:  # now the lock file (once let go: Windows cannot delete an open file)
            delete_recorded(folder, [LOCK_NAME])
            remove_empty_parents(folder, self.root)
        return freed

    def _delete_parts(self, folder: Path, feature: Feature) -> tuple[int, bool]:
        """``(bytes freed, whether the folder holds nothing of the store's any more)``."""
        manifest = read_model_manifest(folder)
        mine = set(covered_files(list(manifest["files"]), self.source(feature)))
        names = [manifest["files"].pop(remote)["local"] for remote in sorted(mine)]
        for name in [n for n, paths in manifest["features"].items() if mine & set(paths)]:
            manifest["features"].pop(name)
        names += [p.relative_to(folder).as_posix() for p in partial_files(folder, manifest)]
        if manifest["files"]:
            freed = delete_recorded(folder, names)
            planned = set(manifest.get("planned", [])) - {n.removesuffix(".part") for n in names}
            write_model_manifest(folder, {**manifest, "planned": sorted(planned)})
            return freed, False
        return delete_recorded(folder, [*names, MANIFEST]), True

    def relocate(
        self,
        new_root: Path,
        *,
        move: bool = True,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Make ``new_root`` the store folder (saved in the settings), moving what is installed.

        Refused before anything moves: while ``SPDESK_MODELS_DIR`` chooses the folder, a file, a
        folder inside the store, a folder that is not empty or cannot be written, or a disk
        without room for a copy. A copy to another disk tells FolderMoveProgress events; one
        cancelled or cut short is removed (the models stay where they were, and the setting is
        unchanged); the old folder is deleted only once the new one is complete."""
        if variable := models_dir_variable():
            raise ConfigError(
                f"The models folder is set by {MODELS_DIR_VARIABLE} ({variable}) for this run; "
                "a folder saved now would not be used.",
                hint=f"Unset {MODELS_DIR_VARIABLE} first, or point it at the folder you want.",
            )
        new_root = Path(new_root).expanduser().resolve()
        if new_root.exists() and not new_root.is_dir():
            raise ConfigError(f"{new_root} is a file; choose a folder for the models.")
        old_root = self.root.resolve()
        moving = move and self.root.is_dir() and old_root != new_root
        if moving:
            if old_root in new_root.parents:
                raise ConfigError(
                    f"{new_root} is inside the model folder {old_root}; choose a folder outside it."
                )
            if new_root.exists() and any(new_root.iterdir()):
                raise ConfigError(f"{new_root} is not empty; pick an empty or new folder.")
        _check_writable(new_root)
        if moving:
            self._refuse_while_downloading()
            _move_tree(old_root, new_root, on_event, cancel or CancelToken())
        self.settings = replace(self.settings, models_dir=str(new_root))
        save_settings(self.settings)
        self.root, self.root_reason = new_root, self.settings.root_reason()
        return new_root

    def _refuse_while_downloading(self) -> None:
        """A move under a running download left it writing into a folder that was gone ("No
        such file or directory"), the old tree deleted under it on another disk."""
        for feature in FEATURES:
            folder = self.folder_for(feature)
            if (folder / MANIFEST).is_file():
                busy = ModelError(
                    f"A download into {folder} is running (another spdesk window or command); "
                    "nothing was moved.",
                    hint="Wait for it to finish, or cancel it, then move the models.",
                )
                refuse_while_downloading(folder, busy)

    def import_path(
        self,
        path: Path,
        *,
        name: str | None = None,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> importing.ImportResult:
        """Import a diffusers folder or a single SD 1.5 ``.safetensors`` file (see importing).
        A single file's configs may come from the hub: that is told through ``on_event``, and
        ``cancel`` ends it (Cancelled; nothing is imported)."""

        def configs(feature: Feature) -> Path:
            return self.config_folder(feature, on_event, cancel)

        try:
            return importing.import_model(self.root, Path(path), configs, name=name)
        except Cancelled as error:
            raise Cancelled(
                "Import cancelled while fetching its configuration files from the hub; "
                "nothing was imported."
            ) from error

    def remove_imported(self, name: str) -> int:
        """Delete one imported model (by the name ``status`` shows); returns bytes freed."""
        try:
            return importing.remove_imported(self.root, name)
        except OSError as error:
            raise removal_error(error, Path(error.filename or self.root)) from error

    # --- imported and cached models ---------------------------------------------------------
    def imported_folders(self) -> Iterator[Path]:
        base = self.root / IMPORTED
        if base.is_dir():
            yield from sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())

    def _imported_for(self, feature: Feature) -> Path | None:
        for folder in self.imported_folders():
            if feature in read_model_manifest(folder).get("provides", []):
                return folder
        return None

    def hf_cache_snapshot(self, feature: Feature) -> Path:
        source = self.source(feature)
        name = f"models--{repo_key(source.repo_id)}"
        return huggingface_cache_dir() / name / "snapshots" / source.revision

    def _link_from_hf_cache(self, feature: Feature) -> Path | None:
        """Reuse a Hugging Face cache snapshot of the pinned revision by linking its files."""
        source = self.source(feature)
        snapshot = self.hf_cache_snapshot(feature)
        if not snapshot.is_dir() or not looks_complete(snapshot, source):
            return None
        folder = self.root / HF_CACHE_LINKS / repo_key(source.repo_id) / source.revision
        try:
            link_tree(snapshot, folder, source)
        except OSError:
            return None
        return folder if looks_complete(folder, source) else None


def _damage_of(imported: Path) -> list[str]:
    """What the last verify found wrong with an imported model (empty: nothing)."""
    return list(read_model_manifest(imported).get(DAMAGED) or [])


def _mark_imported(folder: Path, problems: list[str]) -> list[str]:
    """Record in an imported model's manifest whether verify found it damaged; returns why it
    could not be recorded (a read-only models folder), as one more problem."""
    manifest = read_model_manifest(folder)
    if manifest.get(DAMAGED, []) == problems:
        return []
    manifest.pop(DAMAGED, None)
    marks = {DAMAGED: problems} if problems else {}
    try:
        write_model_manifest(folder, {**manifest, **marks, "validated": not problems})
    except OSError as error:
        why = error.strerror or error
        return [f"it could not be marked damaged in {folder} ({why}): it is still offered"]
    return []


def _reimport_commands(imported: Path) -> str:
    """The commands that replace an imported model by a new copy of what it was imported from."""
    origin = read_model_manifest(imported).get("origin") or "PATH"
    return (
        f"spdesk models remove --imported {imported.name}, then "
        f"spdesk models import {shlex.quote(str(origin))}"
    )


def check_feature(feature: str) -> None:
    if feature not in FEATURES:
        raise ModelError(
            f"Unknown model feature {feature!r}; expected one of: {', '.join(FEATURES)}."
        )


def encoder_folder(name: str, store: ModelStore | None = None) -> Path:
    """The local folder for an encoder the CLI names: ``sd15`` (the SD 1.5 VAE) or ``taesd``.

    Disk only; raises ModelMissingError naming the ``spdesk models download`` command.
    """
    if name not in ENCODER_FEATURES:
        raise ModelError(f"{name!r} is not a model-store encoder; expected 'sd15' or 'taesd'.")
    return (store or ModelStore()).require(ENCODER_FEATURES[name])


def installed_encoders(store: ModelStore | None = None) -> list[str]:
    """The model-store encoders ("sd15", "taesd") installed here and usable (disk only)."""
    store = store or ModelStore()
    return [name for name, feature in ENCODER_FEATURES.items() if _usable(store, feature)]


def _usable(store: ModelStore, feature: Feature) -> bool:
    """Installed, and not an import verify found damaged (require refuses it)."""
    found = store.find(feature)
    return found is not None and not (found[1] == "imported" and _damage_of(found[0]))


__all__ = [
    "FeatureStatus",
    "ModelStore",
    "RemoteFile",
    "VerifyResult",
    "encoder_folder",
    "installed_encoders",
]
