"""Reading HEIC and AVIF: colour descriptions, image collections, depth, alpha, decoder errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, features

from spdesk.core import export
from spdesk.core.errors import UnsupportedImageError
from spdesk.core.export import ExportOptions
from spdesk.core.imageio import read_header, read_image
from tests import protect_samples as samples

pillow_heif = pytest.importorskip("pillow_heif")

# Display P3's colorants adapted to D50, as Apple's "Display P3" ICC profile states them.
DISPLAY_P3_D50 = np.array(
    [[0.51512, 0.29198, 0.15710], [0.24120, 0.69225, 0.06657], [-0.00105, 0.04189, 0.78407]]
)
SRGB_D50 = np.array(  # sRGB's colorants adapted to D50 (Bradford), as lcms builds sRGB
    [[0.43607, 0.38515, 0.14307], [0.22249, 0.71687, 0.06061], [0.01392, 0.09708, 0.71410]]
)


def _heic(path: Path, image: Image.Image, **save: object) -> Path:
    try:
        pillow_heif.from_pillow(image).save(path, quality=95, **save)
    except Exception as error:  # no HEVC encoder in this build
        pytest.skip(f"cannot write HEIC here: {error}")
    return path


def _photo(mode: str = "RGB") -> Image.Image:
    image = Image.fromarray(samples.photo_array())
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    return image


def _p3_heic(path: Path, transfer: int = 13) -> Path:
    nclx = {"color_primaries": 12, "transfer_characteristics": transfer}
    return _heic(path, _photo(), matrix_coefficients=6, full_range_flag=1, **nclx)


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def test_display_p3_heic_keeps_its_colour_space_as_an_icc_profile(tmp_path: Path) -> None:
    decoded = read_image(_p3_heic(tmp_path / "p3.heic"))
    assert decoded.icc_profile is not None
    profile = ImageCms.ImageCmsProfile(io.BytesIO(decoded.icc_profile))
    colorants = [profile.profile.red_colorant, profile.profile.green_colorant]
    colorants.append(profile.profile.blue_colorant)
    measured = np.array([c[0] for c in colorants]).T  # (XYZ, xyY) per colorant
    assert np.allclose(measured, DISPLAY_P3_D50, atol=2e-4)

    colours = np.array([[200, 120, 80], [60, 150, 90], [90, 100, 210], [128, 128, 128]], np.uint8)
    through_lcms = ImageCms.profileToProfile(
        Image.fromarray(colours[None]),
        profile,
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    assert through_lcms is not None
    linear_p3 = _srgb_decode(colours / 255)  # Display P3 uses the sRGB curve
    expected = _srgb_encode(linear_p3 @ DISPLAY_P3_D50.T @ np.linalg.inv(SRGB_D50).T) * 255
    assert np.abs(np.asarray(through_lcms)[0] - expected).max() <= 1.5
    assert abs(float(expected[0, 0]) - 200) > 10  # P3 red is redder: a real change to check


def test_display_p3_heic_profile_is_written_into_its_jpeg_copy(tmp_path: Path) -> None:
    decoded = read_image(_p3_heic(tmp_path / "p3.heic"))
    encoded = export.prepare(decoded, decoded.image, "JPEG", ExportOptions())
    assert encoded.params.get("icc_profile") == decoded.icc_profile is not None


def test_srgb_heic_gets_no_made_up_profile(tmp_path: Path) -> None:
    nclx = {"color_primaries": 1, "transfer_characteristics": 13}
    decoded = read_image(_heic(tmp_path / "srgb.heic", _photo(), **nclx))
    assert decoded.icc_profile is None and decoded.notes == []


def test_hdr_heic_says_its_colours_may_look_different(tmp_path: Path) -> None:
    decoded = read_image(_p3_heic(tmp_path / "pq.heic", transfer=16))
    assert any("may look different" in note for note in decoded.notes)


def test_heic_image_collection_keeps_its_primary_image_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "two.heic"
    primary, other = _photo(), Image.new("RGB", (20, 10), (0, 0, 255))
    try:
        heif = pillow_heif.from_pillow(primary)
        heif.add_from_pillow(other)
        heif.save(path, quality=95)
    except Exception as error:
        pytest.skip(f"cannot write HEIC here: {error}")
    assert read_header(path).width == 48
    decoded = read_image(path)
    assert decoded.size == (48, 32)
    assert "kept the main photo; 1 other image not copied" in decoded.notes


def test_ten_bit_heic_says_it_was_saved_as_8_bit(tmp_path: Path) -> None:
    deep = samples.photo_array().astype(np.uint16) * 257
    path = tmp_path / "deep.heic"
    try:
        pillow_heif.from_bytes(mode="RGB;16", size=(48, 32), data=deep.tobytes()).save(
            path, quality=95
        )
    except Exception as error:
        pytest.skip(f"cannot write a 10-bit HEIC here: {error}")
    decoded = read_image(path)
    assert decoded.bit_depth == 10
    assert "10-bit image saved as 8-bit (scaled, not clipped)" in decoded.notes


def test_heic_with_transparency_is_written_as_png(tmp_path: Path) -> None:
    decoded = read_image(_heic(tmp_path / "alpha.heic", _photo("RGBA")))
    assert decoded.has_alpha and read_header(tmp_path / "alpha.heic").has_alpha
    fmt = export.output_format(decoded.source_format, ExportOptions(), alpha=decoded.has_alpha)
    assert fmt == "PNG"
    encoded = export.prepare(decoded, decoded.image, fmt, ExportOptions())
    assert encoded.image.mode == "RGBA" and encoded.notes == ["HEIC saved as PNG"]
    chosen = ExportOptions(format="JPEG")
    assert export.output_format(decoded.source_format, chosen, alpha=True) == "JPEG"


needs_avif = pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")


def _avif(path: Path, major_brand: bytes = b"avif") -> Path:
    buffer = io.BytesIO()
    _photo().save(buffer, "AVIF", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[:8] + major_brand + data[12:])  # the ftyp box's major brand
    return path


@needs_avif
@pytest.mark.parametrize("brand", [b"avif", b"mif1"])
def test_avif_decodes_with_pillow_and_is_written_as_jpeg(tmp_path: Path, brand: bytes) -> None:
    decoded = read_image(_avif(tmp_path / "photo.avif", brand))
    assert decoded.source_format == "AVIF" and decoded.size == (48, 32)
    assert np.abs(np.asarray(decoded.image, float) - samples.photo_array()).mean() < 4
    assert export.output_format(decoded.source_format, ExportOptions()) == "JPEG"


def test_avif_without_pillow_avif_support_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "photo.avif"
    path.write_bytes(b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B" + bytes(64))
    monkeypatch.setattr("spdesk.core.imageio.avif_supported", lambda: False)
    with pytest.raises(UnsupportedImageError, match="AVIF needs a Pillow built with AVIF") as e:
        read_image(path)
    # A running app keeps the Pillow it started with: the window offers no Retry, so the hint
    # says that spdesk must start again once Pillow is updated.
    assert "then start spdesk again" in (e.value.hint or "")


def test_a_decoder_that_cannot_decode_the_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _heic(tmp_path / "photo.heic", _photo())

    def no_decoder(self: Image.Image) -> None:
        raise RuntimeError("Support for this compression format has not been built in: AV1")

    monkeypatch.setattr(pillow_heif.as_plugin.HeifImageFile, "load", no_decoder)
    with pytest.raises(UnsupportedImageError, match=r"photo\.heic") as info:
        read_image(path)
    assert "has not been built in" in (info.value.hint or "")
