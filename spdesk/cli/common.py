"""Shared CLI plumbing: error reporting, JSON output, terminal progress."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import io
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

from spdesk.core.errors import Cancelled, SpdeskError
from spdesk.core.events import CancelToken
from spdesk.core.files import finite_for_json, remove_live_temps, shown
from spdesk.core.logs import log_file, setup_logging

log = logging.getLogger("spdesk.cli")

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but some items failed
EXIT_ERROR = 2  # the command could not run (bad input, missing model, ...)
EXIT_CANCELLED = 130


def run_command(
    func: Callable[[argparse.Namespace], int], args: argparse.Namespace, *, exiting: bool = False
) -> int:
    """Run a subcommand: named errors become plain messages (exit 2); any other exception is a
    bug, whose traceback goes to the log file and whose one-line summary names that file. With
    ``--json`` a command that ends so, before printing its own object, prints one saying why.
    ``exiting``: the process ends with the returned status (see :func:`_absorb_one_late_signal`)."""
    setup_logging()
    stdout, stderr = sys.stdout, sys.stderr
    # A closed stdout or stderr (`>&-`, `2>&-`) is None to Python. Closed stdout: the job runs
    # and its output fails as on a full disk or a closed pipe (exit 2), since what it prints is
    # then lost. Closed stderr: nobody reads the messages; they must not stop the job.
    global _json_output
    output = _Output(stdout or _ClosedOutput())
    messages = _Messages(stderr or _Discarded())
    json_failure = bool(getattr(args, "json", False))
    # With --json, stdout holds the command's one object and nothing else: what anything else
    # prints there (Ray's lines about a worker that died, a library's notes) goes to stderr.
    _json_output = output if json_failure else None
    sys.stdout = messages if json_failure else output  # type: ignore[assignment]
    sys.stderr = messages  # type: ignore[assignment]
    previous = _interrupt_on_stop_signals()
    try:
        status = func(args)
        output.flush()  # what is still buffered fails here, not at exit
        return status
    except _OutputFailed as failed:
        output.discard_unwritten()
        print(f"spdesk: Could not write the output: {failed.reason}", file=sys.stderr)
        return EXIT_ERROR
    except Cancelled as cancelled:  # its words say what was kept ("Cancelled." at least)
        print(cancelled.user_text(), file=sys.stderr)
        return output.failure(json_failure, EXIT_CANCELLED, cancelled.message, cancelled.hint)
    except SpdeskError as error:
        print(f"spdesk: {error.user_text()}", file=sys.stderr)
        return output.failure(json_failure, EXIT_ERROR, error.message, error.hint)
    except KeyboardInterrupt:  # a second Ctrl+C: stop now, leaving no temporary file behind
        remove_live_temps()
        print("Interrupted.", file=sys.stderr)
        return output.failure(json_failure, EXIT_CANCELLED, "Interrupted.")
    except Exception as error:
        log.exception("unexpected error in spdesk %s", getattr(args, "command", ""))
        what = f"unexpected error ({type(error).__name__}: {error})"
        print(f"spdesk: {what}. {_bug_text()}", file=sys.stderr)
        return output.failure(json_failure, EXIT_ERROR, what, _bug_text())
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        _json_output = None
        for number, handler in previous.items():
            signal.signal(number, _absorb_one_late_signal(handler) if exiting else handler)


# Where print_json writes while a --json command runs (its stdout; sys.stdout is stderr then).
_json_output: _Output | None = None


class _OutputFailed(Exception):
    """Writing the command's output (stdout) failed: a full disk, a closed pipe. Told apart
    from the OSErrors of the command's own work, which stay bugs unless named."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.reason = f"{error.strerror or error}."


