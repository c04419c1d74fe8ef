"""The protection table: rows, baselines, bounds, JPEG columns, JSON; gains over random signs."""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from spdesk.core.encoders import load_encoder
from spdesk.core.encoders.tiny import taef2_decoder, taef2_encoder
from spdesk.core.evaluate import (
    CANDIDATES,
    ProtectionRow,
    ProtectionTable,
    evaluate_protection,
    jpeg_roundtrip,
)


@pytest.fixture(scope="module")
def tae(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("tae")
    torch.manual_seed(0)
    torch.save(taef2_encoder().state_dict(), folder / "taef2_encoder.pth")
    torch.save(taef2_decoder().state_dict(), folder / "taef2_decoder.pth")
    return load_encoder(str(folder / "taef2_encoder.pth"), "cpu")


def _photos(n: int = 3, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(30, 220, (n, size, size, 3), dtype=np.uint8)


def test_rows_and_baselines(tae) -> None:  # type: ignore[no-untyped-def]
    delta = np.full((3, 16, 16), 4 / 255, np.float32)  # tiled over 32x32
    table = evaluate_protection(_photos(), tae, delta, 4, jpeg_quality=85)
    assert [r.name for r in table.rows] == list(CANDIDATES)
    none = table.row("none")
    assert none.latent == 0.0 and none.rt_ssim == pytest.approx(1.0) and none.vis_psnr == 100.0
    assert none.jpeg_latent == 0.0
    # random signs of eps 4 sit at exactly ±4 steps (photos are far from 0 and 255)
    assert table.row("sign").vis_psnr == pytest.approx(20 * math.log10(255 / 4), abs=0.01)
    assert table.row("perturbation").vis_psnr == pytest.approx(20 * math.log10(255 / 4), abs=0.01)
    assert table.row("uniform").vis_psnr > table.row("sign").vis_psnr
    for row in table.rows[:3]:
        assert row.latent > 0 and row.rt_ssim is not None and row.rt_ssim < 1
        assert row.jpeg_rt_ssim is not None
    data = json.loads(json.dumps(table.to_dict()))
    assert data["eps"] == 4 and set(data["gains_over_sign"]) >= {"latent", "rt_ssim_drop"}
    assert "gain over random signs" in table.format()


def test_without_jpeg_and_without_decoder(tmp_path: Path) -> None:
    from spdesk.core.encoders.tiny import taesana_encoder

    torch.save(taesana_encoder().state_dict(), tmp_path / "taesana_encoder.pth")
    encoder = load_encoder(str(tmp_path / "taesana_encoder.pth"), "cpu")
    table = evaluate_protection(
        _photos(2, 64), encoder, np.zeros((3, 64, 64), np.float32), 8, jpeg_quality=None
    )
    row = table.row("sign")
    assert row.rt_ssim is None and row.jpeg_latent is None and row.latent > 0
    assert table.row("perturbation").latent == 0.0  # a zero delta changes nothing


def test_gains_over_sign_arithmetic() -> None:
    table = ProtectionTable("x", 1, 8, 8, 85)
    table.rows = [
        ProtectionRow("perturbation", 0.6, 0.7, 20.0, 30.0, 0.3, 0.8, 22.0),
        ProtectionRow("sign", 0.2, 0.9, 30.0, 30.0, 0.1, 0.95, 32.0),
    ]
    gains = table.gains_over_sign()
    assert gains["latent"] == pytest.approx(3.0)
    assert gains["rt_ssim_drop"] == pytest.approx(3.0)
    assert gains["rt_mse"] == pytest.approx(10.0)
    assert gains["jpeg_rt_ssim_drop"] == pytest.approx(4.0)


def test_jpeg_roundtrip_changes_pixels_but_keeps_shape() -> None:
    photos = _photos(2, 16)
    out = jpeg_roundtrip(photos, 50)
    assert out.shape == photos.shape and out.dtype == np.uint8 and not np.array_equal(out, photos)


# --- spdesk eval's settings ---------------------------------------------------------------------
@pytest.fixture
def eval_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``spdesk eval`` arguments over one photo; loading the encoder fails the test, as every
    refusal here must come before it."""
    from PIL import Image
    from tiny_sd import save_tiny_vae

    import spdesk.core.encoders as encoders

    def no_loading(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the encoder was loaded before the settings were checked")

    monkeypatch.setattr(encoders, "load_encoder", no_loading)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_photos(1, 64)[0]).save(photos / "a.png")
    vae = str(save_tiny_vae(tmp_path / "sd"))
    return ["eval", "--photos", str(photos), "--encoder", vae, "--sizes", "64", "--device", "cpu"]


def test_eval_refuses_zero_fine_tuning_steps(
    eval_inputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli import main

    assert main([*eval_inputs, "--fine-tune", "0"]) == 2
    assert "Fine-tuning steps must be between 1 and 10000, got 0." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("photos", "options", "message"),
    [
        (1, [], "has 1 photo(s) and it takes at most half of them"),
        (3, ["--attack-photos", "0"], "--attack-photos is 0"),
    ],
)
def test_eval_says_at_once_that_the_averaging_attack_needs_photos_of_its_own(
    eval_inputs: list[str],
    capsys: pytest.CaptureFixture[str],
    photos: int,
    options: list[str],
    message: str,
) -> None:
    from PIL import Image

    from spdesk.cli import main

    folder = Path(eval_inputs[2])
    for index in range(1, photos):
        Image.fromarray(_photos(1, 64)[0]).save(folder / f"more{index}.png")
    assert main([*eval_inputs, "--attacks", "average", *options]) == 2
    err = capsys.readouterr().err
    assert "The averaging attack needs photos of its own to fit on" in err and message in err
    assert "--attack-photos" in err


@pytest.mark.parametrize(
    ("options", "unused", "chosen_by"),
    [
        (["--mode", "photo", "--perturbation", "PATTERN"], "--perturbation", "--mode photo"),
        (["--perturbation", "PATTERN", "--fine-tune", "4"], "--perturbation", "--fine-tune"),
        (["--mode", "universal", "--generator", "gen.st"], "--generator", "--mode universal"),
        (["--perturbation", "PATTERN", "--generator", "gen.st"], "--generator", "--perturbation"),
        (["--mode", "universal", "--fine-tune", "4"], "--mode universal", "--fine-tune"),
    ],
)
def test_eval_refuses_an_option_the_mode_measured_does_not_use(
    eval_inputs: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    options: list[str],
    unused: str,
    chosen_by: str,
) -> None:
    from spdesk.cli import main
    from spdesk.core.perturbation import save_perturbation

    pattern = save_perturbation(tmp_path / "mine.safetensors", np.zeros((3, 16, 16)), eps=8)
    options = [str(pattern) if option == "PATTERN" else option for option in options]
    assert main([*eval_inputs, *options]) == 2
    err = capsys.readouterr().err
    assert f"does not use {unused}: leave out {unused}, or {chosen_by}." in err
    if "--mode" not in options:  # the mode followed from the other options: no --mode to blame
        assert "--mode" not in err


# --- an output that cannot be written ------------------------------------------------------------
class _FullDisk(io.RawIOBase):
    """A file on a full disk (what ``> /dev/full`` gives a command's stdout)."""

    full = True

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)  # type: ignore[arg-type]


def _report_with_stdout_on_a_full_disk(
    command: Callable[[argparse.Namespace], int], monkeypatch: pytest.MonkeyPatch
) -> int:
    from spdesk.cli.common import run_command

    disk = _FullDisk()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(disk)))
    try:
        return run_command(command, argparse.Namespace(command="eval"))
    finally:
        disk.full = False  # the test's own stream closes cleanly


