"""`spdesk models` (placeholder until its issue lands; replaced by the module's real code)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("models", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(_args: argparse.Namespace) -> int:
    print("spdesk models is not available in this build yet.")
    return 2
