"""The model store: which weights are installed, where, whether verified; fetch, check, remove.

Public API (what the CLI, the engine, the preview and the GUI's model manager call)::

    store = ModelStore()                       # settings from the settings file / HF_ENDPOINT
    store.root                                 # the store folder (store.relocate(new) moves it)
    store.status() -> list[FeatureStatus]      # per feature: present, folder, size, verified
    store.plan(feature) -> DownloadPlan        # network: files, total/to-fetch bytes, free space
    store.download(feature, on_event, cancel) -> Path   # events: DownloadPlanned, DownloadStarted,
                                               #   DownloadProgress, FileVerifying, FileVerified,
                                               #   FileRejected, DownloadFinished (models.hub)
    store.verify(feature) -> VerifyResult      # re-hash against the hub's digests (no network)
    store.remove(feature | None) -> bytes freed
    store.import_path(path, name=) -> ImportResult  # a diffusers folder or one .safetensors file
    store.remove_imported(name) -> bytes freed
    store.require(feature) -> Path             # disk only, no network; ModelMissingError if absent
    store.find(feature) -> (Path, origin) | None     # the same, without raising
    encoder_folder("sd15") -> Path             # what ``load_encoder("sd15")`` uses
    spdesk.core.models.loading: load_vae / load_pipeline / load_taesd (local files only)

Features: ``train`` (SD 1.5 VAE), ``preview`` (VAE, UNet, text encoder, tokenizer, scheduler),
``inpaint`` (the same parts of the inpainting model) and ``taesd`` (tiny autoencoder).

Layout under the store root (``StoreSettings.root()``, by default platformdirs' data folder)::

    <org>--<name>/<revision>/        one diffusers folder per repository and commit
        spdesk-manifest.json          files in place with their verified digests, features complete
    imported/<name>/                  models the user brought (see importing.py)
    hf-cache/<org>--<name>/<rev>/     links into a Hugging Face cache that holds the pinned commit

:meth:`ModelStore.require` answers from the disk only (no network, no hashing). An existing Hugging
Face cache that holds the pinned revision is reused by hard-linking its files (symlinks across
disks) instead of downloading 2 GB again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    DownloadError,
    ModelError,
    ModelMissingError,
)
from spdesk.core.events import CancelToken, EventSink, ignore_events
from spdesk.core.models.settings import StoreSettings, load_settings, save_settings
from spdesk.core.models.sources import FEATURES, Feature, Source

if TYPE_CHECKING:
    from spdesk.core.models.hub import DownloadPlan, RemoteFile
    from spdesk.core.models.importing import ImportResult

MANIFEST = "spdesk-manifest.json"
IMPORTED = "imported"
HF_CACHE_LINKS = "hf-cache"
WEIGHT_PARTS = ("vae", "unet", "text_encoder", "")
ENCODER_FEATURES: dict[str, Feature] = {"sd15": "train", "taesd": "taesd"}
LOCK_WAIT_S = 1.0  # how long a second download waits for the first to let go


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
    partial_bytes: int = 0  # ``.part`` data waiting for a resume


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


def repo_key(repo_id: str) -> str:
    """A folder name for a repository id, as Hugging Face's cache spells it (``org--name``)."""
    return repo_id.replace("/", "--")


# --- manifest -----------------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            data = {}  # a damaged manifest: files get re-verified by the next download
    data.setdefault("files", {})
    data.setdefault("features", {})
    return data


