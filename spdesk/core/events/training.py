"""Events of universal training: small and torch-free, so the app matches them by type cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spdesk.core.events import Event


@dataclass(frozen=True)
class SkippedPhoto:
    """A photo left out of training or evaluation, with the reader's reason."""

    path: Path
    reason: str


@dataclass(frozen=True)
class TrainStarted(Event):
    """Training begins (``resumed_from`` > 0: continuing a cancelled run from its checkpoint)."""

    train_photos: int
    val_photos: int
    steps: int
    encoder: str
    resumed_from: int = 0
    skipped: tuple[SkippedPhoto, ...] = ()
    # What the folder holds that is not a photo (a pattern file, a sidecar, a hidden file, a
    # link, a folder that cannot be read), with why: left out as spdesk protect leaves it out.
    left_out: tuple[SkippedPhoto, ...] = ()


@dataclass(frozen=True)
class TrainStep(Event):
    """One optimisation step finished: ``step`` of ``steps``, its training ``loss`` (lower is a
    stronger perturbation for every objective), ``eta_s`` the estimated seconds left,
    ``step_s`` the seconds a step takes as measured so far (both None until known)."""

    step: int
    steps: int
    loss: float
    eta_s: float | None = None
    step_s: float | None = None


@dataclass(frozen=True)
class ValidationReport(Event):
    """Held-out relative latent distortion of delta and of same-eps random baselines."""

    step: int
    distortion: float
    sign_distortion: float
    uniform_distortion: float

    @property
    def gain_over_sign(self) -> float:
        return self.distortion / max(self.sign_distortion, 1e-12)


@dataclass(frozen=True)
class CheckpointSaved(Event):
    """A checkpoint a cancelled run can resume from was written at ``step``."""

    step: int
    path: Path


@dataclass(frozen=True)
class CheckpointFailed(Event):
    """The checkpoint due at ``step`` could not be written (``reason``, in words); training
    goes on, so the run is not lost for a checkpoint's sake."""

    step: int
    path: Path
    reason: str


@dataclass(frozen=True)
class CheckingPattern(Event):
    """Training is done; its pattern is being measured on ``photos`` held-out photos the
    product's way: laid as ``spdesk protect`` lays it, seen by an ``editor`` px editor, and how
    visible it is (a few seconds to a minute)."""

    photos: int
    editor: int
    estimate_s: float | None = None  # seconds it takes where measured for this encoder


@dataclass(frozen=True)
class CheckStep(Event):
    """The check after training (see CheckingPattern) has measured ``done`` of the ``total``
    held-out photos of its ``stage``: "effect" (through the editor's encoder, beside random
    noise), then "visibility" (SSIMULACRA2 and FLIP, where the ``eval`` extra is installed).
    Sent with ``done`` 0 as each stage begins. ``eta_s``: the seconds the stage has left at
    its pace so far (None before its first photo)."""

    stage: str
    done: int
    total: int
    eta_s: float | None = None
