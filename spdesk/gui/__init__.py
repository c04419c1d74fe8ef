"""The PySide6 app: presents and dispatches to background workers; all work happens in core."""