def write_manifest(folder: Path, data: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def _feature_files_present(folder: Path, manifest: dict[str, Any], feature: str) -> bool:
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


def local_size(entry: dict[str, Any]) -> int:
    """The stored file's size (a converted ``.bin`` differs from the hub's size)."""
    return int(entry.get("local_size", entry["size"]))


def sha256_of(path: Path) -> str:
    from huggingface_hub.utils.sha import sha_fileobj

    with path.open("rb") as fh:
        return sha_fileobj(fh).hex()


def looks_complete(folder: Path, source: Source) -> bool:
    """Structure check without a manifest: configs and safetensors weights for every part."""
    if source.model_index and not (folder / "model_index.json").is_file():
        return False
    for part in source.components:
        sub = folder / part if part else folder
        if not any(sub.glob("*.json")):
            return False
        if part in WEIGHT_PARTS and not any(sub.glob("*.safetensors")):
            return False
    return True


def huggingface_cache_dir() -> Path:
    """Hugging Face's hub cache, as huggingface_hub finds it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(os.environ.get("HF_HOME") or default) / "hub"


def covered_files(files: Iterable[RemoteFile], source: Source) -> list[str]:
    """Paths of ``files`` that belong to ``source``'s components (and its model_index)."""
    out = []
    for f in files:
        if f.path == "model_index.json":
            if source.model_index:
                out.append(f.path)
        elif (f.path.split("/")[0] if "/" in f.path else "") in source.components:
            out.append(f.path)
    return out


class ModelStore:
    """Installed models for the features ``train``, ``preview``, ``inpaint`` and ``taesd``.

    ``root`` overrides the store folder of ``settings`` (default: the saved settings).
    """

    def __init__(self, root: Path | None = None, settings: StoreSettings | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.root = Path(root) if root is not None else self.settings.root()

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
        if _feature_files_present(folder, read_manifest(folder), feature):
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
                hint=f"Run: spdesk models download --for {feature}  "
                "(or bring your own copy: spdesk models import PATH)",
            )
        return found[0]

    # --- download ---------------------------------------------------------------------------
    def plan(self, feature: Feature) -> DownloadPlan:
        """List the repository (network) and work out what is still to fetch and the free space."""
        from spdesk.core.models import hub

        source = self.source(feature)
        endpoint = self.settings.resolved_endpoint()
        listing = hub.list_repository(source, endpoint, self.settings.resolved_token())
        files = hub.select_files(source, listing)
        folder = self.folder_for(feature)
        verified = _verified_paths(folder, read_manifest(folder), files)
        done = sum(hub.bytes_on_disk(folder, f, verified) for f in files)
        free, where = hub.free_bytes(folder)
        return hub.DownloadPlan(feature, source, endpoint, folder, tuple(files), done, free, where)

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
        plan = self.plan(feature)
        folder = plan.target
        manifest = self._fetch(plan, on_event, cancel)
        self._record_features(manifest, plan.files)
        write_manifest(folder, manifest)
        return folder

    def config_folder(
        self,
        feature: Feature,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> Path:
        """A folder with ``feature``'s configuration files (what ``from_single_file`` needs):
        the installed model, or only its configs and tokenizer fetched from the hub (a few MB)."""
        from spdesk.core.models import hub

        found = self.find(feature)
        if found is not None:
            return found[0]
        plan = self.plan(feature)
        configs = tuple(f for f in plan.files if not f.path.endswith(".safetensors"))
        manifest = read_manifest(plan.target)
        verified = _verified_paths(plan.target, manifest, configs)
        done = sum(hub.bytes_on_disk(plan.target, f, verified) for f in configs)
        self._fetch(replace(plan, files=configs, done_bytes=done), on_event, cancel)
        return plan.target

    def _fetch(
        self, plan: DownloadPlan, on_event: EventSink, cancel: CancelToken | None
    ) -> dict[str, Any]:
        """Check the space, fetch and verify ``plan``'s files, recording each in the manifest.

        A lock file next to the folder keeps two downloads (app and command line) apart."""
        from spdesk.core.models import hub

        hub.check_free_space(plan)
        with download_lock(plan.target):
            return self._fetch_locked(plan, on_event, cancel)

    def _fetch_locked(
        self, plan: DownloadPlan, on_event: EventSink, cancel: CancelToken | None
    ) -> dict[str, Any]:
        from spdesk.core.models import hub

        on_event(_planned_event(plan))
        folder = plan.target
        manifest = read_manifest(folder)
        manifest.update(repo_id=plan.source.repo_id, revision=plan.source.revision)

        def record(f: RemoteFile, digest: str) -> None:
            algorithm, _ = f.expected
            local = folder / f.local_name
            entry: dict[str, Any] = {"local": f.local_name, "size": f.size, "algorithm": algorithm}
            entry.update(digest=digest, local_size=local.stat().st_size)
            if f.is_pickle:  # converted: the hub's digest is of the .bin, keep the result's own
                entry["local_sha256"] = sha256_of(local)
            manifest["files"][f.path] = entry
            write_manifest(folder, manifest)

        downloader = hub.Downloader(
            plan,
            token=self.settings.resolved_token(),
            on_event=on_event,
            cancel=cancel,
            verified=_verified_paths(folder, manifest, plan.files),
            on_verified=record,
        )
        try:
            downloader.run()
        except Cancelled as error:
            kept = sum(p.stat().st_size for p in _parts(folder)) + sum(
                f.size for f in plan.files if f.path in downloader.verified
            )
            raise Cancelled(
                f"Download cancelled; {hub.human_size(kept)} kept, the next download resumes."
            ) from error
        validate_configs(folder, [f.local_name for f in plan.files])
        return manifest

    def _record_features(self, manifest: dict[str, Any], files: Iterable[RemoteFile]) -> None:
        """Mark complete every feature whose parts all came with this download (``train`` is
        inside ``preview``: one download serves both)."""
        files = list(files)
        have = {f.path for f in files}
        for feature in FEATURES:
            source = self.source(feature)
            if (source.repo_id, source.revision) != (manifest["repo_id"], manifest["revision"]):
                continue
            paths = covered_files(files, source)
            parts_ok = all(
                any(p.startswith(f"{c}/") if c else "/" not in p for p in paths)
                for c in source.components
            )
            index_ok = not source.model_index or "model_index.json" in have
            if paths and parts_ok and index_ok:
                manifest["features"][feature] = sorted(paths)

    # --- status, verify, remove -----------------------------------------------------------
    def status(self) -> list[FeatureStatus]:
        """One entry per feature: present or not, where, size on disk, verified or not."""
        return [self.status_of(feature) for feature in FEATURES]

    def status_of(self, feature: Feature) -> FeatureStatus:
        source = self.source(feature)
        found = self.find(feature)
        folder, origin = found if found is not None else (None, "")
        size = self._feature_size(feature, folder, origin)
        verified = origin == "downloaded"
        if origin == "imported" and folder is not None:
            verified = bool(read_manifest(folder).get("validated"))
        partial = sum(p.stat().st_size for p in _parts(self.folder_for(feature)))
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
            partial,
        )

    def _feature_size(self, feature: Feature, folder: Path | None, origin: str) -> int:
        if folder is None:
            return 0
        if origin == "downloaded":
            manifest = read_manifest(folder)
            return sum(local_size(manifest["files"][p]) for p in manifest["features"][feature])
        return tree_size(folder)

    def verify(self, feature: Feature) -> VerifyResult:
        """Re-hash ``feature``'s files against the digests the hub gave (no network).

        Downloaded files are checked against the manifest; files reused from a Hugging Face cache
        against their blob names (the sha256 of LFS files). Imported models have no reference
        digest: they are re-validated instead.
        """
        found = self.find(feature)
        if found is None:
            return VerifyResult(feature, None, 0, [f"{feature} is not installed"])
        folder, origin = found
        if origin == "downloaded":
            return _verify_manifest(feature, folder)
        if origin == "huggingface-cache":
            return self._verify_hf_cache(feature, folder)
        from spdesk.core.models import importing

        problems = importing.revalidate(folder)
        return VerifyResult(feature, str(folder), len(list(folder.rglob("*.*"))), problems)

    def remove(self, feature: Feature | None = None) -> int:
        """Delete the downloaded files of ``feature``'s parts (features sharing them, such as
        ``train`` and ``preview`` sharing the VAE, become incomplete), or the whole store when
        ``feature`` is None. Never touches a Hugging Face cache. Returns the bytes freed."""
        if feature is None:
            freed = tree_size(self.root) if self.root.is_dir() else 0
            if self.root.is_dir():
                shutil.rmtree(self.root)
            return freed
        from spdesk.core.models.hub import RemoteFile

        folder = self.folder_for(feature)
        manifest = read_manifest(folder)
        listed = [RemoteFile(path, 0) for path in manifest["files"]]
        mine = set(covered_files(listed, self.source(feature)))
        freed = 0
        for remote in sorted(mine):
            local = folder / manifest["files"].pop(remote)["local"]
            if local.is_file():
                freed += local.stat().st_size
                local.unlink()
        for name in [n for n, paths in manifest["features"].items() if mine & set(paths)]:
            manifest["features"].pop(name)
        for part in _parts(folder):
            freed += part.stat().st_size
            part.unlink()
        if manifest["features"]:
            write_manifest(folder, manifest)
        elif folder.is_dir():
            freed += tree_size(folder)
            shutil.rmtree(folder)
        return freed

    def relocate(self, new_root: Path, *, move: bool = True) -> Path:
        """Make ``new_root`` the store folder (saved in the settings), moving what is installed."""
        new_root = Path(new_root).expanduser().resolve()
        if move and self.root.is_dir() and self.root.resolve() != new_root:
            if new_root.exists() and any(new_root.iterdir()):
                raise ConfigError(f"{new_root} is not empty; pick an empty or new folder.")
            new_root.parent.mkdir(parents=True, exist_ok=True)
            if new_root.exists():
                new_root.rmdir()
            shutil.move(str(self.root), str(new_root))
        self.settings = replace(self.settings, models_dir=str(new_root))
        save_settings(self.settings)
        self.root = new_root
        return new_root

    def import_path(self, path: Path, *, name: str | None = None) -> ImportResult:
        """Import a diffusers folder or a single SD 1.5 ``.safetensors`` file (see importing)."""
        from spdesk.core.models import importing

        return importing.import_model(self, Path(path), name=name)

    def remove_imported(self, name: str) -> int:
        """Delete one imported model (by the name ``status`` shows); returns bytes freed."""
        from spdesk.core.models import importing

        return importing.remove_imported(self, name)

    # --- imported and cached models ---------------------------------------------------------
    def imported_folders(self) -> Iterator[Path]:
        base = self.root / IMPORTED
        if base.is_dir():
            yield from sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())

    def _imported_for(self, feature: Feature) -> Path | None:
        for folder in self.imported_folders():
            if feature in read_manifest(folder).get("provides", []):
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

    def _verify_hf_cache(self, feature: Feature, folder: Path) -> VerifyResult:
        snapshot = self.hf_cache_snapshot(feature)
        problems: list[str] = []
        checked = 0
        for src in wanted_files(snapshot, self.source(feature)):
            blob = src.resolve().name
            if len(blob) != 64:  # small files: their blob name is a git sha1 of the content
                continue
            checked += 1
            if sha256_of(src) != blob:
                problems.append(f"{src.relative_to(snapshot)} does not match its sha256")
        return VerifyResult(feature, str(folder), checked, problems)


