"""ICC profiles for the colours a HEIF's nclx box describes (Display P3, BT.2020).

A HEIC copy is written as JPEG, which cannot hold an nclx box: without a profile, viewers show
its colours as sRGB (washed out for P3). A small ICC v2 profile made from the nclx primaries,
white and tone curve keeps them as they were.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

# Codes of ITU-T H.273, the numbers an nclx box holds.
_SRGB_PRIMARIES = (1, 2)  # BT.709 (sRGB's), and unspecified (taken as sRGB, as viewers do)
_SRGB_LIKE_TRANSFERS = (1, 2, 6, 13, 14, 15)  # sRGB, BT.709/601 (shown as sRGB), unspecified
_HDR_TRANSFERS = {16: "HDR (PQ) colour description", 18: "HDR (HLG) colour description"}
_PCS_WHITE = np.array([0.9642, 1.0, 0.8249])  # ICC's D50
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)
_CURVE_POINTS = 1024


def _srgb_curve(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _bt709_curve(v: np.ndarray) -> np.ndarray:
    return np.where(v < 0.081, v / 4.5, ((v + 0.099) / 1.099) ** (1 / 0.45))


# Transfer code -> encoded value to linear light (what an ICC curve holds).
_TRANSFER_CURVES = {
    1: _bt709_curve,
    6: _bt709_curve,
    14: _bt709_curve,
    15: _bt709_curve,
    2: _srgb_curve,
    13: _srgb_curve,
    4: lambda v: v**2.2,
    5: lambda v: v**2.8,
    8: lambda v: v,
}
_NCLX_NAMES = {1: "sRGB", 9: "BT.2020", 11: "DCI-P3", 12: "Display P3"}


def nclx_icc_profile(nclx: object, notes: list[str]) -> bytes | None:
    """An ICC profile for the colours an HEIF's nclx box describes (pillow-heif's
    ``nclx_profile``), or None where sRGB describes them (what a copy without a profile is
    shown as). Colours no ICC profile here can describe get a note instead."""
    if not isinstance(nclx, dict):
        return None
    primaries, transfer = nclx.get("color_primaries"), nclx.get("transfer_characteristics")
    if not isinstance(primaries, int) or not isinstance(transfer, int):
        return None
    if primaries in _SRGB_PRIMARIES and transfer in _SRGB_LIKE_TRANSFERS:
        return None
    curve = _TRANSFER_CURVES.get(transfer)
    chromaticities = _nclx_chromaticities(nclx)
    if curve is None or chromaticities is None:
        kind = _HDR_TRANSFERS.get(transfer, "colour description (HEIF nclx)")
        notes.append(f"{kind} not carried into the copy: its colours may look different")
        return None
    name = _NCLX_NAMES.get(primaries, "RGB")
    return _rgb_icc_profile(_to_pcs_matrix(*chromaticities), curve, f"{name} (from HEIF nclx)")


def _nclx_chromaticities(nclx: dict[str, object]) -> tuple[np.ndarray, np.ndarray] | None:
    """The primaries' and white's xy (rows r, g, b, and the white), as pillow-heif gives them
    from the primaries code, or None when they are missing or not chromaticities."""
    keys = [f"color_primary_{c}_{axis}" for c in ("red", "green", "blue", "white") for axis in "xy"]
    values = [nclx.get(key) for key in keys]
    if not all(isinstance(v, float | int) and 0 < v < 1 for v in values):
        return None
    if nclx.get("color_primaries") in _SRGB_PRIMARIES:
        values = [0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290]
    # Round away float32 noise: the standards state them to 3 or 4 decimals.
    xy = np.round(np.array(values, dtype=float).reshape(4, 2), 4)
    return xy[:3], xy[3]


def _xyz(xy: np.ndarray) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _to_pcs_matrix(primaries: np.ndarray, white: np.ndarray) -> np.ndarray:
    """RGB (linear) to ICC's XYZ, white adapted to D50 by Bradford: the columns are the
    profile's red, green and blue colorants."""
    colorants = np.column_stack([_xyz(xy) for xy in primaries])
    white_xyz = _xyz(white)
    to_xyz = colorants * np.linalg.solve(colorants, white_xyz)
    cone_ratio = (_BRADFORD @ _PCS_WHITE) / (_BRADFORD @ white_xyz)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_ratio) @ _BRADFORD
    return np.asarray(adapt @ to_xyz)


def _rgb_icc_profile(
    to_pcs: np.ndarray, curve: Callable[[np.ndarray], np.ndarray], name: str
) -> bytes:
    """A minimal ICC v2 RGB display profile: colorants, D50 white, one tone curve for all three
    channels. Undated, so the same photo gives the same bytes on every run."""
    table = curve(np.linspace(0.0, 1.0, _CURVE_POINTS))
    levels = np.clip(np.round(table * 65535), 0, 65535).astype(">u2").tobytes()
    trc = _icc_tag(b"curv", struct.pack(">I", _CURVE_POINTS) + levels)
    ascii_name = name.encode("ascii") + b"\0"
    tags = [
        (b"desc", _icc_tag(b"desc", struct.pack(">I", len(ascii_name)) + ascii_name + bytes(78))),
        (b"cprt", _icc_tag(b"text", b"No copyright, use freely\0")),
        (b"wtpt", _icc_xyz(_PCS_WHITE)),
        (b"rXYZ", _icc_xyz(to_pcs[:, 0])),
        (b"gXYZ", _icc_xyz(to_pcs[:, 1])),
        (b"bXYZ", _icc_xyz(to_pcs[:, 2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    offset = 128 + 4 + 12 * len(tags)
    directory, body, placed = b"", b"", {}  # one copy of the curve for the three channels
    for signature, data in tags:
        if data not in placed:
            placed[data] = offset + len(body)
            body += data
        directory += signature + struct.pack(">II", placed[data], len(data))
    header = struct.pack(">I4sI4s4s4s12s4s", offset + len(body), bytes(4), 0x02100000, b"mntr",
                         b"RGB ", b"XYZ ", bytes(12), b"acsp")  # fmt: skip
    header += bytes(28) + _icc_numbers(_PCS_WHITE) + bytes(48)
    return header + struct.pack(">I", len(tags)) + directory + body


def _icc_tag(kind: bytes, content: bytes) -> bytes:
    data = kind + bytes(4) + content
    return data + bytes(-len(data) % 4)  # tags start on 4-byte boundaries


def _icc_numbers(values: np.ndarray) -> bytes:
    return b"".join(struct.pack(">i", round(float(v) * 65536)) for v in values)  # s15Fixed16


def _icc_xyz(values: np.ndarray) -> bytes:
    return _icc_tag(b"XYZ ", _icc_numbers(values))
