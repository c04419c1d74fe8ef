"""Reading photos: decoding a file to upright 8-bit RGB(A) with what the export keeps.

Every image spdesk protects, trains on or evaluates goes through :func:`read_image`, which
returns an upright RGB or RGBA Pillow image plus what the export needs to keep (EXIF with the
orientation reset, ICC profile, XMP) and plain-language notes about anything changed on the way
(16-bit to 8-bit, CMYK to sRGB, extra frames dropped). Every failure is a named
:class:`~spdesk.core.errors.ImageError` whose text names the file.

Decisions:
- The format is decided by the first bytes of the file, never by its extension.
- The pixel limit is checked on the header, before any pixel is decoded: a decompression bomb
  costs a few kilobytes of memory, not gigabytes. spdesk's limit decides, not Pillow's own
  (raised to match when the user raises spdesk's).
- Animated GIF/WebP and multi-page TIFF are refused with their frame count (protecting only the
  first frame of an animation silently would lose the rest). MPO files, the JPEGs some cameras
  write with a preview or depth map as a second frame, keep their first frame with a note; so
  does a HEIC holding a collection of images (its primary image is the photo).
- A HEIC that describes its colours with an nclx box rather than an ICC profile (Display P3,
  BT.2020) gets an ICC profile made from it, so its copy's colours are shown as they were.
- 16-bit images are scaled to 8 bits (65535 -> 255), never clipped.
"""

from __future__ import annotations

import importlib
import io
import math
import re
import struct
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageOps, UnidentifiedImageError

from spdesk.core.colour import is_plain_grey, to_rgb
from spdesk.core.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MissingSupportError,
    NotAnImageError,
    UnsupportedImageError,
)
from spdesk.core.formats import (
    CAMERA_RAW_REASON,
    HEAD_BYTES,
    avif_supported,
    camera_raw,
    format_label,
    sniff,
)
from spdesk.core.icc import nclx_icc_profile
from spdesk.core.pixel_add import allow_lending

# Pillow refuses more than this at open() (twice its warning threshold); spdesk uses the same.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
_pillow_limit_lock = threading.Lock()


def _register_heif(path: Path) -> None:
    try:
        pillow_heif = _import_pillow_heif()
    except ImportError as error:
        message = f"{path.name} is a HEIC/HEIF photo, and HEIC support is not installed."
        if getattr(sys, "frozen", False):  # an installer's app: no pip to run
            raise UnsupportedImageError(
                message,
                hint="The installed app does not read HEIC (its HEVC codec's GPL licence keeps "
                "it out): save the photo as JPEG first (on an iPhone, Settings > Camera > "
                "Formats > Most Compatible), or install spdesk with pip and its heif extra.",
            ) from error
        # Installing it mends this, even in a running app: a retry can succeed.
        hint = 'Install it with: pip install "pillow-heif>=0.16" (spdesk\'s [heif] extra).'
        raise MissingSupportError(message, hint=hint) from error
    pillow_heif.register_heif_opener()


def _import_pillow_heif() -> Any:
    """pillow_heif, also when it was installed while this process runs (its folder's listing,
    cached by Python's importer, predates it)."""
    try:
        import pillow_heif
    except ImportError:
        importlib.invalidate_caches()
        import pillow_heif
    return pillow_heif


def _require_avif(path: Path) -> None:
    if not avif_supported():
        raise UnsupportedImageError(
            f"{path.name} is an AVIF photo, and AVIF needs a Pillow built with AVIF support, "
            "which this installation lacks.",
            hint="Update Pillow (pip install -U pillow: its current wheels read AVIF), then "
            "start spdesk again; or save the photo as JPEG or PNG first.",
        )


