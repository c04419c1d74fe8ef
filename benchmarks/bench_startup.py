"""Start-up time of the desktop app: process start to main window shown, in fresh processes.

Each run starts ``python -m spdesk gui`` in a new process with an empty ``SPDESK_HOME`` and
``SPDESK_STARTUP_PROBE=1``: the app prints the wall-clock time once its window has been shown
(after the first event-loop turn) and quits. The figure is that time minus the moment just
before the process was spawned, so interpreter start-up and all imports are included.

    python benchmarks/bench_startup.py --runs 7            # offscreen Qt platform
    xvfb-run -a python benchmarks/bench_startup.py --platform xcb

Run 1 is the coldest this script can make it (the file cache is dropped first when permitted,
e.g. as root on Linux); the median is over all runs. Prints one line per run and a summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def drop_file_cache() -> bool:
    """Ask Linux to drop its page cache (root only); False when not permitted."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def one_run(platform: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, SPDESK_HOME=home, SPDESK_STARTUP_PROBE="1")
        env["QT_QPA_PLATFORM"] = platform
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "spdesk", "gui"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    for line in done.stdout.splitlines():
        if line.startswith("window-shown "):
            shown, heavy = line.split()[1:3]
            return float(shown) - started, heavy
    raise RuntimeError(
        f"the app did not report its window (exit {done.returncode}):\n{done.stderr}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--platform", default="offscreen", help="Qt platform: offscreen, xcb")
    args = parser.parse_args()
    dropped = drop_file_cache()
    times = []
    for index in range(args.runs):
        seconds, heavy = one_run(args.platform)
        times.append(seconds)
        label = "cold" if index == 0 and dropped else "run"
        print(f"{label} {index + 1}: {seconds:.3f} s to window shown ({heavy})")
    print(
        f"median {statistics.median(times):.3f} s, min {min(times):.3f} s, "
        f"max {max(times):.3f} s over {len(times)} runs on {os.cpu_count()} CPUs "
        f"(platform {args.platform}; file cache dropped first: {'yes' if dropped else 'no'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
