"""The cancel token: pause blocks, resume releases, and a cancel is never lost to a pause; the
ETA clock."""

from __future__ import annotations

import threading

import pytest

from spdesk.core.errors import Cancelled
from spdesk.core.events import CancelToken, EtaClock


class _ObservedCondition(threading.Condition):
    """A condition that tells when someone waits on it: proof that ``check()`` blocked."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def _observed(token: CancelToken) -> _ObservedCondition:
    token._state = condition = _ObservedCondition()
    return condition


def _check_in_thread(token: CancelToken) -> tuple[threading.Thread, list[str]]:
    outcome: list[str] = []

    def run() -> None:
        try:
            token.check()
            outcome.append("passed")
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_check_passes_when_neither_paused_nor_cancelled() -> None:
    CancelToken().check()


def test_cancel_makes_check_raise() -> None:
    token = CancelToken()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.check()


def test_pause_blocks_check_until_resume() -> None:
    token = CancelToken()
    blocked = _observed(token)
    token.pause()
    assert token.paused
    thread, outcome = _check_in_thread(token)
    assert blocked.waiting.wait(5), "check() did not block on the pause"
    assert thread.is_alive() and not outcome
    token.resume()
    thread.join(5)
    assert outcome == ["passed"]


def test_cancel_releases_a_paused_check() -> None:
    token = CancelToken()
    blocked = _observed(token)
    token.pause()
    thread, outcome = _check_in_thread(token)
    assert blocked.waiting.wait(5), "check() did not block on the pause"
    token.cancel()
    thread.join(5)
    assert outcome == ["cancelled"]


def test_a_pause_after_a_cancel_never_blocks() -> None:
    # The worker may pause (e.g. at a progress event) just after the user cancelled: the cancel
    # must still end the operation instead of leaving it blocked forever.
    token = CancelToken()
    token.cancel()
    token.pause()
    assert not token.paused
    thread, outcome = _check_in_thread(token)
    thread.join(5)
    assert outcome == ["cancelled"]


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_units_done_without_work_leave_the_eta_out() -> None:
    """A resumed run: 8 of 10 photos were already done (no time), the 9th took 60 s, so the
    last one takes about 60 s more, not 60 / 9."""
    time = _FakeTime()
    clock = EtaClock(10, now=time)
    clock.skip(8)
    assert clock.eta(8) is None  # nothing worked on yet: no rate
    time.now = 60.0
    assert clock.eta(9) == pytest.approx(60.0)
    assert clock.eta(10) == 0.0
