"""Benchmark: every protection mode judged three ways, beside random noise of the same budget.

Not a test. Held-out photos of ``../shared/data/imagenet-sample``: the training runs of the
bundled files (universal pattern and generator) use ``split_photos(..., seed=0)``, whose
permutation puts their photos in its first 700 places; this benchmark takes photos from the
last 300 only: the first ``--attack-photos`` of them for the averaging attack to collect, the
next ``--measure`` to measure (with ``--larger-than PX``, of those whose short side is over PX:
the photos whose editor view is smaller than themselves, as a camera's are). Each mode protects
the full photo exactly as ``spdesk protect`` does (the same Protector), then
:func:`spdesk.core.assessment.assess` reports visibility (SSIMULACRA2, FLIP; JPEG q75/q50 for
scale), strength at each editor size (TAESD latent distortion and round-trip SSIM, gains over
random ±eps signs), what is kept after each attack, and the latent gain on TAEF2 and TAESana
(never trained on). Speed: seconds per photo of each mode's protect step alone (decode and encode
excluded) on ImageNet photos and on a 24 MP photo. A Pareto chart
(visibility vs strength, one point per mode) is written with ``--chart``.

    python benchmarks/bench_protection.py --chart docs/pareto.png --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from spdesk.core import geometry
from spdesk.core.assessment import NOISE, Assessment, Protect, assess, mode_protect
from spdesk.core.attacks import parse_attacks
from spdesk.core.encoders import load_encoder
from spdesk.core.evaluate import load_full_photos
from spdesk.core.export import DEFAULT_QUALITY
from spdesk.core.jobs.settings import DEFAULT_FINETUNE_OBJECTIVE
from spdesk.core.photo_finetune import PhotoFineTuner
from spdesk.core.train import find_photos, split_photos

SHARED = Path(__file__).resolve().parents[2] / "shared"
HELD_OUT_FROM = 700  # places 700..999 of the seed-0 permutation: never trained on


def held_out(folder: Path) -> list[Path]:
    photos = find_photos(folder)
    order, rest = split_photos(photos, 0.7, 0, None)
    assert len(order) == HELD_OUT_FROM or len(photos) != 1000
    return rest


def short_side(path: Path) -> int:
    with Image.open(path) as image:  # the header alone
        return min(image.size)


def speed(protect, photos: list[np.ndarray]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds per ImageNet photo and for one 24 MP photo, of the protect step alone."""
    protect(photos[0], 0)  # warm-up (model load, first-call costs)
    started = time.perf_counter()
    for index, photo in enumerate(photos):
        protect(photo, index)
    per_photo = (time.perf_counter() - started) / len(photos)
    big = np.asarray(Image.fromarray(photos[0]).resize((6000, 4000), Image.Resampling.BICUBIC))
    started = time.perf_counter()
    protect(big, 999)
    return per_photo, time.perf_counter() - started


