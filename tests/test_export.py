"""Writing outputs: names, encoder settings, metadata options, atomic never-clobbering writes."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin

from spdesk.core import export
from spdesk.core.errors import (
    ConfigError,
    DiskFullError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
)
from spdesk.core.export import (
    Encoded,
    ExportOptions,
    output_name,
    output_name_pattern,
    parse_format,
    prepare,
    settings_warnings,
)
from spdesk.core.files import (
    LOCK_NAME,
    TEMP_SUFFIX,
    atomic_write,
    clean_stale_temps,
    folder_lock,
    name_bytes,
    output_error,
    publish,
    truncate_name,
)
from spdesk.core.imageio import read_image
from tests import protect_samples as samples


def atomic_save(encoded: Encoded, target: Path, *, replace: bool = False) -> int:
    return atomic_write(target, export.encoder(encoded, target), replace=replace)


def _encoded(fmt: str = "PNG", colour: int = 100) -> Encoded:
    return Encoded(Image.new("RGB", (8, 8), (colour, colour, colour)), fmt, {}, [])


def _written(path: Path, options: ExportOptions | None = None) -> Path:
    options = options or ExportOptions()
    decoded = read_image(path)
    fmt = export.output_format(decoded.source_format, options)
    target = path.with_name(output_name(path.name, fmt, options.suffix))
    atomic_save(prepare(decoded, decoded.image, fmt, options), target)
    return target


def test_output_names_keep_stem_and_follow_the_real_format() -> None:
    assert output_name("IMG_0001.JPG", "JPEG", ".protected") == "IMG_0001.protected.JPG"
    assert output_name("really.jpg", "PNG", ".protected") == "really.protected.png"
    assert output_name("scan.tiff", "TIFF", "_p") == "scan_p.tiff"
    assert output_name("no_extension", "PNG", ".protected") == "no_extension.protected.png"
    assert output_name("-dash.jpeg", "WEBP", ".protected") == "-dash.protected.webp"
    assert output_name("trailing.", "JPEG", ".protected") == "trailing.protected.jpg"
    assert output_name("...", "JPEG", ".protected") == "....protected.jpg"
    pattern = output_name_pattern(".protected")
    assert pattern.fullmatch("IMG.protected.JPG") and pattern.fullmatch("IMG.protected-3.png")
    assert not pattern.fullmatch("IMG.jpg") and not pattern.fullmatch("protected.jpg")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="suffix"):
        ExportOptions(suffix="")
    with pytest.raises(ConfigError, match="suffix"):
        ExportOptions(suffix="..")
    with pytest.raises(ConfigError, match="Quality"):
        ExportOptions(quality=0)
    with pytest.raises(ConfigError, match="metadata"):
        ExportOptions(strip_metadata="location")
    with pytest.raises(ConfigError, match="png, jpeg, webp"):
        parse_format("gif")
    assert parse_format("same") is None and parse_format("JPG") == "JPEG"


def test_jpeg_defaults_to_quality_95_full_colour(tmp_path: Path) -> None:
    out = _written(samples.photo(tmp_path / "a.jpg"))
    with Image.open(out) as image:
        assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        # The first luminance step of the standard table scaled to quality 95 is 2 (75: 8).
        assert image.quantization[0][0] == 2
    assert not settings_warnings(ExportOptions())
    assert "below 90" in settings_warnings(ExportOptions(quality=80))[0]
    assert "lossless" in settings_warnings(ExportOptions(format="WEBP"))[0]


def test_exif_and_icc_kept_gps_and_all_stripped(tmp_path: Path) -> None:
    source = samples.gps_jpeg(tmp_path / "gps.jpg")
    kept = _written(source, ExportOptions(strip_metadata="none"))
    with Image.open(kept) as image:
        exif = image.getexif()
        assert exif[0x010F] == "TestCam" and exif.get_ifd(0x8825)[1] == "N"
    (tmp_path / "gps").mkdir()
    gps_only = ExportOptions(strip_metadata="gps")
    no_gps = _written(source.rename(tmp_path / "gps" / "gps.jpg"), gps_only)
    with Image.open(no_gps) as image:
        exif = image.getexif()
        assert exif[0x010F] == "TestCam" and not exif.get_ifd(0x8825)
    (tmp_path / "all").mkdir()
    bare = _written(no_gps.rename(tmp_path / "all" / "x.jpg"), ExportOptions(strip_metadata="all"))
    with Image.open(bare) as image:
        assert not image.getexif()


def test_exif_whose_location_the_imaging_library_cannot_remove_is_left_out_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow 11 wrote a GPS block it had read even after its tag was popped: what is written
    is read back, and EXIF that still holds a location is not written at all."""
    decoded = read_image(samples.gps_jpeg(tmp_path / "gps.jpg"))
    monkeypatch.setattr(Image.Exif, "pop", lambda self, tag, default=None: default)
    encoded = prepare(decoded, decoded.image, "JPEG", ExportOptions())
    assert encoded.location_removed and "exif" not in encoded.params
    assert encoded.notes == [
        "the EXIF data was left out (its location could not be removed from it)"
    ]