class _Output:
    """``sys.stdout`` while a command runs: the same stream, its write failures marked, the
    characters its encoding cannot write escaped."""

    def __init__(self, stream: TextIO | io.TextIOBase) -> None:
        self._stream = stream
        self.written = False

    def write(self, text: str) -> int:
        self.written = self.written or bool(text)
        try:
            return _write_escaped(self._stream, text)
        except OSError as error:
            raise _OutputFailed(error) from error

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            raise _OutputFailed(error) from error

    def failure(self, as_json: bool, status: int, error: str, hint: str | None = None) -> int:
        """``status``, after printing why the command failed as JSON where a script expects
        one object (``as_json``) and the command printed none (the self-test prints its own)."""
        if as_json and not self.written:
            failure = {"ok": False, "exit_code": status, "error": error, "hint": hint}
            try:
                print_json(failure, self)  # type: ignore[arg-type]
                self.flush()
            except _OutputFailed:  # the message on stderr says why already
                self.discard_unwritten()
        return status

    def discard_unwritten(self) -> None:
        """Point a failed stdout at the null device, so that what it still buffers is not
        written again (and reported as a traceback) when Python exits."""
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):  # no file descriptor (a test's stream): nothing is flushed
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ClosedOutput(io.TextIOBase):
    """A stdout the shell closed (`>&-`): writing to it fails as writing to its descriptor
    would."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


class _Discarded(io.TextIOBase):
    """A stderr the shell closed (`2>&-`): the messages go nowhere, as on the null device."""

    def write(self, text: str) -> int:
        return len(text)


def _write_escaped(stream: TextIO | io.TextIOBase, text: str) -> int:
    """Write ``text``; a character the stream's encoding has no bytes for (an ASCII, latin-1 or
    cp1252 stdout) is written as ``\\u58ca``, as Python writes it on stderr, not a crash."""
    try:
        return stream.write(text)
    except UnicodeEncodeError as error:  # raised before any of ``text`` is written
        encoding = stream.encoding or error.encoding  # the error's may be "charmap" (cp1252)
        return stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


class _Messages:
    """``sys.stderr`` while a command runs: messages and progress for a person, dropped once
    the terminal is gone (closed: EIO, after SIGHUP), so that the job still ends cleanly."""

    def __init__(self, stream: TextIO | io.TextIOBase) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            return _write_escaped(self._stream, text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


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


def _interrupt_on_stop_signals() -> dict[int, Any]:
    """Until a command takes the stop signals itself (:func:`cancel_on_sigint`), each one ends
    it as Ctrl+C does: exit 130, with its JSON object. Without this, SIGTERM and SIGHUP killed
    ``spdesk eval`` or ``--self-test`` silently, and a background job of a script (started with
    SIGINT ignored) ran on. Returns the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    for number in _stop_signals():
        previous[number] = signal.signal(number, interrupt)
    return previous


def _absorb_one_late_signal(previous: Any) -> Any:
    """A handler for the instant between a finished command and the process's exit: a stop
    signal then killed the process (exit -2 or -15), though the command had finished and said
    so (its JSON too). The first one is absorbed and puts ``previous`` back, so a second one
    still stops a process whose exit hangs (a library's clean-up)."""

    def absorb(signum: int, _frame: object) -> None:
        signal.signal(signum, previous)

    return absorb


def _stop_signals() -> list[int]:
    """The stop signals spdesk takes: a SIGHUP the process was started to ignore stays
    ignored (`nohup`: the job outlives the terminal); SIGINT and SIGTERM are always taken."""
    numbers = []
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)  # SIGHUP: not on Windows
        if number is None or (name == "SIGHUP" and signal.getsignal(number) is signal.SIG_IGN):
            continue
        numbers.append(number)
    return numbers


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

    for number in _stop_signals():  # a background job of a script starts with SIGINT ignored
        signal.signal(number, handler)
    return token


def print_json(obj: Any, stream: TextIO | None = None) -> None:
    """One JSON object on stdout (machine-readable summaries): strict JSON, NaN and infinities
    written as null, as JSON has no word for them and strict parsers refuse Python's. Names
    stay readable on a UTF-8 stdout; on another one every non-ASCII character is a JSON
    escape (``\\u00e9``), as an escape of the encoding's own (``\\xe9``) is not JSON."""
    out: TextIO = stream or cast(TextIO, _json_output) or sys.stdout
    json.dump(
        finite_for_json(obj), out, indent=2, default=str,
        ensure_ascii=not _writes_unicode(out), allow_nan=False,
    )  # fmt: skip
    out.write("\n")


