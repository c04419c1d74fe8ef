"""Output names of one run: never two alike on any disk, always within the name limit.

A disk that ignores case (exFAT, FAT, macOS, Windows) holds ``A.protected.jpg`` and
``a.protected.jpg`` as one file, and macOS holds ``é`` composed and decomposed as one: the
names a run gives are told apart as such a disk would, whatever the disk the tests run on.
"""

from __future__ import annotations

import dataclasses
import sys
import unicodedata
from pathlib import Path

import pytest

from spdesk.core.files import name_bytes, name_max
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.jobs.naming import OutputNamer
from tests import protect_samples as samples

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names")


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


@pytest.mark.parametrize("policy", ["skip", "overwrite", "unique"])
def test_two_photos_whose_names_differ_only_in_case_get_two_output_names(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, policy: str
) -> None:
    samples.photo(inputs / "A.jpg")
    samples.photo(inputs / "a.jpg", 40, 30)
    out = tmp_path / "out"
    report = ProtectJob([inputs], out, dataclasses.replace(settings, collision=policy)).run()
    assert not report.failed and not report.skipped
    names = sorted(e.output.name for e in report.done)
    assert names == ["A.protected.jpg", "a.protected-2.jpg"]
    assert len({_folded(name) for name in names}) == 2


def test_names_composed_and_decomposed_alike_get_two_output_names(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    namer = OutputNamer(tmp_path / "out", settings.export_options(), "skip")
    composed = namer.plan(tmp_path / "x", Path("caf\u00e9.png"), "PNG", owner="1")
    decomposed = namer.plan(tmp_path / "y", Path("cafe\u0301.png"), "PNG", owner="2")
    assert _folded(composed.path.name) != _folded(decomposed.path.name)
    assert decomposed.path.name == "cafe\u0301.protected-2.png"


def test_an_earlier_output_kept_for_another_photo_is_not_taken_in_another_case(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    out = tmp_path / "out"
    namer = OutputNamer(out, settings.export_options(), "skip")
    namer.keep({out / "a.protected.png": "a"})
    target = namer.plan(tmp_path / "A.png", Path("A.png"), "PNG", owner="A")
    assert target.path.name == "A.protected-2.png"
    own = namer.plan(tmp_path / "a.png", Path("a.png"), "PNG", owner="a")
    assert own.path.name == "a.protected.png"  # its own name, as every run gave it


@posix_only
def test_two_photos_of_one_name_at_the_name_limit_are_both_written(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Both outputs are named ``X.protected.jpg`` (the limit exactly): the second one's ``-2``
    would pass the limit, so its start is shortened instead, keeping suffix and number."""
    limit = name_max(inputs)
    stem = "x" * (limit - len(".protected.jpg"))
    samples.photo(inputs / f"{stem}.jpg")
    samples.photo(inputs / f"{stem}.png", 40, 30)
    jpeg = dataclasses.replace(settings, format="jpeg")
    report = ProtectJob([inputs], tmp_path / "out", jpeg).run()
    assert not report.failed and len(report.done) == 2
    names = {e.source.suffix: e.output.name for e in report.done}
    notes = {e.source.suffix: e.notes for e in report.done}
    assert not any("shortened" in note for note in notes[".jpg"])
    assert any("name shortened" in note for note in notes[".png"])
    assert names[".jpg"] == f"{stem}.protected.jpg"  # first in job order
    assert names[".png"].startswith("x" * 200) and names[".png"].endswith(".protected-2.jpg")
    assert name_bytes(names[".png"]) <= limit


@posix_only
def test_a_rerun_stepping_past_a_name_at_the_limit_stays_within_it(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    limit = name_max(inputs)
    stem = "x" * (limit - len(".protected.png"))
    samples.photo(inputs / f"{stem}.png")
    out = tmp_path / "out"
    ProtectJob([inputs], out, settings).run()
    stronger = dataclasses.replace(settings, strength=4, collision="unique")
    report = ProtectJob([inputs], out, stronger).run()
    assert not report.failed, [e.reason for e in report.failed]
    (done,) = report.done
    assert done.output.name.endswith(".protected-2.png") and name_bytes(done.output.name) <= limit
    assert (out / f"{stem}.protected.png").is_file()  # the first output, left as it is


@posix_only
def test_numbered_names_cut_to_the_limit_stay_unique_and_the_same_on_every_run(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    out = tmp_path / "out"
    limit = name_max(tmp_path)
    stem = "y" * (limit - len(".protected.png"))
    names = []
    for _run in range(2):
        namer = OutputNamer(out, settings.export_options(), "skip")
        targets = [
            namer.plan(tmp_path / f"{n}", Path(f"{stem}.png"), "PNG", owner=str(n))
            for n in range(3)
        ]
        names.append([t.path.name for t in targets])
    assert names[0] == names[1] and len(set(names[0])) == 3
    assert [name.rsplit(".", 2)[1] for name in names[0][1:]] == ["protected-2", "protected-3"]
    assert all(name_bytes(name) <= limit for name in names[0])


def test_a_numbered_copy_made_again_takes_the_next_number_not_a_second_one(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Two photos of one stem, protected again with other settings: the numbered one's new copy
    was ``photo.protected-2-2.png``, a name the scan did not know as spdesk's, so a folder of
    copies given as input had those protected a second time."""
    samples.photo(inputs / "photo.jpg")
    samples.photo(inputs / "photo.png", 40, 30, fmt="PNG")
    out = tmp_path / "out"
    names = []
    for strength in (8, 4, 12):
        run = dataclasses.replace(settings, strength=strength, format="png", collision="unique")
        report = ProtectJob([inputs], out, run).run()
        assert not report.failed
        names.append(sorted(e.output.name for e in report.done))
    assert names == [
        ["photo.protected-2.png", "photo.protected.png"],
        ["photo.protected-3.png", "photo.protected-4.png"],
        ["photo.protected-5.png", "photo.protected-6.png"],
    ]
    again = ProtectJob([out], tmp_path / "again", settings).run()  # copies given as photos
    assert not again.done and again.left_out


def test_names_numbered_twice_before_are_known_as_spdesks_outputs() -> None:
    from spdesk.core.export import output_name_pattern

    pattern = output_name_pattern(".protected")
    assert pattern.fullmatch("photo.protected-2-2.png") and pattern.fullmatch("a.protected-9.JPG")
    assert not pattern.fullmatch("photo-2-2.png")
