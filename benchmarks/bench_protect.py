"""Benchmark: ``spdesk protect`` (the job runner; universal perturbation, or ``--mode photo``, the
default mode's generator) against the floor of decoding and re-encoding the same photos with
Pillow alone at the same settings.

Not a test. Photos: ``--count`` ImageNet samples from the shared data plus generated large photos
(12 and 24 MP JPEGs made from upscaled samples with film grain). Both sides run in this process,
alternating ``--repeat`` times, on the same files; the figure is the ratio of the median times
(target: at most 1.15), for the job with one worker (strictly sequential, like the floor) and
with its default number of workers (CPU cores + 1, at most 4: photos overlap, and a core is
never idle while one photo waits for its fsync; the floor stays single-threaded). The floor
does what the job's encoder does (JPEG quality 95 4:4:4, EXIF and ICC copied, PNG level 6),
without a perturbation, a manifest, fsync or renames; a second floor also writes like the job
(temp file, fsync, rename), separating the price of crash-safe writes from that of protecting.
A stage breakdown for the 24 MP photo shows where the difference goes (universal mode). With
``--mode photo`` each row also gives the time the job adds per photo beyond the floor (the
default mode's target: 0.3 s per ImageNet photo, 1.5 s per 24 MP photo, on 2 CPU cores).

Peak memory for a 24 MP photo is the peak resident set (VmHWM) of a fresh process that protects
it through the job, next to a fresh process that only decodes and re-encodes it.

    nice -n 5 python benchmarks/bench_protect.py --count 200 --repeat 3
    python benchmarks/bench_protect.py --mode photo --count 100 --large 1 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from spdesk.core.jobs import ProtectJob, ProtectSettings, default_workers
from spdesk.core.perturbation import bundled_perturbation_path, save_perturbation

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
LARGE = {"12mp": (4000, 3000), "24mp": (6000, 4000)}


def make_perturbation(folder: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    try:
        bundled = bundled_perturbation_path()
    except ModuleNotFoundError:  # running from a checkout without the resources package
        bundled = None
    if bundled is not None and bundled.is_file():
        return bundled
    rng = np.random.default_rng(0)  # a sign pattern costs what a trained one costs to apply
    delta = (rng.choice([-1.0, 1.0], size=(3, 512, 512)) * 8 / 255).astype(np.float32)
    return save_perturbation(folder / "bench.safetensors", delta, eps=8.0)


def make_large_photos(folder: Path, sources: list[Path], per_size: int) -> list[Path]:
    """Photo-like large JPEGs: upscaled samples with grain (JPEG cost depends on detail)."""
    rng = np.random.default_rng(1)
    out: list[Path] = []
    for name, size in LARGE.items():
        for index in range(per_size):
            with Image.open(sources[index]) as small:
                big = small.convert("RGB").resize(size, Image.Resampling.BICUBIC)
            grain = rng.normal(0, 6, size=(size[1], size[0], 1)).astype(np.float32)
            pixels = np.clip(np.asarray(big, np.float32) + grain, 0, 255).astype(np.uint8)
            path = folder / f"large_{name}_{index}.jpg"
            exif = Image.Exif()
            exif[0x010F] = "BenchCam"
            Image.fromarray(pixels).save(path, quality=92, exif=exif.tobytes())
            out.append(path)
    return out


def pillow_floor(photos: list[Path], out: Path, durable: bool = False) -> float:
    """Decode, make upright RGB, re-encode at the job's settings; seconds.

    ``durable`` also writes like the job does (temp file, fsync, rename), which separates the
    cost of safe writes from the cost of protecting.
    """
    start = time.perf_counter()
    for path in photos:
        with path.open("rb") as handle:
            image = Image.open(handle)
            image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        params: dict[str, object] = {"icc_profile": image.info.get("icc_profile")}
        exif = image.getexif()
        if len(exif):
            params["exif"] = exif.tobytes()
        if image.format == "PNG":
            params["compress_level"] = 6
        else:
            params.update(quality=95, subsampling=0)
        target = out / f"{path.stem}.out.{image.format.lower()}"
        if not durable:
            rgb.save(target, image.format, **params)
            continue
        fd, temp = tempfile.mkstemp(dir=out, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            rgb.save(handle, image.format, **params)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    return time.perf_counter() - start


def protect_job(
    photos: list[Path], out: Path, perturbation: Path, workers: int, mode: str = "universal"
) -> float:
    settings = ProtectSettings(perturbation=perturbation, workers=workers, mode=mode)
    if mode == "photo":  # the bundled generator; no pattern file
        settings = ProtectSettings(workers=workers, mode=mode)
    start = time.perf_counter()
    report = ProtectJob(photos, out, settings).run()
    seconds = time.perf_counter() - start
    if report.failed or len(report.done) != len(photos):
        raise SystemExit(f"job did not protect every photo: {report.text()}")
    return seconds


def compare(
    name: str,
    photos: list[Path],
    work: Path,
    perturbation: Path,
    repeat: int,
    workers: list[int],
    mode: str = "universal",
) -> dict:
    """Median seconds of the Pillow floor and of the job per worker count, runs interleaved."""
    labels = ["floor", "durable", *(f"job{w}" for w in workers)]
    times: dict[str, list[float]] = {label: [] for label in labels}
    for round_ in range(repeat):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            out = work / f"{name}-{label}-{round_}".replace(" ", "")
            out.mkdir()
            if label in ("floor", "durable"):
                times[label].append(pillow_floor(photos, out, durable=label == "durable"))
            else:
                times[label].append(protect_job(photos, out, perturbation, int(label[3:]), mode))
            shutil.rmtree(out)
    floor = statistics.median(times["floor"])
    durable = statistics.median(times["durable"])
    megapixels = sum(_megapixels(p) for p in photos)
    row: dict = {
        "set": name,
        "mode": mode,
        "photos": len(photos),
        "megapixels": round(megapixels, 1),
    }
    row["pillow_floor_s"] = round(floor, 3)
    row["pillow_floor_with_fsync_s"] = round(durable, 3)
    parts = [f"Pillow {floor:5.2f} s (+fsync {durable:5.2f} s)"]
    for w in workers:
        job = statistics.median(times[f"job{w}"])
        row[f"protect_workers{w}_s"] = round(job, 3)
        row[f"ratio_workers{w}"] = round(job / floor, 3)
        row[f"ratio_workers{w}_vs_fsync_floor"] = round(job / durable, 3)
        added = (job - floor) / len(photos)
        row[f"added_per_photo_workers{w}_s"] = round(added, 4)
        parts.append(
            f"protect x{w} {job:5.2f} s = {job / floor:.2f}x ({job / durable:.2f}x of +fsync; "
            f"+{added:.3f} s a photo)"
        )
    row["runs"] = {k: [round(t, 3) for t in v] for k, v in times.items()}
    print(f"{name:>9}: {len(photos):4d} photos {megapixels:6.1f} MP | " + " | ".join(parts))
    sys.stdout.flush()
    return row


def _megapixels(path: Path) -> float:
    with Image.open(path) as image:
        return image.width * image.height / 1e6


_CHILD = """
import resource, sys, time
from pathlib import Path
mode, photo, out, perturbation = sys.argv[1:5]
start = time.perf_counter()
if mode in ("job", "folder"):
    from spdesk.core.jobs import ProtectJob, ProtectSettings
    photos = sorted(Path(photo).iterdir()) if mode == "folder" else [Path(photo)]
    ProtectJob(photos, Path(out), ProtectSettings(perturbation=Path(perturbation))).run()
