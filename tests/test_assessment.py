"""``spdesk.core.assessment.assess``: a time-boxed run still ends with a table."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ssimulacra2")
pytest.importorskip("flip_evaluator")


def _photos(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (72, 72, 3), dtype=np.uint8) for _ in range(count)]


def _brighter(photo: np.ndarray, index: int) -> np.ndarray:
    return np.clip(photo.astype(int) + 4, 0, 255).astype(np.uint8)


def test_a_passed_deadline_reports_the_photos_measured_so_far(tmp_path: Path) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(3)
    whole = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    cut = assess(
        photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,), deadline=time.monotonic()
    )
    assert (whole.photos, cut.photos) == (3, 1)  # the first photo is always measured
    first = assess(photos[:1], {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    assert cut.to_dict()["candidates"] == first.to_dict()["candidates"]


def test_runs_on_the_same_photos_merge_into_one_table_and_others_are_refused(
    tmp_path: Path,
) -> None:
    import json

    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import Assessment, assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(2)

    def darker(photo: np.ndarray, index: int) -> np.ndarray:
        return np.clip(photo.astype(int) - 4, 0, 255).astype(np.uint8)

    first = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    second = assess(photos, {"darker": darker}, encoder, eps=8, sizes=(64,))
    both = assess(photos, {"brighter": _brighter, "darker": darker}, encoder, eps=8, sizes=(64,))
    saved = [Assessment.from_dict(json.loads(json.dumps(r.to_dict()))) for r in (first, second)]
    merged = saved[0].merged(saved[1])
    assert merged.to_dict()["gain_over_random_signs"] == both.to_dict()["gain_over_random_signs"]
    assert merged.format() == both.format()
    other_photos = assess(_photos(3)[1:], {"darker": darker}, encoder, eps=8, sizes=(64,))
    with pytest.raises(ValueError, match="baselines differ"):
        first.merged(other_photos)
    with pytest.raises(ValueError, match="same encoder, photos"):
        first.merged(assess(photos[:1], {"darker": darker}, encoder, eps=8, sizes=(64,)))


def test_a_merged_table_keeps_the_attack_figures_of_a_run_that_is_not_listed_first(
    tmp_path: Path,
) -> None:
    """The baselines of each run were measured under that run's attacks only: a merge that
    kept the first run's baseline rows printed "n/a" for every attack the second run did."""
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(2)

    def darker(photo: np.ndarray, index: int) -> np.ndarray:
        return np.clip(photo.astype(int) - 4, 0, 255).astype(np.uint8)

    plain = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(64,))
    attacked = assess(photos, {"darker": darker}, encoder, eps=8, sizes=(64,), attacks=["blur1"])
    merged = plain.merged(attacked)
    assert merged.kept("darker", 64, "blur1") == attacked.kept("darker", 64, "blur1")
    assert merged.gain("darker", "64/blur1") == attacked.gain("darker", "64/blur1")
    assert merged.gain("darker", "64/blur1") is not None


def test_mode_protect_regenerates_with_another_key_never_the_victims(
    generator_file: Path,
) -> None:
    from spdesk.core.assessment import mode_protect
    from spdesk.core.keys import install_key

    protect = mode_protect("photo", generator=generator_file)[0]
    photo = _photos(1)[0]
    before = protect(photo, 0)
    other = protect.regenerate(photo, b"k" * 32)
    assert protect.victim == install_key()
    assert not np.array_equal(before, other)
    assert np.array_equal(protect(photo, 0), before)  # the install's key is back
    with pytest.raises(ValueError, match="victim's secret key"):
        protect.regenerate(photo, install_key())


def test_regeneration_undoes_the_universal_pattern_anyone_can_lay() -> None:
    from spdesk.core.assessment import mode_protect
    from spdesk.core.attacks import RegenerationAttack

    protect = mode_protect("universal")[0]
    y, x = np.mgrid[0:96, 0:96]
    photo = np.repeat((80 + y + x / 2)[..., None], 3, axis=2).astype(np.uint8)
    protected = protect(photo, 0)
    cleaned = RegenerationAttack(protect.regenerate, keys=1)(protected)
    before = np.abs(protected.astype(int) - photo.astype(int)).mean()
    assert np.abs(cleaned.astype(int) - photo.astype(int)).mean() < 0.1 * before


