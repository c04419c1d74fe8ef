"""Reading photos: format by content, upright 8-bit RGB(A), and a named error for each bad input."""

from __future__ import annotations

import os
import sys
import tracemalloc
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spdesk.cli import main
from spdesk.core.discovery import DiscoveryOptions, discover
from spdesk.core.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)
from spdesk.core.formats import sniff
from spdesk.core.imageio import read_image
from tests import protect_samples as samples


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    return root


def test_formats_are_sniffed_by_content(tmp_path: Path) -> None:
    for fmt, name in [("JPEG", "a.bin"), ("PNG", "b.jpg"), ("WEBP", "c"), ("TIFF", "d.png"),
                      ("BMP", "e.txt"), ("GIF", "f.jpeg")]:  # fmt: skip
        path = samples.photo(tmp_path / name, fmt=fmt)
        assert sniff(path.read_bytes()[:32]) == fmt
    assert sniff(b"BMW notes, not a bitmap at all") is None
    assert sniff(b"") is None
    assert sniff(b"\x00\x00\x00\x18ftypheic\x00\x00") == "HEIF"


def test_png_named_jpg_decodes_as_png(tmp_path: Path) -> None:
    path = samples.photo(tmp_path / "really.jpg", fmt="PNG")
    decoded = read_image(path)
    assert decoded.source_format == "PNG"
    assert np.array_equal(np.asarray(decoded.image), samples.photo_array())


@pytest.mark.parametrize("content", [b"", os.urandom(2048)], ids=["empty", "random"])
def test_empty_and_random_files_are_not_images(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(content)
    with pytest.raises(NotAnImageError, match=r"IMG_0001\.jpg"):
        read_image(path)


def test_truncated_jpeg_is_a_clear_error(tmp_path: Path) -> None:
    path = samples.truncated_jpeg(tmp_path / "half.jpg")
    with pytest.raises(CorruptImageError, match=r"half\.jpg.*(damaged|truncated)") as caught:
        read_image(path)
    # Plain words first, then the advice; the decoder's own words last (a narrow column
    # showed "(image file is truncated (14 bytes not processed))" and cut the advice off).
    error = caught.value
    assert error.message == "half.jpg is a damaged or truncated JPEG file and cannot be decoded."
    assert error.hint.startswith("Copy the photo again from its original source")
    assert "The decoder said: image file is truncated" in error.hint


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    path = samples.png_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 2000
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=r"bomb\.png is too large \(10000 MP\)"):
            read_image(path, max_pixels=50_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # decoding it would take 10 GB


def test_default_limit_also_refuses_the_bomb(tmp_path: Path) -> None:
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png is too large \(10000 MP\)") as caught:
        read_image(samples.png_bomb(tmp_path / "bomb.png"))
    assert "spdesk protect --max-megapixels 10001" in caught.value.hint  # the option that admits it


def test_a_raised_pixel_limit_takes_effect_past_pillows_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    side = 13_500  # 182 MP: above Pillow's own refusal (179 MP), below the raised limit
    path = samples.png_bomb(tmp_path / "big.png", side=side, data=b"not zlib data")
    # Pillow no longer refuses it first: it is decoded, and its data is found broken.
    with pytest.raises(CorruptImageError, match=r"big\.png is a damaged or truncated PNG"):
        read_image(path, max_pixels=200_000_000)
    with pytest.raises(ImageTooLargeError, match=r"big\.png is too large \(13500x13500"):
        read_image(path, max_pixels=100_000_000)


def test_a_small_pixel_limit_is_said_in_megapixels_that_are_not_zero(tmp_path: Path) -> None:
    path = samples.photo(tmp_path / "photo.png", 500, 375)
    with pytest.raises(
        ImageTooLargeError, match=r"\(500x375, 0\.19 MP\): the limit is 0\.1 megapixels"
    ):
        read_image(path, max_pixels=100_000)  # it said "(0 MP): the limit is 0 megapixels"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_and_reset(tmp_path: Path, orientation: int) -> None:
    path, upright = samples.oriented_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    decoded = read_image(path)
    assert decoded.image.size == upright.size
    diff = np.abs(np.asarray(decoded.image, np.int16) - np.asarray(upright, np.int16))
    assert diff.mean() < 4  # only JPEG noise: the red corner is top-left again
    assert decoded.exif is not None
    assert 0x0112 not in decoded.exif
    assert decoded.exif[0x010F] == "TestCam"


def _xmp(orientation: int) -> bytes:
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>' % orientation
    )


