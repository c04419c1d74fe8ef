"""Benchmark: photo-specific mode (the default) on a CUDA GPU, or on the CPU for comparison.

Not a test. Prints, for the device ``--device`` resolves to (CUDA when present, else CPU):

1. the generator's time per photo at 512x512 after warm-up: the network pass alone (timed with
   CUDA events on a GPU) and the whole per-photo step (:meth:`GeneratorProtector.working_delta`:
   key-derived seed, noise drawn on the CPU, transfers, pass, result back); aim <= 0.05 s;
2. whether the output is deterministic on that device, and how far (in 8-bit steps) it is from
   the CPU's output for the same photo;
3. end-to-end throughput of a folder of ``--count`` photos through ``spdesk protect``'s own job
   (:class:`~spdesk.core.jobs.ProtectJob`: decode, protect, encode, fsync) for each worker count
   in ``--workers``, with the share of wall time the generator step was busy and the time it
   sat idle with no photo ready (decoding or encoding not keeping up), beside a floor that only
   decodes and re-encodes the same photos with Pillow on as many threads.

The photos are synthesised at start (textured ~500x375 JPEGs: gradients, noise and stripes),
since no photo collection travels to a GPU machine.

    python benchmarks/bench_photo_gpu.py --count 1000 --json out.json   # on the GPU machine
    nice python benchmarks/bench_photo_gpu.py --count 60 --device cpu    # CPU figures
    python benchmarks/bench_photo_gpu.py --smoke                         # seconds, any machine
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spdesk.core.device import generator_device
from spdesk.core.jobs import ProtectJob, ProtectSettings, default_workers
from spdesk.core.jobs.protector import PhotoSpecificProtector, Protector
from spdesk.core.photo_protect import GeneratorProtector

# The bundled files, from the checkout: on a GPU machine spdesk runs from the source tree, where
# importlib.resources cannot see them (the package maps them only when installed).
RESOURCES = Path(__file__).resolve().parents[1] / "resources"
GENERATOR = RESOURCES / "generators" / "default.safetensors"
PERTURBATION = RESOURCES / "perturbations" / "default.safetensors"
KEY = bytes(range(32))  # a fixed key: the same photos get the same noise on every run


def synth_photo(index: int, width: int = 500, height: int = 375) -> Image.Image:
    """A textured photo-like image: colour gradients, stripes and grain (JPEG cost and the
    generator's shaping both depend on texture, so flat noise-free images would flatter)."""
    rng = np.random.default_rng(index)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    slope = rng.uniform(-0.2, 0.2, (3, 2)).astype(np.float32)
    freq = rng.uniform(0.02, 0.2)
    stripes = 25 * np.sin(freq * (xs + rng.uniform(0.3, 1.5) * ys))
    channels = [
        base[c] + slope[c, 0] * ys + slope[c, 1] * xs + stripes * (c + 1) / 3 for c in range(3)
    ]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs (quality 90) in ``folder``, made on all cores."""
    folder.mkdir(parents=True, exist_ok=True)

    def one(index: int) -> Path:
        path = folder / f"photo{index:05d}.jpg"
        synth_photo(index).save(path, quality=90)
        return path

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(count)))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pass_seconds(protector: GeneratorProtector, view: np.ndarray, repeats: int) -> float:
    """Median seconds of the network pass alone on a (h, w, 3) view (CUDA events on a GPU)."""
    from spdesk.core.generator import generate_delta, noise_shape

    device = protector.device
    height, width = view.shape[:2]
    noise = torch.randn((1, *noise_shape(height, width))).to(device)
    x = torch.from_numpy(np.array(view)).permute(2, 0, 1)[None].to(device).float() / 255
    timings = []
    with torch.inference_mode():
        for repeat in range(repeats + 3):  # 3 warm-up passes (cuDNN picks its kernels)
            if device.type == "cuda":
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                generate_delta(protector.model, x, noise, protector.eps, protector.shaping)
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000
            else:
                started = time.perf_counter()
                generate_delta(protector.model, x, noise, protector.eps, protector.shaping)
                seconds = time.perf_counter() - started
            if repeat >= 3:
                timings.append(seconds)
    return statistics.median(timings)


def step_seconds(protector: GeneratorProtector, views: list[np.ndarray]) -> float:
    """Median seconds of the whole per-photo step (seed, noise, transfers, pass, back)."""
    for view in views[:3]:
        protector.working_delta(view)  # warm-up
    timings = []
    for view in views:
        synchronize(protector.device)
        started = time.perf_counter()
        protector.working_delta(view)  # returns a numpy array: the GPU has finished
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def generator_figures(device: torch.device, repeats: int) -> dict[str, Any]:
    protector = GeneratorProtector(GENERATOR, key=KEY, device=device)
    views = [np.asarray(synth_photo(i, 512, 512)) for i in range(repeats)]
    figures: dict[str, Any] = {
        "pass_s_512": pass_seconds(protector, views[0], repeats),
        "step_s_512": step_seconds(protector, views),
    }
    photo = synth_photo(7)
    first = np.asarray(protector.apply(photo)[0]).astype(int)
    figures["deterministic"] = bool(np.array_equal(first, protector.apply(photo)[0]))
    if device.type != "cpu":
        on_cpu = GeneratorProtector(GENERATOR, key=KEY, device="cpu")
        reference = np.asarray(on_cpu.apply(photo)[0]).astype(int)
        figures["largest_step_from_cpu"] = int(np.abs(first - reference).max())
        figures["pixels_differing_from_cpu"] = float(np.mean(first != reference))
    return figures


class TimedLock:
    """A lock that records how long it was held and how long it sat free with nobody waiting
    (the generator step idle because no photo was ready)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._books = threading.Lock()
        self.waiting = 0
        self.busy = 0.0
        self.starved = 0.0
        self.passes = 0
        self._acquired = 0.0
        self._free_since: float | None = None

    def __enter__(self) -> TimedLock:
        with self._books:
            self.waiting += 1
            if self._free_since is not None and self.waiting == 1:
                self.starved += time.perf_counter() - self._free_since
                self._free_since = None
        self._lock.acquire()
        with self._books:
            self.waiting -= 1
        self._acquired = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        now = time.perf_counter()
        with self._books:
            self.busy += now - self._acquired
            self.passes += 1
            if self.waiting == 0:
                self._free_since = now
        self._lock.release()


class _TimedJob(ProtectJob):
    """The real job, with the generator's lock swapped for a :class:`TimedLock`."""

    lock: TimedLock

    def _protector(self, perturbation: Any) -> Protector:
        protector = super()._protector(perturbation)
        assert isinstance(protector, PhotoSpecificProtector)
        self.lock = TimedLock()
        protector.protector._lock = self.lock  # type: ignore[assignment]
        return protector


def job_figures(photos: list[Path], work: Path, device: str, workers: int) -> dict[str, Any]:
    """Protect ``photos`` with the job (photo mode) on ``workers`` threads; throughput and
    the generator step's busy and idle time."""
    out = work / f"out-{device}-{workers}"
    settings = ProtectSettings(
        mode="photo", perturbation=PERTURBATION, generator=GENERATOR, device=device, workers=workers
    )
    job = _TimedJob(photos, out, settings)
    started = time.perf_counter()
    report = job.run()
    wall = time.perf_counter() - started
    if report.failed or len(report.done) != len(photos):
        raise SystemExit(f"the job did not protect every photo: {report.text()}")
    return {
        "workers": workers,
        "photos_per_s": len(photos) / wall,
        "wall_s": wall,
        "generator_busy_share": job.lock.busy / wall,
        "generator_idle_s": job.lock.starved,
        "generator_s_per_photo": job.lock.busy / max(1, job.lock.passes),
    }


def pillow_floor(photos: list[Path], workers: int) -> float:
    """Photos per second of decoding and re-encoding (JPEG q95 4:4:4) alone, on ``workers``."""

    def one(path: Path) -> None:
        with Image.open(path) as image:
            image.convert("RGB").save(io.BytesIO(), "JPEG", quality=95, subsampling=0)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, photos))
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="photos in the folder")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cpu")
    parser.add_argument("--workers", default="", help="comma-separated (default: the job's)")
    parser.add_argument("--repeats", type=int, default=30, help="timed generator passes")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the code paths")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.smoke:
        args.count, args.repeats = min(args.count, 12), min(args.repeats, 3)
    os.environ.setdefault("SPDESK_PROTECTION_KEY", KEY.hex())
    device = generator_device(args.device)
    workers = [int(w) for w in args.workers.split(",") if w] or [default_workers()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), {os.cpu_count()} CPU cores")
    figures: dict[str, Any] = {"device": name, "torch": torch.__version__, "count": args.count}
    figures["generator"] = generator_figures(device, args.repeats)
    gen = figures["generator"]
    print(
        f"generator at 512x512 on {device}: pass {gen['pass_s_512'] * 1000:.1f} ms, whole "
        f"per-photo step {gen['step_s_512'] * 1000:.1f} ms (aim <= 50 ms); deterministic "
        f"{gen['deterministic']}"
        + (
            f"; largest difference from the CPU output {gen['largest_step_from_cpu']} step(s) "
            f"on {gen['pixels_differing_from_cpu']:.2%} of values"
            if "largest_step_from_cpu" in gen
            else ""
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="spdesk-photo-gpu-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        photos = make_photos(work / "photos", args.count)
        print(f"synthesised {len(photos)} JPEGs 500x375 in {time.perf_counter() - started:.1f} s")
        figures["jobs"] = []
        for count in workers:
            job = job_figures(photos, work, str(device), count)
            job["pillow_floor_photos_per_s"] = pillow_floor(photos, count)
            figures["jobs"].append(job)
            if args.json:  # after each job: a time limit may stop the next one
                args.json.write_text(json.dumps(figures, indent=2))
            print(
                f"spdesk protect (photo mode, {device}), {len(photos)} photos, {count} workers: "
                f"{job['photos_per_s']:.1f} photos/s ({job['wall_s']:.1f} s); generator step busy "
                f"{job['generator_busy_share']:.0%} of the time, "
                f"{job['generator_s_per_photo'] * 1000:.1f} ms per photo, idle with no photo "
                f"ready {job['generator_idle_s']:.1f} s; Pillow decode+encode floor on "
                f"{count} threads {job['pillow_floor_photos_per_s']:.1f} photos/s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
