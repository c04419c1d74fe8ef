"""Importing models users already have: diffusers folders, single-file checkpoints, pickles.

The single-file checkpoint is made here from the tiny diffusers components: their weights are
renamed to the original (LDM) layout that ``.safetensors`` checkpoints of SD 1.5 use, so that
diffusers' ``from_single_file`` runs its real conversion on them. The renaming is checked by
requiring that the imported model holds exactly the original weights.
"""

from __future__ import annotations

import json
import pickle
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hub_server import HubServer, tiny_sd_repo_files
from safetensors.torch import load_file, save_file
from tiny_sd import save_tiny_sd, save_tiny_taesd, save_tiny_vae, tiny_vae

from spdesk.core.errors import Cancelled, ModelError
from spdesk.core.events import CancelToken, Event
from spdesk.core.models import sources
from spdesk.core.models.events import DownloadListing, HubRetrying
from spdesk.core.models.settings import StoreSettings
from spdesk.core.models.store import ModelStore


# --- a single-file checkpoint from diffusers components ---------------------------------------
def _resnet_unet(rest: str) -> str:
    for new, old in (
        ("in_layers.0", "norm1"),
        ("in_layers.2", "conv1"),
        ("out_layers.0", "norm2"),
        ("out_layers.3", "conv2"),
        ("emb_layers.1", "time_emb_proj"),
        ("skip_connection", "conv_shortcut"),
    ):
        rest = rest.replace(old, new)
    return rest


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    per = config["layers_per_block"] + 1  # LDM blocks per diffusers block (resnets + sampler)
    has_attention = {
        int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k
    }
    out = {}
    for key, value in state.items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + b * per + j
            new = f"input_blocks.{index}.0.{_resnet_unet(rest)}"
            if kind == "attentions":
                new = f"input_blocks.{index}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_unet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = b * per + j
            new = f"output_blocks.{index}.0.{_resnet_unet(rest)}"
            if kind == "attentions":
                new = f"output_blocks.{index}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            slot = 2 if b in has_attention else 1
            new = f"output_blocks.{b * per + per - 1}.{slot}.conv.{m[2]}"
        else:
            raise AssertionError(f"unmapped UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n = len(config["up_block_types"])
    attention = {
        "group_norm": "norm",
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "to_out.0": "proj_out",
    }
    out = {}
    for key, value in state.items():
        if key in fixed:
            new = fixed[key]
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(\w+)$", key):
            new = f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.{m[2]}"
        else:
            raise AssertionError(f"unmapped VAE key {key}")
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def write_single_file(pipeline_dir: Path, target: Path) -> Path:
    """The tiny pipeline as one LDM-layout ``.safetensors`` checkpoint."""
    state: dict[str, Any] = {}
    for part, convert in (("unet", unet_to_ldm), ("vae", vae_to_ldm)):
        config = json.loads((pipeline_dir / part / "config.json").read_text())
        weights = load_file(str(pipeline_dir / part / "diffusion_pytorch_model.safetensors"))
        state.update(convert(weights, config))
    clip = load_file(str(pipeline_dir / "text_encoder" / "model.safetensors"))
    prefix = "cond_stage_model.transformer.text_model."  # transformers 5 saves without text_model.
    state.update({prefix + k.removeprefix("text_model."): v for k, v in clip.items()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target


# --- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd15", fp16_variant=True)
    (folder / "safety_checker").mkdir()
    (folder / "safety_checker" / "config.json").write_text("{}")
    return folder


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_repo(sources.SD15_REPO, sources.SD15_REVISION, tiny_sd_repo_files())
        yield server


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


# --- diffusers folders ----------------------------------------------------------------------
def test_import_a_diffusers_pipeline_folder(
    pipeline_dir: Path, originals_guard: list[Path]
) -> None:
    originals_guard.append(pipeline_dir)
    store = ModelStore()
    result = store.import_path(pipeline_dir)
    assert (result.name, result.kind, result.provides) == (
        "sd15",
        "diffusers-pipeline",
        ("preview", "train"),
    )
    assert store.require("preview") == result.folder == store.require("train")
    assert not (result.folder / "safety_checker").exists()
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert same_weights(result.folder / unet, pipeline_dir / unet)  # the fp32 weights kept
    status = {s.feature: s for s in store.status()}
    assert status["preview"].origin == "imported" and status["preview"].verified
    assert store.verify("preview").ok

    from spdesk.core.models import loading

    assert loading.load_pipeline_from(store.require("preview")).unet is not None


def test_import_an_inpainting_folder_and_a_bare_vae(tmp_path: Path) -> None:
    inpaint = save_tiny_sd(tmp_path / "inpaint", inpaint=True)
    store = ModelStore()
    assert store.import_path(inpaint).provides == ("inpaint", "train")
    vae_only = tmp_path / "vae-root"
    tiny_vae().save_pretrained(vae_only, safe_serialization=True)  # config.json at the root
    result = store.import_path(vae_only, name="my vae")
    assert (result.name, result.provides) == ("my-vae", ("train",))
    assert (result.folder / "vae" / "config.json").is_file()


def test_pickle_weights_are_converted_when_weights_only_loads_them(tmp_path: Path) -> None:
    folder = save_tiny_vae(tmp_path / "bin-vae")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "vae" / "diffusion_pytorch_model.bin")
    original = load_file(str(weights))
    weights.unlink()
    result = ModelStore().import_path(folder)
    converted = load_file(str(result.folder / "vae" / "diffusion_pytorch_model.safetensors"))
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[k], original[k]) for k in original)
    assert not list(result.folder.rglob("*.bin"))


