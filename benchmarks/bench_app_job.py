"""The app's protect job against the same job without the app, on one folder, in one run.

The app runs the core's ``ProtectJob`` in a worker thread and shows each event in the queue. What
the window does per event runs on the GUI thread and holds Python's lock, so a window that works
too hard per event slows the workers. This protects a folder twice with the app's default
settings, each time into a fresh output folder (after an untimed warm-up on four photos, for
the imports): once through the real main window (offscreen Qt
platform, events shown as a user sees them, started and timed from its own event loop), and once
by calling ``ProtectJob`` directly with no Qt at all. It prints both times and their ratio, and
the window's worst stall (how late a 50 ms timer fired) while listing the photos and during the
job.

    python benchmarks/bench_app_job.py ../shared/data/imagenet-sample --count 1000

Before 2026-12-02 the window counted every row of the job again for each event: 1000 ImageNet
photos took 143 s in the app against 69 s on the command line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def copy_photos(source: Path, count: int, into: Path) -> Path:
    """The first ``count`` photos of ``source`` copied into a folder of their own (the app writes
    beside them, and ``../shared`` is read-only)."""
    from spdesk.core.train import find_photos

    into.mkdir(parents=True)
    for photo in find_photos(source)[:count]:
        shutil.copy2(photo, into / photo.name)
    return into


TICK_S = 0.05  # the stall probe's period


def time_in_the_app(folder: Path, count: int) -> tuple[float, float, float]:
    """``(job seconds, worst stall while listing, worst stall during the job)``: a stall is how
    late a 50 ms timer fired, i.e. how long the window could not answer a click."""
    from PySide6.QtCore import QTimer

    from spdesk.gui.app import create_app
    from spdesk.gui.main_window import MainWindow
    from spdesk.gui.settings import open_settings

    app = create_app([])
    window = MainWindow(open_settings())
    window.show()
    times: dict[str, float] = {}
    stalls = {"listing": 0.0, "job": 0.0}
    phase = ["listing"]

    def tick() -> None:
        now = time.perf_counter()
        if "tick" in times:
            late = now - times["tick"] - TICK_S
            stalls[phase[0]] = max(stalls[phase[0]], late)
        times["tick"] = now
        QTimer.singleShot(round(TICK_S * 1000), tick)

    def start_once_listed() -> None:
        if window.queue.rowCount() < count or window.scan_runner.running:
            QTimer.singleShot(50, start_once_listed)
            return
        window.job_runner.finished.connect(finished)
        phase[0] = "job"
        times["start"] = time.perf_counter()
        if not window.start_job():
            raise RuntimeError("the window did not start the job")

    def finished() -> None:
        times["end"] = time.perf_counter()
        app.quit()

    QTimer.singleShot(0, tick)
    QTimer.singleShot(0, lambda: window.add_paths([folder]))
    QTimer.singleShot(100, start_once_listed)
    app.exec()
    window.close()
    return times["end"] - times["start"], stalls["listing"], stalls["job"]


def time_without_the_app(folder: Path, output: Path) -> float:
    from spdesk.core import jobs
    from spdesk.core.events import CancelToken
    from spdesk.gui.protect_bridge import job_settings
    from spdesk.gui.settings import ProtectOptions

    photos = sorted(folder.iterdir())
    settings = job_settings(ProtectOptions())  # what the app runs with by default
    started = time.perf_counter()
    jobs.ProtectJob(photos, output, settings).run(lambda _event: None, CancelToken())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="folder of photos (e.g. ../shared/data/...)")
    parser.add_argument("--count", type=int, default=300, help="photos to protect (300)")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        os.environ["SPDESK_HOME"] = str(root / "home")  # the app's settings start fresh
        folder = copy_photos(args.photos, args.count, root / "photos")
        count = len(list(folder.iterdir()))
        warm = copy_photos(folder, 4, root / "warm-up")  # imports and first loads, untimed
        time_without_the_app(warm, root / "warm-out")
        without = time_without_the_app(folder, root / "core-out")
        shutil.rmtree(root / "core-out")
        with_app, listing_stall, job_stall = time_in_the_app(folder, count)
    print(f"{count} photos, the app's default settings, {os.cpu_count()} CPU cores")
    print(f"  without the app (ProtectJob alone): {without:7.1f} s")
    print(f"  in the app's window:                {with_app:7.1f} s")
    print(f"  app / job alone:                    {with_app / without:7.2f}x")
    print(f"  window's worst stall, listing:      {listing_stall:7.2f} s")
    print(f"  window's worst stall, during job:   {job_stall:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
