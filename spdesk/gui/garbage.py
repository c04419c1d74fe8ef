"""While the app runs, Python's cyclic garbage is collected on the GUI thread only.

Python's cyclic collector runs in whichever thread allocates when a threshold is crossed. When
that is another thread and the garbage holds Qt objects (a closed window whose slots point back
at it), two things go wrong:

- their C++ destructors run off the GUI thread, which Qt does not allow: the test suite died of
  it ("Segmentation fault ... Garbage-collecting" inside a worker's model loading);
- PySide drops a dead receiver's bound-method connections from a weakref callback that walks its
  global, unlocked connection table with the GIL released, while the GUI thread, holding the
  GIL, connects (a new dialog): the table is changed under the walk and the process dies later,
  in an unrelated allocation (a QDialog's constructor, in one test run). A standalone script
  crashed 3 runs of 3 so; the same work on one thread never did.

Any Python thread can be that thread, not only the app's own: tqdm's monitor (started by a model
download, it lives for good), a library's pool, a test's HTTP server. So from :func:`install`
(the first window or background task) automatic collection is off, and a timer on the GUI thread
collects instead, each generation when its threshold says so (pyqtgraph's ``GarbageCollector``
does the same). Code that wants a full collection now from another thread (freeing a preview's
pipelines) asks for it with :func:`collect_soon`. :func:`uninstall` gives automatic collection
back as the app found it (tests, which go on without an event loop).
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Slot

# How often the GUI thread looks at the collector's counts: a cycle lives at most this long
# (plus the GUI thread's busy time) past the moment Python would have freed it.
CHECK_MS = 200


class _GuiThreadCollector(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.was_enabled = gc.isenabled()
        gc.disable()
        self._full_due = threading.Event()  # a full collection asked for from another thread
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def collect_soon(self) -> None:
        self._full_due.set()

    @Slot()
    def _tick(self) -> None:
        if self._full_due.is_set():
            self._full_due.clear()
            gc.collect()
        else:
            collect_due()

    def stop(self) -> None:
        self._timer.stop()


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


def _on_gui_thread(what: str) -> None:
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        raise RuntimeError(f"the garbage collector guard must be {what} on the GUI thread")


def install() -> None:
    """From now on, cyclic garbage is collected on the GUI thread only (idempotent; call it
    before any background thread starts: the app does at start, every task runner and photo
    queue as it is made)."""
    global _COLLECTOR
    _on_gui_thread("installed")
    if _COLLECTOR is None:
        _COLLECTOR = _GuiThreadCollector()


def uninstall() -> None:
    """Collect what is left, here, and give automatic collection back as the app found it."""
    global _COLLECTOR
    if _COLLECTOR is None:
        return
    _on_gui_thread("uninstalled")
    collector, _COLLECTOR = _COLLECTOR, None
    collector.stop()
    gc.collect()
    if collector.was_enabled:
        gc.enable()


def installed() -> bool:
    """Whether the GUI thread is the one that collects."""
    return _COLLECTOR is not None


def collect_soon() -> None:
    """A full collection on the GUI thread at its next tick (plain Python: any thread may ask;
    without the guard, as on the command line, nothing happens)."""
    if _COLLECTOR is not None:
        _COLLECTOR.collect_soon()