def _writes_unicode(stream: TextIO) -> bool:
    """Whether ``stream`` can write every character: a UTF encoding, or text kept as text."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True
    try:
        return codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


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
            eta = format_duration(eta_s)
            self._write("\r" + _bar_line(fraction, label, eta, _row_width(self.stream)))
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
            self._write("\r" + " " * _row_width(self.stream) + "\r")
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


_BAR_CELLS = 28  # the bar's own width, inside its brackets
_MIN_BAR_CELLS = 6
_LABEL_ROOM = 24  # a narrower terminal gives up (part of) the bar to keep this for the label
_CUT = "..."


def _row_width(stream: TextIO) -> int:
    """Columns the bar may use: its terminal's width less one, as writing the last column
    wraps on some terminals. $COLUMNS wins, then stdout's terminal (as shutil says), then the
    bar's own, which stays right when stdout is a file."""
    try:
        own = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # not a terminal, or a test's stream
        own = 80
    return max(1, shutil.get_terminal_size((own or 80, 24)).columns - 1)


def _bar_line(fraction: float, label: str, eta: str, width: int) -> str:
    """``[####----]  30.0% LABEL  ETA 01:15`` in exactly ``width`` cells, padded to clear a
    longer line before it. Where it does not fit, the label gives way first (from its middle:
    a protect label's count and stage stay), then the bar; the percentage and time stay."""
    percent, tail = f"{fraction:6.1%} ", f"  ETA {eta}"
    inner = min(_BAR_CELLS, width - len(percent) - len(tail) - _LABEL_ROOM - 3)
    head = percent.lstrip()
    if inner >= _MIN_BAR_CELLS:
        filled = int(inner * fraction)
        head = f"[{'#' * filled}{'-' * (inner - filled)}] {percent}"
    line = head + _shortened(label, width - len(head) - len(tail)) + tail
    line = _first_cells(line, width)
    return line + " " * (width - _cells(line))


def _shortened(text: str, room: int) -> str:
    """``text`` in at most ``room`` cells: its first word (when short), ``...``, its end."""
    if _cells(text) <= room:
        return text
    if room <= len(_CUT):
        return ""
    first_word = text.split(" ", 1)[0] + " "
    head = first_word if _cells(first_word) <= room // 3 else _first_cells(text, room // 3)
    return head + _CUT + _last_cells(text, room - _cells(head) - len(_CUT))


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes: two for a wide (CJK) character, none for an accent."""
    return sum(_char_cells(char) for char in text)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _first_cells(text: str, cells: int) -> str:
    taken = 0
    for index, char in enumerate(text):
        taken += _char_cells(char)
        if taken > cells:
            return text[:index]
    return text


def _last_cells(text: str, cells: int) -> str:
    return _first_cells(text[::-1], cells)[::-1]


# core's ENCODER_CHOICES, which is not imported here: its module imports torch, --help must not.
ENCODERS = "taesd, sd15, a diffusers VAE folder, or a TAESD, TAEF2 or TAESana weights file"


def add_encoder_option(group: Any) -> None:
    """``--encoder``, the encoder ``--fine-tune`` works against (protect and preview)."""
    group.add_argument(
        "--encoder", default=None, metavar="ENCODER", help=f"for --fine-tune: {ENCODERS}"
    )


def encoder_needed() -> Exception:
    """The error of ``--fine-tune`` without ``--encoder``."""
    from spdesk.core.errors import ConfigError

    return ConfigError(f"--fine-tune needs --encoder ({ENCODERS}).")


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


def perturbation_reference(text: str) -> Path:
    """``--perturbation``'s argument type: a file, or a pattern of the user's library by name
    (:func:`spdesk.core.perturbation.perturbation_reference`; imported when used, so ``--help``
    stays quick)."""
    from spdesk.core.perturbation import perturbation_reference as resolve

    return resolve(text)
