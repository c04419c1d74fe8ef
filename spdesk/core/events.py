"""Events and the cancel token shared by every long operation.

Long operations (training, fine-tuning, jobs, downloads, previews) take an ``on_event`` callback
and a :class:`CancelToken`. They call ``cancel.check()`` between files and between optimisation
steps: it blocks while paused and raises :class:`~spdesk.core.errors.Cancelled` once cancelled.
Nothing here knows about Qt: the GUI worker forwards events as signals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spdesk.core.errors import Cancelled


@dataclass(frozen=True)
class Event:
    """Base class of every event; ``time`` is ``time.monotonic()`` at creation."""

    time: float = field(default_factory=time.monotonic, kw_only=True, compare=False)


@dataclass(frozen=True)
class Progress(Event):
    """Generic progress: ``done`` of ``total`` units in ``stage``; ``eta_s`` when known."""

    stage: str
    done: float
    total: float
    eta_s: float | None = None
    message: str = ""


EventSink = Callable[[Event], None]


def ignore_events(_event: Event) -> None:
    """The default sink: drop events."""


class CancelToken:
    """Thread-safe cancel (and pause) flag checked by long operations at every step."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        """Ask the operation to stop at its next check; also releases a pause."""
        self._cancelled.set()
        self._running.set()

    def pause(self) -> None:
        """Make the next ``check()`` block until ``resume()`` or ``cancel()``."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def check(self) -> None:
        """Block while paused; raise :class:`Cancelled` if cancellation was requested."""
        self._running.wait()
        if self._cancelled.is_set():
            raise Cancelled()


class EtaClock:
    """Estimates the remaining time from the average time per unit of work done so far."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.start = time.monotonic()

    def eta(self, done: float) -> float | None:
        if done <= 0 or self.total <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return max(0.0, elapsed / done * (self.total - done))
