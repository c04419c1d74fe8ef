"""The guard against PySide6 builds that leak references to None on every void call."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import spdesk.gui  # applies the guard
from PySide6.QtCore import QObject
probe = QObject()
for _ in range(300_000):
    probe.setObjectName("x")  # a void method: leaked None references would abort here
print("ok")
"""


def test_many_void_qt_calls_do_not_abort_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
