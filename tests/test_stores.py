"""The storage seam: a folder and object stores (fsspec) give a job the same four steps.

Every test runs on four stores: a local folder (:class:`FolderStore`), fsspec's in-memory file
system (an object store with conditional writes, like S3 and GCS), a pyarrow file system
(``SubTreeFileSystem`` over a temporary folder, through fsspec's ``ArrowFSWrapper``: what Ray
Data uses) and S3 itself, through s3fs, on moto's local S3 server (``tests/s3_server.py``). No
network: real S3 and GCS were not tested.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import itertools
import json
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from spdesk.core.errors import (
    ConfigError,
    ImageError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
)
from spdesk.core.export import check_written, output_format, output_name, prepare, write_temp
from spdesk.core.imageio import read_image
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.jobs.events import JobReport, SkipReason
from spdesk.core.jobs.protector import build_protector, protect_photo
from spdesk.core.manifest import MANIFEST_NAME, SHARDS_FOLDER, SourceIds, read_job_manifest
from spdesk.core.perturbation import load_perturbation
from spdesk.core.stores import FolderStore, FsspecStore, Store, open_store
from tests import protect_samples as samples
from tests.s3_server import new_bucket, s3_server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fsspec") is None or importlib.util.find_spec("pyarrow") is None,
    reason="fsspec and pyarrow are not installed (spdesk's [ray] extra, in the test extra)",
)

_memory_roots = itertools.count()


@dataclass
class Place:
    """A store, a root inside it, and how a test puts and reads raw bytes there."""

    store: Store
    root: str
    put: Callable[[str, bytes], None]
    get: Callable[[str], bytes]
    exists: Callable[[str], bool]

    def at(self, relative: str) -> str:
        return posixpath.join(self.root, relative)


def _folder(tmp_path: Path) -> Place:
    root = tmp_path / "store"
    root.mkdir()

    def put(path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    return Place(FolderStore(), str(root), put, lambda p: Path(p).read_bytes(), os_exists)


def os_exists(path: str) -> bool:
    return Path(path).exists()


def _fsspec(fs: object, root: str) -> Place:
    def put(path: str, data: bytes) -> None:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)  # type: ignore[attr-defined]
        fs.pipe_file(path, data)  # type: ignore[attr-defined]

    get = fs.cat_file  # type: ignore[attr-defined]
    return Place(FsspecStore(fs), root, put, get, fs.exists)  # type: ignore[attr-defined]


def _memory(tmp_path: Path) -> Place:
    import fsspec

    return _fsspec(fsspec.filesystem("memory"), f"/spdesk-test-{next(_memory_roots)}")


def _arrow(tmp_path: Path) -> Place:
    import pyarrow.fs
    from fsspec.implementations.arrow import ArrowFSWrapper

    (tmp_path / "arrow").mkdir()
    tree = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "arrow"), pyarrow.fs.LocalFileSystem())
    return _fsspec(ArrowFSWrapper(tree), "bucket")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


def _s3(tmp_path: Path) -> Place:
    import fsspec

    return _fsspec(fsspec.filesystem("s3"), f"{new_bucket()}/root")


@pytest.fixture(params=[_folder, _memory, _arrow, _s3], ids=["folder", "memory", "pyarrow", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param is _s3:
        request.getfixturevalue("s3_endpoint")
    yield request.param(tmp_path)


def _job(place: Place, settings: ProtectSettings, **changes: object) -> ProtectJob:
    """The local engine from ``in`` to ``out`` of the place, through its file system."""
    settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    filesystem = getattr(place.store, "fs", None)
    return ProtectJob([place.at("in")], place.at("out"), settings, filesystem=filesystem)


def _outputs(place: Place, tmp_path: Path) -> dict[str, bytes]:
    """The place's outputs (no manifest), by path below ``out``."""
    if isinstance(place.store, FolderStore):
        root = Path(place.at("out"))
        found = [str(p) for p in root.rglob("*") if p.is_file()]
    else:
        found = place.store.fs.find(place.at("out"))  # type: ignore[attr-defined]
    out = place.at("out")
    relative = {posixpath.relpath(path, out): path for path in found}
    ours = ("spdesk-", ".spdesk")  # the manifest, shards and a folder's lock
    return {r: place.get(p) for r, p in sorted(relative.items()) if not r.startswith(ours)}


