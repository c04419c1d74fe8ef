"""The PySide6 app: presents and dispatches to background workers; all work happens in core."""

from spdesk.gui.qtfix import guard_none_leak

guard_none_leak()  # before any widget exists: every Qt call made afterwards is then safe
