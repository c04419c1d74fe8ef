"""Import models the user already has: a diffusers folder, a single SD 1.5 checkpoint file, or a
TAESD weights file.

The original is never modified: what is needed is copied (or converted) into
``<store>/imported/<name>/`` and validated there by loading it, before the store offers it.

- A diffusers folder: a Stable Diffusion 1.5 (or inpainting) pipeline with ``model_index.json``
  (provides ``preview`` or ``inpaint``, and ``train``), a folder with only ``vae/`` or an
  ``AutoencoderKL`` ``config.json`` (``train``), or an ``AutoencoderTiny`` one (``taesd``).
  The safety checker is never copied.
- A single ``.safetensors`` checkpoint (the original LDM layout) is converted with diffusers'
  ``from_single_file``, using the SD 1.5 configuration files of the pinned repository (from the
  store, or fetched: a few MB).
- A single TAESD ``.safetensors`` file (``AutoencoderTiny`` layout, 8-bit float weights too) is
  saved as the ``AutoencoderTiny`` folder the store keeps for ``taesd``.
- Pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) are refused unless ``torch.load`` with
  ``weights_only=True`` reads them (plain tensors, no code); they are then rewritten as safetensors.

The manifest of an imported model records the sha256 of every file it holds, so that
``spdesk models verify`` finds changed bytes, not only missing or truncated files.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spdesk.core.errors import ModelError
from spdesk.core.files import output_error
from spdesk.core.logs import quiet_model_libraries
from spdesk.core.models.layout import (
    IMPORTED,
    MANIFEST,
    WEIGHT_PARTS,
    folder_write_error,
    read_model_manifest,
    tree_size,
    window_or_command,
    write_model_manifest,
)
from spdesk.core.models.sources import PIPELINE_PARTS, Feature
from spdesk.core.models.verify import record_digests, verify_recorded
from spdesk.core.models.weights import (
    PICKLE_SUFFIXES,
    give_new_file_modes,
    load_pickle_weights,
    os_error_of,
    save_safetensors,
)

ConfigSource = Callable[[Feature], Path]  # a folder with a feature's configuration files
LDM_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
LDM_VAE_IN = "first_stage_model.encoder.conv_in.weight"
LDM_CLIP_PREFIX = "cond_stage_model.transformer."
LDM_OPENCLIP_PREFIX = "cond_stage_model.model."
TINY_ENCODER_PREFIX = "encoder.layers."  # diffusers' AutoencoderTiny (TAESD) weights
TINY_LATENT_LAYER = "encoder.layers.14.weight"  # its last conv: latent channels first


@dataclass(frozen=True)
class ImportResult:
    """An imported model: its store folder, the features it provides, and its size."""

    name: str
    folder: Path
    provides: tuple[str, ...]
    kind: str  # "diffusers-pipeline", "diffusers-vae", "diffusers-taesd" or "single-file"
    size_bytes: int


def import_model(
    root: Path, path: Path, configs: ConfigSource, *, name: str | None = None
) -> ImportResult:
    """Validate ``path`` and install a copy under the store ``root``; ``configs`` gives the SD 1.5
    configuration files a single-file checkpoint needs. Raises ModelError with a plain reason."""
    path = path.expanduser()
    if not path.exists():
        raise ModelError(f"{path} does not exist.")
    quiet_model_libraries()  # loading each part to check it would print their bars and advice
    name = _safe_name(name or (path.stem if path.is_file() else path.name))
    final = root / IMPORTED / name
    if (final / MANIFEST).is_file():
        raise ModelError(
            f"A model named {name!r} is already imported ({final}).",
            hint="Remove it first ("
            + window_or_command("Remove", f"spdesk models remove --imported {name}")
            + "), or import it under another name (command line: --name).",
        )
    tmp = final.with_name(f".{name}.importing")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as error:  # a read-only or full models folder: named, not "unexpected"
        raise folder_write_error(error, tmp) from error
    try:
        try:
            if path.is_dir():
                kind, provides = _import_folder(path, tmp)
            else:
                kind, provides = _import_file(configs, path, tmp)
        except Exception as error:  # the copy's disk (full, read-only): named, not "unexpected"
            disk = error if isinstance(error, OSError) else os_error_of(error, tmp)
            if disk is None or not _writing_error(disk):
                raise
            raise output_error(disk, Path(disk.filename or tmp)) from error
        problems = revalidate(tmp)
        if problems:
            raise ModelError(f"{path} cannot be used: {problems[0]}")
        give_new_file_modes(tmp)
        names = [p.relative_to(tmp).as_posix() for p in sorted(tmp.rglob("*")) if p.is_file()]
        manifest = {"provides": list(provides), "kind": kind, "origin": str(path)}
        write_model_manifest(
            tmp, {**manifest, "validated": True, "files": record_digests(tmp, names)}
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportResult(name, final, tuple(provides), kind, tree_size(final))


def _writing_error(error: OSError) -> bool:
    """A failed write of the store's disk, rather than an unreadable source (that is the
    source's own error, said as such by the import)."""
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS)