def test_an_orientation_only_in_the_xmp_is_left_as_browsers_leave_it(tmp_path: Path) -> None:
    """Pillow reads tiff:Orientation from the XMP where the EXIF has none, and exif_transpose
    turned the photo by it; browsers (and most viewers) turn by the EXIF alone, so the copy
    showed turned beside its original."""
    stored = Image.new("RGB", (40, 24), (90, 130, 170))
    stored.paste((220, 30, 30), (0, 0, 12, 8))
    path = tmp_path / "xmp6.jpg"
    stored.save(path, "JPEG", quality=98, subsampling=0, xmp=_xmp(6))
    decoded = read_image(path)
    assert decoded.image.size == (40, 24)  # as stored, as a browser shows it
    diff = np.abs(np.asarray(decoded.image, np.int16) - np.asarray(stored, np.int16))
    assert diff.mean() < 4
    assert decoded.exif is None or 0x0112 not in decoded.exif
    assert decoded.xmp is not None and b'tiff:Orientation="6"' in bytes(decoded.xmp)  # kept
    # With an EXIF orientation too, the EXIF's turns it, and the XMP's is taken out with it.
    both, upright = samples.oriented_jpeg(tmp_path / "both.jpg", 6)
    with Image.open(both) as image:
        exif = image.getexif().tobytes()
        image.save(tmp_path / "both2.jpg", "JPEG", quality=98, exif=exif, xmp=_xmp(6))
    decoded = read_image(tmp_path / "both2.jpg")
    assert decoded.image.size == upright.size
    assert decoded.xmp is None or b"tiff:Orientation" not in bytes(decoded.xmp)


@pytest.mark.skipif(not samples.CMYK_PROFILE.is_file(), reason="no CMYK ICC profile here")
def test_cmyk_with_profile_converts_to_srgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink
    cmyk.save(path, "JPEG", quality=95, icc_profile=samples.CMYK_PROFILE.read_bytes())
    decoded = read_image(path)
    red, green, blue = decoded.image.getpixel((8, 8))  # type: ignore[misc]
    assert decoded.image.mode == "RGB"
    assert red > 180 and green < 90 and blue < 90
    assert any("CMYK" in note for note in decoded.notes)
    assert decoded.icc_profile and b"RGB" in decoded.icc_profile[:20]


def test_cmyk_without_profile_uses_the_plain_formula_when_no_press_profile_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spdesk.core import colour

    monkeypatch.setattr(colour, "_STANDARD_CMYK", (tmp_path / "none.icc",))
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, "JPEG")  # pure red ink
    decoded = read_image(path)
    assert decoded.image.mode == "RGB" and decoded.icc_profile is None
    red, green, blue = decoded.image.getpixel((8, 8))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60
    assert any("plain formula" in note for note in decoded.notes)


def test_16bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
    decoded = read_image(samples.png16(tmp_path / "grey16.png", values))
    row = np.asarray(decoded.image)[0, :, 0]
    assert decoded.image.mode == "RGB"
    assert row.tolist() == [0, 1, 1, 156, 255]  # 40000/257 = 155.6: scaled, not clipped to 255
    assert any("16-bit" in note for note in decoded.notes)


