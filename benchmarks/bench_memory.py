"""Benchmark: peak memory of ``spdesk protect`` on PNGs near the pixel limit, with the job's
memory budget on and off.

Not a test. ``--count`` photo-like PNGs of ``--megapixels`` each (default: 4 just under spdesk's
179 MP limit) are protected by a fresh process through :class:`spdesk.core.jobs.ProtectJob`,
the call behind ``spdesk protect``, with the default workers; once with no budget (every
worker may hold a photo) and once with ``--budget``. The figure is the process's peak resident
set (VmHWM; ru_maxrss where /proc is missing): Pillow's pixel buffers are not Python objects,
so tracemalloc would not see them. The budget's own account of what it let in at once is
printed beside it.

    nice -n 19 python benchmarks/bench_memory.py --megapixels 178 --count 4 --budget 4G
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

NO_LIMIT = 1 << 50  # "off": larger than any photo set's need

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from spdesk.core.jobs import ProtectJob, ProtectSettings

folder, out, budget, mode, fmt, workers = sys.argv[1:7]
budgets = []

class Job(ProtectJob):
    def _process(self, run, manifest, photos):  # the job's own seam: keep its budget's account
        budgets.append(run.memory)
        super()._process(run, manifest, photos)

settings = ProtectSettings(
    mode=mode, memory_budget=int(budget), format=None if fmt == "same" else fmt,
    **({"workers": int(workers)} if workers != "default" else {}),
)
start = time.perf_counter()
report = Job([Path(folder)], Path(out), settings).run()
seconds = time.perf_counter() - start
try:  # VmHWM: this process's own peak
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
except OSError:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "peak_mib": peak_kib / 1024, "seconds": seconds, "done": len(report.done),
    "failed": [f.reason for f in report.failed], "workers": settings.workers,
    "budget_peak_mib": budgets[0].peak / 2**20,
}))
"""


def make_pngs(folder: Path, megapixels: float, count: int) -> list[Path]:
    """Photo-like 4:3 PNGs (gradients and grain; fast to write at compression level 1)."""
    width = int(math.sqrt(megapixels * 1e6 * 4 / 3))
    height = int(megapixels * 1e6 / width)
    rng = np.random.default_rng(0)
    across = np.linspace(0, 160, width, dtype=np.float32).astype(np.uint8)
    down = np.linspace(0, 90, height, dtype=np.float32).astype(np.uint8)
    grain = rng.integers(0, 6, (height, width), dtype=np.uint8)
    base = across[None, :] + down[:, None]
    pixels = np.dstack([base + grain, base[::-1] + grain, base[:, ::-1] // 2 + grain])
    first = folder / "near-limit-0.png"
    Image.fromarray(pixels).save(first, compress_level=1)
    del pixels, base, grain
    paths = [first]
    for index in range(1, count):
        paths.append(folder / f"near-limit-{index}.png")
        shutil.copyfile(first, paths[-1])
    return paths


def run(folder: Path, work: Path, budget: int, args: argparse.Namespace) -> dict:
    out = work / f"out-{budget}"
    child = [sys.executable, "-c", _CHILD, str(folder), str(out), str(budget), args.mode]
    child += [args.format, str(args.workers)]
    result = subprocess.run(child, capture_output=True, text=True, check=True)
    shutil.rmtree(out, ignore_errors=True)
    return dict(json.loads(result.stdout.splitlines()[-1]))


def main() -> None:
    from spdesk.core.jobs.memory import default_budget, human_bytes, parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=178.0, help="per photo (178)")
    parser.add_argument("--count", type=int, default=4, help="photos (4)")
    parser.add_argument("--budget", default="4G", help="the budget of the 'on' run (4G)")
    parser.add_argument("--mode", default="universal", choices=("universal", "photo"))
    parser.add_argument("--format", default="same", help="output format (same: PNG)")
    parser.add_argument("--workers", default="default", help="job workers (default: the job's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    budget = parse_size(args.budget)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        folder = work / "in"
        folder.mkdir()
        started = time.perf_counter()
        photos = make_pngs(folder, args.megapixels, args.count)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # near the limit
            with Image.open(photos[0]) as image:
                size = image.size
        print(
            f"{args.count} PNGs of {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} MP), "
            f"made in {time.perf_counter() - started:.0f} s; mode {args.mode}, output "
            f"{args.format}; default budget here: {human_bytes(default_budget())}",
            flush=True,
        )
        figures = {}
        for name, limit in (("off", NO_LIMIT), ("on", budget)):
            row = run(folder, work, limit, args)
            figures[name] = row
            shown = "no limit" if limit == NO_LIMIT else human_bytes(limit)
            print(
                f"budget {name:>3} ({shown}): peak RSS {row['peak_mib']:.0f} MiB, most the "
                f"budget let in at once {row['budget_peak_mib']:.0f} MiB, "
                f"{row['done']} done, {len(row['failed'])} failed, {row['workers']} workers, "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
