"""The walk behind every job: paths the system cannot open, links that lead nowhere, and names
that say what a left-out file is."""

from __future__ import annotations

import inspect
import io
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from spdesk.core.discovery import DiscoveryOptions, discover
from tests import protect_samples as samples

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX paths, links and limits")
_LONG_NAME = 240  # bytes: a folder name every file system allows


def refuse_listing(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    """Make the walk's listing of ``locked`` fail as without read permission (the tests may
    run as root, whom ``chmod 000`` does not stop)."""
    scandir = os.scandir

    def refuse(folder: Path) -> object:
        if Path(folder) == locked:
            raise PermissionError(13, "Permission denied", str(folder))
        return scandir(folder)

    monkeypatch.setattr("spdesk.core.discovery.os.scandir", refuse)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(samples.photo_array()).save(buffer, "JPEG")
    return buffer.getvalue()


def deep_folder(root: Path, length: int) -> tuple[Path, int]:
    """A chain of long folder names below ``root`` whose path is ``length`` bytes, made
    through open folders (a path that long cannot be given to the system); returns it and an
    open descriptor of its last folder."""
    fd = os.open(root, os.O_RDONLY)
    path = root
    while (room := length - len(os.fsencode(path)) - 1) > 0:
        size = room if room <= _LONG_NAME else min(_LONG_NAME, room - _LONG_NAME // 2)
        name = "D" * size
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd, path = inner, path / name
    assert len(os.fsencode(path)) == length
    return path, fd


def write_at(fd: int, name: str, data: bytes) -> None:
    handle = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    try:
        os.write(handle, data)
    finally:
        os.close(handle)


@posix_only
@pytest.mark.parametrize("follow_symlinks", [False, True])
def test_a_folder_too_deep_to_open_is_left_out_and_the_rest_is_walked(
    tmp_path: Path, follow_symlinks: bool
) -> None:
    root = tmp_path / "in"
    samples.photo(root / "ok.jpg")
    deep, fd = deep_folder(root, 5000)
    write_at(fd, "lost.jpg", jpeg_bytes())
    os.close(fd)
    options = DiscoveryOptions(follow_symlinks=follow_symlinks, output_marker="marker")
    found = discover([root], options)
    assert [p.path for p in found.photos] == [root / "ok.jpg"]
    # Unreadable, as a folder that cannot be listed: its photos are missing, not left out.
    (too_deep,) = found.unreadable
    assert deep.is_relative_to(too_deep.path) and too_deep.folder
    assert "path too long" in too_deep.reason and too_deep.hint.startswith("Move it")
    assert not [s for s in found.skipped if "too long" in s.reason]


@posix_only
@pytest.mark.parametrize("follow_symlinks", [False, True])
@pytest.mark.parametrize(("folder_length", "name"), [(3900, "p" * 200 + ".jpg"), (4090, "a.jpg")])
def test_a_file_whose_path_is_too_long_to_open_is_left_out_with_why(
    tmp_path: Path, follow_symlinks: bool, folder_length: int, name: str
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    deep, fd = deep_folder(root, folder_length)
    write_at(fd, name, jpeg_bytes())
    os.close(fd)
    # The folder is checked for an output folder's marker, a path past the limit at 4090.
    options = DiscoveryOptions(follow_symlinks=follow_symlinks, output_marker="marker")
    found = discover([root], options)
    assert not found.photos and not found.unreadable
    (skipped,) = found.skipped
    assert skipped.path == deep / name and "path too long" in skipped.reason


@posix_only
def test_a_named_input_whose_path_is_too_long_is_left_out_not_a_crash(tmp_path: Path) -> None:
    named = tmp_path / "/".join(["n" * _LONG_NAME] * 20) / "a.jpg"
    found = discover([named])
    assert not found.photos and not found.missing
    (skipped,) = found.skipped
    assert skipped.path == named and "path too long" in skipped.reason


def test_a_walk_does_not_recurse_per_folder_level(tmp_path: Path) -> None:
    root = deep = tmp_path / "in"
    deep.mkdir()
    for _ in range(300):
        deep /= "a"
        deep.mkdir()
    samples.photo(deep / "x.jpg")
    limit = sys.getrecursionlimit()
    # Fewer frames left than folder levels: a walk that recurses per level (os.walk before
    # Python 3.12) fails on a deep enough tree, whatever the limit.
    sys.setrecursionlimit(len(inspect.stack(0)) + 150)
    try:
        found = discover([root])
    finally:
        sys.setrecursionlimit(limit)
        _remove_chain(deep / "x.jpg", root)  # shutil.rmtree recurses too (Python 3.11)
    assert [p.path for p in found.photos] == [deep / "x.jpg"]


def _remove_chain(path: Path, root: Path) -> None:
    path.unlink()
    while path.parent != root.parent:
        path = path.parent
        path.rmdir()


@posix_only
def test_a_broken_link_followed_is_left_out_naming_its_target(tmp_path: Path) -> None:
    root = tmp_path / "in"
    samples.photo(root / "ok.jpg")
    (root / "gone.jpg").symlink_to("elsewhere/missing.jpg")
    found = discover([root], DiscoveryOptions(follow_symlinks=True))
    assert [p.path.name for p in found.photos] == ["ok.jpg"]
    (skipped,) = found.skipped
    assert skipped.reason == "broken symbolic link (points to elsewhere/missing.jpg)"


@posix_only
def test_a_followed_link_to_a_photo_of_the_folder_leaves_the_photo_its_own_name(
    tmp_path: Path,
) -> None:
    """A link sorting before the photo it points to took the photo's place: the copy was named
    after the link, and the photo itself was listed nowhere."""
    root = tmp_path / "in"
    samples.photo(root / "tench.jpg")
    (root / "a_link.jpg").symlink_to("tench.jpg")
    (root / "z_link.jpg").symlink_to("tench.jpg")
    found = discover([root], DiscoveryOptions(follow_symlinks=True))
    assert [p.path.name for p in found.photos] == ["tench.jpg"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    photo = str(root / "tench.jpg")
    assert reasons == {
        "a_link.jpg": f"the same photo as {photo} (protected once)",
        "z_link.jpg": f"the same photo as {photo} (protected once)",
    }
    twice = discover([root / "tench.jpg", root / "tench.jpg"])  # one path given twice
    assert [p.path.name for p in twice.photos] == ["tench.jpg"] and not twice.skipped


def test_a_file_named_on_its_own_is_taken_unless_it_is_an_output(tmp_path: Path) -> None:
    """Named files are taken whatever their content or name, but not spdesk's outputs: by
    the manifest's record, or by the output name when nothing recorded them."""
    for name in ("a.jpg", "a.protected.jpg", "b.safe.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(jpeg_bytes() if name != "notes.txt" else b"text")
    options = DiscoveryOptions(
        is_output_name=lambda name: name.endswith(".protected.jpg"),
        is_recorded_output=lambda path: path.name == "b.safe.jpg",
    )
    found = discover(sorted(tmp_path.iterdir()), options)
    assert [p.path.name for p in found.photos] == ["a.jpg", "notes.txt"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["a.protected.jpg"].startswith("named like an spdesk output")
    assert "left out" not in reasons["a.protected.jpg"]  # said after "left out NAME:" already
    assert reasons["b.safe.jpg"].startswith("an output of an earlier spdesk run")
    assert [p.path.name for p in discover(sorted(tmp_path.iterdir())).photos] == [
        "a.jpg", "a.protected.jpg", "b.safe.jpg", "notes.txt"
    ]  # fmt: skip


def test_only_real_sidecars_are_called_sidecars(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for name in ("a.xmp", "b.aae", "c.pp3", "notes.txt", "data.json", "page.xml"):
        (root / name).write_text("not an image")
    reasons = {s.path.name: s.reason for s in discover([root]).skipped}
    assert all("sidecar" in reasons[name] for name in ("a.xmp", "b.aae", "c.pp3"))
    for name in ("notes.txt", "data.json", "page.xml"):
        assert "sidecar" not in reasons[name] and reasons[name].endswith("not a photo")


def test_a_model_or_pattern_file_in_a_folder_is_not_a_photo_whatever_its_bytes(
    tmp_path: Path,
) -> None:
    """A PNG named grey.safetensors in the training photos was trained on as a photo (found
    by content), and would be protected into a ".safetensors" copy; a real pattern file beside
    it was left out as "its content is not JPEG, PNG...". Either is a pattern or model file."""
    root = tmp_path / "in"
    samples.photo(root / "grey.safetensors", fmt="PNG")
    (root / "pattern.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    samples.photo(root / "model.ckpt", fmt="PNG")
    samples.photo(root / "renamed.png", fmt="JPEG")  # a photo with another extension: a photo
    found = discover([root])
    assert [p.path.name for p in found.photos] == ["renamed.png"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["grey.safetensors"] == "a pattern or model file (.safetensors), not a photo"
    assert reasons["pattern.safetensors"] == reasons["grey.safetensors"]
    assert reasons["model.ckpt"] == "a model file (.ckpt), not a photo"


def test_folders_left_out_are_marked_as_folders(tmp_path: Path) -> None:
    root = tmp_path / "in"
    samples.photo(root / ".hidden" / "a.jpg")
    samples.photo(root / "@eaDir" / "b.jpg")
    (root / "notes.txt").write_text("not a photo")
    samples.photo(tmp_path / "elsewhere" / "c.jpg")
    (root / "link").symlink_to(tmp_path / "elsewhere")  # a folder, by a link not followed
    kinds = {s.path.name: s.folder for s in discover([root]).skipped}
    assert kinds == {".hidden": True, "@eaDir": True, "notes.txt": False, "link": True}


@posix_only
@pytest.mark.parametrize("follow_symlinks", [False, True])
@pytest.mark.parametrize("second", ["in", "link"])
def test_a_folder_reached_twice_lists_what_it_leaves_out_once(
    tmp_path: Path, follow_symlinks: bool, second: str
) -> None:
    root = tmp_path / "in"
    samples.photo(root / "a.jpg")
    (root / "notes.txt").write_text("not a photo")
    samples.photo(root / ".hidden" / "b.jpg")
    (root / "to-a.jpg").symlink_to("a.jpg")  # a link not followed is an entry of its own
    (root / "also-to-a.jpg").symlink_to("a.jpg")
    (tmp_path / "link").symlink_to("in")
    options = DiscoveryOptions(follow_symlinks=follow_symlinks)
    found = discover([root, tmp_path / second], options)
    assert [p.path for p in found.photos] == [root / "a.jpg"]
    left_out = sorted(s.path.name for s in found.skipped)
    # links are left out either way: not followed, or followed to a photo met anyway
    assert left_out == sorted([".hidden", "notes.txt", "also-to-a.jpg", "to-a.jpg"])


@posix_only
def test_a_special_file_named_twice_is_listed_once(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    found = discover([pipe, pipe])
    assert [s.path for s in found.skipped] == [pipe]


def test_an_unreadable_folder_named_twice_is_listed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    refuse_listing(monkeypatch, locked)
    found = discover([locked, locked])
    assert [s.path for s in found.unreadable] == [locked]


@posix_only
def test_a_named_input_too_long_named_twice_is_listed_once(tmp_path: Path) -> None:
    named = tmp_path / "/".join(["n" * _LONG_NAME] * 20) / "a.jpg"
    found = discover([named, named])
    assert [s.path for s in found.skipped] == [named]
