"""Semantic objectives through the UNet: sds+, sds- (score distillation) and advdm."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_sd import save_tiny_sd

from spdesk.core.encoders import load_encoder
from spdesk.core.errors import ModelMissingError, ObjectiveError
from spdesk.core.objectives import build_objectives
from spdesk.core.objectives.base import BatchCache, objective_loss
from spdesk.core.objectives.semantic import DiffusionParts, latent_scale
from spdesk.core.optim import DeltaOptimizer, OptimConfig, loss_gradient, run


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


class LinearDenoiser(torch.nn.Module):
    """eps_theta(z_t) = k z_t: a stand-in whose Jacobian is positive, as a trained denoiser's
    roughly is (the assumption that makes the SDS gradient a descent direction)."""

    def __init__(self, k: float = 0.8) -> None:
        super().__init__()
        self.k = k

    def forward(self, z_t: torch.Tensor, _t: torch.Tensor, **_: object) -> SimpleNamespace:
        return SimpleNamespace(sample=self.k * z_t)


def _true_loss(parts: DiffusionParts, encoder: object, images: torch.Tensor) -> float:
    generator = torch.Generator().manual_seed(123)  # common random numbers for every evaluation
    with torch.no_grad():
        z = encoder.encode(images).mean * latent_scale(encoder)  # type: ignore[attr-defined]
        z = z.repeat(64, 1, 1, 1)
        z_t, t, eps = parts.noised(z, generator)
        return float((parts.predict_noise(z_t, t) - eps).pow(2).mean())


def _optimise(
    name: str, sd_dir: Path, unet: torch.nn.Module | None, *, draws: int = 8, steps: int = 6
) -> tuple[float, float]:
    torch.manual_seed(0)
    encoder = load_encoder(str(sd_dir), "cpu")
    clean = torch.rand(1, 3, 32, 32).repeat(draws, 1, 1, 1)  # Monte-Carlo draws per step
    objectives = build_objectives(name, {"model_dir": str(sd_dir)})
    objective = objectives[0]
    parts = objective.parts(encoder.device) if hasattr(objective, "parts") else None
    if parts is None:
        objective.value(encoder, clean[:1], clean[:1], BatchCache())
        parts = objective._parts  # type: ignore[attr-defined]
    if unet is not None:
        parts.unet = unet
    before = _true_loss(parts, encoder, clean[:1])
    optimizer = DeltaOptimizer(OptimConfig(eps=16, steps=steps), torch.zeros(1, 3, 32, 32))
    cache = BatchCache()
    delta = run(
        optimizer,
        loss_gradient(
            lambda d, _s: objective_loss(objectives, encoder, (clean + d).clamp(0, 1), clean, cache)
        ),
    )
    assert delta.abs().max() <= 16 / 255 + 1e-6
    return before, _true_loss(parts, encoder, (clean[:1] + delta).clamp(0, 1))


@pytest.mark.parametrize(("name", "direction"), [("sds+", 1), ("sds-", -1), ("advdm", 1)])
def test_semantic_objectives_move_the_diffusion_loss_the_right_way(
    sd_dir: Path, name: str, direction: int
) -> None:
    before, after = _optimise(name, sd_dir, LinearDenoiser())
    assert direction * (after - before) > 0, f"{name}: {before:.5f} -> {after:.5f}"


@pytest.mark.parametrize("name", ["sds+", "sds-", "advdm"])
def test_semantic_objectives_run_with_the_real_tiny_unet(sd_dir: Path, name: str) -> None:
    before, after = _optimise(name, sd_dir, None, draws=2, steps=2)
    assert before > 0 and after > 0


def test_sds_value_equals_the_diffusion_loss(sd_dir: Path) -> None:
    encoder = load_encoder(str(sd_dir), "cpu")
    images = torch.rand(2, 3, 32, 32)
    sds = build_objectives("sds+", {"model_dir": str(sd_dir), "seed": 5})[0]
    advdm = build_objectives("advdm", {"model_dir": str(sd_dir), "seed": 5})[0]
    a = sds.value(encoder, images, images, BatchCache())
    b = advdm.value(encoder, images, images, BatchCache())
    torch.testing.assert_close(a.detach(), b.detach())


def test_semantic_objectives_refuse_other_latent_spaces() -> None:
    other = SimpleNamespace(id="taef2", members=())
    with pytest.raises(ObjectiveError, match="latent space"):
        latent_scale(other)  # type: ignore[arg-type]


def test_missing_unet_names_the_download_command(tmp_path: Path, sd_dir: Path) -> None:
    encoder = load_encoder(str(sd_dir), "cpu")
    objective = build_objectives("sds-", {"model_dir": str(tmp_path)})[0]
    with pytest.raises(ModelMissingError) as info:
        objective.value(encoder, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), BatchCache())
    assert "spdesk models download --for preview" in (info.value.hint or "")


def test_a_unet_that_does_not_load_names_the_check_of_the_preview_model(
    tmp_path: Path, sd_dir: Path
) -> None:
    """The UNet and text encoder are the preview model's files: "--for train" checks the VAE
    alone, and would call a damaged UNet intact (review M3)."""
    import shutil

    from spdesk.core.errors import ModelError
    from spdesk.core.objectives.semantic import load_diffusion_parts

    damaged = Path(shutil.copytree(sd_dir, tmp_path / "sd"))
    (damaged / "unet" / "config.json").write_text("{ damaged")
    with pytest.raises(ModelError, match="Cannot load the Stable Diffusion model") as raised:
        load_diffusion_parts(damaged, "", torch.device("cpu"))
    assert raised.value.hint == "Run: spdesk models verify --for preview"


def test_fine_tuning_passes_model_and_prompt_to_semantic_objectives(sd_dir: Path) -> None:
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.finetune import FineTuner
    from spdesk.core.perturbation import Perturbation

    rng = np.random.default_rng(0)
    delta = rng.choice([-8 / 255, 8 / 255], (3, 16, 16)).astype(np.float32)
    photo = rng.integers(40, 215, (40, 56, 3), dtype=np.uint8)
    tuner = FineTuner(
        Perturbation(delta=delta, eps=8.0),
        load_encoder(str(sd_dir), "cpu"),
        steps=2,
        objective="sds+",
        options=ApplyOptions(working_size=32),
        objective_options={"model_dir": str(sd_dir), "prompt": "add some snow", "seed": 3},
    )
    assert tuner.objectives[0].describe() == {"name": "sds+", "prompt": "add some snow", "seed": 3}
    steps: list[int] = []
    protected = tuner.protect(photo, on_step=lambda done, _total: steps.append(done))
    assert steps == [1, 2]
    assert protected.shape == photo.shape
    assert np.abs(protected.astype(int) - photo).max() <= 8
