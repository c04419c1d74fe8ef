"""Writing protected photos: output names, encoder settings, metadata.

Every output is written through :mod:`spdesk.core.files` (temporary file, fsync, rename), so a
crash, a full disk or a cancellation never leaves a partial photo under a real name. Outputs are
named ``STEM<suffix>.EXT``
(``IMG_0001.protected.jpg``), so an original is never a possible target.

Compression erases perturbations: JPEG defaults to quality 95 with full-resolution colour
(4:4:4), and settings that weaken the protection come with a warning.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image, PngImagePlugin

from spdesk.core import files
from spdesk.core.colour import is_grey
from spdesk.core.errors import ConfigError, OutputError
from spdesk.core.files import Writer, shown
from spdesk.core.formats import format_label
from spdesk.core.imageio import IPTC_RESOURCE, PNG_XMP_KEY, DecodedImage
from spdesk.core.jpeg_structure import jpeg_frame_size

DEFAULT_SUFFIX = ".protected"
DEFAULT_QUALITY = 95
LOW_QUALITY = 90  # below this JPEG/WebP compression visibly erodes the protection
STRIP_CHOICES = ("none", "gps", "all")
# Photos are protected to be posted: where they were taken is not shared unless asked for.
DEFAULT_STRIP = "gps"
LOCATION_REMOVED = "location (GPS) removed"
COLLISIONS = ("skip", "unique", "overwrite")
# Nothing is ever replaced and every run writes what it was asked for (README, "Command line").
DEFAULT_COLLISION = "unique"

# User-facing format choices -> Pillow format names.
FORMAT_CHOICES = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp", ".dib"),
}
# Sources whose own format spdesk does not write: GIF is 256 colours (it would erase the
# perturbation), HEIC/AVIF/MPO encoders are not available everywhere.
_WRITE_INSTEAD = {"GIF": "PNG", "HEIF": "JPEG", "AVIF": "JPEG", "MPO": "JPEG"}
# Of those, the ones whose transparency is kept by writing PNG instead (JPEG would flatten it).
_PNG_FOR_ALPHA = frozenset({"HEIF", "AVIF"})
_TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"}
_GPS_IFD = 0x8825


@dataclass(frozen=True)
class ExportOptions:
    """How protected photos are written.

    Attributes:
        format: Pillow format name ("JPEG", "PNG", "WEBP", "TIFF"), or None to keep the
            source's format.
        quality: JPEG/WebP quality, 1..100 (95 by default; below 90 weakens the protection;
            WebP 100 is lossless).
        strip_metadata: "gps" (default) removes the location: EXIF's GPS block and the GPS
            properties of XMP (the whole XMP packet if it cannot be cleaned), keeping the rest;
            "none" keeps EXIF, XMP and the ICC profile; "all" removes EXIF and XMP. The ICC
            profile is always kept: without it colours would change.
        suffix: added to each output's file stem (".protected").
        png_compress_level: zlib level for PNG, 0..9.
    """

    format: str | None = None
    quality: int = DEFAULT_QUALITY
    strip_metadata: str = DEFAULT_STRIP
    suffix: str = DEFAULT_SUFFIX
    png_compress_level: int = 6

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in _EXTENSIONS:
            raise ConfigError(f"Unknown output format {self.format!r}.")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"Quality must be between 1 and 100, got {self.quality}.")
        if self.strip_metadata not in STRIP_CHOICES:
            raise ConfigError(
                f"Unknown metadata option {self.strip_metadata!r}: use gps or all "
                "(or none to keep everything)."
            )
        check_suffix(self.suffix)


def check_suffix(suffix: str) -> None:
    """Refuse suffixes that could make an output's name equal to an original's."""
    control = any(ord(c) < 32 or ord(c) == 127 for c in suffix)  # a newline in a file name
    if not suffix or suffix.strip(" .") == "" or control or any(c in suffix for c in "/\\"):
        raise ConfigError(
            f"The output name suffix {suffix!r} is not usable: it must contain letters or "
            "digits (for example .protected), so outputs never take an original's name, and "
            "no slash or control character."
        )


def parse_format(value: str | None) -> str | None:
    """A user's format choice ("png", "jpeg", "webp", "tiff", "same"/None) as a Pillow name."""
    if value is None or value.lower() in ("", "same", "original"):
        return None
    try:
        return FORMAT_CHOICES[value.lower()]
    except KeyError:
        raise ConfigError(
            f"Unknown output format {value!r}: use png, jpeg, webp or tiff (or leave it out to "
            "keep each photo's format)."
        ) from None


