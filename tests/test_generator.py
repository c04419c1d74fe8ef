"""The protection generator: shapes, bound, determinism from the noise, its file format."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch

from spdesk.core.errors import PerturbationFileError
from spdesk.core.events import CancelToken
from spdesk.core.generator import (
    DeltaGenerator,
    GeneratorConfig,
    generate_delta,
    noise_shape,
    shaping_to_dict,
)
from spdesk.core.generator_file import read_spec, save_generator, with_ceiling
from spdesk.core.photo_protect import load_generator
from spdesk.core.shaping import MAX_WINDOW, Shaping

SMALL = GeneratorConfig(width=8, blocks=1)


def _model(seed: int = 0) -> DeltaGenerator:
    torch.manual_seed(seed)
    return DeltaGenerator(SMALL).eval()


def _noise(height: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(
        (1, *noise_shape(height, width)), generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("size", [(32, 32), (37, 53), (5, 9)])
def test_any_size_gives_a_bounded_delta_of_that_size(size: tuple[int, int]) -> None:
    images = torch.rand(1, 3, *size)
    with torch.no_grad():
        delta = generate_delta(_model(), images, _noise(*size, 0), 8, Shaping())
    assert delta.shape == (1, 3, *size)
    assert delta.abs().max() <= 8 / 255 + 1e-7 and delta.abs().max() > 0


def test_same_noise_same_delta_other_noise_other_delta() -> None:
    images = torch.rand(1, 3, 32, 32)
    model = _model()
    with torch.no_grad():
        a = generate_delta(model, images, _noise(32, 32, 1), 8, Shaping())
        b = generate_delta(model, images, _noise(32, 32, 1), 8, Shaping())
        c = generate_delta(model, images, _noise(32, 32, 2), 8, Shaping())
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _save(path: Path, model: DeltaGenerator) -> Path:
    return save_generator(
        path, model.state_dict(), eps=8, network=SMALL.to_dict(),
        shaping=shaping_to_dict(Shaping()), metadata={"name": "test"},
    )  # fmt: skip


def test_file_round_trip(tmp_path: Path) -> None:
    model = _model(3)
    path = _save(tmp_path / "g.safetensors", model)
    loaded, spec = load_generator(path)
    assert spec.eps == 8 and spec.network == SMALL.to_dict() and spec.name == "test"
    assert spec.shaping["window"] == 7 and isinstance(spec.shaping["window"], int)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_a_ceiling_set_after_training_keeps_the_weights_and_scales_the_protection(
    tmp_path: Path,
) -> None:
    import numpy as np

    from spdesk.core.photo_protect import GeneratorProtector

    full = _save(tmp_path / "g.safetensors", _model(3))
    lower = with_ceiling(full, tmp_path / "g75.safetensors", 0.75)
    loaded, spec = load_generator(lower)
    assert spec.shaping["ceiling"] == 0.75 and spec.name == "test"
    assert spec.metadata["ceiling_set_after_training"] == 0.75
    for name, tensor in _model(3).state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    images, noise = torch.rand(1, 3, 32, 32), _noise(32, 32, 1)
    with torch.no_grad():
        at_full = generate_delta(_model(3), images, noise, 8, Shaping())
        at_lower = generate_delta(loaded, images, noise, 8, Shaping.from_settings(spec.shaping))
    torch.testing.assert_close(at_lower, 0.75 * at_full)
    view = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    protector = GeneratorProtector(lower, strength=8, key=bytes(32))
    assert np.abs(protector.working_delta(view)).max() <= 0.75 * 8 / 255 + 1e-6
    with pytest.raises(PerturbationFileError, match="ceiling"):
        with_ceiling(full, tmp_path / "bad.safetensors", 1.5)
    assert not (tmp_path / "bad.safetensors").exists()


def test_wrong_files_are_refused_by_name(tmp_path: Path) -> None:
    pickle = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, pickle)
    with pytest.raises(PerturbationFileError, match=r"model\.pth"):
        read_spec(pickle)
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"delta": torch.zeros(3, 8, 8)}, str(other), metadata={"format": "something"})
    with pytest.raises(PerturbationFileError, match="not an spdesk protection generator"):
        read_spec(other)
    with pytest.raises(PerturbationFileError, match="not found"):
        read_spec(tmp_path / "missing.safetensors")


def test_a_generator_file_cut_short_is_named_incomplete(tmp_path: Path) -> None:
    from spdesk.core.generator_file import bundled_generator_path

    data = bundled_generator_path().read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(PerturbationFileError, match=r"cut\.safetensors is incomplete"):
        read_spec(cut)


def test_a_training_checkpoint_is_named_not_taken_for_a_generator(tmp_path: Path) -> None:
    from test_perturbation_file import _training_checkpoint

    path = _training_checkpoint(tmp_path / "run.ckpt")
    with pytest.raises(PerturbationFileError, match="training checkpoint of spdesk train"):
        read_spec(path)


def test_missing_weights_and_lying_headers_are_refused(tmp_path: Path) -> None:
    model = _model()
    state = dict(model.state_dict())
    state.pop(next(iter(state)))
    path = save_generator(
        tmp_path / "partial.safetensors", state, eps=8, network=SMALL.to_dict(),
        shaping=shaping_to_dict(Shaping()),
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match="does not match"):
        load_generator(path)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(PerturbationFileError, match="not a safetensors"):
        read_spec(huge)
    bad = tmp_path / "bad.safetensors"
    header = json.dumps(
        {
            "__metadata__": {
                "format": "spdesk-generator",
                "format_version": "1",
                "eps": "900",
                "network": "{}",
                "shaping": "{}",
            }
        }
    )
    bad.write_bytes(struct.pack("<Q", len(header)) + header.encode())
    with pytest.raises(PerturbationFileError, match="damaged settings"):
        read_spec(bad)


def _forged(setting: str, value: float) -> dict[str, float]:
    return {**shaping_to_dict(Shaping()), setting: value}


@pytest.mark.parametrize(
    ("shaping", "says"),
    [
        ({"future_setting": 1.0}, "unknown shaping setting future_setting"),
        ({"floor": 2}, "floor"),
        (_forged("window", 7.5), "window"),  # was "unexpected error (TypeError: pad() ...)"
        (_forged("window", MAX_WINDOW + 2), "window"),  # 100001 asked for 40 GB
        (_forged("texture_ref", math.nan), "texture_ref"),  # each photo then failed, exit 1
        (_forged("colour_ref", math.nan), "colour_ref"),
        (_forged("texture_ref", math.inf), "texture_ref"),
    ],
)
def test_a_shaping_this_spdesk_cannot_use_is_refused_by_name_before_the_weights_load(
    tmp_path: Path, shaping: dict[str, float], says: str
) -> None:
    path = save_generator(
        tmp_path / "newer.safetensors", _model().state_dict(), eps=8,
        network=SMALL.to_dict(), shaping=shaping,
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match=f"newer.safetensors .*{says}"):
        load_generator(path)


def test_a_generator_and_a_universal_perturbation_each_name_the_other_when_swapped(
    tmp_path: Path,
) -> None:
    import numpy as np

    from spdesk.core.perturbation import load_perturbation, save_perturbation

    generator = _save(tmp_path / "gen.safetensors", _model())
    with pytest.raises(PerturbationFileError, match="is a protection generator") as refused:
        load_perturbation(generator)
    assert "--generator" in (refused.value.hint or "")
    pattern = tmp_path / "pattern.safetensors"
    save_perturbation(pattern, np.zeros((3, 16, 16), np.float32), eps=8)
    with pytest.raises(PerturbationFileError, match="is a universal perturbation") as refused:
        read_spec(pattern)
    assert "--mode universal" in (refused.value.hint or "")


def test_a_damaged_file_chosen_as_the_other_kind_is_not_recommended_as_its_own_kind(
    tmp_path: Path,
) -> None:
    """A generator with a weight that is not a number, chosen as a pattern, was recommended
    with --generator, which then refused it ("weight net.0.bias has a wrong shape or value");
    a damaged pattern given as a generator was recommended with --perturbation."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from spdesk.core.perturbation import load_perturbation, save_perturbation

    generator = _save(tmp_path / "gen.safetensors", _model())
    with safe_open(str(generator), framework="numpy") as handle:
        meta, names = handle.metadata(), handle.keys()  # the handle is not iterable
        weights = {key: handle.get_tensor(key).copy() for key in names}
    weights["net.0.bias"].flat[0] = np.nan
    save_file(weights, str(tmp_path / "bad-gen.safetensors"), metadata=meta)
    with pytest.raises(PerturbationFileError) as refused:
        load_generator(tmp_path / "bad-gen.safetensors")  # what --generator says of it
    with pytest.raises(PerturbationFileError, match="damaged protection generator") as chosen:
        load_perturbation(tmp_path / "bad-gen.safetensors")
    assert "--generator" not in chosen.value.user_text()
    assert "net.0.bias" in chosen.value.message

    pattern = save_perturbation(
        tmp_path / "pattern.safetensors", np.zeros((3, 16, 16), np.float32), eps=8
    )
    with safe_open(str(pattern), framework="numpy") as handle:
        meta, delta = handle.metadata(), handle.get_tensor("delta")
    save_file(
        {"delta": np.full_like(delta, np.nan)},
        str(tmp_path / "bad-pattern.safetensors"),
        metadata=meta,
    )
    with pytest.raises(PerturbationFileError) as refused:
        load_perturbation(tmp_path / "bad-pattern.safetensors")  # what --perturbation says
    with pytest.raises(PerturbationFileError, match="damaged universal perturbation") as given:
        read_spec(tmp_path / "bad-pattern.safetensors")
    assert "--perturbation" not in given.value.user_text()
    assert refused.value.message.rstrip(".") in given.value.message