def _done_lines_lost(place: Place) -> None:
    """The output folder's manifest as a writer killed after each upload leaves it: every
    "done" line still says "publishing"."""
    manifest = place.at(f"out/{MANIFEST_NAME}")
    lines = [json.loads(line) for line in place.get(manifest).decode().splitlines()]
    for line in lines:
        if line.get("status") == "done":
            line["status"] = "publishing"
    place.put(manifest, "".join(json.dumps(line) + "\n" for line in lines).encode())


def _photo_bytes(tmp_path: Path, name: str = "p.jpg", width: int = 40) -> bytes:
    return samples.photo(tmp_path / "src" / name, width, 24).read_bytes()


def _temp(tmp_path: Path, data: bytes) -> Path:
    temp = tmp_path / "staging" / ".out.spdesk-tmp"
    temp.parent.mkdir(exist_ok=True)
    temp.write_bytes(data)
    return temp


def test_the_photos_of_a_store_are_listed_with_their_size_and_nothing_else(
    place: Place, tmp_path: Path
) -> None:
    photo = _photo_bytes(tmp_path)
    place.put(place.at("a/one.jpg"), photo)
    place.put(place.at("b/two.jpg"), photo + b"tail")
    place.put(place.at("notes.txt"), b"not a photo")
    place.put(place.at(".hidden.jpg"), photo)
    place.put(place.at(f"{SHARDS_FOLDER}/x.jsonl"), b"{}\n")
    listed = place.store.list_photos(place.root)
    relative = [posixpath.relpath(f.path, place.root) for f in listed]
    assert relative == ["a/one.jpg", "b/two.jpg"]
    assert [f.signature.size for f in listed] == [len(photo), len(photo) + 4]


def test_a_photo_read_from_a_store_decodes_as_from_a_file(place: Place, tmp_path: Path) -> None:
    path = samples.gps_jpeg(tmp_path / "gps.jpg")
    place.put(place.at("gps.jpg"), path.read_bytes())
    stored = place.store.read_image(place.at("gps.jpg"))
    local = read_image(path)
    assert np.array_equal(np.asarray(stored.image), np.asarray(local.image))
    assert (stored.source_format, stored.exif, stored.icc_profile) == (
        local.source_format,
        local.exif,
        local.icc_profile,
    )


def test_a_missing_or_damaged_stored_photo_is_a_named_image_error(
    place: Place, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match=r"gone\.jpg"):
        place.store.read_image(place.at("gone.jpg"))
    place.put(place.at("cut.jpg"), _photo_bytes(tmp_path)[:300])
    with pytest.raises(ImageError, match=r"cut\.jpg"):  # as the local engine says it
        place.store.read_image(place.at("cut.jpg"))


def test_publishing_never_replaces_other_bytes_unless_asked(place: Place, tmp_path: Path) -> None:
    target = place.at("out/p.protected.jpg")
    place.store.publish(_temp(tmp_path, b"first"), target)
    assert place.get(target) == b"first"
    other = _temp(tmp_path, b"second")
    with pytest.raises(OutputExistsError):
        place.store.publish(other, target)
    assert place.get(target) == b"first"
    assert other.exists()  # kept, to publish under another name
    place.store.publish(other, target, replace=True)
    assert place.get(target) == b"second"
    assert not other.exists()


def test_publishing_the_same_bytes_again_is_a_no_op(place: Place, tmp_path: Path) -> None:
    """A batch retried after its worker died publishes again what its first try did."""
    target = place.at("p.protected.jpg")
    place.store.publish(_temp(tmp_path, b"same"), target)
    again = _temp(tmp_path, b"same")
    place.store.publish(again, target)
    assert place.get(target) == b"same"
    assert not again.exists()