def remove_imported(root: Path, name: str) -> int:
    """Delete one imported model (the files its manifest names); returns the bytes freed."""
    from spdesk.core.models.layout import delete_recorded

    folder = root / IMPORTED / _safe_name(name)
    if not (folder / MANIFEST).is_file():
        raise ModelError(f"No imported model named {name!r} in {root / IMPORTED}.")
    files = read_model_manifest(folder)["files"]
    if not files:  # imported before spdesk recorded its files: the folder is all spdesk's
        freed = tree_size(folder)
        shutil.rmtree(folder)
        return freed
    return delete_recorded(folder, [*files, MANIFEST])


def verify_imported(folder: Path) -> tuple[int, list[str]]:
    """``(files checked, problems)`` of an imported model: its recorded sha256 digests, or (for an
    import without them) whether it still loads."""
    files = read_model_manifest(folder)["files"]
    if files:
        return len(files), verify_recorded(folder, files)
    return len(list(folder.rglob("*.*"))), revalidate(folder)


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    if not cleaned:
        raise ModelError(f"{name!r} cannot be used as a model name.")
    return cleaned


# --- diffusers folders ----------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a truncated or damaged file is a ModelError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelError(f"{path} is missing.") from error
    except (OSError, ValueError) as error:
        raise ModelError(f"{path} is not valid JSON (truncated or damaged): {error}") from error
    if not isinstance(data, dict):
        raise ModelError(f"{path} does not hold a JSON object.")
    return data


