"""The perturbation that ships with spdesk, and ``spdesk --self-test`` that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spdesk.cli import main
from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

SAMPLE = 4  # photos re-measured: enough to tell 2x from 1x (about 15 s on 2 CPU cores)


def test_bundled_perturbation_is_valid() -> None:
    bundled = load_perturbation(bundled_perturbation_path())
    assert bundled.eps == 8.0
    assert np.abs(bundled.delta).max() <= 8 / 255 + 1e-6
    assert bundled.metadata["encoder"] == "taesd"


@pytest.mark.shared
@pytest.mark.slow
def test_bundled_perturbation_re_measured_beats_random_signs_as_its_file_says(
    taesd_path: Path, shared_photos: Path
) -> None:
    from spdesk.core.encoders import load_encoder
    from spdesk.core.evaluate import evaluate_protection, load_eval_photos
    from spdesk.core.train import find_photos

    bundled = load_perturbation(bundled_perturbation_path())
    recorded = bundled.metadata["held_out_eval"]
    photos, skipped = load_eval_photos(find_photos(shared_photos)[-SAMPLE:], recorded["size"])
    assert not skipped and len(photos) == SAMPLE
    encoder = load_encoder(str(taesd_path), "cpu")
    table = evaluate_protection(photos, encoder, bundled.delta, bundled.eps, jpeg_quality=None)

    gain = table.gains_over_sign()["latent"]
    assert gain is not None and gain > 1.3  # clearly more than random ±8 signs do
    # The figure the file (and the README) reports holds on a sample it was not computed on.
    assert gain == pytest.approx(recorded["taesd"]["gain_latent"], rel=0.3)


def test_self_test_protects_a_generated_photo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test"]) == 0
    assert "self-test passed" in capsys.readouterr().out
