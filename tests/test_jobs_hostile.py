"""Inputs and faults a hostile user would try: odd names, special files, files spdesk did not write.

Each test pins one case of issue 11: originals are hashed before and after (``originals_guard``),
outputs are decoded, and the report says what happened to every input.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spdesk.core.files import TEMP_SUFFIX, name_max, shown
from spdesk.core.jobs import JobReport, ProtectJob, ProtectSettings
from spdesk.core.manifest import MANIFEST_NAME, read_job_manifest
from tests import protect_samples as samples

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file names and special files")


def _run(sources: list[Path], out: Path, settings: ProtectSettings) -> JobReport:
    return ProtectJob(sources, out, settings).run()


def _decodes_with_size(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.size == size


def _no_temps(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


# --- whole-batch crashes --------------------------------------------------------------------------
@posix_only
def test_a_name_that_is_not_utf8_is_protected_recorded_and_reported(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    odd = inputs / os.fsdecode(b"caf\xe9.png")
    try:
        samples.photo(odd)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    samples.photo(inputs / "plain.png")
    (inputs / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"")  # fails, named in the report
    originals_guard.append(inputs)
    out = tmp_path / "out"
    report = _run([inputs], out, settings)
    assert len(report.done) == 2 and len(report.failed) == 1
    output = next(e.output for e in report.done if e.source == odd)
    assert os.fsencode(output.name) == b"caf\xe9.protected.png"  # the same bytes, not mangled
    _decodes_with_size(output, (48, 32))
    # Reports and JSON hold an escaped display form; both encode as UTF-8.
    text = json.dumps(report.to_dict(), ensure_ascii=False)
    assert "caf\\\\xe9.png" in text
    text.encode("utf-8")
    assert "bad\\\\xff.jpg" in text
    assert "bad\\xff.jpg" in report.text()
    report.text().encode("utf-8")
    # The manifest keeps the name losslessly: a second run recognises the photo as done.
    assert samples.recorded(out, [odd])  # its id is of the name's exact bytes
    again = _run([inputs], out, settings)
    assert not again.done and len(again.skipped) == 2 and len(again.failed) == 1


@posix_only
def test_a_folder_too_deep_to_open_fails_as_unreadable_and_the_other_photos_are_protected(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    from tests.test_discovery import deep_folder, jpeg_bytes, write_at

    original = samples.photo(inputs / "ok.png").read_bytes()
    _deep, fd = deep_folder(inputs, 5000)  # past the system's limit on a path (4096 on Linux)
    write_at(fd, "lost.jpg", jpeg_bytes())
    os.close(fd)
    report = _run([inputs], tmp_path / "out", settings)
    assert [e.source.name for e in report.done] == ["ok.png"]
    assert (inputs / "ok.png").read_bytes() == original  # (the tree guard cannot walk this deep)
    # A failure, as an unreadable folder is: its photos were never seen (it was "left out",
    # the run ok and the command's exit 0; review).
    assert not report.ok and not report.left_out
    (failed,) = report.failed
    assert "path too long" in failed.reason and "not protected" in failed.reason
    assert failed.hint.startswith("Move it to a folder with a shorter path")


@posix_only
def test_an_output_path_too_long_for_the_system_fails_the_photo_with_why(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """A photo deep in its folder, whose copy's path in a deeper output folder passes the
    system's limit, failed as "unexpected error: [Errno 36] File name too long" (scale audit)."""
    deep = tmp_path / "in"
    while len(os.fsencode(deep)) < 3700:  # the photo can be read; its copy cannot be written
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    original = samples.photo(deep / "a.png").read_bytes()
    out = tmp_path / ("p" * 200) / ("q" * 200)
    report = _run([tmp_path / "in"], out, settings)
    (failed,) = report.failed
    assert "the name or path is too long for this disk" in failed.reason, failed.reason
    assert "unexpected" not in failed.reason and failed.hint.startswith("Choose a shorter")
    assert (deep / "a.png").read_bytes() == original


