"""Image formats by content: what a file is, decided by its first bytes, never its name."""

from __future__ import annotations

import struct
from pathlib import Path

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


def heic_supported() -> bool:
    """Whether HEIC/HEIF photos can be read here (the optional pillow-heif; it is not imported)."""
    from importlib.util import find_spec

    return find_spec("pillow_heif") is not None


def readable_kinds() -> str:
    """The photo formats read here, in the words the app and messages use."""
    return "JPEG, PNG, WebP, TIFF, HEIC" if heic_supported() else "JPEG, PNG, WebP, TIFF"


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


def format_label(fmt: str) -> str:
    """A user-facing name for a Pillow format name ("WEBP" -> "WebP")."""
    return _FORMAT_NAMES.get(fmt, fmt)
