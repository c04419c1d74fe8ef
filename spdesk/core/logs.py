"""Logging to a file in the platformdirs log folder: tracebacks live here, not in front of users."""

from __future__ import annotations

import logging
import logging.handlers

from spdesk.core.paths import ensure, log_dir

_configured = False


def setup_logging(level: int = logging.INFO) -> None:
    """Send spdesk's log records to ``log_dir()/spdesk.log`` (rotated). Safe to call twice."""
    global _configured
    if _configured:
        return
    _configured = True
    logger = logging.getLogger("spdesk")
    logger.setLevel(level)
    try:
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            ensure(log_dir()) / "spdesk.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:  # a read-only home must not stop the program
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)


def log_file() -> str:
    return str(log_dir() / "spdesk.log")