def test_the_summary_counts_folders_left_out_as_folders_not_files(tmp_path: Path) -> None:
    from spdesk.core.jobs import FileSkipped, SkipReason

    report = JobReport(tmp_path / "out")
    left_out = SkipReason.EXCLUDED
    report.skipped = [
        FileSkipped(tmp_path / ".hidden", left_out, "hidden or system folder", folder=True),
        FileSkipped(tmp_path / "out", left_out, "the output folder of this job", folder=True),
        FileSkipped(tmp_path / "notes.txt", left_out, "not a photo"),
    ]
    assert "(1 other file and 2 folders left out)" in report.text()
    report.skipped = report.skipped[:1]
    assert "(1 folder left out)" in report.text()


def test_shown_escapes_only_bytes_that_are_not_utf8() -> None:
    assert shown(Path(os.fsdecode(b"caf\xe9/\xc3\xa9t\xc3\xa9.png"))) == "caf\\xe9/été.png"
    assert shown("plain.png") == "plain.png"


def test_shown_escapes_control_characters_a_name_cannot_break_lines_or_drive_a_terminal() -> None:
    assert shown("new\nline.jpg") == "new\\nline.jpg"
    assert shown("\x1b[2Jclear.png") == "\\x1b[2Jclear.png"
    assert shown(Path(os.fsdecode(b"tab\t\xe9.png"))) == "tab\\t\\xe9.png"


def test_shown_escapes_characters_that_reorder_or_hide_text() -> None:
    # A right-to-left override shows "abc\u202egpj.exe" as "abcexe.jpg" (and bidi or
    # invisible characters can move the terminal's text around).
    assert shown("abc\u202egpj.exe") == "abc\\u202egpj.exe"
    for char in "\u200e\u200f\u202a\u2066\u2069\u200b\ufeff\u2028\x85\x9b":
        assert shown(f"a{char}b.jpg") == f"a\\u{ord(char):04x}b.jpg"
    assert shown("tag\U000e0041.jpg") == "tag\\U000e0041.jpg"
    # Letters of every script, emoji and the joiners inside them are shown as they are.
    for name in ("שלום.jpg", "café.jpg", "😀🎉.jpg", "👩\u200d👩\u200d👧.jpg", "می\u200cخواهم.jpg"):
        assert shown(name) == name


