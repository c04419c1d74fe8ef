"""The protect job: every bad input of issue 2, collisions, manifest, resume, cancel, disk full.

Each test registers its input folder with ``originals_guard`` after creating it: the originals'
bytes must be unchanged when the test ends.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import hashlib
import io
import itertools
import json
import os
import stat
import subprocess
import sys
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spdesk.core import export, files, jobs
from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    OutputError,
    OutputPermissionError,
    PerturbationFileError,
)
from spdesk.core.events import CancelToken, Event
from spdesk.core.files import LOCK_NAME, TEMP_SUFFIX
from spdesk.core.jobs import (
    FileDone,
    FileFailed,
    FileProgress,
    FileSkipped,
    JobCancelled,
    JobFinished,
    JobReport,
    JobStarted,
    PhotosFound,
    ProtectJob,
    ProtectSettings,
    SkipReason,
)
from spdesk.core.jobs.naming import OutputNamer
from spdesk.core.keys import ENV_KEY
from spdesk.core.manifest import MANIFEST_NAME, SHARDS_FOLDER, read_job_manifest
from tests import protect_samples as samples


def _run(
    sources: list[Path],
    out: Path,
    settings: ProtectSettings,
    cancel: CancelToken | None = None,
    hook: object = None,
) -> tuple[JobReport, list[Event]]:
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if callable(hook):
            hook(event)

    report = ProtectJob(sources, out, settings).run(on_event, cancel)
    return report, events


def _cancelled_run(
    sources: list[Path], out: Path, settings: ProtectSettings, when: Callable[[Event], bool]
) -> JobReport:
    """Run until ``when(event)`` holds for an event, cancel there; the cancelled job's report."""
    cancel = CancelToken()

    def hook(event: Event) -> None:
        if when(event):
            cancel.cancel()

    with pytest.raises(JobCancelled) as info:
        _run(sources, out, settings, cancel=cancel, hook=hook)
    return info.value.report


def _fine_tuning(settings: ProtectSettings, encoder: str, **changes: Any) -> ProtectSettings:
    """Fine-tune mode with the tiny encoder on the CPU, a few steps at a 16 px working size."""
    tuned = ProtectSettings(
        perturbation=settings.perturbation,
        mode="finetune",
        finetune_steps=3,
        encoder=encoder,
        device="cpu",
        working_size=16,
    )
    return dataclasses.replace(tuned, **changes)


