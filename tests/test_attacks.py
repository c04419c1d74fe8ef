"""The attacks of the robustness table: the averaging attack finding a planted pattern, the
regeneration attack removing what a protection's key does not choose."""

from __future__ import annotations

import numpy as np
import pytest

from spdesk.core import attacks
from spdesk.core.attacks import (
    ESTIMATE_SIGMAS,
    Alignment,
    AveragingAttack,
    KeyedProtect,
    RegenerationAttack,
    StrongestAveraging,
    align,
    attacker_keys,
    fold,
    gaussian_high_pass,
    high_pass,
    is_removal,
    parse_attacks,
    place,
    regeneration_keys,
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


def test_each_simple_attack_name_gives_its_edit_with_its_number() -> None:
    photo = np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    expected = {
        "jpeg75": attacks.jpeg(photo, 75),
        "down0.5": attacks.downscale(photo, 0.5),
        "blur1.5": attacks.blur(photo, 1.5),
        "median5": attacks.median(photo, 5),
        "shift3": attacks.shift(photo, 3),
    }
    for name, edited in expected.items():
        assert np.array_equal(simple_attack(name)(photo), edited), name


def test_simple_attacks_keep_the_size() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    for name in parse_attacks("jpeg75,down0.5,blur1,median3,shift4"):
        out = simple_attack(name)(photo)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert not np.array_equal(out, photo)


@pytest.mark.parametrize(
    "spec",
    [
        "jpeg0",
        "jpeg101",
        "down2",
        "sharpen",
        "blur",
        "regeneratex",
        "regenerate-2",
        "median",
        "median4",
        "median11",
        "median1",
        "shift0",
        "shift33",
        "shift",
        "shift-2",
    ],
)
def test_unknown_attacks_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="Unknown attack") as error:
        parse_attacks(spec)
    assert "regenerate[K]" in (error.value.hint or "")


@pytest.mark.parametrize("spec", ["regenerate0", "regenerate65"])
def test_a_regeneration_key_count_out_of_range_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match=f"{spec!r} asks for") as error:
        parse_attacks(f"jpeg75,{spec}")
    assert "1 to 64 keys" in (error.value.hint or "")


def test_a_median_filter_wipes_out_isolated_changes_and_keeps_edges() -> None:
    photo = np.full((40, 60, 3), 100, np.uint8)
    photo[:, 30:] = 200  # a sharp edge
    marked = photo.copy()
    marked[1::4, 1::4] += 8  # changes 4 pixels apart: one at most in any 3x3 square
    cleaned = simple_attack("median3")(marked)
    assert np.array_equal(cleaned, simple_attack("median3")(photo))
    assert np.array_equal(cleaned[:, 28:32], photo[:, 28:32]), "the edge stays sharp"
    assert np.array_equal(simple_attack("median5")(photo), photo)


def test_a_shift_moves_the_photo_up_and_left_and_repeats_its_far_edges() -> None:
    photo = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    moved = simple_attack("shift2")(photo)
    assert moved.shape == photo.shape
    assert np.array_equal(moved[:4, :3], photo[2:, 2:])
    assert np.array_equal(moved[4:, :3], np.repeat(photo[5:, 2:], 2, axis=0))
    assert np.array_equal(moved[:, 3:], np.repeat(moved[:, 2:3], 2, axis=1))
    tiny = np.zeros((2, 3, 3), np.uint8)
    assert simple_attack("shift8")(tiny).shape == tiny.shape  # never more than the photo


def test_the_float_high_pass_is_the_planes_minus_their_gaussian_blur() -> None:
    rng = np.random.default_rng(3)
    planes = rng.normal(size=(3, 24, 30)).astype(np.float32)
    sigma, radius = 1.5, 4  # round(3 * sigma) taps each side
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    rows = np.apply_along_axis(np.convolve, 1, planes, taps, mode="valid")
    blurred = np.apply_along_axis(np.convolve, 2, rows, taps, mode="valid")
    inner = planes[:, radius:-radius, radius:-radius] - blurred

    result = gaussian_high_pass(planes, sigma)

    assert result.shape == planes.shape and result.dtype == np.float32
    np.testing.assert_allclose(result[:, radius:-radius, radius:-radius], inner, atol=1e-5)
    flat = np.full((1, 12, 12), 0.4, dtype=np.float32)  # reflected edges: no rim on a flat plane
    np.testing.assert_allclose(gaussian_high_pass(flat), 0.0, atol=1e-6)


def test_regeneration_names_give_their_key_count() -> None:
    names = parse_attacks("Regenerate, regenerate16")
    assert [regeneration_keys(name) for name in names] == [8, 16]
    with pytest.raises(ConfigError, match="not a simple attack"):
        simple_attack("regenerate")


