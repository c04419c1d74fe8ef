"""Inputs and faults a hostile user would try: odd names, special files, files spdesk did not write.

Each test pins one case of issue 11: originals are hashed before and after (``originals_guard``),
outputs are decoded, and the report says what happened to every input.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from spdesk.core.files import TEMP_SUFFIX, name_max, shown
from spdesk.core.jobs import JobReport, ProtectJob, ProtectSettings
from spdesk.core.manifest import MANIFEST_NAME, read_manifest
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
    assert str(odd) in read_manifest(out / MANIFEST_NAME)  # keys are absolute paths
    again = _run([inputs], out, settings)
    assert not again.done and len(again.skipped) == 2 and len(again.failed) == 1


def test_shown_escapes_only_bytes_that_are_not_utf8() -> None:
    assert shown(Path(os.fsdecode(b"caf\xe9/\xc3\xa9t\xc3\xa9.png"))) == "caf\\xe9/été.png"
    assert shown("plain.png") == "plain.png"


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
    recorded = read_manifest(out / MANIFEST_NAME)
    assert recorded[str(long_a)]["output"] == outputs[long_a].name
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