def test_manifest_shards_of_many_writers_merge_into_a_manifest_the_local_engine_reads(
    place: Place, tmp_path: Path
) -> None:
    ids = SourceIds.of_install()
    named = {ids(source): source for source in ("/a", "/b", "/c", "/d")}

    def line(source: str, status: str, time: float) -> dict[str, object]:
        return {"source": ids(source), "status": status, "time": time, "settings": "s"}

    place.store.write_shard(place.root, "w1", [line("/a", "done", 2.0), line("/b", "failed", 1.0)])
    place.store.write_shard(place.root, "w2", [line("/b", "done", 3.0), line("/c", "done", 1.0)])
    entries = place.store.merge_shards(place.root)
    assert {named[s]: e["status"] for s, e in entries.items()} == {
        "/a": "done",
        "/b": "done",
        "/c": "done",
    }
    assert not place.exists(place.at(f"{SHARDS_FOLDER}/w1.jsonl"))
    copy = tmp_path / "copy" / MANIFEST_NAME  # what a local run reads after copying it down
    copy.parent.mkdir()
    copy.write_bytes(place.get(place.at(MANIFEST_NAME)))
    assert read_job_manifest(copy) == entries
    place.store.write_shard(
        place.root, "w3", [line("/a", "failed", 4.0), line("/d", "failed", 4.0)]
    )
    merged = place.store.merge_shards(place.root)
    # A later failure changed no output: the line proving /a's output stays (as in one file).
    assert (merged[ids("/a")]["status"], merged[ids("/d")]["status"]) == ("done", "failed")


def test_a_photo_protected_from_a_store_into_a_store_has_the_local_engines_bytes(
    place: Place, tmp_path: Path
) -> None:
    """The per-photo step through the seam (read, protect, encode and check in a local
    temporary file, publish) gives the bytes the local engine writes."""
    settings = ProtectSettings(perturbation=samples.perturbation_file(tmp_path), working_size=16)
    (tmp_path / "in").mkdir()
    source = samples.gps_jpeg(tmp_path / "in" / "gps.jpg")
    ProtectJob([tmp_path / "in"], tmp_path / "local", settings).run()
    (expected,) = (p for p in (tmp_path / "local").iterdir() if p.suffix == ".jpg")
    place.put(place.at("in/gps.jpg"), source.read_bytes())

    protector = build_protector(settings, load_perturbation(settings.perturbation))  # type: ignore[arg-type]
    decoded = place.store.read_image(place.at("in/gps.jpg"))
    protected, _figures = protect_photo(protector, decoded, "gps.jpg")
    export = settings.export_options()
    fmt = output_format(decoded.source_format, export)
    name = output_name("gps.jpg", fmt, export.suffix)
    temp, _size = write_temp(prepare(decoded, protected, fmt, export), tmp_path / "stage" / name)
    check_written(temp, decoded.size, tmp_path / "stage" / name)
    place.store.publish(temp, place.at(f"out/{name}"))

    assert name == expected.name
    assert place.get(place.at(f"out/{name}")) == expected.read_bytes()


def test_a_location_opens_the_store_its_scheme_names(tmp_path: Path) -> None:
    store, path = open_store(str(tmp_path))
    assert isinstance(store, FolderStore) and path == str(tmp_path)
    store, path = open_store("memory://bucket/photos")
    assert isinstance(store, FsspecStore) and path == "/bucket/photos"


def _upload(place: Place, local: Path) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        place.put(place.at(f"in/{path.relative_to(local).as_posix()}"), path.read_bytes())


def _mix(root: Path) -> Path:
    """Two photos that want one output name, a subfolder, a non-photo and a damaged photo."""
    samples.photo(root / "a" / "one.jpg", 40, 24)
    samples.photo(root / "a" / "one.png", 40, 24, fmt="JPEG")  # a JPEG: one.protected-2.jpg
    samples.gps_jpeg(root / "gps.jpg")
    (root / "notes.txt").write_text("not a photo")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff damaged")
    return root