def _outputs(out: Path) -> list[str]:
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)  # spdesk's bookkeeping
    )


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _decodes(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.copy()


def _reasons(report: JobReport) -> dict[str, str]:
    out = {e.source.name: e.reason for e in report.failed}
    out.update({e.source.name: e.reason for e in report.skipped})
    return out


# --- a batch of everything -----------------------------------------------------------------------
def test_batch_with_every_bad_input(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    good = samples.photo(inputs / "good.png")
    samples.photo(inputs / "png_named.jpg", fmt="PNG")
    (inputs / "empty.jpg").write_bytes(b"")
    (inputs / "random.jpg").write_bytes(os.urandom(4096))
    samples.truncated_jpeg(inputs / "half.jpg")
    samples.png_bomb(inputs / "bomb.png")
    Image.new("CMYK", (8, 8)).save(inputs / "cmyk.jpg")
    samples.animated(inputs / "anim.gif", "GIF")
    samples.animated(inputs / "anim.webp", "WEBP")
    samples.photo(inputs / "one.png", 1, 1)
    samples.photo(inputs / "wide.png", 10000, 8)
    (inputs / ".DS_Store").write_bytes(os.urandom(64))
    (inputs / "Thumbs.db").write_bytes(os.urandom(64))
    (inputs / "good.xmp").write_text("<x:xmpmeta/>")
    samples.photo(inputs / "earlier.protected.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    report, events = _run([inputs], out, settings)

    failed = {e.source.name: e.reason for e in report.failed}
    assert set(failed) == {"empty.jpg", "random.jpg", "half.jpg", "bomb.png", "anim.gif",
                           "anim.webp", "one.png"}  # fmt: skip
    assert "empty" in failed["empty.jpg"] and "not a photo" in failed["random.jpg"]
    assert "truncated" in failed["half.jpg"] and "too large" in failed["bomb.png"]
    assert "3 frames" in failed["anim.gif"] and "3 frames" in failed["anim.webp"]
    assert "1x1 pixels: too small to protect" in failed["one.png"]  # not copied unchanged
    assert all(name in reason for name, reason in failed.items())  # each names its file
    skipped = {e.source.name: e.reason for e in report.skipped}
    assert set(skipped) == {".DS_Store", "Thumbs.db", "good.xmp", "earlier.protected.png"}
    assert _outputs(out) == ["cmyk.protected.jpg", "good.protected.png",
                             "png_named.protected.png", "wide.protected.png"]  # fmt: skip
    for name in _outputs(out):
        _decodes(out / name)
    protected = np.asarray(_decodes(out / "good.protected.png"), np.int16)
    change = np.abs(protected - np.asarray(_decodes(good), np.int16))
    assert 0 < change.max() <= samples.EPS
    assert _decodes(out / "wide.protected.png").size == (10000, 8)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["LookingForPhotos", "PhotosFound", "JobStarted"]
    assert kinds[-1] == "JobFinished"
    assert isinstance(events[1], PhotosFound) and events[1].total == 11
    started = events[2]
    assert isinstance(started, JobStarted) and started.total == 11 and started.skipped_inputs == 4
    assert not report.ok
    json.dumps(report.to_dict())  # JSON-able
    assert "4 protected, 0 skipped, 7 failed" in report.text()
    assert "(4 other files left out)" in report.text()


def test_figures_and_progress_events(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    source = samples.photo(inputs / "a.png")
    report, events = _run([source], tmp_path / "out", settings)
    stages = [e.stage for e in events if isinstance(e, FileProgress)]
    assert stages == ["reading", "protecting", "saving"]
    done = next(e for e in events if isinstance(e, FileDone))
    assert done.source == source and done.output == tmp_path / "out" / "a.protected.png"
    assert done.psnr is not None and 25 < done.psnr < 60
    assert 1 <= done.max_change <= samples.EPS
    assert isinstance(events[-1], JobFinished) and events[-1].report is report
    assert report.ok and report.to_dict()["counts"]["done"] == 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_upright_output(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, orientation: int
) -> None:
    source, upright = samples.oriented_jpeg(inputs / "o.jpg", orientation)
    _run([source], tmp_path / "out", settings)
    output = _decodes(tmp_path / "out" / "o.protected.jpg")
    assert output.size == upright.size
    assert output.getexif().get(0x0112) in (None, 1)
    diff = np.abs(np.asarray(output, np.int16) - np.asarray(upright, np.int16))
    assert diff.mean() < samples.EPS + 4


def test_alpha_kept_in_png_outputs(tmp_path: Path, inputs: Path, settings: ProtectSettings) -> None:
    sources = [
        samples.palette_with_transparency(inputs / "p.png"),
        samples.rgba(inputs / "rgba.png"),
        samples.la(inputs / "la.png"),
    ]
    report, _ = _run(sources, tmp_path / "out", settings)
    assert len(report.done) == 3
    modes = {"p": "RGBA", "rgba": "RGBA", "la": "LA"}  # grey with alpha stays grey
    for source in sources:
        output = _decodes(tmp_path / "out" / f"{source.stem}.protected.png")
        assert output.mode == modes[source.stem]
        expected = np.asarray(Image.open(source).convert("RGBA"))[..., 3]
        assert np.array_equal(np.asarray(output)[..., -1], expected)


def test_alpha_flattened_with_warning_in_jpeg(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    source = samples.rgba(inputs / "rgba.png")
    jpeg = ProtectSettings(perturbation=settings.perturbation, format="jpeg")
    report, _ = _run([source], tmp_path / "out", jpeg)
    assert any("transparency flattened" in note for note in report.done[0].notes)
    assert _decodes(tmp_path / "out" / "rgba.protected.jpg").mode == "RGB"


def test_sixteen_bit_inputs_not_clipped(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    grey = np.tile(np.array([0, 20000, 40000, 65535], dtype=np.uint16), (8, 4))
    rgb = np.dstack([grey, grey // 2, grey])
    sources = [samples.png16(inputs / "g16.png", grey), samples.png16(inputs / "rgb48.png", rgb)]
    report, _ = _run(sources, tmp_path / "out", settings)
    assert all(any("8-bit" in n for n in e.notes) for e in report.done)
    for source in sources:
        output = _decodes(tmp_path / "out" / f"{source.stem}.protected.png").convert("RGB")
        assert abs(int(np.asarray(output)[0, 2, 0]) - 156) <= samples.EPS  # 40000 -> 156, not 255


def test_cmyk_with_profile_protected(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    if not samples.CMYK_PROFILE.is_file():
        pytest.skip("no CMYK ICC profile on this system")
    source = inputs / "cmyk.jpg"
    profile = samples.CMYK_PROFILE.read_bytes()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(source, "JPEG", icc_profile=profile)
    report, _ = _run([source], tmp_path / "out", settings)
    output = _decodes(report.done[0].output)
    red, green, blue = output.getpixel((8, 8))  # type: ignore[misc]
    assert output.mode == "RGB" and red > 170 and green < 100 and blue < 100


_PROTECT_AT_HOUR = """
import struct, sys
from pathlib import Path
from PIL import ImageCms
from spdesk.core.jobs import ProtectJob, ProtectSettings

hour, perturbation, out, *inputs = sys.argv[1:]
saved = ImageCms.ImageCmsProfile.tobytes

def saved_at_hour(self):  # lcms writes the time into each profile it saves: set its clock
    raw = bytearray(saved(self))
    raw[24:36] = struct.pack(">6H", 2026, 11, 30, int(hour), 0, 0)
    return bytes(raw)

ImageCms.ImageCmsProfile.tobytes = saved_at_hour
settings = ProtectSettings(perturbation=Path(perturbation), working_size=16)
report = ProtectJob([Path(p) for p in inputs], Path(out), settings).run()
assert report.ok and not report.failed, report.text()
"""


def _protect_in_a_process_at_hour(
    hour: int, settings: ProtectSettings, out: Path, inputs: list[Path]
) -> None:
    """Protect ``inputs`` in a process of its own (a run, or a Ray worker) whose clock says
    ``hour`` o'clock, without waiting for the real clock."""
    command = [sys.executable, "-c", _PROTECT_AT_HOUR, str(hour), str(settings.perturbation)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [*command, str(out), *map(str, inputs)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _alone_and_after_others(
    tmp_path: Path, settings: ProtectSettings, photo: Path, others: list[Path]
) -> tuple[bytes, bytes]:
    """``photo``'s protected bytes after ``others`` in one process, and alone in another
    process an hour later."""
    _protect_in_a_process_at_hour(9, settings, tmp_path / "after", [*others, photo])
    _protect_in_a_process_at_hour(10, settings, tmp_path / "alone", [photo])
    pattern = f"{photo.stem}.protected.*"
    (after,) = (tmp_path / "after").rglob(pattern)
    (alone,) = (tmp_path / "alone").glob(pattern)
    return after.read_bytes(), alone.read_bytes()


def test_a_grey_photo_with_a_profile_gets_the_same_bytes_alone_or_after_others_later(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    """Its colours are converted to sRGB and the output embeds an sRGB profile, which lcms
    used to date: the bytes depended on when the process first converted a photo."""
    others = [samples.grey_icc_jpeg(inputs / "first.jpg", 24, 20)]
    others += [samples.photo(inputs / f"{i}.jpg") for i in range(2)]
    grey = samples.grey_icc_jpeg(inputs / "grey.jpg")
    originals_guard.append(inputs)
    after, alone = _alone_and_after_others(tmp_path, settings, grey, others)
    assert after == alone
    with Image.open(tmp_path / "alone" / "grey.protected.jpg") as output:
        assert output.mode == "RGB" and output.info["icc_profile"]  # converted, profile kept


def test_the_shared_grey_rifle_gets_the_same_bytes_alone_or_after_others_later(
    tmp_path: Path, settings: ProtectSettings, shared_photos: Path
) -> None:
    """The one photo of 1000 whose output differed between the Ray and the local engine."""
    rifle = shared_photos / "n04090263_rifle.JPEG"
    others = [shared_photos / name for name in ("n03692522_loupe.JPEG", "n01440764_tench.JPEG")]
    after, alone = _alone_and_after_others(tmp_path, settings, rifle, others)
    assert after == alone


def test_names_mirrored_and_visible_names_kept(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    names = ["🌅 sunset.png", "写真.png", unicodedata.normalize("NFD", "été.png"), "-dash.png",
             "two  spaces .png"]  # fmt: skip
    for name in names:
        samples.photo(inputs / "deep" / name)
    samples.photo(inputs / "top.jpg")
    originals_guard.append(inputs)
    report, _ = _run([inputs], tmp_path / "out", settings)
    expected = sorted([f"deep/{Path(n).stem}.protected.png" for n in names] + ["top.protected.jpg"])
    assert _outputs(tmp_path / "out") == expected
    assert len(report.done) == 6


def test_a_kept_mirror_base_keeps_the_first_folders_layout_when_another_is_added(
    tmp_path: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    """The app adds folders to one queue: the copies of the first folder stay where its first
    job put them (and are skipped, not protected again elsewhere); a folder added later goes
    into a folder of its own name. Without a base the common folder moves up a level."""
    first = [samples.photo(tmp_path / "data" / "trip" / n) for n in ("a.jpg", "sub/b.png")]
    later = samples.photo(tmp_path / "data" / "nested" / "c.jpg")
    originals_guard.append(tmp_path / "data")
    out = tmp_path / "out"
    base = tmp_path / "data" / "trip"
    _run(first, out, settings)
    report = ProtectJob([*first, later], out, settings, mirror_base=base).run()
    assert len(report.done) == 1 and len(report.skipped) == 2, "the first folder's copies moved"
    assert _outputs(out) == ["a.protected.jpg", "nested/c.protected.jpg", "sub/b.protected.png"]
    photos = [jobs.scan.InputPhoto(p, p.parent) for p in (first[0], later)]
    without_base = [q.as_posix() for q in jobs.scan.relative_paths(photos)]
    assert without_base == ["trip/a.jpg", "nested/c.jpg"]


def test_a_low_quality_warning_names_only_the_lossy_formats_the_job_writes(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Each photo keeps its own format by default: PNGs alone at --quality 80 lose nothing, and
    a JPEG among them is the one format named (it said "JPEG quality 80" whatever was written)."""
    samples.photo(inputs / "a.png")
    low = dataclasses.replace(settings, quality=80)
    report, _ = _run([inputs], tmp_path / "out", low)
    assert not [w for w in report.warnings if "quality 80" in w], report.warnings
    samples.photo(inputs / "b.jpg")
    report, _ = _run([inputs], tmp_path / "out2", low)
    assert [w.split(" is below")[0] for w in report.warnings if "quality 80" in w] == [
        "JPEG quality 80"
    ]


def test_two_photos_with_one_output_name_both_kept(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    a = samples.photo(inputs / "IMG.jpg")
    b = samples.photo(inputs / "IMG.png")
    png = ProtectSettings(perturbation=settings.perturbation, format="png")
    report, _ = _run([a, b], tmp_path / "out", png)
    assert _outputs(tmp_path / "out") == ["IMG.protected-2.png", "IMG.protected.png"]
    assert [e.notes for e in report.done] == [
        (),
        ("IMG.protected.png holds another photo's copy: this is IMG.protected-2.png",),
    ]  # only the manifest told which copy was which


# --- collisions, re-runs, manifest ---------------------------------------------------------------
def test_rerun_skips_finished_photos(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    samples.photo(inputs / "a.png")
    samples.photo(inputs / "b.jpg")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    first, _ = _run([inputs], out, settings)
    stamps = {p: (out / p).stat().st_mtime_ns for p in _outputs(out)}
    again, _ = _run([inputs], out, settings)
    assert len(first.done) == 2 and not again.done
    assert {e.kind for e in again.skipped} == {SkipReason.ALREADY_DONE}
    assert stamps == {p: (out / p).stat().st_mtime_ns for p in _outputs(out)}
    entries = read_job_manifest(out / MANIFEST_NAME)
    assert {e["status"] for e in entries.values()} == {"done"}
    redo_settings = {**settings.__dict__, "redo": True, "collision": "skip"}
    redo, _ = _run([inputs], out, ProtectSettings(**redo_settings))
    assert [e.kind for e in redo.skipped] == [SkipReason.OUTPUT_EXISTS] * 2


@pytest.mark.parametrize("policy", ["skip", "unique", "overwrite"])
def test_collision_policies(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    policy: str,
) -> None:
    source = samples.photo(inputs / "a.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "a.protected.png"
    existing.write_bytes(b"a previous output")
    changed = ProtectSettings(perturbation=settings.perturbation, collision=policy)
    report, _ = _run([source], out, changed)
    if policy == "skip":
        assert "exists already" in report.skipped[0].reason
        assert existing.read_bytes() == b"a previous output"
    elif policy == "unique":
        assert report.done[0].output == out / "a.protected-2.png"
        assert existing.read_bytes() == b"a previous output"
        # Why "-2" is said, as for a changed copy's (CLI audit: it went unsaid).
        why = "a.protected.png was there already: left as it is, this copy is"
        assert report.done[0].notes == (f"{why} a.protected-2.png",), report.done[0].notes
    else:  # a file spdesk did not write is never replaced; its own earlier output is
        assert "did not write" in report.skipped[0].reason
        assert existing.read_bytes() == b"a previous output"
        existing.unlink()
        _run([source], out, changed)
        stronger = dataclasses.replace(changed, strength=4.0)
        report, _ = _run([source], out, stronger)
        assert report.done[0].output == existing
        assert _decodes(existing).size == (48, 32)


def test_a_copy_of_another_photo_holding_the_name_is_not_called_someone_elses_file(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """The "-2" note said "a file spdesk did not write" of another photo's copy spdesk wrote
    into the same folder in an earlier run (review M2)."""
    first = samples.photo(tmp_path / "A" / "a.png")
    second = samples.photo(tmp_path / "B" / "a.png", width=40)  # other pixels, other bytes
    out = tmp_path / "out"
    _run([first], out, settings)
    report, _ = _run([second], out, settings)
    assert report.done[0].output == out / "a.protected-2.png"
    note = "a.protected.png was there already: left as it is, this copy is a.protected-2.png"
    assert report.done[0].notes == (note,), report.done[0].notes


def test_output_in_place_never_touches_originals(inputs: Path, settings: ProtectSettings) -> None:
    samples.photo(inputs / "a.png")
    with pytest.raises(ConfigError, match="is the input folder"):
        _run([inputs], inputs, settings)
    in_place = ProtectSettings(
        perturbation=settings.perturbation, allow_output_in_input=True, collision="overwrite"
    )
    store_hashes = {p.name: p.read_bytes() for p in inputs.iterdir()}
    report, _ = _run([inputs], inputs, in_place)
    assert [e.output.name for e in report.done] == ["a.protected.png"]
    again, _ = _run([inputs], inputs, ProtectSettings(**{**in_place.__dict__, "redo": True}))
    # The output is never protected twice, and the original never overwritten.
    assert [e.output.name for e in again.done] == ["a.protected.png"]
    assert not any("protected.protected" in p.name for p in inputs.iterdir())
    assert (inputs / "a.png").read_bytes() == store_hashes["a.png"]


def test_gui_style_settings_are_understood(settings: ProtectSettings) -> None:
    gui = ProtectSettings(
        perturbation=settings.perturbation, collision="suffix", format="same", suffix="_protected"
    )
    assert gui.collision == "unique" and gui.export_options().format is None
    with pytest.raises(ConfigError, match="collision"):
        ProtectSettings(collision="ask")
    with pytest.raises(ConfigError, match="suffix"):
        ProtectSettings(suffix="")


def test_every_mode_settings_accept_has_exactly_one_protector() -> None:
    from spdesk.core.jobs import protector, settings

    assert sorted(protector._KINDS) == sorted(settings.MODES)
    with pytest.raises(ConfigError, match="Unknown mode 'fast'"):
        ProtectSettings(mode="fast")


def test_a_tuning_mode_without_its_own_batch_loop_cannot_be_built() -> None:
    from spdesk.core.jobs.protector import TuningProtector

    class Forgetful(TuningProtector):  # protect() would call the base's loop over protect()
        mode = "forgetful"

        @classmethod
        def build(cls, settings: ProtectSettings, perturbation: Any) -> TuningProtector:
            return cls()

    with pytest.raises(TypeError, match="protect_batch"):
        Forgetful.build(ProtectSettings(), None)


def test_missing_bundled_perturbation_is_a_clear_error(
    tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "none.safetensors"
    monkeypatch.setattr(jobs.job, "bundled_perturbation_path", lambda: missing)
    with pytest.raises(PerturbationFileError, match="bundled with spdesk is missing"):
        _run([samples.photo(inputs / "a.png")], tmp_path / "out", ProtectSettings())


# --- failures during the job ---------------------------------------------------------------------
def test_unreadable_input_and_read_only_output_folder(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples.photo(inputs / "locked.png")
    samples.photo(inputs / "ok.png")
    samples.photo(inputs / "ro" / "c.png")
    originals_guard.append(inputs)
    real_open = Path.open
    real_os_open = os.open

    def deny_read(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    def deny_write(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path).parent.name == "ro" and Path(path).name.endswith(TEMP_SUFFIX):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_os_open(path, *args, **kwargs)

    with monkeypatch.context() as patch:  # undone before the originals are hashed again
        patch.setattr(Path, "open", deny_read)
        patch.setattr(os, "open", deny_write)
        report, _ = _run([inputs], tmp_path / "out", settings)
    failed = {e.source.name: e.reason for e in report.failed}
    assert "Cannot read" in failed["locked.png"] and "locked.png" in failed["locked.png"]
    assert "c.protected.png" in failed["c.png"] and "read-only" in failed["c.png"]
    assert [e.source.name for e in report.done] == ["ok.png"]


def test_read_only_output_root_refused_at_start(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == out else real_access(p, m))
    with pytest.raises(OutputPermissionError, match="read-only"):
        _run([samples.photo(inputs / "a.png")], out, settings)


def test_input_deleted_during_the_job(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    sources = [samples.photo(inputs / f"{i}.png") for i in range(3)]

    def delete_next(event: Event) -> None:
        if isinstance(event, FileDone) and event.source == sources[0]:
            sources[1].unlink()

    sequential = dataclasses.replace(settings, workers=1)  # file 1 is not read ahead
    report, _ = _run([inputs], tmp_path / "out", sequential, hook=delete_next)
    assert [e.source.name for e in report.done] == ["0.png", "2.png"]
    assert "1.png" in report.failed[0].reason and "no longer exists" in report.failed[0].reason


def test_disk_full_stops_cleanly_and_resumes(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(5):
        samples.photo(inputs / f"{i}.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    real_write = export.write_image
    calls = {"n": 0}

    def fill_up(encoded: export.Encoded, handle: object, **options: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            handle.write(b"half")  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(encoded, handle, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "write_image", fill_up)
    report, _ = _run([inputs], out, dataclasses.replace(settings, workers=1))
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert (
        "disk is full" in report.failed[0].reason and "2.protected.png" in report.failed[0].reason
    )
    assert [p.name for p in report.pending] == ["3.png", "4.png"]
    assert report.stopped and "run the same job again: finished photos are kept" in report.stopped
    assert _outputs(out) == ["0.protected.png", "1.protected.png"]  # no temp, nothing partial
    monkeypatch.setattr(export, "write_image", real_write)
    resumed, _ = _run([inputs], out, settings)
    assert [e.source.name for e in resumed.done] == ["2.png", "3.png", "4.png"]
    assert len(resumed.skipped) == 2 and resumed.ok
    for name in _outputs(out):
        _decodes(out / name)


def test_disk_turned_read_only_stops_cleanly_and_resumes(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disk that turns read-only mid-job (unplugged, remounted after an error) refuses every
    later photo too: the job stops as for a full disk instead of failing each one in turn."""
    for i in range(5):
        samples.photo(inputs / f"{i}.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    real_write = export.write_image
    calls = {"n": 0}

    def turn_read_only(encoded: export.Encoded, handle: object, **options: bool) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.EROFS, "Read-only file system")
        real_write(encoded, handle, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "write_image", turn_read_only)
    report, _ = _run([inputs], out, dataclasses.replace(settings, workers=1))
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert len(report.failed) == 1 and "2.protected.png" in report.failed[0].reason
    assert "read-only" in report.failed[0].reason
    assert [p.name for p in report.pending] == ["3.png", "4.png"]
    assert report.stopped and "Make the disk writable again" in report.stopped
    assert _outputs(out) == ["0.protected.png", "1.protected.png"]
    monkeypatch.setattr(export, "write_image", real_write)
    resumed, _ = _run([inputs], out, settings)
    assert [e.source.name for e in resumed.done] == ["2.png", "3.png", "4.png"]
    assert len(resumed.skipped) == 2 and resumed.ok


def test_output_folder_made_read_only_mid_job_stops_it_and_resumes(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    originals_guard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Permissions taken away from the output folder mid-job: the job went on, protecting and
    encoding every later photo only to fail it with the same message. Now it stops as for a
    read-only disk; a sub-folder that refuses fails only its own photos (the next test)."""
    for i in range(5):
        samples.photo(inputs / f"{i}.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    real_write, real_access = export.write_image, os.access
    locked = {"on": False}
    calls = {"n": 0}

    def lose_permission(encoded: export.Encoded, handle: object, **options: bool) -> None:
        calls["n"] += 1
        locked["on"] = locked["on"] or calls["n"] == 3  # from the third photo on
        if locked["on"]:
            raise PermissionError(errno.EACCES, "Permission denied")
        real_write(encoded, handle, **options)  # type: ignore[arg-type]

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if locked["on"] and Path(str(path)) == out:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "write_image", lose_permission)
    monkeypatch.setattr(os, "access", access)
    report, _ = _run([inputs], out, dataclasses.replace(settings, workers=1))
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert len(report.failed) == 1 and "permission to write" in report.failed[0].reason
    assert [p.name for p in report.pending] == ["3.png", "4.png"]
    assert report.stopped and "change that folder's permissions" in report.stopped
    locked["on"] = False
    monkeypatch.setattr(export, "write_image", real_write)
    resumed, _ = _run([inputs], out, settings)
    assert [e.source.name for e in resumed.done] == ["2.png", "3.png", "4.png"]


def test_a_sub_folder_that_refuses_writes_fails_only_its_own_photos(
    tmp_path: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "in"
    for name in ("a/0.png", "b/1.png", "c/2.png"):
        samples.photo(inputs / name)
    real_write_temp = export.write_temp

    def refuse_in_b(encoded: export.Encoded, target: Path, **options: bool) -> tuple[Path, int]:
        if target.parent.name == "b":
            raise files.output_error(PermissionError(errno.EACCES, "Permission denied"), target)
        return real_write_temp(encoded, target, **options)

    monkeypatch.setattr(export, "write_temp", refuse_in_b)
    report, _ = _run([inputs], tmp_path / "out", dataclasses.replace(settings, workers=1))
    assert sorted(e.source.name for e in report.done) == ["0.png", "2.png"]
    assert [e.source.name for e in report.failed] == ["1.png"] and not report.stopped


def test_a_cancel_after_the_last_photo_is_no_cancel(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Ctrl+C as the last photo was recorded said "Cancelled: run the same command again to
    finish the rest" (exit 130) with nothing left to finish."""
    for i in range(3):
        samples.photo(inputs / f"{i}.png")
    cancel = CancelToken()

    def cancel_at_the_last(event: Event) -> None:
        if isinstance(event, FileDone) and event.position == event.count:
            cancel.cancel()

    report, _ = _run([inputs], tmp_path / "out", settings, cancel=cancel, hook=cancel_at_the_last)
    assert cancel.cancelled and not report.cancelled and not report.pending
    assert len(report.done) == 3 and "Cancelled" not in report.text()


def test_cancel_during_file_k(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    for i in range(5):
        samples.photo(inputs / f"{i}.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"

    def in_third(event: Event) -> bool:
        return (
            isinstance(event, FileProgress) and event.position == 3 and event.stage == "protecting"
        )

    report = _cancelled_run([inputs], out, dataclasses.replace(settings, workers=1), in_third)
    assert report.cancelled and [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert [p.name for p in report.pending] == ["2.png", "3.png", "4.png"]
    assert _outputs(out) == ["0.protected.png", "1.protected.png"]
    entries = samples.recorded(out, sorted(inputs.iterdir()))
    pending = sorted(name for name, e in entries.items() if e["status"] == "pending")
    assert pending == ["2.png", "3.png", "4.png"]


def test_a_cancel_while_the_inputs_are_walked_stops_the_walk_and_writes_nothing(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C during the walk of a large network folder waited for the whole walk, and the
    models' loading, before it was seen."""
    from spdesk.core.jobs.scan import HeaderScan

    for i in range(3):
        samples.photo(inputs / f"{i}.png")
    token, sniffed = CancelToken(), []
    real = HeaderScan.sniff

    def sniff_and_cancel(self: HeaderScan, path: Path) -> str | None:
        sniffed.append(path)
        token.cancel()  # the user stops at the first file
        return real(self, path)

    monkeypatch.setattr(HeaderScan, "sniff", sniff_and_cancel)
    job = ProtectJob([inputs], tmp_path / "out", settings)
    monkeypatch.setattr(job, "_protector", lambda _p: pytest.fail("models loaded"))
    with pytest.raises(Cancelled):
        job.run(cancel=token)
    assert len(sniffed) == 1 and not (tmp_path / "out").exists()


def test_a_universal_re_run_plans_its_photos_once(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photo modes look first whether every photo is finished, to load no model for nothing;
    universal mode loads none: that second pass would only slow a large folder's re-run."""
    from spdesk.core.jobs.pool import JobRun

    samples.photo(inputs / "a.png")
    assert len(ProtectJob([inputs], tmp_path / "out", settings).run().done) == 1
    monkeypatch.setattr(JobRun, "all_finished", lambda *_: pytest.fail("planned twice"))
    assert len(ProtectJob([inputs], tmp_path / "out", settings).run().skipped) == 1


def test_interrupted_run_leftovers_are_cleaned_and_finished(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    for i in range(3):
        samples.photo(inputs / f"{i}.png")
    originals_guard.append(inputs)
    out = tmp_path / "out"
    _run([inputs / "0.png"], out, settings)
    # What SIGKILL leaves: a half-written temp file and a torn last manifest line.
    (out / f".1.protected.png.abc{TEMP_SUFFIX}").write_bytes(b"\x89PNG half")
    with (out / MANIFEST_NAME).open("a") as manifest:
        manifest.write('{"source": "' + str(inputs / "1.png") + '", "status": "pen')
    report, _ = _run([inputs], out, settings)
    assert [e.source.name for e in report.done] == ["1.png", "2.png"]
    assert [e.source.name for e in report.skipped] == ["0.png"]
    assert _outputs(out) == ["0.protected.png", "1.protected.png", "2.protected.png"]
    for name in _outputs(out):
        _decodes(out / name)


def test_changed_original_is_protected_again(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    source = samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    _run([source], out, settings)
    samples.photo(source, 64, 40)  # edited after protection
    os.utime(source, ns=(1, 1))
    overwrite = ProtectSettings(perturbation=settings.perturbation, collision="overwrite")
    report, _ = _run([source], out, overwrite)
    assert len(report.done) == 1 and _decodes(out / "a.protected.png").size == (64, 40)


def test_second_job_on_same_output_is_refused(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    from spdesk.core.files import FolderLockedError
    from spdesk.core.manifest import Manifest

    out = tmp_path / "out"
    out.mkdir()
    with Manifest(out), pytest.raises(FolderLockedError, match="Another spdesk job"):
        _run([samples.photo(inputs / "a.png")], out, settings)


def _lock_folder(lock: Path, _monkeypatch: pytest.MonkeyPatch) -> None:
    lock.mkdir()


def _lock_dangling_link(lock: Path, _monkeypatch: pytest.MonkeyPatch) -> None:
    lock.symlink_to(lock.parent / "gone.lock")


def _lock_unwritable(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock file left read-only by another user, or made immutable (root is refused too)."""
    lock.touch()
    real_open = os.open

    def refuse(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == lock:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_lock_folder, "is a folder"),
        (_lock_dangling_link, "is a symbolic link"),
        (_lock_unwritable, "cannot be opened for writing"),
    ],
)
def test_a_lock_file_in_the_way_is_named_with_what_is_wrong_with_it(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path, pytest.MonkeyPatch], None],
    what: str,
) -> None:
    photo = samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    make(out / LOCK_NAME, monkeypatch)
    with pytest.raises(OutputError) as info:
        _run([photo], out, settings)
    error = info.value
    assert f"lock file {out / LOCK_NAME} {what}" in error.message
    assert "the folder" not in error.message  # the folder itself is writable
    assert error.hint is not None and "no spdesk job is running" in error.hint


# --- fine-tuning ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("torch")
    from tiny_sd import save_tiny_vae

    return str(save_tiny_vae(tmp_path_factory.mktemp("ft") / "sd"))


def test_fine_tune_mode_reports_steps_and_cancels(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, tiny_encoder: str
) -> None:
    sources = [samples.photo(inputs / f"{i}.png", 40, 24) for i in range(2)]
    tuned = _fine_tuning(settings, tiny_encoder)
    report, events = _run([sources[0]], tmp_path / "out", tuned)
    steps = [e.done for e in events if isinstance(e, FileProgress) and e.stage == "fine-tuning"]
    assert steps[0] == 1 and steps[-1] == 2 and len(steps) == 4
    change = np.abs(
        np.asarray(_decodes(report.done[0].output), np.int16)
        - np.asarray(_decodes(sources[0]), np.int16)
    )
    assert 0 < change.max() <= samples.EPS

    def mid_step(event: Event) -> bool:
        return isinstance(event, FileProgress) and event.stage == "fine-tuning" and event.done > 1

    _cancelled_run(sources, tmp_path / "out2", tuned, mid_step)
    assert _outputs(tmp_path / "out2") == []


def test_a_fine_tuning_job_with_a_missing_sd_model_says_so_before_the_encoder_loads(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, tiny_encoder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """sds+ and advdm load SD 1.5's UNet: the job loaded the encoder (SD's VAE: seconds on a
    CPU) before finding it missing (review)."""
    import spdesk.core.encoders as encoders
    from spdesk.core.errors import ModelMissingError

    samples.photo(inputs / "a.png", 40, 24)
    monkeypatch.setattr(encoders, "load_encoder", lambda *_a, **_k: pytest.fail("encoder loaded"))
    tuned = dataclasses.replace(_fine_tuning(settings, tiny_encoder), objective="sds+")
    with pytest.raises(ModelMissingError, match=r"Stable Diffusion 1\.5 is not installed"):
        _run([inputs], tmp_path / "out", tuned)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Each sum in one order whatever else the machine runs: on a loaded machine (the suite beside
    a benchmark) 3% of one photo's values differed between two runs in which it was fine-tuned
    alone both times, a float-order effect, not batching."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("mode", ["finetune", "photo-finetune"])
def test_fine_tune_batches_give_the_outputs_of_one_photo_at_a_time(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    tiny_encoder: str,
    generator_file: Path,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One key for every run, and photos of their own: a batch mixing them up changes many values.
    monkeypatch.setenv(ENV_KEY, "5a" * 32)
    for i in range(3):
        Image.fromarray(samples.photo_array(40, 24, seed=i)).save(inputs / f"{i}.png")
    samples.photo(inputs / "3.png", 36, 28)  # another size: its own batch
    (inputs / "4.png").write_bytes(b"not an image")  # fails alone
    tuned = _fine_tuning(
        settings, tiny_encoder, finetune_steps=2, mode=mode, generator=generator_file
    )
    single, _ = _run([inputs], tmp_path / "one", dataclasses.replace(tuned, finetune_batch=1))
    batched, events = _run([inputs], tmp_path / "two", dataclasses.replace(tuned, finetune_batch=2))
    assert [e.source.name for e in batched.done] == ["0.png", "1.png", "2.png", "3.png"]
    assert [e.source.name for e in batched.failed] == ["4.png"]
    assert [e.source for e in single.done] == [e.source for e in batched.done]
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
    names = [f"{i}.protected.png" for i in range(4)]
    assert _outputs(tmp_path / "one") == names
    samples.assert_batched_like_alone(
        [_pixels(inputs / f"{i}.png") for i in range(4)],
        [_pixels(tmp_path / "one" / name) for name in names],
        [_pixels(tmp_path / "two" / name) for name in names],
    )
    # Photos fine-tuned together report their steps together, for each photo.
    tuning = [(e.source.name, e.done) for e in events if isinstance(e, FileProgress)]
    assert ("0.png", 2) in tuning and ("1.png", 2) in tuning


@pytest.mark.parametrize("mode", ["finetune", "photo-finetune"])
def test_a_cancelled_fine_tune_batch_publishes_none_of_its_photos(
    tmp_path: Path,
    inputs: Path,
    settings: ProtectSettings,
    tiny_encoder: str,
    generator_file: Path,
    mode: str,
) -> None:
    for i in range(4):
        samples.photo(inputs / f"{i}.png", 40, 24)
    tuned = _fine_tuning(
        settings, tiny_encoder, finetune_batch=2, mode=mode, generator=generator_file
    )

    def in_the_second_batch(event: Event) -> bool:
        return isinstance(event, FileProgress) and event.source.name == "2.png" and event.done > 1

    report = _cancelled_run([inputs], tmp_path / "out", tuned, in_the_second_batch)
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert _outputs(tmp_path / "out") == ["0.protected.png", "1.protected.png"]
    assert [p.name for p in report.pending] == ["2.png", "3.png"]


def test_discover_inputs_for_the_app(inputs: Path) -> None:
    a = samples.photo(inputs / "a.png")
    (inputs / "notes.txt").write_text("hello")
    samples.photo(inputs / "a.protected.png")
    assert jobs.discover_inputs([inputs]) == [a]
    found = jobs.scan_inputs([inputs])
    assert {s.path.name for s in found.skipped} == {"notes.txt", "a.protected.png"}
    assert FileSkipped and FileFailed  # re-exported event types used by the app


# --- several workers -----------------------------------------------------------------------------
def test_workers_give_the_same_outputs_in_job_order(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    for i in range(8):
        samples.photo(inputs / f"{i}.png", 40 + i, 30)
    (inputs / "bad.png").write_bytes(b"")
    originals_guard.append(inputs)
    one, _ = _run([inputs], tmp_path / "one", dataclasses.replace(settings, workers=1))
    many, events = _run([inputs], tmp_path / "many", dataclasses.replace(settings, workers=3))
    assert [e.source for e in many.done] == [e.source for e in one.done]  # job order
    assert [e.source.name for e in many.failed] == ["bad.png"]
    for name in _outputs(tmp_path / "one"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()
    finished = [e.position for e in events if isinstance(e, FileDone | FileFailed)]
    assert finished == sorted(finished)


def _eight_photos(folder: Path) -> None:
    """0.png ... 7.png: enough for three workers to have photos in flight when a job stops."""
    for i in range(8):
        samples.photo(folder / f"{i}.png")


def test_cancel_with_workers_keeps_only_whole_outputs(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    _eight_photos(inputs)
    out = tmp_path / "out"

    def in_fourth(event: Event) -> bool:
        return isinstance(event, FileProgress) and event.position == 4

    report = _cancelled_run([inputs], out, dataclasses.replace(settings, workers=3), in_fourth)
    done = [e.source.name for e in report.done]
    assert done == [f"{i}.png" for i in range(len(done))] and len(done) < 4
    assert [p.name for p in report.pending] == [f"{i}.png" for i in range(len(done), 8)]
    assert _outputs(out) == [f"{i}.protected.png" for i in range(len(done))]


def test_disk_full_with_workers_stops_and_resumes(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _eight_photos(inputs)
    out = tmp_path / "out"
    real_write = export.write_image

    calls = itertools.count(1)

    def full_from_the_fourth(encoded: export.Encoded, handle: object, **options: bool) -> None:
        if next(calls) >= 4:  # the disk stays full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(encoded, handle, **options)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(export, "write_image", full_from_the_fourth)
        report, _ = _run([inputs], out, dataclasses.replace(settings, workers=3))
    assert report.stopped and len(report.failed) == 1
    assert len(report.done) + len(report.failed) + len(report.pending) == 8
    assert _outputs(out) == sorted(e.output.relative_to(out).as_posix() for e in report.done)
    resumed, _ = _run([inputs], out, settings)
    assert resumed.ok and len(resumed.done) + len(resumed.skipped) == 8
    assert len(_outputs(out)) == 8


def test_photos_written_before_the_disk_filled_are_kept(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers write side by side: the photo that met the full disk stopped the job, and the
    complete temporary files of the photos after it were thrown away (with 274 KB free none
    was kept, the first needing 108 KB). Naming them takes no space: they are kept."""
    _eight_photos(inputs)
    out = tmp_path / "out"
    real_write_temp = export.write_temp
    written: set[str] = set()
    later_written = threading.Event()

    def full_at_the_second(encoded: export.Encoded, target: Path, **options: bool) -> Any:
        photo = target.name.split(".")[0]
        if photo == "1":  # waits for the two photos after it to be written, then fills up
            assert later_written.wait(30)
        if photo not in ("0", "2", "3"):  # and stays full
            raise files.output_error(OSError(errno.ENOSPC, "No space left on device"), target)
        result = real_write_temp(encoded, target, **options)
        written.add(photo)
        if {"2", "3"} <= written:
            later_written.set()
        return result

    monkeypatch.setattr(export, "write_temp", full_at_the_second)
    report, _ = _run([inputs], out, dataclasses.replace(settings, workers=2))
    assert report.stopped and "disk is full" in report.stopped
    assert sorted(e.source.name for e in report.done) == ["0.png", "2.png", "3.png"]
    assert [e.source.name for e in report.failed] == ["1.png"]
    assert sorted(p.name for p in report.pending) == ["4.png", "5.png", "6.png", "7.png"]
    assert _outputs(out) == sorted(e.output.relative_to(out).as_posix() for e in report.done)
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    monkeypatch.setattr(export, "write_temp", real_write_temp)
    resumed, _ = _run([inputs], out, settings)
    assert resumed.ok and len(resumed.done) == 5 and len(resumed.skipped) == 3


def test_cancel_after_a_done_event_lets_no_later_photo_through(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    _eight_photos(inputs)
    out = tmp_path / "out"

    def after_second(event: Event) -> bool:
        # Photos 3 and 4 may be encoded already: they must not appear.
        return isinstance(event, FileDone) and event.position == 2

    report = _cancelled_run([inputs], out, dataclasses.replace(settings, workers=3), after_second)
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]
    assert _outputs(out) == ["0.protected.png", "1.protected.png"]
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))


def test_manifest_on_a_full_disk_stops_the_job_cleanly(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import manifest as manifest_module
    from spdesk.core.errors import DiskFullError

    for i in range(4):
        samples.photo(inputs / f"{i}.png")
    out = tmp_path / "out"
    real_record = manifest_module.Manifest.record
    calls = itertools.count(1)

    def full_on_second_done(self: object, source: str, status: str, **fields: object) -> None:
        if status == "done" and next(calls) >= 2:
            raise DiskFullError("The disk is full: spdesk-manifest.jsonl could not be written.")
        real_record(self, source, status, **fields)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(manifest_module.Manifest, "record", full_on_second_done)
        report, _ = _run([inputs], out, dataclasses.replace(settings, workers=1))
    assert report.stopped and "disk is full" in report.stopped
    assert [e.source.name for e in report.done] == ["0.png", "1.png"]  # 1.png is complete
    assert [p.name for p in report.pending] == ["2.png", "3.png"]
    # 1.png's record was lost: its output is there, so "skip" leaves it alone (the default,
    # "unique", would protect it again under a new name)
    resumed, _ = _run([inputs], out, dataclasses.replace(settings, collision="skip"))
    assert [e.source.name for e in resumed.done] == ["2.png", "3.png"]
    kinds = {e.source.name: e.kind for e in resumed.skipped}
    assert kinds == {"0.png": SkipReason.ALREADY_DONE, "1.png": SkipReason.OUTPUT_EXISTS}
    assert samples.recorded(out, [inputs / "1.png"])["1.png"]["status"] == "skipped"


def test_default_workers_are_one_more_than_the_cores_within_2_to_4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cores, expected in ((1, 2), (2, 3), (3, 4), (16, 4)):
        monkeypatch.setattr(
            os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)), raising=False
        )
        assert jobs.default_workers() == expected
        assert ProtectSettings().workers == expected


def test_header_problems_name_the_photos_a_job_fails_with_its_own_words(
    inputs: Path, tmp_path: Path
) -> None:
    from spdesk.core.jobs.scan import header_problems

    good = samples.photo(inputs / "a.png")
    damaged = inputs / "b.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))
    empty = inputs / "c.jpg"
    empty.write_bytes(b"")
    photos = jobs.discover_inputs([inputs])
    problems = header_problems(photos)
    assert set(problems) == {damaged, empty} and good in photos
    report, _ = _run([inputs], tmp_path / "out", ProtectSettings())
    said = {f.source: (f.reason, f.hint) for f in report.failed}
    assert said == {p: (e.message, e.hint or "") for p, e in problems.items()}
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        header_problems(photos, token)


@contextlib.contextmanager
def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count the files opened (by path) inside the block."""
    opened: Counter[str] = Counter()
    real_open = io.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened[os.fspath(file) if isinstance(file, str | os.PathLike) else "fd"] += 1
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(io, "open", counting_open)
        patch.setattr(builtins, "open", counting_open)
        yield opened


def test_scanning_photos_opens_each_file_once_and_says_what_the_two_passes_say(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.jobs.scan import header_problems, scan_photos

    samples.photo(inputs / "a.png")
    samples.truncated_jpeg(inputs / "cut.jpg")  # header fine, data damaged: found by the job
    samples.png_bomb(inputs / "bomb.png")
    samples.animated(inputs / "moving.gif", "GIF")
    (inputs / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))
    (inputs / "c.jpg").write_bytes(b"")
    (inputs / "text.jpg").write_bytes(b"not a photo at all, whatever its name")
    (inputs / "notes.txt").write_bytes(b"a note")  # not a photo: left out
    named = samples.photo(tmp_path / "named.png")  # named on its own: not sniffed
    paths = [inputs, named]
    before = (jobs.discover_inputs(paths), header_problems(jobs.discover_inputs(paths)))

    with _counting_opens(monkeypatch) as opened:
        scan = scan_photos(paths)

    photos, problems = scan.photos, scan.problems
    assert (photos, problems.keys()) == (before[0], before[1].keys())
    assert [s.path.name for s in scan.left_out] == ["notes.txt"]
    assert scan.left_out[0].reason.endswith("not a photo")
    assert {p: (e.message, e.hint) for p, e in problems.items()} == {
        p: (e.message, e.hint) for p, e in before[1].items()
    }
    assert {p.name for p in problems} == {"b.jpg", "c.jpg", "text.jpg", "bomb.png", "moving.gif"}
    files = [*inputs.iterdir(), named]
    assert opened == Counter(str(p) for p in files), "each file opened once, nothing else"


def test_scanning_photos_keeps_the_folders_it_cannot_read_and_the_inputs_not_there(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's scan dropped both: a subfolder it could not read went unsaid (audit F3)."""
    from spdesk.core.jobs.scan import scan_photos
    from tests.test_discovery import refuse_listing

    samples.photo(inputs / "ok" / "a.png")
    locked = inputs / "locked"
    samples.photo(locked / "b.png")
    refuse_listing(monkeypatch, locked)
    gone = tmp_path / "gone.jpg"
    scan = scan_photos([inputs, gone])
    assert scan.photos == [inputs / "ok" / "a.png"]
    assert [(s.path, s.folder) for s in scan.unreadable] == [(locked, True)]
    assert "Permission denied" in scan.unreadable[0].reason
    assert scan.missing == [gone]


def test_the_memory_budget_reuses_the_headers_read_at_the_start_for_walked_and_named_photos(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.stores import FolderStore

    samples.photo(inputs / "a.png")
    samples.photo(inputs / "b.jpg")
    named = samples.photo(tmp_path / "named.png")
    reads: list[Path] = []
    real = FolderStore.read_header

    def counting(self: FolderStore, path: Path, **kwargs: Any) -> Any:
        reads.append(path)
        return real(self, path, **kwargs)

    monkeypatch.setattr(FolderStore, "read_header", counting)
    report, _ = _run([inputs, named], tmp_path / "out", ProtectSettings())
    assert len(report.done) == 3
    assert reads == [], "each header is read once, at the start"


def test_a_job_opens_each_photo_twice_at_the_start_and_to_decode_it_and_names_it_by_content(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples.photo(inputs / "a.jpg")
    Image.new("RGB", (40, 30), (90, 120, 150)).save(inputs / "png-named.jpg", format="PNG")
    named = samples.photo(tmp_path / "named.png")
    with _counting_opens(monkeypatch) as opened:
        report, _ = _run([inputs, named], tmp_path / "out", ProtectSettings(workers=1))
    assert sorted(e.output.name for e in report.done) == [
        "a.protected.jpg",
        "named.protected.png",
        "png-named.protected.png",  # the format its content says, read once at the start
    ]
    photos = [*inputs.iterdir(), named]
    assert {p: opened[str(p)] for p in photos} == dict.fromkeys(photos, 2)


def test_a_photo_whose_header_failed_at_the_start_fails_with_that_error_unopened_again(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core.jobs.scan import header_problems
    from spdesk.core.stores import FolderStore

    samples.photo(inputs / "a.png")
    (inputs / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))
    samples.png_bomb(inputs / "bomb.png")
    named = tmp_path / "named.jpg"
    named.write_text("not a photo either")
    expected = header_problems(jobs.discover_inputs([inputs, named]))
    opened: list[str] = []
    for method in ("read_header", "read_image"):
        real = getattr(FolderStore, method)

        def counting(self: FolderStore, path: Path, _real: Any = real, **kwargs: Any) -> Any:
            opened.append(path.name)
            return _real(self, path, **kwargs)

        monkeypatch.setattr(FolderStore, method, counting)
    report, _ = _run([inputs, named], tmp_path / "out", ProtectSettings())
    assert [e.source.name for e in report.done] == ["a.png"]
    assert opened == ["a.png"], "only the photo whose header read is opened again"
    said = {e.source: e.reason for e in report.failed}
    assert said.keys() == expected.keys()
    assert all(expected[path].message in said[path] for path in said)


def test_the_start_counts_the_photos_whose_header_fails_and_each_still_fails_in_turn(
    inputs: Path, tmp_path: Path
) -> None:
    samples.photo(inputs / "a.png")
    samples.truncated_jpeg(inputs / "cut.jpg")  # header fine: only decoding finds it
    (inputs / "empty.jpg").write_bytes(b"")
    (inputs / "text.jpg").write_text("not a photo at all, whatever its name")
    named = tmp_path / "named.jpg"  # named on its own: its header is read at the start too
    named.write_text("not a photo either")
    report, events = _run([inputs, named], tmp_path / "out", ProtectSettings())
    (started,) = [e for e in events if isinstance(e, JobStarted)]
    assert (started.total, started.unreadable) == (5, 3)
    failed = {e.source.name for e in events if isinstance(e, FileFailed)}
    assert failed == {"cut.jpg", "empty.jpg", "text.jpg", "named.jpg"}
    assert [e.source.name for e in report.done] == ["a.png"]


@pytest.mark.parametrize("collision", ["overwrite", "skip", "unique"])
def test_a_rerun_after_a_cancel_gives_photos_sharing_an_output_name_the_names_of_a_whole_run(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, collision: str
) -> None:
    # IMG.jpg and IMG.tif both become IMG.protected.png; a cancel falls between them.
    samples.photo(inputs / "IMG.jpg", 40, 30)
    samples.photo(inputs / "IMG.tif", 60, 45)
    samples.photo(inputs / "z.png", 50, 40)
    shared_name = dataclasses.replace(settings, format="png", collision=collision, workers=1)
    whole, _ = _run([inputs], tmp_path / "whole", shared_name)
    expected = {e.source.name: e.output.name for e in whole.done}
    assert expected["IMG.jpg"] != expected["IMG.tif"]

    out = tmp_path / "cut"
    _cancelled_run([inputs], out, shared_name, lambda e: isinstance(e, FileDone))
    rerun, _ = _run([inputs], out, shared_name)
    assert {e.source.name for e in rerun.done} == {"IMG.tif", "z.png"}
    assert [e.kind for e in rerun.skipped] == [SkipReason.ALREADY_DONE]  # IMG.jpg, kept
    assert _outputs(out) == _outputs(tmp_path / "whole")
    for source, name in expected.items():  # each output holds its own photo
        with Image.open(inputs / source) as photo, Image.open(out / name) as output:
            assert output.size == photo.size, (source, name)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_photo_added_since_never_replaces_the_output_of_a_finished_photo_of_its_name(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    overwrite = dataclasses.replace(settings, collision="overwrite", workers=1)
    samples.photo(inputs / "X.png", 40, 30)
    out = tmp_path / "out"
    _run([inputs], out, overwrite)
    kept = _sha(out / "X.protected.png")
    samples.photo(inputs / "X.gif", 60, 45)  # GIF is written as PNG: the same name
    again, _ = _run([inputs], out, overwrite)
    assert [(e.source.name, e.kind) for e in again.skipped] == [("X.png", SkipReason.ALREADY_DONE)]
    assert [(e.source.name, e.output.name) for e in again.done] == [("X.gif", "X.protected-2.png")]
    assert _sha(out / "X.protected.png") == kept
    with Image.open(out / "X.protected-2.png") as added:
        assert added.size == (60, 45)


@pytest.mark.parametrize(("collision", "redone"), [("overwrite", True), ("skip", False)])
def test_an_edited_photo_sharing_an_output_name_is_redone_or_skipped_by_the_policy(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, collision: str, redone: bool
) -> None:
    shared_name = dataclasses.replace(settings, format="png", collision=collision, workers=1)
    samples.photo(inputs / "IMG.jpg", 40, 30)
    samples.photo(inputs / "IMG.tif", 60, 45)
    out = tmp_path / "out"
    _run([inputs], out, shared_name)
    first = _sha(out / "IMG.protected.png")
    samples.photo(inputs / "IMG.tif", 64, 48)  # edited since
    again, _ = _run([inputs], out, shared_name)
    assert not again.failed  # it used to fail: "IMG.protected-2.png already exists"
    assert _sha(out / "IMG.protected.png") == first
    with Image.open(out / "IMG.protected-2.png") as output:
        assert output.size == ((64, 48) if redone else (60, 45))
    assert [e.source.name for e in again.done] == (["IMG.tif"] if redone else [])


def test_a_failed_run_keeps_the_proof_that_spdesk_wrote_the_photos_output(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    photo = samples.photo(inputs / "IMG.jpg", 40, 30)
    good = photo.read_bytes()
    stat = photo.stat()
    out = tmp_path / "out"
    _run([inputs], out, settings)
    first = _sha(out / "IMG.protected.jpg")
    photo.write_bytes(good[:300])  # unreadable for a while (a copy in progress)
    failed, _ = _run([inputs], out, settings)
    assert [e.source.name for e in failed.failed] == ["IMG.jpg"]
    photo.write_bytes(good)
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # back as it was
    back, _ = _run([inputs], out, settings)
    assert [e.kind for e in back.skipped] == [SkipReason.ALREADY_DONE]  # not protected twice
    assert sorted(p.name for p in out.glob("IMG*")) == ["IMG.protected.jpg"]
    stronger = dataclasses.replace(settings, strength=4, collision="overwrite")
    replaced, _ = _run([inputs], out, stronger)  # still provably spdesk's: replaced
    assert [e.output.name for e in replaced.done] == ["IMG.protected.jpg"]
    assert _sha(out / "IMG.protected.jpg") != first


def test_protecting_in_place_again_with_another_suffix_leaves_the_earlier_outputs_alone(
    inputs: Path, settings: ProtectSettings
) -> None:
    samples.photo(inputs / "a.png")
    samples.photo(inputs / "b.png", 40, 30)
    in_place = dataclasses.replace(settings, allow_output_in_input=True)
    _run([inputs], inputs, in_place)
    again, _ = _run([inputs], inputs, dataclasses.replace(in_place, suffix=".v2"))
    assert sorted(e.source.name for e in again.done) == ["a.png", "b.png"]
    left_out = {e.source.name: e.reason for e in again.left_out}
    assert set(left_out) == {"a.protected.png", "b.protected.png"}  # not the lock file
    assert "earlier spdesk run" in left_out["a.protected.png"]
    assert sorted(p.name for p in inputs.iterdir() if p.suffix == ".png") == [
        "a.png", "a.protected.png", "a.v2.png", "b.png", "b.protected.png", "b.v2.png"
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", [".protected", ".v2"])
def test_photos_named_one_by_one_beside_their_copies_are_protected_once(
    inputs: Path, settings: ProtectSettings, suffix: str
) -> None:
    """``spdesk protect *.jpg --out .`` (or "select all" in the app, saving beside the
    photos) named the last run's copies too: each run protected them again, over their
    protection (a.protected.protected.png), whatever the suffix (scale audit)."""
    samples.photo(inputs / "a.png")
    samples.photo(inputs / "b.png", 40, 30)
    beside = dataclasses.replace(settings, suffix=suffix)
    for _run_again in range(3):
        named = sorted(p for p in inputs.iterdir() if p.suffix == ".png")  # the shell's glob
        report, _ = _run(named, inputs, beside)
    assert sorted(p.name for p in inputs.iterdir() if p.suffix == ".png") == [
        "a.png", f"a{suffix}.png", "b.png", f"b{suffix}.png"
    ]  # fmt: skip
    left_out = {e.source.name: e.reason for e in report.left_out}
    assert set(left_out) == {f"a{suffix}.png", f"b{suffix}.png"}
    assert "earlier spdesk run" in left_out[f"a{suffix}.png"]


def test_photos_named_one_by_one_are_checked_against_the_output_folder_by_their_folder(
    tmp_path: Path, inputs: Path
) -> None:
    """Each photo named was checked twice against the output folder, each check resolving its
    path: 50,000 checks before the walk for ``spdesk protect *.jpg --out elsewhere`` over
    25,000 photos (review). A photo lies in the output folder when its folder does."""
    from spdesk.core.jobs.scan import scan_inputs
    from spdesk.core.stores import FolderStore

    named = []
    for i in range(200):
        named.append(inputs / f"p{i:03d}.jpg")
        named[-1].write_bytes(b"")
    out = tmp_path / "elsewhere"
    out.mkdir()
    checked: list[tuple[Path, Path]] = []

    class Counting(FolderStore):
        def within(self, path: Path, folder: Path) -> bool:
            checked.append((path, folder))
            return super().within(path, folder)

    scan_inputs(named, output_root=out, store=Counting())
    assert [c for c in checked if c[1] == out] == [(inputs, out)]  # the photos' one folder
    assert len(checked) <= len(named) + 1


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_a_link_named_on_its_own_to_an_earlier_copy_is_left_out(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Checked by the folder it is named in, a link to a copy in the output folder was taken
    as a photo, and the copy protected again (review): a link's folder is its target's."""
    samples.photo(inputs / "a.png")
    out = tmp_path / "out"
    (first,) = _run([inputs / "a.png"], out, settings)[0].done
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link.png").symlink_to(first.output)
    report, _ = _run([inputs / "a.png", elsewhere / "link.png"], out, settings)
    assert [e.source.name for e in report.left_out] == ["link.png"]
    assert "earlier spdesk run" in report.left_out[0].reason


def test_a_unique_name_is_settled_when_planned_in_job_order_whoever_publishes_first(
    tmp_path: Path, inputs: Path, settings: ProtectSettings
) -> None:
    """Two photos for one name and a foreign file holding it: the names follow job order, as
    they must for a distributed run whose batches publish in any order."""
    samples.photo(inputs / "a.jpg")
    samples.photo(inputs / "a.png", 60, 40, fmt="PNG")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.protected.png").write_bytes(b"someone else's file")
    png = dataclasses.replace(settings, collision="unique", format="png")
    namer = OutputNamer(out, png.export_options(), "unique")
    first = namer.plan(inputs / "a.jpg", Path("a.jpg"), owner="a.jpg")
    second = namer.plan(inputs / "a.png", Path("a.png"), owner="a.png")
    assert (first.path.name, second.path.name) == ("a.protected-2.png", "a.protected-3.png")
    assert not first.existing and not second.existing  # free names: a retry may republish
    report, _ = _run([inputs], out, png)
    names = {e.source.name: e.output.name for e in report.done}
    assert names == {"a.jpg": "a.protected-2.png", "a.png": "a.protected-3.png"}
    assert (out / "a.protected.png").read_bytes() == b"someone else's file"


def test_protecting_in_place_after_a_killed_distributed_run_leaves_its_outputs_alone(
    inputs: Path, settings: ProtectSettings
) -> None:
    """A distributed run killed before merging its shards recorded its outputs only there."""
    samples.photo(inputs / "a.png")
    samples.photo(inputs / "b.png", 40, 30)
    in_place = dataclasses.replace(settings, allow_output_in_input=True)
    _run([inputs / "a.png"], inputs, in_place)
    manifest = inputs / MANIFEST_NAME
    shard = inputs / SHARDS_FOLDER / "batch.jsonl"
    shard.parent.mkdir()
    shard.write_text(manifest.read_text())  # as a worker wrote it; the merge never happened
    manifest.unlink()
    again, _ = _run([inputs], inputs, dataclasses.replace(in_place, suffix=".v2"))
    assert sorted(e.source.name for e in again.done) == ["a.png", "b.png"], "a copy protected"
    assert {e.source.name for e in again.left_out} == {"a.protected.png"}


@pytest.mark.parametrize(
    ("mode", "named", "absent"),
    [
        ("photo", {"generator"}, {"finetune_steps", "encoder", "perturbation", "randomize"}),
        ("photo-finetune", {"generator", "finetune_steps", "encoder"}, {"perturbation"}),
        ("universal", {"perturbation", "randomize"}, {"generator", "finetune_steps", "encoder"}),
        ("finetune", {"perturbation", "finetune_steps", "objective"}, {"generator"}),
    ],
)
def test_reported_settings_are_those_the_mode_uses(
    mode: str, named: set[str], absent: set[str]
) -> None:
    described = ProtectSettings(mode=mode).describe()
    assert named <= set(described) and not absent & set(described), described
    json.dumps(described)  # the report's JSON


def test_a_heic_with_transparency_becomes_a_png_that_keeps_it(
    tmp_path: Path, inputs: Path, settings: ProtectSettings, originals_guard: list[Path]
) -> None:
    """A HEIC is written as JPEG, which has no transparency: one that holds some is written
    as PNG instead, under a name that says so; a plain one stays a JPEG."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pixels = samples.photo_array()
    alpha = Image.fromarray(pixels)
    alpha.putalpha(Image.linear_gradient("L").resize(alpha.size))
    pillow_heif.from_pillow(alpha).save(inputs / "alpha.heic", quality=95)
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(inputs / "plain.heic", quality=95)
    originals_guard.append(inputs)
    report, _ = _run([inputs], tmp_path / "out", settings)
    assert report.ok and _outputs(tmp_path / "out") == [
        "alpha.protected.png",
        "plain.protected.jpg",
    ]
    with Image.open(tmp_path / "out" / "alpha.protected.png") as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        assert np.asarray(image)[..., 3].min() < 50  # the gradient's clear end survived
    with Image.open(tmp_path / "out" / "plain.protected.jpg") as image:
        assert image.format == "JPEG"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_private_photos_copy_is_private_too(tmp_path: Path, settings: ProtectSettings) -> None:
    """A photo only its owner may read (600) gave a copy anyone could read (644), with the
    same camera data; a photo others may read keeps the usual permissions."""
    inputs = tmp_path / "in"
    private, shared = samples.photo(inputs / "private.jpg"), samples.photo(inputs / "shared.jpg")
    private.chmod(0o600)
    shared.chmod(0o644)
    old_umask = os.umask(0o022)
    try:
        report = ProtectJob([inputs], tmp_path / "out", settings).run()
    finally:
        os.umask(old_umask)
    modes = {e.source.name: stat.S_IMODE(e.output.stat().st_mode) for e in report.done}
    assert modes == {"private.jpg": 0o600, "shared.jpg": 0o644}


def test_a_folder_added_later_never_lands_in_a_same_named_folder_of_the_first(
    tmp_path: Path, settings: ProtectSettings
) -> None:
    """``Elsewhere/Holiday/beach.jpg`` went to ``Holiday/beach.protected-2.jpg`` beside the copy
    of the first folder's own ``Holiday/beach.jpg``: two beach copies, nothing to tell which."""
    first = [samples.photo(tmp_path / "Photos" / n) for n in ("a.jpg", "Holiday/beach.jpg")]
    later = samples.photo(tmp_path / "Elsewhere" / "Holiday" / "beach.jpg", 40, 30)
    out = tmp_path / "out"
    base = tmp_path / "Photos"
    report = ProtectJob([*first, later], out, settings, mirror_base=base).run()
    assert len(report.done) == 3
    assert _outputs(out) == [
        "Holiday (Elsewhere)/beach.protected.jpg",
        "Holiday/beach.protected.jpg",
        "a.protected.jpg",
    ]
    photos = [jobs.scan.InputPhoto(p, p.parent) for p in (first[0], later)]
    (tmp_path / "Photos" / "Holiday (Elsewhere)").mkdir()  # that name taken too: numbered
    named = jobs.scan.relative_paths(photos, base)
    assert [q.as_posix() for q in named] == ["a.jpg", "Holiday (2)/beach.jpg"]
