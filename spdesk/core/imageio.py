"""Reading photos: what is an image (by content), and decoding it to upright 8-bit RGB(A).

Every image spdesk protects goes through :func:`read_image`, which returns an upright RGB or RGBA
Pillow image plus what the export needs to keep (EXIF with the orientation reset, ICC profile,
XMP) and plain-language notes about anything changed on the way (16-bit to 8-bit, CMYK to sRGB,
extra frames dropped). Every failure is a named :class:`~spdesk.core.errors.ImageError` whose
text names the file.

Decisions:
- The format is decided by the first bytes of the file, never by its extension.
- The pixel limit is checked on the header, before any pixel is decoded: a decompression bomb
  costs a few kilobytes of memory, not gigabytes.
- Animated GIF/WebP and multi-page TIFF are refused with their frame count (protecting only the
  first frame of an animation silently would lose the rest). MPO files, the JPEGs some cameras
  write with a preview or depth map as a second frame, keep their first frame with a note.
- 16-bit images are scaled to 8 bits (65535 -> 255), never clipped.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from spdesk.core.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)

# Pillow refuses more than this at open() (twice its warning threshold); spdesk uses the same.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

HEAD_BYTES = 32
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif"}
    | {".heic", ".heif", ".hif"}
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_FORMAT_NAMES = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "TIFF": "TIFF",
    "BMP": "BMP",
    "GIF": "GIF",
    "HEIF": "HEIC",
}


def sniff(head: bytes) -> str | None:
    """The Pillow format name for the first bytes of a file, or None if it is not a photo.

    Only the formats spdesk protects are recognised: JPEG, PNG, WebP, TIFF, BMP, GIF and
    HEIC/HEIF. Everything else (sidecars, OS files, RAW, PDFs) is not an image here.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 18:
        # "BM" alone is too weak (text files start with it): check the DIB header size too.
        (dib_size,) = struct.unpack("<I", head[14:18])
        return "BMP" if dib_size in _BMP_HEADER_SIZES else None
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIF"
    return None


def sniff_file(path: Path) -> str | None:
    """:func:`sniff` on the first bytes of ``path`` (OSError when it cannot be read)."""
    with path.open("rb") as handle:
        return sniff(handle.read(HEAD_BYTES))


