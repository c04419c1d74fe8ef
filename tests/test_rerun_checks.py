"""What a re-run trusts of the copies an earlier run wrote: a copy with the recorded size and
modification time is finished (not read again); one whose time changed is read and trusted only
with the recorded sha256; a copy that changed since spdesk wrote it is protected again, never
replaced (it may hold the user's edits), and the photo's note or skip reason says so."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from spdesk.core import manifest as manifest_module
from spdesk.core.jobs import JobReport, ProtectJob, ProtectSettings, SkipReason
from spdesk.core.manifest import MANIFEST_NAME, read_job_manifest
from tests import protect_samples as samples

CHANGED = "had changed since spdesk wrote it: left as it is"


def _run(inputs: Path, out: Path, settings: ProtectSettings) -> JobReport:
    return ProtectJob([inputs], out, settings).run()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The outputs the manifest reads whole (to compare their sha256), in order."""
    read: list[Path] = []
    real = manifest_module._sha256

    def counting(path: Path) -> str | None:
        read.append(path)
        return real(path)

    monkeypatch.setattr(manifest_module, "_sha256", counting)
    yield read


def test_a_rerun_reads_no_copy_whose_size_and_time_are_as_recorded(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, hashed: list[Path]
) -> None:
    for i in range(3):
        samples.photo(inputs / f"{i}.png")
    out = tmp_path / "out"
    _run(inputs, out, settings)
    entries = read_job_manifest(out / MANIFEST_NAME).values()
    assert all(e["output_mtime_ns"] == (out / e["output"]).stat().st_mtime_ns for e in entries)
    hashed.clear()
    again = _run(inputs, out, settings)
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE] * 3
    assert hashed == []


def test_a_copy_whose_time_changed_is_read_once_and_trusted_by_its_sha256(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, hashed: list[Path]
) -> None:
    samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    _run(inputs, out, settings)
    copy = out / "a.protected.png"
    os.utime(copy, ns=(1, 1))  # copied elsewhere and back, or touched: the same bytes
    hashed.clear()
    again = _run(inputs, out, settings)
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE]
    assert hashed == [copy]
    hashed.clear()
    third = _run(inputs, out, settings)  # the new time was remembered
    assert [e.kind for e in third.skipped] == [SkipReason.ALREADY_DONE]
    assert hashed == []


def test_a_copy_damaged_without_changing_its_size_is_protected_again_and_named(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    samples.photo(inputs / "a.jpg", 96, 64)
    out = tmp_path / "out"
    _run(inputs, out, settings)
    copy = out / "a.protected.jpg"
    good = copy.read_bytes()
    middle = len(good) // 2
    damaged = good[: middle - 200] + bytes(400) + good[middle + 200 :]
    copy.write_bytes(damaged)
    assert copy.stat().st_size == len(good)
    again = _run(inputs, out, settings)
    assert not again.skipped
    (done,) = again.done
    assert done.output == out / "a.protected-2.jpg"
    assert f"the earlier copy a.protected.jpg {CHANGED}, this copy is a.protected-2.jpg" in (
        done.notes
    )
    assert copy.read_bytes() == damaged  # it may be the user's edit: never replaced
    with Image.open(done.output) as image:
        image.load()
    third = _run(inputs, out, settings)  # the new copy is the photo's finished output
    assert [e.output for e in third.skipped] == [done.output] and not third.done
    assert sorted(p.name for p in out.glob("a.*")) == ["a.protected-2.jpg", "a.protected.jpg"]


def _cut_short(copy: Path, _other: Path) -> None:
    with copy.open("r+b") as handle:
        handle.truncate(100)


def _replaced_by_another(copy: Path, other: Path) -> None:
    shutil.copyfile(other, copy)


@pytest.mark.parametrize("damage", [_cut_short, _replaced_by_another])
@pytest.mark.parametrize("collision", ["unique", "skip", "overwrite"])
def test_a_copy_that_changed_since_spdesk_wrote_it_is_left_as_it_is_and_the_photo_says_so(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, collision: str, damage: object
) -> None:
    samples.photo(inputs / "X.png", 40, 30)
    samples.photo(inputs / "Y.png", 60, 45)
    out = tmp_path / "out"
    policy = dataclasses.replace(settings, collision=collision)
    _run(inputs, out, policy)
    copy, other = out / "X.protected.png", out / "Y.protected.png"
    assert callable(damage)
    damage(copy, other)
    changed, kept_other = _sha(copy), _sha(other)
    again = _run(inputs, out, policy)
    said = f"the earlier copy X.protected.png {CHANGED}"
    skipped = {e.source.name: (e.kind, e.reason) for e in again.skipped}
    assert skipped["Y.png"][0] == SkipReason.ALREADY_DONE
    if collision == "unique":
        (done,) = again.done
        assert done.output == out / "X.protected-2.png"
        assert f"{said}, this copy is X.protected-2.png" in done.notes
        with Image.open(done.output) as image:
            assert image.size == (40, 30)
    else:  # skipped, as for any file spdesk did not write, with the reason
        assert not again.done
        assert skipped["X.png"] == (
            SkipReason.OUTPUT_EXISTS,
            f"{said}, like any file spdesk did not write",
        )
    assert (_sha(copy), _sha(other)) == (changed, kept_other)


def test_an_older_manifest_without_output_times_still_finds_its_copies_finished(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, hashed: list[Path]
) -> None:
    samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    _run(inputs, out, settings)
    lines = read_job_manifest(out / MANIFEST_NAME).values()
    older = [{k: v for k, v in e.items() if k != "output_mtime_ns"} for e in lines]
    (out / MANIFEST_NAME).write_text("".join(json.dumps(e) + "\n" for e in older))
    hashed.clear()
    again = _run(inputs, out, settings)
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE]
    assert hashed == []  # as before: its size is the check (no time to compare)


