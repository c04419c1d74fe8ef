"""Photo-specific protection: the bundled generator writes each photo its own perturbation.

For a photo of any size: take the view an editor works at (:func:`spdesk.core.geometry.layout_size`:
the photo itself up to a short side of 512, else downsized), draw the secret noise for this photo
from the install key and the view's pixels (:mod:`spdesk.core.keys`), run the generator once, and
lay the delta on the photo (1:1, or resized to full size exactly as universal perturbations are,
so the editor's downsizing gives it back). Deterministic for one install and one photo.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spdesk.core.apply import Figures, apply_working_delta_pil, change_figures
from spdesk.core.batches import batches_by_key
from spdesk.core.errors import PerturbationFileError
from spdesk.core.files import shown
from spdesk.core.generator import DeltaGenerator, GeneratorConfig, generator_raw, noise_shape
from spdesk.core.generator_file import GeneratorSpec, read_spec
from spdesk.core.geometry import large_photo_factor, layout_size
from spdesk.core.keys import install_key, photo_seed
from spdesk.core.perturbation import changes_a_pixel, check_eps
from spdesk.core.shaping import Shaping, compose_delta

WORKING_SIDE = 512
_TEST_SIDE = 64  # of the textured view a generator is tried on when loaded
_OTHER_GENERATOR = "Use the generator that comes with spdesk, or train a new one."


def file_name(spec: GeneratorSpec) -> str:
    """How messages name a generator: its file's name."""
    return spec.path.name if spec.path else spec.name


def generator_shaping(spec: GeneratorSpec) -> Shaping:
    """The budget shaping a generator file records, or PerturbationFileError saying why not."""
    try:
        return Shaping.from_settings(spec.shaping)
    except ValueError as error:
        raise PerturbationFileError(
            f"{file_name(spec)} has a shaping spdesk cannot use: {error}.",
            hint=_OTHER_GENERATOR,
        ) from error


def finite_raw(
    model: DeltaGenerator, images: torch.Tensor, noise: torch.Tensor, name: str
) -> torch.Tensor:
    """:func:`generator_raw`, refused when not finite: weights that are finite but huge make
    NaN, which nothing downstream bounds."""
    raw = generator_raw(model, images, noise)
    if not torch.isfinite(raw).all():
        raise PerturbationFileError(
            f"{name} produced invalid values: it is damaged or not made for this spdesk.",
            hint=_OTHER_GENERATOR,
        )
    return raw