# --- the regeneration attack ------------------------------------------------------------------
def _shaped_signs(photo: np.ndarray) -> np.ndarray:
    """A ±1 sign pattern of the photo's size, fixed for that size."""
    rng = np.random.default_rng(photo.shape[0] * 1000 + photo.shape[1])
    return rng.choice([-1.0, 1.0], photo.shape)


def _photo_determined(photo: np.ndarray, key: bytes) -> np.ndarray:
    """A planted protection the key does not touch: signs weighted by the photo's brightness
    (a few levels of protection hardly move the weights, as for a real generator)."""
    del key
    weight = 3 + 4 * photo.astype(np.float32) / 255
    return np.clip(np.rint(photo + weight * _shaped_signs(photo)), 0, 255).astype(np.uint8)


def _key_noise(photo: np.ndarray, key: bytes) -> np.ndarray:
    """A planted protection that is all key: random ±6 signs drawn from the key."""
    rng = np.random.default_rng(list(key))
    noise = rng.choice([-6.0, 6.0], photo.shape)
    return np.clip(np.rint(photo + noise), 0, 255).astype(np.uint8)


def _victim_and_protected(protect: KeyedProtect) -> tuple[np.ndarray, np.ndarray]:
    photo = np.rint(_smooth_photo(np.random.default_rng(3), 48, 48)).astype(np.uint8)
    return photo, protect(photo, VICTIM)


VICTIM = b"v" * 32


def test_regeneration_removes_a_protection_the_photo_determines() -> None:
    photo, protected = _victim_and_protected(_photo_determined)
    attack = RegenerationAttack(_photo_determined, keys=2, avoid=[VICTIM])
    cleaned = attack(protected)
    before = np.abs(protected.astype(int) - photo.astype(int)).mean()
    after = np.abs(cleaned.astype(int) - photo.astype(int)).mean()
    assert attack.scale > 0.9
    assert after < 0.1 * before


def test_regeneration_leaves_a_protection_the_key_draws() -> None:
    photo, protected = _victim_and_protected(_key_noise)
    attack = RegenerationAttack(_key_noise, keys=8, avoid=[VICTIM])
    cleaned = attack(protected)
    assert attack.scale < 0.1
    before = np.abs(protected.astype(int) - photo.astype(int)).mean()
    after = np.abs(cleaned.astype(int) - photo.astype(int)).mean()
    assert after > 0.95 * before


def test_regeneration_never_uses_the_victims_key_and_repeats_its_keys() -> None:
    victim = attacker_keys(1, seed=5)[0]  # the very key that seed would draw first
    used: list[bytes] = []

    def record(photo: np.ndarray, key: bytes) -> np.ndarray:
        used.append(key)
        return _key_noise(photo, key)

    _, protected = _victim_and_protected(_key_noise)
    RegenerationAttack(record, keys=4, seed=5, avoid=[victim])(protected)
    assert victim not in used and len(set(used)) == len(used) == 4
    assert used == RegenerationAttack(record, keys=4, seed=5, avoid=[victim]).keys
    assert used != RegenerationAttack(record, keys=4, seed=6).keys


def _laid_by_spdesk(
    pattern: np.ndarray, photos: list[np.ndarray], working_size: int
) -> list[np.ndarray]:
    """``photos`` protected as ``spdesk protect --randomize`` lays a universal pattern."""
    from PIL import Image

    from spdesk.core.apply import ApplyOptions, UniversalApplier
    from spdesk.core.perturbation import Perturbation

    options = ApplyOptions(working_size=working_size, randomize=True, secret=b"s" * 32)
    applier = UniversalApplier(Perturbation(pattern, 6.0), options)
    return [
        np.asarray(applier.apply(Image.fromarray(photo), f"photo-{index}")[0])
        for index, photo in enumerate(photos)
    ]


def _share_removed(photo: np.ndarray, protected: np.ndarray, cleaned: np.ndarray) -> float:
    change = np.linalg.norm(protected.astype(float) - photo)
    return 1 - float(np.linalg.norm(cleaned.astype(float) - photo)) / float(change)


