"""``spdesk protect``: options, output modes, exit statuses, and resuming after SIGKILL."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spdesk.cli import main
from spdesk.core import keys
from spdesk.core.events import CancelToken
from spdesk.core.files import TEMP_SUFFIX
from spdesk.core.manifest import MANIFEST_NAME, read_job_manifest
from tests import protect_samples as samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def perturbation(tmp_path: Path) -> Path:
    folder = tmp_path / "perturbation"
    folder.mkdir()
    return samples.perturbation_file(folder)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    samples.photo(root / "a.jpg")
    samples.photo(root / "sub" / "b.png")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


def _protect(*args: str | Path) -> int:
    return main(["protect", *map(str, args)])


def test_protects_a_folder_with_plain_lines(
    tmp_path: Path,
    inputs: Path,
    perturbation: Path,
    capsys: pytest.CaptureFixture[str],
    originals_guard: list[Path],
) -> None:
    originals_guard.append(inputs)
    out = tmp_path / "out"
    assert _protect(inputs, "--out", out, "--perturbation", perturbation) == 0
    captured = capsys.readouterr()
    assert "2 protected, 0 skipped, 0 failed" in captured.out
    assert "(1 other file left out)" in captured.out
    assert "done     " in captured.err and "a.protected.jpg" in captured.err
    assert "left out " in captured.err and ".DS_Store" in captured.err
    assert (out / "a.protected.jpg").is_file() and (out / "sub" / "b.protected.png").is_file()
    assert _protect(inputs, "--out", out, "--perturbation", perturbation) == 0
    captured = capsys.readouterr()
    assert "0 protected, 2 skipped" in captured.out
    assert "skipped  " in captured.err and "a.jpg" in captured.err


def _slow_walk(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    import time

    import spdesk.core.jobs.job as job_module

    real = job_module.scan_inputs

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(seconds)  # a large folder on a network drive
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(job_module, "scan_inputs", slow)


def test_a_long_walk_of_the_inputs_is_said_and_a_short_one_is_not(
    tmp_path: Path,
    inputs: Path,
    perturbation: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The terminal stayed silent while the job walked its folders: seconds for 25,000
    photos, minutes on a network drive (scale audit)."""
    import spdesk.cli.protect as protect

    monkeypatch.setattr(protect, "WALK_NOTICE_S", 60.0)  # a loaded machine is not a long walk
    assert _protect(inputs, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    assert "Looking for photos" not in capsys.readouterr().err
    monkeypatch.setattr(protect, "WALK_NOTICE_S", 0.05)
    _slow_walk(monkeypatch, 0.5)
    assert _protect(inputs, "--out", tmp_path / "out2", "--perturbation", perturbation) == 0
    err = capsys.readouterr().err
    looking = f"Looking for photos in {inputs}… (Ctrl+C stops)"
    assert looking in err and err.index(looking) < err.index("Protecting 2 photos"), err


def test_loading_the_pattern_slowly_is_not_said_to_be_a_walk(
    tmp_path: Path,
    inputs: Path,
    perturbation: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk's clock started before the job checked its output folder and loaded its
    pattern: a cold start of over 2 s said "Looking for photos…" while nothing was walked."""
    import spdesk.cli.protect as protect
    from spdesk.core.jobs.job import ProtectJob

    real = ProtectJob._load_perturbation

    def slow(self: ProtectJob) -> object:
        time.sleep(1.0)
        return real(self)

    monkeypatch.setattr(ProtectJob, "_load_perturbation", slow)
    monkeypatch.setattr(protect, "WALK_NOTICE_S", 0.5)
    assert _protect(inputs, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    assert "Looking for photos" not in capsys.readouterr().err


def test_the_first_run_says_where_the_new_key_is_and_to_back_it_up(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Universal mode too: the key names the originals in the output folder's record."""
    assert _protect(inputs, "--out", tmp_path / "first", "--mode", "universal") == 0
    out = capsys.readouterr().out
    assert "2 protected" in out and "Made this install's protection key: " in out
    assert "Back up the protection key" in out and "protection.key" in out
    assert "recognise the photos it protected before" in out
    keys._made_here = None  # a later process: the key is there
    assert _protect(inputs, "--out", tmp_path / "second", "--mode", "photo", "--json") == 0
    assert "protection_key_made" not in json.loads(capsys.readouterr().out)


def test_the_json_of_a_first_photo_specific_run_names_the_new_key(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _protect(inputs, "--out", tmp_path / "out", "--mode", "photo", "--json") == 0
    made = json.loads(capsys.readouterr().out)["protection_key_made"]
    assert made.endswith("protection.key") and Path(made).is_file()


def test_json_summary_and_options(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples.gps_jpeg(inputs / "gps.jpg")
    out = tmp_path / "out"
    args = ["--perturbation", perturbation, "--format", "png", "--strip-metadata", "gps"]
    assert _protect(inputs, "--out", out, *args, "--strength", "4", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    counts = {"done": 3, "unchanged": 0, "skipped": 0, "left_out": 1, "failed": 0, "pending": 0}
    assert summary["counts"] == counts
    assert summary["settings"]["strength"] == 4.0 and summary["settings"]["format"] == "png"
    # Only what this mode uses: a one-pass run names no fine-tuning steps nor encoder.
    assert summary["settings"]["mode"] == "universal" and "generator" not in summary["settings"]
    assert not {"finetune_steps", "encoder", "objective"} & set(summary["settings"])
    for entry in summary["done"]:
        assert entry["output"].endswith(".protected.png") and entry["psnr_db"] > 30
    with Image.open(out / "gps.protected.png") as image, Image.open(inputs / "gps.jpg") as source:
        assert image.getexif()[0x010F] == "TestCam" and not image.getexif().get_ifd(0x8825)
        change = np.abs(np.asarray(image, np.int16) - np.asarray(source, np.int16))
    assert 0 < change.max() <= 4  # strength 4


def test_the_location_is_removed_by_default_and_the_summary_says_so(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    samples.gps_xmp_jpeg(folder / "beach.jpg")
    samples.photo(folder / "no-gps.png")
    base = [folder, "--perturbation", perturbation]
    assert _protect(*base, "--out", tmp_path / "out") == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "Location (GPS) removed from 1 photo (--strip-metadata none keeps it)." in said
    with Image.open(tmp_path / "out" / "beach.protected.jpg") as image:
        assert image.getexif()[0x010F] == "TestCam" and not image.getexif().get_ifd(0x8825)
        assert b"GPS" not in image.info["xmp"] and b"Holiday" in image.info["xmp"]
    kept = tmp_path / "kept"
    assert _protect(*base, "--out", kept, "--strip-metadata", "none", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["location_removed"] == 0 and summary["settings"]["strip_metadata"] == "none"
    with Image.open(kept / "beach.protected.jpg") as image:
        assert image.getexif().get_ifd(0x8825)[1] == "N"


def test_the_psnr_of_a_jpeg_copy_is_said_to_be_before_compression(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The figure is measured on the protected pixels before encoding: for a JPEG the file's
    own is lower (33.9 dB said, 32.0 dB in the file at quality 50), for a PNG it is the file's."""
    assert _protect(inputs, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    lines = {
        line.split()[1]: line for line in capsys.readouterr().err.splitlines() if "done" in line
    }
    jpeg = next(line for name, line in lines.items() if name.endswith("a.jpg"))
    png = next(line for name, line in lines.items() if name.endswith("b.png"))
    assert "dB before JPEG compression" in jpeg
    assert "dB" in png and "compression" not in png


def test_low_quality_warns(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--perturbation", perturbation, "--quality", "80", "--collision", "unique"]
    args += ["--workers", "1"]
    assert _protect(inputs, "--out", tmp_path / "out", *args) == 0
    assert "below 90" in capsys.readouterr().err


def test_some_failed_exits_1(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (inputs / "broken.jpg").write_bytes(b"")
    typo = tmp_path / "typo.jpg"
    assert _protect(inputs, typo, "--out", tmp_path / "out", "--perturbation", perturbation) == 1
    err = capsys.readouterr().err
    assert "FAILED   " in err and "broken.jpg is empty" in err
    assert f"{typo} does not exist" in err


def test_a_name_with_a_line_break_stays_on_its_own_line_of_the_report(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (inputs / "new\nline.jpg").write_bytes(b"")  # a broken photo named across two lines
    samples.photo(inputs / "esc\x1b[2J.jpg")  # and one that would clear a terminal's screen
    out = tmp_path / "out"
    assert (
        _protect(inputs, "--out", out, "--mode", "universal", "--perturbation", perturbation) == 1
    )
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert failed == [
        f"FAILED   {inputs}/new\\nline.jpg: new\\nline.jpg is empty (0 bytes): "
        "there is no photo in it."
    ]
    assert "\x1b" not in err and "esc\\x1b[2J.jpg" in err
    assert (out / "esc\x1b[2J.protected.jpg").is_file()  # the file itself keeps its real name


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--perturbation", "missing.safetensors"], "not found"),
        (["--fine-tune", "5"], "--fine-tune needs --encoder"),
        (["--fine-tune", "5", "--encoder", "x", "--objective", "pca+"], "--objective applies"),
        (["--quality", "0"], "Quality must be between 1 and 100"),
        (["--suffix", ""], "suffix"),
        (["--workers", "0"], "Workers must be between 1 and 32"),
        (["--fine-tune-batch", "4"], "--fine-tune-batch is only used with --fine-tune"),
        (
            ["--fine-tune", "5", "--encoder", "x", "--fine-tune-batch", "0", "--mode", "universal"],
            "batch must be between 1 and 256",
        ),
    ],
)
def test_could_not_run_exits_2(
    tmp_path: Path,
    inputs: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert _protect(inputs, "--out", tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "photo", "--perturbation", "p.safetensors"], "--perturbation only applies"),
        (["--randomize"], "--randomize only applies to the universal pattern"),  # photo: default
        (["--mode", "photo", "--objective", "encoder"], "--objective only applies"),
        (["--mode", "universal", "--seed", "3"], "--seed is only used with --randomize"),
        (["--perturbation", "p.safetensors", "--generator", "g"], "--generator is only used"),
        (["--mode", "universal", "--generator", "g"], "--generator is only used with --mode photo"),
        (["--mode", "universal", "--objective", "bogus"], "--objective applies to fine-tuning"),
        (["--format", "png", "--quality", "10"], "--quality applies to JPEG and WebP"),
        (["--suffix", ".pro\ntected"], "no slash or control character"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_options_the_mode_would_ignore_or_an_empty_place_are_refused_before_anything_is_written(
    tmp_path: Path,
    inputs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    """Photo mode once took --perturbation, --randomize, --seed and --objective silently and
    wrote the same pixels; an empty --out (an unset variable) wrote into the current folder."""
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert _protect(inputs, "--out", tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_an_empty_input_is_refused_not_read_as_the_current_folder(
    tmp_path: Path,
    inputs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(inputs)
    assert _protect("", "--out", tmp_path / "out") == 2
    assert "An INPUT is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("holds", [[], ["notes.txt"]], ids=["empty", "no photo"])
def test_a_folder_without_photos_says_so_and_makes_no_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], holds: list[str]
) -> None:
    """An empty folder made the output folder with a lock and an empty manifest in it, and
    said "0 protected … Output: out" as of a job that ran."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in holds:
        (folder / name).write_text("my notes")
    out = tmp_path / "out"
    assert _protect(folder, "--out", out) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "No photos to protect: nothing is written" in said
    assert "No photos: nothing was written to" in said and "Output:" not in said
    assert ("notes.txt" in said) == bool(holds)  # what was left out is still listed
    assert not out.exists()
    # With a missing input beside it too; --json says so (output_root names no folder)
    assert _protect(folder, tmp_path / "gone", "--out", out, "--json") == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["no_photos"] is True and summary["counts"]["failed"] == 1
    assert not out.exists()


def test_a_symbolic_link_loop_named_as_input_is_left_out_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop.name)  # leads to itself
    photo = tmp_path / "a.jpg"
    samples.photo(photo)
    assert _protect(loop, photo, "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "symbolic link loop" in captured.out + captured.err
    assert (tmp_path / "out" / "a.protected.jpg").exists()


def test_only_missing_inputs_exit_2_and_make_no_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    assert _protect(tmp_path / "missing-folder", "--out", out) == 2
    assert "missing-folder does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_the_started_line_counts_every_outcome_that_follows(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "six"
    for i in range(6):
        samples.photo(folder / f"{i}.png", width=40 + i)
    (folder / "notes.txt").write_text("not a photo")
    assert _protect(folder, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("Protecting 6 photos into ")
    assert lines[0].endswith("(1 other file left out; listed below)")
    words = ("done ", "skipped ", "left out ", "FAILED ")
    outcomes = [line for line in lines if line.startswith(words)]
    assert len(outcomes) == 6 + 1
    assert "6 protected, 0 skipped, 0 failed" in captured.out
    assert "(1 other file left out)" in captured.out


def test_a_folder_left_out_is_counted_as_a_folder_not_a_file(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hidden folder full of photos was "1 other file left out" at the start and the end."""
    folder = tmp_path / "in"
    samples.photo(folder / "a.png")
    (folder / "notes.txt").write_text("not a photo")
    for name in ("x.png", "y.png"):
        samples.photo(folder / ".hidden" / name)
    assert _protect(folder, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].endswith(
        "(1 other file and 1 folder left out; listed below)"
    )
    assert "(1 other file and 1 folder left out)" in captured.out


def test_photos_failing_their_header_are_not_promised_and_the_summary_names_each_failure(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys.install_key()  # made before (another run): no first-run notice in the summary
    keys._made_here = None
    folder = tmp_path / "four"
    samples.photo(folder / "a.jpg")
    samples.photo(folder / "b.png")
    (folder / "broken.jpg").write_text("plain text, whatever its name says")
    samples.truncated_jpeg(folder / "cut.jpg")  # a good header: found only when decoded
    out = tmp_path / "out"
    assert _protect(folder, "--out", out, "--perturbation", perturbation) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        f"Found 4 photos, 1 of them cannot be protected (reason below); protecting the other 3 "
        f"into {out}"
    )
    summary = captured.out.splitlines()
    assert summary[0].startswith("2 protected, 0 skipped, 2 failed in ")
    assert summary[1:3] == [
        "Failed (2):",
        f"  {folder / 'broken.jpg'}: broken.jpg is not a photo spdesk can read (its content is "
        "not JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC or AVIF, whatever its name says).",
    ]
    assert summary[3] == (
        f"  {folder / 'cut.jpg'}: cut.jpg is a damaged or truncated JPEG file and cannot be "
        "decoded."
    )  # Pillow's own words follow the advice, in the line printed when it failed
    assert len(summary) == 4


def test_a_folder_of_photos_none_readable_says_nothing_will_be_written(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "bad"
    (folder).mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert _protect(folder, "--out", out, "--perturbation", perturbation) == 1
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert (
        first == f"Found 1 photo and cannot protect it (reason below): nothing to write into {out}"
    )
    assert "0 protected, 0 skipped, 1 failed" in captured.out and "empty.jpg" in captured.out


def test_photos_none_readable_make_no_output_folder_as_the_start_line_says(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The start line said "nothing to write into out", and the job then made out with a lock
    and a manifest in it (holding the failures), and its summary said "Output: out"."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a photo")
    out = tmp_path / "out"
    assert _protect(folder, "--out", out, "--perturbation", perturbation) == 1
    said = capsys.readouterr()
    assert "cannot protect any (reasons below): nothing to write into" in said.err
    assert said.err.count("FAILED ") == 2
    assert "0 protected, 0 skipped, 2 failed in " in said.out
    assert f"Nothing was written to {out}" in said.out and "Output:" not in said.out
    assert not out.exists()
    assert _protect(folder, "--out", out, "--perturbation", perturbation, "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["failed"] == 2 and [f["source"] for f in summary["failed"]] == [
        str(folder / "empty.jpg"),
        str(folder / "text.jpg"),
    ]
    assert summary["nothing_written"] is True and summary["no_photos"] is False
    assert not out.exists()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--address", "auto"], "--address only applies with --engine ray."),
        (["--num-cpus", "2", "--num-gpus", "0"], "--num-cpus, --num-gpus only apply with"),
    ],
)
def test_ray_options_without_the_ray_engine_are_refused_in_plain_english(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: list[str], said: str
) -> None:
    """One option alone was told "--address only apply with --engine ray"."""
    folder = tmp_path / "photos"
    folder.mkdir()
    assert _protect(folder, "--out", tmp_path / "out", *given) == 2
    assert said in capsys.readouterr().err


def test_the_summary_names_at_most_twenty_failures_and_says_how_many_more(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys.install_key()  # made before (another run): no first-run notice in the summary
    keys._made_here = None
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(23):
        (folder / f"bad{i:02}.jpg").write_text("not a photo")
    assert _protect(folder, "--out", tmp_path / "out", "--perturbation", perturbation) == 1
    summary = capsys.readouterr().out.splitlines()
    assert summary[1] == "Failed (23):"
    assert len(summary) == 2 + 20 + 1 and "bad19.jpg" in summary[-2]
    assert summary[-1] == "  ... and 3 more (each printed above with its reason)"


def test_a_run_refused_for_taken_names_says_which_option_and_keeps_the_first_run(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    first = [inputs, "--out", out, "--perturbation", perturbation]
    assert _protect(*first) == 0
    capsys.readouterr()
    assert _protect(*first, "--strength", "4", "--collision", "skip") == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "2 photos skipped because the output name is taken" in said
    assert "--collision unique" in said and "--collision overwrite" in said
    # The refused run changed nothing: a default run finds the first run's copies done...
    assert _protect(*first, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["counts"]["skipped"] == 2
    assert {entry["kind"] for entry in again["skipped"]} == {"already-done", "excluded"}
    # ...and "overwrite" still has the proof that spdesk wrote them.
    assert _protect(*first, "--strength", "4", "--collision", "overwrite", "--json") == 0
    replaced = json.loads(capsys.readouterr().out)
    assert sorted(Path(e["output"]).name for e in replaced["done"]) == [
        "a.protected.jpg",
        "b.protected.png",
    ]


def test_protect_help_says_how_links_and_formats_are_handled() -> None:
    from spdesk.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    protect = subparsers.choices["protect"]
    text = " ".join(protect.format_help().split())
    assert "follow symbolic links found inside the input folders" in text
    assert "write every output in this format (default: each photo's own" in text


def test_protect_help_groups_its_options_by_what_they_are_for() -> None:
    from spdesk.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    protect = subparsers.choices["protect"]
    titles = {group.title: group._group_actions for group in protect._action_groups}
    # Only help and the one required option stand outside a group of their own.
    assert {a.dest for a in titles["options"]} == {"help", "out"}
    grouped = {a.dest for title, actions in titles.items() if title != "options" for a in actions}
    assert {"mode", "strength", "device"} <= {a.dest for a in titles["protection"]}
    assert {"fine_tune", "encoder"} <= grouped and {"engine", "num_gpus"} <= grouped
    assert [t for t in titles if t not in ("positional arguments", "options")] == [
        "protection",
        "fine-tuning (stronger; quick on a CUDA GPU)",
        "protected copies",
        "what is read",
        "the job",
        "a Ray cluster",
    ]


def test_output_inside_input_exits_2(
    inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _protect(inputs, "--out", inputs / "out", "--perturbation", perturbation) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_leading_dash_names_after_double_dash(
    tmp_path: Path, perturbation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dash"
    samples.photo(folder / "-photo.png")
    monkeypatch.chdir(folder)
    assert (
        _protect("--out", tmp_path / "out", "--perturbation", perturbation, "--", "-photo.png") == 0
    )
    assert (tmp_path / "out" / "-photo.protected.png").is_file()


def test_progress_bar_on_a_terminal(
    tmp_path: Path, inputs: Path, perturbation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert _protect(inputs, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    text = screen.getvalue()
    assert "\r[" in text and "100.0%" in text and "2/2" in text
    assert "done     " not in text  # the bar replaces per-photo lines on a terminal


def test_the_progress_bar_shows_a_name_holding_escape_codes_escaped(
    tmp_path: Path, perturbation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is text from anyone (a download, a shared folder): its escape codes must not
    reach the terminal through the bar (they could recolour or rewrite the screen)."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    samples.photo(tmp_path / "in" / "\x1b[2Jwiped.png")
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert _protect(tmp_path / "in", "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    assert "\x1b" not in screen.getvalue() and "\\x1b[2Jwiped.png" in screen.getvalue()


def test_cancel_exits_130_with_summary(
    tmp_path: Path,
    inputs: Path,
    perturbation: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spdesk.core.jobs import ProtectJob

    token, walk = CancelToken(), ProtectJob._discover

    def walk_then_cancel(self: ProtectJob, *args: Any) -> Any:
        found = walk(self, *args)
        token.cancel()  # Ctrl+C once the photos are found
        return found

    monkeypatch.setattr("spdesk.cli.protect.cancel_on_sigint", lambda: token)
    monkeypatch.setattr(ProtectJob, "_discover", walk_then_cancel)
    out = tmp_path / "out"
    assert _protect(inputs, "--out", out, "--perturbation", perturbation) == 130
    assert "2 not done" in capsys.readouterr().err
    entries = read_job_manifest(out / MANIFEST_NAME)
    assert sorted(e["status"] for e in entries.values()) == ["pending", "pending"]


def test_a_cancel_while_looking_for_photos_exits_130_and_writes_nothing(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    token = CancelToken()
    token.cancel()
    monkeypatch.setattr("spdesk.cli.protect.cancel_on_sigint", lambda: token)
    out = tmp_path / "out"
    assert _protect(inputs, "--out", out, "--perturbation", perturbation) == 130
    err = capsys.readouterr().err
    assert "Cancelled while looking for photos: nothing was protected or written." in err
    assert not out.exists()


_DIES_AFTER_THIRD_DONE = """
import os, signal, sys
from spdesk.core import manifest
from spdesk.cli import main

record, done = manifest.Manifest.record, []

def record_then_die(self, source, status, **fields):
    record(self, source, status, **fields)
    done.extend([source] if status == manifest.DONE else [])
    if len(done) == 3:
        os.kill(os.getpid(), signal.SIGKILL)

manifest.Manifest.record = record_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_killed_mid_job_then_rerun_completes(
    tmp_path: Path, perturbation: Path, originals_guard: list[Path]
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        noise = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / f"{i:02d}.png", compress_level=1)
    originals_guard.append(folder)
    out = tmp_path / "out"
    arguments = ["protect", str(folder), "--out", str(out), "--perturbation", str(perturbation)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The process kills itself with SIGKILL right after the manifest records its third photo:
    # a crash at a known point mid-job, with no polling race against a fast run.
    killed = subprocess.run(
        [sys.executable, "-c", _DIES_AFTER_THIRD_DONE, *arguments],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed mid-job, not finished
    finished_before = sum(
        e["status"] == "done" for e in read_job_manifest(out / MANIFEST_NAME).values()
    )
    assert finished_before == 3

    rerun = subprocess.run(
        [sys.executable, "-m", "spdesk", *arguments, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts["done"] + counts["skipped"] == 30 and counts["failed"] == 0
    assert counts["skipped"] >= finished_before  # nothing finished was redone
    outputs = sorted(out.glob("*.protected.png"))
    assert len(outputs) == 30
    for path in outputs:
        with Image.open(path) as image:
            image.load()
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))


def test_universal_protection_never_imports_torch(
    tmp_path: Path, inputs: Path, perturbation: Path
) -> None:
    code = (
        "import sys; from spdesk.cli import main; "
        f"rc = main(['protect', {str(inputs)!r}, '--out', {str(tmp_path / 'out')!r}, "
        f"'--perturbation', {str(perturbation)!r}]); "
        "sys.exit(rc if rc else 3 * ('torch' in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()  # 3: torch was imported


def test_a_photo_too_small_to_protect_fails_with_its_size_and_gets_no_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1x1 photo was written unchanged as dot.protected.png, "done"."""
    folder = tmp_path / "in"
    samples.photo(folder / "photo.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "dot.png")
    Image.new("RGB", (40, 7), (20, 10, 10)).save(folder / "strip.png")  # 1x40 "protected" too
    assert _protect(folder, "--out", tmp_path / "out", "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["counts"]["done"], summary["counts"]["failed"]) == (1, 2)
    reasons = sorted(f["reason"] for f in summary["failed"])
    assert reasons[0].startswith("dot.png is 1x1 pixels: too small to protect"), reasons
    assert reasons[1].startswith("strip.png is 40x7 pixels: too small to protect"), reasons
    assert "at least 8 pixels on each side" in reasons[0]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["photo.protected.png"]


def test_a_copy_the_protection_cannot_change_is_counted_unchanged_not_protected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    samples.photo(folder / "photo.png")
    Image.new("RGB", (9, 9), (200, 10, 10)).save(folder / "dot.png")
    samples.unchanged_at(monkeypatch, (9, 9))
    assert _protect(folder, "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    reason = "too small or flat to carry the protection"
    assert f"1 protected, 1 unchanged ({reason}), 0 skipped" in captured.out
    assert f"dot.protected.png (unchanged: {reason})" in captured.err
    assert _protect(folder, "--out", tmp_path / "json", "--json") == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert (counts["done"], counts["unchanged"]) == (2, 1)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_pixel_limit_that_is_not_a_number_is_refused(
    tmp_path: Path, inputs: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    samples.photo(inputs / "a.png")
    assert _protect(inputs, "--out", tmp_path / "out", "--max-megapixels", value) == 2
    assert "--max-megapixels must be a number of megapixels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_eta_after_a_resume_counts_only_the_photos_worked_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two of four photos were already protected (skipped at once); the third took a minute:
    the last one is a minute away, not 20 s (a minute over three photos) or 00:00."""
    from spdesk.cli.protect import _Printer
    from spdesk.core import jobs

    now = [0.0]
    printer = _Printer(quiet=False, now=lambda: now[0])
    etas: list[float | None] = []
    monkeypatch.setattr(
        printer.progress, "update", lambda label, done, total, eta=None: etas.append(eta)
    )
    printer(jobs.JobStarted(total=4, output_root=Path("out")))
    for position in (1, 2):
        printer(
            jobs.FileSkipped(
                Path(f"{position}.jpg"), jobs.SkipReason.ALREADY_DONE, "already protected",
                position=position, count=4,
            )
        )  # fmt: skip
    now[0] = 60.0
    printer(jobs.FileDone(Path("3.jpg"), Path("out/3.jpg"), position=3, count=4))
    assert etas[-1] == pytest.approx(60.0)


def test_a_log_is_told_a_slow_photos_stage_after_a_quiet_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fine-tuned photo takes minutes on a CPU: a log (not a terminal) said nothing until it
    was done (training audit). Its stage is said once the log has been quiet 30 s, not on
    every step."""
    from spdesk.cli.protect import QUIET_LOG_S, _Printer
    from spdesk.core import jobs

    now = [0.0]
    printer = _Printer(quiet=False, now=lambda: now[0])
    assert not printer.progress.tty  # pytest captures stderr
    said: list[str] = []
    monkeypatch.setattr(
        printer.progress, "update", lambda label, done, total, eta=None: said.append(label)
    )
    printer(jobs.JobStarted(total=2, output_root=Path("out")))
    said.clear()

    def step(at: float) -> None:
        now[0] = at
        printer(jobs.FileProgress(Path("a.jpg"), 1.5, 3, "fine-tuning", position=1, count=2))

    step(1.0)
    step(QUIET_LOG_S - 1)
    assert said == []
    step(QUIET_LOG_S + 1)
    assert said == ["0/2 a.jpg (fine-tuning)"]
    step(QUIET_LOG_S + 2)  # not again at once
    assert len(said) == 1


def test_an_output_folder_that_cannot_be_made_names_the_folder_at_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a file it said "Could not write .../spdesk-manifest.jsonl: Not a directory.", and
    under a read-only folder it called the folder to be made, which did not exist, read-only."""
    photos = tmp_path / "photos"
    samples.photo(photos / "a.png", 48, 40)
    (tmp_path / "notes").write_text("a file where a folder was meant")
    assert main(["protect", str(photos), "--out", str(tmp_path / "notes" / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'notes'} is a file, not a folder" in err and "Not a directory" not in err

    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def refused_under_locked(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refused_under_locked)
    assert main(["protect", str(photos), "--out", str(locked / "out")]) == 2
    err = capsys.readouterr().err
    assert f"The output folder {locked / 'out'} cannot be made: the folder {locked} is" in err
    assert "--out FOLDER" not in err
    assert not (locked / "out").exists()

    def refused_as_proc_does(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == locked:  # /proc and /sys refuse new folders with odd errors
            raise FileNotFoundError(2, "No such file or directory", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refused_as_proc_does)
    assert main(["protect", str(photos), "--out", str(locked / "out")]) == 2
    err = capsys.readouterr().err  # it named the record: "Could not write .../spdesk-manif…"
    assert f"The output folder {locked / 'out'} cannot be made in {locked}: No such" in err
    assert "manifest" not in err and "Choose an output folder" in err


def test_overwrite_refused_for_a_users_file_does_not_advise_overwrite(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "run again ... or --collision overwrite", which the user had just passed."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.protected.jpg").write_bytes(b"the user's own file")
    args = [inputs, "--out", out, "--perturbation", perturbation, "--collision", "overwrite"]
    assert _protect(*args) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "1 photo skipped because a file spdesk did not write has the output name" in said
    assert "--collision unique" in said and "--collision overwrite" not in said
    assert (out / "a.protected.jpg").read_bytes() == b"the user's own file"


def test_a_lossless_webp_copy_is_not_said_to_be_compressed(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    samples.photo(photos / "lossless.webp", 48, 40, fmt="WEBP", lossless=True)
    samples.photo(photos / "lossy.webp", 48, 40, fmt="WEBP", quality=90)
    assert _protect(photos, "--out", tmp_path / "out", "--perturbation", perturbation) == 0
    done = [line for line in capsys.readouterr().err.splitlines() if "done" in line]
    lossless = next(line for line in done if "lossless.webp" in line.split()[1])
    lossy = next(line for line in done if "lossy.webp" in line.split()[1])
    assert "dB" in lossless and "compression" not in lossless
    assert "dB before WebP compression" in lossy


def test_perturbation_given_by_its_library_name(
    tmp_path: Path, inputs: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk train --library NAME` saves a pattern the command line can then name."""
    from spdesk.core.perturbation import library_path_for

    library_path_for("mine").parent.mkdir(parents=True, exist_ok=True)
    library_path_for("mine").write_bytes(perturbation.read_bytes())
    out = tmp_path / "out"
    assert _protect(inputs, "--out", out, "--perturbation", "mine") == 0
    assert "2 protected" in capsys.readouterr().out
    assert _protect(inputs, "--out", tmp_path / "out2", "--perturbation", "theirs") == 2
    error = capsys.readouterr().err
    assert "not found: theirs" in error and "by name (newest first): mine." in error


def test_a_photo_edited_since_its_copy_gets_a_new_copy_that_says_the_old_one_stays(
    tmp_path: Path, perturbation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An edited original got NAME.protected-2 with no word, while the name that looks like its
    copy kept the copy of the photo before the edit (cropped out for privacy, say)."""
    photos = tmp_path / "in"
    edited = samples.photo(photos / "a.png")
    samples.photo(photos / "b.png", height=40)
    out = tmp_path / "out"
    args = [photos, "--out", out, "--perturbation", perturbation, "--json"]
    assert _protect(*args) == 0
    capsys.readouterr()
    old_copy = (out / "a.protected.png").read_bytes()
    os.utime(photos / "b.png", ns=(1, 1))  # touched, not changed: its copy is the same bytes
    samples.photo(edited, width=40)  # cropped
    assert _protect(*args) == 0
    done = {Path(e["source"]).name: e for e in json.loads(capsys.readouterr().out)["done"]}
    assert Path(done["a.png"]["output"]).name == "a.protected-2.png"
    assert done["a.png"]["notes"] == [
        "the copy made from the photo before it changed, a.protected.png, stays as it is; this "
        "one is a.protected-2.png"
    ]
    assert (out / "a.protected.png").read_bytes() == old_copy
    assert Path(done["b.png"]["output"]).name == "b.protected.png"  # the same copy, adopted
    assert done["b.png"]["notes"] == []
    assert _protect(*args, "--strength", "4") == 0  # other settings: both are made again
    done = {Path(e["source"]).name: e for e in json.loads(capsys.readouterr().out)["done"]}
    assert done["b.png"]["notes"] == [
        "the copy made with other settings, b.protected.png, stays as it is; this one is "
        "b.protected-2.png"
    ]
