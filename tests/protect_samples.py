"""Small generated photos for the image I/O, export and job tests (every bad input of issue 2).

Each helper writes one file and returns its path. Images are tiny so the whole suite stays fast.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spdesk.core.manifest import MANIFEST_NAME, SourceIds, read_job_manifest
from spdesk.core.perturbation import save_perturbation

EPS = 8.0
CMYK_PROFILE = Path("/usr/share/color/icc/ghostscript/default_cmyk.icc")


def perturbation_file(folder: Path, size: int = 32, eps: float = EPS, seed: int = 0) -> Path:
    """A random ±eps sign pattern saved as a perturbation file."""
    rng = np.random.default_rng(seed)
    delta = (rng.choice([-1.0, 1.0], size=(3, size, size)) * eps / 255).astype(np.float32)
    return save_perturbation(folder / "test.safetensors", delta, eps=eps, metadata={"name": "t"})


def recorded(out: Path, sources: list[Path]) -> dict[str, dict[str, object]]:
    """The manifest lines of the output folder ``out`` for the originals ``sources``, by file
    name (the manifest itself names originals by keyed ids, never by path)."""
    entries = read_job_manifest(out / MANIFEST_NAME)
    ids = SourceIds.of_install()
    found = {p.name: entries.get(ids(os.path.abspath(p))) for p in sources}
    return {name: entry for name, entry in found.items() if entry is not None}


def photo_array(width: int = 48, height: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth gradient with a little noise: mid-range values, so nothing clips."""
    rng = np.random.default_rng(seed)
    y = np.linspace(40, 200, height)[:, None, None]
    x = np.linspace(30, 210, width)[None, :, None]
    base = (y + x) / 2 + np.array([0.0, 10.0, -10.0])
    noise = rng.integers(-5, 6, size=(height, width, 3))
    return np.clip(base + noise, 20, 235).astype(np.uint8)


def photo(
    path: Path,
    width: int = 48,
    height: int = 32,
    fmt: str | None = None,
    seed: int = 0,
    **save: object,
) -> Path:
    """A small photo; another seed gives other pixels (Pillow's save ignores unknown keywords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(photo_array(width, height, seed), mode="RGB")
    if (fmt or "").upper() == "JPEG" or path.suffix.lower() in (".jpg", ".jpeg"):
        save.setdefault("quality", 95)
    image.save(path, format=fmt, **save)  # type: ignore[arg-type]
    return path


def oriented_jpeg(path: Path, orientation: int) -> tuple[Path, Image.Image]:
    """A JPEG stored sideways with an EXIF orientation; returns it and the upright picture.

    The upright picture is 40 wide, 24 high, with a red block at its top-left corner.
    """
    upright = Image.new("RGB", (40, 24), (90, 130, 170))
    upright.paste((220, 30, 30), (0, 0, 12, 8))
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(undo[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    stored.save(path, "JPEG", quality=98, subsampling=0, exif=exif.tobytes())
    return path, upright


def png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG (grey for 2-D arrays; for (h, w, 2), (h, w, 3) and (h, w, 4) grey with
    alpha, 48-bit RGB and 64-bit RGBA) written byte by byte."""
    height, width = array.shape[:2]
    colour_type = 0 if array.ndim == 2 else {2: 4, 3: 2, 4: 6}[array.shape[2]]
    rows = array.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(_png(header, zlib.compress(raw)))
    return path


