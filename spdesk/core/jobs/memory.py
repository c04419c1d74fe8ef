"""The memory a job's photos may hold at once: a budget, and what one photo needs of it.

Photos are admitted to the worker pool by what they need once decoded, estimated from the file's
header before a pixel is decoded (:func:`spdesk.core.imageio.read_header`), so that several
large photos in parallel never hold more than the budget. The default budget is half the memory
available when the job starts (the other half is left to the models, the app and the rest of
the system); ``spdesk protect --memory-budget`` or ``ProtectSettings.memory_budget`` set it.

Decisions:
- A photo that needs more than the whole budget runs alone (when nothing else is in flight):
  the budget bounds parallelism, it is not a second pixel limit that changes with the memory
  free at the moment. ``max_pixels`` stays the limit of what is decoded at all.
- A photo that needs more than this computer's physical memory cannot be protected here at
  all: it is refused before decoding, with a plain :class:`ImageTooLargeError`, and the job
  goes on (only possible when ``max_pixels`` was raised above its default).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from spdesk.core.errors import ConfigError, ImageTooLargeError
from spdesk.core.files import shown
from spdesk.core.imageio import PhotoHeader

# A decoded photo is held as 8-bit RGB(A), 4 bytes a pixel in Pillow. Besides it, protecting and
# writing it hold the full-size pattern canvas, the protected copy, the difference the figures
# come from and the re-decoded output (measured peak over the process's base, 24 MP PNG: 4.3
# such copies in all for universal mode, 3.6 for photo-specific; benchmarks/bench_memory.py).
COPIES = 4.5
RGBA_BYTES = 4
AUTO_SHARE = 0.5  # of the memory available at the start of a job
FALLBACK_BUDGET = 2 << 30  # when the system does not say how much memory is available
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def source_bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel of Pillow ``mode`` takes in memory (Pillow pads 3 channels to 4)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def photo_need(header: PhotoHeader) -> int:
    """Bytes one photo holds while it is read, protected and written (see :data:`COPIES`).

    A file that decodes to anything but 8-bit RGB(A) is held in its own mode too while it is
    converted.
    """
    converted = 0 if header.mode in ("RGB", "RGBA") else source_bytes_per_pixel(header.mode)
    return int(header.pixels * (converted + COPIES * RGBA_BYTES))


def parse_size(text: str) -> int:
    """Bytes from ``"4G"``, ``"1500M"``, ``"512MiB"`` or a plain number of bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ConfigError(
            f"Cannot read {text!r} as an amount of memory.",
            hint="Write it like 4G, 1500M or 512MiB.",
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human_bytes(count: int) -> str:
    return f"{count / (1 << 30):.1f} GB" if count >= 1 << 30 else f"{count / (1 << 20):.0f} MB"


# --- what the system has ----------------------------------------------------------------------
def _meminfo(field: str, path: Path = Path("/proc/meminfo")) -> int | None:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        text = path.read_text(encoding="ascii", errors="replace")
        line = next(row for row in text.splitlines() if row.startswith(field + ":"))
        return int(line.split()[1]) * 1024  # kB
    return None


def _cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What a cgroup v2 memory limit (a container) leaves to this process, if there is one."""
    with contextlib.suppress(OSError, ValueError):
        limit = (root / "memory.max").read_text().strip()
        if limit != "max":
            return max(0, int(limit) - int((root / "memory.current").read_text()))
    return None


def _sysconf(name: str) -> int | None:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        value = os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
        return value if value > 0 else None
    return None


def _windows_memory() -> tuple[int, int] | None:
    """(physical, available) bytes on Windows, from GlobalMemoryStatusEx."""
    if sys.platform != "win32":
        return None
    import ctypes

    class _Status(ctypes.Structure):
        _fields_ = [
            ("length", ctypes.c_ulong),
            ("load", ctypes.c_ulong),
            ("total", ctypes.c_ulonglong),
            ("available", ctypes.c_ulonglong),
            ("rest", ctypes.c_ulonglong * 5),
        ]

    status = _Status()
    status.length = ctypes.sizeof(_Status)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.total), int(status.available)


def physical_memory() -> int | None:
    """This computer's memory in bytes (None when the system does not say)."""
    windows = _windows_memory()
    return windows[0] if windows else _meminfo("MemTotal") or _sysconf("SC_PHYS_PAGES")


def available_memory() -> int | None:
    """Memory that can be used now without swapping, in bytes (page cache counts as free);
    within a container's limit; None when the system does not say."""
    windows = _windows_memory()
    if windows:
        return windows[1]
    system = _meminfo("MemAvailable") or _sysconf("SC_AVPHYS_PAGES")
    known = [m for m in (system, _cgroup_room()) if m is not None]
    return min(known) if known else None


def default_budget(available: int | None = None) -> int:
    """Half the memory available now (:data:`FALLBACK_BUDGET` when unknown)."""
    available = available if available is not None else available_memory()
    return int(available * AUTO_SHARE) if available else FALLBACK_BUDGET


# --- the budget -------------------------------------------------------------------------------
class MemoryBudget:
    """Bytes held by the photos in flight, against a limit; thread-safe.

    The job's thread asks :meth:`fits` before it hands a photo to the pool and :meth:`take`s
    its need; the worker :meth:`give`s it back once the photo's pixels are freed. ``peak`` is
    the most ever held at once.

    Args:
        limit: the budget in bytes.
        ceiling: the computer's memory; a photo needing more is refused (None: unknown).
    """

    def __init__(self, limit: int, ceiling: int | None = None) -> None:
        self.limit = limit
        self.ceiling = ceiling
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    @classmethod
    def for_job(cls, limit: int | None) -> MemoryBudget:
        """The budget of a job: ``limit`` bytes, or the default (None)."""
        return cls(limit if limit is not None else default_budget(), physical_memory())

    def fits(self, need: int) -> bool:
        """Whether ``need`` more bytes may be taken now; always when nothing is held (a photo
        larger than the whole budget runs alone)."""
        with self._lock:
            return self.held == 0 or self.held + need <= self.limit

    def take(self, need: int) -> None:
        with self._lock:
            self.held += need
            self.peak = max(self.peak, self.held)

    def give(self, need: int) -> None:
        with self._lock:
            self.held -= need

    def refusal(self, path: Path, header: PhotoHeader, need: int) -> ImageTooLargeError | None:
        """The error for a photo that cannot be protected on this computer at all, or None."""
        if self.ceiling is None or need <= self.ceiling:
            return None
        return ImageTooLargeError(
            f"{shown(path.name)} ({header.width}x{header.height}, {header.pixels / 1e6:.0f} MP) "
            f"needs about {human_bytes(need)} of memory to protect, more than this computer has "
            f"({human_bytes(self.ceiling)}). It was not decoded.",
            hint="Reduce the photo's size in an editor, or protect it on a computer with more "
            "memory.",
        )


class HeapTrimmer:
    """Hands the memory freed photos leave behind back to the system, at most every
    ``every_s`` seconds (glibc only; elsewhere it does nothing).

    glibc keeps what a photo's decode, protection and encode freed in its heaps, for the next
    allocation; with photos of many sizes in several threads that reuse is poor, and a job's
    resident memory kept growing although nothing leaked: the app at 1.95 GB after 10,000
    ImageNet photos; in a command-line job, 0.86 GB after 1,500, which ``malloc_trim`` brought
    back to 0.43 GB, while Python's own allocations stayed at 114 MB (``tracemalloc``). With
    these trims, ``spdesk protect`` on 2,000 ImageNet photos peaked at 0.72 GB instead of
    1.03 GB (``/usr/bin/time``; 282 s against 270 s, with other work on the cores), and the app
    on the 10,000 photos at 1.24 GB, flat from the 4,300th. On the 1000 ImageNet photos the 21
    trims took 0.92 s of a 110 s job, on the job's thread (ctypes lets the workers run on);
    four alternating runs with and without them took 122 and 116 s against 106 and 118 s. Dask
    trims its workers' heaps for the same reason.
    """

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last = time.monotonic()
        self._trim = _malloc_trim()

    def __call__(self) -> None:
        if self._trim is None or time.monotonic() - self._last < self.every_s:
            return
        self._trim(0)
        self._last = time.monotonic()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim
