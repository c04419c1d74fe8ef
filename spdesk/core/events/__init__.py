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


@dataclass(frozen=True)
class Loading(Event):
    """Something slow with no measurable progress has begun (loading a model): say ``message``."""

    message: str


EventSink = Callable[[Event], None]


def ignore_events(_event: Event) -> None:
    """The default sink: drop events."""


class CancelToken:
    """Thread-safe cancel (and pause) flag checked by long operations at every step.

    Cancel always wins: a pause requested after (or racing with) a cancel never blocks ``check``.
    One condition variable guards both flags, so no interleaving of threads can lose a cancel.
    """

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._cancelled = False
        self._paused = False

    def cancel(self) -> None:
        """Ask the operation to stop at its next check; also releases a pause."""
        with self._state:
            self._cancelled = True
            self._state.notify_all()

    def pause(self) -> None:
        """Make the next ``check()`` block until ``resume()`` or ``cancel()``."""
        with self._state:
            self._paused = True

    def resume(self) -> None:
        with self._state:
            self._paused = False
            self._state.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def paused(self) -> bool:
        return self._paused and not self._cancelled

    def check(self) -> None:
        """Block while paused; raise :class:`Cancelled` if cancellation was requested."""
        with self._state:
            self._state.wait_for(lambda: self._cancelled or not self._paused)
            if self._cancelled:
                raise Cancelled()


class EtaClock:
    """Estimates the remaining time from the average time per unit of work done so far.

    Units done without work (photos a resumed run finds already protected) are left out of
    the average with :meth:`skip`: counted in it, a run resuming after 90 of 100 photos would
    divide its time by 91 and promise the rest in a tenth of the time they take.
    """

    def __init__(self, total: float, now: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.now = now
        self.start = now()
        self.skipped = 0.0

    def skip(self, units: float = 1) -> None:
        """``units`` of the total were done without work (they still count as done)."""
        self.skipped += units

    def eta(self, done: float) -> float | None:
        """Seconds left when ``done`` units (skipped ones included) of the total are done."""
        worked = done - self.skipped
        if worked <= 0 or self.total <= 0:
            return None
        elapsed = self.now() - self.start
        return max(0.0, elapsed / worked * (self.total - done))
