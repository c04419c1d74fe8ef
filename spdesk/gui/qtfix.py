"""A guard against a PySide6 bug that would abort a busy window (see :func:`guard_none_leak`)."""

from __future__ import annotations

import logging
import sys

_none_guarded = False
EXTRA_NONE_REFS = 1 << 40  # more void calls than any session makes


def guard_none_leak() -> bool:
    """Work around PySide6 builds that drop a reference to ``None`` on every void call.

    PySide6 6.12.0 on Python 3.11 decrements None's reference count each time a Qt method that
    returns nothing is called; None is not immortal before Python 3.12, so a busy window aborts
    with "none_dealloc" after some thousands of calls. When the leak is measured here, None's
    count is raised once, so that it outlives any session (references that are never released:
    a list of them would drop them all again at exit), and the log says to change PySide6.
    Returns True when the leak was found.
    """
    global _none_guarded
    if sys.version_info >= (3, 12) or _none_guarded:
        return _none_guarded
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(100):
        probe.setObjectName("probe")  # a void method
    if before - sys.getrefcount(None) < 50:
        return False
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += EXTRA_NONE_REFS  # ob_refcnt comes first
    _none_guarded = True
    logging.getLogger("spdesk.gui").warning(
        "This PySide6 build leaks references to None (6.12.0 with Python 3.11); install "
        "another PySide6-Essentials version (e.g. 6.11.3) or use Python 3.12 or newer."
    )
    return True
