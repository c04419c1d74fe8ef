"""Universal training: reproducibility, resume equivalence, cancellation, saved metadata, events;
and a small run with the real TAESD that beats same-eps random noise on held-out photos."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from tiny_sd import save_tiny_vae

from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.errors import Cancelled, ConfigError, ModelMissingError, ObjectiveError
from spdesk.core.events import CancelToken, Event
from spdesk.core.events.training import (
    CheckingPattern,
    CheckpointSaved,
    TrainStarted,
    TrainStep,
    ValidationReport,
)
from spdesk.core.perturbation import load_perturbation
from spdesk.core.train import (
    TrainClock,
    TrainConfig,
    checkpoint_crop_size,
    checkpoint_damage,
    train_universal,
)


@pytest.fixture(autouse=True)
def small_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-out check at a 64 px editor: a 512 px one costs the tiny VAE a minute."""
    import spdesk.core.train as train

    monkeypatch.setattr(train, "EDITOR_SIZE", 64)


def write_photos(folder: Path, count: int = 6, seed: int = 0) -> Path:
    """Smooth random colour fields with some texture, of mixed sizes and aspects."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = (40, 56) if i % 2 else (48, 40)
        ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
        base = rng.uniform(0.2, 0.8, 3)
        slope = rng.uniform(-0.5, 0.5, (3, 2))
        image = base[:, None, None] + slope[:, 0, None, None] * ys + slope[:, 1, None, None] * xs
        image = image + rng.normal(0, 0.05, (3, height, width))
        pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Encoder]:
    root = tmp_path_factory.mktemp("train")
    photos = write_photos(root / "photos")
    vae = save_tiny_vae(root / "sd")
    return photos, vae, load_encoder(str(vae), "cpu")


def _config(photos: Path, vae: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "photos": str(photos),
        "encoder": str(vae),
        "steps": 6,
        "batch": 2,
        "size": 32,
        "val_every": 3,
        "val_photos": 2,
        "checkpoint_every": 3,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def test_seeded_runs_are_reproducible(tiny_setup: tuple[Path, Path, Encoder]) -> None:
    photos, vae, encoder = tiny_setup
    first = train_universal(_config(photos, vae, objective="latent"), encoder=encoder)
    again = train_universal(_config(photos, vae, objective="latent"), encoder=encoder)
    other = train_universal(_config(photos, vae, objective="latent", seed=1), encoder=encoder)
    assert np.array_equal(first.delta, again.delta)
    assert not np.array_equal(first.delta, other.delta)
    assert first.delta.shape == (3, 32, 32) and first.delta.dtype == np.float32
    assert float(np.abs(first.delta).max()) <= 8 / 255 + 1e-7


def _cancel_at_step(step: int, config: TrainConfig, encoder: Encoder, checkpoint: Path) -> None:
    """Start a run that writes ``checkpoint`` and cancel it at ``step``."""
    token = CancelToken()

    def stop(event: Event) -> None:
        if isinstance(event, TrainStep) and event.step == step:
            token.cancel()

    with pytest.raises(Cancelled):
        train_universal(config, encoder=encoder, checkpoint=checkpoint, on_event=stop, cancel=token)


def test_resume_from_checkpoint_equals_straight_run(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, optimizer="adam", robust=("crop", "jpeg"))
    straight = train_universal(config, encoder=encoder)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(4, config, encoder, checkpoint)
    assert checkpoint.is_file()  # written on cancel, at step 4 (cancel honoured within a step)
    events: list[Event] = []
    resumed = train_universal(
        config, encoder=encoder, checkpoint=checkpoint, resume=True, on_event=events.append
    )
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.resumed_from == 4
    assert np.array_equal(resumed.delta, straight.delta)
    assert [r.step for r in resumed.validation] == [3, 6]
    with pytest.raises(ConfigError, match="different training settings") as refused:
        train_universal(
            replace(config, eps=4.0, robust=("crop",)),
            encoder=encoder,
            checkpoint=checkpoint,
            resume=True,
        )
    # It names what differs, and only that.
    assert "(eps 8 in the checkpoint, 4 now; robust crop+jpeg in the checkpoint, crop now)" in str(
        refused.value
    )


def test_every_training_seed_holds_out_the_same_photos(tmp_path: Path) -> None:
    """A second run with another --seed must not train on the photos the first held out; only
    --split-seed chooses them."""
    from spdesk.core.train import _Trainer

    photos = write_photos(tmp_path / "photos", count=10)
    encoder = load_encoder(str(save_tiny_vae(tmp_path / "sd")), "cpu")

    def held_out(**seeds: int) -> list[str]:
        trainer = _Trainer(_config(photos, tmp_path, **seeds), encoder, lambda event: None)
        return sorted(path.name for path in trainer.val_paths)

    first = held_out(seed=0)
    assert len(first) == 4
    assert held_out(seed=1) == first and held_out(seed=7, split_seed=0) == first
    assert held_out(seed=0, split_seed=3) != first


def test_a_checkpoint_resumes_only_with_the_photos_it_held_out(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """A checkpoint that split by its seed (as every one did before --split-seed) resumes with
    that split, and is refused, naming the split seed, with another."""
    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, objective="latent", steps=4, seed=2, split_seed=2)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(2, config, encoder, checkpoint)
    with safe_open(str(checkpoint), framework="pt") as handle:
        assert "split_seed" not in handle.metadata()["settings"]  # as written before the option
    with pytest.raises(ConfigError, match=r"\(split_seed 2 in the checkpoint, 0 now\)"):
        train_universal(
            replace(config, split_seed=0), encoder=encoder, checkpoint=checkpoint, resume=True
        )
    resumed = train_universal(config, encoder=encoder, checkpoint=checkpoint, resume=True)
    assert np.array_equal(resumed.delta, train_universal(config, encoder=encoder).delta)


def test_a_checkpoint_from_before_settings_were_stored_names_its_crop_size(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    photos, vae, encoder = tiny_setup
    checkpoint = tmp_path / "old.ckpt.safetensors"
    config = _config(photos, vae, steps=3, checkpoint_every=3)
    train_universal(config, encoder=encoder, checkpoint=checkpoint)
    with safe_open(str(checkpoint), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(checkpoint))
    for settings in (None, "[1, 2", '["a list"]'):  # as older spdesk wrote it; a damaged header
        if settings is None:
            del meta["settings"]
        else:
            meta["settings"] = settings
        save_file(tensors, str(checkpoint), metadata=meta)
        with pytest.raises(ConfigError, match="size 32 in the checkpoint, 40 now"):
            train_universal(
                _config(photos, vae, size=40), encoder=encoder, checkpoint=checkpoint, resume=True
            )
    assert checkpoint_crop_size(checkpoint) == 32
    assert checkpoint_crop_size(tmp_path / "missing.safetensors") is None
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert checkpoint_crop_size(tmp_path / "junk.safetensors") is None
    # Its resume key is unchanged: the same settings still resume it.
    events: list[Event] = []
    train_universal(
        config, encoder=encoder, checkpoint=checkpoint, resume=True, on_event=events.append
    )
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed_from == 3


def test_events_and_saved_metadata(tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path) -> None:
    photos, vae, encoder = tiny_setup
    events: list[Event] = []
    out = tmp_path / "mine.safetensors"
    config = _config(photos, vae, name="mine", robust=("resize", "blur"), eps=4)
    result = train_universal(
        config,
        out=out,
        checkpoint=tmp_path / "c.safetensors",
        encoder=encoder,
        on_event=events.append,
    )
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] and {s.steps for s in steps} == {6}
    assert all(np.isfinite(s.loss) for s in steps)
    assert steps[-1].eta_s is not None and steps[-1].eta_s > 0  # the last validation is to come
    assert {s.loss for s in steps} != {steps[0].loss}  # the loss of each step, not a constant
    assert sum(isinstance(e, ValidationReport) for e in events) == 2
    assert sum(isinstance(e, CheckpointSaved) for e in events) == 2
    loaded = load_perturbation(out)
    assert result.path == out and loaded.eps == 4 and loaded.size == (32, 32)
    meta = loaded.metadata
    assert meta["name"] == "mine" and meta["encoder"] == encoder.id
    assert meta["encoder_hash"] == encoder.fingerprint
    assert meta["transforms"] == ["resize", "blur"] and meta["steps"] == 6
    assert meta["train_photos"] + meta["val_photos"] == 6
    assert len(meta["train_fingerprint"]) == 16
    assert [o["name"] for o in meta["objectives"]] == ["latent"]  # the measured default
    assert meta["optimizer"]["start"] == "random"  # latent needs it: zero gradient at 0
    assert meta["optimizer"]["optimizer"] == "pgd" and meta["config"]["size"] == 32
    assert set(meta["validation"]) >= {"distortion", "sign_distortion", "uniform_distortion"}
    # The photos' folder by its name alone: a shared pattern does not say where they are.
    assert meta["config"]["photos"] == photos.name
    assert str(photos) not in json.dumps(meta)


def test_the_time_left_counts_the_validations_still_to_run() -> None:
    """Issue 14's re-timing: with the steps alone, the last step said "0 s left" while the
    final validation took as long as 3-4 steps more."""
    now = [0.0]
    config = TrainConfig(photos="p", encoder="taesd", steps=100, batch=4, val_every=25)
    clock = TrainClock(config, now=lambda: now[0])
    assert clock.eta(0) is None
    now[0] = 2.0
    assert clock.eta(1) is None  # the first step starts the timing
    now[0] = 10.0  # 4 more steps of 2 s
    # 95 steps, then validations at 25, 50, 75 and the last; before one is timed (and with no
    # guess from the trainer), each is taken to cost val_photos / batch = 16 / 4 steps.
    assert clock.eta(5) == pytest.approx(95 * 2 + 4 * 4 * 2)
    now[0] = 50.0  # step 25; its validation runs right after its report
    assert clock.validations_left(25) == 4
    with clock.validating():
        now[0] = 62.0  # 12 s: validations now cost what was measured, not what was guessed
    now[0] = 112.0  # 25 more steps of 2 s
    assert clock.validations_left(50) == 3
    assert clock.eta(50) == pytest.approx(50 * 2 + 3 * 12)
    assert clock.eta(100) == pytest.approx(12)  # only the final validation is left


def test_the_first_estimates_leave_out_the_warm_up_and_price_a_check_as_the_trainer_timed_it() -> (
    None
):
    """The dialog's 48-step run at 64 px (TAESD, CPU), as measured: the first step took 0.6 s
    (warm-up), the others 0.2 s, each check 1.1 s where val_photos / batch said 2 steps
    (0.4 s). The estimate was 4.5 s high after step 1 and 1-4 s low before the first check."""
    now = [0.0]
    config = TrainConfig(photos="p", encoder="taesd", steps=48, batch=4, val_every=25, val_photos=8)
    clock = TrainClock(config, now=lambda: now[0], validation_guess_s=1.1)

    def truth(done: int) -> float:  # the steps left at 0.2 s, the checks left at 1.1 s
        return (48 - done) * 0.2 + clock.validations_left(done) * 1.1

    now[0] = 0.6
    assert clock.eta(1) is None and clock.seconds_per_step(1) is None  # warm-up: not a rate
    for done in range(2, 26):
        now[0] = 0.6 + (done - 1) * 0.2
        assert clock.eta(done) == pytest.approx(truth(done))
    assert clock.seconds_per_step(25) == pytest.approx(0.2)
    with clock.validating():
        now[0] += 1.1
    now[0] += 0.2
    assert clock.eta(26) == pytest.approx(truth(26))  # the check is not counted as a step


def test_posterior_objective_on_kl_vae_and_refusals(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    photos, vae, encoder = tiny_setup
    result = train_universal(_config(photos, vae, objective="pca+", steps=2), encoder=encoder)
    assert float(np.abs(result.delta).max()) > 0
    with pytest.raises(ConfigError, match="multiple of 8"):
        _config(photos, vae, size=30)
    with pytest.raises(ConfigError, match="Unknown robustness"):
        _config(photos, vae, robust=("rotate",))
    with pytest.raises(ObjectiveError):
        train_universal(_config(photos, vae, objective="nope"), encoder=encoder)
    single = write_photos(tmp_path / "one", count=1)
    with pytest.raises(ConfigError, match="at least 2"):
        train_universal(_config(single, vae), encoder=encoder)


@pytest.mark.shared
@pytest.mark.slow
def test_real_taesd_beats_random_noise_on_held_out(taesd_path: Path, shared_photos: Path) -> None:
    import torch

    from spdesk.core.evaluate import evaluate_protection, load_eval_photos
    from spdesk.core.train import find_photos, split_photos

    torch.set_num_threads(2)
    encoder = load_encoder(str(taesd_path), "cpu")
    config = TrainConfig(
        photos=str(shared_photos),
        encoder=str(taesd_path),
        objective="latent",
        steps=30,
        batch=8,
        size=64,
        max_photos=40,
        val_every=0,
        val_photos=4,
        checkpoint_every=0,
    )
    result = train_universal(config, encoder=encoder)
    _, held_out = split_photos(find_photos(shared_photos), config.split, 0, config.max_photos)
    table = evaluate_protection(
        load_eval_photos(held_out, 64)[0], encoder, result.delta, 8, jpeg_quality=None
    )
    mine, uniform, signs = table.row("perturbation"), table.row("uniform"), table.row("sign")
    assert mine.latent > uniform.latent and mine.latent > signs.latent * 1.2
    assert mine.rt_ssim is not None and uniform.rt_ssim is not None and signs.rt_ssim is not None
    assert mine.rt_ssim < uniform.rt_ssim and mine.rt_ssim < signs.rt_ssim


def test_training_holds_out_a_readable_photo_when_every_held_out_one_is_unreadable(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """Six files, the two the split holds out damaged: four readable photos are enough, so
    one of them is held out instead of refusing the folder as 'too few readable'."""
    import shutil

    from spdesk.core.train import find_photos, split_photos
    from tests import protect_samples as samples

    photos, vae, encoder = tiny_setup
    folder = shutil.copytree(photos, tmp_path / "photos")
    config = _config(folder, vae, objective="latent")
    held_out = split_photos(find_photos(folder), config.split, config.seed, None)[1]
    for path in held_out:
        samples.truncated_jpeg(path)
    events: list[Event] = []
    result = train_universal(config, encoder=encoder, on_event=events.append)
    first = next(e for e in events if isinstance(e, TrainStarted))
    assert {s.path for s in first.skipped} == set(held_out)
    assert first.val_photos == 1 and first.train_photos == 6 - len(held_out) - 1
    assert result.metadata["val_photos"] == 1


def test_a_photo_given_where_a_folder_of_photos_is_needed_is_named_as_a_file(
    tmp_path: Path,
) -> None:
    from spdesk.core.errors import ConfigError
    from spdesk.core.train import find_photos

    photos = write_photos(tmp_path / "photos", count=2)
    one = next(photos.iterdir())
    with pytest.raises(ConfigError, match="is a file; a folder of photos is needed") as info:
        find_photos(one)  # it said "Photo folder not found" of a file that is there
    assert str(photos) in (info.value.hint or "")
    with pytest.raises(ConfigError, match="Photo folder not found"):
        find_photos(tmp_path / "nowhere")


def test_a_finished_run_is_checked_on_held_out_photos_the_products_way(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    pytest.importorskip("ssimulacra2", reason="the eval extra's metrics are not installed")
    photos, vae, encoder = tiny_setup
    events: list[Event] = []
    out = tmp_path / "seen.safetensors"
    config = _config(photos, vae, steps=2)
    result = train_universal(config, out=out, encoder=encoder, on_event=events.append, check=True)
    measuring = [e for e in events if isinstance(e, CheckingPattern)]
    assert measuring == [CheckingPattern(photos=len(result.held_out), editor=64)]
    assert result.product_gain is not None and result.product_gain.editor == 64
    assert load_perturbation(out).metadata["product_gain"]["gain"] == result.product_gain.gain
    assert set(result.held_out) <= set(photos.glob("*.png"))
    assert len(result.held_out) == result.metadata["val_photos"] > 0
    seen = result.visibility
    assert seen is not None and seen.photos == len(result.held_out)
    assert 0 < seen.ssimulacra2 < 100 and 0 < seen.flip < 1
    assert load_perturbation(out).metadata["visibility"]["ssimulacra2"] == seen.ssimulacra2
    unchecked = train_universal(config, encoder=encoder)  # not asked for
    assert unchecked.visibility is None and unchecked.product_gain is None


def test_the_check_after_the_last_step_reports_its_progress_and_is_in_the_time_left(
    tiny_setup: tuple[Path, Path, Encoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check took 1.5-2 min on a CPU with SD 1.5's VAE after the bar and the time left
    said the run was done: each stage now counts its photos, and the time left counts the
    check where its time was measured."""
    import spdesk.core.train as train
    from spdesk.core.events.training import CheckStep

    monkeypatch.setattr(train, "visibility_available", lambda: True)
    monkeypatch.setattr(train, "pattern_visibility", lambda *a, on_photo, **k: on_photo(1))
    monkeypatch.setattr(train, "pattern_check_seconds", lambda encoder, kind: 100.0)
    photos, vae, encoder = tiny_setup
    events: list[Event] = []
    train_universal(
        _config(photos, vae, steps=3), encoder=encoder, on_event=events.append, check=True
    )
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps[-1].eta_s is not None and steps[-1].eta_s >= 100.0
    checks = [e for e in events if isinstance(e, CheckStep)]
    measured = next(e for e in events if isinstance(e, CheckingPattern)).photos
    effect = [(e.done, e.total) for e in checks if e.stage == "effect"]
    assert effect == [(done, measured) for done in range(measured + 1)]
    assert [(e.stage, e.done) for e in checks[-2:]] == [("visibility", 0), ("visibility", 1)]
    assert checks[0].eta_s is None and effect and checks[len(effect) - 1].eta_s == 0.0


