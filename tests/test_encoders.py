"""Encoders: every loader path with tiny random weights, refusals, and the real TAESD round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import torch
from safetensors.torch import save_file
from tiny_sd import save_tiny_vae

from spdesk.core.encoders import load_encoder, weights_fingerprint
from spdesk.core.encoders.tiny import taef2_decoder, taef2_encoder, taesana_encoder
from spdesk.core.errors import EncoderError, ModelMissingError


def _save_state(module: torch.nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_autoencoder_kl_folder_has_posterior_and_decoder(tmp_path: Path) -> None:
    folder = save_tiny_vae(tmp_path / "sd")
    encoder = load_encoder(str(folder), "cpu")
    images = torch.rand(2, 3, 32, 32)
    dist = encoder.encode(images)
    assert encoder.has_posterior and encoder.has_decoder
    assert dist.logvar is not None and dist.logvar.shape == dist.mean.shape
    decoded = encoder.decode(dist.mean)
    assert decoded is not None and decoded.shape == images.shape
    assert float(decoded.min()) >= 0 and float(decoded.max()) <= 1
    # the vae/ folder itself works too, and identifies the same weights
    assert load_encoder(str(folder / "vae"), "cpu").fingerprint == encoder.fingerprint


def test_checkpointing_gives_the_same_gradient_by_recomputing(tmp_path: Path) -> None:
    folder = save_tiny_vae(tmp_path / "sd")
    plain = load_encoder(str(folder), "cpu")
    saving = load_encoder(str(folder), "cpu", checkpointing=True)
    forwards: list[int] = []
    # A layer inside a block (the recomputation calls the block's forward, not its hooks).
    first = cast(Any, saving).vae.encoder.down_blocks[0].resnets[0].norm1
    first.register_forward_pre_hook(lambda *_: forwards.append(1))
    images = torch.rand(2, 3, 32, 32)
    gradients = []
    for encoder in (plain, saving):
        x = images.clone().requires_grad_(True)
        encoder.encode(x).mean.pow(2).sum().backward()
        gradients.append(x.grad)
    # The block ran again during the backward pass: its activations were not kept.
    assert len(forwards) == 2
    torch.testing.assert_close(gradients[1], gradients[0])


def test_without_autocast_for_the_device_the_vae_runs_in_full_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = cast(Any, load_encoder(str(save_tiny_vae(tmp_path / "sd")), "cpu"))
    expected = encoder.encode(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))

    def unsupported(device_type: str, **_kw: object) -> None:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")

    # As on an Apple GPU with torch before 2.5 (the tensors stay on the CPU here).
    encoder.device, encoder.dtype = torch.device("mps"), torch.float16
    monkeypatch.setattr(torch, "autocast", unsupported)
    got = encoder.encode(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(got.mean, expected.mean)


def test_a_broken_autoencoder_tiny_folder_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "taesd"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "AutoencoderTiny"}')
    with pytest.raises(EncoderError, match="has no AutoencoderTiny weights"):
        load_encoder(str(folder), "cpu")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EncoderError, match="Cannot load the tiny autoencoder in") as raised:
        load_encoder(str(folder), "cpu")
    # Models shows it "verified" until its bytes are checked: the check names the fix.
    assert raised.value.hint == "Run: spdesk models verify --for taesd"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]


def test_taef2_pth_with_decoder_beside(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _save_state(taef2_encoder(), tmp_path / "taef2_encoder.pth")
    _save_state(taef2_decoder(), tmp_path / "taef2_decoder.safetensors")
    encoder = load_encoder(str(tmp_path / "taef2_encoder.pth"), "cpu")
    assert encoder.id == "taef2" and encoder.has_decoder and not encoder.has_posterior
    dist = encoder.encode(torch.rand(1, 3, 32, 32))
    assert dist.mean.shape == (1, 32, 4, 4) and dist.logvar is None
    decoded = encoder.decode(dist.mean)
    assert decoded is not None and decoded.shape == (1, 3, 32, 32)


def test_taesana_safetensors_without_decoder(tmp_path: Path) -> None:
    path = _save_state(taesana_encoder(), tmp_path / "taesana_encoder.safetensors")
    encoder = load_encoder(str(path), "cpu")
    assert encoder.id == "taesana" and not encoder.has_decoder
    assert encoder.encode(torch.rand(1, 3, 64, 64)).mean.shape == (1, 32, 2, 2)
    assert encoder.decode(torch.zeros(1, 32, 2, 2)) is None


def test_autoencoder_tiny_file_and_gradient(tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    path = _save_state(AutoencoderTiny(), tmp_path / "taesd_tiny.safetensors")
    encoder = load_encoder(str(path), "cpu")
    assert encoder.id == "taesd" and encoder.has_decoder
    images = torch.rand(1, 3, 16, 16, requires_grad=True)
    encoder.encode(images).mean.pow(2).sum().backward()
    assert images.grad is not None and float(images.grad.abs().sum()) > 0


def test_ensemble_of_two(tmp_path: Path) -> None:
    sana = _save_state(taesana_encoder(), tmp_path / "taesana_encoder.safetensors")
    folder = save_tiny_vae(tmp_path / "sd")
    ensemble = load_encoder(f"{folder}, {sana}", "cpu")
    assert len(ensemble.members) == 2
    assert ensemble.id.endswith("+taesana")
    assert not ensemble.has_posterior  # one member is deterministic


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not found"):
        load_encoder(str(tmp_path / "missing.pth"), "cpu")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EncoderError, match=r"\.safetensors or \.pth"):
        load_encoder(str(tmp_path / "notes.txt"), "cpu")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"17.weight": torch.zeros(32, 64, 3, 3)}, str(wrong))
    with pytest.raises(EncoderError, match="does not match"):
        load_encoder(str(wrong), "cpu")
    torch.save({"epoch": 3}, tmp_path / "not_weights.pth")
    with pytest.raises(EncoderError, match="plain state dict"):
        load_encoder(str(tmp_path / "not_weights.pth"), "cpu")
    torch.save(Path("x"), tmp_path / "object.pth")  # arbitrary pickled object: refused
    with pytest.raises(EncoderError, match="not a plain file of tensors"):
        load_encoder(str(tmp_path / "object.pth"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="not a diffusers model folder"):
        load_encoder(str(tmp_path / "empty"), "cpu")
    with pytest.raises(EncoderError, match="No encoder"):
        load_encoder(" , ", "cpu")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (
            "model.pth",
            "model.pth is not a plain file of tensors; spdesk never unpickles other objects",
        ),
        ("photo.safetensors", "photo.safetensors is not a safetensors file"),
    ],
)
def test_a_pickle_or_another_file_given_as_an_encoder_gets_one_plain_line(
    tmp_path: Path, name: str, says: str
) -> None:
    """torch.load's own error came through: several lines, terminal escapes, and the advice to
    load the pickle with weights_only=False; safetensors' "header too large" for a JPEG."""
    path = tmp_path / name
    if name.endswith(".pth"):
        torch.save({"model": Path("x")}, path)  # a pickled object among the tensors' places
    else:
        path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(2000))  # a renamed JPEG
    for load in (lambda: load_encoder(str(path), "cpu"), lambda: weights_fingerprint(str(path))):
        with pytest.raises(EncoderError) as refused:
            load()
        text = refused.value.user_text()
        assert says in text
        assert "weights_only" not in text and "\x1b" not in text and "header too" not in text
        assert len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize(("name", "feature"), [("sd15", "train"), ("taesd", "taesd")])