def test_a_16bit_grey_pngs_transparent_colour_stays_transparent(tmp_path: Path) -> None:
    """Scaled to 8 bits into a new image, it lost its tRNS key: the copy came out opaque."""
    values = np.full((24, 32), 40000, dtype=np.uint16)
    values[:8, :8] = 7 * 257  # the transparent colour
    path = tmp_path / "grey16_key.png"
    Image.fromarray(values).save(path, transparency=7 * 257)
    decoded = read_image(path)
    assert decoded.image.mode == "RGBA"
    alpha = np.asarray(decoded.image)[..., 3]
    assert (
        (alpha[:8, :8] == 0).all() and (alpha[8:, :] == 255).all() and (alpha[:, 8:] == 255).all()
    )
    out = tmp_path / "out"
    assert main(["protect", str(path), "--out", str(out)]) == 0
    (written,) = out.glob("grey16_key.protected.*")
    with Image.open(written) as copy:
        kept = np.asarray(copy.convert("RGBA"))[..., 3]
    assert (kept[:8, :8] == 0).all() and (kept[8:, :] == 255).all()


def test_a_32bit_integer_tiff_is_refused_like_a_floating_point_one(tmp_path: Path) -> None:
    """Scaled as if it held 16 bits, it came out black or wrapped, and counted as done."""
    path = tmp_path / "science.tif"
    Image.fromarray(np.array([[0, 255, 2**31 - 1]], dtype=np.int32)).save(path)
    with pytest.raises(UnsupportedImageError, match=r"holds 32-bit integer .* 8- and 16-bit"):
        read_image(path)


def test_negative_values_of_a_16bit_image_are_black_not_wrapped() -> None:
    from spdesk.core.colour import _scale_16bit

    image = Image.fromarray(np.array([[-70000, 0, 65535]], dtype=np.int32))  # mode "I" is signed
    assert np.asarray(_scale_16bit(image, 16)).tolist() == [[0, 0, 255]]


def test_48bit_rgb_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[[0, 40000, 65535], [300, 255, 20000]]], dtype=np.uint16)
    decoded = read_image(samples.png16(tmp_path / "rgb48.png", values))
    pixels = np.asarray(decoded.image)[0]
    assert pixels[0].tolist() == [0, 156, 255]
    assert pixels[1].tolist() == [1, 0, 78]
    assert decoded.bit_depth == 16


@pytest.mark.parametrize("maker", [samples.palette_with_transparency, samples.rgba, samples.la])
def test_alpha_is_kept(tmp_path: Path, maker: object) -> None:
    path = maker(tmp_path / "alpha.png")  # type: ignore[operator]
    source = Image.open(path).convert("RGBA")
    decoded = read_image(path)
    assert decoded.image.mode == "RGBA"
    assert np.array_equal(np.asarray(decoded.image)[..., 3], np.asarray(source)[..., 3])


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_are_refused_with_frame_count(tmp_path: Path, fmt: str) -> None:
    path = samples.animated(tmp_path / f"anim.{fmt.lower()}", fmt, frames=3)
    with pytest.raises(UnsupportedImageError, match=r"is an animated .* 3 frames") as refused:
        read_image(path)
    # A queued row marked Failed, or a line among failures: not said to be "left out".
    assert "left out" not in refused.value.user_text()


def test_multipage_tiff_is_refused(tmp_path: Path) -> None:
    path = samples.animated(tmp_path / "pages.tif", "TIFF", frames=2)
    with pytest.raises(UnsupportedImageError, match="is a multi-page TIFF with 2 frames"):
        read_image(path)


@pytest.mark.parametrize("size", [(1, 1), (10000, 8)])
def test_extreme_sizes_decode(tmp_path: Path, size: tuple[int, int]) -> None:
    path = samples.photo(tmp_path / "odd.png", *size)
    assert read_image(path).image.size == size


def test_malformed_exif_still_decodes(tmp_path: Path) -> None:
    decoded = read_image(samples.malformed_exif_jpeg(tmp_path / "bad_exif.jpg"))
    assert decoded.image.size == (24, 16)


