"""``spdesk train`` and ``spdesk eval`` end to end with tiny models; plain errors, exit codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train import write_photos
from tiny_sd import save_tiny_vae

from spdesk.cli import main
from spdesk.core.events import CancelToken
from spdesk.core.perturbation import load_perturbation


@pytest.fixture(autouse=True)
def small_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-out check at a 64 px editor: a 512 px one costs the tiny VAE a minute."""
    import spdesk.core.train as train

    monkeypatch.setattr(train, "EDITOR_SIZE", 64)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    return write_photos(root / "photos"), save_tiny_vae(root / "sd")


def test_a_one_step_run_is_warned_about_in_the_singular() -> None:
    """``spdesk train ... --steps 1`` warned "1 steps is probably too short"."""
    from spdesk.core.train_advice import MIN_USEFUL_STEPS, short_run_warning

    assert short_run_warning(1).startswith("1 step is probably too short to beat random noise")
    assert short_run_warning(3).startswith("3 steps is probably too short")
    assert short_run_warning(MIN_USEFUL_STEPS) == ""


def test_a_missing_named_encoder_is_said_before_any_note_on_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = write_photos(tmp_path / "photos")
    argv = ["train", str(photos), "--out", str(tmp_path / "p.safetensors")]
    assert main([*argv, "--encoder", "taesd", "--steps", "3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is not installed" in err and "spdesk models download --for taesd" in err
    # Notes on a run that cannot start (its crop size, its length) came first, then the error.
    assert "Note:" not in err and "Warning:" not in err
    assert not (tmp_path / "p.safetensors").exists()


def test_one_training_photo_is_said_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = write_photos(tmp_path / "photos", count=2)  # the least: one trains, one is held out
    vae = save_tiny_vae(tmp_path / "sd")
    argv = ["train", str(photos), "--out", str(tmp_path / "p.safetensors"), "--encoder", str(vae)]
    assert main([*argv, "--steps", "1", "--batch", "1", "--size", "32", "--val-every", "0"]) == 0
    assert "Training on 1 photo (1 held out)" in capsys.readouterr().err


def test_train_then_eval_json(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    out = tmp_path / "p.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "3"]
    argv += ["--batch", "2", "--size", "32", "--eps", "6", "--robust", "jpeg,crop", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "3 steps is probably too short to beat random noise" in captured.err
    assert 0 < summary["visibility"]["ssimulacra2"] < 100  # how visible, on held-out photos
    assert summary["metadata"]["visibility"] == summary["visibility"]
    assert summary["product_gain"]["editor"] == 64 and summary["product_gain"]["gain"] > 0
    assert summary["path"] == str(out) and summary["metadata"]["transforms"] == ["jpeg", "crop"]
    assert load_perturbation(out).eps == 6
    argv = ["eval", "--perturbation", str(out), "--photos", str(photos), "--encoder", str(vae)]
    argv += ["--sizes", "64", "--attacks", "jpeg75,average", "--attack-photos", "2"]
    assert main([*argv, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in table["candidates"]]
    assert names == ["universal", "random signs", "uniform noise"]
    assert table["photos"] == 4 and table["attack_photos"] == 2 and table["sizes"] == [64]
    universal = table["candidates"][0]
    assert set(universal["strength"]) == {"64/clean", "64/jpeg75", "64/average"}
    assert 0 < universal["ssimulacra2"] < 100 and 0 < universal["flip"] < 1
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "kept after attack" in text and "JPEG q50 (reference)" in text


def test_train_on_a_cpu_defaults_to_small_crops_and_says_so(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    argv = ["train", str(photos), "--encoder", str(vae), "--steps", "1", "--batch", "2"]
    argv += ["--device", "cpu", "--json"]
    assert main([*argv, "--out", str(tmp_path / "cpu.safetensors")]) == 0
    captured = capsys.readouterr()
    note = captured.err
    assert "training on the CPU at 128 px crops" in note and "--size 512" in note
    assert json.loads(captured.out)["metadata"]["transforms"] == []  # no edits unless asked
    assert load_perturbation(tmp_path / "cpu.safetensors").delta.shape[-2:] == (128, 128)
    assert main([*argv, "--out", str(tmp_path / "mine.safetensors"), "--size", "32"]) == 0
    assert "128 px" not in capsys.readouterr().err  # a size the user chose is not remarked on
    assert load_perturbation(tmp_path / "mine.safetensors").delta.shape[-2:] == (32, 32)


def test_resuming_without_size_takes_the_checkpoints_crop_size(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    checkpoint = tmp_path / "run.ckpt.safetensors"
    argv = ["train", str(photos), "--encoder", str(vae), "--steps", "52", "--batch", "1"]
    argv += ["--device", "cpu", "--checkpoint", str(checkpoint), "--val-every", "0"]
    out = tmp_path / "p.safetensors"
    assert main([*argv, "--out", str(out), "--size", "32"]) == 0  # a checkpoint at step 50
    # Started at 32 px; the CPU default is 128 px: without --size the checkpoint's size is used.
    assert main([*argv, "--out", str(out), "--resume", "--force"]) == 0
    assert "resuming at the checkpoint's 32 px crops" in capsys.readouterr().err
    assert load_perturbation(out).delta.shape[-2:] == (32, 32)
    assert main([*argv, "--out", str(out), "--resume", "--force", "--size", "40"]) == 2
    assert "size 32 in the checkpoint, 40 now" in capsys.readouterr().err


def test_train_with_activation_checkpointing_gives_the_same_perturbation(
    assets: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, vae = assets
    argv = ["train", str(photos), "--encoder", str(vae), "--steps", "2", "--batch", "2"]
    argv += ["--size", "32", "--objective", "latent"]
    assert main([*argv, "--out", str(tmp_path / "plain.safetensors")]) == 0
    assert main([*argv, "--out", str(tmp_path / "saving.safetensors"), "--checkpointing"]) == 0
    plain = load_perturbation(tmp_path / "plain.safetensors").delta
    saving = load_perturbation(tmp_path / "saving.safetensors").delta
    assert (plain != 0).any()
    assert abs(plain - saving).max() < 1e-6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--robust", "rotate"], "Unknown robustness"),
        (["--size", "30"], "multiple of 8"),
        (["--objective", "pca+", "--encoder", "{tae}"], "posterior"),
        (["--encoder", "/no/such/encoder.pth"], "not found"),
        (["--eps", "0"], "eps must be from 1 to 64 8-bit steps, got 0."),
        (["--eps", "300"], "eps must be from 1 to 64 8-bit steps, got 300."),
        (["--eps", "nan"], "eps must be from 1 to 64 8-bit steps, got nan."),
        (["--size", "100000"], "from 8 to 2048"),
        (["--steps", "0"], "steps must be from 1"),
        (["--batch", "100000"], "batch must be from 1 to 256"),
        (["--split-seed", "-1"], "split_seed must be from 0 to 4294967295"),
        # Refused up front: a training ran, then "unexpected error (ValueError: Overflow when
        # unpacking long long)", or "the ... file is probably damaged" when none was involved.
        (["--seed", "99999999999999999999999"], "seed must be from 0 to 4294967295"),
        (["--step-size", "nan"], "step size must be positive and finite, got nan"),
        (["--step-size", "inf"], "step size must be positive and finite, got inf"),
    ],
)
def test_train_errors_are_plain(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    import torch

    from spdesk.core.encoders.tiny import taesana_encoder

    photos, vae = assets
    tae = tmp_path / "taesana_encoder.pth"
    torch.save(taesana_encoder().state_dict(), tae)
    extra = [e.replace("{tae}", str(tae)) for e in extra]
    argv = ["train", str(photos), "--out", str(tmp_path / "x.safetensors"), "--encoder", str(vae)]
    assert main([*argv, "--steps", "1", "--size", "32", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


def test_eval_refuses_a_bad_perturbation(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a perturbation")
    argv = ["eval", "--perturbation", str(bad), "--photos", str(photos), "--encoder", str(vae)]
    assert main(argv) == 2
    assert "pickle" in capsys.readouterr().err


def test_train_and_eval_skip_and_list_bad_photos_like_protect(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from tests import protect_samples as samples

    photos, vae = assets
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    samples.truncated_jpeg(folder / "half.jpg")
    samples.png_bomb(folder / "bomb.png")
    (folder / "notes.txt").write_text("not a photo")
    out = tmp_path / "p.safetensors"
    argv = ["train", str(folder), "--out", str(out), "--encoder", str(vae), "--steps", "2"]
    assert main([*argv, "--batch", "2", "--size", "32", "--max-photos", "8"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Skipped" in text and "half.jpg" in text and "truncated" in text
    assert "bomb.png" in text and "too large" in text
    assert f"Skipped {folder / 'notes.txt'}" not in text  # not a photo that failed, but:
    assert f"Left out {folder / 'notes.txt'}: " in text  # not a photo: as protect lists it
    argv = ["eval", "--perturbation", str(out), "--photos", str(folder), "--encoder", str(vae)]
    assert main([*argv, "--sizes", "64", "--json"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["photos"] == 6
    assert "half.jpg" in captured.err and "bomb.png" in captured.err
    # Listed where a script reads (they were on stderr only).
    skipped = {Path(s["path"]).name: s["reason"] for s in printed["skipped"]}
    assert sorted(skipped) == ["bomb.png", "half.jpg"] and "truncated" in skipped["half.jpg"]


def test_eval_measures_max_photos_readable_ones_when_the_first_files_are_broken(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-photos was taken from the files before reading them: two broken files first and
    --max-photos 2 said "No readable photos found" in a folder of readable ones."""
    import shutil

    from tests import protect_samples as samples

    photos, vae = assets
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    for name in ("0000-half.jpg", "0001-half.jpg"):  # listed first
        samples.truncated_jpeg(folder / name)
    argv = ["eval", "--photos", str(folder), "--encoder", str(vae), "--sizes", "64"]
    assert main([*argv, "--max-photos", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["photos"] == 2
    skipped = sorted(Path(s["path"]).name for s in printed["skipped"])
    assert skipped == ["0000-half.jpg", "0001-half.jpg"]


def test_the_check_is_estimated_for_a_taesd_file_given_by_its_path(
    assets: tuple[Path, Path],
    taesd_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the names "taesd" and "sd15" had an estimate: `--encoder path/to/taesd.safetensors`
    said "Checking it on ... held-out photos" with no "(about ...)"."""
    import spdesk.core.train as train
    from spdesk.core.speed_figures import PATTERN_CHECK_SECONDS_CPU

    # The effect only: a few seconds on the held-out photos at a 64 px editor.
    monkeypatch.setattr(train, "visibility_available", lambda: False)
    photos, _ = assets
    argv = ["train", str(photos), "--encoder", str(taesd_path), "--steps", "1", "--size", "32"]
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "p.safetensors")]) == 0
    said = capsys.readouterr()
    seconds = PATTERN_CHECK_SECONDS_CPU["taesd"]
    assert "held-out photo" in said.out + said.err
    assert f"at a 64 px editor (about {seconds:.0f} s)." in said.out + said.err


def test_train_lists_the_files_it_left_out_as_protect_does(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """spdesk protect prints a "left out" line for each file that is not a photo; spdesk train
    said nothing of a pattern file or a sidecar in its folder."""
    import shutil

    photos, vae = assets
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "mine.safetensors").write_bytes(b"\0" * 16)
    (folder / "0000.xmp").write_text("<x:xmpmeta/>")
    argv = ["train", str(folder), "--encoder", str(vae), "--steps", "1", "--size", "32"]
    assert main([*argv, "--out", str(tmp_path / "p.safetensors")]) == 0
    said = capsys.readouterr()
    printed = said.out + said.err
    assert f"Left out {folder / '0000.xmp'}: sidecar file (metadata), not a photo" in printed
    assert f"Left out {folder / 'mine.safetensors'}: a pattern or model file" in printed
    # The start line counts them, as protect's does; a script reads them under --json.
    assert "(2 other files left out; listed below)." in printed
    from tests import protect_samples as samples

    samples.truncated_jpeg(folder / "half.jpg")
    argv += ["--out", str(tmp_path / "q.safetensors"), "--json"]
    assert main(argv) == 0
    said = capsys.readouterr()
    summary = json.loads(said.out)
    left_out = {Path(item["path"]).name: item["reason"] for item in summary["left_out"]}
    assert sorted(left_out) == ["0000.xmp", "mine.safetensors"]
    assert left_out["0000.xmp"] == "sidecar file (metadata), not a photo"
    [skipped] = summary["skipped_photos"]
    assert skipped["name"] == "half.jpg" and "truncated" in skipped["reason"]


def test_train_out_is_checked_before_training(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests import protect_samples as samples

    photos, vae = assets
    photo = samples.photo(tmp_path / "holiday.jpg")
    before = photo.read_bytes()
    argv = ["train", str(photos), "--encoder", str(vae), "--steps", "1", "--size", "32"]
    assert main([*argv, "--out", str(photo)]) == 2
    captured = capsys.readouterr()
    assert "not an spdesk perturbation" in captured.err and "--force" in captured.err
    assert "Training on" not in captured.out + captured.err  # refused before any work
    assert photo.read_bytes() == before
    assert main([*argv, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "is a folder" in captured.err and "Training on" not in captured.out + captured.err
    assert main([*argv, "--out", str(photo), "--force"]) == 0  # told to: replaced
    assert load_perturbation(photo).eps == 8
    capsys.readouterr()
    trained = photo.read_bytes()
    # An earlier pattern was replaced without a word; spdesk never replaces a file silently.
    assert main([*argv, "--out", str(photo)]) == 2
    captured = capsys.readouterr()
    assert f"{photo} already holds a pattern (“sd15-vae-eps8”), so it was not replaced" in (
        captured.err
    )  # the name the pattern was given (the default's, here)
    assert "add --force to replace it" in captured.err
    assert "Training on" not in captured.out + captured.err and photo.read_bytes() == trained
    assert "Warning" not in captured.err  # said alone, not after the notes on a 1-step run


@pytest.mark.parametrize("json_out", [False, True])
def test_train_and_eval_show_progress_on_a_terminal_and_stay_quiet_under_json(
    assets: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    json_out: bool,
) -> None:
    """Issue 14: ``spdesk eval`` printed nothing for 3.5 minutes."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    photos, vae = assets
    out = tmp_path / "p.safetensors"
    flags = ["--json"] if json_out else []
    screens = []
    train = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "3"]
    evaluate = ["eval", "--perturbation", str(out), "--photos", str(photos), "--encoder", str(vae)]
    for argv in (
        [*train, "--batch", "2", "--size", "32"],
        [*evaluate, "--sizes", "64", "--attacks", "jpeg75"],
    ):
        screen = Terminal()
        monkeypatch.setattr(sys, "stderr", screen)
        assert main([*argv, *flags]) == 0
        screens.append(screen.getvalue())
    capsys.readouterr()
    for text in screens:  # a live bar on a terminal; only the JSON (on stdout) under --json
        assert ("\r[" in text and "100.0%" in text) != json_out, text


def test_loading_the_encoder_keeps_diffusers_advice_off_the_terminal(
    assets: tuple[Path, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    photos, vae = assets
    argv = ["train", str(photos), "--out", str(tmp_path / "p.safetensors"), "--encoder", str(vae)]
    argv += ["--steps", "1", "--batch", "2", "--size", "32"]
    # A process of its own: in this one, diffusers' console handler was made at its first import.
    done = subprocess.run(
        [sys.executable, "-m", "spdesk", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "Training on " in done.stderr
    assert "accelerate" not in done.stderr and "it/s]" not in done.stderr


def test_train_says_how_visible_the_pattern_is_or_how_to_find_out(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos, vae = assets
    argv = ["train", str(photos), "--encoder", str(vae), "--steps", "1", "--batch", "2"]
    argv += ["--size", "32", "--out", str(tmp_path / "p.safetensors"), "--force"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "At 100% zoom on 2 held-out photos it is" in out and "SSIMULACRA2" in out
    assert "as spdesk protect lays it, it moves a 64 px editor's encoder" in out
    import spdesk.core.train as train
    import spdesk.core.trained_pattern as trained_pattern

    for module in (train, trained_pattern):
        monkeypatch.setattr(module, "visibility_available", lambda: False)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "SSIMULACRA2" not in captured.out
    assert 'pip install "ssimulacra2>=0.3" "flip-evaluator>=1.6"' in captured.err


def test_eval_refuses_a_negative_number_of_attack_photos(
    assets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    argv = ["eval", "--photos", str(photos), "--encoder", str(vae), "--attacks", "average"]
    assert main([*argv, "--attack-photos", "-1"]) == 2
    assert "--attack-photos must be between 0 and 10000, got -1" in capsys.readouterr().err


def test_eval_notes_an_averaging_attack_fitted_on_fewer_photos_than_asked(
    assets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """It reported "kept 97%" from 6 photos, without a word that the README's figure needs 100."""
    photos, vae = assets
    argv = ["eval", "--photos", str(photos), "--encoder", str(vae), "--sizes", "64"]
    argv += ["--attacks", "average", "--max-photos", "1", "--json"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Note: the averaging attack fits on 3 photo(s), not the 100 asked" in err
    assert main([*argv, "--attack-photos", "2"]) == 0
    assert "Note: the averaging attack" not in capsys.readouterr().err


def test_eval_refuses_attack_photos_without_the_averaging_attack(
    assets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """It was accepted and ignored, as options the run does not use are refused elsewhere."""
    photos, vae = assets
    argv = ["eval", "--photos", str(photos), "--encoder", str(vae), "--attacks", "jpeg75"]
    assert main([*argv, "--attack-photos", "5"]) == 2
    err = capsys.readouterr().err
    assert "--attacks has no average" in err and "leave out --attack-photos" in err


def test_resume_without_a_checkpoint_is_refused(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    argv = ["train", str(photos), "--out", str(tmp_path / "p.safetensors"), "--encoder", str(vae)]
    assert main([*argv, "--steps", "2", "--resume"]) == 2
    assert "--resume continues from a checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "p.safetensors").exists()


class _CtrlCAfter(CancelToken):
    """The token Ctrl+C sets, pressed once ``steps`` steps began (the core checks it before
    every step)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    def check(self) -> None:
        self.left -= 1
        if self.left < 0:
            self.cancel()
        super().check()


def _ctrl_c_after(monkeypatch: pytest.MonkeyPatch, steps: int | None) -> None:
    """Make the next ``spdesk train`` stop by Ctrl+C after ``steps`` steps (None: never)."""
    import spdesk.cli.train as cli_train

    monkeypatch.setattr(
        cli_train,
        "cancel_on_sigint",
        lambda: CancelToken() if steps is None else _CtrlCAfter(steps),
    )


def test_a_checkpoint_is_never_written_over_a_file_that_is_not_one(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import protect_samples as samples

    photos, vae = assets
    photo = samples.photo(tmp_path / "holiday.jpg")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    out = tmp_path / "p.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "2"]
    argv += ["--batch", "2", "--size", "32", "--val-every", "0"]
    _ctrl_c_after(monkeypatch, 1)  # a checkpoint is written when stopped
    for victim in (photo, notes):
        before = victim.read_bytes()
        for resume in ([], ["--resume"]):
            assert main([*argv, "--checkpoint", str(victim), *resume]) == 2
            captured = capsys.readouterr()
            said = "damaged or not a checkpoint" if resume else "not an spdesk training checkpoint"
            assert said in captured.err, captured.err
            assert "Training on" not in captured.out + captured.err  # refused before any work
            assert victim.read_bytes() == before
    assert main([*argv, "--checkpoint", str(out)]) == 2  # the run's own perturbation file
    assert "also where the perturbation is saved" in capsys.readouterr().err
    assert not out.exists()
    checkpoint = tmp_path / "run.ckpt.safetensors"
    assert main([*argv, "--checkpoint", str(checkpoint)]) == 130
    assert checkpoint.is_file()
    _ctrl_c_after(monkeypatch, None)  # a checkpoint of an earlier run: a new run replaces it
    assert main([*argv, "--checkpoint", str(checkpoint)]) == 0
    assert load_perturbation(out).eps == 8


def test_resume_from_a_checkpoint_that_is_not_there_is_refused(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, vae = assets
    out = tmp_path / "p.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "1"]
    argv += ["--size", "32", "--checkpoint", str(tmp_path / "typo.safetensors"), "--resume"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "no checkpoint" in captured.err and "typo.safetensors" in captured.err
    assert "Training on" not in captured.out + captured.err
    assert not out.exists()


def test_resume_knows_the_photo_folder_not_the_text_typed(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_train import write_photos

    _, vae = assets
    first, other = write_photos(tmp_path / "a", seed=1), write_photos(tmp_path / "b", seed=2)
    settings = ["--encoder", str(vae), "--steps", "3", "--batch", "2", "--size", "32"]
    settings += ["--val-every", "0"]
    monkeypatch.chdir(tmp_path)
    argv = ["train", "a", "--out", "p.safetensors", "--checkpoint", "ck.safetensors", *settings]
    _ctrl_c_after(monkeypatch, 1)
    assert main(argv) == 130
    _ctrl_c_after(monkeypatch, None)
    argv[1] = str(first.resolve())  # the same folder, typed another way
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resuming at step 1" in captured.out + captured.err, captured.err
    # "." in two folders is two runs: the library resumes only the folder's own.
    library = ["train", ".", *settings]
    monkeypatch.chdir(first)
    _ctrl_c_after(monkeypatch, 1)
    assert main([*library, "--library", "A"]) == 130
    _ctrl_c_after(monkeypatch, None)
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main([*library, "--library", "B"]) == 0
    captured = capsys.readouterr()
    assert "resuming" not in captured.out + captured.err
    monkeypatch.chdir(first)
    assert main([*library, "--library", "A"]) == 0
    captured = capsys.readouterr()
    assert "resuming at step 1" in captured.out + captured.err


def test_resume_refuses_a_checkpoint_of_photos_that_changed_and_the_library_starts_afresh(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    photos, vae = assets
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    checkpoint = tmp_path / "ck.safetensors"
    settings = ["--encoder", str(vae), "--steps", "3", "--batch", "2", "--size", "32"]
    settings += ["--val-every", "0"]
    argv = ["train", str(folder), "--out", str(tmp_path / "p.safetensors"), *settings]
    argv += ["--checkpoint", str(checkpoint)]
    library = ["train", str(folder), "--library", "mine", *settings]
    _ctrl_c_after(monkeypatch, 1)
    assert main(argv) == 130
    assert main(library) == 130
    shutil.copy(folder / "photo0.png", folder / "photo9.png")  # a photo added since
    _ctrl_c_after(monkeypatch, None)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    captured = capsys.readouterr()
    assert "trained on other photos" in captured.err and "changed" in captured.err
    assert "Training on" not in captured.out + captured.err
    assert main(library) == 0  # its own checkpoint is of other photos: not resumed
    captured = capsys.readouterr()
    assert "Training on" in captured.out + captured.err
    assert "resuming" not in captured.out + captured.err
    said = "Starting afresh: the photos changed since the run stopped at step 1."
    assert said in captured.out + captured.err


def test_ctrl_c_without_a_checkpoint_says_nothing_was_kept_and_how_to_keep_it(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos, vae = assets
    out = tmp_path / "p.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "3"]
    argv += ["--batch", "2", "--size", "32", "--val-every", "0"]
    _ctrl_c_after(monkeypatch, 1)
    capsys.readouterr()
    assert main(argv) == 130
    [said] = [line for line in capsys.readouterr().err.splitlines() if "Cancelled" in line]
    assert "nothing was kept" in said and "--checkpoint FILE" in said, said
    assert not out.exists()


def test_ctrl_c_during_the_final_check_keeps_the_finished_pattern_and_says_where(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every step had run when Ctrl+C came (the held-out figures take a while): the run was
    thrown away, "nothing was kept"."""
    photos, vae = assets
    out = tmp_path / "p.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--steps", "3"]
    argv += ["--batch", "2", "--size", "32", "--val-every", "0"]
    _ctrl_c_after(monkeypatch, 3)
    capsys.readouterr()
    assert main(argv) == 130
    [said] = [line for line in capsys.readouterr().err.splitlines() if "Cancelled" in line]
    assert "final check" in said and str(out) in said, said
    assert out.is_file()


def test_a_library_name_whose_file_holds_another_pattern_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from spdesk.core.perturbation import library_path_for, save_perturbation

    signs = np.sign(np.random.default_rng(1).standard_normal((3, 16, 16))).astype(np.float32)
    path = library_path_for("Portraits *8")
    save_perturbation(path, signs * 8 / 255, eps=8, metadata={"name": "Portraits *8"})
    argv = ["train", str(tmp_path), "--library", "Portraits ?8", "--steps", "1"]
    argv += ["--encoder", str(tmp_path / "no-encoder-needed")]  # refused before it is read
    assert main(argv) == 2  # before any training
    err = capsys.readouterr().err
    assert "“Portraits *8”, in the same file as “Portraits ?8”, is already in your library" in err


def test_a_library_that_cannot_be_written_is_refused_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It trained the whole run, then failed with advice about an output folder --library
    does not have."""
    import errno

    from spdesk.core import files

    def read_only(target: Path, data: object) -> object:
        raise files.output_error(PermissionError(errno.EACCES, "Permission denied"), target)

    monkeypatch.setattr(files, "write_temp", read_only)
    argv = ["train", str(tmp_path), "--library", "mine", "--steps", "1"]
    argv += ["--encoder", str(tmp_path / "no-encoder-needed")]  # refused before it is read
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Cannot write mine.safetensors" in err and "--out FILE instead of --library" in err


def test_eval_skips_a_photo_too_small_to_measure_by_name_and_measures_the_rest(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Random signs on a 16 px photo scored SSIMULACRA2 95.7 (it drops its scales under 8 px),
    against 52-60 on real photos, and went into the mean without a word."""
    import shutil

    photos, vae = assets
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 300, 3), dtype=np.uint8)).save(folder / "a-thin.png")
    argv = ["eval", "--photos", str(folder), "--encoder", str(vae), "--sizes", "64"]
    assert main([*argv, "--attacks", "jpeg75", "--json"]) == 0
    captured = capsys.readouterr()
    assert "a-thin.png: too small to measure (300 x 16 pixels" in captured.err
    assert json.loads(captured.out)["photos"] == len(list(photos.glob("*.png")))


def test_eval_of_photos_larger_than_the_protection_s_view_reports_signs_laid_at_it(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference a protection laid at the view must beat there (audit F2)."""
    _photos, vae = assets
    photos = write_photos(tmp_path / "larger", count=2)
    for path in photos.iterdir():  # 40-56 px photos, made twice the 64 px view
        with Image.open(path) as image:
            image.resize((image.width * 3, image.height * 3)).save(path)
    argv = ["eval", "--photos", str(photos), "--encoder", str(vae), "--sizes", "64"]
    argv += ["--working-size", "64"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["candidates"]][-1] == "signs at the view"
    assert report["gain_over_signs_at_the_view"]["photo-specific"]["64/clean"]["latent"] > 0
    assert main(argv) == 0
    assert "gain over random signs laid at the 64 px view" in capsys.readouterr().out
    assert main([*argv[:-2], "--json"]) == 0  # the 512 px view: no photo is larger
    assert "gain_over_signs_at_the_view" not in json.loads(capsys.readouterr().out)


def test_train_refuses_a_budget_below_one_step_before_training(
    assets: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--eps 0.5 trained to the end and saved a file protect refuses ("cannot change any
    pixel"), its summary calling it "harder to see than random noise" (audit)."""
    photos, vae = assets
    out = tmp_path / "half.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--eps", "0.5"]
    assert main([*argv, "--size", "32", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "eps must be from 1 to 64 8-bit steps, got 0.5: below one step" in err
    assert "step 1/2" not in err
    assert not out.exists()


def test_train_warns_of_a_checkpoint_it_could_not_write_and_goes_on(
    assets: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import spdesk.core.train as train
    from spdesk.core.errors import DiskFullError

    def full(*_args: object) -> None:
        raise DiskFullError("The disk is full: run.ckpt could not be written.")

    monkeypatch.setattr(train, "save_checkpoint", full)
    photos, vae = assets
    out = tmp_path / "out.safetensors"
    argv = ["train", str(photos), "--out", str(out), "--encoder", str(vae), "--size", "32"]
    assert main([*argv, "--steps", "2", "--checkpoint", str(tmp_path / "run.ckpt")]) == 0
    err = capsys.readouterr().err
    assert "Warning: the checkpoint of step 2 was not written (The disk is full" in err
    assert out.is_file()


def test_train_help_lists_every_objective_it_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    """sds+, sds- and advdm were offered by the error message only (audit)."""
    from spdesk.core.objectives import REGISTRY

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert all(name in said for name in REGISTRY), said


def test_train_refuses_a_name_beside_the_library_s_own(
    assets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--name was overwritten by --library's without a word (audit)."""
    photos, vae = assets
    argv = ["train", str(photos), "--library", "Named", "--name", "Other", "--encoder", str(vae)]
    assert main(argv) == 2
    assert "drop --name" in capsys.readouterr().err


def test_train_says_why_held_out_photos_too_small_gave_no_figures(
    tmp_path: Path, assets: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Checking it on 1 held-out photo…", then no figure and no word why (audit)."""
    _photos, vae = assets
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tiny / f"{index}.png")
    out = tmp_path / "o.safetensors"
    argv = ["train", str(tiny), "--out", str(out), "--encoder", str(vae), "--size", "32"]
    assert main([*argv, "--steps", "2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "not checked as protection lays it: no held-out photo is 32 px or more" in err
    assert out.is_file()


def test_a_library_save_that_fails_says_the_same_command_saves_it_without_training(
    assets: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import spdesk.core.usecases as usecases
    from spdesk.core.errors import DiskFullError

    real = usecases.save_under_free_name

    def full(*_args: object) -> None:
        raise DiskFullError("The disk is full: the library could not be written.")

    photos, vae = assets
    argv = ["train", str(photos), "--library", "Kept", "--encoder", str(vae), "--size", "32"]
    argv += ["--steps", "3"]
    monkeypatch.setattr(usecases, "save_under_free_name", full)
    assert main(argv) == 2
    assert "The training is kept: once there is space, the same command saves it" in (
        capsys.readouterr().err
    )
    monkeypatch.setattr(usecases, "save_under_free_name", real)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "resuming at step 3" in err and "step 1/3" not in err