@dataclass
class DecodedImage:
    """A photo ready to protect: upright, 8-bit RGB or RGBA, with what the export keeps.

    Attributes:
        image: the pixels, mode "RGB" or "RGBA".
        source_format: the real format of the file (Pillow name: JPEG, PNG, WEBP, ...).
        exif: EXIF with the orientation tag removed (the pixels are upright), or None.
        icc_profile: ICC profile of ``image``'s pixels (sRGB after a CMYK conversion), or None.
        xmp: XMP packet as found in the file, or None.
        notes: plain-language notes on what was changed while reading (shown to the user).
        bit_depth: bits per channel of the file (8 or 16).
        tiff_compression: the source's TIFF compression, to write TIFF outputs alike.
        webp_lossless: the source is a lossless WebP: its WebP copy is written lossless too.
        png_text: a PNG's text chunks (title, author, copyright...), XMP aside.
        png_gamma: a PNG's gAMA chunk (how viewers without a colour profile show its tones).
        png_chromaticity: a PNG's cHRM chunk (white, red, green, blue as x, y), which viewers
            read with its gAMA.
        iptc: a JPEG's IPTC record (caption, credit, copyright...), from its Photoshop block.
        comment: a JPEG's comment (COM segment).
        dpi: the print resolution recorded in the file, if any.
        greyscale: the file held grey pixels (no greyscale colour profile): its protected copy
            is written grey again when the protection added no colour.
    """

    image: Image.Image
    source_format: str
    exif: Image.Exif | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    notes: list[str] = field(default_factory=list)
    bit_depth: int = 8
    tiff_compression: str | None = None
    webp_lossless: bool = False
    png_text: dict[str, str] = field(default_factory=dict)
    png_gamma: float | None = None
    png_chromaticity: tuple[float, ...] | None = None
    iptc: bytes | None = None
    comment: bytes | None = None
    dpi: tuple[float, float] | None = None
    greyscale: bool = False

    @property
    def has_alpha(self) -> bool:
        return self.image.mode == "RGBA"

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


@dataclass(frozen=True)
class PhotoHeader:
    """What a photo's header declares: its size, its Pillow mode as stored in the file, and
    the format its content says (Pillow's name; "" when not known)."""

    width: int
    height: int
    mode: str
    format: str = ""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def has_alpha(self) -> bool:
        """Whether the photo holds transparency (a palette's transparent colour aside)."""
        return self.mode in ("RGBA", "LA", "PA", "RGBa", "La")