def pareto_chart(report: Assessment, path: Path) -> None:
    """Visibility (SSIMULACRA2, right = less visible) against latent gain at each editor size."""
    width, height, margin = 900, 560, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x0, x1, y0, y1 = 20.0, 100.0, 0.0, 3.0

    def at(x: float, y: float) -> tuple[float, float]:
        px = margin + (x - x0) / (x1 - x0) * (width - 2 * margin)
        py = height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin)
        return px, py

    draw.rectangle([at(x0, y1), at(x1, y0)], outline="black")
    for x in range(20, 101, 10):
        draw.text((at(x, y0)[0] - 8, height - margin + 6), str(x), fill="black")
    for tenth in range(0, int(y1 * 2) + 1):
        draw.text((margin - 30, at(x0, tenth / 2)[1] - 6), f"{tenth / 2:g}x", fill="black")
    draw.line([at(70, y0), at(70, y1)], fill=(180, 180, 180))
    draw.line([at(x0, 2), at(x1, 2)], fill=(180, 180, 180))
    draw.text(
        (margin, 12),
        "latent gain over random signs (TAESD) vs SSIMULACRA2 (target: right of 70, above 2x)",
        fill="black",
    )
    draw.text((width // 2 - 60, height - 24), "SSIMULACRA2 (higher = less visible)", fill="black")
    colours = [(200, 30, 30), (30, 90, 200), (20, 150, 60), (150, 60, 170), (200, 120, 0)]
    taken: list[tuple[float, float, float, float]] = []  # label boxes drawn so far
    for index, candidate in enumerate(report.candidates):
        grey = candidate.name in NOISE
        colour = (90, 90, 90) if grey else colours[index % len(colours)]
        for marker, size in enumerate(report.sizes):
            gain = report.gain(candidate.name, f"{size}/clean")
            if gain is None or candidate.ssimulacra2 is None:
                continue
            px, py = at(candidate.ssimulacra2, min(gain, y1))
            r = 6
            shape = [px - r, py - r, px + r, py + r]
            (draw.ellipse if marker == 0 else draw.rectangle)(shape, outline=colour, width=2)
            if marker == 0:
                box = _free_label_box(draw, candidate.name, px + 9, py - 6, taken)
                draw.text(box[:2], candidate.name, fill=colour)
    draw.text(
        (width - 250, height - margin - 36),
        f"circle: editor {report.sizes[0]} px"
        + (f", square: {report.sizes[1]} px" if len(report.sizes) > 1 else ""),
        fill="black",
    )
    image.save(path)


def _free_label_box(
    draw: ImageDraw.ImageDraw,
    text: str,
    left: float,
    top: float,
    taken: list[tuple[float, float, float, float]],
) -> tuple[float, float, float, float]:
    """Where ``text`` goes at (left, top) or, if another label is there, just below it."""
    text_width = draw.textlength(text)
    box = (left, top, left + text_width, top + 12)
    while any(
        not (box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]) for b in taken
    ):
        box = (box[0], box[1] + 13, box[2], box[3] + 13)
    taken.append(box)
    return box


def synthetic_scene(width: int = 480, height: int = 320) -> np.ndarray:
    """A made-up photo with what shows a pattern most: a smooth sky, a flat grey wall, skin-like
    tones, and a textured ground (no real photo may be shipped with spdesk's documents)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([110 + 60 * y / height, 160 + 50 * y / height, 235 - 10 * y / height], -1)
    image = sky.copy()
    wall = (x > width * 0.55) & (y > height * 0.25)
    image[wall] = 128
    skin = ((x - width * 0.28) ** 2 / 70**2 + (y - height * 0.5) ** 2 / 90**2) < 1
    image[skin] = np.array([224, 172, 140], np.float32) - 20 * (y[skin, None] / height)
    ground = y > height * 0.78
    grain = rng.normal(0, 22, (height, width, 1)) + rng.normal(0, 8, (height, width, 3))
    image[ground] = np.array([96, 120, 60], np.float32) + grain[ground]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def crop_figure(candidates: dict, path: Path) -> None:  # type: ignore[type-arg]
    """Original and each mode at 100%, with the change amplified 8x below each."""
    scene = synthetic_scene()
    tiles = [("original", scene, np.full_like(scene, 128))]
    for label, protect in candidates.items():
        protected = protect(scene, 0)
        change = np.clip(128 + 8 * (protected.astype(int) - scene.astype(int)), 0, 255)
        tiles.append((label, protected, change.astype(np.uint8)))
    height, width = scene.shape[:2]
    sheet = Image.new("RGB", (len(tiles) * (width + 10), 2 * height + 50), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (label, image, change) in enumerate(tiles):
        left = index * (width + 10)
        draw.text((left + 4, 4), label, fill="black")
        sheet.paste(Image.fromarray(image), (left, 20))
        sheet.paste(Image.fromarray(change), (left, 30 + height))
    draw.text(
        (4, 2 * height + 34), "top: 100% crops; bottom: the change, amplified 8x", fill="black"
    )
    sheet.save(path)


def tuner_variant(models: Path, steps: int, variant: str, device: str) -> Protect:
    """Photo fine-tuning with another loss than the product's (a JPEG q75 round trip beside the
    photo as is, against TAESD): "nojpeg" drops the round trip, "jpegQ" uses quality Q, "ens"
    fine-tunes against TAESD and TAEF2 together, "sideN" looks only at an editor of short side N,
    "stepF" takes a first step of F (of the raw range), "bilinear" resizes to the editors' views
    with torch's bilinear filter instead of Pillow's Lanczos (the product before 2026-12-03);
    joined with "+"."""
    from spdesk.core.generator_file import bundled_generator_path
    from spdesk.core.jobs.settings import DEFAULT_FINETUNE_JPEG

    quality: int | None = DEFAULT_FINETUNE_JPEG
    spec = str(models / "taesd" / "taesd_f8e4m3.safetensors")
    options: dict[str, Any] = {}
    for part in variant.split("+"):
        if part == "ens":
            spec += "," + str(models / "tae" / "taef2_encoder.safetensors")
        elif part == "nojpeg":
            quality = None
        elif part.startswith("jpeg") and part[4:].isdigit():
            quality = int(part[4:])
        elif part.startswith("side") and part[4:].isdigit():
            options["editor_sides"] = (int(part[4:]),)
        elif part.startswith("step"):
            options["first_step"] = float(part[4:])
        elif part == "bilinear":
            from spdesk.core.finetune import resize_view

            options["editor_resize"] = resize_view
        else:
            raise SystemExit(f"unknown tuner variant {variant!r}")
    encoder = load_encoder(spec, device)
    return tuned(
        PhotoFineTuner(bundled_generator_path(), encoder, steps, jpeg_quality=quality, **options)
    )


def saved_as_jpeg(protect: Protect) -> Protect:
    """``protect`` followed by the save ``spdesk protect`` gives a JPEG photo (every photo of
    the sample is one): quality DEFAULT_QUALITY with full-resolution colour, as
    ``export._format_params`` writes it."""

    def saved(photo: np.ndarray, index: int) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(protect(photo, index)).save(
            buffer, "JPEG", quality=DEFAULT_QUALITY, subsampling=0
        )
        return np.asarray(Image.open(buffer).convert("RGB"))

    return saved


def tuned(tuner: PhotoFineTuner) -> Protect:
    """A fine-tuner as a protect function of the assessment."""

    def protect(photo: np.ndarray, index: int) -> np.ndarray:
        return np.asarray(tuner.apply(Image.fromarray(photo), f"photo-{index}")[0])

    return protect


def _gpu() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def print_speed(timings: dict[str, tuple[float, float]]) -> None:
    if not timings:
        return
    print(
        f"speed (protect step alone, s; torch threads {torch.get_num_threads()}; {_gpu()}): "
        "per ImageNet photo | one 24 MP photo"
    )
    for label, (per_photo, big) in timings.items():
        print(f"  {label:<28} {per_photo:.3f} | {big:.2f}")


def merge_runs(files: list[Path], chart: Path | None, labels: list[str]) -> None:
    """One table and chart from several runs' JSON (e.g. a CPU run and a GPU run), with
    candidates renamed by ``labels`` ("OLD=NEW": a run's name for what the product now calls
    otherwise)."""
    reports = [Assessment.from_dict(json.loads(path.read_text())) for path in files]
    report = reports[0]
    for other in reports[1:]:
        report = report.merged(other)
    renames = dict(label.split("=", 1) for label in labels)
    for candidate in report.candidates:
        candidate.name = renames.get(candidate.name, candidate.name)
    print(report.format())
    if chart:
        pareto_chart(report, chart)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared assets (../shared)")
    parser.add_argument("--measure", type=int, default=32)
    parser.add_argument("--attack-photos", type=int, default=100)
    parser.add_argument(
        "--larger-than",
        type=int,
        default=0,
        metavar="PX",
        help="measure only photos whose short side is over PX: with 512, those whose view is "
        "smaller than themselves (photo mode upscales the view's delta, as for camera photos)",
    )
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--attacks", default="jpeg85,jpeg75,down0.5,blur1,median3,average")
    parser.add_argument(
        "--large-photo-exponent",
        type=float,
        default=None,
        metavar="E",
        help="photo mode scales a larger photo's delta by (photo / view) ** -E (the product's "
        f"LARGE_PHOTO_EXPONENT, {geometry.LARGE_PHOTO_EXPONENT}); another E for this run",
    )
    parser.add_argument(
        "--generator",
        type=Path,
        action="append",
        default=[],
        help="extra generator files to compare (label: file stem)",
    )
    parser.add_argument(
        "--transfer", default="tae/taef2_encoder.safetensors,tae/taesana_encoder.safetensors"
    )
    parser.add_argument(
        "--speed-photos", type=int, default=20, help="photos timed per candidate (0: no timing)"
    )
    parser.add_argument(
        "--modes",
        default="photo,universal",
        help="bundled modes to include: photo, universal, finetune (universal fine-tuned per "
        "photo against TAESD, 8 steps)",
    )
    parser.add_argument(
        "--finetune-objectives",
        default=DEFAULT_FINETUNE_OBJECTIVE,
        help="objectives of the finetune mode, each a candidate (e.g. encoder,latent; default: "
        f"the product's, {DEFAULT_FINETUNE_OBJECTIVE})",
    )
    parser.add_argument(
        "--strengths",
        default="",
        help="photo mode (and each --generator) also at these budgets (Pareto points), e.g. 4,6",
    )
    parser.add_argument(
        "--universal-strengths", default="", help="universal mode also at these budgets, e.g. 4,16"
    )
    parser.add_argument(
        "--reference-eps", type=float, default=8.0, help="budget of the random-noise references"
    )
    parser.add_argument(
        "--fine-tune",
        default="",
        metavar="STEPS",
        help="also photo mode fine-tuned per photo against TAESD, for each of these step counts "
        "(e.g. 8 or 8,32)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="device of the measuring encoders (fine-tuning follows spdesk's own choice: a CUDA "
        "GPU when there is one)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no photo after this many seconds; the table covers those measured",
    )
    parser.add_argument(
        "--tuner-variants",
        default="",
        help="also photo fine-tuning (each --fine-tune step count) with loss variants not in the "
        "product: nojpeg (no JPEG round trip in the loss), jpeg50 (another quality), ens (TAESD "
        "+ TAEF2), nojpeg+ens",
    )
    parser.add_argument(
        "--also-saved", action="store_true",
        help="each bundled mode also as the file spdesk protect writes (JPEG q95 4:4:4): the "
        "table's figures are of the pixels before that save",
    )  # fmt: skip
    parser.add_argument("--speed-only", action="store_true", help="time the modes, no table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument("--crops", type=Path, default=None, help="100%% crops of each mode")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="measure nothing: print one table (and --chart) from the --json files of runs on "
        "the same photos",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="OLD=NEW",
        help="with --merge: show candidate OLD as NEW",
    )  # fmt: skip
    args = parser.parse_args()
    if args.merge:
        merge_runs(args.merge, args.chart, args.label)
        return
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.large_photo_exponent is not None:  # read at each call, so this run uses it
        geometry.LARGE_PHOTO_EXPONENT = args.large_photo_exponent
    rest = held_out(args.shared / "data" / "imagenet-sample")
    attack_photos, _ = load_full_photos(rest[: args.attack_photos])
    measured = rest[args.attack_photos :]
    if args.larger_than:
        measured = [path for path in measured if short_side(path) > args.larger_than]
    photos, _ = load_full_photos(measured[: args.measure])
    candidates = {}
    timings = {}
    bundled = {
        "photo": "photo-specific (bundled)",
        "universal": "universal (bundled)",
        "finetune": "universal fine-tuned 8",  # the product's steps; slow on a CPU
    }
    strengths = [float(s) for s in args.strengths.split(",") if s]
    universal_strengths = [float(s) for s in args.universal_strengths.split(",") if s]
    taesd = str(args.shared / "models" / "taesd" / "taesd_f8e4m3.safetensors")
    fine_tune = [int(s) for s in args.fine_tune.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    runs: list[tuple] = [(bundled[m], m, None, None, 0, None) for m in modes if m != "finetune"]
    if "finetune" in modes:  # the universal pattern fine-tuned, once per objective
        for objective in filter(None, args.finetune_objectives.split(",")):
            suffix = "" if objective == DEFAULT_FINETUNE_OBJECTIVE else f", {objective}"
            runs.append((bundled["finetune"] + suffix, "finetune", None, None, 0, objective))
    for label, mode, generator, strength, steps, objective in [
        *runs,
        *[(path.stem, "photo", path, None, 0, None) for path in args.generator],
        *[(f"photo-specific @{s:g}", "photo", None, s, 0, None) for s in strengths],
        *[
            (f"{path.stem} @{s:g}", "photo", path, s, 0, None)
            for path in args.generator
            for s in strengths
        ],
        *[(f"universal @{s:g}", "universal", None, s, 0, None) for s in universal_strengths],
        *[(f"photo fine-tuned {n}", "photo-finetune", None, None, n, None) for n in fine_tune],
    ]:
        protect, _, _ = mode_protect(
            mode, generator=generator, strength=strength, encoder=taesd, finetune_steps=steps or 8,
            objective=objective,
        )  # fmt: skip
        candidates[label] = protect
        if args.speed_photos:
            timings[label] = speed(protect, photos[: args.speed_photos])
        if args.also_saved and label in bundled.values():
            candidates[f"{label}, saved"] = saved_as_jpeg(protect)
    for steps in fine_tune:
        for variant in filter(None, args.tuner_variants.split(",")):
            label = f"fine-tuned {steps}, {variant}"
            candidates[label] = tuner_variant(args.shared / "models", steps, variant, args.device)
            if args.speed_photos:
                timings[label] = speed(candidates[label], photos[: args.speed_photos])
    if args.crops:
        crop_figure(candidates, args.crops)
    if args.speed_only:
        print_speed(timings)
        return
    models = args.shared / "models"
    encoder = load_encoder(taesd, args.device)
    transfer = [
        load_encoder(str(models / spec), args.device) for spec in args.transfer.split(",") if spec
    ]
    started = time.monotonic()
    sizes = [int(s) for s in args.sizes.split(",")]
    report = assess(
        photos, candidates, encoder, eps=args.reference_eps, sizes=sizes,
        attacks=parse_attacks(args.attacks), attack_photos=attack_photos, transfer=transfer,
        on_photo=lambda done, total: print(f"  measured {done}/{total}", flush=True),
        deadline=deadline,
    )  # fmt: skip
    print(report.format())
    print_speed(timings)
    print(
        f"measured in {time.monotonic() - started:.0f} s, torch threads {torch.get_num_threads()}"
    )
    if args.chart:
        pareto_chart(report, args.chart)
    if args.json:
        args.json.write_text(json.dumps(report.to_dict() | {"speed": timings}, indent=1))


if __name__ == "__main__":
    main()
