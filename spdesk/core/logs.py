"""Logging to a file in the platformdirs log folder: tracebacks live here, not in front of users."""

from __future__ import annotations

import logging
import logging.handlers

from spdesk.core.paths import ensure, log_dir

_configured = False
log_written = True  # False once the log file could not be opened or written: not to be cited


def setup_logging(level: int = logging.INFO) -> None:
    """Send spdesk's log records to ``log_dir()/spdesk.log`` (rotated). Safe to call twice."""
    global _configured
    if _configured:
        return
    _configured = True
    logger = logging.getLogger("spdesk")
    logger.setLevel(level)
    try:
        handler: logging.Handler = _QuietFileHandler(
            ensure(log_dir()) / "spdesk.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:  # a read-only home must not stop the program
        handler = logging.NullHandler()
        global log_written
        log_written = False
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """The log file's handler: a record it cannot write (a full disk) is lost quietly, never
    Python's "--- Logging error ---" traceback on the user's terminal."""

    def handleError(self, record: logging.LogRecord) -> None:
        global log_written
        log_written = False


def console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers of ``logger`` that write to a terminal stream (not to a file)."""
    return [
        h
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def library_output_to_log(library: str) -> None:
    """Send an imported ``library``'s console output to spdesk's log file instead of stderr.

    huggingface_hub prints each retry of a failed request on stderr ("'[Errno -2] Name or
    service not known' thrown while requesting GET ...", five times when offline). spdesk says
    what failed in its own words at the end. The details stay in the log. A library without a
    console handler of its own is routed too: its records went up to Python's last-resort
    handler, which prints warnings on stderr. Call it once the library has made its handler
    (huggingface_hub makes it as ``huggingface_hub.utils.logging`` is imported)."""
    logger = logging.getLogger(library)
    consoles = console_handlers(logger)
    for console in consoles:
        logger.removeHandler(console)
    if consoles or logger.propagate:  # else already done
        _to_spdesk_handlers(logger)


def logger_to_log_only(name: str) -> None:
    """Send logger ``name``'s records to spdesk's log file only, not to the handlers (terminal
    ones among them) of the loggers above it."""
    logger = logging.getLogger(name)
    if logger.propagate:  # else already done
        _to_spdesk_handlers(logger)


def _to_spdesk_handlers(logger: logging.Logger) -> None:
    """``logger`` writes through spdesk's own handlers (its log file) and no others above it."""
    for handler in logging.getLogger("spdesk").handlers or [logging.NullHandler()]:
        logger.addHandler(handler)
    logger.propagate = False


def quiet_model_libraries() -> None:
    """Keep diffusers and transformers off the terminal: their loading bars, and advice meant for
    developers ("pip install accelerate", "requires torchvision"), would interleave with
    spdesk's own progress. Their warnings go to spdesk's log file. Call it before importing
    their models: some of that advice comes at import."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    library_output_to_log("diffusers")
    library_output_to_log("transformers")


def log_file() -> str:
    return str(log_dir() / "spdesk.log")
