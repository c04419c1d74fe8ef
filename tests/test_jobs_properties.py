"""Property test: whatever names, modes, sizes and metadata a folder holds, a job keeps its word.

Hypothesis generates folders of photos with hostile names (raw bytes that are not UTF-8, names at
the file system's length limit, NFC and NFD forms of one name, leading dashes, spaces, names that
look like outputs) and images of every mode spdesk reads, with and without EXIF orientation. For
each folder the job must: raise nothing, report exactly one outcome per file, write only outputs
that decode to the photo's upright size, leave every original byte-identical and leave no
temporary file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from spdesk.core.files import TEMP_SUFFIX
from spdesk.core.jobs import ProtectJob, ProtectSettings
from tests import protect_samples as samples

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX names are bytes")

EXAMPLES = 150
_FORMATS = {  # mode -> formats Pillow writes it in
    "RGB": ("PNG", "JPEG", "TIFF", "WEBP", "BMP"),
    "RGBA": ("PNG", "TIFF", "WEBP"),
    "L": ("PNG", "JPEG", "TIFF", "BMP"),
    "LA": ("PNG",),
    "P": ("PNG", "GIF", "TIFF", "BMP"),
    "1": ("PNG", "TIFF", "BMP"),
    "I;16": ("PNG", "TIFF"),
    "CMYK": ("JPEG", "TIFF"),
}
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp",
               "GIF": ".gif"}  # fmt: skip

_letters = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=20,
)


@st.composite
def stems(draw: st.DrawFn) -> bytes:
    """A file stem as bytes: Unicode in NFC or NFD, raw non-UTF-8 bytes, dashes, long."""
    kind = draw(st.sampled_from(["unicode", "bytes", "dash", "long", "output-like"]))
    if kind == "bytes":
        raw = draw(st.binary(min_size=1, max_size=30))
        return raw.replace(b"/", b"_").replace(b"\0", b"_")
    text = draw(_letters)
    text = unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), text)
    if kind == "dash":
        text = "-" + text
    elif kind == "long":
        text = text * (300 // len(text.encode()) + 1)
    elif kind == "output-like":
        text += ".protected"
    return text.encode("utf-8")


@st.composite
def photos(draw: st.DrawFn) -> tuple[bytes, bytes, tuple[int, int]]:
    """(file name, file content, upright size): an image of any mode, format and size, maybe
    with an EXIF orientation (6 and 8 turn it a quarter)."""
    mode = draw(st.sampled_from(sorted(_FORMATS)))
    fmt = draw(st.sampled_from(_FORMATS[mode]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    image = Image.fromarray(samples.photo_array(width, height, seed=seed), mode="RGB")
    image = image.convert("L").convert(mode) if mode in ("I;16",) else image.convert(mode)
    save: dict[str, object] = {}
    orientation = draw(st.sampled_from([None, 1, 3, 6, 8]))
    upright = (width, height)
    if orientation and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
        upright = (height, width) if orientation in (6, 8) else upright
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    name = draw(stems())[:240] + _EXTENSIONS[fmt].encode()
    return name, buffer.getvalue(), upright


def _hashes(folder: Path) -> dict[bytes, str]:
    return {
        os.fsencode(p.name): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.is_file()
    }


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(files=st.lists(photos(), min_size=1, max_size=4, unique_by=lambda f: f[0]))
def test_any_folder_keeps_the_promises(files: list[tuple[bytes, bytes, tuple[int, int]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs, out = root / "in", root / "out"
        inputs.mkdir()
        written: list[Path] = []
        sizes: dict[Path, tuple[int, int]] = {}
        for name, data, upright in files:
            path = Path(os.fsdecode(os.fsencode(inputs) + b"/" + name))
            try:
                path.write_bytes(data)
            except OSError:  # a name this file system refuses (too long, not UTF-8 on some)
                continue
            written.append(path)
            sizes[path] = upright
        if not written:
            return
        before = _hashes(inputs)
        perturbation = samples.perturbation_file(root)
        job_settings = ProtectSettings(perturbation=perturbation, working_size=16, workers=2)
        report = ProtectJob([inputs], out, job_settings).run()  # raises nothing
        outcomes = [e.source for e in (*report.done, *report.skipped, *report.failed)]
        assert sorted(map(os.fsencode, outcomes)) == sorted(map(os.fsencode, written))
        for event in report.done:
            with Image.open(event.output) as output:
                output.load()
                assert output.size == sizes[event.source]
        assert _hashes(inputs) == before
        assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