def folder_kind(folder: Path) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``(kind, parts to copy, features provided)`` of a diffusers folder; ModelError if none."""
    if (folder / "model_index.json").is_file():
        index = read_json(folder / "model_index.json")
        missing = [p for p in PIPELINE_PARTS if not (folder / p).is_dir()]
        if missing:
            raise ModelError(
                f"{folder} is a diffusers pipeline without {', '.join(missing)}; "
                "spdesk needs vae, unet, text_encoder, tokenizer and scheduler."
            )
        unet = read_json(folder / "unet" / "config.json")
        inpaint = unet.get("in_channels") == 9 or "Inpaint" in str(index.get("_class_name"))
        feature = "inpaint" if inpaint else "preview"
        return "diffusers-pipeline", (*PIPELINE_PARTS, "model_index.json"), (feature, "train")
    if (folder / "vae" / "config.json").is_file():
        return "diffusers-vae", ("vae",), ("train",)
    if (folder / "config.json").is_file():
        cls = read_json(folder / "config.json").get("_class_name")
        if cls == "AutoencoderKL":
            return "diffusers-vae", ("",), ("train",)
        if cls == "AutoencoderTiny":
            return "diffusers-taesd", ("",), ("taesd",)
        raise ModelError(f"{folder} holds a {cls or 'model'} config; spdesk cannot use it.")
    raise ModelError(
        f"{folder} is not a diffusers model folder (no model_index.json, vae/ or config.json).",
        hint="Point at a Stable Diffusion 1.5 folder in diffusers layout, or at a single "
        ".safetensors checkpoint file.",
    )


def _import_folder(src: Path, dest: Path) -> tuple[str, tuple[str, ...]]:
    kind, parts, provides = folder_kind(src)
    for part in parts:
        if part == "model_index.json":
            shutil.copy2(src / part, dest / part)
            continue
        _copy_part(src / part if part else src, dest / part if part else dest)
    if kind == "diffusers-vae" and parts == ("",):  # a bare VAE: keep the vae/ layout
        (dest / "vae").mkdir()
        for item in list(dest.iterdir()):
            if item.name != "vae":
                item.replace(dest / "vae" / item.name)
    return kind, provides


def _copy_part(src: Path, dest: Path) -> None:
    """Configs, tokenizer files and one set of weights (safetensors; fp16 variant renamed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.is_file() and item.suffix in (".json", ".txt", ".model"):
            shutil.copy2(item, dest / item.name)
    weights = sorted(p for p in src.glob("*.safetensors") if p.suffixes == [".safetensors"])
    fp16 = sorted(src.glob("*.fp16.safetensors"))
    if weights or fp16:
        for item in weights or fp16:
            shutil.copy2(item, dest / item.name.replace(".fp16.safetensors", ".safetensors"))
        return
    pickles = sorted(p for p in src.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if src.name in ("tokenizer", "scheduler") or not any(src.glob("*config.json")):
        return
    if not pickles:
        raise ModelError(f"{src} has no weights (.safetensors).")
    for item in pickles:
        target = dest / (item.name.split(".")[0] + ".safetensors")
        save_safetensors(load_pickle_weights(item), target)


# --- single-file checkpoints --------------------------------------------------------------------
def checkpoint_keys(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes from a safetensors header (no weights read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own SafetensorError for bad headers
        raise ModelError(f"{path.name} is not a readable safetensors file: {error}") from error


def sd15_checkpoint_kind(keys: dict[str, list[int]], name: str) -> str:
    """``"preview"`` or ``"inpaint"`` for an SD 1.5 single-file checkpoint; ModelError if not."""
    if any(k.startswith(LDM_OPENCLIP_PREFIX) for k in keys):
        raise ModelError(f"{name} is a Stable Diffusion 2.x checkpoint; spdesk needs SD 1.5.")
    if any(k.startswith("conditioner.") for k in keys):
        raise ModelError(f"{name} is an SDXL checkpoint; spdesk needs SD 1.5.")
    has_clip = any(k.startswith(LDM_CLIP_PREFIX) for k in keys)
    if LDM_UNET_IN not in keys or LDM_VAE_IN not in keys or not has_clip:
        raise ModelError(
            f"{name} is not a complete Stable Diffusion 1.5 checkpoint "
            "(it needs the UNet, the VAE and the CLIP text encoder).",
            hint="Import a diffusers folder instead, or a full SD 1.5 .safetensors checkpoint.",
        )
    return "inpaint" if keys[LDM_UNET_IN][1] == 9 else "preview"


def _import_file(configs: ConfigSource, path: Path, dest: Path) -> tuple[str, tuple[str, ...]]:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        converted = dest.parent / f"{dest.name}.checkpoint.safetensors"
        try:
            save_safetensors(load_pickle_weights(path), converted)
            return _import_weights_file(configs, converted, dest, path.name)
        finally:
            converted.unlink(missing_ok=True)
    if suffix != ".safetensors":
        raise ModelError(
            f"{path.name}: expected a .safetensors checkpoint or a diffusers folder.",
        )
    return _import_weights_file(configs, path, dest, path.name)


def _import_weights_file(
    configs: ConfigSource, path: Path, dest: Path, label: str
) -> tuple[str, tuple[str, ...]]:
    """A TAESD weights file (the tiny autoencoder ``--encoder taesd`` uses), or an SD 1.5
    single-file checkpoint."""
    _refuse_spdesk_file(path, label)
    keys = checkpoint_keys(path)
    if any(key.startswith(TINY_ENCODER_PREFIX) for key in keys):
        return _import_tiny_autoencoder(keys, path, dest, label)
    return _import_single_file(configs, path, dest, label)


def _refuse_spdesk_file(path: Path, label: str) -> None:
    """A perturbation or generator spdesk wrote is not a model: say what it is for."""
    from safetensors import safe_open

    from spdesk.core.generator_file import made_by_spdesk

    try:
        with safe_open(str(path), framework="pt") as fh:
            kind = (fh.metadata() or {}).get("format")
    except Exception:  # not readable as safetensors: checkpoint_keys says so
        return
    said = made_by_spdesk(path, kind, label, "a model")
    if said is not None:
        message, option, damaged = said
        raise ModelError(
            message, hint=None if damaged else f"Use it with spdesk protect {option} {label}."
        )


def _import_tiny_autoencoder(
    keys: dict[str, list[int]], path: Path, dest: Path, label: str
) -> tuple[str, tuple[str, ...]]:
    """A single-file tiny autoencoder in diffusers' ``AutoencoderTiny`` layout (as
    madebyollin's TAESD files are), saved as the diffusers folder the store keeps for TAESD.

    Only the latent width can be checked: 16 channels (TAESD3, TAEF1) is refused; TAESDXL has
    SD 1.x's shapes, so its name is what gives it away."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    channels = keys.get(TINY_LATENT_LAYER, [0])[0]
    if channels != 4 or "xl" in label.lower():
        raise ModelError(
            f"{label} is a tiny autoencoder for another model's latent space "
            f"({channels} latent channels{', SDXL' if 'xl' in label.lower() else ''}); "
            "spdesk needs TAESD, the one for Stable Diffusion 1.x (4 channels).",
            hint="Import taesd.safetensors (or its 8-bit taesd_f8e4m3.safetensors).",
        )
    state = {key: value.float() for key, value in load_file(str(path)).items()}
    model: Any = AutoencoderTiny(latent_channels=4)  # type: ignore[no-untyped-call]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(
            f"{label} does not match TAESD's architecture: {str(error).splitlines()[0]}"
        ) from error
    model.save_pretrained(str(dest), safe_serialization=True)
    return "diffusers-taesd", ("taesd",)


def _import_single_file(
    configs: ConfigSource, path: Path, dest: Path, label: str
) -> tuple[str, tuple[str, ...]]:
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    feature = sd15_checkpoint_kind(checkpoint_keys(path), label)
    config_folder = configs("inpaint" if feature == "inpaint" else "preview")
    cls: Any = StableDiffusionInpaintPipeline if feature == "inpaint" else StableDiffusionPipeline
    try:
        pipe = cls.from_single_file(
            str(path),
            config=str(config_folder),
            local_files_only=True,
            torch_dtype=torch.float16,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except Exception as error:  # diffusers' conversion raises many types, its own included
        raise ModelError(
            f"{label} cannot be read as a Stable Diffusion 1.5 model: {error}"
        ) from error
    pipe.save_pretrained(str(dest), safe_serialization=True)
    for extra in ("safety_checker", "feature_extractor"):
        shutil.rmtree(dest / extra, ignore_errors=True)
    return "single-file", (feature, "train")


# --- validation ---------------------------------------------------------------------------------
def revalidate(folder: Path) -> list[str]:
    """Problems that stop an imported folder from loading (empty when it loads)."""
    quiet_model_libraries()
    try:
        _, parts, _ = folder_kind(folder)
        for config in _configs(folder):
            read_json(config)
        for part in parts:
            if part in WEIGHT_PARTS or (part == "" and not (folder / "vae").is_dir()):
                _load_part(folder / part if part else folder, part)
    except ModelError as error:
        return [error.message]
    return []


def _configs(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*.json") if p.name != MANIFEST)


def _load_part(folder: Path, part: str) -> None:
    """Load one model part on the CPU to prove its config and weights agree."""
    import torch

    try:
        if part == "text_encoder":
            from transformers import CLIPTextModel

            CLIPTextModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float16)
            return
        from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

        cls = read_json(folder / "config.json").get("_class_name")
        model_cls: Any = {
            "AutoencoderKL": AutoencoderKL,
            "AutoencoderTiny": AutoencoderTiny,
            "UNet2DConditionModel": UNet2DConditionModel,
        }.get(str(cls))
        if model_cls is None:
            raise ModelError(f"{folder}/config.json names {cls!r}, not a model spdesk uses.")
        model_cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float16)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise ModelError(f"The {part or 'model'} in {folder} does not load: {error}") from error
