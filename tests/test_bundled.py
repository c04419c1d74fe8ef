"""The perturbation that ships with spdesk, and ``spdesk --self-test`` that uses it."""

from __future__ import annotations

import json
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


def test_bundled_generator_stays_inside_its_ceiling_and_keeps_grey_photos_grey() -> None:
    from spdesk.core.generator_file import bundled_generator_path
    from spdesk.core.photo_protect import GeneratorProtector

    protector = GeneratorProtector(bundled_generator_path(), strength=8, key=bytes(32))
    bound = 8 / 255 * protector.shaping.ceiling
    assert protector.shaping.ceiling == 0.9375  # set after training, as the recipe records
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    change = np.abs(protector.working_delta(textured))
    assert bound * 0.9 < change.max() <= bound + 1e-6  # texture gets (nearly) all of it
    grey = np.repeat(rng.integers(0, 256, (64, 96, 1), dtype=np.uint8), 3, axis=2)
    delta = protector.working_delta(grey)
    assert np.array_equal(delta[0], delta[1]) and np.array_equal(delta[1], delta[2])


@pytest.mark.shared
@pytest.mark.slow
def test_bundled_generator_through_the_product_disturbs_taesd_more_than_random_signs(
    taesd_path: Path, shared_photos: Path
) -> None:
    from spdesk.core.assessment import editor_latent, mode_protect, relative_change, sign_noise
    from spdesk.core.encoders import load_encoder
    from spdesk.core.evaluate import load_full_photos
    from spdesk.core.train import find_photos, split_photos

    _, held_out = split_photos(find_photos(shared_photos), 0.7, 0, None)  # as both files train
    photos, skipped = load_full_photos(held_out[-SAMPLE:])
    assert not skipped
    protect, eps, _ = mode_protect("photo")
    signs = sign_noise(8)
    encoder = load_encoder(str(taesd_path), "cpu")
    distortion = {"default": 0.0, "signs": 0.0}
    for index, photo in enumerate(photos):  # what the benchmark measures, at a 256 px editor
        clean = editor_latent(encoder, photo, 256)
        for name, protected in (("default", protect(photo, index)), ("signs", signs(photo, index))):
            assert np.abs(protected.astype(int) - photo).max() <= eps
            distortion[name] += relative_change(editor_latent(encoder, protected, 256), clean)
    # 1.32x on the README's 24 photos; a sample of 4 spreads, but never down to noise's 1x.
    assert distortion["default"] > 1.1 * distortion["signs"]


def test_self_test_protects_a_generated_photo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test"]) == 0
    assert "self-test passed" in capsys.readouterr().out


def test_self_test_takes_json_like_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and 0 < result["max_change"] <= result["eps"]
    with pytest.raises(SystemExit) as refused:  # --json of a command goes after the command
        main(["--json", "models", "status"])
    assert refused.value.code == 2
    assert "--json goes after the command" in capsys.readouterr().err


def test_the_default_strength_in_help_is_the_bundled_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spdesk.cli.protect import DEFAULT_STRENGTH
    from spdesk.core.generator_file import bundled_generator_path, read_spec

    assert load_perturbation(bundled_perturbation_path()).eps == DEFAULT_STRENGTH
    assert read_spec(bundled_generator_path()).eps == DEFAULT_STRENGTH
    with pytest.raises(SystemExit):
        main(["protect", "--help"])
    assert f"{DEFAULT_STRENGTH:g} medium (default" in " ".join(capsys.readouterr().out.split())
