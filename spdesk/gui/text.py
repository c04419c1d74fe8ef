"""Small text helpers shared by the windows: durations and byte counts in plain words."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``35 s``, ``3 min 05 s`` or ``1 h 12 min``."""
    if seconds < 60:
        return f"{max(seconds, 0.1):.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_bytes(count: float) -> str:
    """Decimal units, as disks and download sizes are usually quoted (``2.1 GB``)."""
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            if unit == "bytes":
                return f"{value:.0f} bytes"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # unreachable: the loop returns at GB


def shorten_long_names(text: str, limit: int = 48) -> str:
    """``text`` with every run of more than ``limit`` characters that has no space, slash or
    hyphen (a long folder or file name, where a line cannot wrap) cut in the middle with "…",
    so a dialog that shows a path wraps it instead of growing off the screen."""
    head, tail = limit // 2 - 1, limit // 2
    return re.sub(rf"[^\s/\\-]{{{limit + 1},}}", lambda m: f"{m[0][:head]}…{m[0][-tail:]}", text)


def gain_text(gain: float, decimals: int = 2) -> str:
    """A measured effect in multiples of random noise's (``1.23×``). A value below 1 is
    rounded down, so one called weaker than noise never reads ``1.00×``."""
    if not math.isfinite(gain):  # no measurement to show (a division by a zero baseline)
        return "?×"
    scale = 10**decimals
    shown = math.floor(gain * scale) / scale if gain < 1 else gain
    return f"{shown:.{decimals}f}×"


FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "train": ("Training and fine-tuning", "Stable Diffusion 1.5 VAE encoder"),
    "preview": ("AI-edit preview", "Stable Diffusion 1.5 (img2img)"),
    "inpaint": ("Inpainting preview", "Stable Diffusion 1.5 inpainting"),
    "taesd": ("Fast encoder", "TAESD tiny autoencoder"),
}
"""Each downloadable feature's item in Models… and its model, as Models… and the notes that
send the user there name them."""
DOWNLOAD_SIZES = {"train": "~170 MB", "preview": "~2.1 GB", "inpaint": "~2.1 GB", "taesd": "~10 MB"}
"""What each feature downloads, roughly: shown before the user decides (the exact size is asked)."""


@dataclass(frozen=True)
class LeftOut:
    """A file or folder an added path held (or was) that is not queued, and why."""

    reason: str
    folder: bool = False  # a whole folder
    # Could not be read (or found): what it holds was not looked at, so photos may be missing
    # from the queue (a failure, listed first), not a file that is no photo (a choice).
    unreadable: bool = False
    # Its path from the folder it was added with, that folder's name first (``Trip/a/loop``):
    # by name alone, two ``loop`` links in two subfolders could not be told apart.
    shown: str = ""


def unreadable_first(left_out: Mapping[Path, LeftOut]) -> list[tuple[Path, LeftOut]]:
    """The entries in the order they are listed: what could not be read first, the rest as
    they came."""
    return sorted(left_out.items(), key=lambda item: not item[1].unreadable)  # stable


def left_out_lines(left_out: Mapping[Path, LeftOut]) -> list[str]:
    """What the scans left out, one ``path: reason`` a line, what could not be read first."""
    entries = unreadable_first(left_out)
    return [f"{entry.shown or path.name or path}: {entry.reason}" for path, entry in entries]


def left_out_text(left_out: Mapping[Path, LeftOut], limit: int = 20) -> str:
    """:func:`left_out_lines`, at most ``limit`` of them and then a count, for a tooltip."""
    lines = left_out_lines(left_out)
    if len(lines) > limit:
        lines[limit:] = [f"… and {len(lines) - limit} more (File › Files left out… lists all)"]
    return "\n".join(lines)
