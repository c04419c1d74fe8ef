"""Photo-specific protection: the install key, the protector on any size, and a whole job."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from spdesk.core.errors import ConfigError, PerturbationFileError
from spdesk.core.generator import GeneratorConfig
from spdesk.core.jobs import ProtectJob, ProtectSettings
from spdesk.core.jobs.fingerprint import output_fingerprint
from spdesk.core.keys import (
    ENV_KEY,
    install_key,
    key_id,
    key_made_here,
    key_made_text,
    key_path,
    photo_seed,
)
from spdesk.core.photo_protect import GeneratorProtector

KEY_A, KEY_B = b"a" * 32, b"b" * 32


def _photo(height: int, width: int, seed: int = 0, grey: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(20, 235, (height, width, 1 if grey else 3), dtype=np.uint8)
    return Image.fromarray(np.repeat(pixels, 3, axis=2) if grey else pixels, mode="RGB")


def test_install_key_is_made_once_private_and_stable() -> None:
    first = install_key()
    assert len(first) == 32 and install_key() == first
    if os.name == "posix":
        assert stat.S_IMODE(key_path().stat().st_mode) == 0o600
    assert first.hex() not in key_id(first) and len(key_id(first)) == 16


def test_the_key_a_first_run_makes_is_known_so_that_the_user_can_be_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KEY, "ab" * 32)
    install_key()
    assert key_made_here() is None  # from the environment: no file made
    monkeypatch.delenv(ENV_KEY)
    install_key()
    assert key_made_here() == key_path()
    assert str(key_path()) in key_made_text(key_path()) and "Back up" in key_made_text(key_path())


def test_a_key_that_was_there_before_is_not_reported_as_made() -> None:
    key_path().parent.mkdir(parents=True)
    key_path().write_bytes(b"k" * 32)
    assert install_key() == b"k" * 32 and key_made_here() is None


def test_a_key_write_that_fails_is_named_and_leaves_no_damaged_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It left an empty protection.key behind (and an "unexpected error"): every later run then
    # refused to start until the user deleted it by hand.
    import errno

    from spdesk.core.errors import DiskFullError

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", full)
        with pytest.raises(DiskFullError, match="The disk is full") as info:
            install_key()
    assert "secret key" in (info.value.hint or "")
    assert not key_path().exists()
    assert [p.name for p in key_path().parent.iterdir() if "protection" in p.name] == []
    assert len(install_key()) == 32  # space freed: made as on a first run


def test_a_config_folder_that_cannot_hold_the_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import keys
    from spdesk.core.errors import OutputError

    not_a_folder = tmp_path / "config"
    not_a_folder.write_text("a file where the config folder should be")
    monkeypatch.setattr(keys, "key_path", lambda: not_a_folder / "spdesk" / "protection.key")
    with pytest.raises(OutputError, match="Cannot read the protection key") as info:
        install_key()  # it was an "unexpected error (NotADirectoryError...)"
    assert "SPDESK_PROTECTION_KEY" in (info.value.hint or "")


def test_a_key_that_cannot_be_read_gets_a_hint_about_its_owner_and_permissions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It got the write hint ("free some space there..."), which cannot help."""
    import errno

    from spdesk.core.errors import OutputError

    key = install_key()
    real_read = Path.read_bytes

    def refused(path: Path) -> bytes:
        if path == key_path():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(OutputError, match="Cannot read the protection key") as info:
        install_key()
    hint = info.value.hint or ""
    assert "free some space" not in hint
    assert "owner" in hint and "permission" in hint and ENV_KEY in hint
    monkeypatch.setattr(Path, "read_bytes", real_read)
    assert install_key() == key  # the key itself was left as it was


def test_a_folder_at_the_key_path_is_named_and_moving_it_away_is_suggested() -> None:
    # It said "Cannot read ... Is a directory" and suggested freeing some space.
    key_path().mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"protection\.key is a folder") as info:
        install_key()
    hint = info.value.hint or ""
    assert "Move" in hint and "space" not in hint


@pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")
def test_a_broken_link_at_the_key_path_is_named_and_moving_it_away_is_suggested(
    tmp_path: Path,
) -> None:
    # It said "Could not write ... No such file or directory".
    key_path().parent.mkdir(parents=True)
    key_path().symlink_to(tmp_path / "gone.key")
    with pytest.raises(ConfigError, match=r"protection\.key is a link to .*gone\.key") as info:
        install_key()
    hint = info.value.hint or ""
    assert "Move" in hint and "space" not in hint


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_key_others_can_read_is_made_private_when_read() -> None:
    key = install_key()
    key_path().chmod(0o644)  # restored from a backup
    assert install_key() == key
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600


def test_a_key_file_holding_the_hex_digits_is_read_as_that_key_not_called_damaged() -> None:
    """The environment variable's form (64 hex digits) put in the file, as from a note: it
    was "damaged (65 bytes)", and a damaged key means photos protected again as new copies."""
    key = bytes(range(32))
    key_path().parent.mkdir(parents=True, exist_ok=True)
    key_path().write_text(key.hex().upper() + "\n")
    assert install_key() == key
    key_path().write_text("zz" * 32)  # not hex: damaged, named as such
    with pytest.raises(ConfigError, match="is damaged"):
        install_key()