def test_store_encoder_without_model_names_the_download_command(name: str, feature: str) -> None:
    with pytest.raises(ModelMissingError) as caught:
        load_encoder(name, "cpu")
    assert f"spdesk models download --for {feature}" in caught.value.user_text()


@pytest.mark.shared
def test_real_taesd_round_trip(taesd_path: Path) -> None:
    encoder = load_encoder(str(taesd_path), "cpu")
    ramp = torch.linspace(0.2, 0.8, 64)
    images = torch.stack(
        [
            ramp[None, :].expand(64, 64),
            ramp[:, None].expand(64, 64),
            0.5 + 0 * ramp[:, None].expand(64, 64),
        ]
    )[None]
    with torch.no_grad():
        latent = encoder.encode(images).mean
        decoded = encoder.decode(latent)
    assert latent.shape == (1, 4, 8, 8)
    assert decoded is not None and float((decoded - images).abs().mean()) < 0.05


def test_a_loaded_encoders_weights_are_not_hashed_again_for_its_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job keys its settings by the weights its encoder was just loaded from: asking again
    costs no second read of the files (SD 1.5's VAE is 335 MB), until they change."""
    import hashlib

    import spdesk.core.encoders.base as base
    from spdesk.core.encoders import weights_fingerprint

    folder = save_tiny_vae(tmp_path / "sd")
    encoder = load_encoder(str(folder), "cpu")
    hashed: list[int] = []
    sha256 = hashlib.sha256

    def counted(*args: bytes) -> Any:
        hashed.append(1)
        return sha256(*args)

    monkeypatch.setattr(base.hashlib, "sha256", counted)
    assert weights_fingerprint(str(folder)) == encoder.fingerprint
    assert weights_fingerprint(str(folder / "vae")) == encoder.fingerprint
    assert not hashed
    save_tiny_vae(tmp_path / "sd", seed=1)
    assert weights_fingerprint(str(folder)) != encoder.fingerprint and hashed


def test_an_ensembles_and_a_taef2_files_fingerprint_are_the_loaded_encoders(
    tmp_path: Path,
) -> None:
    from spdesk.core.encoders import weights_fingerprint

    _save_state(taef2_encoder(), tmp_path / "taef2_encoder.pth")
    _save_state(taef2_decoder(), tmp_path / "taef2_decoder.safetensors")
    sana = _save_state(taesana_encoder(), tmp_path / "taesana_encoder.safetensors")
    spec = f"{tmp_path / 'taef2_encoder.pth'}, {sana}"
    assert weights_fingerprint(spec) == load_encoder(spec, "cpu").fingerprint


def test_spdesks_own_pattern_and_generator_files_are_named_when_given_as_encoder(
    tmp_path: Path, generator_file: Path
) -> None:
    from tests.protect_samples import perturbation_file

    pattern = perturbation_file(tmp_path)
    for path, what, option in (
        (pattern, "a universal perturbation", "--perturbation"),
        (generator_file, "a protection generator", "--generator"),
    ):
        with pytest.raises(EncoderError) as caught:
            load_encoder(str(path), "cpu")
        said = caught.value.user_text()
        assert f"{path.name} is {what} made by spdesk, not an encoder" in said
        assert option in said and "TAESD" in said and "sd15" in said


def test_a_damaged_pattern_or_generator_given_as_encoder_is_not_sent_to_its_option(
    tmp_path: Path, generator_file: Path
) -> None:
    """--perturbation and --generator refuse these files too: naming them there sent the user
    from one refusal to the next."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file as save_numpy

    from tests.protect_samples import perturbation_file

    for source, what, option in (
        (perturbation_file(tmp_path), "universal perturbation", "--perturbation"),
        (generator_file, "protection generator", "--generator"),
    ):
        with safe_open(str(source), framework="numpy") as handle:
            meta, names = handle.metadata(), handle.keys()  # the handle is not iterable
            tensors = {key: np.full_like(handle.get_tensor(key), np.nan) for key in names}
        damaged = tmp_path / f"damaged-{source.name}"
        save_numpy(tensors, str(damaged), metadata=meta)
        with pytest.raises(EncoderError) as caught:
            load_encoder(str(damaged), "cpu")
        said = caught.value.user_text()
        assert f"{damaged.name} is a damaged {what} made by spdesk, not an encoder" in said
        assert option not in said and "sd15" in said


def test_an_unknown_state_dict_says_what_encoder_accepts(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(EncoderError) as caught:
        load_encoder(str(other), "cpu")
    said = caught.value.user_text()
    assert "other.safetensors is not an encoder spdesk knows" in said
    for accepted in ("taesd", "sd15", "diffusers VAE folder", "TAESD, TAEF2 or TAESana"):
        assert accepted in said


@pytest.mark.parametrize(
    ("name", "channels", "said"),
    [
        ("taesdxl_encoder.safetensors", 4, "4 latent channels, SDXL"),
        ("taesd3.safetensors", 16, "16"),
    ],
)
def test_a_tiny_autoencoder_for_another_latent_space_is_refused_as_the_import_does(
    tmp_path: Path, name: str, channels: int, said: str
) -> None:
    from diffusers import AutoencoderTiny

    path = _save_state(AutoencoderTiny(latent_channels=channels), tmp_path / name)
    with pytest.raises(EncoderError) as caught:
        load_encoder(str(path), "cpu")
    text = caught.value.user_text()
    assert f"{name} is a tiny autoencoder for another model's latent space ({said}" in text
    assert "TAESD, the one for Stable Diffusion 1.x" in text


def test_a_vae_folder_that_does_not_load_says_how_to_check_it(tmp_path: Path) -> None:
    """A hand-damaged config.json failed with "is not a valid JSON file" and no advice (the
    store's status said "verified": it does not read the bytes; CLI audit)."""
    folder = save_tiny_vae(tmp_path / "sd")
    config = next(folder.rglob("config.json"))
    config.write_text("{ damaged")
    with pytest.raises(EncoderError, match="Cannot load the VAE in") as raised:
        load_encoder(str(folder), "cpu")
    assert raised.value.hint == "Run: spdesk models verify --for train"
