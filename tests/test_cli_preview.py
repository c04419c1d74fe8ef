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
from spdesk.core.preview import _working_view

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


def test_a_preview_without_piq_says_how_to_get_fsim_on_the_command_line(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import spdesk.core.metrics as metrics

    monkeypatch.setattr(metrics, "_piq_fsim", lambda: None)
    assert _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"])) == 0
    said = capsys.readouterr().out
    assert "FSIM not computed: " in said and "a torchvision built for your torch" in said
    assert "pip install" not in said  # an unpinned torchvision can replace the user's torch


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


def test_preview_files_already_in_out_are_refused_before_the_edit_unless_forced(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo protect wrote into the same folder keeps its name and bytes; an earlier
    preview's files are refused at once (no model is needed to say so), replaced with --force."""
    protected = tmp_path / "cat.protected.png"
    Image.new("RGB", (500, 375), (10, 20, 30)).save(protected)
    kept = protected.read_bytes()
    assert _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"])) == 0
    assert protected.read_bytes() == kept
    assert (tmp_path / "cat.preview-protected.png").is_file()
    capsys.readouterr()
    sheet = (tmp_path / "cat.sheet.png").read_bytes()
    assert _preview(inputs, tmp_path, "--model-dir", str(tmp_path / "no-model")) == 2
    err = capsys.readouterr().err
    assert "already holds cat.sheet.png" in err and "--force" in err
    assert "not installed" not in err and "no model_index.json" not in err
    assert (tmp_path / "cat.sheet.png").read_bytes() == sheet
    assert _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"]), "--force") == 0


def test_an_output_that_is_a_folder_is_refused_before_the_edit_and_nothing_is_written(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cat.json").mkdir()
    code = _preview(inputs, tmp_path, "--model-dir", str(tmp_path / "no-model"))
    err = capsys.readouterr().err
    assert code == 2 and "cat.json: a folder has that name" in err
    assert [path.name for path in tmp_path.iterdir()] == ["cat.json"]


def test_a_failed_preview_leaves_no_new_empty_folders(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "a" / "b"
    assert main(["preview", str(tmp_path / "typo.png"), "--out", str(out), *FAST]) == 2
    no_model = ["--model-dir", str(tmp_path / "no-model")]
    assert _preview(inputs, out, *no_model) == 2
    assert "not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_a_seed_out_of_range_is_a_plain_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str
) -> None:
    code = _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"]), "--seed", seed)
    err = capsys.readouterr().err
    assert code == 2 and f"The seed must be between 0 and 2**63 - 1, got {seed}." in err
    assert "unexpected" not in err


@pytest.mark.parametrize("guidance", ["nan", "inf"])
def test_a_guidance_that_is_not_a_number_is_a_plain_error(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], guidance: str
) -> None:
    photo, model = str(inputs["photo"]), str(inputs["sd"])
    argv = ["preview", photo, "--out", str(tmp_path), "--model-dir", model, *FAST]
    code = main([*argv, "--guidance", guidance])  # after FAST's own --guidance
    assert code == 2 and "Guidance must be a number of at least 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_json_output_writes_nan_and_infinity_as_null() -> None:
    import io

    from spdesk.cli.common import print_json

    stream = io.StringIO()
    print_json({"figures": {"vifp": float("nan"), "psnr": float("inf")}, "seen": [1.5]}, stream)
    parsed = json.loads(stream.getvalue(), parse_constant=lambda name: name)
    assert parsed == {"figures": {"vifp": None, "psnr": None}, "seen": [1.5]}


@pytest.mark.parametrize("option", [["--mask", "MASK"], ["--mask-mode", "regenerate-centre"]])
def test_a_mask_without_inpaint_mode_is_refused_not_ignored(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    option = [str(inputs["mask"]) if word == "MASK" else word for word in option]
    code = _preview(inputs, tmp_path, "--model-dir", str(inputs["sd"]), *option)
    err = capsys.readouterr().err
    assert code == 2 and "only used by inpainting" in err and "--mode inpaint" in err


def test_an_inpainting_model_for_img2img_is_refused_by_name(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _preview(inputs, tmp_path, "--model-dir", str(inputs["inpaint"]))
    err = capsys.readouterr().err
    assert code == 2 and "is an inpainting model: use --mode inpaint" in err
    assert "unexpected" not in err


def test_a_huge_photo_is_refused_with_advice_that_fits_preview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)  # 200 MP, never decoded
    photo = tmp_path / "huge.png"
    photo.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
    )
    out = ["--out", str(tmp_path / "out"), "--model-dir", str(tmp_path / "no-model")]
    assert main(["preview", str(photo), *out, *FAST]) == 2
    err = capsys.readouterr().err
    assert "huge.png is too large" in err and "reduce the photo's size" in err
    assert "--max-megapixels" not in err
    # A mask that large: the mask is what to make smaller, not the photo.
    mask = tmp_path / "mask.png"
    mask.write_bytes(photo.read_bytes())
    small = tmp_path / "small.png"
    Image.new("RGB", (96, 80), (120, 90, 60)).save(small)
    argv = ["preview", str(small), *out, *FAST, "--mode", "inpaint", "--mask", str(mask)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "mask.png is too large" in err and "Use a smaller mask" in err
    assert "photo's size" not in err


def test_a_pattern_file_with_photo_protection_is_refused_as_protect_refuses_it(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Photo mode would ignore the file (and the noise once took its strength)."""
    model = str(inputs["sd"])
    code = _preview(inputs, tmp_path, "--protection", "photo", "--model-dir", model)
    assert code == 2
    assert "--perturbation only applies to the universal pattern" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_model_dir_without_a_model_says_to_fix_the_folder(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Downloading the model would not help: --model-dir would still point elsewhere."""
    code = _preview(inputs, tmp_path / "out", "--model-dir", str(tmp_path / "nowhere"))
    assert code == 2
    err = capsys.readouterr().err
    assert "Give --model-dir the folder that holds model_index.json, or leave it out" in err


def test_offload_on_a_cpu_is_said_to_be_left_off_and_the_preview_runs(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _preview(inputs, tmp_path, "--offload", "--model-dir", str(inputs["sd"]))
    assert code == 0
    assert "--offload saves GPU memory on a CUDA GPU only" in capsys.readouterr().err
    assert (tmp_path / "cat.json").is_file()


def test_offload_without_accelerate_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    import torch

    from spdesk.core import preview
    from spdesk.core.errors import ConfigError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "accelerate" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(preview, "resolve_device", lambda _name: torch.device("cuda"))
    with pytest.raises(ConfigError, match="needs the accelerate package") as raised:
        preview.PreviewEngine(device="cuda", offload=True)
    assert "pip install accelerate" in raised.value.user_text()
    assert not preview.PreviewEngine(device="cuda").offload  # not asked: nothing to check


def test_a_fine_tuned_preview_edits_what_protect_fine_tune_writes(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fine-tune previews the copy ``spdesk protect --fine-tune`` writes (same settings, same
    pixels), not the one-pass protection it starts from."""
    photo, model = str(inputs["photo"]), str(inputs["sd"])
    base = ["preview", photo, "--model-dir", model, "--json", *FAST]
    tuned = ["--fine-tune", "2", "--encoder", model, "--fine-tune-jpeg", "off"]
    assert main([*base, *tuned, "--out", str(tmp_path / "tuned")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["protection"] == "photo"
    assert record["fine_tuning"]["steps"] == 2 and record["fine_tuning"]["jpeg"] is None
    assert main([*base, "--out", str(tmp_path / "one-pass")]) == 0
    one_pass = json.loads(capsys.readouterr().out)
    assert one_pass["fine_tuning"] is None
    protect = ["protect", photo, "--out", str(tmp_path / "copies"), "--working-size", "64"]
    assert main([*protect, *tuned, "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    copy = np.asarray(Image.open(tmp_path / "copies" / "cat.protected.png").convert("RGB"))
    shown, before = (
        np.asarray(Image.open(tmp_path / folder / "cat.preview-protected.png"))
        for folder in ("tuned", "one-pass")
    )  # the 64 px views the edits worked on
    np.testing.assert_array_equal(shown, np.asarray(_working_view(copy, 64)))
    assert not np.array_equal(shown, before)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--encoder", "taesd"], "--encoder is only used with --fine-tune STEPS"),
        (["--fine-tune-jpeg", "90"], "--fine-tune-jpeg is only used with --fine-tune STEPS"),
        (["--fine-tune", "2"], "--fine-tune needs --encoder"),
        (["--fine-tune", "2", "--encoder", "taesd", "--objective", "encoder"], "--objective"),
        (
            ["--protection", "universal", "--fine-tune", "2", "--encoder", "taesd",
             "--fine-tune-jpeg", "75"],
            "--fine-tune-jpeg applies to photo fine-tuning",
        ),
        (["--fine-tune", "2", "--encoder", "taesd", "--fine-tune-jpeg", "hi"], "JPEG quality"),
    ],
)  # fmt: skip
def test_fine_tuning_options_protect_refuses_are_refused_before_anything_is_written(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    code = main(["preview", str(inputs["photo"]), "--out", str(out), *options, *FAST])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_fine_tuning_encoder_that_is_not_there_is_named_and_nothing_is_written(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, missing = tmp_path / "out", tmp_path / "no-vae"
    options = ["--model-dir", str(inputs["sd"]), "--fine-tune", "2", "--encoder", str(missing)]
    code = main(["preview", str(inputs["photo"]), "--out", str(out), *options, *FAST])
    assert code == 2
    assert "no-vae" in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_model_is_said_before_fine_tuning_starts(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--model-dir", str(tmp_path / "none"), "--fine-tune", "2", "--encoder", "taesd"]
    code = main(["preview", str(inputs["photo"]), "--out", str(tmp_path / "out"), *options, *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert "spdesk models download --for preview" in err
    assert "Fine-tuning" not in err and "taesd" not in err  # neither ran nor loaded
