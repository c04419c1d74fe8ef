"""What an AI editor does to the original and to the protected photo, side by side.

The same Stable Diffusion 1.5 edit (img2img / SDEdit, or inpainting) runs on the photo's working
view three times in one batched pipeline call: the original, the protected photo, and the photo
with random noise of the same strength (the baseline: each colour value moved as far as the
protection moves it, in a random direction). Every batch element gets its own generator seeded
identically, so the protection is the only difference between the edits.

The safety checker is never loaded: the preview is an unfiltered edit of the user's own photo, and
says so. A black or blank edit is detected and never reported as "protection worked".
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from spdesk.core import metrics
from spdesk.core.apply import ApplyOptions, apply_perturbation, photo_change
from spdesk.core.device import resolve_device
from spdesk.core.edits import EDIT_STEPS, EDIT_STRENGTH, GUIDANCE, PRESETS
from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    ModelError,
    ModelMissingError,
    OutputError,
    OutputExistsError,
)
from spdesk.core.events import CancelToken, EventSink, Progress, ignore_events
from spdesk.core.files import finite_for_json
from spdesk.core.geometry import check_previewable, working_size
from spdesk.core.models.sources import Feature
from spdesk.core.perturbation import Perturbation

log = logging.getLogger(__name__)

UNFILTERED_NOTE = (
    "This preview shows an unfiltered AI edit of your own photo: no safety checker is applied."
)
Mode = Literal["img2img", "inpaint"]
MaskMode = Literal["keep-centre", "regenerate-centre"]
FEATURE_FOR_MODE: dict[str, Feature] = {"img2img": "preview", "inpaint": "inpaint"}
BLANK_STD = 0.02  # an edit whose pixels barely vary is blank (or black): not a real edit
BLANK_MEAN = 0.03
# The tiles saved as PNGs, by PreviewResult attribute; never named as protect's output
# NAME.protected.png, which a preview must not replace.
TILE_FILES = {
    "original": "preview-original.png",
    "protected": "preview-protected.png",
    "edit_original": "edit_original.png",
    "edit_protected": "edit_protected.png",
}
MAX_SEED = 2**63  # torch.Generator takes seeds in [0, 2**63)


@dataclass(frozen=True)
class PreviewRequest:
    """One preview edit.

    Attributes:
        prompt: the edit instruction; a preset (see ``PRESETS``) or free text.
        mode: "img2img" (SDEdit) or "inpaint".
        strength: how much of the photo the editor regenerates, in (0, 1] (0.5 by default).
        steps: denoising steps in [1, 200] (30 by default; img2img runs strength x steps of them).
        guidance: classifier-free guidance scale, >= 1 (7.5 by default).
        seed: seed of the edit, identical for original, protected and noise baseline, in
            [0, 2**63).
        working_size: short side of the working view in pixels (512 as SD 1.5 editors use).
        mask_mode: default inpainting mask when ``mask`` is None (inpaint mode only).
        mask: optional inpainting mask (H, W) bool, True where the editor regenerates (inpaint
            mode only).
    """

    prompt: str = PRESETS["P1"]
    mode: Mode = "img2img"
    strength: float = EDIT_STRENGTH
    steps: int = EDIT_STEPS
    guidance: float = GUIDANCE
    seed: int = 0
    working_size: int = 512
    mask_mode: MaskMode = "keep-centre"
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    def validate(self) -> None:
        """Refuse out-of-range settings before any work, with a plain message."""
        if self.mode not in FEATURE_FOR_MODE:
            raise ConfigError(f"Unknown preview mode {self.mode!r}; use img2img or inpaint.")
        if not 0 < self.strength <= 1:
            raise ConfigError(f"Edit strength must be in (0, 1], got {self.strength}.")
        if not 1 <= self.steps <= 200:
            raise ConfigError(f"Steps must be between 1 and 200, got {self.steps}.")
        if int(self.steps * self.strength) < 1:  # diffusers runs int(steps x strength) of them
            least = math.ceil(1 / self.strength)
            fix = f"use at least {least} steps" if least <= 200 else "raise the edit strength"
            raise ConfigError(
                f"{self.steps} step(s) at edit strength {self.strength} leave the editor no "
                f"denoising step (it runs steps x strength of them): {fix}."
            )
        if not (math.isfinite(self.guidance) and self.guidance >= 1):
            raise ConfigError(f"Guidance must be a number of at least 1, got {self.guidance}.")
        if not 0 <= self.seed < MAX_SEED:
            raise ConfigError(f"The seed must be between 0 and 2**63 - 1, got {self.seed}.")
        if self.working_size < 64 or self.working_size % 8:
            raise ConfigError("The working size must be a multiple of 8 and at least 64 pixels.")
        if self.mask_mode not in ("keep-centre", "regenerate-centre"):
            raise ConfigError(f"Unknown mask mode {self.mask_mode!r}.")
        self._validate_mask()

    def _validate_mask(self) -> None:
        # An img2img edit redraws the whole photo: a mask would be ignored, yet recorded.
        if self.mode == "inpaint":
            return
        if self.mask is not None or self.mask_mode != "keep-centre":
            raise ConfigError(
                "A mask (or mask mode) is only used by inpainting; the img2img edit redraws the "
                "whole photo.",
                hint="Add --mode inpaint, or leave out the mask.",
            )


@dataclass
class PreviewResult:
    """Images (uint8 H x W x 3 working views), figures, and the verdict in plain words."""

    original: np.ndarray
    protected: np.ndarray
    noisy: np.ndarray
    edit_original: np.ndarray
    edit_protected: np.ndarray
    edit_noisy: np.ndarray
    figures: dict[str, dict[str, float | None]]
    verdict: str
    worked: bool | None  # None when the edit is not trustworthy (blank / black)
    warnings: list[str]
    request: PreviewRequest
    seconds: float
    note: str = UNFILTERED_NOTE

    def to_json(self) -> dict[str, Any]:
        """The JSON record of this preview (no pixels)."""
        request = {k: v for k, v in asdict(self.request).items() if k != "mask"}
        request["custom_mask"] = self.request.mask is not None
        return {
            "request": request,
            "figures": finite_for_json(self.figures),  # a blank edit's metrics: NaN
            "verdict": self.verdict,
            "worked": self.worked,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "note": self.note,
            "size": list(self.original.shape[:2]),
        }


def load_mask(path: Path) -> np.ndarray:
    """An inpainting mask file as bool (H, W), True where the editor redraws.

    Black and white, white is redrawn. With transparency, read as the programs that draw masks
    save them: white strokes on a transparent layer are redrawn there (the transparent rest is
    kept); an opaque picture with transparent holes, and no white, has its holes redrawn (the
    convention of OpenAI's image edits). A mask that marks nothing is refused: the edit would
    change nothing and say nothing about the protection."""
    from spdesk.core.imageio import read_image, require_named_file

    require_named_file(Path(path), "mask")
    rgba = np.asarray(read_image(Path(path)).image.convert("RGBA"))
    white = rgba[..., :3].mean(axis=2) >= 128
    opaque = rgba[..., 3] >= 128
    mask: np.ndarray
    if opaque.all():
        mask = white
    elif (white & opaque).any():
        mask = white & opaque
    else:
        mask = ~opaque
    if not mask.any():
        raise ConfigError(
            f"The mask {Path(path).name} marks nothing to redraw: it has no white area.",
            hint="Paint what the editor should redraw white, the rest black.",
        )
    return mask


def resolve_prompt(prompt: str | None, preset: str | None) -> str:
    """A preset name (P1..P4) or free text; the default is P1."""
    if preset is not None:
        key = preset.upper()
        if key not in PRESETS:
            raise ConfigError(f"Unknown prompt preset {preset!r}; choose one of P1, P2, P3, P4.")
        return PRESETS[key]
    return PRESETS["P1"] if prompt is None else prompt


def _working_view(image: np.ndarray, short_side: int) -> Image.Image:
    height, width = image.shape[:2]
    wh, ww = working_size(height, width, short_side)
    wh, ww = max(8, wh - wh % 8), max(8, ww - ww % 8)  # the pipeline needs multiples of 8
    return Image.fromarray(image).resize((ww, wh), Image.Resampling.BICUBIC, reducing_gap=None)


def default_mask(height: int, width: int, mode: MaskMode) -> np.ndarray:
    """True where the editor regenerates: everything but a central box, or only that box."""
    mask = np.ones((height, width), bool)
    top, left = height // 4, width // 4
    mask[top : height - top, left : width - left] = False
    return mask if mode == "keep-centre" else ~mask


def noise_baseline(original: np.ndarray, protected: np.ndarray, seed: int) -> np.ndarray:
    """``original`` with random noise of the protection's own size: each colour value moved as
    far as ``protected`` moves it, up or down at random (seeded). The same energy in the same
    places as the protection (photo mode shapes its change by texture and gives large photos
    less of it: flat ±eps noise would be far stronger), without its structure: the fair
    baseline."""
    size = np.abs(protected.astype(np.int16) - original)
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1, 1], np.int16), size=original.shape)
    noisy = original + signs * size
    # Past 0 or 255 one way, the other way is inside: the protection went there.
    outside = (noisy < 0) | (noisy > 255)
    noisy[outside] = (original - signs * size)[outside]
    baseline: np.ndarray = noisy.astype(np.uint8)
    return baseline


def _is_blank(image: np.ndarray) -> bool:
    pixels = image.astype(np.float32) / 255
    return float(pixels.std()) < BLANK_STD or float(pixels.mean()) < BLANK_MEAN


def _mask_notes(mask: np.ndarray | None, photo: np.ndarray, tolerance: float = 0.02) -> list[str]:
    """A warning when a mask's aspect ratio differs from the photo's by more than ``tolerance``
    (it is stretched onto the photo's view, so it may not cover what was meant)."""
    if mask is None:
        return []
    (mask_h, mask_w), (height, width) = mask.shape[:2], photo.shape[:2]
    if abs((mask_w / mask_h) / (width / height) - 1) <= tolerance:
        return []
    return [
        f"The mask ({mask_w}x{mask_h}) is not shaped like the photo ({width}x{height}): it was "
        "stretched to fit, so it may not cover what you meant."
    ]


def _rounded(psnr: float | None) -> float:
    """A PSNR as the figures give it (identical images: 100 dB, as torchmetrics says)."""
    return 100.0 if psnr is None else round(psnr, 2)


def _figures(reference: np.ndarray, other: np.ndarray) -> dict[str, float | None]:
    return {
        "ssim": round(metrics.ssim(reference, other), 4),
        "psnr": round(metrics.psnr(reference, other), 2),
        "vifp": round(metrics.vifp(reference, other), 4),
        "fsim": metrics.fsim(reference, other),
    }


def verdict_for(
    protected: dict[str, float | None], noise: dict[str, float | None], blank: bool
) -> tuple[str, bool | None]:
    """A plain-words verdict, calibrated against random noise of the same strength."""
    if blank:
        return (
            "The AI edit came out blank or black, so this preview says nothing about protection. "
            "Check the model files or try other settings.",
            None,
        )
    ssim_p, ssim_n = float(protected["ssim"] or 0), float(noise["ssim"] or 0)
    gap = ssim_n - ssim_p
    if gap >= 0.1 and ssim_p < 0.75:
        words = "Protection worked: the AI edit of the protected photo is clearly broken"
        worked: bool | None = True
    elif gap >= 0.03:
        words = "Some protection: the AI edit of the protected photo is disturbed more"
        worked = True
    else:
        return (
            f"No clear protection: the edit of the protected photo stays about as close to the "
            f"edit of the original (similarity {ssim_p:.2f}) as with random noise of the same "
            f"strength ({ssim_n:.2f}). Try a higher strength or per-photo fine-tuning.",
            False,
        )
    return (
        f"{words} (similarity to the edit of the original {ssim_p:.2f}; random noise of the "
        f"same strength only gets to {ssim_n:.2f}).",
        worked,
    )


def is_inpainting_folder(folder: Path) -> bool:
    """Whether a diffusers SD folder holds an inpainting model (9 UNet input channels), as
    ``spdesk models import`` classifies it; an incomplete folder is left to loading to name."""
    from spdesk.core.models.importing import folder_kind

    try:
        return "inpaint" in folder_kind(folder)[2]
    except ModelError:
        return False


def check_offload_possible() -> None:
    """ConfigError, before minutes of loading, when model CPU offload cannot run: diffusers
    needs the ``accelerate`` package for it, which spdesk does not install."""
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise ConfigError(
            "Model CPU offload (--offload) needs the accelerate package, which is not installed.",
            hint="Install it (pip install accelerate), or leave out --offload.",
        )


class PreviewEngine:
    """Holds the Stable Diffusion pipelines, loaded once and reused across previews until
    :meth:`release` (or the end of a ``with`` block) frees them: they take gigabytes.

    Args:
        model_dir: a diffusers SD 1.5 folder for img2img; ``None`` asks the model store.
        inpaint_dir: a diffusers SD 1.5 inpainting folder; ``None`` asks the model store.
        device: "auto", "cpu", "cuda" or "mps".
        offload: model CPU offload for small GPUs (needs the ``accelerate`` package); only a
            CUDA device has GPU memory to spare, elsewhere it is left off (``offload_ignored``).
        half: half precision on GPUs ("fp16" or "bf16"); ignored on CPU (fp32).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        inpaint_dir: Path | None = None,
        device: str = "auto",
        offload: bool = False,
        half: Literal["fp16", "bf16"] = "fp16",
    ) -> None:
        self.model_dirs: dict[str, Path | None] = {"img2img": model_dir, "inpaint": inpaint_dir}
        self.device = resolve_device(device)
        self.offload = offload and self.device.type == "cuda"
        self.offload_ignored = offload and not self.offload
        if self.offload:
            check_offload_possible()
        self.dtype = torch.float32
        if self.device.type in ("cuda", "mps"):
            self.dtype = torch.bfloat16 if half == "bf16" else torch.float16
        self._pipes: dict[str, Any] = {}

    def model_dir(self, mode: Mode) -> Path:
        """The folder for ``mode``: given, or from the model store (ModelMissingError names the
        download command)."""
        given = self.model_dirs[mode]
        if given is not None:
            if not (Path(given) / "model_index.json").is_file():
                raise ModelMissingError(
                    f"{given} is not a Stable Diffusion model folder (no model_index.json).",
                    hint="Give --model-dir the folder that holds model_index.json, or leave it "
                    "out to use the installed model (to install it: spdesk models download "
                    f"--for {FEATURE_FOR_MODE[mode]}).",
                )
            if mode == "img2img" and is_inpainting_folder(Path(given)):
                raise ConfigError(
                    f"{given} is an inpainting model: use --mode inpaint, or give an img2img "
                    "(plain Stable Diffusion 1.5) model folder."
                )
            return Path(given)
        from spdesk.core.models.store import ModelStore

        return Path(ModelStore().require(FEATURE_FOR_MODE[mode]))

    def loaded(self, mode: Mode) -> bool:
        """Whether ``mode``'s pipeline is loaded already (the next edit starts at once)."""
        return mode in self._pipes

    def pipeline(self, mode: Mode) -> Any:
        """The loaded pipeline for ``mode`` (loaded on first use, then reused)."""
        if mode not in self._pipes:
            self._pipes[mode] = self._load(mode)
        return self._pipes[mode]

    def release(self) -> None:
        """Drop the loaded pipelines and give the device's cached memory back; a later
        preview loads them again."""
        if not self._pipes:
            return
        self._pipes.clear()
        # diffusers' modules hold reference cycles: free them now, not some day. On the main
        # thread only: a collection elsewhere (a window's preview task) would free the app's
        # garbage there too, Qt objects included (spdesk.gui.garbage collects for it instead).
        if threading.current_thread() is threading.main_thread():
            gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def __enter__(self) -> PreviewEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _load(self, mode: Mode) -> Any:
        from spdesk.core.models.loading import load_pipeline_from

        feature = FEATURE_FOR_MODE[mode]
        pipe = load_pipeline_from(self.model_dir(mode), feature, dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        if self.device.type == "mps":
            pipe.enable_attention_slicing()
        if self.offload and self.device.type == "cuda":
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(self.device)
        return pipe

    def run(
        self,
        photo: np.ndarray,
        perturbation: Perturbation | None,
        request: PreviewRequest = PreviewRequest(),
        *,
        apply_options: ApplyOptions | None = None,
        protected: np.ndarray | None = None,
        on_event: EventSink = ignore_events,
        cancel: CancelToken | None = None,
    ) -> PreviewResult:
        """Edit the original, the protected photo and the noise baseline; compare the edits.

        Args:
            photo: the original, uint8 (H, W, 3) at full size.
            perturbation: the protection (its strength, or ``apply_options.strength``); only
                used when ``protected`` is None.
            request: prompt, mode, strength, steps, guidance, seed, working size, mask.
            apply_options: how the protection is laid on (as the export would do it).
            protected: an already protected version of ``photo`` (photo mode, fine-tuned);
                computed with ``perturbation`` when None.
            on_event: receives Progress("edit", step, total) per denoising step.
            cancel: checked every denoising step; raises Cancelled.
        """
        request.validate()
        check_previewable(photo)
        started = time.monotonic()
        if protected is None:
            if perturbation is None:
                raise ValueError("run() needs the perturbation or the protected photo")
            options = apply_options or ApplyOptions(working_size=request.working_size)
            protected = apply_perturbation(photo, perturbation, options)
        original_view, protected_view = (
            np.asarray(_working_view(image, request.working_size)) for image in (photo, protected)
        )
        views = [
            original_view,
            protected_view,
            noise_baseline(original_view, protected_view, request.seed),
        ]
        edits = self._edit(views, request, on_event, cancel)
        result = self._result(views, edits, request, started)
        # The photo as shared, not its working view: the PSNR protect and the app report.
        result.figures["visibility"]["psnr"] = _rounded(photo_change(photo, protected)[0])
        result.warnings += _mask_notes(request.mask, photo)
        return result

    def _edit(
        self,
        views: list[np.ndarray],
        request: PreviewRequest,
        on_event: EventSink,
        cancel: CancelToken | None,
    ) -> list[np.ndarray]:
        pipe = self.pipeline(request.mode)
        height, width = views[0].shape[:2]
        total = (
            request.steps
            if request.mode == "inpaint"
            else max(1, int(request.steps * request.strength))
        )
        generator_device = "cpu" if self.device.type == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(request.seed) for _ in views]

        def on_step(pipeline: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            # The pipeline's own count: SD 1.5's PNDM scheduler runs one step more than asked.
            steps = int(getattr(pipeline, "num_timesteps", 0) or total)
            on_event(Progress("edit", step + 1, steps, message="denoising"))
            if cancel is not None and cancel.cancelled:  # now, not after decoding the latents
                raise Cancelled("Preview cancelled.")
            return kwargs

        kwargs: dict[str, Any] = {
            "prompt": [request.prompt] * len(views),
            "image": [Image.fromarray(v) for v in views],
            "strength": request.strength,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "generator": generators,
            "output_type": "np",
            "callback_on_step_end": on_step,
        }
        if request.mode == "inpaint":
            mask = self._mask(request, height, width)
            kwargs.update(mask_image=[mask] * len(views), height=height, width=width)
        if cancel is not None:
            cancel.check()
        with torch.inference_mode():
            images = pipe(**kwargs).images
        return [np.clip(np.rint(image * 255), 0, 255).astype(np.uint8) for image in images]

    @staticmethod
    def _mask(request: PreviewRequest, height: int, width: int) -> Image.Image:
        if request.mask is None:
            mask = default_mask(height, width, request.mask_mode)
        else:
            resized = Image.fromarray(request.mask.astype(np.uint8) * 255).resize(
                (width, height), Image.Resampling.NEAREST
            )
            mask = np.asarray(resized) >= 128
        return Image.fromarray(mask.astype(np.uint8) * 255)  # uint8 (H, W): mode "L"

    @staticmethod
    def _result(
        views: list[np.ndarray], edits: list[np.ndarray], request: PreviewRequest, started: float
    ) -> PreviewResult:
        original, protected, noisy = views
        edit_original, edit_protected, edit_noisy = edits
        figures: dict[str, dict[str, float | None]] = {
            "protected_edit": _figures(edit_original, edit_protected),
            "noise_edit": _figures(edit_original, edit_noisy),
            "visibility": {
                "psnr": round(metrics.psnr(original, protected), 2),
                "ssim": round(metrics.ssim(original, protected), 4),
            },
        }
        blank = any(_is_blank(edit) for edit in edits)
        warnings = []
        if blank:
            warnings.append("An edit came out blank or black.")
        verdict, worked = verdict_for(figures["protected_edit"], figures["noise_edit"], blank)
        return PreviewResult(
            original=original,
            protected=protected,
            noisy=noisy,
            edit_original=edit_original,
            edit_protected=edit_protected,
            edit_noisy=edit_noisy,
            figures=figures,
            verdict=verdict,
            worked=worked,
            warnings=warnings,
            request=request,
            seconds=time.monotonic() - started,
        )


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _format(figures: dict[str, float | None]) -> str:
    parts = []
    for key in ("ssim", "psnr", "vifp", "fsim"):
        value = figures.get(key)
        if value is not None:
            parts.append(f"{key.upper()} {value:.2f}" if key != "psnr" else f"PSNR {value:.1f} dB")
    return "  ".join(parts)


def comparison_sheet(result: PreviewResult) -> Image.Image:
    """Original, protected, edit of original, edit of protected, with captions and figures.

    The text below the tiles is wrapped to the sheet's width, which is only twice a web-size
    photo's: the verdict's advice must not run off the edge."""
    tiles = [
        (result.original, "Original"),
        (result.protected, f"Protected (PSNR {result.figures['visibility']['psnr']:.1f} dB)"),
        (result.edit_original, "AI edit of the original"),
        (result.edit_protected, "AI edit of the protected photo"),
    ]
    height, width = result.original.shape[:2]
    pad, caption = 16, max(28, height // 16)
    sheet_width = 2 * width + 3 * pad
    font = _font(max(12, caption // 2))
    paragraphs = [
        f'Prompt: "{result.request.prompt}"  ({result.request.mode}, strength '
        f"{result.request.strength}, {result.request.steps} steps, seed {result.request.seed})",
        "Edit of protected vs edit of original: " + _format(result.figures["protected_edit"]),
        "Random noise of the same strength:    " + _format(result.figures["noise_edit"]),
        result.verdict,
    ]
    room = sheet_width - 2 * pad
    lines = [line for text in paragraphs for line in wrap_to_width(text, font, room)]
    line_height = caption - 4
    sheet = Image.new(
        "RGB",
        (sheet_width, 2 * (height + caption) + 3 * pad + len(lines) * line_height + pad),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(tiles):
        x = pad + (index % 2) * (width + pad)
        y = pad + (index // 2) * (height + caption + pad)
        draw.text((x, y + 4), label, fill=(20, 20, 20), font=font)
        sheet.paste(Image.fromarray(image), (x, y + caption))
    y = 2 * (height + caption + pad) + pad
    for line in lines:
        draw.text((pad, y), line, fill=(20, 20, 20), font=font)
        y += line_height
    return sheet


def wrap_to_width(
    text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> list[str]:
    """``text`` cut into lines no wider than ``width`` pixels in ``font``, at spaces (a word
    wider than that on its own gets a line of its own)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and font.getlength(candidate) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return [*lines, line]


def output_paths(folder: Path, stem: str = "preview") -> dict[str, Path]:
    """Where :func:`save_outputs` writes the sheet, the four tiles and the JSON record."""
    names = {"sheet": "sheet.png", "json": "json"} | TILE_FILES
    return {key: folder / f"{stem}.{suffix}" for key, suffix in names.items()}


def check_outputs(
    folder: Path, stem: str = "preview", *, replace: bool = False, photo: Path | None = None
) -> dict[str, Path]:
    """Refuse, before minutes of editing, outputs that could not all be written: a folder in
    a file's place, a place that cannot be written, the ``photo`` previewed itself (even with
    ``replace``), or (unless ``replace``) a file already there; creates ``folder``. Returns
    :func:`output_paths`."""
    from spdesk.core.files import check_writable, same_file, shown

    paths = output_paths(folder, stem)
    for path in paths.values():
        if photo is not None and same_file(path, photo):
            raise OutputError(
                f"{shown(path)} is the photo being previewed: the preview never writes over it.",
                hint="Choose another --out folder.",
            )
        if path.is_dir():
            raise OutputError(
                f"Cannot write {shown(path)}: a folder has that name.",
                hint="Choose another --out folder, or move that folder away.",
            )
    taken = [path.name for path in paths.values() if path.exists() or path.is_symlink()]
    if taken and not replace:
        raise OutputExistsError(
            f"{shown(folder)} already holds {', '.join(map(shown, taken))}: the preview does "
            "not replace files.",
            hint="Choose another --out folder, or add --force to replace them.",
        )
    for path in paths.values():
        check_writable(path)
    return paths


def save_outputs(
    result: PreviewResult, folder: Path, stem: str = "preview", *, replace: bool = False
) -> dict[str, Path]:
    """Write the comparison sheet (PNG), the four tiles and the JSON record into ``folder``,
    replacing files already there only if ``replace``. All or nothing, an earlier preview's
    files included: a file that cannot be written raises a named OutputError, and the folder
    is left as it was (half a preview's files would pass for a whole one)."""
    from spdesk.core.files import discard, publish, write_temp

    paths = output_paths(folder, stem)
    temps: list[Path] = []
    try:
        for key, path in paths.items():  # every file written before any is put in place
            temps.append(write_temp(path, _encoded(result, key, paths))[0])
        with _set_aside(list(paths.values()) if replace else []):
            published: list[Path] = []
            try:
                for temp, path in zip(temps, paths.values(), strict=True):
                    publish(temp, path)
                    published.append(path)
            except BaseException:
                for path in published:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise
    finally:
        for temp in temps:
            discard(temp)
    return paths


@contextlib.contextmanager
def _set_aside(paths: list[Path]) -> Iterator[None]:
    """Move the files at ``paths`` out of the way for the block, then delete them; put them
    back if the block fails, after removing what it put in their place. A file that cannot be
    moved (open in a viewer on Windows, immutable) fails the block before anything changed:
    a --force that failed halfway deleted the earlier preview's files it had got to."""
    from spdesk.core.files import output_error, shown, temp_path

    aside: list[tuple[Path, Path]] = []
    try:
        for path in paths:
            if path.is_dir() and not path.is_symlink():  # replaced: files only
                raise OutputError(f"Cannot write {shown(path)}: a folder has that name.")
            if path.exists() or path.is_symlink():
                spare = temp_path(path)
                try:
                    path.rename(spare)
                except OSError as error:
                    raise output_error(error, path) from error
                aside.append((path, spare))
        yield
    except BaseException:
        for path, spare in reversed(aside):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # the new file, if it got there
                spare.rename(path)
        raise
    for _path, spare in aside:
        with contextlib.suppress(OSError):
            spare.unlink()


def _encoded(result: PreviewResult, key: str, paths: dict[str, Path]) -> bytes:
    """The bytes of the output ``key`` of :func:`output_paths`."""
    if key == "json":
        record = result.to_json() | {"files": {k: p.name for k, p in paths.items()}}
        return json.dumps(record, indent=2, allow_nan=False).encode("utf-8")
    image = comparison_sheet(result) if key == "sheet" else Image.fromarray(getattr(result, key))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