class NotJustTensors:
    """A pickled object: loading it needs code, which weights_only=True refuses."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this would run on load",))


def test_pickles_that_need_code_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "model.ckpt"
    with checkpoint.open("wb") as fh:
        pickle.dump({"state_dict": NotJustTensors()}, fh)
    with pytest.raises(ModelError, match="would run code to load; spdesk refuses it"):
        ModelStore().import_path(checkpoint)
    assert "this would run on load" not in capsys.readouterr().out  # no code ran
    assert not (ModelStore().root / "imported" / "model").exists()


def test_a_truncated_config_is_named_and_nothing_is_installed(
    pipeline_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(pipeline_dir, broken)
    (broken / "unet" / "config.json").write_text('{"_class_name": "UNet2DCondi')
    with pytest.raises(ModelError) as caught:
        ModelStore().import_path(broken)
    assert str(broken / "unet" / "config.json") in caught.value.message
    assert "is not valid JSON (truncated or damaged)" in caught.value.message
    imported = ModelStore().root / "imported"
    assert not imported.exists() or not any(imported.iterdir())


def test_folders_and_files_that_are_not_models(tmp_path: Path) -> None:
    store = ModelStore()
    with pytest.raises(ModelError, match="is not a diffusers model folder"):
        store.import_path(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        store.import_path(tmp_path / "missing.safetensors")
    random = tmp_path / "random.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(random))
    with pytest.raises(ModelError, match=r"is not a complete Stable Diffusion 1\.5 checkpoint"):
        store.import_path(random)
    sd2 = tmp_path / "sd2.safetensors"
    save_file({"cond_stage_model.model.ln_final.weight": torch.zeros(2)}, str(sd2))
    with pytest.raises(ModelError, match=r"is a Stable Diffusion 2\.x checkpoint"):
        store.import_path(sd2)
    not_safetensors = tmp_path / "garbage.safetensors"
    not_safetensors.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="is not a readable safetensors file"):
        store.import_path(not_safetensors)
    weights_only_pickle = tmp_path / "tensors.pt"
    torch.save({"weight": torch.zeros(2)}, weights_only_pickle)
    with pytest.raises(ModelError, match=r"is not a complete Stable Diffusion 1\.5 checkpoint"):
        store.import_path(weights_only_pickle)


# --- single-file checkpoints ---------------------------------------------------------------------
def test_import_a_single_file_checkpoint(
    pipeline_dir: Path, tmp_path: Path, hub: HubServer, originals_guard: list[Path]
) -> None:
    source = tmp_path / "ckpt"
    source.mkdir()
    checkpoint = write_single_file(pipeline_dir, source / "my-sd15.safetensors")
    originals_guard.append(source)
    store = ModelStore(settings=StoreSettings(endpoint=hub.url))
    result = store.import_path(checkpoint)
    assert (result.name, result.kind, result.provides) == (
        "my-sd15",
        "single-file",
        ("preview", "train"),
    )
    # Only the configuration files came from the hub (for from_single_file's config).
    assert hub.served and all(not p.endswith(".safetensors") for p in hub.served)
    for part, name in (
        ("unet", "diffusion_pytorch_model.safetensors"),
        ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors"),
    ):
        imported = load_file(str(result.folder / part / name))
        original = load_file(str(pipeline_dir / part / name))
        assert imported.keys() == original.keys(), part
        for key, value in original.items():  # fp16 on disk after conversion
            assert torch.allclose(imported[key].float(), value.float(), atol=1e-3), (part, key)
    assert store.require("preview") == result.folder
    assert store.verify("preview").ok


def test_a_single_files_configs_fetched_from_a_failing_hub_are_told_and_a_cancel_ends_it(
    pipeline_dir: Path, tmp_path: Path, hub: HubServer
) -> None:
    """The import fetched its configs from the hub without a word, and could not be stopped:
    a failing hub held it some 25 s."""
    checkpoint = write_single_file(pipeline_dir, tmp_path / "my-sd15.safetensors")
    store = ModelStore(settings=StoreSettings(endpoint=hub.url))
    hub.fail_listing(500)
    cancel = CancelToken()
    told: list[Event] = []
    cancelled_at: list[float] = []

    def cancel_at_the_first_retry(event: Event) -> None:
        told.append(event)
        if isinstance(event, HubRetrying):
            cancelled_at.append(time.monotonic())
            cancel.cancel()

    with pytest.raises(Cancelled, match=r"Import cancelled.*nothing was imported"):
        store.import_path(checkpoint, on_event=cancel_at_the_first_retry, cancel=cancel)
    assert time.monotonic() - cancelled_at[0] < 2
    assert isinstance(told[0], DownloadListing) and told[0].endpoint == hub.url
    assert [e.reason for e in told if isinstance(e, HubRetrying)] == ["it answered with error 500"]
    assert not (store.root / "imported" / "my-sd15").exists()


# --- TAESD weights files -------------------------------------------------------------------------
def test_a_taesd_weights_file_is_imported_as_the_taesd_model(
    tmp_path: Path, originals_guard: list[Path]
) -> None:
    """What the ``--encoder taesd`` hint offers (spdesk models import PATH) works for the file
    TAESD ships as; a tiny autoencoder of another latent space is refused by name."""
    from spdesk.core.encoders import load_encoder

    source = tmp_path / "weights"
    source.mkdir()
    taesd = save_tiny_taesd(source / "taesd.safetensors", 4)
    other = save_tiny_taesd(source / "taesd3.safetensors", 16)
    xl = taesd.with_name("taesdxl.safetensors")
    xl.write_bytes(taesd.read_bytes())
    originals_guard.append(source)
    store = ModelStore()
    result = store.import_path(taesd)
    assert (result.kind, result.provides) == ("diffusers-taesd", ("taesd",))
    assert store.require("taesd") == result.folder and store.verify("taesd").ok
    encoder = load_encoder("taesd", "cpu")
    assert encoder.encode(torch.rand(1, 3, 64, 64)).mean.shape == (1, 4, 8, 8)
    with pytest.raises(ModelError, match="another model's latent space"):
        store.import_path(other)
    with pytest.raises(ModelError, match="SDXL"):
        store.import_path(xl)


def _damage(weights: Path) -> bytes:
    """Change one bit in the middle of ``weights`` (same size); returns the sound bytes."""
    sound = weights.read_bytes()
    data = bytearray(sound)
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    return sound


def test_an_import_verify_finds_damaged_is_kept_and_no_longer_used_or_called_verified(
    tmp_path: Path,
) -> None:
    taesd = save_tiny_taesd(tmp_path / "taesd.safetensors", 4)
    store = ModelStore()
    folder = store.import_path(taesd).folder
    weights = folder / "diffusion_pytorch_model.safetensors"
    sound = _damage(weights)
    assert not store.verify("taesd").ok
    status = store.status_of("taesd")
    assert status.present and status.origin == "imported" and not status.verified
    # The store cannot fetch an import again by itself: the copy stays, for the user to decide.
    assert weights.is_file()
    assert status.repair == (
        f"spdesk models remove --imported taesd, then spdesk models import {taesd}"
    )
    with pytest.raises(ModelError, match="damaged") as raised:
        store.require("taesd")
    assert "spdesk models import" in (raised.value.hint or "")
    weights.write_bytes(sound)  # put back as it was: verified again, and used
    assert store.verify("taesd").ok
    assert store.status_of("taesd").verified and not store.status_of("taesd").repair
    assert store.require("taesd") == folder


def test_a_full_disk_during_an_import_is_named_and_leaves_nothing_half_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying a folder (shutil) and saving a converted model (safetensors, whose writer
    raises its own error type for a full disk) were "unexpected errors"."""
    import errno

    from safetensors import SafetensorError

    from spdesk.core.errors import DiskFullError
    from spdesk.core.models import importing

    store = ModelStore()
    folder = save_tiny_vae(tmp_path / "vae-folder")

    def copy_onto_a_full_disk(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    def save_onto_a_full_disk(*args: Any, **kwargs: Any) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")  # fmt: skip

    taesd = save_tiny_taesd(tmp_path / "taesd.safetensors", 4)
    for source, target, full in (
        (folder, "spdesk.core.models.importing.shutil.copy2", copy_onto_a_full_disk),
        (taesd, "safetensors.torch.save_file", save_onto_a_full_disk),
    ):
        with monkeypatch.context() as patched:
            patched.setattr(target, full)
            with pytest.raises(DiskFullError, match="The disk is full"):
                store.import_path(source)
        imported = store.root / importing.IMPORTED
        assert not list(imported.iterdir()) if imported.exists() else True, source
    assert store.import_path(taesd).provides == ("taesd",)  # space freed: it imports


def test_imported_weights_get_the_permissions_of_the_stores_other_files(tmp_path: Path) -> None:
    """safetensors' writer (a TAESD file saved as a diffusers folder) made them 0600, and a
    copied folder kept its source's modes, where every other store file is 0644 (the umask)."""
    import os
    import stat

    folder = save_tiny_vae(tmp_path / "vae-folder")
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    store = ModelStore()
    results = [
        store.import_path(save_tiny_taesd(tmp_path / "taesd.safetensors", 4)),
        store.import_path(folder),
    ]
    umask = os.umask(0)
    os.umask(umask)
    for result in results:
        modes = {
            p.relative_to(result.folder).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in result.folder.rglob("*")
            if p.is_file()
        }
        assert set(modes.values()) == {0o666 & ~umask}, modes


def test_a_read_only_models_folder_is_named_when_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating the import's folder was an "unexpected error … This is a bug"."""
    import errno

    from spdesk.core.errors import ReadOnlyDiskError

    store = ModelStore()
    vae = save_tiny_vae(tmp_path / "my-vae")
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.is_relative_to(store.root):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ReadOnlyDiskError, match="read-only") as caught:
        store.import_path(vae)
    assert "spdesk models move" in (caught.value.hint or "")
