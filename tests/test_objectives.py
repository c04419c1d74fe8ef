"""Objectives: sign and value of each on tiny inputs, requirements, registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from spdesk.core.encoders.base import LatentDist
from spdesk.core.errors import ObjectiveError
from spdesk.core.objectives import REGISTRY, build_objective, build_objectives
from spdesk.core.objectives.base import BatchCache, objective_loss


class LinearEncoder:
    """z = 2 * average-pooled image - 1 (4x4 pooling); optional constant log-variance."""

    device = torch.device("cpu")
    has_decoder = False

    def __init__(self, logvar: float | None = None, name: str = "linear") -> None:
        self.logvar = logvar
        self.id = name
        self.fingerprint = name
        self.calls = 0

    @property
    def has_posterior(self) -> bool:
        return self.logvar is not None

    @property
    def members(self) -> tuple[LinearEncoder, ...]:
        return (self,)

    def encode(self, images: torch.Tensor) -> LatentDist:
        self.calls += 1
        mean = torch.nn.functional.avg_pool2d(images, 4) * 2 - 1
        logvar = None if self.logvar is None else torch.full_like(mean, self.logvar)
        return LatentDist(mean, logvar)

    def decode(self, latents: torch.Tensor) -> None:
        return None


class Pair(LinearEncoder):
    @property
    def members(self) -> tuple[LinearEncoder, ...]:
        return (LinearEncoder(name="a"), LinearEncoder(name="b"))


def _images(value: float, n: int = 2) -> torch.Tensor:
    return torch.full((n, 3, 8, 8), value)


def test_encoder_objective_value_and_sign() -> None:
    objective = build_objective("encoder")
    encoder = LinearEncoder()
    clean = _images(0.9)
    # at the grey target the distance is zero
    assert objective.value(encoder, _images(0.5), clean, BatchCache()).tolist() == [0.0, 0.0]
    # E(0.9) = 0.8, E(grey) = 0, E(0.7) = 0.4: ||0.4||² / ||0.8||² = 0.25
    value = objective.value(encoder, _images(0.7), clean, BatchCache())
    assert torch.allclose(value, torch.tensor([0.25, 0.25]))
    assert objective.direction == "minimize" and objective.sign == 1.0


def test_encoder_objective_black_target_and_bad_target() -> None:
    encoder = LinearEncoder()
    value = build_objective("encoder", {"target": "black"}).value(
        encoder, _images(0.0), _images(0.9), BatchCache()
    )
    assert float(value.max()) == 0.0
    with pytest.raises(ObjectiveError, match="neither"):
        build_objective("encoder", {"target": "no-such-file.png"}).value(
            encoder, _images(0.5), _images(0.9), BatchCache()
        )


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "is empty"), (b"not an image at all", "not"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "")],
    ids=["empty", "text", "broken-png"],
)
def test_a_target_image_that_cannot_be_read_is_named_when_the_objective_is_made(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """It failed at the first training step, after minutes of loading, as a bug (Pillow's
    UnidentifiedImageError)."""
    target = tmp_path / "target.png"
    target.write_bytes(content)
    with pytest.raises(ObjectiveError, match=r"The target image cannot be used: .*target\.png"):
        build_objective("encoder", {"target": str(target)})
    if reason:
        with pytest.raises(ObjectiveError, match=reason):
            build_objective("encoder", {"target": str(target)})


def test_a_target_image_too_large_to_read_is_not_told_to_use_protects_option(
    tmp_path: Path,
) -> None:
    from tests import protect_samples as samples

    target = samples.png_bomb(tmp_path / "huge.png")
    with pytest.raises(ObjectiveError, match=r"huge\.png is too large") as raised:
        build_objective("encoder", {"target": str(target)})
    assert "smaller target image" in (raised.value.hint or "")
    assert "--max-megapixels" not in (raised.value.hint or "")


def test_a_target_image_is_read_as_photos_are_and_pulls_towards_its_latent(
    tmp_path: Path,
) -> None:
    target = tmp_path / "target.png"
    Image.new("L", (8, 6), 179).save(target)  # grey, 16-bit or not: read as a photo, as RGB
    objective = build_objective("encoder", {"target": str(target)})
    encoder = LinearEncoder()
    value = objective.value(encoder, _images(179 / 255), _images(0.9), BatchCache())
    assert float(value.max()) < 1e-10


def test_latent_objective_zero_gradient_at_zero_and_positive_after() -> None:
    objective = build_objective("latent")
    encoder = LinearEncoder()
    clean = _images(0.5) + torch.linspace(0, 0.2, 8)[None, None, None, :]
    delta = torch.zeros_like(clean, requires_grad=True)
    value = objective.value(encoder, clean + delta, clean, BatchCache())
    value.sum().backward()
    assert float(value.detach().abs().max()) == 0.0
    assert delta.grad is not None and float(delta.grad.abs().max()) == 0.0
    moved = objective.value(encoder, clean + 0.03, clean, BatchCache())
    assert float(moved.min()) > 0
    assert objective.direction == "maximize" and objective.sign == -1.0
    assert objective.requirements.random_start


def test_pca_plus_is_kl_to_standard_normal() -> None:
    objective = build_objective("pca+")
    # mean 2 * 0.5 - 1 = 0 and logvar 0: KL is exactly zero
    assert (
        float(objective.value(LinearEncoder(0.0), _images(0.5), _images(0.5), BatchCache()).max())
        == 0.0
    )
    # mean 0.6, logvar log(4): 0.5 * (4 + 0.36 - 1 - log 4)
    value = objective.value(
        LinearEncoder(float(torch.log(torch.tensor(4.0)))), _images(0.8), _images(0.5), BatchCache()
    )
    expected = 0.5 * (4 + 0.36 - 1 - float(torch.log(torch.tensor(4.0))))
    assert torch.allclose(value, torch.full((2,), expected), atol=1e-5)
    assert objective.sign == -1.0


def test_pca_minus_value_and_sign() -> None:
    objective = build_objective("pca-")
    value = objective.value(LinearEncoder(0.0), _images(0.8), _images(0.5), BatchCache())
    assert torch.allclose(value, torch.full((2,), 1 + 0.36), atol=1e-5)
    assert objective.sign == 1.0


def test_pca_refuses_deterministic_encoder() -> None:
    for name in ("pca+", "pca-"):
        with pytest.raises(ObjectiveError, match="posterior"):
            build_objective(name).check(LinearEncoder())
    build_objective("pca+").check(LinearEncoder(0.0))  # fine with a posterior


def test_loss_sums_objectives_and_ensemble_members() -> None:
    clean, perturbed = _images(0.9), _images(0.7)
    single = objective_loss(build_objectives("encoder"), LinearEncoder(), perturbed, clean)
    pair = objective_loss(build_objectives("encoder"), Pair(), perturbed, clean)
    both = objective_loss(build_objectives("encoder,latent"), LinearEncoder(), perturbed, clean)
    latent = objective_loss(build_objectives("latent"), LinearEncoder(), perturbed, clean)
    assert float(pair) == pytest.approx(2 * float(single))
    assert float(both) == pytest.approx(float(single) + float(latent))
    assert float(latent) < 0  # maximised objectives enter the minimised loss negated


def test_cache_encodes_clean_once_per_batch() -> None:
    encoder = LinearEncoder()
    cache = BatchCache()
    objective = build_objective("latent")
    for _ in range(3):
        objective.value(encoder, _images(0.7), _images(0.9), cache)
    assert encoder.calls == 1 + 3  # one clean encode, three perturbed


def test_registry_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ObjectiveError, match="Unknown objective"):
        build_objective("nonsense")
    with pytest.raises(ObjectiveError, match="No objective"):
        build_objectives(" ")
    monkeypatch.setitem(REGISTRY, "later", "spdesk.core.objectives.not_written_yet:Thing")
    with pytest.raises(ObjectiveError, match="not available"):
        build_objective("later")
    assert repr(build_objective("encoder", {"target": "white", "unused": 1})) == (
        "EncoderObjective(target='white')"
    )