def test_the_location_is_left_out_by_default_and_the_rest_of_the_metadata_kept(
    tmp_path: Path,
) -> None:
    source = samples.gps_xmp_jpeg(tmp_path / "gps.jpg")
    decoded = read_image(source)
    encoded = prepare(decoded, decoded.image, "JPEG", ExportOptions())
    assert encoded.location_removed and not encoded.notes
    assert b"GPS" not in encoded.params["xmp"]
    assert b'xmp:Rating="4"' in encoded.params["xmp"] and b"Holiday" in encoded.params["xmp"]
    written = _written(source)
    with Image.open(written) as image:
        exif = image.getexif()
        assert exif[0x010F] == "TestCam" and not exif.get_ifd(0x8825)
        assert b"GPS" not in image.info["xmp"] and b"Holiday" in image.info["xmp"]
    kept = prepare(read_image(source), decoded.image, "JPEG", ExportOptions(strip_metadata="none"))
    assert not kept.location_removed and b"exif:GPSLatitude" in kept.params["xmp"]
    no_location = read_image(samples.photo(tmp_path / "plain.jpg"))
    assert not prepare(no_location, no_location.image, "JPEG", ExportOptions()).location_removed
    everything = prepare(
        read_image(source), decoded.image, "JPEG", ExportOptions(strip_metadata="all")
    )
    assert everything.location_removed and "exif" not in everything.params


@pytest.mark.parametrize(
    "properties",
    [
        # An element in a default namespace, no prefix.
        b'<GPSLatitude xmlns="http://ns.adobe.com/exif/1.0/">48,51.48N</GPSLatitude>'
        b'<GPSLongitude xmlns="http://ns.adobe.com/exif/1.0/">2,17.67E</GPSLongitude>',
        # A prefix with a letter beyond ASCII, as an attribute and as an element.
        '<rdf:Description xmlns:exé="http://ns.adobe.com/exif/1.0/" exé:GPSLatitude="48,51.48N">'
        "<exé:GPSLongitude>2,17.67E</exé:GPSLongitude></rdf:Description>".encode(),
    ],
    ids=["default-namespace", "non-ascii-prefix"],
)
def test_the_location_in_xmp_is_left_out_whatever_its_namespace_prefix(
    tmp_path: Path, properties: bytes
) -> None:
    """Both forms are valid XMP; the patterns wanted an ASCII "prefix:" and kept them."""
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        b"<xmp:Label>Holiday</xmp:Label></rdf:Description>" + properties + b"</rdf:RDF></x:xmpmeta>"
    )
    source = tmp_path / "gps.jpg"
    Image.fromarray(samples.photo_array(24, 16), mode="RGB").save(source, "JPEG", xmp=xmp)
    decoded = read_image(source)
    encoded = prepare(decoded, decoded.image, "JPEG", ExportOptions())
    assert encoded.location_removed
    kept = encoded.params.get("xmp") or b""
    assert b"GPS" not in kept.upper() and b"48,51" not in kept
    assert b"<xmp:Label>Holiday</xmp:Label>" in kept  # only the location went
    with Image.open(_written(source)) as image:
        assert b"48,51" not in image.info.get("xmp", b"")


