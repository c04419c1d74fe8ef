"""CLI plumbing: what a user sees when a command fails."""

from __future__ import annotations

import argparse
import errno
import io
import logging
import os
import signal
import sys

import pytest

from spdesk.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    ProgressPrinter,
    cancel_on_sigint,
    run_command,
)
from spdesk.core.errors import Cancelled
from spdesk.core.logs import log_file


def test_an_unexpected_error_is_one_plain_line_and_its_traceback_goes_to_the_log(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="spdesk"):
        assert run_command(broken, argparse.Namespace(command="protect")) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("spdesk: unexpected error (RuntimeError: boom).")
    assert log_file() in err and "Traceback" not in err
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


def test_progress_without_an_eta_estimates_one_from_the_rate_since_its_first_update() -> None:
    import io

    from spdesk.cli.common import ProgressPrinter

    now = [100.0]  # seconds; whatever came before the first update (loading) does not count
    stream = io.StringIO()
    printer = ProgressPrinter(stream, clock=lambda: now[0])
    printer.update("photos measured", 1, 4)  # the first update only starts the clock
    now[0] = 130.0
    printer.update("photos measured", 2, 4)  # one photo in 30 s, two left
    now[0] = 160.0
    printer.update("photos measured", 4, 4)
    assert stream.getvalue().splitlines() == [
        " 25.0% photos measured (ETA --:--)",
        " 50.0% photos measured (ETA 01:00)",
        "100.0% photos measured (ETA 00:00)",
    ]


def _commands(
    name: str, parser: argparse.ArgumentParser
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _commands(f"{name} {sub_name}".strip(), sub)
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    from spdesk.cli import build_parser

    commands = _commands("", build_parser())
    silent = {
        name: [a.option_strings or a.dest for a in parser._actions if not a.help]
        for name, parser in commands
    }
    assert {name: options for name, options in silent.items() if options} == {}
    names = [name for name, _ in commands]
    assert {"protect", "train", "train-generator", "eval", "models download"} <= set(names)


def test_ctrl_c_before_a_command_starts_is_one_plain_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import spdesk.cli

    def interrupted() -> argparse.ArgumentParser:  # Ctrl+C while the commands import torch
        raise KeyboardInterrupt

    monkeypatch.setattr(spdesk.cli, "build_parser", interrupted)
    assert spdesk.cli.main(["protect", "x"]) == EXIT_CANCELLED
    assert capsys.readouterr().err == "Interrupted.\n"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_the_stop_a_service_manager_or_a_closed_terminal_sends_cancels_like_ctrl_c(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kill`, `timeout`, systemd or `docker stop` send SIGTERM: it killed a job between two
    steps (no summary, the manifest not compacted, a temporary file left behind)."""
    number = getattr(signal, name)
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, number)}
    try:
        signal.signal(number, signal.SIG_DFL)  # as in a terminal (nohup starts it ignored)
        token = cancel_on_sigint()
        assert signal.getsignal(number) is signal.getsignal(signal.SIGINT)
        os.kill(os.getpid(), number)
        assert token.cancelled
        assert "Stopping after the current step" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):  # a second one stops at once
            os.kill(os.getpid(), number)
    finally:
        for n, handler in before.items():
            signal.signal(n, handler)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_a_signal_the_process_was_started_to_ignore_stays_ignored() -> None:
    """`nohup spdesk protect …` ignores SIGHUP so the job outlives the terminal: the stop
    handler took SIGHUP back, and closing the ssh session stopped the job."""
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        token = cancel_on_sigint()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        assert not token.cancelled
    finally:
        for n, handler in before.items():
            signal.signal(n, handler)


class _GoneTerminal(io.StringIO):
    """A terminal that was closed (after SIGHUP every write fails with EIO)."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


def test_a_closed_terminal_ends_the_messages_not_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing the terminal of a running `spdesk protect` made its next message raise EIO
    wherever the job was: a healthy photo was recorded as a damaged JPEG, and the command ended
    as a bug (exit 1) instead of a clean stop."""
    monkeypatch.setattr(sys, "stderr", _GoneTerminal())
    before = signal.getsignal(signal.SIGINT)

    def stopped_by_a_hang_up(_args: argparse.Namespace) -> int:
        token = cancel_on_sigint()
        os.kill(os.getpid(), signal.SIGINT)  # its message cannot be written: it still stops
        assert token.cancelled
        ProgressPrinter().line("a progress line to a terminal that is gone")
        raise Cancelled("Cancelled.")

    try:
        assert run_command(stopped_by_a_hang_up, argparse.Namespace()) == EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGINT, before)
