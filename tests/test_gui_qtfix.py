"""The guard against PySide6 builds that leak references to None and True on every call."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import spdesk.gui  # applies the guard
from PySide6.QtCore import QObject, Signal

class Probe(QObject):
    ping = Signal(str)

probe = Probe()
probe.ping.connect(lambda _text: None)
for _ in range(300_000):
    probe.setObjectName("x")  # a void method: leaked None references would abort here
    probe.ping.emit("x")  # leaked True references would abort here
print("ok")
"""


def test_many_qt_calls_and_signals_do_not_abort_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
