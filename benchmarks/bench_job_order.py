"""Benchmark: the order a job works in. Largest photos first against the order given (name
order), in one run. A job works in the order it is given; the "largest first" side hands it the
list sorted by size (largest first, photos of one size side by side, each size's in name order).

Not a test. Tried in the job itself on 2026-12-04 and reverted (README, "Speed"): faster on
mixed folders, but it unbalanced the Ray engine's batches, serialised large photos under a tight
memory budget and skewed the time estimate. Figures:

- Fine-tuning passes: photo fine-tuning runs photos of one size together, up to ``--batch`` per
  pass (a GPU runs 8 in about the time of one). Counted from the headers of the ImageNet sample:
  how many passes the job's batches make in each order. No timing, nothing run.
- Universal mode's time against the Pillow floor (as ``bench_protect.py``: decode and re-encode
  the same files), the job with its default workers, in each order, rounds interleaved: on
  ``--count`` ImageNet photos, on generated 12 and 24 MP photos (two of each, named so that the
  smaller come first), and on both together (the large ones last, as in a folder sorted by name).
- With ``--finetune STEPS``: the GPU default's job (photo mode fine-tuned per photo against TAESD,
  batches of ``--batch``) on the first ``--finetune-photos`` held-out photos (those
  ``bench_protection.py`` measures, and all that ``gpu/pack_bench_photos.py`` packs), in name
  order and largest first, seconds a photo and passes (on a CUDA GPU: ``--device cuda``).

    python benchmarks/bench_job_order.py --repeat 10
    python benchmarks/bench_job_order.py --repeat 0 --finetune 8 --finetune-photos 200 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_protect import SHARED_PHOTOS, make_large_photos, make_perturbation, pillow_floor
from bench_protection import held_out

from spdesk.core.batches import batches_by_key
from spdesk.core.imageio import PhotoHeader, read_header
from spdesk.core.jobs import ProtectJob, ProtectSettings, default_workers


def largest_first(photos: list[Path], headers: dict[Path, PhotoHeader]) -> list[Path]:
    """``photos`` largest first, those of one size side by side in the order given."""
    return sorted(photos, key=lambda p: (-headers[p].pixels, headers[p].width))


def fine_tuning_passes(photos: list[Path], batch: int) -> dict[str, int]:
    """Passes of at most ``batch`` photos of one size, the job's batches taken in each order."""
    headers = {path: read_header(path) for path in photos}

    def passes(order: list[Path]) -> int:
        chunks = (order[start : start + batch] for start in range(0, len(order), batch))
        sizes = ([(headers[p].height, headers[p].width) for p in chunk] for chunk in chunks)
        return sum(len(batches_by_key(chunk, batch)) for chunk in sizes)

    return {
        "photos": len(photos),
        "given": passes(photos),
        "largest_first": passes(largest_first(photos, headers)),
    }


def timed_job(photos: list[Path], out: Path, settings: ProtectSettings) -> float:
    """Seconds of one job over ``photos``, in that order."""
    start = time.perf_counter()
    ProtectJob(photos, out, settings).run()
    return time.perf_counter() - start


def orders(photos: list[Path]) -> dict[str, list[Path]]:
    """``photos`` as given and largest first (headers read here, before any timing)."""
    headers = {path: read_header(path) for path in photos}
    return {"given": photos, "largest_first": largest_first(photos, headers)}


def compare(sets: dict[str, list[Path]], perturbation: Path, repeat: int) -> dict[str, dict]:
    """Median seconds of the floor and of the job in each order, rounds interleaved."""
    settings = ProtectSettings(perturbation=perturbation, workers=default_workers())
    times: dict[tuple[str, str], list[float]] = {}
    sides = ["floor", "given", "largest_first"]
    ordered = {name: orders(photos) for name, photos in sets.items()}
    for round_ in range(repeat):
        for name, photos in sets.items():
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                with tempfile.TemporaryDirectory(prefix="bench-order-") as out:
                    seconds = (
                        pillow_floor(photos, Path(out))
                        if side == "floor"
                        else timed_job(ordered[name][side], Path(out), settings)
                    )
                times.setdefault((name, side), []).append(seconds)
    rows: dict[str, dict] = {}
    for name in sets:
        floor = statistics.median(times[(name, "floor")])
        row = {"photos": len(sets[name]), "floor_s": round(floor, 3)}
        for side in sides[1:]:
            row[f"{side}_s"] = round(statistics.median(times[(name, side)]), 3)
            row[f"{side}_ratio"] = round(row[f"{side}_s"] / floor, 3)
        rows[name] = row
        print(
            f"{name:>9}: {row['photos']:4d} photos | Pillow {floor:5.2f} s | order given "
            f"{row['given_ratio']:.2f}x | largest first {row['largest_first_ratio']:.2f}x "
            f"(medians of {repeat}, workers {default_workers()})",
            flush=True,
        )
    return rows


def compare_fine_tuning(photos: list[Path], args: argparse.Namespace) -> dict[str, float]:
    """Seconds a photo of the fine-tuning job in each order (one warm-up photo first)."""
    encoder = args.photos.parents[1] / "models" / "taesd" / "taesd_f8e4m3.safetensors"
    settings = ProtectSettings(
        mode="photo-finetune",
        encoder=str(encoder),
        device=args.device,
        finetune_steps=args.finetune,
        finetune_batch=args.batch,
    )
    with tempfile.TemporaryDirectory(prefix="bench-order-") as out:
        timed_job(photos[:1], Path(out), settings)  # loads, warms the device
    row: dict[str, float] = {"photos": len(photos), "steps": args.finetune}
    row |= {
        f"passes_{k}": v for k, v in fine_tuning_passes(photos, args.batch).items() if k != "photos"
    }
    for side, order in orders(photos).items():
        with tempfile.TemporaryDirectory(prefix="bench-order-") as out:
            seconds = timed_job(order, Path(out), settings)
        row[f"{side}_s_per_photo"] = round(seconds / len(photos), 4)
    print(
        f"photo fine-tuning, {args.finetune} steps, batches of {args.batch}, {len(photos)} photos "
        f"on {args.device}: {row['given_s_per_photo']:.3f} s a photo in name order, "
        f"{row['largest_first_s_per_photo']:.3f} s largest first ({row['passes_given']} and "
        f"{row['passes_largest_first']} passes)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--count", type=int, default=200, help="ImageNet photos timed")
    parser.add_argument("--repeat", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=8, help="fine-tuning batch (photos a pass)")
    parser.add_argument("--finetune", type=int, default=0, help="also time fine-tuning: steps")
    parser.add_argument("--finetune-photos", type=int, default=32)
    parser.add_argument("--device", default="auto", help="fine-tuning's device")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    sources = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    passes = fine_tuning_passes(sources, args.batch)
    print(
        f"fine-tuning passes of at most {args.batch} photos of one size, {passes['photos']} "
        f"photos: {passes['given']} in name order, {passes['largest_first']} largest first"
    )
    figures: dict = {"passes": passes}
    if args.repeat:
        with tempfile.TemporaryDirectory(prefix="bench-order-") as tmp:
            work = Path(tmp)
            perturbation = make_perturbation(work, None)
            large = make_large_photos(work, sources, 2)  # 12 MP ones first, then 24 MP
            small = sources[: args.count]
            sets = {"imagenet": small, "12-24 MP": large, "all": small + large}
            figures["timings"] = compare(sets, perturbation, args.repeat)
    if args.finetune:
        chosen = sorted(held_out(args.photos)[: args.finetune_photos])  # the given order: names
        figures["fine_tuning"] = compare_fine_tuning(chosen, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
