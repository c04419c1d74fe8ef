"""The output folder's record names originals by keyed ids, never by where they are: the output
folder is what people share, and a path tells who they are and how they file their photos."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from spdesk.core.jobs import ProtectJob, ProtectSettings, SkipReason
from spdesk.core.keys import ENV_KEY
from spdesk.core.manifest import MANIFEST_NAME, SOURCE_ID_PREFIX, SourceIds
from tests import protect_samples as samples

PRIVATE = "Alice Example - therapy notes"


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    folder = tmp_path / PRIVATE
    samples.photo(folder / "a.png")
    samples.photo(folder / "inner" / "b.jpg", seed=1)
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> ProtectSettings:
    return ProtectSettings(perturbation=samples.perturbation_file(tmp_path), working_size=16)


def test_the_record_in_the_output_folder_never_says_where_the_originals_are(
    tmp_path: Path, originals: Path, settings: ProtectSettings
) -> None:
    out = tmp_path / "shared with friends"
    report = ProtectJob([originals], out, settings).run()
    assert len(report.done) == 2
    record = (out / MANIFEST_NAME).read_bytes()
    for told in (PRIVATE, str(tmp_path), "a.png", "b.jpg"):
        assert told.encode() not in record, told
    sources = [json.loads(line)["source"] for line in record.splitlines()[1:]]
    assert len(sources) == 2 and all(s.startswith(SOURCE_ID_PREFIX) for s in sources)
    again = ProtectJob([originals], out, settings).run()  # still recognised
    assert not again.done and {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}


def test_a_record_an_older_spdesk_wrote_with_paths_is_still_recognised_then_rewritten_without(
    tmp_path: Path, originals: Path, settings: ProtectSettings
) -> None:
    out = tmp_path / "out"
    ProtectJob([originals], out, settings).run()
    ids = SourceIds.of_install()
    paths = {ids(os.path.abspath(p)): os.path.abspath(p) for p in originals.rglob("*.*")}
    older = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    for line in older[1:]:  # what spdesk wrote before the ids: the originals' paths
        line["source"] = paths[line["source"]]
    (out / MANIFEST_NAME).write_text("".join(json.dumps(line) + "\n" for line in older))
    assert PRIVATE in (out / MANIFEST_NAME).read_text()
    again = ProtectJob([originals], out, settings).run()
    assert not again.done and {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}
    assert PRIVATE not in (out / MANIFEST_NAME).read_text()  # compacted into ids
    assert sorted(p.name for p in out.rglob("*.png")) == ["a.protected.png"]  # no second copy


def test_a_record_a_newer_spdesk_wrote_is_refused_and_left_as_it_is(
    tmp_path: Path, originals: Path, settings: ProtectSettings
) -> None:
    """Its header was never read: a newer format's record was compacted into this one's, its
    lines rewritten as version 1 (CLI audit)."""
    from spdesk.core.errors import OutputError

    out = tmp_path / "out"
    ProtectJob([originals], out, settings).run()
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    header = json.loads(lines[0])
    assert header == {"format": "spdesk-manifest", "version": 1}
    newer = "\n".join([json.dumps(header | {"version": 2}), *lines[1:]]) + "\n"
    (out / MANIFEST_NAME).write_text(newer)
    job = ProtectJob([originals], out, settings)

    def never(*_args: object) -> None:
        raise AssertionError("the mode's models were loaded before the refusal")

    job._protector = never  # type: ignore[method-assign]
    with pytest.raises(OutputError, match="written by a newer version of spdesk") as raised:
        job.run()
    assert str(out / MANIFEST_NAME) in raised.value.message
    assert raised.value.hint.startswith("Update spdesk")
    assert (out / MANIFEST_NAME).read_text() == newer


def test_photos_are_listed_beside_an_output_folder_a_newer_spdesk_recorded(
    tmp_path: Path, originals: Path, settings: ProtectSettings
) -> None:
    """Adding a folder that holds such an output folder failed as a whole in the app (the
    listing read the record, to leave its copies out): the refusal is the job's (review M4)."""
    from spdesk.core.jobs.scan import scan_inputs

    out = originals / "protected"
    ProtectJob([originals], out, dataclasses.replace(settings, allow_output_in_input=True)).run()
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    newer = {"format": "spdesk-manifest", "version": 2}
    (out / MANIFEST_NAME).write_text("\n".join([json.dumps(newer), *lines[1:]]) + "\n")
    found = scan_inputs([originals], settings, output_root=out)
    assert sorted(p.path.name for p in found.photos) == ["a.png", "b.jpg"]


def test_ids_are_keyed_so_a_guessed_path_cannot_be_checked_without_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    place = "s3://alice-photos/private/IMG_0001.jpg"  # a URL: ids name those too
    first, second = SourceIds(b"\x01" * 32), SourceIds(b"\x02" * 32)
    assert first(place) == first(place) != second(place)
    assert first(place) != first(place.replace("0001", "0002"))
    assert first(first(place)) == first(place)  # an id given is kept: writers need no key
    odd = "/photos/caf\udce9.png"  # a name that is not UTF-8, as Python spells it
    assert first(odd) != first("/photos/caf\udce8.png")
    monkeypatch.setenv(ENV_KEY, "01" * 32)
    assert SourceIds.of_install()(place) == first(place)


def test_with_another_key_a_copy_of_the_same_bytes_is_adopted_and_nothing_is_replaced(
    tmp_path: Path, originals: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another key's ids do not match the record's: a universal copy (the same bytes whatever
    the key) is recognised by its bytes, never written twice or replaced."""
    out = tmp_path / "out"
    monkeypatch.setenv(ENV_KEY, "01" * 32)
    ProtectJob([originals], out, settings).run()
    first = (out / "a.protected.png").stat().st_mtime_ns
    monkeypatch.setenv(ENV_KEY, "02" * 32)
    again = ProtectJob([originals], out, settings).run()
    assert not again.failed
    assert (out / "a.protected.png").stat().st_mtime_ns == first
    assert sorted(p.name for p in out.rglob("*.protected*")) == [
        "a.protected.png",
        "b.protected.jpg",
    ]
    assert not ProtectJob([originals], out, settings).run().done  # now recorded under both
