"""Image formats by content: what a file is, decided by its first bytes, never its name."""

from __future__ import annotations

import struct
from pathlib import Path

# Enough for an ISO media file's brands and, in simple files, the type of its first image item
# (a HEIC and an AVIF can both be labelled only "mif1").
HEAD_BYTES = 256
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif"}
    | {".heic", ".heif", ".hif", ".avif"}
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_CONTAINER_BRANDS = frozenset({b"mif1", b"msf1"})  # HEIF containers, whatever the codec
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
    "AVIF": "AVIF",
}


def heic_supported() -> bool:
    """Whether HEIC/HEIF photos can be read here (the optional pillow-heif; it is not imported)."""
    from importlib.util import find_spec

    return find_spec("pillow_heif") is not None


def avif_supported() -> bool:
    """Whether AVIF photos can be read here (Pillow built with AVIF support)."""
    from PIL import features

    return bool(features.check_module("avif"))


def readable_kinds() -> str:
    """The photo formats read here, in the words the app and messages use."""
    kinds = ["JPEG", "PNG", "WebP", "TIFF"]
    kinds += ["HEIC"] if heic_supported() else []
    kinds += ["AVIF"] if avif_supported() else []
    return ", ".join(kinds)


def sniff(head: bytes) -> str | None:
    """The Pillow format name for the first bytes of a file, or None if it is not a photo.

    Only the formats spdesk protects are recognised: JPEG, PNG, WebP, TIFF, BMP, GIF,
    HEIC/HEIF and AVIF. Everything else (sidecars, OS files, RAW, PDFs) is not an image here.
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
    if head[4:8] == b"ftyp":
        return _iso_media_photo(head)
    return None


def _iso_media_photo(head: bytes) -> str | None:
    """ "HEIF" or "AVIF" for an ISO media file (its ftyp box first), by its brands: the major
    one, else for a bare container brand the compatible ones, else its image item's codec."""
    major = head[8:12]
    if major in _AVIF_BRANDS:
        return "AVIF"
    if major in _HEIF_BRANDS:
        return "HEIF"
    if major not in _CONTAINER_BRANDS:
        return None  # videos (isom, mp41, qt) and other ISO media
    (size,) = struct.unpack(">I", head[:4])
    brands = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return "AVIF" if b"av01" in head else "HEIF"


def sniff_file(path: Path) -> str | None:
    """:func:`sniff` on the first bytes of ``path`` (OSError when it cannot be read)."""
    with path.open("rb") as handle:
        return sniff(handle.read(HEAD_BYTES))


def format_label(fmt: str) -> str:
    """A user-facing name for a Pillow format name ("WEBP" -> "WebP")."""
    return _FORMAT_NAMES.get(fmt, fmt)