def settings_warnings(options: ExportOptions) -> list[str]:
    """Warnings about settings that weaken the protection, shown once per job."""
    warnings: list[str] = []
    if options.format in ("JPEG", None) and options.quality < LOW_QUALITY:
        warnings.append(
            f"JPEG quality {options.quality} is below {LOW_QUALITY}: strong compression erases "
            "much of the protection. Use 95 (the default) or PNG."
        )
    if options.format == "WEBP" and options.quality < 100:
        warnings.append(
            "Lossy WebP halves the colour resolution, which weakens the protection; "
            "--quality 100 writes lossless WebP."
        )
    return warnings


def output_format(source_format: str, options: ExportOptions, *, alpha: bool = False) -> str:
    """The Pillow format an output is written in; ``alpha``: the photo holds transparency
    (a HEIC or AVIF with it is written as PNG, which keeps it)."""
    if options.format is not None:
        return options.format
    if alpha and source_format in _PNG_FOR_ALPHA:
        return "PNG"
    return _WRITE_INSTEAD.get(source_format, source_format)


def output_name(source_name: str, fmt: str, suffix: str) -> str:
    """``IMG_0001.JPG`` -> ``IMG_0001.protected.JPG``; the extension follows the real format."""
    path = Path(source_name)
    extensions = _EXTENSIONS[fmt]
    ext = path.suffix if path.suffix.lower() in extensions else extensions[0]
    stem = path.stem if path.suffix else path.name
    # "photo." has no suffix to Python: drop the dangling dot rather than write "photo..protected"
    stem = stem.rstrip(".") or stem
    return f"{stem}{suffix}{ext}"


def output_name_pattern(suffix: str) -> re.Pattern[str]:
    """Matches file names spdesk writes with ``suffix`` (including unique ``-2`` variants)."""
    extensions = "|".join(re.escape(e) for exts in _EXTENSIONS.values() for e in exts)
    return re.compile(rf".*{re.escape(suffix)}(-\d+)?({extensions})", re.IGNORECASE)


def unique_candidates(target: Path) -> Iterator[Path]:
    """``X.protected.jpg``, then ``X.protected-2.jpg``, ``-3``, ... (free names are not
    checked here: publishing refuses taken ones)."""
    yield target
    for number in range(2, 100_000):
        yield target.with_name(f"{target.stem}-{number}{target.suffix}")


@dataclass
class Encoded:
    """What to hand to Pillow: the image in a mode the format holds and its save arguments;
    ``location_removed`` says that the photo had a location the output does not."""

    image: Image.Image
    format: str
    params: dict[str, Any]
    notes: list[str]
    location_removed: bool = False


def prepare(
    decoded: DecodedImage, protected: Image.Image, fmt: str, options: ExportOptions
) -> Encoded:
    """Encoder settings and metadata for writing ``protected`` (a protected ``decoded``)."""
    notes: list[str] = []
    image = protected
    if image.mode == "RGBA" and fmt == "JPEG":
        image = _flatten(image)
        notes.append("transparency flattened onto white (JPEG cannot hold it)")
    if decoded.source_format != fmt and options.format is None:
        notes.append(f"{format_label(decoded.source_format)} saved as {format_label(fmt)}")
    params = _format_params(decoded, fmt, options, notes)
    params.update(_metadata_params(decoded, fmt, options, notes))
    if fmt == "TIFF":
        _tiff_that_holds_the_exif(params, notes)
    if decoded.greyscale:
        image = _grey_again(image, params, notes)
    removed = LOCATION_REMOVED in notes
    return Encoded(image, fmt, params, [n for n in notes if n != LOCATION_REMOVED], removed)


