"""The optimisation loop: projection, step rules, schedule, starts, state round trip, cancel."""

from __future__ import annotations

import pytest
import torch

from spdesk.core.errors import Cancelled, ConfigError
from spdesk.core.events import CancelToken
from spdesk.core.optim import DeltaOptimizer, OptimConfig, initial_delta, loss_gradient, run

TARGET = torch.linspace(-0.1, 0.1, 48).reshape(3, 4, 4)


def _quadratic(delta: torch.Tensor, _step: int) -> torch.Tensor:
    return (delta - TARGET).pow(2).sum()


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
def test_converges_to_projected_target(optimizer: str) -> None:
    config = OptimConfig(optimizer=optimizer, eps=8, steps=200)  # type: ignore[arg-type]
    opt = DeltaOptimizer(config, torch.zeros(3, 4, 4))
    delta = run(opt, loss_gradient(_quadratic))
    bound = 8 / 255
    assert float(delta.abs().max()) <= bound + 1e-7
    last_step = config.step_size_at(config.steps - 1) / 255  # sign steps oscillate this much
    assert torch.allclose(delta, TARGET.clamp(-bound, bound), atol=last_step + 1e-6)


def test_projection_holds_with_huge_steps() -> None:
    config = OptimConfig(eps=4, steps=5, step_size=50, schedule="constant")
    opt = DeltaOptimizer(config, torch.full((3, 4, 4), 1.0))  # even a start over the bound
    assert float(opt.delta.abs().max()) <= 4 / 255 + 1e-7
    delta = run(opt, loss_gradient(lambda d, _s: d.sum()))
    assert torch.allclose(delta, torch.full((3, 4, 4), -4 / 255))


def test_cosine_schedule_endpoints_and_defaults() -> None:
    config = OptimConfig(eps=8, steps=11, final_fraction=0.1)
    assert config.step_size_at(0) == pytest.approx(2.0)  # eps / 4 for pgd
    assert config.step_size_at(10) == pytest.approx(0.2)
    assert config.step_size_at(5) == pytest.approx(1.1)
    assert OptimConfig(optimizer="adam", eps=8).first_step == pytest.approx(1.0)
    assert OptimConfig(schedule="constant", steps=9, step_size=3).step_size_at(8) == 3


def test_starts() -> None:
    generator = torch.Generator().manual_seed(1)
    bound = 8 / 255
    zero = initial_delta(OptimConfig(start="zero"), (3, 8, 8), generator)
    uniform = initial_delta(OptimConfig(start="random"), (3, 8, 8), generator)
    signs = initial_delta(OptimConfig(start="sign"), (3, 8, 8), generator)
    assert float(zero.abs().max()) == 0
    assert 0 < float(uniform.abs().max()) <= bound and len(uniform.unique()) > 2
    assert torch.allclose(signs.abs(), torch.full_like(signs, bound))


@pytest.mark.parametrize("optimizer", ["pgd", "adam"])
def test_state_round_trip_resumes_exactly(optimizer: str) -> None:
    config = OptimConfig(optimizer=optimizer, eps=8, steps=10)  # type: ignore[arg-type]

    def noisy(delta: torch.Tensor, step: int) -> torch.Tensor:  # depends on the step index
        weights = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(step))
        return ((delta - TARGET) * weights).pow(2).sum()

    straight = DeltaOptimizer(config, torch.zeros(3, 4, 4))
    run(straight, loss_gradient(noisy))
    first = DeltaOptimizer(config, torch.zeros(3, 4, 4))
    run(first, loss_gradient(noisy), until=4)
    resumed = DeltaOptimizer(config, torch.zeros(3, 4, 4))
    resumed.load_state_dict(first.state_dict())
    run(resumed, loss_gradient(noisy))
    assert resumed.step_index == 10
    assert torch.equal(resumed.delta, straight.delta)


def test_cancel_stops_before_the_next_step() -> None:
    token = CancelToken()
    opt = DeltaOptimizer(OptimConfig(steps=10), torch.zeros(3, 4, 4))

    def on_step(done: int, _loss: float) -> None:
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        run(opt, loss_gradient(_quadratic), cancel=token, on_step=on_step)
    assert opt.step_index == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": 0},
        {"eps": 100},
        {"steps": 0},
        {"optimizer": "sgd"},
        {"step_size": -1},
        {"start": "middle"},
        {"schedule": "step"},
        {"final_fraction": 0},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        OptimConfig(**kwargs)  # type: ignore[arg-type]
