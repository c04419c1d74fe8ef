"""Why Qt's window could not open on this Linux desktop, said before Qt aborts (exit 134) with a
message few people can act on.

Run before the QApplication exists: it only reads the environment and runs ``ldd`` on the xcb
platform plugin that PySide6 ships, mapping each missing library to its Debian/Ubuntu package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Libraries the xcb plugin needs that minimal desktops lack, by soname -> Debian/Ubuntu package.
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", in order, once each."""
    found: list[str] = []
    for line in ldd_output.splitlines():
        name, _, target = line.strip().partition("=>")
        if target.strip() == "not found" and name.strip() not in found:
            found.append(name.strip())
    return found


def install_hint(sonames: list[str]) -> str:
    """What to tell the user about ``sonames``, with the command that installs them."""
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in sonames})
    return (
        "spdesk's window cannot open: these system libraries are missing: "
        f"{', '.join(sonames)}.\n"
        f"On Debian or Ubuntu: sudo apt-get install {' '.join(packages)}\n"
        "(other systems: install the packages that provide them). "
        "The command line works without them: spdesk --help"
    )


def _xcb_plugin() -> Path | None:
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def platform_problem(environ: dict[str, str] | None = None) -> str:
    """Why the window cannot open here ("" when it can, or when nothing can be told)."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return ""
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen and not chosen.startswith("xcb"):
        return ""  # offscreen, wayland, vnc...: the user chose; Qt reports its own problems
    if not chosen and env.get("WAYLAND_DISPLAY"):
        return ""  # Qt picks its wayland plugin there
    if not env.get("DISPLAY"):
        return (
            "spdesk's window needs a desktop session, and none was found (DISPLAY is not "
            "set). The command line works without one: spdesk --help"
        )
    plugin, ldd = _xcb_plugin(), shutil.which("ldd")
    if plugin is None or ldd is None:
        return ""
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    missing = missing_libraries(out.stdout)
    return install_hint(missing) if missing else ""