def _grey_again(image: Image.Image, params: dict[str, Any], notes: list[str]) -> Image.Image:
    """A protected grey photo written grey (L or LA) when the protection left every pixel
    grey, as photo-specific protection does; otherwise in colour, and the user is told."""
    if not is_grey(image):
        notes.append("greyscale photo saved in colour (the protection adds faint colour noise)")
        return image
    params.pop("icc_profile", None)  # an RGB profile would mislabel grey pixels
    grey = image.getchannel("R")
    if image.mode == "RGBA":
        return Image.merge("LA", (grey, image.getchannel("A")))
    return grey


def _flatten(image: Image.Image) -> Image.Image:
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


_EXIF_SUB_IFDS = (0x8769, 0x8825, 0xA005)  # camera settings, location, interoperability


def _tiff_that_holds_the_exif(params: dict[str, Any], notes: list[str]) -> None:
    """Write the TIFF uncompressed when its EXIF has sub-IFDs (a camera's settings and date
    live in one): Pillow writes compressed TIFF through libtiff, which cannot hold them and
    fails. Uncompressed keeps every tag and every pixel, in a larger file."""
    if params.get("compression", "raw") == "raw" or not params.get("exif"):
        return
    exif = Image.Exif()
    try:
        exif.load(params["exif"])
    except Exception:  # unreadable here: written as is, and any refusal is reported
        return
    if any(tag in exif for tag in _EXIF_SUB_IFDS):
        params["compression"] = "raw"
        notes[:] = [note for note in notes if not note.startswith("TIFF compression ")]
        notes.append("TIFF written uncompressed to keep its camera data (EXIF)")


def _format_params(
    decoded: DecodedImage, fmt: str, options: ExportOptions, notes: list[str]
) -> dict[str, Any]:
    if fmt == "JPEG":
        # subsampling=0 is 4:4:4: the default 4:2:0 halves colour detail, and the pattern with it.
        return {"quality": options.quality, "subsampling": 0}
    if fmt == "WEBP":
        # A lossless original stays lossless: a lossy re-encode moves pixels by far more than
        # the protection's budget (up to 40 steps on sharp edges).
        if options.quality >= 100 or decoded.webp_lossless:
            return {"lossless": True, "quality": 100}
        return {"quality": options.quality}
    if fmt == "PNG":
        return {"compress_level": options.png_compress_level}
    if fmt == "TIFF":
        source = decoded.tiff_compression
        if source in _TIFF_COMPRESSIONS:
            return {"compression": source}
        if source:
            notes.append(f"TIFF compression {source} replaced by lossless LZW")
        return {"compression": "tiff_lzw"}
    return {}


