"""The perturbation file format: round trip and every refusal, with precise messages."""

from __future__ import annotations

import json
import os
import pickle
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from spdesk.core.errors import ConfigError, PerturbationFileError
from spdesk.core.perturbation import (
    FORMAT_NAME,
    check_destination,
    library_path_for,
    library_perturbations,
    load_perturbation,
    perturbation_gain,
    perturbation_label,
    perturbation_reference,
    save_perturbation,
)


def _signs(eps: float = 8, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.choice([-1.0, 1.0], size=(3, size, size)) * eps / 255).astype(np.float32)


def _raw_safetensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=meta)
    return path


def _meta(**overrides: str) -> dict[str, str]:
    meta = {"format": FORMAT_NAME, "format_version": "1", "eps": "8.0"}
    meta.update(overrides)
    return meta


def test_round_trip_keeps_delta_eps_and_typed_metadata(tmp_path: Path) -> None:
    delta = _signs()
    meta = {"name": "mine", "steps": 500, "figures": {"ssim": 0.61}, "transforms": ["jpeg"]}
    path = save_perturbation(tmp_path / "p.safetensors", delta, eps=8, metadata=meta)
    loaded = load_perturbation(path)
    np.testing.assert_array_equal(loaded.delta, delta)
    assert loaded.eps == 8
    assert loaded.metadata["steps"] == 500
    assert loaded.metadata["figures"] == {"ssim": 0.61}
    assert loaded.metadata["transforms"] == ["jpeg"]
    assert loaded.name == "mine" and loaded.size == (16, 16)
    assert list(tmp_path.iterdir()) == [path], "no temp file left behind"


def test_label_and_gain_come_from_the_header_alone(tmp_path: Path) -> None:
    meta = {"name": "Sky ±8", "gain_over_sign": 2.5}
    path = save_perturbation(tmp_path / "sky-8.safetensors", _signs(), eps=8, metadata=meta)
    assert perturbation_label(path) == "Sky ±8", "file names lose '±': the header keeps it"
    assert perturbation_gain(path) == 2.5
    plain = save_perturbation(tmp_path / "plain.safetensors", _signs(), eps=8)
    assert (perturbation_label(plain), perturbation_gain(plain)) == ("plain", None)


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", struct.pack("<Q", 2**40)])
def test_label_of_a_broken_file_is_its_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    assert (perturbation_label(path), perturbation_gain(path)) == ("broken", None)
    assert perturbation_label(tmp_path / "missing.safetensors") == "missing"


def test_at_strength_rescales_to_the_new_budget() -> None:
    from spdesk.core.perturbation import Perturbation

    p = Perturbation(delta=_signs(8), eps=8)
    assert np.abs(p.at_strength(4)).max() == pytest.approx(4 / 255)
    assert p.at_strength(None) is p.delta


def test_a_file_with_a_tiny_budget_rescales_within_the_new_one_not_to_infinity(
    tmp_path: Path,
) -> None:
    """eps = 1e-40 with a pattern inside its rounding tolerance: the float32 scale was
    infinite and ``spdesk protect --strength 8`` ended in an OverflowError, as a bug."""
    path = save_perturbation(
        tmp_path / "tiny.safetensors", np.full((3, 16, 16), 1e-6, np.float32), eps=1e-40
    )
    scaled = load_perturbation(path).at_strength(8)
    assert np.isfinite(scaled).all() and np.abs(scaled).max() <= np.float32(8 / 255)


