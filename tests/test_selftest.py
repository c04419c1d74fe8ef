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