def load_generator(path: Path) -> tuple[DeltaGenerator, GeneratorSpec]:
    """Build the network a generator file describes and load its weights (checked by name,
    shape and finiteness; nothing is unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    spec = read_spec(path)
    generator_shaping(spec)  # a file this spdesk cannot shape is refused before any weight loads
    try:
        model = DeltaGenerator(GeneratorConfig(**spec.network))
    except TypeError as error:
        raise PerturbationFileError(
            f"{path.name}: unknown network settings {spec.network}"
        ) from error
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise PerturbationFileError(f"{path.name} is damaged: {error}") from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing or set(state) - set(expected):
        raise PerturbationFileError(
            f"{path.name} does not match its network (missing {', '.join(missing[:3]) or '-'})."
        )
    _check_weights(path, state, expected)
    model.load_state_dict(state)
    model.eval()
    _check_writes_a_perturbation(model, spec)
    return model, spec


def _check_weights(
    path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Floating-point weights (spdesk writes float32; integers load silently truncated), of
    the network's shapes, finite."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise PerturbationFileError(
                f"{path.name} stores its weights as {str(tensor.dtype).removeprefix('torch.')}; "
                "spdesk reads floating-point weights: the file is damaged or not made by spdesk.",
                hint=_OTHER_GENERATOR,
            )
        if tensor.shape != expected[name].shape or not torch.isfinite(tensor).all():
            raise PerturbationFileError(f"{path.name}: weight {name} has a wrong shape or value.")


def _check_writes_a_perturbation(model: DeltaGenerator, spec: GeneratorSpec) -> None:
    """Run the generator once on a fixed textured view: a file that makes invalid values or
    no change at all is refused when loaded, once per job, instead of its photos being
    reported as too flat to protect, or changed beyond the budget."""
    draw = torch.Generator().manual_seed(0)
    view = torch.rand((1, 3, _TEST_SIDE, _TEST_SIDE), generator=draw)
    noise = torch.randn((1, *noise_shape(_TEST_SIDE, _TEST_SIDE)), generator=draw)
    with torch.no_grad():
        raw = finite_raw(model, view, noise, file_name(spec))
        delta = compose_delta(raw, view, spec.eps, generator_shaping(spec))
    if not torch.isfinite(delta).all():  # NaN counts as a change to delta.any()
        raise PerturbationFileError(
            f"{file_name(spec)} produced invalid values on a test photo: it is damaged or not "
            "made for this spdesk.",
            hint=_OTHER_GENERATOR,
        )
    if not delta.any():
        raise PerturbationFileError(
            f"{file_name(spec)} writes no perturbation (its output on a test photo is zero): it "
            "is damaged or not made for this spdesk.",
            hint=_OTHER_GENERATOR,
        )


class GeneratorProtector:
    """Protects photos with a generator; thread-safe (one forward pass at a time per instance
    keeps memory bounded; torch uses the cores inside a pass).

    Args:
        path: the generator file.
        strength: budget in 8-bit steps; None keeps the file's eps (the generator was trained
            at that budget; other strengths scale its output).
        key: the secret key (default: this install's key).
        working_side: short side of the editor's view (512).
        device: where the network runs (see :func:`spdesk.core.device.generator_device`); the
            secret noise is drawn on the CPU whatever the device, so one install gives one
            noise per photo.
    """

    def __init__(
        self,
        path: Path,
        strength: float | None = None,
        *,
        key: bytes | None = None,
        working_side: int = WORKING_SIDE,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model, self.spec = load_generator(path)
        self.model.to(self.device)
        if strength is not None:
            check_eps(strength)
        self.eps = strength if strength is not None else self.spec.eps
        if not changes_a_pixel(self.eps):  # every photo "unchanged: too small or flat"
            raise PerturbationFileError(
                f"{shown(path)} has a budget of {self.eps:g} 8-bit steps: its protection "
                "cannot change any pixel.",
                hint="Give a strength (--strength 8), or choose another generator file.",
            )
        self.shaping = generator_shaping(self.spec)
        self.key = key if key is not None else install_key()
        self.working_side = working_side
        self.batch_position = (0, 1)  # (batch, batches) of the apply_batch call under way
        self._lock = threading.Lock()

    def working_delta(self, view: np.ndarray) -> np.ndarray:
        """The delta (3, h, w) in pixel units for a uint8 (h, w, 3) view."""
        return self.working_deltas([view])[0]

    def working_deltas(self, views: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`working_delta` of views of one size, in one pass (a batch for the GPU)."""
        noises = []
        for view in views:
            seed = photo_seed(self.key, view, self.spec.fingerprint)
            generator = torch.Generator().manual_seed(seed)
            noises.append(torch.randn((1, *noise_shape(*view.shape[:2])), generator=generator))
        pixels = torch.from_numpy(np.stack([np.asarray(view) for view in views])).permute(
            0, 3, 1, 2
        )
        with self._lock:
            # uint8 crosses to the GPU (a quarter of the bytes); on the CPU nothing moves.
            x = pixels.to(self.device).float() / 255
            with torch.no_grad():
                noise = torch.cat(noises).to(self.device)
                raw = finite_raw(self.model, x, noise, file_name(self.spec))
            raw = self.refine(x, raw)
            with torch.no_grad():
                delta = compose_delta(raw, x, self.eps, self.shaping)
            return list(delta.cpu().numpy())  # waits for the GPU inside the lock

    def refine(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The raw outputs to compose for views ``x`` (N, 3, h, w): the generator's own here;
        per-photo fine-tuning improves them, see :mod:`spdesk.core.photo_finetune`."""
        del x
        return raw

    def apply(self, image: Image.Image, key: str = "") -> tuple[Image.Image, Figures]:
        """The protected RGB image and its figures (PSNR, largest change). ``key`` is unused:
        the photo's own pixels and the install key choose its noise."""
        del key
        return self.apply_batch([image])[0]

    def apply_batch(
        self, images: Sequence[Image.Image], batch_size: int = 1
    ) -> list[tuple[Image.Image, Figures]]:
        """:meth:`apply` for several photos, in order; views of one size go through
        :meth:`working_deltas` together, ``batch_size`` at a time."""
        views = [self._view(image) for image in images]
        deltas: dict[int, np.ndarray] = {}
        batches = batches_by_key([view.shape for view in views], batch_size)
        for position, batch in enumerate(batches):
            self.batch_position = (position, len(batches))  # for progress over the whole call
            tuned = self.working_deltas([views[index] for index in batch])
            deltas.update(zip(batch, tuned, strict=True))
        results = []
        for index, image in enumerate(images):
            delta = deltas[index] * large_photo_factor(image.height, views[index].shape[0])
            protected = apply_working_delta_pil(image, delta, eps=self.eps)
            results.append((protected, change_figures(image, protected)))
        return results

    def _view(self, image: Image.Image) -> np.ndarray:
        """The editor's view of an RGB photo (the photo itself up to the working side)."""
        if image.mode != "RGB":
            raise ValueError(f"apply expects an RGB image, got mode {image.mode}")
        width, height = image.size
        view_h, view_w = layout_size(height, width, self.working_side)
        view = image
        if (view_w, view_h) != image.size:
            view = image.resize((view_w, view_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.asarray(view)