def heif_available() -> bool:
    """Whether the optional HEIC/HEIF support (pillow-heif) is installed."""
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _register_heif(path: Path) -> None:
    try:
        import pillow_heif
    except ImportError as error:
        raise UnsupportedImageError(
            f"{path.name} is a HEIC/HEIF photo, and HEIC support is not installed.",
            hint="Install it with: pip install 'spdesk[heif]' (or pip install pillow-heif).",
        ) from error
    pillow_heif.register_heif_opener()


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
        dpi: the print resolution recorded in the file, if any.
    """

    image: Image.Image
    source_format: str
    exif: Image.Exif | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    notes: list[str] = field(default_factory=list)
    bit_depth: int = 8
    tiff_compression: str | None = None
    dpi: tuple[float, float] | None = None

    @property
    def has_alpha(self) -> bool:
        return self.image.mode == "RGBA"

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def format_label(fmt: str) -> str:
    """A user-facing name for a Pillow format name ("WEBP" -> "WebP")."""
    return _FORMAT_NAMES.get(fmt, fmt)


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
            head = handle.read(HEAD_BYTES)
            fmt = _check_head(path, head)
            handle.seek(0)
            image = _open(path, handle, fmt, max_pixels)
            _load(path, image)
    except OSError as error:
        raise read_error(path, error) from error
    return _normalise(path, image, fmt, head)


def read_error(path: Path, error: OSError) -> ImageError:
    """The named error for an OSError met while reading the photo ``path``."""
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
    fmt = sniff(head)
    if fmt is None:
        raise NotAnImageError(
            f"{path.name} is not a photo spdesk can read (its content is not JPEG, PNG, WebP, "
            "TIFF, BMP, GIF or HEIC, whatever its name says)."
        )
    if fmt == "HEIF":
        _register_heif(path)
    return fmt


def _open(path: Path, handle: IO[bytes], fmt: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns between its two pixel thresholds (the limit below decides) and on
            # each broken metadata tag (EXIF problems become one note later).
            warnings.simplefilter("ignore")
            image = Image.open(handle, formats=None if fmt == "HEIF" else [fmt])
    except Image.DecompressionBombError as error:
        # Pillow refuses at open() past its own limit; its message holds the pixel count.
        count = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, int(count.group(1)) if count else None, max_pixels) from error
    except (UnidentifiedImageError, SyntaxError, ValueError, struct.error) as error:
        raise CorruptImageError(
            f"{path.name} looks like a {format_label(fmt)} file but its header is damaged "
            "and it cannot be read."
        ) from error
    width, height = image.size
    if width * height > max_pixels:
        raise _too_large(path, width * height, max_pixels, f"{width}x{height}, ")
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1 and image.format != "MPO":
        kind = "multi-page TIFF" if fmt == "TIFF" else f"animated {format_label(fmt)}"
        raise UnsupportedImageError(
            f"{path.name} is an {kind} with {frames} frames; spdesk protects still photos "
            "only, so it was left out.",
            hint="Export the frame you want as a still image (PNG or JPEG) and protect that.",
        )
    return image


def _too_large(
    path: Path, pixels: int | None, max_pixels: int, dims: str = ""
) -> ImageTooLargeError:
    dims = f" ({dims}{pixels / 1e6:.0f} MP)" if pixels else ""
    return ImageTooLargeError(
        f"{path.name} is too large{dims}: the limit is {max_pixels / 1e6:.0f} megapixels. "
        "It was not decoded (files like this can exhaust memory).",
        hint="Reduce the photo's size in an editor, or raise the limit if you trust the file.",
    )


def _load(path: Path, image: Image.Image) -> None:
    try:
        image.load()
    except MemoryError as error:
        raise ImageTooLargeError(f"{path.name} is too large to decode in memory.") from error
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as error:
        label = format_label(image.format or "")
        raise CorruptImageError(
            f"{path.name} is a damaged or truncated {label} file and cannot be decoded ({error}).",
            hint="Copy the photo again from its original source (camera card, backup).",
        ) from error


def _normalise(path: Path, image: Image.Image, fmt: str, head: bytes) -> DecodedImage:
    notes: list[str] = []
    if image.format == "MPO":
        notes.append(
            f"kept the main photo; {int(getattr(image, 'n_frames', 1)) - 1} extra frame(s) "
            "(preview or depth map) not copied"
        )
    tiff_compression = image.info.get("compression") if fmt == "TIFF" else None
    xmp = image.info.get("xmp")
    dpi = image.info.get("dpi")
    exif = _upright(image, notes)
    icc = image.info.get("icc_profile") or None
    bit_depth = _bit_depth(image, fmt, head)
    if bit_depth > 8:
        notes.append(f"{bit_depth}-bit image saved as 8-bit (scaled, not clipped)")
    pixels, icc = _to_rgb(path, image, icc, bit_depth, notes)
    return DecodedImage(
        image=pixels,
        source_format="JPEG" if fmt == "JPEG" else (image.format or fmt),
        exif=exif,
        icc_profile=icc,
        xmp=xmp if isinstance(xmp, bytes | str) and xmp else None,  # type: ignore[arg-type]
        notes=notes,
        bit_depth=bit_depth,
        tiff_compression=tiff_compression if isinstance(tiff_compression, str) else None,
        dpi=_dpi(dpi),
    )


def _dpi(value: object) -> tuple[float, float] | None:
    if isinstance(value, tuple) and len(value) == 2:
        try:
            x, y = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            return None
        return (x, y) if x > 0 and y > 0 else None
    return None


def _upright(image: Image.Image, notes: list[str]) -> Image.Exif | None:
    """Apply the EXIF orientation in place; return the EXIF (orientation removed) or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns per broken tag; one note is enough
            ImageOps.exif_transpose(image, in_place=True)
            exif = image.getexif()
    except Exception:  # Pillow raises many kinds on malformed EXIF; the pixels are still fine
        notes.append("the EXIF data is damaged: orientation not applied, metadata not copied")
        return None
    return exif if len(exif) else None


def _bit_depth(image: Image.Image, fmt: str, head: bytes) -> int:
    if image.mode.startswith("I;16"):
        return 16
    if fmt == "PNG" and len(head) > 24:
        return int(head[24])  # IHDR bit depth: Pillow reads 48/64-bit PNG as 8-bit RGB(A)
    if fmt == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258)
        if isinstance(bits, tuple | list) and bits:
            return int(bits[0])
        if isinstance(bits, int):
            return bits
    return 8