@pytest.mark.parametrize(
    "network",
    [
        {"width": 100_000, "blocks": 3},
        {"width": 8, "blocks": 100_000_000},
        {"width": -1, "blocks": 3},
    ],
)
def test_a_header_asking_for_a_network_spdesk_does_not_build_is_refused_before_building_it(
    tmp_path: Path, network: dict[str, int]
) -> None:
    # The weights of a small network, under a header that lies about its size: building what
    # the header says would take gigabytes (width) or minutes (blocks) before any check.
    path = save_generator(
        tmp_path / "forged.safetensors", _model().state_dict(), eps=8, network=network,
        shaping=shaping_to_dict(Shaping()),
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match=r"asks for a network with .* spdesk does not"):
        load_generator(path)


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny photos and a tiny VAE to train a generator on."""
    from test_train import write_photos
    from tiny_sd import save_tiny_vae

    root = tmp_path_factory.mktemp("generator-training")
    return write_photos(root / "photos"), save_tiny_vae(root / "sd")


def test_generator_training_at_crops_larger_than_the_view_trains(
    training: tuple[Path, Path],
) -> None:
    """--size accepts up to 1024 px while photos loaded at a 384 px short side: a larger size
    ended in an "unexpected error" at the first crop."""
    from spdesk.core.encoders import load_encoder
    from spdesk.core.train_generator import GeneratorTrainConfig, train_generator

    photos, vae = training
    config = GeneratorTrainConfig(steps=1, batch=1, size=64, view=48, network=SMALL)
    _, summary = train_generator(photos, load_encoder(str(vae), "cpu"), config)
    assert summary["steps_done"] == 1 and summary["held_out_check"] is not None


def test_train_generator_init_refuses_a_width_or_blocks_its_network_does_not_have(
    training: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.cli import main

    photos, vae = training
    init = _save(tmp_path / "init.safetensors", _model())
    out = tmp_path / "g.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    argv += ["--init", str(init), "--steps", "1", "--batch", "1", "--size", "32"]
    for shape in (["--width", "64", "--blocks", "4"], ["--blocks", "2"]):
        assert main([*argv, *shape]) == 2
        err = capsys.readouterr().err
        assert "init.safetensors is a network of width 8 and 1 blocks" in err, err
        assert shape[-2] in err and "step 1/1" not in err
        assert not out.exists()
    assert main([*argv, "--width", "8", "--blocks", "1"]) == 0  # its own shape, said again
    assert read_spec(out).network == SMALL.to_dict()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", str(2**63 - 1)], "--seed must be from 0 to 4294967295"),
        (["--split-seed", "99999999999999999999999"], "--split-seed must be from 0 to"),
        (["--lr", "inf"], "--lr must be positive and finite, got inf"),
        # Below one step it writes nothing; an infinite weight diverged, blaming --lr (audit).
        (["--eps", "0.5"], "--eps must be in [1, 64] 8-bit steps, got 0.5"),
        (["--visibility", "inf"], "--visibility must be >= 0 and finite, got inf"),
    ],
)
def test_train_generator_refuses_settings_it_cannot_train_with_before_training(
    training: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    """A large seed trained to the end, then failed ("unexpected error (ValueError: Overflow
    when unpacking long long)"): the training was lost."""
    from spdesk.cli import main

    photos, vae = training
    out = tmp_path / "g.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    assert main([*argv, "--steps", "1", "--batch", "1", "--size", "32", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "step 1/1" not in err and not out.exists()


