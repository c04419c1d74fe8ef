"""Per-photo fine-tuning: bound, improvement on the editor's view, odd sizes, cancel, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spdesk.core.apply import ApplyOptions, apply_perturbation
from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.encoders.tiny import taesana_encoder
from spdesk.core.errors import Cancelled, ConfigError, ObjectiveError
from spdesk.core.events import CancelToken
from spdesk.core.finetune import FineTuner
from spdesk.core.objectives import build_objective
from spdesk.core.objectives.base import BatchCache
from spdesk.core.perturbation import Perturbation

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
