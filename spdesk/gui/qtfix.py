"""A guard against a PySide6 bug that would abort a busy window (see :func:`guard_none_leak`)."""

from __future__ import annotations

import logging
import sys

_guarded = False
EXTRA_REFS = 1 << 40  # more Qt calls and signal emissions than any session makes
_PROBES = 100


def _leaks() -> bool:
    """True when void Qt calls drop a reference to None, or emit() one to True."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    probe.ping.connect(lambda: None)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(_PROBES):
        probe.setObjectName("probe")  # a void method
        probe.ping.emit()  # returns True
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    return max(lost_none, lost_true) >= _PROBES // 2


def guard_none_leak() -> bool:
    """Work around PySide6 builds that drop references to ``None`` and ``True`` on every call.

    PySide6 6.12.0 on Python 3.11 decrements None's reference count each time a Qt method that
    returns nothing is called, and True's each time a signal is emitted. These objects are not
    immortal before Python 3.12, so a busy window aborts ("none_dealloc" / "bool_dealloc") after
    some thousands of calls. When the leak is measured here, the counts of None, True and False
    are raised once, so that they outlive any session (references that are never released: a
    list of them would drop them all again at exit), and the log says to change PySide6.
    Returns True when the leak was found.
    """
    global _guarded
    if sys.version_info >= (3, 12) or _guarded:
        return _guarded
    if not _leaks():
        return False
    import ctypes

    for immortal in (None, True, False):
        ctypes.c_ssize_t.from_address(id(immortal)).value += EXTRA_REFS  # ob_refcnt is first
    _guarded = True
    logging.getLogger("spdesk.gui").warning(
        "This PySide6 build leaks references to None and True (6.12.0 with Python 3.11); "
        "install another PySide6-Essentials version (e.g. 6.11.3) or use Python 3.12 or newer."
    )
    return True
