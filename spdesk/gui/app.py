"""Placeholder for the desktop app entry point (issue: the desktop app)."""

from __future__ import annotations


def main() -> int:
    print("The spdesk window is not available in this build yet; use the commands (spdesk --help).")
    return 2
