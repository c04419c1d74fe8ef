"""What a job would protect: its inputs walked into photos (in job order) and what is left out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from spdesk.core.discovery import Discovery, DiscoveryOptions, InputPhoto
from spdesk.core.errors import ImageError
from spdesk.core.events import CancelToken
from spdesk.core.export import output_name_pattern
from spdesk.core.imageio import DEFAULT_MAX_PIXELS, read_header
from spdesk.core.jobs.settings import ProtectSettings
from spdesk.core.manifest import MANIFEST_NAME
from spdesk.core.stores import FolderStore, Store


def scan_inputs(
    paths: Sequence[Path],
    settings: ProtectSettings | None = None,
    output_root: Path | None = None,
    cancel: CancelToken | None = None,
    store: Store | None = None,
) -> Discovery:
    """Photos a job would protect (in job order) and the non-photos it leaves out, with why.

    ``cancel`` is checked between files (the walk raises ``Cancelled``); ``store`` is where the
    inputs are (a folder by default, or an object store)."""
    settings = settings or ProtectSettings()
    pattern = output_name_pattern(settings.suffix)
    options = DiscoveryOptions(
        follow_symlinks=settings.follow_symlinks,
        is_output_name=lambda name: pattern.fullmatch(name) is not None,
        output_marker=MANIFEST_NAME,
        exclude=(output_root,) if output_root is not None else (),
        cancel=cancel,
    )
    return (store or FolderStore()).discover([Path(p) for p in paths], options)


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
    problems: dict[Path, ImageError] = {}
    for path in photos:
        if cancel is not None:
            cancel.check()
        try:
            read_header(Path(path), max_pixels=max_pixels)
        except ImageError as error:
            problems[path] = error
    return problems


def relative_paths(photos: list[InputPhoto]) -> list[Path]:
    """Each photo's path relative to the inputs' common folder (mirrored in the output)."""
    roots = [os.path.abspath(p.root) for p in photos]
    try:
        base = os.path.commonpath(roots) if roots else ""
    except ValueError:  # different drives (Windows): mirror below each photo's own folder
        return [Path(p.path.name) for p in photos]
    return [Path(os.path.relpath(os.path.abspath(p.path), base)) for p in photos]


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents
