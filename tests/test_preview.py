"""The AI-edit preview with tiny random-weight SD 1.5 components, end to end on CPU."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFont
from tiny_sd import save_tiny_sd

from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    ModelMissingError,
    OutputError,
    OutputExistsError,
    UnsupportedImageError,
)
from spdesk.core.events import CancelToken, Event, Progress
from spdesk.core.perturbation import Perturbation
from spdesk.core.preview import (
    PRESETS,
    PreviewEngine,
    PreviewRequest,
    comparison_sheet,
    default_mask,
    output_paths,
    resolve_prompt,
    save_outputs,
    verdict_for,
    wrap_to_width,
)

FAST = PreviewRequest(prompt=PRESETS["P3"], steps=4, strength=0.5, guidance=2.0, working_size=64)


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-sd")
    return {
        "img2img": save_tiny_sd(root / "sd"),
        "inpaint": save_tiny_sd(root / "inpaint", inpaint=True),
    }


@pytest.fixture(scope="module")
def engine(sd_dirs: dict[str, Path]) -> PreviewEngine:
    return PreviewEngine(sd_dirs["img2img"], inpaint_dir=sd_dirs["inpaint"], device="cpu")


def _photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 96 * 128 * 3).reshape(96, 128, 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _pert(eps: float = 16, zero: bool = False) -> Perturbation:
    rng = np.random.default_rng(1)
    delta = rng.choice([-1.0, 1.0], size=(3, 64, 64)) * eps / 255
    return Perturbation(delta=(delta * (0 if zero else 1)).astype(np.float32), eps=eps)


def test_identical_inputs_with_the_same_seed_give_identical_edits(engine: PreviewEngine) -> None:
    result = engine.run(_photo(), _pert(zero=True), FAST)
    np.testing.assert_array_equal(result.original, result.protected)
    # The edits run as one batch; CPU kernels may round a batch row differently by one level.
    difference = np.abs(result.edit_original.astype(int) - result.edit_protected)
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.001


def test_protection_changes_the_edit_and_figures_are_in_range(engine: PreviewEngine) -> None:
    result = engine.run(_photo(), _pert(16), FAST)
    assert result.edit_original.shape == (64, 88, 3)  # working view, multiple of 8
    assert not np.array_equal(result.edit_original, result.edit_protected)
    for key in ("protected_edit", "noise_edit"):
        figures = result.figures[key]
        assert -1 <= float(figures["ssim"] or 0) <= 1
        assert 0 < float(figures["psnr"] or 0) <= 100
        assert 0 <= float(figures["vifp"] or 0) <= 1.01
    assert 15 < float(result.figures["visibility"]["psnr"] or 0) < 60
    assert result.verdict and "unfiltered" in result.note


def test_previews_are_reproducible(engine: PreviewEngine) -> None:
    a = engine.run(_photo(), _pert(), FAST)
    b = engine.run(_photo(), _pert(), FAST)
    np.testing.assert_array_equal(a.edit_protected, b.edit_protected)
    np.testing.assert_array_equal(a.edit_noisy, b.edit_noisy)


def test_pipeline_is_loaded_once_and_reused(engine: PreviewEngine) -> None:
    assert engine.pipeline("img2img") is engine.pipeline("img2img")


def test_release_frees_the_pipelines_and_a_later_preview_loads_them_again(
    sd_dirs: dict[str, Path],
) -> None:
    import gc
    import weakref

    with PreviewEngine(sd_dirs["img2img"], device="cpu") as own:
        loaded = weakref.ref(own.pipeline("img2img"))
        own.release()
        gc.collect()
        assert loaded() is None  # nothing else kept the pipeline (gigabytes with SD 1.5)
        reloaded = weakref.ref(own.pipeline("img2img"))
        assert reloaded() is not None
    gc.collect()
    assert reloaded() is None  # the end of the with block released it too


def test_release_in_another_thread_leaves_the_collection_to_the_main_thread(
    sd_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection there frees whatever garbage the process holds there, an app's Qt objects
    included (see spdesk.gui.garbage, which collects on the GUI thread for it)."""
    import gc
    import threading

    collected_in: list[str] = []
    real_collect = gc.collect
    monkeypatch.setattr(
        gc,
        "collect",
        lambda *args: collected_in.append(threading.current_thread().name) or real_collect(*args),
    )
    own = PreviewEngine(sd_dirs["img2img"], device="cpu")
    own.pipeline("img2img")
    releasing = threading.Thread(target=own.release, name="a-preview-task")
    releasing.start()
    releasing.join()
    assert "a-preview-task" not in collected_in and not own._pipes
    own.pipeline("img2img")
    own.release()  # on the main thread (the command line): collected at once
    assert threading.main_thread().name in collected_in


def test_progress_per_step_and_cancel_within_one_step(engine: PreviewEngine) -> None:
    cancel = CancelToken()
    steps: list[Event] = []

    def on_event(event: Event) -> None:
        steps.append(event)
        cancel.cancel()

    request = PreviewRequest(steps=20, strength=1.0, guidance=2.0, working_size=64)
    with pytest.raises(Cancelled):
        engine.run(_photo(), _pert(), request, on_event=on_event, cancel=cancel)
    assert len(steps) == 1 and isinstance(steps[0], Progress)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_progress_counts_the_steps_the_pipeline_runs_and_ends_at_its_total(
    engine: PreviewEngine, mode: str
) -> None:
    events: list[Event] = []
    mask = np.ones((96, 128), bool) if mode == "inpaint" else None
    # 2 steps at edit strength 0.5: one asked; PNDM (SD 1.5's scheduler, and the tiny one's)
    # runs one more, which once read 200%.
    request = PreviewRequest(mode=mode, steps=2, strength=0.5, working_size=64, mask=mask)
    engine.run(_photo(), _pert(), request, on_event=events.append)
    steps = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert steps and all(done <= total for done, total in steps), steps
    assert steps[-1][0] == steps[-1][1]


def test_inpainting_with_a_mask_image(engine: PreviewEngine) -> None:
    mask = np.zeros((96, 128), bool)
    mask[:, 64:] = True
    request = PreviewRequest(mode="inpaint", steps=3, guidance=2.0, working_size=64, mask=mask)
    result = engine.run(_photo(), _pert(), request)
    assert result.edit_protected.shape == result.original.shape
    assert not np.array_equal(result.edit_original, result.edit_protected)
    assert result.to_json()["request"]["custom_mask"] is True
    assert not any("mask" in warning for warning in result.warnings)  # 96x128, as the photo


def test_mask_files_are_read_as_the_programs_that_draw_them_save_them(tmp_path: Path) -> None:
    from PIL import Image

    from spdesk.core.errors import ImageError, NotAnImageError
    from spdesk.core.preview import load_mask

    centre = np.zeros((32, 32), bool)
    centre[8:24, 8:24] = True
    grey = np.where(centre, 255, 0).astype(np.uint8)
    painted = np.zeros((32, 32, 4), np.uint8)  # white strokes on a transparent layer
    painted[centre] = 255
    holes = np.full((32, 32, 4), 90, np.uint8)  # an opaque picture, its centre cut out
    holes[..., 3] = np.where(centre, 0, 255)
    for name, pixels in (("bw.png", grey), ("painted.png", painted), ("holes.png", holes)):
        Image.fromarray(pixels).save(tmp_path / name)
        np.testing.assert_array_equal(load_mask(tmp_path / name), centre, err_msg=name)

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ConfigError, match=r"black\.png marks nothing to redraw"):
        load_mask(tmp_path / "black.png")
    with pytest.raises(ImageError, match=r"The mask .*typo\.png was not found"):
        load_mask(tmp_path / "typo.png")
    with pytest.raises(NotAnImageError, match="is a folder, not a mask file"):
        load_mask(tmp_path)


def test_a_mask_shaped_unlike_the_photo_is_stretched_with_a_warning(
    engine: PreviewEngine,
) -> None:
    square = np.zeros((30, 30), bool)
    square[:, 15:] = True
    request = PreviewRequest(mode="inpaint", steps=2, guidance=2.0, working_size=64, mask=square)
    result = engine.run(_photo(), _pert(), request)  # 128x96
    assert any("The mask (30x30) is not shaped like the photo" in w for w in result.warnings)


def test_default_masks_keep_or_regenerate_the_centre() -> None:
    keep = default_mask(8, 8, "keep-centre")
    assert not keep[4, 4] and keep[0, 0]
    np.testing.assert_array_equal(default_mask(8, 8, "regenerate-centre"), ~keep)


def test_missing_model_names_the_download_command(tmp_path: Path) -> None:
    engine = PreviewEngine(tmp_path / "no-model", device="cpu")
    with pytest.raises(ModelMissingError) as info:
        engine.run(_photo(), _pert(), FAST)
    assert "spdesk models download --for preview" in (info.value.hint or "")


@pytest.mark.parametrize(("mode", "feature"), [("img2img", "preview"), ("inpaint", "inpaint")])
def test_an_empty_model_store_names_the_download_command(mode: str, feature: str) -> None:
    engine = PreviewEngine(device="cpu")  # no folder given: asks the (empty, isolated) store
    with pytest.raises(ModelMissingError) as info:
        engine.model_dir(mode)  # type: ignore[arg-type]
    error = info.value
    assert f"spdesk models download --for {feature}" in f"{error} {error.hint or ''}"


def test_a_black_edit_is_never_reported_as_protection(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    black = np.zeros((64, 88, 3), np.uint8)
    grey = np.full((64, 88, 3), 128, np.uint8)
    monkeypatch.setattr(engine, "_edit", lambda *args: [grey, black, grey])
    result = engine.run(_photo(), _pert(), FAST)
    assert result.worked is None
    assert "blank or black" in result.verdict


def test_the_record_of_a_blank_edit_is_strict_json(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Figures a blank edit leaves undefined (VIF of a flat picture) are null, never NaN,
    which strict JSON parsers refuse."""
    black = np.zeros((64, 88, 3), np.uint8)
    monkeypatch.setattr(engine, "_edit", lambda *args: [black, black, black])
    result = engine.run(_photo(), _pert(), FAST)
    assert any(v != v for v in result.figures["protected_edit"].values() if v is not None)
    paths = save_outputs(result, tmp_path, stem="photo")
    record = json.loads(paths["json"].read_text(), parse_constant=_no_constants)
    assert record["figures"]["protected_edit"]["vifp"] is None


def test_verdict_is_calibrated_against_noise() -> None:
    strong, _ = verdict_for({"ssim": 0.4}, {"ssim": 0.85}, blank=False)
    none_text, none_worked = verdict_for({"ssim": 0.84}, {"ssim": 0.85}, blank=False)
    assert strong.startswith("Protection worked")
    assert none_worked is False and "No clear protection" in none_text


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_sheet_and_json_record(engine: PreviewEngine, tmp_path: Path) -> None:
    result = engine.run(_photo(), _pert(), FAST)
    sheet = comparison_sheet(result)
    assert sheet.width > 2 * 88 and sheet.height > 2 * 64
    paths = save_outputs(result, tmp_path / "out", stem="photo")
    record = json.loads(paths["json"].read_text())
    assert record["figures"]["protected_edit"]["ssim"] == result.figures["protected_edit"]["ssim"]
    assert all(path.is_file() for path in paths.values())


def test_sheet_wraps_the_verdict_inside_a_narrow_sheet(engine: PreviewEngine) -> None:
    """A web-size photo makes a sheet narrower than the verdict's line: the verdict and its
    advice are wrapped onto more lines, none running into the right margin."""
    result = engine.run(_photo(), _pert(), FAST)
    sheet = comparison_sheet(result)
    pad = 16
    text_top = 2 * (result.original.shape[0] + max(28, result.original.shape[0] // 16) + pad)
    right_margin = np.asarray(sheet)[text_top:, -pad:]
    assert (right_margin == 255).all(), "text ran into the sheet's right margin"
    one_line = comparison_sheet(replace(result, verdict="Short."))
    assert sheet.height > one_line.height  # the long verdict took more lines


def test_wrap_to_width_keeps_every_word_within_the_width() -> None:
    font = ImageFont.load_default(size=14)
    text = "No clear protection: the edit changed about as much as with random noise. Try more."
    lines = wrap_to_width(text, font, 120)
    assert " ".join(lines) == text and len(lines) > 1
    assert all(font.getlength(line) <= 120 for line in lines)
    assert wrap_to_width("unbreakableword" * 4, font, 20) == ["unbreakableword" * 4]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PreviewRequest(strength=0), "strength"),
        (PreviewRequest(steps=0), "Steps"),
        (PreviewRequest(guidance=0.5), "Guidance"),
        (PreviewRequest(working_size=100), "multiple of 8"),
        # 1 step at strength 0.5: diffusers ran int(0.5) = 0 steps and crashed on empty latents
        (PreviewRequest(steps=1, strength=0.5), "at least 2 steps"),
        (PreviewRequest(steps=200, strength=0.004), "raise the edit strength"),  # not 250 steps
    ],
)
def test_bad_settings_are_refused_before_work(request_: PreviewRequest, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        request_.validate()


@pytest.mark.parametrize("seed", [-1, 2**63, 10**20])
def test_a_seed_the_generator_cannot_take_is_refused(seed: int) -> None:
    with pytest.raises(ConfigError, match=rf"seed must be between 0 and 2\*\*63 - 1, got {seed}"):
        PreviewRequest(seed=seed).validate()
    PreviewRequest(seed=2**63 - 1).validate()


@pytest.mark.parametrize("guidance", [float("nan"), float("inf")])
def test_a_guidance_that_is_not_a_finite_number_is_refused(guidance: float) -> None:
    with pytest.raises(ConfigError, match="Guidance must be a number of at least 1"):
        PreviewRequest(guidance=guidance).validate()


@pytest.mark.parametrize(
    "request_",
    [
        PreviewRequest(mask=np.ones((8, 8), bool)),
        PreviewRequest(mask_mode="regenerate-centre"),
    ],
)
def test_a_mask_without_inpainting_is_refused_not_ignored(request_: PreviewRequest) -> None:
    with pytest.raises(ConfigError, match="only used by inpainting") as info:
        request_.validate()
    assert "--mode inpaint" in (info.value.hint or "")
    replace(request_, mode="inpaint").validate()


def test_an_inpainting_model_for_an_img2img_edit_is_refused_before_loading(
    sd_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.models import loading

    def no_loading(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the pipeline was loaded")

    monkeypatch.setattr(loading, "load_pipeline_from", no_loading)
    engine = PreviewEngine(sd_dirs["inpaint"], device="cpu")
    with pytest.raises(ConfigError, match="is an inpainting model: use --mode inpaint"):
        engine.run(_photo(), _pert(), FAST)


def test_prompt_presets_and_free_text() -> None:
    assert resolve_prompt(None, "p2") == "apply sunset lighting"
    assert resolve_prompt("a cat", None) == "a cat"
    with pytest.raises(ConfigError, match="P1, P2, P3, P4"):
        resolve_prompt(None, "P9")


def test_the_engine_refuses_a_photo_too_small_to_edit(engine: PreviewEngine) -> None:
    strip = np.full((20, 4000, 3), 128, np.uint8)
    with pytest.raises(UnsupportedImageError, match="4000x20 pixels: too small"):
        engine.run(strip, _pert(), FAST)


def test_outputs_that_cannot_be_written_are_a_named_error(
    engine: PreviewEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from spdesk.core.errors import DiskFullError, OutputError

    result = engine.run(_photo(), _pert(), FAST)
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(OutputError, match="a file has that name"):
        save_outputs(result, tmp_path / "taken")

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as disk:
        disk.setattr(os, "open", full)
        with pytest.raises(DiskFullError) as info:
            save_outputs(result, tmp_path / "full")
    assert "run the same job" not in info.value.user_text()  # a preview is not a job
    paths = save_outputs(result, tmp_path / "made")
    assert sorted(p.name for p in (tmp_path / "made").iterdir()) == sorted(
        p.name for p in paths.values()
    )


def test_tiles_never_take_the_names_of_protected_photos(tmp_path: Path) -> None:
    """``spdesk protect`` writes NAME.protected.png: a preview tile of that name would replace
    the full-size protected photo with a small working view."""
    names = [path.name for path in output_paths(tmp_path, "cat").values()]
    assert "cat.protected.png" not in names and "cat.preview-protected.png" in names
    assert len(set(names)) == len(names)


def test_outputs_already_there_are_refused_unless_replacing(
    engine: PreviewEngine, tmp_path: Path
) -> None:
    from spdesk.core.preview import check_outputs

    result = engine.run(_photo(), _pert(), FAST)
    save_outputs(result, tmp_path, stem="photo")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match=r"photo\.sheet\.png") as info:
        check_outputs(tmp_path, "photo")
    assert "--force" in (info.value.hint or "")
    with pytest.raises(OutputExistsError):
        save_outputs(result, tmp_path, stem="photo")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    check_outputs(tmp_path, "photo", replace=True)
    save_outputs(result, tmp_path, stem="photo", replace=True)


def test_an_output_that_cannot_be_written_leaves_none_of_the_others(
    engine: PreviewEngine, tmp_path: Path
) -> None:
    """A folder in the JSON record's place is refused by the check before the edit, and a
    save that fails all the same leaves no half preview behind."""
    from spdesk.core.preview import check_outputs

    (tmp_path / "photo.json").mkdir()
    with pytest.raises(OutputError, match=r"photo\.json: a folder has that name"):
        check_outputs(tmp_path, "photo", replace=True)
    result = engine.run(_photo(), _pert(), FAST)
    with pytest.raises(OutputError):
        save_outputs(result, tmp_path, stem="photo", replace=True)
    assert [path.name for path in tmp_path.iterdir()] == ["photo.json"]


def test_a_forced_save_that_fails_leaves_the_earlier_preview_whole(
    engine: PreviewEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--force over an earlier preview, one of whose tiles cannot be replaced (open in a viewer
    on Windows, immutable): the files written before it were deleted, the earlier preview's
    sheet and record with them."""
    import errno
    import os

    from spdesk.core.files import TEMP_SUFFIX

    result = engine.run(_photo(), _pert(), FAST)
    save_outputs(result, tmp_path, stem="photo")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    stuck = output_paths(tmp_path, "photo")["protected"]

    def refusing(move: Any) -> Any:
        def move_unless_stuck(source: Any, target: Any) -> Any:
            if stuck in (Path(source), Path(target)):  # neither moved nor replaced
                raise OSError(errno.EPERM, "Operation not permitted")
            return move(source, target)

        return move_unless_stuck

    other = engine.run(_photo(seed=5), _pert(), FAST)
    monkeypatch.setattr(os, "rename", refusing(os.rename))
    monkeypatch.setattr(os, "replace", refusing(os.replace))
    with pytest.raises(OutputError, match=r"photo\.preview-protected\.png"):
        save_outputs(other, tmp_path, stem="photo", replace=True)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    monkeypatch.undo()
    save_outputs(other, tmp_path, stem="photo", replace=True)  # once it can be, it is
    assert (tmp_path / "photo.json").read_bytes() != before["photo.json"]
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_the_photo_itself_is_never_an_output_even_when_replacing(tmp_path: Path) -> None:
    """A photo named like the record (tench.json) previewed into its own folder with --force
    was replaced by the JSON record."""
    from spdesk.core.preview import check_outputs

    photo = tmp_path / "tench.json"
    Image.fromarray(_photo()).save(photo, format="JPEG")
    before = photo.read_bytes()
    with pytest.raises(OutputError, match=r"tench\.json is the photo being previewed"):
        check_outputs(tmp_path, "tench", replace=True, photo=photo)
    assert photo.read_bytes() == before
    check_outputs(tmp_path / "elsewhere", "tench", replace=True, photo=photo)


def _views_as_edits(engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's "edits" are its inputs: what it was given to edit, without running SD."""
    monkeypatch.setattr(engine, "_edit", lambda views, *_args: list(views))


def test_the_noise_baseline_moves_each_value_as_far_as_the_protection_does(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photo mode shapes its change (none on flat areas, less on large photos): noise of flat
    ±eps everywhere was far stronger than the protection and biased the verdict."""
    _views_as_edits(engine, monkeypatch)
    photo = _photo()
    protected = photo.copy()
    protected[:, 64:] = np.clip(photo[:, 64:].astype(int) + 3, 0, 255)  # left half unchanged
    result = engine.run(photo, _pert(16), FAST, protected=protected)
    size = np.abs(result.protected.astype(int) - result.original)
    noise = np.abs(result.noisy.astype(int) - result.original)
    np.testing.assert_array_equal(noise, size)
    assert not np.array_equal(result.noisy, result.protected)  # random directions, not its own
    again = engine.run(photo, _pert(16), FAST, protected=protected)
    np.testing.assert_array_equal(again.noisy, result.noisy)  # seeded by the edit's seed


def test_noise_next_to_black_or_white_keeps_the_protection_s_size() -> None:
    from spdesk.core.preview import noise_baseline

    original = np.array([[[0, 255, 128]]] * 64, np.uint8).reshape(8, 8, 3)
    protected = (original.astype(int) + np.array([5, -5, 2])).astype(np.uint8)
    for seed in range(4):
        noisy = noise_baseline(original, protected, seed)
        np.testing.assert_array_equal(
            np.abs(noisy.astype(int) - original), np.abs(protected.astype(int) - original)
        )


def _photo_file(tmp_path: Path, size: tuple[int, int] = (128, 96)) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(_photo()).resize(size).save(path)
    return path


def test_photo_mode_never_reads_a_pattern_file(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pattern chosen for universal mode and since deleted is not photo mode's business."""
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.usecases import preview_photo

    _views_as_edits(engine, monkeypatch)
    options = ApplyOptions(working_size=64, strength=8)
    outcome = preview_photo(
        _photo_file(tmp_path), Path("/deleted/file"), FAST, options, engine, protection="photo"
    )
    assert not np.array_equal(outcome.photo, outcome.protected)


def test_the_preview_gives_the_protected_photo_s_psnr_as_protect_does(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """At full size, as protect and the dialog's status line say it, not at the working view."""
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.usecases import preview_photo, protect_for_preview

    _views_as_edits(engine, monkeypatch)
    photo, options = _photo_file(tmp_path, (256, 192)), ApplyOptions(working_size=64, strength=8)
    view = protect_for_preview(photo, None, options, protection="photo")
    outcome = preview_photo(photo, None, FAST, options, engine, protection="photo")
    assert view.psnr is not None
    assert outcome.result.figures["visibility"]["psnr"] == round(view.psnr, 2)


def test_stopping_an_edit_does_not_decode_the_latents(
    engine: PreviewEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding what was cancelled made Stop wait about 16 s with SD 1.5 on a CPU."""
    vae = engine.pipeline("img2img").vae
    decoded: list[object] = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda *a, **k: decoded.append(a) or decode(*a, **k))
    cancel = CancelToken()
    request = PreviewRequest(steps=20, strength=1.0, guidance=2.0, working_size=64)
    with pytest.raises(Cancelled):
        engine.run(_photo(), _pert(), request, on_event=lambda _e: cancel.cancel(), cancel=cancel)
    assert decoded == []


def test_the_protection_s_figures_and_difference_view_match_a_full_size_reference() -> None:
    """Banded and sampled, so a 48 MP photo needs no full-size float copies (gigabytes)."""
    from spdesk.core.apply import photo_change
    from spdesk.core.usecases import DIFFERENCE_SIDE, amplified_difference

    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (1500, 2600, 3), dtype=np.uint8)
    protected = np.clip(photo + rng.integers(-6, 7, photo.shape), 0, 255).astype(np.uint8)
    change = protected.astype(np.float64) - photo
    psnr, largest = photo_change(photo, protected)
    assert psnr == pytest.approx(10 * np.log10(255**2 / np.mean(change**2)), abs=1e-9)
    assert largest == int(np.abs(change).max()) and photo_change(photo, photo) == (None, 0)
    difference = amplified_difference(photo, protected)
    assert max(difference.shape[:2]) <= DIFFERENCE_SIDE
    step = 3  # every third pixel: 2600 px down to at most 1024
    expected = np.clip(np.rint(128 + 8 * change[::step, ::step]), 0, 255)
    np.testing.assert_array_equal(difference, expected)
