"""Image formats by content: what a file is, decided by its first bytes, never its name.

Camera RAW files are no photos here, though most are TIFF inside: their first image is often a
small preview (the raw data lies elsewhere), which would be "protected" in place of the photo.
:func:`sniff` tells them by content where it can; :func:`camera_raw` also by name.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
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
# Camera RAW formats (most are TIFF inside; CR3, RAF, X3F and the older ones are not).
RAW_SUFFIXES = frozenset(
    {".nef", ".nrw", ".cr2", ".cr3", ".crw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2"}
    | {".raf", ".pef", ".ptx", ".3fr", ".fff", ".erf", ".kdc", ".dcr", ".mef", ".mos", ".iiq"}
    | {".rwl", ".srw", ".x3f", ".mrw", ".gpr", ".raw"}
)
CAMERA_RAW_REASON = "a camera RAW file: export it as JPEG or TIFF from your photo editor first"
_TIFF_BYTE_ORDERS = {b"II*\x00": "<", b"MM\x00*": ">"}  # classic TIFF (cameras write no BigTIFF)
_NEW_SUBFILE_TYPE = 254
_REDUCED_SIZE = 1  # NewSubfileType bit 0: this image is a smaller copy of another in the file
_DNG_VERSION = 50706
_ONE_NUMBER = {3: "H", 4: "I"}  # a TIFF field's SHORT and LONG types, as struct reads them
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
    """Whether AVIF photos can be read here (Pillow built with AVIF support; Pillow before 11.2
    does not know the module and raises)."""
    from PIL import features

    try:
        return bool(features.check_module("avif"))
    except ValueError:
        return False


READABLE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF")
"""Every format :func:`sniff` recognises (Pillow's names), in the order the app names them:
the one list the words for what is read come from (:func:`readable_kinds`)."""


def readable_kinds() -> str:
    """The photo formats read here, in the words the app and messages use (HEIC and AVIF only
    where they can be read)."""
    optional = {"HEIF": heic_supported, "AVIF": avif_supported}
    kinds = [fmt for fmt in READABLE_FORMATS if fmt not in optional or optional[fmt]()]
    return ", ".join(format_label(fmt) for fmt in kinds)


def sniff(head: bytes) -> str | None:
    """The Pillow format name for the first bytes of a file, or None if it is not a photo.

    Only the formats spdesk protects are recognised: JPEG, PNG, WebP, TIFF, BMP, GIF,
    HEIC/HEIF and AVIF. Everything else (sidecars, OS files, RAW, PDFs) is not an image here,
    a TIFF that is a camera's RAW file by content included (see :func:`_raw_tiff`).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None if _raw_tiff(head) else "TIFF"
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


def _raw_tiff(head: bytes) -> bool:
    """Whether a TIFF's first bytes say it is a camera RAW file: Canon's CR2 marker, or a first
    directory (as far as ``head`` holds it) whose image is a reduced-size preview, as in NEF
    and most DNG files, or that carries DNGVersion."""
    order = _TIFF_BYTE_ORDERS.get(head[:4])
    if order is None:
        return False
    if head[8:11] == b"CR\x02":
        return True
    return any(
        tag == _DNG_VERSION or (tag == _NEW_SUBFILE_TYPE and value & _REDUCED_SIZE)
        for tag, value in _first_directory(head, order)
    )


def _first_directory(head: bytes, order: str) -> Iterator[tuple[int, int]]:
    """Each (tag, value) of a classic TIFF's first directory that lies within ``head``; the
    value where it is one SHORT or LONG, else 0."""
    if len(head) < 8:
        return
    (offset,) = struct.unpack_from(order + "I", head, 4)
    if offset + 2 > len(head):
        return
    (count,) = struct.unpack_from(order + "H", head, offset)
    for start in range(offset + 2, min(offset + 2 + 12 * count, len(head) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", head, start)
        code = _ONE_NUMBER.get(kind) if number == 1 else None
        yield tag, struct.unpack_from(order + code, head, start + 8)[0] if code else 0


def camera_raw(name: str, head: bytes) -> bool:
    """Whether the file ``name``, first bytes ``head``, is a camera RAW file: by content (see
    :func:`sniff`) or, for content that is TIFF or no photo, by its name (``.NEF``, ``.DNG``...:
    a RAW file's first image can be a full-size preview, plain TIFF to any reader)."""
    return _raw_tiff(head) or raw_by_name(name, sniff(head))


def raw_by_name(name: str, fmt: str | None) -> bool:
    """Whether a file named ``name`` whose content sniffs as ``fmt`` is a camera RAW file by
    its name: a RAW suffix on TIFF content, or on content that is no photo."""
    return fmt in (None, "TIFF") and os.path.splitext(name)[1].lower() in RAW_SUFFIXES


def sniff_file(path: Path) -> str | None:
    """:func:`sniff` on the first bytes of ``path`` (OSError when it cannot be read)."""
    with path.open("rb") as handle:
        return sniff(handle.read(HEAD_BYTES))


def format_label(fmt: str) -> str:
    """A user-facing name for a Pillow format name ("WEBP" -> "WebP")."""
    return _FORMAT_NAMES.get(fmt, fmt)