@pytest.mark.parametrize("size", [10, 100_000])  # still buffered at the end, or written at once
def test_an_output_that_cannot_be_written_is_a_plain_error_not_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], size: int
) -> None:
    from spdesk.cli.common import EXIT_ERROR, print_json

    def report(_args: argparse.Namespace) -> int:
        print_json({"figures": "x" * size})
        return 0

    assert _report_with_stdout_on_a_full_disk(report, monkeypatch) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("spdesk: Could not write the output: No space left on device.")
    assert "bug" not in err


def test_an_os_error_of_the_command_itself_is_still_reported_as_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli.common import EXIT_ERROR

    def broken(_args: argparse.Namespace) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert _report_with_stdout_on_a_full_disk(broken, monkeypatch) == EXIT_ERROR
    assert "unexpected error (OSError" in capsys.readouterr().err


def test_one_photo_is_counted_in_the_singular(capsys: pytest.CaptureFixture[str]) -> None:
    """`spdesk eval` on one photo said "1 photos", and so did train-generator's held-out check
    (CLI audit)."""
    from spdesk.cli.train_generator import _report_coarseness
    from spdesk.core.evaluate import ProtectionRow, ProtectionTable

    rows = [ProtectionRow(name, 0.1, 0.9, 30.0, 40.0) for name in ("perturbation", "sign")]
    table = ProtectionTable(encoder="tiny", photos=1, size=64, eps=8, jpeg_quality=None, rows=rows)
    assert table.format().startswith("encoder tiny, 1 photo, 64px, eps 8, JPEG off")
    _report_coarseness({"photos": 1, "low_frequency_share": 0.0, "random_signs": 0.0})
    assert capsys.readouterr().out.startswith("Held-out check (1 photo): low-frequency share")