@posix_only
def test_an_output_name_past_the_name_limit_is_shortened_uniquely_and_recorded(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    limit = name_max(inputs)
    long_a = inputs / ("a" * (limit - 8) + "-one.png")  # fits; its output name does not
    long_b = inputs / ("a" * (limit - 8) + "-two.png")
    samples.photo(long_a)
    samples.photo(long_b, seed=1)
    samples.photo(inputs / "short.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    report = _run([inputs], out, settings)
    assert not report.failed and len(report.done) == 3
    outputs = {e.source: e.output for e in report.done}
    assert outputs[long_a] != outputs[long_b]  # shortened, still unique
    for source in (long_a, long_b):
        name = outputs[source].name
        assert len(os.fsencode(name)) <= limit and name.endswith(".protected.png")
        _decodes_with_size(outputs[source], (48, 32))
        notes = next(e.notes for e in report.done if e.source == source)
        assert any("name shortened" in note for note in notes)
    recorded = samples.recorded(out, [long_a])
    assert recorded[long_a.name]["output"] == outputs[long_a].name
    assert not _run([inputs], out, settings).done  # the shortened names are recognised
    _no_temps(out)


@posix_only
def test_an_output_name_just_under_the_limit_gets_a_temporary_name_that_fits(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    limit = name_max(inputs)
    stem = "b" * (limit - len(".protected.png"))
    source = samples.photo(inputs / f"{stem}.png")
    report = _run([source], tmp_path / "out", settings)
    assert not report.failed
    (done,) = report.done
    assert len(os.fsencode(done.output.name)) == limit
    _decodes_with_size(done.output, (48, 32))


@posix_only
def test_special_files_are_skipped_without_being_opened(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    import socket

    samples.photo(inputs / "ok.png")
    os.mkfifo(inputs / "pipe.jpg")  # opening it for reading would wait for a writer for ever
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(inputs / "sock.png"))
    except OSError:  # paths too long for AF_UNIX on some systems
        server.close()
        server = None  # type: ignore[assignment]
    originals_guard.append(inputs)
    try:
        report = _run([inputs, inputs / "pipe.jpg"], tmp_path / "out", settings)
    finally:
        if server is not None:
            server.close()
    assert [e.source.name for e in report.done] == ["ok.png"]
    reasons = {e.source.name: e.reason for e in report.skipped}
    assert "special file" in reasons["pipe.jpg"] and "named pipe" in reasons["pipe.jpg"]
    if server is not None:
        assert "socket" in reasons["sock.png"]
    assert not report.failed
    assert stat.S_ISFIFO((inputs / "pipe.jpg").stat().st_mode)


def test_a_fifo_does_not_hang_training_discovery(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    from spdesk.core.train import find_photos

    samples.photo(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    assert find_photos(tmp_path) == [tmp_path / "a.png"]


# --- outputs that lie -----------------------------------------------------------------------------
def _tiffs(folder: Path) -> dict[str, tuple[int, int]]:
    """Non-RGB TIFFs (greyscale, 16-bit greyscale, palette, bilevel) and their sizes."""
    import numpy as np

    ramp = (np.arange(40 * 24).reshape(24, 40) % 256).astype(np.uint8)
    Image.fromarray(ramp, "L").save(folder / "grey.tif")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(folder / "grey16.tif")
    Image.fromarray(ramp, "L").convert("P").save(folder / "palette.tif")
    Image.fromarray(ramp, "L").convert("1").save(folder / "bilevel.tif")
    Image.fromarray(ramp, "L").convert("RGB").save(folder / "rgb.tif", compression="tiff_lzw")
    return {name: (40, 24) for name in ("grey", "grey16", "palette", "bilevel", "rgb")}


def test_non_rgb_tiffs_give_outputs_that_decode(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    sizes = _tiffs(inputs)
    originals_guard.append(inputs)
    report = _run([inputs], tmp_path / "out", settings)
    assert not report.failed and len(report.done) == len(sizes)
    for event in report.done:
        _decodes_with_size(event.output, sizes[event.source.stem])


def _fails_with_its_output_damaged(
    source: Path,
    out: Path,
    settings: ProtectSettings,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[Any], None],
) -> None:
    """Protect ``source`` with an encoder whose output ``damage`` spoils after writing: the
    photo fails naming its output, and neither the output nor a temp file is left."""
    from spdesk.core import export

    real_write = export.write_image

    def damaged(encoded: export.Encoded, handle: Any, **options: bool) -> None:
        real_write(encoded, handle, **options)
        damage(handle)

    monkeypatch.setattr(export, "write_image", damaged)
    report = _run([source], out, settings)
    assert not report.done
    (failed,) = report.failed
    name = f"{source.stem}.protected{source.suffix}"
    assert name in failed.reason and "does not decode" in failed.reason
    assert not (out / name).exists()
    _no_temps(out)


def test_a_jpeg_output_cut_short_inside_its_pixel_data_is_a_failure_not_done(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples.photo(inputs / "a.jpg", 96, 64)

    def cut(handle: Any) -> None:  # headers whole, data not
        handle.truncate(handle.tell() * 2 // 3)

    _fails_with_its_output_damaged(inputs / "a.jpg", tmp_path / "out", settings, monkeypatch, cut)


def test_an_output_that_does_not_decode_is_a_failure_not_done(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples.photo(inputs / "a.png")

    def overwrite(handle: Any) -> None:  # an encoder with a bug
        handle.seek(20)
        handle.write(b"\0" * 64)

    _fails_with_its_output_damaged(
        inputs / "a.png", tmp_path / "out", settings, monkeypatch, overwrite
    )


def test_xmp_orientation_is_reset_with_the_exif_one(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    path, upright = samples.oriented_jpeg(inputs / "o6.jpg", 6)
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
        b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
        b"<rdf:Description><tiff:Orientation>6</tiff:Orientation></rdf:Description>"
        b"</rdf:RDF></x:xmpmeta>"
    )
    with Image.open(path) as image:
        image.load()
        image.save(path, "JPEG", quality=98, exif=image.getexif(), xmp=xmp)
    report = _run([path], tmp_path / "out", settings)
    (done,) = report.done
    with Image.open(done.output) as output:
        assert output.size == upright.size
        assert output.getexif().get(0x0112) in (None, 1)
        written = output.info.get("xmp", b"")
    assert b'tiff:Orientation="6"' not in written and b">6</tiff:Orientation>" not in written
    assert b"rdf:Description" in written  # the rest of the XMP is kept


def test_an_input_folder_that_cannot_be_read_is_a_failure(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.cli import main

    samples.photo(inputs / "ok" / "a.png")
    (inputs / "locked").mkdir()
    real_scandir = os.scandir

    def deny(path: object = ".") -> object:
        if Path(os.fspath(path)).name == "locked":  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[arg-type]
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", deny)
    report = _run([inputs], tmp_path / "out", settings)
    assert [e.source.name for e in report.done] == ["a.png"]
    (failed,) = report.failed
    assert failed.source.name == "locked" and "cannot be read" in failed.reason
    assert not report.ok
    argv = ["protect", str(inputs / "locked"), "--out", str(tmp_path / "out2")]
    argv += ["--perturbation", str(settings.perturbation)]
    assert main(argv) == 1


@pytest.mark.parametrize("strength", [1e-9, 0.3, 0.6])
def test_a_strength_that_cannot_change_a_pixel_is_refused(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, strength: float
) -> None:
    import dataclasses

    from spdesk.core.errors import ConfigError

    samples.photo(inputs / "a.png")
    weak = dataclasses.replace(settings, strength=strength)
    with pytest.raises(ConfigError, match="cannot change any pixel"):
        _run([inputs], tmp_path / "out", weak)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["universal", "photo"])
@pytest.mark.parametrize("strength", [4.6, 1.7, 2.5])
def test_a_fractional_strength_is_never_exceeded(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, mode: str, strength: float
) -> None:
    """Rounding to 8 bits after the bound was checked took 4.6 to changes of 5 (1.7 to 2)."""
    import dataclasses

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)  # texture: photo mode spends its whole budget there
    for index in range(3):
        pixels = rng.integers(40, 216, (72, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"p{index}.png")
    run = dataclasses.replace(settings, strength=strength, mode=mode)
    report = _run([inputs], tmp_path / "out", run)
    assert len(report.done) == 3
    largest = []
    for event in report.done:
        with Image.open(event.source) as original, Image.open(event.output) as copy:
            change = np.abs(np.asarray(copy, np.int16) - np.asarray(original, np.int16))
        largest.append(int(change.max()))
        assert event.max_change <= int(strength)
    assert max(largest) <= int(strength), largest
    if mode == "universal":  # the pattern reaches its budget (photo mode's depends on the photo)
        assert max(largest) == int(strength), largest


def test_an_empty_pattern_file_is_named_as_the_fault_not_the_strength(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """A pattern file of zeros once read "Strength 16 cannot change any pixel ... use a strength
    of at least 1", whatever the strength."""
    import dataclasses

    from spdesk.core.errors import ConfigError
    from spdesk.core.perturbation import save_perturbation

    samples.photo(inputs / "a.png")
    empty = save_perturbation(
        tmp_path / "zeros.safetensors", np.zeros((3, 8, 8), np.float32), eps=8
    )
    job = dataclasses.replace(settings, perturbation=empty, strength=16, mode="universal")
    with pytest.raises(ConfigError, match=r"zeros\.safetensors holds an empty pattern"):
        _run([inputs], tmp_path / "out", job)
    assert not (tmp_path / "out").exists()


def test_a_pattern_too_weak_to_change_a_pixel_blames_the_file_not_a_strength_never_given(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """It said "Strength 1e-30 cannot change any pixel" with no strength given, and "Strength 8
    cannot change any pixel" of a file whose stated budget (64) is far above its pattern."""
    import dataclasses

    from spdesk.core.errors import ConfigError
    from spdesk.core.perturbation import save_perturbation

    samples.photo(inputs / "a.png")
    signs = np.sign(np.random.default_rng(0).standard_normal((3, 8, 8))).astype(np.float32)
    tiny = save_perturbation(tmp_path / "tiny.safetensors", signs * 1e-30 / 255, eps=1e-30)
    job = dataclasses.replace(settings, perturbation=tiny, strength=None, mode="universal")
    with pytest.raises(ConfigError, match=r"tiny\.safetensors's budget of 1e-30 cannot change"):
        _run([inputs], tmp_path / "out", job)
    lying = save_perturbation(tmp_path / "lying.safetensors", signs * 2 / 255, eps=64)
    job = dataclasses.replace(settings, perturbation=lying, strength=8, mode="universal")
    with pytest.raises(ConfigError, match=r"lying\.safetensors reaches only 0\.25 of its budget"):
        _run([inputs], tmp_path / "out", job)
    assert not (tmp_path / "out").exists()


def test_a_cmyk_jpeg_without_a_profile_is_converted_with_a_note(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    Image.new("CMYK", (40, 24), (0, 255, 255, 0)).save(inputs / "cmyk.jpg", quality=95)
    originals_guard.append(inputs)
    report = _run([inputs], tmp_path / "out", settings)
    assert not report.failed
    (done,) = report.done
    assert any("CMYK" in note and "without a colour profile" in note for note in done.notes)
    with Image.open(done.output) as output:
        assert output.mode == "RGB" and output.size == (40, 24)
        red, green, blue = output.getpixel((20, 12))  # type: ignore[misc]
    assert red > 180 and green < 90 and blue < 90  # pure red ink looks red


# --- files spdesk did not write -------------------------------------------------------------------
def test_overwrite_never_replaces_a_file_spdesk_did_not_write(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    import dataclasses
    import hashlib

    samples.photo(inputs / "x.jpg")
    samples.photo(inputs / "y.jpg", seed=1)
    out = tmp_path / "out"
    edit = dataclasses.replace(settings, suffix="_edit", collision="overwrite")
    first = _run([inputs], out, edit)
    assert len(first.done) == 2
    mine = samples.photo(out / "x_edit.jpg", seed=7)  # the user's own file under that name
    originals_guard.append(inputs)
    before = hashlib.sha256(mine.read_bytes()).hexdigest()
    again = _run([inputs], out, dataclasses.replace(edit, strength=4.0, redo=True))
    assert [e.source.name for e in again.done] == ["y.jpg"]  # spdesk's own output replaced
    (skipped,) = again.skipped
    assert skipped.source.name == "x.jpg" and "did not write" in skipped.reason
    assert hashlib.sha256(mine.read_bytes()).hexdigest() == before


@posix_only
def test_a_link_in_the_manifests_place_is_refused_and_what_it_points_at_left_alone(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    from spdesk.core.errors import OutputError

    samples.photo(inputs / "x.jpg")
    samples.photo(inputs / "y.jpg", seed=1)
    originals_guard.append(inputs)
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).symlink_to(inputs / "y.jpg")  # appending would change the photo
    with pytest.raises(OutputError, match="is a symbolic link") as raised:
        _run([inputs], out, settings)
    assert "Remove the link" in (raised.value.hint or "")
    assert sorted(p.name for p in out.iterdir()) == [".spdesk.lock", MANIFEST_NAME]


@posix_only
def test_a_linked_folder_inside_the_output_is_not_written_through(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    samples.photo(inputs / "x.jpg")
    samples.photo(inputs / "sub" / "y.jpg", seed=1)
    originals_guard.append(inputs)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(inputs)  # out/sub/y.protected.jpg would land among the photos
    report = _run([inputs], out, settings)
    assert [e.source.name for e in report.done] == ["x.jpg"]
    (failed,) = report.failed
    assert failed.source.name == "y.jpg"
    assert f"the folder {shown(out / 'sub')} in the output folder is a link to" in failed.reason
    assert sorted(p.name for p in inputs.rglob("*")) == ["sub", "x.jpg", "y.jpg"]
    _no_temps(inputs)


@posix_only
def test_an_output_folder_that_is_itself_a_link_is_written_into(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    samples.photo(inputs / "sub" / "y.jpg")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")  # the user's choice of folder
    report = _run([inputs], tmp_path / "out", settings)
    assert [e.source.name for e in report.done] == ["y.jpg"]
    assert (tmp_path / "elsewhere" / "sub" / "y.protected.jpg").is_file()


def test_overwrite_in_the_input_folder_leaves_a_user_file_named_like_an_output(
    inputs: Path, settings: ProtectSettings
) -> None:
    import dataclasses
    import hashlib

    samples.photo(inputs / "x.jpg")
    mine = samples.photo(inputs / "x_edit.jpg", seed=3)  # the user's, not spdesk's
    before = hashlib.sha256(mine.read_bytes()).hexdigest()
    edit = dataclasses.replace(
        settings, suffix="_edit", collision="overwrite", allow_output_in_input=True
    )
    report = _run([inputs], inputs, edit)
    assert not report.done
    assert hashlib.sha256(mine.read_bytes()).hexdigest() == before
    reasons = {e.source.name: e.reason for e in report.skipped}
    assert "did not write" in reasons["x.jpg"]


# --- bounded resources and clean errors -----------------------------------------------------------
def test_a_process_stopped_mid_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    # What a second Ctrl-C does: KeyboardInterrupt while a temporary file is complete but not
    # yet published (a worker's finished photo), on the way out of the process.
    code = (
        "import sys; from pathlib import Path; from spdesk.core.files import write_temp\n"
        "write_temp(Path(sys.argv[1]) / 'x.protected.png', b'complete data')\n"
        "raise KeyboardInterrupt\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, check=False
    )
    assert result.returncode != 0 and b"KeyboardInterrupt" in result.stderr
    assert list(tmp_path.iterdir()) == []


FILL_AND_PROTECT = """
import json, os, subprocess, sys
photo, probe, mount = sys.argv[1:4]
protect = [sys.executable, "-m", "spdesk", "protect", photo, "--json", "--out"]
first = json.loads(subprocess.run([*protect, probe], capture_output=True, text=True).stdout)
size = os.path.getsize(first["done"][0]["output"])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount], check=True)
free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
with open(os.path.join(mount, "filler"), "wb") as filler:  # leave two pages too few
    filler.write(bytes(free - (size - 8192)))
second = subprocess.run([*protect, os.path.join(mount, "out")], capture_output=True, text=True)
print(json.dumps({"size": size, "report": json.loads(second.stdout)}))
"""


@posix_only
def test_a_disk_that_fills_in_the_last_write_is_a_full_disk_not_a_damaged_output(
    tmp_path: Path,
) -> None:
    """A real 1 MiB tmpfs, mounted in a user and mount namespace of its own and filled so that
    the output's only write (under Pillow's 64 KB buffer) comes up short. Pillow ignores a
    short write on a descriptor; the job must still say the disk is full and stop there."""
    import shutil
    import subprocess
    import sys

    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode
    ):
        pytest.skip("needs unshare and unprivileged user namespaces to mount a small tmpfs")
    photo = tmp_path / "noise.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(photo, quality=95)
    (tmp_path / "mnt").mkdir()
    script = [sys.executable, "-c", FILL_AND_PROTECT, str(photo), str(tmp_path / "probe")]
    result = subprocess.run(
        ["unshare", "-rm", *script, str(tmp_path / "mnt")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert 8192 < outcome["size"] < 65536  # one write, and room for most of it
    report = outcome["report"]
    assert report["done"] == [] and len(report["failed"]) == 1
    assert "disk is full" in report["failed"][0]["reason"]
    assert "does not decode" not in report["failed"][0]["reason"]
    assert report["stopped"]


# --- the manifest on a disk that fills, cut mid-line --------------------------------------------
class _FillsUp:
    """A manifest file on a disk that fills in the middle of a write: half the bytes land."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: Any) -> int:
        self.real.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_disk_that_fills_while_a_manifest_line_is_written_leaves_no_torn_line(
    tmp_path: Path,
) -> None:
    """It left half a line, and closing flushed the rest into an "unexpected error"."""
    from spdesk.core.errors import DiskFullError
    from spdesk.core.manifest import DONE, Manifest

    manifest = Manifest(tmp_path).open()
    manifest.record("/photos/a.png", DONE, settings="s")
    manifest._handle = _FillsUp(manifest._handle)  # type: ignore[assignment]
    with pytest.raises(DiskFullError):
        manifest.record("/photos/b.png", DONE, settings="s")
    manifest.close(compact=False)  # no error: nothing is left to flush
    data = (tmp_path / MANIFEST_NAME).read_bytes()
    assert data.endswith(b"\n") and b"b.png" not in data
    assert list(read_job_manifest(tmp_path / MANIFEST_NAME)) == [
        manifest.source_id("/photos/a.png")
    ]


def test_a_manifest_cut_mid_line_gets_its_line_ended_before_the_next_job_appends(
    tmp_path: Path,
) -> None:
    from spdesk.core.manifest import DONE, Manifest

    whole = json.dumps({"source": "/photos/a.png", "status": DONE, "settings": "s", "time": 1.0})
    (tmp_path / MANIFEST_NAME).write_text(whole + "\n" + whole[:25])  # a power cut, mid-line
    manifest = Manifest(tmp_path).open()
    manifest.record("/photos/b.png", DONE, settings="s")
    # Read as the next run would after a kill (before this job compacts it).
    ids = sorted(map(manifest.source_id, ["/photos/a.png", "/photos/b.png"]))
    assert sorted(read_job_manifest(tmp_path / MANIFEST_NAME)) == ids
    manifest.close()


def test_an_output_whose_record_was_lost_is_recognised_not_written_again(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """A manifest cut mid-line lost a finished photo's record: the re-run wrote its very bytes
    a second time under "-2" and forgot the first copy."""
    for name in ("a.png", "b.png"):
        samples.photo(inputs / name)
    out = tmp_path / "out"
    _run([inputs], out, settings)
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-1]) + lines[-1][:-5])  # the last record, torn
    again = _run([inputs], out, settings)
    assert sorted(p.name for p in out.glob("*.png")) == ["a.protected.png", "b.protected.png"]
    assert [e.output.name for e in again.done] in (["a.protected.png"], ["b.protected.png"])
    entries = read_job_manifest(manifest)
    assert {Path(e["output"]).name for e in entries.values()} == {
        "a.protected.png",
        "b.protected.png",
    }


def test_a_log_file_on_a_full_disk_stays_quiet_and_is_not_cited(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python's logging printed "--- Logging error ---" and a traceback on the terminal, and
    the "unexpected error" message sent users to a log that holds nothing."""
    import logging

    from spdesk.cli.common import _bug_text
    from spdesk.core import logs

    monkeypatch.setattr(logs, "_configured", False)
    monkeypatch.setattr(logs, "log_written", True)
    logger = logging.getLogger("spdesk")
    before = list(logger.handlers)
    logs.setup_logging()
    handler = next(h for h in logger.handlers if h not in before)
    try:
        handler.stream = _FillsUp(handler.stream)  # type: ignore[attr-defined]
        logging.getLogger("spdesk.test").error("something happened")
    finally:
        logger.removeHandler(handler)
        handler.stream = handler.stream.real  # type: ignore[attr-defined]
        handler.close()
    assert "Logging error" not in capsys.readouterr().err
    assert "no log could be written" in _bug_text()
