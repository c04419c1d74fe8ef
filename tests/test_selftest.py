"""``spdesk --self-test`` on a damaged install: each stage that fails is named, never a "bug"."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from spdesk.cli import main
from spdesk.cli.common import EXIT_ERROR


def _failed(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, object], str]:
    assert main(["--self-test", "--json"]) == EXIT_ERROR
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_self_test_protects_in_photo_mode_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True
    assert 0 < result["photo_max_change"] <= result["photo_eps"]


def test_self_test_fine_tunes_a_photo_against_an_encoder_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It loaded no encoder, so a build that could not fine-tune (the frozen app without the
    data files of diffusers' kernels) passed it."""
    assert main(["--self-test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["finetune_mean_change"] > 0


def test_a_missing_diffusers_fails_the_self_test_at_fine_tuning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    result, err = _failed(capsys)
    assert result["stage"] == "fine-tuning" and "diffusers" in str(result["error"])
    assert err.startswith("spdesk: Self-test failed: fine-tuning: ") and "bug" not in err


def test_an_encoder_that_cannot_be_loaded_fails_the_self_test_at_fine_tuning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import safetensors.torch

    def broken_file(_tensors: object, path: str) -> None:
        Path(path).write_bytes(b"\x00" * 64)

    monkeypatch.setattr(safetensors.torch, "save_file", broken_file)
    result, err = _failed(capsys)
    assert result["stage"] == "fine-tuning" and "random-taesd.safetensors" in str(result["error"])
    assert "bug" not in err


def test_a_missing_generator_fails_the_self_test_in_photo_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.core import generator_file

    monkeypatch.setattr(generator_file, "bundled_generator_path", lambda: tmp_path / "none")
    result, err = _failed(capsys)
    assert result["passed"] is False and result["stage"] == "photo mode"
    assert "Self-test failed: photo mode: " in err and "bug" not in err


def test_a_key_that_cannot_be_made_fails_the_self_test(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.core.keys import ENV_KEY, key_path

    monkeypatch.delenv(ENV_KEY, raising=False)
    key_path().mkdir(parents=True)  # a folder where the key belongs
    result, err = _failed(capsys)
    assert result["stage"] == "photo mode" and "is a folder" in str(result["error"])
    assert "Self-test failed: photo mode: The protection key" in err


def test_a_missing_resources_package_is_a_failed_stage_not_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "spdesk.resources", None)  # import fails: ModuleNotFoundError
    result, err = _failed(capsys)
    assert result == {
        "passed": False,
        "stage": "bundled perturbation",
        "error": result["error"],
    }
    assert "ModuleNotFoundError" in str(result["error"]) and "spdesk.resources" in err
    assert err.startswith("spdesk: Self-test failed: bundled perturbation: ")
    assert "bug" not in err


def _figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed figures for each mode, so only the wording is under test (no torch, no job)."""
    from spdesk.cli import selftest

    universal = {
        "perturbation": "spdesk default",
        "eps": 8.0,
        "mean_change": 5.25,
        "max_change": 8,
        "psnr_db_after_jpeg95": 32.6,
    }
    photo = {"photo_eps": 8.0, "photo_mean_change": 0.81, "photo_max_change": 6}
    monkeypatch.setattr(selftest, "_universal", lambda _original: universal)
    monkeypatch.setattr(selftest, "_photo_mode", lambda _original: photo)
    monkeypatch.setattr(selftest, "_fine_tuning", lambda _original: {"finetune_mean_change": 2.6})


def test_self_test_names_the_default_mode_first_and_the_universal_pattern_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "spdesk default (eps 8) ... mean change 5.25/255" of the universal pattern: the
    default mode is photo-specific, which changed the photo by 0.81/255."""
    _figures(monkeypatch)
    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert "spdesk default" not in out
    default, universal = out.index("photo-specific (the default mode)"), out.index("universal")
    assert default < out.index("0.81/255") < universal < out.index("5.25/255")


def test_self_test_json_says_which_mode_is_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _figures(monkeypatch)
    assert main(["--self-test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["default_mode"] == "photo" and result["mean_change"] == 5.25