def test_processes_starting_together_all_get_the_one_key_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    fdopen = os.fdopen

    def slow_disk(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # the key's file exists, its bytes are not written yet
        return fdopen(*args, **kwargs)

    monkeypatch.setattr(os, "fdopen", slow_disk)
    assert not key_path().exists()
    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: install_key(), range(64)))
    assert keys == {key_path().read_bytes()}  # never a half-written key read, never two keys


def test_a_new_key_removes_the_copies_killed_processes_left_not_one_being_written() -> None:
    # A process killed between writing its temporary key file and removing it left a hidden
    # copy of the key; deleting protection.key to start a new key kept the old one on disk.
    import time

    old_key = install_key()
    folder = key_path().parent
    killed = folder / ".protection.key.4242.deadbeef"
    os.link(key_path(), killed)  # killed after linking: a second name for the key
    an_hour_ago = time.time() - 3600
    os.utime(killed, (an_hour_ago, an_hour_ago))
    starting = folder / ".protection.key.4343.cafef00d"  # another process, writing just now
    starting.write_bytes(b"x" * 32)
    key_path().unlink()

    new_key = install_key()
    assert new_key != old_key and not killed.exists() and starting.exists()
    assert all(old_key not in p.read_bytes() for p in folder.iterdir() if p.is_file())


def test_key_from_the_environment_and_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "ab" * 32)
    assert install_key() == bytes.fromhex("ab" * 32)
    monkeypatch.setenv(ENV_KEY, "not hex")
    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        install_key()


def test_seed_depends_on_key_pixels_and_purpose() -> None:
    pixels = np.zeros((4, 4, 3), np.uint8)
    other = pixels.copy()
    other[0, 0, 0] = 1
    seeds = {
        photo_seed(KEY_A, pixels), photo_seed(KEY_B, pixels),
        photo_seed(KEY_A, other), photo_seed(KEY_A, pixels, "other use"),
    }  # fmt: skip
    assert len(seeds) == 4 and photo_seed(KEY_A, pixels) == photo_seed(KEY_A, pixels.copy())


@pytest.mark.parametrize("size", [(40, 56), (700, 530), (3, 5)])
def test_protector_keeps_size_and_bound(generator_file: Path, size: tuple[int, int]) -> None:
    photo = _photo(*size)
    protected, (psnr, largest) = GeneratorProtector(generator_file, key=KEY_A).apply(photo)
    assert protected.size == photo.size and protected.mode == "RGB"
    change = np.abs(np.asarray(protected, int) - np.asarray(photo, int))
    assert change.max() <= 8 and change.max() == largest and psnr is not None


def test_same_key_same_bytes_other_key_other_bytes(generator_file: Path) -> None:
    photo = _photo(64, 48)
    a = np.asarray(GeneratorProtector(generator_file, key=KEY_A).apply(photo)[0])
    again = np.asarray(GeneratorProtector(generator_file, key=KEY_A).apply(photo)[0])
    b = np.asarray(GeneratorProtector(generator_file, key=KEY_B).apply(photo)[0])
    assert np.array_equal(a, again) and not np.array_equal(a, b)


def test_grey_photos_stay_grey(generator_file: Path) -> None:
    protected = np.asarray(GeneratorProtector(generator_file, key=KEY_A).apply(
        _photo(48, 64, grey=True))[0])  # fmt: skip
    assert np.array_equal(protected[..., 0], protected[..., 1])
    assert np.array_equal(protected[..., 1], protected[..., 2])


