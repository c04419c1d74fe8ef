"""Formats by content: ISO media files (HEIC, AVIF) told apart by their brands."""

from __future__ import annotations

import struct

import pytest

from spdesk.core.formats import IMAGE_SUFFIXES, avif_supported, readable_kinds, sniff


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + bytes(4) + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_ftyp(b"avif", b"avif", b"mif1", b"miaf"), "AVIF"),
        (_ftyp(b"avis", b"avis", b"msf1"), "AVIF"),
        (_ftyp(b"mif1", b"mif1", b"avif", b"miaf"), "AVIF"),
        (_ftyp(b"mif1", b"mif1", b"miaf") + b"\0\0\0\x15infe\x02\0\0\0\0\x01\0\0av01", "AVIF"),
        (_ftyp(b"heic", b"mif1", b"heic"), "HEIF"),
        (_ftyp(b"mif1", b"mif1", b"heic", b"miaf"), "HEIF"),
        (_ftyp(b"mif1", b"mif1", b"miaf") + b"\0\0\0\x15infe\x02\0\0\0\0\x01\0\0hvc1", "HEIF"),
        (_ftyp(b"isom", b"isom", b"mp41"), None),  # a video
    ],
)
def test_iso_media_photos_are_told_apart_by_brand(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_avif_is_named_among_readable_kinds_where_pillow_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("spdesk.core.formats.avif_supported", lambda: True)
    assert readable_kinds().endswith(", AVIF") and ".avif" in IMAGE_SUFFIXES
    monkeypatch.setattr("spdesk.core.formats.avif_supported", lambda: False)
    assert "AVIF" not in readable_kinds()


def test_a_pillow_that_does_not_know_avif_reads_no_avif_and_does_not_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import features

    def unknown(name: str) -> bool:  # Pillow before 11.2
        raise ValueError(f"Unknown module {name}")

    monkeypatch.setattr(features, "check_module", unknown)
    assert not avif_supported() and "AVIF" not in readable_kinds()


def test_every_format_sniffed_is_in_the_list_the_app_names() -> None:
    """The drop area's words come from READABLE_FORMATS: a format read but missing there went
    unnamed (BMP and GIF, audit)."""
    import io

    from PIL import Image

    from spdesk.core.formats import READABLE_FORMATS, format_label

    heads = [_ftyp(b"heic", b"mif1", b"heic"), _ftyp(b"avif", b"avif", b"mif1")]
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"):
        data = io.BytesIO()
        Image.new("RGB", (4, 4)).save(data, format=fmt)
        heads.append(data.getvalue()[:256])
    sniffed = {sniff(head) for head in heads}
    assert sniffed == set(READABLE_FORMATS)
    assert len({format_label(fmt) for fmt in READABLE_FORMATS}) == len(READABLE_FORMATS)