def test_icc_profile_is_copied(tmp_path: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = samples.photo(tmp_path / "icc.png", fmt="PNG", icc_profile=icc)
    with Image.open(_written(source, ExportOptions(format="JPEG"))) as image:
        assert image.info.get("icc_profile") == icc


def test_malformed_exif_export_succeeds(tmp_path: Path) -> None:
    out = _written(samples.malformed_exif_jpeg(tmp_path / "bad.jpg"))
    with Image.open(out) as image:
        image.load()
        assert image.size == (24, 16)


def test_alpha_kept_in_png_flattened_in_jpeg(tmp_path: Path) -> None:
    source = samples.rgba(tmp_path / "rgba.png")
    decoded = read_image(source)
    png = prepare(decoded, decoded.image, "PNG", ExportOptions())
    assert png.image.mode == "RGBA" and not png.notes
    jpeg = prepare(decoded, decoded.image, "JPEG", ExportOptions(format="JPEG"))
    assert jpeg.image.mode == "RGB"
    assert any("transparency flattened" in n for n in jpeg.notes)
    webp = prepare(decoded, decoded.image, "WEBP", ExportOptions(format="WEBP", quality=100))
    assert webp.image.mode == "RGBA" and webp.params["lossless"]


def test_atomic_save_never_clobbers_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "x.protected.png"
    size = atomic_save(_encoded(colour=10), target)
    assert size == target.stat().st_size
    with pytest.raises(OutputExistsError):
        atomic_save(_encoded(colour=200), target)
    assert Image.open(target).getpixel((0, 0)) == (10, 10, 10)
    atomic_save(_encoded(colour=200), target, replace=True)
    assert Image.open(target).getpixel((0, 0)) == (200, 200, 200)
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.protected.png"]  # no temps
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # not mkstemp's private 0600


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_no_hard_links_falls_back_to_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "x.protected.png"
    atomic_save(_encoded(), target)
    with pytest.raises(OutputExistsError):
        atomic_save(_encoded(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["x.protected.png"]


def test_disk_full_removes_temp_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.protected.png"
    atomic_save(_encoded(colour=10), target)
    before = target.read_bytes()

    def full(encoded: Encoded, handle: object, **_: object) -> None:
        handle.write(b"partial data")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "write_image", full)
    with pytest.raises(DiskFullError, match=r"disk is full: x\.protected\.png") as info:
        atomic_save(_encoded(colour=99), target, replace=True)
    assert "Free some space" in (info.value.hint or "")
    assert target.read_bytes() == before  # the earlier output is intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.protected.png"]


class _Recorder:
    """A file whose descriptor leads to /dev/null and whose ``write`` keeps what it is given:
    bytes Pillow writes to the descriptor itself are missing from ``data``."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.null = os.open(os.devnull, os.O_WRONLY)

    def fileno(self) -> int:
        return self.null

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def _recorded(fmt: str, *, through_python: bool) -> bytes:
    handle = _Recorder()
    try:
        export.write_image(_encoded(fmt), handle, through_python=through_python)  # type: ignore[arg-type]
    finally:
        os.close(handle.null)
    return bytes(handle.data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_through_python_every_byte_goes_through_python_write(fmt: str, tmp_path: Path) -> None:
    """Pillow, given a file with a descriptor, writes to it in C and ignores a short write: a
    disk that fills in the last write leaves a cut file and no error. The retry path must not
    let it: every byte goes through Python's write, which raises on a full disk."""
    (tmp_path / "out").write_bytes(_recorded(fmt, through_python=True))
    with Image.open(tmp_path / "out") as written:
        assert written.format == fmt and written.size == _encoded(fmt).image.size


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_the_first_write_is_pillows_own_to_the_descriptor(fmt: str) -> None:
    """The fast path: Pillow encodes straight into the file's descriptor, outside Python's
    lock, so the job's workers encode side by side (encoding into memory holds the lock: a
    universal job took 1.32-1.38x the Pillow floor that way, 0.96-1.10x this way)."""
    assert len(_recorded(fmt, through_python=False)) < 100  # a header at most, not the image


def _checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: str, slow: str) -> list[bool]:
    """Run write_checked with a write_image whose fast write (straight to the descriptor) and
    slow write (through Python) do ``fast`` / ``slow``: "whole", "cut" (the bytes end early,
    as Pillow leaves a short write) or "full" (Python's write raising ENOSPC). Returns the
    calls' ``through_python`` in order; the written file is left to the caller's checks."""
    real_write = export.write_image
    calls: list[bool] = []

    def write_image(encoded: Encoded, handle: object, *, through_python: bool = False) -> None:
        calls.append(through_python)
        behaviour = slow if through_python else fast
        if behaviour == "full":
            handle.write(b"\xff\xd8")  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(encoded, handle, through_python=through_python)  # type: ignore[arg-type]
        if behaviour == "cut":
            handle.flush()  # type: ignore[attr-defined]
            os.ftruncate(handle.fileno(), 40)  # type: ignore[attr-defined]

    monkeypatch.setattr(export, "write_image", write_image)
    return calls


def test_a_photo_is_written_once_when_it_checks_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _checked(tmp_path, monkeypatch, fast="whole", slow="whole")
    target = tmp_path / "x.protected.png"
    temp, length, digest = export.write_checked(_encoded(), target, (8, 8), target)
    assert calls == [False]
    assert length == temp.stat().st_size and digest == hashlib.sha256(temp.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_write_cut_by_a_full_disk_is_a_full_disk_and_leaves_nothing(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's own write comes out cut without an error; the check catches it and the retry
    through Python meets the full disk: the photo fails as a full disk, not a damaged output."""
    calls = _checked(tmp_path, monkeypatch, fast="cut", slow="full")
    target = tmp_path / f"x.protected.{fmt.lower()}"
    with pytest.raises(DiskFullError, match=rf"disk is full: x\.protected\.{fmt.lower()}"):
        export.write_checked(_encoded(fmt), target, (8, 8), target)
    assert calls == [False, True]
    assert list(tmp_path.iterdir()) == []


def test_a_write_cut_while_space_comes_free_is_written_again_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _checked(tmp_path, monkeypatch, fast="cut", slow="whole")
    target = tmp_path / "x.protected.jpg"
    temp, _, _ = export.write_checked(_encoded("JPEG"), target, (8, 8), target)
    assert calls == [False, True]
    with Image.open(temp) as written:
        assert written.size == (8, 8)
        written.load()
    assert [p.name for p in tmp_path.iterdir()] == [temp.name]  # the cut one is gone


def test_an_output_that_never_decodes_fails_as_such_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _checked(tmp_path, monkeypatch, fast="cut", slow="cut")
    target = tmp_path / "x.protected.png"
    with pytest.raises(OutputError, match=r"x\.protected\.png does not decode"):
        export.write_checked(_encoded(), target, (8, 8), target)
    assert calls == [False, True]
    assert list(tmp_path.iterdir()) == []


def test_permission_errors_name_file_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(OutputPermissionError, match=r"Cannot write a\.protected\.png") as info:
        atomic_save(_encoded(), tmp_path / "a.protected.png")
    assert "output folder you can write to" in (info.value.hint or "")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_really_refuses(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputPermissionError, match="read-only"):
            atomic_save(_encoded(), folder / "a.protected.png")
    finally:
        folder.chmod(0o755)


def test_stale_temps_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / f".a.protected.jpg.x1y2{TEMP_SUFFIX}"
    stale.write_bytes(b"half a photo")
    keep = samples.photo(tmp_path / "sub" / "a.protected.jpg")
    assert clean_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and keep.exists()


def test_stale_temps_of_a_folder_another_job_holds_are_left_alone(tmp_path: Path) -> None:
    """A job's output folder inside this one's, locked by its running job: those temporary
    files are photos being written (a job starting here deleted them, failing that job's photo
    with "No such file or directory")."""
    busy, idle = tmp_path / "busy", tmp_path / "idle"
    writing = busy / "deeper" / f".b.protected.jpg.x1y2{TEMP_SUFFIX}"
    writing.parent.mkdir(parents=True)
    writing.write_bytes(b"being written")
    left = idle / f".c.protected.jpg.x1y2{TEMP_SUFFIX}"
    idle.mkdir()
    left.write_bytes(b"left by a killed job")
    (idle / LOCK_NAME).write_bytes(b"")  # a lock nobody holds
    with folder_lock(busy):
        assert clean_stale_temps(tmp_path) == [left]
    assert writing.exists()
    assert clean_stale_temps(tmp_path) == [writing]  # once that job has ended


def test_a_16bit_grey_png_with_alpha_is_written_grey_with_alpha(tmp_path: Path) -> None:
    """Pillow reads a 16-bit grey-and-alpha PNG as RGBA: its copy came out in colour (RGBA),
    where an 8-bit one stays LA."""
    grey = np.array([[0, 40000, 65535]], dtype=np.uint16)
    alpha = np.array([[65535, 0, 32896]], dtype=np.uint16)
    out = _written(samples.png16(tmp_path / "ga16.png", np.dstack([grey, alpha])))
    with Image.open(out) as written:
        assert written.mode == "LA"
        assert np.asarray(written)[0].tolist() == [[0, 255], [156, 0], [255, 128]]


def test_sixteen_bit_roundtrip_keeps_range(tmp_path: Path) -> None:
    values = np.array([[0, 40000, 65535]], dtype=np.uint16)
    out = _written(samples.png16(tmp_path / "g16.png", values))
    with Image.open(out) as written:
        assert written.mode == "L"  # grey stays grey, in 8 bits
        assert np.asarray(written)[0].tolist() == [0, 156, 255]


def test_an_encoder_refusal_names_the_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuses(_encoded: object, _handle: object, **_: object) -> None:
        raise ValueError("cannot write mode P as JPEG")

    monkeypatch.setattr(export, "write_image", refuses)
    with pytest.raises(OutputError, match=r"Could not encode x\.protected\.jpg: cannot write"):
        export.write_temp(_encoded(), tmp_path / "x.protected.jpg")
    assert list(tmp_path.iterdir()) == []


def test_a_taken_name_keeps_the_temp_file_for_another_name(tmp_path: Path) -> None:
    taken = tmp_path / "x.protected.png"
    atomic_save(_encoded(colour=10), taken)
    temp, size = export.write_temp(_encoded(colour=200), taken)
    with pytest.raises(OutputExistsError):
        publish(temp, taken)
    assert temp.is_file() and temp.stat().st_size == size  # still whole, to publish elsewhere
    other = tmp_path / "x.protected-2.png"
    publish(temp, other)
    assert not temp.exists()
    assert Image.open(taken).getpixel((0, 0)) == (10, 10, 10)  # the taken one is untouched
    assert Image.open(other).getpixel((0, 0)) == (200, 200, 200)


def _camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal, in the Exif IFD
    return exif.tobytes()


def _lzw_tiff_with_exif_ifd(photo: Image.Image, path: Path) -> None:
    """An LZW TIFF whose first IFD points to an Exif IFD, as cameras and Lightroom write them
    (Pillow cannot write one: that is the bug), patched into the file Pillow writes."""
    buffer = io.BytesIO()
    photo.save(buffer, "TIFF", compression="tiff_lzw")
    data = bytearray(buffer.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    entries = [bytes(data[first + 2 + 12 * i : first + 14 + 12 * i]) for i in range(count)]
    data += bytes(len(data) % 2)
    exif_ifd, date = len(data), b"2024:05:06 07:08:09\0"
    data += struct.pack("<HHHII", 1, 0x9003, 2, len(date), exif_ifd + 18) + bytes(4) + date
    entries = sorted([*entries, struct.pack("<HHII", 0x8769, 4, 1, exif_ifd)])
    data += bytes(len(data) % 2)
    struct.pack_into("<I", data, 4, len(data))  # the first IFD is now the patched copy
    data += struct.pack("<H", len(entries)) + b"".join(entries) + bytes(4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("source", "options"),
    [("camera.jpg", ExportOptions(format="TIFF")), ("lightroom.tif", ExportOptions())],
)
def test_a_tiff_copy_keeps_the_camera_data_of_the_exif(
    tmp_path: Path, source: str, options: ExportOptions
) -> None:
    path = tmp_path / source
    photo = Image.fromarray(samples.photo_array(40, 30))
    if path.suffix == ".tif":
        _lzw_tiff_with_exif_ifd(photo, path)
    else:
        photo.save(path, exif=_camera_exif(), quality=95)
    decoded = read_image(path)
    encoded = prepare(decoded, decoded.image, "TIFF", options)
    assert "TIFF written uncompressed to keep its camera data (EXIF)" in encoded.notes
    target = tmp_path / "out.tif"
    atomic_save(encoded, target)  # Pillow's compressed TIFF writer failed on the Exif IFD
    with Image.open(target) as copy:
        assert copy.getexif().get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"


@pytest.mark.parametrize("extended", [False, True])
def test_a_lossless_webp_stays_lossless(tmp_path: Path, extended: bool) -> None:
    pixels = samples.photo_array(40, 30)
    path = tmp_path / "art.webp"
    if extended:  # transparency and a colour profile: VP8X, ICCP and ALPH chunks come first
        rgba = Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 200, np.uint8)]))
        rgba.save(path, lossless=True, icc_profile=b"\0" * 600)
    else:
        Image.fromarray(pixels).save(path, lossless=True)
    with Image.open(_written(path)) as copy, Image.open(path) as original:
        change = np.abs(np.asarray(copy, np.int16) - np.asarray(original, np.int16))
    assert change.max() == 0  # nothing protected it here: a lossless copy is the same
    assert read_image(path).webp_lossless
    lossy = tmp_path / "photo.webp"
    Image.fromarray(pixels).save(lossy, quality=90)
    assert not read_image(lossy).webp_lossless


def _photoshop_block(resources: dict[int, bytes]) -> bytes:
    """A JPEG APP13 segment with these Photoshop resources (as Photoshop writes it)."""
    block = b"Photoshop 3.0\0"
    for number, data in resources.items():
        block += b"8BIM" + number.to_bytes(2, "big") + b"\0\0" + len(data).to_bytes(4, "big")
        block += data + b"\0" * (len(data) % 2)
    return b"\xff\xed" + (len(block) + 2).to_bytes(2, "big") + block


_IPTC = b"\x1c\x02\x74\x00\x11(c) 2024 Jane Doe\x1c\x02\x78\x00\x0bMy goldfish"  # 2:116, 2:120


@pytest.mark.parametrize("strip", ["gps", "all"])
def test_the_iptc_record_is_kept_and_nothing_else_of_the_photoshop_block(
    tmp_path: Path, strip: str
) -> None:
    path = tmp_path / "iptc.jpg"
    thumbnail = b"unprotected thumbnail"  # resource 0x0409: must never reach the copy
    block = _photoshop_block({0x0404: _IPTC, 0x0409: thumbnail})
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=95, extra=block)
    with Image.open(_written(path, ExportOptions(strip_metadata=strip))) as copy:
        kept = copy.info.get("photoshop", {})
    assert kept == ({} if strip == "all" else {0x0404: _IPTC})


@pytest.mark.parametrize("strip", ["gps", "all"])
def test_png_text_is_kept(tmp_path: Path, strip: str) -> None:
    path = tmp_path / "text.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Copyright", "(c) 2024 Jane Doe")
    info.add_text("Title", "Żółw")  # not Latin-1: an iTXt chunk
    Image.fromarray(samples.photo_array(40, 30)).save(path, pnginfo=info)
    with Image.open(_written(path, ExportOptions(strip_metadata=strip))) as copy:
        text = dict(copy.text)  # type: ignore[attr-defined]
    expected = {"Copyright": "(c) 2024 Jane Doe", "Title": "Żółw"}
    assert text == ({} if strip == "all" else expected)


def test_a_tiff_copy_keeps_the_xmp(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        b'xmp:Rating="5"/></rdf:RDF></x:xmpmeta>'
    )
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=95, xmp=xmp)
    with Image.open(_written(path, ExportOptions(format="TIFF"))) as copy:
        assert b'xmp:Rating="5"' in copy.info["xmp"]


def test_a_tiff_copy_keeps_the_exif_and_the_xmp_together(tmp_path: Path) -> None:
    """Given XMP as its own tag set, Pillow wrote it instead of the EXIF: every tag was lost."""
    path = tmp_path / "camera.jpg"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    photo = Image.fromarray(samples.photo_array(40, 30))
    photo.save(path, quality=95, exif=_camera_exif(), xmp=xmp)
    with Image.open(_written(path, ExportOptions(format="TIFF"))) as copy:
        exif = copy.getexif()
        assert exif.get(0x010F) == "TestCam"
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
        assert copy.info["xmp"].startswith(b"<x:xmpmeta")


@pytest.mark.parametrize("suffix", [".pro\ntected", "\x7f", ".a\tb"])
def test_a_suffix_with_a_control_character_is_refused(suffix: str) -> None:
    with pytest.raises(ConfigError, match="control character"):
        ExportOptions(suffix=suffix)


@pytest.mark.parametrize("strip", ["gps", "all"])
def test_a_png_keeps_its_gamma(tmp_path: Path, strip: str) -> None:
    path = tmp_path / "linear.png"
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", (100_000).to_bytes(4, "big"))  # gamma 1.0: linear tones
    Image.fromarray(samples.photo_array(40, 30)).save(path, pnginfo=info)
    with Image.open(_written(path, ExportOptions(strip_metadata=strip))) as copy:
        assert copy.info.get("gamma") == 1.0  # tones, not metadata: kept even with "all"


def test_heic_and_avif_with_transparency_are_written_as_png_to_keep_it() -> None:
    for source in ("HEIF", "AVIF"):
        assert export.output_format(source, ExportOptions(), alpha=True) == "PNG"
        assert export.output_format(source, ExportOptions()) == "JPEG"
        assert export.output_format(source, ExportOptions(format="JPEG"), alpha=True) == "JPEG"
    assert export.output_format("WEBP", ExportOptions(), alpha=True) == "WEBP"


_DJI_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="DJI Meta Data" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" tiff:Make="DJI" '
    b'drone-dji:GpsLatitude="+52.520008" drone-dji:GpsLongtitude="+13.404954">'
    b"<drone-dji:gpsAltitude>120.5</drone-dji:gpsAltitude>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize("strip", ["gps", "all"])
def test_a_drone_location_in_xmp_is_left_out_and_counted(tmp_path: Path, strip: str) -> None:
    path = tmp_path / "drone.jpg"
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=95, xmp=_DJI_XMP)
    decoded = read_image(path)
    encoded = prepare(decoded, decoded.image, "JPEG", ExportOptions(strip_metadata=strip))
    assert encoded.location_removed and not encoded.notes
    xmp = encoded.params.get("xmp", b"")
    assert b"gps" not in xmp.lower()
    assert (b'tiff:Make="DJI"' in xmp) == (strip == "gps")


def _raw_profile(payload: bytes) -> str:
    """A PNG text value as ImageMagick writes a raw profile: name, length, then hex lines."""
    hexed = payload.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    return f"\nexif\n{len(payload):8d}\n{lines}\n"


def _png_with_text(path: Path, text: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value, zip=key.startswith("Raw"))
    Image.fromarray(samples.photo_array(40, 30)).save(path, pnginfo=info)
    return path


def test_a_location_in_png_text_is_left_out_and_counted(tmp_path: Path) -> None:
    with Image.open(samples.gps_jpeg(tmp_path / "gps.jpg")) as camera:
        located = camera.getexif().tobytes()
    path = _png_with_text(
        tmp_path / "magick.png",
        {
            "Raw profile type exif": _raw_profile(located),
            "exif:GPSLatitude": "52/1, 31/1, 12/1",
            "Title": "My photo",
        },
    )
    decoded = read_image(path)
    encoded = prepare(decoded, decoded.image, "PNG", ExportOptions())
    assert encoded.location_removed
    with Image.open(_written(path)) as copy:
        assert dict(copy.text) == {"Title": "My photo"}  # type: ignore[attr-defined]
        assert copy.getexif()[0x010F] == "TestCam"  # the profile's EXIF, without its GPS
        assert not copy.getexif().get_ifd(0x8825)
    kept = prepare(decoded, decoded.image, "PNG", ExportOptions(strip_metadata="none"))
    assert not kept.location_removed


def test_a_raw_exif_profile_without_a_location_is_kept(tmp_path: Path) -> None:
    camera = Image.Exif()
    camera[0x010F] = "TestCam"
    text = {"Raw profile type exif": _raw_profile(camera.tobytes())}
    decoded = read_image(_png_with_text(tmp_path / "magick.png", text))
    encoded = prepare(decoded, decoded.image, "PNG", ExportOptions())
    assert not encoded.location_removed and not encoded.notes
    assert encoded.params["pnginfo"].chunks  # the text is written again


def _camera_exif_with(tag: int, value: bytes | str, ifd: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    if ifd is None:
        exif[tag] = value
    else:
        exif.get_ifd(ifd)[tag] = value
    return exif


def _jpeg_of(decoded_source: Path, tmp_path: Path) -> tuple[Encoded, Path]:
    decoded = read_image(decoded_source)
    encoded = prepare(decoded, decoded.image, "JPEG", ExportOptions(format="JPEG"))
    target = tmp_path / "out.jpg"
    atomic_save(encoded, target)
    return encoded, target


def test_an_xmp_packet_too_large_for_a_jpeg_is_left_out_not_the_photo(tmp_path: Path) -> None:
    big = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!--' + b"x" * 70_000 + b"--></x:xmpmeta>"
    path = tmp_path / "big.tif"
    Image.fromarray(samples.photo_array(40, 30)).save(path, tiffinfo={700: big})
    encoded, target = _jpeg_of(path, tmp_path)
    assert any(n.startswith("XMP metadata left out (68 KB") for n in encoded.notes)
    with Image.open(target) as copy:
        assert "xmp" not in copy.info


def test_a_makernote_too_large_for_a_jpeg_is_left_out_and_the_rest_of_the_exif_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.png"
    exif = _camera_exif_with(0x927C, b"\0" * 70_000, ifd=0x8769)
    Image.fromarray(samples.photo_array(40, 30)).save(path, exif=exif.tobytes())
    encoded, target = _jpeg_of(path, tmp_path)
    assert any(n.startswith("the camera's maker notes (EXIF) left out") for n in encoded.notes)
    with Image.open(target) as copy:
        assert copy.getexif()[0x010F] == "TestCam"
        assert 0x927C not in copy.getexif().get_ifd(0x8769)


def test_an_exif_too_large_for_a_jpeg_is_left_out_not_the_photo(tmp_path: Path) -> None:
    path = tmp_path / "big.webp"
    exif = _camera_exif_with(0x010E, "x" * 70_000)  # ImageDescription
    Image.fromarray(samples.photo_array(40, 30)).save(path, lossless=True, exif=exif.tobytes())
    encoded, target = _jpeg_of(path, tmp_path)
    assert any(n.startswith("EXIF metadata left out (68 KB") for n in encoded.notes)
    with Image.open(target) as copy:
        assert not copy.getexif()


def _jpeg_with_comment(path: Path) -> Path:
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=95, comment=b"private note")
    return path


@pytest.mark.parametrize("strip", ["gps", "all"])
def test_the_jpeg_comment_is_kept_unless_all_metadata_is_stripped(
    tmp_path: Path, strip: str
) -> None:
    decoded = read_image(_jpeg_with_comment(tmp_path / "note.jpg"))
    assert decoded.comment == b"private note"
    cases = {
        "fresh pixels": Image.fromarray(np.asarray(decoded.image)),
        "pixels carrying the source's info": decoded.image.copy(),
    }
    cases["pixels carrying the source's info"].info["comment"] = b"private note"
    for case, protected in cases.items():
        encoded = prepare(decoded, protected, "JPEG", ExportOptions(strip_metadata=strip))
        target = tmp_path / f"{strip}-{case}.jpg"
        atomic_save(encoded, target)
        with Image.open(target) as copy:
            expected = None if strip == "all" else b"private note"
            assert copy.info.get("comment") == expected, case


def test_a_colour_profile_left_out_stays_out_whatever_the_pixels_carry(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(samples.photo_array(40, 30)).convert("L").save(tmp_path / "grey.png")
    decoded = read_image(tmp_path / "grey.png")
    assert decoded.greyscale
    protected = decoded.image.copy()
    protected.info["icc_profile"] = srgb  # an RGB profile would mislabel the grey copy
    for fmt in ("PNG", "TIFF"):
        encoded = prepare(decoded, protected, fmt, ExportOptions())
        assert encoded.image.mode == "L" and "icc_profile" not in encoded.params
        target = tmp_path / f"out.{fmt.lower()}"
        atomic_save(encoded, target)
        with Image.open(target) as copy:
            assert "icc_profile" not in copy.info, fmt


def test_warnings_name_the_formats_actually_written() -> None:
    low = ExportOptions(quality=80)
    assert settings_warnings(low, {"PNG"}) == []
    (webp,) = settings_warnings(low, {"PNG", "WEBP"})
    assert webp.startswith("WebP quality 80 is below 90") and "JPEG" not in webp
    (both,) = settings_warnings(low, {"JPEG", "WEBP"})
    assert both.startswith("JPEG and WebP quality 80 is below 90")
    assert not settings_warnings(ExportOptions(), {"JPEG", "WEBP", "PNG"})


@pytest.mark.parametrize("quality", [95, 80])
def test_a_lossy_webp_written_again_as_lossy_webp_says_so(tmp_path: Path, quality: int) -> None:
    path = tmp_path / "photo.webp"
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=90)
    decoded = read_image(path)
    encoded = prepare(decoded, decoded.image, "WEBP", ExportOptions(quality=quality))
    assert encoded.params == {"quality": quality}
    (note,) = encoded.notes
    assert note.startswith(f"written as lossy WebP (quality {quality}), like its original")
    chosen = prepare(decoded, decoded.image, "WEBP", ExportOptions(format="WEBP"))
    assert not chosen.notes  # the job's warning said it once for all


_WIDE_PRIMARIES = (0.3127, 0.329, 0.68, 0.32, 0.265, 0.69, 0.15, 0.06)


def _png_with_gamma(path: Path, gamma: int, chromaticity: tuple[float, ...] | None) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", gamma.to_bytes(4, "big"))
    if chromaticity:
        info.add(b"cHRM", b"".join(round(v * 100_000).to_bytes(4, "big") for v in chromaticity))
    Image.fromarray(samples.photo_array(40, 30)).save(path, pnginfo=info)
    return path


def test_a_png_keeps_its_colour_primaries_with_its_gamma(tmp_path: Path) -> None:
    path = _png_with_gamma(tmp_path / "wide.png", 45455, _WIDE_PRIMARIES)
    with Image.open(_written(path, ExportOptions(strip_metadata="all"))) as copy:
        assert copy.info.get("gamma") == 0.45455
        assert copy.info.get("chromaticity") == _WIDE_PRIMARIES


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
def test_a_png_gamma_another_format_cannot_hold_is_named(tmp_path: Path, fmt: str) -> None:
    wide = read_image(_png_with_gamma(tmp_path / "wide.png", 45455, _WIDE_PRIMARIES))
    encoded = prepare(wide, wide.image, fmt, ExportOptions(format=fmt))
    assert any(
        n.startswith("the PNG's gamma and primaries (gAMA, cHRM) not kept") for n in encoded.notes
    )
    plain = read_image(_png_with_gamma(tmp_path / "srgb.png", 45455, None))  # sRGB's own tones
    assert not prepare(plain, plain.image, fmt, ExportOptions(format=fmt)).notes


def test_metadata_a_new_format_cannot_hold_is_named(tmp_path: Path) -> None:
    path = tmp_path / "press.jpg"
    block = _photoshop_block({0x0404: _IPTC})
    Image.fromarray(samples.photo_array(40, 30)).save(path, quality=95, extra=block, comment=b"hi")
    press = read_image(path)
    for fmt in ("PNG", "WEBP", "TIFF"):
        encoded = prepare(press, press.image, fmt, ExportOptions(format=fmt))
        lost = "IPTC caption and credits, JPEG comment"
        assert f"not carried over to {export.format_label(fmt)}: {lost}" in encoded.notes
    assert not prepare(press, press.image, "JPEG", ExportOptions()).notes
    bare = prepare(press, press.image, "PNG", ExportOptions(format="PNG", strip_metadata="all"))
    assert not bare.notes
    titled = read_image(_png_with_text(tmp_path / "titled.png", {"Title": "My photo"}))
    encoded = prepare(titled, titled.image, "JPEG", ExportOptions(format="JPEG"))
    assert "not carried over to JPEG: PNG text (Title)" in encoded.notes


def test_a_name_cut_to_the_limit_is_cut_between_characters() -> None:
    """A name cut inside a UTF-8 character would be invalid UTF-8 (exFAT refuses it)."""
    name = "a" + "\u00e9" * 124 + ".jpg"
    for limit in range(240, 250):
        cut = truncate_name(name, limit)
        assert name_bytes(cut) <= limit and name.startswith(cut)
        cut.encode("utf-8")  # no lone surrogates: valid UTF-8 on disk
    assert truncate_name(name, 4) == "a\u00e9"


@pytest.mark.skipif(os.name != "posix", reason="POSIX names are bytes")
def test_an_undecodable_name_is_cut_by_bytes() -> None:
    name = os.fsdecode(b"caf\xe9\xff-long.jpg")
    assert os.fsencode(truncate_name(name, 5)) == b"caf\xe9\xff"


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EINVAL])
def test_a_name_with_characters_the_disk_forbids_says_so(code: int, tmp_path: Path) -> None:
    """exFAT, FAT and SMB shares refuse ``: ? * " < > |`` with ENOENT or EINVAL."""
    error = output_error(OSError(code, os.strerror(code)), tmp_path / 'a:b?"c".protected.jpg')
    assert 'does not allow the characters : ? " in names' in error.message
    assert "Rename" in (error.hint or "") and "another disk" in (error.hint or "")
    plain = output_error(OSError(errno.ENOENT, "No such file"), tmp_path / "ab.protected.jpg")
    assert "does not allow" not in plain.message


def test_a_folder_name_the_disk_forbids_is_named_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(OutputError, match="does not allow the characters : in names"):
        atomic_save(_encoded(), tmp_path / "12:30" / "a.protected.png")


@pytest.mark.skipif(os.name != "posix", reason="POSIX names are bytes")
@pytest.mark.parametrize("code", [errno.EINVAL, errno.EILSEQ, errno.ENOENT])
def test_a_name_not_in_utf8_on_a_unicode_disk_says_so(code: int, tmp_path: Path) -> None:
    """exFAT and FAT mounted on Linux refuse a Latin-1 name with EINVAL or EILSEQ: the message
    said only "Invalid argument"."""
    target = tmp_path / os.fsdecode(b"caf\xe9.protected.jpg")
    error = output_error(OSError(code, os.strerror(code)), target)
    assert "keeps names as Unicode" in error.message and "caf\\xe9" in error.message
    assert "Rename" in (error.hint or "") and "another disk" in (error.hint or "")
    folder = tmp_path / os.fsdecode(b"\xe9t\xe9") / "a.protected.jpg"  # a folder still to make
    assert "keeps names as Unicode" in output_error(OSError(code, "x"), folder).message
    (tmp_path / os.fsdecode(b"\xe9t\xe9")).mkdir()  # made already: the disk took that name
    assert "Unicode" not in output_error(OSError(code, "x"), folder).message
    plain = output_error(OSError(errno.EINVAL, "Invalid argument"), tmp_path / "cafe.jpg")
    assert "Unicode" not in plain.message