def _to_rgb(
    path: Path, image: Image.Image, icc: bytes | None, bit_depth: int, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    mode = image.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        image, mode = _scale_16bit(image, bit_depth), "L"
    if mode == "F":
        raise UnsupportedImageError(
            f"{path.name} holds floating-point (HDR/scientific) pixels; spdesk protects 8- and "
            "16-bit photos.",
            hint="Export it as an 8- or 16-bit TIFF, PNG or JPEG first.",
        )
    space = _icc_space(icc)
    if mode == "CMYK":
        return _cmyk_to_srgb(path, image, icc if space == "CMYK" else None, notes)
    alpha = image.has_transparency_data
    target = "RGBA" if alpha else "RGB"
    if mode in ("L", "LA", "1", "La") and space == "GRAY" and icc:
        return _grey_profile_to_srgb(image, icc, target, notes)
    if mode in ("L", "LA", "1", "La"):
        notes.append("greyscale photo saved in colour (the protection adds faint colour noise)")
        icc = None if space not in (None, "RGB") else icc
    elif mode not in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "YCbCr"):
        raise UnsupportedImageError(
            f"{path.name} uses colour mode {mode}, which spdesk cannot protect.",
            hint="Convert it to RGB in an image editor and try again.",
        )
    if space not in (None, "RGB"):
        icc = None  # a profile that does not describe RGB pixels would mislabel the output
    return (image if image.mode == target else image.convert(target)), icc


def _scale_16bit(image: Image.Image, bit_depth: int) -> Image.Image:
    values = np.asarray(image)
    top = 65535 if bit_depth >= 16 or int(values.max(initial=0)) > 255 else 255
    scaled = (values.astype(np.uint32) * 255 + top // 2) // top
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


def _icc_space(icc: bytes | None) -> str | None:
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return "damaged"
    return str(profile.profile.xcolor_space).strip() or None


def _srgb_bytes() -> bytes:
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _cmyk_to_srgb(
    path: Path, image: Image.Image, icc: bytes | None, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    if icc is None:
        raise UnsupportedImageError(
            f"{path.name} is a CMYK image (print colours) without a colour profile, so its "
            "screen colours cannot be known; it was left out.",
            hint="Convert it to RGB (sRGB) in an image editor and protect that copy.",
        )
    try:
        converted = ImageCms.profileToProfile(
            image,
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
    except ImageCms.PyCMSError as error:
        raise UnsupportedImageError(
            f"{path.name} is a CMYK image whose colour profile could not be used ({error}).",
            hint="Convert it to RGB (sRGB) in an image editor and protect that copy.",
        ) from error
    assert converted is not None
    notes.append("CMYK converted to sRGB with its colour profile")
    return converted, _srgb_bytes()


def _grey_profile_to_srgb(
    image: Image.Image, icc: bytes, target: str, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    alpha = image.convert("RGBA").getchannel("A") if target == "RGBA" else None
    try:
        rgb = ImageCms.profileToProfile(
            image.convert("L"),
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            ImageCms.createProfile("sRGB"),
            outputMode="RGB",
        )
    except ImageCms.PyCMSError:
        notes.append("greyscale colour profile unusable: saved as plain sRGB")
        return image.convert(target), None
    assert rgb is not None
    notes.append("greyscale photo saved in colour with an sRGB profile")
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb, _srgb_bytes()


# --- discovery ---------------------------------------------------------------------------------
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".directory"})
SIDECAR_SUFFIXES = frozenset(
    {".xmp", ".aae", ".thm", ".json", ".xml", ".txt", ".pp3", ".dop", ".on1", ".lrv", ".lrf"}
)
# Folders that hold thumbnails, trash or system data (NAS thumbnails are real JPEGs!).
SYSTEM_FOLDERS = frozenset(
    {"@eadir", "$recycle.bin", "system volume information", ".trashes", ".thumbnails"}
)


@dataclass(frozen=True)
class InputPhoto:
    """A file a job will try to protect and the folder its relative path is taken from."""

    path: Path
    root: Path


@dataclass(frozen=True)
class SkippedInput:
    """A file or folder left out of a job, with the reason shown to the user."""

    path: Path
    reason: str


@dataclass
class Discovery:
    """What a set of input paths holds: photos in job order, and what was left out and why."""

    photos: list[InputPhoto] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # named inputs that do not exist


@dataclass(frozen=True)
class DiscoveryOptions:
    """How inputs are walked.

    Attributes:
        follow_symlinks: follow symbolic links to files and folders (loops are detected).
        is_output_name: predicate on a file name; True for spdesk's own outputs (skipped).
        output_marker: a file name whose presence marks a folder as an spdesk output folder.
        exclude: folders never walked (the job's output folder).
    """

    follow_symlinks: bool = False
    is_output_name: Callable[[str], bool] | None = None
    output_marker: str | None = None
    exclude: tuple[Path, ...] = ()


def discover(paths: Sequence[Path], options: DiscoveryOptions = DiscoveryOptions()) -> Discovery:
    """Expand files and folders (recursively) into the photos a job protects, by content.

    Explicitly named files are always taken (a bad one then fails with a clear error); inside
    folders, files whose content is not an image are listed as skipped (OS junk, sidecars,
    documents) unless their name says they are photos. The walk never loops: symbolic links
    are not followed by default, and followed links are tracked by device and inode.
    """
    found = Discovery()
    seen: set[str] = set()
    excluded = {_real(p) for p in options.exclude}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            _walk(path, options, excluded, seen, found)
        elif path.exists() or path.is_symlink():
            _add(path, path.parent, seen, found)
        else:
            found.missing.append(path)
    return found


def _real(path: Path) -> str:
    return str(Path(path).resolve())


def _add(path: Path, root: Path, seen: set[str], found: Discovery) -> None:
    real = _real(path)
    if real not in seen:
        seen.add(real)
        found.photos.append(InputPhoto(path, root))


def _walk(
    root: Path, options: DiscoveryOptions, excluded: set[str], seen: set[str], found: Discovery
) -> None:
    visited: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        where = Path(error.filename) if error.filename else root
        found.skipped.append(SkippedInput(where, f"folder cannot be read ({error.strerror})"))

    for folder, dirnames, filenames in os.walk(
        root, onerror=on_error, followlinks=options.follow_symlinks
    ):
        here = Path(folder)
        if _skip_folder(here, root, options, excluded, visited, found):
            dirnames.clear()
            continue
        dirnames.sort(key=_name_key)
        if not options.follow_symlinks:
            for name in [d for d in dirnames if (here / d).is_symlink()]:
                dirnames.remove(name)
                found.skipped.append(SkippedInput(here / name, "symbolic link (not followed)"))
        for name in sorted(filenames, key=_name_key):
            reason = _file_reason(here / name, options)
            if reason is None:
                _add(here / name, root, seen, found)
            elif reason:
                found.skipped.append(SkippedInput(here / name, reason))


def _name_key(name: str) -> tuple[str, str]:
    return name.casefold(), name


def _skip_folder(
    folder: Path,
    root: Path,
    options: DiscoveryOptions,
    excluded: set[str],
    visited: set[tuple[int, int]],
    found: Discovery,
) -> bool:
    """Whether to leave ``folder`` out (recording why); also guards against link loops."""
    reason = None
    try:
        info = folder.stat()
    except OSError as error:
        found.skipped.append(SkippedInput(folder, f"folder cannot be read ({error.strerror})"))
        return True
    if (info.st_dev, info.st_ino) in visited:
        reason = "symbolic link loop (already walked)"
    elif folder != root and (folder.name.startswith(".") or folder.name.lower() in SYSTEM_FOLDERS):
        reason = "hidden or system folder"
    elif folder != root and _real(folder) in excluded:
        reason = "the output folder of this job"
    elif folder != root and options.output_marker and (folder / options.output_marker).exists():
        # The folder the user named is walked even so (protecting in place); outputs in it
        # are recognised by name.
        reason = "an spdesk output folder (holds protected copies)"
    visited.add((info.st_dev, info.st_ino))
    if reason:
        found.skipped.append(SkippedInput(folder, reason))
    return reason is not None


def _file_reason(path: Path, options: DiscoveryOptions) -> str | None:
    """None to take the file, or the reason it is skipped ("" = skip silently)."""
    name = path.name
    if options.output_marker and name == options.output_marker:
        return ""
    if name.lower() in JUNK_NAMES or name.startswith("._"):
        return "system file, not a photo"
    if path.is_symlink() and not options.follow_symlinks:
        return "symbolic link (not followed)"
    if name.startswith("."):
        return "hidden file"
    if options.is_output_name is not None and options.is_output_name(name):
        return "already an spdesk output (never protected twice)"
    looks_like_photo = path.suffix.lower() in IMAGE_SUFFIXES
    try:
        fmt = sniff_file(path)
    except OSError as error:
        return None if looks_like_photo else f"cannot be read ({error.strerror})"
    if fmt is not None or looks_like_photo:
        return None
    if path.suffix.lower() in SIDECAR_SUFFIXES:
        return "sidecar file (metadata), not a photo"
    return "not a photo (content is not JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC)"