def test_save_refuses_delta_over_its_budget(tmp_path: Path) -> None:
    with pytest.raises(PerturbationFileError, match="over its stated budget"):
        save_perturbation(tmp_path / "p.safetensors", _signs(9), eps=8)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("tensors", "meta", "message"),
    [
        ({"delta": np.zeros((4, 16, 16), np.float32)}, _meta(), r"shape \(4, 16, 16\)"),
        ({"delta": np.zeros((16, 16), np.float32)}, _meta(), "expected \\(3, height, width\\)"),
        (
            {"delta": np.zeros((3, 16, 16), np.int32)},
            _meta(),
            "stores 'delta' as 'I32'; spdesk reads float32 or float16",
        ),
        ({"delta": np.full((3, 16, 16), np.nan, np.float32)}, _meta(), "NaN or infinite"),
        ({"delta": np.full((3, 16, 16), 0.5, np.float32)}, _meta(), "over its stated budget"),
        ({"delta": np.zeros((3, 16, 16), np.float32)}, _meta(format_version="7"), "version '7'"),
        ({"delta": np.zeros((3, 16, 16), np.float32)}, _meta(format="other"), "not an spdesk"),
        ({"delta": np.zeros((3, 16, 16), np.float32)}, _meta(eps="-3"), "no valid 'eps'"),
        ({"noise": np.zeros((3, 16, 16), np.float32)}, _meta(), "no tensor named 'delta'"),
        ({"delta": np.zeros((3, 2, 2), np.float32)}, _meta(), "outside 8..4096"),
    ],
)
def test_load_refuses_invalid_contents(
    tmp_path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str], message: str
) -> None:
    path = _raw_safetensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(PerturbationFileError, match=message):
        load_perturbation(path)


