"""Camera RAW files are not photos here, though most are TIFF inside: their first image is often
a small preview, which spdesk would otherwise "protect" in place of the photo."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from spdesk.cli import main
from spdesk.core.discovery import discover
from spdesk.core.errors import UnsupportedImageError
from spdesk.core.formats import CAMERA_RAW_REASON, camera_raw, raw_by_name, sniff
from spdesk.core.imageio import read_header, read_image

NEW_SUBFILE_TYPE, MAKE, MODEL, DNG_VERSION = 254, 271, 272, 50706


def _tiff(tags: dict[int, object] | None = None, *, big_endian: bool = False) -> bytes:
    """A small TIFF made by Pillow, its first directory carrying ``tags``."""
    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, value in (tags or {}).items():
        info[tag] = value
    buffer = io.BytesIO()
    image = Image.new("RGB", (160, 120), (120, 90, 60))
    save = {"tiffinfo": info} | ({"big_endian": True} if big_endian else {})
    image.save(buffer, "TIFF", **save)
    return buffer.getvalue()


def _multi_page_tiff() -> bytes:
    buffer = io.BytesIO()
    pages = [Image.new("RGB", (64, 48), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def _cr2_head() -> bytes:
    """Canon's CR2: a little-endian TIFF header, then "CR", version 2.0, the RAW IFD's offset."""
    return b"II*\x00\x10\x00\x00\x00CR\x02\x00\x00\x00\x00\x00" + bytes(240)


def test_a_tiff_whose_first_image_is_a_reduced_size_preview_is_not_a_photo() -> None:
    preview = _tiff({NEW_SUBFILE_TYPE: 1, MAKE: "NIKON CORPORATION"})
    assert sniff(preview) is None
    assert sniff(_tiff({NEW_SUBFILE_TYPE: 1}, big_endian=True)) is None


def test_a_dng_and_a_cr2_are_not_photos_by_content() -> None:
    assert sniff(_tiff({DNG_VERSION: b"\x01\x04\x00\x00"})) is None
    assert sniff(_cr2_head()) is None


def test_a_raw_name_on_tiff_content_is_a_camera_raw_file() -> None:
    """A RAW file's first image can be a full-size preview, a plain TIFF to any reader: its
    name (DSC_0002.NEF) is what tells it apart."""
    tiff = _tiff()
    assert camera_raw("DSC_0002.NEF", tiff) and camera_raw("x.dng", tiff)
    assert camera_raw("photo.tif", _tiff({NEW_SUBFILE_TYPE: 1}))
    assert not camera_raw("photo.tif", tiff) and not camera_raw("photo.TIFF", _multi_page_tiff())
    assert raw_by_name("IMG_0001.CR3", None) and raw_by_name("IMG_0001.cr2", "TIFF")
    assert not raw_by_name("IMG_0001.NEF", "JPEG")  # a JPEG, whatever its name: taken


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: _tiff(), id="plain"),
        pytest.param(lambda: _tiff(big_endian=True), id="big-endian"),
        pytest.param(
            lambda: _tiff({NEW_SUBFILE_TYPE: 0, MAKE: "NIKON", MODEL: "D850"}), id="camera"
        ),
        pytest.param(_multi_page_tiff, id="multi-page"),
    ],
)
def test_ordinary_tiffs_are_still_photos(content: Callable[[], bytes]) -> None:
    assert sniff(content()) == "TIFF"


def test_a_raw_files_preview_in_a_folder_is_left_out_not_protected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk protect raw3 --out rawout3` said "1 protected" of DSC_0004.NEF, a Nikon RAW file
    whose first image is its 160x120 preview, and wrote DSC_0004.protected.tif from it."""
    folder = tmp_path / "raw3"
    folder.mkdir()
    (folder / "DSC_0004.NEF").write_bytes(_tiff({NEW_SUBFILE_TYPE: 1, MAKE: "NIKON CORPORATION"}))
    found = discover([folder])
    assert found.photos == [] and [s.path.name for s in found.skipped] == ["DSC_0004.NEF"]
    assert found.skipped[0].reason == CAMERA_RAW_REASON
    main(["protect", str(folder), "--out", str(tmp_path / "out")])
    assert "0 protected" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("DSC_0004*"))


def test_a_raw_file_with_a_plain_tiff_inside_is_left_out_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DSC_0002.NEF, IMG_0001.CR2 and x.DNG, plain TIFF inside (a full-size preview first), were
    each "protected" into a .protected.tif."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in ("DSC_0002.NEF", "IMG_0001.CR2", "x.DNG"):
        (folder / name).write_bytes(_tiff())
    found = discover([folder])
    assert found.photos == [] and {s.reason for s in found.skipped} == {CAMERA_RAW_REASON}
    main(["protect", str(folder), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert "0 protected" in out and f"DSC_0002.NEF: {CAMERA_RAW_REASON}" in err


def test_a_raw_file_named_on_its_own_fails_with_what_to_do(tmp_path: Path) -> None:
    raw = tmp_path / "DSC_0004.NEF"
    raw.write_bytes(_tiff({NEW_SUBFILE_TYPE: 1, MAKE: "NIKON CORPORATION"}))
    expected = r"DSC_0004\.NEF is a camera RAW file: export it as JPEG or TIFF"
    with pytest.raises(UnsupportedImageError, match=expected):
        read_image(raw)
    preview = tmp_path / "preview.tif"  # a RAW file by content, whatever its name
    preview.write_bytes(raw.read_bytes())
    with pytest.raises(UnsupportedImageError, match=r"preview\.tif is a camera RAW file"):
        read_header(preview)
