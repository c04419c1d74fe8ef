"""A JPEG stream's structure checked without decoding it: the check a written output gets.

Decoding a quality-95 output again (even at 1/8 scale, which still Huffman-decodes every
coefficient) cost more than decoding the original photo, and was most of the gap between
``spdesk protect`` and Pillow alone. What can break a JPEG that libjpeg has just encoded is its
structure: metadata segments (EXIF, ICC, XMP) that do not fit or lie about their length, a
stream cut short by a full disk or a failing write, or bytes after its end. This walk checks
every marker segment from SOI to EOI, the frame size in SOF, that each scan's entropy-coded data
runs to the next marker, and that EOI is the last thing in the file, in one vectorised pass over
the bytes. It cannot see bit errors inside the entropy-coded data; neither could a decode: the
file is read back from the page cache it was just written to, and libjpeg decodes garbage inside
a scan without complaint (tried on 2026-12-01: stuffed bytes and an early end marker).
"""

from __future__ import annotations

import numpy as np

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length
_FRAMES = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # SOF0-15; not DHT, JPG, DAC


def jpeg_frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the frame of a structurally whole JPEG stream.

    Raises:
        ValueError: saying what is wrong (not a JPEG, cut short, a segment running past the end,
            no frame or no scan, bytes after the end).
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("it does not start like a JPEG")
    markers = _marker_positions(data)
    size: tuple[int, int] | None = None
    scans = 0
    pos = 2
    while True:
        while data[pos : pos + 2] == b"\xff\xff":
            pos += 1  # fill bytes before a marker
        if pos + 2 > len(data):
            raise ValueError("the stream is cut short (no end marker)")
        if data[pos] != 0xFF:
            raise ValueError(f"no marker where one must be (byte {pos})")
        marker = data[pos + 1]
        if marker == _EOI:
            break
        if marker in _STANDALONE or marker == _SOI:
            pos += 2
            continue
        if pos + 4 > len(data):
            raise ValueError("the stream is cut short inside a marker")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            raise ValueError(f"a segment (marker 0x{marker:02X}) runs past the end of the file")
        if marker in _FRAMES:
            if length < 8:
                raise ValueError("the frame header is too short")
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            size = (width, height)
        pos += 2 + length
        if marker == _SOS:
            scans += 1
            pos = _next_marker(markers, pos)
            if pos < 0:
                raise ValueError("the stream is cut short inside its image data")
    if pos + 2 != len(data):
        raise ValueError(f"{len(data) - pos - 2} bytes follow the end marker")
    if size is None or scans == 0:
        raise ValueError("it has no " + ("frame" if size is None else "image data"))
    return size


def _marker_positions(data: bytes) -> np.ndarray:
    """Offsets of every 0xFF that starts a marker ending entropy-coded data: not a stuffed
    0xFF 0x00, not a restart marker, not a fill byte followed by another 0xFF."""
    raw = np.frombuffer(data, np.uint8)
    ffs = np.flatnonzero(raw[:-1] == 0xFF)
    following = raw[ffs + 1]
    stuffed = (following == 0x00) | ((following >= 0xD0) & (following <= 0xD7))
    starts: np.ndarray = ffs[~stuffed]
    return starts


def _next_marker(markers: np.ndarray, pos: int) -> int:
    """The first marker at or after ``pos``, or -1."""
    index = int(np.searchsorted(markers, pos))
    return int(markers[index]) if index < len(markers) else -1