def read_header(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoHeader:
    """The size and mode ``path`` declares, without decoding a pixel (to know what decoding it
    will cost). Raises what :func:`read_image` raises on the header (the format by content,
    the pixel limit, frames); damaged pixel data is only found by decoding."""
    try:
        with path.open("rb") as handle:
            return read_header_from(handle, path, max_pixels=max_pixels)
    except OSError as error:
        raise read_error(path, error) from error


def read_header_from(
    handle: IO[bytes], name: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> PhotoHeader:
    """:func:`read_header` for a photo open as a seekable binary stream (an object in an object
    store); ``name`` names it in messages. An OSError while reading is the caller's to name."""
    fmt = _check_head(name, handle.read(HEAD_BYTES))
    handle.seek(0)
    with _open(name, handle, fmt, max_pixels) as image:
        return PhotoHeader(image.width, image.height, image.mode, fmt)


def read_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` into an upright 8-bit RGB/RGBA image plus its metadata.

    Args:
        path: the photo; its format is decided by content.
        max_pixels: refuse images with more pixels than this, checked before decoding.

    Raises:
        NotAnImageError: empty file, or content that is not a supported image.
        CorruptImageError: truncated or damaged data.
        UnsupportedImageError: animations, multi-page files, CMYK without a profile, odd modes,
            HEIC without pillow-heif.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        ImageError: the file cannot be read (missing, permission denied).
    """
    try:
        with path.open("rb") as handle:
            image, fmt, head = _decode(path, handle, max_pixels)
    except OSError as error:
        raise read_error(path, error) from error
    return _normalise(path, image, fmt, head)


def read_image_from(
    handle: IO[bytes], name: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """:func:`read_image` for a photo already open as a seekable binary stream (an object in
    an object store, see :mod:`spdesk.core.stores`); ``name`` names it in messages. An OSError
    while reading is the caller's to name."""
    image, fmt, head = _decode(name, handle, max_pixels)
    return _normalise(name, image, fmt, head)


def read_thumbnail(path: Path, edge: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``path`` decoded as :func:`read_image` does (upright, RGB or RGBA) and shrunk to fit
    ``edge`` x ``edge``: for previews of photos other decoders cannot read (HEIC, AVIF)."""
    image = read_image(path, max_pixels=max_pixels).image
    image.thumbnail((edge, edge))
    return image


def _decode(path: Path, handle: IO[bytes], max_pixels: int) -> tuple[Image.Image, str, bytes]:
    head = handle.read(HEAD_BYTES)
    fmt = _check_head(path, head)
    handle.seek(0)
    allow_lending()  # the photo in one block of memory, for a protection added outside the lock
    image = _open(path, handle, fmt, max_pixels)
    _load(path, image)
    if fmt == "WEBP":
        image.info[_WEBP_LOSSLESS] = _webp_lossless(handle)
    return image, fmt, head


IPTC_RESOURCE = 0x0404  # IPTC-NAA, in a JPEG's Photoshop (APP13) block
PNG_XMP_KEY = "XML:com.adobe.xmp"  # the iTXt chunk a PNG's XMP travels in


def _png_text(image: Image.Image) -> dict[str, str]:
    text = getattr(image, "text", None) or {}
    return {k: v for k, v in text.items() if isinstance(v, str) and k != PNG_XMP_KEY}


def _png_gamma(image: Image.Image) -> float | None:
    gamma = image.info.get("gamma")
    return float(gamma) if isinstance(gamma, int | float) and 0 < gamma < 1000 else None


def _png_chromaticity(image: Image.Image) -> tuple[float, ...] | None:
    values = image.info.get("chromaticity")
    if not isinstance(values, tuple) or len(values) != 8:
        return None
    return tuple(float(v) for v in values) if all(0 <= v < 10 for v in values) else None


def _comment(image: Image.Image) -> bytes | None:
    comment = image.info.get("comment")
    return bytes(comment) if isinstance(comment, bytes | bytearray) and comment else None


def _iptc(image: Image.Image) -> bytes | None:
    """The IPTC record alone: the Photoshop block's other resources can hold a thumbnail of
    the unprotected photo, which must not travel into the copy."""
    resources = image.info.get("photoshop")
    data = resources.get(IPTC_RESOURCE) if isinstance(resources, dict) else None
    return bytes(data) if isinstance(data, bytes | bytearray) and data else None


_WEBP_LOSSLESS = "spdesk.webp_lossless"  # carried in the decoded image's info to _normalise


def is_lossless_webp(path: Path) -> bool:
    """Whether the WebP file ``path`` holds a lossless image (False if it cannot be read)."""
    try:
        with path.open("rb") as handle:
            return handle.read(12)[8:] == b"WEBP" and _webp_lossless(handle)
    except OSError:
        return False


def _webp_lossless(handle: IO[bytes]) -> bool:
    """Whether a WebP file's image is lossless: its first image chunk is "VP8L" ("VP8 " is
    lossy), found by walking the RIFF chunks (an extended file puts others first)."""
    handle.seek(12)
    for _ in range(64):  # a few chunks (VP8X, ICCP, ANIM...) come before the image
        header = handle.read(8)
        if len(header) < 8:
            return False
        if header[:4] in (b"VP8L", b"VP8 ", b"ANMF"):
            return header[:4] == b"VP8L"
        size = int.from_bytes(header[4:], "little")
        handle.seek(size + size % 2, 1)
    return False


def require_named_file(path: Path, what: str) -> None:
    """Named errors for a file the user named (a photo, a mask) that is not there or is a
    folder, before it is read: read_error's words fit a file that vanished during a job."""
    if path.is_dir():
        raise NotAnImageError(f"{path} is a folder, not a {what} file.")
    if not path.exists():
        raise ImageError(f"The {what} {path} was not found.", hint="Check the name and the folder.")


def read_error(path: Path | str, error: OSError) -> ImageError:
    """The named error for an OSError met while reading the photo ``path`` (a path, or a URL
    as the store shows it)."""
    if isinstance(error, FileNotFoundError):
        return ImageError(f"{path} no longer exists (moved or deleted before it was read).")
    if isinstance(error, PermissionError):
        return ImageError(
            f"Cannot read {path}: permission denied.",
            hint="Check that your account can read this file, or copy it elsewhere first.",
        )
    if isinstance(error, IsADirectoryError):
        return NotAnImageError(f"{path} is a folder, not a photo.")
    return ImageError(f"Cannot read {path}: {error.strerror or error}.")


def _check_head(path: Path, head: bytes) -> str:
    if not head:
        raise NotAnImageError(f"{path.name} is empty (0 bytes): there is no photo in it.")
    if camera_raw(path.name, head):  # its first image can be a mere preview: never read
        raise UnsupportedImageError(f"{path.name} is {CAMERA_RAW_REASON}.")
    fmt = sniff(head)
    if fmt is None:
        raise NotAnImageError(
            f"{path.name} is not a photo spdesk can read (its content is not JPEG, PNG, WebP, "
            "TIFF, BMP, GIF, HEIC or AVIF, whatever its name says)."
        )
    if fmt == "HEIF":
        _register_heif(path)
    if fmt == "AVIF":
        _require_avif(path)
    return fmt


def allow_pixels(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb limit no lower than spdesk's ``max_pixels``.

    Pillow refuses at ``open()`` images above twice ``Image.MAX_IMAGE_PIXELS``, before spdesk's
    check could let a limit raised by the user take effect. The global is only ever raised, so
    a job with a lower limit running alongside is still refused by spdesk's own check.
    """
    with _pillow_limit_lock:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and 2 * current < max_pixels:
            Image.MAX_IMAGE_PIXELS = (max_pixels + 1) // 2


def _open(path: Path, handle: IO[bytes], fmt: str, max_pixels: int) -> Image.Image:
    allow_pixels(max_pixels)
    if fmt == "HEIF" and not isinstance(handle, io.BytesIO):
        # pillow-heif reads the whole file at open, with read(-1), which some object stores'
        # handles refuse (pyarrow: "Negative size"): hand it the bytes read plainly.
        handle = io.BytesIO(handle.read())
    try:
        with warnings.catch_warnings():
            # Pillow warns between its two pixel thresholds (the limit below decides) and on
            # each broken metadata tag (EXIF problems become one note later).
            warnings.simplefilter("ignore")
            # A HEIF container may hold AV1 (an AVIF the brands did not tell): any plugin.
            image = Image.open(handle, formats=None if fmt == "HEIF" else [fmt])
    except Image.DecompressionBombError as error:
        # Pillow refuses at open() past its own limit; its message holds the pixel count.
        count = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, int(count.group(1)) if count else None, max_pixels) from error
    except (UnidentifiedImageError, SyntaxError, ValueError, struct.error) as error:
        raise _damaged_header(path, fmt) from error
    except RuntimeError as error:
        raise _undecodable(path, format_label(fmt), error) from error
    except OSError as error:
        if error.errno is not None:  # the disk or the network, not the file's content
            raise
        raise _damaged_header(path, fmt) from error  # Pillow's "Truncated File Read" and such
    width, height = image.size
    if width * height > max_pixels:
        raise _too_large(path, width * height, max_pixels, f"{width}x{height}, ")
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1 and image.format not in _ONE_PHOTO_OF_SEVERAL:
        kind = "a multi-page TIFF" if fmt == "TIFF" else f"an animated {format_label(fmt)}"
        raise UnsupportedImageError(
            f"{path.name} is {kind} with {frames} frames; spdesk protects still photos only.",
            hint="Export the frame you want as a still image (PNG or JPEG) and protect that.",
        )
    return image


# Files whose extra frames are not an animation: spdesk keeps the main photo (see _normalise).
# A HEIC's images are a collection (pillow-heif reads no HEIF sequences); it opens the primary.
_ONE_PHOTO_OF_SEVERAL = ("MPO", "HEIF")


def _a(label: str) -> str:
    """``label`` with its article: "a HEIC", "an AVIF"."""
    return f"{'an' if label[:1] in 'AEIOU' else 'a'} {label}"


def _undecodable(path: Path, label: str, error: RuntimeError) -> UnsupportedImageError:
    """A decoder's refusal (pillow-heif raises RuntimeError for a codec or feature its libheif
    lacks), as a named error rather than an unexpected one."""
    return UnsupportedImageError(
        f"{path.name} is {_a(label)} file this installation cannot decode (it uses a codec or "
        "feature its decoder lacks).",
        hint=f"Save the photo as JPEG or PNG first. The decoder said: {error}.",
    )


def _damaged_header(path: Path, fmt: str) -> CorruptImageError:
    return CorruptImageError(
        f"{path.name} looks like {_a(format_label(fmt))} file but its header is damaged "
        "and it cannot be read.",
        hint="Copy the photo again from its original source (camera card, backup).",
    )


def _megapixels(pixels: int) -> str:
    """Megapixels to say: whole ones, or two significant digits under 10 (never "0 MP")."""
    return f"{pixels / 1e6:.0f}" if pixels >= 10e6 else f"{pixels / 1e6:.2g}"


def _too_large(
    path: Path, pixels: int | None, max_pixels: int, dims: str = ""
) -> ImageTooLargeError:
    dims = f" ({dims}{_megapixels(pixels)} MP)" if pixels else ""
    # The limit that would let it in, for people who trust the file (a few spare megapixels).
    enough = f" {math.ceil(pixels / 1e6) + 1}" if pixels else ""
    return ImageTooLargeError(
        f"{path.name} is too large{dims}: the limit is {_megapixels(max_pixels)} megapixels. "
        "It was not decoded (files like this can exhaust memory).",
        hint="Reduce the photo's size in an editor, or, if you trust the file, protect it with "
        f"a higher limit from the command line: spdesk protect --max-megapixels{enough or ' MP'}.",
    )


def _load(path: Path, image: Image.Image) -> None:
    try:
        image.load()
    except MemoryError as error:
        raise ImageTooLargeError(f"{path.name} is too large to decode in memory.") from error
    except (FileNotFoundError, PermissionError):
        raise
    except RuntimeError as error:
        raise _undecodable(path, format_label(image.format or ""), error) from error
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as error:
        label = format_label(image.format or "")
        # The advice first, the decoder's own words last (a narrow column shows the start).
        raise CorruptImageError(
            f"{path.name} is a damaged or truncated {label} file and cannot be decoded.",
            hint="Copy the photo again from its original source (camera card, backup). "
            f"The decoder said: {error}.",
        ) from error


def _normalise(path: Path, image: Image.Image, fmt: str, head: bytes) -> DecodedImage:
    notes: list[str] = []
    others = int(getattr(image, "n_frames", 1)) - 1
    if image.format == "MPO":
        notes.append(
            f"kept the main photo; {others} extra frame(s) (preview or depth map) not copied"
        )
    elif image.format == "HEIF" and others:
        notes.append(f"kept the main photo; {others} other image{'s' * (others > 1)} not copied")
    tiff_compression = image.info.get("compression") if fmt == "TIFF" else None
    dpi = image.info.get("dpi")
    if fmt == "TIFF" and _X_RESOLUTION not in getattr(image, "tag_v2", {}):
        dpi = None  # Pillow says 1 dpi of a TIFF that records no resolution
    exif = _upright(image, notes)
    xmp = image.info.get("xmp")  # after _upright, which removes its orientation too
    icc = image.info.get("icc_profile") or None
    if icc is None and image.format == "HEIF":
        icc = nclx_icc_profile(image.info.get("nclx_profile"), notes)
    bit_depth = _bit_depth(image, fmt, head)
    if bit_depth > 8:
        notes.append(f"{bit_depth}-bit image saved as 8-bit (scaled, not clipped)")
    greyscale = is_plain_grey(_stored_mode(image, fmt, head), icc)
    pixels, icc = to_rgb(path, image, icc, bit_depth, notes)
    return DecodedImage(
        image=pixels,
        source_format="JPEG" if fmt == "JPEG" else (image.format or fmt),
        exif=exif,
        icc_profile=icc,
        xmp=xmp if isinstance(xmp, bytes | str) and xmp else None,  # type: ignore[arg-type]
        notes=notes,
        bit_depth=bit_depth,
        tiff_compression=tiff_compression if isinstance(tiff_compression, str) else None,
        webp_lossless=image.info.get(_WEBP_LOSSLESS) is True,
        png_text=_png_text(image) if fmt == "PNG" else {},
        png_gamma=_png_gamma(image) if fmt == "PNG" else None,
        png_chromaticity=_png_chromaticity(image) if fmt == "PNG" else None,
        iptc=_iptc(image) if fmt == "JPEG" else None,
        comment=_comment(image) if fmt == "JPEG" else None,
        dpi=_dpi(dpi),
        greyscale=greyscale,
    )


_X_RESOLUTION = 282  # TIFF tag
_PNG_GREY_ALPHA = 4  # IHDR colour type


def _stored_mode(image: Image.Image, fmt: str, head: bytes) -> str:
    """The decoded photo's mode, or "LA" for a 16-bit grey-and-alpha PNG, which Pillow reads
    as RGBA (its copy is then written grey again, as an 8-bit one is)."""
    if fmt == "PNG" and len(head) > 25 and head[25] == _PNG_GREY_ALPHA:
        return "LA"
    return image.mode


def _dpi(value: object) -> tuple[float, float] | None:
    if isinstance(value, tuple) and len(value) == 2:
        try:
            x, y = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
        return (x, y) if x > 0 and y > 0 else None
    return None


# Baseline TIFF tags that describe how pixels are stored, not the photo: a TIFF's first IFD holds
# them next to its EXIF-like tags, and passed back to a writer as EXIF they break its output.
_STORAGE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320}
    | {322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532}
    | {700, 34377, 34675, 37724}  # XMP, Photoshop, ICC, layers: carried on their own or dropped
)


# Where Pillow keeps a photo's XMP packet (JPEG, WebP, PNG, TIFF: "xmp"; PNG's iTXt chunk).
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")


def _upright(image: Image.Image, notes: list[str]) -> Image.Exif | None:
    """Apply the EXIF orientation in place (Pillow removes it from the EXIF and the XMP);
    return the EXIF metadata, without storage tags, or None.

    An orientation in the XMP alone is left as it is, in the pixels and in the XMP copied:
    browsers and most viewers turn a photo by its EXIF alone, and Pillow, which reads the
    XMP's where the EXIF has none, turned the copy, which then showed turned beside its
    original."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns per broken tag; one note is enough
            xmp = {key: image.info.pop(key) for key in _XMP_KEYS if key in image.info}
            try:
                image.getexif()  # read (and kept) without the XMP: its orientation is not read
            finally:
                image.info.update(xmp)
            ImageOps.exif_transpose(image, in_place=True)
            exif = image.getexif()
    except Exception:  # Pillow raises many kinds on malformed EXIF; the pixels are still fine
        notes.append("the EXIF data is damaged: orientation not applied, metadata not copied")
        return None
    for tag in _STORAGE_TAGS.intersection(exif):
        del exif[tag]
    return exif if len(exif) else None


def _bit_depth(image: Image.Image, fmt: str, head: bytes) -> int:
    if image.mode.startswith("I;16"):
        return 16
    if fmt == "HEIF" and isinstance(image.info.get("bit_depth"), int):
        return int(image.info["bit_depth"])  # pillow-heif hands over 10/12-bit photos as 8-bit
    if fmt == "PNG" and len(head) > 24:
        return int(head[24])  # IHDR bit depth: Pillow reads 48/64-bit PNG as 8-bit RGB(A)
    if fmt == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258)
        if isinstance(bits, tuple | list) and bits:
            return int(bits[0])
        if isinstance(bits, int):
            return bits
    return 8