def test_the_local_engine_protects_a_store_into_a_store_and_skips_it_all_next_time(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    """Names, collisions, metadata, bytes and per-photo failures as from a folder; the
    manifest the job leaves makes a re-run skip every finished photo."""
    local_in = _mix(tmp_path / "local-in")
    _upload(place, local_in)
    expected = ProtectJob([local_in], tmp_path / "local-out", settings).run()
    report = _job(place, settings).run()
    assert _outputs(place, tmp_path) == {
        p.relative_to(tmp_path / "local-out").as_posix(): p.read_bytes()
        for p in sorted((tmp_path / "local-out").rglob("*.jpg"))
    }
    assert len(report.done) == len(expected.done) == 3
    assert [f.reason for f in report.failed] == [f.reason for f in expected.failed]
    assert [s.reason for s in report.skipped] == [s.reason for s in expected.skipped]

    again = _job(place, settings).run()
    assert not again.done and len(again.failed) == 1
    assert [s.kind for s in again.skipped].count(SkipReason.ALREADY_DONE) == 3


@pytest.mark.parametrize("store", ["memory", "s3"])
def test_an_upload_whose_done_line_was_lost_is_recognised_by_its_bytes(
    store: str, tmp_path: Path, settings: ProtectSettings, request: pytest.FixtureRequest
) -> None:
    """A writer killed between an output's upload and its "done" line: the "publishing" line
    stored before the upload lets the next run recognise the output by its sha256, so that
    "unique" names nothing ``-2``; an announced upload that never happened is done again."""
    if store == "s3":
        request.getfixturevalue("s3_endpoint")
    place = _s3(tmp_path) if store == "s3" else _memory(tmp_path)
    for name in ("kept", "lost"):
        place.put(place.at(f"in/{name}.jpg"), _photo_bytes(tmp_path, f"{name}.jpg"))
    _job(place, settings, collision="unique").run()
    _done_lines_lost(place)
    lost = place.at("out/lost.protected.jpg")
    before = _outputs(place, tmp_path)
    place.store.fs.rm_file(lost)  # type: ignore[attr-defined]  # its upload never happened

    again = _job(place, settings, collision="unique").run()
    assert [e.source.name for e in again.done] == ["lost.jpg"]
    assert [(s.source.name, s.kind) for s in again.skipped] == [
        ("kept.jpg", SkipReason.ALREADY_DONE)
    ]
    assert _outputs(place, tmp_path) == before  # the same bytes, no "-2" name


@pytest.mark.parametrize("collision", ["skip", "overwrite"])
def test_an_output_known_only_by_its_publishing_line_keeps_its_name_from_other_photos(
    tmp_path: Path, settings: ProtectSettings, collision: str
) -> None:
    """A writer killed after uploading IMG.jpg's copy left only its "publishing" line; IMG.tif,
    which maps to the same name as PNG, must get the next name, not be skipped for a name
    that is IMG.jpg's (the fixes of 2026-12-04 first kept "done" outputs only)."""
    place = _memory(tmp_path)
    place.put(place.at("in/IMG.jpg"), _photo_bytes(tmp_path, "IMG.jpg"))
    as_png = dict(collision=collision, format="png", workers=1)
    _job(place, settings, **as_png).run()  # IMG.jpg alone first
    _done_lines_lost(place)
    place.put(place.at("in/IMG.tif"), _photo_bytes(tmp_path, "IMG.tif", width=48))

    again = _job(place, settings, **as_png).run()
    assert [(e.source.name, e.output.name) for e in again.done] == [
        ("IMG.tif", "IMG.protected-2.png")
    ]
    assert [(e.source.name, e.kind) for e in again.skipped] == [
        ("IMG.jpg", SkipReason.ALREADY_DONE)
    ]


def test_reports_and_errors_show_object_store_photos_by_the_urls_given(
    tmp_path: Path, settings: ProtectSettings, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``s3://bucket/in/a.jpg`` in the report, its JSON and the per-photo lines, as the user
    wrote it, not the path inside the file system (``bucket/in/a.jpg``)."""
    import fsspec

    from spdesk.cli import main

    bucket = new_bucket()
    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"{bucket}/in/a.jpg", _photo_bytes(tmp_path, "a.jpg"))
    fs.pipe_file(f"{bucket}/in/bad.jpg", b"\xff\xd8\xff damaged")
    fs.pipe_file(f"{bucket}/in/notes.txt", b"not a photo")
    source, missing = f"s3://{bucket}/in", f"s3://{bucket}/none.jpg"
    perturbation = ["--perturbation", str(settings.perturbation), "--working-size", "16"]
    for out, extra in [(f"s3://{bucket}/json", ["--json"]), (f"s3://{bucket}/text", [])]:
        assert main(["protect", source, missing, "--out", out, *perturbation, *extra]) == 1
        printed = capsys.readouterr()
        if extra:
            summary = json.loads(printed.out)
            assert summary["output_root"] == out
            assert [(d["source"], d["output"]) for d in summary["done"]] == [
                (f"{source}/a.jpg", f"{out}/a.protected.jpg")
            ]
            failed = {f["source"]: f["reason"] for f in summary["failed"]}
            assert sorted(failed) == [f"{source}/bad.jpg", missing]
            assert failed[missing] == f"{missing} does not exist."
            assert [s["source"] for s in summary["skipped"]] == [f"{source}/notes.txt"]
        else:
            lines = (printed.out + printed.err).splitlines()
            spdesk = [line for line in lines if "HTTP/1.1" not in line]  # not moto's log
            assert f"FAILED   {source}/bad.jpg: " in "\n".join(spdesk)
            assert any(line.endswith(f"Output: {out}") for line in spdesk)
            assert not [line for line in spdesk if f" {bucket}/" in line]  # always a URL

    store, root = open_store(source)
    with pytest.raises(ImageError, match=rf"^{source}/gone\.jpg no longer exists"):
        store.read_image(Path(f"{root}/gone.jpg"))
    other = tmp_path / "other.jpg"
    other.write_bytes(b"other bytes")
    with pytest.raises(OutputExistsError, match=rf"^{source}/a\.jpg already exists"):
        store.publish(other, f"{root}/a.jpg")


def test_an_output_in_a_bucket_that_does_not_exist_never_creates_the_bucket(
    s3_endpoint: str,
    tmp_path: Path,
    settings: ProtectSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A typo in the bucket's name fails the job with the store's own words, and makes no
    bucket in the user's account (s3fs's mkdir can create buckets; the output root is made
    with makedirs, which does not)."""
    import fsspec

    from spdesk.cli import main

    samples.photo(tmp_path / "in" / "a.jpg")
    perturbation = ["--perturbation", str(settings.perturbation), "--working-size", "16"]
    code = main(["protect", str(tmp_path / "in"), "--out", "s3://no-such-bucket", *perturbation])
    assert code != 0
    assert "The specified bucket does not exist" in capsys.readouterr().err
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    assert not fs.exists("no-such-bucket")


def test_a_store_that_refuses_for_want_of_credentials_is_a_named_error_before_any_work(
    s3_endpoint: str,
    tmp_path: Path,
    settings: ProtectSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without credentials botocore raises its own NoCredentialsError (not an OSError), which
    once surfaced as "unexpected error ... This is a bug" midway through the job."""
    import fsspec.config

    from spdesk.cli import main

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    anonymous = {"client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    monkeypatch.setitem(fsspec.config.conf, "s3", anonymous)
    samples.photo(tmp_path / "in" / "a.jpg")
    perturbation = ["--perturbation", str(settings.perturbation)]
    out = "s3://spdesk-no-credentials/x"
    assert main(["protect", str(tmp_path / "in"), "--out", out, *perturbation]) == 2
    err = capsys.readouterr().err
    assert f"Cannot reach {out}: Unable to locate credentials" in err
    assert "This is a bug" not in err and "credentials" in err.split("\n", 1)[1]


def test_a_store_whose_host_is_not_found_is_a_named_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fsspec's ftp:// connects as it is made: a host that does not resolve raised a bare
    socket.gaierror, shown as "unexpected error ... This is a bug"."""
    from spdesk.cli import main

    samples.photo(tmp_path / "in" / "a.jpg")
    out = "ftp://no-such-host.invalid/x"  # .invalid never resolves (RFC 2606)
    assert main(["protect", str(tmp_path / "in"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"Cannot reach {out}:" in err and "This is a bug" not in err
    assert not (tmp_path / "x").exists()


def _run(
    place: Place, inputs: str, out: str, settings: ProtectSettings, **changes: object
) -> JobReport:
    """The local engine from ``inputs`` to ``out`` (below the place's root)."""
    settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    filesystem = getattr(place.store, "fs", None)
    return ProtectJob([place.at(inputs)], place.at(out), settings, filesystem=filesystem).run()


def _shards(place: Place, out: str) -> list[str]:
    folder = place.at(f"{out}/{SHARDS_FOLDER}")
    if isinstance(place.store, FolderStore):
        return sorted(p.name for p in Path(folder).glob("*"))
    return sorted(place.store.fs.find(folder))  # type: ignore[attr-defined]


def test_an_output_prefix_with_brackets_gets_its_manifest_and_a_rerun_skips_every_photo(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    """The shards of ``out[2024]`` were looked up with a glob, which read the brackets as a
    pattern: never merged, so every re-run protected every photo again."""
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    _run(place, "in", "out[2024]", settings)
    again = _run(place, "in", "out[2024]", settings)
    assert not again.done
    assert [s.kind for s in again.skipped] == [SkipReason.ALREADY_DONE]
    assert place.exists(place.at(f"out[2024]/{MANIFEST_NAME}"))
    assert _shards(place, "out[2024]") == []


def test_protecting_in_place_leaves_out_the_outputs_of_earlier_runs(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    """With another suffix, an earlier run's outputs are not named like this run's: the
    manifest's record of them leaves them out, in an object store as in a folder."""
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    _run(place, "in", "in", settings, allow_output_in_input=True)
    again = _run(place, "in", "in", settings, allow_output_in_input=True, suffix=".v2")
    assert [posixpath.basename(str(e.output)) for e in again.done] == ["a.v2.jpg"]
    reasons = {posixpath.basename(str(s.source)): s.reason for s in again.skipped}
    assert reasons["a.protected.jpg"].startswith("an output of an earlier spdesk run")
    assert not place.exists(place.at("in/a.protected.v2.jpg"))


def test_an_output_inside_the_inputs_is_refused_unless_allowed(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    said = {"in": "is the input folder", "in/protected": "is inside the input folder"}
    for out, words in said.items():
        with pytest.raises(ConfigError, match=words):
            _run(place, "in", out, settings)
    assert not place.exists(place.at(f"in/protected/{MANIFEST_NAME}"))


@pytest.mark.parametrize("store", ["memory", "s3"])
def test_a_key_with_an_empty_folder_in_its_name_is_protected_once(
    store: str, tmp_path: Path, settings: ProtectSettings, request: pytest.FixtureRequest
) -> None:
    """``in//double.jpg`` is a valid object key; made a Path, it became ``in/double.jpg``,
    which does not exist: it failed as "no longer exists" on every run."""
    if store == "s3":
        request.getfixturevalue("s3_endpoint")
    place = _s3(tmp_path) if store == "s3" else _memory(tmp_path)
    place.put(place.at("in//double.jpg"), _photo_bytes(tmp_path))
    report = _run(place, "in", "out", settings)
    assert not report.failed
    assert [posixpath.basename(str(e.output)) for e in report.done] == ["double.protected.jpg"]
    again = _run(place, "in", "out", settings)
    assert [s.kind for s in again.skipped] == [SkipReason.ALREADY_DONE]


def test_an_output_store_that_refuses_writes_stops_the_job_before_any_photo(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """A read-only bucket (IAM): every photo was protected, then failed naming an internal
    shard; now the job stops at once with the output's name, as for a read-only folder."""
    from fsspec.implementations.memory import MemoryFileSystem

    class ReadOnly(MemoryFileSystem):
        def pipe_file(
            self, path: str, value: bytes, mode: str = "overwrite", **kwargs: object
        ) -> None:
            raise PermissionError(13, "Access Denied", path)

    place = _memory(tmp_path)
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    fs = ReadOnly()
    store = FsspecStore(fs)
    read: list[object] = []
    store.read_image = lambda *args, **kwargs: read.append(args)  # type: ignore[method-assign]
    job = ProtectJob([place.at("in")], place.at("out"), settings, filesystem=fs)
    job.store = job.output_store = store
    with pytest.raises(OutputPermissionError, match=rf"^Cannot write into {place.at('out')}:"):
        job.run()
    assert not read


def test_folder_marker_objects_are_left_out_silently(
    s3_endpoint: str, tmp_path: Path, settings: ProtectSettings
) -> None:
    """The console's "Create folder" makes a zero-byte ``in/empty/``: not a file of the
    folder, so not "left out: not a photo"."""
    place = _s3(tmp_path)
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    bucket, root = place.root.split("/", 1)
    place.store.fs.call_s3("put_object", Bucket=bucket, Key=f"{root}/in/empty/", Body=b"")  # type: ignore[attr-defined]
    place.store.fs.invalidate_cache()  # type: ignore[attr-defined]
    report = _run(place, "in", "out", settings)
    assert len(report.done) == 1 and not report.skipped and not report.failed


def test_overwrite_replaces_the_copy_an_earlier_unique_run_stepped_past(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    """A "unique" run's line replaced the proof of the photo's first copy: an "overwrite" run
    then took that copy for someone else's file and skipped the photo."""
    place.put(place.at("in/a.jpg"), _photo_bytes(tmp_path))
    _run(place, "in", "out", settings)
    _run(place, "in", "out", settings, quality=90, collision="unique")
    report = _run(place, "in", "out", settings, quality=80, collision="overwrite")
    assert not report.skipped
    assert [posixpath.basename(str(e.output)) for e in report.done] == ["a.protected.jpg"]
    assert sorted(_outputs(place, tmp_path)) == ["a.protected-2.jpg", "a.protected.jpg"]


def test_a_heic_with_transparency_becomes_a_png_from_any_store(
    place: Place, tmp_path: Path, settings: ProtectSettings
) -> None:
    """Where no local walk read the photo's header (an object store), naming reads a HEIC's
    header to see its transparency: the copy is a PNG that keeps it, as from a folder."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    image = Image.fromarray(samples.photo_array())
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, format="HEIF", quality=95)
    place.put(place.at("in/alpha.heic"), buffer.getvalue())
    report = _run(place, "in", "out", settings)
    assert [posixpath.basename(str(e.output)) for e in report.done] == ["alpha.protected.png"]
    written = Image.open(io.BytesIO(place.get(place.at("out/alpha.protected.png"))))
    assert written.format == "PNG" and written.mode == "RGBA"


_WITHIN = """
import sys
from pathlib import Path
from spdesk.core.stores import FolderStore
print(FolderStore().within(Path(sys.argv[1]), Path(sys.argv[2])))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_an_output_inside_the_input_under_another_name_of_it_is_found(tmp_path: Path) -> None:
    """A disk that ignores case names the input folder ``Photos`` as ``photos`` too; a bind
    mount gives a folder a second name on any disk (here in a user namespace of its own):
    whichever name the output is given under, it is the same folder, not a text match."""
    photos, alias = tmp_path / "Photos", tmp_path / "alias"
    photos.mkdir()
    alias.mkdir()
    script = f'mount --bind "$1" "$2" && exec "{sys.executable}" -c "$3" "$2/out" "$1"'
    command = ["unshare", "-rm", "sh", "-c", script, "sh", str(photos), str(alias), _WITHIN]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if not done.stdout and done.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"no bind mount in a user namespace here: {done.stderr.strip()}")
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize("url", ["https://example.com/a/b.jpg", "HTTP://example.com/photos"])
def test_a_web_address_is_refused_by_name_not_shown_mangled(url: str) -> None:
    """It was read as an fsspec HTTP store, then as a path, and reported as
    "https://https:/example.com/a/b.jpg does not exist"."""
    with pytest.raises(ConfigError, match="is a web address") as raised:
        open_store(url)
    assert raised.value.message.startswith(url) and "Download" in (raised.value.hint or "")


@pytest.mark.parametrize(
    ("frozen", "said"),
    [(False, "pip install s3fs (s3://) or gcsfs (gs://)"), (True, "installed app does not")],
)
def test_a_store_without_its_driver_says_how_to_get_it_and_the_app_never_says_pip(
    frozen: bool, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installer's app has no pip: it says where the driver comes with spdesk instead."""
    import sys

    if frozen:
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(OutputError) as info:
        open_store("gs://bucket/photos")  # gcsfs: in no extra, not installed
    hint = info.value.hint or ""
    assert said in hint and ("pip install" in hint) is not frozen
