"""CLI plumbing: what a user sees when a command fails."""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import signal
import sys
import unicodedata
from collections.abc import Callable

import pytest

from spdesk.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    ProgressPrinter,
    cancel_on_sigint,
    print_json,
    run_command,
)
from spdesk.core.errors import Cancelled, ConfigError
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


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_command_without_a_cancel_of_its_own_ends_with_130_and_its_json_on_a_stop_signal(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``spdesk eval`` and ``--self-test`` take no cancel token: SIGTERM and SIGHUP killed them
    without a word, and a SIGINT to one started in a script's background was ignored."""
    number = getattr(signal, name)
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a script
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

        def command(_args: argparse.Namespace) -> int:
            os.kill(os.getpid(), number)
            raise AssertionError("the signal did not stop the command")

        assert run_command(command, argparse.Namespace(json=True)) == EXIT_CANCELLED
        printed = json.loads(capsys.readouterr().out)
        assert printed["exit_code"] == EXIT_CANCELLED and printed["error"] == "Interrupted."
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # handlers given back
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        for n, handler in before.items():
            signal.signal(n, handler)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_a_command_that_was_started_to_ignore_sighup_still_ignores_it() -> None:
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup

        def command(_args: argparse.Namespace) -> int:
            os.kill(os.getpid(), signal.SIGHUP)
            return EXIT_OK

        assert run_command(command, argparse.Namespace(json=False)) == EXIT_OK
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


def _stdout_in(encoding: str) -> io.TextIOWrapper:
    """A stdout whose encoding is ``encoding`` (PYTHONIOENCODING, a Windows console's code
    page, a C locale), strict as Python makes it."""
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, write_through=True)


