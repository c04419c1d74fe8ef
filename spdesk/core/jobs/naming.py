"""Output names for one run of a job: each photo's planned name, and taken names by policy.

Names are planned in job order (so the same inputs always get the same names) and given only
when a complete temporary file is published. Two photos of one run never share a name, not even
one that differs only in case or Unicode normalisation (one file on exFAT, macOS, Windows); a name
that exists already is skipped, replaced (the "overwrite" policy) or stepped past (``-2``,
``-3``... for "unique"). The photo's own earlier output, changed since spdesk wrote it (cut
short, edited, or another file put in its place), is never replaced (it may hold the user's
edits): it is skipped or stepped past like a file spdesk did not write, and the photo's note or
skip reason says so. A name longer than the file system allows is shortened, keeping its start,
suffix and extension plus a hash of the source's name, so it stays unique and the same on every
run (the manifest records it); so is a ``-2`` name that would pass the limit, keeping its number.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spdesk.core.errors import OutputError, OutputExistsError
from spdesk.core.export import ExportOptions, output_format, output_name, unique_candidates
from spdesk.core.files import folded, name_bytes, shown, truncate_name
from spdesk.core.stores import FolderStore, Store

_HASH_CHARS = 8
_UNIQUE_ROOM = 6  # bytes kept free in a shortened name for "-2" ... "-99999"


@dataclass(frozen=True)
class Target:
    """Where a photo's output goes: ``path``, whether it may replace a file there, and whether
    the name is taken already (under the "skip" policy: the photo is skipped)."""

    path: Path
    replace: bool = False
    taken: bool = False
    notes: tuple[str, ...] = ()
    foreign: bool = False  # taken by a file spdesk did not write (never replaced)
    existing: bool = False  # the name held a file when it was planned ("unique", "overwrite")
    owner: str = ""  # the photo's key: names kept for it (see OutputNamer.keep) are its own
    # "unique": the name first planned, which held a file. If that file holds this photo's very
    # bytes, it is this photo's output whose record was lost (a manifest cut mid-line): adopted,
    # not written again under the next name.
    maybe_ours: Path | None = None
    # The format the output is written in, decided with its name (a HEIC with transparency
    # becomes a PNG only when its name says so); "" for a placeholder.
    format: str = ""
    # The name holds this photo's own earlier output, changed since spdesk wrote it (cut short,
    # edited, or another file put there): left as it is, like any file spdesk did not write (it
    # may hold the user's edits), and the photo's note or skip reason says so.
    changed: bool = False
    # The photo's intact copy from an earlier run and how it was made ("made with other
    # settings"): a new copy published under another name says it is kept beside it.
    earlier: tuple[Path, str] | None = None

    def notes_once_published(self, published: Path) -> tuple[str, ...]:
        """Why a copy published at ``published`` did not get the name first planned: the
        photo's earlier copy stays there, or another file holds it (the user's, or a copy
        of another photo's or of this one's whose record is gone: said of none of them)."""
        if self.earlier is not None and self.earlier[0] != published:
            path, made = self.earlier
            return (
                f"the copy {made}, {shown(path.name)}, stays as it is; this one is "
                f"{shown(published.name)}",
            )
        taken = self.maybe_ours
        if self.earlier is None and taken is not None and taken != published:
            return (
                f"{shown(taken.name)} was there already: left as it is, this copy is "
                f"{shown(published.name)}",
            )
        return ()


class RunNames:
    """The names given in one run, told apart as a disk that ignores case and Unicode
    normalisation would (exFAT, FAT, macOS, Windows hold ``A.jpg`` and ``a.jpg`` as one file)."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._folded: set[str] = set()

    def add(self, path: Path) -> None:
        self._paths.add(path)
        self._folded.add(folded(str(path)))

    def update(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.add(path)

    def __contains__(self, path: object) -> bool:
        """Whether a name given holds ``path`` on some disk."""
        return isinstance(path, Path) and folded(str(path)) in self._folded

    def given(self, path: Path) -> bool:
        """Whether ``path`` itself, spelled so, was given."""
        return path in self._paths


class OutputNamer:
    """Plans and gives output names for one run.

    Args:
        root: the output folder.
        export: the export options (format and suffix decide the name).
        policy: "skip", "unique" or "overwrite" (see ``ProtectSettings.collision``).
        wrote: whether an existing file is one spdesk wrote and nobody changed since (the
            manifest's proof, :meth:`~spdesk.core.manifest.Manifest.wrote`); "overwrite"
            replaces only those. None (a distributed writer publishing names its driver
            planned with the proof) skips the check made again just before replacing.
        inputs: where the photos are read from (their format decides the names' extensions).
        outputs: where the outputs go (a folder, or an object store).
    """

    def __init__(
        self,
        root: Path,
        export: ExportOptions,
        policy: str,
        wrote: Callable[[Path], bool] | None = None,
        *,
        inputs: Store | None = None,
        outputs: Store | None = None,
    ) -> None:
        self.root = root
        self.inputs = inputs or FolderStore()
        self.outputs = outputs or FolderStore()
        self.export = export
        self.policy = policy
        self.wrote = wrote
        self.written = RunNames()  # names of this run: never replaced by a sibling
        self.kept: dict[Path, str] = {}  # earlier runs' outputs -> the key of their photo
        self._kept_for: dict[str, set[str]] = {}  # the same, folded -> the keys of their photos

    def plan(
        self,
        source: Path,
        relative: Path,
        source_format: str = "",
        owner: str = "",
        *,
        alpha: bool = False,
        changed: Path | None = None,
    ) -> Target:
        """The output for ``source`` (at ``relative`` below the inputs), reserved for it.
        ``source_format``: its format by content, when already read (else it is sniffed);
        ``owner``: the photo's key (names kept for it are its own); ``alpha``: its header
        says it holds transparency; ``changed``: its own earlier output, which no longer holds
        what spdesk wrote (the manifest's proof): left as it is, and the target says why."""
        fmt = source_format or self._sniff(source)
        target = self._plan(relative, fmt, owner, alpha, changed)
        if not target.taken:
            self.written.add(target.path)  # a later photo of this run gets another name
        return target

    def keep(self, outputs: dict[Path, str]) -> None:
        """Keep earlier runs' outputs (path -> the key of the photo they hold) from every other
        photo of this run, before any name is planned: a photo finished before is skipped and
        keeps its output, and another photo mapping to that name gets the next free one, never
        replacing it (a photo added since, or one redone after a cut-short run)."""
        self.kept.update(outputs)
        for path, owner in outputs.items():
            self._kept_for.setdefault(folded(str(path)), set()).add(owner)

    def _free(self, path: Path, owner: str) -> bool:
        """Whether ``owner``'s photo may take ``path``: not given in this run, not kept for
        another photo, in any case or normalisation. The photo's own earlier output keeps its
        very name (beside another photo's in another case, written on a disk that allowed it)."""
        if self.kept.get(path) == owner:
            return not self.written.given(path)
        return path not in self.written and owner in self._kept_for.get(folded(str(path)), {owner})

    def _untaken(self, path: Path, owner: str) -> bool:
        """Free for ``owner`` and holding no file: a name to plan, whichever engine publishes."""
        return self._free(path, owner) and not self.outputs.exists(path)

    def _sniff(self, source: Path) -> str | None:
        try:
            return self.inputs.sniff(source)
        except OSError:
            return None

    def _plan(
        self,
        relative: Path,
        source_format: str | None,
        owner: str,
        alpha: bool,
        changed: Path | None = None,
    ) -> Target:
        if source_format is None:  # read_image will name the problem; plan a placeholder
            return Target(self.root / relative, owner=owner)
        fmt = output_format(source_format, self.export, alpha=alpha)
        name = output_name(relative.name, fmt, self.export.suffix)
        notes: tuple[str, ...] = ()
        limit = self.outputs.name_max(self.root)
        shortening = (f"output name shortened to fit the file system ({limit} bytes at most)",)
        if name_bytes(name) > limit:
            name = _shortened(name, relative.name, self.export.suffix, limit - _UNIQUE_ROOM)
            notes = shortening
        path = planned = self.root / relative.parent / name
        if not self._free(path, owner):  # two photos map to one name: keep both
            path = next(c for c in self._candidates(path) if self._free(c, owner))
            notes = notes or _cut(path, planned, shortening)
            # Else only the manifest tells a.JPG's copy from a.jpg's (or a.png's, --format).
            notes = (
                *notes,
                f"{shown(planned.name)} holds another photo's copy: this is {shown(path.name)}",
            )
        if not self.outputs.exists(path):  # the policy decides for the name it lands on
            return Target(path, notes=notes, owner=owner, format=fmt)
        if path == changed:  # this photo's copy, changed since: never replaced, never silent
            return self._beside_changed(path, notes, owner, fmt)
        if self.policy == "skip":
            return Target(path, taken=True, owner=owner, format=fmt)
        if self.policy == "unique":  # the next name free here too, settled in job order
            taken = path
            path = next(c for c in self._candidates(path) if self._untaken(c, owner))
            notes = notes or _cut(path, planned, shortening)
            return Target(path, notes=notes, owner=owner, maybe_ours=taken, format=fmt)
        if self.policy == "overwrite" and not (self.wrote is not None and self.wrote(path)):
            return Target(path, taken=True, foreign=True, owner=owner, format=fmt)
        replace = self.policy == "overwrite"
        return Target(path, replace=replace, notes=notes, existing=True, owner=owner, format=fmt)

    def _beside_changed(
        self, changed: Path, notes: tuple[str, ...], owner: str, fmt: str
    ) -> Target:
        """The photo's own earlier copy ``changed`` holds its name but no longer what spdesk
        wrote: "unique" gives the new copy the next free name, the other policies skip the
        photo, each saying why."""
        if self.policy != "unique":
            return Target(changed, taken=True, foreign=True, owner=owner, format=fmt, changed=True)
        path = next(c for c in self._candidates(changed) if self._untaken(c, owner))
        note = (
            f"the earlier copy {shown(changed.name)} had changed since spdesk wrote it: left as "
            f"it is, this copy is {shown(path.name)}"
        )
        return Target(path, notes=(*notes, note), owner=owner, format=fmt, changed=True)

    def publish(self, temp: Path, target: Target) -> Path:
        """Give the complete temporary file its planned name (or the next free one)."""
        unique = self.policy == "unique"
        if target.maybe_ours is not None and self._free(target.maybe_ours, target.owner):
            try:  # only if it holds these very bytes: nothing is replaced
                self.outputs.publish(temp, target.maybe_ours, replace=False, idempotent=True)
            except OutputExistsError:
                pass
            else:
                self.written.add(target.maybe_ours)
                return target.maybe_ours
        for candidate in self._candidates(target.path) if unique else iter([target.path]):
            if candidate != target.path and not self._free(candidate, target.owner):
                continue  # another photo has (or will have) that name
            replace = target.replace and self._still_ours(candidate)
            # A name planned free that now holds these very bytes is this photo's, published by
            # an earlier try of its batch (a Ray retry): published. Never for a taken name.
            idempotent = candidate == target.path and not target.existing
            try:
                self.outputs.publish(temp, candidate, replace=replace, idempotent=idempotent)
            except OutputExistsError:
                if unique:
                    continue
                raise
            self.written.add(candidate)
            return candidate
        raise OutputError(f"No free output name for {shown(target.path.name)}.")

    def _candidates(self, path: Path) -> Iterator[Path]:
        """``path``, then the ``-2``, ``-3``... names of its unnumbered form, each one past the
        name limit shortened like a long name, keeping suffix and number (a hash of the name
        keeps it unique and the same on every run). A numbered ``path`` is numbered again from
        its base: ``X.protected-2.jpg`` taken, it was ``X.protected-2-2.jpg``, a name no scan
        knew as spdesk's, so such copies were protected again as photos."""
        limit = self.outputs.name_max(self.root)
        base = _unnumbered(path, self.export.suffix)
        suffix = self.export.suffix if base.stem.endswith(self.export.suffix) else ""
        yield path
        for candidate in unique_candidates(base):
            if name_bytes(candidate.name) > limit:
                number = candidate.stem[len(base.stem) :]  # "-2"
                name = _shortened(candidate.name, base.name, suffix + number, limit)
                candidate = candidate.with_name(name)
            if candidate != path:
                yield candidate

    def _still_ours(self, path: Path) -> bool:
        """Checked again just before replacing: the file may have changed since planning."""
        return self.wrote is None or not self.outputs.exists(path) or self.wrote(path)


def _unnumbered(path: Path, suffix: str) -> Path:
    """``path`` without the ``-2`` (or ``-2-3``, from before) that a unique name added after
    ``suffix``."""
    numbered = re.fullmatch(rf"(.*{re.escape(suffix)})(?:-\d+)+", path.stem)
    return path.with_name(numbered.group(1) + path.suffix) if numbered else path


def _cut(path: Path, planned: Path, notes: tuple[str, ...]) -> tuple[str, ...]:
    """``notes`` if ``path``, a numbered name for ``planned``, was shortened to fit."""
    return () if path.name.startswith(planned.stem) else notes


def _shortened(name: str, source_name: str, suffix: str, limit: int) -> str:
    """``STEM<suffix>.EXT`` cut to ``limit`` bytes: the start of STEM, a hash of the source's
    name (unique, the same on every run), then the suffix and extension unchanged."""
    ending = suffix + Path(name).suffix
    stem = name[: len(name) - len(ending)]
    mark = f"~{hashlib.sha256(os.fsencode(source_name)).hexdigest()[:_HASH_CHARS]}"
    return truncate_name(stem, limit - name_bytes(mark + ending)) + mark + ending