def _metadata_params(
    decoded: DecodedImage, fmt: str, options: ExportOptions, notes: list[str]
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if fmt == "BMP":
        return params
    if decoded.icc_profile:
        params["icc_profile"] = decoded.icc_profile
    if decoded.dpi and fmt in ("JPEG", "PNG", "TIFF"):
        params["dpi"] = decoded.dpi
    exif = _exif_bytes(decoded, options.strip_metadata, notes)
    if exif:
        params["exif"] = exif
    xmp = _xmp_kept(decoded.xmp, options.strip_metadata, notes)
    if xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    elif xmp and fmt == "TIFF":
        _tiff_xmp(params, xmp)
    keep_text = options.strip_metadata != "all"
    if fmt == "PNG" and (xmp or decoded.png_gamma or (keep_text and decoded.png_text)):
        info = PngImagePlugin.PngInfo()
        if decoded.png_gamma:  # how the tones are shown, like a colour profile: always kept
            info.add(b"gAMA", round(decoded.png_gamma * 100_000).to_bytes(4, "big"))
        for key, value in decoded.png_text.items() if keep_text else ():
            info.add_text(key, value)  # iTXt where Latin-1 cannot hold it
        if xmp:
            info.add_itxt(PNG_XMP_KEY, xmp.decode("utf-8", "replace"))
        params["pnginfo"] = info
    if fmt == "JPEG" and keep_text and decoded.iptc:
        params["extra"] = _photoshop_segment(decoded.iptc)
    return params


_TIFF_XMP = 700  # the XMLPacket tag


def _tiff_xmp(params: dict[str, Any], xmp: bytes) -> None:
    """XMP in a TIFF is a tag of its first IFD, beside the EXIF's: one tag set holds both (given
    ``tiffinfo`` as well, Pillow writes it instead of ``exif``, and every EXIF tag was lost)."""
    if not params.get("exif"):
        params["tiffinfo"] = {_TIFF_XMP: xmp}
        return
    tags = Image.Exif()
    try:
        tags.load(params["exif"])
    except Exception:  # EXIF Pillow cannot read back: written as is, as without XMP
        return
    tags[_TIFF_XMP] = xmp
    params["exif"] = tags.tobytes()


def _photoshop_segment(iptc: bytes) -> bytes:
    """A JPEG APP13 segment holding one Photoshop resource, the IPTC record (written by
    Pillow right after the other markers)."""
    resource = b"8BIM" + IPTC_RESOURCE.to_bytes(2, "big") + b"\0\0" + len(iptc).to_bytes(4, "big")
    block = b"Photoshop 3.0\0" + resource + iptc + b"\0" * (len(iptc) % 2)
    return b"\xff\xed" + (len(block) + 2).to_bytes(2, "big") + block


# XMP properties named GPS* in any namespace (exif:GPSLatitude, and the IPTC location
# structures that reuse them), as attributes or as elements.
_XMP_GPS_ATTRIBUTE = re.compile(rb'\s[\w.-]+:GPS\w*\s*=\s*("[^"]*"|\'[^\']*\')')
_XMP_GPS_ELEMENT = re.compile(rb"<([\w.-]+:GPS\w*)\b[^>]*?(/>|>.*?</\1\s*>)", re.DOTALL)


def _xmp_kept(xmp: bytes | str | None, strip: str, notes: list[str]) -> bytes | None:
    """The XMP packet to write: as found, without its location, or none."""
    if not xmp:
        return None
    data = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    if strip == "none":
        return data
    if strip == "all":
        if b":GPS" in data:
            _note_location_removed(notes)
        return None
    cleaned = _XMP_GPS_ELEMENT.sub(b"", _XMP_GPS_ATTRIBUTE.sub(b"", data))
    if cleaned != data:
        _note_location_removed(notes)
    if b":GPS" in cleaned:  # a form the patterns do not know: drop the packet, not the privacy
        notes.append("XMP metadata removed (its location could not be taken out alone)")
        return None
    return cleaned


def _note_location_removed(notes: list[str]) -> None:
    if LOCATION_REMOVED not in notes:
        notes.append(LOCATION_REMOVED)


def _exif_bytes(decoded: DecodedImage, strip: str, notes: list[str]) -> bytes | None:
    exif = decoded.exif
    if exif is None:
        return None
    if strip != "none" and _has_location(exif):
        _note_location_removed(notes)
    if strip == "all":
        return None
    try:
        if strip == "gps":
            exif.pop(_GPS_IFD, None)
        data = exif.tobytes()
    except Exception:  # malformed EXIF can fail in many ways; the photo matters more
        notes.append("the EXIF data could not be copied (it is malformed)")
        return None
    return bytes(data) if len(data) > 8 else None


def _has_location(exif: Image.Exif) -> bool:
    if _GPS_IFD not in exif:
        return False
    try:
        return bool(exif.get_ifd(_GPS_IFD))
    except Exception:  # an unreadable GPS block may still hold a location
        return True


# --- writing -------------------------------------------------------------------------------------
def encoder(encoded: Encoded, target: Path, *, through_python: bool = False) -> Writer:
    """A writer (for :func:`~spdesk.core.files.atomic_write`) that encodes ``encoded`` (see
    :func:`write_image` for ``through_python``); Pillow's refusals become an
    :class:`OutputError` naming ``target``."""

    def write(handle: IO[bytes]) -> None:
        try:
            write_image(encoded, handle, through_python=through_python)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:  # Pillow's refusals
            raise OutputError(f"Could not encode {shown(target.name)}: {error}") from error

    return write


def write_temp(encoded: Encoded, target: Path, *, through_python: bool = False) -> tuple[Path, int]:
    """Encode ``encoded`` into a complete, fsync'ed temporary file beside ``target`` (see
    :func:`spdesk.core.files.write_temp`); returns it and its size."""
    return files.write_temp(target, encoder(encoded, target, through_python=through_python))


def write_checked(
    encoded: Encoded, scratch: Path, size: tuple[int, int], target: Path
) -> tuple[Path, int, str]:
    """Encode ``encoded`` into a temporary file beside ``scratch`` and check it as
    :func:`check_written` does for ``target``; returns the file, its length and its sha256.

    The first write is Pillow's own, to the file's descriptor (fast, see :func:`write_image`),
    which a disk filling up in the last write leaves cut without an error. A file that fails
    its check is written once more through Python, which raises "No space left on device"
    where the disk is full; a real encoding problem fails its check again. Nothing is left
    behind on failure."""
    for through_python in (False, True):
        temp, length = write_temp(encoded, scratch, through_python=through_python)
        try:
            return temp, length, check_written(temp, size, target)
        except BaseException as error:
            files.discard(temp)
            # cut by a full disk, or not encodable: once more, through Python
            if through_python or not isinstance(error, OutputError):
                raise
    raise AssertionError("unreachable: the second try returns or raises")


def check_written(temp: Path, size: tuple[int, int], target: Path) -> str:
    """Re-open a written output and check it before it counts; returns its sha256.

    Insurance against a whole class of encoder problems (metadata that breaks a file, a format
    that cannot hold the pixels, a write cut short): an output that is not whole, or not
    ``size``, raises :class:`OutputError` naming ``target``. A JPEG's structure is walked from
    its first marker to its last (see :mod:`spdesk.core.jpeg_structure`: decoding it again cost
    more than decoding the original); other formats are decoded whole by Pillow.
    """
    try:
        data = temp.read_bytes()
    except OSError as error:
        raise files.output_error(error, target) from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if data.startswith(b"\xff\xd8"):  # a JPEG: its structure, from first to last marker
                decoded = jpeg_frame_size(data)
            else:
                with Image.open(io.BytesIO(data)) as image:
                    decoded = image.size
                    image.load()
    except Exception as error:  # whatever Pillow raises, the file is not a usable photo
        raise OutputError(
            f"The written {shown(target.name)} does not decode ({error}); it was not kept.",
            hint="Choose another output format (spdesk protect --format png).",
        ) from error
    if decoded != size:
        raise OutputError(
            f"The written {shown(target.name)} does not decode to the photo's size "
            f"({decoded[0]}x{decoded[1]} instead of {size[0]}x{size[1]}); it was not kept."
        )
    return hashlib.sha256(data).hexdigest()


def write_image(encoded: Encoded, handle: IO[bytes], *, through_python: bool = False) -> None:
    """Encode into an open file (a separate function so tests can simulate a full disk).

    Given a real file, Pillow's encoder writes to its descriptor itself, outside Python's lock,
    so the job's workers encode side by side; encoding into memory holds the lock throughout
    (a universal job over 200 ImageNet photos took 1.32-1.38x the Pillow floor that way and
    0.96-1.10x this way: 3 workers on 2 cores, ``benchmarks/bench_protect.py``, three
    interleaved rounds on 2026-12-04). But Pillow
    ignores a short write: a disk that fills up in the last write leaves a cut file and no
    error (a 109 KB JPEG came out 106 KB on a tmpfs 100 bytes short). ``through_python``
    encodes in memory and writes through Python, whose write raises "No space left on device"
    instead: :func:`write_checked` does that for a file that does not check out."""
    if not through_python:
        encoded.image.save(handle, format=encoded.format, **encoded.params)
        return
    buffer = io.BytesIO()
    encoded.image.save(buffer, format=encoded.format, **encoded.params)
    handle.write(buffer.getbuffer())
