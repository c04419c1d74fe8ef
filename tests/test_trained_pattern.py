"""How visible a trained pattern is: laid as ``spdesk protect`` lays it, measured on held-out
photos at 100% zoom beside random signs, and skipped cleanly without the ``eval`` extra."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spdesk.core import trained_pattern
from spdesk.core.assessment import sign_noise
from spdesk.core.errors import Cancelled
from spdesk.core.events import CancelToken
from spdesk.core.trained_pattern import PatternVisibility, pattern_visibility
from spdesk.core.visibility import flip, ssimulacra2

pytest.importorskip("ssimulacra2", reason="the eval extra's metrics are not installed")


def _photo(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    smooth = 90 + 0.8 * xs[..., None] + 0.5 * ys[..., None] + rng.normal(0, 4, (*ys.shape, 3))
    Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(path)
    return path


def test_no_pattern_is_invisible_and_reads_as_harder_to_see_than_noise(tmp_path: Path) -> None:
    photos = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    seen = pattern_visibility(np.zeros((3, 16, 16), np.float32), 8.0, photos)
    assert seen is not None and seen.photos == 2
    assert seen.ssimulacra2 == 100.0 and seen.flip == 0.0
    assert 0 < seen.sign_ssimulacra2 < 100 and seen.sign_flip > 0
    assert seen.verdict().startswith("harder to see")


def test_the_pattern_is_laid_as_protect_lays_it_and_noise_is_measured_on_the_same_photo(
    tmp_path: Path,
) -> None:
    # A pattern as large as the photo is laid 1:1 from its corner by universal mode.
    photo = _photo(tmp_path / "p.png", size=(32, 32))
    rng = np.random.default_rng(1)
    delta = (rng.choice([-1.0, 1.0], (3, 32, 32)) * 6 / 255).astype(np.float32)
    seen = pattern_visibility(delta, 6.0, [photo])
    original = np.asarray(Image.open(photo).convert("RGB"))
    laid = np.clip(np.rint(original + delta.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    signs = sign_noise(6.0)(original, 0)
    assert seen == PatternVisibility(
        photos=1,
        ssimulacra2=pytest.approx(ssimulacra2(original, laid)),
        ssimulacra2_worst=pytest.approx(ssimulacra2(original, laid)),
        flip=pytest.approx(flip(original, laid)),
        sign_ssimulacra2=pytest.approx(ssimulacra2(original, signs)),
        sign_flip=pytest.approx(flip(original, signs)),
    )


def test_a_few_readable_photos_are_measured_and_unreadable_ones_passed_over(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    photos = [broken] + [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(6)]
    delta = np.full((3, 8, 8), 4 / 255, np.float32)
    seen = pattern_visibility(delta, 4.0, photos)
    assert seen is not None and seen.photos == trained_pattern.MAX_PHOTOS
    tiny = _photo(tmp_path / "tiny.png", size=(31, 40))  # too small to measure
    assert pattern_visibility(delta, 4.0, [broken, tmp_path / "missing.png", tiny]) is None


def test_a_large_photo_is_measured_on_a_centre_crop_at_full_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trained_pattern, "CROP", 24)
    pixels = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    crop = trained_pattern._centre(pixels)
    assert crop.shape == (24, 24, 3) and np.array_equal(crop, pixels[18:42, 28:52])
    assert trained_pattern._centre(pixels[:10, :12]).shape == (10, 12, 3)  # small: whole


def test_cancelling_stops_the_measurement(tmp_path: Path) -> None:
    photos = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        pattern_visibility(np.zeros((3, 8, 8), np.float32), 8.0, photos, cancel=token)


@pytest.mark.parametrize(
    ("pattern", "noise", "verdict"),
    [(60.0, 56.0, "harder"), (58.0, 56.0, "about as visible"), (40.0, 56.0, "easier")],
)
def test_the_verdict_compares_with_noise_of_the_same_strength(
    pattern: float, noise: float, verdict: str
) -> None:
    seen = PatternVisibility(1, pattern, pattern, 0.05, noise, 0.07)
    assert seen.verdict().startswith(verdict)
    assert f"SSIMULACRA2 {pattern:.1f} against noise's {noise:.1f}" in seen.text()
    assert "1 held-out photo " in seen.text()


def test_figures_come_back_from_a_files_metadata_and_junk_gives_none() -> None:
    from dataclasses import asdict

    seen = PatternVisibility(4, 42.4, 38.0, 0.11, 58.8, 0.081)
    assert PatternVisibility.from_metadata({"visibility": asdict(seen)}) == seen
    assert seen.brief().startswith("Easier to see than random noise")
    for junk in ({}, {"visibility": "42"}, {"visibility": {"photos": 4}}):
        assert PatternVisibility.from_metadata(junk) is None
    assert PatternVisibility.from_metadata({"visibility": asdict(seen) | {"flip": "x"}}) is None
    assert (
        PatternVisibility.from_metadata({"visibility": asdict(seen) | {"flip": math.nan}}) is None
    )


def test_an_edited_headers_infinite_gain_is_not_shown_as_inf() -> None:
    """JSON allows Infinity: an edited file's description read "Disturbs AI editors inf×"."""
    from spdesk.core.trained_pattern import ProductGain

    assert ProductGain.from_metadata({"product_gain": {"gain": 1.3, "editor": 512}}) is not None
    for gain in (math.inf, -math.inf, math.nan, -1.0, "1e999"):
        assert ProductGain.from_metadata({"product_gain": {"gain": gain, "editor": 512}}) is None


def test_the_gain_is_measured_through_the_editors_view_against_random_signs(
    tmp_path: Path,
) -> None:
    import torch

    from spdesk.core.trained_pattern import EDITOR_SIZE, pattern_gain

    assert EDITOR_SIZE == 512  # SD 1.5's working size

    class Pixels:  # an "encoder" whose latent is the view itself: the gain is a pixel ratio
        id, fingerprint, device = "pixels", "", torch.device("cpu")

        def encode(self, images: torch.Tensor) -> object:
            return type("Dist", (), {"mean": images})()

    photos = [_photo(tmp_path / f"p{i}.png", size=(64, 64), seed=i) for i in range(2)]
    half = np.full((3, 8, 8), 4 / 255, np.float32)  # a flat +4 against ±8 signs: about half
    gain = pattern_gain(half, 8.0, photos, Pixels(), size=64)  # type: ignore[arg-type]
    assert gain == pytest.approx(0.5, abs=0.03)
    assert pattern_gain(half, 8.0, [tmp_path / "missing.png"], Pixels(), size=64) is None  # type: ignore[arg-type]