@contextlib.contextmanager
def download_lock(folder: Path) -> Iterator[None]:
    """Hold ``.<folder>.lock`` beside ``folder``; DownloadError when another process holds it."""
    from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = WeakFileLock(folder.parent / f".{folder.name}.lock", timeout=LOCK_WAIT_S)
    try:
        lock.__enter__()
    except TimeoutError as error:  # filelock.Timeout
        raise DownloadError(
            f"Another download into {folder} is running (another spdesk window or command).",
            hint="Wait for it to finish, or cancel it, then try again.",
        ) from error
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


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


def validate_configs(folder: Path, local_names: Iterable[str]) -> None:
    """Every downloaded ``.json`` must parse: a truncated config fails here, not at load time."""
    for name in local_names:
        if not name.endswith(".json"):
            continue
        path = folder / name
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(
                f"{name} in {folder} is not valid JSON (truncated or damaged): {error}",
                hint="The repository holds a broken file; check the repository and revision in "
                "the model settings, or import a local copy (spdesk models import PATH).",
            ) from error


def _planned_event(plan: DownloadPlan) -> Any:
    from spdesk.core.models.hub import DownloadPlanned

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


def _verify_manifest(feature: str, folder: Path) -> VerifyResult:
    """Re-hash the manifest's files; damaged ones are deleted (and the features that used them
    marked incomplete) so that the next download fetches exactly those again."""
    from spdesk.core.models import hub

    manifest = read_manifest(folder)
    paths = manifest["features"].get(feature, [])
    problems: list[str] = []
    bad: set[str] = set()
    for remote in paths:
        entry = manifest["files"][remote]
        local = folder / entry["local"]
        sha = entry["digest"] if entry["algorithm"] == "sha256" else None
        f = hub.RemoteFile(remote, entry["size"], sha, None if sha else entry["digest"])
        if not local.is_file():
            problem = "is missing"
        elif local.stat().st_size != local_size(entry):
            problem = "has the wrong size"
        elif "local_sha256" in entry and sha256_of(local) != entry["local_sha256"]:
            problem = "does not match the sha256 recorded when it was converted"
        elif "local_sha256" not in entry and hub.file_digest(local, f) != entry["digest"]:
            problem = f"does not match its {entry['algorithm']}"
        else:
            continue
        bad.add(remote)
        problems.append(f"{entry['local']} {problem} (deleted: the next download fetches it)")
    if bad:
        for remote in bad:
            (folder / manifest["files"].pop(remote)["local"]).unlink(missing_ok=True)
        for name in [n for n, ps in manifest["features"].items() if bad & set(ps)]:
            manifest["features"].pop(name)
        write_manifest(folder, manifest)
    return VerifyResult(feature, str(folder), len(paths), problems)