def test_averaging_removes_a_pattern_of_any_tile_laid_on_photos_larger_than_the_view() -> None:
    rng = np.random.default_rng(4)
    tile, working_size = 24, 48  # photos of 96 x 120: the pattern is laid at 48 x 64, resized
    pattern = (rng.choice([-6.0, 6.0], (3, tile, tile)) / 255).astype(np.float32)
    photos = [np.rint(_smooth_photo(rng, 96, 120)).astype(np.uint8) for _ in range(31)]
    protected = _laid_by_spdesk(pattern, photos, working_size)
    attack = AveragingAttack(period=tile, working_size=working_size)
    attack.fit(protected[1:])
    assert _share_removed(photos[0], protected[0], attack(protected[0])) > 0.5


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("down0.0", "downF takes a factor between 0 and 1"),
        ("down.0", "downF takes a factor between 0 and 1"),
        ("blur0", "blurS takes a sigma above 0"),
        ("jpeg75,blur0.0", "blurS takes a sigma above 0"),
    ],
)
def test_an_attack_that_would_do_nothing_or_erase_the_photo_is_refused(
    spec: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=f"{spec.split(',')[-1]!r}") as error:
        parse_attacks(spec)
    assert says in f"{error.value} {error.value.hint}"


def test_attacks_named_twice_are_measured_once_in_the_order_given() -> None:
    assert parse_attacks("jpeg75,average,JPEG75, jpeg75,blur1,average") == [
        "jpeg75",
        "average",
        "blur1",
    ]


def _smooth_pattern(rng: np.random.Generator, tile: int, blur: float) -> np.ndarray:
    """A ±6/255 tile with little fine detail (random noise blurred around the tile)."""
    from PIL import Image, ImageFilter

    noise = np.tile(rng.normal(0, 1, (tile, tile, 3)), (3, 3, 1))  # blurred as periodic
    image = Image.fromarray(np.uint8(np.clip(128 + 40 * noise, 0, 255)))
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), np.float32) - 128
    middle = blurred[tile : 2 * tile, tile : 2 * tile]
    return (middle / np.abs(middle).max() * 6 / 255).transpose(2, 0, 1).astype(np.float32)


def _flat_photos(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Flat photos of one colour each with a little sensor noise, 96 x 120."""
    return [
        np.clip(np.rint(rng.uniform(60, 190, 3) + rng.normal(0, 4, (96, 120, 3))), 0, 255).astype(
            np.uint8
        )
        for _ in range(count)
    ]


def test_the_strongest_averaging_removes_a_smooth_pattern_the_fine_residual_misses() -> None:
    """A pattern with little fine detail hides from a sigma-1.5 high-pass: estimated from the
    wide residual too, the attack removes it (the bundled pattern over real photos, 2026-12-06:
    left 1.09x random signs by the fine residual alone, 0.53x with the wide one)."""
    rng = np.random.default_rng(5)
    tile, working_size = 24, 48
    pattern = _smooth_pattern(rng, tile, blur=2.0)
    photos = _flat_photos(rng, 31)
    protected = _laid_by_spdesk(pattern, photos, working_size)
    fine = AveragingAttack(period=tile, working_size=working_size)
    fine.fit(protected[1:])
    strongest = StrongestAveraging.like(tile, working_size)
    assert len(strongest.fit(protected[1:])) == len(ESTIMATE_SIGMAS)
    assert _share_removed(photos[0], protected[0], fine(protected[0])) < 0.3
    assert _share_removed(photos[0], protected[0], strongest(protected[0])) > 0.5


def test_the_strongest_averaging_cleans_with_the_estimate_that_explains_the_photo() -> None:
    """Chosen without the original: the true pattern fits the photo's residual, a wrong
    estimate (another pattern) hardly does; in either order."""
    rng = np.random.default_rng(6)
    pattern = (rng.choice([-6.0, 6.0], (3, PERIOD, PERIOD)) / 255).astype(np.float32)
    wrong = (rng.choice([-6.0, 6.0], (3, PERIOD, PERIOD)) / 255).astype(np.float32)
    photo = np.rint(_smooth_photo(rng)).astype(np.uint8)
    protected = _laid_by_spdesk(pattern, [photo], working_size=64)[0]
    right_attack, wrong_attack = (AveragingAttack(PERIOD, working_size=64) for _ in range(2))
    right_attack.pattern, wrong_attack.pattern = pattern, wrong
    for order in ([right_attack, wrong_attack], [wrong_attack, right_attack]):
        cleaned = StrongestAveraging(order)(protected)
        np.testing.assert_array_equal(cleaned, right_attack(protected))
    assert _share_removed(photo, protected, right_attack(protected)) > 0.5


def test_known_names_the_removal_of_the_pattern_file_itself() -> None:
    assert parse_attacks("jpeg75,known") == ["jpeg75", "known"]
    assert is_removal("known") and not is_removal("jpeg75")
    with pytest.raises(ConfigError, match="not a simple attack"):
        simple_attack("known")
