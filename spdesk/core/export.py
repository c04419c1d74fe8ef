"""Writing protected photos: output names, encoder settings, metadata, atomic writes.

Every output is written to a temporary file in its destination folder, flushed and fsync'ed,
then renamed into place, so a crash, a full disk or a cancellation never leaves a partial photo
under a real name. Without ``replace`` the rename is a hard link, which fails rather than
clobbering a file that appeared meanwhile. Outputs are named ``STEM<suffix>.EXT``
(``IMG_0001.protected.jpg``), so an original is never a possible target.

Compression erases perturbations: JPEG defaults to quality 95 with full-resolution colour
(4:4:4), and settings that weaken the protection come with a warning.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image, PngImagePlugin

from spdesk.core.errors import (
    ConfigError,
    DiskFullError,
    OutputError,
    OutputExistsError,
    OutputPermissionError,
)
from spdesk.core.imageio import DecodedImage, format_label

DEFAULT_SUFFIX = ".protected"
DEFAULT_QUALITY = 95
LOW_QUALITY = 90  # below this JPEG/WebP compression visibly erodes the protection
TEMP_SUFFIX = ".spdesk-tmp"
STRIP_CHOICES = ("none", "gps", "all")
COLLISIONS = ("skip", "unique", "overwrite")

# User-facing format choices -> Pillow format names.
FORMAT_CHOICES = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp", ".dib"),
}
# Sources whose own format spdesk does not write: GIF is 256 colours (it would erase the
# perturbation), HEIC/MPO encoders are not available everywhere.
_WRITE_INSTEAD = {"GIF": "PNG", "HEIF": "JPEG", "MPO": "JPEG"}
_TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits"}
_GPS_IFD = 0x8825


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_FILE_MODE = 0o666 & ~_umask()  # mkstemp makes 0600 files; outputs get the usual permissions


@dataclass(frozen=True)
class ExportOptions:
    """How protected photos are written.

    Attributes:
        format: Pillow format name ("JPEG", "PNG", "WEBP", "TIFF"), or None to keep the
            source's format.
        quality: JPEG/WebP quality, 1..100 (95 by default; below 90 weakens the protection;
            WebP 100 is lossless).
        strip_metadata: "none" keeps EXIF, XMP and the ICC profile; "gps" removes the location
            (EXIF GPS, and XMP, which can repeat it); "all" removes EXIF and XMP. The ICC profile
            is always kept: without it colours would change.
        suffix: added to each output's file stem (".protected").
        png_compress_level: zlib level for PNG, 0..9.
    """

    format: str | None = None
    quality: int = DEFAULT_QUALITY
    strip_metadata: str = "none"
    suffix: str = DEFAULT_SUFFIX
    png_compress_level: int = 6

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in _EXTENSIONS:
            raise ConfigError(f"Unknown output format {self.format!r}.")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"Quality must be between 1 and 100, got {self.quality}.")
        if self.strip_metadata not in STRIP_CHOICES:
            raise ConfigError(
                f"Unknown metadata option {self.strip_metadata!r}: use gps or all "
                "(or none to keep everything)."
            )
        check_suffix(self.suffix)


def check_suffix(suffix: str) -> None:
    """Refuse suffixes that could make an output's name equal to an original's."""
    if not suffix or suffix.strip(" .") == "" or any(c in suffix for c in "/\\\0"):
        raise ConfigError(
            f"The output name suffix {suffix!r} is not usable: it must contain letters or "
            "digits (for example .protected), so outputs never take an original's name."
        )


def parse_format(value: str | None) -> str | None:
    """A user's format choice ("png", "jpeg", "webp", "tiff", "same"/None) as a Pillow name."""
    if value is None or value.lower() in ("", "same", "original"):
        return None
    try:
        return FORMAT_CHOICES[value.lower()]
    except KeyError:
        raise ConfigError(
            f"Unknown output format {value!r}: use png, jpeg, webp or tiff (or leave it out to "
            "keep each photo's format)."
        ) from None


def settings_warnings(options: ExportOptions) -> list[str]:
    """Warnings about settings that weaken the protection, shown once per job."""
    warnings: list[str] = []
    if options.format in ("JPEG", None) and options.quality < LOW_QUALITY:
        warnings.append(
            f"JPEG quality {options.quality} is below {LOW_QUALITY}: strong compression erases "
            "much of the protection. Use 95 (the default) or PNG."
        )
    if options.format == "WEBP" and options.quality < 100:
        warnings.append(
            "Lossy WebP halves the colour resolution, which weakens the protection; "
            "--quality 100 writes lossless WebP."
        )
    return warnings