def test_heic_without_pillow_heif_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    real_import = builtins.__import__

    def no_heif(name: str, *args: object, **kwargs: object) -> object:
        if name == "pillow_heif":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_heif)
    with pytest.raises(UnsupportedImageError, match="HEIC support is not installed") as info:
        read_image(path)
    assert 'pip install "pillow-heif>=0.16"' in (info.value.hint or "")

    monkeypatch.setattr(sys, "frozen", True, raising=False)  # the installers' app has no pip
    with pytest.raises(UnsupportedImageError, match="HEIC support is not installed") as info:
        read_image(path)
    assert "save the photo as JPEG first" in (info.value.hint or "")
    assert not (info.value.hint or "").startswith("Install it with")


def test_heic_is_named_among_the_readable_kinds_only_where_it_can_be_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from spdesk.core.formats import readable_kinds

    found = importlib.util.find_spec
    monkeypatch.setattr("spdesk.core.formats.avif_supported", lambda: False)  # tested apart
    # pillow-heif is a test extra
    assert readable_kinds() == "JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC"
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "pillow_heif" else found(name)
    )
    assert readable_kinds() == "JPEG, PNG, WebP, TIFF, BMP, GIF"


def test_heic_decodes_with_pillow_heif(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.heic"
    try:
        pillow_heif.from_pillow(Image.fromarray(samples.photo_array())).save(path, quality=95)
    except Exception as error:  # no HEVC encoder in this build
        pytest.skip(f"cannot write HEIC here: {error}")
    decoded = read_image(path)
    assert decoded.image.size == (48, 32) and decoded.source_format == "HEIF"


def test_unreadable_and_missing_inputs_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImageError, match=r"gone\.jpg no longer exists"):
        read_image(tmp_path / "gone.jpg")
    path = samples.photo(tmp_path / "locked.jpg")
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ImageError, match=r"Cannot read .*locked\.jpg: permission denied"):
        read_image(path)


