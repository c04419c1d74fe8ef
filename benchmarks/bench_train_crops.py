"""Benchmark: what the train dialog's settings give on a CPU at each crop size.

Not a test. Trains a universal perturbation as the app's "Train personal perturbation" does
(batch 4, no edits trained against, ε = 8, the latent objective) against TAESD on the
training split of ``../shared/data/imagenet-sample`` (``split_photos(..., 0.7, seed 0)``, as
the bundled files), once per ``--sizes`` crop side with the matching ``--steps``, then measures
each pattern through ``spdesk protect``'s own code on photos of the other split at 256 and
512 px editors (:func:`spdesk.core.assessment.assess`, beside random ±8 signs). Prints seconds
a step, training time and the held-out table. The default compares 300 steps at 128 px with
the number of 512 px steps that take about as long::

    python benchmarks/bench_train_crops.py --sizes 128,512 --steps 300,20 --measure 24

``--robust jpeg,resize`` trains against JPEG and resizing (the dialog's default before
2026-12-02; the 128 / 512 px comparison in ``benchmarks/README.md`` was measured so),
``--attacks jpeg75`` adds the share of the gain kept after a JPEG q75 re-save at the 256 px
editor, and ``--bundled`` measures the bundled pattern on the same photos.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spdesk.core.assessment import Protect, assess, mode_protect
from spdesk.core.encoders import load_encoder
from spdesk.core.evaluate import load_full_photos
from spdesk.core.events import Event
from spdesk.core.events.training import TrainStep
from spdesk.core.perturbation import save_perturbation
from spdesk.core.train import TrainConfig, find_photos, split_photos, train_universal
from spdesk.core.train_advice import DEFAULT_ROBUSTNESS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def training_folder(photos: list[Path], into: Path) -> Path:
    """The training split as a folder of its own (the trainer walks a folder)."""
    into.mkdir(parents=True, exist_ok=True)
    for path in photos:
        shutil.copyfile(path, into / path.name)
    return into


def train(
    folder: Path, encoder: str, size: int, steps: int, robust: tuple[str, ...], out: Path
) -> tuple[float, float]:
    """Train with the dialog's settings; returns (seconds in all, seconds a step)."""
    config = TrainConfig(
        photos=str(folder), encoder=encoder, eps=8.0, steps=steps, batch=4, size=size,
        robust=robust, val_every=0, device="cpu",
    )  # fmt: skip
    started = time.monotonic()

    def on_event(event: Event) -> None:
        if isinstance(event, TrainStep) and event.step in (1, steps):
            print(f"  {size} px: step {event.step} at {time.monotonic() - started:.0f} s")

    result = train_universal(config, on_event=on_event)
    seconds = time.monotonic() - started
    save_perturbation(out, result.delta, eps=8.0, metadata=result.metadata)
    return seconds, float(result.seconds_per_step or 0.0)


def _share(kept: float | None) -> str:
    """A share kept after an attack; n/a where there was no gain over random signs to keep."""
    return "n/a" if kept is None else f"{kept:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "imagenet-sample")
    parser.add_argument(
        "--taesd", type=Path, default=SHARED / "models" / "taesd" / "taesd_f8e4m3.safetensors"
    )
    parser.add_argument("--sizes", default="128,512", help="crop sides, comma-separated")
    parser.add_argument("--steps", default="300,20", help="steps for each of --sizes")
    parser.add_argument(
        "--robust",
        default=",".join(DEFAULT_ROBUSTNESS),
        help="edits trained against, e.g. jpeg,resize (default: the dialog's, none)",
    )
    parser.add_argument("--attacks", default="", help="attacks measured, e.g. jpeg75")
    parser.add_argument("--measure", type=int, default=24, help="held-out photos measured")
    parser.add_argument(
        "--bundled", action="store_true", help="also measure the bundled pattern (no training)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    robust = tuple(name for name in args.robust.split(",") if name)
    attacks = [name for name in args.attacks.split(",") if name]
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    if len(sizes) != len(steps):
        parser.error("--sizes and --steps need as many values")
    train_paths, held_out = split_photos(find_photos(args.photos), 0.7, 0, None)
    encoder = load_encoder(str(args.taesd), "cpu")
    photos, _ = load_full_photos(held_out[: args.measure])
    # Every pattern in one assessment: the originals and random signs are measured once.
    candidates: dict[str, Protect] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="spdesk-crops-") as scratch:
        folder = training_folder(train_paths, Path(scratch) / "train")
        for size, count in zip(sizes, steps, strict=True):
            out = Path(scratch) / f"crop{size}.safetensors"
            seconds, per_step = train(folder, str(args.taesd), size, count, robust, out)
            candidates[f"{size} px"], eps, _ = mode_protect("universal", perturbation=out)
            rows.append((f"{size} px", count, per_step, seconds))
        if args.bundled:
            candidates["bundled"], eps, _ = mode_protect("universal")
            rows.append(("bundled", 0, 0.0, 0.0))
        report = assess(photos, candidates, encoder, eps=eps, sizes=(256, 512), attacks=attacks)
    print(f"\n{len(photos)} held-out photos, TAESD, ε = 8, batch 4, robust to {robust or 'none'}")
    kept = "".join(f" | kept after {attack}" for attack in attacks)
    print(
        f"crop | steps | s a step | training s | SSIMULACRA2 | FLIP | latent gain @256 / @512{kept}"
    )
    for name, count, per_step, seconds in rows:
        mine = report.get(name)
        gains = [report.gain(name, f"{side}/clean") or np.nan for side in (256, 512)]
        print(
            f"{name} | {count} | {per_step:.2f} | {seconds:.0f} | {mine.ssimulacra2:.1f} | "
            f"{mine.flip:.3f} | {gains[0]:.2f}x / {gains[1]:.2f}x"
            + "".join(f" | {_share(report.kept(name, 256, attack))}" for attack in attacks)
        )


if __name__ == "__main__":
    main()