def test_grey_files_are_protected_and_written_grey(
    tmp_path: Path, generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    grey = np.asarray(_photo(40, 56, grey=True))[..., 0]
    Image.fromarray(grey).save(inputs / "grey.png")
    Image.fromarray(grey).save(inputs / "grey.jpg", quality=95)
    Image.fromarray(grey.astype(np.uint16) * 257).save(inputs / "deep.png")  # 16-bit
    alpha = np.full_like(grey, 255)
    alpha[:, :10] = 0
    Image.fromarray(np.stack([grey, alpha], -1), "LA").save(inputs / "cutout.png")
    monkeypatch.setenv(ENV_KEY, KEY_A.hex())
    photo = ProtectJob([inputs], tmp_path / "out", ProtectSettings(mode="photo",
        generator=generator_file)).run()  # fmt: skip
    modes = {}
    for done in photo.done:
        with Image.open(done.output) as output:
            modes[done.source.name] = output.mode
            values = np.asarray(output, np.int64)
        original = np.asarray(Image.open(done.source), np.int64)
        if done.source.name == "deep.png":
            original = np.round(original / 257)
        if values.ndim == 3:  # LA: the grey channel
            values, original = values[..., 0], original[..., 0]
        change = np.abs(values - original)
        assert 0 < change.max() <= 8 + (done.source.suffix == ".jpg") * 4, done.source.name
        assert not any("colour" in note for note in done.notes), done.notes
    assert modes == {"grey.png": "L", "grey.jpg": "L", "deep.png": "L", "cutout.png": "LA"}
    # The universal pattern lays only its luminance on grey photos: grey too.
    universal = ProtectJob([inputs / "grey.png"], tmp_path / "u", ProtectSettings()).run()
    (done,) = universal.done
    assert Image.open(done.output).mode == "L" and not done.notes


def test_a_job_in_photo_mode_protects_and_a_new_key_redoes(
    tmp_path: Path, generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        _photo(60 + index, 80, seed=index).save(inputs / f"p{index}.png")
    settings = ProtectSettings(mode="photo", generator=generator_file, workers=2)
    monkeypatch.setenv(ENV_KEY, KEY_A.hex())
    report = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert len(report.done) == 3 and not report.failed
    for done in report.done:
        original = np.asarray(Image.open(done.source), int)
        protected = np.asarray(Image.open(done.output), int)
        assert 0 < np.abs(protected - original).max() <= 8
    again = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert not again.done  # same key, same settings: nothing to redo
    with_key_a = output_fingerprint(settings, "x")
    monkeypatch.setenv(ENV_KEY, KEY_B.hex())
    assert output_fingerprint(settings, "x") != with_key_a  # another key: other bytes, redo
    # ...and the run says why it redoes them: a lost key must not pass unnoticed.
    redone = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert len(redone.done) == 3
    (said,) = [w for w in redone.warnings if "another protection key" in w]
    assert said.startswith("3 copies in this folder were made with another protection key")
    assert not any("protection key" in w for w in again.warnings)  # the same key: not said


def test_a_generator_going_bad_mid_job_stops_it_naming_the_file(
    tmp_path: Path, generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invalid values from the generator are the file's fault, not the photo's: the job stops
    with the file's error (not an "unexpected error" for each photo), the rest left pending."""
    from spdesk.core import photo_protect

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        _photo(60 + index, 80, seed=index).save(inputs / f"p{index}.png")  # one batch each
    real = photo_protect.finite_raw
    calls = {"n": 0}

    def bad_on_the_second_photo(*args: Any) -> torch.Tensor:
        calls["n"] += 1  # the first call is the check made when the file is loaded
        if calls["n"] == 3:
            raise PerturbationFileError("g.safetensors produced invalid values: it is damaged.")
        return real(*args)

    monkeypatch.setattr(photo_protect, "finite_raw", bad_on_the_second_photo)
    settings = ProtectSettings(mode="photo", generator=generator_file, workers=1)
    report = ProtectJob([inputs], tmp_path / "out", settings).run()
    assert [d.source.name for d in report.done] == ["p0.png"]
    assert len(report.failed) == 1 and "produced invalid values" in report.failed[0].reason
    assert "unexpected" not in report.failed[0].reason
    assert [p.name for p in report.pending] == ["p2.png"]
    assert report.stopped and "produced invalid values" in report.stopped


def test_randomised_layouts_follow_the_install_key_not_the_file_name() -> None:
    from spdesk.core.apply import _layout

    public = {_layout(f"IMG_{i}.jpg", 0, (128, 128)) for i in range(20)}
    keyed_a = {_layout(f"IMG_{i}.jpg", 0, (128, 128), KEY_A) for i in range(20)}
    keyed_b = {_layout(f"IMG_{i}.jpg", 0, (128, 128), KEY_B) for i in range(20)}
    assert len(keyed_a & public) <= 1 and len(keyed_a & keyed_b) <= 1
    settings = ProtectSettings(randomize=True)
    assert settings.apply_options().secret == install_key()
    assert ProtectSettings().apply_options().secret == b""


def test_train_generator_then_protect_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.cli import main
    from spdesk.core.generator_file import read_spec

    photos, vae = write_photos(tmp_path / "photos"), save_tiny_vae(tmp_path / "sd")
    out = tmp_path / "gen.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    argv += ["--steps", "2", "--batch", "2", "--size", "32", "--visibility", "0.3", "--json"]
    assert main([*argv, "--editor-filter", "lanczos", "--ceiling", "0.9"]) == 0
    assert read_spec(out).metadata["config"]["editor_filter"] == "lanczos"
    assert read_spec(out).shaping["ceiling"] == 0.9
    again = tmp_path / "again.safetensors"
    assert main([*argv[:3], str(again), *argv[4:], "--init", str(out)]) == 0
    argv = ["protect", str(photos), "--out", str(tmp_path / "protected"), "--mode", "photo"]
    assert main([*argv, "--generator", str(again)]) == 0
    outputs = sorted((tmp_path / "protected").rglob("*.protected.*"))
    assert len(outputs) == len(list(photos.iterdir()))
    trained = out.read_bytes()
    capsys.readouterr()
    for bad, says in ((["--floor", "2"], "floor must be"), (["--ceiling", "0"], "ceiling must be")):
        assert main(["train-generator", str(photos), "--out", str(out), "--encoder", str(vae),
                     *bad]) == 2  # fmt: skip
        assert says in capsys.readouterr().err
        assert out.read_bytes() == trained  # the file already there is left as it was


def _constant_generator(pattern: str) -> Any:
    """A generator whose raw output ignores its input: +1 everywhere ("smooth") or a pixel
    checkerboard ("fine"), set through the last convolution's bias."""
    from spdesk.core.generator import FOLD, DeltaGenerator

    model = DeltaGenerator(GeneratorConfig(width=8, blocks=1))
    last = model.net[-1]
    torch.nn.init.zeros_(last.weight)
    rows, cols = torch.meshgrid(torch.arange(FOLD), torch.arange(FOLD), indexing="ij")
    sign = torch.ones(FOLD, FOLD) if pattern == "smooth" else (-1.0) ** (rows + cols)
    with torch.no_grad():  # folded channel c * FOLD² + i * FOLD + j is pixel (i, j) of a block
        last.bias.copy_(3 * sign.flatten().repeat(3))
    return model


def test_the_held_out_check_tells_a_coarse_generator_from_a_fine_one(tmp_path: Path) -> None:
    from spdesk.core.train_generator import (
        COARSE_SHARE,
        GeneratorTrainConfig,
        held_out_coarseness,
    )

    photos = []
    for index in range(3):
        photos.append(tmp_path / f"{index}.png")
        _photo(96, 128, seed=index).save(photos[-1])
    config = GeneratorTrainConfig(size=32, view=96)
    device = torch.device("cpu")
    smooth = held_out_coarseness(_constant_generator("smooth"), photos, config, device)
    fine = held_out_coarseness(_constant_generator("fine"), photos, config, device)
    assert smooth is not None and fine is not None and smooth["photos"] == 3
    assert fine["random_signs"] == smooth["random_signs"]  # the same crops and signs
    assert fine["low_frequency_share"] < smooth["random_signs"] < COARSE_SHARE
    assert smooth["low_frequency_share"] > COARSE_SHARE
    again = held_out_coarseness(_constant_generator("smooth"), photos, config, device)
    assert again == smooth  # seeded: the same file scores the same
    (tmp_path / "bad.png").write_bytes(b"not a photo")
    assert held_out_coarseness(_constant_generator("smooth"), [tmp_path / "bad.png"], config,
                               device) is None  # fmt: skip


def test_train_generator_warns_when_the_new_file_is_coarse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.cli import main
    from spdesk.core import train_generator

    photos, vae = write_photos(tmp_path / "photos"), save_tiny_vae(tmp_path / "sd")
    argv = ["train-generator", str(photos), "--out", str(tmp_path / "g.safetensors")]
    argv += ["--encoder", str(vae), "--steps", "1", "--batch", "2", "--size", "32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Held-out check (" in printed and "random signs under the same shaping" in printed
    check = {"low_frequency_share": 0.05, "random_signs": 0.01, "photos": 2}
    monkeypatch.setattr(train_generator, "held_out_coarseness", lambda *args: check)
    assert main([*argv, "--force"]) == 0
    assert "Warning: above 0.02, this file's protection is coarse" in capsys.readouterr().out
    monkeypatch.setattr(train_generator, "held_out_coarseness", lambda *args: None)
    assert main([*argv, "--force", "--json"]) == 0
    assert '"held_out_check": null' in capsys.readouterr().out


@pytest.mark.parametrize("name", ["bilinear", "lanczos"])
def test_the_generator_trainings_editor_resizes_with_the_filter_it_is_given(name: str) -> None:
    import torch.nn.functional as F

    from spdesk.core.resample import lanczos_resize
    from spdesk.core.train_generator import GeneratorTrainConfig, _editor

    config = GeneratorTrainConfig(editor_scale=(0.5, 0.5), jpeg=0, blur=0, editor_filter=name)
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    edited = _editor(torch.Generator().manual_seed(1), config)(x)
    lanczos = lanczos_resize(x, (24, 32))
    bilinear = F.interpolate(x, size=(24, 32), mode="bilinear", antialias=True)
    expected, other = (lanczos, bilinear) if name == "lanczos" else (bilinear, lanczos)
    assert torch.allclose(edited, expected, atol=1e-6)
    assert not torch.allclose(edited, other, atol=1e-3)
    with pytest.raises(ConfigError, match="editor_filter"):
        GeneratorTrainConfig(editor_filter="bicubic")


def test_the_mixed_editor_resizes_with_either_filter_and_leaves_the_others_draws_alone() -> None:
    import torch.nn.functional as F

    from spdesk.core.resample import lanczos_resize
    from spdesk.core.train_generator import GeneratorTrainConfig, _editor

    def config(name: str) -> GeneratorTrainConfig:
        return GeneratorTrainConfig(editor_scale=(0.5, 0.5), jpeg=0, blur=0, editor_filter=name)

    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    lanczos = lanczos_resize(x, (24, 32))
    bilinear = F.interpolate(x, size=(24, 32), mode="bilinear", antialias=True)
    drawn = []
    for seed in range(16):
        edited = _editor(torch.Generator().manual_seed(seed), config("mixed"))(x)
        assert torch.allclose(edited, lanczos, atol=1e-6) or torch.allclose(
            edited, bilinear, atol=1e-6
        )
        drawn.append(torch.allclose(edited, lanczos, atol=1e-6))
    assert 0 < sum(drawn) < 16
    # The filter draw comes last: a bilinear run's steps draw what they drew before "mixed".
    steps = torch.Generator().manual_seed(3)
    _editor(steps, config("bilinear"))
    assert torch.equal(torch.rand(4, generator=steps), torch.rand(4, generator=_skip(3, 5)))


def test_jpeg_first_compresses_at_the_photos_own_size_before_the_editor_resizes() -> None:
    import torch.nn.functional as F
    from kornia.enhance import jpeg_codec_differentiable

    from spdesk.core.train_generator import GeneratorTrainConfig, _editor

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(24, 32), mode="bilinear", antialias=True)

    def compress(x: torch.Tensor) -> torch.Tensor:
        return jpeg_codec_differentiable(x, x.new_tensor([quality]))

    def edited(first: float, seed: int = 0) -> torch.Tensor:
        config = GeneratorTrainConfig(
            editor_scale=(0.5, 0.5), jpeg=1, jpeg_quality=70, blur=0, jpeg_first=first
        )
        return _editor(torch.Generator().manual_seed(seed), config)(x)

    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    quality = float(torch.randint(70, 96, (), generator=_skip(0, 2)))  # the editor's draw
    before, after = resize(compress(x)), compress(resize(x))
    assert not torch.allclose(before, after, atol=1e-3)
    assert torch.allclose(edited(1.0), before, atol=1e-5)
    assert torch.allclose(edited(0.0), after, atol=1e-5)
    # A share in between draws the order per step (the other draws are the same per seed).
    orders = {torch.allclose(edited(0.5, seed), edited(0.0, seed)) for seed in range(12)}
    assert orders == {True, False}
    # The order is drawn last and only when asked for: old recipes draw what they drew.
    steps = torch.Generator().manual_seed(3)
    _editor(steps, GeneratorTrainConfig(jpeg_first=0.0))
    assert torch.equal(torch.rand(4, generator=steps), torch.rand(4, generator=_skip(3, 5)))
    with pytest.raises(ConfigError, match=r"^jpeg_first must be"):
        GeneratorTrainConfig(jpeg_first=1.5)


def test_the_mixed_editor_draws_lanczos_at_the_share_it_is_given() -> None:
    import torch.nn.functional as F

    from spdesk.core.train_generator import GeneratorTrainConfig, _editor

    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    bilinear = F.interpolate(x, size=(24, 32), mode="bilinear", antialias=True)

    def lanczos_steps(share: float) -> int:
        config = GeneratorTrainConfig(
            editor_scale=(0.5, 0.5), jpeg=0, blur=0, editor_filter="mixed", lanczos_share=share
        )
        edits = [_editor(torch.Generator().manual_seed(s), config)(x) for s in range(200)]
        return sum(not torch.allclose(edit, bilinear, atol=1e-6) for edit in edits)

    assert lanczos_steps(0.0) == 0 and lanczos_steps(1.0) == 200
    assert 120 < lanczos_steps(0.8) < 190 and 70 < lanczos_steps(0.5) < 130
    with pytest.raises(ConfigError, match="lanczos_share"):
        GeneratorTrainConfig(editor_filter="mixed", lanczos_share=-0.1)


@pytest.mark.parametrize(
    "bad",
    [{"eps": 0}, {"steps": 0}, {"batch": 300}, {"size": 30}, {"lr": 0}, {"ssim": -1},
     {"editor_scale": (1.2, 0.8)}, {"jpeg": 2}, {"jpeg_quality": 99}, {"time_limit": -1},
     {"split_seed": -1}, {"network": GeneratorConfig(width=4)}, {"lanczos_share": 0.7},
     {"secrecy": -0.5}, {"visibility": -1}, {"blur": 1.5}, {"split": 1.0}, {"view": 8},
     {"max_photos": 0}],
)  # fmt: skip
def test_the_generator_training_settings_refuse_what_is_out_of_range(bad: dict[str, Any]) -> None:
    from spdesk.core.train_generator import GeneratorTrainConfig

    name = "width" if "network" in bad else next(iter(bad))
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        GeneratorTrainConfig(**bad)


def _skip(seed: int, draws: int) -> torch.Generator:
    """A generator seeded with ``seed`` after ``draws`` scalar draws, the editor's count."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(draws):
        torch.rand((), generator=generator)
    return generator


def test_broken_generator_and_eval_settings_are_plain_errors(
    tmp_path: Path, generator_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli import main

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(generator_file.read_bytes()[:2000])  # a download cut short
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(40, 40).save(inputs / "a.png")
    before = (inputs / "a.png").read_bytes()
    argv = ["protect", str(inputs), "--out", str(tmp_path / "out"), "--generator", str(cut)]
    assert main(argv) == 2
    assert "cut.safetensors" in capsys.readouterr().err
    assert (inputs / "a.png").read_bytes() == before
    assert not list((tmp_path / "out").rglob("*.protected.*"))
    argv = ["eval", "--photos", str(inputs), "--encoder", "taesd", "--sizes", "100"]
    assert main(argv) == 2
    assert "--sizes" in capsys.readouterr().err


def test_a_generator_with_a_nan_in_its_shaping_is_refused_before_the_job_writes_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It passed the load check, then every photo failed "invalid values" one by one: exit 1,
    # with a manifest and a lock left in the output folder.
    from spdesk.cli import main
    from spdesk.core.generator import DeltaGenerator, shaping_to_dict
    from spdesk.core.generator_file import save_generator
    from spdesk.core.shaping import Shaping

    config = GeneratorConfig(width=8, blocks=1)
    forged = save_generator(
        tmp_path / "nan.safetensors", DeltaGenerator(config).state_dict(), eps=8,
        network=config.to_dict(), shaping={**shaping_to_dict(Shaping()), "texture_ref": math.nan},
    )  # fmt: skip
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(40, 40).save(inputs / "a.png")
    out = tmp_path / "out"
    assert main(["protect", str(inputs), "--out", str(out), "--generator", str(forged)]) == 2
    assert "nan.safetensors has a shaping spdesk cannot use: texture_ref" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_generator_training_averages_an_ensemble_and_stops_at_its_time_limit(
    tmp_path: Path,
) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.core.encoders import load_encoder
    from spdesk.core.train_generator import (
        GeneratorTrainConfig,
        _ensemble_relative_sq,
        train_generator,
    )

    photos = write_photos(tmp_path / "photos")
    vae_a, vae_b = save_tiny_vae(tmp_path / "a", seed=1), save_tiny_vae(tmp_path / "b", seed=2)
    pair = load_encoder(f"{vae_a},{vae_b}", "cpu")
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    protected = (clean + 0.03).clamp(0, 1)

    def edit(x: torch.Tensor) -> torch.Tensor:
        return x

    each = [_ensemble_relative_sq(member, edit, clean, protected) for member in pair.members]
    assert not torch.allclose(each[0], each[1])  # two different latent spaces
    both = _ensemble_relative_sq(pair, edit, clean, protected)
    torch.testing.assert_close(both, (each[0] + each[1]) / 2)

    config = GeneratorTrainConfig(
        steps=1000, batch=2, size=32, view=48, time_limit=1e-9,
        network=GeneratorConfig(width=8, blocks=1),
    )  # fmt: skip
    _, summary = train_generator(photos, pair, config)
    assert summary["steps_done"] == 1  # the time limit, not the 1000 steps, ended the run
    assert summary["time_limit_reached"] and not summary["stopped_early"]  # the CLI says so


def test_every_generator_training_seed_holds_out_the_same_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second stage trained with another --seed must not train on the photos the first stage
    (and the benchmark) hold out; only --split-seed chooses them."""
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    import spdesk.core.train_generator as module
    from spdesk.core.encoders import load_encoder

    photos = write_photos(tmp_path / "photos", count=10)
    encoder = load_encoder(str(save_tiny_vae(tmp_path / "sd")), "cpu")
    seen: list[list[str]] = []
    load = module.load_working_views

    def recording(paths: list[Path], view: int) -> Any:
        seen.append(sorted(path.name for path in paths))
        return load(paths, view)

    monkeypatch.setattr(module, "load_working_views", recording)
    for seed, split_seed in [(0, 0), (1, 0), (7, 0), (0, 3)]:
        config = module.GeneratorTrainConfig(
            steps=1, batch=2, size=32, view=48, seed=seed, split_seed=split_seed,
            network=GeneratorConfig(width=8, blocks=1),
        )  # fmt: skip
        module.train_generator(photos, encoder, config)
    trained, checked = seen[0::2], seen[1::2]  # each run loads its training, then held-out photos
    assert len(trained[0]) == 7 and len(checked[0]) == 3
    assert trained[1] == trained[0] and trained[2] == trained[0]
    assert trained[3] != trained[0]
    assert all(not set(c) & set(t) for c, t in zip(checked, trained, strict=True))


def test_a_stop_ends_generator_training_after_the_step_and_keeps_what_was_learnt(
    tmp_path: Path,
) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.core.encoders import load_encoder
    from spdesk.core.errors import Cancelled
    from spdesk.core.events import CancelToken
    from spdesk.core.train_generator import GeneratorTrainConfig, train_generator

    photos = write_photos(tmp_path / "photos")
    encoder = load_encoder(str(save_tiny_vae(tmp_path / "sd")), "cpu")
    config = GeneratorTrainConfig(
        steps=1000, batch=2, size=32, view=48, network=GeneratorConfig(width=8, blocks=1)
    )
    stop = CancelToken()

    def stop_after_two(step: object) -> None:
        if len(seen) == 1:
            stop.cancel()
        seen.append(step)

    seen: list[object] = []
    model, summary = train_generator(photos, encoder, config, on_step=stop_after_two, stop=stop)
    assert summary["steps_done"] == 2 and summary["stopped_early"]
    assert len(seen) == 2 and isinstance(model, torch.nn.Module)

    stopped_at_once = CancelToken()
    stopped_at_once.cancel()  # Ctrl+C while the photos were loading: nothing to keep
    with pytest.raises(Cancelled, match="before the first training step"):
        train_generator(photos, encoder, config, stop=stopped_at_once)


def test_ctrl_c_during_train_generator_saves_the_generator_trained_so_far(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys

    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.core.photo_protect import load_generator

    photos, vae = write_photos(tmp_path / "photos"), save_tiny_vae(tmp_path / "sd")
    out = tmp_path / "gen.safetensors"
    command = [sys.executable, "-m", "spdesk", "train-generator", str(photos), "--out", str(out)]
    command += ["--encoder", str(vae), "--steps", "100000", "--batch", "2", "--size", "32"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(command, text=True, **pipes) as run:
        assert run.stderr is not None and run.stdout is not None
        said = ""
        while "step " not in said:  # training has begun
            line = run.stderr.readline()
            assert line, said
            said += line
        run.send_signal(signal.SIGINT)
        out_text, said_after = run.stdout.read(), run.stderr.read()
        assert run.wait(timeout=120) == 130, said + said_after  # cancelled, as every command
    assert "Stopped (Ctrl+C or a stop signal) after " in out_text and "of 100000 steps" in out_text
    assert f"Saved {out}" in out_text
    _, spec = load_generator(out)
    assert 1 <= spec.metadata["train"]["steps_done"] < 100000
    assert spec.metadata["train"]["stopped_early"]


def test_train_generator_init_keeps_the_started_networks_shape(tmp_path: Path) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.cli import main
    from spdesk.core.photo_protect import load_generator

    photos, vae = write_photos(tmp_path / "photos"), save_tiny_vae(tmp_path / "sd")
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    argv = ["train-generator", str(photos), "--encoder", str(vae), "--steps", "1"]
    argv += ["--batch", "2", "--size", "32", "--json"]
    assert main([*argv, "--out", str(first), "--width", "16", "--blocks", "2"]) == 0
    assert main([*argv, "--out", str(second), "--init", str(first)]) == 0
    assert load_generator(second)[1].network == {"width": 16, "blocks": 2}
    assert main([*argv, "--out", str(second), "--width", "4"]) == 2  # out of range: plain error


def test_photos_larger_than_the_view_get_a_smaller_share_of_the_budget(
    generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import geometry

    protector = GeneratorProtector(generator_file, key=KEY_A)
    photo = _photo(1024, 1280)  # view 512x640: upscaled 2x

    def mean_change() -> float:
        protected = np.asarray(protector.apply(photo)[0]).astype(int)
        return float(np.abs(protected - np.asarray(photo)).mean())

    damped = mean_change()
    monkeypatch.setattr(geometry, "LARGE_PHOTO_EXPONENT", 0.0)
    full = mean_change()
    assert 0.45 < damped / full < 0.7  # 2 ** -0.8 = 0.57, up to 8-bit rounding
    assert geometry.large_photo_factor(400, 400) == 1.0


def test_a_camera_sized_photo_keeps_a_floor_share_of_the_budget(
    generator_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import geometry

    # 24 MP, 7.8 times the view: the power alone gave 0.19, a fifth of a small photo's protection
    assert geometry.large_photo_factor(4000, 512) == geometry.LARGE_PHOTO_FLOOR == 0.36
    assert geometry.large_photo_factor(1024, 512) == pytest.approx(2**-0.8)  # the power rules
    assert geometry.large_photo_factor(1830, 512) > 0.36  # ... up to about 1838 px
    protector = GeneratorProtector(generator_file, 32, key=KEY_A, working_side=64)
    photo = _photo(640, 640)  # view 64x64, upscaled 10x: the power alone gives 0.16

    def mean_change() -> float:
        protected = np.asarray(protector.apply(photo)[0]).astype(int)
        return float(np.abs(protected - np.asarray(photo)).mean())

    floored = mean_change()
    monkeypatch.setattr(geometry, "LARGE_PHOTO_EXPONENT", 0.0)
    assert 0.3 < floored / mean_change() < 0.42


def test_structural_loss_is_zero_for_the_same_photo_and_grows_with_the_change() -> None:
    from spdesk.core.train_generator import structural_loss

    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    small = structural_loss(clean, (clean + 0.01 * noise).clamp(0, 1))
    large = structural_loss(clean, (clean + 0.05 * noise).clamp(0, 1))
    assert float(structural_loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(small) < float(large)


def test_the_kind_of_device_enters_the_photo_mode_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spdesk.core import device
    from spdesk.core.jobs.protector import mode_key

    on_cpu = mode_key(ProtectSettings(mode="photo", device="cpu"))
    assert on_cpu[-1] == "cpu"
    on_gpu = mode_key(ProtectSettings(mode="photo", device="cuda:1"))  # no GPU needed to name one
    assert on_gpu != on_cpu and on_gpu[-1] == "cuda"  # a GPU's bytes differ a little: redo
    monkeypatch.setattr(device, "resolve_device", lambda choice: torch.device("cuda"))
    assert mode_key(ProtectSettings(mode="photo", device="auto")) == on_gpu  # what auto finds


@pytest.mark.parametrize("choice", ["cpu", "cuda"])
def test_a_ray_driver_fingerprints_photo_mode_without_loading_torch(
    tmp_path: Path, choice: str
) -> None:
    """Naming the workers' device, the driver imported torch only to learn that (180 MB)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from spdesk.core.jobs import ProtectSettings\n"
        "from spdesk.core.jobs.fingerprint import output_fingerprint\n"
        f"settings = ProtectSettings(mode='photo', device={choice!r})\n"
        "output_fingerprint(settings, '')\n"
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))\n"
    )
    env = {**os.environ, "SPDESK_HOME": str(tmp_path)}
    env.pop(ENV_KEY, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "bad",
    [["--editor-scale", "2", "1"], ["--jpeg", "1.5"], ["--jpeg-quality", "5"],
     ["--ssim", "-1"], ["--blocks", "0"], ["--time-limit", "-1"], ["--split-seed", "-1"],
     ["--lanczos-share", "1.5"], ["--lanczos-share", "0.7"], ["--eps", "-3"], ["--size", "36"],
     ["--width", "4"], ["--jpeg-first", "2"]],
)  # fmt: skip
def test_train_generator_refuses_bad_settings_before_training_and_writes_nothing(
    tmp_path: Path, bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train import write_photos

    from spdesk.cli import main

    photos = write_photos(tmp_path / "photos")
    out = tmp_path / "gen.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", "taesd", *bad]
    assert main(argv) == 2
    assert bad[0] in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_train_generator_refuses_an_unknown_editor_filter_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train import write_photos

    from spdesk.cli import main

    photos = write_photos(tmp_path / "photos")
    out = tmp_path / "gen.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", "taesd"]
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal, before anything loads
        main([*argv, "--editor-filter", "bicubic"])
    assert exited.value.code == 2
    assert "--editor-filter: invalid choice: 'bicubic'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_train_generator_skips_unreadable_photos_and_refuses_a_folder_without_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    from spdesk.cli import main
    from spdesk.core.train import find_photos, split_photos
    from tests import protect_samples as samples

    vae = save_tiny_vae(tmp_path / "sd")
    photos = write_photos(tmp_path / "photos")
    cut = split_photos(find_photos(photos), 0.7, 0, None)[0][0]  # a training photo (seed 0)
    samples.truncated_jpeg(cut)  # a good header, damaged data
    out = tmp_path / "gen.safetensors"
    argv = ["train-generator", "--out", str(out), "--encoder", str(vae), "--steps", "1"]
    argv += ["--batch", "2", "--size", "32"]
    assert main([*argv[:1], str(photos), *argv[1:]]) == 0
    said, err = capsys.readouterr()
    assert f"Skipped {cut.name}: " in said and out.is_file()
    # Said before the encoder and photos load (a silent minute or two on a CPU; audit)
    assert err.startswith("Training a protection generator on 6 photos (some held out")

    # A held-out photo that cannot be read is named too (the check ran without it, unsaid).
    held_out = split_photos(find_photos(photos), 0.7, 0, None)[1][0]
    samples.truncated_jpeg(held_out)
    assert main([*argv[:1], str(photos), *argv[1:], "--force"]) == 0
    said = capsys.readouterr().out
    assert f"Held-out check skipped {held_out.name}: " in said
    assert main([*argv[:1], str(photos), *argv[1:], "--force", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [photo["name"] for photo in record["skipped_held_out"]] == [held_out.name]

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a photo")
    out.unlink()
    assert main([*argv[:1], str(notes), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert "holds 0 photo(s); training needs at least 2" in err and not out.exists()


def test_train_generator_refuses_an_out_it_must_not_replace_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo given as --out by mistake is kept (--force replaces it); an --out under a file
    is refused at once, not after the training (--encoder is never even loaded)."""
    from test_train import write_photos

    from spdesk.cli import main

    photos = write_photos(tmp_path / "photos")
    photo = sorted(photos.iterdir())[0]
    before = photo.read_bytes()
    argv = ["train-generator", str(photos), "--encoder", str(tmp_path / "no-encoder")]
    assert main([*argv, "--out", str(photo)]) == 2
    err = capsys.readouterr().err
    assert "is not an spdesk protection generator file, so it was not replaced" in err
    assert "--force" in err and photo.read_bytes() == before
    assert main([*argv, "--out", str(photo / "gen.safetensors")]) != 0
    assert "Cannot save gen.safetensors" in capsys.readouterr().err


def test_a_budget_that_shows_plainly_is_warned_of_and_named_when_a_file_brings_it(
    tmp_path: Path, generator_file: Path
) -> None:
    """A generator or pattern made with ``--eps 64`` was used at ±64/255 without a word."""
    from spdesk.core.generator import DeltaGenerator, GeneratorConfig, shaping_to_dict
    from spdesk.core.generator_file import save_generator
    from spdesk.core.jobs import ProtectJob, ProtectSettings
    from spdesk.core.shaping import Shaping
    from tests import protect_samples as samples

    samples.photo(tmp_path / "in" / "a.png")
    config = GeneratorConfig(width=8, blocks=1)
    loud = save_generator(
        tmp_path / "loud.safetensors", DeltaGenerator(config).state_dict(), eps=64,
        network=config.to_dict(), shaping=shaping_to_dict(Shaping(floor=0.5)),
    )  # fmt: skip

    def warnings(out: str, **settings: object) -> list[str]:
        job = ProtectJob([tmp_path / "in"], tmp_path / out, ProtectSettings(**settings))  # type: ignore[arg-type]
        return [w for w in job.run().warnings if "plainly visible" in w]

    (told,) = warnings("loud", mode="photo", generator=loud, working_size=16)
    assert told.startswith("Strength 64 (the protection generator's own budget) is above 16")
    assert not warnings("default", mode="photo", generator=generator_file, working_size=16)
    (given,) = warnings("strong", mode="photo", generator=generator_file, strength=24)
    assert given.startswith("Strength 24 is above 16") and "own budget" not in given
    pattern = samples.perturbation_file(tmp_path, eps=32)
    (file_budget,) = warnings("pattern", mode="universal", perturbation=pattern)
    assert file_budget.startswith("Strength 32 (the pattern file's own budget)")
    assert not warnings("quiet", mode="universal", perturbation=pattern, strength=8)
