"""The perturbation that ships with spdesk, and ``spdesk --self-test`` that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from spdesk.cli import main
from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation


def test_bundled_perturbation_is_valid_and_carries_its_measured_protection() -> None:
    bundled = load_perturbation(bundled_perturbation_path())
    assert bundled.eps == 8.0
    assert np.abs(bundled.delta).max() <= 8 / 255 + 1e-6
    assert bundled.metadata["encoder"] == "taesd"
    measured = bundled.metadata["held_out_eval"]
    assert measured["taesd"]["gain_latent"] > 1.0  # beats random signs of the same strength
    assert measured["taesd"]["latent"] > measured["taesd"]["sign_latent"]


def test_self_test_protects_a_generated_photo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test"]) == 0
    assert "self-test passed" in capsys.readouterr().out