@pytest.mark.parametrize(("encoding", "euro"), [("latin-1", "\\u20ac"), ("cp1252", "€")])
def test_a_name_the_output_encoding_cannot_write_is_escaped_not_a_crash(
    encoding: str, euro: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a latin-1 stdout a failed 壊れた.jpg made the summary crash after the job: exit 2
    and "This is a bug" instead of exit 1 and the summary."""
    stdout = _stdout_in(encoding)
    monkeypatch.setattr(sys, "stdout", stdout)

    def summary(_args: argparse.Namespace) -> int:
        print("Protected 1 photo (café €.jpg); 1 failed: 壊れた.jpg")
        return EXIT_FAILED

    assert run_command(summary, argparse.Namespace()) == EXIT_FAILED
    written = stdout.buffer.getvalue().decode(encoding)  # type: ignore[attr-defined]
    assert written == f"Protected 1 photo (café {euro}.jpg); 1 failed: \\u58ca\\u308c\\u305f.jpg\n"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "cp1252", "utf-8"])
def test_json_on_an_output_that_cannot_encode_every_name_stays_valid_json(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PYTHONIOENCODING=ascii spdesk protect ... --json` stopped at `"source": ` (the rest
    lost, exit 2); escaping the text instead would write `\\xe9`, which JSON does not know."""
    stdout = _stdout_in(encoding)
    monkeypatch.setattr(sys, "stdout", stdout)
    report = {"source": "in/café 写真.jpg", "output": "out/café 写真.protected.jpg"}

    def command(_args: argparse.Namespace) -> int:
        print_json(report)
        return EXIT_OK

    assert run_command(command, argparse.Namespace(json=True)) == EXIT_OK
    written = stdout.buffer.getvalue().decode(encoding)  # type: ignore[attr-defined]
    assert json.loads(written) == report
    assert ("café 写真" in written) == (encoding == "utf-8")  # readable where it can be


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _cells(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@pytest.mark.parametrize("columns", [80, 50, 40])
@pytest.mark.parametrize(
    "name", ["holiday at the lake, " * 6 + ".jpg", "壊れた写真" * 8 + ".jpg"], ids=["latin", "wide"]
)
def test_the_progress_bar_stays_on_one_row_of_the_terminal_and_keeps_count_and_eta(
    columns: int, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an 80-column terminal each update printed a 200-character line: several rows per
    photo. The name is shortened; the count, the stage and the time left stay."""
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = _Terminal()
    printer = ProgressPrinter(stream)
    printer.update(f"3/10 {name} (protecting)", 3, 10, eta_s=75)
    printer.update("4/10", 4, 10, eta_s=50)
    first, second = stream.getvalue().split("\r")[1:]
    assert _cells(first) == _cells(second) == columns - 1  # the rest of the row cleared
    assert first.startswith("[") == (columns == 80) and "30.0%" in first  # the bar gives way
    assert "3/10 " in first and first.rstrip().endswith("(protecting)  ETA 01:15")
    assert second.rstrip().endswith("40.0% 4/10  ETA 00:50")


def test_a_message_under_the_bar_clears_its_row_without_wrapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    stream = _Terminal()
    printer = ProgressPrinter(stream)
    printer.update("1/2 a.jpg (protecting)", 1, 2)
    printer.line("FAILED   b.jpg: damaged")
    assert stream.getvalue().endswith("\r" + " " * 59 + "\rFAILED   b.jpg: damaged\n")


def _reporting_job(calls: list[str]) -> Callable[[argparse.Namespace], int]:
    def job(_args: argparse.Namespace) -> int:
        print("Protecting 2 photos into out", file=sys.stderr)
        ProgressPrinter().update("1/2", 1, 2)
        calls.append("protected")
        print("Protected 2 photos into out")
        return EXIT_OK

    return job


def test_a_closed_stderr_silences_the_messages_and_the_job_still_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk protect photos --out o 2>&-`: Python makes sys.stderr None; the first message
    raised AttributeError, nothing was protected and the exit status was 1."""
    monkeypatch.setattr(sys, "stderr", None)
    calls: list[str] = []
    assert run_command(_reporting_job(calls), argparse.Namespace()) == EXIT_OK
    assert calls == ["protected"]
    assert capsys.readouterr().out == "Protected 2 photos into out\n"

    def cannot_run(_args: argparse.Namespace) -> int:
        raise ConfigError("Nothing to protect: nonexist does not exist.")

    assert run_command(cannot_run, argparse.Namespace()) == EXIT_ERROR  # was 1: a traceback


def test_a_closed_stdout_is_an_output_that_could_not_be_written_not_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spdesk protect photos --out o >&-` wrote every photo, then said "unexpected error
    ... This is a bug"."""
    monkeypatch.setattr(sys, "stdout", None)
    calls: list[str] = []
    assert run_command(_reporting_job(calls), argparse.Namespace()) == EXIT_ERROR
    assert calls == ["protected"]
    err = capsys.readouterr().err
    assert err.endswith("spdesk: Could not write the output: Bad file descriptor.\n")


def _raises(error: BaseException) -> Callable[[argparse.Namespace], int]:
    def command(_args: argparse.Namespace) -> int:
        raise error

    return command


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (
            ConfigError("Quality must be between 1 and 100, got 500.", hint="Try --quality 95."),
            EXIT_ERROR,
            {"error": "Quality must be between 1 and 100, got 500.", "hint": "Try --quality 95."},
        ),
        (Cancelled(), EXIT_CANCELLED, {"error": "Cancelled.", "hint": None}),
        (KeyboardInterrupt(), EXIT_CANCELLED, {"error": "Interrupted.", "hint": None}),
    ],
)
def test_with_json_a_command_that_cannot_run_still_prints_one_json_object(
    error: BaseException,
    status: int,
    expected: dict[str, object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`spdesk protect 'nomatch*.jpg' --out o --json | jq` failed on empty input: the README
    promises one JSON object on stdout from every command given --json."""
    assert run_command(_raises(error), argparse.Namespace(json=True)) == status
    out, err = capsys.readouterr()
    assert json.loads(out) == {"ok": False, "exit_code": status, **expected}
    assert expected["error"] in err  # the person at the terminal is still told


@pytest.mark.parametrize(
    "argv",
    [
        ["protect", "in", "--out", "out", "--strength", "abc", "--json"],
        ["protect", "in", "--json"],
        ["eval", "--photos", "in", "--json"],
        ["--json"],
    ],
    ids=["bad-value", "missing-option", "eval-missing-option", "json-without-a-command"],
)
def test_with_json_a_command_line_argparse_refuses_is_still_one_json_object(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import spdesk.cli

    with pytest.raises(SystemExit) as exited:
        spdesk.cli.main(argv)
    assert exited.value.code == EXIT_ERROR
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["ok"] is False and printed["exit_code"] == EXIT_ERROR
    assert printed["error"] and printed["error"] in captured.err  # argparse's own words
    assert "--help' for its options." in printed["hint"]
    with pytest.raises(SystemExit):
        spdesk.cli.main(argv[:-1] if argv != ["--json"] else ["protect"])
    assert capsys.readouterr().out == ""  # without --json: argparse's text alone, on stderr


def test_with_json_an_unexpected_error_is_one_json_object_naming_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = run_command(_raises(RuntimeError("boom")), argparse.Namespace(json=True))
    assert status == EXIT_ERROR
    failure = json.loads(capsys.readouterr().out)
    assert failure["ok"] is False and failure["exit_code"] == EXIT_ERROR
    assert failure["error"] == "unexpected error (RuntimeError: boom)"
    assert log_file() in failure["hint"]


def test_a_failure_after_the_command_printed_its_json_adds_no_second_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The self-test prints {"passed": false, ...} and then fails: stdout holds that only."""

    def self_test(_args: argparse.Namespace) -> int:
        print_json({"passed": False, "stage": "universal", "error": "changed too little"})
        raise ConfigError("The self-test failed.")

    assert run_command(self_test, argparse.Namespace(json=True)) == EXIT_ERROR
    assert json.loads(capsys.readouterr().out)["passed"] is False


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_with_json_what_else_prints_on_stdout_goes_to_stderr(
    fails: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ray worker killed mid-run (the kernel's OOM killer) put Ray's lines, colour codes and
    all, on stdout before the job's JSON: `json.load` failed on a job that had succeeded."""

    def noisy(_args: argparse.Namespace) -> int:
        print("\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task")
        if fails:
            raise ConfigError("The cluster went away.")
        print_json({"ok": True})
        return EXIT_OK

    status = run_command(noisy, argparse.Namespace(json=True))
    out, err = capsys.readouterr()
    assert json.loads(out)["ok"] is (not fails) and status == (EXIT_ERROR if fails else EXIT_OK)
    assert "A worker died" in err and "A worker died" not in out
    assert run_command(noisy, argparse.Namespace(json=False)) == status  # without --json: as ever
    assert "A worker died" in capsys.readouterr().out


def test_the_command_lines_list_of_encoders_is_the_cores() -> None:
    """Written twice so that --help need not import torch (the core's module does): the same
    words, or the two would drift apart."""
    from spdesk.cli.common import ENCODERS
    from spdesk.core.encoders import ENCODER_CHOICES

    assert ENCODERS == ENCODER_CHOICES
