"""`spdesk preview` end to end with a tiny random-weight SD 1.5 on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tiny_sd import save_tiny_sd

from spdesk.cli import main
from spdesk.core.perturbation import save_perturbation

FAST = ["--steps", "4", "--guidance", "2", "--size", "64", "--device", "cpu"]


def _preview(inputs: dict[str, Path], out: Path, *options: str) -> int:
    photo, perturbation = str(inputs["photo"]), str(inputs["perturbation"])
    return main(
        ["preview", photo, "--perturbation", perturbation, "--out", str(out), *options, *FAST]
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-preview")
    rng = np.random.default_rng(0)
    photo = root / "cat.png"
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photo)
    delta = rng.choice([-1.0, 1.0], size=(3, 32, 32)).astype(np.float32) * 8 / 255
    perturbation = save_perturbation(root / "p.safetensors", delta, eps=8, metadata={"name": "t"})
    mask = root / "mask.png"
    mask_pixels = np.zeros((80, 96), np.uint8)
    mask_pixels[:, 48:] = 255
    Image.fromarray(mask_pixels).save(mask)
    return {
        "photo": photo,
        "perturbation": perturbation,
        "mask": mask,
        "sd": save_tiny_sd(root / "sd"),
        "inpaint": save_tiny_sd(root / "inpaint", inpaint=True),
    }


def test_img2img_preview_writes_sheet_and_record(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--preset", "P2", "--strength", "12", "--model-dir", str(inputs["sd"]), "--json"]
    code = _preview(inputs, tmp_path, *options)
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["request"]["prompt"] == "apply sunset lighting"
    assert record["request"]["mode"] == "img2img"
    assert 0 < record["figures"]["visibility"]["psnr"] < 60
    assert Path(record["files"]["sheet"]).is_file()
    assert (tmp_path / "cat.json").is_file()


def test_inpaint_preview_with_a_mask_file(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask, model = str(inputs["mask"]), str(inputs["inpaint"])
    options = ["--mode", "inpaint", "--mask", mask, "--prompt", "a red car", "--model-dir", model]
    code = _preview(inputs, tmp_path, *options)
    assert code == 0
    out = capsys.readouterr().out
    assert "unfiltered" in out and "Comparison sheet" in out
    assert (tmp_path / "cat.sheet.png").is_file()


def test_missing_model_prints_the_download_command(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _preview(inputs, tmp_path, "--model-dir", str(tmp_path / "none"))
    assert code == 2
    assert "spdesk models download --for preview" in capsys.readouterr().err


def test_bad_preset_is_a_plain_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["preview", str(inputs["photo"]), "--preset", "P7", "--out", str(tmp_path)])
    assert code == 2
    assert "P1, P2, P3, P4" in capsys.readouterr().err


def test_preview_protects_as_the_default_mode_does(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a pattern file the preview shows photo-specific protection (the default mode),
    which differs from the universal pattern's."""
    photo, model = str(inputs["photo"]), str(inputs["sd"])
    base = ["preview", photo, "--model-dir", model, "--json", *FAST]
    assert main([*base, "--out", str(tmp_path / "photo")]) == 0
    photo_mode = json.loads(capsys.readouterr().out)["figures"]["visibility"]["psnr"]
    universal = ["--protection", "universal", "--out", str(tmp_path / "universal")]
    assert main([*base, *universal]) == 0
    universal_psnr = json.loads(capsys.readouterr().out)["figures"]["visibility"]["psnr"]
    assert photo_mode != universal_psnr and photo_mode > 30


def test_the_pipelines_are_freed_before_the_sheet_is_saved(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import weakref

    from spdesk.core import preview

    loaded: list[weakref.ref[Any]] = []
    alive_at_save: list[bool] = []
    load, save = preview.PreviewEngine._load, preview.save_outputs

    def tracked_load(engine: preview.PreviewEngine, mode: Any) -> Any:
        pipe = load(engine, mode)
        loaded.append(weakref.ref(pipe))
        return pipe

    def checked_save(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        alive_at_save.extend(ref() is not None for ref in loaded)
        return save(*args, **kwargs)

    monkeypatch.setattr(preview.PreviewEngine, "_load", tracked_load)
    monkeypatch.setattr(preview, "save_outputs", checked_save)
    assert _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"]), "--json") == 0
    assert alive_at_save == [False]


def test_the_model_libraries_keep_their_bars_and_advice_off_the_terminal(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    photo, perturbation = str(inputs["photo"]), str(inputs["perturbation"])
    argv = ["preview", photo, "--perturbation", perturbation, "--out", str(tmp_path), *FAST]
    # A process of its own: in this one, the libraries' console handlers were made at import.
    done = subprocess.run(
        [sys.executable, "-m", "spdesk", *argv, "--model-dir", str(inputs["sd"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "AI edit (original, protected, noise)" in done.stderr  # spdesk's own progress
    for noise in ("Loading pipeline components", "Loading weights", "accelerate", "it/s]"):
        assert noise not in done.stderr, noise


@pytest.mark.parametrize("size", [(1, 1), (20, 4000), (5, 3)])
def test_a_photo_too_small_for_an_edit_is_refused_by_name(
    size: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1x1 photo or a 20 px high panorama gets a plain refusal, not a metric's crash, and
    no model is loaded for it (the model folder does not even exist)."""
    height, width = size
    photo = tmp_path / "strip.png"
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(photo)
    no_model = ["--model-dir", str(tmp_path / "no-model")]
    code = main(["preview", str(photo), "--out", str(tmp_path), *no_model, *FAST])
    err = capsys.readouterr().err
    assert code != 0
    assert f"strip.png is {width}x{height} pixels: too small for an AI edit preview" in err
    assert "unexpected" not in err and "not installed" not in err


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_edit(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file where the folder should go is a plain error at once, not a crash after the
    minutes the edit takes (the model folder does not exist: no edit was started)."""
    in_the_way = tmp_path / "sheets"
    in_the_way.write_text("mine")
    no_model = ["--model-dir", str(tmp_path / "no-model")]
    code = main(["preview", str(inputs["photo"]), "--out", str(in_the_way), *no_model, *FAST])
    err = capsys.readouterr().err
    assert code != 0
    assert "Cannot create the folder" in err and "a file has that name" in err
    assert "unexpected" not in err and "not installed" not in err
    assert in_the_way.read_text() == "mine"


def test_a_photo_or_mask_that_is_not_there_is_named_as_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (96, 80), (120, 90, 60)).save(photo)
    out = str(tmp_path / "out")
    assert main(["preview", str(tmp_path / "typo.png"), "--out", out]) == 2
    assert f"The photo {tmp_path / 'typo.png'} was not found." in capsys.readouterr().err
    argv = ["preview", str(photo), "--out", out, "--mode", "inpaint", "--mask"]
    assert main([*argv, str(tmp_path / "mask.png")]) == 2
    assert f"The mask {tmp_path / 'mask.png'} was not found." in capsys.readouterr().err
