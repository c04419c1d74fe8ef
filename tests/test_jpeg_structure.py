"""The structural check a written JPEG gets instead of a second decode: whole streams of every
kind Pillow writes pass with their frame size; anything cut, padded or lying about a length
fails, and the job's output check turns that into a failure naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from spdesk.core.errors import OutputError
from spdesk.core.export import check_written
from spdesk.core.jpeg_structure import jpeg_frame_size


def _photo(width: int = 70, height: int = 45, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _jpeg(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def _big_icc() -> bytes:  # more than one APP2 segment holds it (65519 bytes each)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile + b"\0" * (150_000 - len(profile))


WHOLE = {
    "baseline q95 4:4:4": lambda: _jpeg(_photo(), quality=95, subsampling=0),
    "progressive": lambda: _jpeg(_photo(), quality=75, progressive=True),
    "grey": lambda: _jpeg(_photo(mode="L"), quality=90),
    "restart markers": lambda: _jpeg(_photo(), quality=90, restart_marker_blocks=2),
    "EXIF and a three-segment ICC": lambda: _jpeg(
        _photo(), quality=95, exif=Image.Exif().tobytes(), icc_profile=_big_icc()
    ),
    "one pixel": lambda: _jpeg(_photo(1, 1)),
}


@pytest.mark.parametrize("kind", WHOLE)
def test_whole_streams_pass_with_their_frame_size(kind: str) -> None:
    data = WHOLE[kind]()
    with Image.open(io.BytesIO(data)) as image:
        assert jpeg_frame_size(data) == image.size


@pytest.mark.parametrize("kind", ["baseline q95 4:4:4", "progressive", "restart markers"])
def test_a_stream_cut_anywhere_fails(kind: str) -> None:
    data = WHOLE[kind]()
    for cut in [*range(0, 700, 7), *range(700, len(data), max(1, len(data) // 300))]:
        with pytest.raises(ValueError):
            jpeg_frame_size(data[:cut])
    for cut in range(len(data) - 4, len(data)):  # the last bytes, one by one
        with pytest.raises(ValueError, match="cut short"):
            jpeg_frame_size(data[:cut])


def test_bytes_after_the_end_marker_fail() -> None:
    data = WHOLE["baseline q95 4:4:4"]()
    with pytest.raises(ValueError, match="3 bytes follow the end marker"):
        jpeg_frame_size(data + b"abc")


def test_fill_bytes_before_a_marker_are_allowed() -> None:
    data = WHOLE["baseline q95 4:4:4"]()
    assert jpeg_frame_size(data[:-2] + b"\xff\xff\xff" + data[-2:]) == (70, 45)


def test_a_segment_longer_than_the_file_fails() -> None:
    data = bytearray(WHOLE["EXIF and a three-segment ICC"]())
    app2 = data.index(b"\xff\xe2")
    data[app2 + 2 : app2 + 4] = (0xFFFF).to_bytes(2, "big")  # longer than what follows it
    with pytest.raises(ValueError, match=r"runs past|no marker"):
        jpeg_frame_size(bytes(data[: app2 + 40_000]))


def test_a_stream_without_a_frame_or_scan_fails() -> None:
    with pytest.raises(ValueError, match="no frame"):
        jpeg_frame_size(b"\xff\xd8\xff\xd9")
    with pytest.raises(ValueError, match="does not start like a JPEG"):
        jpeg_frame_size(b"\x89PNG\r\n\x1a\n")


def test_the_output_check_names_the_file_whose_frame_is_not_the_photos_size(
    tmp_path: Path,
) -> None:
    temp = tmp_path / "x.tmp"
    temp.write_bytes(WHOLE["baseline q95 4:4:4"]())
    assert len(check_written(temp, (70, 45), tmp_path / "a.protected.jpg")) == 64
    with pytest.raises(OutputError, match=r"a\.protected\.jpg.*45x70"):
        check_written(temp, (45, 70), tmp_path / "a.protected.jpg")
    temp.write_bytes(WHOLE["baseline q95 4:4:4"]()[:-600])
    with pytest.raises(OutputError, match=r"a\.protected\.jpg.* does not decode .*cut short"):
        check_written(temp, (70, 45), tmp_path / "a.protected.jpg")
