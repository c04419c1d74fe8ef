"""The per-photo protection step: one :class:`Protector` per mode, the seam every engine calls.

A protector turns the RGB pixels of one decoded photo into protected pixels, with the figures
of the change. The job's worker pool (:mod:`spdesk.core.jobs.pool`) calls it for every photo,
and so can any other engine (Ray Data, Dask): :func:`protect_photo` on a photo read with
:func:`~spdesk.core.imageio.read_image` is exactly what a job does between reading and writing.

Adding a mode is adding a protector class, its entry in :data:`_KINDS` and its name in
:data:`~spdesk.core.jobs.settings.MODES` (which makes it a valid ``ProtectSettings.mode``); its
:meth:`Protector.settings_key` enters the fingerprint that decides when a re-run must redo a
photo (:mod:`~spdesk.core.jobs.fingerprint`).

``key`` is the photo's path relative to the inputs' common folder, in POSIX form: randomised
layouts are seeded by it, so every engine must pass the same key to get the same bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from spdesk.core.apply import Figures, UniversalApplier, change_figures
from spdesk.core.colour import rgb_image
from spdesk.core.events import CancelToken
from spdesk.core.jobs.settings import GPU_FINETUNE_BATCH, ProtectSettings

if TYPE_CHECKING:
    from spdesk.core.finetune import FineTuner
    from spdesk.core.imageio import DecodedImage
    from spdesk.core.perturbation import Perturbation
    from spdesk.core.photo_finetune import PhotoFineTuner
    from spdesk.core.photo_protect import GeneratorProtector

Protected = tuple[Image.Image, Figures]  # protected RGB pixels, figures of the change
StepCallback = Callable[[int, int], None]  # (steps done, steps in all)


class Protector(ABC):
    """Protects the RGB pixels of photos; built once per job from its settings.

    Attributes:
        stage: what a photo's progress says while it is protected.
        concurrent: :meth:`protect` may run on several worker threads at once.
        batch_size: photos handed to :meth:`protect_batch` together (on the job's thread) when
            ``concurrent`` is False; 1 for one at a time.
    """

    mode: ClassVar[str]
    stage: ClassVar[str] = "protecting"
    concurrent: bool = True
    batch_size: int = 1

    @classmethod
    @abstractmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        """The protector for a job with ``settings`` (loads models; may raise SpdeskError)."""

    @classmethod
    def settings_key(cls, settings: ProtectSettings) -> Any:
        """The mode's own settings that change the output bytes (JSON-able; None: none)."""
        return None

    @abstractmethod
    def protect(self, image: Image.Image, key: str) -> Protected:
        """The protected version of an RGB ``image`` (same size) and its figures."""

    def ready(self) -> Protector:
        """The protector that protects: this one (a :class:`DeferredProtector` builds it)."""
        return self

    def protect_batch(
        self,
        images: Sequence[Image.Image],
        keys: Sequence[str],
        *,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> list[Protected]:
        """:meth:`protect` for several photos, in order (batching protectors override it)."""
        results = []
        for image, key in zip(images, keys, strict=True):
            if cancel is not None:
                cancel.check()
            results.append(self.protect(image, key))
        return results


class UniversalProtector(Protector):
    """The universal perturbation laid onto each photo (instant; no torch)."""

    mode = "universal"

    def __init__(self, applier: UniversalApplier) -> None:
        self.applier = applier

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        return cls(UniversalApplier(perturbation, settings.apply_options()))

    def protect(self, image: Image.Image, key: str) -> Protected:
        return self.applier.apply(image, key)


class DeferredProtector(Protector):
    """A mode's protector not built yet, for a job whose photos all look finished: its models
    (the encoder, to fine-tune: seconds to a minute) load when :meth:`ready` is first asked,
    when a photo needs work after all, which a re-run of a finished folder never does."""

    mode = "deferred"

    def __init__(self, kind: type[Protector], build: Callable[[], Protector]) -> None:
        self.concurrent = kind.concurrent
        self._build = build

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        kind = _KINDS[settings.mode]
        return cls(kind, lambda: kind.build(settings, perturbation))

    def ready(self) -> Protector:
        return self._build()

    def protect(self, image: Image.Image, key: str) -> Protected:
        raise RuntimeError("a deferred protector protects nothing: use ready()'s")


def protector_kind(settings: ProtectSettings) -> type[Protector]:
    """The protector class of ``settings.mode``."""
    return _KINDS[settings.mode]


class TuningProtector(Protector):
    """A mode that optimises each photo: it runs on the job's thread, ``batch_size`` photos at
    a time through :meth:`protect_batch`; one photo is a batch of one."""

    stage = "fine-tuning"
    concurrent = False

    def protect(self, image: Image.Image, key: str) -> Protected:
        return self.protect_batch([image], [key])[0]

    @abstractmethod  # each mode's own loop: the base's loop over protect() would recurse
    def protect_batch(
        self,
        images: Sequence[Image.Image],
        keys: Sequence[str],
        *,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> list[Protected]:
        """Fine-tune ``images`` together, reporting steps to ``on_step``."""


class FineTuneProtector(TuningProtector):
    """The universal perturbation fine-tuned on each photo against an encoder."""

    mode = "finetune"

    def __init__(self, tuner: FineTuner) -> None:
        self.tuner = tuner
        self.batch_size = tuner.batch_size

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        from spdesk.core.encoders import load_encoder
        from spdesk.core.finetune import FineTuner
        from spdesk.core.objectives import objectives_with_models

        objectives_with_models(settings.objective)  # a missing model before the encoder loads
        encoder = load_encoder(settings.encoder, settings.device)
        tuner = FineTuner(
            perturbation,
            encoder,
            steps=settings.finetune_steps,
            objective=settings.objective,
            options=settings.apply_options(),
            batch_size=finetune_batch(settings, encoder.device.type),
        )
        return cls(tuner)

    @classmethod
    def settings_key(cls, settings: ProtectSettings) -> Any:
        return [settings.finetune_steps, encoder_key(settings.encoder), settings.objective]

    def protect_batch(
        self,
        images: Sequence[Image.Image],
        keys: Sequence[str],
        *,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> list[Protected]:
        arrays = self.tuner.protect_batch(
            [np.asarray(image) for image in images], keys=keys, cancel=cancel, on_step=on_step
        )
        results = []
        for image, array in zip(images, arrays, strict=True):
            protected = rgb_image(array)
            results.append((protected, change_figures(image, protected)))
        return results


class PhotoSpecificProtector(Protector):
    """Each photo gets its own perturbation from the protection generator, seeded by this
    install's secret key and the photo's pixels (:mod:`spdesk.core.photo_protect`)."""

    mode = "photo"

    def __init__(self, protector: GeneratorProtector) -> None:
        self.protector = protector

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        from spdesk.core.device import generator_device
        from spdesk.core.photo_protect import GeneratorProtector

        del perturbation  # the generator replaces the universal pattern in this mode
        return cls(
            GeneratorProtector(
                settings.generator_path(),
                settings.strength,
                working_side=settings.working_size,
                device=generator_device(settings.device),
            )
        )

    @classmethod
    def settings_key(cls, settings: ProtectSettings) -> Any:
        from spdesk.core.device import generator_device_kind

        # An explicit device needs no GPU or torch here: a Ray driver names its workers'.
        return _photo_key(settings, generator_device_kind(settings.device))

    def protect(self, image: Image.Image, key: str) -> Protected:
        return self.protector.apply(image, key)


class PhotoFineTuneProtector(TuningProtector):
    """Photo mode's perturbation fine-tuned on each photo against an encoder, inside the same
    perceptual budget (:mod:`spdesk.core.photo_finetune`); photos of one view size are
    fine-tuned together, 8 at a time on a CUDA GPU."""

    mode = "photo-finetune"

    def __init__(self, tuner: PhotoFineTuner) -> None:
        self.tuner = tuner
        self.batch_size = tuner.batch_size

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        from spdesk.core.encoders import load_encoder
        from spdesk.core.photo_finetune import PhotoFineTuner

        del perturbation  # the generator's output is the start
        encoder = load_encoder(settings.encoder, settings.device)
        side = settings.working_size  # the editor's view, and half of it for quick edits
        tuner = PhotoFineTuner(
            settings.generator_path(),
            encoder,
            settings.finetune_steps,
            settings.strength,
            working_side=side,
            editor_sides=(max(8, side // 2), side),
            jpeg_quality=settings.finetune_jpeg,
            batch_size=finetune_batch(settings, encoder.device.type),
        )
        return cls(tuner)

    @classmethod
    def settings_key(cls, settings: ProtectSettings) -> Any:
        from spdesk.core.device import resolve_device

        # Where the encoder, so the tuner, runs (on a Ray driver: its GPU workers' kind).
        cuda = settings.device.startswith("cuda")
        device = "cuda" if cuda else resolve_device(settings.device).type
        steps, encoder = settings.finetune_steps, encoder_key(settings.encoder)
        key = [*_photo_key(settings, device), steps, encoder]
        # Without the JPEG term, as before it existed: those outputs stay valid.
        return key if settings.finetune_jpeg is None else [*key, settings.finetune_jpeg]

    def protect_batch(
        self,
        images: Sequence[Image.Image],
        keys: Sequence[str],
        *,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> list[Protected]:
        # The tuner reports steps and honours the cancel token between them. Not concurrent,
        # so setting them here is safe. ``keys`` are unused: each photo's pixels and the
        # install key choose its noise.
        del keys
        self.tuner.cancel, self.tuner.on_step = cancel, on_step
        try:
            return self.tuner.apply_batch(images)
        finally:
            self.tuner.cancel = self.tuner.on_step = None


def finetune_batch(settings: ProtectSettings, device_kind: str) -> int:
    """Photos fine-tuned together: the setting, or 8 on a CUDA GPU and 1 elsewhere."""
    if settings.finetune_batch is not None:
        return settings.finetune_batch
    return GPU_FINETUNE_BATCH if device_kind == "cuda" else 1


def encoder_key(spec: str) -> str:
    """The fine-tuning encoder as the output depends on it: its weights' fingerprint, not the
    name they were given (a file overwritten with other weights, another model imported as
    "taesd", the same file by a relative path). Asked after the job loaded the encoder, it
    reads no file again. A Ray driver that cannot see the weights its workers load keys them
    by name, as before."""
    from spdesk.core.encoders import weights_fingerprint
    from spdesk.core.errors import SpdeskError

    try:
        return weights_fingerprint(spec)
    except (SpdeskError, OSError):
        return spec


def _photo_key(settings: ProtectSettings, device: str) -> list[Any]:
    """What makes photo mode's bytes: another generator, install key or large-photo share
    gives other bytes, and so does another kind of device (a GPU's convolutions round
    differently: a few values land one 8-bit step from the CPU's, 0.13% of them on an H200)."""
    from spdesk.core import geometry
    from spdesk.core.generator_file import read_spec
    from spdesk.core.keys import install_key, key_id

    spec = read_spec(settings.generator_path())
    return [
        spec.fingerprint,
        key_id(install_key()),
        geometry.LARGE_PHOTO_EXPONENT,
        geometry.LARGE_PHOTO_FLOOR,
        device,
    ]


_KINDS: dict[str, type[Protector]] = {
    kind.mode: kind
    for kind in (
        PhotoSpecificProtector,
        UniversalProtector,
        FineTuneProtector,
        PhotoFineTuneProtector,
    )
}


def build_protector(settings: ProtectSettings, perturbation: Perturbation) -> Protector:
    """The protector of ``settings.mode`` for ``perturbation``."""
    return _KINDS[settings.mode].build(settings, perturbation)


def mode_key(settings: ProtectSettings) -> Any:
    """The settings of ``settings.mode`` that change the output (for the fingerprint)."""
    return _KINDS[settings.mode].settings_key(settings)


def rgb_of(image: Image.Image) -> Image.Image:
    """The colour channels of a decoded photo (RGB or RGBA after decoding)."""
    return image.convert("RGB") if image.mode == "RGBA" else image


def with_alpha(protected: Image.Image, decoded: Image.Image) -> Image.Image:
    """The protected colours with the original's alpha channel, where it had one."""
    if decoded.mode == "RGBA":
        protected.putalpha(decoded.getchannel("A"))
    return protected


def protect_photo(protector: Protector, decoded: DecodedImage, key: str) -> Protected:
    """What a job does to one decoded photo: its colours protected, its alpha kept."""
    protected, figures = protector.protect(rgb_of(decoded.image), key)
    return with_alpha(protected, decoded.image), figures


def protection_key_id(settings: ProtectSettings) -> str | None:
    """The public id of the install key the outputs depend on (photo modes always, universal
    when randomised); None when they do not depend on one."""
    if settings.mode not in ("photo", "photo-finetune") and not settings.randomize:
        return None
    from spdesk.core.keys import install_key, key_id

    return key_id(install_key())
