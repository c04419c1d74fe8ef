"""Cyclic garbage is collected on the GUI thread only while the app's background threads run.

Python's cyclic collector runs in whichever thread allocates when a threshold is crossed. When
that is a worker thread (a model loading, a thumbnail decoding) and the garbage holds Qt objects
(a closed window whose slots point back at it), their C++ destructors run off the GUI thread,
which Qt does not allow: the test suite died of it ("Segmentation fault ... Garbage-collecting"
inside a worker's model loading). So while any background thread runs, automatic collection is
off and a timer on the GUI thread collects instead, each generation when its threshold says so
(pyqtgraph's ``GarbageCollector`` does the same all the time). When the last thread ends,
automatic collection is back on, as the app found it.

A thread's hold is taken on the GUI thread before it starts (so not one allocation of it runs
with automatic collection on) and released as it ends, from that thread, in plain Python; the
GUI thread's next tick turns collection back on.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Slot

# How often the GUI thread looks at the collector's counts while threads run: a cycle lives at
# most this long (plus the GUI thread's busy time) past the moment Python would have freed it.
CHECK_MS = 200


class _GuiThreadCollector(QObject):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()  # a finalizer run by gc.collect() may ask `holding`
        self._holds = 0
        self._off = False  # automatic collection turned off here
        self._was_enabled = True
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    @property
    def holding(self) -> bool:
        with self._lock:
            return self._off

    def hold(self) -> None:
        with self._lock:
            if not self._off:
                self._was_enabled = gc.isenabled()
                gc.disable()
                self._off = True
            self._holds += 1

    def release(self) -> None:
        """Plain Python, from any thread: a thread that calls into Qt (a signal) while holding
        the GIL can wait on a lock of Qt's that the GUI thread holds while waiting for the GIL.
        The GUI thread's next tick turns collection back on."""
        with self._lock:
            self._holds = max(0, self._holds - 1)

    @Slot()
    def _tick(self) -> None:
        if self.holding:
            collect_due()
            self._back_on_when_alone()

    def _back_on_when_alone(self) -> None:
        """Automatic collection back on once no thread holds and no thread spdesk's core started
        is still running Python (a cancelled download's hub call ends on its own, later)."""
        with self._lock:
            if not self._off or self._holds > 0 or _core_threads_running():
                return
            # What piled up while collection was off goes now, here, rather than in whichever
            # thread next crosses a threshold.
            gc.collect()
            if self._holds > 0:  # a finalizer it ran started a thread: still off
                return
            if self._was_enabled:
                gc.enable()
            self._off = False


def _core_threads_running() -> bool:
    """Whether a Python thread the core started (each is named ``spdesk-...``) is alive."""
    return any(
        thread.name.startswith("spdesk-") and thread.is_alive() for thread in threading.enumerate()
    )


def collect_due() -> None:
    """Collect the oldest generation whose count is over its threshold, as Python would have at
    an allocation."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if thresholds[0] == 0:  # automatic collection turned off by a threshold of 0
        return
    due = [
        generation
        for generation, (count, threshold) in enumerate(zip(counts, thresholds, strict=False))
        if threshold > 0 and count > threshold
    ]
    if due:
        gc.collect(max(due))


_COLLECTOR: _GuiThreadCollector | None = None


def install() -> None:
    """Create the collector on the GUI thread; call before any background thread is started."""
    global _COLLECTOR
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        raise RuntimeError("the garbage collector guard must be installed on the GUI thread")
    if _COLLECTOR is None:
        _COLLECTOR = _GuiThreadCollector()


def hold() -> None:
    """No automatic collection from now until the matching :func:`release` (any thread)."""
    if _COLLECTOR is None:
        raise RuntimeError("spdesk.gui.garbage.install() was not called on the GUI thread")
    _COLLECTOR.hold()


def release() -> None:
    """End a :func:`hold` (any thread may call it; collection comes back on at the GUI thread's
    next tick)."""
    if _COLLECTOR is None:
        raise RuntimeError("spdesk.gui.garbage.install() was not called on the GUI thread")
    _COLLECTOR.release()


def holding() -> bool:
    """Whether automatic collection is still off for the app's background threads."""
    return _COLLECTOR is not None and _COLLECTOR.holding