def test_a_training_that_diverges_saves_nothing_and_says_why(
    training: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--lr 1e30 saved a file of NaN weights, said "Saved", exited 0; every command then
    refused the file as damaged."""
    from spdesk.cli import main

    photos, vae = training
    out = tmp_path / "g.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae), "--lr"]
    argv += ["1e30", "--steps", "2", "--batch", "1", "--size", "32", "--width", "8"]
    assert main([*argv, "--blocks", "1"]) == 2
    captured = capsys.readouterr()
    assert "weights that are not numbers" in captured.err and "training diverged" in captured.err
    assert "smaller --lr" in captured.err and "Saved" not in captured.out
    assert not out.exists()


def test_train_generator_never_replaces_a_generator_without_force(
    training: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out replaced an earlier generator without a word, after minutes of training, where
    spdesk train refuses before training. --init g --out g continues a network in place: that
    needs --force too (a continuation that ends coarse leaves nothing to go back to)."""
    from spdesk.cli import main

    photos, vae = training
    out = _save(tmp_path / "g.safetensors", _model(5))
    before = out.read_bytes()
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    argv += ["--steps", "1", "--batch", "1", "--size", "32", "--width", "8", "--blocks", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a protection generator, so it was not replaced" in err, err
    assert "add --force to replace it" in err and "Training a protection generator" not in err
    assert main([*argv, "--init", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out g.safetensors is the --init file this run starts from" in err, err
    assert "--force" in err and "Training a protection generator" not in err
    assert out.read_bytes() == before
    assert main([*argv, "--init", str(out), "--force"]) == 0  # told to: continued in place
    assert out.read_bytes() != before and read_spec(out).metadata["init"] == "g.safetensors"


def test_train_generator_lists_the_files_it_left_out_as_protect_does(
    training: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from spdesk.cli import main

    photos, vae = training
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "old-gen.safetensors").write_bytes(b"\0" * 16)
    out = tmp_path / "g.safetensors"
    argv = ["train-generator", str(folder), "--out", str(out), "--encoder", str(vae)]
    assert main([*argv, "--steps", "1", "--batch", "1", "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert f"Left out {folder / 'old-gen.safetensors'}: a pattern or model file" in err, err
    assert "1 other file left out, listed below" in err  # counted in the start line
    argv[argv.index(str(out))] = str(tmp_path / "h.safetensors")
    assert main([*argv, "--steps", "1", "--batch", "1", "--size", "32", "--json"]) == 0
    [left_out] = json.loads(capsys.readouterr().out)["left_out"]  # and where a script reads
    assert left_out["path"] == str(folder / "old-gen.safetensors")
    assert left_out["reason"].startswith("a pattern or model file")


class _CtrlCAfterOneStep(CancelToken):
    """The token Ctrl+C sets, pressed while the first step ran."""

    reads = 0

    @property
    def cancelled(self) -> bool:
        self.reads += 1
        return self.reads > 1


@pytest.mark.parametrize("out_there", [True, False])
def test_ctrl_c_during_train_generator_exits_130_and_never_replaces_a_file_already_there(
    training: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    out_there: bool,
) -> None:
    import spdesk.cli.train_generator as cli
    from spdesk.cli import main

    photos, vae = training
    out = tmp_path / "gen.safetensors"
    before = _save(out, _model(5)).read_bytes() if out_there else b""
    monkeypatch.setattr(cli, "cancel_on_sigint", _CtrlCAfterOneStep)
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    argv += ["--steps", "5", "--batch", "1", "--size", "32", "--width", "8", "--blocks", "1"]
    argv += ["--force"] if out_there else []  # a stopped run keeps it even so
    assert main(argv) == 130  # as spdesk train and every command stopped by Ctrl+C
    said = capsys.readouterr().out
    assert "Stopped (Ctrl+C or a stop signal) after 1 of 5 steps" in said
    saved = tmp_path / "gen.partial.safetensors" if out_there else out
    assert f"Saved {saved}" in said
    assert read_spec(saved).metadata["train"]["steps_done"] == 1  # what was learnt is kept
    if out_there:
        assert out.read_bytes() == before and "left as it was" in said
    else:
        assert not (tmp_path / "gen.partial.safetensors").exists()


def _save_state(path: Path, state: dict[str, torch.Tensor], meta: object) -> Path:
    """A generator file written as is (dtypes kept, any header), as a damaged one may be."""
    from safetensors.torch import save

    payload = save({name: tensor.contiguous() for name, tensor in state.items()})
    (length,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8 : 8 + length])
    header["__metadata__"] = meta
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + payload[8 + length :])
    return path


def _header_of(path: Path) -> dict[str, str]:
    meta = read_spec(path)
    return {
        "format": "spdesk-generator", "format_version": "1", "eps": repr(meta.eps),
        "network": json.dumps(meta.network), "shaping": json.dumps(meta.shaping),
    }  # fmt: skip


def test_a_generator_whose_output_is_not_finite_is_refused_when_loaded(tmp_path: Path) -> None:
    # Huge but finite weights (the bundled file's times 1e30) made NaN deltas, cast to uint8:
    # copies changed by up to 149 levels at strength 8, and "2 protected".
    huge = {k: v * 1e30 if v.dim() >= 2 else v for k, v in _model().state_dict().items()}
    path = save_generator(
        tmp_path / "huge.safetensors", huge, eps=8, network=SMALL.to_dict(),
        shaping=shaping_to_dict(Shaping()),
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match=r"huge\.safetensors produced invalid values"):
        load_generator(path)


def test_a_generator_that_goes_bad_on_one_photo_is_refused_for_it(tmp_path: Path) -> None:
    import numpy as np

    from spdesk.core.photo_protect import GeneratorProtector

    protector = GeneratorProtector(_save(tmp_path / "g.safetensors", _model()), key=bytes(32))
    with torch.no_grad():
        for weight in protector.model.parameters():
            weight.mul_(1e30 if weight.dim() >= 2 else 1)
    view = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with pytest.raises(PerturbationFileError, match=r"g\.safetensors produced invalid values"):
        protector.working_delta(view)


def test_a_generator_that_writes_no_perturbation_is_refused_when_loaded(tmp_path: Path) -> None:
    # It gave "0 protected, 2 unchanged (too small or flat...)", blaming the photos.
    zeros = {name: torch.zeros_like(tensor) for name, tensor in _model().state_dict().items()}
    path = save_generator(
        tmp_path / "zeros.safetensors", zeros, eps=8, network=SMALL.to_dict(),
        shaping=shaping_to_dict(Shaping()),
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match=r"zeros\.safetensors writes no perturbation"):
        load_generator(path)


def test_a_generator_whose_budget_cannot_change_a_pixel_is_refused_unless_given_a_strength(
    tmp_path: Path,
) -> None:
    """It gave "unchanged: too small or flat", blaming every photo, and exit 0."""
    from spdesk.core.photo_protect import GeneratorProtector

    path = save_generator(
        tmp_path / "tiny.safetensors", _model().state_dict(), eps=1e-40, network=SMALL.to_dict(),
        shaping=shaping_to_dict(Shaping()),
    )  # fmt: skip
    with pytest.raises(PerturbationFileError, match=r"tiny\.safetensors has a budget of 1e-40"):
        GeneratorProtector(path, key=bytes(32))
    assert GeneratorProtector(path, strength=8, key=bytes(32)).eps == 8


def test_a_generator_with_integer_weights_is_refused_by_name(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.safetensors", _model())
    state = {name: (t * 4).to(torch.int32) for name, t in _model().state_dict().items()}
    path = _save_state(tmp_path / "ints.safetensors", state, _header_of(good))
    with pytest.raises(
        PerturbationFileError, match=r"ints\.safetensors stores its weights as int32"
    ):
        load_generator(path)


@pytest.mark.parametrize(
    "meta",
    ["oops", ["format"], {"format": "spdesk-generator", "format_version": 1}],
    ids=["text", "list", "number"],
)
def test_a_generator_header_that_is_not_text_settings_is_called_damaged(
    tmp_path: Path, meta: object
) -> None:
    # A string gave "unexpected error (AttributeError...)"; format_version 1 (a number) gave
    # "uses generator format version 1; this spdesk reads version 1".
    path = _save_state(tmp_path / "odd.safetensors", _model().state_dict(), meta)
    with pytest.raises(PerturbationFileError, match=r"odd\.safetensors has a damaged header"):
        read_spec(path)


@pytest.mark.parametrize("stored", ["[1, 2]", "null", '"text"'])
def test_a_generator_whose_training_record_is_not_a_mapping_has_damaged_settings(
    tmp_path: Path, stored: str
) -> None:
    good = _save(tmp_path / "good.safetensors", _model())
    meta = {**_header_of(good), "metadata": stored}
    path = _save_state(tmp_path / "odd.safetensors", _model().state_dict(), meta)
    with pytest.raises(PerturbationFileError, match=r"odd\.safetensors has damaged settings"):
        read_spec(path)


def test_a_folder_or_a_pickle_given_as_a_generator_is_named_as_for_a_perturbation(
    tmp_path: Path,
) -> None:
    import pickle

    # A folder said "Generator file not found"; pickles a generic "not a safetensors file".
    folder = tmp_path / "gen.safetensors"
    folder.mkdir()
    with pytest.raises(PerturbationFileError, match=r"gen\.safetensors is a folder"):
        read_spec(folder)
    checkpoint = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, checkpoint)
    with pytest.raises(PerturbationFileError, match=r"model\.pt is a PyTorch/zip checkpoint"):
        read_spec(checkpoint)
    pickled = tmp_path / "array.pkl"
    pickled.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(PerturbationFileError, match=r"array\.pkl is a Python pickle") as info:
        read_spec(pickled)
    assert "generator" in str(info.value) and "perturbation" not in str(info.value)


def test_a_generator_whose_test_perturbation_is_not_finite_is_refused_when_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NaN is "any change" to delta.any(): such a file passed the load check, then failed
    # every photo one by one.
    from spdesk.core import photo_protect

    path = _save(tmp_path / "g.safetensors", _model())
    monkeypatch.setattr(
        photo_protect, "compose_delta", lambda raw, *_: torch.full_like(raw, math.nan)
    )
    with pytest.raises(PerturbationFileError, match=r"g\.safetensors .*invalid values"):
        load_generator(path)


def test_train_generator_says_a_folder_has_too_few_photos_before_loading_the_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import spdesk.core.encoders as encoders
    from spdesk.cli import main

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the encoder was loaded first")

    monkeypatch.setattr(encoders, "load_encoder", never)
    (tmp_path / "empty").mkdir()
    argv = ["train-generator", str(tmp_path / "empty"), "--out", str(tmp_path / "g.safetensors")]
    assert main([*argv, "--encoder", "taesd"]) == 2
    assert "holds 0 photo(s)" in capsys.readouterr().err


def test_a_folder_of_broken_photos_is_refused_with_each_counted(
    training: tuple[Path, Path], tmp_path: Path
) -> None:
    """Only the training share was listed: four broken photos read "3 cannot be read", where
    `spdesk train` says "and 1 more" (CLI audit)."""
    from spdesk.core.encoders import load_encoder
    from spdesk.core.errors import ConfigError
    from spdesk.core.train_generator import GeneratorTrainConfig, train_generator
    from tests import protect_samples as samples

    _photos, vae = training
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(4):
        samples.truncated_jpeg(folder / f"broken{i}.jpg")
    config = GeneratorTrainConfig(steps=1, batch=1, size=64, view=48, network=SMALL)
    with pytest.raises(ConfigError) as raised:
        train_generator(folder, load_encoder(str(vae), "cpu"), config)
    message = raised.value.message
    assert "has too few readable photos" in message and message.endswith("; and 1 more.")


def test_train_generator_looks_for_the_photos_once(
    training: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found early for the message, then found again to train: a large folder twice (review)."""
    import spdesk.core.train_generator as core
    from spdesk.cli import main

    def again(*_args: object) -> None:
        raise AssertionError("the folder was searched a second time")

    monkeypatch.setattr(core, "training_photos", again)
    photos, vae = training
    out = tmp_path / "g.safetensors"
    argv = ["train-generator", str(photos), "--out", str(out), "--encoder", str(vae)]
    assert main([*argv, "--steps", "1", "--batch", "1", "--size", "32"]) == 0
    assert out.is_file()
