"""How busy a Ray job's workers keep their protector: does the GPU wait for decoding?

Each worker (an actor, or a universal-mode worker process) times its protector's calls, the step
a GPU runs (photo mode's generator, fine-tuning's passes, with the pixel work around them),
against its time alive: from the start of its first batch to the end of its last. The rest is
time it waited: reading and decoding photos, encoding and writing outputs, and Ray handing it
the next batch. Each batch sends its worker's latest :data:`Reading` back with its outcomes; the
driver keeps the latest reading of each worker (:func:`keep_latest`) and adds them up
(:func:`busy_share`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence

from PIL import Image

from spdesk.core.events import CancelToken
from spdesk.core.jobs.protector import Protected, Protector, StepCallback, build_protector
from spdesk.core.jobs.settings import ProtectSettings
from spdesk.core.perturbation import Perturbation

Reading = tuple[str, float, float]  # (worker, seconds computing, seconds alive)


class BusyClock:
    """One worker's time computing against its time alive (see the module docstring)."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.worker = uuid.uuid4().hex[:16]  # readings of one worker replace each other
        self._now = now
        self._lock = threading.Lock()
        self._computing = 0  # protector calls running now (photo mode runs several threads)
        self._since = 0.0
        self._busy = 0.0
        self._first: float | None = None
        self._last = 0.0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Around each batch the worker runs: its time alive starts with the first."""
        if self._first is None:
            self._first = self._now()
        try:
            yield
        finally:
            self._last = self._now()

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Around each protector call; calls overlapping on several threads count once, as the
        device is busy once."""
        with self._lock:
            if self._computing == 0:
                self._since = self._now()
            self._computing += 1
        try:
            yield
        finally:
            with self._lock:
                self._computing -= 1
                if self._computing == 0:
                    self._busy += self._now() - self._since

    def reading(self) -> Reading:
        """The worker's seconds computing and alive so far."""
        alive = 0.0 if self._first is None else self._last - self._first
        return self.worker, self._busy, alive


class TimedProtector(Protector):
    """A worker's protector with its calls timed by the worker's :class:`BusyClock`.

    Its ``stage`` is the base class's: a worker's progress events are not shown anywhere."""

    mode = "timed"

    def __init__(self, inner: Protector, clock: BusyClock) -> None:
        self.inner = inner
        self.clock = clock
        self.concurrent = inner.concurrent
        self.batch_size = inner.batch_size

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        return cls(build_protector(settings, perturbation), BusyClock())

    def protect(self, image: Image.Image, key: str) -> Protected:
        with self.clock.computing():
            return self.inner.protect(image, key)

    def protect_batch(
        self,
        images: Sequence[Image.Image],
        keys: Sequence[str],
        *,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> list[Protected]:
        with self.clock.computing():
            return self.inner.protect_batch(images, keys, cancel=cancel, on_step=on_step)


def keep_latest(readings: MutableMapping[str, tuple[float, float]], new: Iterable[Reading]) -> None:
    """Keep each worker's latest reading (the one alive longest): batches come back in any
    order."""
    for worker, busy, alive in new:
        if worker not in readings or alive >= readings[worker][1]:
            readings[worker] = (busy, alive)


def busy_share(readings: Iterable[tuple[float, float]]) -> float | None:
    """The share of the workers' time alive spent computing, all workers together; None before
    any worker finished a batch."""
    busy = alive = 0.0
    for worker_busy, worker_alive in readings:
        busy += worker_busy
        alive += worker_alive
    return busy / alive if alive > 0 else None


__all__ = ["BusyClock", "Reading", "TimedProtector", "busy_share", "keep_latest"]
