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
from collections.abc import Collection, Iterator
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


def settings_warnings(options: ExportOptions, formats: Collection[str] | None = None) -> list[str]:
    """Warnings about settings that weaken the protection, shown once per job.

    ``formats``: the formats the job's outputs are planned in (see :func:`output_format`);
    None: the chosen format, or JPEG and WebP where each photo keeps its own. A lossy WebP
    written again as lossy WebP is told per photo (see :func:`prepare`): whether a WebP is
    lossy is only known once it is read."""
    if formats is None:
        formats = {options.format} if options.format else {"JPEG", "WEBP"}
    lossy = [format_label(fmt) for fmt in ("JPEG", "WEBP") if fmt in formats]
    warnings: list[str] = []
    if lossy and options.quality < LOW_QUALITY:
        warnings.append(
            f"{' and '.join(lossy)} quality {options.quality} is below {LOW_QUALITY}: strong "
            "compression erases much of the protection. Use 95 (the default) or PNG."
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
    """Matches file names spdesk writes with ``suffix`` (including unique ``-2`` variants, and
    the ``-2-2`` ones that renumbering a numbered name made before)."""
    extensions = "|".join(re.escape(e) for exts in _EXTENSIONS.values() for e in exts)
    return re.compile(rf".*{re.escape(suffix)}(-\d+)*({extensions})", re.IGNORECASE)


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
    if fmt == "JPEG":
        _fit_jpeg_segments(params, notes)
    if decoded.greyscale:
        image = _grey_again(image, params, notes)
    removed = LOCATION_REMOVED in notes
    notes = [n for n in notes if n != LOCATION_REMOVED]
    return Encoded(_without_info(image, decoded), fmt, params, notes, removed)


def _without_info(image: Image.Image, decoded: DecodedImage) -> Image.Image:
    """``image`` with no metadata of its own: Pillow's writers fall back to it for what the
    save arguments leave out (a JPEG's comment, a PNG's or TIFF's colour profile), which would
    put back what the metadata option or a grey copy left out. The protected image is made
    for this output, so its metadata is dropped in place (a copy would cost 72 MB and tens of
    milliseconds at 24 MP); only the decoded photo itself, if that is what is written, is
    copied."""
    if not image.info:
        return image
    if image is decoded.image:
        image = image.copy()
    image.info = {}
    return image


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
        if options.format is None:  # a chosen --format webp is warned about once per job
            notes.append(
                f"written as lossy WebP (quality {options.quality}), like its original: lossy "
                "WebP halves the colour resolution, which weakens the protection (saving as PNG "
                "keeps all of it)"
            )
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
    text = _png_text_kept(decoded.png_text, options.strip_metadata, notes)
    if fmt == "PNG" and (xmp or decoded.png_gamma or decoded.png_chromaticity or text):
        params["pnginfo"] = _png_chunks(decoded, text, xmp)
    keep_text = options.strip_metadata != "all"
    if fmt == "JPEG" and keep_text and decoded.iptc:
        if len(decoded.iptc) <= _JPEG_IPTC_ROOM:
            params["extra"] = _photoshop_segment(decoded.iptc)
        else:  # Photoshop may spread a large record over segments; spdesk writes one
            notes.append(f"IPTC record left out ({_kb(len(decoded.iptc))}, {_KEPT_ELSEWHERE})")
    if fmt == "JPEG" and keep_text and decoded.comment:
        params["comment"] = decoded.comment
    _note_what_is_not_carried_over(decoded, fmt, text, keep_text, notes)
    return params


def _png_chunks(decoded: DecodedImage, text: dict[str, str], xmp: bytes | None) -> Any:
    info = PngImagePlugin.PngInfo()
    # How the tones and colours are shown, like a colour profile: always kept, and together
    # (a viewer reads cHRM beside gAMA; gAMA alone shows other colours).
    if decoded.png_gamma:
        info.add(b"gAMA", _png_number(decoded.png_gamma))
    if decoded.png_chromaticity:
        info.add(b"cHRM", b"".join(_png_number(v) for v in decoded.png_chromaticity))
    for key, value in text.items():
        info.add_text(key, value)  # iTXt where Latin-1 cannot hold it
    if xmp:
        info.add_itxt(PNG_XMP_KEY, xmp.decode("utf-8", "replace"))
    return info


def _png_number(value: float) -> bytes:
    return round(value * 100_000).to_bytes(4, "big")


_SRGB_GAMMA = 1 / 2.2
_SRGB_CHROMATICITY = (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)  # white, red, green, blue


def _note_what_is_not_carried_over(
    decoded: DecodedImage, fmt: str, text: dict[str, str], keep_text: bool, notes: list[str]
) -> None:
    """Name the kept metadata ``fmt`` does not hold here (a format changed on the way)."""
    lost = []
    if keep_text and decoded.iptc and fmt != "JPEG":
        lost.append("IPTC caption and credits")
    if keep_text and decoded.comment and fmt != "JPEG":
        lost.append("JPEG comment")
    if text and fmt != "PNG":
        keys = list(text)
        lost.append(f"PNG text ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    if lost:
        notes.append(f"not carried over to {format_label(fmt)}: {', '.join(lost)}")
    if fmt != "PNG" and not decoded.icc_profile and _png_colours_are_not_srgb(decoded):
        notes.append(
            f"the PNG's gamma and primaries (gAMA, cHRM) not kept: {format_label(fmt)} does "
            "not hold them here, so viewers may show its colours a little differently "
            "(saving as PNG keeps them)"
        )


def _png_colours_are_not_srgb(decoded: DecodedImage) -> bool:
    """Whether a PNG's gAMA and cHRM describe colours other than sRGB's (where dropping them
    changes nothing a viewer shows)."""
    gamma, chromaticity = decoded.png_gamma, decoded.png_chromaticity
    if gamma and abs(gamma - _SRGB_GAMMA) > 0.01:
        return True
    return bool(chromaticity) and any(
        abs(a - b) > 0.005 for a, b in zip(chromaticity or (), _SRGB_CHROMATICITY, strict=True)
    )


_JPEG_SEGMENT = 65533  # the most data one JPEG segment holds
_JPEG_XMP_ROOM = _JPEG_SEGMENT - 29  # after the namespace that heads an XMP segment
_JPEG_IPTC_ROOM = _JPEG_SEGMENT - 40  # after the Photoshop block's headers
_MAKER_NOTE = 0x927C  # in the Exif IFD: the camera maker's own data, often the bulk of it
_KEPT_ELSEWHERE = "more than a JPEG holds; --format png or tiff keeps it"


def _fit_jpeg_segments(params: dict[str, Any], notes: list[str]) -> None:
    """Leave out metadata too large for a JPEG's segments, rather than the photo: Pillow
    refuses to write a JPEG with any of it (extended XMP across segments is not written)."""
    xmp = params.get("xmp")
    if xmp and len(xmp) > _JPEG_XMP_ROOM:
        del params["xmp"]
        notes.append(f"XMP metadata left out ({_kb(len(xmp))}, {_KEPT_ELSEWHERE})")
    exif = params.get("exif")
    if exif and len(exif) > _JPEG_SEGMENT:
        smaller = _without_maker_note(exif)
        if smaller is not None and len(smaller) <= _JPEG_SEGMENT:
            params["exif"] = smaller
            size = _kb(len(exif) - len(smaller))
            notes.append(f"the camera's maker notes (EXIF) left out ({size}, {_KEPT_ELSEWHERE})")
        else:
            del params["exif"]
            notes.append(f"EXIF metadata left out ({_kb(len(exif))}, {_KEPT_ELSEWHERE})")
    comment = params.get("comment")
    if comment and len(comment) > _JPEG_SEGMENT:
        del params["comment"]
        notes.append(f"the JPEG comment left out ({_kb(len(comment))}, {_KEPT_ELSEWHERE})")


def _without_maker_note(exif: bytes) -> bytes | None:
    tags = Image.Exif()
    try:
        tags.load(exif)
        camera = tags.get_ifd(0x8769)
        if _MAKER_NOTE not in camera:
            return None
        del camera[_MAKER_NOTE]
        return bytes(tags.tobytes())
    except Exception:  # EXIF Pillow cannot read back: left out whole by the caller
        return None


def _kb(size: int) -> str:
    return f"{max(1, round(size / 1024))} KB"


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


# XMP properties named GPS* in any namespace and any case (exif:GPSLatitude, the IPTC location
# structures that reuse them, a drone's drone-dji:GpsLatitude), as attributes or as elements,
# with any prefix (one in UTF-8 beyond ASCII: "exé:GPSLatitude") or none (an element in a
# default namespace: <GPSLatitude xmlns="http://ns.adobe.com/exif/1.0/">): both were kept.
_XMP_PREFIX = rb"""(?:[^\s<>/:='"]+:)?"""
_XMP_GPS_ATTRIBUTE = re.compile(
    rb"\s" + _XMP_PREFIX + rb"""gps\w*\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE
)
_XMP_GPS_ELEMENT = re.compile(
    rb"<(" + _XMP_PREFIX + rb"gps\w*)\b[^>]*?(/>|>.*?</\1\s*>)", re.DOTALL | re.IGNORECASE
)
# Any left, in any form: a name starting GPS after a prefix or "<", or an attribute's.
_XMP_GPS_NAME = re.compile(rb"[<:]gps|\sgps\w*\s*=", re.IGNORECASE)


def _xmp_kept(xmp: bytes | str | None, strip: str, notes: list[str]) -> bytes | None:
    """The XMP packet to write: as found, without its location, or none."""
    if not xmp:
        return None
    data = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    if strip == "none":
        return data
    if strip == "all":
        if _XMP_GPS_NAME.search(data):
            _note_location_removed(notes)
        return None
    cleaned = _XMP_GPS_ELEMENT.sub(b"", _XMP_GPS_ATTRIBUTE.sub(b"", data))
    if cleaned != data:
        _note_location_removed(notes)
    if _XMP_GPS_NAME.search(cleaned):  # a form the patterns miss: drop the packet, not privacy
        notes.append("XMP metadata removed (its location could not be taken out alone)")
        return None
    return cleaned


# ImageMagick's copies of a whole metadata block in PNG text, as hex (EXIF with its GPS block).
_PNG_RAW_PROFILES = ("raw profile type exif", "raw profile type app1", "raw profile type xmp")


def _png_text_kept(text: dict[str, str], strip: str, notes: list[str]) -> dict[str, str]:
    """A PNG's text chunks to write: all, those without a location, or none."""
    if strip == "none":
        return dict(text)
    dropped = set()
    for key, value in text.items():
        location = _png_text_location(key, value)
        if location is None and strip == "gps":  # the privacy first
            notes.append(f"PNG text {key!r} removed (it could not be read to check for a location)")
        elif location:
            _note_location_removed(notes)
        if location is not False:
            dropped.add(key)
    return {} if strip == "all" else {k: v for k, v in text.items() if k not in dropped}


def _png_text_location(key: str, value: str) -> bool | None:
    """Whether a text chunk names a location ("exif:GPSLatitude") or is a raw profile holding
    one; None: a raw profile that cannot be read."""
    if "gps" in key.lower():
        return True
    if key.lower() not in _PNG_RAW_PROFILES:
        return False
    try:  # "\nexif\n    1234\n" then the bytes in hex, over many lines
        payload = bytes.fromhex("".join(value.split("\n")[3:]))
    except ValueError:
        return None
    return _raw_profile_has_location(payload)


def _raw_profile_has_location(payload: bytes) -> bool:
    if _XMP_GPS_NAME.search(payload):
        return True
    start = payload.find(b"Exif\0\0")  # an APP1 profile: EXIF after its marker
    tiff = payload[start + 6 :] if start >= 0 else payload
    if not tiff.startswith((b"II*\0", b"MM\0*")):
        return False
    exif = Image.Exif()
    try:
        exif.load(tiff)
    except Exception:  # unreadable EXIF may still hold a location
        return True
    return _has_location(exif)


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
        data = _without_location(exif) if strip == "gps" else exif.tobytes()
    except Exception:  # malformed EXIF can fail in many ways; the photo matters more
        notes.append("the EXIF data could not be copied (it is malformed)")
        return None
    if data is None:  # privacy first: no EXIF rather than EXIF with the location
        notes.append("the EXIF data was left out (its location could not be removed from it)")
        return None
    return bytes(data) if len(data) > 8 else None


def _without_location(exif: Image.Exif) -> bytes | None:
    """``exif`` as bytes without its GPS block, or None where one is still written. Pillow 11
    writes a GPS block it has read (``get_ifd``, as :func:`_has_location` does) even after its
    tag is popped, so the tag is popped from a fresh copy, and what comes out is read back."""
    copy = Image.Exif()
    copy.load(exif.tobytes())
    copy.pop(_GPS_IFD, None)
    data = copy.tobytes()
    written = Image.Exif()
    written.load(data)
    return None if _has_location(written) else data


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
