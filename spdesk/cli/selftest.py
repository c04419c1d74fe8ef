"""``spdesk --self-test``: filled in by the packaging issue."""

from __future__ import annotations

import argparse


def run(_args: argparse.Namespace) -> int:
    print("self-test not implemented yet")
    return 2
