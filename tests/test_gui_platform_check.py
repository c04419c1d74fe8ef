"""The window's start-up check names the missing system libraries and their packages."""

from __future__ import annotations

import sys

import pytest

from spdesk.gui.platform_check import install_hint, missing_libraries, platform_problem

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-cursor.so.0 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)
"""


def test_missing_libraries_are_read_from_ldd_once_each() -> None:
    assert missing_libraries(LDD) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]


def test_the_hint_names_the_debian_packages_to_install() -> None:
    text = install_hint(["libxcb-cursor.so.0", "libxcb-icccm.so.4"])
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4" in text
    assert "libxcb-cursor.so.0" in text and "spdesk --help" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check is for Linux")
def test_no_display_is_said_plainly_and_offscreen_is_left_alone() -> None:
    assert "DISPLAY is not set" in platform_problem({})
    assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}) == ""
    assert platform_problem({"WAYLAND_DISPLAY": "wayland-0"}) == ""