def png_bomb(path: Path, side: int = 100_000, data: bytes | None = None) -> Path:
    """A few-hundred-byte PNG that claims side x side pixels (a decompression bomb); ``data``
    replaces its compressed pixel data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" * (side + 1)
    path.write_bytes(_png(header, zlib.compress(row * 4, 9) if data is None else data))
    return path


def _png(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(photo_array(64, 64), mode="RGB").save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def animated(path: Path, fmt: str, frames: int = 3) -> Path:
    images = [Image.new("RGB", (16, 16), (40 * i, 80, 120)) for i in range(frames)]
    images[0].save(path, fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def palette_with_transparency(path: Path) -> Path:
    image = Image.new("P", (16, 12), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * (254 * 3))
    image.paste(0, (0, 0, 8, 12))
    image.save(path, "PNG", transparency=0)
    return path


def rgba(path: Path) -> Path:
    array = np.dstack(
        [photo_array(20, 10), np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (10, 1))]
    )
    Image.fromarray(array).save(path, "PNG")
    return path


def la(path: Path) -> Path:
    grey = photo_array(20, 10)[..., 0]
    alpha = np.full_like(grey, 128)
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(path, "PNG")
    return path


def malformed_exif_jpeg(path: Path) -> Path:
    bad = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\xff\xff\xff\xf0garbage"
    Image.fromarray(photo_array(24, 16), mode="RGB").save(path, "JPEG", quality=95, exif=bad)
    return path


def gps_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    Image.fromarray(photo_array(24, 16), mode="RGB").save(
        path, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=b""
    )
    return path


XMP_WITH_LOCATION = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4" '
    b'exif:GPSLatitude="48,51.5N" exif:GPSLongitude="2,17.6667E">'
    b"<exif:GPSAltitude>35/1</exif:GPSAltitude>"
    b"<xmp:Label>Holiday</xmp:Label>"
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def gps_xmp_jpeg(path: Path) -> Path:
    """A JPEG whose position is in EXIF's GPS block and in XMP, beside other metadata."""
    gps_jpeg(path)
    with Image.open(path) as image:
        exif = image.getexif().tobytes()
        pixels = image.copy()
    pixels.save(path, "JPEG", quality=95, exif=exif, xmp=XMP_WITH_LOCATION)
    return path


def grey_icc_profile(gamma: float = 1.8) -> bytes:
    """A minimal ICC v2 greyscale display profile (white point and a gamma curve), built here
    so no system or downloaded profile is needed."""

    def tag(kind: bytes, body: bytes) -> bytes:
        data = kind + bytes(4) + body
        return data + bytes(-len(data) % 4)

    def xyz(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    name = b"spdesk test grey\x00"
    tags = [
        (b"desc", tag(b"desc", struct.pack(">I", len(name)) + name + bytes(4 + 4 + 2 + 1 + 67))),
        (b"wtpt", tag(b"XYZ ", xyz(0.9642, 1.0, 0.8249))),
        (b"kTRC", tag(b"curv", struct.pack(">IH", 1, round(gamma * 256)))),
        (b"cprt", tag(b"text", b"no copyright\x00")),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s12s4s", size, b"", 0x02100000, b"mntr", b"GRAY", b"XYZ ",
                         bytes(12), b"acsp")  # fmt: skip
    header += bytes(28) + xyz(0.9642, 1.0, 0.8249) + bytes(48)
    return header + struct.pack(">I", len(tags)) + table + body


def grey_icc_jpeg(path: Path, width: int = 40, height: int = 28) -> Path:
    """A greyscale JPEG carrying a greyscale ICC profile (converted to sRGB when protected)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(photo_array(width, height)).convert("L")
    grey.save(path, "JPEG", quality=95, icc_profile=grey_icc_profile())
    return path


def assert_batched_like_alone(
    originals: list[np.ndarray], alone: list[np.ndarray], together: list[np.ndarray]
) -> None:
    """Each photo protected in a batch got its own protection, not a neighbour's.

    Not bit for bit: a float sum in another order (another batch, another kernel, even buffer
    alignment on some CPUs) can flip the sign of a gradient within rounding of zero, and one
    flipped working value moves 1-2% of a small photo's values (CI, 2026-12-05: 1.3% on a photo
    that sat alone in its batch both times). So the measure is relative: a photo's two runs must
    differ in far fewer values than the protections of two photos of one size differ, which is
    what handing a photo its neighbour's protection would show.
    """
    deltas = [
        np.asarray(p, np.int16) - np.asarray(o, np.int16)
        for p, o in zip(alone, originals, strict=True)
    ]
    neighbours = [
        float(np.mean(a != b))
        for i, a in enumerate(deltas)
        for b in deltas[i + 1 :]
        if a.shape == b.shape
    ]
    assert neighbours, "needs two photos of one size to tell a mix-up from rounding"
    mix_up = min(neighbours)
    for index, (single, batched) in enumerate(zip(alone, together, strict=True)):
        differing = float(np.mean(np.asarray(single) != np.asarray(batched)))
        assert differing < mix_up / 3, (index, differing, mix_up)


def unchanged_at(monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    """The protection leaves a photo of ``size`` as it was, as a budget rounded away would
    (too small photos, which did, are refused now)."""
    from spdesk.core.jobs import pool

    real = pool.protect_photo

    def protect(protector: Any, decoded: Any, key: str) -> Any:
        if decoded.image.size == size:
            return decoded.image.convert("RGB"), (None, 0)
        return real(protector, decoded, key)

    monkeypatch.setattr(pool, "protect_photo", protect)
