"""The one optimisation loop, shared by universal training and per-photo fine-tuning.

The loop owns the perturbation ``delta`` (pixel units of a [0, 1] image, |delta| <= eps/255) and
asks a callback for the loss gradient at each step. Step rules are small: sign-PGD (the sign of the
mean gradient, Madry et al. 2018) or Adam, each followed by projection onto the L-inf ball. The step
size follows a schedule (constant, or cosine decay to ``final_fraction`` of the first step).
State (delta, step, Adam moments) round-trips through ``state_dict`` for checkpoints: resuming gives
the same result as never stopping, as long as the gradient callback is a function of (delta, step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from spdesk.core.errors import ConfigError
from spdesk.core.events import CancelToken

OptimizerName = Literal["pgd", "adam"]
StartName = Literal["zero", "random", "sign"]
ScheduleName = Literal["constant", "cosine"]

# loss and gradient (same shape as delta) at delta, for step number ``step`` (0-based)
GradientFn = Callable[[torch.Tensor, int], tuple[float, torch.Tensor]]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-12


@dataclass(frozen=True)
class OptimConfig:
    """Hyper-parameters of the loop.

    Attributes:
        optimizer: "pgd" (sign of the gradient) or "adam" (Adam, then projection).
        eps: L-inf budget in 8-bit steps, in (0, 64] (8 means ±8/255).
        steps: number of optimisation steps (>= 1).
        step_size: first step in 8-bit steps; default eps/4 for pgd, eps/8 for adam.
        schedule: "cosine" decays the step to ``final_fraction`` of the first; "constant" keeps it.
        final_fraction: last step size as a fraction of the first, in (0, 1].
        start: "zero", "random" (uniform in ±eps) or "sign" (random ±eps).
    """

    optimizer: OptimizerName = "pgd"
    eps: float = 8.0
    steps: int = 500
    step_size: float | None = None
    schedule: ScheduleName = "cosine"
    final_fraction: float = 0.1
    start: StartName = "zero"

    def __post_init__(self) -> None:
        if self.optimizer not in ("pgd", "adam"):
            raise ConfigError(f"Unknown optimiser {self.optimizer!r}; choose pgd or adam.")
        if not 0 < self.eps <= 64:
            raise ConfigError(f"eps must be in (0, 64] 8-bit steps, got {self.eps}.")
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}.")
        if self.step_size is not None and not 0 < self.step_size < math.inf:
            raise ConfigError(f"step size must be positive and finite, got {self.step_size}.")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"Unknown schedule {self.schedule!r}; choose constant or cosine.")
        if not 0 < self.final_fraction <= 1:
            raise ConfigError("final_fraction must be in (0, 1].")
        if self.start not in ("zero", "random", "sign"):
            raise ConfigError(f"Unknown start {self.start!r}; choose zero, random or sign.")

    @property
    def first_step(self) -> float:
        """The first step size in 8-bit steps."""
        if self.step_size is not None:
            return self.step_size
        return self.eps / 4 if self.optimizer == "pgd" else self.eps / 8

    def step_size_at(self, step: int) -> float:
        """Step size (8-bit steps) used at 0-based ``step``."""
        first = self.first_step
        if self.schedule == "constant" or self.steps == 1:
            return first
        progress = min(1.0, step / (self.steps - 1))
        low = first * self.final_fraction
        return low + (first - low) * 0.5 * (1 + math.cos(math.pi * progress))


def initial_delta(
    config: OptimConfig, shape: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """The starting delta (CPU float32) for ``config.start``; seeded by ``generator``."""
    bound = config.eps / 255
    if config.start == "zero":
        return torch.zeros(shape)
    if config.start == "random":
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1) * bound


class DeltaOptimizer:
    """Holds delta and applies one step rule plus projection per call to :meth:`step`."""

    def __init__(self, config: OptimConfig, delta: torch.Tensor) -> None:
        self.config = config
        self.delta = project(delta.detach().clone().float(), config.eps)
        self.step_index = 0
        self.exp_avg = torch.zeros_like(self.delta)
        self.exp_avg_sq = torch.zeros_like(self.delta)
        self.last_loss = float("nan")

    @property
    def done(self) -> bool:
        return self.step_index >= self.config.steps

    def step(self, gradient_fn: GradientFn) -> float:
        """One step: gradient at the current delta, update, project. Returns the loss."""
        loss, grad = gradient_fn(self.delta, self.step_index)
        alpha = self.config.step_size_at(self.step_index) / 255
        grad = grad.to(self.delta.device, torch.float32)
        update = grad.sign() if self.config.optimizer == "pgd" else self._adam_direction(grad)
        self.delta = project(self.delta - alpha * update, self.config.eps)
        self.step_index += 1
        self.last_loss = loss
        return loss

    def _adam_direction(self, grad: torch.Tensor) -> torch.Tensor:
        beta1, beta2 = _ADAM_BETAS
        t = self.step_index + 1
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = self.exp_avg / (1 - beta1**t)
        v_hat = self.exp_avg_sq / (1 - beta2**t)
        return m_hat / (v_hat.sqrt() + _ADAM_EPS)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that restore this optimiser exactly (step count included)."""
        return {
            "delta": self.delta.cpu(),
            "exp_avg": self.exp_avg.cpu(),
            "exp_avg_sq": self.exp_avg_sq.cpu(),
            "step": torch.tensor([self.step_index], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.delta.device
        self.delta = state["delta"].to(device, torch.float32).clone()
        self.exp_avg = state["exp_avg"].to(device, torch.float32).clone()
        self.exp_avg_sq = state["exp_avg_sq"].to(device, torch.float32).clone()
        self.step_index = int(state["step"][0])


def project(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Clamp to the L-inf ball of radius eps/255 (eps in 8-bit steps)."""
    bound = eps / 255
    return delta.clamp(-bound, bound)


def run(
    optimizer: DeltaOptimizer,
    gradient_fn: GradientFn,
    *,
    until: int | None = None,
    cancel: CancelToken | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Step until ``until`` (default: the configured number of steps); returns delta.

    ``cancel.check()`` runs before every step (raises Cancelled); ``on_step(done, loss)`` after.
    """
    stop = optimizer.config.steps if until is None else min(until, optimizer.config.steps)
    while optimizer.step_index < stop:
        if cancel is not None:
            cancel.check()
        loss = optimizer.step(gradient_fn)
        if on_step is not None:
            on_step(optimizer.step_index, loss)
    return optimizer.delta


def loss_gradient(
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
) -> GradientFn:
    """Wrap a scalar loss ``loss_fn(delta, step)`` into a :data:`GradientFn` via autograd."""

    def gradient(delta: torch.Tensor, step: int) -> tuple[float, torch.Tensor]:
        variable = delta.detach().clone().requires_grad_(True)
        loss = loss_fn(variable, step)
        (grad,) = torch.autograd.grad(loss, variable)
        return float(loss.detach()), grad

    return gradient