def test_load_refuses_a_pickle_without_unpickling_it(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("unpickled!",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(PerturbationFileError, match="never loads pickles"):
        load_perturbation(path)


def test_load_refuses_a_torch_zip_checkpoint(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "delta.pt"
    torch.save({"delta": torch.zeros(3, 8, 8)}, path)
    with pytest.raises(PerturbationFileError, match="zip checkpoint"):
        load_perturbation(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (b"hello, world, not a tensor file", "not a safetensors"),
        (struct.pack("<Q", 40) + b'{"delta": {"dtype": "F32", "shape"', "damaged"),
    ],
)
def test_load_refuses_garbage_and_truncation(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(PerturbationFileError, match=message):
        load_perturbation(path)


def test_load_truncated_real_file(tmp_path: Path) -> None:
    path = save_perturbation(tmp_path / "p.safetensors", _signs(size=64), eps=8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PerturbationFileError, match="incomplete"):
        load_perturbation(path)


def test_missing_file_message_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PerturbationFileError, match="not found"):
        load_perturbation(tmp_path / "nope.safetensors")


def test_library_lists_saved_perturbations_by_safe_name() -> None:
    path = library_path_for("My / photos: 2026")
    assert "/" not in path.name.removesuffix(".safetensors").replace("_", "")
    save_perturbation(path, _signs(), eps=8, metadata={"name": "My / photos: 2026"})
    assert library_perturbations() == [path]
    assert json.dumps(load_perturbation(path).metadata["name"]) == '"My / photos: 2026"'


def test_a_library_name_keeps_every_character_a_disk_allows() -> None:
    """ "photos ±8" was filed as "photos _8.safetensors": only what Windows, macOS or Linux
    refuse in a name (and invisible characters) is replaced."""
    assert library_path_for("photos ±8").name == "photos ±8.safetensors"
    assert library_path_for("Été 2026 (Nice) #1 & co, 50%").stem == "Été 2026 (Nice) #1 & co, 50%"
    assert library_path_for('a<b>c:d"e/f\\g|h?i*j').stem == "a_b_c_d_e_f_g_h_i_j"
    assert library_path_for("tab\there\u202e").stem == "tab_here_"
    assert library_path_for("con").stem == "_con" and library_path_for("LPT1.x").stem == "_LPT1.x"


def test_a_library_pattern_filed_under_the_former_safe_name_is_still_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.perturbation import library_name_at

    former = library_path_for("photos ±8").with_name("photos _8.safetensors")
    save_perturbation(former, _signs(), eps=8, metadata={"name": "photos ±8"})
    monkeypatch.chdir(tmp_path)
    assert perturbation_reference("photos ±8") == former
    # Kept in its file: "photos ±8" trained again is not saved as a second one beside it.
    assert library_path_for("photos ±8") == former
    assert library_name_at("photos ±8") == "photos ±8"
    assert library_path_for("photos ?8").name == "photos _8.safetensors"  # another name
    assert library_name_at("photos ?8") == "photos ±8"  # whose file it would take: named


def test_a_bare_name_on_the_command_line_means_the_library_pattern_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = library_path_for("Portraits 2026")
    save_perturbation(saved, _signs(), eps=8, metadata={"name": "Portraits 2026"})
    monkeypatch.chdir(tmp_path)
    assert perturbation_reference("Portraits 2026") == saved
    assert perturbation_reference(saved.stem) == saved
    (tmp_path / "Portraits 2026").write_bytes(b"x")  # a file of that name here comes first
    assert perturbation_reference("Portraits 2026") == Path("Portraits 2026")
    # a path with a folder never means the library; an unknown name stays as given
    assert perturbation_reference("sub/Portraits 2026") == Path("sub/Portraits 2026")
    assert perturbation_reference("Landscapes") == Path("Landscapes")


def test_a_pattern_not_found_lists_the_library_names_to_use_instead(tmp_path: Path) -> None:
    with pytest.raises(PerturbationFileError) as empty_library:
        load_perturbation(tmp_path / "nope.safetensors")
    assert empty_library.value.hint is None
    save_perturbation(library_path_for("Portraits"), _signs(), eps=8, metadata={"name": "P"})
    with pytest.raises(PerturbationFileError) as error:
        load_perturbation(tmp_path / "nope.safetensors")
    assert error.value.hint == "Patterns in your library, by name (newest first): Portraits."


def test_a_forged_huge_pattern_is_refused_from_its_header_before_loading(tmp_path: Path) -> None:
    import tracemalloc

    side = 12_000  # 3x12000x12000 float32 would be 1.7 GB
    header = {
        "delta": {
            "dtype": "F32",
            "shape": [3, side, side],
            "data_offsets": [0, 3 * side * side * 4],
        },
        "__metadata__": _meta(),
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(PerturbationFileError, match=r"12000x12000 is outside 8\.\.4096"):
            load_perturbation(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_a_float64_pattern_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = _raw_safetensors(
        tmp_path / "f64.safetensors", {"delta": _signs().astype(np.float64)}, _meta()
    )
    with pytest.raises(PerturbationFileError, match="float64") as info:
        load_perturbation(path)
    assert "float32" in (info.value.hint or "")


@pytest.mark.parametrize(("first_bytes", "modulus"), [(b"\x80", 1 << 8), (b"PK", 1 << 16)])
def test_a_perturbation_whose_header_length_starts_like_a_pickle_or_zip_loads(
    tmp_path: Path, first_bytes: bytes, modulus: int
) -> None:
    """A trained file's header length is whatever its metadata makes it: 1664 bytes starts the
    file b"\\x80\\x06" (a pickle's first byte), 19280 bytes b"PK" (a zip's)."""
    delta = np.full((3, 8, 8), 4 / 255, np.float32)
    path = save_perturbation(tmp_path / "mine.safetensors", delta, eps=8, metadata={"notes": ""})
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])  # padded to 8 bytes
    wanted = int.from_bytes(first_bytes, "little")
    target = length + (wanted - length) % modulus  # a multiple of 8 too
    save_perturbation(path, delta, eps=8, metadata={"notes": "x" * (target - length)})
    assert path.read_bytes().startswith(first_bytes)
    assert load_perturbation(path).eps == 8


def _stored_as(path: Path, dtype: str, itemsize: int) -> Path:
    """A perturbation file whose 'delta' is stored as ``dtype`` (numpy cannot write some)."""
    size = 3 * 16 * 16 * itemsize
    header = {"delta": {"dtype": dtype, "shape": [3, 16, 16], "data_offsets": [0, size]}}
    header["__metadata__"] = _meta()  # type: ignore[assignment]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(size))
    return path


@pytest.mark.parametrize(
    ("dtype", "itemsize", "named"),
    [("BF16", 2, "bfloat16"), ("F8_E4M3", 1, "float8"), ("I8", 1, "'I8'")],
)
def test_a_pattern_stored_in_a_type_numpy_cannot_read_is_refused_by_name(
    tmp_path: Path, dtype: str, itemsize: int, named: str
) -> None:
    path = _stored_as(tmp_path / "odd.safetensors", dtype, itemsize)
    with pytest.raises(PerturbationFileError, match=f"stores 'delta' as {named}; spdesk reads"):
        load_perturbation(path)
    assert _stored_as(tmp_path / "half.safetensors", "F16", 2).is_file()
    assert load_perturbation(tmp_path / "half.safetensors").eps == 8.0


@pytest.mark.parametrize("json_keys", ["5", "null", '{"a": 1}', '["name", 3]'])
def test_metadata_whose_json_keys_is_not_a_list_of_names_still_loads(
    tmp_path: Path, json_keys: str
) -> None:
    path = _raw_safetensors(
        tmp_path / "p.safetensors", {"delta": _signs()}, _meta(json_keys=json_keys, name="x")
    )
    assert load_perturbation(path).metadata["name"] == "x"


def test_an_out_that_is_not_a_pattern_is_refused_in_one_sentence(tmp_path: Path) -> None:
    """The reason in brackets kept its own full stop: "(notes.txt is not a safetensors
    perturbation file.)." (spdesk train and train-generator --out)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(ConfigError) as refused:
        check_destination(notes)
    assert refused.value.message == (
        f"{notes} exists and is not an spdesk perturbation file, so it was not replaced "
        "(notes.txt is not a safetensors perturbation file)."
    )
    assert notes.read_text() == "my notes"


def test_a_folder_given_as_a_perturbation_file_is_called_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mine.safetensors"
    folder.mkdir()
    with pytest.raises(PerturbationFileError, match="is a folder, not a perturbation file"):
        load_perturbation(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_at_the_patterns_path_is_labelled_by_its_name_without_blocking(
    tmp_path: Path,
) -> None:
    """Reading its header waited for a writer for good: the app hung at every start, the pipe
    being the saved choice."""
    pipe = tmp_path / "pattern.safetensors"
    os.mkfifo(pipe)
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(perturbation_label(pipe)), daemon=True)
    reader.start()
    reader.join(5)
    assert done == ["pattern"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_given_as_the_pattern_is_called_a_special_file_and_never_opened(
    tmp_path: Path,
) -> None:
    """It was "Perturbation file not found", of a file that is there; a protect job opened it
    to hash it first, waiting for a writer for good."""
    from spdesk.core.jobs import ProtectJob, ProtectSettings

    pipe = tmp_path / "pattern.safetensors"
    os.mkfifo(pipe)
    errors: list[str] = []

    def protect() -> None:
        (tmp_path / "in").mkdir()
        settings = ProtectSettings(perturbation=pipe, mode="universal")
        try:
            ProtectJob([tmp_path / "in"], tmp_path / "out", settings).run()
        except PerturbationFileError as error:
            errors.append(str(error))

    job = threading.Thread(target=protect, daemon=True)
    job.start()
    job.join(10)
    assert errors and "is a special file (a named pipe or a device)" in errors[0]
    with pytest.raises(PerturbationFileError, match="special file"):
        load_perturbation(pipe)


def test_a_pattern_file_replaced_while_a_job_reads_it_stops_the_job_before_any_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outputs are recorded under the file's hash: the old pattern's outputs recorded
    under the new file's hash would be skipped as done by a run with the new pattern."""
    from spdesk.core.jobs import ProtectJob, ProtectSettings
    from spdesk.core.jobs import job as job_module
    from tests import protect_samples as samples

    path = samples.perturbation_file(tmp_path, seed=0)
    (tmp_path / "new").mkdir()
    replacement = samples.perturbation_file(tmp_path / "new", seed=1)
    real_load = job_module.load_perturbation

    def load_then_replaced(given: Path) -> object:
        loaded = real_load(given)
        path.write_bytes(replacement.read_bytes())  # retrained into the same file meanwhile
        return loaded

    monkeypatch.setattr(job_module, "load_perturbation", load_then_replaced)
    samples.photo(tmp_path / "in" / "a.png")
    settings = ProtectSettings(perturbation=path, working_size=16)
    with pytest.raises(PerturbationFileError, match="changed while spdesk was reading it"):
        ProtectJob([tmp_path / "in"], tmp_path / "out", settings).run()
    assert not (tmp_path / "out" / "a.protected.png").exists()


def test_a_file_far_larger_than_any_pattern_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A 2 GB file (a small pattern and junk beside it) was read whole to be hashed: 2 GB of
    memory for a protect job."""
    from spdesk.core.perturbation import MAX_FILE_BYTES

    path = save_perturbation(tmp_path / "padded.safetensors", _signs(), eps=8)
    with path.open("r+b") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(PerturbationFileError, match=r"a perturbation file is at most \d+ MiB"):
        load_perturbation(path)


def test_a_protect_job_refuses_a_file_larger_than_any_pattern_before_hashing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.jobs import ProtectJob, ProtectSettings
    from spdesk.core.jobs import job as job_module
    from spdesk.core.perturbation import MAX_FILE_BYTES

    path = save_perturbation(tmp_path / "padded.safetensors", _signs(), eps=8)
    with path.open("r+b") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    hashed: list[Path] = []
    monkeypatch.setattr(job_module, "_file_sha256", hashed.append)
    (tmp_path / "in").mkdir()
    settings = ProtectSettings(perturbation=path, mode="universal")
    with pytest.raises(PerturbationFileError, match="a perturbation file is at most"):
        ProtectJob([tmp_path / "in"], tmp_path / "out", settings).run()
    assert not hashed


def test_library_names_that_share_a_file_are_told_apart_and_long_names_fit() -> None:
    from spdesk.core.perturbation import LIBRARY_STEM_BYTES, library_name_at

    first = library_path_for("Portraits *8")
    assert library_path_for("Portraits ?8") == first  # what is made file-safe is alike
    assert library_name_at("Portraits ?8") is None
    save_perturbation(first, _signs(), eps=8, metadata={"name": "Portraits *8"})
    assert library_name_at("Portraits ?8") == "Portraits *8"  # to say which one is there
    long = library_path_for("é" * 300)  # was "File name too long": an unexpected error
    assert len(long.stem.encode()) <= LIBRARY_STEM_BYTES and not long.exists()


def _training_checkpoint(path: Path) -> Path:
    """A checkpoint as spdesk train --checkpoint writes it (it holds a 'delta' too)."""
    from types import SimpleNamespace

    import torch

    from spdesk.core.train import save_checkpoint

    trainer = SimpleNamespace(
        config=SimpleNamespace(resume_key=lambda: "0123abcd", resumable_settings=lambda: {}),
        fingerprint="feed",
        validation=[],
        optimizer=SimpleNamespace(
            state_dict=lambda: {"delta": torch.zeros(3, 16, 16), "step": torch.tensor(4)},
            step_index=4,
        ),
        on_event=lambda event: None,
    )
    save_checkpoint(path, trainer)  # type: ignore[arg-type]
    return path


def test_load_names_a_training_checkpoint_chosen_as_the_pattern(tmp_path: Path) -> None:
    path = _training_checkpoint(tmp_path / "run.ckpt")
    with pytest.raises(PerturbationFileError, match="training checkpoint") as caught:
        load_perturbation(path)
    assert "--resume" in (caught.value.hint or "")
    assert "format None" not in str(caught.value)


def test_a_foreign_safetensors_file_is_refused_in_words_not_as_format_none(
    tmp_path: Path,
) -> None:
    """A safetensors file of another program, with a 'delta' tensor or without metadata, was
    refused "(format None)" (training audit)."""
    import torch
    from safetensors.torch import save_file

    from spdesk.core.generator_file import read_spec

    foreign = tmp_path / "other.safetensors"
    save_file({"delta": torch.zeros(3, 8, 8)}, str(foreign))
    for load in (load_perturbation, read_spec):
        with pytest.raises(PerturbationFileError) as caught:
            load(foreign)
        assert "None" not in str(caught.value)
        assert "it carries no spdesk format tag" in str(caught.value)
    save_file({"delta": torch.zeros(3, 8, 8)}, str(foreign), metadata={"format": "theirs"})
    with pytest.raises(PerturbationFileError, match="its format is 'theirs'"):
        load_perturbation(foreign)


def test_load_names_a_file_cut_short(tmp_path: Path) -> None:
    whole = save_perturbation(tmp_path / "whole.safetensors", _signs(), eps=8)
    data = whole.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])  # a copy or a download stopped half way
    with pytest.raises(PerturbationFileError, match=r"cut\.safetensors is incomplete") as caught:
        load_perturbation(cut)
    assert f"{len(data) // 2:,} bytes of the {len(data):,}" in str(caught.value)
    assert "deserializing" not in str(caught.value)  # safetensors' own words