def _verified_paths(folder: Path, manifest: dict[str, Any], files: Iterable[Any]) -> set[str]:
    """Repository paths recorded as verified whose file is still in place at the listed size."""
    out: set[str] = set()
    for f in files:
        entry = manifest["files"].get(f.path)
        local = folder / f.local_name
        if (
            entry is not None
            and entry["size"] == f.size
            and entry["digest"] == f.expected[1]
            and local.is_file()
            and local.stat().st_size == local_size(entry)
        ):
            out.add(f.path)
    return out


def _parts(folder: Path) -> list[Path]:
    return list(folder.rglob("*.part")) if folder.is_dir() else []


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def wanted_files(snapshot: Path, source: Source) -> list[Path]:
    """The files of a diffusers folder ``source`` needs (fp16 safetensors preferred)."""
    wanted: list[Path] = []
    if source.model_index:
        wanted.append(snapshot / "model_index.json")
    for part in source.components:
        sub = snapshot / part if part else snapshot
        fp16 = sorted(sub.glob("*.fp16.safetensors"))
        plain = sorted(p for p in sub.glob("*.safetensors") if p.suffixes == [".safetensors"])
        wanted += sorted(sub.glob("*.json")) + sorted(sub.glob("*.txt")) + (fp16 or plain)
    return wanted


def link_tree(snapshot: Path, folder: Path, source: Source) -> None:
    """Hard links (symlinks across disks) of the snapshot's needed files, under plain names."""
    for src in wanted_files(snapshot, source):
        relative = str(src.relative_to(snapshot)).replace(".fp16.safetensors", ".safetensors")
        dest = folder / relative
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = src.resolve()
        try:
            os.link(real, dest)
        except OSError:
            dest.symlink_to(real)
