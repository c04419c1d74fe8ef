"""The attacks of the robustness table, and the averaging attack finding a planted pattern."""

from __future__ import annotations

import numpy as np
import pytest

from spdesk.core.attacks import (
    Alignment,
    AveragingAttack,
    align,
    fold,
    high_pass,
    parse_attacks,
    place,
    simple_attack,
)
from spdesk.core.errors import ConfigError

PERIOD = 16


def _smooth_photo(rng: np.random.Generator, height: int = 64, width: int = 80) -> np.ndarray:
    """A smooth gradient photo: almost nothing survives the high-pass filter but the pattern."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 40 * np.sin(x / (17 + rng.uniform(0, 10))) + 30 * np.cos(y / 23)
    return np.clip(np.stack([base, base * 0.9, base * 1.1], axis=-1), 0, 255)


def _planted(rng: np.random.Generator, pattern: np.ndarray) -> tuple[np.ndarray, Alignment]:
    photo = _smooth_photo(rng)
    where = Alignment(
        (int(rng.integers(PERIOD)), int(rng.integers(PERIOD))),
        bool(rng.integers(2)), bool(rng.integers(2)), 0.0,
    )  # fmt: skip
    laid = place(pattern, where, photo.shape[0], photo.shape[1]).transpose(1, 2, 0)
    return np.clip(np.rint(photo + laid * 255), 0, 255).astype(np.uint8), where


def test_alignment_search_finds_a_known_shift_and_flip() -> None:
    rng = np.random.default_rng(0)
    pattern = rng.choice([-1.0, 1.0], (3, PERIOD, PERIOD)).astype(np.float32)
    truth = Alignment((5, 11), True, False, 0.0)
    laid = place(pattern, truth, 3 * PERIOD, 2 * PERIOD)
    found = align(fold(laid, PERIOD), pattern)
    assert (found.offset, found.flip_h, found.flip_v) == ((5, 11), True, False)


def test_averaging_recovers_a_planted_pattern_and_removes_most_of_it() -> None:
    rng = np.random.default_rng(1)
    pattern = (rng.choice([-6.0, 6.0], (3, PERIOD, PERIOD)) / 255).astype(np.float32)
    protected = [_planted(rng, pattern)[0] for _ in range(40)]
    attack = AveragingAttack(period=PERIOD)
    estimate = attack.fit(protected)
    # The estimate matches the pattern under some shift and flip (its own frame is arbitrary).
    where = align(estimate, pattern)
    truth = place(pattern, where, PERIOD, PERIOD).ravel()
    cosine = float(estimate.ravel() @ truth / np.linalg.norm(estimate) / np.linalg.norm(truth))
    assert cosine > 0.9
    photo, _ = _planted(rng, pattern)
    clean = _smooth_photo(np.random.default_rng(99))  # unused content; compare residuals instead
    del clean
    before = np.abs(high_pass(photo)).mean()
    after = np.abs(high_pass(attack(photo))).mean()
    assert after < 0.5 * before


def test_averaging_finds_nothing_in_photo_specific_noise() -> None:
    rng = np.random.default_rng(2)
    protected = []
    for _ in range(20):
        photo = _smooth_photo(rng)
        noise = rng.choice([-6.0, 6.0], photo.shape)
        protected.append(np.clip(np.rint(photo + noise), 0, 255).astype(np.uint8))
    attack = AveragingAttack(period=PERIOD)
    attack.fit(protected)
    photo = protected[0]
    changed = np.abs(attack(photo).astype(int) - photo.astype(int)).mean()
    assert changed < 1.5  # steps: the estimate shares little with any one photo's noise


def test_simple_attacks_keep_the_size() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    for name in parse_attacks("jpeg75,down0.5,blur1"):
        out = simple_attack(name)(photo)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert not np.array_equal(out, photo)


@pytest.mark.parametrize("spec", ["jpeg0", "jpeg101", "down2", "sharpen", "blur"])
def test_unknown_attacks_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="Unknown attack"):
        parse_attacks(spec)