def output_format(source_format: str, options: ExportOptions) -> str:
    """The Pillow format an output is written in."""
    if options.format is not None:
        return options.format
    return _WRITE_INSTEAD.get(source_format, source_format)


def output_name(source_name: str, fmt: str, suffix: str) -> str:
    """``IMG_0001.JPG`` -> ``IMG_0001.protected.JPG``; the extension follows the real format."""
    path = Path(source_name)
    extensions = _EXTENSIONS[fmt]
    ext = path.suffix if path.suffix.lower() in extensions else extensions[0]
    stem = path.stem if path.suffix else path.name
    return f"{stem}{suffix}{ext}"


def output_name_pattern(suffix: str) -> re.Pattern[str]:
    """Matches file names spdesk writes with ``suffix`` (including unique ``-2`` variants)."""
    extensions = "|".join(re.escape(e) for exts in _EXTENSIONS.values() for e in exts)
    return re.compile(rf".*{re.escape(suffix)}(-\d+)?({extensions})", re.IGNORECASE)


def unique_candidates(target: Path) -> Iterator[Path]:
    """``X.protected.jpg``, then ``X.protected-2.jpg``, ``-3``, ... (free names are not
    checked here: publishing refuses taken ones)."""
    yield target
    for number in range(2, 100_000):
        yield target.with_name(f"{target.stem}-{number}{target.suffix}")


@dataclass
class Encoded:
    """What to hand to Pillow: the image in a mode the format holds and its save arguments."""

    image: Image.Image
    format: str
    params: dict[str, Any]
    notes: list[str]


def prepare(
    decoded: DecodedImage, protected: Image.Image, fmt: str, options: ExportOptions
) -> Encoded:
    """Encoder settings and metadata for writing ``protected`` (a protected ``decoded``)."""
    notes: list[str] = []
    image = protected
    if image.mode == "RGBA" and fmt == "JPEG":
        image = _flatten(image)
        notes.append("transparency flattened onto white (JPEG cannot hold it)")
    if decoded.source_format != fmt and options.format is None:
        notes.append(f"{format_label(decoded.source_format)} saved as {format_label(fmt)}")
    params = _format_params(decoded, fmt, options, notes)
    params.update(_metadata_params(decoded, fmt, options, notes))
    return Encoded(image, fmt, params, notes)


def _flatten(image: Image.Image) -> Image.Image:
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def _format_params(
    decoded: DecodedImage, fmt: str, options: ExportOptions, notes: list[str]
) -> dict[str, Any]:
    if fmt == "JPEG":
        # subsampling=0 is 4:4:4: the default 4:2:0 halves colour detail, and the pattern with it.
        return {"quality": options.quality, "subsampling": 0}
    if fmt == "WEBP":
        if options.quality >= 100:
            return {"lossless": True, "quality": 100}
        return {"quality": options.quality}
    if fmt == "PNG":
        return {"compress_level": options.png_compress_level}
    if fmt == "TIFF":
        source = decoded.tiff_compression
        if source in _TIFF_COMPRESSIONS:
            return {"compression": source}
        if source:
            notes.append(f"TIFF compression {source} replaced by lossless LZW")
        return {"compression": "tiff_lzw"}
    return {}