def test_the_checks_estimate_goes_by_the_encoders_network_not_its_name(
    taesd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--encoder path/to/taesd.safetensors` had no estimate for the check, and the time left
    left it out: the figures were looked up by the names "taesd" and "sd15" only."""
    import spdesk.core.train as train
    from spdesk.core.encoders import measured_as
    from spdesk.core.speed_figures import PATTERN_CHECK_SECONDS_CPU

    monkeypatch.setattr(train, "visibility_available", lambda: False)  # the effect is enough
    monkeypatch.setattr(train, "EDITOR_SIZE", 64)
    encoder = load_encoder(str(taesd_path), "cpu")
    assert measured_as(encoder) == "taesd"
    events: list[Event] = []
    config = _config(write_photos(tmp_path / "photos", count=4), taesd_path, steps=3)
    train_universal(config, encoder=encoder, on_event=events.append, check=True)
    checking = next(e for e in events if isinstance(e, CheckingPattern))
    assert checking.estimate_s == PATTERN_CHECK_SECONDS_CPU["taesd"]
    last = [e for e in events if isinstance(e, TrainStep)][-1]
    assert last.eta_s is not None and last.eta_s >= PATTERN_CHECK_SECONDS_CPU["taesd"]


def test_without_the_eval_extra_only_visibility_is_skipped(
    tiny_setup: tuple[Path, Path, Encoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    import spdesk.core.train as train

    monkeypatch.setattr(train, "visibility_available", lambda: False)
    photos, vae, encoder = tiny_setup
    events: list[Event] = []
    result = train_universal(
        _config(photos, vae, steps=1), encoder=encoder, on_event=events.append, check=True
    )
    assert result.visibility is None and "visibility" not in result.metadata
    assert result.product_gain is not None  # the strength half needs nothing extra
    assert sum(isinstance(e, CheckingPattern) for e in events) == 1


def _cancel_when_measuring() -> tuple[CancelToken, Callable[[Event], None]]:
    """A token, and the event sink that sets it once the held-out check begins."""
    token = CancelToken()

    def on_event(event: Event) -> None:
        if isinstance(event, CheckingPattern):
            token.cancel()

    return token, on_event


def test_cancelling_while_measuring_keeps_every_step_in_the_checkpoint(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spdesk.core.train as train

    monkeypatch.setattr(train, "visibility_available", lambda: True)
    photos, vae, encoder = tiny_setup
    checkpoint = tmp_path / "run.ckpt.safetensors"
    token, cancel_when_measuring = _cancel_when_measuring()
    config = _config(photos, vae, steps=5, checkpoint_every=3)
    with pytest.raises(Cancelled):
        train_universal(
            config,
            encoder=encoder,
            checkpoint=checkpoint,
            on_event=cancel_when_measuring,
            cancel=token,
            check=True,
        )
    events: list[Event] = []
    train_universal(
        config, encoder=encoder, checkpoint=checkpoint, resume=True, on_event=events.append
    )
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed_from == 5


def test_cancelling_the_final_check_without_a_checkpoint_saves_the_finished_pattern(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step had run: a cancel during the held-out figures threw the whole run away
    where no --checkpoint was asked for. The pattern is saved, marked unchecked; a cancel
    before the last step still saves nothing."""
    import spdesk.core.train as train
    from spdesk.core.perturbation import load_perturbation

    monkeypatch.setattr(train, "visibility_available", lambda: True)
    photos, vae, encoder = tiny_setup
    out = tmp_path / "pattern.safetensors"
    token, cancel_when_measuring = _cancel_when_measuring()
    config = _config(photos, vae, steps=3)
    run = dict(encoder=encoder, out=out, cancel=token, check=True)
    with pytest.raises(train.CancelledWhileChecking) as raised:
        train_universal(config, on_event=cancel_when_measuring, **run)  # type: ignore[arg-type]
    assert raised.value.path == out
    saved = load_perturbation(out)
    assert saved.metadata["steps"] == 3 and saved.metadata["checked"] == "cancelled"
    assert "product_gain" not in saved.metadata
    out.unlink()
    token = CancelToken()
    token.cancel()  # before the first step
    with pytest.raises(Cancelled) as early:
        train_universal(config, **(run | {"cancel": token}))  # type: ignore[arg-type]
    assert not isinstance(early.value, train.CancelledWhileChecking) and not out.exists()


def test_a_checkpoint_that_cannot_be_written_is_refused_before_any_step(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    photos, vae, encoder = tiny_setup
    events: list[Event] = []
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder; a checkpoint needs a file name"):
        train_universal(
            _config(photos, vae), encoder=encoder, checkpoint=folder, on_event=events.append
        )
    assert not events  # refused before training started: no step was lost


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x10" + bytes(20)])
def test_resuming_from_a_damaged_checkpoint_says_so(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, content: bytes
) -> None:
    photos, vae, encoder = tiny_setup
    checkpoint = tmp_path / "run.ckpt.safetensors"
    checkpoint.write_bytes(content)
    with pytest.raises(ConfigError, match="is damaged or not a checkpoint"):
        train_universal(_config(photos, vae), encoder=encoder, checkpoint=checkpoint, resume=True)


def _poisoned(checkpoint: Path, damage: str) -> None:
    """Rewrite ``checkpoint`` with a resume key that fits but ``damage`` done to its tensors
    or its held-out history."""
    import torch
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(checkpoint))
    if damage == "pattern beyond its budget":  # a forged or damaged file: 10x the pattern
        tensors["delta"] = torch.full_like(tensors["delta"], 80 / 255)
    elif damage == "history not JSON":
        meta["validation"] = "{broken"
    elif damage == "history of unknown reports":
        meta["validation"] = '[{"foo": 1}]'
    if damage == "nan pattern":
        tensors["delta"][0, 0, 0] = float("nan")
    elif damage == "infinite optimiser state":
        tensors["exp_avg_sq"][1, 2, 3] = float("inf")
    elif damage == "wrong shape":
        tensors["delta"] = torch.zeros(3, 8, 8)
    elif damage == "step past the run":
        tensors["step"] = torch.tensor([99], dtype=torch.int64)
    save_file(tensors, str(checkpoint), metadata=meta)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("nan pattern", "not a number"),
        ("infinite optimiser state", "not a number"),
        ("wrong shape", "3x8x8"),
        ("step past the run", "step 99"),
        ("pattern beyond its budget", "reaches 80.00/255, over the run's budget of 8/255"),
    ],
)
def test_resuming_from_a_checkpoint_with_damaged_tensors_is_refused_before_any_step(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, damage: str, said: str
) -> None:
    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, steps=4)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(2, config, encoder, checkpoint)
    _poisoned(checkpoint, damage)
    events: list[Event] = []
    with pytest.raises(ConfigError, match="is damaged") as refused:
        train_universal(
            config, encoder=encoder, checkpoint=checkpoint, resume=True, on_event=events.append
        )
    assert said in str(refused.value)
    assert "without --resume" in refused.value.user_text()  # what to do about it
    assert not events  # no step trained on it, no slow check, nothing lost


def test_a_checkpoint_with_a_pattern_beyond_its_budget_is_called_damaged(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """What the app asks before it resumes a library run implicitly (and drops a damaged
    checkpoint)."""
    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, steps=4)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(2, config, encoder, checkpoint)
    assert checkpoint_damage(checkpoint, config) is None
    _poisoned(checkpoint, "pattern beyond its budget")
    assert checkpoint_damage(checkpoint, config)


@pytest.mark.parametrize("damage", ["history not JSON", "history of unknown reports"])
def test_a_checkpoint_with_a_damaged_history_resumes_without_it(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, damage: str
) -> None:
    """The history is only a record (the run's state is in the tensors): a damaged one crashed
    the resume (TypeError), and calling the checkpoint damaged would have the app delete hours
    of training. The run resumes at its step; the unreadable reports are left out."""
    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, steps=4, val_every=2)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(3, config, encoder, checkpoint)
    _poisoned(checkpoint, damage)
    assert checkpoint_damage(checkpoint, config) is None
    events: list[Event] = []
    resumed = train_universal(
        config, encoder=encoder, checkpoint=checkpoint, resume=True, on_event=events.append
    )
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed_from == 3
    assert [r.step for r in resumed.validation] == [4]  # step 2's report was in the history


def test_a_checkpoint_history_with_figures_of_a_later_spdesk_resumes_keeping_its_own(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """A report may hold more figures than this spdesk knows: they are only a record, and the
    run's state is in the tensors, so they are left out rather than the run refused."""
    import json

    from safetensors.torch import load_file, save_file

    photos, vae, encoder = tiny_setup
    config = _config(photos, vae, steps=4, val_every=2)
    checkpoint = tmp_path / "run.ckpt.safetensors"
    _cancel_at_step(3, config, encoder, checkpoint)
    with safe_open(str(checkpoint), framework="pt") as handle:
        meta = handle.metadata()
    (report,) = json.loads(meta["validation"])
    meta["validation"] = json.dumps([{**report, "new_figure": 0.5}])
    save_file(load_file(str(checkpoint)), str(checkpoint), metadata=meta)
    resumed = train_universal(config, encoder=encoder, checkpoint=checkpoint, resume=True)
    assert [r.step for r in resumed.validation] == [2, 4]
    assert resumed.validation[0].distortion == report["distortion"]


def test_a_folder_of_broken_photos_is_refused_in_a_few_plain_words(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """Each file was named twice ("broken2.jpg: broken2.jpg looks like a JPEG file...;"), and
    every one of them listed: a wall of text in the app's box and footer."""
    from spdesk.core.errors import ConfigError
    from tests import protect_samples as samples

    _photos, vae, encoder = tiny_setup
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(5):
        samples.truncated_jpeg(folder / f"broken{i}.jpg")
    with pytest.raises(ConfigError) as raised:
        train_universal(_config(folder, vae, objective="latent"), encoder=encoder)
    message = raised.value.message
    assert "has too few readable photos" in message and "and 2 more." in message
    assert message.count("broken0.jpg") == 1 and "broken4.jpg" not in message
    assert "at least 2 photos" in (raised.value.hint or "")


# --- a full disk during training ---------------------------------------------------------------
def _disk_full_at(monkeypatch: pytest.MonkeyPatch, name: str, place: Path) -> None:
    """``spdesk.core.train.<name>`` (a save) fails as on a full disk when it writes ``place``."""
    import spdesk.core.train as train
    from spdesk.core.errors import DiskFullError

    real = getattr(train, name)

    def save(path: Path, *args: object, **kwargs: object) -> object:
        if Path(path) == place:
            raise DiskFullError(f"The disk is full: {place.name} could not be written.")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(train, name, save)


def test_a_checkpoint_that_cannot_be_written_is_reported_and_training_goes_on(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first failed checkpoint ended the run, --out never written (audit)."""
    from spdesk.core.events.training import CheckpointFailed

    photos, vae, encoder = tiny_setup
    checkpoint, out = tmp_path / "full" / "run.ckpt", tmp_path / "out.safetensors"
    _disk_full_at(monkeypatch, "save_checkpoint", checkpoint)
    events: list[Event] = []
    config = _config(photos, vae, steps=5, checkpoint_every=2)
    result = train_universal(
        config, out=out, checkpoint=checkpoint, encoder=encoder, on_event=events.append
    )
    assert result.path == out and out.is_file()
    failed = [e for e in events if isinstance(e, CheckpointFailed)]
    assert [e.step for e in failed] == [2, 4, 5]  # every 2 steps, and the finished run's
    assert "disk is full" in failed[0].reason
    assert [e.step for e in events if isinstance(e, TrainStep)] == [1, 2, 3, 4, 5]


def test_a_result_that_cannot_be_saved_is_kept_in_its_checkpoint_and_saved_by_resuming(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finished steps are checkpointed before the save: --resume saves them, no step run."""
    from spdesk.core.errors import DiskFullError

    photos, vae, encoder = tiny_setup
    checkpoint, out = tmp_path / "run.ckpt", tmp_path / "full" / "out.safetensors"
    config = _config(photos, vae, steps=5, checkpoint_every=3)  # 5: no periodic checkpoint
    straight = train_universal(config, encoder=encoder)
    with monkeypatch.context() as patch:
        _disk_full_at(patch, "save_perturbation", out)
        with pytest.raises(DiskFullError) as info:
            train_universal(config, out=out, checkpoint=checkpoint, encoder=encoder)
    said = info.value.user_text()
    assert "disk is full" in said and str(checkpoint) in said and "--resume" in said
    events: list[Event] = []
    again = train_universal(
        config, out=out, checkpoint=checkpoint, resume=True, encoder=encoder,
        on_event=events.append,
    )  # fmt: skip
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed_from == 5
    assert not [e for e in events if isinstance(e, TrainStep)]
    np.testing.assert_array_equal(load_perturbation(out).delta, again.delta)
    np.testing.assert_allclose(again.delta, straight.delta, atol=1e-6)


def test_a_result_that_cannot_be_saved_without_a_checkpoint_is_kept_in_the_cache(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the end threw the whole training away, without a word of it (audit)."""
    import re

    from spdesk.core.errors import DiskFullError

    photos, vae, encoder = tiny_setup
    out = tmp_path / "full" / "out.safetensors"
    _disk_full_at(monkeypatch, "save_perturbation", out)
    with pytest.raises(DiskFullError) as info:
        train_universal(_config(photos, vae, steps=2), out=out, encoder=encoder)
    said = info.value.user_text()
    kept = re.search(r"kept at (\S+\.safetensors)", said)
    assert kept is not None, said
    rescued = load_perturbation(Path(kept.group(1)))
    assert rescued.eps == 8 and np.abs(rescued.delta).max() > 0
    assert not out.exists()


def test_a_library_run_whose_save_fails_resumes_at_its_end(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path
) -> None:
    """Its checkpoint was written only every 50 steps: a failed save trained again from step 0
    (audit)."""
    from spdesk.core.usecases import library_checkpoint, train_into_library

    photos, vae, _encoder = tiny_setup
    config = _config(photos, vae, steps=5, checkpoint_every=3)
    train_into_library(config)  # then its save to the library fails: nothing deletes it
    assert library_checkpoint(config).is_file()
    events: list[Event] = []
    train_into_library(config, on_event=events.append)
    assert next(e for e in events if isinstance(e, TrainStarted)).resumed_from == 5


def test_a_folder_with_too_few_photos_is_said_before_the_encoder_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SD 1.5's VAE takes a while to load on a CPU: the empty folder came after it (audit)."""
    import spdesk.core.train as train

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the encoder was loaded first")

    monkeypatch.setattr(train, "load_encoder", never)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds 0 photo"):
        train_universal(_config(tmp_path / "empty", tmp_path / "vae"))


@pytest.mark.parametrize("objective", ["sds+", "sds-", "advdm", "encoder,advdm"])
def test_a_missing_sd_model_is_said_before_the_encoder_loads(
    tiny_setup: tuple[Path, Path, Encoder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    objective: str,
) -> None:
    """The objectives that need SD 1.5's UNet found it missing at their first step, after
    the encoder had loaded and "Training on N photos" had been said (audit)."""
    import spdesk.core.train as train

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the encoder was loaded first")

    monkeypatch.setattr(train, "load_encoder", never)
    photos, vae, _encoder = tiny_setup
    events: list[Event] = []
    with pytest.raises(ModelMissingError, match=r"Stable Diffusion 1\.5 is not installed"):
        train_universal(_config(photos, vae, objective=objective), on_event=events.append)
    assert events == []


def test_a_run_cancelled_while_checking_on_a_full_disk_still_saves_its_out(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's DiskFullError replaced the cancel: a finished run lost its --out, on
    a disk with room (review)."""
    import spdesk.core.train as train
    from spdesk.core.train import CancelledWhileChecking

    monkeypatch.setattr(train, "visibility_available", lambda: True)
    photos, vae, encoder = tiny_setup
    checkpoint, out = tmp_path / "full" / "run.ckpt", tmp_path / "out.safetensors"
    _disk_full_at(monkeypatch, "save_checkpoint", checkpoint)
    token, cancel_when_measuring = _cancel_when_measuring()
    with pytest.raises(CancelledWhileChecking):
        train_universal(
            _config(photos, vae, steps=3), out=out, checkpoint=checkpoint, encoder=encoder,
            on_event=cancel_when_measuring, cancel=token, check=True,
        )  # fmt: skip
    assert load_perturbation(out).metadata["checked"] == "cancelled"


def test_a_result_whose_last_checkpoint_failed_too_is_kept_in_the_cache_not_promised(
    tiny_setup: tuple[Path, Path, Encoder], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error sent the user to --resume a checkpoint of step 4 of 5 (review)."""
    import re

    import spdesk.core.train as train
    from spdesk.core.errors import DiskFullError
    from spdesk.core.train import checkpoint_step, save_checkpoint

    photos, vae, encoder = tiny_setup
    checkpoint, out = tmp_path / "run.ckpt", tmp_path / "full" / "out.safetensors"

    def fails_at_the_end(path: Path, trainer: object) -> None:
        if trainer.optimizer.step_index == 5:  # type: ignore[attr-defined]
            raise DiskFullError("The disk is full.")
        save_checkpoint(path, trainer)  # type: ignore[arg-type]

    monkeypatch.setattr(train, "save_checkpoint", fails_at_the_end)
    _disk_full_at(monkeypatch, "save_perturbation", out)
    config = _config(photos, vae, steps=5, checkpoint_every=2)
    with pytest.raises(DiskFullError) as info:
        train_universal(config, out=out, checkpoint=checkpoint, encoder=encoder)
    said = info.value.user_text()
    assert checkpoint_step(checkpoint) == 4 and "--resume" not in said
    kept = re.search(r"kept at (\S+\.safetensors)", said)
    assert kept is not None and load_perturbation(Path(kept.group(1))).eps == 8, said
