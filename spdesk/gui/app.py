"""The desktop app's entry point: create the QApplication and show the window at once.

Only Qt, the settings and light core modules are imported here; torch and diffusers are imported
later, inside worker threads, so the window appears in about a second on a cold start.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QMessageLogContext, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from spdesk import __version__
from spdesk.core.logs import log_file, setup_logging
from spdesk.gui import garbage
from spdesk.gui.platform_check import platform_problem
from spdesk.gui.workers import wait_for_live_threads


def app_icon() -> QIcon:
    icon = QIcon()
    try:
        folder = resources.files("spdesk.resources").joinpath("icons")
    except ModuleNotFoundError:  # a checkout whose install does not map the resources package
        return icon
    for size in (16, 32, 48, 64, 128, 256):
        ref = folder.joinpath(f"spdesk-{size}.png")
        if ref.is_file():
            icon.addFile(str(ref))
    return icon


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication, styled; reuses an existing one (tests)."""
    from spdesk.gui.style import apply_style

    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        app = QApplication(qt_arguments(argv or sys.argv))
    app.setApplicationName("spdesk")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("spdesk")
    app.setWindowIcon(app_icon())
    apply_style(app)
    return app


_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def qt_messages_to_log(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
    """Qt's own notes go to spdesk's log file, not the terminal: a queue of camera photos
    printed a line per thumbnail whose ICC profile Qt could not parse ("qt.gui.icc:
    fromIccProfile: invalid tag offset alignment"). Critical ones reach stderr as well."""
    level = _QT_LEVELS.get(mode, logging.WARNING)
    logging.getLogger("spdesk.qt").log(level, "%s: %s", context.category or "qt", message)
    if level >= logging.ERROR:
        print(message, file=sys.stderr)


def report_unexpected(
    kind: type[BaseException], error: BaseException, tb: TracebackType | None
) -> None:
    """Last resort for a bug on the GUI thread: traceback to the log, plain words to the user."""
    logging.getLogger("spdesk.gui").error("unexpected error", exc_info=(kind, error, tb))
    if QApplication.instance() is not None:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.warning(
            None,
            "spdesk",
            f"Something went wrong: {error}\nDetails are in the log file: {log_file()}",
        )


def main(paths: Sequence[Path] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status.

    ``paths``: files and folders to queue once the window shows ("Open with spdesk" from a file
    manager); None takes them from the command line (``spdesk-gui PATH...``).
    """
    if paths is None:
        answered = answer_option(sys.argv[1:])
        if answered is not None:
            print(answered)
            return 0
    setup_logging()
    qInstallMessageHandler(qt_messages_to_log)
    problem = platform_problem()
    if problem:  # Qt would abort with a message about plugins instead
        print(problem, file=sys.stderr)
        return 2
    sys.excepthook = report_unexpected
    app = create_app()
    garbage.install()  # cyclic garbage collected on this thread only, from the first window on
    if paths is None:
        paths = file_arguments(app.arguments())
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings

    window = MainWindow(open_settings())
    window.show()
    if os.environ.get(STARTUP_PROBE):
        # benchmarks/bench_startup.py: report when the first frame is up, then quit at once.
        QTimer.singleShot(0, lambda: _report_shown(app))
        return int(app.exec())
    if paths:  # queued from the event loop: the window is drawn first, the scan runs behind it
        queue = [path.absolute() for path in paths]  # remembered as the last input folder
        QTimer.singleShot(0, lambda: window.add_paths(queue))
    # Device detection imports torch: start it only once the window is on screen.
    QTimer.singleShot(300, window.detect_device)
    status = int(app.exec())
    if not wait_for_live_threads(EXIT_WAIT_MS):
        # A cancelled task still in a call that cannot be interrupted (a stalled network read):
        # Qt aborts when a running QThread is destroyed at exit; its writes are atomic, so
        # ending the process now loses nothing.
        logging.getLogger(__name__).warning("A background task did not stop; exiting anyway.")
        os._exit(status)
    return status


# Marks an argument whose bytes are not UTF-8 in what Qt is given: a private-use character
# no command line starts with, then the bytes in hexadecimal.
_STAND_IN = "\U000f5d00spdesk-bytes:"


def qt_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` as Qt can take it: PySide crashes (a segmentation fault, no message) on an
    argument with bytes that are not UTF-8, as a file named in Latin-1 comes to Python (lone
    surrogates). Such an argument goes as a stand-in, never one of Qt's options, which
    :func:`file_arguments` turns back into the path."""
    return [_stand_in(argument) for argument in argv]


def _stand_in(argument: str) -> str:
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:
        return _STAND_IN + os.fsencode(argument).hex()
    return argument


GUI_USAGE = """usage: spdesk-gui [PHOTO_OR_FOLDER ...]

Opens spdesk's window, with the photos and folders given queued.
The command-line tool: spdesk --help."""


def answer_option(arguments: Sequence[str]) -> str | None:
    """What ``--help`` or ``--version`` prints, before any window: they opened the window and
    queued a photo called "--help". None for paths to queue."""
    if any(argument in ("-h", "--help") for argument in arguments):
        return GUI_USAGE
    if "--version" in arguments:
        return f"spdesk {__version__}"
    return None


def file_arguments(arguments: Sequence[str]) -> list[Path]:
    """The paths in the application's arguments (after the program's name): Qt has removed the
    options it understands (``-style fusion``) by then."""
    return [Path(_original(argument)) for argument in arguments[1:]]


def _original(argument: str) -> str:
    if argument.startswith(_STAND_IN):
        return os.fsdecode(bytes.fromhex(argument.removeprefix(_STAND_IN)))
    return argument


STARTUP_PROBE = "SPDESK_STARTUP_PROBE"
EXIT_WAIT_MS = 30_000  # for tasks the closed windows cancelled and could not wait for


def _report_shown(app: QApplication) -> None:
    heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
    print(f"window-shown {time.time():.6f} heavy={','.join(heavy) or 'none'}", flush=True)
    app.quit()