# --- discovery ----------------------------------------------------------------------------------
def _tree(root: Path) -> None:
    samples.photo(root / "b.jpg")
    samples.photo(root / "A.png", fmt="PNG")
    samples.photo(root / "sub" / "c.webp", fmt="WEBP")
    samples.photo(root / "sub" / "no_extension", fmt="PNG")
    (root / ".DS_Store").write_bytes(os.urandom(64))
    (root / "Thumbs.db").write_bytes(os.urandom(64))
    (root / "b.xmp").write_text("<x:xmpmeta/>")
    (root / "._b.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / "notes.txt").write_text("BM not a bitmap")
    (root / "broken.jpg").write_bytes(b"")
    samples.photo(root / "b.protected.jpg")
    samples.photo(root / "@eaDir" / "thumb.jpg")


def test_discovery_finds_photos_by_content_and_lists_the_rest(folder: Path) -> None:
    _tree(folder)
    found = discover(
        [folder],
        DiscoveryOptions(is_output_name=lambda name: ".protected." in name),
    )
    names = [p.path.relative_to(folder).as_posix() for p in found.photos]
    # Job order: sorted case-insensitively, files of a folder before its subfolders.
    assert names == ["A.png", "b.jpg", "broken.jpg", "sub/c.webp", "sub/no_extension"]
    skipped = {s.path.name: s.reason for s in found.skipped}
    assert "system file" in skipped[".DS_Store"]
    assert "system file" in skipped["Thumbs.db"]
    assert "system file" in skipped["._b.jpg"]
    assert "sidecar" in skipped["b.xmp"]
    assert "not a photo" in skipped["notes.txt"]
    assert "named like an spdesk output" in skipped["b.protected.jpg"]
    assert "system folder" in skipped["@eaDir"]


def test_symlink_loop_walk_terminates(folder: Path) -> None:
    samples.photo(folder / "sub" / "a.jpg")
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "link.jpg").symlink_to(folder / "sub" / "a.jpg")
    found = discover([folder])
    assert [p.path.name for p in found.photos] == ["a.jpg"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert "not followed" in reasons["loop"] and "not followed" in reasons["link.jpg"]
    followed = discover([folder], DiscoveryOptions(follow_symlinks=True))
    assert len(followed.photos) == 1  # the same file once (link or target), loop cut
    assert any("loop" in s.reason for s in followed.skipped)


def test_unicode_and_awkward_names_are_found(folder: Path) -> None:
    names = ["🌅 sunset.jpg", "写真.png", unicodedata.normalize("NFD", "été.jpg"), "-dash.jpg",
             "two  spaces .jpg"]  # fmt: skip
    for name in names:
        samples.photo(folder / name)
    found = {p.path.name for p in discover([folder]).photos}
    assert found == set(names)


def test_explicit_files_are_taken_even_if_not_images(folder: Path) -> None:
    junk = folder / "README"
    junk.write_text("hello")
    found = discover([junk, folder / "missing.jpg"])
    assert [p.path for p in found.photos] == [junk]  # it then fails with a clear error
    assert found.missing == [folder / "missing.jpg"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc on this system")
def test_kernel_file_systems_are_never_walked() -> None:
    found = discover([Path("/proc")])
    assert not found.photos
    assert [(s.path, s.reason) for s in found.skipped] == [
        (Path("/proc"), "system folder (not files on a disk)")
    ]


def test_a_walk_stops_at_its_limit_and_at_a_cancel(tmp_path: Path) -> None:
    from spdesk.core.errors import Cancelled
    from spdesk.core.events import CancelToken

    for name in ("a", "b", "c"):
        samples.photo(tmp_path / name / "p.png")
    assert len(discover([tmp_path]).photos) == 3
    assert len(discover([tmp_path], DiscoveryOptions(limit=2)).photos) == 2
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        discover([tmp_path], DiscoveryOptions(cancel=token))


def test_converted_outputs_embed_an_undated_srgb_profile() -> None:
    """lcms dates the profiles it makes; a dated one made the same photo's protected bytes
    differ from run to run."""
    import io

    from PIL import ImageCms

    from spdesk.core.colour import _srgb_bytes

    profile = _srgb_bytes()
    assert profile[24:36] == bytes(12) and profile[84:100] == bytes(16)
    assert ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space.strip() == "RGB"


def test_a_truncated_header_is_named_damaged_by_the_header_and_the_decoder(tmp_path: Path) -> None:
    from spdesk.core.imageio import read_header

    path = tmp_path / "scan-0042.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))  # Pillow: "Truncated File Read"
    for read in (read_header, read_image):
        with pytest.raises(CorruptImageError, match="header is damaged") as caught:
            read(path)
        assert caught.value.hint


def test_a_jpeg_comment_and_png_primaries_are_read(tmp_path: Path) -> None:
    photo = Image.fromarray(samples.photo_array(40, 30))
    photo.save(tmp_path / "note.jpg", quality=95, comment=b"shot at dawn")
    assert read_image(tmp_path / "note.jpg").comment == b"shot at dawn"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    wide = (31270, 32900, 68000, 32000, 26500, 69000, 15000, 6000)
    info.add(b"cHRM", b"".join(v.to_bytes(4, "big") for v in wide))
    photo.save(tmp_path / "wide.png", pnginfo=info)
    expected = tuple(v / 100_000 for v in wide)
    assert read_image(tmp_path / "wide.png").png_chromaticity == expected
    assert read_image(tmp_path / "note.jpg").png_chromaticity is None


def test_a_tiff_without_a_print_resolution_reads_none_not_one_dpi(tmp_path: Path) -> None:
    """Pillow reports a TIFF with no resolution tags as 1 dpi; its protected copy was written
    at 1 dpi (an editor then prints a 500 px photo 500 inches wide)."""
    plain = samples.photo(tmp_path / "scan.tif", compression="tiff_lzw")
    assert Image.open(plain).info.get("dpi") == (1, 1)  # what Pillow says of it
    assert read_image(plain).dpi is None
    printed = samples.photo(tmp_path / "print.tif", dpi=(300, 300))
    assert read_image(printed).dpi == (300, 300)