def test_the_table_reports_regeneration_per_mode_and_na_without_a_key(
    tmp_path: Path, generator_file: Path
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import assess, mode_protect
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photo_mode = mode_protect("photo", generator=generator_file)[0]
    report = assess(
        _photos(1), {"photo": photo_mode, "brighter": _brighter}, encoder, eps=8, sizes=(64,),
        attacks=["regenerate2"],
    )  # fmt: skip
    assert "64/regenerate2" in report.get("photo").strength
    assert "64/regenerate2" in report.get("random signs").strength
    assert "64/regenerate2" not in report.get("brighter").strength
    assert "brighter" in report.format() and "regenerate2 n/a" in report.format()
    # No averaging attack was asked for: the heading does not speak of one.
    heading = report.format().splitlines()[0]
    assert heading.startswith("encoder ") and ", 1 photo, eps 8, " in heading, heading
    assert "attack fitted" not in report.format()


def test_mode_protect_fine_tunes_the_universal_pattern_towards_the_objective_asked(
    tmp_path: Path,
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import mode_protect

    vae = str(save_tiny_vae(tmp_path / "vae"))
    for objective in ("encoder", "latent", None):
        protect = mode_protect("finetune", encoder=vae, finetune_steps=1, objective=objective)[0]
        tuner = protect.protector.tuner  # type: ignore[attr-defined]
        # None: the job's default, away from the photo's own latent (measured the stronger)
        assert [item.name for item in tuner.objectives] == [objective or "latent"]
        protected = protect(_photos(1)[0], 0)
        assert np.abs(protected.astype(int) - _photos(1)[0].astype(int)).max() <= 8


def test_the_averaging_attack_knows_the_universal_patterns_tile_and_working_view(
    tmp_path: Path,
) -> None:
    from spdesk.core.assessment import _attack_functions, mode_protect
    from spdesk.core.perturbation import save_perturbation

    rng = np.random.default_rng(5)
    tile = (rng.choice([-6.0, 6.0], (3, 24, 24)) / 255).astype(np.float32)
    pattern = save_perturbation(tmp_path / "mine.safetensors", tile, eps=6)
    protect = mode_protect("universal", perturbation=pattern, working_size=48)[0]
    y, x = np.mgrid[0:96, 0:120]  # larger than the 48 px view: laid there, then resized
    photos = [
        np.repeat((60 + y * (0.5 + i / 40) + x / 3)[..., None], 3, axis=2).astype(np.uint8)
        for i in range(25)
    ]
    attack = _attack_functions(protect, ["average"], photos[1:], None)["average"]
    protected = protect(photos[0], 0)
    cleaned = attack(protected)
    change = np.linalg.norm(protected.astype(float) - photos[0])
    assert np.linalg.norm(cleaned.astype(float) - photos[0]) < 0.5 * change


def test_the_json_report_holds_every_figure_the_text_prints() -> None:
    from spdesk.core.assessment import SIGN, Assessment, CandidateFigures, Strength

    report = Assessment("enc", 1, 0, [64], ["jpeg75"], 8)
    mine = {"64/clean": Strength(0.3, 0.7), "64/jpeg75": Strength(0.2, 0.8)}
    noise = {"64/clean": Strength(0.1, 0.9), "64/jpeg75": Strength(0.1, 0.9)}
    report.candidates = [
        CandidateFigures("mine", strength=mine, transfer={"taef2": 0.4}),
        CandidateFigures(SIGN, strength=noise, transfer={"taef2": 0.2}),
    ]
    data = report.to_dict()
    gains = data["gain_over_random_signs"]["mine"]["64/clean"]
    assert gains == pytest.approx({"latent": 3.0, "rt_ssim_drop": 3.0})
    # Gain 3 before, 2 after: half the advantage over random signs is left.
    kept = data["kept_share_of_gain_over_random_signs"]
    assert kept["editor_size"] == 64
    assert kept["candidates"] == {
        "mine": {"jpeg75": pytest.approx({"latent": 0.5, "rt_ssim_drop": 0.5})}
    }
    assert "jpeg75 50%/50%" in report.format()
    assert data["transfer_latent_gain_over_random_signs"] == {"mine": {"taef2": 2.0}}
    assert "taef2 2.00x" in report.format()


def test_no_share_kept_is_reported_for_a_protection_hardly_better_than_random_signs() -> None:
    """A share of a hair's advantage is noise: a 256 px tile measured at gain 1.00 read
    "average -3668%"."""
    from spdesk.core.assessment import SIGN, Assessment, CandidateFigures, Strength

    report = Assessment("enc", 1, 0, [64], ["average"], 8)
    hair = {"64/clean": Strength(0.1005, 0.9), "64/average": Strength(0.08, 0.9)}
    noise = {"64/clean": Strength(0.1, 0.9), "64/average": Strength(0.1, 0.9)}
    report.candidates = [
        CandidateFigures("hair", strength=hair),
        CandidateFigures(SIGN, strength=noise),
    ]
    assert report.kept("hair", 64, "average") is None
    assert "%" not in report.format().split("average", 1)[-1].splitlines()[0]


def test_the_averaging_attack_removes_a_smooth_pattern_as_well_as_a_fine_one(
    tmp_path: Path,
) -> None:
    """The assessment's attack estimates from the wide residual too: from the fine one only,
    the bundled pattern over real photos kept 14% of its advantage where the wide one leaves
    it below random signs (audit, 2026-12-06)."""
    from test_attacks import _flat_photos, _smooth_pattern

    from spdesk.core.assessment import _attack_functions, mode_protect
    from spdesk.core.perturbation import save_perturbation

    rng = np.random.default_rng(5)
    tile = _smooth_pattern(rng, 24, blur=2.0)
    pattern = save_perturbation(tmp_path / "smooth.safetensors", tile, eps=6)
    protect = mode_protect("universal", perturbation=pattern, working_size=48)[0]
    photos = _flat_photos(rng, 31)
    attack = _attack_functions(protect, ["average"], photos[1:], None)["average"]
    protected = protect(photos[0], 0)
    change = np.linalg.norm(protected.astype(float) - photos[0])
    assert np.linalg.norm(attack(protected).astype(float) - photos[0]) < 0.5 * change


def test_an_assessment_says_why_a_share_kept_is_not_given() -> None:
    """ "-" stood in the table with no word: no advantage over random signs to keep."""
    from spdesk.core.assessment import SIGN, Assessment, CandidateFigures, Strength

    def candidate(name: str, latent: float) -> CandidateFigures:
        figures = Strength(latent=latent, rt_ssim=0.9)
        return CandidateFigures(name, strength={"64/clean": figures, "64/jpeg75": figures})

    report = Assessment(
        encoder="tiny", photos=2, attack_photos=0, sizes=[64], attacks=["jpeg75"], eps=8,
        candidates=[candidate(SIGN, 1.0), candidate("flat", 1.0)],
    )  # fmt: skip
    text = report.format()
    assert "jpeg75 -/-" in text and "no advantage to keep" in text


def test_the_known_pattern_attack_subtracts_the_universal_pattern_file_itself(
    tmp_path: Path,
) -> None:
    """Anyone has the bundled pattern: aligned (the layout's shift and flips found) and
    subtracted, in its grey form on a grey photo as spdesk lays it, it leaves nothing of the
    pattern laid 1:1 and little of one enlarged from the view; random noise has nothing public
    to subtract, and photo mode no pattern file (n/a)."""
    from spdesk.core.assessment import _attack_functions, mode_protect, sign_noise
    from spdesk.core.perturbation import save_perturbation

    rng = np.random.default_rng(7)
    tile = (rng.choice([-6.0, 6.0], (3, 24, 24)) / 255).astype(np.float32)
    pattern = save_perturbation(tmp_path / "mine.safetensors", tile, eps=6)
    y, x = np.mgrid[0:96, 0:120]
    base = (60 + y * 0.7 + x / 3)[..., None]
    grey = np.repeat(base, 3, axis=2).astype(np.uint8)
    colour = np.concatenate([base, base * 1.1, base * 0.8], axis=2).astype(np.uint8)
    for working_size, photo, removed in ((96, grey, 0.99), (96, colour, 0.99), (48, colour, 0.7)):
        protect = mode_protect(
            "universal", perturbation=pattern, working_size=working_size, strength=4
        )[0]
        assert protect.pattern is not None
        assert np.abs(protect.pattern).max() == pytest.approx(4 / 255)
        attack = _attack_functions(protect, ["known"], [], None)["known"]
        protected = protect(photo, 0)
        change = np.linalg.norm(protected.astype(float) - photo)
        left = np.linalg.norm(attack(protected).astype(float) - photo)
        assert left < (1 - removed) * change, (working_size, left / change)
    noise = sign_noise(4)(colour, 0)
    assert _attack_functions(sign_noise(4), ["known"], [], None)["known"](noise) is noise
    photo_mode = mode_protect("photo", working_size=48)[0]
    assert "known" not in _attack_functions(photo_mode, ["known"], [], None)


def _editor_change(photo: np.ndarray, protected: np.ndarray, size: int) -> np.ndarray:
    from spdesk.core.assessment import editor_view

    return editor_view(protected, size).astype(float) - editor_view(photo, size)


def test_signs_laid_at_the_view_survive_the_editor_s_downsizing_where_full_size_signs_fade() -> (
    None
):
    """On a photo larger than the view, full-size ±eps signs are averaged away by the editor's
    downsizing: they are no fair reference for a protection laid at the view (audit F2)."""
    from spdesk.core.assessment import sign_noise, view_sign_noise

    photo = np.full((96, 160, 3), 128, np.uint8)
    laid = view_sign_noise(8, view=32)(photo, 0)
    assert set(np.unique(laid.astype(int) - photo)) == {-8, 8}  # still ±eps on every pixel
    at_view = _editor_change(photo, laid, 32).std()
    full_size = _editor_change(photo, sign_noise(8)(photo, 0), 32).std()
    assert at_view > 5 and full_size < 3, (at_view, full_size)


def test_signs_at_the_view_are_per_pixel_on_a_photo_no_larger_than_it() -> None:
    from spdesk.core.assessment import view_sign_noise

    photo = np.full((40, 48, 3), 128, np.uint8)
    change = view_sign_noise(8, view=64)(photo, 0).astype(int) - photo
    assert set(np.unique(change)) == {-8, 8}
    assert 0.4 < (change[:, 1:] == change[:, :-1]).mean() < 0.6  # no blocks: independent signs


def test_an_assessment_of_photos_larger_than_the_view_adds_signs_laid_at_it(
    tmp_path: Path,
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.assessment import SIGN, VIEW_SIGNS, assess
    from spdesk.core.encoders import load_encoder

    encoder = load_encoder(str(save_tiny_vae(tmp_path / "vae")), "cpu")
    photos = _photos(2)  # 72 px
    small = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(32,), view=72)
    assert VIEW_SIGNS not in small.names() and "laid at the" not in small.format()
    large = assess(photos, {"brighter": _brighter}, encoder, eps=8, sizes=(32,), view=48)
    assert large.names()[-1] == VIEW_SIGNS
    mine, laid = (large.get(n).strength["32/clean"].latent for n in ("brighter", VIEW_SIGNS))
    over = large.to_dict()["gain_over_signs_at_the_view"]["brighter"]["32/clean"]["latent"]
    assert over == pytest.approx(mine / laid)
    assert large.gain(VIEW_SIGNS, "32/clean") == pytest.approx(
        laid / large.get(SIGN).strength["32/clean"].latent
    )
    assert f"@32 {mine / laid:.2f}x" in large.format().split("laid at the 48 px view")[1]
    # The other figures are those of a run without it.
    assert large.to_dict()["candidates"][:3] == small.to_dict()["candidates"]


def test_runs_whose_signs_were_laid_at_other_views_do_not_merge() -> None:
    """Each run's gains over signs at the view are over its own view's (review)."""
    from spdesk.core.assessment import SIGN, Assessment, CandidateFigures, Strength

    def run(view: int) -> Assessment:
        sign = CandidateFigures(SIGN, strength={"64/clean": Strength(0.1, 0.9)})
        return Assessment("enc", 1, 0, [64], [], 8, view, candidates=[sign])

    assert run(512).merged(run(512)).view == 512
    with pytest.raises(ValueError, match="view"):
        run(512).merged(run(256))
    assert Assessment.from_dict(run(256).to_dict()).view == 256
