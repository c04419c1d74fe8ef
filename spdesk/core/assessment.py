"""Judging a protection mode the three ways that matter, side by side with random noise.

Every photo goes through the whole product path: the mode protects the full photo (as
``spdesk protect`` would), then an *editor* resizes it so its short side is ``size`` pixels
(Lanczos, as diffusers' image processor does), takes the centre ``size`` x ``size`` square and
encodes it. Per candidate (each mode, random ±eps signs, uniform noise ±eps):

- visibility: SSIMULACRA2 (mean and worst photo) and FLIP of protected vs original at full size,
  beside JPEG q75/q50 of the same photos for scale (:mod:`spdesk.core.visibility`);
- strength, per editor size: relative latent distortion ||E(p) - E(o)|| / ||E(o)|| and, where the
  encoder has a decoder, round-trip SSIM between D(E(p)) and D(E(o)); gains are ratios to the
  random-sign candidate (latent, and round-trip SSIM drop 1 - SSIM);
- robustness: the same after each attack (:mod:`spdesk.core.attacks`) on the protected photo
  (and, for JPEG/resize/blur, on the original it is compared with); "kept" is the share of the
  advantage over random signs that survives, (gain after - 1) / (gain before - 1): a protection
  no better than random signs after the attack keeps 0%, one as far ahead as before 100%.
  The regeneration attack protects the photo again with keys of its own, so it needs each
  candidate's protection with another key (``regenerators``); a candidate without one (a
  protect function that is not a mode's) reports "n/a".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from spdesk.core.attacks import (
    Attack,
    KeyedProtect,
    KnownPatternAttack,
    RegenerationAttack,
    StrongestAveraging,
    is_removal,
    regeneration_keys,
    simple_attack,
)
from spdesk.core.colour import rgb_image
from spdesk.core.encoders import Encoder
from spdesk.core.events import CancelToken
from spdesk.core.geometry import layout_size
from spdesk.core.jobs.events import count_of
from spdesk.core.jobs.settings import DEFAULT_FINETUNE_JPEG
from spdesk.core.metrics import batch_ssim
from spdesk.core.visibility import flip, ssimulacra2

if TYPE_CHECKING:
    from spdesk.core.jobs.protector import Protector
    from spdesk.core.photo_protect import GeneratorProtector

Protect = Callable[[np.ndarray, int], np.ndarray]  # (photo, index) -> protected photo
SIGN = "random signs"
UNIFORM = "uniform noise"
VIEW_SIGNS = "signs at the view"
NOISE = (SIGN, UNIFORM, VIEW_SIGNS)  # the references; every other candidate is a protection


def sign_noise(eps: float) -> Protect:
    def protect(photo: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng(10_007 + index)
        noise = np.where(rng.integers(0, 2, photo.shape) == 1, eps, -eps).astype(np.float32)
        out: np.ndarray = np.clip(np.rint(photo + noise), 0, 255).astype(np.uint8)
        return out

    return protect


def view_sign_noise(eps: float, view: int = 512) -> Protect:
    """Random ±eps signs drawn at the view spdesk lays its protection at (the photo's own size
    up to ``view`` px, :func:`~spdesk.core.geometry.layout_size`), each covering its block of
    full-size pixels. On a photo larger than the view an editor's downsizing gives them back,
    where it averages full-size signs away: there they are the reference a protection laid at
    the view has to beat too."""

    def protect(photo: np.ndarray, index: int) -> np.ndarray:
        height, width = photo.shape[:2]
        view_h, view_w = layout_size(height, width, view)
        rng = np.random.default_rng(30_011 + index)
        signs = rng.integers(0, 2, (view_h, view_w, photo.shape[2])) == 1
        rows = ((np.arange(height) + 0.5) * view_h / height).astype(int)
        cols = ((np.arange(width) + 0.5) * view_w / width).astype(int)
        noise = np.where(signs[rows][:, cols], eps, -eps).astype(np.float32)
        out: np.ndarray = np.clip(np.rint(photo + noise), 0, 255).astype(np.uint8)
        return out

    return protect


def uniform_noise(eps: float) -> Protect:
    def protect(photo: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng(20_011 + index)
        noise = rng.uniform(-eps, eps, photo.shape).astype(np.float32)
        return np.clip(np.rint(photo + noise), 0, 255).astype(np.uint8)

    return protect


def mode_protect(
    mode: str,
    *,
    perturbation: Path | None = None,
    generator: Path | None = None,
    strength: float | None = None,
    encoder: str | None = None,
    finetune_steps: int = 8,
    finetune_jpeg: int | None = DEFAULT_FINETUNE_JPEG,
    working_size: int = 512,
    objective: str | None = None,
) -> tuple[ModeProtect, float, str]:
    """The protect function of a job's mode, built exactly as a job builds it (the same
    :class:`~spdesk.core.jobs.protector.Protector`), its budget in 8-bit steps, and a label.
    The fine-tuning modes optimise against ``encoder`` for ``finetune_steps`` steps; fine-tuning
    the universal pattern, towards ``objective`` (default: the job's)."""
    from spdesk.core.generator_file import read_spec
    from spdesk.core.jobs.protector import build_protector
    from spdesk.core.jobs.settings import ProtectSettings
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    settings = ProtectSettings(
        mode=mode, perturbation=perturbation, generator=generator, strength=strength, workers=1,
        encoder=encoder or "sd15", finetune_steps=finetune_steps, finetune_jpeg=finetune_jpeg,
        working_size=working_size,
    )  # fmt: skip
    if objective is not None:
        settings = replace(settings, objective=objective)
    pattern = load_perturbation(perturbation or bundled_perturbation_path())
    protector = build_protector(settings, pattern)
    if mode in ("photo", "photo-finetune"):
        eps = strength or read_spec(settings.generator_path()).eps
        label = "photo-specific" if mode == "photo" else f"photo fine-tuned ({finetune_steps})"
    else:
        eps = strength or pattern.eps
        label = mode
    if mode in ("photo", "photo-finetune"):
        return ModeProtect(protector, None, working_size), float(eps), label
    laid = pattern.at_strength(strength)
    return ModeProtect(protector, pattern.size, working_size, laid), float(eps), label


class ModeProtect:
    """A job's protector as a :data:`Protect` function; :meth:`regenerate` protects with another
    secret key, as the same protector on another install would (what the regeneration attack
    runs). Not thread-safe: that swaps the protector's key for one call.

    ``tile`` (rows, columns) is the universal pattern's, None in the photo modes; with
    ``working_size``, what an attacker reads in the pattern file and spdesk's source.
    ``pattern`` is that file's pattern at the budget laid (what the ``known`` attack
    subtracts), None in the photo modes."""

    def __init__(
        self,
        protector: Protector,
        tile: tuple[int, int] | None = None,
        working_size: int = 512,
        pattern: np.ndarray | None = None,
    ) -> None:
        self.protector = protector
        self.tile, self.working_size, self.pattern = tile, working_size, pattern
        # The install's key, which no attacker has (None: the mode has no secret).
        self.victim = _swap_key(protector, None)

    def __call__(self, photo: np.ndarray, index: int) -> np.ndarray:
        return self._protect(photo, f"photo-{index}")

    def regenerate(self, photo: np.ndarray, key: bytes) -> np.ndarray:
        """``photo`` protected with secret ``key``, and ``key`` as its layout key too (the
        universal modes randomise layouts by it)."""
        if key == self.victim:
            raise ValueError("An attacker does not have the victim's secret key.")
        if self.victim is None:
            return self._protect(photo, key.hex())
        _swap_key(self.protector, key)
        try:
            return self._protect(photo, key.hex())
        finally:
            _swap_key(self.protector, self.victim)

    def _protect(self, photo: np.ndarray, key: str) -> np.ndarray:
        image = rgb_image(photo)
        return np.asarray(self.protector.protect(image, key)[0])


def _swap_key(protector: Protector, key: bytes | None) -> bytes | None:
    """The secret key ``protector`` holds, replaced by ``key`` unless None. None when it holds
    none: the universal pattern fine-tuned randomises its layouts from public inputs alone."""
    from spdesk.core.jobs.protector import (
        PhotoFineTuneProtector,
        PhotoSpecificProtector,
        UniversalProtector,
    )

    if isinstance(protector, UniversalProtector):
        # Unrandomised layouts ignore it: anyone with spdesk lays the same pattern.
        options = protector.applier.options
        if key is not None:
            protector.applier.options = replace(options, secret=key)
        return options.secret
    holder: GeneratorProtector
    if isinstance(protector, PhotoSpecificProtector):
        holder = protector.protector
    elif isinstance(protector, PhotoFineTuneProtector):
        holder = protector.tuner
    else:
        return None
    held = holder.key
    if key is not None:
        holder.key = key
    return held


def editor_view(
    photo: np.ndarray, size: int, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """What an SD editor encodes: short side to ``size`` (Lanczos, as diffusers resizes, unless
    a benchmark asks for another filter), centre square."""
    height, width = photo.shape[:2]
    scale = size / min(height, width)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = Image.fromarray(photo).resize(new, resample)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


# The least gain over random signs whose share kept after an attack is reported.
MIN_ADVANTAGE = 0.02


@dataclass
class Strength:
    """Mean figures of one candidate under one condition at one editor size."""

    latent: float
    rt_ssim: float | None


@dataclass
class CandidateFigures:
    name: str
    ssimulacra2: float | None = None
    ssimulacra2_min: float | None = None
    flip: float | None = None
    strength: dict[str, Strength] = field(default_factory=dict)  # "size/condition" -> figures
    transfer: dict[str, float] = field(default_factory=dict)  # encoder id -> latent at size


@dataclass
class Assessment:
    """The whole table: candidates, references, the settings it was measured in."""

    encoder: str
    photos: int
    attack_photos: int
    sizes: list[int]
    attacks: list[str]
    eps: float
    view: int = 512  # the view signs at the view are laid at (and the protections work at)
    candidates: list[CandidateFigures] = field(default_factory=list)
    references: dict[str, dict[str, float]] = field(default_factory=dict)

    def get(self, name: str) -> CandidateFigures:
        return next(c for c in self.candidates if c.name == name)

    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    def gain(
        self, name: str, key: str, figure: str = "latent", baseline: str = SIGN
    ) -> float | None:
        """``name``'s latent distortion (or round-trip SSIM drop) as a multiple of
        ``baseline``'s, under condition ``key`` ("256/clean")."""
        if baseline not in self.names():
            return None
        mine, sign = self.get(name).strength.get(key), self.get(baseline).strength.get(key)
        if mine is None or sign is None:
            return None
        if figure == "latent":
            return mine.latent / sign.latent if sign.latent > 0 else None
        if mine.rt_ssim is None or sign.rt_ssim is None or sign.rt_ssim >= 1:
            return None
        return (1 - mine.rt_ssim) / (1 - sign.rt_ssim)

    def kept(self, name: str, size: int, attack: str, figure: str = "latent") -> float | None:
        before, after = (
            self.gain(name, f"{size}/clean", figure),
            self.gain(name, f"{size}/{attack}", figure),
        )
        if before is None or after is None or before <= 1 + MIN_ADVANTAGE:
            return None  # nothing to keep: a share of a hair's advantage reads -3668%
        # The share of the *advantage over noise* that survives (gain 1 = no better than noise).
        return (after - 1) / (before - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assessment:
        """The assessment :meth:`to_dict` wrote (the figures it derives are recomputed)."""
        candidates = [
            CandidateFigures(
                name=c["name"],
                ssimulacra2=c.get("ssimulacra2"),
                ssimulacra2_min=c.get("ssimulacra2_min"),
                flip=c.get("flip"),
                strength={key: Strength(**value) for key, value in c["strength"].items()},
                transfer=dict(c.get("transfer", {})),
            )
            for c in data["candidates"]
        ]
        settings = ("encoder", "photos", "attack_photos", "sizes", "attacks", "eps")
        return cls(
            **{name: data[name] for name in settings},
            view=data.get("view", 512),  # runs before it was recorded laid at 512
            candidates=candidates,
            references=data.get("references", {}),
        )

    def merged(self, other: Assessment) -> Assessment:
        """This table with ``other``'s candidates added: runs on the same photos and settings
        (their random-sign baselines must agree), e.g. one per machine or per day."""
        same = ("encoder", "photos", "attack_photos", "sizes", "eps", "view")
        if any(getattr(self, name) != getattr(other, name) for name in same):
            raise ValueError(
                "Only runs with the same encoder, photos, sizes, budget and view merge."
            )
        mine, theirs = self.get(SIGN).strength, other.get(SIGN).strength
        for key in mine.keys() & theirs.keys():
            if abs(mine[key].latent - theirs[key].latent) > 1e-3 * mine[key].latent:
                raise ValueError(f"The runs' random-sign baselines differ at {key}: other photos?")
        names = {c.name for c in self.candidates}
        extra = [c for c in other.candidates if c.name not in names | set(NOISE)]
        baselines = [_merged_baseline(c, other) for c in self.candidates if c.name in NOISE]
        baselines += [c for c in other.candidates if c.name in NOISE and c.name not in names]
        modes = [c for c in self.candidates if c.name not in NOISE]
        attacks = [*self.attacks, *(a for a in other.attacks if a not in self.attacks)]
        return replace(self, candidates=[*modes, *extra, *baselines], attacks=attacks)

    def transfer_gain(self, name: str, encoder: str) -> float | None:
        """Latent gain over random signs on another encoder, at the first editor size."""
        mine, sign = self.get(name).transfer.get(encoder), self.get(SIGN).transfer.get(encoder)
        return mine / sign if mine is not None and sign else None

    def to_dict(self) -> dict[str, Any]:
        """The measurements, and every figure :meth:`format` derives from them, named."""
        out = asdict(self)
        out["gain_over_random_signs"] = {
            c.name: {
                key: {
                    "latent": self.gain(c.name, key),
                    "rt_ssim_drop": self.gain(c.name, key, "rt_ssim"),
                }
                for key in c.strength
            }
            for c in self.candidates
        }
        size = self.sizes[0]
        out["kept_share_of_gain_over_random_signs"] = {
            "editor_size": size,
            "candidates": {
                name: {
                    attack: {
                        "latent": self.kept(name, size, attack),
                        "rt_ssim_drop": self.kept(name, size, attack, "rt_ssim"),
                    }
                    for attack in attacks
                }
                for name, attacks in self._attacked(size).items()
            },
        }
        if VIEW_SIGNS in self.names():
            out["gain_over_signs_at_the_view"] = {
                c.name: {
                    key: {
                        "latent": self.gain(c.name, key, baseline=VIEW_SIGNS),
                        "rt_ssim_drop": self.gain(c.name, key, "rt_ssim", VIEW_SIGNS),
                    }
                    for key in c.strength
                    if key in self.get(VIEW_SIGNS).strength
                }
                for c in self.candidates
                if c.name not in NOISE
            }
        out["transfer_latent_gain_over_random_signs"] = {
            c.name: {encoder: self.transfer_gain(c.name, encoder) for encoder in c.transfer}
            for c in self.candidates
            if c.transfer and c.name != SIGN
        }
        return out

    def _attacked(self, size: int) -> dict[str, list[str]]:
        """The attacks measured on each protection (not the noise references) at ``size``."""
        return {
            c.name: [a for a in self.attacks if f"{size}/{a}" in c.strength]
            for c in self.candidates
            if c.name not in NOISE
        }

    def format(self) -> str:
        fitted = f" (attack fitted on {self.attack_photos} others)" if self.attack_photos else ""
        lines = [
            f"encoder {self.encoder}, {count_of(self.photos, 'photo')}{fitted}, "
            f"eps {self.eps:g}, editor sizes {', '.join(map(str, self.sizes))}"
        ]
        wide = max([22, *(len(c.name) + 2 for c in self.candidates)])
        lines.append(
            f"{'candidate':<{wide}}{'SSIMU2':>8}{'min':>7}{'FLIP':>8}"
            + "".join(f"{f'lat@{s}':>9}{'gain':>7}{'rtSSIM':>8}{'gain':>7}" for s in self.sizes)
        )
        for c in self.candidates:
            row = f"{c.name:<{wide}}{_cell(c.ssimulacra2, 8, 1)}{_cell(c.ssimulacra2_min, 7, 1)}"
            row += _cell(c.flip, 8, 4)
            for size in self.sizes:
                s = c.strength.get(f"{size}/clean")
                row += _cell(s.latent if s else None, 9, 3)
                row += _cell(self.gain(c.name, f"{size}/clean"), 7, 2)
                row += _cell(s.rt_ssim if s else None, 8, 3)
                row += _cell(self.gain(c.name, f"{size}/clean", "rt_ssim"), 7, 2)
            lines.append(row)
        for name, ref in self.references.items():
            lines.append(
                f"{name:<{wide}}{_cell(ref['ssimulacra2'], 8, 1)}"
                f"{_cell(ref['ssimulacra2_min'], 7, 1)}{_cell(ref['flip'], 8, 4)}"
            )
        lines += self._over_view_signs()
        if self.attacks:
            lines.append(
                "kept after attack (share of the advantage over random signs; latent / SSIM):"
            )
            size = self.sizes[0]
            nothing_to_keep = False
            for c in self.candidates:
                if c.name in NOISE:
                    continue
                parts = []
                for attack in self.attacks:
                    if f"{size}/{attack}" not in c.strength:
                        parts.append(f"{attack} n/a")  # e.g. no key to regenerate with
                        continue
                    lat = self.kept(c.name, size, attack)
                    ssim = self.kept(c.name, size, attack, "rt_ssim")
                    nothing_to_keep = nothing_to_keep or lat is None or ssim is None
                    parts.append(f"{attack} {_pct(lat)}/{_pct(ssim)}")
                lines.append(f"  {c.name:<20} @{size}: " + ", ".join(parts))
            if nothing_to_keep:
                lines.append(
                    f"  (-: no advantage to keep: before the attack, no more than "
                    f"{1 + MIN_ADVANTAGE:.2f}x random signs)"
                )
        transfer = [c for c in self.candidates if c.transfer]
        if transfer:
            lines.append("transfer (latent gain over random signs at the first size):")
            for c in transfer:
                if c.name == SIGN:
                    continue
                gains = {enc: self.transfer_gain(c.name, enc) for enc in c.transfer}
                lines.append(
                    f"  {c.name:<20} "
                    + ", ".join(f"{enc} {g:.2f}x" for enc, g in gains.items() if g is not None)
                )
        return "\n".join(lines)

    def _over_view_signs(self) -> list[str]:
        """Each protection's gains over random signs laid at the view, where they were measured
        (photos larger than the view: there they are the stronger reference)."""
        if VIEW_SIGNS not in self.names():
            return []
        lines = [f"gain over random signs laid at the {self.view} px view (latent / SSIM drop):"]
        for c in self.candidates:
            if c.name in NOISE:
                continue
            parts = []
            for size in self.sizes:
                latent = self.gain(c.name, f"{size}/clean", baseline=VIEW_SIGNS)
                ssim = self.gain(c.name, f"{size}/clean", "rt_ssim", VIEW_SIGNS)
                parts.append(f"@{size} {_times(latent)} / {_times(ssim)}")
            lines.append(f"  {c.name:<20} " + ", ".join(parts))
        return lines


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


class _Encoded:
    """Latents and round trips of editor views, per candidate/condition, at one size."""

    def __init__(self, encoder: Encoder, size: int) -> None:
        self.encoder, self.size = encoder, size

    def __call__(self, photo: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = editor_latent(self.encoder, photo, self.size)
        with torch.inference_mode():
            decoded = (
                self.encoder.decode(z.to(self.encoder.device)) if self.encoder.has_decoder else None
            )
        return z, None if decoded is None else decoded.float().cpu()


def editor_latent(
    encoder: Encoder,
    photo: np.ndarray,
    size: int,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> torch.Tensor:
    """The latent mean (on the CPU, float32) a ``size`` px editor encodes ``photo`` to."""
    view = editor_view(photo, size, resample)
    x = torch.from_numpy(view.copy()).permute(2, 0, 1)[None].float().div(255)
    with torch.inference_mode():
        z = encoder.encode(x.to(encoder.device)).mean
    return z.float().cpu()


def relative_change(z: torch.Tensor, z0: torch.Tensor) -> float:
    """||z - z0|| / ||z0||: the relative latent distortion the strength figures compare."""
    return float((z - z0).norm() / z0.norm().clamp_min(1e-8))


def seeded_by_key(protect: Protect) -> KeyedProtect:
    """A protect function seeded by a photo index as one seeded by a key (the noise
    references): indices from 1,000,000 on, never those of the photos measured."""
    return lambda photo, key: protect(photo, 1_000_000 + int.from_bytes(key[:4], "little"))


def _attack_functions(
    protect: Protect,
    attacks: Sequence[str],
    attack_photos: Sequence[np.ndarray],
    regenerate: KeyedProtect | None,
) -> dict[str, Attack]:
    """One candidate's attacks by name; a regeneration attack is left out without a
    ``regenerate`` function (its figures then read "n/a")."""
    out: dict[str, Attack] = {}
    victim = protect.victim if isinstance(protect, ModeProtect) else None
    for name in attacks:
        if name == "average":
            averaging = averaging_attack(protect)
            offset = 100_000  # other indices than the photos measured, so other noise
            averaging.fit([protect(p, offset + i) for i, p in enumerate(attack_photos)])
            out[name] = averaging
        elif name == "known":
            if not isinstance(protect, ModeProtect):  # random noise: nothing public to subtract
                out[name] = _unchanged
            elif protect.pattern is not None:  # the photo modes have no pattern file: n/a
                out[name] = KnownPatternAttack(protect.pattern, protect.working_size)
        elif not name.startswith("regenerate"):
            out[name] = simple_attack(name)
        elif regenerate is not None:
            keys = regeneration_keys(name)
            out[name] = RegenerationAttack(regenerate, keys, avoid=[victim] if victim else [])
    return out


def _unchanged(photo: np.ndarray) -> np.ndarray:
    return photo


def averaging_attack(protect: Protect) -> StrongestAveraging:
    """The averaging attack set up as someone with spdesk's source would against ``protect``:
    folding at the tile a universal mode lays, on the working view it lays it on (the bundled
    pattern's tile and the default view for anything else), with each residual an attacker
    would try (:class:`~spdesk.core.attacks.StrongestAveraging`)."""
    if not isinstance(protect, ModeProtect):
        return StrongestAveraging.like()
    if protect.tile is None:
        return StrongestAveraging.like(working_size=protect.working_size)
    return StrongestAveraging.like(protect.tile, protect.working_size)


class _Originals:
    """Encodings of one original photo per editor size and condition, each computed once."""

    def __init__(self, photo: np.ndarray, encoded: dict[int, _Encoded]) -> None:
        self.photo, self.encoded = photo, encoded
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def __call__(self, size: int, condition: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = f"{size}/{condition}"
        if key not in self.cache:
            # An attacker's removal is compared with the original itself; a re-encode, resize
            # or blur with the same edit of the original (what the edit would start from).
            edited = self.photo
            if condition != "clean" and not is_removal(condition):
                edited = simple_attack(condition)(self.photo)
            self.cache[key] = self.encoded[size](edited)
        return self.cache[key]


@dataclass
class _Tally:
    """Per-photo figures collected while measuring, averaged at the end."""

    strength: dict[tuple[str, str], list[tuple[float, float | None]]] = field(default_factory=dict)
    visible: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    moved: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        protected: np.ndarray,
        originals: _Originals,
        attacks: Mapping[str, Attack],
        transfer: Sequence[Encoder],
    ) -> None:
        """One photo's figures for candidate ``name``: its visibility, its strength at each
        editor size and after each attack (at the first size), and how far it moves each
        ``transfer`` encoder's latent."""
        photo, encoded = originals.photo, originals.encoded
        sizes = list(encoded)
        visible = (ssimulacra2(photo, protected), flip(photo, protected))
        self.visible.setdefault(name, []).append(visible)
        conditions = [(size, "clean", protected) for size in sizes]
        conditions += [(sizes[0], attack, edit(protected)) for attack, edit in attacks.items()]
        for size, condition, image in conditions:
            z, rt = encoded[size](image)
            z0, rt0 = originals(size, condition)
            ssim = None if rt is None or rt0 is None else float(batch_ssim(rt, rt0)[0])
            key = (name, f"{size}/{condition}")
            self.strength.setdefault(key, []).append((relative_change(z, z0), ssim))
        for other in transfer:
            view = _Encoded(other, sizes[0])
            moved = relative_change(view(protected)[0], view(photo)[0])
            self.moved.setdefault((name, other.id), []).append(moved)

    def figures(self, name: str) -> CandidateFigures:
        out = CandidateFigures(name)
        scores = np.array(self.visible[name])
        out.ssimulacra2 = float(scores[:, 0].mean())
        out.ssimulacra2_min = float(scores[:, 0].min())
        out.flip = float(scores[:, 1].mean())
        for (who, key), values in self.strength.items():
            if who == name:
                ssims = [s for _, s in values if s is not None]
                latent = float(np.mean([v for v, _ in values]))
                out.strength[key] = Strength(latent, float(np.mean(ssims)) if ssims else None)
        for (who, encoder), shifts in self.moved.items():
            if who == name:
                out.transfer[encoder] = float(np.mean(shifts))
        return out


def assess(
    photos: Sequence[np.ndarray],
    candidates: dict[str, Protect],
    encoder: Encoder,
    *,
    eps: float,
    sizes: Sequence[int] = (256, 512),
    attacks: Sequence[str] = (),
    attack_photos: Sequence[np.ndarray] = (),
    transfer: Sequence[Encoder] = (),
    regenerators: Mapping[str, KeyedProtect] | None = None,
    cancel: CancelToken | None = None,
    on_photo: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
    view: int = 512,
) -> Assessment:
    """Measure every candidate on ``photos`` (uint8 full-size photos); see the module docstring.

    ``candidates`` maps names to protect functions; random signs and uniform noise of ``eps``
    are added, and random signs laid at the ``view`` spdesk protects at when a photo is larger
    than it (:func:`view_sign_noise`; measured clean, for the gains over it). Attacks run at
    the first editor size; ``average`` is fitted per candidate on ``attack_photos`` (other
    photos, protected by the same candidate); ``regenerate`` protects again with the
    candidate's ``regenerators`` entry (a :class:`ModeProtect`'s own
    :meth:`~ModeProtect.regenerate` by default), the noise references with other seeds. Once
    ``time.monotonic()`` passes ``deadline``, no further photo is started and the report covers
    those measured (at least one), so a time-boxed run still ends with a table.
    """
    protects = {**candidates, SIGN: sign_noise(eps), UNIFORM: uniform_noise(eps)}
    keyed_by = {SIGN: seeded_by_key(protects[SIGN]), UNIFORM: seeded_by_key(protects[UNIFORM])}
    keyed_by |= {n: p.regenerate for n, p in candidates.items() if isinstance(p, ModeProtect)}
    keyed_by |= dict(regenerators or {})
    attacking = {
        name: _attack_functions(protect, attacks, attack_photos, keyed_by.get(name))
        for name, protect in protects.items()
    }
    if any(min(photo.shape[:2]) > view for photo in photos):
        protects[VIEW_SIGNS], attacking[VIEW_SIGNS] = view_sign_noise(eps, view), {}
    tally = _Tally()
    encoded = {size: _Encoded(encoder, size) for size in sizes}
    measured = list(photos)
    for index, photo in enumerate(photos):
        if cancel is not None:
            cancel.check()
        if deadline is not None and index and time.monotonic() > deadline:
            measured = measured[:index]
            break
        originals = _Originals(photo, encoded)
        for name, protect in protects.items():
            tally.add(name, protect(photo, index), originals, attacking[name], transfer)
        if on_photo is not None:
            on_photo(index + 1, len(photos))
    report = Assessment(
        encoder.id, len(measured), len(attack_photos), list(sizes), list(attacks), eps, view
    )
    report.candidates = [tally.figures(name) for name in protects]
    report.references = _jpeg_references(measured)
    return report


def _jpeg_references(photos: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    """Visibility of JPEG q75 and q50 of the same photos, for scale."""
    out = {}
    for quality in (75, 50):
        compress = simple_attack(f"jpeg{quality}")
        scores = np.array([(ssimulacra2(p, compress(p)), flip(p, compress(p))) for p in photos])
        out[f"JPEG q{quality} (reference)"] = {
            "ssimulacra2": float(scores[:, 0].mean()),
            "ssimulacra2_min": float(scores[:, 0].min()),
            "flip": float(scores[:, 1].mean()),
        }
    return out


def _merged_baseline(mine: CandidateFigures, other: Assessment) -> CandidateFigures:
    """A baseline row holding both runs' measurements: each run measured the baselines under
    its own attacks and encoders, and a merged table needs them all (this run's win where both
    measured the same thing, which :meth:`Assessment.merged` checks agree)."""
    theirs = next((c for c in other.candidates if c.name == mine.name), None)
    if theirs is None:
        return mine
    return replace(
        mine,
        strength={**theirs.strength, **mine.strength},
        transfer={**theirs.transfer, **mine.transfer},
        ssimulacra2=mine.ssimulacra2 if mine.ssimulacra2 is not None else theirs.ssimulacra2,
        ssimulacra2_min=(
            mine.ssimulacra2_min if mine.ssimulacra2_min is not None else theirs.ssimulacra2_min
        ),
        flip=mine.flip if mine.flip is not None else theirs.flip,
    )
