"""Photo fine-tuning: photo mode's perturbation optimised per photo inside its shaped budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.errors import Cancelled, ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.photo_finetune import PhotoFineTuner, editor_size
from spdesk.core.photo_protect import GeneratorProtector
from spdesk.core.resample import lanczos_resize
from spdesk.core.shaping import Shaping, texture_budget
from tests import protect_samples as samples

KEY = b"k" * 32


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    from tiny_sd import save_tiny_vae

    return load_encoder(str(save_tiny_vae(tmp_path_factory.mktemp("pft") / "sd")), "cpu")


def _photo(height: int = 40, width: int = 56, grey: bool = False) -> Image.Image:
    rng = np.random.default_rng(height * 31 + width)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([60 + 2 * y, 90 + x, 150 - y], -1).astype(np.float64)
    pixels = smooth + rng.normal(0, 14, (height, width, 3)) * (x > width // 2)[..., None]
    if grey:
        pixels = pixels.mean(-1, keepdims=True).repeat(3, -1)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _distortion(encoder: Encoder, protected: Image.Image, original: Image.Image) -> float:
    """Relative latent distortion at the sizes the tuner looks at (24 and 40 px short sides)."""
    total = 0.0
    for side in (24, 40):
        views = []
        for image in (protected, original):
            x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
            views.append(lanczos_resize(x, editor_size(*x.shape[-2:], side)))
        with torch.no_grad():
            z, z0 = (encoder.encode(view).mean for view in views)
        total += float(((z - z0) ** 2).sum() / (z0**2).sum())
    return total


def _tuner(path: Path, encoder: Encoder, steps: int) -> PhotoFineTuner:
    return PhotoFineTuner(path, encoder, steps, key=KEY, editor_sides=(24, 40))


def test_fine_tuning_pushes_the_encoder_further_than_the_generator_alone(
    generator_file: Path, encoder: Encoder
) -> None:
    photo = _photo()
    start, _ = GeneratorProtector(generator_file, key=KEY).apply(photo)
    tuned, figures = _tuner(generator_file, encoder, 6).apply(photo)
    assert _distortion(encoder, tuned, photo) > 1.5 * _distortion(encoder, start, photo)
    assert figures[1] <= 8  # largest change in 8-bit steps


def test_the_change_stays_inside_the_shaped_budget(generator_file: Path, encoder: Encoder) -> None:
    photo = _photo()
    tuned, _ = _tuner(generator_file, encoder, 4).apply(photo)
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255
    # generator_file's shaping: floor 0.5; the budget per pixel is 8 * texture_budget, +1 for
    # the rounding to 8-bit values.
    bound = 8 * texture_budget(x, Shaping(floor=0.5))[0, 0].numpy() + 1
    change = np.abs(np.asarray(tuned, np.int16) - np.asarray(photo, np.int16)).max(-1)
    assert (change <= bound).all()
    assert change[:, : photo.width // 3].max() < change.max()  # flat areas get less


def test_grey_photos_stay_grey_after_fine_tuning(generator_file: Path, encoder: Encoder) -> None:
    photo = _photo(grey=True)
    tuned = np.asarray(_tuner(generator_file, encoder, 3).apply(photo)[0], np.int16)
    assert (tuned[..., 0] == tuned[..., 1]).all() and (tuned[..., 1] == tuned[..., 2]).all()


def test_the_same_photo_gives_the_same_bytes(generator_file: Path, encoder: Encoder) -> None:
    tuner = _tuner(generator_file, encoder, 3)
    a, _ = tuner.apply(_photo())
    b, _ = tuner.apply(_photo())
    assert a.tobytes() == b.tobytes()


def test_steps_are_reported_and_cancel_stops_between_them(
    generator_file: Path, encoder: Encoder
) -> None:
    tuner = _tuner(generator_file, encoder, 5)
    seen: list[tuple[int, int]] = []
    token = CancelToken()

    def on_step(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2:
            token.cancel()

    tuner.cancel, tuner.on_step = token, on_step
    with pytest.raises(Cancelled):
        tuner.apply(_photo())
    assert seen == [(1, 5), (2, 5)]


def test_a_larger_first_step_moves_further_from_the_generators_output(
    generator_file: Path, encoder: Encoder
) -> None:
    photo = _photo()
    start = np.asarray(GeneratorProtector(generator_file, key=KEY).apply(photo)[0], np.int16)

    def moved(first_step: float) -> float:
        tuner = PhotoFineTuner(
            generator_file, encoder, 1, key=KEY, editor_sides=(24, 40), first_step=first_step
        )
        return float(np.abs(np.asarray(tuner.apply(photo)[0], np.int16) - start).sum())

    assert 0 < moved(0.1) < moved(0.5) < moved(1.0)


def test_editor_views_stop_at_four_short_sides_long() -> None:
    """A photo at most 4:1 goes to the editor's short side as before; a thin panorama's view
    is bounded (its 512 px view would otherwise be 102400 px long: tens of GB of gradient)."""
    assert editor_size(375, 500, 512) == (512, 680)
    assert editor_size(512, 2048, 512) == (512, 2048)
    height, width = editor_size(16, 4000, 512)
    assert width <= 4 * 512 and height % 8 == 0 and height >= 8
    assert max(editor_size(1, 1, 512)) == 512


def test_a_thin_panorama_is_fine_tuned_within_bounded_memory(
    generator_file: Path, encoder: Encoder
) -> None:
    """Fine-tuning a 600x12 strip at a 96 px editor: the views it encodes stay within four
    short sides long (unbounded, the strip's view would be 4800 px long)."""
    seen: list[tuple[int, int]] = []
    real_encode = encoder.encode

    def encode(view: torch.Tensor) -> object:
        seen.append(tuple(view.shape[-2:]))
        return real_encode(view)

    tuner = PhotoFineTuner(generator_file, encoder, 1, key=KEY, editor_sides=(96,))
    try:
        encoder.encode = encode  # type: ignore[method-assign]
        tuner.apply(_photo(12, 600))
    finally:
        del encoder.encode
    assert seen and max(width for _h, width in seen) <= 4 * 96


def test_bad_settings_are_plain_errors(generator_file: Path, encoder: Encoder) -> None:
    with pytest.raises(ConfigError, match="steps"):
        PhotoFineTuner(generator_file, encoder, 0)
    with pytest.raises(ConfigError, match="first step"):
        PhotoFineTuner(generator_file, encoder, 1, first_step=0)
    with pytest.raises(ConfigError, match="Editor sizes"):
        PhotoFineTuner(generator_file, encoder, 2, editor_sides=(4,))


def test_a_job_fine_tunes_photo_mode_and_a_rerun_skips_it(
    tmp_path: Path, generator_file: Path
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.jobs import ProtectJob, ProtectSettings
    from spdesk.core.jobs.fingerprint import output_fingerprint

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.jpg"):
        _photo().save(inputs / name)
    vae = str(save_tiny_vae(tmp_path / "sd"))
    settings = ProtectSettings(
        mode="photo-finetune", generator=generator_file, encoder=vae, finetune_steps=2,
        device="cpu", working_size=32,
    )  # fmt: skip
    first = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert len(first.done) == 2 and not first.failed
    again = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert not again.done and len(again.skipped) == 2
    plain = ProtectSettings(mode="photo", generator=generator_file, working_size=32)
    more = ProtectSettings(
        mode="photo-finetune", generator=generator_file, encoder=vae, finetune_steps=3,
        working_size=32,
    )  # fmt: skip
    fingerprints = {output_fingerprint(s, "x") for s in (settings, plain, more)}
    assert len(fingerprints) == 3  # another mode or step count redoes the photo


@pytest.mark.parametrize(
    ("extra", "mode"),
    [
        ([], "photo-finetune"),
        (["--mode", "photo"], "photo-finetune"),
        (["--mode", "universal"], "finetune"),
    ],
)
def test_cli_fine_tune_refines_the_chosen_mode(extra: list[str], mode: str) -> None:
    import argparse

    from spdesk.cli.protect import register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["protect", "x", "--out", "y", "--fine-tune", "3", "--encoder", "taesd", *extra]
    )
    assert settings_from_args(args).mode == mode


@pytest.mark.parametrize(
    ("choice", "fine_tune", "own_pattern", "mode"),
    [
        (None, False, False, "photo"),
        (None, False, True, "universal"),
        ("photo", False, True, "photo"),
        (None, True, False, "photo-finetune"),
        (None, True, True, "finetune"),
        ("universal", True, False, "finetune"),
        ("photo", True, True, "photo-finetune"),
    ],
)
def test_job_mode_is_one_rule_for_the_cli_and_the_app(
    choice: str | None, fine_tune: bool, own_pattern: bool, mode: str
) -> None:
    from spdesk.core.jobs.settings import job_mode

    assert job_mode(choice, fine_tune=fine_tune, own_pattern=own_pattern) == mode


def test_the_apps_fine_tuned_choice_starts_from_photo_mode_unless_a_pattern_is_chosen(
    tmp_path: Path,
) -> None:
    pytest.importorskip("PySide6")
    from spdesk.gui.protect_bridge import job_settings
    from spdesk.gui.settings import ProtectOptions

    own = samples.perturbation_file(tmp_path)
    assert job_settings(ProtectOptions(mode="finetune")).mode == "photo-finetune"
    assert job_settings(ProtectOptions(mode="finetune", perturbation=str(own))).mode == "finetune"
    assert job_settings(ProtectOptions(mode="photo")).mode == "photo"


def test_a_looser_budget_lets_flat_areas_change_as_much_as_texture(
    generator_file: Path, encoder: Encoder
) -> None:
    photo = _photo()
    flat = slice(0, photo.width // 3)

    def flat_change(shaping: Shaping | None) -> float:
        tuner = PhotoFineTuner(
            generator_file, encoder, 2, key=KEY, editor_sides=(24, 40), shaping=shaping
        )
        tuned, _ = tuner.apply(photo)
        change = np.abs(np.asarray(tuned, np.int16) - np.asarray(photo, np.int16))
        return float(change[:, flat].mean())

    assert flat_change(Shaping(floor=1.0, colour=0.0)) > 1.5 * flat_change(None)


def _jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_jpeg_in_the_loss_makes_the_protection_survive_a_real_jpeg_resave(
    generator_file: Path, encoder: Encoder
) -> None:
    photo = _photo(48, 64)
    plain = _tuner(generator_file, encoder, 6).apply(photo)[0]
    hardened, figures = PhotoFineTuner(
        generator_file, encoder, 6, key=KEY, editor_sides=(24, 40), jpeg_quality=75
    ).apply(photo)
    after = {
        name: _distortion(encoder, _jpeg(image), _jpeg(photo))
        for name, image in (("plain", plain), ("hardened", hardened))
    }
    assert after["hardened"] > after["plain"]
    assert figures[1] <= 8


@pytest.mark.parametrize("quality", [0, 101])
def test_a_jpeg_quality_outside_1_to_100_is_refused(
    generator_file: Path, encoder: Encoder, quality: int
) -> None:
    with pytest.raises(ConfigError, match="JPEG quality"):
        PhotoFineTuner(generator_file, encoder, 2, key=KEY, jpeg_quality=quality)


@pytest.mark.parametrize(
    ("kind", "installed", "expected"),
    [
        ("cuda", ["taesd"], ("photo-finetune", "taesd", 8)),
        ("cuda", ["taesd", "sd15"], ("photo-finetune", "sd15", 8)),  # the editors' own encoder
        ("cuda", [], ("photo", None, None)),  # nothing to fine-tune against
        ("cpu", ["taesd", "sd15"], ("photo", None, None)),  # minutes a photo on a CPU
        ("mps", ["sd15"], ("photo", None, None)),  # not measured on Apple GPUs
    ],
)
def test_the_default_protection_fine_tunes_only_on_a_cuda_gpu_with_an_encoder(
    kind: str, installed: list[str], expected: tuple[str, str | None, int | None]
) -> None:
    from spdesk.core.jobs.settings import recommended_protection

    advice = recommended_protection(kind, installed)
    assert (advice.mode, advice.encoder, advice.steps) == expected
    assert bool(advice.reason) == (advice.mode == "photo-finetune")


def test_photo_fine_tuning_defends_against_a_jpeg_resave_by_default(
    tmp_path: Path, generator_file: Path
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.jobs import ProtectSettings
    from spdesk.core.jobs.fingerprint import output_fingerprint
    from spdesk.core.jobs.protector import build_protector
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    vae = str(save_tiny_vae(tmp_path / "sd"))
    pattern = load_perturbation(bundled_perturbation_path())
    tuners = {}
    for quality in (75, None, 90):
        settings = ProtectSettings(
            mode="photo-finetune", generator=generator_file, encoder=vae, finetune_steps=2,
            working_size=32, finetune_jpeg=quality,
        )  # fmt: skip
        tuners[quality] = (build_protector(settings, pattern), output_fingerprint(settings, "x"))
    default = ProtectSettings(mode="photo-finetune", generator=generator_file, encoder=vae)
    assert default.finetune_jpeg == 75
    assert {q: p.tuner.jpeg_quality for q, (p, _) in tuners.items()} == {75: 75, None: None, 90: 90}
    assert len({fingerprint for _, fingerprint in tuners.values()}) == 3  # each redoes the photo
    with pytest.raises(ConfigError, match="JPEG quality must be between 1 and 100"):
        ProtectSettings(mode="photo-finetune", finetune_jpeg=0)


def _cli_settings(*extra: str) -> object:
    import argparse

    from spdesk.cli.protect import register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return settings_from_args(parser.parse_args(["protect", "x", "--out", "y", *extra]))


@pytest.mark.parametrize(("given", "quality"), [([], 75), (["off"], None), (["90"], 90)])
def test_cli_fine_tune_jpeg_sets_the_quality_or_turns_it_off(
    given: list[str], quality: int | None
) -> None:
    extra = ["--fine-tune-jpeg", *given] if given else []
    settings = _cli_settings("--fine-tune", "3", "--encoder", "taesd", *extra)
    assert settings.finetune_jpeg == quality  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fine-tune-jpeg", "high"], r"JPEG quality \(1-100\) or .off."),
        (["--fine-tune-jpeg", "0"], "JPEG quality must be between 1 and 100"),
        (["--mode", "universal", "--fine-tune-jpeg", "80"], "applies to photo fine-tuning"),
    ],
)
def test_cli_fine_tune_jpeg_refuses_what_it_cannot_use(extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cli_settings("--fine-tune", "3", "--encoder", "taesd", *extra)


@pytest.mark.parametrize(
    ("device", "extra", "mode"),
    [
        ("cuda", [], "photo-finetune"),
        ("cuda", ["--mode", "photo"], "photo"),  # a choice made is kept
        ("cuda", ["--mode", "universal"], "universal"),
        ("cpu", [], "photo"),
    ],
)
def test_cli_fine_tunes_by_default_on_a_cuda_gpu_with_an_encoder(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    device: str,
    extra: list[str],
    mode: str,
) -> None:
    import spdesk.core.device
    import spdesk.core.models.store

    monkeypatch.setattr(spdesk.core.device, "resolve_device", lambda _: torch.device(device))
    monkeypatch.setattr(spdesk.core.models.store, "installed_encoders", lambda: ["taesd"])
    settings = _cli_settings(*extra)
    assert settings.mode == mode  # type: ignore[attr-defined]
    note = capsys.readouterr().err
    if mode == "photo-finetune":
        assert (settings.encoder, settings.finetune_steps) == ("taesd", 8)  # type: ignore[attr-defined]
        assert "TAESD" in note and "--mode photo" in note
    else:
        assert not note


def test_eval_measures_photo_fine_tuning_as_protect_runs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tiny_sd import save_tiny_vae

    from spdesk.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        _photo(64 + 8 * index, 72).save(photos / f"p{index}.png")
    vae = str(save_tiny_vae(tmp_path / "sd"))
    argv = ["eval", "--photos", str(photos), "--encoder", vae, "--sizes", "64", "--json"]
    argv += ["--working-size", "32"]  # fine-tuned at 16 and 32 px: quick
    assert main([*argv, "--fine-tune", "1", "--fine-tune-jpeg", "off"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["mode"] == "photo-finetune"
    assert table["candidates"][0]["name"] == "photo fine-tuned (1)"
    assert main([*argv, "--fine-tune-jpeg", "80"]) == 2
    assert "only used with --fine-tune" in capsys.readouterr().err
    assert main([*argv, "--fine-tune", "1", "--mode", "universal"]) == 2
    assert "leave out --mode universal" in capsys.readouterr().err


# --- batches ------------------------------------------------------------------------------------
def _distinct(count: int, height: int, width: int) -> list[Image.Image]:
    rng = np.random.default_rng(count * 7 + height)
    base = np.asarray(_photo(height, width), np.int16)
    return [
        Image.fromarray(np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8))
        for _ in range(count)
    ]


def test_a_batch_gives_each_photo_what_it_gets_alone_in_order(
    generator_file: Path, encoder: Encoder
) -> None:
    photos = [*_distinct(2, 40, 56), *_distinct(1, 48, 40), *_distinct(1, 40, 56)]
    alone = [_tuner(generator_file, encoder, 3).apply(photo)[0] for photo in photos]
    tuner = PhotoFineTuner(generator_file, encoder, 3, key=KEY, editor_sides=(24, 40), batch_size=4)
    steps: list[tuple[int, int]] = []
    tuner.on_step = lambda done, total: steps.append((done, total))
    together = [protected for protected, _ in tuner.apply_batch(photos)]
    samples.assert_batched_like_alone(
        [np.asarray(p) for p in photos],
        [np.asarray(p) for p in alone],
        [np.asarray(p) for p in together],
    )
    for single, batched in zip(alone, together, strict=True):
        # What rounding can flip moves a value by up to a step (measured with two threads: up to
        # 4 8-bit steps), never beyond the budget.
        difference = np.abs(np.asarray(single, np.int16) - np.asarray(batched, np.int16))
        assert difference.max() <= 2 * 8
    # Two passes (the three 40x56 photos, then the 48x40 one), three steps each.
    assert steps == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]


def test_a_batch_that_runs_out_of_gpu_memory_is_split(
    generator_file: Path, encoder: Encoder
) -> None:
    tuner = PhotoFineTuner(generator_file, encoder, 2, key=KEY, editor_sides=(24, 40), batch_size=4)
    photos = _distinct(4, 40, 56)
    expected = [np.asarray(p) for p, _ in tuner.apply_batch(photos)]
    refine, sizes = tuner.refine, []

    def small_gpu(x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        if len(x) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return refine(x, raw)

    tuner.refine = small_gpu  # type: ignore[method-assign]
    results = [np.asarray(p) for p, _ in tuner.apply_batch(photos)]
    assert sizes == [4, 2, 1, 1, 1, 1]  # halved until it fits, then no larger than that
    assert tuner.batch_size == 1
    # Another batch size may round differently; each photo still has its own protection.
    samples.assert_batched_like_alone([np.asarray(p) for p in photos], expected, results)


def test_a_job_fine_tunes_photos_in_batches_of_its_setting(
    tmp_path: Path, generator_file: Path
) -> None:
    from tiny_sd import save_tiny_vae

    from spdesk.core.jobs import ProtectSettings
    from spdesk.core.jobs.protector import build_protector
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    vae = str(save_tiny_vae(tmp_path / "sd"))
    pattern = load_perturbation(bundled_perturbation_path())
    made = {}
    for batch in (None, 3):
        settings = ProtectSettings(
            mode="photo-finetune", generator=generator_file, encoder=vae, finetune_steps=1,
            working_size=32, finetune_batch=batch, device="cpu",
        )  # fmt: skip
        made[batch] = build_protector(settings, pattern).batch_size
    assert made == {None: 1, 3: 3}  # one photo at a time on a CPU unless asked
    assert (
        _cli_settings(
            "--fine-tune", "3", "--encoder", "taesd", "--fine-tune-batch", "4"
        ).finetune_batch
        == 4
    )  # type: ignore[attr-defined]


def test_the_loss_sees_the_editors_lanczos_view(generator_file: Path, encoder: Encoder) -> None:
    """What the fine-tuning pushes is what a diffusers editor encodes: the photo resized with
    Pillow's Lanczos filter (the first view encoded is the clean photo at the 24 px editor)."""
    seen: list[torch.Tensor] = []
    real_encode = encoder.encode

    def encode(view: torch.Tensor) -> object:
        seen.append(view.detach().clone())
        return real_encode(view)

    photo = _photo()
    tuner = PhotoFineTuner(generator_file, encoder, 1, key=KEY, editor_sides=(24,))
    try:
        encoder.encode = encode  # type: ignore[method-assign]
        tuner.apply(photo)
    finally:
        del encoder.encode
    pixels = np.asarray(photo, dtype=np.float32) / 255
    expected = np.stack(
        [
            np.asarray(Image.fromarray(pixels[..., c]).resize((32, 24), Image.LANCZOS))
            for c in range(3)
        ]
    )
    np.testing.assert_allclose(seen[0][0].numpy(), expected, atol=1e-5)


def _save_tiny_autoencoder(path: Path, seed: int) -> None:
    """Random TAESD-shaped weights (a single ``AutoencoderTiny`` safetensors file)."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = AutoencoderTiny().state_dict()  # type: ignore[no-untyped-call]
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def test_a_rerun_redoes_photos_when_the_encoders_weights_change_not_its_name(
    tmp_path: Path, generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder's weights are what a re-run compares: other weights under the same name
    redo the photo; the same weights under another name (a relative path) do not."""
    from dataclasses import replace

    from spdesk.core.jobs import ProtectJob, ProtectSettings

    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo().save(inputs / "a.png")
    weights = tmp_path / "enc.safetensors"
    _save_tiny_autoencoder(weights, seed=0)
    settings = ProtectSettings(
        mode="photo-finetune", generator=generator_file, encoder=str(weights), finetune_steps=1,
        device="cpu", working_size=32, finetune_jpeg=None,
    )  # fmt: skip

    def run(settings: ProtectSettings) -> tuple[int, int]:
        report = ProtectJob([inputs], tmp_path / "out", settings).run()
        return len(report.done), len(report.skipped)

    assert run(settings) == (1, 0)
    monkeypatch.chdir(inputs)
    assert run(replace(settings, encoder="../enc.safetensors")) == (0, 1)
    _save_tiny_autoencoder(weights, seed=1)  # other weights, same file name
    assert run(settings) == (1, 0)
