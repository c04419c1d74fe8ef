"""Shared CLI plumbing: error reporting, JSON output, terminal progress."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from spdesk.core.errors import Cancelled, SpdeskError
from spdesk.core.events import CancelToken
from spdesk.core.files import finite_for_json, remove_live_temps, shown
from spdesk.core.logs import log_file, setup_logging

log = logging.getLogger("spdesk.cli")

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but some items failed
EXIT_ERROR = 2  # the command could not run (bad input, missing model, ...)
EXIT_CANCELLED = 130


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: named errors become plain messages (exit 2); any other exception is a
    bug, whose traceback goes to the log file and whose one-line summary names that file."""
    setup_logging()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = _Output(stdout)  # type: ignore[assignment]
    sys.stderr = _Messages(stderr)  # type: ignore[assignment]
    try:
        status = func(args)
        sys.stdout.flush()  # what is still buffered fails here, not at exit
        return status
    except _OutputFailed as failed:
        _discard_unwritten(stdout)
        print(f"spdesk: Could not write the output: {failed.reason}", file=sys.stderr)
        return EXIT_ERROR
    except Cancelled as cancelled:  # its words say what was kept ("Cancelled." at least)
        print(cancelled.user_text(), file=sys.stderr)
        return EXIT_CANCELLED
    except SpdeskError as error:
        print(f"spdesk: {error.user_text()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # a second Ctrl+C: stop now, leaving no temporary file behind
        remove_live_temps()
        print("Interrupted.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:
        log.exception("unexpected error in spdesk %s", getattr(args, "command", ""))
        print(
            f"spdesk: unexpected error ({type(error).__name__}: {error}). {_bug_text()}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    finally:
        sys.stdout, sys.stderr = stdout, stderr


class _OutputFailed(Exception):
    """Writing the command's output (stdout) failed: a full disk, a closed pipe. Told apart
    from the OSErrors of the command's own work, which stay bugs unless named."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.reason = f"{error.strerror or error}."


class _Output:
    """``sys.stdout`` while a command runs: the same stream, its write failures marked."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as error:
            raise _OutputFailed(error) from error

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise _OutputFailed(error) from error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Messages:
    """``sys.stderr`` while a command runs: messages and progress for a person, dropped once
    the terminal is gone (closed: EIO, after SIGHUP), so that the job still ends cleanly."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _discard_unwritten(stream: TextIO) -> None:
    """Point a failed stdout at the null device, so that what it still buffers is not written
    again (and reported as a traceback) when Python exits."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError):  # no file descriptor (a test's stream): nothing is flushed
        pass


def _bug_text() -> str:
    """Where the details of an unexpected error are: the log, unless it could not be written."""
    from spdesk.core import logs

    folder = shown(Path(log_file()).parent)
    if logs.log_written:
        return (
            f"This is a bug; the details are in {log_file()}; please include that file when "
            "reporting it."
        )
    return f"This is a bug; no log could be written ({folder} is full or read-only)."


# Signals that ask a command to stop: Ctrl+C, and what `kill`, `timeout`, a service manager or
# `docker stop` send (SIGTERM), or a closed terminal (SIGHUP). Without a handler SIGTERM killed
# the job between two steps: no summary, the manifest not compacted, a temporary file left.
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def cancel_on_sigint() -> CancelToken:
    """A cancel token that Ctrl+C (or SIGTERM, SIGHUP) sets, so the core stops cleanly at its
    next check; a second one stops at once."""
    token = CancelToken()

    def handler(signum: int, _frame: object) -> None:
        if token.cancelled:  # a second Ctrl+C stops at once
            raise KeyboardInterrupt
        token.cancel()  # first: after a hang-up, writing to the terminal fails
        again = "Ctrl+C again" if signum == signal.SIGINT else "the same signal again"
        with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): the job still stops
            print(f"\nStopping after the current step ({again} to abort)...", file=sys.stderr)

    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)  # SIGHUP: not on Windows
        # A SIGHUP the process was started to ignore stays ignored: `nohup` ignores it so that
        # a job outlives the terminal (ssh). SIGINT and SIGTERM are always taken, as before (a
        # background job of a script starts with SIGINT ignored, and is still stopped by it).
        if number is None or (name == "SIGHUP" and signal.getsignal(number) is signal.SIG_IGN):
            continue
        signal.signal(number, handler)
    return token


def print_json(obj: Any, stream: TextIO | None = None) -> None:
    """One JSON object on stdout (machine-readable summaries): strict JSON, NaN and infinities
    written as null, as JSON has no word for them and strict parsers refuse Python's."""
    json.dump(
        finite_for_json(obj), stream or sys.stdout, indent=2, default=str, ensure_ascii=False,
        allow_nan=False,
    )  # fmt: skip
    (stream or sys.stdout).write("\n")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` shows a terminal: progress bars redraw there, and only there."""
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressPrinter:
    """A one-line progress bar on a terminal; plain, rate-limited lines otherwise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.clock = clock
        self.tty = is_terminal(self.stream)
        self.quiet = quiet
        self._last_line = 0.0
        self._open_bar = False
        self._origin: tuple[float, float, float] | None = None  # (time, done, total) of rate

    def update(self, label: str, done: float, total: float, eta_s: float | None = None) -> None:
        """Show progress; without ``eta_s`` the time left is estimated from the rate since the
        first update of this total (so loading before the first unit does not count)."""
        if self.quiet:
            return
        if eta_s is None:
            eta_s = self._estimate(done, total)
        fraction = done / total if total else 0.0
        if self.tty:
            width = 28
            filled = int(width * fraction)
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r[{bar}] {fraction:6.1%} {label}  ETA {format_duration(eta_s)}"
            self._write(line[:200].ljust(80))
            self._open_bar = True
        elif self.clock() - self._last_line > 2.0 or done >= total:
            self._last_line = self.clock()
            self._write(f"{fraction:6.1%} {label} (ETA {format_duration(eta_s)})\n")

    def _estimate(self, done: float, total: float) -> float | None:
        now = self.clock()
        origin = self._origin
        if origin is None or origin[2] != total or done < origin[1]:
            self._origin = (now, done, total)  # a new count starts its own clock
            return None
        start, first, _ = origin
        if done <= first:
            return None
        return (now - start) / (done - first) * max(0.0, total - done)

    def line(self, text: str) -> None:
        """A message that stays on screen (above the bar on a terminal)."""
        if self.quiet:
            return
        if self._open_bar:
            self._write("\r" + " " * 100 + "\r")
            self._open_bar = False
        self._write(text + "\n")

    def close(self) -> None:
        if self._open_bar and not self.quiet:
            self._write("\n")
            self._open_bar = False

    def _write(self, text: str) -> None:
        """Write and flush; a terminal that is gone (closed: EIO; a broken pipe) ends the
        progress output, not the job."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:
            self.quiet = True


def fine_tune_jpeg(value: str | None) -> int | None:
    """``--fine-tune-jpeg``: a JPEG quality, "off" (None), or the product's default when not
    given."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.jobs.settings import DEFAULT_FINETUNE_JPEG

    if value is None:
        return DEFAULT_FINETUNE_JPEG
    if value.strip().lower() == "off":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--fine-tune-jpeg takes a JPEG quality (1-100) or 'off', got {value!r}."
        ) from None
