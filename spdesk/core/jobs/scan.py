"""What a job would protect: its inputs walked into photos (in job order) and what is left out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from spdesk.core.discovery import (
    Discovery,
    DiscoveryOptions,
    InputPhoto,
    SkippedInput,
    content_reason,
)
from spdesk.core.errors import ImageError, OutputError
from spdesk.core.events import CancelToken
from spdesk.core.export import output_name_pattern
from spdesk.core.files import LOCK_NAME
from spdesk.core.formats import HEAD_BYTES, sniff, sniff_file
from spdesk.core.geometry import too_small_to_protect
from spdesk.core.imageio import (
    DEFAULT_MAX_PIXELS,
    PhotoHeader,
    read_error,
    read_header,
    read_header_from,
)
from spdesk.core.jobs.settings import ProtectSettings
from spdesk.core.manifest import MANIFEST_NAME, SHARDS_FOLDER
from spdesk.core.stores import FolderStore, Store


def scan_inputs(
    paths: Sequence[Path],
    settings: ProtectSettings | None = None,
    output_root: Path | None = None,
    cancel: CancelToken | None = None,
    store: Store | None = None,
    sniffer: Callable[[Path], str | None] = sniff_file,
) -> Discovery:
    """Photos a job would protect (in job order) and the non-photos it leaves out, with why.

    ``cancel`` is checked between files (the walk raises ``Cancelled``); ``store`` is where the
    inputs are (a folder by default, or an object store); ``sniffer`` tells a walked file's
    format (see :class:`~spdesk.core.discovery.DiscoveryOptions`)."""
    settings = settings or ProtectSettings()
    store = store or FolderStore()
    pattern = output_name_pattern(settings.suffix)
    # A folder's files are told apart by their real paths (links resolved), objects by name.
    identity = os.path.realpath if isinstance(store, FolderStore) else str
    recorded = {identity(p) for p in _recorded_outputs(store, output_root, paths)}
    options = DiscoveryOptions(
        follow_symlinks=settings.follow_symlinks,
        is_output_name=lambda name: pattern.fullmatch(name) is not None,
        is_recorded_output=(lambda path: identity(path) in recorded) if recorded else None,
        output_marker=MANIFEST_NAME,
        lock_name=LOCK_NAME,
        shards_folder=SHARDS_FOLDER,
        exclude=(output_root,) if output_root is not None else (),
        cancel=cancel,
        sniff=sniffer,
    )
    return store.discover([Path(p) for p in paths], options)


def _recorded_outputs(store: Store, output_root: Path | None, inputs: Sequence[Path]) -> set[Path]:
    """The outputs the output folder's manifest and shards record (whatever the suffix they
    were written with), when an input folder holds that folder (protecting in place) or an
    input lies in it (a photo named there: ``spdesk protect *.jpg --out .``): they are never
    inputs.

    An input lies in it when its folder does (or it is the output folder, which the first
    test finds): each named photo is examined once, and only its folder, once for all the
    photos named in it, is resolved against the output folder (``spdesk protect *.jpg``
    names thousands of photos of one folder, and each check resolved a path)."""
    if output_root is None:
        return set()
    named = [Path(p) for p in inputs]
    holds_it = any(store.within(output_root, path) for path in named)
    # A link's folder is its target's (a link to a copy in the output folder is no input).
    folders = {Path(os.path.realpath(p)).parent if os.path.islink(p) else p.parent for p in named}
    if holds_it or any(store.within(folder, output_root) for folder in folders):
        try:
            return store.manifest(output_root).recorded_outputs()
        except OutputError:  # a newer spdesk's record, which a job refuses: the photos are
            return set()  # still listed, leaving out the output folder and its copies' names
    return set()


def discover_inputs(paths: Sequence[Path], cancel: CancelToken | None = None) -> list[Path]:
    """The photos a job would protect for ``paths`` (files and folders), in job order."""
    return [photo.path for photo in scan_inputs(paths, cancel=cancel).photos]


def header_problems(
    photos: Sequence[Path],
    cancel: CancelToken | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[Path, ImageError]:
    """The photos a job will fail from their header alone, each with the error the job will
    report for it (an empty, damaged or unsupported file, one too large), so a queue can say
    so before the run. Only headers are read: damaged pixel data is found by the job."""
    headers = HeaderScan(max_pixels)
    problems: dict[Path, ImageError] = {}
    for path in photos:
        if cancel is not None:
            cancel.check()
        error = headers.read(Path(path))
        if error is not None:
            problems[path] = error
    return problems


@dataclass(frozen=True)
class PhotoScan:
    """What :func:`scan_photos` found: the photos in job order, the errors a job will report
    for some of them (by path), the other files it leaves out, with why, and what it could
    not look into: folders (or named inputs) that cannot be read, with why, and named inputs
    that are not there (a job fails them: their photos are not protected)."""

    photos: list[Path]
    problems: dict[Path, ImageError]
    left_out: list[SkippedInput]
    unreadable: list[SkippedInput] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)


def scan_photos(
    paths: Sequence[Path],
    cancel: CancelToken | None = None,
    *,
    settings: ProtectSettings | None = None,
    output_root: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PhotoScan:
    """:func:`discover_inputs` and :func:`header_problems` in one pass: each file met in a
    folder is opened once, its first bytes telling whether it is a photo and, while it is
    open, its header whether a job will fail it (on a network folder each open and first read
    is a round trip). A file named on its own, or one the walk could not read, is opened once
    afterwards.

    ``settings`` and ``output_root``: those of the job to come, as :func:`scan_inputs` takes
    them, so that what it will leave out (copies named with its suffix, the outputs its
    output folder's manifest records, that folder itself) is left out here too, with why:
    with the default suffix only, an app protecting into the folder it was given with
    another suffix queued the last run's copies again on each add."""
    headers = HeaderScan(max_pixels)
    discovery = scan_inputs(paths, settings, output_root, cancel=cancel, sniffer=headers.sniff)
    headers.read_unopened(discovery.photos, cancel)
    photos = [p.path for p in discovery.photos]
    problems = {path: error for path in photos if (error := headers.checked[path]) is not None}
    return PhotoScan(
        photos,
        problems,
        list(discovery.skipped),
        list(discovery.unreadable),
        list(discovery.missing),
    )


class HeaderScan:
    """A discovery sniffer that also reads the header of each file discovery will take, with
    the file open once; ``checked`` holds each header's error (None when it reads) and
    ``headers`` each header that reads, so a job need not open the file again for its memory
    budget. Files named on their own are taken unopened: :meth:`read_unopened` reads theirs."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self.checked: dict[Path, ImageError | None] = {}
        self.headers: dict[Path, PhotoHeader] = {}

    def sniff(self, path: Path) -> str | None:
        with path.open("rb") as handle:
            fmt = sniff(handle.read(HEAD_BYTES))
            if content_reason(path.name, fmt) is None:  # taken: a photo by content or name
                handle.seek(0)
                self.checked[path] = self._error(path, handle)
        return fmt

    def read_unopened(
        self, photos: Sequence[InputPhoto], cancel: CancelToken | None = None
    ) -> None:
        """Read the header of each of ``photos`` the walk took without opening it (a file
        named on its own, or one the walk could not read), once."""
        for photo in photos:
            if cancel is not None:
                cancel.check()
            if photo.path not in self.checked:
                self.checked[photo.path] = self.read(photo.path)

    def read(self, path: Path) -> ImageError | None:
        """Open ``path`` and read its header (kept in ``headers``); the error a job will
        report for it, or None."""
        try:
            self.headers[path] = read_header(path, max_pixels=self.max_pixels)
        except ImageError as error:
            return error
        return header_refusal(self.headers[path], path)

    def errors(self, photos: Sequence[InputPhoto]) -> dict[Path, ImageError]:
        """Those of ``photos`` whose header, read during the walk, says a job will fail them,
        each with the error it will report."""
        return {p.path: e for p in photos if (e := self.checked.get(p.path)) is not None}

    def _error(self, path: Path, handle: IO[bytes]) -> ImageError | None:
        try:
            self.headers[path] = read_header_from(handle, path, max_pixels=self.max_pixels)
        except ImageError as error:
            return error
        except OSError as error:
            return read_error(path, error)
        return header_refusal(self.headers[path], path)


def header_refusal(header: PhotoHeader, path: Path) -> ImageError | None:
    """Why a job refuses a photo its header reads for, or None: too small to protect."""
    return too_small_to_protect(header.width, header.height, path.name)


def relative_paths(photos: list[InputPhoto], base: Path | None = None) -> list[Path]:
    """Each photo's path below the output folder: relative to the inputs' common folder.

    ``base``: a folder the caller keeps across jobs (the app keeps its queue's first one, so a
    folder added later does not move the copies of the first into a new layout). Photos below
    it mirror below it; the others below their own common folder, inside a folder of its name.
    """
    if base is None:
        return _below_common_folder(photos)
    base_path = os.path.abspath(base)
    inside = [_is_below(p.path, base_path) for p in photos]
    others = [p for p, below in zip(photos, inside, strict=True) if not below]
    elsewhere = iter(_below_common_folder(others, named=True, beside=base_path))
    return [
        Path(os.path.relpath(os.path.abspath(p.path), base_path)) if below else next(elsewhere)
        for p, below in zip(photos, inside, strict=True)
    ]


def _below_common_folder(
    photos: list[InputPhoto], *, named: bool = False, beside: str = ""
) -> list[Path]:
    """Paths relative to the photos' common folder; ``named``: inside a folder of its name,
    one that the folder ``beside`` (the kept base) does not hold already."""
    roots = [os.path.abspath(p.root) for p in photos]
    try:
        base = os.path.commonpath(roots) if roots else ""
    except ValueError:  # different drives (Windows): mirror below each photo's own folder
        return [Path(p.path.name) for p in photos]
    folder = Path(_free_folder_name(base, beside)) if named else Path()
    return [folder / os.path.relpath(os.path.abspath(p.path), base) for p in photos]


def _free_folder_name(folder: str, beside: str) -> str:
    """``folder``'s name, or one naming its parent too (``Holiday (Elsewhere)``), or numbered,
    that ``beside`` does not hold: ``Elsewhere/Holiday`` added to a queue whose base holds
    ``Holiday`` had its copies numbered into the base's ``Holiday`` copies, each beach photo's
    copy beside the other's, with nothing to tell them apart."""
    name = os.path.basename(folder)
    parent = os.path.basename(os.path.dirname(folder))
    candidates = [name, f"{name} ({parent})"] if parent else [name]
    candidates += [f"{name} ({number})" for number in range(2, 1000)]
    for candidate in candidates:
        if not beside or not os.path.lexists(os.path.join(beside, candidate)):
            return candidate
    return name


def _is_below(path: Path, folder: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), folder]) == folder
    except ValueError:  # another drive
        return False