else:
    from PIL import Image
    image = Image.open(photo)
    image.load()
    image.save(Path(out) / "floor.jpg", "JPEG", quality=95, subsampling=0)
seconds = time.perf_counter() - start
try:  # VmHWM: this process's own peak (ru_maxrss would include the parent's before exec)
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
except OSError:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{peak_kib} {seconds}")
"""


def peak_memory(photo: Path, work: Path, perturbation: Path) -> dict:
    """Peak RSS (MiB) of a fresh process protecting ``photo`` vs only re-encoding it, and of
    one protecting a folder of copies of it (one more than the default workers, so that every
    worker holds a photo at once)."""
    out: dict = {"photo": photo.name, "megapixels": round(_megapixels(photo), 1)}
    copies = work / "mem-copies"
    copies.mkdir()
    for index in range(default_workers() + 1):
        shutil.copy(photo, copies / f"{index}{photo.suffix}")
    for mode in ("floor", "job", "folder"):
        folder = work / f"mem-{mode}"
        folder.mkdir()
        source = copies if mode == "folder" else photo
        args = [sys.executable, "-c", _CHILD, mode, str(source), str(folder), str(perturbation)]
        result = subprocess.run(args, capture_output=True, text=True, check=True)
        peak_kib, seconds = result.stdout.split()
        out[f"{mode}_peak_mib"] = round(int(peak_kib) / 1024, 1)
        out[f"{mode}_s"] = round(float(seconds), 2)
        shutil.rmtree(folder)
    rgb_mib = out["megapixels"] * 3 / 1.048576
    print(
        f"peak memory, {photo.name} ({out['megapixels']} MP, {rgb_mib:.0f} MiB as RGB): "
        f"spdesk protect {out['job_peak_mib']} MiB, Pillow decode+encode "
        f"{out['floor_peak_mib']} MiB (whole process peak RSS); a folder of "
        f"{default_workers() + 1} such photos with {default_workers()} workers: "
        f"{out['folder_peak_mib']} MiB",
        flush=True,
    )
    return out


def stage_breakdown(photo: Path, work: Path, perturbation: Path, repeat: int) -> dict:
    """Median seconds of each stage the job runs on one photo, measured one by one."""

    from spdesk.core.apply import ApplyOptions, UniversalApplier
    from spdesk.core.export import ExportOptions, prepare, write_image
    from spdesk.core.imageio import read_image
    from spdesk.core.perturbation import load_perturbation

    loaded = load_perturbation(perturbation)
    stages: dict[str, list[float]] = {}

    def timed(name: str, func, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = func(*args)
        stages.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for _ in range(repeat):
        decoded = timed("decode", read_image, photo)
        applier = UniversalApplier(loaded, ApplyOptions())
        size = decoded.image.size
        timed("canvas for a new size (upscale + figures)", applier.full_canvas, size)
        protected, _ = timed("add (per photo)", applier.apply, decoded.image, "")
        encoded = prepare(decoded, protected, "JPEG", ExportOptions())
        with (work / "stage.jpg").open("wb") as handle:  # as the job's first write does
            timed("encode into the file", write_image, encoded, handle)
            timed("fsync", lambda h: (h.flush(), os.fsync(h.fileno())), handle)
    medians = {name: round(statistics.median(times), 3) for name, times in stages.items()}
    print(f"stages for {photo.name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in medians.items()))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--count", type=int, default=200, help="ImageNet samples to use")
    parser.add_argument("--large", type=int, default=2, help="generated photos per size")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    parser.add_argument(
        "--workers", default="1,default", help="job worker counts to time (default: the job's)"
    )
    parser.add_argument("--perturbation", type=Path, default=None)
    parser.add_argument(
        "--mode",
        choices=("universal", "photo"),
        default="universal",
        help="universal pattern (instant) or photo-specific (the default mode's generator)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    sources = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    small = sources[: args.count]
    with tempfile.TemporaryDirectory(prefix="bench-protect-") as tmp:
        work = Path(tmp)
        perturbation = make_perturbation(work, args.perturbation)
        (work / "large").mkdir()
        large = make_large_photos(work / "large", sources, args.large)
        what = perturbation.name if args.mode == "universal" else "bundled generator"
        print(f"mode {args.mode} ({what}); large photos: {[p.name for p in large]}")
        workers = [default_workers() if w == "default" else int(w) for w in args.workers.split(",")]
        print(f"workers timed: {workers} (the job's default here: {default_workers()})")
        rows = [
            compare(name, photos, work, perturbation, args.repeat, workers, args.mode)
            for name, photos in (("imagenet", small), ("12-24 MP", large), ("all", small + large))
            if photos and (name != "all" or (small and large))
        ]
        figures: dict = {"timings": rows}
        if args.mode == "universal" and large:  # the breakdown and memory probe: a 24 MP job
            figures["stages_24mp"] = stage_breakdown(large[-1], work, perturbation, args.repeat)
            figures["memory"] = peak_memory(large[-1], work, perturbation)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
