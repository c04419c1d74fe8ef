"""Per-photo fine-tuning: bound, improvement on the editor's view, odd sizes, cancel, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spdesk.core.apply import ApplyOptions, apply_perturbation
from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.encoders.tiny import taesana_encoder
from spdesk.core.errors import Cancelled, ConfigError, ModelMissingError, ObjectiveError
from spdesk.core.events import CancelToken
from spdesk.core.finetune import FineTuner
from spdesk.core.jobs import ProtectSettings
from spdesk.core.objectives import build_objective
from spdesk.core.objectives.base import BatchCache
from spdesk.core.perturbation import Perturbation
from tests import protect_samples as samples

OPTIONS = ApplyOptions(working_size=32)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    from tiny_sd import save_tiny_vae

    return load_encoder(str(save_tiny_vae(tmp_path_factory.mktemp("ft") / "sd")), "cpu")


@pytest.fixture
def universal() -> Perturbation:
    rng = np.random.default_rng(0)
    delta = rng.choice([-8 / 255, 8 / 255], (3, 16, 16)).astype(np.float32)
    return Perturbation(delta=delta, eps=8.0)


def _photo(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(height * 7 + width)
    return rng.integers(40, 215, (height, width, 3), dtype=np.uint8)


def _editor_loss(encoder: Encoder, protected: np.ndarray, original: np.ndarray) -> float:
    """The encoder objective on what an editor sees: both photos downsized to the working view."""
    import torch.nn.functional as F

    def view(image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(x, size=(32, 48), mode="bilinear", antialias=True)

    with torch.no_grad():
        value = build_objective("encoder").value(
            encoder, view(protected), view(original), BatchCache()
        )
    return float(value.mean())


def test_zero_steps_is_plain_application(encoder: Encoder, universal: Perturbation) -> None:
    image = _photo(45, 70)
    tuner = FineTuner(universal, encoder, steps=0, options=OPTIONS)
    assert np.array_equal(tuner.protect(image), apply_perturbation(image, universal, OPTIONS))


def test_a_grey_photo_stays_grey_after_fine_tuning(
    encoder: Encoder, universal: Perturbation
) -> None:
    grey = np.repeat(_photo(45, 70)[..., :1], 3, axis=2)
    out = FineTuner(universal, encoder, steps=2, options=OPTIONS).protect(grey).astype(np.int16)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert 0 < np.abs(out - grey).max() <= universal.eps


def test_fine_tuning_improves_the_objective_within_budget(
    encoder: Encoder, universal: Perturbation
) -> None:
    image = _photo(64, 96)  # working view 32x48: downsizing is in the loop
    plain = apply_perturbation(image, universal, OPTIONS)
    calls: list[tuple[int, int]] = []
    tuned = FineTuner(universal, encoder, steps=8, options=OPTIONS, step_size=2).protect(
        image, on_step=lambda done, total: calls.append((done, total))
    )
    assert calls == [(i, 8) for i in range(1, 9)]
    assert tuned.shape == image.shape and tuned.dtype == np.uint8
    assert int(np.abs(tuned.astype(int) - image.astype(int)).max()) <= 8
    assert _editor_loss(encoder, tuned, image) < _editor_loss(encoder, plain, image)


def test_fine_tuning_with_a_missing_sd_model_stops_before_any_photo(
    encoder: Encoder, universal: Perturbation
) -> None:
    """sds+ and advdm load SD 1.5's UNet at their first step: a job without it failed every
    photo, one by one, for the same reason."""
    with pytest.raises(ModelMissingError, match=r"Stable Diffusion 1\.5 is not installed"):
        FineTuner(universal, encoder, steps=1, objective="sds+", options=OPTIONS)


def test_strength_override_bounds_the_result(encoder: Encoder, universal: Perturbation) -> None:
    image = _photo(40, 40)
    tuned = FineTuner(universal, encoder, steps=3, strength=2, options=OPTIONS).protect(image)
    assert int(np.abs(tuned.astype(int) - image.astype(int)).max()) <= 2


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (9, 50), (300, 200)])
def test_odd_sizes(encoder: Encoder, universal: Perturbation, shape: tuple[int, int]) -> None:
    image = _photo(*shape)
    tuned = FineTuner(universal, encoder, steps=2, options=OPTIONS).protect(image, key="k")
    assert tuned.shape == image.shape
    assert int(np.abs(tuned.astype(int) - image.astype(int)).max()) <= 8


def test_cancel_within_a_step(encoder: Encoder, universal: Perturbation) -> None:
    token = CancelToken()

    def on_step(done: int, _total: int) -> None:
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        FineTuner(universal, encoder, steps=10, options=OPTIONS).protect(
            _photo(32, 32), cancel=token, on_step=on_step
        )


def test_refusals(tmp_path: Path, universal: Perturbation, encoder: Encoder) -> None:
    torch.save(taesana_encoder().state_dict(), tmp_path / "taesana_encoder.pth")
    deterministic = load_encoder(str(tmp_path / "taesana_encoder.pth"), "cpu")
    with pytest.raises(ObjectiveError, match="posterior"):
        FineTuner(universal, deterministic, steps=5, objective="pca-")
    with pytest.raises(ConfigError):
        FineTuner(universal, encoder, steps=-1)


# --- batches ------------------------------------------------------------------------------------
def _distinct_photos(count: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(count + height)
    return [rng.integers(40, 215, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_a_batch_gives_each_photo_what_it_gets_alone(
    encoder: Encoder, universal: Perturbation
) -> None:
    photos = _distinct_photos(3, 40, 60)
    alone = FineTuner(universal, encoder, steps=4, options=OPTIONS)
    together = FineTuner(universal, encoder, steps=4, options=OPTIONS, batch_size=3)
    batched = together.protect_batch(photos, keys=["a", "b", "c"])
    singles = [alone.protect(photo, key=key) for photo, key in zip(photos, "abc", strict=True)]
    samples.assert_batched_like_alone(photos, singles, batched)
    for single, result in zip(singles, batched, strict=True):
        # What rounding can flip moves a value by a step or so, never across the budget.
        assert np.abs(result.astype(int) - single.astype(int)).max() <= 2


def test_a_batch_groups_photos_by_size_and_keeps_their_order(
    encoder: Encoder, universal: Perturbation
) -> None:
    sizes = [(40, 60), (48, 36), (40, 60), (48, 36), (40, 60)]
    photos = [_photo(h, w) for h, w in sizes]
    tuner = FineTuner(universal, encoder, steps=2, options=OPTIONS, batch_size=2)
    steps: list[tuple[int, int]] = []
    results = tuner.protect_batch(photos, on_step=lambda done, total: steps.append((done, total)))
    assert [r.shape[:2] for r in results] == sizes
    # Three batches (two 40x60 photos, then one, and the two 48x36 ones), two steps each.
    assert steps == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    for photo, result in zip(photos, results, strict=True):
        change = np.abs(result.astype(int) - photo.astype(int))
        assert 0 < change.max() <= 8


def test_a_batch_that_runs_out_of_gpu_memory_is_split(
    encoder: Encoder, universal: Perturbation, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _distinct_photos(4, 40, 60)
    tuner = FineTuner(universal, encoder, steps=2, options=OPTIONS, batch_size=4)
    expected = tuner.protect_batch(photos)
    optimise = FineTuner.optimise_working_deltas
    tried: list[int] = []

    def small_gpu(self: FineTuner, images: list[np.ndarray], *args: object, **kw: object) -> object:
        tried.append(len(images))
        if len(images) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return optimise(self, images, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FineTuner, "optimise_working_deltas", small_gpu)
    results = tuner.protect_batch(photos)
    assert tried == [4, 2, 1, 1, 2, 1, 1]
    for result, reference in zip(results, expected, strict=True):
        assert np.abs(result.astype(int) - reference.astype(int)).max() <= 2
    # Later batches start from the last size that was tried, not from 4 again.
    assert tuner.batch_size == 1
    tried.clear()
    tuner.protect_batch(photos)
    assert tried == [1, 1, 1, 1]


def test_a_batch_is_cancelled_within_a_step(encoder: Encoder, universal: Perturbation) -> None:
    cancel = CancelToken()
    tuner = FineTuner(universal, encoder, steps=5, options=OPTIONS, batch_size=2)

    def cancel_after_two(done: int, _total: int) -> None:
        if done == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        tuner.protect_batch(_distinct_photos(2, 40, 60), cancel=cancel, on_step=cancel_after_two)


def test_batch_size_must_be_positive(encoder: Encoder, universal: Perturbation) -> None:
    with pytest.raises(ConfigError, match="batch"):
        FineTuner(universal, encoder, steps=1, batch_size=0)


@pytest.mark.parametrize(
    ("view", "full"),
    [((32, 48), (45, 70)), ((16, 24), (160, 240)), ((24, 16), (24, 40)), ((32, 32), (32, 32))],
)
def test_the_editor_view_operator_equals_resizing_up_and_down(
    view: tuple[int, int], full: tuple[int, int]
) -> None:
    from spdesk.core.finetune import EditorView, resize_view

    delta = torch.randn(2, 3, *view, generator=torch.Generator().manual_seed(1))
    editor = EditorView(view, full, torch.device("cpu"))
    assert editor.operators is not None
    direct = resize_view(resize_view(delta, full), view)
    torch.testing.assert_close(editor(delta), direct, atol=1e-5, rtol=1e-5)


def test_a_photo_smaller_than_its_view_is_resized_directly() -> None:
    from spdesk.core.finetune import EditorView, resize_view

    editor = EditorView((376, 496), (375, 500), torch.device("cpu"))  # the 8-pixel alignment
    assert editor.operators is None
    delta = torch.randn(1, 3, 376, 496)
    torch.testing.assert_close(
        editor(delta), resize_view(resize_view(delta, (375, 500)), (376, 496))
    )


def test_the_universal_fine_tunings_fingerprint_follows_the_encoders_weights(
    tmp_path: Path,
) -> None:
    """Fine-tuning the universal pattern against other weights in the same folder gives other
    bytes: a re-run must redo those photos (the folder's name alone would skip them)."""
    from tiny_sd import save_tiny_vae

    from spdesk.core.jobs import ProtectSettings
    from spdesk.core.jobs.fingerprint import output_fingerprint

    folder = str(save_tiny_vae(tmp_path / "sd", seed=0))
    settings = ProtectSettings(mode="finetune", encoder=folder, finetune_steps=2)
    before = output_fingerprint(settings, "x")
    save_tiny_vae(tmp_path / "sd", seed=1)
    assert output_fingerprint(settings, "x") != before


def test_a_re_run_with_every_photo_finished_loads_no_encoder(
    tmp_path: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spdesk protect --mode universal --fine-tune N` run again on a folder it had finished
    loaded the encoder first (41 s under load) to skip every photo. A new photo loads it, before
    anything is written; a missing encoder is still refused before the output folder is made."""
    from dataclasses import replace

    from tiny_sd import save_tiny_vae

    from spdesk.core import encoders
    from spdesk.core.jobs import ProtectJob

    folder = str(save_tiny_vae(tmp_path / "sd", seed=0))
    tuned = replace(settings, mode="finetune", encoder=folder, finetune_steps=1)
    photos = tmp_path / "photos"
    for i in range(2):
        samples.photo(photos / f"{i}.png")
    loads: list[str] = []
    real = encoders.load_encoder

    def counted(spec: str, *args: object, **kwargs: object) -> Encoder:
        loads.append(spec)
        return real(spec, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(encoders, "load_encoder", counted)
    out = tmp_path / "out"
    assert len(ProtectJob([photos], out, tuned).run().done) == 2 and len(loads) == 1

    again = ProtectJob([photos], out, tuned).run()
    assert len(again.skipped) == 2 and not again.failed and len(loads) == 1

    samples.photo(photos / "new.png")
    made: list[int] = []
    real_make = ProtectJob._protector

    def watched(job: ProtectJob, perturbation: object) -> object:
        made.append(len(list(out.rglob("new.*"))))  # nothing of the new photo written yet
        return real_make(job, perturbation)  # type: ignore[arg-type]

    monkeypatch.setattr(ProtectJob, "_protector", watched)
    third = ProtectJob([photos], out, tuned).run()
    assert len(third.done) == 1 and len(third.skipped) == 2 and len(loads) == 2
    assert made == [0]

    missing = replace(tuned, encoder=str(tmp_path / "gone"))
    with pytest.raises(Exception, match="not found"):
        ProtectJob([photos], tmp_path / "out2", missing).run()
    assert not (tmp_path / "out2").exists()