@pytest.mark.parametrize(("first", "second"), [(None, samples.EPS), (samples.EPS, None)])
def test_a_strength_equal_to_the_patterns_own_redoes_nothing(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    first: float | None,
    second: float | None,
) -> None:
    samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    done = _run(inputs, out, dataclasses.replace(settings, strength=first))
    again = _run(inputs, out, dataclasses.replace(settings, strength=second))
    assert len(done.done) == 1 and not again.done
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE]


def test_only_a_strength_other_than_the_protections_own_is_another_setting(
    tmp_path: Path, settings: ProtectSettings, generator_file: Path
) -> None:
    from spdesk.core.jobs.fingerprint import output_fingerprint

    def fingerprint(base: ProtectSettings, strength: float | None) -> str:
        return output_fingerprint(dataclasses.replace(base, strength=strength), "x")

    photo = ProtectSettings(mode="photo", generator=generator_file)  # its eps: 8
    for base in (settings, photo):
        assert fingerprint(base, samples.EPS) == fingerprint(base, None)
        assert fingerprint(base, 4.0) != fingerprint(base, None)
    folder = tmp_path / "stronger"
    folder.mkdir()
    stronger = samples.perturbation_file(folder, eps=12.0)  # 8 is not its own strength
    own = dataclasses.replace(settings, perturbation=stronger)
    assert fingerprint(own, samples.EPS) != fingerprint(own, None)
    assert fingerprint(own, 12.0) == fingerprint(own, None)


def test_the_apps_default_settings_are_the_command_lines() -> None:
    pytest.importorskip("PySide6", reason="the app's settings need Qt (CI also runs without)")
    from spdesk.core.jobs.fingerprint import output_fingerprint
    from spdesk.gui.protect_bridge import job_settings
    from spdesk.gui.settings import ProtectOptions

    for mode in ("photo", "universal"):
        app = job_settings(ProtectOptions(mode=mode, mode_chosen=True))
        assert app.strength is not None  # the app always names one; the command line not
        cli = ProtectSettings(mode=mode)
        assert app.mode == cli.mode
        assert output_fingerprint(app, "x") == output_fingerprint(cli, "x")


@pytest.mark.parametrize("output_format", ["png", "tiff"])
def test_the_quality_of_lossless_outputs_is_no_setting(
    settings: ProtectSettings, output_format: str
) -> None:
    from spdesk.core.jobs.fingerprint import output_fingerprint

    # The app passes its quality box's value even when it is greyed out for PNG; the command
    # line refuses --quality there and passes its default.
    app = dataclasses.replace(settings, format=output_format, quality=80)
    cli = dataclasses.replace(settings, format=output_format)
    assert output_fingerprint(app, "x") == output_fingerprint(cli, "x")
    jpeg = dataclasses.replace(settings, format="jpeg")
    assert output_fingerprint(dataclasses.replace(jpeg, quality=80), "x") != output_fingerprint(
        jpeg, "x"
    )


def test_a_compressed_tiff_is_skipped_on_a_rerun_not_copied_again(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Pillow's libtiff encoder writes past where Python's file position says (the directory
    after the strips): the recorded size was the position, the copy looked changed on every
    re-run, and each re-run wrote an identical NAME.protected-2.tif, -3..."""
    samples.photo(inputs / "scan.tif", compression="tiff_lzw")
    out = tmp_path / "out"
    _run(inputs, out, settings)
    (entry,) = read_job_manifest(out / MANIFEST_NAME).values()
    assert entry["output_size"] == (out / "scan.protected.tif").stat().st_size
    again = _run(inputs, out, settings)
    assert [e.kind for e in again.skipped] == [SkipReason.ALREADY_DONE]
    assert sorted(p.name for p in out.glob("*.tif")) == ["scan.protected.tif"]
