"""The ``spdesk`` command: subcommands over the same core calls the app uses.

``spdesk`` with no arguments (or ``spdesk gui``) opens the window. Each subcommand lives in its own
module with a ``register(subparsers)`` function; errors are printed as plain text (exit status 2),
tracebacks go to the log file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NoReturn

from spdesk import __version__
from spdesk.cli.common import EXIT_CANCELLED, EXIT_ERROR, print_json, run_command

# Modules under spdesk.cli, each adding one subcommand (or group) in this order.
COMMAND_MODULES = ("protect", "train", "evaluate", "models", "preview", "train_generator")


_EPILOG = """\
Run 'spdesk COMMAND --help' for the options of one command.

Exit status:
  0   everything worked
  1   the command ran, but some photos (or files) failed: the report says which and why
  2   the command could not run (bad input, a missing model): the message says what to do
  130 cancelled with Ctrl+C, SIGTERM or SIGHUP (after the current step, with the summary)

With --json a command prints one JSON object on stdout, also when it cannot run:
  {"ok": false, "exit_code": 2, "error": "...", "hint": "..."} (hint may be null)."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are also one JSON object on stdout when the
    command line asks for ``--json``: a script reads stdout, not the usage text on stderr."""

    json_errors = False  # set from each command line (the subcommands' parsers are this class)

    def error(self, message: str) -> NoReturn:
        if _Parser.json_errors:
            hint = f"Run '{self.prog} --help' for its options."
            print_json({"ok": False, "exit_code": EXIT_ERROR, "error": message, "hint": hint})
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spdesk",
        description=(
            "Protect your photos from AI editing. spdesk adds a hard-to-see perturbation "
            "that pushes Stable Diffusion edits (img2img, inpainting) off course; how far, "
            "measured, is in the README (Protection modes).\n"
            "Run with no command to open the app."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spdesk {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="protect a generated photo in the universal and photo modes, verify it, and exit",
    )
    parser.add_argument(
        "--json",
        dest="self_test_json",
        action="store_true",
        help="with --self-test: print its result as one JSON object",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do")
    gui = sub.add_parser("gui", help="open the app window (the default)")
    gui.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="photos or folders to queue in it"
    )
    gui.set_defaults(func=None)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"spdesk.cli.{name}")
        module.register(sub)
    parser.set_defaults(command_names=tuple(sub.choices))  # spdesk PATH: see _with_files_opened
    return parser


def gui_main() -> int:
    """``spdesk-gui [PATH...]``: the window, or what it needs when Qt does not load (the entry
    point is here, not in the Qt module, whose import would end in a traceback)."""
    return _open_gui(None)


def _open_gui(paths: Sequence[Path] | None = ()) -> int:
    """The window with ``paths`` queued (None: from the command line, as ``spdesk-gui``)."""
    # Imported by name so that the CLI module itself never depends on Qt.
    try:
        app = importlib.import_module("spdesk.gui.app")
    except ImportError as error:  # Qt taken out of an install that runs the command line only
        if (error.name or "").split(".")[0] not in ("PySide6", "shiboken6"):
            raise
        _tell_without_a_window(
            f"spdesk: the app's window needs PySide6, which does not load ({error}).\n"
            'Install it with: pip install "PySide6-Essentials>=6.7"; the commands work without '
            "it (spdesk --help)."
        )
        return EXIT_ERROR
    return int(app.main(None if paths is None else list(paths)))


def _tell_without_a_window(text: str) -> None:
    """``text`` on the terminal; where there is none (``spdesk-gui`` on Windows starts without
    a console, and printing there goes nowhere), in the system's own message box."""
    if sys.stderr is not None:
        print(text, file=sys.stderr)
    elif sys.platform == "win32":
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, text, "spdesk", 0x10)  # MB_ICONERROR


def _with_files_opened(argv: Sequence[str], commands: Collection[str]) -> list[str]:
    """``spdesk PATH...`` (a file manager's "Open with") means ``spdesk gui PATH...`` when the
    first argument is an existing file or folder; a command of the same name wins."""
    first = argv[0] if argv else ""
    if first and not first.startswith("-") and first not in commands and Path(first).exists():
        return ["gui", *argv]
    return list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spdesk`` console script; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl+C before a command took over (torch loads for seconds)
        print("Interrupted.", file=sys.stderr)
        return EXIT_CANCELLED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    exiting = argv is None  # the process's own command line: it exits with the status
    argv = sys.argv[1:] if argv is None else argv
    _Parser.json_errors = "--json" in argv
    args = parser.parse_args(_with_files_opened(argv, parser.get_default("command_names")))
    if args.self_test_json and not args.self_test:
        parser.error(
            "--json goes after the command (spdesk COMMAND ... --json), or with --self-test"
        )
    if args.self_test and args.command is not None:  # it would run in the command's place
        parser.error("--self-test takes no command: run 'spdesk --self-test' on its own")
    if args.self_test:
        args.json = args.self_test_json
        selftest = importlib.import_module("spdesk.cli.selftest")
        return run_command(selftest.run, args, exiting=exiting)
    if args.command is None or args.func is None:
        return _open_gui(getattr(args, "paths", []))
    return run_command(args.func, args, exiting=exiting)


if __name__ == "__main__":
    sys.exit(main())