def _metadata_params(
    decoded: DecodedImage, fmt: str, options: ExportOptions, notes: list[str]
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if fmt == "BMP":
        return params
    if decoded.icc_profile:
        params["icc_profile"] = decoded.icc_profile
    if decoded.dpi and fmt in ("JPEG", "PNG", "TIFF"):
        params["dpi"] = decoded.dpi
    exif = _exif_bytes(decoded, options.strip_metadata, notes)
    if exif:
        params["exif"] = exif
    if decoded.xmp and options.strip_metadata == "none":
        xmp = decoded.xmp if isinstance(decoded.xmp, bytes) else str(decoded.xmp).encode()
        if fmt in ("JPEG", "WEBP"):
            params["xmp"] = xmp
        elif fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
            params["pnginfo"] = info
    elif decoded.xmp and options.strip_metadata == "gps":
        notes.append("XMP metadata removed (it can repeat the location)")
    return params


def _exif_bytes(decoded: DecodedImage, strip: str, notes: list[str]) -> bytes | None:
    exif = decoded.exif
    if exif is None or strip == "all":
        return None
    try:
        if strip == "gps" and _GPS_IFD in exif:
            del exif[_GPS_IFD]
        data = exif.tobytes()
    except Exception:  # malformed EXIF can fail in many ways; the photo matters more
        notes.append("the EXIF data could not be copied (it is malformed)")
        return None
    return bytes(data) if len(data) > 8 else None


# --- atomic writes -----------------------------------------------------------------------------
def atomic_save(
    encoded: Encoded,
    target: Path,
    *,
    replace: bool = False,
    before_publish: Callable[[], None] | None = None,
) -> int:
    """Write ``encoded`` to ``target`` atomically; returns the size in bytes.

    :func:`write_temp` then :func:`publish`: the image is encoded into a temporary file beside
    ``target``, flushed and fsync'ed, then given its name.

    Args:
        encoded: the image and its save arguments (see :func:`prepare`).
        target: the final path; its folder is created if needed.
        replace: replace an existing ``target`` (the "overwrite" collision policy); otherwise a
            taken name raises :class:`OutputExistsError` and nothing is replaced.
        before_publish: called between the complete temp file and the rename; whatever it
            raises (a cancellation) leaves no file behind.

    Raises:
        DiskFullError, OutputPermissionError, OutputExistsError, OutputError: naming the file;
        the temporary file is always removed.
    """
    temp, size = write_temp(encoded, target)
    try:
        if before_publish is not None:
            before_publish()
        publish(temp, target, replace=replace)
    finally:
        temp.unlink(missing_ok=True)
    return size


def write_temp(encoded: Encoded, target: Path) -> tuple[Path, int]:
    """Encode ``encoded`` into a complete, fsync'ed temporary file beside ``target``.

    Returns the temporary file (hidden, removed by :func:`clean_stale_temps` if a killed job
    leaves it) and its size. On any failure nothing is left behind.
    """
    folder = target.parent
    _make_folder(folder, target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as error:
        raise output_error(error, target) from error
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write_image(encoded, handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.chmod(temp, _FILE_MODE)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise output_error(error, target) from error
    except (ValueError, KeyError, TypeError) as error:  # Pillow encoder refusals
        temp.unlink(missing_ok=True)
        raise OutputError(f"Could not encode {target.name}: {error}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, size


def publish(temp: Path, target: Path, *, replace: bool = False) -> None:
    """Give a complete temporary file from :func:`write_temp` its final name, atomically.

    Never replaces an existing ``target`` unless ``replace``: a taken name raises
    :class:`OutputExistsError` and keeps ``temp`` (to publish under another name). Otherwise
    ``temp`` is gone afterwards, published or not.
    """
    try:
        # The rename itself is not fsync'ed: after a power cut it may be lost, which leaves the
        # complete temp file; the next run removes it and protects the photo again.
        _publish(temp, target, replace)
    except OutputExistsError:
        raise
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise output_error(error, target) from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    temp.unlink(missing_ok=True)  # after a hard link, the temporary name remains


def write_image(encoded: Encoded, handle: IO[bytes]) -> None:
    """Encode into an open file (a separate function so tests can simulate a full disk)."""
    encoded.image.save(handle, format=encoded.format, **encoded.params)


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise OutputError(
            f"Cannot create the folder {folder} for {target.name}: a file has that name.",
            hint="Rename or move that file, or choose another output folder.",
        ) from error
    except OSError as error:
        raise output_error(error, target) from error


def _publish(temp: Path, target: Path, replace: bool) -> None:
    if replace:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # atomic and never clobbers
        return
    except FileExistsError:
        raise OutputExistsError(f"{target} already exists.") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    # Hard links unsupported (FAT, some network shares): check, then rename.
    if target.exists() or target.is_symlink():
        raise OutputExistsError(f"{target} already exists.")
    os.rename(temp, target)


def output_error(error: OSError, target: Path) -> OutputError:
    """A named, actionable error for an OSError met while writing ``target``."""
    code = error.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(
            f"The disk is full: {target.name} could not be written to {target.parent}.",
            hint="Free some space, or choose an output folder on another disk, then run the "
            "same job again: finished photos are kept and skipped.",
        )
    if isinstance(error, PermissionError) or code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputPermissionError(
            f"Cannot write {target.name}: the folder {target.parent} is read-only or you do "
            "not have permission to write there.",
            hint="Choose an output folder you can write to, or change that folder's permissions.",
        )
    if code == errno.ENAMETOOLONG:
        return OutputError(
            f"Cannot write {target}: the name or path is too long for this disk.",
            hint="Choose a shorter output folder path or a shorter suffix.",
        )
    return OutputError(f"Could not write {target}: {error.strerror or error}.")


def clean_stale_temps(root: Path) -> list[Path]:
    """Remove temporary files a killed job left under ``root``; returns what was removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
