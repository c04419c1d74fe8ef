"""Colour conversions to 8-bit RGB(A): 16-bit scaling, CMYK and greyscale profiles to sRGB.

Every photo spdesk protects reaches the perturbation as RGB or RGBA; :func:`to_rgb` converts
whatever mode the decoder gave, with plain-language notes on what changed.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageCms

from spdesk.core.errors import UnsupportedImageError

GREY_MODES = ("L", "LA", "1", "La")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def rgb_image(array: np.ndarray) -> Image.Image:
    """A uint8 (H, W, 3) array as an RGB image. Pillow infers the mode from the array's
    shape and type (passing ``mode=`` warns on Pillow 11.3), so the shape is checked here."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def is_plain_grey(mode: str, icc: bytes | None) -> bool:
    """Whether a photo decoded in Pillow ``mode`` holds grey pixels with no greyscale colour
    profile: :func:`to_rgb` makes it RGB only so that it can be protected, and its protected
    copy may be written grey again. (A greyscale profile is converted to sRGB, whose greys are
    not the file's values.)"""
    grey = mode in GREY_MODES or mode in SIXTEEN_BIT_MODES
    return grey and not (icc and _icc_space(icc) == "GRAY")


def is_grey(image: Image.Image) -> bool:
    """Whether every pixel of an RGB or RGBA image has R = G = B. A few rows are looked at
    first, so a colour photo costs next to nothing (3 ms at 24 MP); a grey one costs two
    comparisons of its channels."""
    width, height = image.size
    for y in sorted({0, height // 3, height // 2, 2 * height // 3, height - 1}):
        row = np.asarray(image.crop((0, y, width, y + 1)))
        if not ((row[..., 0] == row[..., 1]).all() and (row[..., 1] == row[..., 2]).all()):
            return False
    red, green, blue = image.split()[:3]
    same = ImageChops.difference(red, green).getbbox() is None
    return same and ImageChops.difference(green, blue).getbbox() is None


def to_rgb(
    path: Path, image: Image.Image, icc: bytes | None, bit_depth: int, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    """``image`` (decoded from ``path``) as RGB or RGBA, and the ICC profile that describes it.

    ``notes`` gets a line for each visible change; modes spdesk cannot protect raise
    :class:`UnsupportedImageError` naming the file.
    """
    mode = image.mode
    if mode == "F" or (mode in SIXTEEN_BIT_MODES and bit_depth > 16):
        kind = "floating-point" if mode == "F" else f"{bit_depth}-bit integer"
        raise UnsupportedImageError(
            f"{path.name} holds {kind} (HDR/scientific) pixels; spdesk protects 8- and "
            "16-bit photos.",
            hint="Export it as an 8- or 16-bit TIFF, PNG or JPEG first.",
        )
    if mode in SIXTEEN_BIT_MODES:
        image = _with_keyed_alpha(_scale_16bit(image, bit_depth), image)
        mode = image.mode
    space = _icc_space(icc)
    if mode == "CMYK":
        return _cmyk_to_srgb(path, image, icc if space == "CMYK" else None, notes)
    alpha = image.has_transparency_data
    target = "RGBA" if alpha else "RGB"
    if mode in GREY_MODES and space == "GRAY" and icc:
        return _grey_profile_to_srgb(image, icc, target, notes)
    if mode in GREY_MODES:  # the export writes grey again if the protection left it grey
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
    values = np.asarray(image).astype(np.int64)  # mode "I" is signed: clipped, not wrapped
    top = 65535 if bit_depth >= 16 or int(values.max(initial=0)) > 255 else 255
    scaled = (np.clip(values, 0, top) * 255 + top // 2) // top
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))  # uint8 (H, W): "L"


def _with_keyed_alpha(scaled: Image.Image, original: Image.Image) -> Image.Image:
    """``scaled`` (the 16-bit ``original`` as 8-bit grey) with the original's transparent
    colour (a PNG tRNS key) as an alpha channel: the new image had no key, and the copy came
    out opaque."""
    key = original.info.get("transparency")
    if not isinstance(key, int):
        return scaled
    opaque = np.asarray(original).astype(np.int64) != key
    alpha = Image.fromarray(np.where(opaque, 255, 0).astype(np.uint8))
    return Image.merge("LA", (scaled, alpha))


def _icc_space(icc: bytes | None) -> str | None:
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return "damaged"
    return str(profile.profile.xcolor_space).strip() or None


@functools.cache
def _srgb_bytes() -> bytes:
    """The sRGB profile embedded in converted outputs. lcms stamps a profile with the time it
    was made (header bytes 24-35), which made the same photo's output differ from run to run;
    the stamp and the profile ID that covers it (bytes 84-99; zero = "not computed", as the ICC
    specification allows) are cleared, so outputs are byte-identical across runs."""
    raw = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    raw[24:36] = bytes(12)
    raw[84:100] = bytes(16)
    return bytes(raw)


# Press profiles found on common systems: what viewers assume for CMYK without a profile.
_STANDARD_CMYK = (
    Path("/usr/share/color/icc/ghostscript/default_cmyk.icc"),
    Path("/usr/share/color/icc/colord/FOGRA39L_coated.icc"),
    Path("/System/Library/ColorSync/Profiles/Generic CMYK Profile.icc"),
    Path("C:/Windows/System32/spool/drivers/color/RSWOP.icm"),
)


def _cmyk_to_srgb(
    path: Path, image: Image.Image, icc: bytes | None, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    if icc is None:
        return _unprofiled_cmyk(path, image, notes)
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


def _unprofiled_cmyk(
    path: Path, image: Image.Image, notes: list[str]
) -> tuple[Image.Image, bytes | None]:
    """CMYK without a profile, shown as browsers and editors show it: through a standard press
    profile where the system has one, else by the plain formula (255 - ink)."""
    for profile in _STANDARD_CMYK:
        try:
            converted = ImageCms.profileToProfile(
                image,
                ImageCms.ImageCmsProfile(str(profile)),
                ImageCms.createProfile("sRGB"),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
        except (OSError, ImageCms.PyCMSError):
            continue
        if converted is not None:
            notes.append(
                f"CMYK without a colour profile: converted to sRGB with the standard press "
                f"profile {profile.name}"
            )
            return converted, _srgb_bytes()
    notes.append(
        "CMYK without a colour profile: converted with the plain formula (no press profile "
        "on this system; screen colours may differ a little)"
    )
    return image.convert("RGB"), None


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
