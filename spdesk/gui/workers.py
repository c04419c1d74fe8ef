"""Background work for the app: one generic worker, a QObject moved to a QThread.

The worker runs a core callable ``fn(on_event, cancel) -> result`` off the GUI thread and turns
what happens into signals: every core event, the result, a readable error, or "cancelled".
Nothing heavy (torch, diffusers) is imported here; the callable imports what it needs when it runs,
in the worker thread, so the window shows at once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from spdesk.core.errors import Cancelled, SpdeskError
from spdesk.core.events import CancelToken, Event
from spdesk.gui import garbage

log = logging.getLogger(__name__)

Task = Callable[[Callable[[Event], None], CancelToken], Any]
"""A core call: receives an event sink and a cancel token, returns its result."""


class Worker(QObject):
    """Runs one :data:`Task` when ``run`` is invoked in its thread; reports through signals only."""

    core_event = Signal(object)  # a core Event, as it happens
    succeeded = Signal(object)  # the task's return value
    failed = Signal(str)  # plain text for the user (the traceback goes to the log file)
    cancelled = Signal()
    done = Signal()  # always last, whatever the outcome

    def __init__(self, task: Task, cancel: CancelToken) -> None:
        super().__init__()
        self._task = task
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        try:
            result = self._task(self.core_event.emit, self._cancel)
        except Cancelled:
            self.cancelled.emit()
        except SpdeskError as error:
            log.info("task failed: %s", error.user_text())
            self.failed.emit(error.user_text())
        except Exception as error:  # any bug: readable text for the user, traceback to the log
            log.exception("unexpected error in a background task")
            self.failed.emit(f"Something went wrong: {error}\nDetails are in the log file.")
        else:
            self.succeeded.emit(result)
        finally:
            self.done.emit()


# Threads and workers still running, kept alive here rather than only by their runner: a dialog
# closed during a task must not destroy a running QThread (Qt aborts the process) or the worker
# whose run() is executing. Finished ones are dropped at the next start.
_LIVE: dict[QThread, Worker] = {}
# Threads of tasks let go (no runner deletes them) and workers whose thread ended before they
# could be deleted with it (kept, not garbage collected).
_LET_GO: set[QThread] = set()
_ENDED_WORKERS: list[Worker] = []

# How long a closing window waits for its cancelled task before letting it go: long enough for a
# task that checks its cancel token often (every download chunk, every step) to end cleanly.
STOP_WAIT_MS = 1_000


def _forget_finished_threads() -> None:
    for thread in list(_LIVE):
        try:
            finished = thread.isFinished()
        except RuntimeError:  # its C++ object is already gone
            finished = True
        if finished:
            worker = _LIVE.pop(thread)
            if thread not in _LET_GO:
                continue  # its runner deletes it (its finished slot may not have run yet)
            _LET_GO.discard(thread)
            # Deleted by the event loop, as a runner deletes the threads it waited for, never by
            # Python's garbage collector: a let-go task's QThread destroyed at a random moment
            # on the GUI thread froze the app (its disconnects waited for the GIL, which a
            # thumbnail thread held while it waited for Qt's lock).
            with contextlib.suppress(RuntimeError):  # already deleted
                thread.deleteLater()
            if shiboken6.isValid(worker):  # went with its thread, or its thread ended first
                _ENDED_WORKERS.append(worker)  # a few bytes each; only a let-go race leaves one


def wait_for_live_threads(timeout_ms: int) -> bool:
    """Wait (in all at most ``timeout_ms``) for the tasks still running after their windows
    closed; True when none is left."""
    deadline = time.monotonic() + timeout_ms / 1000
    for thread in list(_LIVE):
        left = max(0, int((deadline - time.monotonic()) * 1000))
        with contextlib.suppress(RuntimeError):  # its C++ object is already gone
            thread.wait(left)
    _forget_finished_threads()
    return not _LIVE


class TaskRunner(QObject):
    """Owns one worker thread at a time: start, pause, resume, cancel, and a clean stop.

    Signals are re-emitted from the worker, so a view connects once to the runner. ``finished``
    fires after the thread has fully stopped, so it is safe to start the next task from it.
    Only the current worker's signals are re-emitted: once :meth:`stop` has returned (and
    ``finished`` has fired), what the stopped worker emitted on its way out (a result, an
    error, events still queued for the GUI thread) is dropped, so a closed view is never
    called back.
    """

    core_event = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        garbage.install()
        self._thread: QThread | None = None
        self._worker: Worker | None = None
        self._cancel = CancelToken()
        # A runner deleted mid-task (its window closed) cancels the task it started. Through a
        # function connected once, not a token's bound method: PySide follows a bound method's
        # receiver with a weakref whose callback, wherever the token dies, walks its connection
        # table with the GIL released (see spdesk.gui.garbage).
        current = self._current_cancel = [self._cancel]
        self.destroyed.connect(lambda *_: current[0].cancel())

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def paused(self) -> bool:
        return self.running and self._cancel.paused

    def start(self, task: Task) -> None:
        """Run ``task`` in a new thread; refuses while another task is running."""
        if self.running:
            raise RuntimeError("a task is already running")
        self._cancel = CancelToken()
        self._current_cancel[0] = self._cancel
        thread = QThread()
        worker = Worker(task, self._cancel)
        worker.moveToThread(thread)
        # Through the runner's slots (queued into the GUI thread), which drop what a worker
        # that is no longer the current one sends: a stopped task's late result.
        worker.core_event.connect(self._relay_event)
        worker.succeeded.connect(self._relay_succeeded)
        worker.failed.connect(self._relay_failed)
        worker.cancelled.connect(self._relay_cancelled)
        # Direct: quit() is thread-safe, and a queued call would never run while stop() blocks
        # the GUI thread in wait().
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.started.connect(worker.run)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        _forget_finished_threads()
        _LIVE[thread] = worker
        thread.start()

    def cancel(self) -> None:
        """Ask the task to stop at its next check (also releases a pause)."""
        self._cancel.cancel()

    def pause(self) -> None:
        self._cancel.pause()

    def resume(self) -> None:
        self._cancel.resume()

    def stop(self, timeout_ms: int = STOP_WAIT_MS) -> bool:
        """Cancel, and wait up to ``timeout_ms`` for the thread to end (a window closing). True
        when it ended in that time.

        Either way the runner is free and ``finished`` has fired when this returns, and what the
        stopped task still sends (a result, an error, a cancellation) is never re-emitted. A task
        in a call that does not see the cancel at once (a stalled network read, a model step that
        takes minutes on a CPU) is let go rather than waited for with the window frozen: it ends
        at its next check, and the app waits for it at exit (:func:`wait_for_live_threads`)."""
        thread = self._thread
        if thread is None:
            return True
        self._cancel.cancel()
        if thread.wait(timeout_ms):
            self._on_thread_finished()
            return True
        self._let_go(thread)
        return False

    def _let_go(self, thread: QThread) -> None:
        """Forget a cancelled task that is still running; ``_LIVE`` keeps it alive until it ends."""
        thread.finished.disconnect(self._on_thread_finished)
        _LET_GO.add(thread)
        if self._worker is not None:  # deleted in its own thread as that ends
            thread.finished.connect(self._worker.deleteLater, Qt.ConnectionType.DirectConnection)
        self._thread, self._worker = None, None
        self.finished.emit()

    def _from_current_worker(self) -> bool:
        """Whether the signal being delivered comes from the running task's worker."""
        sender = self.sender()
        return sender is not None and self._worker is not None and sender is self._worker

    @Slot(object)
    def _relay_event(self, event: object) -> None:
        if self._from_current_worker():
            self.core_event.emit(event)

    @Slot(object)
    def _relay_succeeded(self, result: object) -> None:
        if self._from_current_worker():
            self.succeeded.emit(result)

    @Slot(str)
    def _relay_failed(self, text: str) -> None:
        if self._from_current_worker():
            self.failed.emit(text)

    @Slot()
    def _relay_cancelled(self) -> None:
        if self._from_current_worker():
            self.cancelled.emit()

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is None:
            return
        thread, worker = self._thread, self._worker
        self._thread, self._worker = None, None
        if worker is not None:
            worker.deleteLater()
        if thread is not None:
            # QThread emits finished just before its thread really ends; dropping the last
            # reference before then destroys a running QThread, which Qt answers with abort().
            thread.wait()
            _LIVE.pop(thread, None)
            thread.deleteLater()
        _forget_finished_threads()
        self.finished.emit()
